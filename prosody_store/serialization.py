"""Prosody's serialized Lua values, as bytes in and out.

Prosody stores data as Lua source: a ``.dat`` file is ``return <value>;`` and a
``.list`` file is one ``item(<value>);`` statement per entry.  This module reads
every such literal that Lua itself reads (files written by Prosody 0.9 to 13.0,
and hand-edited ones) without executing anything, and writes exactly what
Prosody 0.11 and later write.

Lua values map to Python values like this:

=====================  ==================================================
Lua                    Python
=====================  ==================================================
nil                    ``None``
true, false            ``True``, ``False``
integer                ``int`` (64-bit range)
float                  ``float`` (``inf`` and ``nan`` included)
string                 ``str`` if the bytes are valid UTF-8, else ``bytes``
table with keys 1..n   ``list`` (n >= 1)
any other table        ``dict``, entries in file order
=====================  ==================================================

Python's ``True == 1`` and ``False == 0``, so a dict cannot hold both the Lua
keys ``true`` and ``1``.  Lua can, and Prosody data sometimes does.  Boolean
keys are therefore plain ``True``/``False`` except in a table that also has the
number key they would collide with; there the boolean key is the marker
:data:`TRUE_KEY` or :data:`FALSE_KEY` (instances of :class:`BooleanKey`).  The
writer accepts both spellings.

The module knows nothing of files: it works on bytes (``iter_list`` also reads
from an open binary file, in chunks, for lists larger than memory).

Text laid out exactly as Prosody writes it is read by a fast path
(:mod:`prosody_store._fast_reader`, through the C ``json`` decoder); all else
by the parser here.  The fast path runs when ``max_depth`` is at least
:data:`FAST_PATH_MAX_DEPTH` (128), whatever ``sys.getrecursionlimit()`` is.
It relies on these invariants, each guarded by a test:

* It only declines, never fails: what it accepts, the parser reads to the
  same value (``tests/test_serialization.py::test_fast_path_agrees_on_*``,
  ``tests/test_serialization_interop.py::read``).
* It declines tables nested deeper than :data:`FAST_PATH_MAX_DEPTH`, so what
  it returns is within ``max_depth``, and deep input gets the parser's value
  or error (``tests/test_fast_path_rule.py::test_fast_path_declines_deeper_than_its_limit``,
  ``::test_deep_input_same_as_parser``, ``::test_deep_list_items_same_as_parser``).
* That depth is far below any usable recursion limit, so the C decoder does
  not hit ``RecursionError`` (if it did, the fast path would decline):
  raising or lowering the limit changes neither results nor the path taken
  (``tests/test_fast_path_rule.py::test_recursion_limit_changes_neither_result_nor_path``,
  ``::test_fast_path_runs_from_its_threshold``).
"""
from __future__ import annotations

import io
import math
import re
from typing import IO, Any, Iterable, Iterator

from prosody_store import _fast_reader
from prosody_store.errors import Error
from prosody_store.numbers import INT_MAX, INT_MIN
from prosody_store._lua_table import FALSE_KEY, TRUE_KEY, BooleanKey, TableBuilder

__all__ = [
    "BooleanKey",
    "DEFAULT_MAX_DEPTH",
    "FALSE_KEY",
    "LuaSyntaxError",
    "TRUE_KEY",
    "dump_dat",
    "dump_item",
    "dumps",
    "iter_dumps_list",
    "iter_list",
    "iter_list_with_offsets",
    "loads",
]

DEFAULT_MAX_DEPTH = 1000
"""How deeply tables may nest in input before it is rejected."""

FAST_PATH_MAX_DEPTH = _fast_reader.MAX_DEPTH
"""The fast path runs only when ``max_depth`` is at least this (see the module docs)."""

WRITE_MAX_DEPTH = 127
"""Prosody's serializer refuses tables nested deeper than this."""

_INT_MIN_DIGITS = b"9223372036854775808"

_READ_SIZE = 1 << 20


