from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_clarifai import ids as ids_module
from airflow_provider_clarifai.config_lock import (
    MAX_LOCK_FILE_BYTES,
    MAX_LOCK_FILE_DEPTH,
    MAX_LOCK_FILE_VALUES,
    MAX_PATH_LENGTH,
)
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import (
    MAX_ID_LENGTH,
    MAX_INPUT_ARG_NAME_LENGTH,
    MAX_INPUT_ARGS,
    MAX_INPUT_ARGS_BYTES,
    MAX_RUN_IDS,
    PipelineVersionIds,
    read_config_lock,
    resolve_pipeline_version_ids,
    validate_optional_id,
    validate_run_id,
    validate_run_ids,
    validate_start_args,
)

LOCK_YAML = """\
pipeline:
  id: file-pipeline
  user_id: file-user
  app_id: file-app
  version_id: fileversion0001
  orchestration_spec:
    argo_orchestration_spec: "apiVersion: argoproj.io/v1alpha1"
"""

STEP_LOCK_YAML = """\
id: stepA
hash: 1234abcd
pipeline_step:
  id: stepA
  user_id: file-user
  app_id: file-app
"""


def write(directory: Path, text: str, name: str = "config-lock.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    return write(tmp_path, LOCK_YAML)


def test_read_config_lock_maps_keys_and_ignores_others(lock_file: Path) -> None:
    assert read_config_lock(lock_file) == {
        "user_id": "file-user",
        "app_id": "file-app",
        "pipeline_id": "file-pipeline",
        "pipeline_version_id": "fileversion0001",
    }


def test_read_config_lock_returns_only_present_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: only-pipeline\n  step_directories: [stepA]\n")
    assert read_config_lock(path) == {"pipeline_id": "only-pipeline"}


def test_read_config_lock_accepts_str_and_relative_with_base_dir(lock_file: Path) -> None:
    ids = read_config_lock("config-lock.yaml", base_dir=str(lock_file.parent))
    assert ids["pipeline_version_id"] == "fileversion0001"
    assert read_config_lock(str(lock_file)) == ids


FULL_LOCK = {
    "user_id": "file-user",
    "app_id": "file-app",
    "pipeline_id": "file-pipeline",
    "pipeline_version_id": "fileversion0001",
}
CONN_DEFAULTS = {"default_user_id": "conn-user", "default_app_id": "conn-app"}


@pytest.mark.parametrize(
    ("lock_text", "kwargs", "expected"),
    [
        pytest.param(
            None,
            {"user_id": "u", "app_id": "a", "pipeline_id": "p", "pipeline_version_id": "v"},
            ("u", "a", "p", "v"),
            id="explicit-only",
        ),
        pytest.param(
            LOCK_YAML,
            {},
            ("file-user", "file-app", "file-pipeline", "fileversion0001"),
            id="file-only",
        ),
        pytest.param(
            None,
            {"pipeline_id": "p", "pipeline_version_id": "v", **CONN_DEFAULTS},
            ("conn-user", "conn-app", "p", "v"),
            id="connection-defaults-for-user-and-app",
        ),
        pytest.param(
            LOCK_YAML,
            {"user_id": "u", "app_id": "a", "pipeline_id": "p", "pipeline_version_id": "v", **CONN_DEFAULTS},
            ("u", "a", "p", "v"),
            id="explicit-beats-file-and-connection",
        ),
        pytest.param(
            LOCK_YAML,
            CONN_DEFAULTS,
            ("file-user", "file-app", "file-pipeline", "fileversion0001"),
            id="file-beats-connection",
        ),
        pytest.param(
            "pipeline:\n  id: file-pipeline\n  version_id: fileversion0001\n  app_id: file-app\n",
            {"pipeline_version_id": "v", **CONN_DEFAULTS},
            ("conn-user", "file-app", "file-pipeline", "v"),
            id="mixture-one-id-from-each-place",
        ),
        pytest.param(
            None,
            {"user_id": " u ", "app_id": "a", "pipeline_id": "p\n", "pipeline_version_id": "v"},
            ("u", "a", "p", "v"),
            id="surrounding-whitespace-stripped",
        ),
        pytest.param(
            None,
            {"pipeline_id": "p", "pipeline_version_id": "v", "user_id": "u", "default_app_id": "conn-app"},
            ("u", "conn-app", "p", "v"),
            id="explicit-user-connection-app",
        ),
        pytest.param(
            LOCK_YAML,
            {"default_user_id": "", "default_app_id": "  "},
            ("file-user", "file-app", "file-pipeline", "fileversion0001"),
            id="blank-connection-defaults-are-unset",
        ),
    ],
)
def test_precedence(tmp_path: Path, lock_text: str | None, kwargs: dict, expected: tuple) -> None:
    if lock_text is not None:
        kwargs = {**kwargs, "config_lock_path": write(tmp_path, lock_text)}
    ids = resolve_pipeline_version_ids(**kwargs)
    assert (ids.user_id, ids.app_id, ids.pipeline_id, ids.pipeline_version_id) == expected


def test_connection_defaults_never_fill_pipeline_ids() -> None:
    with pytest.raises(ClarifaiConfigurationError, match="pipeline_id, pipeline_version_id") as info:
        resolve_pipeline_version_ids(**CONN_DEFAULTS)
    assert "user_id" not in str(info.value).splitlines()[0]


def test_as_dict_is_primitives_and_ids_are_frozen() -> None:
    ids = PipelineVersionIds("u", "a", "p", "v")
    assert ids.as_dict() == {"user_id": "u", "app_id": "a", "pipeline_id": "p", "pipeline_version_id": "v"}
    assert PipelineVersionIds(**ids.as_dict()) == ids
    with pytest.raises(dataclasses.FrozenInstanceError):
        ids.user_id = "other"  # type: ignore[misc]


def test_relative_path_resolved_against_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dag_folder = tmp_path / "dags" / "team"
    (dag_folder / "pipeline").mkdir(parents=True)
    write(dag_folder / "pipeline", LOCK_YAML)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ids = resolve_pipeline_version_ids(config_lock_path="pipeline/config-lock.yaml", base_dir=dag_folder)
    assert ids.pipeline_id == "file-pipeline"


def test_relative_path_resolved_against_cwd_without_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pipeline").mkdir()
    write(tmp_path / "pipeline", LOCK_YAML)
    monkeypatch.chdir(tmp_path)
    ids = resolve_pipeline_version_ids(config_lock_path=Path("pipeline") / "config-lock.yaml")
    assert ids.pipeline_version_id == "fileversion0001"


def test_absolute_path_ignores_base_dir(lock_file: Path, tmp_path: Path) -> None:
    ids = resolve_pipeline_version_ids(config_lock_path=str(lock_file), base_dir=tmp_path / "unrelated")
    assert ids.app_id == "file-app"


def test_no_implicit_lookup_of_config_lock(lock_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lock_file.parent)
    with pytest.raises(ClarifaiConfigurationError, match="config_lock_path was not given"):
        resolve_pipeline_version_ids(base_dir=lock_file.parent)


def test_yaml_is_imported_lazily() -> None:
    # Airflow itself imports PyYAML, so sys.modules cannot tell; check the module's own namespace.
    assert not hasattr(ids_module, "yaml")


# Errors: missing ids.


def test_missing_ids_without_file_name_every_place_looked() -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(pipeline_id="p", defaults_source="the Airflow connection 'clarifai_x'")
    message = str(info.value)
    assert message.startswith("Missing Clarifai ids: user_id, app_id, pipeline_version_id.")
    assert "the parameters user_id, app_id, pipeline_version_id: not given" in message
    assert "config_lock_path was not given" in message
    assert "the defaults in the Airflow connection 'clarifai_x': no user_id, app_id set" in message
    assert "To fix: pass user_id, app_id, pipeline_version_id explicitly" in message


def test_missing_ids_with_file_name_the_file_and_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: p\n  user_id: u\n")
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path=path)
    message = str(info.value)
    assert message.startswith("Missing Clarifai ids: app_id, pipeline_version_id.")
    assert f"config-lock.yaml {path}: has no pipeline.app_id, pipeline.version_id" in message
    assert "the defaults in the Airflow connection: no app_id set" in message
    assert "config.yaml has no version_id" not in message


