"""Differential tests of ``prosody_store.serialization`` against real Prosody.

Every test here asks the ``oracle`` fixture (a ``lua5.4`` process running
Debian's Prosody 0.12.3 modules, see ``tests/oracle.py``) what Prosody writes
or what Lua reads, and compares with our codec:

* Prosody -> us: whatever ``util.serialization`` writes for a generated value,
  we read to the value Lua reads, and write back byte for byte.
* us -> Prosody: whatever ``dumps`` writes, Lua reads to the value we read, and
  where the entry order is not up to Lua's hash, it is Prosody's exact bytes.
* Hand-written literals (comments, long strings, every escape, number
  syntaxes, table constructor corner cases): we read what Lua reads; inputs
  that Lua rejects or that need code to run, we reject with a position.
* ``.list`` files: ``iter_list`` on bytes and on a binary stream, and every
  ``item`` call form.

Values are compared with :func:`tests.tagged.canon` (entries unordered, numbers
typed int/float as in Lua 5.4, zeros equal whatever their sign).
"""
from __future__ import annotations

import io
import json
import math
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from prosody_store import serialization as ser
from prosody_store.serialization import (
    DEFAULT_MAX_DEPTH,
    FALSE_KEY,
    TRUE_KEY,
    BooleanKey,
    LuaSyntaxError,
    dump_dat,
    dump_item,
    dumps,
    iter_list,
    iter_list_with_offsets,
    loads,
)
from tests.tagged import canon, canon_tagged, is_utf8, tagged_json, to_tagged

pytestmark = pytest.mark.interop

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------
# Talking to the oracle


def lua_load_dat(oracle, src: bytes | str) -> tuple:
    """Canonical form of the value Lua reads from ``src`` (Prosody's .dat loading)."""
    return canon_tagged(json.loads(oracle.call("codec_oracle.load_dat", src)))


def lua_load_list(oracle, src: bytes | str) -> list[tuple]:
    """Canonical forms of the items Lua reads from a .list file."""
    return [canon_tagged(t) for t in json.loads(oracle.call("codec_oracle.load_list", src))]


def lua_verdict(oracle, command: str, src: bytes) -> tuple[str, str]:
    """("syntax" | "runtime" | "ok", message or tagged JSON) from interop_probe.lua."""
    kind, _, rest = oracle.call(f"interop_probe.{command}", src).decode("utf-8", "replace").partition("\n")
    return kind, rest


def prosody_serialize(oracle, value) -> bytes:
    return oracle.call("codec_oracle.serialize", tagged_json(value))


def prosody_dat(oracle, value) -> bytes:
    return oracle.call("codec_oracle.dat", tagged_json(value))


def prosody_list(oracle, items: list) -> bytes:
    return oracle.call("codec_oracle.list", json.dumps([to_tagged(i) for i in items]))


def lua_normalized(oracle, value) -> tuple:
    """Canonical form of ``value`` once it is a Lua value (integral float keys become integers)."""
    return canon_tagged(json.loads(oracle.call("interop_probe.normalize", tagged_json(value))))


# ---------------------------------------------------------------------------
# Reading, both ways
#
# ``max_depth`` only limits nesting, so a huge one must not change any result.
# The codec's fast path for Prosody's layout runs only when ``max_depth`` is
# at least ``FAST_PATH_MAX_DEPTH``; reading also with a smaller one (when the
# value is that shallow) uses the parser alone, so both paths are covered.

HUGE_DEPTH = 10 ** 9
PARSER_ONLY_DEPTH = ser.FAST_PATH_MAX_DEPTH - 1


def read(src):
    """``loads(src)``, checked to agree with a huge max_depth and with the parser alone."""
    value = loads(src)
    assert canon(loads(src, max_depth=HUGE_DEPTH)) == canon(value)
    try:
        by_parser = loads(src, max_depth=PARSER_ONLY_DEPTH)
    except LuaSyntaxError as err:
        assert "nested deeper than" in err.msg, err
    else:
        assert canon(by_parser) == canon(value)
    return value


def read_list(src: bytes) -> list:
    """``list(iter_list(src))``, checked against a huge max_depth and a stream."""
    items = list(iter_list(src))
    expected = [canon(i) for i in items]
    assert [canon(i) for i in iter_list(src, max_depth=HUGE_DEPTH)] == expected
    assert [canon(i) for i in iter_list(io.BytesIO(src), max_depth=HUGE_DEPTH)] == expected
    return items


# ---------------------------------------------------------------------------
# The codec's data model as hypothesis strategies


