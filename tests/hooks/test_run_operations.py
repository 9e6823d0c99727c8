"""
The operations behind re-triggers, flow states, diagnostics and the teardown's mapping-set delete, proven once
for both drivers (``AEPHook`` and
``AEPAsyncHook``) against the scripted AEP: what is sent, what is looked up first, and what a failure means.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.utils.diagnostics import collect_diagnostics
from tests.hooks.conftest import Driver

FS = "/data/foundation/flowservice"
CAT = "/data/foundation/catalog"
CONV = "/data/foundation/conversion"
EXPORT = "/data/foundation/export"
WINDOW = {"windowStartTime": 1_704_067_200, "windowEndTime": 1_704_070_800}


def run(run_id: str, status: str = "failed", created: int = 1_000, window: dict | None = WINDOW) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run_id,
        "flowId": "f1",
        "createdAt": created,
        "metrics": {"statusSummary": {"status": status}},
    }
    if window is not None:
        body["params"] = {"startTime": 1, **window}
    return body


def listing(*runs: dict) -> httpx.Response:
    return httpx.Response(200, json={"items": list(runs), "_links": {}})


async def drive(hook: Any, flow: Any) -> Any:
    if isinstance(hook, AEPHook):
        return hook.drive(flow)
    async with hook:
        return await hook.drive(flow)


def query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query.decode())


# ---------------------------------------------------------------- RE_TRIGGER
async def test_retrigger_posts_the_action_and_returns_the_run_it_answers(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1")]}))
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1")))
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.Response(200, json=run("r2", "scheduled", created=2_000)))
    assert await driver.call(hook, "retrigger_run", "r1") == "r2"
    (post,) = driver.fake.platform_calls("POST")
    assert query(post) == {"op": ["RE_TRIGGER"]} and post.content == b""


async def test_a_run_already_re_run_for_its_window_is_followed_without_posting(driver: Driver, hook):
    other_window = run("r0", "success", created=3_000, window={"windowStartTime": 1, "windowEndTime": 2})
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1")]}))
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1"), run("r2", "inProgress", created=2_000), other_window))
    assert await driver.call(hook, "retrigger_run", "r1") == "r2"
    assert driver.fake.platform_calls("POST") == []
    (lookup,) = [r for r in driver.fake.platform_calls("GET") if r.url.path == f"{FS}/runs"]
    assert query(lookup)["property"] == ["flowId==f1", "createdAt>=1000"]


async def test_a_lost_answer_to_a_retrigger_is_looked_up_before_sending_again(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1")]}))
    # The first lookup finds nothing; after the lost answer the re-run is there.
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1")), listing(run("r1"), run("r2", "scheduled", created=2_000)))
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.ReadTimeout("no answer"))
    assert await driver.call(hook, "retrigger_run", "r1") == "r2"
    assert len(driver.fake.platform_calls("POST")) == 1


async def test_after_a_lost_answer_a_new_run_that_shows_no_window_yet_counts_too(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1")]}))
    fresh = run("r2", "scheduled", created=10**13, window=None)  # no params, no activities yet
    # Before sending, a run without a window is not taken for the re-run; after the lost answer it is.
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1"), fresh))
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.ReadTimeout("no answer"))
    assert await driver.call(hook, "retrigger_run", "r1") == "r2"
    assert len(driver.fake.platform_calls("POST")) == 1


async def test_without_a_readable_window_only_a_run_created_after_sending_counts(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1", window=None)]}))
    recent = run("r2", "scheduled", created=10**13, window=None)  # created "after" the send time
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1", window=None), recent))
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.ReadTimeout("no answer"))
    assert await driver.call(hook, "retrigger_run", "r1") == "r2"
    assert len(driver.fake.platform_calls("POST")) == 1  # no look-up before it: nothing tied r2 to r1 then


async def test_a_run_without_a_window_is_re_triggered_again_and_the_log_says_why(driver: Driver, hook, caplog):
    """AEP ties a re-run to its run only by the window: without one, an earlier try's re-run cannot be found."""
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1", window=None)]}))
    earlier_try = run("r2", "inProgress", created=2_000, window=None)
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1", window=None), earlier_try))
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.Response(200, json=run("r3", "scheduled", window=None)))
    with caplog.at_level("WARNING"):
        assert await driver.call(hook, "retrigger_run", "r1") == "r3"
    assert len(driver.fake.platform_calls("POST")) == 1
    assert [r.url.path for r in driver.fake.platform_calls("GET")] == [f"{FS}/runs/r1"]  # nothing looked up
    assert (
        "AEP reports no window for flow run r1, so a re-run of it cannot be told from the other runs of flow f1: "
        "re-triggering it without looking for an earlier re-run (a retried task may re-run it twice)"
    ) in caplog.text


