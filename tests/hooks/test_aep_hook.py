"""AEPHook against requests-mock: headers, tokens, retries, pagination, errors, secrets."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs

import pytest
import requests
import time_machine

from airflow_provider_aep.exceptions import AEPApiError, AEPTransportError
from airflow_provider_aep.hooks.aep import AEPHook
from tests.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    IMS,
    ORG_ID,
    PLATFORM,
    SECRET_MASKER,
    TOKEN,
)

FS = f"{PLATFORM}/data/foundation/flowservice"
SR = f"{PLATFORM}/data/foundation/schemaregistry"
CAT = f"{PLATFORM}/data/foundation/catalog"
CONV = f"{PLATFORM}/data/foundation/conversion"


@pytest.fixture
def hook(aep_conn, no_sleep):
    return AEPHook(retry_limit=3, retry_delay=0.01)


# ---------------------------------------------------------------- headers and transport
def test_every_platform_call_carries_the_aep_header_set(hook, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    requests_mock.post(f"{FS}/flows", status_code=201, json={"id": "f2", "etag": '"1"'})

    assert hook.get_flow("f1") == {"id": "f1"}
    assert hook.create_flow({"name": "n"}) == "f2"

    get, post = [r for r in requests_mock.request_history if r.url.startswith(PLATFORM)]
    for req in (get, post):
        assert req.headers["Authorization"] == f"Bearer {TOKEN}-1"
        assert req.headers["x-api-key"] == CLIENT_ID
        assert req.headers["x-gw-ims-org-id"] == ORG_ID
        assert req.headers["x-sandbox-name"] == "dev"
        assert re.fullmatch(r"[0-9a-f-]{36}", req.headers["x-request-id"])
        assert req.headers["User-Agent"].startswith("airflow-provider-aep/")
        assert "apache-airflow/" in req.headers["User-Agent"]
        assert req.timeout == (10.0, 60.0)
    assert "Content-Type" not in get.headers
    assert post.headers["Content-Type"] == "application/json"
    assert get.headers["x-request-id"] != post.headers["x-request-id"]


def test_schema_lookups_send_a_versioned_accept_and_lists_an_unversioned_one(hook, ims, requests_mock):
    schema_id = "https://ns.adobe.com/tenant/schemas/abc"
    requests_mock.get(
        f"{SR}/tenant/schemas/https%3A%2F%2Fns.adobe.com%2Ftenant%2Fschemas%2Fabc", json={"$id": schema_id}
    )
    requests_mock.get(f"{SR}/tenant/schemas", json={"results": [], "_page": {"next": None}})

    hook.get_schema(schema_id)
    hook.find_schema_by_title("T")

    lookup, listing = requests_mock.request_history[1:]
    assert lookup.headers["Accept"] == "application/vnd.adobe.xed+json; version=1"
    assert listing.headers["Accept"] == "application/vnd.adobe.xed-id+json"
    assert parse_qs(listing.query)["property"] == ["title==t"]  # requests_mock lowercases the query


def test_one_session_is_reused_for_every_call(hook, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    session = hook.get_conn()
    hook.get_flow("f1")
    hook.get_flow("f1")
    assert hook.get_conn() is session


def test_timeout_is_overridable_per_hook_and_per_call(aep_conn, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    hook = AEPHook(timeout=5)
    hook.get_flow("f1")
    hook.request("GET", "flowservice", "/flows/f1", timeout=(1, 2))
    assert [r.timeout for r in requests_mock.request_history[1:]] == [5, (1, 2)]


# ---------------------------------------------------------------- tokens
def test_token_request_uses_form_body_never_the_query_string(hook, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    hook.get_flow("f1")
    token_call = ims.request_history[0]
    assert token_call.query == ""
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(token_call.text)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "scope": ["openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"],
    }


def test_token_is_cached_across_calls_and_hooks(aep_conn, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    AEPHook().get_flow("f1")
    AEPHook().get_flow("f1")
    AEPHook().get_flow("f1")
    assert ims.call_count == 1


def test_token_is_refreshed_a_few_minutes_before_it_expires(aep_conn, ims, requests_mock):
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    with time_machine.travel(1_800_000_000, tick=False) as clock:
        hook = AEPHook()
        hook.get_flow("f1")
        clock.shift(86399 - 600)  # ten minutes before expiry: still good
        hook.get_flow("f1")
        assert ims.call_count == 1
        clock.shift(400)  # inside the refresh lead time
        hook.get_flow("f1")
        assert ims.call_count == 2
    assert requests_mock.request_history[-1].headers["Authorization"] == f"Bearer {TOKEN}-2"


def test_a_401_drops_the_token_fetches_a_new_one_and_retries_once(hook, ims, requests_mock):
    flow = requests_mock.get(
        f"{FS}/flows/f1",
        [
            {"status_code": 401, "json": {"error_code": "401013", "message": "Oauth token is not valid"}},
            {"json": {"items": [{"id": "f1"}]}},
        ],
    )
    assert hook.get_flow("f1") == {"id": "f1"}
    assert ims.call_count == 2
    assert [r.headers["Authorization"] for r in flow.request_history] == [f"Bearer {TOKEN}-1", f"Bearer {TOKEN}-2"]


def test_a_second_401_is_raised_not_looped(hook, ims, requests_mock):
    requests_mock.get(
        f"{FS}/flows/f1", status_code=401, json={"error_code": "401013", "message": "Oauth token is not valid"}
    )
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    assert err.value.status == 401 and err.value.code == "401013"
    assert ims.call_count == 2


def test_a_pre_issued_access_token_is_used_without_ims(monkeypatch, requests_mock, no_sleep):
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json(access_token="pre-issued-token-xyz"))
    ims = requests_mock.post(f"{IMS}/ims/token/v3", json={})
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    AEPHook().get_flow("f1")
    assert ims.call_count == 0
    assert requests_mock.request_history[-1].headers["Authorization"] == "Bearer pre-issued-token-xyz"


def test_ims_errors_are_decoded_and_not_retried(hook, requests_mock):
    ims = requests_mock.post(
        f"{IMS}/ims/token/v3",
        status_code=400,
        json={"error": "invalid_client", "error_description": "invalid client_secret parameter"},
    )
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    assert err.value.code == "invalid_client"
    assert "invalid client_secret parameter" in str(err.value)
    assert ims.call_count == 1


# ---------------------------------------------------------------- retries
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_success(hook, ims, requests_mock, no_sleep, status):
    flow = requests_mock.get(
        f"{FS}/flows/f1",
        [{"status_code": status, "json": {"error_code": str(status), "message": "busy"}}] * 2
        + [{"json": {"items": [{"id": "f1"}]}}],
    )
    assert hook.get_flow("f1") == {"id": "f1"}
    assert flow.call_count == 3
    assert len(no_sleep) == 2


def test_retry_after_seconds_is_honoured(hook, ims, requests_mock, no_sleep):
    requests_mock.get(
        f"{FS}/flows/f1",
        [
            {
                "status_code": 429,
                "headers": {"Retry-After": "7"},
                "json": {"error_code": "429050", "message": "Too many requests"},
            },
            {"json": {"items": [{"id": "f1"}]}},
        ],
    )
    hook.get_flow("f1")
    assert no_sleep == [7.0]


def test_retry_after_http_date_is_honoured_and_capped(aep_conn, ims, requests_mock, no_sleep):
    hook = AEPHook(retry_limit=2, retry_args={"retry_after_cap": 30})
    with time_machine.travel("2026-01-01 00:00:00 +0000", tick=False):
        requests_mock.get(
            f"{FS}/flows/f1",
            [
                {"status_code": 503, "headers": {"Retry-After": "Thu, 01 Jan 2026 00:00:12 GMT"}, "text": "down"},
                {"status_code": 503, "headers": {"Retry-After": "Thu, 01 Jan 2026 01:00:00 GMT"}, "text": "down"},
                {"json": {"items": [{"id": "f1"}]}},
            ],
        )
        hook.get_flow("f1")
    assert no_sleep == [12.0, 30.0]


def test_backoff_grows_exponentially_without_retry_after(aep_conn, ims, requests_mock, no_sleep):
    hook = AEPHook(retry_limit=3, retry_delay=2, retry_args={"jitter": False})
    requests_mock.get(f"{FS}/flows/f1", status_code=502, text="<html>Bad Gateway</html>")
    with pytest.raises(AEPApiError):
        hook.get_flow("f1")
    assert no_sleep == [2, 4, 8]


def test_gives_up_after_the_limit_with_the_last_error(hook, ims, requests_mock, no_sleep):
    flow = requests_mock.get(
        f"{FS}/flows/f1",
        [
            {"status_code": 500, "json": {"title": "first", "detail": "first failure"}},
            {"status_code": 502, "json": {"detail": "second failure"}},
            {"status_code": 503, "json": {"detail": "third failure"}},
            {"status_code": 504, "json": {"detail": "last failure"}},
        ],
    )
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    assert flow.call_count == 4  # first try + retry_limit=3
    assert err.value.status == 504
    assert "last failure" in str(err.value)


def test_connection_errors_and_timeouts_are_retried(hook, ims, requests_mock, no_sleep):
    flow = requests_mock.get(
        f"{FS}/flows/f1",
        [
            {"exc": requests.ConnectionError("reset by peer")},
            {"exc": requests.ReadTimeout("slow")},
            {"json": {"items": [{"id": "f1"}]}},
        ],
    )
    assert hook.get_flow("f1") == {"id": "f1"}
    assert flow.call_count == 3


def test_transport_error_after_the_limit_is_an_aep_error(hook, ims, requests_mock, no_sleep):
    requests_mock.get(f"{FS}/flows/f1", exc=requests.ReadTimeout("read timed out"))
    with pytest.raises(AEPTransportError) as err:
        hook.get_flow("f1")
    assert isinstance(err.value, AEPApiError)
    assert err.value.status is None and err.value.code == "READ_TIMEOUT"


@pytest.mark.parametrize("status", [400, 403, 404, 409, 412])
def test_client_errors_are_not_retried(hook, ims, requests_mock, no_sleep, status):
    flow = requests_mock.get(f"{FS}/flows/f1", status_code=status, json={"error_code": "x", "message": "no"})
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    assert err.value.status == status
    assert flow.call_count == 1
    assert no_sleep == []


# ---------------------------------------------------------------- creates are never blindly re-sent
def test_a_create_whose_response_was_lost_is_looked_up_before_resending(hook, ims, requests_mock, no_sleep):
    post = requests_mock.post(f"{FS}/flows", exc=requests.ConnectionError("connection dropped"))
    lookup = requests_mock.get(f"{FS}/flows", json={"items": [{"id": "committed", "name": "my flow"}], "_links": {}})
    assert hook.create_flow({"name": "my flow"}) == "committed"
    assert post.call_count == 1
    assert lookup.call_count == 1
    assert parse_qs(lookup.request_history[0].query)["property"] == ["name==my flow"]


def test_a_create_that_did_not_commit_is_sent_again(hook, ims, requests_mock, no_sleep):
    post = requests_mock.post(
        f"{FS}/flows",
        [{"status_code": 503, "text": "unavailable"}, {"status_code": 201, "json": {"id": "new", "etag": '"1"'}}],
    )
    lookup = requests_mock.get(f"{FS}/flows", json={"items": [], "_links": {}})
    assert hook.create_flow({"name": "my flow"}) == "new"
    assert post.call_count == 2 and lookup.call_count == 1


def test_a_429_on_create_is_resent_without_a_lookup(hook, ims, requests_mock, no_sleep):
    post = requests_mock.post(
        f"{FS}/flows",
        [
            {"status_code": 429, "headers": {"Retry-After": "1"}, "text": ""},
            {"status_code": 201, "json": {"id": "new"}},
        ],
    )
    lookup = requests_mock.get(f"{FS}/flows", json={"items": [], "_links": {}})
    assert hook.create_flow({"name": "my flow"}) == "new"
    assert post.call_count == 2 and lookup.call_count == 0


def test_a_create_without_a_lookup_is_not_resent_after_an_ambiguous_failure(hook, ims, requests_mock, no_sleep):
    post = requests_mock.post(f"{CONV}/mappingSets", status_code=500, json={"message": "boom"})
    with pytest.raises(AEPApiError):
        hook.create_mapping_set({"xdmSchema": "s", "mappings": []})  # legacy body: no name to look up
    assert post.call_count == 1


# ---------------------------------------------------------------- pagination (3+ pages each)
def test_flow_service_pagination_follows_continuation_tokens(hook, ims, requests_mock):
    def page(request, context):
        token = parse_qs(request.query).get("continuationtoken", [None])[0]
        nxt = {None: "t1", "t1": "t2", "t2": None}[token]
        items = [{"id": f"{token}-{i}", "name": "x"} for i in range(2)]
        return {"items": items, "_links": {"next": {"href": f"/flows?continuationToken={nxt}"}} if nxt else {}}

    m = requests_mock.get(f"{FS}/flows", json=page)
    ids = [f["id"] for f in hook.paginate_flow_service("/flows", {"property": "name==x"})]
    assert ids == ["None-0", "None-1", "t1-0", "t1-1", "t2-0", "t2-1"]
    assert m.call_count == 3
    assert all(parse_qs(r.query)["property"] == ["name==x"] for r in m.request_history)


def test_schema_registry_pagination_sends_page_next_as_start(hook, ims, requests_mock):
    def page(request, context):
        start = parse_qs(request.query).get("start", ["0"])[0]
        nxt = {"0": "b", "b": "d", "d": None}[start]
        return {"results": [{"$id": start}], "_page": {"orderby": "title", "next": nxt, "count": 1}}

    m = requests_mock.get(f"{SR}/tenant/schemas", json=page)
    assert [r["$id"] for r in hook.paginate_schema_registry("/tenant/schemas")] == ["0", "b", "d"]
    assert all(parse_qs(r.query)["orderby"] == ["title"] for r in m.request_history)


def test_catalog_pagination_uses_start_and_limit_until_a_short_page(hook, ims, requests_mock):
    def page(request, context):
        q = parse_qs(request.query)
        start, limit = int(q["start"][0]), int(q["limit"][0])
        total = 2 * limit + 3
        return {f"ds{i}": {"name": f"n{i}"} for i in range(start, min(start + limit, total))}

    m = requests_mock.get(f"{CAT}/dataSets", json=page)
    datasets = list(hook.list_datasets())
    assert len(datasets) == 203 and datasets[0] == {"id": "ds0", "name": "n0"}
    assert [parse_qs(r.query)["start"] for r in m.request_history] == [["0"], ["100"], ["200"]]


def test_conversion_pagination_uses_start_and_limit_with_data(hook, ims, requests_mock):
    def page(request, context):
        q = parse_qs(request.query)
        start, limit = int(q["start"][0]), int(q["limit"][0])
        data = [{"id": f"m{i}"} for i in range(start, min(start + limit, 250))]
        return {"data": data, "_page": {"count": len(data), "limit": limit}}

    m = requests_mock.get(f"{CONV}/mappingSets", json=page)
    assert len(list(hook.list_mapping_sets())) == 250
    assert m.call_count == 3


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
def test_error_bodies_are_decoded(aep_conn, ims, requests_mock, no_sleep, status, body, code, message):
    requests_mock.get(f"{FS}/flows/f1", status_code=status, json=body, headers={"x-request-id": "hdr-req"})
    with pytest.raises(AEPApiError) as err:
        AEPHook(retry_limit=0).get_flow("f1")
    exc = err.value
    assert exc.status == status
    assert exc.code == code
    assert message in exc.message
    assert exc.request_id == "hdr-req"
    text = str(exc)
    assert "\n" not in text and f"HTTP {status}" in text and "GET" in text and "hdr-req" in text


def test_non_json_error_bodies_are_handled(hook, ims, requests_mock, no_sleep):
    requests_mock.get(f"{FS}/flows/f1", status_code=404, text="<html><body>Not Found</body></html>")
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    assert err.value.code is None
    assert "Not Found" in err.value.message
    assert re.fullmatch(r"[0-9a-f-]{36}", err.value.request_id)  # ours, since AEP sent none


def test_conflict_and_not_found_helpers(hook, ims, requests_mock):
    requests_mock.post(
        f"{SR}/tenant/schemas",
        status_code=400,
        json={"type": "http://ns.adobe.com/aep/errors/XDM-1521-400", "title": "Title not unique"},
    )
    with pytest.raises(AEPApiError) as err:
        hook.create_schema({"title": "T"})
    assert err.value.is_conflict


def test_api_errors_survive_pickling():
    import pickle

    err = AEPApiError("boom", status=500, code="X", request_id="r", method="GET", url="u")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.status, clone.code, str(clone)) == (500, "X", str(err))


# ---------------------------------------------------------------- secrets
def test_secrets_never_reach_logs_or_exception_text(hook, requests_mock, caplog, no_sleep):
    caplog.set_level(logging.DEBUG)
    requests_mock.post(
        f"{IMS}/ims/token/v3", json={"access_token": TOKEN, "token_type": "bearer", "expires_in": 100000}
    )
    requests_mock.get(f"{FS}/flows/f1", status_code=500, json={"message": "internal"})
    with pytest.raises(AEPApiError) as err:
        hook.get_flow("f1")
    texts = [caplog.text, str(err.value), repr(err.value), repr(hook.config)]
    for text in texts:
        assert CLIENT_SECRET not in text
        assert TOKEN not in text


def test_tokens_are_registered_with_the_secret_masker(hook, ims, requests_mock, monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr(SECRET_MASKER, masked.append)
    requests_mock.get(f"{FS}/flows/f1", json={"items": [{"id": "f1"}]})
    hook.get_flow("f1")
    assert CLIENT_SECRET in masked
    assert f"{TOKEN}-1" in masked


# ---------------------------------------------------------------- resource helpers
def test_dataset_create_parses_the_catalog_answer(hook, ims, requests_mock):
    post = requests_mock.post(f"{CAT}/dataSets", status_code=201, json=["@/dataSets/5e8a55ca53662c18af37a83a"])
    assert hook.create_dataset({"name": "d", "schemaRef": {"id": "s"}}) == "5e8a55ca53662c18af37a83a"
    assert parse_qs(post.request_history[0].query) == {"requestdatasource": ["true"]}


@pytest.mark.parametrize(
    "answer",
    [
        {"items": [{"id": "run-1", "etag": "e"}]},
        {"id": "run-1", "etag": "e"},
        {"id": "run-1", "flowId": "f", "metrics": {}},
    ],
)
def test_create_run_accepts_every_documented_answer_shape(hook, ims, requests_mock, answer):
    post = requests_mock.post(f"{FS}/runs", status_code=201, json=answer)
    assert hook.create_run("f", {"startTime": 1, "windowStartTime": 0, "windowEndTime": 1}) == "run-1"
    assert post.request_history[0].json() == {
        "flowId": "f",
        "params": {"startTime": 1, "windowStartTime": 0, "windowEndTime": 1},
    }


def test_delete_treats_404_as_already_gone(hook, ims, requests_mock):
    requests_mock.delete(f"{FS}/flows/gone", status_code=404, json={"title": "Resource not found"})
    requests_mock.delete(f"{FS}/flows/here", status_code=204)
    assert hook.delete_flow("gone") is False
    assert hook.delete_flow("here") is True


def test_catalog_delete_of_nothing_answers_an_empty_list(hook, ims, requests_mock):
    requests_mock.delete(f"{CAT}/dataSets/gone", json=[])
    requests_mock.delete(f"{CAT}/dataSets/here", json=["@/dataSets/here"])
    assert hook.delete_dataset("gone") is False
    assert hook.delete_dataset("here") is True


def test_update_flow_sends_if_match_and_rereads_on_412(hook, ims, requests_mock):
    requests_mock.get(
        f"{FS}/flows/f1",
        [{"json": {"items": [{"id": "f1", "etag": '"v1"'}]}}, {"json": {"items": [{"id": "f1", "etag": '"v2"'}]}}],
    )
    patch = requests_mock.patch(
        f"{FS}/flows/f1",
        [
            {"status_code": 412, "json": {"errorMessage": "Supplied version=[v1] does not match"}},
            {"json": {"id": "f1", "etag": '"v3"'}},
        ],
    )
    hook.update_flow("f1", [{"op": "replace", "path": "/name", "value": "n"}])
    assert [r.headers["If-Match"] for r in patch.request_history] == ['"v1"', '"v2"']


def test_tenant_id_comes_from_stats_once(hook, ims, requests_mock):
    stats = requests_mock.get(f"{SR}/stats", json={"tenantId": "acme", "imsOrg": ORG_ID})
    assert hook.get_tenant_id() == "acme" and hook.get_tenant_id() == "acme"
    assert stats.call_count == 1


def test_test_connection_reports_success_and_failure(hook, ims, requests_mock):
    requests_mock.get(
        f"{SR}/stats",
        [
            {"json": {"tenantId": "acme"}},
            {"status_code": 403, "json": {"error_code": "403003", "message": "Api Key is invalid"}},
        ],
    )
    ok, message = hook.test_connection()
    assert ok and "acme" in message and ORG_ID in message
    ok, message = hook.test_connection()
    assert not ok and "403003" in message and "Api Key is invalid" in message


def test_dataflow_url_points_at_the_activity_page(hook):
    assert (
        hook.dataflow_url("f1")
        == f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/f1/activity"
    )
    assert hook.dataflow_url("f1", "r1").endswith("/dataflows/f1/activity/r1")
