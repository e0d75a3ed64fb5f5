"""Every layout of a ``.list`` file, read as Prosody 0.12.3's ``list_load`` reads it.

A ``.list`` file is a Lua chunk that Prosody's ``util.datamanager.list_load``
runs with one global, ``item``, which appends its first argument to the list.
Each test writes the file into a real data directory and asks the ``oracle``
(``lua5.4`` running Prosody's own datamanager, see ``tests/oracle.py``) what
``list_load`` returns, then compares:

* where Prosody reads items, ``iter_list`` (on bytes and on a stream handed
  out a few bytes at a time) reads the same ones, or refuses with a
  ``LuaSyntaxError`` for Lua it does not run (``item(1+1)``), whose
  ``lua_refuses`` is then False;
* where Prosody refuses, we refuse too, with a position;
* the offsets of ``iter_list_with_offsets`` and ``lidx.scan_offsets`` cut the
  file into pieces that each hold exactly one item (read alone, by us and by
  Lua, as Prosody 13 reads them through its ``.lidx``);
* ``list_recover`` and ``verify --repair`` keep every item Prosody reads.

Layouts are generated (items written with ``dump_item``, then laid out again:
several on a line, indented, other call forms, extra arguments, ``item(nil)``,
comments, ``;`` or not, CRLF...) and also listed one by one below.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import lidx
from prosody_store import serialization as ser
from prosody_store.datamanager import DataManager
from prosody_store.serialization import (
    LuaSyntaxError,
    dump_item,
    dumps,
    iter_list,
    iter_list_with_offsets,
)
from tests.oracle import OracleError
from tests.tagged import canon, canon_tagged

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent
USER, HOST, STORE = "u", "example.com", "s"
REFUSED = "refused"  # Prosody's list_load fails ("Error reading storage")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------
# Prosody's side and ours


def _request(root: str) -> str:
    return json.dumps({"path": root, "user": USER.encode().hex(), "host": HOST.encode().hex(),
                       "store": STORE.encode().hex()})


def write_list(root: str, src: bytes) -> Path:
    path = Path(DataManager(root).getpath(USER, HOST, STORE, "list"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(src)
    return path


def prosody_list_load(oracle, src: bytes) -> list[tuple] | str:
    """Canonical items Prosody 0.12.3's ``list_load`` returns for a file holding ``src``,
    or :data:`REFUSED`.  (A value the oracle cannot pass back, a function, raises.)"""
    root = tempfile.mkdtemp()
    try:
        write_list(root, src)
        try:
            answer = oracle.call("dm_oracle.list_load", _request(root))
        except OracleError as err:
            if "Error reading storage" in str(err):
                return REFUSED
            raise
    finally:
        shutil.rmtree(root)
    return [canon_tagged(t) for t in json.loads(answer)]


def lua_load_piece(oracle, piece: bytes) -> list[tuple]:
    """The items Lua reads from one piece of a list on its own (as Prosody 13 reads an
    index entry)."""
    return [canon_tagged(t) for t in json.loads(oracle.call("codec_oracle.load_list", piece))]


class Trickle(io.RawIOBase):
    """A binary stream handing out at most ``step`` bytes per read, whatever is asked."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def our_items(src: bytes) -> list[tuple]:
    """Canonical items of ``iter_list``, checked to be the same from a trickling stream."""
    items = [canon(i) for i in iter_list(src)]
    for step in (1, 7, 4096):
        assert [canon(i) for i in iter_list(Trickle(src, step))] == items
    return items


def our_error(src: bytes) -> LuaSyntaxError:
    """The error ``iter_list`` raises, the same from bytes and from a stream."""
    with pytest.raises(LuaSyntaxError) as info:
        list(iter_list(src))
    err = info.value
    assert err.lineno >= 1 and err.colno >= 1 and 0 <= err.pos <= len(src)
    assert err.lineno == src.count(b"\n", 0, err.pos) + 1
    for step in (1, 7):
        with pytest.raises(LuaSyntaxError) as again:
            list(iter_list(Trickle(src, step)))
        assert (again.value.lineno, again.value.colno, again.value.msg) == (
            err.lineno, err.colno, err.msg)
    return err


