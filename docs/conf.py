"""Sphinx configuration for airflow-provider-clarifai's documentation (built with -W in CI)."""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.abspath(".."))
# autodoc imports the package, which imports Airflow: give it a private, throw-away home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="clarifai-docs-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_clarifai import __version__

project = "airflow-provider-clarifai"
author = "airflow-provider-clarifai developers"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Airflow's own classes are documented by Airflow; do not fail on references into them.
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"airflow-provider-clarifai {release}"
suppress_warnings = ["autodoc.import_object"]
