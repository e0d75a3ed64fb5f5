"""The real server end to end: ``python -m prosody_store serve`` under waitress on 127.0.0.1,
accounts made by real ``prosodyctl``, real HTTP (http.client), and what we wrote read back by
real Prosody's ``util.datamanager`` (lua5.4).

Needs root (prosodyctl drops to the prosody user), Debian's prosody and lua5.4.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from prosody_store import json as pjson
from prosody_store.datamanager import DataManager
from prosody_store.serialization import dump_dat, dump_item
from tests.conftest import skip_or_fail
from tests.live_server import LiveServer, basic, request
from tests.oracle import run_lua
from tests.tagged import canon, canon_tagged, to_tagged

pytestmark = pytest.mark.interop

HOST = "localhost"


ALICE = basic("alice@localhost", "wonderland")
ADMIN = basic("admin@localhost", "demo-admin")
PLAIN = basic("pat@localhost", "plain-pw")


@pytest.fixture(scope="module")
def prosody_dir(oracle):
    """A data directory whose accounts real prosodyctl registered (alice, admin: hashed),
    plus a plain account ``pat`` written by real Prosody's util.datamanager."""
    if os.geteuid() != 0:
        skip_or_fail("prosodyctl needs root (it drops to the prosody user)")
    if shutil.which("prosodyctl") is None:
        skip_or_fail("prosodyctl is not installed (apt-get install prosody)")
    work = Path(tempfile.mkdtemp(prefix="prosody-e2e-"))
    try:
        os.chmod(work, 0o755)
        data, certs = work / "data", work / "certs"
        data.mkdir()
        certs.mkdir()
        config = work / "prosody.cfg.lua"
        config.write_text(
            f'data_path = "{data}"\npidfile = "{work}/prosody.pid"\ncertificates = "{certs}"\n'
            'authentication = "internal_hashed"\n'
            'log = { { levels = { min = "error" }, to = "console" } }\n'
            'VirtualHost "localhost"\n')
        os.chmod(config, 0o644)
        shutil.chown(data, "prosody", "prosody")
        for user, password in (("alice", "wonderland"), ("admin", "demo-admin")):
            subprocess.run(["prosodyctl", "--config", str(config), "register", user, HOST, password],
                           check=True, capture_output=True, timeout=60)
        oracle.call("dm_oracle.store", json.dumps({
            "path": str(data), "user": b"pat".hex(), "host": HOST.encode().hex(),
            "store": b"accounts".hex(), "value": to_tagged({"password": "plain-pw"})}))
        record = DataManager(data).load("alice", HOST, "accounts")
        assert set(record) >= {"salt", "iteration_count", "stored_key", "server_key"}
        assert "password" not in record
        yield data
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def server(prosody_dir):
    """The service as a subprocess (tests/live_server.py); yields its port."""
    with LiveServer(prosody_dir, log_path=prosody_dir.parent / "server.log") as live:
        yield live.port


def prosody_load(oracle, data, user, store, host=HOST):
    return json.loads(oracle.call("dm_oracle.load", json.dumps({
        "path": str(data), "user": user.encode().hex(), "host": host.encode().hex(),
        "store": store.encode().hex()})))


def prosody_list_load(oracle, data, user, store, host=HOST):
    return json.loads(oracle.call("dm_oracle.list_load", json.dumps({
        "path": str(data), "user": user.encode().hex(), "host": host.encode().hex(),
        "store": store.encode().hex()})))


