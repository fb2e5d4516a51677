"""The event trigger against the emulator over gRPC: one event per ended run, a watermark that survives a
restart, and one shared poll for sibling triggers in ack mode (Airflow's own SharedStreamManager).

Runs end when the test moves the emulator's manual clock or sets a run's state; the triggers poll every
50 ms of real time and the test waits for conditions (with a guard against a hang), never for a length of
time. The asset state store is a dict with the store's async methods (Airflow's own store needs a
triggerer); the end-to-end test in tests/e2e uses the real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.airflow_dags import AIRFLOW_3

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AIRFLOW_3, reason="asset watchers are Airflow 3"),
]

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
TOKEN = "emulator-pat-0123456789"
SCENARIO = {
    "tokens": [{"token": TOKEN, "user_id": USER}],
    "users": [
        {
            "id": USER,
            "apps": [
                {
                    "id": APP,
                    "pipelines": [
                        {
                            "id": PIPELINE,
                            "versions": [
                                {
                                    "id": VERSION,
                                    "runs": [
                                        {"id": "old-done", "status": "JOB_COMPLETED"},
                                        {"id": "old-failed", "status": "JOB_FAILED"},
                                        {
                                            "id": "ends-soon",
                                            "status": "JOB_RUNNING",
                                            "script": {"running_seconds": 100, "outcome": "JOB_COMPLETED"},
                                        },
                                        {
                                            "id": "fails-soon",
                                            "status": "JOB_RUNNING",
                                            "script": {"running_seconds": 100, "outcome": "JOB_FAILED"},
                                        },
                                        {
                                            "id": "ends-later",
                                            "status": "JOB_RUNNING",
                                            "script": {"running_seconds": 300, "outcome": "JOB_COMPLETED"},
                                        },
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ],
}
GUARD_SECONDS = 120
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": VERSION}


class DictStore:
    """The asset state store's async accessors over a dict."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.writes += 1

    def seen(self) -> set[str]:
        return {run_id for value in self.values.values() for run_id in value["seen"]}


def make(store: DictStore | None = None, **overrides: Any) -> Any:
    from airflow_provider_clarifai.triggers.events import ClarifaiPipelineRunEventTrigger

    kwargs: dict[str, Any] = {**IDS, "poll_interval": 0.05, "sweep_every": 3}
    kwargs.update(overrides)
    made = ClarifaiPipelineRunEventTrigger(**kwargs)
    made.asset_state_store = store
    return made


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GUARD_SECONDS
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """Runs a trigger's events into a list, in a task."""

    def __init__(self, events: AsyncIterator[Any]) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._collect(events))

    async def _collect(self, events: AsyncIterator[Any]) -> None:
        async for event in events:
            self.payloads.append(event.payload)

    def run_ids(self) -> list[str]:
        return [payload["run_id"] for payload in self.payloads]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def counts(monkeypatch):
    from airflow_provider_clarifai import watcher

    fresh = watcher.WatcherCounts()
    monkeypatch.setattr(watcher, "TOTALS", fresh)
    return fresh


async def close() -> None:
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints

    await close_async_endpoints()


