#!/usr/bin/env bash
# The project's demo command. On a fresh machine it installs what it needs (a virtualenv with the
# newest Airflow 3 and this provider), starts the local Clarifai emulator and a real Airflow, runs the
# example DAGs (maintenance window, gating) through its REST API, prints what happened, and stops
# everything it started.
# Usage: scripts/demo.sh [--keep] [--port N]
#   --keep     leave Airflow and the emulator running afterwards (prints the UI's URL; Ctrl-C stops them)
#   --port N   the Airflow UI and API port (default: 8080 with --keep if free, else a free port)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venvs=${CLARIFAI_PROVIDER_VENVS:-$root/.venvs}
# shellcheck source=scripts/_envs.sh
source "$root/scripts/_envs.sh"
ensure_env newest
exec "$venvs/newest/bin/python" demo/run_demo.py "$@"
