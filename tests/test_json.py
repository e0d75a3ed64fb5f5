"""prosody_store.json against hand-made cases and against Prosody's own util.json."""
from __future__ import annotations

import json as stdjson
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.json import (
    JSONDecodeError,
    _NAN_TEXT,
    dumpb,
    dumps,
    iter_dumpb_array,
    iter_dumps_array,
    loads,
    strict_numbers,
)
from prosody_store.serialization import FALSE_KEY, TRUE_KEY, BooleanKey
from tests.tagged import canon, canon_tagged, is_utf8, tagged_json

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------
# Hand-written cases

ENCODE_CASES = [
    (None, "null"),
    (True, "true"),
    (False, "false"),
    (0, "0"),
    (-(1 << 63), "-9223372036854775808"),
    (1.0, "1.0"),
    (-0.0, "-0.0"),
    (0.1, "0.1"),
    (100000.0, "100000.0"),
    (1e15, "1e+15"),
    (2.0 ** 53, "9.007199254741e+15"),
    (1e-5, "1e-05"),
    (123.456, "123.456"),
    (math.inf, "inf"),
    (-math.inf, "-inf"),
    (math.nan, _NAN_TEXT),
    ("", '""'),
    ('a/"\\\x7f', '"a/\\"\\\\\x7f"'),
    ("\b\f\n\r\t\x00\x1f\x0b", '"\\b\\f\\n\\r\\t\\u0000\\u001F\\u000B"'),
    ("é中😀", '"é中😀"'),
    ([], "{}"),
    ({}, "{}"),
    ([1, "a", [2]], '[1,"a",[2]]'),
    ({1: "a", 2: "b"}, '["a","b"]'),
    ({2: "b", 1: "a"}, '["a","b"]'),
    ({1: 1, 2: 2, "x": 3}, '{"x":3,"__array":[1,2]}'),
    ({"x": 3, 1: 1}, '{"x":3,"__array":[1]}'),
    ({2: 2}, '{"__hash":[2,2]}'),
    ({0: "z", 1: "a"}, '{"__hash":[0,"z"],"__array":["a"]}'),
    ({1.5: 1}, '{"__hash":[1.5,1]}'),
    ({2.0: "two", 1: "one"}, '["one","two"]'),
    ({True: "t"}, '{"__hash":[true,"t"]}'),
    ({1: "one", TRUE_KEY: "t"}, '{"__hash":[true,"t"],"__array":["one"]}'),
    ({"__array": 3}, '{"__hash":["__array",3]}'),
    ({"__hash": [1]}, '{"__hash":["__hash",[1]]}'),
    ([1, None, 3], '{"__hash":[3,3],"__array":[1]}'),
    ({"a": None, "b": 1}, '{"b":1}'),
    ({"a": None}, "{}"),
    ((1, 2), "[1,2]"),
    ([[[]]], "[[{}]]"),
]


@pytest.mark.parametrize("value, expected", ENCODE_CASES, ids=repr)
def test_dumps_cases(value: Any, expected: str) -> None:
    assert dumps(value) == expected


def test_dumps_bytes_are_raw() -> None:
    assert dumpb(b"\xff\x00a") == b'"\xff\\u0000a"'
    assert dumpb({"k": [b"\xc3"]}) == b'{"k":[' + b'"\xc3"' + b"]}"
    assert dumps(b"\xff").encode("utf-8", "surrogateescape") == b'"\xff"'
    assert dumpb({b"\xfe": 1}) == b'{"\xfe":1}'


def test_dumps_sort_keys() -> None:
    value = {"b": 1, "a": 2, "é": 3, "z": 4, 5: 5}
    assert dumps(value, sort_keys=True) == '{"a":2,"b":1,"z":4,"é":3,"__hash":[5,5]}'


@pytest.mark.parametrize("value, error", [
    (1 << 63, ValueError),
    ({math.nan: 1}, ValueError),
    ("\ud800", ValueError),
    ({True: 1, TRUE_KEY: 2}, ValueError),
    (object(), TypeError),
    ({(1, 2): 1}, TypeError),
    ({None: 1}, TypeError),
])
def test_dumps_rejects(value: Any, error: type) -> None:
    with pytest.raises(error):
        dumps(value)


