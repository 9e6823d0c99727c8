"""
The provider on a distributed Airflow 3 (``make test-distributed``): the CeleryExecutor on PostgreSQL and
Redis, two Celery workers, two triggerers, the emulator; processes are SIGKILLed mid-run.

1. ``aep_multi_source_ingestion`` runs 20 mapped pipelines, triggered through the REST API. The emulator
   holds back the answers to the creates it commits; once every create task running has sent its create,
   one Celery worker is SIGKILLed with everything it runs. Airflow retries those tasks, which must find and
   reuse what their killed try created.
2. The emulator's clock is held, so every sensor stays deferred. ``aep_distributed_deadline`` adds a sensor
   that can only time out; the triggerer running its trigger is SIGKILLed two seconds before its deadline.
   The other triggerer takes every trigger over; the deadline passes during the takeover and the timeout
   must still come within one poll interval of it. Then the clock is released and every other sensor
   succeeds.
3. The run is repeated: everything is reused, nothing is created.

Throughout: each AEP resource exists exactly once, each trigger fires exactly one event. The figures are
printed at the end. Bounded in time; every process is stopped by PID, pass or fail, and the throwaway
directory removed (``AEP_DISTRIBUTED_KEEP=1`` keeps it, with every log, for a post-mortem).

Only ``make test-distributed`` runs this (it needs the Celery provider, PostgreSQL and Redis): ``make test``
does not collect it, its name not starting with ``test_``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from cryptography.fernet import Fernet

from airflow_provider_aep.pipelines import pipeline_resource_names
from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.source_catalog import table as source_table
from tests.airflow_stack import AirflowApi, HeldClock
from tests.conftest import LEGACY_ONLY_TASKS, ONE_CURRENT_PIPELINE, PIPELINE_KINDS
from tests.distributed.dags import aep_distributed_deadline as deadline_dag
from tests.distributed.deployment import CeleryDeployment
from tests.distributed.services import ensure_debian_packages

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = (*sorted((REPO / "example_dags").glob("*.py")), Path(deadline_dag.__file__))
MULTI = "aep_multi_source_ingestion"
PIPELINES = 20
GROUP = "ingest_source"
SENSOR = f"{GROUP}.wait_for_first_run"
# The create tasks of one pipeline (current variant) and the kind of resource each leaves in the emulator.
CREATE_TASKS = {
    f"{GROUP}.base_connection": "connections",
    f"{GROUP}.source_connection": "sourceConnections",
    f"{GROUP}.target_schema": "schemas",
    f"{GROUP}.dataset": "datasets",
    f"{GROUP}.target_connection": "targetConnections",
    f"{GROUP}.mapping_set": "mappingSets",
    f"{GROUP}.dataflow": "flows",
}

DEADLINE_SECONDS = 900.0  # the whole scenario, from the first process started to the last check
TIME_SCALE = 60.0  # one emulated minute per real second
HELD_RUN_START_DELAY = 86_400.0  # emulated seconds (24 min real): runs stay `scheduled` until released
RUN_START_DELAY = 30.0  # once released
RUN_DURATION = 120.0
CLOCK_JUMP = HELD_RUN_START_DELAY / TIME_SCALE + RUN_DURATION / TIME_SCALE + 5.0
KILL_CREATES = 3  # create tasks in flight on the worker that is SIGKILLed
HOLD_LIMIT = 30.0  # longest a create's answer is held back (the hook's read timeout is 60 s)
KILL_LEAD = 2.0  # the triggerer dies this long before the deadline sensor's deadline
FIRED = "Trigger fired event"  # the triggerer's log line for each event a trigger yields
STARTING = re.compile(r"trigger .* starting")  # and for each trigger it starts
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
# A Celery pool process supervising a task instance, and the task process it forks: both name the TI's id.
TASK_PROCESS = re.compile(r"airflow (?:supervisor:|worker --) ([0-9a-f-]{36})")


def _sources() -> list[dict[str, Any]]:
    return [
        {
            "table": f"Table{i:02d}",
            "fields": {"RecordID": "string", "ModifiedDate": "date-time"},
            "mappings": [{"source": "RecordID", "destination": "_id"}],
            "delta_column": "ModifiedDate",
        }
        for i in range(1, PIPELINES + 1)
    ]


class HoldingEmulator(AEPEmulator):
    """The emulator, able to hold back the answer to each create (a 2xx POST to Platform) it committed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hold = threading.Condition()
        self._holding = False
        self.held_now = 0

    def start(self) -> HoldingEmulator:
        super().start()
        server = self._server
        assert server is not None
        report = server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # Clients SIGKILLed mid-request reset their connections: expected here, not worth a traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                report(request, client_address)

        server.handle_error = handle_error
        return self

    def hold_creates(self, hold: bool) -> None:
        with self._hold:
            self._holding = hold
            self._hold.notify_all()

    def _handle(self, method: str, target: str, headers: Any, body: bytes):
        response = super()._handle(method, target, headers, body)
        if method == "POST" and response is not None and 200 <= response.status < 300 and not target.startswith("/ims"):
            with self._hold:
                if self._holding:
                    self.held_now += 1
                    self._hold.wait_for(lambda: not self._holding, timeout=HOLD_LIMIT)
                    self.held_now -= 1
        return response


