"""In-memory state, partitioned by sandbox, plus id/etag helpers.

Every handler runs under :attr:`Store.lock`, so the dictionaries below need no
further locking. Resources are stored as the JSON objects AEP returns; fields
that only the emulator needs are kept in side tables (``flow_schedules``,
``run_records``) so a snapshot never leaks them.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Kinds reported by snapshot(), in pipeline order.
KINDS: tuple[str, ...] = (
    "classes",
    "schemas",
    "fieldgroups",
    "datasets",
    "connections",
    "sourceConnections",
    "targetConnections",
    "mappingSets",
    "flows",
    "runs",
)


@dataclass
class FlowSchedule:
    """Emulator-side scheduling state of one flow (times are real epoch seconds)."""

    next_due: float | None
    interval_real: float | None  # None for frequency "once"
    on_demand_delta_column: str | None = None


@dataclass
class RunRecord:
    """Emulator-side lifecycle of one run; rendered into the AEP run object on read."""

    id: str
    flow_id: str
    created: float  # when the run was scheduled (real epoch seconds)
    starts: float  # scheduled -> inProgress
    completes: float  # inProgress -> final status
    seed: int  # drives the synthetic metrics, so a run reads the same every time
    window_start: float
    window_end: float
    on_demand: bool = False
    outcome: str | None = None  # resolved lazily when the run completes
    failed_records: int | float | None = None  # asked for with the outcome: a count, or a share of the rows
    params: dict[str, Any] | None = None  # on-demand run parameters, echoed back
    retrigger_of: str | None = None  # the failed run this one re-runs (RE_TRIGGER)
    source_rows: int | None = None  # rows of the explorable table the flow reads, if it reads one


@dataclass
class SandboxState:
    name: str
    id: str
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    fieldgroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    sourceConnections: dict[str, dict[str, Any]] = field(default_factory=dict)
    targetConnections: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappingSets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id -> versions
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    flow_schedules: dict[str, FlowSchedule] = field(default_factory=dict)
    run_records: dict[str, RunRecord] = field(default_factory=dict)
    runs_by_flow: dict[str, list[str]] = field(default_factory=dict)  # index: flow id -> run ids, oldest first
    batch_runs: dict[str, str] = field(default_factory=dict)  # index: the run's target batch id -> run id
    recent: list[dict[str, Any]] = field(default_factory=list)  # XDM recentlyCreatedResources


class Store:
    """All sandboxes of one emulator, guarded by one re-entrant lock."""

    def __init__(self, sandboxes: tuple[str, ...] | list[str], clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._sandboxes: dict[str, SandboxState] = {
            name: SandboxState(name=name, id=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"sandbox.{name}")))
            for name in sandboxes
        }

    def has_sandbox(self, name: str) -> bool:
        return name in self._sandboxes

    def sandbox(self, name: str) -> SandboxState:
        return self._sandboxes[name]

    def sandboxes(self) -> list[SandboxState]:
        return list(self._sandboxes.values())

    def now(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def deep(obj: Any) -> Any:
    return copy.deepcopy(obj)


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_hex(n_bytes: int) -> str:
    return secrets.token_hex(n_bytes)


def new_flow_etag(now: float) -> str:
    """Flow Service etags look like ``"8f00753e-0000-0200-0000-5e8a547d0000"`` (quotes included)."""
    return f'"{secrets.token_hex(4)}-0000-0200-0000-{int(now):08x}0000"'


def normalise_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')
