"""The one place that resolves Clarifai ids.

A pipeline version is named by four ids: ``user_id``, ``app_id``, ``pipeline_id`` and
``pipeline_version_id``. Each is taken, in this order, from:

1. the explicit parameter, if it is not ``None``;
2. the ``config-lock.yaml`` that ``clarifai pipeline upload`` writes, if ``config_lock_path`` is given;
3. for ``user_id`` and ``app_id`` only, the defaults of the Airflow connection.

A ``config-lock.yaml`` is only ever read from an explicit path, never looked for: DAG folders are shared
by many DAGs, and an implicit lookup would make a task's ids depend on the worker's current directory.

Every problem raises :class:`~airflow_provider_clarifai.exceptions.ClarifaiConfigurationError` with what
is wrong and how to fix it, before anything is sent to Clarifai. Every value is bounded (see the ``MAX_``
constants) and every message quotes user input through :func:`~airflow_provider_clarifai.validate.quote`,
so a 10 MB value costs a short message. Reading ``config-lock.yaml`` is in
:mod:`airflow_provider_clarifai.config_lock`. Importing this module is cheap (PyYAML is imported only when
a file is read) because DAG files import it through the operators.

.. seealso:: ``docs/id-resolution.rst``
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from airflow_provider_clarifai.config_lock import (
    LOCK_FILE_HINT,
    article,
    read_pipeline_block,
    resolve_lock_path,
)
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.validate import quote

#: Longest id, in characters. Clarifai documents 1 to 32 characters for names made in its Portal, but
#: not a limit for the API, where a client may choose a run's id; this is the provider's own bound,
#: generous enough for any id Clarifai makes (uuid4 hex run ids are 32) or a client derives.
MAX_ID_LENGTH = 255
#: Most run ids one call or task takes (the hook sends them in batches; this bounds the whole).
MAX_RUN_IDS = 10_000
#: Most ``input_args`` of one run.
MAX_INPUT_ARGS = 1_000
#: Longest ``input_args`` parameter name, in characters (Argo parameter names are short identifiers).
MAX_INPUT_ARG_NAME_LENGTH = 255
#: Most bytes of ``input_args`` names and values together, UTF-8 encoded: far below gRPC's default
#: 4 MiB message limit, far above any sensible argument (pass large data by reference).
MAX_INPUT_ARGS_BYTES = 1024 * 1024

_ID_FIELDS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")
# Key under ``pipeline:`` in config-lock.yaml for each id.
_LOCK_KEYS = {
    "user_id": "user_id",
    "app_id": "app_id",
    "pipeline_id": "id",
    "pipeline_version_id": "version_id",
}
_CONNECTION_DEFAULT_FIELDS = ("user_id", "app_id")
_REPEATS_SHOWN = 5


@dataclass(frozen=True)
class PipelineVersionIds:
    """The ids that name one Clarifai pipeline version.

    Each id is checked (and stripped of surrounding whitespace) when the object is built, however it is
    built: by :func:`resolve_pipeline_version_ids`, by a trigger from its kwargs, or directly in a DAG.

    :param user_id: the Clarifai user that owns the app.
    :param app_id: the app that holds the pipeline.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the pipeline's version.
    :raises ClarifaiConfigurationError: an id is not a valid id.
    """

    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str

    def __post_init__(self) -> None:
        # The hook sends these ids as they are, so an object built by hand must not skip the checks the
        # resolver makes: a 10 MB id would otherwise reach the API, the logs and the retry notes.
        for field in fields(self):
            value = getattr(self, field.name)
            checked = _check_id(
                value,
                source=f"PipelineVersionIds {field.name}",
                fix="Pass each id as Clarifai shows it, or build the ids with ClarifaiHook.resolve_ids.",
            )
            if checked is not value:
                object.__setattr__(self, field.name, checked)

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
        lock_path, how = resolve_lock_path(config_lock_path, base_dir)
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
    :raises ClarifaiConfigurationError: the file is missing, unreadable, over 1 MiB, not plain YAML (with
        anchors, aliases, tags or deep nesting), not a pipeline's lockfile, or has an invalid id.
    """
    resolved_path, how = resolve_lock_path(path, base_dir)
    return _load_lock_ids(resolved_path, how)