def test_keyval_round_trip(server, prosody_dir, oracle):
    status, headers, body = request(server, "GET", "/data/settings", headers={"Authorization": ALICE})
    assert status == 404 and headers["content-type"] == "text/plain; charset=utf-8" and body.strip()
    value = {"theme": "dark", "sizes": [1, 2.5, 3], "caf\u00e9": True, "nested": {"a": {"b": "c"}}}
    status, headers, body = request(server, "PUT", "/data/settings", json.dumps(value),
                                    {"Authorization": ALICE, "Content-Type": "application/json"})
    assert status == 201 and body == b""
    assert headers["location"] == f"http://127.0.0.1:{server}/data/localhost/alice/settings"
    path = prosody_dir / "localhost" / "settings" / "alice.dat"
    assert path.read_bytes() == dump_dat(value)
    assert canon_tagged(prosody_load(oracle, prosody_dir, "alice", "settings")) == canon(value)
    status, headers, body = request(server, "GET", "/data/settings", headers={"Authorization": ALICE})
    assert status == 200 and headers["content-type"] == "application/json; charset=utf-8"
    assert body == pjson.dumpb(value)
    status, headers, body = request(server, "GET", "/data/localhost/alice/settings/lua",
                                    headers={"Authorization": ALICE})
    assert status == 200 and headers["content-type"] == "text/x-lua; charset=utf-8"
    assert b"return " + body + b";\n" == dump_dat(value)
    # A text/x-lua body, parsed as data.
    status, _, _ = request(server, "PUT", "/data/settings", '{ theme = "light", [false] = 1 }',
                           {"Authorization": ALICE, "Content-Type": "text/x-lua; charset=utf-8"})
    assert status == 201
    assert canon_tagged(prosody_load(oracle, prosody_dir, "alice", "settings")) == \
        canon({"theme": "light", False: 1})
    status, _, body = request(server, "DELETE", "/data/settings", headers={"Authorization": ALICE})
    assert status == 204 and body == b""
    assert not path.exists()
    assert prosody_load(oracle, prosody_dir, "alice", "settings") == {"nil": True}
    status, _, _ = request(server, "DELETE", "/data/settings", headers={"Authorization": ALICE})
    assert status == 204


def test_list_append_read_by_prosody(server, prosody_dir, oracle):
    items = [{"n": 1, "body": "hello"}, "two", 3, [4, {"five": 5}]]
    for item in items:
        status, headers, _ = request(server, "POST", "/data/log", json.dumps(item),
                                     {"Authorization": ALICE, "Content-Type": "Application/JSON"})
        assert status == 201
        assert headers["location"] == f"http://127.0.0.1:{server}/data/localhost/alice/log"
    path = prosody_dir / "localhost" / "log" / "alice.list"
    assert path.read_bytes() == b"".join(dump_item(i) for i in items)
    got = prosody_list_load(oracle, prosody_dir, "alice", "log")
    assert [canon_tagged(i) for i in got] == [canon(i) for i in items]
    status, _, body = request(server, "GET", "/data/log", headers={"Authorization": ALICE})
    assert status == 200 and json.loads(body) == items
    status, _, _ = request(server, "DELETE", "/data/log", headers={"Authorization": ALICE})
    assert status == 204 and not path.exists()
    assert not path.with_suffix(".lidx").exists()


def test_plain_account_and_admin(server, prosody_dir, oracle):
    status, _, _ = request(server, "PUT", "/data/notes", '["from pat"]',
                           {"Authorization": PLAIN, "Content-Type": "application/json"})
    assert status == 201
    assert canon_tagged(prosody_load(oracle, prosody_dir, "pat", "notes")) == canon(["from pat"])
    # alice may not read pat's data; the admin may, and may write it.
    status, _, body = request(server, "GET", "/data/localhost/pat/notes", headers={"Authorization": ALICE})
    assert status == 403 and body.strip()
    status, _, body = request(server, "GET", "/data/localhost/pat/notes", headers={"Authorization": ADMIN})
    assert status == 200 and body == b'["from pat"]'
    status, headers, _ = request(server, "PUT", "/data/localhost/pat/notes", '["by admin"]',
                                 {"Authorization": ADMIN, "Content-Type": "application/json"})
    assert status == 201
    assert headers["location"] == f"http://127.0.0.1:{server}/data/localhost/pat/notes"
    assert canon_tagged(prosody_load(oracle, prosody_dir, "pat", "notes")) == canon(["by admin"])
    # The account store itself, read through the API by the server admin, is what
    # prosodyctl wrote; alice herself sees it without its secrets.
    status, _, body = request(server, "GET", "/data/localhost/alice/accounts",
                              headers={"Authorization": ADMIN})
    assert status == 200
    prosodys = prosody_load(oracle, prosody_dir, "alice", "accounts")
    assert canon(pjson.loads(body)) == canon_tagged(prosodys)
    status, _, body = request(server, "GET", "/data/accounts", headers={"Authorization": ALICE})
    assert status == 200
    record = pjson.loads(body)
    assert record == {"iteration_count": 10000} and b"salt".hex() in repr(prosodys)


