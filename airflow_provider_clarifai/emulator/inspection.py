"""What a test reads and changes on a :class:`~.server.ClarifaiEmulator`, by run and version ids.

``emulator.runs(version="v1")``, ``emulator.run("run-1").state``, ``emulator.states(version="v1")``,
``emulator.set_run_state("run-1", "JOB_FAILED")``: a test names runs and versions the way its DAG does,
and only as precisely as it must. Ids left out match anything, except the user, which is the user of the
emulator's default token (the one its Airflow connection carries) unless given; ``user="*"`` means any.
Runs are advanced to the lifecycle clock's "now" before they are read.

The requests the emulator served are in ``emulator.requests``, which these methods complement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.emulator.domain import RunScript, RunState, names
from airflow_provider_clarifai.emulator.lifecycle import RunSnapshot, VersionRef

if TYPE_CHECKING:
    from airflow_provider_clarifai.emulator.clock import Clock
    from airflow_provider_clarifai.emulator.domain import Scenario
    from airflow_provider_clarifai.emulator.models import Backend

__all__ = ["ANY", "EmulatorInspection", "run_state"]

#: ``user=ANY`` matches every user, not only the default token's.
ANY = "*"


def run_state(value: RunState | str) -> RunState:
    """Read a run state given as ``"JOB_FAILED"``, ``"FAILED"`` or ``"failed"``.

    :param value: the state.
    :return: the state.
    :raises ValueError: if it names no run state.
    """
    text = str(value).strip().upper()
    try:
        return RunState(text if text.startswith("JOB_") else f"JOB_{text}")
    except ValueError:
        raise ValueError(f"{value!r} is not a run state; use one of {names(RunState)}") from None


class EmulatorInspection:
    """The inspection and control methods of :class:`~.server.ClarifaiEmulator` (a mixin).

    Every method takes the ids of the pipeline version as keywords: ``version``, ``pipeline``, ``app`` and
    ``user``. Those left out match anything, except ``user``, which defaults to the user of the default
    token (:attr:`~.server.ClarifaiEmulator.token`); ``user="*"`` matches every user. A method that acts
    on one run or one version raises :class:`KeyError` if nothing matches and :class:`LookupError` (with
    the candidates) if several do.
    """

    backend: Backend
    scenario: Scenario
    clock: Clock

    # -- runs -------------------------------------------------------------------------------------------

    def runs(
        self,
        version: str | None = None,
        *,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
        state: RunState | str | None = None,
    ) -> list[RunSnapshot]:
        """Return the runs of the matching versions: each version's newest first, versions in scenario order.

        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user; ``"*"``: any).
        :param state: keep only runs in this state (``"JOB_RUNNING"`` or ``"RUNNING"``).
        :return: the runs (``id``, ``state``, timestamps, ids of their version...).
        :raises KeyError: if no version matches.
        """
        wanted = None if state is None else run_state(state)
        found = [
            run
            for ref in self._versions(version, pipeline, app, user)
            for run in self.backend.runs(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id)
        ]
        return [run for run in found if wanted is None or run.state is wanted]

    def states(
        self,
        version: str | None = None,
        *,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
    ) -> dict[str, str]:
        """Return the state of each run of the matching versions, by run id.

        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user; ``"*"``: any).
        :return: run id -> state name, e.g. ``{"run-1": "JOB_RUNNING"}``.
        :raises KeyError: if no version matches.
        :raises LookupError: if two matching versions have runs of the same id.
        """
        states: dict[str, str] = {}
        for run in self.runs(version, pipeline=pipeline, app=app, user=user):
            if run.id in states:
                raise LookupError(
                    f"run id {run.id!r} is in more than one matching version; name the version "
                    "(version=, pipeline=, app=, user=)"
                )
            states[run.id] = str(run.state)
        return states

    def run(
        self,
        run_id: str,
        *,
        version: str | None = None,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
    ) -> RunSnapshot:
        """Return one run.

        :param run_id: the run id.
        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user; ``"*"``: any).
        :return: the run; ``run.state`` compares equal to its name, e.g. ``"JOB_COMPLETED"``.
        :raises KeyError: if no matching version has the run.
        :raises LookupError: if several do.
        """
        ref = self._version_of(run_id, version, pipeline, app, user)
        return self.backend.run(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id, run_id)

    def log_messages(
        self,
        run_id: str,
        *,
        version: str | None = None,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
    ) -> list[str]:
        """Return the log lines of one run so far, oldest first (what ListLogEntries serves).

        :param run_id: the run id.
        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user; ``"*"``: any).
        :return: the messages.
        :raises KeyError: if no matching version has the run.
        :raises LookupError: if several do.
        """
        ref = self._version_of(run_id, version, pipeline, app, user)
        return self.backend.log_messages(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id, run_id)

    # -- changes ----------------------------------------------------------------------------------------

    def set_run_state(
        self,
        run_id: str,
        state: RunState | str,
        *,
        version: str | None = None,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
    ) -> RunSnapshot:
        """Put a run into a state now, whatever its state, as the service itself might (a run that fails
        or finishes on its own). No transition rule applies; a client's Patch still obeys them.

        The run then goes on from there by its script: queued, it starts after its ``queued_seconds``;
        running, it ends when its active time reaches ``running_seconds``; paused, it waits for a client.

        :param run_id: the run id.
        :param state: the new state: ``"JOB_FAILED"`` or ``"FAILED"``.
        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user; ``"*"``: any).
        :return: the run in its new state.
        :raises KeyError: if no matching version has the run.
        :raises LookupError: if several do.
        """
        target = run_state(state)
        ref = self._version_of(run_id, version, pipeline, app, user)
        return self.backend.set_run_state(
            ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id, run_id, target
        )

    def add_run(
        self,
        run_id: str,
        state: RunState | str = RunState.QUEUED,
        *,
        script: RunScript | Mapping[str, Any] | None = None,
        version: str | None = None,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
        nodepool: str | None = None,
    ) -> RunSnapshot:
        """Create a run now, in a given state, as a scenario's ``runs`` entry would.

        :param run_id: the new run's id.
        :param state: its state.
        :param script: how it goes on (a :class:`RunScript` or a mapping in the scenario format; default
            ``{queued_seconds: 1, running_seconds: 5, outcome: JOB_COMPLETED}``).
        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user).
        :param nodepool: the nodepool it sits on, ``"<compute_cluster_id>/<nodepool_id>"`` (default: none);
            a user who declares compute clusters must have it.
        :return: the run.
        :raises KeyError: if no version matches, or the user does not have the nodepool.
        :raises LookupError: if several do.
        :raises ValueError: if the version has a run of that id already, or ``nodepool`` is malformed.
        """
        ref = self._one_version(version, pipeline, app, user)
        cluster_id, nodepool_id = _nodepool_ids(nodepool) if nodepool is not None else ("", "")
        return self.backend.add_run(
            ref.user_id,
            ref.app_id,
            ref.pipeline_id,
            ref.version_id,
            run_id,
            run_state(state),
            script,
            compute_cluster_id=cluster_id,
            nodepool_id=nodepool_id,
        )

    def add_pipeline(self, pipeline: str, *, app: str, user: str | None = None) -> None:
        """Create a pipeline now, without versions (and its app, if the user has none of that id).

        :param pipeline: the new pipeline's id.
        :param app: the app id.
        :param user: the user id (default: the default token's user).
        :raises KeyError: if the user does not exist.
        :raises ValueError: if the pipeline exists.
        """
        self.backend.add_pipeline(self._one_user(user), app, pipeline)

    def add_version(
        self,
        version: str,
        *,
        pipeline: str,
        app: str,
        user: str | None = None,
        post_script: RunScript | Mapping[str, Any] | None = None,
    ) -> None:
        """Create a pipeline version now, without runs.

        :param version: the new version's id.
        :param pipeline: the pipeline id (it must exist).
        :param app: the app id.
        :param user: the user id (default: the default token's user).
        :param post_script: how runs posted to it live (default: the default script).
        :raises KeyError: if the pipeline does not exist.
        :raises ValueError: if the version exists.
        """
        self.backend.add_version(self._one_user(user), app, pipeline, version, post_script)

    def add_nodepool(self, nodepool: str, *, user: str | None = None) -> None:
        """Declare a nodepool of a user, as the scenario's ``compute_clusters`` would; from then on the
        user has only the nodepools declared.

        :param nodepool: ``"<compute_cluster_id>/<nodepool_id>"``.
        :param user: the user id (default: the default token's user).
        :raises KeyError: if the user does not exist.
        :raises ValueError: if ``nodepool`` is malformed.
        """
        self.backend.add_nodepool(self._one_user(user), *_nodepool_ids(nodepool))

    def nodepools(self, *, user: str | None = None) -> list[str]:
        """Return a user's declared nodepools.

        :param user: the user id (default: the default token's user).
        :return: ``"<compute_cluster_id>/<nodepool_id>"`` strings, in the order declared.
        """
        return [f"{cluster}/{nodepool}" for cluster, nodepool in self.backend.nodepools(self._one_user(user))]

    def set_post_script(
        self,
        script: RunScript | Mapping[str, Any] | None,
        *,
        version: str | None = None,
        pipeline: str | None = None,
        app: str | None = None,
        user: str | None = None,
    ) -> None:
        """Set how the runs posted to a version from now on live.

        :param script: a :class:`RunScript`, a mapping in the scenario format (e.g. ``{"running_seconds":
            60, "outcome": "JOB_FAILED"}``), or ``None`` for the default script.
        :param version: the pipeline version id.
        :param pipeline: the pipeline id.
        :param app: the app id.
        :param user: the user id (default: the default token's user).
        :raises KeyError: if no version matches.
        :raises LookupError: if several do.
        """
        ref = self._one_version(version, pipeline, app, user)
        self.backend.set_post_script(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id, script)

    # -- service-wide -----------------------------------------------------------------------------------

    @property
    def rate_limit_per_second(self) -> int | None:
        """Requests per second allowed per token (``None``: no limit)."""
        return self.backend.rate_limit_per_second

    def set_rate_limit(self, per_second: int | None) -> None:
        """Change the rate limit.

        :param per_second: requests per second per token; ``None`` or 0 turns the limit off.
        """
        self.backend.set_rate_limit(per_second)

    def advance(self, seconds: float) -> float:
        """Move the emulator's manual clock forward: runs go on as if that much time had passed.

        :param seconds: emulated seconds.
        :return: the clock's new time.
        :raises TypeError: if the emulator's clock is not a :class:`~.clock.ManualClock`.
        """
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError(f"only a ManualClock can be advanced; this emulator runs on {self.clock!r}")
        now: float = advance(seconds)
        return now

    # -- finding versions -------------------------------------------------------------------------------

    def _user(self, user: str | None) -> str | None:
        """The user id to match: the default token's by default, any (``None``) for ``"*"``."""
        if user is None:
            return self.scenario.tokens[0].user_id
        return None if user == ANY else user

    def _one_user(self, user: str | None) -> str:
        user_id = self._user(user)
        if user_id is None:
            raise ValueError("name one user here; '*' matches every user")
        return user_id

    def _versions(
        self, version: str | None, pipeline: str | None, app: str | None, user: str | None
    ) -> list[VersionRef]:
        user_id = self._user(user)
        refs = self.backend.versions(user_id, app, pipeline, version)
        if not refs:
            raise KeyError(f"no pipeline version matches {_describe(version, pipeline, app, user_id)}")
        return refs

    def _one_version(
        self, version: str | None, pipeline: str | None, app: str | None, user: str | None
    ) -> VersionRef:
        refs = self._versions(version, pipeline, app, user)
        if len(refs) > 1:
            raise LookupError(
                f"{len(refs)} pipeline versions match {_describe(version, pipeline, app, self._user(user))}: "
                f"{_paths(refs)}; name one (version=, pipeline=, app=, user=)"
            )
        return refs[0]

    def _version_of(
        self, run_id: str, version: str | None, pipeline: str | None, app: str | None, user: str | None
    ) -> VersionRef:
        refs = self._versions(version, pipeline, app, user)
        holding = [
            ref
            for ref in refs
            if any(
                run.id == run_id
                for run in self.backend.runs(ref.user_id, ref.app_id, ref.pipeline_id, ref.version_id)
            )
        ]
        if not holding:
            raise KeyError(f"no run {run_id!r} in {_paths(refs)}")
        if len(holding) > 1:
            raise LookupError(
                f"run {run_id!r} is in {len(holding)} pipeline versions: {_paths(holding)}; "
                "name its version (version=, pipeline=, app=, user=)"
            )
        return holding[0]


def _nodepool_ids(nodepool: str) -> tuple[str, str]:
    cluster_id, _, nodepool_id = nodepool.partition("/")
    if not cluster_id or not nodepool_id or "/" in nodepool_id:
        raise ValueError(f"nodepool must be '<compute_cluster_id>/<nodepool_id>', got {nodepool!r}")
    return cluster_id, nodepool_id


def _describe(version: str | None, pipeline: str | None, app: str | None, user: str | None) -> str:
    pairs = zip(("user", "app", "pipeline", "version"), (user, app, pipeline, version), strict=True)
    given = [f"{key}={value!r}" for key, value in pairs if value is not None]
    return ", ".join(given) or "(any)"


def _paths(refs: list[VersionRef]) -> str:
    return ", ".join(f"{ref.user_id}/{ref.app_id}/{ref.pipeline_id}/{ref.version_id}" for ref in refs)
