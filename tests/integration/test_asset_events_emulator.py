"""
Asset events and lineage against the emulator: AEPFlowRunEventTrigger fires once per new finished run and
not again after a restart (watermark in a state store shaped like Airflow's); the run, sensor and flow tasks
give the target dataset's ``aep`` Asset its event in a real ``dag.test()`` run, polled or resumed after
deferring; the OpenLineage provider's own extraction path reads the tasks' facets.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_aep.assets.aep import dataset_uri
from tests.conftest import airflow_3, task_log_text, xcoms
from tests.integration.conftest import FAST_RETRIES
from tests.integration.test_flow_run_emulator import (
    RUN_FLOW_DAG,
    SENSOR_DAG,
    build_flow,
    dag_test,
    every_15_minutes,
    once,
    states,
)

needs_airflow_3 = pytest.mark.skipif(not airflow_3(), reason="AssetWatcher and BaseEventTrigger are Airflow 3")


class MemoryStateStore:
    """The accessor Airflow 3.3 gives an event trigger watching one asset (``aget``/``aset`` of JSON values)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))  # what the execution API would keep


def start_run(hook, flow_id: str) -> str:
    now = int(time.time())
    params = {
        "startTime": now,
        "windowStartTime": now - 3600,
        "windowEndTime": now,
        "deltaColumn": {"name": "OrderDate"},
    }
    return hook.create_run(flow_id, params)


def finish(hook, run_id: str) -> None:
    from airflow_provider_aep.utils.flow_runs import Outcome, outcome_of, run_status

    deadline = time.monotonic() + 30
    while outcome_of(run_status(hook.get_run(run_id))) is Outcome.WAIT:
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.1)


def list_reads(emulator, flow_id: str, since: int = 0) -> int:
    return sum(1 for r in emulator.request_log[since:] if r.path.endswith("/runs") and r.method == "GET")


async def until(what: str, probe, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def event_trigger(flow_id: str, store: MemoryStateStore | None):
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunEventTrigger

    trigger = AEPFlowRunEventTrigger(flow_id, poll_interval=0.2, retry_args=FAST_RETRIES)
    trigger.asset_state_store = store
    return trigger


@needs_airflow_3
async def test_the_event_trigger_fires_once_per_new_run_and_not_again_after_a_restart(emulator, hook):
    from airflow.triggers.base import BaseEventTrigger

    flow_id = build_flow(hook, once())
    finish(hook, before := start_run(hook, flow_id))  # finished before the watcher looked: history
    store = MemoryStateStore()

    first = event_trigger(flow_id, store)
    events = first.run()
    pending = asyncio.ensure_future(events.__anext__())
    await until("the first look", lambda: store.values)
    (key,) = store.values
    assert key == f"aep_flow_run_watermark:{flow_id}" and store.values[key]["seen"] == [before]

    run_id = start_run(hook, flow_id)
    payload = (await asyncio.wait_for(pending, 30)).payload
    assert (payload["run_id"], payload["flow_id"], payload["status"]) == (run_id, flow_id, "success")
    assert payload["records"]["output"] > 0 and payload["bytes"]["output"] > 0
    assert payload["run_url"].endswith(f"/dataflows/{flow_id}/activity/{run_id}")
    assert json.loads(json.dumps(payload)) == payload
    await events.aclose()  # the triggerer stops

    # A restarted triggerer makes the trigger again from the same kwargs (the same trigger to Airflow) and
    # reads the stored mark: several polls later, nothing has fired for the run already reported.
    again = event_trigger(flow_id, store)
    assert BaseEventTrigger.hash(*again.serialize()) == BaseEventTrigger.hash(*first.serialize())
    events = again.run()
    reads = len(emulator.request_log)
    pending = asyncio.ensure_future(events.__anext__())
    await until("three polls after the restart", lambda: list_reads(emulator, flow_id, reads) >= 3)
    assert not pending.done()

    next_run = start_run(hook, flow_id)
    payload = (await asyncio.wait_for(pending, 30)).payload
    assert payload["run_id"] == next_run
    await events.aclose()


@needs_airflow_3
async def test_without_a_state_store_the_first_look_is_kept_in_memory_and_the_log_says_so(
    emulator, hook, caplog, capsys
):
    flow_id = build_flow(hook, once())
    finish(hook, start_run(hook, flow_id))
    events = event_trigger(flow_id, None).run()
    reads = len(emulator.request_log)
    pending = asyncio.ensure_future(events.__anext__())
    await until("three polls", lambda: list_reads(emulator, flow_id, reads) >= 3)
    assert not pending.done()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    logs = task_log_text(caplog, capsys)
    assert "kept in memory" in logs and "no asset state store" in logs


@needs_airflow_3
async def test_failed_runs_fire_only_with_include_failed(emulator, hook):
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunEventTrigger

    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "failed")
    watching = AEPFlowRunEventTrigger(flow_id, poll_interval=0.2, include_failed=True, retry_args=FAST_RETRIES)
    events = watching.run()
    pending = asyncio.ensure_future(events.__anext__())
    await until("the first look", lambda: list_reads(emulator, flow_id) >= 1)
    failed = start_run(hook, flow_id)
    payload = (await asyncio.wait_for(pending, 30)).payload
    assert (payload["run_id"], payload["status"]) == (failed, "failed")
    await events.aclose()


