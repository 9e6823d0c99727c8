"""Fixtures shared by the async hook's tests."""

from __future__ import annotations

import pytest

from airflow_provider_aep.hooks import aep_async
from tests.hooks.test_aep_async_hook import FakeAEP


@pytest.fixture
def fake() -> FakeAEP:
    return FakeAEP()


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """Record the hook's waits instead of sleeping."""
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(aep_async, "async_sleep", fake_sleep)
    return waits
