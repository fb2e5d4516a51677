"""The one place that turns Clarifai's errors into Python exceptions.

Clarifai reports failures in two ways: an application error (gRPC OK, ``response.status.code`` not
``SUCCESS``) and a transport error (``grpc.RpcError``). Both become one of the few classes below, so
callers catch by meaning (not found, auth, rejected, throttled, unavailable) and the retry policy
retries by class (``retryable``). A code this module does not know is never treated as success or as
retryable: it becomes a plain :class:`ClarifaiError` (fail closed).

Every class derives from ``AirflowException`` so Airflow's own handling (retries, ``soft_fail``) works.
Configuration and auth errors also derive from ``AirflowFailException``: retrying the task cannot fix
them, so the task fails at once with the message that says what to fix.

No token ever reaches a message: callers pass the token as ``secret`` and it is scrubbed. No text of
unbounded length reaches one either: what the service or gRPC says is cut to a few hundred characters.

Two transport errors are not what their gRPC code suggests. A TLS handshake that fails because of the
certificates (untrusted, issued for another host, unreadable roots) comes back as UNAVAILABLE, like a
network outage; retrying cannot fix it, so it becomes a :class:`ClarifaiConfigurationError` that names
the connection field to change. A message over gRPC's size limit comes back as RESOURCE_EXHAUSTED, like
throttling; resending the same message cannot fix it either, so it becomes a
:class:`ClarifaiRequestRejectedError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_clarifai.status import status_code_name

if TYPE_CHECKING:
    import grpc


class ClarifaiError(AirflowException):
    """Base class of every error this provider raises about Clarifai.

    :param message: what went wrong and what to do about it.
    :param code_name: Clarifai's status code name (``CONN_DOES_NOT_EXIST``) or the gRPC code name.
    :param code: the numeric Clarifai status code, if the service answered.
    :param description: Clarifai's short description.
    :param details: Clarifai's details.
    :param req_id: Clarifai's request id, for support tickets.
    :param method: the RPC that failed.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code_name: str | None = None,
        code: int | None = None,
        description: str | None = None,
        details: str | None = None,
        req_id: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code_name = code_name
        self.code = code
        self.description = description
        self.details = details
        self.req_id = req_id
        self.method = method

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword attributes when the exception crosses a process boundary.
        return (_rebuild_error, (type(self), str(self), self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "code_name": self.code_name,
            "code": self.code,
            "description": self.description,
            "details": self.details,
            "req_id": self.req_id,
            "method": self.method,
        }


def _rebuild_error(cls: type[ClarifaiError], message: str, fields: dict[str, Any]) -> ClarifaiError:
    return cls(message, **fields)


class ClarifaiConfigurationError(ClarifaiError, AirflowFailException):
    """Ids, ``config-lock.yaml`` or connection settings are missing or invalid.

    Nothing was sent, except when the TLS handshake showed the connection's certificate settings cannot
    work (the server's certificate is not trusted or names another host): then no request got through.
    """


class ClarifaiAuthError(ClarifaiError, AirflowFailException):
    """The token is wrong, expired, or lacks the scope for the call."""


class ClarifaiNotFoundError(ClarifaiError):
    """A user, app, pipeline, pipeline version or run does not exist (or the token cannot see it)."""


class ClarifaiRequestRejectedError(ClarifaiError):
    """The service refused the request: a bad argument or a transition the run's state forbids."""


class ClarifaiThrottledError(ClarifaiError):
    """The rate limit or hourly quota was hit; retried with backoff."""

    retryable = True


class ClarifaiUnavailableError(ClarifaiError):
    """The service could not be reached or failed internally; retried with backoff."""

    retryable = True


class ClarifaiUnexpectedResponseError(ClarifaiError):
    """The service answered something this provider cannot interpret (unknown code or bad payload)."""


class ClarifaiRunFailedError(ClarifaiError):
    """A pipeline run ended without success (or in a state the task treats as failure).

    Raised by :class:`~airflow_provider_clarifai.operators.clarifai.ClarifaiRunPipelineOperator`; a task
    retry starts a new run.
    """


class ClarifaiWatchedRunFailedError(ClarifaiRunFailedError, AirflowFailException):
    """The run a sensor watches ended without success. Retrying the sensor cannot change that, so it
    fails at once (or is skipped with ``soft_fail``)."""


class ClarifaiRunTimeoutError(ClarifaiError):
    """An operator waited longer than its ``timeout`` for a run (cancelled first if so configured)."""


class ClarifaiBatchError(ClarifaiError):
    """Some runs of a pause, resume or cancel batch were not changed; every run's outcome is listed."""


_AUTH_CODES = frozenset(
    {
        "CONN_ACCOUNT_ISSUES",
        "CONN_TOKEN_INVALID",
        "CONN_CREDENTIALS_INVALID",
        "CONN_KEY_INVALID",
        "CONN_KEY_NOT_FOUND",
        "CONN_INSUFFICIENT_SCOPES",
        "CONN_AUTH_METHOD_DISABLED",
        "CONN_NO_GDPR_CONSENT",
        "CONN_EXCEED_MONTHLY_LIMIT",
    }
)
_THROTTLE_CODES = frozenset({"CONN_THROTTLED", "CONN_EXCEED_HOURLY_LIMIT", "CONN_EXCEEDS_LIMITS"})
_REJECTED_CODES = frozenset(
    {
        "BAD_REQUEST",
        "FAILURE",
        "CONN_BAD_REQUEST_FORMAT",
        "CONN_INVALID_REQUEST",
        "CONN_METHOD_NOT_ALLOWED",
        "CONN_INVALID_RANGE",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        "SERVER_ERROR",
        "RPC_SERVER_UNAVAILABLE",
        "RPC_REQUEST_TIMEOUT",
        "DATABASE_STATEMENT_TIMEOUT",
    }
)

_HINTS: dict[type[ClarifaiError], str] = {
    ClarifaiAuthError: (
        "Check the Personal Access Token in the Airflow connection's password field: it must be valid "
        "and have the scopes for pipeline runs."
    ),
    ClarifaiNotFoundError: (
        "Check user_id, app_id, pipeline_id, pipeline_version_id and the run id (explicit parameters, "
        "config-lock.yaml or the connection's defaults), and that the token's user can see them."
    ),
    ClarifaiRequestRejectedError: "The service refused the request as sent; see its description.",
    ClarifaiThrottledError: (
        "The rate limit was hit; calls are retried with backoff. Lower the number of concurrent tasks "
        "or raise the retry policy's limits if this keeps happening."
    ),
    ClarifaiUnavailableError: (
        "The service could not be reached or failed; calls are retried with backoff. Check the "
        "connection's host and the network if it persists."
    ),
    ClarifaiUnexpectedResponseError: (
        "Failing closed. Check that the connection's host is a Clarifai API endpoint; a newer "
        "airflow-provider-clarifai may understand this answer."
    ),
}


def classify_code_name(code_name: str) -> type[ClarifaiError]:
    """The exception class for a Clarifai application status code name.

    :param code_name: a ``status_code_pb2`` name such as ``CONN_KEY_INVALID``.
    """
    if code_name in _AUTH_CODES:
        return ClarifaiAuthError
    if code_name in _THROTTLE_CODES:
        return ClarifaiThrottledError
    if code_name.endswith("_DOES_NOT_EXIST"):
        return ClarifaiNotFoundError
    if code_name in _REJECTED_CODES or code_name.endswith(("_INVALID_REQUEST", "_INVALID_ARGUMENT")):
        return ClarifaiRequestRejectedError
    if code_name in _UNAVAILABLE_CODES or code_name.startswith("INTERNAL_"):
        return ClarifaiUnavailableError
    return ClarifaiUnexpectedResponseError


def error_from_status(
    status: Any, *, method: str, context: str = "", secret: str | None = None
) -> ClarifaiError:
    """Build the exception for a non-success Clarifai ``status`` message.

    :param status: a ``status_pb2.Status`` (``code``, ``description``, ``details``, ``req_id``).
    :param method: the RPC that answered it.
    :param context: what the call was doing (``"getting run r1 of u/a/p/v"``), for the message.
    :param secret: the token, scrubbed from the message should the service echo it.
    """
    code = int(status.code)
    code_name = status_code_name(code)
    error_class = classify_code_name(code_name)
    description = _service_text(status.description, secret)
    details = _service_text(status.details, secret)
    req_id = _service_text(status.req_id, secret, limit=REQ_ID_LIMIT)
    parts = [f"Clarifai {_label(method, context)} failed with {code_name} ({code})"]
    if description:
        parts.append(f": {description}")
    if details and details != description:
        parts.append(f" ({details})")
    if req_id:
        # Parentheses, not brackets: the Airflow CLI prints messages with Rich, which reads [...] as markup.
        parts.append(f" (request id {req_id})")
    message = "".join(parts) + ". " + _HINTS[error_class]
    return error_class(
        message,
        code_name=code_name,
        code=code,
        description=description or None,
        details=details or None,
        req_id=req_id or None,
        method=method,
    )


_TRANSPORT_CLASSES: dict[str, type[ClarifaiError]] = {
    "UNAVAILABLE": ClarifaiUnavailableError,
    "DEADLINE_EXCEEDED": ClarifaiUnavailableError,
    "ABORTED": ClarifaiUnavailableError,
    "CANCELLED": ClarifaiUnavailableError,
    "RESOURCE_EXHAUSTED": ClarifaiThrottledError,
    "UNAUTHENTICATED": ClarifaiAuthError,
    "PERMISSION_DENIED": ClarifaiAuthError,
    "NOT_FOUND": ClarifaiNotFoundError,
    "INVALID_ARGUMENT": ClarifaiRequestRejectedError,
    "FAILED_PRECONDITION": ClarifaiRequestRejectedError,
    "OUT_OF_RANGE": ClarifaiRequestRejectedError,
}


def error_from_rpc(
    error: grpc.RpcError, *, method: str, target: str, context: str = "", secret: str | None = None
) -> ClarifaiError:
    """Build the exception for a gRPC transport error.

    :param error: the ``grpc.RpcError`` (or ``grpc.aio.AioRpcError``) raised by the call.
    :param method: the RPC that failed.
    :param target: the address called, so the message says where.
    :param context: what the call was doing, for the message.
    :param secret: the token, scrubbed from the message.
    """
    code = error.code() if callable(getattr(error, "code", None)) else None
    code_name = getattr(code, "name", None) or "UNKNOWN"
    raw_details = error.details() if callable(getattr(error, "details", None)) else None
    detail = _service_text(raw_details, secret)
    error_class, hint = _transport_class_and_hint(code_name, detail, method, target)
    message = f"Clarifai {_label(method, context)} failed with gRPC {code_name}"
    if detail:
        message += f": {detail}"
    return error_class(f"{message}. {hint}", code_name=code_name, description=detail or None, method=method)


#: What gRPC's details say when the TLS handshake fails because of the certificates, and the problem each
#: means. Read from grpcio 1.85 (sync and asyncio channels say the same); older spellings kept where known.
#: A handshake that fails this way fails again on every attempt, whatever the network does.
_TLS_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    # BoringSSL's verify error, followed by OpenSSL's reason ("unable to get local issuer certificate",
    # "certificate has expired", "self signed certificate").
    (("CERTIFICATE_VERIFY_FAILED",), "untrusted"),
    # "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
    # (grpcio 1.6x and later); "Peer name 127.0.0.1 is not in peer certificate" (older).
    (("Hostname Verification Check failed", "is not in peer certificate"), "hostname"),
    # "Failed to create security handshaker.": the roots given to the channel hold no certificate gRPC can
    # load (gRPC logs "Could not load any root certificate." on stderr).
    (("Failed to create security handshaker", "Cannot load server root certificates"), "roots"),
    # "... WRONG_VERSION_NUMBER ...": the server did not answer TLS at all, typically a plaintext server.
    (("WRONG_VERSION_NUMBER",), "not_tls"),
)