_INVALID_UTF8_PIECES = [
    b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xc1\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xe9", b"\xf0\x9f\x98",
]

#: Byte strings that are not valid UTF-8 (so they stay ``bytes`` on reload).
invalid_utf8 = st.tuples(
    st.binary(max_size=8), st.sampled_from(_INVALID_UTF8_PIECES), st.binary(max_size=8),
).map(b"".join).filter(lambda b: not is_utf8(b))

#: Any unicode text without lone surrogates (those are not UTF-8).
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)

ints = st.one_of(
    st.integers(INT_MIN, INT_MAX),
    st.integers(-1000, 1000),
    st.sampled_from([0, 1, -1, 2, INT_MAX, INT_MIN + 1, 2 ** 53, 2 ** 53 + 1, -(2 ** 53), 10 ** 17, 10 ** 18]),
)

_SPECIAL_FLOATS = [
    0.0, -0.0, math.inf, -math.inf, math.nan, 0.1, 1 / 3, 3.0, -2.5, 1e17, 1e18, 2.0 ** 53,
    2.0 ** 62, 2.0 ** 63, -(2.0 ** 63), 5e-324, 1e300, -1e-300, 1700000002.123456,
]
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(_SPECIAL_FLOATS))

scalars = st.one_of(st.booleans(), ints, floats, texts, invalid_utf8)

#: Table keys: anything but nil and NaN (tables as keys are not in the data model).
keys = st.one_of(
    texts, invalid_utf8, ints, st.booleans(),
    floats.filter(lambda f: not math.isnan(f)),
    st.sampled_from(["1", "", "end", "nil", "true", "a\0b", "x\ny", "\\a", "\\065", "q'\"\\x41", 1, 2, 3, 0, -1, 1.5]),
)


@st.composite
def lua_dicts(draw, values):
    """A dict in the codec's model, shuffled, sometimes with TRUE_KEY/FALSE_KEY beside 1/0."""
    d = draw(st.dictionaries(keys, values, max_size=6))
    if draw(st.integers(0, 3)) == 0:
        for number, marker in ((1, TRUE_KEY), (0, FALSE_KEY)):
            if draw(st.booleans()):
                for k in [k for k in d if k == number]:  # drops True/1/1.0 (or False/0/0.0)
                    del d[k]
                d[draw(st.sampled_from([number, float(number)]))] = draw(values)
                d[marker] = draw(values)
    return dict(draw(st.permutations(list(d.items()))))


def tables(children):
    return st.one_of(st.lists(children, min_size=1, max_size=6), lua_dicts(children))


#: Values that can sit inside a table (no None).
inner_values = st.recursive(scalars, tables, max_leaves=20)
#: Top-level values: None is allowed only here.
values = st.one_of(st.none(), inner_values)
#: Top-level values that are tables (what a .dat file normally holds).
table_values = tables(inner_values)


def order_is_fixed(v) -> bool:
    """Whether Prosody's output for ``v`` does not depend on Lua's hash order.

    Scalars, arrays (iterated in index order) and tables of at most one string
    key, all the way down.
    """
    if isinstance(v, list):
        return all(order_is_fixed(x) for x in v)
    if isinstance(v, dict):
        return len(v) == 0 or (len(v) == 1 and all(
            isinstance(k, str) and order_is_fixed(x) for k, x in v.items()))
    return True


def _reloaded_number(n):
    """What a number becomes once written as Prosody writes it and read back by Lua 5.4."""
    if n.__class__ is int:
        return n
    text = "%.18g" % n
    if math.isfinite(n) and not any(c in text for c in ".en"):
        return int(text)  # 3.0 -> "3" -> integer 3
    return n


def reloaded(v):
    """``v`` as Lua holds it after a round trip through Prosody's text format."""
    if isinstance(v, (bool, BooleanKey, str, bytes)) or v is None:
        return v
    if isinstance(v, (int, float)):
        return _reloaded_number(v)
    if isinstance(v, list):
        return [reloaded(x) for x in v]
    out = {}
    for k, x in v.items():
        if isinstance(k, (int, float)) and not isinstance(k, bool):
            k = _reloaded_number(k)
            if isinstance(k, float) and k.is_integer() and -(2.0 ** 63) <= k < 2.0 ** 63:
                k = int(k)  # Lua stores integral float keys as integers
        out[k] = reloaded(x)
    return out


# ---------------------------------------------------------------------------
# b. Prosody -> us


@PROPERTY_SETTINGS
@given(value=values)
def test_prosody_serialization_reads_as_lua_reads_it(oracle, value):
    written = prosody_serialize(oracle, value)
    assert canon(read(written)) == lua_load_dat(oracle, written)


