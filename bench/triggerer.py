"""Benchmark 3: 1,000 AEPFlowRunTriggers in one event loop, next to the same watch in poke mode.

The orchestrator (``run``) starts the emulator as its own process, creates one dataflow and N on-demand
runs with AEPHook (spread over a few seconds, so they finish at staggered times), then starts a clean
child process (``--child``) that runs the N triggers in one asyncio loop, as the triggerer does, with
a 10 ms ticker measuring event-loop lag and sampling RSS. After it: the runs' ``completedAtUTC`` from
the emulator gives each event's delay from completion.

Poke mode (``--poke-child``): one process with AEPFlowRunSensor.poke() called against a running run:
RSS and CPU per poke; N sensors in poke mode hold N such worker slots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emulator_env, emulator_process, median, proc_status_kb, raise_nofile, run_json


# ---------------------------------------------------------------------------------------------- child
async def _watch(payload: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

    polls = {"n": 0}
    real_get_run = AEPAsyncHook.get_run

    async def counting_get_run(self: Any, run_id: str) -> dict[str, Any]:
        polls["n"] += 1
        return await real_get_run(self, run_id)

    AEPAsyncHook.get_run = counting_get_run  # type: ignore[method-assign]
    http: dict[str, Any] = {"list_reads": 0, "single_reads": 0, "other": 0}
    read_s: dict[str, list[float]] = {}
    real_request = AEPAsyncHook.request

    async def counting_request(self: Any, method: str, service: str, path: str, **kwargs: Any) -> Any:
        kind = "list_reads" if path == "/runs" else "single_reads" if path.startswith("/runs/") else "other"
        http[kind] += 1
        t0 = time.monotonic()
        try:
            return await real_request(self, method, service, path, **kwargs)
        finally:
            read_s.setdefault(kind, []).append(time.monotonic() - t0)

    AEPAsyncHook.request = counting_request  # type: ignore[method-assign]

    import gc

    gc_stats = {"max_ms": [0.0, 0.0, 0.0], "count": [0, 0, 0], "total_ms": 0.0, "promoted": 0}
    gc_started = [0.0]
    young = [0]

    def gc_callback(phase: str, info: dict[str, Any]) -> None:
        gen = info["generation"]
        if phase == "start":
            if gen == 1:  # what a generation-1 collection does not free moves to the oldest generation
                young[0] = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
            gc_started[0] = time.perf_counter()
            return
        took = (time.perf_counter() - gc_started[0]) * 1000
        if gen == 1:
            gc_stats["promoted"] += young[0] - info["collected"]
        gc_stats["count"][gen] += 1
        gc_stats["max_ms"][gen] = max(gc_stats["max_ms"][gen], took)
        gc_stats["total_ms"] += took

    gc.callbacks.append(gc_callback)
    slow: list[tuple[float, float]] = []

    baseline_kb = proc_status_kb("VmRSS")
    peak_kb = baseline_kb
    lag = {"max": 0.0, "max_after_start": 0.0, "max_without_full_gc": 0.0, "ticks": 0}
    stop = asyncio.Event()
    started = time.monotonic()

    async def ticker() -> None:
        nonlocal peak_kb
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before, full_gcs = loop.time(), gc_stats["count"][2]
            await asyncio.sleep(0.01)
            over = loop.time() - before - 0.01
            if gc_stats["count"][2] == full_gcs:  # no full (generation 2) collection during this tick
                lag["max_without_full_gc"] = max(lag["max_without_full_gc"], over)
            if over > 0.05:
                slow.append((round(time.monotonic() - started, 3), round(over * 1000, 1)))
            lag["max"] = max(lag["max"], over)
            if time.monotonic() - started > 2.0:
                lag["max_after_start"] = max(lag["max_after_start"], over)
            lag["ticks"] += 1
            if lag["ticks"] % 10 == 0:
                peak_kb = max(peak_kb, proc_status_kb("VmRSS"))

    end_time = time.time() + payload["deadline_s"]
    triggers = [
        AEPFlowRunTrigger(payload["flow_id"], run_id=run_id, poll_interval=payload["poll_interval"], end_time=end_time)
        for run_id in payload["run_ids"]
    ]
    events: dict[str, dict[str, Any]] = {}

    async def one(trigger: AEPFlowRunTrigger) -> None:
        async for event in trigger.run():
            events[trigger.run_id] = {"received": time.time(), "status": event.payload["status"]}

    cpu0, wall0 = time.process_time(), time.monotonic()
    tick = asyncio.create_task(ticker())
    watching = []
    for t in triggers:  # as Airflow's TriggerRunner.create_triggers starts them: one per loop iteration
        await asyncio.sleep(0)
        watching.append(asyncio.create_task(one(t)))
    await asyncio.gather(*watching)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stop.set()
    await tick
    gc.callbacks.remove(gc_callback)
    for kind, times in read_s.items():  # request latency as the loop saw it (emulator service time + queueing)
        http[f"{kind}_median_ms"] = median(times) * 1000
        http[f"{kind}_max_ms"] = max(times) * 1000
    peak_kb = max(peak_kb, proc_status_kb("VmRSS"))
    return {
        "n": len(triggers),
        "baseline_rss_mb": baseline_kb / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "added_rss_mb": (peak_kb - baseline_kb) / 1024,
        "vmhwm_mb": proc_status_kb("VmHWM") / 1024,
        "cpu_s": cpu,
        "wall_s": wall,
        "polls": polls["n"],
        "cpu_ms_per_poll": cpu / polls["n"] * 1000 if polls["n"] else float("nan"),
        "promoted_per_poll": gc_stats["promoted"] / polls["n"] if polls["n"] else float("nan"),
        "max_loop_lag_ms": lag["max"] * 1000,
        "max_loop_lag_after_start_ms": lag["max_after_start"] * 1000,
        "max_loop_lag_without_full_gc_ms": lag["max_without_full_gc"] * 1000,
        "http": http,
        "gc": gc_stats,
        "frozen_objects": gc.get_freeze_count(),
        "lag_over_50ms": slow[:50],
        "events": events,
    }


def child_main(path: str) -> None:
    raise_nofile()
    payload = json.loads(Path(path).read_text())
    import logging

    # What a triggerer has loaded before any trigger: not part of what the triggers add. The trigger runner module
    # also makes this process a triggerer for [aep] freeze_triggerer_heap.
    import airflow.jobs.triggerer_job_runner
    import airflow.models  # noqa: F401

    from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger  # noqa: F401

    logging.getLogger("airflow").setLevel(logging.WARNING)
    logging.getLogger("airflow_provider_aep").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # What one full collection of this heap costs before any trigger exists: the floor of any full collection
    # during the run, whoever's allocations start it. Also leaves the collector in a steady state, as in a
    # triggerer that has been up for a while, rather than right after its imports.
    heap_full_gc_ms, heap_objects = full_gc_ms()
    result = asyncio.run(_watch(payload))
    result["heap_full_gc_ms"] = heap_full_gc_ms
    result["heap_objects"] = heap_objects
    print(json.dumps(result))


def full_gc_ms(repeat: int = 3) -> tuple[float, int]:
    """Median time of a full collection of this process's heap, and the number of objects it holds."""
    import gc

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times), len(gc.get_objects())