class LuaSyntaxError(Error, ValueError):
    """Input that is not a Lua data literal.  Carries where the problem is.

    ``lineno`` and ``colno`` count from 1; the column counts bytes.  ``pos`` is
    the byte offset, ``excerpt`` a few bytes of the input around it, and
    ``filename`` is set by callers that know it (the store does).
    """

    def __init__(self, msg: str, src: bytes = b"", pos: int = 0, *, base_line: int = 1,
                 base_pos: int = 0, filename: str | None = None) -> None:
        self.msg = msg
        self.pos = base_pos + pos
        line_start = src.rfind(b"\n", 0, pos) + 1
        self.lineno = base_line + src.count(b"\n", 0, pos)
        self.colno = pos - line_start + 1
        line_end = src.find(b"\n", pos)
        if line_end < 0:
            line_end = len(src)
        excerpt = src[max(line_start, pos - 20):min(line_end, pos + 20)]
        self.excerpt = excerpt.decode("utf-8", "replace")
        self.filename = filename
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}: " if self.filename else ""
        near = f" near {self.excerpt!r}" if self.excerpt else " at end of input"
        return f"{where}line {self.lineno}, column {self.colno}: {self.msg}{near}"

    def __reduce__(self):  # keep the attributes through pickling (multiprocessing)
        return (_rebuild_error, (self.__dict__,))


def _rebuild_error(state: dict) -> LuaSyntaxError:
    err = LuaSyntaxError.__new__(LuaSyntaxError)
    err.__dict__.update(state)
    ValueError.__init__(err, str(err))
    return err


# ---------------------------------------------------------------------------
# Reading

_WS = re.compile(rb"[ \t\n\r\f\v]*")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_LONG_OPEN = re.compile(rb"\[(=*)\[")
# A numeral as Lua's lexer cuts it out (greedy, may be malformed), plus one more
# name character that makes it malformed if present.
#
# Repeats are possessive (*+, ++) wherever the match cannot differ, so that the
# regex engine keeps no backtracking state per repetition (1.2 GB for a 10 MiB
# numeral) and never retries (a numeral such as 111...1a took quadratic time
# in _VALID_DEC: 24 s for 40 KB).
_NUMERAL_HEX = re.compile(rb"0[xX](?:[pP][+-]?|[0-9a-fA-F.])*+[A-Za-z0-9_]?")
_NUMERAL_DEC = re.compile(rb"(?:[eE][+-]?|[0-9a-fA-F.])*+[A-Za-z0-9_]?")
_VALID_DEC = re.compile(rb"(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+\Z")
_VALID_HEX = re.compile(rb"0[xX](?:[0-9a-fA-F]++(?:\.[0-9a-fA-F]*+)?+|\.[0-9a-fA-F]++)"
                        rb"(?:[pP][+-]?+[0-9]++)?+\Z")
_INT_DEC = re.compile(rb"[0-9]+\Z")
# The body of a short string up to (not including) its closing quote.
_DQ_BODY = re.compile(rb'(?:[^"\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S])*+')
_SQ_BODY = re.compile(rb"(?:[^'\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S])*+")
_ESCAPE = re.compile(rb"\\(?:z[ \t\n\r\f\v]*|x[0-9a-fA-F]{2}|[0-9]{1,3}|u\{[0-9a-fA-F]+\}|\r\n?|\n\r?|[\s\S]?)")
_SIMPLE_ESCAPES = {
    b"\\a": b"\a", b"\\b": b"\b", b"\\f": b"\f", b"\\n": b"\n", b"\\r": b"\r",
    b"\\t": b"\t", b"\\v": b"\v", b"\\\\": b"\\", b'\\"': b'"', b"\\'": b"'",
    b"\\\n": b"\n", b"\\\r": b"\n", b"\\\r\n": b"\n", b"\\\n\r": b"\n",
}
# The same, for the bytes of a string decoded as latin-1: re.sub on bytes joins
# its pieces with a buffer struct per piece, about 90 bytes for every escape
# (700 MB for a 10 MiB string of escapes), where a str piece costs 8.
_ESCAPE_TEXT = re.compile(_ESCAPE.pattern.decode("latin-1"))
_SIMPLE_ESCAPES_TEXT = {k.decode("latin-1"): v.decode("latin-1") for k, v in _SIMPLE_ESCAPES.items()}
# Every escape of fixed form, decimal and hex ones included: one lookup each.
_SIMPLE_ESCAPES_TEXT.update({"\\" + digits: chr(int(digits)) for width in (1, 2, 3)
                             for digits in (f"{i:0{width}d}" for i in range(min(256, 10 ** width)))})
_SIMPLE_ESCAPES_TEXT.update({"\\x" + a + b: chr(int(a + b, 16))
                             for a in "0123456789abcdefABCDEF" for b in "0123456789abcdefABCDEF"})
