"""The one retry policy, shared by the hook's sync and asyncio paths and carried by triggers.

Only errors whose class says ``retryable`` (transport failures, the service's internal errors,
throttling) are retried; everything else propagates at once. Backoff is exponential with jitter and
bounded both in attempts and in total time, and every attempt gets a deadline that never reaches past
the total budget. The policy is a frozen dataclass of numbers, so it serializes to JSON for trigger
kwargs and back without loss.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from airflow_provider_clarifai.exceptions import (
    ClarifaiConfigurationError,
    ClarifaiError,
    ClarifaiThrottledError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The shortest deadline an attempt gets: a zero deadline would fail without even trying.
MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True)
class RetryClock:
    """How the hook and the waiter tell time and wait: the real clock by default; tests inject a fake one.

    :param monotonic: a monotonic clock, in seconds (retry budgets, call time limits).
    :param sleep: a blocking wait.
    :param asleep: an asyncio wait.
    :param now: wall-clock UNIX seconds (a wait's absolute deadline, which outlives the process).
    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], float] = time.time


#: The real clock.
SYSTEM_CLOCK = RetryClock()


@dataclass(frozen=True)
class RetryPolicy:
    """How calls to Clarifai are retried. Retries are on by default.

    :param max_attempts: attempts in all, the first included (1 disables retries).
    :param initial_backoff: seconds before the second attempt.
    :param max_backoff: the longest wait between two attempts, in seconds.
    :param multiplier: growth of the wait after each failed attempt.
    :param jitter: fraction of each wait that is random (0: none, 1: "full jitter"), so many clients
        failing together do not retry together.
    :param max_elapsed: seconds from the first attempt after which no new attempt starts; attempt
        deadlines are cut to fit in it.
    :param throttle_backoff: the shortest wait after the service said the rate limit was hit
        (Clarifai asks clients to wait before retrying).
    """

    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_elapsed: float = 120.0
    throttle_backoff: float = 1.0

    def __post_init__(self) -> None:
        from airflow_provider_clarifai.validate import quote, seconds_problem

        problems = []
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            problems.append(f"max_attempts must be a whole number >= 1, got {quote(attempts)}")
        for name in ("initial_backoff", "max_backoff", "throttle_backoff", "max_elapsed"):
            problem = seconds_problem(name, getattr(self, name), allow_zero=name != "max_elapsed")
            if problem is not None:
                problems.append(problem)
        for name, low, high in (("multiplier", 1.0, 1000.0), ("jitter", 0.0, 1.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                problems.append(f"{name} must be a number from {low:g} to {high:g}, got {quote(value)}")
        if problems:
            raise ClarifaiConfigurationError(
                "Invalid retry policy: "
                + "; ".join(problems)
                + ". Pass only the settings to change, for example {'max_attempts': 8}."
            )

    def within(self, seconds: float) -> RetryPolicy:
        """This policy, bounded to ``seconds`` in all: no attempt starts, or lasts, past them.

        Used while waiting: a call made with 3 s left in a wait must not take the whole retry budget.

        :param seconds: the time left, in seconds (at least a small floor is kept, so a call can be made).
        """
        bound = max(float(seconds), MIN_ATTEMPT_SECONDS)
        if bound >= self.max_elapsed:
            return self
        return replace(self, max_elapsed=bound)

    def to_dict(self) -> dict[str, int | float]:
        """The policy as JSON-ready primitives (for trigger kwargs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Build a policy from :meth:`to_dict` output or a user's dict of overrides.

        :param data: field names and values; unknown names are an error.
        :raises ClarifaiConfigurationError: unknown names or invalid values.
        """
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClarifaiConfigurationError(
                f"Invalid retry policy: unknown setting(s) {', '.join(unknown)}; "
                f"valid settings are {', '.join(sorted(known))}."
            )
        return cls(**dict(data))

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None, name: str = "retry_policy") -> RetryPolicy:
        """Accept a policy, a dict of settings, or ``None`` for the default policy.

        :param value: what the user passed.
        :param name: the parameter it was passed as, for the error message.
        """
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise ClarifaiConfigurationError(
            f"{name} must be a RetryPolicy, a dict or None, not {type(value).__name__}. Pass, for "
            "example, {'max_attempts': 8} or RetryPolicy(max_attempts=8)."
        )

    def backoff(self, failed_attempts: int, error: BaseException, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failed_attempts`` failures, the last being ``error``.

        :param failed_attempts: attempts made so far (1 after the first failure).
        :param error: the last error.
        :param rng: random source, for reproducible tests.
        """
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempts - 1))
        wait = ceiling * (1 - self.jitter * (rng or random).random())
        if isinstance(error, ClarifaiThrottledError):
            wait = max(wait, self.throttle_backoff)
        return wait

    def call(
        self,
        attempt: Callable[[float], T],
        *,
        call_timeout: float,
        description: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """Run ``attempt(deadline_seconds)`` until it succeeds or the policy gives up.

        :param attempt: makes one call; receives the deadline in seconds it must pass to gRPC.
        :param call_timeout: the deadline of one call, cut to the remaining budget.
        :param description: what is being done, for log lines.
        :param sleep: how to wait (tests pass a fake).
        :param clock: a monotonic clock (tests pass a fake).
        """
        schedule = RetrySchedule(self, call_timeout, clock())
        while True:
            try:
                return attempt(schedule.attempt_timeout(clock()))
            except ClarifaiError as error:
                sleep(schedule.after_failure(error, clock(), description))

    async def acall(
        self,
        attempt: Callable[[float], Awaitable[T]],
        *,
        call_timeout: float,
        description: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """The asyncio twin of :meth:`call`; waits with ``asyncio.sleep`` so the loop stays free.

        :param attempt: makes one call; receives the deadline in seconds it must pass to gRPC.
        :param call_timeout: the deadline of one call, cut to the remaining budget.
        :param description: what is being done, for log lines.
        :param clock: a monotonic clock (tests pass a fake).
        """
        schedule = RetrySchedule(self, call_timeout, clock())
        while True:
            try:
                return await attempt(schedule.attempt_timeout(clock()))
            except ClarifaiError as error:
                await asyncio.sleep(schedule.after_failure(error, clock(), description))


class RetrySchedule:
    """Bookkeeping of one retried call: each attempt's deadline, and the wait (or the end) after a failure.

    The one place retry decisions are made; :meth:`RetryPolicy.call`, :meth:`RetryPolicy.acall` and the
    hook's execution core (``hooks/_execution.py``) only loop around it.

    :param policy: the policy.
    :param call_timeout: the deadline of one attempt, before it is cut to the remaining budget.
    :param started: the monotonic time of the first attempt.
    """

    def __init__(self, policy: RetryPolicy, call_timeout: float, started: float) -> None:
        self.policy = policy
        self.call_timeout = call_timeout
        self.deadline = started + policy.max_elapsed
        self.started = started
        self.failures = 0

    def attempt_timeout(self, now: float) -> float:
        """The next attempt's deadline in seconds, at monotonic time ``now``.

        :param now: the current monotonic time.
        """
        # Never below a small floor: a zero deadline would fail without even trying.
        return max(min(self.call_timeout, self.deadline - now), MIN_ATTEMPT_SECONDS)

    def after_failure(self, error: ClarifaiError, now: float, description: str) -> float:
        """Return how long to wait before the next attempt, or re-raise ``error`` to give up.

        :param error: the attempt's error.
        :param now: the current monotonic time.
        :param description: what is being done, for the log line and the note added when giving up.
        """
        self.failures += 1
        if not error.retryable:
            raise error
        policy = self.policy
        wait = policy.backoff(self.failures, error)
        if self.failures >= policy.max_attempts or now + wait >= self.deadline:
            error.add_note(
                f"Gave up {description} after {self.failures} attempt(s) in {now - self.started:.1f} s "
                f"(retry policy: max_attempts={policy.max_attempts}, max_elapsed={policy.max_elapsed} s)."
            )
            raise error
        log.warning(
            "%s failed (attempt %d of %d): %s Retrying in %.2f s.",
            description,
            self.failures,
            policy.max_attempts,
            error.code_name or type(error).__name__,
            wait,
        )
        return wait
