"""Faults: transport errors, throttling and latency spikes on about 30% of calls, and a restart mid-way.

Two views of the same promise, "a transient fault never fails a task and never starts a run twice":

* one event loop starts 100 runs and then monitors all of them at once through 100 triggers, as a
  triggerer does, while the emulator injects faults and restarts once in the middle;
* a real Airflow (``dag.test()``) runs mapped ``ClarifaiRunPipelineOperator`` tasks, each starting a
  run and waiting for it deferred, with no task retries, under the same faults and a restart. ``dag.test``
  runs task instances one after another, so this view uses 20 shorter runs; the concurrency is the
  first view's.

The injected fraction is read back from the emulator's request log and checked, so the test cannot pass
by injecting less than it claims. The restart is set off by the request count, not by a timer.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import RetryPolicy
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from airflow_provider_clarifai.waiting import EventStatus, RunWaitEvent
from tests.airflow_dags import write_dag
from tests.sensors import RECORD_FAILURES, dag_test, failures

pytestmark = [pytest.mark.integration]

USER, APP, PIPELINE = "demo-user", "pipelines-app", "nightly-training"
RUNS = 100
#: One run in FAILS_EVERY is started on the version whose runs fail: the right outcome is then a failure.
FAILS_EVERY = 5

#: Runs on v-ok complete and runs on v-fails fail, after a few emulated seconds; the clock runs 20 times
#: faster than real time, so a run lives about three seconds.
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
              - id: v-ok
                post_script: {queued_seconds: 4, running_seconds: 56, outcome: JOB_COMPLETED}
              - id: v-fails
                post_script: {queued_seconds: 4, running_seconds: 46, outcome: JOB_FAILED}
"""

#: The same versions with runs six times shorter, for the task-level view that runs them one by one.
SHORT_SCENARIO = (
    SCENARIO.replace("queued_seconds: 4", "queued_seconds: 1")
    .replace("running_seconds: 56", "running_seconds: 9")
    .replace("running_seconds: 46", "running_seconds: 7")
)
TASKS = 20

#: A request deadline well above the short latency spikes and below the long ones, which therefore
#: turn into DEADLINE_EXCEEDED on the client: a transport error too.
REQUEST_TIMEOUT = 1.0

#: Backoffs scaled down for a test; more attempts than the default six because here every call has a
#: 20% chance of failing outright (0.2**8 is about 3 in a million per call, over a few thousand calls).
RETRIES = RetryPolicy(
    max_attempts=8, initial_backoff=0.05, max_backoff=0.4, throttle_backoff=0.2, max_elapsed=60.0
)


def inject_faults(emulator: Any) -> None:
    """About 30% of all calls hit: transport errors, throttling and latency spikes.

    Rules are tried in order and at most one fires per call, so the total is 1 - product(1 - p).
    Besides the random ones, the first five starts are applied and then lose their reply: the case that
    starts a run twice unless the client checks before retrying.
    """
    faults = emulator.faults
    faults.seed(20261121)
    faults.add(kind="unavailable_after", method="PostPipelineVersionRuns", count=5)
    faults.add(kind="unavailable", probability=0.08)
    faults.add(kind="unavailable_after", probability=0.03)
    faults.add(kind="deadline", probability=0.02)
    faults.add(kind="throttle", probability=0.07)
    faults.add(kind="internal", probability=0.03)
    faults.add(kind="latency", probability=0.08, latency_seconds=0.3)
    faults.add(kind="latency", probability=0.04, latency_seconds=REQUEST_TIMEOUT * 1.5)


def assert_about_thirty_percent_faulted(emulator: Any) -> None:
    """The rules above hit 30.3% of calls in expectation; allow for chance (about three standard
    deviations at the few hundred calls of the smaller test)."""
    records = emulator.requests.snapshot()
    fraction = sum(record.fault is not None for record in records) / len(records)
    assert 0.22 <= fraction <= 0.40, f"{fraction:.1%} of {len(records)} calls were faulted"


def version_for(index: int) -> str:
    return "v-fails" if index % FAILS_EVERY == 0 else "v-ok"


def expected_status(version: str) -> str:
    return "JOB_FAILED" if version == "v-fails" else "JOB_COMPLETED"


