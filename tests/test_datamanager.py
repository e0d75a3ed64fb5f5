"""The filesystem store: API behaviour, the Prosody corpus, names, views, indexes, recovery."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from prosody_store import lidx
from prosody_store.datamanager import (
    TEMP_PREFIX,
    CorruptFileError,
    DataManager,
    KeyvalView,
    ListView,
)
from prosody_store.paths import (
    InvalidNameError,
    NameTooLongError,
    StoreError,
    decode,
    encode,
    store_encode,
)
from prosody_store.serialization import LuaSyntaxError
from tests.tagged import canon, canon_tagged

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "prosody-corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())
VERSIONS = sorted(MANIFEST["versions"])
CORPUS_FILES = [(v, f) for v in VERSIONS for f in MANIFEST["versions"][v]["files"]]


def _id(param):
    version, f = param
    return f"{version}:{f['path']}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A private copy of the corpus (list_open writes .lidx files)."""
    dest = tmp_path_factory.mktemp("corpus") / "c"
    shutil.copytree(CORPUS, dest)
    return dest


def typed(version: str) -> bool:
    return MANIFEST["versions"][version]["lua_has_integers"]


def expected(root: Path, version: str, f: dict):
    return canon_tagged(json.loads((root / version / f["expected"]).read_text()), typed(version))


def as_list(items, version) -> tuple:
    return ("list", tuple(canon(x, typed(version)) for x in items))


# ---------------------------------------------------------------------------
# The corpus


@pytest.mark.parametrize("param", CORPUS_FILES, ids=[_id(p) for p in CORPUS_FILES])
def test_corpus_file_loads_to_expected(corpus, param):
    version, f = param
    dm = DataManager(corpus / version)
    want = expected(corpus, version, f)
    if f["type"] == "keyval":
        assert canon(dm.load(f["user"], f["host"], f["store"]), typed(version)) == want
    else:
        assert as_list(dm.list_load(f["user"], f["host"], f["store"]), version) == want
        with dm.list_open(f["user"], f["host"], f["store"]) as view:
            assert as_list(view, version) == want
            n = len(want[1])
            assert len(view) == n
            for i in (0, n - 1, -1, -n):
                assert canon(view[i], typed(version)) == want[1][i]
            assert as_list(view[::-1], version)[1] == want[1][::-1]


@pytest.mark.parametrize("version", VERSIONS)
def test_corpus_listings(corpus, version):
    dm = DataManager(corpus / version)
    files = MANIFEST["versions"][version]["files"]
    by_store: dict = {}
    user_stores: dict = {}
    hostless: dict = {}
    for f in files:
        if f["user"] is None:
            hostless.setdefault((f["host"], f["type"]), set()).add(f["store"])
            continue
        by_store.setdefault((f["host"], f["store"], f["type"]), set()).add(f["user"])
        user_stores.setdefault((f["user"], f["host"], f["type"]), set()).add(f["store"])
    for (host, store, typ), users in by_store.items():
        assert set(dm.users(host, store, typ)) == users, (host, store, typ)
    for (user, host, typ), stores in user_stores.items():
        assert set(dm.stores(user, host, typ)) == stores, (user, host, typ)
    for (host, typ), stores in hostless.items():
        assert set(dm.stores(None, host, typ)) == stores
    all_dirs = {f["store"] for f in files if f["host"] == "example.com" and f["user"]}
    assert set(dm.stores(True, "example.com")) == all_dirs
    assert "pep_urn:xmpp:avatar:metadata" in set(dm.stores("alice", "example.com", "list"))
    assert list(dm.users("example.com", "pep_urn:xmpp:avatar:metadata", "list")) == ["alice"]
    assert list(dm.users("nowhere.example", "accounts")) == []


LIDX_FILES = sorted((CORPUS / "prosody-13.0").rglob("*.lidx"))


@pytest.mark.parametrize("index_file", LIDX_FILES, ids=[p.parent.name + "/" + p.name for p in LIDX_FILES])
def test_corpus_lidx_reproduced_byte_for_byte(tmp_path, index_file):
    list_file = index_file.with_suffix(".list")
    original = index_file.read_bytes()
    data = list_file.read_bytes()
    assert lidx.encode_index(lidx.scan_offsets(data)) == original
    want = json.loads(Path(str(index_file) + ".expected.json").read_text())
    assert list(lidx.parse_index(original)) == want["item_end_offsets"]
    assert lidx.parse_index(original) is not None and lidx.MAGIC == want["magic"]
    # Through the store: delete the index, open the list, get Prosody's bytes back.
    root = tmp_path / "d"
    shutil.copytree(CORPUS / "prosody-13.0", root)
    rel = index_file.relative_to(CORPUS / "prosody-13.0")
    (root / rel).unlink()
    host, store, user = (decode(p) for p in (rel.parts[0], rel.parts[1], rel.stem))
    dm = DataManager(root)
    with dm.list_open(user, host, store) as view:
        assert len(view) == len(want["item_end_offsets"])
    assert (root / rel).read_bytes() == original


