"""Pause a Clarifai pipeline's active runs for a maintenance window, then resume exactly those runs.

**What it does.** ``pause_active_runs`` pauses every run of the pipeline version that is queued or
running, and waits until each has stopped. ``wait_for_window_end`` then waits out the window in the
triggerer (no worker slot is held). ``resume_paused_runs`` resumes the runs in the pause task's XCom
``changed_run_ids``, and only those: a run somebody had paused before the window is not in it, so it is
not woken up. The resume runs even if the wait failed (``trigger_rule="all_done"``), so runs are never
left paused by accident.

**Safe to unpause.** The DAG has no schedule: it pauses real work only when someone triggers it. The
window's length is the ``window_seconds`` param (default 1800). For a real weekly window, copy the file
and give it ``schedule="0 2 * * 6"`` (Saturdays at 02:00 UTC).

**What it needs.** An Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access
Token; for the local emulator, host ``http://127.0.0.1`` and port ``50051``), a running triggerer, the
``apache-airflow-providers-standard`` package (for the wait), and the pipeline's ``config-lock.yaml``
(written by ``clarifai pipeline upload``) at ``pipelines/nightly-training/`` next to this file. The
bundled one names the emulator's default pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, TriggerRule
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)

CONFIG_LOCK_PATH = "pipelines/nightly-training/config-lock.yaml"

with DAG(
    dag_id="example_clarifai_maintenance_window",
    # Triggered only: unpausing the example never pauses anything on its own.
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "window_seconds": Param(1800, type="integer", minimum=1, description="How long the window lasts."),
    },
    doc_md=__doc__,
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
