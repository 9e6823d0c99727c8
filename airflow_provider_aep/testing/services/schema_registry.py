"""Schema Registry, ``/data/foundation/schemaregistry`` (aep-api.md §2).

Containers ``tenant`` (per sandbox, writable) and ``global`` (fixed XDM catalogue).
Kinds: ``classes``, ``schemas``, ``fieldgroups`` (alias ``mixins``), ``behaviors``, ``datatypes``.

Rules enforced, as the Registry does:
* titles unique across tenant classes, schemas and field groups → 400 XDM-1521-400;
* a lookup needs a versioned Accept (``application/vnd.adobe.xed+json; version=1``),
  a list an unversioned one (``...xed-id+json`` or ``...xed+json``) → else 400 XDM-1006-400;
* ids in paths are the URL-encoded ``$id`` or the ``meta:altId``;
* ad hoc classes get ``_adhoc`` renamed to ``_<guid>``;
* a schema references exactly one known class plus known field groups meant to extend it;
* resources still referenced (class by schema, field group by schema, schema by dataset) are not deletable.

Error codes not named in the docs (generic validation, "still referenced") use XDM-1001-400.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any
from urllib.parse import quote

from airflow_provider_aep.testing import specs
from airflow_provider_aep.testing.errors import APIError, xdm_error
from airflow_provider_aep.testing.jsonpatch import PatchError, apply_patch
from airflow_provider_aep.testing.query import matches, order, resolve, whole_number, xdm_filters
from airflow_provider_aep.testing.routing import Request, Response, Service, route
from airflow_provider_aep.testing.state import SandboxState, new_hex

PREFIX = "/data/foundation/schemaregistry"
_KIND_ALIASES = {"mixins": "fieldgroups"}
_TENANT_KINDS = ("classes", "schemas", "fieldgroups")
_READ_KINDS = (*_TENANT_KINDS, "behaviors", "datatypes")
_LOOKUP_ACCEPT = re.compile(
    r"^application/vnd\.adobe\.(xed|xed-full|xed-notext|xed-full-notext|xed-full-desc|xed-deprecatefield)"
    r"\+json\s*;\s*version\s*=\s*(\d+)(\.\d+)?$"
)
_LIST_ACCEPT = ("application/vnd.adobe.xed-id+json", "application/vnd.adobe.xed+json")
_MAX_RESULTS = 300

_GLOBALS: dict[str, list[dict[str, Any]]] = {
    "classes": specs.GLOBAL_CLASSES,
    "fieldgroups": specs.GLOBAL_FIELDGROUPS,
    "behaviors": specs.GLOBAL_BEHAVIORS,
    "schemas": specs.GLOBAL_SCHEMAS,
    "datatypes": [],
}


def _bad(req: Request, message: str) -> APIError:
    return xdm_error("1001", 400, "Bad request", message, req.request_id)


def _missing_header(req: Request, name: str) -> APIError:
    if name.lower() == "accept":
        return xdm_error(
            "1006", 400, "Invalid Accept header", "Accept header (missing) is not supported.", req.request_id
        )
    return _bad(req, f"The header {name} is missing in the request. Please add it and try again.")


def _not_found(req: Request, what: str) -> APIError:
    return xdm_error("1010", 404, "Resource not found", f"The requested resource {what} was not found.", req.request_id)


def _kind(req: Request, kind: str) -> str:
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in _READ_KINDS:
        raise _not_found(req, kind)
    return kind


def _container(req: Request, container: str) -> str:
    if container not in ("tenant", "global"):
        raise _not_found(req, container)
    return container


def _tenant_items(sb: SandboxState, kind: str) -> dict[str, dict[str, Any]]:
    return getattr(sb, kind) if kind in _TENANT_KINDS else {}


def _items(sb: SandboxState, container: str, kind: str) -> list[dict[str, Any]]:
    if container == "global":
        return list(_GLOBALS.get(kind, []))
    return list(_tenant_items(sb, kind).values())


def _find(sb: SandboxState, container: str, kind: str, ident: str) -> dict[str, Any] | None:
    for item in _items(sb, container, kind):
        if item["$id"] == ident or item.get("meta:altId") == ident:
            return item
    return None


def _resolve_ref(sb: SandboxState, ref: str) -> tuple[str, dict[str, Any]] | None:
    """Find a referenced resource in any container: (kind, resource)."""
    for kind in ("classes", "fieldgroups", "behaviors"):
        for container in ("tenant", "global"):
            found = _find(sb, container, kind, ref)
            if found is not None:
                return kind, found
    return None


def _check_title(req: Request, title: Any, *, exclude: str | None = None) -> str:
    if not isinstance(title, str) or not title.strip():
        raise _bad(req, "The 'title' field is required.")
    sb = req.sb
    for kind in _TENANT_KINDS:
        for item in getattr(sb, kind).values():
            if item["title"] == title and item["$id"] != exclude:
                raise xdm_error(
                    "1521",
                    400,
                    "Title not unique",
                    f"Object titles must be unique. An object {item['$id']} already exists with the same title",
                    req.request_id,
                )
    return title


def _registry_metadata(req: Request, now_ms: int) -> dict[str, Any]:
    return {
        "repo:createdDate": now_ms,
        "repo:lastModifiedDate": now_ms,
        "xdm:createdClientId": req.client_id,
        "xdm:lastModifiedClientId": req.client_id,
        "xdm:createdUserId": req.emulator.user_id,
        "xdm:lastModifiedUserId": req.emulator.user_id,
        "eTag": new_hex(32),
    }


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "$id": item["$id"],
        "meta:altId": item.get("meta:altId"),
        "version": item.get("version"),
        "title": item.get("title"),
    }


def _remember(sb: SandboxState, item: dict[str, Any]) -> None:
    sb.recent.insert(0, {**_summary(item), "meta:resourceType": item.get("meta:resourceType")})
    del sb.recent[10:]


def _allof(req: Request, body: dict[str, Any]) -> list[Any]:
    all_of = body.get("allOf")
    if not isinstance(all_of, list) or not all_of:
        raise _bad(req, "The 'allOf' field must be a non-empty array.")
    for part in all_of:
        if not isinstance(part, dict):
            raise _bad(req, "Every 'allOf' entry must be an object.")
    return all_of


def _decorate(part: dict[str, Any]) -> dict[str, Any]:
    return {**part, "type": part.get("type", "object"), "meta:xdmType": part.get("meta:xdmType", "object")}


def _bump(version: str) -> str:
    major, _, minor = version.partition(".")
    return f"{major}.{int(minor or 0) + 1}"


# --------------------------------------------------------------------------- composition


def _compose_class(req: Request, body: dict[str, Any], guid: str) -> dict[str, Any]:
    sb = req.sb
    all_of = _allof(req, body)
    behaviors: list[str] = []
    parts: list[dict[str, Any]] = []
    for part in all_of:
        ref = part.get("$ref")
        if ref is None:
            parts.append(copy.deepcopy(part))
            continue
        found = _resolve_ref(sb, ref)
        if found is None or found[0] != "behaviors":
            raise _bad(req, f"The referenced behavior {ref} does not exist; a class must extend one behavior.")
        if ref not in behaviors:
            behaviors.append(ref)
    if len(behaviors) != 1:
        raise _bad(req, "A class must reference exactly one behavior (adhoc, record or time-series).")
    behavior = behaviors[0]
    extra: dict[str, Any] = {}
    if behavior == specs.ADHOC_BEHAVIOR:
        namespace = f"_{guid}"
        renamed = False
        for part in parts:
            props = part.get("properties")
            if isinstance(props, dict) and "_adhoc" in props:
                props[namespace] = props.pop("_adhoc")
                renamed = True
        if not renamed:
            raise _bad(req, "An ad hoc class must declare its fields under properties._adhoc.")
        extra["meta:datasetNamespace"] = namespace
    return {
        "allOf": [_decorate({"$ref": behavior})] + [_decorate(p) for p in parts],
        "refs": [behavior],
        "meta:extends": [behavior],
        "meta:abstract": True,
        "meta:extensible": True,
        **extra,
    }


def _compose_schema(req: Request, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate the references of a schema document and derive refs/meta:extends/meta:class."""
    sb = req.sb
    all_of = _allof(req, doc)
    classes: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for part in all_of:
        ref = part.get("$ref")
        if ref is None:
            continue
        found = _resolve_ref(sb, ref)
        if found is None or found[0] == "behaviors":
            raise _bad(req, f"The referenced resource {ref} does not exist or cannot be used in a schema.")
        kind, item = found
        target = classes if kind == "classes" else groups
        if all(t["$id"] != item["$id"] for t in target):
            target.append(item)
    if len(classes) != 1:
        raise _bad(req, "A schema must reference exactly one class in allOf.")
    cls = classes[0]
    declared = doc.get("meta:class")
    if declared is not None and declared != cls["$id"]:
        raise _bad(req, f"meta:class {declared} does not match the class {cls['$id']} referenced in allOf.")
    for group in groups:
        intended = group.get("meta:intendedToExtend") or []
        if intended and cls["$id"] not in intended:
            raise _bad(req, f"The field group {group['$id']} cannot extend the class {cls['$id']}.")
    extends: list[str] = []
    for ref in [g["$id"] for g in groups] + list(cls.get("meta:extends", [])) + [cls["$id"]]:
        if ref not in extends:
            extends.append(ref)
    tags = doc.get("meta:immutableTags") or []
    if "union" in tags and "https://ns.adobe.com/xdm/context/identitymap" not in extends:
        raise xdm_error(
            "1528",
            400,
            "Missing primary identity",
            "A schema enabled for Profile needs a primary identity descriptor or an identityMap field.",
            req.request_id,
        )
    out: dict[str, Any] = {
        "allOf": [_decorate(p) for p in all_of],
        "refs": [g["$id"] for g in groups] + [cls["$id"]],
        "meta:extends": extends,
        "meta:class": cls["$id"],
    }
    if "meta:datasetNamespace" in cls:
        out["meta:datasetNamespace"] = cls["meta:datasetNamespace"]
    return out


