"""
`make airflow`: a local Airflow with the example DAGs, against the embedded AEP emulator, to try the UI.

The emulator on a free loopback port; `airflow standalone` (SQLite, LocalExecutor) on another (or --port);
the `aep_default` connection, pointed at the emulator, saved in Airflow's database (so it is listed under
Admin > Connections). Prints the URL and the login, then waits. Ctrl-C stops Airflow and the emulator and
removes the throwaway Airflow home (a --home given is kept).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.standalone import USER, Standalone, airflow_env, free_port, set_password

ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = ROOT / "example_dags"
START_TIMEOUT = 300.0  # first start: database migration, then every component
PARSE_TIMEOUT = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="Airflow's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME to use and keep (default: a throwaway one)")
    parser.add_argument("--password", help=f"password of the {USER!r} user (default: a random one)")
    return parser.parse_args(argv)


def add_connection(api: httpx.Client, emulator: AEPEmulator) -> None:
    body = {
        "connection_id": "aep_default",
        "conn_type": "aep",
        "description": "The AEP emulator started by `make airflow`",
        "login": emulator.client_id,
        "password": emulator.client_secret,
        "extra": json.dumps(emulator.connection_extra()),
    }
    response = api.post("/api/v2/connections", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"creating aep_default failed: {response.status_code} {response.text[:500]}")


def wait_for_dags(api: httpx.Client, airflow: Standalone) -> list[str]:
    """The example DAGs once the dag-processor has parsed them all (or what is there at the time limit)."""
    expected = len(list(DAGS_FOLDER.glob("*.py")))
    deadline = time.monotonic() + PARSE_TIMEOUT
    dag_ids: list[str] = []
    while time.monotonic() < deadline and airflow.proc.poll() is None:
        dags: list[dict[str, Any]] = api.get("/api/v2/dags", params={"limit": 100}).json().get("dags", [])
        dag_ids = sorted(d["dag_id"] for d in dags)
        if len(dag_ids) >= expected:
            break
        time.sleep(2)
    return dag_ids


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops this script as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A shell starts its background jobs with Ctrl-C ignored, and Python then leaves it ignored: take it back.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    home = args.home or Path(tempfile.mkdtemp(prefix="aep-airflow-"))
    home.mkdir(parents=True, exist_ok=True)
    password = args.password or secrets.token_urlsafe(12)
    port = args.port or free_port()
    log = home / "standalone.log"
    code = 1  # until a Ctrl-C ends a good run
    try:
        with AEPEmulator(time_scale=60) as emulator:
            env = airflow_env(
                home, port, DAGS_FOLDER, login=True, overrides={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
            )
            set_password(home, password)
            print(f"AEP emulator on {emulator.base_url}; starting Airflow in {home} (log: {log}) ...", flush=True)
            airflow = Standalone(env, home, log)
            try:
                token = airflow.wait_for_api(START_TIMEOUT, password)
                with httpx.Client(
                    base_url=airflow.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
                ) as api:
                    add_connection(api, emulator)
                    dag_ids = wait_for_dags(api, airflow)
                print(
                    f"\nAirflow is up: {airflow.base_url}\n"
                    f"Log in as:     {USER} / {password}\n"
                    f"DAGs:          {', '.join(dag_ids) or '(none parsed yet)'}\n"
                    f"Connection:    aep_default -> the AEP emulator at {emulator.base_url}\n"
                    "Trigger a DAG from its page (the Trigger button opens the parameter form).\n"
                    "Press Ctrl-C to stop Airflow and the emulator.",
                    flush=True,
                )
                airflow.proc.wait()
                print(f"airflow standalone exited ({airflow.proc.returncode}); see {log}", file=sys.stderr)
            except KeyboardInterrupt:
                print("\nStopping Airflow and the emulator ...", flush=True)
                code = 0
            except (RuntimeError, TimeoutError, httpx.HTTPError) as err:
                print(f"Airflow did not start: {err}", file=sys.stderr)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
                    signal.signal(sig, signal.SIG_IGN)
                _, survivors = airflow.stop()
                if survivors:
                    print(f"Processes that survived SIGKILL: {survivors}", file=sys.stderr)
                    code = 1
        print("Stopped.", flush=True)
    finally:
        if args.home is None and code == 0:
            shutil.rmtree(home, ignore_errors=True)
        elif args.home is None:
            print(f"Kept {home} for its logs; remove it when done.", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
