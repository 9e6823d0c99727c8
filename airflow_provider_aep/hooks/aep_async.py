"""AEPAsyncHook: the non-blocking twin of AEPHook for triggers, on httpx, with the same transport policy."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import functools
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import tenacity

from airflow_provider_aep.exceptions import AEPApiError
from airflow_provider_aep.links.urls import dataflow_url
from airflow_provider_aep.utils.connection import AEPConnectionConfig
from airflow_provider_aep.utils.flow_runs import newest_first, runs_query
from airflow_provider_aep.utils.http import (
    DEFAULT_TIMEOUT,
    IDEMPOTENT_METHODS,
    TOKEN_CACHE,
    TOKEN_TIMEOUT,
    RetryPolicy,
    TokenCache,
    amask_secret,
    first_item,
    is_retryable,
    log_exchange,
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
from airflow_provider_aep.version_compat import BaseHook

log = logging.getLogger(__name__)
K = TypeVar("K")
T = TypeVar("T")

Timeout = float | tuple[float, float]
# One IMS call per event loop when many triggers find the cache empty at once. asyncio locks bind to a loop.
_token_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
# Hooks without a custom transport share one AsyncClient per event loop. Each client builds its own SSL context
# (~30 ms of CPU, ~1 MB): with a client per hook, 1,000 triggers blocked the triggerer's loop for tens of seconds
# and added ~1 GB (bench/RESULTS.md). The shared pool is bounded and keeps its idle connections for reuse.
# Requests beyond the pool size wait on a semaphore, not in httpcore's pool, whose queue costs
# O(waiting x connections) per dispatch: 1,000 triggers polling at once made that the loop's bottleneck.
SHARED_CLIENT_MAX_CONNECTIONS = 50
_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_request_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
# Connection lookups in flight per loop and conn id, shared by the hooks that ask meanwhile (get_config).
_config_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)
# get_run calls of one loop are coalesced into Flow Service list reads, `GET /runs?property=id==a,b,...`
# (comma means OR, aep-api.md §4.1): 1,000 triggers polling every second made the loop CPU-bound at
# ~2-3 ms of httpx CPU per request (bench/RESULTS.md); a read of RUN_BATCH_SIZE runs costs about one request.
# Calls that arrive within RUN_BATCH_WINDOW of the first one share a read (a full chunk goes at once).
# 100 UUIDs make a ~4 KB query, well under the 8 KB URL limits of common gateways.
RUN_BATCH_SIZE = 100
RUN_BATCH_WINDOW = 0.005
_run_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, _RunBatcher]] = (
    weakref.WeakKeyDictionary()
)


# Waiters of one loop (on a list read's answer or a shared timer) woken per event-loop iteration, all sources
# together. Waking ~100 triggers at once ran their poll handling (summary, progress log line: ~0.2 ms each)
# back to back; with several answers arriving together the loop stalled for 50-120 ms (bench/RESULTS.md).
WAKE_SLICE = 20
# Waits of one loop that end within the same ALARM_RESOLUTION share one timer. 1,000 triggers polling in step
# otherwise keep 1,000 timers (coroutine, future, handle, ...) alive through every interval; they all reach
# the GC's oldest generation, whose full collections block the loop for the whole heap, and make those
# collections several times as frequent (bench/RESULTS.md).
ALARM_RESOLUTION = 0.01
_alarms: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, list[asyncio.Future[None]]]] = (
    weakref.WeakKeyDictionary()
)


def _get_or_make(mapping: MutableMapping[K, T], key: K, factory: Callable[[], T]) -> T:
    value = mapping.get(key)
    if value is None:
        value = mapping[key] = factory()
    return value


def loop_local(registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T], factory: Callable[[], T]) -> T:
    """The running loop's entry of a per-loop ``registry``, made by ``factory`` on first use."""
    return _get_or_make(registry, asyncio.get_running_loop(), factory)


def loop_local_keyed(
    registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, T]], key: K, factory: Callable[[], T]
) -> T:
    """The running loop's entry for ``key`` of a per-loop ``registry`` of dicts, made by ``factory`` on first use."""
    entries = loop_local(registry, dict)
    return _get_or_make(entries, key, factory)


