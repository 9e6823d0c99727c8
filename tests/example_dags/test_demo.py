"""`make demo` (scripts/demo.py): succeeds and says so, fails loudly on a failed run and keeps its log, leaves
no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def _airflow_processes_of(home_prefix: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if home_prefix in line]


@pytest.mark.parametrize(
    ("outcome", "code", "expected"), [("success", 0, "Demo succeeded"), ("failed", 1, "The demo FAILED")]
)
def test_demo_reports_the_pipeline_and_its_run(outcome, code, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AEP_DEMO_OUTCOME"] = outcome
    result = subprocess.run([sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=600)
    text = result.stdout + result.stderr
    assert result.returncode == code, text[-3000:]
    assert expected in text
    for label in ("ad hoc class", "source connection", "dataset", "target connection", "mapping set", "dataflow"):
        assert label in result.stdout
    assert "run " in result.stdout and f": {outcome}" in result.stdout
    assert "experience.adobe.com/#/@" in result.stdout
    assert _airflow_processes_of("aep-demo-airflow-") == []
    if outcome == "failed":
        assert "error: [CONNECTOR-1001-500]" in result.stdout
        # The Airflow home is gone, but the log it printed the path of is still there, with the DAG run in it.
        log = Path(re.search(r"^Full log: (\S+)$", result.stderr, re.MULTILINE).group(1))
        try:
            assert "aep-demo-airflow-" not in str(log) and "wait_for_first_run" in log.read_text()
        finally:
            log.unlink(missing_ok=True)
        assert "AEP_DEMO_KEEP_HOME=1 make demo" in result.stderr
