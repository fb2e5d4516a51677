"""The one place that resolves Clarifai ids.

A pipeline version is named by four ids: ``user_id``, ``app_id``, ``pipeline_id`` and
``pipeline_version_id``. Each is taken, in this order, from:

1. the explicit parameter, if it is not ``None``;
2. the ``config-lock.yaml`` that ``clarifai pipeline upload`` writes, if ``config_lock_path`` is given;
3. for ``user_id`` and ``app_id`` only, the defaults of the Airflow connection.

A ``config-lock.yaml`` is only ever read from an explicit path, never looked for: DAG folders are shared
by many DAGs, and an implicit lookup would make a task's ids depend on the worker's current directory.

Every problem raises :class:`~airflow_provider_clarifai.exceptions.ClarifaiConfigurationError` with what
is wrong and how to fix it, before anything is sent to Clarifai. Importing this module is cheap (PyYAML
is imported only when a file is read) because DAG files import it through the operators.

.. seealso:: ``docs/id-resolution.rst``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError

_ID_FIELDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")
# Key under ``pipeline:`` in config-lock.yaml for each id.
_LOCK_KEYS = {
    "user_id": "user_id",
    "app_id": "app_id",
    "pipeline_id": "id",
    "pipeline_version_id": "version_id",
}
_CONNECTION_DEFAULT_FIELDS = ("user_id", "app_id")
# Top-level keys of a pipeline step's lockfile (stepX/config-lock.yaml), which has no ``pipeline:``.
_STEP_LOCK_KEYS = frozenset({"pipeline_step", "hash"})
_LOCK_FILE_HINT = (
    "the pipeline's config-lock.yaml, written by `clarifai pipeline upload` next to config.yaml at the "
    "pipeline's root"
)


@dataclass(frozen=True)
class PipelineVersionIds:
    """The ids that name one Clarifai pipeline version.

    :param user_id: the Clarifai user that owns the app.
    :param app_id: the app that holds the pipeline.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the pipeline's version.
    """

    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str

    def as_dict(self) -> dict[str, str]:
        """The ids as a plain dict of strings, for trigger kwargs and XCom."""
        return {
            "user_id": self.user_id,
            "app_id": self.app_id,
            "pipeline_id": self.pipeline_id,
            "pipeline_version_id": self.pipeline_version_id,
        }


def resolve_pipeline_version_ids(
    *,
    user_id: str | None = None,
    app_id: str | None = None,
    pipeline_id: str | None = None,
    pipeline_version_id: str | None = None,
    config_lock_path: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    default_user_id: str | None = None,
    default_app_id: str | None = None,
    defaults_source: str = "the Airflow connection",
) -> PipelineVersionIds:
    """Resolve the four ids of a pipeline version from parameters, config-lock.yaml and defaults.

    An explicit value of ``None`` means "not given"; any other explicit value must be a valid id. A given
    ``config_lock_path`` is always read and checked, even when every id is passed explicitly.

    :param user_id: explicit user id; wins over the file and the connection.
    :param app_id: explicit app id; wins over the file and the connection.
    :param pipeline_id: explicit pipeline id; wins over the file.
    :param pipeline_version_id: explicit pipeline version id; wins over the file.
    :param config_lock_path: path of the pipeline's ``config-lock.yaml``; a relative path is resolved
        against ``base_dir``, else against the current working directory.
    :param base_dir: the folder a relative ``config_lock_path`` is relative to (operators pass the DAG
        file's folder).
    :param default_user_id: the connection's default user id, used when neither parameter nor file has
        one. ``None`` or blank means unset.
    :param default_app_id: the connection's default app id, as ``default_user_id``.
    :param defaults_source: what the defaults come from, as named in error messages.
    :raises ClarifaiConfigurationError: an id is missing or invalid, or the file cannot be used.
    """
    explicit = {
        "user_id": user_id,
        "app_id": app_id,
        "pipeline_id": pipeline_id,
        "pipeline_version_id": pipeline_version_id,
    }
    resolved: dict[str, str] = {}
    for field, value in explicit.items():
        if value is not None:
            other_places = "config-lock.yaml"
            if field in _CONNECTION_DEFAULT_FIELDS:
                other_places += " or the connection"
            resolved[field] = _check_id(
                value,
                source=f"Parameter {field}",
                fix=f"Pass {field} as a single id string, or leave it None to take it from {other_places}.",
            )

    lock_path: Path | None = None
    lock_ids: dict[str, str] = {}
    if config_lock_path is not None:
        lock_path, how = _resolve_lock_path(config_lock_path, base_dir)
        lock_ids = _load_lock_ids(lock_path, how)

    defaults = {"user_id": default_user_id, "app_id": default_app_id}
    for field in _ID_FIELDS:
        if field in resolved:
            continue
        if field in lock_ids:
            resolved[field] = lock_ids[field]
            continue
        default = defaults.get(field)
        if default is None or (isinstance(default, str) and not default.strip()):
            continue
        resolved[field] = _check_id(
            default,
            source=f"The default {field} from {defaults_source}",
            fix=f"Fix it in {defaults_source}, or pass {field} explicitly.",
        )

    missing = [field for field in _ID_FIELDS if field not in resolved]
    if missing:
        raise ClarifaiConfigurationError(_missing_message(missing, lock_path, defaults_source))
    return PipelineVersionIds(**resolved)


def read_config_lock(
    path: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Read the ids under ``pipeline:`` in a pipeline's ``config-lock.yaml``.

    :param path: the file; a relative path is resolved against ``base_dir``, else the current directory.
    :param base_dir: the folder a relative ``path`` is relative to.
    :return: the ids the file has, keyed ``user_id``, ``app_id``, ``pipeline_id``,
        ``pipeline_version_id``; absent ids are left out, other keys of the file are ignored.
    :raises ClarifaiConfigurationError: the file is missing, unreadable, not YAML, not a pipeline's
        lockfile, or has an id that is not a valid string.
    """
    resolved_path, how = _resolve_lock_path(path, base_dir)
    return _load_lock_ids(resolved_path, how)


def validate_start_args(input_args: object, nodepool_id: object, compute_cluster_id: object) -> None:
    """Check the arguments of a new run before anything is sent.

    :param input_args: argument overrides: parameter names to string values, or ``None``.
    :param nodepool_id: the nodepool, or ``None``.
    :param compute_cluster_id: the nodepool's compute cluster, or ``None``.
    :raises ClarifaiConfigurationError: if they are malformed.
    """
    if input_args is not None and (
        not isinstance(input_args, Mapping)
        or not all(
            isinstance(name, str) and name and isinstance(value, str) for name, value in input_args.items()
        )
    ):
        raise ClarifaiConfigurationError(
            "input_args must map parameter names to string values, for example "
            "{'learning_rate': '0.01'}; got " + _short_repr(input_args)
        )
    if compute_cluster_id and not nodepool_id:
        raise ClarifaiConfigurationError("compute_cluster_id needs nodepool_id: give both or neither.")


def validate_run_id(run_id: object, *, what: str = "pipeline_version_run_id") -> str:
    """Check one pipeline version run id and return it stripped.

    :param run_id: the value to check.
    :param what: the name of the value, as named in error messages.
    :return: the id without surrounding whitespace.
    :raises ClarifaiConfigurationError: not a string, empty, or containing whitespace or ``/``.
    """
    return _check_id(
        run_id,
        source=what,
        fix="Pass the run's id exactly as Clarifai reports it (one id, such as a uuid4 hex).",
    )


def validate_run_ids(run_ids: object) -> list[str]:
    """Check one run id or a list of run ids, keeping their order.

    :param run_ids: a string (one id) or a list or tuple of strings.
    :return: the stripped ids, in the order given.
    :raises ClarifaiConfigurationError: the list is empty, an item is invalid, or an id is repeated.
    """
    if isinstance(run_ids, str):
        if run_ids.strip().startswith(("[", "(")):
            raise ClarifaiConfigurationError(
                f"pipeline_version_run_ids is the string {_short_repr(run_ids)}, which looks like a list "
                "rendered to text by a template. Pass a real list, or set render_template_as_native_obj="
                "True on the DAG so templates render Python objects."
            )
        return [validate_run_id(run_ids, what="pipeline_version_run_ids")]
    if not isinstance(run_ids, list | tuple):
        raise ClarifaiConfigurationError(
            f"pipeline_version_run_ids must be a string or a list of strings, got "
            f"{type(run_ids).__name__} ({_short_repr(run_ids)}). Pass one id or a list of ids."
        )
    if not run_ids:
        raise ClarifaiConfigurationError(
            "pipeline_version_run_ids is empty. Pass at least one pipeline version run id."
        )
    checked = [validate_run_id(item, what=f"pipeline_version_run_ids[{i}]") for i, item in enumerate(run_ids)]
    seen: set[str] = set()
    repeated: list[str] = []
    for run_id in checked:
        if run_id in seen and run_id not in repeated:
            repeated.append(run_id)
        seen.add(run_id)
    if repeated:
        raise ClarifaiConfigurationError(
            f"pipeline_version_run_ids repeats {', '.join(repeated)}. Pass each run id once."
        )
    return checked


def _check_id(value: object, *, source: str, fix: str) -> str:
    if value is None:
        problem = "is empty (null)"
    elif not isinstance(value, str):
        problem = f"is {_article(type(value).__name__)} ({_short_repr(value)}), not a string"
    elif not value.strip():
        problem = "is empty" if not value else "is only whitespace"
    elif "/" in value:
        problem = f"contains '/' ({value!r}): give the single id, not a URL or a path of ids"
    elif any(char.isspace() for char in value.strip()):
        problem = f"contains whitespace ({value!r})"
    else:
        return value.strip()
    raise ClarifaiConfigurationError(f"{source} {problem}. {fix}")


def _resolve_lock_path(path: object, base_dir: object) -> tuple[Path, str]:
    """The absolute path of the lockfile and a phrase saying how it was resolved."""
    text = _path_text(path, "config_lock_path")
    if os.path.isabs(text):
        return Path(os.path.normpath(text)), "given as an absolute path"
    if base_dir is not None:
        base = os.path.abspath(_path_text(base_dir, "base_dir"))
        how = f"relative path {text!r} resolved against base_dir {base}"
    else:
        base = os.getcwd()
        how = (
            f"relative path {text!r} resolved against the current working directory {base}, "
            "as no base_dir was given"
        )
    return Path(os.path.normpath(os.path.join(base, text))), how


def _path_text(value: object, name: str) -> str:
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str):
        raise ClarifaiConfigurationError(
            f"{name} must be a path (str or os.PathLike[str]), got {type(value).__name__} "
            f"({_short_repr(value)}). Pass the path of {_LOCK_FILE_HINT}."
        )
    if not text.strip():
        raise ClarifaiConfigurationError(
            f"{name} is an empty string. Pass the path of {_LOCK_FILE_HINT}, or None to not use a file."
        )
    return text


