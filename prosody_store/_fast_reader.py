"""A fast path for text exactly as Prosody 0.11+ writes it, by way of the json module.

Prosody's serializer has a rigid shape: one table entry per line, indented
with tabs, string keys as ``["key"] = ``, strings in double quotes with every
quote, backslash, control character and non-ASCII byte escaped.  Because a
string never holds a raw newline or an unescaped quote, plain byte
replacements anchored on newlines and quotes turn such text into JSON that the
C-accelerated ``json`` module reads, several times faster than a parser written
in Python.

This module only ever *declines*: any input it is not sure about, anything the
JSON reader rejects, and anything JSON would accept but Lua would not (``null``,
``NaN``, ``\\u``, ``\\/``, long strings, raw control characters in strings)
makes it return ``None``, and the caller uses the real parser, which also
produces the error messages.  Tests check that both paths give the same values.

How the text becomes JSON, in order:

1. Escapes.  Runs of escapes that JSON spells differently (``\\ddd``, ``\\\\``,
   ``\\'``, ``\\a``, ``\\v``) are decoded, the bytes checked as UTF-8 and written
   back as JSON's own ASCII escapes, so the JSON text stays ASCII.  Runs repeat
   (the same words recur in a chat archive), so decoded runs are memoized.
2. JSON punctuation that Prosody only ever writes inside strings (``,``, ``:``,
   and later ``[``, ``]``) is spelled as a JSON escape: the same character
   inside a string, a syntax error anywhere else.
3. Indentation tabs go; then each line boundary becomes JSON punctuation.  Where
   the length allows, a replacement keeps the length (padding with whitespace,
   which JSON skips), because ``bytes.replace`` then works in place.
4. Table entries become JSON object members.  A string key keeps its text.  A
   positional entry gets a key of its own, :data:`MARK` followed by a number,
   and its table gets the member ``MARK: true`` as a flag, so that the decoder
   hook only rebuilds flagged tables and hands every other dict through as the
   C decoder built it.  A number or boolean key becomes ``MARK MARK n MARK`` and
   its Lua text.  :data:`MARK` is DEL, which Prosody always escapes (``\\127``)
   and this module refuses to decode, so no real key can start with it.
"""
from __future__ import annotations

import io
import json
import math
import re
from itertools import compress, repeat
from json.encoder import encode_basestring_ascii
from operator import not_
from typing import Any, Callable, Sequence, cast

from prosody_store._lua_table import TableBuilder
from prosody_store.numbers import INT_MAX, INT_MIN

MARK = "\x7f"
_MARK_BYTE = b"\x7f"

MAX_DEPTH = 128
"""The deepest nesting of tables this module accepts; deeper input is declined.

Prosody's serializer writes at most 127 levels, and 128 levels of JSON are
far below any Python recursion limit that the C decoder would hit.  Callers
must use the fast path only when their own depth limit is at least this.
"""

# Skeleton of the tables of the text.  Braces, line ends and quotes are kept
# (_NOT_LAYOUT deletes the rest); there an opening brace right before a line
# end and a closing brace right after one are structural, as a string ends
# with a quote before its line does.  Then only those braces are kept.
_OPEN, _CLOSE = b"\x01", b"\x02"
_NOT_LAYOUT = bytes(c for c in range(256) if c not in b'{}\n"')
_NOT_SKELETON = bytes(c for c in range(256) if c not in (1, 2))

# A backslash starting either a run of escapes this module decodes (group 1,
# without its first backslash) or an escape it must refuse (no group): JSON
# reads "\u" and "\/" and Lua does not, "\[", "\]", "\,", "\:" would read
# as valid JSON escapes once step 2 has spelled those characters as "\uXXXX",
# and a backslash before a line break puts a raw line break in a string, which
# step 3 relies on never seeing.  A decimal escape is matched as a digit and
# any two bytes (cheaper than three digit tests); _decode_runs checks them.
_ESCAPES = re.compile(rb"\\(?:((?:[0-9]..|[\\'av])(?:\\(?:[0-9]..|[\\'av]))*+)|[u/\[\],:\n\r])")
_RUN_CACHE: dict[bytes, bytes] = {}
_RUN_CACHE_MAX = 8192  # runs
_RUN_CACHED_LEN = 64  # bytes: a word or two; longer runs rarely recur

# A number or boolean key at the start of a line: its Lua text is group 1.
_OTHER_KEY = re.compile(rb'\[([^\]"\'\\]*)\] = ')
_KEY_CACHE: dict[str, Any] = {}
_KEY_CACHE_MAX = 1024

