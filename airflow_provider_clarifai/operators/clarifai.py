"""Pause, resume and cancel operators for Clarifai pipeline version runs.

They share one base, :class:`ClarifaiPipelineRunStatusOperator`: the subclasses only name their
:class:`~airflow_provider_clarifai.status.RunAction`. What each run's outcome means, and how a batch is
reported, lives in :mod:`~airflow_provider_clarifai.operators.outcomes`; which transitions each action
allows lives in :mod:`airflow_provider_clarifai.status`, nowhere else. :class:`ClarifaiRunPipelineOperator`
(starts a run and waits for it) has its own module, :mod:`~airflow_provider_clarifai.operators.run_pipeline`,
and is importable from here too.

Importing this module is cheap and talks to nothing: DAG files import it at every parse. The hook (and
with it gRPC) is built on first use inside ``execute``.

.. seealso:: ``docs/operators/pause-resume-cancel.rst``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_clarifai.common import ID_TEMPLATE_FIELDS, ClarifaiTaskMixin, check_state_list
from airflow_provider_clarifai.effects import LIST_PAGE_SIZE
from airflow_provider_clarifai.exceptions import (
    ClarifaiBatchError,
    ClarifaiConfigurationError,
    ClarifaiError,
)
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.operators.outcomes import (
    CHANGED_RUN_IDS_XCOM_KEY,
    RUN_OUTCOMES_XCOM_KEY,
    RunChangeOutcome,
    _batch_failure_message,
    _format_table,
    _record_before_change,
    _record_change,
    _RunRecord,
    record_before,
    record_settling,
    settled_spec,
    where,
)
from airflow_provider_clarifai.status import (
    PipelineRunStatus,
    RunAction,
    format_statuses,
    parse_statuses,
)
from airflow_provider_clarifai.validate import quote, seconds

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, XComArg

    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy


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
        check_state_list("select_statuses", select_statuses, task_id=self.task_id, templated=True)
        wait_timeout = seconds("wait_timeout", wait_timeout)
        poll_interval = seconds("poll_interval", poll_interval)
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
            if run_ids is not None:
                records = self._read_before(hook, ids, run_ids)
            else:
                records = [
                    _record_before_change(self.action, run.run_id, run.status_name, self.on_forbidden)
                    for run in hook.list_runs(ids, statuses=statuses, per_page=LIST_PAGE_SIZE)
                ]
            self.persist_run_link(context, ids, records[0].run_id if len(records) == 1 else None)
            if not records:
                self.log.info(
                    "Nothing to %s: %s.",
                    self.action.value,
                    f"no run of {where(ids)} is in {format_statuses(statuses)}"
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
        self.log.info("Asking Clarifai to %s %d run(s) of %s.", self.action.value, len(to_change), where(ids))
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
            self.log.info("%s of %s:\n%s", self.action.value.capitalize(), where(ids), _format_table(records))
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
                f"Invalid run_ids for task {self.task_id!r} (rendered value {quote(value)}): {err}"
            ) from None

    def _run_id_of_record(self, index: int, item: object) -> str:
        if isinstance(item, Mapping) and isinstance(item.get("run_id"), str):
            return str(item["run_id"])
        raise ClarifaiConfigurationError(
            f"run_ids[{index}] of task {self.task_id!r} is {quote(item)}: a list given to run_ids holds "
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
                f"({example}), got {quote(value)}."
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

    def _read_before(
        self, hook: ClarifaiHook, ids: PipelineVersionIds, run_ids: list[str]
    ) -> list[_RunRecord]:
        """Each run's state before the change, read at the fewest requests (a listing for many runs)."""
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import read_states

        states = RunCalls(hook).run(read_states(ids, run_ids, None)) if run_ids else {}
        return [
            record_before(self.action, ids, run_id, states[run_id], self.on_forbidden) for run_id in run_ids
        ]

    def _wait_until_settled(
        self, hook: ClarifaiHook, ids: PipelineVersionIds, records: list[_RunRecord]
    ) -> None:
        """Wait (with the one waiter) until each changed run has settled, or mark it timed out.

        :param hook: the hook.
        :param ids: the pipeline version.
        :param records: every run's record; only the changed ones are waited on.
        """
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import LogMode, RunWaiter, wait_all

        settled = settled_spec(self.action)
        changed = [r.run_id for r in records if r.outcome is RunChangeOutcome.CHANGED]
        waiters = [
            RunWaiter(ids, run_id, settled, log=self.log, now=hook.clock.now, logs=LogMode.NONE)
            for run_id in changed
        ]

        def note(going: list[RunWaiter]) -> None:
            self.log.info(
                "Waiting for %d run(s) to settle after %s: %s.",
                len(going),
                self.action.value,
                ", ".join(f"{waiter.run_id} ({waiter.last_state})" for waiter in going),
            )

        events = RunCalls(hook).run(
            wait_all(
                waiters,
                deadline=hook.clock.now() + self.wait_timeout,
                poll_interval=self.poll_interval,
                now=hook.clock.now,
                on_round=note,
            )
        )
        record_settling(self.action, records, waiters, events, self.wait_timeout)


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


# Kept importable from here, where they lived before the run operator had a module of its own.
from airflow_provider_clarifai.operators.run_pipeline import (  # noqa: E402, F401
    RUN_ID_NAMESPACE,
    RUN_ID_XCOM_KEY,
    ClarifaiRunPipelineOperator,
    derived_run_id,
)
