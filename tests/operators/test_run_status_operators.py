"""Pause, resume and cancel operators: the rules as pure functions, then real DAGs against the emulator.

The DAG tests run ``dag.test()`` in a real Airflow (metadata DB on SQLite) against the emulator over
loopback gRPC, and check three things each time: the task states, the XComs the tasks pushed, and the
runs' states in the emulator afterwards. The emulator's clock is manual, so runs only change when a task
changes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiCancelPipelineRunOperator,
    ClarifaiPausePipelineRunOperator,
    ClarifaiPipelineRunStatusOperator,
    ClarifaiResumePipelineRunOperator,
)
from airflow_provider_clarifai.operators.outcomes import (
    RunChangeOutcome,
    _batch_failure_message,
    _record_before_change,
    _record_change,
    _RunRecord,
    settled_spec,
)
from airflow_provider_clarifai.runs import PipelineRun, RunStatusChange
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction
from airflow_provider_clarifai.waiting import Verdict
from tests.airflow_dags import run_dag_test, write_dag

VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")
IDS_NAMES = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")
IDS_SOURCE = (
    "IDS = dict(user_id='demo-user', app_id='pipelines-app', pipeline_id='nightly-training', "
    "pipeline_version_id='v1')"
)
# Records every failed task's exception into failures.jsonl beside the DAG file, so tests can check the
# exception's class and message, not just that the task failed.
DAG_HEADER = f"""
import json
from pathlib import Path

import pendulum

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiCancelPipelineRunOperator,
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)

{IDS_SOURCE}
FAILURES = Path(__file__).with_name("failures.jsonl")


def record_failure(context):
    error = context.get("exception")
    with FAILURES.open("a") as out:
        out.write(json.dumps({{"task_id": context["ti"].task_id, "type": type(error).__name__,
                              "message": str(error)}}) + "\\n")


