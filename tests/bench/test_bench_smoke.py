"""Smoke runs of the benchmarks at tiny sizes, so they cannot rot. Shapes and sanity only: no timing targets."""

from __future__ import annotations

import math
import sys

import pytest

from bench import parse_overhead, run_all
from bench.common import machine_info, run_json


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


@pytest.fixture(scope="module")
def results() -> dict:
    return {"machine": machine_info(), "when": "smoke"}


def test_empty_dag_has_the_example_dags_shape(tmp_path):
    example = parse_overhead.load_dag(parse_overhead.EXAMPLE_DAG)
    path = tmp_path / "empty.py"
    path.write_text(parse_overhead.empty_dag_source(example))
    empty = parse_overhead.load_dag(path)
    assert parse_overhead.shape(empty) == parse_overhead.shape(example)
    assert dict(empty.params) == dict(example.params)
    assert {type(t).__name__ for t in empty.tasks} == {"EmptyOperator"}


def test_parse_overhead_smoke(results, tmp_path):
    r = parse_overhead.run(runs=1, workdir=tmp_path, warmup=False)
    results["parse"] = r
    assert r["same_shape"] is True
    for name in ("baseline", "empty_dag", "aep_dag"):
        assert _number(r["variants"][name]["wall_ms"]) and _number(r["variants"][name]["import_ms"])
    assert r["variants"]["aep_dag"]["import_ms"] > 0
    assert all(isinstance(v, float) for v in r["ratios"].values())


def test_provisioning_smoke(results):
    r = run_json([sys.executable, "-m", "bench.provisioning", "--variants", "current"])
    results["provisioning"] = r
    ours = r["ours"]["current"]
    for run in ("first_run", "re_run"):
        q = ours[run]["requests"]
        assert all(_number(q[k]) for k in ("token", "lookup", "create", "other", "total"))
        assert q["errors"] == 0
        assert ours[run]["tasks"] and all(_number(t["connections"]) for t in ours[run]["tasks"])
    assert ours["first_run"]["requests"]["create"] == sum(ours["resources"].values()) > 0
    assert ours["re_run"]["requests"]["create"] == 0
    for name in ("aepp", "http_hook"):  # not in the test venv (bench venv only) or measured
        assert "unavailable" in r["manual"][name] or _number(r["manual"][name]["first_run"]["requests"]["total"])


def test_triggerer_smoke(results):
    r = run_json([sys.executable, "-m", "bench.triggerer", *run_all.QUICK_TRIGGERER], timeout=600)
    results["triggerer"] = {"quick": r}
    ours, dtt = r["aep"], r["datetime"]
    assert ours["n"] == ours["events"] == 5 and ours["statuses"] == {"success": 5}
    assert dtt["n"] == dtt["events"] == 5
    for d in (ours, dtt):
        for key in ("added_rss_mb", "cpu_ms_per_s", "max_loop_lag_ms", "p99_loop_lag_ms", "wall_s", "log_lines"):
            assert _number(d[key]), (key, d[key])
        assert d["gc_frozen_objects"] == 0
    assert _number(ours["delay_max_s"]) and ours["polls"] >= 5 and _number(ours["polls_per_request"])
    assert all(_number(x) for x in r["ratios"].values())
    assert _number(r["poke"]["rss_mb"]) and _number(r["poke"]["cpu_ms_per_poke"])


def test_results_render(results, tmp_path):
    if not {"parse", "provisioning", "triggerer"} <= results.keys():
        pytest.skip("needs the three smoke runs above")
    text = run_all.render(results)
    assert text.startswith("# Benchmarks")
    for heading in ("## Machine", "## Targets", "## 1. DAG-parse", "## 2. Provisioning", "## 3. Triggerer"):
        assert heading in text
    assert text.count("**PASS**") + text.count("**MISS**") == 9
