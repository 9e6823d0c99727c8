"""
The host's IMS token cache on disk, so that the task processes of one worker host share one token per
token lifetime instead of each fetching its own (Adobe asks for tokens to be reused for most of their 24 h).

One file per token key in a directory only the Airflow user can enter (mode 0700), each file written
atomically (a temporary file of mode 0600, then renamed over the old one) and holding the token, the key
it was fetched for (IMS URL, client id, scopes: never the client secret) and when it expires. A lock file
per key makes the processes that find no token at the same moment wait for the one that fetches it.

Anything wrong with the directory or a file (missing rights, another owner, loose permissions, corrupt
content) is logged once per process and means "no stored token": the hook fetches from IMS as if there were
no store, and a task never fails because of it. ``[aep] token_cache_on_disk = False`` turns it off;
``[aep] token_cache_dir`` moves it (docs/running-at-scale.md).

This module does the disk I/O of the effects of the client core's token flow (:class:`LoadToken`,
:class:`SaveToken`, :class:`DropToken`) and the host lock of its :class:`Exclusive` effect: the sync hook
calls it directly, the async hook in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from airflow_provider_aep.utils.client_core import (
    DropToken,
    LoadToken,
    SaveToken,
    StoredToken,
    TokenEffect,
    TokenKey,
)

log = logging.getLogger(__name__)

# How long a process waits for another one fetching the same token before it fetches its own: one IMS
# attempt takes at most TOKEN_TIMEOUT (10 s connect, 30 s read).
LOCK_WAIT_SECONDS = 45.0
LOCK_POLL_SECONDS = 0.05
MAX_FILE_BYTES = 64 * 1024  # a token file is about 2 KB; anything larger is not one
PRIVATE_BITS = 0o077  # group and other: none may be set on the directory or a file


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/airflow-provider-aep/tokens``, ``~/.cache/...`` when it is unset."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "airflow-provider-aep" / "tokens"


class FileTokenStore:
    """The tokens of one directory; every method answers "nothing stored" rather than raise."""

    def __init__(self, directory: Path, *, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.directory = directory
        self.lock_wait = lock_wait
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ the three effects
    def load(self, key: TokenKey) -> StoredToken | None:
        path = self._path(key, ".json")
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn("read", "cannot read %s (%s); fetching tokens from IMS", path, _reason(exc))
            return None
        try:
            _check_private(os.fstat(fd), path, "regular file")
            return _decode(os.read(fd, MAX_FILE_BYTES), key)
        except (OSError, ValueError) as exc:
            self._warn("read", "ignoring the token file %s: %s; fetching tokens from IMS", path, _reason(exc))
            return None
        finally:
            os.close(fd)

    def save(self, key: TokenKey, stored: StoredToken) -> None:
        path = self._path(key, ".json")
        if path is None:
            return
        document = {
            "ims_url": key[0],
            "client_id": key[1],
            "scopes": key[2],
            "access_token": stored.token,
            "expires_at": stored.expires_at,
            "refresh_at": stored.refresh_at,
        }
        temporary = None
        try:
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")  # mode 0600
            with os.fdopen(fd, "w") as file:
                json.dump(document, file)
            os.replace(temporary, path)
        except OSError as exc:
            self._warn("write", "cannot write %s (%s); other processes fetch their own tokens", path, _reason(exc))
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def drop(self, key: TokenKey, token: str) -> None:
        stored = self.load(key)
        path = self._path(key, ".json")
        if stored is None or stored.token != token or path is None:
            return  # gone, or already replaced by a process that fetched a new one
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn("write", "cannot remove the rejected token %s (%s)", path, _reason(exc))

    # ------------------------------------------------------------------ the host lock
    def acquire(self, key: TokenKey) -> IO[bytes] | None:
        """The open lock file, locked; None when it cannot be had (no lock then, just a possible extra fetch)."""
        path = self._path(key, ".lock")
        if path is None:
            return None
        try:
            lock = open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), "rb")  # noqa: SIM115
        except OSError as exc:
            self._warn("lock", "cannot open the lock file %s (%s)", path, _reason(exc))
            return None
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return lock
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning("Waited %.0f s for another process to fetch an AEP token; fetching one", self.lock_wait)
                    lock.close()
                    return None
                time.sleep(LOCK_POLL_SECONDS)
            except OSError as exc:
                self._warn("lock", "cannot lock %s (%s)", path, _reason(exc))
                lock.close()
                return None

    # ------------------------------------------------------------------ the directory
    def _path(self, key: TokenKey, suffix: str) -> Path | None:
        """Where ``key``'s file is, once the directory is there and private; None when it cannot be used."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(os.lstat(self.directory), self.directory, "directory")
        except OSError as exc:
            self._warn("directory", "not using the AEP token cache %s: %s", self.directory, _reason(exc))
            return None
        digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()
        return self.directory / f"{digest}{suffix}"

    def _warn(self, what: str, message: str, *args: Any) -> None:
        """Each kind of problem once per process at warning level; it does not fail anything."""
        level = logging.DEBUG if what in self._warned else logging.WARNING
        self._warned.add(what)
        log.log(level, message, *args)


