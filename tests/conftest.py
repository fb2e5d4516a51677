"""Shared test set-up: a private Airflow home, so tests never touch a user's ~/airflow."""

from __future__ import annotations

import os
import tempfile

# Must happen before anything imports airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="clarifai-provider-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
