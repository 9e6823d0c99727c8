"""AEPAsyncHook.get_run batching: concurrent reads of one loop become GET /runs?property=id==a,b,... reads."""

from __future__ import annotations

import asyncio
import math
from urllib.parse import parse_qsl

import httpx
import pytest

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks import aep_async
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from tests.hooks.conftest import wakes_per_loop_iteration
from tests.hooks.test_aep_async_hook import FakeAEP, run_item

RUNS = "/data/foundation/flowservice/runs"


@pytest.fixture
def small_chunks(monkeypatch) -> int:
    monkeypatch.setattr(aep_async, "RUN_BATCH_SIZE", 4)
    return 4


def ids_of(request: httpx.Request) -> list[str]:
    (prop,) = [v for k, v in parse_qsl(request.url.query.decode()) if k == "property"]
    assert prop.startswith("id==")
    return prop[len("id==") :].split(",")


def list_answer(known: dict[str, dict]):
    """A Flow Service list that honours property=id==a,b,c (comma = OR); unknown ids are simply absent."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [known[i] for i in ids_of(request) if i in known], "_links": {}})

    return answer


def hooks(fake: FakeAEP, n: int, **kwargs) -> list[AEPAsyncHook]:
    transport = fake.transport  # one transport: hooks of one batch key
    return [AEPAsyncHook(retry_limit=2, retry_delay=0.01, transport=transport, **kwargs) for _ in range(n)]


def list_calls(fake: FakeAEP) -> list[httpx.Request]:
    return [r for r in fake.platform_calls() if r.url.path == RUNS]


def single_calls(fake: FakeAEP) -> list[httpx.Request]:
    return [r for r in fake.platform_calls() if r.url.path.startswith(RUNS + "/")]


async def test_concurrent_reads_become_one_list_read_per_chunk(aep_conn, fake, slept, small_chunks):
    n = 10
    known = {f"r{i}": run_item(f"r{i}", i, "inProgress" if i % 2 else "success") for i in range(n)}
    fake.on("GET", RUNS, list_answer(known))
    hs = hooks(fake, n)
    results = await asyncio.gather(*(h.get_run(f"r{i}") for i, h in enumerate(hs)))
    assert [r["id"] for r in results] == [f"r{i}" for i in range(n)]
    assert [r["metrics"]["statusSummary"]["status"] for r in results] == [
        known[f"r{i}"]["metrics"]["statusSummary"]["status"] for i in range(n)
    ]
    calls = list_calls(fake)
    assert len(calls) == math.ceil(n / small_chunks) == 3
    assert sorted(i for c in calls for i in ids_of(c)) == sorted(known)
    assert all(len(ids_of(c)) <= small_chunks for c in calls)
    assert not single_calls(fake)
    # Shared policy: every batched read carries the Platform headers.
    assert all(c.headers["x-sandbox-name"] == "dev" and c.headers["Authorization"].startswith("Bearer ") for c in calls)
    assert fake.tokens_issued == 1


async def test_list_reads_follow_next_links(aep_conn, fake, slept, small_chunks):
    known = {f"r{i}": run_item(f"r{i}", i) for i in range(3)}

    def paged(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        if params.get("continuationToken") == "page2":
            return httpx.Response(200, json={"items": [known["r2"]], "_links": {}})
        assert ids_of(request) == ["r0", "r1", "r2"]
        nxt = {"href": "/runs?continuationToken=page2"}
        return httpx.Response(200, json={"items": [known["r0"], known["r1"]], "_links": {"next": nxt}})

    fake.on("GET", RUNS, paged)
    results = await asyncio.gather(*(h.get_run(f"r{i}") for i, h in enumerate(hooks(fake, 3))))
    assert [r["id"] for r in results] == ["r0", "r1", "r2"]
    assert len(list_calls(fake)) == 2
    assert not single_calls(fake)


async def test_a_run_missing_from_the_list_is_read_directly_and_a_real_404_still_raises(aep_conn, fake, slept):
    known = {"r0": run_item("r0", 0), "r1": run_item("r1", 1)}
    fake.on("GET", RUNS, list_answer(known))
    fake.on("GET", f"{RUNS}/late", httpx.Response(200, json={"items": [run_item("late", 5)]}))
    # GET /runs/gone is not routed: the fake answers 404.
    results = await asyncio.gather(
        *(h.get_run(i) for h, i in zip(hooks(fake, 4), ["r0", "late", "r1", "gone"], strict=False)),
        return_exceptions=True,
    )
    assert results[0]["id"] == "r0" and results[2]["id"] == "r1"
    assert results[1]["id"] == "late"  # absent from the list (e.g. not yet indexed): direct read
    assert isinstance(results[3], AEPApiError) and results[3].status == 404
    assert len(list_calls(fake)) == 1
    assert sorted(r.url.path for r in single_calls(fake)) == [f"{RUNS}/gone", f"{RUNS}/late"]


async def test_an_error_of_a_list_read_reaches_every_waiter_of_its_chunk_only(aep_conn, fake, slept, small_chunks):
    known = {f"r{i}": run_item(f"r{i}", i) for i in range(6)}
    good = list_answer(known)

    def answer(request: httpx.Request) -> httpx.Response:
        if "r0" in ids_of(request):
            return httpx.Response(400, json={"title": "Bad filter", "status": 400})
        return good(request)

    fake.on("GET", RUNS, answer)
    results = await asyncio.gather(*(h.get_run(f"r{i}") for i, h in enumerate(hooks(fake, 6))), return_exceptions=True)
    assert all(isinstance(r, AEPApiError) and r.status == 400 for r in results[:4])  # the chunk of r0..r3
    assert [r["id"] for r in results[4:]] == ["r4", "r5"]
    assert not single_calls(fake)  # an error is not a "missing" run: no per-id fallback


async def test_retryable_errors_of_a_list_read_are_retried_with_the_shared_policy(aep_conn, fake, slept):
    known = {"r0": run_item("r0", 0), "r1": run_item("r1", 1)}
    fake.on("GET", RUNS, httpx.Response(503, headers={"Retry-After": "2"}, json={"title": "busy"}), list_answer(known))
    results = await asyncio.gather(*(h.get_run(i) for h, i in zip(hooks(fake, 2), ["r0", "r1"], strict=False)))
    assert [r["id"] for r in results] == ["r0", "r1"]
    assert len(list_calls(fake)) == 2
    assert slept == [2.0]


async def test_a_lone_read_is_the_direct_call(aep_conn, fake, slept):
    fake.on("GET", f"{RUNS}/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    (hook,) = hooks(fake, 1)
    assert (await hook.get_run("r1"))["id"] == "r1"
    with pytest.raises(AEPApiError) as err:
        await hook.get_run("nope")
    assert err.value.status == 404
    assert [r.url.path for r in fake.platform_calls()] == [f"{RUNS}/r1", f"{RUNS}/nope"]


async def test_two_waiters_on_one_run_share_one_id_and_get_their_own_copy(aep_conn, fake, slept):
    known = {"r0": run_item("r0", 0), "r1": run_item("r1", 1)}
    fake.on("GET", RUNS, list_answer(known))
    a, b, _c = await asyncio.gather(*(h.get_run(i) for h, i in zip(hooks(fake, 3), ["r0", "r0", "r1"], strict=False)))
    assert a == b and a is not b
    assert ids_of(list_calls(fake)[0]) == ["r0", "r1"]


async def test_hooks_with_different_settings_are_not_batched_together(aep_conn, fake, slept):
    fake.on("GET", f"{RUNS}/r0", httpx.Response(200, json={"items": [run_item("r0", 0)]}))
    fake.on("GET", f"{RUNS}/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    transport = fake.transport
    h0 = AEPAsyncHook(retry_limit=1, transport=transport)
    h1 = AEPAsyncHook(retry_limit=2, transport=transport)  # another retry policy: another batch
    await asyncio.gather(h0.get_run("r0"), h1.get_run("r1"))
    assert not list_calls(fake)
    assert len(single_calls(fake)) == 2


async def test_a_cancelled_waiter_does_not_break_the_others(aep_conn, fake, slept):
    known = {"r0": run_item("r0", 0), "r1": run_item("r1", 1)}
    fake.on("GET", RUNS, list_answer(known))
    h0, h1 = hooks(fake, 2)
    await h0.get_config()  # so both reads reach the batcher before the cancel
    t0 = asyncio.create_task(h0.get_run("r0"))
    t1 = asyncio.create_task(h1.get_run("r1"))
    for _ in range(20):
        await asyncio.sleep(0)
    t0.cancel()
    assert (await t1)["id"] == "r1"
    with pytest.raises(asyncio.CancelledError):
        await t0
    assert ids_of(list_calls(fake)[0]) == ["r0", "r1"]  # r0 was cancelled while its read was in the batch


async def test_concurrent_hooks_share_one_connection_lookup(aep_conn, fake, monkeypatch):
    calls: list[str] = []
    real = aep_async.aget_connection

    async def spy(conn_id):
        calls.append(conn_id)
        await asyncio.sleep(0)
        return await real(conn_id)

    monkeypatch.setattr(aep_async, "aget_connection", spy)
    configs = await asyncio.gather(*(h.get_config() for h in hooks(fake, 5)))
    assert calls == ["aep_default"]
    assert len({id(c) for c in configs}) == 1
    await AEPAsyncHook(transport=fake.transport).get_config()  # a later hook looks up afresh
    assert calls == ["aep_default", "aep_default"]


async def test_waiters_of_a_list_read_are_woken_a_slice_per_loop_iteration(aep_conn, fake, slept, monkeypatch):
    monkeypatch.setattr(aep_async, "WAKE_SLICE", 2)
    n = 7
    known = {f"r{i}": run_item(f"r{i}", i) for i in range(n)}
    fake.on("GET", RUNS, list_answer(known))
    reads = [h.get_run(f"r{i}") for i, h in enumerate(hooks(fake, n))]
    runs, per_iteration = await wakes_per_loop_iteration(reads)
    assert [run["id"] for run in runs] == list(known)  # each waiter got its own run
    assert len(list_calls(fake)) == 1
    assert max(per_iteration.values()) <= 2
    assert len(per_iteration) == math.ceil(n / 2)
