"""Lua 5.4's number rules, in one place for every codec of the package.

* :data:`INT_MIN`, :data:`INT_MAX`: the range of Lua's 64-bit integers.
* :func:`format_float`: Lua 5.4's ``tostring`` of a float (``%.14g``, with a
  ``.0`` added when the text would read back as an integer), as
  ``util.json`` and Prosody's SQL storage write floats.
* :func:`tonumber`: what Lua 5.4's ``tonumber`` makes of a decimal numeral.

Prosody's own serializer writes floats differently (``%.18g``); that lives
with the serializer in :mod:`prosody_store.serialization`.
"""
from __future__ import annotations

import math
import re

__all__ = ["INT_MAX", "INT_MIN", "NAN_TEXT", "format_float", "tonumber"]

INT_MIN = -(1 << 63)
"""The smallest Lua integer."""

INT_MAX = (1 << 63) - 1
"""The largest Lua integer."""


def _platform_nan_text() -> str:
    """How C's printf writes the NaN that ``0/0`` yields on this machine."""
    inf = float("inf")
    default_nan = inf - inf  # computed by the FPU, like Lua's 0/0
    return "-nan" if math.copysign(1.0, default_nan) < 0 else "nan"


NAN_TEXT = _platform_nan_text()
"""What :func:`format_float` writes for NaN here: ``nan`` or ``-nan``, as C's printf does."""

_INTEGER_LIKE = re.compile(r"-?[0-9]+")
# Possessive repeats (++, *+): no backtracking state per digit, and no
# quadratic retries (a numeral such as 111...1e took 6 s for 20 KB).
_DECIMAL_INT = re.compile(rb"-?([0-9]+)")
_DECIMAL_FLOAT = re.compile(rb"-?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+")


def format_float(x: float) -> str:
    """Lua 5.4's ``tostring`` of a float: ``1.0``, ``0.1``, ``1e+20``, ``inf``, ``nan``."""
    if x != x:
        return NAN_TEXT
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    text = "%.14g" % x
    if _INTEGER_LIKE.fullmatch(text):
        text += ".0"
    return text


def tonumber(text: bytes) -> int | float | None:
    """What Lua 5.4's ``tonumber`` makes of a decimal numeral (None if nothing).

    An integer numeral outside the 64-bit range becomes a float, as in Lua.
    """
    m = _DECIMAL_INT.fullmatch(text)
    if m is not None:
        digits = m.group(1).lstrip(b"0")
        if len(digits) <= 19:
            value = int(text)
            if INT_MIN <= value <= INT_MAX:
                return value
        return float(text)
    if _DECIMAL_FLOAT.fullmatch(text):
        return float(text)
    return None
