"""
AEP's operations, each written once as a flow of the client core and inherited by both hooks:
:class:`~airflow_provider_aep.hooks.aep.AEPHook` runs them, :class:`~airflow_provider_aep.hooks.aep_async.AEPAsyncHook`
returns coroutines of them.

Lookups by name (``find_*``) return every resource with exactly that name, as a list, whatever characters the
name holds; creates never blindly re-send a POST: after an ambiguous failure they look the resource up by name
first, and after sending it again they look once more, so a late commit of the lost attempt is reported.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.links.urls import dataflow_url
from airflow_provider_aep.utils.client_core import (
    XED_LOOKUP_ACCEPT,
    ClientCore,
    Flow,
    FoundAfterLostResponse,
    operation,
)
from airflow_provider_aep.utils.flow_runs import run_window
from airflow_provider_aep.utils.resources import created_id, oldest_match, unwrap_single_item
from airflow_provider_aep.utils.validation import flow_state_action

log = logging.getLogger(__name__)
T = TypeVar("T")

Resources = list[dict[str, Any]]
# The answers to an undocumented DELETE that say nothing of the resource: no such call (405), or no such route.
_UNSUPPORTED_DELETE = (404, 405)


def _q(resource_id: str) -> str:
    return quote(resource_id, safe="")


# Names that mean the same in every AEP filter syntax: letters, digits, single inner spaces and ``_.:/@()-``.
# Any other character may be read as syntax: ``,`` lists values (Flow Service, Catalog), ``*`` is a wildcard
# (Catalog), quotes and outer spaces may be stripped, ``= ! < > ~`` are operators. Such a name is matched here,
# over the whole list, since no documented escape lets the server match it exactly.
_FILTERABLE_NAME = re.compile(r"[A-Za-z0-9_.:/@()-]+(?: [A-Za-z0-9_.:/@()-]+)*")


def name_filter(field: str, name: str, template: str = "{field}=={name}") -> list[str]:
    """The server-side ``property`` filter on ``field`` for ``name``, or none when the syntax could misread it."""
    return [template.format(field=field, name=name)] if _FILTERABLE_NAME.fullmatch(name) else []


def named(resources: Resources, name: str, field: str = "name") -> Resources:
    return [r for r in resources if r.get(field) == name]


def runs_query(flow_id: str, created_after_ms: int | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """GET /runs filters for one flow's runs, newest first, optionally created at or after a time."""
    params = [("property", f"flowId=={flow_id}"), ("orderby", "-createdAt")]
    if created_after_ms is not None:
        params.append(("property", f"createdAt>={int(created_after_ms)}"))
    if limit is not None:
        params.append(("limit", str(limit)))
    return params


def newest_first(runs: Resources, created_after_ms: int | None = None) -> Resources:
    """Runs created at or after ``created_after_ms``, newest first, whatever order and filters AEP applied
    (the allowed ``orderby`` fields of /runs are undocumented)."""
    kept = [r for r in runs if created_after_ms is None or (r.get("createdAt") or 0) >= created_after_ms]
    return sorted(kept, key=lambda r: r.get("createdAt") or 0, reverse=True)


