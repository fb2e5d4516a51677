"""Pause, resume and cancel beyond one pipeline version: a whole pipeline, an app, a nodepool; the age
filter; dry runs; and bad selections, each refused before any change, at a bounded cost.

Real ``dag.test()`` DAG runs against the emulator over gRPC. The emulator's clock stands still (runs do
not move on their own) except where a test moves it to age the runs.
"""

from __future__ import annotations

import time

import pytest

from tests.airflow_dags import run_dag_test, write_dag
from tests.operators.test_run_status_operators import DAG_HEADER, failures

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TOKEN = "emulator-pat-0123456789"
GPU, CPU = "demo-cluster/gpu-a100", "demo-cluster/cpu-small"


def run(run_id: str, status: str, nodepool: str) -> dict:
    # Runs stay where they are put: queued ones never start, running ones never end.
    script = {"queued_seconds": None, "running_seconds": None}
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
                                        run("t1-running", "JOB_RUNNING", GPU),
                                        run("t1-queued", "JOB_QUEUED", GPU),
                                        run("t1-paused-before", "JOB_PAUSED", GPU),
                                        run("t1-on-cpu", "JOB_RUNNING", CPU),
                                    ],
                                },
                                {"id": "v2", "runs": [run("t2-running", "JOB_RUNNING", GPU)]},
                            ],
                        },
                        {
                            "id": "nightly-eval",
                            "versions": [
                                {
                                    "id": "v1",
                                    "runs": [
                                        run("e1-running", "JOB_RUNNING", GPU),
                                        run("e1-done", "JOB_COMPLETED", GPU),
                                    ],
                                }
                            ],
                        },
                    ],
                },
                {
                    "id": "research-app",
                    "pipelines": [
                        {
                            "id": "explore",
                            "versions": [
                                {
                                    "id": "v1",
                                    "runs": [
                                        run("x1-running", "JOB_RUNNING", GPU),
                                        run("x1-queued", "JOB_QUEUED", CPU),
                                    ],
                                }
                            ],
                        }
                    ],
                },
                {"id": "empty-app", "pipelines": []},
            ],
        }
    ],
}
WHERE = {
    "t1-running": ("pipelines-app", "nightly-training", "v1"),
    "t1-queued": ("pipelines-app", "nightly-training", "v1"),
    "t1-paused-before": ("pipelines-app", "nightly-training", "v1"),
    "t1-on-cpu": ("pipelines-app", "nightly-training", "v1"),
    "t2-running": ("pipelines-app", "nightly-training", "v2"),
    "e1-running": ("pipelines-app", "nightly-eval", "v1"),
    "e1-done": ("pipelines-app", "nightly-eval", "v1"),
    "x1-running": ("research-app", "explore", "v1"),
    "x1-queued": ("research-app", "explore", "v1"),
}
NODEPOOL = "user_id='demo-user', compute_cluster_id='demo-cluster', nodepool_id='gpu-a100'"


def states(emulator) -> dict[str, str]:
    return {
        run_id: emulator.backend.run_status("demo-user", *WHERE[run_id], run_id) for run_id in sorted(WHERE)
    }


def patches(emulator) -> int:
    return emulator.requests.count("PatchPipelineVersionRuns")


@pytest.mark.clarifai_scenario(SCENARIO)
def test_a_nodepool_window_pauses_every_pipeline_on_it_and_resumes_exactly_those(dag_folder, emulator):
    path = write_dag(
        dag_folder,
        DAG_HEADER
        + f"""
with DAG("nodepool_window", schedule=None, default_args=DEFAULTS) as dag:
    pause = ClarifaiPausePipelineRunOperator(
        task_id="pause", scope="nodepool", select_statuses=["QUEUED", "RUNNING"], {NODEPOOL}
    )
    resume = ClarifaiResumePipelineRunOperator(task_id="resume", run_ids=pause.output["changed_runs"])
    pause >> resume
""",
    )
    before = states(emulator)
    result = run_dag_test(path, "nodepool_window")
    after = states(emulator)

    assert result.task_states == {"pause": "success", "resume": "success"}, failures(dag_folder)
    paused = result.xcom("pause")
    # One record per run on the nodepool, across apps, pipelines and versions, each naming its version.
    assert sorted((r["run_id"], r["app_id"], r["pipeline_id"], r["pipeline_version_id"]) for r in paused) == [
        ("e1-running", "pipelines-app", "nightly-eval", "v1"),
        ("t1-queued", "pipelines-app", "nightly-training", "v1"),
        ("t1-running", "pipelines-app", "nightly-training", "v1"),
        ("t2-running", "pipelines-app", "nightly-training", "v2"),
        ("x1-running", "research-app", "explore", "v1"),
    ]
    assert {r["outcome"] for r in paused} == {"changed"}
    resumed = result.xcom("resume")
    assert sorted(r["run_id"] for r in resumed) == sorted(r["run_id"] for r in paused)
    assert {(r["state_before"], r["outcome"]) for r in resumed} == {("JOB_PAUSED", "changed")}
    # Runs on other nodepools, and the run paused before the window, were never touched.
    for run_id in ("t1-on-cpu", "x1-queued", "t1-paused-before", "e1-done"):
        assert after[run_id] == before[run_id], run_id
    # One Patch per pipeline version and task (4 versions): grouped, never one per run.
    assert patches(emulator) == 8


