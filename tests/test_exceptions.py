from __future__ import annotations

import pickle
from types import SimpleNamespace

import grpc
import pytest
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from airflow_provider_clarifai.exceptions import (
    ClarifaiAuthError,
    ClarifaiConfigurationError,
    ClarifaiError,
    ClarifaiNotFoundError,
    ClarifaiRequestRejectedError,
    ClarifaiThrottledError,
    ClarifaiUnavailableError,
    ClarifaiUnexpectedResponseError,
    classify_code_name,
    error_from_rpc,
    error_from_status,
)


@pytest.mark.parametrize(
    ("code_name", "expected"),
    [
        ("CONN_DOES_NOT_EXIST", ClarifaiNotFoundError),
        ("PIPELINE_DOES_NOT_EXIST", ClarifaiNotFoundError),
        ("CONN_KEY_INVALID", ClarifaiAuthError),
        ("CONN_INSUFFICIENT_SCOPES", ClarifaiAuthError),
        ("CONN_THROTTLED", ClarifaiThrottledError),
        ("CONN_EXCEED_HOURLY_LIMIT", ClarifaiThrottledError),
        ("PIPELINE_INVALID_REQUEST", ClarifaiRequestRejectedError),
        ("BAD_REQUEST", ClarifaiRequestRejectedError),
        ("INTERNAL_SERVER_ISSUE", ClarifaiUnavailableError),
        ("MIXED_STATUS", ClarifaiUnexpectedResponseError),
        ("JOB_RUNNING", ClarifaiUnexpectedResponseError),
        ("UNKNOWN_CODE_1", ClarifaiUnexpectedResponseError),
    ],
)
def test_code_classification(code_name, expected):
    assert classify_code_name(code_name) is expected


def test_only_transient_classes_are_retryable():
    assert {cls for cls in ClarifaiError.__subclasses__() if cls.retryable} == {
        ClarifaiThrottledError,
        ClarifaiUnavailableError,
    }


def test_configuration_and_auth_errors_fail_the_task_without_retries():
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    assert issubclass(ClarifaiConfigurationError, AirflowFailException)
    assert issubclass(ClarifaiAuthError, AirflowFailException)
    assert not issubclass(ClarifaiUnavailableError, AirflowFailException)
    assert issubclass(ClarifaiUnavailableError, AirflowException)


def test_status_error_carries_every_clarifai_field_and_no_token():
    status = status_pb2.Status(
        code=status_code_pb2.CONN_KEY_INVALID,
        description="API key not found: secret-token-123",
        details="check the key",
        req_id="req-42",
    )
    error = error_from_status(
        status, method="GetUser", context="looking up user me", secret="secret-token-123"
    )
    assert isinstance(error, ClarifaiAuthError)
    assert (error.code_name, error.code, error.req_id, error.method) == (
        "CONN_KEY_INVALID",
        status_code_pb2.CONN_KEY_INVALID,
        "req-42",
        "GetUser",
    )
    message = str(error)
    assert "secret-token-123" not in message
    assert "GetUser (looking up user me) failed with CONN_KEY_INVALID" in message
    assert "check the key" in message and "req-42" in message
    assert "Personal Access Token" in message


def test_errors_survive_pickling_with_their_fields():
    status = status_pb2.Status(code=status_code_pb2.CONN_DOES_NOT_EXIST, description="no run", req_id="r1")
    error = error_from_status(status, method="GetPipelineVersionRun")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ClarifaiNotFoundError
    assert (str(copy), copy.code_name, copy.req_id) == (str(error), "CONN_DOES_NOT_EXIST", "r1")


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "expected", "phrase"),
    [
        (grpc.StatusCode.UNAVAILABLE, ClarifaiUnavailableError, "Could not reach the Clarifai API at h:1"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ClarifaiUnavailableError, "within the call's deadline"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ClarifaiThrottledError, "rate limit"),
        (grpc.StatusCode.UNAUTHENTICATED, ClarifaiAuthError, "Personal Access Token"),
        (
            grpc.StatusCode.UNIMPLEMENTED,
            ClarifaiUnexpectedResponseError,
            "is the host a Clarifai API endpoint",
        ),
        (grpc.StatusCode.INTERNAL, ClarifaiUnexpectedResponseError, "Failing closed"),
        (grpc.StatusCode.UNKNOWN, ClarifaiUnexpectedResponseError, "Failing closed"),
    ],
)
def test_transport_errors(code, expected, phrase):
    error = error_from_rpc(
        FakeRpcError(code, "boom tok"), method="ListLogEntries", target="h:1", secret="tok"
    )
    assert type(error) is expected
    assert phrase in str(error)
    assert error.code_name == code.name
    assert "tok" not in str(error).replace("token", "")


def test_rpc_error_without_code_fails_closed():
    error = error_from_rpc(SimpleNamespace(), method="GetUser", target="h:1")  # type: ignore[arg-type]
    assert isinstance(error, ClarifaiUnexpectedResponseError)