def test_dumps_deep_and_cycles() -> None:
    deep: Any = 1
    for _ in range(999):
        deep = [deep]
    assert dumps(deep) == "[" * 999 + "1" + "]" * 999
    with pytest.raises(ValueError):
        dumps([deep, [deep]], max_depth=999)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        dumps(cyclic)


def test_iter_dumps_array() -> None:
    items = [1, {"a": [1, 2]}, "x", b"\xff", 1.0]
    pieces = list(iter_dumps_array(iter(items)))
    assert pieces[0] == "[" and pieces[-1] == "]"
    assert "".join(pieces) == dumps(items)
    assert b"".join(iter_dumpb_array(items)) == dumpb(items)
    assert "".join(iter_dumps_array([])) == dumps([]) == "{}"
    with pytest.raises(ValueError):
        list(iter_dumps_array([1, None]))


DECODE_CASES = [
    ("null", None),
    (" true ", True),
    ("false", False),
    ("0", 0),
    ("-0", 0),
    ("01", 1),
    ("1.", 1.0),
    ("-.5", -0.5),
    ("1e2", 100.0),
    ("1E+2", 100.0),
    ("1.0", 1.0),
    ("-0.0", -0.0),
    ("1e400", math.inf),
    ("-1e400", -math.inf),
    ("9223372036854775807", (1 << 63) - 1),
    ("9223372036854775808", 9223372036854775808.0),
    ("-9223372036854775808", -(1 << 63)),
    ("000000000000000000000000042", 42),
    ('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"', 'a"b\\c/d\b\f\n\r\t'),
    ('"\\u00e9\\u00E9\\ud83d\\ude00\\u0000"', "éé😀\x00"),
    ('"\\a\\x\\\'"', "\\a\\x\\'"),
    ('"raw\ttab\x01"', "raw\ttab\x01"),
    (b'"\xff\xfe"', b"\xff\xfe"),
    (b'"\xc3\xa9"', "é"),
    ("[]", {}),
    ("{}", {}),
    ("[1,2]", [1, 2]),
    ("[1,null,3]", {1: 1, 3: 3}),
    ("[null]", {}),
    ("[1,2,null]", [1, 2]),
    ('{"a":1,"a":2}', {"a": 2}),
    ('{"a":1,"a":null}', {}),
    ('{"a":null}', {}),
    ('{"x":3,"__array":[1,2]}', {1: 1, 2: 2, "x": 3}),
    ('{"__array":[1,2]}', [1, 2]),
    ('{"__array":[1,null,3]}', {1: 1, 3: 3}),
    ('{"__hash":[1,"a",2,"b"]}', ["a", "b"]),
    ('{"__hash":[true,1,1,2]}', {TRUE_KEY: 1, 1: 2}),
    ('{"__hash":[false,1]}', {False: 1}),
    ('{"__hash":[false,1,0,0]}', {FALSE_KEY: 1, 0: 0}),
    ('{"__hash":[1.0,"a"]}', ["a"]),
    ('{"__hash":[1.5,"a",-0.0,"z"]}', {1.5: "a", 0: "z"}),
    ('{"__hash":["k",1,"dangling"]}', {"k": 1}),
    ('{"__array":[1,2],"__hash":[2,null]}', [1]),
    ('{"__hash":["__array",[5]]}', {"__array": [5]}),
    ('{"__array":[1],}', {"__array": [1]}),
    ('{"a":1,}', {"a": 1}),
    ('{"__array":false}', {"__array": False}),
    ('{"__array":null}', {}),
    ('{"__array":"str","a":1}', {"a": 1}),
    ('{"__array":{"__array":[1,null,3]}}', {1: 1, 3: 3}),
    ('{"__array":{"x":1}}', {}),
    ('{"__hash":[null,null,[1],null]}', {}),
    ('{"__array":{"__hash":[null,0,[1],2,3,"c"]}}', {}),
    (' \t\r\n[ 1 , { "a" : [ ] } ] \n', [1, {"a": {}}]),
]