def test_the_event_trigger_says_it_needs_airflow_3_on_airflow_2():
    if airflow_3():
        pytest.skip("Airflow 3 has event-driven scheduling")
    from airflow_provider_aep.exceptions import AEPValidationError
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunEventTrigger

    with pytest.raises(AEPValidationError, match="needs Airflow 3"):
        AEPFlowRunEventTrigger("flow-1")


# ---------------------------------------------------------------- outlet events in a real task run
def asset_events(uri: str) -> list[dict[str, Any]]:
    from airflow.utils.session import create_session

    if airflow_3():
        from airflow.models.asset import AssetEvent, AssetModel

        with create_session() as session:
            rows = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            return [dict(e.extra) for e in rows.filter(AssetModel.uri == uri).all()]
    from airflow.models.dataset import DatasetEvent, DatasetModel

    with create_session() as session:
        rows = session.query(DatasetEvent).join(DatasetModel, DatasetEvent.dataset_id == DatasetModel.id)
        return [dict(e.extra) for e in rows.filter(DatasetModel.uri == uri).all()]


def stored_facts(extra: dict[str, Any]) -> dict[str, Any]:
    """An alias event's stored extra with the objects and arrays that Airflow 3.0 keeps as JSON text read back."""
    return {key: json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for key, v in extra.items()}


def test_the_run_task_gives_the_alias_and_a_declared_asset_the_event_of_its_dataset(emulator, hook):
    from airflow_provider_aep.assets.aep import alias_event_extra, asset_alias_class, create_asset
    from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
    from tests.conftest import RecordingTI

    if airflow_3():
        from airflow.sdk.execution_time.context import OutletEventAccessors
    else:
        from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef]
    flow_id = build_flow(hook, once())
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    declared = create_asset(org_id=hook.config.org_id, sandbox=hook.config.sandbox, dataset_id=dataset_id)
    task = AEPRunFlowOperator(
        task_id="run",
        flow_id=flow_id,
        window_start=int(time.time()) - 3600,
        window_end=int(time.time()),
        asset_alias="aep-orders",
        outlets=[declared],
        poll_interval=0.1,
        aep_retry_args=FAST_RETRIES,
    )
    events = OutletEventAccessors()
    summary = task.execute({"ti": RecordingTI(), "outlet_events": events})
    (alias_event,) = getattr(
        events[asset_alias_class()(name="aep-orders")], "asset_alias_events" if airflow_3() else "dataset_alias_events"
    )
    uri = getattr(alias_event, "dest_asset_key", None)
    assert (uri.uri if uri is not None else alias_event["dest_dataset_uri"]) == declared.uri
    extra = events[declared].extra
    assert (extra["run_id"], extra["status"], extra["records"]) == (summary["run_id"], "success", summary["records"])
    assert (alias_event.extra if airflow_3() else alias_event["extra"]) == alias_event_extra(extra)


