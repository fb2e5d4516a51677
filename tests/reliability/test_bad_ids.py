"""Bad ids, by class: too long, too many, invisible characters, and lockfiles that cost more than they say.

The same classes of input as ``tests/test_ids.py`` checks at the unit level, fed through the public
surface: :meth:`ClarifaiHook.resolve_ids`, the hook's calls (blocking and asyncio), and the operators and
the sensor through ``execute``. Each row is checked by the bad-input table's own check (exception class,
what is wrong, what to do, no token anywhere in the exception chain, no run changed, the number of writes
and of requests the emulator got), and, here, that the message is short whatever the size of the input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.config_lock import MAX_LOCK_FILE_BYTES
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import MAX_ID_LENGTH, MAX_RUN_IDS, PipelineVersionIds
from tests.reliability.test_bad_input import (
    BOTH,
    GOOD_LOCK,
    IDS,
    PASS_RUN_ID,
    V1,
    BadInput,
    Cancel,
    Env,
    Pause,
    Resume,
    Run,
    Sensor,
)
from tests.reliability.test_bad_input import test_bad_input as check_bad_input

pytestmark = pytest.mark.integration

#: Longest message a row may produce, whatever the size of its input.
MAX_MESSAGE = 1_000
HUGE = "x" * 10_000_000
ONE_OVER = "r" * (MAX_ID_LENGTH + 1)
TOO_MANY = [f"run-{i}" for i in range(MAX_RUN_IDS + 1)]
#: Nine aliases of nine aliases, eight levels down: 9**9 strings once expanded.
BOMB = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    + GOOD_LOCK.replace("version_id: v1", "version_id: *i")
)
DEEP = GOOD_LOCK + "  extra: " + "[" * 200 + "]" * 200 + "\n"
OVERSIZED = GOOD_LOCK + "  notes: '" + "a" * MAX_LOCK_FILE_BYTES + "'\n"
TOO_LONG = "is 10,000,000 characters long"
REGENERATE = "Regenerate it with `clarifai pipeline upload`"
LEAVE_NONE = "leave it None to take it from config-lock.yaml"

ROWS: tuple[BadInput, ...] = (
    # The hook -------------------------------------------------------------------------------------
    BadInput(
        "hook-resolve-ids-huge-pipeline-id",
        "hook",
        lambda env: env.hook().resolve_ids(**dict(IDS, pipeline_id=HUGE)),
        ClarifaiConfigurationError,
        wrong=f"Parameter pipeline_id {TOO_LONG}",
        fix=LEAVE_NONE,
    ),
    BadInput(
        "hook-resolve-ids-user-id-one-over",
        "hook",
        lambda env: env.hook().resolve_ids(**dict(IDS, user_id="u" * (MAX_ID_LENGTH + 1))),
        ClarifaiConfigurationError,
        wrong=f"Parameter user_id is {MAX_ID_LENGTH + 1} characters long",
        fix=LEAVE_NONE,
    ),
    BadInput(
        "hook-resolve-ids-version-with-a-nul",
        "hook",
        lambda env: env.hook().resolve_ids(**dict(IDS, pipeline_version_id="v1\x00")),
        ClarifaiConfigurationError,
        wrong=r"contains the control or invisible character '\x00'",
        fix=LEAVE_NONE,
    ),
    BadInput(
        "hook-get-run-huge-run-id",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id {TOO_LONG}",
        fix=PASS_RUN_ID,
        modes=BOTH,
    ),
    BadInput(
        "hook-get-run-run-id-one-over",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, ONE_OVER),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id is {MAX_ID_LENGTH + 1} characters long",
        fix=PASS_RUN_ID,
    ),
    BadInput(
        "hook-get-run-zero-width-space",
        "hook",
        lambda env: env.call(env.hook(), "get_run", V1, "run-running\u200b"),
        ClarifaiConfigurationError,
        wrong=r"contains the control or invisible character '\u200b'",
        fix=PASS_RUN_ID,
    ),
    BadInput(
        "hook-get-run-ids-built-by-hand",
        "hook",
        lambda env: env.call(env.hook(), "get_run", PipelineVersionIds(HUGE, "a", "p", "v"), "run-running"),
        ClarifaiConfigurationError,
        wrong=f"PipelineVersionIds user_id {TOO_LONG}",
        fix="build the ids with ClarifaiHook.resolve_ids",
    ),
    BadInput(
        "hook-logs-huge-run-id",
        "hook",
        lambda env: env.call(env.hook(), "get_run_logs", V1, HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id {TOO_LONG}",
        fix=PASS_RUN_ID,
        modes=BOTH,
    ),
    BadInput(
        "hook-change-too-many-runs",
        "hook",
        lambda env: env.call(env.hook(), "set_runs_status", V1, TOO_MANY, "cancel"),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_ids has 10,001 ids, more than the 10,000",
        fix="Split them over several tasks",
        modes=BOTH,
    ),
    BadInput(
        "hook-change-a-batch-with-one-huge-id",
        "hook",
        # The good run is not changed either: the batch is refused as a whole, before any write.
        lambda env: env.call(env.hook(), "set_runs_status", V1, ["run-running", HUGE], "pause"),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_ids[1] {TOO_LONG}",
        fix=PASS_RUN_ID,
    ),
    BadInput(
        "hook-start-under-a-huge-run-id",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, run_id=HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id {TOO_LONG}",
        fix=PASS_RUN_ID,
        modes=BOTH,
    ),
    BadInput(
        "hook-start-with-a-huge-argument",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, input_args={"epochs": "3", "data": HUGE}),
        ClarifaiConfigurationError,
        wrong="input_args take more than 1,048,576 bytes (1 MiB) in all",
        fix="Pass large data by reference",
    ),
    BadInput(
        "hook-start-with-a-huge-argument-name",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, input_args={HUGE: "1"}),
        ClarifaiConfigurationError,
        wrong="input_args has a parameter name 10,000,000 characters long",
        fix="Use the name the pipeline's Argo spec declares",
    ),
    BadInput(
        "hook-start-on-a-nodepool-path",
        "hook",
        lambda env: env.call(env.hook(), "post_run", V1, nodepool_id="cc-1/np-1", compute_cluster_id="cc-1"),
        ClarifaiConfigurationError,
        wrong="nodepool_id contains '/' ('cc-1/np-1')",
        fix="Pass nodepool_id exactly as Clarifai shows it, or None",
    ),
    # The id resolver and config-lock.yaml ---------------------------------------------------------
    BadInput(
        "ids-lockfile-alias-bomb",
        "ids",
        lambda env: env.hook().resolve_ids(config_lock_path=env.lock(BOMB)),
        ClarifaiConfigurationError,
        wrong="uses a YAML anchor or alias ('&name' or '*name') at line 1, column 4",
        fix=REGENERATE,
    ),
    BadInput(
        "ids-lockfile-alias-bomb-despite-explicit-ids",
        "ids",
        lambda env: env.run(Run, config_lock_path=env.lock(BOMB)),
        ClarifaiConfigurationError,
        wrong="uses a YAML anchor or alias",
        fix=REGENERATE,
        stage="run",
    ),
    BadInput(
        "ids-lockfile-over-a-mebibyte",
        "ids",
        lambda env: env.hook().resolve_ids(config_lock_path=env.lock(OVERSIZED)),
        ClarifaiConfigurationError,
        wrong="is larger than 1,048,576 bytes (1 MiB)",
        fix="Check config_lock_path",
    ),
    BadInput(
        "ids-lockfile-python-tag",
        "ids",
        lambda env: env.hook().resolve_ids(
            config_lock_path=env.lock(
                GOOD_LOCK.replace("version_id: v1", "version_id: !!python/name:os.system")
            )
        ),
        ClarifaiConfigurationError,
        wrong="has the YAML tag 'tag:yaml.org,2002:python/name:os.system'",
        fix="Remove the tag",
    ),
    BadInput(
        "ids-lockfile-nested-too-deep",
        "ids",
        lambda env: env.hook().resolve_ids(config_lock_path=env.lock(DEEP)),
        ClarifaiConfigurationError,
        wrong="nests mappings and lists more than 64 levels deep",
        fix=REGENERATE,
    ),
    BadInput(
        "ids-lockfile-long-version-id",
        "ids",
        lambda env: env.hook().resolve_ids(
            config_lock_path=env.lock(GOOD_LOCK.replace("version_id: v1", f"version_id: {HUGE[:500_000]}"))
        ),
        ClarifaiConfigurationError,
        wrong="pipeline.version_id (pipeline_version_id) in config-lock.yaml",
        fix="pass pipeline_version_id explicitly",
        also=("is 500,000 characters long",),
    ),
    BadInput(
        "ids-lockfile-path-huge",
        "ids",
        lambda env: env.hook().resolve_ids(config_lock_path=HUGE),
        ClarifaiConfigurationError,
        wrong=f"config_lock_path {TOO_LONG}",
        fix="Pass the path of the pipeline's config-lock.yaml",
    ),
    # Pause, resume and cancel ---------------------------------------------------------------------
    BadInput(
        "pause-huge-run-id",
        "pause",
        lambda env: env.run(Pause, run_ids=HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_ids {TOO_LONG}",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "resume-huge-pipeline-id",
        "resume",
        lambda env: env.run(Resume, ids=dict(IDS, pipeline_id=HUGE), run_ids="run-paused"),
        ClarifaiConfigurationError,
        wrong=f"Parameter pipeline_id {TOO_LONG}",
        fix=LEAVE_NONE,
        stage="run",
    ),
    BadInput(
        "cancel-too-many-runs",
        "cancel",
        lambda env: env.run(Cancel, run_ids=TOO_MANY),
        ClarifaiConfigurationError,
        wrong="pipeline_version_run_ids has 10,001 ids",
        fix="Split them over several tasks",
        stage="run",
    ),
    BadInput(
        "cancel-alias-bomb",
        "cancel",
        lambda env: env.run(Cancel, ids={}, run_ids="run-running", config_lock_path=env.lock(BOMB)),
        ClarifaiConfigurationError,
        wrong="uses a YAML anchor or alias",
        fix=REGENERATE,
        stage="run",
    ),
    # Starting a run -------------------------------------------------------------------------------
    BadInput(
        "run-huge-run-id",
        "run",
        lambda env: env.run(Run, pipeline_version_run_id=HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id {TOO_LONG}",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "run-huge-argument",
        "run",
        lambda env: env.run(Run, input_args={"data": HUGE}),
        ClarifaiConfigurationError,
        wrong="input_args take more than 1,048,576 bytes (1 MiB) in all",
        fix="Pass large data by reference",
        stage="run",
    ),
    BadInput(
        "run-nodepool-with-a-space",
        "run",
        lambda env: env.run(Run, nodepool_id="np 1", compute_cluster_id="cc-1"),
        ClarifaiConfigurationError,
        wrong="nodepool_id contains whitespace ('np 1')",
        fix="Pass nodepool_id exactly as Clarifai shows it",
        stage="run",
    ),
    BadInput(
        "run-huge-user-id",
        "run",
        lambda env: env.run(Run, ids=dict(IDS, user_id=HUGE)),
        ClarifaiConfigurationError,
        wrong=f"Parameter user_id {TOO_LONG}",
        fix=LEAVE_NONE,
        stage="run",
    ),
    # The sensor -----------------------------------------------------------------------------------
    BadInput(
        "sensor-huge-run-id",
        "sensor",
        lambda env: env.run(Sensor, pipeline_version_run_id=HUGE),
        ClarifaiConfigurationError,
        wrong=f"pipeline_version_run_id {TOO_LONG}",
        fix=PASS_RUN_ID,
        stage="run",
    ),
    BadInput(
        "sensor-huge-app-id",
        "sensor",
        lambda env: env.run(Sensor, ids=dict(IDS, app_id=HUGE), pipeline_version_run_id="run-running"),
        ClarifaiConfigurationError,
        wrong=f"Parameter app_id {TOO_LONG}",
        fix=LEAVE_NONE,
        stage="run",
    ),
    BadInput(
        "sensor-oversized-lockfile",
        "sensor",
        lambda env: env.run(
            Sensor, ids={}, pipeline_version_run_id="run-running", config_lock_path=env.lock(OVERSIZED)
        ),
        ClarifaiConfigurationError,
        wrong="is larger than 1,048,576 bytes (1 MiB)",
        fix="Check config_lock_path",
        stage="run",
    ),
)

SURFACES = ("hook", "ids", "pause", "resume", "cancel", "run", "sensor")


def cases() -> list[Any]:
    return [
        pytest.param(row, mode, id=row.id if len(row.modes) == 1 else f"{row.id}-{mode}")
        for row in ROWS
        for mode in row.modes
    ]


@pytest.mark.parametrize(("row", "mode"), cases())
def test_bad_ids(
    row: BadInput,
    mode: str,
    emulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
) -> None:
    errors: list[BaseException] = []

    def act(env: Env) -> Any:
        try:
            return row.act(env)
        except Exception as error:
            errors.append(error)
            raise

    check_bad_input(dataclasses.replace(row, act=act), mode, emulator, tmp_path, monkeypatch, unused_tcp_port)
    (error,) = errors
    # A bounded message: the input is never repeated in full, however large.
    assert len(str(error)) < MAX_MESSAGE, str(error)[:2_000]
    assert all(len(note) < MAX_MESSAGE for note in getattr(error, "__notes__", ()))


def test_the_table_covers_every_surface() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)
    assert {row.surface for row in ROWS} == set(SURFACES)
    for row in ROWS:
        assert row.id.startswith(row.surface), row.id
        # Every row is refused before anything is sent.
        assert row.calls == 0 and row.writes == 0, row.id
