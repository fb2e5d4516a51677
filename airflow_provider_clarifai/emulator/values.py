"""Plain values the backend's request methods take and return: runs to create or change, what a Patch
did to each run, and pages of log lines. No gRPC here: the servicer builds these from protobuf and
protobuf from these.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_clarifai.emulator.errors import ApiError
from airflow_provider_clarifai.emulator.lifecycle import RunSnapshot

__all__ = [
    "LogLine",
    "LogPage",
    "NewRun",
    "PatchOutcome",
    "PatchResult",
    "PipelineRecord",
    "RunChange",
    "VersionRecord",
]


@dataclass(frozen=True)
class LogLine:
    """One log entry: the message and a stable, unique url."""

    message: str
    url: str


@dataclass(frozen=True)
class LogPage:
    """A page of log entries, with the page number actually served and the page size."""

    entries: tuple[LogLine, ...]
    page: int
    per_page: int


@dataclass(frozen=True)
class NewRun:
    """A run to create.

    :param id: the run id; empty means the emulator picks a uuid4 hex.
    :param input_args: argo parameter overrides as (name, value) pairs.
    :param nodepool_id: the nodepool the run was sent to.
    :param compute_cluster_id: that nodepool's compute cluster.
    """

    id: str = ""
    input_args: tuple[tuple[str, str], ...] = ()
    nodepool_id: str = ""
    compute_cluster_id: str = ""


@dataclass(frozen=True)
class RunChange:
    """One entry of a Patch: the run and the status code name it should go to."""

    run_id: str
    target: str


@dataclass(frozen=True)
class PatchOutcome:
    """What happened to one requested run: either ``run`` (applied) or ``error`` (rejected, unchanged)."""

    run_id: str
    run: RunSnapshot | None = None
    error: ApiError | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.error is None):
            raise ValueError(f"the outcome of run {self.run_id!r} needs either the run or an error, not both")

    @property
    def applied(self) -> bool:
        """Whether the change was applied."""
        return self.error is None


@dataclass(frozen=True)
class PatchResult:
    """The outcome of a Patch: one entry per requested run, in request order, and the top-level status."""

    outcomes: tuple[PatchOutcome, ...]
    code: str
    description: str
    details: str = ""


@dataclass(frozen=True)
class PipelineRecord:
    """A pipeline, as ListPipelines serves it (``created_at`` in seconds since the epoch)."""

    user_id: str
    app_id: str
    pipeline_id: str
    created_at: float


@dataclass(frozen=True)
class VersionRecord:
    """A pipeline version, as ListPipelineVersions serves it (``created_at`` in seconds since the epoch)."""

    user_id: str
    app_id: str
    pipeline_id: str
    version_id: str
    created_at: float
