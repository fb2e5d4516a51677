"""What every Clarifai operator and the sensor share: ids, the connection, the hook, the run link.

Kept free of network and heavy imports: DAG files import the operators, and with them this module, at
every parse. The hook is built on first use, inside ``execute``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.runs import RunStatusChange

#: Templated on every operator and the sensor.
ID_TEMPLATE_FIELDS: tuple[str, ...] = (
    "clarifai_conn_id",
    "user_id",
    "app_id",
    "pipeline_id",
    "pipeline_version_id",
    "config_lock_path",
)


def check_state_list(name: str, value: object, *, task_id: str, templated: bool = False) -> None:
    """Refuse a bare state name where a list of states is expected, when the task is built.

    ``success_statuses="JOB_COMPLETED"`` would otherwise be read letter by letter, or quietly as one
    state; either way the DAG does not say what its author meant.

    :param name: the parameter's name.
    :param value: what the user passed.
    :param task_id: the task, for the message.
    :param templated: whether the parameter is templated (a Jinja string is then allowed).
    """
    if not isinstance(value, str) or (templated and "{{" in value):
        return
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
    from airflow_provider_clarifai.validate import quote

    raise ClarifaiConfigurationError(
        f"{name} of task {task_id!r} must be a list of state names, got the string {quote(value)}. "
        f"Write {name}=[{quote(value)}] for one state."
    )


class ClarifaiTaskMixin:
    """Ids, connection and hook for a task that works on one Clarifai pipeline version.

    Subclasses call :meth:`_init_clarifai` from ``__init__``.
    """

    clarifai_conn_id: str
    user_id: str | None
    app_id: str | None
    pipeline_id: str | None
    pipeline_version_id: str | None
    config_lock_path: str | None
    api_retry_policy: RetryPolicy | Mapping[str, Any] | None
    request_timeout: float | None
    log: Any  # the operator's logger (LoggingMixin)

    def _init_clarifai(
        self,
        *,
        clarifai_conn_id: str,
        user_id: str | None,
        app_id: str | None,
        pipeline_id: str | None,
        pipeline_version_id: str | None,
        config_lock_path: str | None,
        api_retry_policy: RetryPolicy | Mapping[str, Any] | None,
        request_timeout: float | None,
    ) -> None:
        from airflow_provider_clarifai.validate import optional_seconds

        # Checked when the DAG is parsed, under the task's own parameter names (the hook's differ).
        request_timeout = optional_seconds("request_timeout", request_timeout)
        if api_retry_policy is not None:
            from airflow_provider_clarifai.retry import RetryPolicy

            RetryPolicy.coerce(api_retry_policy, name="api_retry_policy")
        self.clarifai_conn_id = clarifai_conn_id
        self.user_id = user_id
        self.app_id = app_id
        self.pipeline_id = pipeline_id
        self.pipeline_version_id = pipeline_version_id
        self.config_lock_path = config_lock_path
        # Not ``retry_policy``: Airflow 3.3's BaseOperator has a task retry policy of that name.
        self.api_retry_policy = api_retry_policy
        self.request_timeout = request_timeout

    @cached_property
    def hook(self) -> ClarifaiHook:
        """The hook, built on first use (never at DAG parse time)."""
        from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook

        return ClarifaiHook(
            self.clarifai_conn_id, retry_policy=self.api_retry_policy, timeout=self.request_timeout
        )

    def resolve_ids(self) -> PipelineVersionIds:
        """Resolve the pipeline version; a relative ``config_lock_path`` is relative to the DAG file."""
        return self.hook.resolve_ids(
            user_id=self.user_id,
            app_id=self.app_id,
            pipeline_id=self.pipeline_id,
            pipeline_version_id=self.pipeline_version_id,
            config_lock_path=self.config_lock_path,
            base_dir=self._dag_folder(),
        )

    def resolve_scope_ids(self, scope: Any, compute_cluster_id: str | None, nodepool_id: str | None) -> Any:
        """Resolve the ids a scope needs (:func:`~airflow_provider_clarifai.scopes.resolve_scope`).

        :param scope: a :class:`~airflow_provider_clarifai.scopes.RunScope`.
        :param compute_cluster_id: the rendered compute cluster, for a nodepool scope.
        :param nodepool_id: the rendered nodepool, for a nodepool scope.
        """
        from airflow_provider_clarifai.scopes import resolve_scope

        settings = self.hook.get_settings()
        given = {
            "user_id": self.user_id,
            "app_id": self.app_id,
            "pipeline_id": self.pipeline_id,
            "pipeline_version_id": self.pipeline_version_id,
            "compute_cluster_id": compute_cluster_id,
            "nodepool_id": nodepool_id,
        }
        return resolve_scope(
            scope,
            given,
            config_lock_path=self.config_lock_path,
            base_dir=self._dag_folder(),
            default_user_id=settings.default_user_id,
            default_app_id=settings.default_app_id,
            conn_id=self.clarifai_conn_id,
        )

    def _dag_folder(self) -> str | None:
        # ``self.dag`` raises outside a DAG (RuntimeError on 3.x, AirflowException on 2.11); get_dag() not.
        get_dag = getattr(self, "get_dag", None)
        dag = get_dag() if callable(get_dag) else None
        fileloc = getattr(dag, "fileloc", None) if dag is not None else None
        return os.path.dirname(os.path.abspath(fileloc)) if fileloc else None

    def close_hook(self) -> None:
        """Close the hook's channel if the task opened one (a worker runs many tasks in one process)."""
        hook = self.__dict__.get("hook")
        if hook is not None:
            hook.close()

    def cancel_run(self, ids: PipelineVersionIds, run_id: str, why: str) -> bool:
        """Cancel one run on the task's behalf (on kill); a failure to cancel is logged, never raised.

        The waiter's own cancel (:func:`~airflow_provider_clarifai.waiter.cancel_steps`), with blocking
        calls: it gets :data:`~airflow_provider_clarifai.waiting.WRAP_UP_SECONDS` in all.

        :param ids: the pipeline version.
        :param run_id: the run.
        :param why: the reason, for the log.
        """
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import cancel_steps

        return RunCalls(self.hook).run(cancel_steps(ids, run_id, why, self.log))

    def cancel_runs(self, ids: PipelineVersionIds, run_ids: list[str], why: str) -> list[str]:
        """Cancel several runs in batches on the task's behalf; a failure to cancel is logged, never raised.

        The cancel gets :data:`~airflow_provider_clarifai.waiting.WRAP_UP_SECONDS` in all, retries
        included.

        :param ids: the pipeline version.
        :param run_ids: the runs.
        :param why: the reason, for the log.
        :returns: the runs cancelled.
        """
        from airflow_provider_clarifai.exceptions import ClarifaiError
        from airflow_provider_clarifai.status import RunAction
        from airflow_provider_clarifai.waiting import WRAP_UP_SECONDS

        try:
            with self.hook.time_limit(WRAP_UP_SECONDS):
                changes = self.hook.set_runs_status(ids, run_ids, RunAction.CANCEL)
        except ClarifaiError as error:
            self.log.error("Could not cancel %d run(s) after %s: %s", len(run_ids), why, error)
            return []
        return note_cancels(self.log, changes, why)

    def persist_run_link(self, context: Any, ids: PipelineVersionIds, run_id: str | None = None) -> str:
        """Store the UI link of the run (or of the version's runs, without ``run_id``) for the task.

        The link is also written to the task log, once per task: not again by the same task object, nor
        on the later pokes of a sensor in reschedule mode on Airflow 3, which counts them in the context
        (Airflow 2 does not, so there each poke logs it). A deferred task's ``execute_complete`` does not
        store the link again. The stored XCom is not read back to decide: on Airflow 3 a missing XCom
        logs an error line of its own.

        :param context: the task context.
        :param ids: the pipeline version.
        :param run_id: the run, if the task is about one run.
        """
        url = self.hook.run_url(ids, run_id) if run_id is not None else self.hook.run_url(ids, "").rstrip("/")
        ti = context["ti"]
        key = ClarifaiPipelineRunLink().xcom_key
        logged: set[str] = self.__dict__.setdefault("_clarifai_logged_links", set())
        repeat = url in logged or bool(context.get("task_reschedule_count"))
        ti.xcom_push(key=key, value=url)
        if not repeat:
            ids_path = f"{ids.user_id}/{ids.app_id}/{ids.pipeline_id}/{ids.pipeline_version_id}"
            what = f"Run {run_id} of {ids_path}" if run_id is not None else f"Runs of {ids_path}"
            self.log.info("%s in the Clarifai web UI: %s", what, url)
        logged.add(url)
        return url