@PROPERTY_SETTINGS
@given(value=values)
def test_prosody_serialization_round_trips_byte_for_byte(oracle, value):
    written = prosody_serialize(oracle, value).decode("ascii")
    assert dumps(read(written)) == written


@PROPERTY_SETTINGS
@given(value=table_values)
def test_prosody_dat_file_round_trips_byte_for_byte(oracle, value):
    written = prosody_dat(oracle, value)
    assert written.startswith(b"return ") and written.endswith(b";\n")
    reread = read(written)
    assert canon(reread) == lua_load_dat(oracle, written)
    assert dump_dat(reread) == written


@PROPERTY_SETTINGS
@given(items=st.lists(inner_values, min_size=1, max_size=5))
def test_prosody_list_file_round_trips_byte_for_byte(oracle, items):
    written = prosody_list(oracle, items)
    reread = read_list(written)
    assert [canon(i) for i in reread] == lua_load_list(oracle, written)
    assert b"".join(dump_item(i) for i in reread) == written


_DQ_KEY = re.compile(rb'^(\t*)\["((?:[^"\\]|\\.)*)"\] = ', re.M)


#: Small tables whose string keys are full of backslashes and quotes once written.
escape_heavy_tables = st.dictionaries(
    st.lists(st.sampled_from(["\\", "\\", "a", "n", "065", "x41", "'", '"', "\n", "z", "\u00e9"]),
             min_size=1, max_size=5).map("".join),
    st.one_of(st.booleans(), st.integers(-5, 5), texts),
    min_size=1, max_size=2,
)


@PROPERTY_SETTINGS
@given(value=escape_heavy_tables)
def test_prosody_dat_with_single_quoted_keys_reads_as_lua_reads_it(oracle, value):
    """A hand edit that Lua reads the same: every ``["key"] =`` becomes ``['key'] =``.

    Prosody escapes every ``'`` and ``"`` in strings, so swapping the quotes keeps
    the same key.
    """
    edited = _DQ_KEY.sub(rb"\1['\2'] = ", prosody_dat(oracle, value))
    assert canon(read(edited)) == lua_load_dat(oracle, edited)


def test_int_min_value_reads_as_the_number_lua_reads_and_is_rewritten_unchanged(oracle):
    """Lua reads ``-9223372036854775808`` as a float (the digits overflow before
    the minus applies); the number is the same, and we write back what Prosody wrote."""
    written = prosody_serialize(oracle, [INT_MIN])
    assert written == b"{\n\t-9223372036854775808;\n}"
    value = read(written)
    assert value[0] == INT_MIN
    assert canon(value) == lua_load_dat(oracle, written)
    assert dumps(value).encode() == written


def test_int_min_key_stays_an_integer_key_as_in_lua(oracle):
    value = {INT_MIN: "x"}
    written = prosody_serialize(oracle, value).decode()
    assert written == '{\n\t[-9223372036854775808] = "x";\n}'
    assert canon(read(written)) == lua_load_dat(oracle, written) == canon(value)
    assert dumps(read(written)) == written


# ---------------------------------------------------------------------------
# c. us -> Prosody


@PROPERTY_SETTINGS
@given(value=values)
def test_our_serialization_reads_in_lua_as_we_read_it(oracle, value):
    written = dumps(value)
    ours = canon(read(written))
    assert ours == lua_load_dat(oracle, written)
    assert ours == canon(reloaded(value))


@PROPERTY_SETTINGS
@given(value=table_values)
def test_our_dat_file_reads_in_lua_as_we_read_it(oracle, value):
    written = dump_dat(value)
    assert canon(read(written)) == lua_load_dat(oracle, written)


@PROPERTY_SETTINGS
@given(items=st.lists(inner_values, min_size=1, max_size=5))
def test_our_list_file_reads_in_lua_as_we_read_it(oracle, items):
    written = b"".join(dump_item(i) for i in items)
    assert [canon(i) for i in read_list(written)] == lua_load_list(oracle, written)
    assert [canon(i) for i in read_list(written)] == [canon(reloaded(i)) for i in items]


@PROPERTY_SETTINGS
@given(value=values)
def test_our_serialization_is_prosodys_when_order_is_fixed(oracle, value):
    assume(order_is_fixed(value))
    assert dumps(value).encode() == prosody_serialize(oracle, value)


