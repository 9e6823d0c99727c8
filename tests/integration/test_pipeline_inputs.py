"""A protocols pipeline with bad input fails in its first task, naming field, value and rule, and creates nothing
(dag.test against the emulator); the same DAG with good input provisions the whole pipeline."""

from __future__ import annotations

import pytest

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.pipelines import AEPValidatePipelineOperator
from tests.conftest import PIPELINE_KINDS, RecordingTI, as_words, pipeline_resource_counts

GOOD = {
    "name": "Inputs",
    "variant": "legacy",
    "source_table": "Orders",
    "source_fields": {"OrderID": "string", "CustomerID": "string", "OrderDate": "date-time"},
    "mappings": [{"source": "OrderID", "destination": "_id"}],
    "delta_column": "OrderDate",
    "odata_url": "https://services.odata.org/V4/Northwind/Northwind.svc",
    "schedule_params": {"startTime": 1_700_000_000, "frequency": "minute", "interval": 15},
}

DAG_SOURCE = f"""
import pendulum
from airflow_provider_aep.version_compat import DAG
from airflow_provider_aep.pipelines import build_protocols_pipeline

with DAG("pipeline_inputs", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         render_template_as_native_obj=True, params={GOOD!r}) as dag:
    build_protocols_pipeline(
        **{{key: "{{{{ params." + key + " }}}}" for key in {list(GOOD)!r}}},
        aep_retry_delay=0.01,
    )
"""

# (what the issue saw: created half the pipeline, or all of it and ran "success"), the input, the error line
BAD_INPUTS = [
    (
        "unknown XDM type",
        {"source_fields": {"OrderID": "varchar"}},
        "source_fields['OrderID']='varchar': must be an XDM",
    ),
    ("no fields", {"source_fields": {}}, "source_fields={}: must be a non-empty mapping"),
    ("no mappings", {"mappings": []}, "mappings=[]: must be a non-empty list of mappings"),
    (
        "undocumented mapping key",
        {"mappings": [{"source": "OrderID", "destination": "_id", "target": "x"}]},
        "mappings[0]=['target']: unknown keys",
    ),
    (
        "unknown sourceType",
        {"mappings": [{"source": "OrderID", "destination": "_id", "sourceType": "COLUMN"}]},
        "mappings[0].sourceType='COLUMN': must be one of ATTRIBUTE, EXPRESSION, STATIC",
    ),
    (
        "interval under the minimum",
        {"schedule_params": {"startTime": 1_700_000_000, "frequency": "minute", "interval": 5}},
        "schedule_params.interval=5: must be >= 15 when frequency is 'minute'",
    ),
    (
        "current variant: varchar type",
        {"variant": "current", "source_fields": {"OrderID": "varchar", "OrderDate": "date-time"}},
        "source_fields['OrderID']='varchar': must be an XDM type",
    ),
    (
        "current variant: numeric type",
        {"variant": "current", "source_fields": {"OrderID": 5, "OrderDate": "date-time"}},
        "source_fields['OrderID']=5: must be an XDM type",
    ),
    (
        "column name with a space",
        {"variant": "current", "source_fields": {"Order ID": "string", "OrderDate": "date-time"}},
        "source_fields['Order ID']='Order ID': column names must start with a letter or _",
    ),
    (
        "mapping from a column that is not a field",
        {"mappings": [{"source": "Total", "destination": "_id"}]},
        "mappings[0].source='Total': must be one of the source fields: OrderID, CustomerID, OrderDate",
    ),
    (
        "malformed destination path",
        {"mappings": [{"source": "OrderID", "destination": "person..name."}]},
        "mappings[0].destination='person..name.': must be an XDM path",
    ),
    (
        "destination the target schema lacks",
        {"mappings": [{"source": "OrderID", "destination": "loyalty.points"}]},
        "mappings[0].destination='loyalty.points': is not a field of the target schema",
    ),
    ("delta column that is not a field", {"delta_column": "UpdatedAt"}, "delta_column='UpdatedAt': must be one of"),
    ("empty delta column", {"delta_column": " "}, "delta_column=' ': must be a non-empty string"),
    ("blank source table", {"source_table": "  "}, "source_table='  ': must be a non-empty string"),
    ("empty URL", {"odata_url": " "}, "odata_url=' ': must be a non-empty string"),
    ("URL that is no URL", {"odata_url": "services.odata.org"}, "odata_url='services.odata.org': must be an http"),
    (
        "startTime in microseconds",
        {"schedule_params": {"startTime": 1_700_000_000_000_000, "frequency": "minute", "interval": 15}},
        "schedule_params.startTime=1700000000000000: must be a datetime",
    ),
    (
        "startTime 5, read as 1970",
        {"schedule_params": {"startTime": 5, "frequency": "minute", "interval": 15}},
        "schedule_params.startTime=5: must be on or after 2000-01-01 (epoch seconds or milliseconds, a datetime or "
        "an ISO-8601 string); it reads as 1970-01-01T00:00:05+00:00",
    ),
    (
        "startTime in 1999",
        {"schedule_params": {"startTime": "1999-12-31T23:59:59Z", "frequency": "once"}},
        "schedule_params.startTime='1999-12-31T23:59:59Z': must be on or after 2000-01-01",
    ),
]


@pytest.fixture
def dag(load_dag_file):
    return load_dag_file(DAG_SOURCE, "pipeline_inputs").dag


def _changes(pipeline_emulator):
    return [r for r in pipeline_emulator.request_log if r.method != "GET" and "/ims/" not in r.path]


@pytest.mark.parametrize(("case", "overrides", "message"), BAD_INPUTS, ids=[case for case, _, _ in BAD_INPUTS])
def test_bad_input_fails_the_first_task_and_creates_nothing(
    dag, pipeline_emulator, capfd, caplog, case, overrides, message
):
    run = dag.test(run_conf=overrides)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["validate_inputs"] == "failed", states
    assert not any(state == "success" for task, state in states.items() if task != "validate_inputs"), states
    assert _changes(pipeline_emulator) == []
    assert pipeline_resource_counts(pipeline_emulator) == dict.fromkeys(PIPELINE_KINDS, 0)
    captured = capfd.readouterr()
    assert as_words(message) in as_words(captured.out + captured.err + caplog.text)


def test_good_input_provisions_the_whole_pipeline(dag, pipeline_emulator):
    run = dag.test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(pipeline_resource_counts(pipeline_emulator).values()) >= {1}


def test_several_problems_are_listed_together_one_line_each(aep_conn):
    op = AEPValidatePipelineOperator(
        task_id="validate_inputs",
        **{
            **GOOD,
            "source_table": "",
            "source_fields": {"OrderID": "varchar", "Order Date": "date-time"},
            "mappings": [{"source": "Total", "destination": "a..b"}, {"source": "OrderID", "destination": "_id"}],
            "delta_column": "UpdatedAt",
        },
    )
    with pytest.raises(AEPValidationError) as err:
        op.execute({"ti": RecordingTI()})
    assert str(err.value).splitlines() == [
        "The pipeline's inputs are invalid; nothing was created: 5 problems",
        "  - source_table='': must be a non-empty string",
        "  - source_fields['OrderID']='varchar': must be an XDM type, one of string, number, double, integer, long, "
        "int, short, byte, boolean, date, date-time",
        "  - source_fields['Order Date']='Order Date': column names must start with a letter or _ and hold only "
        "letters, digits and _",
        "  - delta_column='UpdatedAt': must be one of the source fields: OrderID, Order Date",
        "  - mappings[0].destination='a..b': must be an XDM path: field names joined by '.', e.g. person.name",
    ]
