"""Fixed, read-only catalogue: connection specs, the CRMToAEP flow spec, global XDM resources.

The CRMToAEP ``transformationSpecs`` and ``scheduleSpec`` are copied from the protocols
tutorial (seed), with the current tutorial's additions: ``once`` in the frequency
enum and the nested ``if/then/else`` (``once`` forbids ``interval``/``backfill``; every
other frequency needs ``interval``, at least 15 for ``minute``). ``endTime`` from the
legacy spec is kept.
"""

from __future__ import annotations

from typing import Any

ODATA_SPEC_ID = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
DATA_LAKE_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
CRM_TO_AEP_FLOW_SPEC_ID = "14518937-270c-4525-bdec-c2ba7cce3860"
CRM_TO_AEP_PROVIDER_ID = "0ed90a81-07f4-4586-8190-b40eccef1c5a"
ADHOC_BEHAVIOR = "https://ns.adobe.com/xdm/data/adhoc"
RECORD_BEHAVIOR = "https://ns.adobe.com/xdm/data/record"
TIME_SERIES_BEHAVIOR = "https://ns.adobe.com/xdm/data/time-series"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
EXPERIENCE_EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"

_PERMISSIONS = {
    "view": [{"@type": "lowLevel", "name": "EnterpriseSource", "permissions": ["read"]}],
    "manage": [{"@type": "lowLevel", "name": "EnterpriseSource", "permissions": ["write"]}],
}

CONNECTION_SPECS: list[dict[str, Any]] = [
    {
        "id": ODATA_SPEC_ID,
        "name": "generic-odata",
        "providerId": CRM_TO_AEP_PROVIDER_ID,
        "version": "1.0",
        "authSpec": [
            {
                "name": "Anonymous Authentication",
                "type": "Anonymous",
                "spec": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "description": "Connect to an OData service without credentials.",
                    "properties": {"url": {"type": "string", "description": "Root URL of the OData service."}},
                    "required": ["url"],
                },
            },
            {
                "name": "Basic Authentication",
                "type": "Basic",
                "spec": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {
                        "url": {"type": "string"},
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                    },
                    "required": ["url", "username", "password"],
                },
            },
        ],
        "sourceSpec": {
            "attributes": {"category": {"key": "protocols"}, "isSource": True},
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "tableName": {"type": "string"},
                    "path": {"type": "string"},
                    "columns": {"type": "array"},
                },
            },
        },
        "exploreSpec": {"name": "Table", "type": "Table"},
        "attributes": {"category": "protocols", "isSource": True, "uiAttributes": {"label": "Generic OData"}},
        "permissionsInfo": _PERMISSIONS,
    },
    {
        "id": DATA_LAKE_SPEC_ID,
        "name": "Data Lake",
        "providerId": "521eee4d-8cbe-4906-bb48-fb6bd4450033",
        "version": "1.0",
        "authSpec": [],
        "targetSpec": {
            "name": "Data Lake",
            "type": "Data Lake",
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"dataSetId": {"type": "string"}},
                "required": ["dataSetId"],
            },
        },
        "attributes": {"isDestination": False, "isSource": False, "category": "platform"},
        "permissionsInfo": _PERMISSIONS,
    },
]

_DRAFT7 = "http://json-schema.org/draft-07/schema#"

CRM_TO_AEP_FLOW_SPEC: dict[str, Any] = {
    "id": CRM_TO_AEP_FLOW_SPEC_ID,
    "name": "CRMToAEP",
    "providerId": CRM_TO_AEP_PROVIDER_ID,
    "version": "1.0",
    "attributes": {
        "isSourceFlow": True,
        "frequency": "batch",
        "notification": {"category": "sources", "flowRun": {"enabled": True}},
    },
    "sourceConnectionSpecIds": [ODATA_SPEC_ID],
    "targetConnectionSpecIds": [DATA_LAKE_SPEC_ID],
    "optionSpec": {
        "name": "OptionSpec",
        "spec": {
            "$schema": _DRAFT7,
            "type": "object",
            "properties": {
                "errorDiagnosticsEnabled": {
                    "title": "Error diagnostics.",
                    "description": "Flag to enable detailed and sample error diagnostics summary.",
                    "type": "boolean",
                    "default": False,
                },
                "partialIngestionPercent": {
                    "title": "Partial ingestion threshold.",
                    "description": "Percentage which defines the threshold of errors allowed before the run is marked as failed.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                },
            },
        },
    },
    "transformationSpecs": [
        {
            "name": "Copy",
            "spec": {
                "$schema": _DRAFT7,
                "type": "object",
                "properties": {
                    "deltaColumn": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "dateFormat": {"type": "string"},
                            "timezone": {"type": "string"},
                        },
                        "required": ["name"],
                    }
                },
                "required": ["deltaColumn"],
            },
        },
        {
            "name": "Mapping",
            "spec": {
                "$schema": _DRAFT7,
                "type": "object",
                "description": "defines various params required for different mapping from source to target",
                "properties": {
                    "mappingId": {"type": "string"},
                    "mappingVersion": {"type": "string"},
                },
            },
        },
    ],
    "scheduleSpec": {
        "name": "PeriodicSchedule",
        "type": "Periodic",
        "spec": {
            "$schema": _DRAFT7,
            "type": "object",
            "properties": {
                "startTime": {"description": "epoch time", "type": "integer"},
                "endTime": {"description": "epoch time", "type": "integer"},
                "interval": {"type": "integer"},
                "frequency": {"type": "string", "enum": ["once", "minute", "hour", "day", "week"]},
                "backfill": {"type": "boolean", "default": True},
            },
            "required": ["startTime", "frequency"],
            "if": {"properties": {"frequency": {"const": "once"}}},
            "then": {"allOf": [{"not": {"required": ["interval"]}}, {"not": {"required": ["backfill"]}}]},
            "else": {
                "required": ["interval"],
                "if": {"properties": {"frequency": {"const": "minute"}}},
                "then": {"properties": {"interval": {"minimum": 15}}},
                "else": {"properties": {"interval": {"minimum": 1}}},
            },
        },
    },
    "runSpec": {
        "name": "ProviderParams",
        "spec": {
            "$schema": _DRAFT7,
            "type": "object",
            "properties": {
                "startTime": {"description": "Unix epoch time", "type": "integer"},
                "windowStartTime": {"description": "Unix epoch time", "type": "integer"},
                "windowEndTime": {"description": "Unix epoch time", "type": "integer"},
                "deltaColumn": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "dateFormat": {"type": "string"},
                        "timezone": {"type": "string"},
                    },
                    "required": ["name"],
                },
            },
            "required": ["startTime", "windowStartTime", "windowEndTime"],
        },
    },
    "permissionsInfo": _PERMISSIONS,
}