def poke_child_main(path: str) -> None:
    payload = json.loads(Path(path).read_text())
    import logging

    from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor

    logging.getLogger("airflow").setLevel(logging.WARNING)

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    sensor = AEPFlowRunSensor(task_id="wait", flow_id=payload["flow_id"], run_id=payload["run_ids"][0], poke_interval=1)
    context = {"ti": TI()}
    sensor.poke(context)  # first poke: connection lookup, token, session
    pokes = payload.get("pokes", 5)
    cpu0 = time.process_time()
    for _ in range(pokes):
        sensor.poke(context)
    cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "rss_mb": proc_status_kb("VmRSS") / 1024,
                "vmhwm_mb": proc_status_kb("VmHWM") / 1024,
                "cpu_ms_per_poke": cpu / pokes * 1000,
            }
        )
    )


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


def run(
    n: int = 1000,
    poll_interval: float = 1.0,
    time_scale: float = 3.0,
    run_duration: float = 30.0,
    spread_s: float = 8.0,
    pokes: int = 5,
    freeze_triggerer_heap: bool = True,
) -> dict[str, Any]:
    """Runs start ``30 / time_scale`` s after creation and finish ``run_duration / time_scale`` s later."""
    raise_nofile()
    with emulator_process("--time-scale", str(time_scale), "--run-duration", str(run_duration)) as base_url:
        env = emulator_env(base_url)
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = env["AIRFLOW_CONN_AEP_DEFAULT"]
        from airflow_provider_aep.hooks.aep import AEPHook

        hook = AEPHook()
        flow_id = _make_flow(hook)
        run_ids: list[str] = []
        t0 = time.time()
        for i in range(n):
            now = int(time.time())
            run_ids.append(
                hook.create_run(flow_id, {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now})
            )
            lag = t0 + spread_s * (i + 1) / n - time.time()
            if lag > 0:
                time.sleep(lag)
        created_s = time.time() - t0
        workdir = Path(tempfile.mkdtemp(prefix="aep-bench-trig-"))
        payload = {
            "flow_id": flow_id,
            "run_ids": run_ids,
            "poll_interval": poll_interval,
            "deadline_s": 600,
            "pokes": pokes,
        }
        (workdir / "payload.json").write_text(json.dumps(payload))
        child_env = {**env, "AIRFLOW__AEP__FREEZE_TRIGGERER_HEAP": str(freeze_triggerer_heap)}
        child = run_json(
            [sys.executable, "-m", "bench.triggerer", "--child", str(workdir / "payload.json")], env=child_env
        )
        completed_ms = {}
        for run_id in run_ids:
            record = hook.get_run(run_id)
            completed_ms[run_id] = record["metrics"]["durationSummary"]["completedAtUTC"]
        # Poke mode, on a run still in progress.
        now = int(time.time())
        long_run = hook.create_run(flow_id, {"startTime": now, "windowStartTime": now - 3600, "windowEndTime": now})
        (workdir / "poke.json").write_text(json.dumps({**payload, "run_ids": [long_run]}))
        poke = run_json([sys.executable, "-m", "bench.triggerer", "--poke-child", str(workdir / "poke.json")], env=env)

    events = child.pop("events")
    delays = [events[r]["received"] - completed_ms[r] / 1000 for r in run_ids if r in events]
    statuses: dict[str, int] = {}
    for e in events.values():
        statuses[e["status"]] = statuses.get(e["status"], 0) + 1
    child.update(
        {
            "runs_created_in_s": created_s,
            "events": len(events),
            "statuses": statuses,
            "delay_median_s": median(delays),
            "delay_max_s": max(delays) if delays else float("nan"),
            "delay_min_s": min(delays) if delays else float("nan"),
            "events_within_poll_interval": sum(1 for d in delays if d <= poll_interval),
            "poll_interval_s": poll_interval,
        }
    )
    poke["n"] = n
    poke["rss_total_for_n_gb"] = poke["rss_mb"] * n / 1024
    poke["cpu_ms_per_poll_ratio_vs_trigger"] = (
        poke["cpu_ms_per_poke"] / child["cpu_ms_per_poll"] if child["cpu_ms_per_poll"] else float("nan")
    )
    return {"deferred": child, "poke": poke}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--poke-child")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=3.0)
    parser.add_argument("--run-duration", type=float, default=30.0)
    parser.add_argument("--spread", type=float, default=8.0)
    parser.add_argument(
        "--no-freeze-triggerer-heap", action="store_true", help="run with [aep] freeze_triggerer_heap = False"
    )
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
    elif args.poke_child:
        poke_child_main(args.poke_child)
    else:
        print(
            json.dumps(
                run(
                    args.n,
                    time_scale=args.time_scale,
                    run_duration=args.run_duration,
                    spread_s=args.spread,
                    freeze_triggerer_heap=not args.no_freeze_triggerer_heap,
                )
            )
        )


if __name__ == "__main__":
    main()
