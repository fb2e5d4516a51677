"""Each hook operation written once, free of I/O, and driven by both the sync and the asyncio path.

A flow is a generator that yields a :class:`Call` (an RPC and its request) and receives the response,
or has the call's :class:`ClarifaiError` thrown into it; its return value is the operation's result.
``ClarifaiHook._run`` drives flows with blocking calls and ``ClarifaiHook._arun`` with awaited ones, so
paging, batching, per-run outcomes and log de-duplication exist in one copy only.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from clarifai_grpc.grpc.api import resources_pb2, service_pb2

from airflow_provider_clarifai.exceptions import (
    ClarifaiNotFoundError,
    ClarifaiUnexpectedResponseError,
    classify_code_name,
    error_from_status,
)
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.runs import (
    PipelineRun,
    RunLogBatch,
    RunLogCursor,
    RunLogLine,
    RunStatusChange,
)
from airflow_provider_clarifai.status import PipelineRunStatus, status_code_name, status_code_value

T = TypeVar("T")

LOG_TYPE = "pipeline.version.run"
PATCH_ACTION = "overwrite"


@dataclass(frozen=True)
class Call:
    """One RPC a flow wants made.

    :param method: the RPC name in ``clarifai.api.V2``.
    :param request: the request message.
    :param description: what the call does, for messages and retry logs.
    :param accept: decides whether a non-SUCCESS response is an answer for the flow rather than an
        error (per-run outcomes of a batch).
    :param recover: for calls that create something: after a failed attempt, this call is tried
        first, and if it answers SUCCESS the earlier attempt had in fact been applied, so its answer
        is used instead of sending the creation again.
    """

    method: str
    request: Any
    description: str
    accept: Callable[[Any], bool] | None = None
    recover: Call | None = None


Flow = Generator[Call, Any, T]


def check_response(response: Any, call: Call, secret: str | None) -> Any:
    """Return ``response`` if it is a success (or accepted by the call), else raise its error.

    :param response: the response message.
    :param call: the call that got it.
    :param secret: the token, kept out of messages.
    """
    if response is None or not response.HasField("status"):
        # grpc.aio hands back None for a reply it could not deserialize; a reply without a status
        # cannot be judged. Neither is a success.
        raise ClarifaiUnexpectedResponseError(
            f"Clarifai {call.method} ({call.description}) returned an empty or unreadable response. "
            "Failing closed. Check that the connection's host is a Clarifai API endpoint.",
            code_name="UNREADABLE_RESPONSE",
            method=call.method,
        )
    if response.status.code == _code("SUCCESS") or (call.accept is not None and call.accept(response)):
        return response
    raise error_from_status(response.status, method=call.method, context=call.description, secret=secret)


def _code(name: str) -> int:
    return status_code_value(name)


def _user_app(ids: PipelineVersionIds) -> resources_pb2.UserAppIDSet:
    return resources_pb2.UserAppIDSet(user_id=ids.user_id, app_id=ids.app_id)


def _where(ids: PipelineVersionIds) -> str:
    return f"{ids.user_id}/{ids.app_id}/{ids.pipeline_id}/{ids.pipeline_version_id}"


def _get_call(ids: PipelineVersionIds, run_id: str) -> Call:
    request = service_pb2.GetPipelineVersionRunRequest(
        user_app_id=_user_app(ids),
        pipeline_id=ids.pipeline_id,
        pipeline_version_id=ids.pipeline_version_id,
        pipeline_version_run_id=run_id,
    )
    return Call("GetPipelineVersionRun", request, f"getting run {run_id} of {_where(ids)}")


def _has(message: Any, name: str) -> bool:
    # started_at, ended_at and total_run_duration exist only from clarifai-grpc 12.0.2 on.
    return name in message.DESCRIPTOR.fields_by_name and message.HasField(name)


def _timestamp(message: Any, name: str) -> datetime | None:
    if not _has(message, name):
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value


def run_from_message(message: Any, ids: PipelineVersionIds | None = None) -> PipelineRun:
    """Convert a ``resources_pb2.PipelineVersionRun`` into a :class:`PipelineRun`.

    The run's own ids (``user_id``, ``app_id``, ``pipeline_version``) win; ``ids`` fills what it omits.

    :param message: the run message.
    :param ids: the ids the run was asked for under; ``None`` for runs listed across versions.
    """
    version = message.pipeline_version
    status = message.orchestration_status.status
    parameters = message.input_args_override.argo_args_override.parameters
    nodepool = message.nodepools[0] if len(message.nodepools) else None
    duration = (
        message.total_run_duration.ToTimedelta().total_seconds()
        if _has(message, "total_run_duration")
        else None
    )
    return PipelineRun(
        run_id=message.id,
        status_code=int(status.code),
        status_name=status_code_name(int(status.code)),
        status_description=status.description,
        user_id=message.user_id or version.user_id or (ids.user_id if ids else ""),
        app_id=message.app_id or version.app_id or (ids.app_id if ids else ""),
        pipeline_id=version.pipeline_id or (ids.pipeline_id if ids else ""),
        pipeline_version_id=version.id or (ids.pipeline_version_id if ids else ""),
        created_at=_timestamp(message, "created_at"),
        modified_at=_timestamp(message, "modified_at"),
        started_at=_timestamp(message, "started_at"),
        ended_at=_timestamp(message, "ended_at"),
        total_run_duration_seconds=duration,
        input_args={parameter.name: parameter.value for parameter in parameters},
        nodepool_id=(nodepool.id or None) if nodepool else None,
        compute_cluster_id=(nodepool.compute_cluster.id or None) if nodepool else None,
    )


def get_run(ids: PipelineVersionIds, run_id: str) -> Flow[PipelineRun]:
    """Flow: one run.

    :param ids: the pipeline version.
    :param run_id: the run.
    """
    response = yield _get_call(ids, run_id)
    return run_from_message(response.pipeline_version_run, ids)


def list_runs(
    ids: PipelineVersionIds,
    *,
    statuses: Iterable[PipelineRunStatus] = (),
    per_page: int = 128,
    max_pages: int | None = None,
    compute_cluster_id: str | None = None,
    nodepool_id: str | None = None,
) -> Flow[list[PipelineRun]]:
    """Flow: runs of a pipeline version, newest first, every page unless ``max_pages``.

    :param ids: the pipeline version.
    :param statuses: only runs in these states (all when empty).
    :param per_page: page size.
    :param max_pages: stop after this many pages.
    :param compute_cluster_id: only runs on this compute cluster.
    :param nodepool_id: only runs on this nodepool.
    """
    codes = sorted(status.code for status in statuses)

    def call(page: int) -> Call:
        request = service_pb2.ListPipelineVersionRunsRequest(
            user_app_id=_user_app(ids),
            pipeline_id=ids.pipeline_id,
            pipeline_version_id=ids.pipeline_version_id,
            page=page,
            per_page=per_page,
            status_codes=codes,
            compute_cluster_id=compute_cluster_id or "",
            nodepool_id=nodepool_id or "",
        )
        return Call("ListPipelineVersionRuns", request, f"listing runs of {_where(ids)}, page {page}")

    def runs_of(response: Any) -> list[PipelineRun]:
        return [run_from_message(message, ids) for message in response.pipeline_version_runs]

    return (yield from paged(call, runs_of, lambda run: run.run_id, per_page, max_pages=max_pages))


def paged(
    call: Callable[[int], Call],
    items_of: Callable[[Any], list[T]],
    key: Callable[[T], Any],
    per_page: int,
    limit: int | None = None,
    *,
    max_pages: int | None = None,
) -> Flow[list[T]]:
    """Flow: every page of a listing, from page 1, until a short page, a page with nothing new (a server
    repeating itself), ``limit`` items or ``max_pages`` pages.

    :param call: the call for one page number.
    :param items_of: the items of one page's response.
    :param key: an item's identity, to drop items seen on an earlier page.
    :param per_page: the page size asked for.
    :param limit: stop once this many items were read (``None``: no limit).
    :param max_pages: stop after this many pages (``None``: no limit).
    """
    items: list[T] = []
    seen: set[Any] = set()
    page = 1
    while max_pages is None or page <= max_pages:
        batch = items_of((yield call(page)))
        fresh = [item for item in batch if key(item) not in seen]
        seen.update(key(item) for item in fresh)
        items.extend(fresh)
        if limit is not None and len(items) >= limit:
            return items[:limit]
        if len(batch) < per_page or not fresh:
            break
        page += 1
    return items


def _is_run_state(code: int) -> bool:
    return status_code_name(code).startswith("JOB_")


def _per_run_answer(expected: int) -> Callable[[Any], bool]:
    """Accept MIXED_STATUS, and an error answer that carries one error entry per requested run."""

    def accept(response: Any) -> bool:
        code = int(response.status.code)
        if code == _code("MIXED_STATUS"):
            return True
        error_class = classify_code_name(status_code_name(code))
        entries = response.pipeline_version_runs
        return (
            not error_class.retryable
            and len(entries) == expected
            and all(not _is_run_state(entry.orchestration_status.status.code) for entry in entries)
        )

    return accept


def set_runs_status(
    ids: PipelineVersionIds, run_ids: Sequence[str], target: PipelineRunStatus, *, batch_size: int
) -> Flow[list[RunStatusChange]]:
    """Flow: ask for ``target`` on every run, ``batch_size`` runs per request, and report each one.

    Runs the service did not apply are read back, so each outcome carries the run's state after the
    request; a run found already in ``target`` counts as applied (a retried request that had been
    applied the first time, or another actor that got there first).

    :param ids: the pipeline version.
    :param run_ids: the runs.
    :param target: JOB_PAUSED, JOB_RUNNING or JOB_CANCELLED.
    :param batch_size: runs per request.
    """
    changes: list[RunStatusChange] = []
    for start in range(0, len(run_ids), batch_size):
        chunk = list(run_ids[start : start + batch_size])
        request = service_pb2.PatchPipelineVersionRunsRequest(
            user_app_id=_user_app(ids),
            pipeline_id=ids.pipeline_id,
            pipeline_version_id=ids.pipeline_version_id,
            action=PATCH_ACTION,
            pipeline_version_runs=[
                resources_pb2.PipelineVersionRun(
                    id=run_id,
                    orchestration_status=resources_pb2.OrchestrationStatus(
                        status=_status_message(target.code)
                    ),
                )
                for run_id in chunk
            ],
        )
        response = yield Call(
            "PatchPipelineVersionRuns",
            request,
            f"setting {target.value} on {len(chunk)} run(s) of {_where(ids)}",
            accept=_per_run_answer(len(chunk)),
        )
        entries = {entry.id: entry for entry in response.pipeline_version_runs if entry.id}
        for run_id in chunk:
            entry = entries.get(run_id)
            entry_code = int(entry.orchestration_status.status.code) if entry is not None else None
            if entry_code is not None and _is_run_state(entry_code):
                changes.append(
                    RunStatusChange(run_id, target, applied=True, status_after=status_code_name(entry_code))
                )
                continue
            reason = entry.orchestration_status.status if entry is not None else None
            changes.append((yield from _read_back(ids, run_id, target, reason)))
    return changes


def _status_message(code: int) -> Any:
    from clarifai_grpc.grpc.api.status import status_pb2

    return status_pb2.Status(code=code)


def _read_back(
    ids: PipelineVersionIds, run_id: str, target: PipelineRunStatus, reason: Any
) -> Flow[RunStatusChange]:
    error_code_name = status_code_name(int(reason.code)) if reason is not None else "NOT_REPORTED"
    error_description = reason.description if reason is not None else "the service did not report this run"
    try:
        response = yield _get_call(ids, run_id)
    except ClarifaiNotFoundError:
        return RunStatusChange(run_id, target, False, None, error_code_name, error_description)
    status_after = status_code_name(int(response.pipeline_version_run.orchestration_status.status.code))
    return RunStatusChange(
        run_id, target, status_after == target.value, status_after, error_code_name, error_description
    )


def post_run(
    ids: PipelineVersionIds,
    *,
    run_id: str | None = None,
    input_args: Mapping[str, str] | None = None,
    nodepool_id: str | None = None,
    compute_cluster_id: str | None = None,
) -> Flow[PipelineRun]:
    """Flow: start a run. Safe to retry: the run id is chosen here, and a retry first checks whether
    the earlier attempt created the run before posting again, so no run is ever started twice.

    :param ids: the pipeline version.
    :param run_id: the new run's id; a uuid4 hex by default.
    :param input_args: argument overrides (Argo parameters), names to string values.
    :param nodepool_id: the nodepool to run on.
    :param compute_cluster_id: the nodepool's compute cluster.
    """
    run_id = run_id or uuid.uuid4().hex
    run = resources_pb2.PipelineVersionRun(id=run_id)
    if input_args:
        run.input_args_override.argo_args_override.parameters.extend(
            resources_pb2.ArgoParameterOverride(name=name, value=value) for name, value in input_args.items()
        )
    request = service_pb2.PostPipelineVersionRunsRequest(
        user_app_id=_user_app(ids),
        pipeline_id=ids.pipeline_id,
        pipeline_version_id=ids.pipeline_version_id,
    )
    if nodepool_id:
        nodepool = resources_pb2.Nodepool(
            id=nodepool_id,
            compute_cluster=resources_pb2.ComputeCluster(id=compute_cluster_id or "", user_id=ids.user_id),
        )
        run.nodepools.append(nodepool)
        request.runner_selector.nodepool.CopyFrom(nodepool)
    request.pipeline_version_runs.append(run)
    response = yield Call(
        "PostPipelineVersionRuns",
        request,
        f"starting run {run_id} of {_where(ids)}",
        recover=_get_call(ids, run_id),
    )
    if response.DESCRIPTOR.name == "SinglePipelineVersionRunResponse":
        return run_from_message(response.pipeline_version_run, ids)
    if not len(response.pipeline_version_runs):
        raise error_from_status(response.status, method="PostPipelineVersionRuns", context="no run returned")
    return run_from_message(response.pipeline_version_runs[0], ids)


def _line_keys(entries: Sequence[Any]) -> list[str]:
    """Identity of each entry: its url, else a digest of its content and occurrence number."""
    counts: dict[str, int] = {}
    keys = []
    for entry in entries:
        if entry.url:
            keys.append("u:" + entry.url)
            continue
        digest = hashlib.sha1(entry.message.encode(), usedforsecurity=False).hexdigest()[:16]
        counts[digest] = counts.get(digest, 0) + 1
        keys.append(f"c:{digest}:{counts[digest]}")
    return keys


def get_run_logs(
    ids: PipelineVersionIds, run_id: str, *, cursor: RunLogCursor, per_page: int, max_pages: int
) -> Flow[RunLogBatch]:
    """Flow: log lines of a run not returned before ``cursor``.

    :param ids: the pipeline version.
    :param run_id: the run.
    :param cursor: where the previous read stopped.
    :param per_page: page size.
    :param max_pages: most pages read in one call (the rest come next time).
    """
    page, seen = cursor.page, set(cursor.seen)
    lines: list[RunLogLine] = []
    for _ in range(max_pages):
        request = service_pb2.ListLogEntriesRequest(
            log_type=LOG_TYPE,
            user_app_id=_user_app(ids),
            pipeline_id=ids.pipeline_id,
            pipeline_version_id=ids.pipeline_version_id,
            pipeline_version_run_id=run_id,
            page=page,
            per_page=per_page,
        )
        response = yield Call("ListLogEntries", request, f"reading logs of run {run_id}, page {page}")
        entries = list(response.log_entries)
        keys = _line_keys(entries)
        lines.extend(
            RunLogLine(entry.message, entry.url or None)
            for entry, key in zip(entries, keys, strict=True)
            if key not in seen
        )
        if len(entries) < per_page:
            return RunLogBatch(lines, RunLogCursor(page, tuple(keys)))
        page, seen = page + 1, set()
    return RunLogBatch(lines, RunLogCursor(page, ()))


def whoami(user_id: str | None) -> Flow[str]:
    """Flow: an authenticated call that needs no pipeline ids; returns the user id it resolved.

    :param user_id: the user to look up; ``"me"`` (the token's owner) when not given.
    """
    request = service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=user_id or "me"))
    response = yield Call("GetUser", request, f"looking up user {user_id or 'me'}")
    return str(response.user.id)
