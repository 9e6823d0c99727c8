from __future__ import annotations

import pytest

from airflow_provider_aep.exceptions import AEPResourceConflictError, AEPValidationError
from airflow_provider_aep.operators.schema_registry import (
    AEPCreateAdHocSchemaOperator,
    AEPCreateSchemaOperator,
)
from tests.operators.conftest import SR, posts

CLASS_ID = "https://ns.adobe.com/acme/classes/c1"
SCHEMA_ID = "https://ns.adobe.com/acme/schemas/s1"
ENC = {
    "class": "https%3A%2F%2Fns.adobe.com%2Facme%2Fclasses%2Fc1",
    "schema": "https%3A%2F%2Fns.adobe.com%2Facme%2Fschemas%2Fs1",
}


def _empty_lists(requests_mock):
    requests_mock.get(f"{SR}/tenant/schemas", json={"results": [], "_page": {"next": None}})
    requests_mock.get(f"{SR}/tenant/classes", json={"results": [], "_page": {"next": None}})


def _stored_class(fields):
    return {
        "$id": CLASS_ID,
        "title": "Orders class",
        "allOf": [{"$ref": "https://ns.adobe.com/xdm/data/adhoc"}],
        "properties": {"_abc123": {"type": "object", "properties": fields}},
    }


def test_adhoc_schema_creates_class_then_schema(context, requests_mock):
    _empty_lists(requests_mock)
    cls = requests_mock.post(f"{SR}/tenant/classes", status_code=201, json={"$id": CLASS_ID})
    sch = requests_mock.post(f"{SR}/tenant/schemas", status_code=201, json={"$id": SCHEMA_ID})

    op = AEPCreateAdHocSchemaOperator(
        task_id="t", title="Orders", fields={"OrderID": "string", "Total": "number", "At": "date-time"}
    )
    assert op.execute(context) == SCHEMA_ID
    assert context["ti"].xcom == {"class_id": CLASS_ID}

    body = cls.last_request.json()
    assert body["title"] == "Orders class" and body["type"] == "object"
    assert body["allOf"][0] == {"$ref": "https://ns.adobe.com/xdm/data/adhoc"}
    assert body["allOf"][1]["properties"]["_adhoc"]["properties"] == {
        "OrderID": {"type": "string"},
        "Total": {"type": "number"},
        "At": {"type": "string", "format": "date-time"},
    }
    assert cls.last_request.headers["Content-Type"] == "application/json"
    assert sch.last_request.json()["allOf"] == [{"$ref": CLASS_ID}]
    assert sch.last_request.json()["title"] == "Orders"


def test_adhoc_schema_reuses_an_existing_matching_schema(context, requests_mock):
    requests_mock.get(
        f"{SR}/tenant/schemas", json={"results": [{"$id": SCHEMA_ID, "title": "Orders"}], "_page": {"next": None}}
    )
    requests_mock.get(f"{SR}/tenant/schemas/{ENC['schema']}", json={"$id": SCHEMA_ID, "meta:class": CLASS_ID})
    requests_mock.get(f"{SR}/tenant/classes/{ENC['class']}", json=_stored_class({"OrderID": {"type": "string"}}))
    op = AEPCreateAdHocSchemaOperator(task_id="t", title="Orders", fields={"OrderID": "string"})
    assert op.execute(context) == SCHEMA_ID
    assert context["ti"].xcom == {"class_id": CLASS_ID}
    assert posts(requests_mock) == []


def test_adhoc_schema_with_other_columns_is_a_conflict(context, requests_mock):
    requests_mock.get(
        f"{SR}/tenant/schemas", json={"results": [{"$id": SCHEMA_ID, "title": "Orders"}], "_page": {"next": None}}
    )
    requests_mock.get(f"{SR}/tenant/schemas/{ENC['schema']}", json={"$id": SCHEMA_ID, "meta:class": CLASS_ID})
    requests_mock.get(f"{SR}/tenant/classes/{ENC['class']}", json=_stored_class({"OrderID": {"type": "integer"}}))
    op = AEPCreateAdHocSchemaOperator(task_id="t", title="Orders", fields={"OrderID": "string", "Extra": "string"})
    with pytest.raises(AEPResourceConflictError, match=r"ad hoc schema 'Orders' already exists .* differs .*columns"):
        op.execute(context)
    assert posts(requests_mock) == []


def test_adhoc_schema_if_exists_fail_names_the_existing_id(context, requests_mock):
    requests_mock.get(
        f"{SR}/tenant/schemas", json={"results": [{"$id": SCHEMA_ID, "title": "Orders"}], "_page": {"next": None}}
    )
    requests_mock.get(f"{SR}/tenant/schemas/{ENC['schema']}", json={"$id": SCHEMA_ID, "meta:class": CLASS_ID})
    op = AEPCreateAdHocSchemaOperator(task_id="t", title="Orders", fields={"OrderID": "string"}, if_exists="fail")
    with pytest.raises(AEPResourceConflictError, match=SCHEMA_ID):
        op.execute(context)


