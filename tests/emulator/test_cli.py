"""``python -m airflow_provider_clarifai.emulator`` as a real process."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2

from airflow_provider_clarifai.emulator.__main__ import banner, main
from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

STARTUP_TIMEOUT = 120.0
SCENARIO = """
rate_limit_per_second: 1000
tokens:
  - {token: cli-token, user_id: cli-user}
users:
  - id: cli-user
    apps:
      - id: cli-app
        pipelines:
          - id: cli-pipeline
            versions:
              - id: v1
                post_script: {queued_seconds: 10, running_seconds: 50, outcome: JOB_FAILED}
"""


def wait_for_file(path: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        if process.poll() is not None:
            raise AssertionError(f"the emulator exited early: {process.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"no ready file after {STARTUP_TIMEOUT} s")


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture
def emulator_process(tmp_path: Path, scenario_file: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """The emulator as a process; the stats file goes next to the ready file's folder, as ``stats.json``."""
    ready_file = tmp_path / "ready" / "address"
    command = [
        sys.executable,
        "-m",
        "airflow_provider_clarifai.emulator",
        "--port",
        "0",
        "--scenario",
        str(scenario_file),
        "--ready-file",
        str(ready_file),
        "--time-scale",
        "200",
        "--stats-file",
        str(tmp_path / "stats.json"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process, ready_file
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=120)


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_until_signalled(
    emulator_process: tuple[subprocess.Popen[str], Path], stop_signal: signal.Signals
) -> None:
    process, ready_file = emulator_process
    stats_file = ready_file.parent.parent / "stats.json"
    address = wait_for_file(ready_file, process)
    host, _, port = address.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0

    channel = ClarifaiChannel.get_insecure_grpc_channel(base=host, port=int(port))
    with channel:
        stub = service_pb2_grpc.V2Stub(channel)
        metadata = (("authorization", "Key cli-token"),)
        user = stub.GetUser(
            service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me")),
            metadata=metadata,
            timeout=60,
        )
        assert user.user.id == "cli-user"
        ids = {
            "user_app_id": resources_pb2.UserAppIDSet(user_id="cli-user", app_id="cli-app"),
            "pipeline_id": "cli-pipeline",
            "pipeline_version_id": "v1",
        }
        posted = stub.PostPipelineVersionRuns(
            service_pb2.PostPipelineVersionRunsRequest(
                pipeline_version_runs=[resources_pb2.PipelineVersionRun(id="r1")], **ids
            ),
            metadata=metadata,
            timeout=60,
        )
        assert posted.status.code == status_code_pb2.SUCCESS
        # 60 emulated seconds at --time-scale 200 take 0.3 real seconds.
        deadline = time.monotonic() + 120
        state = None
        reads = 0
        while time.monotonic() < deadline:
            reads += 1
            response = stub.GetPipelineVersionRun(
                service_pb2.GetPipelineVersionRunRequest(pipeline_version_run_id="r1", **ids),
                metadata=metadata,
                timeout=60,
            )
            state = response.pipeline_version_run.orchestration_status.status.code
            if state == status_code_pb2.JOB_FAILED:
                break
            time.sleep(0.05)
        assert state == status_code_pb2.JOB_FAILED
        missing = stub.GetPipelineVersionRun(
            service_pb2.GetPipelineVersionRunRequest(pipeline_version_run_id="nope", **ids),
            metadata=metadata,
            timeout=60,
        )
        assert missing.status.code != status_code_pb2.SUCCESS
        missing_code = status_code_pb2.StatusCode.Name(missing.status.code)
    assert not stats_file.exists(), "the stats are written when the emulator stops, not before"

    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    first, *banner_lines = stdout.splitlines()
    assert first == f"Clarifai emulator listening on {address}"
    banner_text = "\n".join(banner_lines)
    assert f"http://{address}  (plain text, no TLS)" in banner_text
    assert "cli-token  user cli-user, scopes read, write" in banner_text
    assert (
        "cli-user/cli-app/cli-pipeline/v1  (a posted run is queued 10 s, running 50 s, then JOB_FAILED)"
        in (banner_text)
    )
    assert "stopped" in stderr
    assert not ready_file.exists()
    # Every request is counted, by method and by outcome; they came one at a time.
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert stats["requests"] == reads + 3
    assert stats["by_method"] == {
        "GetUser": 1,
        "PostPipelineVersionRuns": 1,
        "GetPipelineVersionRun": reads + 1,
    }
    assert stats["by_grpc_code"] == {"OK": reads + 3}
    assert stats["by_code"] == {"SUCCESS": reads + 2, missing_code: 1}
    assert stats["peak_in_flight"] == 1


def test_invalid_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens: [{token: t, user_id: u}]\nusers: [{id: u, apps: [{id: 5}]}]\n", encoding="utf-8")
    assert main(["--port", "0", "--scenario", str(bad)]) == 2
    assert "users[0].apps[0].id" in capsys.readouterr().err


def test_missing_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", "--scenario", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read scenario file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"), [("--time-scale", "0"), ("--rate-limit", "-1"), ("--max-workers", "0")]
)
def test_bad_numbers_exit_2(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", option, value]) == 2
    assert option in capsys.readouterr().err


@pytest.mark.integration
def test_port_in_use_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with ClarifaiEmulator(clock=ManualClock()) as running:
        ready_file = tmp_path / "ready"
        stats_file = tmp_path / "stats.json"
        assert (
            main(
                [
                    *("--port", str(running.port)),
                    *("--ready-file", str(ready_file), "--stats-file", str(stats_file)),
                ]
            )
            == 1
        )
    assert "cannot bind" in capsys.readouterr().err
    assert not ready_file.exists()
    # Nothing was served, so there is nothing to report.
    assert not stats_file.exists()
    # main() must leave the caller's signal handlers as they were.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


# TLS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_tls_flags_go_together(given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", given, str(tmp_path / "x.pem")]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_unreadable_tls_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.pem")
    assert main(["--port", "0", "--tls-cert", missing, "--tls-key", missing]) == 2
    assert f"cannot read tls_key {missing!r}" in capsys.readouterr().err


@pytest.mark.integration
def test_a_certificate_and_key_that_do_not_match_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import make_pki

    pki = make_pki(tmp_path / "pki")
    assert main(["--port", "0", "--tls-cert", str(pki.cert), "--tls-key", str(pki.other_host_key)]) == 1
    assert "not a matching PEM certificate and private key" in capsys.readouterr().err


@pytest.mark.integration
def test_serves_tls(tmp_path: Path, scenario_file: Path) -> None:
    import grpc

    from tests.conftest import make_pki

    pki = make_pki(tmp_path / "pki")
    ready_file = tmp_path / "ready"
    command = [
        *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", "0"),
        *("--scenario", str(scenario_file), "--ready-file", str(ready_file)),
        *("--tls-cert", str(pki.cert), "--tls-key", str(pki.key)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = wait_for_file(ready_file, process)
        credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        with grpc.secure_channel(address, credentials) as channel:
            get_user = channel.unary_unary(
                "/clarifai.api.V2/GetUser",
                request_serializer=service_pb2.GetUserRequest.SerializeToString,
                response_deserializer=service_pb2.SingleUserResponse.FromString,
            )
            user = get_user(
                service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me")),
                metadata=(("authorization", "Key cli-token"),),
                timeout=60,
            )
        assert user.user.id == "cli-user"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    first, *banner_lines = stdout.splitlines()
    assert first == f"Clarifai emulator listening on {address} (TLS)"
    assert f"https://{address}  (TLS (clients trust {pki.cert}))" in "\n".join(banner_lines)


# The banner ---------------------------------------------------------------------------------------------


def connection_of(banner_text: str) -> tuple[str, dict[str, object]]:
    """The variable the banner's ``export`` line sets, and its value, read as a shell would."""
    (line,) = [line for line in banner_text.splitlines() if line.strip().startswith("export ")]
    name, _, value = shlex.split(line)[1].partition("=")
    return name, json.loads(value)


@pytest.mark.integration
def test_the_banner_shows_what_the_default_scenario_loaded_and_its_runs_stay_put(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    command = [
        *(sys.executable, "-m", "airflow_provider_clarifai.emulator", "--port", "0"),
        # A minute of emulated time per real millisecond: the runs would be long over, were they scripted.
        *("--ready-file", str(ready_file), "--time-scale", "60000"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = wait_for_file(ready_file, process)
        time.sleep(0.2)  # 12,000 emulated seconds
        host, _, port = address.rpartition(":")
        with ClarifaiChannel.get_insecure_grpc_channel(base=host, port=int(port)) as channel:
            stub = service_pb2_grpc.V2Stub(channel)
            states = {}
            for run_id in ("run-queued", "run-running", "run-paused"):
                response = stub.GetPipelineVersionRun(
                    service_pb2.GetPipelineVersionRunRequest(
                        user_app_id=resources_pb2.UserAppIDSet(user_id="demo-user", app_id="pipelines-app"),
                        pipeline_id="nightly-training",
                        pipeline_version_id="v1",
                        pipeline_version_run_id=run_id,
                    ),
                    metadata=(("authorization", "Key emulator-pat-0123456789"),),
                    timeout=60,
                )
                code = response.pipeline_version_run.orchestration_status.status.code
                states[run_id] = status_code_pb2.StatusCode.Name(code)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert states == {"run-queued": "JOB_QUEUED", "run-running": "JOB_RUNNING", "run-paused": "JOB_PAUSED"}
    first, *rest = stdout.splitlines()
    assert first == f"Clarifai emulator listening on {address}"
    banner_text = "\n".join(rest)
    for expected in (
        f"http://{address}  (plain text, no TLS)",
        "default.yaml; emulated time runs 60000x real time; rate limit 15 requests per second per token",
        "emulator-pat-0123456789  user demo-user, scopes read, write",
        "emulator-pat-readonly    user demo-user, scopes read",
        "demo-user/pipelines-app/nightly-training/v1  (a posted run is queued 2 s, running 30 s, then ",
        "run-queued     JOB_QUEUED",
        "run-paused     JOB_PAUSED",
        "run-completed  JOB_COMPLETED",
        "other-user/private-app/private-pipeline/v1",
        "private-run  JOB_RUNNING",
        "or: airflow connections add clarifai_default --conn-json '{",
    ):
        assert expected in banner_text, expected
    assert connection_of(banner_text) == (
        "AIRFLOW_CONN_CLARIFAI_DEFAULT",
        {
            "conn_type": "clarifai",
            "host": f"http://{address}",
            "password": "emulator-pat-0123456789",
            "extra": {},
        },
    )


def test_the_banner_names_the_file_to_trust_and_the_connection_carries_it(tmp_path: Path) -> None:
    from tests.conftest import make_pki

    pki = make_pki(tmp_path / "pki")
    options = {"tls_cert": pki.cert, "tls_key": pki.key, "tls_root_certificates_path": pki.ca}
    with ClarifaiEmulator(SCENARIO, clock=ManualClock(), **options) as emulator:
        text = banner(emulator, time_scale=2, conn_id="my_clarifai")
        assert connection_of(text) == ("AIRFLOW_CONN_MY_CLARIFAI", emulator.airflow_connection())
    assert f"https://{emulator.address}  (TLS (clients trust {pki.ca}))" in text
    assert "emulated time runs 2x real time; rate limit 1000 requests per second per token" in text
    assert "Airflow connection 'my_clarifai':" in text
    assert all(line.startswith("  ") for line in text.splitlines())


def test_the_banner_says_when_there_is_no_rate_limit_and_how_long_posted_runs_live() -> None:
    scenario = {
        "rate_limit_per_second": 0,
        "tokens": [{"token": "t", "user_id": "u"}],
        "users": [
            {
                "id": "u",
                "apps": [
                    {
                        "id": "a",
                        "pipelines": [
                            {
                                "id": "p",
                                "versions": [
                                    {"id": "forever", "post_script": {"running_seconds": None}},
                                    {"id": "held", "post_script": {"queued_seconds": None}},
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    with ClarifaiEmulator(scenario, clock=ManualClock()) as emulator:
        text = banner(emulator)
    assert "no rate limit" in text
    assert "u/a/p/forever  (a posted run is queued 1 s, then running until changed)" in text
    assert "u/a/p/held  (a posted run is queued until changed)" in text
