"""ClarifaiHook against the emulator over real loopback gRPC, each method sync and asyncio."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.exceptions import (
    ClarifaiAuthError,
    ClarifaiConfigurationError,
    ClarifaiNotFoundError,
    ClarifaiRequestRejectedError,
    ClarifaiThrottledError,
    ClarifaiUnavailableError,
    ClarifaiUnexpectedResponseError,
)
from airflow_provider_clarifai.hooks import _transport
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import RetryClock, RetryPolicy
from airflow_provider_clarifai.runs import RunLogCursor
from airflow_provider_clarifai.status import PipelineRunStatus
from tests.hooks.conftest import FAST_RETRIES, IDS, run_async

pytestmark = pytest.mark.integration

USER, APP, PIPELINE, VERSION = IDS.user_id, IDS.app_id, IDS.pipeline_id, IDS.pipeline_version_id


@pytest.fixture
def hook(emulator):
    with ClarifaiHook(retry_policy=FAST_RETRIES) as hook:
        yield hook


def state(emulator, run_id: str) -> str:
    return emulator.backend.run_status(USER, APP, PIPELINE, VERSION, run_id)


def record_call_deadlines(monkeypatch) -> list[Any]:
    """The ``timeout=`` (the gRPC deadline) of every RPC the hook sends, as its stub receives it, in the
    blocking and the asyncio path alike; the calls themselves go on unchanged."""
    deadlines: list[Any] = []
    original = _transport.PipelineRunStub.method

    def recording(self, name):
        rpc = original(self, name)

        def recorded(*args, **kwargs):
            deadlines.append(kwargs.get("timeout"))
            return rpc(*args, **kwargs)

        return recorded

    monkeypatch.setattr(_transport.PipelineRunStub, "method", recording)
    return deadlines


class ManualRetryClock:
    """A :class:`RetryClock` for the hook on a manual clock: a backoff advances the clock at once, and is
    recorded, instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.waited: list[float] = []

        def sleep(seconds: float) -> None:
            self.waited.append(seconds)
            clock.advance(seconds)

        async def asleep(seconds: float) -> None:
            sleep(seconds)
            await asyncio.sleep(0)

        self.clock = RetryClock(monotonic=clock.now, sleep=sleep, asleep=asleep)


# Connection ---------------------------------------------------------------------------------------


def test_connection_test_makes_an_authenticated_call(hook, emulator):
    ok, message = hook.test_connection()
    assert ok, message
    assert "as user 'demo-user'" in message
    assert emulator.requests.count("GetUser") == 1


def test_connection_test_reports_a_wrong_token(monkeypatch, emulator):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAD", json.dumps(dict(emulator.airflow_connection(), password="wrong-pat"))
    )
    ok, message = ClarifaiHook("bad").test_connection()
    assert not ok
    assert "CONN_KEY_INVALID" in message
    assert "Personal Access Token" in message
    assert "wrong-pat" not in message


def test_connection_test_reports_an_unreachable_host(monkeypatch, unused_tcp_port):
    conn = {"conn_type": "clarifai", "host": f"http://127.0.0.1:{unused_tcp_port}", "password": "pat"}
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps(conn))
    ok, message = ClarifaiHook("down").test_connection()
    assert not ok
    assert f"Could not reach the Clarifai API at 127.0.0.1:{unused_tcp_port}" in message


def test_missing_connection_says_how_to_create_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(ClarifaiConfigurationError, match="AIRFLOW_CONN_NOWHERE"):
        ClarifaiHook("nowhere").get_settings()


def test_repr_names_the_connection_not_the_token(hook, emulator):
    hook.get_settings()
    assert repr(hook) == "ClarifaiHook(clarifai_conn_id='clarifai_default')"
    assert emulator.token not in repr(hook.get_settings())


