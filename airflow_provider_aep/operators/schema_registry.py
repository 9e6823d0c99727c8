"""Schema Registry operators: the ad hoc schema for raw source data and the target XDM schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.operators.base import AEPGetOrCreateOperator, differ
from airflow_provider_aep.utils.resources import oldest_first
from airflow_provider_aep.utils.validation import adhoc_field_properties, require_text

ADHOC_REF = "https://ns.adobe.com/xdm/data/adhoc"
PROFILE_CLASS_ID = "https://ns.adobe.com/xdm/context/profile"


def adhoc_fields_of(xdm_class: Mapping[str, Any]) -> dict[str, Any]:
    """
    The column properties of an ad hoc class as AEP returns it.

    AEP renames the ``_adhoc`` key of the create request to ``_<guid>``, and may answer with it under
    ``allOf`` or at the top level, so look for the one underscore-prefixed object in either place.
    """
    holders = [xdm_class, *[p for p in xdm_class.get("allOf") or [] if isinstance(p, Mapping)]]
    for holder in holders:
        for key, value in (holder.get("properties") or {}).items():
            if key.startswith("_") and isinstance(value, Mapping) and "properties" in value:
                return dict(value["properties"])
    return {}


def adhoc_class_title(schema_title: str) -> str:
    """The ad hoc class title used when none is given: titles must be unique across all XDM resources."""
    return f"{schema_title} class"


def _refs(schema: Mapping[str, Any]) -> set[str]:
    refs = {p["$ref"] for p in schema.get("allOf") or [] if isinstance(p, Mapping) and "$ref" in p}
    return refs | set(schema.get("meta:extends") or []) | set(schema.get("refs") or [])


class AEPCreateAdHocSchemaOperator(AEPGetOrCreateOperator):
    """
    Get or create an ad hoc XDM class holding the source columns, and a schema from it.

    The legacy protocols tutorial needs it so the source connection can describe raw data.

    :param title: schema title (titles are unique across all XDM resources of a sandbox).
    :param fields: column name → XDM type (``string``, ``integer``, ``number``, ``boolean``, ``date``,
        ``date-time``, ``long``, ``int``, ``short``, ``byte``, ``double``).
    :param class_title: title of the ad hoc class; default ``"<title> class"``.
    :return: the schema ``$id``; the class ``$id`` is pushed as XCom ``class_id``.
    """

    template_fields: Sequence[str] = (
        *AEPGetOrCreateOperator.template_fields,
        "title",
        "fields",
        "description",
        "class_title",
    )
    template_fields_renderers = {"fields": "json"}

    def __init__(
        self,
        *,
        title: str,
        fields: Mapping[str, str],
        description: str | None = None,
        class_title: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.fields = fields
        self.description = description
        self.class_title = class_title

    def execute(self, context: Any) -> str:
        title = require_text("title", self.title)
        class_title = require_text("class_title", self.class_title or adhoc_class_title(title))
        properties = adhoc_field_properties(self.fields)
        hook = self.hook

        def field_differences(xdm_class: Mapping[str, Any]) -> list[str]:
            have = {k: v.get("type") for k, v in adhoc_fields_of(xdm_class).items()}
            want = {k: v["type"] for k, v in properties.items()}
            return differ("columns (name: JSON type)", have, want)

        def class_differences(summary: dict[str, Any]) -> list[str]:
            return field_differences(hook.get_class(summary["$id"]))

        def create_class() -> str:
            payload = {
                "title": class_title,
                "description": self.description or f"Ad hoc class for {title}",
                "type": "object",
                "allOf": [
                    {"$ref": ADHOC_REF},
                    {"properties": {"_adhoc": {"type": "object", "properties": properties}}},
                ],
            }
            return hook.create_class(payload)["$id"]

        existing_schemas = hook.find_schemas_by_title(title)
        if existing_schemas:  # the class of the schema get_or_create reuses below (the oldest, if several)
            class_id = self._class_of(hook.get_schema(oldest_first(existing_schemas)[0]["$id"]))
        else:
            class_id, _ = self.get_or_create(
                kind="ad hoc class",
                name=class_title,
                find=lambda: hook.find_classes_by_title(class_title),
                create=create_class,
                differences=class_differences,
                id_key="$id",
            )
        context["ti"].xcom_push(key="class_id", value=class_id)

        def schema_differences(summary: dict[str, Any]) -> list[str]:
            schema = hook.get_schema(summary["$id"])
            diffs = differ("class", self._class_of(schema), class_id)
            return diffs or field_differences(hook.get_class(str(class_id)))

        def create_schema() -> str:
            payload = {
                "title": title,
                "description": self.description or f"Ad hoc schema for {title}",
                "type": "object",
                "allOf": [{"$ref": class_id}],
            }
            try:
                return hook.create_schema(payload)["$id"]
            except AEPApiError as exc:
                if not exc.is_conflict:
                    self.log.error(
                        "Ad hoc class %s exists; creating schema %r failed. A re-run reuses the class.", class_id, title
                    )
                raise

        schema_id, _ = self.get_or_create(
            kind="ad hoc schema",
            name=title,
            find=lambda: existing_schemas or hook.find_schemas_by_title(title),
            create=create_schema,
            differences=schema_differences,
            id_key="$id",
        )
        return schema_id

    @staticmethod
    def _class_of(schema: Mapping[str, Any]) -> str | None:
        if schema.get("meta:class"):
            return schema["meta:class"]
        refs = [p["$ref"] for p in schema.get("allOf") or [] if isinstance(p, Mapping) and "$ref" in p]
        return refs[0] if refs else None


class AEPCreateSchemaOperator(AEPGetOrCreateOperator):
    """
    Get or create a tenant XDM schema extending a class with field groups (the tutorial's target schema).

    :param title: schema title (unique across all XDM resources of the sandbox).
    :param class_id: the class ``$id``; XDM Individual Profile by default.
    :param field_group_ids: field group ``$id`` values to include (duplicates are dropped).
    :return: the schema ``$id``.
    """

    template_fields: Sequence[str] = (
        *AEPGetOrCreateOperator.template_fields,
        "title",
        "class_id",
        "field_group_ids",
        "description",
    )

    def __init__(
        self,
        *,
        title: str,
        class_id: str = PROFILE_CLASS_ID,
        field_group_ids: Sequence[str] = (),
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.class_id = class_id
        self.field_group_ids = field_group_ids
        self.description = description

    def execute(self, context: Any) -> str:
        title = require_text("title", self.title)
        class_id = require_text("class_id", self.class_id)
        groups = [require_text(f"field_group_ids[{i}]", g) for i, g in enumerate(self.field_group_ids or ())]
        groups = list(dict.fromkeys(groups))
        hook = self.hook

        def differences(summary: dict[str, Any]) -> list[str]:
            schema = hook.get_schema(summary["$id"])
            diffs = differ(
                "class", schema.get("meta:class") or AEPCreateAdHocSchemaOperator._class_of(schema), class_id
            )
            missing = [g for g in groups if g not in _refs(schema)]
            if missing:
                diffs.append(f"field groups {missing} are not in it")
            return diffs

        def create() -> str:
            payload = {
                "type": "object",
                "title": title,
                "description": self.description or title,
                "allOf": [{"$ref": class_id}, *({"$ref": g} for g in groups)],
                "meta:containerId": "tenant",
                "meta:resourceType": "schemas",
                "meta:xdmType": "object",
                "meta:class": class_id,
            }
            return hook.create_schema(payload)["$id"]

        schema_id, _ = self.get_or_create(
            kind="schema",
            name=title,
            find=lambda: hook.find_schemas_by_title(title),
            create=create,
            differences=differences,
            id_key="$id",
        )
        return schema_id