async def async_sleep(seconds: float) -> None:
    """
    Every wait of the async hook and the trigger goes through here, so tests can swap it for a fake clock.
    Ends at most ALARM_RESOLUTION (plus the wake-up slicing) after ``seconds``, never before.
    """
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    loop = asyncio.get_running_loop()
    due = math.ceil((loop.time() + seconds) / ALARM_RESOLUTION) * ALARM_RESOLUTION
    alarms = loop_local(_alarms, dict)
    waiters = alarms.get(due)
    if waiters is None:
        waiters = alarms[due] = []
        loop.call_at(due, _ring, alarms, due)
    future: asyncio.Future[None] = loop.create_future()
    waiters.append(future)
    await future


def _ring(alarms: dict[float, list[asyncio.Future[None]]], due: float) -> None:
    waker = _waker()
    for future in alarms.pop(due, ()):
        waker.wake(future, None)


class _Waker:
    """Sets the results of one loop's waiting futures (timers, list reads) WAKE_SLICE per loop iteration."""

    def __init__(self) -> None:
        # No reference to the loop: the registry holds wakers in a WeakKeyDictionary keyed by it.
        self._queue: collections.deque[tuple[asyncio.Future[Any], Any]] = collections.deque()
        self._draining = False

    def wake(self, future: asyncio.Future[Any], value: Any) -> None:
        self._queue.append((future, value))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        for _ in range(min(WAKE_SLICE, len(self._queue))):
            future, value = self._queue.popleft()
            if not future.done():  # a cancelled waiter
                future.set_result(value)
        if self._queue:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._draining = False


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waker] = weakref.WeakKeyDictionary()


def _waker() -> _Waker:
    return loop_local(_wakers, _Waker)


def _sleep(seconds: float) -> Awaitable[None]:
    return async_sleep(seconds)  # looked up at call time so a patched async_sleep takes effect


def _token_lock() -> asyncio.Lock:
    return loop_local(_token_locks, asyncio.Lock)


def _shared_client() -> httpx.AsyncClient | None:
    """The running loop's shared client (created on first use), or None outside a running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    client = _shared_clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(
            max_connections=SHARED_CLIENT_MAX_CONNECTIONS, max_keepalive_connections=SHARED_CLIENT_MAX_CONNECTIONS
        )
        client = _shared_clients[loop] = httpx.AsyncClient(limits=limits, headers={"User-Agent": user_agent()})
    return client


def _request_slot() -> asyncio.Semaphore:
    """At most SHARED_CLIENT_MAX_CONNECTIONS requests of the running loop's shared client in flight."""
    return loop_local(_request_slots, lambda: asyncio.Semaphore(SHARED_CLIENT_MAX_CONNECTIONS))


def _httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return httpx.Timeout(read, connect=connect)
    return httpx.Timeout(timeout)


def httpx_transport_error(exc: httpx.TransportError, *, method: str, url: str, request_id: str) -> AEPApiError:
    """Classify an httpx failure with the sync hook's codes (CONNECT_FAILED, READ_TIMEOUT, CONNECTION_ERROR)."""
    return transport_failure(
        exc,
        connect_failed=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
        timed_out=isinstance(exc, httpx.TimeoutException),
        method=method,
        url=url,
        request_id=request_id,
    )


async def aget_connection(conn_id: str) -> Any:
    """The Airflow connection without blocking the loop: ``aget_connection`` on Airflow 3, a thread on Airflow 2."""
    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


class _Direct:
    """Batcher answer: read this run with the caller's own ``GET /runs/{id}``."""


_DIRECT = _Direct()


