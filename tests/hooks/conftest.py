"""The two drivers, ``AEPHook`` (requests) and ``AEPAsyncHook`` (httpx), each with the scripted AEP behind it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from tests.conftest import SECRET_MASKER
from tests.fake_aep import FakeAEP


class Driver:
    """One of the two drivers, with the fake AEP behind it and its waits and masked secrets recorded."""

    def __init__(self, kind: str, fake: FakeAEP, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        self.fake = fake
        self.slept: list[float] = []
        self.masked: list[str] = []

        async def asleep(seconds: float) -> None:
            self.slept.append(seconds)

        async def amask(value: str, name: Any = None) -> None:
            self.masked.append(value)

        monkeypatch.setattr(AEPHook, "sleep", staticmethod(self.slept.append))
        monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(asleep))
        monkeypatch.setattr(SECRET_MASKER, self.masked.append)
        try:
            monkeypatch.setattr("airflow.sdk.log.amask_secret", amask)
        except (ImportError, AttributeError):  # no async masker: the async hook uses the synchronous one
            pass

    def hook(self, **kwargs: Any) -> AEPHook | AEPAsyncHook:
        if self.kind == "sync":
            return AEPHook(**kwargs)
        return AEPAsyncHook(transport=self.fake.transport, **kwargs)

    async def call(self, hook: AEPHook | AEPAsyncHook, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(hook, name)
        if isinstance(hook, AEPHook):
            return method(*args, **kwargs)
        async with hook:
            return await method(*args, **kwargs)

    def timeouts(self) -> list[tuple[float, float]]:
        """(connect, read) of each call, as the client library received it."""
        return [(t["connect"], t["read"]) if isinstance(t, dict) else t for t in self.fake.timeouts]


@pytest.fixture(params=["sync", "async"])
def driver(request, aep_conn, requests_mock, monkeypatch) -> Driver:
    fake = FakeAEP()
    fake.install(requests_mock)
    return Driver(request.param, fake, monkeypatch)


@pytest.fixture
def hook(driver):
    return driver.hook(retry_limit=3, retry_delay=0.01)
