from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "s3cr3t-client-secret-value"
ORG_ID = "ABCDEF1234567890@AdobeOrg"
IMS = "https://ims.example.test"
PLATFORM = "https://platform.example.test"
TOKEN = "tok-AAAA-1111-secret-token"


def conn_json(**extra_overrides):
    extra = {"org_id": ORG_ID, "sandbox": "dev", "ims_url": IMS, "platform_url": PLATFORM}
    extra.update(extra_overrides)
    return json.dumps({"conn_type": "aep", "login": CLIENT_ID, "password": CLIENT_SECRET, "extra": extra})


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    from airflow_provider_aep.utils.http import TOKEN_CACHE

    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def aep_conn(monkeypatch):
    """An `aep_default` connection from the environment (no Airflow DB needed)."""
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json())
    return "aep_default"


@pytest.fixture
def no_sleep(monkeypatch):
    """Record retry back-off sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    return slept


@pytest.fixture
def ims(requests_mock):
    """IMS answering one fresh token per call: tok-1, tok-2, …"""
    counter = {"n": 0}

    def issue(request, context):
        counter["n"] += 1
        return {"access_token": f"{TOKEN}-{counter['n']}", "token_type": "bearer", "expires_in": 86399}

    return requests_mock.post(f"{IMS}/ims/token/v3", json=issue)
