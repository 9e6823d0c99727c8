from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qs

import pytest

from airflow_provider_aep.exceptions import (
    AEPApiError,
    AEPDuplicateResourceError,
    AEPResourceConflictError,
    AEPResourceNotFoundError,
    AEPValidationError,
)
from airflow_provider_aep.operators.flow_service import (
    AEPCreateBaseConnectionOperator,
    AEPCreateFlowOperator,
    AEPCreateSourceConnectionOperator,
    AEPCreateTargetConnectionOperator,
    AEPExploreSourceOperator,
    AEPGetFlowSpecOperator,
    AEPSetFlowStateOperator,
)
from airflow_provider_aep.operators.teardown import AEPDeleteResourcesOperator
from tests.conftest import ORG_ID, task_log_text
from tests.operators.conftest import CAT, CONV, FS, SR, posts

ODATA = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
FLOW_SPEC_ID = "14518937-270c-4525-bdec-c2ba7cce3860"
SCHEMA_ID = "https://ns.adobe.com/acme/schemas/target"

# The CRMToAEP flow spec as the current docs publish it (the seed's, plus `once`).
FLOW_SPEC = {
    "id": FLOW_SPEC_ID,
    "name": "CRMToAEP",
    "transformationSpecs": [
        {
            "name": "Copy",
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "deltaColumn": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
                },
                "required": ["deltaColumn"],
            },
        },
        {
            "name": "Mapping",
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"mappingId": {"type": "string"}, "mappingVersion": {"type": "string"}},
            },
        },
    ],
    "scheduleSpec": {
        "name": "PeriodicSchedule",
        "type": "Periodic",
        "spec": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "startTime": {"type": "integer"},
                "interval": {"type": "integer"},
                "frequency": {"type": "string", "enum": ["once", "minute", "hour", "day", "week"]},
                "backfill": {"type": "boolean", "default": True},
            },
            "required": ["startTime", "frequency"],
            "if": {"properties": {"frequency": {"const": "minute"}}},
            "then": {"properties": {"interval": {"minimum": 15}}},
            "else": {"properties": {"interval": {"minimum": 1}}},
        },
    },
}
START = 1_767_225_600  # 2026-01-01T00:00:00Z
TRANSFORMATIONS = [
    {"name": "Copy", "params": {"deltaColumn": {"name": "updatedAt", "dateFormat": "YYYY-MM-DD", "timezone": "UTC"}}},
    {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": 0}},
]


def _no_flow_service_matches(requests_mock):
    for collection in ("connections", "sourceConnections", "targetConnections", "flows"):
        requests_mock.get(f"{FS}/{collection}", json={"items": [], "_links": {}})


# ---------------------------------------------------------------- base connection
def test_base_connection_payload(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/connections", status_code=201, json={"id": "bc1", "etag": '"1"'})
    auth = {
        "specName": "Anonymous Authentication",
        "params": {"url": "https://services.odata.org/V4/Northwind/Northwind.svc"},
    }
    op = AEPCreateBaseConnectionOperator(
        task_id="t", name="odata", connection_spec_id=ODATA, auth=auth, description="d"
    )
    assert op.execute(context) == "bc1"
    assert context["ti"].xcom["created"] is True
    assert post.last_request.json() == {
        "name": "odata",
        "connectionSpec": {"id": ODATA, "version": "1.0"},
        "description": "d",
        "auth": auth,
    }
    assert post.last_request.headers["x-sandbox-name"] == "dev"


def test_legacy_dataset_base_connection_has_no_auth(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/connections", status_code=201, json={"id": "dbc"})
    assert (
        AEPCreateBaseConnectionOperator(task_id="t", name="ds base", connection_spec_id=DATA_LAKE).execute(context)
        == "dbc"
    )
    assert post.last_request.json() == {"name": "ds base", "connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}


def test_base_connection_reuse_and_conflict(context, requests_mock):
    requests_mock.get(
        f"{FS}/connections",
        json={"items": [{"id": "bc1", "name": "odata", "connectionSpec": {"id": ODATA}}], "_links": {}},
    )
    assert (
        AEPCreateBaseConnectionOperator(task_id="t", name="odata", connection_spec_id=ODATA).execute(context) == "bc1"
    )
    assert context["ti"].xcom["created"] is False
    with pytest.raises(AEPResourceConflictError, match="connection spec is '8e6b41a8"):
        AEPCreateBaseConnectionOperator(task_id="t2", name="odata", connection_spec_id=DATA_LAKE).execute(context)
    assert posts(requests_mock) == []


def test_base_connection_auth_is_not_echoed_in_validation_errors(context, requests_mock):
    with pytest.raises(AEPValidationError) as err:
        AEPCreateBaseConnectionOperator(
            task_id="t", name="x", connection_spec_id=ODATA, auth={"params": {"password": "hunter22"}}
        ).execute(context)
    assert "hunter22" not in str(err.value) and str(err.value).startswith("auth: must be a mapping with specName")


BASIC_AUTH = {"specName": "Basic Authentication", "params": {"url": "https://odata.example", "username": "u"}}


@pytest.mark.parametrize("password", [12345678901, 1234.5, ["hunter22"], {"value": 99}])
def test_a_secret_that_is_not_a_string_is_masked_when_rendered_and_refused_by_name(
    context, requests_mock, caplog, password
):
    op = AEPCreateBaseConnectionOperator(
        task_id="t",
        name="x",
        connection_spec_id=ODATA,
        auth={**BASIC_AUTH, "params": {**BASIC_AUTH["params"], "password": password}},
    )
    op.render_template_fields(context={})
    assert "12345678901" not in repr(op.auth) and "hunter22" not in repr(op.auth) and "99" not in repr(op.auth)
    assert op.auth["params"]["password"] == "***" and op.auth["params"]["username"] == "u"
    with pytest.raises(AEPValidationError) as err:
        op.execute(context)
    message = str(err.value)
    assert message.startswith("auth.params.password: must be a string; a secret of any other type is refused")
    assert not any(secret in message + caplog.text for secret in ("12345678901", "1234.5", "hunter22", "99"))
    assert posts(requests_mock) == []


def test_a_string_secret_is_registered_with_the_masker_when_rendered(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr("airflow_provider_aep.operators.flow_service.mask_secret", masked.append)
    auth = {**BASIC_AUTH, "params": {**BASIC_AUTH["params"], "password": "hunter22", "apiKey": "k-123"}}
    op = AEPCreateBaseConnectionOperator(task_id="t", name="x", connection_spec_id=ODATA, auth=auth)
    op.render_template_fields(context={})
    assert masked == ["hunter22", "k-123"] and op.auth == auth


def test_validation_errors_never_show_the_value_of_a_secret_like_field():
    from airflow_provider_aep.utils.validation import invalid, validate_against_flow_spec

    for field in ("auth.params.password", "clientSecret", "params.accessToken", "auth.params.sasKey", "credentials"):
        assert "s3cr3t" not in str(invalid(field, "s3cr3t", "must be a string")), field
    assert "'Orders'" in str(invalid("params.tableName", "Orders", "must be a table"))
    spec = {"name": "S", "scheduleSpec": {"spec": {"type": "object", "properties": {"token": {"type": "string"}}}}}
    with pytest.raises(AEPValidationError) as err:
        validate_against_flow_spec(spec, [], {"token": 12345678901})
    assert "12345678901" not in str(err.value) and "schedule_params.token" in str(err.value)


# ---------------------------------------------------------------- source connection
def test_tabular_source_connection(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/sourceConnections", status_code=201, json={"id": "sc1", "etag": '"1"'})
    op = AEPCreateSourceConnectionOperator(
        task_id="t",
        name="orders source",
        base_connection_id="bc1",
        connection_spec_id=ODATA,
        data={"format": "tabular"},
        params={"tableName": "Orders", "columns": [{"name": "OrderID", "type": "string"}]},
    )
    assert op.execute(context) == "sc1"
    assert post.last_request.json() == {
        "name": "orders source",
        "baseConnectionId": "bc1",
        "data": {"format": "tabular"},
        "params": {"tableName": "Orders", "columns": [{"name": "OrderID", "type": "string"}]},
        "connectionSpec": {"id": ODATA, "version": "1.0"},
    }
    lookup = next(r for r in requests_mock.request_history if r.method == "GET" and "sourceConnections" in r.url)
    assert parse_qs(lookup.query)["property"] == ["baseconnectionid==bc1"]


def test_legacy_parquet_xdm_source_connection_pins_the_schema_version(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/sourceConnections", status_code=201, json={"id": "sc1"})
    op = AEPCreateSourceConnectionOperator(
        task_id="t",
        name="s",
        base_connection_id="bc1",
        connection_spec_id=ODATA,
        data={"format": "parquet_xdm", "schema": {"id": "https://ns.adobe.com/acme/schemas/adhoc"}},
        params={"path": "Orders"},
    )
    op.execute(context)
    assert post.last_request.json()["data"] == {
        "format": "parquet_xdm",
        "schema": {
            "id": "https://ns.adobe.com/acme/schemas/adhoc",
            "version": "application/vnd.adobe.xed-full-notext+json; version=1",
        },
    }
    assert post.last_request.json()["params"] == {"path": "Orders"}


@pytest.mark.parametrize(
    ("data", "params", "message"),
    [
        ({"format": "csv"}, {}, "data.format='csv': must be one of"),
        ({"format": "tabular"}, {}, "params.tableName=None: is required when data.format is 'tabular'"),
        (
            {"format": "parquet_xdm"},
            {"path": "x"},
            "data.schema.id=None: is required when data.format is 'parquet_xdm'",
        ),
        (
            {"format": "tabular"},
            {"tableName": "T", "columns": [{"name": "a"}]},
            "params.columns['a']=None: must be an XDM",
        ),
        (
            {"format": "tabular"},
            {"tableName": "T", "columns": [{"name": "a", "type": "varchar"}]},
            "params.columns['a']='varchar': must be an XDM type",
        ),
        (
            {"format": "tabular"},
            {"tableName": "T", "columns": [{"name": "Order ID", "type": "string"}]},
            "params.columns['Order ID']='Order ID': column names must start with a letter",
        ),
        ("tabular", {}, "data='tabular': must be a mapping"),
    ],
)
def test_source_connection_validation_makes_no_call(context, requests_mock, data, params, message):
    op = AEPCreateSourceConnectionOperator(
        task_id="t", name="s", base_connection_id="b", connection_spec_id=ODATA, data=data, params=params
    )
    with pytest.raises(AEPValidationError) as err:
        op.execute(context)
    assert message in str(err.value)
    assert requests_mock.call_count == 0


def test_source_connection_on_another_table_is_a_conflict(context, requests_mock):
    existing = {
        "id": "sc1",
        "name": "s",
        "baseConnectionId": "b",
        "connectionSpec": {"id": ODATA},
        "data": {"format": "tabular"},
        "params": {"tableName": "Customers"},
    }
    requests_mock.get(f"{FS}/sourceConnections", json={"items": [existing], "_links": {}})
    op = AEPCreateSourceConnectionOperator(
        task_id="t",
        name="s",
        base_connection_id="b",
        connection_spec_id=ODATA,
        data={"format": "tabular"},
        params={"tableName": "Orders"},
    )
    with pytest.raises(AEPResourceConflictError, match=r"params\.tableName is 'Customers', asked for 'Orders'"):
        op.execute(context)


def test_source_params_do_not_swallow_dag_params():
    """Airflow merges DAG Params into `params`; the AEP params must hold only what the task was given."""
    import pendulum

    from airflow_provider_aep.version_compat import DAG, Param

    with DAG(
        "p", schedule=None, start_date=pendulum.datetime(2024, 1, 1), params={"table": Param("Orders", type="string")}
    ):
        op = AEPCreateSourceConnectionOperator(
            task_id="t",
            name="s",
            base_connection_id="b",
            connection_spec_id=ODATA,
            data={"format": "tabular"},
            params={"tableName": "{{ params.table }}"},
        )
    assert op.source_params == {"tableName": "{{ params.table }}"}
    assert "table" in op.params and "tableName" not in op.params


# ---------------------------------------------------------------- target connection
def test_target_connection_current_variant_has_no_base_connection(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/targetConnections", status_code=201, json={"id": "tc1"})
    op = AEPCreateTargetConnectionOperator(task_id="t", name="tgt", dataset_id="ds1", schema_id=SCHEMA_ID)
    assert op.execute(context) == "tc1"
    assert post.last_request.json() == {
        "name": "tgt",
        "data": {
            "format": "parquet_xdm",
            "schema": {"id": SCHEMA_ID, "version": "application/vnd.adobe.xed-full+json;version=1"},
        },
        "params": {"dataSetId": "ds1"},
        "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
    }


def test_target_connection_legacy_variant_carries_the_dataset_base_connection(context, requests_mock):
    _no_flow_service_matches(requests_mock)
    post = requests_mock.post(f"{FS}/targetConnections", status_code=201, json={"id": "tc1"})
    AEPCreateTargetConnectionOperator(
        task_id="t", name="tgt", dataset_id="ds1", schema_id=SCHEMA_ID, base_connection_id="dbc"
    ).execute(context)
    assert post.last_request.json()["baseConnectionId"] == "dbc"


def test_target_connection_to_another_dataset_is_a_conflict(context, requests_mock):
    existing = {"id": "tc1", "name": "tgt", "params": {"dataSetId": "other"}, "data": {"schema": {"id": SCHEMA_ID}}}
    requests_mock.get(f"{FS}/targetConnections", json={"items": [existing], "_links": {}})
    with pytest.raises(AEPResourceConflictError, match="dataset is 'other', asked for 'ds1'"):
        AEPCreateTargetConnectionOperator(task_id="t", name="tgt", dataset_id="ds1", schema_id=SCHEMA_ID).execute(
            context
        )


# ---------------------------------------------------------------- flow spec
def test_flow_spec_lookup(context, requests_mock):
    m = requests_mock.get(f"{FS}/flowSpecs", json={"items": [FLOW_SPEC]})
    assert AEPGetFlowSpecOperator(task_id="t").execute(context) == FLOW_SPEC_ID
    assert parse_qs(m.last_request.query)["property"] == ['name=="crmtoaep"']


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "No flow spec named 'CRMToAEP' in sandbox 'dev'"),
        ([FLOW_SPEC, {**FLOW_SPEC, "id": "x"}], "2 flow specs named 'CRMToAEP' in sandbox 'dev' exist"),
    ],
)
def test_flow_spec_lookup_needs_exactly_one_match(context, requests_mock, items, message):
    requests_mock.get(f"{FS}/flowSpecs", json={"items": items})
    with pytest.raises((AEPResourceNotFoundError, AEPDuplicateResourceError), match=message) as err:
        AEPGetFlowSpecOperator(task_id="t").execute(context)
    assert isinstance(err.value, AEPDuplicateResourceError if items else AEPResourceNotFoundError)


# ---------------------------------------------------------------- flow
def _flow_op(**overrides):
    kwargs = {
        "task_id": "t",
        "name": "orders flow",
        "flow_spec_id": FLOW_SPEC_ID,
        "source_connection_ids": ["sc1"],
        "target_connection_ids": ["tc1"],
        "transformations": TRANSFORMATIONS,
        "schedule_params": {"startTime": "2026-01-01T00:00:00Z", "frequency": "minute", "interval": "30"},
    }
    kwargs.update(overrides)
    return AEPCreateFlowOperator(**kwargs)


def test_flow_is_created_with_normalized_schedule_and_pushes_its_url(context, requests_mock):
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [], "_links": {}})
    post = requests_mock.post(f"{FS}/flows", status_code=201, json={"id": "flow1", "etag": '"1"'})
    assert _flow_op().execute(context) == "flow1"
    body = post.last_request.json()
    assert body["scheduleParams"] == {"startTime": 1767225600, "frequency": "minute", "interval": 30}
    assert body["transformations"][1] == {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": "0"}}
    assert body["flowSpec"] == {"id": FLOW_SPEC_ID, "version": "1.0"}
    assert (body["sourceConnectionIds"], body["targetConnectionIds"]) == (["sc1"], ["tc1"])
    assert (
        context["ti"].xcom["dataflow_url"]
        == f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/flow1/activity"
    )


def test_flow_accepts_datetimes_and_once(context, requests_mock):
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [], "_links": {}})
    post = requests_mock.post(f"{FS}/flows", status_code=201, json={"id": "flow1"})
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    _flow_op(schedule_params={"startTime": start, "frequency": "once"}).execute(context)
    assert post.last_request.json()["scheduleParams"] == {"startTime": 1767225600, "frequency": "once"}


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            {"startTime": START, "frequency": "minute", "interval": 5},
            "schedule_params.interval=5: must be >= 15 when frequency is 'minute'",
        ),
        (
            {"startTime": START, "frequency": "hour", "interval": 0},
            "schedule_params.interval=0: must be >= 1 when frequency is 'hour'",
        ),
        (
            {"startTime": START, "frequency": "monthly", "interval": 1},
            "schedule_params.frequency='monthly': must be one of once, minute, hour, day, week",
        ),
        (
            {"startTime": START, "frequency": "once", "interval": 1},
            "schedule_params.interval=1: must not be set when frequency is 'once'",
        ),
        ({"frequency": "hour", "interval": 1}, "schedule_params.startTime=None: is required"),
        (
            {"startTime": "yesterday", "frequency": "hour", "interval": 1},
            "schedule_params.startTime='yesterday': must be a datetime",
        ),
        (
            {"startTime": START, "frequency": "day"},
            "schedule_params.interval=None: must be an integer when frequency is 'day'",
        ),
    ],
)
def test_schedule_rules_fail_before_any_call(context, requests_mock, schedule, message):
    with pytest.raises(AEPValidationError) as err:
        _flow_op(schedule_params=schedule).execute(context)
    assert message in str(err.value)
    assert requests_mock.call_count == 0


