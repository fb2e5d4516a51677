"""The built distributions install and register the provider, away from the checkout.

The sdist and wheel are built from the checkout with ``uv build`` (the wheel from the sdist, as an index
would), ``twine check`` reads both, and the wheel goes into a new, empty virtualenv with ``--no-deps``.
That virtualenv sees the test environment's site-packages only through a ``.pth`` line appended *after*
its own, so Airflow and the other dependencies come from there while ``airflow_provider_clarifai`` and its
metadata come from the wheel (the editable install's own ``.pth`` files are not processed, so the checkout
is not on ``sys.path``). The check runs with ``python -I``: no ``PYTHONPATH``, no working directory and no
user site on ``sys.path``.

It needs ``uv``: ``scripts/test.sh`` exports its path as ``CLARIFAI_PROVIDER_UV``; otherwise the one in
``.venvs/tools`` or on ``PATH`` is used, and the test is skipped when there is none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.airflow_dags import AIRFLOW_3

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def find_uv() -> str:
    configured = os.environ.get("CLARIFAI_PROVIDER_UV")
    if configured:
        assert Path(configured).is_file(), f"CLARIFAI_PROVIDER_UV={configured} does not exist"
        return configured
    for candidate in (ROOT / ".venvs" / "tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("uv is not installed (scripts/test.sh installs it into .venvs/tools)")


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def uv() -> str:
    return find_uv()


@pytest.fixture(scope="module")
def dists(uv, tmp_path_factory) -> dict[str, Path]:
    import fcntl

    out = tmp_path_factory.mktemp("dist")
    # The build writes into the checkout (egg-info): one build at a time, when both environments' suites
    # run at once (scripts/test.sh).
    with open(ROOT / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run(uv, "build", "--quiet", "--out-dir", out, ROOT)
    (wheel,) = out.glob("airflow_provider_clarifai-*.whl")
    (sdist,) = out.glob("airflow_provider_clarifai-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


# What the clean interpreter reports about the provider it finds. Printed as JSON for the test to judge.
CHECK = """
import importlib, json, sys
from importlib import metadata

import airflow_provider_clarifai
from airflow.providers_manager import ProvidersManager

dist = metadata.distribution("airflow-provider-clarifai")
manager = ProvidersManager()
provider = manager.providers.get("airflow-provider-clarifai")
hook_info = manager.hooks.get("clarifai")
hook_module = importlib.import_module("airflow_provider_clarifai.hooks.clarifai")
from importlib.resources import files
print(json.dumps({
    "package_file": airflow_provider_clarifai.__file__,
    "hook_file": hook_module.__file__,
    "dist_location": str(dist.locate_file("")),
    "direct_url": dist.read_text("direct_url.json"),
    "entry_points": sorted(
        ep.value for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_clarifai")
    ),
    "provider_version": provider.version if provider else None,
    "hook_class_name": hook_info.hook_class_name if hook_info else None,
    "connection_type": hook_info.connection_type if hook_info else None,
    "default_scenario": files("airflow_provider_clarifai.emulator").joinpath(
        "scenarios/default.yaml"
    ).is_file(),
    "sys_path": sys.path,
}))
"""


def test_sdist_and_wheel_pass_twine_check(uv, dists):
    if not AIRFLOW_3:
        pytest.skip("the same distributions are checked once, on the Airflow 3 environment")
    # twine runs in a tool environment of its own: nothing is added to the test environment.
    result = run(uv, "tool", "run", "--quiet", "twine", "check", "--strict", dists["sdist"], dists["wheel"])
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_metadata_carries_the_readme(dists):
    import zipfile

    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata_text = wheel.read(metadata_name).decode()
    assert "Description-Content-Type: text/markdown" in metadata_text
    assert "# airflow-provider-clarifai" in metadata_text
    # The package and its data only: no tests, demo or example DAGs.
    assert "airflow_provider_clarifai/py.typed" in names
    assert "airflow_provider_clarifai/emulator/scenarios/default.yaml" in names
    assert not [name for name in names if name.split("/")[0] in ("tests", "demo", "example_dags", "docs")]


def test_wheel_in_a_clean_venv_registers_the_provider(uv, dists, tmp_path):
    venv = tmp_path / "venv"
    run(uv, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(uv, "pip", "install", "--quiet", "--no-deps", "--python", python, dists["wheel"])
    site_packages = Path(
        run(python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    # Airflow and the other dependencies: the test environment's, after the venv's own site-packages.
    (site_packages / "zz_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "AIRFLOW_CONN_"))
    }
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    result = run(python, "-I", "-c", CHECK, cwd=tmp_path, env=env)
    report = json.loads(result.stdout.strip().splitlines()[-1])

    inside = str(site_packages)
    assert report["package_file"].startswith(inside), report["package_file"]
    assert report["hook_file"].startswith(inside), report["hook_file"]
    assert report["dist_location"].startswith(inside), report["dist_location"]
    assert report["direct_url"] is None or '"editable": true' not in report["direct_url"]
    assert not [entry for entry in report["sys_path"] if Path(entry).resolve() == ROOT]
    assert report["entry_points"] == ["airflow_provider_clarifai.get_provider_info:get_provider_info"]
    assert report["provider_version"] == dists["wheel"].name.split("-")[1]
    assert report["connection_type"] == "clarifai"
    assert report["hook_class_name"] == "airflow_provider_clarifai.hooks.clarifai.ClarifaiHook"
    assert report["default_scenario"], "the wheel has no bundled default scenario"
