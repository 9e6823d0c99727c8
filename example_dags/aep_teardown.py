"""
# AEP teardown

Removes every AEP resource a pipeline of the given name created (dataflow, connections, mapping set,
dataset, schemas, ad hoc class), dependents first. Resources are found by their names, so it cleans
up after `aep_protocols_ingestion`, `aep_scheduled_ingestion` or a failed half-run alike; already-gone
resources count as done, so it is safe to trigger again.
"""

from __future__ import annotations

from typing import Any

import pendulum

from airflow_provider_aep.operators.teardown import AEPDeleteResourcesOperator
from airflow_provider_aep.pipelines import find_pipeline_resources

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.decorators import task  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]

with DAG(
    dag_id="aep_teardown",
    description="Delete the AEP resources of a pipeline, found by name",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["aep", "example"],
    params={
        "name": Param(
            "Protocols Orders",
            type="string",
            minLength=1,
            title="Pipeline name",
            description="The name the pipeline was created with (the `name` of aep_protocols_ingestion).",
        )
    },
) as dag:

    @task(multiple_outputs=True)
    def find_resources(params: dict[str, Any] | None = None) -> dict[str, list[str]]:
        """Ids of the pipeline's resources that exist now."""
        from airflow_provider_aep.hooks.aep import AEPHook  # in the task, so parsing the DAG loads no client

        return find_pipeline_resources(AEPHook(), params["name"] if params else "")

    found = find_resources()
    AEPDeleteResourcesOperator(
        task_id="delete_resources",
        **{
            key: found[key]
            for key in (
                "flow_ids",
                "source_connection_ids",
                "target_connection_ids",
                "base_connection_ids",
                "mapping_set_ids",
                "dataset_ids",
                "schema_ids",
                "class_ids",
            )
        },
    )