FLOW_SPECS: list[dict[str, Any]] = [CRM_TO_AEP_FLOW_SPEC]

# Seconds per unit of scheduleParams.frequency.
FREQUENCY_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}


# --------------------------------------------------------------------------- global XDM resources


def _global(kind: str, xid: str, title: str, **extra: Any) -> dict[str, Any]:
    alt = "_" + xid.split("://", 1)[1].replace("ns.adobe.com/", "").replace("/", ".")
    doc: dict[str, Any] = {
        "$id": xid,
        "meta:altId": alt,
        "meta:resourceType": kind,
        "version": "1.0",
        "title": title,
        "type": "object",
        "description": title,
        "meta:containerId": "global",
        "meta:xdmType": "object",
        "meta:extensible": True,
        "meta:abstract": True,
        "meta:registryMetadata": {
            "repo:createdDate": 1540000000000,
            "repo:lastModifiedDate": 1540000000000,
            "xdm:createdClientId": "xdm",
            "xdm:lastModifiedClientId": "xdm",
            "eTag": "global",
        },
    }
    doc.update(extra)
    return doc


GLOBAL_BEHAVIORS: list[dict[str, Any]] = [
    _global("behaviors", ADHOC_BEHAVIOR, "Ad Hoc Schema", properties={}),
    _global("behaviors", RECORD_BEHAVIOR, "Record Schema", properties={}),
    _global(
        "behaviors",
        TIME_SERIES_BEHAVIOR,
        "Time-series Schema",
        properties={"timestamp": {"type": "string", "format": "date-time"}},
    ),
]

GLOBAL_CLASSES: list[dict[str, Any]] = [
    _global(
        "classes",
        PROFILE_CLASS,
        "XDM Individual Profile",
        **{
            "meta:extends": ["https://ns.adobe.com/xdm/common/auditable", RECORD_BEHAVIOR],
            "properties": {
                "_id": {"type": "string", "format": "uri-reference"},
                "createdByBatchID": {"type": "string", "format": "uri-reference"},
                "modifiedByBatchID": {"type": "string", "format": "uri-reference"},
                "repositoryCreatedBy": {"type": "string"},
                "repositoryLastModifiedBy": {"type": "string"},
                "identityMap": {"type": "object"},
            },
        },
    ),
    _global(
        "classes",
        EXPERIENCE_EVENT_CLASS,
        "XDM ExperienceEvent",
        **{
            "meta:extends": [TIME_SERIES_BEHAVIOR],
            "properties": {
                "_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "eventType": {"type": "string"},
            },
        },
    ),
]

GLOBAL_FIELDGROUPS: list[dict[str, Any]] = [
    _global(
        "fieldgroups",
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "Demographic Details",
        **{
            "meta:intendedToExtend": [PROFILE_CLASS],
            "properties": {
                "person": {
                    "type": "object",
                    "properties": {"name": {"type": "object"}, "birthDate": {"type": "string"}},
                }
            },
        },
    ),
    _global(
        "fieldgroups",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
        "Personal Contact Details",
        **{
            "meta:intendedToExtend": [PROFILE_CLASS],
            "properties": {
                "homeAddress": {"type": "object"},
                "personalEmail": {"type": "object"},
                "mobilePhone": {"type": "object"},
            },
        },
    ),
    _global(
        "fieldgroups",
        "https://ns.adobe.com/xdm/context/profile-work-details",
        "Professional Details",
        **{"meta:intendedToExtend": [PROFILE_CLASS], "properties": {"workEmail": {"type": "object"}}},
    ),
    _global(
        "fieldgroups",
        "https://ns.adobe.com/xdm/context/identitymap",
        "IdentityMap",
        **{
            "meta:intendedToExtend": [PROFILE_CLASS, EXPERIENCE_EVENT_CLASS],
            "properties": {"identityMap": {"type": "object"}},
        },
    ),
]

GLOBAL_SCHEMAS: list[dict[str, Any]] = []
