"""ClarifaiHook's listings against the emulator over real loopback gRPC, each sync and asyncio: an app's
pipelines, a pipeline's versions, and the runs on a nodepool."""

from __future__ import annotations

import dataclasses
import math

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError, ClarifaiNotFoundError
from airflow_provider_clarifai.hooks.clarifai import ClarifaiHook
from airflow_provider_clarifai.runs import PipelineInfo, PipelineRun, PipelineVersionInfo
from airflow_provider_clarifai.status import PipelineRunStatus
from tests.hooks.conftest import FAST_RETRIES, IDS

pytestmark = pytest.mark.integration

USER = "demo-user"
#: The bundled scenario's runs on demo-cluster/gpu-a100: (app, pipeline, version, run).
GPU_RUNS = {
    ("pipelines-app", "nightly-training", "v1", "run-queued"),
    ("pipelines-app", "nightly-training", "v1", "run-running"),
    ("pipelines-app", "nightly-training", "v1", "run-forever"),
    ("pipelines-app", "nightly-training", "v1", "run-paused"),
    ("pipelines-app", "nightly-eval", "eval-v1", "eval-queued"),
    ("research-app", "feature-ablation", "ablation-v1", "research-running"),
    ("research-app", "feature-ablation", "ablation-v1", "research-queued"),
}


@pytest.fixture
def hook(emulator):
    with ClarifaiHook(retry_policy=FAST_RETRIES) as hook:
        yield hook


def placed(runs: list[PipelineRun]) -> set[tuple[str, str, str, str]]:
    return {(run.app_id, run.pipeline_id, run.pipeline_version_id, run.run_id) for run in runs}


# Pipelines and versions ---------------------------------------------------------------------------


def test_list_pipelines_reads_every_page(hook, call, emulator):
    pipelines = call(hook, "list_pipelines", USER, "pipelines-app", per_page=1)
    assert [pipeline.pipeline_id for pipeline in pipelines] == ["nightly-eval", "nightly-training"]
    assert all(isinstance(pipeline, PipelineInfo) for pipeline in pipelines)
    assert {(pipeline.user_id, pipeline.app_id) for pipeline in pipelines} == {(USER, "pipelines-app")}
    assert all(pipeline.created_at is not None for pipeline in pipelines)
    # Two full pages of one, then the empty page that ends the listing.
    assert [record.code for record in emulator.requests(method="ListPipelines")] == ["SUCCESS"] * 3
    summary = pipelines[0].to_dict()
    assert summary == {
        "user_id": USER,
        "app_id": "pipelines-app",
        "pipeline_id": "nightly-eval",
        "created_at": pipelines[0].created_at.isoformat(),
    }


def test_list_pipeline_versions_and_a_short_last_page(hook, call, emulator):
    emulator.add_version("v2", pipeline="nightly-training", app="pipelines-app")
    versions = call(hook, "list_pipeline_versions", USER, "pipelines-app", "nightly-training", per_page=2)
    assert sorted(version.pipeline_version_id for version in versions) == ["v-fails", "v1", "v2"]
    assert all(isinstance(version, PipelineVersionInfo) for version in versions)
    assert {(v.user_id, v.app_id, v.pipeline_id) for v in versions} == {
        (USER, "pipelines-app", "nightly-training")
    }
    # A full page, then a short one: the short page ends the listing.
    assert emulator.requests.count("ListPipelineVersions") == 2
    assert versions[0].to_dict()["pipeline_version_id"] == versions[0].pipeline_version_id


def test_max_items_bounds_the_pages_read(hook, call, emulator):
    for index in range(5):
        emulator.add_pipeline(f"extra-{index}", app="research-app")
    pipelines = call(hook, "list_pipelines", USER, "research-app", per_page=2, max_items=3)
    assert len(pipelines) == 3
    assert emulator.requests.count("ListPipelines") == math.ceil(3 / 2)
    versions = call(hook, "list_pipeline_versions", USER, "pipelines-app", "nightly-training", max_items=1)
    assert len(versions) == 1
    assert emulator.requests.count("ListPipelineVersions") == 1