# ---------------------------------------------------------------------------
# Keyval API


@pytest.fixture
def dm(tmp_path) -> DataManager:
    return DataManager(tmp_path / "data")


def test_store_load_roundtrip_and_paths(dm, tmp_path):
    value = {"password": "secr1t", "n": 3, "list": [1, 2.5, "x"], "flag": True}
    assert dm.store("alice", "example.com", "accounts", value) is True
    path = tmp_path / "data" / "example%2ecom" / "accounts" / "alice.dat"
    assert path.is_file()
    assert path.read_bytes().startswith(b"return {")
    assert dm.load("alice", "example.com", "accounts") == value
    assert dm.getpath("alice", "example.com", "accounts") == str(path)
    assert dm.load("bob", "example.com", "accounts") is None
    assert dm.load("alice", "other.example", "accounts") is None


def test_user_and_host_none(dm, tmp_path):
    dm.store(None, None, "cron", {"a": 1})
    assert (tmp_path / "data" / "_global" / "cron.dat").is_file()
    assert dm.load(None, None, "cron") == {"a": 1}
    dm.store(None, "muc.example.com", "persistent", {"lounge": True})
    assert (tmp_path / "data" / "muc%2eexample%2ecom" / "persistent.dat").is_file()
    assert set(dm.stores(None, "muc.example.com")) == {"persistent"}
    dm.list_append(None, "h", "log", "x")
    assert (tmp_path / "data" / "h" / "log.list").is_file()
    assert dm.list_load(None, "h", "log") == ["x"]
    assert set(dm.stores(None, "h", "list")) == {"log"}
    assert dm.getpath(None, None, "x", "list") == str(tmp_path / "data" / "_global" / "x.list")


@pytest.mark.parametrize("empty", [{}, [], None, {"a": None}])
def test_store_empty_removes(dm, empty):
    dm.store("u", "h", "s", {"a": 1})
    path = Path(dm.getpath("u", "h", "s"))
    assert path.exists()
    assert dm.store("u", "h", "s", empty) is True
    assert not path.exists()
    assert dm.load("u", "h", "s") is None
    assert dm.store("nobody", "nohost", "s", {}) is True  # nothing to remove: fine
    assert not Path(dm.getpath("nobody", "nohost", "s")).parent.exists()


def test_store_scalar_and_unstorable(dm):
    dm.store("u", "h", "s", "just a string")
    assert dm.load("u", "h", "s") == "just a string"
    dm.store("u", "h", "s", {"keep": 1})
    before = Path(dm.getpath("u", "h", "s")).read_bytes()
    with pytest.raises(TypeError):
        dm.store("u", "h", "s", {"bad": object()})
    cyc: dict = {}
    cyc["self"] = cyc
    with pytest.raises(ValueError):
        dm.store("u", "h", "s", cyc)
    assert Path(dm.getpath("u", "h", "s")).read_bytes() == before
    assert not [p for p in Path(dm.data_path).rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_written_bytes_are_prosodys(dm):
    dm.store("u", "h", "s", {"a": "b"})
    assert Path(dm.getpath("u", "h", "s")).read_bytes() == b'return {\n\t["a"] = "b";\n};\n'
    dm.list_append("u", "h", "l", {"x": 1})
    dm.list_append("u", "h", "l", "y")
    assert Path(dm.getpath("u", "h", "l", "list")).read_bytes() == \
        b'item({\n\t["x"] = 1;\n});\nitem("y");\n'


def test_update_is_read_modify_write(dm):
    assert dm.update("u", "h", "counter", lambda v: {"n": (v or {"n": 0})["n"] + 1}) == {"n": 1}
    dm.update("u", "h", "counter", lambda v: {"n": v["n"] + 1})
    assert dm.load("u", "h", "counter") == {"n": 2}
    dm.update("u", "h", "counter", lambda v: None)
    assert dm.load("u", "h", "counter") is None


def test_empty_dat_file_is_no_data(dm):
    path = Path(dm.getpath("u", "h", "s", create=True))
    path.write_bytes(b"")
    assert dm.load("u", "h", "s") is None
    path.write_bytes(b"return nil;\n")
    assert dm.load("u", "h", "s") is None


def test_corrupt_dat_error_names_file_line_column(dm):
    path = Path(dm.getpath("u", "h", "s", create=True))
    path.write_bytes(b'return {\n\t["a"] = 1;\n\t["b"] = os.exit();\n};\n')
    with pytest.raises(CorruptFileError) as info:
        dm.load("u", "h", "s")
    err = info.value
    assert isinstance(err, StoreError) and isinstance(err, LuaSyntaxError)
    assert err.filename == str(path)
    assert (err.lineno, err.colno) == (3, 10)
    assert str(path) in str(err) and "line 3, column 10" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, CorruptFileError) and again.lineno == 3 and again.filename == str(path)