def test_resolve_ids_uses_connection_defaults(monkeypatch, emulator):
    conn = emulator.airflow_connection({"user_id": USER, "app_id": APP})
    monkeypatch.setenv("AIRFLOW_CONN_WITH_DEFAULTS", json.dumps(conn))
    hook = ClarifaiHook("with_defaults")
    assert hook.resolve_ids(pipeline_id=PIPELINE, pipeline_version_id=VERSION) == IDS
    assert hook.run_url(IDS, "r1") == (
        "https://clarifai.com/demo-user/pipelines-app/pipelines/nightly-training/versions/v1/runs/r1"
    )


# Reading runs -------------------------------------------------------------------------------------


def test_get_run(hook, call, emulator):
    run = call(hook, "get_run", IDS, "run-running")
    assert run.run_id == "run-running"
    assert run.status is PipelineRunStatus.RUNNING
    assert (run.user_id, run.app_id, run.pipeline_id, run.pipeline_version_id) == (
        USER,
        APP,
        PIPELINE,
        VERSION,
    )
    assert run.created_at is not None
    assert run.to_dict()["status"] == "JOB_RUNNING"


def test_get_run_follows_the_emulated_clock(hook, call, emulator):
    emulator.clock.advance(6)
    run = call(hook, "get_run", IDS, "run-queued")
    assert run.status is PipelineRunStatus.RUNNING


@pytest.mark.parametrize(
    ("ids", "run_id", "phrase"),
    [
        (IDS, "no-such-run", "no-such-run"),
        (PipelineVersionIds(USER, APP, PIPELINE, "v-missing"), "run-running", "v-missing"),
        (
            PipelineVersionIds("other-user", "private-app", "private-pipeline", "v1"),
            "private-run",
            "private-run",
        ),
    ],
)
def test_unknown_or_invisible_runs_are_not_found(hook, call, ids, run_id, phrase):
    with pytest.raises(ClarifaiNotFoundError) as info:
        call(hook, "get_run", ids, run_id)
    assert phrase in str(info.value)
    assert info.value.code_name == "CONN_DOES_NOT_EXIST"
    assert info.value.req_id


def test_list_runs_reads_every_page(hook, call, emulator):
    runs = call(hook, "list_runs", IDS, per_page=2)
    assert len(runs) == 7
    assert len({run.run_id for run in runs}) == 7
    assert emulator.requests.count("ListPipelineVersionRuns") == 4


def test_list_runs_filters_by_status(hook, call):
    runs = call(hook, "list_runs", IDS, statuses=["RUNNING", "queued"])
    assert {run.run_id for run in runs} == {"run-running", "run-forever", "run-queued"}


def test_list_runs_max_pages(hook, call):
    assert len(call(hook, "list_runs", IDS, per_page=3, max_pages=1)) == 3


def test_list_runs_rejects_a_bad_filter_before_calling(hook, call, emulator):
    with pytest.raises(ClarifaiConfigurationError, match="valid states are"):
        call(hook, "list_runs", IDS, statuses=["SLEEPING"])
    assert emulator.requests.count() == 0


# Changing runs ------------------------------------------------------------------------------------


def test_pause_then_resume_then_cancel(hook, call, emulator):
    (paused,) = call(hook, "set_runs_status", IDS, ["run-running"], "pause")
    assert (paused.applied, paused.status_after) == (True, "JOB_PAUSED")
    assert state(emulator, "run-running") == "JOB_PAUSED"
    (resumed,) = call(hook, "set_runs_status", IDS, "run-running", "resume")
    assert (resumed.applied, resumed.status_after) == (True, "JOB_RUNNING")
    (cancelled,) = call(hook, "set_runs_status", IDS, ["run-running"], "cancel")
    assert (cancelled.applied, cancelled.status_after) == (True, "JOB_CANCELLED")
    assert state(emulator, "run-running") == "JOB_CANCELLED"


