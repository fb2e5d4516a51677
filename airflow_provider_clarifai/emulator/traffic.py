"""What happens to requests on their way in: rate limiting, injected faults, holds, the in-flight gauge
and the request log.

Plain Python, no gRPC: the server consults these for each request. Each class is thread-safe.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from airflow_provider_clarifai.emulator.clock import Clock, MonotonicClock
from airflow_provider_clarifai.emulator.domain import FaultKind, FaultRule

__all__ = ["Faults", "Hold", "Holds", "InFlightGauge", "RateLimiter", "RequestLog", "RequestRecord"]


class RateLimiter:
    """A sliding one-second window per key (per token).

    Only accepted requests count toward the window, so a client that backs off recovers within a second.

    :param limit_per_second: requests allowed in any one-second window; ``None`` (or 0) turns it off.
    :param clock: the clock measuring the window (real monotonic time unless injected).
    """

    def __init__(self, limit_per_second: int | None, clock: Clock | None = None) -> None:
        self.limit_per_second = limit_per_second or None
        self._clock: Clock = clock or MonotonicClock()
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def set_limit(self, limit_per_second: int | None) -> None:
        """Change the limit.

        :param limit_per_second: the new limit; ``None`` or 0 turns it off.
        """
        with self._lock:
            self.limit_per_second = limit_per_second or None

    def allow(self, key: str) -> bool:
        """Count a request for ``key`` if the window has room.

        :param key: who is calling (the token).
        :return: whether the request is allowed.
        """
        if self.limit_per_second is None:
            return True
        with self._lock:
            now = self._clock.now()
            window = self._windows.setdefault(key, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self.limit_per_second:
                return False
            window.append(now)
            return True


@dataclass
class _ActiveFault:
    rule: FaultRule
    remaining: int | None


class Faults:
    """The faults to inject, consulted once per request; thread-safe.

    Rules are tried in the order they were added and at most one fires per request.

    :param rules: initial rules (e.g. from the scenario).
    :param seed: seed of the random generator used for ``probability``.
    """

    def __init__(self, rules: Iterable[FaultRule] = (), seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._active: list[_ActiveFault] = []
        for rule in rules:
            self.add_rule(rule)

    def add(
        self,
        *,
        kind: FaultKind | str,
        method: str = "*",
        count: int | None = None,
        probability: float = 1.0,
        latency_seconds: float = 0.0,
    ) -> FaultRule:
        """Add a fault; see :class:`~airflow_provider_clarifai.emulator.scenario.FaultRule` for the kinds.

        :param kind: the fault kind, e.g. ``"unavailable"``.
        :param method: an RPC name, or ``"*"`` for every RPC.
        :param count: how many requests it hits; ``None`` for all.
        :param probability: chance (0..1) that a matching request is hit.
        :param latency_seconds: real seconds to wait for ``latency``.
        :return: the rule added.
        :raises ValueError: if the rule is invalid.
        """
        try:
            fault_kind = FaultKind(kind)
        except ValueError:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FaultKind)}") from None
        rule = FaultRule(
            kind=fault_kind,
            method=method,
            count=count,
            probability=probability,
            latency_seconds=latency_seconds,
        )
        self.add_rule(rule)
        return rule

    def add_rule(self, rule: FaultRule) -> None:
        """Add a prepared rule.

        :param rule: the rule.
        """
        with self._lock:
            self._active.append(_ActiveFault(rule, rule.count))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._active.clear()

    def seed(self, seed: int) -> None:
        """Reset the random generator behind probabilities.

        :param seed: the new seed.
        """
        with self._lock:
            self._random = random.Random(seed)

    @property
    def rules(self) -> list[tuple[FaultRule, int | None]]:
        """The rules still active, each with how many firings it has left (``None``: unlimited)."""
        with self._lock:
            return [(entry.rule, entry.remaining) for entry in self._active]

    def pick(self, method: str) -> FaultRule | None:
        """Decide whether a request to ``method`` is hit, using up one count of the rule that fires.

        :param method: the RPC name.
        :return: the rule that fires, or ``None``.
        """
        with self._lock:
            for entry in self._active:
                rule = entry.rule
                if not rule.matches(method):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._active.remove(entry)
                return rule
            return None


class InFlightGauge:
    """How many requests the server is handling right now, and the most it ever handled at once.

    Use it as a context manager around the handling of one request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = 0
        self._peak = 0

    def enter(self) -> None:
        """Count a request that has arrived."""
        with self._lock:
            self._current += 1
            self._peak = max(self._peak, self._current)

    def exit(self) -> None:
        """Count a request that has been answered (or aborted)."""
        with self._lock:
            self._current -= 1

    @property
    def current(self) -> int:
        """Requests being handled now."""
        with self._lock:
            return self._current

    @property
    def peak(self) -> int:
        """The most requests handled at once since the start (or the last :meth:`reset_peak`)."""
        with self._lock:
            return self._peak

    def __enter__(self) -> InFlightGauge:
        self.enter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exit()

    def reset_peak(self) -> None:
        """Start measuring the peak afresh from the current count."""
        with self._lock:
            self._peak = self._current


