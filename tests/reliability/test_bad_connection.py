"""Bad connections and certificates: the bad-input table's checks, for the connection and TLS.

Every row is something a user can get wrong in a ``clarifai`` connection (a token gRPC cannot send, a port
out of range, a timeout that is not a number, several mistakes at once) or in its TLS set-up (a CA that
did not sign the server's certificate, a certificate for another host, a root file that is not PEM or
hangs, https to a plaintext server), or a message over gRPC's size limit. It is fed to the hook, blocking
and asyncio, against the emulator serving TLS with certificates made at run time, and checked as in
``test_bad_input.py``, by its ``check_row``:

* the exact exception class;
* that the message names what is wrong (``wrong``) and says what to do (``fix``);
* that no token, nor any piece of a bad token a row sends, appears in the exception, its notes or the
  exceptions it chains;
* that exactly one attempt was made: the retry policy allows 50, and logged no retry;
* how many requests (``calls``) and writes the emulator received, and that no run changed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiRequestRejectedError
from airflow_provider_clarifai.hooks import _tls
from airflow_provider_clarifai.retry import RetryPolicy
from tests.conftest import Pki
from tests.hooks.test_tls import release_reader
from tests.reliability.test_bad_input import V1, BadInput, Env, check_row

# The shared emulator fixture (tests/conftest.py) serves TLS with the shared certificates (pki).
pytestmark = [pytest.mark.integration, pytest.mark.emulator_tls]

#: Were any row's error retried, the retry log would say so within these attempts.
MANY_ATTEMPTS = RetryPolicy(max_attempts=50, initial_backoff=0.001, max_backoff=0.002, max_elapsed=60)
#: Tokens the rows send; they, and every piece of them around the bad character, must never be echoed.
LINE_BREAK_TOKEN = "linebreak-pat-4b1d\nsecond-half-9c2e"
NON_ASCII_TOKEN = "nonascii-pat-7a3f\u00e9tail-half-5d8b"
URL_PASSWORD = "url-password-3e8a1c"
SECRETS = ("linebreak-pat-4b1d", "second-half-9c2e", "nonascii-pat-7a3f", "tail-half-5d8b", URL_PASSWORD)
BOTH = ("sync", "asyncio")
FIX_ROOTS = "Fix the connection's root_certificates_path"
NOT_RETRIED = "Not retried: this is a configuration problem"


@dataclass
class TlsEnv(Env):
    """``Env`` of the bad-input table, plus the certificates and the hung file."""

    pki: Pki | None = None
    _emulators: list[ClarifaiEmulator] = field(default_factory=list)

    def with_roots(self, path: Path | str, conn_id: str = "bad") -> str:
        """The emulator's connection trusting ``path``."""
        return self.connection(conn_id, extra={"root_certificates_path": str(path)})

    def get_run(self, conn_id: str) -> Any:
        return self.call(self.hook(conn_id, retry_policy=MANY_ATTEMPTS), "get_run", V1, "run-running")

    def serve(self, **options: Any) -> ClarifaiEmulator:
        """Another emulator, stopped after the row."""
        emulator = ClarifaiEmulator(clock=ManualClock(), **options).start()
        self._emulators.append(emulator)
        return emulator

    def define(self, emulator: ClarifaiEmulator, conn_id: str = "other", **fields: Any) -> str:
        """Connection ``conn_id`` to ``emulator``, with ``fields`` replaced."""
        value = dict(emulator.airflow_connection(), **fields)
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
        return conn_id

    def close(self) -> None:
        super().close()
        for emulator in self._emulators:
            emulator.stop()


def row(
    id: str,
    act: Callable[[TlsEnv], Any],
    error: type[BaseException],
    *,
    wrong: str,
    fix: str,
    also: tuple[str, ...] = (),
    modes: tuple[str, ...] = BOTH,
    calls: int = 0,
) -> BadInput:
    """One bad connection and what must come of it (see ``test_bad_input.BadInput``); its surface is the
    first word of its id: connection, tls or server.

    :param id: the test id.
    :param act: feeds the bad input; must raise.
    :param error: the exact exception class.
    :param wrong: a phrase of the message naming what is wrong.
    :param fix: a phrase of the message saying what to do.
    :param also: more phrases the message must hold.
    :param modes: "sync" and/or "asyncio".
    :param calls: requests the table's emulator must get in all.
    """
    return BadInput(
        id, id.split("-")[0], act, error, wrong=wrong, fix=fix, also=also, modes=modes, calls=calls
    )


