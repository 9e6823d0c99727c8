"""The emulator explores a Generic OData base connection (root listing, a table's columns, preview rows) and
answers Data Prep's validate and preview as AEP does."""

from __future__ import annotations

from emulator_helpers import (
    CONV,
    DATA_LAKE,
    FS,
    AEPClient,
    create_flow,
    odata_connection,
    ok,
    pipeline,
    target_schema,
    wait_for,
)

from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.source_catalog import table

SCHEMA_REF = "application/vnd.adobe.xed-full+json;version=1"


def explore(c: AEPClient, base_id: str, **params: str):
    return c.get(f"{FS}/connections/{base_id}/explore", params=params)


def test_root_lists_the_catalog_tables_with_their_paths(client):
    base = odata_connection(client)
    tables = ok(explore(client, base, objectType="root"), 200)
    assert [t["path"] for t in tables] == ["Orders", "Customers", "Employees"]
    assert tables[0] == {
        "type": "table",
        "name": "Orders",
        "path": "Orders",
        "canPreview": True,
        "canFetchSchema": True,
    }
    # the spec's enum spelling is accepted too
    assert ok(explore(client, base, objectType="ROOT"), 200) == tables


def test_a_table_describes_its_typed_columns_and_previews_the_same_rows_every_time(client):
    base = odata_connection(client)
    structure = ok(explore(client, base, objectType="table", object="Orders"), 200)
    assert "data" not in structure and structure["format"] == "flat"
    columns = {c["name"]: c for c in structure["schema"]["columns"]}
    assert columns["OrderID"]["type"] == "integer" and columns["OrderID"]["xdm"]["type"] == "integer"
    assert columns["OrderDate"]["xdm"] == {"type": "string", "format": "date-time"}
    assert columns["Freight"]["type"] == "decimal"

    preview = ok(explore(client, base, objectType="table", object="Orders", preview="true"), 200)
    again = ok(explore(client, base, objectType="table", object="Orders", preview="true"), 200)
    assert preview["data"] == again["data"] and len(preview["data"]) == 100
    assert [r["OrderID"] for r in preview["data"][:3]] == [1, 2, 3]
    assert set(preview["data"][0]) == set(columns)


