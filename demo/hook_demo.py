"""Drive a seeded run through Running -> Paused -> Running -> Cancelled with ClarifaiHook.

Starts the emulator as its own process (the way a user runs it), points an Airflow connection at it
through an environment variable, and prints every state the service reports.
Run it with ``.venvs/newest/bin/python demo/hook_demo.py`` once ``scripts/demo.sh`` (or ``scripts/test.sh``)
has made that environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
TOKEN = "emulator-pat-0123456789"  # the bundled scenario's fake token: it opens only the local emulator


def start_emulator(ready_file: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_clarifai.emulator",
            "--port",
            "0",
            "--ready-file",
            str(ready_file),
        ],
    )
    deadline = time.monotonic() + 30
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start; see its output above")
        time.sleep(0.05)
    return process


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        ready_file = Path(workdir) / "emulator.address"
        emulator = start_emulator(ready_file)
        try:
            address = ready_file.read_text().strip()
            os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"] = (
                f'{{"conn_type": "clarifai", "host": "http://{address}", "password": "{TOKEN}"}}'
            )
            from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

            with ClarifaiHook() as hook:
                ok, message = hook.test_connection()
                print(f"connection test: {message}")
                if not ok:
                    return 1
                ids = hook.resolve_ids(
                    user_id=USER, app_id=APP, pipeline_id=PIPELINE, pipeline_version_id=VERSION
                )
                run_id = "run-running"
                print(f"run {run_id}: {hook.get_run(ids, run_id).status_name}")
                for action in ("pause", "resume", "cancel"):
                    (change,) = hook.set_runs_status(ids, [run_id], action)
                    print(f"{action:>6} -> applied={change.applied}  service reports {change.status_after}")
                (refused,) = hook.set_runs_status(ids, [run_id], "resume")
                print(f"resume again -> applied={refused.applied}: {refused.error_description}")
                final = hook.get_run(ids, run_id).status_name
                print(f"final state of {run_id}: {final}")
                return 0 if final == "JOB_CANCELLED" else 1
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
