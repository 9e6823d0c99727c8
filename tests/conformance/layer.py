"""The conformance layer: every call answered by an emulator during the test run, judged against Adobe's specs.

A call *conforms* when the spec has its operation, its request is valid for it (or the emulator refused it
as AEP would), and the emulator's answer is valid for its status. It is *excused* when only known spec
defects (``airflow_provider_aep.testing.defects``) stand between it and conforming. Anything else is a
*mismatch*, reported with the operation and the reason.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_aep.testing import AEPEmulator, RequestRecord
from airflow_provider_aep.testing.openapi import SPEC_FILES, AdobeSpecs, Problem, Verdict, load
from airflow_provider_aep.testing.server import SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_AGENT = "airflow-provider-aep/"


def _beside(repo: Path) -> Path:
    return repo.parent / "shared" / "adobe-openapi"


def _cloned_from() -> Path | None:
    """The local repository this one was cloned from (CI runs a fresh clone elsewhere), if any."""
    found = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    )
    origin = Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else None
    return origin.resolve() if origin is not None and origin.is_dir() else None


def specs_dir() -> Path:
    """``$AEP_OPENAPI_DIR``, else ``../shared/adobe-openapi`` beside the repository or beside the one it was
    cloned from; a clear error if none exists."""
    chosen = os.environ.get("AEP_OPENAPI_DIR")
    origin = _cloned_from()
    candidates = [Path(chosen)] if chosen else [_beside(REPO_ROOT), *([_beside(origin)] if origin else [])]
    for directory in candidates:
        if (directory / SPEC_FILES["flowservice"][0]).is_file():
            return directory
    where = (
        f"AEP_OPENAPI_DIR={chosen}" if chosen else f"{' or '.join(map(str, candidates))} (AEP_OPENAPI_DIR is not set)"
    )
    raise FileNotFoundError(
        f"Adobe's OpenAPI specs were not found at {where}. The conformance tests need them: set AEP_OPENAPI_DIR "
        "to a directory holding Adobe's spec files (AdobeDocs/experience-platform-apis, "
        "static/swagger-specs/), or put them in ../shared/adobe-openapi beside the repository."
    )


@dataclass
class Judgement:
    operation: str  # "service operationId (METHOD /template)", or the emulator's route when the spec lacks it
    outcome: str  # "conforming", "excused", "mismatch" or "outside" (IMS: no spec)
    defects: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)

    def describe(self, record: RequestRecord) -> str:
        return f"{self.operation}: {record.method} {record.path} -> {record.status}: " + "; ".join(self.reasons)


def _operation_name(service: str, verdict: Verdict, record: RequestRecord) -> str:
    if verdict.operation is not None:
        return f"{service} {verdict.operation_id or '?'} ({verdict.operation})"
    emulator_service = next(s for s in SERVICES if s.name == service)
    relative = record.path[len(emulator_service.prefix) :] or "/"
    matching = [r for r in emulator_service.routes if r.pattern.match(relative)]
    route = next((r for r in matching if r.method == record.method), matching[0] if matching else None)
    template = route.template if route is not None else relative
    return f"{service} ({record.method} {template}: not in the spec)"


def _reasons(what: str, problems: list[Problem]) -> str:
    return f"{what}: " + "; ".join(map(str, problems))


def judge(specs: AdobeSpecs, record: RequestRecord, *, strict: bool = True) -> Judgement:
    """``strict``: the emulator was in strict mode, so it must refuse what the spec rejects."""
    service = record.service
    if service is None:  # no AEP API under this path: only a 404 is right
        ok = record.status == 404
        return Judgement("(no AEP service)", "conforming" if ok else "mismatch", reasons=[] if ok else ["not a 404"])
    if service not in SPEC_FILES:
        return Judgement(f"{service} {record.method} {record.path} (Adobe publishes no spec)", "outside")
    request = specs.check_request(service, record.method, record.path, record.query, record.headers, record.body)
    judgement = Judgement(_operation_name(service, request, record), "conforming", set(request.excused))
    from_provider = record.headers.get("User-Agent", "").startswith(PROVIDER_AGENT)
    refused = record.status >= 400
    if request.problems:
        if strict and not refused:
            judgement.reasons.append(
                _reasons(f"the emulator answered {record.status} to what the spec rejects", request.problems)
            )
        if from_provider:
            judgement.reasons.append(_reasons("the provider sent what the spec rejects", request.problems))
    elif record.stage == "validation":
        message = record.response_body.decode("utf-8", "replace")[:300]
        judgement.reasons.append(f"the emulator refused what the spec accepts: {message}")
    if request.operation is not None and record.fault != "drop_after_commit":
        answer = specs.check_response(
            service, record.method, record.path, record.status, record.response_headers, record.response_body
        )
        judgement.defects |= set(answer.excused)
        if answer.problems:
            judgement.reasons.append(
                _reasons(f"the emulator's {record.status} answer breaks the spec", answer.problems)
            )
    if judgement.reasons:
        judgement.outcome = "mismatch"
    elif judgement.defects:
        judgement.outcome = "excused"
    return judgement


@dataclass
class Tally:
    seen: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)


class ConformanceLayer:
    """Listens to every emulator of the process; judges what it heard when asked (in the test's thread)."""

    def __init__(self, specs: AdobeSpecs) -> None:
        self.specs = specs
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.mismatches: list[str] = []
        self.judging_seconds = 0.0  # the layer's own cost, reported with the summary
        self._pending: list[tuple[bool, RequestRecord]] = []
        self._lock = threading.Lock()

    def listen(self, emulator: AEPEmulator, record: RequestRecord) -> None:
        with self._lock:
            self._pending.append((emulator.strict, record))

    def start(self) -> None:
        AEPEmulator.add_listener(self.listen)

    def stop(self) -> None:
        AEPEmulator.remove_listener(self.listen)

    def judge_pending(self) -> list[str]:
        """Judge the calls heard since the last time; returns the new mismatches, described."""
        with self._lock:
            pending, self._pending = self._pending, []
        found = []
        started = time.perf_counter()
        for strict, record in pending:
            judgement = judge(self.specs, record, strict=strict)
            tally = self.tallies[judgement.operation]
            tally.seen += 1
            tally.outcomes[judgement.outcome] += 1
            tally.defects.update(judgement.defects)
            if judgement.outcome == "mismatch":
                found.append(judgement.describe(record))
        self.mismatches.extend(found)
        self.judging_seconds += time.perf_counter() - started
        return found

    def summary(self) -> str:
        rows = [("operation", "seen", "conforming", "excused", "mismatch", "defects")]
        for operation in sorted(self.tallies):
            tally = self.tallies[operation]
            defects = ", ".join(f"{d} x{n}" for d, n in sorted(tally.defects.items()))
            rows.append(
                (
                    operation,
                    str(tally.seen),
                    "n/a" if tally.outcomes["outside"] else str(tally.outcomes["conforming"]),
                    str(tally.outcomes["excused"]),
                    str(tally.outcomes["mismatch"]),
                    defects,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5] for row in rows]
        calls = sum(t.seen for t in self.tallies.values())
        lines.append(f"{calls} calls judged in {self.judging_seconds:.1f} s")
        return "\n".join(line.rstrip() for line in lines)


def load_specs() -> AdobeSpecs:
    return load(specs_dir())
