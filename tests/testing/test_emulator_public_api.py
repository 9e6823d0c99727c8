"""Public surface: lifecycle, connection helpers, pytest fixture, CLI, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from emulator_helpers import FS, AEPClient, fetch_token, ok

from airflow_provider_aep.testing import AEPEmulator, FaultConfig

REPO = Path(__file__).resolve().parents[2]


def test_context_manager_start_stop() -> None:
    emu = AEPEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    with emu:
        assert emu.running and emu.base_url.startswith("http://127.0.0.1:") and emu.port > 0
        fetch_token(emu)
        url = emu.base_url
    assert not emu.running
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/ims/token/v3", timeout=2)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        AEPEmulator(time_scale=0)
    with pytest.raises(ValueError):
        AEPEmulator(default_outcome="boom")
    with pytest.raises(ValueError):
        FaultConfig(rate=2)
    with pytest.raises(ValueError):
        FaultConfig(statuses=(418,))


def test_connection_helpers(emu: AEPEmulator) -> None:
    extra = emu.connection_extra("dev")
    assert extra == {"org_id": emu.org_id, "sandbox": "dev", "ims_url": emu.base_url, "platform_url": emu.base_url}
    as_json = json.loads(emu.connection_json())
    assert as_json == {
        "conn_type": "aep",
        "login": emu.client_id,
        "password": emu.client_secret,
        "extra": emu.connection_extra(),
    }
    connection_module = pytest.importorskip("airflow.models.connection")
    conn = connection_module.Connection(conn_id="aep_default", uri=emu.connection_uri())
    assert (conn.conn_type, conn.login, conn.password) == ("aep", emu.client_id, emu.client_secret)
    assert conn.extra_dejson == emu.connection_extra()


def test_issue_token_and_headers(emu: AEPEmulator) -> None:
    ok(requests.get(emu.base_url + f"{FS}/flows", headers=emu.headers()), 200)
    emu.revoke_tokens()
    headers = emu.headers(token="stale")
    assert ok(requests.get(emu.base_url + f"{FS}/flows", headers=headers), 401)["error_code"] == "401013"


@pytest.mark.aep_emulator(time_scale=120.0, tenant_id="markertenant")
def test_pytest_fixture_takes_marker_kwargs(aep_emulator: AEPEmulator) -> None:
    assert aep_emulator.running and aep_emulator.time_scale == 120.0
    c = AEPClient(aep_emulator)
    assert ok(c.get("/data/foundation/schemaregistry/stats"), 200)["tenantId"] == "markertenant"


def test_cli_prints_base_url_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_aep.testing", "--port", "0", "--sandbox", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        conn_line = proc.stdout.readline()
        assert conn_line.startswith("AIRFLOW_CONN_AEP_DEFAULT=") and '"sandbox": "dev"' in conn_line
        r = requests.post(
            base_url + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": "emulator-client-id",
                "client_secret": "emulator-client-secret",
            },
            timeout=5,
        )
        assert r.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_concurrent_keep_alive_clients() -> None:
    """300 clients, each on its own keep-alive connection, polling at the same time."""
    n, calls = 300, 3
    with AEPEmulator(time_scale=3600) as emu:
        token = emu.issue_token()
        headers = emu.headers(token=token)
        barrier = threading.Barrier(n)
        statuses: list[int] = []
        lock = threading.Lock()
        sessions: list[requests.Session] = []

        def worker() -> None:
            s = requests.Session()
            s.headers.update(headers)
            with lock:
                sessions.append(s)
            barrier.wait(timeout=30)
            got = [s.get(emu.base_url + f"{FS}/flowSpecs", timeout=30).status_code for _ in range(calls)]
            with lock:
                statuses.extend(got)

        before = emu.connection_count
        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        try:
            assert statuses == [200] * (n * calls)
            # One TCP connection per client: keep-alive reused it for every call, and all are still open.
            assert emu.connection_count - before == n
            assert emu.open_connections == n
        finally:
            for s in sessions:
                s.close()
