"""Operators for Clarifai pipeline version runs.

Pause, resume and cancel share one base, :class:`ClarifaiPipelineRunStatusOperator`: the subclasses only
name their :class:`~airflow_provider_clarifai.status.RunAction`. :class:`ClarifaiRunPipelineOperator`
starts a run and waits for it with the sensor's semantics. Which transitions each action allows
lives in :mod:`airflow_provider_clarifai.status`, nowhere else.

Importing this module is cheap and talks to nothing: DAG files import it at every parse. The hook (and
with it gRPC) is built on first use inside ``execute``.

.. seealso:: ``docs/operators/pause-resume-cancel.rst``
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_clarifai.common import (
    ID_TEMPLATE_FIELDS,
    ClarifaiTaskMixin,
    RunLogStreamer,
    check_seconds,
    with_log_tail,
)
from airflow_provider_clarifai.exceptions import (
    ClarifaiBatchError,
    ClarifaiConfigurationError,
    ClarifaiError,
    ClarifaiNotFoundError,
)
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.status import (
    PipelineRunStatus,
    RunAction,
    UnknownRunStatusError,
    format_statuses,
    parse_statuses,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, XComArg

    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.runs import PipelineRun, RunStatusChange
    from airflow_provider_clarifai.waiting import RunWaitSpec

#: XCom key of the ids of the runs a pause, resume or cancel task changed (always pushed once every
#: run's outcome is known, also when the task then fails).
CHANGED_RUN_IDS_XCOM_KEY = "changed_run_ids"
#: XCom key of every run's record, pushed when the task fails (on success they are the return value).
RUN_OUTCOMES_XCOM_KEY = "run_outcomes"

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


def _has_settled(action: RunAction, status: PipelineRunStatus) -> bool:
    """Whether a run the action was applied to has settled: it left every state the action applies to.

    A paused run has settled once it is ``JOB_PAUSED`` or terminal; a resumed one once it is no longer
    ``JOB_PAUSED``; a cancelled one once it is terminal. The rule reads only ``action.allowed_from``, so
    it follows the transition table in :mod:`airflow_provider_clarifai.status`.

    :param action: the action that was applied.
    :param status: the run's current state.
    """
    return status not in action.allowed_from


@dataclass
class _RunRecord:
    """One run's line in the task's report; :meth:`to_dict` is the XCom record."""

    run_id: str
    state_before: str | None = None
    state_after: str | None = None
    outcome: RunChangeOutcome | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
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
        assert record.outcome is not None
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


class ClarifaiPipelineRunStatusOperator(ClarifaiTaskMixin, BaseOperator):
    """Apply one action (pause, resume or cancel) to runs of a Clarifai pipeline version.

    Use a subclass: :class:`ClarifaiPausePipelineRunOperator`, :class:`ClarifaiResumePipelineRunOperator`
    or :class:`ClarifaiCancelPipelineRunOperator`. Each run's state is read first; a run already in the
    target state succeeds, a run whose state the action is not allowed from is left alone and reported,
    and the others are changed in one batched request. Every run is reported; the task fails if any run
    failed, after the runs that could be changed were changed. Nothing is ever changed silently.

    Give exactly one of ``run_ids`` and ``select_statuses``.

    Return value (XCom ``return_value``): one record per run, in target order, ``{"run_id",
    "state_before", "state_after", "outcome", "message"}`` (states are ``JOB_*`` names or ``None``; the
    outcomes are :class:`RunChangeOutcome` values). XCom ``changed_run_ids``: the ids of the runs this
    task changed, so that, for example, a resume acts on exactly the runs a pause paused. On failure
    the records are pushed under ``run_outcomes``.

    .. seealso::
        For more information on how to use these operators, take a look at the guide:
        ``docs/operators/pause-resume-cancel.rst``

    :param run_ids: the runs: one id, a list of ids, an ``XComArg`` (such as another task's
        ``.output["changed_run_ids"]``) or a list of the records this operator returns (their
        ``run_id`` is used). An empty list is a no-op that succeeds. Templated.
    :param select_statuses: instead of ``run_ids``, act on every run of the pipeline version that is
        currently in one of these states, by name (``["RUNNING"]``, ``["QUEUED", "RUNNING"]``). Only
        states the action is allowed from (or its target state) may be selected. Templated.
    :param clarifai_conn_id: the Airflow connection of type ``clarifai``. Templated.
    :param user_id: the pipeline's user; else from ``config_lock_path`` or the connection. Templated.
    :param app_id: the pipeline's app; else from ``config_lock_path`` or the connection. Templated.
    :param pipeline_id: the pipeline; else from ``config_lock_path``. Templated.
    :param pipeline_version_id: the pipeline version; else from ``config_lock_path``. Templated.
    :param config_lock_path: the pipeline's ``config-lock.yaml``; a relative path is relative to the DAG
        file's folder. Templated.
    :param api_retry_policy: how API calls are retried: a ``RetryPolicy``, a dict of its settings, or
        ``None`` for the default (retries on). Not ``retry_policy``, which Airflow 3.3's
        ``BaseOperator`` uses for task retries.
    :param request_timeout: deadline of each API call in seconds; default: the connection's.
    :param wait_for_target: after the change, poll until every changed run has settled (left the
        states the action applies to).
    :param wait_timeout: how long to wait for that, in seconds; the task fails listing the runs that
        have not settled.
    :param poll_interval: seconds between two reads of the runs while waiting.
    :param on_forbidden: what a run whose state the action is not allowed from does to the task:
        ``"fail"`` (default) or ``"skip"`` (reported as skipped; the task does not fail for it).
    :param \\*\\*kwargs: passed to ``BaseOperator``.
    """

    action: ClassVar[RunAction]

    template_fields: Sequence[str] = (*ID_TEMPLATE_FIELDS, "run_ids", "select_statuses")
    operator_extra_links = (ClarifaiPipelineRunLink(),)
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        run_ids: str | list[str] | XComArg | None = None,
        select_statuses: list[str] | None = None,
        clarifai_conn_id: str = "clarifai_default",
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | None = None,
        api_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
        wait_for_target: bool = False,
        wait_timeout: float = 300,
        poll_interval: float = 5,
        on_forbidden: Literal["fail", "skip"] = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(getattr(type(self), "action", None), RunAction):
            raise TypeError(
                f"{type(self).__name__} sets no action: use ClarifaiPausePipelineRunOperator, "
                "ClarifaiResumePipelineRunOperator or ClarifaiCancelPipelineRunOperator."
            )
        if (run_ids is None) == (select_statuses is None):
            given = "both" if run_ids is not None else "neither"
            raise ClarifaiConfigurationError(
                f"{type(self).__name__} (task {self.task_id!r}) got {given} of run_ids and select_statuses. "
                "Give exactly one: run_ids for given runs (one id, a list or an XComArg), or "
                "select_statuses for every run in those states (for example ['RUNNING'])."
            )
        if on_forbidden not in ("fail", "skip"):
            raise ClarifaiConfigurationError(f"on_forbidden must be 'fail' or 'skip', got {on_forbidden!r}.")
        if not isinstance(wait_for_target, bool):
            raise ClarifaiConfigurationError(
                f"wait_for_target must be True or False, got {wait_for_target!r}."
            )
        check_seconds("wait_timeout", wait_timeout)
        check_seconds("poll_interval", poll_interval)
        self._init_clarifai(
            clarifai_conn_id=clarifai_conn_id,
            user_id=user_id,
            app_id=app_id,
            pipeline_id=pipeline_id,
            pipeline_version_id=pipeline_version_id,
            config_lock_path=config_lock_path,
            api_retry_policy=api_retry_policy,
            request_timeout=request_timeout,
        )
        self.run_ids = run_ids
        self.select_statuses = select_statuses
        self.wait_for_target = wait_for_target
        self.wait_timeout = float(wait_timeout)
        self.poll_interval = float(poll_interval)
        self.on_forbidden = on_forbidden

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Change the runs and report each one.

        :param context: the task context.
        :return: one record per run (see the class docstring).
        :raises ClarifaiConfigurationError: a templated argument rendered to something unusable; nothing
            was sent.
        :raises ClarifaiBatchError: some runs failed (every run's outcome is in the message).
        """
        selecting = self.select_statuses is not None
        # Rendered arguments are checked before anything is read or sent.
        run_ids = None if selecting else self._rendered_run_ids()
        statuses = self._rendered_statuses() if selecting else None
        hook = self.hook
        try:
            ids = self.resolve_ids()
            if statuses is not None:
                records = [
                    _record_before_change(self.action, run.run_id, run.status_name, self.on_forbidden)
                    for run in hook.list_runs(ids, statuses=statuses)
                ]
            else:
                assert run_ids is not None
                records = [self._read_before(hook, ids, run_id) for run_id in run_ids]
            self.persist_run_link(context, ids, records[0].run_id if len(records) == 1 else None)
            if not records:
                self.log.info(
                    "Nothing to %s: %s.",
                    self.action.value,
                    f"no run of {_where(ids)} is in {format_statuses(statuses)}"
                    if statuses is not None
                    else "run_ids is empty (for example, an upstream task changed no runs)",
                )
            else:
                self._change(hook, ids, records)
            context["ti"].xcom_push(
                key=CHANGED_RUN_IDS_XCOM_KEY,
                value=[record.run_id for record in records if record.outcome is RunChangeOutcome.CHANGED],
            )
            if self.wait_for_target:
                self._wait_until_settled(hook, ids, records)
        finally:
            hook.close()
        return self._report(context, ids, records)

    def _change(self, hook: ClarifaiHook, ids: PipelineVersionIds, records: list[_RunRecord]) -> None:
        """Send one (batched) request for the runs judged changeable and record what became of each."""
        to_change = [record for record in records if record.outcome is None]
        if not to_change:
            return
        self.log.info(
            "Asking Clarifai to %s %d run(s) of %s.", self.action.value, len(to_change), _where(ids)
        )
        try:
            changes = hook.set_runs_status(ids, [record.run_id for record in to_change], self.action)
        except ClarifaiError as err:
            if len(to_change) > hook.batch_size:
                err.add_note(
                    f"The {len(to_change)} runs were sent {hook.batch_size} per request, so earlier requests "
                    "may have changed some of them. Re-running the task is safe: runs already in the target "
                    "state succeed."
                )
            raise
        by_id = {change.run_id: change for change in changes}
        for record in to_change:
            change = by_id.get(record.run_id)
            if change is None:  # The hook reports every run; fail closed should it ever not.
                record.outcome = RunChangeOutcome.FAILED
                record.message = "the service's answer did not report this run; its state is unknown"
            else:
                _record_change(record, change, self.action)

    def _report(
        self, context: Context, ids: PipelineVersionIds, records: list[_RunRecord]
    ) -> list[dict[str, Any]]:
        """Log every run, then return the records or, if any run failed, push them and raise."""
        if records:
            self.log.info(
                "%s of %s:\n%s", self.action.value.capitalize(), _where(ids), _format_table(records)
            )
        for record in records:
            if record.outcome is RunChangeOutcome.ALREADY_IN_TARGET:
                self.log.info("Run %s: %s.", record.run_id, record.message)
        result = [record.to_dict() for record in records]
        if any(record.outcome is not None and record.outcome.is_failure for record in records):
            context["ti"].xcom_push(key=RUN_OUTCOMES_XCOM_KEY, value=result)
            raise ClarifaiBatchError(
                _batch_failure_message(self.action, records, wait_timeout=self.wait_timeout)
            )
        return result

    def _rendered_run_ids(self) -> list[str]:
        """The rendered ``run_ids`` as a checked list (possibly empty)."""
        from airflow_provider_clarifai.ids import validate_run_ids

        value: Any = self.run_ids
        if value is None:
            raise ClarifaiConfigurationError(
                f"run_ids of task {self.task_id!r} rendered to None (did the upstream task push the XCom "
                "you pass?). Pass one run id, a list of run ids, or an XComArg that resolves to them."
            )
        if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
            value = [self._run_id_of_record(index, item) for index, item in enumerate(value)]
        if isinstance(value, list | tuple) and not value:
            return []
        try:
            return validate_run_ids(value)
        except ClarifaiConfigurationError as err:
            raise ClarifaiConfigurationError(
                f"Invalid run_ids for task {self.task_id!r} (rendered value {_short(value)}): {err}"
            ) from None

    def _run_id_of_record(self, index: int, item: object) -> str:
        if isinstance(item, Mapping) and isinstance(item.get("run_id"), str):
            return str(item["run_id"])
        raise ClarifaiConfigurationError(
            f"run_ids[{index}] of task {self.task_id!r} is {_short(item)}: a list given to run_ids holds "
            "either run id strings or the records a pause, resume or cancel task returns (dicts with a "
            "'run_id'), not a mix or other values."
        )

    def _rendered_statuses(self) -> frozenset[PipelineRunStatus]:
        """The rendered ``select_statuses``, parsed and checked against the action."""
        value: Any = self.select_statuses
        example = f"for example {[status.name for status in PipelineRunStatus if self.action.allows(status)]}"
        if not isinstance(value, str | list | tuple | set | frozenset) or not value:
            raise ClarifaiConfigurationError(
                f"select_statuses of task {self.task_id!r} must be a non-empty list of state names "
                f"({example}), got {_short(value)}."
            )
        try:
            statuses = parse_statuses(value)
        except ValueError as err:
            raise ClarifaiConfigurationError(
                f"Invalid select_statuses for task {self.task_id!r}: {err}. Write a list of state names, "
                f"{example}."
            ) from None
        pointless = statuses - self.action.allowed_from - {self.action.target_status}
        if pointless:
            raise ClarifaiConfigurationError(
                f"select_statuses of task {self.task_id!r} selects {format_statuses(pointless)}, but "
                f"{self.action.describe_allowed()}. Select only states the action can apply to, {example}."
            )
        return statuses

    def _read_before(self, hook: ClarifaiHook, ids: PipelineVersionIds, run_id: str) -> _RunRecord:
        try:
            run = hook.get_run(ids, run_id)
        except ClarifaiNotFoundError as err:
            return _RunRecord(
                run_id,
                outcome=RunChangeOutcome.NOT_FOUND,
                message=f"no such run in {_where(ids)} ({err.code_name}: {err.description or err})",
            )
        return _record_before_change(self.action, run_id, run.status_name, self.on_forbidden)

    def _wait_until_settled(
        self, hook: ClarifaiHook, ids: PipelineVersionIds, records: list[_RunRecord]
    ) -> None:
        """Poll the changed runs until each has settled, or mark the rest timed out after ``wait_timeout``.

        :param hook: the hook.
        :param ids: the pipeline version.
        :param records: every run's record; only the changed ones are polled.
        """
        deadline = time.monotonic() + self.wait_timeout
        pending = [record for record in records if record.outcome is RunChangeOutcome.CHANGED]
        while pending:
            still_pending = []
            for record in pending:
                settled = self._poll_once(hook, ids, record)
                if not settled:
                    still_pending.append(record)
            pending = still_pending
            if not pending:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.log.info(
                "Waiting for %d run(s) to settle after %s: %s.",
                len(pending),
                self.action.value,
                ", ".join(f"{record.run_id} ({record.state_after})" for record in pending),
            )
            time.sleep(min(self.poll_interval, remaining))
        for record in pending:
            record.outcome = RunChangeOutcome.TIMED_OUT
            record.message = (
                f"{_PAST_TENSE[self.action]}, but still {record.state_after} after waiting "
                f"{self.wait_timeout:g} s for it to settle"
            )

    def _poll_once(self, hook: ClarifaiHook, ids: PipelineVersionIds, record: _RunRecord) -> bool:
        """Read one changed run; return whether it no longer needs polling."""
        try:
            run: PipelineRun = hook.get_run(ids, record.run_id)
        except ClarifaiNotFoundError as err:
            record.outcome = RunChangeOutcome.FAILED
            record.message = f"{_PAST_TENSE[self.action]}, then no longer found while waiting: {err}"
            record.state_after = None
            return True
        record.state_after = run.status_name
        try:
            status = run.status
        except UnknownRunStatusError as err:
            record.outcome = RunChangeOutcome.FAILED
            record.message = f"{_PAST_TENSE[self.action]}, then {err}"
            return True
        if _has_settled(self.action, status):
            record.message = f"{_PAST_TENSE[self.action]} ({record.state_before} -> {status.value}, settled)"
            return True
        return False


