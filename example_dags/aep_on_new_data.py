"""
# AEP on new data (Airflow 3)

Runs each time AEP finishes ingesting into a dataset: the dataset is an Asset (`aep://` scheme) watched by
an `AssetWatcher` whose `AEPFlowRunEventTrigger` reads the dataflow's runs in the triggerer and fires once
for each run that finishes `success` or `partialSuccess`, never twice for one run, even across triggerer
restarts (its watermark is kept in the asset state store). The DAG run gets the run's id, record and byte
counts and links in the asset event.

Point it at your flow and dataset with the environment variables `AEP_ON_NEW_DATA_FLOW_ID`,
`AEP_ON_NEW_DATA_ORG_ID`, `AEP_ON_NEW_DATA_SANDBOX` and `AEP_ON_NEW_DATA_DATASET_ID`, and how often the
runs are read with `AEP_ON_NEW_DATA_POLL_SECONDS` (default 60); they are read when the file is parsed, when
no AEP call happens. Event-driven scheduling needs Airflow 3; on Airflow 2 this file says so.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pendulum

from airflow_provider_aep.assets.aep import dataset_uri
from airflow_provider_aep.triggers.flow_run import AEPFlowRunEventTrigger

try:
    from airflow.sdk import DAG, Asset, AssetWatcher, task
except ImportError as exc:  # Airflow 2
    raise ImportError("aep_on_new_data needs Airflow 3 (AssetWatcher, event-driven scheduling)") from exc

log = logging.getLogger(__name__)

FLOW_ID = os.environ.get("AEP_ON_NEW_DATA_FLOW_ID", "00000000-0000-0000-0000-000000000000")
DATASET = Asset(
    name="aep_orders_dataset",
    uri=dataset_uri(
        os.environ.get("AEP_ON_NEW_DATA_ORG_ID", "EXAMPLE0000000000@AdobeOrg"),
        os.environ.get("AEP_ON_NEW_DATA_SANDBOX", "prod"),
        os.environ.get("AEP_ON_NEW_DATA_DATASET_ID", "000000000000000000000000"),
    ),
    watchers=[
        AssetWatcher(
            name="aep_orders_flow_runs",
            trigger=AEPFlowRunEventTrigger(
                FLOW_ID, poll_interval=float(os.environ.get("AEP_ON_NEW_DATA_POLL_SECONDS", "60"))
            ),
        )
    ],
)

with DAG(
    dag_id="aep_on_new_data",
    description="Runs once for each AEP flow run that lands data in the dataset",
    doc_md=__doc__,
    schedule=[DATASET],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["aep", "example", "assets"],
) as dag:

    @task
    def report_new_data(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Each AEP run behind this DAG run: its id, status and counts, from the asset events' payloads."""
        runs = [event.extra.get("payload") or event.extra for event in triggering_asset_events[DATASET]]
        for run in runs:
            log.info(
                "AEP flow run %s finished %s: %s records written, %s failed. %s",
                run.get("run_id"),
                run.get("status"),
                (run.get("records") or {}).get("output"),
                (run.get("records") or {}).get("failed"),
                run.get("run_url"),
            )
        return runs

    report_new_data()
