"""The defaults of the `aep` connection and the tasks, importable without Airflow: `get_provider_info()` shows
them in the connection form, and Airflow calls it while Airflow itself is still being imported."""

from __future__ import annotations

DEFAULT_SANDBOX = "prod"
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_PLATFORM_URL = "https://platform.adobe.io"

DEFAULT_CONN_ID = "aep_default"
# The Data Lake destination of every source dataflow (the target connection's spec).
DATA_LAKE_CONNECTION_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
