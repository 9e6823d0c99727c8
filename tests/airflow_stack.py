"""
Real Airflow processes for the tests that start them (``tests/integration/test_full_stack.py``,
``tests/distributed/``): free loopback ports, an emulator clock the test moves, processes in their own
sessions stopped by PID, and the Airflow REST API with a wait bounded by one overall deadline.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from airflow_provider_aep.testing import AEPEmulator

STOP_GRACE_SECONDS = 20.0


class HeldClock:
    """Real time plus an offset the test moves forward: the emulator's runs progress only when released."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(
    *, home: Path, dags_folder: Path, port: int, emu: AEPEmulator, venv_bin: Path, **settings: str
) -> dict[str, str]:
    """
    The environment of every process of one Airflow deployment on loopback: its home, DAGs, api-server and
    shared secrets, the ``aep_default`` connection to ``emu``; ``settings`` add or override variables.
    """
    # Nothing Airflow- or pytest-specific leaks in from this process (its AIRFLOW_HOME, unit-test mode, ...).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTEST_", "_AIRFLOW")) and k != "PYTEST_VERSION"
    }
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "PATH": os.pathsep.join([str(venv_bin), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Other example DAGs share the folder (and the emulator): only those a test unpauses run.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW_CONN_AEP_DEFAULT": emu.connection_json(),
            "NO_COLOR": "1",
        }
    )
    env.update(settings)
    return env


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _alive(p: Any) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ProcessGroup:
    """
    One command in its own session (its output in ``log_path``); :meth:`stop` ends it and every process it
    started, :meth:`kill` SIGKILLs them at once (a crashed host). ``popen_args`` go to ``subprocess.Popen``
    (``user=`` and ``group=`` run it as another user).
    """

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path, **popen_args: Any
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_args,
        )
        self.pgid = self.proc.pid  # session and group leader
        self._seen: dict[int, Any] = {}  # every descendant seen alive, so one that left the group is not missed

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def died(self) -> str | None:
        """What to report if the process has exited, else None."""
        return None if self.running() else f"{self.name} exited ({self.proc.returncode})"

    def tail(self, lines: int = 80) -> str:
        if not self._log.closed:
            self._log.flush()
        return tail(self.log_path, lines)

    def descendants(self) -> list[Any]:
        """The live processes this one started (all generations); remembered for :meth:`stop`."""
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            found = []
        self._seen.update({p.pid: p for p in found})
        return [p for p in found if _alive(p)]

    def _members(self) -> list[Any]:
        members = []
        for p in psutil.process_iter(["pid", "status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == self.pgid:
                    members.append(p)
            except (ProcessLookupError, psutil.Error, OSError):
                continue
        return members

    def _remaining(self) -> list[Any]:
        found = {p.pid: p for p in self._members()}
        found.update({pid: p for pid, p in self._seen.items() if _alive(p)})
        return list(found.values())

    def _signal_all(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in self._seen.values():
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    def kill(self) -> list[int]:
        """SIGKILL the process and everything it started, now; returns their PIDs."""
        self.descendants()
        victims = sorted({self.proc.pid, *(p.pid for p in self._remaining())})
        self._signal_all(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return victims

    def stop(self, sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS) -> tuple[list[str], list[str]]:
        """
        ``sig`` to the group (and to any descendant that left it), up to ``grace`` seconds, then SIGKILL.

        Returns the command lines that needed SIGKILL, and those still alive after it (should be none).
        """
        return stop_all([(self, sig)], grace)

    def _finish(self) -> tuple[list[str], list[str]]:
        killed = []
        for p in self._remaining():
            try:
                killed.append(" ".join(p.cmdline())[:150])
                p.kill()
            except psutil.Error:
                pass
        self._signal_all(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if not self._log.closed:
            self._log.close()
        survivors = []
        for p in self._remaining():
            try:
                p.wait(timeout=5)
            except psutil.TimeoutExpired:
                survivors.append(" ".join(p.cmdline())[:150])
            except psutil.Error:
                pass
        return killed, survivors


def stop_all(
    groups: Sequence[tuple[ProcessGroup, int]], grace: float = STOP_GRACE_SECONDS
) -> tuple[list[str], list[str]]:
    """
    Stop several process groups at once: each its signal, up to ``grace`` seconds for all, then SIGKILL.

    Returns the command lines that needed SIGKILL, and those still alive after it (should be none).
    """
    for group, sig in groups:
        group.descendants()
        group._signal_all(sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(g.running() or g._remaining() for g, _ in groups):
        time.sleep(0.2)
    killed: list[str] = []
    survivors: list[str] = []
    for group, _ in groups:
        k, s = group._finish()
        killed += k
        survivors += s
    return killed, survivors


class AirflowApi:
    """
    The Airflow REST API (v2), with a token from the simple auth manager. ``check()`` names a process that
    died (or returns None) and ``context()`` the log tails a failure shows.
    """

    def __init__(
        self,
        base_url: str,
        deadline: float,
        *,
        check: Callable[[], str | None],
        context: Callable[[], str],
        label: str = "full stack",
    ) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=15.0)
        self.deadline = deadline
        self.check = check
        self.context = context
        self.label = label
        self.started = time.monotonic()

    def mark(self, phase: str) -> None:
        """Phase timings, in the captured output (shown on failure, or with ``-s``)."""
        print(f"[{self.label}] {time.monotonic() - self.started:6.1f} s  {phase}", flush=True)

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n{self.context()}", pytrace=False)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait_until(self, what: str, probe: Callable[[], Any], interval: float = 1.0) -> Any:
        """Call ``probe()`` until it returns something truthy, within the overall deadline."""
        last: Any = None
        while self.remaining() > 0:
            died = self.check()
            if died:
                self.fail(f"{died} while waiting for {what}")
            try:
                result = probe()
            except httpx.TransportError as exc:  # api-server not listening yet / restarting
                last = exc
            else:
                if result:
                    return result
                last = result
            time.sleep(interval)
        self.fail(f"timed out at the overall deadline waiting for {what} (last: {last!r})")

    def login(self) -> None:
        def token():
            response = self.client.get("/auth/token")
            return response.json()["access_token"] if response.status_code in (200, 201) else None

        self.client.headers["Authorization"] = f"Bearer {self.wait_until('the api-server', token)}"

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(f"/api/v2{path}", params=params or None)

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        if response.status_code != 200:
            self.fail(f"GET {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def send(self, method: str, path: str, body: Any) -> Any:
        response = self.client.request(method, f"/api/v2{path}", json=body)
        if response.status_code not in (200, 201):
            self.fail(f"{method} {path} -> {response.status_code}: {response.text[:1000]}")
        return response.json()

    def wait_for_dag(self, dag_id: str) -> dict[str, Any]:
        """Until ``dag_id`` is parsed (failing on its import errors); then it is unpaused."""

        def dag_ready():
            response = self.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            errors = self.get("/importErrors").json().get("import_errors") if response.status_code == 404 else None
            errors = [e for e in errors or () if Path(e.get("filename") or "").stem == dag_id]
            if errors:
                self.fail(f"{dag_id} has import errors: {errors!r:.3000}")
            return None

        dag = self.wait_until(f"DAG {dag_id} to be parsed", dag_ready)
        if dag["is_paused"]:
            dag = self.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        return dag