@PROPERTY_SETTINGS
@given(value=values)
def test_we_serialize_the_same_value_as_prosody(oracle, value):
    """Whatever the entry order, both texts hold the value Lua holds for ``value``."""
    expected = lua_normalized(oracle, value)
    assert lua_load_dat(oracle, prosody_serialize(oracle, value)) == lua_load_dat(oracle, dumps(value))
    assert canon(read(prosody_serialize(oracle, value))) == canon(read(dumps(value)))
    # Before the text round trip (which turns 3.0 into 3), the value is Lua's.
    assert expected == canon(_keys_as_lua(value))


def _keys_as_lua(v):
    """``v`` with integral float keys as integers, as a Lua table stores them."""
    if isinstance(v, list):
        return [_keys_as_lua(x) for x in v]
    if isinstance(v, dict):
        return {
            (int(k) if k.__class__ is float and k.is_integer() and -(2.0 ** 63) <= k < 2.0 ** 63 else k):
            _keys_as_lua(x) for k, x in v.items()}
    return v


@pytest.mark.parametrize("value", [
    {-0.0: "a"},
    {2.0: "b"},
    {2.0 ** 62: "c"},
    {1e18: "d"},
    {-(2.0 ** 63): "e"},
], ids=["neg-zero", "two", "2^62", "1e18", "-2^63"])
def test_integral_float_key_is_written_as_prosody_writes_it(oracle, value):
    """Lua turns an integral float key into an integer key, so Prosody writes it with %d."""
    assert dumps(value).encode() == prosody_serialize(oracle, value)


@pytest.mark.parametrize("value", [
    {1: "one", TRUE_KEY: "t"},
    {0: "zero", FALSE_KEY: "f"},
    {TRUE_KEY: "t", 1.0: "one", FALSE_KEY: "f", 0: "zero", "x": [1, 2]},
    {False: {"version": 3, "pending": {}}, "bob@example.com": {"groups": {"Friends": True}}},
])
def test_boolean_keys_beside_number_keys_survive_both_ways(oracle, value):
    written = dumps(value)
    assert canon(read(written)) == lua_load_dat(oracle, written) == canon(_keys_as_lua(value))
    theirs = prosody_serialize(oracle, value)
    assert canon(read(theirs)) == lua_load_dat(oracle, theirs)
    assert dumps(read(theirs)).encode() == theirs


# ---------------------------------------------------------------------------
# d. Hand-written literals


def _positional(n: int) -> str:
    return ", ".join(f'"p{i}"' for i in range(1, n + 1))


