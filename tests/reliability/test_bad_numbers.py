"""Bad input, by class: numbers of seconds that are not finite, and task arguments that contradict.

NaN and infinity passed every "positive number" check once (``nan > 0`` is false, ``nan <= 0`` too):
``timeout=nan`` never timed out, ``poll_interval=nan`` crashed after the run had started, a NaN backoff
silently became the maximum. One validator (``airflow_provider_clarifai.validate.seconds``) now checks
every timeout, interval and backoff where it is given, so each row here is refused before anything is
sent. Rows are checked exactly as in ``test_bad_input.py``.
"""

from __future__ import annotations

import math

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from tests.reliability.test_bad_input import (
    V1,
    BadInput,
    Cancel,
    Env,
    Pause,
    Run,
    Sensor,
    check_row,
)

pytestmark = pytest.mark.integration

NAN, INF = math.nan, math.inf
FINITE = "positive number of seconds"
TRIGGER_IDS = {"user_id": "u", "app_id": "a", "pipeline_id": "p", "pipeline_version_id": "v", "run_id": "r"}


def trigger(**kwargs: object) -> ClarifaiPipelineRunTrigger:
    return ClarifaiPipelineRunTrigger(clarifai_conn_id="clarifai_default", **TRIGGER_IDS, **kwargs)  # type: ignore[arg-type]


