"""List query languages of the three API families.

* Flow Service (``property=``, ``orderby``, ``limit``, ``continuationToken``, ``count``)
* Schema Registry (``property=``, ``orderby``, ``start``, ``limit``)
* Catalog (``property=``, simple ``name=`` filters, ``orderBy``, ``start``, ``limit``)

A ``~`` pattern is a regular expression (Catalog and Schema Registry document it so) evaluated with RE2, whose
time is linear in the text, and outside the emulator's global lock (:func:`deferring_pattern_tests`): no
pattern can stall the emulator's other clients. An invalid one is a 400, as is any number or continuation token
that is not what AEP gave out.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aep.testing.errors import APIError

# Two-character operators first so ">=" is not read as ">".
_OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "~")
_FIELD_RE = re.compile(r"^[A-Za-z_$@][\w.\[\]:$@-]*$")
_ORDER_FIELD_RE = re.compile(r"^[A-Za-z_$@][\w.:$@-]*$")


@dataclass(frozen=True)
class Filter:
    path: str
    op: str | None  # None: "the field exists"
    values: tuple[str, ...]
    pattern: Any = field(default=None, compare=False)  # the compiled ``~`` expression


def whole_number(raw: str | None, *, digits: int = 18) -> int | None:
    """A query parameter's non-negative integer, or None for anything else (signs, unicode digits, 5,000 digits)."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > digits:
        return None
    return int(raw)


