"""Plain-``requests`` client and pipeline builders shared by the emulator tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import requests

from airflow_provider_aep.testing import AEPEmulator

SR = "/data/foundation/schemaregistry"
CAT = "/data/foundation/catalog"
FS = "/data/foundation/flowservice"
CONV = "/data/foundation/conversion"
ODATA = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
CRM_TO_AEP = "14518937-270c-4525-bdec-c2ba7cce3860"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
XED_ID = "application/vnd.adobe.xed-id+json"
XED_V1 = "application/vnd.adobe.xed+json; version=1"


def fetch_token(emu: AEPEmulator, session: requests.Session | None = None) -> str:
    s = session or requests
    r = s.post(
        emu.base_url + "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


class AEPClient:
    """The headers of aep-api.md §1.3 on a keep-alive session."""

    def __init__(self, emu: AEPEmulator, sandbox: str = "prod") -> None:
        self.emu = emu
        self.s = requests.Session()
        self.s.headers.update(
            {
                "Authorization": f"Bearer {fetch_token(emu, self.s)}",
                "x-api-key": emu.client_id,
                "x-gw-ims-org-id": emu.org_id,
                "x-sandbox-name": sandbox,
            }
        )

    def close(self) -> None:
        self.s.close()

    def req(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.s.request(method, self.emu.base_url + path, **kwargs)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.req("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.req("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.req("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.req("DELETE", path, **kw)


def xdm(title: str, *refs: str, **extra: Any) -> dict[str, Any]:
    r"""A Schema Registry class or schema body: the fields the spec requires, ``allOf`` the ``$ref``\ s."""
    return {"type": "object", "title": title, "description": title, "allOf": [{"$ref": r} for r in refs], **extra}


def ok(r: requests.Response, status: int) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.url} -> {r.status_code} {r.text}"
    return r.json() if r.content else None


def target_schema(c: AEPClient, title: str = "Protocols target schema") -> str:
    body = {
        "type": "object",
        "title": title,
        "description": title,
        "allOf": [{"$ref": PROFILE}, {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"}],
        "meta:containerId": "tenant",
        "meta:resourceType": "schemas",
        "meta:xdmType": "object",
        "meta:class": PROFILE,
    }
    return ok(c.post(f"{SR}/tenant/schemas", json=body), 201)["$id"]


def dataset(c: AEPClient, schema_id: str, name: str = "Protocols target dataset") -> str:
    body = {
        "name": name,
        "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"},
    }
    return ok(c.post(f"{CAT}/dataSets", params={"requestDataSource": "true"}, json=body), 201)[0].split("/")[-1]


def odata_connection(c: AEPClient, name: str = "Generic OData base connection") -> str:
    body = {
        "name": name,
        "auth": {
            "specName": "Anonymous Authentication",
            "params": {"url": "https://services.odata.org/V4/Northwind/Northwind.svc"},
        },
        "connectionSpec": {"id": ODATA, "version": "1.0"},
    }
    return ok(c.post(f"{FS}/connections", json=body), 201)["id"]


def tabular_source(c: AEPClient, base_id: str, name: str = "Generic OData source connection") -> str:
    body = {
        "name": name,
        "baseConnectionId": base_id,
        "data": {"format": "tabular"},
        "params": {
            "tableName": "Orders",
            "columns": [
                {"name": "OrderID", "type": "integer", "xdm": {"type": "integer"}},
                {"name": "OrderDate", "type": "string", "xdm": {"type": "string", "format": "date-time"}},
            ],
        },
        "connectionSpec": {"id": ODATA, "version": "1.0"},
    }
    return ok(c.post(f"{FS}/sourceConnections", json=body), 201)["id"]


def target_connection(
    c: AEPClient, schema_id: str, dataset_id: str, name: str = "Target Connection for protocols"
) -> str:
    body = {
        "name": name,
        "data": {
            "format": "parquet_xdm",
            "schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1"},
        },
        "params": {"dataSetId": dataset_id},
        "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
    }
    return ok(c.post(f"{FS}/targetConnections", json=body), 201)["id"]


def mapping_set(c: AEPClient, schema_id: str, name: str | None = None) -> str:
    body: dict[str, Any] = {
        "outputSchema": {
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        },
        "mappings": [
            {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
            {"sourceType": "ATTRIBUTE", "source": "OrderDate", "destination": "createdByBatchID"},
        ],
    }
    if name:
        body["name"] = name
    return ok(c.post(f"{CONV}/mappingSets", json=body), 200)["id"]


def flow_body(
    source_id: str, target_id: str, mapping_id: str, schedule: dict[str, Any], name: str = "Protocols dataflow"
) -> dict[str, Any]:
    return {
        "name": name,
        "description": "Creating a dataflow for a protocols source",
        "flowSpec": {"id": CRM_TO_AEP, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
        "transformations": [
            {
                "name": "Copy",
                "params": {"deltaColumn": {"name": "OrderDate", "dateFormat": "YYYY-MM-DD", "timezone": "UTC"}},
            },
            {"name": "Mapping", "params": {"mappingId": mapping_id, "mappingVersion": "0"}},
        ],
        "scheduleParams": schedule,
    }


def pipeline(c: AEPClient, prefix: str = "P") -> dict[str, str]:
    """Everything a flow needs (current tutorial variant), titles/names prefixed to stay unique."""
    schema_id = target_schema(c, f"{prefix} target schema")
    ds = dataset(c, schema_id, f"{prefix} dataset")
    base = odata_connection(c, f"{prefix} base")
    src = tabular_source(c, base, f"{prefix} source")
    tgt = target_connection(c, schema_id, ds, f"{prefix} target")
    mapping = mapping_set(c, schema_id)
    return {"schema": schema_id, "dataset": ds, "base": base, "source": src, "target": tgt, "mapping": mapping}


def create_flow(
    c: AEPClient, p: dict[str, str], schedule: dict[str, Any] | None = None, name: str = "Protocols dataflow"
) -> str:
    schedule = schedule or {"startTime": int(time.time()), "frequency": "minute", "interval": 15}
    return ok(c.post(f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], schedule, name)), 201)["id"]


def quoted(xdm_id: str) -> str:
    return quote_plus(xdm_id)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
