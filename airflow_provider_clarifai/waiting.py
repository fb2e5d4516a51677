"""What "done" means when waiting for a run, and the event a trigger sends back: one contract.

The sensor (poke, reschedule, deferrable), the run operator (polling or deferrable) and the trigger all
judge a run with :class:`RunWaitSpec` and speak :class:`RunWaitEvent`, so the three sensor modes and
the operator agree on every run history. A wait for several runs adds :class:`Require` (all or any),
:func:`decide` and :class:`RunsWaitEvent`. Anything unexpected (an unknown state code, a malformed
event) is a failure: never a success by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from airflow_provider_clarifai import exceptions
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.retry import MIN_ATTEMPT_SECONDS
from airflow_provider_clarifai.runs import PipelineRun
from airflow_provider_clarifai.status import (
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    PipelineRunStatus,
    UnknownRunStatusError,
    format_statuses,
    parse_statuses,
)

#: How many of the run's last log lines travel with a failure, so they reach the task log.
LOG_TAIL_LINES = 20

#: What a wait may still do once it has its answer or its deadline has passed (cancel the run after a
#: timeout, read the end of a finished run's log) gets this many seconds in all, retries included.
WRAP_UP_SECONDS = 15.0

#: How long after the trigger's own deadline Airflow's deferral timeout fires: a backstop for a
#: triggerer that is down at the deadline. The trigger itself gives its event at most
#: :data:`TRIGGER_OVERRUN_SECONDS` after its deadline, well inside this grace, so the deferral timeout
#: never wins the race against a live trigger (which would skip the cancel on timeout).
DEFERRAL_GRACE_SECONDS = 120.0

#: The longest a live trigger runs past its deadline: the last status read started before the deadline
#: ends by then (its deadline is cut to the time left, with a floor per attempt), then one wrap-up.
TRIGGER_OVERRUN_SECONDS = MIN_ATTEMPT_SECONDS + WRAP_UP_SECONDS + MIN_ATTEMPT_SECONDS


def time_left(deadline: float | None, now: float) -> float | None:
    """Seconds until ``deadline`` (``None``: no deadline), never below zero.

    :param deadline: the wait's deadline as UNIX seconds, or ``None``.
    :param now: the current time as UNIX seconds.
    """
    return None if deadline is None else max(deadline - now, 0.0)


def deferral_timeout(deadline: float | None, now: float, poll_interval: float) -> timedelta | None:
    """The ``timeout`` to give ``defer()``: the trigger's deadline plus the grace, never sooner.

    :param deadline: the trigger's deadline as UNIX seconds, or ``None`` (no deferral timeout).
    :param now: the current time as UNIX seconds.
    :param poll_interval: the trigger's poll interval; the grace is at least two of them.
    """
    if deadline is None:
        return None
    return timedelta(seconds=max(deadline - now, 0.0) + max(DEFERRAL_GRACE_SECONDS, 2 * poll_interval))


class Verdict(StrEnum):
    """Where a waiting task stands after looking at a run."""

    SUCCESS = "success"
    FAILURE = "failure"
    WAITING = "waiting"


@dataclass(frozen=True)
class RunWaitSpec:
    """Which states end a wait, and how.

    A terminal state that is not a success state is always a failure (a run that can no longer change
    must not be waited on), and so is an unknown state code. Non-terminal states (queued, running,
    paused, conflict) mean "keep waiting" unless listed in ``failure_statuses``.

    :param success_statuses: states that end the wait successfully.
    :param failure_statuses: states that end it with a failure.
    """

    success_statuses: frozenset[PipelineRunStatus] = SUCCESS_STATUSES
    failure_statuses: frozenset[PipelineRunStatus] = FAILURE_STATUSES

    @classmethod
    def build(
        cls,
        success_statuses: Iterable[PipelineRunStatus | str | int] | str | None = None,
        failure_statuses: Iterable[PipelineRunStatus | str | int] | str | None = None,
    ) -> RunWaitSpec:
        """Parse and check user-given state sets (``None`` keeps the default).

        :param success_statuses: states that end the wait successfully (default JOB_COMPLETED).
        :param failure_statuses: states that fail it (default JOB_FAILED, JOB_CANCELLED,
            JOB_UNEXPECTED_ERROR).
        :raises ClarifaiConfigurationError: an unknown state, an empty success set, or a state in both.
        """
        try:
            success = parse_statuses(success_statuses) if success_statuses is not None else SUCCESS_STATUSES
            failure = parse_statuses(failure_statuses) if failure_statuses is not None else FAILURE_STATUSES
        except ValueError as err:
            raise ClarifaiConfigurationError(
                f"Invalid success_statuses or failure_statuses: {err}."
            ) from None
        if not success:
            raise ClarifaiConfigurationError("success_statuses must name at least one state.")
        if success & failure:
            raise ClarifaiConfigurationError(
                f"{format_statuses(success & failure)} cannot be both a success and a failure state. Remove "
                "it from success_statuses or from failure_statuses."
            )
        return cls(success, failure)

    def judge(self, run: PipelineRun) -> Verdict:
        """Decide what a run's current state means for the wait.

        :param run: the run as last read.
        """
        try:
            status = run.status
        except UnknownRunStatusError:
            return Verdict.FAILURE
        if status in self.success_statuses:
            return Verdict.SUCCESS
        if status in self.failure_statuses or status.is_terminal:
            return Verdict.FAILURE
        return Verdict.WAITING

    def to_lists(self) -> tuple[list[str], list[str]]:
        """Both sets as sorted state names, for trigger kwargs."""
        return sorted(s.value for s in self.success_statuses), sorted(s.value for s in self.failure_statuses)


def failure_message(run: PipelineRun, spec: RunWaitSpec) -> str:
    """Say why a run counts as failed, in the service's words.

    :param run: the failed run.
    :param spec: the wait's success states, named in the message.
    """
    description = f" ({run.status_description})" if run.status_description else ""
    if run.known_status is None:
        reason = f"an unknown state {run.status_name}; failing closed"
    else:
        reason = f"{run.status_name}{description}"
    return (
        f"Clarifai pipeline run {run.run_id} of {run.user_id}/{run.app_id}/{run.pipeline_id}/"
        f"{run.pipeline_version_id} ended in {reason}; success is {format_statuses(spec.success_statuses)}."
    )


class EventStatus(StrEnum):
    """The closed set of outcomes a wait can report."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class RunWaitEvent:
    """The one event :class:`ClarifaiPipelineRunTrigger` yields, as plain JSON-ready data.

    :param status: success, failure, timeout or error.
    :param run_id: the run waited on.
    :param message: what happened, for the task log and the exception.
    :param run: the run's summary (:meth:`PipelineRun.to_dict`) as last read, if it was read.
    :param log_tail: the run's last log lines, sent with failures.
    :param cancelled: whether the run was cancelled because of a timeout or kill.
    :param error_class: for ``error``: the name of the :class:`ClarifaiError` subclass to raise.
    """

    status: EventStatus
    run_id: str
    message: str
    run: dict[str, Any] | None = None
    log_tail: list[str] = field(default_factory=list)
    cancelled: bool = False
    error_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event payload."""
        return {
            "status": self.status.value,
            "run_id": self.run_id,
            "message": self.message,
            "run": self.run,
            "log_tail": list(self.log_tail),
            "cancelled": self.cancelled,
            "error_class": self.error_class,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> RunWaitEvent:
        """Validate an event payload; anything malformed is an error, never a success.

        :param payload: what ``execute_complete`` received as ``event``.
        :raises ClarifaiUnexpectedResponseError: the payload is not a valid event.
        """
        if not isinstance(payload, Mapping):
            raise _malformed(f"expected a mapping, got {type(payload).__name__}")
        try:
            status = EventStatus(str(payload.get("status")))
        except ValueError:
            raise _malformed(f"unknown status {payload.get('status')!r}") from None
        run_id, message = payload.get("run_id"), payload.get("message")
        if not isinstance(run_id, str) or not run_id or not isinstance(message, str):
            raise _malformed("run_id and message must be strings")
        run = payload.get("run")
        if run is not None and not (isinstance(run, Mapping) and isinstance(run.get("status"), str)):
            raise _malformed("run must be a run summary")
        if status is EventStatus.SUCCESS and run is None:
            raise _malformed("a success event must carry the run")
        log_tail = payload.get("log_tail") or []
        if not isinstance(log_tail, list) or not all(isinstance(line, str) for line in log_tail):
            raise _malformed("log_tail must be a list of strings")
        error_class = payload.get("error_class")
        return cls(
            status=status,
            run_id=run_id,
            message=message,
            run=dict(run) if run is not None else None,
            log_tail=list(log_tail),
            cancelled=bool(payload.get("cancelled", False)),
            error_class=error_class if isinstance(error_class, str) else None,
        )

    def raise_for_error(self) -> None:
        """Re-raise an ``error`` event as the :class:`ClarifaiError` subclass it names."""
        _raise_for_error(self.status, self.error_class, self.message)


def _raise_for_error(status: EventStatus, error_class: str | None, message: str) -> None:
    if status is not EventStatus.ERROR:
        return
    error_type = getattr(exceptions, error_class or "", None)
    if not (isinstance(error_type, type) and issubclass(error_type, ClarifaiError)):
        error_type = ClarifaiError
    raise error_type(message)


class Require(StrEnum):
    """How many of several runs must succeed: every one (``all``) or one (``any``)."""

    ALL = "all"
    ANY = "any"

    @classmethod
    def parse(cls, value: object) -> Require:
        """Read ``require`` as a task or a trigger was given it.

        :param value: ``"all"`` or ``"any"``.
        :raises ClarifaiConfigurationError: anything else.
        """
        if value in ("all", "any"):
            return cls(value)
        from airflow_provider_clarifai.validate import quote

        raise ClarifaiConfigurationError(
            f"require must be 'all' (every run must succeed) or 'any' (one run is enough), not "
            f"{quote(value)}."
        )


#: A run's ``outcome`` in a many-runs result: it succeeded, ended without success, could not be read,
#: or was still going when the wait ended.
RUN_OUTCOMES = ("success", "failure", "error", "waiting")


@dataclass(frozen=True)
class RunsWaitEvent:
    """The one event of a wait for several runs of one pipeline version, as plain JSON-ready data.

    :param status: success, failure, timeout or error.
    :param require: ``all`` or ``any``.
    :param message: what happened: each run's state, and the failed runs' last log lines.
    :param runs: one entry per run, in the order given: ``run_id``, ``status`` (the state's name, ``None``
        if never read), ``outcome`` (:data:`RUN_OUTCOMES`), ``status_description``, ``started_at``,
        ``ended_at``, ``total_run_duration_seconds``.
    :param decided_by: the runs that decided the outcome (see :func:`decide`).
    :param cancelled: the runs cancelled because of a timeout.
    :param error_class: for ``error``: the name of the :class:`ClarifaiError` subclass to raise.
    """

    status: EventStatus
    require: Require
    message: str
    runs: list[dict[str, Any]]
    decided_by: list[str]
    cancelled: list[str] = field(default_factory=list)
    error_class: str | None = None

    @property
    def log_tail(self) -> list[str]:
        """Empty: the message already carries the failed runs' last log lines."""
        return []

    @property
    def run(self) -> dict[str, Any]:
        """The task's result: ``require``, ``decided_by`` and ``runs``."""
        return {"require": self.require.value, "decided_by": list(self.decided_by), "runs": self.runs}

    def to_dict(self) -> dict[str, Any]:
        """The event payload."""
        extra = {"cancelled": list(self.cancelled), "error_class": self.error_class}
        return {"status": self.status.value, "message": self.message, **extra, **self.run}

    @classmethod
    def from_payload(cls, payload: Any) -> RunsWaitEvent:
        """Validate an event payload; anything malformed is an error, never a success.

        :param payload: what ``execute_complete`` received as ``event``.
        :raises ClarifaiUnexpectedResponseError: the payload is not a valid event.
        """
        if not isinstance(payload, Mapping):
            raise _malformed(f"expected a mapping, got {type(payload).__name__}")
        try:
            status, require = EventStatus(str(payload.get("status"))), Require(str(payload.get("require")))
        except ValueError:
            raise _malformed("unknown status or require") from None
        message, runs = payload.get("message"), payload.get("runs")
        if not (isinstance(message, str) and isinstance(runs, list) and runs) or not all(
            isinstance(e, Mapping) and isinstance(e.get("run_id"), str) and e.get("outcome") in RUN_OUTCOMES
            for e in runs
        ):
            raise _malformed("it needs a message and runs, each with a run_id and an outcome")
        outcomes = {entry["run_id"]: entry["outcome"] for entry in runs}
        decided_by: Any = payload.get("decided_by")
        cancelled: Any = payload.get("cancelled") or []
        for named in (decided_by, cancelled):
            if not isinstance(named, list) or not all(isinstance(i, str) and i in outcomes for i in named):
                raise _malformed("decided_by and cancelled must name runs of the event")
        if status is EventStatus.SUCCESS and {outcomes[i] for i in decided_by} != {"success"}:
            raise _malformed("a success event must name the runs that succeeded")
        error_class = payload.get("error_class")
        return cls(
            status=status,
            require=require,
            message=message,
            runs=[dict(entry) for entry in runs],
            decided_by=list(decided_by),
            cancelled=list(cancelled),
            error_class=error_class if isinstance(error_class, str) else None,
        )

    def raise_for_error(self) -> None:
        """Re-raise an ``error`` event as the :class:`ClarifaiError` subclass it names."""
        _raise_for_error(self.status, self.error_class, self.message)