DEFAULTS = dict(start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), on_failure_callback=record_failure)
"""

P, Q, R, C, F, X, E, K = (
    PipelineRunStatus.PAUSED,
    PipelineRunStatus.QUEUED,
    PipelineRunStatus.RUNNING,
    PipelineRunStatus.COMPLETED,
    PipelineRunStatus.FAILED,
    PipelineRunStatus.CANCELLED,
    PipelineRunStatus.UNEXPECTED_ERROR,
    PipelineRunStatus.CONFLICT,
)


# Fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture
def dags(dag_folder):
    """The per-test DAG folder, where ``dag.test()`` finds the DAG."""
    return dag_folder


def seed(emulator, **runs: str) -> None:
    for run_id, status in runs.items():
        emulator.backend.add_run(*VERSION, run_id.replace("_", "-"), status=status)


def states(emulator, *run_ids: str) -> dict[str, str]:
    return {run_id: emulator.backend.run_status(*VERSION, run_id) for run_id in run_ids}


def failures(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / "failures.jsonl"
    if not path.exists():
        return {}
    return {row["task_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def by_run(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["run_id"]: record for record in records}


# The rules, as pure functions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "settled", "unsettled"),
    [
        (RunAction.PAUSE, {P, C, F, X, E, K}, {Q, R}),
        (RunAction.RESUME, {R, Q, C, F, X, E, K}, {P}),
        (RunAction.CANCEL, {C, F, X, E}, {Q, R, P, K}),
    ],
)
def test_a_changed_run_has_settled_once_it_left_the_states_the_action_applies_to(action, settled, unsettled):
    assert settled | unsettled == set(PipelineRunStatus)
    spec = settled_spec(action)
    judged = {status: spec.judge(PipelineRun("r", status.code, status.value)) for status in PipelineRunStatus}
    assert {status for status, verdict in judged.items() if verdict is Verdict.SUCCESS} == settled
    assert {status for status, verdict in judged.items() if verdict is Verdict.WAITING} == unsettled
    # A state this provider does not know has not settled into anything: fail closed.
    assert spec.judge(PipelineRun("r", 99, "CODE_99")) is Verdict.FAILURE


@pytest.mark.parametrize(
    ("action", "state", "on_forbidden", "outcome"),
    [
        (RunAction.PAUSE, "JOB_RUNNING", "fail", None),
        (RunAction.PAUSE, "JOB_QUEUED", "fail", None),
        (RunAction.PAUSE, "JOB_PAUSED", "fail", RunChangeOutcome.ALREADY_IN_TARGET),
        (RunAction.PAUSE, "JOB_COMPLETED", "fail", RunChangeOutcome.FORBIDDEN),
        (RunAction.PAUSE, "JOB_COMPLETED", "skip", RunChangeOutcome.SKIPPED),
        (RunAction.RESUME, "JOB_PAUSED", "fail", None),
        (RunAction.RESUME, "JOB_RUNNING", "fail", RunChangeOutcome.ALREADY_IN_TARGET),
        (RunAction.RESUME, "JOB_CANCELLED", "fail", RunChangeOutcome.FORBIDDEN),
        (RunAction.RESUME, "JOB_QUEUED", "skip", RunChangeOutcome.SKIPPED),
        (RunAction.CANCEL, "JOB_CONFLICT", "fail", None),
        (RunAction.CANCEL, "JOB_PAUSED", "fail", None),
        (RunAction.CANCEL, "JOB_CANCELLED", "fail", RunChangeOutcome.ALREADY_IN_TARGET),
        (RunAction.CANCEL, "JOB_FAILED", "fail", RunChangeOutcome.FORBIDDEN),
        # An unknown state never counts as allowed or done: fail closed, whatever on_forbidden says.
        (RunAction.CANCEL, "UNKNOWN_CODE_64999", "skip", RunChangeOutcome.FAILED),
        (RunAction.PAUSE, "JOB_SOMETHING_NEW", "fail", RunChangeOutcome.FAILED),
    ],
)
def test_each_run_is_judged_by_its_state_before_the_change(action, state, on_forbidden, outcome):
    record = _record_before_change(action, "r1", state, on_forbidden)
    assert record.outcome is outcome
    assert (record.state_before, record.state_after) == (state, state)
    if outcome in (RunChangeOutcome.FORBIDDEN, RunChangeOutcome.SKIPPED):
        assert action.describe_allowed() in record.message
    if outcome is RunChangeOutcome.FAILED:
        assert "unknown" in record.message


def test_the_services_answer_for_each_run_becomes_its_outcome():
    target = PipelineRunStatus.PAUSED
    applied = _RunRecord("a", "JOB_RUNNING")
    _record_change(applied, RunStatusChange("a", target, True, "JOB_PAUSED"), RunAction.PAUSE)
    assert (applied.outcome, applied.state_after) == (RunChangeOutcome.CHANGED, "JOB_PAUSED")
    assert applied.message == "paused (JOB_RUNNING -> JOB_PAUSED)"

    # Refused, but found in the target state when read back: somebody got there first.
    raced_to_target = _RunRecord("b", "JOB_RUNNING")
    change = RunStatusChange("b", target, True, "JOB_PAUSED", "PIPELINE_INVALID_REQUEST", "it is JOB_PAUSED")
    _record_change(raced_to_target, change, RunAction.PAUSE)
    assert raced_to_target.outcome is RunChangeOutcome.ALREADY_IN_TARGET

    # Refused: the run changed between the read and the request.
    raced = _RunRecord("c", "JOB_RUNNING")
    change = RunStatusChange("c", target, False, "JOB_COMPLETED", "PIPELINE_INVALID_REQUEST", "it is done")
    _record_change(raced, change, RunAction.PAUSE)
    assert (raced.outcome, raced.state_after) == (RunChangeOutcome.FAILED, "JOB_COMPLETED")
    assert "PIPELINE_INVALID_REQUEST: it is done" in raced.message
    assert raced.to_dict() == {
        "run_id": "c",
        "state_before": "JOB_RUNNING",
        "state_after": "JOB_COMPLETED",
        "outcome": "failed",
        "message": raced.message,
    }


def test_the_failure_message_lists_every_run_and_says_what_to_do():
    records = [
        _RunRecord("ok", "JOB_RUNNING", "JOB_PAUSED", RunChangeOutcome.CHANGED, "paused"),
        _RunRecord("same", "JOB_PAUSED", "JOB_PAUSED", RunChangeOutcome.ALREADY_IN_TARGET, "already"),
        _RunRecord("done", "JOB_COMPLETED", "JOB_COMPLETED", RunChangeOutcome.FORBIDDEN, "cannot"),
        _RunRecord("ghost", None, None, RunChangeOutcome.NOT_FOUND, "no such run"),
        _RunRecord("slow", "JOB_RUNNING", "JOB_RUNNING", RunChangeOutcome.TIMED_OUT, "still"),
    ]
    message = _batch_failure_message(RunAction.PAUSE, records, wait_timeout=30)
    assert message.startswith("Could not pause every run: 3 of 5 failed")
    for record in records:
        assert f"- {record.run_id}: {record.outcome}: {record.message}" in message
    assert "(ok, slow)" in message
    assert "pause is allowed from JOB_QUEUED, JOB_RUNNING; pass on_forbidden='skip'" in message
    assert "check the run ids" in message
    assert "raise wait_timeout (now 30 s)" in message


# Construction: no network, errors that say what to write -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({}, "got neither of run_ids and select_statuses"),
        ({"run_ids": ["a"], "select_statuses": ["RUNNING"]}, "got both of run_ids and select_statuses"),
        ({"run_ids": "a", "on_forbidden": "ignore"}, "on_forbidden must be 'fail' or 'skip'"),
        ({"run_ids": "a", "wait_timeout": 0}, "wait_timeout must be a positive number"),
        ({"run_ids": "a", "poll_interval": -1}, "poll_interval must be a positive number"),
        ({"run_ids": "a", "poll_interval": True}, "poll_interval must be a positive number"),
        ({"run_ids": "a", "request_timeout": "10"}, "request_timeout must be a positive number"),
        ({"run_ids": "a", "wait_for_target": "yes"}, "wait_for_target must be True or False"),
        ({"run_ids": "a", "api_retry_policy": {"attempts": 3}}, "unknown setting"),
    ],
)
def test_invalid_arguments_fail_at_construction(kwargs, phrase):
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        ClarifaiPausePipelineRunOperator(task_id="t", **kwargs)


def test_the_base_class_needs_an_action():
    with pytest.raises(TypeError, match="sets no action"):
        ClarifaiPipelineRunStatusOperator(task_id="t", run_ids="a")


def test_operators_declare_their_action_templates_and_link():
    assert ClarifaiPausePipelineRunOperator.action is RunAction.PAUSE
    assert ClarifaiResumePipelineRunOperator.action is RunAction.RESUME
    assert ClarifaiCancelPipelineRunOperator.action is RunAction.CANCEL
    op = ClarifaiCancelPipelineRunOperator(task_id="t", select_statuses=["RUNNING"], wait_for_target=True)
    assert set(op.template_fields) == {
        "clarifai_conn_id",
        "user_id",
        "app_id",
        "pipeline_id",
        "pipeline_version_id",
        "config_lock_path",
        "run_ids",
        "select_statuses",
        "compute_cluster_id",
        "nodepool_id",
    }
    assert [type(link).__name__ for link in op.operator_extra_links] == ["ClarifaiPipelineRunLink"]
    assert "hook" not in vars(op)  # Built lazily, in execute.


# Waiting, through execute, with a scripted service and a fake clock (the emulator settles every
# change at once) ------------------------------------------------------------------------------------


class ScriptedHook:
    """Stands in for the hook: every run is read as its script says, one state per read after the
    change (the last one repeats); the change itself is applied. Sleeping moves a fake clock."""

    def __init__(self, before: dict[str, str], after: dict[str, list[str]]) -> None:
        from airflow_provider_clarifai.retry import RetryClock

        self.before, self.after = before, after
        self.changed = False
        self.reads: list[str] = []
        self.sleeps: list[float] = []
        #: The time left given to each read after the change (ClarifaiHook.time_limit).
        self.limits: list[float | None] = []
        self.now = 1000.0
        self.clock = RetryClock(now=lambda: self.now, sleep=self._sleep)
        self.batch_size = 100

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def resolve_ids(self, **_: Any) -> Any:
        from airflow_provider_clarifai.ids import PipelineVersionIds

        return PipelineVersionIds(*VERSION)

    def run_url(self, ids: Any, run_id: str) -> str:
        return f"https://clarifai.invalid/{run_id}"

    @contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        if self.changed:
            self.limits.append(seconds)
        yield

    def get_run(self, ids: Any, run_id: str) -> PipelineRun:
        if not self.changed:
            name = self.before[run_id]
        else:
            self.reads.append(run_id)
            states = self.after[run_id]
            name = states.pop(0) if len(states) > 1 else states[0]
        return PipelineRun(run_id=run_id, status_code=PipelineRunStatus(name).code, status_name=name)

    def set_runs_status(self, ids: Any, run_ids: list[str], action: RunAction) -> list[RunStatusChange]:
        self.changed = True
        return [
            RunStatusChange(run_id, action.target_status, True, action.target_status.value)
            for run_id in run_ids
        ]

    def close(self) -> None:
        pass


def execute(op: ClarifaiPipelineRunStatusOperator, hook: ScriptedHook) -> list[dict[str, Any]]:
    from tests.sensors import FakeTaskInstance

    op.hook = hook  # the operator's hook, built on first use, is this one
    return op.execute({"ti": FakeTaskInstance()})


def test_waiting_polls_until_every_changed_run_has_settled():
    op = ClarifaiCancelPipelineRunOperator(
        task_id="t",
        run_ids=["a", "b"],
        wait_for_target=True,
        poll_interval=2,
        **dict(zip(IDS_NAMES, VERSION, strict=True)),
    )
    hook = ScriptedHook(
        before={"a": "JOB_RUNNING", "b": "JOB_QUEUED"},
        after={"a": ["JOB_RUNNING", "JOB_RUNNING", "JOB_CANCELLED"], "b": ["JOB_FAILED"]},
    )

    records = execute(op, hook)

    assert hook.reads == ["a", "b", "a", "a"]
    assert hook.sleeps == [2, 2]
    assert [(r["outcome"], r["state_after"]) for r in records] == [
        ("changed", "JOB_CANCELLED"),
        ("changed", "JOB_FAILED"),  # Terminal is settled for cancel, whatever the end.
    ]
    assert records[0]["message"] == "cancelled (JOB_RUNNING -> JOB_CANCELLED, settled)"


def test_waiting_times_out_and_marks_the_unsettled_runs():
    from airflow_provider_clarifai.exceptions import ClarifaiBatchError

    op = ClarifaiPausePipelineRunOperator(
        task_id="t",
        run_ids=["a", "b"],
        wait_for_target=True,
        wait_timeout=5,
        poll_interval=2,
        **dict(zip(IDS_NAMES, VERSION, strict=True)),
    )
    hook = ScriptedHook(
        before={"a": "JOB_RUNNING", "b": "JOB_QUEUED"}, after={"a": ["JOB_RUNNING"], "b": ["JOB_PAUSED"]}
    )

    with pytest.raises(ClarifaiBatchError) as failed:
        execute(op, hook)

    assert hook.sleeps == [2, 2, 1]  # The last sleep is cut to the deadline.
    # Each read is cut to the time left (a and b first, then a alone); the last one, with none left,
    # still gets the retry policy's floor for one short attempt.
    assert hook.limits == [5, 5, 3, 1, 0]
    assert "paused, but still JOB_RUNNING after waiting 5 s for it to settle" in str(failed.value)
    assert RunChangeOutcome.TIMED_OUT.is_failure and RunChangeOutcome.TIMED_OUT.was_applied


# Real DAGs against the emulator --------------------------------------------------------------------


@pytest.mark.integration
def test_runs_given_by_id(dags, emulator):
    """One DAG, one independent task per case, each on runs of its own."""
    seed(
        emulator,
        one_running="JOB_RUNNING",
        list_running="JOB_RUNNING",
        list_queued="JOB_QUEUED",
        already_paused="JOB_PAUSED",
        forbidden_completed="JOB_COMPLETED",
        skip_failed="JOB_FAILED",
        mix_running="JOB_RUNNING",
        mix_completed="JOB_COMPLETED",
        mix_paused="JOB_PAUSED",
        mix_cancelled="JOB_CANCELLED",
    )
    path = write_dag(
        dags,
        DAG_HEADER
        + """
