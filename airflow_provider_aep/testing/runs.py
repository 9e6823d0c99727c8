"""Flow runs: scheduling, lifecycle and synthetic metrics.

Nothing runs in the background. Runs are materialised lazily from the clock each
time a flow or run is read: every scheduled slot that is due becomes a run, and a
run's status is a pure function of "now":

    createdAt ── start delay ──> startedAtUTC ── duration ──> completedAtUTC
    scheduled                    inProgress                   success | failed | partialSuccess

Durations are emulated seconds divided by ``time_scale``; timestamps are real
epoch milliseconds. The final outcome is fixed the first time a run is seen
complete, from :meth:`AEPEmulator.set_flow_outcome` (or the emulator default).
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.testing.specs import FREQUENCY_SECONDS
from airflow_provider_aep.testing.state import FlowSchedule, RunRecord, SandboxState, new_uuid

if TYPE_CHECKING:  # pragma: no cover
    from airflow_provider_aep.testing.server import AEPEmulator
    from airflow_provider_aep.testing.source_catalog import SourceTable


class RunOutcome:
    """Final statuses a run can reach (``metrics.statusSummary.status``)."""

    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL_SUCCESS = "partialSuccess"
    ALL = (SUCCESS, FAILED, PARTIAL_SUCCESS)


# After a long idle period only the most recent slots become runs, not thousands.
MAX_CATCH_UP_RUNS = 20


def make_schedule(params: dict[str, Any], now: float, time_scale: float) -> FlowSchedule:
    """First run is due at max(startTime, now); ``interval`` is compressed by ``time_scale``."""
    start = float(params.get("startTime", now))
    frequency = params.get("frequency", "once")
    interval_real = None
    if frequency != "once":
        interval_real = int(params["interval"]) * FREQUENCY_SECONDS[frequency] / time_scale
    return FlowSchedule(next_due=max(start, now), interval_real=interval_real)


def materialise(emulator: AEPEmulator, sb: SandboxState, flow_id: str) -> None:
    """Create the runs whose scheduled time has passed."""
    flow = sb.flows.get(flow_id)
    sched = sb.flow_schedules.get(flow_id)
    if flow is None or sched is None or sched.next_due is None:
        return
    now = emulator.store.now()
    if flow.get("state") != "enabled":
        return
    end_time = flow.get("scheduleParams", {}).get("endTime")
    if sched.interval_real is None:
        if sched.next_due <= now:
            create_run(emulator, sb, flow_id, sched.next_due, window=(sched.next_due, sched.next_due))
            sched.next_due = None
        return
    step = sched.interval_real
    overdue = int((now - sched.next_due) // step) + 1 if sched.next_due <= now else 0
    if overdue > MAX_CATCH_UP_RUNS:
        sched.next_due += (overdue - MAX_CATCH_UP_RUNS) * step
    while sched.next_due is not None and sched.next_due <= now:
        if end_time is not None and sched.next_due > float(end_time):
            sched.next_due = None
            break
        create_run(emulator, sb, flow_id, sched.next_due, window=(sched.next_due - step, sched.next_due))
        sched.next_due += step


def materialise_all(emulator: AEPEmulator, sb: SandboxState) -> None:
    for flow_id in list(sb.flows):
        materialise(emulator, sb, flow_id)


def create_run(
    emulator: AEPEmulator,
    sb: SandboxState,
    flow_id: str,
    due: float,
    *,
    window: tuple[float, float],
    on_demand: bool = False,
    params: dict[str, Any] | None = None,
) -> RunRecord:
    scale = emulator.time_scale
    starts = due + emulator.run_start_delay / scale
    completes = starts + max(emulator.run_duration / scale, emulator.min_run_seconds)
    run_id = new_uuid()
    rec = RunRecord(
        id=run_id,
        flow_id=flow_id,
        created=due,
        starts=starts,
        completes=completes,
        seed=int(hashlib.sha256(run_id.encode()).hexdigest()[:12], 16),
        window_start=window[0],
        window_end=window[1],
        on_demand=on_demand,
        params=params,
    )
    sb.run_records[run_id] = rec
    sb.runs_by_flow.setdefault(flow_id, []).append(run_id)
    return rec


def status_of(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> str:
    now = emulator.store.now()
    if now < rec.starts:
        return "scheduled"
    if now < rec.completes:
        return "inProgress"
    if rec.outcome is None:
        flow = sb.flows.get(rec.flow_id)
        rec.outcome = emulator._next_outcome(rec.flow_id, flow.get("name") if flow else None)
    return rec.outcome


def _ms(t: float) -> int:
    return int(t * 1000)


def _etag(rec: RunRecord, status: str) -> str:
    digest = hashlib.sha256(f"{rec.id}:{status}".encode()).hexdigest()
    return f'"{digest[:8]}-0000-0200-0000-{int(rec.created):08x}0000"'


def source_table(emulator: AEPEmulator, sb: SandboxState, flow_id: str) -> SourceTable | None:
    """The explorable table a flow's source connection reads, if it is one of the emulator's."""
    for source_id in sb.flows.get(flow_id, {}).get("sourceConnectionIds", []):
        params = (sb.sourceConnections.get(source_id) or {}).get("params") or {}
        found = emulator.source_tables.get(params.get("tableName") or params.get("path") or "")
        if found is not None:
            return found
    return None


def render_run(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> dict[str, Any]:
    """The run object AEP returns from ``GET /runs/{id}`` (aep-api.md §4.9)."""
    now = emulator.store.now()
    status = status_of(emulator, sb, rec)
    rng = random.Random(rec.seed)
    total = rng.randint(500, 5000)
    table = source_table(emulator, sb, rec.flow_id)
    if table is not None:
        total = table.row_count
    row_bytes = rng.randint(150, 400)
    files = rng.randint(1, 3)
    batch_id = hashlib.sha256(f"batch:{rec.id}".encode()).hexdigest()[:26].upper()
    copy_id, promo_id = f"{rec.id}-copy", f"{rec.id}-promotion"
    flow = sb.flows.get(rec.flow_id, {})
    target_ids = flow.get("targetConnectionIds", [])
    source_ids = flow.get("sourceConnectionIds", [])

    if status == "scheduled":
        progress = 0.0
    elif status == "inProgress":
        progress = min(1.0, (now - rec.starts) / max(rec.completes - rec.starts, 1e-9))
    else:
        progress = 1.0

    read = int(total * progress)
    failed_records = 0
    errors: list[dict[str, Any]] = []
    if status == "failed":
        read = int(total * 0.4)
        written = 0
        errors = [
            {
                "code": "CONNECTOR-1001-500",
                "message": "Error occurred at the copy activity: failure copying data from the source "
                "(the OData service closed the connection).",
            }
        ]
    elif status == "partialSuccess":
        failed_records = max(1, int(total * rng.uniform(0.01, 0.05)))
        written = total - failed_records
        errors = [
            {
                "code": "INGEST-1212-400",
                "message": f"Encountered {failed_records} errors in the data. Successfully ingested "
                f"{written} rows. Review the associated diagnostics for more details.",
                "recordCount": failed_records,
            }
        ]
    else:
        written = int(read * 0.97) if status == "inProgress" else read

    record_summary = {
        "inputRecordCount": read,
        "createdRecordCount": written,
        "updatedRecordCount": 0,
        "outputRecordCount": written,
        "skippedRecordCount": 0,
        "failedRecordCount": failed_records,
        "deletedRecordCount": 0,
        "warningRecordCount": failed_records,
        "targetSummaries": [
            {"id": tid, "recordSummary": {"outputRecordCount": written, "failedRecordCount": failed_records}}
            for tid in target_ids
        ],
    }
    if status == "failed":
        size_summary = {"inputBytes": -1, "outputBytes": -1}
    else:
        size_summary = {"inputBytes": read * row_bytes, "outputBytes": int(written * row_bytes * 0.6)}
    done_files = (
        files if status in ("success", "partialSuccess") else (0 if status == "scheduled" else int(files * progress))
    )
    file_summary = {
        "inputFileCount": done_files,
        "outputFileCount": done_files if status != "failed" else 0,
        "skippedFileCount": 0,
        "failedFileCount": 1 if status == "failed" else 0,
        "activityRefs": [copy_id],
    }
    duration: dict[str, Any] = {}
    if status != "scheduled":
        duration["startedAtUTC"] = _ms(rec.starts)
    final = status in RunOutcome.ALL
    if final:
        duration["completedAtUTC"] = _ms(rec.completes)

    status_summary: dict[str, Any] = {
        "status": status,
        "activityRefs": [copy_id] + ([promo_id] if final and status != "failed" else []),
    }
    if errors:
        status_summary["errors"] = errors

    window_ext = {"windowStart": _ms(rec.window_start), "windowEnd": _ms(rec.window_end)}
    activities: list[dict[str, Any]] = []
    if status != "scheduled":
        copy_status = "failed" if status == "failed" else ("inProgress" if not final else "success")
        copy_activity: dict[str, Any] = {
            "id": copy_id,
            "name": "Copy Activity",
            "updatedAtUTC": _ms(min(now, rec.completes)),
            "durationSummary": {**duration, "extensions": window_ext},
            "sizeSummary": dict(size_summary),
            "recordSummary": {"inputRecordCount": read, "outputRecordCount": read if status != "failed" else 0},
            "fileSummary": {k: v for k, v in file_summary.items() if k != "activityRefs"},
            "statusSummary": {"status": copy_status},
            "sourceInfo": [{"id": sid, "type": "SourceConnection"} for sid in source_ids],
        }
        if status == "failed":
            copy_activity["statusSummary"]["errors"] = list(errors)
        activities.append(copy_activity)
    if final and status != "failed":
        promo_status: dict[str, Any] = {"status": status}
        if status == "partialSuccess":
            promo_status["errors"] = list(errors)
            promo_status["extensions"] = {
                "manifest": {
                    "failedRecords": f"/runs/{rec.id}/errors/failedRecords",
                    "sampleErrors": f"/runs/{rec.id}/errors/sample",
                },
                "errors": [
                    {
                        "code": "MAPPER-3700-400",
                        "message": "Mapping failed on some records.",
                        "recordCount": failed_records,
                    }
                ],
            }
        activities.append(
            {
                "id": promo_id,
                "name": "Promotion Activity",
                "updatedAtUTC": _ms(rec.completes),
                "durationSummary": {"startedAtUTC": _ms(rec.starts), "completedAtUTC": _ms(rec.completes)},
                "sizeSummary": dict(size_summary),
                "recordSummary": {k: v for k, v in record_summary.items() if k != "targetSummaries"},
                "fileSummary": {k: v for k, v in file_summary.items() if k != "activityRefs"},
                "statusSummary": promo_status,
                "targetInfo": [
                    {"id": tid, "type": "TargetConnection", "reference": {"type": "Batch", "ids": [batch_id]}}
                    for tid in target_ids
                ],
            }
        )

    updated = rec.created if status == "scheduled" else (rec.starts if not final else rec.completes)
    run: dict[str, Any] = {
        "id": rec.id,
        "createdAt": _ms(rec.created),
        "updatedAt": _ms(updated),
        "createdBy": emulator.user_id,
        "updatedBy": emulator.user_id,
        "createdClient": emulator.client_id,
        "updatedClient": emulator.client_id,
        "sandboxId": sb.id,
        "sandboxName": sb.name,
        "imsOrgId": emulator.org_id,
        "flowId": rec.flow_id,
        "flowSpec": dict(flow.get("flowSpec", {})),
        "providerRefId": hashlib.sha256(f"provider:{rec.id}".encode()).hexdigest()[:32],
        "etag": _etag(rec, status),
        "metrics": {
            "durationSummary": duration,
            "sizeSummary": size_summary,
            "recordSummary": record_summary,
            "fileSummary": file_summary,
            "statusSummary": status_summary,
        },
        "activities": activities,
    }
    if rec.params is not None:
        run["params"] = rec.params
    return run


def last_run_details(emulator: AEPEmulator, sb: SandboxState, flow_id: str) -> dict[str, Any] | None:
    records = (sb.run_records[rid] for rid in sb.runs_by_flow.get(flow_id, []))
    done = [r for r in records if status_of(emulator, sb, r) in RunOutcome.ALL]
    if not done:
        return None
    last = max(done, key=lambda r: r.completes)
    return {
        "id": last.id,
        "state": last.outcome,
        "startedAtUTC": _ms(last.starts),
        "completedAtUTC": _ms(last.completes),
    }
