"""The one waiter: everything about waiting for a run, written once and free of I/O.

:class:`RunWaiter` is a small state machine in the style of the hook's flows: its steps are generators
that yield the effects they need (:class:`ReadRun`, :class:`ReadLogs`, :class:`CancelRun`,
:class:`Sleep`) and receive the answers; an API error is thrown into the generator where the effect was
asked for. It owns the whole wait: judging the run with :class:`RunWaitSpec`, noting each state once,
the log cursor and tail, the deadline, cancelling on timeout, and the one :class:`RunWaitEvent` at the
end. :class:`RunCalls` performs the effects with a hook, blocking or asyncio, so every way of waiting
drives the same machine (the effects and :class:`~airflow_provider_clarifai.effects.RunCalls` live in
:mod:`airflow_provider_clarifai.effects`):

- the sensor's poke and reschedule modes run one :meth:`RunWaiter.look` per poke;
- the sensor's first look before it defers is a :meth:`RunWaiter.look` too;
- the run operator's polling runs :meth:`RunWaiter.wait` with blocking calls;
- the trigger runs :meth:`RunWaiter.wait` with asyncio calls;
- a wait for several runs keeps one waiter per run: :func:`look_all` reads them together, and
  :func:`conclude` turns what :func:`~airflow_provider_clarifai.waiting.decide` decided into the event.

Which logs an outcome carries is decided here, once, for every mode (see :class:`LogMode`): a failure
carries the run's last :data:`~airflow_provider_clarifai.waiting.LOG_TAIL_LINES` log lines; a success or
a timeout carries the lines that were streamed, and none without ``stream_logs`` (a successful run's log
is not read at all then: one request fewer per run).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.effects import (
    CancelRun,
    ListUnfinished,
    ReadEach,
    ReadLogs,
    ReadRun,
    Sleep,
    Steps,
)
from airflow_provider_clarifai.exceptions import ClarifaiError
from airflow_provider_clarifai.runs import PipelineRun, RunLogBatch, RunLogCursor, RunStatusChange
from airflow_provider_clarifai.status import PipelineRunStatus
from airflow_provider_clarifai.waiting import (
    LOG_TAIL_LINES,
    WRAP_UP_SECONDS,
    EventStatus,
    Require,
    RunsWaitEvent,
    RunWaitEvent,
    RunWaitSpec,
    Verdict,
    failure_message,
    time_left,
    with_log_tail,
)

if TYPE_CHECKING:
    from airflow_provider_clarifai.ids import PipelineVersionIds

#: Up to this many runs, :func:`read_states` reads each run; above, it lists the version's unfinished
#: runs (one request per 1,000) and reads only those not listed.
GET_EACH_UP_TO = 3
#: A wait for several runs reads the logs of at most this many of the runs that decided its outcome.
LOGGED_RUNS = 5


class LogMode(StrEnum):
    """When the waiter reads the run's log, and whether it writes the lines to the task log."""

    #: Read after every look at the run and write new lines as they appear (``stream_logs=True``).
    STREAM = "stream"
    #: Read once, when the run has ended, and write the lines then (``stream_logs=True`` in reschedule
    #: mode, where each poke is a new process with no cursor of its own).
    AT_END = "at_end"
    #: Read only when the run failed, to put its last lines in the failure (``stream_logs=False``).
    FAILURE_TAIL = "failure_tail"
    #: Never read (waiting for a paused or cancelled run to settle: its log is not the question).
    NONE = "none"

    @classmethod
    def choose(cls, stream_logs: bool, *, each_look_is_a_new_process: bool = False) -> LogMode:
        """The mode for a task's ``stream_logs``.

        :param stream_logs: whether the user asked for the run's log in the task log.
        :param each_look_is_a_new_process: the sensor's reschedule mode.
        """
        if not stream_logs:
            return cls.FAILURE_TAIL
        return cls.AT_END if each_look_is_a_new_process else cls.STREAM


def cancel_steps(ids: PipelineVersionIds, run_id: str, why: str, log: Any) -> Steps[bool]:
    """Cancel a run on a task's behalf; a failure to cancel is logged, never raised.

    The cancel gets :data:`~airflow_provider_clarifai.waiting.WRAP_UP_SECONDS` in all, retries
    included: it runs after a timeout or on kill, when the wait has no time of its own left.

    :param ids: the run's pipeline version.
    :param run_id: the run.
    :param why: the reason, for the log.
    :param log: the task's or trigger's logger.
    """
    try:
        change: RunStatusChange = yield CancelRun(ids, run_id, WRAP_UP_SECONDS)
    except ClarifaiError as error:
        log.error("Could not cancel run %s after %s: %s", run_id, why, error)
        return False
    if change.applied:
        log.info("Cancelled run %s because %s.", run_id, why)
    else:
        log.warning(
            "Run %s was not cancelled after %s (now %s): %s",
            run_id,
            why,
            change.status_after,
            change.error_description,
        )
    return change.applied


