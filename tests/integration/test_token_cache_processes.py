"""
Task processes of one host share one IMS token through the token files: real processes, each with its own
AEPHook and nothing in memory from the others, against the emulator.

Each process imports the hook, says ``worker: ready``, then makes one AEP call each time the test creates its
next ``go.N`` file, saying ``worker: done N`` (Airflow's own log lines go to the same stdout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_aep.testing import AEPEmulator
from tests.conftest import PIPELINE_KINDS

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys, time
from pathlib import Path
from airflow_provider_aep.hooks.aep import AEPHook

go, rounds = Path(sys.argv[1]), int(sys.argv[2])
print("worker: ready", flush=True)
for n in range(rounds):
    while not go.with_name(f"go.{n}").exists():
        time.sleep(0.01)
    AEPHook(retry_limit=0).get_stats()
    print(f"worker: done {n}", flush=True)
"""
EXIT_TIMEOUT = 15.0


class Workers:
    def __init__(self, count: int, rounds: int, emu: AEPEmulator, tokens: Path, directory: Path) -> None:
        directory.mkdir()
        self.go = directory / "go"
        env = {
            **os.environ,
            "AIRFLOW_CONN_AEP_DEFAULT": emu.connection_json(),
            "AIRFLOW__AEP__TOKEN_CACHE_DIR": str(tokens),
        }
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(self.go), str(rounds)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def expect(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            said = [""]
            while not said[-1].startswith("worker: "):
                said.append(proc.stdout.readline())
                if not said[-1]:  # the worker exited
                    break
            if said[-1].strip() != f"worker: {line}":
                proc.kill()
                pytest.fail(
                    f"a worker did not say {line!r}:\n{''.join(said)}{proc.stderr.read() if proc.stderr else ''}"
                )

    def round(self, n: int) -> None:
        self.go.with_name(f"go.{n}").touch()
        self.expect(f"done {n}")

    def stop(self) -> None:
        """After the last round each worker exits by itself; after a failure, one waiting for a round is killed."""
        for proc in self.procs:
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def ims_calls(emu: AEPEmulator) -> int:
    return sum(1 for r in emu.request_log if r.service == "ims")


def stored_token(tokens: Path) -> str:
    (path,) = tokens.glob("*.json")
    return str(json.loads(path.read_text())["access_token"])


@pytest.fixture
def tokens(tmp_path) -> Path:
    return tmp_path / "tokens"


def one_process(emu: AEPEmulator, tokens: Path, directory: Path) -> None:
    workers = Workers(1, 1, emu, tokens, directory)
    try:
        workers.expect("ready")
        workers.round(0)
    finally:
        workers.stop()


def test_a_second_process_uses_the_first_ones_token(tmp_path, tokens):
    with AEPEmulator() as emu:
        one_process(emu, tokens, tmp_path / "first")
        one_process(emu, tokens, tmp_path / "second")
        assert ims_calls(emu) == 1
        assert stored_token(tokens) == emu.issued_tokens[0]
        assert emu.client_secret not in "".join(p.read_text() for p in tokens.iterdir())
        assert sum(1 for r in emu.request_log if r.path.endswith("/stats") and r.status == 200) == 2


def test_processes_finding_no_token_together_make_one_ims_call(tmp_path, tokens):
    # IMS answers in 1 s, so the four processes all ask for a token while the first one waits for its answer.
    with AEPEmulator(latency=1.0) as emu:
        workers = Workers(4, 1, emu, tokens, tmp_path / "workers")
        try:
            workers.expect("ready")
            workers.round(0)
        finally:
            workers.stop()
        assert ims_calls(emu) == 1


def test_a_revoked_token_is_dropped_from_the_file_and_each_process_refreshes(tmp_path, tokens):
    with AEPEmulator() as emu:
        workers = Workers(2, 2, emu, tokens, tmp_path / "workers")
        try:
            workers.expect("ready")
            workers.round(0)  # both hold the first token in memory now
            assert ims_calls(emu) == 1
            first = stored_token(tokens)
            emu.revoke_tokens()
            workers.round(1)  # each is refused once (401), and the two get one new token between them
        finally:
            workers.stop()
        stats = [r.status for r in emu.request_log if r.path.endswith("/stats")]
        assert sorted(stats) == [200, 200, 200, 200, 401, 401], stats
        assert ims_calls(emu) == 2
        assert stored_token(tokens) == emu.issued_tokens[1] != first
        assert [kind for kind in PIPELINE_KINDS if emu.snapshot()["prod"][kind]] == []  # reads only


def test_a_corrupt_token_file_is_read_past_and_replaced(tmp_path, tokens):
    with AEPEmulator() as emu:
        one_process(emu, tokens, tmp_path / "first")
        (path,) = tokens.glob("*.json")
        path.write_text('{"access_token": "tok')  # as a full disk could leave it
        one_process(emu, tokens, tmp_path / "second")
        assert ims_calls(emu) == 2
        assert stored_token(tokens) == emu.issued_tokens[1]
