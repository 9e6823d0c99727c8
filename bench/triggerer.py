"""Benchmark 3: deferred AEP sensors in one triggerer process, side by side with Airflow's DateTimeTriggers.

The orchestrator (``run``) starts the emulator as its own process and a clean child process that sets up as
Airflow's trigger runner does (``airflow.jobs.triggerer_job_runner`` and the models loaded, trigger log lines
rendered as JSON by Airflow's own logging setup, written to a file). It then feeds the child one trigger at a
time over ``spread_s`` seconds, as sensors defer over time: for ``--variant aep`` it first starts an on-demand
run in the emulator and the child runs an ``AEPFlowRunTrigger`` on it; for ``--variant datetime`` the child runs
a ``DateTimeTrigger`` whose moment is when such a run would end. The child creates each trigger as
``TriggerRunner.create_triggers`` does (one per loop iteration), measures event-loop lag with a 10 ms ticker,
CPU, RSS and garbage collections, and reports when each event arrived. Afterwards the runs' ``completedAtUTC``
give each AEP event's delay from the run's end.

Poke mode (``--poke-child``): one process calling ``AEPFlowRunSensor.poke()`` on a running run: RSS and CPU
per poke; N sensors in poke mode hold N such worker slots.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, emulator_env, emulator_process, median, proc_status_kb, raise_nofile, run_json

RUN_START_DELAY_S = 30.0  # the emulator starts an on-demand run 30 emulated seconds after it is created
VARIANTS = ("aep", "datetime")


# ---------------------------------------------------------------------------------------------- child
class Meter:
    """Event-loop lag (a 10 ms ticker), RSS, and the garbage collector's work, from start() to stop()."""

    def __init__(self) -> None:
        self.lag_ms: list[float] = []
        self.slow: list[tuple[float, float]] = []
        self.gc = {"count": [0, 0, 0], "max_ms": [0.0, 0.0, 0.0]}
        self.baseline_kb = self.peak_kb = proc_status_kb("VmRSS")
        self._gc_started = 0.0
        self._stop = asyncio.Event()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        gen = info["generation"]
        self.gc["count"][gen] += 1
        self.gc["max_ms"][gen] = max(self.gc["max_ms"][gen], (time.perf_counter() - self._gc_started) * 1000)

    async def tick(self) -> None:
        loop, started, ticks = asyncio.get_running_loop(), time.monotonic(), 0
        while not self._stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            over = (loop.time() - before - 0.01) * 1000
            self.lag_ms.append(over)
            if over > 50:
                self.slow.append((round(time.monotonic() - started, 2), round(over, 1)))
            ticks += 1
            if ticks % 10 == 0:
                self.peak_kb = max(self.peak_kb, proc_status_kb("VmRSS"))

    def start(self) -> asyncio.Task[None]:
        gc.callbacks.append(self._on_gc)
        self.cpu0, self.wall0 = time.process_time(), time.monotonic()
        return asyncio.get_running_loop().create_task(self.tick())

    def stop(self) -> dict[str, Any]:
        cpu, wall = time.process_time() - self.cpu0, time.monotonic() - self.wall0
        self._stop.set()
        gc.callbacks.remove(self._on_gc)
        self.peak_kb = max(self.peak_kb, proc_status_kb("VmRSS"))
        lags = sorted(self.lag_ms)
        return {
            "cpu_s": cpu,
            "wall_s": wall,
            "cpu_ms_per_s": cpu / wall * 1000 if wall else float("nan"),
            "max_loop_lag_ms": lags[-1] if lags else float("nan"),
            "p99_loop_lag_ms": lags[int(len(lags) * 0.99)] if lags else float("nan"),
            "added_rss_mb": (self.peak_kb - self.baseline_kb) / 1024,
            "baseline_rss_mb": self.baseline_kb / 1024,
            "gc": self.gc,
            "gc_frozen_objects": gc.get_freeze_count(),
            "lag_over_50ms": self.slow[:20],
        }


def _make_trigger(variant: str, item: dict[str, Any], payload: dict[str, Any]) -> Any:
    if variant == "datetime":
        from datetime import UTC, datetime

        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        return DateTimeTrigger(moment=datetime.fromtimestamp(item["moment"], tz=UTC))
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

    return AEPFlowRunTrigger(
        payload["flow_id"],
        run_id=item["id"],
        poll_interval=payload["poll_interval"],
        end_time=time.time() + payload["deadline_s"],
    )


