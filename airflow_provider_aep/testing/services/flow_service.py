"""Flow Service, ``/data/foundation/flowservice`` (aep-api.md §4).

Resources: ``connectionSpecs``, ``flowSpecs`` (read-only), ``connections`` (base
connections), ``sourceConnections``, ``targetConnections``, ``flows``, ``runs``.

* Creates answer 201 ``{"id", "etag"}`` with a ``Location`` header; GET by id answers
  the list envelope ``{"items": [obj]}``; lists page with ``_links.next.href``.
* PATCH needs ``If-Match`` (missing → 1403-400, stale → 1404-412).
* ``POST /flows`` validates the flow spec, the connections it references, each
  transformation's params and the scheduleParams against the spec's JSON schemas
  (digit strings are coerced first, as AEP accepts the tutorial's ``"interval": "30"``),
  the mapping set/version and that the mapping's schema is the target dataset's (1425-400).
* ``GET /connections/{id}/explore`` (Generic OData connections): the emulator's ``source_tables``;
  ``GET /connections/{id}/test`` answers ``{"result": true}``.
* Deleting a base connection used by a flow → 1418-400; a source/target connection → 1447-400.
* ``POST /runs`` starts an on-demand run of a flow scheduled ``once``; the flow's first needs
  ``params.deltaColumn``, later ones may leave it out but not change it (lenient mode: the flow's Copy
  transformation stands in on the first).
* ``POST /runs/{id}/action?op=RE_TRIGGER`` re-runs a failed run: a new run for the same window, answered
  200 with it (``FlowRunItemDTO``); a run that did not fail → 1422-400, a disabled flow → 1444-400.
* ``POST /flows/{id}/action?op=enable|disable``: a disabled flow gets no scheduled runs, and on enabling
  again the slots it missed are skipped.
* Strict mode sends no number where the flow spec types a string (``mappingVersion``); lenient mode coerces.
Error bodies are FLOW problem bodies; codes come from flow-service-errors.md.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from airflow_provider_aep.testing import runs as run_engine
from airflow_provider_aep.testing import specs
from airflow_provider_aep.testing.errors import APIError, flow_error
from airflow_provider_aep.testing.jsonpatch import PatchError, apply_patch
from airflow_provider_aep.testing.query import flow_list, parse_filter
from airflow_provider_aep.testing.routing import Request, Response, Service, route
from airflow_provider_aep.testing.state import SandboxState, new_flow_etag, new_uuid, normalise_etag

PREFIX = "/data/foundation/flowservice"
_DIGITS = re.compile(r"^-?\d+$")
_SOURCE_FORMATS = {"tabular", "parquet_xdm", "delimited", "json", "parquet"}
_FLOW_PATCHABLE = {"name", "description", "scheduleParams", "transformations", "options"}
_CONNECTION_PATCHABLE = {"name", "description", "auth", "params", "data"}
_SPEC_BY_ID = {s["id"]: s for s in specs.CONNECTION_SPECS}
_FLOW_SPEC_BY_ID = {s["id"]: s for s in specs.FLOW_SPECS}


# --------------------------------------------------------------------------- helpers


def _err(req: Request, code: str, status: int, title: str, message: str, **kwargs: Any) -> APIError:
    return flow_error(code, status, title, message, request_id=req.request_id, **kwargs)


def _invalid(req: Request, message: str, code: str = "1100") -> APIError:
    return _err(req, code, 400, "Invalid request", message)


def _not_found(req: Request, kind: str, resource_id: str) -> APIError:
    return _err(
        req,
        "1439",
        404,
        "Resource not found",
        f"The requested {kind} resource {resource_id} is not found. Verify the resource ID before trying again.",
        resource_id=resource_id,
        resource_type=kind,
    )


def _body(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        raise _invalid(
            req, "The request body cannot be null or empty. Please provide a request body and try again.", "1405"
        )
    return req.json_object(lambda m: _invalid(req, m))


def _store(sb: SandboxState, collection: str) -> dict[str, dict[str, Any]]:
    return getattr(sb, collection)


def _audit(req: Request) -> dict[str, Any]:
    emulator = req.emulator
    now_ms = emulator.store.now_ms()
    return {
        "createdAt": now_ms,
        "updatedAt": now_ms,
        "createdBy": emulator.user_id,
        "updatedBy": emulator.user_id,
        "createdClient": req.client_id,
        "updatedClient": req.client_id,
        "sandboxId": req.sb.id,
        "sandboxName": req.sb.name,
        "imsOrgId": emulator.org_id,
    }


def _created(req: Request, collection: str, obj: dict[str, Any]) -> Response:
    return Response(201, {"id": obj["id"], "etag": obj["etag"]}, {"Location": f"{PREFIX}/{collection}/{obj['id']}"})


def _list_error(req: Request) -> Callable[[str, str], APIError]:
    return lambda code, message: _invalid(req, message, code)


def _list(req: Request, items: list[dict[str, Any]], collection: str) -> Response:
    return Response(
        200,
        flow_list(
            items,
            req.query,
            collection=collection,
            default_page_size=req.emulator.page_size,
            max_page_size=req.emulator.max_page_size,
            error=_list_error(req),
        ),
    )


def _one(obj: dict[str, Any]) -> Response:
    return Response(200, {"items": [obj]})


def coerce(instance: Any, schema: Any, *, numbers_to_strings: bool = True) -> Any:
    """Coerce scalars toward the JSON-schema type: ``"30"`` → 30 for integers, as AEP accepts the tutorials'
    digit strings; 0 → ``"0"`` for strings only with ``numbers_to_strings`` (lenient mode: strict AEP refuses)."""
    if not isinstance(schema, dict):
        return instance
    kind = schema.get("type")
    if kind in ("integer", "number") and isinstance(instance, str) and _DIGITS.match(instance.strip()):
        return int(instance.strip())
    if (
        kind == "string"
        and numbers_to_strings
        and isinstance(instance, (int, float))
        and not isinstance(instance, bool)
    ):
        return str(instance)
    if kind == "boolean" and isinstance(instance, str) and instance.lower() in ("true", "false"):
        return instance.lower() == "true"
    if isinstance(instance, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        return {k: coerce(v, props.get(k, {}), numbers_to_strings=numbers_to_strings) for k, v in instance.items()}
    return instance


def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    import jsonschema  # imported lazily: keeps `import airflow_provider_aep.testing` cheap

    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    out = []
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        out.append(f"{where}: {error.message}")
    return out


def _missing_header(req: Request, name: str) -> APIError:
    return _err(
        req,
        "1403",
        400,
        "Header is missing",
        f"The header '{name}' is missing in the request. Please provide the header and try again.",
    )


def _check_if_match(req: Request, obj: dict[str, Any], kind: str) -> None:
    supplied = req.headers.get("If-Match")
    if not supplied:
        raise _missing_header(req, "If-Match")
    if normalise_etag(supplied) != normalise_etag(obj["etag"]):
        raise _err(
            req,
            "1404",
            412,
            "Version not matching",
            f"Supplied version=[{supplied}] does not match the current version on entity=[{obj['etag']}]",
            resource_id=obj["id"],
            resource_type=kind,
        )


def _apply_patch(req: Request, obj: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    operations = req.json()
    if not isinstance(operations, list) or not operations:
        raise _invalid(req, "The request body must be a non-empty JSON Patch array.", "1405")
    for operation in operations:
        if not isinstance(operation, dict):
            raise _invalid(req, "An error has occurred while validating patch instructions: not an object.", "1455")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise _invalid(
                req,
                f"Unsupported operation '{operation.get('op')}' received. Please use one of the supported operation types and try again.",
                "1434",
            )
        top = str(operation.get("path", "")).lstrip("/").split("/")[0]
        if top == "connectionSpec":
            raise _invalid(req, "The connection spec of a connection cannot be updated.", "1414")
        if top not in allowed:
            raise _invalid(
                req,
                f'An error has occurred while validating patch instructions: field "{top}" cannot be patched.',
                "1455",
            )
    try:
        return apply_patch(obj, operations, create_parents=True)
    except PatchError as exc:
        raise _invalid(req, f"An error has occurred while validating patch instructions: {exc}", "1455") from None


def _bump(req: Request, obj: dict[str, Any]) -> None:
    obj["etag"] = new_flow_etag(req.emulator.store.now())
    obj["version"] = obj["etag"]
    obj["updatedAt"] = req.emulator.store.now_ms()
    obj["updatedBy"] = req.emulator.user_id
    obj["updatedClient"] = req.client_id


def _new_resource(req: Request, body: dict[str, Any]) -> dict[str, Any]:
    etag = new_flow_etag(req.emulator.store.now())
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(req, "The field 'name' is required.")
    return {
        "id": new_uuid(),
        **_audit(req),
        "name": name,
        "description": body.get("description", ""),
        "version": etag,
        "etag": etag,
    }


def _spec(req: Request, body: dict[str, Any]) -> dict[str, Any]:
    ref = body.get("connectionSpec")
    spec_id = ref.get("id") if isinstance(ref, dict) else None
    spec = _SPEC_BY_ID.get(spec_id or "")
    if spec is None:
        raise _invalid(
            req, f"The spec ID {spec_id} provided is invalid. Please provide a valid spec ID and try again.", "1413"
        )
    return spec


# --------------------------------------------------------------------------- specs


def list_connection_specs(req: Request) -> Response:
    return _list(req, copy.deepcopy(specs.CONNECTION_SPECS), "connectionSpecs")


def get_connection_spec(req: Request, id: str) -> Response:
    spec = _SPEC_BY_ID.get(id)
    if spec is None:
        raise _not_found(req, "connectionSpecs", id)
    return _one(copy.deepcopy(spec))


def list_flow_specs(req: Request) -> Response:
    return _list(req, copy.deepcopy(specs.FLOW_SPECS), "flowSpecs")


def get_flow_spec(req: Request, id: str) -> Response:
    spec = _FLOW_SPEC_BY_ID.get(id)
    if spec is None:
        raise _not_found(req, "flowSpecs", id)
    return _one(copy.deepcopy(spec))


# --------------------------------------------------------------------------- base connections


def _validate_auth(req: Request, spec: dict[str, Any], auth: Any) -> dict[str, Any] | None:
    auth_specs = spec.get("authSpec") or []
    if not auth_specs:
        return copy.deepcopy(auth) if isinstance(auth, dict) else None
    if not isinstance(auth, dict):
        raise _invalid(req, f"The connection spec {spec['id']} needs an 'auth' object.")
    spec_name = auth.get("specName")
    auth_spec = next((a for a in auth_specs if a["name"] == spec_name), None)
    if auth_spec is None:
        raise _invalid(
            req, f"The auth spec '{spec_name}' could not be found for the connection spec ID {spec['id']}.", "1415"
        )
    problems = validate(auth.get("params", {}), auth_spec["spec"])
    if problems:
        raise _invalid(req, "Invalid auth params: " + "; ".join(problems))
    return copy.deepcopy(auth)


def create_connection(req: Request) -> Response:
    body = _body(req)
    spec = _spec(req, body)
    conn = _new_resource(req, body)
    auth = _validate_auth(req, spec, body.get("auth"))
    conn.update(
        {
            "connectionSpec": {"id": spec["id"], "version": body["connectionSpec"].get("version", "1.0")},
            "state": "enabled",
        }
    )
    if auth is not None:
        conn["auth"] = auth
    req.sb.connections[conn["id"]] = conn
    return _created(req, "connections", conn)


_EXPLORE_OBJECT_TYPES = ("root", "table")
# Rows an explore preview answers (AEP decides how many; its guides show a handful to a few dozen).
EXPLORE_PREVIEW_ROWS = 100


def _explorable(req: Request, id: str) -> dict[str, Any]:
    conn = req.sb.connections.get(id)
    if conn is None:
        raise _not_found(req, "connections", id)
    spec = _SPEC_BY_ID[conn["connectionSpec"]["id"]]
    if "exploreSpec" not in spec:
        raise _invalid(req, f"The connection spec {spec['name']} ({spec['id']}) does not support explore.")
    return conn


def explore_connection(req: Request, id: str) -> Response:
    """``objectType`` root lists the tables, table (with ``object``) describes one, ``preview=true`` adds rows.
    The guides send lowercase values, the spec's enum is uppercase: both are accepted (defects.py)."""
    _explorable(req, id)
    object_type = (req.q("objectType") or "root").lower()
    if object_type not in _EXPLORE_OBJECT_TYPES:
        raise _invalid(
            req,
            f"The objectType '{req.q('objectType')}' is not supported for a tabular source; use one of "
            f"{', '.join(_EXPLORE_OBJECT_TYPES)}.",
        )
    tables = req.emulator.source_tables
    if object_type == "root":
        return Response(200, [t.listing() for t in tables.values()])
    path = req.q("object")
    if not path:
        raise _invalid(req, "The query parameter 'object' is required with objectType=table: the table's path.")
    found = tables.get(path)
    if found is None:
        raise _err(
            req,
            "1439",
            404,
            "Resource not found",
            f"The table '{path}' was not found in the source. Explore with objectType=root for the tables' paths.",
            resource_id=path,
            resource_type="table",
        )
    answer: dict[str, Any] = {"format": "flat", "schema": {"columns": found.describe_columns()}}
    preview = (req.q("preview") or "false").lower()
    if preview not in ("true", "false"):
        raise _invalid(req, f"The query parameter 'preview' must be true or false, got '{req.q('preview')}'.")
    if preview == "true":
        answer["data"] = found.rows(EXPLORE_PREVIEW_ROWS)
    return Response(200, answer)


