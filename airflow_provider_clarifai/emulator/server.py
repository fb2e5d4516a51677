"""The gRPC side of the emulator: protobuf in, :mod:`.models` calls, protobuf out, faults on the way.

:class:`EmulatorServicer` subclasses the official ``V2Servicer``, so every RPC the emulator does not
implement answers UNIMPLEMENTED exactly as an empty servicer would. :class:`ClarifaiEmulator` serves it on a
real ``grpc.server`` bound to loopback, in the server's background threads, in plain text or over TLS.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent import futures
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from airflow_provider_clarifai.emulator.models import (
    CONN_THROTTLED,
    INTERNAL_SERVER_ISSUE,
    SUCCESS,
    ApiError,
    Backend,
    Faults,
    NewRun,
    RequestLog,
    RequestRecord,
    RunChange,
    RunSnapshot,
    VersionRef,
)
from airflow_provider_clarifai.emulator.scenario import (
    DEFAULT_RATE_LIMIT_PER_SECOND,
    FaultKind,
    RunState,
    Scenario,
    Scope,
    load_scenario,
)
from airflow_provider_clarifai.emulator.traffic import Holds, InFlightGauge

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.clock import Clock

__all__ = ["GARBAGE_BYTES", "ClarifaiEmulator", "EmulatorServicer"]

log = logging.getLogger(__name__)

SERVICE_NAME = "clarifai.api.V2"

#: What a ``garbage`` fault answers: field 1 announced with 127 bytes, followed by far fewer, so every
#: response type fails to parse it ("truncated message").
GARBAGE_BYTES = b"\x0a\x7f" + b"not a protobuf"

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


class _RawResponse:
    """Bytes to send as they are, bypassing protobuf serialization (the ``garbage`` fault)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _serialize(message: Any) -> bytes:
    if isinstance(message, _RawResponse):
        return message.data
    data: bytes = message.SerializeToString()
    return data


def _code(name: str) -> int:
    value: int = status_code_pb2.StatusCode.Value(name)
    return value


def _code_name(code: int) -> str:
    """The status code's name; unknown numbers stay numbers, so messages can show what was sent."""
    try:
        name: str = status_code_pb2.StatusCode.Name(code)
    except ValueError:
        return str(code)
    return name


def _status(code: str, description: str, details: str, req_id: str) -> Any:
    return status_pb2.Status(code=_code(code), description=description, details=details, req_id=req_id)


def _ok(req_id: str) -> Any:
    return _status(SUCCESS, "Ok", "", req_id)


def _error_status(error: ApiError, req_id: str) -> Any:
    return _status(error.code, error.description, error.details, req_id)


