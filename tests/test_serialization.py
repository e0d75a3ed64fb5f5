"""The codec's own behaviour: data model, writer rules and errors, reader errors,
and the agreement of the JSON fast path with the real parser."""
from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import serialization as ser
from prosody_store import _fast_reader
from prosody_store.serialization import (
    FALSE_KEY,
    TRUE_KEY,
    BooleanKey,
    LuaSyntaxError,
    dump_dat,
    dump_item,
    dumps,
    iter_dumps_list,
    iter_list,
    iter_list_with_offsets,
    loads,
)

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "prosody-corpus"


# -- data model ------------------------------------------------------------------

def test_tables_become_lists_or_dicts():
    assert loads("{1, 2, 3}") == [1, 2, 3]
    assert loads("{}") == {}
    assert loads('{[2] = "b", [3] = "c"}') == {2: "b", 3: "c"}
    assert loads('{"x", nil, "z"}') == {1: "x", 3: "z"}
    assert loads('{a = 1, b = {}}') == {"a": 1, "b": {}}


def test_entries_keep_file_order():
    assert list(loads('{["b"] = 1; ["a"] = 2; [3] = 3; [false] = 4}')) == ["b", "a", 3, False]


def test_common_boolean_key_is_plain():
    roster = loads('{[false] = {["version"] = 3}; ["bob@example.com"] = {}}')
    assert roster[False] == {"version": 3}
    assert type(next(iter(roster))) is bool


def test_boolean_and_number_keys_both_survive():
    value = loads('{[true] = "t"; [1] = "one"; [false] = "f"; [0] = "zero"}')
    assert value == {TRUE_KEY: "t", 1: "one", FALSE_KEY: "f", 0: "zero"}
    assert dumps(value) == '{\n\t[true] = "t";\n\t"one";\n\t[false] = "f";\n\t[0] = "zero";\n}'
    assert loads(dumps(value)) == value


def test_marker_reverts_to_plain_boolean_when_number_key_goes():
    assert loads('{[1] = "one"; [true] = "t"; [1] = nil}') == {True: "t"}


def test_boolean_key_markers():
    assert BooleanKey(True) is TRUE_KEY and BooleanKey(0) is FALSE_KEY
    assert TRUE_KEY != True and TRUE_KEY != 1  # noqa: E712
    with pytest.raises(AttributeError):
        TRUE_KEY.value = False


def test_numbers_get_lua_54_types():
    assert type(loads("3")) is int and type(loads("3.0")) is float
    assert loads("9223372036854775807") == 2**63 - 1
    assert type(loads("9223372036854775808")) is float
    assert loads("0xffffffffffffffff") == -1
    assert loads("0x10") == 16 and loads("0x1p4") == 16.0
    assert loads("1e2") == 100.0 and type(loads("1e2")) is float
    assert math.isinf(loads("(1/0)")) and loads("(-1/0)") < 0 and math.isnan(loads("(0/0)"))


def test_values_prosody_writes_but_lua_retypes_are_kept():
    """-0 and math.mininteger: what Prosody wrote, so files round-trip."""
    neg_zero = loads("-0")
    assert neg_zero == 0 and math.copysign(1, neg_zero) == -1
    assert loads("-9223372036854775808") == -(2**63)
    assert type(loads("-9223372036854775808")) is int
    assert dumps(neg_zero) == "-0" and dumps(-(2**63)) == "-9223372036854775808"


def test_strings_are_str_when_utf8_else_bytes():
    assert loads(r'"\195\188"') == "ü"
    assert loads(r'"\255"') == b"\xff"
    assert loads(r'"\237\160\128"') == b"\xed\xa0\x80"  # a surrogate is not UTF-8


def test_duplicate_key_keeps_last_value():
    assert loads('{a = 1, a = 2}') == {"a": 2}


def test_positional_items_win_unless_flushed():
    assert loads('{[1] = "k", "a"}') == ["a"]
    fifty = ", ".join(str(i) for i in range(1, 52))
    assert loads("{" + fifty + ', [1] = "k"}')[0] == "k"


# -- writer ----------------------------------------------------------------------

