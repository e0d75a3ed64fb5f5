"""A damaged ``.lidx`` never changes what a list reads as (issue 12, point 2).

Whatever the index beside a list holds, every reader (the lazy view, the
CLI's ``get`` and ``export``, an HTTP GET) gives the items that real Prosody
0.12.3's ``list_load`` gives, which reads the list alone.
"""
from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import lidx
from prosody_store.datamanager import DataManager
from tests.live_server import LiveServer, demo_auth, demo_copy
from tests.tagged import canon, canon_tagged
from tests.test_cli import run
from tests.test_datamanager_interop import lua_list_load

HOST, USER, STORE = "localhost", "alice", "notes"
ITEMS = [{"n": 0, "text": "zero"}, {"n": 1}, {"n": 2, "list": [1, 2]}, {"n": 3}]


def make_list(root: Path, items=ITEMS) -> tuple[DataManager, Path, bytes]:
    dm = DataManager(root, durable=False)
    for item in items:
        dm.list_append(USER, HOST, STORE, item)
    path = Path(dm.getpath(USER, HOST, STORE, "list"))
    return dm, path, path.read_bytes()


def write_index(path: Path, raw: bytes) -> None:
    Path(lidx.index_path(str(path))).write_bytes(raw)


def index_of(offsets) -> bytes:
    return lidx.MAGIC_BYTES + b"".join(lidx.entry(o) for o in offsets)


def damaged_indexes(size: int, ends: list[int]) -> dict[str, bytes]:
    """The indexes the issue names, and their neighbours, for a list of ``size`` bytes."""
    return {
        "huge first offset": struct.pack("<QQQ", lidx.MAGIC, 2 ** 63, size),
        "repeated entry": index_of([ends[0], ends[0], *ends[1:]]),
        "entries missing": index_of([ends[1], ends[3]]),
        "offsets mid-item": index_of([e - 3 for e in ends[:-1]] + [size]),
        "zero first": index_of([0, *ends]),
        "going back": index_of([ends[1], ends[0], *ends[2:]]),
        "wrong magic": struct.pack("<Q", 1234) + index_of(ends)[8:],
        "torn entry": index_of(ends)[:-3],
        "empty": b"",
        "stale": index_of(ends[:-1]),
    }


def test_each_damaged_index_reads_as_prosody_reads(tmp_path, oracle, caplog):
    dm, path, data = make_list(tmp_path / "d")
    ends = list(lidx.scan_offsets(data))
    lua = lua_list_load(oracle, dm.data_path, USER, HOST, STORE)
    assert [canon_tagged(x) for x in lua] == [canon(x) for x in ITEMS]
    for name, raw in damaged_indexes(len(data), ends).items():
        write_index(path, raw)
        with dm.list_open(USER, HOST, STORE) as view:
            assert list(view) == ITEMS, name
            assert len(view) == len(ITEMS), name
            assert [view[i] for i in range(-4, 4)] == ITEMS + ITEMS, name
        write_index(path, raw)
        with dm.list_open(USER, HOST, STORE) as view:
            assert view[-1] == ITEMS[-1] and view[1] == ITEMS[1], name  # by index first
        assert Path(lidx.index_path(str(path))).read_bytes() == index_of(ends), name
    assert path.read_bytes() == data
    damaged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("out of order" in m for m in damaged)
    assert any("does not match" in m for m in damaged)
    assert not any("stale" in m for m in damaged)  # routine beside a Prosody 0.12 writer


def test_cli_get_and_export_with_a_damaged_index(tmp_path):
    dm, path, data = make_list(tmp_path / "d")
    ends = list(lidx.scan_offsets(data))
    for name, raw in damaged_indexes(len(data), ends).items():
        write_index(path, raw)
        got = run(dm.data_path, "get", f"{USER}@{HOST}", STORE)
        assert json.loads(got.stdout) == ITEMS, name
        write_index(path, raw)
        out = run(dm.data_path, "export", "--host", HOST, "--store", STORE)
        [record] = [json.loads(line) for line in out.stdout.splitlines()]
        assert record["value"] == ITEMS, name


def test_http_get_with_a_damaged_index(tmp_path):
    data = demo_copy(tmp_path)
    dm, path, raw_list = make_list(data)
    ends = list(lidx.scan_offsets(raw_list))
    with LiveServer(data) as server:
        for name, raw in damaged_indexes(len(raw_list), ends).items():
            write_index(path, raw)
            status, _, body = server.request("GET", f"/data/{STORE}", headers=demo_auth("alice"))
            assert status == 200, (name, body)
            assert json.loads(body) == ITEMS, name