def test_missing_pipeline_ids_do_not_blame_connection(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(user_id="u", app_id="a")
    message = str(info.value)
    assert "pipeline_id, pipeline_version_id" in message
    assert "the defaults in" not in message


def test_missing_version_from_config_yaml_hints_at_lockfile(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: p\n  user_id: u\n  app_id: a\n", name="config.yaml")
    with pytest.raises(ClarifaiConfigurationError, match=r"config\.yaml has no version_id"):
        resolve_pipeline_version_ids(config_lock_path=path)


# Errors: the path.


def test_path_not_found_gives_absolute_path_and_base(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path="missing/config-lock.yaml", base_dir=tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'missing' / 'config-lock.yaml'}" in message
    assert "does not exist" in message
    assert f"resolved against base_dir {tmp_path}" in message
    assert "deployed with the DAG on every worker" in message


def test_path_not_found_relative_to_cwd_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClarifaiConfigurationError) as info:
        read_config_lock("nope.yaml")
    message = str(info.value)
    assert f"{tmp_path / 'nope.yaml'} (relative path 'nope.yaml' resolved against the current" in message
    assert "as no base_dir was given" in message


def test_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="is a directory, not a file") as info:
        resolve_pipeline_version_ids(config_lock_path=tmp_path)
    assert "given as an absolute path" in str(info.value)


