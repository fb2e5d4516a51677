"""ClarifaiRunPipelineOperator in a real Airflow (``dag.test()``) and directly, against the emulator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiRunFailedError
from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.operators.clarifai import (
    RUN_ID_XCOM_KEY,
    ClarifaiRunPipelineOperator,
    derived_run_id,
)
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from airflow_provider_clarifai.waiting import DEFERRAL_GRACE_SECONDS
from tests.airflow_dags import AIRFLOW_3, write_dag
from tests.compat import RUN_TIMES_REPORTED
from tests.sensors import (
    RECORD_FAILURES,
    FakeTaskInstance,
    dag_test,
    defer,
    failures,
    task_log_text,
    unit_dag,
)

USER, APP, PIPELINE = "demo-user", "pipelines-app", "nightly-training"
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": "v1"}
INPUT_ARGS = {"learning_rate": "0.01", "epochs": "2"}

#: How long a test waits for the operator or its trigger to have read a run a few times: a guard against
#: a hang, not a limit (the reads come every 20 ms), so a slow or busy machine never reaches it.
GUARD_SECONDS = 60

#: Three versions whose posted runs complete, fail, or run until someone stops them. With time_scale,
#: the emulated clock runs 20 times faster than real time: a 5-second run takes a quarter of a second.
SCENARIO = """
rate_limit_per_second: 0
tokens:
  - {token: emulator-pat-0123456789, user_id: demo-user}
users:
  - id: demo-user
    apps:
      - id: pipelines-app
        pipelines:
          - id: nightly-training
            versions:
              - id: v1
                post_script:
                  queued_seconds: 1
                  running_seconds: 4
                  outcome: JOB_COMPLETED
                  logs: [{at: 1, message: '{"msg": "training"}'}]
              - id: v-fails
                post_script:
                  queued_seconds: 1
                  running_seconds: 4
                  outcome: JOB_FAILED
                  logs: [{at: 2, message: '{"msg": "CUDA out of memory"}'}]
              - id: v-forever
                post_script: {queued_seconds: 1, running_seconds: null}
"""
TIME_SCALE = 20

OPERATOR_DAG = """
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator

{record_failures}

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={{
        "on_failure_callback": record_failure,
        "on_retry_callback": record_failure,
        "retries": 0,
        "retry_delay": timedelta(0),
    }},
) as dag:
    for task_id, version, arguments in {tasks!r}:
        ClarifaiRunPipelineOperator(
            task_id=task_id,
            user_id="demo-user",
            app_id="pipelines-app",
            pipeline_id="nightly-training",
            pipeline_version_id=version,
            poll_interval=0.05,
            **arguments,
        )
