"""RunWaiter on its own: its steps driven by a scripted service and a fake clock, no I/O at all.

The same waiter runs in the sensor's three modes, the run operator and the trigger; those are tested
end to end in ``tests/sensors/test_clarifai.py`` against the emulator. Here each rule of the wait is
pinned down by the effects it asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_clarifai.effects import (
    CancelRun,
    Effect,
    ListUnfinished,
    ReadEach,
    ReadLogs,
    ReadRun,
    Sleep,
    Steps,
)
from airflow_provider_clarifai.exceptions import (
    ClarifaiNotFoundError,
    ClarifaiRunFailedError,
    ClarifaiRunTimeoutError,
    ClarifaiUnavailableError,
)
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.runs import (
    PipelineRun,
    RunLogBatch,
    RunLogCursor,
    RunLogLine,
    RunStatusChange,
)
from airflow_provider_clarifai.status import PipelineRunStatus
from airflow_provider_clarifai.waiter import LogMode, RunWaiter, read_states, wait_all
from airflow_provider_clarifai.waiting import EventStatus, RunWaitEvent, RunWaitSpec, settle, with_log_tail

LOG = logging.getLogger("test-waiter")
IDS = PipelineVersionIds("u", "a", "p", "v")


def run(state: PipelineRunStatus | int, run_id: str = "r1") -> PipelineRun:
    code = state.code if isinstance(state, PipelineRunStatus) else state
    name = state.value if isinstance(state, PipelineRunStatus) else f"CODE_{state}"
    return PipelineRun(run_id=run_id, status_code=code, status_name=name)


class Service:
    """Answers a waiter's effects from scripts and records them; sleeping moves the fake clock.

    :param states: what each read answers, in order (an exception is raised instead of answered); a
        dict gives each run its own script.
    :param logs: the log lines each log read returns, in order (default: none).
    :param cancel: what the cancel answers (an exception is raised).
    """

    def __init__(
        self,
        states: list[PipelineRunStatus | int | Exception] | dict[str, list[PipelineRunStatus]],
        logs: list[list[str]] | None = None,
        cancel: RunStatusChange | Exception | None = None,
    ) -> None:
        self.states = states if isinstance(states, dict) else {"r1": list(states)}
        self.logs = list(logs or [])
        self.cancel = cancel
        self.effects: list[Effect] = []
        self.clock = 1000.0

    def now(self) -> float:
        return self.clock

    def answer(self, effect: Effect) -> Any:
        if isinstance(effect, ReadEach):
            return {
                run_id: self.answer_or_error(ReadRun(effect.ids, run_id, effect.within))
                for run_id in effect.run_ids
            }
        self.effects.append(effect)
        if isinstance(effect, Sleep):
            self.clock += effect.seconds
            return None
        if isinstance(effect, ReadRun):
            assert effect.ids == IDS
            script = self.states[effect.run_id]
            state = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(state, Exception):
                raise state
            return run(state, effect.run_id)
        if isinstance(effect, ReadLogs):
            lines = self.logs.pop(0) if self.logs else []
            cursor = RunLogCursor(page=effect.cursor.page + 1)
            return RunLogBatch([RunLogLine(text) for text in lines], cursor)
        if isinstance(self.cancel, Exception):
            raise self.cancel
        return self.cancel

    def answer_or_error(self, effect: Effect) -> Any:
        try:
            return self.answer(effect)
        except Exception as error:
            return error

    def kinds(self) -> list[str]:
        return [type(effect).__name__ for effect in self.effects]


def drive(steps: Steps[Any], answer: Callable[[Effect], Any]) -> Any:
    """The drivers' loop, with the scripted service in place of the hook."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            value = answer(effect)
        except Exception as failed:
            error = failed


def waiter(
    service: Service, run_id: str = "r1", spec: RunWaitSpec | None = None, **options: Any
) -> RunWaiter:
    options.setdefault("poll_interval", 10.0)
    return RunWaiter(IDS, run_id, spec or RunWaitSpec(), log=LOG, now=service.now, **options)