VALID_LITERALS = [
    # comments
    ("line-comment", b'-- a comment\n{ "a" } -- trailing'),
    ("comment-no-newline-at-end", b"{1} -- end"),
    ("block-comment", b"--[[ block\ncomment ]] 42"),
    ("block-comment-level", b'--[==[ level ]] still ]=] in ]==] "x"'),
    ("comment-inside-table", b"{1 --[[c]], 2 -- two\n, 3}"),
    ("not-a-long-comment", b"--[= not long\n7"),
    # long strings
    ("long-string", b"[[long]]"),
    ("long-string-level", b"[==[a]]b]=]c]==]"),
    ("long-string-leading-lf", b"[[\nleading newline dropped]]"),
    ("long-string-leading-crlf", b"[[\r\nCRLF dropped]]"),
    ("long-string-newlines", b"[[a\r\nb\n\rc\rd\n\ne\r\rf]]"),
    ("long-string-no-escapes", b"[[\\n \\x41 \" ']]"),
    ("long-string-key", b"{[ [[k]] ] = [=[v]=]}"),
    # escapes
    ("named-escapes", rb'"\a\b\f\n\r\t\v\\\"\'"'),
    ("decimal-escapes", rb'"\0\65\066\1234\255"'),
    ("decimal-escape-then-digit", rb'"\0001\0131"'),
    ("hex-escapes", rb'"\x41\xff\x00\xAb"'),
    ("z-escape", b'"a\\z   \n\t  b\\z"'),
    ("unicode-escapes", rb'"\u{41}\u{e9}\u{20AC}\u{10FFFF}\u{0000000041}"'),
    ("unicode-escape-above-10ffff", rb'"\u{110000}\u{7FFFFFFF}"'),
    ("unicode-escape-surrogate", rb'"\u{D800}"'),
    ("backslash-newline", b'"line\\\nnext"'),
    ("backslash-crlf", b'"cr\\\r\nlf\\\n\rx"'),
    ("single-quoted", rb"""'single \'q\' "dq" \65'"""),
    ("raw-utf8-and-bytes", b'"caf\xc3\xa9 \x7f \xff \x01\t"'),
    # numbers
    ("hex-int", b"{0xff, 0XA, 0x7fffffffffffffff}"),
    ("hex-int-wraps", b"{0xffffffffffffffff, 0x8000000000000000, 0x10000000000000001}"),
    ("hex-floats", b"{0x1p4, 0x.8, 0xA.8p1, 0x1P-2, 0x1.fffffffffffffp1023}"),
    ("hex-float-overflow", b"{0x1p99999, 0x1.fffffffffffff8p1023}"),
    ("exponents", b"{1e10, 1E-3, 3.25e+2, 5.e2, 1e400, 1e-400}"),
    ("dot-forms", b"{.5, 5., 0.}"),
    ("big-decimal-ints", b"{9223372036854775808, 18446744073709551616, 99999999999999999999999}"),
    ("decimal-int-beyond-float-range", b"1" + b"0" * 309),
    ("decimal-int-with-5000-digits", b"9" * 5000),
    ("divided-decimal-int-beyond-float-range", b"(1" + b"0" * 400 + b"/3)"),
    ("long-float-literal", b"0." + b"0" * 5000 + b"1e5000"),
    ("int64-limits", b"{-9223372036854775808, 9223372036854775807, -9223372036854775807}"),
    ("negations", b"{-0, - -1, -(1), -0.0, - - -2.5}"),
    ("infinities", b"{(1/0), (-1/0), (0/0), [(1/0)] = 1, [(-1/0)] = 2}"),
    ("parenthesized", b"{(1), ((2)), ( 7 / 2 ), (4/2), (-0.0/1)}"),
    ("divide-by-negative-zero", b"(1/-0)"),
    ("divide-by-parenthesized-negative-zero", b"{(1/-(0)), (-1/-0)}"),
    # tables and keys
    ("bare-name-keys", b'{password = "x", _under1 = 2, A_b = {c = true}}'),
    ("separators", b"{1, 2; 3,}"),
    ("trailing-semicolon", b"{1;}"),
    ("nested", b"{{{}}, {a = {b = {}}}, {{1}, {2, {3}}}}"),
    ("holes", b'{"x", nil, "z"}'),
    ("only-nil", b"{nil}"),
    ("nil-value-removes", b'{a = 1, a = nil, [2] = nil}'),
    ("duplicate-keys-last-wins", b'{a = 1, ["a"] = 2, [1] = "x", [1] = "y", [1.0] = "z"}'),
    ("positional-beats-keyed", b'{[1] = "k", "a"}'),
    ("positional-beats-later-keyed", b'{"a", [1] = "k"}'),
    ("keyed-after-49-positional", b"{" + _positional(49).encode() + b', [1] = "k"}'),
    ("keyed-after-50-positional", b"{" + _positional(50).encode() + b', [1] = "k"}'),
    ("keyed-after-51-positional", b"{" + _positional(51).encode() + b', [1] = "k", [51] = "k51"}'),
    ("keyed-inside-second-batch", b"{" + _positional(52).encode() + b', [55] = "k", '
     + _positional(60).encode() + b"}"),
    ("keyed-after-100-positional", b"{" + _positional(100).encode() + b', [50] = "k", [100] = "k", [101] = "k"}'),
    ("true-beside-one", b'{[true] = "t", [1] = "one"}'),
    ("one-beside-true", b'{[1] = "one", [true] = "t", [false] = "f", [0] = "zero"}'),
    ("true-beside-deleted-one", b'{[1] = "one", [true] = "t", [1] = nil}'),
    ("float-keys", b'{[1.0] = "a", [2] = "b", [2.5] = "c", [-0.0] = "d", [1e300] = "e"}'),
    ("keyed-then-bare", b'{[7] = "seven"; "one"; "two"; [4] = "four";}'),
    ("explicit-array-keys", b'{[1] = "a"; [2] = "b"; ["x"] = 3;}'),
    ("spaces-everywhere", b' \t\n{ [ "key" ] = \f"v" \v; } \r\n'),
    ("nul-and-newline-keys", b'{["a\\0b"] = 1, ["x\\ny"] = 2, [""] = 3}'),
    ("keyword-string-keys", b'{["end"] = 1, ["nil"] = 2, ["true"] = 3}'),
    # scalars and framing
    ("true", b"true"),
    ("false", b"false"),
    ("nil", b"nil"),
    ("return-prefix-semicolon", b"return {1};"),
    ("return-no-space", b'return"x"'),
    ("return-parenthesized", b"return(1)"),
    ("return-comment", b"return --[[c]] {} -- done\n;\n"),
    ("semicolon-suffix-spaced", b"{} ;  \n"),
    # Prosody's own layout (what a fast path for Prosody output would see)
    ("prosody-layout-escapes", b'return {\n\t["k\\"\\\\"] = "\\a\\b\\f\\n\\r\\t\\v\\\\\\"\\\'\\000\\255\\195\\169";\n'
     b'\t[true] = false;\n\t[1] = 1;\n\t"x";\n\t[(1/0)] = (0/0);\n};\n'),
    ("prosody-layout-escaped-backslash-then-digits", b'return {\n\t["a"] = "\\\\065\\\\a\\\\\\065";\n};\n'),
    ("prosody-layout-single-quoted-key", b"return {\n\t['k'] = 1;\n\t['\\a\\065\\\"'] = 2;\n};\n"),
    ("prosody-layout-single-quoted-key-backslash-a", b"return {\n\t['\\\\a'] = 1;\n};\n"),
    ("prosody-layout-single-quoted-key-backslash-digits", b"return {\n\t['\\\\065'] = 1;\n};\n"),
    ("prosody-layout-single-quoted-key-backslash-x", b"return {\n\t['\\\\x41'] = 1;\n};\n"),
    ("prosody-layout-commas", b'return {\n\t"a",\n\t"b";\n};\n'),
    ("prosody-layout-keyed-then-positional", b'return {\n\t[1] = "k";\n\t"a";\n\t[2] = "b";\n};\n'),
]


