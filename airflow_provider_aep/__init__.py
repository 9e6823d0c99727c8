"""Apache Airflow provider for Adobe Experience Platform (AEP) source-ingestion pipelines."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_INTEGRATION = "Adobe Experience Platform"
# What the connection form's schema allows (the hook itself checks the @AdobeOrg suffix when it reads the
# connection): Airflow 3.3's form does not enforce a pattern yet, a later form or tool reading the schema may.
ORG_ID_PATTERN = r"^[^@\s]+@AdobeOrg$"


_ASSET_URIS = [
    {
        "schemes": ["aep"],
        "handler": "airflow_provider_aep.assets.aep.sanitize_uri",
        "factory": "airflow_provider_aep.assets.aep.create_asset",
        "to_openlineage_converter": "airflow_provider_aep.assets.aep.convert_asset_to_openlineage",
    }
]


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""
    from airflow_provider_aep.utils.defaults import (
        DEFAULT_IMS_URL,
        DEFAULT_PLATFORM_URL,
        DEFAULT_SANDBOX,
        DEFAULT_SCOPES,
    )

    return {
        "package-name": "airflow-provider-aep",
        "name": "Adobe Experience Platform",
        "description": "Provision and monitor Adobe Experience Platform source-ingestion pipelines "
        "(XDM schemas, datasets, connections, mapping sets, dataflows and their runs).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://experienceleague.adobe.com/en/docs/experience-platform/sources/home",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_aep.hooks.aep", "airflow_provider_aep.hooks.aep_async"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_aep.operators.schema_registry",
                    "airflow_provider_aep.operators.catalog",
                    "airflow_provider_aep.operators.flow_service",
                    "airflow_provider_aep.operators.conversion",
                    "airflow_provider_aep.operators.teardown",
                    "airflow_provider_aep.operators.flow_run",
                ],
            }
        ],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_aep.sensors.flow_run"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_aep.triggers.flow_run"]}],
        "connection-types": [
            {
                "connection-type": "aep",
                "hook-class-name": "airflow_provider_aep.hooks.aep.AEPHook",
                "hook-name": "Adobe Experience Platform",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "extra"],
                    "relabeling": {"login": "Client ID", "password": "Client secret"},
                    "placeholders": {
                        "login": "OAuth Server-to-Server client ID (API key) from Adobe Developer Console",
                        "password": "OAuth Server-to-Server client secret",
                    },
                },
                # Airflow 3's form renders these as Param widgets: "default" would be a value the user must
                # delete, so defaults are offered as "examples" (a list to pick from) and named in the
                # description; an empty field means the default. A non-null "type" makes a field required.
                "conn-fields": {
                    "org_id": {
                        "label": "IMS Org ID",
                        "description": "Required. Your IMS organization id, e.g. ABCDEF1234567890@AdobeOrg.",
                        "schema": {"type": "string", "pattern": ORG_ID_PATTERN},
                    },
                    "sandbox": {
                        "label": "Sandbox name",
                        "description": f"Sandbox name in lowercase. When empty: {DEFAULT_SANDBOX}.",
                        "schema": {"type": ["string", "null"], "examples": [DEFAULT_SANDBOX]},
                    },
                    "scopes": {
                        "label": "Scopes",
                        "description": "Comma-separated OAuth scopes, as shown in Adobe Developer Console. "
                        f"When empty: {DEFAULT_SCOPES}.",
                        "schema": {"type": ["string", "null"], "examples": [DEFAULT_SCOPES]},
                    },
                    "ims_url": {
                        "label": "IMS URL",
                        "description": f"Adobe IMS base URL. When empty: {DEFAULT_IMS_URL}.",
                        "schema": {"type": ["string", "null"], "examples": [DEFAULT_IMS_URL]},
                    },
                    "platform_url": {
                        "label": "Platform URL",
                        "description": f"AEP Platform gateway base URL. When empty: {DEFAULT_PLATFORM_URL}.",
                        "schema": {"type": ["string", "null"], "examples": [DEFAULT_PLATFORM_URL]},
                    },
                    "access_token": {
                        "label": "Access token (optional)",
                        "description": "A pre-issued bearer token, used instead of the client secret. "
                        "When empty: tokens come from IMS for the client ID and secret.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            }
        ],
        "asset-uris": _ASSET_URIS,
        "dataset-uris": _ASSET_URIS,  # what Airflow 2 reads
        "extra-links": [
            "airflow_provider_aep.links.aep.AEPDataflowLink",
            "airflow_provider_aep.links.aep.AEPFlowRunLink",
        ],
        "config": {
            "aep": {
                "description": "Settings of the Adobe Experience Platform provider.",
                "options": {
                    "token_cache_on_disk": {
                        "description": "Share IMS access tokens between the processes of a host (task processes, "
                        "triggerers) through files only this user can read, so that a host asks IMS for a token "
                        "once per token lifetime instead of once per task process. Each file holds a token, its "
                        "expiry and its IMS URL, client id and scopes, never the client secret. False: every "
                        "process fetches its own token. See docs/running-at-scale.md, 'IMS tokens'.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "token_cache_dir": {
                        "description": "Directory of those files, created with mode 0700; a directory that other "
                        "users can enter, or that another user owns, is not used. Empty: "
                        "$XDG_CACHE_HOME/airflow-provider-aep/tokens (~/.cache/airflow-provider-aep/tokens).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/cache/airflow/aep-tokens",
                        "default": "",
                    },
                },
            }
        },
    }