def hung_roots(env: TlsEnv) -> Any:
    path = env.tmp_path / "hung-ca.pem"
    os.mkfifo(path)
    env.monkeypatch.setattr(_tls, "ROOT_CERTIFICATES_READ_TIMEOUT", 0.05)
    try:
        return env.get_run(env.with_roots(path))
    finally:
        # Released until its read is over: the reader thread may not have reached open() at first.
        deadline = time.monotonic() + 10
        while str(path) in _tls._reads and time.monotonic() < deadline:
            release_reader(path)
            time.sleep(0.01)


def https_to_plaintext(env: TlsEnv) -> Any:
    plain = env.serve()
    return env.get_run(env.define(plain, host=f"https://127.0.0.1:{plain.port}"))


def too_large_answer(env: TlsEnv) -> Any:
    small = env.serve(max_message_bytes=1024)
    small.backend.set_rate_limit(None)
    for number in range(20):
        small.backend.add_run(
            V1.user_id,
            V1.app_id,
            V1.pipeline_id,
            V1.pipeline_version_id,
            f"padding-{number:02d}",
            status="JOB_RUNNING",
        )
    return env.call(env.hook(env.define(small), retry_policy=MANY_ATTEMPTS), "list_runs", V1)


ROWS: tuple[BadInput, ...] = (
    # The token ----------------------------------------------------------------------------------------
    row(
        "connection-token-with-a-line-break",
        lambda env: env.get_run(env.connection(password=LINE_BREAK_TOKEN)),
        ClarifaiConfigurationError,
        wrong="Personal Access Token with a line break or another control character in it (character 19",
        fix="Paste the PAT into the connection's password field again, on one line",
    ),
    row(
        "connection-token-not-ascii",
        lambda env: env.get_run(env.connection(password=NON_ASCII_TOKEN)),
        ClarifaiConfigurationError,
        wrong="has a Personal Access Token with a non-ASCII character in it (character 18",
        fix="exactly as Clarifai shows it",
    ),
    # Fields -------------------------------------------------------------------------------------------
    row(
        "connection-port-field-out-of-range",
        lambda env: env.get_run(env.connection(host="http://127.0.0.1", port=70000)),
        ClarifaiConfigurationError,
        wrong="has an invalid port field 70000",
        fix="Use a whole number from 1 to 65535",
        modes=("sync",),
    ),
    row(
        "connection-timeout-nan",
        lambda env: env.get_run(env.connection(extra={"timeout": "nan"})),
        ClarifaiConfigurationError,
        wrong="extra field 'timeout' must be a positive",
        fix="Write a number of seconds such as 30",
        also=("got 'nan'",),
    ),
    row(
        "connection-timeout-infinite",
        lambda env: env.get_run(env.connection(extra={"timeout": "inf"})),
        ClarifaiConfigurationError,
        wrong="got 'inf'",
        fix="Write a number of seconds such as 30",
        modes=("sync",),
    ),
    row(
        "connection-timeout-negative",
        lambda env: env.get_run(env.connection(extra={"timeout": -3})),
        ClarifaiConfigurationError,
        wrong="got -3",
        fix="or remove it for the default (30)",
        modes=("sync",),
    ),
    row(
        "connection-requests-per-second-negative",
        lambda env: env.get_run(env.connection(extra={"requests_per_second": -1})),
        ClarifaiConfigurationError,
        wrong="extra field 'requests_per_second' must be a finite number, 0 or more, got -1",
        fix="Write for example 10, or remove it",
        modes=("sync",),
    ),
    row(
        "connection-extra-not-an-object",
        lambda env: env.get_run(env.connection(extra=["timeout", 5])),
        ClarifaiConfigurationError,
        wrong="extra must be a JSON object of settings, got ['timeout', 5]",
        fix='Write it as, for example, {"timeout": 20}',
    ),
    row(
        "connection-credentials-in-the-host",
        lambda env: env.get_run(
            env.connection(host=f"https://admin:{URL_PASSWORD}@127.0.0.1:{env.emulator.port}")
        ),
        ClarifaiConfigurationError,
        wrong="has a user name or password in its host (before '@')",
        fix="the Personal Access Token goes in the connection's password field",
    ),
    row(
        "connection-several-mistakes",
        lambda env: env.get_run(
            env.connection(
                host="http://127.0.0.1",
                port=70000,
                password=LINE_BREAK_TOKEN,
                extra={"timeout": "soon", "user_id": 7, "web_base_url": "clarifai.com"},
            )
        ),
        ClarifaiConfigurationError,
        wrong="Airflow connection 'bad' has 5 problems.",
        fix="(1) It has a Personal Access Token with a line break",
        also=(
            "(2) It has an invalid port field 70000",
            "(3) Extra field 'timeout' must be",
            "(4) Extra field 'user_id' must be a string, got int",
            "(5) Extra field 'web_base_url' must start with https:// or http://",
        ),
    ),
    # Root certificates --------------------------------------------------------------------------------
    row(
        "connection-root-certificates-not-pem",
        lambda env: env.get_run(env.with_roots(env.pki.not_pem if env.pki else "")),
        ClarifaiConfigurationError,
        wrong="holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' block)",
        fix=FIX_ROOTS,
    ),
    row(
        "connection-root-certificates-missing",
        lambda env: env.get_run(env.with_roots(env.tmp_path / "missing-ca.pem")),
        ClarifaiConfigurationError,
        wrong="Cannot read root certificates",
        fix=FIX_ROOTS,
    ),
    row(
        "connection-root-certificates-a-folder",
        lambda env: env.get_run(env.with_roots(env.tmp_path)),
        ClarifaiConfigurationError,
        wrong="Is a directory",
        fix=FIX_ROOTS,
        modes=("sync",),
    ),
    row(
        "connection-root-certificates-hang",
        hung_roots,
        ClarifaiConfigurationError,
        wrong="did not finish within 0.05 s: is the file on a network mount that hangs?",
        fix="Put the CA file on a local disk",
        modes=("asyncio",),
    ),
    # The TLS handshake --------------------------------------------------------------------------------
    row(
        "tls-certificate-from-another-ca",
        lambda env: env.get_run(env.with_roots(env.pki.other_ca if env.pki else "")),
        ClarifaiConfigurationError,
        wrong="is not trusted (unable to get local issuer certificate)",
        fix="Set the Airflow connection's extra 'root_certificates_path' to a PEM file of the CA",
        also=(NOT_RETRIED,),
    ),
    row(
        "tls-certificate-for-another-host",
        lambda env: env.get_run(
            env.define(
                env.serve(
                    tls_cert=env.pki.other_host_cert if env.pki else b"",
                    tls_key=env.pki.other_host_key if env.pki else b"",
                    tls_root_certificates_path=env.pki.ca if env.pki else None,
                )
            )
        ),
        ClarifaiConfigurationError,
        wrong="is not valid for the host name 127.0.0.1 (hostname verification failed)",
        fix="Write the connection's host exactly as the certificate names it",
        also=(NOT_RETRIED,),
    ),
    row(
        "tls-https-to-a-plaintext-server",
        https_to_plaintext,
        ClarifaiConfigurationError,
        wrong="did not answer with TLS",
        fix="write the connection's host as http://HOST:PORT",
        also=(NOT_RETRIED,),
    ),
    # The size of a message ----------------------------------------------------------------------------
    row(
        "server-answer-too-large",
        too_large_answer,
        ClarifaiRequestRejectedError,
        wrong="The answer was larger than gRPC allows",
        fix="fewer items per page (per_page)",
        also=("this is not throttling",),
    ),
)


