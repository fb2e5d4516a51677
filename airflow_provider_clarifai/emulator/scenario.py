"""Scenario files: what the emulator starts with, and the value types shared by the backend.

A scenario is plain data (see ``docs/emulator.rst`` for the YAML format). It is parsed and validated
here once, into frozen dataclasses, so the backend never has to second-guess its input. Every
validation error names the path of the offending key, e.g. ``users[0].apps[0].pipelines[0].id``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
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
    "load_scenario",
]

#: The documented default of the real service: 15 requests per second.
DEFAULT_RATE_LIMIT_PER_SECOND = 15

#: The RPCs the emulator answers; faults may name one of these or ``"*"``.
IMPLEMENTED_METHODS: tuple[str, ...] = (
    "PostPipelineVersionRuns",
    "GetPipelineVersionRun",
    "ListPipelineVersionRuns",
    "PatchPipelineVersionRuns",
    "ListLogEntries",
    "GetUser",
)


class ScenarioError(ValueError):
    """A scenario that cannot be used, with the path of the bad key.

    :param message: what is wrong.
    :param path: where, as a dotted path with list indexes (``users[0].apps[1].id``); empty for the root.
    """

    def __init__(self, message: str, path: str = "") -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class RunState(StrEnum):
    """Pipeline-run states, valued by their ``status_code_pb2`` names (the emulator's models never use
    numeric codes)."""

    QUEUED = "JOB_QUEUED"
    RUNNING = "JOB_RUNNING"
    PAUSED = "JOB_PAUSED"
    COMPLETED = "JOB_COMPLETED"
    FAILED = "JOB_FAILED"
    CANCELLED = "JOB_CANCELLED"
    UNEXPECTED_ERROR = "JOB_UNEXPECTED_ERROR"
    CONFLICT = "JOB_CONFLICT"


TERMINAL_STATES: frozenset[RunState] = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.UNEXPECTED_ERROR}
)
#: The states a script may end a run in by itself (cancellation only comes from a client).
OUTCOME_STATES: frozenset[RunState] = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.UNEXPECTED_ERROR}
)


class Scope(StrEnum):
    """What a token may do: ``read`` (Get, List, ListLogEntries, GetUser) and ``write`` (Post, Patch)."""

    READ = "read"
    WRITE = "write"


class FaultKind(StrEnum):
    """The failures the emulator can inject; see :class:`FaultRule`."""

    UNAVAILABLE = "unavailable"
    UNAVAILABLE_AFTER = "unavailable_after"
    DEADLINE = "deadline"
    INTERNAL = "internal"
    THROTTLE = "throttle"
    LATENCY = "latency"
    GARBAGE = "garbage"
    HANG = "hang"


@dataclass(frozen=True)
class ScriptedLog:
    """One scripted log line.

    :param at: active running seconds after which the line appears.
    :param message: the line, verbatim.
    """

    at: float
    message: str


@dataclass(frozen=True)
class RunScript:
    """How a run lives when nobody acts on it.

    :param queued_seconds: time spent in ``JOB_QUEUED`` before it starts running.
    :param running_seconds: active running time until ``outcome``; ``None`` runs until a client acts.
    :param outcome: the state the run ends in: ``JOB_COMPLETED``, ``JOB_FAILED`` or ``JOB_UNEXPECTED_ERROR``.
    :param logs: lines that appear once the run has been actively running for their ``at`` seconds.
    """

    queued_seconds: float = 1.0
    running_seconds: float | None = 5.0
    outcome: RunState = RunState.COMPLETED
    logs: tuple[ScriptedLog, ...] = ()

    def __post_init__(self) -> None:
        if self.queued_seconds < 0:
            raise ValueError("queued_seconds must not be negative")
        if self.running_seconds is not None and self.running_seconds < 0:
            raise ValueError("running_seconds must not be negative")
        if self.outcome not in OUTCOME_STATES:
            raise ValueError(f"outcome must be one of {_names(OUTCOME_STATES)}, got {self.outcome}")
        # Sorted once here so the backend can emit lines with a simple cursor.
        object.__setattr__(self, "logs", tuple(sorted(self.logs, key=lambda line: line.at)))

    @classmethod
    def from_dict(cls, data: Any, path: str = "script") -> RunScript:
        """Build a script from a mapping, filling missing keys with the defaults.

        :param data: a mapping with keys ``queued_seconds``, ``running_seconds``, ``outcome``, ``logs``.
        :param path: where the mapping sits, for error messages.
        :return: the script.
        :raises ScenarioError: if the mapping is invalid.
        """
        mapping = _mapping(data, path, allowed=("queued_seconds", "running_seconds", "outcome", "logs"))
        queued = _number(mapping, "queued_seconds", path, default=DEFAULT_SCRIPT.queued_seconds)
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
            logs.append(
                ScriptedLog(at=_number(line, "at", item_path), message=_text(line, "message", item_path))
            )
        return cls(queued_seconds=queued, running_seconds=running, outcome=outcome, logs=tuple(logs))


#: The script of a posted run when its version has no ``post_script``.
DEFAULT_SCRIPT = RunScript()


@dataclass(frozen=True)
class FaultRule:
    """One fault to inject.

    :param kind: what goes wrong (:class:`FaultKind` or its string value):
        ``unavailable`` aborts with gRPC UNAVAILABLE before touching state; ``unavailable_after``
        applies the request, then aborts with UNAVAILABLE (the reply is lost); ``deadline`` aborts
        with DEADLINE_EXCEEDED; ``internal`` answers INTERNAL_SERVER_ISSUE in ``response.status``;
        ``throttle`` answers CONN_THROTTLED; ``latency`` waits ``latency_seconds`` of real time, then
        handles the request normally; ``garbage`` answers bytes that do not parse as the response;
        ``hang`` never answers (until the client gives up or the emulator stops).
    :param method: an RPC name from :data:`IMPLEMENTED_METHODS`, or ``"*"`` for all of them.
    :param count: how many times the fault fires before it is used up; ``None`` for no limit.
    :param probability: chance (0..1) that a matching request triggers the fault; drawn from the
        emulator's seeded random generator, so runs are reproducible.
    :param latency_seconds: the delay of a ``latency`` fault (real seconds).
    """

    kind: FaultKind
    method: str = "*"
    count: int | None = None
    probability: float = 1.0
    latency_seconds: float = 0.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", FaultKind(self.kind))
        except ValueError:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {_names(FaultKind)}") from None
        if self.method != "*" and self.method not in IMPLEMENTED_METHODS:
            raise ValueError(
                f"unknown method {self.method!r}; use '*' or one of {', '.join(IMPLEMENTED_METHODS)}"
            )
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1, or null for no limit")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.kind is FaultKind.LATENCY and self.latency_seconds <= 0:
            raise ValueError("a latency fault needs a positive latency_seconds")

    def matches(self, method: str) -> bool:
        """Tell whether this rule applies to an RPC.

        :param method: the RPC name.
        :return: whether the rule targets that RPC.
        """
        return self.method in ("*", method)

    @classmethod
    def from_dict(cls, data: Any, path: str = "fault") -> FaultRule:
        """Build a rule from a scenario mapping.

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
            raise ScenarioError(f"unknown fault kind; use one of {_names(FaultKind)}", _join(path, "kind"))
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
            return cls(
                kind=FaultKind(kind_text),
                method=method,
                count=count,
                probability=probability,
                latency_seconds=latency,
            )
        except ValueError as error:  # rules spanning keys, e.g. a latency fault without latency_seconds
            raise ScenarioError(str(error), path) from None


