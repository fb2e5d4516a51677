"""The emulator users drive: :class:`ClarifaiEmulator` serves the pipeline-run RPCs on real gRPC.

It owns the state (:mod:`.models`), the faults and the request log (:mod:`.traffic`), and a
``grpc.server`` bound to loopback, in plain text or over TLS, that serves :class:`.servicer.EmulatorServicer`
in background threads; it can be stopped, and restarted on the same port with its state intact. What a
test reads and changes on it (runs, states, scripts, the rate limit, the clock) is in :mod:`.inspection`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from concurrent import futures
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from airflow_provider_clarifai.emulator.inspection import EmulatorInspection
from airflow_provider_clarifai.emulator.models import Backend, Faults, RequestLog
from airflow_provider_clarifai.emulator.scenario import Scenario, load_scenario
from airflow_provider_clarifai.emulator.servicer import GARBAGE_BYTES, EmulatorServicer, run_to_proto
from airflow_provider_clarifai.emulator.traffic import Holds, InFlightGauge

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.clock import Clock

# EmulatorServicer, GARBAGE_BYTES and run_to_proto live in .servicer; they are importable from here too.
__all__ = ["GARBAGE_BYTES", "ClarifaiEmulator", "EmulatorServicer", "run_to_proto"]

log = logging.getLogger(__name__)


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


class ClarifaiEmulator(EmulatorInspection):
    """A local Clarifai API serving the pipeline-run RPCs over real gRPC.

    >>> with ClarifaiEmulator(clock=ManualClock()) as emulator:  # doctest: +SKIP
    ...     channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=emulator.port)
    ...     ...
    ...     emulator.advance(3600)
    ...     assert emulator.run("my-run").state == "JOB_COMPLETED"
    ...     assert len(emulator.requests(method="PostPipelineVersionRuns")) == 1

    The methods that read and change runs (``runs``, ``run``, ``states``, ``set_run_state``...) are
    described in :class:`~.inspection.EmulatorInspection`; ``requests`` is the :class:`~.traffic.RequestLog`
    of every request served, which can be called to select some.

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
        #: The faults to inject (:meth:`~.traffic.Faults.add`, ``clear``); the scenario's to start with.
        self.faults = Faults(self.scenario.faults, seed=self.scenario.fault_seed)
        #: Every request served, in order; ``requests(method=..., run_id=...)`` selects some.
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
        # Set while a server accepts requests: from its start to the end of its stop.
        self._listening = threading.Event()
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._closed = False
        # Set by stop(): ends a restart's downtime early, so a closed emulator never waits for it.
        self._closing = threading.Event()
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
        servicer.register(server)
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
        self._listening.set()
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
        self._listening.clear()

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; requests held by ``hang`` or ``latency`` faults are released. Safe to call twice.

        :param grace: seconds given to requests in flight before they are cancelled.
        """
        self._closed = True
        self._closing.set()
        self._shut_down(grace)

    def restart(
        self,
        downtime_seconds: float = 0.0,
        grace: float | None = 0.0,
        *,
        down_until: threading.Event | None = None,
    ) -> None:
        """Crash and come back on the same port, as a service restarting behind a fixed address.

        Requests in flight are cut off (clients see UNAVAILABLE or CANCELLED), requests during the downtime
        find nothing listening, and the state (runs, tokens, faults, the request log) survives, as a
        real service's database would. The downtime is ``downtime_seconds`` of real time, or lasts until
        the test sets ``down_until`` (call ``restart`` in a thread then, and watch :attr:`serving`); a
        :meth:`stop` meanwhile ends it, and the emulator then stays stopped.

        :param downtime_seconds: real seconds with nothing listening.
        :param grace: seconds given to requests in flight before they are cut off.
        :param down_until: an event that ends the downtime when set, instead of a duration.
        :raises RuntimeError: if the emulator is not running.
        :raises ValueError: for both a ``downtime_seconds`` and a ``down_until``.
        :raises OSError: if the port cannot be bound again.
        """
        if down_until is not None and downtime_seconds > 0:
            raise ValueError("give downtime_seconds or down_until, not both")
        if self._server is None or self._closed:
            raise RuntimeError("only a running emulator can be restarted")
        port = self.port
        self._shut_down(grace)
        if down_until is not None:
            while not down_until.wait(0.05) and not self._closing.is_set():
                pass
        elif downtime_seconds > 0:
            self._closing.wait(downtime_seconds)
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
    def serving(self) -> bool:
        """Whether a server is listening now: false before :meth:`start`, during a restart's downtime and
        after :meth:`stop`."""
        return self._listening.is_set()

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
