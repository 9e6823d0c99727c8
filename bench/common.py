"""Shared helpers of the benchmarks: machine facts, medians, RSS, the emulator as a subprocess."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "airflow": version_of("apache-airflow"),
        "task_sdk": version_of("apache-airflow-task-sdk"),
        "provider": version_of("airflow-provider-aep"),
        "aepp": version_of("aepp"),
        "providers_http": version_of("apache-airflow-providers-http"),
        "httpx": version_of("httpx"),
        "requests": version_of("requests"),
    }


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM); 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def raise_nofile(target: int = 8192) -> int:
    """Raise the soft open-files limit towards ``target`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(target, hard) if hard != resource.RLIM_INFINITY else target
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emulator_env(base_url: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """AIRFLOW_CONN_AEP_DEFAULT for the emulator at ``base_url`` (default CLI credentials)."""
    out = dict(os.environ if env is None else env)
    out["AIRFLOW_CONN_AEP_DEFAULT"] = json.dumps(
        {
            "conn_type": "aep",
            "login": "emulator-client-id",
            "password": "emulator-client-secret",
            "extra": {
                "org_id": "EMULATOR00000000000000000@AdobeOrg",
                "sandbox": "prod",
                "ims_url": base_url,
                "platform_url": base_url,
            },
        }
    )
    return out


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """``python -m airflow_provider_aep.testing --port 0 ARGS`` in its own process; yields its base URL."""
    code = (
        "import resource, runpy, sys\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))\n"
        "sys.argv = ['aep-emulator'] + sys.argv[1:]\n"
        "runpy.run_module('airflow_provider_aep.testing', run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"the emulator did not start (first line {base_url!r})")
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_json(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    """Run a child that prints one JSON object on its last stdout line."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON from {cmd[:3]}:\nstdout={done.stdout[-2000:]}\nstderr={done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["_wall_s"] = wall
    return result
