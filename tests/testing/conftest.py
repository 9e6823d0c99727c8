"""Fixtures for the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_helpers import AEPClient

from airflow_provider_aep.testing import AEPEmulator

# Re-exported so the plugin's fixture is exercised exactly as users get it.
from airflow_provider_aep.testing.pytest_plugin import aep_emulator, pytest_configure  # noqa: F401


@pytest.fixture
def emu() -> Iterator[AEPEmulator]:
    """Fast clock: one emulated hour per real second; runs stay inProgress for at least 0.4 s."""
    with AEPEmulator(time_scale=3600, min_run_seconds=0.4, sandboxes=("prod", "dev"), seed=7) as emulator:
        yield emulator


@pytest.fixture
def client(emu: AEPEmulator) -> Iterator[AEPClient]:
    c = AEPClient(emu)
    yield c
    c.close()
