"""Scenario files: reading what the emulator starts with from YAML, a mapping or the bundled default.

A scenario is plain data (see ``docs/emulator.rst`` for the YAML format). It is parsed and validated
here once, into the frozen dataclasses of :mod:`.domain`, so the backend never has to second-guess its
input. Every validation error names the path of the offending key, e.g.
``users[0].apps[0].pipelines[0].id``.

The value types are defined in :mod:`.domain` and importable from here too, as they always were.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_clarifai.emulator.domain import (
    DEFAULT_RATE_LIMIT_PER_SECOND,
    DEFAULT_SCRIPT,
    IMPLEMENTED_METHODS,
    OUTCOME_STATES,
    TERMINAL_STATES,
    AppSpec,
    FaultKind,
    FaultRule,
    PipelineSpec,
    RunScript,
    RunSpec,
    RunState,
    Scenario,
    ScenarioError,
    Scope,
    ScriptedLog,
    TokenSpec,
    UserSpec,
    VersionSpec,
    names,
)

__all__ = [
    "BUNDLED_SCENARIOS",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "DEFAULT_SCRIPT",
    "IMPLEMENTED_METHODS",
    "OUTCOME_STATES",
    "TERMINAL_STATES",
    "AppSpec",
    "FaultKind",
    "FaultRule",
    "PipelineSpec",
    "RunScript",
    "RunSpec",
    "RunState",
    "Scenario",
    "ScenarioError",
    "Scope",
    "ScriptedLog",
    "TokenSpec",
    "UserSpec",
    "VersionSpec",
    "bundled_scenario",
    "default_scenario",
    "load_scenario",
    "parse_fault_rule",
    "parse_run_script",
    "parse_scenario",
    "scenario_from_yaml",
    "scenario_from_yaml_text",
]


def load_scenario(source: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None) -> Scenario:
    """Turn whatever the emulator was given into a :class:`Scenario`.

    :param source: ``None`` (the bundled default), a :class:`Scenario`, a mapping in the scenario format,
        a path to a YAML file, or YAML text.
    :return: the scenario.
    :raises ScenarioError: if it is invalid.
    """
    if source is None:
        return default_scenario()
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    return scenario_from_yaml(source)


#: The scenarios bundled with the package, in ``emulator/scenarios/``.
BUNDLED_SCENARIOS = ("default", "scripted")


def default_scenario() -> Scenario:
    """Load the scenario bundled with the package (``emulator/scenarios/default.yaml``): its runs stay as
    they are until a client or the test changes them; the runs posted to it end on their own.

    :return: the default scenario.
    """
    return bundled_scenario("default")


def bundled_scenario(name: str) -> Scenario:
    """Load a scenario bundled with the package, by name (see :data:`BUNDLED_SCENARIOS`).

    :param name: ``"default"``, or ``"scripted"``: the same users, versions and runs, whose runs end on
        their own (``run-queued`` completes 65 s after the start, ``run-running`` after 600 s...).
    :return: the scenario.
    :raises ScenarioError: for another name.
    """
    if name not in BUNDLED_SCENARIOS:
        raise ScenarioError(f"no bundled scenario {name!r}; use one of {', '.join(BUNDLED_SCENARIOS)}")
    text = (
        resources.files("airflow_provider_clarifai.emulator")
        .joinpath(f"scenarios/{name}.yaml")
        .read_text(encoding="utf-8")
    )
    return scenario_from_yaml_text(text, source=f"{name}.yaml")


def scenario_from_yaml(source: str | os.PathLike[str]) -> Scenario:
    """Load a scenario from a YAML file or from YAML text.

    A :class:`os.PathLike`, or a one-line string naming an existing file or ending in ``.yaml`` /
    ``.yml``, is read as a file; any other string is parsed as YAML text.

    :param source: a path or YAML text.
    :return: the scenario.
    :raises ScenarioError: if the file is missing or the scenario is invalid.
    """
    if isinstance(source, os.PathLike) or _looks_like_path(source):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ScenarioError(f"cannot read scenario file {str(path)!r}: {error.strerror}") from None
        return scenario_from_yaml_text(text, source=str(path))
    return scenario_from_yaml_text(source)


def scenario_from_yaml_text(text: str, source: str = "<yaml>") -> Scenario:
    """Parse YAML text into a scenario.

    :param text: the YAML document.
    :param source: a name for error messages.
    :return: the scenario.
    :raises ScenarioError: if the YAML does not parse or the scenario is invalid.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{source}: not valid YAML: {error}") from None
    return parse_scenario(data, source=source)


