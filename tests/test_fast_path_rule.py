"""Which reader runs is a fixed rule, not interpreter state.

The codec (:mod:`prosody_store.serialization`) and the JSON reader
(:mod:`prosody_store.json`) each have a fast path through the C ``json``
decoder.  It runs when ``max_depth`` is at least ``FAST_PATH_MAX_DEPTH``
(``PLAIN_MAX_DEPTH`` for JSON) and declines anything nested deeper than that;
``sys.setrecursionlimit`` changes neither results nor the path taken.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import pytest

from prosody_store import _fast_reader
from prosody_store import json as pjson
from prosody_store import serialization as ser
from prosody_store.serialization import (
    DEFAULT_MAX_DEPTH,
    LuaSyntaxError,
    dump_dat,
    dump_item,
    iter_list,
    loads,
)

# Raised and lowered "within reason": the lowest must leave room for the test
# runner's own frames plus FAST_PATH_MAX_DEPTH levels of the C decoder.
RECURSION_LIMITS = [None, 1001, 5000, 100_000, 600]


@contextlib.contextmanager
def recursion_limit(limit: int | None) -> Iterator[None]:
    old = sys.getrecursionlimit()
    if limit is not None:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Spy:
    """Wraps a fast-path function and records whether it accepted each input."""

    def __init__(self, func, accepted) -> None:
        self.func, self.accepted, self.calls = func, accepted, []

    def __call__(self, *args: Any) -> Any:
        result = self.func(*args)
        self.calls.append(self.accepted(result))
        return result


@pytest.fixture
def spies(monkeypatch):
    value = Spy(_fast_reader.read_value, lambda r: r[0])
    items = Spy(_fast_reader.read_items, lambda r: r is not None)
    plain = Spy(pjson._plain_json, lambda r: r is not pjson._DECLINED)
    # The JSON fast path's rule: with the compiled reader off, which runs before it
    # (tests/test_speedups_reader.py covers that one).
    monkeypatch.setattr(ser, "_creader", None)
    monkeypatch.setattr(_fast_reader, "read_value", value)
    monkeypatch.setattr(_fast_reader, "read_items", items)
    monkeypatch.setattr(pjson, "_plain_json", plain)
    return value, items, plain


def nested_dat(depth: int) -> bytes:
    """A value nested ``depth`` tables deep, as Prosody lays it out."""
    value: Any = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return _layout(value, 0, "return ") + b";\n"


def _layout(value: Any, indent: int, prefix: str) -> bytes:
    """Prosody's layout for nested one-key dicts, without its 127-level limit."""
    lines = []
    tabs = "\t" * indent
    while isinstance(value, dict) and "a" in value:
        lines.append(f"{tabs}{prefix}{{\n")
        indent += 1
        tabs = "\t" * indent
        prefix = '["a"] = '
        value = value["a"]
    lines.append(f'{tabs}{prefix}{{\n{tabs}\t["leaf"] = 1;\n{tabs}}}')
    for level in range(indent - 1, -1, -1):
        lines.append(";\n" + "\t" * level + "}")
    return "".join(lines).encode()


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, dict):
        depth += 1
        value = value.get("a", value.get("leaf"))
    return depth


def parser_only(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, Any]:
    """What the parser alone makes of ``data``: ("ok", value) or ("error", message)."""
    parser = ser._Parser(data, max_depth)
    try:
        pos = parser.skip(parser.skip(0) + len(b"return"))
        pos, value = parser.parse_value(pos)
        return "ok", value
    except LuaSyntaxError as err:
        return "error", err.msg


