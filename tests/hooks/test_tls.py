"""TLS end to end on loopback: the hook, the trigger and a deferred sensor against the emulator over TLS.

The certificates are made at run time in ``tmp_path`` (a throwaway CA, a server certificate for 127.0.0.1
and localhost, and the wrong ones each failure needs; ``make_pki`` in tests/conftest.py); none is ever
committed. The emulator fixture serves TLS because the module is marked ``emulator_tls``, which makes the
shared ``clarifai_emulator_options`` (tests/conftest.py) pass the certificates to the plugin's fixture.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.hooks import _tls, _transport
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.retry import RetryPolicy
from tests.conftest import Pki, make_pki
from tests.hooks.conftest import IDS, run_async

# The shared emulator fixture (tests/conftest.py) serves TLS with the shared certificates (pki).
pytestmark = [pytest.mark.integration, pytest.mark.emulator_tls]
pytest_plugins = ["pytester"]

#: Many attempts, fast: were a certificate error retried, the retry log and the error's notes would say.
MANY_ATTEMPTS = RetryPolicy(max_attempts=50, initial_backoff=0.001, max_backoff=0.002, max_elapsed=60)
READER_THREAD = "clarifai-root-certificates"


def define_connection(
    monkeypatch: pytest.MonkeyPatch, emulator: ClarifaiEmulator, conn_id: str, **extra: Any
) -> str:
    """``AIRFLOW_CONN_<ID>`` for ``emulator``, with ``extra`` over its own extras."""
    name, value = emulator.airflow_connection_env(conn_id, conn_extra=extra or None)
    if extra:
        connection = json.loads(value)
        connection["extra"] = {**emulator.airflow_connection()["extra"], **extra}
        value = json.dumps(connection)
    monkeypatch.setenv(name, value)
    return conn_id


# The happy path -------------------------------------------------------------------------------------


def test_the_emulator_serves_tls_and_says_what_to_trust(emulator: ClarifaiEmulator, pki: Pki) -> None:
    assert emulator.tls
    assert emulator.base_url == f"https://127.0.0.1:{emulator.port}"
    connection = emulator.airflow_connection()
    assert connection["extra"] == {"root_certificates_path": str(pki.ca)}
    # The caller's extra wins.
    assert emulator.airflow_connection({"root_certificates_path": "x.pem"})["extra"] == {
        "root_certificates_path": "x.pem"
    }
    name, value = emulator.airflow_connection_env("tls_conn")
    assert name == "AIRFLOW_CONN_TLS_CONN"
    assert json.loads(value)["host"] == emulator.base_url


def test_the_emulator_takes_pem_bytes_and_refuses_half_a_pair(pki: Pki) -> None:
    with pytest.raises(ValueError, match="give both tls_cert and tls_key"):
        ClarifaiEmulator(clock=ManualClock(), tls_cert=pki.cert)
    with pytest.raises(ValueError, match="cannot read tls_cert"):
        ClarifaiEmulator(clock=ManualClock(), tls_cert=pki.ca.parent / "nope.pem", tls_key=pki.key)
    with pytest.raises(ValueError, match="max_message_bytes must be a positive whole number"):
        ClarifaiEmulator(clock=ManualClock(), max_message_bytes=0)
    # PEM bytes: the emulator cannot know a file to trust, so the caller names it.
    with ClarifaiEmulator(
        clock=ManualClock(), tls_cert=pki.cert.read_bytes(), tls_key=pki.key.read_bytes()
    ) as emulator:
        assert emulator.base_url.startswith("https://")
        assert emulator.airflow_connection()["extra"] == {}
        extra = {"root_certificates_path": str(pki.ca)}
        assert emulator.airflow_connection(extra)["extra"] == extra


def test_sync_hook_over_tls(emulator: ClarifaiEmulator, clarifai_connection: str) -> None:
    with ClarifaiHook(clarifai_connection) as hook:
        settings = hook.get_settings()
        assert (settings.use_tls, settings.target) == (True, f"127.0.0.1:{emulator.port}")
        assert hook.get_run(IDS, "run-completed").status_name == "JOB_COMPLETED"
        runs = hook.list_runs(IDS)
    assert "run-running" in {run.run_id for run in runs}
    assert emulator.requests.count("GetPipelineVersionRun") == 1
    assert emulator.requests.count("ListPipelineVersionRuns") >= 1


def test_asyncio_hook_over_tls(emulator: ClarifaiEmulator, clarifai_connection: str) -> None:
    async def both() -> tuple[Any, Any]:
        hook = ClarifaiHook(clarifai_connection)
        return await asyncio.gather(hook.aget_run(IDS, "run-completed"), hook.aget_run(IDS, "run-running"))

    completed, running = run_async(both)
    assert (completed.status_name, running.status_name) == ("JOB_COMPLETED", "JOB_RUNNING")
    assert emulator.requests.count("GetPipelineVersionRun") == 2


def test_localhost_matches_the_certificate_too(
    emulator: ClarifaiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = dict(emulator.airflow_connection(), host=f"https://localhost:{emulator.port}")
    monkeypatch.setenv("AIRFLOW_CONN_BY_NAME", json.dumps(connection))
    with ClarifaiHook("by_name") as hook:
        assert hook.get_run(IDS, "run-completed").status_name == "JOB_COMPLETED"


def test_a_restart_keeps_tls(emulator: ClarifaiEmulator, clarifai_connection: str) -> None:
    port = emulator.port
    emulator.restart()
    assert (emulator.port, emulator.tls, emulator.restarts) == (port, True, 1)
    with ClarifaiHook(clarifai_connection) as hook:
        assert hook.get_run(IDS, "run-completed").status_name == "JOB_COMPLETED"
    assert run_async(lambda: ClarifaiHook(clarifai_connection).aget_run(IDS, "run-running")).status_name == (
        "JOB_RUNNING"
    )


MARKED_TEST = """
import grpc
import pytest
from clarifai_grpc.grpc.api import resources_pb2, service_pb2