@pytest.mark.parametrize("text, expected", DECODE_CASES, ids=repr)
def test_loads_cases(text: str | bytes, expected: Any) -> None:
    result = loads(text)
    assert canon(result) == canon(expected)
    assert result == expected or (isinstance(expected, float) and math.isnan(expected))
    _check_model(result)


BAD_JSON = [
    "", " ", "[", "]", "{", "[1,]", "[,1]", "[1 2]", '{"a"}', '{"a":}', '{"a" 1}', "{1:2}",
    "nul", "tru", "fals", "nan", "inf", "-nan", "-inf", "-", "1e", "1-2", "1.2.3", ".5", "+1",
    "0x10", '"abc', '"\\u12"', '"\\uZZZZ"', '"\\ud800"', '"\\udc00\\ud800"', "[1]x", "1 2",
    '"\\', "\ufeff1", '{"__array":1}', '{"__hash":true}', '{"__hash":[null,1]}',
    '{"__hash":[[1],2]}', '{"__hash":[{},2]}',
]


@pytest.mark.parametrize("text", BAD_JSON, ids=repr)
def test_loads_rejects(text: str) -> None:
    with pytest.raises(JSONDecodeError):
        loads(text)


def test_decode_error_position() -> None:
    with pytest.raises(JSONDecodeError) as info:
        loads('{"a":\n  [1,,2]}')
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.pos, err.lineno, err.colno) == (11, 2, 6)
    assert "line 2 column 6" in str(err)


def test_loads_depth_limit() -> None:
    nested = loads("[" * 1000 + "1" + "]" * 1000)
    depth = 0
    while isinstance(nested, list):
        nested, depth = nested[0], depth + 1
    assert depth == 1000
    with pytest.raises(JSONDecodeError):
        loads("[" * 1001 + "]" * 1001)
    with pytest.raises(JSONDecodeError):
        loads('{"a":' * 200_000)
    assert loads("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(JSONDecodeError):
        loads("[[[1]]]", max_depth=2)


# ---------------------------------------------------------------------------
# Properties


def _check_model(v: Any) -> None:
    """Decoded values follow the data model: lists for keys 1..n, dicts otherwise."""
    if isinstance(v, list):
        assert v and all(x is not None for x in v)
        for x in v:
            _check_model(x)
    elif isinstance(v, dict):
        keys = list(v)
        assert not (keys and all(type(k) is int for k in keys)
                    and sorted(keys) == list(range(1, len(keys) + 1)))
        for k, x in v.items():
            assert x is not None
            if isinstance(k, BooleanKey):
                assert (1 if k.value else 0) in v
            _check_model(x)


SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(-3, 5),
    st.floats(),
    st.sampled_from([0.0, -0.0, 1.0, 1e15, 1e16, 0.1, 2.0 ** 63, 1e300, 5e-324]),
    st.text(max_size=8),
    st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=4),
    st.binary(max_size=4).filter(lambda b: not is_utf8(b)),
)
KEYS = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["__array", "__hash", "a", "b"]),
    st.integers(-2, 6),
    st.floats(allow_nan=False),
    st.booleans(),
    st.sampled_from([TRUE_KEY, FALSE_KEY]),
)


def _valid_keys(d: dict) -> bool:
    return not ((True in d and any(k is TRUE_KEY for k in d)) or
                (False in d and any(k is FALSE_KEY for k in d)))


VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(st.one_of(children, st.none()), max_size=4),
        st.dictionaries(KEYS, st.one_of(children, st.none()), max_size=5).filter(_valid_keys),
    ),
    max_leaves=20,
)


def _lua_view(t: Any) -> tuple[list, list, int]:
    """(string members, other keys outside 1..n, n) of a table, as util.json splits them."""
    if isinstance(t, (list, tuple)):
        entries = {i: v for i, v in enumerate(t, 1) if v is not None}
    else:
        entries = {}
        for k, v in t.items():
            if v is None:
                continue
            if isinstance(k, float) and k.is_integer():
                k = int(k)
            entries[k] = v
    entries = {(TRUE_KEY if k else FALSE_KEY) if k.__class__ is bool else k: v
               for k, v in entries.items()}
    n = 0
    while (n + 1) in entries:
        n += 1
    members = [k for k in entries if isinstance(k, str) and k not in ("__array", "__hash")]
    others = [k for k in entries if k not in members and not (type(k) is int and 1 <= k <= n)]
    return members, others, n


