"""The emulated service's state: the users, apps, pipelines and versions of a scenario, and their runs.

:class:`RunStore` holds the tree, finds things in it and keeps time: every read advances the runs it
touches to "now" on the lifecycle clock (see :mod:`.lifecycle`), and "now" never goes backwards. One
re-entrant lock guards it all, so :class:`.models.Backend`, which adds the service's rules on top, can
apply a request as a whole.

The methods without a leading underscore are for Python-side test code: they skip authorization, advance
runs to now first, and raise :class:`KeyError` for ids that do not exist.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_clarifai.emulator.clock import Clock, WallClock
from airflow_provider_clarifai.emulator.domain import DEFAULT_SCRIPT, RunScript, RunSpec, RunState, Scenario
from airflow_provider_clarifai.emulator.errors import (
    COMPUTE_CLUSTER_DOES_NOT_EXIST,
    CONN_DOES_NOT_EXIST,
    NODEPOOL_DOES_NOT_EXIST,
    PIPELINE_INVALID_REQUEST,
    ApiError,
)
from airflow_provider_clarifai.emulator.lifecycle import Run, RunSnapshot, VersionRef

__all__ = ["RunStore"]


@dataclass
class _Version:
    post_script: RunScript | None
    runs: dict[str, Run] = field(default_factory=dict)
    created_at: float = 0.0


class RunStore:
    """The runs of a scenario's pipeline versions, on a lifecycle clock; thread-safe.

    :param scenario: the initial state (default: the bundled default scenario).
    :param clock: the lifecycle clock (default: real time).
    """

    def __init__(self, scenario: Scenario | None = None, clock: Clock | None = None) -> None:
        self.scenario = scenario if scenario is not None else Scenario.default()
        self.clock: Clock = clock if clock is not None else WallClock()
        self._lock = threading.RLock()
        self._last_now = -math.inf
        self._users: set[str] = set()
        self._apps: set[tuple[str, str]] = set()
        # Pipelines and versions (in the order they were made) with their creation times.
        self._pipelines: dict[tuple[str, str, str], float] = {}
        self._versions: dict[VersionRef, _Version] = {}
        # Each user's declared compute clusters and their nodepools; a user without any accepts any.
        self._clusters: dict[str, dict[str, list[str]]] = {}
        now = self._now()
        for user in self.scenario.users:
            self._users.add(user.id)
            self._clusters[user.id] = {
                cluster.id: [nodepool.id for nodepool in cluster.nodepools]
                for cluster in user.compute_clusters
            }
            for app in user.apps:
                self._apps.add((user.id, app.id))
                for pipeline in app.pipelines:
                    self._pipelines[(user.id, app.id, pipeline.id)] = now
                    for version in pipeline.versions:
                        ref = VersionRef(user.id, app.id, pipeline.id, version.id)
                        self._versions[ref] = _Version(post_script=version.post_script, created_at=now)
                        for run_spec in version.runs:
                            self._seed(ref, run_spec, now)

    # -- for test code ----------------------------------------------------------------------------------

    def now(self) -> float:
        """Return the lifecycle clock's time."""
        return self.clock.now()

    def versions(
        self,
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        version_id: str | None = None,
    ) -> list[VersionRef]:
        """Return the pipeline versions whose ids match those given, in scenario order.

        :param user_id: keep the versions of this user (``None``: any).
        :param app_id: keep the versions in this app (``None``: any).
        :param pipeline_id: keep the versions of this pipeline (``None``: any).
        :param version_id: keep the versions with this id (``None``: any).
        :return: the matching versions.
        """
        wanted = (user_id, app_id, pipeline_id, version_id)
        with self._lock:
            return [
                ref
                for ref in self._versions
                if all(
                    value is None or value == actual
                    for value, actual in zip(
                        wanted, (ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id), strict=True
                    )
                )
            ]

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
        compute_cluster_id: str = "",
        nodepool_id: str = "",
    ) -> RunSnapshot:
        """Seed a run now, in a given state, as a scenario's ``runs`` entry would.

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the new run's id.
        :param status: its initial state name.
        :param script: how it continues (default: the default script).
        :param compute_cluster_id: the compute cluster of the run's nodepool (empty: none).
        :param nodepool_id: the nodepool the run sits on (empty: none).
        :return: the run.
        :raises KeyError: if the version does not exist, or the user declares compute clusters and not
            this nodepool.
        :raises ValueError: if the run already exists or the status is unknown.
        """
        if isinstance(script, Mapping):
            script = RunScript.from_dict(script, "script")
        spec = RunSpec(run_id, RunState(status), script or DEFAULT_SCRIPT, compute_cluster_id, nodepool_id)
        with self._lock:
            now = self._now()
            with _as_key_error():
                ref, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
                self._check_nodepool(ref.user_id, compute_cluster_id, nodepool_id)
            if run_id in version.runs:
                raise ValueError(f"run {run_id!r} already exists")
            return self._seed(ref, spec, now).snapshot(now)

    def set_run_state(
        self,
        user_id: str,
        app_id: str,
        pipeline_id: str,
        version_id: str,
        run_id: str,
        state: RunState | str,
    ) -> RunSnapshot:
        """Put a run into a state now, whatever its state (see :meth:`.lifecycle.Run.force`).

        :param user_id: the user id.
        :param app_id: the app id.
        :param pipeline_id: the pipeline id.
        :param version_id: the pipeline version id.
        :param run_id: the run id.
        :param state: the state name, e.g. ``"JOB_FAILED"``.
        :return: the run in its new state.
        :raises KeyError: if a resource does not exist.
        :raises ValueError: if the state is unknown.
        """
        target = RunState(state)
        with self._lock, _as_key_error():
            now = self._now()
            ref, version = self._find_version(VersionRef(user_id, app_id, pipeline_id, version_id), None)
            run = self._find_run(version, ref, run_id)
            run.advance(now)
            run.force(target, now)
            return run.snapshot(now)

    # -- for the backend --------------------------------------------------------------------------------

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
        user_id = self._find_pipeline(ref.user_id, ref.app_id, ref.pipeline_id, caller)
        resolved = VersionRef(user_id, ref.app_id, ref.pipeline_id, ref.version_id)
        version = self._versions.get(resolved)
        if version is None:
            raise ApiError(
                CONN_DOES_NOT_EXIST,
                f"pipeline version '{ref.version_id}' not found for pipeline '{ref.pipeline_id}'",
                "Check the pipeline version id.",
            )
        return resolved, version

    def _find_user(self, user_id: str, caller: str | None) -> str:
        """The user id, with "me" replaced by the caller; ``caller=None`` is trusted Python code."""
        resolved = caller if caller is not None and user_id == "me" else user_id
        # Another user's resources answer exactly like missing ones, so a token cannot probe for them.
        if resolved not in self._users or (caller is not None and resolved != caller):
            raise ApiError(CONN_DOES_NOT_EXIST, f"user '{user_id}' not found", "Check the user id.")
        return resolved

    def _find_app(self, user_id: str, app_id: str, caller: str | None) -> str:
        """Check that the app exists; return its user's id ("me" resolved)."""
        resolved = self._find_user(user_id, caller)
        if (resolved, app_id) not in self._apps:
            raise ApiError(
                CONN_DOES_NOT_EXIST, f"app '{app_id}' not found for user '{resolved}'", "Check the app id."
            )
        return resolved

    def _find_pipeline(self, user_id: str, app_id: str, pipeline_id: str, caller: str | None) -> str:
        """Check that the pipeline exists; return its user's id ("me" resolved)."""
        resolved = self._find_app(user_id, app_id, caller)
        if (resolved, app_id, pipeline_id) not in self._pipelines:
            raise ApiError(
                CONN_DOES_NOT_EXIST,
                f"pipeline '{pipeline_id}' not found in app '{app_id}'",
                "Check the pipeline id.",
            )
        return resolved

    def _check_nodepool(self, user_id: str, compute_cluster_id: str, nodepool_id: str) -> None:
        """Check that a user has the nodepool (or cluster) a request names; empty ids name nothing.

        A user whose scenario declares no compute cluster has any nodepool, as before nodepools were
        declared. Without a compute cluster id, the nodepool may be in any of the user's clusters.
        """
        clusters = self._clusters.get(user_id)
        if not clusters or not (compute_cluster_id or nodepool_id):
            return
        if compute_cluster_id and compute_cluster_id not in clusters:
            raise ApiError(
                COMPUTE_CLUSTER_DOES_NOT_EXIST,
                f"compute cluster '{compute_cluster_id}' not found for user '{user_id}'",
                "Check the compute cluster id, and that it belongs to this user.",
            )
        if not nodepool_id:
            return
        candidates = [clusters[compute_cluster_id]] if compute_cluster_id else list(clusters.values())
        if not any(nodepool_id in nodepools for nodepools in candidates):
            where = f"compute cluster '{compute_cluster_id}'" if compute_cluster_id else f"user '{user_id}'"
            raise ApiError(
                NODEPOOL_DOES_NOT_EXIST,
                f"nodepool '{nodepool_id}' not found in {where}",
                "Check the nodepool id and its compute cluster id, and that they belong to this user.",
            )

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


def _newest_first(runs: Iterable[Run], now: float) -> list[Run]:
    """Advance runs to ``now`` and order them as List does: newest created first, ties by id (then by
    app, pipeline and version, for the runs on a nodepool)."""
    ordered = sorted(runs, key=lambda run: (run.id, run.ref.app_id, run.ref.pipeline_id, run.ref.version_id))
    ordered.sort(key=lambda run: run.created_at, reverse=True)
    for run in ordered:
        run.advance(now)
    return ordered


@contextlib.contextmanager
def _as_key_error() -> Iterator[None]:
    """Turn ApiError into KeyError for the Python-side helpers, which are not requests."""
    try:
        yield
    except ApiError as error:
        raise KeyError(error.description) from None
