"""Single-run reads of one loop shared in list reads, and every way each waiter still gets its own answer."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl

import httpx
import pytest

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.triggers import shared_reads
from airflow_provider_aep.triggers.shared_reads import read_run
from tests.conftest import conn_json
from tests.fake_aep import FakeAEP

RUNS = "/data/foundation/flowservice/runs"


def run(run_id: str, status: str = "inProgress") -> dict:
    return {"id": run_id, "flowId": "f1", "createdAt": 1, "metrics": {"statusSummary": {"status": status}}}


def listing(*runs: dict) -> httpx.Response:
    return httpx.Response(200, json={"items": list(runs), "_links": {}})


@pytest.fixture
def fake(aep_conn, monkeypatch) -> FakeAEP:
    async def no_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(no_wait))
    return FakeAEP()


def hook(fake: FakeAEP, **kwargs) -> AEPAsyncHook:
    return AEPAsyncHook(retry_limit=2, retry_delay=0.01, transport=fake.transport, **kwargs)


async def read_all(fake: FakeAEP, run_ids: list[str]) -> list:
    """Each id read by a hook of its own, at once, as the triggers of one triggerer do."""
    hooks = [hook(fake) for _ in run_ids]
    # The hooks must share one client to share reads, as hooks without a transport share the loop's client.
    client = hooks[0].client
    for h in hooks[1:]:
        h._own_client = client
    # Connections read first: a slow lookup on a busy machine must not split the reads across windows.
    await asyncio.gather(*(h.get_config() for h in hooks))
    results = await asyncio.gather(
        *(read_run(h, r) for h, r in zip(hooks, run_ids, strict=True)), return_exceptions=True
    )
    await hooks[0].aclose()
    return results


def list_reads(fake: FakeAEP) -> list[httpx.Request]:
    return [r for r in fake.platform_calls() if r.url.path == RUNS]


def single_reads(fake: FakeAEP) -> list[str]:
    return [r.url.path.rsplit("/", 1)[-1] for r in fake.platform_calls() if r.url.path.startswith(f"{RUNS}/")]


async def test_concurrent_reads_share_one_list_read_per_chunk(fake, monkeypatch):
    monkeypatch.setattr(shared_reads, "RUN_BATCH_SIZE", 3)
    ids = [f"r{i}" for i in range(7)]

    def answer(request: httpx.Request) -> httpx.Response:
        (wanted,) = request.url.params.get_list("property")
        return listing(*(run(i) for i in wanted.removeprefix("id==").split(",")))

    fake.on("GET", RUNS, answer)
    fake.on("GET", f"{RUNS}/r6", httpx.Response(200, json={"items": [run("r6")]}))
    results = await read_all(fake, ids)
    assert [r["id"] for r in results] == ids
    sizes = [len(r.url.params["property"].removeprefix("id==").split(",")) for r in list_reads(fake)]
    assert sizes == [3, 3] and single_reads(fake) == ["r6"]  # a chunk of one is the direct read
    assert ("limit", "3") in parse_qsl(list_reads(fake)[0].url.query.decode())


async def test_a_lone_read_is_the_direct_call(fake):
    fake.on("GET", f"{RUNS}/r1", httpx.Response(200, json={"items": [run("r1")]}))
    (result,) = await read_all(fake, ["r1"])
    assert result["id"] == "r1"
    assert list_reads(fake) == [] and single_reads(fake) == ["r1"]


async def test_a_run_missing_from_the_list_is_read_alone_and_its_404_reaches_only_its_reader(fake):
    fake.on("GET", RUNS, listing(run("r1"), run("r2")))
    fake.on("GET", f"{RUNS}/gone", httpx.Response(404, json={"title": "Resource not found", "status": 404}))
    results = await read_all(fake, ["r1", "gone", "r2"])
    assert results[0]["id"] == "r1" and results[2]["id"] == "r2"
    assert isinstance(results[1], AEPApiError) and results[1].status == 404
    assert single_reads(fake) == ["gone"]


async def test_a_400_on_the_list_read_falls_back_to_each_readers_own_read(fake):
    fake.on("GET", RUNS, httpx.Response(400, json={"title": "Bad filter", "status": 400}))
    for run_id in ("r1", "r2", "r3"):
        fake.on("GET", f"{RUNS}/{run_id}", httpx.Response(200, json={"items": [run(run_id)]}))
    results = await read_all(fake, ["r1", "r2", "r3"])
    assert [r["id"] for r in results] == ["r1", "r2", "r3"]
    assert sorted(single_reads(fake)) == ["r1", "r2", "r3"]


async def test_a_retryable_answer_to_the_list_read_is_each_readers_to_retry(fake):
    fake.on("GET", RUNS, httpx.Response(503, json={"message": "busy"}), listing(run("r1"), run("r2")))
    results = await read_all(fake, ["r1", "r2"])
    assert [r["id"] for r in results] == ["r1", "r2"]
    assert len(list_reads(fake)) == 2 and single_reads(fake) == []  # the retries were shared again


async def test_a_network_failure_of_the_list_read_is_each_readers_to_retry(fake):
    fake.on("GET", RUNS, httpx.ReadTimeout("slow"), listing(run("r1"), run("r2")))
    results = await read_all(fake, ["r1", "r2"])
    assert [r["id"] for r in results] == ["r1", "r2"]


async def test_two_readers_of_one_run_share_one_id_and_get_their_own_copy(fake):
    fake.on("GET", RUNS, listing(run("r1")))
    first, second = await read_all(fake, ["r1", "r1"])
    assert first == second and first is not second
    assert list_reads(fake)[0].url.params["property"] == "id==r1"


async def test_reads_of_different_accounts_are_not_shared(fake, monkeypatch):
    fake.on("GET", f"{RUNS}/r1", httpx.Response(200, json={"items": [run("r1")]}))
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", conn_json(sandbox="other"))
    first, second = hook(fake), hook(fake, aep_conn_id="other")
    second._own_client = first.client
    results = await asyncio.gather(read_run(first, "r1"), read_run(second, "r1"))
    assert [r["id"] for r in results] == ["r1", "r1"]
    assert list_reads(fake) == [] and len(single_reads(fake)) == 2


async def test_a_cancelled_reader_does_not_break_the_others(fake):
    fake.on("GET", RUNS, listing(run("r1"), run("r2")))
    hooks = [hook(fake) for _ in range(3)]
    for h in hooks[1:]:
        h._own_client = hooks[0].client
    tasks = [asyncio.ensure_future(read_run(h, r)) for h, r in zip(hooks, ["r1", "r2", "r3"], strict=True)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [r["id"] for r in results[:2]] == ["r1", "r2"]
    assert isinstance(results[2], asyncio.CancelledError)


async def test_an_unexpected_failure_still_answers_every_reader(fake):
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug, not a network failure")

    fake.on("GET", RUNS, broken)
    results = await asyncio.wait_for(read_all(fake, ["r1", "r2"]), timeout=30)
    assert all(isinstance(r, RuntimeError) for r in results)


LIST_BODY = {"_links": {"items": [{"id": "not-a-run"}]}, "items": [run("r1"), run("r2", "success")], "count": 2}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(LIST_BODY),
        json.dumps(LIST_BODY, indent=2),
        json.dumps(LIST_BODY, separators=(",", ":")),
        json.dumps(dict(reversed(LIST_BODY.items())), indent="\t"),
        "\n " + json.dumps(LIST_BODY).replace(", ", " ,\r\n ") + " \n",
    ],
)
def test_run_texts_cuts_each_run_of_a_list_answer_out_as_its_own_json(body):
    texts = shared_reads.run_texts(body)
    assert sorted(texts) == ["r1", "r2"]  # the `items` of a nested object are not runs
    assert [json.loads(texts[r]) for r in ("r1", "r2")] == LIST_BODY["items"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{}", {}),
        ('{"items": []}', {}),
        ('{"items": null, "_links": {}}', {}),
        ('{"items": [1, "r1", {"id": 2}, {"name": "no id"}, {"id": "r3"}]}', {"r3": '{"id": "r3"}'}),
    ],
)
def test_run_texts_keeps_only_items_with_an_id(body, expected):
    assert shared_reads.run_texts(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[]",
        "{",
        '{"items": [{"id": "r1"}',
        '{"items": [{"id": "r1"},]}',
        '{"items" [] }',
        '{"a": 1,}',
        "{} {}",
        "{1: 2}",
    ],
)
def test_run_texts_refuses_whatever_is_not_a_json_object(body):
    try:
        assert not isinstance(json.loads(body), dict)
    except ValueError:
        pass
    with pytest.raises(ValueError):
        shared_reads.run_texts(body)


async def test_a_list_answer_that_is_not_a_list_falls_back_to_each_readers_own_read(fake):
    fake.on("GET", RUNS, httpx.Response(200, text='{"items": [{"id": "r1"} {"id": "r2"}]}'))
    for run_id in ("r1", "r2"):
        fake.on("GET", f"{RUNS}/{run_id}", httpx.Response(200, json={"items": [run(run_id)]}))
    results = await read_all(fake, ["r1", "r2"])
    assert [r["id"] for r in results] == ["r1", "r2"] and sorted(single_reads(fake)) == ["r1", "r2"]


async def test_the_readers_of_a_list_read_wake_one_loop_iteration_apart(fake):
    """So a slot's polls never hold the loop together: other tasks run between any two of them."""
    ids = [f"r{i}" for i in range(4)]
    fake.on("GET", RUNS, listing(*(run(i) for i in ids)))
    iterations = 0
    stop = asyncio.Event()

    async def count_iterations() -> None:
        nonlocal iterations
        while not stop.is_set():
            await asyncio.sleep(0)
            iterations += 1

    counter = asyncio.ensure_future(count_iterations())
    woken_at: list[int] = []
    hooks = [hook(fake) for _ in ids]
    for h in hooks[1:]:
        h._own_client = hooks[0].client
    await asyncio.gather(*(h.get_config() for h in hooks))

    async def read(h: AEPAsyncHook, run_id: str) -> None:
        await read_run(h, run_id)
        woken_at.append(iterations)

    await asyncio.gather(*(read(h, r) for h, r in zip(hooks, ids, strict=True)))
    stop.set()
    await counter
    await hooks[0].aclose()
    assert len(list_reads(fake)) == 1
    assert len(set(woken_at)) == len(ids), woken_at