PARAMS = {"run_id": "one-running", "version": "v1"}
with DAG("by_id", schedule=None, default_args=DEFAULTS, params=PARAMS) as dag:
    pause_one = ClarifaiPausePipelineRunOperator(
        task_id="pause_one",
        run_ids="{{ params.run_id }}",
        user_id="demo-user",
        app_id="pipelines-app",
        pipeline_id="nightly-training",
        pipeline_version_id="{{ params.version }}",
    )
    pause_list = ClarifaiPausePipelineRunOperator(
        task_id="pause_list", run_ids=["list-running", "list-queued"], **IDS
    )
    resume_list = ClarifaiResumePipelineRunOperator(task_id="resume_list", run_ids=pause_list.output, **IDS)
    pause_already = ClarifaiPausePipelineRunOperator(task_id="pause_already", run_ids="already-paused", **IDS)
    pause_forbidden = ClarifaiPausePipelineRunOperator(
        task_id="pause_forbidden", run_ids=["forbidden-completed"], **IDS
    )
    pause_skip = ClarifaiPausePipelineRunOperator(
        task_id="pause_skip", run_ids=["skip-failed"], on_forbidden="skip", **IDS
    )
    resume_nothing = ClarifaiResumePipelineRunOperator(
        task_id="resume_nothing", run_ids=pause_skip.output["changed_run_ids"], **IDS
    )
    cancel_mixed = ClarifaiCancelPipelineRunOperator(
        task_id="cancel_mixed",
        run_ids=["mix-running", "mix-completed", "ghost", "mix-paused", "mix-cancelled"],
        **IDS,
    )
