"""Edits that never overwrite each other, over the real server (waitress on 127.0.0.1).

ETags on GET and HEAD, If-Match / If-None-Match on every write (412), the 428
of ``require_precondition``, JSON merge patch (RFC 7396) and its rights.  The
racing clients are real threads talking HTTP to the real server; Prosody's own
writes are made by real Prosody's ``util.datamanager`` (tests/oracle.py).
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from prosody_store.datamanager import DataManager
from tests.live_server import LiveServer, demo_auth, demo_copy
from tests.tagged import to_tagged
from tests.test_attack_rights import (
    OWNERS,
    REQUESTERS,
    SECRET_FIELDS,
    STORES,
    TABLE,
    auth,
    column,
    jid_of,
    restore,
    rights_world,
    row,
    snapshot,
)

HOST = "localhost"
JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
ALICE = demo_auth("alice")
BOB = demo_auth("bob")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = demo_copy(tmp_path_factory.mktemp("conditional"))
    with LiveServer(data) as server:
        yield server, data


def etag_of(headers: dict[str, str]) -> str:
    tag = headers.get("etag")
    assert tag, f"no ETag in {headers}"
    return tag


def put(server, store: str, value, headers=None, who=ALICE):
    return server.request("PUT", f"/data/{store}", json.dumps(value),
                          {**who, **JSON, **(headers or {})})


def get(server, path: str, headers=None, who=ALICE):
    return server.request("GET", path, headers={**who, **(headers or {})})


def files_of(data: Path, store: str) -> dict[str, bytes] | None:
    """The files of alice's ``store`` (None when its directory does not exist)."""
    directory = data / HOST / store
    if not directory.exists():
        return None
    return {p.name: p.read_bytes() for p in directory.iterdir()}


# ---------------------------------------------------------------------------
# ETags


@pytest.mark.parametrize("store", ["roster", "archive"])  # keyval, list
def test_get_and_head_give_one_strong_etag_per_representation(live, store):
    server, _ = live
    tags = {}
    for fmt in ("json", "lua"):
        status, headers, body = get(server, f"/data/{store}/{fmt}")
        assert status == 200 and body
        tag = etag_of(headers)
        assert tag.startswith('"') and not tag.startswith("W/"), tag  # strong
        # Stable while the store is unchanged, and HEAD gives GET's headers.
        assert etag_of(get(server, f"/data/{store}/{fmt}")[1]) == tag
        status, head, empty = server.request("HEAD", f"/data/{store}/{fmt}", headers=ALICE)
        assert status == 200 and empty == b"" and etag_of(head) == tag
        assert head["content-length"] == str(len(body))
        tags[fmt] = tag
    assert tags["json"] != tags["lua"]  # the bytes differ, so do the tags
    accept = get(server, f"/data/{store}", {"Accept": "text/x-lua"})[1]
    assert etag_of(accept) == tags["lua"]
    assert etag_of(get(server, f"/data/{store}")[1]) == tags["json"]


def test_public_view_has_its_own_etag(live):
    server, _ = live
    status, headers, body = get(server, "/data/accounts")  # alice sees her record's public part
    assert status == 200 and b"stored_key" not in body
    mine = etag_of(headers)
    full = etag_of(get(server, "/data/localhost/alice/accounts", who=demo_auth("admin"))[1])
    assert mine != full  # another representation: the tag says nothing of the secrets


def test_conditional_get_304_and_412(live):
    server, _ = live
    for store in ("roster", "archive"):
        tag = etag_of(get(server, f"/data/{store}")[1])
        for method in ("GET", "HEAD"):
            status, headers, body = server.request(method, f"/data/{store}",
                                                   headers={**ALICE, "If-None-Match": tag})
            assert (status, body, etag_of(headers)) == (304, b"", tag)
            status, _, body = server.request(method, f"/data/{store}",
                                             headers={**ALICE, "If-Match": tag})
            assert status == 200
        stale = '"json-00000000000000000000000000000000"'
        status, _, body = get(server, f"/data/{store}", {"If-Match": stale})
        assert status == 412 and body.endswith(b"\n") and body.count(b"\n") == 1
        assert get(server, f"/data/{store}", {"If-None-Match": stale})[0] == 200
        # The tag of the Lua representation does not match the JSON one.
        lua = etag_of(get(server, f"/data/{store}/lua")[1])
        assert get(server, f"/data/{store}", {"If-None-Match": lua})[0] == 200


