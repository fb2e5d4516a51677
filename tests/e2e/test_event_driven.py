"""Real Airflow 3 processes: the example DAG ``example_clarifai_on_run_completed`` starts once per
completed run, through an asset watcher running the event trigger, across two triggerer restarts.

Scheduler, triggerer, DAG processor and API server run as separate processes with a real metadata DB;
the DAG file is the example itself (polling every second). The emulator serves them from this process
on a manual clock, so a run completes exactly when the test moves that clock: 3 runs complete one after
another (3 asset events, 3 DAG runs), the triggerer is killed, 2 runs complete while it is down, it comes
back (2 more asset events, none repeated), it is killed and started again and one more run completes
(one more event). A run that completed before the watcher existed never fires. Airflow queues asset
events that arrive together for one DAG run, so the test counts asset events and checks that every DAG
run's triggering events name distinct runs; waits are guards against a hang, never measurements.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from tests.airflow_dags import AIRFLOW_3

sys.path.insert(0, str(Path(__file__).parents[2]))
from demo.local_airflow import LocalAirflow, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not AIRFLOW_3, reason="asset watchers are Airflow 3 (tests/triggers checks the 2.x error)"
    ),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_ID = "example_clarifai_on_run_completed"
ASSET = "clarifai/nightly-training/v1/completed"
TOKEN = "e2e-pat-events"
#: Runs that complete when the clock reaches their end (emulated seconds after the start).
ENDS = {"first": 100, "second": 200, "third": 300, "down-1": 400, "down-2": 400, "after-restarts": 500}
SCENARIO = {
    "rate_limit_per_second": 0,
    "tokens": [{"token": TOKEN, "user_id": "demo-user"}],
    "users": [
        {
            "id": "demo-user",
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
                                        {"id": "completed-before", "status": "JOB_COMPLETED"},
                                        *(
                                            {
                                                "id": run_id,
                                                "status": "JOB_RUNNING",
                                                "script": {
                                                    "running_seconds": end,
                                                    "outcome": "JOB_COMPLETED",
                                                },
                                            }
                                            for run_id, end in ENDS.items()
                                        ),
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ],
}
STEP_GUARD = 240


@pytest.fixture
def emulator():
    with ClarifaiEmulator(SCENARIO, clock=ManualClock()) as emulator:
        yield emulator


class Watch:
    """What the test reads of the installation through its REST API."""

    def __init__(self, airflow: LocalAirflow) -> None:
        self.airflow = airflow
        self.asset_id: int | None = None

    def get(self, path: str) -> Any:
        # Airflow 3.3.2's asset-events route answers 500 while an event's DAG run is queued without a
        # start date (its response model requires one): ask again until the run has started.
        return wait_until(lambda: self._get(path), STEP_GUARD, f"GET {path} to answer")

    def _get(self, path: str) -> Any:
        try:
            return self.airflow.request("GET", path)
        except urllib.error.HTTPError as error:
            if error.code >= 500:
                return None
            raise

    def asset(self) -> int | None:
        if self.asset_id is None:
            assets = self.get("/assets?limit=100")["assets"]
            found = [asset["id"] for asset in assets if asset["name"] == ASSET]
            self.asset_id = found[0] if found else None
        return self.asset_id

    def events(self) -> list[dict[str, Any]]:
        asset_id = self.asset()
        if asset_id is None:
            return []
        return self.get(f"/assets/events?asset_id={asset_id}&limit=100")["asset_events"]

    def fired(self) -> list[str]:
        return sorted(event["extra"]["payload"]["run_id"] for event in self.events())

    def watermark(self) -> set[str]:
        asset_id = self.asset()
        if asset_id is None:
            return set()
        entries = self.get(f"/assets/{asset_id}/state-store")["asset_state_store"]
        return {run_id for entry in entries for run_id in (entry["value"] or {}).get("seen", {})}

    def dag_runs(self) -> list[dict[str, Any]]:
        return self.get(f"/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]

    def consumed(self) -> dict[str, list[str]]:
        """Each finished DAG run's triggering runs."""
        out = {}
        for run in self.dag_runs():
            path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
            events = self.get(path)["asset_events"]
            out[run["dag_run_id"]] = sorted(event["extra"]["payload"]["run_id"] for event in events)
        return out

    def all_runs_done(self) -> bool:
        runs = self.dag_runs()
        return bool(runs) and all(run["state"] in ("success", "failed") for run in runs)


