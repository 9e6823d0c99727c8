"""AEPAsyncHook against httpx.MockTransport: one client, async connection and token, shared policy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qs, parse_qsl

import httpx
import pytest

from airflow_provider_aep.exceptions import (
    AEPApiError,
    AEPConnectionConfigError,
    AEPTransportError,
)
from airflow_provider_aep.hooks import aep_async
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.utils.http import TOKEN_CACHE
from tests.conftest import CLIENT_ID, CLIENT_SECRET, ORG_ID, PLATFORM, SECRET_MASKER, TOKEN, conn_json

FS = f"{PLATFORM}/data/foundation/flowservice"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeAEP:
    """A scripted AEP behind httpx.MockTransport: IMS issues tok-1, tok-2...; platform answers per route."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], list[Handler | httpx.Response]] = {}
        self.tokens_issued = 0

    def on(self, method: str, path: str, *answers: Handler | httpx.Response) -> None:
        """Answers are used in order; the last one repeats."""
        self.routes[(method, path)] = list(answers)

    def platform_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if "/ims/" not in r.url.path]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/ims/token/v3":
            self.tokens_issued += 1
            return httpx.Response(
                200, json={"access_token": f"{TOKEN}-{self.tokens_issued}", "token_type": "bearer", "expires_in": 86399}
            )
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return httpx.Response(404, json={"title": "Resource not found", "status": 404})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer(request) if callable(answer) else answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


@pytest.fixture
def hook(aep_conn, fake, slept) -> AEPAsyncHook:
    return AEPAsyncHook(retry_limit=3, retry_delay=0.01, transport=fake.transport)


def run_item(run_id: str, created_at: int, status: str = "success") -> dict:
    return {"id": run_id, "flowId": "f1", "createdAt": created_at, "metrics": {"statusSummary": {"status": status}}}


# ---------------------------------------------------------------- transport
async def test_every_call_carries_the_aep_header_set_and_one_client_is_reused(hook, fake):
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    async with hook:
        client = hook.client
        assert (await hook.get_run("r1"))["id"] == "r1"
        await hook.get_run("r1")
        assert hook.client is client
    assert client.is_closed
    call = fake.platform_calls()[0]
    assert call.headers["Authorization"] == f"Bearer {TOKEN}-1"
    assert call.headers["x-api-key"] == CLIENT_ID
    assert call.headers["x-gw-ims-org-id"] == ORG_ID
    assert call.headers["x-sandbox-name"] == "dev"
    assert call.headers["x-request-id"]
    assert call.headers["User-Agent"].startswith("airflow-provider-aep/")
    assert fake.tokens_issued == 1


@pytest.mark.skipif(
    not hasattr(aep_async.BaseHook, "aget_connection"),
    reason="this Airflow has no async connection API; the thread fallback is tested below",
)
async def test_the_connection_is_read_through_the_async_api(aep_conn, fake, slept, monkeypatch):
    calls: list[str] = []
    real = aep_async.BaseHook.aget_connection

    async def spy(conn_id):
        calls.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(aep_async.BaseHook, "aget_connection", spy)
    monkeypatch.setattr(aep_async.BaseHook, "get_connection", lambda conn_id: pytest.fail("sync lookup used"))
    async with AEPAsyncHook(transport=fake.transport) as hook:
        config = await hook.get_config()
        await hook.get_config()
    assert calls == ["aep_default"]
    assert config.org_id == ORG_ID


async def test_without_aget_connection_the_sync_lookup_runs_in_a_thread(aep_conn, fake, monkeypatch):
    monkeypatch.delattr(aep_async.BaseHook, "aget_connection", raising=False)
    conn = await aep_async.aget_connection("aep_default")
    assert conn.login == CLIENT_ID


async def test_a_bad_connection_raises_the_config_error(monkeypatch, fake):
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json(org_id="not-an-org"))
    async with AEPAsyncHook(transport=fake.transport) as hook:
        with pytest.raises(AEPConnectionConfigError, match="org_id"):
            await hook.get_config()


async def test_dataflow_url(hook):
    async with hook:
        url = await hook.dataflow_url("f1", "r1")
    assert url == f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/f1/activity/r1"


