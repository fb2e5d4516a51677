"""DAG files import the operators, sensors and event trigger at every parse: gRPC must not come along."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import airflow_provider_clarifai.operators.clarifai as operators
import airflow_provider_clarifai.sensors.clarifai as sensors
operators.ClarifaiPausePipelineRunOperator(
    task_id="p", run_ids=["r"], pipeline_id="p", pipeline_version_id="v"
)
operators.ClarifaiRunPipelineOperator(task_id="s", pipeline_id="p", pipeline_version_id="v")
sensors.ClarifaiPipelineRunSensor(task_id="w", pipeline_version_run_id="r")
import airflow_provider_clarifai.sensors.drained as drained
drained.ClarifaiDrainedSensor(
    task_id="d", drained_of=["RUNNING"], scope="nodepool", compute_cluster_id="c", nodepool_id="n"
)
try:  # Airflow 3: an asset watcher's trigger is built at every parse
    import airflow_provider_clarifai.triggers.events as events
except ImportError:
    pass
else:
    events.ClarifaiPipelineRunEventTrigger(pipeline_id="p", pipeline_version_id="v")
heavy = ("grpc", "clarifai_grpc", "google.protobuf", "airflow_provider_clarifai.hooks._transport")
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def test_importing_and_building_tasks_loads_no_grpc():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