_items = st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=20),
                            st.dictionaries(st.text(max_size=5), st.integers(-2 ** 63, 2 ** 63 - 1),
                                            max_size=3)),
                  min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=_items, data=st.data())
def test_random_indexes_never_change_the_items(oracle, items, data):
    root = Path(tempfile.mkdtemp())
    try:
        dm, path, raw = make_list(root, items)
        ends = list(lidx.scan_offsets(raw))
        offsets = data.draw(st.one_of(
            st.lists(st.integers(0, len(raw) + 5), max_size=12),
            st.lists(st.sampled_from([0, *ends, len(raw) // 2]), max_size=12).map(sorted),
            st.permutations(ends),
            st.lists(st.sampled_from(ends), min_size=1).map(lambda x: sorted(set(x))),
        ))
        raw_index = index_of(offsets)
        if data.draw(st.booleans()):
            raw_index = data.draw(st.binary(max_size=40))
        write_index(path, raw_index)
        lua = [canon_tagged(x) for x in lua_list_load(oracle, dm.data_path, USER, HOST, STORE)]
        with dm.list_open(USER, HOST, STORE) as view:
            # Reading every entry checks every entry: after that the index is right.
            assert [canon(x) for x in view] == lua
            assert len(view) == len(lua)
            k = data.draw(st.integers(-len(items), len(items) - 1))
            assert canon(view[k]) == lua[k]
        assert dm.list_load(USER, HOST, STORE) == items
    finally:
        shutil.rmtree(root)


def test_index_problem_found_and_fixed_by_reindex(tmp_path):
    dm, path, data = make_list(tmp_path / "d")
    ends = list(lidx.scan_offsets(data))
    assert dm.list_index_problem(USER, HOST, STORE) is None
    for name, raw in damaged_indexes(len(data), ends).items():
        write_index(path, raw)
        problem = dm.list_index_problem(USER, HOST, STORE)
        if name == "empty":
            assert problem is not None and "not an index" in problem
        else:
            assert problem, name
        assert dm.list_reindex(USER, HOST, STORE) is True
        assert dm.list_index_problem(USER, HOST, STORE) is None
        assert Path(lidx.index_path(str(path))).read_bytes() == index_of(ends)
    Path(lidx.index_path(str(path))).unlink()
    assert dm.list_index_problem(USER, HOST, STORE) is None  # no index is no problem
    assert dm.list_index_problem(USER, HOST, "nothing") is None


def test_verify_reports_a_damaged_index_and_repair_rebuilds_it(tmp_path):
    dm, path, data = make_list(tmp_path / "d")
    ends = list(lidx.scan_offsets(data))
    index = Path(lidx.index_path(str(path)))
    index.write_bytes(index_of([ends[1], ends[3]]))  # passes the cheap checks
    out = run(dm.data_path, "verify", check=1)
    assert f"{index}: index does not match its list" in out.stdout.decode()
    assert "reindex rebuilds it" in out.stdout.decode()
    assert index.read_bytes() == index_of([ends[1], ends[3]])  # verify alone changes nothing
    out = run(dm.data_path, "verify", "--repair")
    assert "(rebuilt)" in out.stdout.decode()
    assert index.read_bytes() == index_of(ends)
    assert run(dm.data_path, "verify").stdout == b""
    assert path.read_bytes() == data


def test_layouts_prosody_reads_get_an_index_that_fits(tmp_path, oracle):
    """Two items on a line, an indented one, item(nil): the index built for
    them has one entry per item, list_open reads what Prosody reads, and
    verify finds nothing wrong."""
    dm = DataManager(tmp_path / "d", durable=False)
    path = Path(dm.getpath(USER, HOST, STORE, "list"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b'item({["n"] = 0}); item(1)\n\titem("two");\nitem(nil);\n'
                     b'item(3, 4) -- a comment\nitem{["n"] = 4};\n')
    lua = [canon_tagged(x) for x in lua_list_load(oracle, dm.data_path, USER, HOST, STORE)]
    assert lua == [canon(x) for x in [{"n": 0}, 1, "two", 3, {"n": 4}]]
    with dm.list_open(USER, HOST, STORE) as view:
        assert [canon(x) for x in view] == lua
        assert len(view) == 5 and canon(view[2]) == lua[2] and canon(view[-1]) == lua[-1]
    assert dm.list_index_problem(USER, HOST, STORE) is None
    assert run(dm.data_path, "verify").stdout == b""
