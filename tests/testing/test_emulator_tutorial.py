"""The protocols-source tutorial walked end to end with plain ``requests``, in both variants.

Legacy (2020, the seed): ad hoc class + schema, ``parquet_xdm`` source with ``params.path``,
a dataset base connection on the target. Current: ``tabular`` source with ``tableName``/
``columns``, target connection without base connection, ``once`` schedule + on-demand run.
Request bodies are the tutorial's, ids substituted.
"""

from __future__ import annotations

import re
import time

from emulator_helpers import (
    CAT,
    CONV,
    CRM_TO_AEP,
    DATA_LAKE,
    FS,
    ODATA,
    PROFILE,
    SR,
    XED_V1,
    AEPClient,
    ok,
    quoted,
    wait_for,
)

from airflow_provider_aep.testing import AEPEmulator

# transformationSpecs exactly as printed in the seed tutorial.
SEED_TRANSFORMATION_SPECS = [
    {
        "name": "Copy",
        "spec": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "deltaColumn": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "dateFormat": {"type": "string"},
                        "timezone": {"type": "string"},
                    },
                    "required": ["name"],
                }
            },
            "required": ["deltaColumn"],
        },
    },
    {
        "name": "Mapping",
        "spec": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "description": "defines various params required for different mapping from source to target",
            "properties": {"mappingId": {"type": "string"}, "mappingVersion": {"type": "string"}},
        },
    },
]