def test_a_look_at_a_running_run_says_keep_waiting_and_notes_the_state_once(caplog):
    service = Service([PipelineRunStatus.RUNNING, PipelineRunStatus.RUNNING])
    wait = waiter(service)

    with caplog.at_level(logging.INFO, "test-waiter"):
        assert drive(wait.look(), service.answer) is None
        assert drive(wait.look(), service.answer) is None

    assert service.kinds() == ["ReadRun", "ReadRun"]
    assert caplog.text.count("Run r1 is JOB_RUNNING.") == 1


def test_a_paused_run_is_still_waited_on_and_said_so(caplog):
    service = Service([PipelineRunStatus.PAUSED])

    with caplog.at_level(logging.INFO, "test-waiter"):
        assert drive(waiter(service).look(), service.answer) is None

    assert "Run r1 is JOB_PAUSED: still waiting" in caplog.text


def test_wait_polls_until_success_sleeping_the_poll_interval():
    service = Service([PipelineRunStatus.QUEUED, PipelineRunStatus.RUNNING, PipelineRunStatus.COMPLETED])

    event = drive(waiter(service).wait(), service.answer)

    assert event.status is EventStatus.SUCCESS
    assert event.run["status"] == "JOB_COMPLETED"
    assert service.kinds() == ["ReadRun", "Sleep", "ReadRun", "Sleep", "ReadRun"]
    assert [e.seconds for e in service.effects if isinstance(e, Sleep)] == [10.0, 10.0]


def test_the_first_run_given_is_the_first_look_without_a_read():
    service = Service([PipelineRunStatus.COMPLETED])

    event = drive(waiter(service).wait(first=run(PipelineRunStatus.RUNNING)), service.answer)

    assert event.status is EventStatus.SUCCESS
    assert service.kinds() == ["Sleep", "ReadRun"]


@pytest.mark.parametrize(
    "final", [PipelineRunStatus.FAILED, PipelineRunStatus.CANCELLED, PipelineRunStatus.UNEXPECTED_ERROR, 99]
)
def test_failure_reads_the_log_once_and_carries_its_tail(final):
    service = Service([final], logs=[["line one", "line two"]])

    event = drive(waiter(service).wait(), service.answer)

    assert event.status is EventStatus.FAILURE
    assert event.log_tail == ["line one", "line two"]
    assert service.kinds() == ["ReadRun", "ReadLogs"]
    # The end-of-run read has a budget of its own, not the wait's (which may be spent).
    (read,) = [effect for effect in service.effects if isinstance(effect, ReadLogs)]
    assert read.within == 15.0


def test_success_without_streaming_reads_no_log():
    service = Service([PipelineRunStatus.COMPLETED], logs=[["never read"]])

    event = drive(waiter(service).wait(), service.answer)

    assert event.log_tail == []
    assert service.kinds() == ["ReadRun"]


def test_streaming_reads_the_log_after_every_look_and_writes_each_line_once(caplog):
    service = Service([PipelineRunStatus.RUNNING, PipelineRunStatus.COMPLETED], logs=[["starting"], ["done"]])

    with caplog.at_level(logging.INFO, "test-waiter"):
        event = drive(waiter(service, logs=LogMode.STREAM).wait(), service.answer)

    assert event.status is EventStatus.SUCCESS
    assert service.kinds() == ["ReadRun", "ReadLogs", "Sleep", "ReadRun", "ReadLogs"]
    assert caplog.text.count("[clarifai run r1] starting") == 1
    assert caplog.text.count("[clarifai run r1] done") == 1
    # The cursor moved with each read, so the next reader continues after them.
    cursors = [effect.cursor.page for effect in service.effects if isinstance(effect, ReadLogs)]
    assert cursors == [1, 2]


def test_at_end_mode_reads_and_writes_the_log_only_when_the_run_ended(caplog):
    service = Service([PipelineRunStatus.RUNNING, PipelineRunStatus.COMPLETED], logs=[["all of it"]])
    wait = waiter(service, logs=LogMode.AT_END)

    with caplog.at_level(logging.INFO, "test-waiter"):
        assert drive(wait.look(), service.answer) is None
        event = drive(wait.look(), service.answer)

    assert event.status is EventStatus.SUCCESS
    assert service.kinds() == ["ReadRun", "ReadRun", "ReadLogs"]
    assert "[clarifai run r1] all of it" in caplog.text


