"""
Reattach on a real Airflow (``airflow standalone``, LocalExecutor): the task process of an
``AEPRunFlowOperator`` is SIGKILLed while it waits for the run it started; Airflow retries the task, and
the retry follows that run to its end instead of starting a second one for the same window.

Made deterministic, not a matter of timing: the emulator's clock is held so the run stays ``scheduled``
until the test has killed the first try and seen the second one watch the same run; then the clock
jumps and the run finishes within seconds. The killed process is found by its title,
``airflow worker -- <task instance id>``, from the task instance the REST API shows.

Bounded in time (one overall deadline); every process started is stopped, even on failure.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.standalone import Standalone, airflow_cli, airflow_env, free_port
from airflow_provider_aep.version_compat import AIRFLOW_V_3_1_PLUS
from tests.airflow_stack import AirflowApi, HeldClock, check_stopped
from tests.conftest import airflow_3
from tests.integration.conftest import FAST_RETRIES
from tests.integration.test_flow_run_emulator import build_flow, once

pytestmark = [
    pytest.mark.skipif(not airflow_3(), reason="a full airflow standalone is Airflow 3 machinery"),
    pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="Airflow 3.0 fails a SIGKILLed task without its retries"),
]

DAG_ID = "aep_reattach_after_kill"
TASK_ID = "run_for_window"
DEADLINE_SECONDS = 240.0
TIME_SCALE = 60.0
RUN_START_DELAY = 3600.0  # emulated seconds: the run stays `scheduled` for 60 s unless the clock jumps
RUN_DURATION = 120.0  # emulated seconds: 2 s real once started
CLOCK_JUMP = RUN_START_DELAY / TIME_SCALE + 1.0

DAG_FILE = """
from datetime import timedelta

import pendulum

