"""The HTTP service (wsgi_app) request by request: SPEC section 6, through Werkzeug's test client.

Every test works on its own copy of ``fixtures/demo`` (accounts made by real
prosodyctl: alice/wonderland, bob/builder, admin/demo-admin on ``localhost``).
After every request that fails, the data directory must be byte-identical to
what it was before (:func:`unchanged`).
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

import wsgi_app.auth
from prosody_store import TRUE_KEY
from prosody_store import json as pjson
from prosody_store import serialization
from prosody_store.accounts import hash_password
from prosody_store.datamanager import DataManager
from wsgi_app import create_app

DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "demo"
HOST = "localhost"
REALM = 'Basic realm="localhost/data_access"'
ALLOWED = {"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"}
JSON_TYPE = "application/json; charset=utf-8"
LUA_TYPE = "text/x-lua; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"


# ---------------------------------------------------------------------------
# Helpers


def basic(user: str | bytes, password: str | bytes = b"") -> dict[str, str]:
    """An ``Authorization: Basic`` header for ``user:password`` (str is sent as UTF-8)."""
    raw = (user.encode() if isinstance(user, str) else user) + b":" + (
        password.encode() if isinstance(password, str) else password)
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


ALICE = basic("alice@localhost", "wonderland")
BOB = basic("bob@localhost", "builder")
ADMIN = basic("admin@localhost", "demo-admin")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every directory (None) and file (its bytes) under ``root``."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = None
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(rel, name)] = f.read()
    return out


@contextlib.contextmanager
def unchanged(root: Path):
    """Assert that the data directory is byte-identical after the block."""
    before = snapshot(root)
    yield
    after = snapshot(root)
    assert after == before, (
        f"data directory changed: added {sorted(set(after) - set(before))}, "
        f"removed {sorted(set(before) - set(after))}, "
        f"modified {sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}")


def error_reason(response, status: int) -> str:
    assert response.status_code == status, (response.status, response.get_data())
    assert response.headers["Content-Type"] == TEXT_TYPE
    text = response.get_data().decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1 and text.strip(), repr(text)
    assert int(response.headers["Content-Length"]) == len(text.encode())
    return text.strip()


def put(client, path, body, content_type="application/json", headers=ALICE, **kw):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return client.put(path, data=body, headers={**headers, "Content-Type": content_type}, **kw)


def post(client, path, body, content_type="application/json", headers=ALICE, **kw):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return client.post(path, data=body, headers={**headers, "Content-Type": content_type}, **kw)


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(DEMO, root)
    return root


@pytest.fixture
def dm(data) -> DataManager:
    return DataManager(data, durable=False)


@pytest.fixture
def app(data):
    return create_app(data, admins=["admin@localhost"])


@pytest.fixture
def client(app) -> Client:
    return Client(app)


def stored(dm: DataManager, user: str, store: str):
    return dm.load(user, HOST, store)


# ---------------------------------------------------------------------------
# Paths: short form, full form, format suffix, store names


def test_short_path_is_own_data(client, dm):
    short = client.get("/data/roster", headers=ALICE)
    full = client.get("/data/localhost/alice/roster", headers=ALICE)
    assert short.status_code == full.status_code == 200
    assert short.get_data() == full.get_data() == pjson.dumpb(stored(dm, "alice", "roster"))
    assert short.headers["Content-Type"] == JSON_TYPE
    bob = client.get("/data/roster", headers=BOB)
    assert bob.get_data() == pjson.dumpb(stored(dm, "bob", "roster"))


def test_json_is_compact_prosody_json(client, dm):
    value = stored(dm, "alice", "roster")
    body = client.get("/data/roster", headers=ALICE).get_data()
    assert body == pjson.dumpb(value)
    assert b": " not in body and b", " not in body and b"\n" not in body
    assert b'"__hash":[false,{' in body  # the roster's [false] metadata, Prosody's convention
    assert pjson.loads(body) == value


@pytest.mark.parametrize("path", ["/data/roster/json", "/data/localhost/alice/roster/json"])
def test_json_format_suffix(client, dm, path):
    r = client.get(path, headers=ALICE)
    assert r.status_code == 200 and r.headers["Content-Type"] == JSON_TYPE
    assert r.get_data() == pjson.dumpb(stored(dm, "alice", "roster"))


@pytest.mark.parametrize("path", ["/data/roster/lua", "/data/localhost/alice/roster/lua"])
def test_lua_format_is_serialized_value_without_return(client, dm, path):
    r = client.get(path, headers=ALICE)
    assert r.status_code == 200 and r.headers["Content-Type"] == LUA_TYPE
    body = r.get_data().decode("ascii")
    assert body == serialization.dumps(stored(dm, "alice", "roster"))
    assert not body.startswith("return") and body.startswith("{\n\t")
    assert serialization.loads(body) == stored(dm, "alice", "roster")


@pytest.mark.parametrize("fmt", ["xml", "JSON", "Lua", "txt", "json5", "_"])
def test_unknown_format_404(client, data, fmt):
    with unchanged(data):
        error_reason(client.get(f"/data/roster/{fmt}", headers=ALICE), 404)
        error_reason(client.get(f"/data/localhost/alice/roster/{fmt}", headers=ALICE), 404)


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_format_suffix_only_for_reading(client, data, method):
    with unchanged(data):
        r = client.open("/data/localhost/alice/roster/json", method=method, data=b'{"a":1}',
                        headers={**ALICE, "Content-Type": "application/json"})
        error_reason(r, 404)


@pytest.mark.parametrize("store", ["ro-ster", "roster1", "r%C3%B6ster", "..", "roster.dat",
                                   "%2e%2e", "a%20b", "x~", "%00", "r%0Aoster"])
@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE"])
def test_store_name_rule(client, data, store, method):
    with unchanged(data):
        r = client.open(f"/data/{store}", method=method, data=b'{"a":1}',
                        headers={**ALICE, "Content-Type": "application/json"})
        error_reason(r, 404)
        r = client.open(f"/data/localhost/alice/{store}", method=method, data=b'{"a":1}',
                        headers={**ALICE, "Content-Type": "application/json"})
        error_reason(r, 404)


@pytest.mark.parametrize("store", ["A", "_", "Under_Score", "pep_", "ROSTER"])
def test_store_names_letters_and_underscores(client, data, store):
    r = put(client, f"/data/{store}", '{"k":"v"}')
    assert r.status_code == 201
    assert DataManager(data).load("alice", HOST, store) == {"k": "v"}


@pytest.mark.parametrize("path", ["/data", "/data/", "/data//", "/data/a/b/c/d/e",
                                  "/data/localhost/alice/roster/json/x"])
def test_paths_without_a_store_404(client, data, path):
    with unchanged(data):
        error_reason(client.get(path, headers=ALICE), 404)
        error_reason(put(client, path, '{"a":1}'), 404)


@pytest.mark.parametrize("path", ["/", "/datax", "/dat", "/x/data/roster", "/data_roster"])
def test_outside_the_api_404(client, data, path):
    with unchanged(data):
        error_reason(client.get(path, headers=ALICE), 404)
        error_reason(client.get(path), 404)


@pytest.mark.parametrize("path", ["/data//roster", "/data/roster/", "/data//roster//",
                                  "/data/%72oster", "/data/roster?x=1&format=lua",
                                  "/data/localhost//alice/roster", "/data/LOCALHOST/Alice/roster",
                                  "/data/localhost./alice/roster"])
def test_path_normalisation(client, dm, path):
    r = client.get(path, headers=ALICE)
    assert r.status_code == 200, r.get_data()
    assert r.get_data() == pjson.dumpb(stored(dm, "alice", "roster"))


# ---------------------------------------------------------------------------
# The admin rule


@pytest.mark.parametrize("path", ["/data/localhost/bob/roster", "/data/localhost/admin/roster",
                                  "/data/example.com/alice/roster", "/data/other/bob/roster"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_non_admin_403(client, data, path, method):
    with unchanged(data):
        r = client.open(path, method=method, data=b'{"a":1}',
                        headers={**ALICE, "Content-Type": "application/json"})
        assert r.status_code == 403
        if method != "HEAD":
            error_reason(r, 403)


def test_global_admin(data, dm):
    c = Client(create_app(data, admins=["Admin@LocalHost"]))  # admin JIDs are normalised
    r = c.get("/data/localhost/bob/roster", headers=ADMIN)
    assert r.status_code == 200 and r.get_data() == pjson.dumpb(stored(dm, "bob", "roster"))
    r = put(c, "/data/localhost/bob/settings", '{"theme":"dark"}', headers=ADMIN)
    assert r.status_code == 201
    assert r.headers["Location"] == "http://localhost/data/localhost/bob/settings"
    assert dm.load("bob", HOST, "settings") == {"theme": "dark"}
    assert c.delete("/data/localhost/bob/settings", headers=ADMIN).status_code == 204
    assert dm.load("bob", HOST, "settings") is None
    # Other hosts too (a component's data, say), but only with the full path.
    r = put(c, "/data/muc.localhost/room/config", '{"name":"Tea"}', headers=ADMIN)
    assert r.status_code == 201
    assert dm.load("room", "muc.localhost", "config") == {"name": "Tea"}
    # The short path stays the admin's own data.
    assert put(c, "/data/settings", '{"x":1}', headers=ADMIN).status_code == 201
    assert dm.load("admin", HOST, "settings") == {"x": 1}


def test_not_admin_without_configuration(data):
    c = Client(create_app(data))
    with unchanged(data):
        assert c.get("/data/localhost/bob/roster", headers=ADMIN).status_code == 403


def test_host_admins(data, dm):
    c = Client(create_app(data, host_admins={"localhost": ["bob@localhost"],
                                             "example.com": ["alice@localhost"]}))
    assert c.get("/data/localhost/alice/roster", headers=BOB).status_code == 200
    assert put(c, "/data/localhost/alice/notes", '["x"]', headers=BOB).status_code == 201
    assert dm.load("alice", HOST, "notes") == ["x"]
    with unchanged(data):
        # bob is admin of localhost only; alice of example.com only.
        assert c.get("/data/example.com/carol/roster", headers=BOB).status_code == 403
        assert c.get("/data/localhost/bob/roster", headers=ALICE).status_code == 403
    assert put(c, "/data/example.com/carol/notes", '["y"]', headers=ALICE).status_code == 201
    assert dm.load("carol", "example.com", "notes") == ["y"]


@pytest.mark.parametrize("role,allowed", [("prosody:admin", True), ("prosody:operator", True),
                                          ("prosody:user", False), ("prosody:registered", False),
                                          ("prosody:guest", False)])
def test_account_roles_store(data, dm, role, allowed):
    dm.store("bob", HOST, "account_roles", {"_default": role})
    c = Client(create_app(data))
    if allowed:
        r = c.get("/data/localhost/alice/roster", headers=BOB)
        assert r.status_code == 200 and r.get_data() == pjson.dumpb(stored(dm, "alice", "roster"))
        assert put(c, "/data/localhost/alice/x", '{"a":1}', headers=BOB).status_code == 201
    else:
        with unchanged(data):
            assert c.get("/data/localhost/alice/roster", headers=BOB).status_code == 403
            assert put(c, "/data/localhost/alice/x", '{"a":1}', headers=BOB).status_code == 403
    # Roles in account_roles are per host: never another host's data.
    with unchanged(data):
        assert c.get("/data/example.com/alice/roster", headers=BOB).status_code == 403


def test_account_roles_unusable_is_not_admin(data, dm):
    for roles in (["prosody:admin"], {"roles": {"prosody:admin": True}}, {"_default": True}):
        dm.store("bob", HOST, "account_roles", roles)
        c = Client(create_app(data))
        with unchanged(data):
            assert c.get("/data/localhost/alice/roster", headers=BOB).status_code == 403


# ---------------------------------------------------------------------------
# Status codes and headers


def test_put_201_location_exact(client, dm):
    r = put(client, "/data/settings", '{"theme":"dark"}')
    assert r.status_code == 201
    assert r.headers["Location"] == "http://localhost/data/localhost/alice/settings"
    assert r.get_data() == b""
    assert dm.load("alice", HOST, "settings") == {"theme": "dark"}


def test_location_with_port_script_root_and_odd_user(data, dm):
    c = Client(create_app(data, admins=["admin@localhost"]))
    r = put(c, "/data/settings", '{"a":1}', base_url="http://xmpp.example.org:8080/prefix")
    assert r.status_code == 201
    assert r.headers["Location"] == "http://xmpp.example.org:8080/prefix/data/localhost/alice/settings"
    r = put(c, "/data/localhost/Caf%C3%A9/settings", '{"a":1}', headers=ADMIN,
            base_url="https://example.org/")
    assert r.status_code == 201
    assert r.headers["Location"] == "https://example.org/data/localhost/caf%C3%A9/settings"
    assert dm.load("caf\u00e9", HOST, "settings") == {"a": 1}


def test_location_without_valid_host_is_relative(app, dm):
    env = EnvironBuilder(path="/data/settings", method="PUT", data=b'{"a":1}',
                         headers={**ALICE, "Content-Type": "application/json"}).get_environ()
    env["HTTP_HOST"] = "bad host\r\n"
    body, status, headers = run_wsgi_app(app, env, buffered=True)
    assert status.startswith("201")
    assert headers["Location"] == "/data/localhost/alice/settings"


def test_post_appends_201(client, dm):
    for i, body in enumerate(['{"n":1}', '"two"', "3", "[4,5]"]):
        r = post(client, "/data/log", body)
        assert r.status_code == 201 and r.get_data() == b""
        assert r.headers["Location"] == "http://localhost/data/localhost/alice/log"
    assert dm.list_load("alice", HOST, "log") == [{"n": 1}, "two", 3, [4, 5]]
    r = client.get("/data/log", headers=ALICE)
    assert r.status_code == 200 and r.get_data() == b'[{"n":1},"two",3,[4,5]]'


def test_delete_204_removes_keyval_and_list(client, data, dm):
    assert put(client, "/data/both", '{"a":1}').status_code == 201
    assert post(client, "/data/both", '{"b":2}').status_code == 201
    dat, lst = dm.getpath("alice", HOST, "both"), dm.getpath("alice", HOST, "both", "list")
    lidx = dm.getpath("alice", HOST, "both", "lidx")
    assert os.path.exists(dat) and os.path.exists(lst)
    r = client.delete("/data/both", headers=ALICE)
    assert r.status_code == 204 and r.get_data() == b""
    assert not os.path.exists(dat) and not os.path.exists(lst) and not os.path.exists(lidx)
    assert client.get("/data/both", headers=ALICE).status_code == 404
    # The archive has a .list and a .lidx.
    assert client.delete("/data/archive", headers=ALICE).status_code == 204
    assert not list((data / "localhost" / "archive").iterdir())


def test_delete_204_when_nothing_there(client, data):
    with unchanged(data):
        assert client.delete("/data/nothing", headers=ALICE).status_code == 204
        assert client.delete("/data/nothing", headers=ALICE).status_code == 204
        assert client.delete("/data/localhost/alice/nothing", headers=ALICE).status_code == 204
    assert not (data / "localhost" / "nothing").exists()


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND", "CONNECT"])
def test_405_with_allow(client, data, method):
    with unchanged(data):
        r = client.open("/data/roster", method=method, headers=ALICE)
        error_reason(r, 405)
        assert {m.strip() for m in r.headers["Allow"].split(",")} == ALLOWED
        # Without valid credentials: nothing but 401.
        error_reason(client.open("/data/roster", method=method), 401)
        error_reason(client.open("/data/roster", method=method, headers=basic("alice@localhost", "x")),
                     401)


def test_404_no_data(client, data):
    with unchanged(data):
        assert "nothing" in error_reason(client.get("/data/nothing", headers=ALICE), 404)
        r = client.head("/data/nothing", headers=ALICE)
        assert r.status_code == 404 and r.get_data() == b""


# ---------------------------------------------------------------------------
# GET: keyval first, then list; HEAD


def test_get_falls_back_to_list(client, dm):
    items = dm.list_load("alice", HOST, "archive")
    assert items and dm.load("alice", HOST, "archive") is None
    r = client.get("/data/archive", headers=ALICE)
    assert r.status_code == 200 and r.headers["Content-Type"] == JSON_TYPE
    assert r.get_data() == pjson.dumpb(items)
    assert pjson.loads(r.get_data()) == items
    r = client.get("/data/archive/lua", headers=ALICE)
    assert r.status_code == 200 and r.headers["Content-Type"] == LUA_TYPE
    assert r.get_data().decode() == serialization.dumps(items)
    assert "Content-Length" not in r.headers  # streamed like the JSON one, never loaded whole


def test_get_prefers_keyval_over_list(client, dm):
    dm.list_append("alice", HOST, "mixed", {"list": True})
    assert client.get("/data/mixed", headers=ALICE).get_data() == b'[{"list":true}]'
    dm.store("alice", HOST, "mixed", {"keyval": True})
    assert client.get("/data/mixed", headers=ALICE).get_data() == b'{"keyval":true}'


@pytest.mark.parametrize("path", ["/data/roster", "/data/roster/lua", "/data/archive",
                                  "/data/archive/lua", "/data/localhost/alice/vcard"])
def test_head_same_headers_no_body(client, data, path):
    with unchanged(data):
        g = client.get(path, headers=ALICE)
        h = client.head(path, headers=ALICE)
    assert g.status_code == h.status_code == 200
    assert h.get_data() == b""
    assert h.headers["Content-Type"] == g.headers["Content-Type"]
    # The length GET sends, also where GET streams without announcing it.
    assert h.headers["Content-Length"] == str(len(g.get_data()))


def test_head_of_a_list_closes_the_file(client):
    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    client.head("/data/archive", headers=ALICE)
    before = open_fds()
    for _ in range(50):
        assert client.head("/data/archive", headers=ALICE).status_code == 200
        assert client.get("/data/archive", headers=ALICE).status_code == 200
    assert open_fds() <= before + 2


def test_head_errors(client, data):
    with unchanged(data):
        r = client.head("/data/roster")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == REALM
        assert r.get_data() == b""
        assert client.head("/data/localhost/bob/roster", headers=ALICE).status_code == 403


def test_string_that_is_not_utf8(client, dm):
    r = put(client, "/data/raw", b'{"a":"\xff\xfe"}')
    assert r.status_code == 201
    assert dm.load("alice", HOST, "raw") == {"a": b"\xff\xfe"}
    r = client.get("/data/raw", headers=ALICE)
    assert r.status_code == 200 and r.get_data() == b'{"a":"\xff\xfe"}'
    assert client.get("/data/raw/lua", headers=ALICE).get_data() == b'{\n\t["a"] = "\\255\\254";\n}'
    assert post(client, "/data/rawlist", b'"\xff"').status_code == 201
    assert client.get("/data/rawlist", headers=ALICE).get_data() == b'["\xff"]'


def test_non_finite_numbers_prosody_wrote_are_served_as_valid_json(client, dm):
    """Prosody stores (1/0) and writes it in JSON as inf, which no JSON reader takes: we
    serve 1e999 (read back as infinity) and null for NaN.  The Lua format keeps them."""
    value = {"inf": math.inf, "ninf": -math.inf, "n": 3.5, "i": 7, "words": "info nan"}
    dm.store("alice", HOST, "nums", value)
    body = client.get("/data/nums", headers=ALICE).get_data()
    assert json.loads(body) == value
    assert b'"inf":1e999' in body and b'"ninf":-1e999' in body
    lua = client.get("/data/nums/lua", headers=ALICE).get_data()
    assert b"(1/0)" in lua and b"(-1/0)" in lua
    dm.list_append("alice", HOST, "numlist", {"x": math.nan})
    dm.list_append("alice", HOST, "numlist", math.inf)
    body = client.get("/data/numlist", headers=ALICE).get_data()
    assert json.loads(body) == [{"x": None}, math.inf]
    assert client.head("/data/numlist", headers=ALICE).headers["Content-Length"] == str(len(body))


# ---------------------------------------------------------------------------
# PUT and POST bodies


@pytest.mark.parametrize("content_type", [
    "application/json", "Application/JSON", "APPLICATION/JSON", "application/json; charset=utf-8",
    "application/json;charset=UTF-8", "application/json ; charset=utf-8",
    'application/json; charset="utf-8"; foo=bar'])
def test_json_content_types(client, dm, content_type):
    r = put(client, "/data/settings", '{"theme":"dark"}', content_type)
    assert r.status_code == 201
    assert dm.load("alice", HOST, "settings") == {"theme": "dark"}


@pytest.mark.parametrize("content_type", [
    "text/x-lua", "Text/X-Lua", "TEXT/X-LUA", "text/x-lua; charset=utf-8", "text/x-lua;charset=UTF-8"])
def test_lua_content_types(client, dm, content_type):
    r = put(client, "/data/settings", '{ theme = "dark", [1] = 5 }', content_type)
    assert r.status_code == 201
    assert dm.load("alice", HOST, "settings") == {"theme": "dark", 1: 5}


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/jsonx", "application/json-patch+json", "text/json", "text/lua", "application/lua",
    "x-lua", "application", "*/*", "application/*", ";", "application/json/x"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_other_content_types_400(client, data, content_type, method):
    headers = dict(ALICE)
    if content_type is not None:
        headers["Content-Type"] = content_type
    with unchanged(data):
        r = client.open("/data/settings", method=method, data=b'{"a":1}', headers=headers)
        error_reason(r, 400)


@pytest.mark.parametrize("body,content_type", [
    ("", "application/json"), ("", "text/x-lua"), ("{", "application/json"), ("{a=", "text/x-lua"),
    ("null", "application/json"), ("false", "application/json"), ("nil", "text/x-lua"),
    ("false", "text/x-lua"), ("{} {}", "application/json"), ("[1,]", "application/json"),
    ("{'a':1}", "application/json"), ("NaN", "application/json"), ('{"a":inf}', "application/json"),
    ("\xef\xbb\xbf{}", "application/json"), ("{a=1}", "application/json"),
    ('{"a":1}', "text/x-lua"), ("{[{}]=1}", "text/x-lua"), ('{"__hash":[{},1]}', "application/json"),
    ('{"a":"\\ud800"}', "application/json"), ("{a=function() end}", "text/x-lua"),
])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_undecodable_bodies_400(client, data, body, content_type, method):
    with unchanged(data):
        r = client.open("/data/settings", method=method, data=body.encode("latin-1"),
                        headers={**ALICE, "Content-Type": content_type})
        error_reason(r, 400)


@pytest.mark.parametrize("body,content_type", [
    ('"hello"', "application/json"), ("42", "application/json"), ("true", "application/json"),
    ("1.5", "application/json"), ("-0", "application/json"), ('"x"', "text/x-lua"),
    ("42", "text/x-lua"), ("true", "text/x-lua"), ("0x10", "text/x-lua"), ("'s'", "text/x-lua"),
])
def test_put_scalar_400_nothing_written(client, data, body, content_type):
    with unchanged(data):
        error_reason(put(client, "/data/settings", body, content_type), 400)
        error_reason(put(client, "/data/roster", body, content_type), 400)
    assert not (data / "localhost" / "settings").exists()


def test_post_scalar_is_an_item(client, dm):
    assert post(client, "/data/log", '"hello"').status_code == 201
    assert post(client, "/data/log", "42", "text/x-lua").status_code == 201
    assert dm.list_load("alice", HOST, "log") == ["hello", 42]


@pytest.mark.parametrize("body", [
    'os.execute("touch {marker}")', '{{a = os.execute("touch {marker}")}}',
    '(function() os.execute("touch {marker}") end)()', 'io.open("{marker}", "w")',
    '{{[io.open("{marker}", "w")] = 1}}', 'return {{a = 1}}; os.execute("touch {marker}")',
    'setmetatable({{}}, {{__gc = function() os.execute("touch {marker}") end}})',
    '{{a = ("x"):rep(1e9)}}', '{{a = require"os".execute("touch {marker}")}}',
    '{{a = 1 .. 2}}', '{{a = #"xx"}}', '{{a = x}}', '{{a = _G}}',
])
def test_lua_bodies_are_data_never_code(client, data, tmp_path, body):
    marker = tmp_path / "executed"
    with unchanged(data):
        r = put(client, "/data/settings", body.format(marker=marker), "text/x-lua")
        error_reason(r, 400)
        r = post(client, "/data/settings", body.format(marker=marker), "text/x-lua")
        error_reason(r, 400)
    assert not marker.exists()


def test_lua_bodies_in_every_literal_form(client, dm):
    body = ("-- a comment\n{ 'single', [[long]], [==[lo]]ng]==], 0x1F, 1e2, -3, "
            "name = \"\\65\\u{48}\\x49\", [true] = false; [2.5] = \"f\", }")
    assert put(client, "/data/lit", body, "text/x-lua").status_code == 201
    assert dm.load("alice", HOST, "lit") == {1: "single", 2: "long", 3: "lo]]ng", 4: 31, 5: 100.0,
                                             6: -3, "name": "AHI", TRUE_KEY: False, 2.5: "f"}


def test_json_null_is_absent_key_and_hole(client, dm):
    r = put(client, "/data/nulls", '{"a":null,"b":1,"c":[1,null,3],"d":[null,null],"e":null}')
    assert r.status_code == 201
    assert dm.load("alice", HOST, "nulls") == {"b": 1, "c": {1: 1, 3: 3}, "d": {}}
    body = client.get("/data/nulls", headers=ALICE).get_data()
    assert body == b'{"b":1,"c":{"__hash":[3,3],"__array":[1]},"d":{}}'
    # Several nulls (the original answered 500) and a list item with holes.
    assert post(client, "/data/nl", "[null,2,null,null,5]").status_code == 201
    assert dm.list_load("alice", HOST, "nl") == [{2: 2, 5: 5}]


def test_json_conventions_round_trip(client, dm):
    body = '{"x":1,"__hash":[10,"ten",true,"t",2.5,"f"],"__array":["a","b"]}'
    assert put(client, "/data/conv", body).status_code == 201
    value = dm.load("alice", HOST, "conv")
    assert value == pjson.loads(body)
    assert value[1] == "a" and value[2] == "b" and value[10] == "ten" and value[2.5] == "f"
    assert value[TRUE_KEY] == "t"  # beside the key 1
    assert client.get("/data/conv", headers=ALICE).get_data() == pjson.dumpb(value)


@pytest.mark.parametrize("body", ["{}", "[]", '{"a":null}', "[null]", "{ }", "{}", "{ [1] = nil }"])
def test_put_empty_table_deletes(client, data, dm, body):
    content_type = "text/x-lua" if "nil" in body or body == "{ }" else "application/json"
    assert put(client, "/data/roster", body, content_type).status_code == 201
    assert not os.path.exists(dm.getpath("alice", HOST, "roster"))
    assert client.get("/data/roster", headers=ALICE).status_code == 404
    # Nothing there: still nothing created.
    with unchanged(data):
        assert put(client, "/data/fresh", body, content_type).status_code == 201


def test_put_replaces(client, dm):
    assert put(client, "/data/roster", '{"only":"this"}').status_code == 201
    assert dm.load("alice", HOST, "roster") == {"only": "this"}
    with open(dm.getpath("alice", HOST, "roster"), "rb") as f:
        assert f.read() == b'return {\n\t["only"] = "this";\n};\n'


def test_max_body_413(data, dm):
    c = Client(create_app(data, max_body=100))
    body = '{"a":"' + "x" * 92 + '"}'
    assert len(body) == 100
    assert put(c, "/data/big", body).status_code == 201
    with unchanged(data):
        error_reason(put(c, "/data/big", '{"a":"' + "y" * 93 + '"}'), 413)
        error_reason(post(c, "/data/big", '["' + "y" * 200 + '"]'), 413)
        error_reason(put(c, "/data/big", "{a='" + "y" * 1000 + "'}", "text/x-lua"), 413)
    assert dm.load("alice", HOST, "big") == {"a": "x" * 92}


def test_413_declared_length_not_read(app, data):
    stream = io.BytesIO(b'{"a":1}')
    env = EnvironBuilder(path="/data/big", method="PUT", input_stream=stream,
                         headers={**ALICE, "Content-Type": "application/json"}).get_environ()
    env["CONTENT_LENGTH"] = str(10 ** 12)
    with unchanged(data):
        body, status, headers = run_wsgi_app(app, env, buffered=True)
    assert status.startswith("413") and b"".join(body).strip()
    assert stream.tell() == 0  # refused before reading


def test_413_chunked_body_without_length(data):
    app = create_app(data, max_body=64)
    env = EnvironBuilder(path="/data/big", method="PUT", headers={
        **ALICE, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}).get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = io.BytesIO(b'{"a":"' + b"z" * 200 + b'"}')
    env["wsgi.input_terminated"] = True
    with unchanged(data):
        body, status, _ = run_wsgi_app(app, env, buffered=True)
    assert status.startswith("413"), (status, b"".join(body))


@pytest.mark.parametrize("content_type", ["application/json", "text/x-lua"])
def test_nesting_limits(client, data, dm, content_type):
    def nested(n):
        return "[" * n + "1" + "]" * n if content_type == "application/json" else "{" * n + "1" + "}" * n

    with unchanged(data):
        error_reason(put(client, "/data/deep", nested(1001), content_type), 400)
        error_reason(put(client, "/data/deep", nested(100_000), content_type), 400)
        error_reason(post(client, "/data/deep", nested(5000), content_type), 400)
        # Deeper than Prosody's serializer can write (127): refused, never half-written.
        error_reason(put(client, "/data/deep", nested(200), content_type), 400)
    assert put(client, "/data/deep", nested(100), content_type).status_code == 201
    value = dm.load("alice", HOST, "deep")
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert (depth, value) == (100, 1)


# ---------------------------------------------------------------------------
# Accept negotiation


@pytest.mark.parametrize("accept,expected", [
    (None, JSON_TYPE), ("application/json", JSON_TYPE), ("text/x-lua", LUA_TYPE),
    ("*/*", JSON_TYPE), ("application/*", JSON_TYPE), ("text/*", LUA_TYPE),
    ("text/x-lua, application/json", JSON_TYPE), ("application/json;q=0.1, text/x-lua;q=0.9", LUA_TYPE),
    ("application/json;q=0.9, text/x-lua;q=0.1", JSON_TYPE), ("TEXT/X-LUA", LUA_TYPE),
    ("text/html, */*;q=0.1", JSON_TYPE), ("text/html, text/x-lua;q=0.5", LUA_TYPE),
    ("application/json;q=0, */*", LUA_TYPE),
])
def test_accept_negotiation(client, dm, accept, expected):
    headers = dict(ALICE)
    if accept is not None:
        headers["Accept"] = accept
    r = client.get("/data/roster", headers=headers)
    assert r.status_code == 200 and r.headers["Content-Type"] == expected
    value = stored(dm, "alice", "roster")
    want = pjson.dumpb(value) if expected == JSON_TYPE else serialization.dumps(value).encode()
    assert r.get_data() == want


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/*",
                                    "application/json;q=0", "application/json;q=0, text/x-lua;q=0"])
def test_accept_unacceptable_406(client, data, accept):
    with unchanged(data):
        error_reason(client.get("/data/roster", headers={**ALICE, "Accept": accept}), 406)
        error_reason(client.get("/data/archive", headers={**ALICE, "Accept": accept}), 406)


def test_format_suffix_wins_over_accept(client):
    r = client.get("/data/roster/lua", headers={**ALICE, "Accept": "application/json"})
    assert r.status_code == 200 and r.headers["Content-Type"] == LUA_TYPE


# ---------------------------------------------------------------------------
# Authentication


BAD_AUTH = {
    "missing": None,
    "empty": "",
    "bearer": "Bearer abc.def.ghi",
    "digest": 'Digest username="alice@localhost", realm="x", nonce="1", uri="/", response="0"',
    "basic-no-credentials": "Basic",
    "basic-bad-base64": "Basic !!!not base64!!!",
    "basic-truncated-base64": "Basic YWxpY2VAbG9jYWxob3N0OndvbmRlcmxhbm",
    "basic-non-ascii": "Basic \x80\xff",  # Werkzeug's decoder raised ValueError: was a 500
    "basic-no-colon": "Basic " + base64.b64encode(b"alice@localhost").decode(),
    "basic-not-utf8": "Basic " + base64.b64encode(b"alice@localhost:\xff\xfe").decode(),
    "jid-without-host": basic("alice", "wonderland")["Authorization"],
    "jid-empty": basic("", "wonderland")["Authorization"],
    "jid-at-only": basic("@", "wonderland")["Authorization"],
    "jid-no-node": basic("localhost", "wonderland")["Authorization"],
    "jid-with-resource": basic("alice@localhost/res", "wonderland")["Authorization"],
    "host-not-served": basic("alice@example.com", "wonderland")["Authorization"],
    "unknown-user": basic("zed@localhost", "wonderland")["Authorization"],
    "wrong-password": basic("alice@localhost", "Wonderland")["Authorization"],
    "empty-password": basic("alice@localhost", "")["Authorization"],
    "other-users-password": basic("alice@localhost", "builder")["Authorization"],
    "prohibited-password": basic("alice@localhost", "wonder\x00land")["Authorization"],
    "long-jid": basic("a" * 5000 + "@localhost", "x")["Authorization"],
    "long-password": basic("alice@localhost", "w" * 100_000)["Authorization"],
    "bad-node": basic("al\"ice@localhost", "wonderland")["Authorization"],
    "nul-in-host": basic("alice@local\x00host", "wonderland")["Authorization"],
    "path-in-host": basic("alice@../../etc", "wonderland")["Authorization"],
    "path-in-node": basic("../accounts/alice@localhost", "wonderland")["Authorization"],
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_401_with_challenge(client, data, case, method):
    value = BAD_AUTH[case]
    headers = {"Content-Type": "application/json"}
    if value is not None:
        headers["Authorization"] = value
    with unchanged(data):
        r = client.open("/data/roster", method=method, data=b'{"a":1}', headers=headers)
        assert r.status_code == 401, (r.status, r.get_data())
        assert r.headers["WWW-Authenticate"] == REALM
        assert r.headers["Content-Type"] == TEXT_TYPE
        if method != "HEAD":
            reason = error_reason(r, 401)
            # No probing for accounts: never says which part was wrong.
            assert "zed" not in reason and "no such" not in reason and "wrong" not in reason


def test_401_reason_is_the_same_for_unknown_user_and_wrong_password(client):
    a = client.get("/data/roster", headers=basic("zed@localhost", "x")).get_data()
    b = client.get("/data/roster", headers=basic("alice@localhost", "x")).get_data()
    assert a == b


def test_realm_names_the_prosody_host(client):
    r = client.get("/data/roster", base_url="http://xmpp.example.net:5280/")
    assert r.headers["WWW-Authenticate"] == 'Basic realm="xmpp.example.net/data_access"'
    r = client.get("/data/roster", headers=basic("alice@localhost", "bad"),
                   base_url="http://xmpp.example.net:5280/")
    assert r.headers["WWW-Authenticate"] == REALM


def test_basic_scheme_case_insensitive_and_jid_normalised(client, dm):
    token = base64.b64encode(b"alice@localhost:wonderland").decode()
    for value in ("basic " + token, "BASIC " + token):
        assert client.get("/data/roster", headers={"Authorization": value}).status_code == 200
    for user in ("ALICE@LOCALHOST", "Alice@localhost.", "alice@LocalHost"):
        r = client.get("/data/roster", headers=basic(user, "wonderland"))
        assert r.status_code == 200 and r.get_data() == pjson.dumpb(stored(dm, "alice", "roster"))
    # SASLprep: a soft hyphen maps to nothing, U+00A0 to a space.
    assert client.get("/data/roster",
                      headers=basic("alice@localhost", "wonder\u00adland")).status_code == 200


def test_disabled_account_401(client, data, dm):
    assert client.get("/data/roster", headers=ALICE).status_code == 200  # now in the cache
    record = dm.load("alice", HOST, "accounts")
    dm.store("alice", HOST, "accounts", {**record, "disabled": True})
    with unchanged(data):
        r = client.get("/data/roster", headers=ALICE)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == REALM
    dm.store("alice", HOST, "accounts", {**record, "disabled": False})
    assert client.get("/data/roster", headers=ALICE).status_code == 200


def test_scram_sha256_account(client, data, dm):
    record = hash_password("t\u00e9a party", hash="sha256", iterations=4096)
    assert len(record["stored_key"]) == 64
    dm.store("carol", HOST, "accounts", record)
    carol = basic("carol@localhost", "t\u00e9a party")
    assert put(client, "/data/cups", "[1,2]", headers=carol).status_code == 201
    assert client.get("/data/cups", headers=carol).get_data() == b"[1,2]"
    with unchanged(data):
        assert client.get("/data/cups", headers=basic("carol@localhost", "tea party")).status_code == 401


def test_plain_account(client, data, dm):
    dm.store("dave", HOST, "accounts", {"password": "pl\u00e4in"})
    assert client.get("/data/roster", headers=basic("dave@localhost", "pl\u00e4in")).status_code == 404
    with unchanged(data):
        assert client.get("/data/roster", headers=basic("dave@localhost", "plain")).status_code == 401
    dm.store("erin", HOST, "accounts", {"password": ""})  # empty plain password: never
    with unchanged(data):
        assert client.get("/data/roster", headers=basic("erin@localhost", "")).status_code == 401


def test_credential_cache(client, dm, monkeypatch):
    calls = []
    real = wsgi_app.auth.verify_password

    def counting(record, password, **options):
        calls.append(password)
        return real(record, password, **options)

    monkeypatch.setattr(wsgi_app.auth, "verify_password", counting)
    t0 = time.perf_counter()
    assert client.get("/data/roster", headers=ALICE).status_code == 200
    first = time.perf_counter() - t0
    assert len(calls) == 1
    t0 = time.perf_counter()
    for _ in range(20):
        assert client.get("/data/roster", headers=ALICE).status_code == 200
    assert len(calls) == 1  # the cache answered
    assert (time.perf_counter() - t0) / 20 < first
    # A wrong password is never answered from the cache.
    assert client.get("/data/roster", headers=basic("alice@localhost", "nope")).status_code == 401
    assert len(calls) == 2


def test_password_change_takes_effect_immediately(client, data, dm):
    assert client.get("/data/roster", headers=ALICE).status_code == 200
    dm.store("alice", HOST, "accounts", hash_password("looking-glass"))  # atomic rewrite
    with unchanged(data):
        assert client.get("/data/roster", headers=ALICE).status_code == 401
    new = basic("alice@localhost", "looking-glass")
    assert client.get("/data/roster", headers=new).status_code == 200
    assert client.get("/data/roster", headers=new).status_code == 200
    # Rewritten in place (same inode, same size) by some other tool.
    path = dm.getpath("alice", HOST, "accounts")
    with open(DEMO / "localhost" / "accounts" / "alice.dat", "rb") as f:
        original = f.read()
    time.sleep(0.02)
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(original)
    assert client.get("/data/roster", headers=new).status_code == 401
    assert client.get("/data/roster", headers=ALICE).status_code == 200


def test_account_file_removed(client, data, dm):
    assert client.get("/data/roster", headers=BOB).status_code == 200
    os.unlink(dm.getpath("bob", HOST, "accounts"))
    with unchanged(data):
        assert client.get("/data/roster", headers=BOB).status_code == 401


def test_hosts_option_limits_logins(data):
    c = Client(create_app(data, hosts=["example.com"]))
    with unchanged(data):
        r = c.get("/data/roster", headers=ALICE)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == REALM


def test_unusable_account_record_401(client, data, dm):
    for record in ("just a string", ["list"], {"password": 5}, {"salt": "x"}):
        dm.store("bob", HOST, "accounts", record) if not isinstance(record, str) else \
            open(dm.getpath("bob", HOST, "accounts"), "w").write("return 'just a string';\n")
        with unchanged(data):
            assert client.get("/data/roster", headers=BOB).status_code == 401
    with open(dm.getpath("bob", HOST, "accounts"), "w") as f:
        f.write("return {password = os.getenv('X')};\n")  # corrupt: refused, not run
    with unchanged(data):
        assert client.get("/data/roster", headers=BOB).status_code == 401


# ---------------------------------------------------------------------------
# Robustness of the error path


def test_malformed_host_header_never_500(app, data):
    for host in ["", "[", "a:b:c", "x:99999999", "exa mple", "\xff", "[::1]:80"]:
        env = EnvironBuilder(path="/data/roster", method="GET").get_environ()
        env["HTTP_HOST"] = host
        with unchanged(data):
            body, status, headers = run_wsgi_app(app, env, buffered=True)
        assert status.startswith("401"), (host, status)
        assert headers["WWW-Authenticate"].startswith('Basic realm="')


def test_corrupt_stored_data_is_500_with_one_line(client, dm):
    path = dm.getpath("alice", HOST, "vcard")
    with open(path, "w") as f:
        f.write("return {broken = ;\n")
    r = client.get("/data/vcard", headers=ALICE)
    reason = error_reason(r, 500)
    assert "stored data unusable" in reason
