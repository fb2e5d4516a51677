"""Real Airflow processes: the triggerer dies while tasks are deferred, comes back, and the waits end
correctly, each at its original deadline.

Scheduler, triggerer, DAG processor and API server (webserver on Airflow 2) run as separate processes
with a real metadata DB; the DAG is triggered through the REST API; the emulator runs as its own
process with a real-time clock. Every process started here is stopped at the end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
from demo.local_airflow import LocalAirflow, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOKEN = "e2e-pat-0000"
SCENARIO = f"""
rate_limit_per_second: 0
tokens:
  - {{token: {TOKEN}, user_id: e2e-user}}
users:
  - id: e2e-user
    apps:
      - id: e2e-app
        pipelines:
          - id: e2e-pipeline
            versions:
              - id: v1
                post_script: {{queued_seconds: 1, running_seconds: 45, outcome: JOB_COMPLETED}}
                runs:
                  - id: run-forever
                    status: JOB_RUNNING
                    script: {{running_seconds: null}}
"""
SENSOR_TIMEOUT = 60
DAG = f"""
    import datetime
    from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator
    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor
    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG

    IDS = dict(user_id="e2e-user", app_id="e2e-app", pipeline_id="e2e-pipeline", pipeline_version_id="v1")
    with DAG("clarifai_e2e_restart", schedule=None, start_date=datetime.datetime(2025, 1, 1), catchup=False):
        ClarifaiRunPipelineOperator(task_id="start_and_wait", deferrable=True, poll_interval=2, **IDS)
        ClarifaiPipelineRunSensor(
            task_id="wait_forever", pipeline_version_run_id="run-forever", deferrable=True,
            poke_interval=2, timeout={SENSOR_TIMEOUT}, **IDS,
        )
"""


@pytest.fixture
def emulator_process(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    ready = tmp_path / "emulator.address"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", "0"),
            *("--scenario", str(scenario), "--ready-file", str(ready)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(ready.exists, 30, "the emulator")
        yield ready.read_text().strip()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


# Read trigger rows through Airflow's own model, in the installation's environment: the REST API hides
# trigger kwargs, and Airflow 2 stores them encrypted with the installation's Fernet key.
_READ_TRIGGERS = """
import json
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(Trigger).all()
    print(json.dumps([
        {"triggerer_id": row.triggerer_id, "run_id": row.kwargs.get("run_id"),
         "deadline": row.kwargs.get("deadline"),
         "stored": {"kwargs": row.kwargs, "encrypted_kwargs": row.encrypted_kwargs}}
        for row in rows if row.classpath.endswith("ClarifaiPipelineRunTrigger")
    ], default=repr))
"""

#: Every trigger row read while the test runs, as stored, for the secrets scan at its end.
TRIGGER_ROWS_SEEN: list[dict] = []


def trigger_rows(airflow: LocalAirflow) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", _READ_TRIGGERS], env=airflow.env, capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(out.strip().splitlines()[-1])
    TRIGGER_ROWS_SEEN.extend(rows)
    return rows


def triggerer_ids(airflow: LocalAirflow) -> set[int | None]:
    """Which triggerer job holds each Clarifai trigger row."""
    return {row["triggerer_id"] for row in trigger_rows(airflow)}


def trigger_deadlines(airflow: LocalAirflow) -> dict[str, float]:
    """The ``deadline`` kwarg of every Clarifai trigger row, by run id."""
    return {row["run_id"]: row["deadline"] for row in trigger_rows(airflow) if row["deadline"] is not None}


def test_deferred_waits_survive_a_triggerer_restart(tmp_path, emulator_process, monkeypatch):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "clarifai_e2e_restart.py").write_text(textwrap.dedent(DAG))
    conn = {"conn_type": "clarifai", "host": f"http://{emulator_process}", "password": TOKEN}
    env = {"AIRFLOW_CONN_CLARIFAI_DEFAULT": json.dumps(conn)}
    with LocalAirflow(tmp_path / "airflow", dags, env) as airflow:
        airflow.start_all()
        airflow.wait_for_dag("clarifai_e2e_restart")
        run_id = airflow.trigger("clarifai_e2e_restart")

        def both_deferred():
            tis = airflow.task_instances("clarifai_e2e_restart", run_id)
            return tis if all(t["state"] == "deferred" for t in tis.values()) and len(tis) == 2 else None

        wait_until(both_deferred, 180, "both tasks to defer")
        deadline_before = wait_until(
            lambda: trigger_deadlines(airflow).get("run-forever"), 60, "the sensor's trigger row"
        )
        first_triggerer = wait_until(
            lambda: triggerer_ids(airflow) - {None}, 60, "a triggerer to take the waits"
        )

        airflow.kill("triggerer", signal.SIGKILL)
        time.sleep(5)  # the triggerer stays down for a while: no assertion depends on this length
        airflow.start("triggerer")
        restarted_at = time.time()

        def deadline_once_taken_over() -> float | None:
            # One read for both, so the row cannot reach its deadline (and go) between two reads.
            rows = trigger_rows(airflow)
            owners = {row["triggerer_id"] for row in rows} - {None}
            if not owners or owners & first_triggerer:
                return None
            return next((row["deadline"] for row in rows if row["run_id"] == "run-forever"), None)

        deadline_after = wait_until(
            deadline_once_taken_over, 120, "the new triggerer to take over the sensor's wait"
        )

        state = airflow.wait_for_dag_run("clarifai_e2e_restart", run_id, timeout=240)
        after = airflow.task_instances("clarifai_e2e_restart", run_id)
        logs = airflow.log_of("triggerer")

    monkeypatch.setenv(*next(iter(env.items())))
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds

    runs = ClarifaiHook().list_runs(PipelineVersionIds("e2e-user", "e2e-app", "e2e-pipeline", "v1"))
    started = [run for run in runs if run.run_id != "run-forever"]
    assert [run.status_name for run in started] == ["JOB_COMPLETED"]  # one run, never a duplicate

    assert state == "failed"  # the sensor on the never-ending run times out, by design
    assert after["start_and_wait"]["state"] == "success", logs[-3000:]
    assert after["wait_forever"]["state"] == "failed"
    # The deadline was computed once, before the restart, and survived it: the sensor failed at that
    # deadline, not a full timeout after the triggerer came back (as a deadline computed in the
    # trigger would).
    assert deadline_after == deadline_before
    ended = _timestamp(after["wait_forever"]["end_date"])
    assert ended < restarted_at + SENSOR_TIMEOUT
    assert ended >= deadline_before - 1

    # Secrets (see tests/reliability/test_secrets.py): the token is in no trigger row read while the
    # waits were deferred, no file of the installation (component logs, task logs, the DB file) and no
    # table of its metadata DB.
    from tests.reliability.test_secrets import scan, scan_installation

    assert any(row["stored"]["kwargs"].get("deadline") for row in TRIGGER_ROWS_SEEN)
    assert scan({"trigger rows": json.dumps(TRIGGER_ROWS_SEEN)}, TOKEN) == {}
    assert scan_installation(airflow.home, airflow.env, TOKEN) == {}


def _timestamp(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
