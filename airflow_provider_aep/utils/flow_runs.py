"""
Flow runs: the one status table, run summaries and the success/failure decision.

Poke mode, the deferrable trigger and ``execute_complete`` all go through this module, so a run is judged
the same way whichever path watched it (aep-api.md §4.9).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

from airflow_provider_aep.exceptions import AEPFlowRunFailedError
from airflow_provider_aep.links.urls import dataflow_url

log = logging.getLogger(__name__)

# Keep XCom and trigger events small: a failed run can list thousands of record errors.
MAX_ERRORS = 20


class FlowRunStatus(str, Enum):
    """``metrics.statusSummary.status`` values seen in AEP docs (no complete enum is published)."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "inProgress"
    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL_SUCCESS = "partialSuccess"


class Outcome(str, Enum):
    """What a status means for whoever waits on the run."""

    WAIT = "wait"
    SUCCESS = "success"
    PARTIAL = "partialSuccess"
    FAILED = "failed"


STATUS_OUTCOMES: Mapping[str, Outcome] = MappingProxyType(
    {
        FlowRunStatus.SCHEDULED.value: Outcome.WAIT,
        FlowRunStatus.IN_PROGRESS.value: Outcome.WAIT,
        FlowRunStatus.SUCCESS.value: Outcome.SUCCESS,
        FlowRunStatus.PARTIAL_SUCCESS.value: Outcome.PARTIAL,
        FlowRunStatus.FAILED.value: Outcome.FAILED,
    }
)
# One doc example writes "Failed"; matching is case-insensitive so both spellings land in the table.
_OUTCOME_BY_FOLDED = {status.casefold(): outcome for status, outcome in STATUS_OUTCOMES.items()}
# Outcome -> the trigger event status it produces ("success" / "failed"; PARTIAL is judged by decide()).
EVENT_STATUS: Mapping[Outcome, str] = MappingProxyType(
    {Outcome.SUCCESS: "success", Outcome.PARTIAL: "success", Outcome.FAILED: "failed"}
)
EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})


