"""What one request body may cost, over the real server (``prosody-store serve``, 127.0.0.1).

A body's cost grows with its number of values, not its size: 10 MiB of
``[{},{},...]`` (3.5 million tables) took 17 s and 427 MB to store and 21 s and
1.3 GB to serve back.  The service now counts a body's values before decoding
it (wsgi_app/limits.py) and refuses more than ``DEFAULT_MAX_VALUES`` with 413,
writing nothing; bodies at the cap, big rosters and big strings are still
accepted and served back as valid JSON.  Non-finite numbers (``1e999``,
``(1/0)``) are refused with 400: stored, they were served back as ``inf``,
which is not JSON.  Times and memory are measured by ``bench/http.py --shapes``,
not asserted here.

The count is an upper bound of the real number of values: property tests
check that on random values written by our JSON and Lua writers and by a Lua
writer with comments, long brackets and odd separators.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import json as pjson
from prosody_store import serialization
from tests.live_server import LiveServer, demo_auth, demo_copy
from wsgi_app import limits

CAP = limits.DEFAULT_MAX_VALUES
MAX_BODY = 10 * 1024 * 1024  # the server's default --max-body
CONTENT_TYPES = {"json": "application/json", "lua": "text/x-lua"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(demo_copy(tmp_path_factory.mktemp("body-cost"))) as srv:
        yield srv


def send(server, method: str, store: str, body: bytes, fmt: str = "json"):
    return server.request(method, f"/data/{store}", body,
                          {**demo_auth("alice"), "Content-Type": CONTENT_TYPES[fmt]}, timeout=120)


def get_json(server, store: str):
    """GET the store as JSON: it must parse with the standard json module."""
    status, _, body = server.request("GET", f"/data/{store}", None,
                                           {**demo_auth("alice"), "Accept": "application/json"},
                                           timeout=120)
    assert status == 200, (status, body[:200])
    return json.loads(body)


def refused(server, method: str, store: str, body: bytes, fmt: str, status: int) -> str:
    """Send a body that must be refused with ``status``; nothing may be written."""
    before = snapshot(server.data_path)
    got, _, reason = send(server, method, store, body, fmt)
    assert got == status, (got, reason[:200])
    assert reason.endswith(b"\n") and reason.count(b"\n") == 1 and reason.strip(), reason
    assert snapshot(server.data_path) == before, "a refused body changed the data directory"
    return reason.decode()


def true_count(value) -> int:
    """The values of a decoded value: every table and every scalar in it (keys not counted)."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


def repeated(open_: bytes, item: bytes, sep: bytes, close: bytes, size: int) -> bytes:
    """``open_ item sep item ... close``, as many items as fit in ``size`` bytes."""
    n = (size - len(open_) - len(close) + len(sep)) // (len(item) + len(sep))
    return open_ + sep.join([item] * n) + close


# ---------------------------------------------------------------------------
# Hole 1: many values


