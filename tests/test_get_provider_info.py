from __future__ import annotations

import json
from importlib import metadata
from importlib.resources import files

import jsonschema

from airflow_provider_clarifai.get_provider_info import get_provider_info
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook


def test_provider_info_passes_airflows_schema():
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_matches_the_distribution():
    info = get_provider_info()
    assert info["package-name"] == metadata.metadata("airflow-provider-clarifai")["Name"]
    assert info["versions"][0] == metadata.version("airflow-provider-clarifai")


def test_entry_point_points_at_get_provider_info():
    (entry,) = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_clarifai")
    ]
    assert entry.load() is get_provider_info


def test_connection_type_points_at_the_hook():
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == ClarifaiHook.conn_type == "clarifai"
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    assert module == ClarifaiHook.__module__ and name == ClarifaiHook.__name__
    assert conn_type["ui-field-behaviour"]["relabeling"]["password"] == "Personal Access Token (PAT)"


def test_airflow2_form_matches_the_declared_fields():
    behaviour = ClarifaiHook.get_ui_field_behaviour()
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour["hidden_fields"] == declared["hidden-fields"]
    assert behaviour["relabeling"] == declared["relabeling"]
    assert set(get_provider_info()["connection-types"][0]["conn-fields"]) == {
        "user_id",
        "app_id",
        "timeout",
        "root_certificates_path",
        "web_base_url",
    }