def validate_start_args(input_args: object, nodepool_id: object, compute_cluster_id: object) -> None:
    """Check the arguments of a new run before anything is sent.

    :param input_args: argument overrides: parameter names to string values, or ``None``. At most
        ``MAX_INPUT_ARGS`` of them, names of at most ``MAX_INPUT_ARG_NAME_LENGTH`` characters, and
        ``MAX_INPUT_ARGS_BYTES`` of UTF-8 in all.
    :param nodepool_id: the nodepool, or ``None`` (or ``""``) to let Clarifai choose.
    :param compute_cluster_id: the nodepool's compute cluster, or ``None`` (or ``""``).
    :raises ClarifaiConfigurationError: if they are malformed or too large.
    """
    if input_args is not None:
        _check_input_args(input_args)
    nodepool = validate_optional_id(nodepool_id, what="nodepool_id")
    cluster = validate_optional_id(compute_cluster_id, what="compute_cluster_id")
    if cluster and not nodepool:
        raise ClarifaiConfigurationError("compute_cluster_id needs nodepool_id: give both or neither.")


def validate_optional_id(value: object, *, what: str, fix: str | None = None) -> str | None:
    """Check an id that may be left out, such as a nodepool or compute cluster id.

    :param value: the value to check; ``None`` and ``""`` mean "not given".
    :param what: the name of the value, as named in error messages.
    :param fix: what to do, for the message; a default one says to pass the id or ``None``.
    :return: the id without surrounding whitespace, or ``None`` if not given.
    :raises ClarifaiConfigurationError: given, but not a valid id.
    """
    if value is None or value == "":
        return None
    return _check_id(value, source=what, fix=fix or f"Pass {what} exactly as Clarifai shows it, or None.")


def validate_run_id(run_id: object, *, what: str = "pipeline_version_run_id") -> str:
    """Check one pipeline version run id and return it stripped.

    :param run_id: the value to check.
    :param what: the name of the value, as named in error messages.
    :return: the id without surrounding whitespace.
    :raises ClarifaiConfigurationError: not a string, empty, longer than ``MAX_ID_LENGTH``, or containing
        whitespace, ``/`` or a control character.
    """
    return _check_id(
        run_id,
        source=what,
        fix="Pass the run's id exactly as Clarifai reports it (one id, such as a uuid4 hex).",
    )


def validate_run_ids(run_ids: object) -> list[str]:
    """Check one run id or a list of run ids, keeping their order.

    :param run_ids: a string (one id) or a list or tuple of at most ``MAX_RUN_IDS`` strings.
    :return: the stripped ids, in the order given.
    :raises ClarifaiConfigurationError: the list is empty or too long, an item is invalid, or an id is
        repeated.
    """
    if isinstance(run_ids, str):
        if run_ids.lstrip()[:1] in ("[", "("):
            raise ClarifaiConfigurationError(
                f"pipeline_version_run_ids is the string {quote(run_ids)}, which looks like a list "
                "rendered to text by a template. Pass a real list, or set render_template_as_native_obj="
                "True on the DAG so templates render Python objects."
            )
        return [validate_run_id(run_ids, what="pipeline_version_run_ids")]
    if not isinstance(run_ids, list | tuple):
        raise ClarifaiConfigurationError(
            f"pipeline_version_run_ids must be a string or a list of strings, got "
            f"{type(run_ids).__name__} ({quote(run_ids)}). Pass one id or a list of ids."
        )
    if not run_ids:
        raise ClarifaiConfigurationError(
            "pipeline_version_run_ids is empty. Pass at least one pipeline version run id."
        )
    if len(run_ids) > MAX_RUN_IDS:
        raise ClarifaiConfigurationError(
            f"pipeline_version_run_ids has {len(run_ids):,} ids, more than the {MAX_RUN_IDS:,} one call "
            f"or task takes. Split them over several tasks (or mapped tasks) of at most {MAX_RUN_IDS:,}."
        )
    checked = [validate_run_id(item, what=f"pipeline_version_run_ids[{i}]") for i, item in enumerate(run_ids)]
    seen: set[str] = set()
    repeated: dict[str, None] = {}  # A dict keeps the order of first repeats, with set-fast lookups.
    for run_id in checked:
        if run_id in seen:
            repeated[run_id] = None
        seen.add(run_id)
    if repeated:
        names = [_shorten(run_id, 60) for run_id in itertools.islice(repeated, _REPEATS_SHOWN)]
        more = f" and {len(repeated) - len(names):,} more" if len(repeated) > len(names) else ""
        raise ClarifaiConfigurationError(
            f"pipeline_version_run_ids repeats {', '.join(names)}{more}. Pass each run id once."
        )
    return checked


