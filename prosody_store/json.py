"""JSON exactly as Prosody's ``util.json`` writes and reads it.

Prosody's HTTP API (mod_data_access) turns stored Lua values into JSON with
``util.json``.  This module produces the same bytes for the same value and reads
JSON the way ``util.json.decode`` does, using the value model of
:mod:`prosody_store.serialization` (``None``, ``bool``, ``int``, ``float``,
``str``/``bytes``, ``list`` for tables with keys 1..n, ``dict`` otherwise, and
:data:`~prosody_store.serialization.TRUE_KEY`/``FALSE_KEY`` for boolean keys
that share a table with the number key 1/0).

Writing (:func:`dumps`, :func:`dumpb`, :func:`iter_dumps_array`)
------------------------------------------------------------------

* Compact, no spaces.  A table whose keys are exactly 1..n (n >= 1) is an
  array.  Any other table is an object: its string keys are members, other keys
  (numbers, booleans, and the strings ``"__array"``/``"__hash"`` themselves)
  go into ``"__hash": [k1, v1, ...]`` and the array part (1, 2, ... up to the
  first missing index) into ``"__array": [...]``, in that order: members, then
  ``__hash``, then ``__array``.  An empty table is ``{}``, so ``dumps([])`` is
  ``{}`` as well.
* Entries are written in dict order.  Prosody writes them in Lua's ``pairs``
  order, which depends on string hashes with a per-process random seed, so for
  a table with several members (or several ``__hash`` pairs) no fixed order can
  match Prosody every time; any one of its orders is what Prosody could write.
  ``sort_keys=True`` sorts the members by their UTF-8 bytes, as Prosody's
  ``encode_ordered`` does (which leaves ``__hash`` in ``pairs`` order).
* Integers: decimal.  Floats: Lua 5.4's ``tostring``, i.e. ``%.14g`` plus
  ``.0`` when that looks like an integer (``1.0``, ``-0.0``, ``100000.0``,
  ``1e+15``, ``0.1``).  Infinities are written ``inf``/``-inf`` and NaN as this
  platform's C library prints the NaN that ``0/0`` yields (``-nan`` on x86-64,
  ``nan`` on arm64): that is the only NaN Prosody ever holds, since its data
  files spell NaN ``(0/0)``.  None of these three is valid JSON; Prosody writes
  them anyway, and so do we.
* Strings: ``"`` and ``\\`` escaped, ``\\b \\f \\n \\r \\t``, every other byte
  below 32 as ``\\u00XX`` (upper-case hex).  Nothing else is escaped: not ``/``,
  not DEL, not non-ASCII.  A ``bytes`` value (a Lua string that is not UTF-8)
  is written as its raw bytes, so the output is then not UTF-8 either.
  :func:`dumpb` returns those exact bytes; :func:`dumps` returns ``str`` in
  which such bytes appear as lone surrogates (``errors="surrogateescape"``), so
  ``dumps(v).encode("utf-8", "surrogateescape") == dumpb(v)``.
* ``None`` at the top level is ``null``; in a dict it means "no entry", and a
  list containing ``None`` is a table with holes (``[1, None, 3]`` is the Lua
  table with keys 1 and 3: ``{"__hash":[3,3],"__array":[1]}``).
* A float key with an integral value is the integer key (Lua stores it so).

Reading (:func:`loads`)
-----------------------

``util.json.decode`` is lenient in places, and :func:`loads` accepts exactly
what it accepts, with the same results:

* Numbers: any run of ``0-9 . - + e E`` that Lua's ``tonumber`` reads.  So
  ``01``, ``1.``, ``-.5`` are accepted; a numeral without ``.`` or exponent is
  an ``int`` when it fits in 64 bits and a ``float`` otherwise (Lua 5.4 rules);
  ``1e2`` and ``1.0`` are floats; ``1e400`` is ``inf``.  ``inf``/``nan`` are not
  accepted (Prosody's decoder cannot read what its encoder writes there).
* Strings: raw control characters and raw bytes are accepted; a string that is
  not valid UTF-8 becomes ``bytes``.  ``\\uXXXX`` escapes are decoded (surrogate
  pairs combined, a lone surrogate is an error, ``\\u0000`` gives a NUL); an
  unknown escape such as ``\\a`` is kept as the two characters ``\\a``.
* Objects: a duplicate member keeps the last value.  A trailing comma before
  ``}`` is accepted, and such an object (like ``{}``) is returned without
  ``__array``/``__hash`` processing, as Prosody does.  Otherwise ``__array``
  items become keys 1..n, then ``__hash`` pairs are assigned (a dangling last
  key is ignored); a ``false`` ``__array``/``__hash`` stays an ordinary member, a
  string one is dropped, a number or ``true`` one is an error.  Arrays do not
  accept trailing commas.
* ``null``: Prosody keeps a sentinel table; Prosody's own stores cannot hold it
  (a single one is stored as ``{}``, two make its serializer fail), so we treat
  it as Lua ``nil``: a member set to ``null`` does not exist (and removes an
  earlier duplicate), an array slot holding ``null`` is a hole (``[1,null,3]``
  is ``{1: 1, 3: 3}``), a ``__hash`` pair with a ``null`` value removes the key.
  A top-level ``null`` is ``None``.  ``null`` or a table as a ``__hash`` key (a
  table key in Lua) cannot be represented and is an error, unless its value is
  ``null`` (no entry) or the table holding it is itself only read by ``ipairs``
  as an ``__array``/``__hash``.
* Results follow the value model: lists for keys 1..n (``[]`` is ``{}``),
  dicts in member order with the ``__array`` entries first.
* Nesting deeper than ``max_depth`` (default 1000) is an error.  Prosody has no
  such limit; we keep one so that hostile input cannot exhaust the stack.

Errors are :class:`JSONDecodeError` (a :class:`ValueError`) with the byte
position, line and column.

Plain JSON is read by the C ``json`` decoder when ``max_depth`` is at least
:data:`PLAIN_MAX_DEPTH` (128), whatever ``sys.getrecursionlimit()`` is, and
only if it nests at most that deep (counted with strings cut out); all else by
the full reader.  Both give the same values
(``tests/test_json.py::test_fast_path_agrees_on_*``), and the recursion limit
changes neither results nor the path
(``tests/test_fast_path_rule.py::test_json_deep_input_same_result_and_path``).
"""
from __future__ import annotations