@pytest.mark.parametrize(
    ("method", "args", "phrase"),
    [
        ("list_pipelines", (USER, "no-such-app"), "app 'no-such-app' not found for user 'demo-user'"),
        ("list_pipelines", ("other-user", "private-app"), "user 'other-user' not found"),
        (
            "list_pipeline_versions",
            (USER, "pipelines-app", "no-such-pipeline"),
            "pipeline 'no-such-pipeline' not found in app 'pipelines-app'",
        ),
        (
            "list_pipeline_versions",
            (USER, "research-app", "nightly-training"),
            "pipeline 'nightly-training' not found in app 'research-app'",
        ),
    ],
)
def test_unknown_apps_and_pipelines_are_not_found(hook, call, emulator, method, args, phrase):
    with pytest.raises(ClarifaiNotFoundError) as raised:
        call(hook, method, *args)
    assert phrase in str(raised.value)
    assert raised.value.code_name == "CONN_DOES_NOT_EXIST"
    assert emulator.token not in str(raised.value)
    # Not found is final: one request, no retry.
    assert len(emulator.requests) == 1


# Runs on a nodepool -------------------------------------------------------------------------------


def test_list_nodepool_runs_reads_every_page_and_fills_each_runs_ids(hook, call, emulator):
    runs = call(hook, "list_nodepool_runs", USER, "demo-cluster", "gpu-a100", per_page=2)
    assert placed(runs) == GPU_RUNS
    assert len(runs) == len(GPU_RUNS)
    for run in runs:
        assert (run.user_id, run.nodepool_id, run.compute_cluster_id) == (USER, "gpu-a100", "demo-cluster")
        assert run.created_at is not None
    by_id = {run.run_id: run for run in runs}
    assert by_id["research-running"].status is PipelineRunStatus.RUNNING
    assert by_id["eval-queued"].to_dict()["pipeline_id"] == "nightly-eval"
    # 7 runs, 2 a page: three full pages and a short one.
    assert emulator.requests.count("ListPipelineVersionRuns") == 4


def test_max_runs_bounds_the_pages_read(hook, call, emulator):
    runs = call(hook, "list_nodepool_runs", USER, "demo-cluster", "gpu-a100", per_page=2, max_runs=3)
    assert len(runs) == 3
    assert placed(runs) < GPU_RUNS
    assert emulator.requests.count("ListPipelineVersionRuns") == math.ceil(3 / 2)


def test_list_nodepool_runs_by_status(hook, call, emulator):
    runs = call(hook, "list_nodepool_runs", USER, "demo-cluster", "cpu-small", statuses=["RUNNING", "PAUSED"])
    assert {(run.run_id, run.status_name) for run in runs} == {
        ("eval-running", "JOB_RUNNING"),
        ("research-paused", "JOB_PAUSED"),
    }
    assert emulator.requests.count("ListPipelineVersionRuns") == 1


def test_the_per_version_listing_fills_the_same_fields(hook, call, emulator):
    runs = call(hook, "list_runs", IDS, nodepool_id="gpu-a100", compute_cluster_id="demo-cluster")
    assert {run.run_id for run in runs} == {"run-queued", "run-running", "run-forever", "run-paused"}
    assert {(run.app_id, run.pipeline_id, run.pipeline_version_id, run.nodepool_id) for run in runs} == {
        ("pipelines-app", "nightly-training", "v1", "gpu-a100")
    }


@pytest.mark.parametrize(
    ("user", "cluster", "nodepool", "code", "phrase"),
    [
        (USER, "demo-cluster", "tpu-v5", "NODEPOOL_DOES_NOT_EXIST", "nodepool 'tpu-v5' not found"),
        (
            USER,
            "elsewhere",
            "gpu-a100",
            "COMPUTE_CLUSTER_DOES_NOT_EXIST",
            "compute cluster 'elsewhere' not found",
        ),
        ("other-user", "demo-cluster", "gpu-a100", "CONN_DOES_NOT_EXIST", "user 'other-user' not found"),
    ],
)
def test_an_unknown_nodepool_is_not_found_and_says_what_to_check(
    hook, call, emulator, user, cluster, nodepool, code, phrase
):
    with pytest.raises(ClarifaiNotFoundError) as raised:
        call(hook, "list_nodepool_runs", user, cluster, nodepool)
    message = str(raised.value)
    assert raised.value.code_name == code
    assert phrase in message
    assert f"Nodepool {nodepool!r} of compute cluster {cluster!r} was not found for user {user!r}" in message
    assert "check nodepool_id and compute_cluster_id" in message
    assert "the Airflow connection's token must act as that user" in message
    assert raised.value.method == "ListPipelineVersionRuns"
    assert raised.value.req_id
    assert emulator.token not in message
    assert emulator.token not in repr(raised.value)
    assert len(emulator.requests) == 1


