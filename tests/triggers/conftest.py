"""The trigger tests in this folder read each run on its own (``share_polls=False``): they pin down the
per-trigger read path, request by request (faults, hangs, deadlines on ``GetPipelineVersionRun``).
The shared watcher, which triggers use by default, is tested in ``test_shared_polls.py`` (which turns
sharing back on) and by every deferred DAG test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def reads_per_trigger(request, monkeypatch):
    from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

    shared = request.node.get_closest_marker("shared_polls") is not None
    monkeypatch.setattr(ClarifaiPipelineRunTrigger, "share_polls", shared)
    return shared
