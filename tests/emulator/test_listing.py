"""The emulator's listings over real loopback gRPC, driven by the official clarifai_grpc client: an app's
pipelines, a pipeline's versions, the runs on a nodepool; and the compute clusters of a scenario."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2

from airflow_provider_clarifai.emulator.clock import ManualClock
from airflow_provider_clarifai.emulator.scenario import Scenario, ScenarioError
from airflow_provider_clarifai.emulator.server import ClarifaiEmulator

pytestmark = pytest.mark.integration

USER = "demo-user"
#: A guard against a hang on the tests' own calls; no test measures time.
TIMEOUT = 60.0

#: The runs of the bundled scenarios on each of demo-cluster's nodepools: (app, pipeline, version, run).
GPU_RUNS = {
    ("pipelines-app", "nightly-training", "v1", "run-queued"),
    ("pipelines-app", "nightly-training", "v1", "run-running"),
    ("pipelines-app", "nightly-training", "v1", "run-forever"),
    ("pipelines-app", "nightly-training", "v1", "run-paused"),
    ("pipelines-app", "nightly-eval", "eval-v1", "eval-queued"),
    ("research-app", "feature-ablation", "ablation-v1", "research-running"),
    ("research-app", "feature-ablation", "ablation-v1", "research-queued"),
}
CPU_RUNS = {
    ("pipelines-app", "nightly-eval", "eval-v1", "eval-running"),
    ("pipelines-app", "nightly-eval", "eval-v1", "eval-completed"),
    ("research-app", "feature-ablation", "ablation-v1", "research-paused"),
    ("research-app", "feature-ablation", "ablation-v1", "research-failed"),
}

#: A scenario in the format written before compute clusters existed.
OLD_SCENARIO = """
tokens: [{token: old-token, user_id: u}]
users:
  - id: u
    apps:
      - id: a
        pipelines:
          - id: p
            versions:
              - id: v1
                runs: [{id: r1, status: JOB_RUNNING}]
"""


def code_name(code: int) -> str:
    return status_code_pb2.StatusCode.Name(code)


class Client:
    """The official stub, the emulator's default token, and the three listings."""

    def __init__(self, stub: Any, token: str) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Key {token}"),)

    def pipelines(self, app: str = "pipelines-app", user: str = USER, **fields: Any) -> Any:
        request = service_pb2.ListPipelinesRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id=user, app_id=app), **fields
        )
        return self.stub.ListPipelines(request, metadata=self.metadata, timeout=TIMEOUT)

    def versions(
        self, pipeline: str = "nightly-training", app: str = "pipelines-app", user: str = USER, **fields: Any
    ) -> Any:
        request = service_pb2.ListPipelineVersionsRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id=user, app_id=app), pipeline_id=pipeline, **fields
        )
        return self.stub.ListPipelineVersions(request, metadata=self.metadata, timeout=TIMEOUT)

    def runs(self, user: str = USER, app: str = "", **fields: Any) -> Any:
        request = service_pb2.ListPipelineVersionRunsRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id=user, app_id=app), **fields
        )
        return self.stub.ListPipelineVersionRuns(request, metadata=self.metadata, timeout=TIMEOUT)

    def on_nodepool(self, nodepool: str = "gpu-a100", cluster: str = "demo-cluster", **fields: Any) -> Any:
        return self.runs(compute_cluster_id=cluster, nodepool_id=nodepool, **fields)

    def post(self, run: Any, version: str = "v1", **fields: Any) -> Any:
        request = service_pb2.PostPipelineVersionRunsRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id="pipelines-app"),
            pipeline_id="nightly-training",
            pipeline_version_id=version,
            pipeline_version_runs=[run],
            **fields,
        )
        return self.stub.PostPipelineVersionRuns(request, metadata=self.metadata, timeout=TIMEOUT)


def placed(response: Any) -> set[tuple[str, str, str, str]]:
    """(app, pipeline, version, run) of each listed run, read from the run itself."""
    return {
        (run.app_id, run.pipeline_version.pipeline_id, run.pipeline_version.id, run.id)
        for run in response.pipeline_version_runs
    }


