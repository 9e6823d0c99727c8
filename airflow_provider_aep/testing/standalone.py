"""
A real Airflow on this machine, for DAGs that talk to the emulator: :class:`Standalone` is ``airflow
standalone`` (api-server, scheduler with LocalExecutor, dag-processor, triggerer; SQLite) in a home of its own,
on a loopback port; :class:`ProcessGroup` is any one command (an Airflow component, a database) in a session of
its own, stopped or SIGKILLed with every process it started; :func:`airflow_env` is the environment of every
process of one such Airflow.

``make airflow`` (scripts/local_airflow.py), the browser test (``make test-ui``), the full-stack test and the
distributed scenario (``make test-distributed``) start Airflow through this module. Like the rest of
``airflow_provider_aep.testing`` it never imports Airflow: it runs the ``airflow`` command of the current
interpreter's environment.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
STOP_GRACE_SECONDS = 20.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_cli() -> Path:
    """The ``airflow`` command next to this interpreter (the venv's)."""
    return Path(sys.executable).with_name("airflow")


def airflow_env(
    home: Path,
    port: int,
    dags_folder: Path,
    *,
    login: bool = False,
    connection_json: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """
    The environment of an Airflow in ``home`` serving on ``port``: nothing Airflow- or pytest-specific from
    this process. The same environment serves every component (``overrides`` change the executor, the
    database ...) and the ``airflow`` commands run against that Airflow.

    With ``login``, the simple auth manager has one admin, ``USER``, whose password :func:`set_password`
    writes; without, every visitor is an admin and no login is asked. ``connection_json`` becomes
    ``AIRFLOW_CONN_AEP_DEFAULT`` (an environment connection: the UI does not list it).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTEST_", "_AIRFLOW")) and k != "PYTEST_VERSION"
    }
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "PATH": os.pathsep.join([str(airflow_cli().parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor forks this many workers; 2 cores here
            # Example DAGs share the folder (and the emulator): only those unpaused run.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
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
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(not login),
            # The processes of this Airflow share their IMS tokens in its home, not in the user's cache.
            "AIRFLOW__AEP__TOKEN_CACHE_DIR": str(home / "aep-tokens"),
            "NO_COLOR": "1",
        }
    )
    if login:
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{USER}:admin"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(home / PASSWORDS_FILE)
    if connection_json is not None:
        env["AIRFLOW_CONN_AEP_DEFAULT"] = connection_json
    env.update(overrides or {})
    return env


def set_password(home: Path, password: str) -> None:
    """The password of ``USER`` for an Airflow whose environment came from ``airflow_env(login=True)``."""
    fd = os.open(home / PASSWORDS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({USER: password}, out)


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def api_token(base_url: str, password: str | None = None) -> str | None:
    """A bearer token for the REST API, or None while the api-server does not answer yet."""
    import httpx

    try:
        if password is None:  # every visitor is an admin: the token is handed out
            response = httpx.get(f"{base_url}/auth/token", timeout=10.0)
        else:
            response = httpx.post(f"{base_url}/auth/token", json={"username": USER, "password": password}, timeout=10.0)
    except httpx.TransportError:
        return None
    return str(response.json()["access_token"]) if response.status_code in (200, 201) else None


def _alive(p: Any) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class ProcessGroup:
    """
    One command in its own session (its output in ``log_path``); :meth:`stop` ends it and every process it
    started, :meth:`kill` SIGKILLs them at once (a crashed host). ``popen_args`` go to ``subprocess.Popen``
    (``user=`` and ``group=`` run it as another user).
    """

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path, **popen_args: Any
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed once the group is stopped
        self.proc = subprocess.Popen(
            list(argv),
            env=self.env,
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

    def pause(self) -> None:
        """SIGSTOP the process and everything it started: nothing in it runs or starts until :meth:`resume`."""
        self.descendants()
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

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


class Standalone(ProcessGroup):
    """``airflow standalone`` with the environment of :func:`airflow_env`."""

    def __init__(self, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        super().__init__("airflow standalone", [str(airflow_cli()), "standalone"], env, cwd, log_path)
        self.base_url = self.env["AIRFLOW__API__BASE_URL"]

    def wait_for_api(self, timeout: float, password: str | None = None) -> str:
        """Wait until the api-server hands out a token, and return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.died()}:\n{self.tail()}")
            token = api_token(self.base_url, password)
            if token:
                return token
            time.sleep(1.0)
        raise TimeoutError(f"the api-server did not answer within {timeout:.0f} s:\n{self.tail()}")