class ClarifaiPausePipelineRunOperator(ClarifaiPipelineRunStatusOperator):
    """Pause Clarifai pipeline version runs (target state ``JOB_PAUSED``).

    Pause is allowed only from ``JOB_QUEUED`` or ``JOB_RUNNING``. A paused run is resumed with
    :class:`ClarifaiResumePipelineRunOperator`; pass it this task's ``.output["changed_run_ids"]`` to
    resume exactly the runs this task paused (not the runs that were paused already). With
    ``wait_for_target``, a run has settled once it is ``JOB_PAUSED`` or terminal.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        ``docs/operators/pause-resume-cancel.rst``

    It takes every argument of :class:`ClarifaiPipelineRunStatusOperator`.
    """

    action: ClassVar[RunAction] = RunAction.PAUSE


class ClarifaiResumePipelineRunOperator(ClarifaiPipelineRunStatusOperator):
    """Resume paused Clarifai pipeline version runs (target state ``JOB_RUNNING``).

    Resume is allowed only from ``JOB_PAUSED``; a cancelled run never resumes. A run paused while it was
    queued resumes straight to ``JOB_RUNNING``. With ``wait_for_target``, a run has settled once it is
    no longer ``JOB_PAUSED``.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        ``docs/operators/pause-resume-cancel.rst``

    It takes every argument of :class:`ClarifaiPipelineRunStatusOperator`.
    """

    action: ClassVar[RunAction] = RunAction.RESUME