def _strip_quotes(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_filter(expr: str, error: Callable[[str, str], APIError], *, split_commas: bool = True) -> Filter:
    """Parse ``path<op>value``; ``error(code, message)`` builds the service's 400."""
    pos, op = len(expr), None
    for i, ch in enumerate(expr):
        if ch in "=!<>~":
            pos = i
            break
    path = expr[:pos].strip()
    rest = expr[pos:]
    if rest:
        op = next((o for o in _OPERATORS if rest.startswith(o)), None)
        if op is None:
            raise error("1450", f"Invalid operator {rest[:2]} in filter params.")
    if not path or not _FIELD_RE.match(path):
        raise error("1449", f"Invalid field {path!r} in filter params.")
    if op is None:
        return Filter(path, None, ())
    raw = rest[len(op) :]
    if raw == "":
        raise error("1453", f"Invalid query value {expr} provided in query param.")
    if split_commas and op in ("==", "!="):
        values = tuple(_strip_quotes(v) for v in raw.split(","))
    else:
        values = (_strip_quotes(raw),)
    return Filter(path, op, values, _compile(values[0], error) if op == "~" else None)


def _compile(pattern: str, error: Callable[[str, str], APIError]) -> Any:
    """``pattern`` compiled with RE2 (linear-time matching), or the 400 for an invalid or oversized one."""
    import re2  # loaded by the first ``~`` filter only

    options = re2.Options()
    options.log_errors = False  # an invalid pattern is the client's 400, not a line on the emulator's stderr
    options.max_mem = 1 << 20  # a pattern needing more is refused as too large
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise error("1453", f"Invalid regular expression {pattern!r} in filter params: {message}.") from None


def resolve(obj: Any, path: str) -> list[Any]:
    """All values at a dotted path; ``a[]`` (or any list on the way) fans out."""
    current: list[Any] = [obj]
    for seg in path.split("."):
        fan = seg.endswith("[]")
        key = seg[:-2] if fan else seg
        nxt: list[Any] = []
        for item in current:
            candidates = item if isinstance(item, list) else [item]
            for c in candidates:
                if isinstance(c, dict) and key in c:
                    v = c[key]
                    if fan and isinstance(v, list):
                        nxt.extend(v)
                    else:
                        nxt.append(v)
        current = nxt
    # A list at the end of the path means "contains".
    flat: list[Any] = []
    for v in current:
        if isinstance(v, list):
            flat.extend(v)
        else:
            flat.append(v)
    return flat


def _compare(actual: Any, op: str, expected: str) -> bool:
    if isinstance(actual, bool):
        a: Any = actual
        e: Any = expected.lower() == "true"
    elif isinstance(actual, (int, float)):
        try:
            a, e = actual, float(expected)
        except ValueError:
            a, e = str(actual), expected
    else:
        a, e = str(actual), expected
    try:
        return {
            "==": a == e,
            "!=": a != e,
            ">": a > e,
            "<": a < e,
            ">=": a >= e,
            "<=": a <= e,
        }[op]
    except TypeError:
        return False


def matches(obj: Any, flt: Filter, *, glob: bool = False) -> bool:
    values = resolve(obj, flt.path)
    if flt.op is None:
        return bool(values)
    if flt.op == "!=":
        return not any(_equal(v, e, glob) for v in values for e in flt.values)
    if flt.op == "==":
        return any(_equal(v, e, glob) for v in values for e in flt.values)
    if flt.op == "~":
        return any(_pattern_test(flt.pattern, str(v)) for v in values)
    return any(_compare(v, flt.op, flt.values[0]) for v in values)


def search(pattern: Any, text: str) -> bool:
    """Whether the compiled ``~`` pattern matches ``text`` anywhere."""
    return pattern.search(text) is not None


# The ``~`` tests of this thread's request, keyed (pattern, text): see deferring_pattern_tests.
_deferred = threading.local()


@contextmanager
def deferring_pattern_tests() -> Iterator[dict[tuple[str, str], Any]]:
    """
    Within: every ``~`` test is recorded in the dict yielded (with its compiled pattern) and taken as a match, so
    a list handler run here keeps every candidate. :func:`settle` then answers them, without holding any lock.
    """
    tests: dict[tuple[str, str], Any] = {}
    _deferred.tests = tests
    try:
        yield tests
    finally:
        del _deferred.tests


def settle(tests: dict[tuple[str, str], Any]) -> dict[tuple[str, str], bool]:
    return {(source, text): search(pattern, text) for (source, text), pattern in tests.items()}


@contextmanager
def answering_pattern_tests(answers: dict[tuple[str, str], bool]) -> Iterator[None]:
    """Within: a ``~`` test is answered from ``answers``, or worked out for a text they lack."""
    _deferred.answers = answers
    try:
        yield
    finally:
        del _deferred.answers


def _pattern_test(pattern: Any, text: str) -> bool:
    key = (pattern.pattern, text)
    tests = getattr(_deferred, "tests", None)
    if tests is not None:
        tests[key] = pattern
        return True
    answer = getattr(_deferred, "answers", {}).get(key)
    return search(pattern, text) if answer is None else answer


def _equal(actual: Any, expected: str, glob: bool) -> bool:
    if glob and isinstance(actual, str) and "*" in expected:
        # Catalog: "*" is a wildcard and "**" a literal asterisk.
        pattern = expected.replace("**", "\0").replace("[", "[[]")
        pattern = pattern.replace("*", "\1").replace("\0", "[*]").replace("\1", "*")
        return fnmatch.fnmatchcase(actual, pattern)
    return _compare(actual, "==", expected)


def sort_key(path: str) -> Callable[[Any], tuple[Any, ...]]:
    def key(obj: Any) -> tuple[Any, ...]:
        values = resolve(obj, path)
        v = values[0] if values else None
        if v is None:
            return (2, 0, "")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, v, "")
        return (1, 0, str(v))

    return key


def order(items: list[Any], orderby: str | None) -> list[Any]:
    if not orderby:
        return items
    descending = orderby.startswith("-")
    path = orderby.lstrip("+-")
    return sorted(items, key=sort_key(path), reverse=descending)


# --------------------------------------------------------------------------- Flow Service


