"""The ``aep`` Asset URI scheme: Airflow finds its handler, factory and OpenLineage converter through the
provider info, and normalizes and validates every ``aep`` Asset with it."""

from __future__ import annotations

import json
import urllib.parse
import warnings

import pytest

from airflow_provider_aep.assets import aep
from airflow_provider_aep.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS
from tests.conftest import airflow_3

ORG = "ABCDEF1234567890@AdobeOrg"
URI = "aep://ABCDEF1234567890%40AdobeOrg/prod/datasets/5f1a2b3c"


def _providers_manager():
    try:  # where tasks and DAG parsing look the scheme up (Airflow 3.2+)
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[no-redef]
    return Manager()


def test_airflow_registers_the_handler_factory_and_converter_of_the_scheme():
    manager = _providers_manager()
    if airflow_3():
        handlers, factories, converters = (
            manager.asset_uri_handlers,
            manager.asset_factories,
            manager.asset_to_openlineage_converters,
        )
    else:  # Airflow 2 reads `dataset-uris`
        handlers, factories, converters = (
            manager.dataset_uri_handlers,
            manager.dataset_factories,
            manager.dataset_to_openlineage_converters,
        )
    assert handlers["aep"] is aep.sanitize_uri
    assert factories["aep"] is aep.create_asset
    assert converters["aep"] is aep.convert_asset_to_openlineage


def test_dataset_uri_writes_the_orgs_at_sign_as_percent_40_and_lowercases_the_sandbox():
    assert aep.dataset_uri(ORG, "Prod", "5f1a2b3c") == URI
    assert aep.parse_dataset_uri(URI) == (ORG, "prod", "5f1a2b3c")


def test_an_asset_with_an_aep_uri_is_normalized_by_the_providers_handler():
    asset = aep.asset_class()(uri="aep://ABCDEF1234567890%40AdobeOrg/PROD/datasets/5f1a2b3c/")
    assert asset.uri == URI
    if airflow_keeps_user_names():  # Airflow 2 and 3.0 drop a bare "@" as user info before the handler runs
        assert aep.asset_class()(uri=f"aep://{ORG}/prod/datasets/5f1a2b3c").uri == URI


def airflow_keeps_user_names() -> bool:
    """Whether this Airflow hands an Asset URI's user name to the scheme's handler (apache/airflow#57650)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return "@" in aep.asset_class()(uri="probe://user@host/path").uri


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("aep://ABCDEF/prod/datasets/x", "IMS org id"),
        ("aep://ABC%40AdobeOrg/prod/x", "has the form"),
        ("aep://ABC%40AdobeOrg/prod/datasets/", "has the form"),
        ("aep://ABC%40AdobeOrg/pr_od/datasets/x", "letters, digits and hyphens"),
        ("aep://ABC%40AdobeOrg/prod/datasets/x?y=1", "no query"),
    ],
)
def test_a_malformed_uri_is_refused_naming_the_rule(uri, rule):
    with pytest.raises(ValueError, match=rule):
        aep.sanitize_uri(urllib.parse.urlsplit(uri))
    if airflow_3():  # Airflow 2 only warns unless strict_dataset_uri_validation is set
        with pytest.raises(ValueError, match=rule):
            aep.asset_class()(uri=uri)


def test_the_factory_makes_the_asset_of_a_dataset():
    asset = aep.create_asset(org_id=ORG, sandbox="prod", dataset_id="5f1a2b3c", extra={"team": "crm"})
    assert asset.uri == URI and asset.extra == {"team": "crm"}


def test_the_openlineage_dataset_is_the_uri_split_into_namespace_and_name():
    dataset = aep.convert_asset_to_openlineage(aep.create_asset(org_id=ORG, sandbox="prod", dataset_id="d1"), None)
    assert (dataset.namespace, dataset.name) == ("aep://ABCDEF1234567890%40AdobeOrg", "prod/datasets/d1")
    assert f"{dataset.namespace}/{dataset.name}" == aep.dataset_uri(ORG, "prod", "d1")


def test_an_alias_event_extra_is_one_this_airflow_can_freeze_and_it_keeps_every_value():
    extra = {"run_id": "r1", "records": {"input": 3, "failed": 0}, "batch_ids": ["b1", "b2"], "errors": [{"code": "X"}]}
    carried = aep.alias_event_extra(extra)
    stored = json.loads(json.dumps(carried))  # what the API server and the database get
    if not AIRFLOW_V_3_1_PLUS:  # Airflow 2.11 freezes it in the task's process, 3.0 on the API server
        frozen = stored if AIRFLOW_V_3_0_PLUS else carried
        assert dict(frozenset(frozen.items())) == frozen  # with a dict or list among the values this raises
    if AIRFLOW_V_3_0_PLUS and not AIRFLOW_V_3_1_PLUS:  # objects and arrays as JSON text
        assert stored["records"] == '{"input": 3, "failed": 0}'
        stored = {key: json.loads(v) if key != "run_id" else v for key, v in stored.items()}
    assert stored == extra
