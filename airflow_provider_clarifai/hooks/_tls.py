"""Credentials of the hook's channels: the token checked, root certificates read and kept off the loop.

A ``root_certificates_path`` is read when a channel is opened. For the blocking channel that happens in
the task's own thread. For the asyncio channel it happens inside a triggerer's event loop, shared by every
trigger of the process, where one ``open()`` of a file on a hung network mount would stall them all: so
the file is read in a thread of its own, and the loop only waits for it, for a bounded time.

A file that is not PEM is refused here, with the path to fix, rather than handed to gRPC, which would
report it on every call as "Failed to create security handshaker" (indistinguishable, by its code, from
an unreachable host).

Plaintext: a token sent over ``http://`` to a host other than loopback travels readable by anyone on the
path; :func:`warn_if_plaintext` says so once per process and endpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import re
import threading
from typing import TYPE_CHECKING

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.validate import quote

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

#: How long an asyncio channel waits for its root certificates file to be read, in seconds; past it the
#: call fails with a :class:`ClarifaiConfigurationError` instead of waiting on a hung file system forever.
ROOT_CERTIFICATES_READ_TIMEOUT = 5.0
#: The largest root certificates file read; a CA bundle is well under 1 MB, and a path such as
#: /dev/zero must not fill the memory.
MAX_ROOT_CERTIFICATES_BYTES = 4 * 1024 * 1024

_FIX_PATH = "Fix the connection's root_certificates_path or leave it empty to use the system's."
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)

# Cache: the reads of root certificate files under way, keyed by path; the value is the future of the
# read's outcome (the file's bytes, or the error). Shared by every caller in the process: hundreds of
# triggers starting at once ask for the same file. An entry leaves when its read ends, before its result
# is published, so no outcome is ever reused and a fixed file is read afresh; a read that never ends (a
# hung mount) keeps its one thread and its entry, so later callers wait on it again instead of starting
# another thread that would hang too. Safe to share: callers of one path at one moment would all read the
# same bytes, and each waits for them with its own time bound.
_reads: dict[str, concurrent.futures.Future[bytes | None]] = {}
_reads_lock = threading.Lock()

# Cache: the endpoints (host:port) already warned about for plaintext, for the whole process, so that a
# triggerer running hundreds of triggers of one connection logs the warning once, not once per trigger or
# per call. Never emptied: its size is bounded by the number of distinct endpoints the process uses. Safe
# to share: it only silences a repeated warning, and holds no token.
_warned_plaintext: set[str] = set()
_warned_lock = threading.Lock()


def read_root_certificates(path: str | None) -> bytes | None:
    """Read a PEM file of CA certificates and check that it holds at least one usable certificate.

    Blocking: call it from a thread, never from an event loop (see :func:`aread_root_certificates`).

    :param path: the file, from the connection's ``root_certificates_path``; ``None`` for the system's.
    :return: the file's content, as gRPC wants it (``None`` when ``path`` is).
    :raises ClarifaiConfigurationError: the file cannot be read or holds no valid PEM certificate.
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ROOT_CERTIFICATES_BYTES + 1)
    except OSError as err:
        raise ClarifaiConfigurationError(
            f"Cannot read root certificates {quote(path)}: {err.strerror}. {_FIX_PATH}"
        ) from None
    check_root_certificates(data, path)
    return data


