"""AEPRunFlowOperator: start an on-demand run of a dataflow scheduled ``once`` and wait for it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.links.aep import DATAFLOW_URL_KEY, RUN_URL_KEY, AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.base import AEPHookMixin
from airflow_provider_aep.sensors.flow_run import DEFER_TIMEOUT_BUFFER, FlowRunPoller, complete_from_event
from airflow_provider_aep.utils.flow_runs import Outcome, decide
from airflow_provider_aep.utils.timestamps import to_epoch_seconds
from airflow_provider_aep.version_compat import BaseOperator, conf

RUN_ID_KEY = "run_id"
DEFAULT_TIMEOUT = 24 * 60 * 60.0


class AEPRunFlowOperator(AEPHookMixin, BaseOperator):
    """
    Start an on-demand run of a flow scheduled ``once`` (POST /runs, aep-api.md §4.9) for a time window,
    then wait for it exactly as :class:`~airflow_provider_aep.sensors.flow_run.AEPFlowRunSensor` does.

    XCom ``run_id``, ``run_url`` and ``dataflow_url`` are pushed right after the run is created, before
    waiting. Returns the run summary when waiting, or the run id (str) with ``wait_for_completion=False``.

    :param flow_id: the dataflow; it must be scheduled ``once``.
    :param window_start: start of the ingestion window: datetime, ISO-8601 string, or epoch seconds or
        milliseconds; templated, e.g. ``"{{ data_interval_start }}"``. Sent as epoch seconds.
    :param window_end: end of the window, same forms, e.g. ``"{{ data_interval_end }}"``.
    :param delta_column: column AEP uses for incremental reads, sent as ``deltaColumn.name``; AEP needs it
        only on a flow's first run and rejects a change later.
    :param wait_for_completion: wait until the run finishes (default) or return right after creating it.
    :param fail_on_partial_success: fail on ``partialSuccess`` instead of succeeding with a warning.
    :param deferrable: wait in the triggerer with :class:`AEPFlowRunTrigger`.
    :param poll_interval: seconds between status reads.
    :param timeout: seconds to wait for the run (default one day); then ``AirflowSensorTimeout`` is raised,
        which Airflow does not retry, since the run may still be going. The AEP run itself is not cancelled
        (AEP documents no run cancellation). A failed run *is* retried if the task has ``retries``: each
        Airflow retry starts a new run for the same window.
    :param aep_retry_limit: retries of each AEP call on 429/5xx/network errors (hook default if None).
    :param aep_retry_delay: first backoff delay in seconds between those retries (hook default if None).
    :param aep_retry_args: other :class:`~airflow_provider_aep.utils.http.RetryPolicy` fields.
    """

    template_fields: Sequence[str] = ("flow_id", "window_start", "window_end", "delta_column", "aep_conn_id")
    operator_extra_links = (AEPDataflowLink(), AEPFlowRunLink())
    ui_color = "#fa0f00"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        flow_id: str,
        window_start: Any,
        window_end: Any,
        delta_column: str | None = None,
        wait_for_completion: bool = True,
        fail_on_partial_success: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        aep_conn_id: str = AEPHook.default_conn_name,
        aep_retry_limit: int | None = None,
        aep_retry_delay: float | None = None,
        aep_retry_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0 or timeout < 0:
            raise AEPValidationError("poll_interval must be > 0 and timeout >= 0")
        self.flow_id = flow_id
        self.window_start = window_start
        self.window_end = window_end
        self.delta_column = delta_column
        self.wait_for_completion = wait_for_completion
        self.fail_on_partial_success = fail_on_partial_success
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.aep_conn_id = aep_conn_id
        self.aep_retry_limit = aep_retry_limit
        self.aep_retry_delay = aep_retry_delay
        self.aep_retry_args = aep_retry_args

    def run_params(self, now: float | None = None) -> dict[str, Any]:
        """The POST /runs ``params``: epoch seconds (integers, as the runSpec types them)."""
        start = _window_seconds("window_start", self.window_start)
        end = _window_seconds("window_end", self.window_end)
        if start >= end:
            raise AEPValidationError(
                f"window_start ({self.window_start!r}) must be before window_end ({self.window_end!r})"
            )
        params: dict[str, Any] = {
            "startTime": int(time.time() if now is None else now),
            "windowStartTime": start,
            "windowEndTime": end,
        }
        if self.delta_column:
            params["deltaColumn"] = {"name": self.delta_column}
        return params

    def execute(self, context: Any) -> Any:
        params = self.run_params()  # validates before any call
        ti = context["ti"]
        ti.xcom_push(key=DATAFLOW_URL_KEY, value=self.hook.dataflow_url(self.flow_id))
        run_id = self.hook.create_run(self.flow_id, params)
        run_url = self.hook.dataflow_url(self.flow_id, run_id)
        ti.xcom_push(key=RUN_ID_KEY, value=run_id)
        ti.xcom_push(key=RUN_URL_KEY, value=run_url)
        self.log.info(
            "Started AEP flow run %s of flow %s for window %s..%s: %s",
            run_id,
            self.flow_id,
            params["windowStartTime"],
            params["windowEndTime"],
            run_url,
        )
        if not self.wait_for_completion:
            return run_id

        deadline = time.time() + self.timeout
        poller = FlowRunPoller(self.hook, self.flow_id, run_id=run_id, logger=self.log)
        while True:
            if time.time() >= deadline:  # deadline before status, as in the sensor and the trigger
                raise poller.timeout_error(deadline)
            outcome = poller.poll()
            if outcome is not Outcome.WAIT:
                return decide(
                    poller.summary or {}, fail_on_partial_success=self.fail_on_partial_success, logger=self.log
                )
            if self.deferrable:  # checked once first: a run that is already over never defers
                # Imported here, not at module level: DAG files that import this operator never need the
                # trigger (nor airflow.triggers.base) to parse (bench/RESULTS.md, DAG-parse overhead).
                from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

                self.defer(
                    trigger=AEPFlowRunTrigger(
                        self.flow_id,
                        run_id=run_id,
                        aep_conn_id=self.aep_conn_id,
                        poll_interval=self.poll_interval,
                        end_time=deadline,
                        retry_args=self.hook.retry_policy.to_dict(),
                    ),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=self.timeout + self.poll_interval + DEFER_TIMEOUT_BUFFER),
                )
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.time())))

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: same value and errors as waiting in the worker."""
        ti = context["ti"]
        return complete_from_event(
            event,
            fail_on_partial_success=self.fail_on_partial_success,
            logger=self.log,
            push=lambda key, value: ti.xcom_push(key=key, value=value),
        )


def _window_seconds(name: str, value: Any) -> int:
    seconds = to_epoch_seconds(value, name)
    if seconds is None:
        raise AEPValidationError(f"{name} is required")
    return seconds
