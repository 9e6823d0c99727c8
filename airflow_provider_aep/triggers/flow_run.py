"""AEPFlowRunTrigger: waits for an AEP flow run in the triggerer, then fires exactly one event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aep.hooks.aep_async import RUN_BATCH_WINDOW, AEPAsyncHook
from airflow_provider_aep.utils.client_core import RetryPolicy
from airflow_provider_aep.utils.flow_runs import EventStatus, FlowRunWatch, Outcome


class AEPFlowRunEvent(TriggerEvent):
    """The trigger's one event. Airflow logs each event's repr: this one shows its outcome and ids, not the summary."""

    def __repr__(self) -> str:
        shown = {key: self.payload.get(key) for key in ("status", "flow_id", "run_id", "message")}
        return f"TriggerEvent<{shown!r}>"


def poll_lead(interval: float) -> float:
    """
    How much less than ``interval`` apart polls are planned: a read may wait up to RUN_BATCH_WINDOW to share
    a list read, and takes a moment to answer; planned this much early, a run's end is still seen within one
    interval.
    """
    return min(interval / 10, RUN_BATCH_WINDOW + 0.3)


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

    def _make_hook(self) -> AEPAsyncHook:
        return AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args)

    async def _watch(self, hook: AEPAsyncHook, watch: FlowRunWatch) -> dict[str, Any]:
        await hook.get_config()
        period = self.poll_interval - poll_lead(self.poll_interval)
        due = time.time()
        # Deadline before status, so a run that keeps us waiting can't outlive it by more than one poll.
        while time.time() < self.end_time:
            outcome = await hook.drive(watch.poll(hook))
            if outcome is not Outcome.WAIT:
                return watch.event(EventStatus.of(outcome), f"run finished {watch.summary['status']}")  # type: ignore[index]
            due = max(due + period, time.time())  # the next poll's time, however long this one's read took
            await hook.sleep(max(0.0, min(due, self.end_time) - time.time()))
        message = watch.timeout_message(self.end_time, hook.dataflow_url(self.flow_id))
        self.log.info(message)
        return watch.event(EventStatus.TIMEOUT, message)
