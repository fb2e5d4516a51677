from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from airflow_provider_clarifai import ids as ids_module
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import (
    PipelineVersionIds,
    read_config_lock,
    resolve_pipeline_version_ids,
    validate_run_id,
    validate_run_ids,
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
    # chmod cannot stop root from reading, so make the read itself fail.
    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
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