class AEPOperations(ClientCore):
    """Schema Registry, Catalog, Flow Service and Data Prep calls, as flows."""

    _tenant_id: str | None = None

    def dataflow_url(self, flow_id: str, run_id: str | None = None) -> str:
        return dataflow_url(self.config.org_id, self.config.sandbox, flow_id, run_id)

    # ------------------------------------------------------------------ creates and deletes (shared mechanics)
    def _create(
        self,
        service: str,
        path: str,
        payload: Mapping[str, Any],
        *,
        find: Callable[[], Flow[Resources]] | None,
        kind: str,
        name: Any,
        params: Mapping[str, Any] | None = None,
    ) -> Flow[Any]:
        what = f"{kind} {name!r}"
        looked_up = False

        def recover() -> Flow[dict[str, Any] | None]:
            nonlocal looked_up
            assert find is not None
            looked_up = True
            return oldest_match((yield from find()), kind, name)

        result = yield from self.request.flow(
            "POST", service, path, json=payload, params=params, idempotent=False, recover=recover if find else None
        )
        if isinstance(result, FoundAfterLostResponse):
            log.warning(
                "The response to creating %s was lost, but the earlier attempt did commit it; using it: %s",
                what,
                created_id(result.resource),
            )
            return result.resource
        if looked_up and find is not None:
            # The lookup found nothing, so the create was sent again; the lost attempt may still have committed.
            found = yield from find()
            if len(found) > 1:
                log.warning(
                    "Creating %s was sent again after a lost response, and AEP committed the lost attempt too "
                    "(created %s)",
                    what,
                    created_id(result),
                )
                return oldest_match(found, kind, name)
        return result

    def _delete(self, service: str, path: str, *, what: str) -> Flow[bool]:
        """
        DELETE; True if it existed. A 404 (already gone, maybe by our own lost earlier attempt) counts
        as done, and so does Catalog's 200 with an empty list, its way of saying nothing matched.
        """
        try:
            body = yield from self.request.flow("DELETE", service, path)
        except AEPApiError as exc:
            if not exc.is_not_found:
                raise
            body = []
        if body == []:
            log.info("%s was already gone", what)
            return False
        return True

    # ------------------------------------------------------------------ Schema Registry
    @operation
    def get_stats(self) -> Flow[dict[str, Any]]:
        return (yield from self.request.flow("GET", "schemaregistry", "/stats"))

    @operation
    def get_tenant_id(self) -> Flow[str]:
        """The org's tenant id: custom XDM fields live under ``_{tenantId}``."""
        if self._tenant_id is None:
            self._tenant_id = (yield from self.get_stats.flow())["tenantId"]
        return self._tenant_id

    @operation
    def list_xdm_resources(
        self, kind: str, *, container: str = "tenant", properties: list[str] | None = None
    ) -> Flow[Resources]:
        """Summaries of classes, schemas or fieldgroups; ``properties`` are ``property=`` filters."""
        params = [("property", p) for p in properties or []]
        return (yield from self.paginate_schema_registry.flow(f"/{container}/{kind}", params))

    @operation
    def find_xdm_by_title(self, kind: str, title: str, *, container: str = "tenant") -> Flow[Resources]:
        """The classes, schemas or field groups with exactly this title."""
        listed = yield from self.list_xdm_resources.flow(
            kind, container=container, properties=name_filter("title", title)
        )
        return named(listed, title, "title")

    @operation
    def find_classes_by_title(self, title: str) -> Flow[Resources]:
        return (yield from self.find_xdm_by_title.flow("classes", title))

    @operation
    def find_schemas_by_title(self, title: str) -> Flow[Resources]:
        return (yield from self.find_xdm_by_title.flow("schemas", title))

    @operation
    def get_xdm_resource(
        self, kind: str, resource_id: str, *, container: str = "tenant", accept: str = XED_LOOKUP_ACCEPT
    ) -> Flow[dict[str, Any]]:
        path = f"/{container}/{kind}/{_q(resource_id)}"
        return (yield from self.request.flow("GET", "schemaregistry", path, accept=accept))

    @operation
    def get_class(self, class_id: str, *, accept: str = XED_LOOKUP_ACCEPT) -> Flow[dict[str, Any]]:
        container = "global" if class_id.startswith("https://ns.adobe.com/xdm/") else "tenant"
        return (yield from self.get_xdm_resource.flow("classes", class_id, container=container, accept=accept))

    @operation
    def get_schema(self, schema_id: str, *, accept: str = XED_LOOKUP_ACCEPT) -> Flow[dict[str, Any]]:
        return (yield from self.get_xdm_resource.flow("schemas", schema_id, accept=accept))

    @operation
    def create_class(self, payload: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        """POST /tenant/classes; returns the class (with ``$id``)."""
        title = payload["title"]
        return (
            yield from self._create(
                "schemaregistry",
                "/tenant/classes",
                payload,
                find=lambda: self.find_classes_by_title.flow(title),
                kind="class",
                name=title,
            )
        )

    @operation
    def create_schema(self, payload: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        """POST /tenant/schemas; returns the schema (with ``$id``)."""
        title = payload["title"]
        return (
            yield from self._create(
                "schemaregistry",
                "/tenant/schemas",
                payload,
                find=lambda: self.find_schemas_by_title.flow(title),
                kind="schema",
                name=title,
            )
        )

    @operation
    def patch_schema(self, schema_id: str, operations: list[dict[str, Any]]) -> Flow[dict[str, Any]]:
        """JSON-Patch a tenant schema, e.g. add field groups to ``/allOf/-``."""
        return (
            yield from self.request.flow("PATCH", "schemaregistry", f"/tenant/schemas/{_q(schema_id)}", json=operations)
        )

    @operation
    def list_field_groups(self, *, container: str = "global", intended_to_extend: str | None = None) -> Flow[Resources]:
        props = [f"meta:intendedToExtend=={intended_to_extend}"] if intended_to_extend else None
        return (yield from self.list_xdm_resources.flow("fieldgroups", container=container, properties=props))

    @operation
    def delete_schema(self, schema_id: str) -> Flow[bool]:
        return (
            yield from self._delete("schemaregistry", f"/tenant/schemas/{_q(schema_id)}", what=f"schema {schema_id}")
        )

    @operation
    def delete_class(self, class_id: str) -> Flow[bool]:
        return (yield from self._delete("schemaregistry", f"/tenant/classes/{_q(class_id)}", what=f"class {class_id}"))

    # ------------------------------------------------------------------ Catalog
    @operation
    def create_dataset(self, payload: Mapping[str, Any]) -> Flow[str]:
        """POST /dataSets?requestDataSource=true; returns the dataset id."""
        name = payload["name"]
        result = yield from self._create(
            "catalog",
            "/dataSets",
            payload,
            params={"requestDataSource": "true"},
            find=lambda: self.find_datasets_by_name.flow(name),
            kind="dataset",
            name=name,
        )
        if isinstance(result, list) and result:  # ["@/dataSets/<id>"]
            return str(result[0]).rsplit("/", 1)[-1]
        if isinstance(result, dict) and "id" in result:
            return str(result["id"])
        raise AEPApiError(f"unexpected dataset create response: {result!r}", method="POST", url="/dataSets")

    def _catalog_get(self, collection: str, object_id: str) -> Flow[dict[str, Any]]:
        """Catalog answers GET-by-id with an object keyed by the id; return that object, with its id."""
        body = (yield from self.request.flow("GET", "catalog", f"/{collection}/{_q(object_id)}")) or {}
        obj: dict[str, Any] = body.get(object_id) or next(iter(body.values()), {})
        return {"id": object_id, **obj}

    @operation
    def get_dataset(self, dataset_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._catalog_get("dataSets", dataset_id))

    @operation
    def list_datasets(self, params: Mapping[str, Any] | None = None) -> Flow[Resources]:
        return (yield from self.paginate_catalog.flow("/dataSets", params))

    @operation
    def find_datasets_by_name(self, name: str) -> Flow[Resources]:
        filters = name_filter("name", name)
        listed = yield from self.list_datasets.flow({"property": filters[0]} if filters else None)
        return named(listed, name)

    @operation
    def delete_dataset(self, dataset_id: str) -> Flow[bool]:
        return (yield from self._delete("catalog", f"/dataSets/{_q(dataset_id)}", what=f"dataset {dataset_id}"))

    @operation
    def get_batch(self, batch_id: str) -> Flow[dict[str, Any]]:
        """GET /batches/{BATCH_ID}: the batch's status, record counts and errors."""
        return (yield from self._catalog_get("batches", batch_id))

    # ------------------------------------------------------------------ Data Access
    @operation
    def get_batch_meta(self, batch_id: str, path: str) -> Flow[Any]:
        """
        GET /batches/{batchId}/meta?path=...: the listing of a meta directory (``row_errors``, ``input_files``)
        as ``{"data": [{"name", ...}], "_page"}``, or one file's content (``row_errors/<name>``).
        """
        return (yield from self.request.flow("GET", "export", f"/batches/{_q(batch_id)}/meta", params={"path": path}))

    # ------------------------------------------------------------------ Flow Service (shared shapes)
    def _flow_get(self, collection: str, resource_id: str) -> Flow[dict[str, Any]]:
        body = yield from self.request.flow("GET", "flowservice", f"/{collection}/{_q(resource_id)}")
        return unwrap_single_item(body or {})

    def _flow_find(self, collection: str, name: str, filters: list[str] | None = None) -> Flow[Resources]:
        listed = yield from self.paginate_flow_service.flow(f"/{collection}", [("property", f) for f in filters or []])
        return named(listed, name)

    def _flow_create(
        self, collection: str, payload: Mapping[str, Any], find: Callable[[], Flow[Resources]]
    ) -> Flow[str]:
        kind, name = collection[:-1], payload.get("name")
        return created_id(
            (yield from self._create("flowservice", f"/{collection}", payload, find=find, kind=kind, name=name))
        )

    def _flow_delete(self, collection: str, resource_id: str) -> Flow[bool]:
        what = f"{collection[:-1]} {resource_id}"
        return (yield from self._delete("flowservice", f"/{collection}/{_q(resource_id)}", what=what))

    # connection specs and flow specs
    @operation
    def get_connection_spec(self, spec_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("connectionSpecs", spec_id))

    @operation
    def find_connection_specs_by_name(self, name: str) -> Flow[Resources]:
        return (yield from self._flow_find("connectionSpecs", name, name_filter("name", name)))

    @operation
    def get_flow_spec(self, flow_spec_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("flowSpecs", flow_spec_id))

    @operation
    def find_flow_specs_by_name(self, name: str) -> Flow[Resources]:
        return (yield from self._flow_find("flowSpecs", name, name_filter("name", name, '{field}=="{name}"')))

    # base connections
    @operation
    def create_base_connection(self, payload: Mapping[str, Any]) -> Flow[str]:
        name = payload["name"]
        return (
            yield from self._flow_create("connections", payload, lambda: self.find_base_connections_by_name.flow(name))
        )

    @operation
    def get_base_connection(self, connection_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("connections", connection_id))

    @operation
    def find_base_connections_by_name(self, name: str) -> Flow[Resources]:
        return (yield from self._flow_find("connections", name, name_filter("name", name)))

    @operation
    def delete_base_connection(self, connection_id: str) -> Flow[bool]:
        return (yield from self._flow_delete("connections", connection_id))

    @operation
    def test_base_connection(self, connection_id: str) -> Flow[bool]:
        """GET /connections/{id}/test: whether AEP can reach the source with the connection's credentials."""
        body = yield from self.request.flow("GET", "flowservice", f"/connections/{_q(connection_id)}/test")
        return bool((body or {}).get("result"))

    @operation
    def explore(
        self, base_connection_id: str, path: str | None = None, *, object_type: str | None = None, preview: bool = False
    ) -> Flow[Any]:
        """
        GET /connections/{id}/explore. Without ``path``: the root listing, a list of
        ``{type, name, path, canPreview, canFetchSchema}``; with a table's ``path``: its structure,
        ``{"format", "schema": {"columns": [{name, type, xdm}]}}``, and with ``preview`` its first rows under
        ``data`` (as many as AEP chooses). ``object_type`` is sent lowercase, as the explore guides send it.
        """
        kind = object_type or ("root" if path is None else "table")
        params = [("objectType", kind.lower())]
        if path is not None:
            params.append(("object", path))
        if preview:
            params.append(("preview", "true"))
        return (
            yield from self.request.flow(
                "GET", "flowservice", f"/connections/{_q(base_connection_id)}/explore", params=params
            )
        )

    # source connections (only id, connectionSpec.id and baseConnectionId are filterable server-side)
    @operation
    def create_source_connection(self, payload: Mapping[str, Any]) -> Flow[str]:
        name, base_id = payload["name"], payload.get("baseConnectionId")
        return (
            yield from self._flow_create(
                "sourceConnections", payload, lambda: self.find_source_connections_by_name.flow(name, base_id)
            )
        )

    @operation
    def get_source_connection(self, connection_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("sourceConnections", connection_id))

    @operation
    def find_source_connections_by_name(self, name: str, base_connection_id: str | None = None) -> Flow[Resources]:
        filters = [f"baseConnectionId=={base_connection_id}"] if base_connection_id else None
        return (yield from self._flow_find("sourceConnections", name, filters))

    @operation
    def delete_source_connection(self, connection_id: str) -> Flow[bool]:
        return (yield from self._flow_delete("sourceConnections", connection_id))

    # target connections
    @operation
    def create_target_connection(self, payload: Mapping[str, Any]) -> Flow[str]:
        name, spec_id = payload["name"], (payload.get("connectionSpec") or {}).get("id")
        return (
            yield from self._flow_create(
                "targetConnections", payload, lambda: self.find_target_connections_by_name.flow(name, spec_id)
            )
        )

    @operation
    def get_target_connection(self, connection_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("targetConnections", connection_id))

    @operation
    def find_target_connections_by_name(self, name: str, connection_spec_id: str | None = None) -> Flow[Resources]:
        filters = [f"connectionSpec.id=={connection_spec_id}"] if connection_spec_id else None
        return (yield from self._flow_find("targetConnections", name, filters))

    @operation
    def delete_target_connection(self, connection_id: str) -> Flow[bool]:
        return (yield from self._flow_delete("targetConnections", connection_id))

    # flows
    @operation
    def create_flow(self, payload: Mapping[str, Any]) -> Flow[str]:
        name = payload["name"]
        return (yield from self._flow_create("flows", payload, lambda: self.find_flows_by_name.flow(name)))

    @operation
    def get_flow(self, flow_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("flows", flow_id))

    @operation
    def find_flows_by_name(self, name: str) -> Flow[Resources]:
        return (yield from self._flow_find("flows", name, name_filter("name", name)))

    def _on_current_flow(self, flow_id: str, what: str, act: Callable[[dict[str, Any]], Flow[T]]) -> Flow[T]:
        """``act(flow)`` on the flow as read now; on a stale etag (412) it is read again and ``act`` runs once more."""
        for stale_seen in (False, True):
            flow = yield from self.get_flow.flow(flow_id)
            try:
                return (yield from act(flow))
            except AEPApiError as exc:
                if exc.status != 412 or stale_seen:
                    raise
                log.info("Flow %s changed while we %s it (HTTP 412); reading it again", flow_id, what)
        raise AssertionError("unreachable")  # pragma: no cover

    @operation
    def update_flow(self, flow_id: str, operations: list[dict[str, Any]]) -> Flow[dict[str, Any]]:
        """JSON-Patch a flow with the If-Match its etag needs; on a stale etag (412) re-read and apply once more."""

        def patch(flow: dict[str, Any]) -> Flow[dict[str, Any]]:
            path = f"/flows/{_q(flow_id)}"
            headers = {"If-Match": flow.get("etag") or ""}
            return (yield from self.request.flow("PATCH", "flowservice", path, json=operations, headers=headers))

        return (yield from self._on_current_flow(flow_id, "patched", patch))

    @operation
    def set_flow_state(self, flow_id: str, state: str) -> Flow[bool]:
        """
        Enable or disable a flow (``POST /flows/{id}/action?op=ENABLE|DISABLE`` with its etag as If-Match);
        False when it already was in ``state``. Sent again after a lost answer: a stale etag then means done.
        """
        op = flow_state_action(state)

        def transition(flow: dict[str, Any]) -> Flow[bool]:
            if flow.get("state") == state:
                return False
            path = f"/flows/{_q(flow_id)}/action"
            headers = {"If-Match": flow.get("etag") or ""}
            yield from self.request.flow(
                "POST", "flowservice", path, params={"op": op}, headers=headers, idempotent=True
            )
            return True

        return (yield from self._on_current_flow(flow_id, f"set {state}", transition))

    @operation
    def delete_flow(self, flow_id: str) -> Flow[bool]:
        return (yield from self._flow_delete("flows", flow_id))

    # runs
    @operation
    def create_run(self, flow_id: str, params: Mapping[str, Any]) -> Flow[str]:
        """POST /runs (on-demand run of a flow scheduled ``once``); accepts all three documented answer shapes."""
        sent_at_ms = int(time.time() * 1000) - 1000

        def find() -> Flow[Resources]:
            return (yield from self.list_runs.flow(flow_id, created_after_ms=sent_at_ms))[:1]

        payload = {"flowId": flow_id, "params": dict(params)}
        return created_id(
            (yield from self._create("flowservice", "/runs", payload, find=find, kind="run of flow", name=flow_id))
        )

    @operation
    def get_run(self, run_id: str) -> Flow[dict[str, Any]]:
        return (yield from self._flow_get("runs", run_id))

    @operation
    def list_runs(
        self, flow_id: str, *, created_after_ms: int | None = None, limit: int | None = None
    ) -> Flow[Resources]:
        """The flow's runs, newest first (sorted here too, since the allowed ``orderby`` fields are undocumented)."""
        runs = yield from self.paginate_flow_service.flow("/runs", runs_query(flow_id, created_after_ms, limit))
        return newest_first(runs, created_after_ms)

    @operation
    def find_runs_for_window(
        self, flow_id: str, window: tuple[int, int], *, created_after_ms: int | None = None
    ) -> Flow[Resources]:
        """The flow's runs for exactly this ingestion window (epoch seconds), newest first."""
        runs = yield from self.list_runs.flow(flow_id, created_after_ms=created_after_ms)
        return [r for r in runs if run_window(r) == tuple(window)]

    @operation
    def retrigger_run(self, run_id: str) -> Flow[str]:
        """
        Re-run a finished run (``POST /runs/{RUN_ID}/action?op=RE_TRIGGER``); returns the id of the run AEP
        answers with. A run of the same flow and window created after it already is its re-run: that one is
        returned and nothing is sent, so neither a lost answer nor a retried task re-triggers one run twice.

        AEP tells a re-run from its flow's other runs only by its window. For a run it reports no window for,
        a lost answer is still recovered (a run created since the send is taken), but no earlier re-run is
        looked for, so a retried task re-triggers it again; a warning says so.
        """
        original = yield from self.get_run.flow(run_id)
        flow_id, window = original.get("flowId") or "", run_window(original)
        sent_at_ms = int(time.time() * 1000) - 1000

        def rerun(*, since_sent: bool) -> Flow[dict[str, Any] | None]:
            """The newest later run of the same window; after a send, also one created since that says none."""

            def matches(run: dict[str, Any]) -> bool:
                theirs = run_window(run)
                if run.get("id") == run_id:
                    return False
                if window is not None and theirs == window:
                    return True
                return since_sent and None in (window, theirs) and (run.get("createdAt") or 0) >= sent_at_ms

            after = int(original.get("createdAt") or sent_at_ms)
            return next(filter(matches, (yield from self.list_runs.flow(flow_id, created_after_ms=after))), None)

        if window is None:
            log.warning(
                "AEP reports no window for flow run %s, so a re-run of it cannot be told from the other runs of "
                "flow %s: re-triggering it without looking for an earlier re-run (a retried task may re-run it twice)",
                run_id,
                flow_id,
            )
            earlier = None
        else:
            earlier = yield from rerun(since_sent=False)
        if earlier is not None:
            log.info("AEP flow run %s was already re-run as %s; following that one", run_id, earlier["id"])
            return str(earlier["id"])
        result = yield from self.request.flow(
            "POST",
            "flowservice",
            f"/runs/{_q(run_id)}/action",
            params={"op": "RE_TRIGGER"},
            idempotent=False,
            recover=lambda: rerun(since_sent=True),
        )
        if isinstance(result, FoundAfterLostResponse):
            log.warning(
                "The answer to re-triggering run %s was lost, but it did commit: %s", run_id, result.resource["id"]
            )
            return str(result.resource["id"])
        return created_id(result)

    # ------------------------------------------------------------------ Conversion (Data Prep)
    @operation
    def create_mapping_set(self, payload: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        """POST /mappingSets (answers 200, not 201); returns ``{"id", "version", ...}``."""
        name = payload.get("name")
        find = (lambda: self.find_mapping_sets_by_name.flow(name)) if name else None
        return (
            yield from self._create("conversion", "/mappingSets", payload, find=find, kind="mapping set", name=name)
        )

    @operation
    def get_mapping_set(self, mapping_set_id: str) -> Flow[dict[str, Any]]:
        return (yield from self.request.flow("GET", "conversion", f"/mappingSets/{_q(mapping_set_id)}"))

    @operation
    def list_mapping_sets(self, params: Mapping[str, Any] | None = None) -> Flow[Resources]:
        return (yield from self.paginate_conversion.flow("/mappingSets", params))

    @operation
    def find_mapping_sets_by_name(self, name: str) -> Flow[Resources]:
        # Data Prep documents ``name`` only as "filter by name": sent only for a name no syntax could misread.
        listed = yield from self.list_mapping_sets.flow({"name": name} if name_filter("name", name) else None)
        return named(listed, name)

    @operation
    def validate_mapping_set(self, payload: Mapping[str, Any]) -> Flow[Resources]:
        """POST /mappingSets/validate (a dry run of the create): one ``{"status", "errors"}`` per mapping, in order."""
        body = yield from self.request.flow(
            "POST", "conversion", "/mappingSets/validate", json=payload, idempotent=True
        )
        return list((body or {}).get("validationResponse") or [])

    @operation
    def preview_mapping_set(self, payload: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> Flow[Resources]:
        """POST /mappingSets/preview: ``rows`` of source data through the mapping set ``payload``, one
        ``{"data", "errors"}`` per row (AEP answers a list; the spec's single object is wrapped in one)."""
        body = yield from self.request.flow(
            "POST",
            "conversion",
            "/mappingSets/preview",
            json={"data": list(rows), "mappingSet": dict(payload)},
            idempotent=True,
        )
        return body if isinstance(body, list) else [body]

    @operation
    def delete_mapping_set(self, mapping_set_id: str) -> Flow[bool | None]:
        """
        True if deleted, False if it was already gone, None if it is still there. Adobe documents no DELETE for
        mapping sets (Data Prep has GET and PUT only; the aepp SDK sends one): it is sent as a best effort, and
        a GET then decides, since a 404 or 405 to the DELETE says nothing of the mapping set.
        """
        answered = None
        try:
            yield from self.request.flow("DELETE", "conversion", f"/mappingSets/{_q(mapping_set_id)}")
        except AEPApiError as exc:
            if exc.status not in _UNSUPPORTED_DELETE:
                raise
            answered = exc.status
        try:
            yield from self.get_mapping_set.flow(mapping_set_id)
        except AEPApiError as exc:
            if not exc.is_not_found:
                raise
            return answered is None
        log.warning(
            "Mapping set %s is still in AEP: Adobe documents no way to delete a mapping set (the DELETE was "
            "answered %s). It is left in place; an unused mapping set does no harm.",
            mapping_set_id,
            answered or "as a success",
        )
        return None