_ROOTS_FIELD = "the Airflow connection's extra 'root_certificates_path'"
_TLS_HINTS = {
    "untrusted": (
        "The TLS certificate of {target} is not trusted{reason}: no certificate authority the client "
        "trusts signed it, or it has expired. Set " + _ROOTS_FIELD + " to a PEM file of the CA that "
        "signed the server's certificate (empty means the system's CAs), or renew an expired certificate. "
        "Not retried: this is a configuration problem."
    ),
    "hostname": (
        "The TLS certificate of {target} is not valid for the host name {host} (hostname verification "
        "failed). Write the connection's host exactly as the certificate names it, or give the server a "
        "certificate that lists this name or IP address as a subject alternative name. Not retried: this "
        "is a configuration problem."
    ),
    "roots": (
        "The root certificates given to the client could not be loaded, so no TLS connection to {target} "
        "can be made. Set " + _ROOTS_FIELD + " to a PEM file of CA certificates, or leave it empty to use "
        "the system's. Not retried: this is a configuration problem."
    ),
    "not_tls": (
        "{target} did not answer with TLS: it may be a plaintext endpoint. For a plaintext endpoint such as "
        "the local emulator, write the connection's host as http://HOST:PORT; otherwise check the port. "
        "Not retried: this is a configuration problem."
    ),
}

