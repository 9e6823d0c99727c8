"""AEPFlowRunTrigger: waits for an AEP flow run in the triggerer, then fires exactly one event."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import sys
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook, loop_local_keyed
from airflow_provider_aep.utils.flow_runs import (
    EVENT_STATUS,
    Outcome,
    outcome_of,
    progress_line,
    run_summary,
    timeout_message,
)
from airflow_provider_aep.utils.http import RetryPolicy, is_retryable

log = logging.getLogger(__name__)


_heap_freeze_checked = False
# Loaded by Airflow's triggerer (2.x: its trigger thread's process; 3.x: forked into its trigger runner), not by
# dag.test() or a test session, whose heaps the provider has no reason to freeze.
_TRIGGERER_MODULE = "airflow.jobs.triggerer_job_runner"


def _freeze_heap_once() -> None:
    """
    ``gc.freeze()`` a triggerer process once, at its first AEP trigger, unless ``[aep] freeze_triggerer_heap``
    is off: full collections then walk only what came after, not Airflow's start-up heap.
    """
    global _heap_freeze_checked
    if _heap_freeze_checked:
        return
    _heap_freeze_checked = True
    if _TRIGGERER_MODULE not in sys.modules:
        return
    from airflow_provider_aep.version_compat import conf

    try:
        freeze = conf.getboolean("aep", "freeze_triggerer_heap", fallback=True)
    except Exception as exc:  # a bad value must not fail the trigger that happens to start first
        log.warning("Not freezing the triggerer heap, [aep] freeze_triggerer_heap is not a boolean: %s", exc)
        return
    if freeze:
        gc.freeze()
        log.info(
            "Froze the %d objects this triggerer held at its first AEP trigger, so that full garbage collections "
            "no longer stall its event loop walking them ([aep] freeze_triggerer_heap = False turns this off)",
            gc.get_freeze_count(),
        )


def _next_poll(interval: float, lead: float, now: float) -> float:
    """
    When the next poll is due: the next point after ``now`` of a grid of period ``interval - lead`` (epoch
    seconds). A run that ends just after a poll's read is seen by the next poll's answer, one period plus
    that poll's lateness and read time later; ``lead``, their recent worst, keeps that within one interval.
    Every trigger with this interval and lead is on the same grid, so the triggers of one loop poll
    together, and share list reads, whenever each started (the triggerer starts them one by one).
    """
    period = interval - lead
    if period <= 0:
        return now
    return (math.floor(now / period) + 1) * period


def _unless_unchanged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    # Keeping the old, equal summary lets the new one die young instead of joining the GC's oldest generation
    # with every poll of every sleeping trigger (see "Keep only the small summary" in run()).
    return old if old == new else new


class _ReadLead:
    """
    The slowest status read (from when the poll was due to its answer) of the last three poll rounds of the
    triggers of one loop, connection and interval. Shared, so triggers that poll together keep polling
    together (and sharing list reads) instead of drifting apart by their own read times.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._slowest: dict[int, float] = {}  # poll round (wall time // interval) -> slowest read

    def observe(self, seconds: float, now: float) -> None:
        current = int(now // self._interval) if self._interval > 0 else 0
        self._slowest[current] = max(seconds, self._slowest.get(current, 0.0))
        for stale in [r for r in self._slowest if r < current - 2]:
            del self._slowest[stale]

    def lead(self) -> float:
        """
        How much less than one interval apart polls are planned: the slowest read, rounded up to a twentieth
        of the interval so the grid stays put while reads vary a little, and at most half an interval.
        """
        step = self._interval / 20
        slowest = max(self._slowest.values(), default=0.0)
        return min(math.ceil(slowest / step) * step, self._interval / 2) if step > 0 else 0.0


_read_leads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], _ReadLead]] = (
    weakref.WeakKeyDictionary()
)