def decide(
    require: Require, run_ids: Sequence[str], events: Mapping[str, RunWaitEvent]
) -> tuple[EventStatus, list[str]] | None:
    """Whether the events so far decide a wait for several runs; if so, how, and by which runs.

    ``all``: one failure fails at once (decided by the failed runs); every run succeeded is a success.
    ``any``: one success succeeds at once (decided by the runs that succeeded); every run ended without
    success is a failure. In both, a run that cannot be read (an ``error`` event: not found, no access)
    ends the wait at once: a wrong id is a mistake in the DAG, not a run that ended. A ``timeout`` event
    is a run still going: once every run has an event and nothing else decided, the wait timed out.

    :param require: ``all`` or ``any``.
    :param run_ids: every run of the wait.
    :param events: the events of the runs that ended (or timed out), by run id.
    """

    def having(status: EventStatus) -> list[str]:
        return [run_id for run_id in run_ids if run_id in events and events[run_id].status is status]

    if errors := having(EventStatus.ERROR):
        return EventStatus.ERROR, errors[:1]
    succeeded, failed = having(EventStatus.SUCCESS), having(EventStatus.FAILURE)
    if require is Require.ALL and failed:
        return EventStatus.FAILURE, failed
    if require is Require.ANY and succeeded:
        return EventStatus.SUCCESS, succeeded
    for status, ended in ((EventStatus.SUCCESS, succeeded), (EventStatus.FAILURE, failed)):
        if len(ended) == len(run_ids):
            return status, ended
    if all(run_id in events for run_id in run_ids):
        return EventStatus.TIMEOUT, having(EventStatus.TIMEOUT)
    return None


