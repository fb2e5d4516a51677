"""What Airflow discovers about this provider through the ``apache_airflow_provider`` entry point.

The ``clarifai`` connection form is declared here (``conn-fields`` and ``ui-field-behaviour``), which
Airflow 3.2+ reads without importing the hook; Airflow 2.11's UI reads the same definitions through the
hook's ``get_connection_form_widgets`` / ``get_ui_field_behaviour``, which build on :data:`CONN_FIELDS`
and :data:`UI_FIELD_BEHAVIOUR` so the two never drift apart.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_clarifai import __version__

DEFAULT_API_BASE = "https://api.clarifai.com"
DEFAULT_WEB_BASE = "https://clarifai.com"

#: Extra fields of the ``clarifai`` connection: name -> (label, JSON type, description).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "user_id": {
        "label": "Default user ID",
        "schema": {"type": ["string", "null"]},
        "description": "Used when neither the task nor config-lock.yaml names the user.",
    },
    "app_id": {
        "label": "Default app ID",
        "schema": {"type": ["string", "null"]},
        "description": "Used when neither the task nor config-lock.yaml names the app.",
    },
    "timeout": {
        "label": "Per-call timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
        "description": "Deadline of each API call. Default 30.",
    },
    "root_certificates_path": {
        "label": "Root certificates path",
        "schema": {"type": ["string", "null"]},
        "description": "PEM file of CA certificates for TLS; the system's are used if empty.",
    },
    "web_base_url": {
        "label": "Clarifai web UI base URL",
        "schema": {"type": ["string", "null"], "default": DEFAULT_WEB_BASE},
        "description": "Where run links point. Default https://clarifai.com.",
    },
    "requests_per_second": {
        "label": "Requests per second",
        "schema": {"type": ["number", "null"], "default": 15},
        "description": (
            "Most requests per second this process sends with the token. Default 15 (Clarifai's limit); "
            "divide it by the processes sharing the token; 0 turns pacing off."
        ),
    },
}

#: The standard fields of the form. Port stays visible: Airflow 3.3's connection list sends the stored port
#: back with its Test button as ``Number(port)``, which is 0 for an empty port, and the API server then
#: refuses the test because 0 differs from the stored NULL ("The host or port to test differs from the
#: stored connection"). A connection saved with its port (443 for https://api.clarifai.com) round-trips.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "extra"],
    "relabeling": {
        "host": "API base URL",
        "port": "API port",
        "password": "Personal Access Token (PAT)",
    },
    "placeholders": {
        "host": DEFAULT_API_BASE + " (http://HOST for a plaintext endpoint)",
        "port": "443 for https://api.clarifai.com (the Test button needs the port)",
        "password": "Your Clarifai Personal Access Token",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-clarifai",
        "name": "Clarifai",
        "description": "Control and watch `Clarifai <https://www.clarifai.com/>`__ pipeline runs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Clarifai",
                "external-doc-url": "https://docs.clarifai.com/compute/pipelines/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "Clarifai",
                "python-modules": [
                    "airflow_provider_clarifai.operators.clarifai",
                    "airflow_provider_clarifai.operators.run_pipeline",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Clarifai",
                "python-modules": [
                    "airflow_provider_clarifai.sensors.clarifai",
                    "airflow_provider_clarifai.sensors.drained",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Clarifai",
                # triggers.events (asset watchers) is Airflow 3 only: importing it on Airflow 2 raises, so
                # it is not declared here; its docs page and the API reference list it.
                "python-modules": [
                    "airflow_provider_clarifai.triggers.clarifai",
                    "airflow_provider_clarifai.triggers.drained",
                ],
            }
        ],
        "extra-links": ["airflow_provider_clarifai.links.clarifai.ClarifaiPipelineRunLink"],
        "hooks": [
            {
                "integration-name": "Clarifai",
                "python-modules": ["airflow_provider_clarifai.hooks.clarifai"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "clarifai",
                "hook-class-name": "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook",
                "hook-name": "Clarifai",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
