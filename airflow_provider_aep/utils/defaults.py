"""The `aep` connection's defaults, importable without Airflow: `get_provider_info()` shows them in the
connection form, and Airflow calls it while Airflow itself is still being imported."""

from __future__ import annotations

DEFAULT_SANDBOX = "prod"
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_PLATFORM_URL = "https://platform.adobe.io"
