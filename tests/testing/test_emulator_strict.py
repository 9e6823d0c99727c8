"""Strict mode (the default): the emulator refuses what AEP refuses, and answers as AEP does; ``strict=False``
restores the old leniency; Adobe's own specs are enforced too when given."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests
from emulator_helpers import CAT, CONV, FS, SR, AEPClient, create_flow, flow_body, ok, pipeline, target_schema

from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.__main__ import build_parser, emulator_from_args
from tests.conformance.layer import specs_dir

FLOW_PROBLEM_KEYS = {"type", "title", "status", "report", "errorMessage", "errorDetails"}
PLACEHOLDER_KEYS = {"type", "status", "title", "detail"}


@pytest.fixture(params=[True, False], ids=["strict", "lenient"])
def either(request: pytest.FixtureRequest):
    with AEPEmulator(time_scale=3600, strict=request.param) as emu:
        client = AEPClient(emu)
        yield emu, client
        client.close()


def test_strict_is_the_default() -> None:
    emu = AEPEmulator()
    assert emu.strict is True and emu.mapping_set_delete == "405" and emu.openapi_specs is None


# ---------------------------------------------------------------- a required header missing


def test_a_missing_sandbox_header_is_a_400_naming_it(either) -> None:
    emu, client = either
    schema_id = target_schema(client)
    headers = {k: v for k, v in emu.headers().items() if k != "x-sandbox-name"}
    body = {"name": "DS", "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"}}
    r = requests.post(
        emu.base_url + f"{CAT}/dataSets", params={"requestDataSource": "true"}, json=body, headers=headers
    )
    if not emu.strict:
        assert r.status_code == 201  # the old leniency: the prod sandbox stands in
        return
    answer = ok(r, 400)
    assert set(answer) == PLACEHOLDER_KEYS and answer["title"] == "BadRequestError"
    assert "x-sandbox-name" in answer["detail"]
    assert emu.request_log[-1].stage == "validation"


def test_a_patch_without_if_match_is_flow_1403(either) -> None:
    _, client = either
    flow_id = create_flow(client, pipeline(client))
    answer = ok(client.patch(f"{FS}/flows/{flow_id}", json=[{"op": "replace", "path": "/name", "value": "x"}]), 400)
    assert set(answer) == FLOW_PROBLEM_KEYS and answer["type"].endswith("FLOW-1403-400")
    assert "'If-Match'" in answer["report"]["detailed-message"]


# ---------------------------------------------------------------- a body field of the wrong type


def test_a_wrong_body_type_is_a_400_naming_the_field(either) -> None:
    emu, client = either
    r = client.post(f"{FS}/runs", json={"flowId": 123, "params": {}})
    answer = ok(r, 400)
    assert set(answer) == FLOW_PROBLEM_KEYS and answer["type"].endswith("-400")
    if emu.strict:
        assert answer["type"].endswith("FLOW-1100-400")
        assert answer["errorMessage"] == "The request body field 'flowId' is invalid: 123 is not of type 'string'."
    else:  # lenient: the handler gets it and does not find the flow
        assert answer["type"].endswith("FLOW-1430-400")


def test_an_integer_mapping_version_is_refused_as_the_flow_spec_types_it(either) -> None:
    emu, client = either
    p = pipeline(client)
    body = flow_body(p["source"], p["target"], p["mapping"], {"startTime": int(time.time()), "frequency": "once"})
    body["transformations"][1]["params"]["mappingVersion"] = 0
    r = client.post(f"{FS}/flows", json=body)
    if not emu.strict:
        assert ok(r, 201)["id"]
        return
    answer = ok(r, 400)
    assert "'transformations[1].params.mappingVersion'" in answer["errorMessage"]
    assert "0 is not of type 'string'" in answer["errorMessage"]


def test_a_body_of_the_wrong_type_altogether(either) -> None:
    emu, client = either
    answer = ok(client.post(f"{CONV}/mappingSets", json=[{"source": "a"}]), 400)
    assert set(answer) == PLACEHOLDER_KEYS
    if emu.strict:
        assert answer["detail"] == "The body is invalid: [{'source': 'a'}] is not of type 'object'."


def test_a_missing_required_body_field_is_named(emu: AEPEmulator, client: AEPClient) -> None:
    answer = ok(client.post(f"{SR}/tenant/schemas", json={"title": "T", "allOf": []}), 400)
    assert answer["type"] == "http://ns.adobe.com/aep/errors/XDM-1001-400"
    assert answer["detail"] == "The request body field 'type' is required."


def test_a_field_group_needs_what_it_extends(emu: AEPEmulator, client: AEPClient) -> None:
    body = {"type": "object", "title": "Loyalty", "definitions": {}, "allOf": []}
    answer = ok(client.post(f"{SR}/tenant/fieldgroups", json=body), 400)
    assert answer["detail"] == "The request body field 'meta:intendedToExtend' is required."


def test_a_run_action_without_op_is_refused_naming_it(emu: AEPEmulator, client: AEPClient) -> None:
    answer = ok(client.post(f"{FS}/runs/any-run/action"), 400)
    assert answer["errorMessage"] == "The query parameter 'op' is required."
    assert emu.request_log[-1].stage == "validation"


# ---------------------------------------------------------------- a method AEP lacks


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"{FS}/flows/abc"),  # the spec has GET, DELETE, PATCH there
        ("POST", f"{SR}/global/classes"),  # global resources are read-only: GET only
        ("DELETE", f"{CONV}/mappingSets/abc"),  # GET and PUT only (aepp's DELETE is undocumented)
    ],
)
def test_a_method_aep_lacks_is_a_405(emu: AEPEmulator, client: AEPClient, method: str, path: str) -> None:
    answer = ok(client.req(method, path, json={}), 405)
    assert answer == {
        "type": "/placeholder/type/uri",
        "status": 405,
        "title": "MethodNotAllowed",
        "detail": f"{method} is not allowed on {path}.",
    }


def test_an_unknown_route_is_a_404_in_the_service_shape(emu: AEPEmulator, client: AEPClient) -> None:
    answer = ok(client.get(f"{FS}/nonsense/abc"), 404)
    assert answer["type"].endswith("FLOW-1439-404")
    assert ok(client.get("/data/foundation/nowhere"), 404)["title"] == "NotFoundError"


# ---------------------------------------------------------------- Adobe's first-run rule for on-demand runs


def test_the_first_on_demand_run_needs_delta_column(either) -> None:
    emu, client = either
    flow_id = create_flow(client, pipeline(client), {"startTime": int(time.time()) + 3600, "frequency": "once"})
    now = int(time.time())
    window = {"startTime": now, "windowStartTime": now - 60, "windowEndTime": now}
    r = client.post(f"{FS}/runs", json={"flowId": flow_id, "params": window})
    if not emu.strict:  # the old leniency: the flow's Copy transformation stood in
        assert r.status_code == 201
        return
    assert "params.deltaColumn is required on the first run" in ok(r, 400)["errorMessage"]
    ok(client.post(f"{FS}/runs", json={"flowId": flow_id, "params": {**window, "deltaColumn": {"name": "x"}}}), 201)
    ok(client.post(f"{FS}/runs", json={"flowId": flow_id, "params": window}), 201)


# ---------------------------------------------------------------- Adobe's specs, when given


def test_with_adobes_specs_their_rules_are_enforced_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the emulator's own rules do not look at, but Adobe's spec forbids: a two-character delimiter."""
    monkeypatch.setenv("AEP_OPENAPI_DIR", str(specs_dir()))
    with AEPEmulator() as emu:
        assert emu.openapi_specs is not None and emu.openapi_specs.directory == specs_dir().resolve()
        client = AEPClient(emu)
        schema_ref = {"id": target_schema(client), "contentType": "application/vnd.adobe.xed+json;version=1"}
        body = {"name": "DS", "schemaRef": schema_ref, "fileDescription": {"format": "csv", "delimiters": [";;"]}}
        answer = ok(client.post(f"{CAT}/dataSets", params={"requestDataSource": "true"}, json=body), 400)
        assert answer["title"] == "BadRequestError" and "fileDescription.delimiters[0]" in answer["detail"]
        assert "';;' is too long" in answer["detail"] and emu.request_log[-1].stage == "validation"
        body["fileDescription"]["delimiters"] = [";"]
        ok(client.post(f"{CAT}/dataSets", params={"requestDataSource": "true"}, json=body), 201)
        # Known defects stay excused: here the tutorial's digit-string startTime.
        p = pipeline(client)
        schedule = {"startTime": "1567411548", "frequency": "minute", "interval": 15}
        ok(client.post(f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], schedule)), 201)
    with AEPEmulator(strict=False) as lenient:
        assert lenient.openapi_specs is None  # lenient means lenient


def test_an_incomplete_spec_directory_is_named(tmp_path: Path) -> None:
    shutil.copy(specs_dir() / "flow-service.yaml", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing catalog\.yaml, schema-registry\.oas3\.yaml, data-prep\.yaml"):
        AEPEmulator(openapi_dir=tmp_path)


def test_the_command_line_switches() -> None:
    args = build_parser().parse_args(["--lenient", "--mapping-set-delete", "404", "--port", "0"])
    emu = emulator_from_args(args)
    assert (emu.strict, emu.mapping_set_delete, emu.openapi_specs) == (False, "404", None)
    emu = emulator_from_args(build_parser().parse_args(["--openapi-dir", str(specs_dir())]))
    assert emu.strict and emu.mapping_set_delete == "405" and emu.openapi_specs is not None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--mapping-set-delete", "sometimes"])
