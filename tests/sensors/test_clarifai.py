"""Every way of waiting for a run, in a real Airflow (``dag.test()``) against the emulator.

The sensor's three modes (poke, reschedule, deferrable) and the run operator's polling all drive the
same waiter; one table of run histories checks that they see the same reads, reach the same outcome and
carry the same logs.

The run histories are made deterministic by a :class:`RunDirector`: it changes a run at the n-th time a
client reads it, *before* answering that read, on the emulator's manual clock. So every mode sees exactly
the same sequence of states, and the tests can assert that sequence, not only the task's outcome. Nothing
sleeps or depends on how fast the machine is.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.models import ApiError, RunChange
from tests.airflow_dags import AIRFLOW_3, load_dag, write_dag
from tests.compat import RUN_TIMES_REPORTED
from tests.sensors import (
    RECORD_FAILURES,
    FakeTaskInstance,
    dag_test,
    defer,
    failures,
    task_log_text,
    unit_dag,
)

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": VERSION}
SENSOR_MODES = ("poke", "reschedule", "deferrable")
#: The sensor's three modes and the run operator's polling (attached to the seeded run by its id).
MODES = (*SENSOR_MODES, "run_operator")
#: The run operator has no soft_fail, and starts a run of its own for an id that does not exist.
NOT_FOR_THE_RUN_OPERATOR = {"unknown_run", "timeout_soft_fail"}
#: The run operator's exception for each of the sensor's.
RUN_OPERATOR_ERRORS = {
    "ClarifaiWatchedRunFailedError": "ClarifaiRunFailedError",
    "AirflowSensorTimeout": "ClarifaiRunTimeoutError",
}
#: Emulated seconds the director jumps to let a resumed run reach its scripted end.
FINISH_SECONDS = 3600
LOG_LINE = "epoch 1 of 1 done"


class RunDirector:
    """Acts on runs at the n-th read of each (``GetPipelineVersionRun``), before answering it.

    Actions: ``resume``, ``pause``, ``cancel`` (through the emulator's own Patch logic, so the transition
    rules apply) and ``finish`` (advance the manual clock far enough for a running run to reach its
    scripted end). It also records the state every read answered, per run.

    :param emulator: the emulator (with a ``ManualClock``).
    :param monkeypatch: to wrap the backend's ``get_run`` for the test only.
    """

    _TARGETS = {"resume": "JOB_RUNNING", "pause": "JOB_PAUSED", "cancel": "JOB_CANCELLED"}

    def __init__(self, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = emulator.backend
        self.clock = emulator.clock
        self.plans: dict[str, dict[int, str]] = {}
        self.answered: dict[str, list[str]] = defaultdict(list)
        self.log_reads: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        original = self.backend.get_run
        original_logs = self.backend.list_logs

        def list_logs(caller: str, ref: Any, run_id: str, **kwargs: Any) -> Any:
            with self._lock:
                self.log_reads[run_id] += 1
            return original_logs(caller, ref, run_id, **kwargs)

        monkeypatch.setattr(self.backend, "list_logs", list_logs)

        def get_run(caller: str, ref: Any, run_id: str) -> Any:
            with self._lock:
                action = self.plans.get(run_id, {}).get(len(self.answered[run_id]) + 1)
                if action is not None:
                    self._apply(caller, ref, run_id, action)
                try:
                    snapshot = original(caller, ref, run_id)
                except ApiError as error:
                    self.answered[run_id].append(error.code)
                    raise
                self.answered[run_id].append(str(snapshot.state))
                return snapshot

        monkeypatch.setattr(self.backend, "get_run", get_run)

    def plan(self, run_id: str, actions: dict[int, str]) -> None:
        self.plans[run_id] = dict(actions)

    def _apply(self, caller: str, ref: Any, run_id: str, action: str) -> None:
        if action == "finish":
            self.clock.advance(FINISH_SECONDS)
            return
        result = self.backend.patch_runs(caller, ref, "overwrite", [RunChange(run_id, self._TARGETS[action])])
        if not result.outcomes[0].applied:
            self.errors.append(f"{action} of {run_id}: {result.outcomes[0].error}")


@dataclass(frozen=True)
class History:
    """A run's scripted life, what the sensor must see of it, and what must come of the task.

    :param seed: the run's state when seeded (``None``: no run at all); ``JOB_PAUSED`` holds a run still
        until its first read resumes it, so the run's clock starts when the sensor looks at it.
    :param script: the run's script (scenario format).
    :param actions: the director's plan: read number -> action.
    :param sensor: extra sensor arguments.
    :param seen: the states the sensor's reads must answer, in order (``None``: all ``JOB_RUNNING``).
    :param task_state: the task's final state.
    :param error: the exception class the failed task must report.
    :param message: a phrase its message must contain.
    :param run_after: the run's state in the emulator afterwards.
    """

    seed: str | None
    script: dict[str, Any] = field(default_factory=dict)
    actions: dict[int, str] = field(default_factory=dict)
    sensor: dict[str, Any] = field(default_factory=dict)
    seen: list[str] | None = None
    task_state: str = "success"
    error: str | None = None
    message: str | None = None
    run_after: str | None = None


FINITE = {"running_seconds": 600, "logs": [{"at": 5, "message": json.dumps({"msg": LOG_LINE})}]}
FOREVER = {"running_seconds": None}

HISTORIES: dict[str, History] = {
    "completes": History(
        seed="JOB_PAUSED",
        script={**FINITE, "outcome": "JOB_COMPLETED"},
        actions={1: "resume", 2: "finish"},
        sensor={"stream_logs": True},
        seen=["JOB_RUNNING", "JOB_COMPLETED"],
        run_after="JOB_COMPLETED",
    ),
    "fails": History(
        seed="JOB_PAUSED",
        script={**FINITE, "outcome": "JOB_FAILED"},
        actions={1: "resume", 2: "finish"},
        seen=["JOB_RUNNING", "JOB_FAILED"],
        task_state="failed",
        error="ClarifaiWatchedRunFailedError",
        message="ended in JOB_FAILED",
    ),
    # Cancelled while the sensor waits: the next read fails the task, long before the timeout.
    "cancelled_midway": History(
        seed="JOB_RUNNING",
        script=FOREVER,
        actions={3: "cancel"},
        seen=["JOB_RUNNING", "JOB_RUNNING", "JOB_CANCELLED"],
        task_state="failed",
        error="ClarifaiWatchedRunFailedError",
        message="ended in JOB_CANCELLED",
    ),
    # Paused for two reads, resumed, then completes: a paused run is not finished, and not a failure.
    "paused_then_resumed": History(
        seed="JOB_PAUSED",
        script={**FINITE, "outcome": "JOB_COMPLETED"},
        actions={1: "resume", 2: "pause", 4: "resume", 5: "finish"},
        seen=["JOB_RUNNING", "JOB_PAUSED", "JOB_PAUSED", "JOB_RUNNING", "JOB_COMPLETED"],
        run_after="JOB_COMPLETED",
    ),
    "timeout": History(
        seed="JOB_RUNNING",
        script=FOREVER,
        sensor={"timeout": 1},
        task_state="failed",
        error="AirflowSensorTimeout",
        run_after="JOB_RUNNING",
    ),
    "timeout_cancels": History(
        seed="JOB_RUNNING",
        script=FOREVER,
        sensor={"timeout": 1, "cancel_on_timeout": True},
        task_state="failed",
        error="AirflowSensorTimeout",
        run_after="JOB_CANCELLED",
    ),
    "timeout_soft_fail": History(
        seed="JOB_RUNNING",
        script=FOREVER,
        sensor={"timeout": 1, "soft_fail": True, "cancel_on_timeout": True},
        task_state="skipped",
        run_after="JOB_CANCELLED",
    ),
    "unknown_run": History(
        seed=None,
        seen=["CONN_DOES_NOT_EXIST"],
        task_state="failed",
        error="AirflowFailException",
        message="not found",
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
    sensors = {{}}
    for task_id, run_id, after, extra in {tasks!r}:
        arguments = dict(
            task_id=task_id,
            pipeline_version_run_id=run_id,
            poke_interval=0.05,
            timeout=60,
            mode={mode!r},
            deferrable={deferrable!r},
            trigger_rule="all_done",
            **{ids!r},
        )
        arguments.update(extra)
        sensors[task_id] = ClarifaiPipelineRunSensor(**arguments)
        if after is not None:
            sensors[after] >> sensors[task_id]
"""


