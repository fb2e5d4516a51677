"""Secrets: every example DAG runs with a recognisable token, and nothing the runs leave behind holds it.

The emulator serves the default scenario with its tokens replaced by canaries (``pat-CANARY-<random>``).
Every DAG in ``example_dags/`` runs with ``dag.test()`` in a real metadata DB, once with the canary and
once with a wrong canary (a token the emulator rejects), and a trigger and a hook also meet a wrong token
and an unreachable host. Then everything produced is searched for both canaries, raw and encoded (URL
quoting, hex, base64 at every alignment): the task and trigger logs (captured streams, ``logging``
records, files under the Airflow home), every table of the metadata DB as stored, the trigger rows'
decrypted kwargs, the task instances' ``next_kwargs``, the runs' XComs and rendered template fields, the
exceptions the tasks failed with, and the ``repr``/``str`` of the hooks, their connection settings, the
tasks, the triggers (and their serialized kwargs) and the Connection. Zero hits are allowed.

Airflow's secrets masker is switched off while the DAGs run: it would hide a token the provider wrote
into a log, and the point is that the provider writes none (the masker does not cover XComs, trigger rows
or exception messages in any case).

The scan can fail: a test plants the canary in every encoding and checks the scanner finds it, the
emulator's request log shows the canary was really sent (and accepted; the wrong one rejected), and each
source is checked to hold what the runs produced (run ids, log lines, XCom values), so an empty or
mis-read source cannot pass for a clean one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import pickle
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

import airflow_provider_clarifai.emulator as emulator_package
from airflow_provider_clarifai.exceptions import ClarifaiError
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.retry import RetryPolicy
from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
from tests.airflow_dags import AIRFLOW_3, write_dag
from tests.example_dags.conftest import EXAMPLE_DAGS
from tests.sensors import RECORD_FAILURES, DagTestOutcome, dag_test, failures

#: A token nobody would write by accident; random per session, so no earlier run can explain a hit. The
#: "+" and "/" make its URL-quoted form differ from the raw one.
CANARY = f"pat-CANARY-{secrets.token_hex(10)}+/x"
#: A token the emulator does not know: the failing paths send it. It does not contain CANARY.
WRONG_CANARY = f"pat-WRONGCANARY-{secrets.token_hex(10)}+/x"

VERSION = ("demo-user", "pipelines-app", "nightly-training", "v1")
IDS = PipelineVersionIds(*VERSION)
KNOWN_EXAMPLES = {
    "example_clarifai_cancel_running",
    "example_clarifai_gating",
    "example_clarifai_maintenance_window",
    "example_clarifai_nodepool_maintenance",
    "example_clarifai_start_and_monitor",
}
#: Parameters that make a DAG finish in seconds (as the example DAGs' own tests run them); a new example
#: DAG runs with its defaults until it is added here.
RUN_CONF: dict[str, dict[str, Any]] = {
    "example_clarifai_maintenance_window": {"window_seconds": 1},
    "example_clarifai_nodepool_maintenance": {"window_seconds": 1},
    "example_clarifai_cancel_running": {"run_ids": ["run-paused", "run-completed"]},
    "example_clarifai_start_and_monitor": {"learning_rate": "0.005", "epochs": "3"},
}
#: The emulator's clock for each DAG, as in the example DAGs' own tests: runs that must end do so in about a
#: second at 50 times real time; the DAGs that pause, resume and cancel runs see a clock that stands still
#: (a run that ended between listing and cancelling would be a race, not a leak).
TIME_SCALE: dict[str, float | None] = {
    "example_clarifai_maintenance_window": None,
    "example_clarifai_cancel_running": None,
    "example_clarifai_nodepool_maintenance": None,
}


def canary_scenario() -> dict[str, Any]:
    """The bundled "scripted" scenario (the default one's runs, ending on their own, as the example DAGs'
    waits need) with every token replaced by a canary (the first one is the emulator's)."""
    path = Path(emulator_package.__file__).parent / "scenarios" / "scripted.yaml"
    scenario = yaml.safe_load(path.read_text())
    for index, token in enumerate(scenario["tokens"]):
        token["token"] = CANARY if index == 0 else f"{CANARY}-{index}"
    return scenario


pytestmark = [pytest.mark.e2e]


# The scanner ------------------------------------------------------------------------------------------


def encoded_forms(secret: str) -> dict[str, str]:
    """The secret as it could appear in text: raw, URL-quoted, hex, and base64 (standard and URL-safe).

    Inside a longer base64 text the secret's encoding depends on its byte offset modulo 3, so each of the
    three alignments is listed, cut to the characters that depend on the secret's bytes only.
    """
    raw = secret.encode()
    forms = {"raw": secret, "url-quoted": quote(secret, safe=""), "url-quoted-plus": quote_plus(secret)}
    forms["hex"] = raw.hex()
    for offset in range(3):
        start = (8 * offset + 5) // 6  # the first character with no bit of the bytes before the secret
        end = 8 * (offset + len(raw)) // 6  # past the last character with no bit of the bytes after it
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            forms[f"{name}@{offset}"] = encode(b"\0" * offset + raw).decode()[start:end]
    unique: dict[str, str] = {}
    for name, form in forms.items():
        if form not in unique.values():
            unique[name] = form
    return unique


def find_secret(text: str, secret: str) -> list[str]:
    """The forms of ``secret`` that occur in ``text`` (the raw secret also in any letter case)."""
    found = [name for name, form in encoded_forms(secret).items() if form in text]
    if "raw" not in found and secret.lower() in text.lower():
        found.append("raw (other case)")
    return found


def scan(sources: Mapping[str, str], *secrets_: str) -> dict[str, list[str]]:
    """Every source in which any of ``secrets_`` occurs, with the forms found."""
    hits: dict[str, list[str]] = {}
    for name, text in sources.items():
        for secret in secrets_:
            for form in find_secret(text, secret):
                hits.setdefault(name, []).append(f"{secret[:14]}...: {form}")
    return hits


def as_text(value: Any) -> str:
    """A DB value or Python object as searchable text; bytes both decoded and as their repr."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return data.decode("utf-8", "replace") + " " + repr(data)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def exception_text(error: BaseException) -> str:
    """Everything an exception shows: message, repr, attributes, the whole chain's traceback, pickle."""
    parts = [str(error), repr(error), repr(vars(error)), *traceback.format_exception(error)]
    try:
        parts.append(repr(pickle.dumps(error)))
    except Exception as unpicklable:  # the exception itself must cross processes; say so if it cannot
        parts.append(f"unpicklable: {unpicklable!r}")
    return "\n".join(parts)


def test_the_scanner_finds_the_token_in_every_form_and_nothing_in_clean_text():
    for secret in (CANARY, WRONG_CANARY):
        for name, form in encoded_forms(secret).items():
            assert name in find_secret(f"prefix {form} suffix", secret)
        # Base64 of a larger text holding the token, at each byte alignment.
        for prefix in ("", "a", "ab", "abc"):
            blob = json.dumps({"password": prefix + secret, "x": 1}).encode()
            assert find_secret(base64.b64encode(blob).decode(), secret)
            assert find_secret(base64.urlsafe_b64encode(blob).decode(), secret)
        assert find_secret(f"Key {secret.upper()}", secret) == ["raw (other case)"]
        assert find_secret(bytes(secret, "utf-8").hex(), secret) == ["hex"]
    # A real Airflow object that does hold the token: the connection's URI (URL-quoted password).
    from airflow.models.connection import Connection

    uri = Connection(conn_id="c", conn_type="clarifai", host="http://h:1", password=CANARY).get_uri()
    assert scan({"uri": uri}, CANARY) == {"uri": [f"{CANARY[:14]}...: url-quoted"]}
    # The two canaries are told apart, and text without them is clean.
    assert scan({"wrong": WRONG_CANARY}, CANARY) == {}
    assert scan({"clean": "pat-CANARY- Key *** " + CANARY[:-1]}, CANARY, WRONG_CANARY) == {}


# Collecting what the runs produce -------------------------------------------------------------------


@pytest.fixture
def strict_logs(monkeypatch):
    """Switch Airflow's secrets masker off, so a token the provider logs stays visible to the scan."""
    import importlib

    probe = f"probe-{secrets.token_hex(8)}"
    patched = []
    for module_name in (
        "airflow.utils.log.secrets_masker",  # Airflow 2
        "airflow._shared.secrets_masker.secrets_masker",  # Airflow 3
        "airflow.sdk._shared.secrets_masker.secrets_masker",
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        monkeypatch.setattr(module.SecretsMasker, "add_mask", lambda self, secret, name=None: None)
        module.mask_secret(probe)
        assert module.redact(probe) == probe, module_name
        patched.append(module_name)
    assert patched


@pytest.fixture
def built(monkeypatch) -> dict[str, list[Any]]:
    """Every ClarifaiHook and ClarifaiPipelineRunTrigger constructed during the test."""
    made: dict[str, list[Any]] = {"hooks": [], "triggers": []}
    for key, cls in (("hooks", ClarifaiHook), ("triggers", ClarifaiPipelineRunTrigger)):
        original = cls.__init__

        def recording_init(self, *args, _original=original, _key=key, **kwargs):
            _original(self, *args, **kwargs)
            made[_key].append(self)

        monkeypatch.setattr(cls, "__init__", recording_init)
    return made


#: Started by asset events, which dag.test cannot make: tests/e2e/test_event_driven.py runs it in a real
#: Airflow and scans that installation for the token.
EVENT_DRIVEN = {"example_clarifai_on_run_completed"}


def example_dag_ids() -> dict[str, Path]:
    """Every DAG defined in example_dags/*.py, by id: a new example is scanned without a change here."""
    import importlib.util

    found: dict[str, Path] = {}
    for path in sorted(EXAMPLE_DAGS.glob("*.py")):
        if path.stem in EVENT_DRIVEN:
            continue
        spec = importlib.util.spec_from_file_location(f"clarifai_secrets_scan_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            dag_id = getattr(value, "dag_id", None)
            if isinstance(dag_id, str) and hasattr(value, "test") and hasattr(value, "tasks"):
                found[dag_id] = path
    return found


def connection_env(emulator: Any, password: str, host: str | None = None) -> str:
    conn = emulator.airflow_connection()
    conn["password"] = password
    if host is not None:
        conn["host"] = host
    return json.dumps(conn)


def recorder(folder: Path) -> Callable[[dict[str, Any]], None]:
    """A failure callback writing what RECORD_FAILURES writes, for DAGs whose files are not ours."""

    def record_failure(context: dict[str, Any]) -> None:
        error = context.get("exception")
        ti = context["ti"]
        record = {"dag_id": ti.dag_id, "task_id": ti.task_id, "error": type(error).__name__}
        record["message"] = str(error)
        with (folder / "failures.jsonl").open("a") as out:
            out.write(json.dumps(record) + "\n")

    return record_failure


def prepare(tasks_seen: list[Any], on_failure: Callable[..., None] | None = None) -> Callable[[Any], None]:
    """Read the runs every 0.1 s (never edit the files), keep the tasks for the scan, record failures."""

    def prepare_dag(dag: Any) -> None:
        for task in dag.tasks:
            if hasattr(task, "poke_interval"):
                task.poke_interval = 0.1
            if isinstance(getattr(task, "poll_interval", None), float):
                task.poll_interval = 0.1
            if on_failure is not None:
                task.on_failure_callback = task.on_retry_callback = [on_failure]
            tasks_seen.append(task)

    return prepare_dag


def run_every_example(
    folder: Path, tasks_seen: list[Any], emulators: Emulators, password: str
) -> dict[str, DagTestOutcome]:
    """Each example DAG against a fresh emulator (the runs one DAG cancels are another's to wait for)."""
    outcomes = {}
    for dag_id, path in example_dag_ids().items():
        emulators(password, TIME_SCALE.get(dag_id, 50))
        outcomes[dag_id] = dag_test(
            path, dag_id, prepare=prepare(tasks_seen, recorder(folder)), run_conf=RUN_CONF.get(dag_id)
        )
    return outcomes


def metadata_db_tables() -> dict[str, str]:
    """Every row of every table of the metadata DB, as stored (encrypted columns stay encrypted)."""
    from airflow.utils.session import create_session
    from sqlalchemy import column, inspect, select, table

    tables: dict[str, str] = {}
    with create_session() as session:
        inspector = inspect(session.get_bind())
        for name in inspector.get_table_names():
            columns = [column(info["name"]) for info in inspector.get_columns(name)]
            rows = session.execute(select(table(name, *columns))).fetchall()
            tables[f"db table {name}"] = "\n".join(" | ".join(as_text(v) for v in row) for row in rows)
    return tables


def decoded_rows(runs: list[tuple[str, str]]) -> dict[str, str]:
    """What Airflow's models read back for these runs: trigger kwargs (decrypted), next_kwargs, XComs
    (deserialized) and rendered template fields."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as XComRow  # Airflow 3
    except ImportError:
        from airflow.models.xcom import BaseXCom as XComRow  # Airflow 2

    out: dict[str, list[str]] = {"trigger kwargs": [], "next_kwargs": [], "xcom": [], "rendered fields": []}
    with create_session() as session:
        for trigger in session.query(Trigger).all():
            out["trigger kwargs"].append(f"{trigger.classpath} {as_text(trigger.kwargs)}")
        for dag_id, run_id in runs:
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id):
                out["next_kwargs"].append(f"{ti.task_id} {ti.next_method} {as_text(ti.next_kwargs)}")
            for row in session.query(XComRow).filter_by(dag_id=dag_id, run_id=run_id):
                value = XComRow.deserialize_value(row) if AIRFLOW_3 else row.value
                out["xcom"].append(f"{row.task_id} {row.key} {as_text(value)}")
            for rtif in session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id):
                out["rendered fields"].append(f"{rtif.task_id} {as_text(rtif.rendered_fields)}")
    return {name: "\n".join(lines) for name, lines in out.items()}


def log_files() -> dict[str, str]:
    """Every file under the Airflow home's log folders."""
    from airflow.configuration import conf

    folders = {Path(os.environ["AIRFLOW_HOME"]) / "logs", Path(conf.get("logging", "base_log_folder"))}
    files = {path for folder in folders if folder.is_dir() for path in folder.rglob("*") if path.is_file()}
    return {f"log file {path}": path.read_text(errors="replace") for path in sorted(files)}


def object_texts(hooks: list[Any], triggers: list[Any], tasks: list[Any]) -> dict[str, str]:
    """repr() and str() of the hooks and their settings, the triggers (and what they serialize to, as a
    trigger row would store it), and the tasks with their templated fields."""
    from airflow.models.trigger import Trigger

    texts: dict[str, str] = {}
    # vars() too: an attribute keeping the Connection would show (Airflow 3's Connection repr shows the
    # password), while the settings, which must hold the token, show it as hidden.
    for index, hook in enumerate(hooks):
        settings = hook.get_settings()
        texts[f"hook {index}"] = f"{hook!r} {hook} {settings!r} {settings} {vars(hook)!r}"
    for index, trigger in enumerate(triggers):
        classpath, kwargs = trigger.serialize()
        row = Trigger(classpath=classpath, kwargs=kwargs)
        stored = f"{as_text(row.encrypted_kwargs)} {as_text(row.kwargs)}"
        texts[f"trigger {index}"] = (
            f"{trigger!r} {trigger} {vars(trigger)!r} {classpath} {as_text(kwargs)} {stored}"
        )
    for index, task in enumerate(tasks):
        fields = {name: getattr(task, name, None) for name in task.template_fields}
        texts[f"task {index} {task.task_id}"] = f"{task!r} {task} {as_text(fields)} {vars(task)!r}"
    return texts


def connection_texts(conn_id: str) -> dict[str, str]:
    """repr() and str() of the connection as Airflow's model builds it from the environment."""
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    return {f"connection {conn_id}": f"{conn!r} {conn}"}


#: Run in a real installation's environment by :func:`scan_installation`: its metadata DB as stored, and
#: its trigger rows' kwargs as a triggerer reads them (decrypted).
_DUMP_METADATA_DB = """
import json
from sqlalchemy import column, inspect, select, table
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session

def as_text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace") + " " + repr(bytes(value))
    return value if isinstance(value, str) else repr(value)

out = {}
with create_session() as session:
    inspector = inspect(session.get_bind())
    for name in inspector.get_table_names():
        columns = [column(info["name"]) for info in inspector.get_columns(name)]
        rows = session.execute(select(table(name, *columns))).fetchall()
        out["db table " + name] = "\\n".join(" | ".join(as_text(v) for v in row) for row in rows)
    out["trigger kwargs"] = "\\n".join(json.dumps(t.kwargs, default=repr) for t in session.query(Trigger))
print(json.dumps(out))
"""


def scan_installation(home: Path, env: Mapping[str, str], *secrets_: str) -> dict[str, list[str]]:
    """Scan a real Airflow installation (``tests/e2e``) for ``secrets_``: every file under its home
    (component logs, task logs, the DB file's bytes) and every table of its metadata DB, read in its
    environment.

    :return: the sources with hits (empty when clean).
    """
    import subprocess
    import sys

    files = {
        f"file {path}": path.read_bytes().decode("latin-1") for path in home.rglob("*") if path.is_file()
    }
    assert any("triggerer" in name for name in files), sorted(files)
    dump = subprocess.run(
        [sys.executable, "-c", _DUMP_METADATA_DB], env=dict(env), capture_output=True, text=True, check=True
    )
    tables = json.loads(dump.stdout.strip().splitlines()[-1])
    assert tables.get("db table task_instance"), sorted(tables)
    return scan({**files, **tables}, *secrets_)


# The runs -----------------------------------------------------------------------------------------


class Emulators:
    """Emulators of the canary scenario, stopped at the end."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.started: list[Any] = []

    def __call__(self, password: str, time_scale: float | None = 50) -> Any:
        """Start one and point ``clarifai_default`` at it with ``password``.

        :param time_scale: how much faster than real time its clock runs; ``None`` stops it.
        """
        from airflow_provider_clarifai.emulator.clock import ManualClock, WallClock
        from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

        clock = ManualClock() if time_scale is None else WallClock(scale=time_scale)
        emulator = ClarifaiEmulator(scenario=canary_scenario(), clock=clock).start()
        self.started.append(emulator)
        emulator.backend.set_rate_limit(None)
        assert emulator.token == CANARY
        self.monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_DEFAULT", connection_env(emulator, password))
        return emulator

    def requests(self, since: int = 0) -> list[Any]:
        """What the emulators from the ``since``-th on received."""
        return [record for emulator in self.started[since:] for record in emulator.requests]


@pytest.fixture
def emulators(monkeypatch) -> Iterator[Emulators]:
    started = Emulators(monkeypatch)
    try:
        yield started
    finally:
        for emulator in started.started:
            emulator.stop()


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_with(trigger: ClarifaiPipelineRunTrigger) -> list[Any]:
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints

    try:
        return [event async for event in trigger.run()]
    finally:
        await close_async_endpoints()


async def get_run_async(hook: ClarifaiHook) -> None:
    from airflow_provider_clarifai.hooks._transport import close_async_endpoints

    try:
        await hook.aget_run(IDS, "run-running")
    finally:
        await close_async_endpoints()


def failing_paths(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A trigger and a hook (blocking and asyncio) meeting a wrong token, then an unreachable host (with the
    right token); yields (what, text) for each event, exception and connection-test message."""
    fast = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_elapsed=3.0)
    monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_WRONG", connection_env(emulator, WRONG_CANARY))
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_DOWN", connection_env(emulator, CANARY, down))

    # The wrong token ends the wait at once; an unreachable host is logged and retried until the deadline.
    # The wrong token's deadline is far off: its error ends the wait at its first read, however slow the
    # machine; a deadline that passed before that read would turn the error into a timeout.
    for conn_id, outcome, window in (("clarifai_wrong", "error", 60), ("clarifai_down", "timeout", 1)):
        trigger = ClarifaiPipelineRunTrigger(
            clarifai_conn_id=conn_id,
            **IDS.as_dict(),
            run_id="run-running",
            poll_interval=0.2,
            deadline=time.time() + window,
            retry_policy=fast.to_dict(),
            request_timeout=1,
        )
        (event,) = asyncio.run(wait_with(trigger))
        assert event.payload["status"] == outcome, event.payload
        yield f"trigger event ({conn_id})", f"{event!r} {as_text(event.payload)}"

    for conn_id, expected in (("clarifai_wrong", "ClarifaiAuthError"), ("clarifai_down", "Unavailable")):
        hook = ClarifaiHook(conn_id, retry_policy=fast, timeout=2)
        with pytest.raises(ClarifaiError) as blocking:
            hook.get_run(IDS, "run-running")
        hook.close()
        with pytest.raises(ClarifaiError) as in_loop:
            asyncio.run(get_run_async(ClarifaiHook(conn_id, retry_policy=fast, timeout=2)))
        for how, error in (("blocking", blocking.value), ("asyncio", in_loop.value)):
            assert expected in type(error).__name__, repr(error)
            yield f"{conn_id} {how} exception", exception_text(error)
        yield f"{conn_id} hook", f"{hook!r} {hook} {hook.get_settings()!r}"
        # What the UI's connection test shows.
        ok, message = ClarifaiHook(conn_id).test_connection()
        assert not ok
        yield f"{conn_id} connection test", message


WRONG_TOKEN_DAG = (
    RECORD_FAILURES
    + """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_clarifai.operators.clarifai import (
    ClarifaiPausePipelineRunOperator,
    ClarifaiRunPipelineOperator,
)
from airflow_provider_clarifai.sensors.clarifai import ClarifaiPipelineRunSensor

IDS = dict(
    user_id="demo-user", app_id="pipelines-app", pipeline_id="nightly-training", pipeline_version_id="v1"
)
with DAG(
    dag_id="clarifai_secrets_wrong_token",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    default_args={"on_failure_callback": record_failure, "on_retry_callback": record_failure},
) as dag:
    ClarifaiRunPipelineOperator(task_id="start", deferrable=True, poll_interval=0.1, **IDS)
    ClarifaiPipelineRunSensor(
        task_id="sense_poke", pipeline_version_run_id="run-running", poke_interval=0.1, timeout=5, **IDS
    )
    ClarifaiPipelineRunSensor(
        task_id="sense_deferred", pipeline_version_run_id="run-running", deferrable=True,
        poke_interval=0.1, timeout=5, **IDS,
    )
    ClarifaiPausePipelineRunOperator(task_id="pause", run_ids=["run-running"], **IDS)
"""
)


def test_no_example_dag_leaves_the_token_anywhere(
    emulators, airflow_db, strict_logs, built, tmp_path, caplog, capfd, monkeypatch
):
    caplog.set_level(logging.INFO)
    # The nodepool example's drain waits at most this long (run-forever never ends): 2 s, not 10 minutes.
    monkeypatch.setenv("CLARIFAI_EXAMPLE_DRAIN_SECONDS", "2")
    dag_ids = example_dag_ids()
    assert KNOWN_EXAMPLES <= set(dag_ids), sorted(dag_ids)
    tasks_seen: list[Any] = []

    # 1. Every example DAG with the canary: they must work, or the token was never really used.
    good = run_every_example(tmp_path, tasks_seen, emulators, CANARY)
    for dag_id in KNOWN_EXAMPLES:
        assert good[dag_id].state == "success", (dag_id, good[dag_id].task_states)
    assert failures(tmp_path) == []
    sent_with_canary = emulators.requests()
    assert len(sent_with_canary) >= 10
    assert all(record.token_valid for record in sent_with_canary)
    good_emulators = len(emulators.started)

    # 2. The same DAGs, a small DAG of every task kind, a trigger and hooks with the wrong canary; a hook
    # whose host is unreachable.
    bad = run_every_example(tmp_path, tasks_seen, emulators, WRONG_CANARY)
    emulator = emulators(WRONG_CANARY)
    path = write_dag(tmp_path / "wrong_dag", WRONG_TOKEN_DAG)
    bad["clarifai_secrets_wrong_token"] = dag_test(
        path, "clarifai_secrets_wrong_token", prepare=prepare(tasks_seen)
    )
    for dag_id, outcome in bad.items():
        assert outcome.state == "failed", (dag_id, outcome.task_states)
    failed = failures(tmp_path) + failures(path.parent)
    # Each DAG failed on the token, with the provider's error: the wrong token was sent and rejected.
    refused = {
        (record.get("dag_id", "clarifai_secrets_wrong_token"), record["task_id"])
        for record in failed
        if record["error"] == "ClarifaiAuthError"
    }
    assert {dag_id for dag_id, _ in refused} == set(bad), failed
    assert {"start", "sense_poke", "sense_deferred", "pause"} <= {task_id for _, task_id in refused}
    direct = dict(failing_paths(emulator, monkeypatch))
    sent_wrong = emulators.requests(since=good_emulators)
    assert sent_wrong and not any(record.token_valid for record in sent_wrong)
    # The UI's connection test with the right token (it answers with the host and the user).
    monkeypatch.setenv("AIRFLOW_CONN_CLARIFAI_GOOD", connection_env(emulator, CANARY))
    ok, message = ClarifaiHook("clarifai_good").test_connection()
    assert ok, message
    direct["clarifai_good connection test"] = message

    # 3. Everything they produced.
    captured = capfd.readouterr()
    runs = [(outcome.dag_id, outcome.run_id) for outcome in [*good.values(), *bad.values()]]
    sources: dict[str, str] = {
        "stdout": captured.out,
        "stderr": captured.err,
        "logging records": caplog.text,
        **log_files(),
        "recorded task failures": as_text(failed),
        **metadata_db_tables(),
        **decoded_rows(runs),
        **object_texts(built["hooks"], built["triggers"], tasks_seen),
        **connection_texts("clarifai_default"),
        **direct,
    }

    # Each source holds what the runs produced: a scan of an empty or wrongly read source would pass.
    logs = captured.out + caplog.text
    assert "model saved" in logs  # a line of the run's log, streamed by the trigger
    assert "CONN_KEY_INVALID" in logs  # the wrong token's rejection, in the task log
    assert "Could not read run run-running, will try again" in logs  # the trigger, host unreachable
    db = "\n".join(text for name, text in sources.items() if name.startswith("db table"))
    assert all(run_id in db for _, run_id in runs)
    assert "run-queued" in sources["xcom"] and "JOB_COMPLETED" in sources["xcom"]
    assert "config-lock.yaml" in sources["rendered fields"]
    assert "0.005" in sources["rendered fields"]  # the rendered input_args of start_training
    if AIRFLOW_3:  # Airflow 2's dag.test runs triggers without storing them
        assert "ClarifaiPipelineRunTrigger" in sources["trigger kwargs"]
    assert len(built["hooks"]) >= 10 and len(built["triggers"]) >= 3
    assert "clarifai_default" in sources["connection clarifai_default"]

    hits = scan(sources, CANARY, WRONG_CANARY)
    assert hits == {}, json.dumps(hits, indent=2)
