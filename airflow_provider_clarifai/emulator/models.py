"""The emulator's backend: pipeline runs as plain Python, with no gRPC in sight.

Like a moto backend, this module holds the state and the rules, and :mod:`.server` only translates
protobuf to and from it. A run's own life is in :mod:`.lifecycle`; rate limiting, faults and the request
log are in :mod:`.traffic` (re-exported here). Everything here is thread-safe: one re-entrant lock guards
the backend, so a request (a Patch batch, say) is applied as a whole without interleaving with others.

Runs follow a script on an injectable clock and are advanced lazily, each time one is read or changed.

Application errors are raised as :class:`ApiError` carrying a ``status_code_pb2`` *name*; the server turns
them into ``response.status``, the way the real service reports them.
"""

from __future__ import annotations

import contextlib
import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_clarifai.emulator.clock import Clock, WallClock
from airflow_provider_clarifai.emulator.lifecycle import Run, RunSnapshot, TransitionError, VersionRef
from airflow_provider_clarifai.emulator.scenario import (
    DEFAULT_SCRIPT,
    RunScript,
    RunSpec,
    RunState,
    Scenario,
    Scope,
)
from airflow_provider_clarifai.emulator.traffic import Faults, RateLimiter, RequestLog, RequestRecord

__all__ = [
    "BAD_REQUEST",
    "CONN_DOES_NOT_EXIST",
    "CONN_INSUFFICIENT_SCOPES",
    "CONN_KEY_INVALID",
    "CONN_THROTTLED",
    "INTERNAL_SERVER_ISSUE",
    "LOG_TYPE",
    "MIXED_STATUS",
    "PATCH_ACTION",
    "PIPELINE_INVALID_REQUEST",
    "SUCCESS",
    "ApiError",
    "Backend",
    "Faults",
    "LogLine",
    "LogPage",
    "NewRun",
    "PatchOutcome",
    "PatchResult",
    "RateLimiter",
    "RequestLog",
    "RequestRecord",
    "RunChange",
    "RunSnapshot",
    "VersionRef",
]

# Application status codes, by their status_code_pb2 names.
SUCCESS = "SUCCESS"
MIXED_STATUS = "MIXED_STATUS"
CONN_KEY_INVALID = "CONN_KEY_INVALID"
CONN_INSUFFICIENT_SCOPES = "CONN_INSUFFICIENT_SCOPES"
CONN_DOES_NOT_EXIST = "CONN_DOES_NOT_EXIST"
CONN_THROTTLED = "CONN_THROTTLED"
PIPELINE_INVALID_REQUEST = "PIPELINE_INVALID_REQUEST"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL_SERVER_ISSUE = "INTERNAL_SERVER_ISSUE"

#: The only log type the emulator serves.
LOG_TYPE = "pipeline.version.run"
#: The only Patch action the real service documents for pause, resume and cancel.
PATCH_ACTION = "overwrite"

DEFAULT_RUNS_PER_PAGE = 128
DEFAULT_LOGS_PER_PAGE = 32
MAX_PER_PAGE = 1000


