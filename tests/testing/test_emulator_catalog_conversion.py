"""Catalog (datasets) and Data Prep (mapping sets) contracts."""

from __future__ import annotations

import re

import pytest
from emulator_helpers import (
    CAT,
    CONV,
    AEPClient,
    dataset,
    mapping_set,
    ok,
    target_schema,
)

from airflow_provider_aep.testing import AEPEmulator


@pytest.fixture
def schema_id(client: AEPClient) -> str:
    return target_schema(client)


# --------------------------------------------------------------------------- Catalog


def test_create_dataset_returns_at_path(client: AEPClient, schema_id: str) -> None:
    r = client.post(
        f"{CAT}/dataSets", params={"requestDataSource": "true"}, json={"name": "DS", "schemaRef": {"id": schema_id}}
    )
    created = ok(r, 201)
    assert isinstance(created, list) and re.fullmatch(r"@/dataSets/[0-9a-f]{24}", created[0])
    ds_id = created[0].split("/")[-1]
    got = ok(client.get(f"{CAT}/dataSets/{ds_id}"), 200)
    assert list(got) == [ds_id] and got[ds_id]["name"] == "DS" and got[ds_id]["schemaRef"]["id"] == schema_id
    assert isinstance(got[ds_id]["created"], int)
    trimmed = ok(client.get(f"{CAT}/dataSets/{ds_id}", params={"properties": "name,schemaRef"}), 200)[ds_id]
    assert set(trimmed) == {"name", "schemaRef"}


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({}, {"name": "DS", "schemaRef": {"id": "x"}}),  # no requestDataSource, no dataSourceId
        ({"requestDataSource": "true"}, {"schemaRef": {"id": "x"}}),  # no name
        ({"requestDataSource": "true"}, {"name": "DS"}),  # no schemaRef
        ({"requestDataSource": "true"}, {"name": "DS", "schemaRef": {"id": "https://ns.adobe.com/t/schemas/unknown"}}),
    ],
)
def test_create_dataset_validation(client: AEPClient, schema_id: str, params: dict, body: dict) -> None:
    err = ok(client.post(f"{CAT}/dataSets", params=params, json=body), 400)
    assert err["status"] == 400 and err["detail"]


def test_list_datasets_paging_and_filters(client: AEPClient, schema_id: str) -> None:
    ids = [dataset(client, schema_id, f"DS {i}") for i in range(25)]
    first = ok(client.get(f"{CAT}/dataSets"), 200)
    assert list(first) == ids[:20]  # default limit 20, keyed by id
    assert list(ok(client.get(f"{CAT}/dataSets", params={"start": 20, "limit": 100}), 200)) == ids[20:]
    for bad in ("0", "-1", "abc"):
        ok(client.get(f"{CAT}/dataSets", params={"limit": bad}), 400)
    assert list(ok(client.get(f"{CAT}/dataSets", params={"property": "name==DS 7"}), 200)) == [ids[7]]
    assert list(ok(client.get(f"{CAT}/dataSets", params={"name": "DS 7,DS 8"}), 200)) == [ids[7], ids[8]]
    assert len(ok(client.get(f"{CAT}/dataSets", params={"property": "name==DS 1*", "limit": 100}), 200)) == 11
    assert ids[3] not in ok(client.get(f"{CAT}/dataSets", params={"name": "!DS 3", "limit": 100}), 200)
    desc = ok(client.get(f"{CAT}/dataSets", params={"orderBy": "desc:name", "limit": 1}), 200)
    assert list(desc) == [ids[9]]  # "DS 9" sorts last as a string
    ok(client.get(f"{CAT}/dataSets", params={"property": "schemaRef.id==x"}), 400)  # top-level only


def test_delete_dataset(client: AEPClient, schema_id: str) -> None:
    ds = dataset(client, schema_id)
    assert ok(client.delete(f"{CAT}/dataSets/{ds}"), 200) == [f"@/dataSets/{ds}"]
    ok(client.get(f"{CAT}/dataSets/{ds}"), 404)
    assert ok(client.delete(f"{CAT}/dataSets/{ds}"), 200) == []


# --------------------------------------------------------------------------- Data Prep


