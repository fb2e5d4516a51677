"""The extra link from a task to its run (or its pipeline version's runs) in the Clarifai web UI."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom


class ClarifaiPipelineRunLink(BaseOperatorLink):
    """Opens the run in the Clarifai web UI.

    The URL is
    ``{web_base_url}/{user_id}/{app_id}/pipelines/{pipeline_id}/versions/{version_id}/runs/{run_id}``
    (``web_base_url`` from the connection, default ``https://clarifai.com``); a task acting on several
    runs links to the version's runs list instead. The task stores the URL in XCom under
    :attr:`xcom_key` when it knows the run, which is also where Airflow 3's UI reads it.
    """

    name = "Clarifai pipeline run"

    @property
    def xcom_key(self) -> str:
        """Where the URL is stored; Airflow 3 reads links from this key, Airflow 2.11 has no default."""
        return "_link_ClarifaiPipelineRunLink"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The stored URL, or an empty string before the task has run.

        :param operator: the task.
        :param ti_key: the task instance.
        """
        value = XCom.get_value(key=self.xcom_key, ti_key=ti_key)
        return value if isinstance(value, str) else ""
