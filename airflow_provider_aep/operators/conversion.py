"""Conversion (Data Prep) operators."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from airflow_provider_aep.operators.base import AEPGetOrCreateOperator, differ
from airflow_provider_aep.utils.validation import (
    check_destination_exists,
    normalize_mappings,
    problems_of,
    raise_problems,
    require_text,
)

MAPPING_SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"
XED_FULL_ACCEPT = "application/vnd.adobe.xed-full+json; version=1"


def check_destinations(mappings: list[dict[str, Any]], documents: list[Any], what: str) -> None:
    """Every mapping's destination is a field of the target schema, every missing one listed."""
    raise_problems(
        problems_of(*(partial(check_destination_exists, i, m, documents, what) for i, m in enumerate(mappings))),
        "Mappings to fields the target schema lacks",
    )


def invalid_mappings(mappings: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> list[str]:
    """One line per mapping Data Prep's validation failed (its verdicts come in the mappings' order)."""
    lines = []
    for index, (mapping, verdict) in enumerate(zip(mappings, verdicts, strict=False)):
        if str(verdict.get("status", "")).upper() != "FAILED":
            continue
        reasons = [str(e.get("exception") or e.get("message") or e) for e in verdict.get("errors") or []]
        lines.append(
            f"mappings[{index}] {mapping.get('source')!r} -> {mapping.get('destination')!r}: "
            + ("; ".join(reasons) or "failed validation")
        )
    return lines


def _mapping_pairs(mapping_set: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(sourceType, source, destination) of a mapping set, whichever vocabulary AEP echoed."""
    pairs = []
    for m in mapping_set.get("mappings") or []:
        source_type = str(m.get("sourceType", "ATTRIBUTE")).upper()
        if source_type not in ("ATTRIBUTE", "EXPRESSION", "STATIC"):
            source_type = "ATTRIBUTE"  # GET echoes "text/x.schema-path" for plain attributes
        pairs.append(
            (source_type, m.get("source", m.get("sourceAttribute")), m.get("destination", m.get("destinationXdmPath")))
        )
    return sorted(pairs)


def mapping_set_schema(mapping_set: dict[str, Any]) -> str | None:
    return ((mapping_set.get("outputSchema") or {}).get("schemaRef") or {}).get("id") or mapping_set.get("xdmSchema")


class AEPCreateMappingSetOperator(AEPGetOrCreateOperator):
    """
    Get or create a mapping set from source columns to target schema paths.

    :param name: mapping set name, used to find it again on re-runs.
    :param schema_id: the target schema ``$id``.
    :param mappings: list of ``{"source", "destination"[, "sourceType"]}`` (current form) or the
        tutorial's ``{"sourceAttribute", "destinationXdmPath"}``; the current form is sent. Before a create,
        each destination is checked against the schema, then the mappings with Data Prep's validation.
    :return: the mapping set id; its version is pushed as XCom ``mapping_version`` (a string, as the
        flow's Mapping transformation wants it).
    """

    template_fields: Sequence[str] = (*AEPGetOrCreateOperator.template_fields, "name", "schema_id", "mappings")
    template_fields_renderers = {"mappings": "json"}

    def __init__(self, *, name: str, schema_id: str, mappings: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.schema_id = schema_id
        self.mappings = mappings

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        schema_id = require_text("schema_id", self.schema_id)
        mappings = normalize_mappings(self.mappings)
        hook = self.hook
        created_version: dict[str, Any] = {}

        def differences(existing: dict[str, Any]) -> list[str]:
            full = hook.get_mapping_set(existing["id"])
            wanted = _mapping_pairs({"mappings": mappings})
            return differ("schema", mapping_set_schema(full), schema_id) + differ(
                "mappings", _mapping_pairs(full), wanted
            )

        def create() -> str:
            schema = hook.get_schema(schema_id, accept=XED_FULL_ACCEPT)
            check_destinations(mappings, [schema], f"schema {schema_id}")
            payload = {
                "name": name,
                "outputSchema": {"schemaRef": {"id": schema_id, "contentType": MAPPING_SCHEMA_CONTENT_TYPE}},
                "mappings": mappings,
            }
            raise_problems(
                invalid_mappings(mappings, hook.validate_mapping_set(payload)),
                f"Data Prep refuses mappings of mapping set {name!r}; nothing was created",
            )
            result = hook.create_mapping_set(payload)
            created_version["version"] = result.get("version", 0)
            return result["id"]

        mapping_set_id, created = self.get_or_create(
            kind="mapping set",
            name=name,
            find=lambda: hook.find_mapping_sets_by_name(name),
            create=create,
            differences=differences,
        )
        version = created_version["version"] if created else hook.get_mapping_set(mapping_set_id).get("version", 0)
        context["ti"].xcom_push(key="mapping_version", value=str(version))
        return mapping_set_id