def outcome(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", loads(data)
    except LuaSyntaxError as err:
        return "error", err.msg


def test_nested_dat_is_prosody_layout():
    value = {"a": {"a": {"leaf": 1}}}
    assert nested_dat(3) == dump_dat(value)


@pytest.mark.parametrize("limit", RECURSION_LIMITS)
def test_recursion_limit_changes_neither_result_nor_path(spies, limit):
    value_spy, items_spy, plain_spy = spies
    dat = dump_dat({"roster": [{"jid": "a@b", "groups": ["x", "y"]}], "n": 1.5})
    items = dump_item({"with": "a@b", "when": 1}) * 3
    doc = b'{"a": [1, 2.5, {"b": "c"}], "d": true}'
    with recursion_limit(limit):
        assert loads(dat) == {"roster": [{"jid": "a@b", "groups": ["x", "y"]}], "n": 1.5}
        assert list(iter_list(items)) == [{"with": "a@b", "when": 1}] * 3
        assert pjson.loads(doc) == {"a": [1, 2.5, {"b": "c"}], "d": True}
    assert value_spy.calls == [True]
    assert items_spy.calls and all(items_spy.calls)  # one call per segment
    assert plain_spy.calls == [True]


@pytest.mark.parametrize("limit", RECURSION_LIMITS)
def test_fast_path_runs_from_its_threshold(spies, limit):
    value_spy = spies[0]
    dat = dump_dat({"a": 1})
    with recursion_limit(limit):
        loads(dat, max_depth=ser.FAST_PATH_MAX_DEPTH - 1)
        assert value_spy.calls == []
        loads(dat, max_depth=ser.FAST_PATH_MAX_DEPTH)
        assert value_spy.calls == [True]


@pytest.mark.parametrize("depth", [1, 2, ser.WRITE_MAX_DEPTH])
def test_fast_path_accepts_what_prosody_writes(spies, depth):
    value = loads(nested_dat(depth))
    assert depth_of(value) == depth
    assert spies[0].calls == [True]


@pytest.mark.parametrize("depth", [128, 129, 200, DEFAULT_MAX_DEPTH])
def test_fast_path_declines_deeper_than_its_limit(spies, depth):
    data = nested_dat(depth)
    assert _fast_reader.read_value(data, ser._parse_key) == (False, None)
    assert depth_of(loads(data)) == depth  # the parser reads it


@pytest.mark.parametrize("limit", RECURSION_LIMITS)
@pytest.mark.parametrize("depth", [127, 128, 129, DEFAULT_MAX_DEPTH - 1, DEFAULT_MAX_DEPTH,
                                   DEFAULT_MAX_DEPTH + 1, 3000])
def test_deep_input_same_as_parser(depth, limit):
    data = nested_dat(depth)
    expected = parser_only(data)
    with recursion_limit(limit):
        got = outcome(data)
    assert got[0] == expected[0]
    if got[0] == "ok":
        assert depth_of(got[1]) == depth
    else:
        assert got[1] == expected[1] == f"tables nested deeper than {DEFAULT_MAX_DEPTH}"


@pytest.mark.parametrize("limit", RECURSION_LIMITS)
@pytest.mark.parametrize("depth", [128, 129, DEFAULT_MAX_DEPTH, DEFAULT_MAX_DEPTH + 1])
def test_deep_list_items_same_as_parser(depth, limit):
    body = nested_dat(depth)[len(b"return "):-2]
    data = b"item(" + body + b");\n" + dump_item("x")
    with recursion_limit(limit):
        if depth <= DEFAULT_MAX_DEPTH:
            items = list(iter_list(data))
            assert depth_of(items[0]) == depth and items[1] == "x"
        else:
            with pytest.raises(LuaSyntaxError, match=f"tables nested deeper than {DEFAULT_MAX_DEPTH}"):
                list(iter_list(data))


def test_fast_path_nesting_bound_counts_empty_tables():
    # 127 tables with entries and an empty one inside: 128, the most it accepts.
    data = nested_dat(ser.WRITE_MAX_DEPTH).replace(b'["leaf"] = 1;', b'["leaf"] = {};')
    ok, value = _fast_reader.read_value(data, ser._parse_key)
    assert ok and depth_of(value) == _fast_reader.MAX_DEPTH
    assert _fast_reader._nests_within(data.replace(b"\t", b""), _fast_reader.MAX_DEPTH)
    assert not _fast_reader._nests_within(data.replace(b"\t", b""), _fast_reader.MAX_DEPTH - 1)


def test_unbalanced_layout_is_declined():
    # Tables closed other than at a line start are not Prosody's layout.
    data = b"return {\n" * 200 + b"1 }" * 200 + b";\n"
    assert _fast_reader.read_value(data, ser._parse_key) == (False, None)


def nested_json(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b'{"leaf":"}}]]"}' + b"}" * (depth - 1)


@pytest.mark.parametrize("limit", RECURSION_LIMITS)
@pytest.mark.parametrize("depth", [1, pjson.PLAIN_MAX_DEPTH, pjson.PLAIN_MAX_DEPTH + 1,
                                   DEFAULT_MAX_DEPTH, DEFAULT_MAX_DEPTH + 1])
def test_json_deep_input_same_result_and_path(spies, depth, limit):
    plain_spy = spies[2]
    with recursion_limit(limit):
        if depth <= DEFAULT_MAX_DEPTH:
            value = pjson.loads(nested_json(depth))
            assert depth_of(value) == depth
        else:
            with pytest.raises(pjson.JSONDecodeError, match=f"nested deeper than {DEFAULT_MAX_DEPTH}"):
                pjson.loads(nested_json(depth))
    assert plain_spy.calls == [depth <= pjson.PLAIN_MAX_DEPTH]


def test_json_brackets_in_strings_do_not_count(spies):
    doc = b'[' + b'"[[[[",' * 200 + b'1]'
    assert pjson.loads(doc)[-1] == 1
    assert spies[2].calls == [True]


def test_deep_item_among_many_shallow_ones_is_declined(spies):
    # The segment holds far more than FAST_PATH_MAX_DEPTH braces in shallow
    # items; the one deep item alone must send it to the parser.
    # Without indentation, so that only the nesting check can decline it.
    deep = nested_dat(ser.FAST_PATH_MAX_DEPTH + 1)[len(b"return "):-2].replace(b"\t", b"")
    shallow = dump_item({"a": {"b": {}}})
    data = shallow * 100 + b"item(" + deep + b");\n" + shallow * 100
    assert _fast_reader.read_items(data, ser._parse_key) is None
    items = list(iter_list(data))
    assert len(items) == 201 and depth_of(items[100]) == ser.FAST_PATH_MAX_DEPTH + 1


def test_item_with_many_shallow_tables_stays_on_the_fast_path():
    # More braces than FAST_PATH_MAX_DEPTH in one item, nested two deep.
    item = {"t%d" % i: {"x": {}} for i in range(200)}
    data = dump_item(item) + dump_item("x")
    assert _fast_reader.read_items(data, ser._parse_key) == [item, "x"]
