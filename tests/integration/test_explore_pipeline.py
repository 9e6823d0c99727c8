"""build_protocols_pipeline explores its table (dag.test against the emulator): with no source_fields it infers
them and provisions the same pipeline; a mistyped column fails leaving nothing created (the base connection that
explore needed is deleted unless it existed before)."""

from __future__ import annotations

import re

import pytest

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.operators.conversion import AEPCreateMappingSetOperator
from airflow_provider_aep.operators.flow_service import AEPExploreSourceOperator
from airflow_provider_aep.utils.source_columns import XDM_TYPE_OF_COLUMN_TYPE
from tests.conftest import PIPELINE_KINDS, RecordingTI, as_words, pipeline_resource_counts, task_log_text

PARAMS = {
    "name": "Explored",
    "variant": "current",
    "source_table": "Orders",
    "source_fields": None,
    "mappings": [{"source": "OrderID", "destination": "_id"}],
    "delta_column": "OrderDate",
    "odata_url": "https://services.odata.org/V4/Northwind/Northwind.svc",
    "schedule_params": {"startTime": 1_700_000_000, "frequency": "minute", "interval": 15},
}
DAG_SOURCE = f"""
import pendulum
from airflow_provider_aep.version_compat import DAG
from airflow_provider_aep.pipelines import build_protocols_pipeline

with DAG("explore_pipeline", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         render_template_as_native_obj=True, params={PARAMS!r}) as dag:
    build_protocols_pipeline(
        **{{key: "{{{{ params." + key + " }}}}" for key in {list(PARAMS)!r}}},
        aep_retry_delay=0.01,
    )
"""


@pytest.fixture
def dag(load_dag_file):
    return load_dag_file(DAG_SOURCE, "explore_pipeline").dag


def _states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _orders_columns(emulator):
    return emulator.source_tables["Orders"].describe_columns()


@pytest.mark.parametrize("variant", ["current", "legacy"])
def test_without_source_fields_the_fields_are_inferred_from_the_table(dag, emulator, variant):
    run = dag.test(run_conf={"variant": variant})
    assert run.state == "success", _states(run)
    inferred = {c["name"]: XDM_TYPE_OF_COLUMN_TYPE[c["type"]] for c in _orders_columns(emulator)}
    state = emulator.snapshot()["prod"]
    if variant == "current":
        (source,) = state["sourceConnections"].values()
        assert source["params"]["columns"] == [{"name": n, "type": t} for n, t in inferred.items()]
    else:
        (adhoc_class,) = state["classes"].values()
        fields = next(p for part in adhoc_class["allOf"] for p in [part.get("properties")] if p)
        (tenant_fields,) = fields.values()  # the ad hoc class keeps its fields under one _<guid> object
        assert set(tenant_fields["properties"]) == set(inferred)
        assert tenant_fields["properties"]["OrderID"]["type"] == "integer"
        assert tenant_fields["properties"]["OrderDate"] == {"type": "string", "format": "date-time"}


@pytest.mark.parametrize(
    ("conf", "line"),
    [
        (
            {"source_fields": {"OrderID": "string", "OrdreDate": "date-time"}, "delta_column": "OrderID"},
            "source_fields.OrdreDate='OrdreDate': table 'Orders' has no such column",
        ),
        ({"mappings": [{"source": "OrderId", "destination": "_id"}]}, "mappings[0].source='OrderId': table 'Orders'"),
        ({"delta_column": "Modified"}, "delta_column='Modified': table 'Orders' has no such column"),
        (
            {
                "source_table": "Employees",
                "mappings": [{"source": "EmployeeID", "destination": "_id"}],
                "delta_column": "HireDate",
            },
            "Employees.Photo='binary': has a column type no XDM field type holds",
        ),
        ({"source_table": "Ordrs"}, "The table 'Ordrs' was not found in the source"),
    ],
    ids=[
        "typo in source_fields",
        "typo in a mapping",
        "typo in the delta column",
        "unmappable column type",
        "typo in the table",
    ],
)
def test_a_wrong_column_fails_and_leaves_nothing_created(dag, emulator, caplog, capsys, conf, line):
    run = dag.test(run_conf=conf)
    states = _states(run)
    assert run.state == "failed" and states["source_fields"] == "failed", states
    succeeded = {task for task, state in states.items() if state == "success"}
    assert {"validate_inputs", "base_connection"} <= succeeded <= {"validate_inputs", "base_connection", "flow_spec"}
    # explore needs a base connection: the one this run made for it is deleted once the check fails
    assert pipeline_resource_counts(emulator) == dict.fromkeys([*PIPELINE_KINDS, "connections"], 0)
    changes = [(r.method, r.path.rstrip("/")) for r in emulator.request_log if r.method in ("POST", "DELETE")]
    (created, deleted) = [(m, p) for m, p in changes if "/ims/" not in p]
    base_id = deleted[1].rsplit("/", 1)[-1]
    assert created == ("POST", deleted[1].removesuffix(f"/{base_id}")) and deleted[0] == "DELETE"
    logs = as_words(caplog.text + capsys.readouterr().out)  # the error of Airflow 3.0's tasks is on stdout only
    assert as_words(line) in logs
    assert f"Deleted base connection {base_id}, which this run created only to explore the source" in logs


