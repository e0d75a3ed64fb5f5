"""Prosody's serialized Lua values, as bytes in and out.

Prosody stores data as Lua source: a ``.dat`` file is ``return <value>;`` and a
``.list`` file is one ``item(<value>);`` statement per entry.  This module reads
every such literal that Lua itself reads (files written by Prosody 0.9 to 13.0,
and hand-edited ones), and a list in every layout of ``item`` calls that
Prosody's ``list_load`` reads (see "Lists" below), without executing anything,
and writes exactly what Prosody 0.11 and later write.

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

Text laid out as Prosody writes it is read by a fast path: the compiled
reader ``prosody_store._creader`` where it is built (see
:mod:`prosody_store._speedups`; ``PROSODY_STORE_PURE=1`` turns it off), then
:mod:`prosody_store._fast_reader` (through the C ``json`` decoder); all else
by the parser here.  Both fast paths follow the rules below and both decline
tables nested deeper than 128 (``tests/test_speedups_reader.py`` checks the
compiled reader against the pure-Python code).  The fast path runs when
``max_depth`` is at least :data:`FAST_PATH_MAX_DEPTH` (128), whatever
``sys.getrecursionlimit()`` is.
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
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, cast

from prosody_store import _fast_reader, _speedups
from prosody_store.errors import Error
from prosody_store.numbers import INT_MAX, INT_MIN
from prosody_store._lua_table import FALSE_KEY, TRUE_KEY, BooleanKey, TableBuilder

if TYPE_CHECKING:
    import mmap
    from typing import Protocol

    class _AlwaysMatches(Protocol):
        """A pattern only matched where it cannot fail (it matches the empty
        string, or the caller has checked how the text starts)."""

        def match(self, string: bytes, pos: int = ..., /) -> re.Match[bytes]: ...

__all__ = [
    "BooleanKey",
    "DEFAULT_MAX_DEPTH",
    "FALSE_KEY",
    "ListPiece",
    "LuaSyntaxError",
    "TRUE_KEY",
    "could_be_lua",
    "dump_dat",
    "dump_item",
    "dumps",
    "iter_dumps_list",
    "iter_list",
    "iter_list_with_offsets",
    "list_item_ends",
    "list_pieces",
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

    ``lua_refuses`` is True when Lua itself refuses the input at that point
    (a token its lexer rejects, a token its grammar cannot take there, the
    input ends inside a statement, a table key that is nil or NaN), so that
    Prosody cannot load it either.  False means it may be Lua code that
    Prosody would run (``item(1+1)``, a variable), which this reader refuses
    because it never runs anything; a repair must not drop such text.  It is
    judged on the input the reader was given, with everything before ``pos``
    read as Lua reads it.
    """

    def __init__(self, msg: str, src: bytes = b"", pos: int = 0, *, base_line: int = 1,
                 base_pos: int = 0, filename: str | None = None,
                 lua_refuses: bool = False) -> None:
        self.msg = msg
        self.lua_refuses = lua_refuses
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

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], LuaSyntaxError], tuple[dict[str, Any]]]:
        # Keep the attributes through pickling (multiprocessing).
        return (_rebuild_error, (self.__dict__,))


def _rebuild_error(state: dict[str, Any]) -> LuaSyntaxError:
    err = LuaSyntaxError.__new__(LuaSyntaxError)
    err.__dict__.update(state)
    ValueError.__init__(err, str(err))
    return err


# ---------------------------------------------------------------------------
# Reading

_WS = cast("_AlwaysMatches", re.compile(rb"[ \t\n\r\f\v]*"))
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_LONG_OPEN = re.compile(rb"\[(=*)\[")
# A numeral as Lua's lexer cuts it out (greedy, may be malformed), plus one more
# name character that makes it malformed if present.
#
# Repeats are possessive (*+, ++) wherever the match cannot differ, so that the
# regex engine keeps no backtracking state per repetition (1.2 GB for a 10 MiB
# numeral) and never retries (a numeral such as 111...1a took quadratic time
# in _VALID_DEC: 24 s for 40 KB).
# (_NUMERAL_HEX is only matched where "0x" or "0X" starts.)
_NUMERAL_HEX = cast("_AlwaysMatches", re.compile(rb"0[xX](?:[pP][+-]?|[0-9a-fA-F.])*+[A-Za-z0-9_]?"))
_NUMERAL_DEC = cast("_AlwaysMatches", re.compile(rb"(?:[eE][+-]?|[0-9a-fA-F.])*+[A-Za-z0-9_]?"))
_VALID_DEC = re.compile(rb"(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+\Z")
_VALID_HEX = re.compile(rb"0[xX](?:[0-9a-fA-F]++(?:\.[0-9a-fA-F]*+)?+|\.[0-9a-fA-F]++)"
                        rb"(?:[pP][+-]?+[0-9]++)?+\Z")