import json as _stdlib_json
import math
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast

from prosody_store.errors import Error
from prosody_store.numbers import INT_MAX, INT_MIN, NAN_TEXT, format_float, tonumber
from prosody_store.serialization import DEFAULT_MAX_DEPTH, FALSE_KEY, TRUE_KEY, BooleanKey

if TYPE_CHECKING:
    from typing import Protocol

    class _AlwaysMatches(Protocol):
        """A pattern only matched where it cannot fail (it matches the empty
        string, or the caller has checked how the text starts)."""

        def match(self, string: bytes, pos: int = ..., /) -> re.Match[bytes]: ...

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "JSONDecodeError",
    "dumpb",
    "dumps",
    "iter_dumpb_array",
    "iter_dumps_array",
    "loads",
    "strict_numbers",
]

_NAN_TEXT = NAN_TEXT  # the tests compare against it


class JSONDecodeError(Error, ValueError):
    """Text that ``util.json.decode`` would refuse.

    ``pos`` is the byte offset in the (UTF-8) input, ``lineno`` and ``colno``
    count from 1 (the column in bytes).
    """

    def __init__(self, msg: str, doc: bytes, pos: int) -> None:
        self.msg = msg
        self.doc = doc
        self.pos = pos
        self.lineno = doc.count(b"\n", 0, pos) + 1
        self.colno = pos - (doc.rfind(b"\n", 0, pos) + 1) + 1
        super().__init__(f"{msg}: line {self.lineno} column {self.colno} (byte {pos})")

    def __reduce__(self) -> tuple[type[JSONDecodeError], tuple[str, bytes, int]]:
        return (JSONDecodeError, (self.msg, self.doc, self.pos))


# ---------------------------------------------------------------------------
# Writing