def _ambiguous(v: Any) -> bool:
    """Whether Lua's pairs order could matter for this value's JSON."""
    if isinstance(v, (list, tuple, dict)):
        members, others, _ = _lua_view(v)
        children = v.values() if isinstance(v, dict) else v
        return (len(members) > 1 or len(others) > 1
                or any(_ambiguous(x) for x in children if x is not None))
    return False


_NONFINITE = re.compile(r"(?:(?<=[\[,:])|^)(-?nan|-?inf)(?=[,\]}]|$)")


def _structure(text: bytes) -> Any:
    """JSON text as an order-insensitive structure (members and __hash pairs unordered)."""
    def fix(m: re.Match) -> str:
        return {"inf": "1e999", "-inf": "-1e999"}.get(m.group(1), "NaN")

    def number(text: str) -> tuple:
        return ("num", text)

    source = _NONFINITE.sub(fix, text.decode("utf-8", "surrogateescape"))
    value = stdjson.loads(source, object_pairs_hook=lambda items: ("obj", items),
                          parse_float=number, parse_int=number, parse_constant=number,
                          strict=False)
    return _freeze(value)


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple) and v[0] == "obj":
        members = []
        for k, x in v[1]:
            if k == "__hash" and isinstance(x, list):
                x = ("__hash", frozenset(zip(map(_freeze, x[0::2]), map(_freeze, x[1::2]))))
            else:
                x = _freeze(x)
            members.append((k, x))
        return ("obj", frozenset(members))
    return v


FINITE_VALUES = st.recursive(
    SCALARS.filter(lambda v: not isinstance(v, float) or _survives_14_digits(v)),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(st.one_of(children, st.none()), max_size=4),
        st.dictionaries(KEYS.filter(lambda k: not isinstance(k, float)
                                    or (_survives_14_digits(k) and not k.is_integer())),
                        st.one_of(children, st.none()), max_size=5).filter(_valid_keys),
    ),
    max_leaves=20,
)


def _survives_14_digits(x: float) -> bool:
    """Finite and written exactly by util.json's %.14g (other floats lose digits)."""
    return math.isfinite(x) and float("%.14g" % x) == x


def test_floats_keep_only_14_digits() -> None:
    assert dumps(0.1 + 0.2) == "0.3"
    assert loads(dumps(100000000000001.0)) == 1e14
    assert loads(dumps(2.0 ** 53)) == 9.007199254741e15


@SETTINGS
@given(FINITE_VALUES)
def test_roundtrip(value: Any) -> None:
    text = dumpb(value)
    back = loads(text)
    assert canon(back) == canon(value)
    _check_model(back)
    assert dumpb(back) == text or _ambiguous(value)


def test_nonfinite_is_not_read_back() -> None:
    for value in (math.inf, [math.nan], {"a": -math.inf}):
        with pytest.raises(JSONDecodeError):
            loads(dumps(value))


@SETTINGS
@given(st.lists(VALUES.filter(lambda v: v is not None), max_size=6))
def test_iter_dumps_array_matches_dumps(items: list) -> None:
    assert "".join(iter_dumps_array(items)) == dumps(items)


@SETTINGS
@given(VALUES)
def test_strict_output_is_always_valid_json(value: Any) -> None:
    """strict=True (what the HTTP service sends): any value gives text a strict JSON
    reader accepts; a value without inf or nan gives exactly Prosody's text."""
    text = dumps(value, strict=True)
    stdjson.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text}"))
    if "inf" not in dumps(value) and "nan" not in dumps(value):
        assert text == dumps(value)
    if value is not None:
        assert "".join(iter_dumps_array([value], strict=True)) == "[" + text + "]"


def test_strict_numbers() -> None:
    assert dumps({"a": math.inf, "b": [-math.inf, math.nan]}, strict=True) == \
        '{"a":1e999,"b":[-1e999,null]}'
    unchanged = {"x": [1, 2.5], "y": "inf"}
    assert strict_numbers(unchanged) is unchanged


