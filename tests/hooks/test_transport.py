from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiRequestRejectedError
from airflow_provider_clarifai.hooks import _connection, _tls, _transport
from airflow_provider_clarifai.hooks._connection import parse_api_base, settings_from_connection
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.retry import RetryPolicy
from tests.hooks.conftest import IDS, run_async


@pytest.mark.parametrize(
    ("base", "port", "expected"),
    [
        ("https://api.clarifai.com", None, ("api.clarifai.com:443", True)),
        ("api.clarifai.com", None, ("api.clarifai.com:443", True)),
        ("https://api.example.com:8443", None, ("api.example.com:8443", True)),
        ("http://localhost:50051", None, ("localhost:50051", False)),
        ("http://127.0.0.1", 50051, ("127.0.0.1:50051", False)),
        ("http://[::1]:7000", None, ("[::1]:7000", False)),
        ("  https://api.clarifai.com/  ", None, ("api.clarifai.com:443", True)),
    ],
)
def test_api_base_follows_clarifais_url_convention(base, port, expected):
    assert parse_api_base(base, port, "conn") == expected


@pytest.mark.parametrize(
    ("base", "phrase"),
    [
        ("ftp://host", "invalid host"),
        ("http://", "invalid host"),
        ("http://localhost", "needs a port"),
        ("https://api.clarifai.com/v2", "must not contain a path"),
        ("http://localhost:99999", "invalid port"),
        ("http://localhost:0", "invalid port"),
        ("http://localhost:", "invalid port"),
        ("http://[::1:50051", "invalid host"),
        ("http://exa mple.com:50051", "invalid host"),
        ("https://api.clarifai.com#frag", "must not contain a path"),
    ],
)
def test_bad_api_bases_say_what_to_write(base, phrase):
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        parse_api_base(base, None, "Airflow connection 'c'")


def test_settings_read_every_field_and_hide_the_token():
    settings = settings_from_connection(
        "c",
        "http://localhost:50051",
        None,
        " pat-123 ",
        {
            "user_id": "u",
            "extra__clarifai__app_id": "a",
            "timeout": "12.5",
            "web_base_url": "https://ui.example/",
        },
    )
    assert (settings.target, settings.use_tls, settings.token) == ("localhost:50051", False, "pat-123")
    assert (settings.default_user_id, settings.default_app_id, settings.timeout) == ("u", "a", 12.5)
    assert settings.web_base_url == "https://ui.example"
    assert settings.metadata == (("authorization", "Key pat-123"),)
    assert "pat-123" not in repr(settings)


def test_defaults_point_at_the_public_api():
    settings = settings_from_connection("c", None, None, "pat", {})
    assert (settings.target, settings.use_tls, settings.timeout) == ("api.clarifai.com:443", True, 30.0)
    assert settings.web_base_url == "https://clarifai.com"


@pytest.mark.parametrize(
    ("password", "extra", "phrase"),
    [
        (None, {}, "has no Personal Access Token"),
        ("  ", {}, "has no Personal Access Token"),
        ("pat", {"timeout": "soon"}, "extra field 'timeout' must be a positive"),
        ("pat", {"timeout": 0}, "extra field 'timeout' must be a positive"),
        ("pat", {"timeout": True}, "extra field 'timeout' must be a positive"),
        ("pat", {"timeout": "nan"}, "got 'nan'"),
        ("pat", {"timeout": float("inf")}, "got inf"),
        ("pat", {"timeout": -1}, "got -1"),
        ("pat", {"extra__clarifai__timeout": "-5"}, "got '-5'"),
        ("pat", {"user_id": 5}, "'user_id' must be a string"),
        ("pat", {"root_certificates_path": ["a.pem"]}, "'root_certificates_path' must be a string"),
        ("pat", {"web_base_url": "clarifai.com"}, "'web_base_url' must start with https://"),
        ("pat", {"requests_per_second": -1}, "'requests_per_second' must be a finite number, 0 or more"),
        ("pat", {"requests_per_second": "fast"}, "got 'fast'"),
        ("pat", {"requests_per_second": float("nan")}, "got nan"),
        ("pat", {"requests_per_second": False}, "got False"),
        ("pat", [1, 2], "extra must be a JSON object of settings, got [1, 2]"),
    ],
)
def test_bad_connections_fail_with_the_field_to_fix(password, extra, phrase):
    with pytest.raises(ClarifaiConfigurationError) as raised:
        settings_from_connection("c", "https://api.clarifai.com", None, password, extra)
    assert phrase in str(raised.value)
    assert str(raised.value).startswith("Airflow connection 'c'")


@pytest.mark.parametrize(
    ("port", "expected"),
    [(None, "localhost:50051"), (50051, "localhost:50051"), ("50051", "localhost:50051"), (1, "localhost:1")],
)
def test_the_port_field_is_used_when_the_host_names_none(port, expected):
    base = "http://localhost" if port is not None else "http://localhost:50051"
    assert settings_from_connection("c", base, port, "pat", {}).target == expected


