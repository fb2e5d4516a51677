"""gRPC plumbing of the hook: connection settings, channels, and the pipeline-run stub.

Kept apart from the hook so the hook reads as API logic. Nothing here is imported at DAG parse time:
the hook imports this module on first use, and this module imports ``grpc`` and ``clarifai_grpc``
only inside functions.

Why not ``clarifai_grpc``'s ``V2Stub``: it builds about 400 method callables per stub, and it reads a
module global that only ``ClarifaiChannel.get_*`` sets (a stub over a plain channel made before any
such call fails with "'NoneType' object is not callable"). The stub below registers the six RPCs the
provider uses, with clarifai-grpc's own request and response messages, so the wire protocol is the
same. Channels carry no gRPC-level retry policy: the provider's :class:`RetryPolicy` is the only one,
so attempts do not multiply.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.get_provider_info import DEFAULT_API_BASE, DEFAULT_WEB_BASE

if TYPE_CHECKING:
    import grpc
    import grpc.aio

#: How many calls one asyncio channel lets run at once; the rest wait their turn in the loop.
ASYNC_MAX_IN_FLIGHT = 64
DEFAULT_TIMEOUT = 30.0
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 60_000),
]

_RPCS: dict[str, tuple[str, str]] = {
    "GetPipelineVersionRun": ("GetPipelineVersionRunRequest", "SinglePipelineVersionRunResponse"),
    "ListPipelineVersionRuns": ("ListPipelineVersionRunsRequest", "MultiPipelineVersionRunResponse"),
    "PostPipelineVersionRuns": ("PostPipelineVersionRunsRequest", "MultiPipelineVersionRunResponse"),
    "PatchPipelineVersionRuns": ("PatchPipelineVersionRunsRequest", "MultiPipelineVersionRunResponse"),
    "ListLogEntries": ("ListLogEntriesRequest", "MultiLogEntryResponse"),
    "GetUser": ("GetUserRequest", "SingleUserResponse"),
}


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an Airflow ``clarifai`` connection.

    :param target: ``host:port`` to dial.
    :param use_tls: TLS (``https://`` or no scheme) or plaintext (``http://``).
    :param token: the Personal Access Token; never shown in ``repr``.
    :param timeout: deadline of one call, in seconds.
    :param root_certificates_path: PEM file of CA certificates for TLS, or ``None`` for the system's.
    :param default_user_id: user id used when no other source names one.
    :param default_app_id: app id used when no other source names one.
    :param web_base_url: base of the Clarifai web UI, for run links.
    """

    target: str
    use_tls: bool
    token: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    root_certificates_path: str | None = None
    default_user_id: str | None = None
    default_app_id: str | None = None
    web_base_url: str = DEFAULT_WEB_BASE

    @property
    def channel_key(self) -> tuple[str, bool, str | None]:
        """Channels are shared between users of the same endpoint; the token travels per call."""
        return (self.target, self.use_tls, self.root_certificates_path)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Key " + self.token),)


def settings_from_connection(
    conn_id: str, host: str | None, port: int | None, password: str | None, extra: dict[str, Any]
) -> ConnectionSettings:
    """Read a ``clarifai`` connection's fields into :class:`ConnectionSettings`.

    :param conn_id: the connection id, for messages.
    :param host: the API base: ``https://host[:port]``, ``http://host:port`` (plaintext) or ``host``.
    :param port: the connection's port field, used when the host names none.
    :param password: the Personal Access Token.
    :param extra: the connection's extra fields.
    """
    where = f"Airflow connection {conn_id!r}"
    if not password or not password.strip():
        raise ClarifaiConfigurationError(
            f"{where} has no Personal Access Token. Put the PAT in the connection's password field "
            "(create one in Clarifai under Settings > Secrets)."
        )
    token = password.strip()
    target, use_tls = parse_api_base(host or DEFAULT_API_BASE, port, where)
    return ConnectionSettings(
        target=target,
        use_tls=use_tls,
        token=token,
        timeout=_positive_number(_extra(extra, "timeout"), "timeout", where, DEFAULT_TIMEOUT),
        root_certificates_path=_optional_str(
            _extra(extra, "root_certificates_path"), "root_certificates_path", where
        ),
        default_user_id=_optional_str(_extra(extra, "user_id"), "user_id", where),
        default_app_id=_optional_str(_extra(extra, "app_id"), "app_id", where),
        web_base_url=(
            _optional_str(_extra(extra, "web_base_url"), "web_base_url", where) or DEFAULT_WEB_BASE
        ).rstrip("/"),
    )


