"""Our store against real Prosody's ``util.datamanager`` (lua5.4, /usr/lib/prosody).

Both directions: directories we write are read by Prosody to the same values
and listings, and directories Prosody writes are read by us to the same
values (and, where key order is unambiguous, we write the same bytes).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.datamanager import DataManager
from prosody_store.paths import name_bytes
from tests.tagged import canon, canon_tagged, to_tagged

pytestmark = pytest.mark.interop

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ODD_NAMES = ["caf\u00e9", "%", "100%25", ".", "..", "a/b", "a b", "x.y", "\u00fcber", b"\xff\xfe",
             "_", "-", "~t", "\u65e5\u672c", "user.with+odd/chars", "../../etc", "a%2fb", "\t",
             "admin@example.com"]
ODD_STORES = ["pep_urn:xmpp:avatar:metadata", "with space", "dot.store", "per%cent", "\u00fcber",
              "a/b", "..", "plain_store"]
ODD_HOSTS = ["example.com", "xn--mnchen-3ya.example", "m\u00fcnchen.example", "a/b", "..", "%41"]


def _hex(name) -> str | None:
    return None if name is None else name_bytes(name).hex()


def _req(path, user=None, host=None, store=None, **extra) -> str:
    body = {"path": str(path), "user": user if user is True else _hex(user),
            "host": _hex(host), "store": _hex(store)}
    body.update(extra)
    return json.dumps(body)


def lua_load(oracle, path, user, host, store):
    return json.loads(oracle.call("dm_oracle.load", _req(path, user, host, store)))


def lua_list_load(oracle, path, user, host, store):
    return json.loads(oracle.call("dm_oracle.list_load", _req(path, user, host, store)))


def lua_names(oracle, command, path, **kw) -> set:
    typ = kw.pop("typ", "keyval")
    return set(json.loads(oracle.call(f"dm_oracle.{command}", _req(path, typ=typ, **kw))))


def hex_set(names) -> set:
    return {name_bytes(n).hex() for n in names}


# ---------------------------------------------------------------------------
# Values

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=16)
_scalars = st.one_of(
    _text,
    st.binary(max_size=12),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.floats(),
    st.booleans(),
)
_keys = st.one_of(_text, st.integers(min_value=-50, max_value=50),
                  st.floats(allow_nan=False), st.booleans())
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)
tables = st.one_of(st.lists(values, min_size=1, max_size=5),
                   st.dictionaries(_keys, values, min_size=1, max_size=5))
names = st.one_of(st.sampled_from(ODD_NAMES), _text.filter(lambda s: 0 < len(s.encode()) <= 40),
                  st.binary(min_size=1, max_size=20))
hosts = st.one_of(st.sampled_from(ODD_HOSTS), st.binary(min_size=1, max_size=20))
stores = st.one_of(st.sampled_from(ODD_STORES), _text.filter(lambda s: 0 < len(s.encode()) <= 40))


def _lua_view(value):
    """``value`` as it reads back: bytes that are UTF-8 become str (Lua has one string type)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, list):
        return [_lua_view(v) for v in value]
    if isinstance(value, dict):
        return {_lua_view(k): _lua_view(v) for k, v in value.items()}
    return value


def _same(ours, original) -> bool:
    """The value read back equals what was written, numbers by value (3.0 is written ``3``)."""
    return canon(ours, typed_numbers=False) == canon(_lua_view(original), typed_numbers=False)


@SETTINGS
@given(value=tables, user=st.one_of(st.none(), names), host=st.one_of(st.none(), hosts),
       store=stores)
def test_prosody_reads_our_keyval(oracle, value, user, host, store):
    root = tempfile.mkdtemp()
    try:
        dm = DataManager(root, durable=False)
        dm.store(user, host, store, value)
        ours = dm.load(user, host, store)
        assert _same(ours, value) or (ours is None and not canon(value)[1])
        lua = lua_load(oracle, root, user, host, store)
        assert canon_tagged(lua) == canon(ours)
        if user is not None and host is not None:
            # (Prosody's users() and stores() look for host None in a directory named "nil")
            assert lua_names(oracle, "users", root, host=host, store=store) == {_hex(user)}
            assert lua_names(oracle, "stores", root, user=user, host=host) == hex_set(
                dm.stores(user, host))
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(items=st.lists(st.one_of(values.filter(lambda v: v is not False), tables), min_size=1,
                      max_size=8),
       user=names, host=hosts, store=stores)
def test_prosody_reads_our_list(oracle, items, user, host, store):
    root = tempfile.mkdtemp()
    try:
        dm = DataManager(root, durable=False)
        for item in items:
            dm.list_append(user, host, store, item)
        ours = dm.list_load(user, host, store)
        assert len(ours) == len(items) and all(_same(a, b) for a, b in zip(ours, items))
        lua = lua_list_load(oracle, root, user, host, store)
        assert [canon_tagged(x) for x in lua] == [canon(x) for x in ours]
        with dm.list_open(user, host, store) as view:
            assert [canon(x) for x in view] == [canon(x) for x in ours]
        dm.list_store(user, host, store, ours[::-1])
        lua = lua_list_load(oracle, root, user, host, store)
        assert [canon_tagged(x) for x in lua] == [canon(x) for x in ours[::-1]]
        assert lua_names(oracle, "users", root, host=host, store=store, typ="list") == {_hex(user)}
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(value=tables, user=st.one_of(st.none(), names), host=st.one_of(st.none(), hosts),
       store=stores, items=st.lists(values.filter(lambda v: v is not False), max_size=5))