def check_pieces(oracle, src: bytes, items: list[tuple]) -> None:
    """The offsets cut ``src`` into one piece per item, each read alone to that item."""
    ends = [end for end, _ in iter_list_with_offsets(src)]
    assert len(ends) == len(items)
    assert [end for end, _ in iter_list_with_offsets(Trickle(src, 5))] == ends
    assert list(lidx.scan_offsets(src)) == ends
    if not items:
        return
    assert ends[-1] == len(src) and ends == sorted(set(ends))
    for start, end, item in zip([0, *ends], ends, items):
        piece = src[start:end]
        assert [canon(i) for i in iter_list(piece)] == [item], piece
        assert lua_load_piece(oracle, piece) == [item], piece


def check_recovery_keeps_everything(src: bytes, items: list[tuple]) -> None:
    """``list_recover(repair=True)`` on a list that reads finds no damage and changes nothing."""
    root = tempfile.mkdtemp()
    try:
        path = write_list(root, src)
        rec = DataManager(root, durable=False).list_recover(USER, HOST, STORE, repair=True)
        assert rec is not None and rec.ok and not rec.repaired
        assert [canon(i) for i in rec.items] == items
        assert path.read_bytes() == src
    finally:
        shutil.rmtree(root)


def check_same_as_prosody(oracle, src: bytes) -> list[tuple] | str:
    """Prosody's verdict on ``src``, and ours checked against it; returns Prosody's."""
    lua = prosody_list_load(oracle, src)
    if lua == REFUSED:
        our_error(src)  # never accept what Prosody refuses
        return lua
    try:
        ours = our_items(src)
    except LuaSyntaxError:
        err = our_error(src)
        # Lua that Prosody runs and we do not: never taken for damage Lua refuses.
        assert not err.lua_refuses, (src, err)
        assert ser.could_be_lua(src), src
        return lua
    assert ours == lua, src
    check_pieces(oracle, src, ours)
    check_recovery_keeps_everything(src, ours)
    return lua


# ---------------------------------------------------------------------------
# Generated layouts

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.booleans(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(-100, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    _texts,
    st.binary(max_size=8),
)
_keys = st.one_of(_texts, st.integers(-20, 20))
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)

# What may stand between two statements.  Each ends any comment it opens.
SEPARATORS = [b";\n", b"\n", b";", b" ", b"", b"\t", b";;", b" ; ", b"\r\n", b";\r\n",
              b"\n\n", b"\n-- a comment; item(98)\n", b" --[[ c ]] ", b"--[==[\nitem(99)\n]==]\n",
              b"\n;\n", b"\f", b"\v", b"\r"]
LEADING = [b"", b"-- head\n", b"\n\n", b";", b"--[[\nitem(0)\n]]", b" \t"]
TRAILING = [b"", b"\n", b"-- end", b";", b"\n\n", b" --[[ tail ]]"]
INDENTS = [b"", b"\t", b"  ", b"\t\t"]
NIL_STATEMENTS = [b"item(nil)", b"item()", b"item( nil )", b"item(nil, 1)", b"item\n(nil)"]


def _raw_string(v) -> bytes | None:
    """``v`` as the bytes of a long bracket string, when Lua would read them back as ``v``."""
    if not isinstance(v, (str, bytes)):
        return None
    raw = v.encode() if isinstance(v, str) else v
    if b"\r" in raw or raw.startswith(b"\n") or b"]" in raw:
        return None  # Lua would change line ends, drop a first newline, or end it early
    return raw


@st.composite
def statements(draw, v) -> bytes:
    """One ``item`` call that passes ``v``, in one of the forms Lua takes."""
    text = dumps(v).encode()
    forms = [b"item(" + text + b")", b"item (" + text + b")", b"item\n(" + text + b")",
             b"item--[[c]](" + text + b")", b"item -- c\n(" + text + b")",
             b"item( " + text + b" )", b"item(--[[x]]" + text + b"\n)"]
    extra = dumps(draw(values)).encode()
    forms += [b"item(" + text + b", " + extra + b")", b"item(" + text + b", nil)",
              b"item(" + text + b",\n" + extra + b", " + extra + b")"]
    if text.startswith(b"{"):
        forms += [b"item" + text, b"item " + text]
    if text.startswith(b'"'):
        forms += [b"item" + text, b"item'" + text[1:-1] + b"'"]
    raw = _raw_string(v)
    if raw is not None:
        forms += [b"item[==[" + raw + b"]==]", b"item [[" + raw + b"]]"]
    return draw(st.sampled_from(forms))


