"""ClarifaiPipelineRunSensor on several runs (``run_ids``, ``require="all"`` or ``"any"``).

The same table of run histories runs through the sensor's three modes in a real Airflow (``dag.test()``)
against the emulator, one DAG per mode. A :class:`StateDirector` puts a run into a state at the n-th
read of it, before answering that read, so each mode sees the same histories; nothing sleeps, and no
assertion is about how long anything took. Each sensor here waits for at most three runs, which are
read one by one (a listing starts above three); the listing path has its own count test at the end.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.airflow_dags import AIRFLOW_3, write_dag
from tests.sensors import RECORD_FAILURES, FakeTaskInstance, dag_test, defer, failures, unit_dag

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": VERSION}
LOG_LINE = "the loss went to NaN"
FOREVER = {"running_seconds": None, "logs": [{"at": 0, "message": json.dumps({"msg": LOG_LINE})}]}


class StateDirector:
    """Puts a run into a state at the n-th read of it (``GetPipelineVersionRun``), before answering.

    :param emulator: the emulator.
    :param monkeypatch: to wrap the backend's ``get_run`` for the test only.
    """

    def __init__(self, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = emulator
        self.plans: dict[str, dict[int, str]] = {}
        self.reads: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        original = emulator.backend.get_run

        def get_run(caller: str, ref: Any, run_id: str) -> Any:
            with self._lock:
                self.reads[run_id] += 1
                state = self.plans.get(run_id, {}).get(self.reads[run_id])
                if state is not None:
                    emulator.set_run_state(run_id, state, version=VERSION)
            return original(caller, ref, run_id)

        monkeypatch.setattr(emulator.backend, "get_run", get_run)

    def seed(self, run_id: str, state: str, plan: dict[int, str] | None = None) -> None:
        self.emulator.add_run(run_id, state, script=FOREVER, version=VERSION)
        self.plans[run_id] = dict(plan or {})


@dataclass(frozen=True)
class Case:
    """A sensor on a few runs: each run's seed state and plan, and what must come of the task.

    :param require: ``all`` or ``any``.
    :param runs: run id -> (seed state, {read number: state}).
    :param sensor: extra sensor arguments.
    :param task_state: the task's final state.
    :param error: the exception class the failed task reports.
    :param phrases: phrases its message must contain.
    :param decided_by: the runs the result names (on success).
    :param after: each run's state in the emulator afterwards.
    """

    require: str
    runs: dict[str, tuple[str, dict[int, str]]]
    sensor: dict[str, Any] = field(default_factory=dict)
    task_state: str = "success"
    error: str | None = None
    phrases: tuple[str, ...] = ()
    decided_by: tuple[str, ...] = ()
    after: dict[str, str] = field(default_factory=dict)


RUNNING, COMPLETED, FAILED = "JOB_RUNNING", "JOB_COMPLETED", "JOB_FAILED"

CASES: dict[str, Case] = {
    "all_succeed": Case(
        "all",
        {"a1": (RUNNING, {2: COMPLETED}), "a2": (RUNNING, {3: COMPLETED}), "a3": (COMPLETED, {})},
        decided_by=("a1", "a2", "a3"),
    ),
    # One failure fails at once, with the run's state and last log lines; the others are left running.
    "all_one_fails": Case(
        "all",
        {"b1": (RUNNING, {}), "b2": (RUNNING, {2: FAILED}), "b3": (RUNNING, {})},
        task_state="failed",
        error="ClarifaiWatchedRunFailedError",
        phrases=(
            "b2 failed (require='all')",
            # Deferred, the trigger decides at b2's answer, maybe before it has looked at b3's ("not
            # read: b3"): only b2's state is certain to be in the message.
            "JOB_FAILED: b2",
            "run b2 of",
            "ended in JOB_FAILED",
            LOG_LINE,
        ),
        after={"b1": RUNNING, "b3": RUNNING},
    ),
    # One success is enough, though another run failed and a third goes on.
    "any_one_succeeds": Case(
        "any",
        {"c1": (FAILED, {}), "c2": (RUNNING, {2: COMPLETED}), "c3": (RUNNING, {})},
        decided_by=("c2",),
        after={"c3": RUNNING},
    ),
    "any_none_succeeds": Case(
        "any",
        {"d1": (FAILED, {}), "d2": (RUNNING, {2: "JOB_CANCELLED"}), "d3": (RUNNING, {3: FAILED})},
        task_state="failed",
        error="ClarifaiWatchedRunFailedError",
        phrases=("None of the 3 runs", "JOB_FAILED: d1, d3", "JOB_CANCELLED: d2", LOG_LINE),
    ),
    "unknown_run": Case(
        "all",
        {"e1": (RUNNING, {}), "no-such-run": ("", {})},
        task_state="failed",
        error="AirflowFailException",
        phrases=("Cannot wait for run no-such-run of the 2 runs", "not found"),
        after={"e1": RUNNING},
    ),
    # At the timeout the runs still going are cancelled (in one batch); the run that ended stays so.
    "timeout_cancels": Case(
        "all",
        {"f1": (COMPLETED, {}), "f2": (RUNNING, {})},
        sensor={"timeout": 1, "cancel_on_timeout": True},
        task_state="failed",
        error="AirflowSensorTimeout",
        after={"f1": COMPLETED, "f2": "JOB_CANCELLED"},
    ),
}

SENSOR_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

{record_failures}

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={{"on_failure_callback": record_failure, "retries": 0}},
) as dag:
    for task_id, run_ids, require, extra in {tasks!r}:
        arguments = dict(
            task_id=task_id,
            run_ids=run_ids,
            require=require,
            poke_interval=0.05,
            timeout=60,
            mode={mode!r},
            deferrable={deferrable!r},
            **{ids!r},
        )
        arguments.update(extra)
        ClarifaiPipelineRunSensor(**arguments)
"""


