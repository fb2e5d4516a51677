"""One request budget per Clarifai token and endpoint, shared by every hook call in the process.

Clarifai allows a user 15 requests per second and answers ``CONN_THROTTLED`` beyond. Every attempt the
hook sends (reads, listings, patches, posts, log reads, retries included) first takes a slot from the
:class:`RequestBudget` of its token (a fingerprint of it, never the token) and endpoint, whichever thread
or event loop it runs in. The connection extra ``requests_per_second`` sets the budget (default
:data:`DEFAULT_REQUESTS_PER_SECOND`; 0 turns it off for that connection's calls).

How a slot is given, and why the service never sees more than the limit from this process alone:

* **Pacing, burst 1.** Slots are spaced by ``1 / rate`` seconds, measured from the moment the previous
  slot was actually taken, so a late waiter (a busy loop, a descheduled thread) never makes up for lost
  time with a burst. A service limiter of any kind (sliding window, fixed window, token bucket) sees an
  even stream.
* **A window that counts what the service may still count.** Clarifai documents a limit per second,
  not how it counts; the emulator counts accepted requests per token in a sliding one-second window, at
  the moment a request reaches it: some time after the client sent it and before it has the answer. Pacing
  alone cannot see that transit time: a request delayed on its way and the one sent a second after it
  could land in the same window. So a slot is also taken only while fewer than ``ceil(limit)`` of this
  budget's requests are in flight or were answered less than a second ago. Whenever the service counts
  a request, that is between its send and its answer, so any one-second window of the service holds at
  most ``ceil(limit)`` of them, however slow the machine or the network. The cost is small: one second
  plus the call's latency per ``limit`` requests, instead of one second.
* **AIMD.** Other processes may share the token. When the service still answers ``CONN_THROTTLED``, the
  rate is halved (:data:`DECREASE_FACTOR`, not below :data:`MIN_RATE`) for every caller of the budget,
  at most once per :data:`DECREASE_PERIOD` (the service's window: answers to requests sent before the
  decrease could take effect count once), then recovers by :data:`RECOVERY_PER_SECOND` requests per
  second each second, up to the limit. Processes that back off multiplicatively and recover additively
  settle together under the service's limit.
* **Priority.** Waiters are served in order of :class:`Priority`, then of arrival: run states, listings,
  patches and posts before log reads, so a burst of log reads never starves status polls. The other
  way round neither: while log reads wait, at most :data:`STATUS_RUN` status calls in a row go before
  one of them, so log reads keep a quarter of the slots when status calls alone would take them all
  (triggers polling faster than the budget allows).
* **Deadlines.** A waiter whose slot cannot come before its call's deadline leaves at once with a
  retryable :class:`~airflow_provider_clarifai.exceptions.ClarifaiThrottledError` (code name
  :data:`BUDGET_CODE_NAME`) instead of waiting past it.

No waiter ever blocks an event loop: each computes its wait under a :class:`threading.Lock` held for a
few microseconds, releases it, then sleeps with the hook's clock (``clock.sleep`` in threads, ``await
clock.asleep`` in a loop) and looks again. The hook's clock drives the budget, so tests use a fake one.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from enum import IntEnum
from typing import Any

from airflow_provider_clarifai.exceptions import ClarifaiThrottledError

__all__ = [
    "BUDGET_CODE_NAME",
    "DEFAULT_REQUESTS_PER_SECOND",
    "Permit",
    "Priority",
    "RequestBudget",
    "budget_for",
    "priority_of",
]

log = logging.getLogger(__name__)

#: Clarifai's documented limit per user, used when the connection sets no ``requests_per_second``.
DEFAULT_REQUESTS_PER_SECOND = 15.0
#: The service's window, in seconds: it counts the requests of a token in any one second.
WINDOW = 1.0
#: A throttled answer multiplies the rate by this...
DECREASE_FACTOR = 0.5
#: ... at most once per this many seconds (the service's window: the answers to requests sent before a
#: decrease could act are one congestion, not several).
DECREASE_PERIOD = WINDOW
#: ... and never below this rate (or the limit, if lower), in requests per second.
MIN_RATE = 1.0
#: Without throttling, the rate grows back by this many requests per second, each second.
RECOVERY_PER_SECOND = 1.0
#: While log reads wait, at most this many slots in a row go to status calls before one goes to a log read.
STATUS_RUN = 3
#: The code name of the error of a call whose slot would come after its deadline (nothing was sent).
BUDGET_CODE_NAME = "CLIENT_REQUEST_BUDGET"


class Priority(IntEnum):
    """Who goes first when several calls wait for a slot: the lower value."""

    #: Run states and listings, patches, posts, the connection test.
    STATUS = 0
    #: Log reads.
    LOGS = 1


_LOW_PRIORITY_METHODS = frozenset({"ListLogEntries"})


def priority_of(method: str) -> Priority:
    """The priority of an RPC: log reads go after everything else.

    :param method: the RPC name in ``clarifai.api.V2``.
    """
    return Priority.LOGS if method in _LOW_PRIORITY_METHODS else Priority.STATUS


class Permit:
    """A slot taken: one attempt may be sent. Call :meth:`done` once it has its answer (or failed).

    :param budget: the budget it was taken from.
    :param granted_at: when it was taken, on the budget's clock.
    :param waited: how long its caller waited for it, in seconds.
    """

    __slots__ = ("_budget", "ended_at", "granted_at", "waited")

    def __init__(self, budget: RequestBudget, granted_at: float, waited: float) -> None:
        self._budget = budget
        self.granted_at = granted_at
        self.waited = waited
        #: When :meth:`done` was called, on the budget's clock; ``None`` while the attempt is in flight.
        self.ended_at: float | None = None

    def done(self) -> None:
        """The attempt has ended: its slot counts for one more second, then frees (idempotent)."""
        if self.ended_at is None:
            self.ended_at = self._budget._release()


class RequestBudget:
    """The slots of one token at one endpoint; thread-safe, and usable from any number of event loops.

    :param limit: requests per second, more than 0.
    :param monotonic: the clock slots are timed on (the hook's ``clock.monotonic``).
    :param name: what the budget is for, in messages (the endpoint; never the token).
    """

    def __init__(self, limit: float, monotonic: Callable[[], float], name: str = "") -> None:
        if not (isinstance(limit, int | float) and math.isfinite(limit) and limit > 0):
            raise ValueError(f"limit must be a finite number of requests per second above 0, got {limit!r}")
        self.name = name
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._limit = float(limit)
        # AIMD: the rate right after the last decrease, and when it happened (None: never throttled).
        self._low = self._limit
        self._low_at: float | None = None
        self._last_grant = -math.inf
        self._in_flight = 0
        # End times of the attempts answered less than WINDOW ago, oldest first.
        self._answered: deque[float] = deque()
        # Waiting callers, as (priority, arrival) pairs, sorted: status calls first (see _position).
        self._queue: list[tuple[int, int]] = []
        self._arrivals = itertools.count()
        # Slots given in a row to status calls while log reads waited.
        self._status_run = 0

    # What tests and messages read ---------------------------------------------------------------

    @property
    def limit(self) -> float:
        """The configured requests per second (the lowest any user of the budget asked for)."""
        return self._limit

    @property
    def rate(self) -> float:
        """The current rate, in requests per second: the limit, or less after throttled answers."""
        with self._lock:
            return self._rate(self._monotonic())

    @property
    def waiting(self) -> int:
        """How many callers wait for a slot."""
        with self._lock:
            return len(self._queue)

    def lower_limit(self, limit: float) -> None:
        """Keep the lower of the current limit and ``limit``: hooks of one token asking for different
        rates share a budget at the lowest.

        :param limit: requests per second, more than 0.
        """
        with self._lock:
            self._limit = min(self._limit, float(limit))
            self._low = min(self._low, self._limit)

    # Taking slots ---------------------------------------------------------------------------------

    def acquire(
        self, priority: Priority, deadline: float, sleep: Callable[[float], None], what: str = "a call"
    ) -> Permit:
        """Wait (blocking, with ``sleep``) for a slot.

        :param priority: the caller's priority.
        :param deadline: the monotonic time by which the slot must come.
        :param sleep: a blocking wait (the hook's ``clock.sleep``).
        :param what: the call, for the error's message.
        :raises ClarifaiThrottledError: the slot cannot come before ``deadline`` (nothing was sent).
        """
        key, started = self._join(priority)
        try:
            while not isinstance(turn := self._turn(key, started, deadline, what), Permit):
                sleep(turn)
            return turn
        finally:
            self._leave(key)

    async def aacquire(
        self,
        priority: Priority,
        deadline: float,
        asleep: Callable[[float], Awaitable[None]],
        what: str = "a call",
    ) -> Permit:
        """Asyncio twin of :meth:`acquire`: waits with ``asleep``, never blocking the loop.

        :param priority: the caller's priority.
        :param deadline: the monotonic time by which the slot must come.
        :param asleep: an asyncio wait (the hook's ``clock.asleep``).
        :param what: the call, for the error's message.
        :raises ClarifaiThrottledError: the slot cannot come before ``deadline`` (nothing was sent).
        """
        key, started = self._join(priority)
        try:
            while not isinstance(turn := self._turn(key, started, deadline, what), Permit):
                await asleep(turn)
            return turn
        finally:
            self._leave(key)

    def throttled(self) -> bool:
        """The service answered ``CONN_THROTTLED``: slow down everyone, unless that was just done.

        :return: whether the rate was lowered (at most once per :data:`DECREASE_PERIOD`).
        """
        with self._lock:
            now = self._monotonic()
            if self._low_at is not None and now - self._low_at < DECREASE_PERIOD:
                return False
            before = self._rate(now)
            self._low = max(min(MIN_RATE, self._limit), before * DECREASE_FACTOR)
            self._low_at = now
            after, limit = self._low, self._limit
        log.warning(
            "The Clarifai API at %s throttled this token's requests: this process now sends at most %.3g "
            "requests per second with it (was %.3g), growing back by %g per second up to %g.",
            self.name or "its endpoint",
            after,
            before,
            RECOVERY_PER_SECOND,
            limit,
        )
        return True

    # The core, always under the lock ----------------------------------------------------------------

    def _join(self, priority: Priority) -> tuple[tuple[int, int], float]:
        with self._lock:
            key = (int(priority), next(self._arrivals))
            bisect.insort(self._queue, key)
            return key, self._monotonic()

    def _leave(self, key: tuple[int, int]) -> None:
        with self._lock:
            index = bisect.bisect_left(self._queue, key)
            if index < len(self._queue) and self._queue[index] == key:
                del self._queue[index]

    def _release(self) -> float:
        with self._lock:
            now = self._monotonic()
            self._in_flight -= 1
            self._answered.append(now)
            return now

    def _turn(self, key: tuple[int, int], started: float, deadline: float, what: str) -> Permit | float:
        """A slot for ``key`` if it is its turn now, else how long to sleep before looking again."""
        with self._lock:
            now = self._monotonic()
            while self._answered and self._answered[0] + WINDOW <= now:
                self._answered.popleft()
            position = self._position(key)
            rate = self._rate(now)
            head = self._head_time(now, rate)
            if position == 0 and head <= now:
                self._last_grant = now
                self._in_flight += 1
                logs_wait = self._queue[-1][0] == Priority.LOGS  # the queue holds ``key`` at least
                self._status_run = self._status_run + 1 if key[0] == Priority.STATUS and logs_wait else 0
                return Permit(self, now, now - started)
            # The earliest this caller can be served: after the callers before it, each a pacing step
            # apart, at the highest rate the budget can reach by the deadline (a lower bound).
            fastest = self._rate(max(deadline, now))
            # Never sleep past the deadline: at worst, wake at it and leave.
            wake = min(head + position / rate, deadline)
            if self._head_time(now, fastest) + position / fastest <= deadline and wake > now:
                # A long wait is an estimate: callers ahead may leave, the rate may grow back. Look again
                # after a quarter of it (at most once a second), so the estimate is never far behind.
                return min(wake - now, max(WINDOW, (wake - now) / 4))
            waiting, limit = len(self._queue), self._limit
        raise ClarifaiThrottledError(
            f"Not sent: {what} would wait past its deadline for a slot of this process's request budget "
            f"for the Clarifai API at {self.name or 'its endpoint'} ({limit:g} requests per second, "
            f"{rate:.3g} now; {waiting} call(s) waiting). Give the call more time, or make fewer calls "
            "with this token at once.",
            code_name=BUDGET_CODE_NAME,
        )

    def _position(self, key: tuple[int, int]) -> int:
        """How many slots go to other waiters before ``key``'s, as things stand: status calls in order of
        arrival, then log reads, except that while log reads wait every (STATUS_RUN + 1)-th slot is the
        oldest log read's."""
        index = bisect.bisect_left(self._queue, key)
        statuses = bisect.bisect_left(self._queue, (Priority.LOGS, -1))
        logs = len(self._queue) - statuses
        before_next_log = max(STATUS_RUN - self._status_run, 0)
        if key[0] == Priority.STATUS:
            if logs == 0 or index < before_next_log:
                return index
            return index + min(logs, 1 + (index - before_next_log) // STATUS_RUN)
        logs_ahead = index - statuses
        return logs_ahead + min(statuses, before_next_log + STATUS_RUN * logs_ahead)

    def _rate(self, now: float) -> float:
        if self._low_at is None:
            return self._limit
        return min(self._limit, self._low + RECOVERY_PER_SECOND * max(now - self._low_at, 0.0))

    def _head_time(self, now: float, rate: float) -> float:
        """When the first waiter may take a slot: a pacing step after the last one, and once the window
        has room (a lower bound if that needs a request still in flight to end first)."""
        at = max(now, self._last_grant + 1.0 / rate)
        excess = self._in_flight + len(self._answered) - math.ceil(self._limit) + 1
        if excess > len(self._answered):
            # A request in flight must end first: no sooner than now, and it counts for a second after.
            return max(at, now + WINDOW)
        return max(at, self._answered[excess - 1] + WINDOW) if excess > 0 else at


# The process's budgets ---------------------------------------------------------------------------

# Registry: the budget of each (token fingerprint, endpoint, clock), made on first use and kept for the
# process's life, so a throttled budget stays slowed down for the hooks that come after (triggers come and
# go). Bounded by the tokens, endpoints and clocks a process uses (one clock outside tests). The key holds a
# fingerprint of the token, never the token; the clock is in it because slots are timed on it.
_budgets: dict[tuple[Hashable, ...], RequestBudget] = {}
_budgets_lock = threading.Lock()


def budget_for(
    token: str,
    endpoint: Hashable,
    requests_per_second: float | None,
    monotonic: Callable[[], float],
    name: str = "",
) -> RequestBudget | None:
    """The process's budget for ``token`` at ``endpoint``, or ``None`` if the connection turned it off.

    :param token: the Personal Access Token (only its fingerprint is kept).
    :param endpoint: the endpoint's key (``ConnectionSettings.channel_key``).
    :param requests_per_second: the connection's extra; ``None`` for :data:`DEFAULT_REQUESTS_PER_SECOND`,
        0 for no budget.
    :param monotonic: the hook's monotonic clock.
    :param name: the endpoint, for messages.
    """
    limit = DEFAULT_REQUESTS_PER_SECOND if requests_per_second is None else float(requests_per_second)
    if limit <= 0:
        return None
    # Imported here: the watcher (trigger side) imports the hook's modules.
    from airflow_provider_clarifai.watcher import token_fingerprint

    key: tuple[Any, ...] = (token_fingerprint(token), endpoint, monotonic)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RequestBudget(limit, monotonic, name)
            return budget
    budget.lower_limit(limit)
    return budget
