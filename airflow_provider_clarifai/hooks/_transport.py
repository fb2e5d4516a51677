"""gRPC plumbing of the hook: channels, and the pipeline-run stub.

Kept apart from the hook so the hook reads as API logic (the connection's settings are read and checked
in ``_connection.py``; ``ConnectionSettings`` and ``settings_from_connection`` are importable from here
too). Nothing here is imported at DAG parse time: the hook imports this module on first use, and this
module imports ``grpc`` and ``clarifai_grpc`` only inside functions.

Why not ``clarifai_grpc``'s ``V2Stub``: it builds about 400 method callables per stub, and it reads a
module global that only ``ClarifaiChannel.get_*`` sets (a stub over a plain channel made before any
such call fails with "'NoneType' object is not callable"). The stub below registers the eight RPCs the
provider uses, with clarifai-grpc's own request and response messages, so the wire protocol is the
same. Channels carry no gRPC-level retry policy: the provider's :class:`RetryPolicy` is the only one,
so attempts do not multiply.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.budget import RequestBudget, budget_for
from airflow_provider_clarifai.hooks._connection import ConnectionSettings, settings_from_connection
from airflow_provider_clarifai.hooks._tls import (
    aread_root_certificates,
    channel_credentials,
    read_root_certificates,
)

if TYPE_CHECKING:
    import grpc
    import grpc.aio

    from airflow_provider_clarifai.retry import RetryClock

__all__ = [
    "ASYNC_MAX_IN_FLIGHT",
    "AsyncEndpoint",
    "ConnectionSettings",
    "HookLinks",
    "PipelineRunStub",
    "async_endpoint",
    "async_endpoint_count",
    "close_async_endpoints",
    "open_sync_channel",
    "settings_from_connection",
]

#: How many calls one asyncio channel lets run at once; the rest wait their turn in the loop.
ASYNC_MAX_IN_FLIGHT = 64
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
    "ListPipelines": ("ListPipelinesRequest", "MultiPipelineResponse"),
    "ListPipelineVersions": ("ListPipelineVersionsRequest", "MultiPipelineVersionResponse"),
}


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
    """An asyncio channel, its stub, and the semaphore that bounds its calls in flight.

    ``closed`` is set by :func:`close_async_endpoints`, so a hook that kept the endpoint looks it up again.
    """

    channel: grpc.aio.Channel
    stub: PipelineRunStub
    limiter: asyncio.Semaphore
    closed: bool = False


class HookLinks:
    """What one hook looks up in the process's registries once and keeps: the request budget of its token
    and endpoint, and the shared asyncio endpoint of the event loop it last ran in (until that endpoint is
    closed). A trigger's hook calls every poll; each lookup takes a registry's lock (the endpoints' also
    sweeps closed loops, the budgets' hashes the token), so it is done once, not per call. Only a weak
    reference to the loop is kept, and both objects are the registries' own: nothing new is opened."""

    __slots__ = ("_budget", "_endpoint", "_loop")

    def __init__(self) -> None:
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._endpoint: AsyncEndpoint | None = None
        self._budget: tuple[RetryClock, RequestBudget | None] | None = None

    async def endpoint(self, settings: ConnectionSettings) -> AsyncEndpoint:
        """The running loop's shared endpoint for ``settings`` (the hook's, which never change).

        :param settings: the hook's connection settings.
        """
        loop = asyncio.get_running_loop()
        endpoint = self._endpoint
        if endpoint is not None and not endpoint.closed and self._loop is not None and self._loop() is loop:
            return endpoint
        endpoint = await async_endpoint(settings)
        self._loop, self._endpoint = weakref.ref(loop), endpoint
        return endpoint

    def budget(self, settings: ConnectionSettings, clock: RetryClock) -> RequestBudget | None:
        """The request budget of ``settings``' token and endpoint, timed on ``clock``; ``None`` if off.

        :param settings: the hook's connection settings.
        :param clock: the hook's clock (looked up again if the hook is given another one).
        """
        if self._budget is None or self._budget[0] is not clock:
            budget = budget_for(
                settings.token,
                settings.channel_key,
                settings.requests_per_second,
                clock.monotonic,
                settings.target,
            )
            self._budget = (clock, budget)
        return self._budget[1]


# Cache: the shared asyncio endpoints (channel, stub, in-flight semaphore), keyed by event loop, then by
# ConnectionSettings.channel_key (target, TLS or not, root certificates path). An endpoint lives until
# close_async_endpoints() is called in its loop, or its loop closes (closed loops' entries are dropped at
# the next lookup; the loop key is weak). Safe to share across hooks, connections and tokens: a channel
# holds no credentials (the token travels with each call as metadata), everything that decides how it
# connects is in the key, and a grpc.aio channel is only ever used from the loop it was made in. The root
# certificates are read once per endpoint: an edited CA file takes effect for new loops, or once closed.
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
        endpoint.closed = True
        await endpoint.channel.close(None)


def async_endpoint_count() -> int:
    """How many asyncio channels the running loop holds (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    with _async_lock:
        return len(_async_endpoints.get(loop, {}))
