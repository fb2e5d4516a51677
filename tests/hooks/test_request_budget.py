"""The request budget through ClarifaiHook, against the emulator over real loopback gRPC.

The emulator's rate limiter counts requests per token in a sliding one-second window, when a request
reaches it. The budget guarantees its part on any monotonic clock it shares with that window: a slot is
given only while fewer than ``limit`` requests are in flight or were answered less than a second ago, and
the service counts a request between its send and its answer, so no window of the service can hold more
than ``limit`` of them, however slow the machine (see ``airflow_provider_clarifai/budget.py``). The bursts
below run the hooks and the emulator's window on one clock, real time sped up 20 times (a second of
slots takes 50 ms); the burst without a budget runs on a window that never moves, so it is throttled on
any machine. The unit tests of the budget, on virtual time, are in ``tests/test_budget.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_clarifai.budget import BUDGET_CODE_NAME, Priority, RequestBudget, budget_for
from airflow_provider_clarifai.emulator.clock import Clock, ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.exceptions import ClarifaiThrottledError
from airflow_provider_clarifai.hooks import _transport
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.retry import RetryClock, RetryPolicy
from tests.hooks.conftest import FAST_RETRIES, IDS, run_async

pytestmark = pytest.mark.integration

#: One attempt per call, so a throttled answer surfaces instead of being retried away.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, max_elapsed=600)
STEP = 1 / 15
THREADS, SYNC_READS, ASYNC_READS = 2, 20, 200


class FastClock:
    """Real monotonic time, ``scale`` times faster, for the emulator's window and the hooks alike."""

    def __init__(self, scale: float = 20.0) -> None:
        self.scale = scale
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.scale

    def retry_clock(self) -> RetryClock:
        async def asleep(seconds: float) -> None:
            await asyncio.sleep(seconds / self.scale)

        return RetryClock(
            monotonic=self.now, sleep=lambda seconds: time.sleep(seconds / self.scale), asleep=asleep
        )


def recording_clock(clock: ManualClock, waited: list[float]) -> RetryClock:
    """The hook's clock on ``clock``: each blocking wait is recorded, and moves it at once."""

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock.advance(seconds)

    return RetryClock(monotonic=clock.now, sleep=sleep)


def limited_emulator(window: Clock) -> ClarifaiEmulator:
    """An emulator throttling above 15 requests per second per token, its window on ``window``."""
    emulator = ClarifaiEmulator(clock=ManualClock(), rate_limit_clock=window)
    emulator.backend.set_rate_limit(15)
    return emulator


@pytest.fixture
def fast() -> Iterator[tuple[ClarifaiEmulator, FastClock]]:
    """The limited emulator, its window on a :class:`FastClock` that the test's hooks use too."""
    window = FastClock()
    with limited_emulator(window) as emulator:
        yield emulator, window


def connect(monkeypatch, emulator: ClarifaiEmulator, conn_id: str = "clarifai_default", **extra: Any) -> str:
    monkeypatch.setenv(*emulator.airflow_connection_env(conn_id, conn_extra=extra or None))
    return conn_id