def test_transformations_are_checked_against_the_flow_spec_schemas(context, requests_mock):
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    bad_copy = [{"name": "Copy", "params": {"deltaColumn": {"dateFormat": "YYYY"}}}, TRANSFORMATIONS[1]]
    with pytest.raises(
        AEPValidationError,
        match=r"transformations\[0\].params.deltaColumn=.*'name' is a required property \(flow spec CRMToAEP\)",
    ):
        _flow_op(transformations=bad_copy).execute(context)
    with pytest.raises(
        AEPValidationError, match=r"transformations\[0\].name='Filter': flow spec CRMToAEP accepts only Copy, Mapping"
    ):
        _flow_op(transformations=[{"name": "Filter", "params": {}}]).execute(context)
    assert posts(requests_mock) == []


def test_schedule_is_checked_against_a_legacy_flow_spec_without_once(context, requests_mock):
    legacy = json.loads(json.dumps(FLOW_SPEC))
    legacy["scheduleSpec"]["spec"]["properties"]["frequency"]["enum"] = ["minute", "hour", "day", "week"]
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [legacy]})
    with pytest.raises(AEPValidationError, match=r"schedule_params.frequency='once': 'once' is not one of"):
        _flow_op(schedule_params={"startTime": START, "frequency": "once"}).execute(context)
    assert posts(requests_mock) == []


