"""Where Adobe's published API specs are known to be wrong: what they say, what AEP does, and the evidence.

Adobe's guides and tutorials describe what AEP actually does where they contradict its OpenAPI specs (the
table in the README beside the specs, ``shared/adobe-openapi/README.md``). Each entry below is one such
contradiction, with the guide that shows it, and says which spec check it explains, so that a call that
behaves as AEP does is *excused* (with the entry's id) rather than reported. Anything else a check reports
is a real mismatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from airflow_provider_aep.testing.openapi import Problem

ALL_SERVICES = "*"


@dataclass(frozen=True)
class Defect:
    """One known contradiction between a spec and AEP, and the problems it explains.

    Matching: ``service``; ``operations`` as ``"METHOD /spec/path/{TEMPLATE}"`` (empty: every operation);
    the problem's ``part``, ``field`` and ``rule`` (regular expressions, matched in full; ``rule`` None: any);
    ``statuses`` of the answer (empty: any). ``alias_suffix``: the spec spells the path with this suffix.
    ``part=""``: a contradiction no check can see (e.g. a unit), recorded for reference only.
    """

    id: str
    where: str
    spec_says: str
    aep_does: str
    evidence: str
    service: str
    part: str
    operations: tuple[str, ...] = ()
    rule: str | None = None
    field: str = ".*"
    statuses: tuple[int, ...] = ()
    alias_suffix: str = ""

    def excuses(
        self, service: str, operation: str | None, method: str, path: str, problem: Problem, status: int | None
    ) -> bool:
        """``operation`` is the spec's ``"METHOD /template"``, or None when unresolved (then ``path`` is used)."""
        if self.service not in (ALL_SERVICES, service) or re.fullmatch(self.part, problem.part) is None:
            return False
        if self.rule is not None and re.fullmatch(self.rule, problem.rule) is None:
            return False
        if self.statuses and status not in self.statuses:
            return False
        if self.operations and not any(_covers(o, operation, method, path) for o in self.operations):
            return False
        return re.fullmatch(self.field, problem.field) is not None


def _covers(entry: str, operation: str | None, method: str, path: str) -> bool:
    if operation is not None:
        return entry == operation
    entry_method, _, template = entry.partition(" ")
    regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
    return entry_method == method and re.fullmatch(regex + "/?", path) is not None


_FLOW_ERRORS = (400, 401, 404, 409, 412, 429, 500, 502, 503, 504)
_PLATFORM_ERRORS = (400, 401, 403, 404, 406, 412, 429, 500, 502, 503, 504)

