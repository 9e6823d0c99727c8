"""`make demo` (scripts/demo.py): succeeds and says so, fails loudly on a failed run and keeps its log, leaves
no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
# What changes from one demo to the next: ids, ports, temp dirs, durations, file counts. The rest must read as README shows it.
VARYING = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{24,48}\b"), "<hex>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"aep-demo-airflow-\w+"), "aep-demo-airflow-<tmp>"),
    (re.compile(r"\(\d+ s\)|in \d+\.\d s"), "<duration>"),
    (re.compile(r"files: \d+ read"), "files: <n> read"),  # the emulator splits a read into 1 to 3 files
]


def _normalized(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, stand_in in VARYING:
            line = pattern.sub(stand_in, line)
        out.append(line.rstrip())
    return out


def _readme_sample() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```text\nAEP emulator on ") + len("```text\n")
    return readme[start : readme.index("```", start)].splitlines()


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
    if outcome == "success":  # README shows this run's output as a new user sees it (tasks may finish in any order)
        assert sorted(_normalized(result.stdout.splitlines())) == sorted(_normalized(_readme_sample()))
    if outcome == "failed":
        assert "error: [CONNECTOR-1001-500]" in result.stdout
        # The Airflow home is gone, but the log it printed the path of is still there, with the DAG run in it.
        log = Path(re.search(r"^Full log: (\S+)$", result.stderr, re.MULTILINE).group(1))
        try:
            assert "aep-demo-airflow-" not in str(log) and "wait_for_first_run" in log.read_text()
        finally:
            log.unlink(missing_ok=True)
        assert "AEP_DEMO_KEEP_HOME=1 make demo" in result.stderr