def with_log_tail(message: str, tail: Iterable[str]) -> str:
    """``message`` followed by the run's last log lines, if any.

    :param message: what happened.
    :param tail: the last log lines.
    """
    lines = list(tail)
    if not lines:
        return message
    return message + "\nLast log lines of the run:\n" + "\n".join(f"  {line}" for line in lines)


def settle(
    event: RunWaitEvent | RunsWaitEvent,
    log: Any,
    *,
    failed: type[Exception],
    timed_out: type[Exception],
    error: ClarifaiError | None = None,
) -> dict[str, Any] | None:
    """Turn a wait's event into the task's result: the run's summary (for several runs,
    :attr:`RunsWaitEvent.run`) on success, else raise.

    The same for every mode: a deferred task's ``execute_complete`` and a polling task call it with
    the same event.

    :param event: the wait's event.
    :param log: the task's logger.
    :param failed: the exception for a failed run.
    :param timed_out: the exception for a timeout.
    :param error: the API error behind an ``error`` event, when the wait ran in this process (raised as
        is); otherwise the error is rebuilt from the event's class name.
    :raises ClarifaiError: for an ``error`` event.
    """
    if event.status is EventStatus.SUCCESS:
        log.info(event.message)
        return event.run
    message = with_log_tail(event.message, event.log_tail)
    if event.status is EventStatus.FAILURE:
        raise failed(message)
    if event.status is EventStatus.TIMEOUT:
        raise timed_out(message)
    if error is not None:
        raise error
    event.raise_for_error()
    raise ClarifaiError(f"Unhandled event {event.status}.")


def _malformed(why: str) -> ClarifaiError:
    return exceptions.ClarifaiUnexpectedResponseError(
        f"The Clarifai trigger sent a malformed event ({why}). Failing closed; the run's state is unknown."
    )