def release(lock: IO[bytes] | None) -> None:
    """Unlock by closing the lock file's descriptor (no disk I/O)."""
    if lock is not None:
        lock.close()


_KINDS = {"directory": stat.S_ISDIR, "regular file": stat.S_ISREG}


def _check_private(info: os.stat_result, path: Path, kind: str) -> None:
    if not _KINDS[kind](info.st_mode):
        raise OSError(errno.EINVAL, f"{path} is not a {kind}")
    if info.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"owned by uid {info.st_uid}, not this user ({os.geteuid()})")
    if info.st_mode & PRIVATE_BITS:
        raise OSError(errno.EPERM, f"mode {stat.S_IMODE(info.st_mode):04o} lets others in (0700/0600 expected)")


def _decode(content: bytes, key: TokenKey) -> StoredToken:
    try:
        document = json.loads(content)
        token, expires_at, refresh_at = document["access_token"], document["expires_at"], document["refresh_at"]
        stored_key = (document["ims_url"], document["client_id"], document["scopes"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("not a token file (corrupt or truncated)") from None
    times_ok = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (expires_at, refresh_at))
    if stored_key != key or not isinstance(token, str) or not token or not times_ok:
        raise ValueError("not a token file for this key")
    return StoredToken(token, float(expires_at), float(refresh_at))


def _reason(exc: OSError | ValueError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


# ---------------------------------------------------------------------------------------------- settings
_stores: dict[Path, FileTokenStore] = {}


def configured_store() -> FileTokenStore | None:
    """The store ``[aep] token_cache_on_disk`` and ``[aep] token_cache_dir`` ask for, None when it is off."""
    from airflow_provider_aep.version_compat import conf

    if not conf.getboolean("aep", "token_cache_on_disk", fallback=True):
        return None
    setting = conf.get("aep", "token_cache_dir", fallback="")
    try:
        directory = Path(setting).expanduser() if setting else default_directory()
    except RuntimeError:  # no home directory to put the default in
        return None
    return _stores.setdefault(directory, FileTokenStore(directory))


def perform(effect: TokenEffect) -> StoredToken | None:
    """Answer one token effect of the client core from the configured store."""
    store = configured_store()
    if store is None:
        return None
    match effect:
        case LoadToken(key):
            return store.load(key)
        case SaveToken(key, stored):
            store.save(key, stored)
        case DropToken(key, token):
            store.drop(key, token)
    return None


def acquire_host_lock(key: TokenKey) -> IO[bytes] | None:
    """:meth:`FileTokenStore.acquire` of the configured store: the async hook runs it in a thread."""
    store = configured_store()
    return store.acquire(key) if store is not None else None


@contextlib.contextmanager
def host_lock(key: TokenKey) -> Iterator[None]:
    lock = acquire_host_lock(key)
    try:
        yield
    finally:
        release(lock)