""",
    )
    result = run_dag_test(path, "by_id")
    failed = failures(dags)

    assert result.task_states == {
        "pause_one": "success",
        "pause_list": "success",
        "resume_list": "success",
        "pause_already": "success",
        "pause_forbidden": "failed",
        "pause_skip": "success",
        "resume_nothing": "success",
        "cancel_mixed": "failed",
    }
    assert set(failed) == {"pause_forbidden", "cancel_mixed"}

    # One id, rendered from params (the version id too); the link points at that run.
    assert result.xcom("pause_one") == [
        {
            "run_id": "one-running",
            # Each record names its pipeline version: a resume given records acts on exactly those runs.
            "user_id": "demo-user",
            "app_id": "pipelines-app",
            "pipeline_id": "nightly-training",
            "pipeline_version_id": "v1",
            "state_before": "JOB_RUNNING",
            "state_after": "JOB_PAUSED",
            "outcome": "changed",
            "message": "paused (JOB_RUNNING -> JOB_PAUSED)",
        }
    ]
    assert result.xcom("pause_one", key="changed_run_ids") == ["one-running"]
    assert result.xcom("pause_one", key="_link_ClarifaiPipelineRunLink") == (
        "https://clarifai.com/demo-user/pipelines-app/pipelines/nightly-training/versions/v1/runs/one-running"
    )

    # A list, then a resume given the pause's records: both runs paused, then running again.
    paused = result.xcom("pause_list")
    assert [(r["run_id"], r["state_before"], r["outcome"]) for r in paused] == [
        ("list-running", "JOB_RUNNING", "changed"),
        ("list-queued", "JOB_QUEUED", "changed"),
    ]
    assert result.xcom("pause_list", key="_link_ClarifaiPipelineRunLink").endswith("/versions/v1/runs")
    resumed = result.xcom("resume_list")
    assert [(r["run_id"], r["state_before"], r["state_after"]) for r in resumed] == [
        ("list-running", "JOB_PAUSED", "JOB_RUNNING"),
        ("list-queued", "JOB_PAUSED", "JOB_RUNNING"),
    ]

    # Already in the target state: success, nothing changed.
    assert [(r["outcome"], r["state_after"]) for r in result.xcom("pause_already")] == [
        ("already_in_target", "JOB_PAUSED")
    ]
    assert result.xcom("pause_already", key="changed_run_ids") == []

    # Forbidden: the task fails saying which states are allowed, and the run is untouched.
    (forbidden,) = result.xcom("pause_forbidden", key="run_outcomes")
    assert forbidden["outcome"] == "forbidden"
    assert "pause is allowed from JOB_QUEUED, JOB_RUNNING" in forbidden["message"]
    assert failed["pause_forbidden"]["type"] == "ClarifaiBatchError"
    assert "forbidden-completed: forbidden" in failed["pause_forbidden"]["message"]
    assert "on_forbidden='skip'" in failed["pause_forbidden"]["message"]

    # Forbidden with on_forbidden="skip": reported, not failed; then an empty list is a no-op.
    assert [r["outcome"] for r in result.xcom("pause_skip")] == ["skipped"]
    assert result.xcom("resume_nothing") == []
    assert result.xcom("resume_nothing", key="changed_run_ids") == []

    # A mixed batch: the good runs changed, every run reported in order, the task failed.
    outcomes = result.xcom("cancel_mixed", key="run_outcomes")
    assert [(r["run_id"], r["outcome"]) for r in outcomes] == [
        ("mix-running", "changed"),
        ("mix-completed", "forbidden"),
        ("ghost", "not_found"),
        ("mix-paused", "changed"),
        ("mix-cancelled", "already_in_target"),
    ]
    assert by_run(outcomes)["ghost"]["state_before"] is None
    assert result.xcom("cancel_mixed", key="changed_run_ids") == ["mix-running", "mix-paused"]
    assert result.xcom("cancel_mixed") is None  # Failed: no return value, the records are in run_outcomes.
    message = failed["cancel_mixed"]["message"]
    assert message.startswith("Could not cancel every run: 2 of 5 failed")
    for record in outcomes:
        assert f"- {record['run_id']}: {record['outcome']}: " in message

    assert states(
        emulator,
        "one-running",
        "list-running",
        "list-queued",
        "already-paused",
        "forbidden-completed",
        "skip-failed",
        "mix-running",
        "mix-completed",
        "mix-paused",
        "mix-cancelled",
    ) == {
        "one-running": "JOB_PAUSED",
        "list-running": "JOB_RUNNING",
        "list-queued": "JOB_RUNNING",
        "already-paused": "JOB_PAUSED",
        "forbidden-completed": "JOB_COMPLETED",
        "skip-failed": "JOB_FAILED",
        "mix-running": "JOB_CANCELLED",
        "mix-completed": "JOB_COMPLETED",
        "mix-paused": "JOB_CANCELLED",
        "mix-cancelled": "JOB_CANCELLED",
    }
    # Only the runs that could change were sent: pause_one, pause_list, resume_list, cancel_mixed.
    assert emulator.requests.count("PatchPipelineVersionRuns") == 4


@pytest.mark.integration
def test_a_resume_acts_on_exactly_the_runs_the_pause_paused(dags, emulator):
    # The selector includes PAUSED, so run-paused (paused before the DAG started) is one of the pause's
    # targets, as already_in_target; the resume must still leave it paused.
    path = write_dag(
        dags,
        DAG_HEADER
        + """