@st.composite
def layouts(draw) -> tuple[list, bytes]:
    """Items, and a list file holding them in some layout Lua takes."""
    items = draw(st.lists(values, max_size=6))
    parts = [draw(st.sampled_from(LEADING))]
    for v in items:
        if draw(st.integers(0, 5)) == 0:
            parts += [draw(st.sampled_from(NIL_STATEMENTS)), draw(st.sampled_from(SEPARATORS))]
        parts += [draw(st.sampled_from(INDENTS)), draw(statements(v)),
                  draw(st.sampled_from(SEPARATORS))]
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(NIL_STATEMENTS)))
    parts.append(draw(st.sampled_from(TRAILING)))
    return items, b"".join(parts)


@SETTINGS
@given(layout=layouts())
def test_generated_layout_reads_as_prosody_reads_it(oracle, layout):
    items, src = layout
    lua = prosody_list_load(oracle, src)
    # Both ways: Prosody reads the items written with dump_item, whatever the
    # layout, and so do we, with the same offsets and pieces.
    plain = b"".join(dump_item(v) for v in items)
    assert lua == prosody_list_load(oracle, plain) == our_items(plain)
    assert check_same_as_prosody(oracle, src) == lua


@SETTINGS
@given(items=st.lists(values, min_size=1, max_size=5), joiner=st.sampled_from(
    [b" ", b"", b";", b"; ", b"\n\t", b"\n  ", b";\n\t", b" --[[c]] ", b"\n-- c\n\t"]))
def test_items_joined_on_lines_or_indented(oracle, items, joiner):
    """The issue's layouts: Prosody's own statements joined on one line or indented."""
    src = joiner.join(dump_item(v).rstrip(b"\n") for v in items) + b"\n"
    lua = check_same_as_prosody(oracle, src)
    assert lua == our_items(b"".join(dump_item(v) for v in items))


# Text put into a valid layout to damage it, or to make it code that Prosody runs.
MUTATIONS = [b"(2)", b"{}", b'"x"', b"+1", b")", b"(", b",", b"item(", b"x", b"= 1", b"item",
             b"..", b"#", b"@", b"\0", b"]]", b"--[[", b"[[", b"'", b"return", b"nil", b"1",
             b";", b"}", b"{", b"local x", b"::l::", b"\\", b"item.x", b"item[1]", b":f()",
             b"\n(", b"-", b"[", b"]", b"0x", b"1e", b"\\300", b"\n", b"--", b"item(1,)", b"\xff"]


@SETTINGS
@given(layout=layouts(), mutation=st.sampled_from(MUTATIONS), where=st.integers(0, 10 ** 6))
def test_damaged_layout_is_refused_where_prosody_refuses_it(oracle, layout, mutation, where):
    """Whatever the text, we read what Prosody reads or refuse; never accept what it refuses,
    never read another value, and never call Lua's refusal what Prosody may run."""
    _, src = layout
    where %= len(src) + 1
    src = src[:where] + mutation + src[where:]
    try:
        lua = prosody_list_load(oracle, src)
    except OracleError:  # Prosody read a function or the like: we must refuse
        err = our_error(src)
        assert not err.lua_refuses
        return
    if lua == REFUSED:
        our_error(src)
        return
    check_same_as_prosody(oracle, src)


@SETTINGS
@given(layout=layouts(), mutation=st.sampled_from(MUTATIONS), where=st.integers(0, 10 ** 6))
def test_what_we_say_lua_refuses_prosody_refuses(oracle, layout, mutation, where):
    """``lua_refuses`` and ``could_be_lua`` are only ever sure when Prosody refuses."""
    _, src = layout
    where %= len(src) + 1
    src = src[:where] + mutation + src[where:]
    try:
        list(iter_list(src))
        refused_here = False
    except LuaSyntaxError as err:
        refused_here = err.lua_refuses
    if refused_here or not ser.could_be_lua(src):
        try:
            assert prosody_list_load(oracle, src) == REFUSED, src
        except OracleError:
            pytest.fail(f"Prosody read {src!r}")


# ---------------------------------------------------------------------------
# One by one: what Prosody 0.12.3's list_load does with each layout


CODE = "code"  # Prosody runs it and reads items; we refuse (we run nothing)