def _check_id(value: object, *, source: str, fix: str) -> str:
    """The id stripped, or an error naming ``source``, the problem and ``fix``.

    The length is checked before anything that walks the characters, and every value put in the message
    goes through ``quote``: a 10 MB value costs neither time nor a 10 MB message.
    """
    if value is None:
        problem = "is empty (null)"
    elif not isinstance(value, str):
        problem = f"is {article(type(value).__name__)} ({quote(value)}), not a string"
    elif not (text := value.strip()):
        problem = "is empty" if not value else "is only whitespace"
    elif len(text) > MAX_ID_LENGTH:
        problem = (
            f"is {len(text):,} characters long ({quote(text)}); a Clarifai id has at most {MAX_ID_LENGTH}"
        )
    elif "/" in text:
        problem = f"contains '/' ({quote(text)}): give the single id, not a URL or a path of ids"
    elif any(char.isspace() for char in text):
        problem = f"contains whitespace ({quote(text)})"
    elif (hidden := next((char for char in text if not char.isprintable()), None)) is not None:
        # Control and invisible characters (NUL, zero-width space, ...) are in no Clarifai id, and would
        # make an id that looks right in the UI and the log fail as "not found".
        problem = f"contains the control or invisible character {hidden!a} ({quote(text)})"
    else:
        return text
    raise ClarifaiConfigurationError(f"{source} {problem}. {fix}")


def _check_input_args(input_args: object) -> None:
    shape = (
        "input_args must map parameter names to string values, for example {'learning_rate': '0.01'}; "
        f"got {quote(input_args)}"
    )
    if not isinstance(input_args, Mapping):
        raise ClarifaiConfigurationError(shape)
    if len(input_args) > MAX_INPUT_ARGS:
        raise ClarifaiConfigurationError(
            f"input_args has {len(input_args):,} parameters, more than the {MAX_INPUT_ARGS:,} a run takes. "
            "Group related values into one parameter (a JSON string, for example)."
        )
    size = 0
    for name, value in input_args.items():
        if not isinstance(name, str) or not name:
            raise ClarifaiConfigurationError(f"{shape} (a parameter name is {quote(name)})")
        if not isinstance(value, str):
            kind = article(type(value).__name__)
            raise ClarifaiConfigurationError(f"{shape} (the value of {quote(name)} is {kind})")
        if len(name) > MAX_INPUT_ARG_NAME_LENGTH:
            raise ClarifaiConfigurationError(
                f"input_args has a parameter name {len(name):,} characters long ({quote(name)}), over the "
                f"limit of {MAX_INPUT_ARG_NAME_LENGTH}. Use the name the pipeline's Argo spec declares."
            )
        size += _utf8_size(name) + _utf8_size(value)
        if size > MAX_INPUT_ARGS_BYTES:
            raise ClarifaiConfigurationError(
                f"input_args take more than {MAX_INPUT_ARGS_BYTES:,} bytes (1 MiB) in all, as UTF-8; the "
                f"value of {quote(name)} alone is {len(value):,} characters. Pass large data by reference "
                "(a URL or a path the pipeline reads), not as an argument value."
            )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _utf8_size(text: str) -> int:
    # A string longer than the limit is over it whatever its encoding: do not encode 10 MB to learn so.
    if len(text) > MAX_INPUT_ARGS_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _load_lock_ids(path: Path, how: str) -> dict[str, str]:
    pipeline, where = read_pipeline_block(path, how)
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
    fixes = [f"pass {', '.join(missing)} explicitly", f"set config_lock_path to {LOCK_FILE_HINT}"]
    if missing_defaults:
        fixes.append(f"set the default {' and '.join(missing_defaults)} in {defaults_source}")
    lines.append("To fix: " + ", or ".join(fixes) + ".")
    return "\n".join(lines)