def test_connection(req: Request, id: str) -> Response:
    if id not in req.sb.connections:
        raise _not_found(req, "connections", id)
    return Response(200, {"result": True})


# --------------------------------------------------------------------------- source / target connections


def _base_connection(req: Request, body: dict[str, Any], *, required: bool) -> dict[str, Any] | None:
    base_id = body.get("baseConnectionId") or body.get("connectionId")
    if base_id is None:
        if required:
            raise _invalid(req, "The field 'baseConnectionId' is required for this connection spec.")
        return None
    base = req.sb.connections.get(base_id)
    if base is None:
        raise _invalid(req, f"The base connection {base_id} does not exist in sandbox {req.sb.name}.")
    return base


def _schema_exists(sb: SandboxState, schema_id: str) -> bool:
    return any(schema_id in (s["$id"], s.get("meta:altId")) for s in sb.schemas.values())


def create_source_connection(req: Request) -> Response:
    body = _body(req)
    spec = _spec(req, body)
    if "sourceSpec" not in spec:
        raise _invalid(req, f"The connection spec {spec['id']} is not a source connection spec.")
    base = _base_connection(req, body, required=bool(spec.get("authSpec")))
    if base is not None and base["connectionSpec"]["id"] != spec["id"]:
        raise _invalid(
            req,
            f"The base connection {base['id']} was created for connection spec {base['connectionSpec']['id']}, not {spec['id']}.",
        )
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    params: dict[str, Any] = body["params"] if isinstance(body.get("params"), dict) else {}
    fmt = data.get("format")
    if fmt not in _SOURCE_FORMATS:
        raise _invalid(req, f"data.format must be one of {sorted(_SOURCE_FORMATS)}, got {fmt!r}.")
    if fmt == "tabular":
        if not (params.get("tableName") or params.get("path")):
            raise _invalid(req, "A tabular source connection needs params.tableName.")
        columns = params.get("columns")
        if columns is not None and (
            not isinstance(columns, list)
            or not all(isinstance(c, dict) and c.get("name") and c.get("type") for c in columns)
        ):
            raise _invalid(req, "params.columns must be an array of objects with 'name' and 'type'.")
    else:
        if not params.get("path"):
            raise _invalid(req, f"A {fmt} source connection needs params.path.")
        if fmt == "parquet_xdm":
            schema_id = (data.get("schema") or {}).get("id")
            if not schema_id or not _schema_exists(req.sb, schema_id):
                raise _invalid(req, f"data.schema.id {schema_id} does not exist in sandbox {req.sb.name}.")
    conn = _new_resource(req, body)
    conn.update(
        {
            "baseConnectionId": base["id"] if base else None,
            "state": "enabled",
            "data": copy.deepcopy(data),
            "params": copy.deepcopy(params),
            "connectionSpec": {"id": spec["id"], "version": body["connectionSpec"].get("version", "1.0")},
        }
    )
    req.sb.sourceConnections[conn["id"]] = conn
    return _created(req, "sourceConnections", conn)