# ---------------------------------------------------------------- tokens
async def test_token_form_goes_in_the_body_and_the_token_is_shared_with_the_sync_hook(hook, fake):
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    async with hook:
        await hook.get_run("r1")
    token_call = next(r for r in fake.requests if r.url.path == "/ims/token/v3")
    assert not token_call.url.query
    assert parse_qs(token_call.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "scope": ["openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"],
    }
    config = await AEPAsyncHook(transport=fake.transport).get_config()
    assert TOKEN_CACHE.get(config.token_cache_key) == f"{TOKEN}-1"


async def test_a_cached_token_is_used_without_ims(hook, fake):
    config = await hook.get_config()
    TOKEN_CACHE.put(config.token_cache_key, "cached-token-value", 86399)
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    async with hook:
        await hook.get_run("r1")
    assert fake.tokens_issued == 0
    assert fake.platform_calls()[0].headers["Authorization"] == "Bearer cached-token-value"


async def test_a_401_drops_the_token_fetches_a_new_one_and_retries_once(hook, fake):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/r1",
        httpx.Response(401, json={"error_code": "401013", "message": "Oauth token is not valid"}),
        httpx.Response(200, json={"items": [run_item("r1", 1)]}),
    )
    async with hook:
        assert (await hook.get_run("r1"))["id"] == "r1"
    auths = [r.headers["Authorization"] for r in fake.platform_calls()]
    assert auths == [f"Bearer {TOKEN}-1", f"Bearer {TOKEN}-2"]


async def test_a_second_401_is_raised_not_looped(hook, fake):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/r1",
        httpx.Response(401, json={"error_code": "401013", "message": "no"}),
    )
    async with hook:
        with pytest.raises(AEPApiError) as err:
            await hook.get_run("r1")
    assert (err.value.status, err.value.code) == (401, "401013")
    assert len(fake.platform_calls()) == 2


async def test_ims_errors_are_decoded_without_the_secret(aep_conn, slept):
    def ims(request):
        return httpx.Response(400, json={"error": "invalid_client", "error_description": "bad client"})

    async with AEPAsyncHook(transport=httpx.MockTransport(ims)) as hook:
        with pytest.raises(AEPApiError) as err:
            await hook.get_access_token()
    assert (err.value.status, err.value.code) == (400, "invalid_client")
    assert CLIENT_SECRET not in str(err.value)


async def test_tokens_and_the_secret_are_registered_with_the_async_masker(hook, fake, monkeypatch):
    masked: list[str] = []

    async def amask(value, name=None):
        masked.append(value)

    try:
        monkeypatch.setattr("airflow.sdk.log.amask_secret", amask)
    except (ImportError, AttributeError):  # before Airflow 3.3 the provider falls back to the synchronous masker
        monkeypatch.setattr(SECRET_MASKER, masked.append)
    async with hook:
        await hook.get_access_token()
    assert CLIENT_SECRET in masked and f"{TOKEN}-1" in masked


# ---------------------------------------------------------------- retries and errors
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_until_success(hook, fake, slept, status):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/r1",
        httpx.Response(status, json={"message": "busy"}),
        httpx.Response(200, json={"items": [run_item("r1", 1)]}),
    )
    async with hook:
        assert (await hook.get_run("r1"))["id"] == "r1"
    assert len(fake.platform_calls()) == 2
    assert len(slept) == 1


async def test_retry_after_is_honoured(hook, fake, slept):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/r1",
        httpx.Response(
            429, headers={"Retry-After": "7"}, json={"error_code": "429050", "message": "Too many requests"}
        ),
        httpx.Response(200, json={"items": [run_item("r1", 1)]}),
    )
    async with hook:
        await hook.get_run("r1")
    assert slept == [7.0]


