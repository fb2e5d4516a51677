"""The demo: a real Airflow runs the example DAGs against the local Clarifai emulator.

1. Starts the emulator (its own process; emulated time runs 10x faster than real time).
2. Starts a real Airflow (scheduler, triggerer, DAG processor, API server; LocalExecutor; a fresh SQLite
   metadata DB) serving ``example_dags/``, with the ``clarifai_default`` connection pointing at the
   emulator.
3. Triggers the maintenance-window DAG through the REST API: it pauses every queued or running run,
   waits out a short window in the triggerer, and resumes exactly the runs it paused.
4. Triggers the gating DAG: a deferrable sensor waits for a run to complete, then downstream tasks run.
5. Prints what happened (runs paused and resumed, task states, timings), then stops everything.

Run it through ``scripts/demo.sh``, which installs everything first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from demo.local_airflow import LocalAirflow, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "emulator-pat-0123456789"  # the bundled scenario's fake token: it opens only the local emulator
VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")
SCENARIO = Path(__file__).with_name("scenario.yaml")
TIME_SCALE = 10
WINDOW_SECONDS = 15
GATED_RUN = "eval-nightly"


def start_emulator(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    ready = workdir / "emulator.address"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", str(port)),
            *("--scenario", str(SCENARIO), "--time-scale", str(TIME_SCALE), "--ready-file", str(ready)),
        ],
        stdout=(workdir / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until(ready.exists, 30, "the emulator")
    return process


def run_states(hook: Any) -> dict[str, str]:
    user_id, app_id, pipeline_id, version_id = VERSION
    ids = hook.resolve_ids(
        user_id=user_id, app_id=app_id, pipeline_id=pipeline_id, pipeline_version_id=version_id
    )
    return {run.run_id: run.status_name for run in sorted(hook.list_runs(ids), key=lambda r: r.run_id)}


def xcom(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
    return airflow.request("GET", path).get("value")


def print_dag_run(airflow: LocalAirflow, dag_id: str, run_id: str, state: str, started: float) -> None:
    print(f"\n{dag_id}: {state} in {time.monotonic() - started:.0f} s")
    for task_id, ti in sorted(
        airflow.task_instances(dag_id, run_id).items(), key=lambda kv: kv[1]["start_date"] or ""
    ):
        print(f"  {task_id:24} {ti['state']:10} {ti.get('duration') or 0:6.1f} s")


def print_states(title: str, before: dict[str, str], after: dict[str, str]) -> None:
    print(f"\n{title}")
    for run_id in sorted(after):
        marker = "" if before.get(run_id) == after[run_id] else "   <- changed"
        print(f"  {run_id:16} {before.get(run_id, '-'):22} -> {after[run_id]}{marker}")


def main() -> int:
    demo_started = time.monotonic()
    ok = False
    with tempfile.TemporaryDirectory(prefix="clarifai-demo-") as tmp:
        workdir = Path(tmp)
        # Airflow learns the emulator's address now; the emulator starts once Airflow is up, so the
        # runs' emulated clocks start when the demo's DAGs do, however long Airflow takes to start.
        address = f"127.0.0.1:{free_port()}"
        emulator = None
        connection = json.dumps({"conn_type": "clarifai", "host": f"http://{address}", "password": TOKEN})
        os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"] = connection
        os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
        from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

        hook = ClarifaiHook()
        # No scheduled runs: the demo triggers each DAG itself, once, through the REST API.
        airflow = LocalAirflow(
            workdir / "airflow",
            ROOT / "example_dags",
            {"AIRFLOW_CONN_CLARIFAI_DEFAULT": connection, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"},
        )
        try:
            print(f"Starting Airflow ({', '.join(airflow.components())}) ...", flush=True)
            airflow.start_all()
            for dag_id in ("example_clarifai_maintenance_window", "example_clarifai_gating"):
                airflow.wait_for_dag(dag_id)
            print(f"Airflow is up after {time.monotonic() - demo_started:.0f} s; API at {airflow.api}")
            emulator = start_emulator(workdir, int(address.rsplit(":", 1)[1]))
            print(f"Clarifai emulator at {address} (emulated time runs {TIME_SCALE}x faster)")

            before = run_states(hook)
            dag_id = "example_clarifai_maintenance_window"
            started = time.monotonic()
            run_id = airflow.trigger(dag_id, {"window_seconds": WINDOW_SECONDS})
            print(f"\nTriggered {dag_id} ({WINDOW_SECONDS} s window) through the REST API ...", flush=True)
            wait_until(
                lambda: (
                    airflow.task_instances(dag_id, run_id).get("wait_for_window_end", {}).get("state")
                    in ("deferred", "success", "failed")
                ),
                120,
                "the window to open",
            )
            during = run_states(hook)
            print_states("During the window (the wait is deferred in the triggerer):", before, during)
            state = airflow.wait_for_dag_run(dag_id, run_id, timeout=300)
            print_dag_run(airflow, dag_id, run_id, state, started)
            paused = xcom(airflow, dag_id, run_id, "pause_active_runs", "changed_run_ids") or []
            resumed = [r["run_id"] for r in xcom(airflow, dag_id, run_id, "resume_paused_runs") or []]
            exact = sorted(paused) == sorted(resumed)
            print(f"  paused:  {', '.join(paused) or 'none'}")
            print(f"  resumed: {', '.join(resumed) or 'none'}  (exactly the paused ones: {exact})")
            print_states("After the window:", during, run_states(hook))

            dag_id = "example_clarifai_gating"
            started = time.monotonic()
            gating_run = airflow.trigger(dag_id, {"pipeline_version_run_id": GATED_RUN})
            print(f"\nTriggered {dag_id}: a deferrable sensor waits for {GATED_RUN} ...", flush=True)
            gating_state = airflow.wait_for_dag_run(dag_id, gating_run, timeout=300)
            print_dag_run(airflow, dag_id, gating_run, gating_state, started)
            summary = xcom(airflow, dag_id, gating_run, "wait_for_training") or {}
            print(
                f"  {GATED_RUN} ended {summary.get('status')} after "
                f"{summary.get('total_run_duration_seconds')} emulated s of running (paused time excluded)"
            )
            ok = state == "success" and gating_state == "success" and bool(paused) and exact
        finally:
            airflow.stop_all()
            if emulator is not None:
                emulator.send_signal(signal.SIGINT)
                emulator.wait(timeout=30)
    outcome = "succeeded" if ok else "FAILED"
    print(f"\nStopped Airflow and the emulator. Demo {outcome} in {time.monotonic() - demo_started:.0f} s.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
