from __future__ import annotations

import pytest
from clarifai_grpc.grpc.api.status import status_code_pb2

from airflow_provider_clarifai.exceptions import (
    ClarifaiConfigurationError,
    ClarifaiError,
    ClarifaiNotFoundError,
    ClarifaiUnexpectedResponseError,
)
from airflow_provider_clarifai.runs import PipelineRun
from airflow_provider_clarifai.status import PipelineRunStatus as S
from airflow_provider_clarifai.waiting import EventStatus, RunWaitEvent, RunWaitSpec, Verdict, failure_message


def run_in(code: int, name: str = "") -> PipelineRun:
    return PipelineRun(run_id="r1", status_code=code, status_name=name or str(code), pipeline_id="p")


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (S.COMPLETED, Verdict.SUCCESS),
        (S.FAILED, Verdict.FAILURE),
        (S.CANCELLED, Verdict.FAILURE),
        (S.UNEXPECTED_ERROR, Verdict.FAILURE),
        (S.QUEUED, Verdict.WAITING),
        (S.RUNNING, Verdict.WAITING),
        (S.PAUSED, Verdict.WAITING),
        (S.CONFLICT, Verdict.WAITING),
    ],
)
def test_default_spec(status, verdict):
    assert RunWaitSpec().judge(run_in(status.code, status.value)) is verdict


def test_unknown_codes_fail_closed():
    assert RunWaitSpec().judge(run_in(status_code_pb2.SUCCESS, "SUCCESS")) is Verdict.FAILURE
    assert RunWaitSpec().judge(run_in(424242)) is Verdict.FAILURE
    assert "unknown state" in failure_message(run_in(424242, "UNKNOWN_CODE_424242"), RunWaitSpec())


def test_a_terminal_state_outside_both_sets_is_a_failure():
    spec = RunWaitSpec.build(success_statuses=["COMPLETED"], failure_statuses=["FAILED"])
    assert spec.judge(run_in(S.CANCELLED.code, "JOB_CANCELLED")) is Verdict.FAILURE


def test_custom_sets():
    spec = RunWaitSpec.build(success_statuses=["RUNNING"], failure_statuses=["PAUSED"])
    assert spec.judge(run_in(S.RUNNING.code)) is Verdict.SUCCESS
    assert spec.judge(run_in(S.PAUSED.code)) is Verdict.FAILURE
    assert spec.to_lists() == (["JOB_RUNNING"], ["JOB_PAUSED"])


@pytest.mark.parametrize(
    ("success", "failure", "phrase"),
    [
        ([], None, "at least one"),
        (["COMPLETED"], ["COMPLETED"], "both a success and a failure"),
        (["DONE"], None, "valid states"),
    ],
)
def test_bad_specs(success, failure, phrase):
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        RunWaitSpec.build(success, failure)


def test_event_round_trip():
    event = RunWaitEvent(EventStatus.FAILURE, "r1", "boom", run={"status": "JOB_FAILED"}, log_tail=["a"])
    assert RunWaitEvent.from_payload(event.to_dict()) == event


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "success",
        {"status": "succeeded", "run_id": "r1", "message": ""},
        {"status": "success", "run_id": "r1", "message": "ok"},
        {"status": "success", "run_id": "", "message": "ok", "run": {"status": "JOB_COMPLETED"}},
        {"status": "failure", "run_id": "r1", "message": "x", "run": "JOB_FAILED"},
        {"status": "failure", "run_id": "r1", "message": "x", "log_tail": "line"},
    ],
)
def test_malformed_events_fail_closed(payload):
    with pytest.raises(ClarifaiUnexpectedResponseError, match="Failing closed"):
        RunWaitEvent.from_payload(payload)


def test_error_events_raise_the_named_class_or_the_base():
    event = RunWaitEvent(EventStatus.ERROR, "r1", "no such run", error_class="ClarifaiNotFoundError")
    with pytest.raises(ClarifaiNotFoundError, match="no such run"):
        event.raise_for_error()
    rogue = RunWaitEvent(EventStatus.ERROR, "r1", "x", error_class="SystemExit")
    with pytest.raises(ClarifaiError) as info:
        rogue.raise_for_error()
    assert type(info.value) is ClarifaiError
    RunWaitEvent(EventStatus.SUCCESS, "r1", "ok", run={"status": "JOB_COMPLETED"}).raise_for_error()