def test_a_mixed_batch_reports_every_run_and_changes_only_the_allowed(hook, call, emulator):
    changes = call(
        hook, "set_runs_status", IDS, ["run-running", "run-completed", "ghost", "run-queued"], "pause"
    )
    by_id = {change.run_id: change for change in changes}
    assert [change.run_id for change in changes] == ["run-running", "run-completed", "ghost", "run-queued"]
    assert by_id["run-running"].applied and by_id["run-queued"].applied
    rejected = by_id["run-completed"]
    assert (rejected.applied, rejected.status_after, rejected.error_code_name) == (
        False,
        "JOB_COMPLETED",
        "PIPELINE_INVALID_REQUEST",
    )
    assert "pause is allowed from JOB_QUEUED, JOB_RUNNING" in rejected.error_description
    assert (by_id["ghost"].applied, by_id["ghost"].status_after, by_id["ghost"].error_code_name) == (
        False,
        None,
        "CONN_DOES_NOT_EXIST",
    )
    assert state(emulator, "run-completed") == "JOB_COMPLETED"
    assert state(emulator, "run-queued") == "JOB_PAUSED"


def test_a_wholly_rejected_batch_is_reported_not_raised(hook, call, emulator):
    (change,) = call(hook, "set_runs_status", IDS, ["run-cancelled"], "resume")
    assert not change.applied
    assert change.status_after == "JOB_CANCELLED"
    assert state(emulator, "run-cancelled") == "JOB_CANCELLED"


def test_large_batches_are_split(emulator, call):
    for n in range(5):
        emulator.backend.add_run(USER, APP, PIPELINE, VERSION, f"bulk-{n}", status="JOB_RUNNING")
    hook = ClarifaiHook(retry_policy=FAST_RETRIES, batch_size=2)
    changes = call(hook, "set_runs_status", IDS, [f"bulk-{n}" for n in range(5)], "cancel")
    assert all(change.applied for change in changes)
    assert emulator.requests.count("PatchPipelineVersionRuns") == 3


def test_a_read_only_token_cannot_change_runs(monkeypatch, emulator, call):
    conn = dict(emulator.airflow_connection(), password="emulator-pat-readonly")
    monkeypatch.setenv("AIRFLOW_CONN_READONLY", json.dumps(conn))
    hook = ClarifaiHook("readonly", retry_policy=FAST_RETRIES)
    with pytest.raises(ClarifaiAuthError, match="CONN_INSUFFICIENT_SCOPES"):
        call(hook, "set_runs_status", IDS, ["run-running"], "cancel")
    assert state(emulator, "run-running") == "JOB_RUNNING"
    assert emulator.requests.count("PatchPipelineVersionRuns") == 1


@pytest.mark.parametrize(
    ("run_ids", "action", "phrase"),
    [
        (["a", "a"], "pause", "repeats a"),
        (["a b"], "pause", "whitespace"),
        (["a"], "stop", "Unknown action 'stop'"),
    ],
)
def test_bad_batches_are_rejected_before_calling(hook, call, emulator, run_ids, action, phrase):
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        call(hook, "set_runs_status", IDS, run_ids, action)
    assert emulator.requests.count() == 0


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], phrase: str) -> list[str]:
    """The hook's log lines containing ``phrase``: Airflow 2 logs through ``logging`` (caplog sees it),
    Airflow 3 through structlog, to stdout."""
    records = [record.getMessage() for record in caplog.records if phrase in record.getMessage()]
    return records or [line for line in capsys.readouterr().out.splitlines() if phrase in line]


@pytest.mark.parametrize("nothing", [[], ()], ids=["list", "tuple"])
def test_an_empty_selection_changes_nothing_and_says_so(hook, call, emulator, caplog, capsys, nothing):
    caplog.set_level(logging.INFO)
    assert call(hook, "set_runs_status", IDS, nothing, "pause") == []
    assert emulator.requests.count("PatchPipelineVersionRuns") == 0
    assert emulator.requests.count() == 0
    (line,) = logged(caplog, capsys, "No pipeline version runs selected")
    assert f"selected to pause in {USER}/{APP}/{PIPELINE}/{VERSION}: nothing to do, no request sent." in line


