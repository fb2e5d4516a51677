"""The shared run watcher: many deferred waits, one listing per pipeline version and round.

Hundreds of real triggers run in one event loop against the emulator over gRPC, as in a triggerer. The
assertions are counts, never clocks: which requests the emulator served, how many, and for which runs.
Runs end when the test moves the emulator's manual clock; the triggers poll every 50 ms of real time,
and the test waits for conditions (with a guard against a hang), never for a length of time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_clarifai import watcher
from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from airflow_provider_clarifai.waiting import RunWaitEvent

pytestmark = [pytest.mark.integration, pytest.mark.shared_polls]

USER, APP, PIPELINE = "demo-user", "pipelines-app", "nightly-training"
VERSIONS = ("v1", "v2", "v3")
TOKEN = "emulator-pat-0123456789"
SCENARIO = {
    "tokens": [{"token": TOKEN, "user_id": USER}],
    "users": [
        {
            "id": USER,
            "apps": [
                {
                    "id": APP,
                    "pipelines": [{"id": PIPELINE, "versions": [{"id": version} for version in VERSIONS]}],
                }
            ],
        }
    ],
}
#: A guard against a hang, not a limit: the conditions waited for come within a few rounds.
GUARD_SECONDS = 120
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "throttle_backoff": 0.05, "max_elapsed": 10.0}


def trigger(version: str, run_id: str, **overrides: Any) -> ClarifaiPipelineRunTrigger:
    kwargs: dict[str, Any] = {
        "clarifai_conn_id": "clarifai_default",
        "user_id": USER,
        "app_id": APP,
        "pipeline_id": PIPELINE,
        "pipeline_version_id": version,
        "run_id": run_id,
        "poll_interval": 0.05,
        "retry_policy": FAST,
    }
    kwargs.update(overrides)
    return ClarifaiPipelineRunTrigger(**kwargs)


async def first_event(made: ClarifaiPipelineRunTrigger) -> RunWaitEvent:
    async for event in made.run():
        return RunWaitEvent.from_payload(event.payload)
    raise AssertionError("the trigger ended without an event")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds, looking every 10 ms; fail after the guard."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GUARD_SECONDS
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.01)


def seed(emulator: Any, per_version: int, ends: Callable[[int], dict[str, Any]]) -> dict[str, str]:
    """Seed ``per_version`` running runs in each version; return run id -> version."""
    runs = {}
    for version in VERSIONS:
        for index in range(per_version):
            run_id = f"{version}-run-{index:04d}"
            emulator.backend.add_run(USER, APP, PIPELINE, version, run_id, "JOB_RUNNING", ends(index))
            runs[run_id] = version
    return runs


@pytest.fixture
def counts(monkeypatch) -> watcher.WatcherCounts:
    fresh = watcher.WatcherCounts()
    monkeypatch.setattr(watcher, "TOTALS", fresh)
    return fresh


def served(emulator: Any, method: str) -> int:
    return emulator.requests.count(method)


@pytest.mark.clarifai_scenario(SCENARIO, rate_limit_per_second=15)
def test_300_waits_over_3_versions_cost_one_listing_per_version_and_round(
    clarifai_emulator, clarifai_connection, counts, monkeypatch
):
    from airflow_provider_clarifai import waiter

    emulator = clarifai_emulator
    # Every round lists, also one that a busy machine left with a few late reads (a round of three reads
    # or fewer reads them one by one instead: test_a_round_with_few_reads_reads_each_run). So the Gets
    # counted below are the finished runs', whatever the machine's speed.
    monkeypatch.setattr(waiter, "GET_EACH_UP_TO", 0)
    # Per version: 30 runs complete at 100 s, 10 fail at 200 s, 60 run on (cancelled by kill at the end).
    runs = seed(
        emulator,
        100,
        lambda i: (
            {"running_seconds": 100, "outcome": "JOB_COMPLETED"}
            if i < 30
            else {"running_seconds": 200, "outcome": "JOB_FAILED"}
            if i < 40
            else {"running_seconds": None}
        ),
    )

    async def scenario() -> dict[str, RunWaitEvent]:
        tasks = {
            run_id: asyncio.create_task(first_event(trigger(version, run_id)))
            for run_id, version in runs.items()
        }
        # Every trigger has been answered once; all 300 runs are still running.
        await until(lambda: counts.answered >= len(runs), "a first answer for every trigger")
        assert served(emulator, "GetPipelineVersionRun") == 0
        emulator.clock.advance(150)
        await until(lambda: sum(task.done() for task in tasks.values()) >= 90, "90 completed runs")
        emulator.clock.advance(100)
        await until(lambda: sum(task.done() for task in tasks.values()) >= 120, "30 failed runs")
        events = {run_id: task.result() for run_id, task in tasks.items() if task.done()}
        # The rest are killed (as a triggerer stopping would): their reads leave the watchers.
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await until(lambda: not watcher.active_watchers(), "the watchers to drop out")
        await close_async_endpoints()
        return events

    events = asyncio.run(scenario())

    assert len(events) == 120
    for run_id, event in events.items():
        index = int(run_id.rsplit("-", 1)[1])
        expected = "success" if index < 30 else "failure"
        assert (event.status.value, event.run_id) == (expected, run_id)
    # Status reads: listings of the unfinished runs, one page each (100 runs < 1000 a page), and one
    # Get for each watched run that left the listing: the 120 that finished, never a running one.
    assert served(emulator, "GetPipelineVersionRun") == counts.gets == 120
    assert served(emulator, "ListPipelineVersionRuns") == counts.lists
    # A round lists once per version, whatever the number of triggers it answers.
    assert counts.lists == counts.rounds
    assert counts.answered > 3 * counts.lists, "rounds were not shared"
    # Failures read the run's log once for their tail; nothing else did.
    assert served(emulator, "ListLogEntries") == 30
    # With the emulator's limit of 15 requests per second on, as the service's: the process's request
    # budget kept every call under it (pacing only slows down on a slow machine, so this holds on any).
    assert not [r for r in emulator.requests if r.code == "CONN_THROTTLED"]


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_listing_reads_every_page(clarifai_emulator, clarifai_connection, counts, monkeypatch):
    from airflow_provider_clarifai import effects

    emulator = clarifai_emulator
    monkeypatch.setattr(effects, "LIST_PAGE_SIZE", 40)
    runs = seed(emulator, 100, lambda i: {"running_seconds": 100 if i < 5 else None})
    watched = {run_id: version for run_id, version in runs.items() if int(run_id.rsplit("-", 1)[1]) < 5}

    async def scenario() -> list[RunWaitEvent]:
        tasks = [asyncio.create_task(first_event(trigger(v, run_id))) for run_id, v in watched.items()]
        await until(lambda: counts.answered >= len(watched), "a first answer for every trigger")
        emulator.clock.advance(150)
        events = await asyncio.gather(*tasks)
        await close_async_endpoints()
        return events

    events = asyncio.run(scenario())

    assert [event.status.value for event in events] == ["success"] * len(watched)
    # ceil(100 unfinished / 40 a page) = 3 pages per listing; the last page is short, so no 4th read.
    # (A round that served 3 reads or fewer read them one by one instead, and listed nothing.)
    assert served(emulator, "ListPipelineVersionRuns") == math.ceil(100 / 40) * counts.lists
    assert counts.lists >= 3
    assert served(emulator, "GetPipelineVersionRun") == counts.gets


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_round_with_few_reads_reads_each_run(clarifai_emulator, clarifai_connection, counts):
    """Up to three waits on a version: a Get each costs less than listing the version."""
    emulator = clarifai_emulator
    seed(emulator, 100, lambda i: {"running_seconds": 100 if i == 0 else None})

    async def scenario() -> RunWaitEvent:
        made = first_event(trigger("v1", "v1-run-0000"))
        task = asyncio.create_task(made)
        await until(lambda: counts.answered >= 2, "two answers")
        emulator.clock.advance(150)
        event = await task
        await close_async_endpoints()
        return event

    assert asyncio.run(scenario()).status.value == "success"
    assert served(emulator, "ListPipelineVersionRuns") == 0
    assert served(emulator, "GetPipelineVersionRun") == counts.gets >= 3


@pytest.mark.clarifai_scenario(SCENARIO)
def test_an_unknown_run_fails_its_own_wait_only(clarifai_emulator, clarifai_connection, counts):
    emulator = clarifai_emulator
    seed(emulator, 1, lambda i: {"running_seconds": 100})

    async def scenario() -> tuple[RunWaitEvent, RunWaitEvent]:
        known = asyncio.create_task(first_event(trigger("v1", "v1-run-0000")))
        unknown = await first_event(trigger("v1", "no-such-run"))
        emulator.clock.advance(150)
        result = (await known, unknown)
        await close_async_endpoints()
        return result

    known, unknown = asyncio.run(scenario())

    assert known.status.value == "success"
    assert (unknown.status.value, unknown.error_class) == ("error", "ClarifaiNotFoundError")


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_wait_ends_at_its_deadline_when_no_round_answers(clarifai_emulator, clarifai_connection, counts):
    """A read that hangs: the trigger still ends at its own deadline, with a timeout event."""
    emulator = clarifai_emulator
    seed(emulator, 1, lambda i: {"running_seconds": None})
    emulator.faults.add(method="GetPipelineVersionRun", kind="hang")

    async def scenario() -> RunWaitEvent:
        loop = asyncio.get_running_loop()
        wall = ClarifaiPipelineRunTrigger.clock.now()
        started = loop.time()
        event = await first_event(trigger("v1", "v1-run-0000", deadline=wall + 0.5))
        assert loop.time() - started < GUARD_SECONDS
        await close_async_endpoints()
        return event

    event = asyncio.run(scenario())

    assert event.status.value == "timeout"
    assert not counts.answered
    # The listing carried the wait's deadline (never more than the time the wait had left).
    # (A hung request is logged once the server gives up on it: wait for the log, with the guard.)
    assert emulator.requests.wait_for(
        lambda records: any(r.method == "GetPipelineVersionRun" for r in records), GUARD_SECONDS
    )
    (read,) = [r for r in emulator.requests if r.method == "GetPipelineVersionRun"][:1]
    assert read.deadline_seconds is not None and read.deadline_seconds <= 0.5 * 1.01 + 0.1


@pytest.mark.clarifai_scenario(SCENARIO)
def test_waits_restarted_from_serialize_in_a_new_loop_still_end_right(
    clarifai_emulator, clarifai_connection, counts
):
    """A triggerer restart: the first loop's triggers are killed mid-wait, re-made from ``serialize()``."""
    emulator = clarifai_emulator
    runs = seed(
        emulator,
        20,
        lambda i: {"running_seconds": 100, "outcome": "JOB_COMPLETED" if i % 2 else "JOB_FAILED"},
    )
    made = [trigger(version, run_id) for run_id, version in runs.items()]

    async def first_life() -> None:
        tasks = [asyncio.create_task(first_event(t)) for t in made]
        await until(lambda: counts.answered >= len(made), "a first answer for every trigger")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not watcher.runs_of(watcher.active_watchers())
        await close_async_endpoints()

    async def second_life() -> list[RunWaitEvent]:
        again = []
        for old in made:
            classpath, kwargs = old.serialize()
            assert classpath.endswith("ClarifaiPipelineRunTrigger")
            again.append(ClarifaiPipelineRunTrigger(**kwargs))
        tasks = [asyncio.create_task(first_event(t)) for t in again]
        await until(lambda: counts.answered >= 2 * len(made), "the restarted triggers' first answers")
        emulator.clock.advance(150)
        events = await asyncio.gather(*tasks)
        await close_async_endpoints()
        return events

    asyncio.run(first_life())
    events = asyncio.run(second_life())

    for old, event in zip(made, events, strict=True):
        index = int(old.run_id.rsplit("-", 1)[1])
        assert (event.run_id, event.status.value) == (old.run_id, "success" if index % 2 else "failure")