@pytest.mark.clarifai_scenario(SCENARIO)
def test_pipeline_and_app_scopes_with_an_age_filter_and_a_dry_run(dag_folder, emulator):
    # The age filter compares the service's times with the real clock: bring the emulator's clock, which
    # stands at its fixed start (long ago), to now. Every seeded run is then long unchanged.
    emulator.clock.set(time.time())
    emulator.add_run(
        "t1-fresh",
        "JOB_QUEUED",
        script={"queued_seconds": None},
        version="v1",
        pipeline="nightly-training",
        app="pipelines-app",
    )
    WHERE["t1-fresh"] = ("pipelines-app", "nightly-training", "v1")
    path = write_dag(
        dag_folder,
        DAG_HEADER
        + """
with DAG("scoped", schedule=None, default_args=DEFAULTS) as dag:
    preview = ClarifaiCancelPipelineRunOperator(
        task_id="preview", scope="app", user_id="demo-user", app_id="pipelines-app",
        select_statuses=["QUEUED", "RUNNING"], older_than=2 * 3600, dry_run=True,
    )
    cancel_stale = ClarifaiCancelPipelineRunOperator(
        task_id="cancel_stale", scope="pipeline", user_id="demo-user", app_id="pipelines-app",
        pipeline_id="nightly-training", select_statuses=["QUEUED"], older_than=2 * 3600,
    )
    preview >> cancel_stale
""",
    )
    try:
        before = states(emulator)
        result = run_dag_test(path, "scoped")
        after = states(emulator)
    finally:
        del WHERE["t1-fresh"]

    assert result.task_states == {"preview": "success", "cancel_stale": "success"}, failures(dag_folder)
    preview = {r["run_id"]: r for r in result.xcom("preview")}
    # Every queued or running run of the app's two pipelines older than two hours, and nothing else.
    assert sorted(preview) == ["e1-running", "t1-on-cpu", "t1-queued", "t1-running", "t2-running"]
    assert {(r["outcome"], r["state_before"], r["state_after"]) for r in preview.values()} >= {
        ("would_change", "JOB_QUEUED", "JOB_QUEUED")
    }
    assert all(r["outcome"] == "would_change" for r in preview.values())
    assert "JOB_QUEUED -> JOB_CANCELLED (dry run)" in preview["t1-queued"]["message"]
    assert result.xcom("preview", key="changed_run_ids") == []
    # The stale queued run of the pipeline is cancelled; the fresh one stays queued.
    assert [r["run_id"] for r in result.xcom("cancel_stale")] == ["t1-queued"]
    assert after["t1-queued"] == "JOB_CANCELLED" and after["t1-fresh"] == "JOB_QUEUED"
    assert {k: v for k, v in after.items() if k != "t1-queued"} == {
        k: v for k, v in before.items() if k != "t1-queued"
    }
    assert patches(emulator) == 1  # the dry run sent nothing


@pytest.mark.clarifai_scenario(SCENARIO)
def test_bad_selections_get_a_clear_answer_change_nothing_and_cost_little(dag_folder, emulator):
    path = write_dag(
        dag_folder,
        DAG_HEADER
        + f"""
with DAG("bad_scopes", schedule=None, default_args=DEFAULTS) as dag:
    ClarifaiPausePipelineRunOperator(
        task_id="unknown_nodepool", scope="nodepool", select_statuses=["RUNNING"],
        user_id="demo-user", compute_cluster_id="demo-cluster", nodepool_id="gpu-h100",
    )
    ClarifaiPausePipelineRunOperator(
        task_id="too_many", scope="nodepool", select_statuses=["RUNNING", "QUEUED"], max_runs=2, {NODEPOOL}
    )
    ClarifaiPausePipelineRunOperator(
        task_id="names_nothing", scope="app", user_id="demo-user", app_id="empty-app",
        select_statuses=["RUNNING"],
    )
""",
    )
    before = states(emulator)
    result = run_dag_test(path, "bad_scopes")
    failed = failures(dag_folder)

    assert result.task_states == {
        "unknown_nodepool": "failed",
        "too_many": "failed",
        "names_nothing": "success",
    }
    assert failed["unknown_nodepool"]["type"] == "ClarifaiNotFoundError"
    assert "gpu-h100" in failed["unknown_nodepool"]["message"]
    assert failed["too_many"]["type"] == "ClarifaiConfigurationError"
    message = failed["too_many"]["message"]
    assert "more than max_runs=2" in message and "Nothing was changed" in message
    assert result.xcom("names_nothing") == []
    assert states(emulator) == before
    assert patches(emulator) == 0
    # Bounded cost: the refused selection read one page of the nodepool's runs; the unknown nodepool
    # one request; the empty app one listing of pipelines.
    assert emulator.requests.count("ListPipelineVersionRuns") == 2
    assert emulator.requests.count("ListPipelines") == 1


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"scope": "cluster", "select_statuses": ["RUNNING"]}, "scope must be one of"),
        ({"scope": "nodepool", "run_ids": ["a"]}, "give select_statuses, not run_ids"),
        ({"select_statuses": ["RUNNING"], "max_runs": 0}, "max_runs must be"),
        ({"run_ids": ["a"], "older_than": 60}, "older_than filters a selection"),
        ({"select_statuses": ["RUNNING"], "dry_run": "yes"}, "dry_run must be"),
    ],
)
def test_contradictions_are_refused_when_the_dag_is_parsed(kwargs, phrase):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
    from airflow_provider_clarifai.operators.clarifai import ClarifaiPausePipelineRunOperator

    with pytest.raises(ClarifaiConfigurationError) as raised:
        ClarifaiPausePipelineRunOperator(task_id="t", **kwargs)
    assert phrase in str(raised.value)
