"""Apache Airflow provider for Adobe Experience Platform (AEP) source-ingestion pipelines."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_INTEGRATION = "Adobe Experience Platform"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""
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
                "conn-fields": {
                    "org_id": {
                        "label": "IMS Org ID",
                        "description": "Your IMS organization id, ending in @AdobeOrg (required).",
                        "schema": {"type": ["string", "null"], "pattern": "^.+@AdobeOrg$"},
                    },
                    "sandbox": {
                        "label": "Sandbox name",
                        "description": "Sandbox name in lowercase.",
                        "schema": {"type": ["string", "null"], "default": "prod"},
                    },
                    "scopes": {
                        "label": "Scopes",
                        "description": "Comma-separated OAuth scopes, as shown in Adobe Developer Console.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
                        },
                    },
                    "ims_url": {
                        "label": "IMS URL",
                        "description": "Adobe IMS base URL.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "https://ims-na1.adobelogin.com",
                            "format": "url",
                        },
                    },
                    "platform_url": {
                        "label": "Platform URL",
                        "description": "AEP Platform gateway base URL.",
                        "schema": {"type": ["string", "null"], "default": "https://platform.adobe.io", "format": "url"},
                    },
                    "access_token": {
                        "label": "Access token (optional)",
                        "description": "A pre-issued bearer token used instead of client credentials.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            }
        ],
        "extra-links": [
            "airflow_provider_aep.links.aep.AEPDataflowLink",
            "airflow_provider_aep.links.aep.AEPFlowRunLink",
        ],
    }
