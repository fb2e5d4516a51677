"""Scenario loading and validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.scenario import (
    DEFAULT_SCRIPT,
    FaultKind,
    RunScript,
    RunState,
    Scenario,
    ScenarioError,
    Scope,
    ScriptedLog,
    load_scenario,
)

VALID: dict[str, Any] = {
    "rate_limit_per_second": 5,
    "fault_seed": 3,
    "tokens": [
        {"token": "secret-1", "user_id": "u1"},
        {"token": "secret-2", "user_id": "u1", "scopes": ["read"]},
    ],
    "users": [
        {
            "id": "u1",
            "apps": [
                {
                    "id": "a1",
                    "pipelines": [
                        {
                            "id": "p1",
                            "versions": [
                                {
                                    "id": "v1",
                                    "post_script": {"queued_seconds": 2, "running_seconds": 30},
                                    "runs": [
                                        {
                                            "id": "r1",
                                            "status": "JOB_RUNNING",
                                            "script": {
                                                "running_seconds": None,
                                                "outcome": "JOB_FAILED",
                                                "logs": [{"at": 1, "message": "hi"}],
                                            },
                                        },
                                        {"id": "r2"},
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ],
    "faults": [{"method": "GetUser", "kind": "internal", "count": 1, "probability": 0.5}],
}


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    """VALID with the value at ``path`` replaced; a value of ``KeyError`` deletes the key."""
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


RUN0 = ["users", 0, "apps", 0, "pipelines", 0, "versions", 0, "runs", 0]


def test_valid_scenario_is_parsed() -> None:
    scenario = Scenario.from_dict(VALID)
    assert scenario.rate_limit_per_second == 5
    assert scenario.fault_seed == 3
    assert [token.scopes for token in scenario.tokens] == [frozenset(Scope), frozenset({Scope.READ})]
    version = scenario.users[0].apps[0].pipelines[0].versions[0]
    assert version.post_script == RunScript(queued_seconds=2, running_seconds=30)
    first, second = version.runs
    assert first.status is RunState.RUNNING
    assert first.script == RunScript(
        queued_seconds=1, running_seconds=None, outcome=RunState.FAILED, logs=(ScriptedLog(1, "hi"),)
    )
    assert (second.status, second.script) == (RunState.QUEUED, DEFAULT_SCRIPT)
    [fault] = scenario.faults
    assert (fault.kind, fault.method, fault.count, fault.probability) == (
        FaultKind.INTERNAL,
        "GetUser",
        1,
        0.5,
    )


@pytest.mark.parametrize(
    ("path", "value", "error_path", "message"),
    [
        (["colour"], "blue", "colour", "unknown key"),
        (["tokens"], KeyError, "tokens", "is required"),
        (["tokens"], [], "tokens", "at least one token"),
        (["tokens", 0, "user_id"], "ghost", "tokens[0].user_id", "unknown user 'ghost'"),
        (["tokens", 1, "token"], "secret-1", "tokens[1].token", "twice"),
        (["tokens", 1, "scopes"], ["admin"], "tokens[1].scopes", "unknown scope"),
        (["rate_limit_per_second"], -1, "rate_limit_per_second", "positive integer"),
        (["rate_limit_per_second"], "fast", "rate_limit_per_second", "positive integer"),
        (["fault_seed"], 1.5, "fault_seed", "integer"),
        (
            ["users", 0, "apps", 0, "pipelines", 0, "id"],
            KeyError,
            "users[0].apps[0].pipelines[0].id",
            "required",
        ),
        (["users", 0, "apps", 0, "id"], 7, "users[0].apps[0].id", "non-empty string"),
        (["users", 0, "apps"], {"id": "a1"}, "users[0].apps", "must be a list"),
        (
            [*RUN0, "status"],
            "JOB_DONE",
            "users[0].apps[0].pipelines[0].versions[0].runs[0].status",
            "JOB_DONE",
        ),
        ([*RUN0, "id"], "r2", "users[0].apps[0].pipelines[0].versions[0].runs[1].id", "duplicate id 'r2'"),
        (
            [*RUN0, "script", "outcome"],
            "JOB_CANCELLED",
            "users[0].apps[0].pipelines[0].versions[0].runs[0].script.outcome",
            "JOB_COMPLETED, JOB_FAILED, JOB_UNEXPECTED_ERROR",
        ),
        (
            [*RUN0, "script", "queued_seconds"],
            -2,
            "users[0].apps[0].pipelines[0].versions[0].runs[0].script.queued_seconds",
            ">= 0",
        ),
        (
            [*RUN0, "script", "running_seconds"],
            "long",
            "users[0].apps[0].pipelines[0].versions[0].runs[0].script.running_seconds",
            "or null",
        ),
        (
            [*RUN0, "script", "runing_seconds"],
            3,
            "users[0].apps[0].pipelines[0].versions[0].runs[0].script.runing_seconds",
            "unknown key",
        ),
        (
            [*RUN0, "script", "logs", 0, "message"],
            KeyError,
            "users[0].apps[0].pipelines[0].versions[0].runs[0].script.logs[0].message",
            "required",
        ),
        (["faults", 0, "kind"], "explode", "faults[0].kind", "unknown fault kind"),
        (["faults", 0, "kind"], KeyError, "faults[0].kind", "required"),
        (["faults", 0, "method"], "ListModels", "faults[0].method", "unknown method"),
        (["faults", 0, "count"], 0, "faults[0].count", "integer >= 1"),
        (["faults", 0, "count"], "once", "faults[0].count", "integer >= 1"),
        (["faults", 0, "probability"], 2, "faults[0].probability", "between 0 and 1"),
        (["faults", 0, "kind"], "latency", "faults[0]", "latency_seconds"),
    ],
)
def test_invalid_scenarios_name_the_bad_key(
    path: list[Any], value: Any, error_path: str, message: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        Scenario.from_dict(with_change(path, value))
    assert raised.value.path == error_path
    assert message in raised.value.message
    assert str(raised.value).startswith(f"{error_path}: ")


def test_root_must_be_a_mapping() -> None:
    with pytest.raises(ScenarioError, match="must be a mapping"):
        Scenario.from_yaml("- just\n- a list\n")


def test_duplicate_token_error_does_not_show_the_secret() -> None:
    with pytest.raises(ScenarioError) as raised:
        Scenario.from_dict(with_change(["tokens", 1, "token"], "secret-1"))
    assert "secret-1" not in str(raised.value)


def test_token_repr_hides_the_secret() -> None:
    assert "secret-1" not in repr(Scenario.from_dict(VALID).tokens)


@pytest.mark.parametrize("value", [0, None])
def test_rate_limit_can_be_turned_off(value: int | None) -> None:
    assert Scenario.from_dict(with_change(["rate_limit_per_second"], value)).rate_limit_per_second is None


def test_rate_limit_defaults_to_15() -> None:
    assert Scenario.from_dict(with_change(["rate_limit_per_second"], KeyError)).rate_limit_per_second == 15


def test_yaml_text() -> None:
    scenario = Scenario.from_yaml("tokens:\n  - {token: t, user_id: u}\nusers:\n  - id: u\n")
    assert scenario.tokens[0].user_id == "u"
    assert scenario.users[0].id == "u"


def test_yaml_syntax_error() -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        Scenario.from_yaml("tokens: [unclosed\n")


def test_yaml_file_by_path_and_by_string(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("tokens:\n  - {token: t, user_id: u}\nusers:\n  - id: u\n", encoding="utf-8")
    assert Scenario.from_yaml(path).source == str(path)
    assert Scenario.from_yaml(str(path)).tokens[0].token == "t"


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        Scenario.from_yaml(str(tmp_path / "missing.yaml"))


def test_bundled_default_scenario() -> None:
    scenario = Scenario.default()
    assert scenario.tokens[0].token == "emulator-pat-0123456789"
    assert scenario.rate_limit_per_second == 15
    assert [user.id for user in scenario.users] == ["demo-user", "other-user"]
    assert scenario == Scenario.bundled("default")


def test_no_run_of_the_default_scenario_ends_on_its_own() -> None:
    runs = [
        run
        for user in Scenario.default().users
        for app in user.apps
        for pipeline in app.pipelines
        for version in pipeline.versions
        for run in version.runs
    ]
    assert len(runs) == 15
    for run in runs:
        if run.status is RunState.QUEUED:
            assert run.script.queued_seconds is None, run.id
        if run.status in (RunState.QUEUED, RunState.RUNNING, RunState.PAUSED):
            assert run.script.running_seconds is None, run.id


def test_the_scripted_scenario_is_bundled_and_other_names_are_refused() -> None:
    scripted = Scenario.bundled("scripted")
    assert scripted.source == "scripted.yaml"
    assert scripted.versions() == Scenario.default().versions()
    with pytest.raises(ScenarioError, match="no bundled scenario 'nope'; use one of default, scripted"):
        Scenario.bundled("nope")


def test_a_null_queued_seconds_keeps_a_run_queued_until_changed() -> None:
    assert RunScript.from_dict({"queued_seconds": None}).queued_seconds is None
    assert RunScript.from_dict({}).queued_seconds == DEFAULT_SCRIPT.queued_seconds == 1


def test_load_scenario_accepts_every_form(tmp_path: Path) -> None:
    scenario = Scenario.from_dict(VALID)
    assert load_scenario(scenario) is scenario
    assert load_scenario(VALID) == scenario
    assert load_scenario(None) == Scenario.default()
    path = tmp_path / "s.yml"
    path.write_text("tokens: [{token: t, user_id: u}]\nusers: [{id: u}]\n", encoding="utf-8")
    assert load_scenario(path).tokens[0].token == "t"


def test_run_script_rejects_bad_values_directly() -> None:
    with pytest.raises(ValueError, match="outcome"):
        RunScript(outcome=RunState.CANCELLED)
    with pytest.raises(ValueError, match="running_seconds"):
        RunScript(running_seconds=-1)
