"""Airflow itself discovers the provider and its connection type (through its real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def airflow_cli(*args: str, home: Path) -> list[dict]:
    airflow = Path(sys.executable).with_name("airflow")
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    result = subprocess.run(
        [str(airflow), *args, "--output", "json"], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(result.stdout)


DISTRIBUTION = "airflow-provider-clarifai"


def test_airflow_lists_the_provider(tmp_path):
    providers = airflow_cli("providers", "list", home=tmp_path)
    (ours,) = [p for p in providers if p["package_name"] == DISTRIBUTION]
    assert ours["version"] == metadata.version(DISTRIBUTION) == "0.1.0"
    # No other provider claims to be ours.
    assert [p["package_name"] for p in providers if "clarifai" in p["package_name"]] == [DISTRIBUTION]


def test_airflow_takes_the_provider_info_from_our_entry_point(tmp_path):
    (entry,) = [
        entry
        for entry in metadata.entry_points(group="apache_airflow_provider")
        if entry.dist is not None and entry.dist.name == DISTRIBUTION
    ]
    assert entry.value == "airflow_provider_clarifai.get_provider_info:get_provider_info"
    declared = json.loads(json.dumps(entry.load()()))
    (known,) = airflow_cli("providers", "get", DISTRIBUTION, "--full", home=tmp_path)
    # What Airflow knows is what the entry point returns (the CLI re-renders descriptions and defaults).
    for key in (
        "package-name",
        "name",
        "versions",
        "hooks",
        "operators",
        "sensors",
        "triggers",
        "extra-links",
    ):
        assert known[key] == declared[key], key
    (connection_type,) = known["connection-types"]
    assert connection_type["connection-type"] == "clarifai"
    assert connection_type["hook-class-name"] == "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook"
    assert set(connection_type["conn-fields"]) == set(declared["connection-types"][0]["conn-fields"])


def test_airflow_knows_the_clarifai_connection_type(tmp_path):
    hooks = airflow_cli("providers", "hooks", home=tmp_path)
    (ours,) = [h for h in hooks if h["connection_type"] == "clarifai"]
    assert ours["class"] == "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook"
    assert ours["package_name"] == DISTRIBUTION
    assert ours["conn_id_attribute_name"] == "clarifai_conn_id"
    assert ours["hook_name"] == "Clarifai"


def test_airflow_builds_the_connection_form(tmp_path):
    widgets = airflow_cli("providers", "widgets", home=tmp_path)
    names = {w["connection_parameter_name"] for w in widgets if w["package_name"] == DISTRIBUTION}
    assert names == {
        f"extra__clarifai__{field}"
        for field in (
            "user_id",
            "app_id",
            "timeout",
            "root_certificates_path",
            "web_base_url",
            "requests_per_second",
        )
    }
    behaviours = airflow_cli("providers", "behaviours", home=tmp_path)
    # Airflow lists the connection types whose form it customizes: ours, by its exact name.
    assert {"field_behaviours": "clarifai"} in behaviours