def runs_query(flow_id: str, created_after_ms: int | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """GET /runs filters for one flow's runs, newest first, optionally created at or after a time."""
    params = [("property", f"flowId=={flow_id}"), ("orderby", "-createdAt")]
    if created_after_ms is not None:
        params.append(("property", f"createdAt>={int(created_after_ms)}"))
    if limit is not None:
        params.append(("limit", str(limit)))
    return params


def newest_first(runs: Any, created_after_ms: int | None = None) -> list[dict[str, Any]]:
    """Runs created at or after ``created_after_ms``, newest first, whatever order and filters AEP applied
    (the allowed ``orderby`` fields of /runs are undocumented)."""
    kept = [r for r in runs if created_after_ms is None or (r.get("createdAt") or 0) >= created_after_ms]
    return sorted(kept, key=lambda r: r.get("createdAt") or 0, reverse=True)


def run_status(run: Mapping[str, Any] | None) -> str | None:
    """The run's status (``metrics.statusSummary.status``); None for no run or no status yet."""
    status = _dig(run, "metrics", "statusSummary", "status")
    return status if isinstance(status, str) and status else None


def outcome_of(status: str | None, *, warned: set[str] | None = None, logger: logging.Logger | None = None) -> Outcome:
    """
    Look ``status`` up in the table. An unknown (or missing) status means WAIT.

    Pass the same ``warned`` set on every poll to log the unknown-status warning once per status, not once per poll.
    """
    outcome = _OUTCOME_BY_FOLDED.get((status or "").casefold())
    if outcome is not None:
        return outcome
    if warned is not None and status is not None and status not in warned:
        warned.add(status)
        (logger or log).warning(
            "AEP reported flow run status %r, which this provider does not know; treating it as still running. "
            "Known statuses: %s",
            status,
            ", ".join(STATUS_OUTCOMES),
        )
    return Outcome.WAIT


# ---------------------------------------------------------------- summaries
def run_errors(run: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """
    Error codes and messages of a run: the run's ``statusSummary.errors``, then each activity's
    ``statusSummary.errors`` and ``statusSummary.extensions.errors``, deduplicated, in that order.
    """
    found: list[dict[str, Any]] = []
    seen: set[tuple[Any, Any]] = set()

    def add(errors: Any, activity: str | None) -> None:
        if not isinstance(errors, list):
            return
        for err in errors:
            if not isinstance(err, Mapping):
                continue
            code, message = err.get("code"), err.get("message")
            if (code, message) in seen or (code is None and message is None):
                continue
            seen.add((code, message))
            entry: dict[str, Any] = {"code": code, "message": message}
            if activity:
                entry["activity"] = activity
            found.append(entry)

    add(_dig(run, "metrics", "statusSummary", "errors"), None)
    activities = (run or {}).get("activities") or (run or {}).get("activites") or []  # the spec misspells it
    for activity in activities if isinstance(activities, list) else []:
        if not isinstance(activity, Mapping):
            continue
        name = activity.get("name") if isinstance(activity.get("name"), str) else None
        add(_dig(activity, "statusSummary", "errors"), name)
        add(_dig(activity, "statusSummary", "extensions", "errors"), name)
    return found


def run_summary(run: Mapping[str, Any], flow_id: str | None, org_id: str, sandbox: str) -> dict[str, Any]:
    """A JSON-serializable summary of a run: what the sensor returns and the trigger's event carries."""
    flow_id = flow_id or run.get("flowId")
    run_id = run.get("id")
    started = _ms(_dig(run, "metrics", "durationSummary", "startedAtUTC"))
    completed = _ms(_dig(run, "metrics", "durationSummary", "completedAtUTC"))
    records = _dig(run, "metrics", "recordSummary") or {}
    files = _dig(run, "metrics", "fileSummary") or {}
    return {
        "run_id": run_id,
        "flow_id": flow_id,
        "status": run_status(run),
        "created_at": _iso(_ms(run.get("createdAt"))),
        "started_at": _iso(started),
        "completed_at": _iso(completed),
        "duration_seconds": round((completed - started) / 1000, 3) if started and completed else None,
        "records": {
            "input": _count(records, "inputRecordCount"),
            "output": _count(records, "outputRecordCount"),
            "failed": _count(records, "failedRecordCount"),
        },
        "files": {
            "input": _count(files, "inputFileCount"),
            "output": _count(files, "outputFileCount"),
            "failed": _count(files, "failedFileCount"),
        },
        "errors": run_errors(run)[:MAX_ERRORS],
        "dataflow_url": dataflow_url(org_id, sandbox, flow_id) if flow_id else None,
        "run_url": dataflow_url(org_id, sandbox, flow_id, run_id) if flow_id and run_id else None,
    }


def progress_line(summary: Mapping[str, Any], now: float) -> str:
    """One log line per poll: status, how long the run has been going, records so far."""
    elapsed = ""
    start = summary.get("started_at") or summary.get("created_at")
    if start:
        end = summary.get("completed_at")
        stop = datetime.fromisoformat(end).timestamp() if end else now
        elapsed = f", elapsed {format_duration(stop - datetime.fromisoformat(start).timestamp())}"
    records = summary.get("records") or {}
    counts = ", ".join(f"{k} {_fmt(records.get(k))}" for k in ("input", "output", "failed"))
    return (
        f"AEP flow run {summary.get('run_id')} of flow {summary.get('flow_id')}: "
        f"{summary.get('status') or 'no status yet'}{elapsed}; records {counts}"
    )


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


# ---------------------------------------------------------------- decision
def decide(
    summary: Mapping[str, Any],
    *,
    fail_on_partial_success: bool = False,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """
    Judge a finished run from its summary: return the summary (success, or partialSuccess with a warning)
    or raise :class:`AEPFlowRunFailedError` carrying the error codes, messages and run URL.

    Poke mode and ``execute_complete`` both end here, so both give the same value and the same errors.
    """
    logger = logger or log
    outcome = outcome_of(summary.get("status"))
    where = _where(summary)
    if outcome is Outcome.SUCCESS:
        return dict(summary)
    if outcome is Outcome.PARTIAL:
        details = _error_text(summary)
        if fail_on_partial_success:
            raise AEPFlowRunFailedError(
                f"{where} finished partialSuccess and fail_on_partial_success is set{details}. "
                f"See {summary.get('run_url')}",
                summary,
            )
        logger.warning(
            "%s finished partialSuccess: %s records failed%s. See %s",
            where,
            _fmt((summary.get("records") or {}).get("failed")),
            details,
            summary.get("run_url"),
        )
        return dict(summary)
    if outcome is Outcome.FAILED:
        raise AEPFlowRunFailedError(f"{where} failed{_error_text(summary)}. See {summary.get('run_url')}", summary)
    raise ValueError(f"{where} has not finished (status {summary.get('status')!r}); nothing to decide yet")


def timeout_message(flow_id: str, run_id: str | None, last_status: str | None, deadline: float, url: str | None) -> str:
    """The timeout text shared by poke mode and the trigger's ``timeout`` event; ``deadline`` is epoch seconds."""
    what = f"AEP flow run {run_id} of flow {flow_id}" if run_id else f"a run of AEP flow {flow_id}"
    if not run_id:
        state = "no matching run appeared"
    else:
        state = f"last status {last_status!r}" if last_status else "status not read yet"
    when = _iso(int(deadline * 1000))
    return f"Timed out waiting for {what}: the deadline {when} passed ({state}). See {url}"


def _where(summary: Mapping[str, Any]) -> str:
    return f"AEP flow run {summary.get('run_id')} of flow {summary.get('flow_id')}"


def _error_text(summary: Mapping[str, Any]) -> str:
    errors = summary.get("errors") or []
    if not errors:
        return ""
    parts = [f"[{e.get('code') or 'no code'}] {e.get('message') or ''}".strip() for e in errors]
    return ": " + "; ".join(parts)


# ---------------------------------------------------------------- helpers
def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _ms(value: Any) -> int | None:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    return ms if ms > 0 else None


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


def _count(obj: Any, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:  # -1 means unknown
        return None
    return int(value)


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"
