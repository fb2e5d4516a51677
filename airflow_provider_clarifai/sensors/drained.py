"""ClarifaiDrainedSensor: wait until no run of a scope (a version, a pipeline, an app or a nodepool) is
in some states, such as "until the nodepool is drained of RUNNING runs".

It is the run sensor's counterpart for a scope rather than given runs, with the same three modes. Each
look reads one page of one run per pipeline version (a nodepool: one request); deferred, the trigger
(:class:`~airflow_provider_clarifai.triggers.drained.ClarifaiDrainedTrigger`) looks with the asyncio
hook, through the same request budget, until the scope is drained or the deadline passes.

.. seealso:: ``docs/operators/nodepool-maintenance.rst``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)

from airflow_provider_clarifai.common import ID_TEMPLATE_FIELDS, ClarifaiTaskMixin, check_state_list
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.scopes import RunScope
from airflow_provider_clarifai.status import PipelineRunStatus, format_statuses, parse_statuses

if TYPE_CHECKING:
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.scopes import ScopeIds

#: Grace past the trigger's own deadline before Airflow's deferral timeout (the trigger ends first).
DEFERRAL_GRACE_SECONDS = 120


class ClarifaiDrainedSensor(ClarifaiTaskMixin, BaseSensorOperator):
    """Wait until no run of the scope is in ``drained_of`` (poke, reschedule or deferrable).

    Succeeds (returns ``None``) once a look finds no such run; times out after ``timeout`` as any sensor
    (``soft_fail`` skips instead). A wrong id, nodepool or token fails at once, without retries.

    :param drained_of: the states the scope must be drained of, by name (``["RUNNING"]``). Templated.
    :param scope: ``"version"`` (default), ``"pipeline"``, ``"app"`` or ``"nodepool"``, as for the pause,
        resume and cancel operators.
    :param compute_cluster_id: the compute cluster of ``scope="nodepool"``. Templated.
    :param nodepool_id: the nodepool of ``scope="nodepool"``. Templated.
    :param clarifai_conn_id: the Airflow connection of type ``clarifai``. Templated.
    :param user_id: the user; else from ``config_lock_path`` or the connection. Templated.
    :param app_id: the app; else from ``config_lock_path`` or the connection. Templated.
    :param pipeline_id: the pipeline; else from ``config_lock_path``. Templated.
    :param pipeline_version_id: the pipeline version; else from ``config_lock_path``. Templated.
    :param config_lock_path: the pipeline's ``config-lock.yaml``. Templated.
    :param deferrable: wait in the triggerer (no worker slot held).
    :param api_retry_policy: how API calls are retried (a ``RetryPolicy``, a dict, or ``None``).
    :param request_timeout: deadline of each API call in seconds; default: the connection's.
    :param \\*\\*kwargs: passed to ``BaseSensorOperator`` (``timeout``, ``poke_interval``, ``mode``,
        ``soft_fail``, ...).
    """

    template_fields: Sequence[str] = (*ID_TEMPLATE_FIELDS, "drained_of", "compute_cluster_id", "nodepool_id")
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        drained_of: list[str],
        scope: str = "version",
        compute_cluster_id: str | None = None,
        nodepool_id: str | None = None,
        clarifai_conn_id: str = "clarifai_default",
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        api_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        if deferrable and kwargs.get("mode") == "reschedule":
            raise ClarifaiConfigurationError(
                "ClarifaiDrainedSensor: deferrable=True already frees the worker slot; drop "
                "mode='reschedule'."
            )
        super().__init__(**kwargs)
        check_state_list("drained_of", drained_of, task_id=self.task_id, templated=True)
        self.scope = RunScope.parse(scope)
        self._init_clarifai(
            clarifai_conn_id=clarifai_conn_id,
            user_id=user_id,
            app_id=app_id,
            pipeline_id=pipeline_id,
            pipeline_version_id=pipeline_version_id,
            config_lock_path=config_lock_path,
            api_retry_policy=api_retry_policy,
            request_timeout=request_timeout,
        )
        self.drained_of = drained_of
        self.compute_cluster_id, self.nodepool_id = compute_cluster_id, nodepool_id
        self.deferrable = deferrable

    def _statuses(self) -> frozenset[PipelineRunStatus]:
        try:
            statuses = parse_statuses(self.drained_of)
        except (TypeError, ValueError) as error:
            raise ClarifaiConfigurationError(
                f"drained_of of task {self.task_id!r}: {error}. Write a list of state names, e.g. "
                "['RUNNING']."
            ) from None
        if not statuses:
            raise ClarifaiConfigurationError(f"drained_of of task {self.task_id!r} names no state.")
        return statuses

    def _where(self) -> ScopeIds:
        return self.resolve_scope_ids(self.scope, self.compute_cluster_id, self.nodepool_id)

    def poke(self, context: Any) -> bool:
        """One look: ``True`` once no run of the scope is in ``drained_of``.

        :param context: the task context.
        """
        from airflow_provider_clarifai.scopes import find_one

        where, statuses = self._where(), self._statuses()
        try:
            with self.hook.time_limit(float(self.poke_interval) + self.hook.timeout):
                found = find_one(self.hook, where, statuses)
        except ClarifaiError as error:
            if error.retryable:
                self.log.warning("Could not look at %s (will look again): %s", where.describe(), error)
                return False
            raise
        finally:
            self.close_hook()
        if found is None:
            self.log.info("%s has no run in %s.", where.describe(), format_statuses(statuses))
            return True
        self.log.info(
            "%s still has runs in %s, such as %s (%s) of %s/%s/%s.",
            where.describe(),
            format_statuses(statuses),
            found.run_id,
            found.status_name,
            found.app_id,
            found.pipeline_id,
            found.pipeline_version_id,
        )
        return False

    def execute(self, context: Any) -> Any:
        """Poke or reschedule as any sensor; deferrable: look once, then wait in the triggerer.

        :param context: the task context.
        """
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_clarifai.triggers.drained import ClarifaiDrainedTrigger

        deadline = self.hook.clock.now() + float(self.timeout)
        try:
            if self.poke(context):
                return None
        except ClarifaiError as error:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
            raise
        where = self._where()
        self.defer(
            trigger=ClarifaiDrainedTrigger(
                clarifai_conn_id=self.clarifai_conn_id,
                scope=where.scope.value,
                user_id=where.user_id,
                app_id=where.app_id,
                pipeline_id=where.pipeline_id,
                pipeline_version_id=where.pipeline_version_id,
                compute_cluster_id=where.compute_cluster_id,
                nodepool_id=where.nodepool_id,
                drained_of=sorted(str(status) for status in self._statuses()),
                poll_interval=float(self.poke_interval),
                deadline=deadline,
                request_timeout=self.request_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(deadline - self.hook.clock.now(), 0) + DEFERRAL_GRACE_SECONDS),
        )

    def execute_complete(self, context: Any, event: Any = None) -> None:
        """End the task as the trigger's event says: drained, timed out, or an error.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        status = event.get("status") if isinstance(event, dict) else None
        message = str(event.get("message", "")) if isinstance(event, dict) else repr(event)
        if status == "drained":
            self.log.info("%s", message)
            return
        if self.soft_fail:
            raise AirflowSkipException(f"Skipping due to soft_fail: {message}")
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        raise ClarifaiError(f"Waiting for the scope to drain failed: {message}")
