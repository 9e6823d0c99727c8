"""AEPFlowRunSensor: wait for an AEP flow run to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_aep.exceptions import AEPFlowRunFailedError
from airflow_provider_aep.links.urls import DATAFLOW_URL_KEY, RUN_URL_KEY
from airflow_provider_aep.operators.base import AEPFlowRunWaitOperator
from airflow_provider_aep.utils.flow_runs import FlowRunWatch, Outcome
from airflow_provider_aep.utils.timestamps import to_epoch_ms
from airflow_provider_aep.version_compat import (
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
)

DEFAULT_TIMEOUT = 24 * 60 * 60.0


class AEPFlowRunSensor(AEPFlowRunWaitOperator, BaseSensorOperator):
    """
    Wait for an AEP flow run to finish and return its summary (run id, status, times, record and file
    counts, links; see :func:`~airflow_provider_aep.utils.flow_runs.run_summary`).

    Takes the arguments of :class:`~airflow_provider_aep.operators.base.AEPFlowRunWaitOperator`
    (``flow_id``, ``fail_on_partial_success``, the quality gate ``max_failed_records``/``max_failed_ratio``,
    ``diagnostics_rows``, ``deferrable``, ``aep_conn_id``, ``aep_retry_*``) and:

    :param run_id: the run to watch. Without it, the newest run of the flow created at or after
        ``created_after`` is watched (and followed to its end); the sensor waits while there is none.
    :param created_after: datetime, ISO-8601 string, or epoch seconds or milliseconds; templated, e.g.
        ``"{{ data_interval_start }}"``. None means any run.
    :param poke_interval: seconds between status reads, in every mode.
    :param timeout: seconds to wait, default one day; a wall-clock deadline, honoured within one poll.
        ``soft_fail=True`` turns a timeout *or a failed run* into a skip, in every mode (Airflow already
        skips any failure of a resumed deferred sensor; poke mode does the same here).
    """

    template_fields: Sequence[str] = (*AEPFlowRunWaitOperator.template_fields, "run_id", "created_after")

    def __init__(
        self,
        *,
        run_id: str | None = None,
        created_after: Any = None,
        poke_interval: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.run_id = run_id
        self.created_after = created_after
        self._watch: FlowRunWatch | None = None
        self._deadline: float | None = None

    @property
    def poll_seconds(self) -> float:
        return float(self.poke_interval)

    @property
    def wait_seconds(self) -> float:
        return float(self.timeout)

    def execute(self, context: Any) -> Any:
        try:
            return self._execute(context)
        except AEPFlowRunFailedError as exc:
            if self.soft_fail:  # word for word what resume_execution does for a deferred sensor
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            raise

    def _execute(self, context: Any) -> Any:
        ti = context["ti"]
        ti.xcom_push(key=DATAFLOW_URL_KEY, value=self.hook.dataflow_url(self.flow_id))
        if self.run_id:
            ti.xcom_push(key=RUN_URL_KEY, value=self.hook.dataflow_url(self.flow_id, self.run_id))
        if not self.deferrable:
            if self.mode == "poke":  # reschedule mode re-creates the task; Airflow's own timing applies there
                self._deadline = time.time() + self.wait_seconds
            return super().execute(context)

        self._deadline = time.time() + self.wait_seconds
        watch = self._get_watch(context)
        if self._poll(watch, context) is not Outcome.WAIT:
            return self.finish(context, watch.summary or {})
        self.defer_watch(watch, self._deadline)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        watch = self._get_watch(context)
        if self._deadline is not None and time.time() >= self._deadline:
            raise self.timeout_error(watch, self._deadline)
        if self._poll(watch, context) is Outcome.WAIT:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.finish(context, watch.summary or {}))

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        try:
            return super().execute_complete(context, event)
        except AEPFlowRunFailedError as exc:
            if self.soft_fail:  # Airflow 3 would skip here anyway; Airflow 2 needs it said
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            raise

    def _poll(self, watch: FlowRunWatch, context: Any) -> Outcome:
        known_run = watch.run_id
        outcome = self.hook.drive(watch.poll(self.hook))
        if watch.run_id and not known_run:
            context["ti"].xcom_push(key=RUN_URL_KEY, value=self.hook.dataflow_url(self.flow_id, watch.run_id))
        return outcome

    def _get_watch(self, context: Any) -> FlowRunWatch:
        if self._watch is None:
            self._watch = FlowRunWatch(
                self.flow_id,
                run_id=self.run_id or None,
                created_after_ms=to_epoch_ms(self.created_after, "created_after"),
                logger=self.log,
            )
        return self._watch
