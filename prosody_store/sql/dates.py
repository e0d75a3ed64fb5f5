"""XEP-0082 timestamps as Prosody's ``util.datetime`` reads and writes them.

The one place that knows the formats: archive items carry their time both as
``when`` (a Unix time) and as ``attr.stamp`` (this text).
"""
from __future__ import annotations

import calendar
import math
import re
import time
from typing import Any

__all__ = ["STAMP_FORMAT", "format_datetime", "parse_datetime"]

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""``util.datetime.datetime``'s format (UTC, whole seconds), for :func:`time.strftime`."""

_STAMP = re.compile(r"(\d{4})-?(\d\d)-?(\d\d)T(\d\d):(\d\d):(\d\d)\.?\d*([Z+\-]?.*)\Z", re.S)
_TZD = re.compile(r"([+\-])(\d\d):?(\d*)")


def parse_datetime(s: Any) -> int | None:
    """``util.datetime.parse``: an XEP-0082 timestamp as a Unix time (None if not one)."""
    if not isinstance(s, str):
        return None
    m = _STAMP.match(s)
    if not m:
        return None
    year, month, day, hour, minute, sec, tzd = m.groups()
    offset = _zone_offset(tzd)
    if offset is None:
        return None
    try:
        return calendar.timegm((int(year), int(month), int(day), int(hour), int(minute),
                                int(sec), 0, 0, 0)) - offset
    except (ValueError, OverflowError):
        return None


def _zone_offset(tzd: str) -> int | None:
    """Seconds east of UTC of a time zone designator (``""``, ``Z``, ``+01:00``, ...)."""
    if tzd in ("", "Z"):
        return 0
    t = _TZD.search(tzd)
    if not t:
        return None
    sign, h, mins = t.groups()
    offset = int(h) * 3600 + (int(mins) if len(mins) == 2 else 0) * 60
    return -offset if sign == "-" else offset


def format_datetime(when: int | float) -> str:
    """``util.datetime.datetime``: ``%Y-%m-%dT%H:%M:%SZ`` in UTC (whole seconds)."""
    return time.strftime(STAMP_FORMAT, time.gmtime(math.floor(when)))