@dataclass
class Figures:
    dag_runs: list[tuple[str, str]] = field(default_factory=list)
    task_instances: int = 0
    tries: int = 0
    resources: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    events_per_trigger: collections.Counter[int] = field(default_factory=collections.Counter)
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)  # run -> (IMS token requests, task tries)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def report(self, wall: float, failed: bool = False) -> None:
        runs = collections.Counter(self.dag_runs)
        rows = {
            "DAG runs": f"{len(self.dag_runs)}: " + ", ".join(f"{d} {s} x{n}" for (d, s), n in runs.items()),
            "tasks": f"{self.task_instances} task instances, {self.tries} tries",
            "duplicates": f"{self.duplicates} (AEP resources: {sum(self.resources.values())}, {self.resources})",
            "events per trigger": ", ".join(
                f"{events} for {count} triggers" for events, count in sorted(self.events_per_trigger.items())
            ),
            "double-fired": f"{sum(n for events, n in self.events_per_trigger.items() if events > 1)} triggers",
            "IMS token requests": ", ".join(
                f"{run}: {tokens} ({tries} task tries)" for run, (tokens, tries) in self.tokens.items()
            ),
            "wall time": f"{wall:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items()) + ")",
        }
        print(f"\n=== make test-distributed: figures{' so far (the scenario FAILED)' if failed else ''} ===")
        for label, value in rows.items():
            print(f"{label + ':':<20}{value}")
        for note in self.notes:
            print(f"- {note}")


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _fired_record(line: str) -> dict[str, Any]:
    """A "Trigger fired event" line of a triggerer's own (console-format) log, as the trigger log file has it."""
    stamp = TIMESTAMP.search(line)
    return {"event": FIRED, "timestamp": stamp.group(0) if stamp else "", "result": line}


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record


