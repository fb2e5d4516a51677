"""Scenario files: reading what the emulator starts with from YAML, a mapping or the bundled default.

A scenario is plain data (see ``docs/emulator.rst`` for the YAML format). It is parsed and validated
here once, into the frozen dataclasses of :mod:`.domain`, so the backend never has to second-guess its
input. Every validation error names the path of the offending key, e.g.
``users[0].apps[0].pipelines[0].id``.

The value types are defined in :mod:`.domain` and importable from here too, as they always were.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    ComputeClusterSpec,
    FaultKind,
    FaultRule,
    NodepoolSpec,
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
from airflow_provider_clarifai.emulator.scenario_fields import children as _children
from airflow_provider_clarifai.emulator.scenario_fields import items as _list
from airflow_provider_clarifai.emulator.scenario_fields import join as _join
from airflow_provider_clarifai.emulator.scenario_fields import mapping as _mapping
from airflow_provider_clarifai.emulator.scenario_fields import number as _number
from airflow_provider_clarifai.emulator.scenario_fields import optional_number as _optional_number
from airflow_provider_clarifai.emulator.scenario_fields import state as _state
from airflow_provider_clarifai.emulator.scenario_fields import text as _text

__all__ = [
    "BUNDLED_SCENARIOS",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "DEFAULT_SCRIPT",
    "IMPLEMENTED_METHODS",
    "OUTCOME_STATES",
    "TERMINAL_STATES",
    "AppSpec",
    "ComputeClusterSpec",
    "FaultKind",
    "FaultRule",
    "NodepoolSpec",
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
    for user_path, user in _children(root, "users", "", ("id", "apps", "compute_clusters")):
        clusters = _compute_clusters(user, user_path)
        apps = []
        for app_path, app in _children(user, "apps", user_path, ("id", "pipelines")):
            pipelines = []
            for pipeline_path, pipeline in _children(app, "pipelines", app_path, ("id", "versions")):
                versions = []
                for version_path, version in _children(
                    pipeline, "versions", pipeline_path, ("id", "post_script", "runs")
                ):
                    versions.append(_version(version, version_path, clusters))
                pipelines.append(
                    PipelineSpec(id=_text(pipeline, "id", pipeline_path), versions=tuple(versions))
                )
            apps.append(AppSpec(id=_text(app, "id", app_path), pipelines=tuple(pipelines)))
        users.append(UserSpec(id=_text(user, "id", user_path), apps=tuple(apps), compute_clusters=clusters))
    return tuple(users)


def _compute_clusters(user: Mapping[str, Any], path: str) -> tuple[ComputeClusterSpec, ...]:
    clusters = []
    for cluster_path, cluster in _children(user, "compute_clusters", path, ("id", "nodepools")):
        nodepools = []
        for nodepool_path, nodepool in _children(cluster, "nodepools", cluster_path, ("id",)):
            nodepools.append(NodepoolSpec(id=_slashless(nodepool, nodepool_path)))
        clusters.append(ComputeClusterSpec(id=_slashless(cluster, cluster_path), nodepools=tuple(nodepools)))
    return tuple(clusters)


def _slashless(mapping: Mapping[str, Any], path: str) -> str:
    # A run names its nodepool as "<compute_cluster_id>/<nodepool_id>", so neither id may hold a "/".
    value = _text(mapping, "id", path)
    if "/" in value:
        raise ScenarioError("must not contain '/'", _join(path, "id"))
    return value


def _nodepool(run: Mapping[str, Any], path: str, clusters: tuple[ComputeClusterSpec, ...]) -> tuple[str, str]:
    """A run's ``nodepool: <compute_cluster_id>/<nodepool_id>``, which its user must declare."""
    if "nodepool" not in run:
        return "", ""
    cluster_id, _, nodepool_id = _text(run, "nodepool", path).partition("/")
    if not cluster_id or not nodepool_id or "/" in nodepool_id:
        raise ScenarioError("must be '<compute_cluster_id>/<nodepool_id>'", _join(path, "nodepool"))
    if not any(
        cluster.id == cluster_id and any(nodepool.id == nodepool_id for nodepool in cluster.nodepools)
        for cluster in clusters
    ):
        raise ScenarioError(
            f"no nodepool {nodepool_id!r} in compute cluster {cluster_id!r}; declare it under the user's "
            "compute_clusters",
            _join(path, "nodepool"),
        )
    return cluster_id, nodepool_id


def _version(version: Mapping[str, Any], path: str, clusters: tuple[ComputeClusterSpec, ...]) -> VersionSpec:
    post_script = None
    if version.get("post_script") is not None:
        post_script = parse_run_script(version["post_script"], _join(path, "post_script"))
    runs = []
    for run_path, run in _children(version, "runs", path, ("id", "status", "script", "nodepool")):
        status = RunState.QUEUED
        if "status" in run:
            status = _state(run["status"], _join(run_path, "status"), frozenset(RunState))
        script = DEFAULT_SCRIPT
        if run.get("script") is not None:
            script = parse_run_script(run["script"], _join(run_path, "script"))
        cluster_id, nodepool_id = _nodepool(run, run_path, clusters)
        spec = RunSpec(_text(run, "id", run_path), status, script, cluster_id, nodepool_id)
        runs.append(spec)
    return VersionSpec(id=_text(version, "id", path), post_script=post_script, runs=tuple(runs))