def _token_from(metadata: Any) -> str | None:
    """The PAT from ``authorization: Key <PAT>``; ``None`` when absent or malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization" or not isinstance(value, str):
            continue
        scheme, _, token = value.partition(" ")
        if scheme == "Key" and token.strip():
            return token.strip()
        return None
    return None


def _ref(request: Any) -> VersionRef:
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
    run.orchestration_status.status.code = _code(snapshot.state)
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


def _new_run(run: Any, runner_selector: Any) -> NewRun:
    """A run to create from a posted message: its own first nodepool wins over the runner selector
    (the official SDK sets the former, other clients the latter)."""
    nodepool = run.nodepools[0] if run.nodepools else runner_selector.nodepool
    parameters = run.input_args_override.argo_args_override.parameters
    return NewRun(
        id=run.id,
        input_args=tuple((parameter.name, parameter.value) for parameter in parameters),
        nodepool_id=nodepool.id,
        compute_cluster_id=nodepool.compute_cluster.id,
    )


Handler = Callable[[str, Any, str], Any]


class EmulatorServicer(service_pb2_grpc.V2Servicer):
    """The pipeline-run RPCs of ``clarifai.api.V2`` over a :class:`~.models.Backend`.

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

    # The RPCs. Each names its scope and response type; _serve does auth, faults and bookkeeping.

    def PostPipelineVersionRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "PostPipelineVersionRuns",
            Scope.WRITE,
            request,
            context,
            self._post,
            service_pb2.MultiPipelineVersionRunResponse,
        )

    def GetPipelineVersionRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "GetPipelineVersionRun",
            Scope.READ,
            request,
            context,
            self._get,
            service_pb2.SinglePipelineVersionRunResponse,
        )

    def ListPipelineVersionRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "ListPipelineVersionRuns",
            Scope.READ,
            request,
            context,
            self._list,
            service_pb2.MultiPipelineVersionRunResponse,
        )

    def PatchPipelineVersionRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "PatchPipelineVersionRuns",
            Scope.WRITE,
            request,
            context,
            self._patch,
            service_pb2.MultiPipelineVersionRunResponse,
        )

    def ListLogEntries(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "ListLogEntries", Scope.READ, request, context, self._logs, service_pb2.MultiLogEntryResponse
        )

    def GetUser(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._serve(
            "GetUser", Scope.READ, request, context, self._get_user, service_pb2.SingleUserResponse
        )

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The handlers of the implemented RPCs, with a serializer that can also send raw bytes.

        :return: method name -> handler.
        """
        requests = {
            "PostPipelineVersionRuns": service_pb2.PostPipelineVersionRunsRequest,
            "GetPipelineVersionRun": service_pb2.GetPipelineVersionRunRequest,
            "ListPipelineVersionRuns": service_pb2.ListPipelineVersionRunsRequest,
            "PatchPipelineVersionRuns": service_pb2.PatchPipelineVersionRunsRequest,
            "ListLogEntries": service_pb2.ListLogEntriesRequest,
            "GetUser": service_pb2.GetUserRequest,
        }
        return {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(self, name),
                request_deserializer=request_type.FromString,
                response_serializer=_serialize,
            )
            for name, request_type in requests.items()
        }

    # -- the common path --------------------------------------------------------------------------------

    def _serve(
        self,
        method: str,
        scope: Scope,
        request: Any,
        context: grpc.ServicerContext,
        handler: Handler,
        response_type: Any,
    ) -> Any:
        with self._in_flight:
            req_id = f"emu-{uuid.uuid4().hex}"
            deadline_seconds = context.time_remaining()
            token = _token_from(context.invocation_metadata())
            token_valid = self._backend.is_known_token(token)
            fault = self._faults.pick(method)
            kind = fault.kind if fault is not None else None

            def record(code: str | None, grpc_code: grpc.StatusCode) -> None:
                self._requests.append(
                    RequestRecord(method, token_valid, kind, code, grpc_code.name, req_id, deadline_seconds)
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
                # A throttle fault quotes the configured limit, or the real default when the limit is off.
                limit = self._backend.rate_limit_per_second or DEFAULT_RATE_LIMIT_PER_SECOND
                error = (
                    ApiError(INTERNAL_SERVER_ISSUE, "Internal error", "emulated fault: retry later")
                    if kind is FaultKind.INTERNAL
                    else ApiError(
                        CONN_THROTTLED,
                        f"exceeded limit of {limit} requests per second",
                        "emulated fault: wait before retrying",
                    )
                )
                record(error.code, grpc.StatusCode.OK)
                return response_type(status=_error_status(error, req_id))

            # A hold makes the request wait for the others it gathers, then all reach the backend together.
            self._holds.wait(method, self._stopping)
            try:
                caller = self._backend.authorize(token, scope)
                response = handler(caller, request, req_id)
            except ApiError as error:
                response = response_type(status=_error_status(error, req_id))
            code = _code_name(response.status.code)
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

    # -- the RPC bodies ---------------------------------------------------------------------------------

    def _post(self, caller: str, request: Any, req_id: str) -> Any:
        runs = [_new_run(run, request.runner_selector) for run in request.pipeline_version_runs]
        created = self._backend.post_runs(caller, _ref(request), runs)
        return service_pb2.MultiPipelineVersionRunResponse(
            status=_ok(req_id), pipeline_version_runs=[run_to_proto(run) for run in created]
        )

    def _get(self, caller: str, request: Any, req_id: str) -> Any:
        run = self._backend.get_run(caller, _ref(request), request.pipeline_version_run_id)
        return service_pb2.SinglePipelineVersionRunResponse(
            status=_ok(req_id), pipeline_version_run=run_to_proto(run)
        )

    def _list(self, caller: str, request: Any, req_id: str) -> Any:
        runs = self._backend.list_runs(
            caller,
            _ref(request),
            page=request.page,
            per_page=request.per_page,
            statuses=[_code_name(code) for code in request.status_codes],
            nodepool_id=request.nodepool_id,
            compute_cluster_id=request.compute_cluster_id,
        )
        return service_pb2.MultiPipelineVersionRunResponse(
            status=_ok(req_id), pipeline_version_runs=[run_to_proto(run) for run in runs]
        )

    def _patch(self, caller: str, request: Any, req_id: str) -> Any:
        changes = [
            RunChange(run_id=run.id, target=_code_name(run.orchestration_status.status.code))
            for run in request.pipeline_version_runs
        ]
        result = self._backend.patch_runs(caller, _ref(request), request.action, changes)
        response = service_pb2.MultiPipelineVersionRunResponse(
            status=_status(result.code, result.description, result.details, req_id)
        )
        for outcome in result.outcomes:
            if outcome.run is not None:
                response.pipeline_version_runs.append(run_to_proto(outcome.run))
            else:
                assert outcome.error is not None
                rejected = response.pipeline_version_runs.add(id=outcome.run_id)
                # An error code here (never a JOB_* code) tells the client this run was not changed.
                rejected.orchestration_status.status.CopyFrom(_error_status(outcome.error, req_id))
        return response

    def _logs(self, caller: str, request: Any, req_id: str) -> Any:
        page = self._backend.list_logs(
            caller,
            _ref(request),
            request.pipeline_version_run_id,
            log_type=request.log_type,
            page=request.page,
            per_page=request.per_page,
        )
        return service_pb2.MultiLogEntryResponse(
            status=_ok(req_id),
            log_entries=[
                resources_pb2.LogEntry(message=line.message, log_type=request.log_type, url=line.url)
                for line in page.entries
            ],
            page=page.page,
            per_page=page.per_page,
        )

    def _get_user(self, caller: str, request: Any, req_id: str) -> Any:
        user_id = self._backend.get_user(caller, request.user_app_id.user_id)
        return service_pb2.SingleUserResponse(status=_ok(req_id), user=resources_pb2.User(id=user_id))


def _register(servicer: EmulatorServicer, server: grpc.Server) -> None:
    handlers = servicer.method_handlers()
    # Ours first: the server asks generic handlers in order, so the base servicer's (registered next,
    # answering UNIMPLEMENTED for everything else) never sees the implemented methods.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    service_pb2_grpc.add_V2Servicer_to_server(servicer, server)
    # Newer generated code may register its handlers per method, and those win over generic ones;
    # registering ours the same way, afterwards, keeps the raw-bytes serializer in charge.
    add_registered = getattr(server, "add_registered_method_handlers", None)
    if add_registered is not None:
        add_registered(SERVICE_NAME, handlers)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _pem(value: bytes | str | os.PathLike[str], what: str) -> bytes:
    """PEM bytes as given, or read from a path (a ``str`` holding a PEM block counts as PEM text)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("ascii")
    try:
        with open(value, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ValueError(f"cannot read {what} {os.fspath(value)!r}: {error.strerror}") from None


class ClarifaiEmulator:
    """A local Clarifai API serving the pipeline-run RPCs over real gRPC.

    >>> with ClarifaiEmulator(clock=ManualClock()) as emulator:  # doctest: +SKIP
    ...     channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=emulator.port)

    With ``tls_cert`` and ``tls_key`` it serves TLS instead of plain text: ``base_url`` is then
    ``https://...`` and :meth:`airflow_connection` names the file clients must trust in the connection's
    ``root_certificates_path`` extra.

    :param scenario: ``None`` for the bundled default scenario, a :class:`Scenario`, a mapping in the
        scenario format, a path to a YAML file or YAML text.
    :param clock: the lifecycle clock (default: real time, :class:`~.clock.WallClock`).
    :param rate_limit_clock: the rate limiter's clock (default: the real monotonic clock).
    :param host: the address to bind.
    :param port: the port to bind; 0 picks a free one.
    :param max_workers: threads serving requests.
    :param hang_limit_seconds: the longest a ``hang`` fault holds a request.
    :param tls_cert: the server's certificate chain, PEM: a path, or the PEM as bytes. Read once, here, so
        :meth:`restart` serves the same certificate even if the file changes.
    :param tls_key: the private key of ``tls_cert``, PEM: a path or bytes. Give both or neither.
    :param tls_root_certificates_path: the PEM file of the CA clients should trust, put into
        :meth:`airflow_connection`'s ``root_certificates_path``; default: ``tls_cert`` when it is a path
        (right for a self-signed certificate), else none (pass it through ``conn_extra`` then).
    :param max_message_bytes: the largest message the server receives or sends (gRPC's default: 4 MB
        received, no limit sent); set it small to see how a client handles an oversized message.
    :raises ValueError: only one of ``tls_cert`` and ``tls_key``, or one cannot be read.
    """

    def __init__(
        self,
        scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        rate_limit_clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 32,
        hang_limit_seconds: float = 60.0,
        *,
        tls_cert: bytes | str | os.PathLike[str] | None = None,
        tls_key: bytes | str | os.PathLike[str] | None = None,
        tls_root_certificates_path: str | os.PathLike[str] | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both tls_cert and tls_key for TLS, or neither for plain text")
        # The private key and certificate chain served (PEM), or None for plain text.
        self._tls_pair: tuple[bytes, bytes] | None = None
        #: The file clients should trust, put into airflow_connection() (None: the caller says).
        self.tls_root_certificates_path: str | None = None
        if tls_cert is not None and tls_key is not None:
            self._tls_pair = (_pem(tls_key, "tls_key"), _pem(tls_cert, "tls_cert"))
            roots = tls_root_certificates_path
            if roots is None and not isinstance(tls_cert, bytes) and "-----BEGIN" not in str(tls_cert):
                roots = tls_cert
            self.tls_root_certificates_path = None if roots is None else os.fspath(roots)
        if max_message_bytes is not None and (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or max_message_bytes < 1
        ):
            raise ValueError(f"max_message_bytes must be a positive whole number, got {max_message_bytes!r}")
        self._max_message_bytes = max_message_bytes
        self.scenario = load_scenario(scenario)
        self.backend = Backend(self.scenario, clock=clock, rate_limit_clock=rate_limit_clock)
        self.clock = self.backend.clock
        self.faults = Faults(self.scenario.faults, seed=self.scenario.fault_seed)
        self.requests = RequestLog()
        #: Rendezvous that make requests wait for each other (:meth:`~.traffic.Holds.add`).
        self.holds = Holds()
        #: Requests being handled now, and the most ever handled at once.
        self.in_flight = InFlightGauge()
        #: How many times :meth:`restart` brought the server back.
        self.restarts = 0
        self.host = host
        self._requested_port = port
        self._max_workers = max_workers
        self._hang_limit_seconds = hang_limit_seconds
        self._port: int | None = None
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._lifecycle_lock = threading.Lock()

    def start(self) -> ClarifaiEmulator:
        """Bind the port and start serving in background threads.

        :return: the emulator itself.
        :raises RuntimeError: if it was already started (an emulator cannot be started twice; see
            :meth:`restart` to bring a running one down and up again).
        :raises OSError: if the address cannot be bound.
        """
        with self._lifecycle_lock:
            if self._server is not None or self._closed:
                raise RuntimeError("this emulator was already started; create a new one")
            self._serve(self._requested_port)
            return self

    def _serve(self, port: int) -> None:
        """Start a gRPC server on ``port`` over the shared state; the caller holds the lifecycle lock."""
        executor = futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="clarifai-emulator"
        )
        # Without SO_REUSEPORT off, a second emulator could bind a port already served and silently
        # receive part of its traffic.
        options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        if self._max_message_bytes is not None:
            options += [
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
            ]
        server = grpc.server(executor, options=options)
        servicer = EmulatorServicer(
            self.backend,
            self.faults,
            self.requests,
            self._stopping,
            self._hang_limit_seconds,
            holds=self.holds,
            in_flight=self.in_flight,
        )
        _register(servicer, server)
        address = _format_address(self.host, port)
        try:
            if self._tls_pair is None:
                bound = server.add_insecure_port(address)
            else:
                # Built afresh from the PEM kept since __init__, so a restart serves TLS as before.
                credentials = grpc.ssl_server_credentials([self._tls_pair])
                bound = server.add_secure_port(address, credentials)
        except RuntimeError as error:  # recent grpcio raises; older ones return 0
            bound = 0
            reason = str(error)
        else:
            reason = "the port may be in use"
        if bound == 0 and self._tls_pair is not None:
            # gRPC reports a certificate and key it cannot use as a failure to bind, and nothing more.
            reason += "; or tls_cert and tls_key are not a matching PEM certificate and private key"
        if bound == 0:
            executor.shutdown(wait=False)
            raise OSError(f"cannot bind the Clarifai emulator to {address}: {reason}")
        server.start()
        self._server, self._executor, self._port = server, executor, bound
        log.info("Clarifai emulator listening on %s", self.address)

    def _shut_down(self, grace: float | None) -> None:
        """Stop the current server, if any, releasing held requests; the state is kept."""
        with self._lifecycle_lock:
            self._stopping.set()
            server, executor = self._server, self._executor
            self._server = self._executor = None
        if server is not None:
            server.stop(grace).wait()
        if executor is not None:
            executor.shutdown(wait=True)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; requests held by ``hang`` or ``latency`` faults are released. Safe to call twice.

        :param grace: seconds given to requests in flight before they are cancelled.
        """
        self._closed = True
        self._shut_down(grace)

    def restart(self, downtime_seconds: float = 0.0, grace: float | None = 0.0) -> None:
        """Crash and come back on the same port, as a service restarting behind a fixed address.

        Requests in flight are cut off (clients see UNAVAILABLE or CANCELLED), requests during the downtime
        find nothing listening, and the state (runs, tokens, faults, the request log) survives, as a
        real service's database would.

        :param downtime_seconds: real seconds with nothing listening.
        :param grace: seconds given to requests in flight before they are cut off.
        :raises RuntimeError: if the emulator is not running.
        :raises OSError: if the port cannot be bound again.
        """
        if self._server is None or self._closed:
            raise RuntimeError("only a running emulator can be restarted")
        port = self.port
        self._shut_down(grace)
        if downtime_seconds > 0:
            time.sleep(downtime_seconds)
        with self._lifecycle_lock:
            if self._closed:
                return
            self._stopping = threading.Event()
            self._serve(port)
            self.restarts += 1

    def __enter__(self) -> ClarifaiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port.

        :raises RuntimeError: before :meth:`start`.
        """
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port``, e.g. ``"127.0.0.1:50051"``, as gRPC channels want it."""
        return _format_address(self.host, self.port)

    @property
    def tls(self) -> bool:
        """Whether the emulator serves TLS."""
        return self._tls_pair is not None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (plain text) or ``https://host:port`` (TLS), in the SDK's base-URL
        convention."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def token(self) -> str:
        """The scenario's first token."""
        return self.scenario.tokens[0].token

    def airflow_connection(self, conn_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The Airflow connection that points at this emulator, as a dict.

        Over TLS, ``extra`` names the file to trust as ``root_certificates_path`` (see
        ``tls_root_certificates_path``); a ``root_certificates_path`` in ``conn_extra`` wins.

        :param conn_extra: the connection's ``extra`` (default: empty; over TLS, the root certificates).
        :return: ``{"conn_type": "clarifai", "host": base_url, "password": token, "extra": {...}}``.
        """
        extra: dict[str, Any] = {}
        if self.tls and self.tls_root_certificates_path is not None:
            extra["root_certificates_path"] = self.tls_root_certificates_path
        extra.update(conn_extra or {})
        return {"conn_type": "clarifai", "host": self.base_url, "password": self.token, "extra": extra}

    def airflow_connection_env(
        self, conn_id: str = "clarifai_default", conn_extra: Mapping[str, Any] | None = None
    ) -> tuple[str, str]:
        """The environment variable that defines :meth:`airflow_connection` for Airflow.

        :param conn_id: the connection id.
        :param conn_extra: the connection's ``extra``.
        :return: the variable's name (``AIRFLOW_CONN_<CONN_ID>``) and its JSON value.
        """
        return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(self.airflow_connection(conn_extra))

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"ClarifaiEmulator({where}, scenario={self.scenario.source!r})"