class Hold:
    """A one-shot rendezvous: the first ``parties`` requests to ``method`` wait for each other.

    Once ``parties`` requests have arrived (or ``timeout_seconds`` have passed since the first one, or the
    server stops) all of them go on together, and the hold is spent. Tests use it to make two clients'
    requests reach the service at the same time, so the service, not the test's timing, decides who wins.

    :param method: the RPC name.
    :param parties: how many requests to gather.
    :param timeout_seconds: the longest the first request waits for the others.
    """

    def __init__(self, method: str, parties: int, timeout_seconds: float) -> None:
        if parties < 1:
            raise ValueError(f"a hold needs at least one party, got {parties}")
        self.method = method
        self.parties = parties
        self.timeout_seconds = timeout_seconds
        self.arrived = 0
        #: Whether all parties arrived before the timeout; ``None`` while the hold is still gathering.
        self.met: bool | None = None
        self._released = threading.Event()

    def __repr__(self) -> str:
        return f"Hold({self.method!r}, parties={self.parties}, arrived={self.arrived}, met={self.met})"


class Holds:
    """The holds still gathering requests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Hold] = []

    def add(self, method: str, parties: int = 2, timeout_seconds: float = 10.0) -> Hold:
        """Hold the next ``parties`` requests to ``method`` until they have all arrived.

        :param method: the RPC name.
        :param parties: how many requests to gather.
        :param timeout_seconds: the longest the first request waits for the others (real seconds).
        :return: the hold; its ``met`` tells afterwards whether the requests really met.
        :raises ValueError: if ``parties`` is below 1.
        """
        hold = Hold(method, parties, timeout_seconds)
        with self._lock:
            self._pending.append(hold)
        return hold

    def wait(self, method: str, stopping: threading.Event) -> Hold | None:
        """Join the oldest gathering hold on ``method``, if any, and wait until it releases.

        :param method: the RPC name of the arriving request.
        :param stopping: set when the server stops; releases every hold.
        :return: the hold joined, or ``None``.
        """
        with self._lock:
            hold = next((hold for hold in self._pending if hold.method == method), None)
            if hold is None:
                return None
            hold.arrived += 1
            if hold.arrived >= hold.parties:
                self._pending.remove(hold)
                hold.met = True
                hold._released.set()
                return hold
        waited = 0.0
        step = 0.02
        while not hold._released.is_set() and not stopping.is_set() and waited < hold.timeout_seconds:
            hold._released.wait(step)
            waited += step
        with self._lock:
            if not hold._released.is_set():
                if hold in self._pending:
                    self._pending.remove(hold)
                hold.met = False
                hold._released.set()
        return hold


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it. The token itself is never recorded.

    :param method: the RPC name.
    :param token_valid: whether the request carried a known token.
    :param fault: the fault that fired, if any.
    :param code: the application status code name computed for the request (also when the reply was then
        lost to an ``unavailable_after`` fault); ``None`` when no application answer was produced.
    :param grpc_code: the gRPC status the client got (``"OK"``, ``"UNAVAILABLE"``, ...).
    :param req_id: the request id put in ``status.req_id``.
    :param deadline_seconds: the time the client's deadline left when the request arrived, in real
        seconds (``None``: the client set no deadline). Tests read it to check that a waiting task cuts
        its calls to the time its wait has left.
    :param run_ids: the runs the request named, in request order: the run read (Get, ListLogEntries) or
        the runs posted or patched (an id left empty for the emulator to choose is recorded empty).
    """

    method: str
    token_valid: bool
    fault: FaultKind | None
    code: str | None
    grpc_code: str
    req_id: str
    deadline_seconds: float | None = None
    run_ids: tuple[str, ...] = ()


class RequestLog:
    """The requests received so far, in order; thread-safe and list-like (``len``, iteration, indexing).

    Calling it selects records: ``emulator.requests(method="GetPipelineVersionRun", run_id="r1")``.
    """

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._changed = threading.Condition()

    def append(self, record: RequestRecord) -> None:
        """Record a request.

        :param record: the record.
        """
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def snapshot(self) -> list[RequestRecord]:
        """Return a copy of the records."""
        with self._changed:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._changed:
            self._records.clear()

    def __call__(self, method: str | None = None, *, run_id: str | None = None) -> list[RequestRecord]:
        """Return the records of the requests that match, oldest first.

        :param method: keep the requests to this RPC (``None``: any).
        :param run_id: keep the requests that named this run (``None``: any).
        :return: the matching records.
        """
        return [
            record
            for record in self.snapshot()
            if (method is None or record.method == method) and (run_id is None or run_id in record.run_ids)
        ]

    def count(self, method: str | None = None) -> int:
        """Count requests, optionally of one RPC.

        :param method: the RPC name, or ``None`` for all.
        :return: the number of records.
        """
        return sum(1 for record in self.snapshot() if method is None or record.method == method)

    def wait_for(self, predicate: Callable[[list[RequestRecord]], bool], timeout: float) -> bool:
        """Block until ``predicate(records)`` holds, for at most ``timeout`` real seconds.

        :param predicate: a test on the list of records.
        :param timeout: the bound, in seconds.
        :return: whether the predicate held in time.
        """
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self._records)), timeout=timeout)

    def __len__(self) -> int:
        with self._changed:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def __getitem__(self, index: int) -> RequestRecord:
        with self._changed:
            return self._records[index]

    def __repr__(self) -> str:
        return f"RequestLog({self.snapshot()!r})"