def test_matching_flow_is_reused(context, requests_mock):
    existing = {
        "id": "flow1",
        "name": "orders flow",
        "flowSpec": {"id": FLOW_SPEC_ID},
        "sourceConnectionIds": ["sc1"],
        "targetConnectionIds": ["tc1"],
        "transformations": [
            TRANSFORMATIONS[0],
            {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": "0"}},
        ],
        "scheduleParams": {"startTime": "1", "frequency": "minute", "interval": "30"},
    }
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [existing], "_links": {}})
    assert _flow_op().execute(context) == "flow1"
    assert posts(requests_mock) == []
    assert "dataflow_url" in context["ti"].xcom


def test_flow_with_other_connections_is_a_conflict_saying_what_differs(context, requests_mock):
    existing = {
        "id": "flow1",
        "name": "orders flow",
        "flowSpec": {"id": "other-spec"},
        "sourceConnectionIds": ["scX"],
        "targetConnectionIds": ["tc1"],
    }
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [existing], "_links": {}})
    with pytest.raises(AEPResourceConflictError) as err:
        _flow_op().execute(context)
    assert "flow spec is 'other-spec'" in str(err.value) and "source connections is ['scX'], asked for ['sc1']" in str(
        err.value
    )


def test_flow_create_lost_response_does_not_duplicate(context, requests_mock):
    import requests

    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    committed = {
        "id": "flow1",
        "name": "orders flow",
        "flowSpec": {"id": FLOW_SPEC_ID},
        "sourceConnectionIds": ["sc1"],
        "targetConnectionIds": ["tc1"],
    }
    requests_mock.get(
        f"{FS}/flows", [{"json": {"items": [], "_links": {}}}, {"json": {"items": [committed], "_links": {}}}]
    )
    post = requests_mock.post(f"{FS}/flows", exc=requests.ConnectionError("connection reset"))
    assert _flow_op().execute(context) == "flow1"
    assert post.call_count == 1


