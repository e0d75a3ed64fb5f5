"""Message-archive expiry, offline: what mod_mam's ``archive_expires_after`` does.

mod_mam (Prosody 0.12, mod_storage_internal) deletes, per user, every archive
item whose ``when`` is not newer than ``now - archive_expires_after``
(``archive:delete(user, {["end"] = os.time() - after})`` keeps
``item.when > end``) and rewrites the list with ``list_store``.

:func:`expire_list` does the same to one list without holding it in memory,
with :meth:`DataManager.list_filter <prosody_store.datamanager.DataManager.list_filter>`:
under the store directory's lock it reads the items (streamed, with their
byte offsets), then, if any is to go, writes the bytes of the kept items
unchanged into a temporary file and renames it over the list, with a fresh
``.lidx``.  Items without a numeric ``when`` are kept (Prosody would fail on
them).  A list from which everything goes is removed, as ``list_store`` does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prosody_store.datamanager import DataManager
from prosody_store.paths import Name

__all__ = ["DAY", "MAX_DURATION", "ExpireResult", "expire_list", "parse_duration"]

DAY = 86400
# As mod_mam's multipliers: "m" is a month of 31 days there, so it is here.
_UNITS = {
    "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": DAY, "day": DAY, "days": DAY,
    "w": 7 * DAY, "week": 7 * DAY, "weeks": 7 * DAY,
    "m": 31 * DAY, "month": 31 * DAY, "months": 31 * DAY,
    "y": 365.2425 * DAY, "year": 365.2425 * DAY, "years": 365.2425 * DAY,
}
# ASCII only, as Lua's %d and %s: int() and \d would take any script's digits
# ("١٢" as 12).
_DURATION = re.compile(r"\s*([0-9]+)\s*([a-z]*)\s*\Z", re.ASCII)

MAX_DURATION = 10_000 * _UNITS["y"]
"""The longest duration :func:`parse_duration` accepts: ten thousand years."""


def parse_duration(text: str) -> float | None:
    """Seconds of a duration like ``90d``, ``1w``, ``2 weeks``; None for ``never``.

    Units as mod_mam's ``archive_expires_after``: none or ``s`` seconds, ``d``
    days, ``w`` weeks, ``m`` months of 31 days, ``y`` years of 365.2425 days;
    also ``min`` and ``h``.  Digits and blanks are ASCII.  Raises ValueError
    for anything else (mod_mam would silently read an unknown unit as
    seconds), and for more than :data:`MAX_DURATION`.
    """
    shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
    m = _DURATION.match(text.lower()) if text.isascii() else None
    if m is None and text.isascii() and text.strip(" \t\n\r\f\v").lower() == "never":
        return None
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"{shown} is not a duration (like 90d, 2w, 6m, 1y, 12h)")
    digits = m.group(1).lstrip("0")
    if len(digits) > 15 or int(digits or 0) * _UNITS[m.group(2)] > MAX_DURATION:
        raise ValueError(f"{shown} is too long a duration (at most 10000 years)")
    return int(digits or 0) * _UNITS[m.group(2)]


@dataclass
class ExpireResult:
    path: str
    dropped: int = 0
    kept: int = 0


def _is_expired(item: Any, cutoff: float) -> bool:
    when = item.get("when") if isinstance(item, dict) else None
    if when is None or isinstance(when, bool) or not isinstance(when, (int, float)):
        return False
    return not when > cutoff


def expire_list(dm: DataManager, user: Name | None, host: Name | None, store: Name,
                cutoff: float, dry_run: bool = False) -> ExpireResult | None:
    """Drop the items of one list whose ``when`` <= ``cutoff``; None if there is no list."""
    res = dm.list_filter(user, host, store, lambda item: not _is_expired(item, cutoff),
                         dry_run=dry_run)
    if res is None:
        return None
    return ExpireResult(res.path, dropped=res.dropped, kept=res.kept)
