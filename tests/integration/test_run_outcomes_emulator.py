"""
Run outcomes against the emulator, in real ``dag.test()`` DAG runs or tasks run as Airflow runs them, waiting
in the worker and in the triggerer alike: the quality gate with AEP's diagnostics (and diagnostics that cannot
be read), re-triggering failed runs and AEP's refusals, a flow that does not exist, a retried or cleared task
that reattaches to its run, and flow states and updates.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from functools import partial
from typing import Any

import pendulum
import pytest

from airflow_provider_aep.exceptions import (
    AEPFlowRunFailedError,
    AEPResourceConflictError,
    AEPResourceNotFoundError,
    AEPRetriggerRefusedError,
)
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.operators.flow_run import AEPRetriggerFlowRunOperator, AEPRunFlowOperator
from airflow_provider_aep.operators.flow_service import (
    TARGET_SCHEMA_VERSION,
    AEPCreateFlowOperator,
    AEPSetFlowStateOperator,
)
from airflow_provider_aep.testing import AEPEmulator, FaultConfig
from airflow_provider_aep.testing.errors import placeholder_error
from airflow_provider_aep.testing.services import data_access
from airflow_provider_aep.utils.flow_runs import Outcome, outcome_of, run_status
from airflow_provider_aep.version_compat import TaskDeferred
from tests.conftest import RecordingTI, as_words, task_log_text
from tests.integration.conftest import FAST_RETRIES
from tests.integration.test_flow_run_emulator import (
    RUN_FLOW_DAG,
    SENSOR_DAG,
    build_flow,
    dag_test,
    every_15_minutes,
    once,
    states,
    xcoms,
)
from tests.operators.test_run_flow_operator import DagRun

MODES = pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
RUNS = "/data/foundation/flowservice/runs"


def mode(deferrable: bool) -> str:
    return "deferred" if deferrable else "poke"


def posts(emulator, suffix: str) -> list[Any]:
    return [r for r in emulator.request_log if r.method == "POST" and r.path.endswith(suffix)]


# ---------------------------------------------------------------- running a task as Airflow does
def run_operator(flow_id: str, window_end: Any = None, **kwargs: Any) -> AEPRunFlowOperator:
    """An on-demand run of ``flow_id`` for the hour before ``window_end`` (default: now), polled quickly."""
    end = window_end or pendulum.now("UTC").replace(microsecond=0)
    return AEPRunFlowOperator(
        task_id="run",
        flow_id=flow_id,
        window_start=end - timedelta(hours=1),
        window_end=end,
        delta_column="OrderDate",
        poll_interval=0.2,
        timeout=60,
        aep_retry_args=FAST_RETRIES,
        **kwargs,
    )


async def run_task(task: Any, context: dict[str, Any]) -> Any:
    """``task`` as Airflow runs it: ``execute``, then for each deferral its trigger's one event, handed (as
    JSON) to the method the deferral names."""
    call = partial(task.execute, context)
    while True:
        try:
            return call()
        except TaskDeferred as deferred:
            (event,) = [e.payload async for e in deferred.trigger.run()]
            call = partial(getattr(task, deferred.method_name), context, event=json.loads(json.dumps(event)))


def platform_calls(emulator) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in emulator.request_log if r.service != "ims"]


def retrigger_operator(run_id: str, **kwargs: Any) -> AEPRetriggerFlowRunOperator:
    return AEPRetriggerFlowRunOperator(
        task_id="rerun", run_id=run_id, poll_interval=0.2, timeout=60, aep_retry_args=FAST_RETRIES, **kwargs
    )


def finished_run(hook, flow_id: str) -> str:
    """A run of ``flow_id`` for the hour before now, once it has finished."""
    now = int(time.time())
    run_id = hook.create_run(
        flow_id,
        {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now, "deltaColumn": {"name": "OrderDate"}},
    )
    while outcome_of(run_status(hook.get_run(run_id))) is Outcome.WAIT:
        time.sleep(0.1)
    return run_id


# ---------------------------------------------------------------- the quality gate
@MODES
@pytest.mark.parametrize(
    ("max_failed_ratio", "task_state"), [(0.01, "failed"), (0.1, "success")], ids=["over", "under"]
)
def test_sensor_gate_fails_a_success_with_too_many_rejected_rows(
    emulator, hook, load_dag_file, deferrable, max_failed_ratio, task_state
):
    flow_id = build_flow(hook, every_15_minutes(first_run_in=3))
    emulator.set_flow_outcome(flow_id, "success", failed_records=0.05)  # AEP still says success
    name = f"aep_gate_{mode(deferrable)}_{task_state}"
    extra = f"max_failed_ratio={max_failed_ratio}, diagnostics_rows=3"
    source = SENSOR_DAG.format(
        name=name, flow_id=flow_id, deferrable=deferrable, fail_on_partial_success=False, extra=extra
    )
    dag_run = dag_test(load_dag_file(source, name), name)
    assert states(dag_run) == {"wait_for_run": task_state}
    pushed = xcoms(dag_run, "wait_for_run")
    if task_state == "success":
        assert pushed["return_value"]["status"] == "success" and "run_summary" not in pushed
        return
    summary = pushed["run_summary"]
    assert summary["status"] == "success" and summary["records"]["failed"] > 0
    diagnostics = summary["diagnostics"]
    (batch_id,) = summary["batch_ids"]
    assert diagnostics["batches"][0]["id"] == batch_id and diagnostics["batches"][0]["status"] == "success"
    assert diagnostics["batches"][0]["records"]["failed"] == summary["records"]["failed"]
    assert len(diagnostics["row_errors"]) == 3
    assert {(e["batch_id"], e["code"]) for e in diagnostics["row_errors"]} == {(batch_id, "1401"), (batch_id, "1555")}
    assert diagnostics["unavailable"] == []


@MODES
async def test_run_operator_gate_fails_a_success_with_too_many_rejected_rows_in_one_line(emulator, hook, deferrable):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "success", failed_records=0.05)  # AEP still says success
    context = {"ti": RecordingTI()}
    with pytest.raises(AEPFlowRunFailedError) as err:
        await run_task(run_operator(flow_id, deferrable=deferrable, max_failed_ratio=0.01, diagnostics_rows=3), context)
    summary = context["ti"].xcom["run_summary"]
    failed, total = summary["records"]["failed"], summary["records"]["input"]
    share = f"{failed / total * 100:.2f}".rstrip("0").rstrip(".")
    first, *details = str(err.value).splitlines()
    assert first == (
        f"AEP flow run {summary['run_id']} of flow {flow_id} finished success but failed the quality gate: "
        f"{failed:,} of {total:,} records failed ({share}%), more than max_failed_ratio=0.01 (1%). "
        f"See {summary['run_url']} (dataflow: {summary['dataflow_url']})"
    )
    (batch_id,) = summary["batch_ids"]
    assert details[-4] == "Row errors (3 shown):"
    assert all(line.startswith(f"  batch {batch_id}: [") for line in details[-3:])
    assert len(summary["diagnostics"]["row_errors"]) == 3 and summary["diagnostics"]["unavailable"] == []
    assert summary["diagnostics"]["batches"][0]["records"]["failed"] == failed


@MODES
async def test_a_partial_success_succeeds_explained_by_its_diagnostics(emulator, hook, deferrable, caplog, capsys):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "partialSuccess")
    with caplog.at_level("WARNING"):
        summary = await run_task(
            run_operator(flow_id, deferrable=deferrable, diagnostics_rows=2), {"ti": RecordingTI()}
        )
    assert summary["status"] == "partialSuccess" and summary["records"]["failed"] > 0
    diagnostics = summary["diagnostics"]
    (batch_id,) = diagnostics["batch_ids"]
    (batch,) = diagnostics["batches"]
    assert (batch["id"], batch["records"]["failed"]) == (batch_id, summary["records"]["failed"])
    assert [e["batch_id"] for e in diagnostics["row_errors"]] == [batch_id, batch_id]
    assert all(e["code"] and e["message"] for e in diagnostics["row_errors"])
    assert diagnostics["errors"] == summary["errors"] and diagnostics["unavailable"] == []
    logged = as_words(task_log_text(caplog, capsys))
    where = f"AEP flow run {summary['run_id']} of flow {flow_id}"
    assert f"{where} finished partialSuccess: {summary['records']['failed']:,} records failed" in logged
    assert f"Row errors (2 shown): batch {batch_id}: [{diagnostics['row_errors'][0]['code']}]" in logged


@MODES
@pytest.mark.parametrize("final", ["failed", "partialSuccess"])
async def test_a_diagnostics_read_that_fails_never_hides_the_runs_outcome(
    emulator, hook, monkeypatch, deferrable, final
):
    def data_access_down(*args: Any) -> Any:
        raise placeholder_error(503, "ServiceUnavailable", "Data Access is unavailable.")

    monkeypatch.setattr(data_access.run_engine, "row_error_files", data_access_down)
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, final, failed_records=4)
    context = {"ti": RecordingTI()}
    try:
        summary = await run_task(run_operator(flow_id, deferrable=deferrable), context)
    except AEPFlowRunFailedError as exc:
        summary, message = context["ti"].xcom["run_summary"], str(exc)
        assert message.startswith(f"AEP flow run {summary['run_id']} of flow {flow_id} failed: [")
    assert summary["status"] == final
    (batch_id,) = summary["batch_ids"]
    diagnostics = summary["diagnostics"]
    assert [b["id"] for b in diagnostics["batches"]] == [batch_id]  # Catalog still answered
    assert diagnostics["row_errors"] == []
    (note,) = diagnostics["unavailable"]
    assert note.startswith(f"the row errors of batch {batch_id}: ") and "503" in note
    reads = [r.status for r in emulator.request_log if r.path == f"/data/foundation/export/batches/{batch_id}/meta"]
    assert reads and set(reads) == {503}


# ---------------------------------------------------------------- re-trigger
@MODES
def test_a_failed_run_is_re_triggered_once_and_its_re_run_succeeds(emulator, hook, load_dag_file, deferrable):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, ["failed", "success"])
    name = f"aep_retrigger_{mode(deferrable)}"
    source = RUN_FLOW_DAG.format(
        name=name, flow_id=flow_id, wait=True, deferrable=deferrable, extra="retrigger_failed=2"
    )
    dag_run = dag_test(load_dag_file(source, name), name)
    assert states(dag_run) == {"start_run": "success", "watch_run": "success"}
    pushed = xcoms(dag_run, "start_run")
    assert xcoms(dag_run, "watch_run")["return_value"]["run_id"] == pushed["run_id"]  # the sensor saw the re-run
    runs = hook.list_runs(flow_id)
    assert [r["metrics"]["statusSummary"]["status"] for r in runs] == ["success", "failed"]  # newest first
    assert pushed["return_value"]["run_id"] == pushed["run_id"] == runs[0]["id"]
    assert len(posts(emulator, "/runs")) == 1
    assert [r.path.split("/")[-2] for r in posts(emulator, "/action")] == [runs[1]["id"]]


@MODES
def test_a_run_that_keeps_failing_fails_the_task_after_the_re_triggers_allowed(
    emulator, hook, load_dag_file, deferrable
):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "failed", failed_records=4)  # fails at promotion, with row errors
    name = f"aep_retrigger_spent_{mode(deferrable)}"
    source = RUN_FLOW_DAG.format(
        name=name, flow_id=flow_id, wait=True, deferrable=deferrable, extra="retrigger_failed=1"
    )
    dag_run = dag_test(load_dag_file(source, name), name)
    assert states(dag_run) == {"start_run": "failed", "watch_run": "upstream_failed"}
    runs = hook.list_runs(flow_id)
    assert len(runs) == 2 and len(posts(emulator, "/action")) == 1
    summary = xcoms(dag_run, "start_run")["run_summary"]
    assert summary["run_id"] == runs[0]["id"] and summary["status"] == "failed"
    assert len(summary["diagnostics"]["row_errors"]) == 4
    assert summary["diagnostics"]["batches"][0]["status"] == "failed"


def test_a_lost_answer_to_a_re_trigger_does_not_re_trigger_twice(emulator, hook):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "failed")
    failed = finished_run(hook, flow_id)
    emulator.faults = FaultConfig(drop_after_commit_rate=1.0)
    rerun = hook.retrigger_run(failed)
    emulator.faults = FaultConfig()
    assert rerun != failed
    assert [r["id"] for r in hook.list_runs(flow_id)] == [rerun, failed]
    assert [r.fault for r in posts(emulator, "/action")] == ["drop_after_commit"]
    assert hook.retrigger_run(failed) == rerun  # and asked again (a retried task), it is found, not re-sent
    assert len(posts(emulator, "/action")) == 1


@MODES
async def test_the_retrigger_operator_re_runs_a_failed_run_and_its_retry_follows_that_re_run(
    emulator, hook, deferrable
):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, ["failed", "success"])
    failed = finished_run(hook, flow_id)
    context = {"ti": RecordingTI()}
    summary = await run_task(retrigger_operator(failed, deferrable=deferrable), context)
    rerun, _ = (r["id"] for r in hook.list_runs(flow_id))
    assert (summary["run_id"], summary["flow_id"], summary["status"]) == (rerun, flow_id, "success")
    assert context["ti"].xcom["run_id"] == rerun
    retried = await run_task(retrigger_operator(failed, deferrable=deferrable), {"ti": RecordingTI()})
    assert retried["run_id"] == rerun  # found, not re-triggered again
    assert [r.path.split("/")[-2] for r in posts(emulator, "/action")] == [failed]


REFUSALS = pytest.mark.parametrize(
    ("final", "state", "why"),
    [
        (
            "success",
            "enabled",
            "[FLOW-1422-400] The action re_trigger cannot be applied on the current state success: only a failed "
            "run can be re-triggered.",
        ),
        ("failed", "disabled", "[FLOW-1444-400] Flow {flow_id} is not in expected state enabled."),
    ],
    ids=["not-failed", "flow-disabled"],
)


@MODES
@REFUSALS
async def test_the_retrigger_operator_fails_in_one_line_where_aep_refuses(
    emulator, hook, deferrable, final, state, why
):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, final)
    run_id = finished_run(hook, flow_id)
    hook.set_flow_state(flow_id, state)
    with pytest.raises(AEPRetriggerRefusedError) as err:
        await run_task(retrigger_operator(run_id, deferrable=deferrable), {"ti": RecordingTI()})
    assert str(err.value) == (
        f"AEP refused to re-trigger flow run {run_id} of flow {flow_id} (HTTP 400): {why.format(flow_id=flow_id)}"
    )
    assert [r["id"] for r in hook.list_runs(flow_id)] == [run_id]


@MODES
async def test_a_re_trigger_refused_for_a_disabled_flow_is_one_line_and_the_run_fails_with_its_errors(
    emulator, hook, deferrable, caplog, capsys
):
    flow_id = build_flow(hook, once())
    emulator.set_flow_outcome(flow_id, "failed")

    def disable_once_started(emu: AEPEmulator, record: Any) -> None:  # disabled while its run goes
        if emu is emulator and (record.method, record.path, record.status) == ("POST", RUNS, 201):
            AEPHook(retry_args=FAST_RETRIES).set_flow_state(flow_id, "disabled")

    AEPEmulator.add_listener(disable_once_started)
    try:
        with caplog.at_level("WARNING"), pytest.raises(AEPFlowRunFailedError) as err:
            task = run_operator(flow_id, deferrable=deferrable, retrigger_failed=2)
            await run_task(task, {"ti": RecordingTI(), "dag_run": DagRun(pendulum.now("UTC"))})
    finally:
        AEPEmulator.remove_listener(disable_once_started)
    (run_id,) = (r["id"] for r in hook.list_runs(flow_id))
    assert str(err.value).startswith(f"AEP flow run {run_id} of flow {flow_id} failed: [CONNECTOR-1001-500]")
    refusals = [line for line in task_log_text(caplog, capsys).splitlines() if "refused" in line]
    assert len(refusals) == 1
    assert (
        f"AEP refused to re-trigger flow run {run_id} of flow {flow_id} (HTTP 400): [FLOW-1444-400] Flow {flow_id} "
        "is not in expected state enabled."
    ) in refusals[0]


# ---------------------------------------------------------------- a flow that does not exist
@MODES
async def test_a_run_of_a_flow_that_does_not_exist_fails_on_its_first_call_naming_it(emulator, deferrable):
    context = {"ti": RecordingTI(), "dag_run": DagRun(pendulum.now("UTC"))}
    with pytest.raises(AEPResourceNotFoundError) as err:
        await run_task(run_operator("no-such-flow", deferrable=deferrable), context)
    assert str(err.value) == "AEP flow no-such-flow does not exist in sandbox 'prod': no run can be started"
    assert platform_calls(emulator) == [("GET", "/data/foundation/flowservice/flows/no-such-flow")]


# ---------------------------------------------------------------- reattach
@MODES
async def test_a_cleared_task_follows_its_earlier_run_instead_of_starting_a_second(emulator, hook, deferrable):
    flow_id = build_flow(hook, once())
    end = pendulum.now("UTC").replace(microsecond=0)
    dag_run = DagRun(pendulum.now("UTC") - timedelta(minutes=5))
    crashed_try = run_operator(flow_id, end, wait_for_completion=False)
    first = crashed_try.execute({"ti": RecordingTI(), "dag_run": dag_run})
    # Cleared after the DAG run finished: Airflow restarts the DAG run now, after the first run was created.
    context = {"ti": RecordingTI(), "dag_run": DagRun(dag_run.run_after, start_date=pendulum.now("UTC"))}
    assert (await run_task(run_operator(flow_id, end, deferrable=deferrable), context))["run_id"] == first
    assert context["ti"].xcom["run_id"] == first
    assert len(posts(emulator, "/runs")) == 1
    # A different window is a different run.
    earlier_window = run_operator(flow_id, end - timedelta(hours=1), wait_for_completion=False)
    other = earlier_window.execute({"ti": RecordingTI(), "dag_run": dag_run})
    assert other != first and len(posts(emulator, "/runs")) == 2


# ---------------------------------------------------------------- flow states and updates
def test_set_flow_state_disables_once_and_a_disabled_flow_gets_no_runs(emulator, hook):
    schedule = every_15_minutes(first_run_in=5)  # disabled well before its first run is due, even on a busy machine
    flow_id = build_flow(hook, schedule)
    for _ in range(2):
        AEPSetFlowStateOperator(task_id="off", flow_id=flow_id, state="disabled").execute({"ti": RecordingTI()})
    assert hook.get_flow(flow_id)["state"] == "disabled"
    assert len(posts(emulator, f"/flows/{flow_id}/action")) == 1
    assert hook.list_runs(flow_id) == []
    time.sleep(max(0.0, schedule["startTime"] + 2 - time.time()))  # past the first run's due time
    assert hook.list_runs(flow_id) == []
    AEPSetFlowStateOperator(task_id="on", flow_id=flow_id, state="enabled").execute({"ti": RecordingTI()})
    assert hook.get_flow(flow_id)["state"] == "enabled"


def update_flow_operator(existing: dict[str, Any], **asked: Any) -> AEPCreateFlowOperator:
    """``AEPCreateFlowOperator(if_exists="update")`` for the flow ``existing``, with what ``asked`` changes."""
    return AEPCreateFlowOperator(
        task_id="flow",
        name=existing["name"],
        flow_spec_id=existing["flowSpec"]["id"],
        source_connection_ids=existing["sourceConnectionIds"],
        target_connection_ids=asked.pop("targets", existing["targetConnectionIds"]),
        transformations=asked.pop("transformations", existing["transformations"]),
        schedule_params=asked.pop("schedule_params", existing["scheduleParams"]),
        if_exists="update",
        aep_retry_args=FAST_RETRIES,
    )


def patches(emulator, flow_id: str) -> list[Any]:
    return [r for r in emulator.request_log if r.method == "PATCH" and r.path.endswith(f"/flows/{flow_id}")]


def test_create_flow_with_update_patches_the_schedule_of_the_existing_flow(emulator, hook):
    flow_id = build_flow(hook, every_15_minutes(first_run_in=3600), prefix="upd")
    existing = hook.get_flow(flow_id)
    schedule = {"startTime": int(time.time()) + 3600, "frequency": "hour", "interval": 2}
    assert update_flow_operator(existing, schedule_params=schedule).execute({"ti": RecordingTI()}) == flow_id
    updated = hook.get_flow(flow_id)
    assert (updated["scheduleParams"]["frequency"], updated["scheduleParams"]["interval"]) == ("hour", 2)
    assert updated["etag"] != existing["etag"]
    with pytest.raises(AEPResourceConflictError, match="target connections"):
        update_flow_operator(existing, targets=["another"]).execute({"ti": RecordingTI()})


def test_create_flow_with_update_patches_a_new_mapping_and_delta_column_with_the_etag(emulator, hook):
    flow_id = build_flow(hook, once(), prefix="remap")
    existing = hook.get_flow(flow_id)
    (target_id,) = existing["targetConnectionIds"]
    schema_id = hook.get_target_connection(target_id)["data"]["schema"]["id"]
    mapping = hook.create_mapping_set(
        {
            "outputSchema": {"schemaRef": {"id": schema_id, "contentType": TARGET_SCHEMA_VERSION}},
            "mappings": [{"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"}],
        }
    )
    remapped = [
        existing["transformations"][0],
        {"name": "Mapping", "params": {"mappingId": mapping["id"], "mappingVersion": str(mapping["version"])}},
    ]
    delta = {"name": "OrderDate", "dateFormat": "yyyy-MM-ddTHH:mm:ssZ", "timezone": "UTC"}
    reformatted = [{"name": "Copy", "params": {"deltaColumn": delta}}, remapped[1]]  # only the Copy differs
    etags = []
    for transformations in (remapped, reformatted, reformatted):  # the last time, nothing differs
        etags.append(hook.get_flow(flow_id)["etag"])
        task = update_flow_operator(existing, transformations=transformations)
        assert task.execute({"ti": RecordingTI()}) == flow_id
    updated = hook.get_flow(flow_id)
    assert updated["transformations"] == reformatted
    assert updated["scheduleParams"] == existing["scheduleParams"]
    sent = patches(emulator, flow_id)
    assert [json.loads(p.body) for p in sent] == [
        [{"op": "replace", "path": "/transformations", "value": remapped}],
        [{"op": "replace", "path": "/transformations", "value": reformatted}],
    ]
    assert [{k.lower(): v for k, v in p.headers.items()}["if-match"] for p in sent] == etags[:2]
