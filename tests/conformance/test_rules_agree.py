"""The strict emulator's own rules (testing/validation.py) agree with Adobe's specs: each rule's operation
exists, each header, parameter and body field it requires the spec requires, each type it checks is the spec's
type, and every header, query parameter and top-level body field the spec requires is checked by someone (known
defects aside), so strict mode without the spec files refuses what the specs would."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from airflow_provider_aep.testing.openapi import SPEC_FILES, Problem, excusing_defect
from airflow_provider_aep.testing.server import SERVICES
from airflow_provider_aep.testing.validation import RULES, SERVICE_HEADERS, json_path
from tests.conformance.layer import load_specs

# What each route template parameter stands for, to turn emulator routes into sample paths.
SAMPLES = {
    "id": ["x"],
    "ident": ["x"],
    "container": ["tenant", "global"],
    "kind": ["classes", "schemas", "fieldgroups"],
}
# Headers the gateway checks before any rule (Flow Service's sandbox header too: FLOW-2105).
GATEWAY_HEADERS = {"authorization", "x-api-key", "x-gw-ims-org-id"}
FLOW_GATEWAY_HEADERS = GATEWAY_HEADERS | {"x-sandbox-name"}
# Header parameters some specs list although no caller can leave them out or they only tune the answer.
NOT_RULES = {"content-length", "accept-encoding"}


@pytest.fixture(scope="module")
def specs():
    return load_specs()


def sample_paths(template: str) -> list[str]:
    names = re.findall(r"\{(\w+)\}", template)
    paths = []
    for values in itertools.product(*(SAMPLES[n] for n in names)):
        path = template
        for name, value in zip(names, values, strict=True):
            path = path.replace("{" + name + "}", value, 1)
        paths.append(path)
    return paths


def spec_operation(specs, service: str, method: str, path: str) -> dict[str, Any] | None:
    resolved = specs._resolve(service, method, SPEC_FILES[service][1] + path)
    return (
        None
        if resolved.operation is None
        else {**specs._operation(service, resolved.operation), "key": resolved.operation}
    )


def required_headers(specs, service: str, operation: dict[str, Any]) -> set[str]:
    params = (specs._deref(service, p) for p in operation["parameters"])
    return {str(p["name"]).lower() for p in params if p.get("in") == "header" and p.get("required")}


def served_operations(specs, service: str):
    """(route, sample path, spec operation, its rule) for each operation the emulator serves by that route."""
    emulator_service = next(s for s in SERVICES if s.name == service)
    for route in emulator_service.routes:
        for path in sample_paths(route.template):
            operation = spec_operation(specs, service, route.method, path)
            if operation is not None and emulator_service.match(route.method, path)[0] is route:
                yield route, path, operation, RULES.get((service, route.method, route.template))


def body_schema(specs, service: str, operation: dict[str, Any]) -> dict[str, Any] | None:
    body = specs._deref(service, operation.get("requestBody") or {})
    content = body.get("content") or {}
    media = content.get("application/json") or next(iter(content.values()), None)
    return specs._deref(service, (media or {}).get("schema") or {}) if media else None


def merged(specs, service: str, schema: dict[str, Any]) -> dict[str, Any]:
    schema = specs._deref(service, schema)
    out = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        part = merged(specs, service, part)
        out.setdefault("type", part.get("type"))
        out["properties"] = {**part.get("properties", {}), **out.get("properties", {})}
        out["required"] = [*out.get("required", []), *part.get("required", [])]
    return out


def disagreements(specs, service: str, ours: dict[str, Any], theirs: dict[str, Any], where: list[Any]) -> list[Problem]:
    theirs = merged(specs, service, theirs)
    field = json_path(where)
    out = []
    if "type" in ours and theirs.get("type") not in (None, ours["type"]):
        out.append(Problem("body", field, "type", f"we check {ours['type']}, the spec says {theirs.get('type')}"))
    for name in set(ours.get("required", [])) - set(theirs.get("required", [])):
        out.append(Problem("body", json_path([*where, name]), "required", "we require it, the spec does not"))
    spec_properties = theirs.get("properties") or {}
    for name, sub in (ours.get("properties") or {}).items():
        if name in spec_properties:
            out += disagreements(specs, service, sub, spec_properties[name], [*where, name])
    if "items" in ours and "items" in theirs:
        out += disagreements(specs, service, ours["items"], theirs["items"], [*where, 0])
    return out


@pytest.mark.parametrize(("service", "method", "template"), sorted(RULES), ids=lambda v: str(v))
def test_each_rule_states_what_adobes_spec_states(specs, service: str, method: str, template: str) -> None:
    rule = RULES[(service, method, template)]
    emulator_service = next(s for s in SERVICES if s.name == service)
    assert any(r.method == method and r.template == template for r in emulator_service.routes), "no such route"
    for path in sample_paths(template):
        operation = spec_operation(specs, service, method, path)
        assert operation is not None, f"{method} {path}: the spec has no such operation"
        headers = required_headers(specs, service, operation)
        assert {h.lower() for h in rule.headers} <= headers, f"{method} {path}: the spec requires only {headers}"
        if rule.query is not None:
            declared = {specs._deref(service, p)["name"]: specs._deref(service, p) for p in operation["parameters"]}
            for name in rule.query.get("required", []):
                assert declared.get(name, {}).get("required"), f"{method} {path}: query {name} is optional in the spec"
        if rule.body is not None:
            spec_body = body_schema(specs, service, operation)
            assert spec_body is not None, f"{method} {path}: the spec takes no body"
            found = [
                p
                for p in disagreements(specs, service, dict(rule.body), spec_body, [])
                if excusing_defect(service, operation["key"], method, SPEC_FILES[service][1] + path, p) is None
            ]
            assert found == [], f"{method} {path}: " + "; ".join(map(str, found))


@pytest.mark.parametrize("service", sorted(SPEC_FILES))
def test_every_header_the_spec_requires_is_checked(specs, service: str) -> None:
    emulator_service = next(s for s in SERVICES if s.name == service)
    checked_by_all = (FLOW_GATEWAY_HEADERS if emulator_service.requires_sandbox_header else GATEWAY_HEADERS) | {
        h.lower() for h in SERVICE_HEADERS.get(service, ())
    }
    unchecked = []
    for route, path, operation, rule in served_operations(specs, service):
        checked = checked_by_all | {h.lower() for h in (rule.headers if rule else ())}
        missing = required_headers(specs, service, operation) - checked - NOT_RULES
        if missing:
            unchecked.append(f"{route.method} {path}: {sorted(missing)}")
    assert unchecked == []


@pytest.mark.parametrize("service", sorted(SERVICE_HEADERS))
def test_service_wide_headers_are_required_by_every_operation_served(specs, service: str) -> None:
    emulator_service = next(s for s in SERVICES if s.name == service)
    for route in emulator_service.routes:
        for path in sample_paths(route.template):
            operation = spec_operation(specs, service, route.method, path)
            if operation is not None:
                required = required_headers(specs, service, operation)
                assert {h.lower() for h in SERVICE_HEADERS[service]} <= required, f"{route.method} {path}"


def unexcused(service: str, operation: dict[str, Any], method: str, path: str, problems: list[Problem]) -> list[str]:
    full = SPEC_FILES[service][1] + path
    return [str(p) for p in problems if excusing_defect(service, operation["key"], method, full, p) is None]


@pytest.mark.parametrize("service", sorted(SPEC_FILES))
def test_every_query_parameter_the_spec_requires_is_checked(specs, service: str) -> None:
    unchecked = []
    for route, path, operation, rule in served_operations(specs, service):
        params = (specs._deref(service, p) for p in operation["parameters"])
        required = {str(p["name"]) for p in params if p.get("in") == "query" and p.get("required")}
        checked = set((rule.query or {}).get("required", [])) if rule else set()
        missing = [Problem("query", name, "required", "the spec requires it") for name in sorted(required - checked)]
        unchecked += [f"{route.method} {path}: {p}" for p in unexcused(service, operation, route.method, path, missing)]
    assert unchecked == []


@pytest.mark.parametrize("service", sorted(SPEC_FILES))
def test_every_body_field_the_spec_requires_is_checked(specs, service: str) -> None:
    unchecked = []
    for route, path, operation, rule in served_operations(specs, service):
        spec_body = body_schema(specs, service, operation)
        if not spec_body:
            continue
        theirs, ours = merged(specs, service, spec_body), dict(rule.body or {}) if rule else {}
        if ours.get("type") != theirs.get("type"):
            continue  # a body of another shape altogether: the rule's own test judges (and excuses) it
        missing = [
            Problem("body", name, "required", "the spec requires it")
            for name in sorted(set(theirs.get("required") or []) - set(ours.get("required", [])))
        ]
        unchecked += [f"{route.method} {path}: {p}" for p in unexcused(service, operation, route.method, path, missing)]
    assert unchecked == []