_ESCAPES = {chr(i): "\\u%04X" % i for i in range(32)}
_ESCAPES.update({'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                 "\r": "\\r", "\t": "\\t"})
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPECIAL_KEYS = frozenset(["__array", "__hash"])


class _Raw(str):
    """JSON text to copy to the output as is (as opposed to a value to encode)."""

    __slots__ = ()


def _escape_text(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text) + '"'


_SPECIAL_OR_SURROGATE = re.compile('[\x00-\x1f"\\\\\ud800-\udfff]')


def _quote(s: str | bytes | bytearray) -> str:
    """A Lua string as util.json writes it (bytes that are not UTF-8 as surrogate escapes)."""
    if s.__class__ is str:
        if _SPECIAL_OR_SURROGATE.search(s) is None:
            return '"' + s + '"'
        if _SURROGATE.search(s) is not None:
            raise ValueError(f"string {s!r} is not valid Unicode (lone surrogate)")
        return _escape_text(s)
    return _escape_text(bytes(cast("bytes | bytearray", s)).decode("utf-8", "surrogateescape"))


_KEY_CACHE: dict[str, str] = {}


def _member_name(k: str | bytes) -> str:
    """``"key":`` for a member; the few distinct keys of stored data are cached."""
    text = _KEY_CACHE.get(k) if k.__class__ is str else None
    if text is None:
        text = _quote(k) + ":"
        if k.__class__ is str and len(_KEY_CACHE) < 4096:
            _KEY_CACHE[k] = text
    return text


def _scalar(v: Any) -> str:
    cls = v.__class__
    if cls is str or cls is bytes or cls is bytearray:
        return _quote(v)
    if cls is bool:
        return "true" if v else "false"
    if cls is int:
        if not INT_MIN <= v <= INT_MAX:
            raise ValueError(f"integer {v} does not fit in 64 bits")
        return str(v)
    if cls is float:
        return format_float(v)
    if cls is _Raw:  # from strict_numbers
        return str(v)
    if v is None:
        return "null"
    if cls is BooleanKey:
        return "true" if v.value else "false"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return _scalar(int(v))
    if isinstance(v, float):
        return format_float(float(v))
    if isinstance(v, str):
        return _quote(str(v))
    raise TypeError(f"cannot encode a {cls.__name__} as Prosody JSON")


def _lua_key(k: Any) -> Any:
    """A dict key as the Lua key it stands for; booleans as BooleanKey so they stay apart from 1/0."""
    cls = k.__class__
    if cls is str or cls is int or cls is BooleanKey:
        return k
    if cls is bool:
        return TRUE_KEY if k else FALSE_KEY
    if cls is float:
        if k != k:
            raise ValueError("NaN cannot be a table key")
        if k.is_integer() and INT_MIN <= k <= INT_MAX:
            return int(k)
        return k
    if cls is bytes or cls is bytearray:
        try:
            return bytes(k).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(k)
    if isinstance(k, bool):
        return TRUE_KEY if k else FALSE_KEY
    for base in (int, float, str):
        if isinstance(k, base):
            return _lua_key(base(k))
    raise TypeError(f"a {cls.__name__} cannot be a table key")


def _lua_entries(t: Any) -> dict[Any, Any]:
    """The entries of a list or dict as a Lua table: Lua keys, no nil values."""
    if isinstance(t, dict):
        entries: dict[Any, Any] = {}
        for k, v in t.items():
            if v is None:
                continue
            key = _lua_key(k)
            if key in entries:
                raise ValueError(f"key {k!r} appears twice once written as Lua")
            entries[key] = v
        return entries
    return {i: v for i, v in enumerate(t, 1) if v is not None}


def _split_table(t: Any, sort_keys: bool
                 ) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]], list[Any]]:
    """A table as util.json divides it: (members, __hash pairs, __array items).

    With no members and no __hash pairs the table is a JSON array of the items.
    """
    if t.__class__ is dict and all(k.__class__ is str for k in t):
        members = [(k, v) for k, v in t.items() if v is not None]
        if "__array" in t or "__hash" in t:
            hashed = [(k, v) for k, v in members if k in _SPECIAL_KEYS]
            members = [(k, v) for k, v in members if k not in _SPECIAL_KEYS]
        else:
            hashed = []
        if sort_keys:
            members.sort(key=lambda kv: kv[0].encode("utf-8"))
        return members, hashed, []
    entries = _lua_entries(t)
    n = 0
    while (n + 1) in entries:
        n += 1
    members = []
    hashed = []
    for k, v in entries.items():
        if k.__class__ is str or k.__class__ is bytes:
            if k not in _SPECIAL_KEYS:
                members.append((k, v))
                continue
        elif k.__class__ is int and 1 <= k <= n:
            continue
        hashed.append((k, v))
    if sort_keys:
        members.sort(key=lambda kv: kv[0].encode("utf-8") if kv[0].__class__ is str else kv[0])
    return members, hashed, [entries[i] for i in range(1, n + 1)]


def _is_plain_array(t: Any) -> bool:
    return (t.__class__ is list or isinstance(t, (list, tuple))) and bool(t) and None not in t


def _is_table(v: Any) -> bool:
    return v.__class__ is dict or v.__class__ is list or isinstance(v, (dict, list, tuple))


_Nested = Callable[[Any], None]
"""Where :func:`_layout` sends a nested table: a callable that writes it in place."""


def _add_value(v: Any, out: list[str], nested: _Nested) -> None:
    """Append the JSON of a scalar to ``out``; pass a table to ``nested``."""
    cls = v.__class__
    if cls is str:
        out.append('"' + v + '"' if _SPECIAL_OR_SURROGATE.search(v) is None else _quote(v))
    elif cls is dict or cls is list or _is_table(v):
        nested(v)
    else:
        out.append(_scalar(v))


