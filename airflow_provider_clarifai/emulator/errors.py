"""Application errors: what the emulated service answers in ``response.status`` (with gRPC OK).

The backend raises :class:`ApiError` carrying a ``status_code_pb2`` *name*; the servicer turns it into
``response.status``, the way the real service reports such errors. No gRPC is imported here.
"""

from __future__ import annotations

__all__ = [
    "BAD_REQUEST",
    "COMPUTE_CLUSTER_DOES_NOT_EXIST",
    "CONN_DOES_NOT_EXIST",
    "CONN_INSUFFICIENT_SCOPES",
    "CONN_KEY_INVALID",
    "CONN_THROTTLED",
    "INTERNAL_SERVER_ISSUE",
    "MIXED_STATUS",
    "NODEPOOL_DOES_NOT_EXIST",
    "PIPELINE_INVALID_REQUEST",
    "SUCCESS",
    "ApiError",
]

# Application status codes, by their status_code_pb2 names.
SUCCESS = "SUCCESS"
MIXED_STATUS = "MIXED_STATUS"
CONN_KEY_INVALID = "CONN_KEY_INVALID"
CONN_INSUFFICIENT_SCOPES = "CONN_INSUFFICIENT_SCOPES"
CONN_DOES_NOT_EXIST = "CONN_DOES_NOT_EXIST"
CONN_THROTTLED = "CONN_THROTTLED"
COMPUTE_CLUSTER_DOES_NOT_EXIST = "COMPUTE_CLUSTER_DOES_NOT_EXIST"
NODEPOOL_DOES_NOT_EXIST = "NODEPOOL_DOES_NOT_EXIST"
PIPELINE_INVALID_REQUEST = "PIPELINE_INVALID_REQUEST"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL_SERVER_ISSUE = "INTERNAL_SERVER_ISSUE"


class ApiError(Exception):
    """An application-level error, answered in ``response.status`` with gRPC OK.

    :param code: a ``status_code_pb2`` name, e.g. ``"CONN_DOES_NOT_EXIST"``.
    :param description: a short description.
    :param details: what the caller can do about it.
    """

    def __init__(self, code: str, description: str, details: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details
