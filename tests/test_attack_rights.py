"""Attacks on rights, over the real server (waitress, and granian with 2 workers, on
127.0.0.1): no user gains rights.

Each test replays a request that worked before the rights model and asserts
that it no longer does; the property test checks every (requester, owner,
store, method) against the table in README.rst ("Who may do what"), read
from the README itself.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import json as pjson
from prosody_store.accounts import hash_password
from prosody_store.datamanager import DataManager
from tests.tagged import canon, canon_tagged
from tests.live_server import (
    ROOT,
    SERVERS,
    LiveServer,
    basic,
    demo_auth,
    demo_copy,
    server_options,
)

JSON = {"Content-Type": "application/json"}
PLAIN_PASSWORD = "letmein-{}"

# Accounts beside the demo's alice, bob (users) and admin (server admin, --admin):
EXTRA_ACCOUNTS = {
    ("hadmin", "localhost"),   # host admin of localhost by the config's VirtualHost admins
    ("radmin", "localhost"),   # host admin by Prosody 13's account_roles
    ("oadmin", "localhost"),   # host admin by Prosody 0.12's roles
    ("carol", "example.com"),  # a user of another host
    ("xadmin", "example.com"),  # host admin of example.com by the config
}
REQUESTERS = ["alice", "bob", "hadmin", "radmin", "oadmin", "admin", "carol@example.com",
              "xadmin@example.com"]
OWNERS = [("alice", "localhost"), ("bob", "localhost"), ("hadmin", "localhost"),
          ("radmin", "localhost"), ("oadmin", "localhost"), ("admin", "localhost"),
          ("carol", "example.com"), ("xadmin", "example.com")]
SERVER_ADMINS = {("admin", "localhost")}
HOST_ADMINS = {"localhost": {("hadmin", "localhost"), ("radmin", "localhost"),
                             ("oadmin", "localhost")},
               "example.com": {("xadmin", "example.com")}}
STORES = ["roster", "settings", "accounts", "auth_tokens", "roles", "account_roles",
          "account_flags"]
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]
PUBLIC_FIELDS = {"created", "updated", "disabled", "iteration_count"}
SECRET_FIELDS = {"password", "salt", "stored_key", "server_key"}


def jid_of(name: str) -> tuple[str, str]:
    node, _, host = name.partition("@")
    return node, host or "localhost"


def auth(name: str) -> dict[str, str]:
    node, host = jid_of(name)
    if (node, host) in EXTRA_ACCOUNTS:
        return {"Authorization": basic(f"{node}@{host}", PLAIN_PASSWORD.format(node))}
    return demo_auth(node)


# ---------------------------------------------------------------------------
# The README's table


def readme_table() -> dict[tuple[str, str], dict[str, set[str]]]:
    """(requester, whose data) -> {column: {"read", "public", "write"}} from README.rst."""
    text = (ROOT / "README.rst").read_text()
    block = text[text.index(".. rights-table-start"):text.index(".. rights-table-end")]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    border = lines[0]
    cuts = [m.span() for m in re.finditer(r"=+", border)]

    def cells(line: str) -> list[str]:
        return [line[a:b if i < len(cuts) - 1 else None].strip() for i, (a, b) in enumerate(cuts)]

    header = cells(lines[1])
    table = {}
    for line in lines[3:]:
        if line.startswith("="):
            continue
        row = cells(line)
        rights = {}
        for column, cell in zip(header[2:], row[2:]):
            words = {w.strip() for w in cell.split(",")}
            rights[column] = ({"read"} if "read" in words else set()) | (
                {"public"} if "read public" in words else set()) | (
                {"write"} if "write" in words else set())
        table[(row[0], row[1])] = rights
    return table


TABLE = readme_table()


def test_table_is_read_whole():
    assert len(TABLE) == 7
    assert TABLE[("user", "own")]["``accounts``"] == {"public"}
    assert TABLE[("server admin", "anyone, own included")]["ordinary stores"] == {"read", "write"}


def column(store: str) -> str:
    if store in ("accounts", "auth_tokens"):
        return f"``{store}``"
    if store in ("roles", "account_roles", "account_flags"):
        return "``roles``, ``account_roles``, ``account_flags``"
    return "ordinary stores"


def row(requester: tuple[str, str], owner: tuple[str, str]) -> tuple[str, str]:
    host = owner[1]
    if requester in SERVER_ADMINS:
        return ("server admin", "anyone, own included")
    if requester in HOST_ADMINS.get(host, ()):
        if requester == owner:
            return ("host admin", "own")
        if owner in SERVER_ADMINS or owner in HOST_ADMINS[host]:
            return ("host admin", "another admin of that host")
        return ("host admin", "a user of that host")
    if any(requester in admins for admins in HOST_ADMINS.values()):
        return ("host admin", "anyone on another host")
    return ("user", "own") if requester == owner else ("user", "anyone else")


# ---------------------------------------------------------------------------
# The server


def seed(data) -> dict[tuple[str, str, str], object]:
    """Accounts, role records and a value in every store of every owner; returns the values."""
    dm = DataManager(data)
    for node, host in EXTRA_ACCOUNTS:
        dm.store(node, host, "accounts", {"password": PLAIN_PASSWORD.format(node),
                                          "created": 1700000000})
    dm.store("radmin", "localhost", "account_roles", {"_default": "prosody:admin"})
    dm.store("oadmin", "localhost", "roles", {"prosody:admin": True})
    values = {}
    for node, host in OWNERS:
        for store in STORES:
            current = dm.load(node, host, store)
            if current is None:
                current = {"prosody:registered": True} if store in ("roles",) else (
                    {"_default": "prosody:registered"} if store == "account_roles" else
                    {"seeded": store, "n": 1})
                dm.store(node, host, store, current)
            values[(node, host, store)] = current
    return values


@contextlib.contextmanager
def rights_world(tmp: Path, *server_args: str) -> Iterator[tuple[LiveServer, Path, dict, dict]]:
    """The real server (options ``server_args``) on the seeded accounts, admins and
    stores of the table: (server, data directory, seeded values, snapshot of the data)."""
    data = demo_copy(tmp)
    values = seed(data)
    config = tmp / "prosody.cfg.lua"
    config.write_text(f'data_path = "{data}"\n'
                      'VirtualHost "localhost"\n    admins = { "hadmin@localhost" }\n'
                      'VirtualHost "example.com"\n    admins = { "xadmin@example.com" }\n')
    pristine = snapshot(data)
    with LiveServer(data, "--prosody-config", str(config), *server_args) as server:
        yield server, data, values, pristine


@pytest.fixture(scope="module", params=SERVERS)
def world(tmp_path_factory, request):
    with rights_world(tmp_path_factory.mktemp("rights"), *server_options(request.param)) as made:
        yield made


def snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def restore(root, pristine: dict[str, bytes]) -> None:
    now = snapshot(root)
    for name in now.keys() - pristine.keys():
        (root / name).unlink()
    for name, content in pristine.items():
        if now.get(name) != content:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)


# ---------------------------------------------------------------------------
# Every answer against the table


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requester=st.sampled_from(REQUESTERS), owner=st.sampled_from(OWNERS),
       store=st.sampled_from(STORES), method=st.sampled_from(METHODS))
def test_every_answer_follows_the_readme_table(world, requester, owner, store, method):
    server, data, values, pristine = world
    rights = TABLE[row(jid_of(requester), owner)][column(store)]
    node, host = owner
    value = values[(node, host, store)]
    body = None
    if method == "PUT":
        body = pjson.dumpb(value)  # the same value: a write that succeeds changes nothing
    elif method == "POST":
        body = b'{"appended":true}'
    try:
        status, headers, answer = server.request(method, f"/data/{host}/{node}/{store}", body,
                                                 {**auth(requester), **JSON})
        if method in ("GET", "HEAD"):
            if "read" in rights:
                assert status == 200, (status, answer)
                if method == "GET":
                    assert answer == pjson.dumpb(value)
            elif "public" in rights:
                assert status == 200, (status, answer)
                if method == "GET":
                    shown = json.loads(answer)
                    assert shown == {k: v for k, v in value.items() if k in PUBLIC_FIELDS}
                    assert not set(shown) & SECRET_FIELDS
            else:
                assert status == 403, (status, answer)
        else:
            if "write" in rights:
                assert status == {"PUT": 201, "POST": 201, "DELETE": 204}[method], (status, answer)
            else:
                assert status == 403, (status, answer)
                assert snapshot(data) == pristine  # nothing written
    finally:
        restore(data, pristine)


# ---------------------------------------------------------------------------
# The holes, one by one


def test_user_cannot_make_themselves_admin_with_account_roles(world):
    server, data, _, pristine = world
    try:
        status, _, _ = server.request("PUT", "/data/account_roles", '{"_default":"prosody:admin"}',
                                      {**demo_auth("bob"), **JSON})
        assert status == 403
        assert snapshot(data) == pristine
        status, _, _ = server.request("GET", "/data/localhost/alice/roster",
                                      headers=demo_auth("bob"))
        assert status == 403
    finally:
        restore(data, pristine)


@pytest.mark.interop
def test_user_cannot_make_themselves_admin_with_prosody_012_roles(world, oracle):
    server, data, _, pristine = world
    try:
        for method in ("PUT", "POST", "DELETE"):
            status, _, _ = server.request(method, "/data/roles", '{"prosody:admin":true}',
                                          {**demo_auth("bob"), **JSON})
            assert status == 403
        assert snapshot(data) == pristine
        # What Prosody 0.12's mod_authz_internal reads for bob: his old roles, no admin.
        loaded = oracle.call("dm_oracle.load", json.dumps({
            "path": str(data), "user": b"bob".hex(), "host": b"localhost".hex(),
            "store": b"roles".hex()}))
        assert canon_tagged(json.loads(loaded)) == canon({"prosody:registered": True})
    finally:
        restore(data, pristine)


def test_host_admin_cannot_take_over_the_server_admin(world):
    server, data, _, pristine = world
    try:
        for requester in ("hadmin", "radmin", "oadmin"):
            status, _, _ = server.request("PUT", "/data/localhost/admin/accounts",
                                          '{"password":"pwned"}', {**auth(requester), **JSON})
            assert status == 403
            status, _, _ = server.request("DELETE", "/data/localhost/admin/accounts",
                                          headers=auth(requester))
            assert status == 403
        assert snapshot(data) == pristine
        assert server.request("GET", "/data/roster",
                              headers={"Authorization": basic("admin@localhost", "pwned")})[0] == 401
        assert server.request("GET", "/data/roster", headers=demo_auth("admin"))[0] in (200, 404)
    finally:
        restore(data, pristine)


def test_host_admin_can_reset_a_users_password(world):
    server, data, _, pristine = world
    try:
        record = json.dumps(hash_password("new-pw", iterations=4096))
        status, _, _ = server.request("PUT", "/data/localhost/bob/accounts", record,
                                      {**auth("hadmin"), **JSON})
        assert status == 201
        assert server.request("GET", "/data/roster",
                              headers={"Authorization": basic("bob@localhost", "new-pw")})[0] == 200
    finally:
        restore(data, pristine)


@pytest.mark.parametrize("requester", ["alice", "hadmin", "radmin"])
def test_secrets_are_not_served(world, requester):
    server, data, _, _ = world
    for path in ("/data/accounts", "/data/accounts/lua", "/data/localhost/alice/accounts",
                 "/data/localhost/alice/accounts/json"):
        status, _, body = server.request("GET", path, headers=auth(requester))
        if status == 403:
            continue
        assert status == 200
        for field in SECRET_FIELDS:
            assert field.encode() not in body, (path, body)
    record = DataManager(data).load("alice", "localhost", "accounts")
    assert set(record) >= {"salt", "stored_key", "server_key"}  # the secrets exist on disk
    status, _, body = server.request("GET", "/data/localhost/alice/accounts",
                                     headers=demo_auth("admin"))
    assert status == 200 and json.loads(body) == record  # the server admin sees it all


def test_login_tokens_are_neither_forged_nor_read(world):
    server, data, _, pristine = world
    forged = {"id1": {"session": {"username": "admin", "host": "localhost"}}}
    try:
        status, _, _ = server.request("PUT", "/data/auth_tokens", json.dumps(forged),
                                      {**demo_auth("bob"), **JSON})
        assert status == 403
        assert server.request("GET", "/data/auth_tokens", headers=demo_auth("bob"))[0] == 403
        assert server.request("GET", "/data/localhost/admin/auth_tokens",
                              headers=auth("hadmin"))[0] == 403
        assert snapshot(data) == pristine
    finally:
        restore(data, pristine)
