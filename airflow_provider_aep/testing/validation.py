"""Strict mode: each call checked against what Adobe's published API specs require of it.

One :class:`Rule` per route (keyed by service, method and route template): the headers the operation
requires, and small JSON schemas of its query and JSON body. A rule states only what Adobe's OpenAPI spec
for that operation states (required fields, field types), for the fields the emulator reads; the test suite's
conformance layer (``tests/conformance``) proves every rule agrees with Adobe's spec. A request that breaks a
rule is answered 400 in the service's own error shape, naming the field, before any handler runs.

Where Adobe's guides and the spec disagree, rules follow the guides (the specs' known defects, in
:mod:`airflow_provider_aep.testing.defects`): e.g. Flow Service's ``op`` values are case-insensitive and
``scheduleParams.interval`` may be an integer.

With Adobe's spec files at hand (``AEPEmulator(openapi_dir=...)`` or ``AEP_OPENAPI_DIR``), requests are
also validated against them, less the known defects (:mod:`airflow_provider_aep.testing.openapi`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.testing.errors import APIError, placeholder_error

if TYPE_CHECKING:  # pragma: no cover
    from airflow_provider_aep.testing.routing import Request, Route, Service

JSON_TYPES = ("application/json", "application/json-patch+json")


@dataclass(frozen=True)
class Rule:
    """What one operation requires: ``headers`` present, ``query`` and ``body`` valid for their JSON schemas.

    ``query`` sees each parameter's first value, as a string. A ``body`` schema makes the body required.
    """

    headers: tuple[str, ...] = ()
    query: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None
    validators: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _object(properties: Mapping[str, Any] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if properties:
        schema["properties"] = dict(properties)
    if required:
        schema["required"] = list(required)
    return schema


def _array(items: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": dict(items)}


_STRING = {"type": "string"}
_STRINGS = _array(_STRING)
_OBJECT = {"type": "object"}
_DIGITS = {"type": "string", "pattern": r"^[0-9]+$"}

# Flow Service
_SPEC_REF = _object({"id": _STRING, "version": _STRING}, required=("id", "version"))
_FLOW_PATCH = _array(_object({"op": _STRING, "path": _STRING}, required=("op", "path")))
_CONNECTION = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "auth": _object({"specName": _STRING, "params": _OBJECT}, required=("specName",)),
        "connectionSpec": _SPEC_REF,
    },
    required=("connectionSpec",),
)
_SOURCE_CONNECTION = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "baseConnectionId": _STRING,
        "data": _object({"format": _STRING}),
        "params": _OBJECT,
        "connectionSpec": _SPEC_REF,
    },
    required=("connectionSpec", "data", "name"),
)
_TARGET_CONNECTION = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "baseConnectionId": _STRING,
        "data": _object({"format": _STRING, "schema": _object({"id": _STRING, "version": _STRING})}),
        "params": _object({"dataSetId": _STRING}),
        "connectionSpec": _object({"id": _STRING, "version": _STRING}),
    },
    required=("connectionSpec", "data"),
)
_FLOW = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "flowSpec": _object({"id": _STRING, "version": _STRING}),
        "sourceConnectionIds": _STRINGS,
        "targetConnectionIds": _STRINGS,
        "transformations": _array(
            _object(
                {
                    "name": _STRING,
                    "params": _object({"mappingId": _STRING, "mappingVersion": _STRING}),
                },
                required=("name", "params"),
            )
        ),
        # startTime and interval: the tutorials send digit strings, the spec integers (defects.py).
        "scheduleParams": _object({"frequency": _STRING, "backfill": {"type": "boolean"}}),
    },
    required=("flowSpec",),
)
_RUN = _object({"flowId": _STRING, "params": _OBJECT})

# Catalog, Data Prep, Schema Registry
_DATASET = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "schemaRef": _object({"id": _STRING, "contentType": _STRING}),
        "tags": _OBJECT,
        "fileDescription": _OBJECT,
        "enableErrorDiagnostics": {"type": "boolean"},
    }
)
_MAPPING_SET = _object(
    {
        "name": _STRING,
        "description": _STRING,
        "xdmSchema": _STRING,
        "outputSchema": _object({"schemaRef": _object({"id": _STRING, "contentType": _STRING})}),
        "mappings": _array(_object({"source": _STRING, "destination": _STRING, "sourceType": _STRING})),
    }
)
_MAPPING_PREVIEW = _object({"data": _array(_OBJECT), "mappingSet": _MAPPING_SET})
_XDM_RESOURCE = _object(
    {"type": _STRING, "title": _STRING, "description": _STRING, "allOf": _array(_OBJECT)}, required=("type",)
)
_XDM_SCHEMA_OR_CLASS = _object(
    {"type": _STRING, "title": _STRING, "description": _STRING, "allOf": _array(_OBJECT)},
    required=("type", "title", "description", "allOf"),
)
_XDM_FIELD_GROUP = _object(
    {**_XDM_RESOURCE["properties"], "meta:intendedToExtend": _STRINGS},
    required=("type", "title", "meta:intendedToExtend"),
)
_XDM_PATCH = _array(_object({"op": _STRING, "path": _STRING}, required=("op", "path")))

RULES: dict[tuple[str, str, str], Rule] = {
    ("flowservice", "POST", "/connections"): Rule(body=_CONNECTION),
    ("flowservice", "PATCH", "/connections/{id}"): Rule(headers=("If-Match",), body=_FLOW_PATCH),
    ("flowservice", "POST", "/sourceConnections"): Rule(body=_SOURCE_CONNECTION),
    ("flowservice", "PATCH", "/sourceConnections/{id}"): Rule(headers=("If-Match",), body=_FLOW_PATCH),
    ("flowservice", "POST", "/targetConnections"): Rule(body=_TARGET_CONNECTION),
    ("flowservice", "PATCH", "/targetConnections/{id}"): Rule(headers=("If-Match",), body=_FLOW_PATCH),
    ("flowservice", "POST", "/flows"): Rule(body=_FLOW),
    ("flowservice", "PATCH", "/flows/{id}"): Rule(headers=("If-Match",), body=_FLOW_PATCH),
    ("flowservice", "POST", "/flows/{id}/action"): Rule(query=_object({"op": _STRING}, required=("op",))),
    ("flowservice", "POST", "/runs"): Rule(body=_RUN),
    ("flowservice", "POST", "/runs/{id}/action"): Rule(query=_object({"op": _STRING}, required=("op",))),
    ("catalog", "POST", "/dataSets"): Rule(headers=("Content-Type",), body=_DATASET),
    ("conversion", "GET", "/mappingSets"): Rule(
        query=_object({"start": _DIGITS, "limit": _DIGITS}, required=("start", "limit"))
    ),
    ("conversion", "POST", "/mappingSets"): Rule(headers=("Content-Type",), body=_MAPPING_SET),
    ("conversion", "POST", "/mappingSets/validate"): Rule(headers=("Content-Type",), body=_MAPPING_SET),
    ("conversion", "POST", "/mappingSets/preview"): Rule(headers=("Content-Type",), body=_MAPPING_PREVIEW),
    ("conversion", "PUT", "/mappingSets/{id}"): Rule(headers=("Content-Type",), body=_MAPPING_SET),
    ("schemaregistry", "GET", "/{container}/{kind}"): Rule(headers=("Accept",)),
    ("schemaregistry", "GET", "/{container}/{kind}/{ident}"): Rule(headers=("Accept",)),
    ("schemaregistry", "POST", "/tenant/schemas"): Rule(headers=("Content-Type",), body=_XDM_SCHEMA_OR_CLASS),
    ("schemaregistry", "POST", "/tenant/classes"): Rule(headers=("Content-Type",), body=_XDM_SCHEMA_OR_CLASS),
    ("schemaregistry", "POST", "/tenant/fieldgroups"): Rule(headers=("Content-Type",), body=_XDM_FIELD_GROUP),
    ("schemaregistry", "POST", "/tenant/{kind}"): Rule(headers=("Content-Type",), body=_XDM_RESOURCE),
    ("schemaregistry", "PATCH", "/tenant/{kind}/{ident}"): Rule(headers=("Content-Type",), body=_XDM_PATCH),
}

# Headers every call of a service needs (Flow Service's sandbox header is the gateway's FLOW-2105 check).
SERVICE_HEADERS: dict[str, tuple[str, ...]] = {
    "catalog": ("x-sandbox-name",),
    "conversion": ("x-sandbox-name",),
    "schemaregistry": ("x-sandbox-name",),
}


def check_content_type(req: Request) -> None:
    """A body must be JSON (always checked, strict or not)."""
    if req.method not in ("POST", "PUT", "PATCH") or not req.body:
        return
    media = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise placeholder_error(
            400,
            "BadRequestError",
            f"Content-Type {media or '(missing)'} is not supported; send Content-Type: application/json.",
        )


def check_request(req: Request, service: Service, route: Route) -> None:
    """Strict mode: the route's rule (and the service's headers); raises the 400 AEP would answer."""
    rule = RULES.get((service.name, route.method, route.template))
    for name in (*SERVICE_HEADERS.get(service.name, ()), *(rule.headers if rule else ())):
        if req.headers.get(name) is None:
            raise _missing_header(service, req, name)
    if rule is None:
        return
    if rule.query is not None:
        query = {name: values[0] for name, values in req.query.items() if values}
        _validate(req, service, rule, "query", query, "query parameter")
    if rule.body is not None and req.body.strip():  # an empty body gets the handler's own error
        _validate(req, service, rule, "body", req.json(), "request body field")


def _validate(req: Request, service: Service, rule: Rule, part: str, instance: Any, label: str) -> None:
    validator = rule.validators.get(part)
    if validator is None:
        import jsonschema  # imported lazily: keeps `import airflow_provider_aep.testing` cheap

        validator = rule.validators[part] = jsonschema.Draft7Validator(getattr(rule, part))
    error = min(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)), default=None)
    if error is None:
        return
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        raise service.bad_request(req, f"The {label} '{json_path([*error.absolute_path, missing])}' is required.")
    if not error.absolute_path:
        raise service.bad_request(req, f"The {part} is invalid: {error.message}.")
    raise service.bad_request(req, f"The {label} '{json_path(error.absolute_path)}' is invalid: {error.message}.")


def json_path(path: Any) -> str:
    """``transformations[1].params.mappingVersion`` from a jsonschema path; ``(root)`` when empty."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _missing_header(service: Service, req: Request, name: str) -> APIError:
    if service.missing_header is not None:
        return service.missing_header(req, name)
    return service.bad_request(req, f"The header {name} is missing in the request. Please add it and try again.")
