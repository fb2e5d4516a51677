"""Races: two Airflow tasks acting on the same runs at the same time (pause against cancel, resume
against cancel, cancel-every-running-run against pause).

Two DAGs run at once, each by ``dag.test()`` in a process of its own (with a copy of the session's
migrated metadata DB, see ``_concurrent_dags``). DAG ``races_first_side`` holds one side of every race,
``races_second_side`` the other, one task per race, chained in the same order in both. Each race has an
emulator of its own (manual clock: runs change only when a task changes them), with a hold that makes the
two tasks' Patch requests reach the service together, so the service, not the test's timing, decides the
order; ``hold.met`` proves the two requests overlapped. So the three races run one after another, each
between two real tasks in two processes, and the whole file takes two Airflow start-ups, not six.

Which side wins is never assumed. The service's decision is read back from the emulator, from each run's
history (every state a run enters is logged, in order) and the request log, and each task's report must
agree with it:

* nothing crashes: both processes end cleanly, and a failed task failed with the provider's own
  ``ClarifaiBatchError``, nothing else (no ``KeyError``, ``AttributeError`` or gRPC error leaking);
* every run is reported by each task (in its return value, or in XCom ``run_outcomes`` and the error
  message when it failed), and ``changed_run_ids`` lists exactly the runs it reports as changed;
* each run entered exactly the states of the changes reported as applied, and nothing else; its final
  state is the one the change applied last set; a task whose change was refused reports the refusal with
  the service's reason, which names the state the other task had put the run in.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.waiter import GET_EACH_UP_TO
from tests.reliability._concurrent_dags import DagProcess, session_metadata_db, start_dag_process
from tests.sensors import RECORD_FAILURES

#: Every wait below is a guard against a hang, never a limit a slow or busy machine could reach: which
#: task wins is decided by the service (the hold), and nothing is measured.
#: The longest a task's Patch waits at the hold for the other task's (the processes start together, but
#: one may start up slower: seconds, on a busy machine). Each task's request deadline, and its retry
#: budget, are longer, so the wait never turns into a client timeout and a retry.
HOLD_TIMEOUT = 240
REQUEST_TIMEOUT = 300
RETRY_POLICY = {"max_elapsed": 360.0}
#: The longest the two processes may take in all (10-20 s is usual, a minute on a busy machine).
PROCESS_TIMEOUT = 600

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(PROCESS_TIMEOUT + 300)]

VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")
PATCH = "PatchPipelineVersionRuns"

TARGETS = {"pause": "JOB_PAUSED", "resume": "JOB_RUNNING", "cancel": "JOB_CANCELLED"}
OPERATORS = {
    "pause": "ClarifaiPausePipelineRunOperator",
    "resume": "ClarifaiResumePipelineRunOperator",
    "cancel": "ClarifaiCancelPipelineRunOperator",
}
#: The only exception a task may fail with in a race: the provider's report of runs it could not change.
REPORTED_ERROR = "ClarifaiBatchError"

DAG_HEADER = """
import pendulum

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiCancelPipelineRunOperator,
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
)

DEFAULTS = {"retries": 0, "on_failure_callback": record_failure, "on_retry_callback": record_failure}

with DAG(%r, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), default_args=DEFAULTS) as dag:
"""
TASK_TEMPLATE = """
    {task_id} = {operator}(
        task_id={task_id!r},
        clarifai_conn_id={conn_id!r},
        user_id={user!r},
        app_id={app!r},
        pipeline_id={pipeline!r},
        pipeline_version_id={version!r},
        request_timeout={request_timeout!r},
        api_retry_policy={retry_policy!r},
        trigger_rule="all_done",
        {selection}
    )