with DAG("window", schedule=None, default_args=DEFAULTS) as dag:
    pause = ClarifaiPausePipelineRunOperator(
        task_id="pause", select_statuses=["QUEUED", "RUNNING", "PAUSED"], **IDS
    )
    resume = ClarifaiResumePipelineRunOperator(
        task_id="resume", run_ids=pause.output["changed_run_ids"], **IDS
    )
""",
    )
    result = run_dag_test(path, "window")

    assert result.task_states == {"pause": "success", "resume": "success"}
    paused = by_run(result.xcom("pause"))
    assert {run_id: record["outcome"] for run_id, record in paused.items()} == {
        "run-queued": "changed",
        "run-running": "changed",
        "run-forever": "changed",
        "run-paused": "already_in_target",
    }
    assert sorted(result.xcom("pause", key="changed_run_ids")) == ["run-forever", "run-queued", "run-running"]
    assert sorted(r["run_id"] for r in result.xcom("resume")) == ["run-forever", "run-queued", "run-running"]
    assert states(emulator, "run-paused", "run-queued", "run-running", "run-forever", "run-completed") == {
        "run-paused": "JOB_PAUSED",
        "run-queued": "JOB_RUNNING",
        "run-running": "JOB_RUNNING",
        "run-forever": "JOB_RUNNING",
        "run-completed": "JOB_COMPLETED",
    }


@pytest.mark.integration
def test_cancel_every_running_run_and_wait_until_cancelled(dags, emulator):
    path = write_dag(
        dags,
        DAG_HEADER
        + """
