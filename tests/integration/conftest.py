from __future__ import annotations

import pytest

from airflow_provider_aep.testing import AEPEmulator


@pytest.fixture
def emulator(monkeypatch):
    """An emulator the ``aep_default`` connection points at (one emulated hour per real second)."""
    with AEPEmulator(time_scale=3600, seed=11) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emu.connection_json())
        yield emu