def test_etag_changes_with_our_writes_and_appends(live):
    server, _ = live
    status, headers, _ = put(server, "tagged", {"v": "a"})
    assert status == 201
    first = etag_of(headers)
    assert etag_of(get(server, "/data/tagged")[1]) == first  # the write's tag is GET's
    status, headers, _ = put(server, "tagged", {"v": "b"})  # same size, same tick
    second = etag_of(headers)
    assert second != first and etag_of(get(server, "/data/tagged")[1]) == second
    # A list: every append changes its tag; a POST answers without one (it
    # would hash the whole list on every append).
    seen = set()
    for i in range(5):
        status, headers, _ = server.request("POST", "/data/tagged_log", json.dumps({"i": i}),
                                            {**ALICE, **JSON})
        assert status == 201 and "etag" not in headers
        tag = etag_of(get(server, "/data/tagged_log")[1])
        assert tag and tag not in seen
        seen.add(tag)
        assert etag_of(server.request("HEAD", "/data/tagged_log", headers=ALICE)[1]) == tag
    # The same data again is the same representation, so the same tag.
    put(server, "tagged", {"v": "a"})
    assert etag_of(get(server, "/data/tagged")[1]) == first


def prosody_call(oracle, command: str, data: Path, store: str, **extra) -> None:
    oracle.call(f"dm_oracle.{command}", json.dumps({
        "path": str(data), "user": b"alice".hex(), "host": HOST.encode().hex(),
        "store": store.encode().hex(), **extra}))


@pytest.mark.interop
def test_etag_changes_when_prosody_writes(live, oracle):
    server, data = live
    tags = []
    for value in ({"v": "a"}, {"v": "b"}, {"v": "c"}):  # same size, within milliseconds
        prosody_call(oracle, "store", data, "by_prosody", value=to_tagged(value))
        tags.append(etag_of(get(server, "/data/by_prosody")[1]))
    assert len(set(tags)) == 3
    prosody_call(oracle, "store", data, "by_prosody", value=to_tagged({"v": "a"}))
    assert etag_of(get(server, "/data/by_prosody")[1]) == tags[0]  # same data, same tag
    # A client that read before Prosody wrote cannot overwrite what Prosody wrote.
    stale = tags[0]
    prosody_call(oracle, "store", data, "by_prosody", value=to_tagged({"v": "d"}))
    status, _, _ = put(server, "by_prosody", {"v": "mine"}, {"If-Match": stale})
    assert status == 412
    assert DataManager(data).load("alice", HOST, "by_prosody") == {"v": "d"}
    # Appends by Prosody (in place, same file) change a list's tag too.
    list_tags = []
    for i in range(3):
        prosody_call(oracle, "list_append", data, "prosody_log", items=[to_tagged({"i": i})])
        list_tags.append(etag_of(get(server, "/data/prosody_log")[1]))
        assert etag_of(server.request("HEAD", "/data/prosody_log", headers=ALICE)[1]) == \
            list_tags[-1]
    assert len(set(list_tags)) == 3
    status, _, _ = server.request("DELETE", "/data/prosody_log",
                                  headers={**ALICE, "If-Match": list_tags[0]})
    assert status == 412
    status, _, _ = server.request("DELETE", "/data/prosody_log",
                                  headers={**ALICE, "If-Match": list_tags[-1]})
    assert status == 204


# ---------------------------------------------------------------------------
# Racing clients


ROUNDS = 15


