"""Clocks for the Clarifai emulator.

The emulator keeps two notions of time apart:

* the *lifecycle clock* decides when runs start and finish. Tests use :class:`ManualClock` so a run that
  "takes an hour" finishes the instant the test calls ``advance(3600)``; the CLI uses :class:`WallClock`,
  optionally sped up.
* the *rate-limit clock* measures the one-second windows of the rate limiter. It is a real monotonic clock
  (:class:`MonotonicClock`) by default, because throttling is about how fast a client really calls, and
  it is injectable so the limiter can be tested without sleeping.

Every clock returns seconds as a ``float``. Lifecycle clocks return seconds since the Unix epoch, because
the emulator turns them into protobuf timestamps (``created_at``, ``started_at``...).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_START", "Clock", "ManualClock", "MonotonicClock", "WallClock"]

#: Where a :class:`ManualClock` starts unless told otherwise: 2025-01-01T00:00:00Z. A fixed instant keeps
#: timestamps in test output reproducible.
DEFAULT_START = 1_735_689_600.0


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` method returning seconds as a float."""

    def now(self) -> float:
        """Return the current time in seconds."""
        ...


class ManualClock:
    """A clock that moves only when told to; safe to share between threads.

    :param start: the initial time, in seconds since the Unix epoch.
    """

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the current emulated time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward.

        :param seconds: how far to move; must not be negative, because run lifecycles assume time never
            goes backwards.
        :return: the new time.
        :raises ValueError: if ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative amount ({seconds})")
        with self._lock:
            self._now += float(seconds)
            return self._now

    def set(self, timestamp: float) -> None:
        """Jump to an absolute time.

        :param timestamp: the new time in seconds since the Unix epoch; must not be earlier than now.
        :raises ValueError: if ``timestamp`` is in the past of this clock.
        """
        with self._lock:
            if timestamp < self._now:
                raise ValueError(f"cannot move a clock backwards (from {self._now} to {timestamp})")
            self._now = float(timestamp)

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now()!r})"


class WallClock:
    """Real time, optionally sped up: each real second is ``scale`` emulated seconds.

    The clock starts at the real wall-clock time and then advances with the monotonic clock, so changes
    of the system time do not make runs jump.

    :param scale: how many emulated seconds pass per real second; must be positive.
    :param start: the emulated time at construction (default: the current Unix time).
    """

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        self._start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    def now(self) -> float:
        """Return the current emulated time."""
        return self._start + (time.monotonic() - self._origin) * self.scale

    def __repr__(self) -> str:
        return f"WallClock(scale={self.scale!r})"


class MonotonicClock:
    """The real monotonic clock (:func:`time.monotonic`); the rate limiter's default."""

    def now(self) -> float:
        """Return monotonic seconds."""
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"
