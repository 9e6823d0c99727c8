"""AEPRunFlowOperator: start an on-demand run of a dataflow scheduled ``once`` and wait for it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.links.urls import DATAFLOW_URL_KEY, RUN_URL_KEY
from airflow_provider_aep.operators.base import AEPFlowRunWaitOperator
from airflow_provider_aep.utils.flow_runs import FlowRunWatch, Outcome, readable_utc
from airflow_provider_aep.utils.timestamps import to_epoch_seconds

RUN_ID_KEY = "run_id"
DEFAULT_TIMEOUT = 24 * 60 * 60.0


class AEPRunFlowOperator(AEPFlowRunWaitOperator):
    """
    Start an on-demand run of a flow scheduled ``once`` (POST /runs, aep-api.md §4.9) for a time window,
    then wait for it exactly as :class:`~airflow_provider_aep.sensors.flow_run.AEPFlowRunSensor` does.

    XCom ``run_id``, ``run_url`` and ``dataflow_url`` are pushed right after the run is created, before
    waiting. Returns the run summary when waiting, or the run id (str) with ``wait_for_completion=False``.
    Takes the arguments of :class:`~airflow_provider_aep.operators.base.AEPFlowRunWaitOperator`
    (``flow_id``, ``fail_on_partial_success``, ``deferrable``, ``aep_conn_id``, ``aep_retry_*``) and:

    :param window_start: start of the ingestion window: datetime, ISO-8601 string, or epoch seconds or
        milliseconds; templated, e.g. ``"{{ data_interval_start }}"``. Sent as epoch seconds.
    :param window_end: end of the window, same forms, e.g. ``"{{ data_interval_end }}"``.
    :param delta_column: column AEP uses for incremental reads, sent as ``deltaColumn.name``; AEP needs it
        on a flow's first run and rejects a change later. When None, the flow's Copy transformation's
        ``deltaColumn`` is sent (one GET of the flow).
    :param wait_for_completion: wait until the run finishes (default) or return right after creating it.
    :param poll_interval: seconds between status reads.
    :param timeout: seconds to wait for the run (default one day); then ``AirflowSensorTimeout`` is raised,
        which Airflow does not retry, since the run may still be going. The AEP run itself is not cancelled
        (AEP documents no run cancellation). A failed run *is* retried if the task has ``retries``: each
        Airflow retry starts a new run for the same window.
    """

    template_fields: Sequence[str] = (
        *AEPFlowRunWaitOperator.template_fields,
        "window_start",
        "window_end",
        "delta_column",
    )

    def __init__(
        self,
        *,
        window_start: Any,
        window_end: Any,
        delta_column: str | None = None,
        wait_for_completion: bool = True,
        poll_interval: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0 or timeout < 0:
            raise AEPValidationError("poll_interval must be > 0 and timeout >= 0")
        self.window_start = window_start
        self.window_end = window_end
        self.delta_column = delta_column
        self.wait_for_completion = wait_for_completion
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)

    @property
    def poll_seconds(self) -> float:
        return self.poll_interval

    @property
    def wait_seconds(self) -> float:
        return self.timeout

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
        if "deltaColumn" not in params:
            delta = copy_delta_column(self.hook.get_flow(self.flow_id))
            if delta is not None:
                params["deltaColumn"] = delta
                self.log.info("Sending deltaColumn %s, from the Copy transformation of flow %s", delta, self.flow_id)
        run_id = self.hook.create_run(self.flow_id, params)
        run_url = self.hook.dataflow_url(self.flow_id, run_id)
        ti.xcom_push(key=RUN_ID_KEY, value=run_id)
        ti.xcom_push(key=RUN_URL_KEY, value=run_url)
        self.log.info(
            "Started AEP flow run %s of flow %s for the window %s to %s: %s",
            run_id,
            self.flow_id,
            readable_utc(params["windowStartTime"]),
            readable_utc(params["windowEndTime"]),
            run_url,
        )
        if not self.wait_for_completion:
            return run_id

        deadline = time.time() + self.timeout
        watch = FlowRunWatch(self.flow_id, run_id=run_id, logger=self.log)
        while True:
            if time.time() >= deadline:  # deadline before status, as in the sensor and the trigger
                raise self.timeout_error(watch, deadline)
            if self.hook.drive(watch.poll(self.hook)) is not Outcome.WAIT:
                return self.result(watch)
            if self.deferrable:  # checked once first: a run that is already over never defers
                self.defer_watch(watch, deadline)
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.time())))


def copy_delta_column(flow: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``deltaColumn`` of the flow's Copy transformation, which AEP needs on the flow's first on-demand run."""
    for transformation in flow.get("transformations") or []:
        delta = (
            (transformation.get("params") or {}).get("deltaColumn") if transformation.get("name") == "Copy" else None
        )
        if isinstance(delta, Mapping) and delta.get("name"):
            return dict(delta)
    return None


def _window_seconds(name: str, value: Any) -> int:
    seconds = to_epoch_seconds(value, name)
    if seconds is None:
        raise AEPValidationError(f"{name} is required")
    return seconds
