"""
`make demo`: run the `aep_protocols_ingestion` example DAG end to end against the embedded AEP emulator.

A throwaway AIRFLOW_HOME with Airflow's embedded SQLite, the emulator on a free loopback port, the
`aep_default` connection pointed at it, `airflow dags test`, then a summary a person reads. Exits
non-zero if anything failed; the emulator and every Airflow process stop with this script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_provider_aep.testing import AEPEmulator

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "aep_protocols_ingestion"
RUN_CONF = '{"name": "Demo Orders"}'
RESOURCES = (
    ("classes", "ad hoc class", "$id"),
    ("schemas", "schema", "$id"),
    ("connections", "base connection", "id"),
    ("sourceConnections", "source connection", "id"),
    ("datasets", "dataset", "id"),
    ("targetConnections", "target connection", "id"),
    ("mappingSets", "mapping set", "id"),
    ("flows", "dataflow", "id"),
)


def airflow(args: list[str], env: dict[str, str], log: Path, timeout: float) -> int:
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            out.write(f"\n(timed out after {timeout:.0f} s)\n")
            return 124


def keep_log(log: Path) -> Path:
    """A copy of the log outside the Airflow home, which is removed on exit."""
    fd, kept = tempfile.mkstemp(prefix="aep-demo-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        out.write(log.read_bytes())
    return Path(kept)


def resource_lines(emulator: AEPEmulator) -> list[str]:
    state = emulator.snapshot()["prod"]
    lines = []
    for kind, label, key in RESOURCES:
        for resource_id, resource in state[kind].items():
            name = resource.get("name") or resource.get("title") or ""
            lines.append(f"  {label:<18} {name:<40} {resource.get(key) or resource_id}")
    return lines


def run_lines(emulator: AEPEmulator, env: dict[str, str]) -> tuple[list[str], bool]:
    for name in ("AIRFLOW_CONN_AEP_DEFAULT", "AIRFLOW__AEP__TOKEN_CACHE_DIR"):
        os.environ[name] = env[name]
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"  # this summary is for a person, not a log
    from airflow_provider_aep.hooks.aep import AEPHook
    from airflow_provider_aep.utils.flow_runs import run_summary

    hook = AEPHook()
    flows = list(emulator.snapshot()["prod"]["flows"].values())
    if not flows:
        return ["  no dataflow was created"], False
    flow = flows[0]
    runs = hook.list_runs(flow["id"])  # newest first; AEP goes on running the flow on its schedule
    if not runs:
        return [f"  dataflow {flow['id']} has no run yet", f"  AEP link: {hook.dataflow_url(flow['id'])}"], False
    summary = run_summary(runs[-1], flow["id"], hook.config.org_id, hook.config.sandbox)
    records, files = summary["records"], summary["files"]
    took = f" in {summary['duration_seconds']} s" if summary["duration_seconds"] is not None else ""
    lines = [
        f"  run {summary['run_id']}: {summary['status']}{took}",
        f"  records: {records['input']} read, {records['output']} written, {records['failed']} failed; "
        f"files: {files['input']} read",
        *(f"  error: [{e.get('code')}] {e.get('message')}" for e in summary["errors"]),
        f"  AEP link: {summary['run_url']}",
    ]
    return lines, summary["status"] in ("success", "partialSuccess")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="aep-demo-airflow-"))
    log = home / "demo.log"
    keep_home = os.environ.get("AEP_DEMO_KEEP_HOME") == "1"
    started = time.monotonic()
    try:
        # AEP_DEMO_OUTCOME=failed|partialSuccess shows what a failing dataflow run looks like.
        with AEPEmulator(time_scale=60, default_outcome=os.environ.get("AEP_DEMO_OUTCOME", "success")) as emulator:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_AEP_DEFAULT": emulator.connection_json(),
                "AIRFLOW__AEP__TOKEN_CACHE_DIR": str(home / "aep-tokens"),  # not the user's cache: thrown away
            }
            print(f"AEP emulator on {emulator.base_url}; Airflow home {home} (SQLite)")
            if airflow(["db", "migrate"], env, log, timeout=300) != 0:
                print(f"airflow db migrate failed; see {log}", file=sys.stderr)
                return 1
            print(f"Running `airflow dags test {DAG_ID}` ...")
            code = airflow(["dags", "test", DAG_ID, "-c", RUN_CONF], env, log, timeout=600)
            print(f"\nAEP resources ({time.monotonic() - started:.0f} s):")
            print("\n".join(resource_lines(emulator)))
            print("\nFirst dataflow run:")
            lines, run_ok = run_lines(emulator, env)
            print("\n".join(lines))
        if code != 0 or not run_ok:
            tail = log.read_text().splitlines()[-40:]
            print("\nThe demo FAILED. Last lines of the Airflow log:\n" + "\n".join(tail), file=sys.stderr)
            print(f"Full log: {log if keep_home else keep_log(log)}", file=sys.stderr)
            if not keep_home:
                print(
                    "To keep the whole Airflow home (its database and task logs) as well, run it again with "
                    "AEP_DEMO_KEEP_HOME=1 make demo",
                    file=sys.stderr,
                )
            return 1
        print("\nDemo succeeded. Run it again against a real AEP org: see README, 'Configure a real AEP org'.")
        return 0
    finally:
        if keep_home:
            print(f"Airflow home kept (AEP_DEMO_KEEP_HOME=1): {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
