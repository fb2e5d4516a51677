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
