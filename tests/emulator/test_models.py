"""The emulator's backend, tested without gRPC on a ManualClock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.models import (
    BAD_REQUEST,
    CONN_DOES_NOT_EXIST,
    CONN_INSUFFICIENT_SCOPES,
    CONN_KEY_INVALID,
    CONN_THROTTLED,
    MIXED_STATUS,
    PIPELINE_INVALID_REQUEST,
    SUCCESS,
    ApiError,
    Backend,
    Faults,
    NewRun,
    RateLimiter,
    RequestLog,
    RequestRecord,
    RunChange,
    VersionRef,
)
from airflow_provider_clarifai.emulator.scenario import (
    FaultKind,
    FaultRule,
    RunScript,
    RunState,
    Scenario,
    Scope,
    ScriptedLog,
)

USER, APP, PIPELINE, VERSION = "alice", "app-1", "pipe-1", "v1"
REF = VersionRef(USER, APP, PIPELINE, VERSION)
T0 = 1_000_000.0
FOREVER = {"queued_seconds": 0, "running_seconds": None}
#: How long a test waits for threads to meet or finish: a guard against a hang, not a limit (they take
#: milliseconds), so a slow or busy machine never reaches it.
GUARD_SECONDS = 60

SCENARIO: dict[str, Any] = {
    "rate_limit_per_second": None,
    "tokens": [
        {"token": "tok-alice", "user_id": "alice"},
        {"token": "tok-alice-read", "user_id": "alice", "scopes": ["read"]},
        {"token": "tok-alice-write", "user_id": "alice", "scopes": ["write"]},
        {"token": "tok-bob", "user_id": "bob"},
    ],
    "users": [
        {
            "id": "alice",
            "apps": [
                {
                    "id": APP,
                    "pipelines": [
                        {
                            "id": PIPELINE,
                            "versions": [
                                {"id": VERSION},
                                {
                                    "id": "v-scripted",
                                    "post_script": {
                                        "queued_seconds": 3,
                                        "running_seconds": 7,
                                        "outcome": "JOB_FAILED",
                                    },
                                },
                            ],
                        }
                    ],
                }
            ],
        },
        {
            "id": "bob",
            "apps": [
                {
                    "id": "bob-app",
                    "pipelines": [
                        {"id": "bob-pipe", "versions": [{"id": "v1", "runs": [{"id": "bob-run"}]}]}
                    ],
                }
            ],
        },
    ],
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture
def backend(clock: ManualClock) -> Backend:
    return Backend(Scenario.from_dict(SCENARIO), clock=clock)


def seed(backend: Backend, run_id: str, status: str, script: Any = None) -> None:
    backend.add_run(USER, APP, PIPELINE, VERSION, run_id, status=status, script=script or FOREVER)


def patch(backend: Backend, *changes: tuple[str, str], action: str = "overwrite") -> Any:
    return backend.patch_runs(USER, REF, action, [RunChange(run_id, target) for run_id, target in changes])


def state(backend: Backend, run_id: str) -> str:
    return backend.run_status(USER, APP, PIPELINE, VERSION, run_id)


def test_models_do_not_import_grpc() -> None:
    code = (
        "import sys; import airflow_provider_clarifai.emulator.models; "
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'clarifai_grpc'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


class TestLifecycle:
    def test_posted_run_follows_its_script_at_exact_instants(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        backend.set_post_script(USER, APP, PIPELINE, VERSION, {"queued_seconds": 2, "running_seconds": 10})
        [posted] = backend.post_runs(USER, REF, [NewRun(id="r1")])
        assert posted.state is RunState.QUEUED
        assert posted.created_at == T0
        clock.advance(1.9)
        assert state(backend, "r1") == "JOB_QUEUED"
        clock.advance(0.1)
        assert state(backend, "r1") == "JOB_RUNNING"
        clock.advance(9.9)
        assert state(backend, "r1") == "JOB_RUNNING"
        clock.advance(0.1)
        run = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert run.state is RunState.COMPLETED
        assert (run.started_at, run.ended_at, run.active_seconds) == (T0 + 2, T0 + 12, 10)

    def test_transitions_are_computed_at_their_instants_even_when_read_late(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        backend.set_post_script(USER, APP, PIPELINE, VERSION, {"queued_seconds": 2, "running_seconds": 10})
        backend.post_runs(USER, REF, [NewRun(id="r1")])
        clock.advance(1000)
        run = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert (run.state, run.started_at, run.ended_at, run.modified_at) == (
            RunState.COMPLETED,
            T0 + 2,
            T0 + 12,
            T0 + 12,
        )
        assert run.active_seconds == 10

    @pytest.mark.parametrize("outcome", ["JOB_COMPLETED", "JOB_FAILED", "JOB_UNEXPECTED_ERROR"])
    def test_outcome_is_the_scripted_one(self, backend: Backend, clock: ManualClock, outcome: str) -> None:
        seed(backend, "r1", "JOB_QUEUED", {"queued_seconds": 0, "running_seconds": 1, "outcome": outcome})
        clock.advance(1)
        assert state(backend, "r1") == outcome

    def test_null_running_seconds_runs_until_acted_on(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        clock.advance(10**7)
        assert state(backend, "r1") == "JOB_RUNNING"

    def test_default_post_script_when_the_version_has_none(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        backend.post_runs(USER, REF, [NewRun(id="r1")])
        clock.advance(1)
        assert state(backend, "r1") == "JOB_RUNNING"
        clock.advance(5)
        assert state(backend, "r1") == "JOB_COMPLETED"

    def test_version_post_script_from_the_scenario(self, backend: Backend, clock: ManualClock) -> None:
        ref = VersionRef(USER, APP, PIPELINE, "v-scripted")
        backend.post_runs(USER, ref, [NewRun(id="r1")])
        clock.advance(9.99)
        assert backend.run_status(USER, APP, PIPELINE, "v-scripted", "r1") == "JOB_RUNNING"
        clock.advance(0.01)
        assert backend.run_status(USER, APP, PIPELINE, "v-scripted", "r1") == "JOB_FAILED"

    def test_set_post_script_applies_to_later_posts_only(self, backend: Backend, clock: ManualClock) -> None:
        backend.post_runs(USER, REF, [NewRun(id="before")])
        backend.set_post_script(
            USER, APP, PIPELINE, VERSION, RunScript(queued_seconds=0, running_seconds=None)
        )
        backend.post_runs(USER, REF, [NewRun(id="after")])
        clock.advance(3600)
        assert state(backend, "before") == "JOB_COMPLETED"
        assert state(backend, "after") == "JOB_RUNNING"
        backend.set_post_script(USER, APP, PIPELINE, VERSION, None)
        backend.post_runs(USER, REF, [NewRun(id="default-again")])
        clock.advance(6)
        assert state(backend, "default-again") == "JOB_COMPLETED"

    def test_zero_queued_seconds_is_running_in_the_post_response(self, backend: Backend) -> None:
        backend.set_post_script(USER, APP, PIPELINE, VERSION, {"queued_seconds": 0})
        [posted] = backend.post_runs(USER, REF, [NewRun(id="r1")])
        assert posted.state is RunState.RUNNING
        assert posted.started_at == T0

    def test_a_null_queued_seconds_stays_queued_until_a_client_acts(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        seed(backend, "held", "JOB_QUEUED", {"queued_seconds": None, "running_seconds": 10})
        clock.advance(10**6)
        assert state(backend, "held") == "JOB_QUEUED"
        assert patch(backend, ("held", "JOB_PAUSED")).code == SUCCESS
        assert patch(backend, ("held", "JOB_RUNNING")).code == SUCCESS
        clock.advance(10)
        assert state(backend, "held") == "JOB_COMPLETED"

    def test_set_run_state_ignores_the_patch_rules_and_the_run_goes_on_by_its_script(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        seed(backend, "r1", "JOB_QUEUED", {"queued_seconds": 5, "running_seconds": 10})
        forced = backend.set_run_state(USER, APP, PIPELINE, VERSION, "r1", "JOB_CONFLICT")
        assert (forced.state, forced.started_at, forced.ended_at) == (RunState.CONFLICT, None, None)
        clock.advance(100)
        assert state(backend, "r1") == "JOB_CONFLICT"
        backend.set_run_state(USER, APP, PIPELINE, VERSION, "r1", "JOB_QUEUED")
        clock.advance(5 + 10)
        done = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert (done.state, done.started_at, done.ended_at) == (RunState.COMPLETED, T0 + 105, T0 + 115)
        # Brought back from its end, it runs its running_seconds afresh.
        again = backend.set_run_state(USER, APP, PIPELINE, VERSION, "r1", "JOB_RUNNING")
        assert (again.ended_at, again.active_seconds, again.started_at) == (None, 0, T0 + 105)
        clock.advance(10)
        assert state(backend, "r1") == "JOB_COMPLETED"
        assert (
            backend.set_run_state(USER, APP, PIPELINE, VERSION, "r1", "JOB_COMPLETED").modified_at == T0 + 125
        )
        with pytest.raises(KeyError):
            backend.set_run_state(USER, APP, PIPELINE, VERSION, "nope", "JOB_FAILED")

    def test_paused_time_does_not_count_toward_running_seconds(
        self, backend: Backend, clock: ManualClock
    ) -> None:
        seed(backend, "r1", "JOB_QUEUED", {"queued_seconds": 0, "running_seconds": 10})
        clock.advance(4)
        assert patch(backend, ("r1", "JOB_PAUSED")).code == SUCCESS
        clock.advance(500)
        paused = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert (paused.state, paused.active_seconds, paused.modified_at) == (RunState.PAUSED, 4, T0 + 4)
        assert patch(backend, ("r1", "JOB_RUNNING")).code == SUCCESS
        clock.advance(5.9)
        assert state(backend, "r1") == "JOB_RUNNING"
        clock.advance(0.1)
        done = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert done.state is RunState.COMPLETED
        assert done.ended_at == T0 + 510
        assert done.active_seconds == pytest.approx(10)
        assert done.started_at == T0

    def test_run_paused_while_queued_resumes_to_running(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_QUEUED", {"queued_seconds": 60, "running_seconds": 5})
        clock.advance(10)
        patch(backend, ("r1", "JOB_PAUSED"))
        clock.advance(100)
        assert state(backend, "r1") == "JOB_PAUSED"
        result = patch(backend, ("r1", "JOB_RUNNING"))
        assert result.outcomes[0].run.state is RunState.RUNNING
        assert result.outcomes[0].run.started_at == T0 + 110
        clock.advance(5)
        assert state(backend, "r1") == "JOB_COMPLETED"

    def test_cancel_ends_the_run_and_keeps_active_time(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        clock.advance(7)
        result = patch(backend, ("r1", "JOB_CANCELLED"))
        run = result.outcomes[0].run
        assert (run.state, run.ended_at, run.active_seconds) == (RunState.CANCELLED, T0 + 7, 7)
        clock.advance(100)
        assert backend.run(USER, APP, PIPELINE, VERSION, "r1").active_seconds == 7

    @pytest.mark.parametrize(
        ("status", "started", "ended"),
        [
            ("JOB_QUEUED", False, False),
            ("JOB_RUNNING", True, False),
            ("JOB_PAUSED", True, False),
            ("JOB_COMPLETED", True, True),
            ("JOB_FAILED", True, True),
            ("JOB_UNEXPECTED_ERROR", True, True),
            ("JOB_CANCELLED", False, True),
            ("JOB_CONFLICT", False, False),
        ],
    )
    def test_seeded_states(self, backend: Backend, status: str, started: bool, ended: bool) -> None:
        seed(backend, "r1", status, {"queued_seconds": 5, "running_seconds": None})
        run = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        assert str(run.state) == status
        assert (run.started_at is not None, run.ended_at is not None) == (started, ended)

    def test_conflict_stays_until_cancelled(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_CONFLICT", {"queued_seconds": 0, "running_seconds": 1})
        clock.advance(1000)
        assert state(backend, "r1") == "JOB_CONFLICT"

    def test_scenario_runs_are_seeded(self, clock: ManualClock) -> None:
        backend = Backend(Scenario.default(), clock=clock)
        runs = {
            run.id: str(run.state)
            for run in backend.runs("demo-user", "pipelines-app", "nightly-training", "v1")
        }
        assert runs["run-running"] == "JOB_RUNNING"
        assert runs["run-paused"] == "JOB_PAUSED"
        assert runs["run-completed"] == "JOB_COMPLETED"
        assert runs["run-queued"] == "JOB_QUEUED"


ALL_STATES = [str(member) for member in RunState]
ALLOWED = {
    "JOB_PAUSED": {"JOB_QUEUED", "JOB_RUNNING"},
    "JOB_RUNNING": {"JOB_PAUSED"},
    "JOB_CANCELLED": {"JOB_QUEUED", "JOB_RUNNING", "JOB_PAUSED", "JOB_CONFLICT"},
}
VERBS = {"JOB_PAUSED": "pause", "JOB_RUNNING": "resume", "JOB_CANCELLED": "cancel"}


class TestPatchTransitions:
    @pytest.mark.parametrize(
        ("initial", "target"),
        [(initial, target) for target in ALLOWED for initial in ALL_STATES if initial in ALLOWED[target]],
    )
    def test_allowed_transition_is_applied(self, backend: Backend, initial: str, target: str) -> None:
        seed(backend, "r1", initial, {"queued_seconds": 60, "running_seconds": None})
        result = patch(backend, ("r1", target))
        assert result.code == SUCCESS
        [outcome] = result.outcomes
        assert outcome.applied
        assert str(outcome.run.state) == target
        assert state(backend, "r1") == target

    @pytest.mark.parametrize(
        ("initial", "target"),
        [(initial, target) for target in ALLOWED for initial in ALL_STATES if initial not in ALLOWED[target]],
    )
    def test_forbidden_transition_is_rejected_and_changes_nothing(
        self, backend: Backend, initial: str, target: str
    ) -> None:
        seed(backend, "r1", initial, {"queued_seconds": 60, "running_seconds": None})
        before = backend.run(USER, APP, PIPELINE, VERSION, "r1")
        lines_before = backend.log_messages(USER, APP, PIPELINE, VERSION, "r1")
        result = patch(backend, ("r1", target))
        [outcome] = result.outcomes
        assert not outcome.applied
        assert outcome.error.code == PIPELINE_INVALID_REQUEST
        verb = VERBS[target]
        assert outcome.error.description.startswith(
            f"cannot {verb} run r1: it is {initial}; {verb} is allowed from "
        )
        assert (result.code, result.description) == (PIPELINE_INVALID_REQUEST, outcome.error.description)
        assert backend.run(USER, APP, PIPELINE, VERSION, "r1") == before
        assert backend.log_messages(USER, APP, PIPELINE, VERSION, "r1") == lines_before

    def test_pause_message_lists_the_allowed_states(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_COMPLETED")
        result = patch(backend, ("r1", "JOB_PAUSED"))
        assert result.description == (
            "cannot pause run r1: it is JOB_COMPLETED; pause is allowed from JOB_QUEUED, JOB_RUNNING"
        )

    @pytest.mark.parametrize("target", ["JOB_COMPLETED", "JOB_QUEUED", "ZERO", "SUCCESS", "12345"])
    def test_unsupported_target_is_rejected(self, backend: Backend, target: str) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        result = patch(backend, ("r1", target))
        assert result.code == PIPELINE_INVALID_REQUEST
        assert result.outcomes[0].error.description == f"unsupported target status {target} for run r1"
        assert state(backend, "r1") == "JOB_RUNNING"

    @pytest.mark.parametrize("action", ["merge", "remove", "", "OVERWRITE"])
    def test_other_actions_are_rejected_per_run(self, backend: Backend, action: str) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        seed(backend, "r2", "JOB_RUNNING")
        result = patch(backend, ("r1", "JOB_PAUSED"), ("r2", "JOB_PAUSED"), action=action)
        assert [outcome.error.code for outcome in result.outcomes] == [PIPELINE_INVALID_REQUEST] * 2
        assert result.code == PIPELINE_INVALID_REQUEST
        assert "not supported" in result.description
        assert state(backend, "r1") == state(backend, "r2") == "JOB_RUNNING"


class TestPatchBatches:
    def test_mixed_outcomes_in_request_order(self, backend: Backend) -> None:
        seed(backend, "running", "JOB_RUNNING")
        seed(backend, "done", "JOB_COMPLETED")
        result = patch(backend, ("done", "JOB_PAUSED"), ("running", "JOB_PAUSED"), ("ghost", "JOB_PAUSED"))
        assert result.code == MIXED_STATUS
        assert result.description == "1 of 3 runs changed"
        assert [outcome.run_id for outcome in result.outcomes] == ["done", "running", "ghost"]
        assert [outcome.applied for outcome in result.outcomes] == [False, True, False]
        assert result.outcomes[0].error.code == PIPELINE_INVALID_REQUEST
        assert result.outcomes[2].error.code == CONN_DOES_NOT_EXIST
        assert "ghost" in result.outcomes[2].error.description
        assert state(backend, "running") == "JOB_PAUSED"
        assert state(backend, "done") == "JOB_COMPLETED"

    def test_all_applied_is_success(self, backend: Backend) -> None:
        seed(backend, "a", "JOB_RUNNING")
        seed(backend, "b", "JOB_QUEUED")
        result = patch(backend, ("a", "JOB_CANCELLED"), ("b", "JOB_CANCELLED"))
        assert result.code == SUCCESS
        assert [str(outcome.run.state) for outcome in result.outcomes] == ["JOB_CANCELLED"] * 2

    def test_all_rejected_for_one_reason_answers_that_reason(self, backend: Backend) -> None:
        result = patch(backend, ("ghost-1", "JOB_CANCELLED"), ("ghost-2", "JOB_CANCELLED"))
        assert result.code == CONN_DOES_NOT_EXIST
        assert "ghost-1" in result.description

    def test_all_rejected_for_different_reasons_is_mixed(self, backend: Backend) -> None:
        seed(backend, "done", "JOB_COMPLETED")
        result = patch(backend, ("done", "JOB_CANCELLED"), ("ghost", "JOB_CANCELLED"))
        assert result.code == MIXED_STATUS
        assert result.description == "0 of 2 runs changed"

    def test_duplicate_run_is_applied_once(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        result = patch(backend, ("r1", "JOB_PAUSED"), ("r1", "JOB_PAUSED"))
        assert result.code == MIXED_STATUS
        assert result.outcomes[0].applied
        assert result.outcomes[1].error.code == PIPELINE_INVALID_REQUEST
        assert "more than once" in result.outcomes[1].error.description
        messages = backend.log_messages(USER, APP, PIPELINE, VERSION, "r1")
        assert sum("entered JOB_PAUSED" in message for message in messages) == 1

    def test_run_without_id_is_rejected(self, backend: Backend) -> None:
        result = patch(backend, ("", "JOB_PAUSED"))
        assert result.code == PIPELINE_INVALID_REQUEST
        assert result.outcomes[0].run_id == ""

    def test_empty_batch_is_an_invalid_request(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            patch(backend)
        assert raised.value.code == PIPELINE_INVALID_REQUEST

    def test_concurrent_cancels_apply_exactly_once(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_RUNNING")
        results: list[Any] = []
        barrier = threading.Barrier(16)

        def cancel() -> None:
            barrier.wait(timeout=GUARD_SECONDS)
            results.append(patch(backend, ("r1", "JOB_CANCELLED")))

        threads = [threading.Thread(target=cancel) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=GUARD_SECONDS)
        assert sorted(result.code for result in results) == [PIPELINE_INVALID_REQUEST] * 15 + [SUCCESS]


class TestPostGetList:
    def test_post_keeps_the_client_id_and_echoes_inputs(self, backend: Backend) -> None:
        new = NewRun(id="mine", input_args=(("epochs", "3"),), nodepool_id="np-1", compute_cluster_id="cc-1")
        [run] = backend.post_runs(USER, REF, [new])
        assert (run.id, run.input_args, run.nodepool_id, run.compute_cluster_id) == (
            "mine",
            (("epochs", "3"),),
            "np-1",
            "cc-1",
        )
        assert (run.user_id, run.app_id, run.pipeline_id, run.pipeline_version_id) == (
            USER,
            APP,
            PIPELINE,
            VERSION,
        )
        assert backend.get_run(USER, REF, "mine").input_args == (("epochs", "3"),)

    def test_post_without_id_gets_a_uuid4_hex(self, backend: Backend) -> None:
        [first, second] = backend.post_runs(USER, REF, [NewRun(), NewRun()])
        assert len(first.id) == 32
        assert int(first.id, 16) >= 0
        assert first.id != second.id

    def test_post_of_an_existing_id_creates_nothing(self, backend: Backend) -> None:
        backend.post_runs(USER, REF, [NewRun(id="taken")])
        with pytest.raises(ApiError) as raised:
            backend.post_runs(USER, REF, [NewRun(id="fresh"), NewRun(id="taken")])
        assert raised.value.code == PIPELINE_INVALID_REQUEST
        assert raised.value.description == "pipeline version run 'taken' already exists"
        assert [run.id for run in backend.runs(USER, APP, PIPELINE, VERSION)] == ["taken"]

    def test_post_with_the_same_id_twice_creates_nothing(self, backend: Backend) -> None:
        with pytest.raises(ApiError, match="already exists"):
            backend.post_runs(USER, REF, [NewRun(id="twice"), NewRun(id="twice")])
        assert backend.runs(USER, APP, PIPELINE, VERSION) == []

    def test_post_without_runs_is_invalid(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            backend.post_runs(USER, REF, [])
        assert raised.value.code == PIPELINE_INVALID_REQUEST

    def test_get_of_an_unknown_run(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            backend.get_run(USER, REF, "nope")
        assert raised.value.code == CONN_DOES_NOT_EXIST
        assert "'nope'" in raised.value.description

    @pytest.mark.parametrize(
        ("ref", "named"),
        [
            (VersionRef("carol", APP, PIPELINE, VERSION), "user 'carol'"),
            (VersionRef(USER, "other-app", PIPELINE, VERSION), "app 'other-app'"),
            (VersionRef(USER, APP, "other-pipe", VERSION), "pipeline 'other-pipe'"),
            (VersionRef(USER, APP, PIPELINE, "v9"), "pipeline version 'v9'"),
        ],
    )
    def test_unknown_ids_are_named(self, backend: Backend, ref: VersionRef, named: str) -> None:
        for call in (
            lambda: backend.get_run(USER, ref, "r1"),
            lambda: backend.list_runs(USER, ref),
            lambda: backend.post_runs(USER, ref, [NewRun()]),
            lambda: backend.patch_runs(USER, ref, "overwrite", [RunChange("r1", "JOB_PAUSED")]),
            lambda: backend.list_logs(USER, ref, "r1"),
        ):
            with pytest.raises(ApiError) as raised:
                call()
            assert raised.value.code == CONN_DOES_NOT_EXIST
            assert named in raised.value.description

    def test_another_users_resources_look_missing(self, backend: Backend) -> None:
        bob_ref = VersionRef("bob", "bob-app", "bob-pipe", "v1")
        with pytest.raises(ApiError) as existing:
            backend.get_run("alice", bob_ref, "bob-run")
        with pytest.raises(ApiError) as missing:
            backend.get_run("alice", VersionRef("nobody", "bob-app", "bob-pipe", "v1"), "bob-run")
        assert existing.value.code == missing.value.code == CONN_DOES_NOT_EXIST
        assert existing.value.description == "user 'bob' not found"
        assert missing.value.description == "user 'nobody' not found"
        assert backend.get_run("bob", bob_ref, "bob-run").id == "bob-run"

    def test_me_means_the_caller(self, backend: Backend) -> None:
        backend.post_runs(USER, VersionRef("me", APP, PIPELINE, VERSION), [NewRun(id="r1")])
        run = backend.get_run(USER, VersionRef("me", APP, PIPELINE, VERSION), "r1")
        assert run.user_id == USER

    @pytest.mark.parametrize(
        ("ref", "run_id", "missing"),
        [
            (VersionRef("", APP, PIPELINE, VERSION), "r1", "user_app_id.user_id"),
            (VersionRef(USER, "", PIPELINE, VERSION), "r1", "user_app_id.app_id"),
            (VersionRef(USER, APP, "", VERSION), "r1", "pipeline_id"),
            (VersionRef(USER, APP, PIPELINE, ""), "r1", "pipeline_version_id"),
            (REF, "", "pipeline_version_run_id"),
            (VersionRef("", "", PIPELINE, VERSION), "r1", "user_app_id.user_id, user_app_id.app_id"),
        ],
    )
    def test_missing_ids_are_invalid_requests(
        self, backend: Backend, ref: VersionRef, run_id: str, missing: str
    ) -> None:
        with pytest.raises(ApiError) as raised:
            backend.get_run(USER, ref, run_id)
        assert raised.value.code == PIPELINE_INVALID_REQUEST
        assert raised.value.description == f"missing required ids: {missing}"

    def test_list_is_newest_first_with_ties_by_id(self, backend: Backend, clock: ManualClock) -> None:
        backend.post_runs(USER, REF, [NewRun(id="b"), NewRun(id="a")])
        clock.advance(1)
        backend.post_runs(USER, REF, [NewRun(id="c")])
        assert [run.id for run in backend.list_runs(USER, REF)] == ["c", "a", "b"]

    def test_list_pages(self, backend: Backend, clock: ManualClock) -> None:
        for number in range(5):
            backend.post_runs(USER, REF, [NewRun(id=f"r{number}")])
            clock.advance(1)

        def ids(**kwargs: Any) -> list[str]:
            return [run.id for run in backend.list_runs(USER, REF, **kwargs)]

        assert ids(page=1, per_page=2) == ["r4", "r3"]
        assert ids(page=0, per_page=2) == ["r4", "r3"]
        assert ids(page=3, per_page=2) == ["r0"]
        assert ids(page=4, per_page=2) == []
        assert ids(page=0, per_page=0) == ["r4", "r3", "r2", "r1", "r0"]

    def test_list_page_size_defaults_to_128_and_is_capped_at_1000(self, backend: Backend) -> None:
        backend.post_runs(USER, REF, [NewRun(id=f"r{number:04}") for number in range(1001)])
        assert len(backend.list_runs(USER, REF)) == 128
        assert len(backend.list_runs(USER, REF, per_page=5000)) == 1000
        assert len(backend.list_runs(USER, REF, page=2, per_page=1000)) == 1

    def test_list_filters_by_status_after_advancing(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "forever", "JOB_RUNNING")
        seed(backend, "short", "JOB_RUNNING", {"running_seconds": 1})
        clock.advance(2)
        running = backend.list_runs(USER, REF, statuses=["JOB_RUNNING"])
        assert [run.id for run in running] == ["forever"]
        finished = backend.list_runs(USER, REF, statuses=["JOB_COMPLETED", "JOB_FAILED"])
        assert [run.id for run in finished] == ["short"]

    def test_list_filters_by_nodepool_and_cluster(self, backend: Backend) -> None:
        backend.post_runs(
            USER,
            REF,
            [
                NewRun(id="a", nodepool_id="np-1", compute_cluster_id="cc-1"),
                NewRun(id="b", nodepool_id="np-2", compute_cluster_id="cc-1"),
                NewRun(id="c"),
            ],
        )
        assert [run.id for run in backend.list_runs(USER, REF, nodepool_id="np-2")] == ["b"]
        assert [run.id for run in backend.list_runs(USER, REF, compute_cluster_id="cc-1")] == ["a", "b"]


class TestLogs:
    SCRIPT: dict[str, Any] = {
        "queued_seconds": 1,
        "running_seconds": 10,
        "logs": [
            {"at": 5, "message": "halfway"},
            {"at": 0, "message": "started work"},
            {"at": 10, "message": "last step"},
            {"at": 11, "message": "never shown"},
        ],
    }

    def messages(self, backend: Backend) -> list[str]:
        return [line.message for line in backend.list_logs(USER, REF, "r1", page=1, per_page=100).entries]

    def test_state_changes_and_scripted_lines_in_order(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_QUEUED", self.SCRIPT)
        assert [json.loads(message)["msg"] for message in self.messages(backend)] == [
            "run entered JOB_QUEUED"
        ]
        clock.advance(6)  # 1 s queued, 5 s running
        assert self.messages(backend)[1:] == [
            json.dumps({"msg": "run entered JOB_RUNNING", "status": "JOB_RUNNING"}),
            "started work",
            "halfway",
        ]
        clock.advance(100)
        assert self.messages(backend)[-2:] == [
            "last step",
            json.dumps({"msg": "run entered JOB_COMPLETED", "status": "JOB_COMPLETED"}),
        ]
        assert "never shown" not in self.messages(backend)

    def test_scripted_lines_wait_while_paused(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_QUEUED", self.SCRIPT)
        clock.advance(3)  # 2 s of active running
        patch(backend, ("r1", "JOB_PAUSED"))
        clock.advance(100)
        assert "halfway" not in self.messages(backend)
        patch(backend, ("r1", "JOB_RUNNING"))
        clock.advance(2.9)
        assert "halfway" not in self.messages(backend)
        clock.advance(0.1)
        assert "halfway" in self.messages(backend)

    def test_omitted_page_serves_the_last_page(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_QUEUED", self.SCRIPT)
        clock.advance(100)  # queued, running, 3 scripted lines, completed: 6 lines
        last = backend.list_logs(USER, REF, "r1", per_page=4)
        assert (last.page, last.per_page, len(last.entries)) == (2, 4, 2)
        assert last.entries[-1].url.endswith("/r1/6")
        first = backend.list_logs(USER, REF, "r1", page=1, per_page=4)
        assert (first.page, len(first.entries)) == (1, 4)
        assert backend.list_logs(USER, REF, "r1", page=3, per_page=4).entries == ()

    def test_page_size_defaults_to_32(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_QUEUED", {"queued_seconds": 5})
        page = backend.list_logs(USER, REF, "r1")
        assert (page.page, page.per_page, len(page.entries)) == (1, 32, 1)

    def test_urls_are_unique_and_stable(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "r1", "JOB_QUEUED", self.SCRIPT)
        clock.advance(3)
        early = backend.list_logs(USER, REF, "r1", page=1, per_page=100).entries
        clock.advance(100)
        late = backend.list_logs(USER, REF, "r1", page=1, per_page=100).entries
        assert late[: len(early)] == early
        assert len({line.url for line in late}) == len(late)
        assert early[0].url == f"emulator://logs/{USER}/{APP}/{PIPELINE}/{VERSION}/r1/1"

    def test_other_log_types_are_bad_requests(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_QUEUED")
        with pytest.raises(ApiError) as raised:
            backend.list_logs(USER, REF, "r1", log_type="model.version")
        assert raised.value.code == BAD_REQUEST

    def test_unknown_run(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            backend.list_logs(USER, REF, "nope")
        assert raised.value.code == CONN_DOES_NOT_EXIST


class TestAuth:
    @pytest.mark.parametrize("token", [None, "", "tok-unknown"])
    def test_unknown_or_missing_token(self, backend: Backend, token: str | None) -> None:
        with pytest.raises(ApiError) as raised:
            backend.authorize(token, Scope.READ)
        assert raised.value.code == CONN_KEY_INVALID
        assert "tok-unknown" not in raised.value.description + raised.value.details

    def test_scopes(self, backend: Backend) -> None:
        assert backend.authorize("tok-alice-read", Scope.READ) == "alice"
        assert backend.authorize("tok-alice-write", Scope.WRITE) == "alice"
        for token, scope in (("tok-alice-read", Scope.WRITE), ("tok-alice-write", Scope.READ)):
            with pytest.raises(ApiError) as raised:
                backend.authorize(token, scope)
            assert raised.value.code == CONN_INSUFFICIENT_SCOPES
            assert f"'{scope}'" in raised.value.details

    def test_both_scopes_by_default(self, backend: Backend) -> None:
        assert (
            backend.authorize("tok-alice", Scope.WRITE)
            == backend.authorize("tok-alice", Scope.READ)
            == "alice"
        )

    def test_known_token(self, backend: Backend) -> None:
        assert backend.is_known_token("tok-bob")
        assert not backend.is_known_token("tok-nope")
        assert not backend.is_known_token(None)

    @pytest.mark.parametrize("user_id", ["me", "alice"])
    def test_get_user_for_the_caller(self, backend: Backend, user_id: str) -> None:
        assert backend.get_user("alice", user_id) == "alice"

    def test_get_user_of_someone_else(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            backend.get_user("alice", "bob")
        assert raised.value.code == CONN_DOES_NOT_EXIST

    def test_get_user_without_id(self, backend: Backend) -> None:
        with pytest.raises(ApiError) as raised:
            backend.get_user("alice", "")
        assert raised.value.code == BAD_REQUEST


class TestRateLimit:
    def test_sliding_one_second_window(self) -> None:
        clock = ManualClock(start=0)
        limiter = RateLimiter(3, clock)
        assert [limiter.allow("t") for _ in range(4)] == [True, True, True, False]
        clock.advance(0.5)
        assert limiter.allow("t") is False
        clock.advance(0.5)  # the first three leave the window together
        assert [limiter.allow("t") for _ in range(4)] == [True, True, True, False]

    def test_window_slides_rather_than_resetting(self) -> None:
        clock = ManualClock(start=0)
        limiter = RateLimiter(2, clock)
        assert limiter.allow("t")
        clock.advance(0.6)
        assert limiter.allow("t")
        clock.advance(0.6)  # t=1.2: only the request at 0.6 is still in the window
        assert limiter.allow("t")
        assert not limiter.allow("t")

    def test_rejected_requests_do_not_count(self) -> None:
        clock = ManualClock(start=0)
        limiter = RateLimiter(1, clock)
        assert limiter.allow("t")
        for _ in range(3):
            clock.advance(0.25)
            assert not limiter.allow("t")
        clock.advance(0.25)  # one second after the only accepted request
        assert limiter.allow("t")

    def test_per_key(self) -> None:
        limiter = RateLimiter(1, ManualClock(start=0))
        assert limiter.allow("a")
        assert limiter.allow("b")
        assert not limiter.allow("a")

    @pytest.mark.parametrize("limit", [None, 0])
    def test_off(self, limit: int | None) -> None:
        limiter = RateLimiter(limit, ManualClock(start=0))
        assert all(limiter.allow("t") for _ in range(1000))

    def test_backend_throttles_per_token_with_the_real_wording(self, clock: ManualClock) -> None:
        rate_clock = ManualClock(start=0)
        scenario = Scenario.from_dict({**SCENARIO, "rate_limit_per_second": 15})
        backend = Backend(scenario, clock=clock, rate_limit_clock=rate_clock)
        for _ in range(15):
            backend.authorize("tok-alice", Scope.READ)
        with pytest.raises(ApiError) as raised:
            backend.authorize("tok-alice", Scope.READ)
        assert (raised.value.code, raised.value.description) == (
            CONN_THROTTLED,
            "exceeded limit of 15 requests per second",
        )
        assert backend.authorize("tok-bob", Scope.READ) == "bob"
        rate_clock.advance(1)
        assert backend.authorize("tok-alice", Scope.READ) == "alice"

    def test_set_rate_limit(self, clock: ManualClock) -> None:
        backend = Backend(Scenario.from_dict(SCENARIO), clock=clock, rate_limit_clock=ManualClock(start=0))
        assert backend.rate_limit_per_second is None
        backend.set_rate_limit(1)
        backend.authorize("tok-alice", Scope.READ)
        with pytest.raises(ApiError, match="exceeded limit of 1 requests per second"):
            backend.authorize("tok-alice", Scope.READ)
        backend.set_rate_limit(0)
        backend.authorize("tok-alice", Scope.READ)


class TestHelpers:
    def test_unknown_ids_raise_key_error(self, backend: Backend) -> None:
        with pytest.raises(KeyError, match="nope"):
            backend.run_status(USER, APP, PIPELINE, VERSION, "nope")
        with pytest.raises(KeyError, match="v9"):
            backend.set_post_script(USER, APP, PIPELINE, "v9", None)
        with pytest.raises(KeyError, match="v9"):
            backend.runs(USER, APP, PIPELINE, "v9")

    def test_add_run_refuses_an_existing_id(self, backend: Backend) -> None:
        seed(backend, "r1", "JOB_QUEUED")
        with pytest.raises(ValueError, match="already exists"):
            seed(backend, "r1", "JOB_QUEUED")

    def test_runs_are_newest_first(self, backend: Backend, clock: ManualClock) -> None:
        seed(backend, "old", "JOB_QUEUED")
        clock.advance(1)
        seed(backend, "new", "JOB_QUEUED")
        assert [run.id for run in backend.runs(USER, APP, PIPELINE, VERSION)] == ["new", "old"]


class TestFaults:
    def test_count_limits_firings(self) -> None:
        faults = Faults()
        faults.add(kind="unavailable", method="GetUser", count=2)
        assert [faults.pick("GetUser") is not None for _ in range(3)] == [True, True, False]
        assert faults.rules == []

    def test_unlimited_by_default_and_method_matching(self) -> None:
        faults = Faults()
        rule = faults.add(kind=FaultKind.INTERNAL, method="GetPipelineVersionRun")
        assert faults.pick("GetUser") is None
        assert all(faults.pick("GetPipelineVersionRun") == rule for _ in range(50))

    def test_star_matches_every_method(self) -> None:
        faults = Faults([FaultRule(kind=FaultKind.THROTTLE)])
        assert faults.pick("GetUser") is not None
        assert faults.pick("PatchPipelineVersionRuns") is not None

    def test_first_matching_rule_wins(self) -> None:
        faults = Faults()
        first = faults.add(kind="latency", latency_seconds=0.1, count=1)
        second = faults.add(kind="internal", method="GetUser")
        assert faults.pick("GetUser") == first
        assert faults.pick("GetUser") == second

    def test_probability_is_reproducible_with_a_seed(self) -> None:
        def draws(seed: int) -> list[bool]:
            faults = Faults(seed=seed)
            faults.add(kind="internal", probability=0.5)
            return [faults.pick("GetUser") is not None for _ in range(64)]

        assert draws(7) == draws(7)
        assert 10 < sum(draws(7)) < 54
        assert draws(7) != draws(8)

    def test_probability_zero_never_fires(self) -> None:
        faults = Faults()
        faults.add(kind="internal", probability=0.0, count=1)
        assert all(faults.pick("GetUser") is None for _ in range(100))

    def test_clear(self) -> None:
        faults = Faults()
        faults.add(kind="internal")
        faults.clear()
        assert faults.pick("GetUser") is None

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"kind": "explode"}, "unknown fault kind"),
            ({"kind": "internal", "method": "ListModels"}, "unknown method"),
            ({"kind": "internal", "count": 0}, "count"),
            ({"kind": "internal", "probability": 1.5}, "probability"),
            ({"kind": "latency"}, "latency_seconds"),
        ],
    )
    def test_invalid_rules(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Faults().add(**kwargs)


class TestRequestLog:
    def record(self, method: str = "GetUser") -> RequestRecord:
        return RequestRecord(method, True, None, SUCCESS, "OK", "emu-1")

    def test_list_like(self) -> None:
        requests = RequestLog()
        requests.append(self.record("GetUser"))
        requests.append(self.record("PostPipelineVersionRuns"))
        assert len(requests) == 2
        assert requests[1].method == "PostPipelineVersionRuns"
        assert [record.method for record in requests] == ["GetUser", "PostPipelineVersionRuns"]
        assert requests.count("GetUser") == 1
        assert requests.count() == 2
        requests.clear()
        assert len(requests) == 0

    def test_wait_for_wakes_on_append(self) -> None:
        requests = RequestLog()
        timer = threading.Timer(0.05, requests.append, args=(self.record(),))
        timer.start()
        # Returns on the append; the timeout is a guard, reached only if the append never woke it.
        assert requests.wait_for(lambda records: len(records) == 1, timeout=GUARD_SECONDS)
        timer.join()

    def test_wait_for_times_out(self) -> None:
        assert not RequestLog().wait_for(lambda records: bool(records), timeout=0.01)

    def test_calling_it_selects_by_method_and_run(self) -> None:
        requests = RequestLog()
        reads = [
            RequestRecord(
                "GetPipelineVersionRun", True, None, SUCCESS, "OK", f"emu-{run_id}", None, (run_id,)
            )
            for run_id in ("r1", "r2", "r1")
        ]
        for record in reads:
            requests.append(record)
        patch = RequestRecord(
            "PatchPipelineVersionRuns", True, None, SUCCESS, "OK", "emu-p", 5.0, ("r2", "r3")
        )
        requests.append(patch)
        requests.append(self.record("GetUser"))
        assert requests(method="GetPipelineVersionRun") == reads
        assert requests(method="GetPipelineVersionRun", run_id="r1") == [reads[0], reads[2]]
        assert requests(run_id="r2") == [reads[1], patch]
        assert requests(run_id="nope") == []
        assert len(requests()) == 5


def test_a_patch_outcome_holds_the_run_or_the_error() -> None:
    from airflow_provider_clarifai.emulator.values import PatchOutcome

    with pytest.raises(ValueError, match="needs either the run or an error"):
        PatchOutcome("r1")
    with pytest.raises(ValueError, match="needs either the run or an error"):
        PatchOutcome("r1", run=object(), error=ApiError(SUCCESS, "x"))  # type: ignore[arg-type]
    assert not PatchOutcome("r1", error=ApiError(CONN_DOES_NOT_EXIST, "x")).applied


def test_script_logs_are_sorted_by_time() -> None:
    script = RunScript(logs=(ScriptedLog(2, "b"), ScriptedLog(1, "a")))
    assert [line.message for line in script.logs] == ["a", "b"]