def parse_api_base(base: str, port: int | None, where: str) -> tuple[str, bool]:
    """Split an API base into ``(host:port, use_tls)`` following Clarifai's client convention.

    :param base: ``https://api.clarifai.com``, ``http://localhost:50051`` or ``api.clarifai.com``.
    :param port: a port to use when ``base`` names none.
    :param where: what the base came from, for messages.
    """
    raw = base.strip()
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClarifaiConfigurationError(
            f"{where} has an invalid host {base!r}. Use https://api.clarifai.com, or http://HOST:PORT "
            "for a plaintext endpoint such as the local emulator."
        )
    if parts.path not in ("", "/") or parts.query:
        raise ClarifaiConfigurationError(
            f"{where}: host {base!r} must not contain a path or query; give only scheme, host and port."
        )
    try:
        explicit_port = parts.port
    except ValueError:
        raise ClarifaiConfigurationError(
            f"{where} has an invalid port in host {base!r}. Use a port from 1 to 65535, for example "
            "https://api.clarifai.com:443 or http://localhost:50051."
        ) from None
    use_tls = parts.scheme == "https"
    chosen_port = explicit_port or port or (443 if use_tls else None)
    if chosen_port is None:
        raise ClarifaiConfigurationError(
            f"{where}: plaintext host {base!r} needs a port, for example http://localhost:50051."
        )
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{hostname}:{chosen_port}", use_tls


def _extra(extra: dict[str, Any], name: str) -> Any:
    # Airflow 2 forms once stored extras as extra__<conn_type>__<name>; accept both spellings.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__clarifai__{name}")
    return None if value == "" else value


def _optional_str(value: Any, name: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ClarifaiConfigurationError(
            f"{where}: extra field {name!r} must be a string, got {type(value).__name__}."
        )
    return value.strip() or None


def _positive_number(value: Any, name: str, where: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number > 0:
        raise ClarifaiConfigurationError(
            f"{where}: extra field {name!r} must be a positive number of seconds, got {value!r}."
        )
    return number


class PipelineRunStub:
    """The pipeline-run RPCs of ``clarifai.api.V2``, over a sync or an asyncio channel.

    :param channel: a ``grpc.Channel`` or ``grpc.aio.Channel``.
    """

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        from clarifai_grpc.grpc.api import service_pb2

        for method, (request_name, response_name) in _RPCS.items():
            request_type = getattr(service_pb2, request_name)
            response_type = getattr(service_pb2, response_name)
            callable_ = channel.unary_unary(
                f"/clarifai.api.V2/{method}",
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            setattr(self, method, callable_)

    def method(self, name: str) -> Any:
        return getattr(self, name)


def _credentials(settings: ConnectionSettings) -> grpc.ChannelCredentials:
    import grpc

    root_certificates = None
    if settings.root_certificates_path:
        try:
            with open(settings.root_certificates_path, "rb") as handle:
                root_certificates = handle.read()
        except OSError as err:
            raise ClarifaiConfigurationError(
                f"Cannot read root certificates {settings.root_certificates_path!r}: {err.strerror}. "
                "Fix the connection's root_certificates_path or leave it empty to use the system's."
            ) from None
    return grpc.ssl_channel_credentials(root_certificates)


def open_sync_channel(settings: ConnectionSettings) -> grpc.Channel:
    """Open a blocking channel to ``settings.target``.

    :param settings: the connection settings.
    """
    import grpc

    if settings.use_tls:
        return grpc.secure_channel(settings.target, _credentials(settings), options=_CHANNEL_OPTIONS)
    return grpc.insecure_channel(settings.target, options=_CHANNEL_OPTIONS)


@dataclass
class AsyncEndpoint:
    """An asyncio channel, its stub, and the semaphore that bounds its calls in flight."""

    channel: grpc.aio.Channel
    stub: PipelineRunStub
    limiter: asyncio.Semaphore


_async_endpoints: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncEndpoint]
] = weakref.WeakKeyDictionary()
_async_lock = threading.Lock()


def async_endpoint(settings: ConnectionSettings) -> AsyncEndpoint:
    """The shared asyncio endpoint for ``settings`` in the running loop, made on first use.

    Every hook in the process that dials the same endpoint from the same loop (a triggerer runs
    hundreds of triggers in one loop) shares one channel and one in-flight bound.

    :param settings: the connection settings.
    """
    import grpc.aio

    loop = asyncio.get_running_loop()
    with _async_lock:
        # A closed loop's channels can never be used again; drop them so they can be collected.
        for stale in [known for known in _async_endpoints if known.is_closed()]:
            del _async_endpoints[stale]
        per_loop = _async_endpoints.setdefault(loop, {})
        endpoint = per_loop.get(settings.channel_key)
        if endpoint is None:
            if settings.use_tls:
                channel = grpc.aio.secure_channel(
                    settings.target, _credentials(settings), options=_CHANNEL_OPTIONS
                )
            else:
                channel = grpc.aio.insecure_channel(settings.target, options=_CHANNEL_OPTIONS)
            endpoint = AsyncEndpoint(
                channel, PipelineRunStub(channel), asyncio.Semaphore(ASYNC_MAX_IN_FLIGHT)
            )
            per_loop[settings.channel_key] = endpoint
        return endpoint


async def close_async_endpoints() -> None:
    """Close the running loop's shared channels (tests and clean shutdowns call this)."""
    loop = asyncio.get_running_loop()
    with _async_lock:
        endpoints = list(_async_endpoints.pop(loop, {}).values())
    for endpoint in endpoints:
        await endpoint.channel.close(None)


def async_endpoint_count() -> int:
    """How many asyncio channels the running loop holds (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    with _async_lock:
        return len(_async_endpoints.get(loop, {}))