class _RunBatcher:
    """
    Coalesces the ``get_run`` calls of one loop and one batch key into ``GET /runs?property=id==...`` reads.

    A window with a single run id (a lone caller) and every id missing from a list answer resolve to
    ``_DIRECT``: the caller then reads ``GET /runs/{id}`` itself, so its result and errors (a real 404
    included) are exactly the direct call's. An error of a list read (after the shared retry policy) is
    raised to every waiter of that chunk.
    """

    def __init__(self) -> None:
        # No reference to the loop: the registry holds batchers in a WeakKeyDictionary keyed by it.
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._hooks: list[AEPAsyncHook] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, hook: AEPAsyncHook, run_id: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiters = self._pending.get(run_id)
        if waiters is None:
            waiters = self._pending[run_id] = []
            self._hooks.append(hook)
        waiters.append(future)
        if len(self._pending) >= RUN_BATCH_SIZE:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(RUN_BATCH_WINDOW, self._flush)
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, hooks = self._pending, self._hooks
        self._pending, self._hooks = {}, []
        if len(pending) == 1:
            (waiters,) = pending.values()
            _resolve(waiters, _DIRECT)
            return
        ids = list(pending)
        for start in range(0, len(ids), RUN_BATCH_SIZE):
            chunk = {run_id: pending[run_id] for run_id in ids[start : start + RUN_BATCH_SIZE]}
            # Any waiting hook will do: the batch key makes them equivalent (config, policy, timeout, transport).
            task = asyncio.get_running_loop().create_task(self._read_chunk(hooks[start], chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _read_chunk(hook: AEPAsyncHook, chunk: dict[str, list[asyncio.Future[Any]]]) -> None:
        try:
            query = [("property", "id==" + ",".join(chunk)), ("limit", str(len(chunk)))]
            runs = await hook.paginate_flow_service("/runs", query)
            by_id = {run.get("id"): run for run in runs if isinstance(run, Mapping)}
            del runs
            for run_id, waiters in chunk.items():
                _resolve(waiters, by_id.pop(run_id, _DIRECT))  # popped: a woken trigger's run is its own to drop
        except Exception as exc:
            for waiters in chunk.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
        except BaseException:  # cancelled (loop shutting down): so are its waiters
            for waiters in chunk.values():
                for future in waiters:
                    future.cancel()
            raise


def _resolve(waiters: list[asyncio.Future[Any]], value: Any) -> None:
    waker = _waker()
    for i, future in enumerate(waiters):
        # Two triggers watching one run each get their own copy of it.
        waker.wake(future, copy.deepcopy(value) if i and value is not _DIRECT else value)


def _forget_lookup(lookups: dict[str, asyncio.Task[Any]], conn_id: str, done: asyncio.Task[Any]) -> None:
    if lookups.get(conn_id) is done:
        del lookups[conn_id]
    if not done.cancelled():
        done.exception()  # retrieved: a failed lookup is raised to its waiters, not logged as never retrieved


class AEPAsyncHook(BaseHook):
    """
    Async AEP calls for triggers, used as ``async with AEPAsyncHook(...) as hook:``. Inside an event loop,
    hooks share that loop's ``httpx.AsyncClient`` (one connection pool for all triggers); with a custom
    ``transport``, or outside a loop, the hook owns a client for its life and closes it on exit.

    Tokens, headers, retries (``Retry-After`` honoured), 401 refresh-once and error decoding are the
    sync :class:`~airflow_provider_aep.hooks.aep.AEPHook`'s, from ``utils.http``; the token cache is shared
    with it. ``transport`` is for tests (``httpx.MockTransport``).
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = "aep_default"

    def __init__(
        self,
        aep_conn_id: str = default_conn_name,
        *,
        retry_limit: int | None = None,
        retry_delay: float | None = None,
        retry_args: Mapping[str, Any] | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        token_cache: TokenCache = TOKEN_CACHE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.aep_conn_id = aep_conn_id
        self.retry_policy = RetryPolicy.from_hook_args(retry_limit, retry_delay, retry_args)
        self.timeout = timeout
        self._token_cache = token_cache
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._owns_client = False
        self._config: AEPConnectionConfig | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> AEPAsyncHook:
        self.client  # noqa: B018 - create it now so the whole `async with` shares it
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            shared = _shared_client() if self._transport is None else None
            self._owns_client = shared is None
            self._client = shared or httpx.AsyncClient(
                transport=self._transport, timeout=_httpx_timeout(self.timeout), headers={"User-Agent": user_agent()}
            )
        return self._client

    def _slot(self) -> Any:
        client = self.client  # resolves shared vs own
        return contextlib.nullcontext() if self._owns_client or client is None else _request_slot()

    async def aclose(self) -> None:
        """Close the hook's own client; a loop's shared client stays open for the other hooks."""
        if self._client is not None:
            if self._owns_client:
                await self._client.aclose()
            self._client = None

    def get_conn(self) -> httpx.AsyncClient:
        return self.client

    async def get_config(self) -> AEPConnectionConfig:
        """
        The validated connection, looked up once per hook without blocking the event loop. Hooks of one loop
        asking for the same connection at the same time share one lookup (1,000 triggers starting together
        made 1,000 lookups, ~1 ms of CPU each, in one burst: bench/RESULTS.md); a later hook looks up afresh.
        """
        if self._config is None:
            lookups = loop_local(_config_lookups, dict)
            lookup = lookups.get(self.aep_conn_id)
            if lookup is None:
                lookup = lookups[self.aep_conn_id] = asyncio.get_running_loop().create_task(self._lookup_config())
                lookup.add_done_callback(functools.partial(_forget_lookup, lookups, self.aep_conn_id))
            self._config = await asyncio.shield(lookup)
        return self._config  # type: ignore[return-value]  # set just above

    async def _lookup_config(self) -> AEPConnectionConfig:
        config = AEPConnectionConfig.from_connection(await aget_connection(self.aep_conn_id))
        await amask_secret(config.client_secret)
        await amask_secret(config.access_token)
        return config

    async def dataflow_url(self, flow_id: str, run_id: str | None = None) -> str:
        config = await self.get_config()
        return dataflow_url(config.org_id, config.sandbox, flow_id, run_id)

    def _retrying(self, describe: Any, **kwargs: Any) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(sleep=_sleep, **self.retry_policy.tenacity_kwargs(describe, **kwargs))

    @staticmethod
    def sleep(seconds: float) -> Awaitable[None]:
        """Wait without blocking the loop (patchable through ``async_sleep``)."""
        return _sleep(seconds)

    # ------------------------------------------------------------------ tokens
    async def get_access_token(self, *, force_refresh: bool = False) -> str:
        """A valid bearer token: the connection's fixed one, the shared cached one, or a fresh one from IMS."""
        config = await self.get_config()
        if config.access_token:
            return config.access_token
        key = config.token_cache_key
        if not force_refresh and (token := self._token_cache.get(key)):
            return token
        async with _token_lock():
            if not force_refresh and (token := self._token_cache.get(key)):
                return token
            async for attempt in self._retrying(lambda: "IMS token request"):
                with attempt:
                    fresh, expires_in = await self._fetch_token(config)
            self._token_cache.put(key, fresh, expires_in)
        return fresh

    async def _fetch_token(self, config: AEPConnectionConfig) -> tuple[str, float]:
        url = token_url(config)
        request_id = new_request_id()
        try:
            async with self._slot():
                response = await self.client.post(
                    url,
                    data=token_form(config),
                    headers={"x-request-id": request_id, "Accept": "application/json"},
                    timeout=_httpx_timeout(TOKEN_TIMEOUT),
                )
        except httpx.TransportError as exc:
            raise httpx_transport_error(exc, method="POST", url=url, request_id=request_id) from None
        token, expires_in = parse_token_response(
            response.status_code, response.headers, response.text, url=url, request_id=request_id
        )
        await amask_secret(token)
        log.info("Obtained an AEP access token from IMS, valid for %d s", expires_in)
        return token, expires_in

    # ------------------------------------------------------------------ requests
    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """
        Call a Platform service and return the decoded body (None when empty).

        Retried per the policy when idempotent; a POST is re-sent only when it surely did not commit.
        """
        method = method.upper()
        config = await self.get_config()
        url = platform_url(config, service, path)
        idempotent = method in IDEMPOTENT_METHODS

        def should_retry(exc: BaseException) -> bool:
            return is_retryable(exc) and (idempotent or safe_to_resend(exc))

        def describe() -> str:
            return f"AEP {method} {urlsplit(url).path}"

        async for attempt in self._retrying(describe, retry=should_retry):
            with attempt:
                return await self._send(config, method, url, params=params, json=json, accept=accept, headers=headers)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _send(
        self,
        config: AEPConnectionConfig,
        method: str,
        url: str,
        *,
        params: Any,
        json: Any,
        accept: str | None,
        headers: Mapping[str, str] | None,
    ) -> Any:
        token = await self.get_access_token()
        for auth_attempt in (1, 2):
            request_id = new_request_id()
            sent_headers = platform_headers(
                config, token, request_id=request_id, accept=accept, has_body=json is not None, extra=headers
            )
            started = time.monotonic()
            try:
                async with self._slot():
                    response = await self.client.request(
                        method,
                        url,
                        params=_query(params),
                        json=json,
                        headers=sent_headers,
                        timeout=_httpx_timeout(self.timeout),
                    )
            except httpx.TransportError as exc:
                raise httpx_transport_error(exc, method=method, url=url, request_id=request_id) from None
            log_exchange(method, url, response.status_code, started, request_id)
            if token_rejected(response.status_code, auth_attempt, config):
                self._token_cache.invalidate(config.token_cache_key, token)
                token = await self.get_access_token(force_refresh=True)
                continue
            break
        return response_body(
            response.status_code, response.headers, response.text, method=method, url=url, request_id=request_id
        )

    # ------------------------------------------------------------------ Flow Service
    async def paginate_flow_service(
        self, path: str, params: list[tuple[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """All items of a Flow Service list, following ``_links.next.href`` continuation tokens."""
        base = [(k, v) for k, v in params or [] if v is not None]
        query = base
        items: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", "flowservice", path, params=query) or {}
            items.extend(page.get("items", []))
            href = ((page.get("_links") or {}).get("next") or {}).get("href")
            token = dict(parse_qsl(urlsplit(href).query)).get("continuationToken") if href else None
            if not token:
                return items
            query = [*base, ("continuationToken", token)]

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """
        One run (``GET /runs/{id}``). Concurrent calls of hooks with the same connection settings in one
        loop are read together with ``GET /runs?property=id==a,b,...`` (see ``_RunBatcher``); a lone call,
        and a run the list read does not return, go the direct way, so results and errors are the same.
        """
        config = await self.get_config()
        batcher = loop_local_keyed(_run_batchers, self._batch_key(config), _RunBatcher)
        run = await batcher.submit(self, run_id)
        if run is _DIRECT:
            return await self._get_run_direct(run_id)
        return run

    async def _get_run_direct(self, run_id: str) -> dict[str, Any]:
        return first_item(await self.request("GET", "flowservice", f"/runs/{quote(run_id, safe='')}") or {})

    def _batch_key(self, config: AEPConnectionConfig) -> tuple[Any, ...]:
        """Hooks with equal keys can share one list read: same account, policy, timeout, token cache, transport."""
        return (
            config.platform_url,
            config.org_id,
            config.sandbox,
            config.client_id,
            config.ims_url,
            config.scopes,
            config.access_token,
            self.retry_policy,
            self.timeout,
            id(self._token_cache),
            id(self._transport),
        )

    async def list_runs(
        self, flow_id: str, *, created_after_ms: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The flow's runs created at or after ``created_after_ms``, newest first (same as AEPHook.list_runs)."""
        runs = await self.paginate_flow_service("/runs", runs_query(flow_id, created_after_ms, limit))
        return newest_first(runs, created_after_ms)


def _query(params: Mapping[str, Any] | list[tuple[str, Any]] | None) -> list[tuple[str, Any]] | None:
    if params is None:
        return None
    items = params.items() if isinstance(params, Mapping) else params
    return [(k, v) for k, v in items if v is not None]