@pytest.mark.parametrize("fmt,body", [
    ("json", repeated(b"[", b"{}", b",", b"]", MAX_BODY)),
    ("json", repeated(b"[", b"[]", b",", b"]", MAX_BODY)),
    ("json", repeated(b"[", b'"ab"', b",", b"]", MAX_BODY)),
    ("json", repeated(b"[", b"1", b",", b"]", MAX_BODY)),
    ("json", repeated(b"{", b'"k":{}', b",", b"}", MAX_BODY)),
    ("lua", repeated(b"{", b"{}", b",", b"}", MAX_BODY)),
    ("lua", repeated(b"return {", b"{};", b"\n", b"};", MAX_BODY)),
    ("lua", repeated(b"{", b"'ab'", b";", b"}", MAX_BODY)),
], ids=["json-empty-objects", "json-empty-arrays", "json-strings", "json-numbers",
        "json-members", "lua-empty-tables", "lua-prosody-layout", "lua-strings"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_10mib_of_tiny_values_is_refused_before_decoding(server, fmt, body, method):
    assert len(body) <= MAX_BODY
    reason = refused(server, method, "cost", body, fmt, 413)
    assert str(CAP) in reason


@pytest.mark.parametrize("fmt", ["json", "lua"])
@pytest.mark.parametrize("item", ["number", "empty table"])
def test_value_at_the_cap_is_accepted_one_over_is_refused(server, fmt, item):
    # A list of n items is n + 1 values.  Numbers: the cheap bound is exact;
    # empty tables: the cheap bound is twice the cap, the exact count decides.
    leaf = {"number": "7", "empty table": "{}"}[item]
    opener, closer = ("[", "]") if fmt == "json" else ("{", "}")

    def body(n: int) -> bytes:
        return (opener + ",".join([leaf] * n) + closer).encode()

    if item == "number":
        assert limits.value_bound(body(CAP - 1), fmt) == CAP
    else:
        assert limits.value_bound(body(CAP - 1), fmt) > CAP
    store = f"cap_{fmt}_{item.replace(' ', '_')}"
    refused(server, "PUT", store, body(CAP), fmt, 413)
    refused(server, "POST", store, body(CAP), fmt, 413)
    status, _, reason = send(server, "PUT", store, body(CAP - 1), fmt)
    assert status == 201, reason
    expected = [7] * (CAP - 1) if item == "number" else {}
    got = get_json(server, store)
    if item == "number":
        assert got == expected
    else:  # a list of empty tables: Prosody's JSON writes each as {}
        assert got == [{}] * (CAP - 1)
    # The same body as a list item, served back by the streaming list encoder.
    status, _, reason = send(server, "POST", store + "_list", body(CAP - 1), fmt)
    assert status == 201, reason
    got = get_json(server, store + "_list")
    assert len(got) == 1 and len(got[0]) == CAP - 1


def test_strings_and_comments_full_of_punctuation_do_not_count(server):
    # Far more commas and brackets than the cap, all inside strings and comments:
    # few values, so accepted (the exact count strips strings, long brackets, comments).
    text = '{[,;"]\'}' * 40_000
    body = json.dumps({"a": text, "b": [text, text]}).encode()
    assert limits.value_bound(body, "json") > CAP
    assert send(server, "PUT", "punct", body)[0] == 201
    assert get_json(server, "punct") == {"a": text, "b": [text, text]}
    lua = ("{ a = [==[" + text + "]==], -- " + text + "\n"
           "b = {'" + text.replace("'", "\\'") + "'}; --[[" + text.replace("]", ")") + "]] }")
    assert limits.value_bound(lua.encode(), "lua") > CAP
    assert send(server, "PUT", "punct", lua.encode(), "lua")[0] == 201
    assert get_json(server, "punct") == {"a": text, "b": [text]}


def roster(contacts: int) -> dict:
    """A Prosody roster: the [false] version entry and one item per contact."""
    value: dict = {False: {"version": contacts, "pending": {}}}
    for i in range(contacts):
        value[f"contact{i}@example.org"] = {
            "subscription": "both", "name": f"Contact number {i}", "ask": "subscribe",
            "groups": {"Friends": True, "Work": True}}
    return value


@pytest.mark.parametrize("fmt", ["json", "lua"])
def test_roster_of_10000_contacts_is_accepted(server, fmt):
    value = roster(10_000)
    body = pjson.dumpb(value) if fmt == "json" else serialization.dumps(value).encode()
    assert len(body) <= MAX_BODY
    assert limits.count_values(body, fmt) <= CAP
    status, _, reason = send(server, "PUT", "roster", body, fmt)
    assert status == 201, reason
    assert pjson.loads(json.dumps(get_json(server, "roster"))) == value


@pytest.mark.parametrize("fmt,body", [
    ("json", b'{"s":"' + b"x" * (MAX_BODY - 8) + b'"}'),
    ("json", b'["' + b"\\u00e9" * ((MAX_BODY - 4) // 6) + b'"]'),
    ("json", b'["' + b"\\\\n" * ((MAX_BODY - 4) // 3) + b'"]'),
    ("lua", b"{[==[" + b"]=]," * ((MAX_BODY - 10) // 4) + b"]==]}"),
    ("lua", b'{"' + b"\\195\\169" * ((MAX_BODY - 4) // 8) + b'"}'),
], ids=["json-one-string", "json-escaped-e-acute", "json-escaped-backslashes",
        "lua-long-string", "lua-decimal-escapes"])
def test_10mib_string_is_accepted_and_served_as_json(server, fmt, body):
    assert len(body) <= MAX_BODY
    status, _, reason = send(server, "PUT", "bigstring", body, fmt)
    assert status == 201, reason
    loads = pjson.loads if fmt == "json" else serialization.loads
    assert get_json(server, "bigstring") == loads(body)


@pytest.mark.parametrize("fmt,body,status", [
    # Not numbers: the readers' numeral patterns backtracked quadratically here
    # (40 KB took 24 s; 10 MiB would take days).
    ("json", b"[" + b"1" * (MAX_BODY - 3) + b"e]", 400),
    ("json", b"[" + b"1" * (MAX_BODY - 3) + b"-]", 400),
    ("lua", b"{" + b"1" * (MAX_BODY - 3) + b"a}", 400),
    ("lua", b"{0x" + b"1" * (MAX_BODY - 5) + b"g}", 400),
    ("lua", b"{1." + b"1" * (MAX_BODY - 5) + b"e}", 400),
    # Numbers: 10 MiB of digits is a float (infinite: refused), or a tiny one.
    ("json", b"[" + b"1" * (MAX_BODY - 2) + b"]", 400),
    ("lua", b"{" + b"1" * (MAX_BODY - 2) + b"}", 400),
    ("json", b"[0." + b"0" * (MAX_BODY - 5) + b"1]", 201),
    ("lua", b"{0." + b"0" * (MAX_BODY - 5) + b"1}", 201),
], ids=["json-e", "json-minus", "lua-letter", "lua-hex", "lua-exponent",
        "json-huge", "lua-huge", "json-tiny", "lua-tiny"])
def test_10mib_numerals_are_read_in_one_pass(server, fmt, body, status):
    if status == 201:
        got, _, reason = send(server, "PUT", "numeral", body, fmt)
        assert got == 201, reason
        assert get_json(server, "numeral") == [0.0]
    else:
        refused(server, "PUT", "numeral", body, fmt, status)


# ---------------------------------------------------------------------------
# Hole 2: numbers JSON cannot carry


@pytest.mark.parametrize("fmt,body", [
    ("json", b'{"a":1e999999}'), ("json", b'{"a":1e999}'), ("json", b'{"a":-1e999}'),
    ("json", b'{"a":[1,2,1E400]}'), ("json", b'{"a":1' + b"0" * 400 + b"}"),
    ("json", b'{"__hash":[1e999,"x"]}'), ("json", b'{"null":null,"a":-1e999}'),
    ("lua", b"{a = (1/0)}"), ("lua", b"{a = (-1/0)}"), ("lua", b"{a = (0/0)}"),
    ("lua", b"{a = -(1/0)}"), ("lua", b"return {[(1/0)] = 1};"), ("lua", b"{a = 1e999}"),
    ("lua", b"{a = 0x1p99999}"), ("lua", b"{ {1, 2, {x = -(0/0)}} }"),
])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_non_finite_numbers_are_refused(server, fmt, body, method):
    reason = refused(server, method, "numbers", body, fmt, 400)
    assert "finite" in reason


@pytest.mark.parametrize("body", [b"{a = math.huge}", b"{a = 1/0}", b"{a = -math.huge}"])
def test_lua_expressions_for_infinity_are_refused(server, body):
    refused(server, "PUT", "numbers", body, "lua", 400)


def test_finite_extremes_are_accepted_and_served_as_json(server):
    body = b'{"big":1.7976931348623157e308,"tiny":5e-324,"neg":-1e308,"int":9223372036854775807}'
    assert send(server, "PUT", "extremes", body)[0] == 201
    got = get_json(server, "extremes")  # floats as Prosody writes them: %.14g
    assert got["int"] == 9223372036854775807 and got["neg"] == -1e308
    assert math.isclose(got["big"], 1.7976931348623157e308, rel_tol=1e-13)
    assert math.isclose(got["tiny"], 5e-324, rel_tol=1e-13)


# ---------------------------------------------------------------------------
# The count is an upper bound (property tests, no server)

_PUNCT = ',;:"\'[]{}=-\\\n\r\t /*()'
texts = st.text(alphabet=st.sampled_from(list(_PUNCT) + list("ab=]]--[==[é")), max_size=12)
scalars = st.one_of(texts, st.binary(max_size=4), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.booleans())
keys = st.one_of(texts, st.integers(-5, 40))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)), max_leaves=40)
tables = st.one_of(st.lists(values, max_size=6), st.dictionaries(keys, values, max_size=6))


def _check(body: bytes, fmt: str, decoded) -> int:
    exact = limits.count_values(body, fmt)
    assert true_count(decoded) <= exact <= limits.value_bound(body, fmt), body
    return exact


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
def test_count_bounds_prosody_json(value):
    body = pjson.dumpb(value)
    decoded = pjson.loads(body)
    exact = _check(body, "json", decoded)
    if b'"__hash"' not in body and b'"__array"' not in body:
        assert exact == true_count(decoded)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
def test_count_bounds_prosody_lua(value):
    body = serialization.dumps(value).encode("ascii")
    decoded = serialization.loads(body)
    assert _check(body, "lua", decoded) == true_count(decoded)
    dat = serialization.dump_dat(value)
    _check(dat, "lua", serialization.loads(dat))


def _lua_string(s: bytes, rnd: random.Random) -> bytes:
    """``s`` as a Lua string literal: quoted with escapes, or a long bracket."""
    if rnd.random() < 0.4 and not s.startswith((b"\n", b"\r")) and b"\r" not in s:
        level = 0
        while b"]" + b"=" * level + b"]" in s or s.endswith(b"]" + b"=" * level):
            level += 1
        eq = b"=" * level
        return b"[" + eq + b"[" + s + b"]" + eq + b"]"
    quote = rnd.choice([b'"', b"'"])
    out = []
    for byte in s:
        c = bytes([byte])
        if c in (b"\\", quote):
            out.append(b"\\" + c)
        elif c == b"\n":
            out.append(rnd.choice([b"\\n", b"\\\n", b"\\z \n  \\n"]))
        elif c == b"\r":
            out.append(b"\\r")
        else:
            out.append(c)
    return quote + b"".join(out) + quote


def _lua_gap(rnd: random.Random, comments: bool) -> bytes:
    """Whitespace, perhaps with comments full of punctuation."""
    pick = rnd.random()
    if pick < 0.6 or not comments:
        return rnd.choice([b"", b" ", b"\n", b"\t "])
    junk = "".join(rnd.choice(_PUNCT.replace("\n", "").replace("\r", "")) for _ in range(6)).encode()
    if pick < 0.8:
        return b" -- " + junk + b"\n"  # the space: "--[" could open a long comment
    return b"--[==[" + junk.replace(b"]", b")") + b"\n]]" + b"]==]"


def lua_text(value, rnd: random.Random, comments: bool) -> bytes:
    """Lua source for ``value``, written the many ways Lua reads."""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode() if value >= 0 else b"-" + repr(-value).encode()
    if isinstance(value, str):
        return _lua_string(value.encode(), rnd)
    if isinstance(value, bytes):
        return _lua_string(value, rnd)
    items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
    parts = [b"{", _lua_gap(rnd, comments)]
    for i, (k, v) in enumerate(items):
        if i:
            parts += [rnd.choice([b",", b";"]), _lua_gap(rnd, comments)]
        if k is not None:
            if isinstance(k, str) and k.isidentifier() and k.isascii() and rnd.random() < 0.5:
                parts.append(k.encode())
            else:
                parts += [b"[ ", _lua_gap(rnd, comments), lua_text(k, rnd, comments), b"]"]  # "[[" opens a long string
            parts += [_lua_gap(rnd, comments), b"=", _lua_gap(rnd, comments)]
        parts.append(lua_text(v, rnd, comments))
    if items and rnd.random() < 0.5:
        parts.append(rnd.choice([b",", b";"]))
    parts += [_lua_gap(rnd, comments), b"}"]
    return b"".join(parts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables, st.randoms(use_true_random=False), st.booleans())
def test_count_bounds_hand_written_lua(value, rnd, comments):
    body = lua_text(value, rnd, comments)
    decoded = serialization.loads(body)
    exact = _check(body, "lua", decoded)
    if not comments:  # exact without comments (and a comment counts at most one)
        assert exact == true_count(decoded), body
    body = b"return" + _lua_gap(rnd, comments) + b" " + body + _lua_gap(rnd, comments) + b";"
    _check(body, "lua", serialization.loads(body))


@pytest.mark.parametrize("fmt,body", [
    ("json", b'["a\\"b", "\\\\", "x'), ("json", b'"' + b'\\"' * 1000),
    ("lua", b"{'a\n, 1, 2}"), ("lua", b"{[==[ unfinished ]=] , , }"),
    ("lua", b"{--[[ unfinished\n 1, 2, 3}"), ("lua", b'{"a\\'),
])
def test_unterminated_strings_are_scanned_once(fmt, body):
    # Invalid text: the decoder refuses it; the count only has to finish.
    assert limits.count_values(body, fmt) <= limits.value_bound(body, fmt)