def _final_run(c: AEPClient, flow_id: str) -> dict:
    def done() -> dict | None:
        items = ok(c.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"}), 200)["items"]
        finished = [r for r in items if r["metrics"]["statusSummary"]["status"] == "success"]
        return finished[0] if finished else None

    return wait_for(done, timeout=10)


def test_legacy_tutorial(emu: AEPEmulator, client: AEPClient) -> None:
    c = client
    tenant = ok(c.get(f"{SR}/stats", headers={"Accept": "application/vnd.adobe.xdm+json"}), 200)["tenantId"]
    assert tenant == emu.tenant_id

    # Ad hoc class: every source field declared under _adhoc.
    adhoc_class = ok(
        c.post(
            f"{SR}/tenant/classes",
            json={
                "title": "Protocols ad hoc class",
                "description": "Ad hoc class for the Orders table",
                "type": "object",
                "allOf": [
                    {"$ref": "https://ns.adobe.com/xdm/data/adhoc"},
                    {
                        "properties": {
                            "_adhoc": {
                                "type": "object",
                                "properties": {
                                    "OrderID": {"type": "string"},
                                    "CustomerID": {"type": "string"},
                                    "EmployeeID": {"type": "string"},
                                    "OrderDate": {"type": "string"},
                                },
                            }
                        }
                    },
                ],
            },
        ),
        201,
    )
    guid = adhoc_class["$id"].rsplit("/", 1)[1]
    assert adhoc_class["$id"] == f"https://ns.adobe.com/{tenant}/classes/{guid}"
    assert adhoc_class["meta:altId"] == f"_{tenant}.classes.{guid}"
    assert adhoc_class["meta:datasetNamespace"] == f"_{guid}"
    assert adhoc_class["meta:extends"] == ["https://ns.adobe.com/xdm/data/adhoc"]
    assert adhoc_class["meta:abstract"] is True and adhoc_class["version"] == "1.0"
    props = adhoc_class["allOf"][1]["properties"]
    assert "_adhoc" not in props and set(props[f"_{guid}"]["properties"]) == {
        "OrderID",
        "CustomerID",
        "EmployeeID",
        "OrderDate",
    }

    adhoc_schema = ok(
        c.post(
            f"{SR}/tenant/schemas",
            json={
                "title": "Protocols ad hoc schema",
                "description": "Ad hoc schema",
                "type": "object",
                "allOf": [{"$ref": adhoc_class["$id"]}],
            },
        ),
        201,
    )
    assert set(adhoc_schema["meta:extends"]) == {adhoc_class["$id"], "https://ns.adobe.com/xdm/data/adhoc"}
    assert adhoc_schema["meta:datasetNamespace"] == f"_{guid}"

    base = ok(
        c.post(
            f"{FS}/connections",
            json={
                "name": "Protocols base connection",
                "auth": {
                    "specName": "Anonymous Authentication",
                    "params": {"url": "https://services.odata.org/V4/Northwind/Northwind.svc"},
                },
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
        ),
        201,
    )["id"]

    # Source connection, verbatim from the seed.
    r = c.post(
        f"{FS}/sourceConnections",
        json={
            "name": "Protocols source connection",
            "baseConnectionId": base,
            "description": "Protocols source connection to ingest Orders",
            "data": {
                "format": "parquet_xdm",
                "schema": {
                    "id": adhoc_schema["$id"],
                    "version": "application/vnd.adobe.xed-full-notext+json; version=1",
                },
            },
            "params": {"path": "Orders"},
            "connectionSpec": {"id": ODATA, "version": "1.0"},
        },
    )
    source = ok(r, 201)
    assert set(source) == {"id", "etag"} and re.fullmatch(r'"[0-9a-f]{8}-0000-0200-0000-[0-9a-f]{12}"', source["etag"])
    assert r.headers["Location"].endswith(f"/sourceConnections/{source['id']}")

    # Target schema, verbatim from the seed (profile-personal-details listed twice, as printed).
    target_schema = ok(
        c.post(
            f"{SR}/tenant/schemas",
            json={
                "type": "object",
                "title": "Target schema for protocols",
                "description": "Target schema for protocols",
                "allOf": [
                    {"$ref": PROFILE},
                    {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
                    {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
                    {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
                ],
                "meta:containerId": "tenant",
                "meta:resourceType": "schemas",
                "meta:xdmType": "object",
                "meta:class": PROFILE,
            },
        ),
        201,
    )
    schema_id = target_schema["$id"]
    assert re.fullmatch(rf"https://ns.adobe.com/{tenant}/schemas/[0-9a-f]{{48}}", schema_id)
    assert target_schema["version"] == "1.0" and target_schema["meta:class"] == PROFILE
    assert len(target_schema["allOf"]) == 4 and all(p["meta:xdmType"] == "object" for p in target_schema["allOf"])
    assert sorted(target_schema["refs"]) == sorted(
        [
            PROFILE,
            "https://ns.adobe.com/xdm/context/profile-person-details",
            "https://ns.adobe.com/xdm/context/profile-personal-details",
        ]
    )
    assert {"https://ns.adobe.com/xdm/common/auditable", "https://ns.adobe.com/xdm/data/record", PROFILE} <= set(
        target_schema["meta:extends"]
    )
    assert target_schema["meta:tenantNamespace"] == f"_{tenant}" and target_schema["imsOrg"] == emu.org_id
    assert {"repo:createdDate", "eTag"} <= set(target_schema["meta:registryMetadata"])

    created = ok(
        c.post(
            f"{CAT}/dataSets?requestDataSource=true",
            json={
                "name": "Protocols target dataset",
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"},
            },
        ),
        201,
    )
    assert len(created) == 1 and re.fullmatch(r"@/dataSets/[0-9a-f]{24}", created[0])
    dataset_id = created[0].split("/")[-1]

    # Dataset base connection (create-dataset-base-connection tutorial).
    dataset_base = ok(
        c.post(
            f"{FS}/connections",
            json={
                "name": "Base connection for dataset",
                "description": "Base connection for dataset",
                "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
            },
        ),
        201,
    )["id"]

    # Target connection as printed: it carries the protocol's connectionSpec id, the base connection says Data Lake.
    target = ok(
        c.post(
            f"{FS}/targetConnections",
            json={
                "baseConnectionId": dataset_base,
                "name": "Target Connection for protocols",
                "description": "Target Connection for protocols",
                "data": {"format": "parquet_xdm", "schema": {"id": schema_id}},
                "params": {"dataSetId": dataset_id},
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
        ),
        201,
    )["id"]

    mapping = ok(
        c.post(
            f"{CONV}/mappingSets",
            json={
                "version": 0,
                "xdmSchema": schema_id,
                "xdmVersion": "1.0",
                "id": None,
                "mappings": [
                    {
                        "destinationXdmPath": "_id",
                        "sourceAttribute": "OrderID",
                        "identity": False,
                        "identityGroup": None,
                        "namespaceCode": None,
                        "version": 0,
                    },
                    {
                        "destinationXdmPath": "_id",
                        "sourceAttribute": "CustomerID",
                        "identity": False,
                        "identityGroup": None,
                        "namespaceCode": None,
                        "version": 0,
                    },
                    {
                        "destinationXdmPath": "_id",
                        "sourceAttribute": "EmployeeID",
                        "identity": False,
                        "identityGroup": None,
                        "namespaceCode": None,
                        "version": 0,
                    },
                    {
                        "destinationXdmPath": "createdByBatchID",
                        "sourceAttribute": "OrderDate",
                        "identity": False,
                        "identityGroup": None,
                        "namespaceCode": None,
                        "version": 0,
                    },
                ],
            },
        ),
        200,
    )
    assert set(mapping) == {"id", "version", "createdDate", "modifiedDate", "createdBy", "modifiedBy"}
    assert mapping["version"] == 0 and re.fullmatch(r"[0-9a-f]{32}", mapping["id"])

    spec = ok(c.get(f'{FS}/flowSpecs?property=name=="CRMToAEP"'), 200)["items"]
    assert (
        len(spec) == 1
        and spec[0]["id"] == CRM_TO_AEP
        and spec[0]["providerId"] == "0ed90a81-07f4-4586-8190-b40eccef1c5a"
    )
    assert spec[0]["transformationSpecs"] == SEED_TRANSFORMATION_SPECS
    assert ODATA in spec[0]["sourceConnectionSpecIds"] and spec[0]["targetConnectionSpecIds"] == [DATA_LAKE]

    # Dataflow, verbatim (strings for startTime/interval/mappingVersion, as printed).
    flow = ok(
        c.post(
            f"{FS}/flows",
            json={
                "name": "Creating a dataflow for a protocols source",
                "description": "Creating a dataflow for a protocols source",
                "flowSpec": {"id": CRM_TO_AEP, "version": "1.0"},
                "sourceConnectionIds": [source["id"]],
                "targetConnectionIds": [target],
                "transformations": [
                    {
                        "name": "Copy",
                        "params": {"deltaColumn": {"name": "updatedAt", "dateFormat": "YYYY-MM-DD", "timezone": "UTC"}},
                    },
                    {"name": "Mapping", "params": {"mappingId": mapping["id"], "mappingVersion": "0"}},
                ],
                "scheduleParams": {"startTime": "1567411548", "frequency": "minute", "interval": "30"},
            },
        ),
        201,
    )
    got = ok(c.get(f"{FS}/flows/{flow['id']}"), 200)["items"][0]
    assert got["state"] == "enabled" and got["etag"] == flow["etag"] == got["version"]
    assert got["scheduleParams"] == {"startTime": 1567411548, "frequency": "minute", "interval": 30}
    assert got["inheritedAttributes"]["targetConnections"][0]["baseConnection"]["connectionSpec"]["id"] == DATA_LAKE
    assert got["runs"] == f"/runs?property=flowId=={flow['id']}"

    run = _final_run(c, flow["id"])
    assert run["flowId"] == flow["id"] and run["metrics"]["recordSummary"]["outputRecordCount"] > 0
    assert ok(c.get(f"{FS}/flows/{flow['id']}"), 200)["items"][0]["lastRunDetails"]["state"] == "success"


def test_current_tutorial(emu: AEPEmulator, client: AEPClient) -> None:
    c = client
    schema = ok(
        c.post(
            f"{SR}/tenant/schemas",
            json={
                "type": "object",
                "title": "Generic OData target XDM schema",
                "description": "OData target",
                "allOf": [{"$ref": PROFILE}],
            },
        ),
        201,
    )
    patched = ok(
        c.patch(
            f"{SR}/tenant/schemas/{quoted(schema['$id'])}",
            json=[
                {
                    "op": "add",
                    "path": "/allOf/-",
                    "value": {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
                },
                {
                    "op": "add",
                    "path": "/allOf/-",
                    "value": {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
                },
            ],
        ),
        200,
    )
    assert patched["version"] == "1.1" and len(patched["refs"]) == 3
    schema_id = schema["$id"]
    looked_up = ok(c.get(f"{SR}/tenant/schemas/{quoted(schema['meta:altId'])}", headers={"Accept": XED_V1}), 200)
    assert looked_up["$id"] == schema_id and looked_up["version"] == "1.1"

    dataset_id = ok(
        c.post(
            f"{CAT}/dataSets",
            params={"requestDataSource": "true"},
            json={
                "name": "Generic OData target dataset",
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"},
            },
        ),
        201,
    )[0].split("/")[-1]

    base = ok(
        c.post(
            f"{FS}/connections",
            json={
                "name": "Generic OData base connection",
                "auth": {
                    "specName": "Anonymous Authentication",
                    "params": {"url": "https://services.odata.org/V4/Northwind/Northwind.svc"},
                },
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
        ),
        201,
    )["id"]
    source = ok(
        c.post(
            f"{FS}/sourceConnections",
            json={
                "name": "Generic OData source connection",
                "description": "Generic OData source connection",
                "baseConnectionId": base,
                "data": {"format": "tabular"},
                "params": {
                    "tableName": "Orders",
                    "columns": [
                        {
                            "name": "OrderID",
                            "type": "integer",
                            "xdm": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
                        },
                        {
                            "name": "OrderDate",
                            "type": "string",
                            "meta:xdmType": "date-time",
                            "xdm": {"type": "string", "format": "date-time"},
                        },
                    ],
                },
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
        ),
        201,
    )["id"]
    target = ok(
        c.post(
            f"{FS}/targetConnections",
            json={
                "name": "Target Connection for protocols",
                "description": "Target Connection for protocols",
                "data": {
                    "format": "parquet_xdm",
                    "schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1"},
                },
                "params": {"dataSetId": dataset_id},
                "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
            },
        ),
        201,
    )["id"]
    got_target = ok(c.get(f"{FS}/targetConnections/{target}"), 200)["items"][0]
    assert got_target["baseConnectionId"] is None and got_target["params"]["dataSetId"] == dataset_id

    mapping = ok(
        c.post(
            f"{CONV}/mappingSets",
            json={
                "outputSchema": {
                    "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
                },
                "mappings": [
                    {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
                    {"sourceType": "ATTRIBUTE", "source": "OrderDate", "destination": "createdByBatchID"},
                ],
            },
        ),
        200,
    )

    spec = ok(c.get(f"{FS}/flowSpecs", params={"property": "name==CRMToAEP"}), 200)["items"][0]
    assert "once" in spec["scheduleSpec"]["spec"]["properties"]["frequency"]["enum"]

    now = int(time.time())
    flow_id = ok(
        c.post(
            f"{FS}/flows",
            json={
                "name": "Generic OData dataflow",
                "flowSpec": {"id": spec["id"], "version": "1.0"},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [target],
                "transformations": [
                    {
                        "name": "Copy",
                        "params": {
                            "deltaColumn": {
                                "name": "OrderDate",
                                "dateFormat": "yyyy-MM-ddTHH:mm:ssZ",
                                "timezone": "UTC",
                            }
                        },
                    },
                    # The tutorial prints 0; the flow spec (and AEP) want the string.
                    {"name": "Mapping", "params": {"mappingId": mapping["id"], "mappingVersion": "0"}},
                ],
                "scheduleParams": {"startTime": now + 3600, "frequency": "once"},
            },
        ),
        201,
    )["id"]

    r = c.post(
        f"{FS}/runs",
        json={
            "flowId": flow_id,
            "params": {
                "startTime": str(now),
                "windowStartTime": str(now - 86400),
                "windowEndTime": str(now),
                "deltaColumn": {"name": "OrderDate"},
            },
        },
    )
    created = ok(r, 201)
    run_id = created["items"][0]["id"]
    assert set(created["items"][0]) == {"id", "etag"}

    run = wait_for(
        lambda: (lambda rr: rr if rr["metrics"]["statusSummary"]["status"] == "success" else None)(
            ok(c.get(f"{FS}/runs/{run_id}"), 200)["items"][0]
        )
    )
    assert run["params"]["windowEndTime"] == now
    assert {"Copy Activity", "Promotion Activity"} == {a["name"] for a in run["activities"]}
    promotion = next(a for a in run["activities"] if a["name"] == "Promotion Activity")
    assert promotion["targetInfo"][0]["id"] == target and promotion["targetInfo"][0]["reference"]["type"] == "Batch"