def test_racing_read_modify_write_loses_no_update(live):
    """Two clients increment one counter (and each its own) with GET, then PUT
    If-Match, retrying on 412.  Both read, then both write, every round: one of
    them must lose each round, and no increment may be lost."""
    server, _ = live
    assert put(server, "race", {"n": 0, "t0": 0, "t1": 0})[0] == 201
    barrier = threading.Barrier(2, timeout=60)
    conflicts = [0, 0]

    def client(me: int) -> None:
        try:
            for _ in range(ROUNDS):
                first = True
                while True:
                    status, headers, body = get(server, "/data/race")
                    assert status == 200, (status, body)
                    tag = etag_of(headers)
                    if first:
                        barrier.wait()  # both have read: now both write
                        first = False
                    value = json.loads(body)
                    value["n"] += 1
                    value[f"t{me}"] += 1
                    status, _, reason = put(server, "race", value, {"If-Match": tag})
                    if status == 201:
                        break
                    assert status == 412, (status, reason)
                    conflicts[me] += 1
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(2) as pool:
        for result in [pool.submit(client, i) for i in range(2)]:
            result.result()
    final = json.loads(get(server, "/data/race")[2])
    assert final == {"n": 2 * ROUNDS, "t0": ROUNDS, "t1": ROUNDS}
    assert sum(conflicts) >= ROUNDS  # every round, one write found the store changed


def test_concurrent_patches_of_different_keys_keep_them_all(live):
    server, _ = live
    assert put(server, "patched_race", {"base": True})[0] == 201

    def client(me: int) -> None:
        for i in range(ROUNDS):
            status, _, reason = server.request("PATCH", "/data/patched_race",
                                               json.dumps({f"c{me}_{i}": i}), {**ALICE, **MERGE})
            assert status == 204, (status, reason)

    with ThreadPoolExecutor(2) as pool:
        for result in [pool.submit(client, i) for i in range(2)]:
            result.result()
    final = json.loads(get(server, "/data/patched_race")[2])
    assert final == {"base": True, **{f"c{me}_{i}": i for me in range(2) for i in range(ROUNDS)}}


# ---------------------------------------------------------------------------
# 412: nothing written


def test_stale_if_match_fails_every_write(live):
    server, data = live
    status, headers, _ = put(server, "guarded", {"a": 1, "b": {"c": 2}})
    stale = etag_of(headers)
    status, headers, _ = put(server, "guarded", {"a": 2, "b": {"c": 2}})
    current = etag_of(headers)
    server.request("POST", "/data/guarded_log", '{"i":0}', {**ALICE, **JSON})
    log_tag = etag_of(get(server, "/data/guarded_log")[1])
    server.request("POST", "/data/guarded_log", '{"i":1}', {**ALICE, **JSON})
    before = files_of(data, "guarded"), files_of(data, "guarded_log")
    attempts = [
        ("PUT", "/data/guarded", '{"a":3}', JSON, stale),
        ("PATCH", "/data/guarded", '{"a":3}', MERGE, stale),
        ("DELETE", "/data/guarded", None, {}, stale),
        ("POST", "/data/guarded_log", '{"i":2}', JSON, log_tag),
        ("DELETE", "/data/guarded_log", None, {}, log_tag),
        # A tag that was never ours, a weak one (never matches If-Match) and an empty list.
        ("PUT", "/data/guarded", '{"a":3}', JSON, '"json-not-ours"'),
        ("PUT", "/data/guarded", '{"a":3}', JSON, "W/" + current),
        ("PATCH", "/data/guarded", '{"a":3}', MERGE, ""),
    ]
    for method, path, body, headers, tag in attempts:
        status, got, reason = server.request(method, path, body,
                                             {**ALICE, **headers, "If-Match": tag})
        assert status == 412, (method, path, tag, status, reason)
        assert reason.endswith(b"\n") and reason.count(b"\n") == 1 and b"If-Match" in reason
        assert "etag" not in got
    assert (files_of(data, "guarded"), files_of(data, "guarded_log")) == before
    # The current tag, or a list holding it, lets the write through.
    status, headers, _ = put(server, "guarded", {"a": 3}, {"If-Match": f'"x", {current}'})
    assert status == 201 and etag_of(headers) != current


