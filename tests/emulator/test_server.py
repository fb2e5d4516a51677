"""The emulator over real loopback gRPC, driven by the official clarifai_grpc client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2
from google.protobuf.message import DecodeError

from airflow_provider_clarifai.emulator import protos
from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.models import Faults, RequestLog
from airflow_provider_clarifai.emulator.scenario import Scenario
from airflow_provider_clarifai.emulator.server import GARBAGE_BYTES, ClarifaiEmulator, run_to_proto

pytestmark = pytest.mark.integration

USER, APP, PIPELINE, VERSION = "demo-user", "pipelines-app", "nightly-training", "v1"
#: The deadline of the tests' own calls, and how long a test waits for something the emulator does within
#: milliseconds: a guard against a hang, never reached on a slow or busy machine. No test measures time.
TIMEOUT = 60.0
#: The emulator's limit on a ``hang`` in the hang tests, and their calls' deadline where only something
#: else may end the call: far beyond every wait of the test, so reaching it would fail the test.
HANG_LIMIT = 3600.0
# started_at, ended_at and total_run_duration exist from clarifai-grpc 12.0.2; the emulator supports 11.11.3+.
HAS_RUN_TIMING = "started_at" in resources_pb2.PipelineVersionRun.DESCRIPTOR.fields_by_name


def ids(user: str = USER, app: str = APP) -> Any:
    return resources_pb2.UserAppIDSet(user_id=user, app_id=app)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Key {token}"),)


def code_name(code: int) -> str:
    return status_code_pb2.StatusCode.Name(code)


class Client:
    """The official stub plus the emulator's default token, for short tests."""

    def __init__(self, stub: Any, token: str) -> None:
        self.stub = stub
        self.metadata = auth(token)

    def get(self, run_id: str, **kwargs: Any) -> Any:
        request = service_pb2.GetPipelineVersionRunRequest(
            user_app_id=ids(),
            pipeline_id=PIPELINE,
            pipeline_version_id=VERSION,
            pipeline_version_run_id=run_id,
        )
        return self.stub.GetPipelineVersionRun(request, metadata=self.metadata, timeout=TIMEOUT, **kwargs)

    def post(self, *runs: Any, version: str = VERSION, **request_fields: Any) -> Any:
        request = service_pb2.PostPipelineVersionRunsRequest(
            user_app_id=ids(),
            pipeline_id=PIPELINE,
            pipeline_version_id=version,
            pipeline_version_runs=list(runs),
            **request_fields,
        )
        return self.stub.PostPipelineVersionRuns(request, metadata=self.metadata, timeout=TIMEOUT)

    def patch(self, *changes: tuple[str, int], action: str = "overwrite") -> Any:
        runs = [
            resources_pb2.PipelineVersionRun(
                id=run_id,
                orchestration_status=resources_pb2.OrchestrationStatus(status=status_pb2.Status(code=code)),
            )
            for run_id, code in changes
        ]
        request = service_pb2.PatchPipelineVersionRunsRequest(
            user_app_id=ids(),
            pipeline_id=PIPELINE,
            pipeline_version_id=VERSION,
            pipeline_version_runs=runs,
            action=action,
        )
        return self.stub.PatchPipelineVersionRuns(request, metadata=self.metadata, timeout=TIMEOUT)

    def get_user(self, user_id: str = "me", **kwargs: Any) -> Any:
        request = service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=user_id))
        kwargs.setdefault("metadata", self.metadata)
        kwargs.setdefault("timeout", TIMEOUT)
        return self.stub.GetUser(request, **kwargs)


@pytest.fixture
def clock(clarifai_emulator: ClarifaiEmulator) -> ManualClock:
    assert isinstance(clarifai_emulator.clock, ManualClock)
    return clarifai_emulator.clock


@pytest.fixture
def stub(clarifai_emulator: ClarifaiEmulator) -> Iterator[Any]:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=clarifai_emulator.port)
    yield service_pb2_grpc.V2Stub(channel)
    channel.close()


@pytest.fixture
def client(stub: Any, clarifai_emulator: ClarifaiEmulator) -> Client:
    return Client(stub, clarifai_emulator.token)


def no_retry_client(emulator: ClarifaiEmulator) -> tuple[Client, grpc.Channel]:
    """A plain channel without the SDK's retry policy, to see a single attempt's outcome."""
    # V2Stub reads a module global that only ClarifaiChannel's factories set (the SDK's pitfall).
    ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=emulator.port).close()
    channel = grpc.insecure_channel(emulator.address)
    return Client(service_pb2_grpc.V2Stub(channel), emulator.token), channel