ROWS: tuple[BadInput, ...] = (
    # Numbers -------------------------------------------------------------------------------------------
    BadInput(
        "hook-timeout-nan",
        "hook",
        lambda env: env.call(env.hook(timeout=NAN), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong=f"timeout must be a {FINITE}, got nan",
        fix="Pass a number such as 30",
    ),
    BadInput(
        "hook-timeout-infinite",
        "hook",
        lambda env: env.call(env.hook(timeout=INF), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong=f"timeout must be a {FINITE}, got inf",
        fix="Pass a number such as 30",
    ),
    BadInput(
        "hook-backoff-nan",
        "hook",
        lambda env: env.hook(retry_policy={"initial_backoff": NAN}),
        ClarifaiConfigurationError,
        wrong="initial_backoff must be a number of seconds, 0 or more, got nan (NaN and infinity never",
        fix="Pass only the settings to change",
    ),
    BadInput(
        "hook-retry-budget-infinite",
        "hook",
        lambda env: env.hook(retry_policy={"max_elapsed": INF}),
        ClarifaiConfigurationError,
        wrong=f"max_elapsed must be a {FINITE}, got inf",
        fix="Pass only the settings to change",
    ),
    BadInput(
        "hook-jitter-nan",
        "hook",
        lambda env: env.hook(retry_policy={"jitter": NAN}),
        ClarifaiConfigurationError,
        wrong="jitter must be a number from 0 to 1, got nan",
        fix="Pass only the settings to change",
    ),
    BadInput(
        "trigger-poll-interval-nan",
        "trigger",
        lambda env: trigger(poll_interval=NAN),
        ClarifaiConfigurationError,
        wrong=f"poll_interval must be a {FINITE}, got nan",
        fix="Pass a number such as 30",
    ),
    BadInput(
        "trigger-deadline-infinite",
        "trigger",
        lambda env: trigger(deadline=INF),
        ClarifaiConfigurationError,
        wrong="deadline must be UNIX seconds or None, got inf",
        fix="time.time() + its timeout",
    ),
    BadInput(
        "run-timeout-nan",
        "run",
        lambda env: env.run(Run, timeout=NAN),
        ClarifaiConfigurationError,
        wrong=f"timeout must be a {FINITE}, got nan",
        fix="timeout=timedelta(hours=1), or None for no limit",
        stage="parse",
    ),
    BadInput(
        "run-poll-interval-nan",
        "run",
        lambda env: env.run(Run, poll_interval=NAN),
        ClarifaiConfigurationError,
        wrong=f"poll_interval must be a {FINITE}, got nan",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "run-request-timeout-infinite",
        "run",
        lambda env: env.run(Run, request_timeout=INF),
        ClarifaiConfigurationError,
        wrong=f"request_timeout must be a {FINITE}, got inf",
        fix="Pass a number such as 30, or None",
        stage="parse",
    ),
    BadInput(
        "pause-wait-timeout-nan",
        "pause",
        lambda env: env.run(Pause, run_ids=["run-running"], wait_for_target=True, wait_timeout=NAN),
        ClarifaiConfigurationError,
        wrong=f"wait_timeout must be a {FINITE}, got nan",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "cancel-poll-interval-infinite",
        "cancel",
        lambda env: env.run(Cancel, run_ids=["run-running"], wait_for_target=True, poll_interval=INF),
        ClarifaiConfigurationError,
        wrong=f"poll_interval must be a {FINITE}, got inf",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "sensor-timeout-nan",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", timeout=NAN),
        ClarifaiConfigurationError,
        wrong="timeout must be a number of seconds, 0 or more, got nan",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "sensor-poke-interval-infinite",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", poke_interval=INF),
        ClarifaiConfigurationError,
        wrong="poke_interval must be a number of seconds, 0 or more, got inf",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    # Arguments that contradict each other --------------------------------------------------------------
    BadInput(
        "sensor-reschedule-and-deferrable",
        "sensor",
        lambda env: env.run(
            Sensor, pipeline_version_run_id="run-running", mode="reschedule", deferrable=True
        ),
        ClarifaiConfigurationError,
        wrong="has mode='reschedule' and deferrable=True",
        fix="Keep one: deferrable=True (no worker slot while waiting), or mode='reschedule'",
        stage="parse",
    ),
    BadInput(
        "sensor-success-states-a-bare-string",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", success_statuses="JOB_COMPLETED"),
        ClarifaiConfigurationError,
        wrong="success_statuses of task 'bad_input' must be a list of state names, got the string",
        fix="Write success_statuses=['JOB_COMPLETED'] for one state",
        stage="parse",
    ),
    BadInput(
        "run-failure-states-a-bare-string",
        "run",
        lambda env: env.run(Run, failure_statuses="JOB_FAILED"),
        ClarifaiConfigurationError,
        wrong="failure_statuses of task 'bad_input' must be a list of state names",
        fix="Write failure_statuses=['JOB_FAILED'] for one state",
        stage="parse",
    ),
    BadInput(
        "run-deferrable-without-waiting",
        "run",
        lambda env: env.run(Run, deferrable=True, wait_for_completion=False),
        ClarifaiConfigurationError,
        wrong="has deferrable=True and wait_for_completion=False: there is no wait to defer",
        fix="Drop deferrable, or set wait_for_completion=True",
        stage="parse",
    ),
    BadInput(
        "pause-selected-states-a-bare-string",
        "pause",
        lambda env: env.run(Pause, select_statuses="JOB_RUNNING"),
        ClarifaiConfigurationError,
        wrong="select_statuses of task 'bad_input' must be a list of state names",
        fix="Write select_statuses=['JOB_RUNNING'] for one state",
        stage="parse",
    ),
)


@pytest.mark.parametrize("row", [pytest.param(row, id=row.id) for row in ROWS])
def test_bad_number_or_contradiction(row: BadInput, emulator, tmp_path, monkeypatch, unused_tcp_port):
    check_row(row, Env(emulator, tmp_path, monkeypatch, "sync", closed_port=unused_tcp_port))


def test_a_templated_state_list_is_not_taken_for_a_bare_string():
    """A Jinja string renders to a list later; only a literal state name is refused."""
    from tests.sensors import unit_dag

    with unit_dag():
        operator = Pause(task_id="pause", select_statuses="{{ params.states }}", run_ids=None)
    assert operator.select_statuses == "{{ params.states }}"
