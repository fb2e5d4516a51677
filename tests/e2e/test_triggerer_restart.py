"""Real Airflow processes: the triggerer dies while tasks are deferred, comes back, and the waits end
correctly: the started run's wait when the run ends, the sensor's at its original deadline.

Scheduler, triggerer, DAG processor and API server (webserver on Airflow 2) run as separate processes
with a real metadata DB; the DAG is triggered through the REST API. The emulator serves them from this
process, on a manual clock: the run the DAG starts ends only when the test advances that clock, after the
new triggerer has taken its wait over, so the order of events never depends on the machine's speed.

Airflow measures the sensor's timeout on the real clock, so the sensor's deadline is real; the test does
not race it. It keeps the triggerer down until that deadline has passed, then starts it again. A trigger
that kept the deadline its task computed before the restart finds it passed and ends the wait at its
first look at the run; one that computed a new deadline would read the run every two seconds for another
full timeout. The emulator counts the reads. Every process started here is stopped at the end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

sys.path.insert(0, str(Path(__file__).parents[2]))
from demo.local_airflow import LocalAirflow, wait_until

# Every wait in this test is a guard against a hang (Airflow's start-up, a scheduler loop), never a limit
# a slow or busy machine could reach; nothing is measured. The whole test takes three to six minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

TOKEN = "e2e-pat-0000"
VERSION = ("e2e-user", "e2e-app", "e2e-pipeline", "v1")
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
#: Emulated seconds that take a run started by the DAG to its end (1 s queued, 45 s running).
RUN_SECONDS = 60
#: The sensor's timeout. The first triggerer must still hold the sensor's wait when it is killed, a few
#: seconds after the task deferred: a guard, far above that.
SENSOR_TIMEOUT = 120
#: How long the test waits for Airflow to do one step (defer, take a wait, end a task run).
STEP_GUARD = 240
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


class RunReads:
    """Counts the reads of each run the emulator answers, by run id (the request log has no run ids)."""

    def __init__(self, emulator: ClarifaiEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        original = emulator.backend.get_run

        def get_run(caller, ref, run_id):
            with self._lock:
                self.counts[run_id] += 1
            return original(caller, ref, run_id)

        monkeypatch.setattr(emulator.backend, "get_run", get_run)

    def of(self, run_id: str) -> int:
        with self._lock:
            return self.counts[run_id]


@pytest.fixture
def emulator():
    with ClarifaiEmulator(SCENARIO, clock=ManualClock()) as emulator:
        yield emulator


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


def test_deferred_waits_survive_a_triggerer_restart(tmp_path, emulator, monkeypatch):
    reads = RunReads(emulator, monkeypatch)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "clarifai_e2e_restart.py").write_text(textwrap.dedent(DAG))
    conn = {"conn_type": "clarifai", "host": emulator.base_url, "password": TOKEN}
    env = {"AIRFLOW_CONN_CLARIFAI_DEFAULT": json.dumps(conn)}
    with LocalAirflow(tmp_path / "airflow", dags, env) as airflow:
        airflow.start_all()
        airflow.wait_for_dag("clarifai_e2e_restart")
        run_id = airflow.trigger("clarifai_e2e_restart")

        def task_states() -> dict[str, str]:
            tis = airflow.task_instances("clarifai_e2e_restart", run_id)
            return {task_id: ti["state"] for task_id, ti in tis.items()}

        wait_until(
            lambda: task_states() == {"start_and_wait": "deferred", "wait_forever": "deferred"},
            STEP_GUARD,
            "both tasks to defer",
        )

        def both_taken() -> tuple[set[int], float] | None:
            # One read for both: the triggerers holding the two waits, and the sensor's deadline.
            rows = trigger_rows(airflow)
            owners = {row["triggerer_id"] for row in rows}
            if len(rows) != 2 or None in owners:
                return None
            return owners, next(row["deadline"] for row in rows if row["run_id"] == "run-forever")

        first_triggerer, deadline = wait_until(both_taken, STEP_GUARD, "a triggerer to take both waits")

        airflow.kill("triggerer", signal.SIGKILL)
        # The first triggerer cannot have ended the sensor's wait: its deadline had not come yet.
        assert time.time() < deadline, "the sensor's deadline passed before the triggerer was killed"
        # Down until the sensor's deadline has passed: a wait for an instant, not a race against it.
        wait_until(lambda: time.time() > deadline + 1, SENSOR_TIMEOUT + STEP_GUARD, "the sensor's deadline")
        reads_before_restart = reads.of("run-forever")
        airflow.start("triggerer")

        def started_run_taken_over() -> bool:
            # The started run cannot end before the test advances the emulator's clock, so its wait is
            # there to be taken over, by a new triggerer.
            rows = [row for row in trigger_rows(airflow) if row["run_id"] != "run-forever"]
            owners = {row["triggerer_id"] for row in rows}
            return len(rows) == 1 and None not in owners and not owners & first_triggerer

        wait_until(started_run_taken_over, STEP_GUARD, "a new triggerer to take the started run's wait over")
        wait_until(
            lambda: task_states()["wait_forever"] == "failed", STEP_GUARD, "the sensor to end at its deadline"
        )
        reads_after_restart = reads.of("run-forever") - reads_before_restart
        assert task_states()["start_and_wait"] == "deferred"
        # Only now does the started run end; the new triggerer's trigger sees it.
        emulator.clock.advance(RUN_SECONDS)
        state = airflow.wait_for_dag_run("clarifai_e2e_restart", run_id, timeout=STEP_GUARD)
        after = airflow.task_instances("clarifai_e2e_restart", run_id)
        logs = airflow.log_of("triggerer")

    started = [run for run in emulator.backend.runs(*VERSION) if run.id != "run-forever"]
    assert [str(run.state) for run in started] == ["JOB_COMPLETED"]  # one run, never a duplicate

    assert state == "failed"  # the sensor on the never-ending run times out, by design
    assert after["start_and_wait"]["state"] == "success", logs[-3000:]
    assert after["wait_forever"]["state"] == "failed"
    # The deadline was computed once, when the sensor deferred, and survived the restart: every trigger
    # row of the sensor carried it, and the new triggerer's trigger, finding it passed, ended the wait at
    # its first look (that one read can fail, cut to the nothing left of the wait; then there is none). A
    # deadline computed anew at the restart would be a full timeout away: the trigger would have gone on
    # reading the run every two seconds, and the sensor would not have failed before then.
    assert reads_after_restart <= 1
    assert {row["deadline"] for row in TRIGGER_ROWS_SEEN if row["run_id"] == "run-forever"} == {deadline}
    assert _timestamp(after["wait_forever"]["end_date"]) >= deadline

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