def parse_scenario(data: Any, source: str = "<dict>") -> Scenario:
    """Validate a mapping (the parsed YAML) into a scenario.

    :param data: the mapping.
    :param source: a name for error messages.
    :return: the scenario.
    :raises ScenarioError: if the scenario is invalid; its ``path`` names the bad key.
    """
    root = _mapping(
        data,
        "",
        allowed=("rate_limit_per_second", "fault_seed", "tokens", "users", "faults"),
        required=("tokens",),
    )
    rate_limit: int | None = DEFAULT_RATE_LIMIT_PER_SECOND
    if "rate_limit_per_second" in root:
        rate_limit = _rate_limit(root["rate_limit_per_second"], "rate_limit_per_second")
    fault_seed = root.get("fault_seed", 0)
    if isinstance(fault_seed, bool) or not isinstance(fault_seed, int):
        raise ScenarioError("must be an integer", "fault_seed")
    users = _users(root)
    tokens = _tokens(root, {user.id for user in users})
    faults = tuple(
        parse_fault_rule(item, f"faults[{index}]") for index, item in enumerate(_list(root, "faults", ""))
    )
    return Scenario(
        tokens=tokens,
        users=users,
        rate_limit_per_second=rate_limit,
        faults=faults,
        fault_seed=fault_seed,
        source=source,
    )


def parse_run_script(data: Any, path: str = "script") -> RunScript:
    """Build a script from a mapping, filling missing keys with the defaults.

    :param data: a mapping with keys ``queued_seconds``, ``running_seconds``, ``outcome``, ``logs``.
    :param path: where the mapping sits, for error messages.
    :return: the script.
    :raises ScenarioError: if the mapping is invalid.
    """
    mapping = _mapping(data, path, allowed=("queued_seconds", "running_seconds", "outcome", "logs"))
    queued: float | None = DEFAULT_SCRIPT.queued_seconds
    if "queued_seconds" in mapping:
        queued = _optional_number(mapping, "queued_seconds", path)
    running: float | None = DEFAULT_SCRIPT.running_seconds
    if "running_seconds" in mapping:
        running = _optional_number(mapping, "running_seconds", path)
    outcome = DEFAULT_SCRIPT.outcome
    if "outcome" in mapping:
        outcome = _state(mapping["outcome"], _join(path, "outcome"), OUTCOME_STATES)
    logs = []
    for index, item in enumerate(_list(mapping, "logs", path)):
        item_path = f"{_join(path, 'logs')}[{index}]"
        line = _mapping(item, item_path, allowed=("at", "message"), required=("at", "message"))
        logs.append(ScriptedLog(at=_number(line, "at", item_path), message=_text(line, "message", item_path)))
    return RunScript(queued_seconds=queued, running_seconds=running, outcome=outcome, logs=tuple(logs))


def parse_fault_rule(data: Any, path: str = "fault") -> FaultRule:
    """Build a fault rule from a scenario mapping.

    :param data: a mapping with ``kind`` and optional ``method``, ``count``, ``probability``,
        ``latency_seconds``.
    :param path: where the mapping sits, for error messages.
    :return: the rule.
    :raises ScenarioError: if the mapping is invalid.
    """
    mapping = _mapping(
        data,
        path,
        allowed=("kind", "method", "count", "probability", "latency_seconds"),
        required=("kind",),
    )
    kind_text = _text(mapping, "kind", path)
    if kind_text not in set(FaultKind):
        raise ScenarioError(f"unknown fault kind; use one of {names(FaultKind)}", _join(path, "kind"))
    method = _text(mapping, "method", path, default="*")
    if method != "*" and method not in IMPLEMENTED_METHODS:
        raise ScenarioError(
            f"unknown method; use '*' or one of {', '.join(IMPLEMENTED_METHODS)}", _join(path, "method")
        )
    count = mapping.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ScenarioError("must be an integer >= 1, or null for no limit", _join(path, "count"))
    probability = _number(mapping, "probability", path, default=1.0)
    if probability > 1:
        raise ScenarioError("must be between 0 and 1", _join(path, "probability"))
    latency = _number(mapping, "latency_seconds", path, default=0.0)
    try:
        return FaultRule(
            kind=FaultKind(kind_text),
            method=method,
            count=count,
            probability=probability,
            latency_seconds=latency,
        )
    except ValueError as error:  # rules spanning keys, e.g. a latency fault without latency_seconds
        raise ScenarioError(str(error), path) from None


# -- the pieces -------------------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    if "\n" in text:
        return False
    stripped = text.strip()
    return stripped.endswith((".yaml", ".yml")) or Path(stripped).is_file()


def _rate_limit(value: Any, path: str) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError("must be a positive integer, 0 or null (0 and null turn the limit off)", path)
    return value


