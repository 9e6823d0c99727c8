"""The installed package is a provider Airflow discovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _airflow(args: list[str], tmp_path: Path) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"},
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=120, check=True)
    # Airflow may print log lines before the JSON document; it is the line starting with "[{".
    return next(line for line in result.stdout.splitlines() if line.startswith("[{"))


def test_airflow_providers_list_shows_the_package(tmp_path):
    providers = json.loads(_airflow(["providers", "list", "-o", "json"], tmp_path))
    assert any(p["package_name"] == "airflow-provider-aep" for p in providers)


def test_airflow_providers_hooks_shows_the_aep_connection_type(tmp_path):
    hooks = json.loads(_airflow(["providers", "hooks", "-o", "json"], tmp_path))
    (aep,) = [h for h in hooks if h["connection_type"] == "aep"]
    assert aep["class"] == "airflow_provider_aep.hooks.aep.AEPHook"