EXISTING_FLOW = {
    "id": "flow1",
    "name": "orders flow",
    "etag": '"e1"',
    "flowSpec": {"id": FLOW_SPEC_ID},
    "sourceConnectionIds": ["sc1"],
    "targetConnectionIds": ["tc1"],
    "transformations": [TRANSFORMATIONS[0], {"name": "Mapping", "params": {"mappingId": "ms0", "mappingVersion": "3"}}],
    "scheduleParams": {"startTime": 1, "frequency": "hour", "interval": 1},
}


def test_update_patches_a_differing_schedule_and_mapping_with_the_etag(context, requests_mock):
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [EXISTING_FLOW], "_links": {}})
    requests_mock.get(f"{FS}/flows/flow1", json={"items": [EXISTING_FLOW]})
    patch = requests_mock.patch(f"{FS}/flows/flow1", json={"id": "flow1", "etag": '"e2"'})
    assert _flow_op(if_exists="update").execute(context) == "flow1"
    assert posts(requests_mock) == []
    assert patch.last_request.headers["If-Match"] == '"e1"'
    assert patch.last_request.json() == [
        {
            "op": "replace",
            "path": "/scheduleParams",
            "value": {"startTime": 1767225600, "frequency": "minute", "interval": 30},
        },
        {
            "op": "replace",
            "path": "/transformations",
            "value": [TRANSFORMATIONS[0], {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": "0"}}],
        },
    ]


# What AEP returns for the flow _flow_op asks for, numbers written as strings as AEP's docs write them.
AS_ASKED = {
    **EXISTING_FLOW,
    "transformations": [TRANSFORMATIONS[0], {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": "0"}}],
    "scheduleParams": {"startTime": str(START), "frequency": "minute", "interval": "30"},
}
MAPPING_AS_SENT = AS_ASKED["transformations"][1]
DELTA = TRANSFORMATIONS[0]["params"]["deltaColumn"]


def copy_with(delta: dict) -> dict:
    return {"name": "Copy", "params": {"deltaColumn": delta}}


@pytest.mark.parametrize(
    ("asked", "patched"),
    [
        ({}, {}),
        (
            {"schedule_params": {"startTime": "2026-01-01T01:00:00Z", "frequency": "minute", "interval": 30}},
            {"/scheduleParams": {"startTime": START + 3600, "frequency": "minute", "interval": 30}},
        ),
        (
            {"schedule_params": {"startTime": START, "frequency": "minute", "interval": 30, "backfill": False}},
            {"/scheduleParams": {"startTime": START, "frequency": "minute", "interval": 30, "backfill": False}},
        ),
        (
            {"transformations": [copy_with({**DELTA, "name": "createdAt"}), TRANSFORMATIONS[1]]},
            {"/transformations": [copy_with({**DELTA, "name": "createdAt"}), MAPPING_AS_SENT]},
        ),
        (
            {"transformations": [copy_with({"name": "updatedAt"}), TRANSFORMATIONS[1]]},
            {"/transformations": [copy_with({"name": "updatedAt"}), MAPPING_AS_SENT]},
        ),
    ],
    ids=["all-match", "startTime", "backfill", "delta-column", "delta-column-format"],
)
def test_update_patches_any_difference_of_schedule_or_transformations(context, requests_mock, asked, patched):
    """Compared whole: startTime, backfill and every transformation param (a Copy's deltaColumn too)."""
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [AS_ASKED], "_links": {}})
    requests_mock.get(f"{FS}/flows/flow1", json={"items": [AS_ASKED]})
    patch = requests_mock.patch(f"{FS}/flows/flow1", json={"id": "flow1", "etag": '"e2"'})
    assert _flow_op(if_exists="update", **asked).execute(context) == "flow1"
    assert patch.call_count == (1 if patched else 0) and posts(requests_mock) == []
    sent = patch.last_request.json() if patched else []
    assert {op["path"]: op["value"] for op in sent} == patched
    assert not patched or patch.last_request.headers["If-Match"] == '"e1"'


def test_reuse_still_ignores_start_time_and_delta_column(context, requests_mock):
    """A templated startTime changes every DAG run: only an update compares it."""
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [AS_ASKED], "_links": {}})
    schedule = {"startTime": START + 3600, "frequency": "minute", "interval": 30}
    op = _flow_op(schedule_params=schedule, transformations=[copy_with({"name": "createdAt"}), TRANSFORMATIONS[1]])
    assert op.execute(context) == "flow1"
    assert [r.method for r in requests_mock.request_history if "/ims/" not in r.url] == ["GET", "GET"]


