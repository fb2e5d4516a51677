from __future__ import annotations

import asyncio
import json
import random

import pytest

from airflow_provider_clarifai.exceptions import (
    ClarifaiAuthError,
    ClarifaiConfigurationError,
    ClarifaiThrottledError,
    ClarifaiUnavailableError,
)
from airflow_provider_clarifai.retry import RetryPolicy


class FakeTime:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors, result="ok"):
    """An attempt function that raises each error in turn, then returns ``result``."""
    pending = list(errors)
    deadlines: list[float] = []

    def attempt(deadline: float):
        deadlines.append(deadline)
        if pending:
            raise pending.pop(0)
        return result

    attempt.deadlines = deadlines  # type: ignore[attr-defined]
    return attempt


def test_policy_round_trips_through_json():
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_elapsed=9.5)
    assert RetryPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert RetryPolicy.coerce(None) == RetryPolicy()
    assert RetryPolicy.coerce({"max_attempts": 2}).max_attempts == 2
    assert RetryPolicy.coerce(policy) is policy


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number >= 1"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"initial_backoff": -1}, "initial_backoff must be a number of seconds, 0 or more, got -1"),
        ({"jitter": 2}, "jitter must be a number from 0 to 1, got 2"),
        ({"multiplier": 0.5}, "multiplier must be a number from 1 to 1000, got 0.5"),
        ({"max_elapsed": "10"}, "max_elapsed must be a positive number of seconds, got '10'"),
        ({"max_backoff": float("nan")}, "max_backoff must be a number of seconds, 0 or more, got nan"),
        ({"max_elapsed": float("inf")}, "max_elapsed must be a positive number of seconds, got inf"),
        ({"retries": 3}, "unknown setting(s) retries"),
    ],
)
def test_invalid_policies_are_rejected_with_the_reason(settings, message):
    with pytest.raises(ClarifaiConfigurationError) as info:
        RetryPolicy.from_dict(settings)
    assert message in str(info.value)


def test_coerce_rejects_other_types():
    with pytest.raises(ClarifaiConfigurationError, match="retry_policy must be"):
        RetryPolicy.coerce(3)  # type: ignore[arg-type]


def test_backoff_grows_exponentially_within_bounds():
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=5, jitter=0)
    error = ClarifaiUnavailableError("x")
    assert [policy.backoff(n, error) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_stays_within_its_fraction():
    policy = RetryPolicy(initial_backoff=4, multiplier=1, jitter=0.5)
    rng = random.Random(7)
    waits = [policy.backoff(1, ClarifaiUnavailableError("x"), rng) for _ in range(200)]
    assert min(waits) >= 2 and max(waits) <= 4
    assert len({round(w, 6) for w in waits}) > 100


def test_throttling_waits_at_least_the_throttle_backoff():
    policy = RetryPolicy(initial_backoff=0.01, throttle_backoff=1.5, jitter=0)
    assert policy.backoff(1, ClarifaiThrottledError("x")) == 1.5
    assert policy.backoff(1, ClarifaiUnavailableError("x")) == 0.01


def test_retryable_errors_are_retried_until_success():
    fake = FakeTime()
    attempt = failing([ClarifaiUnavailableError("down"), ClarifaiThrottledError("slow")])
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.5, jitter=0, throttle_backoff=1)
    result = policy.call(attempt, call_timeout=30, description="t", sleep=fake.sleep, clock=fake.clock)
    assert result == "ok"
    assert fake.sleeps == [0.5, 1.0]


def test_non_retryable_errors_raise_at_once():
    fake = FakeTime()
    error = ClarifaiAuthError("bad token")
    with pytest.raises(ClarifaiAuthError) as info:
        RetryPolicy().call(
            failing([error]), call_timeout=30, description="t", sleep=fake.sleep, clock=fake.clock
        )
    assert info.value is error
    assert fake.sleeps == []


def test_gives_up_after_max_attempts_and_says_so():
    fake = FakeTime()
    errors = [ClarifaiUnavailableError(f"down {n}") for n in range(10)]
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=0)
    with pytest.raises(ClarifaiUnavailableError) as info:
        policy.call(
            failing(errors), call_timeout=30, description="getting run r", sleep=fake.sleep, clock=fake.clock
        )
    assert str(info.value) == "down 2"
    assert len(fake.sleeps) == 2
    assert any("Gave up getting run r after 3 attempt(s)" in note for note in info.value.__notes__)


def test_total_time_bounds_retries_and_cuts_attempt_deadlines():
    fake = FakeTime()
    attempt = failing([ClarifaiUnavailableError(str(n)) for n in range(50)])
    policy = RetryPolicy(max_attempts=50, initial_backoff=4, multiplier=1, jitter=0, max_elapsed=10)
    with pytest.raises(ClarifaiUnavailableError):
        policy.call(attempt, call_timeout=5, description="t", sleep=fake.sleep, clock=fake.clock)
    # Attempts start at t=0, 4 and 8 s; a fourth would start at 12 s, past the 10 s budget.
    assert fake.sleeps == [4, 4]
    assert attempt.deadlines == [5, 5, 2]


def test_async_twin_retries_without_blocking():
    attempt_count = 0

    async def attempt(deadline: float) -> str:
        nonlocal attempt_count
        attempt_count += 1
        if attempt_count < 3:
            raise ClarifaiUnavailableError("down")
        return "done"

    policy = RetryPolicy(initial_backoff=0.001, jitter=0)
    assert asyncio.run(policy.acall(attempt, call_timeout=1, description="t")) == "done"
    assert attempt_count == 3


def test_async_cancellation_is_not_swallowed():
    async def main() -> None:
        async def attempt(deadline: float) -> str:
            raise ClarifaiUnavailableError("down")

        task = asyncio.create_task(
            RetryPolicy(initial_backoff=30).acall(attempt, call_timeout=1, description="t")
        )
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