# Infinities and NaN as Prosody writes them, after a key (padded) or a marker.
# A space ends the number, so that digits after it cannot join it.
_NON_FINITE = ((b":   (1/0)", b":   1e999 "), (b":   (-1/0)", b":   -1e999 "),
               (b":   (0/0)", b":   NaN"), (b":(1/0)", b":1e999 "),
               (b":(-1/0)", b":-1e999 "), (b":(0/0)", b":NaN"))

# A table whose first field does not start a new line: not Prosody's layout,
# and JSON-shaped once converted ("{"k"] = v" would read as an object member,
# "{;}" as an empty object).
_OPEN_THEN_FIELD = re.compile(rb'\{ *[";]')


class _Decline(Exception):
    """Raised inside the fast path; the caller falls back to the real parser."""


def _decode_runs(runs: list[bytes]) -> list[bytes]:
    """Runs of escapes (each without its first backslash) -> the same texts as ASCII JSON escapes.

    All runs are converted together, with no Python code per run: they are
    joined into one sequence of escapes separated by ``\\127`` (DEL), the named
    escapes are rewritten as decimal ones, :func:`_decimal_values` turns them
    into bytes, and one UTF-8 decode, one JSON encode and one split on the
    separator give the texts (the separator's JSON escape, ``\\u007f``, cannot
    occur otherwise: it needs a ``u`` after a backslash, and printable ASCII
    is declined).  Declines a decimal escape above 255, bytes that are not
    UTF-8 (the string is ``bytes`` then, which only the real parser builds)
    and DEL in the data (it is :data:`MARK`).
    """
    escapes = b"\\" + b"\\127\\".join(runs)
    if 4 * escapes.count(b"\\") != len(escapes):  # not only decimal ones
        escapes = (escapes.replace(b"\\\\", b"\\092").replace(b"\\'", b"\\039")
                   .replace(b"\\a", b"\\007").replace(b"\\v", b"\\011"))
    backslashes = b"\\" * (len(escapes) // 4)
    if escapes[0::4] != backslashes or escapes.translate(None, b"0123456789") != backslashes:
        raise _Decline  # not "\\ddd" throughout: a short or malformed escape
    digits = escapes.translate(_DIGIT_VALUES, b"\\")
    raw = _decimal_values(digits)
    if raw is None or raw.count(_MARK_BYTE) != len(runs) - 1 or raw.translate(None, _NOT_PLAIN):
        raise _Decline
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Decline from None
    return encode_basestring_ascii(text)[1:-1].encode("ascii").split(b"\\u007f")


_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))
# Printable ASCII that Prosody never escapes.  Written as a decimal escape it
# can only come from a hand-edited file, and decoded it could make sense to
# JSON outside a string (a digit, a space, a letter), where Lua rejects the
# escape: decline.  Everything else decodes to a JSON escape or to a byte JSON
# rejects outside strings.
_NOT_PLAIN = bytes(c for c in range(256) if not (32 <= c < 127) or c in b"\"'\\")


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


def _decode_escapes(src: bytes) -> bytes:
    """Step 1: every run of escapes that JSON spells differently, as JSON spells it."""
    parts = _ESCAPES.split(src)  # text, run, text, run, ..., text
    if len(parts) == 1:
        return src
    runs = parts[1::2]
    if None in runs:
        raise _Decline  # an escape that must not reach JSON
    decoded: Sequence[bytes | None] = list(map(_RUN_CACHE.get, runs))
    if None in decoded:
        decoded = _decode_missing(runs, decoded)
    parts[1::2] = decoded
    return _join(parts)


def _decode_missing(runs: list[bytes], decoded: Sequence[bytes | None]) -> list[bytes]:
    """Fill in the runs the memo did not have (None in ``decoded``), memoizing short new ones."""
    sample = runs[:1024]
    if 2 * len(set(sample)) > len(sample):
        return _decode_runs(runs)  # mostly distinct runs: no bookkeeping
    new = list(dict.fromkeys(compress(runs, map(not_, decoded))))
    texts = _decode_runs(new)
    if len(_RUN_CACHE) + len(new) > _RUN_CACHE_MAX:
        _RUN_CACHE.clear()
    if len(new) <= _RUN_CACHE_MAX:
        _RUN_CACHE.update((run, text) for run, text in zip(new, texts) if len(run) <= _RUN_CACHED_LEN)
    # Each run is in ``new`` or was decoded already: no None is left.
    return cast("list[bytes]", list(map(dict(zip(new, texts)).get, runs, decoded)))


_MAX_INDENT = 128  # Prosody nests tables at most 127 deep


def _only_indentation_tabs(src: bytes) -> bool:
    """True when every tab is part of the indentation at a line start.

    One count per level of indentation; deeper than Prosody ever writes is
    left to the real parser, so that time stays linear in the input.
    """
    total = src.count(b"\t")
    indent = 0
    run = b"\n\t"
    while indent < total and len(run) <= _MAX_INDENT:
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