def test_if_match_takes_the_tag_of_either_format(live):
    server, _ = live
    put(server, "either", {"a": 1})
    lua_tag = etag_of(get(server, "/data/either/lua")[1])
    status, headers, _ = put(server, "either", {"a": 2}, {"If-Match": lua_tag,
                                                          "Accept": "text/x-lua"})
    assert status == 201
    assert etag_of(headers) == etag_of(get(server, "/data/either/lua")[1])  # Accept: Lua's tag


def test_if_none_match_star_creates_only(live):
    server, data = live
    assert files_of(data, "fresh") is None
    status, headers, _ = put(server, "fresh", {"a": 1}, {"If-None-Match": "*"})
    assert status == 201
    tag = etag_of(headers)
    before = files_of(data, "fresh")
    for method, body, headers in (("PUT", '{"a":2}', JSON), ("PATCH", '{"a":2}', MERGE),
                                  ("DELETE", None, {})):
        status, _, reason = server.request(method, "/data/fresh", body,
                                           {**ALICE, **headers, "If-None-Match": "*"})
        assert status == 412 and b"If-None-Match" in reason, (method, status, reason)
    # A tag listed in If-None-Match (weak comparison) also stops a write.
    status, _, _ = put(server, "fresh", {"a": 2}, {"If-None-Match": "W/" + tag})
    assert status == 412
    assert files_of(data, "fresh") == before
    # POST If-None-Match: * appends only to a list that does not exist yet.
    for expected in (201, 412):
        status, _, _ = server.request("POST", "/data/fresh_log", '{"i":1}',
                                      {**ALICE, **JSON, "If-None-Match": "*"})
        assert status == expected
    with DataManager(data).list_open("alice", HOST, "fresh_log") as items:
        assert list(items) == [{"i": 1}]


def test_if_match_star_needs_the_store_and_creates_nothing(live):
    server, data = live
    for method, body, headers in (("PUT", '{"a":1}', JSON), ("PATCH", '{"a":1}', MERGE),
                                  ("POST", '{"a":1}', JSON), ("DELETE", None, {})):
        status, _, reason = server.request(method, "/data/never_made", body,
                                           {**ALICE, **headers, "If-Match": "*"})
        assert status == 412 and b"does not exist" in reason, (method, status, reason)
    assert files_of(data, "never_made") is None  # not even its directory
    put(server, "made", {"a": 1})
    status, _, _ = server.request("PATCH", "/data/made", '{"b":2}',
                                  {**ALICE, **MERGE, "If-Match": "*"})
    assert status == 204
    assert json.loads(get(server, "/data/made")[2]) == {"a": 1, "b": 2}


def test_plain_clients_see_only_a_new_header(live):
    """mod_data_access clients send no precondition: every write answers as
    before (status, Location, empty body), with an ETag besides."""
    server, _ = live
    for value in ({"a": 1}, {"a": 2}):
        status, headers, body = put(server, "plain", value)
        assert (status, body) == (201, b"") and headers["location"].endswith("/alice/plain")
        assert etag_of(headers) == etag_of(get(server, "/data/plain")[1])
    status, headers, body = server.request("POST", "/data/plain_log", '{"i":1}',
                                           {**ALICE, **JSON})
    assert (status, body) == (201, b"") and "etag" not in headers  # an append: no tag
    for store in ("plain", "plain_log"):
        status, headers, body = server.request("DELETE", f"/data/{store}", headers=ALICE)
        assert (status, body) == (204, b"") and "etag" not in headers


# ---------------------------------------------------------------------------
# 428 with require_precondition


