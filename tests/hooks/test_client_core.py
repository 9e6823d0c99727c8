"""
The client core's behaviour, proven once for both drivers: every test runs against ``AEPHook`` (requests)
and ``AEPAsyncHook`` (httpx) with the same scripted AEP (tests/fake_aep.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import httpx
import pytest
import time_machine

from airflow_provider_aep.exceptions import AEPApiError, AEPTransportError
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.utils import token_store
from airflow_provider_aep.utils.client_core import TOKEN_CACHE, StoredToken
from airflow_provider_aep.utils.connection import DEFAULT_SCOPES
from airflow_provider_aep.utils.token_store import FileTokenStore
from tests.conftest import CLIENT_ID, CLIENT_SECRET, IMS, ORG_ID, TOKEN, conn_json
from tests.hooks.conftest import Driver

FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry"
CAT = "/data/foundation/catalog"
CONV = "/data/foundation/conversion"
FLOW = {"items": [{"id": "f1", "name": "my flow"}]}


def platform(driver: Driver, method: str | None = None) -> list[httpx.Request]:
    return driver.fake.platform_calls(method)


# ---------------------------------------------------------------- headers and timeouts
async def test_every_platform_call_carries_the_aep_header_set(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    driver.fake.on("POST", f"{FS}/flows", httpx.Response(201, json={"id": "f2", "etag": '"1"'}))

    assert (await driver.call(hook, "get_flow", "f1"))["id"] == "f1"
    assert await driver.call(hook, "create_flow", {"name": "n"}) == "f2"

    get, post = platform(driver)
    for req in (get, post):
        assert req.headers["Authorization"] == f"Bearer {TOKEN}-1"
        assert req.headers["x-api-key"] == CLIENT_ID
        assert req.headers["x-gw-ims-org-id"] == ORG_ID
        assert req.headers["x-sandbox-name"] == "dev"
        assert re.fullmatch(r"[0-9a-f-]{36}", req.headers["x-request-id"])
        assert req.headers["User-Agent"].startswith("airflow-provider-aep/")
        assert "apache-airflow/" in req.headers["User-Agent"]
    assert "Content-Type" not in get.headers
    assert post.headers["Content-Type"] == "application/json"
    assert get.headers["x-request-id"] != post.headers["x-request-id"]
    assert driver.timeouts()[1:] == [(10.0, 60.0), (10.0, 60.0)]  # after the token call's own (10, 30)
    assert driver.timeouts()[0] == (10.0, 30.0)


async def test_timeout_is_overridable_per_hook_and_per_call(driver):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    hook = driver.hook(timeout=5)
    await driver.call(hook, "get_flow", "f1")
    await driver.call(hook, "request", "GET", "flowservice", "/flows/f1", timeout=(1, 2))
    assert driver.timeouts()[1:] == [(5.0, 5.0), (1.0, 2.0)]


async def test_a_call_may_decode_the_body_its_own_way_and_keeps_the_text_it_cannot(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW), httpx.Response(200, json=FLOW))

    def first_name(text: str) -> str:
        return json.loads(text)["items"][0]["name"]

    assert await driver.call(hook, "request", "GET", "flowservice", "/flows/f1", decode=first_name) == "my flow"
    text = await driver.call(hook, "request", "GET", "flowservice", "/flows/f1", decode=int)  # a ValueError
    assert json.loads(text) == FLOW


# ---------------------------------------------------------------- tokens
async def test_the_token_form_goes_in_the_body_never_the_query_string(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    await driver.call(hook, "get_flow", "f1")
    (token_call,) = driver.fake.token_calls()
    assert not token_call.url.query
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_call.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "scope": ["openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"],
    }


async def test_one_token_serves_every_call_and_hook_of_the_process(driver):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    for _ in range(3):
        await driver.call(driver.hook(), "get_flow", "f1")
    other = "async" if driver.kind == "sync" else "sync"
    if other == "sync":
        AEPHook().get_flow("f1")
    else:
        async with AEPAsyncHook(transport=driver.fake.transport) as async_hook:
            await async_hook.get_flow("f1")
    assert driver.fake.tokens_issued == 1


async def test_the_token_is_refreshed_a_few_minutes_before_it_expires(driver):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    with time_machine.travel(1_800_000_000, tick=False) as clock:
        hook = driver.hook()
        await driver.call(hook, "get_flow", "f1")
        clock.shift(86399 - 600)  # ten minutes before expiry: still good
        await driver.call(hook, "get_flow", "f1")
        assert driver.fake.tokens_issued == 1
        clock.shift(400)  # inside the refresh lead time
        await driver.call(hook, "get_flow", "f1")
        assert driver.fake.tokens_issued == 2
    assert platform(driver)[-1].headers["Authorization"] == f"Bearer {TOKEN}-2"


async def test_a_token_shorter_lived_than_the_lead_is_refreshed_at_half_its_life_not_every_call(driver):
    driver.fake.expires_in = 120  # under the 300 s lead: renewed after 60 s
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    with time_machine.travel(1_800_000_000, tick=False) as clock:
        hook = driver.hook()
        for _ in range(3):
            await driver.call(hook, "get_flow", "f1")
            clock.shift(15)
        assert driver.fake.tokens_issued == 1
        clock.shift(20)  # 65 s after it was issued
        await driver.call(hook, "get_flow", "f1")
        assert driver.fake.tokens_issued == 2


async def test_many_callers_finding_the_cache_empty_make_one_ims_call(driver):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    if driver.kind == "sync":
        barrier = threading.Barrier(5)

        def call(_: int) -> Any:
            barrier.wait()
            return AEPHook().get_flow("f1")

        with ThreadPoolExecutor(5) as pool:
            results = list(pool.map(call, range(5)))
    else:

        async def call() -> Any:
            async with AEPAsyncHook(transport=driver.fake.transport) as async_hook:
                return await async_hook.get_flow("f1")

        results = await asyncio.gather(*(call() for _ in range(5)))
    assert [r["id"] for r in results] == ["f1"] * 5
    assert driver.fake.tokens_issued == 1


async def test_a_401_drops_the_token_fetches_a_new_one_and_sends_once_more(driver, hook):
    driver.fake.on(
        "GET",
        f"{FS}/flows/f1",
        httpx.Response(401, json={"error_code": "401013", "message": "Oauth token is not valid"}),
        httpx.Response(200, json=FLOW),
    )
    assert (await driver.call(hook, "get_flow", "f1"))["id"] == "f1"
    assert driver.fake.tokens_issued == 2
    assert [r.headers["Authorization"] for r in platform(driver)] == [f"Bearer {TOKEN}-1", f"Bearer {TOKEN}-2"]
    assert driver.slept == []  # a refresh, not a retry


async def test_a_second_401_is_raised_not_looped(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(401, json={"error_code": "401013", "message": "no"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert (err.value.status, err.value.code) == (401, "401013")
    assert driver.fake.tokens_issued == 2 and len(platform(driver)) == 2


async def test_a_pre_issued_access_token_is_used_without_ims(driver, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json(access_token="pre-issued-token-xyz"))
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    await driver.call(driver.hook(), "get_flow", "f1")
    assert driver.fake.token_calls() == []
    assert platform(driver)[0].headers["Authorization"] == "Bearer pre-issued-token-xyz"


async def test_ims_errors_are_decoded_not_retried_and_carry_no_secret(driver, hook):
    driver.fake.ims_answer = httpx.Response(
        400, json={"error": "invalid_client", "error_description": "invalid client_secret parameter"}
    )
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert (err.value.status, err.value.code) == (400, "invalid_client")
    assert "invalid client_secret parameter" in str(err.value)
    assert CLIENT_SECRET not in str(err.value)
    assert len(driver.fake.token_calls()) == 1 and platform(driver) == []


async def test_an_ims_answer_without_a_token_is_an_error(driver, hook):
    driver.fake.ims_answer = httpx.Response(200, json={"token_type": "bearer"})
    with pytest.raises(AEPApiError, match="without an access_token"):
        await driver.call(hook, "get_flow", "f1")


# ---------------------------------------------------------------- the host's token cache on disk
KEY = (IMS, CLIENT_ID, DEFAULT_SCOPES)


def disk_store() -> FileTokenStore:
    """The store the hooks use in this test (conftest gives each test a directory of its own)."""
    store = token_store.configured_store()
    assert store is not None
    return store


def another_process_starts() -> None:
    """What a new task process has: the host's token files, no token in memory."""
    TOKEN_CACHE.clear()


