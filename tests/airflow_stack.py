"""
What the tests that start real Airflow processes (``tests/integration/test_full_stack.py``,
``tests/distributed/``) add to :mod:`airflow_provider_aep.testing.standalone`: an emulator clock the test
moves, and the Airflow REST API with every wait bounded by one overall deadline.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_aep.testing.standalone import STOP_GRACE_SECONDS, api_token


def check_stopped(killed: list[str], survivors: list[str]) -> None:
    """What ``ProcessGroup.stop()`` returned: none may survive; those SIGTERM did not stop are a warning."""
    assert not survivors, f"Airflow processes survived SIGKILL: {survivors}"
    if killed:
        warnings.warn(
            f"Airflow processes ignored SIGTERM for {STOP_GRACE_SECONDS:.0f} s and were killed: {killed}", stacklevel=3
        )


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
        self.base_url = base_url
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
        token = self.wait_until("the api-server", lambda: api_token(self.base_url))
        self.client.headers["Authorization"] = f"Bearer {token}"

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
