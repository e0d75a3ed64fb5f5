"""``archive expire`` without decoding the kept items (prosody_store.archive.expire_list).

Each archive is written by real Prosody (lua5.4 running its ``util.datamanager``
``list_append``, i.e. its own serializer) or, for layouts Prosody does not
write, by hand.  Then the same archive is expired three ways, each on its own
copy:

* by ``expire_list`` (items placed from their bytes, the full reader for the rest),
* by ``expire_list(full_reader=True)`` (every item decoded: the old way),
* by Prosody itself: mod_storage_internal's ``archive:delete(user, {["end"] = cutoff})``
  under lua5.4, or, where that stops with an error (an item without a number
  ``when``), the documented rule applied in Lua to ``list_load`` and written
  back with ``list_store``.

The three must hold the same items; our two must be the same bytes with the
same ``.lidx``, which must match the list; Prosody's ``list_load`` must read
what we wrote.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prosody_store.archive as archive_module
from prosody_store import lidx
from prosody_store.archive import PROSODY_ITEM, expire_list
from prosody_store.datamanager import CorruptFileError, DataManager
from prosody_store.serialization import dump_item, iter_list
from tests import oracle as lua_oracle
from tests.conftest import IN_CI, skip_or_fail
from tests.speedups import load, scaled
from tests.tagged import canon, canon_tagged
from tests.test_cli import CORPUS, VERSIONS
from tests.test_cli_interop import prosody_reads
from tests.test_serialization_interop import floats, inner_values, ints, texts

pytestmark = pytest.mark.interop

HOST, USER, STORE = "example.com", "alice", "archive"
CUTOFF = 1700000100

_PRELUDE = r'''
package.loaded["util.logger"] = { init = function() return function() end end }
local json = require "util.json"
local dm = require "util.datamanager"
local req = json.decode(io.read("a"))
dm.set_data_path(req.path)
'''

# Each item is a Lua table constructor, turned into a value by Lua and
# written by Prosody's list_append (its serializer, its layout).
WRITE_LUA = _PRELUDE + r'''
for _, expr in ipairs(req.items) do
	local item = assert(load("return " .. expr, "=item", "t", { math = math }))()
	assert(dm.list_append(req.user, req.host, req.store, item))
end
'''

# Prosody's own expiry: mod_storage_internal's archive:delete with an "end"
# (the module loaded by tests/lua/archive_oracle.lua, on this data path).
DELETE_LUA = _PRELUDE + r'''
local archive = require("archive_oracle").storage(req.host):open(req.store, "archive")
local ok, n, err = pcall(archive.delete, archive, req.user, { ["end"] = req.cutoff })
if not ok then io.write("error: ", tostring(n)) return end
if n == nil then error(err) end
io.write(string.format("deleted %d", n))
'''

# The documented rule where Prosody's delete stops (no number "when": kept).
RULE_LUA = _PRELUDE + r'''
local items = dm.list_load(req.user, req.host, req.store) or {}
local kept = {}
for _, item in ipairs(items) do
	local when = type(item) == "table" and item.when
	if type(when) ~= "number" or when > req.cutoff then kept[#kept + 1] = item end
end
if #kept < #items then assert(dm.list_store(req.user, req.host, req.store, kept)) end
io.write(string.format("deleted %d", #items - #kept))
'''


@pytest.fixture(autouse=True)
def _needs_lua():
    reason = lua_oracle.missing()
    if reason:
        skip_or_fail(reason)


def lua(script: str, path: Path, **fields) -> str:
    req = {"path": str(path), "host": HOST, "user": USER, "store": STORE, **fields}
    return lua_oracle.run_lua(script, json.dumps(req).encode()).decode()


def list_path(data: Path) -> Path:
    return data / "example%2ecom" / STORE / f"{USER}.list"


def prosody_writes(data: Path, items: list[str]) -> bytes:
    """Prosody's list_append of each Lua constructor; the list's bytes."""
    lua(WRITE_LUA, data, items=items)
    return list_path(data).read_bytes()


def place(data: Path, raw: bytes) -> Path:
    path = list_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def items_of(path: Path) -> list | None:
    return [canon(i) for i in iter_list(path.read_bytes())] if path.exists() else None


class Outcome:
    def __init__(self, data: Path, result) -> None:
        path = list_path(data)
        self.result = result
        self.bytes = path.read_bytes() if path.exists() else None
        index = path.with_suffix(".lidx")
        self.index = index.read_bytes() if index.exists() else None
        self.items = items_of(path)


def expire_copy(tmp_path: Path, source: Path, name: str, cutoff=CUTOFF, **kwargs) -> Outcome:
    data = tmp_path / name
    shutil.copytree(source, data)
    dm = DataManager(data, durable=False)
    return Outcome(data, expire_list(dm, USER, HOST, STORE, cutoff, **kwargs))


def check_all_ways(tmp_path: Path, source: Path, cutoff=CUTOFF, oracle=None,
                   prosody_fails: bool = False, whole_list: bool = False) -> Outcome:
    """Expire ``source`` (a data directory) three ways; check they agree.  Our
    byte-level outcome is returned.  ``whole_list``: the list is expected to
    go through the full reader as a whole (a layout the byte path cannot cut)."""
    fast = expire_copy(tmp_path, source, "fast", cutoff)
    full = expire_copy(tmp_path, source, "full", cutoff, full_reader=True)
    assert fast.result.full_reader == whole_list and full.result.full_reader
    assert (fast.result.dropped, fast.result.kept) == (full.result.dropped, full.result.kept)
    assert fast.bytes == full.bytes and fast.items == full.items
    if fast.result.dropped:
        assert fast.index == full.index
    # Prosody's own expiry of the same archive
    theirs = tmp_path / "prosody"
    shutil.copytree(source, theirs)
    said = lua(DELETE_LUA, theirs, cutoff=cutoff)
    if prosody_fails:
        assert said.startswith("error: ") and "compare" in said, said
        assert items_of(list_path(theirs)) == items_of(list_path(source))  # it changed nothing
        said = lua(RULE_LUA, theirs, cutoff=cutoff)
    assert said == f"deleted {fast.result.dropped}"
    assert items_of(list_path(theirs)) == fast.items
    # what we wrote: Prosody reads it, our index fits it
    after = tmp_path / "fast"
    path = list_path(after)
    if fast.bytes is None:
        assert not path.exists() and not path.with_suffix(".lidx").exists()
    else:
        dm = DataManager(after)
        assert dm.list_index_problem(USER, HOST, STORE) is None
        if fast.index is not None:
            assert fast.index == lidx.encode_index(lidx.scan_offsets(fast.bytes))
        if oracle is not None:
            got = prosody_reads(oracle, after, HOST, USER, STORE, "list")
            assert [canon_tagged(i) for i in got["list"]] == fast.items
    return fast


def message(when: str, body: str = '"hi"', extra: str = "") -> str:
    """A Lua constructor of an archive item as mod_storage_internal stores one."""
    return ('{ name = "message", attr = { xmlns = "jabber:client", type = "chat", '
            'to = "alice@example.com", from = "bob@example.com/x" }, '
            f'{{ name = "body", attr = {{}}, {body} }}, key = "k", with = "bob@example.com", '
            f'when = {when}{extra} }}')


# ---------------------------------------------------------------------------
# Archives written by Prosody


def test_prosody_archive_is_placed_from_bytes_and_agrees(oracle, tmp_path):
    src = tmp_path / "src"
    whens = [1700000000 + 7 * i + (0.25 if i % 3 else 0) for i in range(40)]
    raw = prosody_writes(src, [message(repr(w)) for w in whens])
    out = check_all_ways(tmp_path, src, oracle=oracle)
    assert out.result.read_fully == 0  # every item placed from its bytes
    assert out.result.dropped == sum(1 for w in whens if not w > CUTOFF) == 15
    assert raw.endswith(out.bytes)  # the kept items keep their bytes


@pytest.mark.parametrize("cutoff", [0, 1700000000, 1700000050, 1800000000])
def test_cutoff_edges(oracle, tmp_path, cutoff):
    """Nothing, the first item (when == cutoff goes), some, everything."""
    src = tmp_path / "src"
    raw = prosody_writes(src, [message(str(1700000000 + 10 * i)) for i in range(12)])
    out = check_all_ways(tmp_path, src, cutoff=cutoff, oracle=oracle)
    assert out.result.dropped == {0: 0, 1700000000: 1, 1700000050: 6, 1800000000: 12}[cutoff]
    if cutoff == 0:
        assert out.bytes == raw and out.index is None  # untouched: no rewrite
    if cutoff == 1800000000:
        assert out.bytes is None


def test_when_numbers(oracle, tmp_path):
    """Floats, integers, negative, huge, beyond 64 bits, the cutoff itself,
    infinities and NaN (which Prosody writes as (1/0), (-1/0), (0/0))."""
    src = tmp_path / "src"
    whens = ["1700000100", "1700000100.0", "1700000100.000001", "1700000099.99999",
             "-5", "0", "-0.0", "1e300", "-1e300", "math.maxinteger", "math.mininteger",
             "2^63", "9007199254740993", "1/0", "-1/0", "0/0", "1700000101", "17e8"]
    prosody_writes(src, [message(w) for w in whens])
    out = check_all_ways(tmp_path, src, oracle=oracle)
    assert out.result.kept == 7  # 1700000100.000001, 1e300, maxinteger, 2^63, 2^53+1, inf, +1
    assert out.result.read_fully == 3  # (1/0), (-1/0), (0/0) need the full reader


def test_when_elsewhere_in_the_item(oracle, tmp_path):
    """``when`` in strings and nested tables does not count; only the item's own."""
    src = tmp_path / "src"
    fake = r'"\n\t[\"when\"] = 1;\n"'
    items = [
        message("1800000000", body=fake),  # kept: the body's text is no entry
        message("1", body=fake),  # dropped
        message("1800000000", extra=', nested = { when = 1, { when = 2 } }'),
        message("2", extra=', nested = { when = 1800000000 }'),  # dropped
        message("1800000000", extra=', ["when "] = 1, [" when"] = 1, whenx = 1'),
        '{ name = "message", attr = { when = 1 }, { when = 2 } }',  # no when of its own: kept
        '{ name = "message", attr = { when = 1800000000 } }',  # nor here
    ]
    prosody_writes(src, items)
    out = check_all_ways(tmp_path, src, oracle=oracle, prosody_fails=True)
    assert (out.result.dropped, out.result.kept) == (2, 5)
    assert out.result.read_fully == 2  # only the two without a top-level when


