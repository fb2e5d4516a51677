"""Every example DAG is safe to unpause and says what it does and what it needs."""

from __future__ import annotations

import pytest

from tests.airflow_dags import load_dag
from tests.example_dags.conftest import EXAMPLE_DAGS

EXAMPLES = sorted(path.stem for path in EXAMPLE_DAGS.glob("example_clarifai_*.py"))


def test_the_examples_are_all_here():
    assert EXAMPLES == [
        "example_clarifai_cancel_running",
        "example_clarifai_gating",
        "example_clarifai_maintenance_window",
        "example_clarifai_start_and_monitor",
    ]


@pytest.mark.parametrize("dag_id", EXAMPLES)
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
