"""Every example DAG is safe to unpause and says what it does and what it needs."""

from __future__ import annotations

import pytest

from tests.airflow_dags import AIRFLOW_3, load_dag
from tests.example_dags.conftest import EXAMPLE_DAGS

ALL_EXAMPLES = sorted(path.stem for path in EXAMPLE_DAGS.glob("example_clarifai_*.py"))
#: Scheduled on an asset that a Clarifai event trigger watches: Airflow 3 only, started by run ends.
EVENT_DRIVEN = "example_clarifai_on_run_completed"
EXAMPLES = [name for name in ALL_EXAMPLES if AIRFLOW_3 or name != EVENT_DRIVEN]
TRIGGERED_ONLY = [name for name in EXAMPLES if name != EVENT_DRIVEN]


def test_the_examples_are_all_here():
    assert ALL_EXAMPLES == [
        "example_clarifai_cancel_running",
        "example_clarifai_gating",
        "example_clarifai_maintenance_window",
        "example_clarifai_nodepool_maintenance",
        "example_clarifai_on_run_completed",
        "example_clarifai_start_and_monitor",
    ]


@pytest.mark.skipif(not AIRFLOW_3, reason="asset watchers are Airflow 3")
def test_the_event_driven_example_is_scheduled_on_its_watched_asset():
    dag = load_dag(EXAMPLE_DAGS / f"{EVENT_DRIVEN}.py", EVENT_DRIVEN)
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable", dag.timetable
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath.endswith("ClarifaiPipelineRunEventTrigger")
    assert (kwargs["pipeline_id"], kwargs["pipeline_version_id"], kwargs["states"]) == (
        "nightly-training",
        "v1",
        ["JOB_COMPLETED"],
    )


@pytest.mark.skipif(AIRFLOW_3, reason="Airflow 2 has no asset watchers")
def test_the_event_driven_example_says_it_needs_airflow_3():
    with pytest.raises(ImportError, match="needs Airflow 3 asset watchers"):
        import airflow_provider_clarifai.triggers.events  # noqa: F401


@pytest.mark.parametrize("dag_id", TRIGGERED_ONLY)
def test_an_example_runs_only_when_triggered(dag_id):
    dag = load_dag(EXAMPLE_DAGS / f"{dag_id}.py", dag_id)
    # No schedule: unpausing an example in the UI starts nothing (no pause, cancel or start on its own).
    assert type(dag.timetable).__name__ == "NullTimetable", dag.timetable


@pytest.mark.parametrize("dag_id", EXAMPLES)
def test_an_example_documents_itself(dag_id):
    dag = load_dag(EXAMPLE_DAGS / f"{dag_id}.py", dag_id)
    doc = dag.doc_md or ""
    for heading in ("**What it does.**", "**Safe to unpause.**", "**What it needs.**"):
        assert heading in doc, f"{dag_id}'s doc_md has no {heading}"
    assert "clarifai_default" in doc