def test_a_log_read_that_fails_does_not_fail_the_wait(caplog):
    service = Service([PipelineRunStatus.FAILED])

    def answer(effect: Effect) -> Any:
        if isinstance(effect, ReadLogs):
            raise ClarifaiUnavailableError("down")
        return service.answer(effect)

    event = drive(waiter(service).wait(), answer)

    assert event.status is EventStatus.FAILURE
    assert "Could not read the logs of run r1" in caplog.text


def test_a_transient_error_keeps_waiting_and_a_permanent_one_ends_the_wait(caplog):
    gone = ClarifaiNotFoundError("Pipeline version run r1 not found.")
    service = Service([ClarifaiUnavailableError("down"), PipelineRunStatus.RUNNING, gone])
    wait = waiter(service)

    event = drive(wait.wait(), service.answer)

    assert event.status is EventStatus.ERROR
    assert event.error_class == "ClarifaiNotFoundError"
    assert event.message == str(gone)
    assert wait.error is gone
    assert "Could not read run r1, will try again" in caplog.text


def test_the_deadline_cuts_sleeps_and_calls_and_times_out_without_cancelling_by_default():
    service = Service([PipelineRunStatus.RUNNING])
    wait = waiter(service, deadline=1025.0)

    event = drive(wait.wait(), service.answer)

    assert event.status is EventStatus.TIMEOUT
    assert not event.cancelled
    assert event.run["status"] == "JOB_RUNNING"
    assert "last state JOB_RUNNING" in event.message
    assert [e.seconds for e in service.effects if isinstance(e, Sleep)] == [10.0, 10.0, 5.0]
    # A last look at the deadline itself: a run that ended just in time is a success, not a timeout.
    assert [e.within for e in service.effects if isinstance(e, ReadRun)] == [25.0, 15.0, 5.0, 0.0]
    assert "CancelRun" not in service.kinds()


@pytest.mark.parametrize(
    ("answer", "cancelled"),
    [
        (RunStatusChange("r1", PipelineRunStatus.CANCELLED, True, "JOB_CANCELLED"), True),
        (
            RunStatusChange("r1", PipelineRunStatus.CANCELLED, False, "JOB_COMPLETED", "X", "already over"),
            False,
        ),
        (ClarifaiUnavailableError("down"), False),
    ],
)
def test_cancel_on_timeout_reports_whether_the_cancel_was_applied(answer, cancelled, caplog):
    service = Service([PipelineRunStatus.RUNNING], cancel=answer)

    event = drive(waiter(service, deadline=1000.0, cancel_on_timeout=True).wait(), service.answer)

    assert event.status is EventStatus.TIMEOUT
    assert event.cancelled is cancelled
    assert ("It was cancelled." in event.message) is cancelled
    (cancel,) = [effect for effect in service.effects if isinstance(effect, CancelRun)]
    assert cancel.within == 15.0
    if isinstance(answer, Exception):
        assert "Could not cancel run r1 after the wait timed out" in caplog.text


def test_settle_turns_every_event_into_the_tasks_outcome():
    def event(status: EventStatus, **extra: Any) -> RunWaitEvent:
        return RunWaitEvent(status=status, run_id="r1", message=f"{status} happened", **extra)

    summary = {"run_id": "r1", "status": "JOB_COMPLETED"}
    assert (
        settle(event(EventStatus.SUCCESS, run=summary), LOG, failed=ValueError, timed_out=KeyError) == summary
    )
    with pytest.raises(ClarifaiRunFailedError, match="last line"):
        settle(
            event(EventStatus.FAILURE, log_tail=["last line"]),
            LOG,
            failed=ClarifaiRunFailedError,
            timed_out=ClarifaiRunTimeoutError,
        )
    with pytest.raises(ClarifaiRunTimeoutError):
        settle(
            event(EventStatus.TIMEOUT), LOG, failed=ClarifaiRunFailedError, timed_out=ClarifaiRunTimeoutError
        )
    # An error event from another process is rebuilt from its class name; one from this process is the
    # original exception.
    with pytest.raises(ClarifaiNotFoundError, match="error happened"):
        settle(
            event(EventStatus.ERROR, error_class="ClarifaiNotFoundError"),
            LOG,
            failed=ClarifaiRunFailedError,
            timed_out=ClarifaiRunTimeoutError,
        )
    original = ClarifaiNotFoundError("the original")
    with pytest.raises(ClarifaiNotFoundError) as raised:
        settle(event(EventStatus.ERROR), LOG, failed=ValueError, timed_out=KeyError, error=original)
    assert raised.value is original


