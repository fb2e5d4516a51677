"""Shared test set-up: a private Airflow home, so tests never touch a user's ~/airflow."""

from __future__ import annotations

import os
import tempfile

# Must happen before anything imports airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="clarifai-provider-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB (SQLite in the private Airflow home), made once per test session."""
    from tests.airflow_dags import migrate_metadata_db

    migrate_metadata_db()


@pytest.fixture
def dag_folder(tmp_path, monkeypatch, airflow_db):
    """An empty DAG folder for one test; Airflow's dags_folder points at it during the test."""
    import airflow.settings

    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    return folder