def assert_one_event_of_the_run(hook, dataset_id: str, flow_id: str, summary: dict[str, Any]) -> None:
    uri = dataset_uri(hook.config.org_id, hook.config.sandbox, dataset_id)
    (extra,) = (stored_facts(e) for e in asset_events(uri))
    assert (extra["run_id"], extra["flow_id"], extra["status"]) == (summary["run_id"], flow_id, "success")
    assert extra["records"] == summary["records"] and extra["bytes"]["output"] > 0
    assert extra["run_url"] == summary["run_url"]


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_a_run_that_succeeds_gives_its_dataset_an_asset_event_with_the_run(
    emulator, hook, load_dag_file, trigger_events, deferrable
):
    flow_id = build_flow(hook, once())
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    name = f"aep_run_flow_asset_alias_{'deferred' if deferrable else 'poke'}"
    module = load_dag_file(
        RUN_FLOW_DAG.format(
            name=name, flow_id=flow_id, wait=True, deferrable=deferrable, extra='\n        asset_alias="aep-orders",'
        ),
        name,
    )
    dag_run = dag_test(module, name, sync=True)  # Airflow 2 looks the alias up in its DB
    assert states(dag_run)["start_run"] == "success"
    summary = xcoms(dag_run, "start_run")["return_value"]
    # Deferred, the run was still going when the task deferred: the event came from execute_complete.
    assert [e["run_id"] for e in trigger_events] == ([summary["run_id"]] if deferrable else [])
    assert_one_event_of_the_run(hook, dataset_id, flow_id, summary)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_the_sensor_gives_the_dataset_of_a_run_that_succeeds_its_asset_event(
    emulator, hook, load_dag_file, trigger_events, deferrable
):
    flow_id = build_flow(hook, every_15_minutes(first_run_in=4))  # no run yet when the sensor starts
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    name = f"aep_sensor_asset_alias_{'deferred' if deferrable else 'poke'}"
    module = load_dag_file(
        SENSOR_DAG.format(
            name=name,
            flow_id=flow_id,
            deferrable=deferrable,
            fail_on_partial_success=False,
            extra='\n        asset_alias="aep-sensed",',
        ),
        name,
    )
    dag_run = dag_test(module, name, sync=True)  # Airflow 2 looks the alias up in its DB
    assert states(dag_run) == {"wait_for_run": "success"}
    summary = xcoms(dag_run, "wait_for_run")["return_value"]
    assert [e["run_id"] for e in trigger_events] == ([summary["run_id"]] if deferrable else [])
    assert_one_event_of_the_run(hook, dataset_id, flow_id, summary)


def test_a_run_that_breaks_the_quality_gate_gives_no_asset_event(emulator, hook, load_dag_file):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "partialSuccess")
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    name = "aep_run_flow_asset_alias_gate"
    extra = '\n        asset_alias="aep-gated",\n        max_failed_records=0,'
    module = load_dag_file(
        RUN_FLOW_DAG.format(name=name, flow_id=flow_id, wait=True, deferrable=False, extra=extra), name
    )
    dag_run = dag_test(module, name, sync=True)  # Airflow 2 looks the alias up in its DB
    assert states(dag_run)["start_run"] == "failed"
    assert asset_events(dataset_uri(hook.config.org_id, hook.config.sandbox, dataset_id)) == []


def _flow_datasets(emulator, flow_id: str) -> list[str]:
    state = emulator.snapshot()["prod"]
    flow = state["flows"][flow_id]
    return [state["targetConnections"][t]["params"]["dataSetId"] for t in flow["targetConnectionIds"]]