def test_we_read_prosodys_writes(oracle, value, user, host, store, items):
    root = tempfile.mkdtemp()
    try:
        oracle.call("dm_oracle.store", _req(root, user, host, store, value=to_tagged(value)))
        lua = lua_load(oracle, root, user, host, store)
        dm = DataManager(root)
        assert canon(dm.load(user, host, store)) == canon_tagged(lua)
        if items:
            oracle.call("dm_oracle.list_append",
                        _req(root, user, host, store, items=[to_tagged(i) for i in items]))
            lua_items = lua_list_load(oracle, root, user, host, store)
            assert [canon(x) for x in dm.list_load(user, host, store)] == \
                [canon_tagged(x) for x in lua_items]
            with dm.list_open(user, host, store) as view:
                assert len(view) == len(lua_items)
                assert canon(view[-1]) == canon_tagged(lua_items[-1])
        if user is not None and host is not None:
            assert hex_set(dm.users(host, store)) == lua_names(oracle, "users", root, host=host,
                                                              store=store)
        assert dm.getpath(user, host, store) == \
            oracle.call("dm_oracle.getpath", _req(root, user, host, store, ext="dat")).decode()
    finally:
        shutil.rmtree(root)


# Values whose serialization has one possible key order: arrays and single-key tables.
ordered = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=5),
                            st.dictionaries(_keys, inner, min_size=1, max_size=1)),
    max_leaves=20,
).filter(lambda v: isinstance(v, (list, dict)))


@SETTINGS
@given(value=ordered, user=names, host=hosts, store=stores)
def test_keyval_files_byte_identical(oracle, value, user, host, store):
    ours_root, lua_root = tempfile.mkdtemp(), tempfile.mkdtemp()
    try:
        dm = DataManager(ours_root)
        dm.store(user, host, store, value)
        oracle.call("dm_oracle.store", _req(lua_root, user, host, store, value=to_tagged(value)))
        ours = Path(dm.getpath(user, host, store)).read_bytes()
        theirs = Path(DataManager(lua_root).getpath(user, host, store)).read_bytes()
        assert ours == theirs
        assert sorted(os.listdir(ours_root)) == sorted(os.listdir(lua_root))
    finally:
        shutil.rmtree(ours_root)
        shutil.rmtree(lua_root)


# ---------------------------------------------------------------------------
# Listings over many odd names at once


@pytest.mark.parametrize("writer", ["ours", "prosody"])
def test_listings_with_odd_names(oracle, tmp_path, writer):
    root = tmp_path / "data"
    dm = DataManager(root)
    for host in ODD_HOSTS:
        for i, store in enumerate(ODD_STORES):
            for user in ODD_NAMES[i % 3::3]:
                value = {"u": user if isinstance(user, str) else user.hex(), "s": store}
                if writer == "ours":
                    dm.store(user, host, store, value)
                    dm.list_append(user, host, store + "_list", value)
                else:
                    root.mkdir(exist_ok=True)
                    oracle.call("dm_oracle.store", _req(root, user, host, store,
                                                        value=to_tagged(value)))
                    oracle.call("dm_oracle.list_append", _req(root, user, host, store + "_list",
                                                              items=[to_tagged(value)]))
    for host in ODD_HOSTS:
        assert hex_set(dm.stores(True, host)) == lua_names(oracle, "stores", root, user=True,
                                                          host=host)
        for store in ODD_STORES:
            for typ, name in (("keyval", store), ("list", store + "_list")):
                ours = hex_set(dm.users(host, name, typ))
                assert ours == lua_names(oracle, "users", root, host=host, store=name, typ=typ)
                assert ours  # every store got users
        for user in ODD_NAMES:
            for typ in ("keyval", "list"):
                assert hex_set(dm.stores(user, host, typ)) == lua_names(
                    oracle, "stores", root, user=user, host=host, typ=typ)
            lua = lua_load(oracle, root, user, host, ODD_STORES[ODD_NAMES.index(user) % 3])
            assert canon_tagged(lua) == canon(dm.load(user, host,
                                                      ODD_STORES[ODD_NAMES.index(user) % 3]))


def test_legacy_directory_read_by_both(oracle, tmp_path):
    """A 0.10 directory (raw store names): we read it as Prosody 0.10 wrote it."""
    root = tmp_path / "d"
    corpus = Path(__file__).resolve().parent.parent / "fixtures" / "prosody-corpus" / "prosody-0.10"
    shutil.copytree(corpus, root)
    dm = DataManager(root)
    store = "pep_urn:xmpp:avatar:metadata"
    before = dm.list_load("alice", "example.com", store)
    assert before and lua_list_load(oracle, root, "alice", "example.com", store) is None
    dm.list_append("alice", "example.com", store, {"n": 1})  # moves to the 0.11+ spelling
    lua = lua_list_load(oracle, root, "alice", "example.com", store)
    assert [canon_tagged(x) for x in lua] == [canon(x) for x in before + [{"n": 1}]]


def test_prosody_purge_and_ours_agree(oracle, tmp_path):
    root = tmp_path / "data"
    dm = DataManager(root)
    for store in ODD_STORES:
        dm.store("alice", "h", store, {"a": 1})
        dm.store("bob", "h", store, {"b": 1})
    oracle.call("dm_oracle.purge", _req(root, "alice", "h"))
    assert not list(dm.stores("alice", "h"))
    assert set(dm.stores("bob", "h")) == set(ODD_STORES)
    dm.purge("bob", "h")
    assert lua_names(oracle, "stores", root, user="bob", host="h") == set()
