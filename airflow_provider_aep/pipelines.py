"""
A reusable building block: the whole protocols-source ingestion pipeline as Airflow tasks.

``build_protocols_pipeline`` adds a first task checking every input, then one task per AEP resource of the
tutorial (every one get-or-create, so the DAG is safe to re-run), and returns the XComArgs of their ids,
ready for a sensor, a run operator or a teardown. Every argument may be a literal, a Jinja template or an
XComArg, so the same function serves a DAG with a parameter form, a scheduled DAG and a mapped task group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.exceptions import AEPApiError, AEPValidationError, is_retryable
from airflow_provider_aep.operators.base import AEPBaseOperator
from airflow_provider_aep.operators.catalog import AEPCreateDatasetOperator
from airflow_provider_aep.operators.conversion import XED_FULL_ACCEPT, AEPCreateMappingSetOperator, check_destinations
from airflow_provider_aep.operators.flow_service import (
    CREATED_KEY,
    AEPCreateBaseConnectionOperator,
    AEPCreateFlowOperator,
    AEPCreateSourceConnectionOperator,
    AEPCreateTargetConnectionOperator,
    AEPGetFlowSpecOperator,
)
from airflow_provider_aep.operators.schema_registry import (
    PROFILE_CLASS_ID,
    AEPCreateAdHocSchemaOperator,
    AEPCreateSchemaOperator,
    adhoc_class_title,
)
from airflow_provider_aep.operators.teardown import AEPDeleteResourcesOperator
from airflow_provider_aep.utils.defaults import DATA_LAKE_CONNECTION_SPEC_ID
from airflow_provider_aep.utils.source_columns import check_against_table, infer_source_fields, table_columns
from airflow_provider_aep.utils.validation import (
    normalize_mappings,
    optional_ids,
    require_text,
    require_variant,
    validate_pipeline_inputs,
)

if TYPE_CHECKING:
    from airflow_provider_aep.hooks.aep import AEPHook

GENERIC_ODATA_CONNECTION_SPEC_ID = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
PROFILE_FIELD_GROUPS = (
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
)

# JSON Schemas of build_protocols_pipeline's structured arguments, for the Params of a DAG's trigger form.
# Airflow 3's form edits an array as a JSON document only when its items are typed as objects (untyped, it
# is a list of text lines); the values are checked against the schemas before a run is created.
SOURCE_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": {"type": "string", "minLength": 1},
}
# None (JSON null) lets the pipeline infer the fields from the explored table.
OPTIONAL_SOURCE_FIELDS_SCHEMA: dict[str, Any] = {**SOURCE_FIELDS_SCHEMA, "type": ["object", "null"]}
MAPPING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": "string", "minLength": 1}
        for name in ("source", "destination", "sourceType", "sourceAttribute", "destinationXdmPath")
    },
    "anyOf": [{"required": ["source", "destination"]}, {"required": ["sourceAttribute", "destinationXdmPath"]}],
}
MAPPINGS_SCHEMA: dict[str, Any] = {"type": "array", "minItems": 1, "items": MAPPING_SCHEMA}


RESOURCE_SUFFIXES = {
    "adhoc_schema": "ad hoc schema",
    "dataset_base_connection": "dataset base connection",
    "base_connection": "base connection",
    "source_connection": "source connection",
    "target_schema": "target schema",
    "dataset": "dataset",
    "target_connection": "target connection",
    "mapping_set": "mapping set",
    "dataflow": "dataflow",
}


def pipeline_resource_names(name: str) -> dict[str, str]:
    """The name (or title) of each resource of the pipeline called ``name``."""
    prefix = require_text("name", name)
    return {key: f"{prefix} {suffix}" for key, suffix in RESOURCE_SUFFIXES.items()}


def find_pipeline_resources(hook: AEPHook, name: str) -> dict[str, list[str]]:
    """
    Ids of every resource of the pipeline called ``name`` that exists, keyed like the arguments of
    :class:`AEPDeleteResourcesOperator`, so a teardown can find what earlier runs created.
    """
    names = pipeline_resource_names(name)
    schemas = [*hook.find_schemas_by_title(names["target_schema"]), *hook.find_schemas_by_title(names["adhoc_schema"])]
    classes = hook.find_classes_by_title(adhoc_class_title(names["adhoc_schema"]))
    return {
        "flow_ids": [f["id"] for f in hook.find_flows_by_name(names["dataflow"])],
        "source_connection_ids": [c["id"] for c in hook.find_source_connections_by_name(names["source_connection"])],
        "target_connection_ids": [c["id"] for c in hook.find_target_connections_by_name(names["target_connection"])],
        "base_connection_ids": [
            c["id"]
            for key in ("base_connection", "dataset_base_connection")
            for c in hook.find_base_connections_by_name(names[key])
        ],
        "mapping_set_ids": [m["id"] for m in hook.find_mapping_sets_by_name(names["mapping_set"])],
        "dataset_ids": [d["id"] for d in hook.find_datasets_by_name(names["dataset"])],
        "schema_ids": [schema["$id"] for schema in schemas],
        "class_ids": [xdm_class["$id"] for xdm_class in classes],
    }


class AEPValidatePipelineOperator(AEPBaseOperator):
    """
    Check every input of a protocols pipeline before anything is created: the rules each operator applies
    to its own inputs, all at once (one line per problem), then the mappings' destinations against the
    target schema's class and field groups (read, never created).

    Takes the arguments of :func:`build_protocols_pipeline` that describe the pipeline.

    :return: the resource names (:func:`pipeline_resource_names`), each also pushed as an XCom of its key.
    """

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "name",
        "variant",
        "source_table",
        "source_fields",
        "mappings",
        "schedule_params",
        "odata_url",
        "delta_column",
        "field_group_ids",
        "flow_spec_name",
    )
    template_fields_renderers = {"source_fields": "json", "mappings": "json", "schedule_params": "json"}

    def __init__(
        self,
        *,
        name: Any,
        source_table: Any,
        mappings: Any,
        schedule_params: Any,
        odata_url: Any,
        source_fields: Any = None,
        delta_column: Any = None,
        variant: Any = "current",
        field_group_ids: Any = PROFILE_FIELD_GROUPS,
        flow_spec_name: Any = "CRMToAEP",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.source_table = source_table
        self.source_fields = source_fields
        self.mappings = mappings
        self.schedule_params = schedule_params
        self.odata_url = odata_url
        self.delta_column = delta_column
        self.variant = variant
        self.field_group_ids = field_group_ids
        self.flow_spec_name = flow_spec_name

    def execute(self, context: Any) -> dict[str, str]:
        mappings = validate_pipeline_inputs(
            name=self.name,
            variant=self.variant,
            source_table=self.source_table,
            source_fields=self.source_fields,
            mappings=self.mappings,
            schedule_params=self.schedule_params,
            odata_url=self.odata_url,
            delta_column=self.delta_column,
            field_group_ids=self.field_group_ids,
            flow_spec_name=self.flow_spec_name,
        )
        groups = [self.field_group_ids] if isinstance(self.field_group_ids, str) else list(self.field_group_ids or ())
        hook = self.hook
        documents = [
            hook.get_class(PROFILE_CLASS_ID, accept=XED_FULL_ACCEPT),
            *(hook.get_xdm_resource("fieldgroups", g, container=_container(g), accept=XED_FULL_ACCEPT) for g in groups),
        ]
        check_destinations(mappings, documents, "the target schema (its class and field groups)")
        names = pipeline_resource_names(self.name)
        for key, value in names.items():
            context["ti"].xcom_push(key=key, value=value)
        self.log.info("The pipeline's inputs are valid; its resources are named %r ...", names["dataflow"])
        return names


class AEPResolveSourceFieldsOperator(AEPBaseOperator):
    """
    Explore the pipeline's source table through its base connection, then either infer the ad hoc fields from
    its columns (``source_fields`` None; the type table of :mod:`~airflow_provider_aep.utils.source_columns`)
    or check every given field against them; either way every attribute mapping's source and the delta column
    too. Runs after the base connection (explore needs one) and before every other create. When the check fails
    and ``base_connection_created`` is True (the base connection task's ``created`` XCom), it deletes that base
    connection, so a wrong column leaves nothing behind.

    :return: the source fields, column name → XDM field type.
    """

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "base_connection_id",
        "base_connection_created",
        "source_table",
        "source_fields",
        "mappings",
        "delta_column",
    )
    template_fields_renderers = {"source_fields": "json", "mappings": "json"}

    def __init__(
        self,
        *,
        base_connection_id: Any,
        source_table: Any,
        source_fields: Any,
        mappings: Any,
        delta_column: Any = None,
        base_connection_created: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_connection_id = base_connection_id
        self.base_connection_created = base_connection_created
        self.source_table = source_table
        self.source_fields = source_fields
        self.mappings = mappings
        self.delta_column = delta_column

    def execute(self, context: Any) -> dict[str, str]:
        base_id = require_text("base_connection_id", self.base_connection_id)
        table = require_text("source_table", self.source_table)
        mappings = normalize_mappings(self.mappings)
        try:
            columns = table_columns(self.hook.explore(base_id, table), table)
            check_against_table(
                columns, table, source_fields=self.source_fields, mappings=mappings, delta_column=self.delta_column
            )
            if self.source_fields is not None:
                fields = {str(k): str(v) for k, v in dict(self.source_fields).items()}
            else:
                fields = infer_source_fields(columns, table)
        except (AEPValidationError, AEPApiError) as exc:
            self._settle_base_connection(base_id, exc)
            raise
        how = "given" if self.source_fields is not None else "inferred from its columns"
        self.log.info(
            "Source fields of table %r (%s): %s", table, how, ", ".join(f"{k} {v}" for k, v in fields.items())
        )
        return fields

    def _settle_base_connection(self, base_id: str, error: Exception) -> None:
        """After a failed check, delete the base connection when this run created it only to explore."""
        if self.base_connection_created is None:
            self.log.error(
                "Base connection %s is kept: without base_connection_created this task cannot tell whether "
                "this run created it",
                base_id,
            )
        elif self.base_connection_created is not True:
            self.log.error("This run created nothing: base connection %s existed before it and is kept", base_id)
        elif is_retryable(error):
            self.log.error(
                "Of this pipeline only the base connection %s exists (explore needs it; a retry reuses it)", base_id
            )
        else:
            try:
                self.hook.delete_base_connection(base_id)
            except AEPApiError as exc:
                self.log.error(
                    "Of this pipeline only the base connection %s exists: deleting it failed (%s); a re-run reuses it",
                    base_id,
                    exc,
                )
            else:
                self.log.error(
                    "Deleted base connection %s, which this run created only to explore the source: "
                    "nothing of this pipeline exists",
                    base_id,
                )


def _container(xdm_id: str) -> str:
    return "global" if xdm_id.startswith("https://ns.adobe.com/xdm/") else "tenant"


class AEPDeletePipelineOperator(AEPDeleteResourcesOperator):
    """
    Delete the ids given and every resource found by the names of the pipeline called ``name``
    (:func:`find_pipeline_resources`): the orphaned duplicates a lookup warned about too, dependents first.
    """

    template_fields: Sequence[str] = (*AEPDeleteResourcesOperator.template_fields, "name")

    def __init__(self, *, name: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name

    def execute(self, context: Any) -> dict[str, dict[str, list[str]]]:
        for arg, found in find_pipeline_resources(self.hook, self.name).items():
            setattr(self, arg, [*optional_ids(getattr(self, arg)), *found])
        return super().execute(context)


@dataclass
class ProtocolsPipeline:
    """The tasks' outputs: resource ids as XComArgs (``adhoc_schema_id`` and ``dataset_base_connection_id``
    resolve to None in the current variant), and the pipeline's ``name`` as given."""

    name: Any
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

    def teardown(self, task_id: str = "delete_pipeline", **kwargs: Any) -> AEPDeletePipelineOperator:
        """
        A task deleting every resource of the pipeline's names, duplicates included (already-gone resources
        count as done). It takes the created ids too, which keeps it downstream of every create.
        """
        return AEPDeletePipelineOperator(
            task_id=task_id,
            name=self.name,
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
    mappings: Any,
    schedule_params: Any,
    odata_url: Any,
    source_fields: Any = None,
    delta_column: Any = None,
    variant: Any = "current",
    field_group_ids: Any = PROFILE_FIELD_GROUPS,
    source_connection_spec_id: str = GENERIC_ODATA_CONNECTION_SPEC_ID,
    flow_spec_name: Any = "CRMToAEP",
    aep_conn_id: str = "aep_default",
    **operator_kwargs: Any,
) -> ProtocolsPipeline:
    """
    Add the provisioning tasks of the protocols tutorial to the current DAG or task group, after a
    ``validate_inputs`` task (:class:`AEPValidatePipelineOperator`) that checks them all before any create,
    and a ``source_fields`` task (:class:`AEPResolveSourceFieldsOperator`) that explores the source table
    through the base connection before any other create.

    :param name: prefix of every resource name (``"<name> source connection"`` …; see
        :func:`pipeline_resource_names`); make it unique per pipeline. May be an XComArg or a mapped argument.
    :param source_table: the table (current variant) or path (legacy variant) to ingest.
    :param source_fields: column name → XDM type of the source data; None (default) infers them from the
        explored table's columns. Either way the table is explored first, and a field, mapping source or delta
        column it lacks fails the pipeline before anything but the base connection is created.
    :param variant: ``"current"`` (tabular source, no dataset base connection) or ``"legacy"`` (the seed:
        ad hoc schema, ``parquet_xdm`` source, dataset base connection on the target); may be a template.
    :param operator_kwargs: passed to every operator (``aep_retry_limit``, ``if_exists``, ``pool`` …).
    """
    from airflow_provider_aep.version_compat import AirflowSkipException, task

    common = {"aep_conn_id": aep_conn_id, **operator_kwargs}
    lookup = {key: value for key, value in common.items() if key != "if_exists"}  # tasks that create nothing

    # Not @task.short_circuit: inside a mapped task group its skip reaches no downstream task (each mapped
    # pipeline would create the legacy resources). A skipped task is skipped everywhere, and the scheduler's
    # trigger rules skip its direct downstream, the legacy-only tasks, in each pipeline on its own.
    @task(task_id="is_legacy_variant")
    def is_legacy_variant(value: Any) -> None:
        """Succeeds for the legacy variant, is skipped (and so are the legacy-only tasks) for the current one."""
        if require_variant(value) == "current":
            raise AirflowSkipException("variant='current': no ad hoc schema, no dataset base connection")

    @task(task_id="source_spec", multiple_outputs=True, trigger_rule="none_failed")
    def source_spec(value: Any, table: Any, fields: Any, adhoc_schema_id: Any) -> dict[str, Any]:
        """The source connection's data and params for the chosen tutorial variant."""
        if value == "legacy":
            return {"data": {"format": "parquet_xdm", "schema": {"id": adhoc_schema_id}}, "params": {"path": table}}
        columns = [{"name": column, "type": xdm_type} for column, xdm_type in dict(fields).items()]
        return {"data": {"format": "tabular"}, "params": {"tableName": table, "columns": columns}}

    # First, before anything is created: every input, and the names computed at run time, so that
    # ``name`` may come from a template, an XCom or a mapping.
    validate = AEPValidatePipelineOperator(
        task_id="validate_inputs",
        name=name,
        variant=variant,
        source_table=source_table,
        source_fields=source_fields,
        mappings=mappings,
        schedule_params=schedule_params,
        odata_url=odata_url,
        delta_column=delta_column,
        field_group_ids=field_group_ids,
        flow_spec_name=flow_spec_name,
        **lookup,
    )
    names = validate.output
    base = AEPCreateBaseConnectionOperator(
        task_id="base_connection",
        name=names["base_connection"],
        connection_spec_id=source_connection_spec_id,
        auth={"specName": "Anonymous Authentication", "params": {"url": odata_url}},
        **common,
    )
    fields = AEPResolveSourceFieldsOperator(
        task_id="source_fields",
        base_connection_id=base.output,
        base_connection_created=base.output[CREATED_KEY],
        source_table=source_table,
        source_fields=source_fields,
        mappings=mappings,
        delta_column=delta_column,
        **lookup,
    )
    legacy = is_legacy_variant(variant)
    fields >> legacy
    adhoc = AEPCreateAdHocSchemaOperator(
        task_id="adhoc_schema", title=names["adhoc_schema"], fields=fields.output, **common
    )
    dataset_base = AEPCreateBaseConnectionOperator(
        task_id="dataset_base_connection",
        name=names["dataset_base_connection"],
        connection_spec_id=DATA_LAKE_CONNECTION_SPEC_ID,
        **common,
    )
    legacy >> [adhoc, dataset_base]

    spec = source_spec(variant, source_table, fields.output, adhoc.output)
    source = AEPCreateSourceConnectionOperator(
        task_id="source_connection",
        name=names["source_connection"],
        base_connection_id=base.output,
        connection_spec_id=source_connection_spec_id,
        data=spec["data"],
        source_params=spec["params"],
        **common,
    )
    target_schema = AEPCreateSchemaOperator(
        task_id="target_schema", title=names["target_schema"], field_group_ids=field_group_ids, **common
    )
    fields >> target_schema
    dataset = AEPCreateDatasetOperator(
        task_id="dataset", name=names["dataset"], schema_id=target_schema.output, **common
    )
    target = AEPCreateTargetConnectionOperator(
        task_id="target_connection",
        name=names["target_connection"],
        dataset_id=dataset.output,
        schema_id=target_schema.output,
        base_connection_id=dataset_base.output,
        trigger_rule="none_failed",
        **common,
    )
    dataset_base >> target
    mapping = AEPCreateMappingSetOperator(
        task_id="mapping_set", name=names["mapping_set"], schema_id=target_schema.output, mappings=mappings, **common
    )
    flow_spec = AEPGetFlowSpecOperator(task_id="flow_spec", name=flow_spec_name, **lookup)
    validate >> [flow_spec, spec.operator]
    copy_params = {"deltaColumn": {"name": delta_column}} if delta_column is not None else {}
    flow = AEPCreateFlowOperator(
        task_id="dataflow",
        name=names["dataflow"],
        flow_spec_id=flow_spec.output,
        source_connection_ids=[source.output],
        target_connection_ids=[target.output],
        transformations=[
            *([{"name": "Copy", "params": copy_params}] if copy_params else []),
            {
                "name": "Mapping",
                "params": {"mappingId": mapping.output, "mappingVersion": mapping.output["mapping_version"]},
            },
        ],
        schedule_params=schedule_params,
        trigger_rule="none_failed",
        **common,
    )
    return ProtocolsPipeline(
        name=name,
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
