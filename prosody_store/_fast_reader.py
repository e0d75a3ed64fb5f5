"""A fast path for text exactly as Prosody 0.11+ writes it, by way of the json module.

Prosody's serializer has a rigid shape: one table entry per line, indented
with tabs, string keys as ``["key"] = ``, strings in double quotes with every
quote, backslash and newline escaped.  Because a string never holds a raw
newline or an unescaped quote, a handful of plain byte replacements anchored on
newlines and quotes turn such text into JSON that the C-accelerated ``json``
module reads, several times faster than a parser written in Python.

This module only ever *declines*: any input it is not sure about, anything the
JSON reader rejects, and anything JSON would accept but Lua would not (``null``,
``NaN``, ``\\u``, ``\\/``, raw carriage returns, long strings) makes it return
``None``, and the caller uses the real parser, which also produces the error
messages.  Tests check that both paths give the same values.

Table entries become JSON object members.  A string key keeps its text; a
positional entry gets the key :data:`POS`; any other key (number, boolean)
becomes two members, :data:`KEY` holding the key's Lua text and :data:`VAL`
holding the value.  These marker keys are lone surrogates, which no UTF-8
string decodes to, so they cannot clash with a real key.
"""
from __future__ import annotations

import json
import math
import re
from itertools import accumulate, repeat
from operator import floordiv
from typing import Any, Callable

from prosody_store._lua_table import TableBuilder

POS = "\ud800"
KEY = "\ud801"
VAL = "\ud802"

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1

# Decimal escapes (always three digits in Prosody's output), a run at a time.
_DECIMAL_RUN = re.compile(rb"(\\\d\d\d(?:\\\d\d\d)*)")
# A non-string key line, after the other replacements: its Lua text is group 1.
_OTHER_KEY = re.compile(rb'"\\ud800":\[([^\]"\'\\]*)\] = ')
# Text that JSON reads but Lua does not, or that needs the real parser.


def _decode_decimal_escapes(s: bytes) -> bytes | None:
    """Replace every run of ``\\ddd`` escapes with the bytes it stands for.

    Non-ASCII text is all decimal escapes in Prosody's output, so this is hot:
    the runs are converted together by :func:`_decimal_values` and cut apart
    again by their lengths, with no Python code per run.  None (decline) for
    a value above 255, and for a quote or backslash written as a decimal
    escape, which Prosody never does.
    """
    parts = _DECIMAL_RUN.split(s)  # text, run, text, run, ..., text
    runs = parts[1::2]
    if not runs:
        return s
    raw = _decimal_values(b"".join(runs).translate(_DIGIT_VALUES, b"\\"))
    if raw is None or b'"' in raw or b"\\" in raw:
        return None
    ends = list(accumulate(map(floordiv, map(len, runs), repeat(4))))
    parts[1::2] = map(raw.__getitem__, map(slice, [0, *ends[:-1]], ends))
    return b"".join(parts)


_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))


def _decimal_values(digits: bytes) -> bytes | None:
    """Three digit values (0..9) per escape -> the byte each escape stands for.

    Arithmetic on whole sequences at once: the hundreds, tens and units digits
    are each laid out as one big integer with a 16-bit lane per escape, so
    ``100*H + 10*T + U`` (at most 999) never carries from one lane into the
    next.  A lane above 255 means an escape Lua rejects: None.
    """
    n = len(digits) // 3

    def lanes(column: bytes) -> int:
        wide = bytearray(2 * n)
        wide[1::2] = column
        return int.from_bytes(wide, "big")

    total = lanes(digits[0::3]) * 100 + lanes(digits[1::3]) * 10 + lanes(digits[2::3])
    wide = total.to_bytes(2 * n, "big")
    if wide[0::2].strip(b"\0"):
        return None
    return wide[1::2]


def _parse_int(text: str) -> int | float:
    value = int(text)
    if value == 0 and text[0] == "-":
        return -0.0  # as the real reader does for "-0"
    if _INT_MIN <= value <= _INT_MAX:
        return value
    return float(text)  # Lua reads integers beyond 64 bits as floats


def _only_indentation_tabs(src: bytes) -> bool:
    """True when every tab is part of the indentation at a line start."""
    total = src.count(b"\t")
    indent = 0
    run = b"\n\t"
    while indent < total:
        found = src.count(run)
        if not found:
            break
        indent += found
        run += b"\t"
    return indent == total


def _has_json_null(text: bytes) -> bool:
    """A ``null`` where JSON would read a value (Lua would read a variable)."""
    i = text.find(b"null")
    while i >= 0:
        if i == 0 or text[i - 1] in b":,[ \n\t":
            return True
        i = text.find(b"null", i + 4)
    return False