def _tokens(root: Mapping[str, Any], user_ids: set[str]) -> tuple[TokenSpec, ...]:
    items = _list(root, "tokens", "")
    if not items:
        raise ScenarioError("at least one token is needed", "tokens")
    tokens: list[TokenSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        path = f"tokens[{index}]"
        mapping = _mapping(item, path, allowed=("token", "user_id", "scopes"), required=("token", "user_id"))
        secret = _text(mapping, "token", path)
        if secret in seen:
            # The message must not repeat the secret.
            raise ScenarioError("the same token appears twice", _join(path, "token"))
        seen.add(secret)
        user_id = _text(mapping, "user_id", path)
        if user_id not in user_ids:
            raise ScenarioError(f"unknown user {user_id!r}; declare it under users", _join(path, "user_id"))
        scopes = frozenset(Scope)
        if "scopes" in mapping:
            scopes_path = _join(path, "scopes")
            raw_scopes = _list(mapping, "scopes", path)
            try:
                scopes = frozenset(Scope(scope) for scope in raw_scopes)
            except ValueError:
                raise ScenarioError(
                    f"unknown scope in {raw_scopes!r}; use {names(Scope)}", scopes_path
                ) from None
        tokens.append(TokenSpec(token=secret, user_id=user_id, scopes=scopes))
    return tuple(tokens)


def _users(root: Mapping[str, Any]) -> tuple[UserSpec, ...]:
    users = []
    for user_path, user in _children(root, "users", "", ("id", "apps")):
        apps = []
        for app_path, app in _children(user, "apps", user_path, ("id", "pipelines")):
            pipelines = []
            for pipeline_path, pipeline in _children(app, "pipelines", app_path, ("id", "versions")):
                versions = []
                for version_path, version in _children(
                    pipeline, "versions", pipeline_path, ("id", "post_script", "runs")
                ):
                    versions.append(_version(version, version_path))
                pipelines.append(
                    PipelineSpec(id=_text(pipeline, "id", pipeline_path), versions=tuple(versions))
                )
            apps.append(AppSpec(id=_text(app, "id", app_path), pipelines=tuple(pipelines)))
        users.append(UserSpec(id=_text(user, "id", user_path), apps=tuple(apps)))
    return tuple(users)


def _version(version: Mapping[str, Any], path: str) -> VersionSpec:
    post_script = None
    if version.get("post_script") is not None:
        post_script = parse_run_script(version["post_script"], _join(path, "post_script"))
    runs = []
    for run_path, run in _children(version, "runs", path, ("id", "status", "script")):
        status = RunState.QUEUED
        if "status" in run:
            status = _state(run["status"], _join(run_path, "status"), frozenset(RunState))
        script = DEFAULT_SCRIPT
        if run.get("script") is not None:
            script = parse_run_script(run["script"], _join(run_path, "script"))
        runs.append(RunSpec(id=_text(run, "id", run_path), status=status, script=script))
    return VersionSpec(id=_text(version, "id", path), post_script=post_script, runs=tuple(runs))


def _children(
    parent: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The mappings listed under ``key``, with their paths; ids must be unique among siblings."""
    children = []
    seen: set[str] = set()
    for index, item in enumerate(_list(parent, key, path)):
        child_path = f"{_join(path, key)}[{index}]"
        child = _mapping(item, child_path, allowed=allowed, required=("id",))
        child_id = _text(child, "id", child_path)
        if child_id in seen:
            raise ScenarioError(f"duplicate id {child_id!r}", _join(child_path, "id"))
        seen.add(child_id)
        children.append((child_path, child))
    return children


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(
    value: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"must be a mapping, got {type(value).__name__}", path)
    for key in value:
        if key not in allowed:
            # Unknown keys are errors: a typo such as "runing_seconds" would otherwise be ignored silently.
            raise ScenarioError(f"unknown key; allowed keys: {', '.join(allowed)}", _join(path, str(key)))
    for key in required:
        if key not in value:
            raise ScenarioError("is required", _join(path, key))
    return value


def _list(mapping: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = mapping.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScenarioError(f"must be a list, got {type(value).__name__}", _join(path, key))
    return value


def _text(mapping: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    if key not in mapping and default is not None:
        return default
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise ScenarioError("must be a non-empty string (quote numbers)", _join(path, key))
    return value


def _number(mapping: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    if key not in mapping and default is not None:
        return default
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError("must be a number >= 0", _join(path, key))
    return float(value)


def _optional_number(mapping: Mapping[str, Any], key: str, path: str) -> float | None:
    if mapping.get(key) is None:
        return None
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError("must be a number >= 0, or null", _join(path, key))
    return float(value)


def _state(value: Any, path: str, allowed: frozenset[RunState]) -> RunState:
    try:
        state = RunState(value)
    except ValueError:
        state = None
    if state is None or state not in allowed:
        raise ScenarioError(f"must be one of {names(allowed)}, got {value!r}", path)
    return state
