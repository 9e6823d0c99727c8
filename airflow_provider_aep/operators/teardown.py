"""Deleting what a pipeline created, across services, in dependency order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aep.operators.base import AEPBaseOperator
from airflow_provider_aep.utils.validation import optional_ids

DELETED, ALREADY_GONE, LEFT_IN_PLACE = "deleted", "already_gone", "left_in_place"
# What a hook's delete answers: True (it existed), False (already gone) or, for a mapping set, None (still there).
_OUTCOMES = {True: DELETED, False: ALREADY_GONE, None: LEFT_IN_PLACE}

# Dependents before what they depend on: AEP refuses to delete a connection a flow still uses.
# (kind, argument, the hook's delete)
DELETE_ORDER: tuple[tuple[str, str, str], ...] = (
    ("flows", "flow_ids", "delete_flow"),
    ("source_connections", "source_connection_ids", "delete_source_connection"),
    ("target_connections", "target_connection_ids", "delete_target_connection"),
    ("base_connections", "base_connection_ids", "delete_base_connection"),
    ("mapping_sets", "mapping_set_ids", "delete_mapping_set"),
    ("datasets", "dataset_ids", "delete_dataset"),
    ("schemas", "schema_ids", "delete_schema"),
    ("classes", "class_ids", "delete_class"),
)
_LOG_PREFIX = {DELETED: "Deleted", ALREADY_GONE: "Already gone:", LEFT_IN_PLACE: "Left in place:"}


class AEPDeleteResourcesOperator(AEPBaseOperator):
    """
    Delete flows, connections, mapping sets, datasets, schemas and classes, dependents first.

    Each ``*_ids`` argument takes an id, a list of ids, or None (templated, so XComArgs of the create
    operators work). Resources already gone count as done, so the task is safe to re-run. Mapping sets may
    stay: Adobe documents no delete for them, so the teardown tries one and then checks; those still there
    are logged and listed under ``left_in_place``, never as deleted.

    :return: ``{"deleted": {kind: [ids]}, "already_gone": {kind: [ids]}, "left_in_place": {kind: [ids]}}``.
    """

    template_fields: Sequence[str] = (*AEPBaseOperator.template_fields, *(arg for _, arg, _ in DELETE_ORDER))

    def __init__(
        self,
        *,
        flow_ids: Any = None,
        source_connection_ids: Any = None,
        target_connection_ids: Any = None,
        base_connection_ids: Any = None,
        mapping_set_ids: Any = None,
        dataset_ids: Any = None,
        schema_ids: Any = None,
        class_ids: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_ids = flow_ids
        self.source_connection_ids = source_connection_ids
        self.target_connection_ids = target_connection_ids
        self.base_connection_ids = base_connection_ids
        self.mapping_set_ids = mapping_set_ids
        self.dataset_ids = dataset_ids
        self.schema_ids = schema_ids
        self.class_ids = class_ids

    def execute(self, context: Any) -> dict[str, dict[str, list[str]]]:
        summary: dict[str, dict[str, list[str]]] = {DELETED: {}, ALREADY_GONE: {}, LEFT_IN_PLACE: {}}
        for kind, arg, delete in DELETE_ORDER:
            for resource_id in dict.fromkeys(optional_ids(getattr(self, arg))):
                try:
                    outcome = _OUTCOMES[getattr(self.hook, delete)(resource_id)]
                except Exception:
                    self.log.error(
                        "Deleting %s %s failed; deleted so far: %s", kind, resource_id, summary[DELETED] or "nothing"
                    )
                    raise
                summary[outcome].setdefault(kind, []).append(resource_id)
                self.log.info("%s %s %s", _LOG_PREFIX[outcome], kind, resource_id)
        if summary[LEFT_IN_PLACE]:
            self.log.warning("Left in place (still in AEP): %s", summary[LEFT_IN_PLACE])
        return summary
