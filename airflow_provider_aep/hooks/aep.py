"""AEPHook: auth, headers, retries, pagination and errors for Adobe Experience Platform, in one place."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import tenacity

from airflow_provider_aep.exceptions import AEPApiError, AEPTransportError
from airflow_provider_aep.links.urls import dataflow_url
from airflow_provider_aep.utils.connection import (
    DEFAULT_IMS_URL,
    DEFAULT_PLATFORM_URL,
    DEFAULT_SANDBOX,
    DEFAULT_SCOPES,
    AEPConnectionConfig,
)
from airflow_provider_aep.utils.flow_runs import newest_first, runs_query
from airflow_provider_aep.utils.http import (
    DEFAULT_TIMEOUT,
    IDEMPOTENT_METHODS,
    TOKEN_CACHE,
    TOKEN_TIMEOUT,
    XED_LIST_ACCEPT,
    XED_LOOKUP_ACCEPT,
    RetryPolicy,
    TokenCache,
    first_item,
    is_retryable,
    log_exchange,
    mask_secret,
    new_request_id,
    parse_token_response,
    platform_headers,
    platform_url,
    response_body,
    safe_to_resend,
    token_form,
    token_rejected,
    token_url,
    transport_failure,
    user_agent,
)

if TYPE_CHECKING:  # requests is imported where it is used: ~40 ms off every DAG parse (bench/RESULTS.md)
    import requests

from airflow_provider_aep.version_compat import BaseHook

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
QueryParams = Mapping[str, Any] | list[tuple[str, Any]] | None

DATA_LAKE_CONNECTION_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
CATALOG_PAGE_LIMIT = 100  # Catalog's maximum (aep-api.md §3.2)
CONVERSION_PAGE_LIMIT = 100
_token_fetch_lock = threading.Lock()


class _Recovered:
    """What a create's lookup found after its response was lost: the earlier attempt did commit."""

    def __init__(self, resource: Any) -> None:
        self.resource = resource


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Walk requests' and urllib3's wrapping (args[0], .reason, __cause__, __context__) looking for ``types``."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, types):
            return True
        seen.add(id(item))
        pending.extend([getattr(item, "reason", None), item.__cause__, item.__context__, *item.args[:1]])
    return False


def transport_error(exc: BaseException, *, method: str, url: str, request_id: str) -> AEPTransportError:
    """Wrap a requests exception; CONNECT_FAILED means the request never left, so a create may be re-sent."""
    import requests
    from urllib3.exceptions import NewConnectionError

    return transport_failure(
        exc,
        connect_failed=isinstance(exc, requests.ConnectTimeout)
        or _caused_by(exc, (NewConnectionError, ConnectionRefusedError)),
        timed_out=isinstance(exc, requests.Timeout),
        method=method,
        url=url,
        request_id=request_id,
    )


def _only_or_none(matches: list[dict[str, Any]]) -> dict[str, Any] | None:
    return matches[0] if matches else None