def test_when_that_is_no_number(oracle, tmp_path):
    """Missing, a string, a boolean, a table: kept (Prosody's delete stops on them)."""
    src = tmp_path / "src"
    items = [message("1"), '{ name = "message", key = "x" }', message('"1"'), message("true"),
             message("{ 1 }"), message("1700000200"), message("false")]
    prosody_writes(src, items)
    out = check_all_ways(tmp_path, src, oracle=oracle, prosody_fails=True)
    assert (out.result.dropped, out.result.kept) == (1, 6)
    assert out.result.read_fully == 5


@pytest.mark.parametrize("version", VERSIONS)
def test_archives_of_every_prosody_version(oracle, tmp_path, version):
    """The corpus' archives, as Prosody 0.9 to 13 wrote them, all placed from bytes."""
    src = tmp_path / "src"
    shutil.copytree(CORPUS / version / "example%2ecom" / STORE, src / "example%2ecom" / STORE)
    path = list_path(src)
    whens = [i["when"] for i in iter_list(path.read_bytes())]
    assert len(whens) == 4
    out = check_all_ways(tmp_path, src, cutoff=sorted(whens)[1], oracle=oracle)
    assert (out.result.dropped, out.result.read_fully) == (2, 0)


# ---------------------------------------------------------------------------
# Layouts that Prosody 0.11+ does not write, by hand