# ---------------------------------------------------------------------------
# Against Prosody's util.json


def _prosody_encode(oracle, value: Any, command: str = "json_oracle.encode") -> bytes:
    return oracle.call(command, tagged_json(value))


@pytest.mark.interop
@pytest.mark.parametrize("value, expected", [c for c in ENCODE_CASES if c[0] is not None], ids=repr)
def test_encode_cases_match_prosody(oracle, value: Any, expected: str) -> None:
    # (A bare nil cannot travel through tagged.lua; its plain case is tested above.)
    assert _prosody_encode(oracle, value) == dumpb(value)


@pytest.mark.interop
@SETTINGS
@given(VALUES)
def test_encode_matches_prosody(oracle, value: Any) -> None:
    ours = dumpb(value)
    theirs = _prosody_encode(oracle, value)
    if _ambiguous(value):
        assert _structure(ours) == _structure(theirs)
    else:
        assert ours == theirs


@pytest.mark.interop
@SETTINGS
@given(VALUES)
def test_encode_ordered_matches_prosody(oracle, value: Any) -> None:
    ours = dumpb(value, sort_keys=True)
    theirs = _prosody_encode(oracle, value, "json_oracle.encode_ordered")
    assert _structure(ours) == _structure(theirs)
    if not _hash_ambiguous(value):
        assert ours == theirs


def _hash_ambiguous(v: Any) -> bool:
    if isinstance(v, (list, tuple, dict)):
        _, others, _ = _lua_view(v)
        children = v.values() if isinstance(v, dict) else v
        return len(others) > 1 or any(_hash_ambiguous(x) for x in children if x is not None)
    return False


def _prosody_decode(oracle, text: bytes) -> Any:
    """canon of what util.json.decode gives, or None where it fails."""
    from tests.oracle import OracleError
    try:
        return canon_tagged(stdjson.loads(oracle.call("json_oracle.decode", text)))
    except OracleError:
        return None


def _ours_decode(text: bytes) -> Any:
    try:
        value = loads(text)
    except JSONDecodeError:
        return None
    _check_model(value)
    return canon(value)


@pytest.mark.interop
@pytest.mark.parametrize("text", [c[0] for c in DECODE_CASES] + BAD_JSON, ids=repr)
def test_decode_cases_match_prosody(oracle, text: str | bytes) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    assert _ours_decode(data) == _prosody_decode(oracle, data)


# Generated JSON-ish documents: valid JSON, Prosody's quirks and near misses.
WS = st.sampled_from([b"", b"", b" ", b"\n\t ", b"\r\n"])
NUMBERS = st.one_of(
    st.sampled_from([b"0", b"-0", b"01", b"1.", b"-.5", b"1e400", b"-1e400", b"1e-400",
                     b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
                     b"-9223372036854775809", b"1.5e3", b"1E+2", b"0.1", b"2.0", b"1e",
                     b"1-2", b"--1", b"1.2.3", b"123456789012345678901234567890", b"-",
                     b"00", b"1e+5", b"-0.0", b"5e-324"]),
    st.integers(-(1 << 64), 1 << 64).map(lambda i: str(i).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
)
STRING_PIECES = st.one_of(
    st.sampled_from([b'\\"', b"\\\\", b"\\/", b"\\b", b"\\f", b"\\n", b"\\r", b"\\t",
                     b"\\u00e9", b"\\u00E9", b"\\u0000", b"\\uD83D\\uDE00", b"\\ud83d\\ude00",
                     b"\\ud800", b"\\udc00", b"\\a", b"\\u12", b"\\uZZZZ", b"\\x", b"\\'",
                     b"\\u005c", b"\\\\u0041", b"\xff", b"\xc3\xa9", b"\x01", b"\n", b"\x7f",
                     b"\xe2\x82", b"__array"]),
    st.text(alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cs",)),
            max_size=5).map(lambda s: s.encode("utf-8")),
)
STRINGS = st.lists(STRING_PIECES, max_size=5).map(lambda p: b'"' + b"".join(p) + b'"')
KEY_TEXT = st.one_of(st.sampled_from([b'"a"', b'"b"', b'"__array"', b'"__hash"', b'"1"',
                                      b'"x\\u0041"', b'"a"']), STRINGS)
JSON_SCALARS = st.one_of(NUMBERS, STRINGS, st.sampled_from([b"null", b"true", b"false"]))


def _array(items: list, ws: bytes) -> bytes:
    return b"[" + ws + (ws + b"," + ws).join(items) + ws + b"]"


def _object(members: list, trailing: bool, ws: bytes) -> bytes:
    body = b",".join(ws + k + ws + b":" + ws + v for k, v in members)
    return b"{" + body + (b"," if trailing and members else b"") + ws + b"}"


JSON_DOCS = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.builds(_array, st.lists(children, max_size=5), WS),
        st.builds(_object, st.lists(st.tuples(KEY_TEXT, children), max_size=5),
                  st.booleans(), WS),
        st.builds(lambda a, h, x, ws: _object(
            [(b'"__array"', a), (b'"__hash"', h)] + x, False, ws),
            st.builds(_array, st.lists(children, max_size=4), WS),
            st.builds(_array, st.lists(st.one_of(JSON_SCALARS, children), max_size=6), WS),
            st.lists(st.tuples(KEY_TEXT, children), max_size=2), WS),
    ),
    max_leaves=15,
)


