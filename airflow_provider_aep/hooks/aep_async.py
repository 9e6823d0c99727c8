"""AEPAsyncHook: the client core driven with ``httpx`` on an event loop, for triggers."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, TypeVar

import httpx

from airflow_provider_aep.hooks.operations import AEPOperations
from airflow_provider_aep.utils import client_core as core
from airflow_provider_aep.utils import token_store
from airflow_provider_aep.utils.connection import AEPConnectionConfig
from airflow_provider_aep.utils.defaults import DEFAULT_CONN_ID
from airflow_provider_aep.version_compat import BaseHook, mask_secret

log = logging.getLogger(__name__)
T = TypeVar("T")

# asyncio objects belong to one event loop: the token lock and the shared client are kept per loop.
_token_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
# Hooks without a custom transport share one client per loop: each AsyncClient builds its own SSL context,
# too costly to pay for every one of many triggers (bench/RESULTS.md). The first is built in a thread: reading
# the CA bundle would stop the loop, and every trigger on it.
_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_client_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(headers={"User-Agent": core.user_agent()})


async def _open_shared_client() -> None:
    loop = asyncio.get_running_loop()
    async with _client_locks.setdefault(loop, asyncio.Lock()):
        client = _shared_clients.get(loop)
        if client is None or client.is_closed:
            _shared_clients[loop] = await asyncio.to_thread(_new_client)


async def aget_connection(conn_id: str) -> Any:
    """The Airflow connection without blocking the loop: ``aget_connection`` on Airflow 3, a thread on Airflow 2."""
    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


async def amask_secret(value: str | None) -> None:
    """:func:`mask_secret` for the event loop: on Airflow 3 it tells the supervisor without blocking the loop."""
    if not value:
        return
    try:
        from airflow.sdk.log import amask_secret as _amask
    except ImportError:  # Airflow 2, or a Task SDK without it: the local masker does no I/O
        mask_secret(value)
        return
    await _amask(value)


class AEPAsyncHook(AEPOperations, core.AsyncDriver, BaseHook):
    """
    The AEP calls of :class:`~airflow_provider_aep.hooks.aep.AEPHook` as coroutines, used as
    ``async with AEPAsyncHook(...) as hook:``. The connection is read without blocking the loop; tokens,
    headers, retries, the 401 refresh and error decoding are the same client core's, and the token cache is
    shared with the sync hook. Inside an event loop, hooks share that loop's ``httpx.AsyncClient``; with a
    custom ``transport`` (tests: ``httpx.MockTransport``) the hook owns a client and closes it on exit.
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = DEFAULT_CONN_ID

    def __init__(self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        """The arguments of :class:`~airflow_provider_aep.hooks.aep.AEPHook`, and an httpx ``transport``."""
        super().__init__(*args, **kwargs)
        self._transport = transport
        self._own_client: httpx.AsyncClient | None = None
        self._config: AEPConnectionConfig | None = None

    async def __aenter__(self) -> AEPAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the hook's own client; a loop's shared client stays open for the other hooks."""
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._transport is not None:
            if self._own_client is None:
                self._own_client = httpx.AsyncClient(
                    transport=self._transport, headers={"User-Agent": core.user_agent()}
                )
            return self._own_client
        loop = asyncio.get_running_loop()
        client = _shared_clients.get(loop)
        if client is None or client.is_closed:
            client = _shared_clients[loop] = _new_client()
        return client

    def get_conn(self) -> httpx.AsyncClient:
        return self.client

    async def get_config(self) -> AEPConnectionConfig:
        """
        The validated connection, looked up once per hook without blocking the event loop; the loop's shared
        client is opened then too, off the loop.
        """
        if self._config is None:
            config = AEPConnectionConfig.from_connection(await aget_connection(self.aep_conn_id))
            await amask_secret(config.client_secret)
            await amask_secret(config.access_token)
            if self._transport is None:
                await _open_shared_client()
            self._config = config
        return self._config

    @property
    def config(self) -> AEPConnectionConfig:  # type: ignore[override]
        """The connection of a call in progress (every driven call reads it first with :meth:`get_config`)."""
        if self._config is None:
            raise RuntimeError("AEPAsyncHook.config is read before `await hook.get_config()`")
        return self._config

    # ------------------------------------------------------------------ the driver
    async def drive(self, flow: core.Flow[T]) -> T:
        """Run a flow of the client core to its end: send with httpx, sleep without blocking the loop."""
        await self.get_config()
        run = core.FlowRun(flow)
        while run.effect is not None:
            await run.aperform(self._perform)
        return run.result

    async def _perform(self, effect: core.Effect) -> Any:
        match effect:
            case core.Send(request):
                return await self._send(request)
            case core.Sleep(seconds):
                return await self.sleep(seconds)
            case core.Mask(secret):
                return await amask_secret(secret)
            case core.Exclusive(flow, key):
                async with _token_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
                    # The host lock's wait and the token files are disk I/O: in a thread, off the loop.
                    lock = await asyncio.to_thread(token_store.acquire_host_lock, key)
                    try:
                        return await self.drive(flow)
                    finally:
                        token_store.release(lock)  # closing a file descriptor
            case core.LoadToken() | core.SaveToken() | core.DropToken():
                return await asyncio.to_thread(token_store.perform, effect)

    async def _send(self, request: core.HttpRequest) -> core.HttpResponse:
        connect, read = request.timeout
        try:
            response = await self.client.request(
                request.method, request.url, timeout=httpx.Timeout(read, connect=connect), **request.library_kwargs()
            )
        except httpx.TransportError as exc:
            raise core.transport_failure(
                exc,
                connect_failed=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
                timed_out=isinstance(exc, httpx.TimeoutException),
                request=request,
            ) from None
        return core.HttpResponse(response.status_code, response.headers, response.text)

    # Every wait of the hook and its triggers goes through here, so tests can record it.
    sleep = staticmethod(asyncio.sleep)