@pytest.mark.parametrize("src", [s for _, s in VALID_LITERALS], ids=[i for i, _ in VALID_LITERALS])
def test_hand_written_literal_reads_as_lua_reads_it(oracle, src):
    assert canon(read(src)) == lua_load_dat(oracle, src)


@pytest.mark.parametrize("src", [b"", b"-- nothing here\n", b"return;", b"return\n", b"return --[[x]]"],
                         ids=["empty", "comment-only", "return-semicolon", "return-newline", "return-comment"])
def test_chunk_that_returns_nothing_reads_as_nil(oracle, src):
    """Prosody's datamanager reads such a .dat as "no data" (the chunk returns nil)."""
    assert lua_load_dat(oracle, src) == ("nil",)
    assert read(src) is None


# (name, source, what Lua does with it as a .dat: "syntax" = rejects it when
# compiling, "runtime" = fails when running it, "code" = runs code to get a value)
INVALID_LITERALS = [
    ("function-call", b"f()", "runtime"),
    ("call-in-table", b'{print("x")}', "runtime"),
    ("global-field", b"math.huge", "runtime"),
    ("global-name", b"{x = y}", "ok-nil"),
    ("arithmetic", b"{1+2}", "code"),
    ("power", b"(2^2)", "code"),
    ("length", b'#"abc"', "code"),
    ("concat", b'"a" .. "b"', "code"),
    ("string-negation", b'{-"1"}', "code"),
    ("floor-division-by-zero", b"(1//0)", "runtime"),
    ("table-key", b"{[{}] = 1}", "code"),
    ("nil-key", b"{[nil] = 1}", "runtime"),
    ("nan-key", b"{[(0/0)] = 1}", "runtime"),
    ("unfinished-string", b'"unfinished', "syntax"),
    ("newline-in-string", b'"line\nnext"', "syntax"),
    ("unfinished-single-quoted", b"'abc", "syntax"),
    ("unfinished-long-string", b"[[unfinished", "syntax"),
    ("unfinished-long-comment", b"--[[ unfinished comment\n{}", "syntax"),
    ("decimal-escape-too-large", rb'"\400"', "syntax"),
    ("invalid-escape", rb'"\q"', "syntax"),
    ("short-hex-escape", rb'"\x4"', "syntax"),
    ("bad-hex-escape", rb'"\xg0"', "syntax"),
    ("unicode-escape-without-brace", rb'"\u41"', "syntax"),
    ("empty-unicode-escape", rb'"\u{}"', "syntax"),
    ("unclosed-unicode-escape", rb'"\u{41"', "syntax"),
    ("unicode-escape-too-large", rb'"\u{80000000}"', "syntax"),
    ("open-brace", b"{", "syntax"),
    ("close-brace", b"}", "syntax"),
    ("unclosed-table", b"{1", "syntax"),
    ("unclosed-nested-table", b"{{}", "syntax"),
    ("extra-close-brace", b"{}}", "syntax"),
    ("missing-separator", b"{1 2}", "syntax"),
    ("double-separator", b"{1,,2}", "syntax"),
    ("lone-separator", b"{,}", "syntax"),
    ("two-values", b"return 1 2", "syntax"),
    ("two-values-no-return", b"nil nil", "syntax"),
    ("keyword-name-key-end", b"{end = 1}", "syntax"),
    ("keyword-name-key-true", b"{true = 1}", "syntax"),
    ("keyword-name-key-nil", b"{nil = 1}", "syntax"),
    ("keyword-name-key-goto", b"{goto = 1}", "syntax"),
    ("bare-hex-prefix", b"0x", "syntax"),
    ("exponent-without-digits", b"1e", "syntax"),
    ("two-dots", b"3..2", "syntax"),
    ("number-touching-letter", b"1f", "syntax"),
    ("lone-minus", b"-", "syntax"),
    ("bare-name-value", b"{x}", "ok-nil"),
    ("dotted-key", b"{a.b = 1}", "syntax"),
    ("byte-order-mark", b"\xef\xbb\xbf{}", "syntax"),
    ("local-statement", b"local x = 1", "syntax"),
    ("json-array", b"return [1, 2];\n", "syntax"),
    ("json-array-entry", b"return {\n\t[1];\n};\n", "syntax"),
    ("json-array-value", b'return {\n\t["a"] = [];\n};\n', "syntax"),
    ("json-object", b'return {"a": 1};\n', "syntax"),
    ("json-object-nested", b'return {"a":"b","c":[1,{"d":[]}]};\n', "syntax"),
    ("json-null", b'return {\n\t["a"] = null;\n};\n', "ok-nil"),
]


