"""The public building blocks of DataManager that services use instead of private names.

Streaming list replace, rewrite keeping byte ranges, reindex, existence and
size, the public lock, and the data-directory walker; on real files in temp
directories.  Lists written here are read back by real Prosody
(``util.datamanager`` via the lua oracle) where the oracle is available.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from prosody_store import lidx
from prosody_store.datamanager import (
    TEMP_PREFIX,
    CorruptFileError,
    DataManager,
    StoreFile,
    name_sort_key,
)
from prosody_store.paths import name_bytes
from prosody_store.serialization import dump_item
from prosody_store.sql import scan
from tests.tagged import canon, canon_tagged

ITEMS = [{"key": f"k{i}", "when": 1700000000 + i, "with": "x@example.com"} for i in range(5)]


@pytest.fixture
def dm(tmp_path) -> DataManager:
    return DataManager(tmp_path / "data")


def _hex(name) -> str | None:
    return None if name is None else name_bytes(name).hex()


def prosody_list_load(oracle, dm: DataManager, user, host, store) -> list | None:
    """The list as real Prosody's ``util.datamanager.list_load`` reads it."""
    body = json.dumps({"path": dm.data_path, "user": _hex(user), "host": _hex(host),
                       "store": _hex(store)})
    items = json.loads(oracle.call("dm_oracle.list_load", body))
    return None if items is None else [canon_tagged(i) for i in items]


def index_is_exact(dm: DataManager, user, host, store) -> bool:
    path = dm.getpath(user, host, store, "list")
    with open(path, "rb") as f:
        built = lidx.build_offsets(f.fileno())
    return Path(lidx.index_path(path)).read_bytes() == lidx.encode_index(built)


def temp_files(dm: DataManager) -> list[str]:
    return [name for _root, _dirs, files in os.walk(dm.data_path)
            for name in files if name.startswith(TEMP_PREFIX)]


# ---------------------------------------------------------------------------
# lidx.index_path


def test_index_path():
    assert lidx.index_path("/d/h/archive/u.list") == "/d/h/archive/u.lidx"
    with pytest.raises(ValueError):
        lidx.index_path("/d/h/archive/u.dat")


# ---------------------------------------------------------------------------
# Streaming replace


def test_list_store_stream_writes_items_and_index(dm):
    assert dm.list_store_stream("u", "h", "archive", iter(ITEMS)) == 5
    assert dm.list_load("u", "h", "archive") == ITEMS
    assert index_is_exact(dm, "u", "h", "archive")
    assert temp_files(dm) == []


