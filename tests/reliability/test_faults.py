"""Faults: transport errors, throttling and latency spikes on about 30% of calls, and a restart mid-way.

Two views of the same promise, "a transient fault never fails a task and never starts a run twice":

* one event loop starts 100 runs and then monitors all of them at once through 100 triggers, as a
  triggerer does, while the emulator injects faults and restarts once in the middle;
* a real Airflow (``dag.test()``) runs mapped ``ClarifaiRunPipelineOperator`` tasks, each starting a
  run and waiting for it deferred, with no task retries, under the same faults and a restart. ``dag.test``
  runs task instances one after another, so this view uses 20 shorter runs; the concurrency is the
  first view's.

The injected fraction is read back from the emulator's request log and checked against the rate claimed,
within chance for the number of calls made, so the test cannot pass by injecting far fewer faults than it
claims. Nothing depends on how fast the machine is: the restart is set off by the request count, not by a
timer, and the emulated clock stands still until the restart, then moves with the run reads the emulator
answers, so every run is still going when the emulator restarts and a run lives a number of reads, never
a length of real time.
"""

from __future__ import annotations

import asyncio
import math
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

#: Runs on v-ok complete and runs on v-fails fail, after about a minute of emulated time, on the emulator's
#: manual clock (moved by run reads once the emulator has restarted, see ``restart_midway``).
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
#: turn into DEADLINE_EXCEEDED on the client: a transport error too. It is ten times the short spikes,
#: and a thousand times what an answer takes, so that only the injected long spikes reach it, however
#: slow or busy the machine: a deadline reached by slowness would be a fault the test did not inject.
REQUEST_TIMEOUT = 3.0

#: Backoffs scaled down for a test; more attempts than the default six because here every call has a
#: 20% chance of failing outright (0.2**8 is about 3 in a million per call, over a few thousand calls).
RETRIES = RetryPolicy(
    max_attempts=8, initial_backoff=0.05, max_backoff=0.4, throttle_backoff=0.2, max_elapsed=60.0
)


#: The random faults, tried in this order on every call, at most one per call: (kind, probability, extra).
RANDOM_FAULTS: list[tuple[str, float, dict[str, float]]] = [
    ("unavailable", 0.08, {}),
    ("unavailable_after", 0.03, {}),
    ("deadline", 0.02, {}),
    ("throttle", 0.07, {}),
    ("internal", 0.03, {}),
    ("latency", 0.08, {"latency_seconds": 0.3}),
    ("latency", 0.04, {"latency_seconds": REQUEST_TIMEOUT * 1.5}),
]
#: The chance that a call is hit by one of them: 1 - product(1 - p), 30.3%.
RANDOM_FAULT_RATE = 1 - math.prod(1 - probability for _, probability, _ in RANDOM_FAULTS)
#: The first starts are applied and then lose their reply, whatever the random rules do.
FORCED_LOST_STARTS = 5


def inject_faults(emulator: Any) -> None:
    """About 30% of all calls hit: transport errors, throttling and latency spikes.

    Rules are tried in order and at most one fires per call, so the total is 1 - product(1 - p).
    Besides the random ones, the first five starts are applied and then lose their reply: the case that
    starts a run twice unless the client checks before retrying.
    """
    faults = emulator.faults
    faults.seed(20261121)
    faults.add(kind="unavailable_after", method="PostPipelineVersionRuns", count=FORCED_LOST_STARTS)
    for kind, probability, extra in RANDOM_FAULTS:
        faults.add(kind=kind, probability=probability, **extra)


