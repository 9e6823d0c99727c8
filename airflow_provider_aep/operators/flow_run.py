"""Operators that start an AEP flow run and follow it to its end: an on-demand run, or a re-run of a finished one."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aep.exceptions import AEPApiError, AEPRetriggerRefusedError, AEPValidationError, is_retryable
from airflow_provider_aep.links.urls import DATAFLOW_URL_KEY, RUN_URL_KEY
from airflow_provider_aep.operators.base import AEPFlowRunWaitOperator
from airflow_provider_aep.utils.flow_runs import (
    FlowRunWatch,
    Outcome,
    existing_flow,
    outcome_of,
    readable_utc,
    run_status,
)
from airflow_provider_aep.utils.timestamps import to_epoch_ms, to_epoch_seconds
from airflow_provider_aep.version_compat import AIRFLOW_V_3_0_PLUS

RUN_ID_KEY = "run_id"
DEFAULT_TIMEOUT = 24 * 60 * 60.0
# AEP's clock and the worker's may disagree a little: a run created "before" the DAG run was due by less
# than this still counts as one of its own when a retried task looks for the run it started.
CLOCK_SKEW_SECONDS = 60
# When the DAG run was due: no try of its tasks, nor any run they started, came before. Clearing a task resets a
# finished DAG run's start_date (and queued_at), never this. Airflow 2 has no run_after; its logical date is as
# fixed, and no DAG run starts before it.
DAG_RUN_DUE = "run_after" if AIRFLOW_V_3_0_PLUS else "logical_date"


class AEPStartedRunOperator(AEPFlowRunWaitOperator):
    """
    Base of the operators that start a flow run and then follow it: XCom ``run_id``, ``run_url`` and
    ``dataflow_url`` pushed before waiting, the wait (in the worker or the triggerer), re-triggering a failed
    run, and judging the run it ends with. Subclasses say how the run starts (:meth:`start_run`).

    Takes the arguments of :class:`~airflow_provider_aep.operators.base.AEPFlowRunWaitOperator`
    (``flow_id``, ``fail_on_partial_success``, the quality gate ``max_failed_records``/``max_failed_ratio``,
    ``diagnostics_rows``, ``deferrable``, ``aep_conn_id``, ``aep_retry_*``) and:

    :param wait_for_completion: wait until the run finishes (default) or return its id right after it started.
    :param poll_interval: seconds between status reads.
    :param timeout: seconds to wait for each run it follows (default one day); then ``AirflowSensorTimeout``,
        which Airflow does not retry, since the run may still be going (AEP documents no run cancellation).
    :param retrigger_failed: re-trigger a run it follows that ends ``failed``
        (``POST /runs/{id}/action?op=RE_TRIGGER``) and follow the run AEP starts, up to this many times for
        the window (default 0). They are counted in AEP, as the failed runs of the window since the DAG run
        was due, so a retried, resumed or cleared task keeps count (clearing does not renew them). A run is
        never re-triggered twice; where AEP refuses, the task says so in one line and fails with the run's
        errors.
    """

    template_fields: Sequence[str] = AEPFlowRunWaitOperator.template_fields

    def __init__(
        self,
        *,
        wait_for_completion: bool = True,
        poll_interval: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        retrigger_failed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0 or timeout < 0:
            raise AEPValidationError("poll_interval must be > 0 and timeout >= 0")
        if isinstance(retrigger_failed, bool) or not isinstance(retrigger_failed, int) or retrigger_failed < 0:
            raise AEPValidationError(f"retrigger_failed={retrigger_failed!r}: must be a whole number >= 0")
        self.wait_for_completion = wait_for_completion
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.retrigger_failed = retrigger_failed

    @property
    def poll_seconds(self) -> float:
        return self.poll_interval

    @property
    def wait_seconds(self) -> float:
        return self.timeout

    def start_run(self, context: Any) -> str:
        """Start (or find) the run to follow, after pushing XCom ``dataflow_url``; returns its id."""
        raise NotImplementedError

    def execute(self, context: Any) -> Any:
        run_id = self.start_run(context)
        self.push_run(context, run_id)
        if not self.wait_for_completion:
            return run_id
        return self.follow(context, run_id)

    def push_run(self, context: Any, run_id: str) -> None:
        context["ti"].xcom_push(key=RUN_ID_KEY, value=run_id)
        context["ti"].xcom_push(key=RUN_URL_KEY, value=self.hook.dataflow_url(self.flow_id, run_id))

    def follow(self, context: Any, run_id: str) -> dict[str, Any]:
        """Wait for the run, here or in the triggerer, then :meth:`settle` it."""
        deadline = time.time() + self.timeout
        watch = FlowRunWatch(self.flow_id, run_id=run_id, logger=self.log)
        while True:
            if time.time() >= deadline:  # deadline before status, as in the sensor and the trigger
                raise self.timeout_error(watch, deadline)
            if self.hook.drive(watch.poll(self.hook)) is not Outcome.WAIT:
                return self.settle(context, watch.summary or {})
            if self.deferrable:  # checked once first: a run that is already over never defers
                self.defer_watch(watch, deadline)
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.time())))

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        summary = self.summary_of_event(context, event)
        self.flow_id = self.flow_id or summary.get("flow_id") or ""
        return self.settle(context, summary)

    def settle(self, context: Any, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Re-trigger a failed run while ``retrigger_failed`` allows and AEP agrees, else judge the run."""
        failed = self.retrigger_failed and outcome_of(summary.get("status")) is Outcome.FAILED
        spent = self.failed_runs_of_window(context, summary) if failed else None
        if spent is not None and spent <= self.retrigger_failed:
            failed_run = str(summary.get("run_id"))
            try:
                rerun = self.hook.retrigger_run(failed_run)
            except AEPApiError as exc:
                self.log.warning(refusal(failed_run, self.flow_id, exc))
            else:
                self.push_run(context, rerun)
                self.log.info(
                    "Re-triggered failed AEP flow run %s (%d of %d): following run %s, %s",
                    failed_run,
                    spent,
                    self.retrigger_failed,
                    rerun,
                    self.hook.dataflow_url(self.flow_id, rerun),
                )
                return self.follow(context, rerun)
        return self.finish(context, summary)

    def failed_runs_of_window(self, context: Any, summary: Mapping[str, Any]) -> int | None:
        """How many runs of the failed run's window failed since the DAG run was due (it included); None if
        AEP reports no window for it."""
        start, end = to_epoch_seconds(summary.get("window_start")), to_epoch_seconds(summary.get("window_end"))
        if start is None or end is None:
            self.log.warning("AEP reports no window for run %s, so it is not re-triggered", summary.get("run_id"))
            return None
        runs = self.hook.find_runs_for_window(self.flow_id, (start, end), created_after_ms=dag_run_due_ms(context))
        return sum(outcome_of(run_status(run)) is Outcome.FAILED for run in runs)


