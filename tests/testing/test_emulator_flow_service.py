"""Flow Service contract: specs, connections, flows, list semantics, etags, error bodies."""

from __future__ import annotations

import time

import pytest
from emulator_helpers import (
    CRM_TO_AEP,
    DATA_LAKE,
    FS,
    ODATA,
    AEPClient,
    create_flow,
    flow_body,
    mapping_set,
    odata_connection,
    ok,
    pipeline,
    target_schema,
)

from airflow_provider_aep.testing import AEPEmulator


def _flow_error(body: dict, code: str) -> None:
    assert body["type"] == f"https://ns.adobe.com/aep/errors/FLOW-{code}", body
    assert body["status"] == int(code.rsplit("-", 1)[1])
    assert (
        body["title"] and body["errorMessage"] and body["report"]["detailed-message"] and "request-id" in body["report"]
    )


def test_connection_specs(client: AEPClient) -> None:
    spec = ok(client.get(f"{FS}/connectionSpecs/{DATA_LAKE}"), 200)["items"][0]
    assert spec["id"] == DATA_LAKE
    found = ok(client.get(f"{FS}/connectionSpecs", params={"property": f'id=="{ODATA}"'}), 200)["items"]
    assert [s["id"] for s in found] == [ODATA] and found[0]["authSpec"][0]["name"] == "Anonymous Authentication"
    _flow_error(ok(client.get(f"{FS}/connectionSpecs/nope"), 404), "1439-404")


def test_flow_spec_schedule_spec_supports_once(client: AEPClient) -> None:
    spec = ok(client.get(f"{FS}/flowSpecs/{CRM_TO_AEP}"), 200)["items"][0]
    schedule = spec["scheduleSpec"]["spec"]
    assert schedule["properties"]["frequency"]["enum"] == ["once", "minute", "hour", "day", "week"]
    assert schedule["required"] == ["startTime", "frequency"] and "if" in schedule and "else" in schedule
    assert (
        ok(client.get(f"{FS}/flowSpecs", params={"property": "sourceConnectionSpecIds[]==" + ODATA}), 200)["items"][0][
            "name"
        ]
        == "CRMToAEP"
    )