def _compose_fieldgroup(req: Request, body: dict[str, Any]) -> dict[str, Any]:
    intended = body.get("meta:intendedToExtend")
    if not isinstance(intended, list) or not intended:
        raise _bad(req, "A field group needs a non-empty meta:intendedToExtend.")
    for ref in intended:
        found = _resolve_ref(req.sb, ref)
        if found is None or found[0] not in ("classes", "behaviors"):
            raise _bad(req, f"meta:intendedToExtend references an unknown class {ref}.")
    all_of = body.get("allOf") or []
    return {"meta:intendedToExtend": list(intended), "allOf": [_decorate(p) for p in all_of if isinstance(p, dict)]}


# --------------------------------------------------------------------------- handlers


def stats(req: Request) -> Response:
    sb = req.sb
    usage: dict[str, list[dict[str, Any]]] = {}
    for schema in sb.schemas.values():
        usage.setdefault(schema["meta:class"], []).append({"$id": schema["$id"], "title": schema["title"]})
    class_usage = []
    for class_id, schemas in usage.items():
        found = _resolve_ref(sb, class_id)
        title = found[1]["title"] if found else class_id
        class_usage.append({"$id": class_id, "title": title, "numberOfSchemas": len(schemas), "schemas": schemas})
    return Response(
        200,
        {
            "imsOrg": req.emulator.org_id,
            "tenantId": req.emulator.tenant_id,
            "counts": {
                "schemas": len(sb.schemas),
                "mixins": len(sb.fieldgroups),
                "fieldgroups": len(sb.fieldgroups),
                "datatypes": 0,
                "classes": len(sb.classes),
                "unions": sum(1 for s in sb.schemas.values() if "union" in (s.get("meta:immutableTags") or [])),
            },
            "recentlyCreatedResources": copy.deepcopy(sb.recent[:5]),
            "recentlyUpdatedResources": copy.deepcopy(sb.recent[:5]),
            "classUsage": class_usage,
        },
    )


