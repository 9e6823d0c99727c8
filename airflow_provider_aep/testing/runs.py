"""Flow runs: scheduling, lifecycle and synthetic metrics.

Nothing runs in the background. Runs are materialised lazily from the clock each
time a flow or run is read: every scheduled slot that is due becomes a run, and a
run's status is a pure function of "now":

    createdAt ── start delay ──> startedAtUTC ── duration ──> completedAtUTC
    scheduled                    inProgress                   success | failed | partialSuccess

Durations are emulated seconds divided by ``time_scale``; timestamps are real
epoch milliseconds. The final outcome (and how many rows it rejects) is fixed the
first time a run is seen complete, for the flow's completed runs in the order they completed,
from :meth:`AEPEmulator.set_flow_outcome` (or the emulator default).

A finished run that got past the copy wrote one target batch: Catalog serves it
(:func:`render_batch`) and Data Access its ``row_errors`` files (:func:`row_error_files`),
one rejected row per file, as the error-diagnostics guide's samples show them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
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
# Data Access lists at most 100 meta files per request; the emulator keeps the first 100 rejected rows.
MAX_ROW_ERROR_FILES = 100
# The row errors of the error-diagnostics guide: (file kind, code, message), alternating over rejected rows.
ROW_ERROR_KINDS = (
    ("parsing", "1401", "Row is corrupted and cannot be read, please fix and resend."),
    ("conversion", "1555", "A required field is either missing or has a value of null."),
)
# Catalog's batch error code for each kind (error-diagnostics guide).
_BATCH_ERROR_CODES = {"parsing": "INGEST-1401-400", "conversion": "INGEST-1555-400"}


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
    retrigger_of: str | None = None,
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
        retrigger_of=retrigger_of,
    )
    table = source_table(emulator, sb, flow_id)
    rec.source_rows = table.row_count if table is not None else None
    sb.run_records[run_id] = rec
    sb.runs_by_flow.setdefault(flow_id, []).append(run_id)
    sb.batch_runs[batch_id_of(rec)] = run_id
    return rec


def status_of(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> str:
    now = emulator.store.now()
    if now < rec.starts:
        return "scheduled"
    if now < rec.completes:
        return "inProgress"
    if rec.outcome is None:
        _settle_outcomes(emulator, sb, rec.flow_id, now)
    assert rec.outcome is not None
    return rec.outcome


def _settle_outcomes(emulator: AEPEmulator, sb: SandboxState, flow_id: str, now: float) -> None:
    """Give the flow's completed runs their outcomes in the order they completed, not the order they are read.

    Otherwise which of two runs that completed together takes the queued "failed" depends on which a client
    happened to read first. Every read materialises the flow's due runs before it judges one (none is created
    here: callers may be iterating over the runs).
    """
    flow = sb.flows.get(flow_id)
    name = flow.get("name") if flow else None
    records = (sb.run_records[run_id] for run_id in sb.runs_by_flow.get(flow_id, ()))
    for done in sorted((r for r in records if r.outcome is None and r.completes <= now), key=lambda r: r.completes):
        done.outcome, done.failed_records = emulator._next_outcome(flow_id, name)


@dataclass(frozen=True)
class _Shape:
    """A run's synthetic size, drawn from its seed: the same on every read."""

    total: int
    row_bytes: int
    files: int
    partial_share: float


def _shape(rec: RunRecord) -> _Shape:
    rng = random.Random(rec.seed)
    total = rng.randint(500, 5000)
    if rec.source_rows is not None:  # the run reads one of the emulator's explorable tables: its rows
        total = rec.source_rows
    return _Shape(total, rng.randint(150, 400), rng.randint(1, 3), rng.uniform(0.01, 0.05))


def rejected_rows(rec: RunRecord) -> int | None:
    """Rows a finished run rejected; None for a failed run that never got past the copy (no batch)."""
    shape, asked = _shape(rec), rec.failed_records
    if asked is None:
        return {RunOutcome.SUCCESS: 0, RunOutcome.PARTIAL_SUCCESS: max(1, int(shape.total * shape.partial_share))}.get(
            rec.outcome or ""
        )
    count = max(1, round(shape.total * asked)) if isinstance(asked, float) and asked > 0 else int(asked)
    return min(count, shape.total)


def batch_id_of(rec: RunRecord) -> str:
    return hashlib.sha256(f"batch:{rec.id}".encode()).hexdigest()[:26].upper()