@pytest.mark.clarifai_scenario(SCENARIO)
def test_one_event_per_run_that_ends_and_nothing_for_runs_ended_before(
    clarifai_emulator, clarifai_connection, counts
):
    emulator = clarifai_emulator
    store = DictStore()

    async def scenario() -> list[dict[str, Any]]:
        collector = Collector(make(store).run())
        # The first round sweeps: the runs that ended before the watch are noted, not fired.
        await until(lambda: store.writes >= 1, "the first watermark")
        assert collector.payloads == []
        emulator.clock.advance(150)
        await until(lambda: len(collector.payloads) >= 1, "the run that completed")
        # A short run that never shows up unfinished: only a sweep finds it.
        emulator.add_run("short-one", "JOB_COMPLETED", version=VERSION)
        await until(lambda: len(collector.payloads) >= 2, "the short run, at a sweep")
        await until(lambda: {"ends-soon", "short-one"} <= store.seen(), "the watermark past both")
        await collector.stop()
        await close()
        return collector.payloads

    payloads = asyncio.run(scenario())

    assert [payload["run_id"] for payload in payloads] == ["ends-soon", "short-one"]
    first = payloads[0]
    assert first["state"] == "JOB_COMPLETED"
    assert (first["user_id"], first["app_id"], first["pipeline_id"], first["pipeline_version_id"]) == (
        USER,
        APP,
        PIPELINE,
        VERSION,
    )
    assert first["ended_at"] and first["started_at"] and first["duration_seconds"] == pytest.approx(100)
    assert first["url"].endswith(f"/{USER}/{APP}/pipelines/{PIPELINE}/versions/{VERSION}/runs/ends-soon")
    assert TOKEN not in repr(payloads)
    assert counts.sweeps >= 2 and counts.lists > counts.sweeps


@pytest.mark.clarifai_scenario(SCENARIO)
def test_runs_that_end_while_down_fire_after_a_restart_and_nothing_fires_twice(
    clarifai_emulator, clarifai_connection
):
    emulator = clarifai_emulator
    store = DictStore()

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        first = Collector(make(store, states=["JOB_COMPLETED", "JOB_FAILED"]).run())
        await until(lambda: store.writes >= 1, "the first watermark")
        emulator.clock.advance(150)
        await until(lambda: len(first.payloads) >= 2, "the two runs that ended")
        await until(lambda: {"ends-soon", "fails-soon"} <= store.seen(), "the watermark past both")
        await first.stop()  # the triggerer goes down
        emulator.clock.advance(200)  # ends-later completes while down
        emulator.add_run("while-down", "JOB_FAILED", version=VERSION)
        second = Collector(make(store, states=["JOB_COMPLETED", "JOB_FAILED"]).run())
        await until(lambda: len(second.payloads) >= 2, "the runs that ended while down")
        await until(lambda: {"ends-later", "while-down"} <= store.seen(), "the watermark past them")
        await second.stop()
        third = Collector(make(store, states=["JOB_COMPLETED", "JOB_FAILED"]).run())
        emulator.add_run("after-second-restart", "JOB_COMPLETED", version=VERSION)
        await until(lambda: len(third.payloads) >= 1, "the next run")
        await third.stop()
        await close()
        return first.run_ids(), second.run_ids(), third.run_ids()

    first, second, third = asyncio.run(scenario())

    assert sorted(first) == ["ends-soon", "fails-soon"]
    assert sorted(second) == ["ends-later", "while-down"]
    assert third == ["after-second-restart"]


@pytest.mark.clarifai_scenario(SCENARIO)
def test_since_fires_for_runs_that_ended_before_the_first_start(clarifai_emulator, clarifai_connection):
    async def scenario() -> list[str]:
        collector = Collector(make(DictStore(), since=0, states=["JOB_COMPLETED"]).run())
        await until(lambda: len(collector.payloads) >= 1, "the old completed run")
        await collector.stop()
        await close()
        return collector.run_ids()

    assert asyncio.run(scenario()) == ["old-done"]


