"""ClarifaiPipelineRunSensor: wait for a pipeline run (or several: all or any) to finish, in poke,
reschedule or deferrable mode."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

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
from airflow_provider_clarifai.waiting import DEFERRAL_GRACE_SECONDS, Require, deferral_timeout

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import XComArg
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_clarifai.exceptions import ClarifaiError
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.waiter import RunWaiter
    from airflow_provider_clarifai.waiting import RunsWaitEvent, RunWaitEvent, RunWaitSpec

__all__ = ["DEFERRAL_GRACE_SECONDS", "ClarifaiPipelineRunSensor"]


class ClarifaiPipelineRunSensor(ClarifaiTaskMixin, BaseSensorOperator):
    """Wait for a Clarifai pipeline run (or several runs of one version) to succeed; fail fast when it fails.

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

    **Several runs**: give ``run_ids`` instead of ``pipeline_version_run_id``: runs of the one pipeline
    version the ids resolve to (one sensor never mixes versions). With ``require="all"`` the sensor
    succeeds when every run succeeded and fails as soon as one failed; with ``require="any"`` it succeeds
    as soon as one run succeeded and fails only when every run ended without success. In both, a run that
    cannot be read (a wrong id) fails at once, naming it. The same in every mode: the states of all runs
    are read at once (one listing of the version's unfinished runs when there are more than three), and a
    deferred sensor's runs share the triggerer's poll of their version. It returns ``{"require",
    "decided_by", "runs"}``: the runs that decided the outcome, and one entry per run (``run_id``,
    ``status``, ``outcome``, ``started_at``, ``ended_at``, ...). Logs are read once the outcome is
    decided, for at most five of the runs that decided it: a failure carries their last lines, and with
    ``stream_logs`` they are written to the task log.

    .. seealso::
        :doc:`/operators/sensor`

    :param pipeline_version_run_id: the run to wait for (templated). Give it or ``run_ids``, not both.
    :param run_ids: the runs to wait for, all of one pipeline version (templated): a list of ids, one id, or
        an ``XComArg`` resolving to ids or to the records the pause, resume and cancel operators return
        (dicts with a ``"run_id"``). Checked when the task runs: an empty list (nothing to wait for), a
        repeated id or an invalid one fails the task before anything is sent.
    :param require: with ``run_ids``: ``"all"`` (default; every run must succeed) or ``"any"`` (one
        succeeded run is enough).
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

    template_fields: Sequence[str] = (*ID_TEMPLATE_FIELDS, "pipeline_version_run_id", "run_ids")
    operator_extra_links = (ClarifaiPipelineRunLink(),)
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        pipeline_version_run_id: str | None = None,
        run_ids: str | list[str] | XComArg | None = None,
        require: Literal["all", "any"] = "all",
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
        if (pipeline_version_run_id is None) == (run_ids is None):
            from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

            given = "both" if run_ids is not None else "neither"
            raise ClarifaiConfigurationError(
                f"ClarifaiPipelineRunSensor (task {self.task_id!r}) got {given} of pipeline_version_run_id "
                "and run_ids. Give exactly one: pipeline_version_run_id='<run id>' to wait for one run, or "
                "run_ids=[...] (a list, or an XComArg such as start.output) to wait for several runs of one "
                "pipeline version, with require='all' or 'any'."
            )
        self.require = Require.parse(require)
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
        self.run_ids = run_ids
        #: Waiting for several runs (``run_ids``): fixed here, whatever the templates render to.
        self._many = run_ids is not None
        self.success_statuses = list(success_statuses) if success_statuses is not None else None
        self.failure_statuses = list(failure_statuses) if failure_statuses is not None else None
        self._spec()  # Not templated: a wrong state name fails when the DAG is parsed, before any call.
        self.cancel_on_timeout = cancel_on_timeout
        self.stream_logs = stream_logs
        self.deferrable = deferrable
        self._waiting_after_last_poke = False
        self._poke_started: float | None = None
        self._ids: PipelineVersionIds | None = None
        self._waiters: list[RunWaiter] | None = None
        self._events: dict[str, RunWaitEvent] = {}

    # Shared by all modes ------------------------------------------------------------------------

    def _spec(self) -> RunWaitSpec:
        from airflow_provider_clarifai.waiting import RunWaitSpec

        return RunWaitSpec.build(self.success_statuses, self.failure_statuses)

    def _prepare(self, context: Any) -> tuple[PipelineVersionIds, list[RunWaiter]]:
        """Resolve the ids and build the waiters, once per task process (a poke-mode sensor keeps them)."""
        from airflow_provider_clarifai.common import rendered_run_ids
        from airflow_provider_clarifai.ids import validate_run_id
        from airflow_provider_clarifai.waiter import LogMode, RunWaiter

        if self._ids is None or self._waiters is None:
            if self._many:
                self.run_ids = rendered_run_ids(
                    self.run_ids, name="run_ids", task_id=self.task_id, allow_empty=False
                )
                run_ids = list(self.run_ids)
            else:
                self.pipeline_version_run_id = validate_run_id(self.pipeline_version_run_id)
                run_ids = [self.pipeline_version_run_id]
            self._ids = self.resolve_ids()
            self.persist_run_link(context, self._ids, run_ids[0] if len(run_ids) == 1 else None)
            # Several runs: logs are read once the outcome is decided (waiter.conclude), not at each look.
            logs = LogMode.choose(
                self.stream_logs, each_look_is_a_new_process=self.reschedule and not self.deferrable
            )
            if self._many:
                logs = LogMode.NONE
            self._waiters = [
                RunWaiter(
                    self._ids,
                    run_id,
                    self._spec(),
                    log=self.log,
                    now=self.hook.clock.now,
                    cancel_on_timeout=self.cancel_on_timeout,
                    logs=logs,
                )
                for run_id in run_ids
            ]
            # A new dict with the waiters: Airflow runs a shallow copy of the task, which shares the
            # dicts made in __init__ with the DAG's own task object.
            self._events = {}
        return self._ids, self._waiters

    def _look(self, waiters: list[RunWaiter], time_left: float) -> Any:
        """One look at the runs: ``None`` while the wait goes on, else the task's result (or its exception).

        Several runs: the states of those still going are read at once, and the events so far decide.
        """
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import conclude, look_all
        from airflow_provider_clarifai.waiting import decide

        calls = RunCalls(self.hook)
        deadline = self.hook.clock.now() + time_left
        if not self._many:
            (waiter,) = waiters
            waiter.deadline = deadline
            event = calls.run(waiter.look())
            return None if event is None else self._settle(event, waiter.error)
        going = [waiter for waiter in waiters if waiter.run_id not in self._events]
        for waiter in going:
            waiter.deadline = deadline
        self._events.update(calls.run(look_all(going)))
        decision = decide(self.require, [waiter.run_id for waiter in waiters], self._events)
        if decision is None:
            return None
        steps = conclude(waiters, self.require, self._events, decision, stream_logs=self.stream_logs)
        return self._settle(calls.run(steps))

    def _settle(self, event: RunWaitEvent | RunsWaitEvent, error: ClarifaiError | None = None) -> Any:
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
            ids, waiters = self._prepare(context)
            if self.deferrable:
                try:
                    return self._execute_deferrable(ids, waiters)
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
                    self._cancel_going(ids, waiters, "the sensor timed out")
                raise
        finally:
            # A worker runs many tasks in one process: leave no channel open behind this one.
            self.close_hook()

    def _cancel_going(self, ids: PipelineVersionIds, waiters: list[RunWaiter], why: str) -> None:
        """Cancel the runs still going (several runs: in batches)."""
        if not self._many:
            from airflow_provider_clarifai.effects import RunCalls

            RunCalls(self.hook).run(waiters[0].cancel(why))
            return
        going = [waiter.run_id for waiter in waiters if waiter.run_id not in self._events]
        if going:
            self.cancel_runs(ids, going, why)

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
        """One look at the run (or the runs).

        :param context: the task context.
        """
        from airflow.providers.common.compat.sdk import PokeReturnValue

        self._waiting_after_last_poke = False
        _, waiters = self._prepare(context)
        summary = self._look(waiters, self._time_left(context))
        if summary is not None:
            return PokeReturnValue(is_done=True, xcom_value=summary)
        self._waiting_after_last_poke = True
        return False

    # Deferrable ---------------------------------------------------------------------------------

    def _execute_deferrable(self, ids: PipelineVersionIds, waiters: list[RunWaiter]) -> Any:
        limits = [float(self.timeout)]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        remaining = min(limits)
        # The deadline is fixed before the first look, so that look counts against the wait too.
        deadline = self.hook.clock.now() + remaining
        summary = self._look(waiters, remaining)
        if summary is not None:
            return summary
        self.defer(
            trigger=self._trigger(ids, waiters, deadline),
            method_name="execute_complete",
            timeout=deferral_timeout(deadline, self.hook.clock.now(), float(self.poke_interval)),
        )

    def _trigger(self, ids: PipelineVersionIds, waiters: list[RunWaiter], deadline: float) -> BaseTrigger:
        from airflow_provider_clarifai.triggers.clarifai import (
            ClarifaiPipelineRunsTrigger,
            ClarifaiPipelineRunTrigger,
        )

        success, failure = waiters[0].spec.to_lists()
        common: dict[str, Any] = {
            "clarifai_conn_id": self.clarifai_conn_id,
            **ids.as_dict(),
            "poll_interval": float(self.poke_interval),
            "deadline": deadline,
            "success_statuses": success,
            "failure_statuses": failure,
            "cancel_on_timeout": self.cancel_on_timeout,
            "stream_logs": self.stream_logs,
            "retry_policy": self.hook.retry_policy.to_dict(),
            "request_timeout": self.request_timeout,
        }
        if self._many:
            # Every run, those already ended too: the trigger reads each once more for the result.
            run_ids = [waiter.run_id for waiter in waiters]
            return ClarifaiPipelineRunsTrigger(run_ids=run_ids, require=self.require.value, **common)
        return ClarifaiPipelineRunTrigger(
            run_id=waiters[0].run_id, log_cursor=waiters[0].cursor.to_dict(), **common
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Turn the trigger's event into the task's outcome; anything unexpected fails.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        from airflow_provider_clarifai.waiting import RunsWaitEvent, RunWaitEvent

        return self._settle((RunsWaitEvent if self._many else RunWaitEvent).from_payload(event))


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