@pytest.fixture
def director(emulator, monkeypatch) -> StateDirector:
    return StateDirector(emulator, monkeypatch)


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_all_and_any_give_the_same_outcome_in_every_mode(mode, emulator, director, dag_folder):
    tasks = []
    for name, case in CASES.items():
        for run_id, (seed, plan) in case.runs.items():
            if seed:
                director.seed(run_id, seed, plan)
        tasks.append((name, list(case.runs), case.require, case.sensor))
    dag_id = f"clarifai_multi_run_{mode}"
    source = SENSOR_DAG.format(
        record_failures=RECORD_FAILURES,
        dag_id=dag_id,
        tasks=tasks,
        mode="reschedule" if mode == "reschedule" else "poke",
        deferrable=mode == "deferrable",
        ids=IDS,
    )

    result = dag_test(write_dag(dag_folder, source), dag_id)

    recorded = {record["task_id"]: record for record in failures(dag_folder)}
    for name, case in CASES.items():
        where = f"case {name!r} in {mode} mode"
        assert result.task_states[name] == case.task_state, f"{where}: {recorded.get(name)}"
        assert result.tries[name] == 1, where
        if case.error is None:
            assert name not in recorded, where
            outcome = result.xcom(name)
            assert outcome["require"] == case.require, where
            assert outcome["decided_by"] == list(case.decided_by), where
            assert [entry["run_id"] for entry in outcome["runs"]] == list(case.runs), where
            for entry in outcome["runs"]:
                state = emulator.run(entry["run_id"], version=VERSION).state
                assert entry["status"] == state or entry["outcome"] == "waiting", where
                assert (entry["outcome"] == "success") is (state == COMPLETED), where
        else:
            assert recorded[name]["error"] == case.error, where
            for phrase in case.phrases:
                assert phrase in recorded[name]["message"], f"{where}: {phrase!r}"
            assert result.xcom(name) is None, where
        for run_id, state in case.after.items():
            assert emulator.run(run_id, version=VERSION).state == state, f"{where}: {run_id}"
    # Logs are read once the outcome is decided, only for the runs that decided it: the failed ones.
    log_reads = Counter(run_id for r in emulator.requests("ListLogEntries") for run_id in r.run_ids)
    assert log_reads == {"b2": 1, "d1": 1, "d2": 1, "d3": 1}

    if mode == "deferrable" and AIRFLOW_3:
        # The trigger rows as a triggerer would read them: the run ids, require, and no token.
        rows = [row for row in result.trigger_kwargs_rows() if "run_ids" in row]
        assert {tuple(row["run_ids"]) for row in rows} >= {("a1", "a2", "a3"), ("d1", "d2", "d3")}
        for row in rows:
            assert row["require"] in ("all", "any")
            assert emulator.token not in json.dumps(row, default=str)


XCOM_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_clarifai.operators.clarifai import ClarifaiResumePipelineRunOperator
from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

{record_failures}