def test_a_wrong_column_keeps_a_base_connection_that_existed_before(dag, emulator, caplog, capsys):
    assert dag.test().state == "success"
    before = emulator.snapshot()["prod"]
    run = dag.test(run_conf={"mappings": [{"source": "OrderId", "destination": "_id"}]})
    assert run.state == "failed" and _states(run)["source_fields"] == "failed"
    assert emulator.snapshot()["prod"]["connections"] == before["connections"]
    assert not [r for r in emulator.request_log if r.method == "DELETE"]
    base_id = next(c["id"] for c in before["connections"].values() if c["name"] == "Explored base connection")
    logs = task_log_text(caplog, capsys)
    assert f"This run created nothing: base connection {base_id} existed before it and is kept" in logs


def test_the_explore_operator_and_mapping_validation_against_the_emulator(emulator):
    hook = AEPHook()
    base_id = hook.create_base_connection(
        {
            "name": "Northwind",
            "auth": {"specName": "Anonymous Authentication", "params": {"url": PARAMS["odata_url"]}},
            "connectionSpec": {"id": "8e6b41a8-d998-4545-ad7d-c6a9fff406c3", "version": "1.0"},
        }
    )
    assert hook.test_base_connection(base_id) is True
    tables = AEPExploreSourceOperator(task_id="t", base_connection_id=base_id).execute({"ti": RecordingTI()})
    assert [t["path"] for t in tables] == ["Orders", "Customers", "Employees"]
    orders = AEPExploreSourceOperator(
        task_id="t", base_connection_id=base_id, table="Customers", preview_rows=2
    ).execute({"ti": RecordingTI()})
    assert orders["columns"] == emulator.source_tables["Customers"].describe_columns()
    assert orders["rows"] == emulator.source_tables["Customers"].rows(2)

    schema_id = hook.create_schema(
        {
            "type": "object",
            "title": "Explored target",
            "description": "Explored target",
            "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}],
        }
    )["$id"]
    op = AEPCreateMappingSetOperator(
        task_id="m",
        name="Explored mapping",
        schema_id=schema_id,
        mappings=[
            {"source": "CustomerID", "destination": "_id"},
            {"sourceType": "EXPRESSION", "source": "upper(CompanyName", "destination": "_id"},
        ],
    )
    with pytest.raises(Exception, match=r"mappings\[1\] 'upper\(CompanyName' -> '_id': The expression"):
        op.execute({"ti": RecordingTI()})
    assert emulator.snapshot()["prod"]["mappingSets"] == {}


def test_a_standalone_check_that_cannot_tell_who_created_the_base_connection_keeps_it(emulator, caplog, capsys):
    from airflow_provider_aep.exceptions import AEPValidationError
    from airflow_provider_aep.pipelines import AEPResolveSourceFieldsOperator

    base_id = AEPHook().create_base_connection(
        {
            "name": "Standalone",
            "auth": {"specName": "Anonymous Authentication", "params": {"url": PARAMS["odata_url"]}},
            "connectionSpec": {"id": "8e6b41a8-d998-4545-ad7d-c6a9fff406c3", "version": "1.0"},
        }
    )
    op = AEPResolveSourceFieldsOperator(
        task_id="source_fields",
        base_connection_id=base_id,
        source_table="Orders",
        source_fields=None,
        mappings=[{"source": "OrderId", "destination": "_id"}],
    )
    with pytest.raises(AEPValidationError, match=re.escape("mappings[0].source='OrderId'")):
        op.execute({"ti": RecordingTI()})
    assert base_id in emulator.snapshot()["prod"]["connections"]
    assert not [r for r in emulator.request_log if r.method == "DELETE"]
    assert f"Base connection {base_id} is kept: without base_connection_created" in task_log_text(caplog, capsys)