# Arguments, retries and the stub -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "phrase"),
    [
        ("list_pipelines", (USER, ""), {}, "app_id is required"),
        ("list_pipelines", (None, "pipelines-app"), {}, "user_id is required"),
        ("list_pipelines", ("demo user", "pipelines-app"), {}, "user_id contains whitespace"),
        ("list_pipeline_versions", (USER, "pipelines-app", "a/b"), {}, "pipeline_id contains '/'"),
        (
            "list_pipelines",
            (USER, "pipelines-app"),
            {"per_page": 0},
            "per_page must be a whole number from 1",
        ),
        (
            "list_pipelines",
            (USER, "pipelines-app"),
            {"per_page": 1001},
            "per_page must be a whole number from 1",
        ),
        (
            "list_pipelines",
            (USER, "pipelines-app"),
            {"max_items": 0},
            "max_items must be a whole number >= 1",
        ),
        ("list_pipeline_versions", (USER, "a", "p"), {"max_items": True}, "max_items must be a whole number"),
        ("list_nodepool_runs", (USER, "demo-cluster", 5), {}, "nodepool_id is an int"),
        ("list_nodepool_runs", (USER, " ", "gpu-a100"), {}, "compute_cluster_id is only whitespace"),
        ("list_nodepool_runs", (USER, "c", "n"), {"max_runs": -1}, "max_runs must be a whole number >= 1"),
        ("list_nodepool_runs", (USER, "c", "n"), {"statuses": ["SLEEPING"]}, "Invalid statuses filter"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(hook, call, emulator, method, args, kwargs, phrase):
    with pytest.raises(ClarifaiConfigurationError) as raised:
        call(hook, method, *args, **kwargs)
    assert phrase in str(raised.value)
    assert len(emulator.requests) == 0


def test_a_transient_failure_is_retried_by_the_hooks_one_retry_core(hook, call, emulator):
    emulator.faults.add(kind="unavailable", method="ListPipelines", count=1)
    emulator.faults.add(kind="internal", method="ListPipelineVersionRuns", count=1)
    assert [p.pipeline_id for p in call(hook, "list_pipelines", USER, "research-app")] == ["feature-ablation"]
    assert placed(call(hook, "list_nodepool_runs", USER, "demo-cluster", "gpu-a100")) == GPU_RUNS
    assert [record.grpc_code for record in emulator.requests(method="ListPipelines")] == ["UNAVAILABLE", "OK"]
    assert [record.code for record in emulator.requests(method="ListPipelineVersionRuns")] == [
        "INTERNAL_SERVER_ISSUE",
        "SUCCESS",
    ]
    # Every attempt carried a deadline.
    assert all(record.deadline_seconds is not None for record in emulator.requests)


def test_a_hook_whose_stub_was_made_before_its_first_listing(hook, call, emulator):
    # The hook (sync) or the loop (asyncio) made its stub for another RPC first; the listing still works.
    assert call(hook, "get_run", IDS, "run-running").run_id == "run-running"
    pipelines = call(hook, "list_pipelines", USER, "pipelines-app")
    assert len(pipelines) == 2
    assert call(hook, "get_run", IDS, "run-paused").status is PipelineRunStatus.PAUSED


def test_the_dataclasses_are_frozen():
    info = PipelineVersionInfo(USER, "a", "p", "v")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.pipeline_id = "q"  # type: ignore[misc]
    assert info.to_dict() == {
        "user_id": USER,
        "app_id": "a",
        "pipeline_id": "p",
        "pipeline_version_id": "v",
        "created_at": None,
    }
    assert PipelineInfo(USER, "a", "p").to_dict()["created_at"] is None