@contextlib.contextmanager
def serve(emulator: ClarifaiEmulator) -> Iterator[Client]:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=emulator.port)
    try:
        yield Client(service_pb2_grpc.V2Stub(channel), emulator.token)
    finally:
        channel.close()


@pytest.fixture
def client(clarifai_emulator: ClarifaiEmulator) -> Iterator[Client]:
    with serve(clarifai_emulator) as client:
        yield client


class TestListPipelines:
    def test_an_apps_pipelines_newest_first_ties_by_id(self, client: Client) -> None:
        response = client.pipelines()
        assert code_name(response.status.code) == "SUCCESS"
        assert [pipeline.id for pipeline in response.pipelines] == ["nightly-eval", "nightly-training"]
        for pipeline in response.pipelines:
            assert (pipeline.user_id, pipeline.app_id) == (USER, "pipelines-app")
            assert pipeline.created_at.seconds > 0
        assert [pipeline.id for pipeline in client.pipelines("research-app").pipelines] == [
            "feature-ablation"
        ]

    def test_pages_from_one_and_a_page_past_the_end_is_empty(self, client: Client) -> None:
        pages = [client.pipelines(page=page, per_page=1) for page in (1, 2, 3)]
        assert [[pipeline.id for pipeline in page.pipelines] for page in pages] == [
            ["nightly-eval"],
            ["nightly-training"],
            [],
        ]
        assert code_name(pages[2].status.code) == "SUCCESS"
        # Page 0 is page 1; per_page 0 is the default size.
        assert [pipeline.id for pipeline in client.pipelines(page=0, per_page=0).pipelines] == [
            "nightly-eval",
            "nightly-training",
        ]

    def test_a_pipeline_added_later_comes_first(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.advance(1)
        clarifai_emulator.add_pipeline("a-new-one", app="pipelines-app")
        assert [pipeline.id for pipeline in client.pipelines(user="me").pipelines] == [
            "a-new-one",
            "nightly-eval",
            "nightly-training",
        ]

    @pytest.mark.parametrize(
        ("user", "app", "code", "description"),
        [
            (USER, "nope", "CONN_DOES_NOT_EXIST", "app 'nope' not found for user 'demo-user'"),
            ("other-user", "private-app", "CONN_DOES_NOT_EXIST", "user 'other-user' not found"),
            ("nobody", "pipelines-app", "CONN_DOES_NOT_EXIST", "user 'nobody' not found"),
            (USER, "", "PIPELINE_INVALID_REQUEST", "missing required ids: user_app_id.app_id"),
            (
                "",
                "",
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: user_app_id.user_id, user_app_id.app_id",
            ),
        ],
    )
    def test_errors(self, client: Client, user: str, app: str, code: str, description: str) -> None:
        response = client.pipelines(app, user)
        assert (code_name(response.status.code), response.status.description) == (code, description)
        assert not response.pipelines


class TestListPipelineVersions:
    def test_a_pipelines_versions(self, client: Client) -> None:
        response = client.versions()
        assert [version.id for version in response.pipeline_versions] == ["v-fails", "v1"]
        for version in response.pipeline_versions:
            assert (version.user_id, version.app_id, version.pipeline_id) == (
                USER,
                "pipelines-app",
                "nightly-training",
            )
            assert version.created_at.seconds > 0
        other = client.versions("feature-ablation", "research-app")
        assert [version.id for version in other.pipeline_versions] == ["ablation-v1"]

    def test_paging_and_a_version_added_later(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.advance(1)
        clarifai_emulator.add_version("v2", pipeline="nightly-training", app="pipelines-app")
        pages = [client.versions(page=page, per_page=2).pipeline_versions for page in (1, 2, 3)]
        assert [[version.id for version in page] for page in pages] == [["v2", "v-fails"], ["v1"], []]

    @pytest.mark.parametrize(
        ("pipeline", "app", "code", "description"),
        [
            (
                "nope",
                "pipelines-app",
                "CONN_DOES_NOT_EXIST",
                "pipeline 'nope' not found in app 'pipelines-app'",
            ),
            (
                "nightly-training",
                "research-app",
                "CONN_DOES_NOT_EXIST",
                "pipeline 'nightly-training' not found in app 'research-app'",
            ),
            ("nightly-training", "nope", "CONN_DOES_NOT_EXIST", "app 'nope' not found for user 'demo-user'"),
            ("", "pipelines-app", "PIPELINE_INVALID_REQUEST", "missing required ids: pipeline_id"),
        ],
    )
    def test_errors(self, client: Client, pipeline: str, app: str, code: str, description: str) -> None:
        response = client.versions(pipeline, app)
        assert (code_name(response.status.code), response.status.description) == (code, description)
        assert not response.pipeline_versions


class TestRunsOnANodepool:
    def test_runs_across_apps_pipelines_and_versions(self, client: Client) -> None:
        response = client.on_nodepool("gpu-a100")
        assert code_name(response.status.code) == "SUCCESS"
        assert placed(response) == GPU_RUNS
        assert placed(client.on_nodepool("cpu-small")) == CPU_RUNS
        for run in response.pipeline_version_runs:
            # Each run says where it belongs, the way a run of the per-version listing does.
            assert (run.user_id, run.pipeline_version.user_id) == (USER, USER)
            assert run.pipeline_version.app_id == run.app_id
            assert [(nodepool.id, nodepool.compute_cluster.id) for nodepool in run.nodepools] == [
                ("gpu-a100", "demo-cluster")
            ]

    def test_me_and_status_filter(self, client: Client) -> None:
        running = client.on_nodepool("gpu-a100", status_codes=[status_code_pb2.JOB_RUNNING], user="me")
        assert {run.id for run in running.pipeline_version_runs} == {
            "run-running",
            "run-forever",
            "research-running",
        }
        paused_or_queued = client.on_nodepool(
            "cpu-small", status_codes=[status_code_pb2.JOB_PAUSED, status_code_pb2.JOB_QUEUED]
        )
        assert {run.id for run in paused_or_queued.pipeline_version_runs} == {"research-paused"}

    def test_pages_of_a_full_size_then_a_short_one_then_none(self, client: Client) -> None:
        pages = [client.on_nodepool(page=page, per_page=3) for page in (1, 2, 3, 4)]
        assert [len(page.pipeline_version_runs) for page in pages] == [3, 3, 1, 0]
        assert set().union(*(placed(page) for page in pages)) == GPU_RUNS
        assert code_name(pages[3].status.code) == "SUCCESS"

    def test_newest_first_and_runs_posted_or_added_later(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        clarifai_emulator.advance(1)
        clarifai_emulator.add_run(
            "added", "RUNNING", version="ablation-v1", app="research-app", nodepool="demo-cluster/cpu-small"
        )
        clarifai_emulator.advance(1)
        posted = resources_pb2.PipelineVersionRun(id="posted")
        selector = resources_pb2.RunnerSelector(
            nodepool=resources_pb2.Nodepool(
                id="cpu-small", compute_cluster=resources_pb2.ComputeCluster(id="demo-cluster")
            )
        )
        assert code_name(client.post(posted, runner_selector=selector).status.code) == "SUCCESS"
        listed = client.on_nodepool("cpu-small").pipeline_version_runs
        assert [run.id for run in listed[:2]] == ["posted", "added"]
        assert (listed[0].app_id, listed[1].app_id) == ("pipelines-app", "research-app")
        assert "posted" not in {run.id for run in client.on_nodepool("gpu-a100").pipeline_version_runs}

    def test_a_nodepool_named_without_its_cluster_is_found_in_the_users_clusters(
        self, client: Client
    ) -> None:
        response = client.post(
            resources_pb2.PipelineVersionRun(
                id="no-cluster", nodepools=[resources_pb2.Nodepool(id="gpu-a100")]
            )
        )
        assert code_name(response.status.code) == "SUCCESS"
        assert response.pipeline_version_runs[0].nodepools[0].compute_cluster.id == "demo-cluster"
        assert ("pipelines-app", "nightly-training", "v1", "no-cluster") in placed(
            client.on_nodepool("gpu-a100")
        )

    @pytest.mark.parametrize(
        ("fields", "code", "description"),
        [
            (
                {"compute_cluster_id": "demo-cluster", "nodepool_id": "tpu-v5"},
                "NODEPOOL_DOES_NOT_EXIST",
                "nodepool 'tpu-v5' not found in compute cluster 'demo-cluster'",
            ),
            (
                {"compute_cluster_id": "other-cluster", "nodepool_id": "gpu-a100"},
                "COMPUTE_CLUSTER_DOES_NOT_EXIST",
                "compute cluster 'other-cluster' not found for user 'demo-user'",
            ),
            (
                {"user": "other-user", "compute_cluster_id": "demo-cluster", "nodepool_id": "gpu-a100"},
                "CONN_DOES_NOT_EXIST",
                "user 'other-user' not found",
            ),
            (
                {"compute_cluster_id": "demo-cluster"},
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: nodepool_id",
            ),
            (
                {"nodepool_id": "gpu-a100"},
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: compute_cluster_id",
            ),
            (
                {"user": "", "compute_cluster_id": "demo-cluster", "nodepool_id": "gpu-a100"},
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: user_app_id.user_id",
            ),
            ({}, "PIPELINE_INVALID_REQUEST", "missing required ids: compute_cluster_id, nodepool_id"),
            (
                {"app": "pipelines-app", "compute_cluster_id": "demo-cluster", "nodepool_id": "gpu-a100"},
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: pipeline_id, pipeline_version_id",
            ),
            (
                {
                    "pipeline_version_id": "v1",
                    "compute_cluster_id": "demo-cluster",
                    "nodepool_id": "gpu-a100",
                },
                "PIPELINE_INVALID_REQUEST",
                "missing required ids: user_app_id.app_id, pipeline_id",
            ),
        ],
    )
    def test_errors(self, client: Client, fields: dict[str, Any], code: str, description: str) -> None:
        response = client.runs(**fields)
        assert (code_name(response.status.code), response.status.description) == (code, description)
        assert not response.pipeline_version_runs
        if code == "PIPELINE_INVALID_REQUEST":
            # The details say both ways of listing runs.
            assert "compute_cluster_id and nodepool_id" in response.status.details
            assert "pipeline_version_id" in response.status.details


class TestNodepoolsOfVersionListingsAndPosts:
    def test_the_per_version_listing_carries_its_runs_ids_and_filters_by_a_known_nodepool(
        self, client: Client
    ) -> None:
        response = client.runs(
            app="pipelines-app",
            pipeline_id="nightly-eval",
            pipeline_version_id="eval-v1",
            compute_cluster_id="demo-cluster",
            nodepool_id="cpu-small",
        )
        assert placed(response) == {run for run in CPU_RUNS if run[2] == "eval-v1"}
        assert {(run.user_id, run.pipeline_version.user_id) for run in response.pipeline_version_runs} == {
            (USER, USER)
        }
        unknown = client.runs(
            app="pipelines-app",
            pipeline_id="nightly-eval",
            pipeline_version_id="eval-v1",
            compute_cluster_id="demo-cluster",
            nodepool_id="tpu-v5",
        )
        assert code_name(unknown.status.code) == "NODEPOOL_DOES_NOT_EXIST"

    @pytest.mark.parametrize(
        ("nodepool", "cluster", "code"),
        [
            ("tpu-v5", "demo-cluster", "NODEPOOL_DOES_NOT_EXIST"),
            ("np-1", "cc-1", "COMPUTE_CLUSTER_DOES_NOT_EXIST"),
        ],
    )
    def test_a_post_to_a_nodepool_the_user_lacks_creates_nothing(
        self, client: Client, clarifai_emulator: ClarifaiEmulator, nodepool: str, cluster: str, code: str
    ) -> None:
        run = resources_pb2.PipelineVersionRun(id="misplaced")
        run.nodepools.add(id=nodepool).compute_cluster.id = cluster
        response = client.post(run)
        assert code_name(response.status.code) == code
        assert nodepool in response.status.description or cluster in response.status.description
        assert "misplaced" not in clarifai_emulator.states(version="v1")

    @pytest.mark.clarifai_scenario(OLD_SCENARIO)
    def test_a_user_without_compute_clusters_accepts_any_nodepool(
        self, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        with serve(clarifai_emulator) as client:
            self.check_any_nodepool(client, clarifai_emulator)

    @staticmethod
    def check_any_nodepool(client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        request = service_pb2.PostPipelineVersionRunsRequest(
            user_app_id=resources_pb2.UserAppIDSet(user_id="u", app_id="a"),
            pipeline_id="p",
            pipeline_version_id="v1",
        )
        request.pipeline_version_runs.add(id="anywhere").nodepools.add(id="np-1").compute_cluster.id = "cc-1"
        posted = client.stub.PostPipelineVersionRuns(request, metadata=client.metadata, timeout=TIMEOUT)
        assert code_name(posted.status.code) == "SUCCESS"
        listed = client.runs(user="u", compute_cluster_id="cc-1", nodepool_id="np-1")
        assert [run.id for run in listed.pipeline_version_runs] == ["anywhere"]
        empty = client.runs(user="u", compute_cluster_id="cc-9", nodepool_id="np-9")
        assert (code_name(empty.status.code), len(empty.pipeline_version_runs)) == ("SUCCESS", 0)
        # Declaring a nodepool at run time makes the user strict from then on.
        clarifai_emulator.add_nodepool("cc-1/np-1", user="u")
        assert clarifai_emulator.nodepools(user="u") == ["cc-1/np-1"]
        strict = client.runs(user="u", compute_cluster_id="cc-9", nodepool_id="np-9")
        assert code_name(strict.status.code) == "COMPUTE_CLUSTER_DOES_NOT_EXIST"


class TestServedLikeEveryRpc:
    def test_requests_are_counted_by_method(
        self, client: Client, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        client.pipelines()
        client.versions()
        client.versions()
        client.on_nodepool()
        assert len(clarifai_emulator.requests(method="ListPipelines")) == 1
        assert clarifai_emulator.requests.count("ListPipelineVersions") == 2
        assert clarifai_emulator.requests.count("ListPipelineVersionRuns") == 1
        assert [record.code for record in clarifai_emulator.requests(method="ListPipelines")] == ["SUCCESS"]

    def test_tokens_and_scopes(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        client.metadata = (("authorization", "Key wrong-token"),)
        bad = client.pipelines()
        assert code_name(bad.status.code) == "CONN_KEY_INVALID"
        assert "wrong-token" not in str(bad)
        client.metadata = (("authorization", "Key emulator-pat-readonly"),)
        assert code_name(client.versions().status.code) == "SUCCESS"
        assert code_name(client.on_nodepool().status.code) == "SUCCESS"

    def test_faults_name_the_new_rpcs(self, client: Client, clarifai_emulator: ClarifaiEmulator) -> None:
        clarifai_emulator.faults.add(kind="internal", method="ListPipelineVersions", count=1)
        assert code_name(client.versions().status.code) == "INTERNAL_SERVER_ISSUE"
        assert code_name(client.versions().status.code) == "SUCCESS"
        assert code_name(client.pipelines().status.code) == "SUCCESS"

    def test_the_rate_limit_counts_them(self) -> None:
        rate_clock = ManualClock(start=0)
        scenario = Scenario.from_yaml_text(
            OLD_SCENARIO.replace("tokens:", "rate_limit_per_second: 2\ntokens:")
        )
        emulator = ClarifaiEmulator(scenario, clock=ManualClock(), rate_limit_clock=rate_clock)
        with emulator, serve(emulator) as client:
            codes = [code_name(client.pipelines("a", "u").status.code) for _ in range(3)]
            rate_clock.advance(1.5)
            codes.append(code_name(client.versions("p", "a", "u").status.code))
        assert codes == ["SUCCESS", "SUCCESS", "CONN_THROTTLED", "SUCCESS"]


class TestScenarioNodepools:
    def test_old_scenario_files_still_load(self, tmp_path: Path) -> None:
        path = tmp_path / "old.yaml"
        path.write_text(OLD_SCENARIO, encoding="utf-8")
        scenario = Scenario.from_yaml(path)
        assert scenario.users[0].compute_clusters == ()
        run = scenario.users[0].apps[0].pipelines[0].versions[0].runs[0]
        assert (run.compute_cluster_id, run.nodepool_id) == ("", "")
        emulator = ClarifaiEmulator(scenario, clock=ManualClock())
        assert emulator.run("r1").nodepool_id == ""
        assert emulator.nodepools(user="u") == []

    def test_both_bundled_scenarios_declare_demo_cluster_and_seat_runs_on_it(self) -> None:
        for name in ("default", "scripted"):
            emulator = ClarifaiEmulator(Scenario.bundled(name), clock=ManualClock())
            assert emulator.nodepools() == ["demo-cluster/gpu-a100", "demo-cluster/cpu-small"], name
            assert emulator.nodepools(user="other-user") == [], name
            on_gpu = {
                (run.app_id, run.pipeline_id, run.pipeline_version_id, run.id)
                for run in emulator.runs()
                if (run.compute_cluster_id, run.nodepool_id) == ("demo-cluster", "gpu-a100")
            }
            assert on_gpu == GPU_RUNS, name
            states = {run.id: str(run.state) for run in emulator.runs()}
            assert {states["run-running"], states["eval-running"], states["research-running"]} == {
                "JOB_RUNNING"
            }
            assert {states["run-queued"], states["eval-queued"], states["research-queued"]} == {"JOB_QUEUED"}

    def test_a_seeded_run_on_a_declared_nodepool(self) -> None:
        text = OLD_SCENARIO.replace(
            "  - id: u\n",
            "  - id: u\n    compute_clusters: [{id: cc, nodepools: [{id: np}, {id: np2}]}]\n",
        ).replace("{id: r1, status: JOB_RUNNING}", "{id: r1, status: JOB_RUNNING, nodepool: cc/np2}")
        scenario = Scenario.from_yaml_text(text)
        (cluster,) = scenario.users[0].compute_clusters
        assert (cluster.id, [nodepool.id for nodepool in cluster.nodepools]) == ("cc", ["np", "np2"])
        run = ClarifaiEmulator(scenario, clock=ManualClock()).run("r1")
        assert (run.compute_cluster_id, run.nodepool_id) == ("cc", "np2")

    @pytest.mark.parametrize(
        ("user_keys", "run_keys", "path", "phrase"),
        [
            ("", ", nodepool: cc/np", "runs[0].nodepool", "no nodepool 'np' in compute cluster 'cc'"),
            (
                "compute_clusters: [{id: cc, nodepools: [{id: np}]}]",
                ", nodepool: cc/np9",
                "runs[0].nodepool",
                "no nodepool 'np9'",
            ),
            (
                "compute_clusters: [{id: cc, nodepools: [{id: np}]}]",
                ", nodepool: np",
                "runs[0].nodepool",
                "must be '<compute_cluster_id>/<nodepool_id>'",
            ),
            (
                "compute_clusters: [{id: cc, nodepools: [{id: np}]}]",
                ", nodepool: cc/np/x",
                "runs[0].nodepool",
                "must be '<compute_cluster_id>/<nodepool_id>'",
            ),
            (
                "compute_clusters: [{id: c/c, nodepools: [{id: np}]}]",
                "",
                "compute_clusters[0].id",
                "must not contain '/'",
            ),
            (
                "compute_clusters: [{id: cc, nodepools: [{id: np}, {id: np}]}]",
                "",
                "nodepools[1].id",
                "duplicate id 'np'",
            ),
            ("compute_clusters: [{id: cc, nodes: []}]", "", "compute_clusters[0].nodes", "unknown key"),
            (
                "compute_clusters: [{id: cc, nodepools: [{id: 5}]}]",
                "",
                "nodepools[0].id",
                "must be a non-empty string",
            ),
        ],
    )
    def test_invalid_compute_clusters_and_run_nodepools_name_the_bad_key(
        self, user_keys: str, run_keys: str, path: str, phrase: str
    ) -> None:
        text = OLD_SCENARIO.replace(
            "{id: r1, status: JOB_RUNNING}", "{id: r1, status: JOB_RUNNING" + run_keys + "}"
        )
        if user_keys:
            text = text.replace("  - id: u\n", f"  - id: u\n    {user_keys}\n")
        with pytest.raises(ScenarioError) as raised:
            Scenario.from_yaml_text(text)
        assert raised.value.path.endswith(path)
        assert raised.value.path.startswith("users[0].")
        assert phrase in raised.value.message


class TestInspection:
    def test_add_run_on_a_nodepool_must_name_one_the_user_has(
        self, clarifai_emulator: ClarifaiEmulator
    ) -> None:
        run = clarifai_emulator.add_run("on-gpu", version="eval-v1", nodepool="demo-cluster/gpu-a100")
        assert (run.compute_cluster_id, run.nodepool_id) == ("demo-cluster", "gpu-a100")
        with pytest.raises(KeyError, match="nodepool 'tpu-v5' not found in compute cluster 'demo-cluster'"):
            clarifai_emulator.add_run("nowhere", version="eval-v1", nodepool="demo-cluster/tpu-v5")
        with pytest.raises(ValueError, match="nodepool must be '<compute_cluster_id>/<nodepool_id>'"):
            clarifai_emulator.add_run("malformed", version="eval-v1", nodepool="gpu-a100")
        assert set(clarifai_emulator.states(version="eval-v1")) == {
            "eval-running",
            "eval-queued",
            "eval-completed",
            "on-gpu",
        }

    def test_added_pipelines_versions_and_nodepools(self, clarifai_emulator: ClarifaiEmulator) -> None:
        clarifai_emulator.add_pipeline("fresh", app="new-app")
        clarifai_emulator.add_version(
            "fresh-v1", pipeline="fresh", app="new-app", post_script={"running_seconds": 1}
        )
        clarifai_emulator.add_nodepool("demo-cluster/tpu-v5")
        clarifai_emulator.add_nodepool("edge/arm")
        run = clarifai_emulator.add_run("fresh-run", version="fresh-v1", nodepool="edge/arm")
        assert (run.app_id, run.pipeline_id, run.compute_cluster_id) == ("new-app", "fresh", "edge")
        assert clarifai_emulator.nodepools() == [
            "demo-cluster/gpu-a100",
            "demo-cluster/cpu-small",
            "demo-cluster/tpu-v5",
            "edge/arm",
        ]
        with pytest.raises(ValueError, match="already exists"):
            clarifai_emulator.add_pipeline("fresh", app="new-app")
        with pytest.raises(ValueError, match="already exists"):
            clarifai_emulator.add_version("fresh-v1", pipeline="fresh", app="new-app")
        with pytest.raises(KeyError, match="pipeline 'nope' not found"):
            clarifai_emulator.add_version("v1", pipeline="nope", app="new-app")
        with pytest.raises(KeyError, match="user 'nobody' not found"):
            clarifai_emulator.add_pipeline("p", app="a", user="nobody")
        with pytest.raises(ValueError, match="name one user"):
            clarifai_emulator.add_nodepool("cc/np", user="*")


def test_the_command_lines_banner_shows_nodepools(clarifai_emulator: ClarifaiEmulator) -> None:
    from airflow_provider_clarifai.emulator.__main__ import banner

    lines = [line.strip() for line in banner(clarifai_emulator).splitlines()]
    assert "demo-user: demo-cluster/gpu-a100, demo-cluster/cpu-small" in lines
    by_run = {line.split()[0]: line for line in lines if line.startswith(("run-", "research-"))}
    assert by_run["research-paused"].endswith("JOB_PAUSED   on demo-cluster/cpu-small")
    assert by_run["run-completed"].split() == ["run-completed", "JOB_COMPLETED"]
