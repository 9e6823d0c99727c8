"""AEPAsyncHook alone: its clients, the non-blocking connection lookup, and config before a call.

The transport policy both hooks share is tested once for both drivers in test_client_core.py.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from airflow_provider_aep.exceptions import AEPConnectionConfigError
from airflow_provider_aep.hooks import aep_async
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from tests.conftest import CLIENT_ID, ORG_ID, conn_json
from tests.fake_aep import FakeAEP

RUN = {"items": [{"id": "r1", "flowId": "f1", "createdAt": 1, "metrics": {"statusSummary": {"status": "success"}}}]}


async def test_a_hook_with_its_own_transport_keeps_one_client_and_closes_it_on_exit(aep_conn):
    fake = FakeAEP()
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(200, json=RUN))
    async with AEPAsyncHook(transport=fake.transport) as hook:
        client = hook.client
        await hook.get_run("r1")
        await hook.get_run("r1")
        assert hook.client is client
    assert client.is_closed


async def test_hooks_without_a_transport_share_the_loops_client_and_leave_it_open(aep_conn):
    async with AEPAsyncHook() as first, AEPAsyncHook() as second:
        assert first.client is second.client
    assert not first.client.is_closed


async def test_the_loops_client_is_built_once_and_off_the_loop_when_hooks_first_read_their_connection(
    aep_conn, monkeypatch
):
    built_by: list[int] = []

    def recording_new_client() -> httpx.AsyncClient:
        built_by.append(threading.get_ident())
        return real_new_client()

    real_new_client = aep_async._new_client
    monkeypatch.setattr(aep_async, "_new_client", recording_new_client)
    hooks = [AEPAsyncHook() for _ in range(3)]
    await asyncio.gather(*(h.get_config() for h in hooks))
    assert len(built_by) == 1 and built_by[0] != threading.get_ident()  # its SSL context reads the CA bundle
    assert {id(h.client) for h in hooks} == {id(hooks[0].client)}
    await hooks[0].client.aclose()


def test_each_event_loop_gets_its_own_shared_client(aep_conn):
    async def client_of_a_hook() -> httpx.AsyncClient:
        async with AEPAsyncHook() as hook:
            return hook.client

    assert asyncio.run(client_of_a_hook()) is not asyncio.run(client_of_a_hook())


@pytest.mark.skipif(
    not hasattr(aep_async.BaseHook, "aget_connection"),
    reason="this Airflow has no async connection API; the thread fallback is tested below",
)
async def test_the_connection_is_read_through_the_async_api_once_per_hook(aep_conn, monkeypatch):
    calls: list[str] = []
    real = aep_async.BaseHook.aget_connection

    async def spy(conn_id):
        calls.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(aep_async.BaseHook, "aget_connection", spy)
    monkeypatch.setattr(aep_async.BaseHook, "get_connection", lambda conn_id: pytest.fail("sync lookup used"))
    async with AEPAsyncHook(transport=FakeAEP().transport) as hook:
        config = await hook.get_config()
        await hook.get_config()
    assert calls == ["aep_default"]
    assert config.org_id == ORG_ID


async def test_without_aget_connection_the_sync_lookup_runs_in_a_thread(aep_conn, monkeypatch):
    monkeypatch.delattr(aep_async.BaseHook, "aget_connection", raising=False)
    conn = await aep_async.aget_connection("aep_default")
    assert conn.login == CLIENT_ID


async def test_a_bad_connection_raises_the_config_error_before_any_request(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json(org_id="not-an-org"))
    fake = FakeAEP()
    async with AEPAsyncHook(transport=fake.transport) as hook:
        with pytest.raises(AEPConnectionConfigError, match="org_id"):
            await hook.get_run("r1")
    assert fake.requests == []


async def test_config_is_there_once_a_call_has_read_it(aep_conn):
    hook = AEPAsyncHook(transport=FakeAEP().transport)
    with pytest.raises(RuntimeError, match="get_config"):
        hook.config  # noqa: B018
    await hook.get_config()
    assert hook.dataflow_url("f1", "r1").endswith(f"@{ORG_ID}/sname:dev/platform/source/dataflows/f1/activity/r1")
