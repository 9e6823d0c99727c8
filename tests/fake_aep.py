"""
A scripted AEP for unit tests of both drivers: one set of routes, answered to ``requests`` (through
requests-mock) and to ``httpx`` (through ``httpx.MockTransport``) alike.

Handlers and answers are written once in httpx's terms (``httpx.Request`` in, ``httpx.Response`` or an
``httpx`` network exception out); the requests adapter translates both ways, so a test of the transport
policy runs unchanged against ``AEPHook`` and ``AEPAsyncHook``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import requests
import requests_mock as requests_mock_module

from tests.conftest import TOKEN

Handler = Callable[[httpx.Request], httpx.Response]
Answer = Handler | httpx.Response | Exception

# httpx's network failures as requests raises them (the sync hook classifies them the same way).
_AS_REQUESTS: tuple[tuple[type[Exception], Callable[[Exception], Exception]], ...] = (
    (httpx.ConnectTimeout, lambda exc: requests.ConnectTimeout(str(exc))),
    (httpx.ConnectError, lambda exc: requests.ConnectionError(ConnectionRefusedError(111, str(exc)))),
    (httpx.ReadTimeout, lambda exc: requests.ReadTimeout(str(exc))),
    (httpx.TransportError, lambda exc: requests.ConnectionError(str(exc))),
)


class FakeAEP:
    """IMS issues ``<TOKEN>-1``, ``<TOKEN>-2`` …; Platform answers per (method, path), in order, the last repeating."""

    def __init__(self, *, expires_in: float = 86399) -> None:
        self.requests: list[httpx.Request] = []
        self.timeouts: list[Any] = []
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.tokens_issued = 0
        self.expires_in = expires_in
        self.ims_answer: Answer | None = None

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers)

    def platform_calls(self, method: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if "/ims/" not in r.url.path and method in (None, r.method)]

    def token_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/ims/token/v3"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/ims/token/v3":
            if self.ims_answer is not None:
                return self._answer(self.ims_answer, request)
            self.tokens_issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"{TOKEN}-{self.tokens_issued}",
                    "token_type": "bearer",
                    "expires_in": self.expires_in,
                },
            )
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return httpx.Response(404, json={"title": "Resource not found", "status": 404})
        return self._answer(answers.pop(0) if len(answers) > 1 else answers[0], request)

    @staticmethod
    def _answer(answer: Answer, request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    # ------------------------------------------------------------------ adapters
    @property
    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.timeouts.append(request.extensions.get("timeout"))
            return self.handle(request)

        return httpx.MockTransport(handle)

    def install(self, requests_mock: Any) -> None:
        """Answer every request the sync hook sends through ``requests_mock``."""

        def matcher(request: Any) -> Any:
            self.timeouts.append(request.timeout)
            as_httpx = httpx.Request(
                request.method, request.url, headers=dict(request.headers), content=request.body or b""
            )
            try:
                response = self.handle(as_httpx)
            except httpx.TransportError as exc:
                raise next(convert(exc) for kind, convert in _AS_REQUESTS if isinstance(exc, kind)) from None
            return requests_mock_module.create_response(
                request, status_code=response.status_code, headers=dict(response.headers), content=response.content
            )

        requests_mock.add_matcher(matcher)
