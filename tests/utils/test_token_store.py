"""The host's token files: private, atomic, never trusted when something is off, and never a reason to fail."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from airflow_provider_aep.utils import token_store
from airflow_provider_aep.utils.client_core import StoredToken
from airflow_provider_aep.utils.token_store import FileTokenStore, configured_store, default_directory

KEY = ("https://ims.example.test", "client-id", "openid,AdobeID")
LOGGER = "airflow_provider_aep.utils.token_store"


@pytest.fixture
def store(tmp_path) -> FileTokenStore:
    return FileTokenStore(tmp_path / "tokens")


def saved(store: FileTokenStore, token: str = "tok-1") -> Path:
    store.save(KEY, StoredToken(token, time.time() + 3600, time.time() + 3300))
    (path,) = store.directory.glob("*.json")
    return path


def test_a_saved_token_loads_back_for_its_key_only(store):
    expires_at = time.time() + 3600
    store.save(KEY, StoredToken("tok-1", expires_at, expires_at - 300))
    assert store.load(KEY) == StoredToken("tok-1", expires_at, expires_at - 300)
    assert store.load((KEY[0], "another-client", KEY[2])) is None
    assert store.load((KEY[0], KEY[1], "openid")) is None


def test_the_directory_is_0700_and_each_file_0600_with_no_temporary_file_left(store):
    path = saved(store)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved(store, "tok-2")  # replaced, not appended to
    assert [p.name for p in store.directory.iterdir()] == [path.name]
    assert store.load(KEY).token == "tok-2"


def test_the_file_names_the_key_by_its_hash_and_holds_no_secret(store):
    path = saved(store)
    assert len(path.stem) == 64 and KEY[1] not in path.name
    text = path.read_text()
    assert "client_secret" not in text and "password" not in text


def test_a_dropped_token_is_removed_unless_another_replaced_it(store):
    saved(store, "tok-1")
    store.drop(KEY, "tok-0")  # an older token: the file holds a newer one
    assert store.load(KEY).token == "tok-1"
    store.drop(KEY, "tok-1")
    assert store.load(KEY) is None
    store.drop(KEY, "tok-1")  # nothing left to drop: no error


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_text("{not json"), "corrupt or truncated"),
        (lambda path: path.write_text('{"access_token": "t"}'), "corrupt or truncated"),
        (lambda path: path.chmod(0o644), "lets others in"),
        (
            lambda path: (path.unlink(), path.symlink_to(path.with_name("elsewhere"))),
            "Too many levels of symbolic links",
        ),
        (lambda path: (path.unlink(), path.mkdir(mode=0o700)), "is not a regular file"),
    ],
    ids=["corrupt", "truncated", "world-readable", "symlink", "a-directory"],
)
def test_a_bad_token_file_is_ignored_and_reported_once(store, caplog, damage, reason):
    damage(saved(store))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert store.load(KEY) is None
        assert store.load(KEY) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0].getMessage(), caplog.text
    assert "fetching tokens from IMS" in warnings[0].getMessage()


def test_a_directory_others_can_enter_is_not_used(tmp_path, caplog):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    store = FileTokenStore(directory)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.save(KEY, StoredToken("tok-1", time.time() + 3600, time.time() + 3300))
        assert store.load(KEY) is None
        assert store.acquire(KEY) is None
    assert list(directory.iterdir()) == []  # nothing written where others could read it
    assert "mode 0755 lets others in" in caplog.text and len(caplog.records) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_is_not_used(tmp_path, caplog):
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        FileTokenStore(directory).save(KEY, StoredToken("tok-1", time.time() + 3600, time.time() + 3300))
    assert list(directory.iterdir()) == []
    assert "owned by uid 65534" in caplog.text


def test_a_store_that_cannot_be_created_answers_nothing_stored(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    store = FileTokenStore(tmp_path / "file" / "tokens")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.save(KEY, StoredToken("tok-1", time.time() + 3600, time.time() + 3300))
        assert store.load(KEY) is None
        store.drop(KEY, "tok-1")
        assert store.acquire(KEY) is None
    assert len(caplog.records) == 1 and "not using the AEP token cache" in caplog.text


def test_the_host_lock_makes_others_wait_and_gives_up_after_its_wait(store, caplog):
    holder = store.acquire(KEY)
    assert holder is not None
    impatient = FileTokenStore(store.directory, lock_wait=0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert impatient.acquire(KEY) is None  # a flock per open file: another process would wait alike
    assert 0.3 <= time.monotonic() - started < 2
    assert "fetching one" in caplog.text
    token_store.release(holder)
    again = impatient.acquire(KEY)
    assert again is not None
    token_store.release(again)


def test_the_default_directory_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "airflow-provider-aep" / "tokens"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_directory() == tmp_path / "home" / ".cache" / "airflow-provider-aep" / "tokens"


def test_the_settings_choose_the_directory_or_turn_the_store_off(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__AEP__TOKEN_CACHE_DIR", str(tmp_path / "here"))
    assert configured_store().directory == tmp_path / "here"
    assert configured_store() is configured_store()  # one per directory: each problem is logged once
    monkeypatch.delenv("AIRFLOW__AEP__TOKEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert configured_store().directory == default_directory()
    monkeypatch.setenv("AIRFLOW__AEP__TOKEN_CACHE_ON_DISK", "False")
    assert configured_store() is None