class AEPHook(BaseHook):
    """
    Talks to Adobe Experience Platform with an ``aep`` connection.

    Tokens come from Adobe IMS (OAuth Server-to-Server) and are cached per process; every call gets AEP's
    required headers, a timeout, retries with backoff (``Retry-After`` honoured) and one error type,
    :class:`~airflow_provider_aep.exceptions.AEPApiError`. Create methods never blindly re-send a POST:
    after a lost response they look the resource up by name first.

    :param aep_conn_id: the ``aep`` connection to use.
    :param retry_limit: retries after the first attempt for retryable failures (429, 5xx, network).
    :param retry_delay: first backoff delay in seconds; it doubles per retry.
    :param retry_args: any other :class:`RetryPolicy` field (``max_delay``, ``retry_after_cap``, ``jitter``).
    :param timeout: seconds, or (connect, read), applied to every call unless the call overrides it.
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = "aep_default"
    conn_type = "aep"
    hook_name = "Adobe Experience Platform"

    def __init__(
        self,
        aep_conn_id: str = default_conn_name,
        *,
        retry_limit: int | None = None,
        retry_delay: float | None = None,
        retry_args: Mapping[str, Any] | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        token_cache: TokenCache = TOKEN_CACHE,
    ) -> None:
        super().__init__()
        self.aep_conn_id = aep_conn_id
        self.retry_policy = RetryPolicy.from_hook_args(retry_limit, retry_delay, retry_args)
        self.timeout = timeout
        self._token_cache = token_cache
        self._tenant_id: str | None = None

    # ------------------------------------------------------------------ connection form
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (Airflow 2 and Airflow 3 before YAML form metadata)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import PasswordField, StringField

        return {
            "org_id": StringField(lazy_gettext("IMS Org ID"), widget=BS3TextFieldWidget()),
            "sandbox": StringField(lazy_gettext("Sandbox name"), widget=BS3TextFieldWidget()),
            "scopes": StringField(lazy_gettext("Scopes"), widget=BS3TextFieldWidget()),
            "ims_url": StringField(lazy_gettext("IMS URL"), widget=BS3TextFieldWidget()),
            "platform_url": StringField(lazy_gettext("Platform URL"), widget=BS3TextFieldWidget()),
            "access_token": PasswordField(lazy_gettext("Access token (optional)"), widget=BS3PasswordFieldWidget()),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "port", "extra"],
            "relabeling": {"login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "login": "OAuth Server-to-Server client ID (API key) from Adobe Developer Console",
                "password": "OAuth Server-to-Server client secret",
                "org_id": "ABCDEF1234567890@AdobeOrg",
                "sandbox": DEFAULT_SANDBOX,
                "scopes": DEFAULT_SCOPES,
                "ims_url": DEFAULT_IMS_URL,
                "platform_url": DEFAULT_PLATFORM_URL,
                "access_token": "leave empty to use client credentials",
            },
        }

    def test_connection(self) -> tuple[bool, str]:
        """Get a token and make one cheap authenticated Platform call."""
        try:
            stats = self.get_stats()
        except Exception as err:
            return False, str(err)
        cfg = self.config
        return True, (f"Connected to AEP org {cfg.org_id}, sandbox {cfg.sandbox!r}, tenant {stats.get('tenantId')!r}")

    # ------------------------------------------------------------------ transport
    @cached_property
    def config(self) -> AEPConnectionConfig:
        config = AEPConnectionConfig.from_connection(self.get_connection(self.aep_conn_id))
        mask_secret(config.client_secret)
        mask_secret(config.access_token)
        return config

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook."""
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = user_agent()
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def dataflow_url(self, flow_id: str, run_id: str | None = None) -> str:
        return dataflow_url(self.config.org_id, self.config.sandbox, flow_id, run_id)

    def get_access_token(self, *, force_refresh: bool = False) -> str:
        """A valid bearer token: the connection's fixed one, the cached one, or a fresh one from IMS."""
        cfg = self.config
        if cfg.access_token:
            return cfg.access_token
        key = cfg.token_cache_key
        if not force_refresh and (token := self._token_cache.get(key)):
            return token
        with _token_fetch_lock:  # one IMS call even when many threads find the cache empty
            if not force_refresh and (token := self._token_cache.get(key)):
                return token
            for attempt in tenacity.Retrying(**self.retry_policy.tenacity_kwargs(lambda: "IMS token request")):
                with attempt:
                    fresh, expires_in = self._fetch_token()
            self._token_cache.put(key, fresh, expires_in)
        return fresh

    def _fetch_token(self) -> tuple[str, float]:
        import requests

        url = token_url(self.config)
        request_id = new_request_id()
        try:
            response = self.session.post(
                url,
                data=token_form(self.config),
                headers={"x-request-id": request_id, "Accept": "application/json"},
                timeout=TOKEN_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, method="POST", url=url, request_id=request_id) from None
        token, expires_in = parse_token_response(
            response.status_code, response.headers, response.text, url=url, request_id=request_id
        )
        mask_secret(token)
        log.info("Obtained an AEP access token from IMS, valid for %d s", expires_in)
        return token, expires_in

    def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Any] | None = None,
    ) -> Any:
        """
        Call a Platform service and return the decoded body (None when empty).

        Idempotent calls are retried per the retry policy. A non-idempotent call is re-sent only when it
        surely did not commit (429, connection refused), unless ``recover`` is given: then after an
        ambiguous failure ``recover()`` runs first and, if it finds the resource, its result is returned
        wrapped in ``_Recovered`` instead of sending again.
        """
        method = method.upper()
        url = platform_url(self.config, service, path)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        committed_maybe = False

        def should_retry(exc: BaseException) -> bool:
            if not is_retryable(exc):
                return False
            return idempotent or recover is not None or safe_to_resend(exc)

        def describe() -> str:
            return f"AEP {method} {urlsplit(url).path}"

        for attempt in tenacity.Retrying(**self.retry_policy.tenacity_kwargs(describe, retry=should_retry)):
            with attempt:
                if committed_maybe and recover is not None:
                    found = recover()
                    if found is not None:
                        return _Recovered(found)
                try:
                    return self._send(
                        method, url, params=params, json=json, accept=accept, headers=headers, timeout=timeout
                    )
                except AEPApiError as exc:
                    committed_maybe = committed_maybe or not safe_to_resend(exc)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        json: Any,
        accept: str | None,
        headers: Mapping[str, str] | None,
        timeout: Timeout | None,
    ) -> Any:
        import requests

        token = self.get_access_token()
        for auth_attempt in (1, 2):
            request_id = new_request_id()
            sent_headers = platform_headers(
                self.config, token, request_id=request_id, accept=accept, has_body=json is not None, extra=headers
            )
            started = time.monotonic()
            try:
                response = self.session.request(
                    method, url, params=params, json=json, headers=sent_headers, timeout=timeout or self.timeout
                )
            except requests.RequestException as exc:
                raise transport_error(exc, method=method, url=url, request_id=request_id) from None
            log_exchange(method, url, response.status_code, started, request_id)
            if token_rejected(response.status_code, auth_attempt, self.config):
                self._token_cache.invalidate(self.config.token_cache_key, token)
                token = self.get_access_token(force_refresh=True)
                continue
            break
        return response_body(
            response.status_code, response.headers, response.text, method=method, url=url, request_id=request_id
        )

    # ------------------------------------------------------------------ pagination (one per AEP list style)
    def paginate_flow_service(self, path: str, params: QueryParams = None) -> Iterator[dict[str, Any]]:
        """Flow Service lists: ``items`` plus ``_links.next.href`` carrying a continuationToken."""
        base = _pairs(params)
        query = base
        while True:
            page = self.request("GET", "flowservice", path, params=query) or {}
            yield from page.get("items", [])
            href = ((page.get("_links") or {}).get("next") or {}).get("href")
            token = dict(parse_qsl(urlsplit(href).query)).get("continuationToken") if href else None
            if not token:
                return
            query = [*base, ("continuationToken", token)]

    def paginate_schema_registry(
        self, path: str, params: QueryParams = None, *, accept: str = XED_LIST_ACCEPT
    ) -> Iterator[dict[str, Any]]:
        """Schema Registry lists: ``results`` plus ``_page.next``, sent back as ``start`` (needs ``orderby``)."""
        base = _pairs(params)
        if not any(k == "orderby" for k, _ in base):
            base = [("orderby", "title"), *base]
        query = base
        while True:
            page = self.request("GET", "schemaregistry", path, params=query, accept=accept) or {}
            yield from page.get("results", [])
            nxt = (page.get("_page") or {}).get("next")
            if nxt in (None, ""):
                return
            query = [*base, ("start", nxt)]

    def paginate_catalog(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Catalog lists: an object keyed by id, paged with ``start``/``limit`` until a short page."""
        query: dict[str, Any] = {"limit": CATALOG_PAGE_LIMIT, **(params or {})}
        limit = int(query["limit"])
        start = int(query.get("start", 0))
        while True:
            query["start"] = start
            page = self.request("GET", "catalog", path, params=_pairs(query)) or {}
            for object_id, obj in page.items():
                yield {"id": object_id, **obj} if isinstance(obj, dict) else {"id": object_id, "value": obj}
            if len(page) < limit:
                return
            start += limit

    def paginate_conversion(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Conversion (Data Prep) lists: ``data`` plus ``_page``, paged with ``start``/``limit``."""
        query: dict[str, Any] = {"limit": CONVERSION_PAGE_LIMIT, **(params or {})}
        limit = int(query["limit"])
        start = int(query.get("start", 0))
        while True:
            query["start"] = start
            page = self.request("GET", "conversion", path, params=_pairs(query)) or {}
            data = page.get("data", [])
            yield from data
            if len(data) < limit:
                return
            start += limit

    # ------------------------------------------------------------------ creates and deletes (shared mechanics)
    def _create(
        self,
        service: str,
        path: str,
        payload: Mapping[str, Any],
        *,
        find: Callable[[], dict[str, Any] | None] | None,
        params: Mapping[str, Any] | None = None,
        what: str,
    ) -> Any:
        result = self.request("POST", service, path, json=payload, params=params, idempotent=False, recover=find)
        if isinstance(result, _Recovered):
            log.warning(
                "The response to creating %s was lost, but the earlier attempt did commit it; using it: %s",
                what,
                _resource_id(result.resource),
            )
            return result.resource
        return result

    def _delete(self, service: str, path: str, *, what: str) -> bool:
        """
        DELETE; True if it existed. A 404 (already gone, maybe by our own lost earlier attempt) counts
        as done, and so does Catalog's 200 with an empty list, its way of saying nothing matched.
        """
        try:
            body = self.request("DELETE", service, path)
        except AEPApiError as exc:
            if exc.is_not_found:
                log.info("%s was already gone", what)
                return False
            raise
        if body == []:
            log.info("%s was already gone", what)
            return False
        return True

    # ------------------------------------------------------------------ Schema Registry
    def get_stats(self) -> dict[str, Any]:
        return self.request("GET", "schemaregistry", "/stats")

    def get_tenant_id(self) -> str:
        """The org's tenant id: custom XDM fields live under ``_{tenantId}``."""
        if self._tenant_id is None:
            self._tenant_id = self.get_stats()["tenantId"]
        return self._tenant_id

    def list_xdm_resources(
        self, kind: str, *, container: str = "tenant", properties: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Summaries of classes, schemas or fieldgroups; ``properties`` are ``property=`` filters."""
        return self.paginate_schema_registry(f"/{container}/{kind}", [("property", p) for p in properties or []])

    def find_xdm_by_title(self, kind: str, title: str, *, container: str = "tenant") -> dict[str, Any] | None:
        """The class, schema or field group with exactly this title (titles are unique per sandbox)."""
        matches = [
            r
            for r in self.list_xdm_resources(kind, container=container, properties=[f"title=={title}"])
            if r.get("title") == title
        ]
        return _only_or_none(matches)

    def get_xdm_resource(
        self, kind: str, resource_id: str, *, container: str = "tenant", accept: str = XED_LOOKUP_ACCEPT
    ) -> dict[str, Any]:
        return self.request(
            "GET", "schemaregistry", f"/{container}/{kind}/{quote(resource_id, safe='')}", accept=accept
        )

    def find_class_by_title(self, title: str) -> dict[str, Any] | None:
        return self.find_xdm_by_title("classes", title)

    def find_schema_by_title(self, title: str) -> dict[str, Any] | None:
        return self.find_xdm_by_title("schemas", title)

    def get_class(self, class_id: str, *, accept: str = XED_LOOKUP_ACCEPT) -> dict[str, Any]:
        container = "global" if class_id.startswith("https://ns.adobe.com/xdm/") else "tenant"
        return self.get_xdm_resource("classes", class_id, container=container, accept=accept)

    def get_schema(self, schema_id: str, *, accept: str = XED_LOOKUP_ACCEPT) -> dict[str, Any]:
        return self.get_xdm_resource("schemas", schema_id, accept=accept)

    def create_class(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /tenant/classes; returns the class (with ``$id``)."""
        return self._create(
            "schemaregistry",
            "/tenant/classes",
            payload,
            find=lambda: self.find_class_by_title(payload["title"]),
            what=f"class {payload['title']!r}",
        )

    def create_schema(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /tenant/schemas; returns the schema (with ``$id``)."""
        return self._create(
            "schemaregistry",
            "/tenant/schemas",
            payload,
            find=lambda: self.find_schema_by_title(payload["title"]),
            what=f"schema {payload['title']!r}",
        )

    def patch_schema(self, schema_id: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON-Patch a tenant schema, e.g. add field groups to ``/allOf/-``."""
        return self.request("PATCH", "schemaregistry", f"/tenant/schemas/{quote(schema_id, safe='')}", json=operations)

    def list_field_groups(
        self, *, container: str = "global", intended_to_extend: str | None = None
    ) -> list[dict[str, Any]]:
        props = [f"meta:intendedToExtend=={intended_to_extend}"] if intended_to_extend else None
        return list(self.list_xdm_resources("fieldgroups", container=container, properties=props))

    def delete_schema(self, schema_id: str) -> bool:
        return self._delete(
            "schemaregistry", f"/tenant/schemas/{quote(schema_id, safe='')}", what=f"schema {schema_id}"
        )

    def delete_class(self, class_id: str) -> bool:
        return self._delete("schemaregistry", f"/tenant/classes/{quote(class_id, safe='')}", what=f"class {class_id}")

    # ------------------------------------------------------------------ Catalog
    def create_dataset(self, payload: Mapping[str, Any]) -> str:
        """POST /dataSets?requestDataSource=true; returns the dataset id."""
        result = self._create(
            "catalog",
            "/dataSets",
            payload,
            params={"requestDataSource": "true"},
            find=lambda: _only_or_none(self.find_datasets_by_name(payload["name"])),
            what=f"dataset {payload['name']!r}",
        )
        if isinstance(result, list) and result:  # ["@/dataSets/<id>"]
            return str(result[0]).rsplit("/", 1)[-1]
        if isinstance(result, dict) and "id" in result:
            return result["id"]
        raise AEPApiError(f"unexpected dataset create response: {result!r}", method="POST", url="/dataSets")

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        body = self.request("GET", "catalog", f"/dataSets/{quote(dataset_id, safe='')}") or {}
        obj: dict[str, Any] = body.get(dataset_id) or next(iter(body.values()), {})
        return {"id": dataset_id, **obj}

    def list_datasets(self, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        return self.paginate_catalog("/dataSets", params)

    def find_datasets_by_name(self, name: str) -> list[dict[str, Any]]:
        # Catalog treats * as a wildcard in name filters; ** is a literal asterisk.
        pattern = name.replace("*", "**")
        return [d for d in self.list_datasets({"property": f"name=={pattern}"}) if d.get("name") == name]

    def delete_dataset(self, dataset_id: str) -> bool:
        return self._delete("catalog", f"/dataSets/{quote(dataset_id, safe='')}", what=f"dataset {dataset_id}")

    # ------------------------------------------------------------------ Flow Service (shared shapes)
    def _flow_get(self, collection: str, resource_id: str) -> dict[str, Any]:
        return first_item(self.request("GET", "flowservice", f"/{collection}/{quote(resource_id, safe='')}") or {})

    def _flow_find(self, collection: str, name: str, filters: list[str] | None = None) -> list[dict[str, Any]]:
        params = [("property", f) for f in filters or []]
        return [r for r in self.paginate_flow_service(f"/{collection}", params) if r.get("name") == name]

    def _flow_create(
        self, collection: str, payload: Mapping[str, Any], find: Callable[[], dict[str, Any] | None] | None
    ) -> str:
        what = f"{collection[:-1]} {payload.get('name')!r}"
        result = self._create("flowservice", f"/{collection}", payload, find=find, what=what)
        return _resource_id(result)

    def _flow_delete(self, collection: str, resource_id: str) -> bool:
        return self._delete(
            "flowservice", f"/{collection}/{quote(resource_id, safe='')}", what=f"{collection[:-1]} {resource_id}"
        )

    # connection specs and flow specs
    def get_connection_spec(self, spec_id: str) -> dict[str, Any]:
        return self._flow_get("connectionSpecs", spec_id)

    def find_connection_specs_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._flow_find("connectionSpecs", name, [f"name=={name}"])

    def get_flow_spec(self, flow_spec_id: str) -> dict[str, Any]:
        return self._flow_get("flowSpecs", flow_spec_id)

    def find_flow_specs_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._flow_find("flowSpecs", name, [f'name=="{name}"'])

    # base connections
    def create_base_connection(self, payload: Mapping[str, Any]) -> str:
        return self._flow_create(
            "connections", payload, lambda: _only_or_none(self.find_base_connections_by_name(payload["name"]))
        )

    def get_base_connection(self, connection_id: str) -> dict[str, Any]:
        return self._flow_get("connections", connection_id)

    def find_base_connections_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._flow_find("connections", name, [f"name=={name}"])

    def delete_base_connection(self, connection_id: str) -> bool:
        return self._flow_delete("connections", connection_id)

    # source connections (only id, connectionSpec.id and baseConnectionId are filterable server-side)
    def create_source_connection(self, payload: Mapping[str, Any]) -> str:
        return self._flow_create(
            "sourceConnections",
            payload,
            lambda: _only_or_none(
                self.find_source_connections_by_name(payload["name"], payload.get("baseConnectionId"))
            ),
        )

    def get_source_connection(self, connection_id: str) -> dict[str, Any]:
        return self._flow_get("sourceConnections", connection_id)

    def find_source_connections_by_name(self, name: str, base_connection_id: str | None = None) -> list[dict[str, Any]]:
        filters = [f"baseConnectionId=={base_connection_id}"] if base_connection_id else None
        return self._flow_find("sourceConnections", name, filters)

    def delete_source_connection(self, connection_id: str) -> bool:
        return self._flow_delete("sourceConnections", connection_id)

    # target connections
    def create_target_connection(self, payload: Mapping[str, Any]) -> str:
        spec_id = (payload.get("connectionSpec") or {}).get("id")
        return self._flow_create(
            "targetConnections",
            payload,
            lambda: _only_or_none(self.find_target_connections_by_name(payload["name"], spec_id)),
        )

    def get_target_connection(self, connection_id: str) -> dict[str, Any]:
        return self._flow_get("targetConnections", connection_id)

    def find_target_connections_by_name(self, name: str, connection_spec_id: str | None = None) -> list[dict[str, Any]]:
        filters = [f"connectionSpec.id=={connection_spec_id}"] if connection_spec_id else None
        return self._flow_find("targetConnections", name, filters)

    def delete_target_connection(self, connection_id: str) -> bool:
        return self._flow_delete("targetConnections", connection_id)

    # flows
    def create_flow(self, payload: Mapping[str, Any]) -> str:
        return self._flow_create("flows", payload, lambda: _only_or_none(self.find_flows_by_name(payload["name"])))

    def get_flow(self, flow_id: str) -> dict[str, Any]:
        return self._flow_get("flows", flow_id)

    def find_flows_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._flow_find("flows", name, [f"name=={name}"])

    def update_flow(self, flow_id: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON-Patch a flow with the If-Match its etag needs; on a stale etag (412) re-read and apply once more."""
        for attempt in (1, 2):
            etag = self.get_flow(flow_id).get("etag")
            try:
                return self.request(
                    "PATCH",
                    "flowservice",
                    f"/flows/{quote(flow_id, safe='')}",
                    json=operations,
                    headers={"If-Match": etag or ""},
                )
            except AEPApiError as exc:
                if exc.status != 412 or attempt == 2:
                    raise
                log.info("Flow %s changed while we patched it (HTTP 412); re-reading its etag", flow_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def delete_flow(self, flow_id: str) -> bool:
        return self._flow_delete("flows", flow_id)

    # runs
    def create_run(self, flow_id: str, params: Mapping[str, Any]) -> str:
        """POST /runs (on-demand run of a flow scheduled ``once``); accepts all three documented answer shapes."""
        sent_at_ms = int(time.time() * 1000) - 1000

        def find() -> dict[str, Any] | None:
            return next(self.list_runs(flow_id, created_after_ms=sent_at_ms), None)

        result = self._create(
            "flowservice",
            "/runs",
            {"flowId": flow_id, "params": dict(params)},
            find=find,
            what=f"run of flow {flow_id}",
        )
        return _resource_id(result)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._flow_get("runs", run_id)

    def list_runs(
        self, flow_id: str, *, created_after_ms: int | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The flow's runs, newest first (sorted here too, since the allowed ``orderby`` fields are undocumented)."""
        return iter(
            newest_first(
                self.paginate_flow_service("/runs", runs_query(flow_id, created_after_ms, limit)), created_after_ms
            )
        )

    # ------------------------------------------------------------------ Conversion (Data Prep)
    def create_mapping_set(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /mappingSets (answers 200, not 201); returns ``{"id", "version", ...}``."""
        name = payload.get("name")
        find = (lambda: _only_or_none(self.find_mapping_sets_by_name(name))) if name else None
        return self._create("conversion", "/mappingSets", payload, find=find, what=f"mapping set {name!r}")

    def get_mapping_set(self, mapping_set_id: str) -> dict[str, Any]:
        return self.request("GET", "conversion", f"/mappingSets/{quote(mapping_set_id, safe='')}")

    def list_mapping_sets(self, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        return self.paginate_conversion("/mappingSets", params)

    def find_mapping_sets_by_name(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.list_mapping_sets({"name": name}) if m.get("name") == name]

    def delete_mapping_set(self, mapping_set_id: str) -> bool:
        return self._delete(
            "conversion", f"/mappingSets/{quote(mapping_set_id, safe='')}", what=f"mapping set {mapping_set_id}"
        )


def _pairs(params: QueryParams) -> list[tuple[str, Any]]:
    items = params.items() if isinstance(params, Mapping) else (params or [])
    return [(k, v) for k, v in items if v is not None]


def _resource_id(resource: Any) -> str:
    """The id from any create answer or lookup result: {"id"}, {"$id"}, {"items": [{"id"}]}."""
    if isinstance(resource, dict):
        if resource.get("items"):
            return _resource_id(resource["items"][0])
        for key in ("id", "$id"):
            if resource.get(key):
                return str(resource[key])
    raise AEPApiError(f"AEP answered a create without an id: {resource!r}")