class AEPFlowRunTrigger(BaseTrigger):
    """
    Poll one flow run (``run_id``), or the newest run of ``flow_id`` created at or after ``created_after_ms``,
    until it finishes or the wall-clock deadline ``end_time`` (``time.time()`` seconds) passes.

    Fires one event ``{"status": "success"|"failed"|"timeout"|"error", "message", "flow_id", "run_id",
    "summary"}``; ``summary`` is :func:`~airflow_provider_aep.utils.flow_runs.run_summary` of the last read
    (None if no run was found). ``success`` covers ``partialSuccess`` too: the task judges it with
    :func:`~airflow_provider_aep.utils.flow_runs.decide`, exactly as poke mode does. After the first poll,
    polls fall on a grid shared by the triggers of one loop, a recent read time less than ``poll_interval``
    apart, so the event fires within ``poll_interval`` of the run's end.
    Retryable failures (429, 5xx, network) never end the wait; they are retried, then polling goes on.
    """

    def __init__(
        self,
        flow_id: str,
        *,
        end_time: float,
        run_id: str | None = None,
        created_after_ms: int | None = None,
        aep_conn_id: str = "aep_default",
        poll_interval: float = 60.0,
        retry_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.flow_id = flow_id
        self.run_id = run_id
        self.created_after_ms = None if created_after_ms is None else int(created_after_ms)
        self.aep_conn_id = aep_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        # Validates now, in the worker, rather than failing later in the triggerer (plain data only).
        self.retry_args = RetryPolicy.coerce(retry_args).to_dict()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flow_id": self.flow_id,
                "run_id": self.run_id,
                "created_after_ms": self.created_after_ms,
                "aep_conn_id": self.aep_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "retry_args": self.retry_args,
            },
        )

    def _make_hook(self) -> AEPAsyncHook:
        return AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        fired = False
        run_id = self.run_id
        summary: dict[str, Any] | None = None
        try:
            _freeze_heap_once()
            async with self._make_hook() as hook:
                config = await hook.get_config()
                read_lead = loop_local_keyed(
                    _read_leads, (self.aep_conn_id, self.poll_interval), lambda: _ReadLead(self.poll_interval)
                )
                warned: set[str] = set()
                poll_due = time.time()  # when this poll was meant to start; a wake-up can be late (a busy loop)
                while True:
                    # Deadline before status, so a run that keeps us waiting can't outlive it by more than one poll.
                    if time.time() >= self.end_time:
                        url = (summary or {}).get("run_url") or await hook.dataflow_url(self.flow_id)
                        message = timeout_message(
                            self.flow_id, run_id, (summary or {}).get("status"), self.end_time, url
                        )
                        self.log.info(message)
                        fired = True
                        yield TriggerEvent(self._event("timeout", message, run_id, summary))
                        return
                    try:
                        run = await self._read(hook, run_id)
                        answered = time.time()
                        read_lead.observe(answered - poll_due, answered)
                    except AEPApiError as exc:
                        if not is_retryable(exc):
                            raise
                        self.log.warning("Reading AEP flow run status failed after retries (%s); polling on", exc)
                        run = None
                    else:
                        if run is None:
                            self.log.info(
                                "No run of AEP flow %s created at or after %s ms yet",
                                self.flow_id,
                                self.created_after_ms,
                            )
                    if run is not None:
                        summary = _unless_unchanged(
                            summary, run_summary(run, self.flow_id, config.org_id, config.sandbox)
                        )
                        if run_id is None:  # follow this run to its end, even if a newer one starts meanwhile
                            run_id = summary["run_id"]
                            self.log.info("Watching AEP flow run %s (%s)", run_id, summary["run_url"])
                        self.log.info(progress_line(summary, time.time()))
                        outcome = outcome_of(summary["status"], warned=warned, logger=self.log)  # type: ignore[arg-type]
                        if outcome is not Outcome.WAIT:
                            fired = True
                            yield TriggerEvent(
                                self._event(EVENT_STATUS[outcome], f"run finished {summary['status']}", run_id, summary)
                            )
                            return
                    # Keep only the small summary while sleeping: 1,000 waiting triggers holding their full run
                    # objects (hundreds of objects each) for a whole interval fill the GC's oldest generation
                    # and make its full collections, which block the loop, frequent and long (bench/RESULTS.md).
                    run = None
                    now = time.time()
                    pause = max(0.0, min(_next_poll(self.poll_interval, read_lead.lead(), now), self.end_time) - now)
                    poll_due = now + pause
                    await hook.sleep(pause)
        except Exception as exc:
            if fired:  # e.g. closing the client failed after the event went out: never send a second event
                self.log.warning("Ignoring an error after the event was sent: %s", exc)
                return
            self.log.exception("AEPFlowRunTrigger for flow %s failed", self.flow_id)
            yield TriggerEvent(self._event("error", f"{type(exc).__name__}: {exc}", run_id, summary))
            return

    async def _read(self, hook: AEPAsyncHook, run_id: str | None) -> dict[str, Any] | None:
        if run_id is not None:
            return await hook.get_run(run_id)
        runs = await hook.list_runs(self.flow_id, created_after_ms=self.created_after_ms)
        return runs[0] if runs else None

    def _event(self, status: str, message: str, run_id: str | None, summary: dict[str, Any] | None) -> dict[str, Any]:
        return {"status": status, "message": message, "flow_id": self.flow_id, "run_id": run_id, "summary": summary}