class RunWaiter:
    """Wait for one run: judge it, note its states, follow its log, keep the deadline, give one event.

    Free of I/O: :meth:`look`, :meth:`wait` and :meth:`cancel` are steps for :class:`RunCalls` to
    drive. The waiter keeps what a wait remembers between looks (the last state noted, the log cursor
    and tail), so a sensor in poke mode keeps one waiter for all its pokes.

    :param ids: the run's pipeline version.
    :param run_id: the run.
    :param spec: which states end the wait, and how.
    :param log: where state changes, log lines and warnings go (the task's or trigger's logger).
    :param now: wall-clock UNIX seconds (``ClarifaiHook.clock.now``).
    :param deadline: UNIX seconds after which :meth:`wait` times out; ``None`` waits without limit.
        Calls made while waiting are cut to the time left.
    :param poll_interval: seconds between two looks in :meth:`wait`.
    :param cancel_on_timeout: cancel the run when :meth:`wait` times out.
    :param logs: when to read the run's log (:class:`LogMode`).
    :param log_cursor: where an earlier reader of the run's log stopped.
    """

    def __init__(
        self,
        ids: PipelineVersionIds,
        run_id: str,
        spec: RunWaitSpec,
        *,
        log: Any,
        now: Callable[[], float],
        deadline: float | None = None,
        poll_interval: float = 30.0,
        cancel_on_timeout: bool = False,
        logs: LogMode = LogMode.FAILURE_TAIL,
        log_cursor: RunLogCursor | None = None,
    ) -> None:
        self.ids = ids
        self.run_id = run_id
        self.spec = spec
        self.log = log
        self.now = now
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.cancel_on_timeout = cancel_on_timeout
        self.logs = logs
        self.cursor = log_cursor if log_cursor is not None else RunLogCursor()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.last_state: str | None = None
        self.last_run: PipelineRun | None = None
        #: The non-retryable API error behind an ``error`` event, for callers that re-raise it as is.
        self.error: ClarifaiError | None = None

    def time_left(self) -> float | None:
        """Seconds until the deadline (``None``: no deadline), never below zero."""
        return time_left(self.deadline, self.now())

    def look(self, answer: PipelineRun | ClarifaiError | None = None) -> Steps[RunWaitEvent | None]:
        """Look at the run once: read it (unless given), note its state, follow its log, judge it.

        Returns the wait's event when the run has ended (or cannot be read at all), ``None`` while it
        goes on or after a transient error the retry policy could not absorb (the run goes on without
        us: the next look tries again).

        :param answer: the run as just read by the caller (the run operator starts with one; a round of
            :func:`wait_all` reads many at once), or the error that read met.
        """
        if answer is None:
            try:
                answer = yield ReadRun(self.ids, self.run_id, self.time_left())
            except ClarifaiError as error:
                answer = error
        if isinstance(answer, ClarifaiError):
            if answer.retryable:
                self.log.warning("Could not read run %s, will try again: %s", self.run_id, answer)
                return None
            self.error = answer
            return self._event(EventStatus.ERROR, str(answer), error_class=type(answer).__name__)
        run = answer
        self.last_run = run
        verdict = self.spec.judge(run)
        self._note_state(run, verdict)
        if self.logs is LogMode.STREAM:
            # After the state was read: when the run has just ended, this read has the end of its log.
            yield from self._read_logs(self.time_left(), echo=True)
        if verdict is Verdict.WAITING:
            return None
        if self.logs is LogMode.AT_END or (self.logs is LogMode.FAILURE_TAIL and verdict is Verdict.FAILURE):
            yield from self._read_logs(WRAP_UP_SECONDS, echo=self.logs is LogMode.AT_END)
        if verdict is Verdict.SUCCESS:
            return self._event(EventStatus.SUCCESS, f"Run {self.run_id} is {run.status_name}.", run=run)
        return self._event(
            EventStatus.FAILURE, failure_message(run, self.spec), run=run, log_tail=list(self.tail)
        )

    def wait(self, first: PipelineRun | None = None) -> Steps[RunWaitEvent]:
        """Look every ``poll_interval`` until the run ends or the deadline passes; return the event.

        :param first: the run as just read by the caller, used as the first look instead of a read.
        """
        run = first
        while True:
            event = yield from self.look(run)
            run = None
            if event is not None:
                return event
            now = self.now()
            if self.deadline is not None and now >= self.deadline:
                return (yield from self._time_out())
            pause = (
                self.poll_interval if self.deadline is None else min(self.poll_interval, self.deadline - now)
            )
            yield Sleep(max(pause, 0.0))

    def cancel(self, why: str) -> Steps[bool]:
        """Cancel the run (after a timeout, or on kill); see :func:`cancel_steps`.

        :param why: the reason, for the log.
        """
        return (yield from cancel_steps(self.ids, self.run_id, why, self.log))

    def _time_out(self) -> Steps[RunWaitEvent]:
        cancelled = (yield from self.cancel("the wait timed out")) if self.cancel_on_timeout else False
        message = f"Run {self.run_id} did not finish before the deadline (last state {self.last_state})."
        if cancelled:
            message += " It was cancelled."
        return self._event(
            EventStatus.TIMEOUT, message, run=self.last_run, log_tail=list(self.tail), cancelled=cancelled
        )

    def _note_state(self, run: PipelineRun, verdict: Verdict) -> None:
        if run.status_name == self.last_state:
            return
        self.last_state = run.status_name
        if run.known_status is PipelineRunStatus.PAUSED and verdict is Verdict.WAITING:
            self.log.info("Run %s is JOB_PAUSED: still waiting; a paused run is not finished.", self.run_id)
        else:
            self.log.info("Run %s is %s.", self.run_id, run.status_name)

    def _read_logs(self, within: float | None, *, echo: bool) -> Steps[None]:
        try:
            batch: RunLogBatch = yield ReadLogs(self.ids, self.run_id, self.cursor, within)
        except ClarifaiError as error:
            self.log.warning("Could not read the logs of run %s: %s", self.run_id, error)
            return
        self.cursor = batch.cursor
        for line in batch.lines:
            self.tail.append(line.text)
            if echo:
                self.log.info("[clarifai run %s] %s", self.run_id, line.text)

    def _event(
        self,
        status: EventStatus,
        message: str,
        *,
        run: PipelineRun | None = None,
        log_tail: list[str] | None = None,
        cancelled: bool = False,
        error_class: str | None = None,
    ) -> RunWaitEvent:
        return RunWaitEvent(
            status=status,
            run_id=self.run_id,
            message=message,
            run=run.to_dict() if run is not None else None,
            log_tail=log_tail or [],
            cancelled=cancelled,
            error_class=error_class,
        )


