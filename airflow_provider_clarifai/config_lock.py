"""Reading a pipeline's ``config-lock.yaml`` at a bounded cost.

A lockfile is written by ``clarifai pipeline upload`` and is a few kilobytes of plain YAML: mappings,
lists and scalars, with no anchors, aliases or tags. Anything else is refused before it can cost time or
memory: the file is read up to a size limit (never more, whatever its size or kind), and its parse events
are checked before any Python object is built, so an alias bomb ("billion laughs") stops at its first
anchor instead of expanding into gigabytes.

The checks of the ids themselves are in :mod:`airflow_provider_clarifai.ids`, which calls this module;
this module only finds and reads the ``pipeline:`` block. PyYAML is imported only when a file is read.

.. seealso:: ``docs/id-resolution.rst``
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.validate import quote

#: Largest config-lock.yaml read, in bytes. A generated one is a few KB, most of it the Argo spec.
MAX_LOCK_FILE_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists. A generated lockfile nests a handful of levels; PyYAML builds
#: objects recursively, so an unbounded depth would end in a RecursionError instead of a message.
MAX_LOCK_FILE_DEPTH = 64
#: Most values (scalars, mappings and lists) in the file. A generated lockfile has a few dozen (the Argo
#: spec is one string); the bound keeps the parse of a 1 MiB file of tiny values well under a second.
MAX_LOCK_FILE_VALUES = 10_000
#: Longest ``config_lock_path`` or ``base_dir``, in characters: PATH_MAX on Linux.
MAX_PATH_LENGTH = 4096
#: How much of a YAML parser's problem text is repeated (it may quote a tag or alias of any length).
_PROBLEM_LIMIT = 200
#: How many top-level keys a message lists.
_KEYS_SHOWN = 10

LOCK_FILE_HINT = (
    "the pipeline's config-lock.yaml, written by `clarifai pipeline upload` next to config.yaml at the "
    "pipeline's root"
)
#: Top-level keys of a pipeline step's lockfile (stepX/config-lock.yaml), which has no ``pipeline:``.
_STEP_LOCK_KEYS = frozenset({"pipeline_step", "hash"})
_REGENERATE = "Regenerate it with `clarifai pipeline upload`"


def resolve_lock_path(path: object, base_dir: object) -> tuple[Path, str]:
    """The absolute path of the lockfile and a phrase saying how it was resolved.

    :param path: ``config_lock_path`` as the user gave it.
    :param base_dir: the folder a relative ``path`` is relative to, or ``None`` for the working directory.
    :raises ClarifaiConfigurationError: ``path`` or ``base_dir`` is not a usable path.
    """
    text = _path_text(path, "config_lock_path")
    if os.path.isabs(text):
        return Path(os.path.normpath(text)), "given as an absolute path"
    if base_dir is not None:
        base = os.path.abspath(_path_text(base_dir, "base_dir"))
        how = f"relative path {quote(text)} resolved against base_dir {base}"
    else:
        base = os.getcwd()
        how = (
            f"relative path {quote(text)} resolved against the current working directory {base}, "
            "as no base_dir was given"
        )
    return Path(os.path.normpath(os.path.join(base, text))), how


def read_pipeline_block(path: Path, how: str) -> tuple[dict[Any, Any], str]:
    """Read the file and return its ``pipeline:`` mapping, unchecked, and how to name the file in messages.

    :param path: the absolute path, from :func:`resolve_lock_path`.
    :param how: how the path was resolved, from :func:`resolve_lock_path`.
    :raises ClarifaiConfigurationError: the file is missing, unreadable, too large, not plain YAML, or
        not a pipeline's lockfile.
    """
    where = f"config-lock.yaml {path} ({how})"
    data = _parse(_read_bounded(path, where), where)

    regenerate = f"Point config_lock_path at {LOCK_FILE_HINT}."
    if data is None:
        raise ClarifaiConfigurationError(f"{where} is empty. {regenerate}")
    if not isinstance(data, dict):
        raise ClarifaiConfigurationError(
            f"{where} holds {article(type(data).__name__)} at the top level, not a mapping with a "
            f"'pipeline:' key. {regenerate}"
        )
    if "pipeline" not in data and data.keys() & _STEP_LOCK_KEYS:
        raise ClarifaiConfigurationError(
            f"{where} is a pipeline step's lockfile (top-level id, hash, pipeline_step); give the "
            "pipeline's config-lock.yaml (the one next to config.yaml at the pipeline's root)."
        )
    if "pipeline" not in data:
        raise ClarifaiConfigurationError(
            f"{where} has no 'pipeline:' key (top-level keys: {_list_keys(data)}). {regenerate}"
        )
    pipeline = data["pipeline"]
    if not isinstance(pipeline, dict):
        raise ClarifaiConfigurationError(
            f"{where}: 'pipeline' is {article(type(pipeline).__name__)}, not a mapping of ids. {regenerate}"
        )
    return pipeline, where


def article(type_name: str) -> str:
    """``"an int"``, ``"a list"``: the type's name with its indefinite article.

    :param type_name: the name of a type.
    """
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def _path_text(value: object, name: str) -> str:
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str):
        raise ClarifaiConfigurationError(
            f"{name} must be a path (str or os.PathLike[str]), got {type(value).__name__} "
            f"({quote(value)}). Pass the path of {LOCK_FILE_HINT}."
        )
    if not text.strip():
        raise ClarifaiConfigurationError(
            f"{name} is an empty string. Pass the path of {LOCK_FILE_HINT}, or None to not use a file."
        )
    # Checked here, as the OS would refuse them later with errors that repeat the whole path (or, for
    # NUL, with a ValueError that is no configuration error at all).
    if len(text) > MAX_PATH_LENGTH:
        raise ClarifaiConfigurationError(
            f"{name} is {len(text):,} characters long ({quote(text)}), over the {MAX_PATH_LENGTH} a path "
            f"can have. Pass the path of {LOCK_FILE_HINT}."
        )
    if "\x00" in text:
        raise ClarifaiConfigurationError(
            f"{name} contains a NUL character ({quote(text)}), which no path can hold. Pass the path of "
            f"{LOCK_FILE_HINT}."
        )
    return text


def _read_bounded(path: Path, where: str) -> bytes:
    """At most ``MAX_LOCK_FILE_BYTES + 1`` bytes of a regular file.

    The size is learned by reading, not from ``stat``: a file may grow between the two, and ``/proc``
    files report a size of 0. Non-blocking open, so a FIFO given by mistake is refused, not waited on.
    """
    fix = f"Check config_lock_path: it must name {LOCK_FILE_HINT}, deployed with the DAG on every worker."
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ClarifaiConfigurationError(f"{where} does not exist. {fix}") from None
    except IsADirectoryError:  # Windows; POSIX opens a directory and fstat tells below.
        raise ClarifaiConfigurationError(f"{where} is a directory, not a file. {fix}") from None
    except OSError as exc:
        raise ClarifaiConfigurationError(
            f"{where} cannot be read: {exc.strerror or exc}. Make it readable by the Airflow worker's user."
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ClarifaiConfigurationError(f"{where} is a directory, not a file. {fix}")
        if not stat.S_ISREG(mode):
            raise ClarifaiConfigurationError(
                f"{where} is not a regular file (it is a device, FIFO or socket). {fix}"
            )
        chunks: list[bytes] = []
        left = MAX_LOCK_FILE_BYTES + 1
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ClarifaiConfigurationError(
            f"{where} cannot be read: {exc.strerror or exc}. Make it readable by the Airflow worker's user."
        ) from None
    finally:
        os.close(fd)
    if left <= 0:
        raise ClarifaiConfigurationError(
            f"{where} is larger than {MAX_LOCK_FILE_BYTES:,} bytes (1 MiB); a config-lock.yaml written by "
            f"`clarifai pipeline upload` is a few kilobytes. {fix} {_REGENERATE} if it is the right file."
        )
    return b"".join(chunks)


def _parse(raw: bytes, where: str) -> Any:
    import yaml  # Lazy: keeps importing DAG files (and so this module) cheap.

    # libyaml when PyYAML was built with it: the same events and objects, many times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        # Events first: they are produced lazily, so the check stops at the first refused one, before
        # any object is built.
        _check_events(yaml.parse(raw, Loader=loader), where)
        return yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader, chosen just above.
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        raise ClarifaiConfigurationError(
            f"{where} is not valid YAML: {_cut(problem, _PROBLEM_LIMIT)}{_at(mark)}. Fix the file, or "
            "regenerate it with `clarifai pipeline upload`."
        ) from None


def _check_events(events: Any, where: str) -> None:
    """Refuse anchors, aliases, tags, deep nesting and a flood of values: a generated lockfile has none."""
    import yaml

    depth = values = 0
    for event in events:
        at = _at(event.start_mark)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ClarifaiConfigurationError(
                f"{where} uses a YAML anchor or alias ('&name' or '*name'){at}. A config-lock.yaml written "
                "by `clarifai pipeline upload` has none, and aliases can expand a small file into gigabytes. "
                f"{_REGENERATE} (if the pipeline's config.yaml uses anchors, write those values out first)."
            )
        tag = getattr(event, "tag", None)
        if tag is not None and isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            raise ClarifaiConfigurationError(
                f"{where} has the YAML tag {quote(tag, 40)}{at}. A config-lock.yaml written by `clarifai "
                "pipeline upload` has no tags. Remove the tag (to make a value a string, quote it), or "
                "regenerate the file with `clarifai pipeline upload`."
            )
        if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            values += 1
            if values > MAX_LOCK_FILE_VALUES:
                raise ClarifaiConfigurationError(
                    f"{where} holds more than {MAX_LOCK_FILE_VALUES:,} values (scalars, mappings and lists)"
                    f"{at}; a config-lock.yaml written by `clarifai pipeline upload` holds a few dozen. "
                    f"{_REGENERATE}."
                )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_LOCK_FILE_DEPTH:
                raise ClarifaiConfigurationError(
                    f"{where} nests mappings and lists more than {MAX_LOCK_FILE_DEPTH} levels deep{at}; a "
                    f"config-lock.yaml written by `clarifai pipeline upload` nests a few. {_REGENERATE}."
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _list_keys(data: dict[Any, Any]) -> str:
    """The first top-level keys, sorted, each cut short: a 1 MiB file can have thousands of long keys."""
    names = sorted(_cut(key, 40) if isinstance(key, str) else quote(key, 40) for key in data)
    if not names:
        return "none"
    more = f", and {len(names) - _KEYS_SHOWN} more" if len(names) > _KEYS_SHOWN else ""
    return ", ".join(names[:_KEYS_SHOWN]) + more
