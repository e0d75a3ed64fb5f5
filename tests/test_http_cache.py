"""The service reuses encoded bodies of unchanged stores, and never serves a changed one;
it remembers logins until the account file changes."""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from werkzeug.test import Client

from prosody_store import DataManager
from prosody_store.accounts import hash_password
from tests.test_http_app import ALICE, DEMO
from wsgi_app import create_app
from wsgi_app.auth import User
from wsgi_app.cache import BodyCache, LoginCache, fingerprint


def test_body_reused_until_the_store_changes(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    app = create_app(data)
    client = Client(app)
    first = client.get("/data/roster", headers=ALICE).get_data()
    assert len(app.bodies) == 1
    assert client.get("/data/roster", headers=ALICE).get_data() == first

    # Another writer (Prosody, or us) replaces the file: the next GET sees it at once.
    DataManager(data).store("alice", "localhost", "roster", {"carol@localhost": {"subscription": "both"}})
    assert client.get("/data/roster", headers=ALICE).get_json() == {
        "carol@localhost": {"subscription": "both"}}

    # Even a rewrite in place, keeping the inode, changes size or times.
    path = Path(app.dm.getpath("alice", "localhost", "roster"))
    with open(path, "r+b") as f:
        f.write(b'return {["x"] = 1};\n')
        f.truncate()
    assert client.get("/data/roster", headers=ALICE).get_json() == {"x": 1}

    os.unlink(path)
    assert client.get("/data/roster", headers=ALICE).status_code == 404


def test_cache_is_bounded_and_skips_large_bodies(tmp_path):
    cache = BodyCache(maxsize=2, max_body=10)
    files = []
    for i in range(3):
        p = tmp_path / f"{i}.dat"
        p.write_bytes(b"x")
        files.append(str(p))
        assert cache.body(str(p), "json", lambda: b"body") == b"body"
    assert len(cache) == 2
    big = tmp_path / "big.dat"
    big.write_bytes(b"x")
    assert cache.body(str(big), "json", lambda: b"b" * 11) == b"b" * 11
    assert len(cache) == 2
    calls = []
    assert cache.body(str(tmp_path / "missing.dat"), "json", lambda: calls.append(1)) is None
    assert calls == [1]


# ---------------------------------------------------------------------------
# The login cache: Authorization header values that logged in


def test_a_login_is_verified_once_and_then_served_from_the_cache(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    app = create_app(data)
    client = Client(app)
    for _ in range(3):
        assert client.get("/data/roster", headers=ALICE).status_code == 200
    assert app.auth.counts() == {"failed": 0, "cached": 2, "verified": 1}
    assert len(app.auth.logins) == 1


def test_the_cache_holds_no_password_and_serves_only_the_exact_header(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    app = create_app(data)
    client = Client(app)
    assert client.get("/data/roster", headers=ALICE).status_code == 200
    [(key, (path, _, user))] = app.auth.logins._entries.items()
    header = ALICE["Authorization"]
    assert len(key) == 32 and header.encode() not in key and b"wonderland" not in key
    assert user.jid == "alice@localhost" and path == app.dm.getpath("alice", "localhost",
                                                                     "accounts")
    # Another spelling of the same credentials is another header: a login of its own
    # (answered by the password cache behind it, without a key derivation).
    other = {"Authorization": "basic " + header.split(" ", 1)[1]}
    assert client.get("/data/roster", headers=other).status_code == 200
    assert len(app.auth.logins) == 2
    # A wrong password never enters it.
    wrong = {"Authorization": "Basic " + base64.b64encode(b"alice@localhost:x").decode()}
    for _ in range(2):
        assert client.get("/data/roster", headers=wrong).status_code == 401
    assert len(app.auth.logins) == 2 and app.auth.counts()["failed"] == 2


def test_a_changed_account_file_ends_the_cached_login(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    app = create_app(data)
    client = Client(app)
    assert client.get("/data/roster", headers=ALICE).status_code == 200
    dm = DataManager(data)
    dm.store("alice", "localhost", "accounts", hash_password("new-password"))
    assert client.get("/data/roster", headers=ALICE).status_code == 401
    assert len(app.auth.logins) == 0  # the stale entry went
    # Even a rewrite in place with the same size: the times change.
    path = Path(dm.getpath("alice", "localhost", "accounts"))
    new = {"Authorization": "Basic " + base64.b64encode(b"alice@localhost:new-password").decode()}
    assert client.get("/data/roster", headers=new).status_code == 200
    text = path.read_bytes()
    os.utime(path, ns=(1, 1))
    path.write_bytes(text)
    assert app.auth.counts()["verified"] == 2
    assert client.get("/data/roster", headers=new).status_code == 200
    assert app.auth.counts()["verified"] == 3  # verified again, not taken from the cache
    os.unlink(path)
    assert client.get("/data/roster", headers=new).status_code == 401


def test_login_cache_is_a_bounded_lru(tmp_path):
    files = []
    for i in range(3):
        p = tmp_path / f"{i}.dat"
        p.write_bytes(b"x")
        files.append(str(p))
    cache = LoginCache(maxsize=2)
    users = [User(f"u{i}", "localhost") for i in range(3)]
    cache.add("h0", files[0], fingerprint(files[0]), users[0])
    cache.add("h1", files[1], fingerprint(files[1]), users[1])
    assert cache.get("h0") == users[0]  # now the most recently used
    cache.add("h2", files[2], fingerprint(files[2]), users[2])
    assert len(cache) == 2
    assert cache.get("h1") is None  # the least recently used went
    assert cache.get("h0") == users[0] and cache.get("h2") == users[2]
    assert cache.get("h3") is None
    with pytest.raises(ValueError):
        LoginCache(maxsize=0)
