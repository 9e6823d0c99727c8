"""The emulator answers every request it can parse as AEP would, refuses what it cannot parse, and never blocks
its other clients: each hostile request below is followed by a normal call that must still be answered."""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest
from emulator_helpers import CAT, CONV, DATA_LAKE, FS, SR, XED_ID, AEPClient, fetch_token

from airflow_provider_aep.testing import query

# A client that waits longer than this for a plain list call is blocked, not slow (a safety bound, never a target).
ANSWER_WITHIN = 10


def still_answers(emu) -> None:
    """A fresh client gets a token and a list of flows: IMS and Platform both still serve."""
    client = AEPClient(emu)
    try:
        assert client.req("GET", f"{FS}/flows", timeout=ANSWER_WITHIN).status_code == 200
    finally:
        client.close()


def is_aep_400(response) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.get("title") and (body.get("detail") or body.get("errorMessage")), body
    return body


def token(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


# ---------------------------------------------------------------- bodies, numbers and parameters
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        (json.dumps({"name": "x", "deep": json.loads("[" * 70 + "]" * 70)}), "nested deeper than 64 levels"),
        ('{"name": "x", "n": ' + "7" * 5000 + "}", "out of the 64-bit range"),
        ('{"name": "x", "n": 9223372036854775808}', "out of the 64-bit range"),
        ('{"name": "x", "n": NaN}', "NaN is not a JSON number"),
        ('{"name": "x", ', "Malformed JSON body"),
        (b'{"name": "\xff"}', "Malformed JSON body"),
    ],
    ids=["100000-deep", "70-deep", "5000-digits", "past-int64", "nan", "truncated", "not-utf8"],
)
def test_bodies_aep_cannot_read_get_a_400_in_its_shape(emu, client, body, reason):
    response = client.req(
        "POST", f"{FS}/connections", data=body, headers={"Content-Type": "application/json"}, timeout=ANSWER_WITHIN
    )
    assert reason in json.dumps(is_aep_400(response))
    still_answers(emu)


@pytest.mark.parametrize(
    "state",
    [
        {"o": "10", "p": [], "ob": None, "l": None},
        {"o": 0, "p": "name==x", "ob": None, "l": None},
        {"o": 0, "p": [], "ob": 5, "l": None},
        {"o": 0, "p": [], "ob": None, "l": "9" * 5000},
        {"o": -1, "p": [], "ob": None, "l": None},
        [1, 2],
    ],
    ids=["offset-string", "filters-string", "orderby-number", "limit-digits", "negative", "not-an-object"],
)
def test_a_continuation_token_of_the_wrong_types_is_a_400(emu, client, state):
    response = client.req("GET", f"{FS}/flows", params={"continuationToken": token(state)}, timeout=ANSWER_WITHIN)
    assert "continuationToken" in is_aep_400(response)["errorMessage"]
    still_answers(emu)


@pytest.mark.parametrize(
    ("path", "params", "headers"),
    [
        (f"{FS}/flows", {"limit": "9" * 5000}, {}),
        (f"{FS}/flows", {"limit": "²"}, {}),
        (f"{CAT}/dataSets", {"limit": "9" * 5000}, {}),
        (f"{CAT}/dataSets", {"start": "1" * 5000}, {}),
        (f"{CONV}/mappingSets", {"start": "0", "limit": "9" * 5000}, {}),
        (f"{SR}/tenant/schemas", {"limit": "9" * 5000}, {"Accept": XED_ID}),
    ],
    ids=["flows-limit", "flows-unicode-digit", "datasets-limit", "datasets-start", "mapping-sets-limit", "xdm-limit"],
)
def test_numbers_in_parameters_beyond_reason_are_a_400(emu, client, path, params, headers):
    is_aep_400(client.req("GET", path, params=params, headers=headers, timeout=ANSWER_WITHIN))
    still_answers(emu)


