"""Catalog Service operators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aep.operators.base import AEPDatasetOutletOperator, AEPGetOrCreateOperator, differ
from airflow_provider_aep.utils.validation import require_text

# The content type the protocols tutorial pins the dataset's schema reference to.
DATASET_SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed-full-notext+json; version=1"


class AEPCreateDatasetOperator(AEPDatasetOutletOperator, AEPGetOrCreateOperator):
    """
    Get or create a dataset on an XDM schema (``POST /dataSets?requestDataSource=true``).

    :param name: dataset name; an existing dataset of that name is reused only if it is on ``schema_id``.
    :param schema_id: the schema ``$id``.
    :param asset_alias: the ``AssetAlias`` that gets the dataset's ``aep`` Asset on success (see
        :class:`~airflow_provider_aep.operators.base.AEPDatasetOutletOperator`).
    :return: the dataset id.
    """

    template_fields: Sequence[str] = (*AEPGetOrCreateOperator.template_fields, "name", "schema_id", "description")

    def __init__(self, *, name: str, schema_id: str, description: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.schema_id = schema_id
        self.description = description

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        schema_id = require_text("schema_id", self.schema_id)
        hook = self.hook

        def create() -> str:
            payload: dict[str, Any] = {
                "name": name,
                "schemaRef": {"id": schema_id, "contentType": DATASET_SCHEMA_CONTENT_TYPE},
            }
            if self.description:
                payload["description"] = self.description
            return hook.create_dataset(payload)

        dataset_id, created = self.get_or_create(
            kind="dataset",
            name=name,
            find=lambda: hook.find_datasets_by_name(name),
            create=create,
            differences=lambda d: differ("schema", (d.get("schemaRef") or {}).get("id"), schema_id),
        )
        self.emit_dataset_events(context, [dataset_id], {"dataset_id": dataset_id, "name": name, "created": created})
        return dataset_id
