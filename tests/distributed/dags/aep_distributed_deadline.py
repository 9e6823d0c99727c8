"""
# A deferred AEP sensor that can only time out

Used by `make test-distributed`: it waits for a run of the flow `flow_id` created in 2100, so its trigger
fires `timeout` at the sensor's deadline, `TIMEOUT` seconds after it starts, whichever triggerer holds it.
"""

from __future__ import annotations

import pendulum

from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.models.param import Param  # type: ignore[no-redef]

DAG_ID = "aep_distributed_deadline"
SENSOR = "wait_past_deadline"
TIMEOUT = 45.0
POLL_INTERVAL = 30.0

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"flow_id": Param(type="string", description="An existing dataflow")},
    tags=["aep", "test"],
) as dag:
    AEPFlowRunSensor(
        task_id=SENSOR,
        flow_id="{{ params.flow_id }}",
        created_after=pendulum.datetime(2100, 1, 1, tz="UTC"),
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=TIMEOUT,
    )
