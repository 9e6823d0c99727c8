"""
The flow-run sensor, trigger and on-demand operator against the AEP emulator: real HTTP, real runs going
scheduled -> inProgress -> final, injected faults and revoked tokens, and real ``dag.test()`` DAG runs.

Timing is real but bounded: small poll intervals and generous deadlines; assertions are on outcomes only.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.testing import AEPEmulator, FaultConfig
from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger
from airflow_provider_aep.utils.client_core import TOKEN_CACHE
from tests.conftest import airflow_3, xcoms
from tests.integration.conftest import FAST_RETRIES

ODATA_SPEC = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
DATA_LAKE_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
PROFILE = "https://ns.adobe.com/xdm/context/profile"


# ---------------------------------------------------------------- setup helpers
def build_flow(hook: AEPHook, schedule: dict[str, Any], prefix: str | None = None) -> str:
    """A protocols-source dataflow (current tutorial variant, aep-api.md §0), made with AEPHook's creates."""
    prefix = prefix or f"it-{uuid.uuid4().hex[:8]}"
    schema = hook.create_schema(
        {
            "type": "object",
            "title": f"{prefix} schema",
            "description": "flow-run integration test",
            "allOf": [{"$ref": PROFILE}, {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"}],
            "meta:containerId": "tenant",
            "meta:resourceType": "schemas",
            "meta:xdmType": "object",
            "meta:class": PROFILE,
        }
    )
    schema_id = schema["$id"]
    dataset_id = hook.create_dataset(
        {
            "name": f"{prefix} dataset",
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"},
        }
    )
    base_id = hook.create_base_connection(
        {
            "name": f"{prefix} base",
            "auth": {
                "specName": "Anonymous Authentication",
                "params": {"url": "https://services.odata.org/V4/Northwind/Northwind.svc"},
            },
            "connectionSpec": {"id": ODATA_SPEC, "version": "1.0"},
        }
    )
    source_id = hook.create_source_connection(
        {
            "name": f"{prefix} source",
            "baseConnectionId": base_id,
            "data": {"format": "tabular"},
            "params": {
                "tableName": "Orders",
                "columns": [
                    {"name": "OrderID", "type": "integer", "xdm": {"type": "integer"}},
                    {"name": "OrderDate", "type": "string", "xdm": {"type": "string", "format": "date-time"}},
                ],
            },
            "connectionSpec": {"id": ODATA_SPEC, "version": "1.0"},
        }
    )
    target_id = hook.create_target_connection(
        {
            "name": f"{prefix} target",
            "data": {
                "format": "parquet_xdm",
                "schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1"},
            },
            "params": {"dataSetId": dataset_id},
            "connectionSpec": {"id": DATA_LAKE_SPEC, "version": "1.0"},
        }
    )
    mapping = hook.create_mapping_set(
        {
            "outputSchema": {
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
            },
            "mappings": [
                {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
                {"sourceType": "ATTRIBUTE", "source": "OrderDate", "destination": "createdByBatchID"},
            ],
        }
    )
    (flow_spec,) = hook.find_flow_specs_by_name("CRMToAEP")
    return hook.create_flow(
        {
            "name": f"{prefix} flow",
            "description": "flow-run integration test",
            "flowSpec": {"id": flow_spec["id"], "version": "1.0"},
            "sourceConnectionIds": [source_id],
            "targetConnectionIds": [target_id],
            "transformations": [
                {
                    "name": "Copy",
                    "params": {"deltaColumn": {"name": "OrderDate", "dateFormat": "YYYY-MM-DD", "timezone": "UTC"}},
                },
                {"name": "Mapping", "params": {"mappingId": mapping["id"], "mappingVersion": "0"}},
            ],
            "scheduleParams": schedule,
        }
    )


def once() -> dict[str, Any]:
    return {"startTime": int(time.time()) + 86400, "frequency": "once"}


def every_15_minutes(first_run_in: int = 0) -> dict[str, Any]:
    return {"startTime": int(time.time()) + first_run_in, "frequency": "minute", "interval": 15}


def platform_calls(emu: AEPEmulator, fragment: str) -> list[Any]:
    return [r for r in emu.request_log if fragment in r.path]


async def run_trigger(trigger: AEPFlowRunTrigger) -> dict:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return events[0]


# ---------------------------------------------------------------- the trigger against real runs
@pytest.mark.parametrize("final", ["success", "failed", "partialSuccess"])
async def test_trigger_follows_an_on_demand_run_to_its_final_status(emulator, hook, final):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, final)
    now = int(time.time())
    run_id = hook.create_run(
        flow_id,
        {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now, "deltaColumn": {"name": "OrderDate"}},
    )
    trigger = AEPFlowRunTrigger(
        flow_id, run_id=run_id, poll_interval=0.1, end_time=time.time() + 60, retry_args=FAST_RETRIES
    )
    event = await run_trigger(trigger)
    assert event["status"] == ("failed" if final == "failed" else "success")
    summary = event["summary"]
    assert (summary["run_id"], summary["flow_id"], summary["status"]) == (run_id, flow_id, final)
    assert summary["started_at"] and summary["completed_at"]
    assert summary["run_url"].endswith(f"/dataflows/{flow_id}/activity/{run_id}")
    if final == "failed":
        assert summary["errors"] and all(e["code"] for e in summary["errors"])


async def test_trigger_waits_for_the_next_scheduled_run_of_a_flow(emulator, hook):
    created_after_ms = int(time.time() * 1000)
    flow_id = build_flow(hook, every_15_minutes())
    trigger = AEPFlowRunTrigger(
        flow_id,
        created_after_ms=created_after_ms,
        poll_interval=0.1,
        end_time=time.time() + 60,
        retry_args=FAST_RETRIES,
    )
    event = await run_trigger(trigger)
    assert event["status"] == "success"
    assert event["run_id"] and event["summary"]["run_id"] == event["run_id"]


async def test_trigger_times_out_at_its_deadline(emulator, hook):
    flow_id = build_flow(hook, once())  # no run will ever appear
    event = await run_trigger(
        AEPFlowRunTrigger(
            flow_id, created_after_ms=0, poll_interval=0.05, end_time=time.time() + 0.3, retry_args=FAST_RETRIES
        )
    )
    assert (event["status"], event["run_id"]) == ("timeout", None)
    assert "no matching run appeared" in event["message"]


async def test_trigger_survives_a_revoked_token_and_injected_faults(emulator, hook, monkeypatch):
    flow_id = build_flow(hook, once())
    now = int(time.time())
    run_id = hook.create_run(
        flow_id,
        {"startTime": now, "windowStartTime": now - 60, "windowEndTime": now, "deltaColumn": {"name": "OrderDate"}},
    )
    emulator.faults = FaultConfig(rate=0.4, statuses=(429, 500, 502, 503), retry_after=0, seed=7)

    real_sleep = AEPAsyncHook.sleep
    polls = {"n": 0}

    async def sleep_and_revoke(seconds: float) -> None:
        polls["n"] += 1
        if polls["n"] == 2:  # the token dies mid-wait, as when IMS revokes or it expires
            emulator.revoke_tokens()
        await real_sleep(seconds)

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(sleep_and_revoke))
    event = await run_trigger(
        AEPFlowRunTrigger(flow_id, run_id=run_id, poll_interval=0.1, end_time=time.time() + 60, retry_args=FAST_RETRIES)
    )
    assert event["status"] == "success"
    statuses = [r.status for r in platform_calls(emulator, f"/runs/{run_id}")]
    assert 401 in statuses and any(s in (429, 500, 502, 503) for s in statuses)
    assert len(platform_calls(emulator, "/ims/token/v3")) >= 2


