"""Gate downstream tasks on a Clarifai pipeline run that something else started.

**What it does.** ``wait_for_training`` waits for the run named by the ``pipeline_version_run_id`` param
in the triggerer (``deferrable=True``), so no worker slot is held while the run goes on. When the run
completes, ``publish_model`` and ``refresh_dashboards`` run, with the run's summary from XCom. When it
fails or is cancelled, the sensor fails at once (it does not wait for its timeout) and the downstream
tasks do not run. A paused run is not finished: the sensor keeps waiting, bounded by its timeout.

**Safe to unpause.** No schedule, and it only reads: it changes no run.

**What it needs.** An Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access
Token; for the local emulator, host ``http://127.0.0.1`` and port ``50051``), a running triggerer, and the
pipeline's ``config-lock.yaml`` (written by ``clarifai pipeline upload``) at ``pipelines/nightly-training/``
next to this file. Trigger it with ``{"pipeline_version_run_id": "<run id>"}``. The default,
``run-queued``, is a run of the emulator's bundled scenarios: in the default scenario no run ends on its
own, so the sensor keeps waiting; the "scripted" scenario completes it after about a minute.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_gating",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "pipeline_version_run_id": Param(
            "run-queued", type="string", minLength=1, description="The Clarifai pipeline run to wait for."
        ),
    },
    tags=["example", "clarifai"],
    doc_md=__doc__,
) as dag:
    # [START howto_sensor_clarifai_gating]
    wait_for_training = ClarifaiPipelineRunSensor(
        task_id="wait_for_training",
        config_lock_path=CONFIG_LOCK_PATH,
        pipeline_version_run_id="{{ params.pipeline_version_run_id }}",
        deferrable=True,
        poke_interval=30,
        timeout=6 * 60 * 60,
    )
    # [END howto_sensor_clarifai_gating]

    # [START howto_sensor_clarifai_gating_downstream]
    @task
    def publish_model(run: dict[str, Any]) -> str:
        """Runs only after the run completed; the sensor returned the run's summary."""
        return (
            f"Publishing the model of run {run['run_id']}, which ran "
            f"{run['total_run_duration_seconds']} s and ended at {run['ended_at']}."
        )

    @task
    def refresh_dashboards() -> None:
        """Also gated on the run: does not run when the run failed or was cancelled."""

    publish_model(wait_for_training.output)
    wait_for_training >> refresh_dashboards()
    # [END howto_sensor_clarifai_gating_downstream]


if __name__ == "__main__":
    dag.test()
