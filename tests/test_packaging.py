"""What `python -m build` makes, and that the wheel alone is a provider Airflow discovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True, capture_output=True, timeout=600
    )
    return out


def test_wheel_holds_the_package_its_types_and_the_emulator_but_no_tests(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_provider_aep/py.typed" in names
    assert "airflow_provider_aep/hooks/aep.py" in names
    assert "airflow_provider_aep/testing/server.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "example_dags/", "scripts/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "provider_info = airflow_provider_aep:get_provider_info" in text
    assert "aep-emulator = airflow_provider_aep.testing.__main__:main" in text


def test_sdist_ships_the_example_dags_but_no_tests(dist):
    (sdist,) = dist.glob("*.tar.gz")
    names = tarfile.open(sdist).getnames()
    assert any(n.endswith("example_dags/aep_protocols_ingestion.py") for n in names)
    assert any(n.endswith("airflow_provider_aep/py.typed") for n in names)
    assert not [n for n in names if "/tests/" in n]


def test_the_wheel_installed_in_a_clean_venv_is_listed_by_airflow(dist, tmp_path):
    import airflow

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = dist.glob("*.whl")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # The same Airflow as the test venv, so pip finds every wheel in its cache.
    subprocess.run(
        [*pip, str(wheel), f"apache-airflow=={airflow.__version__}"], check=True, capture_output=True, timeout=900
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    listing = subprocess.run(
        [str(venv / "bin" / "airflow"), "providers", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    providers = json.loads(next(line for line in listing.splitlines() if line.startswith("[{")))
    assert {"package_name": "airflow-provider-aep", "version": "0.1.0"}.items() <= next(
        p for p in providers if p["package_name"] == "airflow-provider-aep"
    ).items()
    emulator_help = subprocess.run(
        [str(venv / "bin" / "aep-emulator"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert emulator_help.returncode == 0 and "emulator" in emulator_help.stdout
