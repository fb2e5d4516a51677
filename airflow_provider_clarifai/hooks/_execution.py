"""How an operation is carried out, written once: its calls, retries, deadlines and waits.

An operation's flow (``_flows.py``) yields the calls it needs. :func:`execution` wraps each call in the
retry policy (every attempt's deadline cut to what is left of the policy's budget, a backoff between
attempts) and, for calls that create something, the look that keeps a retry from creating it twice. It
is free of I/O: it yields only two kinds of effect, :class:`Invoke` (make this RPC with this deadline)
and :class:`Sleep`, and receives the RPC's answer or has its :class:`ClarifaiError` thrown in.

The two drivers at the end, :func:`drive` (blocking) and :func:`adrive` (asyncio), perform those effects
and nothing else, turning a gRPC failure or a non-SUCCESS response into the error thrown back in; so no
retry, deadline or error-mapping logic is written twice. :func:`time_limit` bounds every call of a block.
Each attempt first takes a slot of the token's request budget (:mod:`airflow_provider_clarifai.budget`),
within the call's deadline; a throttled answer slows that budget down for every call.

Cheap to import (the hook imports it at DAG parse time): ``grpc`` and the flows load on the first call.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_clarifai.budget import BUDGET_CODE_NAME, Permit, RequestBudget, priority_of
from airflow_provider_clarifai.exceptions import (
    ClarifaiError,
    ClarifaiNotFoundError,
    ClarifaiRequestRejectedError,
    ClarifaiThrottledError,
    error_from_rpc,
)
from airflow_provider_clarifai.retry import MIN_ATTEMPT_SECONDS, RetryClock, RetryPolicy, RetrySchedule

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks._connection import ConnectionSettings
    from airflow_provider_clarifai.hooks._flows import Call
    from airflow_provider_clarifai.hooks._transport import AsyncEndpoint, PipelineRunStub

T = TypeVar("T")

#: The monotonic time by which the calls made in the current context must end (see :func:`time_limit`).
#: A context variable, not a cache: each asyncio task (each trigger) and each thread has its own.
_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "clarifai_call_deadline", default=None
)


@contextmanager
def time_limit(monotonic: Callable[[], float], seconds: float | None) -> Iterator[None]:
    """Make every call started inside the block end within ``seconds`` from now, retries included.

    Nested limits keep the sooner one. The limit belongs to the current thread or asyncio task only.

    :param monotonic: the clock the limit is measured on (the hook's).
    :param seconds: the time left, or ``None`` for no limit beyond the retry policy's own.
    """
    if seconds is None:
        yield
        return
    limit = monotonic() + max(float(seconds), 0.0)
    outer = _call_deadline.get()
    token = _call_deadline.set(limit if outer is None else min(outer, limit))
    try:
        yield
    finally:
        _call_deadline.reset(token)


def policy_now(policy: RetryPolicy, monotonic: Callable[[], float]) -> RetryPolicy:
    """``policy``, cut to what is left of the :func:`time_limit` in force, if any.

    :param policy: the retry policy of the hook (or of the operation).
    :param monotonic: the clock the limit was set on.
    """
    limit = _call_deadline.get()
    return policy if limit is None else policy.within(limit - monotonic())


@dataclass(frozen=True)
class Invoke:
    """Make one RPC.

    :param call: the RPC and its request.
    :param timeout: its deadline, in seconds.
    :param deadline: the monotonic time after which the call (retries included) may not go on: a wait
        for a slot of the request budget must end before it, and shortens ``timeout`` to fit.
    """

    call: Call
    timeout: float
    deadline: float = math.inf


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
    """``call`` under ``policy``. With a request budget, a throttled attempt still waits its backoff (at
    least the policy's ``throttle_backoff``): the service's window is full for up to a second, and
    retrying sooner would spend the call's attempts inside it. Its retry then takes a slot like any
    attempt, so retries never add to the rate the budget allows."""
    schedule = RetrySchedule(policy, call_timeout, clock())
    while True:
        try:
            timeout = schedule.attempt_timeout(clock())
            return (yield from _attempt(call, timeout, schedule.deadline, retry=schedule.failures > 0))
        except ClarifaiError as error:
            yield Sleep(schedule.after_failure(error, clock(), call.description))


def service_throttled(error: BaseException) -> bool:
    """Whether the service said the rate limit was hit (not the budget, which refused to wait).

    :param error: an attempt's error.
    """
    return isinstance(error, ClarifaiThrottledError) and error.code_name != BUDGET_CODE_NAME


def _attempt(call: Call, timeout: float, deadline: float, *, retry: bool) -> Generator[Effect, Any, Any]:
    """One attempt. A retried creation first looks for what it creates, by the id the client chose: the
    attempt before may have been applied even though its reply was lost.

    That look can also come too early: the service may still apply the earlier request after the client
    gave up on it. The creation is then rejected because the id exists, and looking once more finds the
    run our own attempt created. The id is unique to this call, so a run that has it is ours.
    """
    recover = call.recover if retry else None
    if recover is not None:
        try:
            return (yield Invoke(recover, timeout, deadline))
        except ClarifaiNotFoundError:
            pass
    try:
        return (yield Invoke(call, timeout, deadline))
    except ClarifaiRequestRejectedError as rejected:
        if recover is None:
            raise
        try:
            return (yield Invoke(recover, timeout, deadline))
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


# Drivers: the only two places that perform calls ---------------------------------------------------


def drive(
    flow: Generator[Call, Any, T],
    connect: Callable[[], PipelineRunStub],
    settings: ConnectionSettings,
    policy: RetryPolicy,
    call_timeout: float,
    clock: RetryClock,
    budget: RequestBudget | None = None,
) -> T:
    """Carry out ``flow`` with blocking calls; the hook's sync methods run their flows through this.

    :param flow: the operation.
    :param connect: returns the stub to call. Asked only when a call is due, so a flow that makes no
        call (an empty selection) opens no channel.
    :param settings: the connection's settings: the token sent with each call, the endpoint for messages.
    :param policy: the retry policy; each call gets it cut to the :func:`time_limit` in force, if any.
    :param call_timeout: the deadline of one attempt, before any cut.
    :param clock: how to tell time and wait, between attempts and for the budget's slots.
    :param budget: the request budget each attempt takes a slot from before it is sent (``None``: none).
    """
    steps = _steps(flow, policy, call_timeout, clock)
    while (effect := steps.next()) is not None:
        if isinstance(effect, Sleep):
            clock.sleep(effect.seconds)
            continue
        call = effect.call
        permit: Permit | None = None
        if budget is not None:
            try:
                permit = budget.acquire(
                    priority_of(call.method), _slot_deadline(effect), clock.sleep, _what(call)
                )
            except ClarifaiThrottledError as refused:
                steps.fail(_named(refused, call))
                continue
        try:
            # The stub is asked for after the wait: the hook's channel may have been closed during it
            # (``on_kill`` closes it from another thread), and asking opens a new one.
            rpc = connect().method(call.method)
            response = rpc(call.request, metadata=settings.metadata, timeout=_timeout(effect, permit, clock))
        except _grpc_error() as err:
            _fail(steps, _rpc_error(err, call, settings), budget)
            continue
        finally:
            if permit is not None:
                permit.done()
        _answer(steps, response, call, settings, budget)
    return steps.result


async def adrive(
    flow: Generator[Call, Any, T],
    connect: Callable[[], Awaitable[AsyncEndpoint]],
    settings: ConnectionSettings,
    policy: RetryPolicy,
    call_timeout: float,
    clock: RetryClock,
    budget: RequestBudget | None = None,
) -> T:
    """Asyncio twin of :func:`drive`: calls on the shared endpoint, within its bound on calls in flight.

    A call takes its budget slot before its place among the calls in flight, so calls waiting for slots
    never hold places, and a status read that arrives behind a queue of log reads goes first.

    :param flow: the operation.
    :param connect: returns the endpoint to call; awaited for each attempt, once it has its slot.
    :param settings: the connection's settings.
    :param policy: the retry policy, cut like :func:`drive`'s.
    :param call_timeout: the deadline of one attempt, before any cut.
    :param clock: how to tell time and wait, between attempts and for the budget's slots.
    :param budget: the request budget each attempt takes a slot from before it is sent (``None``: none).
    """
    steps = _steps(flow, policy, call_timeout, clock)
    while (effect := steps.next()) is not None:
        if isinstance(effect, Sleep):
            await clock.asleep(effect.seconds)
            continue
        call = effect.call
        permit: Permit | None = None
        if budget is not None:
            try:
                permit = await budget.aacquire(
                    priority_of(call.method), _slot_deadline(effect), clock.asleep, _what(call)
                )
            except ClarifaiThrottledError as refused:
                steps.fail(_named(refused, call))
                continue
        try:
            endpoint = await connect()  # after the wait, as in drive; the hook keeps it, so this is cheap
            async with endpoint.limiter:
                response = await endpoint.stub.method(call.method)(
                    call.request, metadata=settings.metadata, timeout=_timeout(effect, permit, clock)
                )
        except _grpc_error() as err:
            _fail(steps, _rpc_error(err, call, settings), budget)
            continue
        finally:
            if permit is not None:
                permit.done()
        _answer(steps, response, call, settings, budget)
    return steps.result


def _steps(
    flow: Generator[Call, Any, Any], policy: RetryPolicy, call_timeout: float, clock: RetryClock
) -> Steps:
    """The execution of ``flow`` a driver steps through: the policy cut to any time limit, at each call."""
    cut = functools.partial(policy_now, policy, clock.monotonic)
    return Steps(execution(flow, cut, call_timeout, clock.monotonic))


def _slot_deadline(effect: Invoke) -> float:
    """The latest a budget slot may come: the attempt must still get its shortest deadline after it."""
    return effect.deadline - MIN_ATTEMPT_SECONDS


def _timeout(effect: Invoke, permit: Permit | None, clock: RetryClock) -> float:
    """The attempt's gRPC deadline: what it was given, cut by any wait for its slot to end in time."""
    if permit is None or permit.waited <= 0:
        return effect.timeout
    return max(min(effect.timeout, effect.deadline - clock.monotonic()), MIN_ATTEMPT_SECONDS)


def _what(call: Call) -> str:
    return f"{call.method} ({call.description})"


def _named(error: ClarifaiError, call: Call) -> ClarifaiError:
    error.method = error.method or call.method
    return error


def _grpc_error() -> type[Exception]:
    """``grpc.RpcError``, imported on first use: the hook imports this module at DAG parse time."""
    import grpc

    return grpc.RpcError


def _rpc_error(error: Exception, call: Call, settings: ConnectionSettings) -> ClarifaiError:
    """The :class:`ClarifaiError` for a call that failed in transport (the token kept out of it)."""
    return error_from_rpc(
        error,  # type: ignore[arg-type]
        method=call.method,
        target=settings.target,
        context=call.description,
        secret=settings.token,
    )


def _fail(steps: Steps, error: ClarifaiError, budget: RequestBudget | None) -> None:
    """Throw ``error`` into the execution; a throttled answer first slows the budget down for everyone."""
    if budget is not None and service_throttled(error):
        budget.throttled()
    steps.fail(error)


def _answer(
    steps: Steps, response: Any, call: Call, settings: ConnectionSettings, budget: RequestBudget | None
) -> None:
    """Hand a response to the execution: the response itself, or the application error it carries."""
    from airflow_provider_clarifai.hooks._flows import check_response

    try:
        steps.answer(check_response(response, call, settings.token))
    except ClarifaiError as error:
        _fail(steps, error, budget)