async def test_async_hook_reads_the_same_runs_as_the_sync_hook(emulator, hook):
    flow_id = build_flow(hook, every_15_minutes())
    time.sleep(0.2)
    sync_ids = [r["id"] for r in hook.list_runs(flow_id, created_after_ms=0)]
    TOKEN_CACHE.clear()
    async with AEPAsyncHook(retry_args=FAST_RETRIES) as async_hook:
        async_ids = [r["id"] for r in await async_hook.list_runs(flow_id, created_after_ms=0)]
        assert (await async_hook.get_run(async_ids[0]))["id"] == async_ids[0]
    assert async_ids == sync_ids and sync_ids


# ---------------------------------------------------------------- dag.test(): real Airflow task runs
SENSOR_DAG = """
import pendulum
from airflow_provider_aep.version_compat import dag, task
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

@dag(schedule="@hourly", start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def {name}():
    AEPFlowRunSensor(
        task_id="wait_for_run",
        flow_id="{flow_id}",
        created_after="{{{{ data_interval_start }}}}",
        poke_interval=0.2,
        timeout=60,
        deferrable={deferrable},
        fail_on_partial_success={fail_on_partial_success},
        aep_retry_limit=8,
        aep_retry_args={{"retry_delay": 0.01, "max_delay": 0.05, "retry_after_cap": 0.05}},{extra}
    )

{name}_dag = {name}()
"""