def test_path_unreadable(lock_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod cannot stop root from reading, so make the open itself fail, for this file only.
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if os.fspath(path) == str(lock_file):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path=lock_file)
    message = str(info.value)
    assert f"{lock_file}" in message
    assert "cannot be read: Permission denied" in message
    assert "readable by the Airflow worker's user" in message


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        pytest.param(42, "got int (42)", id="int"),
        pytest.param(b"config-lock.yaml", "got bytes", id="bytes"),
        pytest.param(["config-lock.yaml"], "got list", id="list"),
        pytest.param("", "is an empty string", id="empty"),
    ],
)
def test_config_lock_path_wrong_type(value: object, phrase: str) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="config_lock_path") as info:
        resolve_pipeline_version_ids(config_lock_path=value)  # type: ignore[arg-type]
    assert phrase in str(info.value)


# Errors: the content.


def test_not_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: p\n  version_id: [unclosed\n")
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path=path)
    message = str(info.value)
    assert "is not valid YAML" in message
    assert "at line 4, column 1" in message
    assert "clarifai pipeline upload" in message


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="is empty"):
        read_config_lock(write(tmp_path, ""))


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="holds a list at the top level, not a mapping"):
        read_config_lock(write(tmp_path, "- id: p\n"))


def test_no_pipeline_key(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        read_config_lock(write(tmp_path, "model:\n  id: m\n"))
    assert "has no 'pipeline:' key (top-level keys: model)" in str(info.value)


def test_pipeline_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="'pipeline' is a str, not a mapping of ids"):
        read_config_lock(write(tmp_path, "pipeline: hello-world-pipeline\n"))


def test_step_lockfile_rejected_with_specific_message(tmp_path: Path) -> None:
    (tmp_path / "stepA").mkdir()
    path = write(tmp_path / "stepA", STEP_LOCK_YAML)
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path=path)
    message = str(info.value)
    assert "is a pipeline step's lockfile" in message
    assert (
        "give the pipeline's config-lock.yaml (the one next to config.yaml at the pipeline's root)" in message
    )


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        pytest.param("version_id: 123456", "pipeline.version_id (pipeline_version_id)", id="int-version"),
        pytest.param("id: [a, b]", "pipeline.id (pipeline_id)", id="list-id"),
        pytest.param("app_id:", "pipeline.app_id (app_id)", id="null-app"),
        pytest.param("user_id: '  '", "pipeline.user_id (user_id)", id="whitespace-user"),
    ],
)
def test_file_id_wrong_type_names_field_source_and_type(tmp_path: Path, line: str, phrase: str) -> None:
    path = write(tmp_path, f"pipeline:\n  {line}\n")
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(config_lock_path=path)
    message = str(info.value)
    assert phrase in message
    assert str(path) in message


def test_file_int_version_says_int_and_to_quote(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  version_id: 123456\n")
    with pytest.raises(ClarifaiConfigurationError) as info:
        read_config_lock(path)
    message = str(info.value)
    assert "is an int (123456), not a string" in message
    assert "quote it" in message


def test_invalid_file_id_fails_even_when_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  version_id: 123456\n")
    with pytest.raises(ClarifaiConfigurationError, match=r"pipeline\.version_id"):
        resolve_pipeline_version_ids(
            user_id="u", app_id="a", pipeline_id="p", pipeline_version_id="v", config_lock_path=path
        )


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        pytest.param("pipeline_version_id", 123, "is an int (123), not a string", id="int"),
        pytest.param("pipeline_id", ["p"], "is a list (['p']), not a string", id="list"),
        pytest.param("app_id", "", "is empty", id="empty"),
        pytest.param("user_id", "   ", "is only whitespace", id="whitespace-only"),
        pytest.param("pipeline_id", "my pipeline", "contains whitespace", id="inner-whitespace"),
        pytest.param("app_id", "alfrick/pipelines-1", "contains '/'", id="slash"),
    ],
)
def test_explicit_id_invalid(field: str, value: object, phrase: str) -> None:
    ids = {"user_id": "u", "app_id": "a", "pipeline_id": "p", "pipeline_version_id": "v", field: value}
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(**ids)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"Parameter {field} ")
    assert phrase in message
    assert "leave it None to take it from config-lock.yaml" in message