def _effective_spec(sb: SandboxState, conn: dict[str, Any]) -> str:
    """The legacy tutorial labels the target with the protocol spec; the dataset base connection says Data Lake."""
    base = sb.connections.get(conn.get("baseConnectionId") or "")
    if base is not None:
        return base["connectionSpec"]["id"]
    return conn["connectionSpec"]["id"]


def create_target_connection(req: Request) -> Response:
    body = _body(req)
    spec = _spec(req, body)
    base = _base_connection(req, body, required=False)
    effective = base["connectionSpec"]["id"] if base is not None else spec["id"]
    if effective != specs.DATA_LAKE_SPEC_ID:
        raise _invalid(
            req,
            f"The connection spec {spec['id']} cannot be used for a target connection; use the Data Lake spec {specs.DATA_LAKE_SPEC_ID}.",
        )
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    params: dict[str, Any] = body["params"] if isinstance(body.get("params"), dict) else {}
    fmt = data.get("format", "parquet_xdm")
    if fmt != "parquet_xdm":
        raise _invalid(req, f"A Data Lake target connection needs data.format 'parquet_xdm', got {fmt!r}.")
    schema_id = (data.get("schema") or {}).get("id")
    if not schema_id or not _schema_exists(req.sb, schema_id):
        raise _invalid(req, f"data.schema.id {schema_id} does not exist in sandbox {req.sb.name}.")
    dataset_id = params.get("dataSetId")
    dataset = req.sb.datasets.get(dataset_id or "")
    if dataset is None:
        raise _invalid(req, f"params.dataSetId {dataset_id} does not exist in sandbox {req.sb.name}.")
    if dataset["schemaRef"]["id"] != schema_id:
        raise _invalid(req, f"The dataset {dataset_id} uses schema {dataset['schemaRef']['id']}, not {schema_id}.")
    conn = _new_resource(req, body)
    conn.update(
        {
            "baseConnectionId": base["id"] if base else None,
            "state": "enabled",
            "data": {"format": fmt, **{k: copy.deepcopy(v) for k, v in data.items() if k != "format"}},
            "params": copy.deepcopy(params),
            "connectionSpec": {"id": spec["id"], "version": body["connectionSpec"].get("version", "1.0")},
        }
    )
    req.sb.targetConnections[conn["id"]] = conn
    return _created(req, "targetConnections", conn)


