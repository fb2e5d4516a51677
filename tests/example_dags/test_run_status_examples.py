"""The pause/resume/cancel example DAGs, run with ``dag.test()`` against the emulator's default scenario."""

from __future__ import annotations

import pytest

from tests.airflow_dags import run_dag_test
from tests.example_dags.conftest import EXAMPLE_DAGS

VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")


pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("example_dags")]


def states(emulator, *run_ids: str) -> dict[str, str]:
    return {run_id: emulator.backend.run_status(*VERSION, run_id) for run_id in run_ids}


def test_maintenance_window_resumes_exactly_what_it_paused(clarifai_emulator, clarifai_connection):
    result = run_dag_test(
        EXAMPLE_DAGS / "example_clarifai_maintenance_window.py",
        "example_clarifai_maintenance_window",
        run_conf={"window_seconds": 1},
    )

    assert result.task_states == {
        "pause_active_runs": "success",
        "wait_for_window_end": "success",
        "resume_paused_runs": "success",
    }
    paused = result.xcom("pause_active_runs", key="changed_run_ids")
    assert sorted(paused) == ["run-forever", "run-queued", "run-running"]
    records = result.xcom("pause_active_runs")
    assert {record["run_id"]: record["state_before"] for record in records} == {
        "run-queued": "JOB_QUEUED",
        "run-running": "JOB_RUNNING",
        "run-forever": "JOB_RUNNING",
    }
    assert {record["outcome"] for record in records} == {"changed"}
    assert {record["state_after"] for record in records} == {"JOB_PAUSED"}
    resumed = result.xcom("resume_paused_runs")
    assert [record["run_id"] for record in resumed] == paused
    assert {(record["state_before"], record["outcome"]) for record in resumed} == {("JOB_PAUSED", "changed")}
    # The run that was paused before the window stays paused; the paused ones run again.
    assert states(clarifai_emulator, "run-paused", "run-queued", "run-running", "run-forever") == {
        "run-paused": "JOB_PAUSED",
        "run-queued": "JOB_RUNNING",
        "run-running": "JOB_RUNNING",
        "run-forever": "JOB_RUNNING",
    }
    assert clarifai_emulator.requests.count("PatchPipelineVersionRuns") == 2


def test_cancel_running_cancels_given_and_running_runs(clarifai_emulator, clarifai_connection):
    result = run_dag_test(
        EXAMPLE_DAGS / "example_clarifai_cancel_running.py",
        "example_clarifai_cancel_running",
        run_conf={"run_ids": ["run-paused", "run-completed"]},
    )

    assert result.task_states == {"cancel_given_runs": "success", "cancel_running_runs": "success"}
    given = {record["run_id"]: record for record in result.xcom("cancel_given_runs")}
    assert (given["run-paused"]["outcome"], given["run-paused"]["state_after"]) == (
        "changed",
        "JOB_CANCELLED",
    )
    assert given["run-completed"]["outcome"] == "skipped"
    assert "cancel is allowed from" in given["run-completed"]["message"]
    running = result.xcom("cancel_running_runs")
    assert sorted(record["run_id"] for record in running) == ["run-forever", "run-running"]
    assert {record["state_after"] for record in running} == {"JOB_CANCELLED"}
    assert sorted(result.xcom("cancel_running_runs", key="changed_run_ids")) == ["run-forever", "run-running"]
    assert states(
        clarifai_emulator, "run-paused", "run-completed", "run-running", "run-forever", "run-queued"
    ) == {
        "run-paused": "JOB_CANCELLED",
        "run-completed": "JOB_COMPLETED",
        "run-running": "JOB_CANCELLED",
        "run-forever": "JOB_CANCELLED",
        "run-queued": "JOB_QUEUED",
    }


def test_cancel_running_cancels_what_it_can_and_reports_an_unknown_id(clarifai_emulator, clarifai_connection):
    result = run_dag_test(
        EXAMPLE_DAGS / "example_clarifai_cancel_running.py",
        "example_clarifai_cancel_running",
        run_conf={"run_ids": ["run-paused", "no-such-run"]},
    )

    # The unknown id fails the first task, after it cancelled the run it could; the second still runs.
    assert result.task_states == {"cancel_given_runs": "failed", "cancel_running_runs": "success"}
    outcomes = {record["run_id"]: record for record in result.xcom("cancel_given_runs", key="run_outcomes")}
    assert (outcomes["run-paused"]["outcome"], outcomes["run-paused"]["state_after"]) == (
        "changed",
        "JOB_CANCELLED",
    )
    assert outcomes["no-such-run"]["outcome"] == "not_found"
    assert result.xcom("cancel_given_runs", key="changed_run_ids") == ["run-paused"]
    assert sorted(result.xcom("cancel_running_runs", key="changed_run_ids")) == ["run-forever", "run-running"]
    assert states(clarifai_emulator, "run-paused", "run-running", "run-forever") == {
        "run-paused": "JOB_CANCELLED",
        "run-running": "JOB_CANCELLED",
        "run-forever": "JOB_CANCELLED",
    }


def test_cancel_running_without_run_ids_only_cancels_running_runs(clarifai_emulator, clarifai_connection):
    result = run_dag_test(
        EXAMPLE_DAGS / "example_clarifai_cancel_running.py", "example_clarifai_cancel_running"
    )

    assert result.task_states == {"cancel_given_runs": "success", "cancel_running_runs": "success"}
    assert result.xcom("cancel_given_runs") == []
    assert states(clarifai_emulator, "run-paused", "run-running") == {
        "run-paused": "JOB_PAUSED",
        "run-running": "JOB_CANCELLED",
    }
