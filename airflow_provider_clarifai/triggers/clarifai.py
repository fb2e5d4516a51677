"""ClarifaiPipelineRunTrigger: wait for a pipeline run in the triggerer, without a worker slot.

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
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import RetryPolicy
from airflow_provider_clarifai.runs import PipelineRun, RunLogCursor
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction
from airflow_provider_clarifai.validate import quote, seconds
from airflow_provider_clarifai.waiting import (
    LOG_TAIL_LINES,
    WRAP_UP_SECONDS,
    EventStatus,
    RunWaitEvent,
    RunWaitSpec,
    Verdict,
    failure_message,
    time_left,
)

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
        self.clarifai_conn_id = clarifai_conn_id
        self.ids = PipelineVersionIds(user_id, app_id, pipeline_id, pipeline_version_id)
        self.run_id = run_id
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
        self.log_cursor = RunLogCursor.from_dict(dict(log_cursor) if log_cursor else None)
        self.retry_policy = RetryPolicy.coerce(retry_policy)
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs; :meth:`__init__` rebuilds the same trigger from them."""
        success, failure = self.spec.to_lists()
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "clarifai_conn_id": self.clarifai_conn_id,
                **self.ids.as_dict(),
                "run_id": self.run_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "success_statuses": success,
                "failure_statuses": failure,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "stream_logs": self.stream_logs,
                "log_cursor": self.log_cursor.to_dict(),
                "retry_policy": self.retry_policy.to_dict(),
                "request_timeout": self.request_timeout,
            },
        )

    def _hook(self) -> ClarifaiHook:
        return ClarifaiHook(
            self.clarifai_conn_id, retry_policy=self.retry_policy, timeout=self.request_timeout
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the run is done or the deadline passes; yield one event."""
        await _preload_heavy_modules()
        hook = self._hook()
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        last_status: str | None = None
        while True:
            run: PipelineRun | None = None
            try:
                # Cut to the time the wait has left: one read must not outlast the deadline.
                with hook.time_limit(time_left(self.deadline, time.time())):
                    run = await hook.aget_run(self.ids, self.run_id)
            except ClarifaiError as error:
                if not error.retryable:
                    yield self._event(EventStatus.ERROR, str(error), error_class=type(error).__name__)
                    return
                # The hook already retried within its policy; the run goes on without us, so keep
                # watching until the deadline instead of failing the task on an outage.
                self.log.warning("Could not read run %s, will try again: %s", self.run_id, error)
            if run is not None:
                if self.stream_logs:
                    await self._stream_logs(hook, tail, time_left(self.deadline, time.time()))
                if run.status_name != last_status:
                    last_status = run.status_name
                    self._log_state(run)
                verdict = self.spec.judge(run)
                if verdict is Verdict.SUCCESS:
                    yield self._event(
                        EventStatus.SUCCESS, f"Run {self.run_id} is {run.status_name}.", run=run
                    )
                    return
                if verdict is Verdict.FAILURE:
                    if not self.stream_logs:
                        await self._stream_logs(hook, tail, WRAP_UP_SECONDS, echo=False)
                    message = failure_message(run, self.spec)
                    yield self._event(EventStatus.FAILURE, message, run=run, log_tail=list(tail))
                    return
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                cancelled = (
                    await self._cancel(hook, "the wait timed out") if self.cancel_on_timeout else False
                )
                message = f"Run {self.run_id} did not finish before the deadline (last state {last_status})."
                if cancelled:
                    message += " It was cancelled."
                yield self._event(
                    EventStatus.TIMEOUT, message, run=run, log_tail=list(tail), cancelled=cancelled
                )
                return
            wait = (
                self.poll_interval if self.deadline is None else min(self.poll_interval, self.deadline - now)
            )
            await asyncio.sleep(max(wait, 0.0))

    async def on_kill(self) -> None:
        """Cancel the run when a user kills the deferred task, if asked to (Airflow 3.3+).

        Never called on triggerer restarts or redistribution, so a restart does not cancel the run.
        """
        if self.cancel_on_kill:
            await self._cancel(self._hook(), "the task was killed")

    def _log_state(self, run: PipelineRun) -> None:
        if run.known_status is PipelineRunStatus.PAUSED:
            self.log.info("Run %s is JOB_PAUSED: still waiting; a paused run is not finished.", self.run_id)
        else:
            self.log.info("Run %s is %s.", self.run_id, run.status_name)

    async def _stream_logs(
        self, hook: ClarifaiHook, tail: deque[str], within: float | None, *, echo: bool = True
    ) -> None:
        try:
            with hook.time_limit(within):
                batch = await hook.aget_run_logs(self.ids, self.run_id, cursor=self.log_cursor)
        except ClarifaiError as error:
            self.log.warning("Could not read the logs of run %s: %s", self.run_id, error)
            return
        self.log_cursor = batch.cursor
        for line in batch.lines:
            tail.append(line.text)
            if echo:
                self.log.info("[clarifai run %s] %s", self.run_id, line.text)

    async def _cancel(self, hook: ClarifaiHook, why: str) -> bool:
        try:
            # After the deadline, or on kill: a bounded budget of its own (see TRIGGER_OVERRUN_SECONDS).
            with hook.time_limit(WRAP_UP_SECONDS):
                (change,) = await hook.aset_runs_status(self.ids, [self.run_id], RunAction.CANCEL)
        except ClarifaiError as error:
            self.log.error("Could not cancel run %s after %s: %s", self.run_id, why, error)
            return False
        if change.applied:
            self.log.info("Cancelled run %s because %s.", self.run_id, why)
        else:
            self.log.warning(
                "Run %s was not cancelled (%s): %s",
                self.run_id,
                change.status_after,
                change.error_description,
            )
        return change.applied

    def _event(
        self,
        status: EventStatus,
        message: str,
        *,
        run: PipelineRun | None = None,
        log_tail: list[str] | None = None,
        cancelled: bool = False,
        error_class: str | None = None,
    ) -> TriggerEvent:
        event = RunWaitEvent(
            status=status,
            run_id=self.run_id,
            message=message,
            run=run.to_dict() if run is not None else None,
            log_tail=log_tail or [],
            cancelled=cancelled,
            error_class=error_class,
        )
        return TriggerEvent(event.to_dict())
