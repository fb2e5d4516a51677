"""Run DAGs with ``dag.test()`` in subprocesses of their own, at the same time.

``dag.test()`` runs one DAG's tasks one after another in the calling process, so two tasks can only act
at the same time if two processes run them. Each process gets an Airflow home of its own: a copy of the
test session's migrated metadata DB (copying takes milliseconds; migrating takes 10-20 s), its own DAG
folder holding the one DAG file, and the environment the test passes (the connection to the emulator).

The parent starts the processes with :func:`start_dag_process` and collects each one with
:meth:`DagProcess.finish`; the child half is this module run as ``python -m``, which runs ``dag.test()``
and writes what it saw (task states, XComs, recorded task failures, and any exception ``dag.test()``
itself raised) as JSON.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The XCom keys the child reads for every task.
XCOM_KEYS = ("return_value", "run_outcomes", "changed_run_ids")


def session_metadata_db() -> Path:
    """The SQLite file of this process's Airflow metadata DB (the one the ``airflow_db`` fixture migrated)."""
    from airflow.configuration import conf
    from sqlalchemy.engine import make_url

    url = make_url(conf.get("database", "sql_alchemy_conn"))
    if url.get_backend_name() != "sqlite" or not url.database:
        raise RuntimeError(f"the tests' metadata DB is not a SQLite file: {url!r}")
    return Path(url.database)


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite DB consistently (through SQLite's backup API, even if ``source`` is open)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@dataclass
class DagProcess:
    """One ``dag.test()`` running in a subprocess."""

    name: str
    home: Path
    dag_id: str
    process: subprocess.Popen[bytes]
    result_path: Path
    output_path: Path

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the process and return its result: the child's JSON plus ``returncode`` and ``output``.

        :param timeout: seconds to wait; the process is killed after that (``returncode`` then says so).
        """
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        result: dict[str, Any] = {"error": "the process wrote no result", "tasks": {}, "failures": []}
        if self.result_path.exists():
            result = json.loads(self.result_path.read_text())
        result["returncode"] = self.process.returncode
        result["output"] = self.output_path.read_text(errors="replace")
        return result

    def kill(self) -> None:
        """Kill the process if it is still running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_dag_process(
    name: str, home: Path, dag_source: str, dag_id: str, env: dict[str, str], *, metadata_db: Path
) -> DagProcess:
    """Start ``dag.test()`` of ``dag_id`` in a new process with an Airflow home of its own.

    :param name: a label for messages.
    :param home: an empty folder for the process's Airflow home.
    :param dag_source: the DAG file's code (dedented here).
    :param dag_id: the DAG to test.
    :param env: extra environment variables (for example the ``AIRFLOW_CONN_...`` of the emulator).
    :param metadata_db: the migrated SQLite DB to copy.
    """
    dags = home / "dags"
    dags.mkdir(parents=True)
    dag_file = dags / f"{dag_id}.py"
    dag_file.write_text(textwrap.dedent(dag_source))
    db = home / "airflow.db"
    copy_sqlite(metadata_db, db)
    child_env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    result_path = home / "result.json"
    output_path = home / "output.txt"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(dag_file), dag_id, str(result_path)],
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return DagProcess(name, home, dag_id, process, result_path, output_path)


def _child(dag_file: Path, dag_id: str, result_path: Path) -> None:
    """Run ``dag.test()`` and write what happened; an exception of ``dag.test()`` is recorded, not raised.

    The result: the DAG run's ``state``; per task its ``state`` and XComs (:data:`XCOM_KEYS`);
    ``failures``, what the DAG's failure callback wrote to ``failures.jsonl`` beside the DAG file (see
    ``tests.sensors.RECORD_FAILURES``); ``error``, the traceback if ``dag.test()`` itself raised.
    """
    result: dict[str, Any] = {"dag_id": dag_id, "error": None, "state": None, "tasks": {}, "failures": []}
    try:
        from tests.airflow_dags import run_dag_test

        run = run_dag_test(dag_file, dag_id)
        result["state"] = run.state
        for task_id, state in run.task_states.items():
            task: dict[str, Any] = {"state": state}
            for key in XCOM_KEYS:
                task[key] = run.xcom(task_id, key=key)
            result["tasks"][task_id] = task
    except BaseException:  # Reported to the parent, which fails the test with it.
        result["error"] = traceback.format_exc()
    recorded = dag_file.with_name("failures.jsonl")
    if recorded.exists():
        result["failures"] = [json.loads(line) for line in recorded.read_text().splitlines()]
    result_path.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