with DAG("cancel_running", schedule=None, default_args=DEFAULTS) as dag:
    ClarifaiCancelPipelineRunOperator(
        task_id="cancel",
        select_statuses=["RUNNING"],
        wait_for_target=True,
        poll_interval=0.1,
        **IDS,
    )
""",
    )
    result = run_dag_test(path, "cancel_running")

    assert result.task_states == {"cancel": "success"}
    records = result.xcom("cancel")
    assert sorted(r["run_id"] for r in records) == ["run-forever", "run-running"]
    for record in records:
        assert (record["state_before"], record["state_after"], record["outcome"]) == (
            "JOB_RUNNING",
            "JOB_CANCELLED",
            "changed",
        )
        assert record["message"] == "cancelled (JOB_RUNNING -> JOB_CANCELLED, settled)"
    # The selector listed once; the wait read each changed run back.
    assert emulator.requests.count("ListPipelineVersionRuns") == 1
    assert emulator.requests.count("GetPipelineVersionRun") == 2
    assert states(emulator, "run-running", "run-forever", "run-queued", "run-paused") == {
        "run-running": "JOB_CANCELLED",
        "run-forever": "JOB_CANCELLED",
        "run-queued": "JOB_QUEUED",
        "run-paused": "JOB_PAUSED",
    }


@pytest.mark.integration
def test_bad_rendered_input_fails_before_anything_is_sent(dags, emulator):
    path = write_dag(
        dags,
        DAG_HEADER
        + """