@pytest.mark.parametrize("port", [0, 65536, -1, "abc", "5e4", True, 1.5])
def test_a_bad_port_field_is_refused(port):
    with pytest.raises(ClarifaiConfigurationError, match="has an invalid port field") as raised:
        settings_from_connection("c", "http://localhost", port, "pat", {})
    assert "Use a whole number from 1 to 65535" in str(raised.value)


def test_requests_per_second_is_read_and_may_be_zero():
    assert (
        settings_from_connection("c", None, None, "pat", {"requests_per_second": "2.5"}).requests_per_second
        == 2.5
    )
    assert (
        settings_from_connection("c", None, None, "pat", {"requests_per_second": 0}).requests_per_second
        == 0.0
    )
    assert settings_from_connection("c", None, None, "pat", {}).requests_per_second is None


def test_every_mistake_is_named_in_one_error():
    with pytest.raises(ClarifaiConfigurationError) as raised:
        settings_from_connection(
            "c",
            "http://localhost",
            70000,
            "pat\nzqxv",
            {"timeout": "soon", "app_id": ["a"], "requests_per_second": -2},
        )
    message = str(raised.value)
    assert message.startswith(
        "Airflow connection 'c' has 5 problems. (1) It has a Personal Access Token with"
    )
    for phrase in (
        "(2) It has an invalid port field 70000",
        "(3) Extra field 'timeout' must be",
        "(4) Extra field 'requests_per_second' must be",
        "(5) Extra field 'app_id' must be a string, got list",
    ):
        assert phrase in message
    assert "zqxv" not in message


@pytest.mark.parametrize(
    ("password", "kind", "position"),
    [
        ("abc\ndef", "a line break or another control character", "character 4 of 7"),
        ("abc\tdef", "a line break or another control character", "character 4 of 7"),
        ("abc\x7fdef", "a line break or another control character", "character 4 of 7"),
        ("abc\x00def", "a line break or another control character", "character 4 of 7"),
        ("abcdéf", "a non-ASCII character", "character 5 of 6"),
        ("\u201cabcdef\u201d", "a non-ASCII character", "character 1 of 8"),
    ],
)
def test_a_token_grpc_cannot_send_is_refused_without_being_shown(password, kind, position):
    with pytest.raises(ClarifaiConfigurationError) as raised:
        settings_from_connection("c", "https://api.clarifai.com", None, password, {})
    message = str(raised.value)
    assert f"has a Personal Access Token with {kind} in it ({position})" in message
    assert "Paste the PAT into the connection's password field again" in message
    for piece in ("abc", "def", password):
        assert piece not in message


def test_surrounding_whitespace_and_inner_spaces_are_not_refused():
    assert settings_from_connection("c", None, None, "  pat-123\n", {}).token == "pat-123"
    # gRPC sends spaces; whether the service accepts such a token is its call.
    assert settings_from_connection("c", None, None, "pat 123", {}).token == "pat 123"


def test_credentials_in_the_host_are_refused_and_not_echoed():
    with pytest.raises(ClarifaiConfigurationError) as raised:
        settings_from_connection("c", "https://user:hunter2secret@api.clarifai.com", None, "pat", {})
    assert "has a user name or password in its host" in str(raised.value)
    assert "hunter2secret" not in str(raised.value)


def test_a_huge_host_is_quoted_short():
    with pytest.raises(ClarifaiConfigurationError) as raised:
        settings_from_connection("c", "ftp://" + "h" * 10_000_000, None, "pat", {})
    assert len(str(raised.value)) < 500


# Warnings: unknown extras and plaintext ------------------------------------------------------------


@pytest.fixture
def fresh_warnings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> pytest.LogCaptureFixture:
    """The process-wide "warned once" sets emptied for the test; WARNING records captured."""
    monkeypatch.setattr(_connection, "_warned_extras", set())
    monkeypatch.setattr(_tls, "_warned_plaintext", set())
    caplog.set_level(logging.WARNING)
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