LAYOUTS = [
    # name, file, Prosody's items (as Python values) / REFUSED / CODE
    ("two-on-a-line", b"item(1); item(2);\n", [1, 2]),
    ("two-on-a-line-no-space", b"item(1);item(2);\n", [1, 2]),
    ("no-separator", b"item(1)item(2)", [1, 2]),
    ("indented", b"  item(1);\n\titem(2);\n", [1, 2]),
    ("indented-tables", b'item({\n\t["a"] = 1;\n});\n\titem({\n\t\t["b"] = 2;\n\t});\n',
     [{"a": 1}, {"b": 2}]),
    ("extra-argument", b"item(1, 2);\n", [1]),
    ("extra-table-arguments", b"item({1}, {2, {3}}, nil);\n", [[1]]),
    ("nil-first-argument", b"item(nil, 2);\n", []),
    ("no-argument", b"item()\n", []),
    ("nil", b"item(nil)\n", []),
    ("nil-between", b"item(1) item(nil) item(2)", [1, 2]),
    ("space-before-paren", b"item (1)\n", [1]),
    ("newline-before-paren", b"item\n(1)\n", [1]),
    ("tab-newline-before-paren", b"item\t\n (1)", [1]),
    ("comment-before-paren", b"item--[[c]](1) item -- c\n(2)", [1, 2]),
    ("semicolon-own-line", b"item(1)\n;\n", [1]),
    ("leading-semicolon", b";item(1)", [1]),
    ("only-semicolons", b";;\n", []),
    ("many-semicolons", b"item(1);;;item(2)", [1, 2]),
    ("empty", b"", []),
    ("only-comment", b"-- c\n", []),
    ("comments", b"--[[ c ]]item(1)--[==[x]==]item(2)", [1, 2]),
    ("commented-out-item", b"item(1)\n-- item(2)\nitem(3)", [1, 3]),
    ("long-comment-over-item-lines", b"item(1)\n--[[\nitem(2)\n]]\nitem(3)\n", [1, 3]),
    ("comments-and-semicolons", b"item(1) ; -- x\n ; item(2) --[[y]] ; ", [1, 2]),
    ("table-call", b"item{1}", [[1]]),
    ("table-call-space", b"item {1}", [[1]]),
    ("empty-table-call", b"item{}", [{}]),
    ("string-call", b'item"x"', ["x"]),
    ("single-quote-call", b"item'x'", ["x"]),
    ("long-string-call", b"item[[x]]", ["x"]),
    ("long-string-level-call", b"item[==[x]==]", ["x"]),
    ("long-string-call-space", b"item [[x]]", ["x"]),
    ("string-calls-on-a-line", b"item 'a' item \"b\"", ["a", "b"]),
    ("long-string-holding-item-lines", b"item([[\nitem(2)\n]])", ["item(2)\n"]),
    ("crlf", b"item(1)\r\nitem(2)\r\n", [1, 2]),
    ("cr", b"item(1)\ritem(2)", [1, 2]),
    ("form-feed-vertical-tab", b"item(1)\f\vitem(2)", [1, 2]),
    ("no-final-newline", b"item(1);\nitem(2)", [1, 2]),
    ("comment-at-end-no-newline", b"item(1)--no newline", [1]),
    ("blank-lines", b"\n\n  \t item ( 1 ) ; ; \n\n\n", [1]),
    ("false", b"item(false)", [False]),
    ("parenthesized", b"item((1))", [1]),
    ("hex", b"item(0x10)", [16]),
    ("z-escape-over-lines", b'item("\\z\n  x")', ["x"]),
    # Prosody refuses these: so do we.
    ("call-on-result", b"item(1)(2)", REFUSED),
    ("call-on-result-next-line", b"item(1)\n(2)", REFUSED),
    ("table-call-on-result", b"item(1){2}", REFUSED),
    ("string-call-on-result", b'item(1)"x"', REFUSED),
    ("shebang", b"#!/usr/bin/lua\nitem(1)", REFUSED),
    ("byte-order-mark", b"\xef\xbb\xbfitem(1)", REFUSED),
    ("nul-byte", b"item(1);\0", REFUSED),
    ("trailing-comma", b"item(1,)", REFUSED),
    ("unfinished-long-comment", b"item(1) --[[ unterminated", REFUSED),
    ("two-strings", b'item("a" "b")', REFUSED),
    ("nil-key", b"item{[nil]=1}", REFUSED),
    ("nan-key", b"item{[0/0]=1}", REFUSED),
    ("unclosed-call", b"item(1) item(2", REFUSED),
    ("other-function", b"item(1)\nfoo(2)", REFUSED),
    ("field-of-result", b"item(1).x = 1", REFUSED),
    ("method-on-result", b"item(1):f()", REFUSED),
    ("index-of-result", b"item(1)[1]=2", REFUSED),
    ("field-of-item", b"item.x(1)", REFUSED),
    ("two-numbers", b"item(1 2)", REFUSED),
    ("number-statement", b"item(1)\n2", REFUSED),
    ("item-removed", b"item(1); item = nil; item(2)", REFUSED),
    ("truncated-table", b'item({\n\t["a"] = 1;\n', REFUSED),
    ("truncated-then-appended", b'item({\n\t["a"] = 1;\nitem({\n\t["b"] = 2;\n});\n', REFUSED),
    # Prosody runs these and reads items; we refuse them, as code.
    ("expression", b"item(1+1)", CODE),
    ("variable-extra-argument", b"item(1, x)", CODE),
    ("variable", b"item(x)", CODE),
    ("assignment-then-item", b"x = 1 item(x)", CODE),
    ("return", b"item(1) return", CODE),
    ("return-call", b"item(1) return item(2)", CODE),
    ("length", b'item(#"abc")', CODE),
    ("negated-string", b'item(-"2")', CODE),
    ("vararg", b"item(...)", CODE),
    ("do-block", b"do item(1) end", CODE),
    ("label", b"item(1) ::l:: item(2)", CODE),
    ("parenthesized-function", b"(item)(1)", CODE),
    ("assignment-to-item", b"item = nil", CODE),
]


