"""A local emulator of the Clarifai pipeline-run gRPC API, for tests and demos.

Importing this package starts nothing and imports neither gRPC nor YAML: every name below is loaded on
first use, so the pytest plugin (``pytest_plugin``, which a test suite declares in its ``conftest.py``)
stays cheap to load.

See ``docs/emulator.rst``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.clock import Clock, ManualClock, MonotonicClock, WallClock
    from airflow_provider_clarifai.emulator.domain import (
        FaultKind,
        FaultRule,
        RunScript,
        RunState,
        Scenario,
        ScenarioError,
        ScriptedLog,
    )
    from airflow_provider_clarifai.emulator.errors import ApiError
    from airflow_provider_clarifai.emulator.lifecycle import RunSnapshot
    from airflow_provider_clarifai.emulator.models import Backend
    from airflow_provider_clarifai.emulator.scenario import load_scenario
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
    from airflow_provider_clarifai.emulator.traffic import (
        Faults,
        Hold,
        Holds,
        InFlightGauge,
        RateLimiter,
        RequestLog,
        RequestRecord,
    )

__all__ = [
    "ApiError",
    "Backend",
    "ClarifaiEmulator",
    "Clock",
    "FaultKind",
    "FaultRule",
    "Faults",
    "Hold",
    "Holds",
    "InFlightGauge",
    "ManualClock",
    "MonotonicClock",
    "RateLimiter",
    "RequestLog",
    "RequestRecord",
    "RunScript",
    "RunSnapshot",
    "RunState",
    "Scenario",
    "ScenarioError",
    "ScriptedLog",
    "WallClock",
    "load_scenario",
]

# Public name -> the submodule that defines it.
_EXPORTS = {
    "Clock": "clock",
    "ManualClock": "clock",
    "MonotonicClock": "clock",
    "WallClock": "clock",
    "FaultKind": "domain",
    "FaultRule": "domain",
    "RunScript": "domain",
    "RunState": "domain",
    "Scenario": "domain",
    "ScenarioError": "domain",
    "ScriptedLog": "domain",
    "ApiError": "errors",
    "RunSnapshot": "lifecycle",
    "Backend": "models",
    "load_scenario": "scenario",
    "ClarifaiEmulator": "server",
    "Faults": "traffic",
    "Hold": "traffic",
    "Holds": "traffic",
    "InFlightGauge": "traffic",
    "RateLimiter": "traffic",
    "RequestLog": "traffic",
    "RequestRecord": "traffic",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
