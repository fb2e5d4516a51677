"""The trigger keeps its deadline against a server that never answers, and never blocks its loop.

No assertion here is about how long anything took: the emulator records the deadline each request
carried when it arrived, and those deadlines are what the trigger controls. A call that was not cut to
the wait's time left carries the connection's 30 s deadline and fails the test, however fast the machine.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_clarifai.waiting import (
    DEFERRAL_GRACE_SECONDS,
    TRIGGER_OVERRUN_SECONDS,
    WRAP_UP_SECONDS,
    EventStatus,
)
from tests.triggers.test_clarifai import drain, make_trigger, state

pytestmark = pytest.mark.integration

#: The wait's length in these tests, in real seconds: long enough that the first read reaches the
#: server on a busy machine; the assertions are about the deadlines requests carried, never durations.
WINDOW = 2.0


def at_most(limit: float) -> float:
    """``limit`` as the server sees it: gRPC rounds a deadline up when it encodes it (to 100 ms here)."""
    return limit * 1.01 + 0.1


def deadlines(emulator, method: str) -> list[float]:
    return [
        record.deadline_seconds
        for record in emulator.requests
        if record.method == method and record.deadline_seconds is not None
    ]


def test_reads_are_cut_to_the_time_left_and_the_cancel_has_its_own_small_budget(emulator):
    emulator.faults.add(method="GetPipelineVersionRun", kind="hang")
    # The default retry policy: 30 s per call, 120 s in all. Uncut, one read would outlast the wait 30 times.
    trigger = make_trigger(
        run_id="run-running",
        poll_interval=0.2,
        deadline=time.time() + WINDOW,
        cancel_on_timeout=True,
        retry_policy=None,
    )

    (event,) = asyncio.run(drain(trigger))

    assert event.status is EventStatus.TIMEOUT
    assert event.cancelled is True
    assert state(emulator, "run-running") == "JOB_CANCELLED"
    reads = deadlines(emulator, "GetPipelineVersionRun")
    assert reads, "the trigger never read the run"
    assert max(reads) <= at_most(WINDOW)
    (cancel,) = deadlines(emulator, "PatchPipelineVersionRuns")
    assert cancel <= at_most(WRAP_UP_SECONDS)
    # So the trigger runs at most one wrap-up past its deadline, and Airflow's deferral timeout, a whole
    # grace after the deadline, cannot win the race and skip this cancel.
    assert WRAP_UP_SECONDS < TRIGGER_OVERRUN_SECONDS < DEFERRAL_GRACE_SECONDS / 4


def test_log_reads_while_waiting_are_cut_to_the_time_left(emulator):
    emulator.faults.add(method="ListLogEntries", kind="hang")
    trigger = make_trigger(
        run_id="run-running",
        poll_interval=0.2,
        deadline=time.time() + WINDOW,
        stream_logs=True,
        retry_policy=None,
    )

    (event,) = asyncio.run(drain(trigger))

    assert event.status is EventStatus.TIMEOUT
    # A hung request is recorded when the server lets it go, which can be just after the trigger ended.
    assert emulator.requests.wait_for(lambda records: any(r.method == "ListLogEntries" for r in records), 60)
    log_reads = deadlines(emulator, "ListLogEntries")
    assert log_reads
    assert max(log_reads) <= at_most(WINDOW)


class LoopFileWatch:
    """Records every file one thread opens while watching it (through an audit hook)."""

    def __init__(self) -> None:
        self.thread: int | None = None
        self.opened: list[str] = []

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and self.thread is not None and self.thread == threading.get_ident():
            self.opened.append(str(args[0]))


@pytest.fixture(scope="module")
def loop_file_watch() -> Iterator[LoopFileWatch]:
    # Audit hooks cannot be removed: one per module, switched off by clearing the thread it watches.
    watch = LoopFileWatch()
    sys.addaudithook(watch.audit)
    yield watch
    watch.thread = None


def test_a_trigger_opens_no_file_on_the_event_loop(emulator, loop_file_watch):
    """Reading a file on the loop blocks every trigger on it (a hung network mount blocks forever)."""
    trigger = make_trigger(
        run_id="run-running", poll_interval=0.05, deadline=time.time() + 5, stream_logs=True
    )

    async def main() -> Any:
        loop_file_watch.thread = threading.get_ident()
        try:
            return await drain(trigger)
        finally:
            loop_file_watch.thread = None

    (event,) = asyncio.run(main())

    assert event.status is EventStatus.TIMEOUT
    assert emulator.requests.count("GetPipelineVersionRun") >= 1
    assert loop_file_watch.opened == []


def test_the_watch_sees_a_file_opened_on_the_loop(tmp_path, loop_file_watch):
    """The guard above can fail: a blocking open on the loop thread is seen."""
    path = tmp_path / "blocking.txt"
    path.write_text("x")

    async def main() -> None:
        loop_file_watch.thread = threading.get_ident()
        try:
            path.read_text()
        finally:
            loop_file_watch.thread = None

    loop_file_watch.opened.clear()
    asyncio.run(main())
    assert loop_file_watch.opened == [str(path)]
    loop_file_watch.opened.clear()