def test_update_cannot_change_a_flows_connections_or_spec(context, requests_mock):
    requests_mock.get(f"{FS}/flowSpecs/{FLOW_SPEC_ID}", json={"items": [FLOW_SPEC]})
    requests_mock.get(f"{FS}/flows", json={"items": [{**EXISTING_FLOW, "sourceConnectionIds": ["scX"]}], "_links": {}})
    patch = requests_mock.patch(f"{FS}/flows/flow1", json={})
    with pytest.raises(AEPResourceConflictError, match=r"differs in what an update cannot change: source connections"):
        _flow_op(if_exists="update").execute(context)
    assert patch.call_count == 0


def test_update_is_only_for_flows(context):
    with pytest.raises(AEPValidationError, match="if_exists='update': must be one of reuse, fail"):
        AEPCreateTargetConnectionOperator(task_id="t", name="n", dataset_id="d", schema_id="s", if_exists="update")


# ---------------------------------------------------------------- flow state
def test_set_flow_state_disables_an_enabled_flow_with_its_etag(context, requests_mock, caplog, capsys):
    requests_mock.get(f"{FS}/flows/flow1", json={"items": [{"id": "flow1", "state": "enabled", "etag": '"e1"'}]})
    action = requests_mock.post(f"{FS}/flows/flow1/action", json={"id": "flow1", "etag": '"e2"'})
    with caplog.at_level("INFO"):
        assert AEPSetFlowStateOperator(task_id="t", flow_id="flow1", state="disabled").execute(context) == "flow1"
    assert action.last_request.qs == {"op": ["disable"]} and action.last_request.headers["If-Match"] == '"e1"'
    assert "AEP dataflow flow1 is now disabled" in task_log_text(caplog, capsys)
    assert context["ti"].xcom["dataflow_url"].endswith("/dataflows/flow1/activity")


