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
import ipaddress
import logging
import math
import re
import threading
import weakref
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.get_provider_info import CONN_FIELDS, DEFAULT_API_BASE, DEFAULT_WEB_BASE
from airflow_provider_clarifai.hooks._tls import (
    aread_root_certificates,
    channel_credentials,
    check_token,
    read_root_certificates,
    warn_if_plaintext,
)
from airflow_provider_clarifai.validate import quote, seconds_problem

if TYPE_CHECKING:
    import grpc
    import grpc.aio

log = logging.getLogger(__name__)

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
    :param requests_per_second: the connection's ``requests_per_second`` extra, if set (checked here,
        for a client-side rate limit).
    """

    target: str
    use_tls: bool
    token: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    root_certificates_path: str | None = None
    default_user_id: str | None = None
    default_app_id: str | None = None
    web_base_url: str = DEFAULT_WEB_BASE
    requests_per_second: float | None = None

    @property
    def channel_key(self) -> tuple[str, bool, str | None]:
        """Channels are shared between users of the same endpoint; the token travels per call."""
        return (self.target, self.use_tls, self.root_certificates_path)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Key " + self.token),)


#: The extras a ``clarifai`` connection reads. Others are ignored, and named once in a warning.
KNOWN_EXTRAS = frozenset({*CONN_FIELDS, "requests_per_second"})
_LEGACY_PREFIX = "extra__clarifai__"

# Unknown extra keys already warned about, by connection: process-wide, so a connection read by hundreds
# of triggers is warned about once. Bounded by the connections and keys a deployment has.
_warned_extras: set[tuple[str, str]] = set()
_warned_extras_lock = threading.Lock()


def settings_from_connection(
    conn_id: str, host: str | None, port: Any, password: str | None, extra: Any
) -> ConnectionSettings:
    """Read a ``clarifai`` connection's fields into :class:`ConnectionSettings`, checking them all.

    Every field is checked before anything is raised, so a connection with several mistakes is reported
    once, with all of them. Nothing here reads a file or the network: the asyncio hook calls it on the
    event loop.

    :param conn_id: the connection id, for messages.
    :param host: the API base: ``https://host[:port]``, ``http://host:port`` (plaintext) or ``host``.
    :param port: the connection's port field, used when the host names none.
    :param password: the Personal Access Token.
    :param extra: the connection's extra fields (a JSON object).
    :raises ClarifaiConfigurationError: one or more fields are wrong; the message names each.
    """
    where = f"Airflow connection {quote(conn_id)}"
    problems: list[str] = []
    token, token_problem = check_token(password)
    if token_problem is not None:
        problems.append(token_problem)
    parsed = _parse_api_base(DEFAULT_API_BASE if host is None else host, port)
    if isinstance(parsed, str):
        problems.append(parsed)
    if not isinstance(extra, Mapping):
        problems.append(
            f": extra must be a JSON object of settings, got {quote(extra)}. Write it as, for example, "
            '{"timeout": 20}.'
        )
        extra = {}
    _warn_unknown_extras(conn_id, extra)
    timeout = _check_timeout(_extra(extra, "timeout"), problems)
    rate = _check_rate(_extra(extra, "requests_per_second"), problems)
    strings = {
        name: _check_str(_extra(extra, name), name, problems)
        for name in ("root_certificates_path", "user_id", "app_id", "web_base_url")
    }
    web_base_url = _check_web_base_url(strings["web_base_url"], problems)
    if problems or isinstance(parsed, str):
        raise ClarifaiConfigurationError(_combine(where, problems))
    target, use_tls = parsed
    warn_if_plaintext(target, use_tls)
    return ConnectionSettings(
        target=target,
        use_tls=use_tls,
        token=token,
        timeout=timeout,
        root_certificates_path=strings["root_certificates_path"],
        default_user_id=strings["user_id"],
        default_app_id=strings["app_id"],
        web_base_url=web_base_url,
        requests_per_second=rate,
    )


def parse_api_base(base: str, port: int | None, where: str) -> tuple[str, bool]:
    """Split an API base into ``(host:port, use_tls)`` following Clarifai's client convention.

    :param base: ``https://api.clarifai.com``, ``http://localhost:50051`` or ``api.clarifai.com``.
    :param port: a port to use when ``base`` names none.
    :param where: what the base came from, for messages.
    :raises ClarifaiConfigurationError: the base or the port is invalid.
    """
    parsed = _parse_api_base(base, port)
    if isinstance(parsed, str):
        raise ClarifaiConfigurationError(_combine(where, [parsed]))
    return parsed


def _combine(where: str, problems: list[str]) -> str:
    # Problems are clauses written to follow the connection's name: " has no ..." or ": extra field ...".
    if len(problems) == 1:
        return where + problems[0]
    items = [("It" + text) if text.startswith(" has") else text.lstrip(": ") for text in problems]
    listed = " ".join(f"({number}) {text[:1].upper()}{text[1:]}" for number, text in enumerate(items, 1))
    return f"{where} has {len(problems)} problems. {listed}"


def _parse_api_base(base: Any, port: Any) -> tuple[str, bool] | str:
    """``(host:port, use_tls)``, or the problem with ``base`` or ``port`` as a clause."""
    invalid_host = (
        f" has an invalid host {quote(base)}. Use https://api.clarifai.com, or http://HOST:PORT for a "
        "plaintext endpoint such as the local emulator."
    )
    if not isinstance(base, str):
        return invalid_host
    raw = base.strip()
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
    except ValueError:  # an unbalanced "[" of an IPv6 address
        return invalid_host
    if parts.username is not None or parts.password is not None:
        # Not echoed: what precedes "@" may be a password.
        return (
            " has a user name or password in its host (before '@'). Remove it: the Personal Access "
            "Token goes in the connection's password field."
        )
    if parts.scheme not in ("http", "https") or not hostname or not _valid_hostname(hostname):
        return invalid_host
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f": host {quote(base)} must not contain a path or query; give only scheme, host and port."
    try:
        explicit_port = parts.port
    except ValueError:
        explicit_port = 0
    if explicit_port == 0 or (explicit_port is None and ":" in parts.netloc.rsplit("]", 1)[-1]):
        return (
            f" has an invalid port in host {quote(base)}. Use a port from 1 to 65535, for example "
            "https://api.clarifai.com:443 or http://localhost:50051."
        )
    field_port = _check_port_field(port)
    if isinstance(field_port, str):
        return field_port
    use_tls = parts.scheme == "https"
    chosen_port = explicit_port or field_port or (443 if use_tls else None)
    if chosen_port is None:
        return f": plaintext host {quote(base)} needs a port, for example http://localhost:50051."
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{host}:{chosen_port}", use_tls


def _valid_hostname(hostname: str) -> bool:
    if _HOSTNAME.fullmatch(hostname):
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_.])?")


def _check_port_field(port: Any) -> int | str | None:
    if port is None or port == "":
        return None
    number: int | None = None
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    elif isinstance(port, str) and port.strip().isdigit() and len(port.strip()) <= 5:
        number = int(port.strip())
    if number is None or not 1 <= number <= 65535:
        return (
            f" has an invalid port field {quote(port)}. Use a whole number from 1 to 65535, or leave the "
            "port empty and put it in the host (http://localhost:50051)."
        )
    return number


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    # Airflow 2 forms once stored extras as extra__<conn_type>__<name>; accept both spellings.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(_LEGACY_PREFIX + name)
    return None if value == "" else value


def _warn_unknown_extras(conn_id: str, extra: Mapping[str, Any]) -> None:
    unknown = sorted(str(key) for key in extra if str(key).removeprefix(_LEGACY_PREFIX) not in KNOWN_EXTRAS)
    with _warned_extras_lock:
        new = [key for key in unknown if (conn_id, key) not in _warned_extras]
        _warned_extras.update((conn_id, key) for key in new)
    if new:
        # Key names only, each cut short: an extra's value may be a secret.
        log.warning(
            "Airflow connection %s has extra field(s) this provider does not use, ignored: %s. Known "
            "fields: %s.",
            quote(conn_id),
            ", ".join(quote(key, 40) for key in new),
            ", ".join(sorted(KNOWN_EXTRAS)),
        )


def _check_timeout(value: Any, problems: list[str]) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    problem = seconds_problem("extra field 'timeout'", value, text_ok=True)
    if problem is not None:
        problems.append(
            f": {problem}. Write a number of seconds such as 30, or remove it for the default "
            f"({DEFAULT_TIMEOUT:g})."
        )
        return DEFAULT_TIMEOUT
    return float(value)


def _check_rate(value: Any, problems: list[str]) -> float | None:
    # A rate, not seconds, so not validate.seconds; the same rules otherwise (finite, text accepted).
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        with suppress(ValueError):
            number = float(value)
    if value is not None and (number is None or not math.isfinite(number) or number < 0):
        problems.append(
            f": extra field 'requests_per_second' must be a finite number, 0 or more, got {quote(value)}. "
            "Write for example 10, or remove it."
        )
        return None
    return number


def _check_str(value: Any, name: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f": extra field {name!r} must be a string, got {type(value).__name__}.")
        return None
    if "\x00" in value:
        problems.append(f": extra field {name!r} contains a NUL character. Write it again.")
        return None
    return value.strip() or None


def _check_web_base_url(value: str | None, problems: list[str]) -> str:
    if value is None:
        return DEFAULT_WEB_BASE
    if not value.lower().startswith(("https://", "http://")):
        problems.append(
            f": extra field 'web_base_url' must start with https:// or http://, got {quote(value)}. "
            f"Write for example {DEFAULT_WEB_BASE}, or remove it."
        )
    return value.rstrip("/")


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


def open_sync_channel(settings: ConnectionSettings) -> grpc.Channel:
    """Open a blocking channel to ``settings.target``.

    The root certificates file, if any, is read and checked here, in the caller's thread.

    :param settings: the connection settings.
    :raises ClarifaiConfigurationError: the root certificates file cannot be read or is not PEM.
    """
    import grpc

    if settings.use_tls:
        credentials = channel_credentials(read_root_certificates(settings.root_certificates_path))
        return grpc.secure_channel(settings.target, credentials, options=_CHANNEL_OPTIONS)
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


async def async_endpoint(settings: ConnectionSettings, *, read_timeout: float | None = None) -> AsyncEndpoint:
    """The shared asyncio endpoint for ``settings`` in the running loop, made on first use.

    Every hook in the process that dials the same endpoint from the same loop (a triggerer runs
    hundreds of triggers in one loop) shares one channel and one in-flight bound. A root certificates
    file is read off the loop, with a bounded wait (see :func:`._tls.aread_root_certificates`).

    :param settings: the connection settings.
    :param read_timeout: the longest wait for the root certificates file, in seconds; default
        :data:`._tls.ROOT_CERTIFICATES_READ_TIMEOUT`.
    :raises ClarifaiConfigurationError: the root certificates file is bad, or hangs.
    """
    loop = asyncio.get_running_loop()
    endpoint = _known_endpoint(loop, settings.channel_key)
    if endpoint is not None:
        return endpoint
    roots = None
    if settings.use_tls and settings.root_certificates_path:
        roots = await aread_root_certificates(settings.root_certificates_path, read_timeout)
    return _new_endpoint(loop, settings, roots)


def _known_endpoint(loop: asyncio.AbstractEventLoop, key: tuple[Any, ...]) -> AsyncEndpoint | None:
    with _async_lock:
        # A closed loop's channels can never be used again; drop them so they can be collected.
        for stale in [known for known in _async_endpoints if known.is_closed()]:
            del _async_endpoints[stale]
        return _async_endpoints.get(loop, {}).get(key)


def _new_endpoint(
    loop: asyncio.AbstractEventLoop, settings: ConnectionSettings, roots: bytes | None
) -> AsyncEndpoint:
    import grpc.aio

    with _async_lock:
        per_loop = _async_endpoints.setdefault(loop, {})
        # Another caller may have made it while this one waited for the certificates: use theirs, so the
        # loop keeps one channel per endpoint.
        endpoint = per_loop.get(settings.channel_key)
        if endpoint is None:
            if settings.use_tls:
                channel = grpc.aio.secure_channel(
                    settings.target, channel_credentials(roots), options=_CHANNEL_OPTIONS
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
