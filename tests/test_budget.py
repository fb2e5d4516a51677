"""The request budget (``airflow_provider_clarifai.budget``) on a virtual clock: pacing, the window that
covers requests in flight, AIMD, priority, deadlines, and the process's registry.

Nothing here waits in real time, and no verdict depends on the machine's speed: time moves only when
every task of a test waits, or when a thread sleeps on the shared manual clock. The budget against the
emulator over real gRPC is in ``tests/hooks/test_request_budget.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from airflow_provider_clarifai import budget as budget_module
from airflow_provider_clarifai.budget import (
    BUDGET_CODE_NAME,
    DEFAULT_REQUESTS_PER_SECOND,
    MIN_RATE,
    Permit,
    Priority,
    RequestBudget,
    budget_for,
    priority_of,
)
from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.exceptions import ClarifaiThrottledError

STEP = 1 / 15
TOKEN = "budget-test-token-not-real"


class VirtualClock:
    """A clock for one test: a thread's ``sleep`` moves it at once; ``asleep`` waits for :meth:`run` to
    move it, which happens only when every task it runs is asleep, to the earliest wake-up."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    def run(self, *coroutines: Coroutine[Any, Any, Any]) -> list[Any]:
        """Run the coroutines to their end on virtual time; their results, or the exceptions they raised."""

        async def main() -> list[Any]:
            tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
            for _ in range(1_000_000):
                running = sum(not task.done() for task in tasks)
                if running == 0:
                    return [task.exception() or task.result() for task in tasks]
                if len(self._sleepers) < running:
                    await asyncio.sleep(0)  # some task can still run: let it reach its next wait
                    continue
                wake, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                future.set_result(None)
            raise AssertionError("the tasks never ended")

        return asyncio.run(main())


def take(budget: RequestBudget, clock: VirtualClock, deadline: float = math.inf) -> Permit:
    return budget.acquire(Priority.STATUS, deadline, clock.sleep)


# Pacing and the window ----------------------------------------------------------------------------


def test_slots_are_evenly_spaced_burst_one():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    granted = []
    for _ in range(6):
        permit = take(budget, clock)
        granted.append(permit.granted_at)
        permit.done()
    # The first slot is free; each next one comes one step (1/15 s) after the one before, never sooner.
    assert clock.slept == pytest.approx([STEP] * 5)
    assert [b - a for a, b in itertools.pairwise(granted)] == pytest.approx([STEP] * 5)


def test_a_late_caller_gets_no_burst_to_make_up_for_lost_time():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    take(budget, clock).done()
    clock.sleep(5.0)  # idle for a while: nothing is saved up
    clock.slept.clear()
    for _ in range(3):
        take(budget, clock).done()
    assert clock.slept == pytest.approx([STEP, STEP])


def test_a_slot_waits_until_the_oldest_request_answered_has_counted_for_a_second():
    # 16 callers; each holds its slot for 0.5 s (the call's latency). The 16th is due by pacing at 1 s,
    # but the service may count the first request as late as its answer (0.5 s): the window it counts
    # in then holds 15 until 1.5 s.
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)

    async def caller() -> float:
        permit = await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)
        await clock.asleep(0.5)
        permit.done()
        return permit.granted_at

    granted = sorted(clock.run(*(caller() for _ in range(16))))
    assert granted[:15] == pytest.approx([i * STEP for i in range(15)])
    assert granted[15] == pytest.approx(1.5)


def test_no_window_of_the_service_can_hold_more_than_the_limit_whatever_the_latencies():
    # 200 calls arriving at random times, each taking a random time (up to 2 s) to be answered. The
    # service counts a request at some moment between its send and its answer; whichever moments it
    # picks, no one-second window holds more than 15 if, when each request is sent, fewer than 15 others
    # are in flight or were answered less than a second ago. Checked for every request.
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    rng = random.Random(11)
    plans = [(rng.uniform(0, 5), rng.choice([0.001, 0.05, 0.3, 2.0])) for _ in range(200)]
    permits: list[Permit] = []

    async def caller(arrival: float, latency: float) -> None:
        await clock.asleep(arrival)
        permit = await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)
        permits.append(permit)
        await clock.asleep(latency)
        permit.done()

    clock.run(*(caller(*plan) for plan in plans))
    assert len(permits) == 200
    for permit in permits:
        counted = [
            other
            for other in permits
            if other is not permit
            and other.granted_at <= permit.granted_at
            and other.ended_at is not None
            and other.ended_at + 1.0 > permit.granted_at
        ]
        assert len(counted) < 15
    grants = sorted(permit.granted_at for permit in permits)
    assert min(b - a for a, b in itertools.pairwise(grants)) >= STEP - 1e-9


def test_threads_share_one_budget():
    # Four threads take slots at once; their sleeps move one shared clock. However the threads
    # interleave, slots never come closer than a step, and never more than 15 count in a second.
    clock = ManualClock(start=0.0)
    budget = RequestBudget(15, clock.now)
    permits: list[Permit] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            permit = budget.acquire(Priority.STATUS, math.inf, clock.advance)
            with lock:
                permits.append(permit)
            permit.done()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(permits) == 100
    grants = sorted(permit.granted_at for permit in permits)
    assert min(b - a for a, b in itertools.pairwise(grants)) >= STEP - 1e-9
    assert budget.waiting == 0


