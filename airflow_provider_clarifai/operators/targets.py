"""Which runs a pause, resume or cancel task acts on, and each one's record before any change.

Either given runs (ids, or the records an earlier task returned, which name their own pipeline
version), or a selection: the runs in some states within a scope (:mod:`airflow_provider_clarifai.scopes`),
optionally only those unchanged for a while. Either way the result is grouped per pipeline version, one
record per run, judged by the state read before anything is sent. Nothing here changes a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.ids import PipelineVersionIds
from airflow_provider_clarifai.operators.outcomes import (
    RunChangeOutcome,
    _record_before_change,
    _RunRecord,
    record_before,
)
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction, format_statuses, parse_statuses
from airflow_provider_clarifai.validate import quote

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.scopes import ScopeIds

#: One given run: the pipeline version its record named (``None``: the task's own), and its id.
Target = tuple[PipelineVersionIds | None, str]
Groups = dict[PipelineVersionIds, list[_RunRecord]]
_ID_KEYS = ("user_id", "app_id", "pipeline_id", "pipeline_version_id")


def rendered_targets(task_id: str, value: Any) -> list[Target]:
    """The rendered ``run_ids``, checked: ids, or records (those naming a version keep it).

    :param task_id: the task, for messages.
    :param value: the rendered ``run_ids``.
    :raises ClarifaiConfigurationError: not one id, a list of ids, or a list of records.
    """
    from airflow_provider_clarifai.ids import validate_run_ids

    if value is None:
        raise ClarifaiConfigurationError(
            f"run_ids of task {task_id!r} rendered to None (did the upstream task push the XCom you pass?). "
            "Pass one run id, a list of run ids, or an XComArg that resolves to them."
        )
    if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        return [_target_of_record(task_id, index, item) for index, item in enumerate(value)]
    if isinstance(value, list | tuple) and not value:
        return []
    try:
        return [(None, run_id) for run_id in validate_run_ids(value)]
    except ClarifaiConfigurationError as err:
        raise ClarifaiConfigurationError(
            f"Invalid run_ids for task {task_id!r} (rendered value {quote(value)}): {err}"
        ) from None


def _target_of_record(task_id: str, index: int, item: object) -> Target:
    if isinstance(item, Mapping) and isinstance(item.get("run_id"), str):
        named = [key for key in _ID_KEYS if item.get(key)]
        if not named:
            return None, str(item["run_id"])
        if len(named) == len(_ID_KEYS):
            return PipelineVersionIds(*(str(item[key]) for key in _ID_KEYS)), str(item["run_id"])
        raise ClarifaiConfigurationError(
            f"run_ids[{index}] of task {task_id!r} names only {', '.join(named)} of its pipeline version: a "
            f"record names all of {', '.join(_ID_KEYS)} or none."
        )
    raise ClarifaiConfigurationError(
        f"run_ids[{index}] of task {task_id!r} is {quote(item)}: a list given to run_ids holds either run "
        "id strings or the records a pause, resume or cancel task returns (dicts with a 'run_id'), not a "
        "mix or other values."
    )


def rendered_statuses(task_id: str, action: RunAction, value: Any) -> frozenset[PipelineRunStatus]:
    """The rendered ``select_statuses``, parsed and checked against the action.

    :param task_id: the task, for messages.
    :param action: the task's action.
    :param value: the rendered ``select_statuses``.
    :raises ClarifaiConfigurationError: not a non-empty list of states the action can apply to.
    """
    example = f"for example {[status.name for status in PipelineRunStatus if action.allows(status)]}"
    if not isinstance(value, str | list | tuple | set | frozenset) or not value:
        raise ClarifaiConfigurationError(
            f"select_statuses of task {task_id!r} must be a non-empty list of state names ({example}), got "
            f"{quote(value)}."
        )
    try:
        statuses = parse_statuses(value)
    except ValueError as err:
        raise ClarifaiConfigurationError(
            f"Invalid select_statuses for task {task_id!r}: {err}. Write a list of state names, {example}."
        ) from None
    pointless = statuses - action.allowed_from - {action.target_status}
    if pointless:
        raise ClarifaiConfigurationError(
            f"select_statuses of task {task_id!r} selects {format_statuses(pointless)}, but "
            f"{action.describe_allowed()}. Select only states the action can apply to, {example}."
        )
    return statuses


def given_groups(
    hook: ClarifaiHook,
    action: RunAction,
    targets: list[Target],
    own_ids: Callable[[], PipelineVersionIds],
    on_forbidden: str,
) -> Groups:
    """Records of given runs, each run's state read first (one listing per version for many runs).

    :param hook: the hook.
    :param action: the action.
    :param targets: the runs, each with the version its record named (else the task's own).
    :param own_ids: resolves the task's own pipeline version (called only if a run needs it).
    :param on_forbidden: ``"fail"`` or ``"skip"``.
    """
    from airflow_provider_clarifai.effects import RunCalls
    from airflow_provider_clarifai.waiter import read_states

    by_version: dict[PipelineVersionIds, list[str]] = {}
    mine: PipelineVersionIds | None = None
    for named, run_id in targets:
        if named is None:
            mine = mine or own_ids()
        by_version.setdefault(named or mine, []).append(run_id)  # type: ignore[arg-type]
    groups: Groups = {}
    for ids, run_ids in by_version.items():
        run_ids = list(dict.fromkeys(run_ids))
        states = RunCalls(hook).run(read_states(ids, run_ids, None))
        groups[ids] = [_named(record_before(action, ids, r, states[r], on_forbidden), ids) for r in run_ids]
    return groups


def selected_groups(
    hook: ClarifaiHook,
    action: RunAction,
    scope: ScopeIds,
    statuses: frozenset[PipelineRunStatus],
    *,
    older_than: float | None,
    max_runs: int,
    on_forbidden: str,
) -> Groups:
    """Records of the runs a selection matches, grouped per version.

    :param hook: the hook.
    :param action: the action.
    :param scope: where to look.
    :param statuses: the states selected.
    :param older_than: only runs unchanged for at least this many seconds.
    :param max_runs: the most runs the selection may match.
    :param on_forbidden: ``"fail"`` or ``"skip"``.
    :raises ClarifaiConfigurationError: it matches more than ``max_runs`` runs (nothing is changed).
    """
    from airflow_provider_clarifai.scopes import select_runs

    found = select_runs(hook, scope, statuses, older_than=older_than, now=hook.clock.now(), max_runs=max_runs)
    return {
        ids: [_named(_record_before_change(action, r.run_id, r.status_name, on_forbidden), ids) for r in runs]
        for ids, runs in found.items()
    }


def preview(action: RunAction, groups: Groups) -> None:
    """Mark what a dry run would change (``would_change``, with the state it would go to).

    :param action: the action.
    :param groups: the records; those still to be changed are marked.
    """
    for records in groups.values():
        for record in records:
            if record.outcome is None:
                record.outcome = RunChangeOutcome.WOULD_CHANGE
                record.state_after = record.state_before
                record.message = (
                    f"would {action.value}: {record.state_before} -> {action.target_status.value} (dry run)"
                )


def _named(record: _RunRecord, ids: PipelineVersionIds) -> _RunRecord:
    record.ids = ids
    return record