def test_428_when_a_precondition_is_required(tmp_path):
    data = demo_copy(tmp_path)
    server = LiveServer(data, "--require-precondition")
    try:
        before = snapshot(data)
        for method, path, body, headers in (("PUT", "/data/roster", "{}", JSON),
                                            ("PUT", "/data/new", '{"a":1}', JSON),
                                            ("PATCH", "/data/roster", '{"a":1}', MERGE),
                                            ("DELETE", "/data/roster", None, {})):
            status, _, reason = server.request(method, path, body, {**ALICE, **headers})
            assert status == 428, (method, path, status, reason)
            assert reason.endswith(b"\n") and reason.count(b"\n") == 1
            assert b"If-Match" in reason
        assert snapshot(data) == before
        # Credentials and rights come first.
        assert server.request("PUT", "/data/roster", "{}", JSON)[0] == 401
        assert server.request("PUT", "/data/localhost/bob/roster", "{}",
                              {**ALICE, **JSON})[0] == 403
        # With a precondition the writes go through; an append needs none.
        status, headers, _ = server.request("PUT", "/data/new", '{"a":1}',
                                            {**ALICE, **JSON, "If-None-Match": "*"})
        assert status == 201
        tag = etag_of(headers)
        status, headers, _ = server.request("PATCH", "/data/new", '{"b":2}',
                                            {**ALICE, **MERGE, "If-Match": tag})
        assert status == 204
        assert server.request("DELETE", "/data/new",
                              headers={**ALICE, "If-Match": etag_of(headers)})[0] == 204
        assert server.request("POST", "/data/new_log", '{"i":1}', {**ALICE, **JSON})[0] == 201
        assert server.request("GET", "/data/roster", headers=ALICE)[0] == 200
    finally:
        server.close()


# ---------------------------------------------------------------------------
# JSON merge patch


def patch(server, store: str, body: str | bytes, headers=None, who=ALICE):
    return server.request("PATCH", f"/data/{store}", body, {**who, **MERGE, **(headers or {})})


def test_merge_patch_semantics(live):
    server, data = live
    original = {"name": "Alice", "prefs": {"theme": "dark", "font": {"size": 12, "face": "x"}},
                "tags": ["a", "b", "c"], "keep": 1}
    put(server, "merged", original)
    status, headers, body = patch(server, "merged", json.dumps({
        "name": "Al",                                    # set one key
        "prefs": {"font": {"size": 14, "face": None}},   # nested: merged; null removes
        "tags": ["z"],                                   # arrays are replaced, not merged
        "added": {"x": None, "y": [1, None, 3]},         # nulls stripped from new objects
        "missing": None,                                 # removing what is not there: nothing
    }))
    assert (status, body) == (204, b""), body
    status, got, current = get(server, "/data/merged")
    assert etag_of(headers) == etag_of(got)
    assert json.loads(current) == {
        "name": "Al", "prefs": {"theme": "dark", "font": {"size": 14}}, "tags": ["z"], "keep": 1,
        # [1, null, 3] is the Lua table {1, nil, 3}, as in a PUT body.
        "added": {"y": {"__hash": [3, 3], "__array": [1]}}}
    # A patch that is not an object replaces the whole value (RFC 7396): an array.
    assert patch(server, "merged", '["only"]')[0] == 204
    assert json.loads(get(server, "/data/merged")[2]) == ["only"]
    # Removing every key is an empty table: the store is removed, as an empty PUT does.
    patch(server, "merged", '{"x":1}')
    status, headers, _ = patch(server, "merged", '{"x":null}')
    assert status == 204 and "etag" not in headers
    assert get(server, "/data/merged")[0] == 404
    assert not (data / HOST / "merged" / "alice.dat").exists()
    # On a store that does not exist, a patch creates it (nulls dropped).
    assert patch(server, "patch_made", '{"a":{"b":null,"c":1}}')[0] == 204
    assert json.loads(get(server, "/data/patch_made")[2]) == {"a": {"c": 1}}