_INT_DEC = re.compile(rb"[0-9]+\Z")
# The body of a short string up to (not including) its closing quote.
_DQ_BODY = cast("_AlwaysMatches",
                re.compile(rb'(?:[^"\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S])*+'))
_SQ_BODY = cast("_AlwaysMatches",
                re.compile(rb"(?:[^'\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S])*+"))
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
# A line whose first token is "item" after some indentation (the segment cut
# when no line starts with "item" right away).
_INDENTED_ITEM = re.compile(rb"\n[ \t\r\f\v]+item")
# A line whose first token is "item": where reading resumes after damage.
_ITEM_LINE = re.compile(rb"\n[ \t\r\f\v]*item")
# Bytes at which Lua may go on where this reader stopped after a value: a name
# (a variable, "and", "or"), a binary operator ("==" too), or a bracket or
# string that would call or index what came before.  Any other byte (a
# numeral, "=", a closing bracket or separator that does not fit, a byte that
# starts no Lua token) and the end of the input stop Lua there too.
_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_LUA_MAY_GO_ON = frozenset(_NAME_BYTES + b"+-*/%^&~|<>.:([{\"'")
# The same where a value should start: a name (a variable, "not", "function"),
# "#", "~" or "..." start expressions this reader does not take.
_LUA_MAY_START = frozenset(_NAME_BYTES + b"#~.")
# Every byte that starts a Lua token (names and numerals aside): the rest are
# refused by Lua's parser wherever they occur outside strings and comments.
_LUA_SYMBOLS = frozenset(b"+-*/%^#&~|<>=;:,.()[]{}")


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

    def error(self, msg: str, pos: int, lua_refuses: bool | None = None) -> LuaSyntaxError:
        """An error at ``pos``.  ``lua_refuses`` None: judged by the token at
        ``pos``, for a reader that stopped there expecting something else."""
        if lua_refuses is None:
            lua_refuses = _lua_stuck_at(self.src, pos)
        return LuaSyntaxError(msg, self.src, pos, base_line=self.base_line, base_pos=self.base_pos,
                              lua_refuses=lua_refuses)

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

    def _long_bracket_end(self, m: re.Match[bytes], what: str, start: int) -> int:
        close = b"]" + m.group(1) + b"]"
        end = self.src.find(close, m.end())
        if end < 0:
            raise self.error(what, self.end, True)
        return end + len(close)

    # -- scalars -----------------------------------------------------------------

    def parse_string(self, pos: int) -> tuple[int, str | bytes]:
        """A quoted string starting at ``pos`` (on the quote)."""
        src = self.src
        quote = src[pos]
        body_re = _DQ_BODY if quote == 0x22 else _SQ_BODY
        body_end = body_re.match(src, pos + 1).end()
        if body_end >= self.end or src[body_end] != quote:
            raise self.error("unfinished string", body_end, True)
        raw = src[pos + 1:body_end]
        if b"\\" in raw:
            raw = self._unescape(raw, pos + 1)
        return body_end + 1, _text(raw)

    def _unescape(self, raw: bytes, offset: int) -> bytes:
        # On the bytes as latin-1 text (one character per byte): see _ESCAPE_TEXT.
        def replace(m: re.Match[str]) -> str:
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
                    raise self.error("decimal escape too large", offset + m.start(), True)
                return chr(value)
            if kind == "u" and esc[2:3] == "{":
                code = int(esc[3:-1], 16)
                if code >= 0x80000000:
                    raise self.error("UTF-8 value too large", offset + m.start(), True)
                return _lua_utf8(code).decode("latin-1")
            raise self.error("invalid escape sequence", offset + m.start(), True)

        return _ESCAPE_TEXT.sub(replace, raw.decode("latin-1")).encode("latin-1")

    def parse_long_string(self, m: re.Match[bytes], pos: int) -> tuple[int, str | bytes]:
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
        raise self.error("malformed number", pos, True)

    def parse_negation(self, pos: int) -> tuple[int, int | float]:
        """``-`` applied to a number, possibly several times: ``-1``, ``- -1``, ``-(1/0)``."""
        negate = False
        while self.src[pos:pos + 1] == b"-":
            negate = not negate
            pos = self.skip(pos + 1)
        start = pos
        pos, value = self.parse_scalar(pos)
        if value.__class__ not in (int, float):
            raise self.error("only numbers can be negated", pos, False)
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
                raise self.error("only numbers can be divided", pos, False)
            pos, divisor = self.parse_scalar(self.skip(pos + 1))
            if divisor.__class__ not in (int, float):
                raise self.error("only numbers can be divided", pos, False)
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
            raise self.error(f"unexpected name '{name.decode()}' (data may not refer to variables)",
                             pos, False)
        if c == b"{":
            raise self.error("table not allowed here", pos, False)
        if not c:
            raise self.error("unexpected end of input", pos)
        raise self.error("unexpected symbol", pos, _lua_stuck_at(src, pos, _LUA_MAY_START))

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
            key: Any = _POSITIONAL
            if c == b"[" and not _LONG_OPEN.match(src, pos):
                kpos = self.skip(pos + 1)
                if src[kpos:kpos + 1] == b"{":
                    raise self.error("tables cannot be keys in data", kpos, False)
                kpos, key = self.parse_scalar(kpos)
                key = self._check_key(key, pos)
                kpos = self.skip(kpos)
                if src[kpos:kpos + 1] != b"]":
                    raise self.error("']' expected", kpos)
                kpos = self.skip(kpos + 1)
                if src[kpos:kpos + 1] != b"=":
                    raise self.error("'=' expected", kpos, True)
                pos = self.skip(kpos + 1)
            elif c.isalpha() or c == b"_":
                m = cast("re.Match[bytes]", _NAME.match(src, pos))  # c starts a name
                after = self.skip(m.end())
                if (src[after:after + 1] == b"=" and src[after + 1:after + 2] != b"="
                        and m.group() not in _KEYWORDS):
                    key = m.group().decode("ascii")
                    pos = self.skip(after + 1)
            elif not c:
                raise self.error("'}' expected", pos)
            if src[pos:pos + 1] == b"{":
                if len(stack) >= self.max_depth:
                    raise self.error(f"tables nested deeper than {self.max_depth}", pos, False)
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
            raise self.error("table index is nil", pos, True)  # Lua: an error when run
        if key.__class__ is float:
            if key != key:
                raise self.error("table index is NaN", pos, True)
            if key.is_integer() and -(2.0 ** 63) <= key < 2.0 ** 63:
                return int(key)  # Lua 5.4 stores integral float keys as integers
        return key