def test_set_flow_state_on_a_flow_already_there_is_a_logged_no_op(context, requests_mock, caplog, capsys):
    requests_mock.get(f"{FS}/flows/flow1", json={"items": [{"id": "flow1", "state": "enabled", "etag": '"e1"'}]})
    with caplog.at_level("INFO"):
        AEPSetFlowStateOperator(task_id="t", flow_id="flow1", state="enabled").execute(context)
    assert posts(requests_mock) == []
    assert "AEP dataflow flow1 was already enabled; nothing to do" in task_log_text(caplog, capsys)


def test_set_flow_state_names_the_states_it_takes(context, requests_mock):
    with pytest.raises(AEPValidationError, match=r"state='paused': must be one of 'enabled', 'disabled'"):
        AEPSetFlowStateOperator(task_id="t", flow_id="flow1", state="paused").execute(context)
    assert requests_mock.request_history == []


# ---------------------------------------------------------------- teardown
def test_delete_resources_in_dependency_order_treating_gone_as_done(context, requests_mock):
    calls = []

    def record(status):
        def cb(request, ctx):
            calls.append(request.path)
            ctx.status_code = status
            return None if status == 204 else {"title": "Resource not found"}

        return cb

    requests_mock.delete(f"{FS}/flows/f1", json=record(204))
    requests_mock.delete(f"{FS}/sourceConnections/sc1", json=record(204))
    requests_mock.delete(f"{FS}/targetConnections/tc1", json=record(404))
    requests_mock.delete(f"{FS}/connections/bc1", json=record(204))
    requests_mock.delete(f"{CONV}/mappingSets/ms1", json=record(204))
    requests_mock.get(f"{CONV}/mappingSets/ms1", status_code=404, json={"title": "NotFoundError"})
    requests_mock.delete(f"{CAT}/dataSets/ds1", json=record(200))
    requests_mock.delete(f"{SR}/tenant/schemas/https%3A%2F%2Fns.adobe.com%2Facme%2Fschemas%2Ftarget", json=record(204))
    op = AEPDeleteResourcesOperator(
        task_id="t",
        class_ids=None,
        schema_ids=SCHEMA_ID,
        dataset_ids=["ds1"],
        mapping_set_ids="ms1",
        base_connection_ids=["bc1"],
        target_connection_ids=["tc1"],
        source_connection_ids=["sc1"],
        flow_ids=["f1", "f1"],
    )
    result = op.execute(context)
    assert [c.split("/")[-2] for c in calls] == [
        "flows",
        "sourceconnections",
        "targetconnections",
        "connections",
        "mappingsets",
        "datasets",
        "schemas",
    ]
    assert result == {
        "deleted": {
            "flows": ["f1"],
            "source_connections": ["sc1"],
            "base_connections": ["bc1"],
            "mapping_sets": ["ms1"],
            "datasets": ["ds1"],
            "schemas": [SCHEMA_ID],
        },
        "already_gone": {"target_connections": ["tc1"]},
        "left_in_place": {},
    }


