"""
AEPFlowRunTrigger waits for one AEP flow run in the triggerer, then fires exactly one event;
AEPFlowRunEventTrigger watches a flow for an AssetWatcher and fires once for each new finished run.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aep.exceptions import AEPApiError, AEPValidationError, is_retryable
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.triggers.shared_reads import read_run
from airflow_provider_aep.utils.client_core import RetryPolicy
from airflow_provider_aep.utils.flow_runs import (
    EventStatus,
    FlowRunWatch,
    Outcome,
    RunWatermark,
    outcome_of,
    progress_line,
    run_event_extra,
    run_summary,
)

try:
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # Airflow 2: no event-driven scheduling (AssetWatcher is Airflow 3)
    BaseEventTrigger = None  # type: ignore[assignment,misc]


class AEPFlowRunEvent(TriggerEvent):
    """The trigger's one event. Airflow logs each event's repr: this one shows its outcome and ids, not the summary."""

    def __repr__(self) -> str:
        shown = {key: self.payload.get(key) for key in ("status", "flow_id", "run_id", "message")}
        return f"TriggerEvent<{shown!r}>"


# Polls are due on multiples of POLL_SLOT seconds, so the triggers of a loop whose polls fall due in the same
# slot wake in the same loop iteration and share one list read (shared_reads.py) instead of each sending
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
            run = await read_run(hook, watch.run_id)  # shared with the loop's other triggers
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


# The asset state store key of an event trigger's watermark: one per flow, so the watchers of several flows
# writing into one dataset keep their marks apart.
WATERMARK_KEY = "aep_flow_run_watermark:{flow_id}"


class AEPFlowRunEventTrigger(BaseEventTrigger or BaseTrigger):  # type: ignore[misc]
    """
    Watch an AEP flow for an ``AssetWatcher`` (Airflow 3): fire one event for each run of ``flow_id`` that
    finishes ``success`` or ``partialSuccess`` (``failed`` too with ``include_failed``) after the trigger
    first looked, never twice for one run. Runs already finished at that first look are not reported.

    The event's payload (the asset event's ``extra["payload"]``) is the run's id, status, window, record,
    file and byte counts, batches and links (:data:`~airflow_provider_aep.utils.flow_runs.RUN_EVENT_KEYS`).

    What it has reported (a :class:`~airflow_provider_aep.utils.flow_runs.RunWatermark`) is kept in
    Airflow's asset state store of the watched asset (Airflow 3.3+), written before each event is fired,
    so a restarted triggerer neither fires again for a run nor misses one that finished meanwhile. On
    Airflow 3.0 to 3.2 the mark lives in memory: after a restart the first look is taken again, so no run
    is reported twice, but a run that finished while no triggerer ran is not reported.

    A read that fails (after the hook's retries) is logged and tried again at the next poll: a watcher
    never stops on an AEP error. The arguments are plain JSON, so Airflow sees the same trigger on every parse.

    :param flow_id: the dataflow.
    :param aep_conn_id: the ``aep`` connection.
    :param poll_interval: seconds between two reads of the flow's runs.
    :param include_failed: also fire for runs that end ``failed`` (the payload's ``status`` says so).
    :param retry_args: a :class:`~airflow_provider_aep.utils.client_core.RetryPolicy`, or its fields, for each read.
    """

    def __init__(
        self,
        flow_id: str,
        *,
        aep_conn_id: str = "aep_default",
        poll_interval: float = 60.0,
        include_failed: bool = False,
        retry_args: Mapping[str, Any] | None = None,
    ) -> None:
        if BaseEventTrigger is None:
            raise AEPValidationError(
                "AEPFlowRunEventTrigger needs Airflow 3 (AssetWatcher, event-driven scheduling); on this Airflow "
                "use AEPFlowRunSensor or AEPRunFlowOperator with asset_alias to give the dataset its asset events"
            )
        super().__init__()
        if not isinstance(flow_id, str) or not flow_id.strip():
            raise AEPValidationError(f"flow_id={flow_id!r}: must be the id of a dataflow")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or poll_interval <= 0:
            raise AEPValidationError(f"poll_interval={poll_interval!r}: must be a number of seconds > 0")
        self.flow_id = flow_id.strip()
        self.aep_conn_id = aep_conn_id
        self.poll_interval = float(poll_interval)
        self.include_failed = bool(include_failed)
        # Validated now, at parse time, not in the triggerer; every field spelled out, so a policy however
        # given (RetryPolicy, a partial dict) is the same kwargs on every parse.
        self.retry_args = RetryPolicy.coerce(retry_args).to_dict()
        self._store_warned = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flow_id": self.flow_id,
                "aep_conn_id": self.aep_conn_id,
                "poll_interval": self.poll_interval,
                "include_failed": self.include_failed,
                "retry_args": self.retry_args,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args)
        try:
            config = await hook.get_config()
            mark = await self._load_mark()
            if mark is not None:
                self.log.info(
                    "Watching AEP flow %s from its stored watermark (%d finished runs at or after it already reported)",
                    self.flow_id,
                    len(mark.seen),
                )
            while True:
                runs = await self._read_runs(hook, mark)
                if runs is not None:
                    if mark is None:
                        mark = RunWatermark.baseline(runs)
                        await self._save_mark(mark)
                        self.log.info(
                            "Watching AEP flow %s: %d runs already finished are not reported; each run that "
                            "finishes from now on is",
                            self.flow_id,
                            len(mark.seen),
                        )
                    else:
                        new, after = mark.advance(runs)
                        if after != mark:
                            await self._save_mark(after)  # before the events: a run is never reported twice
                        mark = after
                        for run in new:
                            summary = run_summary(run, self.flow_id, config.org_id, config.sandbox)
                            self.log.info(progress_line(summary, time.time()))
                            if outcome_of(summary["status"]) is Outcome.FAILED and not self.include_failed:
                                self.log.info("Not reporting failed run %s (include_failed is not set)", run["id"])
                                continue
                            yield AEPFlowRunEvent(payload=run_event_extra(summary))
                await hook.sleep(self.poll_interval)
        finally:
            try:
                await hook.aclose()
            except Exception as exc:
                self.log.warning("Closing the AEP client failed: %s", exc)

    async def _read_runs(self, hook: AEPAsyncHook, mark: RunWatermark | None) -> list[dict[str, Any]] | None:
        """The flow's runs since the mark (all of them on a first look); None when the read failed."""
        try:
            runs = await hook.list_runs(self.flow_id, created_after_ms=mark.since_ms if mark else None)
            if mark is None and not runs:
                await hook.get_flow(self.flow_id)  # a flow that does not exist is said, not waited for silently
        except AEPApiError as exc:
            level = self.log.warning if is_retryable(exc) else self.log.error
            level(
                "Reading the runs of AEP flow %s failed (%s); trying again in %.0f s",
                self.flow_id,
                exc,
                self.poll_interval,
            )
            return None
        return list(runs)

    @property
    def _state_key(self) -> str:
        return WATERMARK_KEY.format(flow_id=self.flow_id)

    def _state_store(self) -> Any:
        store = getattr(self, "asset_state_store", None)
        if store is None and not self._store_warned:
            self._store_warned = True
            self.log.warning(
                "This Airflow gives triggers no asset state store (Airflow 3.3+): the watermark of AEP flow %s "
                "is kept in memory, so after a triggerer restart runs that finished meanwhile are not reported",
                self.flow_id,
            )
        return store

    async def _load_mark(self) -> RunWatermark | None:
        store = self._state_store()
        if store is None:
            return None
        try:
            return RunWatermark.from_json(await store.aget(self._state_key))
        except Exception as exc:  # several watched assets, or the store unreachable: watch from memory
            self.log.warning(
                "Reading the stored watermark of AEP flow %s failed (%s); starting afresh", self.flow_id, exc
            )
            return None

    async def _save_mark(self, mark: RunWatermark) -> None:
        store = self._state_store()
        if store is None:
            return
        try:
            await store.aset(self._state_key, mark.to_json())
        except Exception as exc:
            self.log.warning(
                "Storing the watermark of AEP flow %s failed (%s); it is kept in memory until the next write",
                self.flow_id,
                exc,
            )
