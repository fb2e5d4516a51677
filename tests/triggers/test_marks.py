"""The event trigger's watermark, on its own: what fires, when the marks move, what is stored."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_clarifai.runs import PipelineRun
from airflow_provider_clarifai.triggers.marks import RunMarks

LOG = logging.getLogger(__name__)


def ended(run_id: str, at: float) -> PipelineRun:
    return PipelineRun(run_id, 64002, "JOB_COMPLETED", ended_at=datetime.fromtimestamp(at, UTC))


class Accessor:
    def __init__(self, value: Any = None) -> None:
        self.value = value

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.value if self.value is not None else default

    async def aset(self, key: str, value: Any) -> None:
        self.value = value


class TwoAssets:
    """The store of a trigger serving two assets: the single accessor refuses, as Airflow's does."""

    def __init__(self) -> None:
        self._by_name = {"a": Accessor(), "b": Accessor()}

    async def aget(self, key: str, default: Any = None) -> Any:
        raise ValueError("Task has 2 concrete inlets and outlets")


def marks(store: Any, since: str | None = None, slack: float = 100) -> RunMarks:
    made = RunMarks(store, "k", slack=slack, since=since, log=LOG)
    asyncio.run(made.load())
    return made


def test_the_first_sweep_notes_what_ended_before_and_later_runs_fire_once():
    store = Accessor()
    m = marks(store)
    assert asyncio.run(m.judge(1, True, [ended("old", 1000)])) == []
    assert store.value["seen"] == {"old": 1000.0}
    fired = asyncio.run(m.judge(2, False, [ended("new", 1010), ended("old", 1000)]))
    assert [run.run_id for run in fired] == ["new"]
    # Not persisted yet: the stored marks do not move, and a round seen again fires nothing twice.
    assert "new" not in store.value["seen"]
    assert asyncio.run(m.judge(3, True, [ended("new", 1010)])) == []
    asyncio.run(m.confirm([2]))
    assert store.value["seen"] == {"old": 1000.0, "new": 1010.0}


def test_a_run_fired_before_the_first_sweep_is_marked_only_once_persisted():
    store = Accessor()
    m = marks(store)
    assert [r.run_id for r in asyncio.run(m.judge(1, False, [ended("early", 500)]))] == ["early"]
    asyncio.run(m.judge(2, True, [ended("early", 500), ended("old", 400)]))
    assert "early" not in store.value["seen"]
    asyncio.run(m.confirm([1]))
    assert "early" in store.value["seen"]


def test_the_marks_trail_the_latest_end_by_the_slack_and_stay_small():
    store = Accessor()
    m = marks(store, since="1970-01-01T00:00:00+00:00", slack=100)
    asyncio.run(m.judge(1, False, [ended(f"r{i}", 1000 + 10 * i) for i in range(30)]))
    asyncio.run(m.confirm([1]))
    assert store.value["since"] == 1290 - 100
    assert sorted(store.value["seen"]) == sorted(f"r{i}" for i in range(19, 30))
    # A run reported late, but within the slack, still fires; one older than the marks does not.
    late = asyncio.run(m.judge(2, True, [ended("late", 1250), ended("too-late", 1100)]))
    assert [run.run_id for run in late] == ["late"]


def test_stored_marks_survive_a_restart_and_since_applies_only_without_them():
    store = Accessor({"version": 1, "since": 2000.0, "seen": {"x": 2001.0}})
    m = marks(store, since="1970-01-01T00:00:00+00:00")
    fired = asyncio.run(m.judge(1, True, [ended("x", 2001), ended("y", 2002), ended("z", 1500)]))
    assert [run.run_id for run in fired] == ["y"]


def test_a_trigger_serving_two_assets_keeps_the_marks_on_each():
    store = TwoAssets()
    m = marks(store)
    asyncio.run(m.judge(1, True, [ended("old", 10)]))
    assert store._by_name["a"].value == store._by_name["b"].value
    assert store._by_name["a"].value["seen"] == {"old": 10.0}


@pytest.mark.parametrize("stored", [{"version": 2, "since": 1, "seen": {}}, "garbage", {"since": "x"}])
def test_unreadable_marks_count_as_none(stored):
    m = marks(Accessor(stored))
    assert m.baseline
