"""Start a DAG each time a run of a Clarifai pipeline version completes (Airflow 3 asset watchers).

**What it does.** The asset ``clarifai/nightly-training/v1/completed`` is watched, in the triggerer, by
``ClarifaiPipelineRunEventTrigger``: each run of the pipeline version that completes adds one asset
event, and each asset event starts one run of this DAG. No task waits meanwhile. ``report_run`` reads the
run from the triggering asset event (``run_id``, ``state``, ``ended_at``, ``duration_seconds``, ``url``)
and returns it. Runs that completed before the watcher first started start nothing. A run completes
once, so it starts this DAG once, also across triggerer restarts; in the rare case Airflow repeats an
event (see the how-to), the ``run_id`` tells the repeat apart.

**Safe to unpause.** It changes no run; it only reads. Unpausing starts one DAG run per run that
completes from then on.

**What it needs.** Airflow 3 (3.3 for shared polls and a watermark that survives restarts), a running
triggerer, an Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access Token; for
the local emulator, host ``http://127.0.0.1`` and port ``50051``), and the pipeline's
``config-lock.yaml`` (written by ``clarifai pipeline upload``) at ``pipelines/nightly-training/`` next to
this file. The poll interval is 30 s; the environment variable ``CLARIFAI_EXAMPLE_POLL_SECONDS`` changes
it (the demo and the end-to-end test poll every 2 s).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_clarifai.triggers.events import ClarifaiPipelineRunEventTrigger

CONFIG_LOCK_PATH = Path(__file__).parent / "pipelines" / "nightly-training" / "config-lock.yaml"

run_completed = ClarifaiPipelineRunEventTrigger(
    clarifai_conn_id="clarifai_default",
    config_lock_path=str(CONFIG_LOCK_PATH),
    states=["JOB_COMPLETED"],
    poll_interval=float(os.environ.get("CLARIFAI_EXAMPLE_POLL_SECONDS", "30")),
)
NIGHTLY_TRAINING_COMPLETED = Asset(
    name="clarifai/nightly-training/v1/completed",
    watchers=[AssetWatcher(name="clarifai_nightly_training_completed", trigger=run_completed)],
)

with DAG(
    dag_id="example_clarifai_on_run_completed",
    schedule=[NIGHTLY_TRAINING_COMPLETED],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "clarifai"],
    doc_md=__doc__,
) as dag:

    @task
    def report_run(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log and return the run (or runs) whose completion started this DAG run."""
        # Airflow puts what the trigger fired under "payload" in the asset event's extra.
        runs = [event.extra["payload"] for event in triggering_asset_events[NIGHTLY_TRAINING_COMPLETED]]
        for run in runs:
            print(
                f"Run {run['run_id']} of {run['pipeline_id']}/{run['pipeline_version_id']} ended "
                f"{run['state']} at {run['ended_at']} after {run['duration_seconds']} s: {run['url']}"
            )
        return runs

    report_run()
