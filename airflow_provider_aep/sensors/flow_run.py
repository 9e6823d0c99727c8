"""AEPFlowRunSensor: wait for an AEP flow run to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_aep.exceptions import AEPApiError, AEPFlowRunFailedError
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.links.aep import DATAFLOW_URL_KEY, RUN_URL_KEY, AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.base import AEPHookMixin
from airflow_provider_aep.utils.flow_runs import (
    EVENT_STATUSES,
    Outcome,
    decide,
    outcome_of,
    progress_line,
    run_summary,
    timeout_message,
)
from airflow_provider_aep.utils.http import is_retryable
from airflow_provider_aep.utils.timestamps import to_epoch_ms
from airflow_provider_aep.version_compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

DEFAULT_TIMEOUT = 24 * 60 * 60.0
# Airflow's own deferral timeout is set this far past the trigger's deadline, so the trigger's `timeout`
# event (with the run's last status and link) wins, while a lost trigger still cannot wait forever.
DEFER_TIMEOUT_BUFFER = 300.0


class FlowRunPoller:
    """
    One synchronous status read per :meth:`poll`, shared by the sensor's ``poke`` and the operator's wait.

    Without ``run_id`` it watches the newest run created at or after ``created_after_ms`` and, once it has
    one, follows that run to its end. Retryable failures that outlast the hook's retries count as "still
    waiting", so a rate-limited or flaky API never fails the task; the deadline still applies.
    """

    def __init__(
        self,
        hook: AEPHook,
        flow_id: str,
        *,
        run_id: str | None = None,
        created_after_ms: int | None = None,
        logger: logging.Logger | None = None,
        on_run_found: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.hook = hook
        self.flow_id = flow_id
        self.run_id = run_id
        self.created_after_ms = created_after_ms
        self.log = logger or logging.getLogger(__name__)
        self.on_run_found = on_run_found
        self.summary: dict[str, Any] | None = None
        self._warned: set[str] = set()

    def poll(self) -> Outcome:
        try:
            run = self._read()
        except AEPApiError as exc:
            if not is_retryable(exc):
                raise
            self.log.warning("Reading AEP flow run status failed after retries (%s); polling on", exc)
            return Outcome.WAIT
        if run is None:
            self.log.info("No run of AEP flow %s created at or after %s ms yet", self.flow_id, self.created_after_ms)
            return Outcome.WAIT
        config = self.hook.config
        summary = run_summary(run, self.flow_id, config.org_id, config.sandbox)
        first = self.summary is None
        self.summary = summary
        if self.run_id is None:
            self.run_id = summary["run_id"]
            self.log.info("Watching AEP flow run %s (%s)", self.run_id, summary["run_url"])
        if first and self.on_run_found:
            self.on_run_found(summary)
        self.log.info(progress_line(summary, time.time()))
        return outcome_of(summary["status"], warned=self._warned, logger=self.log)

    def timeout_error(self, deadline: float) -> AirflowSensorTimeout:
        summary = self.summary or {}
        url = summary.get("run_url") or self.hook.dataflow_url(self.flow_id)
        return AirflowSensorTimeout(timeout_message(self.flow_id, self.run_id, summary.get("status"), deadline, url))

    def _read(self) -> dict[str, Any] | None:
        if self.run_id is not None:
            return self.hook.get_run(self.run_id)
        return next(self.hook.list_runs(self.flow_id, created_after_ms=self.created_after_ms), None)


def complete_from_event(
    event: Any,
    *,
    fail_on_partial_success: bool,
    logger: logging.Logger,
    push: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """
    Turn the trigger's event into the task's result: the same return value and the same exceptions as
    poke mode (:func:`decide`; ``AirflowSensorTimeout`` on ``timeout``).
    """
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
        raise AirflowException(f"AEPFlowRunTrigger sent an event this provider does not understand: {event!r}")
    summary = event.get("summary")
    if push and isinstance(summary, Mapping) and summary.get("run_url"):
        push(RUN_URL_KEY, summary["run_url"])
    status = event["status"]
    if status == "timeout":
        raise AirflowSensorTimeout(event.get("message") or "Timed out waiting for the AEP flow run")
    if status == "error" or not isinstance(summary, Mapping):
        raise AirflowException(
            f"Waiting for AEP flow run {event.get('run_id')} of flow {event.get('flow_id')} failed: {event.get('message')}"
        )
    return decide(summary, fail_on_partial_success=fail_on_partial_success, logger=logger)


class AEPFlowRunSensor(AEPHookMixin, BaseSensorOperator):
    """
    Wait for an AEP flow run to finish and return its summary (run id, status, times, record and file
    counts, links; see :func:`~airflow_provider_aep.utils.flow_runs.run_summary`).

    :param flow_id: the dataflow.
    :param run_id: the run to watch. Without it, the newest run of the flow created at or after
        ``created_after`` is watched (and followed to its end); the sensor waits while there is none.
    :param created_after: datetime, ISO-8601 string, or epoch seconds or milliseconds; templated, e.g.
        ``"{{ data_interval_start }}"``. None means any run.
    :param fail_on_partial_success: fail on ``partialSuccess`` instead of succeeding with a warning.
    :param deferrable: wait in the triggerer (:class:`AEPFlowRunTrigger`); the status is checked first, so
        a finished run never defers.
    :param poke_interval: seconds between status reads, in every mode.
    :param timeout: seconds to wait, default one day; a wall-clock deadline, honoured within one poll.
        ``soft_fail=True`` turns a timeout *or a failed run* into a skip, in every mode (Airflow already
        skips any failure of a resumed deferred sensor; poke mode does the same here).
    :param aep_retry_limit: retries of each AEP call on 429/5xx/network errors (hook default if None).
    :param aep_retry_delay: first backoff delay in seconds between those retries (hook default if None).
    :param aep_retry_args: other :class:`~airflow_provider_aep.utils.http.RetryPolicy` fields.
    """

    template_fields: Sequence[str] = ("flow_id", "run_id", "created_after", "aep_conn_id")
    operator_extra_links = (AEPDataflowLink(), AEPFlowRunLink())
    ui_color = "#fa0f00"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        flow_id: str,
        run_id: str | None = None,
        created_after: Any = None,
        fail_on_partial_success: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        aep_conn_id: str = AEPHook.default_conn_name,
        aep_retry_limit: int | None = None,
        aep_retry_delay: float | None = None,
        aep_retry_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.flow_id = flow_id
        self.run_id = run_id
        self.created_after = created_after
        self.fail_on_partial_success = fail_on_partial_success
        self.deferrable = deferrable
        self.aep_conn_id = aep_conn_id
        self.aep_retry_limit = aep_retry_limit
        self.aep_retry_delay = aep_retry_delay
        self.aep_retry_args = aep_retry_args
        self._poller: FlowRunPoller | None = None
        self._deadline: float | None = None

    def execute(self, context: Any) -> Any:
        try:
            return self._execute(context)
        except AEPFlowRunFailedError as exc:
            if self.soft_fail:  # word for word what resume_execution does for a deferred sensor
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            raise

    def _execute(self, context: Any) -> Any:
        ti = context["ti"]
        poller = self._get_poller(context)
        ti.xcom_push(key=DATAFLOW_URL_KEY, value=self.hook.dataflow_url(self.flow_id))
        if self.run_id:
            ti.xcom_push(key=RUN_URL_KEY, value=self.hook.dataflow_url(self.flow_id, self.run_id))
        if not self.deferrable:
            if self.mode == "poke":  # reschedule mode re-creates the task; Airflow's own timing applies there
                self._deadline = time.time() + self.timeout
            return super().execute(context)

        self._deadline = time.time() + self.timeout
        outcome = poller.poll()
        if outcome is not Outcome.WAIT:
            return decide(poller.summary or {}, fail_on_partial_success=self.fail_on_partial_success, logger=self.log)
        # Imported here, not at module level: DAG files that import this sensor never need the trigger
        # (nor airflow.triggers.base) to parse (bench/RESULTS.md, DAG-parse overhead).
        from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

        self.defer(
            trigger=AEPFlowRunTrigger(
                self.flow_id,
                run_id=poller.run_id,
                created_after_ms=poller.created_after_ms,
                aep_conn_id=self.aep_conn_id,
                poll_interval=self.poke_interval,
                end_time=self._deadline,
                retry_args=self.hook.retry_policy.to_dict(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.poke_interval + DEFER_TIMEOUT_BUFFER),
        )

    def poke(self, context: Any) -> bool | PokeReturnValue:
        poller = self._get_poller(context)
        if self._deadline is not None and time.time() >= self._deadline:
            raise poller.timeout_error(self._deadline)
        outcome = poller.poll()
        if outcome is Outcome.WAIT:
            return False
        summary = decide(poller.summary or {}, fail_on_partial_success=self.fail_on_partial_success, logger=self.log)
        return PokeReturnValue(is_done=True, xcom_value=summary)

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: same value and errors as poke mode."""
        ti = context["ti"]
        try:
            return complete_from_event(
                event,
                fail_on_partial_success=self.fail_on_partial_success,
                logger=self.log,
                push=lambda key, value: ti.xcom_push(key=key, value=value),
            )
        except AEPFlowRunFailedError as exc:
            if self.soft_fail:  # Airflow 3 would skip here anyway; Airflow 2 needs it said
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            raise

    def _get_poller(self, context: Any) -> FlowRunPoller:
        if self._poller is None:
            ti = context["ti"]
            self._poller = FlowRunPoller(
                self.hook,
                self.flow_id,
                run_id=self.run_id or None,
                created_after_ms=to_epoch_ms(self.created_after, "created_after"),
                logger=self.log,
                on_run_found=lambda s: ti.xcom_push(key=RUN_URL_KEY, value=s["run_url"]),
            )
        return self._poller
