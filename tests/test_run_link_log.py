"""The run's web URL goes into the task log once: ``ClarifaiTaskMixin.persist_run_link``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_clarifai.common import ClarifaiTaskMixin
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink

IDS = PipelineVersionIds("u", "a", "p", "v")
URL = "https://clarifai.com/u/a/pipelines/p/versions/v/runs/r1"
KEY = ClarifaiPipelineRunLink().xcom_key


class FakeHook:
    def run_url(self, ids: PipelineVersionIds, run_id: str) -> str:
        version = f"{ids.user_id}/{ids.app_id}/pipelines/{ids.pipeline_id}/versions/{ids.pipeline_version_id}"
        return f"https://clarifai.com/{version}/runs/{run_id}"


class FakeTi:
    """A task instance's XCom, as much as persist_run_link uses."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class Task(ClarifaiTaskMixin):
    def __init__(self) -> None:
        self.__dict__["hook"] = FakeHook()
        self.log = logging.getLogger("test_run_link_log")


def link_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "Clarifai web UI" in record.getMessage()]


def test_logged_once_by_the_same_task(caplog):
    caplog.set_level(logging.INFO, logger="test_run_link_log")
    task, ti = Task(), FakeTi()

    assert task.persist_run_link({"ti": ti}, IDS, "r1") == URL
    task.persist_run_link({"ti": ti}, IDS, "r1")

    assert link_lines(caplog) == [f"Run r1 of u/a/p/v in the Clarifai web UI: {URL}"]
    assert ti.xcom[KEY] == URL


def test_not_logged_again_on_a_later_poke_in_reschedule_mode(caplog):
    caplog.set_level(logging.INFO, logger="test_run_link_log")
    ti = FakeTi()
    Task().persist_run_link({"ti": ti, "task_reschedule_count": 2}, IDS, "r1")
    assert link_lines(caplog) == []
    assert ti.xcom[KEY] == URL  # still stored for the extra link


def test_the_version_link_for_several_runs(caplog):
    caplog.set_level(logging.INFO, logger="test_run_link_log")
    url = Task().persist_run_link({"ti": FakeTi()}, IDS)
    assert url == "https://clarifai.com/u/a/pipelines/p/versions/v/runs"
    assert link_lines(caplog) == [f"Runs of u/a/p/v in the Clarifai web UI: {url}"]
