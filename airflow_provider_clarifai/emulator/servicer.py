"""The gRPC side of the emulator: the table of the RPCs it answers, and the servicer that serves them.

:data:`RPCS` is the one place an RPC is declared: its scope, request and response messages, the body that
answers it, and the run ids it names. The servicer's methods, its gRPC method handlers and their
registration on a server are all derived from it.

:class:`EmulatorServicer` subclasses the official ``V2Servicer``, so every RPC the emulator does not
implement answers UNIMPLEMENTED exactly as an empty servicer would. Each request goes the same way
(:meth:`EmulatorServicer.handle`): faults, holds, authorization, the body, and a record in the request log.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc

from airflow_provider_clarifai.emulator.domain import (
    DEFAULT_RATE_LIMIT_PER_SECOND,
    IMPLEMENTED_METHODS,
    FaultKind,
    Scope,
)
from airflow_provider_clarifai.emulator.errors import CONN_THROTTLED, INTERNAL_SERVER_ISSUE, ApiError
from airflow_provider_clarifai.emulator.models import Backend, Faults, RequestLog, RequestRecord, RunChange
from airflow_provider_clarifai.emulator.protos import (
    code_name,
    error_status,
    new_run,
    ok,
    pipeline_to_proto,
    run_to_proto,
    status,
    token_from,
    version_ref,
    version_to_proto,
)
from airflow_provider_clarifai.emulator.traffic import Holds, InFlightGauge

__all__ = ["GARBAGE_BYTES", "RPCS", "SERVICE_NAME", "EmulatorServicer", "Rpc", "run_to_proto"]

log = logging.getLogger(__name__)

SERVICE_NAME = "clarifai.api.V2"

#: What a ``garbage`` fault answers: field 1 announced with 127 bytes, followed by far fewer, so every
#: response type fails to parse it ("truncated message").
GARBAGE_BYTES = b"\x0a\x7f" + b"not a protobuf"


# -- the RPC bodies: (backend, caller, request, req_id) -> response; they raise ApiError ------------------


def _post(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    runs = [new_run(run, request.runner_selector) for run in request.pipeline_version_runs]
    created = backend.post_runs(caller, version_ref(request), runs)
    return service_pb2.MultiPipelineVersionRunResponse(
        status=ok(req_id), pipeline_version_runs=[run_to_proto(run) for run in created]
    )


def _get(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    run = backend.get_run(caller, version_ref(request), request.pipeline_version_run_id)
    return service_pb2.SinglePipelineVersionRunResponse(
        status=ok(req_id), pipeline_version_run=run_to_proto(run)
    )


def _list(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    runs = backend.list_runs(
        caller,
        version_ref(request),
        page=request.page,
        per_page=request.per_page,
        statuses=[code_name(number) for number in request.status_codes],
        nodepool_id=request.nodepool_id,
        compute_cluster_id=request.compute_cluster_id,
    )
    return service_pb2.MultiPipelineVersionRunResponse(
        status=ok(req_id), pipeline_version_runs=[run_to_proto(run) for run in runs]
    )


def _patch(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    changes = [
        RunChange(run_id=run.id, target=code_name(run.orchestration_status.status.code))
        for run in request.pipeline_version_runs
    ]
    result = backend.patch_runs(caller, version_ref(request), request.action, changes)
    response = service_pb2.MultiPipelineVersionRunResponse(
        status=status(result.code, result.description, result.details, req_id)
    )
    for outcome in result.outcomes:
        if outcome.error is not None:
            rejected = response.pipeline_version_runs.add(id=outcome.run_id)
            # An error code here (never a JOB_* code) tells the client this run was not changed.
            rejected.orchestration_status.status.CopyFrom(error_status(outcome.error, req_id))
        elif outcome.run is not None:
            response.pipeline_version_runs.append(run_to_proto(outcome.run))
        else:
            raise RuntimeError(f"the Patch outcome of run {outcome.run_id!r} has no run and no error")
    return response


def _logs(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    page = backend.list_logs(
        caller,
        version_ref(request),
        request.pipeline_version_run_id,
        log_type=request.log_type,
        page=request.page,
        per_page=request.per_page,
    )
    return service_pb2.MultiLogEntryResponse(
        status=ok(req_id),
        log_entries=[
            resources_pb2.LogEntry(message=line.message, log_type=request.log_type, url=line.url)
            for line in page.entries
        ],
        page=page.page,
        per_page=page.per_page,
    )


def _get_user(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    user_id = backend.get_user(caller, request.user_app_id.user_id)
    return service_pb2.SingleUserResponse(status=ok(req_id), user=resources_pb2.User(id=user_id))


def _list_pipelines(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    user_app = request.user_app_id
    pipelines = backend.list_pipelines(
        caller, user_app.user_id, user_app.app_id, page=request.page, per_page=request.per_page
    )
    return service_pb2.MultiPipelineResponse(
        status=ok(req_id), pipelines=[pipeline_to_proto(pipeline) for pipeline in pipelines]
    )


def _list_versions(backend: Backend, caller: str, request: Any, req_id: str) -> Any:
    user_app = request.user_app_id
    versions = backend.list_versions(
        caller,
        user_app.user_id,
        user_app.app_id,
        request.pipeline_id,
        page=request.page,
        per_page=request.per_page,
    )
    return service_pb2.MultiPipelineVersionResponse(
        status=ok(req_id), pipeline_versions=[version_to_proto(version) for version in versions]
    )


def _named_run(request: Any) -> tuple[str, ...]:
    return (request.pipeline_version_run_id,)


def _listed_runs(request: Any) -> tuple[str, ...]:
    return tuple(run.id for run in request.pipeline_version_runs)


def _no_runs(request: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Rpc:
    """One RPC the emulator answers.

    :param scope: what the caller's token needs.
    :param request_type: the request message class.
    :param response_type: the response message class; errors are answered in its ``status``.
    :param body: answers a request: ``body(backend, caller, request, req_id) -> response``; raises
        :class:`~.errors.ApiError`.
    :param run_ids: the run ids a request names, for the request log.
    """

    scope: Scope
    request_type: Any
    response_type: Any
    body: Callable[[Backend, str, Any, str], Any]
    run_ids: Callable[[Any], tuple[str, ...]]


#: The RPCs the emulator answers, by name: the one table the servicer is built from.
RPCS: dict[str, Rpc] = {
    "PostPipelineVersionRuns": Rpc(
        Scope.WRITE,
        service_pb2.PostPipelineVersionRunsRequest,
        service_pb2.MultiPipelineVersionRunResponse,
        _post,
        _listed_runs,
    ),
    "GetPipelineVersionRun": Rpc(
        Scope.READ,
        service_pb2.GetPipelineVersionRunRequest,
        service_pb2.SinglePipelineVersionRunResponse,
        _get,
        _named_run,
    ),
    "ListPipelineVersionRuns": Rpc(
        Scope.READ,
        service_pb2.ListPipelineVersionRunsRequest,
        service_pb2.MultiPipelineVersionRunResponse,
        _list,
        _no_runs,
    ),
    "PatchPipelineVersionRuns": Rpc(
        Scope.WRITE,
        service_pb2.PatchPipelineVersionRunsRequest,
        service_pb2.MultiPipelineVersionRunResponse,
        _patch,
        _listed_runs,
    ),
    "ListLogEntries": Rpc(
        Scope.READ, service_pb2.ListLogEntriesRequest, service_pb2.MultiLogEntryResponse, _logs, _named_run
    ),
    "GetUser": Rpc(
        Scope.READ, service_pb2.GetUserRequest, service_pb2.SingleUserResponse, _get_user, _no_runs
    ),
    "ListPipelines": Rpc(
        Scope.READ,
        service_pb2.ListPipelinesRequest,
        service_pb2.MultiPipelineResponse,
        _list_pipelines,
        _no_runs,
    ),
    "ListPipelineVersions": Rpc(
        Scope.READ,
        service_pb2.ListPipelineVersionsRequest,
        service_pb2.MultiPipelineVersionResponse,
        _list_versions,
        _no_runs,
    ),
}

if tuple(RPCS) != IMPLEMENTED_METHODS:
    # The scenario format validates fault methods against the names alone, without importing gRPC.
    raise ImportError(
        f"the servicer's RPC table {tuple(RPCS)} does not match domain.IMPLEMENTED_METHODS "
        f"{IMPLEMENTED_METHODS}; declare each RPC in both, in the same order"
    )


class _RawResponse:
    """Bytes to send as they are, bypassing protobuf serialization (the ``garbage`` fault)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _serialize(message: Any) -> bytes:
    if isinstance(message, _RawResponse):
        return message.data
    data: bytes = message.SerializeToString()
    return data