def check_root_certificates(data: bytes, path: str) -> None:
    """Refuse root certificates gRPC could not load, saying what is wrong with the file.

    :param data: the file's content.
    :param path: the file, for the message.
    :raises ClarifaiConfigurationError: no PEM certificate, or one that does not parse.
    """
    import ssl

    where = f"Root certificates file {quote(path)} (the connection's root_certificates_path)"
    if len(data) > MAX_ROOT_CERTIFICATES_BYTES:
        raise ClarifaiConfigurationError(
            f"{where} is larger than {MAX_ROOT_CERTIFICATES_BYTES // (1024 * 1024)} MB: it is not a file "
            f"of CA certificates. {_FIX_PATH}"
        )
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        # DER is a SEQUENCE: 0x30, then a long-form length.
        looks_der = data[:2] in (b"\x30\x82", b"\x30\x81", b"\x30\x83")
        hint = (
            " It looks like a binary (DER) certificate: convert it with "
            "'openssl x509 -inform der -in CA.der -out CA.pem'."
            if looks_der
            else ""
        )
        raise ClarifaiConfigurationError(
            f"{where} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' block).{hint} {_FIX_PATH}"
        )
    # Parse with the standard library's OpenSSL, block by block: text between blocks (the comments of a
    # CA bundle, even non-ASCII ones) is ignored by gRPC as well.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for number, block in enumerate(blocks, start=1):
        try:
            context.load_verify_locations(cadata=block.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise ClarifaiConfigurationError(
                f"{where}: certificate {number} of {len(blocks)} is not a valid PEM certificate. {_FIX_PATH}"
            ) from None


async def aread_root_certificates(path: str, wait_seconds: float | None = None) -> bytes | None:
    """:func:`read_root_certificates` off the event loop, waiting at most ``wait_seconds``.

    Concurrent callers of the whole process share one read of a path. The read runs in a daemon thread of
    its own, not the loop's default executor, so a read that never ends holds no executor worker.

    :param path: the file, from the connection's ``root_certificates_path``.
    :param wait_seconds: the longest wait; default :data:`ROOT_CERTIFICATES_READ_TIMEOUT`.
    :raises ClarifaiConfigurationError: the file is bad (see :func:`read_root_certificates`), or its read
        did not finish within ``wait_seconds``.
    """
    bound = ROOT_CERTIFICATES_READ_TIMEOUT if wait_seconds is None else wait_seconds
    with _reads_lock:
        read = _reads.get(path)
        if read is None:
            read = concurrent.futures.Future()
            # Marked running at once: a waiter that gives up (its wait_for cancels what it waits on)
            # then cannot cancel the read the other waiters share.
            read.set_running_or_notify_cancel()
            _reads[path] = read
            threading.Thread(
                target=_read_in_thread, args=(path, read), name="clarifai-root-certificates", daemon=True
            ).start()
    try:
        return await asyncio.wait_for(asyncio.wrap_future(read), bound)
    except TimeoutError:
        raise ClarifaiConfigurationError(
            f"Reading root certificates {quote(path)} did not finish within {bound:g} s: is the file on a "
            "network mount that hangs? Put the CA file on a local disk and fix the connection's "
            "root_certificates_path, or leave it empty to use the system's."
        ) from None


def _read_in_thread(path: str, read: concurrent.futures.Future[bytes | None]) -> None:
    try:
        data = read_root_certificates(path)
    except BaseException as error:  # handed to the waiters, who raise it
        _forget_read(path, read)
        read.set_exception(error)
    else:
        _forget_read(path, read)
        read.set_result(data)


def _forget_read(path: str, read: concurrent.futures.Future[bytes | None]) -> None:
    # Gone before the result is published: a caller arriving afterwards reads the file afresh (it may
    # have been fixed), never a stale outcome.
    with _reads_lock:
        if _reads.get(path) is read:
            del _reads[path]


def channel_credentials(root_certificates: bytes | None) -> grpc.ChannelCredentials:
    """TLS credentials trusting ``root_certificates``, or the system's CAs when ``None``.

    :param root_certificates: PEM, from :func:`read_root_certificates`.
    """
    import grpc

    return grpc.ssl_channel_credentials(root_certificates)


def check_token(password: str | None) -> tuple[str, str | None]:
    """The token from the connection's password field, and what is wrong with it (``None``: nothing).

    gRPC refuses metadata values outside printable ASCII: a token with a line break would fail every call
    with a transport error about the host (on asyncio channels, with an exception that is not even an
    ``RpcError``). The problem names the kind of character and its position, never the token.

    :param password: the connection's password field.
    :return: the stripped token, and the problem as a clause following the connection's name.
    """
    if not isinstance(password, str) or not password.strip():
        return "", (
            " has no Personal Access Token. Put the PAT in the connection's password field "
            "(create one in Clarifai under Settings > Secrets)."
        )
    token = password.strip()
    for position, char in enumerate(token, start=1):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            kind = "a line break or another control character"
        elif code > 0x7E:
            kind = "a non-ASCII character"
        else:
            continue
        return token, (
            f" has a Personal Access Token with {kind} in it (character {position} of {len(token)}), "
            "which gRPC cannot send. Paste the PAT into the connection's password field again, on one "
            "line, exactly as Clarifai shows it."
        )
    return token, None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ``::1``.

    :param host: a host name or IP address, IPv6 with or without brackets.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def warn_if_plaintext(target: str, use_tls: bool) -> None:
    """Log a warning, once per process and endpoint, when a token is about to go over plaintext to a host
    that is not this machine.

    :param target: ``host:port``.
    :param use_tls: whether the endpoint uses TLS.
    """
    if use_tls:
        return
    host = target.rsplit(":", 1)[0]
    if is_loopback(host):
        return
    with _warned_lock:
        if target in _warned_plaintext:
            return
        _warned_plaintext.add(target)
    log.warning(
        "The Clarifai connection sends its token in plaintext (http://) to %s, which is not this machine: "
        "anyone on the network path can read it. Use https:// unless this is a trusted test endpoint.",
        host,
    )