def _load_lock_ids(path: Path, how: str) -> dict[str, str]:
    import yaml  # Lazy: keeps importing DAG files (and so this module) cheap.

    where = f"config-lock.yaml {path} ({how})"
    fix = f"Check config_lock_path: it must name {_LOCK_FILE_HINT}, deployed with the DAG on every worker."
    if path.is_dir():
        raise ClarifaiConfigurationError(f"{where} is a directory, not a file. {fix}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ClarifaiConfigurationError(f"{where} does not exist. {fix}") from None
    except OSError as exc:
        raise ClarifaiConfigurationError(
            f"{where} cannot be read: {exc.strerror or exc}. Make it readable by the Airflow worker's user."
        ) from None

    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ClarifaiConfigurationError(
            f"{where} is not valid YAML: {problem}{at}. Fix the file, or regenerate it with "
            "`clarifai pipeline upload`."
        ) from None

    regenerate = f"Point config_lock_path at {_LOCK_FILE_HINT}."
    if data is None:
        raise ClarifaiConfigurationError(f"{where} is empty. {regenerate}")
    if not isinstance(data, dict):
        raise ClarifaiConfigurationError(
            f"{where} holds {_article(type(data).__name__)} at the top level, not a mapping with a "
            f"'pipeline:' key. {regenerate}"
        )
    if "pipeline" not in data and data.keys() & _STEP_LOCK_KEYS:
        raise ClarifaiConfigurationError(
            f"{where} is a pipeline step's lockfile (top-level id, hash, pipeline_step); give the "
            "pipeline's config-lock.yaml (the one next to config.yaml at the pipeline's root)."
        )
    if "pipeline" not in data:
        found = ", ".join(sorted(str(key) for key in data)) or "none"
        raise ClarifaiConfigurationError(
            f"{where} has no 'pipeline:' key (top-level keys: {found}). {regenerate}"
        )
    pipeline = data["pipeline"]
    if not isinstance(pipeline, dict):
        raise ClarifaiConfigurationError(
            f"{where}: 'pipeline' is {_article(type(pipeline).__name__)}, not a mapping of ids. {regenerate}"
        )

    ids: dict[str, str] = {}
    for field in _ID_FIELDS:
        key = _LOCK_KEYS[field]
        if key in pipeline:
            ids[field] = _check_id(
                pipeline[key],
                source=f"pipeline.{key} ({field}) in {where}",
                fix=f"Fix it in the file (quote it if it is a number) or pass {field} explicitly.",
            )
    return ids


def _missing_message(missing: list[str], lock_path: Path | None, defaults_source: str) -> str:
    lines = [f"Missing Clarifai ids: {', '.join(missing)}. Looked in:"]
    lines.append(f"- the parameters {', '.join(missing)}: not given;")
    if lock_path is None:
        lines.append("- config-lock.yaml: none, config_lock_path was not given;")
    else:
        keys = ", ".join(f"pipeline.{_LOCK_KEYS[field]}" for field in missing)
        lines.append(f"- config-lock.yaml {lock_path}: has no {keys};")
        if "pipeline_version_id" in missing and lock_path.name != "config-lock.yaml":
            lines.append("  (a pipeline's config.yaml has no version_id; its config-lock.yaml has)")
    missing_defaults = [field for field in missing if field in _CONNECTION_DEFAULT_FIELDS]
    if missing_defaults:
        lines.append(f"- the defaults in {defaults_source}: no {', '.join(missing_defaults)} set;")
    fixes = [f"pass {', '.join(missing)} explicitly", f"set config_lock_path to {_LOCK_FILE_HINT}"]
    if missing_defaults:
        fixes.append(f"set the default {' and '.join(missing_defaults)} in {defaults_source}")
    lines.append("To fix: " + ", or ".join(fixes) + ".")
    return "\n".join(lines)


def _article(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