def test_mapping_set_create_current_body(client: AEPClient, schema_id: str) -> None:
    created = ok(
        client.post(
            f"{CONV}/mappingSets",
            json={
                "name": "orders-mapping",
                "outputSchema": {
                    "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
                },
                "mappings": [{"sourceType": "ATTRIBUTE", "source": "id", "destination": "_id"}],
            },
        ),
        200,
    )
    assert (
        set(created) == {"id", "version", "createdDate", "modifiedDate", "createdBy", "modifiedBy"}
        and created["version"] == 0
    )
    got = ok(client.get(f"{CONV}/mappingSets/{created['id']}"), 200)
    assert got["name"] == "orders-mapping" and got["xdmSchema"] == schema_id
    assert got["outputSchema"]["schemaRef"]["id"] == schema_id
    m = got["mappings"][0]
    assert (m["source"], m["destination"], m["sourceAttribute"], m["destinationXdmPath"]) == ("id", "_id", "id", "_id")


@pytest.mark.parametrize(
    "body",
    [
        {"mappings": [{"source": "a", "destination": "_id"}]},  # no schema
        {"xdmSchema": "https://ns.adobe.com/t/schemas/unknown", "mappings": [{"source": "a", "destination": "_id"}]},
        {"xdmSchema": "SCHEMA", "mappings": []},
        {"xdmSchema": "SCHEMA", "mappings": [{"source": "a"}]},
        {"xdmSchema": "SCHEMA", "mappings": [{"sourceType": "BOGUS", "source": "a", "destination": "_id"}]},
    ],
)
def test_mapping_set_validation(client: AEPClient, schema_id: str, body: dict) -> None:
    if body.get("xdmSchema") == "SCHEMA":
        body = {**body, "xdmSchema": schema_id}
    assert ok(client.post(f"{CONV}/mappingSets", json=body), 400)["status"] == 400


def test_mapping_set_list_requires_start_and_limit(client: AEPClient, schema_id: str) -> None:
    ids = [mapping_set(client, schema_id, name=f"m{i}") for i in range(3)]
    ok(client.get(f"{CONV}/mappingSets"), 400)
    ok(client.get(f"{CONV}/mappingSets", params={"start": 0}), 400)
    ok(client.get(f"{CONV}/mappingSets", params={"limit": 5}), 400)
    page = ok(client.get(f"{CONV}/mappingSets", params={"start": 0, "limit": 2}), 200)
    assert [m["id"] for m in page["data"]] == ids[:2] and page["_page"] == {"count": 3, "limit": 2}
    named = ok(client.get(f"{CONV}/mappingSets", params={"start": 0, "limit": 10, "name": "m1"}), 200)
    assert [m["id"] for m in named["data"]] == [ids[1]]


def test_mapping_set_versions(client: AEPClient, schema_id: str) -> None:
    mid = mapping_set(client, schema_id)
    updated = ok(
        client.req(
            "PUT",
            f"{CONV}/mappingSets/{mid}",
            json={"xdmSchema": schema_id, "mappings": [{"source": "b", "destination": "_id"}]},
        ),
        200,
    )
    assert updated["version"] == 1
    assert ok(client.get(f"{CONV}/mappingSets/{mid}", params={"version": 0}), 200)["mappings"][0]["source"] == "OrderID"


@pytest.mark.parametrize(
    ("answer", "status", "left_in_place"),
    [(None, 405, True), ("405", 405, True), ("404", 404, True), ("delete", 204, False)],
)
def test_undocumented_mapping_set_delete_is_answered_as_configured(
    answer: str | None, status: int, left_in_place: bool
) -> None:
    """Adobe documents no DELETE on a mapping set: by default it is a method the path lacks (405)."""
    with AEPEmulator(mapping_set_delete=answer) as emu:
        client = AEPClient(emu)
        mid = mapping_set(client, target_schema(client))
        r = client.delete(f"{CONV}/mappingSets/{mid}")
        assert r.status_code == status
        if status == 405:
            assert r.json()["title"] == "MethodNotAllowed"
        ok(client.get(f"{CONV}/mappingSets/{mid}"), 200 if left_in_place else 404)


def test_lenient_emulator_deletes_mapping_sets_by_default() -> None:
    with AEPEmulator(strict=False) as emu:
        assert emu.mapping_set_delete == "delete"
    with pytest.raises(ValueError, match="mapping_set_delete='gone'"):
        AEPEmulator(mapping_set_delete="gone")


def test_mapping_set_validate_needs_an_output_schema_as_the_create_does(client: AEPClient) -> None:
    # each mapping's verdict: test_emulator_explore.py
    r = client.post(f"{CONV}/mappingSets/validate", json={"mappings": [{"source": "a", "destination": "_id"}]})
    assert r.status_code == 400 and "An output schema is required" in r.json()["detail"]