def test_connection_create_get_and_location(client: AEPClient) -> None:
    r = client.post(
        f"{FS}/connections",
        json={
            "name": "OData",
            "auth": {"specName": "Anonymous Authentication", "params": {"url": "https://x"}},
            "connectionSpec": {"id": ODATA, "version": "1.0"},
        },
    )
    created = ok(r, 201)
    assert set(created) == {"id", "etag"} and r.headers["Location"].endswith(f"/connections/{created['id']}")
    conn = ok(client.get(f"{FS}/connections/{created['id']}"), 200)["items"][0]
    assert conn["state"] == "enabled" and conn["etag"] == created["etag"] and conn["connectionSpec"]["id"] == ODATA
    assert isinstance(conn["createdAt"], int) and abs(conn["createdAt"] / 1000 - time.time()) < 60


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "connectionSpec": {"id": "nope", "version": "1.0"}}, "1413-400"),
        (
            {
                "name": "x",
                "auth": {"specName": "Nope", "params": {}},
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
            "1415-400",
        ),
        (
            {
                "name": "x",
                "auth": {"specName": "Anonymous Authentication", "params": {}},
                "connectionSpec": {"id": ODATA, "version": "1.0"},
            },
            "1100-400",
        ),
        ({"connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}, "1100-400"),
    ],
)
def test_connection_validation(client: AEPClient, body: dict, code: str) -> None:
    _flow_error(ok(client.post(f"{FS}/connections", json=body), 400), code)


def test_empty_body_is_1405(client: AEPClient) -> None:
    _flow_error(
        ok(client.post(f"{FS}/connections", data=b"", headers={"Content-Type": "application/json"}), 400), "1405-400"
    )


def test_patch_needs_if_match(client: AEPClient) -> None:
    conn_id = odata_connection(client)
    etag = ok(client.get(f"{FS}/connections/{conn_id}"), 200)["items"][0]["etag"]
    ops = [{"op": "replace", "path": "/name", "value": "renamed"}]
    _flow_error(ok(client.patch(f"{FS}/connections/{conn_id}", json=ops), 400), "1403-400")
    stale = ok(client.patch(f"{FS}/connections/{conn_id}", json=ops, headers={"If-Match": '"stale"'}), 412)
    _flow_error(stale, "1404-412")
    assert stale["errorMessage"].startswith("Supplied version=[")
    updated = ok(client.patch(f"{FS}/connections/{conn_id}", json=ops, headers={"If-Match": etag}), 200)
    assert updated["id"] == conn_id and updated["etag"] != etag
    got = ok(client.get(f"{FS}/connections/{conn_id}"), 200)["items"][0]
    assert got["name"] == "renamed" and got["etag"] == updated["etag"]
    _flow_error(ok(client.patch(f"{FS}/connections/{conn_id}", json=ops, headers={"If-Match": etag}), 412), "1404-412")
    spec_change = [{"op": "replace", "path": "/connectionSpec/id", "value": DATA_LAKE}]
    _flow_error(
        ok(client.patch(f"{FS}/connections/{conn_id}", json=spec_change, headers={"If-Match": updated["etag"]}), 400),
        "1414-400",
    )


def test_source_connection_validation(client: AEPClient) -> None:
    base = odata_connection(client)
    common = {"name": "src", "baseConnectionId": base, "connectionSpec": {"id": ODATA, "version": "1.0"}}
    ok(client.post(f"{FS}/sourceConnections", json={**common, "data": {"format": "tabular"}, "params": {}}), 400)
    ok(
        client.post(
            f"{FS}/sourceConnections", json={**common, "data": {"format": "xml"}, "params": {"tableName": "T"}}
        ),
        400,
    )
    ok(
        client.post(
            f"{FS}/sourceConnections",
            json={**common, "baseConnectionId": "missing", "data": {"format": "tabular"}, "params": {"tableName": "T"}},
        ),
        400,
    )
    ok(
        client.post(
            f"{FS}/sourceConnections",
            json={
                **common,
                "data": {"format": "parquet_xdm", "schema": {"id": "unknown"}},
                "params": {"path": "Orders"},
            },
        ),
        400,
    )
    ok(
        client.post(
            f"{FS}/sourceConnections",
            json={**common, "data": {"format": "tabular"}, "params": {"tableName": "T", "columns": [{"name": "a"}]}},
        ),
        400,
    )
    # The current tutorial's example says connectionId instead of baseConnectionId.
    alias = {k: v for k, v in common.items() if k != "baseConnectionId"}
    ok(
        client.post(
            f"{FS}/sourceConnections",
            json={**alias, "connectionId": base, "data": {"format": "tabular"}, "params": {"path": "Orders"}},
        ),
        201,
    )


def test_target_connection_validation(client: AEPClient) -> None:
    p = pipeline(client)
    other_schema = target_schema(client, "Other schema")
    body = {
        "name": "tgt",
        "data": {"format": "parquet_xdm", "schema": {"id": p["schema"]}},
        "params": {"dataSetId": p["dataset"]},
        "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
    }
    ok(client.post(f"{FS}/targetConnections", json={**body, "params": {"dataSetId": "000000000000000000000000"}}), 400)
    ok(
        client.post(
            f"{FS}/targetConnections", json={**body, "data": {"format": "parquet_xdm", "schema": {"id": other_schema}}}
        ),
        400,
    )
    ok(client.post(f"{FS}/targetConnections", json={**body, "connectionSpec": {"id": ODATA, "version": "1.0"}}), 400)


def _schedule(**kw: object) -> dict:
    return {"startTime": int(time.time()), **kw}


@pytest.mark.parametrize(
    "schedule",
    [
        _schedule(frequency="minute", interval=10),  # minute needs >= 15
        _schedule(frequency="hour"),  # interval required
        _schedule(frequency="hour", interval=0),
        _schedule(frequency="once", interval=15),  # once forbids interval
        _schedule(frequency="once", backfill=True),
        _schedule(frequency="fortnight", interval=1),
        {"frequency": "hour", "interval": 1},  # startTime required
        _schedule(frequency="minute", interval="abc"),
    ],
)
def test_flow_schedule_validated_against_flow_spec(client: AEPClient, schedule: dict) -> None:
    p = pipeline(client)
    err = ok(client.post(f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], schedule)), 400)
    _flow_error(err, "1100-400")
    assert "scheduleParams" in err["errorMessage"]


