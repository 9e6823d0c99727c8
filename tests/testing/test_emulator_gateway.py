"""IMS token endpoint and the gateway/header checks every Platform call goes through."""

from __future__ import annotations

import time

import pytest
import requests
from emulator_helpers import CAT, CONV, FS, SR, XED_ID, AEPClient, fetch_token, ok, xdm

from airflow_provider_aep.testing import AEPEmulator

TOKEN_URL = "/ims/token/v3"


def _form(emu: AEPEmulator, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "scope": "openid",
        **overrides,
    }


def test_ims_issues_bearer_token(emu: AEPEmulator) -> None:
    r = requests.post(emu.base_url + TOKEN_URL, data=_form(emu))
    body = ok(r, 200)
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399 and body["access_token"]
    assert emu.request_log[-1].credentials_in_query is False


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_id": "nope"}, 400, "invalid_client"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_ims_rejects_bad_credentials(emu: AEPEmulator, overrides: dict[str, str], status: int, error: str) -> None:
    body = ok(requests.post(emu.base_url + TOKEN_URL, data=_form(emu, **overrides)), status)
    assert body["error"] == error and body["error_description"]


def test_ims_flags_credentials_in_query_string(emu: AEPEmulator) -> None:
    ok(requests.post(emu.base_url + TOKEN_URL, params=_form(emu)), 200)
    assert emu.request_log[-1].credentials_in_query is True


def test_ims_token_ttl_is_configurable(emu: AEPEmulator) -> None:
    emu.token_ttl = 120
    assert ok(requests.post(emu.base_url + TOKEN_URL, data=_form(emu)), 200)["expires_in"] == 120


def _headers(emu: AEPEmulator, **overrides: str | None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {fetch_token(emu)}",
        "x-api-key": emu.client_id,
        "x-gw-ims-org-id": emu.org_id,
        "x-sandbox-name": "prod",
        "Accept": XED_ID,
    }
    for key, value in overrides.items():
        key = key.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Authorization": None}, 403, "403010"),
        ({"Authorization": "Bearer not-a-token"}, 401, "401013"),
        ({"x_api_key": None}, 403, "403000"),
        ({"x_api_key": "someone-else"}, 403, "403003"),
        ({"x_gw_ims_org_id": None}, 400, "400003"),
        ({"x_gw_ims_org_id": "OTHER@AdobeOrg"}, 403, "403025"),
    ],
)
def test_gateway_errors(emu: AEPEmulator, overrides: dict[str, str | None], status: int, code: str) -> None:
    body = ok(requests.get(emu.base_url + f"{SR}/tenant/schemas", headers=_headers(emu, **overrides)), status)
    assert body["error_code"] == code and body["message"]


def test_gateway_check_order_token_before_api_key(emu: AEPEmulator) -> None:
    r = requests.get(emu.base_url + f"{FS}/flows", headers={"x-gw-ims-org-id": emu.org_id})
    assert ok(r, 403)["error_code"] == "403010"


def test_expired_token_is_rejected_mid_session(emu: AEPEmulator) -> None:
    token = emu.issue_token(ttl=0.3)
    headers = {**_headers(emu), "Authorization": f"Bearer {token}"}
    ok(requests.get(emu.base_url + f"{FS}/flows", headers=headers), 200)
    time.sleep(0.4)
    body = ok(requests.get(emu.base_url + f"{FS}/flows", headers=headers), 401)
    assert body == {"error_code": "401013", "message": "Oauth token is not valid"}


def test_flow_service_requires_sandbox_header(emu: AEPEmulator) -> None:
    body = ok(requests.get(emu.base_url + f"{FS}/flows", headers=_headers(emu, x_sandbox_name=None)), 400)
    assert (
        body["type"].endswith("FLOW-2105-400")
        and body["status"] == 400
        and "x-sandbox-name" in body["report"]["detailed-message"]
    )


def test_unknown_sandbox(emu: AEPEmulator) -> None:
    body = ok(requests.get(emu.base_url + f"{FS}/flows", headers=_headers(emu, x_sandbox_name="nope")), 404)
    assert body["type"].endswith("FLOW-2100-404")
    ok(requests.get(emu.base_url + f"{CAT}/dataSets", headers=_headers(emu, x_sandbox_name="nope")), 404)


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        (f"{SR}/tenant/schemas", "XDM-1001-400"),
        (f"{CAT}/dataSets", "BadRequestError"),
        (f"{CONV}/mappingSets", "BadRequestError"),
    ],
)
def test_strict_mode_needs_the_sandbox_header_the_specs_require(emu: AEPEmulator, path: str, shape: str) -> None:
    body = ok(requests.get(emu.base_url + path, headers=_headers(emu, x_sandbox_name=None)), 400)
    assert shape in (body.get("type", "") + body.get("title", "")) and "x-sandbox-name" in str(body)


def test_lenient_mode_lets_the_other_services_default_to_prod_sandbox() -> None:
    with AEPEmulator(strict=False) as emu:
        client = AEPClient(emu)
        schema = xdm("S", "https://ns.adobe.com/xdm/context/profile")
        ok(client.post(f"{SR}/tenant/schemas", json=schema), 201)
        listed = ok(
            requests.get(emu.base_url + f"{SR}/tenant/schemas", headers=_headers(emu, x_sandbox_name=None)), 200
        )
        assert [r["title"] for r in listed["results"]] == ["S"]


def test_resources_are_partitioned_by_sandbox(emu: AEPEmulator) -> None:
    prod, dev = AEPClient(emu, "prod"), AEPClient(emu, "dev")
    body = xdm("Same title", "https://ns.adobe.com/xdm/context/profile")
    ok(prod.post(f"{SR}/tenant/schemas", json=body), 201)
    ok(dev.post(f"{SR}/tenant/schemas", json=body), 201)  # titles are unique per sandbox only
    snap = emu.snapshot()
    assert len(snap["prod"]["schemas"]) == 1 and len(snap["dev"]["schemas"]) == 1
    assert {r.sandbox for r in emu.request_log if r.service == "schemaregistry"} == {"prod", "dev"}


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_body_needs_json_content_type(client: AEPClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(f"{FS}/connections", data=b'{"name": "x"}', headers=headers)
    body = ok(r, 400)
    assert body["type"] == "/placeholder/type/uri" and body["title"] == "BadRequestError" and body["status"] == 400


def test_malformed_json_is_a_400(client: AEPClient) -> None:
    r = client.post(f"{FS}/connections", data=b"{not json", headers={"Content-Type": "application/json"})
    assert ok(r, 400)["status"] == 400


def test_request_id_is_echoed_or_generated(client: AEPClient) -> None:
    assert client.get(f"{FS}/flows", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get(f"{FS}/flows").headers["x-request-id"]


def test_unknown_path_and_method(client: AEPClient) -> None:
    assert client.get("/data/foundation/nothing").status_code == 404
    assert client.req("PUT", f"{FS}/flows").status_code == 405
    assert ok(client.get(f"{FS}/nonsense/abc"), 404)["type"].endswith("FLOW-1439-404")
