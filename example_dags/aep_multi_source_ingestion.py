"""
# AEP multi-source ingestion

Dynamic task mapping: one pipeline per source table, provisioned and monitored in parallel. The
`sources` parameter lists the tables; each becomes a mapped task group that provisions its own
dataflow (named after the table) and waits for its first run in the triggerer (deferrable sensors
hold no worker slot while AEP works). A source without `fields` has them inferred from its explored
table, as `Customers` does here; `Employees` lists its own, its `Photo` column being binary, which no
XDM field type holds.
"""

from __future__ import annotations

from typing import Any

import pendulum

from airflow_provider_aep.pipelines import MAPPINGS_SCHEMA, OPTIONAL_SOURCE_FIELDS_SCHEMA, build_protocols_pipeline
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

try:
    from airflow.sdk import DAG, Param, task, task_group
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.decorators import task, task_group  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]

DEFAULT_SOURCES = [
    {
        "table": "Orders",
        "fields": {"OrderID": "string", "CustomerID": "string", "OrderDate": "date-time"},
        "mappings": [{"source": "OrderID", "destination": "_id"}],
        "delta_column": "OrderDate",
    },
    {
        "table": "Customers",
        "mappings": [{"source": "CustomerID", "destination": "_id"}],
        "delta_column": "ModifiedDate",
    },
    {
        "table": "Employees",
        "fields": {"EmployeeID": "integer", "LastName": "string", "HireDate": "date-time"},
        "mappings": [{"source": "EmployeeID", "destination": "_id"}],
        "delta_column": "HireDate",
    },
]

with DAG(
    dag_id="aep_multi_source_ingestion",
    description="One AEP dataflow per source table, provisioned and monitored in parallel",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["aep", "example"],
    params={
        "sources": Param(
            DEFAULT_SOURCES,
            type="array",
            minItems=1,
            items={
                "type": "object",
                "properties": {
                    "table": {"type": "string", "minLength": 1},
                    "fields": OPTIONAL_SOURCE_FIELDS_SCHEMA,
                    "mappings": MAPPINGS_SCHEMA,
                    "delta_column": {"type": ["string", "null"]},
                },
                "required": ["table", "mappings"],
            },
            title="Sources",
            description="One object per table: table, fields (column → XDM type; left out, they are inferred "
            "from the explored table), mappings ({source, destination} objects) and delta_column. Each becomes a "
            "pipeline of its own.",
        ),
        "odata_url": Param(
            "https://services.odata.org/V4/Northwind/Northwind.svc",
            type="string",
            minLength=1,
            title="OData service URL",
            description="URL of the Generic OData service every base connection reads.",
        ),
    },
) as dag:

    @task
    def list_sources(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(params["sources"]) if params else []

    @task(multiple_outputs=True)
    def describe(source: dict[str, Any]) -> dict[str, Any]:
        """Split one source entry into the pipeline's arguments; one it leaves out reaches the pipeline as None."""
        config = {
            "name": f"Multi {source['table']}",
            "table": source["table"],
            "fields": source.get("fields"),
            "mappings": source["mappings"],
            "delta_column": source.get("delta_column"),
        }
        # Airflow 3.0 refuses an XCom whose value is None (apache/airflow#55062).
        return {key: value for key, value in config.items() if value is not None}

    @task_group(group_id="ingest_source")
    def ingest_source(source: dict[str, Any]) -> None:
        config = describe(source)
        pipeline = build_protocols_pipeline(
            name=config["name"],
            source_table=config["table"],
            source_fields=config["fields"],
            mappings=config["mappings"],
            delta_column=config["delta_column"],
            odata_url="{{ params.odata_url }}",
            schedule_params={"startTime": "{{ dag_run.start_date }}", "frequency": "minute", "interval": 15},
        )
        AEPFlowRunSensor(
            task_id="wait_for_first_run",
            flow_id=pipeline.flow_id,
            created_after="{{ dag_run.start_date }}",
            deferrable=True,
            poke_interval=10,
            timeout=60 * 60,
        )

    ingest_source.expand(source=list_sources())