@pytest.mark.parametrize("src, lua_outcome", [(s, o) for _, s, o in INVALID_LITERALS],
                         ids=[i for i, _, _ in INVALID_LITERALS])
def test_non_literal_is_rejected_with_position(oracle, src, lua_outcome):
    kind, detail = lua_verdict(oracle, "dat_verdict", src)
    if lua_outcome == "ok-nil":  # Lua reads the empty environment's global: nil
        assert kind == "ok", detail
    elif lua_outcome == "code":  # Lua gets a value only by running an operator
        assert kind == "ok", detail
    else:
        assert kind == lua_outcome, detail
    for max_depth in (DEFAULT_MAX_DEPTH, HUGE_DEPTH):
        with pytest.raises(LuaSyntaxError) as info:
            loads(src, max_depth=max_depth)
        err = info.value
        assert isinstance(err.lineno, int) and err.lineno >= 1
        assert isinstance(err.colno, int) and err.colno >= 1


@pytest.mark.parametrize("src, lua_outcome, lineno, colno", [
    (b'{\n  "a",\n  b\n}', "ok", 3, 3),
    (b'return {\n\t["k"] = "v";\n\t["x"] = "\\q";\n};\n', "syntax", 3, 11),
    (b"{\r\n1,\r\n2 3}", "syntax", 3, 3),
    (b"--[[ one\ntwo ]] {1, f()}", "runtime", 2, 12),
    (b'{"a",\n"b\n"}', "syntax", 2, 3),
], ids=["global-name", "bad-escape", "crlf-lines", "call-after-comment", "newline-in-string"])
def test_syntax_error_points_at_the_offending_token(oracle, src, lua_outcome, lineno, colno):
    kind, detail = lua_verdict(oracle, "dat_verdict", src)
    assert kind == lua_outcome, detail
    for max_depth in (DEFAULT_MAX_DEPTH, HUGE_DEPTH):
        with pytest.raises(LuaSyntaxError) as info:
            loads(src, max_depth=max_depth)
        assert (info.value.lineno, info.value.colno) == (lineno, colno)


# ---------------------------------------------------------------------------
# e. .list files


@PROPERTY_SETTINGS
@given(items=st.lists(inner_values, min_size=1, max_size=6))
def test_prosody_list_reads_the_same_from_a_stream(oracle, items):
    written = prosody_list(oracle, items)
    lua_items = lua_load_list(oracle, written)
    assert [canon(i) for i in read_list(written)] == lua_items
    assert [canon(i) for i in iter_list(io.BytesIO(written))] == lua_items


@PROPERTY_SETTINGS
@given(items=st.lists(inner_values, min_size=1, max_size=6))
def test_list_offsets_are_the_ends_of_prosodys_lines(oracle, items):
    ends, total = [], 0
    for item in items:
        total += len(prosody_list(oracle, [item]))
        ends.append(total)
    written = prosody_list(oracle, items)
    assert len(written) == total
    assert [end for end, _ in iter_list_with_offsets(written)] == ends
    assert [end for end, _ in iter_list_with_offsets(io.BytesIO(written))] == ends
    assert [end for end, _ in iter_list_with_offsets(written, max_depth=HUGE_DEPTH)] == ends


