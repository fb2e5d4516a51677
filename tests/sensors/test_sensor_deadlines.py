"""The sensor and the run operator keep their timeout against a server that never answers.

As in the trigger's test, nothing here is timed: the emulator records the deadline each request carried
when it arrived. Uncut, a read during a 1 s wait carries the connection's 30 s deadline (and the retry
policy's 120 s budget behind it), and the assertions on those deadlines fail.
"""

from __future__ import annotations

import os
import threading

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiRunTimeoutError
from airflow_provider_clarifai.waiting import WRAP_UP_SECONDS
from tests.sensors import FakeTaskInstance, unit_dag
from tests.triggers.test_trigger_deadlines import at_most, deadlines

pytestmark = pytest.mark.integration

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": VERSION}
#: The wait's length in these tests, in real seconds: long enough that the first read reaches the
#: server on a busy machine; the assertions are about the deadlines requests carried, never durations.
WINDOW = 2.0


def test_poke_mode_reads_are_cut_to_the_sensor_timeout_and_it_cancels_within_its_budget(emulator):
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    emulator.faults.add(method="GetPipelineVersionRun", kind="hang")
    with unit_dag():
        sensor = ClarifaiPipelineRunSensor(
            task_id="wait",
            pipeline_version_run_id="run-running",
            mode="poke",
            poke_interval=0.2,
            timeout=WINDOW,
            cancel_on_timeout=True,
            **IDS,
        )

    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({"ti": FakeTaskInstance()})

    reads = deadlines(emulator, "GetPipelineVersionRun")
    assert reads
    assert max(reads) <= at_most(WINDOW)
    (cancel,) = deadlines(emulator, "PatchPipelineVersionRuns")
    assert cancel <= at_most(WRAP_UP_SECONDS)
    assert emulator.backend.run_status(USER, APP, PIPELINE, VERSION, "run-running") == "JOB_CANCELLED"


def test_deferrable_sensor_look_before_deferring_is_cut_to_its_timeout(emulator):
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    with unit_dag():
        sensor = ClarifaiPipelineRunSensor(
            task_id="wait", pipeline_version_run_id="run-running", deferrable=True, timeout=WINDOW, **IDS
        )
    with pytest.raises(TaskDeferred):
        sensor.execute({"ti": FakeTaskInstance()})

    (read,) = deadlines(emulator, "GetPipelineVersionRun")
    assert read <= at_most(WINDOW)


def test_polling_run_operator_reads_are_cut_to_its_timeout(emulator):
    from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator

    # The start (a look for an earlier try's run, then the post) is answered; from the first read of
    # the wait on, reads hang. Which read is the first to hang does not matter: all are cut.
    started = threading.Event()

    def hang_reads_once_started() -> None:
        if emulator.requests.wait_for(lambda r: any(x.method == "PostPipelineVersionRuns" for x in r), 60):
            emulator.faults.add(method="GetPipelineVersionRun", kind="hang")
        started.set()

    helper = threading.Thread(target=hang_reads_once_started, daemon=True)
    helper.start()
    with unit_dag():
        operator = ClarifaiRunPipelineOperator(
            task_id="run", poll_interval=0.2, timeout=WINDOW, cancel_on_timeout=True, **IDS
        )
    ti = FakeTaskInstance(dag_id="d", task_id="run", run_id="r", map_index=-1, try_number=1)

    with pytest.raises(ClarifaiRunTimeoutError, match="cancelled"):
        operator.execute({"ti": ti})
    helper.join()

    posted = [record for record in emulator.requests if record.method == "PostPipelineVersionRuns"]
    assert len(posted) == 1
    first_post = list(emulator.requests).index(posted[0])
    wait_reads = [
        record.deadline_seconds
        for record in list(emulator.requests)[first_post:]
        if record.method == "GetPipelineVersionRun"
    ]
    assert wait_reads
    assert max(wait_reads) <= at_most(WINDOW)
    (cancel,) = deadlines(emulator, "PatchPipelineVersionRuns")
    assert cancel <= at_most(WRAP_UP_SECONDS)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_channels() -> int:
    """gRPC channels still referenced somewhere in the process (a closed hook drops its channel)."""
    import gc

    import grpc

    gc.collect()
    # type(), not isinstance(): some of Airflow's lazy proxies raise when asked for their __class__.
    return sum(issubclass(type(thing), grpc.Channel) for thing in gc.get_objects())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_a_thousand_pokes_leave_no_growing_count_of_channels_or_descriptors(emulator):
    """Each sensor task closes its channel: a worker process that runs many leaks nothing."""
    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    # One DAG keeps every task alive, as a DAG run does: a channel left open would stay open.
    with unit_dag():
        sensors = [
            ClarifaiPipelineRunSensor(
                task_id=f"wait_{index}",
                pipeline_version_run_id="run-completed",
                mode="poke",
                poke_interval=0,
                **IDS,
            )
            for index in range(1050)
        ]

    def poke(sensor: ClarifaiPipelineRunSensor) -> None:
        assert sensor.execute({"ti": FakeTaskInstance()})["status"] == "JOB_COMPLETED"

    for sensor in sensors[:50]:  # warm up: gRPC's own process-wide threads and descriptors
        poke(sensor)
    descriptors_before, channels_before = open_descriptors(), live_channels()
    for sensor in sensors[50:]:
        poke(sensor)
    descriptors_after, channels_after = open_descriptors(), live_channels()

    assert emulator.requests.count("GetPipelineVersionRun") >= 1050
    # gRPC shares one connection between channels to the same target, so an unclosed channel costs
    # memory rather than a socket: count both. A few descriptors may come and go with gRPC's own work.
    assert channels_after - channels_before <= 0
    assert descriptors_after - descriptors_before < 20
