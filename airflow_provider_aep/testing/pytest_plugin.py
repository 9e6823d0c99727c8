"""pytest plugin: the ``aep_emulator`` fixture.

Enable it in a root ``conftest.py``::

    pytest_plugins = ["airflow_provider_aep.testing.pytest_plugin"]

The fixture is function-scoped and yields a started :class:`AEPEmulator`. Constructor
arguments come from an optional marker::

    @pytest.mark.aep_emulator(time_scale=3600, faults=FaultConfig(rate=0.2, seed=1))
    def test_something(aep_emulator): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_aep.testing.server import AEPEmulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "aep_emulator(**kwargs): constructor arguments of the aep_emulator fixture")


@pytest.fixture
def aep_emulator(request: pytest.FixtureRequest) -> Iterator[AEPEmulator]:
    marker = request.node.get_closest_marker("aep_emulator")
    kwargs = dict(marker.kwargs) if marker else {}
    with AEPEmulator(**kwargs) as emulator:
        yield emulator
