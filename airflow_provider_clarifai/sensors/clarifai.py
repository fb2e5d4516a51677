"""ClarifaiPipelineRunSensor: wait for a pipeline run to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)

from airflow_provider_clarifai.common import ID_TEMPLATE_FIELDS, ClarifaiTaskMixin, check_state_list
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.status import PipelineRunStatus
from airflow_provider_clarifai.waiting import DEFERRAL_GRACE_SECONDS, deferral_timeout

if TYPE_CHECKING:
    from airflow_provider_clarifai.exceptions import ClarifaiError
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.waiter import RunWaiter
    from airflow_provider_clarifai.waiting import RunWaitEvent, RunWaitSpec

__all__ = ["DEFERRAL_GRACE_SECONDS", "ClarifaiPipelineRunSensor"]


class ClarifaiPipelineRunSensor(ClarifaiTaskMixin, BaseSensorOperator):
    """Wait for a Clarifai pipeline run to succeed; fail fast when it fails.

    Success is ``JOB_COMPLETED`` by default; ``JOB_FAILED``, ``JOB_CANCELLED`` and
    ``JOB_UNEXPECTED_ERROR`` fail at once. Any other terminal state, and any state code this provider
    does not know, also fails (fail closed). ``JOB_PAUSED`` is not finished: the sensor logs it and keeps
    waiting, bounded by ``timeout``.

    Works the same in all three modes, on Airflow 2.11 and 3.x: ``mode="poke"`` (holds a worker slot),
    ``mode="reschedule"`` (frees the slot between pokes) and ``deferrable=True`` (waits in the
    triggerer; the default comes from ``[operators] default_deferrable``). ``poke_interval``, ``timeout``
    and ``soft_fail`` are honoured in every mode: with ``soft_fail`` any failure (the run failed, the wait
    timed out, the run or token is wrong) skips the task. A deferred sensor's deadline is computed once,
    so a triggerer restart does not extend it; ``execution_timeout``, which Airflow does not enforce
    while a task is deferred, also bounds it.

    Returns the run's summary (``status``, ``started_at``, ``ended_at``,
    ``total_run_duration_seconds``, ...).

    .. seealso::
        :doc:`/operators/sensor`

    :param pipeline_version_run_id: the run to wait for (templated).
    :param clarifai_conn_id: the Airflow connection of type ``clarifai`` (templated).
    :param user_id: the pipeline's user; else from ``config_lock_path`` or the connection (templated).
    :param app_id: the pipeline's app; else from ``config_lock_path`` or the connection (templated).
    :param pipeline_id: the pipeline; else from ``config_lock_path`` (templated).
    :param pipeline_version_id: the pipeline version; else from ``config_lock_path`` (templated).
    :param config_lock_path: a ``config-lock.yaml``; relative to the DAG file's folder (templated).
    :param success_statuses: states that end the wait successfully (default JOB_COMPLETED).
    :param failure_statuses: states that fail it (default JOB_FAILED, JOB_CANCELLED,
        JOB_UNEXPECTED_ERROR).
    :param cancel_on_timeout: cancel the run when the sensor times out.
    :param stream_logs: write the run's log lines into the task log (in reschedule mode, once, when the
        run has finished, since each reschedule starts a fresh process).
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param api_retry_policy: how API calls are retried (a :class:`RetryPolicy` or a dict of its settings).
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    :param \\*\\*kwargs: passed to ``BaseSensorOperator`` (``poke_interval``, ``timeout``, ``mode``,
        ``soft_fail``, ...).
    """

    template_fields: Sequence[str] = (*ID_TEMPLATE_FIELDS, "pipeline_version_run_id")
    operator_extra_links = (ClarifaiPipelineRunLink(),)
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        pipeline_version_run_id: str,
        clarifai_conn_id: str = "clarifai_default",
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | None = None,
        success_statuses: Iterable[str | PipelineRunStatus] | None = None,
        failure_statuses: Iterable[str | PipelineRunStatus] | None = None,
        cancel_on_timeout: bool = False,
        stream_logs: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        api_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        _check_sensor_arguments(kwargs, deferrable)
        super().__init__(**kwargs)
        check_state_list("success_statuses", success_statuses, task_id=self.task_id)
        check_state_list("failure_statuses", failure_statuses, task_id=self.task_id)
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
        self.pipeline_version_run_id = pipeline_version_run_id
        self.success_statuses = list(success_statuses) if success_statuses is not None else None
        self.failure_statuses = list(failure_statuses) if failure_statuses is not None else None
        self._spec()  # Not templated: a wrong state name fails when the DAG is parsed, before any call.
        self.cancel_on_timeout = cancel_on_timeout
        self.stream_logs = stream_logs
        self.deferrable = deferrable
        self._waiting_after_last_poke = False
        self._poke_started: float | None = None
        self._ids: PipelineVersionIds | None = None
        self._waiter: RunWaiter | None = None

    # Shared by all modes ------------------------------------------------------------------------

    def _spec(self) -> RunWaitSpec:
        from airflow_provider_clarifai.waiting import RunWaitSpec

        return RunWaitSpec.build(self.success_statuses, self.failure_statuses)

    def _prepare(self, context: Any) -> tuple[PipelineVersionIds, RunWaiter]:
        """Resolve the ids and build the waiter, once per task process (a poke-mode sensor keeps both)."""
        from airflow_provider_clarifai.ids import validate_run_id
        from airflow_provider_clarifai.waiter import LogMode, RunWaiter

        if self._ids is None or self._waiter is None:
            self.pipeline_version_run_id = validate_run_id(self.pipeline_version_run_id)
            self._ids = self.resolve_ids()
            self.persist_run_link(context, self._ids, self.pipeline_version_run_id)
            self._waiter = RunWaiter(
                self._ids,
                self.pipeline_version_run_id,
                self._spec(),
                log=self.log,
                now=self.hook.clock.now,
                cancel_on_timeout=self.cancel_on_timeout,
                logs=LogMode.choose(
                    self.stream_logs, each_look_is_a_new_process=self.reschedule and not self.deferrable
                ),
            )
        return self._ids, self._waiter

    def _look(self, ids: PipelineVersionIds, waiter: RunWaiter, time_left: float) -> Any:
        """One look at the run: ``None`` while it goes on, else the task's result (or its exception)."""
        from airflow_provider_clarifai.effects import RunCalls

        waiter.deadline = waiter.now() + time_left
        event = RunCalls(self.hook).run(waiter.look())
        return None if event is None else self._settle(event, waiter.error)

    def _settle(self, event: RunWaitEvent, error: ClarifaiError | None = None) -> Any:
        """The task's result for the wait's event, the same in every mode (``execute_complete`` too)."""
        from airflow_provider_clarifai.exceptions import ClarifaiError, ClarifaiWatchedRunFailedError
        from airflow_provider_clarifai.waiting import settle

        try:
            return settle(
                event,
                self.log,
                failed=ClarifaiWatchedRunFailedError,
                timed_out=AirflowSensorTimeout,
                error=error,
            )
        except ClarifaiWatchedRunFailedError:
            raise
        except ClarifaiError as failure:
            # A sensor cannot fix a wrong run id or token by retrying: fail (or skip, with soft_fail).
            raise _fail_without_retry(failure) from failure

    # Poke and reschedule ------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        """Check the run; then poke, reschedule or defer until it is done.

        :param context: the task context.
        """
        try:
            ids, waiter = self._prepare(context)
            if self.deferrable:
                try:
                    return self._execute_deferrable(context, ids, waiter)
                except AirflowFailException as error:
                    # The look before deferring runs outside Airflow's soft_fail handling: apply it here,
                    # as BaseSensorOperator does in poke and reschedule mode.
                    if self.soft_fail:
                        raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
                    raise
            self._waiting_after_last_poke = False
            self._poke_started = time.monotonic()
            try:
                return super().execute(context)
            except (AirflowSensorTimeout, AirflowSkipException):
                # BaseSensorOperator raises these for its timeout after a poke that found the run still
                # going; a failure raised by poke itself leaves the flag unset.
                if self._waiting_after_last_poke and self.cancel_on_timeout:
                    from airflow_provider_clarifai.effects import RunCalls

                    RunCalls(self.hook).run(waiter.cancel("the sensor timed out"))
                raise
        finally:
            # A worker runs many tasks in one process: leave no channel open behind this one.
            self.close_hook()

    def _time_left(self, context: Any) -> float:
        """Seconds the sensor's ``timeout`` has left, as Airflow's sensor base counts them."""
        if not self.reschedule:
            started = self._poke_started if self._poke_started is not None else time.monotonic()
            return max(float(self.timeout) - (time.monotonic() - started), 0.0)
        # Reschedule mode: each poke is a new process; the wait started at the first reschedule.
        first = None
        get_first = getattr(context["ti"], "get_first_reschedule_date", None)
        if callable(get_first):
            try:
                first = get_first(context)
            except Exception:  # an older Airflow or a test double: bound by the whole timeout instead
                first = None
        if first is None:
            return float(self.timeout)
        from airflow.providers.common.compat.sdk import timezone

        return max(float(self.timeout) - (timezone.utcnow() - first).total_seconds(), 0.0)

    def poke(self, context: Any) -> Any:
        """One look at the run.

        :param context: the task context.
        """
        from airflow.providers.common.compat.sdk import PokeReturnValue

        self._waiting_after_last_poke = False
        ids, waiter = self._prepare(context)
        summary = self._look(ids, waiter, self._time_left(context))
        if summary is not None:
            return PokeReturnValue(is_done=True, xcom_value=summary)
        self._waiting_after_last_poke = True
        return False

    # Deferrable ---------------------------------------------------------------------------------

    def _execute_deferrable(self, context: Any, ids: PipelineVersionIds, waiter: RunWaiter) -> Any:
        from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

        limits = [float(self.timeout)]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        remaining = min(limits)
        # The deadline is fixed before the first look, so that look counts against the wait too.
        deadline = waiter.now() + remaining
        summary = self._look(ids, waiter, remaining)
        if summary is not None:
            return summary
        success, failure = waiter.spec.to_lists()
        self.defer(
            trigger=ClarifaiPipelineRunTrigger(
                clarifai_conn_id=self.clarifai_conn_id,
                user_id=ids.user_id,
                app_id=ids.app_id,
                pipeline_id=ids.pipeline_id,
                pipeline_version_id=ids.pipeline_version_id,
                run_id=self.pipeline_version_run_id,
                poll_interval=float(self.poke_interval),
                deadline=deadline,
                success_statuses=success,
                failure_statuses=failure,
                cancel_on_timeout=self.cancel_on_timeout,
                stream_logs=self.stream_logs,
                log_cursor=waiter.cursor.to_dict(),
                retry_policy=self.hook.retry_policy.to_dict(),
                request_timeout=self.request_timeout,
            ),
            method_name="execute_complete",
            timeout=deferral_timeout(deadline, waiter.now(), float(self.poke_interval)),
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Turn the trigger's event into the task's outcome; anything unexpected fails.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        from airflow_provider_clarifai.waiting import RunWaitEvent

        return self._settle(RunWaitEvent.from_payload(event))


def _check_sensor_arguments(kwargs: dict[str, Any], deferrable: object) -> None:
    """Refuse sensor arguments Airflow's sensor base would take badly, before it sees them."""
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
    from airflow_provider_clarifai.validate import seconds

    for name in ("poke_interval", "timeout"):
        value = kwargs.get(name)
        if value is not None:
            # NaN passes Airflow's own "not negative" check and never times out; infinity overflows.
            seconds(name, value.total_seconds() if isinstance(value, timedelta) else value, allow_zero=True)
    if deferrable is True and kwargs.get("mode") == "reschedule":
        raise ClarifaiConfigurationError(
            f"Task {kwargs.get('task_id')!r} has mode='reschedule' and deferrable=True: a deferred sensor "
            "waits in the triggerer and never reschedules. Keep one: deferrable=True (no worker slot "
            "while waiting), or mode='reschedule' without deferrable."
        )


def _fail_without_retry(error: ClarifaiError) -> Exception:
    """A sensor cannot fix a wrong run id or token by retrying: fail (or skip, with soft_fail)."""
    if isinstance(error, AirflowFailException):
        return error
    return AirflowFailException(str(error))
