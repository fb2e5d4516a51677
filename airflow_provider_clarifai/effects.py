"""What a wait asks of the Clarifai service, and the driver that asks it.

A wait (:mod:`airflow_provider_clarifai.waiter`) is written as generators that yield these effects and
receive their answers; it does no I/O itself. :class:`RunCalls` performs them with a
:class:`~airflow_provider_clarifai.hooks.clarifai.ClarifaiHook`, blocking or asyncio; an API error is
thrown back into the generator at the effect that asked for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_clarifai.exceptions import ClarifaiError
from airflow_provider_clarifai.runs import RunLogCursor, RunStatusChange
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds

#: The largest page ListPipelineVersionRuns accepts.
LIST_PAGE_SIZE = 1000
#: The states :class:`ListUnfinished` lists; a run in none of them has finished (or its state is unknown).
UNFINISHED = tuple(status for status in PipelineRunStatus if not status.is_terminal)

T = TypeVar("T")


@dataclass(frozen=True)
class ReadRun:
    """Read a run's current state (answer: :class:`PipelineRun`).

    :param ids: the run's pipeline version.
    :param run_id: the run.
    :param within: the most seconds the read may take, retries included (``None``: the policy's own).
    """

    ids: PipelineVersionIds
    run_id: str
    within: float | None


@dataclass(frozen=True)
class ReadLogs:
    """Read a run's log lines after ``cursor`` (answer: :class:`RunLogBatch`).

    :param ids: the run's pipeline version.
    :param run_id: the run.
    :param cursor: where the last read stopped.
    :param within: the most seconds the read may take, retries included.
    """

    ids: PipelineVersionIds
    run_id: str
    cursor: RunLogCursor
    within: float | None


@dataclass(frozen=True)
class CancelRun:
    """Cancel a run (answer: :class:`RunStatusChange`).

    :param ids: the run's pipeline version.
    :param run_id: the run.
    :param within: the most seconds the cancel may take, retries included.
    """

    ids: PipelineVersionIds
    run_id: str
    within: float


@dataclass(frozen=True)
class Sleep:
    """Wait before the next look (answer: ``None``).

    :param seconds: how long.
    """

    seconds: float


@dataclass(frozen=True)
class ListUnfinished:
    """List a pipeline version's unfinished runs, every page (answer: list of :class:`PipelineRun`).

    :param ids: the pipeline version.
    :param within: the most seconds the listing may take, retries included.
    """

    ids: PipelineVersionIds
    within: float | None


@dataclass(frozen=True)
class ReadEach:
    """Read several runs one by one, at once where the driver can (answer: dict of run id to
    :class:`PipelineRun` or the :class:`ClarifaiError` its read met).

    :param ids: the runs' pipeline version.
    :param run_ids: the runs.
    :param within: the most seconds each read may take, retries included.
    """

    ids: PipelineVersionIds
    run_ids: tuple[str, ...]
    within: float | None


@dataclass(frozen=True)
class ListFinished:
    """List a pipeline version's runs in some end states, every page (answer: list of
    :class:`PipelineRun`). A sweep of the runs that ended: its cost grows with the version's history.

    :param ids: the pipeline version.
    :param states: the end states to list.
    :param within: the most seconds the listing may take, retries included.
    """

    ids: PipelineVersionIds
    states: tuple[PipelineRunStatus, ...]
    within: float | None


Effect = ReadRun | ReadLogs | CancelRun | Sleep | ListUnfinished | ReadEach | ListFinished
#: A step of a wait: yields effects, receives their answers, returns ``T``.
Steps = Generator[Effect, Any, T]


class RunCalls:
    """Perform waiters' effects with a hook: blocking (:meth:`run`) or asyncio (:meth:`arun`).

    Each call runs under ``hook.time_limit`` of the effect's ``within``; sleeps use the hook's clock,
    so a test's fake clock drives the whole wait.

    :param hook: the hook to call.
    """

    def __init__(self, hook: ClarifaiHook) -> None:
        self.hook = hook

    def run(self, steps: Steps[T]) -> T:
        """Drive ``steps`` to the end with blocking calls; return what they return.

        :param steps: a waiter's steps.
        """
        answer: Any = None
        error: ClarifaiError | None = None
        while True:
            try:
                effect = steps.throw(error) if error is not None else steps.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            try:
                answer = self._perform(effect)
            except ClarifaiError as failed:
                error = failed

    async def arun(self, steps: Steps[T]) -> T:
        """Drive ``steps`` to the end with asyncio calls; return what they return.

        :param steps: a waiter's steps.
        """
        answer: Any = None
        error: ClarifaiError | None = None
        while True:
            try:
                effect = steps.throw(error) if error is not None else steps.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            try:
                answer = await self._aperform(effect)
            except ClarifaiError as failed:
                error = failed

    def _answer(self, effect: Effect) -> Any:
        try:
            return self._perform(effect)
        except ClarifaiError as error:
            return error

    async def _aanswer(self, effect: Effect) -> Any:
        try:
            return await self._aperform(effect)
        except ClarifaiError as error:
            return error

    def _perform(self, effect: Effect) -> Any:
        hook = self.hook
        if isinstance(effect, Sleep):
            hook.clock.sleep(effect.seconds)
            return None
        if isinstance(effect, ReadEach):
            return {
                run_id: self._answer(ReadRun(effect.ids, run_id, effect.within)) for run_id in effect.run_ids
            }
        with hook.time_limit(effect.within):
            if isinstance(effect, ReadRun):
                return hook.get_run(effect.ids, effect.run_id)
            if isinstance(effect, ListUnfinished):
                return hook.list_runs(effect.ids, statuses=UNFINISHED, per_page=LIST_PAGE_SIZE)
            if isinstance(effect, ListFinished):
                return hook.list_runs(effect.ids, statuses=effect.states, per_page=LIST_PAGE_SIZE)
            if isinstance(effect, ReadLogs):
                return hook.get_run_logs(effect.ids, effect.run_id, cursor=effect.cursor)
            return _only_change(hook.set_runs_status(effect.ids, [effect.run_id], RunAction.CANCEL))

    async def _aperform(self, effect: Effect) -> Any:
        hook = self.hook
        if isinstance(effect, Sleep):
            await hook.clock.asleep(effect.seconds)
            return None
        if isinstance(effect, ReadEach):
            # At once: the hook's shared channel bounds the calls in flight, its budget their rate.
            answers = await asyncio.gather(
                *(self._aanswer(ReadRun(effect.ids, run_id, effect.within)) for run_id in effect.run_ids)
            )
            return dict(zip(effect.run_ids, answers, strict=True))
        with hook.time_limit(effect.within):
            if isinstance(effect, ReadRun):
                return await hook.aget_run(effect.ids, effect.run_id)
            if isinstance(effect, ListUnfinished):
                return await hook.alist_runs(effect.ids, statuses=UNFINISHED, per_page=LIST_PAGE_SIZE)
            if isinstance(effect, ListFinished):
                return await hook.alist_runs(effect.ids, statuses=effect.states, per_page=LIST_PAGE_SIZE)
            if isinstance(effect, ReadLogs):
                return await hook.aget_run_logs(effect.ids, effect.run_id, cursor=effect.cursor)
            return _only_change(await hook.aset_runs_status(effect.ids, [effect.run_id], RunAction.CANCEL))


def _only_change(changes: Iterable[RunStatusChange]) -> RunStatusChange:
    (change,) = changes
    return change
