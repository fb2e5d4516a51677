"""Pytest fixtures for the Clarifai emulator. Opt in from your ``conftest.py``::

    pytest_plugins = ["airflow_provider_clarifai.emulator.pytest_plugin"]

Installing the provider registers nothing with pytest: only test suites that declare the plugin get it.

* ``clarifai_emulator``: a started :class:`~airflow_provider_clarifai.emulator.server.ClarifaiEmulator`
  on a free loopback port, with a :class:`~airflow_provider_clarifai.emulator.clock.ManualClock`, serving
  the bundled default scenario or the one named by ``@pytest.mark.clarifai_scenario(...)``, without a
  rate limit unless the test asks for one; stopped after the test.
* ``clarifai_connection``: sets ``AIRFLOW_CONN_CLARIFAI_DEFAULT`` to that emulator and returns the conn id.
* ``clarifai_emulator_options``: more keyword arguments for the emulator, ``{}`` by default. Override it in a
  test module or ``conftest.py`` to serve TLS with certificates made at run time, e.g.
  ``{"tls_cert": path, "tls_key": path, "tls_root_certificates_path": ca_path}``, or to set a rate limit
  (``{"rate_limit_per_second": 15}``); the same keys are also accepted as ``clarifai_scenario`` marker
  keywords (paths relative to the test file, or the cwd).
* ``clarifai_connection_extra``: the ``extra`` of that connection, ``{}`` by default (over TLS the root
  certificates are added); override it for, say, a shorter per-call ``timeout``.
* ``clarifai_default_scenario``: the scenario of tests without a marker naming one, ``None`` (the bundled
  default) by default; override it in a ``conftest.py`` to give a whole suite its scenario.

The module imports nothing heavy at import time: gRPC and the emulator are imported inside the fixtures.
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
        f"{MARKER}(source=None, *, time_scale=None, rate_limit_per_second=None, tls_cert=None, "
        "tls_key=None, tls_root_certificates_path=None): scenario for the clarifai_emulator fixture: a "
        "YAML file path (relative to the test file, or to the working directory), YAML text or a dict; "
        "time_scale=N uses a real clock running N times faster instead of a ManualClock; "
        "rate_limit_per_second=N throttles each token above N requests per second (default: no limit); "
        "tls_cert and tls_key (PEM paths or bytes) serve TLS.",
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


#: Marker keywords passed on to ClarifaiEmulator; the ones that name files are resolved like scenarios.
_EMULATOR_KEYWORDS = ("tls_cert", "tls_key", "tls_root_certificates_path")
#: The marker keyword (and ``clarifai_emulator_options`` key) that sets a rate limit; none by default.
RATE_LIMIT = "rate_limit_per_second"


def _resolve_path(value: Any, test_path: Path | None) -> Any:
    if isinstance(value, str) and "-----BEGIN" not in value and test_path is not None:
        beside_test = test_path.parent / value
        if beside_test.is_file():
            return str(beside_test)
    return value


@pytest.fixture
def clarifai_emulator_options() -> dict[str, Any]:
    """More keyword arguments for the ``clarifai_emulator`` fixture's emulator; none by default.

    Override it in a test module or a ``conftest.py``, for example to serve TLS with a certificate made in
    ``tmp_path``: ``{"tls_cert": cert_path, "tls_key": key_path, "tls_root_certificates_path": ca_path}``,
    or to throttle like the real service: ``{"rate_limit_per_second": 15}`` (the fixture's emulator has
    no rate limit otherwise, whatever its scenario says). The ``clarifai_scenario`` marker's keywords of
    the same names win over it.

    :return: keyword arguments of :class:`~airflow_provider_clarifai.emulator.server.ClarifaiEmulator`.
    """
    return {}


@pytest.fixture
def clarifai_default_scenario() -> Any:
    """The scenario of the ``clarifai_emulator`` fixture when no ``clarifai_scenario`` marker names one.

    ``None``, the bundled default scenario, unless overridden (in a ``conftest.py``, say) with anything the
    marker takes: a path, YAML text, a dict or a :class:`~airflow_provider_clarifai.emulator.Scenario`.

    :return: the scenario, or ``None``.
    """
    return None


@pytest.fixture
def clarifai_emulator(
    request: pytest.FixtureRequest,
    clarifai_emulator_options: dict[str, Any],
    clarifai_default_scenario: Any,
) -> Iterator[ClarifaiEmulator]:
    """A running Clarifai emulator, stopped after the test.

    :param request: the pytest request (reads the ``clarifai_scenario`` marker).
    :param clarifai_emulator_options: more keyword arguments for the emulator (TLS, for example).
    :param clarifai_default_scenario: the scenario when the marker names none.
    :return: the emulator (yielded).
    """
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

    marker = request.node.get_closest_marker(MARKER)
    source = clarifai_default_scenario
    test_path = getattr(request, "path", None)
    options = dict(clarifai_emulator_options)
    if marker is not None:
        source = marker.args[0] if marker.args else marker.kwargs.get("source", source)
        options.update(
            {
                key: _resolve_path(marker.kwargs[key], test_path)
                for key in _EMULATOR_KEYWORDS
                if key in marker.kwargs
            }
        )
        if RATE_LIMIT in marker.kwargs:
            options[RATE_LIMIT] = marker.kwargs[RATE_LIMIT]
    rate_limit = options.pop(RATE_LIMIT, None)
    scenario = _resolve_scenario(source, test_path)
    emulator = ClarifaiEmulator(scenario=scenario, clock=_clock_for(marker), **options)
    # Off unless the test asked: a test that reads fast must not be throttled by accident.
    emulator.set_rate_limit(rate_limit)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clarifai_connection_extra() -> dict[str, Any]:
    """The ``extra`` of the ``clarifai_connection`` fixture's connection; none by default.

    Override it in a test module or a ``conftest.py``, e.g. ``{"timeout": 5}`` for a shorter per-call
    deadline. Over TLS, ``root_certificates_path`` is added unless given here.

    :return: connection extras.
    """
    return {}


@pytest.fixture
def clarifai_connection(
    clarifai_emulator: ClarifaiEmulator,
    clarifai_connection_extra: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Point the Airflow connection ``clarifai_default`` at the emulator, through its environment variable.

    Over TLS the connection carries ``root_certificates_path`` (see ``ClarifaiEmulator.airflow_connection``).

    :param clarifai_emulator: the emulator fixture.
    :param clarifai_connection_extra: the connection's ``extra``.
    :param monkeypatch: restores the environment after the test.
    :return: the connection id.
    """
    name, value = clarifai_emulator.airflow_connection_env(CONN_ID, clarifai_connection_extra or None)
    monkeypatch.setenv(name, value)
    return CONN_ID