with DAG(
    dag_id="clarifai_multi_run_xcom",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={{"on_failure_callback": record_failure, "retries": 0}},
) as dag:
    waiting = dict(poke_interval=0.05, timeout=60, deferrable=True, **{ids!r})

    @task
    def pick_runs():
        return ["x1", "x2"]

    @task
    def echo(value):
        return value

    @task
    def report(outcome):
        return [entry["status"] for entry in outcome["runs"]]

    # A list of ids from an upstream task.
    of_ids = ClarifaiPipelineRunSensor(task_id="of_ids", run_ids=pick_runs(), **waiting)
    report(of_ids.output)
    # The records a status operator returns: the runs it resumed, one of which is enough.
    resume = ClarifaiResumePipelineRunOperator(task_id="resume", run_ids=["y1", "y2"], **{ids!r})
    ClarifaiPipelineRunSensor(task_id="of_records", run_ids=resume.output, require="any", **waiting)
    # A mapped task's XCom: a lazy sequence, not a list.
    ClarifaiPipelineRunSensor(task_id="of_mapped", run_ids=echo.expand(value=["z1", "z2"]), **waiting)
"""


@pytest.mark.integration
@pytest.mark.e2e
def test_run_ids_from_upstream_tasks_ids_records_and_mapped_output(emulator, director, dag_folder):
    director.seed("x1", RUNNING, {3: COMPLETED})  # read 1: the look before deferring
    director.seed("x2", COMPLETED)
    director.seed("y1", "JOB_PAUSED", {3: COMPLETED})  # read 1: the resume task's read before changing
    director.seed("y2", "JOB_PAUSED")
    director.seed("z1", COMPLETED)
    director.seed("z2", COMPLETED)
    source = XCOM_DAG.format(record_failures=RECORD_FAILURES, ids=IDS)

    result = dag_test(write_dag(dag_folder, source), "clarifai_multi_run_xcom")

    assert not failures(dag_folder)
    assert set(result.task_states.values()) == {"success"}, result.task_states
    assert result.xcom("report") == [COMPLETED, COMPLETED]
    assert result.xcom("of_ids")["decided_by"] == ["x1", "x2"]
    of_records = result.xcom("of_records")
    assert (of_records["require"], of_records["decided_by"]) == ("any", ["y1"])
    assert [(e["run_id"], e["outcome"]) for e in of_records["runs"]] == [("y1", "success"), ("y2", "waiting")]
    assert emulator.run("y2", version=VERSION).state == RUNNING
    assert result.xcom("of_mapped")["decided_by"] == ["z1", "z2"]


# Arguments, checked when the DAG is parsed or the task runs -----------------------------------------


def sensor(**arguments: Any) -> Any:
    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    with unit_dag():
        return ClarifaiPipelineRunSensor(task_id="wait", **{**IDS, **arguments})


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (
            {"pipeline_version_run_id": "r1", "run_ids": ["r2"]},
            "got both of pipeline_version_run_id and run_ids",
        ),
        ({}, "got neither of pipeline_version_run_id and run_ids"),
        ({"run_ids": ["r1"], "require": "most"}, "require must be 'all'"),
        ({"run_ids": ["r1"], "require": None}, "require must be 'all'"),
    ],
)
def test_arguments_that_say_no_clear_wait_fail_when_the_dag_is_parsed(arguments, phrase):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        sensor(**arguments)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("run_ids", "phrase"),
    [
        ([], "empty list: there is no run to wait for"),
        (["run-running", "run-completed", "run-running"], "repeats run-running"),
        (["run-running", {"run_id": "run-completed"}], r"run_ids\[0\] of task 'wait' is 'run-running'"),
        ([{"outcome": "changed"}], r"run_ids\[0\]"),
        ({"run_id": "run-running"}, "must be a string or a list of strings"),
        (None, "rendered to None"),
        (["run running"], "contains whitespace"),
    ],
)
def test_run_ids_that_name_no_clear_runs_fail_the_task_before_any_request(run_ids, phrase, emulator):
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

    task = sensor(run_ids=["placeholder"])
    task.run_ids = run_ids  # as rendered from a template or an XComArg

    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        task.execute({"ti": FakeTaskInstance()})
    assert emulator.requests.count() == 0


@pytest.mark.integration
def test_one_id_in_run_ids_waits_for_several_runs_shape_and_records_work_too(emulator):
    one = sensor(run_ids="run-completed", mode="poke")
    assert one.execute({"ti": FakeTaskInstance()})["decided_by"] == ["run-completed"]

    records = [{"run_id": "run-failed", "outcome": "changed"}, {"run_id": "run-completed"}]
    outcome = sensor(run_ids=records, require="any").execute({"ti": FakeTaskInstance()})
    assert outcome["decided_by"] == ["run-completed"]
    assert [entry["outcome"] for entry in outcome["runs"]] == ["failure", "success"]


@pytest.mark.integration
def test_one_run_by_pipeline_version_run_id_still_returns_the_run_summary(emulator):
    summary = sensor(pipeline_version_run_id="run-completed").execute({"ti": FakeTaskInstance()})
    assert (summary["run_id"], summary["status"]) == ("run-completed", COMPLETED)
    assert "runs" not in summary


# Deferral: what the trigger carries, and how its event is settled ----------------------------------


@pytest.mark.integration
def test_the_deferred_sensor_carries_every_run_and_require_without_the_token(emulator):
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunsTrigger

    task = sensor(
        run_ids=["run-running", "run-failed", "run-forever"], require="any", deferrable=True, timeout=600
    )
    deferred = defer(task, {"ti": FakeTaskInstance()})

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_clarifai.triggers.clarifai.ClarifaiPipelineRunsTrigger"
    # Every run, the one that had already ended too (the trigger reads it once more for the result).
    assert kwargs["run_ids"] == ["run-running", "run-failed", "run-forever"]
    assert (kwargs["require"], kwargs["poll_interval"]) == ("any", 60.0)
    text = json.dumps(kwargs)
    assert emulator.token not in text
    assert emulator.token not in repr(deferred.trigger)
    assert ClarifaiPipelineRunsTrigger(**json.loads(text)).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"status": "success", "require": "all", "message": "ok", "runs": [], "decided_by": []},
        {
            "status": "success",
            "require": "all",
            "message": "ok",
            "runs": [{"run_id": "r1", "outcome": "waiting"}],
            "decided_by": ["r1"],
        },
        {
            "status": "success",
            "require": "most",
            "message": "ok",
            "runs": [{"run_id": "r1", "outcome": "success"}],
            "decided_by": ["r1"],
        },
        {  # a one-run event where several runs were waited for
            "status": "success",
            "run_id": "r1",
            "message": "ok",
            "run": {"run_id": "r1", "status": "JOB_COMPLETED"},
        },
    ],
)
def test_a_malformed_event_fails_closed(payload):
    from airflow_provider_clarifai.exceptions import ClarifaiUnexpectedResponseError

    task = sensor(run_ids=["r1"], deferrable=True)
    with pytest.raises(ClarifaiUnexpectedResponseError, match="malformed event"):
        task.execute_complete({"ti": FakeTaskInstance()}, payload)


# The count: a deferred sensor on 300 runs -----------------------------------------------------------


@pytest.fixture
def shared_polls(monkeypatch):
    """The triggers read through the shared watcher (their default), whatever another test set."""
    from airflow_provider_clarifai import watcher
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    monkeypatch.setattr(ClarifaiPipelineRunTrigger, "share_polls", True)
    fresh = watcher.WatcherCounts()
    monkeypatch.setattr(watcher, "TOTALS", fresh)
    return fresh


GUARD_SECONDS = 120


@pytest.mark.integration
def test_a_deferred_sensor_on_300_runs_lists_once_per_round_and_reads_only_runs_that_left_the_list(
    emulator, shared_polls, monkeypatch
):
    from airflow_provider_clarifai import waiter
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunsTrigger

    # Every round lists, also one a busy machine leaves with a few late reads (which would otherwise be
    # read one by one), so the counts below do not depend on the machine's speed.
    monkeypatch.setattr(waiter, "GET_EACH_UP_TO", 0)

    counts = shared_polls
    run_ids = [f"many-{index:03d}" for index in range(300)]
    for run_id in run_ids:
        emulator.add_run(run_id, RUNNING, script={"running_seconds": None}, version=VERSION)
    # Rounds every 0.5 s: a round gathers the reads due within a tenth of that, so the 300 waits stay in
    # step on a busy machine (the watcher's own tests cover reads that fall out of step).
    task = sensor(run_ids=run_ids, deferrable=True, poke_interval=0.5, timeout=600)
    deferred = defer(task, {"ti": FakeTaskInstance()})
    # The look before deferring: one listing, no read (every run was in it).
    assert emulator.requests.count("ListPipelineVersionRuns") == 1
    assert emulator.requests.count("GetPipelineVersionRun") == 0
    _, kwargs = deferred.trigger.serialize()
    trigger = ClarifaiPipelineRunsTrigger(**json.loads(json.dumps(kwargs)))

    async def until(condition: Any, what: str) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + GUARD_SECONDS
        while not condition():
            assert loop.time() < give_up, f"still waiting for {what}"
            await asyncio.sleep(0.01)

    async def scenario() -> Any:
        async def first_event() -> Any:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")

        waiting = asyncio.create_task(first_event())
        await until(lambda: counts.answered >= 300, "a first answer for every run")
        # Three waves of runs end, each once the rounds have read the wave before it.
        ended = 0
        for wave in (run_ids[:100], run_ids[100:250], run_ids[250:]):
            for run_id in wave:
                emulator.set_run_state(run_id, COMPLETED, version=VERSION)
            ended += len(wave)
            await until(lambda n=ended: counts.gets >= n, f"reads of the first {ended} runs that ended")
        payload = await waiting
        await close_async_endpoints()
        return payload

    payload = asyncio.run(scenario())
    outcome = task.execute_complete({"ti": FakeTaskInstance()}, payload)

    assert outcome["decided_by"] == run_ids
    assert {entry["status"] for entry in outcome["runs"]} == {COMPLETED}
    # One listing per round of the trigger (one page: 300 runs < 1000 a page), however many runs...
    assert counts.lists == counts.rounds >= 3
    assert emulator.requests.count("ListPipelineVersionRuns") == 1 + counts.lists
    # ... and one read for each run that left the listing, once, when it ended; never a running one.
    gets = Counter(run_id for r in emulator.requests("GetPipelineVersionRun") for run_id in r.run_ids)
    assert gets == dict.fromkeys(run_ids, 1)
    assert counts.gets == 300
    # A success without stream_logs reads no log.
    assert emulator.requests.count("ListLogEntries") == 0


def test_decide_all_and_any():
    from airflow_provider_clarifai.waiting import EventStatus, Require, RunWaitEvent, decide

    def events(**statuses: str) -> dict[str, RunWaitEvent]:
        return {run_id: RunWaitEvent(EventStatus(s), run_id, s) for run_id, s in statuses.items()}

    runs = ["a", "b", "c"]
    assert decide(Require.ALL, runs, events(a="success", b="success")) is None
    assert decide(Require.ALL, runs, events(a="success", b="failure")) == (EventStatus.FAILURE, ["b"])
    assert decide(Require.ALL, runs, events(a="success", b="success", c="success")) == (
        EventStatus.SUCCESS,
        runs,
    )
    assert decide(Require.ANY, runs, events(a="failure", b="failure")) is None
    assert decide(Require.ANY, runs, events(a="failure", c="success")) == (EventStatus.SUCCESS, ["c"])
    assert decide(Require.ANY, runs, events(a="failure", b="failure", c="failure")) == (
        EventStatus.FAILURE,
        runs,
    )
    # An unreadable run decides at once, in both; a timed-out run is a run still going.
    for require in Require:
        assert decide(require, runs, events(b="error", c="success")) == (EventStatus.ERROR, ["b"])
        assert decide(require, runs, events(a="timeout", b="failure" if require == "all" else "success"))
    assert decide(Require.ALL, runs, events(a="success", b="timeout")) is None
    assert decide(Require.ALL, runs, events(a="success", b="timeout", c="timeout")) == (
        EventStatus.TIMEOUT,
        ["b", "c"],
    )
    assert decide(Require.ANY, runs, events(a="failure", b="timeout", c="failure")) == (
        EventStatus.TIMEOUT,
        ["b"],
    )


@pytest.mark.integration
def test_an_unknown_run_fails_the_poking_sensor_at_once_naming_it(emulator):
    from airflow.providers.common.compat.sdk import AirflowFailException

    task = sensor(run_ids=["run-running", "run-completed", "run-forever", "no-such-run"], mode="poke")

    with pytest.raises(AirflowFailException) as raised:
        task.execute({"ti": FakeTaskInstance()})

    assert "Cannot wait for run no-such-run of the 4 runs of demo-user/pipelines-app" in str(raised.value)
    assert "not found" in str(raised.value).lower()
    # One listing for the four runs; a read only for the runs not in it (ended, or unknown).
    assert emulator.requests.count("ListPipelineVersionRuns") == 1
    read = {run_id for r in emulator.requests("GetPipelineVersionRun") for run_id in r.run_ids}
    assert read == {"run-completed", "no-such-run"}
