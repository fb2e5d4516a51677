"""What a pause, resume or cancel task did to each run: the records, their outcomes, the table and the
failure message.

The status operators (:mod:`airflow_provider_clarifai.operators.clarifai`) fill one record per target
run; this module says what each outcome means and how a batch is reported. Nothing here talks to
Clarifai.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.status import PipelineRunStatus, RunAction
from airflow_provider_clarifai.waiting import RunWaitSpec

if TYPE_CHECKING:
    from airflow_provider_clarifai.exceptions import ClarifaiError
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.runs import PipelineRun, RunStatusChange
    from airflow_provider_clarifai.waiter import RunWaiter
    from airflow_provider_clarifai.waiting import RunWaitEvent

#: XCom key of the ids of the runs a pause, resume or cancel task changed (always pushed once every
#: run's outcome is known, also when the task then fails).
CHANGED_RUN_IDS_XCOM_KEY = "changed_run_ids"
#: XCom key of every run's record, pushed when the task fails (on success they are the return value).
RUN_OUTCOMES_XCOM_KEY = "run_outcomes"
#: XCom key of the records of the runs a task changed, each naming its pipeline version: what a resume
#: takes to act on exactly the runs a pause of several versions paused.
CHANGED_RUNS_XCOM_KEY = "changed_runs"

_PAST_TENSE = {RunAction.PAUSE: "paused", RunAction.RESUME: "resumed", RunAction.CANCEL: "cancelled"}


class RunChangeOutcome(StrEnum):
    """What a pause, resume or cancel task did to one run: the ``outcome`` of its XCom record."""

    #: The service applied the change.
    CHANGED = "changed"
    #: The run already was in the target state; nothing was sent for it (or the service said so).
    ALREADY_IN_TARGET = "already_in_target"
    #: The action is not allowed from the run's state and ``on_forbidden="skip"``; the run is unchanged.
    SKIPPED = "skipped"
    #: The action is not allowed from the run's state; the run is unchanged. Fails the task.
    FORBIDDEN = "forbidden"
    #: No such run in the pipeline version (or the token cannot see it). Fails the task.
    NOT_FOUND = "not_found"
    #: The service refused the change, or the run's state is unknown to this provider. Fails the task.
    FAILED = "failed"
    #: The change was applied, but the run had not settled within ``wait_timeout``. Fails the task.
    TIMED_OUT = "timed_out"
    #: ``dry_run=True``: the change would be sent for this run; nothing was sent.
    WOULD_CHANGE = "would_change"

    @property
    def is_failure(self) -> bool:
        """Whether this outcome fails the task."""
        return self in _FAILURE_OUTCOMES

    @property
    def was_applied(self) -> bool:
        """Whether the service accepted a change for the run (listed in ``changed_run_ids``)."""
        return self in (RunChangeOutcome.CHANGED, RunChangeOutcome.TIMED_OUT)


_FAILURE_OUTCOMES = frozenset(
    {
        RunChangeOutcome.FORBIDDEN,
        RunChangeOutcome.NOT_FOUND,
        RunChangeOutcome.FAILED,
        RunChangeOutcome.TIMED_OUT,
    }
)


def settled_spec(action: RunAction) -> RunWaitSpec:
    """When a run the action was applied to has settled: it left every state the action applies to.

    A paused run has settled once it is ``JOB_PAUSED`` or terminal; a resumed one once it is no longer
    ``JOB_PAUSED``; a cancelled one once it is terminal. The rule reads only ``action.allowed_from``, so
    it follows the transition table in :mod:`airflow_provider_clarifai.status`. An unknown state is a
    failure (fail closed), as in every wait.

    :param action: the action that was applied.
    """
    return RunWaitSpec(frozenset(set(PipelineRunStatus) - set(action.allowed_from)), frozenset())


@dataclass
class _RunRecord:
    """One run's line in the task's report; :meth:`to_dict` is the XCom record."""

    run_id: str
    state_before: str | None = None
    state_after: str | None = None
    outcome: RunChangeOutcome | None = None
    message: str = ""
    #: The run's pipeline version; named in the XCom record when known.
    ids: PipelineVersionIds | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            **(self.ids.as_dict() if self.ids is not None else {}),
            "state_before": self.state_before,
            "state_after": self.state_after,
            "outcome": self.outcome.value if self.outcome is not None else None,
            "message": self.message,
        }


def _record_before_change(action: RunAction, run_id: str, state_name: str, on_forbidden: str) -> _RunRecord:
    """Judge a run by its state before any change; ``outcome`` stays ``None`` if it is to be changed.

    :param action: the action.
    :param run_id: the run.
    :param state_name: its state's code name (``JOB_RUNNING``), possibly one this provider does not know.
    :param on_forbidden: ``"fail"`` or ``"skip"``.
    """
    record = _RunRecord(run_id, state_before=state_name, state_after=state_name)
    status = _known_status(state_name)
    if status is None:
        record.outcome = RunChangeOutcome.FAILED
        record.message = (
            f"its state {state_name} is unknown to this provider; not {_PAST_TENSE[action]} (failing "
            "closed). A newer airflow-provider-clarifai may know it."
        )
    elif status is action.target_status:
        record.outcome = RunChangeOutcome.ALREADY_IN_TARGET
        record.message = f"already {status.value}; nothing to do"
    elif not action.allows(status):
        skip = on_forbidden == "skip"
        record.outcome = RunChangeOutcome.SKIPPED if skip else RunChangeOutcome.FORBIDDEN
        record.message = f"cannot {action.value} a run in {status.value}: {action.describe_allowed()}" + (
            "; skipped (on_forbidden='skip')" if skip else ""
        )
    return record


def _record_change(record: _RunRecord, change: RunStatusChange, action: RunAction) -> None:
    """Fill in what the service did to a run the task asked to change.

    :param record: the run's record, judged changeable before the request.
    :param change: the hook's report for the run.
    :param action: the action.
    """
    record.state_after = change.status_after
    if change.applied and change.error_code_name is None:
        record.outcome = RunChangeOutcome.CHANGED
        record.message = f"{_PAST_TENSE[action]} ({record.state_before} -> {change.status_after})"
    elif change.applied:
        record.outcome = RunChangeOutcome.ALREADY_IN_TARGET
        record.message = (
            f"already {change.target.value} when the request reached the service "
            f"({change.error_code_name}: {change.error_description})"
        )
    else:
        record.outcome = RunChangeOutcome.FAILED
        record.message = (
            f"the service did not {action.value} it: {change.error_code_name}: {change.error_description}; "
            f"it is now {change.status_after or 'in an unknown state'} (it was {record.state_before} when "
            "read: another actor may have changed it in between)"
        )


def _known_status(state_name: str) -> PipelineRunStatus | None:
    try:
        return PipelineRunStatus(state_name)
    except ValueError:
        return None


def _format_table(records: Sequence[_RunRecord]) -> str:
    """One aligned line per run: id, state before, state after, outcome, message."""
    rows = [("run_id", "before", "after", "outcome", "message")] + [
        (
            record.run_id,
            record.state_before or "-",
            record.state_after or "-",
            record.outcome.value if record.outcome else "-",
            record.message,
        )
        for record in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _batch_failure_message(action: RunAction, records: Sequence[_RunRecord], *, wait_timeout: float) -> str:
    """The message of the error a task raises when some runs failed: every run's outcome, and what to do.

    :param action: the action.
    :param records: every target run's record, with its outcome.
    :param wait_timeout: the task's ``wait_timeout``, named in the advice on timeouts.
    """
    counts: dict[RunChangeOutcome, int] = {}
    for record in records:
        if record.outcome is not None:  # every record has one by the time a batch fails
            counts[record.outcome] = counts.get(record.outcome, 0) + 1
    failed = sum(count for outcome, count in counts.items() if outcome.is_failure)
    tally = ", ".join(
        f"{outcome.value} {counts[outcome]}" for outcome in RunChangeOutcome if outcome in counts
    )
    lines = [f"Could not {action.value} every run: {failed} of {len(records)} failed ({tally}). Every run:"]
    lines += [f"- {record.run_id}: {record.outcome}: {record.message}" for record in records]
    applied = [record.run_id for record in records if record.outcome and record.outcome.was_applied]
    lines.append(
        f"Only the runs listed as changed or timed_out were {_PAST_TENSE[action]} "
        f"({', '.join(applied) or 'none'}); no other run was changed by this task. Every record is in "
        f"XCom {RUN_OUTCOMES_XCOM_KEY!r}, the changed runs' ids in XCom {CHANGED_RUN_IDS_XCOM_KEY!r}."
    )
    advice = []
    if RunChangeOutcome.FORBIDDEN in counts:
        advice.append(
            f"{action.describe_allowed()}; pass on_forbidden='skip' to report runs in other states as "
            "skipped instead of failing"
        )
    if RunChangeOutcome.NOT_FOUND in counts:
        advice.append(
            "check the run ids and the pipeline version they belong to (user_id, app_id, pipeline_id, "
            "pipeline_version_id or config_lock_path)"
        )
    if RunChangeOutcome.FAILED in counts:
        advice.append(
            "see each failed run's message; re-running the task is safe (runs already in the target "
            "state succeed)"
        )
    if RunChangeOutcome.TIMED_OUT in counts:
        advice.append(
            f"raise wait_timeout (now {wait_timeout:g} s) or find out why the runs have not settled"
        )
    lines.append("To fix: " + "; ".join(advice) + ".")
    return "\n".join(lines)


def where(ids: PipelineVersionIds) -> str:
    return f"{ids.user_id}/{ids.app_id}/{ids.pipeline_id}/{ids.pipeline_version_id}"


def record_before(
    action: RunAction,
    ids: PipelineVersionIds,
    run_id: str,
    state: PipelineRun | ClarifaiError,
    on_forbidden: str,
) -> _RunRecord:
    """One run's record from its state before the change, or from the error reading it met.

    :param action: the action to apply.
    :param ids: the pipeline version.
    :param run_id: the run.
    :param state: the run as read, or the error: not found makes a ``not_found`` record; any other
        error is raised (the batch cannot be judged).
    :param on_forbidden: ``"fail"`` or ``"skip"``.
    :raises ClarifaiError: reading the run failed for a reason other than its absence.
    """
    from airflow_provider_clarifai.exceptions import ClarifaiError, ClarifaiNotFoundError

    if isinstance(state, ClarifaiNotFoundError):
        return _RunRecord(
            run_id,
            outcome=RunChangeOutcome.NOT_FOUND,
            message=f"no such run in {where(ids)} ({state.code_name}: {state.description or state})",
        )
    if isinstance(state, ClarifaiError):
        raise state
    return _record_before_change(action, run_id, state.status_name, on_forbidden)


def record_settling(
    action: RunAction,
    records: Sequence[_RunRecord],
    waiters: Sequence[RunWaiter],
    events: Mapping[str, RunWaitEvent],
    wait_timeout: float,
) -> None:
    """Write what the wait for the changed runs to settle found into their records.

    :param action: the action that was applied.
    :param records: every run's record.
    :param waiters: the waiters of the changed runs.
    :param events: the events of the runs that settled (or failed), by run id.
    :param wait_timeout: how long the wait was, for the message of runs that did not settle.
    :raises ClarifaiError: the wait met an error that is no run's own (a wrong token, say).
    """
    from airflow_provider_clarifai.status import UnknownRunStatusError
    from airflow_provider_clarifai.waiting import EventStatus

    by_id = {record.run_id: record for record in records}
    done = _PAST_TENSE[action]
    for waiter in waiters:
        record, event = by_id[waiter.run_id], events.get(waiter.run_id)
        if waiter.last_state is not None:
            record.state_after = waiter.last_state
        if event is None:
            record.outcome = RunChangeOutcome.TIMED_OUT
            record.message = (
                f"{done}, but still {record.state_after} after waiting {wait_timeout:g} s for it to settle"
            )
        elif event.status is EventStatus.SUCCESS:
            record.message = f"{done} ({record.state_before} -> {record.state_after}, settled)"
        elif event.error_class == "ClarifaiNotFoundError":
            record.outcome = RunChangeOutcome.FAILED
            record.message = f"{done}, then no longer found while waiting: {event.message}"
            record.state_after = None
        elif event.status is EventStatus.ERROR and waiter.error is not None:
            raise waiter.error
        else:  # a state this provider does not know: failing closed
            unknown = waiter.last_run
            record.outcome = RunChangeOutcome.FAILED
            record.message = f"{done}, then " + (
                str(UnknownRunStatusError(unknown.status_code, unknown.status_name))
                if unknown is not None
                else event.message
            )