# ---------------------------------------------------------------------------
# Lists


def test_list_append_load_store(dm):
    assert dm.list_load("u", "h", "l") is None
    for i in range(5):
        assert dm.list_append("u", "h", "l", {"i": i}) is True
    assert dm.list_append("u", "h", "l", None) is None  # ignored, as in Prosody
    assert dm.list_append("u", "h", "l", False) is None
    assert dm.list_load("u", "h", "l") == [{"i": i} for i in range(5)]
    index = Path(dm.getpath("u", "h", "l", "lidx"))
    data = Path(dm.getpath("u", "h", "l", "list")).read_bytes()
    assert index.read_bytes() == lidx.encode_index(lidx.scan_offsets(data))  # kept like Prosody 13
    assert dm.list_store("u", "h", "l", ["a", "b"]) is True
    assert not index.exists()  # list_store deletes the index
    assert dm.list_load("u", "h", "l") == ["a", "b"]
    with pytest.raises(ValueError):
        dm.list_store("u", "h", "l", ["a", None])
    assert dm.list_store("u", "h", "l", []) is True
    assert not Path(dm.getpath("u", "h", "l", "list")).exists()
    assert dm.list_load("u", "h", "l") is None


def test_append_to_list_without_index_keeps_none_and_drops_stale(dm):
    dm.list_store("u", "h", "l", [1, 2])
    dm.list_append("u", "h", "l", 3)
    index = Path(dm.getpath("u", "h", "l", "lidx"))
    assert not index.exists()  # Prosody 13 only starts an index with a new list
    with dm.list_open("u", "h", "l") as view:
        assert list(view) == [1, 2, 3]
    assert index.exists()
    dm.list_append("u", "h", "l", 4)  # consistent index: one entry appended
    data = Path(dm.getpath("u", "h", "l", "list")).read_bytes()
    assert index.read_bytes() == lidx.encode_index(lidx.scan_offsets(data))
    index.write_bytes(index.read_bytes()[:-8])  # stale
    dm.list_append("u", "h", "l", 5)
    assert not index.exists()  # dropped, as Prosody 13 does
    with dm.list_open("u", "h", "l") as view:
        assert list(view) == [1, 2, 3, 4, 5]


def _big_list(dm, n=300):
    items = [{"n": i, "s": "x" * (i % 17), "u": "\u00fc" * (i % 3)} for i in range(n)]
    for item in items:
        dm.list_append("u", "h", "l", item)
    return items


def test_list_open_random_access_and_slices(dm):
    items = _big_list(dm)
    with dm.list_open("u", "h", "l") as view:
        assert isinstance(view, ListView)
        assert len(view) == len(items)
        for i in (0, 1, 150, 299, -1, -2, -300):
            assert view[i] == items[i]
        for s in (slice(None), slice(10, 20), slice(-5, None), slice(None, None, -1),
                  slice(3, 250, 7), slice(200, 10, -3), slice(500, 600)):
            assert view[s] == items[s]
        with pytest.raises(IndexError):
            view[300]
        with pytest.raises(IndexError):
            view[-301]
        assert list(view) == items
        assert view.index(items[42]) == 42 and items[7] in view
    assert view.closed
    with pytest.raises(ValueError):
        view[0]
    with dm.list_open("nobody", "h", "l") as missing:  # an empty view, as the README uses it
        assert not missing.exists and len(missing) == 0 and list(missing) == []
        assert missing[0:5] == [] and missing.path == dm.getpath("nobody", "h", "l", "list")
        with pytest.raises(IndexError):
            missing[0]
        with pytest.raises(FileNotFoundError):
            missing.stat()
    assert missing.closed


