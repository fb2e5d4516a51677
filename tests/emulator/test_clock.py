from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_clarifai.emulator import clock as clock_module
from airflow_provider_clarifai.emulator.clock import (
    DEFAULT_START,
    Clock,
    ManualClock,
    MonotonicClock,
    WallClock,
)


class TestManualClock:
    def test_starts_at_the_default_instant(self) -> None:
        assert ManualClock().now() == DEFAULT_START

    def test_advance_moves_forward_and_returns_the_new_time(self) -> None:
        clock = ManualClock(start=100.0)
        assert clock.advance(2.5) == 102.5
        assert clock.now() == 102.5

    def test_advance_rejects_negative_amounts(self) -> None:
        clock = ManualClock(start=100.0)
        with pytest.raises(ValueError, match="negative"):
            clock.advance(-1)
        assert clock.now() == 100.0

    def test_set_jumps_to_an_absolute_time(self) -> None:
        clock = ManualClock(start=100.0)
        clock.set(250.0)
        assert clock.now() == 250.0

    def test_set_refuses_to_go_backwards(self) -> None:
        clock = ManualClock(start=100.0)
        with pytest.raises(ValueError, match="backwards"):
            clock.set(99.0)
        assert clock.now() == 100.0


class FakeTime:
    """The clock module's ``time``, with ``time()`` and ``monotonic()`` replaced; only that module sees it,
    so nothing else running in the process (gRPC threads, the event loop) has its clocks changed."""

    def __init__(self, **clocks: Callable[[], float]) -> None:
        self._clocks = clocks

    def __getattr__(self, name: str) -> Any:
        return self._clocks.get(name, getattr(time, name))


class TestWallClock:
    def test_scale_multiplies_elapsed_real_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = [1000.0]
        monkeypatch.setattr(clock_module, "time", FakeTime(monotonic=lambda: real[0]))
        clock = WallClock(scale=60.0, start=5000.0)
        assert clock.now() == 5000.0
        real[0] += 2.0
        assert clock.now() == 5120.0

    def test_starts_at_the_current_unix_time_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(clock_module, "time", FakeTime(time=lambda: 1234.0, monotonic=lambda: 7.0))
        assert WallClock().now() == 1234.0

    @pytest.mark.parametrize("scale", [0.0, -1.0])
    def test_scale_must_be_positive(self, scale: float) -> None:
        with pytest.raises(ValueError, match="positive"):
            WallClock(scale=scale)


def test_monotonic_clock_never_goes_back() -> None:
    clock = MonotonicClock()
    first = clock.now()
    assert clock.now() >= first


@pytest.mark.parametrize("candidate", [ManualClock(), WallClock(), MonotonicClock()])
def test_every_clock_satisfies_the_protocol(candidate: object) -> None:
    assert isinstance(candidate, Clock)