@pytest.fixture
def emulator(clarifai_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    name, value = clarifai_emulator.airflow_connection_env(conn_extra={"timeout": REQUEST_TIMEOUT})
    monkeypatch.setenv(name, value)
    return clarifai_emulator


@pytest.fixture
def restart_midway(emulator: Any) -> Iterator[Any]:
    """Restart the emulator once, when a given number of run reads has been served.

    Yields a function ``arm(after_reads)``; the test then checks ``emulator.restarts == 1``.
    """
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def arm(after_reads: int) -> None:
        def restart_when_reached() -> None:
            reached = False
            while not reached and not stop.is_set():
                reached = emulator.requests.wait_for(
                    lambda records: sum(r.method == "GetPipelineVersionRun" for r in records) >= after_reads,
                    timeout=0.5,
                )
            if reached:
                emulator.restart(downtime_seconds=0.5)

        thread = threading.Thread(target=restart_when_reached, name="restart-midway", daemon=True)
        thread.start()
        threads.append(thread)

    yield arm
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def assert_each_run_started_once(emulator: Any, expected: dict[str, str]) -> None:
    """Exactly the expected runs exist, each on its version: no run was started twice or lost."""
    for version in ("v-ok", "v-fails"):
        ids = sorted(run.id for run in emulator.backend.runs(USER, APP, PIPELINE, version))
        assert ids == sorted(run_id for run_id, where in expected.items() if where == version)


@pytest.mark.clarifai_scenario(SCENARIO, time_scale=20)
def test_hundred_runs_started_and_watched_at_once_through_faults_and_a_restart(
    emulator: Any, restart_midway: Any
) -> None:
    inject_faults(emulator)
    restart_midway(after_reads=RUNS * 2)
    runs = {f"fault-run-{index:03d}": version_for(index) for index in range(RUNS)}

    async def start(hook: ClarifaiHook, run_id: str, version: str) -> str:
        run = await hook.apost_run(PipelineVersionIds(USER, APP, PIPELINE, version), run_id=run_id)
        return run.run_id

    async def watch(run_id: str, version: str) -> list[RunWaitEvent]:
        trigger = ClarifaiPipelineRunTrigger(
            clarifai_conn_id="clarifai_default",
            user_id=USER,
            app_id=APP,
            pipeline_id=PIPELINE,
            pipeline_version_id=version,
            run_id=run_id,
            poll_interval=0.1,
            retry_policy=RETRIES.to_dict(),
        )
        return [RunWaitEvent.from_payload(event.payload) async for event in trigger.run()]

    async def main() -> tuple[list[Any], list[Any]]:
        hook = ClarifaiHook(retry_policy=RETRIES)
        try:
            started = await asyncio.gather(
                *(start(hook, run_id, version) for run_id, version in runs.items()), return_exceptions=True
            )
            watched = await asyncio.gather(
                *(watch(run_id, version) for run_id, version in runs.items()), return_exceptions=True
            )
            return started, watched
        finally:
            await close_async_endpoints()

    started, watched = asyncio.run(main())

    assert started == list(runs)
    outcomes = {}
    for (run_id, version), events in zip(runs.items(), watched, strict=True):
        assert not isinstance(events, BaseException), f"watching {run_id} raised {events!r}"
        (event,) = events
        assert event.run_id == run_id
        expected = EventStatus.FAILURE if version == "v-fails" else EventStatus.SUCCESS
        assert (event.status, event.run["status"]) == (expected, expected_status(version)), event
        outcomes[run_id] = event.status
    assert Counter(outcomes.values()) == {EventStatus.SUCCESS: 80, EventStatus.FAILURE: 20}
    assert_each_run_started_once(emulator, runs)
    assert emulator.restarts == 1
    # The faults really happened, at the rate claimed, including lost replies to starts.
    assert_about_thirty_percent_faulted(emulator)
    lost_starts = [
        r
        for r in emulator.requests
        if r.method == "PostPipelineVersionRuns" and r.fault == "unavailable_after"
    ]
    assert len(lost_starts) >= 5


DAG_SOURCE = """
import pendulum

from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator
from airflow.providers.common.compat.sdk import DAG
{record_failures}

with DAG(
    dag_id="faults_run_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    default_args={{"retries": 0, "on_failure_callback": record_failure}},
) as dag:
    ClarifaiRunPipelineOperator.partial(
        task_id="train",
        user_id="{user}",
        app_id="{app}",
        pipeline_id="{pipeline}",
        deferrable=True,
        poll_interval=0.05,
        api_retry_policy={retries!r},
    ).expand(pipeline_version_id={versions!r})
"""


@pytest.mark.e2e
@pytest.mark.clarifai_scenario(SHORT_SCENARIO, time_scale=20)
def test_mapped_run_tasks_in_airflow_survive_faults_and_a_restart(
    emulator: Any, restart_midway: Any, dag_folder: Any
) -> None:
    inject_faults(emulator)
    restart_midway(after_reads=TASKS * 2)
    versions = [version_for(index) for index in range(TASKS)]
    path = write_dag(
        dag_folder,
        DAG_SOURCE.format(
            record_failures=RECORD_FAILURES,
            user=USER,
            app=APP,
            pipeline=PIPELINE,
            retries=RETRIES.to_dict(),
            versions=versions,
        ),
    )

    result = dag_test(path, "faults_run_pipeline")

    started = {
        index: result.xcom("train", key="pipeline_version_run_id", map_index=index) for index in range(TASKS)
    }
    assert all(started.values()) and len(set(started.values())) == TASKS
    assert_each_run_started_once(emulator, {started[i]: versions[i] for i in range(TASKS)})
    # Every failure is the run's own failure, reported as such: none comes from a transient fault.
    recorded = failures(dag_folder)
    assert len(recorded) == TASKS // FAILS_EVERY
    assert {record["error"] for record in recorded} == {"ClarifaiRunFailedError"}
    assert all("JOB_FAILED" in record["message"] for record in recorded)
    for index, run_id in started.items():
        status = emulator.backend.run_status(USER, APP, PIPELINE, versions[index], run_id)
        assert status == expected_status(versions[index])
    assert emulator.restarts == 1
    assert_about_thirty_percent_faulted(emulator)