def test_dumps_matches_prosody_layout():
    assert dumps({"a": [1, "x"], "e": {}}) == '{\n\t["a"] = {\n\t\t1;\n\t\t"x";\n\t};\n\t["e"] = {};\n}'
    assert dump_dat({"password": "x"}) == b'return {\n\t["password"] = "x";\n};\n'
    assert dump_item("x") == b'item("x");\n'
    assert dumps([]) == "{}" and dumps(None) == "nil"


def test_dumps_escapes_like_prosody():
    assert dumps("a\"b'c\\d\n\t\a\b\f\v\r\x00\x7f\u00fc") == (
        '"a\\"b\\\'c\\\\d\\n\\t\\a\\b\\f\\v\\r\\000\\127\\195\\188"')
    assert dumps(b"\xff") == '"\\255"'


def test_dumps_numbers_like_prosody():
    assert [dumps(x) for x in (0.1, 3.0, 1e17, -0.0, 2**63 - 1, 1e300)] == [
        "0.100000000000000006", "3", "100000000000000000", "-0", "9223372036854775807",
        "1.00000000000000005e+300"]


def test_dumps_keys_next_index_bare():
    assert dumps({7: "seven", 1: "one", 2: "two", 4: "four"}) == (
        '{\n\t[7] = "seven";\n\t"one";\n\t"two";\n\t[4] = "four";\n}')
    assert dumps([1, None, 3]) == "{\n\t1;\n\t[3] = 3;\n}"


@pytest.mark.parametrize("value,where", [
    ({"a": [1, object()]}, "value['a'][2]"),
    ({"a": {1: lambda: 0}}, "value['a'][1]"),
    ({(1, 2): 1}, "value"),
    ({"n": 2**64}, "value['n']"),
    ({"nan": {math.nan: 1}}, "value['nan']"),
])
def test_dumps_rejects_and_says_where(value, where):
    with pytest.raises((TypeError, ValueError)) as info:
        dumps(value)
    assert where in str(info.value)


def test_dumps_rejects_cycles_but_not_shared_values():
    shared = [1]
    assert dumps({"a": shared, "b": shared}).count("1;") == 2
    cyclic: dict = {"x": {}}
    cyclic["x"]["back"] = cyclic
    with pytest.raises(ValueError, match=r"value\['x'\]\['back'\].*cycle"):
        dumps(cyclic)


def test_dumps_rejects_depth_prosody_cannot_store():
    value: list = []
    for _ in range(127):
        value = [value or 1]
    dumps(value)  # 127 levels
    with pytest.raises(ValueError, match="deeper than 127"):
        dumps([value])


def test_dumps_rejects_keys_that_collide_in_lua():
    with pytest.raises(ValueError, match="twice"):
        dumps({"a": 1, b"a": 2})
    with pytest.raises(ValueError, match="twice"):
        dumps({True: 1, TRUE_KEY: 2})


# -- reader errors ---------------------------------------------------------------

@pytest.mark.parametrize("text,line,col", [
    ("{\n  a = ,\n}", 2, 7),
    ('{"x" "y"}', 1, 6),
    ("return print(1)", 1, 8),
    ("{1+2}", 1, 3),
    ('"abc', 1, 5),
    ("{[nil] = 1}", 1, 2),
    ("{\n\n\t[(0/0)] = 1}", 3, 2),
    ('"\\x4"', 1, 2),
    ('"\\u0041"', 1, 2),
    ('"\\400"', 1, 2),
])
def test_syntax_errors_carry_position(text, line, col):
    with pytest.raises(LuaSyntaxError) as info:
        loads(text)
    err = info.value
    assert (err.lineno, err.colno) == (line, col), str(err)
    assert f"line {line}, column {col}" in str(err)


def test_nesting_limit_is_a_syntax_error():
    with pytest.raises(LuaSyntaxError, match="deeper than 1000"):
        loads("{" * 1001 + "}" * 1001)
    assert loads("{" * 5 + "}" * 5, max_depth=5) == [[[[{}]]]]
    with pytest.raises(LuaSyntaxError, match="deeper than 4"):
        loads("{" * 5 + "}" * 5, max_depth=4)


def test_list_errors_report_file_line():
    data = b'item({\n\t["a"] = 1;\n});\nitem({\n\t["b"] = ;\n});\n'
    with pytest.raises(LuaSyntaxError) as info:
        list(iter_list(io.BytesIO(data)))
    assert (info.value.lineno, info.value.colno) == (5, 10)


