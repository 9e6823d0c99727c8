"""
A reusable building block: the whole protocols-source ingestion pipeline as Airflow tasks.

``build_protocols_pipeline`` adds one task per AEP resource of the tutorial (every one get-or-create,
so the DAG is safe to re-run) and returns the XComArgs of their ids, ready for a sensor, a run
operator or a teardown. Every argument may be a literal, a Jinja template or an XComArg, so the same
function serves a DAG with a parameter form, a scheduled DAG and a mapped task group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_aep.hooks.aep import DATA_LAKE_CONNECTION_SPEC_ID
from airflow_provider_aep.operators.catalog import AEPCreateDatasetOperator
from airflow_provider_aep.operators.conversion import AEPCreateMappingSetOperator
from airflow_provider_aep.operators.flow_service import (
    AEPCreateBaseConnectionOperator,
    AEPCreateFlowOperator,
    AEPCreateSourceConnectionOperator,
    AEPCreateTargetConnectionOperator,
    AEPGetFlowSpecOperator,
)
from airflow_provider_aep.operators.schema_registry import AEPCreateAdHocSchemaOperator, AEPCreateSchemaOperator
from airflow_provider_aep.operators.teardown import AEPDeleteResourcesOperator

GENERIC_ODATA_CONNECTION_SPEC_ID = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
PROFILE_FIELD_GROUPS = (
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
)


@dataclass
class ProtocolsPipeline:
    """The tasks' outputs: resource ids as XComArgs (``adhoc_schema_id`` and ``dataset_base_connection_id``
    resolve to None in the current variant)."""

    adhoc_schema_id: Any
    adhoc_class_id: Any
    base_connection_id: Any
    source_connection_id: Any
    target_schema_id: Any
    dataset_id: Any
    dataset_base_connection_id: Any
    target_connection_id: Any
    mapping_set_id: Any
    flow_spec_id: Any
    flow_id: Any
    flow_task: AEPCreateFlowOperator

    def teardown(self, task_id: str = "delete_pipeline", **kwargs: Any) -> AEPDeleteResourcesOperator:
        """A task deleting everything this pipeline created (already-gone resources count as done)."""
        return AEPDeleteResourcesOperator(
            task_id=task_id,
            flow_ids=self.flow_id,
            source_connection_ids=self.source_connection_id,
            target_connection_ids=self.target_connection_id,
            base_connection_ids=[self.base_connection_id, self.dataset_base_connection_id],
            mapping_set_ids=self.mapping_set_id,
            dataset_ids=self.dataset_id,
            schema_ids=[self.target_schema_id, self.adhoc_schema_id],
            class_ids=self.adhoc_class_id,
            **kwargs,
        )


def build_protocols_pipeline(
    *,
    name: Any,
    source_table: Any,
    source_fields: Any,
    mappings: Any,
    schedule_params: Any,
    odata_url: Any,
    delta_column: Any = None,
    variant: Any = "current",
    field_group_ids: Any = PROFILE_FIELD_GROUPS,
    source_connection_spec_id: str = GENERIC_ODATA_CONNECTION_SPEC_ID,
    flow_spec_name: Any = "CRMToAEP",
    aep_conn_id: str = "aep_default",
    **operator_kwargs: Any,
) -> ProtocolsPipeline:
    """
    Add the provisioning tasks of the protocols tutorial to the current DAG or task group.

    :param name: prefix of every resource name (``"<name> source connection"`` …); make it unique per pipeline.
    :param source_table: the table (current variant) or path (legacy variant) to ingest.
    :param source_fields: column name → XDM type of the source data.
    :param variant: ``"current"`` (tabular source, no dataset base connection) or ``"legacy"`` (the seed:
        ad hoc schema, ``parquet_xdm`` source, dataset base connection on the target); may be a template.
    :param operator_kwargs: passed to every operator (``aep_retry_limit``, ``if_exists``, ``pool`` …).
    """
    from airflow.sdk import task

    common = {"aep_conn_id": aep_conn_id, **operator_kwargs}

    @task.short_circuit(task_id="is_legacy_variant", ignore_downstream_trigger_rules=False)
    def is_legacy_variant(value: Any) -> bool:
        if value not in ("current", "legacy"):
            raise ValueError(f"variant={value!r}: must be 'current' or 'legacy'")
        return value == "legacy"

    @task(task_id="source_spec", multiple_outputs=True, trigger_rule="none_failed")
    def source_spec(value: Any, table: Any, fields: Any, adhoc_schema_id: Any) -> dict[str, Any]:
        """The source connection's data and params for the chosen tutorial variant."""
        if value == "legacy":
            return {"data": {"format": "parquet_xdm", "schema": {"id": adhoc_schema_id}}, "params": {"path": table}}
        columns = [{"name": column, "type": xdm_type} for column, xdm_type in dict(fields).items()]
        return {"data": {"format": "tabular"}, "params": {"tableName": table, "columns": columns}}

    legacy = is_legacy_variant(variant)
    adhoc = AEPCreateAdHocSchemaOperator(task_id="adhoc_schema", title=f"{name} ad hoc schema", fields=source_fields, **common)
    dataset_base = AEPCreateBaseConnectionOperator(
        task_id="dataset_base_connection",
        name=f"{name} dataset base connection",
        connection_spec_id=DATA_LAKE_CONNECTION_SPEC_ID,
        **common,
    )
    legacy >> [adhoc, dataset_base]

    base = AEPCreateBaseConnectionOperator(
        task_id="base_connection",
        name=f"{name} base connection",
        connection_spec_id=source_connection_spec_id,
        auth={"specName": "Anonymous Authentication", "params": {"url": odata_url}},
        **common,
    )
    spec = source_spec(variant, source_table, source_fields, adhoc.output)
    source = AEPCreateSourceConnectionOperator(
        task_id="source_connection",
        name=f"{name} source connection",
        base_connection_id=base.output,
        connection_spec_id=source_connection_spec_id,
        data=spec["data"],
        source_params=spec["params"],
        **common,
    )
    target_schema = AEPCreateSchemaOperator(
        task_id="target_schema", title=f"{name} target schema", field_group_ids=field_group_ids, **common
    )
    dataset = AEPCreateDatasetOperator(task_id="dataset", name=f"{name} dataset", schema_id=target_schema.output, **common)
    target = AEPCreateTargetConnectionOperator(
        task_id="target_connection",
        name=f"{name} target connection",
        dataset_id=dataset.output,
        schema_id=target_schema.output,
        base_connection_id=dataset_base.output,
        trigger_rule="none_failed",
        **common,
    )
    dataset_base >> target
    mapping = AEPCreateMappingSetOperator(
        task_id="mapping_set", name=f"{name} mapping set", schema_id=target_schema.output, mappings=mappings, **common
    )
    flow_spec = AEPGetFlowSpecOperator(task_id="flow_spec", name=flow_spec_name, **common)
    copy_params = {"deltaColumn": {"name": delta_column}} if delta_column is not None else {}
    flow = AEPCreateFlowOperator(
        task_id="dataflow",
        name=f"{name} dataflow",
        flow_spec_id=flow_spec.output,
        source_connection_ids=[source.output],
        target_connection_ids=[target.output],
        transformations=[
            *([{"name": "Copy", "params": copy_params}] if copy_params else []),
            {"name": "Mapping", "params": {"mappingId": mapping.output, "mappingVersion": mapping.output["mapping_version"]}},
        ],
        schedule_params=schedule_params,
        trigger_rule="none_failed",
        **common,
    )
    return ProtocolsPipeline(
        adhoc_schema_id=adhoc.output,
        adhoc_class_id=adhoc.output["class_id"],
        base_connection_id=base.output,
        source_connection_id=source.output,
        target_schema_id=target_schema.output,
        dataset_id=dataset.output,
        dataset_base_connection_id=dataset_base.output,
        target_connection_id=target.output,
        mapping_set_id=mapping.output,
        flow_spec_id=flow_spec.output,
        flow_id=flow.output,
        flow_task=flow,
    )