async def _watch(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one trigger per line of stdin (a JSON object), until stdin closes and every trigger has fired."""
    variant = payload["variant"]
    counts = {"polls": 0, "list_reads": 0, "single_reads": 0, "other_requests": 0}
    if variant == "aep":
        from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
        from airflow_provider_aep.utils.flow_runs import FlowRunWatch

        real_observe, real_failed, real_send = FlowRunWatch.observe, FlowRunWatch.read_failed, AEPAsyncHook._send

        def counting_observe(self: Any, run: Any, config: Any) -> Any:
            counts["polls"] += 1
            return real_observe(self, run, config)

        def counting_failed(self: Any, exc: Any) -> Any:
            counts["polls"] += 1
            return real_failed(self, exc)

        async def counting_send(self: Any, request: Any) -> Any:
            path = request.url.split("/flowservice", 1)[-1]
            kind = "list_reads" if path == "/runs" else "single_reads" if path.startswith("/runs/") else "other"
            counts[kind if kind != "other" else "other_requests"] += 1
            return await real_send(self, request)

        FlowRunWatch.observe = counting_observe  # type: ignore[method-assign]
        FlowRunWatch.read_failed = counting_failed  # type: ignore[method-assign]
        AEPAsyncHook._send = counting_send  # type: ignore[method-assign]

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    events: dict[str, dict[str, Any]] = {}
    meter = Meter()

    async def one(key: str, trigger: Any) -> None:
        async for event in trigger.run():
            payload_of = event.payload
            status = payload_of.get("status") if isinstance(payload_of, dict) else "fired"
            events[key] = {"received": time.time(), "status": status}

    # What TriggerRunner.arun does before and besides any trigger: an anyio event (which loads anyio's
    # asyncio backend), waited on a second at a time.
    import anyio

    runner_stop = anyio.Event()

    async def runner_loop() -> None:
        while not runner_stop.is_set():
            with anyio.move_on_after(1):
                await runner_stop.wait()

    runner = loop.create_task(runner_loop())
    ticker = meter.start()
    watching = []
    while line := await reader.readline():
        item = json.loads(line)
        await asyncio.sleep(0)  # as TriggerRunner.create_triggers: one new trigger per loop iteration
        watching.append(loop.create_task(one(item["id"], _make_trigger(variant, item, payload))))
    await asyncio.gather(*watching)
    measured = meter.stop()
    runner_stop.set()
    await asyncio.gather(ticker, runner)
    return {"n": len(watching), **measured, **counts, "events": events}


def child_main(path: str) -> None:
    raise_nofile()
    payload = json.loads(Path(path).read_text())
    # What a triggerer has loaded before any trigger: not part of what the triggers add.
    import airflow.jobs.triggerer_job_runner
    import airflow.models  # noqa: F401
    from airflow.sdk.log import configure_logging

    configure_logging(json_output=True, output=Path(payload["log_file"]).open("wb"))  # noqa: SIM115
    if payload["variant"] == "aep":
        from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger  # noqa: F401
    else:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger  # noqa: F401
    gc.collect()  # a steady state, as in a triggerer that has been up a while, rather than right after imports
    result = asyncio.run(_watch(payload))
    Path(payload["result_file"]).write_text(json.dumps(result))


def poke_child_main(path: str) -> None:
    payload = json.loads(Path(path).read_text())
    import logging

    from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

    logging.getLogger("airflow").setLevel(logging.WARNING)

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    sensor = AEPFlowRunSensor(task_id="wait", flow_id=payload["flow_id"], run_id=payload["run_id"], poke_interval=1)
    context = {"ti": TI()}
    sensor.poke(context)  # first poke: connection lookup, token, session
    pokes = payload.get("pokes", 5)
    cpu0 = time.process_time()
    for _ in range(pokes):
        sensor.poke(context)
    cpu = time.process_time() - cpu0
    print(json.dumps({"rss_mb": proc_status_kb("VmRSS") / 1024, "cpu_ms_per_poke": cpu / pokes * 1000}))


# ----------------------------------------------------------------------------------------- orchestrator
def _make_flow(hook: Any) -> str:
    from bench.provisioning import _bodies, _flow_body, _schema_body, _source_body, _target_body

    prefix = f"bench-trig-{os.getpid()}"
    schema_id = hook.create_schema(_schema_body(prefix))["$id"]
    bodies = _bodies(prefix, schema_id)
    dataset_id = hook.create_dataset(bodies["dataset"])
    base_id = hook.create_base_connection(bodies["base"])
    source_id = hook.create_source_connection(_source_body(prefix, base_id))
    target_id = hook.create_target_connection(_target_body(prefix, schema_id, dataset_id))
    mapping_id = hook.create_mapping_set(bodies["mapping"])["id"]
    (spec,) = hook.find_flow_specs_by_name("CRMToAEP")
    body = _flow_body(prefix, spec["id"], source_id, target_id, mapping_id)
    body["scheduleParams"] = {"startTime": int(time.time()) + 86400 * 30, "frequency": "once"}
    return hook.create_flow(body)


def _start_run(hook: Any, flow_id: str) -> str:
    now = int(time.time())
    window = {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now}
    return hook.create_run(flow_id, {**window, "deltaColumn": {"name": "OrderDate"}})


def _feed(child: subprocess.Popen[str], n: int, spread_s: float, item: Any) -> None:
    """``item(i)`` for i in range(n), one JSON line each, evenly over ``spread_s`` seconds; then close stdin."""
    assert child.stdin is not None
    t0 = time.time()
    for i in range(n):
        child.stdin.write(json.dumps(item(i)) + "\n")
        child.stdin.flush()
        pause = t0 + spread_s * (i + 1) / n - time.time()
        if pause > 0:
            time.sleep(pause)
    child.stdin.close()


def _run_child(variant: str, env: dict[str, str], payload: dict[str, Any], feed: Any) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"aep-bench-trig-{variant}-"))
    payload = {**payload, "variant": variant, "log_file": str(workdir / "triggers.log")}
    payload["result_file"] = str(workdir / "result.json")
    (workdir / "payload.json").write_text(json.dumps(payload))
    stderr = workdir / "stderr.txt"
    with stderr.open("w") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.triggerer", "--child", str(workdir / "payload.json")],
            stdin=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
            cwd=REPO,
        )
        try:
            feed(child)
            child.wait(timeout=payload["deadline_s"] + 120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the {variant} child failed ({child.returncode}):\n{stderr.read_text()[-4000:]}")
    result = json.loads(Path(payload["result_file"]).read_text())
    result["log_lines"] = len(Path(payload["log_file"]).read_text().splitlines())
    return result


def _statuses(events: dict[str, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events.values():
        out[e["status"]] = out.get(e["status"], 0) + 1
    return out


def run(
    n: int = 1000,
    poll_interval: float = 10.0,
    run_seconds: float = 270.0,
    spread_s: float = 60.0,
    pokes: int = 5,
) -> dict[str, Any]:
    """Each run ends ``RUN_START_DELAY_S + run_seconds`` s after it starts; N of them start over ``spread_s``."""
    raise_nofile()
    lifetime = RUN_START_DELAY_S + run_seconds
    deadline_s = spread_s + lifetime + 10 * poll_interval
    with emulator_process("--time-scale", "1", "--run-duration", str(run_seconds)) as base_url:
        env = {**emulator_env(base_url), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = env["AIRFLOW_CONN_AEP_DEFAULT"]
        from airflow_provider_aep.hooks.aep import AEPHook

        hook = AEPHook()
        flow_id = _make_flow(hook)
        payload = {"flow_id": flow_id, "poll_interval": poll_interval, "deadline_s": deadline_s}
        run_ids: list[str] = []

        def aep_item(i: int) -> dict[str, Any]:
            run_ids.append(_start_run(hook, flow_id))
            return {"id": run_ids[-1]}

        aep = _run_child("aep", env, payload, lambda child: _feed(child, n, spread_s, aep_item))
        completed_s = {r: hook.get_run(r)["metrics"]["durationSummary"]["completedAtUTC"] / 1000 for r in run_ids}
        datetime = _run_child(
            "datetime",
            env,
            payload,
            lambda child: _feed(child, n, spread_s, lambda i: {"id": str(i), "moment": time.time() + lifetime}),
        )
        poke_file = Path(tempfile.mkdtemp(prefix="aep-bench-poke-")) / "poke.json"
        poke_file.write_text(json.dumps({"flow_id": flow_id, "run_id": _start_run(hook, flow_id), "pokes": pokes}))
        poke = run_json([sys.executable, "-m", "bench.triggerer", "--poke-child", str(poke_file)], env=env)

    events = aep.pop("events")
    delays = [events[r]["received"] - completed_s[r] for r in run_ids if r in events]
    requests = aep["list_reads"] + aep["single_reads"]
    aep.update(
        {
            "poll_interval_s": poll_interval,
            "statuses": _statuses(events),
            "events": len(events),
            "delay_median_s": median(delays),
            "delay_max_s": max(delays) if delays else float("nan"),
            "events_within_poll_interval": sum(1 for d in delays if d <= poll_interval),
            "polls_per_request": aep["polls"] / requests if requests else float("nan"),
        }
    )
    dt_events = datetime.pop("events")
    datetime.update({"events": len(dt_events), "statuses": _statuses(dt_events)})
    return {
        "n": n,
        "poll_interval_s": poll_interval,
        "run_lifetime_s": lifetime,
        "spread_s": spread_s,
        "aep": aep,
        "datetime": datetime,
        "ratios": {
            "cpu": aep["cpu_ms_per_s"] / datetime["cpu_ms_per_s"] if datetime["cpu_ms_per_s"] else float("nan"),
            "lag": aep["max_loop_lag_ms"] / datetime["max_loop_lag_ms"]
            if datetime["max_loop_lag_ms"]
            else float("nan"),
        },
        "poke": {**poke, "n": n, "rss_total_for_n_gb": poke["rss_mb"] * n / 1024},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--poke-child")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="the sensors' poke_interval, seconds")
    parser.add_argument("--run-seconds", type=float, default=270.0, help="how long each run stays inProgress")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the N sensors defer")
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
    elif args.poke_child:
        poke_child_main(args.poke_child)
    else:
        print(json.dumps(run(args.n, args.interval, args.run_seconds, args.spread)))


if __name__ == "__main__":
    main()
