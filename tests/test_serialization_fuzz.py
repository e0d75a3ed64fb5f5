"""Robustness of the Lua data reader against damaged and hostile input.

Whatever bytes ``loads``, ``iter_list`` or ``iter_list_with_offsets`` get, they
either return a value or raise :class:`LuaSyntaxError` carrying a sane position
(``lineno``/``colno`` from 1, consistent with ``pos``); never another exception,
never a ``RecursionError``, and never hang.  Inputs: random bytes, random
sequences of Lua tokens, mutations (insert, delete, replace, duplicate, bit
flip, truncation) of the real Prosody files in ``fixtures/prosody-corpus``,
every prefix of small corpus files, deep nesting and pathological inputs of
100k characters.  Reading a ``.list`` from bytes and from a stream must agree, and so must
reading with the default ``max_depth`` and with one no input reaches.

These tests need no Lua; the differential tests are in
``test_serialization_interop.py``.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.serialization import (
    DEFAULT_MAX_DEPTH,
    LuaSyntaxError,
    iter_list,
    iter_list_with_offsets,
    loads,
)
from tests.tagged import canon

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "prosody-corpus"
CORPUS_BYTES = {
    p.relative_to(CORPUS).as_posix(): p.read_bytes()
    for p in sorted(CORPUS.rglob("*")) if p.suffix in (".dat", ".list") and p.is_file()
}
SMALL_CORPUS_FILES = [name for name, data in CORPUS_BYTES.items()
                      if len(data) <= 1500 and "prosody-0.12/" in name]

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Pieces of Lua syntax, so that random input gets past the first byte.
TOKENS = [
    b"{", b"}", b"[", b"]", b"[[", b"]]", b"[=[", b"]=]", b"[==[", b'"', b"'", b"\\", b"--", b"--[[",
    b"=", b";", b",", b"\n", b"\r", b"\r\n", b" ", b"\t", b"(", b")", b"-", b"/", b"0x", b"e", b"E",
    b"p", b".", b"..", b"item", b"item(", b"return", b"\\u{", b"\\x", b"\\z", b"\\9", b"\\255",
    b"\\400", b"nil", b"true", b"false", b"1/0", b"0", b"1", b"42", b"3.5", b"9223372036854775808",
    b"a", b"name", b"end", b"\xff", b"\xc3\xa9", b"\x00",
    # Prosody's layout and JSON look-alikes
    b"\n\t", b";\n", b'["a"] = ', b"[1] = ", b'":', b"null", b"(1/0)", b"(0/0)", b"\\\\", b"\\065",
]


def check_error(err: LuaSyntaxError, data: bytes) -> None:
    """The error's position is an offset into ``data``, and line/column agree with it."""
    assert isinstance(err.lineno, int) and not isinstance(err.lineno, bool)
    assert isinstance(err.colno, int) and not isinstance(err.colno, bool)
    assert err.lineno >= 1 and err.colno >= 1
    assert 0 <= err.pos <= len(data)
    assert err.lineno == data.count(b"\n", 0, err.pos) + 1
    assert err.colno == err.pos - (data.rfind(b"\n", 0, err.pos) + 1) + 1
    assert str(err)


def outcome_of_loads(data: bytes, **kw):
    """("ok", canonical value) or ("error", pos); any other exception propagates."""
    try:
        value = loads(data, **kw)
    except LuaSyntaxError as err:
        check_error(err, data)
        return ("error", err.pos)
    return ("ok", canon(value))


def outcome_of_list(data: bytes, stream: bool, **kw):
    """("ok", [(end offset, canonical item), ...]) or ("error", pos)."""
    src = io.BytesIO(data) if stream else data
    items = []
    try:
        for end, item in iter_list_with_offsets(src, **kw):
            items.append((end, canon(item)))
    except LuaSyntaxError as err:
        check_error(err, data)
        return ("error", err.pos)
    assert all(0 < end <= len(data) for end, _ in items)
    assert [end for end, _ in items] == sorted(end for end, _ in items)
    return ("ok", items)


#: A max_depth no input reaches.  It must not change any outcome.
HUGE_DEPTH = 10 ** 9


def same_outcome(a: tuple, b: tuple) -> bool:
    """Both values equal, or both errors (the position may differ with the depth limit)."""
    return a == b if a[0] == "ok" or b[0] == "ok" else True


def check_everything(data: bytes) -> None:
    """Run every reader on ``data``; they must agree with each other."""
    value = outcome_of_loads(data)
    assert same_outcome(value, outcome_of_loads(data, max_depth=HUGE_DEPTH)), value
    from_bytes = outcome_of_list(data, stream=False)
    from_stream = outcome_of_list(data, stream=True)
    assert from_bytes == from_stream
    assert same_outcome(from_bytes, outcome_of_list(data, stream=False, max_depth=HUGE_DEPTH)), from_bytes
    assert same_outcome(from_bytes, outcome_of_list(data, stream=True, max_depth=HUGE_DEPTH)), from_bytes
    if from_bytes[0] == "ok":
        assert [canon(i) for i in iter_list(data)] == [c for _, c in from_bytes[1]]