@pytest.mark.parametrize(
    ("run_ids", "action", "phrase"),
    [
        ([], "stop", "Unknown action 'stop'"),
        ("", "pause", r"run_ids is empty"),
        ([""], "pause", r"run_ids\[0\] is empty"),
    ],
)
def test_an_empty_selection_still_checks_the_rest(hook, call, emulator, run_ids, action, phrase):
    """Only an empty list or tuple selects nothing: the action is still checked, and an empty string is
    one (invalid) id."""
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        call(hook, "set_runs_status", IDS, run_ids, action)
    assert emulator.requests.count() == 0


def test_retried_patch_that_had_been_applied_counts_as_applied(hook, call, emulator):
    emulator.faults.add(kind="unavailable_after", method="PatchPipelineVersionRuns", count=1)
    (change,) = call(hook, "set_runs_status", IDS, ["run-running"], "pause")
    assert (change.applied, change.status_after) == (True, "JOB_PAUSED")


# Starting runs ------------------------------------------------------------------------------------


def test_post_run_with_overrides_and_nodepool(hook, call, emulator):
    run = call(
        hook,
        "post_run",
        IDS,
        run_id="my-run-1",
        input_args={"learning_rate": "0.01"},
        nodepool_id="gpu-a100",
        compute_cluster_id="demo-cluster",
    )
    assert (run.run_id, run.status, run.input_args) == (
        "my-run-1",
        PipelineRunStatus.QUEUED,
        {"learning_rate": "0.01"},
    )
    assert (run.nodepool_id, run.compute_cluster_id) == ("gpu-a100", "demo-cluster")
    assert state(emulator, "my-run-1") == "JOB_QUEUED"


def test_post_run_generates_an_id(hook, call, emulator):
    run = call(hook, "post_run", IDS)
    assert len(run.run_id) == 32
    assert state(emulator, run.run_id) == "JOB_QUEUED"


def test_a_lost_reply_to_post_never_starts_a_second_run(hook, call, emulator):
    before = len(emulator.backend.runs(USER, APP, PIPELINE, VERSION))
    emulator.faults.add(kind="unavailable_after", method="PostPipelineVersionRuns", count=1)
    run = call(hook, "post_run", IDS, run_id="once-only")
    assert run.run_id == "once-only"
    assert len(emulator.backend.runs(USER, APP, PIPELINE, VERSION)) == before + 1
    assert emulator.requests.count("PostPipelineVersionRuns") == 1


def test_a_start_that_lands_after_the_retry_looked_for_it_is_still_ours(hook, call, emulator, monkeypatch):
    # The first start never gets an answer. The retry looks for the run (not there yet), and only then
    # does the first request land, as a service may apply a request the client already gave up on. The
    # retried start is rejected because the id exists; the hook must find the run, not fail or start
    # another.
    emulator.faults.add(kind="unavailable", method="PostPipelineVersionRuns", count=1)
    original = _transport.PipelineRunStub.method
    landed = []

    def land() -> None:
        if not landed:
            landed.append(emulator.backend.add_run(USER, APP, PIPELINE, VERSION, "late-landing"))

    def landing_after_the_first_look(self, name):
        rpc = original(self, name)
        if name != "GetPipelineVersionRun":
            return rpc

        def wrapped(*args, **kwargs):
            result = rpc(*args, **kwargs)
            if inspect.isawaitable(result):

                async def after():
                    response = await result
                    land()
                    return response

                return after()
            land()
            return result

        return wrapped

    monkeypatch.setattr(_transport.PipelineRunStub, "method", landing_after_the_first_look)

    run = call(hook, "post_run", IDS, run_id="late-landing")

    assert run.run_id == "late-landing"
    assert [r.id for r in emulator.backend.runs(USER, APP, PIPELINE, VERSION)].count("late-landing") == 1
    posts = [r for r in emulator.requests if r.method == "PostPipelineVersionRuns"]
    assert [(r.grpc_code, r.code) for r in posts] == [
        ("UNAVAILABLE", None),
        ("OK", "PIPELINE_INVALID_REQUEST"),
    ]


