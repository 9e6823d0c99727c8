"""
A distributed Airflow 3 on loopback: the CeleryExecutor on PostgreSQL with Redis as broker, one api-server,
scheduler and dag-processor, two Celery workers and two triggerers, each a process group of its own that
the scenario can SIGKILL (a crashed host) or restart, and every one stopped by PID at the end.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from cryptography.fernet import Fernet

from airflow_provider_aep.testing import AEPEmulator
from airflow_provider_aep.testing.standalone import ProcessGroup, airflow_cli, airflow_env, free_port, stop_all
from tests.distributed.services import PostgreSQL, Redis

WORKER_CONCURRENCY = 8  # task processes per worker
MIGRATE_TIMEOUT = 240.0

# Airflow's own recovery, made quick enough to watch within minutes; nothing here is provider-specific.
RECOVERY_SETTINGS = {
    # A task whose worker died is failed by the scheduler once its heartbeats stop, then retried.
    "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # Tasks a dead worker had taken from the broker but not started are sent again.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
    # A triggerer that stops heart-beating loses its triggers to the other after this many seconds.
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
}


class CeleryDeployment:
    """Start with :meth:`start`; :meth:`stop` ends every process it started, even after a failure."""

    def __init__(self, root: Path, dags_folder: Path, emu: AEPEmulator) -> None:
        self.root = root
        self.home = root / "airflow_home"
        self.home.mkdir()
        self.logs = self.home / "logs"
        self.postgres: PostgreSQL | None = None
        self.redis: Redis | None = None
        self.port = free_port()
        self.dags_folder = dags_folder
        self.emu = emu
        self.fernet_key = Fernet.generate_key().decode()
        self.processes: dict[str, ProcessGroup] = {}
        self.retired: list[ProcessGroup] = []  # killed or replaced, still stopped (and checked) at the end
        self.env: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_services(self) -> None:
        self.postgres = PostgreSQL(self.root)
        self.redis = Redis(self.root)
        self.env = airflow_env(
            self.home,
            self.port,
            self.dags_folder,
            connection_json=self.emu.connection_json(),
            overrides={
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.postgres.url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,  # trigger kwargs are encrypted: one key for all
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                **RECOVERY_SETTINGS,
            },
        )

    def migrate(self) -> None:
        log = self.root / "db-migrate.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [str(airflow_cli()), "db", "migrate"],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=MIGRATE_TIMEOUT,
            )
        if result.returncode:
            raise RuntimeError(f"airflow db migrate failed ({result.returncode}):\n{log.read_text()[-3000:]}")

    def launch(self, name: str, *args: str, **env: str) -> ProcessGroup:
        """Start ``airflow <args>`` as ``name`` (a killed process of that name is kept for the final stop)."""
        if name in self.processes:
            self.retired.append(self.processes.pop(name))
        logs = self.root / "process-logs"
        logs.mkdir(exist_ok=True)
        attempt = sum(1 for p in self.retired if p.name == name) + 1
        process = ProcessGroup(
            name,
            [str(airflow_cli()), *args],
            {**self.env, **env},
            self.root,
            logs / f"{name}.{attempt}.log",
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> ProcessGroup:
        # Each worker serves its task logs on a port of its own, as on a host of its own.
        return self.launch(
            name,
            *("celery", "worker", "--celery-hostname", f"{name}@%h"),
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        )

    def start_triggerer(self, name: str) -> ProcessGroup:
        return self.launch(name, "triggerer", AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()))

    def died(self) -> str | None:
        """The first process that exited on its own, if any."""
        dead = [p for p in self.processes.values() if not p.running()]
        return f"{dead[0].name} exited ({dead[0].proc.returncode}):\n{dead[0].tail(40)}" if dead else None

    def kill(self, name: str) -> list[int]:
        """SIGKILL ``name`` and every process it started (its task or trigger processes too)."""
        process = self.processes.pop(name)
        self.retired.append(process)
        return process.kill()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {p.name} (pid {p.pid}) log tail ---\n{p.tail(lines)}"
            for p in [*self.processes.values(), *self.retired]
        )

    def stop(self) -> tuple[list[str], list[str]]:
        """
        Stop every Airflow process at once, then Redis and PostgreSQL; returns the command lines that needed
        SIGKILL and those that survived it.
        """
        killed, survivors = stop_all([(p, signal.SIGTERM) for p in [*self.processes.values(), *self.retired]])
        k, s = stop_all([(service.server, service.stop_signal) for service in (self.redis, self.postgres) if service])
        return killed + k, survivors + s