def test_connection_default_invalid_names_source() -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        resolve_pipeline_version_ids(
            app_id="a",
            pipeline_id="p",
            pipeline_version_id="v",
            default_user_id="a user",
            defaults_source="the Airflow connection 'clarifai_default'",
        )
    message = str(info.value)
    assert "The default user_id from the Airflow connection 'clarifai_default' contains whitespace" in message


def test_unused_invalid_connection_default_is_ignored() -> None:
    ids = resolve_pipeline_version_ids(
        user_id="u", app_id="a", pipeline_id="p", pipeline_version_id="v", default_user_id="a user"
    )
    assert ids.user_id == "u"


def test_errors_fail_the_task_without_retry() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException):
        resolve_pipeline_version_ids()


# Run ids.


def test_validate_run_id_strips() -> None:
    assert validate_run_id("  abc123\n") == "abc123"


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        pytest.param(None, "is empty (null)", id="none"),
        pytest.param(7, "is an int (7), not a string", id="int"),
        pytest.param("", "is empty", id="empty"),
        pytest.param(" \t", "is only whitespace", id="whitespace"),
        pytest.param("ab cd", "contains whitespace", id="inner-space"),
        pytest.param("runs/abc", "contains '/'", id="slash"),
    ],
)
def test_validate_run_id_rejects(value: object, phrase: str) -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        validate_run_id(value, what="run_id")
    message = str(info.value)
    assert message.startswith("run_id ")
    assert phrase in message


def test_validate_run_id_default_name() -> None:
    with pytest.raises(ClarifaiConfigurationError, match=r"^pipeline_version_run_id is empty"):
        validate_run_id("")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(" one ", ["one"], id="single-string"),
        pytest.param(["b", "a", "c"], ["b", "a", "c"], id="list-keeps-order"),
        pytest.param(("x", " y"), ["x", "y"], id="tuple"),
    ],
)
def test_validate_run_ids_accepts(value: object, expected: list[str]) -> None:
    assert validate_run_ids(value) == expected


def test_validate_run_ids_rejects_empty_list() -> None:
    with pytest.raises(ClarifaiConfigurationError, match="pipeline_version_run_ids is empty"):
        validate_run_ids([])


def test_validate_run_ids_rejects_non_string_item_by_index() -> None:
    with pytest.raises(ClarifaiConfigurationError, match=r"pipeline_version_run_ids\[1\] is an int"):
        validate_run_ids(["a", 2])


def test_validate_run_ids_names_duplicates() -> None:
    with pytest.raises(ClarifaiConfigurationError) as info:
        validate_run_ids(["a", "b", " a", "c", "b", "a"])
    assert str(info.value) == "pipeline_version_run_ids repeats a, b. Pass each run id once."


@pytest.mark.parametrize("value", [{"a"}, None, 3, {"a": 1}])
def test_validate_run_ids_rejects_other_containers(value: object) -> None:
    with pytest.raises(ClarifaiConfigurationError, match="must be a string or a list of strings"):
        validate_run_ids(value)


def test_validate_run_ids_spots_a_list_rendered_as_text() -> None:
    with pytest.raises(ClarifaiConfigurationError, match="render_template_as_native_obj"):
        validate_run_ids("['a', 'b']")


def test_pathlike_of_bytes_rejected() -> None:
    class BytesPath(os.PathLike):
        def __fspath__(self) -> bytes:
            return b"/x"

    with pytest.raises(ClarifaiConfigurationError, match="config_lock_path must be a path"):
        read_config_lock(BytesPath())


# Bounds: every id, list and file has a size limit, and a message never repeats more than a little of
# what it refuses. Lengths are asserted, not times: a bounded message is a cheap one.

MAX_MESSAGE = 1_000
HUGE = "x" * 10_000_000