# ---------------------------------------------------------------------------
# Random input


def test_corpus_is_there():
    assert len(CORPUS_BYTES) > 100
    assert any(name.endswith(".list") for name in CORPUS_BYTES)
    assert SMALL_CORPUS_FILES


@FUZZ_SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_parse_or_raise_syntax_error(data):
    check_everything(data)


@FUZZ_SETTINGS
@given(data=st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join))
def test_random_token_soup_parses_or_raises_syntax_error(data):
    check_everything(data)
    check_everything(b"return {" + data + b"}")
    check_everything(b"item(" + data + b");\n")
    check_everything(b"return {\n\t" + data + b";\n};\n")
    check_everything(b"item({\n\t" + data + b";\n});\nitem(" + data + b");\n")


# ---------------------------------------------------------------------------
# Mutated corpus files


@st.composite
def mutated_corpus_files(draw):
    name = draw(st.sampled_from(sorted(CORPUS_BYTES)))
    data = bytearray(CORPUS_BYTES[name])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "flip", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        size = draw(st.integers(1, 16))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=4)))
        if op == "insert":
            data[pos:pos] = piece
        elif op == "delete":
            del data[pos:pos + size]
        elif op == "replace":
            data[pos:pos + size] = piece
        elif op == "duplicate":
            data[pos:pos] = data[pos:pos + size]
        elif op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
    return name, bytes(data)


@FUZZ_SETTINGS
@given(case=mutated_corpus_files())
def test_mutated_corpus_file_parses_or_raises_syntax_error(case):
    _name, data = case
    check_everything(data)


@pytest.mark.parametrize("name", sorted(CORPUS_BYTES))
def test_unmodified_corpus_file_parses(name):
    data = CORPUS_BYTES[name]
    if name.endswith(".dat"):
        assert outcome_of_loads(data)[0] == "ok"
    else:
        from_bytes = outcome_of_list(data, stream=False)
        assert from_bytes[0] == "ok" and from_bytes[1]
        assert from_bytes[1][-1][0] == len(data)
        assert outcome_of_list(data, stream=True) == from_bytes


@pytest.mark.parametrize("name", SMALL_CORPUS_FILES)
def test_every_prefix_of_a_corpus_file_parses_or_raises_syntax_error(name):
    data = CORPUS_BYTES[name]
    if name.endswith(".list"):
        whole = outcome_of_list(data, stream=False)
        assert whole[0] == "ok"
        for cut in range(len(data)):
            prefix = data[:cut]
            from_bytes = outcome_of_list(prefix, stream=False)
            assert outcome_of_list(prefix, stream=True) == from_bytes
            if from_bytes[0] == "ok":  # cut between items: the items before the cut
                read = [item for _, item in from_bytes[1]]
                assert read == [item for _, item in whole[1]][:len(read)]
    else:
        whole = outcome_of_loads(data)
        assert whole[0] == "ok"
        complete = len(data.rstrip(b";\n"))  # "return {...}" is all it takes
        for cut in range(len(data)):
            result = outcome_of_loads(data[:cut])
            if data[:cut].strip() in (b"", b"return"):
                assert result == ("ok", canon(None))  # a chunk that returns nothing, as Lua reads it
            elif cut < complete:
                assert result[0] == "error", (cut, data[:cut][-40:])
            else:
                assert result == whole


# ---------------------------------------------------------------------------
# Nesting depth


def nested(depth: int) -> bytes:
    return b"{" * depth + b"}" * depth


def nested_keyed(depth: int) -> bytes:
    return b"{a = " * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("src", [
    b"{" * 100000,
    nested(100000),
    b"return " + b"{[1] = " * 100000,
    b"{{" * 50000 + b"}" * 10,
], ids=["open-braces", "balanced", "keyed", "mostly-open"])
def test_deep_nesting_raises_syntax_error_not_recursion_error(src):
    assert outcome_of_loads(src)[0] == "error"
    item = b"item(" + src + b");\n"
    assert outcome_of_list(item, stream=False)[0] == "error"
    assert outcome_of_list(item, stream=True)[0] == "error"


def test_max_depth_is_the_deepest_table_allowed():
    assert loads(nested(5), max_depth=5) == [[[[{}]]]]
    assert loads(nested_keyed(5), max_depth=5) == {"a": {"a": {"a": {"a": {"a": 1}}}}}
    with pytest.raises(LuaSyntaxError):
        loads(nested(6), max_depth=5)
    with pytest.raises(LuaSyntaxError):
        loads(nested_keyed(6), max_depth=5)
    assert outcome_of_loads(nested(1), max_depth=1) == ("ok", canon({}))


def test_max_depth_applies_to_list_items():
    src = b"item(" + nested(3) + b");\nitem(" + nested(4) + b");\n"
    assert len(list(iter_list(src, max_depth=4))) == 2
    assert len(list(iter_list(io.BytesIO(src), max_depth=4))) == 2
    with pytest.raises(LuaSyntaxError) as info:
        list(iter_list(src, max_depth=3))
    assert info.value.lineno == 2
    with pytest.raises(LuaSyntaxError) as info:
        list(iter_list(io.BytesIO(src), max_depth=3))
    assert info.value.lineno == 2


