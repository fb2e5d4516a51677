"""Plain data the hook returns: runs, pipelines and their versions, the outcome of a status change, log
lines.

These are what tasks push to XCom and triggers put in events, so each has ``to_dict()`` returning
JSON-ready primitives. No protobuf here: the hook converts messages into these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_clarifai.status import PipelineRunStatus, UnknownRunStatusError


@dataclass(frozen=True)
class PipelineRun:
    """A snapshot of a pipeline version run.

    :param run_id: the run's id.
    :param status_code: the raw state code (``run.orchestration_status.status.code``).
    :param status_name: the state's code name (``JOB_RUNNING``), even when not a known run state.
    :param status_description: the service's description of the state.
    :param user_id: owner of the pipeline.
    :param app_id: app of the pipeline.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the pipeline version.
    :param created_at: when the run was created.
    :param modified_at: when it last changed.
    :param started_at: when it started running, if it has.
    :param ended_at: when it reached a terminal state, if it has.
    :param total_run_duration_seconds: running time, paused time excluded, if reported.
    :param input_args: the argument overrides the run was started with.
    :param nodepool_id: the nodepool it runs on, if reported.
    :param compute_cluster_id: the compute cluster of that nodepool, if reported.
    """

    run_id: str
    status_code: int
    status_name: str
    status_description: str = ""
    user_id: str = ""
    app_id: str = ""
    pipeline_id: str = ""
    pipeline_version_id: str = ""
    created_at: datetime | None = None
    modified_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    total_run_duration_seconds: float | None = None
    input_args: dict[str, str] = field(default_factory=dict)
    nodepool_id: str | None = None
    compute_cluster_id: str | None = None

    @property
    def status(self) -> PipelineRunStatus:
        """The run's state.

        :raises UnknownRunStatusError: the service reported a code this provider does not know;
            callers treat that as a failure.
        """
        return PipelineRunStatus.from_code(self.status_code)

    @property
    def known_status(self) -> PipelineRunStatus | None:
        """The run's state, or ``None`` when the code is unknown."""
        try:
            return self.status
        except UnknownRunStatusError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (times as ISO 8601 strings)."""
        return {
            "run_id": self.run_id,
            "status": self.status_name,
            "status_description": self.status_description,
            "user_id": self.user_id,
            "app_id": self.app_id,
            "pipeline_id": self.pipeline_id,
            "pipeline_version_id": self.pipeline_version_id,
            "created_at": _iso(self.created_at),
            "modified_at": _iso(self.modified_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "total_run_duration_seconds": self.total_run_duration_seconds,
            "input_args": dict(self.input_args),
            "nodepool_id": self.nodepool_id,
            "compute_cluster_id": self.compute_cluster_id,
        }


@dataclass(frozen=True)
class PipelineInfo:
    """A pipeline of an app, as ``ClarifaiHook.list_pipelines`` returns it.

    :param user_id: owner of the app.
    :param app_id: the app that holds the pipeline.
    :param pipeline_id: the pipeline.
    :param created_at: when it was created, if reported.
    """

    user_id: str
    app_id: str
    pipeline_id: str
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the time as an ISO 8601 string)."""
        return {
            "user_id": self.user_id,
            "app_id": self.app_id,
            "pipeline_id": self.pipeline_id,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class PipelineVersionInfo:
    """A version of a pipeline, as ``ClarifaiHook.list_pipeline_versions`` returns it.

    :param user_id: owner of the app.
    :param app_id: the app that holds the pipeline.
    :param pipeline_id: the pipeline.
    :param pipeline_version_id: the version.
    :param created_at: when it was created, if reported.
    """

    user_id: str
    app_id: str
    pipeline_id: str
    pipeline_version_id: str
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the time as an ISO 8601 string)."""
        return {
            "user_id": self.user_id,
            "app_id": self.app_id,
            "pipeline_id": self.pipeline_id,
            "pipeline_version_id": self.pipeline_version_id,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class RunStatusChange:
    """What became of one run in a pause, resume or cancel request.

    :param run_id: the run.
    :param target: the state that was asked for.
    :param applied: whether the run is now in ``target`` (also true when it already was, for example
        when a retried request had in fact been applied the first time).
    :param status_after: the run's state name after the request, when known.
    :param error_code_name: Clarifai's code name for why the run was not changed.
    :param error_description: Clarifai's description of why the run was not changed.
    """

    run_id: str
    target: PipelineRunStatus
    applied: bool
    status_after: str | None = None
    error_code_name: str | None = None
    error_description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "target": self.target.value,
            "applied": self.applied,
            "status_after": self.status_after,
            "error_code_name": self.error_code_name,
            "error_description": self.error_description,
        }


@dataclass(frozen=True)
class RunLogLine:
    """One line of a run's log.

    :param message: the raw message (often JSON with a ``msg`` key).
    :param url: the entry's url, its identity when present.
    """

    message: str
    url: str | None = None

    @property
    def text(self) -> str:
        """The human-readable text: the ``msg`` of a JSON line, else the message itself."""
        stripped = self.message.strip()
        if stripped.startswith("{"):
            try:
                decoded = json.loads(stripped)
            except ValueError:
                return self.message
            if isinstance(decoded, dict) and isinstance(decoded.get("msg"), str):
                return decoded["msg"]
        return self.message


@dataclass(frozen=True)
class RunLogCursor:
    """Where reading a run's log stopped, so the next read returns only new lines.

    Pages are read from 1 and the cursor moves past a page only once it is full; lines already
    returned from the current, partial page are remembered by identity (url, else content and
    occurrence), because log entries carry neither id nor timestamp.

    :param page: the page to read next.
    :param seen: identities of the lines already returned from ``page``.
    """

    page: int = 1
    seen: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for trigger kwargs."""
        return {"page": self.page, "seen": list(self.seen)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunLogCursor:
        """Inverse of :meth:`to_dict`; ``None`` gives the start of the log.

        :param data: a dict from :meth:`to_dict`.
        """
        if not data:
            return cls()
        return cls(page=int(data.get("page", 1)), seen=tuple(str(key) for key in data.get("seen", ())))


@dataclass(frozen=True)
class RunLogBatch:
    """New log lines and the cursor to pass next time.

    :param lines: lines not returned before, in log order.
    :param cursor: where to continue.
    """

    lines: list[RunLogLine]
    cursor: RunLogCursor


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