@pytest.mark.parametrize("damage", ["bad_magic", "truncated", "short_by_one", "garbage", "extra",
                                    "empty", "wrong_offsets"])
def test_lidx_rebuilt_when_wrong(dm, damage):
    items = _big_list(dm, 40)
    index = Path(dm.getpath("u", "h", "l", "lidx"))
    good = index.read_bytes()
    bad = {
        "bad_magic": b"\x00" * 8 + good[8:],
        "truncated": good[:-3],
        "short_by_one": good[:-8],
        "garbage": os.urandom(len(good)),
        "extra": good + lidx.entry(10 ** 6),
        "empty": b"",
        "wrong_offsets": good[:8] + lidx.entry(5) + good[16:],
    }[damage]
    index.write_bytes(bad)
    with dm.list_open("u", "h", "l") as view:
        assert view[-1] == items[-1] and view[13] == items[13] and list(view) == items
    assert index.read_bytes() == good


def test_list_open_read_only_index(tmp_path):
    dm = DataManager(tmp_path / "data", write_index=False)
    dm.list_store("u", "h", "l", ["a", "b", "c"])
    with dm.list_open("u", "h", "l") as view:
        assert view[-1] == "c"
    assert not Path(dm.getpath("u", "h", "l", "lidx")).exists()


def test_list_open_is_a_snapshot(dm):
    dm.list_store("u", "h", "l", ["a", "b"])
    with dm.list_open("u", "h", "l") as view:
        dm.list_append("u", "h", "l", "c")
        dm.list_store("u", "h", "l", ["z"])
        assert list(view) == ["a", "b"]


@pytest.mark.parametrize("trim_to,kept", [(1, range(10)), (2, range(1, 10)), (4, range(3, 10)),
                                          (10, range(9, 10)), (11, None), (50, None)])
def test_list_shift(dm, trim_to, kept):
    items = [{"n": i} for i in range(10)]
    for item in items:
        dm.list_append("u", "h", "l", item)
    assert dm.list_shift("u", "h", "l", trim_to) is True
    if kept is None:
        assert dm.list_load("u", "h", "l") is None
        assert not Path(dm.getpath("u", "h", "l", "lidx")).exists()
        return
    assert dm.list_load("u", "h", "l") == [items[i] for i in kept]
    data = Path(dm.getpath("u", "h", "l", "list")).read_bytes()
    assert Path(dm.getpath("u", "h", "l", "lidx")).read_bytes() == \
        lidx.encode_index(lidx.scan_offsets(data))
    dm.list_append("u", "h", "l", "after")
    with dm.list_open("u", "h", "l") as view:
        assert view[-1] == "after" and len(view) == len(kept) + 1


def test_list_shift_arguments(dm):
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            dm.list_shift("u", "h", "l", bad)
    assert dm.list_shift("u", "h", "missing", 3) is True


def test_corrupt_list_and_recovery(dm):
    for i in range(6):
        dm.list_append("u", "h", "l", {"n": i})
    path = Path(dm.getpath("u", "h", "l", "list"))
    lines = path.read_bytes().split(b"\n")
    # item 3 spans lines 7-9 (each item is 3 lines); break its value.
    assert lines[7] == b'\t["n"] = 2;'
    lines[7] = b'\t["n"] = 2 2;'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptFileError) as info:
        dm.list_load("u", "h", "l")
    assert info.value.filename == str(path)
    assert (info.value.lineno, info.value.colno) == (8, 12)
    with dm.list_open("u", "h", "l") as view:
        assert view[1] == {"n": 1} and view[3] == {"n": 3}
        with pytest.raises(CorruptFileError) as info2:
            view[2]
        assert (info2.value.lineno, info2.value.colno) == (8, 12)
    rec = dm.list_recover("u", "h", "l")
    assert rec.items == [{"n": i} for i in (0, 1, 3, 4, 5)]
    assert len(rec.damaged) == 1
    region = rec.damaged[0]
    data = path.read_bytes()
    assert data[region.start:region.end].startswith(b"item(") and b"2 2" in data[region.start:region.end]
    assert (region.error.lineno, region.error.colno) == (8, 12)
    assert region.error.filename == str(path)
    assert not rec.repaired and path.read_bytes() == data
    fixed = dm.list_recover("u", "h", "l", repair=True)
    assert fixed.repaired
    assert dm.list_load("u", "h", "l") == rec.items
    assert dm.list_recover("u", "h", "l").ok
    assert dm.list_recover("u", "h", "nothing") is None