def test_flow_schedule_accepts_digit_strings_and_other_frequencies(client: AEPClient) -> None:
    p = pipeline(client)
    for i, schedule in enumerate(
        [
            {"startTime": "1567411548", "frequency": "minute", "interval": "15"},
            _schedule(frequency="hour", interval=1, backfill=False),
            _schedule(frequency="once"),
            _schedule(frequency="day", interval=1, endTime=int(time.time()) + 86400 * 7),
        ]
    ):
        ok(
            client.post(f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], schedule, name=f"f{i}")),
            201,
        )


def test_flow_create_validation_codes(client: AEPClient) -> None:
    p = pipeline(client)
    schedule = _schedule(frequency="minute", interval=15)
    body = flow_body(p["source"], p["target"], p["mapping"], schedule)
    _flow_error(ok(client.post(f"{FS}/flows", json={**body, "state": "enabled"}), 400), "1410-400")
    _flow_error(
        ok(client.post(f"{FS}/flows", json={**body, "flowSpec": {"id": "nope", "version": "1.0"}}), 400), "1413-400"
    )
    _flow_error(ok(client.post(f"{FS}/flows", json={**body, "sourceConnectionIds": ["missing"]}), 400), "1100-400")
    _flow_error(ok(client.post(f"{FS}/flows", json={**body, "targetConnectionIds": []}), 400), "1100-400")
    no_delta = {**body, "transformations": [{"name": "Copy", "params": {}}, body["transformations"][1]]}
    assert "deltaColumn" in ok(client.post(f"{FS}/flows", json=no_delta), 400)["errorMessage"]
    unknown_transform = {**body, "transformations": [{"name": "Explode", "params": {}}]}
    _flow_error(ok(client.post(f"{FS}/flows", json=unknown_transform), 400), "1100-400")
    bad_version = {
        **body,
        "transformations": [
            body["transformations"][0],
            {"name": "Mapping", "params": {"mappingId": p["mapping"], "mappingVersion": "7"}},
        ],
    }
    _flow_error(ok(client.post(f"{FS}/flows", json=bad_version), 400), "1412-400")
    missing_mapping = {
        **body,
        "transformations": [
            body["transformations"][0],
            {"name": "Mapping", "params": {"mappingId": "f" * 32, "mappingVersion": "0"}},
        ],
    }
    _flow_error(ok(client.post(f"{FS}/flows", json=missing_mapping), 400), "1419-400")


def test_mapping_schema_must_match_target_dataset_schema(client: AEPClient) -> None:
    p = pipeline(client)
    other_mapping = mapping_set(client, target_schema(client, "Another schema"))
    body = flow_body(p["source"], p["target"], other_mapping, _schedule(frequency="minute", interval=15))
    err = ok(client.post(f"{FS}/flows", json=body), 400)
    _flow_error(err, "1425-400")
    assert p["dataset"] in err["errorMessage"] and other_mapping in err["errorMessage"]


