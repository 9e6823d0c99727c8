"""AEPAsyncHook: the client core driven with ``httpx`` on an event loop, for triggers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import uuid
import weakref
from typing import Any, TypeVar

import httpx

from airflow_provider_aep.hooks.operations import AEPOperations
from airflow_provider_aep.utils import client_core as core
from airflow_provider_aep.utils import token_store
from airflow_provider_aep.utils.connection import AEPConnectionConfig
from airflow_provider_aep.version_compat import BaseHook, mask_secret

log = logging.getLogger(__name__)
T = TypeVar("T")

# asyncio objects belong to one event loop: the token lock and the shared client are kept per loop.
_token_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
# Hooks without a custom transport share one client per loop: each AsyncClient builds its own SSL context,
# too costly to pay for every one of many triggers (bench/RESULTS.md).
_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


# Single-run reads (``GET /runs/{id}``) that the triggers of one loop send within RUN_BATCH_WINDOW of each
# other go out as one list read, ``GET /runs?property=id==a,b,...`` (comma means OR, aep-api.md §4.1): at
# realistic load, one request per poll costs the triggerer more CPU than all the rest of its work together
# (bench/RESULTS.md). 100 ids make a ~4 KB query, well under the 8 KB URL limit of common gateways.
RUN_BATCH_WINDOW = 0.2
RUN_BATCH_SIZE = 100
_RUN_URL = re.compile(r"^(?P<runs>.+/data/foundation/flowservice/runs)/(?P<run_id>[^/?#]+)$")


@dataclasses.dataclass
class _RunRead:
    hook: AEPAsyncHook
    request: core.HttpRequest
    run_id: str
    answer: asyncio.Future[core.HttpResponse]


class _RunReads:
    """
    The single-run reads of one loop waiting to share a list read, grouped by what they share (the URL,
    the token and account headers, the timeout, the client). Every waiter still gets an answer to its own
    request: its run, cut out of the list's answer; the list's own answer if it is retryable (429, 5xx) or
    a network failure, so that each waiter's retries apply; and its own request, sent as it is, for a run
    the list lacks or any other answer (a 400 on a list read never fails a read that alone would succeed).
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, ...], list[_RunRead]] = {}

    def read(self, hook: AEPAsyncHook, request: core.HttpRequest, run_id: str) -> asyncio.Future[core.HttpResponse]:
        loop = asyncio.get_running_loop()
        shared = {k: v for k, v in request.headers.items() if k.lower() != "x-request-id"}
        key = (request.url.rsplit("/", 1)[0], tuple(sorted(shared.items())), request.timeout, id(hook.client))
        pending = self._pending.setdefault(key, [])
        pending.append(_RunRead(hook, request, run_id, loop.create_future()))
        if len(pending) == 1:
            loop.call_later(RUN_BATCH_WINDOW, self._flush, key)
        elif len(pending) >= RUN_BATCH_SIZE:
            self._flush(key)
        return pending[-1].answer

    def _flush(self, key: tuple[Any, ...]) -> None:
        reads = self._pending.pop(key, [])
        for start in range(0, len(reads), RUN_BATCH_SIZE):
            _spawn(self._read_together(reads[start : start + RUN_BATCH_SIZE]))

    @staticmethod
    async def _read_together(reads: list[_RunRead]) -> None:
        try:
            await _RunReads._answer(reads)
        except Exception as exc:  # whatever went wrong, no waiter may wait forever
            for read in reads:
                _settle(read.answer, error=exc)

    @staticmethod
    async def _answer(reads: list[_RunRead]) -> None:
        if len(reads) == 1:
            await _answer_alone(reads[0])
            return
        first = reads[0].request
        ids = list(dict.fromkeys(r.run_id for r in reads))
        listing = dataclasses.replace(
            first,
            url=_RUN_URL.match(first.url)["runs"],  # type: ignore[index]
            params=[("property", "id==" + ",".join(ids)), ("limit", str(len(ids)))],
            headers={**first.headers, "x-request-id": str(uuid.uuid4())},
        )
        try:
            response = await reads[0].hook.send_now(listing)
        except core.AEPTransportError as exc:
            for read in reads:
                _settle(read.answer, error=exc)
            return
        if response.status in core.RETRYABLE_STATUSES:
            for read in reads:
                _settle(read.answer, response)
            return
        runs = _runs_by_id(response)
        for read in reads:
            run = runs.get(read.run_id)
            if run is None:
                _spawn(_answer_alone(read))
            else:
                _settle(read.answer, core.HttpResponse(200, response.headers, json.dumps({"items": [run]})))


def _runs_by_id(response: core.HttpResponse) -> dict[str, Any]:
    """The runs of a list read's 200 answer by id; nothing for any other answer."""
    if response.status != 200:
        return {}
    try:
        items = json.loads(response.text).get("items") or []
    except (ValueError, AttributeError):
        return {}
    return {item["id"]: item for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)}


async def _answer_alone(read: _RunRead) -> None:
    try:
        response = await read.hook.send_now(read.request)
    except Exception as exc:
        _settle(read.answer, error=exc)
    else:
        _settle(read.answer, response)


def _settle(
    answer: asyncio.Future[core.HttpResponse],
    response: core.HttpResponse | None = None,
    error: BaseException | None = None,
) -> None:
    if answer.done():  # its caller was cancelled meanwhile
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(response)  # type: ignore[arg-type]


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
    default_conn_name = "aep_default"

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
        found = _RUN_URL.match(request.url) if request.method == "GET" and not request.params else None
        if found is None:
            return await self.send_now(request)
        reads = _run_reads.setdefault(asyncio.get_running_loop(), _RunReads())
        return await reads.read(self, request, found["run_id"])

    async def send_now(self, request: core.HttpRequest) -> core.HttpResponse:
        """Send one request with httpx, as it is."""
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

    @staticmethod
    async def sleep(seconds: float) -> None:
        """Every wait of the hook and its triggers goes through here, so tests can record it."""
        await asyncio.sleep(seconds)
