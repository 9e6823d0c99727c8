"""Fault injection, latency, token expiry, request log and snapshot."""

from __future__ import annotations

import time

import pytest
import requests
from emulator_helpers import (
    CAT,
    FS,
    ODATA,
    AEPClient,
    create_flow,
    fetch_token,
    ok,
    pipeline,
)

from airflow_provider_aep.testing import AEPEmulator, FaultConfig

CONN_BODY = {
    "name": "c",
    "auth": {"specName": "Anonymous Authentication", "params": {"url": "https://x"}},
    "connectionSpec": {"id": ODATA, "version": "1.0"},
}


def test_429_has_retry_after_and_gateway_body(emu: AEPEmulator, client: AEPClient) -> None:
    emu.faults = FaultConfig(rate=1.0, statuses=(429,), retry_after=3)
    r = client.post(f"{FS}/connections", json=CONN_BODY)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json() == {"error_code": "429050", "message": "Too many requests"}
    record = emu.request_log[-1]
    assert (record.fault, record.status, record.path) == ("429", 429, f"{FS}/connections")
    emu.faults = None
    assert emu.snapshot()["prod"]["connections"] == {}  # answered before doing anything


@pytest.mark.parametrize(
    ("status", "path", "check"),
    [
        (500, f"{FS}/flows", lambda b: b["type"].endswith("FLOW-1102-500")),
        (503, f"{FS}/flows", lambda b: b["type"].endswith("FLOW-1103-503")),
        (502, f"{FS}/flows", lambda b: b["error_code"] == "502000"),
        (500, f"{CAT}/dataSets", lambda b: b["status"] == 500 and b["title"]),
        (503, f"{CAT}/dataSets", lambda b: b["status"] == 503),
    ],
)
def test_5xx_bodies(emu: AEPEmulator, client: AEPClient, status: int, path: str, check) -> None:
    emu.faults = FaultConfig(rate=1.0, statuses=(status,))
    r = client.get(path)
    assert r.status_code == status and check(r.json())
    assert emu.request_log[-1].fault == str(status)


def test_faults_hit_before_auth_and_never_hit_ims(emu: AEPEmulator) -> None:
    emu.faults = FaultConfig(rate=1.0, statuses=(503,))
    assert requests.get(emu.base_url + f"{FS}/flows").status_code == 503
    fetch_token(emu)  # IMS is never faulted
    assert emu.request_log[-1].fault is None


def test_fault_rate_is_a_fraction_and_seed_reproducible() -> None:
    def sequence(seed: int) -> list[int]:
        with AEPEmulator(faults=FaultConfig(rate=0.3, seed=seed)) as emu:
            c = AEPClient(emu)
            return [c.get(f"{FS}/connectionSpecs").status_code for _ in range(120)]

    a, b, other = sequence(42), sequence(42), sequence(43)
    assert a == b and a != other
    faults = [s for s in a if s != 200]
    assert 15 <= len(faults) <= 60 and set(faults) <= {429, 500, 502, 503} and len(set(faults)) >= 3


def test_drop_after_commit(emu: AEPEmulator, client: AEPClient) -> None:
    emu.faults = FaultConfig(drop_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        client.post(f"{FS}/connections", json=CONN_BODY)
    assert ok(client.get(f"{FS}/connections"), 200)["items"][0]["name"] == "c"  # reads are never dropped
    record = next(r for r in emu.request_log if r.method == "POST" and r.path.endswith("/connections"))
    assert (record.fault, record.status) == ("drop_after_commit", 201)
    emu.faults = FaultConfig()
    assert len(emu.snapshot()["prod"]["connections"]) == 1  # committed exactly once


def test_drop_only_applies_to_successful_creates(emu: AEPEmulator, client: AEPClient) -> None:
    emu.faults = FaultConfig(drop_after_commit_rate=1.0)
    assert client.post(f"{FS}/connections", json={"name": "no spec"}).status_code == 400
    assert client.delete(f"{FS}/connections/missing").status_code == 404


def test_latency(emu: AEPEmulator, client: AEPClient) -> None:
    emu.latency = 0.2
    start = time.monotonic()
    ok(client.get(f"{FS}/flows"), 200)
    assert time.monotonic() - start >= 0.2


def test_token_ttl_forces_expiry_mid_dag() -> None:
    with AEPEmulator(token_ttl=0.5) as emu:
        c = AEPClient(emu)
        ok(c.get(f"{FS}/flows"), 200)
        time.sleep(0.6)
        assert ok(c.get(f"{FS}/flows"), 401)["error_code"] == "401013"
        c.s.headers["Authorization"] = f"Bearer {fetch_token(emu)}"
        ok(c.get(f"{FS}/flows"), 200)


def test_request_log_and_snapshot(emu: AEPEmulator, client: AEPClient) -> None:
    emu.reset_log()
    p = pipeline(client)
    flow_id = create_flow(client, p)
    log = emu.request_log
    posts = [(r.method, r.service) for r in log if r.method == "POST"]
    assert posts.count(("POST", "flowservice")) == 4 and all(r.status < 300 for r in log)
    assert all(r.sandbox == "prod" and r.timestamp > 0 for r in log)
    snap = emu.snapshot()["prod"]
    assert set(snap) == {
        "classes",
        "schemas",
        "fieldgroups",
        "datasets",
        "connections",
        "sourceConnections",
        "targetConnections",
        "mappingSets",
        "flows",
        "runs",
    }
    assert {k: len(v) for k, v in snap.items() if v} == {
        "schemas": 1,
        "datasets": 1,
        "connections": 1,
        "sourceConnections": 1,
        "targetConnections": 1,
        "mappingSets": 1,
        "flows": 1,
        "runs": 1,
    }
    assert snap["flows"][flow_id]["name"] == "Protocols dataflow"
    snap["flows"][flow_id]["name"] = "mutated"  # a deep copy
    assert emu.snapshot()["prod"]["flows"][flow_id]["name"] == "Protocols dataflow"
    emu.reset_log()
    assert emu.request_log == []
