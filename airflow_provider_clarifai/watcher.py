"""One poll per pipeline version for every trigger of a triggerer that waits on a run of it.

Without sharing, every deferred sensor or run operator reads its own run each poll interval, so one
token can watch only a few hundred runs within Clarifai's 15 requests per second. A
:class:`RunWatcher` serves all of a process's waits on one pipeline version (per event loop, endpoint
and token): a round lists the version's unfinished runs (every page, the largest page the service
accepts) and reads with ``GetPipelineVersionRun`` only the watched runs that were not in that list
(finished, or unknown). A round costs ``ceil(unfinished / page size) + (watched runs that left the
list)`` requests, however many triggers wait.

The trigger keeps all of its own semantics: it drives the same
:class:`~airflow_provider_clarifai.waiter.RunWaiter` as without sharing, with :class:`WatchedCalls`
in place of :class:`~airflow_provider_clarifai.waiter.RunCalls`: its reads of the run's state are
answered by the watcher's rounds, its log reads and cancels go to the hook as before. A read is
answered no sooner than the trigger's own poll interval after its last look (a little sooner, up to
:data:`EARLY_FRACTION` of it, when that lets it join a round, so waits started apart fall into step),
and never later than the time its wait has left.

The watcher holds nothing but the reads waiting for a round: a trigger that is cancelled (triggerer
restart, task killed) takes its read with it, and a watcher with no reads left ends its round task and
drops out of the registry. Keys hold a fingerprint of the token, never the token itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.effects import (
    Effect,
    ListFinished,
    ListUnfinished,
    ReadEach,
    ReadRun,
    RunCalls,
    Sleep,
)
from airflow_provider_clarifai.exceptions import ClarifaiError, ClarifaiUnavailableError
from airflow_provider_clarifai.feed import FinishedFeed, feed_round
from airflow_provider_clarifai.retry import MIN_ATTEMPT_SECONDS
from airflow_provider_clarifai.waiter import read_states

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.runs import PipelineRun

#: A read may be answered this fraction of its poll interval early, to join a round that is being made.
EARLY_FRACTION = 0.1
#: A round waits this fraction of the shortest poll interval it serves (at most :data:`GATHER_MAX`
#: seconds) before it lists, so reads that arrive together (a triggerer's start) share it.
GATHER_FRACTION = 0.02
GATHER_MAX = 1.0


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token, for keys, logs and metrics (never the token).

    :param token: the Personal Access Token.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


@dataclass(eq=False)
class _Read:
    """A trigger's read of one run, or of a feed's ended runs, waiting for a round (loop times, seconds)."""

    run_id: str
    due: float
    early: float
    interval: float
    deadline: float | None
    started: float
    answer: asyncio.Future[Any] = field(repr=False)
    feed: FinishedFeed | None = None


@dataclass
class WatcherCounts:
    """What a watcher did, for tests and the benchmark.

    :param rounds: rounds made.
    :param lists: ListPipelineVersionRuns listings made (each may be several pages).
    :param gets: GetPipelineVersionRun reads made for runs that were not listed.
    :param answered: reads answered.
    :param sweeps: listings of ended runs made for feeds (counted in ``lists`` too).
    """

    rounds: int = 0
    lists: int = 0
    gets: int = 0
    answered: int = 0
    sweeps: int = 0


#: The watchers of each event loop, by (endpoint, token fingerprint, pipeline version). Process-global,
#: per loop (weakly keyed, so a closed loop's watchers go with it); a watcher removes itself when it has
#: no reads left. Only runs of the same endpoint, token and version share one.
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], RunWatcher]] = (
    weakref.WeakKeyDictionary()
)

#: Counts of every watcher of the process, kept after the watcher is gone (for tests and benchmarks).
TOTALS = WatcherCounts()


class RunWatcher:
    """Answers reads of the runs of one pipeline version, one round for all of them.

    Made by :func:`watcher_for`; not meant to be built directly.

    :param key: its registry key.
    :param hook: the hook its listings and reads go through (the first trigger's).
    :param ids: the pipeline version.
    """

    def __init__(self, key: tuple[Any, ...], hook: ClarifaiHook, ids: PipelineVersionIds) -> None:
        self.key, self.hook, self.ids = key, hook, ids
        self.pending: list[_Read] = []
        self.counts = WatcherCounts()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def read(self, run_id: str, *, due: float, interval: float, within: float | None) -> PipelineRun:
        """The run as a round finds it, no sooner than ``due`` (less the early allowance).

        :param run_id: the run.
        :param due: loop time from which the read may be answered.
        :param interval: the reader's poll interval (the early allowance is a fraction of it).
        :param within: the most seconds to wait for the answer (``None``: no limit).
        :raises ClarifaiUnavailableError: no round answered in time (transient: the wait goes on).
        """
        result: PipelineRun = await self._enqueue(run_id, None, due=due, interval=interval, within=within)
        return result

    async def ended(
        self, feed: FinishedFeed, *, due: float, interval: float, within: float | None
    ) -> list[PipelineRun]:
        """The runs that ended since the feed's last round, found by a round no sooner than ``due``.

        The round lists the version's unfinished runs once for this feed and every read it serves.

        :param feed: the reader's feed; the round updates it.
        :param due: loop time from which the read may be answered.
        :param interval: the reader's poll interval.
        :param within: the most seconds to wait for the answer (``None``: no limit).
        :raises ClarifaiError: the round's listing failed (the feed is unchanged: the next round
            looks again).
        """
        result: list[PipelineRun] = await self._enqueue("", feed, due=due, interval=interval, within=within)
        return result

    async def _enqueue(
        self, run_id: str, feed: FinishedFeed | None, *, due: float, interval: float, within: float | None
    ) -> Any:
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if within is None else now + max(within, MIN_ATTEMPT_SECONDS)
        if deadline is not None:
            due = min(due, deadline)
        entry = _Read(
            run_id, due, EARLY_FRACTION * interval, interval, deadline, now, loop.create_future(), feed
        )
        self.pending.append(entry)
        if self._task is None or self._task.done():
            self._task = loop.create_task(
                self._rounds(), name=f"clarifai-watcher-{self.ids.pipeline_version_id}"
            )
        self._wake.set()
        try:
            # The round loop answers it, or fails it at its deadline: no timer of its own per read.
            return await entry.answer
        finally:
            if not entry.answer.done():
                entry.answer.cancel()
            self._forget(entry)

    def _forget(self, entry: _Read) -> None:
        with contextlib.suppress(ValueError):
            self.pending.remove(entry)

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                waiting = [entry for entry in self.pending if not entry.answer.done()]
                if not waiting:
                    break
                wait = min(entry.due for entry in waiting) - loop.time()
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                gather = min(GATHER_FRACTION * min(entry.interval for entry in waiting), GATHER_MAX)
                await asyncio.sleep(gather)
                now = loop.time()
                serve = [e for e in self.pending if e.due - e.early <= now and not e.answer.done()]
                if serve:
                    await self._serve_within_deadlines(serve)
                # Not kept until the next round: an answered read's entry goes with its reader.
                serve = []
        finally:
            registry = _watchers.get(loop)
            if registry is not None and registry.get(self.key) is self:
                del registry[self.key]
            for entry in self.pending:
                # Reads that came in after the last round looked (none normally: a read starts a round).
                if not entry.answer.done():
                    entry.answer.set_exception(
                        ClarifaiUnavailableError(f"The shared watcher of {self.ids} stopped; read again.")
                    )

    async def _serve_within_deadlines(self, serve: list[_Read]) -> None:
        """Serve a round; meanwhile fail each waiting read whose deadline passes (a slow round never
        keeps a trigger past its deadline)."""
        loop = asyncio.get_running_loop()
        serving = loop.create_task(self._serve(serve))
        try:
            while True:
                deadlines = [
                    e.deadline for e in self.pending if e.deadline is not None and not e.answer.done()
                ]
                timeout = max(min(deadlines) - loop.time(), 0.0) if deadlines else None
                done, _ = await asyncio.wait({serving}, timeout=timeout)
                if done:
                    serving.result()
                    return
                now = loop.time()
                for entry in self.pending:
                    if entry.deadline is not None and entry.deadline <= now:
                        _settle(entry, error=_late(entry))
        except BaseException as error:
            serving.cancel()
            # Whatever stops a round reaches the reads it was serving: none waits on a dead round.
            for entry in serve:
                _settle(entry, error=error)
            raise

    async def _serve(self, reads: list[_Read]) -> None:
        loop = asyncio.get_running_loop()
        self.counts.rounds += 1
        TOTALS.rounds += 1
        deadlines = [entry.deadline for entry in reads]
        limit = None if None in deadlines else max(d for d in deadlines if d is not None) - loop.time()
        run_ids = sorted({entry.run_id for entry in reads if entry.feed is None})
        feeds = [entry.feed for entry in reads if entry.feed is not None]
        calls = _CountingCalls(self.hook, self)
        try:
            if feeds:
                found, ended = await calls.arun(feed_round(self.ids, run_ids, feeds, limit))
            else:
                found, ended = await calls.arun(read_states(self.ids, run_ids, limit)), {}
        except ClarifaiError as error:
            # A feed round's listing failed: every read it served gets the error; the feeds are unchanged.
            for entry in reads:
                _settle(entry, error=error)
            return
        for entry in reads:
            if entry.feed is not None:
                _settle(entry, run=ended[id(entry.feed)])
                continue
            result = found[entry.run_id]
            if isinstance(result, ClarifaiError):
                _settle(entry, error=result)
            else:
                _settle(entry, run=result)
                self.counts.answered += 1
                TOTALS.answered += 1

    def _count(self, *, lists: int = 0, gets: int = 0, sweeps: int = 0) -> None:
        self.counts.lists += lists
        self.counts.gets += gets
        self.counts.sweeps += sweeps
        TOTALS.lists += lists
        TOTALS.gets += gets
        TOTALS.sweeps += sweeps


def _late(entry: _Read) -> ClarifaiUnavailableError:
    waited = entry.deadline - entry.started if entry.deadline is not None else 0.0
    return ClarifaiUnavailableError(f"No shared read of run {entry.run_id} answered within {waited:.3g} s.")


def _settle(
    entry: _Read, *, run: PipelineRun | list[PipelineRun] | None = None, error: BaseException | None = None
) -> None:
    if entry.answer.done():
        return
    if error is not None:
        entry.answer.set_exception(error)
    else:
        entry.answer.set_result(run)


async def watcher_for(hook: ClarifaiHook, ids: PipelineVersionIds) -> RunWatcher:
    """The watcher of this event loop for the hook's endpoint and token and this pipeline version.

    :param hook: the caller's hook (its connection names the endpoint and token).
    :param ids: the pipeline version.
    """
    settings = await hook.aget_settings()
    key = (settings.channel_key, token_fingerprint(settings.token), ids)
    registry = _watchers.setdefault(asyncio.get_running_loop(), {})
    watcher = registry.get(key)
    if watcher is None:
        watcher = registry[key] = RunWatcher(key, hook, ids)
    return watcher


def active_watchers() -> list[RunWatcher]:
    """The watchers of the running event loop (for tests and the benchmark)."""
    return list(_watchers.get(asyncio.get_running_loop(), {}).values())


class _CountingCalls(RunCalls):
    """:class:`RunCalls` that counts a watcher's listings and reads.

    :param hook: the watcher's hook.
    :param watcher: the watcher whose counts grow.
    """

    def __init__(self, hook: ClarifaiHook, watcher: RunWatcher) -> None:
        super().__init__(hook)
        self.watcher = watcher

    async def _aperform(self, effect: Effect) -> Any:
        if isinstance(effect, ListUnfinished | ListFinished):
            self.watcher._count(lists=1, sweeps=int(isinstance(effect, ListFinished)))
        elif isinstance(effect, ReadEach):
            self.watcher._count(gets=len(effect.run_ids))
        return await super()._aperform(effect)


class WatchedCalls(RunCalls):
    """:class:`RunCalls` whose run reads are answered by the shared :class:`RunWatcher`.

    The waiter's sleep becomes the time from which its next read is due; the read then waits for the
    watcher's round. Log reads and cancels go to the hook as with :class:`RunCalls`.

    :param hook: the trigger's hook.
    :param poll_interval: the trigger's poll interval.
    """

    def __init__(self, hook: ClarifaiHook, poll_interval: float) -> None:
        super().__init__(hook)
        self.poll_interval = poll_interval
        self._due: float | None = None

    async def _aperform(self, effect: Effect) -> Any:
        loop = asyncio.get_running_loop()
        if isinstance(effect, Sleep):
            self._due = loop.time() + effect.seconds
            return None
        if isinstance(effect, ReadRun):
            due, self._due = (self._due if self._due is not None else loop.time()), None
            watcher = await watcher_for(self.hook, effect.ids)
            return await watcher.read(
                effect.run_id, due=due, interval=self.poll_interval, within=effect.within
            )
        return await super()._aperform(effect)


def runs_of(watchers: Iterable[RunWatcher]) -> set[str]:
    """The runs whose reads are waiting in ``watchers`` (for tests).

    :param watchers: watchers.
    """
    return {entry.run_id for watcher in watchers for entry in watcher.pending}