def test_flow_get_shape(emu: AEPEmulator, client: AEPClient) -> None:
    p = pipeline(client)
    r = client.post(
        f"{FS}/flows", json=flow_body(p["source"], p["target"], p["mapping"], _schedule(frequency="hour", interval=1))
    )
    created = ok(r, 201)
    assert set(created) == {"id", "etag"} and r.headers["Location"].endswith(created["id"])
    body = ok(client.get(f"{FS}/flows/{created['id']}"), 200)
    assert list(body) == ["items"] and len(body["items"]) == 1
    flow = body["items"][0]
    for field in (
        "id",
        "name",
        "description",
        "flowSpec",
        "state",
        "version",
        "etag",
        "sourceConnectionIds",
        "targetConnectionIds",
        "inheritedAttributes",
        "scheduleParams",
        "transformations",
        "runs",
        "lastOperation",
        "createdAt",
        "updatedAt",
        "createdBy",
        "createdClient",
        "sandboxId",
        "sandboxName",
        "imsOrgId",
    ):
        assert field in flow, field
    assert flow["state"] == "enabled" and flow["sandboxName"] == "prod" and flow["imsOrgId"] == emu.org_id
    assert flow["inheritedAttributes"]["sourceConnections"][0]["baseConnection"]["id"] == p["base"]
    assert flow["inheritedAttributes"]["properties"]["isSourceFlow"] is True
    _flow_error(ok(client.get(f"{FS}/flows/does-not-exist"), 404), "1439-404")
    assert ok(client.get(f"{FS}/flows/does-not-exist"), 404)["report"]["type"] == "flows"


def test_flow_patch_and_actions(client: AEPClient) -> None:
    p = pipeline(client)
    flow_id = create_flow(client, p, _schedule(frequency="hour", interval=1))
    flow = ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]
    ops = [
        {"op": "replace", "path": "/scheduleParams/frequency", "value": "day"},
        {"op": "replace", "path": "/name", "value": "renamed"},
    ]
    _flow_error(ok(client.patch(f"{FS}/flows/{flow_id}", json=ops), 400), "1403-400")
    _flow_error(ok(client.patch(f"{FS}/flows/{flow_id}", json=ops, headers={"If-Match": '"old"'}), 412), "1404-412")
    res = ok(client.patch(f"{FS}/flows/{flow_id}", json=ops, headers={"If-Match": flow["etag"]}), 200)
    flow2 = ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]
    assert (
        flow2["etag"] == res["etag"] != flow["etag"]
        and flow2["scheduleParams"]["frequency"] == "day"
        and flow2["name"] == "renamed"
    )
    assert flow2["lastOperation"]["operation"] == "update"
    bad = [{"op": "replace", "path": "/scheduleParams/interval", "value": "x"}]
    ok(client.patch(f"{FS}/flows/{flow_id}", json=bad, headers={"If-Match": res["etag"]}), 400)
    _flow_error(
        ok(
            client.patch(
                f"{FS}/flows/{flow_id}",
                json=[{"op": "move", "path": "/name", "from": "/x"}],
                headers={"If-Match": res["etag"]},
            ),
            400,
        ),
        "1434-400",
    )
    disabled = ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "disable"}), 200)
    assert (
        ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["state"] == "disabled"
        and disabled["etag"] != res["etag"]
    )
    ok(client.post(f"{FS}/flows/{flow_id}/action", params={"op": "enable"}), 200)
    assert ok(client.get(f"{FS}/flows/{flow_id}"), 200)["items"][0]["state"] == "enabled"


def test_delete_order_is_enforced(client: AEPClient) -> None:
    p = pipeline(client)
    flow_id = create_flow(client, p)
    err = ok(client.delete(f"{FS}/connections/{p['base']}"), 400)
    _flow_error(err, "1418-400")
    assert p["base"] in err["errorMessage"]
    _flow_error(ok(client.delete(f"{FS}/sourceConnections/{p['source']}"), 400), "1447-400")
    _flow_error(ok(client.delete(f"{FS}/targetConnections/{p['target']}"), 400), "1447-400")
    assert client.delete(f"{FS}/flows/{flow_id}").status_code == 204
    _flow_error(ok(client.delete(f"{FS}/flows/{flow_id}"), 404), "1439-404")
    for path in (f"sourceConnections/{p['source']}", f"targetConnections/{p['target']}", f"connections/{p['base']}"):
        r = client.delete(f"{FS}/{path}")
        assert r.status_code == 204 and r.content == b""