def create(req: Request, kind: str) -> Response:
    kind = _kind(req, kind)
    if kind not in _TENANT_KINDS:
        raise xdm_error("1001", 403, "Forbidden", f"{kind} cannot be created in the tenant container.", req.request_id)
    body = req.json_object(lambda m: _bad(req, m))
    title = _check_title(req, body.get("title"))
    emulator, sb = req.emulator, req.sb
    tenant = emulator.tenant_id
    guid = new_hex(24)
    path_kind = "mixins" if kind == "fieldgroups" else kind
    now_ms = emulator.store.now_ms()
    doc: dict[str, Any] = {
        "$id": f"https://ns.adobe.com/{tenant}/{path_kind}/{guid}",
        "meta:altId": f"_{tenant}.{path_kind}.{guid}",
        "meta:resourceType": path_kind,
        "version": "1.0",
        "title": title,
        "type": "object",
        "description": body.get("description", ""),
    }
    if kind == "classes":
        doc.update(_compose_class(req, body, guid))
    elif kind == "schemas":
        doc.update(_compose_schema(req, body))
        doc["meta:extensible"] = False
        doc["meta:abstract"] = False
        if body.get("meta:immutableTags"):
            doc["meta:immutableTags"] = list(body["meta:immutableTags"])
    else:
        doc.update(_compose_fieldgroup(req, body))
        doc["definitions"] = copy.deepcopy(body.get("definitions", {}))
        doc["meta:extensible"] = True
        doc["meta:abstract"] = True
    doc.update(
        {
            "imsOrg": emulator.org_id,
            "meta:xdmType": "object",
            "meta:registryMetadata": _registry_metadata(req, now_ms),
            "meta:containerId": "tenant",
            "meta:tenantNamespace": f"_{tenant}",
        }
    )
    _tenant_items(sb, kind)[doc["$id"]] = doc
    _remember(sb, doc)
    return Response(201, copy.deepcopy(doc))