# --------------------------------------------------------------------------- generic get/list/patch/delete


def _getter(collection: str) -> Callable[..., Response]:
    def get(req: Request, id: str) -> Response:
        obj = _store(req.sb, collection).get(id)
        if obj is None:
            raise _not_found(req, collection, id)
        return _one(copy.deepcopy(obj))

    return get


def _lister(collection: str) -> Callable[..., Response]:
    def list_(req: Request) -> Response:
        return _list(req, [copy.deepcopy(o) for o in _store(req.sb, collection).values()], collection)

    return list_


def _patcher(collection: str) -> Callable[..., Response]:
    def patch(req: Request, id: str) -> Response:
        store = _store(req.sb, collection)
        obj = store.get(id)
        if obj is None:
            raise _not_found(req, collection, id)
        _check_if_match(req, obj, collection)
        patched = _apply_patch(req, obj, _CONNECTION_PATCHABLE)
        _bump(req, patched)
        store[id] = patched
        return Response(200, {"id": id, "etag": patched["etag"]})

    return patch


def _flows_using(sb: SandboxState, key: str, conn_id: str) -> list[str]:
    return [fid for fid, f in sb.flows.items() if conn_id in f.get(key, [])]


def delete_connection(req: Request, id: str) -> Response:
    sb = req.sb
    if id not in sb.connections:
        raise _not_found(req, "connections", id)
    child_ids = {
        cid
        for store in (sb.sourceConnections, sb.targetConnections)
        for cid, c in store.items()
        if c.get("baseConnectionId") == id
    }
    if any(
        set(f["sourceConnectionIds"]) & child_ids or set(f["targetConnectionIds"]) & child_ids
        for f in sb.flows.values()
    ):
        raise _invalid(
            req,
            f"The base connection with the ID {id} cannot be deleted because the base connection is being used in one "
            "or more flows. Please ensure that corresponding flows are deleted before deleting a base connection.",
            "1418",
        )
    del sb.connections[id]
    return Response(204)


