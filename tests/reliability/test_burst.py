"""Burst: 1,000 triggers start at once in one event loop, as after a triggerer restart, against one
emulator (in its own process).

The machinery is ``benchmarks/trigger_burst.py``'s, which also measures and prints how long the loop was
blocked; by the project's rule timings are not asserted here. This test asserts what does not depend on
the machine's speed: every trigger sends exactly its run's scripted event, no request fails, every run is
read, and the requests in flight, counted by the service itself, stay within the hook's bound, while
more than one of them were in flight at once. The emulator answers each request after 50 ms, as over
a network, and has twice as many threads as the bound: a client that let more through would be seen.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from airflow_provider_clarifai.hooks._transport import ASYNC_MAX_IN_FLIGHT

pytestmark = [pytest.mark.integration]

TRIGGERS = 1000


def load_benchmark() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "trigger_burst.py"
    spec = importlib.util.spec_from_file_location("trigger_burst", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def burst() -> ModuleType:
    return load_benchmark()


def test_a_thousand_triggers_starting_at_once(burst: ModuleType, tmp_path: Path) -> None:
    settings = burst.BurstSettings(triggers=TRIGGERS)
    assert settings.server_workers > ASYNC_MAX_IN_FLIGHT, "the service must be able to see a breach"

    report = burst.run_burst(settings, tmp_path, log_path=tmp_path / "trigger-logs.txt")

    # Every trigger sent exactly the event its run's script calls for; none raised.
    assert report.wrong_events == []
    assert report.events == burst.expected_events(TRIGGERS)
    assert report.events == {"success": 817, "failure": 183}
    # No request failed, at either end, and every request sent was served.
    assert report.client_errors == {}
    assert report.client_not_success == {}
    assert report.server["by_grpc_code"] == {"OK": report.server_requests}
    assert report.server["by_code"] == {"SUCCESS": report.server_requests}
    assert report.server_requests == report.client_requests
    # Every run was read, at least once.
    assert report.runs_never_read == 0
    assert report.reads_per_run["min"] >= 1
    # The bound is real and the requests did overlap.
    assert report.client_peak_in_flight <= ASYNC_MAX_IN_FLIGHT
    assert 2 <= report.server_peak_in_flight <= ASYNC_MAX_IN_FLIGHT
    # The benchmark's own verdict agrees, apart from the loop-block timing, which only it judges.
    assert [problem for problem in burst.problems(report) if "event loop" not in problem] == []