class ClarifaiCancelPipelineRunOperator(ClarifaiPipelineRunStatusOperator):
    """Cancel Clarifai pipeline version runs (target state ``JOB_CANCELLED``).

    Cancel is allowed from any non-terminal state (``JOB_QUEUED``, ``JOB_RUNNING``, ``JOB_PAUSED``,
    ``JOB_CONFLICT``). It cannot be undone: a cancelled run never resumes. With ``wait_for_target``, a
    run has settled once it is terminal.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        ``docs/operators/pause-resume-cancel.rst``

    It takes every argument of :class:`ClarifaiPipelineRunStatusOperator`.
    """

    action: ClassVar[RunAction] = RunAction.CANCEL


def _where(ids: PipelineVersionIds) -> str:
    return f"{ids.user_id}/{ids.app_id}/{ids.pipeline_id}/{ids.pipeline_version_id}"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Namespace of the run ids this operator derives from a task instance (uuid5), so a retried task can
#: find the run its earlier try started.
RUN_ID_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4d8e-9a57-2f4c1b7e8d90")
#: XCom key of the run id (pushed as soon as the run exists, before any waiting).
RUN_ID_XCOM_KEY = "pipeline_version_run_id"
DEFERRAL_GRACE_SECONDS = 120


def derived_run_id(dag_id: str, task_id: str, dag_run_id: str, map_index: int, try_number: int) -> str:
    """The run id one try of one task instance uses: stable, so a retry can look for it.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param dag_run_id: the DAG run.
    :param map_index: the mapped index (-1 when not mapped).
    :param try_number: the try.
    """
    return uuid.uuid5(
        RUN_ID_NAMESPACE, f"{dag_id}\x1f{task_id}\x1f{dag_run_id}\x1f{map_index}\x1f{try_number}"
    ).hex