def rendered_run_ids(value: Any, *, name: str, task_id: str, allow_empty: bool) -> list[str]:
    """A rendered ``run_ids`` argument as a checked list of run ids, in the order given.

    Takes one id, a list (or other sequence, such as a mapped task's XCom) of ids, or a list of the
    records the pause, resume and cancel operators return (dicts with a ``"run_id"``). Each id is checked
    with :func:`~airflow_provider_clarifai.ids.validate_run_ids`, repeats refused.

    :param value: the rendered value.
    :param name: the argument's name, for messages.
    :param task_id: the task, for messages.
    :param allow_empty: return ``[]`` for an empty list; else an empty list is an error.
    :raises ClarifaiConfigurationError: the value is none of those, or an id is invalid or repeated.
    """
    from collections.abc import Sequence

    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
    from airflow_provider_clarifai.ids import validate_run_ids
    from airflow_provider_clarifai.validate import quote

    if value is None:
        raise ClarifaiConfigurationError(
            f"{name} of task {task_id!r} rendered to None (did the upstream task push the XCom you pass?). "
            "Pass one run id, a list of run ids, or an XComArg that resolves to them."
        )
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | list | tuple):
        value = list(value)  # a mapped task's XCom: a lazy sequence
    if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        value = [_run_id_of_record(name, task_id, index, item) for index, item in enumerate(value)]
    if isinstance(value, list | tuple) and not value:
        if allow_empty:
            return []
        raise ClarifaiConfigurationError(
            f"{name} of task {task_id!r} is an empty list: there is no run to wait for (did the upstream "
            "task start or select no run?). Pass at least one run id."
        )
    try:
        return validate_run_ids(value)
    except ClarifaiConfigurationError as err:
        raise ClarifaiConfigurationError(
            f"Invalid {name} for task {task_id!r} (rendered value {quote(value)}): {err}"
        ) from None


