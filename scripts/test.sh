#!/usr/bin/env bash
# The project's test command. On a fresh machine it builds what it needs and runs everything:
#   - a tool environment with uv (from the package registry), then one virtualenv per Airflow line:
#       newest: the newest Airflow 3.x with the newest dependencies;
#       oldest: Airflow 2.11 with the oldest common-compat and clarifai-grpc this provider claims;
#   - ruff, mypy, the docstring check (flake8 + pydoclint) and the Sphinx docs (-W) on the newest;
#   - the whole pytest suite on both, then benchmarks/trigger_burst.py as a check.
# Usage: scripts/test.sh [--fast] [--env newest|oldest] [pytest args...]
#   --fast     unit tests only (skips tests marked integration or e2e), no linters, no benchmark
#   --env E    only that environment
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venvs=${CLARIFAI_PROVIDER_VENVS:-$root/.venvs}

fast=0
envs=(newest oldest)
pytest_args=()
while (($#)); do
  case "$1" in
    --fast) fast=1 ;;
    --env) envs=("$2"); shift ;;
    *) pytest_args+=("$1") ;;
  esac
  shift
done

# shellcheck source=scripts/_envs.sh
source "$root/scripts/_envs.sh"

status=0
for env in "${envs[@]}"; do
  ensure_env "$env"
  py="$venvs/$env/bin/python"
  if ((fast == 0)) && [[ $env == newest ]]; then
    echo "== lint ($env)"
    "$venvs/$env/bin/ruff" check . || status=1
    "$venvs/$env/bin/ruff" format --check . || status=1
    "$venvs/$env/bin/mypy" || status=1
    "$venvs/$env/bin/flake8" airflow_provider_clarifai || status=1
    echo "== docs ($env): sphinx -W"
    "$py" -m sphinx -W -q -b html docs docs/_build/html || status=1
  fi
  echo "== tests ($env: $("$py" -c 'import airflow; print("Airflow", airflow.__version__)'))"
  marker=()
  ((fast)) && marker=(-m "not integration and not e2e")
  "$py" -m pytest "${marker[@]}" "${pytest_args[@]}" || status=1
  if ((fast == 0)); then
    # Its exit status counts for correctness only: timings are printed, not judged (no --judge-timings).
    echo "== benchmark ($env): trigger burst (correctness judged; timings printed, not judged)"
    "$py" benchmarks/trigger_burst.py || status=1
  fi
done
exit $status
