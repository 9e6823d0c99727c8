"""
PostgreSQL and Redis for one test run: from Debian's packages (installed when missing), each in a
directory of its own under a throwaway root, on a free loopback port, as a normal user (their packages'
``postgres`` and ``redis`` users when this runs as root), stopped by PID at the end.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg2

from airflow_provider_aep.testing.standalone import ProcessGroup, free_port

DEBIAN_PACKAGES = ("postgresql", "redis-server")
POLICY_RC = Path("/usr/sbin/policy-rc.d")
START_TIMEOUT = 60.0

APT_LOCK = "/tmp/airflow-provider-aep-apt.lock"


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def ensure_debian_packages() -> None:
    """``apt-get install`` PostgreSQL and Redis unless they are there; their services are not started."""
    if _postgres_bindir() and shutil.which("redis-server"):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"PostgreSQL or Redis is missing; install {' '.join(DEBIAN_PACKAGES)} (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A policy-rc.d that says 101 keeps the packages from starting their own system-wide server on 5432/6379.
    added_policy = not POLICY_RC.exists()
    if added_policy:
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        with open(APT_LOCK, "w") as lock:  # CI runs suites side by side; the Makefile takes the same lock
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", *DEBIAN_PACKAGES], env=env, check=True)
    finally:
        if added_policy:
            POLICY_RC.unlink()


def _run_as(user: str) -> dict[str, str]:
    """Popen arguments running a server as ``user`` when we are root (PostgreSQL refuses to run as root)."""
    return {"user": user, "group": user, "extra_groups": []} if os.geteuid() == 0 else {}


def _owned_dir(path: Path, user: str) -> Path:
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def _wait(what: str, ready, server: ProcessGroup) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.running():
            raise RuntimeError(f"{what} exited ({server.proc.returncode}):\n{server.tail()}")
        try:
            if ready():
                return
        except (OSError, psycopg2.Error):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT:.0f} s:\n{server.tail()}")


class PostgreSQL:
    """A fresh cluster (trust auth on loopback only, durability off: it is thrown away), one database."""

    user = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: clients are disconnected, not waited for

    def __init__(self, root: Path, database: str = "airflow", role: str = "airflow") -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        self.port = free_port()
        self.database = database
        self.role = role
        home = _owned_dir(root / "postgresql", self.user)
        data = home / "data"
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", role, "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=home,
            **_run_as(self.user),
        )
        self.server = ProcessGroup(
            "postgres",
            [
                str(bindir / "postgres"),
                *("-D", str(data), "-p", str(self.port), "-k", str(home)),
                *("-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"),
                *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            ],
            {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
            home,
            root / "postgresql.log",
            **_run_as(self.user),
        )
        _wait("PostgreSQL", lambda: self._connect("postgres").close() is None, self.server)
        admin = self._connect("postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database}"')
        admin.close()

    def _connect(self, database: str):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.role, dbname=database)

    def connect(self):
        return self._connect(self.database)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.role}@127.0.0.1:{self.port}/{self.database}"


class Redis:
    """A Redis with no persistence, on loopback."""

    user = "redis"
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        home = _owned_dir(root / "redis", self.user)
        self.server = ProcessGroup(
            "redis-server",
            [
                str(shutil.which("redis-server") or "redis-server"),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(home)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            {"PATH": os.environ.get("PATH", "")},
            home,
            root / "redis.log",
            **_run_as(self.user),
        )
        _wait("Redis", self._ping, self.server)

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