def _rejected_text(rejected: int, written: int, failed: bool) -> str:
    if failed:
        return (
            f"Encountered {rejected} errors in the data, more than the flow's partial ingestion threshold allows: "
            "the batch failed and no rows were ingested. Review the associated diagnostics for more details."
        )
    return (
        f"Encountered {rejected} errors in the data. Successfully ingested {written} rows. "
        "Review the associated diagnostics for more details."
    )


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
    shape = _shape(rec)
    total, row_bytes, files = shape.total, shape.row_bytes, shape.files
    batch_id = batch_id_of(rec)
    copy_id, promo_id = f"{rec.id}-copy", f"{rec.id}-promotion"
    flow = sb.flows.get(rec.flow_id, {})
    target_ids = flow.get("targetConnectionIds", [])
    source_ids = flow.get("sourceConnectionIds", [])
    final = status in RunOutcome.ALL
    rejected = rejected_rows(rec) if final else 0
    copy_failed = status == RunOutcome.FAILED and rejected is None
    promoted = final and not copy_failed  # the run wrote a batch

    if status == "scheduled":
        progress = 0.0
    elif status == "inProgress":
        progress = min(1.0, (now - rec.starts) / max(rec.completes - rec.starts, 1e-9))
    else:
        progress = 1.0

    read = int(total * progress)
    failed_records = 0
    errors: list[dict[str, Any]] = []
    if copy_failed:
        read = int(total * 0.4)
        written = 0
        errors = [
            {
                "code": "CONNECTOR-1001-500",
                "message": "Error occurred at the copy activity: failure copying data from the source "
                "(the OData service closed the connection).",
            }
        ]
    elif final:
        failed_records = rejected or 0
        written = 0 if status == RunOutcome.FAILED else total - failed_records
        if failed_records:
            errors = [
                {
                    "code": "INGEST-1212-400",
                    "message": _rejected_text(failed_records, written, status == RunOutcome.FAILED),
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
    if copy_failed:
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
    if final:
        duration["completedAtUTC"] = _ms(rec.completes)

    status_summary: dict[str, Any] = {
        "status": status,
        "activityRefs": [copy_id] + ([promo_id] if promoted else []),
    }
    if errors:
        status_summary["errors"] = errors

    window_ext = {"windowStart": _ms(rec.window_start), "windowEnd": _ms(rec.window_end)}
    activities: list[dict[str, Any]] = []
    if status != "scheduled":
        copy_status = "failed" if copy_failed else ("inProgress" if not final else "success")
        copy_activity: dict[str, Any] = {
            "id": copy_id,
            "name": "Copy Activity",
            "updatedAtUTC": _ms(min(now, rec.completes)),
            "durationSummary": {**duration, "extensions": window_ext},
            "sizeSummary": dict(size_summary),
            "recordSummary": {"inputRecordCount": read, "outputRecordCount": 0 if copy_failed else read},
            "fileSummary": {k: v for k, v in file_summary.items() if k != "activityRefs"},
            "statusSummary": {"status": copy_status},
            "sourceInfo": [{"id": sid, "type": "SourceConnection"} for sid in source_ids],
        }
        if copy_failed:
            copy_activity["statusSummary"]["errors"] = list(errors)
        activities.append(copy_activity)
    if promoted:
        promo_status: dict[str, Any] = {"status": status}
        if failed_records:
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


def _wrote_batch(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> bool:
    status = status_of(emulator, sb, rec)
    return status in RunOutcome.ALL and rejected_rows(rec) is not None


def render_batch(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> dict[str, Any] | None:
    """The run's target batch as Catalog's ``GET /batches/{id}`` shows it; None before the run wrote one."""
    if not _wrote_batch(emulator, sb, rec):
        return None
    run = render_run(emulator, sb, rec)
    records = run["metrics"]["recordSummary"]
    rejected = records["failedRecordCount"]
    status = "failed" if run["metrics"]["statusSummary"]["status"] == RunOutcome.FAILED else "success"
    errors = [
        {"code": e["code"], "description": e["message"]} for e in run["metrics"]["statusSummary"].get("errors", [])
    ]
    for index, (kind, _, message) in enumerate(ROW_ERROR_KINDS):
        count = (rejected + len(ROW_ERROR_KINDS) - 1 - index) // len(ROW_ERROR_KINDS)
        if count:
            errors.append({"code": _BATCH_ERROR_CODES[kind], "description": message, "recordCount": count})
    flow = sb.flows.get(rec.flow_id, {})
    datasets = [
        sb.targetConnections[t].get("params", {}).get("dataSetId")
        for t in flow.get("targetConnectionIds", [])
        if t in sb.targetConnections
    ]
    batch: dict[str, Any] = {
        "imsOrg": emulator.org_id,
        "created": _ms(rec.starts),
        "createdClient": emulator.client_id,
        "createdUser": emulator.user_id,
        "updatedUser": emulator.user_id,
        "updated": _ms(rec.completes),
        "externalId": batch_id_of(rec),
        "started": _ms(rec.starts),
        "completed": _ms(rec.completes),
        "status": status,
        "recordCount": records["inputRecordCount"],
        "failedRecordCount": rejected,
        "metrics": {
            "inputRecordCount": records["inputRecordCount"],
            "outputRecordCount": records["outputRecordCount"],
            "failedRecordCount": rejected,
        },
        "relatedObjects": [{"type": "dataSet", "id": d} for d in datasets if d],
        "inputFormat": {"format": "parquet"},
        "version": "1.0.0",
    }
    if errors:
        batch["errors"] = errors
    return batch


def row_error_files(emulator: AEPEmulator, sb: SandboxState, rec: RunRecord) -> dict[str, dict[str, Any]]:
    """The batch's ``row_errors`` files, name -> content: one rejected row each, the first 100 rows."""
    if not _wrote_batch(emulator, sb, rec):
        return {}
    shape = _shape(rec)
    files: dict[str, dict[str, Any]] = {}
    for row in range(min(rejected_rows(rec) or 0, MAX_ROW_ERROR_FILES)):
        kind, code, message = ROW_ERROR_KINDS[row % len(ROW_ERROR_KINDS)]
        content: dict[str, Any] = {
            "_errors": [{"code": code, "message": message}],
            "_filename": f"part-{row % shape.files:05d}.parquet",
        }
        if kind == "parsing":
            content["_corrupt_record"] = f'{{"OrderID": {row}, "OrderDate": '
        files[f"{kind}_errors_{row // len(ROW_ERROR_KINDS)}.json"] = content
    return files


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
