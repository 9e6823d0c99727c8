"""Extra links to the AEP UI. They read XCom only: no connection lookup, no API call in ``get_link``."""

from __future__ import annotations

from typing import Any

from airflow_provider_aep.links.urls import DATAFLOW_URL_KEY, RUN_URL_KEY
from airflow_provider_aep.version_compat import BaseOperatorLink, XCom


class _XComUrlLink(BaseOperatorLink):
    xcom_key: str = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return url if isinstance(url, str) else ""


class AEPDataflowLink(_XComUrlLink):
    """The dataflow's activity page in AEP, from the ``dataflow_url`` XCom the task pushed."""

    name = "AEP Dataflow"
    xcom_key = DATAFLOW_URL_KEY


class AEPFlowRunLink(_XComUrlLink):
    """The flow run's page in AEP, from the ``run_url`` XCom, once the run id is known."""

    name = "AEP Flow Run"
    xcom_key = RUN_URL_KEY
