"""What an event trigger's poll of one pipeline version has seen, and the watcher round that serves it.

An event trigger (:mod:`airflow_provider_clarifai.triggers.events`) needs every run of a version that
ends, not the state of runs it already knows. The shared
:class:`~airflow_provider_clarifai.watcher.RunWatcher` serves it with the same round as the waiting
tasks' reads: one listing of the version's unfinished runs a round, one ``GetPipelineVersionRun`` for
each run that has left that list since the feed's last round, and now and then a sweep: a listing of the
runs in the feed's end states, which finds the runs that started and ended between two rounds (and every
run that ended while no poll ran).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_clarifai.effects import ListFinished, ListUnfinished, ReadEach, Steps
from airflow_provider_clarifai.exceptions import ClarifaiError, ClarifaiNotFoundError
from airflow_provider_clarifai.status import PipelineRunStatus

if TYPE_CHECKING:
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.runs import PipelineRun


@dataclass(eq=False)
class FinishedFeed:
    """What one reader of a version's ended runs (an event trigger's poll) has seen so far.

    Each of its rounds lists the version's unfinished runs (the listing the waiting tasks' reads share)
    and reads one by one the runs that have left that list since its last round: they ended. A run that
    starts and ends between two rounds is never in that list, so every ``sweep_every`` rounds, and at
    the first, the round also lists the runs in ``states`` (every page: a cost that grows with the
    version's history).

    :param states: the end states the reader wants.
    :param sweep_every: rounds between two listings of the ended runs.
    """

    states: frozenset[PipelineRunStatus]
    sweep_every: int
    #: The unfinished runs the last round found; ``None`` before the first round.
    unfinished: set[str] | None = None
    rounds_since_sweep: int = 0
    #: Make the next round sweep (a reader that needs every ended run again sets it).
    sweep_requested: bool = True

    @property
    def sweep_due(self) -> bool:
        """Whether the next round lists the ended runs."""
        return (
            self.sweep_requested or self.unfinished is None or self.rounds_since_sweep + 1 >= self.sweep_every
        )


def feed_round(
    ids: PipelineVersionIds, run_ids: list[str], feeds: list[FinishedFeed], within: float | None
) -> Steps[tuple[dict[str, PipelineRun | ClarifaiError], dict[int, list[PipelineRun]]]]:
    """A round that serves feeds as well as reads: one listing of the unfinished runs answers both.

    Reads of runs not in the listing and the feeds' runs that left it since their last round are read
    one by one, together; a feed due a sweep gets the runs in its end states, listed once for all.

    :param ids: the pipeline version.
    :param run_ids: the runs whose reads the round serves.
    :param feeds: the feeds it serves (each updated).
    :param within: the most seconds each request may take, retries included.
    :return: each read run's answer, and each feed's ended runs keyed by ``id(feed)``.
    :raises ClarifaiError: the listing of unfinished runs, or a sweep, failed.
    """
    listed = {run.run_id: run for run in (yield ListUnfinished(ids, within))}
    found: dict[str, PipelineRun | ClarifaiError] = {r: listed[r] for r in run_ids if r in listed}
    gone = {feed_id: (feed.unfinished or set()) - listed.keys() for feed_id, feed in _by_id(feeds)}
    missing = [r for r in run_ids if r not in found]
    missing += sorted(set().union(*gone.values()) - set(missing))
    read: dict[str, PipelineRun | ClarifaiError] = (
        (yield ReadEach(ids, tuple(missing), within)) if missing else {}
    )
    found.update((r, read[r]) for r in run_ids if r not in found)
    sweeping = [feed for feed in feeds if feed.sweep_due]
    swept: list[PipelineRun] = []
    if sweeping:
        states = tuple(sorted(frozenset().union(*(feed.states for feed in sweeping))))
        swept = yield ListFinished(ids, states, within)
    ended: dict[int, list[PipelineRun]] = {}
    for feed_id, feed in _by_id(feeds):
        still = set(listed)
        runs: dict[str, PipelineRun] = {}
        for run_id in gone[feed_id]:
            answer = read.get(run_id)
            if isinstance(answer, ClarifaiNotFoundError):
                continue  # deleted: it ended nothing
            if answer is None or isinstance(answer, ClarifaiError):
                still.add(run_id)  # not read this round: look again at the next
                continue
            status = answer.known_status
            if status is not None and not status.is_terminal:
                still.add(run_id)  # the listing and the read disagree: look again at the next round
            elif status in feed.states:
                runs[run_id] = answer
        if feed in sweeping:
            runs.update((run.run_id, run) for run in swept if run.known_status in feed.states)
            feed.rounds_since_sweep, feed.sweep_requested = 0, False
        else:
            feed.rounds_since_sweep += 1
        feed.unfinished = still
        ended[feed_id] = list(runs.values())
    return found, ended


def _by_id(feeds: Iterable[FinishedFeed]) -> list[tuple[int, FinishedFeed]]:
    return [(id(feed), feed) for feed in dict.fromkeys(feeds)]