def cases() -> Iterator[Any]:
    for row in ROWS:
        for mode in row.modes:
            yield pytest.param(row, mode, id=row.id if len(row.modes) == 1 else f"{row.id}-{mode}")


@pytest.mark.parametrize(("row", "mode"), list(cases()))
def test_bad_connection(
    row: BadInput,
    mode: str,
    emulator: ClarifaiEmulator,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    unused_tcp_port: int,
) -> None:
    caplog.set_level(logging.WARNING)
    env = TlsEnv(emulator, tmp_path, monkeypatch, mode, closed_port=unused_tcp_port, pki=pki)
    check_row(row, env, secrets=SECRETS, single_attempt=caplog)


def test_the_table_is_well_formed() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)
    for row in ROWS:
        assert row.id.startswith(("connection-", "tls-", "server-")), row.id
        assert set(row.modes) <= set(BOTH), row.id
        assert row.wrong != row.fix, row.id


def test_the_retry_log_shows_retries_where_there_are_some(
    emulator: ClarifaiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    unused_tcp_port: int,
) -> None:
    """The control of the table's "attempts" check: an unreachable host is retried, and the log says so."""
    from airflow_provider_clarifai.exceptions import ClarifaiUnavailableError
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

    caplog.set_level(logging.WARNING)
    connection = dict(emulator.airflow_connection(), host=f"http://127.0.0.1:{unused_tcp_port}")
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", json.dumps(connection))
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002, max_elapsed=30)
    with ClarifaiHook("nowhere", retry_policy=policy) as hook, pytest.raises(ClarifaiUnavailableError):
        hook.get_run(V1, "run-running")
    assert [record for record in caplog.records if record.name == "airflow_provider_clarifai.retry"]
