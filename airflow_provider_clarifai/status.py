"""The one status model for Clarifai pipeline version runs.

A run's state is ``run.orchestration_status.status.code``, one of clarifai-grpc's ``JOB_*`` status
codes. This module names those states, says which are terminal, which count as success or failure, and
which transitions each action (pause, resume, cancel) allows. Operators, the sensor, the trigger, the
docs and the error messages all read these tables, so there is exactly one place to change them.

Importing this module is cheap on purpose (no protobuf): DAG files import it through the operators and
the sensor. The numeric codes are looked up by name from ``status_code_pb2`` on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from enum import StrEnum


class PipelineRunStatus(StrEnum):
    """State of a Clarifai pipeline version run.

    Each member's value is the name of its ``status_code_pb2`` code (``"JOB_RUNNING"``...).

    ``CONFLICT`` is not documented by Clarifai; it is treated as not terminal (a run in conflict can
    still be cancelled, and a sensor keeps waiting, bounded by its timeout). ``PAUSED`` is not terminal.
    """

    QUEUED = "JOB_QUEUED"
    RUNNING = "JOB_RUNNING"
    PAUSED = "JOB_PAUSED"
    CONFLICT = "JOB_CONFLICT"
    COMPLETED = "JOB_COMPLETED"
    FAILED = "JOB_FAILED"
    CANCELLED = "JOB_CANCELLED"
    UNEXPECTED_ERROR = "JOB_UNEXPECTED_ERROR"

    @property
    def code(self) -> int:
        """The numeric ``status_code_pb2`` code of this state (looked up by name)."""
        return _code_for_name(self.value)

    @property
    def is_terminal(self) -> bool:
        """Whether the run can no longer change state."""
        return self in TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        """Whether the run ended successfully."""
        return self in SUCCESS_STATUSES

    @property
    def is_failure(self) -> bool:
        """Whether the run ended without success."""
        return self in FAILURE_STATUSES

    @classmethod
    def from_code(cls, code: int) -> PipelineRunStatus:
        """Return the state for a numeric status code.

        :param code: ``run.orchestration_status.status.code``.
        :raises UnknownRunStatusError: the code is not a known run state. Callers fail closed on it.
        """
        name = _name_for_code(code)
        try:
            return cls(name or "")
        except ValueError:
            raise UnknownRunStatusError(code, name) from None

    @classmethod
    def parse(cls, value: PipelineRunStatus | str | int) -> PipelineRunStatus:
        """Accept a state given by member, name or code, the forms users write in DAG files.

        ``"RUNNING"``, ``"running"``, ``"JOB_RUNNING"`` and ``64001`` all give ``RUNNING``.

        :param value: the state to parse.
        :raises ValueError: the value names no run state; the message lists the valid names.
        """
        if isinstance(value, PipelineRunStatus):
            return value
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a pipeline run state; {_valid_names()}")
        if isinstance(value, int):
            try:
                return cls.from_code(value)
            except UnknownRunStatusError as err:
                raise ValueError(f"{err}; {_valid_names()}") from None
        if isinstance(value, str):
            name = value.strip().upper()
            if not name.startswith("JOB_"):
                name = "JOB_" + name
            try:
                return cls(name)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a pipeline run state; {_valid_names()}")


class UnknownRunStatusError(ValueError):
    """The service reported a run state code this provider does not know."""

    def __init__(self, code: int, name: str | None = None) -> None:
        self.code = code
        self.name = name
        label = f"{name} ({code})" if name else str(code)
        super().__init__(
            f"unknown pipeline run state {label}; treating it as a failure. A newer "
            "airflow-provider-clarifai may know it."
        )


TERMINAL_STATUSES: frozenset[PipelineRunStatus] = frozenset(
    {
        PipelineRunStatus.COMPLETED,
        PipelineRunStatus.FAILED,
        PipelineRunStatus.CANCELLED,
        PipelineRunStatus.UNEXPECTED_ERROR,
    }
)
SUCCESS_STATUSES: frozenset[PipelineRunStatus] = frozenset({PipelineRunStatus.COMPLETED})
FAILURE_STATUSES: frozenset[PipelineRunStatus] = TERMINAL_STATUSES - SUCCESS_STATUSES
ACTIVE_STATUSES: frozenset[PipelineRunStatus] = frozenset(PipelineRunStatus) - TERMINAL_STATUSES


class RunAction(StrEnum):
    """An action on a run: each sets one target state and is allowed only from some states.

    =======  ==============  =====================================================
    action   target state    allowed from
    =======  ==============  =====================================================
    pause    JOB_PAUSED      JOB_QUEUED, JOB_RUNNING
    resume   JOB_RUNNING     JOB_PAUSED
    cancel   JOB_CANCELLED   any non-terminal state (a cancelled run never resumes)
    =======  ==============  =====================================================
    """

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"

    @property
    def target_status(self) -> PipelineRunStatus:
        """The state the action asks the service to set."""
        return _TARGETS[self]

    @property
    def allowed_from(self) -> frozenset[PipelineRunStatus]:
        """The states the action is allowed from, as documented by Clarifai."""
        return ALLOWED_TRANSITIONS[self]

    def allows(self, status: PipelineRunStatus) -> bool:
        """Whether the action may be applied to a run in ``status``.

        :param status: the run's current state.
        """
        return status in ALLOWED_TRANSITIONS[self]

    def describe_allowed(self) -> str:
        """A sentence for messages and docs: ``"pause is allowed from JOB_QUEUED, JOB_RUNNING"``."""
        return f"{self.value} is allowed from {format_statuses(self.allowed_from)}"


_TARGETS: dict[RunAction, PipelineRunStatus] = {
    RunAction.PAUSE: PipelineRunStatus.PAUSED,
    RunAction.RESUME: PipelineRunStatus.RUNNING,
    RunAction.CANCEL: PipelineRunStatus.CANCELLED,
}

ALLOWED_TRANSITIONS: dict[RunAction, frozenset[PipelineRunStatus]] = {
    RunAction.PAUSE: frozenset({PipelineRunStatus.QUEUED, PipelineRunStatus.RUNNING}),
    RunAction.RESUME: frozenset({PipelineRunStatus.PAUSED}),
    RunAction.CANCEL: ACTIVE_STATUSES,
}


def parse_statuses(values: Iterable[PipelineRunStatus | str | int] | str) -> frozenset[PipelineRunStatus]:
    """Parse a collection of states (a single string counts as one state).

    :param values: states by member, name or code.
    :raises ValueError: one of them names no run state.
    """
    if isinstance(values, str | PipelineRunStatus):
        values = [values]
    return frozenset(PipelineRunStatus.parse(value) for value in values)


def format_statuses(statuses: Iterable[PipelineRunStatus]) -> str:
    """Names of ``statuses`` in lifecycle order, comma separated, for messages."""
    order = list(PipelineRunStatus)
    return ", ".join(status.value for status in sorted(set(statuses), key=order.index))


def _valid_names() -> str:
    return "valid states are " + format_statuses(PipelineRunStatus)


@functools.cache
def _status_code_enum():  # type: ignore[no-untyped-def]
    from clarifai_grpc.grpc.api.status import status_code_pb2

    return status_code_pb2.StatusCode


def _code_for_name(name: str) -> int:
    return int(_status_code_enum().Value(name))


def _name_for_code(code: int) -> str | None:
    try:
        return str(_status_code_enum().Name(code))
    except ValueError:
        return None


def status_code_name(code: int) -> str:
    """The ``status_code_pb2`` name of any Clarifai status code, or ``"UNKNOWN_CODE_<n>"``.

    :param code: a numeric Clarifai status code.
    """
    return _name_for_code(code) or f"UNKNOWN_CODE_{code}"


def status_code_value(name: str) -> int:
    """The numeric Clarifai status code for ``name`` (for example ``"SUCCESS"``).

    :param name: a ``status_code_pb2.StatusCode`` name.
    """
    return _code_for_name(name)
