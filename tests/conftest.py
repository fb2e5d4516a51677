"""Shared test set-up: a private Airflow home, the emulator's pytest plugin, and the fixtures most test
modules share (the ``emulator`` with its connection, throwaway TLS certificates).

Fixtures:

* ``clarifai_emulator``, ``clarifai_connection``, ``clarifai_emulator_options``,
  ``clarifai_connection_extra``: the emulator plugin's (declared below, as a user's ``conftest.py`` does);
  its emulator has a manual clock and no rate limit unless a test asks for one.
* ``clarifai_default_scenario``: this suite serves the bundled "scripted" scenario to tests that name
  none (the plugin's default is the bundled "default" one, whose runs never end on their own).
* ``emulator``: ``clarifai_emulator`` with ``clarifai_default`` pointing at it.
* ``pki``: a throwaway CA and server certificates, made in ``tmp_path`` (see :func:`make_pki`).
* ``@pytest.mark.emulator_tls``: the emulator serves TLS with ``pki``'s server certificate, and the
  connection trusts ``pki``'s CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Must happen before anything imports airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="clarifai-provider-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


import pytest

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

# The emulator's fixtures, declared the way the docs tell users to (installing the provider loads nothing).
pytest_plugins = ["airflow_provider_clarifai.emulator.pytest_plugin"]

TLS_MARKER = "emulator_tls"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{TLS_MARKER}: the clarifai_emulator fixture serves TLS with the pki fixture's server certificate; "
        "clarifai_connection trusts its CA.",
    )


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB (SQLite in the private Airflow home), made once per test session."""
    from tests.airflow_dags import migrate_metadata_db

    migrate_metadata_db()


@pytest.fixture
def dag_folder(tmp_path, monkeypatch, airflow_db):
    """An empty DAG folder for one test; Airflow's dags_folder points at it during the test."""
    import airflow.settings

    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    return folder


# The emulator --------------------------------------------------------------------------------------


@pytest.fixture
def clarifai_emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The plugin's fixture, with TLS for tests marked ``emulator_tls``."""
    if request.node.get_closest_marker(TLS_MARKER) is None:
        return {}
    pki: Pki = request.getfixturevalue("pki")
    return {"tls_cert": pki.cert, "tls_key": pki.key, "tls_root_certificates_path": pki.ca}


@pytest.fixture
def clarifai_default_scenario() -> Any:
    """The bundled "scripted" scenario: the default scenario's runs, ending on their own (``run-queued``
    completes 65 s after the start, ``run-running`` after 600 s, ``run-paused`` 60 s after a resume).

    Many of this suite's tests let runs of the default scenario end by moving the clock; they were written
    before the default scenario's runs stopped ending on their own. A test that wants the user-facing
    default names it: ``@pytest.mark.clarifai_scenario(Scenario.default())``.
    """
    from airflow_provider_clarifai.emulator import Scenario

    return Scenario.bundled("scripted")


@pytest.fixture
def clarifai_connection_extra(clarifai_emulator: ClarifaiEmulator) -> dict[str, Any]:
    """This suite's connections turn the client's request budget off when the emulator has no rate limit:
    it throttles nothing, so pacing would only slow the tests down. Tests with a limit on keep the
    default budget, and so do the budget's own tests (tests/hooks/test_request_budget.py)."""
    return {} if clarifai_emulator.rate_limit_per_second else {"requests_per_second": 0}


@pytest.fixture
def emulator(clarifai_emulator: ClarifaiEmulator, clarifai_connection: str) -> ClarifaiEmulator:
    """The emulator (manual clock, no rate limit, the suite's scenario unless a marker names another),
    with the Airflow connection ``clarifai_default`` pointing at it."""
    return clarifai_emulator


# Certificates made at run time ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throwaway CA and the files the tests need, all PEM, in one folder.

    :param ca: the CA certificate clients trust.
    :param other_ca: a CA that signed nothing the servers use.
    :param cert: the server certificate for 127.0.0.1 and localhost, signed by ``ca``.
    :param key: its private key.
    :param other_host_cert: a server certificate for "other.example" only, signed by ``ca``.
    :param other_host_key: its private key.
    :param not_pem: a file of text that holds no certificate.
    """

    ca: Path
    other_ca: Path
    cert: Path
    key: Path
    other_host_cert: Path
    other_host_key: Path
    not_pem: Path


def make_pki(folder: Path) -> Pki:
    """Write a CA, server certificates and a file that is not PEM into ``folder``.

    :param folder: where the files go.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def authority(common_name: str) -> tuple[Any, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def server(signer: tuple[Any, x509.Certificate], hosts: list[str]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(hosts[0]))
            .issuer_name(signer[1].subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(signer[0], hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return key_pem, cert.public_bytes(serialization.Encoding.PEM)

    folder.mkdir(parents=True, exist_ok=True)
    ca, other_ca = authority("test CA"), authority("another CA")
    files = {
        "ca": ca[1].public_bytes(serialization.Encoding.PEM),
        "other_ca": other_ca[1].public_bytes(serialization.Encoding.PEM),
        "not_pem": b"this is not a certificate\n",
    }
    files["key"], files["cert"] = server(ca, ["127.0.0.1", "localhost"])
    files["other_host_key"], files["other_host_cert"] = server(ca, ["other.example"])
    paths = {}
    for field_name, data in files.items():
        path = folder / f"{field_name}.pem"
        path.write_bytes(data)
        paths[field_name] = path
    return Pki(**paths)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway CA and server certificates in ``tmp_path / "pki"``; never committed."""
    return make_pki(tmp_path / "pki")