def _check_list_accept(req: Request) -> str:
    accept = (req.headers.get("Accept") or "").strip()
    media = accept.split(";")[0].strip().lower()
    if "version" in accept.lower():
        raise xdm_error(
            "1006",
            400,
            "Invalid Accept header",
            "A version must not be supplied in the Accept header of a list request.",
            req.request_id,
        )
    if media not in _LIST_ACCEPT:
        raise xdm_error(
            "1006",
            400,
            "Invalid Accept header",
            f"Accept header {accept or '(missing)'} is not supported for listing; use application/vnd.adobe.xed-id+json "
            "or application/vnd.adobe.xed+json.",
            req.request_id,
        )
    return media


def list_resources(req: Request, container: str, kind: str) -> Response:
    _container(req, container)
    kind = _kind(req, kind)
    media = _check_list_accept(req)

    def err(code: str, message: str) -> APIError:
        return _bad(req, message)

    filters = xdm_filters(req.q_all("property"), err)
    items = [i for i in _items(req.sb, container, kind) if all(matches(i, f) for f in filters)]
    orderby = req.q("orderby") or "title"
    path = orderby.lstrip("+-")
    items = order(items, orderby)
    start = req.q("start")
    if start is not None:
        descending = orderby.startswith("-")

        def key(i: dict[str, Any]) -> str:
            v = resolve(i, path)
            return str(v[0]) if v else ""

        items = [i for i in items if (key(i) <= start if descending else key(i) >= start)]
    limit_raw = req.q("limit")
    limit = _MAX_RESULTS
    if limit_raw is not None:
        number = whole_number(limit_raw)
        if number is None or not 0 < number <= 500:
            raise _bad(req, f"limit must be an integer between 1 and 500, got {limit_raw}.")
        limit = min(number, _MAX_RESULTS)
    page, rest = items[:limit], items[limit:]
    nxt = None
    if rest:
        v = resolve(rest[0], path)
        nxt = str(v[0]) if v else None
    results = [copy.deepcopy(i) if media == "application/vnd.adobe.xed+json" else _summary(i) for i in page]
    next_link = None
    if nxt is not None:
        next_link = {"href": f"{PREFIX}/{container}/{kind}?orderby={quote(orderby)}&start={quote(nxt)}"}
    return Response(
        200,
        {
            "results": results,
            "_page": {"orderby": orderby, "next": nxt, "count": len(results)},
            "_links": {"next": next_link, f"global_{kind}": {"href": f"{PREFIX}/global/{kind}"}},
        },
    )


def full_properties(req: Request, doc: dict[str, Any]) -> dict[str, Any]:
    """Merge the properties of everything a resource composes (the ``xed-full`` views)."""
    props: dict[str, Any] = {}
    for part in doc.get("allOf", []):
        ref = part.get("$ref")
        if ref is not None:
            found = _resolve_ref(req.sb, ref)
            if found is not None:
                props.update(full_properties(req, found[1]))
        props.update(copy.deepcopy(part.get("properties", {})))
    props.update(copy.deepcopy(doc.get("properties", {})))
    return props


