"""The docs' state and transition tables say what status.py says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_clarifai.status import TERMINAL_STATUSES, PipelineRunStatus, RunAction

DOC = (Path(__file__).parents[1] / "docs" / "transitions.rst").read_text()


def table_rows(first_cell: str) -> list[str]:
    """Lines of the page's tables whose first cell is ``first_cell`` (continuation lines joined)."""
    rows, current = [], None
    for line in DOC.splitlines():
        if re.match(rf"^{re.escape(first_cell)}\s", line):
            current = [line]
            rows.append(current)
        elif current is not None and line.startswith(" ") and line.strip() and not line.startswith("="):
            current.append(line)
        else:
            current = None
    return [" ".join(part.strip() for part in row) for row in rows]


@pytest.mark.parametrize("status", list(PipelineRunStatus))
def test_state_table(status):
    (row,) = table_rows(status.value)
    terminal = row.split()[1]
    assert terminal == ("yes" if status in TERMINAL_STATUSES else "no")


@pytest.mark.parametrize("action", list(RunAction))
def test_transition_table(action):
    (row,) = table_rows(action.value)
    assert action.target_status.value in row
    for status in PipelineRunStatus:
        if status is action.target_status:
            continue
        assert (status.value in row) is action.allows(status), status