TLS = {"tls_cert": "pki/cert.pem", "tls_key": "pki/key.pem", "tls_root_certificates_path": "pki/ca.pem"}


@pytest.mark.clarifai_scenario(**TLS)
def test_tls(clarifai_emulator, clarifai_connection):
    import json, os

    assert clarifai_emulator.base_url.startswith("https://127.0.0.1:")
    extra = json.loads(os.environ["AIRFLOW_CONN_CLARIFAI_DEFAULT"])["extra"]
    with open(extra["root_certificates_path"], "rb") as handle:
        credentials = grpc.ssl_channel_credentials(handle.read())
    with grpc.secure_channel(clarifai_emulator.address, credentials) as channel:
        get_user = channel.unary_unary(
            "/clarifai.api.V2/GetUser",
            request_serializer=service_pb2.GetUserRequest.SerializeToString,
            response_deserializer=service_pb2.SingleUserResponse.FromString,
        )
        request = service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me"))
        metadata = (("authorization", "Key " + clarifai_emulator.token),)
        answer = get_user(request, metadata=metadata, timeout=10)
    assert answer.user.id == "demo-user"


def test_plain_by_default(clarifai_emulator):
    assert clarifai_emulator.base_url.startswith("http://")
"""


def test_the_marker_takes_tls_files_beside_the_test(pytester: pytest.Pytester) -> None:
    make_pki(pytester.path / "pki")
    pytester.makepyfile(test_marked=MARKED_TEST)
    # The inner session declares the plugin, as a user's conftest.py does (nothing loads it otherwise).
    pytester.makeconftest('pytest_plugins = ["airflow_provider_clarifai.emulator.pytest_plugin"]\n')
    args = ["-p", "no:asyncio", "-p", "no:randomly", "-p", "no:cacheprovider"]
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=2)


# The trigger and a deferred sensor ------------------------------------------------------------------


async def test_the_trigger_runs_to_its_event_over_tls(emulator: ClarifaiEmulator) -> None:
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
    from airflow_provider_clarifai.waiting import RunWaitEvent

    trigger = ClarifaiPipelineRunTrigger(
        clarifai_conn_id="clarifai_default",
        user_id=IDS.user_id,
        app_id=IDS.app_id,
        pipeline_id=IDS.pipeline_id,
        pipeline_version_id=IDS.pipeline_version_id,
        run_id="run-running",
        poll_interval=0.01,
        retry_policy={"initial_backoff": 0.01, "max_backoff": 0.05, "max_elapsed": 10.0},
    )

    async def finish_after_two_reads() -> None:
        seen = await asyncio.to_thread(
            emulator.requests.wait_for,
            lambda records: sum(record.method == "GetPipelineVersionRun" for record in records) >= 2,
            10,
        )
        assert seen
        emulator.clock.advance(3600)

    async def drain() -> list[RunWaitEvent]:
        try:
            return [RunWaitEvent.from_payload(event.payload) async for event in trigger.run()]
        finally:
            await _transport.close_async_endpoints()

    events, _ = await asyncio.gather(drain(), finish_after_two_reads())
    (event,) = events
    assert event.status.value == "success"
    assert event.run is not None and event.run["status"] == "JOB_COMPLETED"


async def test_a_wait_without_a_deadline_ends_on_an_untrusted_certificate(
    emulator: ClarifaiEmulator, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the handshake failure was "could not reach", retried for ever by a wait without a deadline."""
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger
    from airflow_provider_clarifai.waiting import RunWaitEvent

    conn_id = define_connection(monkeypatch, emulator, "wrong_ca", root_certificates_path=str(pki.other_ca))
    trigger = ClarifaiPipelineRunTrigger(
        clarifai_conn_id=conn_id,
        user_id=IDS.user_id,
        app_id=IDS.app_id,
        pipeline_id=IDS.pipeline_id,
        pipeline_version_id=IDS.pipeline_version_id,
        run_id="run-running",
        poll_interval=0.01,
        retry_policy=MANY_ATTEMPTS.to_dict(),
    )
    try:
        events = [RunWaitEvent.from_payload(event.payload) async for event in trigger.run()]
    finally:
        await _transport.close_async_endpoints()
    (event,) = events
    assert (event.status.value, event.error_class) == ("error", "ClarifaiConfigurationError")
    assert "is not trusted" in event.message