_LONG_NEWLINE = re.compile(rb"\r\n|\n\r|\r|\n")
_KEYWORDS = frozenset(b"and break do else elseif end false for function goto if in local nil not "
                      b"or repeat return then true until while".split())
_LIST_BOUNDARY = b"\nitem"


class _Parser:
    """Reads Lua data literals from ``src`` (bytes), starting at any offset."""

    __slots__ = ("src", "end", "max_depth", "base_line", "base_pos", "in_parens")

    def __init__(self, src: bytes, max_depth: int, base_line: int = 1, base_pos: int = 0) -> None:
        self.in_parens = 0
        self.src = src
        self.end = len(src)
        self.max_depth = max_depth
        self.base_line = base_line
        self.base_pos = base_pos

    def error(self, msg: str, pos: int) -> LuaSyntaxError:
        return LuaSyntaxError(msg, self.src, pos, base_line=self.base_line, base_pos=self.base_pos)

    # -- whitespace and comments ------------------------------------------------

    def skip(self, pos: int) -> int:
        """Skip whitespace and comments."""
        src = self.src
        while True:
            pos = _WS.match(src, pos).end()
            if src[pos:pos + 2] != b"--":
                return pos
            m = _LONG_OPEN.match(src, pos + 2)
            if m:
                pos = self._long_bracket_end(m, "unfinished long comment", pos)
            else:
                nl = src.find(b"\n", pos)
                pos = self.end if nl < 0 else nl

    def _long_bracket_end(self, m: re.Match, what: str, start: int) -> int:
        close = b"]" + m.group(1) + b"]"
        end = self.src.find(close, m.end())
        if end < 0:
            raise self.error(what, self.end)
        return end + len(close)

    # -- scalars -----------------------------------------------------------------

    def parse_string(self, pos: int) -> tuple[int, str | bytes]:
        """A quoted string starting at ``pos`` (on the quote)."""
        src = self.src
        quote = src[pos]
        body_re = _DQ_BODY if quote == 0x22 else _SQ_BODY
        body_end = body_re.match(src, pos + 1).end()
        if body_end >= self.end or src[body_end] != quote:
            raise self.error("unfinished string", body_end)
        raw = src[pos + 1:body_end]
        if b"\\" in raw:
            raw = self._unescape(raw, pos + 1)
        return body_end + 1, _text(raw)

    def _unescape(self, raw: bytes, offset: int) -> bytes:
        # On the bytes as latin-1 text (one character per byte): see _ESCAPE_TEXT.
        def replace(m: re.Match) -> str:
            esc = m.group()
            simple = _SIMPLE_ESCAPES_TEXT.get(esc)
            if simple is not None:
                return simple
            kind = esc[1:2]
            if kind == "z":
                return ""
            if kind == "x" and len(esc) == 4:
                return chr(int(esc[2:], 16))
            if "0" <= kind <= "9":  # not str.isdigit, which takes "\xb2" (superscript two)
                value = int(esc[1:])
                if value > 255:
                    raise self.error("decimal escape too large", offset + m.start())
                return chr(value)
            if kind == "u" and esc[2:3] == "{":
                code = int(esc[3:-1], 16)
                if code >= 0x80000000:
                    raise self.error("UTF-8 value too large", offset + m.start())
                return _lua_utf8(code).decode("latin-1")
            raise self.error("invalid escape sequence", offset + m.start())

        return _ESCAPE_TEXT.sub(replace, raw.decode("latin-1")).encode("latin-1")

    def parse_long_string(self, m: re.Match, pos: int) -> tuple[int, str | bytes]:
        end = self._long_bracket_end(m, "unfinished long string", pos)
        body = self.src[m.end():end - len(m.group()) ]
        if body[:2] in (b"\r\n", b"\n\r"):
            body = body[2:]
        elif body[:1] in (b"\n", b"\r"):
            body = body[1:]
        if b"\r" in body:
            body = _LONG_NEWLINE.sub(b"\n", body)
        return end, _text(body)

    def parse_number(self, pos: int) -> tuple[int, int | float]:
        src = self.src
        m = (_NUMERAL_HEX if src[pos:pos + 2] in (b"0x", b"0X") else _NUMERAL_DEC).match(src, pos)
        text = m.group()
        if _INT_DEC.match(text):
            if len(text) > 19:  # beyond 64 bits for sure: Lua reads a float
                return m.end(), float(text)
            value = int(text)
            return m.end(), value if value <= INT_MAX else float(value)
        if _VALID_DEC.match(text):
            return m.end(), float(text)
        if _VALID_HEX.match(text):
            digits = text[2:]
            if b"." not in digits and b"p" not in digits and b"P" not in digits:
                value = int(digits, 16) & 0xFFFFFFFFFFFFFFFF  # Lua wraps hex integers
                return m.end(), value - (1 << 64) if value > INT_MAX else value
            try:
                return m.end(), float.fromhex(text.decode())
            except OverflowError:
                return m.end(), math.inf
        raise self.error("malformed number", pos)

    def parse_negation(self, pos: int) -> tuple[int, int | float]:
        """``-`` applied to a number, possibly several times: ``-1``, ``- -1``, ``-(1/0)``."""
        negate = False
        while self.src[pos:pos + 1] == b"-":
            negate = not negate
            pos = self.skip(pos + 1)
        start = pos
        pos, value = self.parse_scalar(pos)
        if value.__class__ not in (int, float):
            raise self.error("only numbers can be negated", pos)
        if not negate:
            return pos, value
        # Two numerals Prosody writes that Lua 5.4 reads as another type: the
        # float -0.0 ("-0", an integer 0 to Lua) and math.mininteger (a float
        # to Lua, whose lexer overflows the digits before negating).  As whole
        # values, not inside an expression, they read as what Prosody wrote:
        # the same numbers, and written back the same way.
        literal = self.src[start:pos] if not self.in_parens else b""
        if literal == b"0":
            return pos, -0.0
        if literal == _INT_MIN_DIGITS:
            return pos, INT_MIN
        if value.__class__ is float:
            return pos, -value
        return pos, -value if value != INT_MIN else INT_MIN  # Lua's wrap-around

    def parse_parenthesized(self, pos: int) -> tuple[int, int | float]:
        """``(a/b)`` with numbers a and b, as Prosody writes inf and nan; or ``(a)``."""
        self.in_parens += 1
        try:
            return self._parenthesized(pos)
        finally:
            self.in_parens -= 1

    def _parenthesized(self, pos: int) -> tuple[int, int | float]:
        pos, value = self.parse_scalar(self.skip(pos + 1))
        pos = self.skip(pos)
        if self.src[pos:pos + 1] == b"/":
            if value.__class__ not in (int, float):
                raise self.error("only numbers can be divided", pos)
            pos, divisor = self.parse_scalar(self.skip(pos + 1))
            if divisor.__class__ not in (int, float):
                raise self.error("only numbers can be divided", pos)
            value = _lua_divide(value, divisor)
            pos = self.skip(pos)
        if self.src[pos:pos + 1] != b")":
            raise self.error("')' expected", pos)
        return pos + 1, value

    def parse_scalar(self, pos: int) -> tuple[int, Any]:
        """Any value but a table, at ``pos`` (whitespace already skipped)."""
        src = self.src
        c = src[pos:pos + 1]
        if c == b'"' or c == b"'":
            return self.parse_string(pos)
        if c.isdigit() or (c == b"." and src[pos + 1:pos + 2].isdigit()):
            return self.parse_number(pos)
        if c == b"-":
            return self.parse_negation(pos)
        if c == b"(":
            return self.parse_parenthesized(pos)
        if c == b"[":
            m = _LONG_OPEN.match(src, pos)
            if m:
                return self.parse_long_string(m, pos)
        m = _NAME.match(src, pos)
        if m:
            name = m.group()
            if name == b"true":
                return m.end(), True
            if name == b"false":
                return m.end(), False
            if name == b"nil":
                return m.end(), None
            raise self.error(f"unexpected name '{name.decode()}' (data may not refer to variables)", pos)
        if c == b"{":
            raise self.error("table not allowed here", pos)
        if not c:
            raise self.error("unexpected end of input", pos)
        raise self.error("unexpected symbol", pos)

    # -- tables --------------------------------------------------------------------

    def parse_value(self, pos: int) -> tuple[int, Any]:
        """One value, tables included, at ``pos`` (whitespace already skipped).

        Tables are read with an explicit stack, so nesting depth is limited by
        ``max_depth``, not by Python's recursion limit.
        """
        src = self.src
        if src[pos:pos + 1] != b"{":
            return self.parse_scalar(pos)
        stack: list[TableBuilder] = [TableBuilder(_POSITIONAL)]
        pos += 1
        while True:
            table = stack[-1]
            pos = self.skip(pos)
            c = src[pos:pos + 1]
            if c == b"}":
                pos += 1
                value = table.result()
                stack.pop()
                if not stack:
                    return pos, value
                parent = stack[-1]
                if table.key is _POSITIONAL:
                    parent.positional(value)
                else:
                    parent.keyed(table.key, value)
                pos = self._field_end(self.skip(pos))
                continue
            # One field: [key] = value, name = value, or value.
            key = _POSITIONAL
            if c == b"[" and not _LONG_OPEN.match(src, pos):
                kpos = self.skip(pos + 1)
                if src[kpos:kpos + 1] == b"{":
                    raise self.error("tables cannot be keys in data", kpos)
                kpos, key = self.parse_scalar(kpos)
                key = self._check_key(key, pos)
                kpos = self.skip(kpos)
                if src[kpos:kpos + 1] != b"]":
                    raise self.error("']' expected", kpos)
                kpos = self.skip(kpos + 1)
                if src[kpos:kpos + 1] != b"=":
                    raise self.error("'=' expected", kpos)
                pos = self.skip(kpos + 1)
            elif c.isalpha() or c == b"_":
                m = _NAME.match(src, pos)
                after = self.skip(m.end())
                if (src[after:after + 1] == b"=" and src[after + 1:after + 2] != b"="
                        and m.group() not in _KEYWORDS):
                    key = m.group().decode("ascii")
                    pos = self.skip(after + 1)
            elif not c:
                raise self.error("'}' expected", pos)
            if src[pos:pos + 1] == b"{":
                if len(stack) >= self.max_depth:
                    raise self.error(f"tables nested deeper than {self.max_depth}", pos)
                stack.append(TableBuilder(key))
                pos += 1
                continue
            pos, value = self.parse_scalar(pos)
            if key is _POSITIONAL:
                table.positional(value)
            else:
                table.keyed(key, value)
            pos = self._field_end(self.skip(pos))

    def _field_end(self, pos: int) -> int:
        """After a field: a separator, or the closing brace (left for the caller)."""
        c = self.src[pos:pos + 1]
        if c == b";" or c == b",":
            return pos + 1
        if c == b"}":
            return pos
        raise self.error("'}' expected" if c else "unexpected end of input", pos)

    def _check_key(self, key: Any, pos: int) -> Any:
        if key is None:
            raise self.error("table index is nil", pos)
        if key.__class__ is float:
            if key != key:
                raise self.error("table index is NaN", pos)
            if key.is_integer() and -(2.0 ** 63) <= key < 2.0 ** 63:
                return int(key)  # Lua 5.4 stores integral float keys as integers
        return key


