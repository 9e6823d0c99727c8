"""
Why a run went wrong, from AEP's error diagnostics: each target batch's status, counts and errors (Catalog
``GET /batches/{BATCH_ID}``) and row-error samples (Data Access ``GET /batches/{batchId}/meta?path=row_errors``,
then each listed file). A read that fails is logged and noted; it never hides the run's own outcome.

Samples carry the error code and message of each failed row, never the row's data (it may hold personal data).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.utils.resources import dig

if TYPE_CHECKING:
    from airflow_provider_aep.hooks.operations import AEPOperations
    from airflow_provider_aep.utils.client_core import Flow

log = logging.getLogger(__name__)

DEFAULT_DIAGNOSTICS_ROWS = 5
ROW_ERRORS = "row_errors"


def collect_diagnostics(
    hook: AEPOperations, summary: Mapping[str, Any], *, rows: int = DEFAULT_DIAGNOSTICS_ROWS, logger: Any = None
) -> Flow[dict[str, Any]]:
    """
    The diagnostics of a finished run (a flow: drive it with ``hook``): ``errors`` (the run's and activities'
    codes and messages), ``batch_ids``, ``batches`` (Catalog's view of each), ``row_errors`` (up to ``rows``
    samples ``{"batch_id", "file", "code", "message"}``) and ``unavailable`` (what could not be read, and why).
    """
    logger = logger or log
    batch_ids = list(summary.get("batch_ids") or [])
    found: dict[str, Any] = {
        "errors": list(summary.get("errors") or []),
        "batch_ids": batch_ids,
        "batches": [],
        "row_errors": [],
        "unavailable": [],
    }

    def unavailable(what: str, exc: AEPApiError) -> None:
        logger.warning("Could not read %s (%s); going on without it", what, exc)
        found["unavailable"].append(f"{what}: {exc}")

    for batch_id in batch_ids:
        try:
            found["batches"].append(batch_summary((yield from hook.get_batch.flow(batch_id))))
        except AEPApiError as exc:
            unavailable(f"Catalog batch {batch_id}", exc)
    for batch_id in batch_ids:
        wanted = rows - len(found["row_errors"])
        if wanted <= 0:
            break
        try:
            found["row_errors"] += yield from row_error_samples(hook, batch_id, wanted)
        except AEPApiError as exc:
            unavailable(f"the row errors of batch {batch_id}", exc)
    return found


def row_error_samples(hook: AEPOperations, batch_id: str, limit: int) -> Flow[list[dict[str, Any]]]:
    """Up to ``limit`` row errors of one batch, from the files its ``row_errors`` directory lists."""
    listing = yield from hook.get_batch_meta.flow(batch_id, ROW_ERRORS)
    entries = listing.get("data") if isinstance(listing, Mapping) else None
    names = [e["name"] for e in entries or [] if isinstance(e, Mapping) and isinstance(e.get("name"), str)]
    samples: list[dict[str, Any]] = []
    for name in names:
        if len(samples) >= limit:
            break
        content = yield from hook.get_batch_meta.flow(batch_id, f"{ROW_ERRORS}/{name}")
        for row in _rows(content):
            for error in row.get("_errors") or []:
                if isinstance(error, Mapping) and len(samples) < limit:
                    samples.append(
                        {"batch_id": batch_id, "file": name, "code": error.get("code"), "message": error.get("message")}
                    )
    return samples


def _rows(content: Any) -> list[Mapping[str, Any]]:
    """The rows of a row-errors file: one JSON object, a list of them, or JSON lines."""
    if isinstance(content, str):
        parsed = []
        for line in content.splitlines():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                continue
        content = parsed
    items = content if isinstance(content, list) else [content]
    return [row for row in items if isinstance(row, Mapping)]


def batch_summary(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A Catalog batch, short: id, status, record counts (``metrics`` as the guides show them, else the
    spec's top-level ``recordCount``/``failedRecordCount``) and errors."""
    metrics: Mapping[str, Any] = batch["metrics"] if isinstance(batch.get("metrics"), Mapping) else {}
    errors = []
    for error in batch.get("errors") or []:
        if isinstance(error, Mapping):
            entry = {"code": error.get("code"), "message": error.get("description") or error.get("message")}
            if isinstance(error.get("recordCount"), int):
                entry["records"] = error["recordCount"]
            errors.append(entry)
    return {
        "id": batch.get("id"),
        "status": batch.get("status"),
        "records": {
            "input": _first_count(metrics, batch, ("inputRecordCount", "recordCount")),
            "output": _first_count(metrics, batch, ("outputRecordCount",)),
            "failed": _first_count(metrics, batch, ("failedRecordCount",)),
        },
        "errors": errors,
    }


def _first_count(metrics: Mapping[str, Any], batch: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for source in (metrics, batch):
        for key in keys:
            value = dig(source, key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return None