def test_recovery_of_truncated_list(dm):
    for i in range(4):
        dm.list_append("u", "h", "l", {"n": i, "pad": "p" * 30})
    path = Path(dm.getpath("u", "h", "l", "list"))
    path.write_bytes(path.read_bytes()[:-20])  # half-written last item
    rec = dm.list_recover("u", "h", "l")
    assert rec.items == [{"n": i, "pad": "p" * 30} for i in range(3)]
    assert len(rec.damaged) == 1 and rec.damaged[0].end == path.stat().st_size


# ---------------------------------------------------------------------------
# Names


def test_encoding_functions():
    assert encode("caf\u00e9") == "caf%c3%a9"
    assert encode("example.com") == "example%2ecom"
    assert encode("a_b") == "a%5fb"
    assert store_encode("pep_urn:xmpp:avatar:metadata") == "pep_urn%3axmpp%3aavatar%3ametadata"
    assert encode(b"\xff/\x00") == "%ff%2f%00"
    assert decode("caf%C3%A9") == "caf\u00e9"
    assert decode("%ff%fe") == b"\xff\xfe"
    assert decode("100%") == "100%"
    with pytest.raises(InvalidNameError):
        encode("\udc80")
    with pytest.raises(InvalidNameError):
        encode(42)


HOSTILE = ["..", ".", "/", "../../etc/passwd", "%2e%2e", "a\x00b", b"\xff\xfe", "caf\u00e9",
           " spaced name ", "", "~", "x/..", "\\", "\n", "*", "-rf", "_global", "a" * 200,
           "\U0010ffff", ".lock", "%"]


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(n)[:30] for n in HOSTILE])
def test_hostile_names_stay_inside(tmp_path, name):
    root = tmp_path / "data"
    dm = DataManager(root)
    host = name if name not in ("",) else "h"
    dm.store(name, host, "s", {"v": 1})
    dm.list_append(name, host, "l", "item")
    dm.store(None, host, name or "s2", {"v": 2})
    assert dm.load(name, host, "s") == {"v": 1}
    assert dm.list_load(name, host, "l") == ["item"]
    assert dm.load(None, host, name or "s2") == {"v": 2}
    assert name in set(dm.users(host, "s"))
    assert set(dm.stores(name, host)) == {"s"}
    assert os.listdir(tmp_path) == ["data"]
    for dirpath, dirs, files in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        assert depth <= 2
    dm.purge(name, host)
    assert dm.load(name, host, "s") is None and dm.list_load(name, host, "l") is None


def test_names_too_long(dm):
    dm.store("x" * 251, "h", "s", {"a": 1})  # 251 + ".dat" = 255 bytes: fits
    assert dm.load("x" * 251, "h", "s") == {"a": 1}
    with pytest.raises(NameTooLongError) as info:
        dm.list_append("x" * 251, "h", "s", 1)  # ".list" makes 256
    assert "user name" in str(info.value) and "xxx" in str(info.value)
    assert isinstance(info.value, StoreError) and isinstance(info.value, OSError)
    with pytest.raises(NameTooLongError):
        dm.store("\u00e9" * 50, "h", "s", {"a": 1})  # 100 bytes, 300 once encoded
    with pytest.raises(NameTooLongError) as info:
        dm.load("u", "h" * 300, "s")
    assert "host name" in str(info.value)
    with pytest.raises(NameTooLongError):
        dm.store("u", "h", "s" * 256, {"a": 1})


def test_invalid_names(dm):
    with pytest.raises(InvalidNameError):
        dm.store("u", "", "s", {"a": 1})
    with pytest.raises(InvalidNameError):
        dm.store("u", "h", "", {"a": 1})
    with pytest.raises(InvalidNameError):
        dm.load(3, "h", "s")
    with pytest.raises(InvalidNameError):
        dm.getpath("u", "h", "s", "../x")
    with pytest.raises(InvalidNameError):
        dm.purge(None, "h")


