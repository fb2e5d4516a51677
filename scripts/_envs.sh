# Shared by scripts/test.sh and scripts/demo.sh: make the virtualenvs they run in.
# Expects $root (the checkout) and $venvs (where environments live).

# What each environment pins; the rest resolves to the newest release that fits.
env_pins() {
  case "$1" in
    newest) echo "apache-airflow>=3.3,<4" ;;
    # A recent cryptography (51) makes MultiFernet a native class that Airflow 2.11 cannot tag (is_encrypted),
    # so every task process sees encrypted connections as missing; 45.x, of 2.11's time, works.
    oldest) echo "apache-airflow==2.11.* apache-airflow-providers-common-compat==1.22.0 clarifai-grpc==11.11.3 cryptography<46" ;;
    *) echo "unknown environment '$1' (use newest or oldest)" >&2; return 2 ;;
  esac
}

ensure_uv() {
  uv="$venvs/tools/bin/uv"
  if [[ ! -x $uv ]]; then
    echo "== installing uv into $venvs/tools"
    python3 -m venv "$venvs/tools"
    "$venvs/tools/bin/python" -m pip install --quiet --disable-pip-version-check uv
  fi
}

ensure_env() {
  local env=$1 extras=test
  local pins
  pins=$(env_pins "$env")
  [[ $env == newest ]] && extras=test,lint,docs
  ensure_uv
  if [[ ! -x $venvs/$env/bin/python ]]; then
    "$uv" venv --quiet --python python3.11 "$venvs/$env"
  fi
  echo "== installing the provider into $venvs/$env ($pins)"
  # shellcheck disable=SC2086
  VIRTUAL_ENV="$venvs/$env" "$uv" pip install --quiet -e "$root[$extras]" $pins
}
