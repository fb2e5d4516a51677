"""Pause a Clarifai pipeline's active runs for a maintenance window, then resume exactly those runs.

Every Saturday at 02:00 UTC the pause task selects every run of the pipeline version that is queued or
running and pauses it. The window then passes in the triggerer (a deferrable sensor: no worker slot is
held), and the resume task resumes the runs in the pause task's XCom ``changed_run_ids``, and only
those: a run somebody had paused before the window is not in it, so it is not woken up. The resume task
runs even if the wait failed (``trigger_rule="all_done"``), so runs are never left paused by accident.
The window's length is a DAG param (``window_seconds``), so a manual run can use a short one.

The pipeline's ids come from its ``config-lock.yaml`` (written by ``clarifai pipeline upload``), found
relative to this file.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, TriggerRule
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_maintenance_window",
    schedule="0 2 * * 6",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"window_seconds": 1800},
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

    # The window passes in the triggerer; the worker slot is free meanwhile.
    window = DateTimeSensorAsync(
        task_id="wait_for_window_end",
        target_time="{{ dag_run.start_date + macros.timedelta(seconds=params.window_seconds) }}",
    )

    # [START howto_operator_clarifai_resume_paused]
    resume = ClarifaiResumePipelineRunOperator(
        task_id="resume_paused_runs",
        config_lock_path=CONFIG_LOCK_PATH,
        run_ids=pause.output["changed_run_ids"],
        trigger_rule=TriggerRule.ALL_DONE,
    )
    # [END howto_operator_clarifai_resume_paused]

    pause >> window >> resume


if __name__ == "__main__":
    dag.test()
