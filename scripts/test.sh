#!/usr/bin/env bash
# The project's test command. On a fresh machine it builds what it needs and runs everything:
#   - a tool environment with uv (from the package registry), then one virtualenv per Airflow line:
#       newest: the newest Airflow 3.x with the newest dependencies;
#       oldest: Airflow 2.11 with the oldest common-compat and clarifai-grpc this provider claims;
#   - ruff, mypy, the docstring check (flake8 + pydoclint) and the Sphinx docs (-W) on the newest;
#   - the whole pytest suite on both, then benchmarks/trigger_burst.py as a check. The suite includes
#     tests/test_packaging.py (builds the sdist and wheel with uv, installs the wheel into a clean venv)
#     and, on the newest, the Test-button check in headless Chromium (tests/e2e/test_connection_test_button.py):
#     Debian's chromium is installed with apt-get when it is missing and this runs as root (in the
#     background, while the linters run), and the playwright package goes into the newest environment.
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

# The browser test's Chromium (Debian's package; never a browser download). Installed in the background
# so that it overlaps the environment set-up and the linters; waited for before the newest suite runs.
browser_pid=
browser_log=$(mktemp)
wants_browser() { ((fast == 0)) && [[ " ${envs[*]} " == *" newest "* ]]; }
if wants_browser && [[ ! -x /usr/bin/chromium ]] && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "== installing chromium with apt-get (background; log: $browser_log)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$browser_log" 2>&1 &
  browser_pid=$!
fi
ensure_browser() {
  if [[ -n $browser_pid ]]; then
    wait "$browser_pid" || { echo "apt-get could not install chromium:"; tail -n 20 "$browser_log"; }
    browser_pid=
  fi
  VIRTUAL_ENV="$venvs/newest" "$uv" pip install --quiet playwright
  if [[ -x /usr/bin/chromium ]]; then
    export CLARIFAI_REQUIRE_BROWSER=1 # a missing browser now fails the test instead of skipping it
  else
    echo "== no /usr/bin/chromium (install Debian's chromium package): the browser test will be skipped"
  fi
}

status=0
# Each environment is built (and, on the newest, linted) first; then their test suites run at the same
# time, each into its own log, shown when both have ended: the suites wait on Airflow processes and the
# emulator far more than they compute, and CI's verdict never depends on the machine's speed.
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
    ensure_browser
  fi
done
export CLARIFAI_PROVIDER_UV="$uv" # tests/test_packaging.py builds and installs with it

run_env() {
  local env=$1 py="$venvs/$1/bin/python" result=0
  echo "== tests ($env: $("$py" -c 'import airflow; print("Airflow", airflow.__version__)'))"
  local marker=()
  ((fast)) && marker=(-m "not integration and not e2e")
  "$py" -m pytest "${marker[@]}" "${pytest_args[@]}" || result=1
  if ((fast == 0)); then
    echo "== benchmark ($env): trigger burst (correctness judged; timings printed, not judged)"
    "$py" benchmarks/trigger_burst.py || result=1
  fi
  return $result
}

logs=$(mktemp -d)
pids=()
for env in "${envs[@]}"; do
  run_env "$env" >"$logs/$env.log" 2>&1 &
  pids+=($!)
done
for index in "${!envs[@]}"; do
  wait "${pids[$index]}" || status=1
  cat "$logs/${envs[$index]}.log"
done
exit $status
