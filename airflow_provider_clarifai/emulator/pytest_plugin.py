"""Pytest fixtures for the Clarifai emulator, registered through the ``pytest11`` entry point.

* ``clarifai_emulator``: a started :class:`~airflow_provider_clarifai.emulator.server.ClarifaiEmulator`
  on a free loopback port, with a :class:`~airflow_provider_clarifai.emulator.clock.ManualClock`, serving
  the bundled default scenario or the one named by ``@pytest.mark.clarifai_scenario(...)``; stopped after
  the test.
* ``clarifai_connection``: sets ``AIRFLOW_CONN_CLARIFAI_DEFAULT`` to that emulator and returns the conn id.

This module is imported by every pytest session of an environment where the provider is installed, so it
imports nothing heavy at import time: gRPC and the emulator are imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.clock import Clock
    from airflow_provider_clarifai.emulator.scenario import Scenario
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

MARKER = "clarifai_scenario"
CONN_ID = "clarifai_default"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``clarifai_scenario`` marker.

    :param config: the pytest config.
    """
    config.addinivalue_line(
        "markers",
        f"{MARKER}(source=None, *, time_scale=None): scenario for the clarifai_emulator fixture: a YAML file "
        "path (relative to the test file, or to the working directory), YAML text or a dict; "
        "time_scale=N uses a real clock running N times faster instead of a ManualClock.",
    )


def _resolve_scenario(source: Any, test_path: Path | None) -> Scenario | None:
    from airflow_provider_clarifai.emulator.scenario import Scenario, load_scenario

    if isinstance(source, str) and "\n" not in source and test_path is not None:
        beside_test = test_path.parent / source
        if beside_test.is_file():
            return Scenario.from_yaml(beside_test)
    return load_scenario(source)


def _clock_for(marker: pytest.Mark | None) -> Clock:
    from airflow_provider_clarifai.emulator.clock import ManualClock, WallClock

    time_scale = marker.kwargs.get("time_scale") if marker is not None else None
    return ManualClock() if time_scale is None else WallClock(scale=time_scale)


@pytest.fixture
def clarifai_emulator(request: pytest.FixtureRequest) -> Iterator[ClarifaiEmulator]:
    """A running Clarifai emulator, stopped after the test.

    :param request: the pytest request (reads the ``clarifai_scenario`` marker).
    :return: the emulator (yielded).
    """
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

    marker = request.node.get_closest_marker(MARKER)
    source = None
    if marker is not None:
        source = marker.args[0] if marker.args else marker.kwargs.get("source")
    scenario = _resolve_scenario(source, getattr(request, "path", None))
    emulator = ClarifaiEmulator(scenario=scenario, clock=_clock_for(marker))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clarifai_connection(clarifai_emulator: ClarifaiEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the Airflow connection ``clarifai_default`` at the emulator, through its environment variable.

    :param clarifai_emulator: the emulator fixture.
    :param monkeypatch: restores the environment after the test.
    :return: the connection id.
    """
    name, value = clarifai_emulator.airflow_connection_env(CONN_ID)
    monkeypatch.setenv(name, value)
    return CONN_ID
