"""Pause a Clarifai pipeline's active runs for a maintenance window, then resume exactly those runs.

The pause task selects every run of the pipeline version that is queued or running and pauses it. Its
XCom ``changed_run_ids`` lists the runs it paused, and only those: a run somebody had paused before the
window is not in it, so the resume task does not wake it up. The resume task runs even if the
maintenance failed (``trigger_rule="all_done"``), so runs are never left paused by accident.

The pipeline's ids come from its ``config-lock.yaml`` (written by ``clarifai pipeline upload``), found
relative to this file.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, TriggerRule, task

from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_maintenance_window",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "clarifai"],
) as dag:
    # [START howto_operator_clarifai_pause_selected]
    pause = ClarifaiPausePipelineRunOperator(
        task_id="pause_active_runs",
        config_lock_path=CONFIG_LOCK_PATH,
        select_statuses=["QUEUED", "RUNNING"],
        wait_for_target=True,
        wait_timeout=120,
        poll_interval=2,
    )
    # [END howto_operator_clarifai_pause_selected]

    @task
    def maintenance(paused_run_ids: list[str]) -> None:
        """Stand-in for the real maintenance (a database migration, a node pool upgrade...)."""
        print(f"Maintenance while {len(paused_run_ids)} run(s) are paused: {paused_run_ids}")

    # [START howto_operator_clarifai_resume_paused]
    resume = ClarifaiResumePipelineRunOperator(
        task_id="resume_paused_runs",
        config_lock_path=CONFIG_LOCK_PATH,
        run_ids=pause.output["changed_run_ids"],
        trigger_rule=TriggerRule.ALL_DONE,
    )
    # [END howto_operator_clarifai_resume_paused]

    maintenance(pause.output["changed_run_ids"]) >> resume


if __name__ == "__main__":
    dag.test()
