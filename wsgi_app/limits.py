"""What a request body may cost: a cap on its number of values, and finite numbers only.

Reading a body builds one Python object per value, storing and serving it
builds several more, so a body's cost grows with its number of values, not
with its size: 10 MiB of ``[{},{},...]`` is 3.5 million tables (17 s and 427 MB
to store, 21 s and 1.3 GB to serve back), while 10 MiB of one string is a
single value.  So a body is counted *before* it is decoded, and refused (413)
when it holds more than :data:`DEFAULT_MAX_VALUES` values; no memory is spent
on a refused body.

A *value* is a table or a scalar (string, number, boolean) held in a table or
at the top; table keys are not counted (each key belongs to a value, so keys
at most double the figure).  The count works on bytes, in C (``bytes.count``,
``bytes.translate``, ``re.sub``), with a Python loop per piece of 16,384
strings at most, never per token:

1. :func:`value_bound`, a cheap upper bound from byte counts: in JSON every
   value but the first is followed by a ``,`` or closes a container, so
   ``1 + #"," + #"[" + #"{"`` bounds the values; in Lua each table field ends
   with a ``,``/``;`` or closes its table, so ``1 + #"," + #";" + #"{"``.
   Bytes inside strings and comments only raise the bound.
2. Only when that bound exceeds the cap, :func:`count_values`: strings (and in
   Lua long brackets ``[==[...]==]`` and comments) are replaced by one
   placeholder byte, whitespace removed, and the same counts taken on the
   structural bytes that remain, less one for each empty table (``{}``, ``[]``:
   no field) and each trailing separator (``,}``, ``;}``: no field after it).
   For any text the decoders accept this is the exact number of fields plus
   one; a JSON ``null``, a Lua ``nil``, an ``__array``/``__hash`` conversion or a
   Lua comment can only make it larger than the number of values decoded (a
   comment inside an otherwise empty table, or after a trailing separator,
   counts one).  The tests check, for random values, that the count is never
   below the real number.  Every piece adds a count >= 0, so counting stops
   as soon as the cap is passed: refusing costs time for the first 250,000
   values only.

The string patterns follow the decoders' own rules (an unescaped quote ends a
JSON string; a Lua short string ends at its quote and cannot hold a raw line
break, ``\\z`` and an escaped line break continue it) and never fail once
started: an unterminated string or long bracket runs to the end of its line or
of the body, where the decoder fails too.  So every byte is scanned a bounded
number of times, whatever the input.

:func:`find_non_finite` walks a decoded value (bounded by the cap) for
infinities and NaN, which JSON cannot carry: ``1e999`` would be stored as
``inf`` and served back as ``inf``, which no JSON reader accepts.
"""
from __future__ import annotations

import math
import re
from typing import Any, cast

# 250,000 values.  A Prosody roster entry is five to eight values (its table,
# the subscription, name and ask strings, a groups table and one ``true`` per
# group; the JID key is not counted), so a roster of 10,000 contacts is 50,000
# to 80,000 values (70,006 in tests/test_attack_body_cost.py): the cap leaves
# three times that, and far more for every other store Prosody keeps (private
# XML, vCards, PEP nodes and offline messages are a few values each, a big
# vCard photo is one string).  At the cap the worst bodies cost about 1 s and
# 100 MB of server memory to store or to serve back, 4 s and 190 MB when all
# of them sit 127 tables deep (Prosody's format indents each line by its
# depth); see bench/http.py --shapes.  Without a cap, 10 MiB of empty tables
# cost 21 s and 1.3 GB.
DEFAULT_MAX_VALUES = 250_000
"""Most values (tables and scalars) a request body may hold."""

_JSON_WS = b" \t\r\n"  # what util.json (and the json module) skip between tokens
_LUA_WS = b" \t\n\r\f\v"  # Lua's isspace

# A JSON string: from its quote to the next unescaped quote.  Possessive, and
# the closing quote optional, so that a match once started never fails (and
# is never retried from a later position: an unterminated string runs to the
# end of the body, which the decoder refuses anyway).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S]?+)*+"?')

# A Lua short string (the body as serialization._DQ_BODY/_SQ_BODY read it), a
# long bracket (long string, or long comment after "--") and a short comment.
# An unfinished short string stops before its line break, an unfinished long
# bracket runs to the end: both are errors for the decoder.
_LUA_STRIP = re.compile(
    rb'"(?:[^"\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S]?+)*+"?'
    rb"|'(?:[^'\\\n\r]++|\\z[ \t\n\r\f\v]*+|\\\r\n?+|\\\n\r?+|\\[\s\S]?+)*+'?"
    rb"|(?:--)?+\[(?P<eq>=*+)\[(?:[\s\S]*?\](?P=eq)\]|[\s\S]*+)"
    rb"|--[^\n]*+")

