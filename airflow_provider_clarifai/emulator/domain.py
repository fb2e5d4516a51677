"""The emulator's value types: run states, scripts, fault rules and the scenario they make up.

Plain frozen dataclasses and enums with their own invariants, and nothing else: reading them from YAML or
a mapping is :mod:`.scenario`'s job (the ``from_*`` class methods below hand over to it). Neither gRPC
nor YAML is imported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
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
]

#: The documented default of the real service: 15 requests per second.
DEFAULT_RATE_LIMIT_PER_SECOND = 15

#: The names of the RPCs the emulator answers (faults may name one of these, or ``"*"``). They are the
#: keys of the servicer's RPC table (``servicer.RPCS``), which checks on import that the two agree; they
#: are listed here as well so that scenarios can be validated without importing gRPC.
IMPLEMENTED_METHODS: tuple[str, ...] = (
    "PostPipelineVersionRuns",
    "GetPipelineVersionRun",
    "ListPipelineVersionRuns",
    "PatchPipelineVersionRuns",
    "ListLogEntries",
    "GetUser",
    "ListPipelines",
    "ListPipelineVersions",
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
    """What a token may do: ``read`` (Get, the List RPCs, GetUser) and ``write`` (Post, Patch)."""

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


def names(values: Any) -> str:
    """List values for an error message, sorted.

    :param values: the values (enum members or strings).
    :return: ``"a, b, c"``.
    """
    return ", ".join(sorted(str(value) for value in values))


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

    :param queued_seconds: time spent in ``JOB_QUEUED`` before it starts running; ``None`` stays queued
        until a client (or the test) acts.
    :param running_seconds: active running time until ``outcome``; ``None`` runs until a client acts.
    :param outcome: the state the run ends in: ``JOB_COMPLETED``, ``JOB_FAILED`` or ``JOB_UNEXPECTED_ERROR``.
    :param logs: lines that appear once the run has been actively running for their ``at`` seconds.
    """

    queued_seconds: float | None = 1.0
    running_seconds: float | None = 5.0
    outcome: RunState = RunState.COMPLETED
    logs: tuple[ScriptedLog, ...] = ()

    def __post_init__(self) -> None:
        if self.queued_seconds is not None and self.queued_seconds < 0:
            raise ValueError("queued_seconds must not be negative")
        if self.running_seconds is not None and self.running_seconds < 0:
            raise ValueError("running_seconds must not be negative")
        if self.outcome not in OUTCOME_STATES:
            raise ValueError(f"outcome must be one of {names(OUTCOME_STATES)}, got {self.outcome}")
        # Sorted once here so the backend can emit lines with a simple cursor.
        object.__setattr__(self, "logs", tuple(sorted(self.logs, key=lambda line: line.at)))

    @classmethod
    def from_dict(cls, data: Any, path: str = "script") -> RunScript:
        """Build a script from a mapping, filling missing keys with the defaults (see :mod:`.scenario`).

        :param data: a mapping with keys ``queued_seconds``, ``running_seconds``, ``outcome``, ``logs``.
        :param path: where the mapping sits, for error messages.
        :return: the script.
        """
        from airflow_provider_clarifai.emulator.scenario import parse_run_script

        return parse_run_script(data, path)


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
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {names(FaultKind)}") from None
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
        """Build a rule from a scenario mapping (see :mod:`.scenario`).

        :param data: a mapping with ``kind`` and optional ``method``, ``count``, ``probability``,
            ``latency_seconds``.
        :param path: where the mapping sits, for error messages.
        :return: the rule.
        """
        from airflow_provider_clarifai.emulator.scenario import parse_fault_rule

        return parse_fault_rule(data, path)


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
    :param compute_cluster_id: the compute cluster of the nodepool it sits on (empty: none).
    :param nodepool_id: the nodepool it sits on (empty: none).
    """

    id: str
    status: RunState = RunState.QUEUED
    script: RunScript = DEFAULT_SCRIPT
    compute_cluster_id: str = ""
    nodepool_id: str = ""


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
class NodepoolSpec:
    """A nodepool of a compute cluster."""

    id: str


@dataclass(frozen=True)
class ComputeClusterSpec:
    """A compute cluster and its nodepools."""

    id: str
    nodepools: tuple[NodepoolSpec, ...] = ()


@dataclass(frozen=True)
class UserSpec:
    """A user, their apps and their compute clusters.

    :param id: the user id.
    :param apps: the user's apps.
    :param compute_clusters: the user's compute clusters; when there are none, any nodepool a request
        names is accepted for this user (scenarios written before nodepools were declared).
    """

    id: str
    apps: tuple[AppSpec, ...] = ()
    compute_clusters: tuple[ComputeClusterSpec, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """Everything the emulator starts with.

    The class methods read one from YAML or a mapping; :mod:`.scenario` does the parsing.

    :param tokens: accepted tokens; the first is the emulator's default token.
    :param users: the resource tree: users, apps, pipelines, versions, runs.
    :param rate_limit_per_second: requests per second allowed per token; ``None`` turns the limit off.
    :param faults: faults active from the start.
    :param fault_seed: seed of the random generator behind fault probabilities.
    :param source: where the scenario came from, for messages.
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
        from airflow_provider_clarifai.emulator.scenario import default_scenario

        return default_scenario()

    @classmethod
    def bundled(cls, name: str) -> Scenario:
        """Load a scenario bundled with the package: ``"default"`` (runs that stay as they are until
        changed) or ``"scripted"`` (the same runs, ending on their own after a minute or so).

        :param name: the scenario's name (``emulator/scenarios/<name>.yaml``).
        :return: the scenario.
        """
        from airflow_provider_clarifai.emulator.scenario import bundled_scenario

        return bundled_scenario(name)

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Scenario:
        """Load a scenario from a YAML file or from YAML text.

        A :class:`os.PathLike`, or a one-line string naming an existing file or ending in ``.yaml`` /
        ``.yml``, is read as a file; any other string is parsed as YAML text.

        :param source: a path or YAML text.
        :return: the scenario.
        """
        from airflow_provider_clarifai.emulator.scenario import scenario_from_yaml

        return scenario_from_yaml(source)

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<yaml>") -> Scenario:
        """Parse YAML text into a scenario.

        :param text: the YAML document.
        :param source: a name for error messages.
        :return: the scenario.
        """
        from airflow_provider_clarifai.emulator.scenario import scenario_from_yaml_text

        return scenario_from_yaml_text(text, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Scenario:
        """Validate a mapping (the parsed YAML) into a scenario.

        :param data: the mapping.
        :param source: a name for error messages.
        :return: the scenario.
        """
        from airflow_provider_clarifai.emulator.scenario import parse_scenario

        return parse_scenario(data, source)

    def versions(self) -> list[tuple[str, str, str, str]]:
        """Every pipeline version of the scenario, in order.

        :return: ``(user_id, app_id, pipeline_id, version_id)`` tuples.
        """
        return [
            (user.id, app.id, pipeline.id, version.id)
            for user in self.users
            for app in user.apps
            for pipeline in app.pipelines
            for version in pipeline.versions
        ]
