"""Reading AEP's resource JSON: nested fields, ids, and which of several same-named resources to keep.

Free of the client core, so the operators that use them load no transport when a DAG is parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_aep.exceptions import AEPApiError

log = logging.getLogger(__name__)


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or None where a step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def unwrap_single_item(body: Any) -> Any:
    """Flow Service answers GET-by-id with the list envelope ``{"items": [obj]}``; unwrap it."""
    items = body.get("items") if isinstance(body, Mapping) else None
    return items[0] if items else body


def created_id(resource: Any) -> str:
    """The id from any create answer or lookup result: {"id"}, {"$id"}, {"items": [{"id"}]}."""
    if isinstance(resource, dict):
        if resource.get("items"):
            return created_id(resource["items"][0])
        for key in ("id", "$id"):
            if resource.get(key):
                return str(resource[key])
    raise AEPApiError(f"AEP answered a create without an id: {resource!r}")


def resource_id(resource: Mapping[str, Any]) -> str:
    return str(resource.get("id") or resource.get("$id"))


# Where each service puts a resource's creation time (epoch ms): Flow Service, Catalog, Data Prep, XDM.
_CREATED_KEYS = ("createdAt", "created", "createdDate", "repo:createdDate", "meta:createdDate")


def _age_key(resource: Mapping[str, Any]) -> tuple[float, str]:
    created = next((resource[k] for k in _CREATED_KEYS if isinstance(resource.get(k), int | float)), None)
    return (float("inf") if created is None else float(created), resource_id(resource))


def oldest_first(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resources by creation time, unknown ages last and ties by id: the same order on every run."""
    return sorted(resources, key=_age_key)


def oldest_match(
    matches: list[dict[str, Any]], kind: str, name: Any, logger: logging.Logger | Any = None
) -> dict[str, Any] | None:
    """
    The resource to use among those a lookup by name found: None for none; of several, the oldest (ties and
    unknown ages by id, so every run picks the same one), after a warning naming every id and the others as
    orphans to clean up.
    """
    if len(matches) <= 1:
        return matches[0] if matches else None
    ordered = oldest_first(matches)
    kept, orphans = resource_id(ordered[0]), [resource_id(m) for m in ordered[1:]]
    (logger or log).warning(
        "%d %ss named %r exist (%s); using the oldest, %s. The others are orphans to clean up "
        "(the pipeline's teardown deletes them all): %s",
        len(ordered),
        kind,
        name,
        ", ".join([kept, *orphans]),
        kept,
        ", ".join(orphans),
    )
    return ordered[0]