def flow_list(
    items: list[dict[str, Any]],
    query: dict[str, list[str]],
    *,
    collection: str,
    default_page_size: int,
    max_page_size: int,
    error: Callable[[str, str], APIError],
) -> dict[str, Any]:
    """Apply Flow Service list semantics and build the ``{"items", "_links"}`` envelope."""
    token = (query.get("continuationToken") or [""])[0] or None
    if token:
        state = _decode_token(token, error)
        properties: list[str] = state["p"]
        orderby: str | None = state["ob"]
        limit: int | None = state["l"]
        offset: int = state["o"]
    else:
        properties = list(query.get("property", []))
        orderby = (query.get("orderby") or query.get("orderBy") or [""])[0] or None
        limit_raw = (query.get("limit") or [""])[0] or None
        count_raw = (query.get("count") or [""])[0] or None
        if limit_raw is not None and count_raw is not None:
            raise error(
                "1401",
                "The limit and count parameters cannot be given together in the same request. "
                "Please provide either only the limit or the count parameter and try again.",
            )
        limit = None
        if limit_raw is not None:
            number = whole_number(limit_raw)
            if not number:
                raise error("1453", f"Invalid query value limit={limit_raw} provided in query param.")
            limit = min(number, max_page_size)
        offset = 0
        if orderby is not None:
            field_name = orderby[1:] if orderby[:1] in "+-" else orderby
            if orderby[:1] not in "+-" and not orderby[:1].isalpha() and orderby[:1] not in "_$@":
                raise error(
                    "1432",
                    "Sort order specified is not correct, prepend + for ascending order and - for "
                    "descending order in the fieldName.",
                )
            if not field_name or not _ORDER_FIELD_RE.match(field_name):
                raise error("1433", f"Incorrect field= {field_name} passed in orderBy, example are +name, -name, name.")
        if count_raw is not None and count_raw.lower() == "true":
            filters = [parse_filter(p, error) for p in properties]
            return {"count": sum(1 for it in items if all(matches(it, f) for f in filters))}

    filters = [parse_filter(p, error) for p in properties]
    selected = [it for it in items if all(matches(it, f) for f in filters)]
    selected = order(selected, orderby)
    size = limit if limit is not None else default_page_size
    page = selected[offset : offset + size]
    links: dict[str, Any] = {}
    if offset + size < len(selected):
        nxt = _encode_token({"o": offset + size, "p": properties, "ob": orderby, "l": limit})
        # One "=" only: aepp does href.split("=")[1] to get the token back.
        links["next"] = {"href": f"/{collection}?continuationToken={nxt}"}
    return {"items": page, "_links": links}


def _encode_token(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53


# What a continuation token holds: offset, property filters, orderby, limit (each as _encode_token wrote it).
_TOKEN_FIELDS: dict[str, Callable[[Any], bool]] = {
    "o": _count,
    "p": lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
    "ob": lambda v: v is None or isinstance(v, str),
    "l": lambda v: v is None or (_count(v) and v > 0),
}


def _decode_token(token: str, error: Callable[[str, str], APIError]) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
        if not isinstance(state, dict) or not _TOKEN_FIELDS.keys() <= state.keys():
            raise ValueError("incomplete token")
        if not all(check(state[key]) for key, check in _TOKEN_FIELDS.items()):
            raise ValueError("a field of the wrong type")
        return state
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise error("1453", f"Invalid query value continuationToken={token} provided in query param.") from None


# --------------------------------------------------------------------------- Schema Registry

_XDM_FIELD_PREFIX = re.compile(r"^\s*(title|description|version|type|\$id|meta:[\w]+)\s*(==|!=|<=|>=|<|>|~|$|,)")


def xdm_filters(values: list[str], error: Callable[[str, str], APIError]) -> list[Filter]:
    """XDM accepts several comma-separated filters in one ``property``; a comma inside a value stays."""
    out: list[Filter] = []
    for value in values:
        pieces: list[str] = []
        for piece in value.split(","):
            if pieces and not _XDM_FIELD_PREFIX.match(piece):
                pieces[-1] += "," + piece
            else:
                pieces.append(piece)
        out.extend(parse_filter(p, error, split_commas=False) for p in pieces)
    return out
