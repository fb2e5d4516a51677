#!/usr/bin/env bash
# The project's demo command. On a fresh machine it installs what it needs (a virtualenv with the
# newest Airflow 3 and this provider), starts the local Clarifai emulator and a real Airflow, runs the
# example DAGs (maintenance window, gating) through its REST API, prints what happened, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venvs=${CLARIFAI_PROVIDER_VENVS:-$root/.venvs}
# shellcheck source=scripts/_envs.sh
source "$root/scripts/_envs.sh"
ensure_env newest
export AIRFLOW_HOME=${AIRFLOW_HOME:-$(mktemp -d)}
exec "$venvs/newest/bin/python" demo/run_demo.py