def test_unknown_extras_are_named_once_without_their_values(fresh_warnings):
    extra = {"timeout": 5, "extra__clarifai__app_id": "a", "api_key": "s3cr3t-value", "tiemout": 10}
    for _ in range(3):
        settings_from_connection("c", None, None, "pat", extra)
    (warning,) = warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._connection")
    assert (
        "Airflow connection 'c' has extra field(s) this provider does not use, ignored: 'api_key', 'tiemout'"
        in (warning)
    )
    assert "requests_per_second" in warning  # the known fields are listed
    assert "s3cr3t-value" not in warning
    # Another connection with the same mistake is warned about too, once.
    settings_from_connection("d", None, None, "pat", extra)
    settings_from_connection("d", None, None, "pat", extra)
    assert len(warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._connection")) == 2


def test_the_settings_stay_importable_from_the_transport_module():
    assert _transport.settings_from_connection is settings_from_connection
    assert _transport.ConnectionSettings is _connection.ConnectionSettings


def test_known_extras_in_either_spelling_warn_nothing(fresh_warnings):
    extra = {name: "" for name in _connection.KNOWN_EXTRAS}
    extra.update({f"extra__clarifai__{name}": "" for name in _connection.KNOWN_EXTRAS})
    settings_from_connection("c", None, None, "pat", extra)
    assert not warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._connection")


def test_a_token_over_plaintext_to_another_host_is_warned_about_once(fresh_warnings):
    for _ in range(3):
        settings_from_connection("c", "http://10.1.2.3:50051", None, "pat-abc", {})
    settings_from_connection("other", "http://10.1.2.3:50051", None, "pat-abc", {})
    (warning,) = warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._tls")
    assert "sends its token in plaintext (http://) to 10.1.2.3" in warning
    assert "pat-abc" not in warning
    # Another endpoint is another warning.
    settings_from_connection("c", "http://emulator.internal:50051", None, "pat", {})
    assert len(warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._tls")) == 2


@pytest.mark.parametrize(
    "host",
    [
        "http://localhost:50051",
        "http://LOCALHOST:50051",
        "http://127.0.0.1:50051",
        "http://127.9.8.7:50051",
        "http://[::1]:50051",
        "http://[::ffff:127.0.0.1]:50051",
        "https://10.1.2.3:443",
        "10.1.2.3",
    ],
)
def test_loopback_and_tls_are_not_warned_about(host, fresh_warnings):
    settings_from_connection("c", host, None, "pat", {})
    assert not warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._tls")


def test_the_hook_warns_when_it_reads_such_a_connection(fresh_warnings, monkeypatch):
    connection = {
        "conn_type": "clarifai",
        "host": "http://192.0.2.7:50051",
        "password": "pat-xyz",
        "extra": {},
    }
    monkeypatch.setenv("AIRFLOW_CONN_REMOTE_PLAIN", json.dumps(connection))
    ClarifaiHook("remote_plain").get_settings()
    ClarifaiHook("remote_plain").get_settings()
    (warning,) = warnings_of(fresh_warnings, "airflow_provider_clarifai.hooks._tls")
    assert "192.0.2.7" in warning


# Messages over gRPC's size limit --------------------------------------------------------------------

MANY_ATTEMPTS = RetryPolicy(max_attempts=50, initial_backoff=0.001, max_backoff=0.002, max_elapsed=60)


@pytest.fixture
def small_emulator(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An emulator that takes and sends messages of at most 1 kB; ``clarifai_default`` points at it."""
    with ClarifaiEmulator(clock=ManualClock(), max_message_bytes=1024) as emulator:
        emulator.backend.set_rate_limit(None)
        name, value = emulator.airflow_connection_env()
        monkeypatch.setenv(name, value)
        yield emulator


def retried(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if record.name == "airflow_provider_clarifai.retry"
    ]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_an_answer_too_large_is_rejected_not_throttled(mode, small_emulator, caplog):
    for number in range(20):
        small_emulator.backend.add_run(
            IDS.user_id,
            IDS.app_id,
            IDS.pipeline_id,
            IDS.pipeline_version_id,
            f"padding-run-{number:02d}",
            status="JOB_RUNNING",
        )
    caplog.set_level(logging.WARNING)
    hook = ClarifaiHook(retry_policy=MANY_ATTEMPTS)

    def list_runs() -> Any:
        with hook:
            return hook.list_runs(IDS) if mode == "sync" else run_async(lambda: hook.alist_runs(IDS))

    with pytest.raises(ClarifaiRequestRejectedError) as raised:
        list_runs()
    message = str(raised.value)
    assert "The answer was larger than gRPC allows" in message
    assert "SERVER: Sent message larger than max" in message
    assert "fewer items per page (per_page)" in message
    assert small_emulator.requests.count("ListPipelineVersionRuns") == 1
    assert not retried(caplog)


@pytest.mark.integration
def test_a_request_too_large_is_rejected_not_throttled(small_emulator, caplog):
    caplog.set_level(logging.WARNING)
    run_ids = [f"{number:032x}" for number in range(60)]
    with (
        ClarifaiHook(retry_policy=MANY_ATTEMPTS) as hook,
        pytest.raises(ClarifaiRequestRejectedError) as raised,
    ):
        hook.set_runs_status(IDS, run_ids, "cancel")
    message = str(raised.value)
    assert "The request was larger than gRPC allows" in message
    assert "SERVER: Received message larger than max" in message
    assert "fewer runs per batch (batch_size)" in message
    assert small_emulator.requests.count() == 0
    assert not retried(caplog)
