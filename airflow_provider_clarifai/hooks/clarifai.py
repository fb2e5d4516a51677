"""ClarifaiHook: the pipeline-run surface of the Clarifai gRPC API, blocking and asyncio.

Importing this module is cheap: ``grpc`` and ``clarifai_grpc`` load on the first call, never at DAG
parse time. The hook is a set of thin entry points: each operation checks its arguments and builds its
flow (``_operations.py`` over ``_flows.py``), then runs it through the blocking or the asyncio driver
(``_execution.py``). The connection is read and checked in ``_connection.py``; channels and the stub are
in ``_transport.py``; TLS material and the token in ``_tls.py``.

Process-global state, each documented where it lives: ``_connection._settings_reads`` (asyncio
connection reads under way, per event loop and (hook class, conn id), kept only while a read runs);
``_transport._async_endpoints`` (the shared asyncio channels, per event loop and endpoint, kept until
closed or the loop ends); ``budget._budgets`` (the request budgets, per token fingerprint, endpoint and
clock, kept for the process's life); ``_tls._reads`` (root certificate file reads under way, per path,
kept only while a read runs); and two warn-once sets, ``_tls._warned_plaintext`` (plaintext endpoints)
and ``_connection._warned_extras`` (unknown connection extras), kept for the process's life. None holds
a token: the token lives in each hook's own settings and travels with each call. The blocking channel is
not shared: each hook owns one, closed by :meth:`ClarifaiHook.close`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_clarifai.hooks import _connection, _execution
from airflow_provider_clarifai.hooks import _operations as ops
from airflow_provider_clarifai.hooks._listing import ClarifaiListingMixin
from airflow_provider_clarifai.ids import PipelineVersionIds, resolve_pipeline_version_ids
from airflow_provider_clarifai.retry import SYSTEM_CLOCK, RetryClock, RetryPolicy
from airflow_provider_clarifai.runs import PipelineRun, RunLogBatch, RunLogCursor, RunStatusChange
from airflow_provider_clarifai.status import PipelineRunStatus, RunAction
from airflow_provider_clarifai.validate import optional_seconds

if TYPE_CHECKING:
    from airflow_provider_clarifai.hooks._connection import ConnectionSettings
    from airflow_provider_clarifai.hooks._flows import Call
    from airflow_provider_clarifai.hooks._transport import HookLinks, PipelineRunStub

T = TypeVar("T")

#: Runs per PatchPipelineVersionRuns request; larger batches are split.
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 1000
#: The connection test is a button in the UI: answer within seconds, not after a long retry budget.
_CONNECTION_TEST_POLICY = RetryPolicy(max_attempts=2, initial_backoff=0.5, max_elapsed=10.0)


class ClarifaiHook(ClarifaiListingMixin, BaseHook):
    """Interact with Clarifai pipeline version runs over gRPC.

    Every method has an asyncio twin prefixed with ``a`` (``get_run`` / ``aget_run``). Every call has a
    deadline (the connection's ``timeout``, 30 s by default) and goes through one :class:`RetryPolicy`:
    transport failures, the service's internal errors and throttling are retried with exponential
    backoff and jitter, bounded in attempts and total time; other errors raise at once as a subclass of
    :class:`~airflow_provider_clarifai.exceptions.ClarifaiError`.

    The blocking methods use one channel per hook (close it with :meth:`close` or a ``with`` block).
    The asyncio methods share one channel per event loop and endpoint across every hook in the process,
    with a bound on calls in flight, so hundreds of triggers in one triggerer use one connection. Every
    attempt first takes a slot of the process's budget for the token (``budget.py``; 15 requests/s).

    :param clarifai_conn_id: the Airflow connection of type ``clarifai``.
    :param retry_policy: a :class:`RetryPolicy` or a dict of its settings; retries are on by default.
    :param timeout: deadline of each call in seconds; overrides the connection's ``timeout``.
    :param batch_size: runs per status-change request; larger batches are split.
    :param clock: how retries and the request budget tell time and wait (:class:`RetryClock`); the real
        clock by default. Tests pass a fake one, so backoffs, slots and time limits need no real waiting.
    :param \\*\\*kwargs: passed to ``BaseHook`` (``logger_name``).
    """

    conn_name_attr = "clarifai_conn_id"
    default_conn_name = "clarifai_default"
    conn_type = "clarifai"
    hook_name = "Clarifai"

    def __init__(
        self,
        clarifai_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        clock: RetryClock = SYSTEM_CLOCK,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(clarifai_conn_id, str) or not clarifai_conn_id.strip():
            raise ClarifaiConfigurationError(
                f"clarifai_conn_id must be a non-empty string, got {clarifai_conn_id!r}."
            )
        timeout = optional_seconds("timeout", timeout)
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= MAX_BATCH_SIZE
        ):
            raise ClarifaiConfigurationError(
                f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}."
            )
        self.clarifai_conn_id = clarifai_conn_id
        self.retry_policy = RetryPolicy.coerce(retry_policy)
        self.batch_size = batch_size
        self.clock = clock
        self._timeout = float(timeout) if timeout is not None else None
        self._settings: ConnectionSettings | None = None
        self._sync_channel: Any = None
        self._sync_stub: PipelineRunStub | None = None
        self._links: HookLinks | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(clarifai_conn_id={self.clarifai_conn_id!r})"

    def __enter__(self) -> ClarifaiHook:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Connection -------------------------------------------------------------------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields for Airflow 2's UI (Airflow 3 reads provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {
            name: StringField(
                lazy_gettext(field["label"]), widget=BS3TextFieldWidget(), description=field["description"]
            )
            for name, field in CONN_FIELDS.items()
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and placeholder fields for Airflow 2's UI (Airflow 3 reads provider info)."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    def get_settings(self) -> ConnectionSettings:
        """Read the Airflow connection once and return what the hook uses from it."""
        if self._settings is None:
            self._settings = _connection.read_settings(self)
        return self._settings

    async def aget_settings(self) -> ConnectionSettings:
        """Asyncio twin of :meth:`get_settings`; never blocks the event loop.

        Hooks of the same class and connection that ask while a read is under way in the same event loop
        share that read (a triggerer restart starts hundreds of triggers of one connection at once); a
        later call reads the connection afresh.
        """
        if self._settings is None:
            self._settings = await _connection.aread_settings(self)
        return self._settings

    @property
    def timeout(self) -> float:
        """The deadline of each call, in seconds."""
        return self._timeout if self._timeout is not None else self.get_settings().timeout

    def get_conn(self) -> PipelineRunStub:
        """The blocking stub, over this hook's channel (opened on first use)."""
        if self._sync_stub is None:
            from airflow_provider_clarifai.hooks._transport import PipelineRunStub, open_sync_channel

            self._sync_channel = open_sync_channel(self.get_settings())
            self._sync_stub = PipelineRunStub(self._sync_channel)
        return self._sync_stub

    def close(self) -> None:
        """Close this hook's blocking channel. The shared asyncio channels stay open."""
        if self._sync_channel is not None:
            self._sync_channel.close()
        self._sync_channel = self._sync_stub = None

    def time_limit(self, seconds: float | None) -> AbstractContextManager[None]:
        """Make every call inside the ``with`` block end within ``seconds`` from now, retries included.

        A task waiting for a run calls with the time its wait has left, so one call can never take the
        whole retry budget past the wait's deadline. Nested limits keep the sooner one. The limit belongs
        to the current thread or asyncio task only, so hooks shared by several triggers do not mix them.

        :param seconds: the time left, or ``None`` for no limit beyond the retry policy's own.
        """
        return _execution.time_limit(self.clock.monotonic, seconds)

    def test_connection(self) -> tuple[bool, str]:
        """Make a real authenticated call and say whether the token and host work."""
        from airflow_provider_clarifai.hooks._flows import whoami

        try:
            settings = self.get_settings()
            user_id = self._run(whoami(settings.default_user_id), _CONNECTION_TEST_POLICY)
        except ClarifaiError as err:
            return False, str(err)
        return True, f"Connected to the Clarifai API at {settings.target} as user {user_id!r}."

    # Ids ----------------------------------------------------------------------------------------

    def resolve_ids(
        self,
        *,
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | os.PathLike[str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> PipelineVersionIds:
        """Resolve the pipeline version: explicit ids, else ``config-lock.yaml``, else the connection.

        :param user_id: explicit user id.
        :param app_id: explicit app id.
        :param pipeline_id: explicit pipeline id.
        :param pipeline_version_id: explicit pipeline version id.
        :param config_lock_path: a ``config-lock.yaml`` written by ``clarifai pipeline upload``.
        :param base_dir: the folder a relative ``config_lock_path`` is relative to.
        """
        settings = self.get_settings()
        return resolve_pipeline_version_ids(
            user_id=user_id,
            app_id=app_id,
            pipeline_id=pipeline_id,
            pipeline_version_id=pipeline_version_id,
            config_lock_path=config_lock_path,
            base_dir=base_dir,
            default_user_id=settings.default_user_id,
            default_app_id=settings.default_app_id,
            defaults_source=f"the defaults of Airflow connection {self.clarifai_conn_id!r}",
        )

    def run_url(self, ids: PipelineVersionIds, run_id: str) -> str:
        """The run's page in the Clarifai web UI (base from the connection's ``web_base_url``).

        :param ids: the pipeline version.
        :param run_id: the run.
        """
        base = self.get_settings().web_base_url
        return (
            f"{base}/{ids.user_id}/{ids.app_id}/pipelines/{ids.pipeline_id}"
            f"/versions/{ids.pipeline_version_id}/runs/{run_id}"
        )

    # Operations: each builds a flow once; the sync and asyncio methods only drive it -------------

    def get_run(self, ids: PipelineVersionIds, run_id: str) -> PipelineRun:
        """Get one run.

        :param ids: the pipeline version.
        :param run_id: the run.
        :raises ClarifaiNotFoundError: no such run (or pipeline version) visible to the token.
        """
        return self._run(ops.get_run_flow(ids, run_id))

    async def aget_run(self, ids: PipelineVersionIds, run_id: str) -> PipelineRun:
        """Asyncio twin of :meth:`get_run`.

        :param ids: the pipeline version.
        :param run_id: the run.
        """
        return await self._arun(ops.get_run_flow(ids, run_id))

    def list_runs(
        self,
        ids: PipelineVersionIds,
        *,
        statuses: Iterable[PipelineRunStatus | str | int] | None = None,
        per_page: int = 128,
        max_pages: int | None = None,
        compute_cluster_id: str | None = None,
        nodepool_id: str | None = None,
    ) -> list[PipelineRun]:
        """List runs of a pipeline version, newest first, reading every page unless ``max_pages``.

        :param ids: the pipeline version.
        :param statuses: only runs in these states (names such as ``"RUNNING"`` or members).
        :param per_page: runs per page (1 to 1000).
        :param max_pages: read at most this many pages.
        :param compute_cluster_id: only runs on this compute cluster.
        :param nodepool_id: only runs on this nodepool.
        """
        return self._run(
            ops.list_runs_flow(ids, statuses, per_page, max_pages, compute_cluster_id, nodepool_id)
        )

    async def alist_runs(
        self,
        ids: PipelineVersionIds,
        *,
        statuses: Iterable[PipelineRunStatus | str | int] | None = None,
        per_page: int = 128,
        max_pages: int | None = None,
        compute_cluster_id: str | None = None,
        nodepool_id: str | None = None,
    ) -> list[PipelineRun]:
        """Asyncio twin of :meth:`list_runs`.

        :param ids: the pipeline version.
        :param statuses: only runs in these states.
        :param per_page: runs per page (1 to 1000).
        :param max_pages: read at most this many pages.
        :param compute_cluster_id: only runs on this compute cluster.
        :param nodepool_id: only runs on this nodepool.
        """
        return await self._arun(
            ops.list_runs_flow(ids, statuses, per_page, max_pages, compute_cluster_id, nodepool_id)
        )

    def set_runs_status(
        self, ids: PipelineVersionIds, run_ids: str | Sequence[str], action: RunAction | str
    ) -> list[RunStatusChange]:
        """Pause, resume or cancel runs of one pipeline version, ``batch_size`` runs per request.

        Returns one :class:`RunStatusChange` per run, in order; a run the service refused is reported,
        not raised, so a batch never half-applies silently. Request-level failures (auth, unknown
        pipeline version, an unreachable service after retries) raise. An empty list selects nothing:
        it returns ``[]`` without a request, and logs that nothing was selected.

        :param ids: the pipeline version.
        :param run_ids: one run id or several (no duplicates), or an empty list.
        :param action: ``"pause"`` (from JOB_QUEUED or JOB_RUNNING), ``"resume"`` (from JOB_PAUSED) or
            ``"cancel"`` (from any non-terminal state).
        """
        return self._run(
            ops.set_runs_status_flow(ids, run_ids, action, batch_size=self.batch_size, log=self.log)
        )

    async def aset_runs_status(
        self, ids: PipelineVersionIds, run_ids: str | Sequence[str], action: RunAction | str
    ) -> list[RunStatusChange]:
        """Asyncio twin of :meth:`set_runs_status`.

        :param ids: the pipeline version.
        :param run_ids: one run id or several.
        :param action: ``"pause"``, ``"resume"`` or ``"cancel"``.
        """
        return await self._arun(
            ops.set_runs_status_flow(ids, run_ids, action, batch_size=self.batch_size, log=self.log)
        )

    def post_run(
        self,
        ids: PipelineVersionIds,
        *,
        run_id: str | None = None,
        input_args: Mapping[str, str] | None = None,
        nodepool_id: str | None = None,
        compute_cluster_id: str | None = None,
    ) -> PipelineRun:
        """Start a run. Retries never start a second run: see :func:`_flows.post_run`.

        :param ids: the pipeline version.
        :param run_id: the new run's id (a uuid4 hex by default). Reusing an id fails.
        :param input_args: argument overrides, parameter names to string values.
        :param nodepool_id: the nodepool to run on (with ``compute_cluster_id``).
        :param compute_cluster_id: the compute cluster of the nodepool.
        """
        return self._run(ops.post_run_flow(ids, run_id, input_args, nodepool_id, compute_cluster_id))

    async def apost_run(
        self,
        ids: PipelineVersionIds,
        *,
        run_id: str | None = None,
        input_args: Mapping[str, str] | None = None,
        nodepool_id: str | None = None,
        compute_cluster_id: str | None = None,
    ) -> PipelineRun:
        """Asyncio twin of :meth:`post_run`.

        :param ids: the pipeline version.
        :param run_id: the new run's id.
        :param input_args: argument overrides.
        :param nodepool_id: the nodepool to run on.
        :param compute_cluster_id: the compute cluster of the nodepool.
        """
        return await self._arun(ops.post_run_flow(ids, run_id, input_args, nodepool_id, compute_cluster_id))

    def get_run_logs(
        self,
        ids: PipelineVersionIds,
        run_id: str,
        *,
        cursor: RunLogCursor | None = None,
        per_page: int = 32,
        max_pages: int = 20,
    ) -> RunLogBatch:
        """Read a run's log lines not returned before ``cursor``, de-duplicated.

        :param ids: the pipeline version.
        :param run_id: the run.
        :param cursor: the cursor of the previous call; ``None`` reads from the start.
        :param per_page: entries per page.
        :param max_pages: most pages read by this call; the cursor continues from there.
        """
        return self._run(ops.get_run_logs_flow(ids, run_id, cursor, per_page, max_pages))

    async def aget_run_logs(
        self,
        ids: PipelineVersionIds,
        run_id: str,
        *,
        cursor: RunLogCursor | None = None,
        per_page: int = 32,
        max_pages: int = 20,
    ) -> RunLogBatch:
        """Asyncio twin of :meth:`get_run_logs`.

        :param ids: the pipeline version.
        :param run_id: the run.
        :param cursor: the cursor of the previous call.
        :param per_page: entries per page.
        :param max_pages: most pages read by this call.
        """
        return await self._arun(ops.get_run_logs_flow(ids, run_id, cursor, per_page, max_pages))

    # Drivers: every operation's flow runs through one of these two ------------------------------

    def _run(self, flow: Generator[Call, Any, T], policy: RetryPolicy | None = None) -> T:
        settings, timeout, policy = self.get_settings(), self.timeout, policy or self.retry_policy
        budget = self._kept().budget(settings, self.clock)
        return _execution.drive(flow, self.get_conn, settings, policy, timeout, self.clock, budget)

    async def _arun(self, flow: Generator[Call, Any, T]) -> T:
        settings, kept = await self.aget_settings(), self._kept()  # settings read: self.timeout won't block
        connect, budget = functools.partial(kept.endpoint, settings), kept.budget(settings, self.clock)
        policy, timeout = self.retry_policy, self.timeout
        return await _execution.adrive(flow, connect, settings, policy, timeout, self.clock, budget)

    def _kept(self) -> HookLinks:
        from airflow_provider_clarifai.hooks._transport import HookLinks

        self._links = self._links or HookLinks()
        return self._links