@pytest.mark.parametrize("src, expected", [(s, e) for _, s, e in LAYOUTS],
                         ids=[n for n, _, _ in LAYOUTS])
def test_layout(oracle, src, expected):
    lua = prosody_list_load(oracle, src)
    if expected == REFUSED:
        assert lua == REFUSED
        our_error(src)
    elif expected == CODE:
        assert lua != REFUSED  # Prosody runs it...
        err = our_error(src)  # ... we refuse to, and say that it may be Lua
        assert not err.lua_refuses
    else:
        assert lua == [canon(v) for v in expected]
    check_same_as_prosody(oracle, src)


@pytest.mark.parametrize("src, lineno, colno", [
    (b"item(1)\n(2)", 2, 1),
    (b"item(1,)", 1, 8),
    (b"item(1);\n  item(2 2);\n", 2, 10),
    (b"item(1); item(2); item(3", 1, 25),
    (b"item(1)\r\nitem(1+1)", 2, 7),
    (b"item(1) item.x(1)", 1, 13),
])
def test_error_positions(src, lineno, colno):
    err = our_error(src)
    assert (err.lineno, err.colno) == (lineno, colno)


def test_function_item_is_refused(oracle):
    """``item(item)`` stores a function in Prosody (which the oracle cannot hand back)."""
    with pytest.raises(OracleError, match="cannot tag a function"):
        prosody_list_load(oracle, b"item(item)")
    assert not our_error(b"item(item)").lua_refuses


# ---------------------------------------------------------------------------
# Offsets: one index entry per item


def test_offsets_of_items_on_one_line():
    src = b"item(1); item(2);\nitem(3)\titem(nil) item(4) -- end\n"
    # item(nil) yields nothing: its statement belongs to the piece of item 3
    assert list(iter_list_with_offsets(src)) == [(9, 1), (18, 2), (36, 3), (len(src), 4)]
    assert list(lidx.scan_offsets(src)) == [9, 18, 36, len(src)]


def test_offsets_of_indented_items_and_trailing_nil():
    src = b"-- head\n\titem(1);\n\titem(2);\n\titem(nil);\n"
    assert list(iter_list_with_offsets(src)) == [(19, 1), (len(src), 2)]
    assert list(lidx.scan_offsets(src)) == [19, len(src)]


def test_prosody_layout_offsets_are_prosody_13s_line_starts():
    items = [{"n": i, "body": "an item(x); item\nitem(2)"} for i in range(50)]
    src = b"".join(dump_item(v) for v in items)
    line_starts = [i + 1 for i in range(len(src)) if src[i:i + 5] == b"\nitem"]
    assert list(lidx.scan_offsets(src)) == line_starts + [len(src)]
    assert [e for e, _ in iter_list_with_offsets(src)] == line_starts + [len(src)]


@pytest.mark.parametrize("src", [
    b"item(1);\n\titem(2);\n",  # the fast path must not take an indented item for a line start
    b"item(1);\nitem(nil);\nitem(2);\n",
    b"item(1);\nitem((nil));\nitem(2);\n",
    b"item(1);\nitem( nil);\nitem(2);\n",
    b"item([[\n]]);\nitem(1);\n",
    b"item('x');\nitem(1);\n",
    b"item(1);\n-- x\nitem(2);\n",
], ids=["indented", "nil", "parenthesized-nil", "spaced-nil", "long-string", "quote", "comment"])
def test_index_agrees_with_the_reader_near_prosodys_layout(src):
    ends = [e for e, _ in iter_list_with_offsets(src)]
    assert list(lidx.scan_offsets(src)) == ends
    assert len(ends) == len(list(iter_list(src)))


