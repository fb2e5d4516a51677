"""The listings of ``ClarifaiHook``: an app's pipelines, a pipeline's versions, and the runs on a nodepool.

Written as every hook operation is: the arguments are checked first (nothing is sent for a wrong one),
then a flow free of I/O yields its calls (``_flows.Call``) and the hook drives it, blocking or with
asyncio, through the one retry-and-deadline core and the request budget (``_execution.py``). Runs are
converted by ``_flows.run_from_message``, the one converter for every run. They live here rather than in
``_operations.py`` and ``_flows.py`` to keep each module short; :class:`ClarifaiListingMixin` is the part
of ``ClarifaiHook`` that offers them.

Every listing reads pages from 1 and moves on only after a full page; ``max_items`` / ``max_runs`` stops
once that many were collected, so at most ``ceil(max / per_page)`` pages are read.

Cheap to import (the hook imports it at DAG parse time): ``grpc`` and ``clarifai_grpc`` load on the first
call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiNotFoundError
from airflow_provider_clarifai.ids import validate_optional_id
from airflow_provider_clarifai.runs import PipelineInfo, PipelineRun, PipelineVersionInfo
from airflow_provider_clarifai.status import PipelineRunStatus, parse_statuses
from airflow_provider_clarifai.validate import quote

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks._flows import Call
    from airflow_provider_clarifai.retry import RetryPolicy

__all__ = ["DEFAULT_PER_PAGE", "DEFAULT_RUNS_PER_PAGE", "MAX_PER_PAGE", "ClarifaiListingMixin"]

T = TypeVar("T")
Flow = Generator["Call", Any, T]

#: Pipelines or versions per page, by default.
DEFAULT_PER_PAGE = 128
#: Runs per page of a nodepool listing, by default.
DEFAULT_RUNS_PER_PAGE = 1000
MAX_PER_PAGE = 1000


class ClarifaiListingMixin:
    """The listing methods of ``ClarifaiHook``, each with an asyncio twin prefixed with ``a``.

    Ids are checked before anything is sent (:class:`ClarifaiConfigurationError`); Clarifai's errors come
    through the hook's one error mapping, so an unknown app, pipeline or nodepool raises
    :class:`ClarifaiNotFoundError`.
    """

    if TYPE_CHECKING:

        def _run(self, flow: Generator[Call, Any, T], policy: RetryPolicy | None = None) -> T: ...

        async def _arun(self, flow: Generator[Call, Any, T]) -> T: ...

    def list_pipelines(
        self, user_id: str, app_id: str, *, per_page: int = DEFAULT_PER_PAGE, max_items: int | None = None
    ) -> list[PipelineInfo]:
        """List an app's pipelines, reading every page unless ``max_items``.

        :param user_id: the user that owns the app.
        :param app_id: the app.
        :param per_page: pipelines per page (1 to 1000).
        :param max_items: stop once this many were read (``None``: all).
        :raises ClarifaiNotFoundError: no such user or app visible to the token.
        """
        return self._run(_pipelines_flow(user_id, app_id, per_page, max_items))

    async def alist_pipelines(
        self, user_id: str, app_id: str, *, per_page: int = DEFAULT_PER_PAGE, max_items: int | None = None
    ) -> list[PipelineInfo]:
        """Asyncio twin of :meth:`list_pipelines`.

        :param user_id: the user that owns the app.
        :param app_id: the app.
        :param per_page: pipelines per page (1 to 1000).
        :param max_items: stop once this many were read (``None``: all).
        """
        return await self._arun(_pipelines_flow(user_id, app_id, per_page, max_items))

    def list_pipeline_versions(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        *,
        per_page: int = DEFAULT_PER_PAGE,
        max_items: int | None = None,
    ) -> list[PipelineVersionInfo]:
        """List a pipeline's versions, reading every page unless ``max_items``.

        :param user_id: the user that owns the app.
        :param app_id: the app that holds the pipeline.
        :param pipeline_id: the pipeline.
        :param per_page: versions per page (1 to 1000).
        :param max_items: stop once this many were read (``None``: all).
        :raises ClarifaiNotFoundError: no such user, app or pipeline visible to the token.
        """
        return self._run(_versions_flow(user_id, app_id, pipeline_id, per_page, max_items))

    async def alist_pipeline_versions(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        *,
        per_page: int = DEFAULT_PER_PAGE,
        max_items: int | None = None,
    ) -> list[PipelineVersionInfo]:
        """Asyncio twin of :meth:`list_pipeline_versions`.

        :param user_id: the user that owns the app.
        :param app_id: the app that holds the pipeline.
        :param pipeline_id: the pipeline.
        :param per_page: versions per page (1 to 1000).
        :param max_items: stop once this many were read (``None``: all).
        """
        return await self._arun(_versions_flow(user_id, app_id, pipeline_id, per_page, max_items))

    def list_nodepool_runs(
        self,
        user_id: str,
        compute_cluster_id: str,
        nodepool_id: str,
        *,
        statuses: Iterable[PipelineRunStatus | str | int] | None = None,
        per_page: int = DEFAULT_RUNS_PER_PAGE,
        max_runs: int | None = None,
    ) -> list[PipelineRun]:
        """List a user's runs on one nodepool, across apps, pipelines and versions, newest first.

        Each run names its own app, pipeline and version (``app_id``, ``pipeline_id``,
        ``pipeline_version_id``), and its ``nodepool_id`` and ``compute_cluster_id``.

        :param user_id: the user the runs and the nodepool belong to.
        :param compute_cluster_id: the nodepool's compute cluster.
        :param nodepool_id: the nodepool.
        :param statuses: only runs in these states (names such as ``"RUNNING"`` or members).
        :param per_page: runs per page (1 to 1000).
        :param max_runs: stop once this many were read (``None``: all).
        :raises ClarifaiNotFoundError: the user has no such nodepool or compute cluster (or the token
            cannot see it); the message names it.
        """
        flow = _nodepool_runs_flow(user_id, compute_cluster_id, nodepool_id, statuses, per_page, max_runs)
        return self._run(flow)

    async def alist_nodepool_runs(
        self,
        user_id: str,
        compute_cluster_id: str,
        nodepool_id: str,
        *,
        statuses: Iterable[PipelineRunStatus | str | int] | None = None,
        per_page: int = DEFAULT_RUNS_PER_PAGE,
        max_runs: int | None = None,
    ) -> list[PipelineRun]:
        """Asyncio twin of :meth:`list_nodepool_runs`.

        :param user_id: the user the runs and the nodepool belong to.
        :param compute_cluster_id: the nodepool's compute cluster.
        :param nodepool_id: the nodepool.
        :param statuses: only runs in these states.
        :param per_page: runs per page (1 to 1000).
        :param max_runs: stop once this many were read (``None``: all).
        """
        flow = _nodepool_runs_flow(user_id, compute_cluster_id, nodepool_id, statuses, per_page, max_runs)
        return await self._arun(flow)


# Arguments -------------------------------------------------------------------------------------------


def _required_id(value: object, what: str) -> str:
    fix = f"Pass {what} exactly as Clarifai shows it."
    checked = validate_optional_id(value, what=what, fix=fix)
    if checked is None:
        raise ClarifaiConfigurationError(f"{what} is required and was {quote(value)}. {fix}")
    return checked


def _per_page(per_page: object) -> int:
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise ClarifaiConfigurationError(
            f"per_page must be a whole number from 1 to {MAX_PER_PAGE}, got {quote(per_page)}."
        )
    return per_page


def _limit(value: object, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ClarifaiConfigurationError(f"{what} must be a whole number >= 1 or None, got {quote(value)}.")
    return value


# Flows -----------------------------------------------------------------------------------------------


def _pipelines_flow(
    user_id: object, app_id: object, per_page: object, max_items: object
) -> Flow[list[PipelineInfo]]:
    user, app = _required_id(user_id, "user_id"), _required_id(app_id, "app_id")
    size, limit = _per_page(per_page), _limit(max_items, "max_items")
    return _pipelines(user, app, size, limit)


def _pipelines(user_id: str, app_id: str, per_page: int, limit: int | None) -> Flow[list[PipelineInfo]]:
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2

    from airflow_provider_clarifai.hooks._flows import Call, _timestamp, paged

    user_app = resources_pb2.UserAppIDSet(user_id=user_id, app_id=app_id)

    def call(page: int) -> Call:
        request = service_pb2.ListPipelinesRequest(user_app_id=user_app, page=page, per_page=per_page)
        return Call("ListPipelines", request, f"listing the pipelines of {user_id}/{app_id}, page {page}")

    def items_of(response: Any) -> list[PipelineInfo]:
        return [
            PipelineInfo(
                message.user_id or user_id,
                message.app_id or app_id,
                message.id,
                _timestamp(message, "created_at"),
            )
            for message in response.pipelines
        ]

    return (yield from paged(call, items_of, lambda item: item.pipeline_id, per_page, limit))


def _versions_flow(
    user_id: object, app_id: object, pipeline_id: object, per_page: object, max_items: object
) -> Flow[list[PipelineVersionInfo]]:
    user, app = _required_id(user_id, "user_id"), _required_id(app_id, "app_id")
    pipeline = _required_id(pipeline_id, "pipeline_id")
    size, limit = _per_page(per_page), _limit(max_items, "max_items")
    return _versions(user, app, pipeline, size, limit)


def _versions(
    user_id: str, app_id: str, pipeline_id: str, per_page: int, limit: int | None
) -> Flow[list[PipelineVersionInfo]]:
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2

    from airflow_provider_clarifai.hooks._flows import Call, _timestamp, paged

    user_app = resources_pb2.UserAppIDSet(user_id=user_id, app_id=app_id)
    where = f"{user_id}/{app_id}/{pipeline_id}"

    def call(page: int) -> Call:
        request = service_pb2.ListPipelineVersionsRequest(
            user_app_id=user_app, pipeline_id=pipeline_id, page=page, per_page=per_page
        )
        return Call("ListPipelineVersions", request, f"listing the versions of pipeline {where}, page {page}")

    def items_of(response: Any) -> list[PipelineVersionInfo]:
        return [
            PipelineVersionInfo(
                message.user_id or user_id,
                message.app_id or app_id,
                message.pipeline_id or pipeline_id,
                message.id,
                _timestamp(message, "created_at"),
            )
            for message in response.pipeline_versions
        ]

    return (yield from paged(call, items_of, lambda item: item.pipeline_version_id, per_page, limit))


def _nodepool_runs_flow(
    user_id: object,
    compute_cluster_id: object,
    nodepool_id: object,
    statuses: Iterable[PipelineRunStatus | str | int] | None,
    per_page: object,
    max_runs: object,
) -> Flow[list[PipelineRun]]:
    user = _required_id(user_id, "user_id")
    cluster = _required_id(compute_cluster_id, "compute_cluster_id")
    nodepool = _required_id(nodepool_id, "nodepool_id")
    size, limit = _per_page(per_page), _limit(max_runs, "max_runs")
    try:
        wanted = parse_statuses(statuses) if statuses else frozenset()
    except ValueError as err:
        raise ClarifaiConfigurationError(f"Invalid statuses filter: {err}.") from None
    return _nodepool_runs(user, cluster, nodepool, wanted, size, limit)


def _nodepool_runs(
    user_id: str,
    compute_cluster_id: str,
    nodepool_id: str,
    statuses: frozenset[PipelineRunStatus],
    per_page: int,
    limit: int | None,
) -> Flow[list[PipelineRun]]:
    from clarifai_grpc.grpc.api import resources_pb2, service_pb2

    from airflow_provider_clarifai.hooks._flows import Call, paged, run_from_message

    codes = sorted(status.code for status in statuses)
    where = f"nodepool {nodepool_id} of compute cluster {compute_cluster_id} (user {user_id})"

    def call(page: int) -> Call:
        # The nodepool binding of ListPipelineVersionRuns: the user only, no app, pipeline or version.
        request = service_pb2.ListPipelineVersionRunsRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id=user_id),
            compute_cluster_id=compute_cluster_id,
            nodepool_id=nodepool_id,
            page=page,
            per_page=per_page,
            status_codes=codes,
        )
        return Call("ListPipelineVersionRuns", request, f"listing the runs on {where}, page {page}")

    def items_of(response: Any) -> list[PipelineRun]:
        runs = [run_from_message(message) for message in response.pipeline_version_runs]
        # Every run listed is on the nodepool asked for, whether or not the message repeats it.
        return [
            dataclasses.replace(
                run,
                nodepool_id=run.nodepool_id or nodepool_id,
                compute_cluster_id=run.compute_cluster_id or compute_cluster_id,
            )
            for run in runs
        ]

    def key(run: PipelineRun) -> Hashable:
        return (run.app_id, run.pipeline_id, run.pipeline_version_id, run.run_id)

    try:
        return (yield from paged(call, items_of, key, per_page, limit))
    except ClarifaiNotFoundError as error:
        raise _nodepool_not_found(error, user_id, compute_cluster_id, nodepool_id) from None


def _nodepool_not_found(
    error: ClarifaiNotFoundError, user_id: str, compute_cluster_id: str, nodepool_id: str
) -> ClarifaiNotFoundError:
    """The same error, with what to check for a nodepool appended to its message."""
    hint = (
        f" Nodepool {nodepool_id!r} of compute cluster {compute_cluster_id!r} was not found for user "
        f"{user_id!r}: check nodepool_id and compute_cluster_id (exactly as Clarifai shows them) and "
        "user_id: the nodepool must belong to that user, and the Airflow connection's token must act as "
        "that user."
    )
    return type(error)(
        str(error) + hint,
        code_name=error.code_name,
        code=error.code,
        description=error.description,
        details=error.details,
        req_id=error.req_id,
        method=error.method,
    )
