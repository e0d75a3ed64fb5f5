"""An append onto a list whose last item a crash cut short (issue 12, point 1).

A writer killed in the middle of an item leaves a list that ends in part of
one.  The next append must not glue its item onto that part (the new item
would be unreadable, and so, for Prosody, would the whole list): the part is
moved to a ``.damaged-...`` file beside the list and the new item is written
after the last whole one.  Every check reads the list with real Prosody
0.12.3's ``util.datamanager`` as well as with ours.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prosody_store import lidx
from prosody_store.datamanager import CorruptFileError, DataManager, ListBusyError
from prosody_store.serialization import LuaSyntaxError, dump_item, iter_list
from tests.live_server import LiveServer, demo_auth, demo_copy
from tests.tagged import canon, canon_tagged
from tests.test_datamanager_interop import lua_list_load

ROOT = Path(__file__).resolve().parent.parent
HOST, USER, STORE = "example.com", "alice", "archive"

# Items with what a torn write can cut in the middle of: nested tables, a
# string with escapes, a line that ends in ");" inside a table ((1/0)).
BEFORE = [{"key": "k1", "with": "bob@example.com", "body": "hi\nthere \"you\""},
          {"key": "k2", "n": 2}]
TORN = {"key": "k3", "inf": float("inf"), "attr": {"to": "a@b", "list": [1, {"x": "y"}]}}
NEW = {"key": "k4", "body": "after the crash"}


def list_path(dm: DataManager) -> Path:
    return Path(dm.getpath(USER, HOST, STORE, "list"))


def damaged_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".damaged-*"))


def assert_both_read(oracle, dm: DataManager, expected: list) -> None:
    ours = dm.list_load(USER, HOST, STORE)
    assert [canon(x) for x in ours] == [canon(x) for x in expected]
    lua = lua_list_load(oracle, dm.data_path, USER, HOST, STORE)
    assert [canon_tagged(x) for x in lua] == [canon(x) for x in expected]
    with dm.list_open(USER, HOST, STORE) as view:
        assert [canon(x) for x in view] == [canon(x) for x in expected]


def whole_statement(text: bytes) -> bool:
    try:
        return list(iter_list(text)) == [TORN]
    except LuaSyntaxError:
        return False


def torn_list(tmp_path: Path, cut: int) -> tuple[DataManager, bytes]:
    """A list of BEFORE plus the first ``cut`` bytes of TORN's statement."""
    dm = DataManager(tmp_path / f"cut{cut}", durable=False)
    for item in BEFORE:
        dm.list_append(USER, HOST, STORE, item)
    torn = dump_item(TORN)[:cut]
    with open(list_path(dm), "ab") as f:
        f.write(torn)
    return dm, torn


def test_every_cut_of_the_last_item_is_moved_aside(tmp_path, oracle):
    whole = dump_item(TORN)
    for cut in range(1, len(whole)):
        dm, torn = torn_list(tmp_path, cut)
        path = list_path(dm)
        expected = BEFORE + [NEW]
        if whole_statement(torn):
            expected = BEFORE + [TORN, NEW]  # only the line end was missing
        assert dm.list_append(USER, HOST, STORE, NEW) is True
        assert_both_read(oracle, dm, expected)
        copies = damaged_copies(path)
        if len(expected) == 3:
            assert [c.read_bytes() for c in copies] == [torn], cut
        else:
            assert copies == [], cut


def test_zeros_left_by_an_allocated_but_unwritten_item(tmp_path, oracle):
    # Prosody allocates the item's bytes (fallocate) before writing them: a
    # crash between the two leaves zeros, or part of the item then zeros.
    whole = dump_item(TORN)
    for written in (0, 10, len(whole) - 3):
        dm, _ = torn_list(tmp_path, written)
        path = list_path(dm)
        with open(path, "ab") as f:
            f.write(bytes(len(whole) - written))
        dm.list_append(USER, HOST, STORE, NEW)
        assert_both_read(oracle, dm, BEFORE + [NEW])
        [copy] = damaged_copies(path)
        assert copy.read_bytes() == whole[:written] + bytes(len(whole) - written)


def test_index_follows_the_cut(tmp_path):
    dm, _ = torn_list(tmp_path, 20)
    path = list_path(dm)
    index = Path(lidx.index_path(str(path)))
    assert index.exists()  # kept by the appends of BEFORE, not covering the torn bytes
    dm.list_append(USER, HOST, STORE, NEW)
    data = path.read_bytes()
    assert lidx.read_index(str(index), len(data)) in (None, lidx.scan_offsets(data))
    with dm.list_open(USER, HOST, STORE) as view:
        assert list(view) == BEFORE + [NEW]
    assert lidx.read_index(str(index), len(data)) == lidx.scan_offsets(data)


WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from prosody_store.datamanager import DataManager
dm = DataManager(sys.argv[2], durable=False)
print("ready", flush=True)
sys.stdin.readline()
dm.list_append("alice", "example.com", "archive", {"key": "big", "pad": "z" * (64 << 20)})
"""


def test_writer_killed_mid_item_then_append(tmp_path, oracle):
    """SIGKILL a writer while its 64 MB item is half on disk; the next append works."""
    caught = 0
    for attempt in range(20):  # bounded: stops at the first kill that tears the item
        root = tmp_path / f"kill{attempt}"
        dm = DataManager(root, durable=False)
        for item in BEFORE:
            dm.list_append(USER, HOST, STORE, item)
        path = list_path(dm)
        size = path.stat().st_size
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(root)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == b"ready\n"
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and path.stat().st_size < size + (1 << 20):
                pass
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            proc.stdin.close()
            proc.stdout.close()
        torn = path.stat().st_size
        if not size < torn < size + (64 << 20):
            continue  # killed before or after the write: try again
        caught += 1
        dm.list_append(USER, HOST, STORE, NEW)
        assert_both_read(oracle, dm, BEFORE + [NEW])
        [copy] = damaged_copies(path)
        assert copy.stat().st_size == torn - size
        break
    assert caught == 1, "no kill landed in the middle of the write"


def test_a_live_writer_finishing_its_item_is_not_cut(tmp_path, oracle):
    """A writer that takes no lock (Prosody) may be between two writes of one
    item: the append waits for the tail to settle and finds it whole."""
    dm, torn = torn_list(tmp_path, 25)
    path = list_path(dm)
    rest = dump_item(TORN)[len(torn):]

    def finish() -> None:
        time.sleep(0.02)
        with open(path, "ab") as f:
            f.write(rest)

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        dm.list_append(USER, HOST, STORE, NEW)
    finally:
        writer.join()
    assert_both_read(oracle, dm, BEFORE + [TORN, NEW])
    assert damaged_copies(path) == []


def test_a_tail_that_never_settles_refuses_the_append(tmp_path):
    dm, torn = torn_list(tmp_path, 25)
    path = list_path(dm)
    stop = threading.Event()

    def dribble() -> None:
        for _ in range(400):  # bounded: 4 s at most
            if stop.wait(0.01):
                return
            with open(path, "ab") as f:
                f.write(b" ")

    writer = threading.Thread(target=dribble)
    writer.start()
    try:
        with pytest.raises(ListBusyError) as info:
            dm.list_append(USER, HOST, STORE, NEW)
    finally:
        stop.set()
        writer.join()
    assert info.value.filename == str(path)
    assert dump_item(NEW) not in path.read_bytes()
    assert path.read_bytes().startswith(b"".join(dump_item(i) for i in BEFORE) + torn)
    assert damaged_copies(path) == []


def test_damage_before_the_last_item_is_not_cut_away(tmp_path):
    """Only a damaged last statement is a crash's doing; the rest is left to verify."""
    dm, _ = torn_list(tmp_path, 0)
    path = list_path(dm)
    good = path.read_bytes()
    damaged = good.replace(b'["n"] = 2', b'["n"] = 2 2') + dump_item(TORN)[:30]
    path.write_bytes(damaged)
    with pytest.raises(CorruptFileError) as info:
        dm.list_append(USER, HOST, STORE, NEW)
    assert info.value.filename == str(path) and info.value.lineno > 1
    assert path.read_bytes() == damaged
    assert damaged_copies(path) == []


def test_a_whole_item_without_its_line_end_gets_one(tmp_path, oracle):
    dm, _ = torn_list(tmp_path, len(dump_item(TORN)) - 1)
    dm.list_append(USER, HOST, STORE, NEW)
    assert_both_read(oracle, dm, BEFORE + [TORN, NEW])
    data = list_path(dm).read_bytes()
    assert data.endswith(dump_item(TORN) + dump_item(NEW))


def test_http_post_after_a_crash(tmp_path, oracle):
    """Over the real service: the POST answers 201 and its item is readable."""
    data = demo_copy(tmp_path)
    dm = DataManager(data, durable=False)
    host, user = "localhost", "alice"
    dm.list_append(user, host, "archive", {"key": "first"})
    path = Path(dm.getpath(user, host, "archive", "list"))
    with open(path, "ab") as f:
        f.write(dump_item({"key": "torn", "x": "y" * 50})[:40])
    with LiveServer(data) as server:
        status, _, body = server.request(
            "POST", "/data/archive", b'{"key": "posted"}',
            {**demo_auth("alice"), "Content-Type": "application/json"})
        assert status == 201, body
        status, _, body = server.request("GET", "/data/archive", headers=demo_auth("alice"))
    assert status == 200
    lua = lua_list_load(oracle, str(data), user, host, "archive")
    assert [canon_tagged(x) for x in lua][-2:] == [canon({"key": "first"}),
                                                   canon({"key": "posted"})]
    assert b'"posted"' in body and b'"torn"' not in body
    assert len(damaged_copies(path)) == 1


def test_damaged_copy_names_do_not_collide(tmp_path):
    dm, _ = torn_list(tmp_path, 12)
    path = list_path(dm)
    dm.list_append(USER, HOST, STORE, NEW)
    with open(path, "ab") as f:
        f.write(b"item({")
    dm.list_append(USER, HOST, STORE, NEW)
    copies = damaged_copies(path)
    assert len(copies) == 2 and copies[1].read_bytes() == b"item({"
    assert not os.path.exists(str(path) + ".damaged")
    assert dm.list_load(USER, HOST, STORE) == BEFORE + [NEW, NEW]