@pytest.mark.clarifai_scenario(SCENARIO)
def test_siblings_share_one_poll_and_move_the_watermark_only_after_persisting(
    clarifai_emulator, clarifai_connection, counts
):
    """Two asset watchers on one version in Airflow's own shared-stream manager, in ack mode."""
    from airflow.triggers.shared_stream import SharedStreamManager

    emulator = clarifai_emulator
    completed_store, failed_store = DictStore(), DictStore()

    async def scenario() -> dict[str, Any]:
        manager = SharedStreamManager()
        completed = make(completed_store, states=["JOB_COMPLETED"])
        failed = make(failed_store, states=["JOB_FAILED"])
        key = completed.shared_stream_key()
        assert key == failed.shared_stream_key() and key is not None
        seqs: dict[str, list[int]] = {"completed": [], "failed": []}
        collectors = {}
        for trigger_id, (name, made) in enumerate({"completed": completed, "failed": failed}.items()):
            stream = manager.subscribe(trigger_id=trigger_id, trigger=made, key=key)

            async def events(made=made, stream=stream, name=name, trigger_id=trigger_id):
                async for event in made.filter_shared_stream(stream):
                    # What the triggerer does with each event: bind it to its raw event, persist it later.
                    seqs[name].append(manager.bind_pending_event(trigger_id=trigger_id, key=key))
                    yield event

            collectors[name] = Collector(events())
        await until(lambda: completed_store.writes >= 1 and failed_store.writes >= 1, "the first watermarks")
        emulator.clock.advance(150)
        await until(lambda: all(c.payloads for c in collectors.values()), "an event for each")
        # Not persisted yet: the watermarks stay where they were, however many rounds pass.
        lists = counts.lists
        await until(lambda: counts.lists >= lists + 3, "three more rounds")
        assert completed_store.seen() == {"old-done"} and failed_store.seen() == {"old-failed"}
        manager.confirm_persisted([seq for name in seqs for seq in seqs[name]])
        await until(lambda: "ends-soon" in completed_store.seen(), "the completed watermark to move")
        await until(lambda: "fails-soon" in failed_store.seen(), "the failed watermark to move")
        result = {name: c.run_ids() for name, c in collectors.items()}
        for collector in collectors.values():
            await collector.stop()
        await manager.stop_all()
        await close()
        return result

    result = asyncio.run(scenario())

    assert result == {"completed": ["ends-soon"], "failed": ["fails-soon"]}
    # One poll: one listing of the unfinished runs a round for both triggers, not one each.
    assert counts.rounds == counts.lists - counts.sweeps
    assert emulator.requests.count("ListPipelineVersionRuns") == counts.lists


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"states": "JOB_COMPLETED"}, "write ['JOB_COMPLETED']"),
        ({"states": ["JOB_RUNNING"]}, "must name end states"),
        ({"states": ["JOB_DONE"]}, "states:"),
        ({"since": "2026-01-01T00:00:00"}, "with a zone"),
        ({"since": "yesterday"}, "ISO 8601"),
        ({"sweep_every": 0}, "sweep_every"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"pipeline_version_id": None}, "needs pipeline_version_id"),
        ({"nodepool_id": "a/b"}, "nodepool_id"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(overrides, phrase):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

    with pytest.raises(ClarifaiConfigurationError, match=None) as raised:
        make(**overrides)
    assert phrase in str(raised.value)


def test_kwargs_are_primitive_and_stable_and_ids_come_from_config_lock(tmp_path):
    from airflow_provider_clarifai.triggers.events import ClarifaiPipelineRunEventTrigger

    lock = tmp_path / "config-lock.yaml"
    lock.write_text(
        f"pipeline:\n  id: {PIPELINE}\n  user_id: {USER}\n  app_id: {APP}\n  version_id: {VERSION}\n"
    )
    made = ClarifaiPipelineRunEventTrigger(config_lock_path=str(lock), states=["FAILED", "COMPLETED"])
    classpath, kwargs = made.serialize()
    again = ClarifaiPipelineRunEventTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert {name: kwargs[name] for name in IDS} == IDS
    assert kwargs["states"] == ["JOB_COMPLETED", "JOB_FAILED"]
    assert "config_lock_path" not in kwargs
    assert all(isinstance(value, str | int | float | list | type(None)) for value in kwargs.values())


@pytest.mark.shared_polls
@pytest.mark.clarifai_scenario(SCENARIO, rate_limit_per_second=15)
def test_an_event_trigger_and_deferred_waits_share_one_listing_a_round(
    clarifai_emulator, clarifai_connection, counts, monkeypatch
):
    """Everything of a process that polls one version, event triggers and deferred tasks alike."""
    from airflow_provider_clarifai import waiter
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    # A round of a few late reads would read them one by one instead of listing (a busy machine can make
    # one): every round lists here, so that the count of listings per round does not depend on speed.
    monkeypatch.setattr(waiter, "GET_EACH_UP_TO", 0)

    emulator = clarifai_emulator
    waits = [f"wait-{index}" for index in range(10)]
    for run_id in waits:
        emulator.add_run(run_id, "JOB_RUNNING", script={"running_seconds": None}, version=VERSION)

    async def scenario() -> list[str]:
        # A 0.2 s interval: reads answered together come due again within the 20 ms a read may be early
        # to join a round, however busy the machine.
        events = Collector(make(DictStore(), poll_interval=0.2).run())
        deferred = [
            asyncio.create_task(
                ClarifaiPipelineRunTrigger(
                    clarifai_conn_id="clarifai_default", **IDS, run_id=run_id, poll_interval=0.2
                )
                .run()
                .__anext__()
            )
            for run_id in waits
        ]
        await until(lambda: counts.rounds >= 6, "six rounds")
        emulator.clock.advance(150)
        await until(lambda: len(events.payloads) >= 1, "the run that completed")
        for task in deferred:
            task.cancel()
        await asyncio.gather(*deferred, return_exceptions=True)
        await events.stop()
        await close()
        return events.run_ids()

    assert asyncio.run(scenario()) == ["ends-soon"]
    # One listing of the unfinished runs a round serves the event trigger's feed and all ten waits.
    assert counts.lists - counts.sweeps == counts.rounds
    # The ten waits' reads are answered in the feed's rounds: rounds of their own would halve this.
    assert counts.answered > 5 * counts.rounds
    assert not [request for request in emulator.requests if request.code == "CONN_THROTTLED"]


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_nodepool_filter_fires_only_for_runs_there(clarifai_emulator, clarifai_connection):
    emulator = clarifai_emulator
    for run_id, nodepool in (("on-gpu", "cluster/gpu"), ("on-cpu", "cluster/cpu")):
        emulator.add_run(
            run_id, "JOB_RUNNING", script={"running_seconds": 100}, version=VERSION, nodepool=nodepool
        )

    async def scenario() -> list[str]:
        store = DictStore()
        collector = Collector(make(store, nodepool_id="gpu", compute_cluster_id="cluster").run())
        await until(lambda: store.writes >= 1, "the first watermark")
        emulator.clock.advance(150)
        await until(lambda: "on-gpu" in store.seen(), "the run on the nodepool to fire and be marked")
        await collector.stop()
        await close()
        return collector.run_ids()

    # ends-soon (no nodepool) and on-cpu ended in the same round: neither is on gpu.
    assert asyncio.run(scenario()) == ["on-gpu"]


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_wrong_token_is_logged_each_round_and_the_watch_goes_on(
    clarifai_emulator, clarifai_connection, monkeypatch, capfd
):
    import json

    emulator = clarifai_emulator
    wrong = "pat-not-known-to-the-emulator"
    conn = {"conn_type": "clarifai", "host": emulator.base_url, "password": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_WRONG", json.dumps(conn))

    def refused() -> int:
        return sum(1 for request in emulator.requests if request.code == "CONN_KEY_INVALID")

    async def scenario() -> tuple[bool, list[str]]:
        collector = Collector(make(DictStore(), clarifai_conn_id="clarifai_wrong").run())
        await until(lambda: refused() >= 3, "three refused rounds")
        going = not collector.task.done()
        await collector.stop()
        await close()
        return going, collector.run_ids()

    going, fired = asyncio.run(scenario())

    assert going and fired == []
    out, err = capfd.readouterr()
    logged = out + err
    errors = [line for line in logged.splitlines() if "for ended runs failed" in line]
    assert len(errors) >= 3 and all("CONN_KEY_INVALID" in line for line in errors)
    assert "demo-user/pipelines-app/nightly-training/v1" in errors[0]
    assert wrong not in logged
