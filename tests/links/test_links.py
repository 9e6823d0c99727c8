"""Extra links come from XCom only: no connection lookup, no API call."""

from __future__ import annotations

import pytest

from airflow_provider_aep.links.aep import AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
from airflow_provider_aep.operators.flow_service import AEPCreateFlowOperator
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor


@pytest.fixture
def xcom(monkeypatch):
    store: dict[str, object] = {}
    calls: list[tuple[object, str]] = []

    def get_value(*, ti_key, key):
        calls.append((ti_key, key))
        return store.get(key)

    monkeypatch.setattr("airflow_provider_aep.links.aep.XCom.get_value", staticmethod(get_value))
    return store, calls


def test_dataflow_link_reads_the_pushed_url(xcom, requests_mock, monkeypatch):
    store, calls = xcom
    store["dataflow_url"] = (
        "https://experience.adobe.com/#/@O@AdobeOrg/sname:prod/platform/source/dataflows/f1/activity"
    )
    monkeypatch.delenv("AIRFLOW_CONN_AEP_DEFAULT", raising=False)  # a lookup would fail loudly
    link = AEPDataflowLink().get_link(None, ti_key="ti-key")
    assert link == store["dataflow_url"]
    assert calls == [("ti-key", "dataflow_url")]
    assert requests_mock.request_history == []


def test_links_are_empty_until_the_url_is_known(xcom):
    assert AEPDataflowLink().get_link(None, ti_key="k") == ""
    assert AEPFlowRunLink().get_link(None, ti_key="k") == ""


def test_run_link_reads_the_run_url(xcom):
    store, _ = xcom
    store["run_url"] = "https://experience.adobe.com/#/@O@AdobeOrg/sname:prod/platform/source/dataflows/f1/activity/r1"
    assert AEPFlowRunLink().get_link(None, ti_key="k") == store["run_url"]


@pytest.mark.parametrize(
    ("operator", "names"),
    [
        (AEPCreateFlowOperator, {"AEP Dataflow"}),
        (AEPFlowRunSensor, {"AEP Dataflow", "AEP Flow Run"}),
        (AEPRunFlowOperator, {"AEP Dataflow", "AEP Flow Run"}),
    ],
)
def test_operators_carry_their_links(operator, names):
    assert {link.name for link in operator.operator_extra_links} == names