def _add_items(items: Iterable[Any], out: list[str], nested: _Nested) -> None:
    """``item,item,...`` (see :func:`_add_value`)."""
    sep = ""
    for x in items:
        if sep:
            out.append(sep)
        sep = ","
        _add_value(x, out, nested)


def _layout(t: Any, sort_keys: bool, out: list[str], nested: _Nested) -> None:
    """Append the JSON of table ``t`` to ``out`` as util.json lays it out.

    Each nested table is passed to ``nested``, which writes it in its place.
    This is the only place that decides the layout; every text appended is an
    exact ``str``.
    """
    if _is_plain_array(t):
        members: list[tuple[Any, Any]] = []
        hashed: list[tuple[Any, Any]] = []
        array = t
    else:
        members, hashed, array = _split_table(t, sort_keys)
    if not members and not hashed and array:
        out.append("[")
        _add_items(array, out, nested)
        out.append("]")
        return
    out.append("{")
    sep = ""
    for k, x in members:
        out.append(sep + _member_name(k) if sep else _member_name(k))
        _add_value(x, out, nested)
        sep = ","
    if hashed:
        out.append(sep + '"__hash":[')
        _add_items([y for pair in hashed for y in pair], out, nested)
        out.append("]")
        sep = ","
    if array:
        out.append(sep + '"__array":[')
        _add_items(array, out, nested)
        out.append("]")
    out.append("}")


_RECURSION_LEVELS = 50
"""Tables nested up to this deep are written recursively (four frames a level at
most: as many as the 200 levels of the former recursive encoder), deeper ones
with a stack."""


class _Encoder:
    """Writes a value's JSON into ``out`` with :func:`_layout`.

    Tables are written recursively while they are nested at most
    ``_RECURSION_LEVELS`` deep, and deeper ones with an explicit stack, so
    that nesting up to ``max_depth`` never exhausts Python's stack.
    """

    def __init__(self, out: list[str], sort_keys: bool, max_depth: int) -> None:
        self.out = out
        self.sort_keys = sort_keys
        self.max_depth = max_depth
        self.level = 0  # how deep the table being written is nested (the top one is 1)
        self.nested = self.write_nested  # the one bound method passed to every _layout
        self.recursion_limit = min(max_depth, _RECURSION_LEVELS)

    def write(self, value: Any) -> None:
        if _is_table(value):
            self.level = 1  # the top table is never too deep
            _layout(value, self.sort_keys, self.out, self.nested)
        else:
            _add_value(value, self.out, self.nested)

    def write_nested(self, t: Any) -> None:
        """Write a table found inside the one at ``self.level``."""
        if self.level >= self.recursion_limit:
            self._check_depth(self.level)
            self._write_with_stack(t)
            return
        self.level += 1
        _layout(t, self.sort_keys, self.out, self.nested)
        self.level -= 1

    def _check_depth(self, parent_level: int) -> None:
        if parent_level >= self.max_depth:
            raise ValueError(f"tables nested deeper than {self.max_depth} "
                             "(or a table that contains itself)")

    def _write_with_stack(self, t: Any) -> None:
        """:meth:`write_nested` without recursion: the pieces of each table
        (text, and nested tables in their place) are laid out into a list, and
        the lists being written are kept on a stack."""
        stack = [self._pieces(t)]
        while stack:
            for piece in stack[-1]:
                if piece.__class__ is str:
                    self.out.append(piece)
                    continue
                self._check_depth(self.level + len(stack))
                stack.append(self._pieces(piece))
                break
            else:
                stack.pop()

    def _pieces(self, t: Any) -> Iterator[Any]:
        parts: list[Any] = []  # text, and nested tables in their place
        _layout(t, self.sort_keys, parts, parts.append)
        return iter(parts)


def _encode_into(value: Any, out: list[str], sort_keys: bool, max_depth: int) -> None:
    """Append the JSON of ``value`` to ``out``."""
    _Encoder(out, sort_keys, max_depth).write(value)


_STRICT_TEXT = {math.inf: _Raw("1e999"), -math.inf: _Raw("-1e999")}


