"""Maintenance window for a whole nodepool: drain it or pause what is left, then resume exactly that.

**What it does.** On one nodepool, across every app, pipeline and version of the user:

1. ``preview_window`` lists what the window will touch (a dry run: a table in its log, nothing sent).
2. ``hold_queued`` pauses every queued run, so nothing new starts on the nodepool.
3. ``wait_for_drain`` waits, in the triggerer, until no run on the nodepool is running, for at most
   ten minutes (then it is skipped, not failed; the environment variable
   ``CLARIFAI_EXAMPLE_DRAIN_SECONDS`` changes that bound, as the tests do).
4. ``pause_running`` pauses whatever still runs, and waits until each run has stopped.
5. ``wait_for_window_end`` waits out the window (``window_seconds`` from the DAG run's start).
6. ``resume_paused_runs`` resumes exactly the runs the two pause tasks paused, each in its own pipeline
   version (their XCom ``changed_runs`` name it): a run paused before the window, or started during it,
   is not touched. It runs even if a step before it failed, so runs are never left paused by accident.

**Safe to unpause.** No schedule: it pauses real work only when someone triggers it. For a weekly window,
copy it with ``schedule="0 2 * * 6"`` (Saturdays at 02:00 UTC).

**What it needs.** An Airflow connection ``clarifai_default`` (type ``clarifai``: your Personal Access
Token; for the local emulator, host ``http://127.0.0.1`` and port ``50051``), a running triggerer, the
``apache-airflow-providers-standard`` package (for the window's wait), and the nodepool's user, compute
cluster and id as params (the defaults name the emulator's bundled ``demo-cluster/gpu-a100``).
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, TriggerRule, task
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)
from airflow_provider_clarifai.sensors.drained import ClarifaiDrainedSensor

NODEPOOL = {
    "scope": "nodepool",
    "user_id": "{{ params.user_id }}",
    "compute_cluster_id": "{{ params.compute_cluster_id }}",
    "nodepool_id": "{{ params.nodepool_id }}",
}

with DAG(
    dag_id="example_clarifai_nodepool_maintenance",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "user_id": Param("demo-user", type="string", minLength=1),
        "compute_cluster_id": Param("demo-cluster", type="string", minLength=1),
        "nodepool_id": Param("gpu-a100", type="string", minLength=1),
        "window_seconds": Param(1800, type="integer", minimum=1, description="How long the window lasts."),
    },
    doc_md=__doc__,
    tags=["example", "clarifai"],
) as dag:
    # [START howto_operator_clarifai_nodepool_preview]
    preview = ClarifaiPausePipelineRunOperator(
        task_id="preview_window", select_statuses=["QUEUED", "RUNNING"], dry_run=True, **NODEPOOL
    )
    # [END howto_operator_clarifai_nodepool_preview]

    # [START howto_operator_clarifai_nodepool_pause]
    hold_queued = ClarifaiPausePipelineRunOperator(
        task_id="hold_queued", select_statuses=["QUEUED"], **NODEPOOL
    )
    # [END howto_operator_clarifai_nodepool_pause]

    # [START howto_sensor_clarifai_nodepool_drained]
    drain = ClarifaiDrainedSensor(
        task_id="wait_for_drain",
        drained_of=["RUNNING"],
        deferrable=True,
        poke_interval=5,
        timeout=int(os.environ.get("CLARIFAI_EXAMPLE_DRAIN_SECONDS", "600")),
        soft_fail=True,
        **NODEPOOL,
    )
    # [END howto_sensor_clarifai_nodepool_drained]

    pause_running = ClarifaiPausePipelineRunOperator(
        task_id="pause_running",
        select_statuses=["RUNNING"],
        wait_for_target=True,
        wait_timeout=300,
        poll_interval=2,
        trigger_rule=TriggerRule.ALL_DONE,
        **NODEPOOL,
    )

    window = DateTimeSensorAsync(
        task_id="wait_for_window_end",
        target_time="{{ dag_run.start_date + macros.timedelta(seconds=params.window_seconds) }}",
    )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def paused_in_window(held: list[dict[str, Any]] | None, paused: list[dict[str, Any]] | None) -> list:
        """The records of every run the window paused (each names its pipeline version)."""
        return [*(held or []), *(paused or [])]

    # [START howto_operator_clarifai_nodepool_resume]
    to_resume = paused_in_window(hold_queued.output["changed_runs"], pause_running.output["changed_runs"])
    resume = ClarifaiResumePipelineRunOperator(
        task_id="resume_paused_runs", run_ids=to_resume, trigger_rule=TriggerRule.ALL_DONE
    )
    # [END howto_operator_clarifai_nodepool_resume]

    preview >> hold_queued >> drain >> pause_running >> window >> to_resume >> resume


if __name__ == "__main__":
    dag.test()
