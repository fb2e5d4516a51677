"""What a test reads and changes on the emulator: runs, states, scripts, the request log, the clock."""

from __future__ import annotations

from typing import Any

import pytest
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from airflow_provider_clarifai.emulator import ClarifaiEmulator, ManualClock, RunState, Scenario, WallClock
from airflow_provider_clarifai.emulator.inspection import run_state

USER, APP, PIPELINE = "demo-user", "pipelines-app", "nightly-training"


@pytest.fixture
def emulator() -> ClarifaiEmulator:
    """The default scenario on a manual clock, not serving: these methods need no server."""
    return ClarifaiEmulator(Scenario.default(), clock=ManualClock())


class TestReading:
    def test_the_runs_of_a_version_and_their_states(self, emulator: ClarifaiEmulator) -> None:
        assert emulator.states(version="v1") == {
            "run-cancelled": "JOB_CANCELLED",
            "run-completed": "JOB_COMPLETED",
            "run-failed": "JOB_FAILED",
            "run-forever": "JOB_RUNNING",
            "run-paused": "JOB_PAUSED",
            "run-queued": "JOB_QUEUED",
            "run-running": "JOB_RUNNING",
        }
        runs = emulator.runs(version="v1")
        assert {run.pipeline_version_id for run in runs} == {"v1"}
        assert {(run.user_id, run.app_id, run.pipeline_id) for run in runs} == {(USER, APP, PIPELINE)}

    def test_runs_filter_by_state_given_short_or_in_full(self, emulator: ClarifaiEmulator) -> None:
        running = ["run-forever", "run-running"]
        assert sorted(run.id for run in emulator.runs(version="v1", state="RUNNING")) == running
        assert sorted(run.id for run in emulator.runs(version="v1", state="JOB_RUNNING")) == running
        assert emulator.runs(version="v-fails") == []

    def test_one_run_reads_like_a_sentence(self, emulator: ClarifaiEmulator) -> None:
        run = emulator.run("run-running")
        assert run.state == "JOB_RUNNING"
        assert run.state is RunState.RUNNING
        assert (run.id, run.pipeline_version_id) == ("run-running", "v1")

    def test_the_user_is_the_default_tokens_unless_named(self, emulator: ClarifaiEmulator) -> None:
        # "v1" is a version of demo-user's and of other-user's; the default token is demo-user's.
        assert "private-run" not in emulator.states(version="v1")
        assert emulator.states(version="v1", user="other-user") == {"private-run": "JOB_RUNNING"}
        assert emulator.run("private-run", user="*").user_id == "other-user"
        everyone = {(run.user_id, run.id) for run in emulator.runs(version="v1", user="*")}
        assert ("other-user", "private-run") in everyone
        assert (USER, "run-running") in everyone
        with pytest.raises(KeyError, match="no run 'private-run'"):
            emulator.run("private-run")

    def test_the_log_of_a_run(self, emulator: ClarifaiEmulator) -> None:
        emulator.advance(1)
        assert emulator.log_messages("run-running")[-1] == '{"msg": "step 1 done"}'

    def test_unknown_ids_are_key_errors(self, emulator: ClarifaiEmulator) -> None:
        with pytest.raises(KeyError, match="no pipeline version matches user='demo-user', version='v9'"):
            emulator.runs(version="v9")
        with pytest.raises(KeyError, match="no run 'nope' in demo-user/pipelines-app/nightly-training/v1"):
            emulator.run("nope", version="v1")

    def test_a_run_id_in_two_matching_versions_is_ambiguous(self) -> None:
        versions = [{"id": "v1", "runs": [{"id": "r"}]}, {"id": "v2", "runs": [{"id": "r"}]}]
        scenario = {
            "tokens": [{"token": "t", "user_id": "u"}],
            "users": [{"id": "u", "apps": [{"id": "a", "pipelines": [{"id": "p", "versions": versions}]}]}],
        }
        emulator = ClarifaiEmulator(scenario, clock=ManualClock())
        with pytest.raises(LookupError, match="run 'r' is in 2 pipeline versions: u/a/p/v1, u/a/p/v2"):
            emulator.run("r")
        with pytest.raises(LookupError, match="run id 'r' is in more than one matching version"):
            emulator.states()
        assert emulator.run("r", version="v2").pipeline_version_id == "v2"
        assert emulator.states(version="v1") == {"r": "JOB_QUEUED"}
        with pytest.raises(LookupError, match="2 pipeline versions match user='u'"):
            emulator.add_run("new")


