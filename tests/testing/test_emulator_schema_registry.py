"""Schema Registry contract: creates, lookups, lists, Accept rules, uniqueness, PATCH, deletes."""

from __future__ import annotations

import pytest
from emulator_helpers import (
    CAT,
    PROFILE,
    SR,
    XED_ID,
    XED_V1,
    AEPClient,
    dataset,
    ok,
    quoted,
    target_schema,
    xdm,
)

from airflow_provider_aep.testing import AEPEmulator

PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"


def _adhoc_class(c: AEPClient, title: str = "Ad hoc class") -> dict:
    body = {
        "title": title,
        "description": title,
        "type": "object",
        "allOf": [
            {"$ref": "https://ns.adobe.com/xdm/data/adhoc"},
            {"properties": {"_adhoc": {"type": "object", "properties": {"OrderID": {"type": "string"}}}}},
        ],
    }
    return ok(c.post(f"{SR}/tenant/classes", json=body), 201)


def test_stats(emu: AEPEmulator, client: AEPClient) -> None:
    target_schema(client)
    stats = ok(client.get(f"{SR}/stats"), 200)
    assert stats["tenantId"] == emu.tenant_id and stats["imsOrg"] == emu.org_id
    assert (
        stats["counts"]["schemas"] == 1 and stats["recentlyCreatedResources"][0]["title"] == "Protocols target schema"
    )


@pytest.mark.parametrize("kind", ["classes", "schemas"])
def test_duplicate_title_is_xdm_1521_across_kinds(client: AEPClient, kind: str) -> None:
    existing = _adhoc_class(client, "Taken")
    body = xdm("Taken", PROFILE) if kind == "schemas" else xdm("Taken", "https://ns.adobe.com/xdm/data/adhoc")
    if kind == "classes":
        body["allOf"].append({"properties": {"_adhoc": {"type": "object"}}})
    err = ok(client.post(f"{SR}/tenant/{kind}", json=body), 400)
    assert err["type"] == "http://ns.adobe.com/aep/errors/XDM-1521-400" and err["title"] == "Title not unique"
    assert existing["$id"] in err["report"]["detailed-message"] and err["report"]["sub-errors"] == []


def test_schema_with_unknown_reference_or_no_class(client: AEPClient) -> None:
    err = ok(client.post(f"{SR}/tenant/schemas", json=xdm("X", "https://ns.adobe.com/nope")), 400)
    assert err["type"].endswith("-400") and "nope" in err["detail"]
    ok(client.post(f"{SR}/tenant/schemas", json=xdm("Y", PERSON)), 400)
    other_class = xdm("Z", PROFILE, **{"meta:class": "https://ns.adobe.com/other"})
    ok(client.post(f"{SR}/tenant/schemas", json=other_class), 400)


def test_adhoc_class_requires_adhoc_fields(client: AEPClient) -> None:
    body = xdm("No fields", "https://ns.adobe.com/xdm/data/adhoc")
    ok(client.post(f"{SR}/tenant/classes", json=body), 400)


def test_lookup_by_encoded_id_and_alt_id_needs_versioned_accept(client: AEPClient) -> None:
    schema_id = target_schema(client)
    for ident in (quoted(schema_id),):
        assert ok(client.get(f"{SR}/tenant/schemas/{ident}", headers={"Accept": XED_V1}), 200)["$id"] == schema_id
    alt = ok(client.get(f"{SR}/tenant/schemas/{quoted(schema_id)}", headers={"Accept": XED_V1}), 200)["meta:altId"]
    assert ok(client.get(f"{SR}/tenant/schemas/{alt}", headers={"Accept": XED_V1}), 200)["$id"] == schema_id
    full = ok(
        client.get(f"{SR}/tenant/schemas/{alt}", headers={"Accept": "application/vnd.adobe.xed-full+json; version=1"}),
        200,
    )
    assert {"_id", "person"} <= set(full["properties"])
    for accept in ("application/vnd.adobe.xed+json", XED_ID, "application/json", None):
        headers = {"Accept": accept} if accept else {"Accept": ""}
        err = ok(client.get(f"{SR}/tenant/schemas/{alt}", headers=headers), 400)
        assert err["type"] == "http://ns.adobe.com/aep/errors/XDM-1006-400"


def test_lookup_missing_is_404(client: AEPClient) -> None:
    err = ok(
        client.get(f"{SR}/tenant/schemas/{quoted('https://ns.adobe.com/x/schemas/none')}", headers={"Accept": XED_V1}),
        404,
    )
    assert err["type"].startswith("http://ns.adobe.com/aep/errors/XDM-10") and err["status"] == 404


def test_list_accept_rules(client: AEPClient) -> None:
    target_schema(client)
    ok(client.get(f"{SR}/tenant/schemas", headers={"Accept": XED_ID}), 200)
    assert (
        "allOf"
        in ok(client.get(f"{SR}/tenant/schemas", headers={"Accept": "application/vnd.adobe.xed+json"}), 200)["results"][
            0
        ]
    )
    assert ok(client.get(f"{SR}/tenant/schemas", headers={"Accept": XED_V1}), 400)["type"].endswith("XDM-1006-400")
    assert ok(client.get(f"{SR}/tenant/schemas", headers={"Accept": "application/json"}), 400)["status"] == 400


