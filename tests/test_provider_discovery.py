"""Airflow itself discovers the provider and its connection type (through its real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_airflow_lists_the_provider(tmp_path):
    providers = airflow_cli("providers", "list", home=tmp_path)
    (ours,) = [p for p in providers if p["package_name"] == "airflow-provider-clarifai"]
    assert ours["version"] == "0.1.0"


def test_airflow_knows_the_clarifai_connection_type(tmp_path):
    hooks = airflow_cli("providers", "hooks", home=tmp_path)
    (ours,) = [h for h in hooks if h["connection_type"] == "clarifai"]
    assert ours["class"] == "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook"
    assert ours["conn_id_attribute_name"] == "clarifai_conn_id"
    assert ours["hook_name"] == "Clarifai"


def test_airflow_builds_the_connection_form(tmp_path):
    widgets = airflow_cli("providers", "widgets", home=tmp_path)
    names = {
        w["connection_parameter_name"] for w in widgets if w["package_name"] == "airflow-provider-clarifai"
    }
    assert names == {
        f"extra__clarifai__{field}"
        for field in ("user_id", "app_id", "timeout", "root_certificates_path", "web_base_url")
    }
    behaviours = airflow_cli("providers", "behaviours", home=tmp_path)
    assert any("clarifai" in json.dumps(b) for b in behaviours)