def _connection_deleter(collection: str, key: str) -> Callable[..., Response]:
    def delete(req: Request, id: str) -> Response:
        store = _store(req.sb, collection)
        if id not in store:
            raise _not_found(req, collection, id)
        if _flows_using(req.sb, key, id):
            raise _invalid(req, f"Found active flows containing id {id}.", "1447")
        del store[id]
        return Response(204)

    return delete


# --------------------------------------------------------------------------- flows


def _validate_flow(req: Request, flow: dict[str, Any]) -> dict[str, Any]:
    """Validate references, transformations and schedule; returns the coerced scheduleParams."""
    sb = req.sb
    spec_ref = flow.get("flowSpec")
    spec = _FLOW_SPEC_BY_ID.get(spec_ref.get("id", "") if isinstance(spec_ref, dict) else "")
    if spec is None:
        raise _invalid(
            req, f"The spec ID {spec_ref} provided is invalid. Please provide a valid spec ID and try again.", "1413"
        )

    source_ids: list[str] = flow.get("sourceConnectionIds") or []
    target_ids: list[str] = flow.get("targetConnectionIds") or []
    for key in ("sourceConnectionIds", "targetConnectionIds"):
        ids = flow.get(key)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _invalid(req, f"'{key}' must be a non-empty array of connection ids.")
    for sid in source_ids:
        conn = sb.sourceConnections.get(sid)
        if conn is None:
            raise _invalid(req, f"The source connection {sid} does not exist in sandbox {sb.name}.")
        if conn["connectionSpec"]["id"] not in spec["sourceConnectionSpecIds"]:
            raise _invalid(
                req,
                f"The flow spec {spec['name']} does not support the source connection spec {conn['connectionSpec']['id']}.",
            )
    targets = []
    for tid in target_ids:
        conn = sb.targetConnections.get(tid)
        if conn is None:
            raise _invalid(req, f"The target connection {tid} does not exist in sandbox {sb.name}.")
        if _effective_spec(sb, conn) not in spec["targetConnectionSpecIds"]:
            raise _invalid(
                req,
                f"The flow spec {spec['name']} does not support the target connection spec {conn['connectionSpec']['id']}.",
            )
        targets.append(conn)

    transformation_specs = {t["name"]: t["spec"] for t in spec.get("transformationSpecs", [])}
    transformations = flow.get("transformations", [])
    if not isinstance(transformations, list):
        raise _invalid(req, "'transformations' must be an array.")
    for i, transformation in enumerate(transformations):
        if not isinstance(transformation, dict) or transformation.get("name") not in transformation_specs:
            raise _invalid(
                req, f"transformations[{i}]: unknown transformation; expected one of {sorted(transformation_specs)}."
            )
        schema = transformation_specs[transformation["name"]]
        params = coerce(transformation.get("params", {}), schema, numbers_to_strings=not req.emulator.strict)
        problems = validate(params, schema)
        if problems:
            raise _invalid(req, f"transformations[{i}] ({transformation['name']}) is invalid: " + "; ".join(problems))
        if transformation["name"] == "Mapping" and params.get("mappingId"):
            _check_mapping(req, params, targets)

    options = flow.get("options")
    if options is not None and "optionSpec" in spec:
        problems = validate(coerce(options, spec["optionSpec"]["spec"]), spec["optionSpec"]["spec"])
        if problems:
            raise _invalid(req, "options are invalid: " + "; ".join(problems))

    schedule = flow.get("scheduleParams")
    if not isinstance(schedule, dict):
        raise _invalid(req, "'scheduleParams' is required.")
    schedule_schema = spec["scheduleSpec"]["spec"]
    schedule = coerce(schedule, schedule_schema)
    problems = validate(schedule, schedule_schema)
    if problems:
        raise _invalid(req, "scheduleParams are invalid: " + "; ".join(problems))
    return schedule


