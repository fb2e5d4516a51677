"""What the installed clarifai-grpc can report, for tests that run on the oldest and newest releases."""

from __future__ import annotations

from clarifai_grpc.grpc.api import resources_pb2

#: started_at, ended_at and total_run_duration arrived in clarifai-grpc 12.0.2; older releases cannot
#: carry them, so run summaries have None there.
RUN_TIMES_REPORTED = "started_at" in resources_pb2.PipelineVersionRun.DESCRIPTOR.fields_by_name