def read_states(
    ids: PipelineVersionIds, run_ids: Sequence[str], within: float | None
) -> Steps[dict[str, PipelineRun | ClarifaiError]]:
    """The states of several runs of one pipeline version, at the fewest requests.

    Up to :data:`GET_EACH_UP_TO` runs are read one by one; more are looked up in one listing of the
    version's unfinished runs (every page), and only the runs not in it (finished, or unknown) are read
    one by one. Errors are answers, per run: a failed listing is every run's answer.

    :param ids: the pipeline version.
    :param run_ids: the runs.
    :param within: the most seconds each request may take, retries included.
    """
    found: dict[str, PipelineRun | ClarifaiError] = {}
    if len(run_ids) > GET_EACH_UP_TO:
        try:
            listed = yield ListUnfinished(ids, within)
        except ClarifaiError as error:
            return {run_id: error for run_id in run_ids}
        wanted = set(run_ids)
        found.update((run.run_id, run) for run in listed if run.run_id in wanted)
    missing = tuple(run_id for run_id in dict.fromkeys(run_ids) if run_id not in found)
    if missing:
        found.update((yield ReadEach(ids, missing, within)))
    return found


def look_all(waiters: Sequence[RunWaiter]) -> Steps[dict[str, RunWaitEvent]]:
    """Look at several runs once: their states read together with :func:`read_states` (one listing per
    pipeline version when there are many, each request cut to the time the waiters' deadline has left),
    then each waiter judges its own run.

    :param waiters: one waiter per run.
    :returns: the event of every run that ended, by run id.
    """
    by_version: dict[PipelineVersionIds, list[RunWaiter]] = {}
    for waiter in waiters:
        by_version.setdefault(waiter.ids, []).append(waiter)
    events: dict[str, RunWaitEvent] = {}
    for ids, group in by_version.items():
        answers = yield from read_states(ids, [w.run_id for w in group], group[0].time_left())
        for waiter in group:
            event = yield from waiter.look(answers[waiter.run_id])
            if event is not None:
                events[waiter.run_id] = event
    return events


def wait_all(
    waiters: Iterable[RunWaiter],
    *,
    deadline: float,
    poll_interval: float,
    now: Callable[[], float],
    on_round: Callable[[list[RunWaiter]], None] | None = None,
) -> Steps[dict[str, RunWaitEvent]]:
    """Look at several runs in rounds (:func:`look_all`, then a sleep of the poll interval cut to the
    deadline) until each has ended or the shared deadline passes. No timeout event is made and nothing
    is cancelled: the caller decides what a run still going at the deadline means.

    :param waiters: one waiter per run.
    :param deadline: UNIX seconds shared by all runs.
    :param poll_interval: seconds between two rounds.
    :param now: wall-clock UNIX seconds.
    :param on_round: called with the runs still going before each sleep (to log them).
    :returns: the event of every run that ended, by run id; runs still going are absent.
    """
    events: dict[str, RunWaitEvent] = {}
    pending = list(waiters)
    while pending:
        for waiter in pending:
            waiter.deadline = deadline
        ended = yield from look_all(pending)
        events.update(ended)
        pending = [waiter for waiter in pending if waiter.run_id not in ended]
        remaining = deadline - now()
        if not pending or remaining <= 0:
            break
        if on_round is not None:
            on_round(pending)
        yield Sleep(min(poll_interval, remaining))
    return events