@pytest.mark.parametrize(
    ("delete_status", "get_status", "outcome"),
    [
        (204, 404, "deleted"),
        (405, 200, "left_in_place"),
        (404, 200, "left_in_place"),  # no such route: the mapping set is still there, not "already gone"
        (405, 404, "already_gone"),
        (404, 404, "already_gone"),
        (204, 200, "left_in_place"),  # a success that did nothing
    ],
)
def test_mapping_set_delete_is_best_effort_and_a_get_decides(
    context, requests_mock, caplog, capsys, delete_status, get_status, outcome
):
    requests_mock.delete(f"{CONV}/mappingSets/ms1", status_code=delete_status, json={"title": "MethodNotAllowed"})
    requests_mock.get(f"{CONV}/mappingSets/ms1", status_code=get_status, json={"id": "ms1", "version": 0})
    result = AEPDeleteResourcesOperator(task_id="t", mapping_set_ids=["ms1"]).execute(context)
    assert result == {
        "deleted": {},
        "already_gone": {},
        "left_in_place": {},
        outcome: {"mapping_sets": ["ms1"]},
    }
    assert [r.method for r in requests_mock.request_history if "/ims/" not in r.url] == ["DELETE", "GET"]
    assert ("Mapping set ms1 is still in AEP" in task_log_text(caplog, capsys)) == (outcome == "left_in_place")