"""


@dataclass(frozen=True)
class Side:
    """One of the two tasks: an action on explicit run ids, or on every run in the selected states."""

    action: str
    run_ids: tuple[str, ...] | None = None
    select_statuses: tuple[str, ...] | None = None

    def task_source(self, task_id: str, conn_id: str) -> str:
        if self.run_ids is not None:
            selection = f"run_ids={list(self.run_ids)!r},"
        else:
            selection = f"select_statuses={list(self.select_statuses or ())!r},"
        user, app, pipeline, version = VERSION
        return TASK_TEMPLATE.format(
            operator=OPERATORS[self.action],
            task_id=task_id,
            conn_id=conn_id,
            user=user,
            app=app,
            pipeline=pipeline,
            version=version,
            request_timeout=REQUEST_TIMEOUT,
            retry_policy=RETRY_POLICY,
            selection=selection,
        )


@dataclass(frozen=True)
class Race:
    """Runs seeded in one state, and the two tasks that act on them at once."""

    name: str
    seeded_status: str
    seeded: tuple[str, ...]
    sides: tuple[Side, Side]

    @property
    def conn_id(self) -> str:
        """The Airflow connection to this race's emulator."""
        return f"clarifai_{self.name}"


RUNS = ("race-a", "race-b", "race-c", "race-d")
RACES = [
    Race(
        "pause_vs_cancel",
        "JOB_RUNNING",
        RUNS,
        # The cancel lists the runs the other way round: the service decides per request, not per run.
        (Side("pause", run_ids=RUNS), Side("cancel", run_ids=RUNS[::-1])),
    ),
    Race(
        "resume_vs_cancel",
        "JOB_PAUSED",
        RUNS,
        (Side("resume", run_ids=RUNS), Side("cancel", run_ids=RUNS)),
    ),
    Race(
        # The selector also takes the scenario's own running runs (run-running, run-forever), which only
        # the cancel acts on.
        "cancel_running_vs_pause",
        "JOB_RUNNING",
        RUNS[:3],
        (Side("cancel", select_statuses=("RUNNING",)), Side("pause", run_ids=RUNS[:3])),
    ),
]
#: The two DAGs: DAG ``i`` holds side ``i`` of every race, one task per race, one after the other.
DAG_IDS = ("races_first_side", "races_second_side")


def dag_source(side: int) -> str:
    """DAG ``side``: side ``side`` of every race, one task each, chained in the same order in both DAGs
    (so each task meets its rival at the hold) and each running whatever became of the one before."""
    tasks = "".join(race.sides[side].task_source(race.name, race.conn_id) for race in RACES)
    return (
        RECORD_FAILURES + DAG_HEADER % DAG_IDS[side] + tasks + "\n    " + " >> ".join(r.name for r in RACES)
    )


@dataclass
class RaceSetup:
    """One race's emulator and hold, and what the test knew before the race."""

    race: Race
    emulator: ClarifaiEmulator
    hold: Any
    #: The run ids each side acts on, as the test expects them (from the emulator before the race).
    expected: dict[str, list[str]]
    #: The state of every run of the version before the race.
    before: dict[str, str]
    #: How many states each run had entered before the race (its history before).
    history_start: dict[str, int]


@dataclass
class Races:
    """Every race, and the two processes that ran them."""

    setups: dict[str, RaceSetup]
    processes: list[DagProcess]
    results: list[dict[str, Any]]


def entered_states(emulator: ClarifaiEmulator, run_id: str) -> list[str]:
    """Every state the run has entered, in order, from the emulator's record of the run."""
    states = []
    for line in emulator.backend.log_messages(*VERSION, run_id):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and str(message.get("msg", "")).startswith("run entered "):
            states.append(message["status"])
    return states


def _set_up(race: Race) -> RaceSetup:
    emulator = ClarifaiEmulator(clock=ManualClock()).start()
    emulator.backend.set_rate_limit(None)
    for run_id in race.seeded:
        emulator.backend.add_run(
            *VERSION, run_id, status=race.seeded_status, script={"running_seconds": None}
        )
    before = {run.id: str(run.state) for run in emulator.backend.runs(*VERSION)}
    expected = {}
    for side in race.sides:
        if side.run_ids is not None:
            expected[side.action] = list(side.run_ids)
        else:
            wanted = {f"JOB_{status}" for status in side.select_statuses or ()}
            expected[side.action] = [run_id for run_id, state in before.items() if state in wanted]
    history_start = {run_id: len(entered_states(emulator, run_id)) for run_id in before}
    hold = emulator.holds.add(PATCH, parties=2, timeout_seconds=HOLD_TIMEOUT)
    return RaceSetup(race, emulator, hold, expected, before, history_start)