def conclude(
    waiters: Sequence[RunWaiter],
    require: Require,
    events: Mapping[str, RunWaitEvent],
    decision: tuple[EventStatus, list[str]],
    *,
    stream_logs: bool,
    cancelled: Sequence[str] = (),
) -> Steps[RunsWaitEvent]:
    """The one event of a wait for several runs of one pipeline version, once ``decide`` decided it.

    Only now are logs read: those of at most :data:`LOGGED_RUNS` runs that decided the outcome, in one
    wrap-up budget. A failure carries their last lines; with ``stream_logs`` they are also logged.

    :param waiters: one waiter per run, in the order given.
    :param require: ``all`` or ``any``.
    :param events: the runs' events, by run id.
    :param decision: what :func:`~airflow_provider_clarifai.waiting.decide` returned.
    :param stream_logs: write the deciding runs' log lines to the log.
    :param cancelled: the runs cancelled after a timeout.
    """
    status, decided_by = decision
    first, by_id = waiters[0], {waiter.run_id: waiter for waiter in waiters}
    failures: list[str] = []
    if status is EventStatus.FAILURE or (status is EventStatus.SUCCESS and stream_logs):
        wrap_up_ends = first.now() + WRAP_UP_SECONDS
        for run_id in decided_by[:LOGGED_RUNS]:
            left, waiter = wrap_up_ends - first.now(), by_id[run_id]
            if left <= 0:
                break
            yield from waiter._read_logs(left, echo=stream_logs)
            if status is EventStatus.FAILURE:
                failures.append(with_log_tail(events[run_id].message, waiter.tail))
    ids, error = first.ids, events[decided_by[0]].message if status is EventStatus.ERROR else ""
    where = f"{len(waiters)} runs of {ids.user_id}/{ids.app_id}/{ids.pipeline_id}/{ids.pipeline_version_id}"
    template = _HEADS.get(f"{status}/{require}") or _HEADS[status]
    head = template.format(where=where, runs=_named(decided_by), require=require.value, error=error)
    head += f" Cancelled: {_named(cancelled)}." if cancelled else ""
    by_state: dict[str, list[str]] = {}
    for waiter in waiters:
        by_state.setdefault(waiter.last_state or "not read", []).append(waiter.run_id)
    states = "; ".join(f"{state}: {_named(run_ids)}" for state, run_ids in by_state.items())
    return RunsWaitEvent(
        status=status,
        require=require,
        message="\n".join([head, f"States: {states}.", *failures]),
        runs=[_entry(waiter, events.get(waiter.run_id)) for waiter in waiters],
        decided_by=list(decided_by),
        cancelled=list(cancelled),
        error_class=events[decided_by[0]].error_class if status is EventStatus.ERROR else None,
    )


#: A message about several runs names at most this many runs in a list.
NAMED_RUNS = 10
_HEADS = {
    "success/all": "All {where} succeeded (require='{require}').",
    "success/any": "{where}: {runs} succeeded (require='{require}').",
    "failure/all": "{where}: {runs} failed (require='{require}').",
    "failure/any": "None of the {where} succeeded (require='{require}').",
    "timeout": "{where}: {runs} did not finish in time (require='{require}').",
    "error": "Cannot wait for run {runs} of the {where}: {error}",
}


def _named(run_ids: Sequence[str]) -> str:
    more = f" and {len(run_ids) - NAMED_RUNS:,} more" if len(run_ids) > NAMED_RUNS else ""
    return ", ".join(run_ids[:NAMED_RUNS]) + more


_OUTCOMES = {EventStatus.SUCCESS: "success", EventStatus.FAILURE: "failure", EventStatus.ERROR: "error"}
_ENTRY_KEYS = ("status_description", "started_at", "ended_at", "total_run_duration_seconds")


def _entry(waiter: RunWaiter, event: RunWaitEvent | None) -> dict[str, Any]:
    summary = waiter.last_run.to_dict() if waiter.last_run is not None else {}
    outcome = _OUTCOMES.get(event.status, "waiting") if event is not None else "waiting"
    entry = {"run_id": waiter.run_id, "status": summary.get("status"), "outcome": outcome}
    return entry | {key: summary.get(key) for key in _ENTRY_KEYS}