def test_mapping_set_delete_fails_on_other_errors(context, requests_mock):
    requests_mock.delete(f"{CONV}/mappingSets/ms1", status_code=403, json={"error_code": "403027", "message": "no"})
    with pytest.raises(AEPApiError, match="403"):
        AEPDeleteResourcesOperator(task_id="t", mapping_set_ids=["ms1"]).execute(context)


# ---------------------------------------------------------------- exploring a source
ORDERS_STRUCTURE = {
    "format": "flat",
    "schema": {
        "columns": [
            {"name": "OrderID", "type": "integer", "xdm": {"type": "integer"}},
            {"name": "OrderDate", "type": "date-time", "xdm": {"type": "string", "format": "date-time"}},
        ]
    },
    "data": [{"OrderID": i, "OrderDate": "1996-07-04T00:00:00Z"} for i in range(1, 11)],
}


def test_explore_operator_lists_tables_without_a_table(context, requests_mock, caplog, capsys):
    listing = [{"type": "table", "name": "Orders", "path": "Orders", "canPreview": True, "canFetchSchema": True}]
    requests_mock.get(f"{FS}/connections/b1/explore", json=listing)
    caplog.set_level("INFO")
    assert AEPExploreSourceOperator(task_id="t", base_connection_id="b1").execute(context) == listing
    assert "Base connection b1 has 1 tables: Orders" in task_log_text(caplog, capsys)


def test_explore_operator_returns_columns_and_at_most_preview_rows(context, requests_mock):
    explore = requests_mock.get(f"{FS}/connections/b1/explore", json=ORDERS_STRUCTURE)
    out = AEPExploreSourceOperator(task_id="t", base_connection_id="b1", table="Orders", preview_rows=3).execute(
        context
    )
    assert out == {
        "table": "Orders",
        "columns": ORDERS_STRUCTURE["schema"]["columns"],
        "rows": ORDERS_STRUCTURE["data"][:3],
    }
    assert explore.last_request.qs == {"objecttype": ["table"], "object": ["orders"], "preview": ["true"]}
    no_rows = AEPExploreSourceOperator(task_id="t", base_connection_id="b1", table="Orders").execute(context)
    assert no_rows["rows"] == [] and "preview" not in explore.last_request.qs


@pytest.mark.parametrize("rows", [-1, "many", True])
def test_explore_operator_refuses_a_bad_preview_row_count_before_calling(context, requests_mock, rows):
    op = AEPExploreSourceOperator(task_id="t", base_connection_id="b1", table="Orders", preview_rows=rows)
    with pytest.raises(AEPValidationError, match=r"preview_rows=.*must be a whole number >= 0"):
        op.execute(context)
    assert requests_mock.call_count == 0
