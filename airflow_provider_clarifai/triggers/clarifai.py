"""ClarifaiPipelineRunTrigger (one run) and ClarifaiPipelineRunsTrigger (several runs of one pipeline
version, all or any): wait in the triggerer, without a worker slot.

The triggerer runs every trigger of every team in one event loop, so this trigger never blocks it:
calls go through the hook's asyncio methods (one shared channel per loop, every call with a deadline,
transient errors retried by the hook's retry policy), and the first use of gRPC is imported in a worker
thread. Its kwargs are primitives only (ids, connection id, absolute deadline, state names, options),
never the token: the hook reads the connection inside :meth:`run`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_clarifai.common import note_cancels
from airflow_provider_clarifai.effects import RunCalls
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds, validate_run_ids
from airflow_provider_clarifai.retry import SYSTEM_CLOCK, RetryClock, RetryPolicy
from airflow_provider_clarifai.runs import RunLogCursor
from airflow_provider_clarifai.status import RunAction
from airflow_provider_clarifai.validate import quote, seconds
from airflow_provider_clarifai.waiter import LogMode, RunWaiter, cancel_steps, conclude
from airflow_provider_clarifai.waiting import (
    WRAP_UP_SECONDS,
    EventStatus,
    Require,
    RunWaitEvent,
    RunWaitSpec,
    decide,
)
from airflow_provider_clarifai.watcher import WatchedCalls

#: Import these off the event loop before the first call: loading gRPC and the API's messages takes
#: long enough to be felt by every other trigger on the loop.
_HEAVY_MODULES = (
    "grpc",
    "grpc.aio",
    "airflow_provider_clarifai.hooks._flows",
    "airflow_provider_clarifai.hooks._transport",
)


_preload_lock = threading.Lock()
_preload: concurrent.futures.Future[None] | None = None


def _import_heavy_modules(done: concurrent.futures.Future[None]) -> None:
    import importlib

    try:
        for name in _HEAVY_MODULES:
            importlib.import_module(name)
    except BaseException as error:
        done.set_exception(error)
    else:
        done.set_result(None)


async def _preload_heavy_modules() -> None:
    """Import the heavy modules once per process, in one thread, and wait until that import has finished.

    A triggerer restart starts hundreds of triggers at once, and all of them wait for the same import.
    Checking ``sys.modules`` would not do: a module is put there when its import starts, so a trigger
    going on while another's import runs would import on the loop, blocked on the import lock until the
    other import ends; and a thread per trigger would keep hundreds of threads busy.
    """
    global _preload
    with _preload_lock:
        if _preload is None or (_preload.done() and _preload.exception() is not None):
            _preload = concurrent.futures.Future()
            # Running: a waiter that is cancelled (its task killed) cannot cancel the import for the rest.
            _preload.set_running_or_notify_cancel()
            threading.Thread(
                target=_import_heavy_modules, args=(_preload,), name="clarifai-preload", daemon=True
            ).start()
        preload = _preload
    if not preload.done():
        await asyncio.wrap_future(preload)
    preload.result()


class ClarifaiPipelineRunTrigger(BaseTrigger):
    """Poll a Clarifai pipeline run until it succeeds, fails, or the deadline passes.

    Yields exactly one event (see :class:`~airflow_provider_clarifai.waiting.RunWaitEvent`): ``success``,
    ``failure`` (with the run's last log lines), ``timeout`` (after cancelling the run if asked) or
    ``error`` (a non-transient API error, such as a wrong token or an unknown run).

    :param clarifai_conn_id: the Airflow connection; read inside :meth:`run`, never serialized.
    :param user_id: the pipeline's user.
    :param app_id: the pipeline's app.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the pipeline version.
    :param run_id: the run to wait for.
    :param poll_interval: seconds between two reads of the run.
    :param deadline: absolute wall-clock time (UNIX seconds) after which the wait times out; computed
        once by the task, so a triggerer restart does not extend it. ``None`` waits without limit.
    :param success_statuses: state names that end the wait successfully.
    :param failure_statuses: state names that fail it.
    :param cancel_on_timeout: cancel the run when the deadline passes.
    :param cancel_on_kill: cancel the run when a user kills the deferred task (Airflow 3.3+).
    :param stream_logs: write the run's new log lines into the task log as they appear.
    :param log_cursor: where a previous reader of the run's log stopped.
    :param retry_policy: the hook's retry policy as a dict (:meth:`RetryPolicy.to_dict`).
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    """

    def __init__(
        self,
        *,
        clarifai_conn_id: str,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        pipeline_version_id: str,
        run_id: str,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        success_statuses: list[str] | None = None,
        failure_statuses: list[str] | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = False,
        stream_logs: bool = False,
        log_cursor: Mapping[str, Any] | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self._init_wait(
            clarifai_conn_id,
            PipelineVersionIds(user_id, app_id, pipeline_id, pipeline_version_id),
            poll_interval=poll_interval,
            deadline=deadline,
            success_statuses=success_statuses,
            failure_statuses=failure_statuses,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_kill=cancel_on_kill,
            stream_logs=stream_logs,
            retry_policy=retry_policy,
            request_timeout=request_timeout,
        )
        self.run_id = run_id
        self.log_cursor = RunLogCursor.from_dict(dict(log_cursor) if log_cursor else None)

    def _init_wait(
        self,
        clarifai_conn_id: str,
        ids: PipelineVersionIds,
        *,
        poll_interval: float,
        deadline: float | None,
        success_statuses: list[str] | None,
        failure_statuses: list[str] | None,
        cancel_on_timeout: bool,
        cancel_on_kill: bool,
        stream_logs: bool,
        retry_policy: Mapping[str, Any] | None,
        request_timeout: float | None,
    ) -> None:
        """Check and keep what every wait takes (this trigger and :class:`ClarifaiPipelineRunsTrigger`)."""
        self.clarifai_conn_id = clarifai_conn_id
        self.ids = ids
        self.poll_interval = seconds("poll_interval", poll_interval)
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, int | float) or not math.isfinite(deadline)
        ):
            raise ClarifaiConfigurationError(
                f"deadline must be UNIX seconds or None, got {quote(deadline)}. The task computes it once as "
                "time.time() + its timeout."
            )
        self.deadline = float(deadline) if deadline is not None else None
        self.spec = RunWaitSpec.build(success_statuses, failure_statuses)
        self.cancel_on_timeout = bool(cancel_on_timeout)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.stream_logs = bool(stream_logs)
        self.retry_policy = RetryPolicy.coerce(retry_policy)
        self.request_timeout = request_timeout

    def _wait_kwargs(self) -> dict[str, Any]:
        success, failure = self.spec.to_lists()
        return {
            "clarifai_conn_id": self.clarifai_conn_id,
            **self.ids.as_dict(),
            "poll_interval": self.poll_interval,
            "deadline": self.deadline,
            "success_statuses": success,
            "failure_statuses": failure,
            "cancel_on_timeout": self.cancel_on_timeout,
            "cancel_on_kill": self.cancel_on_kill,
            "stream_logs": self.stream_logs,
            "retry_policy": self.retry_policy.to_dict(),
            "request_timeout": self.request_timeout,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs; :meth:`__init__` rebuilds the same trigger from them."""
        kwargs = {**self._wait_kwargs(), "run_id": self.run_id, "log_cursor": self.log_cursor.to_dict()}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    #: How the trigger's hook and waiter tell time and wait; tests replace it with a fake clock.
    clock: RetryClock = SYSTEM_CLOCK
    #: Read the run's state through the process's shared watcher (one listing per pipeline version and
    #: round for every trigger, see :mod:`airflow_provider_clarifai.watcher`); ``False``: per trigger.
    share_polls: bool = True

    def _hook(self) -> ClarifaiHook:
        return ClarifaiHook(
            self.clarifai_conn_id,
            retry_policy=self.retry_policy,
            timeout=self.request_timeout,
            clock=self.clock,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait with the shared :class:`~airflow_provider_clarifai.waiter.RunWaiter`; yield its one event."""
        await _preload_heavy_modules()
        hook = self._hook()
        waiter = RunWaiter(
            self.ids,
            self.run_id,
            self.spec,
            log=self.log,
            now=hook.clock.now,
            deadline=self.deadline,
            poll_interval=self.poll_interval,
            cancel_on_timeout=self.cancel_on_timeout,
            logs=LogMode.choose(self.stream_logs),
            log_cursor=self.log_cursor,
        )
        calls = WatchedCalls(hook, self.poll_interval) if self.share_polls else RunCalls(hook)
        event = await calls.arun(waiter.wait())
        yield TriggerEvent(event.to_dict())

    async def on_kill(self) -> None:
        """Cancel the run when a user kills the deferred task, if asked to (Airflow 3.3+).

        Never called on triggerer restarts or redistribution, so a restart does not cancel the run.
        """
        if self.cancel_on_kill:
            await RunCalls(self._hook()).arun(
                cancel_steps(self.ids, self.run_id, "the task was killed", self.log)
            )


class ClarifaiPipelineRunsTrigger(ClarifaiPipelineRunTrigger):
    """Poll several runs of one pipeline version until ``require`` is met or fails, or the deadline passes.

    ``require="all"``: success once every run succeeded, failure as soon as one failed. ``require="any"``:
    success as soon as one run succeeded, failure once every run ended without success. A run that cannot
    be read (not found, no access) is an ``error`` at once, in both (see
    :func:`~airflow_provider_clarifai.waiting.decide`). Yields exactly one
    :class:`~airflow_provider_clarifai.waiting.RunsWaitEvent`.

    Each run has its own :class:`~airflow_provider_clarifai.waiter.RunWaiter`, driven through the shared
    run watcher like the one-run trigger's: the reads of one round become one listing of the version's
    unfinished runs and a read of each run that left it, so 500 runs cost one listing per interval (plus
    a read of each run as it ends). Logs are read once the outcome is decided, for the runs that decided
    it (:func:`~airflow_provider_clarifai.waiter.conclude`).

    A sibling of :class:`ClarifaiPipelineRunTrigger` rather than an option of it: that trigger's kwargs
    and event stay as they were (triggers serialized by earlier releases still rebuild, and each class
    yields one kind of event). It inherits what every wait shares: the checks of the common kwargs, the
    hook, and the ``clock`` and ``share_polls`` seams.

    :param clarifai_conn_id: the Airflow connection; read inside :meth:`run`, never serialized.
    :param user_id: the pipeline's user.
    :param app_id: the pipeline's app.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the pipeline version; every run must be one of its runs.
    :param run_ids: the runs to wait for (a non-empty list of distinct ids).
    :param require: ``"all"`` or ``"any"``.
    :param poll_interval: seconds between two reads of the runs.
    :param deadline: absolute wall-clock time (UNIX seconds) after which the wait times out; ``None``
        waits without limit.
    :param success_statuses: state names that end a run's wait successfully.
    :param failure_statuses: state names that fail it.
    :param cancel_on_timeout: cancel the runs still going when the deadline passes.
    :param cancel_on_kill: cancel the runs when a user kills the deferred task (Airflow 3.3+).
    :param stream_logs: write the log lines of the runs that decided the outcome into the task log.
    :param retry_policy: the hook's retry policy as a dict (:meth:`RetryPolicy.to_dict`).
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    """

    def __init__(
        self,
        *,
        clarifai_conn_id: str,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        pipeline_version_id: str,
        run_ids: list[str],
        require: str = "all",
        poll_interval: float = 30.0,
        deadline: float | None = None,
        success_statuses: list[str] | None = None,
        failure_statuses: list[str] | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = False,
        stream_logs: bool = False,
        retry_policy: Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
    ) -> None:
        BaseTrigger.__init__(self)
        self._init_wait(
            clarifai_conn_id,
            PipelineVersionIds(user_id, app_id, pipeline_id, pipeline_version_id),
            poll_interval=poll_interval,
            deadline=deadline,
            success_statuses=success_statuses,
            failure_statuses=failure_statuses,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_kill=cancel_on_kill,
            stream_logs=stream_logs,
            retry_policy=retry_policy,
            request_timeout=request_timeout,
        )
        if not isinstance(run_ids, list | tuple):
            raise ClarifaiConfigurationError(f"run_ids must be a list of run ids, got {quote(run_ids)}.")
        self.run_ids = validate_run_ids(list(run_ids))
        self.require = Require.parse(require)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs; :meth:`__init__` rebuilds the same trigger from them."""
        kwargs = {**self._wait_kwargs(), "run_ids": list(self.run_ids), "require": self.require.value}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait with one :class:`~airflow_provider_clarifai.waiter.RunWaiter` per run; yield the one event."""
        await _preload_heavy_modules()
        hook = self._hook()
        waiters = [
            RunWaiter(
                self.ids,
                run_id,
                self.spec,
                log=self.log,
                now=hook.clock.now,
                deadline=self.deadline,
                poll_interval=self.poll_interval,
                logs=LogMode.NONE,
            )
            for run_id in self.run_ids
        ]
        events, decision = await self._wait_each(hook, waiters)
        cancelled: list[str] = []
        if decision[0] is EventStatus.TIMEOUT and self.cancel_on_timeout:
            cancelled = await self._cancel(hook, decision[1], "the wait timed out")
        steps = conclude(
            waiters, self.require, events, decision, stream_logs=self.stream_logs, cancelled=cancelled
        )
        yield TriggerEvent((await RunCalls(hook).arun(steps)).to_dict())

    async def _wait_each(
        self, hook: ClarifaiHook, waiters: list[RunWaiter]
    ) -> tuple[dict[str, RunWaitEvent], tuple[EventStatus, list[str]]]:
        """Run every waiter's wait at once until the events decide the outcome; stop the others then.

        Each wait has calls of its own (the watcher's reads are due by each waiter's own sleeps); the
        watcher joins the reads that fall in one round into one listing.
        """
        tasks = {
            asyncio.create_task(self._calls(hook).arun(waiter.wait())): waiter.run_id for waiter in waiters
        }
        events: dict[str, RunWaitEvent] = {}
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    events[tasks.pop(task)] = task.result()
                decision = decide(self.require, self.run_ids, events)
                if decision is not None:
                    return events, decision
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Every wait ends with an event, so the loop returns; this only keeps the types honest.
        raise ClarifaiError("The waits ended without deciding the outcome.")

    def _calls(self, hook: ClarifaiHook) -> RunCalls:
        return WatchedCalls(hook, self.poll_interval) if self.share_polls else RunCalls(hook)

    async def _cancel(self, hook: ClarifaiHook, run_ids: list[str], why: str) -> list[str]:
        """Cancel runs in batches; a failure to cancel is logged, never raised."""
        try:
            with hook.time_limit(WRAP_UP_SECONDS):
                changes = await hook.aset_runs_status(self.ids, run_ids, RunAction.CANCEL)
        except ClarifaiError as error:
            self.log.error("Could not cancel %d run(s) after %s: %s", len(run_ids), why, error)
            return []
        return note_cancels(self.log, changes, why)

    async def on_kill(self) -> None:
        """Cancel the runs when a user kills the deferred task, if asked to (Airflow 3.3+).

        Never called on triggerer restarts or redistribution, so a restart does not cancel the runs.
        """
        if self.cancel_on_kill:
            await self._cancel(self._hook(), self.run_ids, "the task was killed")
