"""The watermark of an event trigger: which ended runs it has already fired for, kept across restarts.

Kept in the asset state store of the asset the trigger watches (Airflow 3.3, AIP-103) under a key of the
trigger's own configuration, as ``{"version": 1, "since": UNIX seconds, "seen": {run id: end}}``: a run
that ended before ``since``, or whose id is in ``seen``, has fired already. ``since`` trails the latest
end seen by a slack (longer than two sweeps apart), so a run whose end is reported late (found by a
sweep after newer runs were found by a read) still fires; ``seen`` holds only the runs that ended after
``since``, so the value stays small.

The marks move only for rounds the poll reported resolved (their events persisted); runs fired in this
process are remembered in memory meanwhile, so a round seen twice fires nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from airflow_provider_clarifai.runs import PipelineRun

FORMAT_VERSION = 1


def end_time(run: PipelineRun) -> float:
    """When the run ended (else last changed, else was made), as UNIX seconds; 0 when unknown.

    :param run: the run.
    """
    when = run.ended_at or run.modified_at or run.created_at
    return when.timestamp() if when is not None else 0.0


class RunMarks:
    """One trigger's watermark and what it fired but has not seen persisted yet.

    :param store: the trigger's ``asset_state_store`` (``None``: the marks live in memory only).
    :param key: the key of this trigger's marks in the store.
    :param slack: seconds ``since`` trails the latest end seen.
    :param since: ISO 8601 instant to fire from when nothing is stored; ``None``: from the first look.
    :param log: where problems with the store are told.
    """

    def __init__(
        self, store: Any, key: str, *, slack: float, since: str | None, log: logging.Logger | Any
    ) -> None:
        self.store, self.key, self.slack, self.log = store, key, slack, log
        self.given_since = since
        self.since = 0.0
        self.seen: dict[str, float] = {}
        self.fired: dict[str, float] = {}
        self.pending: dict[int, list[tuple[str, float]]] = {}
        #: Nothing stored and no ``since``: the first sweep only notes the runs that ended already.
        self.baseline = False
        self._accessors: list[Any] = []

    async def load(self) -> None:
        """Read the stored marks (the most cautious, when the trigger serves several assets)."""
        stored = [value for value in await self._read() if _valid(value)]
        if stored:
            oldest = min(stored, key=lambda value: float(value["since"]))
            self.since = float(oldest["since"])
            self.seen = {str(run_id): float(end) for run_id, end in oldest["seen"].items()}
        elif self.given_since is not None:
            self.since = datetime.fromisoformat(self.given_since).timestamp()
        else:
            self.baseline = True

    async def judge(self, number: int, swept: bool, runs: Sequence[PipelineRun]) -> list[PipelineRun]:
        """The runs of a round to fire for (oldest end first); they count as pending until it resolves.

        :param number: the round.
        :param swept: the round listed every ended run.
        :param runs: the round's ended runs this trigger wants, oldest end first.
        """
        if self.baseline and swept:
            # The first full look: what has ended by now ended before this watch began.
            for run in runs:
                if run.run_id not in self.fired:  # fired already: it is marked once it is persisted
                    self.seen.setdefault(run.run_id, end_time(run))
            self.baseline = False
            self._compact()
            await self._save()
            return []
        fire = []
        for run in runs:
            end = end_time(run)
            if end < self.since or run.run_id in self.seen or run.run_id in self.fired:
                continue
            self.fired[run.run_id] = end
            self.pending.setdefault(number, []).append((run.run_id, end))
            fire.append(run)
        return fire

    async def confirm(self, rounds: Iterable[int]) -> None:
        """Move the marks past the runs fired in ``rounds`` (their events were persisted) and store them.

        :param rounds: resolved rounds.
        """
        moved = False
        for number in rounds:
            for run_id, end in self.pending.pop(number, []):
                self.seen[run_id] = end
                moved = True
        if moved:
            self._compact()
            await self._save()

    def _compact(self) -> None:
        if self.seen:
            self.since = max(self.since, max(self.seen.values()) - self.slack)
        self.seen = {run_id: end for run_id, end in self.seen.items() if end >= self.since}
        waiting = {run_id for runs in self.pending.values() for run_id, _ in runs}
        self.fired = {r: end for r, end in self.fired.items() if end >= self.since or r in waiting}

    def to_value(self) -> dict[str, Any]:
        """The stored form."""
        return {"version": FORMAT_VERSION, "since": self.since, "seen": dict(sorted(self.seen.items()))}

    async def _read(self) -> list[Any]:
        store = self.store
        if store is None:
            return []
        try:
            value = await store.aget(self.key)
            self._accessors = [store]
            return [value]
        except ValueError:
            # The trigger serves several assets: keep the marks on each of them.
            by_name = getattr(store, "_by_name", None) or {}
            by_uri = getattr(store, "_by_uri", None) or {}
            self._accessors = [*by_name.values(), *by_uri.values()]
            if not self._accessors:
                self.log.warning(
                    "This trigger serves several assets and their state store cannot be told apart: its "
                    "watermark is kept in memory only, so a restart starts it afresh."
                )
            return [await accessor.aget(self.key) for accessor in self._accessors]

    async def _save(self) -> None:
        value = self.to_value()
        for accessor in self._accessors:
            try:
                await accessor.aset(self.key, value)
            except Exception as error:  # the events are persisted: at worst a restart repeats them
                self.log.warning("Could not store the watermark %s: %s", self.key, error)


def _valid(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("version") == FORMAT_VERSION
        and isinstance(value.get("since"), int | float)
        and isinstance(value.get("seen"), dict)
    )
