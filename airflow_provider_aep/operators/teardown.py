"""Deleting what a pipeline created, across services, in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.operators.base import AEPBaseOperator
from airflow_provider_aep.utils.validation import optional_ids

DELETED, ALREADY_GONE, LEFT_IN_PLACE = "deleted", "already_gone", "left_in_place"
# The answers to an undocumented DELETE that say nothing of the resource: no such call (405), or no such route.
_UNSUPPORTED_DELETE = (404, 405)


def _deleted_or_gone(hook_method: str) -> Callable[[AEPDeleteResourcesOperator, str], str]:
    """The hook's delete, which answers whether the resource existed."""
    return lambda op, resource_id: DELETED if getattr(op.hook, hook_method)(resource_id) else ALREADY_GONE


def _delete_mapping_set(op: AEPDeleteResourcesOperator, mapping_set_id: str) -> str:
    """
    Adobe documents no DELETE for mapping sets (Data Prep has GET and PUT only; the aepp SDK sends one): send it
    as a best effort, then a GET decides whether the mapping set is gone.
    """
    answered = None
    try:
        op.hook.request("DELETE", "conversion", f"/mappingSets/{quote(mapping_set_id, safe='')}")
    except AEPApiError as exc:
        if exc.status not in _UNSUPPORTED_DELETE:
            raise
        answered = exc.status
    try:
        op.hook.get_mapping_set(mapping_set_id)
    except AEPApiError as exc:
        if exc.is_not_found:
            return ALREADY_GONE if answered else DELETED
        raise
    op.log.warning(
        "Mapping set %s is still in AEP: Adobe documents no way to delete a mapping set (the DELETE was answered %s). "
        "It is left in place; an unused mapping set does no harm.",
        mapping_set_id,
        answered or "as a success",
    )
    return LEFT_IN_PLACE


# Dependents before what they depend on: AEP refuses to delete a connection a flow still uses.
# (kind, argument, how to delete one: the outcome, DELETED, ALREADY_GONE or LEFT_IN_PLACE)
DELETE_ORDER: tuple[tuple[str, str, Callable[[AEPDeleteResourcesOperator, str], str]], ...] = (
    ("flows", "flow_ids", _deleted_or_gone("delete_flow")),
    ("source_connections", "source_connection_ids", _deleted_or_gone("delete_source_connection")),
    ("target_connections", "target_connection_ids", _deleted_or_gone("delete_target_connection")),
    ("base_connections", "base_connection_ids", _deleted_or_gone("delete_base_connection")),
    ("mapping_sets", "mapping_set_ids", _delete_mapping_set),
    ("datasets", "dataset_ids", _deleted_or_gone("delete_dataset")),
    ("schemas", "schema_ids", _deleted_or_gone("delete_schema")),
    ("classes", "class_ids", _deleted_or_gone("delete_class")),
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
                    outcome = delete(self, resource_id)
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