def test_refusals_over_http(server, prosody_dir):
    before = sorted(p.relative_to(prosody_dir) for p in prosody_dir.rglob("*"))
    # The realm names the Prosody host of the credentials when it is served here,
    # else the host the client asked for.
    cases = [
        ("GET", "/data/roster", None, {}, "127.0.0.1"),
        ("GET", "/data/roster", None, {"Authorization": basic("alice@localhost", "nope")}, "localhost"),
        ("GET", "/data/roster", None, {"Authorization": "Bearer xyz"}, "127.0.0.1"),
        ("GET", "/data/roster", None, {"Authorization": "Basic %%%"}, "127.0.0.1"),
        ("GET", "/data/roster", None, {"Authorization": basic("alice", "wonderland")}, "127.0.0.1"),
        ("GET", "/data/roster", None, {"Authorization": basic("alice@example.com", "wonderland")},
         "127.0.0.1"),
        ("PUT", "/data/x", '"scalar"', {"Authorization": basic("zed@localhost", "nope"),
                                        "Content-Type": "application/json"}, "localhost"),
    ]
    for method, path, body, headers, realm_host in cases:
        status, got, text = request(server, method, path, body, headers)
        assert status == 401, (method, path, headers, status)
        assert got["www-authenticate"] == f'Basic realm="{realm_host}/data_access"'
        assert text.endswith(b"\n") and text.count(b"\n") == 1 and text.strip()
    for method, path, body, ctype, want in [
        ("PUT", "/data/x", '"scalar"', "application/json", 400),
        ("PUT", "/data/x", "{a=os.exit()}", "text/x-lua", 400),
        ("PUT", "/data/x", '{"a":1}', "text/plain", 400),
        ("PUT", "/data/x-y", '{"a":1}', "application/json", 404),
        ("GET", "/data/x/xml", None, None, 404),
        ("PATCH", "/data/x", '{"a":1}', "application/json", 415),
        ("GET", "/data/localhost/admin/roster", None, None, 403),
    ]:
        headers = {"Authorization": ALICE}
        if ctype:
            headers["Content-Type"] = ctype
        status, got, text = request(server, method, path, body, headers)
        assert status == want, (method, path, status, text)
        assert text.endswith(b"\n") and text.count(b"\n") == 1 and text.strip()
    status, _, _ = request(server, "GET", "/data/accounts", headers={
        "Authorization": ALICE, "Accept": "text/html"})
    assert status == 406
    status, got, body = request(server, "HEAD", "/data/accounts", headers={"Authorization": ALICE})
    assert status == 200 and body == b"" and got["content-type"] == "application/json; charset=utf-8"
    assert sorted(p.relative_to(prosody_dir) for p in prosody_dir.rglob("*")) == before


def test_streaming_get_of_a_large_list(server, prosody_dir, oracle):
    n = 20_000
    # Written by real Prosody's util.datamanager.
    run_lua(f"""
        package.loaded["util.logger"] = {{ init = function() return function() end end }}
        local dm = require "util.datamanager"
        dm.set_data_path({json.dumps(str(prosody_dir))})
        local items = {{}}
        for i = 1, {n} do
            items[i] = {{ n = i, body = "message number " .. i, ["with"] = "bob@localhost" }}
        end
        assert(dm.list_store("alice", "localhost", "archive", items))
    """, timeout=120)
    # Three more through the API.
    for i in range(n + 1, n + 4):
        status, _, _ = request(server, "POST", "/data/archive",
                               json.dumps({"n": i, "body": f"message number {i}", "with": "bob@localhost"}),
                               {"Authorization": ALICE, "Content-Type": "application/json"})
        assert status == 201
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=120)
    try:
        conn.request("GET", "/data/archive", headers={"Authorization": ALICE})
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") == "application/json; charset=utf-8"
        assert r.getheader("Content-Length") is None  # streamed, not built in memory
        body = r.read()
    finally:
        conn.close()
    items = json.loads(body)  # valid JSON
    assert len(items) == n + 3
    assert [item["n"] for item in items] == list(range(1, n + 4))
    assert items[0] == {"n": 1, "body": "message number 1", "with": "bob@localhost"}
    assert items[-1]["body"] == f"message number {n + 3}"
    # Prosody reads the list with our appended items.
    got = prosody_list_load(oracle, prosody_dir, "alice", "archive")
    assert len(got) == n + 3
    assert canon_tagged(got[-1]) == canon({"n": n + 3, "body": f"message number {n + 3}",
                                           "with": "bob@localhost"})