LIST_FORMS = [
    ("parenthesized", b'item(1);\nitem("two");\n'),
    ("no-semicolons", b"item(1)\nitem(2)\n"),
    ("one-line", b"item(1) item(2);item(3)"),
    ("table-call", b'item{1, 2};\nitem{a = "b"}\n'),
    ("string-call", b"item\"x\";\nitem'y'\n"),
    ("long-string-call", b"item[[x]];\nitem[==[y]]z]==]\n"),
    ("spaces-before-call", b"item (1);\nitem\t{2};\nitem \"3\"\n"),
    ("newline-before-paren", b"item\n(1)\n"),
    ("empty-statements", b";;item(1);;\n;item(2)"),
    ("nil-and-empty-items", b"item(nil);\nitem();\nitem{};\nitem(false)\n"),
    ("comments", b"-- head\nitem(1) --[[ mid\nitem(99) ]] item(2) -- tail"),
    ("prosody-0.9-style", b'item({\n\t[1] = "a";\n\t["when"] = 1700000002.1235;\n});\n'),
    ("empty-file", b""),
]


@pytest.mark.parametrize("src", [s for _, s in LIST_FORMS], ids=[i for i, _ in LIST_FORMS])
def test_list_item_forms_read_as_lua_reads_them(oracle, src):
    lua_items = lua_load_list(oracle, src)
    assert [canon(i) for i in read_list(src)] == lua_items
    assert [canon(i) for i in iter_list(io.BytesIO(src))] == lua_items


@pytest.mark.parametrize("src, lua_outcome", [
    (b"item(1) item(2", "syntax"),
    (b"item(f())", "runtime"),
    (b"items(1)", "runtime"),
    (b"return 1", "ok"),
    (b"item = 1", "ok"),
    (b"item(1)\nitem(2)\nitem(", "syntax"),
    (b"item( [1]);\n", "syntax"),
    (b'item({"a": 1});\n', "syntax"),
    (b"item({\n\t[1];\n});\n", "syntax"),
    (b"item(1);\nitem([2, 3]);\n", "syntax"),
], ids=["unclosed-call", "call-inside", "other-function", "return", "assignment",
        "truncated-last-line", "json-array", "json-object", "json-array-entry", "json-array-second-item"])
def test_list_statement_that_is_not_an_item_call_is_rejected(oracle, src, lua_outcome):
    kind, detail = lua_verdict(oracle, "list_verdict", src)
    assert kind == lua_outcome, detail
    for source in (src, io.BytesIO(src)):
        for max_depth in (DEFAULT_MAX_DEPTH, HUGE_DEPTH):
            if hasattr(source, "seek"):
                source.seek(0)
            with pytest.raises(LuaSyntaxError) as info:
                list(iter_list(source, max_depth=max_depth))
            assert info.value.lineno >= 1 and info.value.colno >= 1


@pytest.mark.parametrize("src", [
    b"item(1, 2);\nitem(3);\nitem(4);\n",
    b"item(1);\nitem(2, 3);\nitem(4);\nitem(5);\n",
    b'item("a", "b");\n',
])
def test_item_call_with_extra_arguments_is_rejected_or_read_as_lua_reads_it(oracle, src):
    """Lua passes only the first argument to ``item``; the others must not become items."""
    lua_items = lua_load_list(oracle, src)
    for source in (src, io.BytesIO(src)):
        for max_depth in (DEFAULT_MAX_DEPTH, HUGE_DEPTH):
            if hasattr(source, "seek"):
                source.seek(0)
            try:
                ours = [canon(i) for i in iter_list(source, max_depth=max_depth)]
            except LuaSyntaxError:
                continue
            assert ours == lua_items


def test_large_list_with_item_lines_inside_long_strings_reads_from_a_stream(oracle):
    """Statements longer than the stream's read size, holding lines that start with ``item``."""
    fake = "\n".join(f"item({i}); -- not a statement" for i in range(30000))
    src = (
        "item([==[\n" + fake + "\n]==]);\n"
        "item(1);\n"
        "--[[\n" + fake + "\n]]\n"
        "item{\"" + "x" * 300000 + "\", [[\nitem(2)\n]]};\n"
        "item(3);\n"
    ).encode()
    assert len(src) > 3 * (1 << 18)
    lua_items = lua_load_list(oracle, src)
    assert len(lua_items) == 4
    assert [canon(i) for i in iter_list(src)] == lua_items
    assert [canon(i) for i in iter_list(io.BytesIO(src))] == lua_items
    assert ([e for e, _ in iter_list_with_offsets(src)]
            == [e for e, _ in iter_list_with_offsets(io.BytesIO(src))])
