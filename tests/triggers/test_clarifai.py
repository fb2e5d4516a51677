"""ClarifaiPipelineRunTrigger drained against the emulator over real gRPC."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.hooks import _transport
from airflow_provider_clarifai.hooks._transport import close_async_endpoints
from airflow_provider_clarifai.retry import RetryClock
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from airflow_provider_clarifai.waiting import RunWaitEvent
from tests.compat import RUN_TIMES_REPORTED

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "throttle_backoff": 0.05, "max_elapsed": 10.0}
#: How long a test waits for the trigger to have read a run a few times: a guard against a hang, not a
#: limit (the reads come every 10 ms), so a slow or busy machine never reaches it.
GUARD_SECONDS = 60


def make_trigger(**overrides) -> ClarifaiPipelineRunTrigger:
    kwargs = {
        "clarifai_conn_id": "clarifai_default",
        "user_id": USER,
        "app_id": APP,
        "pipeline_id": PIPELINE,
        "pipeline_version_id": VERSION,
        "run_id": "run-running",
        "poll_interval": 0.01,
        "retry_policy": FAST,
    }
    kwargs.update(overrides)
    return ClarifaiPipelineRunTrigger(**kwargs)


async def drain(trigger: ClarifaiPipelineRunTrigger) -> list[RunWaitEvent]:
    """Run the trigger to its end and validate every event it yielded."""
    try:
        return [RunWaitEvent.from_payload(event.payload) async for event in trigger.run()]
    finally:
        await close_async_endpoints()


def reads(records: Any) -> int:
    return sum(record.method == "GetPipelineVersionRun" for record in records)


async def advance_after_polls(emulator, polls: int, seconds: float) -> None:
    """Advance the emulated clock once the trigger has read the run ``polls`` times."""
    seen = await asyncio.to_thread(
        emulator.requests.wait_for, lambda records: reads(records) >= polls, GUARD_SECONDS
    )
    assert seen
    emulator.clock.advance(seconds)


@pytest.fixture
def wall_clock(emulator, monkeypatch) -> ManualClock:
    """The trigger's wall clock is the emulator's manual clock: a deadline passes when the test says so.

    Injected through the trigger's ``clock`` seam; its sleeps stay real, and short.
    """
    monkeypatch.setattr(ClarifaiPipelineRunTrigger, "clock", RetryClock(now=emulator.clock.now))
    return emulator.clock


def logged(caplog, capsys) -> str:
    """What the trigger logged: Airflow 2 logs through logging (and echoes it on stdout), Airflow 3
    through structlog to stdout only; read one channel, never both, so nothing is counted twice."""
    stdout = capsys.readouterr().out
    return caplog.text if "ClarifaiPipelineRunTrigger" in caplog.text else stdout


def state(emulator, run_id: str) -> str:
    return emulator.backend.run_status(USER, APP, PIPELINE, VERSION, run_id)


# Serialization --------------------------------------------------------------------------------------


def test_serialize_round_trip_is_exact_and_json_only():
    trigger = make_trigger(
        deadline=1_900_000_000.5,
        success_statuses=["COMPLETED"],
        failure_statuses=["FAILED", "PAUSED"],
        cancel_on_timeout=True,
        cancel_on_kill=True,
        stream_logs=True,
        log_cursor={"page": 3, "seen": ["u:x"]},
        request_timeout=12.0,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_clarifai.triggers.clarifai.ClarifaiPipelineRunTrigger"
    assert kwargs == {
        "clarifai_conn_id": "clarifai_default",
        "user_id": USER,
        "app_id": APP,
        "pipeline_id": PIPELINE,
        "pipeline_version_id": VERSION,
        "run_id": "run-running",
        "poll_interval": 0.01,
        "deadline": 1_900_000_000.5,
        "success_statuses": ["JOB_COMPLETED"],
        "failure_statuses": ["JOB_FAILED", "JOB_PAUSED"],
        "cancel_on_timeout": True,
        "cancel_on_kill": True,
        "stream_logs": True,
        "log_cursor": {"page": 3, "seen": ["u:x"]},
        "retry_policy": {
            "max_attempts": 6,
            "initial_backoff": 0.01,
            "max_backoff": 0.05,
            "multiplier": 2.0,
            "jitter": 0.5,
            "max_elapsed": 10.0,
            "throttle_backoff": 0.05,
        },
        "request_timeout": 12.0,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    rebuilt = ClarifaiPipelineRunTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_airflow_serde_round_trip():
    from airflow.serialization.serialized_objects import BaseSerialization

    _, kwargs = make_trigger(deadline=123.0).serialize()
    assert BaseSerialization.deserialize(BaseSerialization.serialize(kwargs)) == kwargs


def test_no_token_in_kwargs_or_repr(emulator):
    trigger = make_trigger()
    assert emulator.token not in repr(trigger)
    assert emulator.token not in json.dumps(trigger.serialize()[1])


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"success_statuses": ["DONE"]}, "valid states"),
        ({"retry_policy": {"tries": 3}}, "unknown setting"),
    ],
)
def test_bad_kwargs_are_rejected(overrides, phrase):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        make_trigger(**overrides)


# Outcomes --------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("run_id", "expected_status", "expected_state"),
    [
        ("run-completed", "success", "JOB_COMPLETED"),
        ("run-failed", "failure", "JOB_FAILED"),
        ("run-cancelled", "failure", "JOB_CANCELLED"),
    ],
)
async def test_runs_already_finished(emulator, run_id, expected_status, expected_state):
    (event,) = await drain(make_trigger(run_id=run_id))
    assert event.status.value == expected_status
    assert event.run is not None
    assert event.run["status"] == expected_state


@pytest.mark.integration
async def test_unexpected_error_is_a_failure_with_the_log_tail(emulator):
    emulator.backend.add_run(
        USER,
        APP,
        PIPELINE,
        VERSION,
        "run-boom",
        status="JOB_RUNNING",
        script={
            "running_seconds": 5,
            "outcome": "JOB_UNEXPECTED_ERROR",
            "logs": [{"at": 1, "message": "oom"}],
        },
    )
    trigger = make_trigger(run_id="run-boom")
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 2, 10))
    (event,) = events
    assert event.status.value == "failure"
    assert event.run["status"] == "JOB_UNEXPECTED_ERROR"
    assert "ended in JOB_UNEXPECTED_ERROR" in event.message
    assert "oom" in event.log_tail


@pytest.mark.integration
async def test_a_running_run_is_followed_to_completion(emulator):
    trigger = make_trigger(run_id="run-running")
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 3, 600))
    (event,) = events
    assert event.status.value == "success"
    assert event.run["status"] == "JOB_COMPLETED"
    assert bool(event.run["ended_at"]) is RUN_TIMES_REPORTED
    assert emulator.requests.count("GetPipelineVersionRun") >= 4


@pytest.mark.integration
async def test_paused_counts_as_waiting(emulator, caplog, capsys):
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds

    ids = PipelineVersionIds(USER, APP, PIPELINE, VERSION)

    async def resume_then_finish() -> None:
        await advance_after_polls(emulator, 3, 0)
        assert state(emulator, "run-paused") == "JOB_PAUSED"
        await ClarifaiHook().aset_runs_status(ids, ["run-paused"], "resume")
        emulator.clock.advance(120)

    caplog.set_level("INFO")
    events, _ = await asyncio.gather(drain(make_trigger(run_id="run-paused")), resume_then_finish())
    (event,) = events
    assert event.status.value == "success"
    assert "a paused run is not finished" in logged(caplog, capsys)


@pytest.mark.integration
async def test_custom_failure_states(emulator):
    (event,) = await drain(make_trigger(run_id="run-paused", failure_statuses=["PAUSED", "FAILED"]))
    assert event.status.value == "failure"


@pytest.mark.integration
async def test_timeout_keeps_the_run_by_default(emulator, wall_clock):
    # The deadline is a minute away on the trigger's clock, which moves only after three reads.
    trigger = make_trigger(run_id="run-forever", deadline=wall_clock.now() + 60)
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 3, 61))
    (event,) = events
    assert event.status.value == "timeout"
    assert not event.cancelled
    assert state(emulator, "run-forever") == "JOB_RUNNING"
    # It waited, reading the run, until the deadline had passed; nothing but reads.
    assert reads(emulator.requests) >= 3
    assert {record.method for record in emulator.requests} == {"GetPipelineVersionRun"}


@pytest.mark.integration
async def test_timeout_cancels_when_asked(emulator, wall_clock):
    trigger = make_trigger(run_id="run-forever", deadline=wall_clock.now() + 60, cancel_on_timeout=True)
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 3, 61))
    (event,) = events
    assert (event.status.value, event.cancelled) == ("timeout", True)
    assert "It was cancelled" in event.message
    assert state(emulator, "run-forever") == "JOB_CANCELLED"
    assert reads(emulator.requests) >= 3
    assert emulator.requests.count("PatchPipelineVersionRuns") == 1


@pytest.mark.integration
async def test_a_deadline_in_the_past_times_out_after_one_look(emulator, monkeypatch):
    # Counted where the hook sends them: one attempt, whether or not the service saw it in time.
    attempts = []
    original = _transport.PipelineRunStub.method

    def counting(self, name):
        attempts.append(name)
        return original(self, name)

    monkeypatch.setattr(_transport.PipelineRunStub, "method", counting)
    (event,) = await drain(make_trigger(run_id="run-forever", deadline=time.time() - 1))
    assert event.status.value == "timeout"
    assert attempts == ["GetPipelineVersionRun"]
    assert emulator.requests.count("GetPipelineVersionRun") <= 1


# Errors ----------------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_transient_faults_do_not_fail_the_wait(emulator):
    emulator.faults.add(kind="unavailable", method="GetPipelineVersionRun", count=3)
    emulator.faults.add(kind="throttle", method="GetPipelineVersionRun", count=2)
    (event,) = await drain(make_trigger(run_id="run-completed"))
    assert event.status.value == "success"


@pytest.mark.integration
async def test_an_outage_longer_than_the_retry_budget_keeps_waiting_until_the_deadline(emulator, wall_clock):
    emulator.faults.add(kind="unavailable", method="GetPipelineVersionRun")
    trigger = make_trigger(
        run_id="run-completed",
        deadline=wall_clock.now() + 60,
        retry_policy={"max_attempts": 2, "initial_backoff": 0.01},
    )
    # Two reads of two attempts each, every one refused: the trigger's retries are spent twice over,
    # and it still waits; only the deadline, passed after that, ends the wait.
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 4, 61))
    (event,) = events
    assert event.status.value == "timeout"
    assert event.run is None
    assert reads(emulator.requests) >= 4
    assert {record.grpc_code for record in emulator.requests} == {"UNAVAILABLE"}


@pytest.mark.integration
async def test_an_unknown_run_is_an_error_event(emulator):
    (event,) = await drain(make_trigger(run_id="ghost"))
    assert event.status.value == "error"
    assert event.error_class == "ClarifaiNotFoundError"
    assert "ghost" in event.message


@pytest.mark.integration
async def test_a_wrong_token_is_an_error_event_without_the_token(emulator, monkeypatch):
    conn = dict(emulator.airflow_connection(), password="not-the-right-pat")
    monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_DEFAULT", json.dumps(conn))
    (event,) = await drain(make_trigger())
    assert (event.status.value, event.error_class) == ("error", "ClarifaiAuthError")
    assert "not-the-right-pat" not in json.dumps(event.to_dict())


# Cancellation, kill, logs ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_cancellation_is_re_raised_and_leaves_the_run_alone(emulator):
    task = asyncio.create_task(drain(make_trigger(run_id="run-forever", poll_interval=0.05)))
    assert await asyncio.to_thread(emulator.requests.wait_for, lambda r: len(r) >= 2, GUARD_SECONDS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(emulator, "run-forever") == "JOB_RUNNING"


@pytest.mark.integration
async def test_on_kill_cancels_only_when_asked(emulator):
    await make_trigger(run_id="run-forever").on_kill()
    assert state(emulator, "run-forever") == "JOB_RUNNING"
    await make_trigger(run_id="run-forever").cleanup()
    assert state(emulator, "run-forever") == "JOB_RUNNING"
    await make_trigger(run_id="run-forever", cancel_on_kill=True).on_kill()
    await close_async_endpoints()
    assert state(emulator, "run-forever") == "JOB_CANCELLED"


@pytest.mark.integration
async def test_streams_new_log_lines_once(emulator, caplog, capsys):
    caplog.set_level("INFO")
    trigger = make_trigger(run_id="run-running", stream_logs=True)
    events, _ = await asyncio.gather(drain(trigger), advance_after_polls(emulator, 3, 600))
    assert events[0].status.value == "success"
    text = logged(caplog, capsys)
    assert "[clarifai run run-running] step 1 done" in text
    assert text.count("[clarifai run run-running] step 1 done") == 1
    assert "[clarifai run run-running] " in text.split("step 1 done")[0]


# Start-up of many triggers at once ------------------------------------------------------------------

# The import blocks until the test releases it; the bound is a guard that frees the thread if the test
# fails before that, far above the milliseconds the test takes.
SLOW_MODULE = """
import threading