def test_a_rejected_first_start_is_not_mistaken_for_our_own(hook, call, emulator):
    # Without an earlier attempt of ours, an existing id is someone else's run: the start fails.
    with pytest.raises(ClarifaiRequestRejectedError, match="already exists"):
        call(hook, "post_run", IDS, run_id="run-running")
    assert emulator.requests.count("GetPipelineVersionRun") == 0


def test_post_run_validates_its_arguments(hook, call, emulator):
    with pytest.raises(ClarifaiConfigurationError, match="input_args must map"):
        call(hook, "post_run", IDS, input_args={"epochs": 3})
    with pytest.raises(ClarifaiConfigurationError, match="needs nodepool_id"):
        call(hook, "post_run", IDS, compute_cluster_id="cc")
    assert emulator.requests.count() == 0


# Logs ---------------------------------------------------------------------------------------------


def test_logs_return_only_new_lines(hook, call, emulator):
    run = call(hook, "post_run", IDS, run_id="logged")
    emulator.clock.advance(2)
    first = call(hook, "get_run_logs", IDS, run.run_id, per_page=2)
    texts = [line.text for line in first.lines]
    assert texts[:3] == ["run entered JOB_QUEUED", "run entered JOB_RUNNING", "loading data"]
    emulator.clock.advance(40)
    second = call(hook, "get_run_logs", IDS, run.run_id, cursor=first.cursor, per_page=2)
    texts2 = [line.text for line in second.lines]
    assert texts2[:3] == ["training epoch 1/2", "training epoch 2/2", "model saved"]
    assert not set(texts) & set(texts2)
    again = call(hook, "get_run_logs", IDS, run.run_id, cursor=second.cursor, per_page=2)
    assert again.lines == []
    assert RunLogCursor.from_dict(json.loads(json.dumps(again.cursor.to_dict()))) == again.cursor


# Errors and retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unavailable", "deadline", "internal", "throttle"])
def test_transient_faults_are_retried(hook, call, emulator, kind):
    emulator.faults.add(kind=kind, method="GetPipelineVersionRun", count=2)
    assert call(hook, "get_run", IDS, "run-running").status is PipelineRunStatus.RUNNING
    assert emulator.requests.count("GetPipelineVersionRun") == 3


@pytest.mark.parametrize(
    ("kind", "error"),
    [("unavailable", ClarifaiUnavailableError), ("throttle", ClarifaiThrottledError)],
)
def test_retries_are_bounded(emulator, call, kind, error):
    emulator.faults.add(kind=kind, method="GetPipelineVersionRun")
    hook = ClarifaiHook(retry_policy=dict(FAST_RETRIES.to_dict(), max_attempts=3))
    with pytest.raises(error) as info:
        call(hook, "get_run", IDS, "run-running")
    assert emulator.requests.count("GetPipelineVersionRun") == 3
    assert any("Gave up" in note for note in info.value.__notes__)


def test_garbage_answers_fail_closed_without_retry(hook, call, emulator):
    emulator.faults.add(kind="garbage", method="GetPipelineVersionRun")
    with pytest.raises(ClarifaiUnexpectedResponseError, match="Failing closed"):
        call(hook, "get_run", IDS, "run-running")
    emulator.faults.clear()
    emulator.faults.add(kind="garbage", method="PatchPipelineVersionRuns")
    with pytest.raises(ClarifaiUnexpectedResponseError):
        call(hook, "set_runs_status", IDS, ["run-running"], "cancel")
    assert emulator.requests.count("GetPipelineVersionRun") == 1
    assert emulator.requests.count("PatchPipelineVersionRuns") == 1