def test_list_filter_by_title_and_paging(client: AEPClient) -> None:
    for i in range(7):
        ok(
            client.post(
                f"{SR}/tenant/schemas",
                json=xdm(f"S{i}", PROFILE),
            ),
            201,
        )
    found = ok(client.get(f"{SR}/tenant/schemas", params={"property": "title==S3"}, headers={"Accept": XED_ID}), 200)
    assert [r["title"] for r in found["results"]] == ["S3"] and set(found["results"][0]) == {
        "$id",
        "meta:altId",
        "version",
        "title",
    }

    titles, params, pages = [], {"orderby": "title", "limit": "3"}, 0
    while True:
        page = ok(client.get(f"{SR}/tenant/schemas", params=params, headers={"Accept": XED_ID}), 200)
        pages += 1
        titles += [r["title"] for r in page["results"]]
        assert page["_page"]["count"] == len(page["results"]) and page["_page"]["orderby"] == "title"
        if page["_page"]["next"] is None:
            assert page["_links"]["next"] is None
            break
        assert page["_links"]["next"]["href"]
        params = {"orderby": "title", "limit": "3", "start": page["_page"]["next"]}
    assert pages == 3 and titles == [f"S{i}" for i in range(7)]
    desc = ok(client.get(f"{SR}/tenant/schemas", params={"orderby": "-title"}, headers={"Accept": XED_ID}), 200)
    assert next(r["title"] for r in desc["results"]) == "S6"


def test_global_containers(client: AEPClient) -> None:
    groups = ok(
        client.get(
            f"{SR}/global/fieldgroups",
            params={"property": f"meta:intendedToExtend=={PROFILE}"},
            headers={"Accept": XED_ID},
        ),
        200,
    )["results"]
    assert {PERSON, PERSONAL} <= {g["$id"] for g in groups}
    profile = ok(client.get(f"{SR}/global/classes/{quoted(PROFILE)}", headers={"Accept": XED_V1}), 200)
    assert profile["title"] == "XDM Individual Profile"
    adhoc = ok(
        client.get(
            f"{SR}/tenant/schemas",
            params={"property": "meta:extends!=https://ns.adobe.com/xdm/data/adhoc"},
            headers={"Accept": XED_ID},
        ),
        200,
    )
    assert adhoc["results"] == []


def test_patch_adds_field_groups_and_bumps_version(client: AEPClient) -> None:
    schema = ok(
        client.post(
            f"{SR}/tenant/schemas",
            json=xdm("P", PROFILE),
        ),
        201,
    )
    url = f"{SR}/tenant/schemas/{quoted(schema['$id'])}"
    v1 = ok(client.patch(url, json=[{"op": "add", "path": "/allOf/-", "value": {"$ref": PERSON}}]), 200)
    v2 = ok(client.patch(url, json=[{"op": "add", "path": "/allOf/-", "value": {"$ref": PERSONAL}}]), 200)
    assert (v1["version"], v2["version"]) == ("1.1", "1.2")
    assert {PERSON, PERSONAL} <= set(v2["meta:extends"])
    ok(
        client.patch(url, json=[{"op": "add", "path": "/allOf/-", "value": {"$ref": "https://ns.adobe.com/unknown"}}]),
        400,
    )
    ok(client.patch(url, json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]), 400)


def test_tenant_fieldgroup_create_and_use(client: AEPClient) -> None:
    fg = ok(
        client.post(
            f"{SR}/tenant/fieldgroups",
            json={
                "type": "object",
                "title": "Loyalty",
                "meta:intendedToExtend": [PROFILE],
                "definitions": {"loyalty": {"properties": {}}},
                "allOf": [{"$ref": "#/definitions/loyalty"}],
            },
        ),
        201,
    )
    assert "/mixins/" in fg["$id"]
    listed = ok(
        client.get(
            f"{SR}/tenant/fieldgroups",
            params={"property": f"meta:intendedToExtend=={PROFILE}"},
            headers={"Accept": XED_ID},
        ),
        200,
    )
    assert [r["$id"] for r in listed["results"]] == [fg["$id"]]
    ok(
        client.post(
            f"{SR}/tenant/schemas",
            json=xdm("With loyalty", PROFILE, fg["$id"]),
        ),
        201,
    )


def test_deletes_respect_references(client: AEPClient) -> None:
    cls = _adhoc_class(client)
    schema = ok(
        client.post(
            f"{SR}/tenant/schemas",
            json=xdm("Ad hoc schema", cls["$id"]),
        ),
        201,
    )
    ds = dataset(client, schema["$id"])
    ok(client.delete(f"{SR}/tenant/classes/{quoted(cls['$id'])}"), 400)
    ok(client.delete(f"{SR}/tenant/schemas/{quoted(schema['$id'])}"), 400)
    assert client.delete(f"{CAT}/dataSets/{ds}").status_code == 200
    assert client.delete(f"{SR}/tenant/schemas/{quoted(schema['$id'])}").status_code == 204
    assert client.delete(f"{SR}/tenant/classes/{quoted(cls['$id'])}").status_code == 204
    ok(client.delete(f"{SR}/tenant/classes/{quoted(cls['$id'])}"), 404)
    # The title is free again.
    _adhoc_class(client)