def strict_numbers(value: Any) -> Any:
    """``value`` made for readers of strict JSON (RFC 8259), to pass to the encoders.

    Prosody writes infinities as ``inf``/``-inf`` and NaN as ``nan``, which no
    JSON reader accepts.  Here infinities become the numbers ``1e999`` and
    ``-1e999`` (which JSON readers read back as infinities) and NaN ``null``;
    a table key that is such a number becomes that text as a string key.
    Everything else is written as Prosody writes it.  Returns ``value`` itself
    when it holds no such number, else a copy of the tables that hold one.
    """
    cls = value.__class__
    if cls is float or (isinstance(value, float) and cls is not BooleanKey):
        if value != value:
            return _Raw("null")
        return _STRICT_TEXT.get(value, value)
    if isinstance(value, dict):
        changed = None
        for k, v in value.items():
            nk, nv = strict_numbers(k), strict_numbers(v)
            if changed is None and (nk is not k or nv is not v):
                changed = {}
                for k0, v0 in value.items():  # the entries before this one, as they were
                    if k0 is k:
                        break
                    changed[k0] = v0
            if changed is not None:
                changed[nk] = nv
        return value if changed is None else changed
    if isinstance(value, list):
        items = [strict_numbers(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def dumps(value: Any, *, sort_keys: bool = False, max_depth: int = DEFAULT_MAX_DEPTH,
          strict: bool = False) -> str:
    """``value`` as JSON, as Prosody's ``util.json.encode`` writes it (see the module docs).

    With ``strict``, numbers JSON cannot carry are written as :func:`strict_numbers`
    says, so that the text is always valid JSON.  Raises :class:`TypeError` for
    values Lua data cannot hold, :class:`ValueError` for integers outside 64
    bits, NaN keys, lone surrogates and nesting deeper than ``max_depth``.
    """
    out: list[str] = []
    _encode_into(value, out, sort_keys, max_depth)
    text = "".join(out)
    if strict and ("inf" in text or "nan" in text):  # cheap: almost always a word in a string
        out = []
        _encode_into(strict_numbers(value), out, sort_keys, max_depth)
        text = "".join(out)
    return text


def dumpb(value: Any, *, sort_keys: bool = False, max_depth: int = DEFAULT_MAX_DEPTH,
          strict: bool = False) -> bytes:
    """The exact bytes Prosody writes for ``value``: :func:`dumps` encoded as UTF-8,
    with ``bytes`` strings passed through raw."""
    return dumps(value, sort_keys=sort_keys, max_depth=max_depth,
                 strict=strict).encode("utf-8", "surrogateescape")


def iter_dumps_array(items: Iterable[Any], *, sort_keys: bool = False,
                     max_depth: int = DEFAULT_MAX_DEPTH, strict: bool = False) -> Iterator[str]:
    """The JSON of a list, piece by piece: ``"["``, item, ``","``, item, ..., ``"]"``.

    The concatenation equals ``dumps(list(items))`` (with the same ``strict``);
    in particular an empty iterable gives ``{}`` (Prosody writes an empty table
    as an object).  Items must not be ``None``: a Lua list has no holes, and a
    hole would change the whole shape of the output after the first pieces
    were sent, so it raises :class:`ValueError` instead.
    """
    first = True
    for item in items:
        if item is None:
            raise ValueError("a list item is None (a hole), which cannot be streamed")
        piece = dumps(item, sort_keys=sort_keys, max_depth=max_depth - 1, strict=strict)
        yield "[" if first else ","
        yield piece
        first = False
    yield "{}" if first else "]"


def iter_dumpb_array(items: Iterable[Any], **options: Any) -> Iterator[bytes]:
    """:func:`iter_dumps_array` as the exact bytes (see :func:`dumpb`)."""
    for piece in iter_dumps_array(items, **options):
        yield piece.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Reading


class _Null:
    """util.json's ``null`` sentinel while a document is being read."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL"


_NULL = _Null()
_MISSING = object()

_WS = cast("_AlwaysMatches", re.compile(rb"[ \t\r\n]*"))
# Possessive repeats (*+, ++): the engine keeps no backtracking state per
# escape (680 MB for a 10 MiB string of them) and never retries.
_STRING = re.compile(rb'"([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.DOTALL)
_ESCAPE = re.compile(
    rb"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f",
                   b"n": b"\n", b"r": b"\r", b"t": b"\t"}
# Only matched where a digit or "-" starts.
_NUMBER_RUN = cast("_AlwaysMatches", re.compile(rb"[0-9.eE+\-]+"))


# _ESCAPE for the bytes of a string decoded as latin-1 (one character per
# byte): re.sub on bytes joins its pieces with a buffer struct per piece, about
# 90 bytes for every escape (700 MB for a 10 MiB string of escapes), where a
# str piece costs 8.
_ESCAPE_TEXT = re.compile(_ESCAPE.pattern.decode("latin-1"), re.DOTALL)
_SIMPLE_ESCAPES_TEXT = {k.decode("latin-1"): v.decode("latin-1") for k, v in _SIMPLE_ESCAPES.items()}
# \uXXXX (its four digits) -> its UTF-8 bytes as latin-1 text: one shared
# piece for every repeat of an escape, not one object each (bounded).
_U_ESCAPES: dict[str, str] = {}


def _unescape(raw: bytes, doc: bytes, pos: int) -> bytes:
    def replace(m: re.Match[str]) -> str:
        other: str  # the escaped character, when the other groups did not match
        high, low, single, other = m.groups()
        if high is not None:
            code = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
            return chr(code).encode("utf-8").decode("latin-1")
        if single is not None:
            text = _U_ESCAPES.get(single)
            if text is not None:
                return text
            code = int(single, 16)
            if 0xD800 <= code <= 0xDFFF:
                raise JSONDecodeError("invalid escape (lone surrogate)", doc, pos)
            if len(_U_ESCAPES) >= 4096:
                _U_ESCAPES.clear()
            text = _U_ESCAPES[single] = chr(code).encode("utf-8").decode("latin-1")
            return text
        if other == "u":
            raise JSONDecodeError("invalid escape (\\u needs four hex digits)", doc, pos)
        return _SIMPLE_ESCAPES_TEXT.get(other, "\\" + other)

    return _ESCAPE_TEXT.sub(replace, raw.decode("latin-1")).encode("latin-1")


def _read_string(doc: bytes, pos: int) -> tuple[str | bytes, int]:
    m = _STRING.match(doc, pos)
    if m is None:
        raise JSONDecodeError("unterminated string", doc, pos)
    raw = m.group(1)
    if b"\\" in raw:
        raw = _unescape(raw, doc, pos)
    try:
        return raw.decode("utf-8"), m.end()
    except UnicodeDecodeError:
        return raw, m.end()


def _read_scalar(doc: bytes, pos: int) -> tuple[Any, int]:
    """A string, number or literal at ``pos`` (after whitespace)."""
    b = doc[pos:pos + 1]
    if b == b'"':
        return _read_string(doc, pos)
    if b in b"0123456789-" and b:
        m = _NUMBER_RUN.match(doc, pos)
        value = tonumber(m.group())
        if value is None:
            raise JSONDecodeError(f"invalid number {m.group().decode()!r}", doc, pos)
        return value, m.end()
    for word, literal in ((b"null", _NULL), (b"true", True), (b"false", False)):
        if b == word[:1]:
            if doc[pos + 1:pos + len(word)] != word[1:]:
                raise JSONDecodeError(f"{word.decode()} expected", doc, pos)
            return literal, pos + len(word)
    raise JSONDecodeError("value expected", doc, pos)


def _table_key(k: Any, doc: bytes, pos: int) -> Any:
    """A decoded value used as a ``__hash`` key, as the Lua key it becomes."""
    cls = k.__class__
    if cls is bool:
        return TRUE_KEY if k else FALSE_KEY
    if cls is float and k.is_integer() and INT_MIN <= k <= INT_MAX:
        return int(k)
    if k is _NULL or cls is list or cls is dict:
        return _TableKey(doc, pos)
    return k


class _TableKey:
    """A null or table used as a ``__hash`` key: a Lua table key, which the data model
    cannot hold.  It is an error only if it reaches the result (util.json's
    ``ipairs`` over an ``__array``/``__hash`` value never looks at it)."""

    __slots__ = ("doc", "pos")

    def __init__(self, doc: bytes, pos: int) -> None:
        self.doc = doc
        self.pos = pos

    def error(self) -> JSONDecodeError:
        return JSONDecodeError("a __hash key is null or a table, which this data model "
                               "cannot hold", self.doc, self.pos)


def _lua_ipairs(v: Any, doc: bytes, pos: int) -> Iterator[Any]:
    """Lua's ``ipairs`` over a raw decoded value (util.json applies it to __array/__hash)."""
    cls = v.__class__
    if cls is list:
        yield from v
    elif cls is dict:
        i = 1
        while i in v:
            yield v[i]
            i += 1
    elif cls is str or cls is bytes or v is _NULL:
        return  # a string indexes to nil; the null sentinel is an empty table
    else:
        raise JSONDecodeError(f"__array/__hash is a {cls.__name__}, "
                              "which util.json fails on", doc, pos)


def _fix_object(obj: dict[str, Any], doc: bytes, pos: int) -> dict[Any, Any]:
    """Apply ``__array`` and ``__hash`` to a just-closed object, as util.json does."""
    array = obj.get("__array", _MISSING)
    hashed = obj.get("__hash", _MISSING)
    use_array = array is not _MISSING and array is not False
    use_hash = hashed is not _MISSING and hashed is not False
    if not (use_array or use_hash):
        return obj
    result: dict[Any, Any] = {}
    if use_array:
        del obj["__array"]
        for i, v in enumerate(_lua_ipairs(array, doc, pos), 1):
            result[i] = v
    if use_hash:
        del obj["__hash"]
    result.update(obj)
    if use_hash:
        key = _MISSING
        for v in _lua_ipairs(hashed, doc, pos):
            if key is _MISSING:
                key = v
            else:
                result[_table_key(key, doc, pos)] = v
                key = _MISSING
    return result


def _finish(raw: Any) -> Any:
    """A raw table (nulls kept, BooleanKey keys) as a value of the data model.

    Its own entries are already finished (see :class:`_Reader`), so this is
    shallow.
    """
    cls = raw.__class__
    if cls is list:
        if raw and _NULL not in raw:
            return raw
        return _finish({i: v for i, v in enumerate(raw, 1)})
    if cls is not dict:
        return None if raw is _NULL else raw
    table = {k: v for k, v in raw.items() if v is not _NULL}
    for k in table:
        if k.__class__ is _TableKey:
            raise k.error()
    n = len(table)
    if n and all(k.__class__ is int and 1 <= k <= n for k in table):
        return [table[i] for i in range(1, n + 1)]
    if (TRUE_KEY in table and 1 not in table) or (FALSE_KEY in table and 0 not in table):
        table = {_plain_bool_key(k, table): v for k, v in table.items()}
    return table


def _plain_bool_key(k: Any, table: dict[Any, Any]) -> Any:
    if k is TRUE_KEY and 1 not in table:
        return True
    if k is FALSE_KEY and 0 not in table:
        return False
    return k


_FIRST, _AFTER = 0, 1  # frame states: nothing read yet / after a value


class _Frame:
    """An array or object being read: its raw value, state and pending member name."""

    __slots__ = ("value", "state", "key", "start")

    def __init__(self, value: list[Any] | dict[Any, Any], start: int) -> None:
        self.value: Any = value  # the reader knows which of the two from the context
        self.state = _FIRST
        self.key: Any = None
        self.start = start


def _finish_list(raw: list[Any]) -> list[Any]:
    for i, v in enumerate(raw):
        if v.__class__ is list or v.__class__ is dict:
            raw[i] = _finish(v)
    return raw


def _close_object(frame: _Frame, doc: bytes, fixed: bool) -> dict[Any, Any]:
    """Finish the members of a closed object and, if ``fixed``, apply __array/__hash.

    The values util.json's ``_fixobject`` consumes stay raw (nulls kept), as
    Prosody iterates them with ``ipairs``.
    """
    obj: dict[str, Any] = frame.value
    consumed: tuple[str, ...] = ()
    if fixed:
        consumed = tuple(k for k in _SPECIAL_KEYS if obj.get(k, False) is not False)
    for k, v in obj.items():
        if (v.__class__ is list or v.__class__ is dict) and k not in consumed:
            obj[k] = _finish(v)
    return _fix_object(obj, doc, frame.start) if consumed else obj


class _Reader:
    """An iterative reader: nesting is bounded by ``max_depth``, never by Python's stack.

    A container stays raw (nulls kept, BooleanKey keys) until its parent
    closes; when a container closes, its own children are finished.
    """

    def __init__(self, doc: bytes, max_depth: int) -> None:
        self.doc = doc
        self.max_depth = max_depth
        self.stack: list[_Frame] = []

    def read(self) -> tuple[Any, int]:
        doc, stack = self.doc, self.stack
        pos = _WS.match(doc, 0).end()
        need_value = True
        while True:
            if need_value:
                b = doc[pos:pos + 1]
                if b == b"[" or b == b"{":
                    if len(stack) >= self.max_depth:
                        raise JSONDecodeError(f"nested deeper than {self.max_depth}", doc, pos)
                    stack.append(_Frame([] if b == b"[" else {}, pos))
                    pos += 1
                    need_value = False
                    continue
                value, pos = _read_scalar(doc, pos)
            else:
                pos = _WS.match(doc, pos).end()
                frame = stack[-1]
                if frame.value.__class__ is list:
                    done, pos = self._array_step(frame, pos)
                else:
                    done, pos = self._object_step(frame, pos)
                if not done:
                    need_value = True
                    continue
                value = stack.pop().value if frame.value.__class__ is list else frame.key
                if frame.value.__class__ is list:
                    _finish_list(value)
            if not stack:
                return value, pos
            frame = stack[-1]
            if frame.value.__class__ is list:
                frame.value.append(value)
            else:
                frame.value[frame.key] = value
            frame.state = _AFTER
            need_value = False

    def _array_step(self, frame: _Frame, pos: int) -> tuple[bool, int]:
        """At ``pos`` (whitespace skipped) in an array: (closed?, position)."""
        doc = self.doc
        b = doc[pos:pos + 1]
        if b == b"]":
            return True, pos + 1
        if frame.state is _FIRST:
            return False, pos
        if b != b",":
            raise JSONDecodeError("',' or ']' expected", doc, pos)
        pos = _WS.match(doc, pos + 1).end()
        if doc[pos:pos + 1] == b"]":
            raise JSONDecodeError("value expected (trailing comma)", doc, pos)
        return False, pos

    def _object_step(self, frame: _Frame, pos: int) -> tuple[bool, int]:
        """At ``pos`` (whitespace skipped) in an object: (closed?, position).

        On closing, the finished object is left in ``frame.key`` for ``read``.
        """
        doc = self.doc
        b = doc[pos:pos + 1]
        if frame.state is _AFTER:
            if b == b"}":
                self.stack.pop()
                frame.key = _close_object(frame, doc, fixed=True)
                return True, pos + 1
            if b != b",":
                raise JSONDecodeError("',' or '}' expected", doc, pos)
            pos = _WS.match(doc, pos + 1).end()
            b = doc[pos:pos + 1]
        if b == b"}":  # empty object, or a trailing comma: util.json skips _fixobject
            self.stack.pop()
            frame.key = _close_object(frame, doc, fixed=False)
            return True, pos + 1
        if b != b'"':
            raise JSONDecodeError("member name expected", doc, pos)
        key, pos = _read_string(doc, pos)
        pos = _WS.match(doc, pos).end()
        if doc[pos:pos + 1] != b":":
            raise JSONDecodeError("':' expected", doc, pos)
        frame.key = key
        return False, _WS.match(doc, pos + 1).end()


# Plain JSON (what most clients send) is read by the C-accelerated standard
# json module; text where util.json's rules differ from plain JSON reading goes
# to the full reader below.  Both give the same values (tested).
_DECLINED = object()
_NOT_PLAIN = (b"__array", b"__hash", b"null")
_EMPTY_ARRAY = re.compile(rb"\[[ \t\n\r]*\]")  # [] is the empty table, {}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BRACKETS = bytes.maketrans(b"[]", b"{}")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")

PLAIN_MAX_DEPTH = 128
"""Plain JSON nested at most this deep goes to the C decoder (when ``max_depth``
is at least this too); deeper text goes to the full reader."""


class _NotPlain(ValueError):
    pass


def _plain_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    table = dict(pairs)
    if len(table) != len(pairs):
        raise _NotPlain  # a duplicate member: the full reader's rules
    return table


def _lua_integer(text: str) -> int | float:
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else float(text)


def _refuse_constant(name: str) -> float:
    raise _NotPlain(name)  # NaN, Infinity: not JSON util.json reads


def _nests_within(doc: bytes, limit: int) -> bool:
    """True when the arrays and objects of ``doc`` nest at most ``limit`` deep.

    Exact for valid JSON (strings are cut out first, so their brackets do not
    count); for anything else the C decoder fails and the answer is moot.
    """
    if doc.count(b"{") + doc.count(b"[") <= limit:
        return True  # every array or object has an opening bracket
    skeleton = _STRING.sub(b"", doc).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if not skeleton:
            return True
        shorter = skeleton.replace(b"{}", b"")
        if len(shorter) == len(skeleton):
            return False  # unbalanced: not JSON
        skeleton = shorter
    return not skeleton


def _plain_json(doc: bytes, max_depth: int) -> Any:
    """The value of ``doc`` when it is plain JSON, else ``_DECLINED``."""
    if (max_depth < PLAIN_MAX_DEPTH or any(m in doc for m in _NOT_PLAIN)
            or _EMPTY_ARRAY.search(doc) or _SURROGATE_ESCAPE.search(doc)
            or not _nests_within(doc, PLAIN_MAX_DEPTH)):
        return _DECLINED
    try:
        return _stdlib_json.loads(doc.decode("utf-8"), object_pairs_hook=_plain_object,
                                  parse_int=_lua_integer, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and json's errors
        return _DECLINED


def loads(text: str | bytes | bytearray, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read JSON as Prosody's ``util.json.decode`` does (see the module docs).

    Raises :class:`JSONDecodeError` for anything ``util.json.decode`` refuses
    (or fails on), for ``null``/table ``__hash`` keys and for nesting deeper
    than ``max_depth``.
    """
    if isinstance(text, str):
        doc = text.encode("utf-8", "surrogatepass")
    else:
        doc = bytes(text)
    value = _plain_json(doc, max_depth)
    if value is not _DECLINED:
        return value
    value, pos = _Reader(doc, max_depth).read()
    pos = _WS.match(doc, pos).end()
    if pos != len(doc):
        raise JSONDecodeError("garbage after the value", doc, pos)
    return _finish(value)
