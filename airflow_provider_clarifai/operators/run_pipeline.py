"""ClarifaiRunPipelineOperator: start a Clarifai pipeline run and wait for it, polling or deferred.

Importing this module is cheap and talks to nothing: DAG files import it at every parse. The hook (and
with it gRPC) is built on first use inside ``execute``.

.. seealso:: ``docs/operators/run-pipeline.rst``
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_clarifai.common import ID_TEMPLATE_FIELDS, ClarifaiTaskMixin, check_state_list
from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.links.clarifai import ClarifaiPipelineRunLink
from airflow_provider_clarifai.status import PipelineRunStatus
from airflow_provider_clarifai.validate import optional_seconds, seconds
from airflow_provider_clarifai.waiting import deferral_timeout

if TYPE_CHECKING:
    from airflow_provider_clarifai.exceptions import ClarifaiError
    from airflow_provider_clarifai.ids import PipelineVersionIds
    from airflow_provider_clarifai.retry import RetryPolicy
    from airflow_provider_clarifai.runs import PipelineRun
    from airflow_provider_clarifai.waiting import RunWaitEvent, RunWaitSpec


#: Namespace of the run ids this operator derives from a task instance (uuid5), so a retried task can
#: find the run its earlier try started.
RUN_ID_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4d8e-9a57-2f4c1b7e8d90")
#: XCom key of the run id (pushed as soon as the run exists, before any waiting).
RUN_ID_XCOM_KEY = "pipeline_version_run_id"


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
        poll_interval = seconds("poll_interval", poll_interval)
        timeout_seconds = optional_seconds(
            "timeout",
            timeout.total_seconds() if isinstance(timeout, timedelta) else timeout,
            fix="Pass, for example, timeout=3600 or timeout=timedelta(hours=1), or None for no limit.",
        )
        check_state_list("success_statuses", success_statuses, task_id=self.task_id)
        check_state_list("failure_statuses", failure_statuses, task_id=self.task_id)
        if deferrable and not wait_for_completion:
            raise ClarifaiConfigurationError(
                f"Task {self.task_id!r} has deferrable=True and wait_for_completion=False: there is no wait "
                "to defer. Drop deferrable, or set wait_for_completion=True to wait in the triggerer."
            )
        self.input_args = input_args
        self.nodepool_id = nodepool_id
        self.compute_cluster_id = compute_cluster_id
        self.pipeline_version_run_id = pipeline_version_run_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout_seconds = timeout_seconds
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
        try:
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
        finally:
            # Deferring raises TaskDeferred through here too: the trigger uses its own channel.
            self.close_hook()

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
        return self.hook.clock.now() + min(limits) if limits else None

    def _poll(
        self, ids: PipelineVersionIds, run: PipelineRun, spec: RunWaitSpec, deadline: float | None
    ) -> Any:
        from airflow_provider_clarifai.effects import RunCalls
        from airflow_provider_clarifai.waiter import LogMode, RunWaiter

        waiter = RunWaiter(
            ids,
            run.run_id,
            spec,
            log=self.log,
            now=self.hook.clock.now,
            deadline=deadline,
            poll_interval=self.poll_interval,
            cancel_on_timeout=self.cancel_on_timeout,
            logs=LogMode.choose(self.stream_logs),
        )
        event = RunCalls(self.hook).run(waiter.wait(first=run))
        self._active_run = None
        return self._settle(event, waiter.error)

    def _defer(
        self, ids: PipelineVersionIds, run: PipelineRun, spec: RunWaitSpec, deadline: float | None
    ) -> Any:
        from airflow_provider_clarifai.triggers.clarifai import ClarifaiPipelineRunTrigger

        success, failure = spec.to_lists()
        timeout = deferral_timeout(deadline, self.hook.clock.now(), self.poll_interval)
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
        from airflow_provider_clarifai.waiting import RunWaitEvent

        return self._settle(RunWaitEvent.from_payload(event))

    def _settle(self, event: RunWaitEvent, error: ClarifaiError | None = None) -> Any:
        """The task's result for the wait's event, the same polling or deferred."""
        from airflow_provider_clarifai.exceptions import ClarifaiRunFailedError, ClarifaiRunTimeoutError
        from airflow_provider_clarifai.waiting import settle

        return settle(
            event, self.log, failed=ClarifaiRunFailedError, timed_out=ClarifaiRunTimeoutError, error=error
        )

    def _cancel(self, why: str) -> bool:
        if self._active_run is None:
            return False
        return self.cancel_run(*self._active_run, why)

    def on_kill(self) -> None:
        """Cancel the run this task is waiting for, if ``cancel_on_kill``."""
        if self.cancel_on_kill:
            try:
                self._cancel("the task was killed")
            finally:
                self.close_hook()