def depth_of(value) -> int:
    """Nesting depth of ``[[...[{}]...]]`` (the innermost empty table is a dict)."""
    depth = 1
    while isinstance(value, list):
        assert len(value) == 1
        depth += 1
        value = value[0]
    assert value == {}
    return depth


def test_default_max_depth():
    assert depth_of(loads(nested(DEFAULT_MAX_DEPTH))) == DEFAULT_MAX_DEPTH
    with pytest.raises(LuaSyntaxError):
        loads(nested(DEFAULT_MAX_DEPTH + 1))


def test_max_depth_far_above_python_recursion_limit_reads_without_recursing():
    assert depth_of(loads(nested(20000), max_depth=20000)) == 20000


# ---------------------------------------------------------------------------
# Pathological inputs: each must finish, with a value or a LuaSyntaxError


PATHOLOGICAL = [
    ("open-brackets", b"[" * 100000),
    ("open-brackets-in-table", b"{" + b"[" * 100000),
    ("minus-signs", b"-" * 100000),
    ("spaced-minus-signs", b"- " * 100000 + b"1"),
    ("spaced-minus-signs-in-table", b"{" + b"- " * 100000 + b"1}"),
    ("open-parens", b"(" * 100000),
    ("balanced-parens", b"(" * 100000 + b"1" + b")" * 100000),
    ("minus-parens", b"-(" * 50000 + b"1" + b")" * 50000),
    ("parens-in-key", b"{[" + b"(" * 100000 + b"1" + b")" * 100000 + b"] = 1}"),
    ("unterminated-string", b'"' + b"a" * 1000000),
    ("unterminated-single-quoted", b"'" + b"a\\'" * 100000),
    ("many-backslashes-unterminated", b'"' + b"\\" * 100001),
    ("many-backslashes", b'"' + b"\\\\" * 100000 + b'"'),
    ("many-escapes", b'"' + b"\\z \\65\\x41\\u{41}" * 50000 + b'"'),
    ("many-bad-escapes", b'"' + b"\\" * 100000 + b"q"),
    ("unterminated-long-comment", b"--[[" + b"x" * 1000000),
    ("unterminated-long-comment-with-closers", b"--[==[" + b"]=]" * 100000),
    ("unterminated-long-string", b"[==[" + b"]]" * 100000),
    ("many-line-comments", b"--\n" * 100000 + b"1"),
    ("many-block-comments", b"--[[]]" * 100000 + b"1"),
    ("long-array", b"{" + b"1," * 100000 + b"}"),
    ("long-keyed", b"{" + b"[1]=1;" * 100000 + b"}"),
    ("long-named", b"{" + b"a=1," * 100000 + b"}"),
    ("many-nils", b"{" + b"nil," * 100000 + b"1}"),
    ("huge-decimal-int", b"9" * 100000),
    ("decimal-int-beyond-float-range", b"{1" + b"0" * 309 + b"}"),
    ("huge-negative-decimal-int", b"{-" + b"1" * 5000 + b"}"),
    ("huge-hex-int", b"0x" + b"f" * 100000),
    ("huge-hex-float", b"0x" + b"f" * 100000 + b".8p" + b"9" * 100000),
    ("huge-exponent", b"1e" + b"9" * 100000),
    ("long-malformed-number", b"1" + b"." * 100000),
    ("long-name", b"a" * 100000),
    ("long-name-key", b"{" + b"a" * 100000 + b" = 1}"),
    ("many-items", b"item(1);\n" * 100000),
    ("item-calls-unclosed", b"item(" * 100000),
    ("newlines-then-item", b"\n" * 100000 + b"item"),
    ("many-item-lines-in-long-string", b"item[[" + b"\nitem(1)" * 100000),
    ("many-semicolons", b";" * 100000),
    # Prosody's own layout, so that the fast path sees them first:
    ("deep-indentation", b'return {\n' + b"\t" * 1000000 + b'["a"] = 1;\n};\n'),
    ("many-indented-lines", b"item({\n" + (b"\t" * 120 + b'["a"] = 1;\n') * 8000 + b"});\n"),
    ("many-distinct-escapes", b'return {\n\t["a"] = "' + b" ".join(b"\\%d\\%d" % (194 + i % 30, 128 + i % 64) for i in range(200000)) + b'";\n};\n'),
    ("many-positional-entries", b"item({\n" + b"\t1;\n" * 100000 + b"});\n"),
    ("many-number-keys", b"item({\n" + b"".join(b"\t[%d] = 1;\n" % i for i in range(50000)) + b"});\n"),
]


@pytest.mark.parametrize("src", [s for _, s in PATHOLOGICAL], ids=[i for i, _ in PATHOLOGICAL])
def test_pathological_input_finishes_with_value_or_syntax_error(src):
    check_everything(src)