DEFECTS: tuple[Defect, ...] = (
    Defect(
        id="FS-TRAILING-SLASH",
        where="flow-service /connections/{BASE_CONNECTION_ID}/ (DELETE, PATCH)",
        spec_says="the path ends with a slash",
        aep_does="DELETE /connections/{BASE_CONNECTION_ID}, no slash",
        evidence="Flow Service guide 'Delete a connection'; the spec's own GET on the same path has no slash",
        service="flowservice",
        part="operation",
        rule="method",
        operations=("DELETE /connections/{BASE_CONNECTION_ID}", "PATCH /connections/{BASE_CONNECTION_ID}"),
        alias_suffix="/",
    ),
    Defect(
        id="FS-INTERVAL-TYPE",
        where="flow-service ScheduleSpecDTO.interval (CreateFlowRequest.scheduleParams, flows in answers)",
        spec_says="type: string",
        aep_does="an integer (the tutorials also send digit strings)",
        evidence="protocols tutorial's POST /flows; the CRMToAEP flow spec in the same file types it integer",
        service="flowservice",
        part="body|response",
        rule="type",
        field=r"(items\[\d+\]\.)?scheduleParams\.interval",
    ),
    Defect(
        id="FS-DIGIT-STRINGS",
        where="flow-service CreateFlowRequest.scheduleParams.startTime, CreateFlowRunRequest.params times",
        spec_says="type: integer",
        aep_does="also accepts digit strings, as the guides send them",
        evidence='protocols tutorial\'s POST /flows ("startTime": "1567411548"); on-demand ingestion guide\'s POST '
        '/runs ("startTime": "<epoch s>"); shared/aep-api.md §4.7, §4.9',
        service="flowservice",
        part="body",
        rule="type",
        field=r"scheduleParams\.startTime|params\.(startTime|windowStartTime|windowEndTime)",
    ),
    Defect(
        id="FS-TRANSFORMATION-SPECS-TYPE",
        where="flow-service flow spec transformationSpecs",
        spec_says="type: object",
        aep_does="an array of {name, spec}",
        evidence="protocols tutorial's GET /flowSpecs response",
        service="flowservice",
        part="response",
        rule="type",
        field=r"items\[\d+\]\.transformationSpecs",
    ),
    Defect(
        id="FS-PATCH-OP-CASE",
        where="flow-service PatchInstruction.op",
        spec_says="enum ADD, REPLACE, REMOVE",
        aep_does="lowercase add, replace, remove (RFC 6902)",
        evidence="the PATCH operations' own descriptions and the 'Update dataflows' guide",
        service="flowservice",
        part="body",
        rule="enum",
        field=r"\[\d+\]\.op",
    ),
    Defect(
        id="FS-PATCH-VALUE-TYPE",
        where="flow-service PatchInstruction.value",
        spec_says="type: object",
        aep_does="any JSON value (RFC 6902)",
        evidence="'Update dataflows' guide: replace /name, /description, /scheduleParams/frequency with plain values",
        service="flowservice",
        part="body",
        rule="type",
        field=r"\[\d+\]\.value",
    ),
    Defect(
        id="FS-PATCH-CONNECTION-ARRAY",
        where="flow-service PATCH /connections/{BASE_CONNECTION_ID}/ request body",
        spec_says="one PatchInstruction object",
        aep_does="a JSON Patch array, as the source and target connection PATCHes of the same spec take",
        evidence="the same spec's patchSourceConnection and patchTargetConnection take arrays; JSON Patch (RFC 6902) "
        "bodies are arrays",
        service="flowservice",
        part="body",
        rule="type",
        field=r"\(root\)",
        operations=("PATCH /connections/{BASE_CONNECTION_ID}/",),
    ),
    Defect(
        id="FS-ACTION-OP",
        where="flow-service POST /flows/{FLOW_ID}/action query parameters",
        spec_says="op: enum ENABLE, DISABLE, ...; subOp required",
        aep_does="?op=enable / ?op=disable, lowercase, without subOp",
        evidence="'Update destination dataflows' guide (POST /flows/{FLOW_ID}/action?op=enable, no subOp); aepp "
        "flowservice.py (shared/aep-api.md §4.8)",
        service="flowservice",
        part="query",
        field="op|subOp",
        operations=("POST /flows/{FLOW_ID}/action",),
    ),
    Defect(
        id="FS-PROPERTY-EXPLODE",
        where="flow-service 'property' query parameter",
        spec_says="style: form, explode: false (one comma-separated value)",
        aep_does="property= repeated for AND; property=id==a,b is one filter on a list of ids",
        evidence="Flow Service 'Sort and filter' guide",
        service="flowservice",
        part="query",
        field="property",
    ),
    Defect(
        id="FS-ERROR-STATUSES",
        where="flow-service error responses",
        spec_says="only 2xx, 403 and 503 (some operations 401, 500)",
        aep_does="400, 401, 404, 409, 412, 429 and 5xx, with FLOW-<code>-<status> problem bodies",
        evidence="Flow Service troubleshooting guide and error catalogue (flow-service-errors.md)",
        service="flowservice",
        part="status",
        rule="undocumented",
        statuses=_FLOW_ERRORS,
    ),
    Defect(
        id="FS-RUN-TIMES",
        where="flow-service CreateFlowRunRequest params times",
        spec_says="epoch time in milliseconds",
        aep_does="epoch seconds",
        evidence="on-demand ingestion guide's POST /runs example (10-digit values)",
        service="flowservice",
        part="",  # a unit, which no schema check sees: kept as the record of the contradiction
    ),
    Defect(
        id="FS-EXPLORE-OBJECT-TYPE-CASE",
        where="flow-service GET /connections/{BASE_CONNECTION_ID}/explore objectType",
        spec_says="enum ROOT, TABLE, FILE, FOLDER, REST",
        aep_does="lowercase objectType=root and objectType=table",
        evidence="'Explore data tables using the Flow Service API' and 'Explore a protocols system' tutorials "
        "(GET /connections/{BASE_CONNECTION_ID}/explore?objectType=root, ?objectType=table&object={TABLE_PATH})",
        service="flowservice",
        part="query",
        rule="enum",
        field="objectType",
        operations=("GET /connections/{BASE_CONNECTION_ID}/explore",),
    ),
    Defect(
        id="FS-EXPLORE-TABLE-ANSWER",
        where="flow-service GET /connections/{BASE_CONNECTION_ID}/explore answer (ExploreConnectionResponse)",
        spec_says="an array of {type, name, path, canPreview, canFetchSchema}, for every objectType",
        aep_does="that array for objectType=root; for objectType=table an object {format, schema: {columns: "
        "[{name, type, xdm}]}}, with the rows under data when preview=true",
        evidence="'Explore data tables using the Flow Service API' tutorial, 'Inspect the structure of a table' "
        "response",
        service="flowservice",
        part="response",
        rule="type",
        field=r"\(root\)",
        operations=("GET /connections/{BASE_CONNECTION_ID}/explore",),
    ),
    Defect(
        id="FS-EXPLORE-PREVIEW",
        where="flow-service GET /connections/{BASE_CONNECTION_ID}/explore query parameters",
        spec_says="no preview parameter",
        aep_does="preview=true with objectType=table adds the table's first rows (data) to its structure",
        evidence="the explore tutorials' preview requests (objectType=table&object={TABLE_PATH}&preview=true)",
        service="flowservice",
        part="",  # an undeclared query parameter, which no check reports: the record of the contradiction
    ),
    Defect(
        id="SR-PATCH-VALUE-TYPE",
        where="schema-registry patchSchema value",
        spec_says="type: string",
        aep_does='any JSON value, e.g. {"$ref": ...} objects added to /allOf/-',
        evidence="'Add a field group to a schema' tutorial (PATCH /tenant/schemas/{SCHEMA_ID})",
        service="schemaregistry",
        part="body",
        rule="type",
        field=r"\[\d+\]\.value",
    ),
    Defect(
        id="SR-PAGE-NEXT-NULL",
        where="schema-registry _page.next",
        spec_says="a non-nullable string",
        aep_does="null on the last page",
        evidence="the field's own description in the spec",
        service="schemaregistry",
        part="response",
        rule="type",
        field=r"_page\.next",
    ),
    Defect(
        id="SR-LINKS-NEXT",
        where="schema-registry list responses _links.next",
        spec_says="type: string",
        aep_does='null on the last page, else {"href": ...}',
        evidence="'List schemas' guide response: _links.next null or {href} (shared/aep-api.md §2.6)",
        service="schemaregistry",
        part="response",
        rule="type",
        field=r"_links\.next",
    ),
    Defect(
        id="DP-DATES-EPOCH-MS",
        where="data-prep createdDate / modifiedDate",
        spec_says="type: string, format: date-time",
        aep_does="epoch milliseconds (integers)",
        evidence="the same spec's examples; 'Mapping set' guide responses",
        service="conversion",
        part="response",
        rule="type",
        field=r"(.*\.)?(createdDate|modifiedDate)",
    ),
    Defect(
        id="DP-SOURCE-TYPE",
        where="data-prep mapping sourceType",
        spec_says="enum ATTRIBUTE, EXPRESSION, STATIC",
        aep_does="text/x.schema-path (and text/x.aep-expression) in answers",
        evidence="the spec's own examples; 'Mapping set' guide GET responses",
        service="conversion",
        part="response",
        rule="enum",
        field=r"(.*\.)?mappings\[\d+\]\.sourceType",
    ),
    Defect(
        id="DP-VALIDATE-ERRORS-NULL",
        where="data-prep POST /mappingSets/validate answer, validationResponse[].errors",
        spec_says="a non-nullable array",
        aep_does="null for a mapping that validates",
        evidence='\'Mapping sets\' guide\'s validate example ({"status": "SUCCESS", "errors": null}); shared/aep-api.md §5',
        service="conversion",
        part="response",
        rule="type",
        field=r"validationResponse\[\d+\]\.errors",
        operations=("POST /mappingSets/validate",),
    ),
    Defect(
        id="DP-PREVIEW-ARRAY",
        where="data-prep POST /mappingSets/preview answer (PreviewResponse)",
        spec_says="one object {data, errors}",
        aep_does="an array with one {data, errors} per row sent, errors null for a row that mapped cleanly",
        evidence="'Mapping sets' guide, 'Preview data for a mapping' response; shared/aep-api.md §5",
        service="conversion",
        part="response",
        rule="type",
        field=r"\(root\)",
        operations=("POST /mappingSets/preview",),
    ),
    Defect(
        id="DP-LEGACY-NULLS",
        where="data-prep MappingSet request fields (id, identityGroup, namespaceCode, ...)",
        spec_says="non-nullable strings",
        aep_does="accepts null, as the legacy protocols tutorial sends",
        evidence='legacy protocols tutorial\'s POST /mappingSets ("id": null, "identityGroup": null, '
        '"namespaceCode": null); shared/aep-api.md §5',
        service="conversion",
        part="body",
        rule="type|nullable",
        field=r"(mappings\[\d+\]\.)?(id|identityGroup|namespaceCode)",
    ),
    Defect(
        id="CAT-INVALID-SPEC",
        where="catalog.yaml",
        spec_says="(not valid OpenAPI: a duplicate x-api-key parameter, null descriptions)",
        aep_does="n/a",
        evidence="shared/adobe-openapi/README.md; loaded without openapi-core's spec check",
        service="catalog",
        part="",  # handled when loading (openapi.LENIENT_FILES)
    ),
    Defect(
        id="CAT-REQUEST-DATA-SOURCE",
        where="catalog POST /dataSets",
        spec_says="no requestDataSource parameter",
        aep_does="?requestDataSource=true creates the dataset's data source",
        evidence="protocols tutorial and 'Create a dataset' guide",
        service="catalog",
        part="query",
        field="requestDataSource",
        operations=("POST /dataSets",),
    ),
    Defect(
        id="PLATFORM-ERROR-STATUSES",
        where="every spec's responses",
        spec_says="a few statuses per operation",
        aep_does="400, 401, 403, 404, 406, 412, 429 and 500-504 on any Platform API: 401/403/429/502 from Adobe I/O's "
        "gateway (token, API key, org, throttling) before the service, the rest from the service",
        evidence="Platform API troubleshooting guide: the general status codes and the gateway's 401013, 403010, "
        "403000 (shared/aep-api.md §1.3, §6.3); 429 with Retry-After: the data-lifecycle best practices (§6.4)",
        service=ALL_SERVICES,
        part="status",
        rule="undocumented",
        statuses=_PLATFORM_ERRORS,
    ),
    Defect(
        id="DP-DELETE-MAPPING-SET",
        where="data-prep /mappingSets/{MAPPING_SET_ID}",
        spec_says="only GET and PUT",
        aep_does="undocumented; the aepp SDK sends DELETE. The provider's teardown treats it as best-effort and "
        "checks the outcome with a GET",
        evidence="aepp dataprep.py deleteMappingSet; shared/adobe-openapi/README.md",
        service="conversion",
        part="operation",
        rule="method",
        operations=("DELETE /mappingSets/{MAPPING_SET_ID}",),
    ),
)

BY_ID: dict[str, Defect] = {d.id: d for d in DEFECTS}
