"""Rejected rows, batches in Catalog, error diagnostics in Data Access, RE_TRIGGER, and flow states.

Every new answer is also checked against the response schema Adobe's OpenAPI spec gives its operation.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from emulator_helpers import CAT, FS, AEPClient, create_flow, ok, pipeline, wait_for

from airflow_provider_aep.testing import AEPEmulator, FaultConfig, RunOutcome
from tests.conformance.layer import specs_dir

EXPORT = "/data/foundation/export"


@functools.cache
def _components(spec_file: str) -> dict[str, Any]:
    return yaml.safe_load((specs_dir() / spec_file).read_text())["components"]


def conforms(body: Any, spec_file: str, schema: dict[str, Any]) -> None:
    """``body`` is valid for ``schema`` (which may $ref the spec's components), as Adobe's spec types it."""
    jsonschema.Draft7Validator({**schema, "components": _components(spec_file)}).validate(body)


def component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _status(run: dict) -> str:
    return run["metrics"]["statusSummary"]["status"]


def _final(c: AEPClient, run_id: str) -> dict:
    def done() -> dict | None:
        run = ok(c.get(f"{FS}/runs/{run_id}"), 200)["items"][0]
        return run if _status(run) in RunOutcome.ALL else None

    return wait_for(done)


def _on_demand(c: AEPClient, flow_id: str, window: tuple[int, int] | None = None) -> str:
    now = int(time.time())
    start, end = window or (now - 3600, now)
    params = {"startTime": now, "windowStartTime": start, "windowEndTime": end, "deltaColumn": {"name": "OrderDate"}}
    return ok(c.post(f"{FS}/runs", json={"flowId": flow_id, "params": params}), 201)["items"][0]["id"]


def _once_flow(c: AEPClient, name: str = "once-flow") -> str:
    return create_flow(c, pipeline(c, name), {"startTime": int(time.time()) + 3600, "frequency": "once"}, name=name)


def _batch_id(run: dict) -> str:
    (promotion,) = [a for a in run["activities"] if a["name"] == "Promotion Activity"]
    (target,) = promotion["targetInfo"]
    (batch_id,) = target["reference"]["ids"]
    return batch_id


# ---------------------------------------------------------------- rejected rows and diagnostics
def test_a_success_with_rejected_rows_has_a_batch_and_row_errors(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, "success", failed_records=7)
    run = _final(client, _on_demand(client, flow_id))
    records = run["metrics"]["recordSummary"]
    assert _status(run) == "success"
    assert records["failedRecordCount"] == 7
    assert records["outputRecordCount"] == records["inputRecordCount"] - 7
    assert [e["code"] for e in run["metrics"]["statusSummary"]["errors"]] == ["INGEST-1212-400"]

    batch_id = _batch_id(run)
    answer = ok(client.get(f"{CAT}/batches/{batch_id}"), 200)
    conforms(answer, "catalog.yaml", {"type": "object", "additionalProperties": component("batchResponse")})
    batch = answer[batch_id]
    assert batch["status"] == "success"
    assert (batch["recordCount"], batch["failedRecordCount"]) == (records["inputRecordCount"], 7)
    assert batch["metrics"] == {
        "inputRecordCount": records["inputRecordCount"],
        "outputRecordCount": records["outputRecordCount"],
        "failedRecordCount": 7,
    }
    (dataset_id,) = emu.snapshot()["prod"]["datasets"]
    assert batch["relatedObjects"] == [{"type": "dataSet", "id": dataset_id}]
    by_code = {e["code"]: e.get("recordCount") for e in batch["errors"]}
    assert by_code["INGEST-1401-400"] + by_code["INGEST-1555-400"] == 7

    listing = ok(client.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": "row_errors"}), 200)
    conforms(listing, "data-access.yaml", component("metadata"))
    names = [entry["name"] for entry in listing["data"]]
    assert len(names) == listing["_page"]["count"] == 7
    for entry in listing["data"]:
        href = entry["_links"]["self"]["href"]
        assert href.startswith(f"{emu.base_url}{EXPORT}/batches/{batch_id}/meta?path=row_errors%2F")
        row = ok(client.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": f"row_errors/{entry['name']}"}), 200)
        conforms(row, "data-access.yaml", component("metadata"))
        ((code, message),) = [(e["code"], e["message"]) for e in row["_errors"]]
        assert code in ("1401", "1555") and message


def test_a_share_of_rows_and_the_first_hundred_row_error_files(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, "partialSuccess", failed_records=0.5)
    run = _final(client, _on_demand(client, flow_id))
    records = run["metrics"]["recordSummary"]
    assert _status(run) == "partialSuccess"
    assert records["failedRecordCount"] == round(records["inputRecordCount"] * 0.5)
    listing = ok(client.get(f"{EXPORT}/batches/{_batch_id(run)}/meta", params={"path": "row_errors"}), 200)
    assert len(listing["data"]) == 100  # at least 250 rejected rows; Data Access lists at most 100


def test_a_run_failed_at_promotion_has_a_failed_batch(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, "failed", failed_records=3)
    run = _final(client, _on_demand(client, flow_id))
    assert _status(run) == "failed"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == 0
    assert {a["name"]: a["statusSummary"]["status"] for a in run["activities"]} == {
        "Copy Activity": "success",
        "Promotion Activity": "failed",
    }
    batch = ok(client.get(f"{CAT}/batches/{_batch_id(run)}"), 200)[_batch_id(run)]
    assert (batch["status"], batch["failedRecordCount"]) == ("failed", 3)
    listing = ok(client.get(f"{EXPORT}/batches/{_batch_id(run)}/meta", params={"path": "row_errors"}), 200)
    assert len(listing["data"]) == 3


def test_a_copy_failure_writes_no_batch_and_unknown_paths_are_404(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, ["failed", "success"])
    failed = _final(client, _on_demand(client, flow_id))
    assert [a["name"] for a in failed["activities"]] == ["Copy Activity"]
    succeeded = _final(client, _on_demand(client, flow_id))
    batch_id = _batch_id(succeeded)
    listing = ok(client.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": "row_errors"}), 200)
    assert listing["data"] == [] and listing["_page"]["count"] == 0
    ok(client.get(f"{CAT}/batches/NOSUCHBATCH"), 404)
    ok(client.get(f"{EXPORT}/batches/NOSUCHBATCH/meta", params={"path": "row_errors"}), 404)
    ok(client.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": "row_errors/nope.json"}), 404)
    ok(client.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": "input_files"}), 404)


def test_no_batch_before_the_run_finishes() -> None:
    with AEPEmulator(time_scale=3600, run_start_delay=36000) as emu:  # runs stay scheduled for 10 s
        c = AEPClient(emu)
        flow_id = _once_flow(c)
        run_id = _on_demand(c, flow_id)
        (batch_id,) = emu.store.sandbox("prod").batch_runs  # the id it will have, from the emulator's index
        ok(c.get(f"{CAT}/batches/{batch_id}"), 404)
        ok(c.get(f"{EXPORT}/batches/{batch_id}/meta", params={"path": "row_errors"}), 404)
        assert _status(ok(c.get(f"{FS}/runs/{run_id}"), 200)["items"][0]) == "scheduled"
        c.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_failed_records_must_be_a_count_or_a_share(emu: AEPEmulator, bad: Any) -> None:
    with pytest.raises(ValueError, match="failed_records"):
        emu.set_flow_outcome("x", "success", failed_records=bad)


# ---------------------------------------------------------------- RE_TRIGGER
def test_re_trigger_starts_a_new_run_for_the_same_window(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, ["failed", "success"])
    window = (int(time.time()) - 7200, int(time.time()) - 3600)
    failed = _final(client, _on_demand(client, flow_id, window))
    answer = ok(client.post(f"{FS}/runs/{failed['id']}/action", params={"op": "RE_TRIGGER"}), 200)
    conforms(answer, "flow-service.yaml", component("FlowRunItemDTO"))
    assert answer["id"] != failed["id"] and answer["flowId"] == flow_id
    assert (answer["params"]["windowStartTime"], answer["params"]["windowEndTime"]) == window
    rerun = _final(client, answer["id"])
    assert _status(rerun) == "success"
    assert rerun["activities"][0]["durationSummary"]["extensions"] == {
        "windowStart": window[0] * 1000,
        "windowEnd": window[1] * 1000,
    }
    assert _status(ok(client.get(f"{FS}/runs/{failed['id']}"), 200)["items"][0]) == "failed"


def test_re_trigger_refusals(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    succeeded = _final(client, _on_demand(client, flow_id))
    refused = ok(client.post(f"{FS}/runs/{succeeded['id']}/action", params={"op": "RE_TRIGGER"}), 400)
    assert refused["type"].endswith("FLOW-1422-400") and "success" in refused["errorMessage"]
    assert ok(client.post(f"{FS}/runs/nope/action", params={"op": "RE_TRIGGER"}), 404)["type"].endswith("FLOW-1439-404")
    bad_op = ok(client.post(f"{FS}/runs/{succeeded['id']}/action", params={"op": "CANCEL"}), 400)
    assert bad_op["type"].endswith("FLOW-1434-400")

    emu.set_flow_outcome(flow_id, "failed")
    failed = _final(client, _on_demand(client, flow_id))
    stale = ok(
        client.post(f"{FS}/runs/{failed['id']}/action", params={"op": "RE_TRIGGER"}, headers={"If-Match": '"old"'}),
        412,
    )
    assert stale["type"].endswith("FLOW-1404-412")
    ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "DISABLE"}), 200)
    disabled = ok(client.post(f"{FS}/runs/{failed['id']}/action", params={"op": "RE_TRIGGER"}), 400)
    assert disabled["type"].endswith("FLOW-1444-400")


def test_a_re_trigger_whose_answer_is_lost_still_committed(emu: AEPEmulator, client: AEPClient) -> None:
    flow_id = _once_flow(client)
    emu.set_flow_outcome(flow_id, "failed")
    failed = _final(client, _on_demand(client, flow_id))
    emu.faults = FaultConfig(drop_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):  # committed, then the connection closes without an answer
        client.post(f"{FS}/runs/{failed['id']}/action", params={"op": "RE_TRIGGER"})
    emu.faults = FaultConfig()
    runs = ok(client.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"}), 200)["items"]
    assert [r["id"] == failed["id"] for r in runs] == [True, False]
    assert runs[1]["params"] == failed["params"]
    assert [r.fault for r in emu.request_log if r.path.endswith("/action")] == ["drop_after_commit"]


# ---------------------------------------------------------------- flow states
def test_enable_and_disable_take_the_specs_op_values_and_check_the_etag(client: AEPClient) -> None:
    flow_id = _once_flow(client)
    flow = ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]
    stale = ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "DISABLE"}, headers={"If-Match": '"x"'}), 412)
    assert stale["type"].endswith("FLOW-1404-412")
    answer = ok(
        client.post(f"{FS}/flows/{flow_id}/action", params={"op": "DISABLE"}, headers={"If-Match": flow["etag"]}), 200
    )
    conforms(answer, "flow-service.yaml", component("CreateFlowResponse"))
    assert answer["etag"] != flow["etag"]
    assert ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["state"] == "disabled"
    refused = ok(
        client.post(
            f"{FS}/runs",
            json={"flowId": flow_id, "params": {"startTime": 1, "windowStartTime": 1, "windowEndTime": 2}},
        ),
        400,
    )
    assert refused["type"].endswith("FLOW-1444-400")
    ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "ENABLE"}), 200)
    assert ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["state"] == "enabled"


def test_a_disabled_flow_gets_no_scheduled_runs_until_enabled(emu: AEPEmulator, client: AEPClient) -> None:
    # minute/15 at 3600x: a slot every 0.25 real seconds.
    flow_id = create_flow(
        client, pipeline(client), {"startTime": int(time.time()), "frequency": "minute", "interval": 15}
    )
    ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "DISABLE"}), 200)

    def runs() -> list[dict]:
        return ok(client.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"}), 200)["items"]

    before = len(runs())
    time.sleep(0.8)
    assert len(runs()) == before
    ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "ENABLE"}), 200)
    wait_for(lambda: len(runs()) > before, timeout=5)
