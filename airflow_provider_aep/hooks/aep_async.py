"""AEPAsyncHook: the client core driven with ``httpx`` on an event loop, for triggers."""

from __future__ import annotations

import asyncio
import copy
import logging
import weakref
from typing import Any, TypeVar

import httpx

from airflow_provider_aep.exceptions import is_retryable
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
# too costly to pay for every one of many triggers (bench/RESULTS.md).
_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


# Reads of single runs (``read_run``) that the triggers of one loop make within RUN_BATCH_WINDOW of each other
# go out as one list read, ``GET /runs?property=id==a,b,...`` (comma means OR, aep-api.md §4.1): at realistic
# load, one request per poll costs the triggerer more CPU than all the rest of its work together, and a waiting
# read holds only a future, not a request in flight (bench/RESULTS.md). Triggers wake together for this
# (triggers/flow_run.py, POLL_SLOT); the window covers the few loop iterations between their reads. 100 ids
# make a ~4 KB query, well under the 8 KB URL limit of common gateways.
RUN_BATCH_WINDOW = 0.005
RUN_BATCH_SIZE = 100


class _RunReads:
    """
    The ``read_run`` calls of one loop waiting to share a list read, grouped by what makes hooks equivalent
    (connection settings, retry policy, timeout, token cache, client). Every waiter still gets the answer it
    would have got alone: its run cut out of the list; a retryable failure that outlasted the retries, raised
    to each; and for a run the list lacks or any other failure, its own ``get_run`` (so a 400 on a list read
    never fails a read that alone would succeed, and a real 404 reaches only its reader).
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, ...], list[tuple[AEPAsyncHook, str, asyncio.Future[Any]]]] = {}

    def read(self, hook: AEPAsyncHook, run_id: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        key = hook.sharing_key()
        pending = self._pending.setdefault(key, [])
        pending.append((hook, run_id, loop.create_future()))
        if len(pending) == 1:
            loop.call_later(RUN_BATCH_WINDOW, self._flush, key)
        elif len(pending) >= RUN_BATCH_SIZE:
            self._flush(key)
        return pending[-1][2]

    def _flush(self, key: tuple[Any, ...]) -> None:
        waiters = self._pending.pop(key, [])
        for start in range(0, len(waiters), RUN_BATCH_SIZE):
            _spawn(_read_together(waiters[start : start + RUN_BATCH_SIZE]))


async def _read_together(waiters: list[tuple[AEPAsyncHook, str, asyncio.Future[Any]]]) -> None:
    try:
        await _share_read(waiters)
    except Exception as exc:  # whatever went wrong, no reader may wait forever
        for _, _, answer in waiters:
            _settle(answer, error=exc)


async def _share_read(waiters: list[tuple[AEPAsyncHook, str, asyncio.Future[Any]]]) -> None:
    hook = waiters[0][0]
    ids = list(dict.fromkeys(run_id for _, run_id, _ in waiters))
    runs: dict[str, Any] = {}
    if len(waiters) > 1:
        try:
            query = [("property", "id==" + ",".join(ids)), ("limit", str(len(ids)))]
            listed = await hook.drive(hook.request.flow("GET", "flowservice", "/runs", params=query))
            items = listed.get("items") if isinstance(listed, dict) else None
            runs = {r["id"]: r for r in items or [] if isinstance(r, dict) and isinstance(r.get("id"), str)}
        except core.AEPApiError as exc:
            if is_retryable(exc):  # each reader alone would have got the same after its retries
                for _, _, answer in waiters:
                    _settle(answer, error=exc)
                return
    answered: set[str] = set()
    for reader, run_id, answer in waiters:
        run = runs.get(run_id)
        if run is None:
            _spawn(_read_alone(reader, run_id, answer))
            continue
        _settle(answer, copy.deepcopy(run) if run_id in answered else run)  # two readers of one run: a copy each
        answered.add(run_id)


async def _read_alone(hook: AEPAsyncHook, run_id: str, answer: asyncio.Future[Any]) -> None:
    try:
        _settle(answer, await hook.get_run(run_id))
    except Exception as exc:
        _settle(answer, error=exc)


def _settle(answer: asyncio.Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    if answer.done():  # its caller was cancelled meanwhile
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(value)


_tasks: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _tasks.add(task)  # a reference until it is done: the loop keeps only weak ones
    task.add_done_callback(_tasks.discard)


_run_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RunReads] = weakref.WeakKeyDictionary()


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
            client = _shared_clients[loop] = httpx.AsyncClient(headers={"User-Agent": core.user_agent()})
        return client

    def get_conn(self) -> httpx.AsyncClient:
        return self.client

    async def get_config(self) -> AEPConnectionConfig:
        """The validated connection, looked up once per hook without blocking the event loop."""
        if self._config is None:
            config = AEPConnectionConfig.from_connection(await aget_connection(self.aep_conn_id))
            await amask_secret(config.client_secret)
            await amask_secret(config.access_token)
            self._config = config
        return self._config

    @property
    def config(self) -> AEPConnectionConfig:  # type: ignore[override]
        """The connection of a call in progress (every driven call reads it first with :meth:`get_config`)."""
        if self._config is None:
            raise RuntimeError("AEPAsyncHook.config is read before `await hook.get_config()`")
        return self._config

    async def read_run(self, run_id: str) -> dict[str, Any]:
        """
        The run, as :meth:`get_run` gives it; reads of the loop's hooks that come together share one list read
        (see ``_RunReads``), so many triggers cost AEP and the triggerer a request per slot, not per poll.
        """
        await self.get_config()
        return await _run_reads.setdefault(asyncio.get_running_loop(), _RunReads()).read(self, run_id)

    def sharing_key(self) -> tuple[Any, ...]:
        """Hooks with equal keys may share a read: same account, policy, timeout, token cache and client."""
        config = self.config
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
            id(self.token_cache),
            id(self.client),
        )

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
