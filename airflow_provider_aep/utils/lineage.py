"""
What a dataflow reads and writes: its target datasets (for asset events) and its sources and column
mapping (for OpenLineage), read once from Flow Service and Data Prep; and the OpenLineage facets of a flow
or of one of its runs. OpenLineage is imported only when facets are built (the ``openlineage`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.assets.aep import create_asset, dataset_uri, openlineage_naming
from airflow_provider_aep.utils.expressions import fields_read
from airflow_provider_aep.utils.resources import dig

if TYPE_CHECKING:
    from airflow_provider_aep.hooks.operations import AEPOperations
    from airflow_provider_aep.utils.client_core import Flow

# Where a source connection names what it reads: the current tutorial's table, the legacy one's path.
SOURCE_NAME_PARAMS = ("tableName", "path")
SOURCE_NAMESPACE_SCHEME = "aep-source"
# A mapping's sourceType as sent (ATTRIBUTE, EXPRESSION, STATIC) or as AEP answers it (a media type).
_SOURCE_KINDS = {
    "ATTRIBUTE": "ATTRIBUTE",
    "TEXT/X.SCHEMA-PATH": "ATTRIBUTE",
    "EXPRESSION": "EXPRESSION",
    "TEXT/X.AEP-EXPRESSION": "EXPRESSION",
    "STATIC": "STATIC",
}
# mapping-set entry keys: the current names, then the legacy ones.
_MAPPING_KEYS = (("source", "destination"), ("sourceAttribute", "destinationXdmPath"))


@dataclass(frozen=True)
class ColumnMapping:
    source: str
    destination: str
    source_type: str  # ATTRIBUTE (a column copied), EXPRESSION (a Data Prep function of columns) or STATIC

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The source columns the destination is made from."""
        if self.source_type == "ATTRIBUTE":
            return (self.source,)
        return fields_read(self.source) if self.source_type == "EXPRESSION" else ()


@dataclass(frozen=True)
class FlowDatasets:
    """A dataflow's sources (OpenLineage ``(namespace, name)``), target dataset ids and column mapping."""

    flow_id: str
    dataset_ids: tuple[str, ...]
    sources: tuple[tuple[str, str], ...] = ()
    mapping: tuple[ColumnMapping, ...] = field(default=())


def read_flow_datasets(hook: AEPOperations, flow_id: str, *, with_sources: bool = True) -> Flow[FlowDatasets]:
    """The flow's target datasets (``params.dataSetId`` of its target connections) and, ``with_sources``,
    its sources (namespace from each source connection's spec and base connection) and mapping set."""
    flow = yield from hook.get_flow.flow(flow_id)
    datasets: list[str] = []
    for target_id in flow.get("targetConnectionIds") or []:
        target = yield from hook.get_target_connection.flow(target_id)
        dataset_id = dig(target, "params", "dataSetId")
        if isinstance(dataset_id, str) and dataset_id and dataset_id not in datasets:
            datasets.append(dataset_id)
    if not with_sources:
        return FlowDatasets(flow_id, tuple(datasets))
    sources = []
    for source_id in flow.get("sourceConnectionIds") or []:
        source = yield from hook.get_source_connection.flow(source_id)
        sources.append(source_naming(source))
    mapping: tuple[ColumnMapping, ...] = ()
    mapping_id = next(
        (
            dig(t, "params", "mappingId")
            for t in flow.get("transformations") or []
            if isinstance(t, Mapping) and t.get("name") == "Mapping"
        ),
        None,
    )
    if isinstance(mapping_id, str) and mapping_id:
        mapping = column_mapping((yield from hook.get_mapping_set.flow(mapping_id)))
    return FlowDatasets(flow_id, tuple(datasets), tuple(sources), mapping)


def source_naming(source: Mapping[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of a source connection: ``aep-source://<connection spec>/<base connection>``
    and the table or path it reads (its id when it names neither)."""
    spec = dig(source, "connectionSpec", "id") or "unknown-spec"
    base = source.get("baseConnectionId") or "no-base-connection"
    params = source.get("params") or {}
    name = next((params[k] for k in SOURCE_NAME_PARAMS if isinstance(params.get(k), str) and params[k]), None)
    return f"{SOURCE_NAMESPACE_SCHEME}://{spec}/{base}", name or str(source.get("id"))


def column_mapping(mapping_set: Mapping[str, Any]) -> tuple[ColumnMapping, ...]:
    found = []
    for entry in mapping_set.get("mappings") or []:
        if not isinstance(entry, Mapping):
            continue
        for source_key, destination_key in _MAPPING_KEYS:
            source, destination = entry.get(source_key), entry.get(destination_key)
            if isinstance(source, str) and isinstance(destination, str):
                kind = _SOURCE_KINDS.get(str(entry.get("sourceType") or "ATTRIBUTE").upper(), "EXPRESSION")
                found.append(ColumnMapping(source, destination, kind))
                break
    return tuple(found)


def dataset_assets(datasets: FlowDatasets, org_id: str, sandbox: str) -> list[Any]:
    """The ``aep`` Assets of the flow's target datasets."""
    return [create_asset(org_id=org_id, sandbox=sandbox, dataset_id=d) for d in datasets.dataset_ids]


def operator_lineage(
    datasets: FlowDatasets, org_id: str, sandbox: str, summary: Mapping[str, Any] | None = None
) -> Any:
    """
    The ``OperatorLineage`` of a flow (or of one run of it, ``summary``): inputs = its sources, outputs =
    its datasets with column lineage from the mapping set and, for a run, output statistics (rows, bytes)
    and the run as an external query.
    """
    from airflow.providers.common.compat.openlineage.facet import (
        ColumnLineageDatasetFacet,
        Dataset,
        ExternalQueryRunFacet,
        Fields,
        InputField,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs = [Dataset(namespace=ns, name=name) for ns, name in datasets.sources]
    columns = {}
    for m in datasets.mapping:
        copied = m.source_type == "ATTRIBUTE"  # else an expression of the columns it reads, or a constant
        columns[m.destination] = Fields(
            inputFields=[
                InputField(namespace=ns, name=name, field=column)
                for column in m.source_columns
                for ns, name in datasets.sources
            ],
            transformationType="IDENTITY" if copied else "TRANSFORMED",
            transformationDescription="" if copied else m.source,
        )
    facets: dict[str, Any] = {}
    if columns:
        facets["columnLineage"] = ColumnLineageDatasetFacet(fields=columns)
    output_facets: dict[str, Any] = {}
    run_facets: dict[str, Any] = {}
    if summary:
        rows = dig(summary, "records", "output")
        size = dig(summary, "bytes", "output")
        if rows is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows, size=size)
        if summary.get("run_id"):
            run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=str(summary["run_id"]), source="aep")
    outputs = []
    for dataset_id in datasets.dataset_ids:
        namespace, name = openlineage_naming(dataset_uri(org_id, sandbox, dataset_id))
        outputs.append(OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=output_facets))
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
