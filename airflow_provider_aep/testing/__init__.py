"""Offline Adobe Experience Platform emulator: test your AEP DAGs offline.

A stateful, in-memory emulator of the AEP APIs the provider uses (IMS, Schema
Registry, Catalog, Flow Service, Data Prep), on one loopback address::

    from airflow_provider_aep.testing import AEPEmulator, FaultConfig

    with AEPEmulator(time_scale=3600) as aep:
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = aep.connection_json()
        ...

Command line: ``python -m airflow_provider_aep.testing --port 0`` (or ``aep-emulator``).
pytest: ``pytest_plugins = ["airflow_provider_aep.testing.pytest_plugin"]`` gives the
``aep_emulator`` fixture.

Importing this package needs only the standard library (jsonschema is loaded on the
first flow validation, google-re2 on the first ``~`` filter) and never imports Airflow.
"""

from airflow_provider_aep.testing.faults import FaultConfig
from airflow_provider_aep.testing.runs import RunOutcome
from airflow_provider_aep.testing.server import AEPEmulator, RequestRecord
from airflow_provider_aep.testing.specs import (
    CRM_TO_AEP_FLOW_SPEC_ID,
    DATA_LAKE_SPEC_ID,
    ODATA_SPEC_ID,
)

__all__ = [
    "CRM_TO_AEP_FLOW_SPEC_ID",
    "DATA_LAKE_SPEC_ID",
    "ODATA_SPEC_ID",
    "AEPEmulator",
    "FaultConfig",
    "RequestRecord",
    "RunOutcome",
]