@pytest.mark.interop
@SETTINGS
@given(JSON_DOCS)
def test_decode_matches_prosody(oracle, text: bytes) -> None:
    assert _ours_decode(text) == _prosody_decode(oracle, text)


@pytest.mark.interop
@SETTINGS
@given(JSON_DOCS, st.data())
def test_decode_mutated_matches_prosody(oracle, text: bytes, data) -> None:
    pos = data.draw(st.integers(0, len(text)))
    if data.draw(st.booleans()) and pos < len(text):
        text = text[:pos] + text[pos + 1:]
    else:
        text = text[:pos] + data.draw(st.sampled_from(list(b'[]{},:"\\ 0-.en'))).to_bytes(
            1, "big") + text[pos:]
    assert _ours_decode(text) == _prosody_decode(oracle, text)


@pytest.mark.interop
@SETTINGS
@given(VALUES)
def test_prosody_reads_our_output_like_we_do(oracle, value: Any) -> None:
    text = dumpb(value)
    assert _ours_decode(text) == _prosody_decode(oracle, text)


# ---------------------------------------------------------------------------
# The plain-JSON fast path agrees with the full reader

from prosody_store import json as _prosody_json  # noqa: E402
from tests.test_serialization import same  # noqa: E402

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=15)


def _full_reader(doc: bytes):
    try:
        # below the fast path's threshold: the full reader
        return "ok", loads(doc, max_depth=_prosody_json.PLAIN_MAX_DEPTH - 1)
    except JSONDecodeError:
        return "error", None


def _check_fast_path(doc: bytes) -> None:
    fast = _prosody_json._plain_json(doc, 10_000)
    kind, full = _full_reader(doc)
    if fast is _prosody_json._DECLINED:
        return
    assert kind == "ok", "the fast path accepted what util.json refuses"
    assert same(fast, full)


@SETTINGS
@given(PLAIN, st.booleans(), st.sampled_from([None, 0, 2]))
def test_fast_path_agrees_on_plain_json(value, ascii_only, indent):
    _check_fast_path(stdjson.dumps(value, ensure_ascii=ascii_only, indent=indent).encode())


@SETTINGS
@given(st.binary(max_size=40))
def test_fast_path_agrees_on_random_bytes(doc):
    _check_fast_path(doc)


@pytest.mark.parametrize("doc", [b"[]", b"[1,null]", b'{"a":1,"a":2}', b"01", b"NaN", b"[1,]",
                                 b'{"__array":[1]}', b'"\\ud800"', b'"\\a"', b"\xff", b"1e400",
                                 b"-0", b"[[]]", b'{"a":[ ]}'])
def test_fast_path_edge_cases(doc):
    _check_fast_path(doc)
