"""Emulators of AEP, and a hook on one with quick retries, for the integration tests."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.testing import AEPEmulator

# One emulated minute per real second / 15 minutes: a run is scheduled ~0.1 s, in progress >= 1 s.
EMULATOR_ARGS = {"time_scale": 60.0, "run_start_delay": 6.0, "run_duration": 60.0, "min_run_seconds": 1.0}
FAST_RETRIES = {"retry_limit": 8, "retry_delay": 0.01, "max_delay": 0.05, "retry_after_cap": 0.05}


@pytest.fixture
def emulator(monkeypatch):
    """An emulator the ``aep_default`` connection points at, for following runs as they go."""
    with AEPEmulator(**EMULATOR_ARGS) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        yield emu


@pytest.fixture
def pipeline_emulator(monkeypatch):
    """An emulator the ``aep_default`` connection points at (one emulated hour per real second), for whole DAGs."""
    with AEPEmulator(time_scale=3600, seed=11) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        yield emu


@pytest.fixture
def hook(emulator) -> AEPHook:
    return AEPHook(retry_args=FAST_RETRIES)


@pytest.fixture
def trigger_events(monkeypatch) -> list[dict[str, Any]]:
    """The payloads AEPFlowRunTrigger fires: a deferred task resumed in ``execute_complete`` once per event."""
    from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

    fired: list[dict[str, Any]] = []
    real_run = AEPFlowRunTrigger.run

    async def spy_run(self):
        async for event in real_run(self):
            fired.append(event.payload)
            yield event

    monkeypatch.setattr(AEPFlowRunTrigger, "run", spy_run)
    return fired
