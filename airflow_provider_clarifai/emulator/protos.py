"""Protobuf in and out: the emulator's values as ``clarifai_grpc`` messages, and back.

Nothing here decides anything: the rules are the backend's (:mod:`.models`), the serving is the
servicer's (:mod:`.servicer`).
"""

from __future__ import annotations

import json
from typing import Any

from clarifai_grpc.grpc.api import resources_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from airflow_provider_clarifai.emulator.domain import RunState
from airflow_provider_clarifai.emulator.errors import SUCCESS, ApiError
from airflow_provider_clarifai.emulator.lifecycle import RunSnapshot, VersionRef
from airflow_provider_clarifai.emulator.values import NewRun, PipelineRecord, VersionRecord

__all__ = [
    "code",
    "code_name",
    "error_status",
    "new_run",
    "ok",
    "pipeline_to_proto",
    "run_to_proto",
    "status",
    "token_from",
    "version_ref",
    "version_to_proto",
]

# started_at, ended_at and total_run_duration appeared in clarifai-grpc 12.0.2; older releases (down to
# 11.11.3, the first with JOB_PAUSED) lack them, so they are set only where the message has them.
_HAS_RUN_TIMING = "started_at" in resources_pb2.PipelineVersionRun.DESCRIPTOR.fields_by_name

# A rough Argo phase for argo_status, for clients that display it.
_ARGO_PHASES = {
    RunState.QUEUED: "Pending",
    RunState.RUNNING: "Running",
    RunState.PAUSED: "Running",
    RunState.COMPLETED: "Succeeded",
    RunState.FAILED: "Failed",
    RunState.CANCELLED: "Failed",
    RunState.UNEXPECTED_ERROR: "Error",
    RunState.CONFLICT: "Pending",
}


def code(name: str) -> int:
    """The number of a status code.

    :param name: a ``status_code_pb2`` name, e.g. ``"SUCCESS"``.
    :return: its number.
    """
    value: int = status_code_pb2.StatusCode.Value(name)
    return value


def code_name(number: int) -> str:
    """The name of a status code; unknown numbers stay numbers, so messages can show what was sent.

    :param number: the code.
    :return: its ``status_code_pb2`` name, or the number as text.
    """
    try:
        name: str = status_code_pb2.StatusCode.Name(number)
    except ValueError:
        return str(number)
    return name


def status(name: str, description: str, details: str, req_id: str) -> Any:
    """A ``Status`` message.

    :param name: the status code name.
    :param description: the short description.
    :param details: what the caller can do.
    :param req_id: the request id.
    :return: a ``status_pb2.Status``.
    """
    return status_pb2.Status(code=code(name), description=description, details=details, req_id=req_id)


def ok(req_id: str) -> Any:
    """The ``Status`` of a successful request.

    :param req_id: the request id.
    :return: a ``status_pb2.Status`` with code SUCCESS.
    """
    return status(SUCCESS, "Ok", "", req_id)


def error_status(error: ApiError, req_id: str) -> Any:
    """The ``Status`` of an application error.

    :param error: the error.
    :param req_id: the request id.
    :return: a ``status_pb2.Status``.
    """
    return status(error.code, error.description, error.details, req_id)


def token_from(metadata: Any) -> str | None:
    """The PAT of ``authorization: Key <PAT>`` metadata.

    :param metadata: the call's invocation metadata, as (key, value) pairs.
    :return: the token; ``None`` when absent or malformed.
    """
    for key, value in metadata or ():
        if key.lower() != "authorization" or not isinstance(value, str):
            continue
        scheme, _, token = value.partition(" ")
        if scheme == "Key" and token.strip():
            return token.strip()
        return None
    return None


def version_ref(request: Any) -> VersionRef:
    """The pipeline version a request names.

    :param request: a request with ``user_app_id``, ``pipeline_id`` and ``pipeline_version_id``.
    :return: its ids.
    """
    return VersionRef(
        user_id=request.user_app_id.user_id,
        app_id=request.user_app_id.app_id,
        pipeline_id=request.pipeline_id,
        version_id=request.pipeline_version_id,
    )


def _set_time(timestamp: Any, seconds: float) -> None:
    timestamp.FromNanoseconds(round(seconds * 1e9))


def run_to_proto(snapshot: RunSnapshot) -> Any:
    """Build the ``PipelineVersionRun`` message for a run.

    :param snapshot: the run.
    :return: a ``resources_pb2.PipelineVersionRun``.
    """
    run = resources_pb2.PipelineVersionRun(id=snapshot.id, user_id=snapshot.user_id, app_id=snapshot.app_id)
    run.pipeline_version.id = snapshot.pipeline_version_id
    run.pipeline_version.pipeline_id = snapshot.pipeline_id
    run.pipeline_version.user_id = snapshot.user_id
    run.pipeline_version.app_id = snapshot.app_id
    run.orchestration_status.status.code = code(snapshot.state)
    run.orchestration_status.status.description = f"Run is {snapshot.state}"
    run.orchestration_status.argo_status.status = json.dumps({"phase": _ARGO_PHASES[snapshot.state]})
    _set_time(run.created_at, snapshot.created_at)
    _set_time(run.modified_at, snapshot.modified_at)
    if _HAS_RUN_TIMING:
        if snapshot.started_at is not None:
            _set_time(run.started_at, snapshot.started_at)
            run.total_run_duration.FromNanoseconds(round(snapshot.active_seconds * 1e9))
        if snapshot.ended_at is not None:
            _set_time(run.ended_at, snapshot.ended_at)
    for name, value in snapshot.input_args:
        run.input_args_override.argo_args_override.parameters.add(name=name, value=value)
    if snapshot.nodepool_id or snapshot.compute_cluster_id:
        nodepool = run.nodepools.add(id=snapshot.nodepool_id)
        nodepool.compute_cluster.id = snapshot.compute_cluster_id
        nodepool.compute_cluster.user_id = snapshot.user_id
    return run


def pipeline_to_proto(record: PipelineRecord) -> Any:
    """Build the ``Pipeline`` message ListPipelines serves.

    :param record: the pipeline.
    :return: a ``resources_pb2.Pipeline``.
    """
    pipeline = resources_pb2.Pipeline(id=record.pipeline_id, user_id=record.user_id, app_id=record.app_id)
    _set_time(pipeline.created_at, record.created_at)
    _set_time(pipeline.modified_at, record.created_at)
    return pipeline


def version_to_proto(record: VersionRecord) -> Any:
    """Build the ``PipelineVersion`` message ListPipelineVersions serves.

    :param record: the pipeline version.
    :return: a ``resources_pb2.PipelineVersion``.
    """
    version = resources_pb2.PipelineVersion(
        id=record.version_id, pipeline_id=record.pipeline_id, app_id=record.app_id, user_id=record.user_id
    )
    _set_time(version.created_at, record.created_at)
    _set_time(version.modified_at, record.created_at)
    return version


def new_run(run: Any, runner_selector: Any) -> NewRun:
    """A run to create from a posted message: its own first nodepool wins over the runner selector (the
    official SDK sets the former, other clients the latter).

    :param run: the posted ``PipelineVersionRun``.
    :param runner_selector: the request's ``runner_selector``.
    :return: the run to create.
    """
    nodepool = run.nodepools[0] if run.nodepools else runner_selector.nodepool
    parameters = run.input_args_override.argo_args_override.parameters
    return NewRun(
        id=run.id,
        input_args=tuple((parameter.name, parameter.value) for parameter in parameters),
        nodepool_id=nodepool.id,
        compute_cluster_id=nodepool.compute_cluster.id,
    )
