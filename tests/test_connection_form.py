"""The `aep` connection form as Airflow 3 builds it from the provider info: nothing prefilled that the user must
delete, the hook's defaults offered and named, the org id required, the standard fields relabelled or hidden."""

from __future__ import annotations

import json
import re

import pytest

from airflow_provider_aep import ORG_ID_PATTERN, get_provider_info
from airflow_provider_aep.exceptions import AEPConnectionConfigError
from airflow_provider_aep.utils import defaults
from airflow_provider_aep.utils.connection import EXTRA_FIELDS, AEPConnectionConfig

CONNECTION_TYPE = get_provider_info()["connection-types"][0]
FIELDS = CONNECTION_TYPE["conn-fields"]
HOOK_DEFAULTS = {
    "sandbox": defaults.DEFAULT_SANDBOX,
    "scopes": defaults.DEFAULT_SCOPES,
    "ims_url": defaults.DEFAULT_IMS_URL,
    "platform_url": defaults.DEFAULT_PLATFORM_URL,
}


class _Conn:
    def __init__(self, org_id: str) -> None:
        self.conn_id, self.login, self.password = "aep_form", "client", "secret"
        self.extra = json.dumps({"org_id": org_id})


def test_the_form_has_a_field_for_each_extra_the_hook_reads():
    assert tuple(FIELDS) == EXTRA_FIELDS


def test_no_field_is_prefilled_and_each_default_is_offered_and_named():
    for name, field in FIELDS.items():
        assert "default" not in field["schema"], name  # Airflow would fill it in as the field's value
    for name, default in HOOK_DEFAULTS.items():
        field = FIELDS[name]
        assert field["schema"]["examples"] == [default], name  # the form lists it as a suggestion
        assert f"When empty: {default}." in field["description"], name
        assert "null" in field["schema"]["type"], name  # optional: empty means the default


def test_an_empty_optional_field_means_the_hooks_default():
    config = AEPConnectionConfig.from_connection(_Conn("ABC123@AdobeOrg"))
    assert {name: getattr(config, name) for name in HOOK_DEFAULTS} == HOOK_DEFAULTS


def test_the_org_id_is_required_in_the_form_and_its_pattern_matches_what_the_hook_accepts():
    schema = FIELDS["org_id"]["schema"]
    assert schema["type"] == "string"  # no "null": Airflow's form marks the field required
    assert schema["pattern"] == ORG_ID_PATTERN
    for good in ("ABCDEF1234567890@AdobeOrg", "EMULATOR00000000000000000@AdobeOrg"):
        assert re.search(ORG_ID_PATTERN, good)
        assert AEPConnectionConfig.from_connection(_Conn(good)).org_id == good
    for bad in ("ABCDEF1234567890", "ABCDEF1234567890@adobeorg", "ABC@AdobeOrg.com"):
        assert not re.search(ORG_ID_PATTERN, bad)
        with pytest.raises(AEPConnectionConfigError, match="org_id"):
            AEPConnectionConfig.from_connection(_Conn(bad))
    assert not re.search(ORG_ID_PATTERN, "two words@AdobeOrg")


def test_secrets_are_password_fields_and_standard_fields_are_relabelled_or_hidden():
    assert FIELDS["access_token"]["schema"]["format"] == "password"
    behaviour = CONNECTION_TYPE["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"login": "Client ID", "password": "Client secret"}
    assert set(behaviour["placeholders"]) == {"login", "password"}
    assert set(behaviour["hidden-fields"]) == {"host", "schema", "port", "extra"}


def test_what_airflow_serves_to_the_connection_form():
    from packaging.version import Version

    from airflow_provider_aep.version_compat import AIRFLOW_BASE_VERSION

    if Version("3.2") > AIRFLOW_BASE_VERSION:
        pytest.skip("Airflow builds the form from conn-fields since 3.2; before, from the hook's legacy widgets")
    from airflow.api_fastapi.core_api.services.ui import connections as services

    (meta,) = [m for m in services.HookMetaService.hook_meta_data() if m.connection_type == "aep"]
    extra = meta.extra_fields
    assert {name: field["value"] for name, field in extra.items()} == dict.fromkeys(EXTRA_FIELDS)
    assert extra["org_id"]["schema"]["title"] == "IMS Org ID"
    assert extra["sandbox"]["schema"]["examples"] == [defaults.DEFAULT_SANDBOX]
    standard = meta.standard_fields
    assert standard.login.title == "Client ID" and standard.login.placeholder
    assert standard.password.title == "Client secret" and standard.password.placeholder
    assert standard.host.hidden and standard.port.hidden and standard.url_schema.hidden
