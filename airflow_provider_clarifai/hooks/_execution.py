"""How an operation is carried out, written once and free of I/O: its calls, retries, deadlines and waits.

An operation's flow (``_flows.py``) yields the calls it needs. :func:`execution` wraps each call in the
retry policy (every attempt's deadline cut to what is left of the policy's budget, a backoff between
attempts) and, for calls that create something, the look that keeps a retry from creating it twice. It
yields only two kinds of effect, :class:`Invoke` (make this RPC with this deadline) and :class:`Sleep`,
and receives the RPC's answer or has its :class:`ClarifaiError` thrown in. The hook's blocking and
asyncio drivers perform the effects and nothing else, so no retry or deadline logic is written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_clarifai.exceptions import (
    ClarifaiError,
    ClarifaiNotFoundError,
    ClarifaiRequestRejectedError,
)
from airflow_provider_clarifai.hooks._flows import Call
from airflow_provider_clarifai.retry import RetryPolicy, RetrySchedule

T = TypeVar("T")


@dataclass(frozen=True)
class Invoke:
    """Make one RPC.

    :param call: the RPC and its request.
    :param timeout: its deadline, in seconds.
    """

    call: Call
    timeout: float


@dataclass(frozen=True)
class Sleep:
    """Wait before the next attempt.

    :param seconds: how long.
    """

    seconds: float


Effect = Invoke | Sleep


def execution(
    flow: Generator[Call, Any, T],
    policy: Callable[[], RetryPolicy],
    call_timeout: float,
    clock: Callable[[], float],
) -> Generator[Effect, Any, T]:
    """Carry out ``flow``: each of its calls retried under the policy in force when the call starts.

    :param flow: the operation.
    :param policy: returns the retry policy for the next call (cut to a caller's time limit, if any).
    :param call_timeout: the deadline of one attempt, before any cut.
    :param clock: a monotonic clock.
    """
    steps = Steps(flow)
    while (call := steps.next()) is not None:
        try:
            steps.answer((yield from _retried(call, policy(), call_timeout, clock)))
        except ClarifaiError as error:
            steps.fail(error)
    return steps.result


def _retried(
    call: Call, policy: RetryPolicy, call_timeout: float, clock: Callable[[], float]
) -> Generator[Effect, Any, Any]:
    schedule = RetrySchedule(policy, call_timeout, clock())
    while True:
        try:
            return (yield from _attempt(call, schedule.attempt_timeout(clock()), retry=schedule.failures > 0))
        except ClarifaiError as error:
            yield Sleep(schedule.after_failure(error, clock(), call.description))


def _attempt(call: Call, timeout: float, *, retry: bool) -> Generator[Effect, Any, Any]:
    """One attempt. A retried creation first looks for what it creates, by the id the client chose: the
    attempt before may have been applied even though its reply was lost.

    That look can also come too early: the service may still apply the earlier request after the client
    gave up on it. The creation is then rejected because the id exists, and looking once more finds the
    run our own attempt created. The id is unique to this call, so a run that has it is ours.
    """
    recover = call.recover if retry else None
    if recover is not None:
        try:
            return (yield Invoke(recover, timeout))
        except ClarifaiNotFoundError:
            pass
    try:
        return (yield Invoke(call, timeout))
    except ClarifaiRequestRejectedError as rejected:
        if recover is None:
            raise
        try:
            return (yield Invoke(recover, timeout))
        except ClarifaiNotFoundError:
            raise rejected from None


class Steps:
    """Feeds a generator its answers one step at a time; the drivers differ only in how they answer.

    :param generator: a flow or an execution.
    """

    def __init__(self, generator: Generator[Any, Any, Any]) -> None:
        self._generator = generator
        self._answer: Any = None
        self._error: BaseException | None = None
        self.result: Any = None

    def next(self) -> Any:
        """The next thing the generator asks for, or ``None`` once it has returned (see :attr:`result`)."""
        try:
            if self._error is not None:
                error, self._error = self._error, None
                return self._generator.throw(error)
            answer, self._answer = self._answer, None
            return self._generator.send(answer)
        except StopIteration as stop:
            self.result = stop.value
            return None

    def answer(self, value: Any) -> None:
        """Answer the last request.

        :param value: the answer.
        """
        self._answer = value

    def fail(self, error: BaseException) -> None:
        """Fail the last request.

        :param error: thrown into the generator at its next step.
        """
        self._error = error