def test_list_store_stream_bad_item_changes_nothing(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    path = Path(dm.getpath("u", "h", "archive", "list"))
    before = path.read_bytes(), Path(lidx.index_path(str(path))).read_bytes()

    def items():
        yield ITEMS[0]
        yield None

    with pytest.raises(ValueError):
        dm.list_store_stream("u", "h", "archive", items())
    assert (path.read_bytes(), Path(lidx.index_path(str(path))).read_bytes()) == before
    assert temp_files(dm) == []


def test_list_store_stream_empty_removes(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    assert dm.list_store_stream("u", "h", "archive", []) == 0
    assert not dm.exists("u", "h", "archive", "list")
    assert not dm.exists("u", "h", "archive", "lidx")


def test_list_store_chunks_offsets_filled_while_streaming(dm):
    offsets = lidx.new_offsets()

    def chunks():
        pos = 0
        for item in ITEMS:
            line = dump_item(item)
            pos += len(line)
            offsets.append(pos)
            yield line

    dm.list_store_chunks("u", "h", "archive", chunks(), offsets)
    assert dm.list_load("u", "h", "archive") == ITEMS
    assert index_is_exact(dm, "u", "h", "archive")


def test_list_store_chunks_without_offsets_drops_index(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    dm.list_store_chunks("u", "h", "archive", [dump_item(ITEMS[0])])
    assert dm.list_load("u", "h", "archive") == ITEMS[:1]
    assert not dm.exists("u", "h", "archive", "lidx")


def test_list_store_chunks_no_bytes_removes(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    dm.list_store_chunks("u", "h", "archive", iter([b""]), lidx.new_offsets())
    assert not dm.exists("u", "h", "archive", "list")
    assert temp_files(dm) == []


def test_list_store_chunks_failure_changes_nothing(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    path = Path(dm.getpath("u", "h", "archive", "list"))
    before = path.read_bytes(), Path(lidx.index_path(str(path))).read_bytes()

    def chunks():
        yield dump_item(ITEMS[0])
        raise OSError("input broke")

    with pytest.raises(OSError, match="input broke"):
        dm.list_store_chunks("u", "h", "archive", chunks(), None)
    assert (path.read_bytes(), Path(lidx.index_path(str(path))).read_bytes()) == before
    assert temp_files(dm) == []


def test_list_store_stream_replaces_legacy_spelling(dm):
    store = "pep_urn:xmpp:avatar:metadata"
    legacy_dir = Path(dm.data_path) / "h" / store
    legacy_dir.mkdir(parents=True)
    (legacy_dir / "u.list").write_bytes(dump_item({"old": True}))
    dm.list_store_stream("u", "h", store, ITEMS[:2])
    assert not (legacy_dir / "u.list").exists()
    assert dm.list_load("u", "h", store) == ITEMS[:2]


@pytest.mark.interop
def test_streamed_list_read_by_prosody(oracle, dm):
    dm.list_store_stream("alice", "example.com", "archive", ITEMS)
    assert prosody_list_load(oracle, dm, "alice", "example.com", "archive") == \
        [canon(i) for i in ITEMS]


# ---------------------------------------------------------------------------
# list_filter: rewrite keeping byte ranges


def _pieces(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    bounds = [0, *lidx.scan_offsets(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def test_list_filter_keeps_bytes_of_kept_items(dm):
    for item in ITEMS:
        dm.list_append("u", "h", "archive", item)
    path = dm.getpath("u", "h", "archive", "list")
    # hand-written spacing, which a re-serialisation would not keep
    Path(path).write_bytes(b"".join(p.replace(b"item(", b"item( ") for p in _pieces(path)))
    pieces = _pieces(path)
    res = dm.list_filter("u", "h", "archive", lambda item: item["when"] % 2 == 0)
    assert (res.path, res.kept, res.dropped) == (path, 3, 2)
    assert Path(path).read_bytes() == pieces[0] + pieces[2] + pieces[4]
    assert [i["key"] for i in dm.list_load("u", "h", "archive")] == ["k0", "k2", "k4"]
    assert index_is_exact(dm, "u", "h", "archive")
    assert temp_files(dm) == []


def test_list_filter_dry_run_and_nothing_dropped_change_nothing(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    path = Path(dm.getpath("u", "h", "archive", "list"))
    inode = path.stat().st_ino
    res = dm.list_filter("u", "h", "archive", lambda item: False, dry_run=True)
    assert (res.kept, res.dropped) == (0, 5)
    res = dm.list_filter("u", "h", "archive", lambda item: True)
    assert (res.kept, res.dropped) == (5, 0)
    assert path.stat().st_ino == inode


def test_list_filter_dropping_everything_removes(dm):
    dm.list_store_stream("u", "h", "archive", ITEMS)
    res = dm.list_filter("u", "h", "archive", lambda item: False)
    assert (res.kept, res.dropped) == (0, 5)
    assert not dm.exists("u", "h", "archive", "list")
    assert not dm.exists("u", "h", "archive", "lidx")


def test_list_filter_missing_and_corrupt(dm):
    assert dm.list_filter("u", "h", "archive", lambda item: True) is None
    path = Path(dm.getpath("u", "h", "archive", "list", create=True))
    path.write_bytes(dump_item(ITEMS[0]) + b"item({broken\n")
    before = path.read_bytes()
    with pytest.raises(CorruptFileError):
        dm.list_filter("u", "h", "archive", lambda item: False)
    assert path.read_bytes() == before


@pytest.mark.interop
def test_filtered_list_read_by_prosody(oracle, dm):
    dm.list_store_stream("alice", "example.com", "archive", ITEMS)
    dm.list_filter("alice", "example.com", "archive", lambda item: item["key"] != "k1")
    assert prosody_list_load(oracle, dm, "alice", "example.com", "archive") == \
        [canon(i) for i in ITEMS if i["key"] != "k1"]


# ---------------------------------------------------------------------------
# list_reindex


def test_list_reindex(dm):
    assert dm.list_reindex("u", "h", "archive") is None
    for item in ITEMS:
        dm.list_append("u", "h", "archive", item)
    assert dm.list_reindex("u", "h", "archive") is False  # appends kept it current
    os.unlink(dm.getpath("u", "h", "archive", "lidx"))
    assert dm.list_reindex("u", "h", "archive") is True
    assert index_is_exact(dm, "u", "h", "archive")
    Path(dm.getpath("u", "h", "archive", "lidx")).write_bytes(lidx.MAGIC_BYTES)
    assert dm.list_reindex("u", "h", "archive") is True
    assert index_is_exact(dm, "u", "h", "archive")


def test_list_reindex_writes_even_without_write_index(tmp_path):
    dm = DataManager(tmp_path, write_index=False)
    dm.list_store("u", "h", "archive", ITEMS)
    assert not dm.exists("u", "h", "archive", "lidx")
    assert dm.list_reindex("u", "h", "archive") is True
    assert index_is_exact(dm, "u", "h", "archive")


# ---------------------------------------------------------------------------
# existence and size


def test_exists_and_file_size(dm):
    assert not dm.exists("u", "h", "roster")
    assert dm.file_size("u", "h", "roster") is None
    assert dm.existing_path("u", "h", "roster") is None
    dm.store("u", "h", "roster", {"a": 1})
    path = dm.getpath("u", "h", "roster")
    assert dm.exists("u", "h", "roster")
    assert dm.existing_path("u", "h", "roster") == path
    assert dm.file_size("u", "h", "roster") == os.stat(path).st_size
    assert not dm.exists("u", "h", "roster", "list")


def test_existing_path_finds_legacy_spelling(dm):
    store = "pep_urn:xmpp:avatar:metadata"
    legacy = Path(dm.data_path) / "h" / store / "u.dat"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"return {[\"a\"] = 1};\n")
    assert dm.existing_path("u", "h", store) == str(legacy)
    assert dm.file_size("u", "h", store) == legacy.stat().st_size


def test_list_view_stat(dm):
    dm.list_store("u", "h", "archive", ITEMS)
    with dm.list_open("u", "h", "archive") as view:
        assert view.stat().st_size == os.stat(view.path).st_size
    with pytest.raises(ValueError):
        view.stat()


# ---------------------------------------------------------------------------
# the lock


def test_lock_of_missing_directory(dm):
    with dm.lock("u", "h", "roster") as exists:
        assert exists is False
    assert not os.path.exists(dm.store_directory("h", "roster"))
    with dm.lock("u", "h", "roster", create=True) as exists:
        assert exists is True
    assert os.path.isdir(dm.store_directory("h", "roster"))


def test_lock_is_reentrant_and_excludes_other_writers(dm):
    dm.store("u", "h", "roster", {"n": 1})
    done = threading.Event()

    def writer():
        dm.store("other", "h", "roster", {"n": 2})  # same store directory
        done.set()

    with dm.lock("u", "h", "roster") as exists:
        assert exists
        value = dm.load("u", "h", "roster")
        dm.store("u", "h", "roster", {"n": value["n"] + 1})  # reentrant: no deadlock
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.2)
        assert not done.is_set()
    t.join(10)
    assert done.is_set()
    assert dm.load("u", "h", "roster") == {"n": 2}
    assert dm.load("other", "h", "roster") == {"n": 2}


# ---------------------------------------------------------------------------
# walking a data directory


@pytest.fixture
def populated(dm) -> DataManager:
    dm.store("bob", "b.example", "roster", {"x": 1})
    dm.list_append("bob", "b.example", "roster", {"y": 1})
    dm.store("alice", "b.example", "roster", {"x": 1})
    dm.list_append("alice", "b.example", "archive", {"y": 1})
    dm.store(None, "b.example", "roster", {"host": 1})
    dm.store(None, "a.example", "muc", {"room": 1})
    dm.store("admin", None, "adhoc", {"g": 1})
    return dm


def test_hosts_and_store_names(populated, tmp_path):
    assert populated.hosts() == [None, "a.example", "b.example"]
    assert populated.store_names("b.example") == ["archive", "roster"]
    assert DataManager(tmp_path / "missing").hosts() == []


def test_iter_files_order_and_filters(populated):
    files = list(populated.iter_files())
    assert files == [
        StoreFile(None, "adhoc", "admin", "keyval"),
        StoreFile("a.example", "muc", None, "keyval"),
        StoreFile("b.example", "archive", "alice", "list"),
        StoreFile("b.example", "roster", None, "keyval"),
        StoreFile("b.example", "roster", "alice", "keyval"),
        StoreFile("b.example", "roster", "bob", "keyval"),
        StoreFile("b.example", "roster", "bob", "list"),
    ]
    assert [f.ext for f in files[-2:]] == ["dat", "list"]
    assert list(populated.iter_files(hosts=["a.example"])) == files[1:2]
    assert list(populated.iter_files(stores=[b"archive"])) == files[2:3]
    assert sorted([None, "b", b"a"], key=name_sort_key) == [None, b"a", "b"]


def test_sql_scan_uses_the_same_walk(populated):
    files = [f for f in populated.iter_files() if f.host is not None]
    entries = scan(populated)
    assert [(e.host, e.store, e.user) for e in entries] == \
        [(f.host, f.store, f.user) for f in files]
    for e, f in zip(entries, files):
        assert e.kind == ("keyval" if f.type == "keyval" else "archive")
        assert e.size == populated.file_size(f.user, f.host, f.store, f.ext)


def test_export_walk_is_the_store_walk(populated):
    from prosody_store.export import host_names, iter_store_files
    assert host_names(populated.data_path) == populated.hosts()
    assert list(iter_store_files(populated)) == list(populated.iter_files())

