"""ClarifaiPipelineRunEventTrigger: start a DAG when a Clarifai pipeline run ends (Airflow 3 asset watchers).

A DAG scheduled on an ``Asset`` whose ``AssetWatcher`` runs this trigger starts once per run of a
pipeline version that reaches one of the chosen states: no task waits. How the runs are found, and what
is promised about each event, is in the class docstring and in ``docs/operators/event-trigger.rst``.

Airflow 2 has no asset watchers: importing this module there raises an ``ImportError`` that says so, and
nothing else of the provider changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiError
from airflow_provider_clarifai.feed import FinishedFeed
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.ids import PipelineVersionIds, read_config_lock, validate_optional_id
from airflow_provider_clarifai.runs import PipelineRun
from airflow_provider_clarifai.status import PipelineRunStatus, format_statuses
from airflow_provider_clarifai.triggers.clarifai import _preload_heavy_modules
from airflow_provider_clarifai.triggers.marks import RunMarks, end_time
from airflow_provider_clarifai.validate import quote, seconds
from airflow_provider_clarifai.watcher import watcher_for

NEEDS_AIRFLOW_3 = (
    "ClarifaiPipelineRunEventTrigger needs Airflow 3 asset watchers (AssetWatcher and BaseEventTrigger, "
    "Airflow 3.0 or later; Airflow 3.3 for shared polls and the asset state store). This Airflow has none. "
    "Upgrade Airflow, or wait for a run inside a DAG with ClarifaiPipelineRunSensor."
)

try:
    from airflow.triggers.base import BaseEventTrigger, TriggerEvent
except ImportError:  # Airflow 2
    raise ImportError(NEEDS_AIRFLOW_3) from None

try:
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    HAS_SHARED_STREAMS = True
except ImportError:  # Airflow 3.0 to 3.2: each trigger polls in run() (through the shared watcher still)
    HAS_SHARED_STREAMS = False
    SharedStreamProducer = object  # type: ignore[assignment,misc]
    AdvanceItem = Any  # type: ignore[assignment,misc]

ENDED = frozenset(status for status in PipelineRunStatus if status.is_terminal)
#: The states an event fires for unless told otherwise.
DEFAULT_STATES = ("JOB_COMPLETED",)
#: A round's read waits at most this long past the time it is due.
ROUND_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class RunBatch:
    """One round of the shared poll, as every subscriber receives it.

    :param number: the round's number in this poll (its ack handle).
    :param swept: the round listed every ended run of the version, not only the ones that left the list
        of unfinished runs since the last round.
    :param runs: the ended runs the round found, oldest end first.
    :param resolved: rounds whose events every subscriber has had persisted since the last batch.
    :param web_base_url: base of the Clarifai web UI, for run links.
    """

    number: int
    swept: bool
    runs: tuple[PipelineRun, ...]
    resolved: tuple[int, ...]
    web_base_url: str


#: Shared-stream keys whose poll must sweep again: a subscriber that joins a running poll asks for it.
_sweep_requests: set[Hashable] = set()


class RunEndsProducer(SharedStreamProducer):
    """The one poll of a pipeline version shared by its event triggers in a triggerer (ack mode).

    Each round goes through the process's shared watcher (so waiting tasks and event triggers of the
    version share one listing) and its request budget. A round whose events were not all persisted
    (a subscriber failed, or none was there) makes the next round sweep, so they come again.

    :param kwargs: the serialized kwargs of one trigger of the group.
    """

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self.trigger = ClarifaiPipelineRunEventTrigger(**kwargs)
        self.key = self.trigger.shared_stream_key()
        self._resolved: list[int] = []
        self._sweep_again = False
        self._checkpoint: asyncio.Event | None = None

    async def open_stream(self) -> AsyncIterator[tuple[RunBatch, int]]:
        """Poll forever: one :class:`RunBatch` a round (or sooner, when earlier rounds resolve)."""
        trigger = self.trigger
        loop = asyncio.get_running_loop()
        self._checkpoint = asyncio.Event()
        await _preload_heavy_modules()
        hook = trigger.hook()
        ids = await trigger.resolve_ids(hook)
        web_base_url = (await hook.aget_settings()).web_base_url
        watcher = await watcher_for(hook, ids)
        feed = FinishedFeed(states=ENDED, sweep_every=trigger.sweep_every)
        due, number, pending_round = loop.time(), 0, None
        try:
            while True:
                if self.key in _sweep_requests or self._sweep_again:
                    _sweep_requests.discard(self.key)
                    self._sweep_again, feed.sweep_requested = False, True
                if pending_round is None:
                    within = max(due - loop.time(), 0.0) + max(trigger.poll_interval, ROUND_GRACE_SECONDS)
                    pending_round = loop.create_task(
                        watcher.ended(feed, due=due, interval=trigger.poll_interval, within=within)
                    )
                checkpoint = loop.create_task(self._checkpoint.wait())
                try:
                    await asyncio.wait({pending_round, checkpoint}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    checkpoint.cancel()
                ended: list[PipelineRun] = []
                swept = False
                if pending_round.done():
                    finished, pending_round = pending_round, None
                    due = loop.time() + trigger.poll_interval
                    try:
                        ended = finished.result()
                        swept = feed.rounds_since_sweep == 0
                    except ClarifaiError as error:
                        # The watch goes on: a wrong token or a deleted version is logged each round.
                        trigger.log.error(
                            "Polling %s for ended runs failed; polling again in %g s: %s",
                            "/".join(ids.as_dict().values()),
                            trigger.poll_interval,
                            error,
                        )
                self._checkpoint.clear()
                resolved, self._resolved = tuple(self._resolved), []
                if not ended and not swept and not resolved:
                    continue
                number += 1
                batch = RunBatch(number, swept, tuple(sorted(ended, key=_order)), resolved, web_base_url)
                yield batch, number
        finally:
            # The poll ends (its group stopped): the round under way goes, and its read leaves the watcher.
            if pending_round is not None:
                pending_round.cancel()

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Note the rounds whose events were persisted; a round not cleanly resolved comes again.

        :param batch: the resolved rounds, in order.
        """
        for item in batch:
            self.resolve(item.broker_payload, clean=item.outcome.is_clean)

    def resolve(self, number: int, *, clean: bool) -> None:
        """Note one resolved round.

        :param number: the round.
        :param clean: every subscriber had its events persisted (else the next round sweeps again).
        """
        self._resolved.append(number)
        if not clean:
            self._sweep_again = True
        if self._checkpoint is not None:
            self._checkpoint.set()


