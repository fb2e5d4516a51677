from __future__ import annotations

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.hooks._transport import parse_api_base, settings_from_connection


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
        ("pat", {"timeout": "soon"}, "'timeout' must be a positive number"),
        ("pat", {"timeout": 0}, "'timeout' must be a positive number"),
        ("pat", {"timeout": True}, "'timeout' must be a positive number"),
        ("pat", {"user_id": 5}, "'user_id' must be a string"),
    ],
)
def test_bad_connections_fail_with_the_field_to_fix(password, extra, phrase):
    with pytest.raises(ClarifaiConfigurationError, match=phrase):
        settings_from_connection("c", "https://api.clarifai.com", None, password, extra)