RUN_OPERATOR_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator

{record_failures}

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={{"on_failure_callback": record_failure, "retries": 0}},
) as dag:
    tasks = {{}}
    for task_id, run_id, after, extra in {tasks!r}:
        arguments = dict(
            task_id=task_id,
            pipeline_version_run_id=run_id,
            poll_interval=0.05,
            timeout=60,
            cancel_on_timeout=False,
            trigger_rule="all_done",
            **{ids!r},
        )
        arguments.update(extra)
        tasks[task_id] = ClarifaiRunPipelineOperator(**arguments)
        if after is not None:
            tasks[after] >> tasks[task_id]
"""


def sensor_dag(dag_id: str, mode: str, tasks: list[tuple[str, str, str | None, dict[str, Any]]]) -> str:
    """A DAG of sensors (or, in ``run_operator`` mode, of run operators attached to the runs): (task id,
    run id, the task it runs after (``all_done``) or None, arguments)."""
    if mode == "run_operator":
        return RUN_OPERATOR_DAG.format(record_failures=RECORD_FAILURES, dag_id=dag_id, tasks=tasks, ids=IDS)
    return SENSOR_DAG.format(
        record_failures=RECORD_FAILURES,
        dag_id=dag_id,
        tasks=tasks,
        mode="reschedule" if mode == "reschedule" else "poke",
        deferrable=mode == "deferrable",
        ids=IDS,
    )


def run_id_of(name: str) -> str:
    return "no-such-run" if HISTORIES[name].seed is None else f"run-{name.replace('_', '-')}"


@pytest.fixture
def director(emulator, monkeypatch) -> RunDirector:
    """The director counts each run's own reads, so deferred waits here read per trigger: the shared
    watcher lists a whole version at once (tested in tests/triggers/test_shared_polls.py)."""
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    monkeypatch.setattr(ClarifaiPipelineRunTrigger, "share_polls", False)
    return RunDirector(emulator, monkeypatch)


# The three modes -----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_same_outcome_for_the_same_history(
    mode, emulator, director, dag_folder, caplog, capsys
):
    """One DAG per mode runs one task per history; the histories, reads, outcomes and logs must match."""
    histories = {
        name: history
        for name, history in HISTORIES.items()
        if mode != "run_operator" or name not in NOT_FOR_THE_RUN_OPERATOR
    }
    tasks = []
    # Histories that move the (shared) emulated clock run one after the other, in the same order in
    # every mode, so that a clock jump for one never ends another's run early; the others run freely.
    previous_clocked = None
    for name, history in histories.items():
        run_id = run_id_of(name)
        if history.seed is not None:
            emulator.backend.add_run(*IDS.values(), run_id, status=history.seed, script=history.script)
        director.plan(run_id, history.actions)
        clocked = "finish" in history.actions.values()
        tasks.append((name, run_id, previous_clocked if clocked else None, history.sensor))
        if clocked:
            previous_clocked = name
    dag_id = f"clarifai_sensor_{mode}"
    path = write_dag(dag_folder, sensor_dag(dag_id, mode, tasks))

    started = time.time()
    result = dag_test(path, dag_id)
    finished = time.time()

    logs = task_log_text(caplog, capsys)
    recorded = {record["task_id"]: record for record in failures(dag_folder)}
    assert not director.errors
    for name, history in histories.items():
        run_id = run_id_of(name)
        where = f"history {name!r} in {mode} mode"
        assert result.task_states[name] == history.task_state, where
        assert result.tries[name] == 1, f"{where}: the sensor was retried"
        seen = director.answered[run_id]
        if history.seen is not None:
            assert seen == history.seen, where
        else:
            assert seen, where
            assert set(seen) == {"JOB_RUNNING"}, where
        if history.error is None:
            assert name not in recorded, f"{where}: {recorded.get(name)}"
        else:
            error = RUN_OPERATOR_ERRORS.get(history.error, history.error) if mode == "run_operator" else None
            assert recorded[name]["error"] == (error or history.error), where
            assert (history.message or "") in recorded[name]["message"], where
        if history.run_after is not None:
            assert emulator.backend.run_status(*IDS.values(), run_id) == history.run_after, where

    # The logs an outcome carries, decided once for every mode: a failure carries the run's last log
    # lines, read once at the end when they were not streamed; a success without stream_logs reads no
    # log at all; with stream_logs the log is read as the run goes (reschedule mode: once, at the end).
    assert LOG_LINE in recorded["fails"]["message"]
    assert director.log_reads[run_id_of("fails")] == 1
    assert director.log_reads[run_id_of("paused_then_resumed")] == 0
    assert director.log_reads[run_id_of("cancelled_midway")] == 1
    streamed_reads = director.log_reads[run_id_of("completes")]
    assert streamed_reads == 1 if mode == "reschedule" else streamed_reads >= 2
    for name in ("completes", "paused_then_resumed"):
        summary = result.xcom(name)
        assert summary["run_id"] == run_id_of(name)
        assert summary["status"] == "JOB_COMPLETED"
        assert bool(summary["started_at"] and summary["ended_at"]) is RUN_TIMES_REPORTED
        assert summary["total_run_duration_seconds"] == (600.0 if RUN_TIMES_REPORTED else None)
    for name, history in histories.items():
        if history.task_state != "success":
            assert result.xcom(name) is None, name

    # stream_logs: the run's own log line reaches the task log exactly once, in every mode (reschedule
    # mode writes it at the end, when the run has finished; deferred, the trigger writes it).
    streamed = f"[clarifai run {run_id_of('completes')}] {LOG_LINE}"
    assert logs.count(streamed) == 1
    (line,) = [line for line in logs.splitlines() if streamed in line]
    writer = {"deferrable": "ClarifaiPipelineRunTrigger", "run_operator": "ClarifaiRunPipelineOperator"}.get(
        mode, "ClarifaiPipelineRunSensor"
    )
    assert writer in line
    # Without stream_logs, a successful run's log lines stay out of the task log.
    assert logs.count(f"[clarifai run {run_id_of('paused_then_resumed')}] {LOG_LINE}") == 0
    # A paused run is logged as still waiting, never as a failure.
    assert logs.count(f"Run {run_id_of('paused_then_resumed')} is JOB_PAUSED: still waiting") >= 1

    if mode == "deferrable" and AIRFLOW_3:
        # Airflow 3's dag.test stores the trigger rows as a triggerer would read them.
        ours = {run_id_of(name) for name in histories}
        rows = [row for row in result.trigger_kwargs_rows() if row.get("run_id") in ours]
        assert rows
        for kwargs in rows:
            assert kwargs["poll_interval"] == 0.05
            # UNIX seconds, fixed when the task deferred: its start plus the timeout (1 s or 60 s).
            assert started + 1 <= kwargs["deadline"] <= finished + 60
            assert emulator.token not in json.dumps(kwargs, default=str)


@pytest.mark.integration
@pytest.mark.parametrize(
    "mode",
    ["poke", "reschedule", "deferrable"],
)
def test_unknown_run_with_soft_fail_is_skipped(mode, emulator, dag_folder):
    dag_id = f"clarifai_sensor_soft_{mode}"
    path = write_dag(
        dag_folder, sensor_dag(dag_id, mode, [("unknown", "no-such-run", None, {"soft_fail": True})])
    )

    result = dag_test(path, dag_id)

    assert result.task_states == {"unknown": "skipped"}


# Deferral: what the trigger carries ---------------------------------------------------------------


@pytest.mark.integration
def test_deferred_sensor_carries_poke_interval_and_an_absolute_deadline_without_the_token(emulator):
    from airflow_provider_clarifai.sensors.clarifai import DEFERRAL_GRACE_SECONDS, ClarifaiPipelineRunSensor
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    with unit_dag():
        sensor = ClarifaiPipelineRunSensor(
            task_id="wait",
            pipeline_version_run_id="run-running",
            deferrable=True,
            poke_interval=7,
            timeout=3600,
            execution_timeout=timedelta(seconds=600),
            cancel_on_timeout=True,
            stream_logs=True,
            **IDS,
        )
    before = time.time()
    deferred = defer(sensor, {"ti": FakeTaskInstance()})
    after = time.time()

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_clarifai.triggers.clarifai.ClarifaiPipelineRunTrigger"
    assert kwargs["poll_interval"] == 7.0
    # Absolute (UNIX seconds), fixed when the task deferred, bounded by the shorter execution_timeout.
    assert before + 600 <= kwargs["deadline"] <= after + 600
    assert kwargs["cancel_on_timeout"] is True
    assert kwargs["stream_logs"] is True
    assert kwargs["run_id"] == "run-running"
    assert kwargs["clarifai_conn_id"] == "clarifai_default"
    assert {key: kwargs[key] for key in IDS} == IDS
    # Airflow's own deferral timeout is only a backstop behind the trigger's deadline.
    # The deadline is fixed before the look that precedes deferring; the backstop counts from there.
    backstop = deferred.timeout.total_seconds()
    assert kwargs["deadline"] - after + DEFERRAL_GRACE_SECONDS <= backstop
    assert backstop <= kwargs["deadline"] - before + DEFERRAL_GRACE_SECONDS
    assert deferred.method_name == "execute_complete"
    # What a triggerer stores and rebuilds: JSON primitives, the same trigger again, and no token.
    text = json.dumps(kwargs)
    assert emulator.token not in text
    assert emulator.token not in repr(deferred.trigger)
    assert ClarifaiPipelineRunTrigger(**json.loads(text)).serialize() == (classpath, kwargs)


@pytest.mark.integration
def test_a_finished_run_does_not_defer(emulator):
    from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    ti = FakeTaskInstance()
    with unit_dag():
        sensor = ClarifaiPipelineRunSensor(
            task_id="wait", pipeline_version_run_id="run-completed", deferrable=True, **IDS
        )

    summary = sensor.execute({"ti": ti})

    assert summary["status"] == "JOB_COMPLETED"
    assert ti.pushed[ClarifaiPipelineRunLink().xcom_key].endswith("/versions/v1/runs/run-completed")


@pytest.mark.integration
def test_a_task_outside_a_dag_resolves_explicit_ids(emulator):
    from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

    sensor = ClarifaiPipelineRunSensor(task_id="wait", pipeline_version_run_id="run-completed", **IDS)

    assert sensor.execute({"ti": FakeTaskInstance()})["status"] == "JOB_COMPLETED"


# Parsing ------------------------------------------------------------------------------------------


PARSE_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_clarifai.operators.clarifai import ClarifaiRunPipelineOperator
from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

with DAG(dag_id="clarifai_parse", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    for deferrable in (False, True):
        ClarifaiPipelineRunSensor(
            task_id=f"wait_{deferrable}",
            pipeline_version_run_id="run-running",
            deferrable=deferrable,
            config_lock_path="config-lock.yaml",
        )
        ClarifaiRunPipelineOperator(
            task_id=f"start_{deferrable}", deferrable=deferrable, config_lock_path="config-lock.yaml"
        )
"""


@pytest.mark.integration
def test_parsing_a_dag_makes_no_call(emulator, dag_folder):
    path = write_dag(dag_folder, PARSE_DAG)

    dag = load_dag(path, "clarifai_parse")

    assert len(dag.tasks) == 4
    assert emulator.requests.count() == 0
    # The hook, and with it the connection and the channel, is built on first use only.
    assert all("hook" not in vars(task) for task in dag.tasks)
