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

from airflow_provider_clarifai.common import (
    ID_TEMPLATE_FIELDS,
    ClarifaiTaskMixin,
    RunLogStreamer,
    check_state_list,
    with_log_tail,
)
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.status import PipelineRunStatus
from airflow_provider_clarifai.waiting import DEFERRAL_GRACE_SECONDS, deferral_timeout

if TYPE_CHECKING:
    from airflow_provider_clarifai.exceptions import ClarifaiError
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.runs import PipelineRun
    from airflow_provider_clarifai.waiting import RunWaitSpec

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
        self._last_state: str | None = None
        self._streamer: RunLogStreamer | None = None
        self._ids: PipelineVersionIds | None = None

    # Shared by all modes ------------------------------------------------------------------------

    def _spec(self) -> RunWaitSpec:
        from airflow_provider_clarifai.waiting import RunWaitSpec

        return RunWaitSpec.build(self.success_statuses, self.failure_statuses)

    def _prepare(self, context: Any) -> PipelineVersionIds:
        from airflow_provider_clarifai.ids import validate_run_id

        if self._ids is None:
            self.pipeline_version_run_id = validate_run_id(self.pipeline_version_run_id)
            self._ids = self.resolve_ids()
            self.persist_run_link(context, self._ids, self.pipeline_version_run_id)
            self._streamer = RunLogStreamer(self.hook, self._ids, self.pipeline_version_run_id, self.log)
        return self._ids

    def _read_run(self, ids: PipelineVersionIds, time_left: float | None) -> PipelineRun | None:
        """The run, or ``None`` after a transient error the retry policy could not absorb.

        :param ids: the pipeline version.
        :param time_left: the most seconds the read may take, retries included.
        """
        from airflow_provider_clarifai.exceptions import ClarifaiError

        try:
            with self.hook.time_limit(time_left):
                return self.hook.get_run(ids, self.pipeline_version_run_id)
        except ClarifaiError as error:
            if error.retryable:
                self.log.warning(
                    "Could not read run %s, will try again: %s", self.pipeline_version_run_id, error
                )
                return None
            raise _fail_without_retry(error) from error

    def _note_state(self, run: PipelineRun) -> None:
        if run.status_name == self._last_state:
            return
        self._last_state = run.status_name
        if run.known_status is PipelineRunStatus.PAUSED:
            self.log.info("Run %s is JOB_PAUSED: still waiting; a paused run is not finished.", run.run_id)
        else:
            self.log.info("Run %s is %s.", run.run_id, run.status_name)

    def _finish(self, run: PipelineRun, spec: RunWaitSpec) -> dict[str, Any] | None:
        """Return the summary on success, raise on failure, ``None`` while the run goes on."""
        from airflow_provider_clarifai.exceptions import ClarifaiWatchedRunFailedError
        from airflow_provider_clarifai.waiting import WRAP_UP_SECONDS, Verdict, failure_message

        verdict = spec.judge(run)
        if verdict is Verdict.WAITING:
            return None
        streamer = self._streamer
        if streamer is not None:
            # Whatever the mode, the end of the run's log reaches the task log (or the failure).
            streamer.pump(echo=self.stream_logs, time_left=WRAP_UP_SECONDS)
        tail = streamer.tail if streamer is not None else []
        if verdict is Verdict.SUCCESS:
            self.log.info("Run %s is %s: done.", run.run_id, run.status_name)
            return run.to_dict()
        raise ClarifaiWatchedRunFailedError(with_log_tail(failure_message(run, spec), tail))

    # Poke and reschedule ------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        """Check the run; then poke, reschedule or defer until it is done.

        :param context: the task context.
        """
        try:
            ids = self._prepare(context)
            if self.deferrable:
                try:
                    return self._execute_deferrable(context, ids)
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
                    self.cancel_run(ids, self.pipeline_version_run_id, "the sensor timed out")
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
        ids = self._prepare(context)
        time_left = self._time_left(context)
        run = self._read_run(ids, time_left)
        if run is not None:
            self._note_state(run)
            if self.stream_logs and not self.reschedule and self._streamer is not None:
                self._streamer.pump(time_left=self._time_left(context))
            summary = self._finish(run, self._spec())
            if summary is not None:
                return PokeReturnValue(is_done=True, xcom_value=summary)
        self._waiting_after_last_poke = True
        return False

    # Deferrable ---------------------------------------------------------------------------------

    def _execute_deferrable(self, context: Any, ids: PipelineVersionIds) -> Any:
        from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

        spec = self._spec()
        limits = [float(self.timeout)]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        remaining = min(limits)
        # The deadline is fixed before the first look, so that look counts against the wait too.
        deadline = time.time() + remaining
        run = self._read_run(ids, remaining)
        if run is not None:
            self._note_state(run)
            summary = self._finish(run, spec)
            if summary is not None:
                return summary
        success, failure = spec.to_lists()
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
                log_cursor=self._streamer.cursor.to_dict() if self._streamer else None,
                retry_policy=self.hook.retry_policy.to_dict(),
                request_timeout=self.request_timeout,
            ),
            method_name="execute_complete",
            timeout=deferral_timeout(deadline, time.time(), float(self.poke_interval)),
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Turn the trigger's event into the task's outcome; anything unexpected fails.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        from airflow_provider_clarifai.exceptions import ClarifaiError, ClarifaiWatchedRunFailedError
        from airflow_provider_clarifai.waiting import EventStatus, RunWaitEvent

        result = RunWaitEvent.from_payload(event)
        if result.status is EventStatus.SUCCESS:
            self.log.info(result.message)
            return result.run
        message = with_log_tail(result.message, result.log_tail)
        if result.status is EventStatus.FAILURE:
            raise ClarifaiWatchedRunFailedError(message)
        if result.status is EventStatus.TIMEOUT:
            raise AirflowSensorTimeout(message)
        try:
            result.raise_for_error()
        except ClarifaiError as error:
            raise _fail_without_retry(error) from error
        raise _fail_without_retry(ClarifaiError(f"Unhandled event {result.status}."))


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