def _run_id_of_record(name: str, task_id: str, index: int, item: object) -> str:
    if isinstance(item, Mapping) and isinstance(item.get("run_id"), str):
        return str(item["run_id"])
    from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
    from airflow_provider_clarifai.validate import quote

    raise ClarifaiConfigurationError(
        f"{name}[{index}] of task {task_id!r} is {quote(item)}: a list given to {name} holds either run "
        "id strings or the records a pause, resume or cancel task returns (dicts with a 'run_id'), not a "
        "mix or other values."
    )


def note_cancels(log: Any, changes: Iterable[RunStatusChange], why: str) -> list[str]:
    """Log what became of the runs a task or trigger cancelled in one batch; return those cancelled.

    :param log: the task's or trigger's logger.
    :param changes: the hook's answer, one change per run.
    :param why: the reason, for the log.
    """
    changes = list(changes)
    applied = [change.run_id for change in changes if change.applied]
    refused = [change for change in changes if not change.applied]
    if applied:
        log.info("Cancelled %d run(s) because %s: %s.", len(applied), why, ", ".join(applied))
    if refused:
        log.warning(
            "%d run(s) were not cancelled after %s: %s.",
            len(refused),
            why,
            "; ".join(f"{c.run_id} (now {c.status_after}: {c.error_description})" for c in refused[:20]),
        )
    return applied