def dag_run_due_ms(context: Any) -> int | None:
    """When the task's DAG run was due (:data:`DAG_RUN_DUE`, epoch ms, less the clock skew allowed); None
    outside a DAG run."""
    due = getattr(context.get("dag_run"), DAG_RUN_DUE, None)
    since_ms = to_epoch_ms(due, f"dag_run.{DAG_RUN_DUE}")
    return None if since_ms is None else since_ms - CLOCK_SKEW_SECONDS * 1000


def refusal(run_id: str, flow_id: str, exc: AEPApiError) -> str:
    """One line saying AEP did not re-run a run, and why."""
    why = " ".join(f"{f'[{exc.code}] ' if exc.code else ''}{exc.message}".split())
    if is_retryable(exc):
        return f"Re-triggering AEP flow run {run_id} of flow {flow_id} failed ({exc.status or exc.code}): {why}"
    return f"AEP refused to re-trigger flow run {run_id} of flow {flow_id} (HTTP {exc.status}): {why}"


class AEPRunFlowOperator(AEPStartedRunOperator):
    """
    Start an on-demand run of a flow scheduled ``once`` (POST /runs, aep-api.md §4.9) for a time window,
    then wait for it exactly as :class:`~airflow_provider_aep.sensors.flow_run.AEPFlowRunSensor` does.

    Returns the run summary when waiting, or the run id (str) with ``wait_for_completion=False``. Takes the
    arguments of :class:`AEPStartedRunOperator` (``flow_id``, ``wait_for_completion``, ``poll_interval``,
    ``timeout``, ``retrigger_failed``, the quality gate, ``diagnostics_rows``, ``deferrable`` …) and:

    :param window_start: start of the ingestion window: datetime, ISO-8601 string, or epoch seconds or
        milliseconds; templated, e.g. ``"{{ data_interval_start }}"``. Sent as epoch seconds.
    :param window_end: end of the window, same forms, e.g. ``"{{ data_interval_end }}"``.
    :param delta_column: column AEP uses for incremental reads, sent as ``deltaColumn.name``; AEP needs it
        on a flow's first run and rejects a change later. When None, the flow's Copy transformation's
        ``deltaColumn`` is sent.

    The flow is read first (one GET): a flow that does not exist fails the task then, with
    :class:`~airflow_provider_aep.exceptions.AEPResourceNotFoundError` naming it, before anything is started.

    A task retried by Airflow (a crashed worker) or cleared (in a running or a finished DAG run) first looks
    for the run it started: the newest run of the flow for exactly this window created since the DAG run was
    due (``run_after``; on Airflow 2 the logical date), less a minute for clock skew. Unless that run failed,
    it is followed instead of starting a second one, so a window is never ingested twice: a run that succeeded
    or broke the quality gate is judged again, not re-ingested. A failed run is not reattached: the retry
    starts a new run for the window. Only a DAG run due later (a new one) starts a new run for a window whose
    run did not fail.
    """

    template_fields: Sequence[str] = (
        *AEPStartedRunOperator.template_fields,
        "window_start",
        "window_end",
        "delta_column",
    )

    def __init__(self, *, window_start: Any, window_end: Any, delta_column: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.window_start = window_start
        self.window_end = window_end
        self.delta_column = delta_column

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

    def start_run(self, context: Any) -> str:
        params = self.run_params()  # validates before any call
        window = (params["windowStartTime"], params["windowEndTime"])
        when = f"the window {readable_utc(window[0])} to {readable_utc(window[1])}"
        context["ti"].xcom_push(key=DATAFLOW_URL_KEY, value=self.hook.dataflow_url(self.flow_id))
        flow = self.hook.drive(existing_flow(self.hook, self.flow_id, "no run can be started"))
        earlier = self.earlier_run(context, window)
        if earlier is not None:
            self.log.info(
                "Reattached to AEP flow run %s of flow %s for %s (%s), started before this try: %s",
                earlier["id"],
                self.flow_id,
                when,
                run_status(earlier) or "no status yet",
                self.hook.dataflow_url(self.flow_id, earlier["id"]),
            )
            return str(earlier["id"])
        if "deltaColumn" not in params:
            delta = copy_delta_column(flow)
            if delta is not None:
                params["deltaColumn"] = delta
                self.log.info("Sending deltaColumn %s, from the Copy transformation of flow %s", delta, self.flow_id)
        run_id = self.hook.create_run(self.flow_id, params)
        self.log.info(
            "Started AEP flow run %s of flow %s for %s: %s",
            run_id,
            self.flow_id,
            when,
            self.hook.dataflow_url(self.flow_id, run_id),
        )
        return run_id

    def earlier_run(self, context: Any, window: tuple[int, int]) -> dict[str, Any] | None:
        """The run an earlier try of this task started for ``window``, unless it failed; None for none."""
        since_ms = dag_run_due_ms(context)
        if since_ms is None:
            return None
        runs = self.hook.find_runs_for_window(self.flow_id, window, created_after_ms=since_ms)
        if runs and outcome_of(run_status(runs[0])) is not Outcome.FAILED:
            return runs[0]
        return None


class AEPRetriggerFlowRunOperator(AEPStartedRunOperator):
    """
    Re-trigger a finished flow run (``POST /runs/{RUN_ID}/action?op=RE_TRIGGER``; AEP re-runs it for the same
    window) and follow the run AEP starts, as :class:`AEPRunFlowOperator` follows its run. A run of that flow
    and window created after it already counts as its re-run and is followed instead, so neither a lost
    answer nor a retried task re-triggers one run twice; a run AEP reports no window for is safe from lost
    answers only (:meth:`~airflow_provider_aep.hooks.operations.AEPOperations.retrigger_run`). Where AEP
    refuses (e.g. not a batch source), the task fails with one line saying so.

    Returns the summary of the run it followed, or its id with ``wait_for_completion=False``. Takes the
    arguments of :class:`AEPStartedRunOperator` and:

    :param run_id: the run to re-trigger; templated, e.g. ``"{{ ti.xcom_pull('run', key='run_id') }}"``.
    :param flow_id: the run's flow; read from the run when not given (and checked when given).
    """

    template_fields: Sequence[str] = (*AEPStartedRunOperator.template_fields, "run_id")

    def __init__(self, *, run_id: str, flow_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(flow_id=flow_id or "", **kwargs)
        self.run_id = run_id

    def start_run(self, context: Any) -> str:
        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise AEPValidationError(f"run_id={self.run_id!r}: must be the id of a flow run")
        run_id = self.run_id.strip()
        flow_of_run = str(self.hook.get_run(run_id).get("flowId") or "")
        if self.flow_id and flow_of_run and self.flow_id != flow_of_run:
            raise AEPValidationError(f"run_id={run_id!r} is a run of flow {flow_of_run}, not flow_id={self.flow_id!r}")
        self.flow_id = self.flow_id or flow_of_run
        context["ti"].xcom_push(key=DATAFLOW_URL_KEY, value=self.hook.dataflow_url(self.flow_id))
        try:
            rerun = self.hook.retrigger_run(run_id)
        except AEPApiError as exc:
            if is_retryable(exc):  # not a refusal: AEP could not be asked
                raise
            raise AEPRetriggerRefusedError(refusal(run_id, self.flow_id, exc)) from None
        self.log.info(
            "Re-triggered AEP flow run %s of flow %s: following run %s, %s",
            run_id,
            self.flow_id,
            rerun,
            self.hook.dataflow_url(self.flow_id, rerun),
        )
        return rerun


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
