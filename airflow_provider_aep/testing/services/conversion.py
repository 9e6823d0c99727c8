"""Data Prep (conversion) service, ``/data/foundation/conversion`` (aep-api.md §5): mapping sets.

Create answers **200** ``{id, version: 0, createdDate, modifiedDate, createdBy, modifiedBy}``
and accepts both bodies:

* legacy (protocols tutorial): ``xdmSchema`` + mappings with ``sourceAttribute``/``destinationXdmPath``;
* current: ``outputSchema.schemaRef.id`` + mappings with ``sourceType``/``source``/``destination``.

Stored mapping sets echo both vocabularies, as GET does on AEP. ``PUT`` makes a new
version; ``GET ?version=N`` reads an old one; ``POST /mappingSets/validate`` checks each mapping (its form and
that its destination is a field of the output schema); ``POST /mappingSets/preview`` maps sample rows; ``DELETE`` (undocumented, aepp only): 405, 404 or 204, as the
emulator's ``mapping_set_delete`` says.
"""

from __future__ import annotations

import copy
from typing import Any

from airflow_provider_aep.testing.errors import APIError, method_not_allowed, placeholder_error
from airflow_provider_aep.testing.expressions import NotEvaluated, evaluate, not_in_row
from airflow_provider_aep.testing.query import whole_number
from airflow_provider_aep.testing.routing import Request, Response, Service, route
from airflow_provider_aep.testing.services import schema_registry
from airflow_provider_aep.testing.state import new_hex
from airflow_provider_aep.utils.xdm_paths import xdm_path_exists

PREFIX = "/data/foundation/conversion"
_SOURCE_TYPES = {"ATTRIBUTE", "EXPRESSION", "STATIC", "text/x.schema-path", "text/x.aep-expression"}


def _bad(message: str) -> APIError:
    return placeholder_error(400, "BadRequestError", message)


def _not_found(mapping_id: str) -> APIError:
    return placeholder_error(404, "NotFoundError", f"Mapping set {mapping_id} was not found.")


