"""Which runs a pause, resume or cancel task selects when it names more than one pipeline version.

A scope is where the task looks for runs in the selected states:

- ``version``: one pipeline version (the ids as everywhere: explicit, else ``config-lock.yaml``, else
  the connection);
- ``pipeline``: every version of one pipeline (``ListPipelineVersions``, then each version's runs);
- ``app``: every pipeline of one app (``ListPipelines``, each pipeline's versions, their runs);
- ``nodepool``: every run of the user on one nodepool, across apps and pipelines (the nodepool-wide
  ``ListPipelineVersionRuns``: one listing, each run names its own version).

The selection is read in full before anything is changed and grouped per pipeline version. Its cost is
bounded and stated in ``docs/operators/nodepool-maintenance.rst``: listings of at most
:data:`MAX_VERSIONS` versions, of pages of 1,000 runs; a selection that matches more than ``max_runs``
runs is refused with a clear error before any change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import PipelineVersionIds, read_config_lock, validate_optional_id
from airflow_provider_clarifai.status import PipelineRunStatus, format_statuses

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.runs import PipelineRun

#: Runs a task may select unless its ``max_runs`` says otherwise; 10,000 at most (one task's bound).
DEFAULT_MAX_RUNS = 1000
MAX_RUNS_LIMIT = 10_000
#: Pipelines, and versions, a scope may span; a larger app is refused before its runs are read.
MAX_VERSIONS = 1000
#: With an age filter every page must be read; this many runs read at most.
MAX_LISTED = 100_000
PAGE = 1000


class RunScope(StrEnum):
    """Where a selection looks for runs."""

    VERSION = "version"
    PIPELINE = "pipeline"
    APP = "app"
    NODEPOOL = "nodepool"

    @classmethod
    def parse(cls, value: object) -> RunScope:
        """The scope named by ``value``.

        :param value: ``"version"``, ``"pipeline"``, ``"app"`` or ``"nodepool"``.
        :raises ClarifaiConfigurationError: it names no scope.
        """
        try:
            return cls(str(value))
        except ValueError:
            names = ", ".join(repr(scope.value) for scope in cls)
            raise ClarifaiConfigurationError(f"scope must be one of {names}, got {value!r}.") from None


@dataclass(frozen=True)
class ScopeIds:
    """The ids a scope needs, resolved.

    :param scope: the scope.
    :param user_id: the user.
    :param app_id: the app (``pipeline``, ``app`` and ``version`` scopes).
    :param pipeline_id: the pipeline (``pipeline`` and ``version`` scopes).
    :param pipeline_version_id: the version (``version`` scope).
    :param compute_cluster_id: the compute cluster (``nodepool`` scope).
    :param nodepool_id: the nodepool (``nodepool`` scope).
    """

    scope: RunScope
    user_id: str
    app_id: str | None = None
    pipeline_id: str | None = None
    pipeline_version_id: str | None = None
    compute_cluster_id: str | None = None
    nodepool_id: str | None = None

    def describe(self) -> str:
        """The scope in words, for logs and messages."""
        if self.scope is RunScope.NODEPOOL:
            return f"nodepool {self.user_id}/{self.compute_cluster_id}/{self.nodepool_id}"
        if self.scope is RunScope.APP:
            return f"every pipeline of app {self.user_id}/{self.app_id}"
        if self.scope is RunScope.PIPELINE:
            return f"every version of pipeline {self.user_id}/{self.app_id}/{self.pipeline_id}"
        return f"{self.user_id}/{self.app_id}/{self.pipeline_id}/{self.pipeline_version_id}"


#: The ids each scope needs, in order.
_NEEDS = {
    RunScope.VERSION: ("user_id", "app_id", "pipeline_id", "pipeline_version_id"),
    RunScope.PIPELINE: ("user_id", "app_id", "pipeline_id"),
    RunScope.APP: ("user_id", "app_id"),
    RunScope.NODEPOOL: ("user_id", "compute_cluster_id", "nodepool_id"),
}


def resolve_scope(
    scope: RunScope,
    given: dict[str, str | None],
    *,
    config_lock_path: str | None,
    base_dir: str | None,
    default_user_id: str | None,
    default_app_id: str | None,
    conn_id: str,
) -> ScopeIds:
    """The ids of a scope: explicit, else ``config-lock.yaml``, else the connection's user and app.

    :param scope: the scope.
    :param given: the task's explicit ids (``user_id`` ... ``nodepool_id``), ``None`` where not given.
    :param config_lock_path: the pipeline's ``config-lock.yaml``, if any.
    :param base_dir: the folder a relative ``config_lock_path`` is relative to.
    :param default_user_id: the connection's default user.
    :param default_app_id: the connection's default app.
    :param conn_id: the connection, for messages.
    :raises ClarifaiConfigurationError: an id the scope needs is missing or invalid.
    """
    from_file = read_config_lock(config_lock_path, base_dir=base_dir) if config_lock_path else {}
    defaults = {"user_id": default_user_id, "app_id": default_app_id}
    resolved: dict[str, str | None] = {}
    for name in _NEEDS[scope]:
        value = given.get(name)
        if value is None and (scope is not RunScope.NODEPOOL or name == "user_id"):
            value = from_file.get(name) or defaults.get(name)
        resolved[name] = validate_optional_id(value, what=name)
    missing = [name for name, value in resolved.items() if not value]
    if missing:
        where = "explicitly" if scope is RunScope.NODEPOOL else "explicitly, in config_lock_path"
        raise ClarifaiConfigurationError(
            f"scope={scope.value!r} needs {', '.join(missing)}: pass {' and '.join(missing)} {where}, or "
            f"set user_id/app_id in the extras of Airflow connection {conn_id!r}."
        )
    return ScopeIds(scope, **resolved)  # type: ignore[arg-type]


def select_runs(
    hook: ClarifaiHook,
    where: ScopeIds,
    statuses: frozenset[PipelineRunStatus],
    *,
    older_than: float | None,
    now: float,
    max_runs: int,
) -> dict[PipelineVersionIds, list[PipelineRun]]:
    """The scope's runs in ``statuses`` (and older than ``older_than``), grouped per version.

    :param hook: the hook.
    :param where: the scope.
    :param statuses: the states selected.
    :param older_than: only runs whose last change is at least this many seconds before ``now``.
    :param now: UNIX seconds.
    :param max_runs: the most runs the selection may match.
    :raises ClarifaiConfigurationError: the selection matches more than ``max_runs`` runs, or the scope
        spans more than :data:`MAX_VERSIONS` pipelines or versions; nothing is changed.
    """
    # Without an age filter every listed run matches: reading one run past the bound is enough to refuse.
    listed_cap = max_runs + 1 if older_than is None else MAX_LISTED + 1
    pages = math.ceil(listed_cap / PAGE)
    found: list[PipelineRun] = []
    if where.scope is RunScope.NODEPOOL:
        found = hook.list_nodepool_runs(
            where.user_id,
            where.compute_cluster_id or "",
            where.nodepool_id or "",
            statuses=statuses,
            per_page=PAGE,
            max_runs=listed_cap,
        )
    else:
        for ids in _versions(hook, where):
            found += hook.list_runs(ids, statuses=statuses, per_page=PAGE, max_pages=pages)
            if len(found) >= listed_cap:
                break
    if (older_than is None and len(found) > max_runs) or len(found) > MAX_LISTED:
        raise _too_many(where, statuses, max_runs, f"more than {min(len(found) - 1, MAX_LISTED):,}")
    matched = [run for run in found if older_than is None or _age(run, now) >= older_than]
    if len(matched) > max_runs:
        raise _too_many(where, statuses, max_runs, f"{len(matched):,}")
    groups: dict[PipelineVersionIds, list[PipelineRun]] = {}
    for run in matched:
        ids = PipelineVersionIds(run.user_id, run.app_id, run.pipeline_id, run.pipeline_version_id)
        groups.setdefault(ids, []).append(run)
    return groups


def _versions(hook: ClarifaiHook, where: ScopeIds) -> list[PipelineVersionIds]:
    user, app = where.user_id, where.app_id or ""
    if where.scope is RunScope.VERSION:
        return [PipelineVersionIds(user, app, where.pipeline_id or "", where.pipeline_version_id or "")]
    if where.scope is RunScope.PIPELINE:
        pipelines = [where.pipeline_id or ""]
    else:
        pipelines = [p.pipeline_id for p in hook.list_pipelines(user, app, max_items=MAX_VERSIONS + 1)]
        _check_span(len(pipelines), "pipelines", where)
    versions: list[PipelineVersionIds] = []
    for pipeline_id in pipelines:
        listed = hook.list_pipeline_versions(user, app, pipeline_id, max_items=MAX_VERSIONS + 1)
        versions += [PipelineVersionIds(user, app, pipeline_id, v.pipeline_version_id) for v in listed]
        _check_span(len(versions), "pipeline versions", where)
    return versions


def _check_span(count: int, what: str, where: ScopeIds) -> None:
    if count > MAX_VERSIONS:
        raise ClarifaiConfigurationError(
            f"{where.describe()} has more than {MAX_VERSIONS} {what}: this task reads at most "
            f"{MAX_VERSIONS}. Nothing was changed. Use a smaller scope (scope='pipeline' or 'version')."
        )


def _age(run: PipelineRun, now: float) -> float:
    when = run.modified_at or run.created_at
    return now - when.timestamp() if when is not None else 0.0


def _too_many(
    where: ScopeIds, statuses: Iterable[PipelineRunStatus], max_runs: int, count: str
) -> ClarifaiConfigurationError:
    return ClarifaiConfigurationError(
        f"The selection of runs in {format_statuses(statuses)} in {where.describe()} matches {count} runs, "
        f"more than max_runs={max_runs}. Nothing was changed. Narrow it (fewer states, older_than, a "
        f"smaller scope) or raise max_runs (up to {MAX_RUNS_LIMIT:,})."
    )


def find_one(
    hook: ClarifaiHook, where: ScopeIds, statuses: frozenset[PipelineRunStatus]
) -> PipelineRun | None:
    """A run of the scope in ``statuses``, or ``None`` when it is drained of them (one page of one run
    per version looked at; a nodepool, one request).

    :param hook: the hook.
    :param where: the scope.
    :param statuses: the states.
    """
    if where.scope is RunScope.NODEPOOL:
        runs = hook.list_nodepool_runs(
            where.user_id,
            where.compute_cluster_id or "",
            where.nodepool_id or "",
            statuses=statuses,
            per_page=1,
            max_runs=1,
        )
        return runs[0] if runs else None
    for ids in _versions(hook, where):
        runs = hook.list_runs(ids, statuses=statuses, per_page=1, max_pages=1)
        if runs:
            return runs[0]
    return None


async def afind_one(
    hook: ClarifaiHook,
    where: ScopeIds,
    statuses: frozenset[PipelineRunStatus],
    versions: list[PipelineVersionIds] | None = None,
) -> tuple[PipelineRun | None, list[PipelineVersionIds] | None]:
    """Asyncio twin of :func:`find_one`; also returns the scope's versions, to pass back next time.

    :param hook: the hook.
    :param where: the scope.
    :param statuses: the states.
    :param versions: the scope's versions from an earlier look (``None``: list them).
    """
    if where.scope is RunScope.NODEPOOL:
        runs = await hook.alist_nodepool_runs(
            where.user_id,
            where.compute_cluster_id or "",
            where.nodepool_id or "",
            statuses=statuses,
            per_page=1,
            max_runs=1,
        )
        return (runs[0] if runs else None), None
    if versions is None:
        versions = await _aversions(hook, where)
    for ids in versions:
        runs = await hook.alist_runs(ids, statuses=statuses, per_page=1, max_pages=1)
        if runs:
            return runs[0], versions
    return None, versions


async def _aversions(hook: ClarifaiHook, where: ScopeIds) -> list[PipelineVersionIds]:
    user, app = where.user_id, where.app_id or ""
    if where.scope is RunScope.VERSION:
        return [PipelineVersionIds(user, app, where.pipeline_id or "", where.pipeline_version_id or "")]
    if where.scope is RunScope.PIPELINE:
        pipelines = [where.pipeline_id or ""]
    else:
        listed = await hook.alist_pipelines(user, app, max_items=MAX_VERSIONS + 1)
        pipelines = [p.pipeline_id for p in listed]
        _check_span(len(pipelines), "pipelines", where)
    versions: list[PipelineVersionIds] = []
    for pipeline_id in pipelines:
        found = await hook.alist_pipeline_versions(user, app, pipeline_id, max_items=MAX_VERSIONS + 1)
        versions += [PipelineVersionIds(user, app, pipeline_id, v.pipeline_version_id) for v in found]
        _check_span(len(versions), "pipeline versions", where)
    return versions