class ClarifaiPipelineRunEventTrigger(BaseEventTrigger):
    """Fire one event for each run of a pipeline version that reaches one of ``states``.

    For an ``AssetWatcher``: a DAG scheduled on the asset starts once per ended run, with the run in the
    asset event's ``extra`` (``run_id``, ``state``, ids, ``nodepool_id``, ``created_at``, ``started_at``,
    ``ended_at``, ``duration_seconds``, ``url``; never the token).

    **How runs are found.** The triggers of one version in a triggerer share one poll (Airflow 3.3 shared
    streams), which goes through the process's shared run watcher and request budget: a round lists the
    version's unfinished runs (the same listing deferred sensors of the version use) and reads the runs
    that left that list; every ``sweep_every`` rounds, and when a trigger (re)starts, a sweep lists every
    ended run of the version (every page: its cost grows with the version's history), which finds runs
    that started and ended between two rounds or while no triggerer ran.

    **Delivery.** A watermark (the latest end seen less a slack, and the ids of runs that ended after it)
    is kept in the asset state store (Airflow 3.3, AIP-103), advanced only after the events before it
    were persisted (shared-stream ack mode). So a run that ends while the triggerer is down fires after it
    comes back, and a run fires once across restarts and between triggers sharing a poll. Airflow can
    still repeat an event in one window: a crash after an event was persisted and before the watermark
    was written (at most one poll interval), or two triggerers briefly running the same trigger. Every
    event carries ``run_id``: a consumer that must not act twice de-duplicates on it.

    On Airflow 3.0 to 3.2 (no state store, no shared streams) the watermark lives in memory: after a
    restart the trigger starts afresh, so runs that ended while it was down do not fire (unless
    ``since`` is set, and then every run since then fires again).

    The first start fires nothing for runs that ended before it, unless ``since`` says from when.

    :param clarifai_conn_id: the Airflow connection; read in the triggerer, never serialized.
    :param user_id: the pipeline's user; else from ``config_lock_path`` or the connection.
    :param app_id: the pipeline's app; else from ``config_lock_path`` or the connection.
    :param pipeline_id: the pipeline; else from ``config_lock_path``.
    :param pipeline_version_id: the pipeline version; else from ``config_lock_path``.
    :param config_lock_path: the pipeline's ``config-lock.yaml``, read when the trigger is made (at DAG
        parse): give an absolute path, e.g. ``Path(__file__).parent / "config-lock.yaml"``.
    :param states: the end states that fire an event, by name (default ``["JOB_COMPLETED"]``).
    :param nodepool_id: only runs on this nodepool.
    :param compute_cluster_id: only runs on this compute cluster.
    :param poll_interval: seconds between two rounds.
    :param sweep_every: rounds between two sweeps of the ended runs.
    :param since: fire, at the first start, for runs that ended from this instant (ISO 8601 string or
        UNIX seconds; a fixed value, never ``now()``: the trigger's kwargs must not change between
        parses).
    :param request_timeout: deadline of each API call in seconds (default: the connection's).
    """

    #: Share one poll among the triggers of a version (Airflow 3.3+); tests turn it off.
    share_stream: bool = True

    def __init__(
        self,
        *,
        clarifai_conn_id: str = "clarifai_default",
        user_id: str | None = None,
        app_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        config_lock_path: str | None = None,
        states: Sequence[str] = DEFAULT_STATES,
        nodepool_id: str | None = None,
        compute_cluster_id: str | None = None,
        poll_interval: float = 60.0,
        sweep_every: int = 10,
        since: str | float | None = None,
        request_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.clarifai_conn_id = clarifai_conn_id
        given = {
            "user_id": user_id,
            "app_id": app_id,
            "pipeline_id": pipeline_id,
            "pipeline_version_id": pipeline_version_id,
        }
        if config_lock_path is not None:
            from_file = read_config_lock(config_lock_path)
            given = {
                name: value if value is not None else from_file.get(name) for name, value in given.items()
            }
        for name in ("pipeline_id", "pipeline_version_id"):
            if given[name] is None:
                raise ClarifaiConfigurationError(
                    f"ClarifaiPipelineRunEventTrigger needs {name}: pass it, or config_lock_path of the "
                    "pipeline's config-lock.yaml."
                )
        self.given_ids = {name: validate_optional_id(value, what=name) for name, value in given.items()}
        self.states = _parse_states(states)
        self.nodepool_id = validate_optional_id(nodepool_id, what="nodepool_id")
        self.compute_cluster_id = validate_optional_id(compute_cluster_id, what="compute_cluster_id")
        self.poll_interval = seconds("poll_interval", poll_interval)
        if isinstance(sweep_every, bool) or not isinstance(sweep_every, int) or not 1 <= sweep_every <= 1000:
            raise ClarifaiConfigurationError(
                f"sweep_every must be a whole number of rounds from 1 to 1000, got {quote(sweep_every)}."
            )
        self.sweep_every = sweep_every
        self.since = _parse_since(since)
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs, the same at every parse (the asset watcher's identity)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "clarifai_conn_id": self.clarifai_conn_id,
                **self.given_ids,
                "states": sorted(str(state) for state in self.states),
                "nodepool_id": self.nodepool_id,
                "compute_cluster_id": self.compute_cluster_id,
                "poll_interval": self.poll_interval,
                "sweep_every": self.sweep_every,
                "since": self.since,
                "request_timeout": self.request_timeout,
            },
        )

    def hook(self) -> ClarifaiHook:
        """A hook for this trigger's connection."""
        return ClarifaiHook(self.clarifai_conn_id, timeout=self.request_timeout)

    async def resolve_ids(self, hook: ClarifaiHook) -> PipelineVersionIds:
        """The pipeline version: the given ids, the user and app from the connection where not given.

        :param hook: the hook whose connection gives the defaults.
        """
        settings = await hook.aget_settings()
        given = dict(self.given_ids)
        given["user_id"] = given["user_id"] or settings.default_user_id
        given["app_id"] = given["app_id"] or settings.default_app_id
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ClarifaiConfigurationError(
                f"ClarifaiPipelineRunEventTrigger has no {' or '.join(missing)}: pass it to the trigger, or "
                f"set it in the extras of Airflow connection {self.clarifai_conn_id!r}."
            )
        return PipelineVersionIds(**given)  # type: ignore[arg-type]

    def shared_stream_key(self) -> Hashable | None:
        """Triggers of the same version, connection and cadence share one poll (Airflow 3.3+)."""
        if not (HAS_SHARED_STREAMS and self.share_stream):
            return None
        ids = tuple(self.given_ids[name] or "" for name in sorted(self.given_ids))
        return ("clarifai-run-ends", self.clarifai_conn_id, *ids, self.poll_interval, self.sweep_every)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> RunEndsProducer:
        """The group's poll, in ack mode: the watermark moves only past persisted events.

        :param kwargs: one trigger's kwargs.
        """
        return RunEndsProducer(kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """This trigger's events from the shared poll's rounds.

        :param shared_stream: the poll's :class:`RunBatch` es.
        """
        marks = await self._open_marks()
        # Joining a poll that is already going: its next round lists every ended run again for this one.
        _sweep_requests.add(self.shared_stream_key())
        async for batch in shared_stream:
            for event in await self._take(batch, marks):
                yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll on its own (Airflow 3.0 to 3.2, or sharing off): each round's events, then the next.

        Without ack mode a round counts as persisted once its events were taken by the triggerer.
        """
        marks = await self._open_marks()
        producer = RunEndsProducer(self.serialize()[1])
        async for batch, number in producer.open_stream():
            for event in await self._take(batch, marks):
                yield event
            producer.resolve(number, clean=True)

    async def _open_marks(self) -> RunMarks:
        key = "clarifai-run-ends/" + hashlib.sha256(repr(self.serialize()).encode()).hexdigest()[:16]
        slack = 2 * self.sweep_every * self.poll_interval + 600
        store = getattr(self, "asset_state_store", None)
        marks = RunMarks(store, key, slack=slack, since=self.since, log=self.log)
        await marks.load()
        return marks

    def _wants(self, run: PipelineRun) -> bool:
        if run.known_status not in self.states:
            return False
        if self.nodepool_id is not None and run.nodepool_id != self.nodepool_id:
            return False
        return self.compute_cluster_id is None or run.compute_cluster_id == self.compute_cluster_id

    async def _take(self, batch: RunBatch, marks: RunMarks) -> list[TriggerEvent]:
        await marks.confirm(batch.resolved)
        fire = await marks.judge(batch.number, batch.swept, [run for run in batch.runs if self._wants(run)])
        return [TriggerEvent(event_payload(run, batch.web_base_url)) for run in fire]


def event_payload(run: PipelineRun, web_base_url: str) -> dict[str, Any]:
    """What a DAG started by the event reads from the asset event's ``extra`` (plain JSON, no token).

    :param run: the ended run.
    :param web_base_url: base of the Clarifai web UI.
    """
    data = run.to_dict()
    duration = run.total_run_duration_seconds
    if duration is None and run.started_at is not None and run.ended_at is not None:
        duration = (run.ended_at - run.started_at).total_seconds()
    return {
        "run_id": run.run_id,
        "state": run.status_name,
        "user_id": run.user_id,
        "app_id": run.app_id,
        "pipeline_id": run.pipeline_id,
        "pipeline_version_id": run.pipeline_version_id,
        "nodepool_id": run.nodepool_id,
        "compute_cluster_id": run.compute_cluster_id,
        "created_at": data["created_at"],
        "started_at": data["started_at"],
        "ended_at": data["ended_at"],
        "duration_seconds": duration,
        "url": (
            f"{web_base_url}/{run.user_id}/{run.app_id}/pipelines/{run.pipeline_id}"
            f"/versions/{run.pipeline_version_id}/runs/{run.run_id}"
        ),
    }


def _order(run: PipelineRun) -> tuple[float, str]:
    return end_time(run), run.run_id


def _parse_states(states: Iterable[str] | str) -> frozenset[PipelineRunStatus]:
    if isinstance(states, str):
        raise ClarifaiConfigurationError(
            f"states must be a list of state names, got the string {quote(states)}: write [{states!r}]."
        )
    try:
        parsed = frozenset(PipelineRunStatus.parse(state) for state in states)
    except (TypeError, ValueError) as error:
        raise ClarifaiConfigurationError(f"states: {error}") from None
    if not parsed or not parsed <= ENDED:
        raise ClarifaiConfigurationError(
            f"states must name end states ({format_statuses(ENDED)}), got {quote(states)}: an event fires "
            "when a run reaches one of them."
        )
    return parsed


def _parse_since(since: object) -> str | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise ClarifaiConfigurationError(
                "since must be timezone-aware, e.g. datetime(2026, 1, 1, tzinfo=UTC)."
            )
        return since.astimezone(UTC).isoformat()
    if isinstance(since, int | float) and not isinstance(since, bool) and math.isfinite(since):
        return datetime.fromtimestamp(since, UTC).isoformat()
    if isinstance(since, str):
        try:
            parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC).isoformat()
    raise ClarifaiConfigurationError(
        f'since must be an ISO 8601 time with a zone ("2026-01-01T00:00:00Z"), UNIX seconds or an aware '
        f"datetime, got {quote(since)}."
    )
