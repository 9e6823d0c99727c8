"""
Run reads shared by the triggers of one event loop: :func:`read_run` is :meth:`AEPAsyncHook.get_run` for a
trigger, except that the reads of the loop's triggers that come together go out as one list read.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from typing import Any

from airflow_provider_aep.exceptions import is_retryable
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.utils import client_core as core

# Reads of single runs (``read_run``) that the triggers of one loop make within RUN_BATCH_WINDOW of each other
# go out as one list read, ``GET /runs?property=id==a,b,...`` (comma means OR, aep-api.md §4.1): at realistic
# load, one request per poll costs the triggerer more CPU than all the rest of its work together, and a waiting
# read holds only a future, not a request in flight (bench/RESULTS.md). Triggers wake together for this
# (flow_run.py, POLL_SLOT); the window covers the few loop iterations between their reads. 100 ids
# make a ~4 KB query, well under the 8 KB URL limit of common gateways.
RUN_BATCH_WINDOW = 0.005
RUN_BATCH_SIZE = 100

_JSON = json.JSONDecoder()
_BLANK = re.compile(r"[ \t\n\r]*")


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
        key = sharing_key(hook)
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
    texts: dict[str, str] = {}
    if len(waiters) > 1:
        try:
            query = [("property", "id==" + ",".join(ids)), ("limit", str(len(ids)))]
            listed = await hook.drive(hook.request.flow("GET", "flowservice", "/runs", params=query, decode=run_texts))
            texts = listed if isinstance(listed, dict) else {}  # not a list answer: each reads its own
        except core.AEPApiError as exc:
            if is_retryable(exc):  # each reader alone would have got the same after its retries
                for _, _, answer in waiters:
                    _settle(answer, error=exc)
                return
    for reader, run_id, answer in waiters:
        text = texts.get(run_id)
        if text is None:
            _spawn(_read_alone(reader, run_id, answer))
        else:
            _settle(answer, text)
            # One reader per loop iteration: woken together, a slot's readers held the loop for all their
            # polls at once, and every other trigger of the triggerer waited (bench/RESULTS.md).
            await asyncio.sleep(0)


# A list read gives each reader its run's JSON text, decoded by the reader when it wakes. Decoded whole, a
# slot's list of runs passes CPython's young generation (700 allocations) at every read, and enough young
# collections bring on full ones, which walk all of Airflow's heap with the loop stopped (bench/RESULTS.md).
def run_texts(body: str) -> dict[str, str]:
    """
    The JSON text of each run of a ``GET /runs`` answer (``{"items": [run, ...], ...}``), by id, decoding
    one run at a time. Raises ValueError for a body that is not a JSON object.
    """
    texts: dict[str, str] = {}
    char, at = _next_char(body, 0)
    _require(char, "{", at)
    char, at = _next_char(body, at + 1)
    while char != "}":
        _require(char, '"', at)
        key, at = _JSON.raw_decode(body, at)
        char, at = _next_char(body, at)
        _require(char, ":", at)
        char, at = _next_char(body, at + 1)
        if key == "items" and char == "[":
            char, at = _next_char(body, at + 1)
            while char != "]":
                run, end = _JSON.raw_decode(body, at)
                if isinstance(run, dict) and isinstance(run.get("id"), str):
                    texts[run["id"]] = body[at:end]
                char, at = _after_element(body, end, "]")
            at += 1
        else:
            _, at = _JSON.raw_decode(body, at)
        char, at = _after_element(body, at, "}")
    char, at = _next_char(body, at + 1)
    _require(char, "", at)  # nothing after the object
    return texts


def _next_char(body: str, at: int) -> tuple[str, int]:
    """The first character at or after ``at`` that is not a JSON blank ("" past the end), and its index."""
    at = _BLANK.match(body, at).end()  # type: ignore[union-attr]
    return body[at : at + 1], at


def _after_element(body: str, at: int, close: str) -> tuple[str, int]:
    """After an element of a container that ``close`` ends: where the next element starts, or the close."""
    char, at = _next_char(body, at)
    if char != ",":
        _require(char, close, at)
        return char, at
    char, at = _next_char(body, at + 1)
    if char == close:
        raise ValueError(f"a comma before {close!r} at character {at}")
    return char, at


def _require(char: str, expected: str, at: int) -> None:
    if char != expected:
        raise ValueError(f"expected {expected or 'the end'!r} at character {at}, found {char or 'the end'!r}")


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


async def read_run(hook: AEPAsyncHook, run_id: str) -> dict[str, Any]:
    """
    The run, as ``hook.get_run`` gives it; reads of the loop's hooks that come together share one list read
    (see ``_RunReads``), so many triggers cost AEP and the triggerer a request per slot, not per poll.
    """
    await hook.get_config()
    run = await _run_reads.setdefault(asyncio.get_running_loop(), _RunReads()).read(hook, run_id)
    return json.loads(run) if isinstance(run, str) else run  # a list read's text (see run_texts), or its own read


def sharing_key(hook: AEPAsyncHook) -> tuple[Any, ...]:
    """Hooks with equal keys may share a read: same account, policy, timeout, token cache and client."""
    config = hook.config
    return (
        config.platform_url,
        config.org_id,
        config.sandbox,
        config.client_id,
        config.ims_url,
        config.scopes,
        config.access_token,
        hook.retry_policy,
        hook.timeout,
        id(hook.token_cache),
        id(hook.client),
    )
