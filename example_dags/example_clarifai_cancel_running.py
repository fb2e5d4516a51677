"""Cancel Clarifai pipeline runs: the runs named when the DAG is triggered, then every running run.

Trigger it with ``{"run_ids": ["<run id>", ...]}`` to cancel given runs; runs that have already ended
are reported as skipped instead of failing the task (``on_forbidden="skip"``). Without run ids that task
does nothing. The second task cancels every run of the pipeline version that is running and waits until
each has reached a terminal state.

The pipeline's ids come from its ``config-lock.yaml`` (written by ``clarifai pipeline upload``), found
relative to this file.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_clarifai.operators.clarifai import ClarifaiCancelPipelineRunOperator

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_cancel_running",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    # Render "{{ params.run_ids }}" as a Python list, not as its text.
    render_template_as_native_obj=True,
    params={
        "run_ids": Param([], type="array", items={"type": "string"}, description="Runs to cancel."),
    },
    tags=["example", "clarifai"],
) as dag:
    # [START howto_operator_clarifai_cancel_given]
    cancel_given = ClarifaiCancelPipelineRunOperator(
        task_id="cancel_given_runs",
        config_lock_path=CONFIG_LOCK_PATH,
        run_ids="{{ params.run_ids }}",
        on_forbidden="skip",
    )
    # [END howto_operator_clarifai_cancel_given]

    # [START howto_operator_clarifai_cancel_running]
    cancel_running = ClarifaiCancelPipelineRunOperator(
        task_id="cancel_running_runs",
        config_lock_path=CONFIG_LOCK_PATH,
        select_statuses=["RUNNING"],
        wait_for_target=True,
        wait_timeout=300,
        poll_interval=5,
    )
    # [END howto_operator_clarifai_cancel_running]

    cancel_given >> cancel_running


if __name__ == "__main__":
    dag.test()
