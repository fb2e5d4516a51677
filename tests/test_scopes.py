"""Scope ids: explicit, else config-lock.yaml, else the connection; what each scope needs."""

from __future__ import annotations

import pytest

from airflow_provider_clarifai.exceptions import ClarifaiConfigurationError
from airflow_provider_clarifai.scopes import RunScope, ScopeIds, resolve_scope

NONE = dict.fromkeys(
    ("user_id", "app_id", "pipeline_id", "pipeline_version_id", "compute_cluster_id", "nodepool_id")
)


def resolve(scope: RunScope, lock: str | None = None, **given: str) -> ScopeIds:
    return resolve_scope(
        scope,
        {**NONE, **given},
        config_lock_path=lock,
        base_dir=None,
        default_user_id="conn-user",
        default_app_id="conn-app",
        conn_id="clarifai_default",
    )


def test_each_scope_takes_only_the_ids_it_needs(tmp_path):
    lock = tmp_path / "config-lock.yaml"
    lock.write_text(
        "pipeline:\n  id: lock-pipeline\n  user_id: lock-user\n  app_id: lock-app\n  version_id: v9\n"
    )
    assert resolve(RunScope.VERSION, str(lock), pipeline_version_id="v1") == ScopeIds(
        RunScope.VERSION, "lock-user", "lock-app", "lock-pipeline", "v1"
    )
    assert resolve(RunScope.PIPELINE, str(lock)) == ScopeIds(
        RunScope.PIPELINE, "lock-user", "lock-app", "lock-pipeline"
    )
    assert resolve(RunScope.APP) == ScopeIds(RunScope.APP, "conn-user", "conn-app")
    assert resolve(RunScope.NODEPOOL, compute_cluster_id="c", nodepool_id="n") == ScopeIds(
        RunScope.NODEPOOL, "conn-user", compute_cluster_id="c", nodepool_id="n"
    )


@pytest.mark.parametrize(
    ("scope", "given", "phrase"),
    [
        (RunScope.NODEPOOL, {"compute_cluster_id": "c"}, "needs nodepool_id"),
        (RunScope.NODEPOOL, {}, "needs compute_cluster_id, nodepool_id"),
        (RunScope.PIPELINE, {}, "needs pipeline_id"),
        (RunScope.NODEPOOL, {"compute_cluster_id": "c", "nodepool_id": "a b"}, "nodepool_id"),
    ],
)
def test_a_missing_or_bad_id_is_named(scope, given, phrase):
    with pytest.raises(ClarifaiConfigurationError) as raised:
        resolve(scope, **given)
    assert phrase in str(raised.value)


def test_a_scope_name_is_checked():
    with pytest.raises(ClarifaiConfigurationError, match="scope must be one of 'version', 'pipeline'"):
        RunScope.parse("cluster")