@dataclass(frozen=True)
class TokenSpec:
    """A personal access token the emulator accepts.

    :param token: the secret, sent as ``authorization: Key <token>``.
    :param user_id: the user the token acts as; it can only see that user's resources.
    :param scopes: what the token may do.
    """

    token: str
    user_id: str
    scopes: frozenset[Scope] = frozenset({Scope.READ, Scope.WRITE})

    def __repr__(self) -> str:
        # Keep the secret out of reprs that end up in logs and test reports.
        return f"TokenSpec(token='***', user_id={self.user_id!r}, scopes={sorted(self.scopes)!r})"


@dataclass(frozen=True)
class RunSpec:
    """A run that exists when the emulator starts.

    :param id: the run id.
    :param status: its state at start; it then follows ``script`` (``JOB_QUEUED`` counts down
        ``queued_seconds``, ``JOB_RUNNING`` starts its ``running_seconds`` at start).
    :param script: how it continues.
    """

    id: str
    status: RunState = RunState.QUEUED
    script: RunScript = DEFAULT_SCRIPT


@dataclass(frozen=True)
class VersionSpec:
    """A pipeline version.

    :param id: the pipeline version id.
    :param post_script: the script given to runs posted to this version (default: :data:`DEFAULT_SCRIPT`).
    :param runs: runs that exist at start.
    """

    id: str
    post_script: RunScript | None = None
    runs: tuple[RunSpec, ...] = ()


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline and its versions."""

    id: str
    versions: tuple[VersionSpec, ...] = ()


@dataclass(frozen=True)
class AppSpec:
    """An app and its pipelines."""

    id: str
    pipelines: tuple[PipelineSpec, ...] = ()


@dataclass(frozen=True)
class UserSpec:
    """A user and their apps."""

    id: str
    apps: tuple[AppSpec, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """Everything the emulator starts with.

    :param tokens: accepted tokens; the first is the emulator's default token.
    :param users: the resource tree: users, apps, pipelines, versions, runs.
    :param rate_limit_per_second: requests per second allowed per token; ``None`` turns the limit off.
    :param faults: faults active from the start.
    :param fault_seed: seed of the random generator behind fault probabilities.
    """

    tokens: tuple[TokenSpec, ...]
    users: tuple[UserSpec, ...] = ()
    rate_limit_per_second: int | None = DEFAULT_RATE_LIMIT_PER_SECOND
    faults: tuple[FaultRule, ...] = ()
    fault_seed: int = 0
    source: str = field(default="<dict>", compare=False)

    @classmethod
    def default(cls) -> Scenario:
        """Load the scenario bundled with the package (``emulator/scenarios/default.yaml``).

        :return: the default scenario.
        """
        text = (
            resources.files("airflow_provider_clarifai.emulator")
            .joinpath("scenarios/default.yaml")
            .read_text(encoding="utf-8")
        )
        return cls.from_yaml_text(text, source="default.yaml")

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Scenario:
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
            return cls.from_yaml_text(text, source=str(path))
        return cls.from_yaml_text(source)

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<yaml>") -> Scenario:
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
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Scenario:
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
            FaultRule.from_dict(item, f"faults[{index}]")
            for index, item in enumerate(_list(root, "faults", ""))
        )
        return cls(
            tokens=tokens,
            users=users,
            rate_limit_per_second=rate_limit,
            faults=faults,
            fault_seed=fault_seed,
            source=source,
        )


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
                    f"unknown scope in {raw_scopes!r}; use {_names(Scope)}", scopes_path
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
        post_script = RunScript.from_dict(version["post_script"], _join(path, "post_script"))
    runs = []
    for run_path, run in _children(version, "runs", path, ("id", "status", "script")):
        status = RunState.QUEUED
        if "status" in run:
            status = _state(run["status"], _join(run_path, "status"), frozenset(RunState))
        script = DEFAULT_SCRIPT
        if run.get("script") is not None:
            script = RunScript.from_dict(run["script"], _join(run_path, "script"))
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


def _names(values: Any) -> str:
    return ", ".join(sorted(str(value) for value in values))


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
        raise ScenarioError(f"must be one of {_names(allowed)}, got {value!r}", path)
    return state


def load_scenario(source: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None) -> Scenario:
    """Turn whatever the emulator was given into a :class:`Scenario`.

    :param source: ``None`` (the bundled default), a :class:`Scenario`, a mapping in the scenario format,
        a path to a YAML file, or YAML text.
    :return: the scenario.
    :raises ScenarioError: if it is invalid.
    """
    if source is None:
        return Scenario.default()
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return Scenario.from_dict(source)
    return Scenario.from_yaml(source)