def lookup(req: Request, container: str, kind: str, ident: str) -> Response:
    _container(req, container)
    kind = _kind(req, kind)
    accept = (req.headers.get("Accept") or "").strip()
    match = _LOOKUP_ACCEPT.match(accept.lower())
    if match is None:
        message = (
            "A version must be supplied in the Accept header, e.g. application/vnd.adobe.xed+json; version=1."
            if accept.lower().startswith("application/vnd.adobe.xed")
            else f"Accept header {accept or '(missing)'} is not supported."
        )
        raise xdm_error("1006", 400, "Invalid Accept header", message, req.request_id)
    item = _find(req.sb, container, kind, ident)
    if item is None:
        raise _not_found(req, ident)
    doc = copy.deepcopy(item)
    if "full" in match.group(1):
        doc["properties"] = full_properties(req, item)
    return Response(200, doc)


def patch(req: Request, kind: str, ident: str) -> Response:
    kind = _kind(req, kind)
    item = _find(req.sb, "tenant", kind, ident)
    if item is None:
        raise _not_found(req, ident)
    operations = req.json()
    try:
        patched = apply_patch(item, operations)
    except PatchError as exc:
        raise _bad(req, str(exc)) from None
    for frozen in ("$id", "meta:altId", "meta:resourceType", "meta:containerId"):
        if patched.get(frozen) != item.get(frozen):
            raise _bad(req, f"{frozen} cannot be changed.")
    if patched.get("title") != item["title"]:
        _check_title(req, patched.get("title"), exclude=item["$id"])
    if kind == "schemas":
        patched.update(_compose_schema(req, patched))
        if patched["meta:class"] != item["meta:class"]:
            raise _bad(req, "The class of a schema cannot be changed.")
    patched["version"] = _bump(item["version"])
    meta = patched.setdefault("meta:registryMetadata", {})
    meta["repo:lastModifiedDate"] = req.emulator.store.now_ms()
    meta["xdm:lastModifiedClientId"] = req.client_id
    meta["eTag"] = new_hex(32)
    _tenant_items(req.sb, kind)[item["$id"]] = patched
    return Response(200, copy.deepcopy(patched))


def delete(req: Request, kind: str, ident: str) -> Response:
    kind = _kind(req, kind)
    sb = req.sb
    item = _find(sb, "tenant", kind, ident)
    if item is None:
        raise _not_found(req, ident)
    xid = item["$id"]
    if kind in ("classes", "fieldgroups"):
        users = [s["$id"] for s in sb.schemas.values() if xid in s.get("refs", [])]
        if users:
            raise _bad(req, f"{xid} cannot be deleted because it is referenced by {', '.join(users)}.")
    if kind == "schemas":
        users = [dsid for dsid, ds in sb.datasets.items() if ds.get("schemaRef", {}).get("id") == xid]
        if users:
            raise _bad(req, f"{xid} cannot be deleted because it is used by dataset(s) {', '.join(users)}.")
    del _tenant_items(sb, kind)[xid]
    return Response(204)


SERVICE = Service(
    name="schemaregistry",
    prefix=PREFIX,
    routes=[
        route("GET", "/stats", stats),
        route("GET", "/{container}/{kind}", list_resources),
        route("POST", "/tenant/schemas", functools.partial(create, kind="schemas"), creates=True),
        route("POST", "/tenant/classes", functools.partial(create, kind="classes"), creates=True),
        route("POST", "/tenant/fieldgroups", functools.partial(create, kind="fieldgroups"), creates=True),
        route("POST", "/tenant/{kind}", create, creates=True),
        route("GET", "/{container}/{kind}/{ident}", lookup),
        route("PATCH", "/tenant/{kind}/{ident}", patch),
        route("DELETE", "/tenant/{kind}/{ident}", delete),
    ],
    not_found=lambda req: xdm_error("1010", 404, "Resource not found", f"No resource at {req.path}.", req.request_id),
    bad_request=_bad,
    missing_header=_missing_header,
)
