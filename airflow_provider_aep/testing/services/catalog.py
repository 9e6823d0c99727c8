"""Catalog Service, ``/data/foundation/catalog`` (aep-api.md §3): datasets, and the batches runs write.

* ``POST /dataSets?requestDataSource=true`` → 201 ``["@/dataSets/<24-hex id>"]``; the
  schema must exist in the sandbox; without ``requestDataSource`` a ``dataSourceId`` is needed.
* ``GET /dataSets`` → an object keyed by id; ``start``/``limit`` (default 20, max 100, 0 → 400),
  ``property=`` on top-level fields (``name`` accepts ``*``), simple ``name=a,b`` / ``name=!a``,
  ``orderBy=asc:created``, ``properties=name,schemaRef``.
* ``GET /dataSets/{id}`` → ``{id: {...}}``; ``DELETE`` → 200 ``["@/dataSets/<id>"]``
  (200 ``[]`` when nothing matched, as Catalog does).
* ``GET /batches/{id}`` → ``{id: {...}}`` (catalog.yaml ``batchResponse``): the target batch of a finished
  run, with its status, record counts and errors; 404 until the run wrote it.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from airflow_provider_aep.testing import runs as run_engine
from airflow_provider_aep.testing.errors import APIError, placeholder_error
from airflow_provider_aep.testing.query import Filter, matches, parse_filter, sort_key, whole_number
from airflow_provider_aep.testing.routing import Request, Response, Service, route
from airflow_provider_aep.testing.state import new_hex

PREFIX = "/data/foundation/catalog"
_RESERVED = {"limit", "start", "orderBy", "orderby", "properties", "property", "requestDataSource"}


def _bad(message: str) -> APIError:
    return placeholder_error(400, "BadRequestError", message)


def _trim(ds: dict[str, Any], properties: str | None) -> dict[str, Any]:
    out = copy.deepcopy(ds)
    if properties:
        keep = {p.strip() for p in properties.split(",") if p.strip()}
        out = {k: v for k, v in out.items() if k in keep}
    return out


def create_dataset(req: Request) -> Response:
    body = req.json_object(_bad)
    request_data_source = (req.q("requestDataSource") or "").lower() == "true"
    if not request_data_source and body.get("dataSourceId") is None:
        raise _bad("A dataSourceId is required unless requestDataSource=true is passed.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad("The 'name' field is required.")
    schema_ref = body.get("schemaRef")
    if not isinstance(schema_ref, dict) or not schema_ref.get("id"):
        raise _bad("The 'schemaRef.id' field is required.")
    sb = req.sb
    schema = next(
        (s for s in sb.schemas.values() if schema_ref["id"] in (s["$id"], s.get("meta:altId"))),
        None,
    )
    if schema is None:
        raise _bad(f"Schema {schema_ref['id']} does not exist in sandbox {sb.name}.")
    emulator = req.emulator
    now_ms = emulator.store.now_ms()
    ds_id = new_hex(12)
    view_id = new_hex(12)
    data_source_id = body.get("dataSourceId") or random.Random(ds_id).randint(10_000, 99_999)
    dataset: dict[str, Any] = {
        "name": name,
        "description": body.get("description", ""),
        "imsOrg": emulator.org_id,
        "sandboxId": sb.id,
        "tags": copy.deepcopy(body.get("tags", {})),
        "version": "1.0.0",
        "created": now_ms,
        "updated": now_ms,
        "createdClient": req.client_id,
        "createdUser": emulator.user_id,
        "updatedUser": emulator.user_id,
        "dataSourceId": data_source_id,
        "schemaRef": {
            "id": schema["$id"],
            "contentType": schema_ref.get("contentType", "application/vnd.adobe.xed+json;version=1"),
        },
        "fileDescription": copy.deepcopy(
            body.get("fileDescription", {"persisted": True, "containerFormat": "parquet", "format": "parquet"})
        ),
        "enableErrorDiagnostics": bool(body.get("enableErrorDiagnostics", False)),
        "viewId": view_id,
        "files": f"@/dataSetFiles?dataSetId={ds_id}",
        "aspect": "production",
        "state": "DRAFT",
    }
    sb.datasets[ds_id] = dataset
    return Response(201, [f"@/dataSets/{ds_id}"], {"Location": f"{PREFIX}/dataSets/{ds_id}"})


def _filters(req: Request) -> list[Filter]:
    def err(code: str, message: str) -> APIError:
        return _bad(message)

    filters: list[Filter] = []
    for expr in req.q_all("property"):
        flt = parse_filter(expr, err)
        if "." in flt.path or "[" in flt.path:
            raise _bad(f"Only top-level properties can be filtered with property=, got {flt.path}.")
        filters.append(flt)
    for key, values in req.query.items():
        if key in _RESERVED:
            continue
        for value in values:
            negate = value.startswith("!")
            raw = value[1:] if negate else value
            filters.append(Filter(key, "!=" if negate else "==", tuple(v.strip() for v in raw.split(","))))
    return filters


def list_datasets(req: Request) -> Response:
    limit_raw, start_raw = req.q("limit", "20") or "", req.q("start", "0") or ""
    limit, start = whole_number(limit_raw), whole_number(start_raw)
    if not limit:
        raise _bad(f"Invalid limit {limit_raw}: it must be an integer between 1 and 100.")
    if start is None:
        raise _bad(f"Invalid start {start_raw}: it must be a non-negative integer.")
    limit = min(limit, 100)
    filters = _filters(req)
    items = [(i, d) for i, d in req.sb.datasets.items() if all(matches(d, f, glob=True) for f in filters)]
    order_by = req.q("orderBy") or req.q("orderby")
    if order_by:
        # Stable sorts applied last-key-first give "asc:a,desc:b" semantics.
        for clause in reversed(order_by.split(",")):
            direction, _, field_name = clause.partition(":")
            if direction not in ("asc", "desc") or not field_name:
                raise _bad(f"Invalid orderBy {clause}; expected asc:<field> or desc:<field>.")
            key = sort_key(field_name)
            items.sort(key=lambda pair: key(pair[1]), reverse=direction == "desc")
    page = items[start : start + limit]
    properties = req.q("properties")
    return Response(200, {ds_id: _trim(ds, properties) for ds_id, ds in page})


def get_dataset(req: Request, id: str) -> Response:
    ds = req.sb.datasets.get(id)
    if ds is None:
        raise placeholder_error(404, "NotFoundError", f"Dataset {id} was not found.")
    return Response(200, {id: _trim(ds, req.q("properties"))})


def delete_dataset(req: Request, id: str) -> Response:
    if req.sb.datasets.pop(id, None) is None:
        return Response(200, [])
    return Response(200, [f"@/dataSets/{id}"])


def get_batch(req: Request, id: str) -> Response:
    sb = req.sb
    rec = sb.run_records.get(sb.batch_runs.get(id, ""))
    batch = run_engine.render_batch(req.emulator, sb, rec) if rec is not None else None
    if batch is None:
        raise placeholder_error(404, "NotFoundError", f"Batch {id} was not found.")
    return Response(200, {id: batch})


SERVICE = Service(
    name="catalog",
    prefix=PREFIX,
    routes=[
        route("GET", "/dataSets", list_datasets),
        route("POST", "/dataSets", create_dataset, creates=True),
        route("GET", "/dataSets/{id}", get_dataset),
        route("DELETE", "/dataSets/{id}", delete_dataset),
        route("GET", "/batches/{id}", get_batch),
    ],
)
