"""The judge of the conformance layer: it passes what conforms, excuses known defects by id, and names the
operation and the reason of everything else."""

from __future__ import annotations

import dataclasses
import json

import pytest
import requests

from airflow_provider_aep.testing import AEPEmulator, RequestRecord
from airflow_provider_aep.testing.defects import BY_ID, DEFECTS
from tests.conformance.layer import ConformanceLayer, judge, load_specs, specs_dir
from tests.testing.emulator_helpers import FS, AEPClient, flow_body, pipeline

PROVIDER = {"User-Agent": "airflow-provider-aep/1.0 apache-airflow/3 python/3.11"}


@pytest.fixture(scope="module")
def specs():
    return load_specs()


@pytest.fixture
def client():
    with AEPEmulator(time_scale=3600) as emu:
        c = AEPClient(emu)
        yield c
        c.close()


def last(client: AEPClient) -> RequestRecord:
    return client.emu.request_log[-1]


def test_a_conforming_call(specs, client) -> None:
    client.get(f"{FS}/flows")
    judged = judge(specs, last(client))
    assert (judged.operation, judged.outcome, judged.reasons) == (
        "flowservice listFlows (GET /flows)",
        "conforming",
        [],
    )


def test_a_known_defect_is_excused_by_its_id(specs, client) -> None:
    client.get(f"{FS}/flowSpecs")  # transformationSpecs: an array, as AEP answers; the spec says object
    judged = judge(specs, last(client))
    assert (judged.outcome, judged.defects) == ("excused", {"FS-TRANSFORMATION-SPECS-TYPE"})


def test_the_emulator_letting_through_what_the_spec_rejects_is_a_mismatch(specs) -> None:
    with AEPEmulator(time_scale=3600, strict=False) as lenient:
        c = AEPClient(lenient)
        p = pipeline(c)
        body = flow_body(p["source"], p["target"], p["mapping"], {"startTime": 1, "frequency": "once"})
        body["transformations"][1]["params"]["mappingVersion"] = 0
        assert c.post(f"{FS}/flows", json=body).status_code == 201
        record = lenient.request_log[-1]
    assert judge(specs, record, strict=False).outcome == "conforming"  # lenient by request
    judged = judge(specs, record, strict=True)
    assert judged.outcome == "mismatch" and judged.operation == "flowservice createFlow (POST /flows)"
    assert judged.reasons == [
        "the emulator answered 201 to what the spec rejects: "
        "body transformations[1].params.mappingVersion: 0 is not of type 'string'"
    ]


def test_the_provider_sending_what_the_spec_rejects_is_a_mismatch_even_when_refused(specs, client) -> None:
    client.post(f"{FS}/runs", json={"flowId": 7, "params": {}})  # a test's own bad call, refused as AEP does
    refused = judge(specs, last(client))
    assert last(client).status == 400 and (refused.outcome, refused.defects) == ("excused", {"FS-ERROR-STATUSES"})
    from_provider = dataclasses.replace(last(client), headers={**last(client).headers, **PROVIDER})
    judged = judge(specs, from_provider)
    assert judged.outcome == "mismatch"
    assert judged.reasons == ["the provider sent what the spec rejects: body flowId: 7 is not of type 'string'"]


def test_an_operation_the_spec_lacks(specs, client) -> None:
    client.req("PUT", f"{FS}/flows/abc", json={})
    refused = judge(specs, last(client))
    assert (refused.operation, refused.outcome) == ("flowservice (PUT /flows/{id}: not in the spec)", "conforming")
    served = dataclasses.replace(last(client), status=200, stage="handler")
    assert judge(specs, served).reasons == [
        "the emulator answered 200 to what the spec rejects: "
        "operation /data/foundation/flowservice/flows/abc: the spec has no PUT on this path"
    ]


def test_the_emulator_refusing_what_the_spec_accepts_is_a_mismatch(specs, client) -> None:
    client.get(f"{FS}/flows")
    refused = dataclasses.replace(
        last(client), status=400, stage="validation", response_body=b'{"detail": "made-up rule"}'
    )
    judged = judge(specs, refused)
    assert judged.outcome == "mismatch"
    assert judged.reasons[0] == 'the emulator refused what the spec accepts: {"detail": "made-up rule"}'


def test_an_answer_that_breaks_the_spec_is_a_mismatch_naming_the_field(specs, client) -> None:
    p = pipeline(client)
    client.post(
        f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], {"startTime": 1, "frequency": "once"})
    )
    broken = dataclasses.replace(last(client), response_body=json.dumps({"id": 5, "etag": "e"}).encode())
    judged = judge(specs, broken)
    assert judged.outcome == "mismatch"
    assert judged.reasons == ["the emulator's 201 answer breaks the spec: response id: 5 is not of type 'string'"]


def test_an_undocumented_status_outside_the_known_defects_is_a_mismatch(specs, client) -> None:
    client.get(f"{FS}/flows")
    teapot = dataclasses.replace(last(client), status=418)
    assert judge(specs, teapot).reasons == [
        "the emulator's 418 answer breaks the spec: status 418: the spec documents no 418 answer"
    ]


def test_the_layer_hears_every_emulator_and_tallies_per_operation(specs) -> None:
    layer = ConformanceLayer(specs)
    layer.start()
    try:
        with AEPEmulator() as one, AEPEmulator() as two:
            for emu in (one, two):
                requests.get(emu.base_url + f"{FS}/flows", headers=emu.headers())
    finally:
        layer.stop()
    assert layer.judge_pending() == []
    assert layer.tallies["flowservice listFlows (GET /flows)"].seen == 2
    assert "flowservice listFlows (GET /flows)  2" in layer.summary().replace("   ", "  ")


def test_every_defect_says_where_what_and_why() -> None:
    assert len(BY_ID) == len(DEFECTS)
    for defect in DEFECTS:
        assert defect.where and defect.spec_says and defect.aep_does and defect.evidence, defect.id


def test_missing_specs_fail_with_a_clear_message(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AEP_OPENAPI_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"Adobe's OpenAPI specs were not found at AEP_OPENAPI_DIR=.*nowhere"):
        specs_dir()
    monkeypatch.delenv("AEP_OPENAPI_DIR")
    assert (specs_dir() / "flow-service.yaml").is_file()