class TestChanging:
    def test_set_run_state_moves_a_run_where_no_patch_could(self, emulator: ClarifaiEmulator) -> None:
        completed = emulator.set_run_state("run-completed", "JOB_RUNNING")
        assert (completed.state, completed.ended_at) == ("JOB_RUNNING", None)
        failed = emulator.set_run_state("run-running", "FAILED")
        assert failed.state == "JOB_FAILED"
        assert failed.ended_at == emulator.clock.now()
        assert emulator.states(version="v1")["run-running"] == "JOB_FAILED"
        assert emulator.log_messages("run-running")[-1] == (
            '{"msg": "run entered JOB_FAILED", "status": "JOB_FAILED"}'
        )

    def test_a_run_that_never_started_passes_through_running(self, emulator: ClarifaiEmulator) -> None:
        run = emulator.set_run_state("run-queued", "JOB_COMPLETED")
        assert run.started_at == run.ended_at == emulator.clock.now()
        entered = [line for line in emulator.log_messages("run-queued") if "entered" in line]
        assert [line.split('"status": ')[1] for line in entered] == [
            '"JOB_QUEUED"}',
            '"JOB_RUNNING"}',
            '"JOB_COMPLETED"}',
        ]
        cancelled = emulator.add_run("never-ran", version="v1")
        assert emulator.set_run_state("never-ran", "CANCELLED", version="v1").started_at is None
        assert cancelled.state == "JOB_QUEUED"

    def test_a_forced_run_goes_on_by_its_script(self, emulator: ClarifaiEmulator) -> None:
        script = {"running_seconds": 10, "outcome": "JOB_FAILED"}
        emulator.add_run("scripted", "JOB_PAUSED", script=script, version="v1")
        emulator.advance(100)
        assert emulator.run("scripted").state == "JOB_PAUSED"
        emulator.set_run_state("scripted", "RUNNING")
        emulator.advance(10)
        run = emulator.run("scripted")
        assert (run.state, run.active_seconds) == ("JOB_FAILED", 10)

    def test_an_unknown_state_is_refused_and_names_the_states(self, emulator: ClarifaiEmulator) -> None:
        with pytest.raises(ValueError, match="'SLEEPING' is not a run state; use one of JOB_CANCELLED"):
            emulator.set_run_state("run-running", "SLEEPING")
        assert emulator.run("run-running").state == "JOB_RUNNING"

    def test_add_run_and_set_post_script_need_one_version(self, emulator: ClarifaiEmulator) -> None:
        emulator.add_run("extra", "RUNNING", version="v1")
        assert emulator.run("extra").state == "JOB_RUNNING"
        with pytest.raises(ValueError, match="already exists"):
            emulator.add_run("extra", version="v1")
        emulator.set_post_script({"queued_seconds": 0, "running_seconds": None}, version="v-fails")
        with pytest.raises(LookupError, match="4 pipeline versions match user='demo-user'"):
            emulator.set_post_script(None)

    def test_rate_limit_and_clock(self, emulator: ClarifaiEmulator) -> None:
        assert emulator.rate_limit_per_second == 15
        emulator.set_rate_limit(None)
        assert emulator.rate_limit_per_second is None
        start = emulator.clock.now()
        assert emulator.advance(60) == start + 60
        with pytest.raises(TypeError, match="only a ManualClock can be advanced"):
            ClarifaiEmulator(clock=WallClock()).advance(1)


@pytest.mark.parametrize(("given", "state"), [("failed", "JOB_FAILED"), (" Job_Paused ", "JOB_PAUSED")])
def test_run_state_reads_names_short_or_in_full(given: str, state: str) -> None:
    assert run_state(given) is RunState(state)


def test_the_default_scenarios_runs_stay_as_they_are_until_changed(emulator: ClarifaiEmulator) -> None:
    before = emulator.states(version="v1", user="*")
    emulator.advance(30 * 24 * 3600)
    assert emulator.states(version="v1", user="*") == before
    assert emulator.run("run-queued").started_at is None


def test_the_scripted_scenario_has_the_same_runs_ending_on_their_own() -> None:
    default = ClarifaiEmulator(Scenario.default(), clock=ManualClock())
    scripted = ClarifaiEmulator(Scenario.bundled("scripted"), clock=ManualClock())
    assert scripted.scenario.versions() == default.scenario.versions()
    assert scripted.scenario.tokens == default.scenario.tokens
    assert scripted.states(version="v1") == default.states(version="v1")
    scripted.advance(600)
    assert {run_id: scripted.run(run_id).state for run_id in ("run-queued", "run-running")} == {
        "run-queued": "JOB_COMPLETED",
        "run-running": "JOB_COMPLETED",
    }


@pytest.mark.integration
@pytest.mark.clarifai_scenario(Scenario.default())
def test_requests_by_method_and_run(clarifai_emulator: ClarifaiEmulator) -> None:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=clarifai_emulator.port)
    metadata = (("authorization", f"Key {clarifai_emulator.token}"),)
    ids: dict[str, Any] = {
        "user_app_id": resources_pb2.UserAppIDSet(user_id=USER, app_id=APP),
        "pipeline_id": PIPELINE,
        "pipeline_version_id": "v1",
    }
    with channel:
        stub = service_pb2_grpc.V2Stub(channel)
        for run_id in ("run-running", "run-queued", "run-running"):
            stub.GetPipelineVersionRun(
                service_pb2.GetPipelineVersionRunRequest(pipeline_version_run_id=run_id, **ids),
                metadata=metadata,
                timeout=60,
            )
        cancel = status_pb2.Status(code=status_code_pb2.JOB_CANCELLED)
        stub.PatchPipelineVersionRuns(
            service_pb2.PatchPipelineVersionRunsRequest(
                action="overwrite",
                pipeline_version_runs=[
                    resources_pb2.PipelineVersionRun(
                        id=run_id, orchestration_status=resources_pb2.OrchestrationStatus(status=cancel)
                    )
                    for run_id in ("run-paused", "run-queued")
                ],
                **ids,
            ),
            metadata=metadata,
            timeout=60,
        )
    reads = clarifai_emulator.requests(method="GetPipelineVersionRun")
    assert [record.run_ids for record in reads] == [("run-running",), ("run-queued",), ("run-running",)]
    assert len(clarifai_emulator.requests(method="GetPipelineVersionRun", run_id="run-running")) == 2
    assert [record.method for record in clarifai_emulator.requests(run_id="run-queued")] == [
        "GetPipelineVersionRun",
        "PatchPipelineVersionRuns",
    ]
    (patch,) = clarifai_emulator.requests(method="PatchPipelineVersionRuns")
    assert patch.run_ids == ("run-paused", "run-queued")
    assert all(record.deadline_seconds is not None for record in clarifai_emulator.requests())
    assert clarifai_emulator.states(version="v1")["run-paused"] == "JOB_CANCELLED"
