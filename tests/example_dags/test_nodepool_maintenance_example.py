"""The nodepool maintenance example, and the drained sensor in each mode, with ``dag.test()`` in a real
Airflow against the emulator over gRPC.

The emulator's clock stands still until the test moves it: a thread moves it once the DAG has done the
step before the wait (the queued run was paused, or the sensors looked), so the running runs end while
the drained sensor waits, whatever the machine's speed. Nothing sleeps and hopes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.airflow_dags import run_dag_test, write_dag
from tests.example_dags.conftest import EXAMPLE_DAGS
from tests.operators.test_run_status_operators import DAG_HEADER, failures

pytestmark = [pytest.mark.e2e]

TOKEN = "emulator-pat-0123456789"
GPU, CPU = "demo-cluster/gpu-a100", "demo-cluster/cpu-small"


def run(run_id: str, status: str, nodepool: str, running_seconds: float | None = None) -> dict:
    script = {"queued_seconds": None, "running_seconds": running_seconds, "outcome": "JOB_COMPLETED"}
    return {"id": run_id, "status": status, "nodepool": nodepool, "script": script}


SCENARIO = {
    "tokens": [{"token": TOKEN, "user_id": "demo-user"}],
    "users": [
        {
            "id": "demo-user",
            "compute_clusters": [
                {"id": "demo-cluster", "nodepools": [{"id": "gpu-a100"}, {"id": "cpu-small"}]}
            ],
            "apps": [
                {
                    "id": "pipelines-app",
                    "pipelines": [
                        {
                            "id": "nightly-training",
                            "versions": [
                                {
                                    "id": "v1",
                                    "runs": [
                                        run("ends-soon", "JOB_RUNNING", GPU, 200),
                                        run("waiting", "JOB_QUEUED", GPU),
                                        run("paused-before", "JOB_PAUSED", GPU),
                                        run("on-cpu", "JOB_RUNNING", CPU),
                                    ],
                                }
                            ],
                        }
                    ],
                },
                {
                    "id": "research-app",
                    "pipelines": [
                        {
                            "id": "explore",
                            "versions": [
                                {"id": "v1", "runs": [run("explore-ends", "JOB_RUNNING", GPU, 300)]}
                            ],
                        }
                    ],
                },
            ],
        }
    ],
}
WHERE = {
    "ends-soon": ("pipelines-app", "nightly-training", "v1"),
    "waiting": ("pipelines-app", "nightly-training", "v1"),
    "paused-before": ("pipelines-app", "nightly-training", "v1"),
    "on-cpu": ("pipelines-app", "nightly-training", "v1"),
    "explore-ends": ("research-app", "explore", "v1"),
}


@contextmanager
def advance_when(emulator, ready: Callable[[], bool], seconds: float) -> Iterator[None]:
    """Move the emulator's clock by ``seconds`` once ``ready()`` holds (looked at every 50 ms; a guard
    of 120 s against a hang)."""
    done = threading.Event()

    def watch() -> None:
        give_up = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < give_up:
            if ready():
                emulator.advance(seconds)
                return
            done.wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def states(emulator) -> dict[str, str]:
    return {run_id: emulator.backend.run_status("demo-user", *WHERE[run_id], run_id) for run_id in WHERE}


@pytest.mark.usefixtures("example_dags")
@pytest.mark.clarifai_scenario(SCENARIO)
def test_the_nodepool_window_drains_pauses_and_resumes_exactly_what_it_paused(
    clarifai_emulator, clarifai_connection
):
    patched = lambda: clarifai_emulator.requests.count("PatchPipelineVersionRuns") >= 1  # noqa: E731
    with advance_when(clarifai_emulator, patched, 400):
        result = run_dag_test(
            EXAMPLE_DAGS / "example_clarifai_nodepool_maintenance.py",
            "example_clarifai_nodepool_maintenance",
            run_conf={"window_seconds": 1},
        )

    assert set(result.task_states.values()) == {"success"}, result.task_states
    preview = result.xcom("preview_window")
    assert sorted(r["run_id"] for r in preview) == ["ends-soon", "explore-ends", "waiting"]
    assert {r["outcome"] for r in preview} == {"would_change"}
    assert [r["run_id"] for r in result.xcom("hold_queued", key="changed_runs")] == ["waiting"]
    # Both running runs ended on their own while the sensor waited for the drain: nothing left to pause.
    assert result.xcom("pause_running") == []
    resumed = result.xcom("resume_paused_runs")
    assert [(r["run_id"], r["state_before"], r["outcome"]) for r in resumed] == [
        ("waiting", "JOB_PAUSED", "changed")
    ]
    after = states(clarifai_emulator)
    assert after["paused-before"] == "JOB_PAUSED"  # paused before the window: left alone
    assert after["on-cpu"] == "JOB_RUNNING"  # another nodepool: never touched
    assert after["ends-soon"] == after["explore-ends"] == "JOB_COMPLETED"
    assert after["waiting"] in ("JOB_RUNNING", "JOB_QUEUED")


DRAINED_DAG = """
from airflow_provider_clarifai.sensors.drained import ClarifaiDrainedSensor

NODEPOOL = dict(scope="nodepool", user_id="demo-user", compute_cluster_id="demo-cluster")
with DAG("drained_modes", schedule=None, default_args=DEFAULTS) as dag:
    ClarifaiDrainedSensor(
        task_id="poke", drained_of=["RUNNING"], nodepool_id="gpu-a100", poke_interval=0.2, timeout=120,
        **NODEPOOL,
    )
    ClarifaiDrainedSensor(
        task_id="reschedule", drained_of=["RUNNING"], nodepool_id="gpu-a100", mode="reschedule",
        poke_interval=0.2, timeout=120, **NODEPOOL
    )
    ClarifaiDrainedSensor(
        task_id="app_scope", drained_of=["RUNNING"], scope="app", user_id="demo-user", app_id="research-app",
        deferrable=True, poke_interval=0.2, timeout=120,
    )
    ClarifaiDrainedSensor(
        task_id="never_drains", drained_of=["RUNNING"], nodepool_id="cpu-small", deferrable=True,
        poke_interval=0.2, timeout=1, soft_fail=True, **NODEPOOL
    )
    ClarifaiDrainedSensor(
        task_id="unknown_nodepool", drained_of=["RUNNING"], nodepool_id="gpu-h100", poke_interval=0.2,
        timeout=120, **NODEPOOL
    )
"""


@pytest.mark.clarifai_scenario(SCENARIO)
def test_the_drained_sensor_in_each_mode(dag_folder, clarifai_emulator, clarifai_connection):
    path = write_dag(dag_folder, DAG_HEADER + DRAINED_DAG)
    # The runs on gpu-a100 end once the first sensor has looked and found them still running.
    looked = lambda: clarifai_emulator.requests.count("ListPipelineVersionRuns") >= 1  # noqa: E731
    with advance_when(clarifai_emulator, looked, 400):
        result = run_dag_test(path, "drained_modes")

    assert result.task_states == {
        "poke": "success",
        "reschedule": "success",
        "app_scope": "success",
        "never_drains": "skipped",  # on-cpu runs forever: timed out, soft_fail
        "unknown_nodepool": "failed",
    }
    failed = failures(dag_folder)
    assert failed["unknown_nodepool"]["type"] == "ClarifaiNotFoundError"
    assert "gpu-h100" in failed["unknown_nodepool"]["message"]
    assert states(clarifai_emulator)["on-cpu"] == "JOB_RUNNING"
