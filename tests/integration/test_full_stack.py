"""
The full stack: a real Airflow (``airflow standalone``: api-server, scheduler with LocalExecutor,
dag-processor, triggerer; SQLite) runs the example DAG ``aep_protocols_ingestion`` against the emulator.

The DAG run is triggered through the Airflow REST API with a ``conf``, as the UI trigger form does. The
test asserts that the run succeeds, that the emulator holds what the conf asked for, and that the sensor
really deferred: while the task is ``deferred`` its trigger is an ``AEPFlowRunTrigger``, the trigger's own
log lines were written by the triggerer job, and the task resumed in ``execute_complete``.

Deferral is made deterministic, not a matter of timing: the emulator's clock is held so the dataflow's
first run stays ``scheduled`` until the test has seen the sensor deferred; then the clock jumps forward
and the run finishes within seconds.

Bounded in time (one overall deadline); every process started is stopped, even on failure.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.standalone import Standalone, airflow_cli, airflow_env, free_port
from tests.airflow_stack import AirflowApi, HeldClock, check_stopped

DAG_ID = "aep_protocols_ingestion"
SENSOR = "wait_for_first_run"
TRIGGER_CLASSPATH = "airflow_provider_aep.triggers.flow_run.AEPFlowRunTrigger"
DAGS_FOLDER = Path(__file__).resolve().parents[2] / "example_dags"

DEADLINE_SECONDS = 240.0  # the whole test: Airflow start-up, parsing, the DAG run, the checks

# time_scale=60: one emulated minute per real second. A run would start 1 emulated hour (60 s real) after
# it is due; the test jumps the clock past that once the sensor is deferred, so the run finishes then.
TIME_SCALE = 60.0
RUN_START_DELAY = 3600.0  # emulated seconds
RUN_DURATION = 120.0  # emulated seconds: 2 s real once started
CLOCK_JUMP = RUN_START_DELAY / TIME_SCALE + 1.0


def _ti_path(run_id: str, task_id: str = SENSOR) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"


def test_full_stack_protocols_ingestion_defers_in_triggerer(tmp_path):
    cli = airflow_cli()
    if not cli.exists():
        pytest.skip(f"airflow standalone is not available (no {cli})")

    assert (DAGS_FOLDER / f"{DAG_ID}.py").is_file(), f"no {DAG_ID}.py in {DAGS_FOLDER}"

    deadline = time.monotonic() + DEADLINE_SECONDS
    home = tmp_path / "airflow_home"
    home.mkdir()
    port = free_port()
    name = f"Full stack {uuid.uuid4().hex[:8]}"
    conf = {"name": name, "source_table": "Orders", "interval": 15}
    clock = HeldClock()

    with AEPEmulator(
        time_scale=TIME_SCALE, run_start_delay=RUN_START_DELAY, run_duration=RUN_DURATION, clock=clock
    ) as emu:
        env = airflow_env(
            home,
            port,
            DAGS_FOLDER,
            connection_json=emu.connection_json(),
            overrides={"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"},
        )
        airflow = Standalone(env, tmp_path, tmp_path / "standalone.log")
        api = AirflowApi(
            airflow.base_url,
            deadline,
            check=airflow.died,
            context=lambda: f"--- airflow standalone log (tail) ---\n{airflow.tail()}",
        )
        try:
            _run_and_check(api, emu, clock, home, name, conf)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- airflow standalone log (tail) ---\n{airflow.tail()}") from None
        finally:
            api.client.close()
            killed, survivors = airflow.stop()
            api.mark("every Airflow process stopped")
    check_stopped(killed, survivors)


def _run_and_check(api: AirflowApi, emu: AEPEmulator, clock: HeldClock, home: Path, name: str, conf: dict) -> None:
    api.login()
    api.mark("api-server up")

    # 1. The DAG is parsed; only it is unpaused (the folder's other example DAGs would use the emulator too).
    api.wait_for_dag(DAG_ID)
    api.mark("DAG parsed and unpaused")

    # 2. Trigger it as the UI trigger form does: a conf overriding some params, no logical date.
    response = api.client.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    if response.status_code != 200:
        api.fail(f"triggering {DAG_ID} failed: {response.status_code} {response.text[:1000]}")
    run_id = response.json()["dag_run_id"]
    assert response.json()["conf"] == conf, response.json()

    # 3. The sensor defers, with an AEPFlowRunTrigger, while the emulator holds the flow's run `scheduled`.
    def sensor_deferred():
        response = api.get(_ti_path(run_id))
        if response.status_code == 404:  # the scheduler has not created the run's task instances yet
            return None
        if response.status_code != 200:
            api.fail(f"GET {_ti_path(run_id)} -> {response.status_code}: {response.text[:500]}")
        ti = response.json()
        if ti["state"] == "deferred" and ti.get("trigger"):
            return ti
        if ti["state"] in ("success", "failed", "upstream_failed", "skipped", "removed"):
            api.fail(f"{SENSOR} ended {ti['state']} and was never seen deferred: {ti}")
        if api.get_json(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"] == "failed":
            tis = api.get_json(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            api.fail(f"the DAG run failed before {SENSOR} deferred: {[(t['task_id'], t['state']) for t in tis]}")
        return None

    deferred = api.wait_until(f"{SENSOR} to defer", sensor_deferred, interval=0.5)
    api.mark("sensor deferred")
    assert deferred["trigger"]["classpath"] == TRIGGER_CLASSPATH, deferred["trigger"]
    runs = emu.snapshot()["prod"]["runs"]
    assert runs and {r["metrics"]["statusSummary"]["status"] for r in runs.values()} == {"scheduled"}, runs

    # 4. The trigger polls the run it watches (GET /runs/{id}: the sensor itself only listed runs before
    #    deferring) and the TI names the TriggererJob that holds the trigger; only then is the run released.
    seen_at_deferral = len(emu.request_log)

    def trigger_polling():
        polls = [
            r
            for r in emu.request_log[seen_at_deferral:]
            if r.method == "GET" and r.status == 200 and r.path.rsplit("/", 1)[-1] in runs and "/runs/" in r.path
        ]
        if not polls:
            return None
        ti = api.get_json(_ti_path(run_id))
        if ti["state"] != "deferred":
            api.fail(f"{SENSOR} left `deferred` ({ti['state']}) before its run finished: {ti}")
        return (polls[0].path.rsplit("/", 1)[-1], ti) if ti.get("triggerer_job") else None

    watched_run, deferred = api.wait_until("the trigger to poll the flow run", trigger_polling, interval=0.5)
    triggerer_job = deferred["triggerer_job"]
    assert triggerer_job["job_type"] == "TriggererJob", triggerer_job
    assert deferred["trigger"]["classpath"] == TRIGGER_CLASSPATH, deferred["trigger"]

    api.mark("trigger polling in the triggerer")
    seen_at_release = len(emu.request_log)
    clock.jump(CLOCK_JUMP)  # the held run starts now and finishes ~2 s later

    # 5. The DAG run succeeds, every task with it.
    def run_finished():
        run = api.get_json(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = api.wait_until(f"DAG run {run_id} to finish", run_finished)
    api.mark(f"DAG run {run['state']}")
    tis = api.get_json(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {t["task_id"]: t["state"] for t in tis}
    if run["state"] != "success":
        api.fail(f"DAG run {run_id} ended {run['state']}: {states}")
    assert set(states.values()) == {"success"}, states

    # 6. The emulator holds exactly one dataflow, named from the conf, and the conf reached the resources.
    state = emu.snapshot()["prod"]
    flow_names = [f["name"] for f in state["flows"].values()]
    assert flow_names == [f"{name} dataflow"], flow_names
    (flow,) = state["flows"].values()
    sources = [s["name"] for s in state["sourceConnections"].values()]
    assert sources == [f"{name} source connection"], sources
    assert int(flow["scheduleParams"]["interval"]) == conf["interval"], flow["scheduleParams"]

    # 7. The sensor's return value (from execute_complete): the watched run of that flow, successful.
    value = api.get_json(f"{_ti_path(run_id)}/xcomEntries/return_value", deserialize="true")["value"]
    if isinstance(value, str):
        value = json.loads(value)
    assert value["status"] == "success", value
    assert value["flow_id"] == flow["id"], (value, flow["id"])
    assert value["run_id"] == watched_run, (value, watched_run)

    # 8. One try, deferred then resumed: the task's log pauses it as DEFERRED; the trigger's log lines (it
    #    saw the run `scheduled`, then `success`, and fired the event) come from the triggerer's job runner
    #    and were written to the log file of that TriggererJob; the task then resumed and pushed the value.
    sensor = api.get_json(_ti_path(run_id))
    assert sensor["try_number"] == 1 and sensor["state"] == "success", sensor
    logs = api.get_json(f"{_ti_path(run_id)}/logs/1", full_content="true")["content"]
    events = [e for e in logs if isinstance(e, dict)]
    trigger_lines = [e["event"] for e in events if e.get("logger") == TRIGGER_CLASSPATH]
    progress = f"AEP flow run {watched_run} of flow {flow['id']}: "
    assert any(line.startswith(progress + "scheduled") for line in trigger_lines), trigger_lines
    assert any(line.startswith(progress + "success") for line in trigger_lines), trigger_lines
    fired = [
        e for e in events if e.get("event") == "Trigger fired event" and e.get("filename") == "triggerer_job_runner.py"
    ]
    assert len(fired) == 1 and "'status': 'success'" in fired[0]["result"] and watched_run in fired[0]["result"], fired
    messages = [str(e.get("event")) for e in events]

    def first(prefix: str) -> int:
        found = [i for i, message in enumerate(messages) if message.startswith(prefix)]
        assert found, f"no log line starting {prefix!r} in {messages}"
        return found[0]

    assert first("Pausing task as DEFERRED") < first("Trigger fired event") < first("Pushing xcom"), messages
    # Resumed from the event: after the release only the trigger read the run; the task polled nothing.
    run_reads = [r.path for r in emu.request_log[seen_at_release:] if "/runs" in r.path]
    assert run_reads and all(path.endswith(f"/runs/{watched_run}") for path in run_reads), run_reads

    task_dir = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}"
    trigger_log = task_dir / f"attempt=1.log.trigger.{triggerer_job['id']}.log"
    assert trigger_log.is_file(), sorted(p.name for p in task_dir.iterdir())
    text = trigger_log.read_text()
    assert TRIGGER_CLASSPATH in text and progress + "success" in text and "Trigger fired event" in text, text[-3000:]