def test_one_dag_run_per_completed_run_across_triggerer_restarts(tmp_path, emulator):
    dags = tmp_path / "dags"
    (dags / "pipelines" / "nightly-training").mkdir(parents=True)
    shutil.copy(EXAMPLES / f"{DAG_ID}.py", dags)
    lock = EXAMPLES / "pipelines" / "nightly-training" / "config-lock.yaml"
    shutil.copy(lock, dags / "pipelines" / "nightly-training")
    conn = {"conn_type": "clarifai", "host": emulator.base_url, "password": TOKEN}
    env = {"AIRFLOW_CONN_CLARIFAI_DEFAULT": json.dumps(conn), "CLARIFAI_EXAMPLE_POLL_SECONDS": "1"}
    with LocalAirflow(tmp_path / "airflow", dags, env) as airflow:
        watch = Watch(airflow)
        airflow.start_all()
        airflow.wait_for_dag(DAG_ID)
        # The watcher's first look notes the run that completed before it: the watermark is written.
        wait_until(lambda: watch.watermark() == {"completed-before"}, STEP_GUARD, "the first watermark")

        for count, run_id in enumerate(["first", "second", "third"], start=1):
            emulator.clock.advance(100)
            wait_until(lambda n=count: len(watch.events()) >= n, STEP_GUARD, f"the asset event of {run_id}")
            wait_until(
                lambda n=count: len(watch.dag_runs()) >= n and watch.all_runs_done(),
                STEP_GUARD,
                f"the DAG run for {run_id}",
            )
        assert watch.fired() == ["first", "second", "third"]
        wait_until(lambda: {"first", "second", "third"} <= watch.watermark(), STEP_GUARD, "the watermark")

        airflow.kill("triggerer", signal.SIGKILL)
        emulator.clock.advance(100)  # down-1 and down-2 complete while no triggerer runs
        assert {
            run.id: str(run.state)
            for run in emulator.backend.runs("demo-user", "pipelines-app", "nightly-training", "v1")
            if run.id.startswith("down")
        } == {"down-1": "JOB_COMPLETED", "down-2": "JOB_COMPLETED"}
        assert len(watch.events()) == 3
        airflow.start("triggerer")
        wait_until(lambda: len(watch.events()) >= 5, STEP_GUARD, "the runs that completed while down")
        wait_until(lambda: {"down-1", "down-2"} <= watch.watermark(), STEP_GUARD, "the watermark past them")

        airflow.kill("triggerer", signal.SIGKILL)
        airflow.start("triggerer")
        emulator.clock.advance(100)  # after-restarts completes
        wait_until(lambda: len(watch.events()) >= 6, STEP_GUARD, "the run after the second restart")
        wait_until(lambda: "after-restarts" in watch.watermark(), STEP_GUARD, "the last watermark")
        wait_until(watch.all_runs_done, STEP_GUARD, "every DAG run to finish")
        fired, consumed, dag_runs = watch.fired(), watch.consumed(), watch.dag_runs()
        task_logs = "\n".join(
            path.read_text(errors="replace") for path in (airflow.home / "logs").rglob("*.log")
        )

    # Each completed run fired exactly once; the run that completed before the watcher never did.
    assert fired == sorted(ENDS)
    # Every event started a DAG run, and no run id is in two DAG runs.
    triggering = [run_id for run_ids in consumed.values() for run_id in run_ids]
    assert sorted(triggering) == sorted(ENDS)
    assert len(dag_runs) >= 5  # 3 one by one, then the 2 down-window events (1 or 2 runs), then 1
    assert all(run["state"] == "success" for run in dag_runs)
    assert "Run first of nightly-training/v1 ended JOB_COMPLETED" in task_logs

    from tests.reliability.test_secrets import scan_installation

    assert scan_installation(airflow.home, airflow.env, TOKEN) == {}
