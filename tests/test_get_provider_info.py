"""The provider info Airflow reads through the entry point: checked against facts stated here, not against
the module's own constants."""

from __future__ import annotations

import importlib
import inspect
import json
from importlib import metadata
from importlib.resources import files

import jsonschema
import pytest

from airflow_provider_clarifai.get_provider_info import get_provider_info

DISTRIBUTION = "airflow-provider-clarifai"
HOOK = "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook"
LINK = "airflow_provider_clarifai.links.clarifai.ClarifaiPipelineRunLink"
#: The classes users import from each declared module.
MODULES = {
    "operators": {
        "airflow_provider_clarifai.operators.clarifai": {
            "ClarifaiPausePipelineRunOperator",
            "ClarifaiResumePipelineRunOperator",
            "ClarifaiCancelPipelineRunOperator",
            "ClarifaiRunPipelineOperator",
        },
        "airflow_provider_clarifai.operators.run_pipeline": {"ClarifaiRunPipelineOperator"},
    },
    "sensors": {
        "airflow_provider_clarifai.sensors.clarifai": {"ClarifaiPipelineRunSensor"},
        "airflow_provider_clarifai.sensors.drained": {"ClarifaiDrainedSensor"},
    },
    "triggers": {
        "airflow_provider_clarifai.triggers.clarifai": {
            "ClarifaiPipelineRunTrigger",
            "ClarifaiPipelineRunsTrigger",
        },
        "airflow_provider_clarifai.triggers.drained": {"ClarifaiDrainedTrigger"},
    },
    "hooks": {"airflow_provider_clarifai.hooks.clarifai": {"ClarifaiHook"}},
}


def load(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_passes_airflows_schema():
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_entry_point_is_ours_and_gives_the_provider_info():
    (entry,) = [
        entry
        for entry in metadata.entry_points(group="apache_airflow_provider")
        if entry.dist is not None and entry.dist.name == DISTRIBUTION
    ]
    assert entry.value == "airflow_provider_clarifai.get_provider_info:get_provider_info"
    info = entry.load()()
    assert info["package-name"] == DISTRIBUTION
    assert info["name"] == "Clarifai"
    assert info["versions"] == [metadata.version(DISTRIBUTION)]
    # Plain JSON, as Airflow's provider manager caches it.
    assert json.loads(json.dumps(info)) == info


def test_the_clarifai_connection_type_is_served_by_our_hook():
    (connection_type,) = get_provider_info()["connection-types"]
    assert connection_type["connection-type"] == "clarifai"
    assert connection_type["hook-class-name"] == HOOK
    assert connection_type["hook-name"] == "Clarifai"
    hook = load(HOOK)
    assert (hook.conn_type, hook.conn_name_attr, hook.default_conn_name) == (  # type: ignore[attr-defined]
        "clarifai",
        "clarifai_conn_id",
        "clarifai_default",
    )


def test_the_connection_form_declares_the_documented_extra_fields():
    (connection_type,) = get_provider_info()["connection-types"]
    assert set(connection_type["conn-fields"]) == {
        "user_id",
        "app_id",
        "timeout",
        "root_certificates_path",
        "web_base_url",
        "requests_per_second",
    }
    assert connection_type["conn-fields"]["timeout"]["schema"]["default"] == 30
    assert connection_type["conn-fields"]["web_base_url"]["schema"]["default"] == "https://clarifai.com"
    behaviour = connection_type["ui-field-behaviour"]
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["relabeling"]["password"] == "Personal Access Token (PAT)"
    # The raw extra JSON, the schema and the login are not for users to fill in: the fields above are.
    assert {"extra", "schema", "login"} <= set(behaviour["hidden-fields"])


def test_airflow2_reads_the_same_form_from_the_hook():
    behaviour = load(HOOK).get_ui_field_behaviour()  # type: ignore[attr-defined]
    assert behaviour["relabeling"]["password"] == "Personal Access Token (PAT)"
    assert {"extra", "schema", "login"} <= set(behaviour["hidden_fields"])
    # The widgets need Flask AppBuilder, which only Airflow 2's webserver has.
    pytest.importorskip("flask_appbuilder")
    widgets = load(HOOK).get_connection_form_widgets()  # type: ignore[attr-defined]
    assert set(widgets) == {
        "user_id",
        "app_id",
        "timeout",
        "root_certificates_path",
        "web_base_url",
        "requests_per_second",
    }


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_the_declared_modules_import_and_hold_the_provider_classes(kind: str):
    (entry,) = get_provider_info()[kind]
    assert entry["integration-name"] == "Clarifai"
    assert set(entry["python-modules"]) == set(MODULES[kind])
    for module_name, classes in MODULES[kind].items():
        module = importlib.import_module(module_name)
        for class_name in classes:
            assert inspect.isclass(getattr(module, class_name)), (module_name, class_name)


def test_the_extra_link_is_an_operator_link():
    from airflow.providers.common.compat.sdk import BaseOperatorLink

    assert get_provider_info()["extra-links"] == [LINK]
    link = load(LINK)
    assert inspect.isclass(link) and issubclass(link, BaseOperatorLink)
    assert link.name == "Clarifai pipeline run"  # type: ignore[attr-defined]


def test_the_integration_links_to_clarifais_pipeline_docs():
    (integration,) = get_provider_info()["integrations"]
    assert integration["integration-name"] == "Clarifai"
    assert integration["external-doc-url"] == "https://docs.clarifai.com/compute/pipelines/"
