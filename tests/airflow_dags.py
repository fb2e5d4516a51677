"""Run DAGs in a real Airflow for tests: a real metadata DB (SQLite, migrated once) and ``dag.test()``.

Airflow 3 runs ``dag.test()`` only for DAGs it can find in its DAG bundle, so each test writes its DAG
file into a folder of its own, points ``[core] dags_folder`` there, and loads the DAG from that file:
exactly what a user's DAG test does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

AIRFLOW_3 = int(AIRFLOW_VERSION.split(".")[0]) >= 3


def migrate_metadata_db() -> None:
    """Create the metadata DB in $AIRFLOW_HOME with Airflow's own CLI."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())


@dataclass
class DagTestResult:
    """What a ``dag.test()`` produced."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom a task pushed in this run (``None`` when there is none)."""
        from airflow.utils.session import create_session

        try:
            from airflow.models.xcom import XComModel as XComRow  # Airflow 3
        except ImportError:
            from airflow.models.xcom import BaseXCom as XComRow  # Airflow 2

        with create_session() as session:
            row = (
                session.query(XComRow)
                .filter_by(
                    dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, key=key, map_index=map_index
                )
                .one_or_none()
            )
            if row is None:
                return None
            # Airflow 3 stores JSON text; Airflow 2's model hands back the value already deserialized.
            return XComRow.deserialize_value(row) if AIRFLOW_3 else row.value

    def trigger_kwargs_rows(self) -> list[Any]:
        """Every trigger row left in the metadata DB (kwargs as stored)."""
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session

        with create_session() as session:
            return [row.kwargs for row in session.query(Trigger).all()]


def write_dag(folder: Path, source: str, name: str = "dag_under_test.py") -> Path:
    """Write a DAG file (dedented) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def load_dag(path: Path, dag_id: str) -> Any:
    """Import the DAG file as Airflow would and return the DAG named ``dag_id``."""
    module_name = f"clarifai_test_dag_{abs(hash((str(path), dag_id)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for value in vars(module).values():
        if getattr(value, "dag_id", None) == dag_id and hasattr(value, "test"):
            return value
    raise LookupError(f"{path} defines no DAG {dag_id!r}")


def use_dags_folder(folder: Path) -> None:
    """Point Airflow at ``folder``: the config (read by new processes and Airflow 3's bundles) and
    ``airflow.settings.DAGS_FOLDER``, which Airflow fixed when it was imported."""
    import airflow.settings

    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    airflow.settings.DAGS_FOLDER = str(folder)


def run_dag_test(path: Path, dag_id: str, **test_kwargs: Any) -> DagTestResult:
    """``dag.test()`` the DAG ``dag_id`` of the file at ``path``; the file's folder is the DAG folder."""
    use_dags_folder(path.parent)
    dag = load_dag(path, dag_id)
    dag_run = dag.test(**test_kwargs)
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        fresh = session.query(DagRun).filter_by(dag_id=dag_id, run_id=dag_run.run_id).one()
        states = {
            ti.task_id: (str(ti.state) if ti.state else None)
            for ti in fresh.get_task_instances(session=session)
        }
        return DagTestResult(dag_id, fresh.run_id, str(fresh.state), states)
