"""What importing the provider adds to parsing a DAG file.

Every DAG file is parsed again and again by the dag processor, so importing the provider's operators,
sensor and trigger must stay cheap: grpc and clarifai_grpc load on first use, not at import. This
script times fresh interpreters (median of N) importing what a DAG file needs from Airflow alone, and
then the same plus the provider's modules, and prints both, the difference and the ratio. It also
checks that no heavy module was pulled in.

Usage: python benchmarks/import_cost.py [--runs 21]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

# What any operator-based DAG file imports from Airflow, provider or not.
BASELINE = (
    "import airflow\nfrom airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator\n"
)
# What a DAG file imports to use the provider (the trigger and the hook load in the triggerer and at
# run time, not at parse time).
PROVIDER_MODULES = [
    "airflow_provider_clarifai.operators.clarifai",
    "airflow_provider_clarifai.sensors.clarifai",
]
HEAVY = ["grpc", "clarifai_grpc", "google.protobuf"]

# Times the baseline, then the provider's modules on top of it, in one process: the second figure is
# what the provider adds, free of the process-to-process noise of Airflow's own start-up.
PROBE = """
import json, sys, time
start = time.perf_counter()
{baseline}
middle = time.perf_counter()
{provider}
end = time.perf_counter()
print(json.dumps({{"baseline": middle - start, "added": end - middle,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def existing_modules() -> list[str]:
    found = []
    for name in PROVIDER_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except ModuleNotFoundError:
            continue
    return found


def time_import(provider: str, runs: int, env: dict[str, str]) -> tuple[float, float, list[str]]:
    baseline_samples, added_samples = [], []
    heavy: list[str] = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(baseline=BASELINE, provider=provider, heavy=HEAVY)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        baseline_samples.append(result["baseline"])
        added_samples.append(result["added"])
        heavy = result["heavy"]
    return statistics.median(baseline_samples), statistics.median(added_samples), heavy


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21, help="fresh interpreters per measurement")
    args = parser.parse_args()

    modules = existing_modules()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")
        # Measure what a deployment sees: pip writes byte-code at install, so nothing is compiled at
        # parse time. (Some shells set PYTHONDONTWRITEBYTECODE, which would time the compiler instead.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        provider = "".join(f"import {name}\n" for name in modules)
        time_import(provider, 2, env)  # warm-up: writes airflow.cfg and byte-code caches
        baseline, added, heavy = time_import(provider, args.runs, env)

    print(f"modules imported:            {', '.join(modules)}")
    print(f"Airflow's own imports:       {baseline * 1000:8.1f} ms  (median of {args.runs} fresh processes)")
    print(f"added by the provider:       {added * 1000:8.1f} ms  (ratio {(baseline + added) / baseline:.4f})")
    print(f"heavy modules loaded:        {', '.join(heavy) if heavy else 'none'}")
    print("budget: at most 10 ms added, and no grpc / clarifai_grpc / protobuf at import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
