"""What the emulated service lists besides one version's runs: an app's pipelines, a pipeline's versions,
and the runs on one nodepool across apps, pipelines and versions.

:class:`CatalogStore` extends :class:`.store.RunStore` (the state) with those listings and with the helpers
a test uses to add pipelines, versions and nodepools; :class:`.models.Backend` builds on it. The paging
rules shared by every run listing (:func:`select_page`) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_clarifai.emulator.domain import RunScript
from airflow_provider_clarifai.emulator.errors import PIPELINE_INVALID_REQUEST, ApiError
from airflow_provider_clarifai.emulator.lifecycle import Run, RunSnapshot, VersionRef
from airflow_provider_clarifai.emulator.store import RunStore, _as_key_error, _Version
from airflow_provider_clarifai.emulator.store import _newest_first as _newest_runs_first
from airflow_provider_clarifai.emulator.values import PipelineRecord, VersionRecord

__all__ = [
    "DEFAULT_RUNS_PER_PAGE",
    "MAX_PER_PAGE",
    "CatalogStore",
    "is_nodepool_listing",
    "page_size",
    "select_page",
]

DEFAULT_RUNS_PER_PAGE = 128
MAX_PER_PAGE = 1000

#: What a listing of runs needs, for the details of a missing-ids error.
_LISTING_FORMS = (
    "List a pipeline version's runs with user_app_id (user and app), pipeline_id and pipeline_version_id; "
    "or the runs on a nodepool with user_app_id.user_id, compute_cluster_id and nodepool_id, and no app, "
    "pipeline or version."
)


def page_size(per_page: int, default: int) -> int:
    """The page size a request gets: ``default`` for 0 (unset), at most :data:`MAX_PER_PAGE`.

    :param per_page: the requested size.
    :param default: the size of an unset ``per_page``.
    :return: the size served.
    """
    if per_page <= 0:
        return default
    return min(per_page, MAX_PER_PAGE)


def _page(items: list[Any], page: int, per_page: int) -> list[Any]:
    page = page if page > 0 else 1
    start = (page - 1) * page_size(per_page, DEFAULT_RUNS_PER_PAGE)
    return items[start : start + page_size(per_page, DEFAULT_RUNS_PER_PAGE)]


def select_page(
    runs: Iterable[Run],
    now: float,
    *,
    page: int,
    per_page: int,
    statuses: Iterable[str] = (),
    nodepool_id: str = "",
    compute_cluster_id: str = "",
) -> list[RunSnapshot]:
    """One page of runs as every run listing serves it: newest created first, ties by id (then by
    app, pipeline and version), filtered after advancing to ``now``.

    :param runs: the runs to list.
    :param now: the current time.
    :param page: page number from 1 (0 means 1).
    :param per_page: page size (0 means 128; capped at 1000).
    :param statuses: keep only runs in these states (status code names); empty keeps all.
    :param nodepool_id: keep only runs on this nodepool, if set.
    :param compute_cluster_id: keep only runs on this compute cluster, if set.
    :return: the page; empty past the last page.
    """
    wanted = set(statuses)
    selected = []
    for run in _newest_runs_first(runs, now):
        if wanted and str(run.state) not in wanted:
            continue
        if nodepool_id and run.nodepool_id != nodepool_id:
            continue
        if compute_cluster_id and run.compute_cluster_id != compute_cluster_id:
            continue
        selected.append(run)
    return [run.snapshot(now) for run in _page(selected, page, per_page)]


def is_nodepool_listing(ref: VersionRef, compute_cluster_id: str, nodepool_id: str) -> bool:
    """Tell which listing a ListPipelineVersionRuns request asks for, or why it can be neither.

    :param ref: the ids of the request (only the user may be set for a nodepool listing).
    :param compute_cluster_id: the request's compute cluster id.
    :param nodepool_id: the request's nodepool id.
    :return: ``True`` for the runs on a nodepool (no app, pipeline or version, and both nodepool ids);
        ``False`` for a pipeline version's runs (app, pipeline and version all set).
    :raises ApiError: PIPELINE_INVALID_REQUEST naming the missing ids, for some but not all of the app,
        pipeline and version, or for a nodepool listing without its user, cluster or nodepool.
    """
    version_ids = {
        "user_app_id.app_id": ref.app_id,
        "pipeline_id": ref.pipeline_id,
        "pipeline_version_id": ref.version_id,
    }
    given = [name for name, value in version_ids.items() if value]
    if len(given) == len(version_ids):
        return False
    if given:
        missing = [name for name, value in version_ids.items() if not value]
        if not ref.user_id:
            missing.insert(0, "user_app_id.user_id")
    else:
        pairs = (
            ("user_app_id.user_id", ref.user_id),
            ("compute_cluster_id", compute_cluster_id),
            ("nodepool_id", nodepool_id),
        )
        missing = [name for name, value in pairs if not value]
    if missing:
        raise ApiError(
            PIPELINE_INVALID_REQUEST, f"missing required ids: {', '.join(missing)}", _LISTING_FORMS
        )
    return True


class CatalogStore(RunStore):
    """The run store, with the listings of pipelines, versions and the runs on a nodepool, and the
    helpers that add pipelines, versions and nodepools at run time.

    :param scenario: the initial state (default: the bundled default scenario).
    :param clock: the lifecycle clock (default: real time).
    """

    # -- for test code ----------------------------------------------------------------------------------

    def add_pipeline(self, user_id: str, app_id: str, pipeline_id: str) -> None:
        """Create a pipeline now (and its app, if the user has no such app).

        :param user_id: the user id (must exist).
        :param app_id: the app id.
        :param pipeline_id: the new pipeline's id.
        :raises KeyError: if the user does not exist.
        :raises ValueError: if the pipeline exists.
        """
        with self._lock, _as_key_error():
            self._find_user(user_id, None)
            if (user_id, app_id, pipeline_id) in self._pipelines:
                raise ValueError(f"pipeline {pipeline_id!r} already exists in app {app_id!r}")
            self._apps.add((user_id, app_id))
            self._pipelines[(user_id, app_id, pipeline_id)] = self._now()

    def add_version(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        version_id: str,
        post_script: RunScript | Mapping[str, Any] | None = None,
    ) -> None:
        """Create a pipeline version now.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id (must exist).
        :param version_id: the new version's id.
        :param post_script: how runs posted to it live (default: the default script).
        :raises KeyError: if the pipeline does not exist.
        :raises ValueError: if the version exists.
        """
        if isinstance(post_script, Mapping):
            post_script = RunScript.from_dict(post_script, "post_script")
        with self._lock:
            with _as_key_error():
                self._find_pipeline(user_id, app_id, pipeline_id, None)
            ref = VersionRef(user_id, app_id, pipeline_id, version_id)
            if ref in self._versions:
                raise ValueError(
                    f"pipeline version {version_id!r} already exists in pipeline {pipeline_id!r}"
                )
            self._versions[ref] = _Version(post_script=post_script, created_at=self._now())

    def add_nodepool(self, user_id: str, compute_cluster_id: str, nodepool_id: str) -> None:
        """Declare a nodepool (and its compute cluster, if new) of a user. From then on the user has only
        the nodepools declared, as if the scenario had listed them.

        :param user_id: the user id (must exist).
        :param compute_cluster_id: the compute cluster id.
        :param nodepool_id: the nodepool id.
        :raises KeyError: if the user does not exist.
        :raises ValueError: if an id is empty or holds a ``/``.
        """
        for name, value in (("compute_cluster_id", compute_cluster_id), ("nodepool_id", nodepool_id)):
            if not value or "/" in value:
                raise ValueError(f"{name} must be a non-empty id without '/', got {value!r}")
        with self._lock, _as_key_error():
            self._find_user(user_id, None)
            nodepools = self._clusters.setdefault(user_id, {}).setdefault(compute_cluster_id, [])
            if nodepool_id not in nodepools:
                nodepools.append(nodepool_id)

    def nodepools(self, user_id: str) -> list[tuple[str, str]]:
        """Return a user's declared nodepools.

        :param user_id: the user id.
        :return: ``(compute_cluster_id, nodepool_id)`` pairs, in the order declared.
        """
        with self._lock:
            clusters = self._clusters.get(user_id, {})
            return [(cluster, nodepool) for cluster, nodepools in clusters.items() for nodepool in nodepools]

    # -- requests ---------------------------------------------------------------------------------------

    def list_pipelines(
        self, caller: str, user_id: str, app_id: str, *, page: int = 0, per_page: int = 0
    ) -> list[PipelineRecord]:
        """Answer ListPipelines: an app's pipelines, newest created first, ties by id.

        :param caller: the caller's user id.
        :param user_id: ``user_app_id.user_id`` (``"me"``: the caller).
        :param app_id: ``user_app_id.app_id``.
        :param page: page number from 1 (0 means 1).
        :param per_page: page size (0 means 128; capped at 1000).
        :return: the page; empty past the last page.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids, CONN_DOES_NOT_EXIST for unknown ones.
        """
        _require(("user_app_id.user_id", user_id), ("user_app_id.app_id", app_id))
        with self._lock:
            user_id = self._find_app(user_id, app_id, caller)
            found = [
                PipelineRecord(user, app, pipeline, created_at)
                for (user, app, pipeline), created_at in self._pipelines.items()
                if (user, app) == (user_id, app_id)
            ]
        return _page(_newest_first(found, lambda record: record.pipeline_id), page, per_page)

    def list_versions(
        self, caller: str, user_id: str, app_id: str, pipeline_id: str, *, page: int = 0, per_page: int = 0
    ) -> list[VersionRecord]:
        """Answer ListPipelineVersions: a pipeline's versions, newest created first, ties by id.

        :param caller: the caller's user id.
        :param user_id: ``user_app_id.user_id`` (``"me"``: the caller).
        :param app_id: ``user_app_id.app_id``.
        :param pipeline_id: the pipeline id.
        :param page: page number from 1 (0 means 1).
        :param per_page: page size (0 means 128; capped at 1000).
        :return: the page; empty past the last page.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids, CONN_DOES_NOT_EXIST for unknown ones.
        """
        _require(
            ("user_app_id.user_id", user_id), ("user_app_id.app_id", app_id), ("pipeline_id", pipeline_id)
        )
        with self._lock:
            user_id = self._find_pipeline(user_id, app_id, pipeline_id, caller)
            found = [
                VersionRecord(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id, version.created_at)
                for ref, version in self._versions.items()
                if (ref.user_id, ref.app_id, ref.pipeline_id) == (user_id, app_id, pipeline_id)
            ]
        return _page(_newest_first(found, lambda record: record.version_id), page, per_page)

    def list_nodepool_runs(
        self,
        caller: str,
        user_id: str,
        compute_cluster_id: str,
        nodepool_id: str,
        *,
        page: int = 0,
        per_page: int = 0,
        statuses: Iterable[str] = (),
    ) -> list[RunSnapshot]:
        """Answer ListPipelineVersionRuns by nodepool: a user's runs on one nodepool, across apps,
        pipelines and versions, newest created first.

        :param caller: the caller's user id.
        :param user_id: ``user_app_id.user_id`` (``"me"``: the caller).
        :param compute_cluster_id: the compute cluster id.
        :param nodepool_id: the nodepool id.
        :param page: page number from 1 (0 means 1).
        :param per_page: page size (0 means 128; capped at 1000).
        :param statuses: keep only runs in these states (status code names); empty keeps all.
        :return: the page; empty past the last page.
        :raises ApiError: PIPELINE_INVALID_REQUEST for missing ids; CONN_DOES_NOT_EXIST for an unknown
            user; COMPUTE_CLUSTER_DOES_NOT_EXIST or NODEPOOL_DOES_NOT_EXIST for one the user does not have.
        """
        is_nodepool_listing(VersionRef(user_id, "", "", ""), compute_cluster_id, nodepool_id)
        with self._lock:
            now = self._now()
            user_id = self._find_user(user_id, caller)
            self._check_nodepool(user_id, compute_cluster_id, nodepool_id)
            runs = [
                run
                for ref, version in self._versions.items()
                if ref.user_id == user_id
                for run in version.runs.values()
            ]
            return select_page(
                runs,
                now,
                page=page,
                per_page=per_page,
                statuses=statuses,
                nodepool_id=nodepool_id,
                compute_cluster_id=compute_cluster_id,
            )


def _require(*pairs: tuple[str, str]) -> None:
    missing = [name for name, value in pairs if not value]
    if missing:
        raise ApiError(
            PIPELINE_INVALID_REQUEST,
            f"missing required ids: {', '.join(missing)}",
            "Set user_app_id (user and app), and the pipeline id to list a pipeline's versions.",
        )


def _newest_first(records: list[Any], key: Any) -> list[Any]:
    ordered = sorted(records, key=key)
    ordered.sort(key=lambda record: record.created_at, reverse=True)
    return ordered
