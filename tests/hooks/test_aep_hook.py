"""AEPHook alone against requests-mock: its session, Schema Registry headers, resource helpers, test_connection.

The transport policy both hooks share (tokens, retries, recovery, pagination, errors, secrets) is tested once
for both drivers in test_client_core.py."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks.aep import AEPHook
from tests.conftest import (
    ORG_ID,
    PLATFORM,
)

FS = f"{PLATFORM}/data/foundation/flowservice"
SR = f"{PLATFORM}/data/foundation/schemaregistry"
CAT = f"{PLATFORM}/data/foundation/catalog"
CONV = f"{PLATFORM}/data/foundation/conversion"


@pytest.fixture
def hook(aep_conn, no_sleep):
    return AEPHook(retry_limit=3, retry_delay=0.01)


# ---------------------------------------------------------------- the session and Schema Registry headers
def test_schema_lookups_send_a_versioned_accept_and_lists_an_unversioned_one(hook, ims, requests_mock):
    schema_id = "https://ns.adobe.com/tenant/schemas/abc"
    requests_mock.get(
        f"{SR}/tenant/schemas/https%3A%2F%2Fns.adobe.com%2Ftenant%2Fschemas%2Fabc", json={"$id": schema_id}
    )
    requests_mock.get(f"{SR}/tenant/schemas", json={"results": [], "_page": {"next": None}})

    hook.get_schema(schema_id)
    hook.find_schemas_by_title("T")

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


# ---------------------------------------------------------------- errors
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


# ---------------------------------------------------------------- exploring a source, Data Prep dry runs
def test_explore_sends_the_guides_parameters(hook, ims, requests_mock):
    listing = [{"type": "table", "name": "Orders", "path": "Orders", "canPreview": True, "canFetchSchema": True}]
    structure = {"format": "flat", "schema": {"columns": [{"name": "OrderID", "type": "integer"}]}}
    explore = requests_mock.get(
        f"{FS}/connections/b%2F1/explore",
        json=lambda request, _: listing if request.qs["objecttype"] == ["root"] else structure,
    )
    assert hook.explore("b/1") == listing
    assert parse_qs(explore.last_request.query) == {"objecttype": ["root"]}
    assert hook.explore("b/1", "dbo.Orders", preview=True) == structure
    assert explore.last_request.url.endswith("explore?objectType=table&object=dbo.Orders&preview=true")
    hook.explore("b/1", "dbo.Orders")
    assert "preview" not in explore.last_request.url


def test_test_base_connection_reads_the_result(hook, ims, requests_mock):
    requests_mock.get(f"{FS}/connections/ok/test", json={"result": True})
    requests_mock.get(f"{FS}/connections/bad/test", json={"result": False})
    assert hook.test_base_connection("ok") is True
    assert hook.test_base_connection("bad") is False


def test_validate_and_preview_mapping_sets(hook, ims, requests_mock, no_sleep):
    verdicts = [{"status": "SUCCESS", "errors": None}, {"status": "FAILED", "errors": [{"exception": "x"}]}]
    validate = requests_mock.post(
        f"{CONV}/mappingSets/validate",
        [{"status_code": 503, "json": {}}, {"json": {"validationResponse": verdicts}}],
    )
    payload = {"mappings": [{"source": "a", "destination": "_id"}]}
    assert hook.validate_mapping_set(payload) == verdicts
    assert validate.call_count == 2  # a dry run creates nothing, so it is retried like a read
    assert validate.last_request.json() == payload

    preview = requests_mock.post(f"{CONV}/mappingSets/preview", json=[{"data": {"_id": 1}, "errors": None}])
    assert hook.preview_mapping_set(payload, [{"a": 1}]) == [{"data": {"_id": 1}, "errors": None}]
    assert preview.last_request.json() == {"data": [{"a": 1}], "mappingSet": payload}
    requests_mock.post(f"{CONV}/mappingSets/preview", json={"data": {"_id": 1}})  # the spec's single object
    assert hook.preview_mapping_set(payload, [{"a": 1}]) == [{"data": {"_id": 1}}]