release = threading.Event()
release.wait(300)
"""


async def test_triggers_starting_together_wait_for_one_finished_import(monkeypatch, tmp_path):
    """A triggerer restart starts hundreds of triggers at once. None may go on before the import of the
    heavy modules has finished: a module is in sys.modules from the start of its import, and a trigger
    that took that for done would import it on the loop, blocked on the import lock."""
    import sys
    import threading

    from airflow_provider_clarifai.triggers import clarifai as module

    (tmp_path / "clarifai_slow_heavy_module.py").write_text(SLOW_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "clarifai_slow_heavy_module", raising=False)
    monkeypatch.setattr(module, "_HEAVY_MODULES", ("clarifai_slow_heavy_module",))
    monkeypatch.setattr(module, "_preload", None)

    first = [asyncio.create_task(module._preload_heavy_modules()) for _ in range(20)]

    def import_started() -> bool:
        # A guard, not a limit: the import thread starts within milliseconds.
        deadline = time.monotonic() + GUARD_SECONDS
        while time.monotonic() < deadline:
            if hasattr(sys.modules.get("clarifai_slow_heavy_module"), "release"):
                return True
            time.sleep(0.01)
        return False

    assert await asyncio.to_thread(import_started)
    # Started while the module is in sys.modules but still importing.
    later = [asyncio.create_task(module._preload_heavy_modules()) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not any(task.done() for task in first + later)
    assert [thread.name for thread in threading.enumerate()].count("clarifai-preload") == 1

    sys.modules["clarifai_slow_heavy_module"].release.set()
    await asyncio.gather(*first, *later)
