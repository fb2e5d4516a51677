"""Reading a scenario's mappings: each field checked for its type, every error naming the path of the bad
key (``users[0].apps[1].id``). The scenario format itself is :mod:`.scenario`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_clarifai.emulator.domain import RunState, ScenarioError, names

__all__ = ["children", "items", "join", "mapping", "number", "optional_number", "state", "text"]


def children(
    parent: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The mappings listed under ``key``, with their paths; ids must be unique among siblings."""
    found = []
    seen: set[str] = set()
    for index, item in enumerate(items(parent, key, path)):
        child_path = f"{join(path, key)}[{index}]"
        child = mapping(item, child_path, allowed=allowed, required=("id",))
        child_id = text(child, "id", child_path)
        if child_id in seen:
            raise ScenarioError(f"duplicate id {child_id!r}", join(child_path, "id"))
        seen.add(child_id)
        found.append((child_path, child))
    return found


def join(path: str, key: str) -> str:
    """The path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


def mapping(value: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> Mapping[str, Any]:
    """``value``, if it is a mapping with only ``allowed`` keys and every ``required`` one."""
    if not isinstance(value, Mapping):
        raise ScenarioError(f"must be a mapping, got {type(value).__name__}", path)
    for key in value:
        if key not in allowed:
            # Unknown keys are errors: a typo such as "runing_seconds" would otherwise be ignored silently.
            raise ScenarioError(f"unknown key; allowed keys: {', '.join(allowed)}", join(path, str(key)))
    for key in required:
        if key not in value:
            raise ScenarioError("is required", join(path, key))
    return value


def items(parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """The list under ``key`` (absent or null: empty)."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScenarioError(f"must be a list, got {type(value).__name__}", join(path, key))
    return value


def text(parent: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    """The non-empty string under ``key``, or ``default`` when absent and a default is given."""
    if key not in parent and default is not None:
        return default
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise ScenarioError("must be a non-empty string (quote numbers)", join(path, key))
    return value


def number(parent: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    """The number >= 0 under ``key``, or ``default`` when absent and a default is given."""
    if key not in parent and default is not None:
        return default
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError("must be a number >= 0", join(path, key))
    return float(value)


def optional_number(parent: Mapping[str, Any], key: str, path: str) -> float | None:
    """The number >= 0 under ``key``, or ``None`` when absent or null."""
    if parent.get(key) is None:
        return None
    value = parent[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError("must be a number >= 0, or null", join(path, key))
    return float(value)


def state(value: Any, path: str, allowed: frozenset[RunState]) -> RunState:
    """``value`` as one of the ``allowed`` run states."""
    try:
        found: RunState | None = RunState(value)
    except ValueError:
        found = None
    if found is None or found not in allowed:
        raise ScenarioError(f"must be one of {names(allowed)}, got {value!r}", path)
    return found
