"""The service reuses encoded bodies of unchanged stores, and never serves a changed one."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from werkzeug.test import Client

from prosody_store import DataManager
from tests.test_http_app import ALICE, DEMO
from wsgi_app import create_app
from wsgi_app.cache import BodyCache


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