@pytest.fixture(scope="module")
def races(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Races]:
    """Every race, run at once by two processes, then finished."""
    metadata_db = session_metadata_db()
    setups: dict[str, RaceSetup] = {}
    processes: list[DagProcess] = []
    try:
        for race in RACES:
            setups[race.name] = _set_up(race)
        env = dict(setup.emulator.airflow_connection_env(setup.race.conn_id) for setup in setups.values())
        for side, dag_id in enumerate(DAG_IDS):
            home = tmp_path_factory.mktemp(dag_id)
            processes.append(
                start_dag_process(dag_id, home, dag_source(side), dag_id, env, metadata_db=metadata_db)
            )
        deadline = time.monotonic() + PROCESS_TIMEOUT
        results = [process.finish(timeout=max(0.0, deadline - time.monotonic())) for process in processes]
        yield Races(setups, processes, results)
    finally:
        for process in processes:
            process.kill()
        for setup in setups.values():
            setup.emulator.stop()


# Checks ---------------------------------------------------------------------------------------------

#: Exception class names (``KeyError``, ``AirflowException``, ``_InactiveRpcError``) in a process's output.
EXCEPTION_NAME = re.compile(r"\b(_?[A-Z][A-Za-z]*(?:Error|Exception))\b")
PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def task_result(races: Races, side: int, task_id: str) -> dict[str, Any]:
    """The task's state and XComs from process ``side``, with the failure it recorded (if any).

    A task either succeeded or failed once (``retries=0``) with the provider's own report.
    """
    result = races.results[side]
    name = f"{DAG_IDS[side]}.{task_id}"
    assert result["returncode"] == 0, f"{name}: exit code {result['returncode']}:\n{result['output']}"
    assert result["error"] is None, f"{name}: dag.test() raised:\n{result['error']}"
    task = dict(result["tasks"][task_id])
    assert task["state"] in ("success", "failed"), f"{name} ended {task['state']}:\n{result['output']}"
    recorded = [row for row in result["failures"] if row["task_id"] == task_id]
    if task["state"] == "success":
        assert recorded == [], f"{name} succeeded but recorded failures: {recorded}"
        task["failure"] = None
    else:
        assert [row["error"] for row in recorded] == [REPORTED_ERROR], f"{name}: {recorded}"
        task["failure"] = recorded[0]
    return task