class ApiError(Exception):
    """An application-level error, answered in ``response.status`` with gRPC OK.

    :param code: a ``status_code_pb2`` name, e.g. ``"CONN_DOES_NOT_EXIST"``.
    :param description: a short description.
    :param details: what the caller can do about it.
    """

    def __init__(self, code: str, description: str, details: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


@dataclass(frozen=True)
class LogLine:
    """One log entry: the message and a stable, unique url."""

    message: str
    url: str


@dataclass(frozen=True)
class LogPage:
    """A page of log entries, with the page number actually served and the page size."""

    entries: tuple[LogLine, ...]
    page: int
    per_page: int


@dataclass(frozen=True)
class NewRun:
    """A run to create.

    :param id: the run id; empty means the emulator picks a uuid4 hex.
    :param input_args: argo parameter overrides as (name, value) pairs.
    :param nodepool_id: the nodepool the run was sent to.
    :param compute_cluster_id: that nodepool's compute cluster.
    """

    id: str = ""
    input_args: tuple[tuple[str, str], ...] = ()
    nodepool_id: str = ""
    compute_cluster_id: str = ""


@dataclass(frozen=True)
class RunChange:
    """One entry of a Patch: the run and the status code name it should go to."""

    run_id: str
    target: str


@dataclass(frozen=True)
class PatchOutcome:
    """What happened to one requested run: either ``run`` (applied) or ``error`` (rejected, unchanged)."""

    run_id: str
    run: RunSnapshot | None = None
    error: ApiError | None = None

    @property
    def applied(self) -> bool:
        """Whether the change was applied."""
        return self.error is None


@dataclass(frozen=True)
class PatchResult:
    """The outcome of a Patch: one entry per requested run, in request order, and the top-level status."""

    outcomes: tuple[PatchOutcome, ...]
    code: str
    description: str
    details: str = ""


@dataclass
class _Version:
    post_script: RunScript | None
    runs: dict[str, Run] = field(default_factory=dict)


class Backend:
    """The emulated service's state and rules.

    Request methods take ``caller``, the user id returned by :meth:`authorize`, and raise
    :class:`ApiError`. Inspection helpers (``run_status``, ``runs``, ``set_post_script``...) are for
    Python-side test code: they skip authorization and raise :class:`KeyError` for unknown ids.

    :param scenario: the initial state (default: the bundled default scenario).
    :param clock: the lifecycle clock (default: real time).
    :param rate_limit_clock: the clock of the rate limiter (default: the real monotonic clock).
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        clock: Clock | None = None,
        rate_limit_clock: Clock | None = None,
    ) -> None:
        self.scenario = scenario if scenario is not None else Scenario.default()
        self.clock: Clock = clock if clock is not None else WallClock()
        self._lock = threading.RLock()
        self._tokens = {spec.token: spec for spec in self.scenario.tokens}
        self._rate_limiter = RateLimiter(self.scenario.rate_limit_per_second, rate_limit_clock)
        self._last_now = -math.inf
        self._users: set[str] = set()
        self._apps: set[tuple[str, str]] = set()
        self._pipelines: set[tuple[str, str, str]] = set()
        self._versions: dict[VersionRef, _Version] = {}
        now = self._now()
        for user in self.scenario.users:
            self._users.add(user.id)
            for app in user.apps:
                self._apps.add((user.id, app.id))
                for pipeline in app.pipelines:
                    self._pipelines.add((user.id, app.id, pipeline.id))
                    for version in pipeline.versions:
                        ref = VersionRef(user.id, app.id, pipeline.id, version.id)
                        self._versions[ref] = _Version(post_script=version.post_script)
                        for run_spec in version.runs:
                            self._seed(ref, run_spec, now)

    # -- auth -------------------------------------------------------------------------------------------

    def is_known_token(self, token: str | None) -> bool:
        """Tell whether a token is in the scenario.

        :param token: the token, or ``None``.
        :return: whether it is known.
        """
        return token is not None and token in self._tokens

    def authorize(self, token: str | None, scope: Scope) -> str:
        """Check a token, the rate limit and the scope, in that order.

        :param token: the token from ``authorization: Key <token>``, or ``None`` if absent or malformed.
        :param scope: what the request needs.
        :return: the caller's user id.
        :raises ApiError: CONN_KEY_INVALID, CONN_THROTTLED or CONN_INSUFFICIENT_SCOPES.
        """
        spec = self._tokens.get(token) if token else None
        if spec is None:
            # Never echo the token back: it may be a real secret sent to the wrong place.
            raise ApiError(
                CONN_KEY_INVALID,
                "API key is invalid or missing",
                "Send the metadata ('authorization', 'Key <PAT>') with a token listed in the "
                "emulator's scenario.",
            )
        if not self._rate_limiter.allow(spec.token):
            limit = self._rate_limiter.limit_per_second
            raise ApiError(
                CONN_THROTTLED,
                f"exceeded limit of {limit} requests per second",
                "Wait before retrying; the limit is counted per token over a sliding one-second window.",
            )
        if scope not in spec.scopes:
            granted = ", ".join(sorted(spec.scopes)) or "none"
            raise ApiError(
                CONN_INSUFFICIENT_SCOPES,
                "API key has insufficient scopes",
                f"This request needs the '{scope}' scope; the key has: {granted}.",
            )
        return spec.user_id

    @property
    def rate_limit_per_second(self) -> int | None:
        """The current rate limit per token (``None``: off)."""
        return self._rate_limiter.limit_per_second

    def set_rate_limit(self, per_second: int | None) -> None:
        """Change the rate limit at run time.

        :param per_second: requests per second per token; ``None`` or 0 turns the limit off.
        """
        self._rate_limiter.set_limit(per_second)

    # -- requests ---------------------------------------------------------------------------------------

    def get_user(self, caller: str, user_id: str) -> str:
        """Answer GetUser.

        :param caller: the caller's user id.
        :param user_id: the requested user id; ``"me"`` means the caller.
        :return: the user id.
        :raises ApiError: BAD_REQUEST without a user id, CONN_DOES_NOT_EXIST for anyone but the caller.
        """
        if not user_id:
            raise ApiError(BAD_REQUEST, "user_app_id.user_id is required", "Use 'me' for the token's user.")
        if user_id not in ("me", caller):
            raise ApiError(CONN_DOES_NOT_EXIST, f"user '{user_id}' not found", "Check the user id.")
        return caller

    def post_runs(self, caller: str, ref: VersionRef, runs: Sequence[NewRun]) -> list[RunSnapshot]:
        """Create runs, all or none.

        :param caller: the caller's user id.
        :param ref: the pipeline version.
        :param runs: the runs to create.
        :return: the created runs.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids, no runs, a duplicate or existing id;
            CONN_DOES_NOT_EXIST for an unknown user, app, pipeline or version.
        """
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller)
            if not runs:
                raise ApiError(
                    PIPELINE_INVALID_REQUEST,
                    "no pipeline version runs in the request",
                    "Put one PipelineVersionRun in pipeline_version_runs.",
                )
            ids = [run.id or uuid.uuid4().hex for run in runs]
            for index, run_id in enumerate(ids):
                if run_id in version.runs or run_id in ids[:index]:
                    raise ApiError(
                        PIPELINE_INVALID_REQUEST,
                        f"pipeline version run '{run_id}' already exists",
                        "Nothing was created. Choose another id, or Get the existing run: "
                        "a retried Post may already have created it.",
                    )
            script = version.post_script or DEFAULT_SCRIPT
            created = []
            for run_id, new in zip(ids, runs, strict=True):
                run = Run(
                    id=run_id,
                    ref=ref,
                    script=script,
                    created_at=now,
                    input_args=new.input_args,
                    nodepool_id=new.nodepool_id,
                    compute_cluster_id=new.compute_cluster_id,
                )
                version.runs[run_id] = run
                run.advance(now)  # a zero queued_seconds starts the run at once
                created.append(run.snapshot(now))
            return created

    def get_run(self, caller: str, ref: VersionRef, run_id: str) -> RunSnapshot:
        """Answer GetPipelineVersionRun.

        :param caller: the caller's user id.
        :param ref: the pipeline version.
        :param run_id: the run id.
        :return: the run, advanced to now.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids, CONN_DOES_NOT_EXIST for unknown ones.
        """
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller, run_id=run_id)
            run = self._find_run(version, ref, run_id)
            run.advance(now)
            return run.snapshot(now)

    def list_runs(
        self,
        caller: str,
        ref: VersionRef,
        *,
        page: int = 0,
        per_page: int = 0,
        statuses: Iterable[str] = (),
        nodepool_id: str = "",
        compute_cluster_id: str = "",
    ) -> list[RunSnapshot]:
        """Answer ListPipelineVersionRuns: newest created first, ties by id.

        :param caller: the caller's user id.
        :param ref: the pipeline version.
        :param page: page number from 1 (0 means 1).
        :param per_page: page size (0 means 128; capped at 1000).
        :param statuses: keep only runs in these states (status code names); empty keeps all.
        :param nodepool_id: keep only runs sent to this nodepool, if set.
        :param compute_cluster_id: keep only runs sent to this compute cluster, if set.
        :return: the page of runs; empty past the last page.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids, CONN_DOES_NOT_EXIST for unknown ones.
        """
        page = page if page > 0 else 1
        per_page = _page_size(per_page, DEFAULT_RUNS_PER_PAGE)
        wanted = set(statuses)
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller)
            selected = []
            for run in _newest_first(version.runs.values(), now):
                if wanted and str(run.state) not in wanted:
                    continue
                if nodepool_id and run.nodepool_id != nodepool_id:
                    continue
                if compute_cluster_id and run.compute_cluster_id != compute_cluster_id:
                    continue
                selected.append(run)
            start = (page - 1) * per_page
            return [run.snapshot(now) for run in selected[start : start + per_page]]

    def patch_runs(
        self, caller: str, ref: VersionRef, action: str, changes: Sequence[RunChange]
    ) -> PatchResult:
        """Answer PatchPipelineVersionRuns (pause, resume, cancel), deciding run by run.

        The batch is applied under the lock in one go. Each requested run gets exactly one outcome, in
        request order; a rejected run is left unchanged.

        :param caller: the caller's user id.
        :param ref: the pipeline version.
        :param action: the Patch action; only ``"overwrite"`` is accepted.
        :param changes: the runs and their target status names.
        :return: the outcomes and the top-level status (SUCCESS, MIXED_STATUS, or the shared error code
            when every run was rejected for the same reason).
        :raises ApiError: for errors of the whole request (missing ids, unknown version, no runs).
        """
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller)
            if not changes:
                raise ApiError(
                    PIPELINE_INVALID_REQUEST,
                    "no pipeline version runs in the request",
                    "Put the runs to change in pipeline_version_runs.",
                )
            seen: set[str] = set()
            outcomes = []
            for change in changes:
                try:
                    run = self._patch_one(version, ref, action, change, seen, now)
                except ApiError as error:
                    outcomes.append(PatchOutcome(run_id=change.run_id, error=error))
                else:
                    outcomes.append(PatchOutcome(run_id=change.run_id, run=run.snapshot(now)))
            return _patch_result(tuple(outcomes))

    def list_logs(
        self,
        caller: str,
        ref: VersionRef,
        run_id: str,
        *,
        log_type: str = LOG_TYPE,
        page: int = 0,
        per_page: int = 0,
    ) -> LogPage:
        """Answer ListLogEntries for a run.

        :param caller: the caller's user id.
        :param ref: the pipeline version.
        :param run_id: the run id.
        :param log_type: must be ``"pipeline.version.run"``.
        :param page: page number from 1; 0 (omitted) serves the *last* page, as the real service does.
        :param per_page: page size (0 means 32; capped at 1000).
        :return: the entries, with the page number served and the page size.
        :raises ApiError: BAD_REQUEST for another log type, PIPELINE_INVALID_REQUEST for missing ids,
            CONN_DOES_NOT_EXIST for unknown ones.
        """
        if log_type != LOG_TYPE:
            raise ApiError(
                BAD_REQUEST,
                f"log_type '{log_type}' is not supported by the emulator",
                f"Use log_type '{LOG_TYPE}'.",
            )
        per_page = _page_size(per_page, DEFAULT_LOGS_PER_PAGE)
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller, run_id=run_id)
            run = self._find_run(version, ref, run_id)
            run.advance(now)
            lines = list(run.lines)
        last_page = max(1, math.ceil(len(lines) / per_page))
        page = page if page > 0 else last_page
        start = (page - 1) * per_page
        base = f"emulator://logs/{ref.user_id}/{ref.app_id}/{ref.pipeline_id}/{ref.version_id}/{run_id}"
        entries = tuple(
            LogLine(message=message, url=f"{base}/{number}")
            for number, message in enumerate(lines[start : start + per_page], start=start + 1)
        )
        return LogPage(entries=entries, page=page, per_page=per_page)

    # -- inspection helpers for tests -------------------------------------------------------------------

    def now(self) -> float:
        """Return the lifecycle clock's time."""
        return self.clock.now()

    def run(self, user_id: str, app_id: str, pipeline_id: str, version_id: str, run_id: str) -> RunSnapshot:
        """Return a run, advanced to now.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the run id.
        :return: the run.
        :raises KeyError: if a resource does not exist.
        """
        with self._lock, _as_key_error():
            now = self._now()
            ref, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            run = self._find_run(version, ref, run_id)
            run.advance(now)
            return run.snapshot(now)

    def run_status(self, user_id: str, app_id: str, pipeline_id: str, version_id: str, run_id: str) -> str:
        """Return a run's state name (e.g. ``"JOB_RUNNING"``), advanced to now.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the run id.
        :return: the state name.
        :raises KeyError: if a resource does not exist.
        """
        return str(self.run(user_id, app_id, pipeline_id, version_id, run_id).state)

    def runs(self, user_id: str, app_id: str, pipeline_id: str, version_id: str) -> list[RunSnapshot]:
        """Return every run of a version, newest first, advanced to now.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :return: the runs.
        :raises KeyError: if a resource does not exist.
        """
        with self._lock, _as_key_error():
            now = self._now()
            _, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            return [run.snapshot(now) for run in _newest_first(version.runs.values(), now)]

    def log_messages(
        self, user_id: str, app_id: str, pipeline_id: str, version_id: str, run_id: str
    ) -> list[str]:
        """Return every log message of a run so far.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the run id.
        :return: the messages, oldest first.
        :raises KeyError: if a resource does not exist.
        """
        with self._lock, _as_key_error():
            now = self._now()
            ref, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            run = self._find_run(version, ref, run_id)
            run.advance(now)
            return list(run.lines)

    def set_post_script(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        version_id: str,
        script: RunScript | Mapping[str, Any] | None,
    ) -> None:
        """Set the script that runs posted from now on to a version get.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param script: a :class:`RunScript`, a mapping in the scenario format, or ``None`` for the default.
        :raises KeyError: if the version does not exist.
        :raises ScenarioError: if the mapping is invalid.
        """
        if isinstance(script, Mapping):
            script = RunScript.from_dict(script, "post_script")
        with self._lock, _as_key_error():
            _, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            version.post_script = script

    def add_run(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        version_id: str,
        run_id: str,
        status: RunState | str = RunState.QUEUED,
        script: RunScript | Mapping[str, Any] | None = None,
    ) -> RunSnapshot:
        """Seed a run now, in a given state, as a scenario's ``runs`` entry would.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the new run's id.
        :param status: its initial state name.
        :param script: how it continues (default: the default script).
        :return: the run.
        :raises KeyError: if the version does not exist.
        :raises ValueError: if the run already exists or the status is unknown.
        """
        if isinstance(script, Mapping):
            script = RunScript.from_dict(script, "script")
        spec = RunSpec(id=run_id, status=RunState(status), script=script or DEFAULT_SCRIPT)
        with self._lock:
            now = self._now()
            with _as_key_error():
                ref, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            if run_id in version.runs:
                raise ValueError(f"run {run_id!r} already exists")
            return self._seed(ref, spec, now).snapshot(now)

    # -- internals --------------------------------------------------------------------------------------

    def _now(self) -> float:
        # Read under the lock and never go backwards: the lazy state machine assumes time is monotonic,
        # even if a clock hands two threads their readings out of order.
        with self._lock:
            self._last_now = max(self._last_now, self.clock.now())
            return self._last_now

    def _seed(self, ref: VersionRef, spec: RunSpec, now: float) -> Run:
        run = Run.seed(ref, spec, now)
        self._versions[ref].runs[spec.id] = run
        return run

    def _find_version(
        self, ref: VersionRef, caller: str | None, run_id: str | None = None
    ) -> tuple[VersionRef, _Version]:
        """Resolve ids, with "me" replaced by the caller; ``caller=None`` is trusted Python code."""
        missing = [
            name
            for name, value in (
                ("user_app_id.user_id", ref.user_id),
                ("user_app_id.app_id", ref.app_id),
                ("pipeline_id", ref.pipeline_id),
                ("pipeline_version_id", ref.version_id),
                ("pipeline_version_run_id", run_id),
            )
            if value == ""
        ]
        if missing:
            raise ApiError(
                PIPELINE_INVALID_REQUEST,
                f"missing required ids: {', '.join(missing)}",
                "Set every id of the pipeline version in the request.",
            )
        user_id = caller if caller is not None and ref.user_id == "me" else ref.user_id
        # Another user's resources answer exactly like missing ones, so a token cannot probe for them.
        if user_id not in self._users or (caller is not None and user_id != caller):
            raise ApiError(CONN_DOES_NOT_EXIST, f"user '{ref.user_id}' not found", "Check the user id.")
        if (user_id, ref.app_id) not in self._apps:
            raise ApiError(
                CONN_DOES_NOT_EXIST, f"app '{ref.app_id}' not found for user '{user_id}'", "Check the app id."
            )
        if (user_id, ref.app_id, ref.pipeline_id) not in self._pipelines:
            raise ApiError(
                CONN_DOES_NOT_EXIST,
                f"pipeline '{ref.pipeline_id}' not found in app '{ref.app_id}'",
                "Check the pipeline id.",
            )
        resolved = VersionRef(user_id, ref.app_id, ref.pipeline_id, ref.version_id)
        version = self._versions.get(resolved)
        if version is None:
            raise ApiError(
                CONN_DOES_NOT_EXIST,
                f"pipeline version '{ref.version_id}' not found for pipeline '{ref.pipeline_id}'",
                "Check the pipeline version id.",
            )
        return resolved, version

    @staticmethod
    def _find_run(version: _Version, ref: VersionRef, run_id: str) -> Run:
        run = version.runs.get(run_id)
        if run is None:
            raise ApiError(
                CONN_DOES_NOT_EXIST,
                f"pipeline version run '{run_id}' not found for pipeline version '{ref.version_id}'",
                "Check the run id.",
            )
        return run

    def _patch_one(
        self, version: _Version, ref: VersionRef, action: str, change: RunChange, seen: set[str], now: float
    ) -> Run:
        run_id = change.run_id
        if action != PATCH_ACTION:
            raise ApiError(
                PIPELINE_INVALID_REQUEST,
                f"action '{action}' is not supported",
                f"Use action '{PATCH_ACTION}' to pause, resume or cancel runs.",
            )
        if not run_id:
            raise ApiError(PIPELINE_INVALID_REQUEST, "a run in the request has no id", "Set each run's id.")
        if run_id in seen:
            raise ApiError(
                PIPELINE_INVALID_REQUEST,
                f"run '{run_id}' appears more than once in the request",
                "The first entry was processed; list each run once.",
            )
        seen.add(run_id)
        run = self._find_run(version, ref, run_id)
        run.advance(now)
        try:
            run.change(change.target, now)
        except TransitionError as error:
            raise ApiError(PIPELINE_INVALID_REQUEST, str(error), error.details) from None
        return run


def _patch_result(outcomes: tuple[PatchOutcome, ...]) -> PatchResult:
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    if not errors:
        return PatchResult(outcomes, SUCCESS, "Ok")
    if len(errors) == len(outcomes) and len({error.code for error in errors}) == 1:
        return PatchResult(outcomes, errors[0].code, errors[0].description, errors[0].details)
    applied = len(outcomes) - len(errors)
    return PatchResult(
        outcomes,
        MIXED_STATUS,
        f"{applied} of {len(outcomes)} runs changed",
        "Each run's orchestration_status.status tells its outcome: a JOB_* code is the run's new state, "
        "any other code is the reason the run was left unchanged.",
    )


def _newest_first(runs: Iterable[Run], now: float) -> list[Run]:
    """Advance runs to ``now`` and order them as List does: newest created first, ties by id."""
    ordered = sorted(runs, key=lambda run: run.id)
    ordered.sort(key=lambda run: run.created_at, reverse=True)
    for run in ordered:
        run.advance(now)
    return ordered


def _page_size(per_page: int, default: int) -> int:
    if per_page <= 0:
        return default
    return min(per_page, MAX_PER_PAGE)


@contextlib.contextmanager
def _as_key_error() -> Iterator[None]:
    """Turn ApiError into KeyError for the Python-side helpers, which are not requests."""
    try:
        yield
    except ApiError as error:
        raise KeyError(error.description) from None