_PLACEHOLDER = b"0"  # a stripped string or comment: something, but not punctuation

# The body is stripped piece by piece, each piece a run of at most _PIECE_ITEMS
# items (a string, a comment, or bytes between them), because re.sub keeps a
# list entry per match until it joins them: ~90 bytes a match, 450 MB for 10 MiB
# of "" strings in one call.  Pieces end between items, never inside a string
# or comment, and whitespace never separates two pieces (it belongs to the
# item around it), so no pair counted below ("{}", ",}") is split.
_PIECE_ITEMS = 16384
_JSON_PIECE = re.compile(rb'(?:"(?:[^"\\]++|\\[\s\S]?+)*+"?|[^"]++){1,%d}+' % _PIECE_ITEMS)
_LUA_PIECE = re.compile(
    rb"(?:" + _LUA_STRIP.pattern + rb"""|[^"'\[-]++|[\[-]){1,%d}+""" % _PIECE_ITEMS)


class TooManyValues(ValueError):
    """A body that holds more values than the cap allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"body holds more than {limit} values (tables and scalars)")


def value_bound(body: bytes, fmt: str) -> int:
    """A cheap upper bound of the number of values in ``body`` (``fmt``: json or lua)."""
    count = body.count
    if fmt == "json":
        return 1 + count(b",") + count(b"[") + count(b"{")
    return 1 + count(b",") + count(b";") + count(b"{")


def _piece_count(piece: bytes, fmt: str) -> int:
    """What one piece adds to the count: its fields, less empty tables and trailing separators."""
    if fmt == "json":
        s = _JSON_STRING.sub(_PLACEHOLDER, piece).translate(None, _JSON_WS)
        count = s.count
        return (count(b",") + count(b"[") + count(b"{")
                - count(b"[]") - count(b"{}") - count(b",}"))
    s = _LUA_STRIP.sub(_PLACEHOLDER, piece).translate(None, _LUA_WS)
    count = s.count
    return (count(b",") + count(b";") + count(b"{")
            - count(b"{}") - count(b",}") - count(b";}"))


def count_values(body: bytes, fmt: str, stop_above: int | None = None) -> int:
    """An upper bound of the number of values, exact for JSON and comment-free Lua text
    without nulls (see the module docs).

    With ``stop_above``, counting stops as soon as the count exceeds it (every
    piece adds a count >= 0), and the count so far is returned.
    """
    piece_re = _JSON_PIECE if fmt == "json" else _LUA_PIECE
    total = 1
    pos, end = 0, len(body)
    while pos < end:
        # Never None: a piece pattern matches at least one byte wherever it starts.
        stop = cast("re.Match[bytes]", piece_re.match(body, pos)).end()
        total += _piece_count(body[pos:stop], fmt)
        pos = stop
        if stop_above is not None and total > stop_above:
            break
    return total


def check_values(body: bytes, fmt: str, limit: int = DEFAULT_MAX_VALUES) -> None:
    """Raise :class:`TooManyValues` unless ``body`` holds at most ``limit`` values.

    The exact count (regex passes over the body, piece by piece) runs only
    when the cheap bound is over the limit, and stops once past it.
    """
    if value_bound(body, fmt) <= limit:
        return
    if count_values(body, fmt, stop_above=limit) > limit:
        raise TooManyValues(limit)


def find_non_finite(value: Any) -> float | None:
    """The first infinity or NaN among the values and keys of ``value``, else None."""
    isfinite = math.isfinite
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        v = pop()
        cls = v.__class__
        if cls is dict:
            for k in v:
                if k.__class__ is float and not isfinite(k):
                    return float(k)  # k itself (its class is float), typed for any mypy
            push(v.values())
        elif cls is list:
            push(v)
        elif cls is float and not isfinite(v):
            return cast(float, v)  # cls is v.__class__
    return None


def non_finite_reason(number: float) -> str:
    """A one-line reason for refusing ``number``."""
    text = "NaN" if math.isnan(number) else ("-inf" if number < 0 else "inf")
    return (f"body holds a number that is not finite ({text}), "
            "which JSON cannot carry")


REASON_CHARS = 300
"""The longest error text taken from a decoder into a reason (which may quote the body)."""


def brief(err: object) -> str:
    """``err`` as one line of at most about REASON_CHARS characters: its start and its end
    (where decoders say the position), so that a reason never echoes a 10 MiB numeral."""
    text = str(err)
    if len(text) > REASON_CHARS:
        text = text[:REASON_CHARS * 2 // 3] + " ... " + text[-(REASON_CHARS // 3):]
    return " ".join(text.split())
