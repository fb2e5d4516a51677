"""ClarifaiPipelineRunsTrigger (several runs of one version, all or any) drained against the emulator.

As in this folder's other tests, the runs are read per trigger (``share_polls`` off, see conftest.py):
each read is a ``GetPipelineVersionRun`` whose deadline the emulator records. Nothing here is timed.
The shared watcher's one listing per round is counted in ``tests/sensors/test_multi_run.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunsTrigger
from airflow_provider_clarifai.waiting import WRAP_UP_SECONDS, EventStatus, RunsWaitEvent
from tests.triggers.test_clarifai import APP, FAST, PIPELINE, USER, VERSION, state
from tests.triggers.test_trigger_deadlines import WINDOW, at_most, deadlines

CLASSPATH = "airflow_provider_clarifai.triggers.clarifai.ClarifaiPipelineRunsTrigger"


def make_trigger(**overrides: Any) -> ClarifaiPipelineRunsTrigger:
    kwargs: dict[str, Any] = {
        "clarifai_conn_id": "clarifai_default",
        "user_id": USER,
        "app_id": APP,
        "pipeline_id": PIPELINE,
        "pipeline_version_id": VERSION,
        "run_ids": ["run-running", "run-forever"],
        "poll_interval": 0.01,
        "retry_policy": FAST,
    }
    kwargs.update(overrides)
    return ClarifaiPipelineRunsTrigger(**kwargs)


async def drain(trigger: ClarifaiPipelineRunsTrigger) -> list[RunsWaitEvent]:
    try:
        return [RunsWaitEvent.from_payload(event.payload) async for event in trigger.run()]
    finally:
        await close_async_endpoints()


def test_serialize_round_trips_as_json_without_the_token(emulator):
    trigger = make_trigger(require="any", deadline=1_900_000_000.5, cancel_on_timeout=True, stream_logs=True)

    classpath, kwargs = trigger.serialize()

    assert classpath == CLASSPATH
    assert (kwargs["run_ids"], kwargs["require"]) == (["run-running", "run-forever"], "any")
    assert "run_id" not in kwargs and "log_cursor" not in kwargs
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert ClarifaiPipelineRunsTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)
    assert emulator.token not in json.dumps(kwargs) + repr(trigger)


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"require": "most"}, "require must be 'all'"),
        ({"run_ids": "run-running"}, "run_ids must be a list"),
        ({"run_ids": []}, "is empty"),
        ({"run_ids": ["a", "a"]}, "repeats a"),
        ({"poll_interval": 0}, "poll_interval"),
    ],
)
def test_bad_kwargs_are_rejected(overrides, phrase):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        make_trigger(**overrides)


@pytest.mark.integration
def test_reads_are_cut_to_the_time_left_and_the_runs_still_going_are_cancelled_in_one_batch(emulator):
    emulator.faults.add(method="GetPipelineVersionRun", kind="hang")
    trigger = make_trigger(
        run_ids=["run-running", "run-forever", "run-queued"],
        poll_interval=0.2,
        deadline=time.time() + WINDOW,
        cancel_on_timeout=True,
        retry_policy=None,
    )

    (event,) = asyncio.run(drain(trigger))

    assert event.status is EventStatus.TIMEOUT
    assert event.decided_by == event.cancelled == ["run-running", "run-forever", "run-queued"]
    assert "did not finish in time" in event.message and "Cancelled: run-running" in event.message
    assert {entry["outcome"] for entry in event.runs} == {"waiting"}
    for run_id in event.cancelled:
        assert state(emulator, run_id) == "JOB_CANCELLED"
    reads = deadlines(emulator, "GetPipelineVersionRun")
    assert reads, "the trigger never read the runs"
    assert max(reads) <= at_most(WINDOW)
    (cancel,) = deadlines(emulator, "PatchPipelineVersionRuns")
    assert cancel <= at_most(WRAP_UP_SECONDS)


@pytest.mark.integration
def test_any_ends_with_the_first_success_and_writes_only_its_log(emulator, caplog, capsys):
    trigger = make_trigger(run_ids=["run-forever", "run-running"], require="any", stream_logs=True)

    async def wait() -> list[RunsWaitEvent]:
        draining = asyncio.create_task(drain(trigger))
        # Once each run was read twice, run-running reaches its scripted end (600 s).
        await asyncio.to_thread(
            emulator.requests.wait_for,
            lambda records: sum(r.method == "GetPipelineVersionRun" for r in records) >= 4,
            60,
        )
        emulator.advance(601)
        return await draining

    (event,) = asyncio.run(wait())

    assert (event.status, event.decided_by) == (EventStatus.SUCCESS, ["run-running"])
    assert [(e["run_id"], e["outcome"]) for e in event.runs] == [
        ("run-forever", "waiting"),
        ("run-running", "success"),
    ]
    assert state(emulator, "run-forever") == "JOB_RUNNING"
    # The log of the run that decided, read once at the end and written; none of the other run.
    assert [r.run_ids for r in emulator.requests("ListLogEntries")] == [("run-running",)]
    logged = capsys.readouterr().out + caplog.text
    assert "[clarifai run run-running] step 1 done" in logged