with DAG("bad_input", schedule=None, default_args=DEFAULTS,
         params={"run_id": "run running", "run_ids": ["run-running", "run-forever"]}) as dag:
    ClarifaiPausePipelineRunOperator(task_id="id_with_space", run_ids="{{ params.run_id }}", **IDS)
    # Without render_template_as_native_obj, a list param renders as its text.
    ClarifaiPausePipelineRunOperator(task_id="list_as_text", run_ids="{{ params.run_ids }}", **IDS)
    ClarifaiPausePipelineRunOperator(task_id="unknown_state", select_statuses=["SLEEPING"], **IDS)
    ClarifaiCancelPipelineRunOperator(task_id="ended_state", select_statuses=["COMPLETED"], **IDS)
    ClarifaiPausePipelineRunOperator(
        task_id="missing_ids", run_ids="run-running", config_lock_path="nowhere/config-lock.yaml"
    )
""",
    )
    result = run_dag_test(path, "bad_input")

    assert set(result.task_states.values()) == {"failed"}
    failed = failures(dags)
    assert {task_id: row["type"] for task_id, row in failed.items()} == dict.fromkeys(
        result.task_states, "ClarifaiConfigurationError"
    )
    assert "contains whitespace ('run running')" in failed["id_with_space"]["message"]
    assert "render_template_as_native_obj=True" in failed["list_as_text"]["message"]
    assert "'SLEEPING' is not a pipeline run state" in failed["unknown_state"]["message"]
    assert "selects JOB_COMPLETED, but cancel is allowed from" in failed["ended_state"]["message"]
    assert "nowhere/config-lock.yaml" in failed["missing_ids"]["message"]
    assert emulator.requests.count("PatchPipelineVersionRuns") == 0
    assert emulator.requests.count() == 0
    assert states(emulator, "run-running", "run-forever") == {
        "run-running": "JOB_RUNNING",
        "run-forever": "JOB_RUNNING",
    }