# ---------------------------------------------------------------- OpenLineage, through the provider's extractors
def test_the_openlineage_provider_extracts_sources_dataset_statistics_and_column_lineage(emulator, hook):
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
    from tests.conftest import RecordingTI

    flow_id = build_flow(hook, once())
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    task = AEPRunFlowOperator(
        task_id="run",
        flow_id=flow_id,
        window_start=int(time.time()) - 3600,
        window_end=int(time.time()),
        poll_interval=0.1,
        aep_retry_args=FAST_RETRIES,
    )
    summary = task.execute({"ti": RecordingTI()})
    (source,) = emulator.snapshot()["prod"]["sourceConnections"].values()

    lineage = ExtractorManager().extract_metadata(
        dagrun=type("DagRun", (), {"run_id": "manual"})(),
        task=task,
        task_instance_state=_success(),
        task_instance=None,
    )
    (source_dataset,) = lineage.inputs
    assert source_dataset.namespace == f"aep-source://{source['connectionSpec']['id']}/{source['baseConnectionId']}"
    assert source_dataset.name == "Orders"
    (output,) = lineage.outputs
    assert f"{output.namespace}/{output.name}" == dataset_uri(hook.config.org_id, "prod", dataset_id)
    stats = output.outputFacets["outputStatistics"]
    assert (stats.rowCount, stats.size) == (summary["records"]["output"], summary["bytes"]["output"])
    columns = output.facets["columnLineage"].fields
    assert set(columns) == {"_id", "createdByBatchID"}
    (order_id,) = columns["_id"].inputFields
    assert (order_id.namespace, order_id.name, order_id.field) == (source_dataset.namespace, "Orders", "OrderID")
    assert lineage.run_facets["externalQuery"].externalQueryId == summary["run_id"]


def _success():
    from airflow.utils.state import TaskInstanceState

    return TaskInstanceState.SUCCESS


def _outlet_events():
    if airflow_3():
        from airflow.sdk.execution_time.context import OutletEventAccessors
    else:
        from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef]
    return OutletEventAccessors()


def _alias_events(events, name: str) -> list[tuple[str, dict]]:
    from airflow_provider_aep.assets.aep import asset_alias_class

    accessor = events[asset_alias_class()(name=name)]
    if airflow_3():
        return [(e.dest_asset_key.uri, e.extra) for e in accessor.asset_alias_events]
    return [(e["dest_dataset_uri"], e["extra"]) for e in accessor.dataset_alias_events]


def test_the_dataset_and_flow_tasks_give_their_dataset_an_event_and_the_flow_its_lineage(emulator, hook):
    from airflow_provider_aep.operators.catalog import AEPCreateDatasetOperator
    from airflow_provider_aep.operators.flow_service import AEPCreateFlowOperator
    from tests.conftest import RecordingTI

    flow_id = build_flow(hook, once())
    state = emulator.snapshot()["prod"]
    flow = state["flows"][flow_id]
    (dataset_id,) = _flow_datasets(emulator, flow_id)
    dataset = state["datasets"][dataset_id]
    uri = dataset_uri(hook.config.org_id, hook.config.sandbox, dataset_id)

    events = _outlet_events()
    reused = AEPCreateDatasetOperator(
        task_id="dataset",
        name=dataset["name"],
        schema_id=dataset["schemaRef"]["id"],
        asset_alias="aep-datasets",
        aep_retry_args=FAST_RETRIES,
    ).execute({"ti": RecordingTI(), "outlet_events": events})
    assert reused == dataset_id
    assert _alias_events(events, "aep-datasets") == [
        (uri, {"dataset_id": dataset_id, "name": dataset["name"], "created": False})
    ]

    task = AEPCreateFlowOperator(
        task_id="flow",
        name=flow["name"],
        flow_spec_id=flow["flowSpec"]["id"],
        source_connection_ids=flow["sourceConnectionIds"],
        target_connection_ids=flow["targetConnectionIds"],
        transformations=flow["transformations"],
        schedule_params=flow["scheduleParams"],
        asset_alias="aep-flows",
        aep_retry_args=FAST_RETRIES,
    )
    events = _outlet_events()
    assert task.execute({"ti": RecordingTI(), "outlet_events": events}) == flow_id
    ((event_uri, extra),) = _alias_events(events, "aep-flows")
    assert event_uri == uri and extra["flow_id"] == flow_id and extra["dataflow_url"].endswith(f"/{flow_id}/activity")

    lineage = task.get_openlineage_facets_on_complete(None)
    assert [f"{o.namespace}/{o.name}" for o in lineage.outputs] == [uri]
    assert [i.name for i in lineage.inputs] == ["Orders"]
    assert "outputStatistics" not in lineage.outputs[0].outputFacets  # a flow, not a run: no counts
    assert set(lineage.outputs[0].facets["columnLineage"].fields) == {"_id", "createdByBatchID"}
