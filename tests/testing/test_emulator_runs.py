"""Run lifecycle: schedules, statuses, metrics, outcomes, on-demand runs, run queries."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from emulator_helpers import FS, AEPClient, create_flow, ok, pipeline, wait_for

from airflow_provider_aep.testing import AEPEmulator, RunOutcome


def _runs(c: AEPClient, flow_id: str, **params: object) -> list[dict]:
    return ok(c.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}", **params}), 200)["items"]


def _status(run: dict) -> str:
    return run["metrics"]["statusSummary"]["status"]


def _final(c: AEPClient, run_id: str) -> dict:
    def done() -> dict | None:
        run = ok(c.get(f"{FS}/runs/{run_id}"), 200)["items"][0]
        return run if _status(run) in RunOutcome.ALL else None

    return wait_for(done)


def _once_flow(c: AEPClient, p: dict, name: str = "once-flow", start: int | None = None) -> str:
    return create_flow(c, p, {"startTime": start or int(time.time()), "frequency": "once"}, name=name)


@pytest.fixture
def slow_start() -> Iterator[AEPClient]:
    """Runs sit 0.5 s in 'scheduled' and at least 0.8 s in 'inProgress'."""
    with AEPEmulator(time_scale=3600, run_start_delay=1800, min_run_seconds=0.8) as emu:
        c = AEPClient(emu)
        yield c
        c.close()


def test_lifecycle_scheduled_in_progress_success(slow_start: AEPClient) -> None:
    c = slow_start
    p = pipeline(c)
    flow_id = _once_flow(c, p)
    run = wait_for(lambda: (_runs(c, flow_id) or [None])[0])
    assert _status(run) == "scheduled"
    assert "startedAtUTC" not in run["metrics"]["durationSummary"] and run["activities"] == []

    def in_progress() -> dict | None:
        r = ok(c.get(f"{FS}/runs/{run['id']}"), 200)["items"][0]
        return r if _status(r) == "inProgress" else None

    first = wait_for(in_progress)
    assert (
        "completedAtUTC" not in first["metrics"]["durationSummary"]
        and first["metrics"]["durationSummary"]["startedAtUTC"] > 0
    )
    time.sleep(0.2)
    second = ok(c.get(f"{FS}/runs/{run['id']}"), 200)["items"][0]
    if _status(second) == "inProgress":
        assert (
            second["metrics"]["recordSummary"]["inputRecordCount"]
            >= first["metrics"]["recordSummary"]["inputRecordCount"]
        )

    final = _final(c, run["id"])
    m = final["metrics"]
    assert _status(final) == "success" and "errors" not in m["statusSummary"]
    assert m["durationSummary"]["completedAtUTC"] > m["durationSummary"]["startedAtUTC"] >= final["createdAt"]
    rs = m["recordSummary"]
    assert (
        rs["inputRecordCount"] == rs["outputRecordCount"] == rs["createdRecordCount"] > 0
        and rs["failedRecordCount"] == 0
    )
    assert m["sizeSummary"]["inputBytes"] > 0 and m["fileSummary"]["inputFileCount"] >= 1
    assert final["etag"] != run["etag"] and final["flowSpec"]["id"] and final["sandboxName"] == "prod"
    # Real epoch milliseconds.
    assert abs(final["createdAt"] / 1000 - time.time()) < 30
    details = ok(c.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["lastRunDetails"]
    assert details == {
        "id": run["id"],
        "state": "success",
        "startedAtUTC": m["durationSummary"]["startedAtUTC"],
        "completedAtUTC": m["durationSummary"]["completedAtUTC"],
    }


def test_runs_follow_the_schedule(emu: AEPEmulator, client: AEPClient) -> None:
    # minute/15 at 3600x: a run every 0.25 real seconds.
    p = pipeline(client)
    flow_id = create_flow(client, p, {"startTime": int(time.time()) - 86400, "frequency": "minute", "interval": 15})
    runs = wait_for(lambda: (lambda rs: rs if len(rs) >= 3 else None)(_runs(client, flow_id)), timeout=5)
    created = [r["createdAt"] for r in runs]
    assert created == sorted(created)
    assert all(abs((b - a) - 250) <= 2 for a, b in itertools.pairwise(created))
    newest = _runs(client, flow_id, orderby="-createdAt")
    assert newest[0]["createdAt"] == max(r["createdAt"] for r in newest)


def test_future_start_time_and_disabled_flows_have_no_runs(client: AEPClient) -> None:
    p = pipeline(client)
    future = create_flow(
        client, p, {"startTime": int(time.time()) + 3600, "frequency": "minute", "interval": 15}, name="future"
    )
    now_flow = create_flow(
        client, p, {"startTime": int(time.time()), "frequency": "minute", "interval": 15}, name="now"
    )
    ok(client.post(f"{FS}/flows/{now_flow}/action", params={"op": "disable"}), 200)
    count = len(_runs(client, now_flow))
    time.sleep(0.6)
    assert _runs(client, future) == [] and len(_runs(client, now_flow)) == count <= 1


@pytest.mark.parametrize("key", ["id", "name"])
def test_failed_outcome(emu: AEPEmulator, client: AEPClient, key: str) -> None:
    p = pipeline(client)
    flow_id = _once_flow(client, p, name="to-fail")
    emu.set_flow_outcome(flow_id if key == "id" else "to-fail", "failed")
    run = _final(client, wait_for(lambda: (_runs(client, flow_id) or [None])[0])["id"])
    assert _status(run) == "failed"
    assert [e["code"] for e in run["metrics"]["statusSummary"]["errors"]] == ["CONNECTOR-1001-500"]
    activity_errors = [e["code"] for a in run["activities"] for e in a["statusSummary"].get("errors", [])]
    assert "CONNECTOR-1001-500" in activity_errors
    assert (
        run["metrics"]["recordSummary"]["outputRecordCount"] == 0
        and "completedAtUTC" in run["metrics"]["durationSummary"]
    )
    assert ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["lastRunDetails"]["state"] == "failed"
    failed = ok(
        client.get(f"{FS}/runs", params={"property": [f"flowId=={flow_id}", "metrics.statusSummary.status==failed"]}),
        200,
    )
    assert [r["id"] for r in failed["items"]] == [run["id"]]


def test_partial_success_outcome(emu: AEPEmulator, client: AEPClient) -> None:
    emu.set_default_outcome("partialSuccess")
    p = pipeline(client)
    flow_id = _once_flow(client, p)
    run = _final(client, wait_for(lambda: (_runs(client, flow_id) or [None])[0])["id"])
    rs = run["metrics"]["recordSummary"]
    assert _status(run) == "partialSuccess"
    assert rs["failedRecordCount"] > 0 and rs["outputRecordCount"] == rs["inputRecordCount"] - rs["failedRecordCount"]
    assert run["metrics"]["statusSummary"]["errors"][0]["recordCount"] == rs["failedRecordCount"]


def test_outcome_sequence_and_validation(emu: AEPEmulator, client: AEPClient) -> None:
    with pytest.raises(ValueError):
        emu.set_flow_outcome("x", "exploded")
    p = pipeline(client)
    flow_id = _once_flow(client, p, start=int(time.time()) + 3600)  # no automatic run yet
    emu.set_flow_outcome(flow_id, ["failed", "success"])
    now = int(time.time())
    statuses = []
    for _ in range(3):
        run_id = ok(
            client.post(
                f"{FS}/runs",
                json={
                    "flowId": flow_id,
                    "params": {
                        "startTime": now,
                        "windowStartTime": now - 60,
                        "windowEndTime": now,
                        "deltaColumn": {"name": "OrderDate"},
                    },
                },
            ),
            201,
        )["items"][0]["id"]
        statuses.append(_status(_final(client, run_id)))
    assert statuses == ["failed", "success", "success"]


def test_on_demand_run_rules(client: AEPClient) -> None:
    p = pipeline(client)
    scheduled = create_flow(
        client, p, {"startTime": int(time.time()), "frequency": "hour", "interval": 1}, name="hourly"
    )
    once = _once_flow(client, p, start=int(time.time()) + 3600)
    now = int(time.time())
    params = {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now}
    err = ok(client.post(f"{FS}/runs", json={"flowId": scheduled, "params": params}), 400)
    assert err["type"].endswith("FLOW-1100-400") and "once" in err["errorMessage"]
    assert ok(client.post(f"{FS}/runs", json={"params": params}), 400)["type"].endswith("FLOW-1446-400")
    assert ok(client.post(f"{FS}/runs", json={"flowId": "nope", "params": params}), 400)["type"].endswith(
        "FLOW-1430-400"
    )
    ok(client.post(f"{FS}/runs", json={"flowId": once, "params": {"startTime": now}}), 400)
    first_run = ok(client.post(f"{FS}/runs", json={"flowId": once, "params": params}), 400)
    assert "params.deltaColumn is required on the first run" in first_run["errorMessage"]
    created = ok(
        client.post(f"{FS}/runs", json={"flowId": once, "params": {**params, "deltaColumn": {"name": "OrderDate"}}}),
        201,
    )
    ok(client.post(f"{FS}/runs", json={"flowId": once, "params": {**params, "deltaColumn": {"name": "other"}}}), 400)
    ok(client.post(f"{FS}/runs", json={"flowId": once, "params": params}), 201)  # later runs may leave it out
    run = ok(client.get(f"{FS}/runs/{created['items'][0]['id']}"), 200)["items"][0]
    assert run["flowId"] == once and run["params"]["windowStartTime"] == now - 3600
    assert run["activities"] == [] or run["activities"][0]["durationSummary"]["extensions"]["windowEnd"] == now * 1000
    assert ok(client.get(f"{FS}/runs/nope"), 404)["type"].endswith("FLOW-1439-404")


def test_runs_time_window_filter(client: AEPClient) -> None:
    p = pipeline(client)
    flow_id = _once_flow(client, p, start=int(time.time()) + 3600)
    now = int(time.time())
    params = {"startTime": now, "windowStartTime": now - 60, "windowEndTime": now, "deltaColumn": {"name": "OrderDate"}}
    first = ok(client.post(f"{FS}/runs", json={"flowId": flow_id, "params": params}), 201)["items"][0]["id"]
    started = _final(client, first)["metrics"]["durationSummary"]["startedAtUTC"]
    second = ok(client.post(f"{FS}/runs", json={"flowId": flow_id, "params": params}), 201)["items"][0]["id"]
    _final(client, second)
    later = _runs(client, flow_id, property=[f"flowId=={flow_id}", f"metrics.durationSummary.startedAtUTC>{started}"])
    assert [r["id"] for r in later] == [second]
    assert [r["id"] for r in _runs(client, flow_id, orderby="-createdAt")] == [second, first]
    assert {r["id"] for r in ok(client.get(f"{FS}/runs"), 200)["items"]} >= {first, second}