def test_a_deferred_sensor_in_a_dag_over_tls(
    emulator: ClarifaiEmulator, dag_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow_dags import write_dag
    from tests.sensors import dag_test
    from tests.sensors.test_clarifai import sensor_dag

    # The run finishes just before the second read answers: the sensor's first look (in the task) sees it
    # running and defers, the trigger's look sees it done.
    backend = emulator.backend
    original = backend.get_run
    reads = []

    def get_run(caller: str, ref: Any, run_id: str) -> Any:
        reads.append(run_id)
        if len(reads) == 2:
            emulator.clock.advance(3600)
        return original(caller, ref, run_id)

    monkeypatch.setattr(backend, "get_run", get_run)
    path = write_dag(
        dag_folder, sensor_dag("clarifai_tls_deferred", "deferrable", [("wait", "run-running", None, {})])
    )

    result = dag_test(path, "clarifai_tls_deferred")

    assert result.task_states == {"wait": "success"}
    assert len(reads) >= 2


# Certificate problems: configuration errors, not retried --------------------------------------------


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The retry policy's "failed (attempt n of m) ... Retrying" lines."""
    return [record for record in caplog.records if record.name == "airflow_provider_clarifai.retry"]


def call_once(mode: str, conn_id: str) -> ClarifaiConfigurationError:
    """``get_run`` through the blocking or asyncio hook, with 50 attempts allowed; the error it raises."""
    hook = ClarifaiHook(conn_id, retry_policy=MANY_ATTEMPTS)

    def get_run() -> Any:
        if mode == "sync":
            return hook.get_run(IDS, "run-completed")
        return run_async(lambda: hook.aget_run(IDS, "run-completed"))

    try:
        with pytest.raises(ClarifaiConfigurationError) as raised:
            get_run()
    finally:
        hook.close()
    return raised.value


@pytest.fixture
def other_host_emulator(pki: Pki) -> Iterator[ClarifaiEmulator]:
    """A TLS emulator whose certificate names only "other.example"."""
    with ClarifaiEmulator(
        clock=ManualClock(),
        tls_cert=pki.other_host_cert,
        tls_key=pki.other_host_key,
        tls_root_certificates_path=pki.ca,
    ) as emulator:
        yield emulator


@pytest.fixture
def plaintext_emulator() -> Iterator[ClarifaiEmulator]:
    with ClarifaiEmulator(clock=ManualClock()) as emulator:
        yield emulator


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_a_certificate_from_another_ca_is_not_trusted(
    mode: str,
    emulator: ClarifaiEmulator,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn_id = define_connection(monkeypatch, emulator, "wrong_ca", root_certificates_path=str(pki.other_ca))
    caplog.set_level(logging.WARNING)

    error = call_once(mode, conn_id)

    message = str(error)
    assert f"The TLS certificate of 127.0.0.1:{emulator.port} is not trusted" in message
    assert "unable to get local issuer certificate" in message
    assert "root_certificates_path" in message
    assert not retry_records(caplog)
    assert not getattr(error, "__notes__", [])
    assert emulator.requests.count() == 0


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_a_certificate_for_another_host_is_refused(
    mode: str,
    other_host_emulator: ClarifaiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn_id = define_connection(monkeypatch, other_host_emulator, "other_host")
    caplog.set_level(logging.WARNING)

    error = call_once(mode, conn_id)

    assert "is not valid for the host name 127.0.0.1 (hostname verification failed)" in str(error)
    assert "subject alternative name" in str(error)
    assert not retry_records(caplog)
    assert not getattr(error, "__notes__", [])


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_https_to_a_plaintext_server_says_to_use_http(
    mode: str,
    plaintext_emulator: ClarifaiEmulator,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = dict(
        plaintext_emulator.airflow_connection({"root_certificates_path": str(pki.ca)}),
        host=f"https://127.0.0.1:{plaintext_emulator.port}",
    )
    monkeypatch.setenv("AIRFLOW_CONN_HTTPS_TO_HTTP", json.dumps(connection))
    caplog.set_level(logging.WARNING)

    error = call_once(mode, "https_to_http")

    assert "did not answer with TLS" in str(error)
    assert "http://HOST:PORT" in str(error)
    assert not retry_records(caplog)


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
@pytest.mark.parametrize(
    ("roots", "phrase"),
    [
        ("not_pem", "holds no PEM certificate"),
        ("missing", "Cannot read root certificates"),
        ("corrupt", "certificate 1 of 1 is not a valid PEM certificate"),
        ("der", "binary (DER) certificate"),
    ],
)
def test_bad_root_files_are_refused_before_anything_is_sent(
    mode: str,
    roots: str,
    phrase: str,
    emulator: ClarifaiEmulator,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = {"not_pem": pki.not_pem, "missing": tmp_path / "missing.pem"}.get(roots, tmp_path / f"{roots}.pem")
    if roots == "corrupt":
        path.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    elif roots == "der":
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        path.write_bytes(
            x509.load_pem_x509_certificate(pki.ca.read_bytes()).public_bytes(serialization.Encoding.DER)
        )
    conn_id = define_connection(monkeypatch, emulator, "bad_roots", root_certificates_path=str(path))
    caplog.set_level(logging.WARNING)

    error = call_once(mode, conn_id)

    assert phrase in str(error)
    assert "Fix the connection's root_certificates_path" in str(error)
    assert not retry_records(caplog)
    assert emulator.requests.count() == 0


# The root certificates file is read off the event loop ---------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO standing in for a file on a hung network mount: ``open()`` blocks until a writer comes.

    Afterwards, a reader still blocked on it is released (it reads nothing), so no thread outlives the
    test.
    """
    path = tmp_path / "hung-ca.pem"
    os.mkfifo(path)
    try:
        yield path
    finally:
        # A reader thread may not have reached open() yet when first released: release until its read
        # is over (it then leaves the shared table), so no thread stays blocked into later tests.
        deadline = time.monotonic() + 10
        while str(path) in _tls._reads and time.monotonic() < deadline:
            release_reader(path)
            time.sleep(0.01)


def release_reader(path: Path, data: bytes = b"") -> None:
    """Let a reader blocked opening ``path`` go on, reading ``data``; a no-op when no reader waits."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody is reading
        return
    try:
        os.set_blocking(descriptor, True)
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


def replace_with_file(path: Path, source: Path) -> None:
    """Put a regular file with ``source``'s content where ``path`` (a FIFO) was: the mount is fixed."""
    path.unlink()
    path.write_bytes(source.read_bytes())


def reader_threads() -> int:
    return sum(thread.name == READER_THREAD for thread in threading.enumerate())


async def heartbeat_until(condition: Any, ticks: list[int], at_least: int = 20) -> None:
    """Tick on the loop (each tick a real pass through it) until ``condition()`` and ``at_least`` ticks."""
    while not (condition() and len(ticks) >= at_least):
        ticks.append(1)
        await asyncio.sleep(0.001)


def test_a_hung_root_file_does_not_block_the_loop(
    emulator: ClarifaiEmulator, pki: Pki, fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = define_connection(monkeypatch, emulator, "hung_roots", root_certificates_path=str(fifo))
    monkeypatch.setattr(_tls, "ROOT_CERTIFICATES_READ_TIMEOUT", 600.0)

    async def main() -> tuple[int, int, list[str]]:
        hooks = [ClarifaiHook(conn_id) for _ in range(10)]
        calls = [asyncio.create_task(hook.aget_run(IDS, "run-completed")) for hook in hooks]
        ticks: list[int] = []
        # While the read hangs, the loop goes on: a heartbeat ticks, and the calls are still waiting.
        await heartbeat_until(lambda: reader_threads() == 1, ticks)
        assert not any(call.done() for call in calls)
        readers = reader_threads()
        # The file becomes readable: every call completes, over one channel.
        await asyncio.to_thread(release_reader, fifo, pki.ca.read_bytes())
        runs = await asyncio.gather(*calls)
        return readers, _transport.async_endpoint_count(), [run.status_name for run in runs]

    readers, channels, states = run_async(main)
    assert readers == 1, "ten callers share one read"
    assert channels == 1
    assert states == ["JOB_COMPLETED"] * 10


def test_a_hung_root_file_fails_clearly_when_its_bound_passes(
    emulator: ClarifaiEmulator, fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = define_connection(monkeypatch, emulator, "hung_roots", root_certificates_path=str(fifo))
    monkeypatch.setattr(_tls, "ROOT_CERTIFICATES_READ_TIMEOUT", 0.05)

    with pytest.raises(ClarifaiConfigurationError) as raised:
        run_async(lambda: ClarifaiHook(conn_id, retry_policy=MANY_ATTEMPTS).aget_run(IDS, "run-completed"))

    message = str(raised.value)
    assert f"Reading root certificates {str(fifo)!r} did not finish within 0.05 s" in message
    assert "fix the connection's root_certificates_path" in message
    assert emulator.requests.count() == 0


async def test_the_read_bound_is_a_parameter_too(pki: Pki, fifo: Path) -> None:
    settings = _transport.settings_from_connection(
        "c", "https://127.0.0.1:1", None, "pat", {"root_certificates_path": str(fifo)}
    )
    with pytest.raises(ClarifaiConfigurationError, match=r"did not finish within 0\.01 s"):
        await _transport.async_endpoint(settings, read_timeout=0.01)
    # A later caller waits on the same hung read rather than starting another thread.
    with pytest.raises(ClarifaiConfigurationError, match=r"did not finish within 0\.01 s"):
        await _transport.async_endpoint(settings, read_timeout=0.01)
    assert reader_threads() == 1
    # The hung read ends; once the path holds a readable file, the next caller reads it and gets its channel.
    await asyncio.to_thread(release_reader, fifo)
    await heartbeat_until(lambda: reader_threads() == 0, [], at_least=1)
    await asyncio.to_thread(replace_with_file, fifo, pki.ca)
    try:
        endpoint = await _transport.async_endpoint(settings, read_timeout=5)
        assert endpoint is await _transport.async_endpoint(settings)
    finally:
        await _transport.close_async_endpoints()