def refused(call: Callable[[], object]) -> str:
    """The message of the ClarifaiConfigurationError ``call`` raises; checked to be short."""
    with pytest.raises(ClarifaiConfigurationError) as info:
        call()
    message = str(info.value)
    assert len(message) < MAX_MESSAGE, message[:2000]
    return message


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda value: validate_run_id(value), id="run-id"),
        pytest.param(lambda value: validate_run_ids(["a", value]), id="run-id-in-a-list"),
        pytest.param(
            lambda value: resolve_pipeline_version_ids(
                user_id="u", app_id="a", pipeline_id=value, pipeline_version_id="v"
            ),
            id="explicit-pipeline-id",
        ),
        pytest.param(
            lambda value: resolve_pipeline_version_ids(
                pipeline_id="p", pipeline_version_id="v", default_user_id=value, default_app_id="a"
            ),
            id="connection-default",
        ),
        pytest.param(lambda value: PipelineVersionIds("u", "a", "p", value), id="ids-built-by-hand"),
        pytest.param(lambda value: validate_start_args(None, value, None), id="nodepool-id"),
        pytest.param(lambda value: validate_start_args(None, "np", value), id="compute-cluster-id"),
        pytest.param(lambda value: validate_optional_id(value, what="nodepool_id"), id="optional-id"),
    ],
)
def test_id_length_bound(call: Callable[[str], object]) -> None:
    at_bound = "a" * MAX_ID_LENGTH
    call(at_bound)  # Accepted.
    call(f"  {at_bound}\n")  # Surrounding whitespace is stripped before the length counts.
    message = refused(lambda: call(at_bound + "a"))
    assert f"is {MAX_ID_LENGTH + 1} characters long" in message
    assert f"a Clarifai id has at most {MAX_ID_LENGTH}" in message
    message = refused(lambda: call(HUGE))
    assert "is 10,000,000 characters long ('xxxx" in message


def test_id_bound_is_the_documented_one() -> None:
    assert MAX_ID_LENGTH == 255
    # The longest ids Clarifai makes or this provider derives fit: uuid4 hex and str(uuid).
    validate_run_id(uuid.uuid4().hex)
    validate_run_id(str(uuid.uuid4()))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("run\x00one", r"'\x00'", id="nul"),
        pytest.param("run\x7f", r"'\x7f'", id="delete"),
        pytest.param("run\u200bone", r"'\u200b'", id="zero-width-space"),
        pytest.param("run\u202eone", r"'\u202e'", id="right-to-left-override"),
        pytest.param("run\x1bone", r"'\x1b'", id="escape"),
    ],
)
def test_control_and_invisible_characters_refused(value: str, shown: str) -> None:
    message = refused(lambda: validate_run_id(value))
    assert f"contains the control or invisible character {shown}" in message


@pytest.mark.parametrize(
    "value",
    ["demo-user", "v1", "nightly_training", "48862434906f482e94a2ec638a4233a1", "v1.2", "Émile", "me"],
)
def test_ids_of_any_printable_characters_still_pass(value: str) -> None:
    # Only what can never be part of an id is refused; the service judges the rest.
    assert validate_run_id(value) == value
    assert PipelineVersionIds(value, value, value, value).user_id == value


def test_ids_built_by_hand_are_checked_and_stripped() -> None:
    assert PipelineVersionIds(" u ", "a", "p", "v\n") == PipelineVersionIds("u", "a", "p", "v")
    message = refused(lambda: PipelineVersionIds("u", "a", "my pipeline", "v"))
    assert message.startswith("PipelineVersionIds pipeline_id contains whitespace ('my pipeline')")
    assert "build the ids with ClarifaiHook.resolve_ids" in message
    with pytest.raises(ClarifaiConfigurationError, match="PipelineVersionIds user_id is an int"):
        PipelineVersionIds(1, "a", "p", "v")  # type: ignore[arg-type]


def test_value_of_wrong_type_is_described_briefly() -> None:
    message = refused(lambda: validate_run_id(list(range(1_000_000))))
    assert "is a list ([0, 1, 2, ... (1,000,000 items)]), not a string" in message
    message = refused(lambda: validate_run_id({"id": HUGE}))
    assert "is a dict ({'id': 'xxxx" in message


def test_run_ids_count_bound() -> None:
    at_bound = [f"r{i}" for i in range(MAX_RUN_IDS)]
    assert validate_run_ids(at_bound) == at_bound
    message = refused(lambda: validate_run_ids([*at_bound, "one-more"]))
    assert message.startswith(f"pipeline_version_run_ids has {MAX_RUN_IDS + 1:,} ids, more than the 10,000")
    assert "Split them over several tasks" in message
    # Counted before the items are checked: a million bad items cost one message.
    refused(lambda: validate_run_ids([HUGE] * 1_000_000))


def test_repeated_run_ids_named_up_to_five() -> None:
    message = refused(lambda: validate_run_ids([f"run-{i}-{'y' * 200}" for i in range(1_000)] * 2))
    assert message.startswith("pipeline_version_run_ids repeats run-0-yyy")
    assert "y..., run-1-yyy" in message
    assert "and 995 more. Pass each run id once." in message


def test_run_ids_string_that_looks_like_a_list_is_quoted_briefly() -> None:
    message = refused(lambda: validate_run_ids("[" + HUGE + "]"))
    assert "looks like a list rendered to text by a template" in message


# Bounds: the arguments of a new run.


