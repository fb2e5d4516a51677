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
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_clarifai.common import ID_TEMPLATE_FIELDS, ClarifaiTaskMixin, check_state_list
from airflow_provider_clarifai.exceptions import (
    ClarifaiBatchError,
    ClarifaiConfigurationError,
    ClarifaiError,
)
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.operators.outcomes import (
    CHANGED_RUN_IDS_XCOM_KEY,
    CHANGED_RUNS_XCOM_KEY,
    RUN_OUTCOMES_XCOM_KEY,
    RunChangeOutcome,
    _batch_failure_message,
    _format_table,
    _record_change,
    _RunRecord,
    record_settling,
    settled_spec,
    where,
)
from airflow_provider_clarifai.operators.targets import Groups
from airflow_provider_clarifai.scopes import DEFAULT_MAX_RUNS, MAX_RUNS_LIMIT, RunScope
from airflow_provider_clarifai.status import RunAction, format_statuses
from airflow_provider_clarifai.validate import optional_seconds, seconds

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, XComArg

    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.scopes import ScopeIds


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
    :param scope: where ``select_statuses`` looks: ``"version"`` (default: the one pipeline version),
        ``"pipeline"`` (every version of ``pipeline_id``), ``"app"`` (every pipeline of ``app_id``) or
        ``"nodepool"`` (every run of the user on ``compute_cluster_id``/``nodepool_id``, across apps).
        Runs are changed per pipeline version, in batches. See ``docs/operators/nodepool-maintenance.rst``.
    :param compute_cluster_id: the compute cluster of ``scope="nodepool"``. Templated.
    :param nodepool_id: the nodepool of ``scope="nodepool"``. Templated.
    :param older_than: with ``select_statuses``, only runs unchanged for at least this many seconds (or
        a ``timedelta``): "cancel runs QUEUED for more than 2 hours".
    :param max_runs: the most runs a selection may match (default 1,000, at most 10,000); a selection
        that matches more is refused before any change.
    :param dry_run: change nothing: report what would change and why (outcome ``would_change``, with
        the state it would go to), as a table in the log and the usual records; never fails for a run.
    :param \\*\\*kwargs: passed to ``BaseOperator``.
    """

    action: ClassVar[RunAction]

    template_fields: Sequence[str] = (
        *ID_TEMPLATE_FIELDS,
        "run_ids",
        "select_statuses",
        "compute_cluster_id",
        "nodepool_id",
    )
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
        scope: str = "version",
        compute_cluster_id: str | None = None,
        nodepool_id: str | None = None,
        older_than: float | timedelta | None = None,
        max_runs: int = DEFAULT_MAX_RUNS,
        dry_run: bool = False,
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
        self.scope = RunScope.parse(scope)
        if self.scope is not RunScope.VERSION and run_ids is not None:
            raise ClarifaiConfigurationError(
                f"{type(self).__name__} (task {self.task_id!r}): scope={scope!r} selects runs by state; give "
                "select_statuses, not run_ids (given runs are named by their ids, or by records that name "
                "their pipeline version)."
            )
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        self.older_than = optional_seconds("older_than", older_than)
        if older_than is not None and run_ids is not None:
            raise ClarifaiConfigurationError(
                f"older_than filters a selection: task {self.task_id!r} gives run_ids; use select_statuses."
            )
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or not 1 <= max_runs <= MAX_RUNS_LIMIT:
            raise ClarifaiConfigurationError(
                f"max_runs must be a whole number from 1 to {MAX_RUNS_LIMIT:,}, got {max_runs!r}."
            )
        if not isinstance(dry_run, bool):
            raise ClarifaiConfigurationError(f"dry_run must be True or False, got {dry_run!r}.")
        # Not ``self.dry_run``: that is a method of BaseOperator (``airflow tasks test --dry-run``).
        self.max_runs, self.is_dry_run = max_runs, dry_run
        self.compute_cluster_id, self.nodepool_id = compute_cluster_id, nodepool_id
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
        from airflow_provider_clarifai.operators import targets

        selecting = self.select_statuses is not None
        # Rendered arguments are checked before anything is read or sent.
        given = None if selecting else targets.rendered_targets(self.task_id, self.run_ids)
        statuses = (
            targets.rendered_statuses(self.task_id, self.action, self.select_statuses) if selecting else None
        )
        hook = self.hook
        try:
            if given is not None:
                groups = targets.given_groups(hook, self.action, given, self.resolve_ids, self.on_forbidden)
            else:
                groups = targets.selected_groups(
                    hook,
                    self.action,
                    self._scope_ids(),
                    statuses,  # type: ignore[arg-type]
                    older_than=self.older_than,
                    max_runs=self.max_runs,
                    on_forbidden=self.on_forbidden,
                )
            records = [record for group in groups.values() for record in group]
            if len(groups) == 1:
                (ids,) = groups
                self.persist_run_link(context, ids, records[0].run_id if len(records) == 1 else None)
            if not records:
                self.log.info(
                    "Nothing to %s: %s.",
                    self.action.value,
                    f"no run in {format_statuses(statuses)} in {self._scope_ids().describe()}"
                    + (f" unchanged for {self.older_than:g} s" if self.older_than else "")
                    if statuses is not None
                    else "run_ids is empty (for example, an upstream task changed no runs)",
                )
            elif self.is_dry_run:
                targets.preview(self.action, groups)
            else:
                for ids, group in groups.items():
                    self._change(hook, ids, group)
            changed = [record for record in records if record.outcome is RunChangeOutcome.CHANGED]
            context["ti"].xcom_push(key=CHANGED_RUN_IDS_XCOM_KEY, value=[r.run_id for r in changed])
            context["ti"].xcom_push(key=CHANGED_RUNS_XCOM_KEY, value=[r.to_dict() for r in changed])
            if self.wait_for_target and changed:
                self._wait_until_settled(hook, groups)
        finally:
            hook.close()
        return self._report(context, groups)

    def _scope_ids(self) -> ScopeIds:
        return self.resolve_scope_ids(self.scope, self.compute_cluster_id, self.nodepool_id)

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

    def _report(self, context: Context, groups: Groups) -> list[dict[str, Any]]:
        """Log every run (one table per version), then return the records or push them and raise."""
        records = [record for group in groups.values() for record in group]
        title = f"{self.action.value.capitalize()}{' (dry run: nothing was sent)' if self.is_dry_run else ''}"
        for ids, group in groups.items():
            if group:
                self.log.info("%s of %s:\n%s", title, where(ids), _format_table(group))
        for record in records:
            if record.outcome is RunChangeOutcome.ALREADY_IN_TARGET:
                self.log.info("Run %s: %s.", record.run_id, record.message)
        result = [record.to_dict() for record in records]
        failing = [r for r in records if r.outcome is not None and r.outcome.is_failure]
        if failing and self.is_dry_run:
            self.log.warning("The real run would fail for %d run(s): see the table.", len(failing))
        elif failing:
            context["ti"].xcom_push(key=RUN_OUTCOMES_XCOM_KEY, value=result)
            raise ClarifaiBatchError(
                _batch_failure_message(self.action, records, wait_timeout=self.wait_timeout)
            )
        return result

    def _wait_until_settled(self, hook: ClarifaiHook, groups: Groups) -> None:
        """Wait (with the one waiter) until each changed run has settled, or mark it timed out.

        :param hook: the hook.
        :param groups: every run's record, per pipeline version; only the changed ones are waited on.
        """
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import LogMode, RunWaiter, wait_all

        settled = settled_spec(self.action)
        records = [record for group in groups.values() for record in group]
        waiters = [
            RunWaiter(ids, r.run_id, settled, log=self.log, now=hook.clock.now, logs=LogMode.NONE)
            for ids, group in groups.items()
            for r in group
            if r.outcome is RunChangeOutcome.CHANGED
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