class _Positional:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<positional>"


_POSITIONAL = _Positional()


def _lua_stuck_at(src: bytes, pos: int, may_go_on: frozenset[int] = _LUA_MAY_GO_ON) -> bool:
    """Whether Lua refuses the text at ``pos`` too, where this reader stopped
    expecting something else (after a value; see _LUA_MAY_GO_ON)."""
    if pos >= len(src):
        return True
    return src[pos] not in may_go_on and src[pos:pos + 2] != b"=="


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
        ok, value = _read_value_fast(data)
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
        raise parser.error("value nested too deeply", 0, False) from None


def skip_space(src: bytes, pos: int) -> int:
    """The offset of the first byte at or after ``pos`` that is not whitespace or a comment."""
    return _Parser(src, DEFAULT_MAX_DEPTH).skip(pos)


def read_value(src: bytes, pos: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[int, Any]:
    """Read one value starting at ``pos``: ``(end offset, value)``.

    For readers of other Lua data, such as Prosody's config file, that parse
    the statements around the values themselves.
    """
    return _Parser(src, max_depth).parse_value(skip_space(src, pos))


_creader = _speedups.reader
"""The compiled reader (prosody_store._creader), or None where it is not built
or ``PROSODY_STORE_PURE=1``.  A module global, so that tests can set it to
None to run the pure-Python code alone."""


def _read_value_fast(data: bytes) -> tuple[bool, Any]:
    """The fast paths for a whole value: the compiled reader, then the JSON one."""
    if _creader is not None:
        ok, value = _creader.read_value(data)
        if ok:
            return True, value
    return _fast_reader.read_value(data, _parse_key)


def _read_items_fast(segment: bytes, base_pos: int,
                     starts: bool) -> tuple[list[int] | None, list[Any], int] | None:
    """The fast paths for a segment of a list: ``(start offsets or None, items, line
    breaks in the segment)``, or None.

    The compiled reader reads any layout of ``item`` calls it takes and gives
    each item's statement offset (and counts the line breaks) itself; the
    JSON one only Prosody's layout, whose statement offsets
    :func:`_statement_starts` finds.
    """
    if _creader is not None:
        batch = _creader.read_items(segment, base_pos if starts else None)
        if batch is not None:
            return cast("tuple[list[int] | None, list[Any], int]", batch)
    items = _fast_reader.read_items(segment, _parse_key)
    if items is None:
        return None
    found = [base_pos + s for s in _statement_starts(segment)] if starts else None
    return found, items, segment.count(b"\n")


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


# ---------------------------------------------------------------------------
# Lists
#
# A .list file is a Lua chunk that Prosody's datamanager.list_load runs with
# one global, ``item``, a function that appends its first argument to the list
# (a nil one appends nothing).  This reader takes every such chunk whose
# statements are ``item`` calls with data for arguments, in any layout Lua
# takes: several on a line or indented, with or without ``;``, comments and
# empty statements between, each call form (``item(v)``, ``item{...}``,
# ``item"s"``, ``item[[s]]``), extra arguments (read, and dropped as Lua does),
# ``item()`` and ``item(nil)`` (no item).  Everything else is refused with a
# LuaSyntaxError, also where Prosody would run it: nothing here runs code.


def _skip_separators(parser: _Parser, pos: int) -> int:
    """Whitespace, comments and empty statements (``;``) from ``pos``."""
    src = parser.src
    pos = parser.skip(pos)
    while src[pos:pos + 1] == b";":
        pos = parser.skip(pos + 1)
    return pos


def _parse_arguments(parser: _Parser, pos: int) -> tuple[int, Any]:
    """``(a, b, ...)`` at ``pos`` (on the parenthesis): ``(end, first argument or None)``.

    Lua evaluates every argument and ``item`` keeps the first, so the others
    are read (they must be data too) and dropped.
    """
    src = parser.src
    pos = parser.skip(pos + 1)
    if src[pos:pos + 1] == b")":
        return pos + 1, None
    pos, first = parser.parse_value(pos)
    pos = parser.skip(pos)
    while src[pos:pos + 1] == b",":
        pos, _ = parser.parse_value(parser.skip(pos + 1))
        pos = parser.skip(pos)
    if src[pos:pos + 1] != b")":
        raise parser.error("')' expected", pos)
    return pos + 1, first


def _parse_item_call(parser: _Parser, pos: int) -> tuple[int, Any]:
    """The ``item`` call statement at ``pos``: ``(end, item)``, item None for none."""
    src = parser.src
    m = _NAME.match(src, pos)
    if not m or m.group() != b"item":
        # A Lua statement starts with a name, "(" or "::".  Any other token
        # right after an item call would call or index its result (nothing),
        # which fails when run.
        lua_may_run = bool(m) or src[pos:pos + 1] == b"(" or src[pos:pos + 2] == b"::"
        raise parser.error("'item' expected", pos, not lua_may_run)
    pos = parser.skip(m.end())
    c = src[pos:pos + 1]
    if c == b"(":
        return _parse_arguments(parser, pos)
    if c == b"{" or c == b'"' or c == b"'" or _LONG_OPEN.match(src, pos):
        return parser.parse_value(pos)
    # "item = x" and "item, x = ..." are assignments Lua runs; after the bare
    # name anything else is an error to Lua too (indexing a function fails).
    raise parser.error("'(' expected", pos, c not in (b"=", b","))


def _parse_statements(parser: _Parser, pos: int) -> Iterator[tuple[int, int, Any]]:
    """``(start, end, item)`` for each statement from ``pos`` to the end of the text.

    ``start`` is the offset of the statement's ``item``, ``end`` the offset
    just past the call; item is None for ``item()`` and ``item(nil)``.
    """
    while True:
        pos = _skip_separators(parser, pos)
        if pos >= parser.end:
            return
        end, value = _parse_item_call(parser, pos)
        yield pos, end, value
        pos = end


def _statement_starts(segment: bytes) -> list[int]:
    """Start offsets of the statements of a segment the fast path has read."""
    starts = [0]
    i = segment.find(b");\nitem(")
    while i >= 0:
        starts.append(i + 3)
        i = segment.find(b");\nitem(", i + 3)
    return starts


def _damage_start(parser: _Parser, pos: int, statement: int | None = None) -> int:
    """Where the damage starts when the statement after offset ``pos`` (the end of
    the last one that read) does not read: at that statement (``statement``, else
    found from ``pos``; ``pos`` itself if a comment there is broken), or at the
    start of its line when only blanks precede it there."""
    if statement is None:
        try:
            statement = _skip_separators(parser, pos)
        except LuaSyntaxError:
            return pos
    src = parser.src
    line = src.rfind(b"\n", pos, statement) + 1 or pos
    return line if not src[line:statement].strip(b" \t\r\f\v") else statement


def _segment_end(buf: bytes, start: int) -> int:
    """Where a segment of whole statements may end: at the start of the last
    line of ``buf`` (its line break at or after ``start``) whose first token is
    ``item``; -1 if there is none.

    Such a line starts a statement unless it lies in a long string or comment,
    or in a string continued over lines: those end unfinished at the cut, an
    error the caller retries on a longer segment.  A cut within a line could
    fall in a line comment, which would end at the cut without an error, so
    the items of one line always stay in one segment.
    """
    i = buf.rfind(_LIST_BOUNDARY, start)
    if i >= 0:
        return i + 1
    last = None
    for last in _INDENTED_ITEM.finditer(buf, start):
        pass
    return -1 if last is None else last.start() + 1


def iter_list(src: bytes | str | IO[bytes], *, max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[Any]:
    """Yield the items of a ``.list`` file in order, those Prosody's ``list_load`` returns.

    ``src`` is the file's content, or a binary file object read in chunks so
    that memory stays bounded by the largest item (when items start lines;
    the items of one line are read together).  Every layout of ``item`` calls
    with data arguments is read (see the comment above); ``item(nil)`` and
    ``item()`` yield nothing, and ``item(a, b)`` yields ``a``, as in Prosody.
    Raises :class:`LuaSyntaxError` on anything else.
    """
    if not hasattr(src, "read"):
        src = io.BytesIO(_as_bytes(src))
    return _iter_stream(cast("IO[bytes]", src), max_depth, offsets=False)  # has read()


def iter_list_with_offsets(src: bytes | str | IO[bytes], *,
                           max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[tuple[int, Any]]:
    """Like :func:`iter_list`, yielding ``(end_offset, item)``.

    The items cut the input into consecutive pieces: an item's piece starts
    where the previous one's ends (the first at 0), and ends where the next
    item's statement starts (the last at the end of the input).  So a piece
    holds one ``item`` call that yields an item, plus the separators,
    comments and ``item(nil)`` calls up to the next one.  For Prosody's own
    layout (one ``item(...);`` per line) the end is just past the item's line,
    which is what Prosody 13 records in a ``.lidx`` index; where several items
    share a line, a piece ends within the line, so that every piece still
    holds exactly one item and the index has one entry per item read.

    In a damaged list, the items before the damage come first, the last of
    them ending where the statement that does not read starts; then the
    :class:`LuaSyntaxError` is raised.
    """
    if not hasattr(src, "read"):
        src = io.BytesIO(_as_bytes(src))
    return _iter_stream(cast("IO[bytes]", src), max_depth, offsets=True)  # has read()


_NO_ITEM = object()


def _iter_stream(f: IO[bytes], max_depth: int, offsets: bool) -> Iterator[Any]:
    """The items of a list read from ``f``; with ``offsets``, ``(end, item)`` pairs."""
    # A batch is let go of before the next is read, so that memory holds one.
    batches = _iter_batches(f, max_depth, offsets)
    if not offsets:
        for _, items in batches:
            if items:
                yield from items
            items = None
        return
    pending = _NO_ITEM  # an item whose end is the next item's start
    for starts, items in batches:  # with offsets, starts is never None
        if items is None:
            if pending is not _NO_ITEM:
                yield cast("list[int]", starts)[0], pending
                pending = _NO_ITEM
            continue
        for start, item in zip(cast("list[int]", starts), items):
            if pending is not _NO_ITEM:
                yield start, pending
            pending = item
        starts = items = item = None


def _iter_batches(f: IO[bytes], max_depth: int,
                  starts: bool) -> Iterator[tuple[list[int] | None, list[Any] | None]]:
    """The items of a list read from ``f``, in batches ``(start offsets, items)``.

    With ``starts``, the file offset of each item's statement comes with the
    items (else None).  Statements that yield no item are left out.  A batch
    ``([offset], None)`` says where the last item's piece ends: it comes last,
    with the size of the input, or (with ``starts``) before an error, with the
    start of the statement that does not read.

    The list is parsed one segment of whole statements at a time (see
    :func:`_segment_end`).  A statement that runs on past the segment fails
    with an error at its end; it is then retried on a longer segment, up to a
    later cut.  An error anywhere else is real and raised at once (after the
    items before it), so a damaged file is never read whole.
    """
    fast = _fast_path_allowed(max_depth)
    buf = b""
    base_pos = 0  # file offset of buf[0]
    base_line = 1
    search_from = 0  # a cut's line break must be at or after this index of buf
    eof = False
    while True:
        if eof:
            cut = len(buf)
        else:
            cut = _segment_end(buf, search_from)
            if cut < 0:
                chunk = f.read(max(_READ_SIZE, len(buf)))
                eof = not chunk
                buf += chunk
                continue
        segment = buf[:cut]
        batch = None
        newlines = -1  # line breaks in the segment, where the fast path counted them
        if fast and search_from == 0:
            batch = _read_items_fast(segment, base_pos, starts)
        if batch is not None:
            fast_starts, items, newlines = batch
            batch = None
            yield fast_starts, items
            del fast_starts, items  # let the batch go before the next is read
            consumed = cut
        else:
            parser = _Parser(segment, max_depth, base_line, base_pos)
            found: list[int] = []
            values: list[Any] = []
            consumed = 0
            try:
                for start, end, value in _parse_statements(parser, 0):
                    consumed = end
                    if value is not None:
                        found.append(base_pos + start)
                        values.append(value)
                search_from = 0
            except (LuaSyntaxError, RecursionError) as exc:
                if isinstance(exc, LuaSyntaxError) and not eof and exc.pos - base_pos >= cut:
                    search_from = cut - consumed  # runs on past the cut: retry
                else:
                    # Only chains of parentheses or minus signs recurse.
                    err = exc if isinstance(exc, LuaSyntaxError) else parser.error(
                        "value nested too deeply", consumed, False)
                    if values:
                        yield found, values
                    if starts:
                        yield [base_pos + _damage_start(parser, consumed)], None
                    raise err from None
            if values:
                yield found, values
        if eof and cut == len(buf):
            yield [base_pos + cut], None
            return
        base_line += newlines if newlines >= 0 else segment.count(b"\n", 0, consumed)
        base_pos += consumed
        buf = buf[consumed:]
        if not eof:
            # Read on now, not only when no cut is left: a segment holding no
            # whole statement (a comment before an "item" line) consumes
            # nothing, and only more data moves the next cut forward.
            chunk = f.read(max(_READ_SIZE, len(buf)))
            eof = not chunk
            buf += chunk


# -- cutting a list into items without reading it, and damaged lists --------------

class ListPiece(NamedTuple):
    """Bytes ``start:end`` of a list: one item (``value``), or damaged (``error``)."""

    start: int
    end: int
    value: Any = None
    error: LuaSyntaxError | None = None


def list_pieces(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> list[ListPiece]:
    """Cut a list into consecutive pieces that cover it: one per item, one per damaged part.

    For a list that reads, these are the items of :func:`iter_list` with the
    pieces of :func:`iter_list_with_offsets`.  In a damaged list, a statement
    that does not read starts a damaged piece, which runs to the next line
    whose first token is ``item``, where reading resumes (a guess at where the
    next item starts; Lua itself reads nothing of a damaged list).  The first
    damaged piece's error is the one :func:`iter_list` raises.
    """
    data = _as_bytes(data)
    pieces = []
    start = 0
    try:
        for end, value in iter_list_with_offsets(data, max_depth=max_depth):
            pieces.append(ListPiece(start, end, value))
            start = end
    except LuaSyntaxError:
        return _recover_pieces(data, max_depth)
    return pieces


def _recover_pieces(data: bytes, max_depth: int) -> list[ListPiece]:
    """:func:`list_pieces` of a damaged list, parsed statement by statement."""
    parser = _Parser(data, max_depth)
    size = len(data)
    pieces: list[ListPiece] = []
    piece_start = 0  # where the next piece starts
    pending = _NO_ITEM  # the item of the open piece, if any
    pos = 0
    while True:
        statement = pos
        try:
            statement = _skip_separators(parser, pos)
            if statement >= size:
                break
            pos, value = _parse_item_call(parser, statement)
        except (LuaSyntaxError, RecursionError) as exc:
            err = exc if isinstance(exc, LuaSyntaxError) else parser.error(
                "value nested too deeply", statement, False)
            if pending is not _NO_ITEM:
                cut = _damage_start(parser, pos, statement)
                pieces.append(ListPiece(piece_start, cut, pending))
                piece_start, pending = cut, _NO_ITEM
            resume = _next_item_line(data, statement)
            pieces.append(ListPiece(piece_start, resume, None, err))
            piece_start = pos = resume
            continue
        if value is not None:
            if pending is not _NO_ITEM:
                pieces.append(ListPiece(piece_start, statement, pending))
                piece_start = statement
            pending = value
    if pending is not _NO_ITEM:
        pieces.append(ListPiece(piece_start, size, pending))
    elif pieces and piece_start < size:
        pieces[-1] = pieces[-1]._replace(end=size)  # item(nil) and comments after damage
    return pieces


def _next_item_line(data: bytes, pos: int) -> int:
    """The start of the first line after ``pos`` whose first token is ``item``, else the end."""
    m = _ITEM_LINE.search(data, pos)
    return len(data) if m is None else m.start() + 1


# "item" and the start of a call: each statement, and whatever else looks like one.
_ITEM_CALL = re.compile(rb"item[ \t\r\n\f\v]*[-({\"'\[]")
_LONG_BRACKET = re.compile(rb"\[[\[=]")
# Prosody writes inf, -inf and nan as (1/0), (-1/0), (0/0).
_PROSODY_PARENTHESES = (b"1/", b"-1", b"0/")


def list_item_ends(data: bytes | mmap.mmap) -> list[int]:
    """The end offset of each item of a list, as :func:`iter_list_with_offsets`
    gives them, and for a damaged list as :func:`list_pieces` cuts it.

    ``data`` is the list's bytes or an ``mmap`` of it.  Text laid out as
    Prosody writes it is cut at its lines that start with ``item``, the way
    Prosody 13 builds an index, without being parsed (see
    :func:`_prosody_line_ends` for why that is exact); any other is parsed.
    """
    ends = _prosody_line_ends(data)
    if ends is not None:
        return ends
    if hasattr(data, "seek"):
        data.seek(0)
        stream = cast("IO[bytes]", data)  # an mmap, read as a binary file
    else:
        stream = io.BytesIO(_as_bytes(data))
    try:
        return [end for end, _ in iter_list_with_offsets(stream)]
    except LuaSyntaxError:
        return [piece.end for piece in list_pieces(bytes(data))]


def _prosody_line_ends(data: bytes | mmap.mmap) -> list[int] | None:
    """The item ends of a list in Prosody's layout, from its lines alone; else None.

    The layout: the text starts with ``item(``, has no long bracket (``[[``,
    ``[=``) anywhere, and every ``item`` followed by what could start its
    arguments is ``item(`` at a line start right after ``);`` and a line
    break, with a first argument that is not nil.  Then, if the text reads at
    all, its statements are exactly those places: every statement is one of
    them, and each of them is a statement, since nothing can hide it (a short
    string spans lines only after a backslash or ``\\z``, which leave no ``);``
    right before the line break; a line comment ends before it; there is no
    long string or comment).  A text that does not read gets the same cuts,
    as :func:`list_pieces` would make them where only values are damaged.
    """
    if data[:5] != b"item(" or _LONG_BRACKET.search(data):
        return None
    ends = []
    for m in _ITEM_CALL.finditer(data):
        start = m.start()
        if m.end() - start != 5 or data[start + 4] != 0x28:  # not exactly "item("
            return None
        if start:
            if data[start - 3:start] != b");\n":
                return None
            ends.append(start)
        arg = data[start + 5:start + 8]
        first = arg[:1]
        if (not first or first in b" \t\r\n\f\v)n" or arg[:2] == b"--"
                or (first == b"(" and arg[1:3] not in _PROSODY_PARENTHESES)):
            return None  # nil or nothing, or not as Prosody writes a value
    ends.append(len(data))
    return ends


def could_be_lua(data: bytes) -> bool:
    """False when Lua certainly refuses to load ``data`` as a chunk; True when it might.

    Runs Lua's lexer over the whole text (strings and their escapes, long
    strings, comments, numerals): a token it rejects, a byte that starts no
    token, or brackets ``()``, ``{}``, ``[]`` that do not pair up are errors
    wherever they are, whatever the text around them means.  Nothing is parsed
    beyond that, let alone run, so True says little.
    """
    data = _as_bytes(data)
    parser = _Parser(data, DEFAULT_MAX_DEPTH)
    stack: list[int] = []
    pos = 0
    try:
        while True:
            pos = parser.skip(pos)
            if pos >= parser.end:
                return not stack
            pos, bracket = _lex_token(parser, pos)
            if bracket in _OPENERS:
                stack.append(_OPENERS[bracket])
            elif bracket and (not stack or stack.pop() != bracket):
                return False
    except LuaSyntaxError:
        return False


_OPENERS = {0x28: 0x29, 0x7B: 0x7D, 0x5B: 0x5D}  # ( ) { } [ ]


def _lex_token(parser: _Parser, pos: int) -> tuple[int, int]:
    """The Lua token at ``pos``: ``(end, its byte if it is a bracket, else 0)``.

    Raises :class:`LuaSyntaxError` for a token Lua's lexer rejects and for a
    byte that starts none, which Lua's parser rejects wherever it is.
    """
    src = parser.src
    c = src[pos]
    if c == 0x22 or c == 0x27:
        return parser.parse_string(pos)[0], 0
    if c == 0x5B:
        m = _LONG_OPEN.match(src, pos)
        return (parser.parse_long_string(m, pos)[0], 0) if m else (pos + 1, c)
    if 0x30 <= c <= 0x39 or (c == 0x2E and src[pos + 1:pos + 2].isdigit()):
        return parser.parse_number(pos)[0], 0
    m = _NAME.match(src, pos)
    if m:
        return m.end(), 0
    if c in _LUA_SYMBOLS:
        return pos + 1, (c if c in b"(){}]" else 0)
    raise parser.error("unexpected symbol", pos, True)


# ---------------------------------------------------------------------------
# Writing

# Bytes Prosody escapes, and how: named escapes, else three decimal digits.
_ESCAPED = {i: "\\%03d" % i for i in (*range(0, 32), *range(127, 256))}
_ESCAPED.update({7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
                 92: "\\\\", 34: '\\"', 39: "\\'"})
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\"'\\\x7f-\U0010ffff]")

_cwriter = _speedups.writer
"""The compiled writer (prosody_store._cwriter), or None where it is not built
or ``PROSODY_STORE_PURE=1``.  Each of its functions returns exactly what the
code below returns, or None where it is not sure (any value the code below
refuses, among others), and then the code below runs.  A module global, so
that tests can set it to None to run the pure-Python code alone."""


def _dump_string(s: str | bytes | bytearray) -> str:
    if s.__class__ is str:
        if not _NEEDS_ESCAPE.search(s):
            return f'"{s}"'
        try:
            text = s.encode("utf-8").decode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("string holds a lone surrogate, which is not UTF-8") from None
    else:
        text = bytes(cast("bytes | bytearray", s)).decode("latin-1")
    return '"' + text.translate(_ESCAPED) + '"'


def _dump_number(n: int | float, path: list[Any]) -> str:
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


def _path_text(path: list[Any]) -> str:
    return "value" + "".join(f"[{k!r}]" for k in path)


def _dump_scalar(v: Any, path: list[Any]) -> str:
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


def _dump_key(k: Any, path: list[Any]) -> str:
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


def _check_duplicate_keys(t: dict[Any, Any], path: list[Any]) -> None:
    """Keys that differ in Python but are one key in Lua (``"a"``/``b"a"``, True/TRUE_KEY)."""
    seen: set[Any] = set()
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


def _dump_table(t: Any, out: list[str], depth: int, path: list[Any], active: set[int]) -> None:
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
    k: Any
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
    if _cwriter is not None:
        text = _cwriter.dumps(value)
        if text is not None:
            return cast(str, text)
    return _pure_dumps(value)


def _pure_dumps(value: Any) -> str:
    """:func:`dumps` in Python: the reference, and every error message."""
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
        text = None if _cwriter is None else _cwriter.dumps(item, 2)
        if text is not None:
            out.append(text)
        elif isinstance(item, (dict, list, tuple)):
            _dump_table(item, out, 2, [index], set())
        else:
            out.append(_dump_scalar(item, [index]))
        out.append(";")
        yield "".join(out)
        first = False
    yield "{}" if first else "\n}"


def dump_dat(value: Any) -> bytes:
    """The bytes of a ``.dat`` file holding ``value``: ``return <value>;\\n``."""
    if _cwriter is not None:
        data = _cwriter.dump_dat(value)
        if data is not None:
            return cast(bytes, data)
    return b"return " + _pure_dumps(value).encode("ascii") + b";\n"


def dump_item(value: Any) -> bytes:
    """One ``.list`` entry: ``item(<value>);\\n``."""
    if _cwriter is not None:
        data = _cwriter.dump_item(value)
        if data is not None:
            return cast(bytes, data)
    return b"item(" + _pure_dumps(value).encode("ascii") + b");\n"
