"""The example DAGs: they load cleanly, run to success against the emulator, re-run safely, and fail or
warn as designed on failed and partial runs; the main one survives faults without leaking secrets."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_aep.testing import AEPEmulator, FaultConfig
from tests.conftest import (
    LEGACY_ONLY_TASKS,
    ONE_CURRENT_PIPELINE,
    ONE_LEGACY_PIPELINE,
    PIPELINE_KINDS,
    airflow_3,
    pipeline_resource_counts,
    xcoms,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_IDS = {"aep_protocols_ingestion", "aep_scheduled_ingestion", "aep_multi_source_ingestion", "aep_teardown"}
AIRFLOW_3_DAG_IDS = {"aep_on_new_data"}  # event-driven scheduling (AssetWatcher)


@pytest.fixture
def emulator(monkeypatch):
    # 600 emulated seconds per real second: a 15-minute schedule ticks every 1.5 s, a run lasts ~0.5 s.
    with AEPEmulator(time_scale=600, min_run_seconds=0.3) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        yield emu


@pytest.fixture
def example(load_dag_file):
    def _load(dag_id: str):
        module = load_dag_file(EXAMPLES / f"{dag_id}.py", dag_id)
        dag = module.dag
        for task in dag.tasks:  # the examples poll like production DAGs; tests need not wait that long
            if hasattr(task, "poke_interval"):
                task.poke_interval = 0.2
            if hasattr(task, "poll_interval"):
                task.poll_interval = 0.2
        return dag

    return _load


def _states(run) -> dict[str, str]:
    return {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: ti.state
        for ti in run.get_task_instances()
    }


def _logs(caplog, capfd) -> str:
    """Task logs: structlog on stdout on Airflow 3, the logging module on Airflow 2."""
    captured = capfd.readouterr()
    return captured.out + captured.err + caplog.text


def _creates(emulator: AEPEmulator) -> list:
    return [
        r for r in emulator.request_log if r.method == "POST" and "/ims/" not in r.path and not r.path.endswith("/runs")
    ]


# ---------------------------------------------------------------- loading
def test_every_example_dag_loads_without_errors_or_api_calls(requests_mock, monkeypatch):
    import httpx

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag

    def no_network(*args, **kwargs):
        raise AssertionError("an example DAG made an HTTP call at parse time")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(httpx.AsyncClient, "send", no_network)
    bag = (
        DagBag(dag_folder=str(EXAMPLES), include_examples=False)
        if not airflow_3()
        else DagBag(dag_folder=str(EXAMPLES))
    )
    expected = DAG_IDS | AIRFLOW_3_DAG_IDS if airflow_3() else DAG_IDS
    if airflow_3():
        assert bag.import_errors == {}
    else:  # the Airflow 3 examples say that they need it
        assert {Path(f).stem for f in bag.import_errors} == AIRFLOW_3_DAG_IDS, bag.import_errors
        assert all("needs Airflow 3" in e for e in bag.import_errors.values()), bag.import_errors
    assert set(bag.dag_ids) == expected
    assert requests_mock.request_history == []
    for dag_id in expected:
        dag = bag.dags[dag_id]
        assert dag.doc_md and "aep" in dag.tags


# Only a trigger built at parse time (an AssetWatcher's) needs the client; every other task loads it when it runs.
TRANSPORT_MODULES = (
    "airflow_provider_aep.utils.client_core",
    "airflow_provider_aep.hooks.aep",
    "airflow_provider_aep.hooks.aep_async",
    "airflow_provider_aep.hooks.operations",
    "airflow_provider_aep.triggers.shared_reads",
    "airflow_provider_aep.utils.token_store",
)


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_parsing_an_example_dag_loads_no_client(dag_id):
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('parsed', {str(EXAMPLES / (dag_id + '.py'))!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.dag.tasks\n"
        f"print(json.dumps(sorted(set({TRANSPORT_MODULES!r}) & set(sys.modules))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _example_module(dag_id: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_form_{dag_id}", EXAMPLES / f"{dag_id}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _form_widget(schema: dict) -> str:
    """
    The widget Airflow 3.3's trigger form gives a Param of this schema, for the kinds our examples use
    (FlexibleForm's field selection: an untyped array is one text line per item; an array whose items are
    typed other than string, or an object, is a JSON editor).
    """
    kind = schema.get("type")
    if isinstance(kind, list):  # the form takes the first type that is not "null"
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in schema:
        return "select"
    if kind == "array":
        item_type = (schema.get("items") or {}).get("type")
        return "lines of text" if item_type in (None, "string") else "JSON editor"
    return {"object": "JSON editor", "integer": "number", "string": "text"}.get(kind, f"untyped {kind!r}")


EXPECTED_WIDGETS = {
    "aep_protocols_ingestion": {
        "name": "text",
        "variant": "select",
        "source_table": "text",
        "odata_url": "text",
        "source_fields": "JSON editor",
        "mappings": "JSON editor",
        "delta_column": "text",
        "frequency": "select",
        "interval": "number",
    },
    "aep_multi_source_ingestion": {"sources": "JSON editor", "odata_url": "text"},
    "aep_teardown": {"name": "text"},
    "aep_scheduled_ingestion": {},
}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_WIDGETS))
def test_every_param_is_an_editable_widget_of_its_kind_with_a_title_and_a_description(dag_id):
    params = _example_module(dag_id).dag.params
    widgets = {}
    for key in params:
        param = params.get_param(key)
        widgets[key] = _form_widget(param.schema)
        assert param.schema.get("title") and param.description, key
        param.resolve(param.value)  # the default passes its own schema
    assert widgets == EXPECTED_WIDGETS[dag_id]


def test_the_trigger_form_rejects_mappings_it_would_once_have_sent_as_text():
    from airflow.exceptions import ParamValidationError

    mappings = _example_module("aep_protocols_ingestion").dag.params.get_param("mappings")
    tutorial_form = [{"sourceAttribute": "OrderID", "destinationXdmPath": "_id"}]
    assert mappings.resolve(tutorial_form) == tutorial_form
    for bad in (["[object Object]"], [{"source": "OrderID"}], [], [{"source": "", "destination": "_id"}]):
        with pytest.raises(ParamValidationError):
            mappings.resolve(bad)

    sources = _example_module("aep_multi_source_ingestion").dag.params.get_param("sources")
    with pytest.raises(ParamValidationError):
        sources.resolve([{"table": "Orders", "fields": {"OrderID": "string"}, "mappings": ["OrderID -> _id"]}])


# ---------------------------------------------------------------- aep_protocols_ingestion
def test_protocols_dag_runs_and_rerun_creates_nothing(example, emulator):
    dag = example("aep_protocols_ingestion")
    first = dag.test(run_conf={"name": "Example Orders"})
    assert first.state == "success", _states(first)
    counts = pipeline_resource_counts(emulator)
    assert counts == ONE_LEGACY_PIPELINE
    flow = next(iter(emulator.snapshot()["prod"]["flows"].values()))
    assert flow["name"] == "Example Orders dataflow"

    emulator.reset_log()
    second = dag.test(run_conf={"name": "Example Orders"})
    assert second.state == "success", _states(second)
    assert pipeline_resource_counts(emulator) == counts
    assert _creates(emulator) == []


def test_protocols_dag_current_variant(example, emulator):
    dag = example("aep_protocols_ingestion")
    run = dag.test(run_conf={"name": "Current Orders", "variant": "current"})
    assert run.state == "success", _states(run)
    states = _states(run)
    assert [states[task_id] for task_id in LEGACY_ONLY_TASKS] == ["skipped", "skipped"]
    assert pipeline_resource_counts(emulator) == ONE_CURRENT_PIPELINE
    source = next(iter(emulator.snapshot()["prod"]["sourceConnections"].values()))
    assert source["data"]["format"] == "tabular" and source["params"]["tableName"] == "Orders"


def test_protocols_dag_fails_on_a_failed_run_with_the_aep_error(example, emulator, caplog, capfd):
    emulator.set_flow_outcome("Failing Orders dataflow", "failed")
    dag = example("aep_protocols_ingestion")
    run = dag.test(run_conf={"name": "Failing Orders"})
    assert run.state == "failed"
    assert _states(run)["wait_for_first_run"] == "failed"
    assert "CONNECTOR-1001-500" in _logs(caplog, capfd)


def test_protocols_dag_warns_on_a_partial_success(example, emulator, caplog, capfd):
    emulator.set_flow_outcome("Partial Orders dataflow", "partialSuccess")
    dag = example("aep_protocols_ingestion")
    run = dag.test(run_conf={"name": "Partial Orders"})
    assert run.state == "success", _states(run)
    out = _logs(caplog, capfd)
    assert "partialSuccess" in out and "warning" in out.lower()


def test_protocols_dag_survives_faults_and_leaks_no_secret(example, monkeypatch, caplog, capfd):
    # Tokens live 1 s: the DAG run outlives its first tokens, so the hooks must refresh mid-run.
    with AEPEmulator(time_scale=600, min_run_seconds=0.3, token_ttl=1, seed=3) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        emu.faults = FaultConfig(rate=0.3, drop_after_commit_rate=0.3, retry_after=0, seed=21)
        dag = example("aep_protocols_ingestion")
        for task in dag.tasks:
            if hasattr(task, "aep_retry_delay"):
                task.aep_retry_delay = 0.01
                task.aep_retry_limit = 10
        # Refresh-ahead starts at half a short lifetime: a new token every half second (and on any 401).
        run = dag.test(run_conf={"name": "Faulty Orders"})
        assert run.state == "success", _states(run)
        assert pipeline_resource_counts(emu) == ONE_LEGACY_PIPELINE
        faults = collections.Counter(r.fault for r in emu.request_log if r.fault)
        assert faults["drop_after_commit"] >= 1 and len(faults) >= 2, faults
        tokens = emu.issued_tokens
        assert len(tokens) > 1
        # Airflow 3.0's dag.test() prints each request to its in-process supervisor at debug level, unmasked,
        # the MaskSecret requests that register these very secrets too: Airflow's lines, not the provider's.
        text = "\n".join(line for line in _logs(caplog, capfd).splitlines() if "msg=MaskSecret(" not in line)
        assert "Created dataflow" in text  # the task logs really are in what we searched
        assert emu.client_secret not in text
        for token in tokens:
            assert token not in text


# ---------------------------------------------------------------- the other examples
def test_scheduled_dag_runs_on_demand_for_its_interval(example, emulator):
    import pendulum

    dag = example("aep_scheduled_ingestion")
    logical_date = pendulum.datetime(2026, 1, 1, 10, tz="UTC")
    run = dag.test(logical_date=logical_date) if airflow_3() else dag.test(execution_date=logical_date)
    assert run.state == "success", _states(run)
    flow = next(iter(emulator.snapshot()["prod"]["flows"].values()))
    assert flow["scheduleParams"]["frequency"] == "once"
    posted = [r for r in emulator.request_log if r.method == "POST" and r.path.endswith("/runs")]
    assert len(posted) == 1
    report = run.get_task_instance("report_metrics").xcom_pull(task_ids="report_metrics")
    assert report["status"] == "success" and report["records_input"] > 0


def test_scheduled_dag_re_runs_a_failed_run_once(example, emulator):
    # Outcomes go to runs in the order they complete: first the `once` flow's own run at its startTime.
    emulator.set_flow_outcome("Scheduled Orders dataflow", ["success", "failed", "success"])
    run = example("aep_scheduled_ingestion").test()
    assert run.state == "success", _states(run)
    posted = [r for r in emulator.request_log if r.method == "POST" and r.path.endswith("/runs")]
    retriggered = [r for r in emulator.request_log if r.method == "POST" and r.path.endswith("/action")]
    assert (len(posted), len(retriggered)) == (1, 1)
    runs = sorted(emulator.snapshot()["prod"]["runs"].values(), key=lambda r: r["createdAt"])
    statuses = [(r["metrics"]["statusSummary"]["status"], "params" in r) for r in runs]  # params: on demand
    assert statuses == [("success", False), ("failed", True), ("success", True)]


def test_scheduled_dag_gate_fails_a_success_that_rejected_too_many_rows(example, emulator):
    emulator.set_flow_outcome("Scheduled Orders dataflow", "success", failed_records=0.05)
    run = example("aep_scheduled_ingestion").test()
    states = _states(run)
    assert (run.state, states["run_for_interval"], states["report_metrics"]) == ("failed", "failed", "upstream_failed")
    summary = run.get_task_instance("run_for_interval").xcom_pull(task_ids="run_for_interval", key="run_summary")
    assert summary["status"] == "success" and summary["records"]["failed"] > 0
    assert (
        len(summary["diagnostics"]["row_errors"]) == 5 and summary["diagnostics"]["batches"][0]["status"] == "success"
    )
    retriggered = [r for r in emulator.request_log if r.method == "POST" and r.path.endswith("/action")]
    assert retriggered == []  # a gate failure is not a failed run: nothing to re-trigger


def test_multi_source_dag_maps_one_pipeline_per_table(example, emulator):
    dag = example("aep_multi_source_ingestion")
    run = dag.test()
    assert run.state == "success", _states(run)
    flows = sorted(f["name"] for f in emulator.snapshot()["prod"]["flows"].values())
    assert flows == ["Multi Customers dataflow", "Multi Employees dataflow", "Multi Orders dataflow"]
    sensors = [ti for ti in run.get_task_instances() if ti.task_id.endswith("wait_for_first_run")]
    assert sorted(ti.map_index for ti in sensors) == [0, 1, 2]
    assert all(ti.state == "success" for ti in sensors)
    # Each mapped pipeline is of the current variant: its legacy-only tasks are skipped and create nothing.
    states = _states(run)
    legacy_only = {key: state for key, state in states.items() if key.split(".")[-1].split("[")[0] in LEGACY_ONLY_TASKS}
    assert legacy_only == {f"ingest_source.{t}[{i}]": "skipped" for t in LEGACY_ONLY_TASKS for i in range(3)}
    assert pipeline_resource_counts(emulator) == {kind: 3 * n for kind, n in ONE_CURRENT_PIPELINE.items()}
    # Orders and Employees list their fields; Customers leaves them out and gets its explored table's columns.
    fields = [
        run.get_task_instance("ingest_source.source_fields", map_index=i).xcom_pull(
            task_ids="ingest_source.source_fields", map_indexes=i
        )
        for i in range(3)
    ]
    customers = dict.fromkeys(("CustomerID", "CompanyName", "ContactName", "City", "Country", "Phone"), "string")
    assert fields[1] == {**customers, "ModifiedDate": "date-time"}
    assert (fields[0], fields[2]) == (
        {"OrderID": "string", "CustomerID": "string", "OrderDate": "date-time"},
        {
            "EmployeeID": "integer",
            "LastName": "string",
            "HireDate": "date-time",
        },
    )


def test_teardown_dag_removes_what_a_run_created(example, emulator):
    created = example("aep_protocols_ingestion").test(run_conf={"name": "Doomed Orders"})
    assert created.state == "success", _states(created)
    assert sum(pipeline_resource_counts(emulator).values()) == 10

    run = example("aep_teardown").test(run_conf={"name": "Doomed Orders"})
    assert run.state == "success", _states(run)
    # Adobe documents no mapping-set delete; the strict emulator refuses it (405), so the mapping set stays.
    assert pipeline_resource_counts(emulator) == {**dict.fromkeys(PIPELINE_KINDS, 0), "mappingSets": 1}
    (left,) = emulator.snapshot()["prod"]["mappingSets"]
    assert xcoms(run, "delete_resources")["return_value"]["left_in_place"] == {"mapping_sets": [left]}
    again = example("aep_teardown").test(run_conf={"name": "Doomed Orders"})
    assert again.state == "success", _states(again)
    assert xcoms(again, "delete_resources")["return_value"]["left_in_place"] == {"mapping_sets": [left]}