class _Positional:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<positional>"


_POSITIONAL = _Positional()


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _lua_utf8(code: int) -> bytes:
    """Lua 5.4's ``\\u{...}`` encoding, which goes up to 2^31 (6-byte sequences)."""
    if code < 0x80:
        return bytes((code,))
    out = []
    limit = 0x3F
    while code > limit:
        out.append(0x80 | (code & 0x3F))
        code >>= 6
        limit >>= 1
    out.append(((~limit << 1) & 0xFF) | code)
    return bytes(reversed(out))


def _lua_divide(a: int | float, b: int | float) -> float:
    a, b = float(a), float(b)
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _as_bytes(src: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(src, str):
        return src.encode("utf-8", "surrogatepass")
    if isinstance(src, (bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, bytes):
        return src
    raise TypeError(f"expected bytes or str, not {type(src).__name__}")


def loads(src: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse one serialized Lua value, such as the whole content of a ``.dat`` file.

    A leading ``return`` and a trailing ``;`` are accepted.  Raises
    :class:`LuaSyntaxError` for anything that is not a data literal.
    """
    data = _as_bytes(src)
    if _fast_path_allowed(max_depth):
        ok, value = _fast_reader.read_value(data, _parse_key)
        if ok:
            return value
    parser = _Parser(data, max_depth)
    try:
        pos = parser.skip(0)
        m = _NAME.match(data, pos)
        if m and m.group() == b"return":
            pos = parser.skip(m.end())
        elif pos == len(data):
            return None  # an empty chunk returns nothing: no data, as in Prosody
        if data[pos:pos + 1] in (b";", b""):
            value = None  # "return" without a value
        else:
            pos, value = parser.parse_value(pos)
        pos = parser.skip(pos)
        if data[pos:pos + 1] == b";":
            pos = parser.skip(pos + 1)
        if pos != len(data):
            raise parser.error("end of input expected", pos)
        return value
    except RecursionError:
        # Only chains of parentheses or minus signs recurse; tables do not.
        raise parser.error("value nested too deeply", 0) from None


def skip_space(src: bytes, pos: int) -> int:
    """The offset of the first byte at or after ``pos`` that is not whitespace or a comment."""
    return _Parser(src, DEFAULT_MAX_DEPTH).skip(pos)


def read_value(src: bytes, pos: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[int, Any]:
    """Read one value starting at ``pos``: ``(end offset, value)``.

    For readers of other Lua data, such as Prosody's config file, that parse
    the statements around the values themselves.
    """
    return _Parser(src, max_depth).parse_value(skip_space(src, pos))


def _fast_path_allowed(max_depth: int) -> bool:
    """Whether the fast path may run: it declines tables nested deeper than
    ``FAST_PATH_MAX_DEPTH``, so every value it returns is within ``max_depth``."""
    return max_depth >= FAST_PATH_MAX_DEPTH


def _parse_key(text: str) -> Any:
    """A non-string key's Lua text, for the fast path (which declines on errors)."""
    data = text.encode("ascii")
    parser = _Parser(data, 1)
    pos, key = parser.parse_scalar(parser.skip(0))
    if parser.skip(pos) != len(data):
        raise parser.error("']' expected", pos)
    return parser._check_key(key, 0)


def _statement_ends(segment: bytes) -> list[int]:
    """End offsets of the statements of a segment the fast path has read."""
    ends = []
    i = segment.find(b");\nitem(")
    while i >= 0:
        ends.append(i + 3)
        i = segment.find(b");\nitem(", i + 3)
    ends.append(len(segment))
    return ends


def _parse_statements(parser: _Parser, pos: int, end: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(end_pos, value)`` for each ``item(...)`` statement in ``src[pos:end]``."""
    src = parser.src
    while True:
        pos = parser.skip(pos)
        if pos >= end:
            return
        if src[pos:pos + 1] == b";":
            pos += 1
            continue
        m = _NAME.match(src, pos)
        if not m or m.group() != b"item":
            raise parser.error("'item' expected", pos)
        pos = parser.skip(m.end())
        c = src[pos:pos + 1]
        if c == b"(":
            pos = parser.skip(pos + 1)
            if src[pos:pos + 1] == b")":
                value = None
            else:
                pos, value = parser.parse_value(pos)
                pos = parser.skip(pos)
                if src[pos:pos + 1] != b")":
                    raise parser.error("')' expected", pos)
            pos += 1
        elif c == b"{" or c == b'"' or c == b"'" or _LONG_OPEN.match(src, pos):
            pos, value = parser.parse_value(pos)
        else:
            raise parser.error("'(' expected", pos)
        yield pos, value


def iter_list(src: bytes | str | IO[bytes], *, max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[Any]:
    """Yield the items of a ``.list`` file (``item(...);`` statements) in order.

    ``src`` is the file's content, or a binary file object read in chunks so
    that memory stays bounded by the largest item.  ``item(nil)`` yields
    nothing, as in Prosody.  Raises :class:`LuaSyntaxError` on bad input.
    """
    if not hasattr(src, "read"):
        src = io.BytesIO(_as_bytes(src))
    return _iter_stream(src, max_depth, offsets=False)


def iter_list_with_offsets(src: bytes | str | IO[bytes], *,
                           max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[tuple[int, Any]]:
    """Like :func:`iter_list`, yielding ``(end_offset, item)``.

    ``end_offset`` is the byte offset just past the item's statement and its
    line end, which is what Prosody 13 records in a ``.lidx`` index.
    """
    if not hasattr(src, "read"):
        src = io.BytesIO(_as_bytes(src))
    return _iter_stream(src, max_depth, offsets=True)


def _line_end(data: bytes, pos: int) -> int:
    """Offset past the statement's own ``;`` and newline, if any follow it directly."""
    if data[pos:pos + 1] == b";":
        pos += 1
    if data[pos:pos + 1] == b"\n":
        pos += 1
    return pos


def _iter_stream(f: IO[bytes], max_depth: int, offsets: bool) -> Iterator[Any]:
    """Parse a list from a binary file, one segment of whole statements at a time.

    Yields the items, or with ``offsets`` ``(end offset, item)`` pairs.

    A segment ends just before the last line in the buffer that starts with
    ``item``.  A statement that runs on past that line (a long string holding
    such a line) fails with an error at the segment's end; it is then retried
    on a longer segment, up to a later such line.  An error anywhere else is
    real and raised at once, so a damaged file is never read whole.
    """
    fast = _fast_path_allowed(max_depth)
    buf = b""
    base_pos = 0  # file offset of buf[0]
    base_line = 1
    search_from = 0  # a boundary must start at or after this index of buf
    eof = False
    while True:
        if eof:
            cut = len(buf)
        else:
            boundary = buf.rfind(_LIST_BOUNDARY, search_from)
            if boundary < 0:
                chunk = f.read(max(_READ_SIZE, len(buf)))
                eof = not chunk
                buf += chunk
                continue
            cut = boundary + 1
        segment = buf[:cut]
        items = None
        if fast and search_from == 0:
            items = _fast_reader.read_items(segment, _parse_key)
        if items is not None:
            if offsets:
                for end, value in zip(_statement_ends(segment), items):
                    yield base_pos + end, value
            else:
                yield from items
            consumed = cut
        else:
            parser = _Parser(segment, max_depth, base_line, base_pos)
            consumed = 0
            try:
                for pos, value in _parse_statements(parser, 0, cut):
                    consumed = _line_end(segment, pos)
                    if value is not None:
                        yield (base_pos + consumed, value) if offsets else value
                search_from = 0
            except LuaSyntaxError as err:
                if eof or err.pos - base_pos < cut:
                    raise
                search_from = cut - consumed
            except RecursionError:
                raise parser.error("value nested too deeply", consumed) from None
        if eof and cut == len(buf):
            return
        base_line += segment.count(b"\n", 0, consumed)
        base_pos += consumed
        buf = buf[consumed:]
        if not eof:
            # Read on now, not only when no boundary is left: a segment holding
            # no whole statement (a comment before an "item" line) consumes
            # nothing, and only more data moves the next cut forward.
            chunk = f.read(max(_READ_SIZE, len(buf)))
            eof = not chunk
            buf += chunk


# ---------------------------------------------------------------------------
# Writing

# Bytes Prosody escapes, and how: named escapes, else three decimal digits.
_ESCAPED = {i: "\\%03d" % i for i in (*range(0, 32), *range(127, 256))}
_ESCAPED.update({7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
                 92: "\\\\", 34: '\\"', 39: "\\'"})
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\"'\\\x7f-\U0010ffff]")


def _dump_string(s: str | bytes) -> str:
    if s.__class__ is str:
        if not _NEEDS_ESCAPE.search(s):
            return f'"{s}"'
        try:
            text = s.encode("utf-8").decode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("string holds a lone surrogate, which is not UTF-8") from None
    else:
        text = bytes(s).decode("latin-1")
    return '"' + text.translate(_ESCAPED) + '"'


def _dump_number(n: int | float, path: list) -> str:
    if isinstance(n, int):
        if not INT_MIN <= n <= INT_MAX:
            raise ValueError(f"{_path_text(path)}: integer {n} does not fit in 64 bits")
        return "%d" % n
    n = float(n)
    if n != n:
        return "(0/0)"
    if n == math.inf:
        return "(1/0)"
    if n == -math.inf:
        return "(-1/0)"
    return "%.18g" % n


def _path_text(path: list) -> str:
    return "value" + "".join(f"[{k!r}]" for k in path)


def _dump_scalar(v: Any, path: list) -> str:
    """Any value but a table; ``path`` says where it is, for errors."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _dump_number(v, path)
    if isinstance(v, (str, bytes, bytearray)):
        try:
            return _dump_string(v)
        except ValueError as err:
            raise ValueError(f"{_path_text(path)}: {err}") from None
    raise TypeError(f"{_path_text(path)}: cannot store a {type(v).__name__} in Prosody data")


def _dump_key(k: Any, path: list) -> str:
    if k.__class__ is BooleanKey:
        return "true" if k.value else "false"
    if k.__class__ is float:
        if k != k:
            raise ValueError(f"{_path_text(path)}: NaN cannot be a table key")
        if k.is_integer() and -(2.0 ** 63) <= k < 2.0 ** 63:
            return "%d" % k  # Lua 5.4 keeps an integral float key as an integer
    if isinstance(k, (dict, list, tuple)) or k is None:
        raise TypeError(f"{_path_text(path)}: a {type(k).__name__} cannot be a table key")
    return _dump_scalar(k, path)


def _check_duplicate_keys(t: dict, path: list) -> None:
    """Keys that differ in Python but are one key in Lua (``"a"``/``b"a"``, True/TRUE_KEY)."""
    seen: set = set()
    for k in t:
        if k.__class__ is str:
            lua_key: Any = k.encode("utf-8", "surrogatepass")
        elif k.__class__ is BooleanKey:
            lua_key = ("bool", k.value)
        elif k.__class__ is bool:
            lua_key = ("bool", k)
        elif isinstance(k, (bytes, bytearray)):
            lua_key = bytes(k)
        else:
            continue
        if lua_key in seen:
            raise ValueError(f"{_path_text(path)}: key {k!r} appears twice once written as Lua")
        seen.add(lua_key)


def _dump_table(t: Any, out: list, depth: int, path: list, active: set) -> None:
    ident = id(t)
    if ident in active:
        raise ValueError(f"{_path_text(path)}: the value contains itself (a cycle)")
    if depth > WRITE_MAX_DEPTH:
        raise ValueError(f"{_path_text(path)}: tables nested deeper than {WRITE_MAX_DEPTH}, "
                         "which Prosody cannot store")
    is_dict = isinstance(t, dict)
    if is_dict and any(k.__class__ is not str for k in t):
        _check_duplicate_keys(t, path)
    active.add(ident)
    out.append("{")
    indent = "\n" + "\t" * depth
    next_index = 1
    had_items = False
    for k, v in (t.items() if is_dict else enumerate(t, 1)):
        if v is None:
            continue  # nil: no entry, as in Lua
        had_items = True
        out.append(indent)
        kcls = k.__class__
        if (kcls is int or kcls is float) and k == next_index:
            next_index += 1
        elif kcls is str and _NEEDS_ESCAPE.search(k) is None:
            out.append(f'["{k}"] = ')  # the common case, without the calls below
        else:
            path.append(k)
            out.append(f"[{_dump_key(k, path)}] = ")
            path.pop()
        if v.__class__ is str and _NEEDS_ESCAPE.search(v) is None:
            out.append(f'"{v}";')
            continue
        path.append(k)
        if isinstance(v, (dict, list, tuple)):
            _dump_table(v, out, depth + 1, path, active)
        else:
            out.append(_dump_scalar(v, path))
        path.pop()
        out.append(";")
    if had_items:
        out.append("\n" + "\t" * (depth - 1))
    out.append("}")
    active.discard(ident)


def dumps(value: Any) -> str:
    """Serialize ``value`` exactly as Prosody 0.11+'s ``util.serialization`` does.

    Raises :class:`TypeError` for values Lua data cannot hold and
    :class:`ValueError` for cycles, integers outside 64 bits and tables nested
    deeper than Prosody allows; the message says where in ``value``.
    """
    if isinstance(value, (dict, list, tuple)):
        out: list[str] = []
        _dump_table(value, out, 1, [], set())
        return "".join(out)
    return _dump_scalar(value, [])


def iter_dumps_list(items: Iterable[Any]) -> Iterator[str]:
    """:func:`dumps` of a list, piece by piece: a list store streamed as one Lua value.

    The concatenation equals ``dumps(list(items))``.  Items must not be None: a
    hole would give every later item an explicit index after the first pieces
    were sent, so it raises :class:`ValueError` instead.
    """
    first = True
    for index, item in enumerate(items, 1):
        if item is None:
            raise ValueError("a list item is None (a hole), which cannot be streamed")
        out = ["{\n\t" if first else "\n\t"]
        if isinstance(item, (dict, list, tuple)):
            _dump_table(item, out, 2, [index], set())
        else:
            out.append(_dump_scalar(item, [index]))
        out.append(";")
        yield "".join(out)
        first = False
    yield "{}" if first else "\n}"


def dump_dat(value: Any) -> bytes:
    """The bytes of a ``.dat`` file holding ``value``: ``return <value>;\\n``."""
    return b"return " + dumps(value).encode("ascii") + b";\n"


def dump_item(value: Any) -> bytes:
    """One ``.list`` entry: ``item(<value>);\\n``."""
    return b"item(" + dumps(value).encode("ascii") + b");\n"
