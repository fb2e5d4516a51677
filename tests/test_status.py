from __future__ import annotations

import pytest
from clarifai_grpc.grpc.api.status import status_code_pb2

from airflow_provider_clarifai.status import (
    ACTIVE_STATUSES,
    ALLOWED_TRANSITIONS,
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    TERMINAL_STATUSES,
    PipelineRunStatus,
    RunAction,
    UnknownRunStatusError,
    format_statuses,
    parse_statuses,
    status_code_name,
)

S = PipelineRunStatus


def test_every_member_names_a_real_clarifai_code():
    for status in S:
        assert status.code == status_code_pb2.StatusCode.Value(status.value)
        assert S.from_code(status.code) is status


def test_sets_partition_the_states():
    assert TERMINAL_STATUSES == {S.COMPLETED, S.FAILED, S.CANCELLED, S.UNEXPECTED_ERROR}
    assert SUCCESS_STATUSES == {S.COMPLETED}
    assert FAILURE_STATUSES == {S.FAILED, S.CANCELLED, S.UNEXPECTED_ERROR}
    assert ACTIVE_STATUSES == {S.QUEUED, S.RUNNING, S.PAUSED, S.CONFLICT}
    assert not (ACTIVE_STATUSES & TERMINAL_STATUSES)
    assert S.PAUSED.is_terminal is False
    assert S.CANCELLED.is_failure and not S.CANCELLED.is_success
    assert S.COMPLETED.is_success and S.COMPLETED.is_terminal


@pytest.mark.parametrize(
    ("action", "target", "allowed"),
    [
        (RunAction.PAUSE, S.PAUSED, {S.QUEUED, S.RUNNING}),
        (RunAction.RESUME, S.RUNNING, {S.PAUSED}),
        (RunAction.CANCEL, S.CANCELLED, {S.QUEUED, S.RUNNING, S.PAUSED, S.CONFLICT}),
    ],
)
def test_documented_transitions(action, target, allowed):
    assert action.target_status is target
    assert action.allowed_from == allowed
    for status in S:
        assert action.allows(status) is (status in allowed)


def test_a_cancelled_run_can_never_resume_or_be_cancelled_again():
    for action in RunAction:
        assert not action.allows(S.CANCELLED)
        assert not action.allows(S.COMPLETED)


def test_describe_allowed_lists_states_in_lifecycle_order():
    assert RunAction.PAUSE.describe_allowed() == "pause is allowed from JOB_QUEUED, JOB_RUNNING"
    assert ALLOWED_TRANSITIONS[RunAction.RESUME] == {S.PAUSED}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("RUNNING", S.RUNNING),
        ("running", S.RUNNING),
        (" JOB_PAUSED ", S.PAUSED),
        ("job_cancelled", S.CANCELLED),
        (S.COMPLETED, S.COMPLETED),
        (status_code_pb2.JOB_UNEXPECTED_ERROR, S.UNEXPECTED_ERROR),
    ],
)
def test_parse_accepts_the_forms_users_write(value, expected):
    assert S.parse(value) is expected


@pytest.mark.parametrize("value", ["RUN", "", "SUCCESS", 10000, 1, True, None, 3.5])
def test_parse_rejects_anything_else_with_the_valid_names(value):
    with pytest.raises(ValueError, match="valid states are JOB_QUEUED, JOB_RUNNING"):
        S.parse(value)


def test_unknown_codes_fail_closed():
    with pytest.raises(UnknownRunStatusError, match="treating it as a failure") as info:
        S.from_code(status_code_pb2.SUCCESS)
    assert info.value.name == "SUCCESS"
    with pytest.raises(UnknownRunStatusError, match="123456789"):
        S.from_code(123456789)


def test_parse_statuses_and_format():
    assert parse_statuses("queued") == {S.QUEUED}
    assert parse_statuses(["RUNNING", S.QUEUED]) == {S.QUEUED, S.RUNNING}
    assert format_statuses([S.FAILED, S.QUEUED]) == "JOB_QUEUED, JOB_FAILED"
    assert status_code_name(status_code_pb2.MIXED_STATUS) == "MIXED_STATUS"
    assert status_code_name(987654321) == "UNKNOWN_CODE_987654321"
