"""The emulator's backend: the service's rules over the runs of :mod:`.store`, with no gRPC in sight.

Like a moto backend, this module holds the rules, and :mod:`.servicer` only translates protobuf to and
from it: authentication, the rate limit and scopes, then each RPC's checks and effects (Post, Get, List,
Patch, ListLogEntries, GetUser). The state itself (the resource tree, finding things in it, the lifecycle
clock, inspection helpers for tests) is :class:`.store.RunStore`, which :class:`Backend` extends; one run's
life is in :mod:`.lifecycle`; rate limiting, faults and the request log are in :mod:`.traffic`.
Everything is thread-safe: the store's re-entrant lock makes a request (a Patch batch, say) apply as a
whole without interleaving with others.

Application errors are raised as :class:`~.errors.ApiError` carrying a ``status_code_pb2`` *name*; the
servicer turns them into ``response.status``, the way the real service reports them. The names below
that live in other modules are re-exported from here, where they have always been importable.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterable, Sequence

from airflow_provider_clarifai.emulator.catalog import (
    DEFAULT_RUNS_PER_PAGE,
    MAX_PER_PAGE,
    CatalogStore,
    is_nodepool_listing,
    page_size,
    select_page,
)
from airflow_provider_clarifai.emulator.clock import Clock
from airflow_provider_clarifai.emulator.domain import DEFAULT_SCRIPT, Scenario, Scope
from airflow_provider_clarifai.emulator.errors import (
    BAD_REQUEST,
    CONN_DOES_NOT_EXIST,
    CONN_INSUFFICIENT_SCOPES,
    CONN_KEY_INVALID,
    CONN_THROTTLED,
    INTERNAL_SERVER_ISSUE,
    MIXED_STATUS,
    PIPELINE_INVALID_REQUEST,
    SUCCESS,
    ApiError,
)
from airflow_provider_clarifai.emulator.lifecycle import Run, RunSnapshot, TransitionError, VersionRef
from airflow_provider_clarifai.emulator.store import _Version
from airflow_provider_clarifai.emulator.traffic import Faults, RateLimiter, RequestLog, RequestRecord
from airflow_provider_clarifai.emulator.values import (
    LogLine,
    LogPage,
    NewRun,
    PatchOutcome,
    PatchResult,
    RunChange,
)

__all__ = [
    "BAD_REQUEST",
    "CONN_DOES_NOT_EXIST",
    "CONN_INSUFFICIENT_SCOPES",
    "CONN_KEY_INVALID",
    "CONN_THROTTLED",
    "DEFAULT_RUNS_PER_PAGE",
    "INTERNAL_SERVER_ISSUE",
    "LOG_TYPE",
    "MAX_PER_PAGE",
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

#: The only log type the emulator serves.
LOG_TYPE = "pipeline.version.run"
#: The only Patch action the real service documents for pause, resume and cancel.
PATCH_ACTION = "overwrite"

DEFAULT_LOGS_PER_PAGE = 32


class Backend(CatalogStore):
    """The emulated service: its state (:class:`~.store.RunStore`, with the listings of
    :class:`~.catalog.CatalogStore`) and its rules.

    Request methods take ``caller``, the user id returned by :meth:`authorize`, and raise
    :class:`ApiError`. The inspection helpers inherited from the store (``run_status``, ``runs``,
    ``set_post_script``...) are for Python-side test code: they skip authorization and raise
    :class:`KeyError` for unknown ids.

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
        super().__init__(scenario, clock)
        self._tokens = {spec.token: spec for spec in self.scenario.tokens}
        self._rate_limiter = RateLimiter(self.scenario.rate_limit_per_second, rate_limit_clock)

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
            runs = [self._placed(ref.user_id, run) for run in runs]
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
        """Answer ListPipelineVersionRuns: newest created first, ties by id. With the app, pipeline and
        version all empty, it lists the user's runs on one nodepool (:meth:`list_nodepool_runs`).

        :param caller: the caller's user id.
        :param ref: the pipeline version (only the user, for the runs on a nodepool).
        :param page: page number from 1 (0 means 1).
        :param per_page: page size (0 means 128; capped at 1000).
        :param statuses: keep only runs in these states (status code names); empty keeps all.
        :param nodepool_id: keep only runs sent to this nodepool, if set.
        :param compute_cluster_id: keep only runs sent to this compute cluster, if set.
        :return: the page of runs; empty past the last page.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids; CONN_DOES_NOT_EXIST for unknown ones;
            COMPUTE_CLUSTER_DOES_NOT_EXIST or NODEPOOL_DOES_NOT_EXIST for a nodepool the user does not have.
        """
        if is_nodepool_listing(ref, compute_cluster_id, nodepool_id):
            return self.list_nodepool_runs(
                caller,
                ref.user_id,
                compute_cluster_id,
                nodepool_id,
                page=page,
                per_page=per_page,
                statuses=statuses,
            )
        with self._lock:
            now = self._now()
            ref, version = self._find_version(ref, caller)
            self._check_nodepool(ref.user_id, compute_cluster_id, nodepool_id)
            return select_page(
                version.runs.values(),
                now,
                page=page,
                per_page=per_page,
                statuses=statuses,
                nodepool_id=nodepool_id,
                compute_cluster_id=compute_cluster_id,
            )

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
        per_page = page_size(per_page, DEFAULT_LOGS_PER_PAGE)
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

    # -- internals --------------------------------------------------------------------------------------

    def _placed(self, user_id: str, run: NewRun) -> NewRun:
        """A posted run whose nodepool the user has; without a cluster id, the cluster that holds it."""
        self._check_nodepool(user_id, run.compute_cluster_id, run.nodepool_id)
        if run.nodepool_id and not run.compute_cluster_id:
            for cluster_id, nodepool_id in self.nodepools(user_id):
                if nodepool_id == run.nodepool_id:
                    return dataclasses.replace(run, compute_cluster_id=cluster_id)
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