class TestRpcs:
    def test_get_run(self, client: Client, clock: ManualClock) -> None:
        start = clock.now()
        clock.advance(10)
        response = client.get("run-running")
        assert response.status.code == status_code_pb2.SUCCESS
        assert response.status.req_id.startswith("emu-")
        run = response.pipeline_version_run
        assert run.id == "run-running"
        assert run.orchestration_status.status.code == status_code_pb2.JOB_RUNNING
        assert (run.user_id, run.app_id, run.pipeline_version.id, run.pipeline_version.pipeline_id) == (
            USER,
            APP,
            VERSION,
            PIPELINE,
        )
        assert run.created_at.ToNanoseconds() == round(start * 1e9)
        assert run.modified_at.ToNanoseconds() == round(start * 1e9)
        if HAS_RUN_TIMING:
            assert run.started_at.ToNanoseconds() == round(start * 1e9)
            assert not run.HasField("ended_at")
            assert run.total_run_duration.ToTimedelta().total_seconds() == 10
        assert json.loads(run.orchestration_status.argo_status.status) == {"phase": "Running"}

    def test_post_then_the_run_follows_the_version_script(self, client: Client, clock: ManualClock) -> None:
        run = resources_pb2.PipelineVersionRun(id="my-run")
        run.input_args_override.argo_args_override.parameters.add(name="epochs", value="3")
        run.nodepools.add(id="gpu-a100").compute_cluster.id = "demo-cluster"
        response = client.post(run)
        assert code_name(response.status.code) == "SUCCESS"
        [posted] = response.pipeline_version_runs
        assert posted.id == "my-run"
        assert posted.orchestration_status.status.code == status_code_pb2.JOB_QUEUED
        [parameter] = posted.input_args_override.argo_args_override.parameters
        assert (parameter.name, parameter.value) == ("epochs", "3")
        assert (posted.nodepools[0].id, posted.nodepools[0].compute_cluster.id) == (
            "gpu-a100",
            "demo-cluster",
        )
        created = clock.now()
        clock.advance(2 + 30)  # default scenario's v1 post_script: 2 s queued, 30 s running
        done = client.get("my-run").pipeline_version_run
        assert done.orchestration_status.status.code == status_code_pb2.JOB_COMPLETED
        assert done.modified_at.ToNanoseconds() == round((created + 32) * 1e9)
        if HAS_RUN_TIMING:
            assert done.ended_at.ToNanoseconds() == round((created + 32) * 1e9)
            assert done.total_run_duration.ToTimedelta().total_seconds() == 30

    def test_post_takes_the_nodepool_from_the_runner_selector(self, client: Client) -> None:
        selector = resources_pb2.RunnerSelector(
            nodepool=resources_pb2.Nodepool(
                id="cpu-small", compute_cluster=resources_pb2.ComputeCluster(id="demo-cluster")
            )
        )
        response = client.post(resources_pb2.PipelineVersionRun(), runner_selector=selector)
        [posted] = response.pipeline_version_runs
        assert len(posted.id) == 32
        assert (posted.nodepools[0].id, posted.nodepools[0].compute_cluster.id) == (
            "cpu-small",
            "demo-cluster",
        )

    def test_post_of_an_existing_id(self, client: Client) -> None:
        response = client.post(resources_pb2.PipelineVersionRun(id="run-running"))
        assert response.status.code == status_code_pb2.PIPELINE_INVALID_REQUEST
        assert "already exists" in response.status.description
        assert response.status.details

    def test_list_runs_with_paging_and_status_filter(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        request = service_pb2.ListPipelineVersionRunsRequest(
            user_app_id=ids(),
            pipeline_id=PIPELINE,
            pipeline_version_id=VERSION,
            status_codes=[status_code_pb2.JOB_RUNNING, status_code_pb2.JOB_PAUSED],
        )
        response = client.stub.ListPipelineVersionRuns(request, metadata=client.metadata, timeout=TIMEOUT)
        assert response.status.code == status_code_pb2.SUCCESS
        assert [run.id for run in response.pipeline_version_runs] == [
            "run-forever",
            "run-paused",
            "run-running",
        ]
        paged = service_pb2.ListPipelineVersionRunsRequest(
            user_app_id=ids(), pipeline_id=PIPELINE, pipeline_version_id=VERSION, page=2, per_page=3
        )
        response = client.stub.ListPipelineVersionRuns(paged, metadata=client.metadata, timeout=TIMEOUT)
        everything = [run.id for run in clarifai_emulator.runs(version=VERSION)]
        assert [run.id for run in response.pipeline_version_runs] == everything[3:6]

    def test_pause_resume_cancel(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        for target, expected in (
            (status_code_pb2.JOB_PAUSED, "JOB_PAUSED"),
            (status_code_pb2.JOB_RUNNING, "JOB_RUNNING"),
            (status_code_pb2.JOB_CANCELLED, "JOB_CANCELLED"),
        ):
            response = client.patch(("run-running", target))
            assert response.status.code == status_code_pb2.SUCCESS
            [run] = response.pipeline_version_runs
            assert code_name(run.orchestration_status.status.code) == expected
            assert clarifai_emulator.run("run-running").state == expected

    def test_patch_mixed_status_reports_each_run(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        response = client.patch(
            ("run-completed", status_code_pb2.JOB_PAUSED),
            ("run-running", status_code_pb2.JOB_PAUSED),
            ("no-such-run", status_code_pb2.JOB_PAUSED),
        )
        assert response.status.code == status_code_pb2.MIXED_STATUS
        assert [run.id for run in response.pipeline_version_runs] == [
            "run-completed",
            "run-running",
            "no-such-run",
        ]
        codes = [code_name(run.orchestration_status.status.code) for run in response.pipeline_version_runs]
        assert codes == ["PIPELINE_INVALID_REQUEST", "JOB_PAUSED", "CONN_DOES_NOT_EXIST"]
        rejected = response.pipeline_version_runs[0].orchestration_status.status
        assert rejected.description == (
            "cannot pause run run-completed: it is JOB_COMPLETED; "
            "pause is allowed from JOB_QUEUED, JOB_RUNNING"
        )
        assert rejected.req_id == response.status.req_id
        assert clarifai_emulator.run("run-completed").state == "JOB_COMPLETED"

    def test_patch_with_one_forbidden_run_answers_its_reason(self, client: Client) -> None:
        response = client.patch(("run-cancelled", status_code_pb2.JOB_RUNNING))
        assert response.status.code == status_code_pb2.PIPELINE_INVALID_REQUEST
        assert response.status.description.startswith("cannot resume run run-cancelled: it is JOB_CANCELLED")

    def test_patch_with_another_action(self, client: Client) -> None:
        response = client.patch(("run-running", status_code_pb2.JOB_PAUSED), action="merge")
        assert response.status.code == status_code_pb2.PIPELINE_INVALID_REQUEST
        assert response.pipeline_version_runs[0].orchestration_status.status.code == (
            status_code_pb2.PIPELINE_INVALID_REQUEST
        )

    def test_list_log_entries_serves_the_last_page_by_default(
        self, client: Client, clock: ManualClock
    ) -> None:
        clock.advance(100)  # run-running: queued, running, "step 1 done"

        def logs(**kwargs: Any) -> Any:
            request = service_pb2.ListLogEntriesRequest(
                log_type="pipeline.version.run",
                user_app_id=ids(),
                pipeline_id=PIPELINE,
                pipeline_version_id=VERSION,
                pipeline_version_run_id="run-running",
                **kwargs,
            )
            return client.stub.ListLogEntries(request, metadata=client.metadata, timeout=TIMEOUT)

        last = logs(per_page=2)
        assert last.status.code == status_code_pb2.SUCCESS
        assert (last.page, last.per_page) == (2, 2)
        [entry] = last.log_entries
        assert entry.message == '{"msg": "step 1 done"}'
        assert entry.log_type == "pipeline.version.run"
        assert entry.url.startswith("emulator://logs/")
        first = logs(page=1)
        assert (first.page, first.per_page) == (1, 32)
        assert [json.loads(item.message)["msg"] for item in first.log_entries] == [
            "run entered JOB_QUEUED",
            "run entered JOB_RUNNING",
            "step 1 done",
        ]

    def test_list_log_entries_needs_the_pipeline_log_type_and_the_app(self, client: Client) -> None:
        request = service_pb2.ListLogEntriesRequest(
            log_type="model.version",
            user_app_id=ids(),
            pipeline_id=PIPELINE,
            pipeline_version_id=VERSION,
            pipeline_version_run_id="run-running",
        )
        response = client.stub.ListLogEntries(request, metadata=client.metadata, timeout=TIMEOUT)
        assert response.status.code == status_code_pb2.BAD_REQUEST
        request.log_type = "pipeline.version.run"
        request.user_app_id.app_id = ""
        response = client.stub.ListLogEntries(request, metadata=client.metadata, timeout=TIMEOUT)
        assert response.status.code == status_code_pb2.PIPELINE_INVALID_REQUEST
        assert "user_app_id.app_id" in response.status.description

    def test_get_user(self, client: Client) -> None:
        for user_id in ("me", USER):
            response = client.get_user(user_id)
            assert response.status.code == status_code_pb2.SUCCESS
            assert response.user.id == USER
        assert client.get_user("other-user").status.code == status_code_pb2.CONN_DOES_NOT_EXIST

    def test_unknown_ids(self, client: Client) -> None:
        response = client.get("no-such-run")
        assert response.status.code == status_code_pb2.CONN_DOES_NOT_EXIST
        assert "no-such-run" in response.status.description
        response = client.post(resources_pb2.PipelineVersionRun(), version="v404")
        assert response.status.code == status_code_pb2.CONN_DOES_NOT_EXIST
        assert "'v404'" in response.status.description

    def test_every_request_gets_a_fresh_req_id(self, client: Client) -> None:
        req_ids = {client.get_user().status.req_id for _ in range(5)}
        assert len(req_ids) == 5

    def test_other_rpcs_are_unimplemented(self, client: Client) -> None:
        with pytest.raises(grpc.RpcError) as raised:
            client.stub.ListModels(service_pb2.ListModelsRequest(), metadata=client.metadata, timeout=TIMEOUT)
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED


class TestAuth:
    @pytest.mark.parametrize(
        "metadata",
        [(), auth("wrong-token"), (("authorization", "Bearer emulator-pat-0123456789"),)],
        ids=["missing", "unknown", "wrong-scheme"],
    )
    def test_bad_credentials(self, client: Client, metadata: Any) -> None:
        response = client.get_user(metadata=metadata)
        assert response.status.code == status_code_pb2.CONN_KEY_INVALID
        assert "wrong-token" not in str(response.status)
        assert "emulator-pat" not in str(response.status)

    def test_read_only_token_cannot_write(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        read_only = Client(client.stub, "emulator-pat-readonly")
        assert read_only.get("run-running").status.code == status_code_pb2.SUCCESS
        response = read_only.patch(("run-running", status_code_pb2.JOB_PAUSED))
        assert response.status.code == status_code_pb2.CONN_INSUFFICIENT_SCOPES
        assert clarifai_emulator.run("run-running").state == "JOB_RUNNING"

    def test_another_users_run_does_not_exist(self, client: Client) -> None:
        other = Client(client.stub, "emulator-pat-other-user")
        response = other.get("run-running")
        assert response.status.code == status_code_pb2.CONN_DOES_NOT_EXIST
        assert response.status.description == f"user '{USER}' not found"

    def test_rate_limit(self) -> None:
        scenario = Scenario.from_dict({**_scenario_dict(), "rate_limit_per_second": 2})
        rate_clock = ManualClock(start=0)
        with ClarifaiEmulator(scenario, clock=ManualClock(), rate_limit_clock=rate_clock) as emulator:
            client, channel = no_retry_client(emulator)
            with channel:
                assert client.get_user().status.code == status_code_pb2.SUCCESS
                assert client.get_user().status.code == status_code_pb2.SUCCESS
                throttled = client.post(resources_pb2.PipelineVersionRun(id="not-created"))
                assert throttled.status.code == status_code_pb2.CONN_THROTTLED
                assert throttled.status.description == "exceeded limit of 2 requests per second"
                rate_clock.advance(1)
                assert client.get("not-created").status.code == status_code_pb2.CONN_DOES_NOT_EXIST


def _scenario_dict() -> dict[str, Any]:
    return {
        "tokens": [{"token": "emulator-pat-0123456789", "user_id": USER}],
        "users": [
            {
                "id": USER,
                "apps": [{"id": APP, "pipelines": [{"id": PIPELINE, "versions": [{"id": VERSION}]}]}],
            }
        ],
    }


class TestFaults:
    def test_unavailable_once_is_absorbed_by_the_sdk_retry_policy(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(method="GetUser", kind="unavailable", count=1)
        assert client.get_user().status.code == status_code_pb2.SUCCESS
        records = [(record.fault, record.grpc_code, record.code) for record in clarifai_emulator.requests]
        assert records == [("unavailable", "UNAVAILABLE", None), (None, "OK", "SUCCESS")]

    def test_unavailable_changes_nothing(self, clarifai_emulator: ClarifaiEmulator) -> None:
        clarifai_emulator.faults.add(method="PostPipelineVersionRuns", kind="unavailable")
        client, channel = no_retry_client(clarifai_emulator)
        with channel, pytest.raises(grpc.RpcError) as raised:
            client.post(resources_pb2.PipelineVersionRun(id="lost"))
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(KeyError):
            clarifai_emulator.run("lost")

    def test_unavailable_after_applies_the_request_then_drops_the_reply(
        self, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(method="PostPipelineVersionRuns", kind="unavailable_after", count=1)
        client, channel = no_retry_client(clarifai_emulator)
        with channel, pytest.raises(grpc.RpcError) as raised:
            client.post(resources_pb2.PipelineVersionRun(id="applied"))
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert clarifai_emulator.run("applied").state == "JOB_QUEUED"
        [record] = clarifai_emulator.requests
        assert (record.fault, record.code, record.grpc_code) == (
            "unavailable_after",
            "SUCCESS",
            "UNAVAILABLE",
        )

    def test_sdk_retry_after_a_lost_reply_meets_the_existing_run(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(method="PostPipelineVersionRuns", kind="unavailable_after", count=1)
        response = client.post(resources_pb2.PipelineVersionRun(id="posted-once"))
        assert response.status.code == status_code_pb2.PIPELINE_INVALID_REQUEST
        assert "already exists" in response.status.description
        posts = clarifai_emulator.requests(method="PostPipelineVersionRuns")
        assert [record.code for record in posts] == ["SUCCESS", "PIPELINE_INVALID_REQUEST"]
        runs = clarifai_emulator.runs(version=VERSION)
        assert [run.id for run in runs].count("posted-once") == 1

    def test_deadline(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        clarifai_emulator.faults.add(method="GetPipelineVersionRun", kind="deadline", count=1)
        with pytest.raises(grpc.RpcError) as raised:
            client.get("run-running")
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert client.get("run-running").status.code == status_code_pb2.SUCCESS

    @pytest.mark.parametrize(
        ("kind", "code"),
        [("internal", status_code_pb2.INTERNAL_SERVER_ISSUE), ("throttle", status_code_pb2.CONN_THROTTLED)],
    )
    def test_application_level_faults(
        self, client: Client, clarifai_emulator: ClarifaiEmulator, kind: str, code: int
    ) -> None:
        clarifai_emulator.faults.add(method="PatchPipelineVersionRuns", kind=kind, count=1)
        response = client.patch(("run-running", status_code_pb2.JOB_PAUSED))
        assert response.status.code == code
        assert response.status.req_id.startswith("emu-")
        assert clarifai_emulator.run("run-running").state == "JOB_RUNNING"
        assert clarifai_emulator.requests[-1].code == code_name(code)

    def test_latency_delays_without_blocking_other_requests(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        # A latency far longer than the test: the slow request is still waiting when the other one has
        # been answered, however slow the machine. Stopping the emulator then cuts the wait short.
        clarifai_emulator.faults.add(
            method="GetPipelineVersionRun", kind="latency", latency_seconds=3600, count=1
        )
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(response=client.get("run-running")))
        thread.start()
        # The rule is used up when the slow request picks it, i.e. once it is waiting.
        assert wait_until(lambda: not clarifai_emulator.faults.rules)
        assert client.get_user().status.code == status_code_pb2.SUCCESS
        # Answered while the slow request is still held: in flight, unanswered, not yet recorded.
        assert clarifai_emulator.in_flight.current == 1
        assert thread.is_alive()
        assert "response" not in result
        assert [record.method for record in clarifai_emulator.requests] == ["GetUser"]
        clarifai_emulator.stop(grace=TIMEOUT)
        thread.join(timeout=TIMEOUT)
        assert result["response"].status.code == status_code_pb2.SUCCESS
        assert [record.fault for record in clarifai_emulator.requests] == [None, "latency"]

    def test_a_short_latency_ends_by_itself(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(
            method="GetPipelineVersionRun", kind="latency", latency_seconds=0.05, count=1
        )
        assert client.get("run-running").status.code == status_code_pb2.SUCCESS
        [record] = clarifai_emulator.requests
        assert (record.fault, record.code, record.grpc_code) == ("latency", "SUCCESS", "OK")

    def test_garbage_cannot_be_parsed_by_the_client(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(method="GetPipelineVersionRun", kind="garbage", count=1)
        with pytest.raises(grpc.RpcError) as raised:
            client.get("run-running")
        assert raised.value.code() is grpc.StatusCode.INTERNAL
        assert "deserializ" in (raised.value.details() or "").lower()
        assert clarifai_emulator.requests[-1].fault == "garbage"

    @pytest.mark.parametrize(
        "response_type",
        [
            service_pb2.MultiPipelineVersionRunResponse,
            service_pb2.SinglePipelineVersionRunResponse,
            service_pb2.MultiLogEntryResponse,
            service_pb2.SingleUserResponse,
        ],
    )
    def test_garbage_bytes_parse_as_no_response_type(self, response_type: Any) -> None:
        with pytest.raises(DecodeError):
            response_type.FromString(GARBAGE_BYTES)

    def test_hang_lasts_until_the_client_gives_up(self) -> None:
        # The emulator's own limit on a hang is far above every wait here: only the client's leaving can
        # release the request in time.
        with ClarifaiEmulator(clock=ManualClock(), hang_limit_seconds=HANG_LIMIT) as emulator:
            client, channel = no_retry_client(emulator)
            with channel:
                # Connected first, so the calls below reach the server at once.
                assert client.get_user().status.code == status_code_pb2.SUCCESS
                emulator.requests.clear()
                emulator.faults.add(method="GetUser", kind="hang", count=2)
                request = service_pb2.GetUserRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me"))
                # Held while the client waits: unanswered, in flight, not yet recorded.
                waiting = client.stub.GetUser.future(request, metadata=client.metadata, timeout=HANG_LIMIT)
                assert wait_until(lambda: remaining_hangs(emulator) == 1)
                assert not waiting.done()
                assert emulator.in_flight.current == 1
                assert len(emulator.requests) == 0
                # The client gives up: the server notices, lets the request go and records it.
                waiting.cancel()
                assert emulator.requests.wait_for(lambda records: len(records) == 1, timeout=TIMEOUT)
                # The same when the client's deadline is what ends the wait.
                with pytest.raises(grpc.RpcError) as raised:
                    client.get_user(timeout=2)
                assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                assert emulator.requests.wait_for(lambda records: len(records) == 2, timeout=TIMEOUT)
        assert [(record.fault, record.code, record.grpc_code) for record in emulator.requests] == [
            ("hang", None, "DEADLINE_EXCEEDED")
        ] * 2

    def test_hang_is_released_when_the_emulator_stops(self) -> None:
        emulator = ClarifaiEmulator(clock=ManualClock(), hang_limit_seconds=HANG_LIMIT).start()
        emulator.faults.add(method="GetUser", kind="hang", count=1)
        client, channel = no_retry_client(emulator)
        errors: list[grpc.RpcError] = []

        def call() -> None:
            try:
                # A deadline far beyond the join below: only the emulator's stop can end this call in time.
                client.get_user(timeout=HANG_LIMIT)
            except grpc.RpcError as error:
                errors.append(error)

        thread = threading.Thread(target=call)
        thread.start()
        # The rule is used up when the request picks it, i.e. once it is being held.
        assert wait_until(lambda: not emulator.faults.rules)
        assert thread.is_alive()
        emulator.stop(grace=0.2)
        thread.join(timeout=TIMEOUT)
        channel.close()
        assert not thread.is_alive()
        assert len(errors) == 1
        assert emulator.requests[-1].fault == "hang"

    def test_star_applies_to_every_method_and_clear_removes_it(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.faults.add(kind="internal")
        assert client.get_user().status.code == status_code_pb2.INTERNAL_SERVER_ISSUE
        assert client.get("run-running").status.code == status_code_pb2.INTERNAL_SERVER_ISSUE
        clarifai_emulator.faults.clear()
        assert client.get_user().status.code == status_code_pb2.SUCCESS

    def test_faults_from_the_scenario(self) -> None:
        scenario = {**_scenario_dict(), "faults": [{"method": "GetUser", "kind": "throttle", "count": 1}]}
        with ClarifaiEmulator(scenario, clock=ManualClock()) as emulator:
            client, channel = no_retry_client(emulator)
            with channel:
                assert client.get_user().status.code == status_code_pb2.CONN_THROTTLED
                assert client.get_user().status.code == status_code_pb2.SUCCESS


class TestRequestLog:
    def test_records_method_token_validity_fault_and_code_but_never_the_token(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        client.get_user()
        client.get_user(metadata=auth("some-secret-token"))
        clarifai_emulator.faults.add(method="GetUser", kind="internal", count=1)
        client.get_user()
        records = list(clarifai_emulator.requests)
        assert [(r.method, r.token_valid, r.fault, r.code, r.grpc_code) for r in records] == [
            ("GetUser", True, None, "SUCCESS", "OK"),
            ("GetUser", False, None, "CONN_KEY_INVALID", "OK"),
            ("GetUser", True, "internal", "INTERNAL_SERVER_ISSUE", "OK"),
        ]
        assert "some-secret-token" not in repr(records)
        assert clarifai_emulator.token not in repr(records)

    def test_counts_prove_a_single_post(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        client.post(resources_pb2.PipelineVersionRun(id="once"))
        client.get("once")
        assert clarifai_emulator.requests.count("PostPipelineVersionRuns") == 1


class TestEmulatorObject:
    def test_addresses_and_connection(self, clarifai_emulator: ClarifaiEmulator) -> None:
        port = clarifai_emulator.port
        assert clarifai_emulator.address == f"127.0.0.1:{port}"
        assert clarifai_emulator.base_url == f"http://127.0.0.1:{port}"
        assert clarifai_emulator.token == "emulator-pat-0123456789"
        connection = clarifai_emulator.airflow_connection({"user_id": USER})
        assert connection == {
            "conn_type": "clarifai",
            "host": f"http://127.0.0.1:{port}",
            "password": "emulator-pat-0123456789",
            "extra": {"user_id": USER},
        }
        name, value = clarifai_emulator.airflow_connection_env()
        assert name == "AIRFLOW_CONN_CLARIFAI_DEFAULT"
        assert json.loads(value) == clarifai_emulator.airflow_connection()
        assert clarifai_emulator.airflow_connection_env("my_conn")[0] == "AIRFLOW_CONN_MY_CONN"

    def test_cannot_start_twice_and_stop_is_idempotent(self) -> None:
        emulator = ClarifaiEmulator(clock=ManualClock())
        with pytest.raises(RuntimeError, match="not been started"):
            _ = emulator.address
        emulator.start()
        with pytest.raises(RuntimeError, match="already started"):
            emulator.start()
        emulator.stop()
        emulator.stop()
        with pytest.raises(RuntimeError, match="already started"):
            emulator.start()

    def test_port_in_use(self, clarifai_emulator: ClarifaiEmulator) -> None:
        with pytest.raises(OSError, match="cannot bind"):
            ClarifaiEmulator(clock=ManualClock(), port=clarifai_emulator.port).start()

    def test_stopped_emulator_refuses_connections(self) -> None:
        with ClarifaiEmulator(clock=ManualClock()) as emulator:
            client, channel = no_retry_client(emulator)
            assert client.get_user().status.code == status_code_pb2.SUCCESS
        with channel, pytest.raises(grpc.RpcError) as raised:
            client.get_user()
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE

    def test_scenario_forms(self, tmp_path: Any) -> None:
        path = tmp_path / "s.yaml"
        path.write_text("tokens: [{token: t1, user_id: u}]\nusers: [{id: u}]\n", encoding="utf-8")
        assert ClarifaiEmulator(str(path)).token == "t1"
        assert ClarifaiEmulator(path).token == "t1"
        assert (
            ClarifaiEmulator({"tokens": [{"token": "t2", "user_id": "u"}], "users": [{"id": "u"}]}).token
            == "t2"
        )
        assert ClarifaiEmulator().token == "emulator-pat-0123456789"

    def test_run_timing_fields_are_set_only_where_the_message_has_them(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from airflow_provider_clarifai.emulator.models import RunSnapshot
        from airflow_provider_clarifai.emulator.scenario import RunState

        snapshot = RunSnapshot("r", USER, APP, PIPELINE, VERSION, RunState.COMPLETED, 1.0, 3.0, 2.0, 3.0, 1.0)
        assert protos._HAS_RUN_TIMING is HAS_RUN_TIMING
        if HAS_RUN_TIMING:
            assert run_to_proto(snapshot).ended_at.ToNanoseconds() == 3_000_000_000
            # What an older clarifai-grpc gets: the same run without the fields it lacks.
            monkeypatch.setattr(protos, "_HAS_RUN_TIMING", False)
            message = run_to_proto(snapshot)
            assert not message.HasField("started_at")
            assert not message.HasField("ended_at")
        else:
            message = run_to_proto(snapshot)
        assert message.orchestration_status.status.code == status_code_pb2.JOB_COMPLETED
        assert message.modified_at.ToNanoseconds() == 3_000_000_000


class TestRpcTable:
    def test_the_servicer_and_its_handlers_come_from_the_one_table(self) -> None:
        from airflow_provider_clarifai.emulator.domain import IMPLEMENTED_METHODS
        from airflow_provider_clarifai.emulator.servicer import RPCS, EmulatorServicer

        assert tuple(RPCS) == IMPLEMENTED_METHODS
        servicer = EmulatorServicer(
            ClarifaiEmulator().backend, Faults(), RequestLog(), threading.Event(), holds=None
        )
        handlers = servicer.method_handlers()
        assert set(handlers) == set(RPCS)
        for name, rpc in RPCS.items():
            # Each RPC is a method of the servicer, overriding the base servicer's UNIMPLEMENTED one.
            assert getattr(EmulatorServicer, name) is not getattr(service_pb2_grpc.V2Servicer, name)
            assert handlers[name].request_deserializer == rpc.request_type.FromString
            assert rpc.response_type.__name__.endswith("Response")

    def test_every_other_rpc_is_unimplemented(self, clarifai_emulator: ClarifaiEmulator) -> None:
        client, channel = no_retry_client(clarifai_emulator)
        with channel, pytest.raises(grpc.RpcError) as raised:
            client.stub.ListModels(service_pb2.ListModelsRequest(), metadata=client.metadata, timeout=TIMEOUT)
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert len(clarifai_emulator.requests) == 0


class TestRestart:
    def test_restart_keeps_state_and_port(self) -> None:
        with ClarifaiEmulator(clock=ManualClock()) as emulator:
            client, channel = no_retry_client(emulator)
            with channel:
                assert (
                    client.patch(("run-running", status_code_pb2.JOB_PAUSED)).status.code
                    == status_code_pb2.SUCCESS
                )
                port = emulator.port
                emulator.restart()
                assert (emulator.port, emulator.restarts) == (port, 1)
                # The same channel reconnects; the state survived the restart.
                response = client.get("run-running", wait_for_ready=True)
                assert (
                    code_name(response.pipeline_version_run.orchestration_status.status.code) == "JOB_PAUSED"
                )
                assert emulator.requests.count("GetPipelineVersionRun") == 1

    def test_nothing_listens_during_the_downtime(self) -> None:
        # The downtime lasts until the test has seen it: restart() waits for the event, not a timer.
        back = threading.Event()
        with ClarifaiEmulator(clock=ManualClock()) as emulator:
            client, channel = no_retry_client(emulator)
            port = emulator.port
            restarting = threading.Thread(target=emulator.restart, kwargs={"down_until": back})
            with channel:
                assert client.get_user().status.code == status_code_pb2.SUCCESS
                restarting.start()
                try:
                    # The old server is gone and the new one not yet started: a call is refused.
                    assert wait_until(lambda: not emulator.serving)
                    with pytest.raises(grpc.RpcError) as refused:
                        client.get_user()
                    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
                    assert emulator.restarts == 0
                finally:
                    back.set()
                    restarting.join(TIMEOUT)
                assert not restarting.is_alive()
                assert (emulator.serving, emulator.port, emulator.restarts) == (True, port, 1)
                # The same channel is served again, once it has reconnected.
                assert client.get_user(wait_for_ready=True).status.code == status_code_pb2.SUCCESS
                assert emulator.requests.count("GetUser") == 2

    def test_a_timed_downtime_still_works(self) -> None:
        with ClarifaiEmulator(clock=ManualClock()) as emulator:
            port = emulator.port
            emulator.restart(downtime_seconds=0.01)
            assert (emulator.serving, emulator.port, emulator.restarts) == (True, port, 1)

    def test_stopping_during_the_downtime_ends_it_and_the_emulator_stays_down(self) -> None:
        never = threading.Event()
        emulator = ClarifaiEmulator(clock=ManualClock()).start()
        restarting = threading.Thread(target=emulator.restart, kwargs={"down_until": never})
        restarting.start()
        assert wait_until(lambda: not emulator.serving)
        emulator.stop()
        restarting.join(TIMEOUT)
        assert not restarting.is_alive()
        assert (emulator.serving, emulator.restarts) == (False, 0)

    def test_a_downtime_is_a_duration_or_an_event_not_both(self) -> None:
        with ClarifaiEmulator(clock=ManualClock()) as emulator:
            with pytest.raises(ValueError, match="downtime_seconds or down_until"):
                emulator.restart(downtime_seconds=1, down_until=threading.Event())
            assert (emulator.serving, emulator.restarts) == (True, 0)

    def test_only_a_running_emulator_restarts(self) -> None:
        emulator = ClarifaiEmulator(clock=ManualClock())
        with pytest.raises(RuntimeError, match="only a running emulator"):
            emulator.restart()
        emulator.start()
        emulator.stop()
        with pytest.raises(RuntimeError, match="only a running emulator"):
            emulator.restart()


class TestHoldsAndInFlight:
    def test_a_hold_makes_requests_meet_then_both_are_served(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        hold = clarifai_emulator.holds.add("PatchPipelineVersionRuns", parties=2, timeout_seconds=TIMEOUT)
        answers: list[Any] = []
        first = threading.Thread(
            target=lambda: answers.append(client.patch(("run-running", status_code_pb2.JOB_PAUSED)))
        )
        first.start()
        assert wait_until(lambda: hold.arrived == 1)
        # Held before the backend: the pause has not happened.
        assert clarifai_emulator.run("run-running").state == "JOB_RUNNING"
        answers.append(client.patch(("run-running", status_code_pb2.JOB_CANCELLED)))
        first.join(timeout=TIMEOUT)
        assert hold.met is True
        assert len(answers) == 2
        # The service decided an order; the final state is the one its last accepted change set.
        final = clarifai_emulator.run("run-running").state
        assert final in {"JOB_PAUSED", "JOB_CANCELLED"}
        assert clarifai_emulator.requests.count("PatchPipelineVersionRuns") == 2

    def test_a_hold_gives_up_after_its_timeout(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        hold = clarifai_emulator.holds.add("GetUser", parties=2, timeout_seconds=0.2)
        assert client.get_user().status.code == status_code_pb2.SUCCESS
        assert hold.met is False
        # Spent: the next request is not held.
        assert client.get_user().status.code == status_code_pb2.SUCCESS
        assert hold.arrived == 1

    def test_the_gauge_counts_requests_in_flight(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        # A hold keeps three requests in flight together, so the peak is known without timing.
        hold = clarifai_emulator.holds.add("GetUser", parties=3, timeout_seconds=TIMEOUT)
        threads = [threading.Thread(target=client.get_user) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert hold.met is True
        assert clarifai_emulator.in_flight.peak == 3
        assert clarifai_emulator.in_flight.current == 0
        clarifai_emulator.in_flight.reset_peak()
        assert clarifai_emulator.in_flight.peak == 0


def remaining_hangs(emulator: ClarifaiEmulator) -> int:
    """How many more requests the emulator's ``hang`` rules will hold."""
    return sum(left or 0 for rule, left in emulator.faults.rules if rule.kind == "hang")


def wait_until(predicate: Any, timeout: float = TIMEOUT) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` real seconds pass (a guard against a hang, not a
    limit: what the tests wait for takes milliseconds); return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