# What gRPC reports for certificate problems (grpcio 1.85, sync and asyncio channels alike) ------------

ADDRESS = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:40673: "
TLS_DETAILS = {
    "untrusted": ADDRESS + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK",
    "expired": ADDRESS + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK",
    "hostname": ADDRESS + "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
    "Verification Check failed.",
    "hostname-old": "Peer name 127.0.0.1 is not in peer certificate",
    "roots": ADDRESS + "Failed to create security handshaker.",
    "not-tls": ADDRESS + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL "
    "routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context: OK",
}


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("untrusted", ["The TLS certificate of h:1 is not trusted (unable to get local issuer certificate)"]),
        ("expired", ["is not trusted (certificate has expired)", "renew an expired certificate"]),
        ("hostname", ["is not valid for the host name h (hostname verification failed)"]),
        ("hostname-old", ["is not valid for the host name h"]),
        ("roots", ["The root certificates given to the client could not be loaded"]),
        ("not-tls", ["h:1 did not answer with TLS", "http://HOST:PORT"]),
    ],
)
def test_certificate_problems_are_configuration_errors_not_outages(case, phrases):
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, TLS_DETAILS[case]), method="GetUser", target="h:1"
    )
    assert type(error) is ClarifaiConfigurationError
    assert not error.retryable
    message = str(error)
    for phrase in [*phrases, "Not retried: this is a configuration problem"]:
        assert phrase in message
    assert "Could not reach" not in message
    assert error.code_name == "UNAVAILABLE"


def test_root_certificate_hints_name_the_connection_field():
    for case in ("untrusted", "roots"):
        error = error_from_rpc(
            FakeRpcError(grpc.StatusCode.UNAVAILABLE, TLS_DETAILS[case]), method="GetUser", target="h:1"
        )
        assert "the Airflow connection's extra 'root_certificates_path'" in str(error)


def test_a_plain_outage_is_still_retried():
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, ADDRESS + "Connection refused"),
        method="GetUser",
        target="h:1",
    )
    assert type(error) is ClarifaiUnavailableError


# Messages over gRPC's size limit ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "which", "fix"),
    [
        ("SERVER: Received message larger than max (5000 vs. 4194304)", "The request was", "batch_size"),
        ("CLIENT: Sent message larger than max (5000 vs. 10)", "The request was", "input_args"),
        ("SERVER: Sent message larger than max (5000 vs. 1000)", "The answer was", "per_page"),
        (
            "Stream removed (CLIENT: Received message larger than max (5000 vs. 10))",
            "The answer was",
            "per_page",
        ),
        ("Received message larger than max (5000 vs. 10)", "A message was", "per_page"),
    ],
)
def test_a_message_too_large_is_rejected_not_throttled(detail, which, fix):
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, detail),
        method="ListPipelineVersionRuns",
        target="h:1",
    )
    assert type(error) is ClarifaiRequestRejectedError
    assert not error.retryable
    message = str(error)
    assert f"{which} larger than gRPC allows" in message
    assert "this is not throttling" in message
    assert fix in message
    assert detail in message


def test_resource_exhausted_without_a_size_is_still_throttling():
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded"), method="GetUser", target="h:1"
    )
    assert type(error) is ClarifaiThrottledError


# Nothing unbounded reaches a message ------------------------------------------------------------------


def test_a_ten_megabyte_detail_gives_a_short_message():
    huge = "x" * 10_000_000
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.INTERNAL, huge), method="GetUser", target="h:1")
    assert len(str(error)) < 1000
    assert "... (10000000 characters)" in str(error)
    assert error.description is not None and len(error.description) < 500


def test_a_ten_megabyte_service_description_gives_a_short_message():
    status = status_pb2.Status(
        code=status_code_pb2.CONN_DOES_NOT_EXIST,
        description="d" * 10_000_000,
        details="e" * 10_000_000,
        req_id="r" * 10_000,
    )
    error = error_from_status(status, method="GetPipelineVersionRun")
    assert len(str(error)) < 1500
    for text in (error.description, error.details, error.req_id):
        assert text is not None and len(text) < 500


@pytest.mark.parametrize("offset", range(395, 405))
def test_a_token_cut_by_the_clip_leaves_no_piece_behind(offset):
    token = "tok-0123456789abcdef"
    detail = "a" * offset + token + "b" * 1000
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.INTERNAL, detail), method="GetUser", target="h:1", secret=token
    )
    message = str(error)
    assert "tok-0" not in message
    assert token[:4] not in message.replace("... (", "")


def test_a_scrubbed_short_detail_is_kept_whole():
    error = error_from_rpc(
        FakeRpcError(grpc.StatusCode.INTERNAL, "bad key tok-123 here"),
        method="GetUser",
        target="h:1",
        secret="tok-123",
    )
    assert "bad key *** here" in str(error)
