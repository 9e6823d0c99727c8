"""AEPFlowRunTrigger: waits for an AEP flow run in the triggerer, then fires exactly one event."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.utils.client_core import RetryPolicy
from airflow_provider_aep.utils.flow_runs import EventStatus, FlowRunWatch, Outcome


class AEPFlowRunEvent(TriggerEvent):
    """The trigger's one event. Airflow logs each event's repr: this one shows its outcome and ids, not the summary."""

    def __repr__(self) -> str:
        shown = {key: self.payload.get(key) for key in ("status", "flow_id", "run_id", "message")}
        return f"TriggerEvent<{shown!r}>"


# Polls are due on multiples of POLL_SLOT seconds, so the triggers of a loop whose polls fall due in the same
# slot wake in the same loop iteration and share one list read (hooks/aep_async.py) instead of each sending
# its own request.
POLL_SLOT = 0.5


def poll_lead(interval: float) -> float:
    """
    How much less than ``interval`` apart polls are planned: a poll may wait up to POLL_SLOT for its slot and
    its read takes a moment to answer; planned this much early, a run's end is still seen within one interval.
    """
    return min(interval / 10, POLL_SLOT + 0.25)


def next_poll(due: float, period: float, now: float) -> float:
    """When the poll after the one due at ``due`` is due: ``period`` later (at once if that is past), on a slot."""
    return math.ceil(max(due + period, now) / POLL_SLOT) * POLL_SLOT


class AEPFlowRunTrigger(BaseTrigger):
    """
    Poll one flow run (``run_id``), or the newest run of ``flow_id`` created at or after ``created_after_ms``,
    at least every ``poll_interval`` seconds until it finishes or the wall-clock deadline ``end_time``
    (``time.time()`` seconds) passes.

    Fires one event ``{"status", "message", "flow_id", "run_id", "summary"}`` (see
    :meth:`~airflow_provider_aep.utils.flow_runs.FlowRunWatch.event`); ``success`` covers ``partialSuccess``
    too: the task judges the summary exactly as poke mode does. Retryable failures (429, 5xx, network) never
    end the wait; they are retried, then polling goes on.
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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = FlowRunWatch(self.flow_id, run_id=self.run_id, created_after_ms=self.created_after_ms, logger=self.log)
        hook = self._make_hook()
        try:
            event = await self._watch(hook, watch)
        except Exception as exc:
            self.log.exception("AEPFlowRunTrigger for flow %s failed", self.flow_id)
            event = watch.event(EventStatus.ERROR, f"{type(exc).__name__}: {exc}")
        try:
            await hook.aclose()
        except Exception as exc:  # the outcome is known: a client that will not close must not change it
            self.log.warning("Closing the AEP client failed: %s", exc)
        yield AEPFlowRunEvent(payload=event)

    @staticmethod
    async def _poll(hook: AEPAsyncHook, watch: FlowRunWatch) -> Outcome:
        if watch.run_id is None:  # still looking for the newest run: a list read of its own
            return await hook.drive(watch.poll(hook))
        try:
            run = await hook.read_run(watch.run_id)  # shared with the loop's other triggers
        except AEPApiError as exc:
            return watch.read_failed(exc)
        return watch.observe(run, hook.config)

    def _make_hook(self) -> AEPAsyncHook:
        return AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args)

    async def _watch(self, hook: AEPAsyncHook, watch: FlowRunWatch) -> dict[str, Any]:
        await hook.get_config()
        period = self.poll_interval - poll_lead(self.poll_interval)
        due = next_poll(time.time(), 0.0, time.time())  # the first poll too waits for its slot
        while True:
            if (pause := min(due, self.end_time) - time.time()) > 0:
                await hook.sleep(pause)
            # Deadline before status, so a run that keeps us waiting can't outlive it by more than one poll.
            if time.time() >= self.end_time:
                break
            outcome = await self._poll(hook, watch)
            if outcome is not Outcome.WAIT:
                return watch.event(EventStatus.of(outcome), f"run finished {watch.summary['status']}")  # type: ignore[index]
            due = next_poll(due, period, time.time())  # however long this poll's read took
        message = watch.timeout_message(self.end_time, hook.dataflow_url(self.flow_id))
        self.log.info(message)
        return watch.event(EventStatus.TIMEOUT, message)