# ---------------------------------------------------------------- `~` patterns
@pytest.mark.parametrize(
    ("path", "headers"),
    [(f"{FS}/connections", {}), (f"{CAT}/dataSets", {}), (f"{SR}/tenant/schemas", {"Accept": XED_ID})],
    ids=["flow-service", "catalog", "schema-registry"],
)
def test_an_invalid_pattern_is_a_400_naming_it(emu, client, path, headers):
    field = "title" if "schemaregistry" in path else "name"
    response = client.req("GET", path, params={"property": f"{field}~(unclosed"}, headers=headers)
    assert "(unclosed" in json.dumps(is_aep_400(response))
    still_answers(emu)


def test_a_pathological_pattern_is_matched_in_bounded_time_while_other_clients_are_served(emu, client):
    for i in range(50):  # a backtracking engine needs ~2^40 steps per name for ^(a+)+$
        connection = {"name": "a" * 40 + f"!{i}", "connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}
        assert client.req("POST", f"{FS}/connections", json=connection).status_code == 201
    answers: dict[str, int] = {}

    def evil() -> None:
        other = AEPClient(emu)
        try:
            response = other.req("GET", f"{FS}/connections", params={"property": "name~^(a+)+$"}, timeout=120)
            answers["pattern"] = response.status_code
            answers["matched"] = len(response.json()["items"])
        finally:
            other.close()

    thread = threading.Thread(target=evil)
    thread.start()
    still_answers(emu)
    fetch_token(emu)  # IMS too
    thread.join(timeout=ANSWER_WITHIN)
    assert not thread.is_alive()
    assert answers == {"pattern": 200, "matched": 0}


def test_while_a_pattern_is_being_matched_other_clients_are_served_and_the_answer_is_current(emu, client, monkeypatch):
    def create(name: str) -> None:
        connection = {"name": name, "connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}
        assert client.req("POST", f"{FS}/connections", json=connection, timeout=ANSWER_WITHIN).status_code == 201

    create("slow one")
    create("other")
    matching, release = threading.Event(), threading.Event()
    search = query.search

    def slow_search(pattern, text: str) -> bool:
        """Matching that lasts until the test has been served by the emulator meanwhile."""
        matching.set()
        release.wait(ANSWER_WITHIN)
        return search(pattern, text)

    monkeypatch.setattr(query, "search", slow_search)
    answers: dict[str, list[str]] = {}

    def list_slow() -> None:
        other = AEPClient(emu)
        try:
            response = other.req("GET", f"{FS}/connections", params={"property": "name~^slow"}, timeout=60)
            answers["names"] = sorted(c["name"] for c in response.json()["items"])
        finally:
            other.close()

    thread = threading.Thread(target=list_slow)
    thread.start()
    try:
        assert matching.wait(ANSWER_WITHIN)
        still_answers(emu)
        fetch_token(emu)  # IMS too
        create("slow two")  # while the pattern is matched: the answer is of the state after it
        assert thread.is_alive() and not release.is_set()  # all of the above was served during the match
    finally:
        release.set()
        thread.join(timeout=ANSWER_WITHIN)
    assert not thread.is_alive()
    assert answers == {"names": ["slow one", "slow two"]}


# ---------------------------------------------------------------- HTTP that cannot be parsed
def raw_exchange(emu, request: bytes) -> bytes:
    """Send raw bytes; everything the emulator answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received  # recv returned b"": the emulator closed the connection


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n{}",
        b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
        b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-1\r\n{}\r\n0\r\n\r\n",
        b"GET /data/foundation/flowservice/flows\r\n",
    ],
    ids=[
        "content-length-abc",
        "content-length-negative",
        "content-length-huge",
        "chunk-size-zz",
        "chunk-size-negative",
        "http-0.9",
    ],
)
def test_unparseable_http_gets_a_400_and_a_closed_connection(emu, request_bytes):
    answer = raw_exchange(emu, request_bytes)
    assert answer.startswith(b"HTTP/1."), answer[:80]
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    assert b"Connection: close" in answer
    still_answers(emu)


def test_an_oversized_body_is_refused_without_reading_it(emu, client):
    headers = {**client.s.headers, "Content-Type": "application/json", "Content-Length": str(17 * 1024 * 1024)}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    answer = raw_exchange(emu, f"POST {FS}/connections HTTP/1.1\r\nHost: x\r\n{head}\r\n{{".encode())
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"Content-Length must be a number of bytes" in answer
    still_answers(emu)