#: gRPC's details for a message over the size limit: "SERVER: Received message larger than max (N vs. M)",
#: "CLIENT: Sent message larger than max (...)" and so on; who said it tells which message was too large.
_TOO_LARGE = "message larger than max"


def _transport_class_and_hint(
    code_name: str, detail: str, method: str, target: str
) -> tuple[type[ClarifaiError], str]:
    if code_name == "UNIMPLEMENTED":
        return (
            ClarifaiUnexpectedResponseError,
            f"The server at {target} does not implement {method}: is the host a Clarifai API endpoint?",
        )
    tls_problem = _tls_problem(detail)
    if tls_problem is not None:
        return ClarifaiConfigurationError, _tls_hint(tls_problem, detail, target)
    if code_name == "RESOURCE_EXHAUSTED" and _TOO_LARGE in detail:
        return ClarifaiRequestRejectedError, _too_large_hint(detail, method)
    error_class = _TRANSPORT_CLASSES.get(code_name, ClarifaiUnexpectedResponseError)
    hint = _HINTS[error_class]
    if code_name == "UNAVAILABLE":
        hint = f"Could not reach the Clarifai API at {target}. " + hint
    elif code_name == "DEADLINE_EXCEEDED":
        hint = (
            f"No answer from {target} within the call's deadline. If the service is slow, raise the "
            "deadline: the connection's extra 'timeout', or request_timeout on the task. " + hint
        )
    return error_class, hint