def test_keys_hold_a_fingerprint_of_the_token_never_the_token():
    fingerprint = watcher.token_fingerprint(TOKEN)
    assert TOKEN not in fingerprint and len(fingerprint) == 16
    assert fingerprint == watcher.token_fingerprint(TOKEN)
    assert fingerprint != watcher.token_fingerprint(TOKEN + "x")


@pytest.mark.clarifai_scenario(SCENARIO)
def test_faults_on_the_shared_listing_delay_the_waits_but_never_fail_them(
    clarifai_emulator, clarifai_connection, counts
):
    """Listings and reads that fail (unavailable, throttled, internal errors), beyond what one call's
    retries absorb: every trigger keeps waiting and still sends its run's event."""
    emulator = clarifai_emulator
    runs = seed(
        emulator,
        10,
        lambda i: {"running_seconds": 100, "outcome": "JOB_FAILED" if i % 3 == 0 else "JOB_COMPLETED"},
    )
    for kind in ("unavailable", "throttle", "internal"):
        emulator.faults.add(kind=kind, method="ListPipelineVersionRuns", count=4)
        emulator.faults.add(kind=kind, method="GetPipelineVersionRun", count=4)
    few_retries = {**FAST, "max_attempts": 2}

    async def scenario() -> dict[str, RunWaitEvent]:
        tasks = {
            run_id: asyncio.create_task(first_event(trigger(version, run_id, retry_policy=few_retries)))
            for run_id, version in runs.items()
        }
        await until(lambda: counts.answered >= len(runs), "a first answer for every trigger")
        emulator.clock.advance(150)
        events = dict(zip(tasks, await asyncio.gather(*tasks.values()), strict=True))
        await close_async_endpoints()
        return events

    events = asyncio.run(scenario())

    for run_id, event in events.items():
        index = int(run_id.rsplit("-", 1)[1])
        assert (event.run_id, event.status.value) == (run_id, "failure" if index % 3 == 0 else "success")
    faulted = [r for r in emulator.requests if r.fault is not None]
    assert len(faulted) == 24, "every injected fault was met"