def test_legacy_store_spelling(tmp_path):
    root = tmp_path / "d"
    shutil.copytree(CORPUS / "prosody-0.10", root)
    dm = DataManager(root)
    store = "pep_urn:xmpp:avatar:metadata"
    old = dm.list_load("alice", "example.com", store)
    assert len(old) == 1
    legacy_dir = root / "example%2ecom" / store
    assert legacy_dir.is_dir()
    dm.list_append("alice", "example.com", store, {"new": True})
    assert dm.list_load("alice", "example.com", store) == old + [{"new": True}]
    assert not (legacy_dir / "alice.list").exists()
    assert (root / "example%2ecom" / store_encode(store) / "alice.list").exists()
    assert list(dm.users("example.com", store, "list")) == ["alice"]
    assert list(dm.stores("alice", "example.com", "list")).count(store) == 1
    # a legacy keyval store: read, then replaced and removed by a write
    (legacy_dir / "bob.dat").write_bytes(b'return {["v"] = 1};\n')
    assert dm.load("bob", "example.com", store) == {"v": 1}
    assert set(dm.users("example.com", store)) == {"bob"}
    dm.store("bob", "example.com", store, {"v": 2})
    assert not (legacy_dir / "bob.dat").exists()
    assert dm.load("bob", "example.com", store) == {"v": 2}
    (legacy_dir / "carol.dat").write_bytes(b'return {["v"] = 1};\n')
    dm.store("carol", "example.com", store, {})
    assert dm.load("carol", "example.com", store) is None
    (legacy_dir / "dave.dat").write_bytes(b'return {["v"] = 1};\n')
    dm.purge("dave", "example.com")
    assert dm.load("dave", "example.com", store) is None


def test_purge(dm):
    for store in ("accounts", "roster", "pep_urn:x"):
        dm.store("alice", "h", store, {"a": 1})
        dm.store("bob", "h", store, {"b": 1})
    dm.list_append("alice", "h", "archive", "m")
    assert dm.purge("alice", "h") is True
    assert not list(dm.stores("alice", "h")) and not list(dm.stores("alice", "h", "list"))
    assert not Path(dm.getpath("alice", "h", "archive", "lidx")).exists()
    assert set(dm.stores("bob", "h")) == {"accounts", "roster", "pep_urn:x"}
    assert dm.purge("alice", "nohost") is True


# ---------------------------------------------------------------------------
# Views and housekeeping


def test_keyval_view(dm):
    kv = dm.keyval("example.com", "accounts")
    assert isinstance(kv, KeyvalView)
    assert len(kv) == 0 and "alice" not in kv
    kv["alice"] = {"password": "a"}
    kv["b\u00f6b"] = {"password": "b"}
    assert kv["alice"] == {"password": "a"}
    assert set(kv) == {"alice", "b\u00f6b"} and len(kv) == 2
    assert dict(kv.items())["b\u00f6b"] == {"password": "b"}
    with pytest.raises(KeyError):
        kv["nobody"]
    del kv["alice"]
    assert "alice" not in kv
    with pytest.raises(KeyError):
        del kv["alice"]
    kv["b\u00f6b"] = {}  # Prosody semantics: storing an empty table removes
    assert "b\u00f6b" not in kv
    assert kv.modify("c", lambda v: {"n": 1}) == {"n": 1}
    assert kv.get("c") == {"n": 1}
    with pytest.raises(ValueError):
        kv["c"] = None


def test_lists_view(dm):
    lists = dm.lists("example.com", "archive")
    lists["alice"] = ["a", "b"]
    lists.append("alice", "c")
    lists.append("bob", "x")
    assert set(lists) == {"alice", "bob"} and len(lists) == 2
    with lists["alice"] as view:
        assert view[-1] == "c" and list(view) == ["a", "b", "c"]
    assert lists.load("bob") == ["x"]
    del lists["bob"]
    assert "bob" not in lists
    with pytest.raises(KeyError):
        lists["bob"]


def test_temp_files_ignored_and_removed(dm):
    dm.store("u", "h", "s", {"a": 1})
    store_dir = Path(dm.getpath("u", "h", "s")).parent
    debris = store_dir / f"{TEMP_PREFIX}0123456789abcdef~"
    debris.write_bytes(b"return {")
    assert list(dm.users("h", "s")) == ["u"]
    assert dm.remove_temp_files(older_than=3600) == []
    os.utime(debris, (0, 0))
    assert dm.remove_temp_files(older_than=3600) == [str(debris)]
    assert not debris.exists()


def test_file_mode_kept_on_rewrite(dm):
    dm.store("u", "h", "s", {"a": 1})
    path = Path(dm.getpath("u", "h", "s"))
    path.chmod(0o600)
    dm.store("u", "h", "s", {"a": 2})
    assert path.stat().st_mode & 0o777 == 0o600


def test_threads_do_not_lose_updates(dm):
    import threading

    def work():
        for _ in range(50):
            dm.update("u", "h", "counter", lambda v: {"n": (v or {"n": 0})["n"] + 1})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dm.load("u", "h", "counter") == {"n": 200}