async def test_gives_up_after_the_limit_with_the_decoded_error(hook, fake, slept, caplog):
    body = {
        "type": "https://ns.adobe.com/aep/errors/FLOW-1103-503",
        "title": "Service unavailable",
        "status": 503,
        "report": {"detailed-message": "try later", "request-id": "req-9"},
    }
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(503, json=body))
    with caplog.at_level(logging.WARNING):
        async with hook:
            with pytest.raises(AEPApiError) as err:
                await hook.get_run("r1")
    assert (err.value.status, err.value.code, err.value.message) == (503, "FLOW-1103-503", "try later")
    assert len(fake.platform_calls()) == 4  # 1 + retry_limit 3
    assert len(slept) == 3
    assert "attempt 1 of 4" in caplog.text


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_client_errors_are_not_retried(hook, fake, slept, status):
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(status, json={"title": "nope"}))
    async with hook:
        with pytest.raises(AEPApiError) as err:
            await hook.get_run("r1")
    assert err.value.status == status
    assert len(fake.platform_calls()) == 1 and not slept


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), "CONNECT_FAILED"),
        (httpx.ConnectTimeout("slow connect"), "CONNECT_FAILED"),
        (httpx.ReadTimeout("slow read"), "READ_TIMEOUT"),
        (httpx.RemoteProtocolError("dropped"), "CONNECTION_ERROR"),
    ],
)
async def test_transport_errors_are_retried_then_wrapped_with_the_sync_hook_codes(hook, fake, slept, exc, code):
    fake.on("GET", "/data/foundation/flowservice/runs/r1", exc)
    async with hook:
        with pytest.raises(AEPTransportError) as err:
            await hook.get_run("r1")
    assert err.value.code == code
    assert len(fake.platform_calls()) == 4


async def test_a_transport_error_then_success_recovers(hook, fake):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/r1",
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"items": [run_item("r1", 1)]}),
    )
    async with hook:
        assert (await hook.get_run("r1"))["id"] == "r1"


async def test_a_post_is_not_resent_after_an_ambiguous_failure(hook, fake):
    fake.on("POST", "/data/foundation/flowservice/runs", httpx.Response(502, json={"message": "gateway"}))
    async with hook:
        with pytest.raises(AEPApiError):
            await hook.request("POST", "flowservice", "/runs", json={"flowId": "f1"})
    assert len(fake.platform_calls()) == 1


# ---------------------------------------------------------------- runs
async def test_get_run_unwraps_the_list_envelope_and_accepts_a_bare_object(hook, fake):
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(200, json={"items": [run_item("r1", 1)]}))
    fake.on("GET", "/data/foundation/flowservice/runs/r2", httpx.Response(200, json=run_item("r2", 1)))
    async with hook:
        assert (await hook.get_run("r1"))["id"] == "r1"
        assert (await hook.get_run("r2"))["id"] == "r2"


async def test_list_runs_filters_follows_continuation_and_sorts_newest_first(hook, fake):
    pages = iter(
        [
            {
                "items": [run_item("old", 100), run_item("mid", 200)],
                "_links": {"next": {"href": "/runs?continuationToken=tok2"}},
            },
            {"items": [run_item("new", 300), run_item("too-old", 50)], "_links": {}},
        ]
    )
    fake.on("GET", "/data/foundation/flowservice/runs", lambda request: httpx.Response(200, json=next(pages)))
    async with hook:
        runs = await hook.list_runs("f1", created_after_ms=100)
    assert [r["id"] for r in runs] == ["new", "mid", "old"]
    first, second = (parse_qsl(r.url.query.decode()) for r in fake.platform_calls())
    assert ("property", "flowId==f1") in first and ("property", "createdAt>=100") in first
    assert ("orderby", "-createdAt") in first
    assert ("continuationToken", "tok2") in second and ("property", "flowId==f1") in second


async def test_list_runs_without_a_lower_bound_returns_all(hook, fake):
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs",
        httpx.Response(200, json={"items": [run_item("a", 1), run_item("b", 2)]}),
    )
    async with hook:
        assert [r["id"] for r in await hook.list_runs("f1")] == ["b", "a"]
    assert not any(v.startswith("createdAt") for _, v in parse_qsl(fake.platform_calls()[0].url.query.decode()))


async def test_secrets_never_reach_logs(hook, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.on("GET", "/data/foundation/flowservice/runs/r1", httpx.Response(500, json={"message": "internal"}))
    async with hook:
        with pytest.raises(AEPApiError) as err:
            await hook.get_run("r1")
    for text in (caplog.text, str(err.value), repr(await hook.get_config())):
        assert CLIENT_SECRET not in text and f"{TOKEN}-1" not in text