def burst(conn_id: str, clock: RetryClock) -> None:
    """200 asyncio reads at once, while two threads make 20 blocking reads each; each hook its own,
    all of one token and endpoint. A failed read is kept, not raised: the emulator's log is the verdict."""

    def thread_reads() -> None:
        with ClarifaiHook(conn_id, retry_policy=ONE_ATTEMPT, clock=clock) as hook:
            for _ in range(SYNC_READS):
                with contextlib.suppress(ClarifaiThrottledError):
                    hook.get_run(IDS, "run-running")

    async def loop_reads() -> None:
        hooks = [ClarifaiHook(conn_id, retry_policy=ONE_ATTEMPT, clock=clock) for _ in range(ASYNC_READS)]
        await asyncio.gather(*(hook.aget_run(IDS, "run-running") for hook in hooks), return_exceptions=True)

    threads = [threading.Thread(target=thread_reads) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        run_async(loop_reads)
    finally:
        for thread in threads:
            thread.join(timeout=120)


def codes(emulator: ClarifaiEmulator) -> list[str | None]:
    return [record.code for record in emulator.requests]


@pytest.fixture
def clarifai_connection_extra() -> dict[str, Any]:
    """The connection's default budget (tests/conftest.py turns it off for an unlimited emulator)."""
    return {}


def test_a_burst_from_a_loop_and_two_threads_is_never_throttled(fast, monkeypatch):
    emulator, window = fast
    burst(connect(monkeypatch, emulator), window.retry_clock())
    sent = codes(emulator)
    assert len(sent) == ASYNC_READS + THREADS * SYNC_READS
    assert sent.count("CONN_THROTTLED") == 0
    assert set(sent) == {"SUCCESS"}


def test_the_same_burst_without_the_budget_is_throttled(monkeypatch):
    # requests_per_second=0 turns the budget off. The window stands still here, so however fast or slow
    # the burst is sent, all but its first 15 requests are throttled: the test above can fail.
    with limited_emulator(ManualClock(start=0)) as emulator:
        burst(connect(monkeypatch, emulator, requests_per_second=0), FastClock().retry_clock())
        sent = codes(emulator)
    assert len(sent) == ASYNC_READS + THREADS * SYNC_READS
    assert sent.count("SUCCESS") == 15
    assert sent.count("CONN_THROTTLED") == len(sent) - 15


@pytest.mark.clarifai_scenario(rate_limit_per_second=15)
def test_on_the_real_clock_a_burst_is_never_throttled(clarifai_emulator, clarifai_connection):
    # The real clock on both sides: the hooks' slots and the emulator's window. However slow the machine,
    # a slot comes no sooner than a second after the answer of the request 15 before it, so the service
    # can never count 16 in a second. (40 reads: about three seconds of slots.)
    clarifai_emulator.backend.set_rate_limit(15)

    def thread_reads() -> None:
        with ClarifaiHook(retry_policy=ONE_ATTEMPT) as hook:
            for _ in range(5):
                hook.get_run(IDS, "run-running")

    async def loop_reads() -> None:
        hooks = [ClarifaiHook(retry_policy=ONE_ATTEMPT) for _ in range(30)]
        await asyncio.gather(*(hook.aget_run(IDS, "run-running") for hook in hooks))

    threads = [threading.Thread(target=thread_reads) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    run_async(loop_reads)
    for thread in threads:
        thread.join(timeout=120)
    assert codes(clarifai_emulator) == ["SUCCESS"] * 40


def test_status_reads_overtake_waiting_log_reads(fast, monkeypatch):
    # 40 log reads: the first 15 take every slot and are held at the service, the other 25 wait for slots.
    # Three status reads then join them; a read with another token (its own window) releases the hold.
    # The status reads get the next slots, before the 25 log reads that waited longer.
    emulator, window = fast
    clock = window.retry_clock()
    conn_id = connect(monkeypatch, emulator)
    monkeypatch.setenv(
        "AIRFLOW_CONN_READONLY",
        json.dumps(dict(emulator.airflow_connection(), password="emulator-pat-readonly")),
    )
    hold = emulator.holds.add("ListLogEntries", parties=16, timeout_seconds=60)
    # The order slots are given in, as the budget gives them (a recording pass-through, nothing replaced).
    granted: list[Priority] = []
    original = RequestBudget.aacquire

    async def recording(self: RequestBudget, priority: Priority, *args: Any) -> Any:
        permit = await original(self, priority, *args)
        granted.append(priority)
        return permit

    monkeypatch.setattr(RequestBudget, "aacquire", recording)

    async def main() -> None:
        hook = ClarifaiHook(conn_id, retry_policy=ONE_ATTEMPT, clock=clock)
        settings = await hook.aget_settings()
        budget = budget_for(settings.token, settings.channel_key, None, window.now)
        assert budget is not None
        logs = [asyncio.ensure_future(hook.aget_run_logs(IDS, "run-running", max_pages=1)) for _ in range(40)]
        await until(lambda: hold.arrived == 15 and budget.waiting == 25)
        polls = [asyncio.ensure_future(hook.aget_run(IDS, "run-running")) for _ in range(3)]
        await until(lambda: budget.waiting == 28)
        other = ClarifaiHook("readonly", retry_policy=ONE_ATTEMPT, clock=clock)
        await other.aget_run_logs(IDS, "run-running", max_pages=1)
        await asyncio.gather(*logs, *polls)

    run_async(main)
    assert hold.met
    logs, status = Priority.LOGS, Priority.STATUS
    # The 16th log read is the readonly token's, from its own budget: it is what releases the hold.
    assert granted == [logs] * 16 + [status] * 3 + [logs] * 25
    # The service's view agrees, within what can overtake a request in flight: a request answered
    # before an earlier one can only be one that was in flight with it, and at most 15 are.
    methods = [record.method for record in emulator.requests]
    assert methods.count("ListLogEntries") == 41
    last_poll = max(index for index, method in enumerate(methods) if method == "GetPipelineVersionRun")
    assert methods[:last_poll].count("ListLogEntries") <= 16 + 14  # without priority: 41
    assert "CONN_THROTTLED" not in codes(emulator)


async def until(condition: Callable[[], bool]) -> None:
    """Wait, in real time, until ``condition`` holds (a guard of 60 s; it holds within milliseconds)."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def test_a_slot_that_would_come_after_the_time_limit_fails_fast_and_sends_nothing(emulator):
    window, waited = ManualClock(start=0), []
    clock = recording_clock(window, waited)
    hook = ClarifaiHook(retry_policy=FAST_RETRIES, clock=clock)
    hook.get_run(IDS, "run-running")
    with hook.time_limit(0.03), pytest.raises(ClarifaiThrottledError) as info:
        hook.get_run(IDS, "run-running")  # its slot is 1/15 s away
    assert info.value.code_name == BUDGET_CODE_NAME
    assert info.value.method == "GetPipelineVersionRun"
    assert "Not sent: GetPipelineVersionRun (getting run run-running of" in str(info.value)
    assert any("Gave up" in note for note in info.value.__notes__)
    assert emulator.token not in str(info.value)
    assert waited == []
    assert emulator.requests.count() == 1


@pytest.mark.parametrize(("extra", "waits"), [({}, [STEP] * 4), ({"requests_per_second": 0}, [])])
def test_the_extra_turns_the_budget_off(emulator, monkeypatch, extra, waits):
    window, waited = ManualClock(start=0), []
    clock = recording_clock(window, waited)
    hook = ClarifaiHook(connect(monkeypatch, emulator, "paced", **extra), clock=clock)
    for _ in range(5):
        hook.get_run(IDS, "run-running")
    assert waited == pytest.approx(waits)


def test_throttled_answers_slow_down_every_hook_of_the_token(emulator, monkeypatch):
    # Three throttled answers in a row (another process using the token, say) halve the budget once; a
    # hook of another connection with the same token then waits 1/7.5 s between calls, not 1/15 s.
    window, waited = ManualClock(start=0), []
    clock = recording_clock(window, waited)
    emulator.faults.add(kind="throttle", method="GetPipelineVersionRun", count=3)
    first = ClarifaiHook(retry_policy=FAST_RETRIES, clock=clock)
    first.get_run(IDS, "run-running")
    assert codes(emulator) == ["CONN_THROTTLED"] * 3 + ["SUCCESS"]
    settings = first.get_settings()
    budget = budget_for(settings.token, settings.channel_key, None, window.now)
    assert budget is not None
    assert 7.5 <= budget.rate < 8  # halved once, growing back by 1 per second
    other = ClarifaiHook(connect(monkeypatch, emulator, "other"), clock=clock)
    other.get_run(IDS, "run-running")
    waited.clear()
    other.get_run(IDS, "run-running")
    assert waited == pytest.approx([1 / budget.rate], rel=0.05)
    assert waited[0] > 1.8 * STEP


def test_a_hook_looks_its_endpoint_up_once_per_loop(emulator, monkeypatch):
    lookups: list[int] = []
    original = _transport.async_endpoint

    async def counting(settings: Any, **kwargs: Any) -> Any:
        lookups.append(1)
        return await original(settings, **kwargs)

    monkeypatch.setattr(_transport, "async_endpoint", counting)
    hook = ClarifaiHook(connect(monkeypatch, emulator, "unpaced", requests_per_second=0))

    async def reads(count: int) -> None:
        for _ in range(count):
            await hook.aget_run(IDS, "run-running")

    async def reads_then_close_then_read() -> None:
        await reads(4)
        await _transport.close_async_endpoints()
        await reads(2)  # the endpoint it kept was closed: it looks again, and gets a new one

    run_async(lambda: reads(5))
    assert len(lookups) == 1
    run_async(reads_then_close_then_read)  # a new loop: looked up again, then again after the close
    assert len(lookups) == 3
    assert emulator.requests.count("GetPipelineVersionRun") == 11
