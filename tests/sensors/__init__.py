"""Tests of ClarifaiPipelineRunSensor, and helpers the run operator's and example DAGs' tests share."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_dags import AIRFLOW_3, DagTestResult, load_dag

#: DAG-file code that records every failure and retry of a task (exception class and message) in
#: ``failures.jsonl`` beside the DAG file; use ``default_args={"on_failure_callback": record_failure,
#: "on_retry_callback": record_failure}``. ``dag.test`` runs these callbacks on Airflow 2.11 and 3.
RECORD_FAILURES = """
import json as _json
from pathlib import Path as _Path


def record_failure(context):
    error = context.get("exception")
    record = {"task_id": context["ti"].task_id, "error": type(error).__name__, "message": str(error)}
    with _Path(__file__).with_name("failures.jsonl").open("a") as out:
        out.write(_json.dumps(record) + "\\n")
"""


def failures(folder: Path) -> list[dict[str, str]]:
    """The failures :data:`RECORD_FAILURES` recorded in ``folder``, in order."""
    path = folder / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class DagTestOutcome(DagTestResult):
    """A ``dag.test()`` result with each task's last try number."""

    tries: dict[str, int] = field(default_factory=dict)


def dag_test(path: Path, dag_id: str, *, prepare: Any = None, **test_kwargs: Any) -> DagTestOutcome:
    """Like ``tests.airflow_dags.run_dag_test``, with a hook on the loaded DAG and each task's tries.

    The file's folder is Airflow's DAG folder while the DAG runs (both the config and
    ``airflow.settings.DAGS_FOLDER``, which Airflow fixes when it is imported); both are restored after.

    :param prepare: called with the loaded DAG before it runs (to shorten a timeout, for example).
    """
    import airflow.settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    saved_env = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    saved_folder = airflow.settings.DAGS_FOLDER
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = airflow.settings.DAGS_FOLDER = str(path.parent)
    try:
        dag = load_dag(path, dag_id)
        if prepare is not None:
            prepare(dag)
        run_id = dag.test(**test_kwargs).run_id
    finally:
        airflow.settings.DAGS_FOLDER = saved_folder
        if saved_env is None:
            os.environ.pop("AIRFLOW__CORE__DAGS_FOLDER", None)
        else:
            os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = saved_env
    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        states = {row.task_id: (str(row.state) if row.state else None) for row in rows}
        tries = {row.task_id: row.try_number for row in rows}
        dag_state = session.query(DagRun.state).filter_by(dag_id=dag_id, run_id=run_id).scalar()
    return DagTestOutcome(dag_id, run_id, str(dag_state), states, tries)


class FakeTaskInstance:
    """The part of a task instance the sensor and the operator use, for direct ``execute`` calls."""

    def __init__(self, **attributes: Any) -> None:
        self.pushed: dict[str, Any] = {}
        self.__dict__.update(attributes)

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.pushed[key] = value


def unit_dag() -> Any:
    """A DAG to construct tasks in for direct ``execute`` calls (a task outside a DAG cannot run)."""
    import pendulum
    from airflow.providers.common.compat.sdk import DAG

    return DAG(dag_id="clarifai_unit", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))


def defer(task: Any, context: dict[str, Any]) -> Any:
    """Run ``task.execute`` until it defers; return the ``TaskDeferred``."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    return deferred.value


def task_log_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """What the tasks and triggers logged, each record once.

    Airflow 3 logs through structlog to stdout. Airflow 2 logs through ``logging``, which caplog sees
    once per record, while its ``dag.test`` also echoes task logs on stdout, a second time.
    """
    stdout = capsys.readouterr().out
    return stdout if AIRFLOW_3 else caplog.text
