"""Cancel Clarifai pipeline runs: the runs named when the DAG is triggered, then every running run.

**What it does.** ``cancel_given_runs`` cancels the runs named by the ``run_ids`` param (none by
default: then it does nothing). A run that has already ended is reported as skipped
(``on_forbidden="skip"``). An id that names no run is reported as ``not_found`` and fails the task,
*after* the other given runs were cancelled: its XCom ``run_outcomes`` lists what became of each.
``cancel_running_runs`` then cancels every run of the pipeline version that is running and waits until
each has ended; it runs whatever the first task's outcome (``trigger_rule="all_done"``), so one unknown
id never stops it.

**Safe to unpause.** The DAG has no schedule: it cancels runs only when someone triggers it, for
example with ``{"run_ids": ["<run id>", ...]}``.

**What it needs.** An Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access
Token; for the local emulator, host ``http://127.0.0.1`` and port ``50051``), and the pipeline's
``config-lock.yaml`` (written by ``clarifai pipeline upload``) at ``pipelines/nightly-training/`` next to
this file. The bundled one names the emulator's default pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, TriggerRule

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
    doc_md=__doc__,
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
        # Runs even when cancel_given_runs failed (an unknown id): it still cancels what is running.
        trigger_rule=TriggerRule.ALL_DONE,
        wait_for_target=True,
        wait_timeout=300,
        poll_interval=5,
    )
    # [END howto_operator_clarifai_cancel_running]

    cancel_given >> cancel_running


if __name__ == "__main__":
    dag.test()
