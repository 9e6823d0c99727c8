"""async_sleep: waits of one loop that end together share one timer and wake a slice per loop iteration."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any

import pytest

from airflow_provider_aep.hooks import aep_async
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook, async_sleep
from tests.hooks.conftest import wakes_per_loop_iteration


async def start_together(monkeypatch, waits: list[Coroutine[Any, Any, None]]) -> list[asyncio.Task[None]]:
    """
    Start ``waits`` as tasks within one 10 ms step of the loop's clock whatever the machine's load: while
    they ask for timers the clock reads from the start of a step and moves 0.1 ms per read.
    """
    loop = asyncio.get_running_loop()
    real_time = loop.time
    held = [math.ceil(real_time() / aep_async.ALARM_RESOLUTION) * aep_async.ALARM_RESOLUTION]

    def time() -> float:
        if not held:
            return real_time()
        held[0] += 0.0001
        return held[0]

    monkeypatch.setattr(loop, "time", time)
    tasks = [asyncio.create_task(wait) for wait in waits]
    await asyncio.sleep(0)  # every task has run up to its first await
    held.clear()
    return tasks


async def test_waits_ending_together_share_one_timer_and_none_ends_early(monkeypatch):
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    real_call_at = loop.call_at

    def spy_call_at(when, callback, *args, **kwargs):
        timers.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", spy_call_at)
    started = loop.time()
    ended: list[float] = []

    async def wait(seconds: float) -> None:
        await async_sleep(seconds)
        ended.append(loop.time())

    await asyncio.gather(*await start_together(monkeypatch, [wait(0.05) for _ in range(50)] + [wait(0.2)]))
    assert len(timers) == 2  # one for the fifty 50 ms waits, one for the 200 ms wait
    assert len(ended) == 51
    assert min(ended) >= started + 0.05
    assert max(ended) >= started + 0.2
    assert not aep_async._alarms[loop]  # nothing left behind


async def test_a_cancelled_wait_leaves_the_others_waiting_and_waking(monkeypatch):
    monkeypatch.setattr(aep_async, "WAKE_SLICE", 2)
    tasks = [asyncio.create_task(async_sleep(0.02)) for _ in range(5)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 1] == [None] * 4


async def test_a_shared_timer_wakes_its_waiters_a_slice_per_loop_iteration(monkeypatch):
    monkeypatch.setattr(aep_async, "WAKE_SLICE", 3)
    waits = await start_together(monkeypatch, [async_sleep(0.02) for _ in range(10)])
    _, per_iteration = await wakes_per_loop_iteration(waits)
    assert max(per_iteration.values()) <= 3
    assert len(per_iteration) == 4  # 3 + 3 + 3 + 1


@pytest.mark.parametrize("seconds", [0, -1])
async def test_a_non_positive_wait_only_yields(seconds):
    await asyncio.wait_for(AEPAsyncHook.sleep(seconds), timeout=1)
