"""One pipeline run's life: its script, its transitions and its log lines.

A :class:`Run` is advanced *lazily*: :meth:`Run.advance` applies every scripted transition that was due
since the run was last looked at, each at the exact emulated instant it was due, so ``started_at``,
``ended_at`` and the order of log lines do not depend on when a client polls. Client actions (pause,
resume, cancel) go through :meth:`Run.change`, which enforces the transitions Clarifai documents; a
test's hand (``ClarifaiEmulator.set_run_state``) goes through :meth:`Run.force`, which does not.

Runs are not thread-safe on their own; the backend only touches them under its lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from airflow_provider_clarifai.emulator.domain import TERMINAL_STATES, RunScript, RunSpec, RunState

__all__ = ["PATCH_RULES", "Run", "RunSnapshot", "TransitionError", "VersionRef"]

#: Target state of a Patch -> (the operation's name, the states it is allowed from), as documented by
#: Clarifai ("Manage Pipeline Runs").
PATCH_RULES: dict[RunState, tuple[str, tuple[RunState, ...]]] = {
    RunState.PAUSED: ("pause", (RunState.QUEUED, RunState.RUNNING)),
    RunState.RUNNING: ("resume", (RunState.PAUSED,)),
    RunState.CANCELLED: ("cancel", (RunState.QUEUED, RunState.RUNNING, RunState.PAUSED, RunState.CONFLICT)),
}

# Seeded states a run reaches by way of JOB_RUNNING (so it gets a started_at); CANCELLED and CONFLICT are
# seeded straight from QUEUED, as a run cancelled or in conflict before it ever ran.
_SEEDED_AFTER_START = frozenset(
    {RunState.RUNNING, RunState.PAUSED, RunState.COMPLETED, RunState.FAILED, RunState.UNEXPECTED_ERROR}
)


class TransitionError(ValueError):
    """A client asked for a change the run's state does not allow, or for an unsupported target.

    :param message: what was refused.
    :param details: what the client can do.
    """

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class VersionRef:
    """The ids that locate a pipeline version, as a request carries them.

    :param user_id: ``user_app_id.user_id`` (``"me"`` means the caller).
    :param app_id: ``user_app_id.app_id``.
    :param pipeline_id: the pipeline id.
    :param version_id: the pipeline version id.
    """

    user_id: str
    app_id: str
    pipeline_id: str
    version_id: str


@dataclass(frozen=True)
class RunSnapshot:
    """A run as seen at one instant; what the server turns into a ``PipelineVersionRun``.

    Times are seconds since the Unix epoch on the lifecycle clock; ``active_seconds`` is the running time
    so far, excluding paused time (``total_run_duration``).
    """

    id: str
    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    state: RunState
    created_at: float
    modified_at: float
    started_at: float | None
    ended_at: float | None
    active_seconds: float
    input_args: tuple[tuple[str, str], ...] = ()
    nodepool_id: str = ""
    compute_cluster_id: str = ""


@dataclass
class Run:
    """A run's mutable state.

    :param id: the run id.
    :param ref: the (resolved) pipeline version it belongs to.
    :param script: how it lives when nobody acts on it.
    :param created_at: when it was created; it enters ``JOB_QUEUED`` then.
    """

    id: str
    ref: VersionRef
    script: RunScript
    created_at: float
    input_args: tuple[tuple[str, str], ...] = ()
    nodepool_id: str = ""
    compute_cluster_id: str = ""
    state: RunState = field(default=RunState.QUEUED, init=False)
    state_since: float = field(default=0.0, init=False)
    modified_at: float = field(default=0.0, init=False)
    started_at: float | None = field(default=None, init=False)
    ended_at: float | None = field(default=None, init=False)
    # Active running time accumulated before the current RUNNING stint (or in total, when not running).
    active_before: float = field(default=0.0, init=False)
    next_scripted_log: int = field(default=0, init=False)
    lines: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._enter(RunState.QUEUED, self.created_at)

    @classmethod
    def seed(cls, ref: VersionRef, spec: RunSpec, now: float) -> Run:
        """Create a run that reached ``spec.status`` at ``now`` through the usual transitions.

        :param ref: the pipeline version.
        :param spec: the scenario's description of the run.
        :param now: the current time.
        :return: the run.
        """
        run = cls(
            id=spec.id,
            ref=ref,
            script=spec.script,
            created_at=now,
            nodepool_id=spec.nodepool_id,
            compute_cluster_id=spec.compute_cluster_id,
        )
        if spec.status in _SEEDED_AFTER_START:
            run._enter(RunState.RUNNING, now)
        if spec.status not in (RunState.QUEUED, RunState.RUNNING):
            run._enter(spec.status, now)
        return run

    def active_seconds(self, now: float) -> float:
        """Running time so far, excluding paused time.

        :param now: the current time.
        :return: the active seconds.
        """
        if self.state is RunState.RUNNING:
            return self.active_before + (now - self.state_since)
        return self.active_before

    def advance(self, now: float) -> None:
        """Apply every scripted transition and log line due by ``now``, each at the instant it was due.

        :param now: the current time.
        """
        if self.state is RunState.QUEUED:
            if self.script.queued_seconds is None:
                return
            start = self.state_since + self.script.queued_seconds
            if start > now:
                return
            self._enter(RunState.RUNNING, start)
        if self.state is not RunState.RUNNING:
            return
        elapsed = self.active_seconds(now)
        limit = self.script.running_seconds
        reached = elapsed if limit is None else min(elapsed, limit)
        logs = self.script.logs
        while self.next_scripted_log < len(logs) and logs[self.next_scripted_log].at <= reached:
            self.lines.append(logs[self.next_scripted_log].message)
            self.next_scripted_log += 1
        if limit is not None and elapsed >= limit:
            end = self.state_since + (limit - self.active_before)
            self.active_before = limit
            self._enter(self.script.outcome, end)

    def change(self, target: str, now: float) -> None:
        """Pause, resume or cancel the run at ``now``; call :meth:`advance` first.

        :param target: the requested status code name: ``JOB_PAUSED``, ``JOB_RUNNING`` or ``JOB_CANCELLED``.
        :param now: the current time.
        :raises TransitionError: for another target, or a transition the current state does not allow;
            the run is then unchanged.
        """
        try:
            state = RunState(target)
        except ValueError:
            state = None
        if state is None or state not in PATCH_RULES:
            raise TransitionError(
                f"unsupported target status {target} for run {self.id}",
                "Set orchestration_status.status.code to JOB_PAUSED (pause), JOB_RUNNING (resume) "
                "or JOB_CANCELLED (cancel).",
            )
        operation, allowed = PATCH_RULES[state]
        if self.state not in allowed:
            raise TransitionError(
                f"cannot {operation} run {self.id}: it is {self.state}; "
                f"{operation} is allowed from {', '.join(allowed)}",
                "The run was not changed. Get the run to see its current state.",
            )
        if self.state is RunState.RUNNING:
            # Bank the active time of this stint: pause and cancel both stop the running clock.
            self.active_before = self.active_seconds(now)
        # A run paused while queued resumes straight to RUNNING; its remaining queue time is dropped.
        self._enter(state, now)

    def force(self, state: RunState, now: float) -> None:
        """Put the run into ``state`` at ``now``, whatever its state: the service's own doing, not a
        client's, so no transition rule applies. Call :meth:`advance` first.

        The run then follows its script from there: queued, it waits ``queued_seconds`` from now; running,
        it runs what is left of its ``running_seconds``; paused or in conflict, it waits for a client;
        ended, it stays so. A run brought back from an ended state runs its ``running_seconds`` afresh.
        A run that never started passes through ``JOB_RUNNING`` on its way to a state only a started run
        reaches (paused, completed, failed), as a seeded run does.

        :param state: the state to put the run in.
        :param now: the current time.
        """
        if state is self.state:
            return
        if self.state is RunState.RUNNING:
            self.active_before = self.active_seconds(now)
        if self.state in TERMINAL_STATES:
            self.ended_at = None
            self.active_before = 0.0
        if state in _SEEDED_AFTER_START and state is not RunState.RUNNING and self.started_at is None:
            self._enter(RunState.RUNNING, now)
        self._enter(state, now)

    def snapshot(self, now: float) -> RunSnapshot:
        """The run as seen at ``now`` (call :meth:`advance` first).

        :param now: the current time.
        :return: the snapshot.
        """
        return RunSnapshot(
            id=self.id,
            user_id=self.ref.user_id,
            app_id=self.ref.app_id,
            pipeline_id=self.ref.pipeline_id,
            pipeline_version_id=self.ref.version_id,
            state=self.state,
            created_at=self.created_at,
            modified_at=self.modified_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            active_seconds=self.active_seconds(now),
            input_args=self.input_args,
            nodepool_id=self.nodepool_id,
            compute_cluster_id=self.compute_cluster_id,
        )

    def _enter(self, state: RunState, at: float) -> None:
        self.state = state
        self.state_since = at
        self.modified_at = at
        if state is RunState.RUNNING and self.started_at is None:
            self.started_at = at
        if state in TERMINAL_STATES:
            self.ended_at = at
        self.lines.append(json.dumps({"msg": f"run entered {state}", "status": str(state)}))