def test_with_log_tail_appends_the_lines_only_when_there_are_some():
    assert with_log_tail("boom", []) == "boom"
    assert with_log_tail("boom", ["a", "b"]) == "boom\nLast log lines of the run:\n  a\n  b"


def test_wait_all_looks_at_every_run_still_going_each_round_until_a_shared_deadline(caplog):
    settled = RunWaitSpec(frozenset({PipelineRunStatus.PAUSED}), frozenset())
    service = Service(
        {
            "a": [PipelineRunStatus.RUNNING, PipelineRunStatus.RUNNING, PipelineRunStatus.PAUSED],
            "b": [PipelineRunStatus.PAUSED],
            "c": [PipelineRunStatus.RUNNING],
        }
    )
    waiters = [waiter(service, run_id, settled, logs=LogMode.NONE) for run_id in "abc"]
    rounds: list[list[str]] = []

    events = drive(
        wait_all(
            waiters,
            deadline=1005.0,
            poll_interval=2.0,
            now=service.now,
            on_round=lambda going: rounds.append([w.run_id for w in going]),
        ),
        service.answer,
    )

    assert sorted(events) == ["a", "b"]
    assert events["a"].status is EventStatus.SUCCESS and events["b"].status is EventStatus.SUCCESS
    reads = [(e.run_id, e.within) for e in service.effects if isinstance(e, ReadRun)]
    # Each read is cut to the time the shared deadline has left; the last, with none left, is still made.
    assert reads == [("a", 5), ("b", 5), ("c", 5), ("a", 3), ("c", 3), ("a", 1), ("c", 1), ("c", 0)]
    assert [e.seconds for e in service.effects if isinstance(e, Sleep)] == [2, 2, 1]
    assert rounds == [["a", "c"], ["a", "c"], ["c"]]
    # A paused run is the goal here, not "still waiting": the waiter says so only when it waits.
    assert "still waiting" not in caplog.text
    assert "ReadLogs" not in service.kinds()


def test_read_states_reads_a_few_runs_one_by_one_and_many_from_one_listing():
    listed = [run(PipelineRunStatus.RUNNING, f"r{i}") for i in range(1, 5)]
    asked: list[Effect] = []

    def answer(effect: Effect) -> Any:
        asked.append(effect)
        if isinstance(effect, ListUnfinished):
            return listed
        assert isinstance(effect, ReadEach)
        return {
            run_id: ClarifaiNotFoundError("no such run")
            if run_id == "gone"
            else run(PipelineRunStatus.COMPLETED, run_id)
            for run_id in effect.run_ids
        }

    few = drive(read_states(IDS, ["r1", "r2"], 5.0), answer)
    assert [(type(e).__name__, getattr(e, "run_ids", None)) for e in asked] == [("ReadEach", ("r1", "r2"))]
    assert {run_id: r.status_name for run_id, r in few.items()} == {
        "r1": "JOB_COMPLETED",
        "r2": "JOB_COMPLETED",
    }

    asked.clear()
    many = drive(read_states(IDS, ["r1", "r2", "r3", "done", "gone"], 5.0), answer)
    # One listing of the unfinished runs; reads only for the runs it did not hold.
    assert [(type(e).__name__, getattr(e, "run_ids", None)) for e in asked] == [
        ("ListUnfinished", None),
        ("ReadEach", ("done", "gone")),
    ]
    assert all(e.within == 5.0 for e in asked)
    assert [many[r].status_name for r in ("r1", "r2", "r3", "done")] == ["JOB_RUNNING"] * 3 + [
        "JOB_COMPLETED"
    ]
    assert isinstance(many["gone"], ClarifaiNotFoundError)

    def listing_fails(effect: Effect) -> Any:
        raise ClarifaiUnavailableError("down")

    failed = drive(read_states(IDS, ["a", "b", "c", "d"], None), listing_fails)
    assert set(failed) == {"a", "b", "c", "d"}
    assert all(isinstance(error, ClarifaiUnavailableError) for error in failed.values())
