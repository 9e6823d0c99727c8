"""
# AEP protocols ingestion

The Adobe Experience Platform Flow Service "protocols source" tutorial, end to end:
base connection → explore the source table (its fields) → ad hoc schema → source connection →
target Profile schema → dataset →
(dataset base connection) → target connection → mapping set → flow spec lookup → dataflow,
then an `AEPFlowRunSensor` that waits for the dataflow's first run.

Trigger it from the Airflow UI: the form asks for the source table, the resource names, the schedule and
the mappings; the source fields are optional (inferred from the explored table when left empty, checked
against it when given, so a mistyped column fails before anything but the base connection is created). Every task is get-or-create by name, so triggering it again reuses
what exists and creates nothing new; a resource that exists with different settings fails the task
with a message saying what differs.

`variant` picks the tutorial version: `legacy` (the original: ad hoc schema, `parquet_xdm` source,
dataset base connection) or `current` (today's docs: `tabular` source, no dataset base connection).
"""

from __future__ import annotations

import pendulum

from airflow_provider_aep.pipelines import MAPPINGS_SCHEMA, OPTIONAL_SOURCE_FIELDS_SCHEMA, build_protocols_pipeline
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.models.param import Param  # type: ignore[no-redef]

with DAG(
    dag_id="aep_protocols_ingestion",
    description="Provision an AEP protocols-source dataflow and wait for its first run",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["aep", "example"],
    render_template_as_native_obj=True,
    params={
        "name": Param(
            "Protocols Orders",
            type="string",
            minLength=1,
            title="Pipeline name",
            description="Prefix of every AEP resource name; triggering again with the same name reuses them.",
        ),
        "variant": Param(
            "legacy",
            type="string",
            enum=["legacy", "current"],
            title="Tutorial variant",
            description="legacy: the original tutorial (ad hoc schema, parquet_xdm source); current: today's docs.",
        ),
        "source_table": Param(
            "Orders",
            type="string",
            minLength=1,
            title="Source table",
            description="Source table (current) or path (legacy).",
        ),
        "odata_url": Param(
            "https://services.odata.org/V4/Northwind/Northwind.svc",
            type="string",
            minLength=1,
            title="OData service URL",
            description="URL of the Generic OData service the base connection reads.",
        ),
        "source_fields": Param(
            None,
            title="Source fields (optional)",
            description="Leave empty (null) to infer them from the explored table; or source columns and their "
            "XDM types (string, integer, number, boolean, date, date-time, long …). Either way every field and "
            "mapping source is checked against the table's columns before anything but the base connection is "
            "created.",
            **OPTIONAL_SOURCE_FIELDS_SCHEMA,
        ),
        "mappings": Param(
            [{"source": "OrderID", "destination": "_id"}, {"source": "OrderDate", "destination": "createdByBatchID"}],
            title="Mappings",
            description="Source column → target XDM path, one {source, destination} object each. "
            "The tutorial's {sourceAttribute, destinationXdmPath} form works too.",
            **MAPPINGS_SCHEMA,
        ),
        "delta_column": Param(
            "OrderDate",
            type="string",
            minLength=1,
            title="Delta column",
            description="Column whose value tells new rows apart.",
        ),
        "frequency": Param(
            "minute",
            type="string",
            enum=["minute", "hour", "day", "week"],
            title="Frequency",
            description="How often AEP runs the dataflow.",
        ),
        "interval": Param(
            15,
            type="integer",
            minimum=1,
            title="Interval",
            description="Runs every `interval` units (at least 15 for minute).",
        ),
    },
) as dag:
    pipeline = build_protocols_pipeline(
        name="{{ params.name }}",
        variant="{{ params.variant }}",
        source_table="{{ params.source_table }}",
        source_fields="{{ params.source_fields }}",
        odata_url="{{ params.odata_url }}",
        mappings="{{ params.mappings }}",
        delta_column="{{ params.delta_column }}",
        schedule_params={
            "startTime": "{{ dag_run.start_date }}",
            "frequency": "{{ params.frequency }}",
            "interval": "{{ params.interval }}",
        },
    )

    first_run = AEPFlowRunSensor(
        task_id="wait_for_first_run",
        flow_id=pipeline.flow_id,
        created_after="{{ dag_run.start_date }}",
        poke_interval=5,
        timeout=60 * 60,
    )
