"""
Flow runs: the one status table, run summaries, the watch that polls a run, and the judgement of a finished one
(its status, the quality gate, and AEP's diagnostics of what went wrong).

Poke mode, the run operator's wait, the deferrable trigger and ``execute_complete`` all go through this
module, so a run is watched and judged the same way whichever path watched it (aep-api.md §4.9).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.exceptions import (
    AEPApiError,
    AEPFlowRunFailedError,
    AEPQualityGateError,
    AEPResourceNotFoundError,
    AEPValidationError,
    is_retryable,
)
from airflow_provider_aep.links.urls import RUN_URL_KEY, dataflow_url
from airflow_provider_aep.utils.resources import dig
from airflow_provider_aep.utils.timestamps import to_epoch_seconds

if TYPE_CHECKING:
    from airflow_provider_aep.hooks.operations import AEPOperations
    from airflow_provider_aep.utils.client_core import Flow
    from airflow_provider_aep.utils.connection import AEPConnectionConfig

log = logging.getLogger(__name__)

# Keep XCom and trigger events small: a failed run can list thousands of record errors.
MAX_ERRORS = 20
# The XCom key of a failed run's summary (with its diagnostics): a failed task has no return value.
RUN_SUMMARY_KEY = "run_summary"


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


class EventStatus(str, Enum):
    """The ``status`` of an :class:`~airflow_provider_aep.triggers.flow_run.AEPFlowRunTrigger` event."""

    SUCCESS = "success"  # success or partialSuccess: the task judges the summary as poke mode does
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"

    @classmethod
    def of(cls, outcome: Outcome) -> EventStatus:
        return cls.FAILED if outcome is Outcome.FAILED else cls.SUCCESS


def run_status(run: Mapping[str, Any] | None) -> str | None:
    """The run's status (``metrics.statusSummary.status``); None for no run or no status yet."""
    status = dig(run, "metrics", "statusSummary", "status")
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

    add(dig(run, "metrics", "statusSummary", "errors"), None)
    for activity in _activities(run):
        name = activity.get("name") if isinstance(activity.get("name"), str) else None
        add(dig(activity, "statusSummary", "errors"), name)
        add(dig(activity, "statusSummary", "extensions", "errors"), name)
    return found


