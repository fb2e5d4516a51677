"""The hook's Airflow connection: read (blocking or asyncio) and turned into checked settings.

Reading goes through Airflow (``BaseHook.get_connection``, or the compat layer's asyncio lookup off the
event loop). Every field is then checked at once into :class:`ConnectionSettings`, so a connection with
several mistakes is reported once, with all of them. Nothing here imports gRPC or reads a file.

Process-global state of this module: :data:`_settings_reads` (asyncio connection reads under way, shared
by the hooks of one loop) and :data:`_warned_extras` (unknown extra keys already warned about).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
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

from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.get_provider_info import CONN_FIELDS, DEFAULT_API_BASE, DEFAULT_WEB_BASE
from airflow_provider_clarifai.hooks._tls import check_token, warn_if_plaintext
from airflow_provider_clarifai.validate import quote, seconds_problem

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0

# Cache: the asyncio connection reads under way, keyed by event loop, then by (hook class, conn id); the
# value is the task doing the read. A triggerer restart starts hundreds of triggers of one connection at
# once: they all wait on one read instead of making hundreds of lookups. An entry lives only while its
# read runs (removed by _forget_read when the task ends, so a later call reads the connection afresh and
# sees an edited connection), and a loop's dict goes with the loop (weak key). Safe to share: a read is
# keyed by everything it depends on (the hook class decides how the connection is looked up), the
# settings it produces are immutable, and each hook keeps its own copy once the read is done.
_settings_reads: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[type, str], asyncio.Task[ConnectionSettings]]
] = weakref.WeakKeyDictionary()


def read_settings(hook: ClarifaiHook) -> ConnectionSettings:
    """Read the hook's Airflow connection (blocking) and check every field.

    :param hook: the hook; its ``clarifai_conn_id`` is looked up with its ``get_connection``.
    :raises ClarifaiConfigurationError: the connection is not defined, or some of its fields are wrong.
    """
    conn_id = hook.clarifai_conn_id
    try:
        conn = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise _missing_connection(conn_id) from None
    _check_extra_is_json(conn_id, conn.extra)
    return settings_from_connection(conn_id, conn.host, conn.port, conn.password, conn.extra_dejson or {})


async def aread_settings(hook: ClarifaiHook) -> ConnectionSettings:
    """Asyncio twin of :func:`read_settings`; never blocks the event loop.

    Hooks of the same class and connection that ask while a read is under way in the same event loop
    share that read (see :data:`_settings_reads`); a later call reads the connection afresh.

    :param hook: the hook whose connection is read.
    :raises ClarifaiConfigurationError: the connection is not defined, or some of its fields are wrong.
    """
    loop = asyncio.get_running_loop()
    reads = _settings_reads.setdefault(loop, {})
    key = (type(hook), hook.clarifai_conn_id)
    read = reads.get(key)
    if read is None:
        read = reads[key] = loop.create_task(_aread(hook))
        read.add_done_callback(functools.partial(_forget_read, reads, key))
    # Shielded: a hook whose task is cancelled must not cancel the read for the others.
    return await asyncio.shield(read)


async def _aread(hook: ClarifaiHook) -> ConnectionSettings:
    from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

    conn_id = hook.clarifai_conn_id
    try:
        conn = await get_async_connection(conn_id, hook=hook)
    except AirflowNotFoundException:
        raise _missing_connection(conn_id) from None
    _check_extra_is_json(conn_id, conn.extra)
    extra = await get_async_extra_dejson(conn)
    return settings_from_connection(conn_id, conn.host, conn.port, conn.password, extra or {})


def _forget_read(
    reads: dict[tuple[type, str], asyncio.Task[ConnectionSettings]],
    key: tuple[type, str],
    read: asyncio.Task[ConnectionSettings],
) -> None:
    if reads.get(key) is read:
        del reads[key]
    if not read.cancelled():
        read.exception()  # retrieved here, so a read whose every waiter was cancelled logs nothing


def _check_extra_is_json(conn_id: str, extra: object) -> None:
    """Airflow logs an extra that is not JSON and hands back ``{}``: every setting in it would be
    silently dropped (a timeout, the default ids). Refuse it instead."""
    if not isinstance(extra, str) or not extra.strip():
        return
    try:
        json.loads(extra)
    except json.JSONDecodeError as error:
        raise ClarifaiConfigurationError(
            f"Airflow connection {conn_id!r} has an extra that is not valid JSON "
            f"({error.msg} at character {error.pos}). Fix the connection's extra field, for example "
            '{"timeout": 20}.'
        ) from None


def _missing_connection(conn_id: str) -> ClarifaiConfigurationError:
    env_name = "AIRFLOW_CONN_" + conn_id.upper()
    return ClarifaiConfigurationError(
        f"Airflow connection {conn_id!r} is not defined. Create it with type "
        f"'clarifai' (password: your Personal Access Token), or set the environment variable "
        f"{env_name}."
    )


# Parsing ------------------------------------------------------------------------------------------


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

# Cache: the unknown extra keys already warned about, as (conn id, key) pairs, for the whole process and
# its whole life (never emptied; bounded by the connections and keys a deployment has). It only stops a
# warning from repeating, so a connection read by hundreds of triggers is warned about once; it holds key
# names, never values, and sharing it across hooks and threads (under its lock) changes no behaviour.
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