def test_every_call_has_a_deadline(emulator, call, monkeypatch):
    deadlines = record_call_deadlines(monkeypatch)
    hook = ClarifaiHook(retry_policy={"max_attempts": 2, "initial_backoff": 0.01}, timeout=0.3)
    # Every RPC is sent with the hook's deadline: gRPC, not the service, ends a call that takes too long.
    assert call(hook, "get_run", IDS, "run-running").run_id == "run-running"
    assert deadlines == [0.3]
    # A service that never answers: each attempt ends at its deadline, and the error says so. How long
    # that takes is gRPC's business; what is checked is the deadline each attempt carried.
    emulator.faults.add(kind="hang", method="GetPipelineVersionRun")
    with pytest.raises(ClarifaiUnavailableError, match="within the call's deadline") as info:
        call(hook, "get_run", IDS, "run-running")
    assert info.value.code_name == "DEADLINE_EXCEEDED"
    assert any("Gave up" in note for note in info.value.__notes__)
    assert deadlines == [0.3, 0.3, 0.3]


def test_a_wrong_token_is_not_retried_and_not_echoed(monkeypatch, emulator, call):
    conn = dict(emulator.airflow_connection(), password="totally-wrong-pat")
    monkeypatch.setenv("AIRFLOW_CONN_WRONG", json.dumps(conn))
    with pytest.raises(ClarifaiAuthError) as info:
        call(ClarifaiHook("wrong", retry_policy=FAST_RETRIES), "get_run", IDS, "run-running")
    assert "totally-wrong-pat" not in str(info.value)
    assert emulator.requests.count() == 1


def test_the_rate_limit_is_absorbed_by_retries(call, monkeypatch):
    # The service's one-second window and the hook's backoffs run on one manual clock: the window moves
    # only when the hook waits, so what is throttled does not depend on how fast the calls are. The
    # request budget is off (requests_per_second=0): this is the retries' part alone (tests/test_budget.py
    # has the budget's).
    clock = ManualClock(start=0)
    with ClarifaiEmulator(clock=ManualClock(), rate_limit_clock=clock) as emulator:
        emulator.backend.set_rate_limit(4)
        monkeypatch.setenv(*emulator.airflow_connection_env(conn_extra={"requests_per_second": 0}))
        retry_clock = ManualRetryClock(clock)
        policy = dict(FAST_RETRIES.to_dict(), throttle_backoff=0.3)
        hook = ClarifaiHook(retry_policy=policy, clock=retry_clock.clock)
        for _ in range(8):
            assert call(hook, "get_run", IDS, "run-running").run_id == "run-running"
        codes = [record.code for record in emulator.requests]
    # Four calls fill the window; the fifth is throttled until the hook has waited the window out, at
    # least throttle_backoff at a time; then the window has room for the rest.
    assert codes[:4] == ["SUCCESS"] * 4
    assert codes[4] == "CONN_THROTTLED"
    assert codes.count("SUCCESS") == 8
    waited = retry_clock.waited
    assert len(waited) == codes.count("CONN_THROTTLED")
    assert all(seconds >= 0.3 for seconds in waited)
    assert sum(waited[:-1]) < 1.0 <= sum(waited)


def test_an_unreachable_server_fails_after_bounded_retries(monkeypatch, call, unused_tcp_port):
    conn = {"conn_type": "clarifai", "host": f"http://127.0.0.1:{unused_tcp_port}", "password": "pat"}
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps(conn))
    hook = ClarifaiHook("down", retry_policy={"max_attempts": 2, "initial_backoff": 0.01})
    with pytest.raises(ClarifaiUnavailableError, match="Could not reach the Clarifai API"):
        call(hook, "get_run", IDS, "run-running")


# Channels -----------------------------------------------------------------------------------------


def test_blocking_calls_reuse_the_hooks_channel(hook, emulator):
    hook.get_run(IDS, "run-running")
    stub = hook.get_conn()
    hook.list_runs(IDS)
    assert hook.get_conn() is stub
    hook.close()
    assert hook.get_conn() is not stub