def test_explore_refuses_what_it_cannot_answer(client):
    base = odata_connection(client)
    missing = explore(client, base, objectType="table", object="Ordrs")
    assert missing.status_code == 404 and "'Ordrs'" in missing.text
    assert explore(client, base, objectType="table").status_code == 400
    assert explore(client, base, objectType="file", object="x.csv").status_code == 400
    assert explore(client, "no-such-connection", objectType="root").status_code == 404
    lake = ok(
        client.post(f"{FS}/connections", json={"name": "lake", "connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}),
        201,
    )["id"]
    refused = explore(client, lake, objectType="root")
    assert refused.status_code == 400 and "does not support explore" in refused.text


def test_connection_test_answers_the_spec_shape(client):
    base = odata_connection(client)
    assert ok(client.get(f"{FS}/connections/{base}/test"), 200) == {"result": True}
    assert client.get(f"{FS}/connections/nope/test").status_code == 404


def test_a_run_of_a_flow_reading_a_catalog_table_counts_its_rows(client, emu):
    flow_id = create_flow(client, pipeline(client))  # the helper's source reads Orders
    run = wait_for(
        lambda: next(
            (
                r
                for r in ok(client.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"}), 200)["items"]
                if r["metrics"]["statusSummary"]["status"] == "success"
            ),
            None,
        ),
        timeout=30,
    )
    assert run["metrics"]["recordSummary"]["inputRecordCount"] == emu.source_tables["Orders"].row_count == 830


def test_custom_source_tables_replace_the_catalog():
    custom = table("Table01", 3, "RecordID", ("RecordID", "string"), ("ModifiedDate", "date-time"))
    with AEPEmulator(source_tables=[custom]) as emu:
        c = AEPClient(emu)
        base = odata_connection(c)
        assert [t["path"] for t in ok(explore(c, base, objectType="root"), 200)] == ["Table01"]
        rows = ok(explore(c, base, objectType="table", object="Table01", preview="true"), 200)["data"]
        assert [r["RecordID"] for r in rows] == ["TAB00001", "TAB00002", "TAB00003"]
        c.close()


def _mapping_set(schema_id: str, *mappings: dict) -> dict:
    return {"outputSchema": {"schemaRef": {"id": schema_id, "contentType": SCHEMA_REF}}, "mappings": list(mappings)}


def test_validate_reports_each_mapping_in_order_with_transform_errors(client):
    schema_id = target_schema(client)
    body = _mapping_set(
        schema_id,
        {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
        {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "person.nmae.firstName"},
        {"sourceType": "EXPRESSION", "source": 'concat(OrderID, "x"', "destination": "_id"},
        {"sourceType": "ATTRIBUTE", "destination": "_id"},
    )
    verdicts = ok(client.post(f"{CONV}/mappingSets/validate", json=body), 200)["validationResponse"]
    assert [v["status"] for v in verdicts] == ["SUCCESS", "FAILED", "FAILED", "FAILED"]
    assert verdicts[0]["errors"] is None
    assert verdicts[1]["errors"] == [
        {
            "source": "OrderID",
            "destination": "person.nmae.firstName",
            "exception": f"The destination path person.nmae.firstName does not exist in the output schema {schema_id}.",
        }
    ]
    assert "cannot be parsed" in verdicts[2]["errors"][0]["exception"]
    assert verdicts[3]["errors"] == [
        {"destination": "_id", "exception": "mappings[3] needs a source (or sourceAttribute)."}
    ]
    missing_schema = client.post(f"{CONV}/mappingSets/validate", json=_mapping_set("https://ns.adobe.com/x/none"))
    assert missing_schema.status_code == 400
    assert client.get(f"{CONV}/mappingSets", params={"start": 0, "limit": 10}).json()["data"] == []  # a dry run


def test_preview_maps_each_row_into_the_schema_paths(client):
    schema_id = target_schema(client)
    mapping_set = _mapping_set(
        schema_id,
        {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
        {"sourceType": "ATTRIBUTE", "source": "ShipName", "destination": "person.name.fullName"},
    )
    rows = [{"OrderID": 7, "ShipName": "Bon app"}, {"OrderID": 8}]
    answer = ok(client.post(f"{CONV}/mappingSets/preview", json={"data": rows, "mappingSet": mapping_set}), 200)
    assert answer[0] == {"data": {"_id": 7, "person": {"name": {"fullName": "Bon app"}}}, "errors": None}
    assert answer[1]["data"] == {"_id": 8}
    assert answer[1]["errors"][0]["source"] == "ShipName"
    bad = _mapping_set(schema_id, {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "nope.path"})
    refused = client.post(f"{CONV}/mappingSets/preview", json={"data": rows, "mappingSet": bad})
    assert refused.status_code == 400 and "nope.path" in refused.text


def test_preview_evaluates_the_string_functions_and_names_what_it_cannot(client):
    schema_id = target_schema(client)
    mapping_set = _mapping_set(
        schema_id,
        {
            "sourceType": "EXPRESSION",
            "source": 'upper(concat(trim(ShipName), " / ", ${Ship City}))',
            "destination": "person.name.fullName",
        },
        {"sourceType": "EXPRESSION", "source": "lower(OrderID)", "destination": "_id"},
    )
    rows = [{"OrderID": "AB-7", "ShipName": "  Bon app ", "Ship City": "Marseille"}]
    answer = ok(client.post(f"{CONV}/mappingSets/preview", json={"data": rows, "mappingSet": mapping_set}), 200)
    assert answer == [
        {"data": {"_id": "ab-7", "person": {"name": {"fullName": "BON APP / MARSEILLE"}}}, "errors": None}
    ]

    unknown = _mapping_set(
        schema_id,
        {"sourceType": "EXPRESSION", "source": "sha256(OrderID)", "destination": "_id"},
        {"sourceType": "EXPRESSION", "source": "lower(ShipNmae)", "destination": "person.name.fullName"},
    )
    answer = ok(client.post(f"{CONV}/mappingSets/preview", json={"data": rows, "mappingSet": unknown}), 200)
    assert answer[0]["data"] == {}
    assert [e["exception"] for e in answer[0]["errors"]] == [
        "the emulator does not evaluate the function sha256() (it evaluates concat, lower, lcase, upper, ucase, "
        "trim, ltrim, rtrim)",
        "The source attribute ShipNmae is not in the row.",
    ]