async def test_a_refused_retrigger_raises_aeps_error(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run("r1", "success")]}))
    driver.fake.on("GET", f"{FS}/runs", listing(run("r1", "success")))
    refusal = {"type": "https://ns.adobe.com/aep/errors/FLOW-1422-400", "title": "Invalid request", "status": 400}
    driver.fake.on("POST", f"{FS}/runs/r1/action", httpx.Response(400, json={**refusal, "errorMessage": "no"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "retrigger_run", "r1")
    assert (err.value.status, err.value.code) == (400, "FLOW-1422-400")
    assert len(driver.fake.platform_calls("POST")) == 1


# ---------------------------------------------------------------- flow state
def flow(state: str, etag: str = '"e1"') -> httpx.Response:
    return httpx.Response(200, json={"items": [{"id": "f1", "state": state, "etag": etag}]})


async def test_setting_a_flow_state_sends_the_specs_op_with_the_etag(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", flow("enabled"))
    driver.fake.on("POST", f"{FS}/flows/f1/action", httpx.Response(200, json={"id": "f1", "etag": '"e2"'}))
    assert await driver.call(hook, "set_flow_state", "f1", "disabled") is True
    (post,) = driver.fake.platform_calls("POST")
    assert query(post) == {"op": ["DISABLE"]} and post.headers["If-Match"] == '"e1"' and post.content == b""


async def test_a_flow_already_in_the_state_is_left_alone(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", flow("disabled"))
    assert await driver.call(hook, "set_flow_state", "f1", "disabled") is False
    assert driver.fake.platform_calls("POST") == []


async def test_a_stale_etag_is_read_again_and_a_done_transition_is_not_repeated(driver: Driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", flow("enabled", '"old"'), flow("disabled", '"new"'))
    stale = {"type": "https://ns.adobe.com/aep/errors/FLOW-1404-412", "status": 412, "title": "Version not matching"}
    driver.fake.on("POST", f"{FS}/flows/f1/action", httpx.Response(412, json=stale))
    assert await driver.call(hook, "set_flow_state", "f1", "disabled") is False
    assert len(driver.fake.platform_calls("POST")) == 1


# ---------------------------------------------------------------- diagnostics
SUMMARY = {
    "run_id": "r1",
    "flow_id": "f1",
    "errors": [{"code": "INGEST-1212-400", "message": "Encountered 9 errors"}],
    "batch_ids": ["B1", "B2"],
}


def batch(batch_id: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={batch_id: {"status": "success", **fields}})


def meta(files: dict[str, Any]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        path = query(request)["path"][0]
        if path == "row_errors":
            return httpx.Response(200, json={"data": [{"name": n} for n in files], "_page": {"count": len(files)}})
        content = files[path.removeprefix("row_errors/")]
        return httpx.Response(200, text=content) if isinstance(content, str) else httpx.Response(200, json=content)

    return answer


def row(code: str, message: str = "bad row") -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}], "_corrupt_record": "secret customer data"}


async def test_diagnostics_read_each_batch_and_up_to_the_asked_row_errors(driver: Driver, hook):
    driver.fake.on(
        "GET",
        f"{CAT}/batches/B1",
        batch(
            "B1",
            metrics={"inputRecordCount": 100, "outputRecordCount": 91, "failedRecordCount": 9},
            errors=[{"code": "INGEST-1401-400", "description": "corrupt", "recordCount": 9}],
        ),
    )
    driver.fake.on("GET", f"{CAT}/batches/B2", batch("B2", status="failed", recordCount=5, failedRecordCount=5))
    lines = "\n".join(json.dumps(row(f"15{i}")) for i in range(3))  # JSON lines, as large files are
    driver.fake.on("GET", f"{EXPORT}/batches/B1/meta", meta({"a.json": row("1401"), "b.json": lines}))
    driver.fake.on("GET", f"{EXPORT}/batches/B2/meta", meta({"c.json": row("1555")}))
    found = await drive(hook, collect_diagnostics(hook, SUMMARY, rows=3))
    assert found == {
        "errors": SUMMARY["errors"],
        "batch_ids": ["B1", "B2"],
        "batches": [
            {
                "id": "B1",
                "status": "success",
                "records": {"input": 100, "output": 91, "failed": 9},
                "errors": [{"code": "INGEST-1401-400", "message": "corrupt", "records": 9}],
            },
            {"id": "B2", "status": "failed", "records": {"input": 5, "output": None, "failed": 5}, "errors": []},
        ],
        "row_errors": [
            {"batch_id": "B1", "file": "a.json", "code": "1401", "message": "bad row"},
            {"batch_id": "B1", "file": "b.json", "code": "150", "message": "bad row"},
            {"batch_id": "B1", "file": "b.json", "code": "151", "message": "bad row"},
        ],
        "unavailable": [],
    }
    assert "secret customer data" not in json.dumps(found)
    meta_reads = [r for r in driver.fake.platform_calls() if "/meta" in r.url.path]
    assert [query(r)["path"][0] for r in meta_reads] == ["row_errors", "row_errors/a.json", "row_errors/b.json"]


async def test_a_diagnostics_read_that_fails_is_noted_and_the_rest_still_read(driver: Driver, hook, caplog):
    driver.fake.on("GET", f"{CAT}/batches/B1", httpx.Response(404, json={"title": "NotFoundError", "detail": "gone"}))
    driver.fake.on("GET", f"{CAT}/batches/B2", batch("B2"))
    driver.fake.on("GET", f"{EXPORT}/batches/B1/meta", httpx.Response(500, json={"detail": "down"}))
    driver.fake.on("GET", f"{EXPORT}/batches/B2/meta", meta({"c.json": row("1555")}))
    found = await drive(hook, collect_diagnostics(hook, SUMMARY, rows=5))
    assert [b["id"] for b in found["batches"]] == ["B2"]
    assert found["row_errors"] == [{"batch_id": "B2", "file": "c.json", "code": "1555", "message": "bad row"}]
    assert [u.split(":")[0] for u in found["unavailable"]] == ["Catalog batch B1", "the row errors of batch B1"]
    assert "Could not read Catalog batch B1" in caplog.text


async def test_no_row_errors_asked_reads_only_the_batches(driver: Driver, hook):
    driver.fake.on("GET", f"{CAT}/batches/B1", batch("B1"))
    driver.fake.on("GET", f"{CAT}/batches/B2", batch("B2"))
    found = await drive(hook, collect_diagnostics(hook, SUMMARY, rows=0))
    assert found["row_errors"] == [] and len(found["batches"]) == 2
    assert [r for r in driver.fake.platform_calls() if "/export/" in r.url.path] == []


# ---------------------------------------------------------------- the mapping-set delete
@pytest.mark.parametrize(
    ("delete_answer", "get_status", "result"),
    [
        (httpx.Response(204), 404, True),
        (httpx.Response(405, json={"title": "MethodNotAllowed"}), 404, False),
        (httpx.Response(404, json={"title": "NotFoundError"}), 404, False),
        (httpx.Response(405, json={"title": "MethodNotAllowed"}), 200, None),
        (httpx.Response(404, json={"title": "NotFoundError"}), 200, None),  # no such route: not "already gone"
        (httpx.Response(204), 200, None),  # a success that did nothing
    ],
    ids=["deleted", "405-gone", "404-gone", "405-kept", "404-kept", "204-kept"],
)
async def test_a_mapping_set_delete_is_best_effort_and_a_get_decides(
    driver: Driver, hook, caplog, delete_answer, get_status, result
):
    driver.fake.on("DELETE", f"{CONV}/mappingSets/ms1", delete_answer)
    driver.fake.on("GET", f"{CONV}/mappingSets/ms1", httpx.Response(get_status, json={"id": "ms1", "version": 0}))
    with caplog.at_level("WARNING"):
        assert await driver.call(hook, "delete_mapping_set", "ms1") is result
    assert [r.method for r in driver.fake.platform_calls()] == ["DELETE", "GET"]
    assert ("Mapping set ms1 is still in AEP" in caplog.text) == (result is None)


async def test_a_mapping_set_delete_refused_otherwise_raises(driver: Driver, hook):
    driver.fake.on("DELETE", f"{CONV}/mappingSets/ms1", httpx.Response(403, json={"error_code": "403027"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "delete_mapping_set", "ms1")
    assert err.value.status == 403 and driver.fake.platform_calls("GET") == []