def hand_made(tmp_path: Path, raw: bytes) -> Path:
    src = tmp_path / "src"
    place(src, raw)
    return src


# name: (list, (dropped, kept), items read by the full reader, whole list read so)
LAYOUTS = {
    # the trap for a plain text search: the nested line is indented as the
    # top level would be, and the item's own "when" is new
    "misindented nested when": (b'item({\n\t["attr"] = {\n\t["when"] = 1;\n\t};\n'
                                b'\t["when"] = 1800000000;\n});\n', (0, 1), 1, False),
    "misindented only when": (b'item({\n\t["attr"] = {\n\t["when"] = 1;\n\t};\n});\n',
                              (0, 1), 1, False),
    "several items per line": (b'item({when = 1}); item({when = 1800000000});\n'
                               b'item({when = 2});item({when = 3})\n', (3, 1), 4, False),
    "identifier keys, spaces": (b'item( { when = 1, x = "a" } )\nitem {when=1800000000}\n',
                                (1, 1), 2, False),
    "long string with a when line": (b'item({\n\t[1] = [[\n\t["when"] = 1800000000;\n]];\n'
                                     b'\t["when"] = 1;\n});\n', (1, 0), 1, False),
    "escaped key spelling": (b'item({\n\t["wh\\101n"] = 1800000000;\n});\n'
                             b'item({\n\t["when"] = 5;\n\t["wh\\101n"] = 1800000000;\n});\n',
                             (0, 2), 2, False),
    "repeated key": (b'item({\n\t["when"] = 1;\n\t["when"] = 1800000000;\n});\n',
                     (0, 1), 1, False),
    "0.9 line break in a string": (b'item({\n\t[1] = "a\\\n\t[\\"when\\"] = 1800000000;";\n'
                                   b'\t["when"] = 1;\n});\n', (1, 0), 0, False),
    "comments and blank lines": (b'-- archive\nitem({\n\t["when"] = 1;\n});\n\n'
                                 b'item({\n\t["when"] = 1800000000;\n}); -- new\n',
                                 (1, 1), 2, True),
    "item(nil) between": (b'item({\n\t["when"] = 1;\n});\nitem(nil);\n'
                          b'item({\n\t["when"] = 1800000000;\n});\n', (1, 1), 2, True),
    "no final line break": (b'item({\n\t["when"] = 1;\n});\n'
                            b'item({\n\t["when"] = 1800000000;\n})', (1, 1), 1, False),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_other_layouts(oracle, tmp_path, name):
    raw, (dropped, kept), read_fully, whole_list = LAYOUTS[name]
    src = hand_made(tmp_path, raw)
    out = check_all_ways(tmp_path, src, oracle=oracle, whole_list=whole_list,
                         prosody_fails=name in ("misindented only when",))
    assert (out.result.dropped, out.result.kept) == (dropped, kept)
    assert out.result.read_fully == read_fully


def test_crlf_line_ends(oracle, tmp_path):
    """A list whose line ends became CRLF: every item read in full, same result."""
    src = tmp_path / "src"
    raw = prosody_writes(src, [message(str(1700000000 + 50 * i)) for i in range(6)])
    place(src, raw.replace(b"\n", b"\r\n"))
    out = check_all_ways(tmp_path, src, oracle=oracle)
    assert (out.result.dropped, out.result.kept, out.result.read_fully) == (3, 3, 6)


def test_prosody_layout_pattern_is_strict():
    """PROSODY_ITEM takes Prosody's output only: a wrong indent, an unbalanced
    brace, a bad escape or a stray token fails it (the full reader decides)."""
    good = (b'item({\n\t{\n\t\t"a\\195\\169\\n\\\\";\n\t\t["attr"] = {};\n\t};\n'
            b'\t["when"] = 1.5;\n\t[2] = true;\n});\n')
    assert PROSODY_ITEM.fullmatch(good)
    for bad in [good.replace(b'\t\t"a', b'\t"a'),  # indent not its depth
                good.replace(b'\t};\n\t["when"]', b'\t["when"]'),  # a table left open
                good.replace(b"\\195", b"\\256"), good.replace(b"\\n", b"\\q"),
                good.replace(b"1.5", b"1.5 1"), good.replace(b"1.5", b"0x10"),
                good.replace(b"1.5;", b"1.5"), good.replace(b"});\n", b"})\n"),
                good.replace(b'\\n', b'\n'), good.replace(b"true", b"nil")]:
        assert bad != good and not PROSODY_ITEM.fullmatch(bad), bad


# ---------------------------------------------------------------------------
# The index: used when it fits, never trusted blindly


def prosody_archive(tmp_path: Path, n: int = 10) -> tuple[Path, bytes]:
    """``n`` messages 20 s apart written by Prosody 0.12 (no .lidx); 6 are not after CUTOFF."""
    src = tmp_path / "src"
    raw = prosody_writes(src, [message(str(1700000000 + 20 * i)) for i in range(n)])
    return src, raw


def test_with_a_valid_index(oracle, tmp_path):
    src, _ = prosody_archive(tmp_path)
    assert DataManager(src).list_reindex(USER, HOST, STORE) is True
    out = check_all_ways(tmp_path, src, oracle=oracle)
    assert (out.result.dropped, out.result.read_fully) == (6, 0)


@pytest.mark.parametrize("damage", ["stale", "garbage", "wrong magic", "shifted", "merged",
                                    "empty"])
def test_index_that_does_not_fit(oracle, tmp_path, damage):
    src, raw = prosody_archive(tmp_path)
    path = list_path(src)
    ends = list(lidx.scan_offsets(raw))
    index = path.with_suffix(".lidx")
    if damage == "stale":  # indexed, then appended to by a writer that keeps no index
        index.write_bytes(lidx.encode_index(ends))
        prosody_writes(src, [message("1700000500")])
    elif damage == "garbage":
        index.write_bytes(b"\x00garbage" * 5)
    elif damage == "wrong magic":
        index.write_bytes(b"\x01" + lidx.encode_index(ends)[1:])
    elif damage == "shifted":  # rising, ends at the size, but not at item boundaries
        index.write_bytes(lidx.encode_index([e - 7 for e in ends[:-1]] + [ends[-1]]))
    elif damage == "merged":  # two items per entry: boundaries, but not all of them
        index.write_bytes(lidx.encode_index(ends[1::2]))
    else:
        index.write_bytes(b"")
    out = check_all_ways(tmp_path, src, oracle=oracle)
    assert out.result.dropped == 6


# ---------------------------------------------------------------------------
# Damaged lists: as before, the same error and nothing changed


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("damage", ["torn tail", "bad value", "bad escape in string",
                                    "unbalanced"])
def test_damaged_list_same_error_nothing_changed(tmp_path, damage, indexed):
    src, raw = prosody_archive(tmp_path)
    at = raw.index(b"item(", len(raw) // 2)
    damaged = {
        "torn tail": raw + b'item({\n\t["when"] = 18000',
        "bad value": raw[:at] + raw[at:].replace(b'"chat"', b'"chat" "x"', 1),
        "bad escape in string": raw[:at] + raw[at:].replace(b'"hi"', b'"h\\qi"', 1),
        "unbalanced": raw[:at] + raw[at:].replace(b"\t};\n", b"", 1),
    }[damage]
    errors = []
    for full_reader in (False, True):
        data = tmp_path / f"run-{full_reader}"
        path = place(data, damaged)
        names = [path.name]
        if indexed:  # an index that fits the damaged list, as a reindex leaves it
            path.with_suffix(".lidx").write_bytes(lidx.encode_index(lidx.scan_offsets(damaged)))
            names.insert(0, path.with_suffix(".lidx").name)
        index_before = path.with_suffix(".lidx").read_bytes() if indexed else None
        with pytest.raises(CorruptFileError) as info:
            expire_list(DataManager(data), USER, HOST, STORE, CUTOFF, full_reader=full_reader)
        errors.append(str(info.value).replace(str(data), "DATA"))
        assert path.read_bytes() == damaged
        if indexed:
            assert path.with_suffix(".lidx").read_bytes() == index_before
        assert sorted(os.listdir(path.parent)) == names  # no temporary file left
    assert errors[0] == errors[1]


def test_dry_run_changes_nothing(tmp_path):
    src, raw = prosody_archive(tmp_path)
    dm = DataManager(src)
    res = expire_list(dm, USER, HOST, STORE, CUTOFF, dry_run=True)
    assert (res.dropped, res.kept, res.read_fully) == (6, 4, 0)
    assert list_path(src).read_bytes() == raw and not list_path(src).with_suffix(".lidx").exists()
    assert expire_list(dm, "nobody", HOST, STORE, CUTOFF) is None


def test_windows_and_items_larger_than_one(tmp_path, monkeypatch):
    """The list read in windows much smaller than its items (and not at their
    boundaries) gives what one window gives."""
    import prosody_store.archive as archive
    src = tmp_path / "src"
    big = '"' + "x" * 5000 + '"'
    raw = prosody_writes(src, [message(str(1700000000 + 20 * i), body=big if i % 3 else '"s"')
                               for i in range(30)])
    outcomes = []
    for window in (1 << 20, 1000, 4099):
        monkeypatch.setattr(archive, "_WINDOW", window)
        for with_index in (False, True):
            data = tmp_path / f"w{window}-{with_index}"
            shutil.copytree(src, data)
            if with_index:
                DataManager(data).list_reindex(USER, HOST, STORE)
            outcomes.append(Outcome(data, expire_list(DataManager(data), USER, HOST, STORE,
                                                      CUTOFF)))
    assert {(o.bytes, o.index, o.result.read_fully) for o in outcomes} == \
        {(outcomes[0].bytes, outcomes[0].index, 0)}
    assert raw.endswith(outcomes[0].bytes) and outcomes[0].result.dropped == 6


def test_without_index_writing(tmp_path):
    """``write_index=False``: the list is rewritten, the old index removed, none written."""
    src, raw = prosody_archive(tmp_path)
    dm = DataManager(src, write_index=False)
    assert DataManager(src).list_reindex(USER, HOST, STORE) is True
    res = expire_list(dm, USER, HOST, STORE, CUTOFF)
    assert (res.dropped, res.kept, res.read_fully) == (6, 4, 0)
    assert raw.endswith(list_path(src).read_bytes())
    assert not list_path(src).with_suffix(".lidx").exists()


def test_cli_archive_expire_places_items_from_bytes(oracle, tmp_path):
    """``prosody-store archive expire`` on a Prosody-written archive with its index."""
    from tests.test_cli import run
    src, raw = prosody_archive(tmp_path, n=30)
    DataManager(src).list_reindex(USER, HOST, STORE)
    proc = run(src, "archive", "expire", "--older-than", "100", "--now", str(CUTOFF + 100),
               "--json")
    report = json.loads(proc.stdout)
    assert report["dropped"] == 6 and report["lists"][0]["kept"] == 24
    kept = list_path(src).read_bytes()
    assert raw.endswith(kept) and len(list(iter_list(kept))) == 24
    assert DataManager(src).list_index_problem(USER, HOST, STORE) is None
    got = prosody_reads(oracle, src, HOST, USER, STORE, "list")
    assert [canon_tagged(i) for i in got["list"]] == [canon(i) for i in iter_list(kept)]


# ---------------------------------------------------------------------------
# The compiled placing step (_creader.item_when) against the Python path
#
# item_when must give what the Python path reads from an item (PROSODY_ITEM,
# then the one top-level "when" line by _TOP_WHEN, by _when_value), or
# decline (None).  Checked on every corpus list, on items generated by
# hypothesis and written by our serializer (Prosody's layout, byte for
# byte), and on mutations of both.  Here it must also never decline where the
# Python path reads a number (only numerals of 64 characters or more are
# declined), so that a decline cannot hide a difference.
# PROSODY_STORE_FUZZ_SCALE (default 1) multiplies the number of cases.

_CREADER = load("_creader")
ITEM_WHEN = _CREADER.item_when if _CREADER is not None else None
needs_c = pytest.mark.skipif(ITEM_WHEN is None and not IN_CI,
                             reason="prosody_store._creader is not built")


def python_path_when(buf: bytes, start: int, end: int, limit: int):
    """What the Python path of ``_Expiry._decide`` reads from the item
    ``buf[start:end]`` (the window ending at ``limit``): its one top-level
    ``when`` if PROSODY_ITEM matches, else None (the full reader decides)."""
    if PROSODY_ITEM.fullmatch(buf, start, end) is None:
        return None
    lines = [m for m in archive_module._TOP_WHEN.finditer(buf, start, limit) if m.start() < end]
    if len(lines) != 1 or lines[0].group(1) is None:
        return None
    return archive_module._when_value(lines[0].group(1))


def same_number(a, b) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def check_item_when(buf: bytes, start: int, end: int, limit: int) -> object:
    """item_when on one item, as both ways of cutting call it, against the
    Python path; the number (or None)."""
    ours = ITEM_WHEN(buf, start, end, limit)
    ref = python_path_when(buf, start, end, limit)
    if ours is None:
        numeral = re.search(rb'\n\t\["when"\] = (-?[0-9][0-9.eE+-]*);', buf[start:end])
        assert ref is None or (numeral is not None and len(numeral.group(1)) >= 64), \
            (buf[start:end], ref)
    else:
        assert same_number(ours, ref), (buf[start:end], ours, ref)
    # without an index: the end is the first "\n});\n", and the pattern's match agrees
    found = buf.find(archive_module._ITEM_END, start, limit)
    if found >= 0:
        scan_end = found + len(archive_module._ITEM_END)
        scanned = ITEM_WHEN(buf, start, scan_end, limit)
        if scanned is not None:
            m = PROSODY_ITEM.match(buf, start, limit)
            assert m is not None and m.end() == scan_end, buf[start:limit]
            assert same_number(scanned, python_path_when(buf, start, scan_end, limit))
    return ours


def check_list_items(raw: bytes) -> list:
    """check_item_when on every item of a list (cut as the bytes show), each
    with the rest of the list after it, and alone."""
    got = []
    start = 0
    for end in lidx.scan_offsets(raw):
        got.append(check_item_when(raw, start, end, len(raw)))
        check_item_when(raw, start, end, end)
        start = end
    return got


MUTATION_INSERTS = [b'"', b'\\', b'{', b'}', b'\t', b'\n', b'\r', b';', b'\\\n', b'\\"', b'\\25',
                    b'\\256', b'\\1', b'\\0001', b'{\n', b'};\n', b'\t};\n', b']', b'[',
                    b'["when"] = 1;\n', b'\t["when"] = 5;\n', b'\n\t["when"] = 7;',
                    b'\t\t["when"] = 9;\n', b'\t["when"] = "1";\n', b'\t["when"] = 1.5e3;\n',
                    b'\t["when"] = -0;\n', b'\t["when"] = 99999999999999999999;\n',
                    b'"\\n\\t[\\"when\\"] = 3;\\n"', b'item({\n', b'});\n', b'x', b'\xff']


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """``raw`` with one to three random changes: a bit flipped, a cut, a byte
    removed, a line repeated or one of MUTATION_INSERTS put in."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(raw) + 1)
        kind = rng.randrange(6)
        if kind == 0 and raw:
            at = min(at, len(raw) - 1)
            raw = raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1:]
        elif kind == 1:
            raw = raw[:at]
        elif kind == 2:
            raw = raw[:at] + raw[at + 1:]
        elif kind == 3:
            line_start = raw.rfind(b"\n", 0, at) + 1
            line_end = raw.find(b"\n", at) + 1 or len(raw)
            raw = raw[:line_end] + raw[line_start:line_end] + raw[line_end:]
        else:
            raw = raw[:at] + rng.choice(MUTATION_INSERTS) + raw[at:]
    return raw


def corpus_lists() -> list[Path]:
    return sorted(CORPUS.rglob("*.list"))


@pytest.mark.speedups
@needs_c
def test_item_when_on_every_corpus_list():
    """Every item of every list Prosody 0.9 to 13 wrote; the archives' all placed."""
    assert corpus_lists()
    for path in corpus_lists():
        got = check_list_items(path.read_bytes())
        if path.parent.name == STORE:
            assert got and all(w is not None for w in got), path


@pytest.mark.speedups
@needs_c
def test_item_when_on_mutated_corpus_items():
    rng = random.Random(20240601)
    items = []
    for path in corpus_lists():
        raw = path.read_bytes()
        start = 0
        for end in lidx.scan_offsets(raw):
            items.append(raw[start:end])
            start = end
    placed = 0
    for _ in range(scaled(4000)):
        mutated = mutate(rng.choice(items), rng)
        after = rng.choice(items) if rng.random() < 0.5 else b""
        buf = mutated + after
        placed += check_item_when(buf, 0, len(mutated), len(buf)) is not None
    assert placed  # some mutations keep the item placeable (a number changed, say)


_whens = st.one_of(ints, floats, st.sampled_from([0, -0.0, 1700000000, 1700000000.5, 2.0 ** 63,
                                                  -(2 ** 63), 1e300, 1e30]),
                   st.booleans(), texts, st.just({}), st.just([1]))
_trap_strings = st.sampled_from(['\n\t["when"] = 1;\n', '"when"', '["when"] = ', 'a\\"b',
                                 '\\\n', '});\n', '\t["when"] = 2;', '\n});\n\t["when"] = 3;'])


# Keys Prosody writes without escapes (mostly), so that most items stay placeable.
_plain_keys = st.one_of(st.from_regex(r"[a-z_ ]{0,8}", fullmatch=True), st.integers(-5, 50))

# Values in the layout Prosody writes plainly (no inf or nan, no odd keys).
_plain_values = st.recursive(
    st.one_of(st.booleans(), ints, floats.filter(math.isfinite), texts),
    lambda children: st.one_of(st.lists(children, min_size=1, max_size=4),
                               st.dictionaries(_plain_keys, children, max_size=4)),
    max_leaves=12)


@st.composite
def archive_items(draw):
    """An archive item as mod_mam stores one, with traps: ``when`` in nested
    tables and in strings, missing, or not a number."""
    item = {"key": draw(texts), "with": draw(texts)}
    if draw(st.integers(0, 5)):
        item["when"] = draw(_whens)
    for _ in range(draw(st.integers(0, 3))):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            item[draw(_plain_keys)] = {"when": draw(_whens), "x": draw(_plain_values)}
        elif choice == 1:
            item[draw(st.sampled_from(["body", "when ", "When", 1, 2]))] = draw(_trap_strings)
        elif choice == 2:
            item[draw(_plain_keys)] = [draw(_plain_values), {"when": draw(_whens)}]
        elif choice == 3:
            item[draw(_plain_keys)] = draw(_plain_values)
        else:
            item[draw(_plain_keys)] = draw(inner_values)
    return dict(draw(st.permutations(list(item.items()))))


@pytest.mark.speedups
@needs_c
@settings(max_examples=scaled(300), deadline=None)
@given(items=st.lists(archive_items(), min_size=1, max_size=3), seed=st.integers(0, 2 ** 32))
def test_item_when_on_generated_and_mutated_items(items, seed):
    raw = b"".join(dump_item(i) for i in items)
    got = check_list_items(raw)
    for item, when in zip(items, got):  # what was placed is the item's own when
        own = item.get("when")
        if when is not None:
            assert type(own) in (int, float) and math.isfinite(own) and when == own, (item, when)
    rng = random.Random(seed)
    for _ in range(5):
        buf = mutate(raw, rng)
        ends = [0] + list(lidx.scan_offsets(buf)) if buf else [0]
        for start, end in zip(ends, ends[1:]):
            check_item_when(buf, start, end, len(buf))


@pytest.mark.speedups
@needs_c
@pytest.mark.parametrize("raw", [
    b'item({\n\t["when"] = 1700000000;\n});\n',
    b'item({\n\t["when"] = -9223372036854775808;\n});\n',
    b'item({\n\t["when"] = 9223372036854775808;\n});\n',
    b'item({\n\t["when"] = 1e5;\n});\n',
    b'item({\n\t["when"] = 0.5E-3;\n});\n',
    b'item({\n\t["when"] = -0.0;\n});\n',
    b'item({\n\t["when"] = ' + b"1" * 70 + b';\n});\n',
    b'item({\n\t["when"] = 1' + b"0" * 400 + b'.5;\n});\n',
    b'item({\n\t["when"] = 01;\n});\n',
    b'item({\n\t["when"] = 1.;\n});\n',
    b'item({\n\t["when"] = 1e;\n});\n',
    b'item({\n\t["when"] = (1/0);\n});\n',
    b'item({\n\t["when"] = 1;\n\t["when"] = 2;\n});\n',
    b'item({\n\t["a"] = {\n\t\t["when"] = 1;\n\t};\n});\n',
    b'item({\n\t["a"] = {\n\t["when"] = 1;\n\t};\n\t["when"] = 2;\n});\n',
    b'item({\n\t[1] = "x\\\n\t[\\"when\\"] = 5;";\n\t["when"] = 2;\n});\n',
    b'item({\n\t["when"] = 1;\n});\n\t["when"] = 2;\n',
    b'item({\n\t["when"] = 1;\n\t["a"] = {};\n\t["b"] = true;\n\t[-3] = false;\n});\n',
    b'item({});\n',
])
def test_item_when_edges(raw):
    """Numbers at and past the 64-bit edges, numerals Prosody does not write,
    repeated and nested ``when``, a ``when`` line in a 0.9 string, one after
    the item."""
    end = raw.index(b"});\n") + 4 if raw != b'item({});\n' else len(raw)
    check_item_when(raw, 0, end, len(raw))


@pytest.mark.speedups
@needs_c
def test_item_when_bounds():
    raw = bytearray(b'item({\n\t["when"] = 1;\n});\n')
    assert ITEM_WHEN(raw, 0, len(raw), len(raw)) == 1
    for bounds in [(-1, 5, 5), (3, 2, 5), (0, 5, 4), (0, len(raw), len(raw) + 1)]:
        with pytest.raises(ValueError):
            ITEM_WHEN(raw, *bounds)
    for cut in range(len(raw)):
        assert ITEM_WHEN(raw, 0, cut, cut) is None  # every truncation declined
        assert ITEM_WHEN(bytes(raw[:cut]), 0, cut, cut) is None


@pytest.mark.speedups
@needs_c
def test_expire_with_and_without_item_when_agree(tmp_path, monkeypatch):
    """Whole lists (mutated corpus archives, with and without their index)
    expired with the compiled step and without it: the same result, bytes and index."""
    rng = random.Random(7)
    archives = [p.read_bytes() for p in corpus_lists() if p.parent.name == STORE]
    for n in range(scaled(40)):
        raw = b"".join(rng.choice(archives) for _ in range(3))
        whens = sorted(i["when"] for i in iter_list(raw))
        cutoff = whens[rng.randrange(len(whens))]
        if n % 4:
            raw = mutate(raw, rng)
        outcomes = []
        for c_step in (ITEM_WHEN, None):
            monkeypatch.setattr(archive_module, "_item_when", c_step)
            for indexed in (False, True):
                data = tmp_path / f"{n}-{c_step is None}-{indexed}"
                place(data, raw)
                if indexed:
                    DataManager(data).list_reindex(USER, HOST, STORE)
                try:
                    result = expire_list(DataManager(data, durable=False), USER, HOST, STORE,
                                         cutoff)
                except CorruptFileError as e:
                    outcomes.append((indexed, str(e).replace(str(data), "DATA")))
                    continue
                after = Outcome(data, None)
                outcomes.append((indexed, result.dropped, result.kept, result.read_fully,
                                 result.full_reader, after.bytes, after.index))
        assert outcomes[:2] == outcomes[2:], raw