# AIMD ---------------------------------------------------------------------------------------------


def test_throttled_answers_halve_the_rate_once_per_period_then_it_grows_back():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    assert budget.throttled() is True
    assert budget.rate == 7.5
    # Answers throttled in the same burst (requests that were in flight) count once.
    assert budget.throttled() is False
    clock.sleep(0.5)
    assert budget.throttled() is False
    assert budget.rate == pytest.approx(8.0)  # + 1 request/s per second
    clock.sleep(0.5)
    assert budget.throttled() is True
    assert budget.rate == pytest.approx(8.5 / 2)
    clock.sleep(100)
    assert budget.rate == 15  # back to the limit, never above


def test_the_rate_never_falls_below_the_floor():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    for _ in range(30):
        budget.throttled()
        clock.sleep(1.0)
        assert budget.rate >= MIN_RATE
    budget.throttled()
    assert budget.rate == pytest.approx(MIN_RATE)
    low = RequestBudget(1.5, clock.monotonic)
    low.throttled()
    assert low.rate == MIN_RATE  # not 0.75
    # A limit below the floor is kept as it is.
    slow = RequestBudget(0.5, clock.monotonic)
    slow.throttled()
    assert slow.rate == 0.5


def test_a_slowed_budget_paces_every_caller_at_the_lower_rate():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    take(budget, clock).done()
    budget.throttled()
    take(budget, clock).done()
    # One step at 7.5 requests/s (the rate grows back by a hair while it waits).
    assert clock.slept == pytest.approx([1 / 7.5], rel=0.02)


def test_waiters_far_back_follow_the_rate_as_it_grows_back():
    # Throttled down to about 1 request/s, 30 callers queue: the last one's first estimate is 30 s. The rate
    # grows back by 1 per second, so the queue is through in about 7 s (t + t^2/2 = 30); the callers look
    # again after a quarter of their estimate, so the last is served then, not after its first estimate.
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    for _ in range(40):
        budget.throttled()
        clock.sleep(1.0)
    budget.throttled()
    assert budget.rate == pytest.approx(1.0, abs=1e-6)
    start = clock.now

    async def caller() -> float:
        permit = await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)
        permit.done()
        return permit.granted_at - start

    served = sorted(clock.run(*(caller() for _ in range(30))))
    assert served[0] == 0
    assert served[1] == pytest.approx(1.0)  # one step at 1 request/s
    assert served[-1] < 10  # not 30


# Priority -----------------------------------------------------------------------------------------


def test_waiting_status_reads_go_before_waiting_log_reads():
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    order: list[str] = []

    async def caller(name: str, arrival: float) -> None:
        await clock.asleep(arrival)
        priority = priority_of("ListLogEntries" if name.startswith("log") else "GetPipelineVersionRun")
        permit = await budget.aacquire(priority, math.inf, clock.asleep)
        order.append(name)
        permit.done()

    # status-0 takes the free slot at 0; five log reads queue behind it, then two status reads come:
    # the next slot (1/15 s) goes to the status reads, though the log reads waited longer.
    callers = [caller("status-0", 0.0)]
    callers += [caller(f"log-{i}", 0.001 * (i + 1)) for i in range(5)]
    callers += [caller("status-1", 0.01), caller("status-2", 0.02)]
    clock.run(*callers)
    assert order == ["status-0", "status-1", "status-2", "log-0", "log-1", "log-2", "log-3", "log-4"]


def test_a_burst_of_log_reads_never_starves_status_polls():
    # 150 log reads (10 s of slots) wait from the start; a status poll every 2 s gets the very next slot.
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    waits: list[float] = []

    async def log_read() -> None:
        (await budget.aacquire(Priority.LOGS, math.inf, clock.asleep)).done()

    async def status_poll(at: float) -> None:
        await clock.asleep(at)
        permit = await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)
        waits.append(permit.waited)
        permit.done()

    clock.run(*(log_read() for _ in range(150)), *(status_poll(0.5 + 2 * i) for i in range(4)))
    assert len(waits) == 4
    assert max(waits) <= STEP + 1e-9


def test_status_calls_never_starve_log_reads_either():
    # 40 status calls and 4 log reads wait at once (triggers polling faster than the budget allows):
    # every fourth slot goes to a log read, oldest first, and status calls keep the other three.
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    order: list[str] = []

    async def caller(name: str, priority: Priority, deadline: float = math.inf) -> None:
        permit = await budget.aacquire(priority, deadline, clock.asleep)
        order.append(name)
        permit.done()

    async def first() -> None:
        (await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)).done()

    statuses = [caller(f"s{i}", Priority.STATUS) for i in range(40)]
    # The last log read's slot is the 17th (16/15 s): a deadline of 1.1 s is enough, because its wait is
    # judged with the share counted in (behind all 40 status calls it would seem 3 s away, and be refused).
    logs = [caller(f"log-{i}", Priority.LOGS, deadline=1.1) for i in range(4)]
    clock.run(first(), *logs, *statuses)
    assert [index for index, name in enumerate(order) if name.startswith("log")] == [3, 7, 11, 15]
    assert [name for name in order if name.startswith("log")] == [f"log-{i}" for i in range(4)]
    assert len(order) == 44