def _to_json(body: bytes, items: bool) -> tuple[str, int] | None:
    """Translate Prosody-formatted Lua text to JSON text, or None.

    ``body`` is one value, or with ``items`` the text between the first
    ``item(`` and the last ``);\n`` of whole list statements, which becomes a
    JSON array.  Also returns how many NaNs the text holds (``(0/0)``), so that
    :func:`_decode` can refuse a bare ``NaN``, which Lua would not read.
    """
    if b"\\u" in body or b"\\/" in body or not _only_indentation_tabs(body):
        return None  # escapes that JSON reads and Lua does not
    # "\\\\" first, so that what is left of every backslash starts an
    # escape; "\\'" is the only other one JSON spells differently and
    # Prosody writes often ("\\a" and "\\v" are left for JSON to refuse).
    s = body.replace(b"\\\\", b"\\u005c").replace(b"\\'", b"'")
    if b'\\"] = ' in s:
        return None  # an escaped quote that would look like the end of a key
    if _ESCAPED_PUNCTUATION.search(s):
        return None  # "\\[" and the like: invalid in Lua, valid JSON once spelled as below
    # From here on a quote not after a backslash only ever delimits a
    # string, and JSON reads "\\"" as Lua does.  JSON's own punctuation that
    # Prosody never writes outside a string is spelled as a JSON escape: the
    # same character inside a string, a syntax error outside (so "{"a": 1}",
    # "item(1, 2)" or a long string "[[...]]" cannot pass as JSON).
    s = s.replace(b",", b"\\u002c").replace(b":", b"\\u003a")
    # Structure.  A raw newline only ever ends an entry or opens a table, so
    # these replacements cannot reach inside a string either.  A carriage
    # return becomes a newline, refused below with any other stray one.
    s = s.translate(_CR_TO_LF, b"\t")
    if items:
        s = s.replace(b");\nitem(", b",")
    s = (s.replace(b";\n}", b"}")
         .replace(b";\n", b',"\\ud800":')
         .replace(b"{\n", b'{"\\ud800":')
         .replace(b'"\\ud800":["', b'"')
         .replace(b'"] = ', b'":'))
    if b"\n" in s:
        return None  # a line break that is not Prosody's layout (Lua rejects one in a string)
    if b'"\\ud800":[' in s:
        s = _OTHER_KEY.sub(rb'"\\ud801":"\1","\\ud802":', s)
    s = s.replace(b"[", b"\\u005b").replace(b"]", b"\\u005d")
    nans = 0
    if b'":(' in s:
        nans = s.count(b'":(0/0)')
        s = (s.replace(b'":(1/0)', b'":1e999')
             .replace(b'":(-1/0)', b'":-1e999')
             .replace(b'":(0/0)', b'":NaN'))
    if _has_json_null(s):
        return None
    s = _decode_decimal_escapes(s)
    if s is None:
        return None
    if items:
        s = b"[" + s + b"]"
    try:
        return s.decode("utf-8"), nans
    except UnicodeDecodeError:
        return None  # a string that is not UTF-8 becomes bytes: the real parser


_CR_TO_LF = bytes.maketrans(b"\r", b"\n")
_ESCAPED_PUNCTUATION = re.compile(rb"\\[\[\],:]")


class _Decline(Exception):
    pass


def _make_hook(parse_key: Callable[[str], Any]) -> Callable[[list], Any]:
    def build_any(pairs: list) -> Any:
        """Any mix of entries, with Lua's rules for number and boolean keys."""
        table = TableBuilder(None)
        key = None
        for k, v in pairs:
            if k == POS:
                table.positional(v)
            elif k == KEY:
                try:
                    key = parse_key(v)
                except ValueError:
                    raise _Decline from None
            elif k == VAL:
                table.keyed(key, v)
            else:
                table.keyed(k, v)
        return table.result()

    def hook(pairs: list) -> Any:
        d = dict(pairs)
        if POS not in d and KEY not in d:
            return d  # string keys only: the common case, all in C
        if KEY in d:
            return build_any(pairs)
        if len(d) == 1:
            return [v for _, v in pairs]  # positional entries only
        # Positional entries and string keys, which never collide.
        table: dict = {}
        n = 0
        for k, v in pairs:
            if k == POS:
                n += 1
                table[n] = v
            else:
                table[k] = v
        return table

    return hook


def _decode(translated: tuple[str, int], parse_key: Callable[[str], Any]) -> tuple[bool, Any]:
    text, nans = translated
    seen = 0

    def constant(name: str) -> float:
        """JSON's NaN and Infinity: only the NaNs that were "(0/0)" in Lua."""
        nonlocal seen
        seen += 1
        if name != "NaN" or seen > nans:
            raise _Decline
        return math.nan

    try:
        return True, json.loads(text, object_pairs_hook=_make_hook(parse_key),
                                parse_int=_parse_int, parse_constant=constant, strict=False)
    except (ValueError, RecursionError, _Decline):
        return False, None


def read_items(segment: bytes, parse_key: Callable[[str], Any]) -> list | None:
    """The items of whole ``item(...);\\n`` statements, or None to decline."""
    if not (segment.startswith(b"item(") and segment.endswith(b");\n")):
        return None
    translated = _to_json(segment[5:-3], items=True)
    if translated is None:
        return None
    ok, items = _decode(translated, parse_key)
    return items if ok else None


def read_value(src: bytes, parse_key: Callable[[str], Any]) -> tuple[bool, Any]:
    """The value of a whole ``return ...;\\n`` file: ``(True, value)``, or ``(False, None)``."""
    if not (src.startswith(b"return ") and src.endswith(b";\n")):
        return False, None
    translated = _to_json(src[7:-2], items=False)
    if translated is None:
        return False, None
    return _decode(translated, parse_key)