def test_adhoc_schema_reuses_a_class_left_by_a_half_finished_run(context, requests_mock):
    requests_mock.get(f"{SR}/tenant/schemas", json={"results": [], "_page": {"next": None}})
    requests_mock.get(
        f"{SR}/tenant/classes", json={"results": [{"$id": CLASS_ID, "title": "Orders class"}], "_page": {"next": None}}
    )
    requests_mock.get(f"{SR}/tenant/classes/{ENC['class']}", json=_stored_class({"OrderID": {"type": "string"}}))
    sch = requests_mock.post(f"{SR}/tenant/schemas", status_code=201, json={"$id": SCHEMA_ID})
    op = AEPCreateAdHocSchemaOperator(task_id="t", title="Orders", fields={"OrderID": "string"})
    assert op.execute(context) == SCHEMA_ID
    assert [r.url for r in posts(requests_mock)] == [sch.last_request.url]


def test_a_title_conflict_on_create_resolves_to_the_existing_schema(context, requests_mock):
    requests_mock.get(
        f"{SR}/tenant/schemas",
        [
            {"json": {"results": [], "_page": {"next": None}}},
            {"json": {"results": [{"$id": SCHEMA_ID, "title": "Target"}], "_page": {"next": None}}},
        ],
    )
    requests_mock.post(
        f"{SR}/tenant/schemas",
        status_code=400,
        json={"type": "http://ns.adobe.com/aep/errors/XDM-1521-400", "title": "Title not unique", "detail": "exists"},
    )
    requests_mock.get(
        f"{SR}/tenant/schemas/{ENC['schema']}",
        json={"$id": SCHEMA_ID, "meta:class": "https://ns.adobe.com/xdm/context/profile", "allOf": []},
    )
    op = AEPCreateSchemaOperator(task_id="t", title="Target")
    assert op.execute(context) == SCHEMA_ID


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "fields={}: must be a non-empty mapping"),
        ({"OrderID": "varchar"}, "fields['OrderID']='varchar': must be an XDM type"),
        ({"order.id": "string"}, "fields['order.id']='order.id': column names must start"),
        (["OrderID"], "must be a non-empty mapping"),
    ],
)
def test_adhoc_schema_validates_fields_before_any_call(context, requests_mock, fields, message):
    op = AEPCreateAdHocSchemaOperator(task_id="t", title="Orders", fields=fields)
    with pytest.raises(AEPValidationError) as err:
        op.execute(context)
    assert message in str(err.value)
    assert requests_mock.call_count == 0


def test_target_schema_payload_follows_the_tutorial_and_dedupes_field_groups(context, requests_mock):
    _empty_lists(requests_mock)
    sch = requests_mock.post(f"{SR}/tenant/schemas", status_code=201, json={"$id": SCHEMA_ID})
    groups = [
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
    ]
    op = AEPCreateSchemaOperator(task_id="t", title="Target schema for protocols", field_group_ids=groups)
    assert op.execute(context) == SCHEMA_ID
    assert sch.last_request.json() == {
        "type": "object",
        "title": "Target schema for protocols",
        "description": "Target schema for protocols",
        "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}, {"$ref": groups[0]}, {"$ref": groups[1]}],
        "meta:containerId": "tenant",
        "meta:resourceType": "schemas",
        "meta:xdmType": "object",
        "meta:class": "https://ns.adobe.com/xdm/context/profile",
    }


def test_target_schema_missing_a_field_group_is_a_conflict(context, requests_mock):
    requests_mock.get(
        f"{SR}/tenant/schemas", json={"results": [{"$id": SCHEMA_ID, "title": "T"}], "_page": {"next": None}}
    )
    requests_mock.get(
        f"{SR}/tenant/schemas/{ENC['schema']}",
        json={
            "$id": SCHEMA_ID,
            "meta:class": "https://ns.adobe.com/xdm/context/profile",
            "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}],
        },
    )
    op = AEPCreateSchemaOperator(
        task_id="t", title="T", field_group_ids=["https://ns.adobe.com/xdm/context/profile-person-details"]
    )
    with pytest.raises(AEPResourceConflictError, match=r"field groups .*profile-person-details.* are not in it"):
        op.execute(context)


def test_schema_title_must_not_be_empty(context, requests_mock):
    with pytest.raises(AEPValidationError, match="title='  ': must be a non-empty string"):
        AEPCreateSchemaOperator(task_id="t", title="  ").execute(context)
    assert requests_mock.call_count == 0