_MARKERS: list[bytes] = []
_MARKERS_MAX = 1 << 16


def _markers(n: int) -> list[bytes]:
    """The member texts that open positional entries 0..n-1.

    A list of them is kept for reuse; it is only ever replaced whole, never
    extended in place, so that threads reading lists at once all see unique
    numbers.
    """
    global _MARKERS
    markers = _MARKERS
    if len(markers) < n:
        markers = [b'\r"\x7f":true,"\x7f%d":' % i for i in range(max(n, 2 * len(markers)))]
        if n <= _MARKERS_MAX:
            _MARKERS = markers
    return markers[:n]


def _mark_entries(s: bytes) -> bytes:
    """Step 4 for the entries still at a line start: positional ones and other keys."""
    lines = s.replace(b";\n", b",\n").split(b"\n")
    n = len(lines) - 1
    marks = _markers(n)
    if b"\n[" in s:
        for i in range(1, n + 1):
            line = lines[i]
            if line[:1] == b"[":
                m = _OTHER_KEY.match(line)
                if m is None:
                    raise _Decline
                marks[i - 1] = b'\r"\x7f":true,"\x7f\x7f%d\x7f%s":' % (i, m.group(1))
                lines[i] = line[m.end():]
    joined = [b""] * (2 * n + 1)
    joined[0::2] = lines
    joined[1::2] = marks
    return _join(joined)


def _join(parts: list[bytes]) -> bytes:
    """``b"".join(parts)``, which holds an 80-byte buffer struct per part while
    it works (400 MB for five million parts); BytesIO.writelines holds none."""
    if len(parts) < 4096:
        return b"".join(parts)
    out = io.BytesIO()
    out.writelines(parts)
    return out.getvalue()


def _nests_within(s: bytes, limit: int) -> bool:
    """True when the tables of ``s`` (tabs removed) nest at most ``limit`` deep.

    Only called on text the JSON reader would accept as Prosody's layout:
    there every non-empty table opens with ``{`` and a line end and closes
    with a line start and ``}``, or else leaves an opening brace unmatched in
    the skeleton, which declines.  A line that ends in a space is not
    Prosody's layout either (the skeleton would no longer see where it ends),
    so such text is declined before the skeleton is built.  An empty table
    ``{}`` adds at most one level, hence ``limit - 1`` rounds of removing
    innermost pairs.
    """
    if s.count(b"{") <= limit:
        return True  # every table has an opening brace
    if b" \n" in s:
        return False
    layout = s.translate(None, _NOT_LAYOUT)
    skeleton = (layout.replace(b"{\n", _OPEN + b"\n").replace(b"\n}", b"\n" + _CLOSE)
                .translate(None, _NOT_SKELETON))
    for _ in range(limit - 1):
        if not skeleton:
            return True
        shorter = skeleton.replace(_OPEN + _CLOSE, b"")
        if len(shorter) == len(skeleton):
            return False  # unbalanced: a table closed some other way
        skeleton = shorter
    return not skeleton


def _items_nest_within(items: list[bytes], limit: int) -> bool:
    """:func:`_nests_within` for each item of a list.

    An item holding at most ``limit`` opening braces nests at most that deep,
    which settles nearly every item with one count; only an item with more
    braces gets the full check.  (Checking the whole segment at once would
    take the full check every time, as a segment of many small items holds
    many braces.)  A raw newline is never inside a string the JSON reader
    accepts, so the boundary text always separates two items.
    """
    counts = map(bytes.count, items, repeat(b"{"))
    for item, count in zip(items, counts):
        if count > limit and not _nests_within(item, limit):
            return False
    return True