def test_asyncio_hooks_share_one_channel_per_loop(emulator):
    async def main():
        hooks = [ClarifaiHook(retry_policy=FAST_RETRIES) for _ in range(5)]
        await asyncio.gather(*(hook.aget_run(IDS, "run-running") for hook in hooks for _ in range(4)))
        return _transport.async_endpoint_count()

    assert run_async(main) == 1


def test_asyncio_calls_in_flight_are_bounded(emulator, monkeypatch):
    monkeypatch.setattr(_transport, "ASYNC_MAX_IN_FLIGHT", 3)
    # The first three reads wait at the service until all three are there, so three are in flight at
    # once whatever the machine's speed (60 s is a guard: they arrive within milliseconds). The latency
    # keeps the others overlapping too, so a client letting a fourth through would be seen.
    hold = emulator.holds.add("GetPipelineVersionRun", parties=3, timeout_seconds=60)
    emulator.faults.add(kind="latency", method="GetPipelineVersionRun", latency_seconds=0.05)
    in_flight = peak = 0
    original = _transport.PipelineRunStub.method

    def counting(self, name):
        rpc = original(self, name)

        async def wrapped(*args, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await rpc(*args, **kwargs)
            finally:
                in_flight -= 1

        return wrapped

    monkeypatch.setattr(_transport.PipelineRunStub, "method", counting)

    async def main():
        hook = ClarifaiHook(retry_policy=FAST_RETRIES)
        return await asyncio.gather(*(hook.aget_run(IDS, "run-running") for _ in range(20)))

    assert len(run_async(main)) == 20
    assert hold.met is True
    assert peak == 3


def test_retry_policy_is_validated(emulator):
    with pytest.raises(ClarifaiConfigurationError, match="unknown setting"):
        ClarifaiHook(retry_policy={"retries": 3})
    with pytest.raises(ClarifaiConfigurationError, match="batch_size"):
        ClarifaiHook(batch_size=0)
    with pytest.raises(ClarifaiConfigurationError, match="timeout"):
        ClarifaiHook(timeout=-1)
    assert ClarifaiHook(retry_policy=RetryPolicy(max_attempts=1)).retry_policy.max_attempts == 1


async def _settings_of_hooks_starting_together(monkeypatch, count: int, cancel_first: bool = False):
    """Start ``count`` hooks' connection reads at once, while the first read is held; return a live count
    of the reads made (``reads[0]``) and each hook's outcome."""
    from airflow.providers.common.compat import connection as compat

    real = compat.get_async_connection
    gate = asyncio.Event()
    reads = [0]

    async def held(conn_id, hook=None):
        reads[0] += 1
        await gate.wait()
        return await real(conn_id, hook=hook)

    monkeypatch.setattr(compat, "get_async_connection", held)
    tasks = [asyncio.create_task(ClarifaiHook().aget_settings()) for _ in range(count)]
    for _ in range(5):
        await asyncio.sleep(0)
    if cancel_first:
        tasks[0].cancel()
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return reads, outcomes


async def test_asyncio_hooks_starting_together_share_one_connection_read(emulator, monkeypatch):
    # A triggerer restart starts hundreds of triggers of one connection at once: one read, not hundreds.
    reads, outcomes = await _settings_of_hooks_starting_together(monkeypatch, 50)
    assert reads == [1]
    assert {settings.target for settings in outcomes} == {emulator.address}
    # A read that has finished is not reused: a later hook reads the connection afresh.
    await ClarifaiHook().aget_settings()
    await ClarifaiHook().aget_settings()
    assert reads == [1 + 2]


async def test_a_cancelled_hook_does_not_cancel_the_shared_read(emulator, monkeypatch):
    reads, outcomes = await _settings_of_hooks_starting_together(monkeypatch, 3, cancel_first=True)
    assert reads == [1]
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert [settings.target for settings in outcomes[1:]] == [emulator.address] * 2


async def test_hooks_sharing_a_read_of_a_missing_connection_all_fail(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    outcomes = await asyncio.gather(
        *(ClarifaiHook("nowhere").aget_settings() for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ClarifaiConfigurationError) for outcome in outcomes)