"""


def operator_dag(dag_id: str, tasks: list[tuple[str, str, dict[str, Any]]]) -> str:
    """A DAG of independent run operators: (task id, pipeline version, operator arguments)."""
    return OPERATOR_DAG.format(record_failures=RECORD_FAILURES, dag_id=dag_id, tasks=tasks)


def snapshot(emulator: Any, version: str, run_id: str) -> Any:
    return emulator.backend.run(USER, APP, PIPELINE, version, run_id)


# Start and wait, in a real Airflow -----------------------------------------------------------------


PLACEMENT = {"input_args": INPUT_ARGS, "nodepool_id": "gpu-pool", "compute_cluster_id": "cluster-1"}
WAIT_DAG_TASKS = [
    ("run_polling", "v1", {**PLACEMENT, "stream_logs": True}),
    ("run_deferred", "v1", {**PLACEMENT, "stream_logs": True, "deferrable": True}),
    ("start_only", "v-forever", {"input_args": INPUT_ARGS, "wait_for_completion": False}),
    ("fails_polling", "v-fails", {}),
    ("fails_deferred", "v-fails", {"deferrable": True}),
    ("timeout_polling", "v-forever", {"timeout": 1}),
    ("timeout_deferred", "v-forever", {"timeout": 1, "deferrable": True}),
]


@pytest.mark.integration
@pytest.mark.clarifai_scenario(SCENARIO, time_scale=TIME_SCALE)
def test_start_and_wait_in_both_modes(emulator, dag_folder, caplog, capsys):
    path = write_dag(dag_folder, operator_dag("clarifai_run_pipeline", WAIT_DAG_TASKS))

    result = dag_test(path, "clarifai_run_pipeline")

    assert result.task_states == {
        "run_polling": "success",
        "run_deferred": "success",
        "start_only": "success",
        "fails_polling": "failed",
        "fails_deferred": "failed",
        "timeout_polling": "failed",
        "timeout_deferred": "failed",
    }
    assert set(result.tries.values()) == {1}
    # One run per task, no more: each task posted once, under the id derived from its task instance.
    assert emulator.requests.count("PostPipelineVersionRuns") == len(WAIT_DAG_TASKS)
    run_ids = {}
    for task_id, version, _ in WAIT_DAG_TASKS:
        run_id = derived_run_id("clarifai_run_pipeline", task_id, result.run_id, -1, 1)
        assert [run.id for run in emulator.backend.runs(USER, APP, PIPELINE, version)].count(run_id) == 1
        assert result.xcom(task_id, key=RUN_ID_XCOM_KEY) == run_id, task_id
        run_ids[task_id] = run_id
    recorded = {record["task_id"]: record for record in failures(dag_folder)}

    # Started with the input overrides on the chosen nodepool, waited for, in both modes.
    for task_id in ("run_polling", "run_deferred"):
        run = snapshot(emulator, "v1", run_ids[task_id])
        assert str(run.state) == "JOB_COMPLETED"
        assert dict(run.input_args) == INPUT_ARGS
        assert (run.nodepool_id, run.compute_cluster_id) == ("gpu-pool", "cluster-1")
        summary = result.xcom(task_id)
        assert summary["run_id"] == run_ids[task_id]
        assert summary["status"] == "JOB_COMPLETED"
        assert summary["input_args"] == INPUT_ARGS
        assert bool(summary["started_at"] and summary["ended_at"]) is RUN_TIMES_REPORTED
        assert task_id not in recorded

    # stream_logs: the run's log line reaches the task log once, from the worker or from the trigger.
    logs = task_log_text(caplog, capsys)
    for task_id, writer in (
        ("run_polling", "ClarifaiRunPipelineOperator"),
        ("run_deferred", "ClarifaiPipelineRunTrigger"),
    ):
        streamed = f"[clarifai run {run_ids[task_id]}] training"
        (line,) = [line for line in logs.splitlines() if streamed in line]
        assert writer in line, line

    # Without waiting, the task returns the run as started; the run goes on.
    assert result.xcom("start_only")["status"] == "JOB_QUEUED"
    started = snapshot(emulator, "v-forever", run_ids["start_only"])
    assert str(started.state) in {"JOB_QUEUED", "JOB_RUNNING"}
    assert dict(started.input_args) == INPUT_ARGS

    # A failed run fails the task with its state and its last log lines.
    for task_id in ("fails_polling", "fails_deferred"):
        assert recorded[task_id]["error"] == "ClarifaiRunFailedError"
        assert "ended in JOB_FAILED" in recorded[task_id]["message"]
        assert "CUDA out of memory" in recorded[task_id]["message"]

    # cancel_on_timeout is on by default: a timed-out run is cancelled, polling or deferred.
    for task_id in ("timeout_polling", "timeout_deferred"):
        assert recorded[task_id]["error"] == "ClarifaiRunTimeoutError"
        assert "It was cancelled" in recorded[task_id]["message"]
        assert str(snapshot(emulator, "v-forever", run_ids[task_id]).state) == "JOB_CANCELLED"

    if AIRFLOW_3:
        # The deferred tasks' triggers as stored for a triggerer: the operator's settings, no token.
        deferred = {run_ids[t] for t in ("run_deferred", "fails_deferred", "timeout_deferred")}
        rows = {
            row["run_id"]: row
            for row in result.trigger_kwargs_rows()
            if row.get("run_id") in run_ids.values()
        }
        assert set(rows) == deferred
        for row in rows.values():
            assert row["poll_interval"] == 0.05
            assert row["cancel_on_kill"] is True
            assert row["cancel_on_timeout"] is True
            assert emulator.token not in json.dumps(row, default=str)
        assert rows[run_ids["run_deferred"]]["deadline"] is None
        assert isinstance(rows[run_ids["timeout_deferred"]]["deadline"], float)


@pytest.mark.integration
@pytest.mark.clarifai_scenario(SCENARIO, time_scale=TIME_SCALE)
@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferred"])
def test_a_retry_reattaches_to_the_run_of_the_first_try(deferrable, emulator, dag_folder):
    dag_id = f"clarifai_retry_{'deferred' if deferrable else 'polling'}"
    arguments = {"timeout": 1, "cancel_on_timeout": False, "retries": 1, "deferrable": deferrable}
    path = write_dag(dag_folder, operator_dag(dag_id, [("train", "v-forever", arguments)]))

    result = dag_test(path, dag_id)

    assert result.task_states == {"train": "failed"}
    assert result.tries == {"train": 2}
    assert [record["error"] for record in failures(dag_folder)] == ["ClarifaiRunTimeoutError"] * 2
    # Both tries watched the same run: posted once, by the first try, and still running.
    assert emulator.requests.count("PostPipelineVersionRuns") == 1
    first_try_run = derived_run_id(dag_id, "train", result.run_id, -1, 1)
    runs = emulator.backend.runs(USER, APP, PIPELINE, "v-forever")
    assert [run.id for run in runs] == [first_try_run]
    assert str(runs[0].state) == "JOB_RUNNING"
    assert result.xcom("train", key=RUN_ID_XCOM_KEY) == first_try_run


# Re-attach, directly --------------------------------------------------------------------------------


def try_of(try_number: int, map_index: int | None = -1) -> dict[str, Any]:
    """A context whose task instance is the given try of one task instance."""
    ti = FakeTaskInstance(
        dag_id="nightly", task_id="train", run_id="manual__1", map_index=map_index, try_number=try_number
    )
    return {"ti": ti}


def derived(try_number: int, map_index: int = -1) -> str:
    return derived_run_id("nightly", "train", "manual__1", map_index, try_number)


@pytest.mark.integration
def test_each_try_starts_or_reattaches_through_execute(emulator):
    with unit_dag():
        operator = ClarifaiRunPipelineOperator(
            task_id="train", input_args=INPUT_ARGS, wait_for_completion=False, **IDS
        )
    posts = lambda: emulator.requests.count("PostPipelineVersionRuns")  # noqa: E731

    def start(context: dict[str, Any]) -> dict[str, Any]:
        summary = operator.execute(context)
        assert context["ti"].pushed[RUN_ID_XCOM_KEY] == summary["run_id"]
        return summary

    first = start(try_of(1))
    assert (first["run_id"], posts()) == (derived(1), 1)
    assert first["input_args"] == INPUT_ARGS

    # Try 2 while try 1's run is still going (queued): re-attach, post nothing.
    assert start(try_of(2))["run_id"] == derived(1)
    assert posts() == 1

    # Try 2 once try 1's run has ended: a new run, under try 2's id.
    emulator.clock.advance(3600)
    assert emulator.backend.run_status(USER, APP, PIPELINE, "v1", derived(1)) == "JOB_COMPLETED"
    second = start(try_of(2))
    assert (second["run_id"], posts()) == (derived(2), 2)
    assert str(emulator.backend.run_status(USER, APP, PIPELINE, "v1", derived(2))) == "JOB_QUEUED"

    # A try always owns the run under its own id, even once it has ended (the task crashed after
    # starting it): it attaches instead of failing on a duplicate id.
    emulator.clock.advance(3600)
    assert start(try_of(2))["status"] == "JOB_COMPLETED"
    assert posts() == 2

    # Mapped task instances get runs of their own; an unmapped index (None) is -1.
    assert start(try_of(1, map_index=3))["run_id"] == derived(1, map_index=3)
    assert start(try_of(1, map_index=None))["run_id"] == derived(1)
    assert posts() == 3


@pytest.mark.integration
def test_an_explicit_run_id_attaches_or_starts_that_run(emulator):
    with unit_dag():
        existing = ClarifaiRunPipelineOperator(task_id="a", pipeline_version_run_id="run-running", **IDS)
        new = ClarifaiRunPipelineOperator(task_id="b", pipeline_version_run_id="my-run-1", **IDS)

    assert existing._start_or_reattach(try_of(3), existing.resolve_ids()).run_id == "run-running"
    assert emulator.requests.count("PostPipelineVersionRuns") == 0
    assert new._start_or_reattach(try_of(3), new.resolve_ids()).run_id == "my-run-1"
    assert emulator.requests.count("PostPipelineVersionRuns") == 1


# Kill ------------------------------------------------------------------------------------------------


def gets(records: Any) -> int:
    """Reads of run states: one run's own reads, or the shared watcher's listings of its version."""
    return sum(record.method in ("GetPipelineVersionRun", "ListPipelineVersionRuns") for record in records)


@pytest.mark.integration
@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_on_kill_cancels_the_run_being_polled(cancel_on_kill, emulator):
    with unit_dag():
        operator = ClarifaiRunPipelineOperator(
            task_id="train",
            poll_interval=0.02,
            cancel_on_kill=cancel_on_kill,
            # Only a bound should on_kill ever stop cancelling: the run here never ends by itself. A guard,
            # above the test's own waits: the kill comes after two reads.
            timeout=2 * GUARD_SECONDS,
            cancel_on_timeout=False,
            **IDS,
        )
    context = try_of(1)
    seen: dict[str, Any] = {}

    def kill_once_waiting() -> None:
        # The first read looks for an earlier try's run; the second is the wait loop's: the operator
        # now waits on the run it started. Airflow calls on_kill from another thread of the task's
        # process, as here.
        seen["waiting"] = emulator.requests.wait_for(lambda records: gets(records) >= 2, GUARD_SECONDS)
        operator.on_kill()
        seen["state"] = emulator.backend.run_status(USER, APP, PIPELINE, "v1", derived(1))
        if not cancel_on_kill:
            emulator.clock.advance(3600)  # let the run finish, so execute returns

    killer = threading.Thread(target=kill_once_waiting)
    killer.start()
    try:
        if cancel_on_kill:
            with pytest.raises(ClarifaiRunFailedError, match="JOB_CANCELLED"):
                operator.execute(context)
        else:
            assert operator.execute(context)["status"] == "JOB_COMPLETED"
    finally:
        killer.join(GUARD_SECONDS)
    assert seen["waiting"]
    assert context["ti"].pushed[RUN_ID_XCOM_KEY] == derived(1)
    assert seen["state"] == ("JOB_CANCELLED" if cancel_on_kill else "JOB_QUEUED")
    # After the wait has ended there is no run to cancel.
    patches = emulator.requests.count("PatchPipelineVersionRuns")
    operator.on_kill()
    assert emulator.requests.count("PatchPipelineVersionRuns") == patches == (1 if cancel_on_kill else 0)


@pytest.mark.integration
def test_deferral_carries_an_absolute_deadline_and_the_kill_policy_without_the_token(emulator):
    with unit_dag():
        operator = ClarifaiRunPipelineOperator(
            task_id="train", deferrable=True, poll_interval=15, timeout=timedelta(minutes=10), **IDS
        )
    context = try_of(1)
    before = time.time()
    deferred = defer(operator, context)
    after = time.time()

    assert context["ti"].pushed[RUN_ID_XCOM_KEY] == derived(1)
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_clarifai.triggers.clarifai.ClarifaiPipelineRunTrigger"
    assert kwargs["run_id"] == derived(1)
    assert kwargs["poll_interval"] == 15.0
    assert before + 600 <= kwargs["deadline"] <= after + 600
    assert (kwargs["cancel_on_timeout"], kwargs["cancel_on_kill"]) == (True, True)
    # Airflow's deferral timeout is a backstop behind the trigger's own deadline.
    backstop = deferred.timeout.total_seconds()
    assert 600 + DEFERRAL_GRACE_SECONDS - (after - before) - 1 <= backstop <= 600 + DEFERRAL_GRACE_SECONDS
    assert emulator.token not in json.dumps(kwargs)
    assert ClarifaiPipelineRunTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)


@pytest.mark.integration
@pytest.mark.asyncio
@pytest.mark.parametrize("cancel_on_kill", [True, False])
async def test_the_deferred_runs_trigger_cancels_on_kill_but_not_on_cleanup(cancel_on_kill, emulator):
    """Airflow 3.3 calls the trigger's ``on_kill`` when a user kills the deferred task; ``cleanup`` runs
    on every exit of the trigger, triggerer restarts included, and must leave the run alone."""
    with unit_dag():
        operator = ClarifaiRunPipelineOperator(
            task_id="train", deferrable=True, poll_interval=0.02, cancel_on_kill=cancel_on_kill, **IDS
        )
    deferred = defer(operator, try_of(1))
    # Rebuilt from its kwargs, as the triggerer does.
    _, kwargs = deferred.trigger.serialize()
    trigger = ClarifaiPipelineRunTrigger(**kwargs)
    state = lambda: emulator.backend.run_status(USER, APP, PIPELINE, "v1", derived(1))  # noqa: E731
    try:
        waiting = asyncio.ensure_future(anext(trigger.run()))
        assert await asyncio.to_thread(
            emulator.requests.wait_for, lambda records: gets(records) >= 3, GUARD_SECONDS
        )
        # Removal, a triggerer restart or redistribution: the wait is cancelled, then cleaned up.
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await trigger.cleanup()
        assert state() == "JOB_QUEUED"
        assert emulator.requests.count("PatchPipelineVersionRuns") == 0

        await trigger.on_kill()

        assert state() == ("JOB_CANCELLED" if cancel_on_kill else "JOB_QUEUED")
        assert emulator.requests.count("PatchPipelineVersionRuns") == (1 if cancel_on_kill else 0)
    finally:
        await close_async_endpoints()