def test_the_priority_of_each_rpc():
    assert priority_of("ListLogEntries") is Priority.LOGS
    for method in (
        "GetPipelineVersionRun",
        "ListPipelineVersionRuns",
        "PatchPipelineVersionRuns",
        "PostPipelineVersionRuns",
        "GetUser",
    ):
        assert priority_of(method) is Priority.STATUS


# Deadlines ----------------------------------------------------------------------------------------


def test_a_slot_that_would_come_after_the_deadline_fails_at_once():
    clock = VirtualClock()
    budget = RequestBudget(15, clock.monotonic)
    take(budget, clock).done()
    with pytest.raises(ClarifaiThrottledError) as info:
        budget.acquire(
            Priority.STATUS, clock.now + 0.01, clock.sleep, "GetPipelineVersionRun (getting run r)"
        )
    # Nothing waited, the error is retryable, says what was not sent and holds no token.
    assert clock.slept == []
    assert info.value.retryable
    assert info.value.code_name == BUDGET_CODE_NAME
    assert "Not sent: GetPipelineVersionRun (getting run r) would wait past its deadline" in str(info.value)
    assert budget.waiting == 0
    # A slot free now is given even at the deadline: nothing is waited for.
    clock.sleep(1.0)
    assert take(budget, clock, deadline=clock.now).waited == 0


def test_a_waiter_pushed_back_past_its_deadline_leaves_at_the_deadline_not_later():
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)
    outcome: dict[str, Any] = {}

    async def log_read(deadline: float) -> None:
        try:
            (await budget.aacquire(Priority.LOGS, deadline, clock.asleep)).done()
            outcome["log"] = "served"
        except ClarifaiThrottledError:
            outcome["log"] = clock.now

    async def status_read(arrival: float) -> None:
        await clock.asleep(arrival)
        (await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)).done()

    async def first() -> None:
        (await budget.aacquire(Priority.STATUS, math.inf, clock.asleep)).done()

    # The log read's slot (1/15 s) fits its deadline (0.1 s) when it starts waiting; three status reads
    # then take that slot and the next two: it leaves, at 1/15 s, before its deadline.
    clock.run(first(), log_read(0.1), *(status_read(0.01) for _ in range(3)))
    assert outcome["log"] == pytest.approx(STEP)
    assert budget.waiting == 0


def test_a_cancelled_waiter_leaves_the_queue():
    clock = VirtualClock(start=0.0)
    budget = RequestBudget(15, clock.monotonic)

    async def main() -> int:
        take(budget, clock).done()
        waiter = asyncio.ensure_future(budget.aacquire(Priority.STATUS, math.inf, asyncio.sleep))
        await asyncio.sleep(0)
        assert budget.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return budget.waiting

    assert asyncio.run(main()) == 0


# The registry -------------------------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(budget_module, "_budgets", {})
    return budget_module._budgets


def test_one_budget_per_token_and_endpoint_keyed_without_the_token(registry):
    clock = VirtualClock()
    endpoint = ("api.example:443", True, None)
    first = budget_for(TOKEN, endpoint, None, clock.monotonic)
    assert first is not None
    assert first.limit == DEFAULT_REQUESTS_PER_SECOND == 15
    assert budget_for(TOKEN, endpoint, None, clock.monotonic) is first
    assert budget_for(TOKEN + "2", endpoint, None, clock.monotonic) is not first
    assert budget_for(TOKEN, ("other:443", True, None), None, clock.monotonic) is not first
    assert len(registry) == 3
    assert not any(TOKEN in repr(key) for key in registry)
    # Slowed down for every hook of that token: they all hold the same budget.
    first.throttled()
    assert budget_for(TOKEN, endpoint, None, clock.monotonic).rate == 7.5  # type: ignore[union-attr]


def test_the_extra_sets_the_rate_and_zero_turns_the_budget_off(registry):
    clock = VirtualClock()
    assert budget_for(TOKEN, "e", 0, clock.monotonic) is None
    assert budget_for(TOKEN, "e", 0.0, clock.monotonic) is None
    budget = budget_for(TOKEN, "e", 30, clock.monotonic)
    assert budget is not None and budget.limit == 30
    # Hooks of one token asking for different rates share the budget at the lowest.
    assert budget_for(TOKEN, "e", 5, clock.monotonic) is budget
    assert budget.limit == 5
    assert budget_for(TOKEN, "e", None, clock.monotonic).limit == 5  # type: ignore[union-attr]


def test_a_budget_refuses_a_rate_that_is_not_positive():
    for limit in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="limit must be a finite number"):
            RequestBudget(limit, VirtualClock().monotonic)