def test_index_of_a_file_is_built_from_the_same_cuts(tmp_path):
    src = b"item(1); item(2);\n\titem(3);\n"
    path = tmp_path / "x.list"
    path.write_bytes(src)
    with open(path, "rb") as f:
        assert list(lidx.build_offsets(f.fileno())) == [9, 19, len(src)]


# ---------------------------------------------------------------------------
# Recovery and repair never drop an item Prosody reads


def _dm_with(tmp_path: Path, src: bytes) -> tuple[DataManager, Path]:
    path = write_list(str(tmp_path), src)
    return DataManager(tmp_path, durable=False), path


def test_recover_damaged_indented_list_keeps_the_readable_items(tmp_path):
    src = b"item(1);\n\titem(2 2);\n\titem(3); item(4);\n"
    dm, path = _dm_with(tmp_path, src)
    rec = dm.list_recover(USER, HOST, STORE)
    assert rec.items == [1, 3, 4]
    [region] = rec.damaged
    assert src[region.start:region.end] == b"\titem(2 2);\n"
    assert (region.error.lineno, region.error.colno) == (2, 9)
    assert region.error.filename == str(path) and region.error.lua_refuses
    fixed = dm.list_recover(USER, HOST, STORE, repair=True)
    assert fixed.repaired and dm.list_load(USER, HOST, STORE) == [1, 3, 4]
    assert path.read_bytes() == b"item(1);\n\titem(3); item(4);\n"


def test_recover_truncated_item_followed_by_appends(tmp_path):
    src = b'item(1);\nitem({\n\t["a"] = 1;\nitem(2);\nitem(3);\n'
    dm, path = _dm_with(tmp_path, src)
    rec = dm.list_recover(USER, HOST, STORE, repair=True)
    assert rec.repaired and rec.items == [1, 2, 3]
    assert path.read_bytes() == b"item(1);\nitem(2);\nitem(3);\n"


def test_repair_leaves_lua_code_alone(oracle, tmp_path):
    """Prosody reads [1, 2] from this; a repair must not drop the item we cannot read."""
    src = b"item(1);\nitem(1+1);\n"
    assert prosody_list_load(oracle, src) == [canon(1), canon(2)]
    dm, path = _dm_with(tmp_path, src)
    rec = dm.list_recover(USER, HOST, STORE, repair=True)
    assert rec.items == [1] and len(rec.damaged) == 1 and not rec.repaired
    assert not rec.damaged[0].error.lua_refuses
    assert path.read_bytes() == src


def test_recover_list_with_item_lines_inside_long_strings(oracle, tmp_path):
    src = b'item([[\nitem(2);\n]]);\n--[==[\nitem(3);\n]==]\nitem("x");\n'
    assert prosody_list_load(oracle, src) == [canon("item(2);\n"), canon("x")]
    dm, path = _dm_with(tmp_path, src)
    rec = dm.list_recover(USER, HOST, STORE, repair=True)
    assert rec.ok and not rec.repaired and rec.items == ["item(2);\n", "x"]
    assert path.read_bytes() == src


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PROSODY_DATA_PATH", None)
    return subprocess.run([sys.executable, "-m", "prosody_store", *args], capture_output=True,
                          cwd=ROOT, env=env, timeout=120)


# (Only layouts whose items start lines: ``verify`` reads lists through
# ``list_open``, whose check of the index entries wants each item at a line start.)
@pytest.mark.parametrize("src, expected", [
    (b"item(1, 2);\n", [1]),
    (b'item({\n\t["a"] = 1;\n}, "extra")\n-- note\nitem"two"\n\nitem{3};;\nitem(nil)\nitem(4, nil)',
     [{"a": 1}, "two", [3], 4]),
], ids=["extra-argument", "other-layouts"])
def test_verify_repair_keeps_what_prosody_reads(oracle, tmp_path, src, expected):
    dm, path = _dm_with(tmp_path, src)
    assert prosody_list_load(oracle, src) == [canon(v) for v in expected]
    proc = run_cli("verify", "--repair", "--data-path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    assert path.read_bytes() == src
    assert prosody_list_load(oracle, path.read_bytes()) == [canon(v) for v in expected]
    assert dm.list_load(USER, HOST, STORE) == expected