class EmulatorServicer(service_pb2_grpc.V2Servicer):
    """The RPCs of :data:`RPCS` over a :class:`~.models.Backend`; one method per RPC, named after it.

    :param backend: the state.
    :param faults: the faults to apply.
    :param requests: where each request is recorded.
    :param stopping: set when the server stops; releases ``hang``, ``latency`` and hold waits.
    :param hang_limit_seconds: the longest a ``hang`` fault holds a request.
    :param holds: rendezvous that make requests wait for each other (default: none).
    :param in_flight: counts the requests being handled (default: a private gauge).
    """

    def __init__(
        self,
        backend: Backend,
        faults: Faults,
        requests: RequestLog,
        stopping: threading.Event,
        hang_limit_seconds: float = 60.0,
        holds: Holds | None = None,
        in_flight: InFlightGauge | None = None,
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._requests = requests
        self._stopping = stopping
        self._hang_limit_seconds = hang_limit_seconds
        self._holds = holds if holds is not None else Holds()
        self._in_flight = in_flight if in_flight is not None else InFlightGauge()

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The handlers of the RPCs of :data:`RPCS`, with a serializer that can also send raw bytes.

        :return: method name -> handler.
        """
        return {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(self, name),
                request_deserializer=rpc.request_type.FromString,
                response_serializer=_serialize,
            )
            for name, rpc in RPCS.items()
        }

    def register(self, server: grpc.Server) -> None:
        """Serve this servicer on ``server``: the RPCs of :data:`RPCS`, and UNIMPLEMENTED for the rest.

        :param server: a server not started yet.
        """
        handlers = self.method_handlers()
        # Ours first: the server asks generic handlers in order, so the base servicer's (registered next,
        # answering UNIMPLEMENTED for everything else) never sees the implemented methods.
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        service_pb2_grpc.add_V2Servicer_to_server(self, server)
        # Newer generated code may register its handlers per method, and those win over generic ones;
        # registering ours the same way, afterwards, keeps the raw-bytes serializer in charge.
        add_registered = getattr(server, "add_registered_method_handlers", None)
        if add_registered is not None:
            add_registered(SERVICE_NAME, handlers)

    def handle(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        """Answer one request: faults, holds, authorization, the RPC's body, and a request-log record.

        :param method: the RPC name, a key of :data:`RPCS`.
        :param request: the request message.
        :param context: the call's context.
        :return: the response message (or raw bytes, for a ``garbage`` fault).
        """
        rpc = RPCS[method]
        with self._in_flight:
            req_id = f"emu-{uuid.uuid4().hex}"
            deadline_seconds = context.time_remaining()
            token = token_from(context.invocation_metadata())
            token_valid = self._backend.is_known_token(token)
            run_ids = rpc.run_ids(request)
            fault = self._faults.pick(method)
            kind = fault.kind if fault is not None else None

            def record(code: str | None, grpc_code: grpc.StatusCode) -> None:
                self._requests.append(
                    RequestRecord(
                        method, token_valid, kind, code, grpc_code.name, req_id, deadline_seconds, run_ids
                    )
                )
                log.debug(
                    "%s -> %s (gRPC %s, fault %s, req_id %s)", method, code, grpc_code.name, kind, req_id
                )

            # Faults that strike before the request reaches the backend, which therefore never changes.
            if fault is not None and kind is FaultKind.LATENCY:
                # Real time, outside the backend lock; a stopping server cuts it short.
                self._stopping.wait(fault.latency_seconds)
            elif kind is FaultKind.UNAVAILABLE:
                record(None, grpc.StatusCode.UNAVAILABLE)
                context.abort(grpc.StatusCode.UNAVAILABLE, "emulated fault: service unavailable")
            elif kind is FaultKind.DEADLINE:
                record(None, grpc.StatusCode.DEADLINE_EXCEEDED)
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "emulated fault: deadline exceeded")
            elif kind is FaultKind.HANG:
                self._hang(context)
                record(None, grpc.StatusCode.DEADLINE_EXCEEDED)
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "emulated fault: the server never answered")
            elif kind is FaultKind.GARBAGE:
                record(None, grpc.StatusCode.OK)
                return _RawResponse(GARBAGE_BYTES)
            elif kind in (FaultKind.INTERNAL, FaultKind.THROTTLE):
                error = _injected_error(kind, self._backend.rate_limit_per_second)
                record(error.code, grpc.StatusCode.OK)
                return rpc.response_type(status=error_status(error, req_id))

            # A hold makes the request wait for the others it gathers, then all reach the backend together.
            self._holds.wait(method, self._stopping)
            try:
                caller = self._backend.authorize(token, rpc.scope)
                response = rpc.body(self._backend, caller, request, req_id)
            except ApiError as error:
                response = rpc.response_type(status=error_status(error, req_id))
            code = code_name(response.status.code)
            if kind is FaultKind.UNAVAILABLE_AFTER:
                # The state has changed, but the client never learns how: a reply lost on the network.
                record(code, grpc.StatusCode.UNAVAILABLE)
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, "emulated fault: connection lost after the request"
                )
            record(code, grpc.StatusCode.OK)
            return response

    def _hang(self, context: grpc.ServicerContext) -> None:
        """Hold the request until the client gives up (its deadline), the server stops, or the limit."""
        released = threading.Event()
        # Called when the RPC ends, e.g. at the client's deadline; False means it has already ended.
        if not context.add_callback(released.set):
            return
        waited = 0.0
        step = 0.05
        while not released.is_set() and not self._stopping.is_set() and waited < self._hang_limit_seconds:
            released.wait(step)
            waited += step


def _injected_error(kind: FaultKind, rate_limit_per_second: int | None) -> ApiError:
    if kind is FaultKind.INTERNAL:
        return ApiError(INTERNAL_SERVER_ISSUE, "Internal error", "emulated fault: retry later")
    # A throttle fault quotes the configured limit, or the real default when the limit is off.
    limit = rate_limit_per_second or DEFAULT_RATE_LIMIT_PER_SECOND
    return ApiError(
        CONN_THROTTLED,
        f"exceeded limit of {limit} requests per second",
        "emulated fault: wait before retrying",
    )


def _rpc_method(name: str) -> Callable[[EmulatorServicer, Any, grpc.ServicerContext], Any]:
    def method(self: EmulatorServicer, request: Any, context: grpc.ServicerContext) -> Any:
        return self.handle(name, request, context)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Answer ``{name}`` (see :data:`RPCS`)."
    return method


for _name in RPCS:
    setattr(EmulatorServicer, _name, _rpc_method(_name))