def _activities(run: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    activities = (run or {}).get("activities") or (run or {}).get("activites") or []  # the spec misspells it
    return [a for a in activities if isinstance(a, Mapping)] if isinstance(activities, list) else []


def run_batch_ids(run: Mapping[str, Any] | None) -> list[str]:
    """The batches a run wrote to its targets: each activity's ``targetInfo[].reference`` of type ``Batch``."""
    ids: list[str] = []
    for activity in _activities(run):
        for target in activity.get("targetInfo") or []:
            reference = target.get("reference") if isinstance(target, Mapping) else None
            if isinstance(reference, Mapping) and str(reference.get("type", "")).casefold() == "batch":
                ids.extend(i for i in reference.get("ids") or [] if isinstance(i, str) and i not in ids)
    return ids


def run_window(run: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """
    A run's ingestion window in epoch seconds: its on-demand ``params`` (``windowStartTime``/``windowEndTime``),
    else its activities' ``durationSummary.extensions`` (``windowStart``/``windowEnd``); None when neither says.
    """
    candidates = [dig(run, "params", "windowStartTime"), dig(run, "params", "windowEndTime")]
    for activity in _activities(run):
        candidates += [
            dig(activity, "durationSummary", "extensions", "windowStart"),
            dig(activity, "durationSummary", "extensions", "windowEnd"),
        ]
    for start, end in zip(candidates[::2], candidates[1::2], strict=True):
        try:
            window = to_epoch_seconds(start), to_epoch_seconds(end)
        except AEPValidationError:
            continue
        if window[0] is not None and window[1] is not None:
            return window[0], window[1]
    return None


def run_summary(run: Mapping[str, Any], flow_id: str | None, org_id: str, sandbox: str) -> dict[str, Any]:
    """A JSON-serializable summary of a run: what the sensor returns and the trigger's event carries."""
    flow_id = flow_id or run.get("flowId")
    run_id = run.get("id")
    started = _ms(dig(run, "metrics", "durationSummary", "startedAtUTC"))
    completed = _ms(dig(run, "metrics", "durationSummary", "completedAtUTC"))
    records = dig(run, "metrics", "recordSummary") or {}
    files = dig(run, "metrics", "fileSummary") or {}
    size = dig(run, "metrics", "sizeSummary") or {}
    window = run_window(run)
    return {
        "run_id": run_id,
        "flow_id": flow_id,
        "status": run_status(run),
        "window_start": _iso(window[0] * 1000) if window else None,
        "window_end": _iso(window[1] * 1000) if window else None,
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
        "bytes": {"input": _count(size, "inputBytes"), "output": _count(size, "outputBytes")},
        "errors": run_errors(run)[:MAX_ERRORS],
        "batch_ids": run_batch_ids(run),
        "dataflow_url": dataflow_url(org_id, sandbox, flow_id) if flow_id else None,
        "run_url": dataflow_url(org_id, sandbox, flow_id, run_id) if flow_id and run_id else None,
    }


# What an asset event of a run carries (its extra, or the event trigger's payload): enough to act on
# without reading AEP again.
RUN_EVENT_KEYS = (
    "run_id",
    "flow_id",
    "status",
    "window_start",
    "window_end",
    "completed_at",
    "records",
    "files",
    "bytes",
    "batch_ids",
    "run_url",
    "dataflow_url",
)


def run_event_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run summary that an asset event of the run carries."""
    return {key: summary.get(key) for key in RUN_EVENT_KEYS}


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


# ---------------------------------------------------------------- judgement
@dataclass(frozen=True)
class QualityGate:
    """
    Limits on a finished run's failed records (``metrics.recordSummary.failedRecordCount``): AEP reports a run
    ``success`` even when it rejected rows. ``max_failed_ratio`` is failed / input records; None means no limit.
    """

    max_failed_records: int | None = None
    max_failed_ratio: float | None = None

    def __post_init__(self) -> None:
        count, ratio = self.max_failed_records, self.max_failed_ratio
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise AEPValidationError(f"max_failed_records={count!r}: must be a whole number >= 0, or None")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            raise AEPValidationError(
                f"max_failed_ratio={ratio!r}: must be a share of the input records from 0 to 1 (0.01 is 1%), or None"
            )

    def breach(self, summary: Mapping[str, Any], logger: Any = None) -> str | None:
        """What the run's counts break, in words with the counts and thresholds; None when it passes."""
        if self.max_failed_records is None and self.max_failed_ratio is None:
            return None
        records = summary.get("records") or {}
        failed, total = records.get("failed"), records.get("input")
        if failed is None:
            (logger or log).warning(
                "%s: AEP reported no failed-record count, so the quality gate cannot be checked", _where(summary)
            )
            return None
        broken = []
        if self.max_failed_records is not None and failed > self.max_failed_records:
            broken.append(f"max_failed_records={self.max_failed_records:,}")
        ratio = failed / total if total else (1.0 if failed else 0.0)
        if self.max_failed_ratio is not None and ratio > self.max_failed_ratio:
            broken.append(f"max_failed_ratio={self.max_failed_ratio:g} ({_percent(self.max_failed_ratio)})")
        if not broken:
            return None
        share = f" ({_percent(ratio)})" if total else ""
        return f"{_fmt(failed)} of {_fmt(total)} records failed{share}, more than {' and '.join(broken)}"


Diagnose = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def result_of_finished_run(
    summary: Mapping[str, Any],
    *,
    fail_on_partial_success: bool = False,
    gate: QualityGate | None = None,
    diagnose: Diagnose | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """
    The task's result for a finished run: its summary (success, or partialSuccess with a warning), or
    :class:`AEPFlowRunFailedError` carrying the error codes, messages and run URL. A run that breaks the
    quality ``gate`` fails whatever AEP's status says, in one line with the counts, thresholds and links.

    A failed run, a partial success or a gate failure is explained by ``diagnose(summary)`` (AEP's
    diagnostics, added to the summary as ``diagnostics`` and to the error or warning); a diagnose that
    fails is logged and never changes the outcome.

    Waiting in the worker and ``execute_complete`` both end here, so both give the same value and errors.
    """
    logger = logger or log
    outcome = outcome_of(summary.get("status"))
    where = _where(summary)
    see = f"See {summary.get('run_url')}"
    if outcome is Outcome.WAIT:
        raise ValueError(f"{where} has not finished (status {summary.get('status')!r}); nothing to judge yet")
    breach = None
    if outcome is Outcome.FAILED:
        problem: str | None = f"{where} failed{_error_text(summary)}"
    elif outcome is Outcome.PARTIAL and fail_on_partial_success:
        problem = f"{where} finished partialSuccess and fail_on_partial_success is set{_error_text(summary)}"
    else:
        breach = (gate or QualityGate()).breach(summary, logger)
        problem = breach and f"{where} finished {summary.get('status')} but failed the quality gate: {breach}"
        see = f"See {summary.get('run_url')} (dataflow: {summary.get('dataflow_url')})"
    if problem is None and outcome is Outcome.SUCCESS:
        return dict(summary)
    explained = _with_diagnostics(summary, diagnose, logger)
    details = diagnostics_text(explained.get("diagnostics"), with_errors=breach is not None)
    if problem:
        failure = AEPQualityGateError if breach else AEPFlowRunFailedError
        raise failure(f"{problem}. {see}{details}", explained)
    logger.warning(
        "%s finished partialSuccess: %s records failed%s. %s%s",
        where,
        _fmt((summary.get("records") or {}).get("failed")),
        _error_text(summary),
        see,
        details,
    )
    return explained


def _with_diagnostics(summary: Mapping[str, Any], diagnose: Diagnose | None, logger: Any) -> dict[str, Any]:
    if diagnose is None:
        return dict(summary)
    try:
        diagnostics = dict(diagnose(summary))
    except Exception as exc:  # the run's own outcome stands, whatever went wrong reading why
        logger.warning("Reading AEP's diagnostics of %s failed (%s); going on without them", _where(summary), exc)
        diagnostics = {"unavailable": [f"{type(exc).__name__}: {exc}"]}
    return {**summary, "diagnostics": diagnostics}


def diagnostics_text(diagnostics: Mapping[str, Any] | None, *, with_errors: bool = False) -> str:
    """The diagnostics as lines to append to an error or warning ("" for none)."""
    if not diagnostics:
        return ""
    lines = []
    errors_of_run = diagnostics.get("errors") or []
    if with_errors and errors_of_run:
        lines.append("Errors:" + _error_text({"errors": errors_of_run})[1:])
    said = {(e.get("code"), e.get("message")) for e in errors_of_run}
    for batch in diagnostics.get("batches") or []:
        records = batch.get("records") or {}
        counts = ", ".join(f"{k} {_fmt(records.get(k))}" for k in ("input", "output", "failed"))
        news = [e for e in batch.get("errors") or [] if (e.get("code"), e.get("message")) not in said]
        errors = _error_text({"errors": news})
        lines.append(f"Batch {batch.get('id')}: {batch.get('status') or 'status unknown'}; records {counts}{errors}")
    samples = diagnostics.get("row_errors") or []
    if samples:
        lines.append(f"Row errors ({len(samples)} shown):")
        lines += [
            f"  batch {e.get('batch_id')}: [{e.get('code') or 'no code'}] {e.get('message') or ''}" for e in samples
        ]
    lines += [f"Not available: {what}" for what in diagnostics.get("unavailable") or []]
    return "".join(f"\n{line}".rstrip() for line in lines)


def timeout_message(flow_id: str, run_id: str | None, last_status: str | None, deadline: float, url: str | None) -> str:
    """The timeout text shared by poke mode and the trigger's ``timeout`` event; ``deadline`` is epoch seconds."""
    what = f"AEP flow run {run_id} of flow {flow_id}" if run_id else f"a run of AEP flow {flow_id}"
    if not run_id:
        state = "no matching run appeared"
    else:
        state = f"last status {last_status!r}" if last_status else "status not read yet"
    return f"Timed out waiting for {what}: the deadline {readable_utc(deadline)} passed ({state}). See {url}"


def _where(summary: Mapping[str, Any]) -> str:
    return f"AEP flow run {summary.get('run_id')} of flow {summary.get('flow_id')}"


def _error_text(summary: Mapping[str, Any]) -> str:
    errors = summary.get("errors") or []
    if not errors:
        return ""
    parts = [f"[{e.get('code') or 'no code'}] {e.get('message') or ''}".strip() for e in errors]
    return ": " + "; ".join(parts).rstrip(".")  # the sentence goes on: ". See <link>"


# ---------------------------------------------------------------- helpers
def _ms(value: Any) -> int | None:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    return ms if ms > 0 else None


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


def readable_utc(epoch_seconds: float) -> str:
    """``2026-12-01 16:04:05 UTC``: how logs and messages show a point in time."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(obj: Any, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:  # -1 means unknown
        return None
    return int(value)


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _percent(share: float) -> str:
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


# ---------------------------------------------------------------- watching
def existing_flow(hook: AEPOperations, flow_id: str, consequence: str) -> Flow[dict[str, Any]]:
    """The flow; where AEP has none, :class:`AEPResourceNotFoundError` naming it and its ``consequence``
    (say, "nothing to wait for") rather than AEP's own answer."""
    try:
        return (yield from hook.get_flow.flow(flow_id))
    except AEPApiError as exc:
        if not exc.is_not_found:
            raise
        raise AEPResourceNotFoundError(
            f"AEP flow {flow_id} does not exist in sandbox {hook.config.sandbox!r}: {consequence}"
        ) from None


class FlowRunWatch:
    """
    Watches one flow run, one status read per :meth:`poll`, for every wait: the sensor's pokes, the run
    operator's wait and the trigger alike.

    Without ``run_id`` it watches the newest run created at or after ``created_after_ms`` and, once it has
    one, follows that run to its end. Retryable failures that outlast the hook's retries count as "still
    waiting", so a rate-limited or flaky API never ends the wait; the deadline still applies.

    It fails fast instead of waiting for nothing: a ``run_id`` of another flow is an error naming both, and
    a flow with no run yet is looked up once, a flow that does not exist being an error naming it.
    """

    def __init__(
        self,
        flow_id: str,
        *,
        run_id: str | None = None,
        created_after_ms: int | None = None,
        logger: Any = None,  # a logging.Logger, or the task's or trigger's own logger
    ) -> None:
        self.flow_id = flow_id
        self.run_id = run_id
        self.created_after_ms = created_after_ms
        self.log = logger or log
        self.summary: dict[str, Any] | None = None
        self._warned: set[str] = set()
        self._given_run = run_id is not None
        self._flow_exists = False  # a run of the flow, or the flow itself, has been seen

    def poll(self, hook: AEPOperations) -> Flow[Outcome]:
        """Read the run once (a flow: drive it with ``hook``), log a progress line, and say what it means."""
        run: dict[str, Any] | None
        try:
            if self.run_id is not None:
                run = yield from hook.get_run.flow(self.run_id)
            else:
                runs = yield from hook.list_runs.flow(self.flow_id, created_after_ms=self.created_after_ms)
                run = runs[0] if runs else None
                if run is None and not self._flow_exists:
                    yield from self._check_flow_exists(hook)
        except AEPApiError as exc:
            return self.read_failed(exc)
        return self.observe(run, hook.config)

    def read_failed(self, exc: AEPApiError) -> Outcome:
        """A read that failed after its retries: still waiting if it may succeed later, else the error."""
        if not is_retryable(exc):
            raise exc
        self.log.warning("Reading AEP flow run status failed after retries (%s); polling on", exc)
        return Outcome.WAIT

    def observe(self, run: dict[str, Any] | None, config: AEPConnectionConfig) -> Outcome:
        """What a read of the run means: a progress line, and the outcome from the status table."""
        if run is None:
            after = (
                ""
                if self.created_after_ms is None
                else f" created at or after {readable_utc(self.created_after_ms / 1000)}"
            )
            self.log.info("No run of AEP flow %s%s yet", self.flow_id, after)
            return Outcome.WAIT
        owner = run.get("flowId")
        if self._given_run and owner not in (None, self.flow_id):
            raise AEPValidationError(
                f"run_id={self.run_id!r} is a run of AEP flow {owner}, not of flow_id={self.flow_id!r}"
            )
        self._flow_exists = True
        self.summary = run_summary(run, self.flow_id, config.org_id, config.sandbox)
        if self.run_id is None:  # follow this run to its end, even if a newer one starts meanwhile
            self.run_id = self.summary["run_id"]
            self.log.info("Watching AEP flow run %s (%s)", self.run_id, self.summary["run_url"])
        self.log.info(progress_line(self.summary, time.time()))
        return outcome_of(self.summary["status"], warned=self._warned, logger=self.log)

    def _check_flow_exists(self, hook: AEPOperations) -> Flow[None]:
        yield from existing_flow(hook, self.flow_id, "nothing to wait for")
        self._flow_exists = True

    def timeout_message(self, deadline: float, dataflow_page: str) -> str:
        summary = self.summary or {}
        url = summary.get("run_url") or dataflow_page
        return timeout_message(self.flow_id, self.run_id, summary.get("status"), deadline, url)

    def event(self, status: EventStatus, message: str) -> dict[str, Any]:
        """The payload of the trigger's one event."""
        return {
            "status": status.value,
            "message": message,
            "flow_id": self.flow_id,
            "run_id": self.run_id,
            "summary": self.summary,
        }


# ---------------------------------------------------------------- new runs of a flow
def _created(run: Mapping[str, Any]) -> int:
    return _ms(run.get("createdAt")) or 0


@dataclass(frozen=True)
class RunWatermark:
    """
    Which finished runs of a flow have been reported, for the event trigger: every run created before
    ``since_ms`` is behind it, and ``seen`` holds the finished runs created at or after it. The mark moves up
    to the oldest run still going (or the newest run when none is), so ``seen`` stays as small as the runs
    in flight. JSON-native (:meth:`to_json`), so it can live in Airflow's asset state store.
    """

    since_ms: int | None = None
    seen: frozenset[str] = frozenset()

    @classmethod
    def baseline(cls, runs: Sequence[Mapping[str, Any]]) -> RunWatermark:
        """The mark of a first look at a flow: what has already finished counts as reported."""
        return cls().advance(runs)[1]

    def advance(self, runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], RunWatermark]:
        """
        ``runs``: the flow's runs created at or after ``since_ms``. Returns the finished runs not reported
        yet, oldest first, and the mark once they are.
        """
        if not runs:  # nothing listed (or a list that came back empty for a moment): nothing to forget
            return [], self
        finished = [dict(r) for r in runs if outcome_of(run_status(r)) is not Outcome.WAIT and r.get("id")]
        new = sorted((r for r in finished if r["id"] not in self.seen), key=_created)
        going = [_created(r) for r in runs if outcome_of(run_status(r)) is Outcome.WAIT]
        since = min(going) if going else max(_created(r) for r in runs)
        seen = frozenset(r["id"] for r in finished if _created(r) >= since)
        return new, RunWatermark(since, seen)

    def to_json(self) -> dict[str, Any]:
        return {"since_ms": self.since_ms, "seen": sorted(self.seen)}

    @classmethod
    def from_json(cls, value: Any) -> RunWatermark | None:
        """The mark stored by :meth:`to_json`; None for nothing stored (or something else)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("seen"), list):
            return None
        since = value.get("since_ms")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            return None
        return cls(since, frozenset(str(i) for i in value["seen"]))


def summary_of_event(event: Any, *, push: Any = None) -> dict[str, Any]:
    """
    The finished run's summary from the trigger's event, for the task to judge as waiting in the worker does;
    ``AirflowSensorTimeout`` on ``timeout`` and ``AirflowException`` on ``error``, as in the worker.
    ``push(key, value)`` records the run's link once it is known.
    """
    from airflow_provider_aep.version_compat import AirflowException, AirflowSensorTimeout

    statuses = {s.value for s in EventStatus}
    if not isinstance(event, Mapping) or event.get("status") not in statuses:
        raise AirflowException(f"AEPFlowRunTrigger sent an event this provider does not understand: {event!r}")
    summary = event.get("summary")
    if push and isinstance(summary, Mapping) and summary.get("run_url"):
        push(RUN_URL_KEY, summary["run_url"])
    status = event["status"]
    if status == EventStatus.TIMEOUT:
        raise AirflowSensorTimeout(event.get("message") or "Timed out waiting for the AEP flow run")
    if status == EventStatus.ERROR or not isinstance(summary, Mapping):
        raise AirflowException(
            f"Waiting for AEP flow run {event.get('run_id')} of flow {event.get('flow_id')} failed: {event.get('message')}"
        )
    return dict(summary)