def test_deep_patches_are_refused_as_deep_puts(live):
    server, data = live
    for depth in (2000, 300, 120):
        body = '{"x":' * depth + "1" + "}" * depth
        put(server, "deep", {"a": 1})
        before = files_of(data, "deep")
        status, _, reason = patch(server, "deep", body)
        as_put = server.request("PUT", "/data/deeper", body, {**ALICE, **JSON})[0]
        assert (status, as_put) in ((400, 400), (204, 201)), (depth, status, as_put, reason)
        if status == 400:
            assert reason.count(b"\n") == 1 and files_of(data, "deep") == before
        else:
            assert json.loads(get(server, "/data/deep")[2])["a"] == 1
    assert status == 204  # the shallowest


def test_merge_patch_keeps_prosodys_json_conventions(live):
    server, data = live
    dm = DataManager(data)
    dm.store("alice", HOST, "lua_keys", {5: "five", "name": "n", True: "yes"})
    shown = json.loads(get(server, "/data/lua_keys")[2])
    assert shown["name"] == "n" and "__hash" in shown
    assert patch(server, "lua_keys", '{"name":"m"}')[0] == 204
    # The keys JSON cannot name (a number, a boolean) survive a patch of another key.
    assert dm.load("alice", HOST, "lua_keys") == {5: "five", "name": "m", True: "yes"}


def test_merge_patch_refusals(tmp_path):
    data = demo_copy(tmp_path)
    with LiveServer(data, "--max-values", "20") as server:
        put(server, "settings", {"a": 1, "big": list(range(10))})
        server.request("POST", "/data/a_list", '{"i":1}', {**ALICE, **JSON})
        before = snapshot(data)
        cases = [
            # (body, headers, status, words in the reason)
            ('{"a":2}', JSON, 415, b"merge-patch+json"),
            ('{"a":2}', {"Content-Type": "text/x-lua"}, 415, b"merge-patch+json"),
            ('{"a":', MERGE, 400, b"not valid json"),
            ('{"a":01}', MERGE, 400, b"not valid json"),         # Prosody's reader, not JSON
            ('{"a":1e999}', MERGE, 400, b"not finite"),
            ('"text"', MERGE, 400, b"not a table"),
            ('null', MERGE, 400, b"no data"),
            ('', MERGE, 400, b"empty body"),
            # The result is checked as a PUT body: 14 values now, 21 after the patch.
            ('{"more":[1,2,3,4,5,6,7]}', MERGE, 413, b"patched value holds more than 20"),
        ]
        for body, headers, status, words in cases:
            got, answer, reason = server.request("PATCH", "/data/settings", body,
                                                 {**ALICE, **headers})
            assert got == status and words in reason, (body[:40], got, reason)
            assert reason.endswith(b"\n") and reason.count(b"\n") == 1
            if status == 415:
                assert answer["accept-patch"] == "application/merge-patch+json"
        # A list store cannot be merged into: 409, with what to do instead.
        got, _, reason = server.request("PATCH", "/data/a_list", '{"i":2}', {**ALICE, **MERGE})
        assert got == 409 and b"POST" in reason and reason.count(b"\n") == 1
        assert snapshot(data) == before
        assert patch(server, "settings", '{"a":2}')[0] == 204  # within the cap