from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
from airflow_provider_aep.version_compat import DAG

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):
    AEPRunFlowOperator(
        task_id="{task_id}",
        flow_id="{flow_id}",
        window_start="2024-01-01T00:00:00+00:00",
        window_end="2024-01-01T01:00:00+00:00",
        delta_column="OrderDate",
        deferrable=False,  # the wait happens in the task process the test kills
        poll_interval=1,
        timeout=120,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
"""


def test_a_task_killed_mid_wait_reattaches_to_its_run_on_retry(tmp_path, monkeypatch):
    cli = airflow_cli()
    if not cli.exists():
        pytest.skip(f"airflow standalone is not available (no {cli})")
    deadline = time.monotonic() + DEADLINE_SECONDS
    clock = HeldClock()
    with AEPEmulator(
        time_scale=TIME_SCALE, run_start_delay=RUN_START_DELAY, run_duration=RUN_DURATION, clock=clock
    ) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        flow_id = build_flow(AEPHook(retry_args=FAST_RETRIES), once(), f"kill-{uuid.uuid4().hex[:6]}")
        dags = tmp_path / "dags"
        dags.mkdir()
        (dags / f"{DAG_ID}.py").write_text(DAG_FILE.format(dag_id=DAG_ID, task_id=TASK_ID, flow_id=flow_id))
        home = tmp_path / "airflow_home"
        home.mkdir()
        env = airflow_env(home, free_port(), dags, connection_json=emu.connection_json())
        airflow = Standalone(env, tmp_path, tmp_path / "standalone.log")
        api = AirflowApi(
            airflow.base_url,
            deadline,
            check=airflow.died,
            context=lambda: f"--- airflow standalone log (tail) ---\n{airflow.tail()}",
            label="reattach",
        )
        try:
            _kill_and_reattach(api, emu, clock, home, flow_id)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- airflow standalone log (tail) ---\n{airflow.tail()}") from None
        finally:
            api.client.close()
            killed, survivors = airflow.stop()
            api.mark("every Airflow process stopped")
    check_stopped(killed, survivors)


def _runs_posted(emu: AEPEmulator) -> list[Any]:
    return [r for r in emu.request_log if r.method == "POST" and r.path.endswith("/flowservice/runs")]


def _task_process(ti_id: str) -> psutil.Process | None:
    """The task runner of one try: Airflow titles it ``airflow worker -- <task instance id>``."""
    for process in psutil.process_iter(["cmdline"]):
        if f"airflow worker -- {ti_id}" in " ".join(process.info["cmdline"] or ()):
            return process
    return None


def _kill_and_reattach(api: AirflowApi, emu: AEPEmulator, clock: HeldClock, home: Path, flow_id: str) -> None:
    api.login()
    api.mark("api-server up")

    api.wait_for_dag(DAG_ID)
    response = api.client.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    if response.status_code != 200:
        api.fail(f"triggering {DAG_ID} failed: {response.status_code} {response.text[:1000]}")
    run_id = response.json()["dag_run_id"]
    ti_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}"
    api.mark("DAG run triggered")

    # 1. The first try started the AEP run and is polling it: its process is there to kill.
    def first_try_waiting():
        response = api.get(ti_path)
        ti = response.json() if response.status_code == 200 else {}
        if ti.get("state") in ("success", "failed", "up_for_retry"):
            api.fail(f"{TASK_ID} ended {ti['state']} before it could be killed: {ti}")
        posted = _runs_posted(emu)
        if ti.get("state") != "running" or len(posted) != 1:
            return None
        polled = [r for r in emu.request_log if r.method == "GET" and "/flowservice/runs/" in r.path]
        process = _task_process(ti["id"])
        return (ti, process) if polled and process is not None else None

    first, process = api.wait_until("the first try to wait for its run", first_try_waiting, interval=0.5)
    (aep_run_id,) = emu.snapshot()["prod"]["runs"]
    assert first["try_number"] == 1, first
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    api.mark(f"first try's task process {process.pid} SIGKILLed mid-wait")

    # 2. Airflow retries the task; the retry finds the run and watches it, with no second POST /runs.
    def retry_watching():
        if len(_runs_posted(emu)) > 1:
            api.fail(f"the retry started a second AEP run for the window: {[r.path for r in _runs_posted(emu)]}")
        ti = api.get_json(ti_path)
        if ti["state"] in ("failed", "success") and ti["try_number"] < 2:
            api.fail(f"{TASK_ID} ended {ti['state']} without a retry: {ti}")
        if ti["try_number"] < 2 or ti["state"] != "running":
            return None
        reads = [r for r in emu.request_log if r.method == "GET" and r.path.endswith(f"/runs/{aep_run_id}")]
        return ti if len(reads) >= 2 and _task_process(ti["id"]) is not None else None

    seen_before_retry = len(emu.request_log)
    retry = api.wait_until("the retry to watch the same run", retry_watching, interval=0.5)
    assert retry["id"] != first["id"], (first, retry)
    api.mark("the retry watches the same AEP run")
    clock.jump(CLOCK_JUMP)

    def run_finished():
        dag_run = api.get_json(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return dag_run if dag_run["state"] in ("success", "failed") else None

    dag_run = api.wait_until(f"DAG run {run_id} to finish", run_finished)
    api.mark(f"DAG run {dag_run['state']}")
    ti = api.get_json(ti_path)
    assert (dag_run["state"], ti["state"], ti["try_number"]) == ("success", "success", 2), (dag_run, ti)

    # 3. One AEP run for the window, started by the first try, followed to its end by the second.
    assert len(_runs_posted(emu)) == 1, [r.path for r in _runs_posted(emu)]
    runs = emu.snapshot()["prod"]["runs"]
    assert list(runs) == [aep_run_id] and runs[aep_run_id]["metrics"]["statusSummary"]["status"] == "success"
    lookups = [r for r in emu.request_log[seen_before_retry:] if r.method == "GET" and r.path.endswith("/runs")]
    assert lookups and all(f"flowId=={flow_id}" in r.query["property"] for r in lookups), lookups
    value = api.get_json(f"{ti_path}/xcomEntries/return_value", deserialize="true")["value"]
    assert (value["run_id"], value["status"]) == (aep_run_id, "success"), value
    logs = api.get_json(f"{ti_path}/logs/2", full_content="true")["content"]
    messages = [str(e.get("event")) for e in logs if isinstance(e, dict)]
    assert any(m.startswith(f"Reattached to AEP flow run {aep_run_id} of flow {flow_id}") for m in messages), messages
    assert not any(m.startswith("Started AEP flow run") for m in messages), messages