async def test_a_new_process_reuses_the_token_on_disk_without_ims(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    await driver.call(hook, "get_flow", "f1")
    stored = disk_store().load(KEY)
    assert stored is not None and stored.token == f"{TOKEN}-1"
    driver.masked.clear()

    another_process_starts()
    await driver.call(driver.hook(), "get_flow", "f1")
    assert driver.fake.tokens_issued == 1
    assert platform(driver)[-1].headers["Authorization"] == f"Bearer {TOKEN}-1"
    assert f"{TOKEN}-1" in driver.masked  # this process's logs redact it too


async def test_a_stored_token_near_its_expiry_is_replaced(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    disk_store().save(KEY, StoredToken("old-token", time.time() + 60, time.time() - 240))  # inside the refresh lead
    await driver.call(hook, "get_flow", "f1")
    assert driver.fake.tokens_issued == 1
    assert disk_store().load(KEY).token == f"{TOKEN}-1"


async def test_a_rejected_token_is_dropped_from_disk_and_the_new_one_stored(driver, hook):
    driver.fake.on(
        "GET",
        f"{FS}/flows/f1",
        httpx.Response(200, json=FLOW),
        httpx.Response(401, json={"error_code": "401013", "message": "Oauth token is not valid"}),
        httpx.Response(200, json=FLOW),
    )
    await driver.call(hook, "get_flow", "f1")
    another_process_starts()  # it finds token 1 on disk, and AEP now refuses it
    await driver.call(driver.hook(), "get_flow", "f1")
    assert [r.headers["Authorization"] for r in platform(driver)] == [
        f"Bearer {TOKEN}-1",
        f"Bearer {TOKEN}-1",
        f"Bearer {TOKEN}-2",
    ]
    assert disk_store().load(KEY).token == f"{TOKEN}-2"


async def test_a_rejected_token_that_cannot_be_replaced_does_not_stay_on_disk(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(401, json={"error_code": "401013", "message": "no"}))
    disk_store().save(KEY, StoredToken("revoked-token", time.time() + 3600, time.time() + 3300))
    driver.fake.ims_answer = httpx.Response(503, json={"error": "temporarily_unavailable"})
    with pytest.raises(AEPApiError):
        await driver.call(driver.hook(retry_limit=0), "get_flow", "f1")
    assert disk_store().load(KEY) is None


async def test_a_corrupt_token_file_means_a_fetch_and_is_overwritten(driver, hook, caplog):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    disk_store().save(KEY, StoredToken("t", time.time() + 3600, time.time() + 3300))
    (path,) = disk_store().directory.glob("*.json")
    path.write_text('{"access_token": "trunc')
    with caplog.at_level(logging.WARNING, logger="airflow_provider_aep.utils.token_store"):
        assert (await driver.call(hook, "get_flow", "f1"))["id"] == "f1"
    assert driver.fake.tokens_issued == 1
    assert "corrupt or truncated" in caplog.text
    assert disk_store().load(KEY).token == f"{TOKEN}-1"


async def test_the_disk_cache_can_be_turned_off(driver, hook, monkeypatch):
    monkeypatch.setenv("AIRFLOW__AEP__TOKEN_CACHE_ON_DISK", "False")
    directory = disk_store_directory()
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    await driver.call(hook, "get_flow", "f1")
    another_process_starts()
    await driver.call(driver.hook(), "get_flow", "f1")
    assert driver.fake.tokens_issued == 2
    assert list(directory.iterdir()) == []


def disk_store_directory() -> Path:
    return Path(os.environ["AIRFLOW__AEP__TOKEN_CACHE_DIR"])


async def test_no_secret_on_disk_and_only_this_user_can_read_it(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(200, json=FLOW))
    await driver.call(hook, "get_flow", "f1")
    directory = disk_store_directory()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert [p.suffix for p in files] == [".json", ".lock"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert CLIENT_SECRET not in path.read_text()


# ---------------------------------------------------------------- retries
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_until_success(driver, hook, status):
    busy = httpx.Response(status, json={"error_code": str(status), "message": "busy"})
    driver.fake.on("GET", f"{FS}/flows/f1", busy, busy, httpx.Response(200, json=FLOW))
    assert (await driver.call(hook, "get_flow", "f1"))["id"] == "f1"
    assert len(platform(driver)) == 3 and len(driver.slept) == 2


async def test_retry_after_seconds_is_honoured(driver, hook):
    driver.fake.on(
        "GET",
        f"{FS}/flows/f1",
        httpx.Response(
            429, headers={"Retry-After": "7"}, json={"error_code": "429050", "message": "Too many requests"}
        ),
        httpx.Response(200, json=FLOW),
    )
    await driver.call(hook, "get_flow", "f1")
    assert driver.slept == [7.0]


async def test_retry_after_http_date_is_honoured_and_capped(driver):
    hook = driver.hook(retry_limit=2, retry_args={"retry_after_cap": 30})
    driver.fake.on(
        "GET",
        f"{FS}/flows/f1",
        httpx.Response(503, headers={"Retry-After": "Thu, 01 Jan 2026 00:00:12 GMT"}, text="down"),
        httpx.Response(503, headers={"Retry-After": "Thu, 01 Jan 2026 01:00:00 GMT"}, text="down"),
        httpx.Response(200, json=FLOW),
    )
    with time_machine.travel("2026-01-01 00:00:00 +0000", tick=False):
        await driver.call(hook, "get_flow", "f1")
    assert driver.slept == [12.0, 30.0]


async def test_backoff_grows_exponentially_without_retry_after(driver):
    hook = driver.hook(retry_limit=3, retry_delay=2, retry_args={"jitter": False})
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(AEPApiError):
        await driver.call(hook, "get_flow", "f1")
    assert driver.slept == [2, 4, 8]


async def test_jittered_backoff_stays_between_half_and_the_full_delay(driver):
    hook = driver.hook(retry_limit=3, retry_delay=4)
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(500, json={"message": "boom"}))
    with pytest.raises(AEPApiError):
        await driver.call(hook, "get_flow", "f1")
    assert [2 <= driver.slept[0] <= 4, 4 <= driver.slept[1] <= 8, 8 <= driver.slept[2] <= 16] == [True] * 3


async def test_gives_up_after_the_limit_with_the_last_error(driver, hook, caplog):
    driver.fake.on(
        "GET",
        f"{FS}/flows/f1",
        httpx.Response(500, json={"title": "first", "detail": "first failure"}),
        httpx.Response(502, json={"detail": "second failure"}),
        httpx.Response(503, json={"detail": "third failure"}),
        httpx.Response(504, json={"detail": "last failure"}),
    )
    with caplog.at_level(logging.WARNING), pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert len(platform(driver)) == 4  # first try + retry_limit=3
    assert err.value.status == 504 and "last failure" in str(err.value)
    assert "attempt 1 of 4" in caplog.text and "AEP GET /data/foundation/flowservice/flows/f1 failed" in caplog.text


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), "CONNECT_FAILED"),
        (httpx.ConnectTimeout("slow connect"), "CONNECT_FAILED"),
        (httpx.ReadTimeout("slow read"), "READ_TIMEOUT"),
        (httpx.RemoteProtocolError("reset by peer"), "CONNECTION_ERROR"),
    ],
)
async def test_network_errors_are_retried_then_raised_with_one_code_per_kind(driver, hook, exc, code):
    driver.fake.on("GET", f"{FS}/flows/f1", exc)
    with pytest.raises(AEPTransportError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert isinstance(err.value, AEPApiError)
    assert err.value.status is None and err.value.code == code
    assert len(platform(driver)) == 4


async def test_a_network_error_then_success_recovers(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.ReadTimeout("slow"), httpx.Response(200, json=FLOW))
    assert (await driver.call(hook, "get_flow", "f1"))["id"] == "f1"


@pytest.mark.parametrize("status", [400, 403, 404, 409, 412])
async def test_client_errors_are_not_retried(driver, hook, status):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(status, json={"error_code": "x", "message": "no"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert err.value.status == status
    assert len(platform(driver)) == 1 and driver.slept == []


# ---------------------------------------------------------------- creates are never blindly re-sent
async def test_a_create_whose_response_was_lost_is_looked_up_not_sent_again(driver, hook, caplog):
    driver.fake.on("POST", f"{FS}/flows", httpx.RemoteProtocolError("connection dropped"))
    driver.fake.on("GET", f"{FS}/flows", httpx.Response(200, json={"items": [{"id": "committed", "name": "my flow"}]}))
    with caplog.at_level(logging.WARNING):
        assert await driver.call(hook, "create_flow", {"name": "my flow"}) == "committed"
    assert len(platform(driver, "POST")) == 1
    (lookup,) = platform(driver, "GET")
    assert ("property", "name==my flow") in parse_qsl(lookup.url.query.decode())
    assert "the earlier attempt did commit it" in caplog.text


async def test_a_create_that_did_not_commit_is_sent_again_after_the_lookup(driver, hook):
    driver.fake.on(
        "POST", f"{FS}/flows", httpx.Response(503, text="unavailable"), httpx.Response(201, json={"id": "new"})
    )
    driver.fake.on("GET", f"{FS}/flows", httpx.Response(200, json={"items": []}))
    assert await driver.call(hook, "create_flow", {"name": "my flow"}) == "new"
    # the lookup before sending again, and the check afterwards that the lost attempt did not commit late
    assert len(platform(driver, "POST")) == 2 and len(platform(driver, "GET")) == 2


@pytest.mark.parametrize(
    "first", [httpx.Response(429, headers={"Retry-After": "1"}, text=""), httpx.ConnectError("refused")]
)
async def test_a_create_that_surely_did_not_commit_is_sent_again_without_a_lookup(driver, hook, first):
    driver.fake.on("POST", f"{FS}/flows", first, httpx.Response(201, json={"id": "new"}))
    assert await driver.call(hook, "create_flow", {"name": "my flow"}) == "new"
    assert len(platform(driver, "POST")) == 2 and platform(driver, "GET") == []


async def test_a_create_with_no_way_to_look_it_up_is_not_sent_again(driver, hook):
    driver.fake.on("POST", f"{CONV}/mappingSets", httpx.Response(500, json={"message": "boom"}))
    with pytest.raises(AEPApiError):
        await driver.call(hook, "create_mapping_set", {"xdmSchema": "s", "mappings": []})  # no name to look up
    assert len(platform(driver, "POST")) == 1


async def test_a_lookup_after_a_lost_response_that_finds_two_uses_the_oldest_naming_both(driver, hook, caplog):
    driver.fake.on("POST", f"{FS}/flows", httpx.ReadTimeout("lost"))
    two = [{"id": "b", "name": "my flow", "createdAt": 2000}, {"id": "a", "name": "my flow", "createdAt": 1000}]
    driver.fake.on("GET", f"{FS}/flows", httpx.Response(200, json={"items": two}))
    with caplog.at_level(logging.WARNING):
        assert await driver.call(hook, "create_flow", {"name": "my flow"}) == "a"
    assert len(platform(driver, "POST")) == 1
    assert "2 flows named 'my flow' exist (a, b); using the oldest, a" in caplog.text
    assert "orphans to clean up" in caplog.text


async def test_a_late_commit_of_the_lost_attempt_is_reported_naming_both_ids(driver, hook, caplog):
    """AEP commits the lost POST only after the retry's lookup ran: the create is sent again, and the check
    after it finds both copies."""
    driver.fake.on("POST", f"{FS}/flows", httpx.ReadTimeout("lost"), httpx.Response(201, json={"id": "second"}))
    late = {"id": "first", "name": "my flow", "createdAt": 1000}
    ours = {"id": "second", "name": "my flow", "createdAt": 2000}
    driver.fake.on(
        "GET",
        f"{FS}/flows",
        httpx.Response(200, json={"items": []}),
        httpx.Response(200, json={"items": [ours, late]}),
    )
    with caplog.at_level(logging.WARNING):
        assert await driver.call(hook, "create_flow", {"name": "my flow"}) == "first"
    assert "AEP committed the lost attempt too (created second)" in caplog.text
    assert "2 flows named 'my flow' exist (first, second); using the oldest, first" in caplog.text


# ---------------------------------------------------------------- the four list styles (3+ pages each)
async def test_flow_service_lists_follow_continuation_tokens(driver, hook):
    def page(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("continuationToken")
        nxt = {None: "t1", "t1": "t2", "t2": None}[token]
        items = [{"id": f"{token}-{i}", "name": "x"} for i in range(2)]
        links = {"next": {"href": f"/flows?continuationToken={nxt}"}} if nxt else {}
        return httpx.Response(200, json={"items": items, "_links": links})

    driver.fake.on("GET", f"{FS}/flows", page)
    flows = await driver.call(hook, "paginate_flow_service", "/flows", {"property": "name==x"})
    assert [f["id"] for f in flows] == ["None-0", "None-1", "t1-0", "t1-1", "t2-0", "t2-1"]
    assert [r.url.params.get_list("property") for r in platform(driver)] == [["name==x"]] * 3


async def test_schema_registry_lists_send_page_next_back_as_start(driver, hook):
    def page(request: httpx.Request) -> httpx.Response:
        start = request.url.params.get("start", "0")
        nxt = {"0": "b", "b": "d", "d": None}[start]
        return httpx.Response(200, json={"results": [{"$id": start}], "_page": {"orderby": "title", "next": nxt}})

    driver.fake.on("GET", f"{SR}/tenant/schemas", page)
    results = await driver.call(hook, "paginate_schema_registry", "/tenant/schemas")
    assert [r["$id"] for r in results] == ["0", "b", "d"]
    assert all(r.url.params["orderby"] == "title" for r in platform(driver))
    assert all(r.headers["Accept"] == "application/vnd.adobe.xed-id+json" for r in platform(driver))


async def test_catalog_lists_page_with_start_and_limit_until_a_short_page(driver, hook):
    def page(request: httpx.Request) -> httpx.Response:
        start, limit = int(request.url.params["start"]), int(request.url.params["limit"])
        total = 2 * limit + 3
        return httpx.Response(200, json={f"ds{i}": {"name": f"n{i}"} for i in range(start, min(start + limit, total))})

    driver.fake.on("GET", f"{CAT}/dataSets", page)
    datasets = await driver.call(hook, "list_datasets")
    assert len(datasets) == 203 and datasets[0] == {"id": "ds0", "name": "n0"}
    assert [r.url.params["start"] for r in platform(driver)] == ["0", "100", "200"]


async def test_data_prep_lists_page_with_start_and_limit_over_data(driver, hook):
    def page(request: httpx.Request) -> httpx.Response:
        start, limit = int(request.url.params["start"]), int(request.url.params["limit"])
        data = [{"id": f"m{i}"} for i in range(start, min(start + limit, 250))]
        return httpx.Response(200, json={"data": data, "_page": {"count": len(data), "limit": limit}})

    driver.fake.on("GET", f"{CONV}/mappingSets", page)
    assert len(await driver.call(hook, "list_mapping_sets")) == 250
    assert len(platform(driver)) == 3


# ---------------------------------------------------------------- error decoding
@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (403, {"error_code": "403010", "message": "Oauth token is missing."}, "403010", "Oauth token is missing."),
        (
            400,
            {
                "type": "http://ns.adobe.com/aep/errors/XDM-1521-400",
                "title": "Title not unique",
                "status": 400,
                "report": {"registryRequestId": "reg-1", "detailed-message": "Object titles must be unique."},
                "detail": "An object https://ns.adobe.com/t/schemas/1 already exists with the same title",
            },
            "XDM-1521-400",
            "An object https://ns.adobe.com/t/schemas/1 already exists with the same title",
        ),
        (
            404,
            {
                "type": "https://ns.adobe.com/aep/errors/FLOW-1439-404",
                "title": "Resource not found",
                "status": 404,
                "report": {"detailed-message": "Flow f1 not found", "request-id": "rq-9"},
                "errorMessage": "not found",
            },
            "FLOW-1439-404",
            "Flow f1 not found",
        ),
        (
            412,
            {"errorMessage": "Supplied version=[1] does not match the current version on entity=[f]"},
            None,
            "Supplied version=[1]",
        ),
        (
            400,
            {
                "type": "/placeholder/type/uri",
                "status": 400,
                "title": "BadRequestError",
                "detail": "Missing Content-Type",
            },
            "uri",
            "Missing Content-Type",
        ),
        (429, {"title": "RequestRateTooLarge", "status": 429, "detail": "slow down"}, None, "slow down"),
    ],
)
async def test_every_aep_error_shape_is_decoded_into_one_error(driver, status, body, code, message):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(status, json=body, headers={"x-request-id": "hdr-req"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(driver.hook(retry_limit=0), "get_flow", "f1")
    exc = err.value
    assert (exc.status, exc.code, exc.request_id) == (status, code, "hdr-req")
    assert message in exc.message
    text = str(exc)
    assert "\n" not in text and f"HTTP {status}" in text and "GET" in text and "hdr-req" in text


async def test_a_non_json_error_body_is_still_one_error_with_our_request_id(driver, hook):
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(404, text="<html><body>Not Found</body></html>"))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert err.value.code is None and err.value.message == "not found"
    assert err.value.request_id == platform(driver)[0].headers["x-request-id"]


async def test_a_gateway_html_page_becomes_one_line_with_the_status_and_a_short_reason(driver, hook):
    page = "<html><head><title>414 Request-URI Too Large</title></head><body>" + "<p>nginx</p>" * 500 + "</body></html>"
    driver.fake.on("GET", f"{FS}/flows", httpx.Response(414, text=page, headers={"Content-Type": "text/html"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "find_flows_by_name", "a" * 20_000)
    text = str(err.value)
    assert "HTTP 414: request URI too long — the name is too long" in text
    assert "<" not in text and "nginx" not in text and "\n" not in text and len(text) < 400


# ---------------------------------------------------------------- secrets
async def test_the_secret_and_tokens_are_masked_and_never_logged(driver, hook, caplog):
    caplog.set_level(logging.DEBUG)
    driver.fake.on("GET", f"{FS}/flows/f1", httpx.Response(500, json={"message": "internal"}))
    with pytest.raises(AEPApiError) as err:
        await driver.call(hook, "get_flow", "f1")
    assert CLIENT_SECRET in driver.masked and f"{TOKEN}-1" in driver.masked
    for text in (caplog.text, str(err.value), repr(err.value), repr(hook.config)):
        assert CLIENT_SECRET not in text and f"{TOKEN}-1" not in text


# ---------------------------------------------------------------- runs, as triggers read them
def run_item(run_id: str, created_at: int) -> dict[str, Any]:
    return {"id": run_id, "flowId": "f1", "createdAt": created_at, "metrics": {"statusSummary": {"status": "success"}}}


async def test_get_run_unwraps_the_list_envelope_and_accepts_a_bare_object(driver, hook):
    driver.fake.on("GET", f"{FS}/runs/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    driver.fake.on("GET", f"{FS}/runs/r2", httpx.Response(200, json=run_item("r2", 1)))
    assert (await driver.call(hook, "get_run", "r1"))["id"] == "r1"
    assert (await driver.call(hook, "get_run", "r2"))["id"] == "r2"


async def test_list_runs_filters_follows_continuation_and_sorts_newest_first(driver, hook):
    pages = iter(
        [
            {
                "items": [run_item("old", 100), run_item("mid", 200)],
                "_links": {"next": {"href": "/runs?continuationToken=tok2"}},
            },
            {"items": [run_item("new", 300), run_item("too-old", 50)], "_links": {}},
        ]
    )
    driver.fake.on("GET", f"{FS}/runs", lambda request: httpx.Response(200, json=next(pages)))
    runs = await driver.call(hook, "list_runs", "f1", created_after_ms=100)
    assert [r["id"] for r in runs] == ["new", "mid", "old"]
    first, second = (parse_qsl(r.url.query.decode()) for r in platform(driver))
    assert ("property", "flowId==f1") in first and ("property", "createdAt>=100") in first
    assert ("orderby", "-createdAt") in first
    assert ("continuationToken", "tok2") in second and ("property", "flowId==f1") in second