def test_input_args_name_length_bound() -> None:
    validate_start_args({"n" * MAX_INPUT_ARG_NAME_LENGTH: "1"}, None, None)
    message = refused(lambda: validate_start_args({"n" * (MAX_INPUT_ARG_NAME_LENGTH + 1): "1"}, None, None))
    assert f"parameter name {MAX_INPUT_ARG_NAME_LENGTH + 1} characters long" in message
    assert "Use the name the pipeline's Argo spec declares" in message


def test_input_args_count_bound() -> None:
    validate_start_args({f"p{i}": "1" for i in range(MAX_INPUT_ARGS)}, None, None)
    message = refused(
        lambda: validate_start_args({f"p{i}": "1" for i in range(MAX_INPUT_ARGS + 1)}, None, None)
    )
    assert f"input_args has {MAX_INPUT_ARGS + 1:,} parameters, more than the 1,000 a run takes" in message


def test_input_args_size_bound_counts_utf8_bytes() -> None:
    assert MAX_INPUT_ARGS_BYTES == 1024 * 1024
    name = "data"
    validate_start_args({name: "a" * (MAX_INPUT_ARGS_BYTES - len(name))}, None, None)
    message = refused(lambda: validate_start_args({name: "a" * (MAX_INPUT_ARGS_BYTES - 3)}, None, None))
    assert "input_args take more than 1,048,576 bytes (1 MiB) in all" in message
    assert "Pass large data by reference" in message
    # "é" is two bytes: half as many characters reach the bound.
    refused(lambda: validate_start_args({name: "é" * (MAX_INPUT_ARGS_BYTES // 2)}, None, None))
    message = refused(lambda: validate_start_args({"a": "1", "b": HUGE}, None, None))
    assert "the value of 'b' alone is 10,000,000 characters" in message


@pytest.mark.parametrize(
    ("input_args", "phrase"),
    [
        pytest.param({"epochs": 3}, "got {'epochs': 3} (the value of 'epochs' is an int)", id="int-value"),
        pytest.param({"": "1"}, "(a parameter name is '')", id="empty-name"),
        pytest.param({1: "1"}, "(a parameter name is 1)", id="int-name"),
        pytest.param(["epochs", "3"], "got ['epochs', '3']", id="a-list"),
        pytest.param({"a": "1", "b": 2, "c": "3", "d": "4"}, "'c': '3', ... (4 items)}", id="long-mapping"),
    ],
)
def test_input_args_shape_errors(input_args: object, phrase: str) -> None:
    message = refused(lambda: validate_start_args(input_args, None, None))
    assert message.startswith("input_args must map parameter names to string values")
    assert phrase in message


def test_input_args_of_a_huge_wrong_value_quoted_briefly() -> None:
    message = refused(lambda: validate_start_args({HUGE: 1}, None, None))
    assert "(the value of 'xxxx" in message


@pytest.mark.parametrize(
    ("nodepool_id", "compute_cluster_id", "phrase"),
    [
        pytest.param("np 1", None, "nodepool_id contains whitespace ('np 1')", id="nodepool-space"),
        pytest.param("np", "cc/1", "compute_cluster_id contains '/'", id="cluster-slash"),
        pytest.param(5, None, "nodepool_id is an int (5), not a string", id="nodepool-int"),
        pytest.param(None, "cc", "compute_cluster_id needs nodepool_id", id="cluster-alone"),
        pytest.param("", "cc", "compute_cluster_id needs nodepool_id", id="empty-nodepool-is-absent"),
    ],
)
def test_nodepool_ids_checked(nodepool_id: object, compute_cluster_id: object, phrase: str) -> None:
    assert phrase in refused(lambda: validate_start_args(None, nodepool_id, compute_cluster_id))


def test_nodepool_ids_valid_or_absent() -> None:
    validate_start_args({"a": "1"}, "np-1", "cc-1")
    validate_start_args(None, "np-1", None)
    validate_start_args(None, "", "")
    assert validate_optional_id(None, what="x") is None
    assert validate_optional_id("", what="x") is None
    assert validate_optional_id(" np ", what="x") == "np"


# Bounds: config-lock.yaml.

BOMB = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    + "pipeline:\n  id: p\n  version_id: *i\n"
)


def test_alias_bomb_refused_at_its_first_anchor(tmp_path: Path) -> None:
    message = refused(lambda: read_config_lock(write(tmp_path, BOMB)))
    assert "uses a YAML anchor or alias ('&name' or '*name') at line 1, column 4" in message
    assert "Regenerate it with `clarifai pipeline upload`" in message
    assert "aliases can expand a small file into gigabytes" in message


@pytest.mark.parametrize(
    ("text", "at"),
    [
        pytest.param("pipeline:\n  id: *p\n", "at line 2, column 7", id="alias-alone"),
        pytest.param("pipeline: &p\n  id: p\n", "at line 1, column 11", id="anchor-alone"),
        pytest.param(f"pipeline:\n  id: *{HUGE[:500_000]}\n", "at line 2, column 7", id="long-alias-name"),
        pytest.param("base: &b {id: p}\npipeline:\n  <<: *b\n", "at line 1, column 7", id="merge-key"),
    ],
)
def test_anchors_and_aliases_refused(tmp_path: Path, text: str, at: str) -> None:
    message = refused(lambda: read_config_lock(write(tmp_path, text)))
    assert f"uses a YAML anchor or alias ('&name' or '*name') {at}" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("!!str 123", "'tag:yaml.org,2002:str'", id="str-tag"),
        pytest.param(
            "!!python/object:os.system x",
            "'tag:yaml.org,2002:python/object:os.syste'... (41 characters)",
            id="python",
        ),
        pytest.param("!custom {a: 1}", "'!custom'", id="custom-tag-on-a-mapping"),
        pytest.param("! p", "'!'", id="non-specific-tag"),
    ],
)
def test_tags_refused(tmp_path: Path, value: str, shown: str) -> None:
    message = refused(lambda: read_config_lock(write(tmp_path, f"pipeline:\n  version_id: {value}\n")))
    assert f"has the YAML tag {shown} at line 2, column 15" in message
    assert "Remove the tag (to make a value a string, quote it)" in message


def nested(depth: int) -> str:
    """A lockfile whose deepest value is ``depth`` mappings and lists down (the top level is 1)."""
    return "pipeline:\n  id: p\n  x: " + "[" * (depth - 2) + "]" * (depth - 2) + "\n"


def test_nesting_depth_bound(tmp_path: Path) -> None:
    assert read_config_lock(write(tmp_path, nested(MAX_LOCK_FILE_DEPTH))) == {"pipeline_id": "p"}
    message = refused(lambda: read_config_lock(write(tmp_path, nested(MAX_LOCK_FILE_DEPTH + 1))))
    assert f"nests mappings and lists more than {MAX_LOCK_FILE_DEPTH} levels deep at line 3" in message
    block = (
        "pipeline:\n  id: p\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)) + "  " * 101 + "v\n"
    )
    assert "levels deep" in refused(lambda: read_config_lock(write(tmp_path, block)))


def test_nesting_far_deeper_than_python_recursion_refused(tmp_path: Path) -> None:
    # Without a bound, building the objects would end in RecursionError, not a message.
    text = "pipeline:\n  x: " + "[" * 100_000 + "]" * 100_000 + "\n"
    message = refused(lambda: read_config_lock(write(tmp_path, text)))
    assert "nest" in message


def values(count: int) -> str:
    """A lockfile of ``count`` values: the top mapping, 'pipeline', its mapping, 'id', 'p', 'x', a list."""
    return "pipeline:\n  id: p\n  x: [" + ", ".join(["1"] * (count - 7)) + "]\n"


def test_value_count_bound(tmp_path: Path) -> None:
    assert read_config_lock(write(tmp_path, values(MAX_LOCK_FILE_VALUES))) == {"pipeline_id": "p"}
    message = refused(lambda: read_config_lock(write(tmp_path, values(MAX_LOCK_FILE_VALUES + 1))))
    assert f"holds more than {MAX_LOCK_FILE_VALUES:,} values (scalars, mappings and lists)" in message


def sized(size: int) -> str:
    """A valid lockfile of exactly ``size`` bytes."""
    head = "pipeline:\n  id: p\n  notes: '"
    return head + "a" * (size - len(head) - 2) + "'\n"


def test_file_size_bound(tmp_path: Path) -> None:
    assert MAX_LOCK_FILE_BYTES == 1024 * 1024
    path = write(tmp_path, sized(MAX_LOCK_FILE_BYTES))
    assert path.stat().st_size == MAX_LOCK_FILE_BYTES
    assert read_config_lock(path) == {"pipeline_id": "p"}
    message = refused(lambda: read_config_lock(write(tmp_path, sized(MAX_LOCK_FILE_BYTES + 1))))
    assert "is larger than 1,048,576 bytes (1 MiB)" in message
    assert "Check config_lock_path" in message
    assert "Regenerate it with `clarifai pipeline upload` if it is the right file" in message


def test_file_size_is_read_not_stat_ed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At most the bound and one byte are read, whatever the file's size.
    path = write(tmp_path, sized(10 * MAX_LOCK_FILE_BYTES))
    real_read = os.read
    asked: list[int] = []

    def read(fd: int, count: int) -> bytes:
        asked.append(count)
        return real_read(fd, count)

    monkeypatch.setattr(os, "read", read)
    refused(lambda: read_config_lock(path))
    assert sum(asked) <= MAX_LOCK_FILE_BYTES + 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "config-lock.yaml"
    os.mkfifo(fifo)
    message = refused(lambda: read_config_lock(fifo))
    assert "is not a regular file (it is a device, FIFO or socket)" in message


def test_long_id_in_file_quoted_briefly(tmp_path: Path) -> None:
    path = write(tmp_path, f"pipeline:\n  id: {HUGE[:500_000]}\n")
    message = refused(lambda: read_config_lock(path))
    assert "pipeline.id (pipeline_id)" in message
    assert "is 500,000 characters long" in message


def test_list_id_in_file_described_briefly(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: [" + ", ".join(["abc"] * 5_000) + "]\n")
    assert "is a list (['abc', 'abc', 'abc', ... (5,000 items)]), not a string" in refused(
        lambda: read_config_lock(path)
    )


def test_many_long_top_level_keys_listed_briefly(tmp_path: Path) -> None:
    path = write(tmp_path, "".join(f"{'k' * 1_000}{i}: 1\n" for i in range(500)))
    message = refused(lambda: read_config_lock(path))
    assert "has no 'pipeline:' key (top-level keys: kkk" in message
    assert ", and 490 more)" in message


def test_yaml_problem_quoted_briefly(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  id: !" + "x" * 500_000 + "!y z\n")
    message = refused(lambda: read_config_lock(path))
    assert "is not valid YAML" in message


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        pytest.param("x" * (MAX_PATH_LENGTH + 1), f"is {MAX_PATH_LENGTH + 1:,} characters long", id="long"),
        pytest.param(HUGE, "is 10,000,000 characters long", id="huge"),
        pytest.param("pipeline/config-lock.yaml\x00", "contains a NUL character", id="nul"),
    ],
)
def test_config_lock_path_bounds(path: str, phrase: str) -> None:
    message = refused(lambda: read_config_lock(path))
    assert message.startswith("config_lock_path ")
    assert phrase in message
    assert "Pass the path of the pipeline's config-lock.yaml" in message


def test_base_dir_bounds(tmp_path: Path) -> None:
    message = refused(lambda: read_config_lock("config-lock.yaml", base_dir=HUGE))
    assert message.startswith("base_dir is 10,000,000 characters long")


def test_generated_lockfile_in_the_examples_still_reads() -> None:
    example = (
        Path(__file__).parents[1] / "example_dags" / "pipelines" / "nightly-training" / "config-lock.yaml"
    )
    assert read_config_lock(example) == {
        "user_id": "demo-user",
        "app_id": "pipelines-app",
        "pipeline_id": "nightly-training",
        "pipeline_version_id": "v1",
    }


def test_yaml_dumped_like_clarifai_upload_reads(tmp_path: Path) -> None:
    # `clarifai pipeline upload` writes with a SafeDumper subclass, multi-line strings as literal blocks.
    import yaml

    class LiteralBlockDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    LiteralBlockDumper.add_representer(str, represent_str)
    data = {
        "pipeline": {
            "id": "p",
            "user_id": "u",
            "app_id": "a",
            "version_id": "0123",
            "orchestration_spec": {"argo_orchestration_spec": "apiVersion: v1\nkind: Workflow\n" * 200},
            "config": {"step_version_secrets": {"step-a": {"API_KEY": "users/u/secrets/k"}}},
            "compute": {"instance": "g5.xlarge", "nodepools": [{"id": "np"}, {"id": "np2"}]},
        }
    }
    text = yaml.dump(data, Dumper=LiteralBlockDumper, default_flow_style=False, sort_keys=False)
    assert read_config_lock(write(tmp_path, text)) == {
        "user_id": "u",
        "app_id": "a",
        "pipeline_id": "p",
        "pipeline_version_id": "0123",
    }


def test_pure_python_yaml_refuses_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PyYAML built without libyaml has no CSafeLoader; the checks must not depend on it.
    import yaml

    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    assert read_config_lock(write(tmp_path, LOCK_YAML))["pipeline_version_id"] == "fileversion0001"
    assert "anchor or alias" in refused(lambda: read_config_lock(write(tmp_path, BOMB)))
    assert "YAML tag" in refused(lambda: read_config_lock(write(tmp_path, "pipeline:\n  id: !!str p\n")))
    text = nested(MAX_LOCK_FILE_DEPTH + 1)
    assert "levels deep" in refused(lambda: read_config_lock(write(tmp_path, text)))