def records_of(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's record of every run: its return value on success, XCom ``run_outcomes`` on failure;
    on failure, the error message must list each run's outcome and message too."""
    if task["state"] == "success":
        assert task["run_outcomes"] is None
        return task["return_value"]
    records = task["run_outcomes"]
    assert task["return_value"] is None
    message = task["failure"]["message"]
    for record in records:
        line = f"- {record['run_id']}: {record['outcome']}: {record['message']}"
        assert line in message, f"the error message does not report {line!r}:\n{message}"
    return records


def patch_code(records: list[dict[str, Any]]) -> str:
    """The top-level status the service answers a Patch with, given what became of each run."""
    changed = [record["outcome"] == "changed" for record in records]
    if all(changed):
        return "SUCCESS"
    if not any(changed):
        return "PIPELINE_INVALID_REQUEST"  # Every run refused, for the same reason.
    return "MIXED_STATUS"


def test_both_processes_ended_cleanly_and_nothing_else_was_raised(races: Races) -> None:
    for side, result in enumerate(races.results):
        output = result["output"]
        assert result["returncode"] == 0, f"{DAG_IDS[side]}: exit code {result['returncode']}:\n{output}"
        assert result["error"] is None, f"{DAG_IDS[side]}: dag.test() raised:\n{result['error']}"
        assert sorted(result["tasks"]) == sorted(race.name for race in RACES)
        # Every task ran (none left upstream_failed or unrun): a failed race does not stop the next.
        assert {task["state"] for task in result["tasks"].values()} <= {"success", "failed"}
        assert {row["error"] for row in result["failures"]} <= {REPORTED_ERROR}
        # No other exception anywhere in what the process printed (task logs and tracebacks included).
        unexpected = set(EXCEPTION_NAME.findall(output)) - {REPORTED_ERROR}
        assert not unexpected, f"{DAG_IDS[side]}: unexpected {sorted(unexpected)} in the output:\n{output}"


@pytest.mark.parametrize("race", RACES, ids=[race.name for race in RACES])
def test_two_tasks_racing_on_the_same_runs(race: Race, races: Races) -> None:
    setup = races.setups[race.name]
    emulator = setup.emulator
    sides = {side.action: side for side in race.sides}
    tasks = {side.action: task_result(races, index, race.name) for index, side in enumerate(race.sides)}

    # Both tasks' Patch requests reached the hold, so the service got them together.
    assert setup.hold.met is True, f"the two tasks' requests did not meet: {setup.hold!r}"

    # Each task reports every run it acted on, and changed_run_ids lists the ones it changed.
    records = {action: records_of(task) for action, task in tasks.items()}
    for action, side in sides.items():
        reported = [record["run_id"] for record in records[action]]
        if side.run_ids is not None:
            assert reported == setup.expected[action]
        else:
            assert sorted(reported) == sorted(setup.expected[action])
        for record in records[action]:
            # The hold let no Patch through before both tasks had read the runs.
            assert record["state_before"] == setup.before[record["run_id"]]
            assert record["outcome"] in ("changed", "failed"), record
        assert tasks[action]["changed_run_ids"] == [
            record["run_id"] for record in records[action] if record["outcome"] == "changed"
        ]
        failed = any(record["outcome"] == "failed" for record in records[action])
        assert tasks[action]["state"] == ("failed" if failed else "success")
    by_run = {action: {record["run_id"]: record for record in rows} for action, rows in records.items()}

    # Each run against the service's record of it.
    acted_on = {run_id for ids in setup.expected.values() for run_id in ids}
    decisions: Counter[str] = Counter()
    for run_id, state_before in setup.before.items():
        entered = entered_states(emulator, run_id)[setup.history_start[run_id] :]
        final = emulator.backend.run_status(*VERSION, run_id)
        if run_id not in acted_on:
            assert (entered, final) == ([], state_before), f"{run_id} changed, though no task acted on it"
            continue
        reports = {action: rows[run_id] for action, rows in by_run.items() if run_id in rows}
        applied = [action for action, record in reports.items() if record["outcome"] == "changed"]
        # The changes reported as applied entered their target states, once each; nothing else did.
        assert sorted(entered) == sorted(TARGETS[action] for action in applied), (run_id, entered, reports)
        assert entered, f"{run_id}: no task changed it: {reports}"
        # The final state is the one the change applied last set.
        assert final == entered[-1]
        order = [next(action for action in applied if TARGETS[action] == state) for state in entered]
        for action, state in zip(order, entered, strict=True):
            # Each applied change is reported with the state it set.
            assert reports[action]["state_after"] == state
            assert reports[action]["message"] == f"{PAST[action]} ({state_before} -> {state})"
        refused = [action for action in reports if action not in applied]
        for action in refused:
            # The reason is the service's: the state the other task had already put the run in.
            message = reports[action]["message"]
            assert reports[action]["state_after"] == final
            assert message.startswith(
                f"the service did not {action} it: PIPELINE_INVALID_REQUEST: cannot {action} run {run_id}: "
                f"it is {final}; "
            ), message
            assert f"it is now {final} (it was {state_before} when read" in message
        decisions[" then ".join(order) + "".join(f", {action} refused" for action in refused)] += 1

    # The request log agrees: two Patch requests, each answered as its task reported; every call served.
    log = emulator.requests.snapshot()
    assert all(record.grpc_code == "OK" for record in log), log
    assert Counter(record.code for record in log if record.method == PATCH) == Counter(
        patch_code(records[action]) for action in sides
    )
    # Each task read its runs once: one by one up to GET_EACH_UP_TO runs, else from one listing of the
    # unfinished runs (every run here is unfinished when read); a selector lists. Then each task read
    # back each run the service refused.
    given = [len(setup.expected[action]) for action, side in sides.items() if side.run_ids is not None]
    reads = sum(n for n in given if n <= GET_EACH_UP_TO)
    listings = sum(n > GET_EACH_UP_TO for n in given) + sum(
        side.select_statuses is not None for side in race.sides
    )
    read_backs = sum(record["outcome"] == "failed" for rows in records.values() for record in rows)
    assert emulator.requests.count("GetPipelineVersionRun") == reads + read_backs
    assert emulator.requests.count("ListPipelineVersionRuns") == listings
    print(f"{race.name}: {dict(decisions)}")
