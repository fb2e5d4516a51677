"""The gating and start-and-monitor example DAGs, run with ``dag.test()`` against the emulator.

The emulator's clock runs 50 times faster than real time, so the default scenario's runs (a minute or
so of emulated time) finish within seconds. The examples' production intervals (30 s, 60 s between
reads) are shortened on the loaded DAG, never in the file.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat import RUN_TIMES_REPORTED
from tests.sensors import dag_test

pytestmark = [pytest.mark.e2e, pytest.mark.clarifai_scenario(time_scale=50)]

VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")


def poll_fast(*task_ids: str, timeout: float | None = None) -> Any:
    """A ``prepare`` for :func:`dag_test`: read every 0.1 s (and time out after ``timeout`` s)."""

    def prepare(dag: Any) -> None:
        for task_id in task_ids:
            sensor = dag.get_task(task_id)
            sensor.poke_interval = 0.1
            if timeout is not None:
                sensor.timeout = timeout

    return prepare


def test_gating_runs_downstream_tasks_after_the_run_completes(emulator, example_dags):
    result = dag_test(
        example_dags / "example_clarifai_gating.py",
        "example_clarifai_gating",
        prepare=poll_fast("wait_for_training"),
    )

    assert result.task_states == {
        "wait_for_training": "success",
        "publish_model": "success",
        "refresh_dashboards": "success",
    }
    # The default run id exists in the emulator's default scenario.
    assert emulator.backend.run_status(*VERSION, "run-queued") == "JOB_COMPLETED"
    summary = result.xcom("wait_for_training")
    assert (summary["run_id"], summary["status"]) == ("run-queued", "JOB_COMPLETED")
    ran = 60.0 if RUN_TIMES_REPORTED else None
    assert result.xcom("publish_model").startswith(
        f"Publishing the model of run run-queued, which ran {ran} s"
    )


@pytest.mark.parametrize("run_id", ["run-failed", "run-cancelled"])
def test_gating_stops_at_once_when_the_run_failed_or_was_cancelled(run_id, emulator, example_dags):
    result = dag_test(
        example_dags / "example_clarifai_gating.py",
        "example_clarifai_gating",
        run_conf={"pipeline_version_run_id": run_id},
    )

    assert result.task_states == {
        "wait_for_training": "failed",
        "publish_model": "upstream_failed",
        "refresh_dashboards": "upstream_failed",
    }
    # One look at the run was enough: the sensor did not defer, poll, or wait for its timeout.
    assert emulator.requests.count("GetPipelineVersionRun") == 1


def test_start_and_monitor_starts_with_the_overrides_and_waits_deferred(emulator, example_dags):
    result = dag_test(
        example_dags / "example_clarifai_start_and_monitor.py",
        "example_clarifai_start_and_monitor",
        prepare=poll_fast("wait_for_training"),
        run_conf={"learning_rate": "0.005", "epochs": "3"},
    )

    assert result.task_states == {
        "start_training": "success",
        "wait_for_training": "success",
        "report": "success",
    }
    run_id = result.xcom("start_training", key="pipeline_version_run_id")
    run = emulator.backend.run(*VERSION, run_id)
    assert str(run.state) == "JOB_COMPLETED"
    assert dict(run.input_args) == {"learning_rate": "0.005", "epochs": "3"}
    assert emulator.requests.count("PostPipelineVersionRuns") == 1
    assert result.xcom("wait_for_training")["status"] == "JOB_COMPLETED"
    ran = 30.0 if RUN_TIMES_REPORTED else None
    assert result.xcom("report") == f"Run {run_id} is JOB_COMPLETED after {ran} s."


def test_start_and_monitor_cancels_the_run_when_the_wait_times_out(emulator, example_dags):
    # Runs posted from now on never end by themselves; the wait times out after 1 s instead of 2 h.
    emulator.backend.set_post_script(*VERSION, {"queued_seconds": 1, "running_seconds": None})

    result = dag_test(
        example_dags / "example_clarifai_start_and_monitor.py",
        "example_clarifai_start_and_monitor",
        prepare=poll_fast("wait_for_training", timeout=1),
    )

    assert result.task_states == {
        "start_training": "success",
        "wait_for_training": "failed",
        "report": "upstream_failed",
    }
    run_id = result.xcom("start_training", key="pipeline_version_run_id")
    assert emulator.backend.run_status(*VERSION, run_id) == "JOB_CANCELLED"
