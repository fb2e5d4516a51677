from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.fixture
def example_dags(monkeypatch, airflow_db) -> Path:
    """Airflow's DAG folder is the repository's example_dags/ during the test."""
    import airflow.settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(EXAMPLE_DAGS))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(EXAMPLE_DAGS))
    return EXAMPLE_DAGS
