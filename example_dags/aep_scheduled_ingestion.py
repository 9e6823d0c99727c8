"""
# AEP scheduled ingestion

Airflow owns the schedule: each hourly DAG run makes sure the pipeline exists (a dataflow scheduled
`once`, so AEP never runs it on its own clock), starts an on-demand AEP run for the DAG run's data
interval, waits for it in the triggerer (deferrable), then reports the run's metrics.

Outcomes you can trust:

- **Quality gate**: AEP reports a run `success` even when it rejected rows. More than 1% of the
  interval's rows failing fails the task, in one line with the counts and the AEP links, followed by
  the target batches and up to 5 row errors from AEP's error diagnostics (also in XCom `run_summary`).
- **Re-trigger**: a run that fails is re-run once by AEP (`RE_TRIGGER`, same window) before the task
  fails; a run is never re-triggered twice, even after a lost answer.
- **Reattach**: a task retried after a crashed worker follows the run it started for its window
  instead of starting a second one.

Re-runs and backfills are safe: provisioning reuses what exists, and each DAG run asks AEP for exactly
its own window.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
from airflow_provider_aep.pipelines import build_protocols_pipeline

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.decorators import task  # type: ignore[no-redef]

log = logging.getLogger(__name__)

with DAG(
    dag_id="aep_scheduled_ingestion",
    description="Hourly on-demand AEP runs for each data interval",
    doc_md=__doc__,
    # A data-interval timetable: each run covers the hour before it, which becomes the AEP run's window.
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["aep", "example"],
) as dag:
    pipeline = build_protocols_pipeline(
        name="Scheduled Orders",
        source_table="Orders",
        source_fields={"OrderID": "string", "CustomerID": "string", "OrderDate": "date-time"},
        odata_url="https://services.odata.org/V4/Northwind/Northwind.svc",
        mappings=[{"source": "OrderID", "destination": "_id"}],
        delta_column="OrderDate",
        # `once`: AEP runs the flow only when asked; the DAG's schedule decides when.
        schedule_params={"startTime": "{{ data_interval_end }}", "frequency": "once"},
    )

    run = AEPRunFlowOperator(
        task_id="run_for_interval",
        flow_id=pipeline.flow_id,
        window_start="{{ data_interval_start }}",
        window_end="{{ data_interval_end }}",
        deferrable=True,
        poll_interval=30,
        timeout=2 * 60 * 60,
        max_failed_ratio=0.01,  # the quality gate: at most 1% of the input rows may be rejected
        diagnostics_rows=5,
        retrigger_failed=1,  # a failed run is re-run once for the same window before the task fails
        retries=1,  # a crashed worker's retry reattaches to the run it started
    )

    @task
    def report_metrics(summary: dict[str, Any]) -> dict[str, Any]:
        """Log the run's metrics; the returned dict is what a downstream check or alert would read."""
        records = summary["records"]
        log.info(
            "AEP run %s %s in %ss: %s records read, %s written, %s failed, %s files. %s",
            summary["run_id"],
            summary["status"],
            summary["duration_seconds"],
            records["input"],
            records["output"],
            records["failed"],
            summary["files"]["input"],
            summary["run_url"],
        )
        return {
            "run_id": summary["run_id"],
            "status": summary["status"],
            **{f"records_{k}": v for k, v in records.items()},
        }

    report_metrics(run.output)
