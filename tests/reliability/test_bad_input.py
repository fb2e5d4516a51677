"""Bad input: one table of wrong arguments, ids, files, connections, tokens and servers.

Every row is something a user can get wrong (or a server can do wrong), fed to the surface where it
happens: the hook (blocking, and asyncio where the path differs), the id resolver and
``config-lock.yaml``, the Airflow connection, the pause, resume and cancel operators, the run operator
and the sensor. For each row the test checks, against the emulator on a manual clock (so no run moves
by itself):

* the exact exception class;
* that the message names what is wrong (``wrong``) and says what to do (``fix``);
* that no token of the scenario, nor the wrong one a row sends, appears in the exception, its notes or
  the exceptions it chains;
* that no run of any pipeline version changed state and no run appeared, except the runs a row asked
  to change (``changes``: the good runs of a mixed batch, and only those, to the asked state);
* how many write requests (Patch and Post) and, where the row fixes it, how many requests in all the
  emulator received: ``calls=0`` means the input was refused before anything was sent;
* for tasks, whether the error came at construction (DAG parse, ``stage="parse"``) or in ``execute``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_clarifai.exceptions import (
    ClarifaiAuthError,
    ClarifaiBatchError,
    ClarifaiConfigurationError,
    ClarifaiNotFoundError,
    ClarifaiRequestRejectedError,
    ClarifaiUnavailableError,
    ClarifaiUnexpectedResponseError,
)
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds, resolve_pipeline_version_ids
from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiCancelPipelineRunOperator,
    ClarifaiPausePipelineRunOperator,
    ClarifaiResumePipelineRunOperator,
    ClarifaiRunPipelineOperator,
)
from airflow_provider_clarifai.retry import RetryPolicy
from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor
from tests.hooks.conftest import FAST_RETRIES, run_async
from tests.sensors import FakeTaskInstance, unit_dag

pytestmark = pytest.mark.integration

USER, APP, PIPELINE = "demo-user", "pipelines-app", "nightly-training"
IDS = {"user_id": USER, "app_id": APP, "pipeline_id": PIPELINE, "pipeline_version_id": "v1"}
V1 = PipelineVersionIds(USER, APP, PIPELINE, "v1")
V_MISSING = PipelineVersionIds(USER, APP, PIPELINE, "v-missing")
PRIVATE = PipelineVersionIds("other-user", "private-app", "private-pipeline", "v1")
#: A token no scenario knows; it must never be echoed either.
WRONG_TOKEN = "wrong-pat-5f1c9e0b7a"
READ_ONLY_TOKEN = "emulator-pat-readonly"
#: Two attempts, for the rows whose error is retryable (unreachable host, a server that never answers).
TWO_ATTEMPTS = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05, max_elapsed=10)
#: The client deadline of the rows where the server never answers.
SHORT_DEADLINE = 0.3
WRITES = ("PatchPipelineVersionRuns", "PostPipelineVersionRuns")

GOOD_LOCK = f"pipeline:\n  id: {PIPELINE}\n  user_id: {USER}\n  app_id: {APP}\n  version_id: v1\n"
STEP_LOCK = f"id: stepA\nhash: 1234abcd\npipeline_step:\n  id: stepA\n  user_id: {USER}\n  app_id: {APP}\n"

Pause = ClarifaiPausePipelineRunOperator
Resume = ClarifaiResumePipelineRunOperator
Cancel = ClarifaiCancelPipelineRunOperator
Run = ClarifaiRunPipelineOperator
Sensor = ClarifaiPipelineRunSensor


# The environment a row acts in ---------------------------------------------------------------------


@dataclass
class Env:
    """What a row's ``act`` gets: the emulator, a scratch folder, and helpers to build the bad input."""

    emulator: Any
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    mode: str
    closed_port: int
    #: For tasks: "parse" while the task is constructed, "run" once ``execute`` is called.
    stage: str | None = None
    _hooks: list[ClarifaiHook] = field(default_factory=list)

    def connection(self, conn_id: str = "bad", **fields: Any) -> str:
        """Define Airflow connection ``conn_id``: the emulator's, with ``fields`` replaced."""
        value = dict(self.emulator.airflow_connection(), **fields)
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
        return conn_id

    def hook(self, conn_id: str = "clarifai_default", **kwargs: Any) -> ClarifaiHook:
        """A hook with fast retries, closed after the row."""
        kwargs.setdefault("retry_policy", FAST_RETRIES)
        hook = ClarifaiHook(conn_id, **kwargs)
        self._hooks.append(hook)
        return hook

    def call(self, hook: ClarifaiHook, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a hook method by its blocking name, blocking or through its asyncio twin."""
        if self.mode == "sync":
            return getattr(hook, name)(*args, **kwargs)
        return run_async(lambda: getattr(hook, "a" + name)(*args, **kwargs))

    def lock(self, text: str, name: str = "config-lock.yaml") -> str:
        """Write a lockfile into a folder of its own; return its absolute path."""
        folder = self.tmp_path / "pipeline"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_text(text)
        return str(path)

    def run(self, operator: type, /, *, ids: Mapping[str, Any] = IDS, **kwargs: Any) -> Any:
        """Construct a task in a DAG (stage "parse"), then ``execute`` it directly (stage "run").

        :param ids: the pipeline version ids to pass (``{}`` to take them from elsewhere).
        """
        arguments: dict[str, Any] = {"task_id": "bad_input", **ids, "api_retry_policy": FAST_RETRIES}
        if operator is Sensor:
            # Should a row ever wait instead of failing, it fails within seconds.
            arguments.update(poke_interval=0.05, timeout=5)
        arguments.update(kwargs)
        self.stage = "parse"
        with unit_dag():
            task = operator(**arguments)
        self.stage = "run"
        ti = FakeTaskInstance(
            dag_id="clarifai_unit", task_id=task.task_id, run_id="manual__1", map_index=-1, try_number=1
        )
        try:
            return task.execute({"ti": ti})
        finally:
            if "hook" in vars(task):
                task.hook.close()

    def close(self) -> None:
        for hook in self._hooks:
            hook.close()


# The table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """One bad input and everything that must come of it.

    :param id: the test id.
    :param surface: hook, ids, connection, server, pause, resume, cancel, run or sensor.
    :param act: feeds the bad input; must raise.
    :param error: the exact exception class.
    :param wrong: a phrase of the message naming what is wrong.
    :param fix: a phrase of the message saying what to do.
    :param also: more phrases the message must hold (a batch's per-run lines).
    :param cause: the class of ``__cause__``, where the error wraps another.
    :param modes: "sync" and/or "asyncio": how ``Env.call`` calls the hook.
    :param calls: requests the emulator must get in all; ``None`` leaves it unchecked.
    :param writes: Patch and Post requests the emulator must get.
    :param changes: run id (of demo-user's v1) -> the state the row asked for; every other run is unchanged.
    :param stage: for tasks: "parse" (the constructor refuses) or "run" (``execute`` does).
    :param setup: prepares the emulator (faults) before ``act``.
    """

    id: str
    surface: str
    act: Callable[[Env], Any]
    error: type[BaseException]
    wrong: str
    fix: str
    also: tuple[str, ...] = ()
    cause: type[BaseException] | None = None
    modes: tuple[str, ...] = ("sync",)
    calls: int | None = 0
    writes: int = 0
    changes: Mapping[str, str] = field(default_factory=dict)
    stage: str | None = None
    setup: Callable[[Any], Any] | None = None


BOTH = ("sync", "asyncio")
CHECK_IDS = "Check user_id, app_id, pipeline_id, pipeline_version_id and the run id"
CHECK_TOKEN = "Check the Personal Access Token in the Airflow connection's password field"
NOT_AN_API = "Check that the connection's host is a Clarifai API endpoint"
PASS_RUN_ID = "Pass the run's id exactly as Clarifai reports it"


def garbage_on(method: str) -> Callable[[Any], Any]:
    return lambda emulator: emulator.faults.add(kind="garbage", method=method)


def hang_on(method: str) -> Callable[[Any], Any]:
    return lambda emulator: emulator.faults.add(kind="hang", method=method)


ROWS: tuple[BadInput, ...] = (
    # The hook -------------------------------------------------------------------------------------
    BadInput(
        "hook-unknown-run",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, "no-such-run"),
        ClarifaiNotFoundError,
        wrong="pipeline version run 'no-such-run' not found",
        fix=CHECK_IDS,
        modes=BOTH,
        calls=1,
    ),
    BadInput(
        "hook-unknown-pipeline-version",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V_MISSING, "run-running"),
        ClarifaiNotFoundError,
        wrong="pipeline version 'v-missing' not found",
        fix=CHECK_IDS,
        calls=1,
    ),
    BadInput(
        "hook-another-users-run",
        "hook",
        lambda env: env.call(env.hook(), "get_run", PRIVATE, "private-run"),
        ClarifaiNotFoundError,
        wrong="user 'other-user' not found",
        fix="that the token's user can see them",
        calls=1,
    ),
    BadInput(
        "hook-ids-not-resolved",
        "hook",
        lambda env: env.call(env.hook(), "get_run", IDS, "run-running"),
        ClarifaiConfigurationError,
        wrong="ids must be a PipelineVersionIds",
        fix="from ClarifaiHook.resolve_ids",
    ),
    BadInput(
        "hook-run-id-an-int",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, 42),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_id is an int (42), not a string",
        fix=PASS_RUN_ID,
    ),
    BadInput(
        "hook-run-id-a-path",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, "runs/run-running"),
        ClarifaiConfigurationError,
        wrong="contains '/' ('runs/run-running')",
        fix="give the single id, not a URL or a path of ids",
    ),
    BadInput(
        "hook-unknown-action",
        "hook",
        lambda env: env.call(env.hook(), "set_runs_status", V1, ["run-running"], "stop"),
        ClarifaiConfigurationError,
        wrong="Unknown action 'stop'",
        fix="use one of pause, resume, cancel",
        modes=BOTH,
    ),
    BadInput(
        "hook-repeated-run-id",
        "hook",
        lambda env: env.call(env.hook(), "set_runs_status", V1, ["run-running", "run-running"], "pause"),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_ids repeats run-running",
        fix="Pass each run id once",
    ),
    BadInput(
        "hook-unknown-state-filter",
        "hook",
        lambda env: env.call(env.hook(), "list_runs", V1, statuses=["SLEEPING"]),
        ClarifaiConfigurationError,
        wrong="'SLEEPING' is not a pipeline run state",
        fix="valid states are JOB_QUEUED, JOB_RUNNING",
    ),
    BadInput(
        "hook-page-size-zero",
        "hook",
        lambda env: env.call(env.hook(), "list_runs", V1, per_page=0),
        ClarifaiConfigurationError,
        wrong="got 0",
        fix="per_page must be a whole number from 1 to 1000",
    ),
    BadInput(
        "hook-input-args-not-strings",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, input_args={"epochs": 3}),
        ClarifaiConfigurationError,
        wrong="got {'epochs': 3}",
        fix="input_args must map parameter names to string values, for example {'learning_rate': '0.01'}",
    ),
    BadInput(
        "hook-start-under-an-existing-run-id",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, run_id="run-running"),
        ClarifaiRequestRejectedError,
        wrong="pipeline version run 'run-running' already exists",
        fix="Choose another id",
        calls=1,
        writes=1,
    ),
    BadInput(
        "hook-change-runs-of-unknown-version",
        "hook",
        lambda env: env.call(env.hook(), "set_runs_status", V_MISSING, ["run-running"], "pause"),
        ClarifaiNotFoundError,
        wrong="pipeline version 'v-missing' not found",
        fix=CHECK_IDS,
        calls=1,
        writes=1,
    ),
    BadInput(
        "hook-unknown-retry-setting",
        "hook",
        lambda env: env.hook(retry_policy={"retries": 3}),
        ClarifaiConfigurationError,
        wrong="unknown setting(s) retries",
        fix="valid settings are initial_backoff, jitter, max_attempts",
    ),
    BadInput(
        "hook-negative-timeout",
        "hook",
        lambda env: env.hook(timeout=-1),
        ClarifaiConfigurationError,
        wrong="got -1",
        fix="timeout must be a positive number of seconds",
    ),
    BadInput(
        "hook-batch-size-zero",
        "hook",
        lambda env: env.hook(batch_size=0),
        ClarifaiConfigurationError,
        wrong="got 0",
        fix="batch_size must be a whole number from 1 to 1000",
    ),
    BadInput(
        "hook-empty-connection-id",
        "hook",
        lambda env: env.hook(""),
        ClarifaiConfigurationError,
        wrong="got ''",
        fix="clarifai_conn_id must be a non-empty string",
    ),
    # The connection -------------------------------------------------------------------------------
    BadInput(
        "connection-not-defined",
        "connection",
        lambda env: (
            env.monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False),
            env.call(env.hook("nowhere"), "get_run", V1, "run-running"),
        ),
        ClarifaiConfigurationError,
        wrong="Airflow connection 'nowhere' is not defined",
        fix="Create it with type 'clarifai'",
        also=("set the environment variable AIRFLOW_CONN_NOWHERE",),
        modes=BOTH,
    ),
    BadInput(
        "connection-no-token",
        "connection",
        lambda env: env.call(env.hook(env.connection(password=None)), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="Airflow connection 'bad' has no Personal Access Token",
        fix="Put the PAT in the connection's password field",
        modes=BOTH,
    ),
    BadInput(
        "connection-blank-token",
        "connection",
        lambda env: env.call(env.hook(env.connection(password="   ")), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="has no Personal Access Token",
        fix="Put the PAT in the connection's password field",
    ),
    BadInput(
        "connection-blank-host",
        "connection",
        lambda env: env.call(env.hook(env.connection(host="   ")), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="has an invalid host '   '",
        fix="Use https://api.clarifai.com, or http://HOST:PORT",
    ),
    BadInput(
        "connection-unknown-scheme",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(host=f"ftp://127.0.0.1:{env.emulator.port}")), "get_run", V1, "r"
        ),
        ClarifaiConfigurationError,
        wrong="has an invalid host 'ftp://127.0.0.1:",
        fix="Use https://api.clarifai.com, or http://HOST:PORT",
    ),
    BadInput(
        "connection-host-with-a-path",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(host=env.emulator.base_url + "/v2")), "get_run", V1, "run-running"
        ),
        ClarifaiConfigurationError,
        wrong="must not contain a path or query",
        fix="give only scheme, host and port",
    ),
    BadInput(
        "connection-port-out-of-range",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(host="http://127.0.0.1:99999")), "get_run", V1, "run-running"
        ),
        ClarifaiConfigurationError,
        wrong="has an invalid port in host 'http://127.0.0.1:99999'",
        fix="Use a port from 1 to 65535",
        modes=BOTH,
    ),
    BadInput(
        "connection-port-not-a-number",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(host="http://127.0.0.1:grpc")), "get_run", V1, "run-running"
        ),
        ClarifaiConfigurationError,
        wrong="has an invalid port in host 'http://127.0.0.1:grpc'",
        fix="Use a port from 1 to 65535",
    ),
    BadInput(
        "connection-plaintext-without-port",
        "connection",
        lambda env: env.call(env.hook(env.connection(host="http://127.0.0.1")), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="plaintext host 'http://127.0.0.1' needs a port",
        fix="for example http://localhost:50051",
    ),
    BadInput(
        "connection-timeout-not-a-number",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(extra={"timeout": "soon"})), "get_run", V1, "run-running"
        ),
        ClarifaiConfigurationError,
        wrong="extra field 'timeout'",
        fix="must be a positive number of seconds, got 'soon'",
        modes=BOTH,
    ),
    BadInput(
        "connection-default-app-not-a-string",
        "connection",
        lambda env: env.call(env.hook(env.connection(extra={"app_id": [APP]})), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="extra field 'app_id' must be a string, got list",
        fix="must be a string",
    ),
    BadInput(
        "connection-extra-not-json",
        "connection",
        lambda env: env.call(env.hook(env.connection(extra='{"timeout": 0.5')), "get_run", V1, "run-running"),
        ClarifaiConfigurationError,
        wrong="not valid JSON",
        fix="extra",
    ),
    BadInput(
        "connection-missing-root-certificates",
        "connection",
        lambda env: env.call(
            env.hook(
                env.connection(
                    host=f"https://127.0.0.1:{env.emulator.port}",
                    extra={"root_certificates_path": str(env.tmp_path / "missing-ca.pem")},
                )
            ),
            "get_run",
            V1,
            "run-running",
        ),
        ClarifaiConfigurationError,
        wrong="Cannot read root certificates",
        fix="Fix the connection's root_certificates_path",
        modes=BOTH,
    ),
    BadInput(
        "connection-default-user-with-a-space",
        "connection",
        lambda env: env.run(
            Run,
            ids={"pipeline_id": PIPELINE, "pipeline_version_id": "v1"},
            clarifai_conn_id=env.connection(extra={"user_id": "demo user", "app_id": APP}),
        ),
        ClarifaiConfigurationError,
        wrong="The default user_id from the defaults of Airflow connection 'bad' contains whitespace",
        fix="or pass user_id explicitly",
        stage="run",
    ),
    BadInput(
        "connection-wrong-token",
        "connection",
        lambda env: env.call(env.hook(env.connection(password=WRONG_TOKEN)), "get_run", V1, "run-running"),
        ClarifaiAuthError,
        wrong="CONN_KEY_INVALID",
        fix=CHECK_TOKEN,
        modes=BOTH,
        calls=1,
    ),
    BadInput(
        "connection-read-only-token-writes",
        "connection",
        lambda env: env.call(
            env.hook(env.connection(password=READ_ONLY_TOKEN)),
            "set_runs_status",
            V1,
            ["run-running"],
            "cancel",
        ),
        ClarifaiAuthError,
        wrong="CONN_INSUFFICIENT_SCOPES",
        fix="have the scopes for pipeline runs",
        modes=BOTH,
        calls=1,
        writes=1,
    ),
    # The server -----------------------------------------------------------------------------------
    BadInput(
        "server-unreachable",
        "server",
        lambda env: env.call(
            env.hook(env.connection(host=f"http://127.0.0.1:{env.closed_port}"), retry_policy=TWO_ATTEMPTS),
            "get_run",
            V1,
            "run-running",
        ),
        ClarifaiUnavailableError,
        wrong="Could not reach the Clarifai API at 127.0.0.1:",
        fix="Check the connection's host and the network",
        modes=BOTH,
    ),
    BadInput(
        "server-answers-garbage",
        "server",
        lambda env: env.call(env.hook(), "get_run", V1, "run-running"),
        ClarifaiUnexpectedResponseError,
        wrong="Exception deserializing response",
        fix=NOT_AN_API,
        calls=1,
        setup=garbage_on("GetPipelineVersionRun"),
    ),
    BadInput(
        "server-answers-garbage-asyncio",
        "server",
        lambda env: env.call(env.hook(), "get_run", V1, "run-running"),
        ClarifaiUnexpectedResponseError,
        wrong="returned an empty or unreadable response",
        fix=NOT_AN_API,
        modes=("asyncio",),
        calls=1,
        setup=garbage_on("GetPipelineVersionRun"),
    ),
    BadInput(
        "server-answers-garbage-to-a-change",
        "server",
        lambda env: env.call(env.hook(), "set_runs_status", V1, ["run-running"], "cancel"),
        ClarifaiUnexpectedResponseError,
        wrong="Exception deserializing response",
        fix=NOT_AN_API,
        calls=1,
        writes=1,
        setup=garbage_on("PatchPipelineVersionRuns"),
    ),
    BadInput(
        "server-answers-nothing",
        "server",
        lambda env: env.call(
            env.hook(env.connection(extra={"timeout": SHORT_DEADLINE}), retry_policy=TWO_ATTEMPTS),
            "get_run",
            V1,
            "run-running",
        ),
        ClarifaiUnavailableError,
        wrong="within the call's deadline",
        fix="raise the deadline: the connection's extra 'timeout'",
        modes=BOTH,
        calls=None,  # A hung request is logged once the emulator notices the client gave up.
        setup=hang_on("GetPipelineVersionRun"),
    ),
    # The id resolver and config-lock.yaml ---------------------------------------------------------
    BadInput(
        "ids-lockfile-missing",
        "ids",
        lambda env: env.run(
            Sensor,
            ids={},
            pipeline_version_run_id="run-running",
            config_lock_path=str(env.tmp_path / "missing" / "config-lock.yaml"),
        ),
        ClarifaiConfigurationError,
        wrong="missing/config-lock.yaml (given as an absolute path) does not exist",
        fix="Check config_lock_path",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-not-yaml",
        "ids",
        lambda env: env.run(
            Pause,
            ids={},
            run_ids="run-running",
            config_lock_path=env.lock("pipeline:\n  id: p\n  version_id: [unclosed\n"),
        ),
        ClarifaiConfigurationError,
        wrong="is not valid YAML",
        fix="regenerate it with `clarifai pipeline upload`",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-a-list",
        "ids",
        lambda env: env.run(Run, ids={}, config_lock_path=env.lock(f"- id: {PIPELINE}\n")),
        ClarifaiConfigurationError,
        wrong="holds a list at the top level, not a mapping",
        fix="Point config_lock_path at the pipeline's config-lock.yaml",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-missing-keys",
        "ids",
        lambda env: env.hook().resolve_ids(
            config_lock_path=env.lock(f"pipeline:\n  id: {PIPELINE}\n  user_id: {USER}\n")
        ),
        ClarifaiConfigurationError,
        wrong="Missing Clarifai ids: app_id, pipeline_version_id",
        fix="To fix: pass app_id, pipeline_version_id explicitly",
    ),
    BadInput(
        "ids-lockfile-version-a-number",
        "ids",
        lambda env: env.run(
            Cancel,
            ids={},
            run_ids="run-running",
            config_lock_path=env.lock(GOOD_LOCK.replace("version_id: v1", "version_id: 20250101")),
        ),
        ClarifaiConfigurationError,
        wrong="is an int (20250101), not a string",
        fix="quote it",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-empty-app-id",
        "ids",
        lambda env: env.run(
            Resume,
            ids={},
            run_ids="run-paused",
            config_lock_path=env.lock(GOOD_LOCK.replace(f"app_id: {APP}", "app_id: ''")),
        ),
        ClarifaiConfigurationError,
        wrong="pipeline.app_id (app_id)",
        fix="Fix it in the file",
        also=("is empty",),
        stage="run",
    ),
    BadInput(
        "ids-lockfile-id-with-a-space",
        "ids",
        lambda env: env.hook().resolve_ids(
            config_lock_path=env.lock(GOOD_LOCK.replace(f"id: {PIPELINE}", "id: nightly training"))
        ),
        ClarifaiConfigurationError,
        wrong="contains whitespace ('nightly training')",
        fix="Fix it in the file",
    ),
    BadInput(
        "ids-step-lockfile",
        "ids",
        lambda env: env.run(
            Sensor, ids={}, pipeline_version_run_id="run-running", config_lock_path=env.lock(STEP_LOCK)
        ),
        ClarifaiConfigurationError,
        wrong="is a pipeline step's lockfile",
        fix="give the pipeline's config-lock.yaml",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-path-a-folder",
        "ids",
        lambda env: env.run(Pause, ids={}, run_ids="run-running", config_lock_path=str(env.tmp_path)),
        ClarifaiConfigurationError,
        wrong="is a directory, not a file",
        fix="Check config_lock_path",
        stage="run",
    ),
    BadInput(
        "ids-lockfile-path-not-a-path",
        "ids",
        lambda env: env.run(Sensor, ids={}, pipeline_version_run_id="run-running", config_lock_path=42),
        ClarifaiConfigurationError,
        wrong="config_lock_path must be a path (str or os.PathLike[str]), got int (42)",
        fix="Pass the path of the pipeline's config-lock.yaml",
        stage="run",
    ),
    BadInput(
        "ids-bad-lockfile-despite-explicit-ids",
        "ids",
        lambda env: env.run(
            Pause,
            run_ids="run-running",
            config_lock_path=env.lock(GOOD_LOCK.replace("version_id: v1", "version_id: 1")),
        ),
        ClarifaiConfigurationError,
        wrong="pipeline.version_id (pipeline_version_id)",
        fix="quote it",
        stage="run",
    ),
    BadInput(
        "ids-explicit-id-with-a-slash-over-a-good-lockfile",
        "ids",
        lambda env: env.run(
            Pause,
            ids={"app_id": f"{USER}/{APP}"},
            run_ids="run-running",
            config_lock_path=env.lock(GOOD_LOCK),
        ),
        ClarifaiConfigurationError,
        wrong="Parameter app_id contains '/'",
        fix="leave it None to take it from config-lock.yaml or the connection",
        stage="run",
    ),
    BadInput(
        "ids-explicit-id-not-a-string",
        "ids",
        lambda env: resolve_pipeline_version_ids(**dict(IDS, pipeline_version_id=1)),
        ClarifaiConfigurationError,
        wrong="Parameter pipeline_version_id is an int (1), not a string",
        fix="Pass pipeline_version_id as a single id string",
    ),
    BadInput(
        "ids-nothing-given",
        "ids",
        lambda env: env.hook().resolve_ids(),
        ClarifaiConfigurationError,
        wrong="Missing Clarifai ids: user_id, app_id, pipeline_id, pipeline_version_id",
        fix="set the default user_id and app_id in the defaults of Airflow connection 'clarifai_default'",
    ),
    # Pause, resume and cancel ---------------------------------------------------------------------
    BadInput(
        "pause-run-ids-an-int",
        "pause",
        lambda env: env.run(Pause, run_ids=42),
        ClarifaiConfigurationError,
        wrong="got int (42)",
        fix="Pass one id or a list of ids",
        stage="run",
    ),
    BadInput(
        "resume-run-ids-a-dict",
        "resume",
        lambda env: env.run(Resume, run_ids={"run_id": "run-paused"}),
        ClarifaiConfigurationError,
        wrong="must be a string or a list of strings, got dict",
        fix="Pass one id or a list of ids",
        stage="run",
    ),
    BadInput(
        "cancel-run-ids-none",
        "cancel",
        lambda env: env.run(Cancel, run_ids=None),
        ClarifaiConfigurationError,
        wrong="got neither of run_ids and select_statuses",
        fix="Give exactly one",
        stage="parse",
    ),
    BadInput(
        "cancel-run-ids-and-select-statuses",
        "cancel",
        lambda env: env.run(Cancel, run_ids=["run-running"], select_statuses=["RUNNING"]),
        ClarifaiConfigurationError,
        wrong="got both of run_ids and select_statuses",
        fix="Give exactly one",
        stage="parse",
    ),
    BadInput(
        "pause-empty-run-id-in-the-list",
        "pause",
        lambda env: env.run(Pause, run_ids=["run-running", ""]),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_ids[1] is empty",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "pause-repeated-run-id",
        "pause",
        lambda env: env.run(Pause, run_ids=["run-running", " run-running"]),
        ClarifaiConfigurationError,
        wrong="repeats run-running",
        fix="Pass each run id once",
        stage="run",
    ),
    BadInput(
        "cancel-run-id-with-a-space",
        "cancel",
        lambda env: env.run(Cancel, run_ids="run running"),
        ClarifaiConfigurationError,
        wrong="contains whitespace ('run running')",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "pause-list-rendered-as-text",
        "pause",
        lambda env: env.run(Pause, run_ids="['run-running', 'run-forever']"),
        ClarifaiConfigurationError,
        wrong="looks like a list rendered to text by a template",
        fix="set render_template_as_native_obj=True",
        stage="run",
    ),
    BadInput(
        "resume-ids-mixed-with-records",
        "resume",
        lambda env: env.run(Resume, run_ids=[{"run_id": "run-paused"}, "run-forever"]),
        ClarifaiConfigurationError,
        wrong="run_ids[1] of task 'bad_input' is 'run-forever'",
        fix="holds either run id strings or the records",
        stage="run",
    ),
    BadInput(
        "pause-unknown-run",
        "pause",
        lambda env: env.run(Pause, run_ids=["ghost"]),
        ClarifaiBatchError,
        wrong="- ghost: not_found: no such run",
        fix="check the run ids and the pipeline version they belong to",
        calls=1,
    ),
    BadInput(
        "pause-unknown-pipeline-version",
        "pause",
        lambda env: env.run(Pause, ids=dict(IDS, pipeline_version_id="v-missing"), run_ids="run-running"),
        ClarifaiBatchError,
        wrong="pipeline version 'v-missing' not found",
        fix="check the run ids and the pipeline version they belong to",
        calls=1,
    ),
    BadInput(
        "pause-completed-run",
        "pause",
        lambda env: env.run(Pause, run_ids=["run-completed"]),
        ClarifaiBatchError,
        wrong="cannot pause a run in JOB_COMPLETED: pause is allowed from JOB_QUEUED, JOB_RUNNING",
        fix="pass on_forbidden='skip'",
        calls=1,
    ),
    BadInput(
        "resume-queued-run",
        "resume",
        lambda env: env.run(Resume, run_ids="run-queued"),
        ClarifaiBatchError,
        wrong="cannot resume a run in JOB_QUEUED: resume is allowed from JOB_PAUSED",
        fix="pass on_forbidden='skip'",
        calls=1,
    ),
    BadInput(
        "cancel-failed-run",
        "cancel",
        lambda env: env.run(Cancel, run_ids=["run-failed"]),
        ClarifaiBatchError,
        wrong="cannot cancel a run in JOB_FAILED",
        fix="pass on_forbidden='skip'",
        calls=1,
    ),
    BadInput(
        "pause-mixed-batch",
        "pause",
        lambda env: env.run(Pause, run_ids=["run-queued", "run-failed", "ghost"]),
        ClarifaiBatchError,
        wrong="Could not pause every run: 2 of 3 failed",
        fix="check the run ids",
        also=(
            "- run-queued: changed: paused (JOB_QUEUED -> JOB_PAUSED)",
            "- run-failed: forbidden: cannot pause a run in JOB_FAILED",
            "- ghost: not_found",
            "were paused (run-queued); no other run was changed",
        ),
        calls=4,
        writes=1,
        changes={"run-queued": "JOB_PAUSED"},
    ),
    BadInput(
        "cancel-mixed-batch",
        "cancel",
        lambda env: env.run(
            Cancel, run_ids=["run-running", "run-completed", "ghost", "run-paused", "run-cancelled"]
        ),
        ClarifaiBatchError,
        wrong="Could not cancel every run: 2 of 5 failed",
        fix="pass on_forbidden='skip'",
        also=(
            "- run-running: changed: cancelled (JOB_RUNNING -> JOB_CANCELLED)",
            "- run-completed: forbidden",
            "- ghost: not_found",
            "- run-paused: changed: cancelled (JOB_PAUSED -> JOB_CANCELLED)",
            "- run-cancelled: already_in_target",
            "were cancelled (run-running, run-paused)",
            "check the run ids",
        ),
        # One listing of the unfinished runs, a read of each run it did not hold (the finished two and
        # the ghost), and one patch: 5 requests, not a read per run.
        calls=5,
        writes=1,
        changes={"run-running": "JOB_CANCELLED", "run-paused": "JOB_CANCELLED"},
    ),
    BadInput(
        "pause-unknown-state-selected",
        "pause",
        lambda env: env.run(Pause, select_statuses=["SLEEPING"]),
        ClarifaiConfigurationError,
        wrong="'SLEEPING' is not a pipeline run state",
        fix="Write a list of state names, for example",
        stage="run",
    ),
    BadInput(
        "cancel-ended-state-selected",
        "cancel",
        lambda env: env.run(Cancel, select_statuses=["COMPLETED"]),
        ClarifaiConfigurationError,
        wrong="selects JOB_COMPLETED, but cancel is allowed from",
        fix="Select only states the action can apply to",
        stage="run",
    ),
    BadInput(
        "pause-on-forbidden-typo",
        "pause",
        lambda env: env.run(Pause, run_ids="run-running", on_forbidden="ignore"),
        ClarifaiConfigurationError,
        wrong="got 'ignore'",
        fix="on_forbidden must be 'fail' or 'skip'",
        stage="parse",
    ),
    BadInput(
        "resume-wait-timeout-text",
        "resume",
        lambda env: env.run(Resume, run_ids="run-paused", wait_for_target=True, wait_timeout="10"),
        ClarifaiConfigurationError,
        wrong="got '10'",
        fix="wait_timeout must be a positive number of seconds",
        stage="parse",
    ),
    BadInput(
        "cancel-poll-interval-a-bool",
        "cancel",
        lambda env: env.run(Cancel, run_ids="run-running", poll_interval=True),
        ClarifaiConfigurationError,
        wrong="got True",
        fix="poll_interval must be a positive number of seconds",
        stage="parse",
    ),
    BadInput(
        "pause-unknown-retry-setting",
        "pause",
        lambda env: env.run(Pause, run_ids="run-running", api_retry_policy={"attempts": 3}),
        ClarifaiConfigurationError,
        wrong="unknown setting(s) attempts",
        fix="valid settings are initial_backoff, jitter, max_attempts",
        stage="parse",
    ),
    BadInput(
        "pause-read-only-token",
        "pause",
        lambda env: env.run(
            Pause, run_ids=["run-running"], clarifai_conn_id=env.connection(password=READ_ONLY_TOKEN)
        ),
        ClarifaiAuthError,
        wrong="CONN_INSUFFICIENT_SCOPES",
        fix=CHECK_TOKEN,
        calls=2,
        writes=1,
    ),
    BadInput(
        "resume-wrong-token",
        "resume",
        lambda env: env.run(
            Resume, run_ids=["run-paused"], clarifai_conn_id=env.connection(password=WRONG_TOKEN)
        ),
        ClarifaiAuthError,
        wrong="CONN_KEY_INVALID",
        fix=CHECK_TOKEN,
        calls=1,
    ),
    # Starting a run -------------------------------------------------------------------------------
    BadInput(
        "run-input-args-not-strings",
        "run",
        lambda env: env.run(Run, input_args={"epochs": 2}),
        ClarifaiConfigurationError,
        wrong="got {'epochs': 2}",
        fix="input_args must map parameter names to string values",
    ),
    BadInput(
        "run-cluster-without-nodepool",
        "run",
        lambda env: env.run(Run, compute_cluster_id="cluster-1"),
        ClarifaiConfigurationError,
        wrong="compute_cluster_id needs nodepool_id",
        fix="give both or neither",
    ),
    BadInput(
        "run-poll-interval-text",
        "run",
        lambda env: env.run(Run, poll_interval="5"),
        ClarifaiConfigurationError,
        wrong="got '5'",
        fix="poll_interval must be a positive number of seconds",
        stage="parse",
    ),
    BadInput(
        "run-negative-timeout",
        "run",
        lambda env: env.run(Run, timeout=-5),
        ClarifaiConfigurationError,
        wrong="timeout must be a positive number of seconds, got -5",
        fix="Pass, for example, timeout=3600 or timeout=timedelta(hours=1)",
        stage="parse",
    ),
    BadInput(
        "run-unknown-pipeline-version",
        "run",
        lambda env: env.run(Run, ids=dict(IDS, pipeline_version_id="v-missing")),
        ClarifaiNotFoundError,
        wrong="pipeline version 'v-missing' not found",
        fix=CHECK_IDS,
        calls=2,
        writes=1,
    ),
    BadInput(
        "run-unknown-success-state",
        "run",
        lambda env: env.run(Run, success_statuses=["DONE"]),
        ClarifaiConfigurationError,
        wrong="'DONE' is not a pipeline run state",
        fix="valid states are JOB_QUEUED",
    ),
    BadInput(
        "run-state-both-success-and-failure",
        "run",
        lambda env: env.run(Run, success_statuses=["COMPLETED"], failure_statuses=["COMPLETED", "FAILED"]),
        ClarifaiConfigurationError,
        wrong="JOB_COMPLETED cannot be both a success and a failure state",
        fix="Remove it from success_statuses or from failure_statuses",
    ),
    BadInput(
        "run-run-id-with-a-space",
        "run",
        lambda env: env.run(Run, pipeline_version_run_id="my run"),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_id contains whitespace ('my run')",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "run-negative-request-timeout",
        "run",
        lambda env: env.run(Run, request_timeout=-1),
        ClarifaiConfigurationError,
        wrong="request_timeout",
        fix="must be a positive number of seconds",
        stage="parse",
    ),
    BadInput(
        "run-unknown-retry-setting",
        "run",
        lambda env: env.run(Run, api_retry_policy={"retries": 3}),
        ClarifaiConfigurationError,
        wrong="unknown setting(s) retries",
        fix="valid settings are initial_backoff, jitter, max_attempts",
    ),
    BadInput(
        "run-read-only-token",
        "run",
        lambda env: env.run(Run, clarifai_conn_id=env.connection(password=READ_ONLY_TOKEN)),
        ClarifaiAuthError,
        wrong="CONN_INSUFFICIENT_SCOPES",
        fix="have the scopes for pipeline runs",
        calls=2,
        writes=1,
    ),
    BadInput(
        "run-server-answers-nothing",
        "run",
        lambda env: env.run(Run, request_timeout=SHORT_DEADLINE, api_retry_policy=TWO_ATTEMPTS),
        ClarifaiUnavailableError,
        wrong="within the call's deadline",
        fix="request_timeout on the task",
        calls=None,
        setup=hang_on("GetPipelineVersionRun"),
    ),
    # The sensor -----------------------------------------------------------------------------------
    BadInput(
        "sensor-unknown-run",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="no-such-run"),
        AirflowFailException,
        wrong="pipeline version run 'no-such-run' not found",
        fix=CHECK_IDS,
        cause=ClarifaiNotFoundError,
        calls=1,
    ),
    BadInput(
        "sensor-run-id-an-int",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id=42),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_id is an int (42), not a string",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "sensor-run-id-empty",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id=""),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_id is empty",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "sensor-poke-interval-text",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", poke_interval="soon"),
        ClarifaiConfigurationError,
        wrong="poke_interval must be a number of seconds, 0 or more, got 'soon'",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "sensor-negative-timeout",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", timeout=-1),
        ClarifaiConfigurationError,
        wrong="timeout must be a number of seconds, 0 or more, got -1",
        fix="Pass a number such as 30",
        stage="parse",
    ),
    BadInput(
        "sensor-unknown-success-state",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", success_statuses=["FINISHED"]),
        ClarifaiConfigurationError,
        wrong="'FINISHED' is not a pipeline run state",
        fix="valid states are JOB_QUEUED",
    ),
    BadInput(
        "sensor-retry-policy-not-a-policy",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", api_retry_policy=3),
        ClarifaiConfigurationError,
        wrong="api_retry_policy",
        fix="a RetryPolicy, a dict or None",
        stage="parse",
    ),
    BadInput(
        "sensor-request-timeout-text",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running", request_timeout="30"),
        ClarifaiConfigurationError,
        wrong="request_timeout",
        fix="must be a positive number of seconds",
        stage="parse",
    ),
    BadInput(
        "sensor-wrong-token",
        "sensor",
        lambda env: env.run(
            Sensor,
            pipeline_version_run_id="run-running",
            clarifai_conn_id=env.connection(password=WRONG_TOKEN),
        ),
        ClarifaiAuthError,
        wrong="CONN_KEY_INVALID",
        fix=CHECK_TOKEN,
        calls=1,
    ),
    BadInput(
        "sensor-server-answers-garbage",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id="run-running"),
        AirflowFailException,
        wrong="Exception deserializing response",
        fix=NOT_AN_API,
        cause=ClarifaiUnexpectedResponseError,
        calls=1,
        setup=garbage_on("GetPipelineVersionRun"),
    ),
)

SURFACES = ("hook", "ids", "connection", "server", "pause", "resume", "cancel", "run", "sensor")


def cases() -> Iterator[Any]:
    for row in ROWS:
        for mode in row.modes:
            yield pytest.param(row, mode, id=row.id if len(row.modes) == 1 else f"{row.id}-{mode}")


# Checks --------------------------------------------------------------------------------------------


def run_states(emulator: Any) -> dict[tuple[str, ...], str]:
    """Every run of every pipeline version of the scenario, by (user, app, pipeline, version, run)."""
    states = {}
    for user in emulator.scenario.users:
        for app in user.apps:
            for pipeline in app.pipelines:
                for version in pipeline.versions:
                    for run in emulator.backend.runs(user.id, app.id, pipeline.id, version.id):
                        states[(user.id, app.id, pipeline.id, version.id, run.id)] = str(run.state)
    return states


def error_texts(error: BaseException) -> Iterator[str]:
    """str and repr of the error, its notes, and of every exception it chains to."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is known for known in seen):
        seen.append(current)
        yield str(current)
        yield repr(current)
        yield from getattr(current, "__notes__", ())
        current = current.__cause__ or current.__context__


def writes(emulator: Any) -> int:
    return sum(emulator.requests.count(method) for method in WRITES)


@pytest.mark.parametrize(("row", "mode"), list(cases()))
def test_bad_input(row: BadInput, mode: str, emulator, tmp_path, monkeypatch, unused_tcp_port):
    check_row(row, Env(emulator, tmp_path, monkeypatch, mode, closed_port=unused_tcp_port))


def check_row(
    row: BadInput,
    env: Env,
    *,
    secrets: Iterable[str] = (),
    single_attempt: pytest.LogCaptureFixture | None = None,
) -> None:
    """Feed one row's bad input and check everything that must come of it (see the module docstring).

    Other tables of bad input (tests/reliability/test_bad_*.py) use it with their own rows.

    :param secrets: more text that must appear nowhere in the error (pieces of the bad tokens a row sends).
    :param single_attempt: the test's ``caplog`` (at WARNING), to check that the row made one attempt
        only: no retry logged, no "Gave up" note on the error.
    """
    emulator = env.emulator
    if row.setup is not None:
        row.setup(emulator)
    before = run_states(emulator)

    error: Exception | None = None
    try:
        row.act(env)
    except Exception as caught:
        error = caught
    finally:
        env.close()

    # Each failed check, by name, all reported together.
    problems: dict[str, str] = {}
    if error is None:
        problems["raises"] = f"nothing was raised; expected {row.error.__name__}"
    else:
        message = str(error)
        if type(error) is not row.error:
            problems["class"] = f"raised {type(error).__name__}, expected {row.error.__name__}: {message}"
        missing = [phrase for phrase in (row.wrong, row.fix, *row.also) if phrase not in message]
        if missing:
            problems["message"] = f"{missing} not in the message: {message}"
        if row.cause is not None and not isinstance(error.__cause__, row.cause):
            problems["cause"] = f"caused by {error.__cause__!r}, expected a {row.cause.__name__}"
        hidden = {token.token for token in emulator.scenario.tokens} | {WRONG_TOKEN, *secrets}
        leaked = sorted({secret for text in error_texts(error) for secret in hidden if secret in text})
        if leaked:
            problems["token"] = f"a token appears in the error: {len(leaked)} of them"
        if row.stage is not None and env.stage != row.stage:
            problems["stage"] = f"raised at {env.stage}, expected at {row.stage}"
        if row.calls is not None and emulator.requests.count() != row.calls:
            sent = [record.method for record in emulator.requests]
            problems["calls"] = f"the emulator got {sent}, expected {row.calls} request(s)"
        if single_attempt is not None and any(
            note.startswith("Gave up") for note in getattr(error, "__notes__", ())
        ):
            problems["attempts"] = "the error was retried until the policy gave up"
    if single_attempt is not None:
        retried = [
            record.getMessage()
            for record in single_attempt.records
            if record.name == "airflow_provider_clarifai.retry"
        ]
        if retried:
            problems["attempts"] = f"retried: {retried}"

    expected = dict(before)
    for run_id, state in row.changes.items():
        key = (USER, APP, PIPELINE, "v1", run_id)
        assert expected[key] != state, f"{row.id}: {run_id} is {state} already; the row proves nothing"
        expected[key] = state
    after = run_states(emulator)
    if after != expected:
        diff = {key: (expected.get(key), after.get(key)) for key in expected.keys() | after.keys()}
        problems["state"] = str({key: pair for key, pair in diff.items() if pair[0] != pair[1]})
    if writes(emulator) != row.writes:
        problems["writes"] = f"{writes(emulator)} write request(s), expected {row.writes}"

    assert not problems, "\n".join(f"{check}: {problem}" for check, problem in problems.items())


def test_the_table_covers_every_surface():
    assert len(ROWS) >= 36
    assert len({row.id for row in ROWS}) == len(ROWS)
    assert {row.surface for row in ROWS} == set(SURFACES)
    for row in ROWS:
        assert row.id.startswith(row.surface), row.id
        assert set(row.modes) <= {"sync", "asyncio"}, row.id
        assert row.wrong != row.fix, row.id
    # At least one mixed batch, where the good runs change and the bad ones do not.
    assert any(row.changes for row in ROWS)


# Not bad input, by design --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "run_ids", "outcomes", "calls"),
    [
        # An upstream task that changed no runs hands on an empty list: nothing to do, not an error.
        pytest.param(Pause, [], [], 0, id="pause-empty-list"),
        # A run already in the target state is reported as such; resuming a running run is not an error.
        pytest.param(Resume, ["run-running"], ["already_in_target"], 1, id="resume-running-run"),
        pytest.param(Cancel, ["run-cancelled"], ["already_in_target"], 1, id="cancel-cancelled-run"),
    ],
)
def test_deliberate_no_ops_succeed_and_change_nothing(
    operator, run_ids, outcomes, calls, emulator, tmp_path, monkeypatch, unused_tcp_port
):
    env = Env(emulator, tmp_path, monkeypatch, "sync", closed_port=unused_tcp_port)
    before = run_states(emulator)

    records = env.run(operator, run_ids=run_ids)

    assert [record["outcome"] for record in records] == outcomes
    assert run_states(emulator) == before
    assert emulator.requests.count() == calls
    assert writes(emulator) == 0