def assert_about_thirty_percent_faulted(emulator: Any) -> None:
    """The random rules hit 30.3% of the calls other than the five forced lost starts, in expectation.

    How many calls there are varies from run to run (retries, reads that come on a timer), and with it
    how far chance can take the fraction. So the bound is 4.5 standard deviations of the binomial for the
    calls actually made: chance alone crosses it about once in 150,000 runs, and a test injecting under
    half the faults it claims fails from 200 calls on, as both tests make (at 200 calls chance allows 29
    faults either side of the expected 61).
    """
    records = emulator.requests.snapshot()
    calls = len(records) - FORCED_LOST_STARTS
    random_faults = sum(record.fault is not None for record in records) - FORCED_LOST_STARTS
    expected = RANDOM_FAULT_RATE * calls
    allowed = 4.5 * math.sqrt(RANDOM_FAULT_RATE * (1 - RANDOM_FAULT_RATE) * calls)
    assert abs(random_faults - expected) <= allowed, (
        f"{random_faults} of {calls} calls hit by a random fault; expected {expected:.0f} ± {allowed:.0f}"
    )


def version_for(index: int) -> str:
    return "v-fails" if index % FAILS_EVERY == 0 else "v-ok"


def expected_status(version: str) -> str:
    return "JOB_FAILED" if version == "v-fails" else "JOB_COMPLETED"


@pytest.fixture
def clarifai_connection_extra() -> dict[str, Any]:
    """The shared ``emulator``'s connection (tests/conftest.py), with this module's per-call deadline and
    no request budget: the faults throttle at random, which would slow the budget to its floor and
    turn a test of fault tolerance into a test of patience (the budget has tests of its own)."""
    return {"timeout": REQUEST_TIMEOUT, "requests_per_second": 0}


@pytest.fixture
def restart_midway(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Restart the emulator once, when a given number of run reads has been served.

    Until then its (manual) clock stands still, so no run can end before the restart, however fast or
    slow the machine, and the reads go on until the count is reached. After the restart every run read
    the emulator answers moves the clock on by ``step`` emulated seconds: a run lives a number of reads.

    Yields a function ``arm(after_reads, step)``; the test then checks ``emulator.restarts == 1``.
    """
    stop = threading.Event()
    threads: list[threading.Thread] = []
    steps: list[float] = []
    read = emulator.backend.get_run

    def read_and_move_the_clock(caller: str, ref: Any, run_id: str) -> Any:
        if emulator.restarts and steps:
            emulator.clock.advance(steps[0])
        return read(caller, ref, run_id)

    monkeypatch.setattr(emulator.backend, "get_run", read_and_move_the_clock)

    def arm(after_reads: int, step: float) -> None:
        steps.append(step)

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
        # A guard, not a limit: a restart takes the downtime and a fraction of a second.
        thread.join(timeout=60)
        assert not thread.is_alive(), "the restart did not finish"


def assert_each_run_started_once(emulator: Any, expected: dict[str, str]) -> None:
    """Exactly the expected runs exist, each on its version: no run was started twice or lost."""
    for version in ("v-ok", "v-fails"):
        ids = sorted(run.id for run in emulator.backend.runs(USER, APP, PIPELINE, version))
        assert ids == sorted(run_id for run_id, where in expected.items() if where == version)


@pytest.mark.clarifai_scenario(SCENARIO)
def test_hundred_runs_started_and_watched_at_once_through_faults_and_a_restart(
    emulator: Any, restart_midway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each trigger reads its own run here: the emulator's clock moves per run read (the shared
    # watcher's listings under faults are tested in tests/triggers/test_shared_polls.py).
    monkeypatch.setattr(ClarifaiPipelineRunTrigger, "share_polls", False)
    inject_faults(emulator)
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
            # The restart comes while the triggers watch: two reads per run after the starts' own. The
            # runs need about 600 more reads after it to end (60 emulated seconds, 0.1 s a read).
            reads = emulator.requests.count("GetPipelineVersionRun")
            restart_midway(after_reads=reads + RUNS * 2, step=0.1)
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
@pytest.mark.clarifai_scenario(SHORT_SCENARIO)
def test_mapped_run_tasks_in_airflow_survive_faults_and_a_restart(
    emulator: Any, restart_midway: Any, dag_folder: Any
) -> None:
    inject_faults(emulator)
    # The first task's run cannot end before the restart, so its trigger reads it until the restart, which
    # therefore hits the trigger's reads, never a task's own calls. Then a run ends after about ten reads
    # (10 emulated seconds, 1 s a read).
    restart_midway(after_reads=TASKS * 2, step=1.0)
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