# -- lists -----------------------------------------------------------------------

def test_list_call_forms_and_nil_items():
    data = b'item({1});item"s"\nitem[[long]];item{a=1}\nitem(nil);item()\n'
    assert list(iter_list(data)) == [[1], "s", "long", {"a": 1}]


def test_list_offsets_are_statement_ends():
    data = b'item("a");\nitem({\n\t1;\n});\n'
    assert [end for end, _ in iter_list_with_offsets(data)] == [11, len(data)]


def test_list_item_holding_item_lines_in_long_string(monkeypatch):
    monkeypatch.setattr(ser, "_READ_SIZE", 8)
    data = b'item([[\nitem(1);\nitem(2);\n]]);\nitem(3);\n'
    assert list(iter_list(io.BytesIO(data))) == ["item(1);\nitem(2);\n", 3]


# -- the JSON fast path agrees with the real parser ------------------------------

# Below the fast path's threshold, so these always use the parser.
SLOW_DEPTH = ser.FAST_PATH_MAX_DEPTH - 1


def slow_loads(data: bytes):
    return loads(data, max_depth=SLOW_DEPTH)


def slow_items(data: bytes):
    return list(iter_list(data, max_depth=SLOW_DEPTH))


def same(a, b) -> bool:
    """Equal, with NaN equal to itself and -0.0 told apart from 0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def check_fast_path(data: bytes) -> bool:
    """The fast path declines or gives exactly the real parser's value; True if it took ``data``."""
    is_value = data.startswith(b"return")
    if is_value:
        ok, fast = _fast_reader.read_value(data, ser._parse_key)
    else:
        fast = _fast_reader.read_items(data, ser._parse_key)
        ok = fast is not None
    if not ok:
        return False
    try:
        expected = slow_loads(data) if is_value else slow_items(data)
    except LuaSyntaxError:
        pytest.fail(f"the fast path accepted what Lua rejects: {data!r}")
    assert same(fast, expected), data
    return True


CORPUS_DATS = sorted(CORPUS.rglob("*.dat"))
CORPUS_LISTS = sorted(CORPUS.rglob("*.list"))


@pytest.mark.parametrize("path", CORPUS_DATS + CORPUS_LISTS, ids=lambda p: str(p.relative_to(CORPUS)))
def test_fast_path_agrees_on_corpus(path):
    data = path.read_bytes()
    if path.suffix == ".dat":
        ok, value = _fast_reader.read_value(data, ser._parse_key)
        if ok:
            assert same(value, slow_loads(data))
        assert same(loads(data), slow_loads(data))
    else:
        items = _fast_reader.read_items(data, ser._parse_key)
        if items is not None:
            assert same(items, slow_items(data))
        assert same(list(iter_list(data)), slow_items(data))


def test_fast_path_is_taken_for_prosody_output():
    data = (CORPUS / "prosody-0.12" / "example%2ecom" / "archive" / "alice.list").read_bytes()
    assert _fast_reader.read_items(data, ser._parse_key) is not None
    tables = (CORPUS / "prosody-0.12" / "example%2ecom" / "edge" / "tables.dat").read_bytes()
    assert _fast_reader.read_value(tables, ser._parse_key)[0]


scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=True) | st.text() | st.binary(max_size=8))
keys = (st.text(max_size=6) | st.integers(-3, 6) | st.booleans() | st.sampled_from([TRUE_KEY, FALSE_KEY])
        | st.floats(allow_nan=False, width=32))
values = st.recursive(
    scalars.filter(lambda v: v is not None),
    lambda inner: st.lists(inner, min_size=1, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=20)


def lua_safe(value) -> bool:
    try:
        dumps(value)
        return True
    except (TypeError, ValueError):
        return False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, max_size=5))
def test_iter_dumps_list_is_dumps_piece_by_piece(items):
    try:
        whole = dumps(items)
    except (TypeError, ValueError) as err:
        with pytest.raises(type(err)):
            "".join(iter_dumps_list(items))
        return
    assert "".join(iter_dumps_list(items)) == whole
    assert "".join(iter_dumps_list(iter(items))) == whole  # any iterable