class Scenario:
    def __init__(self, deployment: CeleryDeployment, emu: HoldingEmulator, clock: HeldClock) -> None:
        self.d = deployment
        self.emu = emu
        self.clock = clock
        self.api = AirflowApi(
            deployment.base_url,
            time.monotonic() + DEADLINE_SECONDS,
            check=deployment.died,
            context=deployment.log_tails,
            label="distributed",
        )
        self.db: Any = None
        self.figures = Figures()
        self.triggerer_jobs: dict[int, str] = {}  # TriggererJob id -> process name
        self.conf = {"sources": _sources()}

    # ------------------------------------------------------------------ plumbing

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.db.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.api.get_json(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(found))
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def trigger_dag(self, dag_id: str, conf: dict[str, Any]) -> str:
        return self.api.send("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        def finished():
            run = self.api.get_json(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return self.api.wait_until(f"DAG run {dag_id}/{run_id} to finish", finished, interval=2.0)

    def task_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> Path:
        path = self.d.logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return path / f"map_index={map_index}" if map_index >= 0 else path

    def task_log(self, dag_id: str, run_id: str, ti: dict[str, Any], attempt: int) -> str:
        path = self.task_dir(dag_id, run_id, ti["task_id"], ti["map_index"]) / f"attempt={attempt}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[int, list[dict[str, Any]]]:
        """The trigger log records of one task instance, per TriggererJob that ran its trigger."""
        found = {}
        for path in sorted(self.task_dir(dag_id, run_id, task_id, map_index).glob("attempt=*.log.trigger.*.log")):
            found[int(path.name.rsplit(".", 2)[-2])] = list(_json_lines(path))
        if not found:  # no trigger ran for it, so none fired
            return found
        # The triggerer takes a trigger's log lines and its events from its runner on two sockets: when it reads
        # "finished" first, it has closed the trigger's log file and writes the fired line to its own log.
        prefix = f"{dag_id}/{run_id}/{task_id}/{map_index}/"
        for job, name in self.triggerer_jobs.items():
            for process in (p for p in (*self.d.retired, *self.d.processes.values()) if p.name == name):
                for line in process.log_path.read_text(errors="replace").splitlines():
                    if FIRED in line and prefix in line:
                        found.setdefault(job, []).append(_fired_record(line))
        return found

    def worker_tasks(self, name: str) -> dict[str, tuple[str, int]]:
        """Task instances running under Celery worker ``name``: id -> (task id, map index)."""
        ids = set()
        for process in self.d.processes[name].descendants():
            with contextlib.suppress(psutil.Error):
                match = TASK_PROCESS.search(" ".join(process.cmdline()))
                if match:
                    ids.add(match.group(1))
        if not ids:
            return {}
        rows = self.query(
            "SELECT id::text, task_id, map_index FROM task_instance WHERE id::text = ANY(%s)", sorted(ids)
        )
        return {ti: (task_id, map_index) for ti, task_id, map_index in rows}

    def new_triggerer_jobs(self) -> list[int]:
        rows = self.query("SELECT id FROM job WHERE job_type = 'TriggererJob' AND end_date IS NULL ORDER BY id")
        return [job for (job,) in rows if job not in self.triggerer_jobs]

    def trigger_end_time(self, trigger_id: int) -> float:
        (stored,) = self.query("SELECT kwargs FROM trigger WHERE id = %s", trigger_id)[0]
        # Airflow encrypts trigger kwargs with the Fernet key, except on paths that store them as plain JSON.
        plain = stored if stored.startswith("{") else Fernet(self.d.fernet_key).decrypt(stored.encode()).decode()
        return float(json.loads(plain)["end_time"])

    @staticmethod
    def states(tis: list[dict[str, Any]]) -> dict[str, int]:
        return dict(collections.Counter(f"{t['task_id']}:{t['state']}" for t in tis))

    @staticmethod
    def is_create(record: Any) -> bool:
        return record.method == "POST" and record.service != "ims" and 200 <= record.status < 300

    # ------------------------------------------------------------------ phases

    def run(self) -> None:
        for phase, step in (("start-up", self.start), ("run 1", self.first_run), ("run 2", self.repeated_run)):
            started = time.monotonic()
            step()
            self.figures.phases[phase] = time.monotonic() - started
        self.check_tokens()

    def start(self) -> None:
        d = self.d
        d.start_services()
        assert d.postgres is not None and d.redis is not None
        self.api.mark(f"PostgreSQL on :{d.postgres.port}, Redis on :{d.redis.port}, emulator on :{self.emu.port}")
        d.migrate()
        self.db = d.postgres.connect()
        self.db.autocommit = True
        for name in ("api-server", "scheduler", "dag-processor"):
            d.launch(name, name)
        d.start_worker("worker1")
        d.start_worker("worker2")
        # One after the other, so each TriggererJob id is known to belong to one process.
        for name in ("triggerer1", "triggerer2"):
            d.start_triggerer(name)
            (job,) = self.api.wait_until(f"{name}'s TriggererJob", self.new_triggerer_jobs)
            self.triggerer_jobs[job] = name
        self.api.login()
        for dag_id in (MULTI, deadline_dag.DAG_ID):
            self.api.wait_for_dag(dag_id)
        self.api.mark(f"Airflow up: {', '.join(d.processes)}; TriggererJobs {self.triggerer_jobs}")

    def first_run(self) -> None:
        first_request = len(self.emu.request_log)
        self.emu.hold_creates(True)
        run_id = self.trigger_dag(MULTI, self.conf)
        self.api.mark(f"triggered {MULTI} ({PIPELINES} pipelines): {run_id}")
        in_flight = self.kill_worker_mid_create()
        self.emu.hold_creates(False)
        self.d.start_worker("worker1")  # as a supervisor would; the killed tasks are retried on either worker
        self.wait_for_deferred_sensors(run_id)
        self.api.mark(f"all {PIPELINES} sensors deferred, their runs held `scheduled`")

        takeover = self.kill_triggerer_before_deadline()
        self.emu.run_start_delay = RUN_START_DELAY
        self.clock.jump(CLOCK_JUMP)
        self.api.mark("emulator clock released: the held runs finish now")
        tis, _ = self.finish_run("run 1", run_id, first_request)
        self.check_retries(tis, run_id, in_flight)
        self.check_takeover(tis, run_id, takeover)

    def kill_worker_mid_create(self) -> dict[str, tuple[str, int]]:
        """
        SIGKILL worker1 once it runs create tasks and every create task running has sent its create (whose
        answer is held back): the killed tries leave committed creates whose ids they never saw.
        """
        holding_since = time.monotonic()
        while True:
            self.wait_for_held_creates(holding_since)
            # Paused, worker1 starts no task between this listing and the SIGKILL: those listed are those killed.
            self.d.processes["worker1"].pause()
            mine, mine_creating, all_held = self.creates_in_flight()
            if all_held:
                break
            self.d.processes["worker1"].resume()
        held = self.emu.held_now
        pids = self.d.kill("worker1")
        kinds = sorted(collections.Counter(task_id.split(".")[-1] for task_id, _ in mine.values()).items())
        self.api.mark(f"SIGKILLed worker1 with {len(mine)} tasks in flight {kinds}; restarting it")
        self.figures.notes.append(
            f"worker SIGKILL: worker1 and its {len(pids) - 1} child processes, with {len(mine)} tasks in flight, "
            f"{len(mine_creating)} of them creates whose answers were held back ({held} held in all)"
        )
        return mine

    def creates_in_flight(self) -> tuple[dict[str, tuple[str, int]], list[tuple[str, int]], bool]:
        """worker1's tasks, its create tasks, and whether it has some and every create task running (on either
        worker) has sent its create, whose answer the emulator holds back."""
        mine = self.worker_tasks("worker1")
        running = [*mine.values(), *self.worker_tasks("worker2").values()]
        creating = sum(1 for task_id, _ in running if task_id in CREATE_TASKS)
        mine_creating = [t for t in mine.values() if t[0] in CREATE_TASKS]
        return mine, mine_creating, bool(mine_creating) and self.emu.held_now >= creating

    def wait_for_held_creates(self, holding_since: float) -> None:
        """Until, for a second, worker1 runs enough create tasks and every create running has sent its create."""
        stable = 0
        while stable < 3:  # for a second: no create task is between its lookup and its create
            mine, mine_creating, all_held = self.creates_in_flight()
            # Several creates on worker1, or at least one before the first held answers are let go.
            enough = len(mine_creating) >= KILL_CREATES or time.monotonic() - holding_since > HOLD_LIMIT - 5
            stable = stable + 1 if all_held and enough else 0
            if self.api.remaining() < 0:
                self.api.fail(f"worker1 never ran create tasks with their answers all held back (running: {mine})")
            died = self.d.died()
            if died:
                self.api.fail(f"{died} before the worker SIGKILL")
            time.sleep(0.3)

    def wait_for_deferred_sensors(self, run_id: str) -> None:
        def deferred():
            response = self.api.get(f"/dags/{MULTI}/dagRuns/{run_id}/taskInstances/{SENSOR}/listMapped", limit=100)
            if response.status_code == 404:  # not expanded yet
                return None
            tis = response.json()["task_instances"]
            ended = [t for t in tis if t["state"] in ("success", "failed", "upstream_failed", "skipped")]
            if ended:
                self.api.fail(f"sensors ended while their runs were held `scheduled`: {self.states(ended)}")
            return len(tis) == PIPELINES and all(t["state"] == "deferred" for t in tis)

        self.api.wait_until(f"the {PIPELINES} sensors of run 1 to defer", deferred, interval=2.0)

    def kill_triggerer_before_deadline(self) -> dict[str, Any]:
        """SIGKILL the triggerer running the deadline sensor's trigger KILL_LEAD s before its deadline."""
        flow_id = next(iter(self.emu.snapshot()["prod"]["flows"]))
        run_id = self.trigger_dag(deadline_dag.DAG_ID, {"flow_id": flow_id})

        def started():
            rows = self.query(
                "SELECT t.id, t.triggerer_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
                "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.state = 'deferred'",
                deadline_dag.DAG_ID,
                run_id,
            )
            if not rows or rows[0][1] is None:
                return None
            logs = self.trigger_logs(deadline_dag.DAG_ID, run_id, deadline_dag.SENSOR, -1).get(rows[0][1], [])
            return rows[0] if any(STARTING.fullmatch(str(r.get("event", ""))) for r in logs) else None

        trigger_id, job_id = self.api.wait_until("the deadline sensor's trigger to run", started, interval=0.5)
        end_time = self.trigger_end_time(trigger_id)
        victim = self.triggerer_jobs[job_id]
        (survivor,) = [job for job in self.triggerer_jobs if job != job_id]
        wait = end_time - KILL_LEAD - time.time()
        if wait < 0:
            self.api.fail(f"the deadline trigger started too late to kill {victim} before its deadline ({wait:.1f} s)")
        time.sleep(wait)
        held = self.query(
            "SELECT ti.dag_id, ti.task_id, ti.map_index FROM trigger t "
            "JOIN task_instance ti ON ti.trigger_id = t.id WHERE t.triggerer_id = %s",
            job_id,
        )
        self.d.kill(victim)
        killed_at = time.time()
        self.api.mark(
            f"SIGKILLed {victim} running {len(held)} triggers, {end_time - killed_at:.1f} s before the deadline"
        )

        def taken_over():
            rows = self.query("SELECT count(*) FROM trigger WHERE triggerer_id IS DISTINCT FROM %s", survivor)
            return time.time() if rows[0][0] == 0 else None

        taken_at = self.api.wait_until("the other triggerer to take every trigger over", taken_over, interval=0.5)
        self.api.mark(f"{self.triggerer_jobs[survivor]} holds every trigger, {taken_at - killed_at:.1f} s later")

        run = self.wait_for_run(deadline_dag.DAG_ID, run_id)
        (sensor,) = self.task_instances(deadline_dag.DAG_ID, run_id)
        assert run["state"] == "failed" and sensor["state"] == "failed", (run, sensor)
        assert sensor["try_number"] == 1, f"a timed-out sensor is not retried: {sensor}"
        self.figures.dag_runs.append((deadline_dag.DAG_ID, run["state"]))
        self.figures.task_instances += 1
        self.figures.tries += 1
        self.check_events(deadline_dag.DAG_ID, run_id, [sensor])
        return {
            "run_id": run_id,
            "victim": job_id,
            "survivor": survivor,
            "held": held,
            "end_time": end_time,
            "killed_at": killed_at,
        }

    def repeated_run(self) -> None:
        before = self.emu.snapshot()["prod"]
        first_request = len(self.emu.request_log)
        run_id = self.trigger_dag(MULTI, self.conf)
        tis, requests = self.finish_run("run 2", run_id, first_request)
        retried = [t for t in tis if t["try_number"] > 1]
        assert not retried, f"nothing was killed in run 2, yet these were retried: {self.states(retried)}"
        after = self.emu.snapshot()["prod"]
        for kind in PIPELINE_KINDS:
            assert set(after[kind]) == set(before[kind]), f"the re-run changed the {kind}"
        creates = [(r.method, r.path) for r in requests if self.is_create(r)]
        assert not creates, f"the re-run created: {creates}"
        for ti in tis:
            if ti["task_id"] in CREATE_TASKS:
                text = self.task_log(MULTI, run_id, ti, 1)
                assert "Reused " in text and "Created " not in text, (ti["task_id"], ti["map_index"], text[-2000:])
        self.figures.notes.append("re-run: every create task reused its resource; no create reached AEP")

    # ------------------------------------------------------------------ checks

    def finish_run(self, label: str, run_id: str, first_request: int) -> tuple[list[dict[str, Any]], list[Any]]:
        """
        Wait for run ``run_id`` of the multi-source DAG: every task succeeded (or was skipped), each resource
        exists once, each trigger fired once. Returns its task instances and what the emulator saw since
        ``first_request``.
        """
        run = self.wait_for_run(MULTI, run_id)
        self.api.mark(f"{label} {run['state']}")
        requests = self.emu.request_log[first_request:]
        tis = self.task_instances(MULTI, run_id)
        if run["state"] != "success":
            self.api.fail(f"{label} ended {run['state']}: {self.states(tis)}")
        self.figures.dag_runs.append((MULTI, run["state"]))
        self.figures.task_instances += len(tis)
        self.figures.tries += sum(t["try_number"] for t in tis)
        bad = [t for t in tis if t["state"] not in ("success", "skipped")]
        assert not bad, self.states(bad)
        legacy_only = [t for t in tis if t["task_id"].split(".")[-1] in LEGACY_ONLY_TASKS]
        assert len(legacy_only) == PIPELINES * len(LEGACY_ONLY_TASKS), self.states(legacy_only)
        assert all(t["state"] == "skipped" for t in legacy_only), self.states(legacy_only)
        self.check_resources()
        self.check_events(MULTI, run_id, tis)
        tries = sum(t["try_number"] for t in tis if t["state"] != "skipped")
        self.figures.tokens[label] = (sum(1 for r in requests if r.service == "ims"), tries)
        return tis, requests

    def check_resources(self) -> None:
        """No two AEP resources of a kind share a name; each pipeline has each of its resources once."""
        state = self.emu.snapshot()["prod"]
        names = {
            kind: collections.Counter(r.get("name") or r.get("title") for r in state[kind].values())
            for kind in PIPELINE_KINDS
        }
        duplicates = {kind: {n: c for n, c in found.items() if c > 1} for kind, found in names.items()}
        self.figures.duplicates = max(
            self.figures.duplicates, sum(c - 1 for d in duplicates.values() for c in d.values())
        )
        assert not any(duplicates.values()), f"duplicate AEP resources: {duplicates}"
        for source in self.conf["sources"]:
            wanted = pipeline_resource_names(f"Multi {source['table']}")
            for task_id, kind in CREATE_TASKS.items():
                name = wanted[task_id.split(".")[-1]]
                assert names[kind][name] == 1, f"{kind} {name!r}: {names[kind][name]} in the emulator"
        self.figures.resources = {kind: len(state[kind]) for kind in PIPELINE_KINDS}
        # The current variant in every mapped pipeline: no ad hoc schema or class, no dataset base connection.
        expected = {kind: PIPELINES * n for kind, n in ONE_CURRENT_PIPELINE.items()}
        assert self.figures.resources == expected, f"AEP resources {self.figures.resources}, expected {expected}"

    def check_tokens(self) -> None:
        """One host, well within one token lifetime: its processes share one token through the token files."""
        fetched = sum(1 for r in self.emu.request_log if r.service == "ims")
        assert fetched == 1, f"{fetched} IMS token requests from one host within one token lifetime"
        self.figures.notes.append(
            "IMS tokens: one request in all; every task process, retry and resume, and both triggerers, used the "
            "token the first one fetched, from the host's token cache"
        )

    def check_events(self, dag_id: str, run_id: str, tis: list[dict[str, Any]]) -> None:
        """Each trigger fired one event, counted over every triggerer that ran it."""
        for ti in tis:
            logs = self.trigger_logs(dag_id, run_id, ti["task_id"], ti["map_index"])
            if logs:
                fired = sum(1 for records in logs.values() for r in records if r.get("event") == FIRED)
                self.figures.events_per_trigger[fired] += 1
                assert fired == 1, f"{ti['task_id']}[{ti['map_index']}] fired {fired} events: {logs}"

    def check_retries(self, tis: list[dict[str, Any]], run_id: str, in_flight: dict[str, tuple[str, int]]) -> None:
        """
        Exactly the killed create tries were retried; each had committed its create before the SIGKILL, so each
        retry found that resource and reused it.
        """
        killed = {t for t in in_flight.values() if t[0] in CREATE_TASKS}
        retried = {
            (t["task_id"], t["map_index"]): t for t in tis if t["try_number"] > 1 and t["task_id"] in CREATE_TASKS
        }
        assert set(retried) == killed, f"retried {sorted(retried)}, killed {sorted(killed)}"
        for (task_id, map_index), ti in retried.items():
            text = self.task_log(MULTI, run_id, ti, ti["try_number"])
            assert "Reused " in text and "Created " not in text, (task_id, map_index, text[-2000:])
        self.figures.notes.append(
            f"worker SIGKILL: the {len(retried)} killed create tasks were retried; each retry reused what its "
            "killed try had created"
        )

    def check_takeover(self, tis: list[dict[str, Any]], run_id: str, takeover: dict[str, Any]) -> None:
        """The killed triggerer's triggers ran again on the other, which fired their one event each."""
        victim, survivor = takeover["victim"], takeover["survivor"]
        sensors = [(task_id, map_index) for dag_id, task_id, map_index in takeover["held"] if dag_id == MULTI]
        assert sensors, f"the killed triggerer ran only the deadline trigger: {takeover['held']}"
        by_key = {(t["task_id"], t["map_index"]): t for t in tis}
        for task_id, map_index in sensors:
            ti = by_key[(task_id, map_index)]
            assert ti["state"] == "success" and ti["try_number"] == 1, ti
            logs = self.trigger_logs(MULTI, run_id, task_id, map_index)
            assert victim in logs and survivor in logs, (task_id, map_index, sorted(logs))
            fired_by = [job for job, records in logs.items() if any(r.get("event") == FIRED for r in records)]
            assert fired_by == [survivor], (task_id, map_index, fired_by)

        # The deadline sensor: its deadline passed between the SIGKILL and the other triggerer starting the
        # trigger, whose timeout event then came within one poll interval of the deadline.
        end_time, killed_at = takeover["end_time"], takeover["killed_at"]
        logs = self.trigger_logs(deadline_dag.DAG_ID, takeover["run_id"], deadline_dag.SENSOR, -1)
        assert victim in logs and survivor in logs, sorted(logs)
        started = [_timestamp(r["timestamp"]) for r in logs[survivor] if STARTING.fullmatch(str(r.get("event", "")))]
        fired = [r for records in logs.values() for r in records if r.get("event") == FIRED]
        assert len(fired) == 1 and fired[0] in logs[survivor], fired
        assert "'status': 'timeout'" in str(fired[0].get("result")), fired[0]
        assert killed_at < end_time < started[0], (killed_at, end_time, started)
        lateness = _timestamp(fired[0]["timestamp"]) - end_time
        assert 0 <= lateness <= deadline_dag.POLL_INTERVAL, f"the timeout fired {lateness:.1f} s after the deadline"
        self.figures.notes.append(
            f"triggerer SIGKILL: {len(takeover['held'])} triggers taken over ({len(sensors)} {MULTI} sensors, "
            f"each then fired once by the other triggerer); the deadline passed {end_time - killed_at:.1f} s after "
            f"the SIGKILL, the other triggerer started that trigger {started[0] - end_time:.1f} s after the "
            f"deadline and its timeout fired {lateness:.1f} s after it (poll interval "
            f"{deadline_dag.POLL_INTERVAL:.0f} s)"
        )


def _dags_folder(root: Path) -> Path:
    folder = root / "dags"
    folder.mkdir()
    for path in DAG_FILES:
        (folder / path.name).symlink_to(path)
    return folder


def test_distributed_celery_ha() -> None:
    started = time.monotonic()
    # `make test-distributed`'s time limit is a SIGINT, which a shell's background job starts out ignoring.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_debian_packages()
    root = Path(tempfile.mkdtemp(prefix="aep-distributed-"))
    root.chmod(0o755)  # the servers' users walk into their own directories below it
    clock = HeldClock()
    emu = HoldingEmulator(
        time_scale=TIME_SCALE,
        run_start_delay=HELD_RUN_START_DELAY,
        run_duration=RUN_DURATION,
        clock=clock,
        source_tables=[
            source_table(s["table"], 100, "RecordID", ("RecordID", "string"), ("ModifiedDate", "date-time"))
            for s in _sources()
        ],
    ).start()
    deployment = CeleryDeployment(root, _dags_folder(root), emu)
    scenario = Scenario(deployment, emu, clock)
    figures, failed = scenario.figures, True
    try:
        scenario.run()
        failed = False
    finally:
        stopping = time.monotonic()
        if scenario.db is not None:
            scenario.db.close()
        killed, survivors = deployment.stop()
        emu.stop()
        if os.environ.get("AEP_DISTRIBUTED_KEEP") == "1":
            print(f"[distributed] kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        figures.phases["stop"] = time.monotonic() - stopping
        if killed:
            figures.notes.append(f"ignored SIGTERM and were SIGKILLed at the end: {killed}")
        figures.report(time.monotonic() - started, failed)  # a failed run's figures help find why
    assert not survivors, f"processes survived SIGKILL: {survivors}"
