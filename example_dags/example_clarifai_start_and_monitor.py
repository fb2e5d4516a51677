"""Start a Clarifai pipeline run with input overrides, then wait for it without holding a worker slot.

**What it does.** ``start_training`` starts a run of the pipeline version with argument overrides from
the DAG params (``learning_rate``, ``epochs``) and returns at once; the run id goes to XCom (key
``pipeline_version_run_id``) as soon as the run exists, and its web URL into the task log.
``wait_for_training`` waits in the triggerer, writes the run's log lines into its own task log, and, if
the run is still going after two hours, cancels it before failing, so no run is left behind on the
cluster. ``report`` runs only if the run completed. A retry of ``start_training`` does not start a
second run: it re-attaches to the run of the earlier try while that run is still going.

**Safe to unpause.** No schedule: it starts a run only when someone triggers it.

**What it needs.** An Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access
Token; for the local emulator, host ``http://127.0.0.1`` and port ``50051``), a running triggerer, and the
pipeline's ``config-lock.yaml`` (written by ``clarifai pipeline upload``) at ``pipelines/nightly-training/``
next to this file. The bundled one names the emulator's default pipeline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator
from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_start_and_monitor",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"learning_rate": "0.01", "epochs": "2"},
    tags=["example", "clarifai"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_clarifai_run_pipeline]
    start_training = ClarifaiRunPipelineOperator(
        task_id="start_training",
        config_lock_path=CONFIG_LOCK_PATH,
        input_args={"learning_rate": "{{ params.learning_rate }}", "epochs": "{{ params.epochs }}"},
        wait_for_completion=False,
        # A retry re-attaches to the run of the earlier try while it is still going.
        retries=2,
        retry_delay=timedelta(minutes=1),
    )
    # [END howto_operator_clarifai_run_pipeline]

    # [START howto_sensor_clarifai_wait_deferred]
    wait_for_training = ClarifaiPipelineRunSensor(
        task_id="wait_for_training",
        config_lock_path=CONFIG_LOCK_PATH,
        pipeline_version_run_id=start_training.output["pipeline_version_run_id"],
        deferrable=True,
        poke_interval=60,
        timeout=2 * 60 * 60,
        cancel_on_timeout=True,
        stream_logs=True,
    )
    # [END howto_sensor_clarifai_wait_deferred]

    @task
    def report(run: dict[str, Any]) -> str:
        """The sensor returned the run's summary."""
        return f"Run {run['run_id']} is {run['status']} after {run['total_run_duration_seconds']} s."

    report(wait_for_training.output)


if __name__ == "__main__":
    dag.test()