def test_iter_dumps_list_refuses_holes():
    with pytest.raises(ValueError, match="hole"):
        list(iter_dumps_list([1, None, 2]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_fast_path_agrees_on_generated_values(value):
    if not lua_safe(value):
        return
    dat = dump_dat(value)
    assert same(loads(dat), slow_loads(dat))
    ok, fast = _fast_reader.read_value(dat, ser._parse_key)
    if ok:
        assert same(fast, slow_loads(dat))
    items = b"".join(dump_item(v) for v in (value, value))
    assert same(list(iter_list(items)), slow_items(items))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 10_000))
def test_fast_path_agrees_on_mutated_prosody_output(noise, where):
    data = bytearray((CORPUS / "prosody-0.12" / "example%2ecom" / "roster" / "alice.dat").read_bytes())
    where %= len(data)
    data[where:where + len(noise) // 2] = noise
    check_fast_path(bytes(data))


@pytest.mark.parametrize("escapes,expected", [
    (b"\\000\\195\\188", "\x00\u00fc"),
    (b"\\092\\\\\\'\\a\\v\\034", "\\\\'\x07\x0b\""),
    (b"\\240\\159\\152\\128 \\228\\184\\173", "\U0001f600 \u4e2d"),
])
def test_fast_path_escape_runs(escapes, expected):
    text = _fast_reader._decode_escapes(b'"' + escapes + b'"')
    assert text.isascii()
    assert json.loads(text) == expected


@pytest.mark.parametrize("escapes", [
    b"\\256", b"\\999", b"\\300\\001",  # above 255: Lua rejects them
    b"\\255", b"\\195",  # not UTF-8: bytes, built by the real parser
    b"\\127",  # DEL, the fast path's own marker
    b"\\u0041", b"\\/", b"\\[", b"\\:",  # JSON escapes, or ones that would become JSON escapes
    b"\\092\\117\\127\\102",  # a backslash and "u", DEL, "f"
    b"\\052", b"\\032",  # printable ASCII, never escaped by Prosody
])
def test_fast_path_escape_runs_declined(escapes):
    with pytest.raises(_fast_reader._Decline):
        _fast_reader._decode_escapes(b'"' + escapes + b'"')


def test_fast_path_escape_runs_cached_or_not_agree(monkeypatch):
    """Runs come from the memo, from one conversion of the new ones, or all converted at once."""
    words = [b"\\208\\159\\209\\128", b"caf\\195\\169", b"\\226\\130\\172", b"\\092\\'x\\a"]
    new = [b"\\228\\184\\173", b"\\240\\159\\145\\141", b"na\\195\\175ve"]
    text = b'"' + b" ".join(words * 3 + new + words) + b'"'
    monkeypatch.setattr(_fast_reader, "_RUN_CACHE", {})
    cold = _fast_reader._decode_escapes(text)  # few distinct runs: converted once each, then memoized
    assert len(_fast_reader._RUN_CACHE) == 8
    assert _fast_reader._decode_escapes(text) == cold  # all from the memo
    monkeypatch.setattr(_fast_reader, "_RUN_CACHE", {})
    _fast_reader._decode_escapes(b'"' + b" ".join(words) + b'"')
    assert _fast_reader._decode_escapes(text) == cold  # some from the memo, the rest converted
    distinct = b'"' + b" ".join(b"\\%03d\\%03d" % (194 + i // 64, 128 + i % 64) for i in range(600)) + b'"'
    monkeypatch.setattr(_fast_reader, "_RUN_CACHE", {})
    assert json.loads(_fast_reader._decode_escapes(distinct)) == " ".join(chr(128 + i) for i in range(600))
    assert _fast_reader._RUN_CACHE == {}  # mostly distinct runs are converted, not memoized
    assert json.loads(cold) == ser.loads(text)  # what the real parser reads


def test_fast_path_long_runs_are_not_memoized(monkeypatch):
    monkeypatch.setattr(_fast_reader, "_RUN_CACHE", {})
    long_run = b"\\195\\169" * 40
    text = b'"' + b" ".join([long_run, b"\\195\\169"] * 3) + b'"'
    assert json.loads(_fast_reader._decode_escapes(text)) == " ".join(["\u00e9" * 40, "\u00e9"] * 3)
    assert list(_fast_reader._RUN_CACHE) == [b"195\\169"]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_fast_path_reads_every_byte_escaped(raw):
    data = dump_dat({"s": raw})
    assert same(loads(data), slow_loads(data))
    assert loads(data)["s"] == ser._text(raw)


@pytest.mark.parametrize("data", [
    b'return {\n\t["a"] = "x\ny";\n};\n',      # a raw line break inside a string
    b'item({\n\t"x\ny";\n});\n',
    # found by differential fuzzing of the fast path against the real parser:
    b'return {"a"] = 1;\n};\n',                  # a key without its "[": JSON-shaped once converted
    b'return {\n\t["b"] = {\t"a"] = 1;\n\t};\n};\n',
    b'return {\n\t["a"] = (1/0)1700000000;\n};\n',  # a number after an infinity
    b'item({\n\t(-1/0)5;\n});\n',
    b'return {\n\t["a"] = {;\n\t};\n};\n',        # a separator without a field
    b'return {\n\t["a"] = 17000\\05211;\n};\n',  # an escape outside a string
    b'return {\n\t["a"]\\032= 1;\n};\n',
    b'return {\n\t["x"] = {};\n\t[";\n}ubscription"] = "from";\n};\n',  # a line break inside a key
    b'return {\n\t["a"] = 1;\n\t["] = \\\n"2023-11-15T02 =:40:27Z";\n};\n',
])
def test_fast_path_declines_what_lua_rejects(data):
    with pytest.raises(LuaSyntaxError):
        list(iter_list(data)) if data.startswith(b"item") else loads(data)


def test_fast_path_escaped_quote_before_key_end_text():
    data = b'return {\n\t["a\\"] = "] = 1;\n};\n'  # the key is  a"] =
    assert not _fast_reader.read_value(data, ser._parse_key)[0]
    assert loads(data) == slow_loads(data) == {'a"] = ': 1}


@pytest.mark.parametrize("escape", [b"\\[", b"\\]", b"\\,", b"\\:", b"\\x4", b"\\q", b"\\a\\v"])
def test_fast_path_never_accepts_bad_escapes(escape):
    check_fast_path(b'return {\n\t["a"] = "x' + escape + b'y";\n};\n')


def test_list_comment_lines_between_items_with_small_reads(monkeypatch):
    """A segment can hold no whole statement (only a comment); reading must still go on."""
    monkeypatch.setattr(ser, "_READ_SIZE", 8)
    data = b"item(1);\n-- c\nitem(2);\n-- d\n\nitem(3);\n"
    assert list(iter_list(io.BytesIO(data))) == [1, 2, 3]


# Pieces of Prosody's layout and of what the fast path rewrites: spliced into
# real files, they find the places where JSON and Lua part ways.
MUTATION_TOKENS = [
    b"\\", b"\\\\", b"\\'", b"\\127", b"\\092", b"\\034", b"\\256", b"\\195", b"\\u007f", b"\x7f",
    b"\t", b"\n", b";\n", b"{\n", b"}", b"[", b"]", b'"] = ', b'["', b",", b":", b"(0/0)",
    b"(1/0)", b"(-1/0)", b"null", b"NaN", b"[3] = ", b"[true] = ", b"\\a", b"\\v", b'\\"', b"-0",
    b"1e999", b"\r", b"\xc3\xa9", b"\xff", b"{", b" ", b'"', b"--", b"[[", b"item(", b");\n",
]


def test_fast_path_agrees_on_token_mutations():
    """Fast path against the real parser on 4,000 real files with Prosody's own tokens spliced in."""
    rng = random.Random(20261129)
    samples = [p.read_bytes() for p in CORPUS_DATS + CORPUS_LISTS]
    samples = [s for s in samples if len(s) < 20_000]
    taken = 0
    for _ in range(4000):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(data) + 1)
            r = rng.random()
            if r < 0.6:
                data[where:where] = rng.choice(MUTATION_TOKENS)
            elif r < 0.85:
                del data[where:where + rng.randint(1, 6)]
            else:
                data[where:where + 1] = bytes([rng.randrange(256)])
        taken += check_fast_path(bytes(data))
    assert taken > 400  # enough of the mutants are still Prosody's layout to exercise the fast path