# ---------------------------------------------------------------------------
# PATCH and the rights table


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The accounts, admins and stores of tests/test_attack_rights.py."""
    with rights_world(tmp_path_factory.mktemp("patch_rights")) as (server, data, _, pristine):
        yield server, data, pristine


def test_patch_follows_the_readme_table_as_put_does(world):
    """Every requester, owner and store: PATCH is allowed exactly where the
    table says "write", and a refused one writes nothing."""
    server, data, pristine = world
    allowed = refused = 0
    for requester in REQUESTERS:
        for owner in OWNERS:
            for store in STORES:
                rights = TABLE[row(jid_of(requester), owner)][column(store)]
                node, host = owner
                status, _, reason = server.request(
                    "PATCH", f"/data/{host}/{node}/{store}", '{"patched":true}',
                    {**auth(requester), **MERGE})
                where = (requester, owner, store, status, reason)
                if "write" in rights:
                    assert status == 204, where
                    assert DataManager(data).load(node, host, store)["patched"] is True
                    restore(data, pristine)
                    allowed += 1
                else:
                    assert status == 403, where
                    refused += 1
    assert snapshot(data) == pristine
    assert allowed and refused


def test_user_cannot_patch_anothers_store_or_the_protected_ones(world):
    server, data, pristine = world
    for path in ("/data/localhost/alice/roster", "/data/localhost/alice/settings",
                 "/data/accounts", "/data/account_roles", "/data/roles", "/data/auth_tokens",
                 "/data/account_flags"):
        for body in ('{"_default":"prosody:admin"}', '{"password":"pwned"}'):
            status, _, _ = server.request("PATCH", path, body, {**BOB, **MERGE})
            assert status == 403, (path, status)
            # No precondition opens a door either.
            status, _, _ = server.request("PATCH", path, body,
                                          {**BOB, **MERGE, "If-Match": "*"})
            assert status == 403, (path, status)
    assert snapshot(data) == pristine


def test_host_admin_patches_a_users_account_without_its_secrets(world):
    server, data, pristine = world
    hadmin = auth("hadmin")
    try:
        status, headers, body = server.request("GET", "/data/localhost/bob/accounts",
                                               headers=hadmin)
        assert status == 200 and not set(json.loads(body)) & SECRET_FIELDS
        shown = etag_of(headers)
        secrets = DataManager(data).load("bob", HOST, "accounts")
        status, headers, _ = server.request("PATCH", "/data/localhost/bob/accounts",
                                            '{"disabled":true}',
                                            {**hadmin, **MERGE, "If-Match": shown})
        assert status == 204
        # The new tag is of what the host admin may see: the public view.
        status, got, body = server.request("GET", "/data/localhost/bob/accounts",
                                           headers=hadmin)
        assert etag_of(headers) == etag_of(got) != shown
        assert json.loads(body)["disabled"] is True
        assert DataManager(data).load("bob", HOST, "accounts") == {**secrets, "disabled": True}
        # A login token store is write-only for a host admin: no tag to see, so
        # none can match, and a write answers none.
        status, headers, _ = server.request("PUT", "/data/localhost/bob/auth_tokens",
                                            '{"t":{"x":1}}', {**hadmin, **JSON})
        assert status == 201 and "etag" not in headers
        status, _, _ = server.request("PUT", "/data/localhost/bob/auth_tokens", '{"t":1}',
                                      {**hadmin, **JSON, "If-Match": shown})
        assert status == 412
        status, _, _ = server.request("PATCH", "/data/localhost/bob/auth_tokens", '{"u":1}',
                                      {**hadmin, **MERGE, "If-None-Match": "*"})
        assert status == 412
    finally:
        restore(data, pristine)


def test_empty_and_odd_tags_are_412_not_500(live):
    """Found by the API fuzzer: an empty quoted tag ("") in If-Match or
    If-None-Match was a 500 (Werkzeug parses it as None)."""
    server, data = live
    put(server, "odd", {"a": 1})
    odd = ['""', 'W/"1", "x*&|l", ""', '"", *']
    for value in odd:
        for method, body in (("GET", None), ("HEAD", None), ("PUT", '{"a":2}'),
                             ("DELETE", None)):
            headers = {**ALICE, **JSON, "If-Match": value}
            status, _, _ = server.request(method, "/data/odd", body, headers)
            assert status in (200, 201, 204, 412), (method, value, status)
            headers = {**ALICE, **JSON, "If-None-Match": value}
            status, _, _ = server.request(method, "/data/odd", body, headers)
            assert status in (200, 201, 204, 304, 404, 412), (method, value, status)
            put(server, "odd", {"a": 1})