class ClarifaiRunPipelineOperator(ClarifaiTaskMixin, BaseOperator):
    """Start a Clarifai pipeline run and, by default, wait for it to end.

    Waiting has the sensor's semantics: success is ``JOB_COMPLETED``; ``JOB_FAILED``, ``JOB_CANCELLED``,
    ``JOB_UNEXPECTED_ERROR``, any other terminal state and any unknown state fail; ``JOB_PAUSED`` keeps
    waiting. With ``deferrable=True`` the wait happens in the triggerer, freeing the worker slot.

    The run is cancelled when the task is killed (``on_kill`` on the worker; on Airflow 3.3+ also while
    deferred, through the trigger's ``on_kill``), and, with ``cancel_on_timeout``, when ``timeout``
    passes. A retried task does not start a duplicate: run ids are derived from the task instance and
    the try number, and a new try first re-attaches to the run of an earlier try if that run is still
    going. A run that already ended is not re-attached: the retry starts a new run.

    Pushes the run id to XCom (key ``pipeline_version_run_id``) as soon as the run exists and returns
    the run's summary.

    .. seealso::
        :doc:`/operators/run-pipeline`

    :param input_args: argument overrides, parameter names to string values (templated).
    :param nodepool_id: the nodepool to run on (templated).
    :param compute_cluster_id: the compute cluster of that nodepool (templated).
    :param pipeline_version_run_id: use this run id instead of a derived one (templated). If a run with
        this id exists, the operator attaches to it.
    :param wait_for_completion: wait until the run ends; otherwise return once it is started.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param poll_interval: seconds between two reads of the run while waiting.
    :param timeout: the longest wait, in seconds or as a timedelta; ``None`` waits without limit
        (``execution_timeout`` still bounds it).
    :param cancel_on_timeout: cancel the run when ``timeout`` passes.
    :param cancel_on_kill: cancel the run when the task is killed.
    :param success_statuses: states that count as success (default JOB_COMPLETED).
    :param failure_statuses: states that fail the task (default JOB_FAILED, JOB_CANCELLED,
        JOB_UNEXPECTED_ERROR).
    :param stream_logs: write the run's log lines into the task log while waiting.
    :param clarifai_conn_id: the Airflow connection of type ``clarifai`` (templated).
    :param user_id: the pipeline's user; else from ``config_lock_path`` or the connection (templated).
    :param app_id: the pipeline's app; else from ``config_lock_path`` or the connection (templated).
    :param pipeline_id: the pipeline; else from ``config_lock_path`` (templated).
    :param pipeline_version_id: the pipeline version; else from ``config_lock_path`` (templated).
    :param config_lock_path: a ``config-lock.yaml``; relative to the DAG file's folder (templated).
    :param api_retry_policy: how API calls are retried (a :class:`RetryPolicy` or a dict of its settings).
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    :param \\*\\*kwargs: passed to ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        *ID_TEMPLATE_FIELDS,
        "input_args",
        "nodepool_id",
        "compute_cluster_id",
        "pipeline_version_run_id",
    )
    template_fields_renderers = {"input_args": "json"}
    operator_extra_links = (ClarifaiPipelineRunLink(),)
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        input_args: Mapping[str, str] | None = None,
        nodepool_id: str | None = None,
        compute_cluster_id: str | None = None,
        pipeline_version_run_id: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float | timedelta | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        success_statuses: Iterable[str | PipelineRunStatus] | None = None,
        failure_statuses: Iterable[str | PipelineRunStatus] | None = None,
        stream_logs: bool = False,
        clarifai_conn_id: str = "clarifai_default",
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | None = None,
        api_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_clarifai(
            clarifai_conn_id=clarifai_conn_id,
            user_id=user_id,
            app_id=app_id,
            pipeline_id=pipeline_id,
            pipeline_version_id=pipeline_version_id,
            config_lock_path=config_lock_path,
            api_retry_policy=api_retry_policy,
            request_timeout=request_timeout,
        )
        check_seconds("poll_interval", poll_interval)
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0
        ):
            raise ClarifaiConfigurationError(
                f"timeout must be a positive number of seconds, a timedelta or None, got {timeout!r}. "
                "Pass, for example, timeout=3600 or timeout=timedelta(hours=1)."
            )
        self.input_args = input_args
        self.nodepool_id = nodepool_id
        self.compute_cluster_id = compute_cluster_id
        self.pipeline_version_run_id = pipeline_version_run_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout_seconds = float(seconds) if seconds is not None else None
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.success_statuses = list(success_statuses) if success_statuses is not None else None
        self.failure_statuses = list(failure_statuses) if failure_statuses is not None else None
        self.stream_logs = stream_logs
        self._active_run: tuple[PipelineVersionIds, str] | None = None

    def _spec(self) -> RunWaitSpec:
        from airflow_provider_clarifai.waiting import RunWaitSpec

        return RunWaitSpec.build(self.success_statuses, self.failure_statuses)

    def execute(self, context: Any) -> Any:
        """Start (or re-attach to) the run, then wait for it if asked.

        :param context: the task context.
        """
        from airflow_provider_clarifai.ids import validate_start_args

        spec = self._spec()
        # Rendered by now; checked before any call, so a bad argument never costs a read.
        validate_start_args(self.input_args, self.nodepool_id, self.compute_cluster_id)
        ids = self.resolve_ids()
        run = self._start_or_reattach(context, ids)
        context["ti"].xcom_push(key=RUN_ID_XCOM_KEY, value=run.run_id)
        self.persist_run_link(context, ids, run.run_id)
        if not self.wait_for_completion:
            return run.to_dict()
        self._active_run = (ids, run.run_id)
        deadline = self._deadline()
        if self.deferrable:
            return self._defer(ids, run, spec, deadline)
        return self._poll(ids, run, spec, deadline)

    def _start_or_reattach(self, context: Any, ids: PipelineVersionIds) -> PipelineRun:
        from airflow_provider_clarifai.exceptions import ClarifaiNotFoundError

        explicit = self.pipeline_version_run_id
        if explicit:
            candidates = [explicit]
        else:
            ti = context["ti"]
            current = max(int(ti.try_number), 1)
            map_index = getattr(ti, "map_index", -1)
            if map_index is None:
                map_index = -1
            candidates = [
                derived_run_id(ti.dag_id, ti.task_id, ti.run_id, map_index, attempt)
                for attempt in range(current, 0, -1)
            ]
        for position, run_id in enumerate(candidates):
            try:
                earlier = self.hook.get_run(ids, run_id)
            except ClarifaiNotFoundError:
                continue
            # This try's own run (or an explicit id) is always ours; an earlier try's only while it runs.
            if position == 0 or (earlier.known_status is not None and not earlier.known_status.is_terminal):
                self.log.info(
                    "Re-attaching to run %s (%s) started by an earlier try.", run_id, earlier.status_name
                )
                return earlier
            break
        run = self.hook.post_run(
            ids,
            run_id=candidates[0],
            input_args=self.input_args,
            nodepool_id=self.nodepool_id,
            compute_cluster_id=self.compute_cluster_id,
        )
        self.log.info("Started run %s of %s/%s/%s/%s.", run.run_id, *ids.as_dict().values())
        return run

    def _deadline(self) -> float | None:
        limits = [limit for limit in (self.timeout_seconds,) if limit is not None]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        return time.time() + min(limits) if limits else None

    def _poll(
        self, ids: PipelineVersionIds, run: PipelineRun, spec: RunWaitSpec, deadline: float | None
    ) -> Any:
        from airflow_provider_clarifai.exceptions import (
            ClarifaiError,
            ClarifaiRunFailedError,
            ClarifaiRunTimeoutError,
        )
        from airflow_provider_clarifai.waiting import Verdict, failure_message

        streamer = RunLogStreamer(self.hook, ids, run.run_id, self.log)
        last_state = None
        current: PipelineRun | None = run
        while True:
            if current is not None:
                if current.status_name != last_state:
                    last_state = current.status_name
                    self.log.info("Run %s is %s.", current.run_id, current.status_name)
                if self.stream_logs:
                    streamer.pump()
                verdict = spec.judge(current)
                if verdict is not Verdict.WAITING:
                    streamer.pump(echo=self.stream_logs)
                    self._active_run = None
                    if verdict is Verdict.SUCCESS:
                        return current.to_dict()
                    raise ClarifaiRunFailedError(with_log_tail(failure_message(current, spec), streamer.tail))
            now = time.time()
            if deadline is not None and now >= deadline:
                message = f"Run {run.run_id} did not finish within the timeout (last state {last_state})."
                if self.cancel_on_timeout and self._cancel("the operator timed out"):
                    message += " It was cancelled."
                self._active_run = None
                raise ClarifaiRunTimeoutError(with_log_tail(message, streamer.tail))
            time.sleep(
                self.poll_interval if deadline is None else max(min(self.poll_interval, deadline - now), 0)
            )
            try:
                current = self.hook.get_run(ids, run.run_id)
            except ClarifaiError as error:
                if not error.retryable:
                    raise
                self.log.warning("Could not read run %s, will try again: %s", run.run_id, error)
                current = None

    def _defer(
        self, ids: PipelineVersionIds, run: PipelineRun, spec: RunWaitSpec, deadline: float | None
    ) -> Any:
        from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

        success, failure = spec.to_lists()
        timeout = None
        if deadline is not None:
            timeout = timedelta(
                seconds=deadline - time.time() + max(DEFERRAL_GRACE_SECONDS, 2 * self.poll_interval)
            )
        self.defer(
            trigger=ClarifaiPipelineRunTrigger(
                clarifai_conn_id=self.clarifai_conn_id,
                user_id=ids.user_id,
                app_id=ids.app_id,
                pipeline_id=ids.pipeline_id,
                pipeline_version_id=ids.pipeline_version_id,
                run_id=run.run_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                success_statuses=success,
                failure_statuses=failure,
                cancel_on_timeout=self.cancel_on_timeout,
                cancel_on_kill=self.cancel_on_kill,
                stream_logs=self.stream_logs,
                retry_policy=self.hook.retry_policy.to_dict(),
                request_timeout=self.request_timeout,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Turn the trigger's event into the task's outcome; anything unexpected fails.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        from airflow_provider_clarifai.exceptions import (
            ClarifaiError,
            ClarifaiRunFailedError,
            ClarifaiRunTimeoutError,
        )
        from airflow_provider_clarifai.waiting import EventStatus, RunWaitEvent

        result = RunWaitEvent.from_payload(event)
        if result.status is EventStatus.SUCCESS:
            self.log.info(result.message)
            return result.run
        message = with_log_tail(result.message, result.log_tail)
        if result.status is EventStatus.FAILURE:
            raise ClarifaiRunFailedError(message)
        if result.status is EventStatus.TIMEOUT:
            raise ClarifaiRunTimeoutError(message)
        result.raise_for_error()
        raise ClarifaiError(f"Unhandled event {result.status}.")

    def _cancel(self, why: str) -> bool:
        if self._active_run is None:
            return False
        return self.cancel_run(*self._active_run, why)

    def on_kill(self) -> None:
        """Cancel the run this task is waiting for, if ``cancel_on_kill``."""
        if self.cancel_on_kill:
            self._cancel("the task was killed")