RUN_FLOW_DAG = """
import pendulum
from airflow_provider_aep.version_compat import dag, task
from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

@dag(schedule="@hourly", start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def {name}():
    start = AEPRunFlowOperator(
        task_id="start_run",
        flow_id="{flow_id}",
        # A manual dag.test() run has an empty data interval, so the window is the hour before its end.
        window_start="{{{{ data_interval_end - macros.timedelta(hours=1) }}}}",
        window_end="{{{{ data_interval_end }}}}",
        delta_column="OrderDate",
        wait_for_completion={wait},
        deferrable={deferrable},
        poll_interval=0.2,
        timeout=60,
        aep_retry_args={{"retry_delay": 0.01, "max_delay": 0.05, "retry_after_cap": 0.05}},{extra}
    )
    watch = AEPFlowRunSensor(
        task_id="watch_run",
        flow_id="{flow_id}",
        run_id="{{{{ ti.xcom_pull(task_ids='start_run', key='run_id') }}}}",
        poke_interval=0.2,
        timeout=60,
        deferrable={deferrable},
        aep_retry_args={{"retry_delay": 0.01, "max_delay": 0.05, "retry_after_cap": 0.05}},
    )
    start >> watch

{name}_dag = {name}()
"""


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def dag_test(module, name: str, *, sync: bool = False):
    """``dag.test()``; with ``sync`` on Airflow 2, after writing the DAG (and its aliases) as its DAG processor does."""
    import pendulum

    dag = getattr(module, f"{name}_dag")
    if sync and not airflow_3():  # Airflow 3's dag.test() writes the DAG itself
        dag.sync_to_db()
    date_arg = "logical_date" if airflow_3() else "execution_date"
    return dag.test(**{date_arg: pendulum.now("UTC")})


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_in_dag_test_waits_for_the_scheduled_run_and_returns_its_summary(
    emulator, hook, load_dag_file, trigger_events, deferrable
):
    flow_id = build_flow(hook, every_15_minutes(first_run_in=4))  # no run yet when the sensor starts
    name = f"aep_sensor_{'deferred' if deferrable else 'poke'}"
    module = load_dag_file(
        SENSOR_DAG.format(name=name, flow_id=flow_id, deferrable=deferrable, fail_on_partial_success=False, extra=""),
        name,
    )
    dag_run = dag_test(module, name)
    assert states(dag_run) == {"wait_for_run": "success"}
    assert [e["status"] for e in trigger_events] == (["success"] if deferrable else [])
    pushed = xcoms(dag_run, "wait_for_run")
    summary = pushed["return_value"]
    assert (summary["flow_id"], summary["status"]) == (flow_id, "success")
    assert summary["records"]["input"] is not None
    assert pushed["dataflow_url"].endswith(f"/dataflows/{flow_id}/activity")
    assert pushed["run_url"] == summary["run_url"]


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_in_dag_test_fails_the_task_on_a_failed_run(emulator, hook, load_dag_file, deferrable):
    flow_id = build_flow(hook, every_15_minutes(first_run_in=3))  # the run must start inside the data interval
    emulator.set_flow_outcome(flow_id, "failed")
    name = f"aep_sensor_failed_{'deferred' if deferrable else 'poke'}"
    module = load_dag_file(
        SENSOR_DAG.format(name=name, flow_id=flow_id, deferrable=deferrable, fail_on_partial_success=False, extra=""),
        name,
    )
    dag_run = dag_test(module, name)
    assert states(dag_run) == {"wait_for_run": "failed"}


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_on_demand_run_then_sensor_in_dag_test(emulator, hook, load_dag_file, deferrable):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "partialSuccess")
    name = f"aep_run_flow_{'deferred' if deferrable else 'poke'}"
    module = load_dag_file(
        RUN_FLOW_DAG.format(name=name, flow_id=flow_id, wait=True, deferrable=deferrable, extra=""), name
    )
    dag_run = dag_test(module, name)
    assert states(dag_run) == {"start_run": "success", "watch_run": "success"}
    started = xcoms(dag_run, "start_run")
    watched = xcoms(dag_run, "watch_run")
    assert started["return_value"]["run_id"] == started["run_id"] == watched["return_value"]["run_id"]
    assert started["return_value"]["status"] == "partialSuccess"
    assert started["run_url"] == watched["run_url"]
    posted = [r for r in emulator.request_log if r.method == "POST" and r.path.endswith("/runs")]
    assert len(posted) == 1


def test_on_demand_run_under_faults_creates_exactly_one_run(emulator, hook, load_dag_file):
    flow_id = build_flow(hook, once())
    emulator.faults = FaultConfig(rate=0.3, retry_after=0, seed=3)
    name = "aep_run_flow_faults"
    module = load_dag_file(
        RUN_FLOW_DAG.format(name=name, flow_id=flow_id, wait=False, deferrable=False, extra=""), name
    )
    dag_run = dag_test(module, name)
    assert states(dag_run) == {"start_run": "success", "watch_run": "success"}
    emulator.faults = FaultConfig()
    assert len(list(hook.list_runs(flow_id))) == 1