def _normalise_mapping(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad(f"mappings[{index}] must be an object.")
    source = raw.get("source", raw.get("sourceAttribute"))
    destination = raw.get("destination", raw.get("destinationXdmPath"))
    if not isinstance(source, str) or not source:
        raise _bad(f"mappings[{index}] needs a source (or sourceAttribute).")
    if not isinstance(destination, str) or not destination:
        raise _bad(f"mappings[{index}] needs a destination (or destinationXdmPath).")
    source_type = raw.get("sourceType", "ATTRIBUTE")
    if source_type not in _SOURCE_TYPES:
        raise _bad(f"mappings[{index}].sourceType {source_type} is not one of ATTRIBUTE, EXPRESSION, STATIC.")
    if source_type == "ATTRIBUTE":
        source_type = "text/x.schema-path"
    elif source_type == "EXPRESSION":
        source_type = "text/x.aep-expression"
    return _present(
        {
            "id": raw.get("id") or new_hex(16),
            "version": 0,
            "sourceType": source_type,
            "source": source,
            "destination": destination,
            "sourceAttribute": source,
            "destinationXdmPath": destination,
            "name": raw.get("name", destination),
            "description": raw.get("description"),
            "identity": bool(raw.get("identity", False)),
            "identityGroup": raw.get("identityGroup"),
            "namespaceCode": raw.get("namespaceCode"),
        }
    )


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Unset fields are left out of answers, not sent as null (the spec types none of them nullable)."""
    return {k: v for k, v in fields.items() if v is not None}


def _schema_of(req: Request, body: dict[str, Any]) -> tuple[str, str]:
    output = body.get("outputSchema")
    schema_id = body.get("xdmSchema")
    content_type = "application/vnd.adobe.xed-full+json;version=1"
    if isinstance(output, dict) and isinstance(output.get("schemaRef"), dict):
        schema_id = output["schemaRef"].get("id")
        content_type = output["schemaRef"].get("contentType", content_type)
    if not isinstance(schema_id, str) or not schema_id:
        raise _bad("An output schema is required: outputSchema.schemaRef.id (or xdmSchema).")
    schema = next((s for s in req.sb.schemas.values() if schema_id in (s["$id"], s.get("meta:altId"))), None)
    if schema is None:
        raise _bad(f"Schema {schema_id} does not exist in sandbox {req.sb.name}.")
    return schema["$id"], content_type


def _build(
    req: Request, body: dict[str, Any], *, mapping_id: str, version: int, created: dict[str, Any] | None
) -> dict[str, Any]:
    schema_id, content_type = _schema_of(req, body)
    mappings = body.get("mappings")
    if not isinstance(mappings, list) or not mappings:
        raise _bad("mappings must be a non-empty array.")
    now_ms = req.emulator.store.now_ms()
    user = req.emulator.user_id
    return _present(
        {
            "id": mapping_id,
            "version": version,
            "name": body.get("name"),
            "description": body.get("description"),
            "createdDate": created["createdDate"] if created else now_ms,
            "modifiedDate": now_ms,
            "createdBy": created["createdBy"] if created else user,
            "modifiedBy": user,
            "inputSchema": copy.deepcopy(body.get("inputSchema")),
            "outputSchema": {"schemaRef": {"id": schema_id, "contentType": content_type}},
            "schemaRef": {"id": schema_id, "contentType": content_type},
            "xdmSchema": schema_id,
            "xdmVersion": body.get("xdmVersion", "1.0"),
            "mappings": [_normalise_mapping(m, i) for i, m in enumerate(mappings)],
            "status": "PUBLISHED",
            "allowNullValues": bool(body.get("allowNullValues", False)),
            "strictMapping": bool(body.get("strictMapping", False)),
        }
    )


def _header(ms: dict[str, Any]) -> dict[str, Any]:
    return {k: ms[k] for k in ("id", "version", "createdDate", "modifiedDate", "createdBy", "modifiedBy")}


def create_mapping_set(req: Request) -> Response:
    body = req.json_object(_bad)
    mapping_id = new_hex(16)
    ms = _build(req, body, mapping_id=mapping_id, version=0, created=None)
    req.sb.mappingSets[mapping_id] = [ms]
    return Response(200, _header(ms))


def update_mapping_set(req: Request, id: str) -> Response:
    versions = req.sb.mappingSets.get(id)
    if versions is None:
        raise _not_found(id)
    body = req.json_object(_bad)
    ms = _build(req, body, mapping_id=id, version=versions[-1]["version"] + 1, created=versions[0])
    versions.append(ms)
    return Response(200, copy.deepcopy(ms))


def get_mapping_set(req: Request, id: str) -> Response:
    versions = req.sb.mappingSets.get(id)
    if versions is None:
        raise _not_found(id)
    wanted = req.q("version")
    if wanted is None:
        return Response(200, copy.deepcopy(versions[-1]))
    match = next((v for v in versions if str(v["version"]) == wanted), None)
    if match is None:
        raise placeholder_error(404, "NotFoundError", f"Mapping set {id} has no version {wanted}.")
    return Response(200, copy.deepcopy(match))


def get_mappings(req: Request, id: str) -> Response:
    versions = req.sb.mappingSets.get(id)
    if versions is None:
        raise _not_found(id)
    return Response(200, copy.deepcopy(versions[-1]["mappings"]))


def list_mapping_sets(req: Request) -> Response:
    start_raw, limit_raw = req.q("start"), req.q("limit")
    if start_raw is None or limit_raw is None:
        raise _bad("Both 'start' and 'limit' query parameters are required.")
    start, limit = whole_number(start_raw), whole_number(limit_raw)
    if start is None or not limit:
        raise _bad("'start' must be >= 0 and 'limit' >= 1.")
    items = [v[-1] for v in req.sb.mappingSets.values()]
    name = req.q("name")
    if name is not None:
        items = [m for m in items if m.get("name") == name]
    order_by = req.q("orderBy") or req.q("orderby")
    if order_by:
        field_name = {"createdDate": "createdDate", "updatedDate": "modifiedDate", "modifiedDate": "modifiedDate"}.get(
            order_by.lstrip("+-"), order_by.lstrip("+-")
        )
        items = sorted(
            items, key=lambda m: (m.get(field_name) is None, m.get(field_name) or 0), reverse=order_by.startswith("-")
        )
    page = items[start : start + limit]
    return Response(200, {"data": copy.deepcopy(page), "_page": {"count": len(items), "limit": limit}})


def delete_mapping_set(req: Request, id: str) -> Response:
    """Undocumented (aepp sends it): answered as the emulator's ``mapping_set_delete`` says."""
    answer = req.emulator.mapping_set_delete
    if answer == "405":
        raise method_not_allowed(req.method, PREFIX + req.path)
    if answer == "404":
        raise placeholder_error(404, "NotFoundError", f"No route for {req.method} {PREFIX + req.path}.")
    if req.sb.mappingSets.pop(id, None) is None:
        raise _not_found(id)
    return Response(204)


def _schema_fields(req: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The output schema, expanded (its class's and field groups' fields merged in)."""
    schema_id, _ = _schema_of(req, body)
    schema = next(s for s in req.sb.schemas.values() if s["$id"] == schema_id)
    return {**schema, "properties": schema_registry.full_properties(req, schema)}


def _mapping_errors(index: int, raw: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """What Data Prep reports of one mapping, as its ``TransformErrorInfo`` objects: a malformed mapping, an
    expression that does not parse, a destination the output schema lacks."""
    try:
        mapping = _normalise_mapping(raw, index)
    except APIError as exc:
        fields = raw if isinstance(raw, dict) else {}
        return [
            _present(
                {
                    "source": fields.get("source", fields.get("sourceAttribute")),
                    "destination": fields.get("destination", fields.get("destinationXdmPath")),
                    "exception": exc.body.get("detail"),
                }
            )
        ]
    problems = []
    if mapping["sourceType"] == "text/x.aep-expression" and not _balanced(mapping["source"]):
        problems.append(f"The expression {mapping['source']} cannot be parsed: unbalanced parentheses or quotes.")
    if not xdm_path_exists([schema], mapping["destination"]):
        problems.append(
            f"The destination path {mapping['destination']} does not exist in the output schema {schema['$id']}."
        )
    return [{"source": mapping["source"], "destination": mapping["destination"], "exception": p} for p in problems]


def _balanced(expression: str) -> bool:
    depth, quote = 0, None
    for char in expression:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                return False
    return depth == 0 and quote is None


def _mappings_of(body: dict[str, Any]) -> list[Any]:
    mappings = body.get("mappings")
    if not isinstance(mappings, list) or not mappings:
        raise _bad("mappings must be a non-empty array.")
    return mappings


def validate_mapping_set(req: Request) -> Response:
    """One entry per mapping, in order: SUCCESS with ``errors`` null, or FAILED with what is wrong."""
    body = req.json_object(_bad)
    mappings = _mappings_of(body)
    schema = _schema_fields(req, body)
    out = []
    for i, m in enumerate(mappings):
        errors = _mapping_errors(i, m, schema)
        out.append({"status": "FAILED", "errors": errors} if errors else {"status": "SUCCESS", "errors": None})
    return Response(200, {"validationResponse": out})


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _mapped_value(mapping: dict[str, Any], row: dict[str, Any]) -> Any:
    if mapping["sourceType"] == "text/x.aep-expression":
        return evaluate(mapping["source"], row)
    if mapping["sourceType"] == "STATIC":
        return mapping["source"]
    if mapping["source"] not in row:
        raise not_in_row(mapping["source"])
    return row[mapping["source"]]


def preview_mapping_set(req: Request) -> Response:
    """Each row of ``data`` through the mapping set (expressions: :mod:`~airflow_provider_aep.testing.expressions`):
    one ``{data, errors}`` per row, in order
    (the guide's array; the spec says one object, defects.py). A mapping set that does not validate is a 400."""
    body = req.json_object(_bad)
    rows, mapping_set = body.get("data"), body.get("mappingSet")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise _bad("data must be a non-empty array of objects (the rows to map).")
    if not isinstance(mapping_set, dict):
        raise _bad("mappingSet is required: the mapping set to preview.")
    mappings = _mappings_of(mapping_set)
    schema = _schema_fields(req, mapping_set)
    problems = [e["exception"] for i, m in enumerate(mappings) for e in _mapping_errors(i, m, schema)]
    if problems:
        raise _bad("The mapping set is invalid: " + " ".join(problems))
    normalised = [_normalise_mapping(m, i) for i, m in enumerate(mappings)]
    out = []
    for row in rows:
        mapped: dict[str, Any] = {}
        errors = []
        for m in normalised:
            try:
                _put(mapped, m["destination"], _mapped_value(m, row))
            except NotEvaluated as exc:
                errors.append(
                    {
                        "source": m["source"],
                        "destination": m["destination"],
                        "columnName": m["source"],
                        "exception": str(exc),
                    }
                )
        out.append({"data": mapped, "errors": errors or None})
    return Response(200, out)


SERVICE = Service(
    name="conversion",
    prefix=PREFIX,
    routes=[
        route("GET", "/mappingSets", list_mapping_sets),
        route("POST", "/mappingSets", create_mapping_set, creates=True),
        route("POST", "/mappingSets/validate", validate_mapping_set),
        route("POST", "/mappingSets/preview", preview_mapping_set),
        route("GET", "/mappingSets/{id}", get_mapping_set),
        route("PUT", "/mappingSets/{id}", update_mapping_set),
        route("DELETE", "/mappingSets/{id}", delete_mapping_set),
        route("GET", "/mappingSets/{id}/mappings", get_mappings),
    ],
)
