"""Request/response types and the per-service route table."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from airflow_provider_aep.testing.errors import APIError, placeholder_error

if TYPE_CHECKING:  # pragma: no cover
    from airflow_provider_aep.testing.server import AEPEmulator
    from airflow_provider_aep.testing.state import SandboxState


# What a JSON body may hold: AEP's services are Java, whose numbers are 64-bit and whose parsers refuse NaN.
MAX_JSON_DEPTH = 64
_LONG_DIGITS = 19


def _long(text: str) -> int:
    if len(text.lstrip("-")) > _LONG_DIGITS or not -(2**63) <= (value := int(text)) < 2**63:
        raise ValueError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is out of the 64-bit range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """A request body as JSON, or the 400 AEP answers for one that is not JSON it can read."""
    too_deep = f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        value = json.loads(body.decode("utf-8"), parse_int=_long, parse_constant=_no_constant)
    except RecursionError:
        raise _malformed(too_deep) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed(str(exc)) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _malformed(too_deep)
    return value


def _malformed(reason: str) -> APIError:
    return placeholder_error(400, "BadRequestError", f"Malformed JSON body: {reason}")


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value`` (iteratively: the input is untrusted)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            pending.extend((child, depth + 1) for child in children)
    return deepest


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.body is not None:
            self.headers.setdefault("Content-Type", "application/json")

    @functools.cached_property
    def payload(self) -> bytes:
        """The body as sent."""
        return b"" if self.body is None else json.dumps(self.body).encode("utf-8")


@dataclass
class Request:
    """One parsed HTTP request, as seen by a service handler."""

    method: str
    path: str  # relative to the service prefix, still URL-encoded
    query: dict[str, list[str]]
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    emulator: AEPEmulator
    request_id: str
    sandbox: str | None = None
    client_id: str | None = None
    _json: Any = None
    _json_parsed: bool = False

    @property
    def sb(self) -> SandboxState:
        assert self.sandbox is not None
        return self.emulator.store.sandbox(self.sandbox)

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def q_all(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def json(self) -> Any:
        """The JSON body; a malformed, empty, too deep or out-of-range body is a 400 like AEP's front door answers."""
        if not self._json_parsed:
            if not self.body.strip():
                raise placeholder_error(400, "BadRequestError", "Request body is missing.")
            self._json = parse_json(self.body)
            self._json_parsed = True
        return self._json

    def json_object(self, error: Callable[[str], APIError]) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise error("The request body must be a JSON object.")
        return body


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. ``/flows/{id}``: the key of the route's request rule (testing/validation.py)
    pattern: re.Pattern[str]
    handler: Handler
    creates: bool = False  # a POST that commits a new resource (eligible for drop_after_commit)


def route(method: str, template: str, handler: Handler, *, creates: bool = False) -> Route:
    """``template`` uses ``{name}`` for one path segment, e.g. ``/flows/{id}``."""
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$"
    return Route(method, template, re.compile(regex), handler, creates)


def _bad_request(req: Request, message: str) -> APIError:
    return placeholder_error(400, "BadRequestError", message)


@dataclass(frozen=True)
class Service:
    """One AEP service mounted under ``prefix`` on the emulator."""

    name: str
    prefix: str
    routes: list[Route]
    requires_sandbox_header: bool = False
    platform: bool = True  # gateway checks and fault injection apply
    not_found: Callable[[Request], APIError] | None = None
    bad_request: Callable[[Request, str], APIError] = _bad_request  # a 400 in the service's error shape
    missing_header: Callable[[Request, str], APIError] | None = None  # default: bad_request naming it

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, decoded path params, path_matched_other_method)."""
        path_seen = False
        for r in self.routes:
            m = r.pattern.match(path)
            if not m:
                continue
            if r.method != method:
                path_seen = True
                continue
            return r, {k: unquote_plus(v) for k, v in m.groupdict().items()}, True
        return None, {}, path_seen