def _check_mapping(req: Request, params: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    sb = req.sb
    mapping_id = params["mappingId"]
    version = params.get("mappingVersion", "0")
    versions = sb.mappingSets.get(mapping_id)
    if versions is None:
        raise _invalid(
            req,
            f"Error while validating mapping with id {mapping_id}, version {version}. This could be because of "
            "inadequate permissions on mapped fields. Please check your mapping or contact your admin.",
            "1419",
        )
    mapping = next((v for v in versions if str(v["version"]) == str(version)), None)
    if mapping is None:
        raise _invalid(req, "Invalid Mapping Version in request. Please provide correct mapping version.", "1412")
    for target in targets:
        dataset_id = target.get("params", {}).get("dataSetId", "")
        dataset = sb.datasets.get(dataset_id)
        dataset_schema = dataset["schemaRef"]["id"] if dataset else target.get("data", {}).get("schema", {}).get("id")
        if mapping["xdmSchema"] != dataset_schema:
            raise _invalid(
                req,
                f"Error while matching schema in target dataset {dataset_id} with schema in mapping {mapping_id}. "
                "Schema with same id and version must be used in both mapping and target dataset.",
                "1425",
            )


def _inherited(sb: SandboxState, flow: dict[str, Any]) -> dict[str, Any]:
    def describe(conn: dict[str, Any] | None, conn_id: str) -> dict[str, Any]:
        if conn is None:
            return {"id": conn_id}
        out: dict[str, Any] = {"id": conn_id, "connectionSpec": dict(conn["connectionSpec"])}
        base = sb.connections.get(conn.get("baseConnectionId") or "")
        if base is not None:
            out["baseConnection"] = {"id": base["id"], "connectionSpec": dict(base["connectionSpec"])}
        return out

    return {
        "sourceConnections": [describe(sb.sourceConnections.get(i), i) for i in flow["sourceConnectionIds"]],
        "targetConnections": [describe(sb.targetConnections.get(i), i) for i in flow["targetConnectionIds"]],
        "properties": {"isSourceFlow": True, "isDestinationFlow": False},
    }


def render_flow(emulator: Any, sb: SandboxState, flow: dict[str, Any]) -> dict[str, Any]:
    """A flow as GET returns it, with ``lastRunDetails`` computed from its runs."""
    run_engine.materialise(emulator, sb, flow["id"])
    out = copy.deepcopy(flow)
    details = run_engine.last_run_details(emulator, sb, flow["id"])
    if details is not None:
        out["lastRunDetails"] = details
    return out


def create_flow(req: Request) -> Response:
    body = _body(req)
    if "state" in body:
        raise _invalid(req, "`State` is not allowed in the create flow request.", "1410")
    flow = _new_resource(req, body)
    schedule = _validate_flow(req, body)
    now = req.emulator.store.now()
    flow.update(
        {
            "flowSpec": {"id": body["flowSpec"]["id"], "version": body["flowSpec"].get("version", "1.0")},
            "state": "enabled",
            "sourceConnectionIds": list(body["sourceConnectionIds"]),
            "targetConnectionIds": list(body["targetConnectionIds"]),
            "transformations": copy.deepcopy(body.get("transformations", [])),
            "scheduleParams": schedule,
            "runs": f"/runs?property=flowId=={flow['id']}",
            "lastOperation": {
                "started": flow["createdAt"],
                "updated": flow["createdAt"],
                "percentCompleted": 100,
                "status": {"value": "completed", "errors": []},
                "ops": [],
                "operation": "create",
            },
        }
    )
    if body.get("options") is not None:
        flow["options"] = copy.deepcopy(body["options"])
    flow["inheritedAttributes"] = _inherited(req.sb, flow)
    req.sb.flows[flow["id"]] = flow
    req.sb.flow_schedules[flow["id"]] = run_engine.make_schedule(schedule, now, req.emulator.time_scale)
    return _created(req, "flows", flow)


def get_flow(req: Request, id: str) -> Response:
    flow = req.sb.flows.get(id)
    if flow is None:
        raise _not_found(req, "flows", id)
    return _one(render_flow(req.emulator, req.sb, flow))


def list_flows(req: Request) -> Response:
    sb = req.sb
    return _list(req, [render_flow(req.emulator, sb, f) for f in sb.flows.values()], "flows")


def patch_flow(req: Request, id: str) -> Response:
    sb = req.sb
    flow = sb.flows.get(id)
    if flow is None:
        raise _not_found(req, "flows", id)
    _check_if_match(req, flow, "flows")
    patched = _apply_patch(req, flow, _FLOW_PATCHABLE)
    schedule = _validate_flow(req, patched)
    patched["scheduleParams"] = schedule
    run_engine.materialise(req.emulator, sb, id)  # runs due under the old schedule still happen
    if schedule != flow["scheduleParams"]:
        sb.flow_schedules[id] = run_engine.make_schedule(schedule, req.emulator.store.now(), req.emulator.time_scale)
    _bump(req, patched)
    patched["lastOperation"] = {**patched["lastOperation"], "updated": patched["updatedAt"], "operation": "update"}
    sb.flows[id] = patched
    return Response(200, {"id": id, "etag": patched["etag"]})


def flow_action(req: Request, id: str) -> Response:
    sb = req.sb
    flow = sb.flows.get(id)
    if flow is None:
        raise _not_found(req, "flows", id)
    op = (req.q("op") or "").lower()
    if op not in ("enable", "disable"):
        raise _invalid(
            req,
            f"Unsupported operation '{req.q('op')}' received. Please use one of the supported operation types and try again.",
            "1434",
        )
    if req.headers.get("If-Match"):  # optional on actions, but checked when sent
        _check_if_match(req, flow, "flows")
    run_engine.materialise(req.emulator, sb, id)
    target_state = "enabled" if op == "enable" else "disabled"
    if flow["state"] != target_state:
        flow["state"] = target_state
        sched = sb.flow_schedules.get(id)
        now = req.emulator.store.now()
        if op == "enable" and sched is not None and sched.next_due is not None and sched.next_due < now:
            if sched.interval_real:
                missed = int((now - sched.next_due) // sched.interval_real) + 1
                sched.next_due += missed * sched.interval_real
            else:
                sched.next_due = now
        _bump(req, flow)
        flow["lastOperation"] = {**flow["lastOperation"], "updated": flow["updatedAt"], "operation": op}
    return Response(200, {"id": id, "etag": flow["etag"]})


def delete_flow(req: Request, id: str) -> Response:
    sb = req.sb
    if id not in sb.flows:
        raise _not_found(req, "flows", id)
    run_engine.materialise(req.emulator, sb, id)
    del sb.flows[id]
    sb.flow_schedules.pop(id, None)
    return Response(204)


# --------------------------------------------------------------------------- runs


def list_runs(req: Request) -> Response:
    sb, emulator = req.sb, req.emulator
    # Narrow to the flows or runs named in flowId== / id== filters before rendering: pollers ask for one
    # flow's runs, and batching triggers for a hundred runs by id; rendering every run would dominate.
    flow_ids: set[str] | None = None
    run_ids: set[str] | None = None
    error = _list_error(req)
    for expr in req.q_all("property"):
        flt = parse_filter(expr, error)
        if flt.path == "flowId" and flt.op == "==":
            flow_ids = set(flt.values) if flow_ids is None else flow_ids & set(flt.values)
        elif flt.path == "id" and flt.op == "==":
            run_ids = set(flt.values) if run_ids is None else run_ids & set(flt.values)
    if flow_ids is None and run_ids is None:
        run_engine.materialise_all(emulator, sb)
        record_ids = list(sb.run_records)
    elif flow_ids is None:
        record_ids = [r for r in run_ids or () if r in sb.run_records]
        for fid in {sb.run_records[r].flow_id for r in record_ids}:
            run_engine.materialise(emulator, sb, fid)
    else:
        record_ids = []
        for fid in flow_ids:
            run_engine.materialise(emulator, sb, fid)
            record_ids.extend(sb.runs_by_flow.get(fid, []))
        if run_ids is not None:
            record_ids = [r for r in record_ids if r in run_ids]
    records = sorted((sb.run_records[r] for r in record_ids), key=lambda r: r.created)
    return _list(req, [run_engine.render_run(emulator, sb, r) for r in records], "runs")


def get_run(req: Request, id: str) -> Response:
    sb = req.sb
    rec = sb.run_records.get(id)
    if rec is None:
        raise _not_found(req, "runs", id)
    run_engine.materialise(req.emulator, sb, rec.flow_id)  # runs of its flow that came due first take outcomes first
    return _one(run_engine.render_run(req.emulator, sb, rec))


def create_run(req: Request) -> Response:
    body = _body(req)
    sb, emulator = req.sb, req.emulator
    flow_id = body.get("flowId")
    if not flow_id:
        raise _invalid(req, "The flow ID cannot be null or empty. Please update the flow ID and try again.", "1446")
    flow = sb.flows.get(flow_id)
    if flow is None:
        raise _invalid(req, f"Flow not found with id {flow_id}.", "1430")
    if flow["scheduleParams"].get("frequency") != "once":
        raise _invalid(
            req,
            f"On-demand runs are only supported for flows scheduled with frequency 'once'; flow {flow_id} is scheduled '{flow['scheduleParams'].get('frequency')}'.",
        )
    if flow["state"] != "enabled":
        raise _invalid(req, f"Flow {flow_id} is not in expected state enabled.", "1444")
    spec = _FLOW_SPEC_BY_ID[flow["flowSpec"]["id"]]
    run_schema = spec["runSpec"]["spec"]
    params = coerce(body.get("params", {}), run_schema)
    problems = validate(params, run_schema)
    if problems:
        raise _invalid(req, "params are invalid: " + "; ".join(problems))
    sched = sb.flow_schedules[flow_id]
    delta = (params.get("deltaColumn") or {}).get("name")
    known = sched.on_demand_delta_column
    if known is None and not emulator.strict:  # the old leniency: the flow's Copy transformation stood in
        known = next(
            (
                t.get("params", {}).get("deltaColumn", {}).get("name")
                for t in flow["transformations"]
                if t.get("name") == "Copy"
            ),
            None,
        )
    if known is None and delta is None:
        raise _invalid(
            req,
            "params.deltaColumn is required on the first run of a flow: send params.deltaColumn.name, the column "
            "whose values tell new rows apart.",
        )
    if delta is not None and known is not None and delta != known:
        raise _invalid(req, f"params.deltaColumn cannot change after the first run (was {known!r}, got {delta!r}).")
    sched.on_demand_delta_column = known or delta
    run_engine.materialise(emulator, sb, flow_id)
    rec = run_engine.create_run(
        emulator,
        sb,
        flow_id,
        emulator.store.now(),
        window=(float(params["windowStartTime"]), float(params["windowEndTime"])),
        on_demand=True,
        params=params,
    )
    run = run_engine.render_run(emulator, sb, rec)
    return Response(201, {"items": [{"id": rec.id, "etag": run["etag"]}]}, {"Location": f"{PREFIX}/runs/{rec.id}"})


def run_action(req: Request, id: str) -> Response:
    """``POST /runs/{id}/action?op=RE_TRIGGER``: a new run of a failed run's flow, for the same window."""
    sb, emulator = req.sb, req.emulator
    rec = sb.run_records.get(id)
    if rec is None:
        raise _not_found(req, "runs", id)
    op = req.q("op") or ""
    if op.upper() != "RE_TRIGGER":
        raise _invalid(
            req,
            f"Unsupported operation '{op}' received. Please use one of the supported operation types and try again.",
            "1434",
        )
    flow = sb.flows.get(rec.flow_id)
    if flow is None:
        raise _invalid(req, f"Flow not found with id {rec.flow_id}.", "1430")
    if flow["state"] != "enabled":
        raise _invalid(req, f"Flow {rec.flow_id} is not in expected state enabled.", "1444")
    status = run_engine.status_of(emulator, sb, rec)
    if status != "failed":
        raise _invalid(
            req,
            f"The action re_trigger cannot be applied on the current state {status}: only a failed run can be "
            "re-triggered.",
            "1422",
        )
    if req.headers.get("If-Match"):  # optional on actions, but checked when sent
        _check_if_match(req, {"id": id, "etag": run_engine.render_run(emulator, sb, rec)["etag"]}, "runs")
    run_engine.materialise(emulator, sb, rec.flow_id)
    rerun = run_engine.create_run(
        emulator,
        sb,
        rec.flow_id,
        emulator.store.now(),
        window=(rec.window_start, rec.window_end),
        on_demand=rec.on_demand,
        params=copy.deepcopy(rec.params),
        retrigger_of=rec.id,
    )
    return Response(200, run_engine.render_run(emulator, sb, rerun))


def _not_found_route(req: Request) -> APIError:
    parts = req.path.strip("/").split("/")
    kind = parts[0] if parts and parts[0] else "resource"
    return _not_found(req, kind, parts[1] if len(parts) > 1 else req.path)


SERVICE = Service(
    name="flowservice",
    prefix=PREFIX,
    requires_sandbox_header=True,
    not_found=_not_found_route,
    bad_request=_invalid,
    missing_header=_missing_header,
    routes=[
        route("GET", "/connectionSpecs", list_connection_specs),
        route("GET", "/connectionSpecs/{id}", get_connection_spec),
        route("GET", "/flowSpecs", list_flow_specs),
        route("GET", "/flowSpecs/{id}", get_flow_spec),
        route("GET", "/connections", _lister("connections")),
        route("POST", "/connections", create_connection, creates=True),
        route("GET", "/connections/{id}", _getter("connections")),
        route("PATCH", "/connections/{id}", _patcher("connections")),
        route("DELETE", "/connections/{id}", delete_connection),
        route("GET", "/connections/{id}/explore", explore_connection),
        route("GET", "/connections/{id}/test", test_connection),
        route("GET", "/sourceConnections", _lister("sourceConnections")),
        route("POST", "/sourceConnections", create_source_connection, creates=True),
        route("GET", "/sourceConnections/{id}", _getter("sourceConnections")),
        route("PATCH", "/sourceConnections/{id}", _patcher("sourceConnections")),
        route("DELETE", "/sourceConnections/{id}", _connection_deleter("sourceConnections", "sourceConnectionIds")),
        route("GET", "/targetConnections", _lister("targetConnections")),
        route("POST", "/targetConnections", create_target_connection, creates=True),
        route("GET", "/targetConnections/{id}", _getter("targetConnections")),
        route("PATCH", "/targetConnections/{id}", _patcher("targetConnections")),
        route("DELETE", "/targetConnections/{id}", _connection_deleter("targetConnections", "targetConnectionIds")),
        route("GET", "/flows", list_flows),
        route("POST", "/flows", create_flow, creates=True),
        route("GET", "/flows/{id}", get_flow),
        route("PATCH", "/flows/{id}", patch_flow),
        route("DELETE", "/flows/{id}", delete_flow),
        route("POST", "/flows/{id}/action", flow_action),
        route("GET", "/runs", list_runs),
        route("POST", "/runs", create_run, creates=True),
        route("GET", "/runs/{id}", get_run),
        route("POST", "/runs/{id}/action", run_action, creates=True),
    ],
)
