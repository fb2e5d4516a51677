"""Gate downstream tasks on a Clarifai pipeline run that something else started.

The sensor waits in the triggerer (``deferrable=True``), so no worker slot is held while the run goes on.
When the run completes, the downstream tasks run with the run's summary from XCom. When it fails or is
cancelled, the sensor fails at once (it does not wait for its timeout) and the downstream tasks do not
run. A paused run is not finished: the sensor keeps waiting, bounded by its timeout.

Trigger it with ``{"pipeline_version_run_id": "<run id>"}``; the default is a run of the Clarifai
emulator's default scenario, so the DAG runs unchanged against the emulator. The pipeline's ids come from
its ``config-lock.yaml`` (written by ``clarifai pipeline upload``), found relative to this file.
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
