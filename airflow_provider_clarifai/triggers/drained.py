"""ClarifaiDrainedTrigger: wait in the triggerer until no run of a scope is in some states.

Used by :class:`~airflow_provider_clarifai.sensors.drained.ClarifaiDrainedSensor`. Each look goes through
the asyncio hook (its request budget, retry policy and deadlines), cut to the time the wait has left;
kwargs are primitives (ids, states, an absolute deadline), never the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_clarifai.exceptions import ClarifaiError
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import SYSTEM_CLOCK, RetryClock
from airflow_provider_clarifai.scopes import RunScope, ScopeIds, afind_one
from airflow_provider_clarifai.status import format_statuses, parse_statuses
from airflow_provider_clarifai.triggers.clarifai import _preload_heavy_modules
from airflow_provider_clarifai.validate import seconds


class ClarifaiDrainedTrigger(BaseTrigger):
    """Yield ``{"status": "drained"}`` once no run of the scope is in ``drained_of``, or ``"timeout"`` at
    the deadline, or ``"error"`` on an error retrying cannot fix.

    :param clarifai_conn_id: the Airflow connection; read in the triggerer.
    :param scope: ``"version"``, ``"pipeline"``, ``"app"`` or ``"nodepool"``.
    :param user_id: the user.
    :param app_id: the app (not for a nodepool).
    :param pipeline_id: the pipeline (version and pipeline scopes).
    :param pipeline_version_id: the version (version scope).
    :param compute_cluster_id: the compute cluster (nodepool scope).
    :param nodepool_id: the nodepool (nodepool scope).
    :param drained_of: state names.
    :param poll_interval: seconds between two looks.
    :param deadline: UNIX seconds after which the wait times out.
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    """

    #: How the trigger tells time; tests replace it.
    clock: RetryClock = SYSTEM_CLOCK

    def __init__(
        self,
        *,
        clarifai_conn_id: str,
        scope: str,
        user_id: str,
        app_id: str | None,
        pipeline_id: str | None,
        pipeline_version_id: str | None,
        compute_cluster_id: str | None,
        nodepool_id: str | None,
        drained_of: Sequence[str],
        poll_interval: float,
        deadline: float,
        request_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.clarifai_conn_id = clarifai_conn_id
        self.where = ScopeIds(
            RunScope.parse(scope),
            user_id,
            app_id,
            pipeline_id,
            pipeline_version_id,
            compute_cluster_id,
            nodepool_id,
        )
        self.statuses = parse_statuses(list(drained_of))
        self.poll_interval = seconds("poll_interval", poll_interval)
        self.deadline = float(deadline)
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs."""
        where = self.where
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "clarifai_conn_id": self.clarifai_conn_id,
                "scope": where.scope.value,
                "user_id": where.user_id,
                "app_id": where.app_id,
                "pipeline_id": where.pipeline_id,
                "pipeline_version_id": where.pipeline_version_id,
                "compute_cluster_id": where.compute_cluster_id,
                "nodepool_id": where.nodepool_id,
                "drained_of": sorted(str(status) for status in self.statuses),
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "request_timeout": self.request_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Look every ``poll_interval`` until drained or the deadline."""
        await _preload_heavy_modules()
        hook = ClarifaiHook(self.clarifai_conn_id, timeout=self.request_timeout, clock=self.clock)
        states = format_statuses(self.statuses)
        versions: list[PipelineVersionIds] | None = None
        while True:
            left = self.deadline - self.clock.now()
            if left <= 0:
                yield TriggerEvent(
                    {"status": "timeout", "message": f"{self.where.describe()} still has runs in {states}."}
                )
                return
            drained = False
            try:
                with hook.time_limit(left):
                    found, versions = await afind_one(hook, self.where, self.statuses, versions)
                drained = found is None
            except ClarifaiError as error:
                if not error.retryable:
                    yield TriggerEvent(
                        {"status": "error", "message": str(error), "error_class": type(error).__name__}
                    )
                    return
                self.log.warning("Could not look at %s (will look again): %s", self.where.describe(), error)
            if drained:
                yield TriggerEvent(
                    {"status": "drained", "message": f"{self.where.describe()} has no run in {states}."}
                )
                return
            await self.clock.asleep(min(self.poll_interval, max(self.deadline - self.clock.now(), 0.0)))
