"""Fixtures shared by the async hook's tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from airflow_provider_aep.hooks import aep_async
from tests.hooks.test_aep_async_hook import FakeAEP

T = TypeVar("T")


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


async def wakes_per_loop_iteration(waits: list[Awaitable[T]]) -> tuple[list[T], Counter[int]]:
    """
    Run ``waits`` together: their results, and how many of them ended in each event-loop iteration (counted
    from their start).
    """
    iteration, ended = [0], []

    async def count_iterations() -> None:
        while len(ended) < len(waits):
            await asyncio.sleep(0)
            iteration[0] += 1

    async def wait(awaitable: Awaitable[T]) -> T:
        result = await awaitable
        ended.append(iteration[0])
        return result

    counting = asyncio.ensure_future(count_iterations())
    results = await asyncio.gather(*(wait(w) for w in waits))
    await counting
    return list(results), Counter(ended)