def _tls_problem(detail: str) -> str | None:
    for markers, problem in _TLS_PROBLEMS:
        if any(marker in detail for marker in markers):
            return problem
    return None


def _tls_hint(problem: str, detail: str, target: str) -> str:
    host = target.rsplit(":", 1)[0] if ":" in target else target
    reason = ""
    if problem == "untrusted":
        # OpenSSL's reason follows the error name: "CERTIFICATE_VERIFY_FAILED: certificate has expired: OK".
        after = detail.partition("CERTIFICATE_VERIFY_FAILED")[2].strip(": ")
        reason = after.split(":", 1)[0].strip()
        reason = f" ({reason})" if reason else ""
    return _TLS_HINTS[problem].format(target=target, host=host, reason=reason)


def _too_large_hint(detail: str, method: str) -> str:
    # Our request is too large when the client could not send it or the server would not take it; the
    # answer is when the server could not send it or the client would not take it.
    if "CLIENT: Sent" in detail or "SERVER: Received" in detail:
        which = "The request was larger than gRPC allows"
        fix = "Send less per call: fewer runs per batch (batch_size), shorter input_args or ids."
    elif "SERVER: Sent" in detail or "CLIENT: Received" in detail:
        which = "The answer was larger than gRPC allows"
        fix = "Ask for less per call: fewer items per page (per_page) or fewer runs per batch (batch_size)."
    else:
        which = "A message was larger than gRPC allows"
        fix = "Send or ask for less per call (batch_size, per_page, input_args)."
    return (
        f"{which} (sizes in bytes: the message vs. the limit); this is not throttling, and sending the same "
        f"{method} again cannot succeed, so it is not retried. {fix}"
    )


def _label(method: str, context: str) -> str:
    return f"{method} ({context})" if context else method


#: Longest text from the service or gRPC put into a message or kept on an exception, in characters.
SERVICE_TEXT_LIMIT = 400
REQ_ID_LIMIT = 100


def _service_text(text: object, secret: str | None, limit: int = SERVICE_TEXT_LIMIT) -> str:
    """What the service or gRPC said, with the token scrubbed, cut to about ``limit`` characters.

    The same cut-first rule as :func:`airflow_provider_clarifai.validate.quote` (which cannot be imported
    here: it imports this module), without ``repr``'s quotes, so messages read as before: the text is cut
    before anything else looks at it, so a 10 MB detail costs no more than a short one.
    """
    if not text:
        return ""
    value = text if isinstance(text, str) else str(text)
    if len(value) <= limit:
        return _scrub(value, secret)
    # Scrub a slice one token longer than the cut, then drop that extra length: only there can a token
    # cut in two by the slice have left a piece of itself unscrubbed.
    margin = len(secret) if secret else 0
    head = _scrub(value[: limit + margin], secret)
    head = head[: len(head) - margin] if margin else head
    return f"{head}... ({len(value)} characters)"


def _scrub(text: str, secret: str | None) -> str:
    if secret and text:
        return text.replace(secret, "***")
    return text
