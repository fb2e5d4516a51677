"""Each hook operation's arguments checked, then its flow built: nothing is sent for a wrong argument.

``ClarifaiHook``'s sync method and its asyncio twin both call the same function here, then run the flow it
returns through the blocking or the asyncio driver (``_execution.drive`` / ``adrive``). This module is
cheap to import: the flows (and with them ``clarifai_grpc``) load on the first operation.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import (
    PipelineVersionIds,
    validate_run_id,
    validate_run_ids,
    validate_start_args,
)
from airflow_provider_clarifai.runs import PipelineRun, RunLogBatch, RunLogCursor, RunStatusChange
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction, parse_statuses

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks._flows import Call


class InfoLog(Protocol):
    """A logger's ``info``: the hook's own logger (a standard one on Airflow 2, structlog's on Airflow 3)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...


def get_run_flow(ids: PipelineVersionIds, run_id: str) -> Generator[Call, Any, PipelineRun]:
    """The flow of ``ClarifaiHook.get_run``.

    :param ids: the pipeline version.
    :param run_id: the run.
    """
    from airflow_provider_clarifai.hooks import _flows

    return _flows.get_run(check_ids(ids), validate_run_id(run_id))


def list_runs_flow(
    ids: PipelineVersionIds,
    statuses: Iterable[PipelineRunStatus | str | int] | None,
    per_page: int,
    max_pages: int | None,
    compute_cluster_id: str | None,
    nodepool_id: str | None,
) -> Generator[Call, Any, list[PipelineRun]]:
    """The flow of ``ClarifaiHook.list_runs``.

    :param ids: the pipeline version.
    :param statuses: only runs in these states.
    :param per_page: runs per page (1 to 1000).
    :param max_pages: read at most this many pages.
    :param compute_cluster_id: only runs on this compute cluster.
    :param nodepool_id: only runs on this nodepool.
    """
    from airflow_provider_clarifai.hooks import _flows

    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= 1000:
        raise ClarifaiConfigurationError(f"per_page must be a whole number from 1 to 1000, got {per_page!r}.")
    if max_pages is not None and (not isinstance(max_pages, int) or max_pages < 1):
        raise ClarifaiConfigurationError(f"max_pages must be a whole number >= 1, got {max_pages!r}.")
    try:
        wanted = parse_statuses(statuses) if statuses else frozenset()
    except ValueError as err:
        raise ClarifaiConfigurationError(f"Invalid statuses filter: {err}.") from None
    return _flows.list_runs(
        check_ids(ids),
        statuses=wanted,
        per_page=per_page,
        max_pages=max_pages,
        compute_cluster_id=compute_cluster_id,
        nodepool_id=nodepool_id,
    )


def set_runs_status_flow(
    ids: PipelineVersionIds,
    run_ids: str | Sequence[str],
    action: RunAction | str,
    *,
    batch_size: int,
    log: InfoLog,
) -> Generator[Call, Any, list[RunStatusChange]]:
    """The flow of ``ClarifaiHook.set_runs_status``.

    An empty list or tuple of run ids selects nothing: the flow makes no call and returns ``[]``, and one
    info line says so (a status selector that matched no run is a normal outcome). Any other selection is
    checked in full (see :func:`~airflow_provider_clarifai.ids.validate_run_ids`).

    :param ids: the pipeline version.
    :param run_ids: one run id or several.
    :param action: ``"pause"``, ``"resume"`` or ``"cancel"``.
    :param batch_size: runs per request.
    :param log: where the empty selection is reported.
    """
    from airflow_provider_clarifai.hooks import _flows

    try:
        parsed_action = RunAction(action)
    except ValueError:
        raise ClarifaiConfigurationError(
            f"Unknown action {action!r}; use one of {', '.join(a.value for a in RunAction)}."
        ) from None
    checked_ids = check_ids(ids)
    if isinstance(run_ids, list | tuple) and not run_ids:
        log.info(
            "No pipeline version runs selected to %s in %s/%s/%s/%s: nothing to do, no request sent.",
            parsed_action.value,
            checked_ids.user_id,
            checked_ids.app_id,
            checked_ids.pipeline_id,
            checked_ids.pipeline_version_id,
        )
        selected: list[str] = []
    else:
        selected = validate_run_ids(run_ids)
    return _flows.set_runs_status(checked_ids, selected, parsed_action.target_status, batch_size=batch_size)


def post_run_flow(
    ids: PipelineVersionIds,
    run_id: str | None,
    input_args: Mapping[str, str] | None,
    nodepool_id: str | None,
    compute_cluster_id: str | None,
) -> Generator[Call, Any, PipelineRun]:
    """The flow of ``ClarifaiHook.post_run``.

    :param ids: the pipeline version.
    :param run_id: the new run's id, or ``None`` for a uuid4 hex.
    :param input_args: argument overrides.
    :param nodepool_id: the nodepool to run on.
    :param compute_cluster_id: the compute cluster of the nodepool.
    """
    from airflow_provider_clarifai.hooks import _flows

    validate_start_args(input_args, nodepool_id, compute_cluster_id)
    return _flows.post_run(
        check_ids(ids),
        run_id=validate_run_id(run_id) if run_id is not None else None,
        input_args=input_args,
        nodepool_id=nodepool_id,
        compute_cluster_id=compute_cluster_id,
    )


def get_run_logs_flow(
    ids: PipelineVersionIds, run_id: str, cursor: RunLogCursor | None, per_page: int, max_pages: int
) -> Generator[Call, Any, RunLogBatch]:
    """The flow of ``ClarifaiHook.get_run_logs``.

    :param ids: the pipeline version.
    :param run_id: the run.
    :param cursor: the cursor of the previous call; ``None`` reads from the start.
    :param per_page: entries per page.
    :param max_pages: most pages read by this call.
    """
    from airflow_provider_clarifai.hooks import _flows

    for name, value in (("per_page", per_page), ("max_pages", max_pages)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ClarifaiConfigurationError(f"{name} must be a whole number >= 1, got {value!r}.")
    return _flows.get_run_logs(
        check_ids(ids),
        validate_run_id(run_id),
        cursor=cursor or RunLogCursor(),
        per_page=per_page,
        max_pages=max_pages,
    )


def check_ids(ids: PipelineVersionIds) -> PipelineVersionIds:
    """``ids``, if it is a :class:`PipelineVersionIds`.

    :param ids: what the caller passed as the pipeline version.
    :raises ClarifaiConfigurationError: it is something else (a dict, a tuple of strings).
    """
    if not isinstance(ids, PipelineVersionIds):
        raise ClarifaiConfigurationError(
            f"ids must be a PipelineVersionIds (from ClarifaiHook.resolve_ids), got {type(ids).__name__}."
        )
    return ids