def _to_json(body: bytes, items: bool) -> tuple[bytes, int] | None:
    """Translate Prosody-formatted Lua text to ASCII JSON text, or None.

    ``body`` is one value, or with ``items`` the text between the first
    ``item(`` and the last ``);\n`` of whole list statements, which becomes a
    JSON array.  Also returns how many NaNs the text holds (``(0/0)``), so that
    :func:`_decode` can refuse a bare ``NaN``, which Lua would not read.
    Raises :class:`_Decline` from step 1.
    """
    if _MARK_BYTE in body or b"\r" in body:
        return None  # the marker, or a line break Prosody never writes
    s = _decode_escapes(body)
    if b'\\"] = ' in s:
        return None  # an escaped quote that would look like the end of a key
    s = s.replace(b",", b"\\u002c").replace(b":", b"\\u003a")
    if not _only_indentation_tabs(s):
        return None  # a raw tab elsewhere, which deleting would lose
    s = s.replace(b"\t", b"")
    if _OPEN_THEN_FIELD.search(s):
        return None
    if items:
        # Split at the statement boundaries: each item is checked on its own,
        # and joining the parts makes the JSON array's commas.
        parts = s.split(b");\nitem(")
        if not _items_nest_within(parts, MAX_DEPTH):
            return None
        s = b",\r      ".join(parts)
    elif not _nests_within(s, MAX_DEPTH):
        return None
    if s.count(b'"] = ') != s.count(b'\n["'):
        # A string that starts with "] = " would look like the end of a key.
        # (A key start not after ";" or "{" is never converted and fails later.)
        return None
    # A raw newline only ever ends an entry or opens a table.  Each becomes a
    # carriage return, which JSON skips between values and refuses inside a
    # string, where Lua would have refused the raw newline.
    s = (s.replace(b";\n}", b" \r}")
         .replace(b';\n["', b',\r "')
         .replace(b'{\n["', b'{\r "')
         .replace(b'"] = ', b'":   '))
    if b"\n" in s:
        s = _mark_entries(s)
    s = s.replace(b"[", b"\\u005b").replace(b"]", b"\\u005d")
    nans = 0
    if b"/0)" in s:
        nans = s.count(b":   (0/0)") + s.count(b":(0/0)")
        for lua, js in _NON_FINITE:
            s = s.replace(lua, js)
    if _has_json_null(s):
        return None
    if items:
        s = b"[" + s + b"]"
    return s, nans


def _make_hook(parse_key: Callable[[str], Any]) -> Callable[[dict[str, Any]], Any]:
    def other_key(text: str) -> Any:
        key = _KEY_CACHE.get(text)
        if key is None:
            try:
                key = parse_key(text)
            except ValueError:
                raise _Decline from None
            if len(_KEY_CACHE) > _KEY_CACHE_MAX:
                _KEY_CACHE.clear()
            _KEY_CACHE[text] = key
        return key

    def build_any(d: dict[str, Any]) -> Any:
        """Any mix of entries, with Lua's rules for number and boolean keys."""
        table = TableBuilder(None)
        for k, v in d.items():
            if k[:1] != MARK:
                table.keyed(k, v)
            elif k[1:2] == MARK:
                table.keyed(other_key(k[k.index(MARK, 2) + 1:]), v)
            elif k != MARK:
                table.positional(v)
        return table.result()

    def hook(d: dict[str, Any]) -> Any:
        if MARK not in d:
            return d  # string keys only: the common case, built in C
        table: dict[str | int, Any] = {}
        n = 0
        for k, v in d.items():
            if k[:1] != MARK:
                table[k] = v  # a string key never collides with a position
            elif k[1:2] == MARK:
                return build_any(d)
            elif k != MARK:
                n += 1
                table[n] = v
        return list(table.values()) if len(table) == n else table

    return hook


def _parse_int(text: str) -> int | float:
    value = int(text)
    if value == 0 and text[0] == "-":
        return -0.0  # as the real reader does for "-0"
    if INT_MIN <= value <= INT_MAX:
        return value
    return float(text)  # Lua reads integers beyond 64 bits as floats


def _decode(translated: tuple[bytes, int], parse_key: Callable[[str], Any]) -> tuple[bool, Any]:
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
        return True, json.loads(text.decode("utf-8"), object_hook=_make_hook(parse_key),
                                parse_int=_parse_int, parse_constant=constant)
    except (ValueError, RecursionError, _Decline):
        return False, None


def _translate(body: bytes, items: bool) -> tuple[bytes, int] | None:
    try:
        return _to_json(body, items)
    except _Decline:
        return None


def read_items(segment: bytes, parse_key: Callable[[str], Any]) -> list[Any] | None:
    """The items of whole ``item(...);\\n`` statements, or None to decline.

    Each statement must start a line: an indented one (``\\titem(``) would
    pass for one at a line start once the indentation tabs are gone (a tab
    is never inside a string here: Prosody escapes it, and
    :func:`_only_indentation_tabs` declines any other).
    """
    if not (segment.startswith(b"item(") and segment.endswith(b");\n")) or b"\titem(" in segment:
        return None
    translated = _translate(segment[5:-3], items=True)
    if translated is None:
        return None
    ok, items = _decode(translated, parse_key)
    return items if ok else None


def read_value(src: bytes, parse_key: Callable[[str], Any]) -> tuple[bool, Any]:
    """The value of a whole ``return ...;\\n`` file: ``(True, value)``, or ``(False, None)``."""
    if not (src.startswith(b"return ") and src.endswith(b";\n")):
        return False, None
    translated = _translate(src[7:-2], items=False)
    if translated is None:
        return False, None
    return _decode(translated, parse_key)
