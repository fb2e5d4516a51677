"""What every Clarifai operator and the sensor share: ids, the connection, the hook, the run link.

Kept free of network and heavy imports: DAG files import the operators, and with them this module, at
every parse. The hook is built on first use, inside ``execute``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy

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