# --------------------------------------------------------------------------- list semantics


@pytest.fixture
def many_flows(client: AEPClient) -> tuple[dict, list[str]]:
    p = pipeline(client)
    ids = [create_flow(client, p, _schedule(frequency="hour", interval=1), name=f"flow-{i:02d}") for i in range(7)]
    return p, ids


def test_list_pagination_with_limit_follows_next_href(client: AEPClient, many_flows: tuple[dict, list[str]]) -> None:
    _, ids = many_flows
    seen, url, pages = [], f"{FS}/flows?limit=3", 0
    while url:
        body = ok(client.get(url), 200)
        pages += 1
        seen += [f["id"] for f in body["items"]]
        nxt = body["_links"].get("next")
        if nxt:
            assert nxt["href"].startswith("/flows?continuationToken=") and nxt["href"].count("=") == 1
            url = f"{FS}{nxt['href']}"
        else:
            assert body["_links"] == {}
            url = ""
    assert pages == 3 and seen == ids


def test_default_page_size_is_configurable() -> None:
    with AEPEmulator(page_size=3) as emu:
        c = AEPClient(emu)
        p = pipeline(c)
        ids = [create_flow(c, p, name=f"f{i}") for i in range(7)]
        seen, token = [], None
        for _ in range(5):
            body = ok(c.get(f"{FS}/flows", params={"continuationToken": token} if token else {}), 200)
            seen += [f["id"] for f in body["items"]]
            if not body["_links"]:
                break
            token = body["_links"]["next"]["href"].split("=")[1]  # what aepp does
        assert seen == ids


def test_property_filters(client: AEPClient, many_flows: tuple[dict, list[str]]) -> None:
    p, ids = many_flows

    def names(**params: object) -> list[str]:
        return [f["name"] for f in ok(client.get(f"{FS}/flows", params=params), 200)["items"]]

    assert names(property='name=="flow-03"') == ["flow-03"]
    assert names(property="name==flow-03") == ["flow-03"]
    assert names(property="name==flow-01,flow-05") == ["flow-01", "flow-05"]
    assert len(names(property="name!=flow-01")) == 6
    assert len(names(property=f"sourceConnectionIds[]=={p['source']}")) == 7
    assert names(property=[f"sourceConnectionIds[]=={p['source']}", "name==flow-02"]) == ["flow-02"]
    assert names(property="sourceConnectionIds[]==unknown") == []
    assert len(names(property="inheritedAttributes.properties.isSourceFlow==true")) == 7
    assert len(names(property=f"createdAt>{int(time.time() * 1000) - 60_000}")) == 7
    assert names(property=f"id=={ids[4]}") == ["flow-04"]
    assert names(orderby="-name")[0] == "flow-06" and names(orderby="+name")[0] == "flow-00"
    assert ok(client.get(f"{FS}/flows", params={"count": "true"}), 200) == {"count": 7}
    assert ok(client.get(f"{FS}/flows", params={"count": "true", "property": "name==flow-01"}), 200) == {"count": 1}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 2, "count": "true"}, "1401-400"),
        ({"orderby": "*name"}, "1432-400"),
        ({"orderby": "-#id"}, "1433-400"),
        ({"property": "name=flow"}, "1450-400"),
        ({"property": "name=="}, "1453-400"),
        ({"continuationToken": "garbage!"}, "1453-400"),
    ],
)
def test_list_errors(client: AEPClient, params: dict, code: str) -> None:
    _flow_error(ok(client.get(f"{FS}/flows", params=params), 400), code)
