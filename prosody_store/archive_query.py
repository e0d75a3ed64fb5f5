"""Message-archive queries (XEP-0313, MAM) on a list, in time proportional to the page.

Prosody's ``mod_storage_internal`` keeps a user's message archive as a
``.list`` of items, each a stored stanza table (``st.preserialize``) with
three extra fields: ``key`` (the archive id), ``when`` (Unix seconds; items
of old Prosody versions may lack it and carry only ``attr.stamp``, an
XEP-0082 date-time) and ``with`` (a bare JID).  Its ``archive:find`` answers
a query by loading the whole list; :func:`find` gives the same answer from a
:class:`~prosody_store.datamanager.ListView` (``dm.list_open(user, host,
"archive")``), reading only what the answer needs through the ``.lidx``
index, and :func:`query_archive` is the page of it that ``mod_mam`` gives,
with what HTTP paging (RFC 8288 ``Link: rel=next/prev``) needs.

Semantics (those of Prosody 0.12's ``archive:find`` and ``mod_mam``)
--------------------------------------------------------------------
* ``start``/``end``: an item matches if ``start <= time <= end`` (both
  inclusive), where time is ``when``, or, when ``when`` is absent,
  ``attr.stamp`` read as Prosody's ``util.datetime.parse`` reads it
  (:func:`parse_stamp`).  :func:`parse_time` turns a query's text (XEP-0082
  date-time or Unix seconds) into such a number.
* ``with``: ``item.with`` must equal the query's JID exactly.
  :func:`query_archive` first reduces the JID as ``mod_mam`` does: JID prep
  (nodeprep, nameprep, resourceprep), then the bare JID (:func:`bare_jid`).
* The total (``count``) is the number of items matching the filters,
  whatever the cursors.
* Forward (``reverse`` false): after ``after`` (the first matching item with
  that key), or from the first matching item; ``before`` only stops the
  iteration at the first item with that key.  Reverse: backwards from just
  before ``before`` (the *last* matching item with that key), or from the
  last matching item; ``after`` only stops the iteration there.  A cursor
  key that no matching item has is :class:`ItemNotFoundError` (Prosody's
  ``item-not-found``); a stop key that is not met is no error.  On a list that
  does not exist any ``after`` or ``before`` is item-not-found, as in Prosody.
* :func:`query_archive` is ``mod_mam``'s use of that: ``before`` set means a
  reverse query (``before=""``, RSM's empty ``<before/>``, is the last page),
  ``max_items + 1`` items are asked for to know whether the page is complete,
  and the page is returned in chronological order.

Deviations from Prosody, all on data Prosody does not write itself: an item
whose time is needed but unknown (no number ``when`` and no ``attr.stamp``
that Prosody can read; ``when`` NaN) matches no ``start``/``end`` filter
(Prosody fails the whole query); items without a string ``key`` have no key
(``None``) and are never found by a cursor (Prosody names them by their rank
in the filtered list, ``"1"``, ``"2"``...); ``attr.stamp`` is read in UTC
(Prosody converts with the local zone's offset *now*, which is one hour off
across a daylight-saving change; identical in UTC).

How it stays proportional to the page
-------------------------------------
The view reads item N in O(1) through the ``.lidx`` index.

*Time window* (``start``/``end``): archives are appended in time order, so
the matching items are one run of positions, found by binary search on the
time, reading only the probed items.  An archive may still be out of order
(clock changes, imports), so the search checks what it reads, and the whole
query falls back to a linear scan of the list (Prosody's own method; the
result says ``linear``) when any of these fails:

1. the first item, the last item and every item the binary searches probe
   have a time (a number, not NaN) and, taken in position order, their times
   never decrease;
2. the edges of the window are among the probes: the last item before it
   (time < ``start``) and the first in it, the last in it and the first after
   it (time > ``end``), where they exist;
3. every item the page reads in the window (and a cursor item) has a time
   within ``[start, end]``, not earlier than the item read before it (later,
   reading backwards), and between the times of the probes around it; a
   cursor item that matches the filters lies in the window.

Disorder that none of those reads meets (between probes, away from the
page) is not seen: such an archive gets the window the binary search finds.
``time_ordered=False`` skips the binary search for an archive known to be
out of order.  Queries without ``start``/``end`` assume no order at all.

*Cursors* (``after``/``before`` keys) are found without parsing the
archive: first the position hint, if given (``after_at``/``before_at``: the
position a previous page reported, ``first_at``/``last_at``); the hinted
item is used if its key is the cursor and it matches the filters (with a
key that several items share, that occurrence).  Otherwise the list's bytes
are searched (``mmap``, a C substring search, about 2 GB/s), forwards for
``after``, backwards from the end for ``before``; each hit is mapped to an
item position with the index's byte offsets (bisect) and confirmed by
parsing that item through the view.  A hit that is part of the key field as
Prosody writes it, ``\\n\\t["key"] = "<escaped key>";\\n``, is confirmed at
once.  The other spellings (another writer, a hand-edited list) are found
through the longest run of the key's characters that every Lua writer
leaves unescaped (printable ASCII but ``"``, ``'``, ``\\``): every item
holding it is a candidate, confirmed after the search.  For a key made only
of such characters (every key Prosody makes) both are one pass over its
text; other keys take a pass for the field and, if it is not there, one
for the run.  No confirmed item means no such key, so an unknown key costs
one or two byte searches, no parse; a key spelled with needless escapes
(``"\\97"`` for ``a``), which no Prosody writes, is therefore not found.
Only where this cannot decide (a key without such characters, more than
:data:`MAX_CANDIDATES` candidate items and no field as Prosody writes it,
an index that does not match the list) is the list parsed from the start
to find the key.

*``with``* filtering cannot skip anything: items are read in position order
from where the page starts, and reading stops when the page is full (one
more item than the page, to know whether it is complete).  A page with a
rare ``with`` costs time in proportion to the items examined, up to the
whole time window; ``examined`` in the result says how many were read.
The total is given when it is cheap (no ``with``: the size of the window;
or when the page read the whole window), or always with ``count=True``,
which then reads every item of the window.

Errors reading the list (:class:`~prosody_store.datamanager.CorruptFileError`,
:class:`~prosody_store.errors.StorageError`) pass through unchanged.
"""
from __future__ import annotations

import bisect
import calendar
import mmap
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

from prosody_store.datamanager import ListView
from prosody_store.errors import Error
from prosody_store.jid import JIDError, join_jid, prepped_split
from prosody_store.serialization import LuaSyntaxError, dumps, iter_list

__all__ = [
    "MAX_CANDIDATES",
    "ArchivePage",
    "ArchiveQueryError",
    "FindResult",
    "ItemNotFoundError",
    "Row",
    "bare_jid",
    "find",
    "item_key",
    "item_time",
    "parse_stamp",
    "parse_time",
    "query_archive",
]

MAX_CANDIDATES = 64
"""Items a cursor search parses to confirm byte hits before it gives up and
reads the list from the start instead."""

_FIRST_CHUNK = 16
_MAX_CHUNK = 4096


# ---------------------------------------------------------------------------
# Errors


class ArchiveQueryError(Error, ValueError):
    """A query that cannot be run as given: a time or JID that does not
    parse, a negative page size, a cursor that is not a string."""


class ItemNotFoundError(Error, LookupError):
    """No item matching the query's filters has the cursor key (``after`` or
    ``before``): Prosody's ``item-not-found``.  ``key`` is that key."""

    condition = "item-not-found"

    def __init__(self, key: str) -> None:
        self.key = key
        shown = repr(key) if len(key) <= 60 else repr(key[:57]) + "..."
        super().__init__(f"item-not-found: no archive item matching the query has key {shown}")

    def __reduce__(self) -> tuple[type[ItemNotFoundError], tuple[str]]:
        return (type(self), (self.key,))


class _Disorder(Exception):
    """The list turned out not to be in time order: answer by a linear scan."""


class _Undecided(Exception):
    """The byte search cannot locate a cursor: parse the list to find it."""


# ---------------------------------------------------------------------------
# Times and JIDs

_STAMP = re.compile(
    r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.?[0-9]*([Z+\-]?.*)",
    re.S)
_STAMP_ZONE = re.compile(r"([+\-])([0-9]{2}):?([0-9]*)")


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date; month and day may
    be out of range and carry over (as C's ``mktime``)."""
    months = year * 12 + month - 1
    year, month = divmod(months, 12)
    month += 1
    # Howard Hinnant's days_from_civil, for day 1 of the month.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + day - 1


def parse_stamp(text: str | bytes) -> int | None:
    """An item's ``attr.stamp`` in Unix seconds, read as Prosody 0.12's
    ``util.datetime.parse`` reads it; None where that returns nil.

    That reader is lenient: the dashes of the date are optional (the legacy
    ``20240131T12:00:00`` form), fractions of a second are dropped, the zone
    may be ``Z``, ``+hh:mm``, ``-hhmm``, ``+hh`` or absent (UTC), anything may
    follow, and out-of-range fields carry over (month 13 is January of the
    next year).  Times are UTC.
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    zone = m.group(7)
    offset = 0
    if zone not in ("", "Z"):
        z = _STAMP_ZONE.search(zone)
        if z is None:
            return None
        minutes = z.group(3) if len(z.group(3)) == 2 else "0"
        offset = int(z.group(2)) * 3600 + int(minutes) * 60
        if z.group(1) == "-":
            offset = -offset
    return (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec
            - offset)


_XEP82 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+\-][0-9]{2}:[0-9]{2})")
_SECONDS = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,9})?")


def parse_time(text: str) -> int | float:
    """A query time in Unix seconds, from an XEP-0082 date-time or from Unix seconds.

    * ``2024-01-31T12:00:00Z``, ``2024-01-31T13:00:00+01:00``,
      ``2024-01-31T12:00:00.250Z``: the XEP-0082 DateTime profile, exactly
      (uppercase ``T`` and ``Z``, a zone always, valid fields); an ``int``.
      Fractions of a second are dropped, as ``mod_mam`` (Prosody's
      ``util.datetime.parse``) drops them.
    * ``1706702400`` or ``1706702400.25``: Unix seconds (ASCII digits, an
      optional ``-``, at most 15 digits before and 9 after the point); an
      ``int``, or a ``float`` with a fraction.

    Anything else raises :class:`ArchiveQueryError`.
    """
    if not isinstance(text, str):
        raise ArchiveQueryError(f"a time must be text, not {type(text).__name__}")
    shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
    if _SECONDS.fullmatch(text):
        return float(text) if "." in text else int(text)
    m = _XEP82.fullmatch(text)
    if m is not None:
        year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
        zone = m.group(8)
        offset = 0 if zone == "Z" else (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        if zone.startswith("-"):
            offset = -offset
        if (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
                and hour <= 23 and minute <= 59 and sec <= 59
                and (zone == "Z" or (int(zone[1:3]) <= 23 and int(zone[4:6]) <= 59))):
            return calendar.timegm((year, month, day, hour, minute, sec)) - offset
        raise ArchiveQueryError(f"{shown} is not a valid date-time (a field is out of range)")
    raise ArchiveQueryError(
        f"{shown} is not a time: give an XEP-0082 date-time (2024-01-31T12:00:00Z, "
        f"2024-01-31T13:00:00+01:00) or Unix seconds (1706702400)")


def bare_jid(jid: str) -> str:
    """The bare form of a JID after JID prep, as ``mod_mam`` reduces a query's
    ``with`` (``Bob@Example.COM/phone`` -> ``bob@example.com``).

    :class:`ArchiveQueryError` for a string that is not a JID.
    """
    if not isinstance(jid, str):
        raise ArchiveQueryError(f"with must be a JID as text, not {type(jid).__name__}")
    try:
        node, host, _resource = prepped_split(jid)
    except JIDError as err:
        raise ArchiveQueryError(f"with: {err}") from None
    return join_jid(node, host)


def item_time(item: Any) -> int | float | None:
    """An archive item's time, as ``mod_storage_internal`` takes it: ``when``,
    else ``attr.stamp`` (:func:`parse_stamp`); None if it has none that
    Prosody could compare with a number.  May be NaN."""
    if not isinstance(item, dict):
        return None
    when = item.get("when")
    if when is not None and when is not False:
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            return when
        return None  # Prosody would fail comparing it with a number
    attr = item.get("attr")
    stamp = attr.get("stamp") if isinstance(attr, dict) else None
    if isinstance(stamp, (str, bytes)):
        return parse_stamp(stamp)
    return None


def item_key(item: Any) -> str | None:
    """An archive item's key (its archive id), or None if it has no string key."""
    if isinstance(item, dict):
        key = item.get("key")
        if isinstance(key, str):
            return key
    return None


# ---------------------------------------------------------------------------
# Results


class Row(NamedTuple):
    """One item of a result: its position in the list (0-based), key and value."""

    position: int
    key: str | None
    item: Any


@dataclass
class FindResult:
    """What :func:`find` returns."""

    rows: list[Row]
    """The items, in Prosody's order (backwards for a reverse query)."""
    count: int | None
    """The number of items matching the filters (whatever the cursors), or
    None where it was not asked for and not cheap (see the module docs)."""
    examined: int = 0
    """How many items were read (parsed) to answer."""
    linear: bool = False
    """True if the list was found out of time order and scanned from the start."""


@dataclass
class ArchivePage:
    """A page of an archive query (:func:`query_archive`), in chronological order.

    Paging links: the next page is ``after=last`` (hint ``after_at=last_at``)
    when ``has_next``; the previous one ``before=first`` (hint
    ``before_at=first_at``) when ``has_previous``.  An empty page has neither
    (go to the first page, or to the last with ``before=""``).
    """

    items: list[Any]
    """The items, values exactly as the list view gives them."""
    keys: list[str | None]
    positions: list[int]
    """Each item's position in the list: the hint for a cursor made from its key."""
    has_next: bool
    """More items match after the page."""
    has_previous: bool
    """More items match before the page."""
    complete: bool
    """``mod_mam``'s ``complete``: no more items in the direction of the query."""
    total: int | None
    """The number of items matching the filters (RSM ``count``), or None when
    it was not asked for (``count=True``) and not cheap."""
    examined: int = 0
    linear: bool = False
    first: str | None = field(init=False)
    last: str | None = field(init=False)
    first_at: int | None = field(init=False)
    last_at: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.first = self.keys[0] if self.keys else None
        self.last = self.keys[-1] if self.keys else None
        self.first_at = self.positions[0] if self.positions else None
        self.last_at = self.positions[-1] if self.positions else None


# ---------------------------------------------------------------------------
# Raw access to the list's bytes


class _Raw:
    """The list's bytes (``mmap`` of the view's own descriptor) and the view's
    item end offsets, for the cursor search.  Every position found is
    confirmed through the view, and a disagreement with it (the view rebuilt
    its index since) stops the search (:class:`_Undecided`).
    """

    def __init__(self, view: ListView) -> None:
        self.n = len(view)
        self.offsets: Sequence[int] = view.item_ends
        self.extent = self.offsets[self.n - 1] if self.n else 0
        self.mm = (mmap.mmap(view.fileno(), self.extent, access=mmap.ACCESS_READ)
                   if self.extent else None)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()

    def span(self, k: int) -> tuple[int, int]:
        return (self.offsets[k - 1] if k else 0), self.offsets[k]

    def position(self, offset: int) -> int:
        """The item whose bytes hold ``offset``."""
        return bisect.bisect_right(self.offsets, offset, 0, self.n)

    def find_all(self, needle: bytes, backwards: bool) -> Iterator[tuple[int, int]]:
        """Every offset of ``needle`` in the list (backwards: from the end), with
        the position of the item that holds it."""
        if self.mm is None:
            return
        if not backwards:
            pos = self.mm.find(needle, 0, self.extent)
            while pos != -1:
                yield pos, self.position(pos)
                pos = self.mm.find(needle, pos + 1, self.extent)
        else:
            pos = self.mm.rfind(needle, 0, self.extent)
            while pos != -1:
                yield pos, self.position(pos)
                pos = self.mm.rfind(needle, 0, pos + len(needle) - 1)

    def holds(self, offset: int, pattern: bytes) -> bool:
        """Whether ``pattern`` is at ``offset``."""
        assert self.mm is not None
        return offset >= 0 and self.mm[offset:offset + len(pattern)] == pattern

    def key_in_bytes(self, k: int) -> str | None:
        """The key of item ``k`` read from our own bytes (to check our offsets)."""
        assert self.mm is not None
        start, end = self.span(k)
        try:
            items = list(iter_list(self.mm[start:end]))
        except LuaSyntaxError:
            raise _Undecided("the index does not match the list") from None
        return item_key(items[0]) if len(items) == 1 else None


def _plain_run(key: str) -> bytes:
    """The longest run of the key's characters that every Lua writer leaves as
    they are in a string: printable ASCII except ``"``, ``'`` and ``\\``."""
    runs = re.findall(r"[ !#-&(-\[\]-~]+", key)
    return max(runs, key=len).encode("ascii") if runs else b""


# ---------------------------------------------------------------------------
# The query


class _Finder:
    def __init__(self, view: ListView, start: int | float | None, end: int | float | None,
                 with_: str | None) -> None:
        self.view = view
        self.n = len(view)
        self.start, self.end, self.with_ = start, end, with_
        self.timed = start is not None or end is not None
        self.examined = 0
        self.cache: dict[int, Any] = {}
        self.probe_pos: list[int] = []
        self.probe_time: dict[int, int | float] = {}
        self.lo, self.hi = 0, self.n

    # -- items ---------------------------------------------------------------------

    def item(self, k: int) -> Any:
        if k not in self.cache:
            self.cache[k] = self.view[k]
            self.examined += 1
        return self.cache[k]

    def in_time(self, t: int | float | None) -> bool:
        if t is None:
            return False
        return ((self.start is None or t >= self.start)
                and (self.end is None or t <= self.end))

    def matches(self, item: Any) -> bool:
        """The filters of Prosody's ``archive:find``: ``with``, ``start``, ``end``."""
        if self.with_ is not None and (not isinstance(item, dict)
                                       or item.get("with") != self.with_):
            return False
        return not self.timed or self.in_time(item_time(item))

    # -- time order ----------------------------------------------------------------

    def probe(self, k: int) -> int | float:
        """The time of item ``k``, checked against the other probes."""
        if k in self.probe_time:
            return self.probe_time[k]
        t = item_time(self.item(k))
        if t is None or t != t:
            raise _Disorder
        self.check_probes(k, t)
        bisect.insort(self.probe_pos, k)
        self.probe_time[k] = t
        return t

    def check_probes(self, k: int, t: int | float) -> None:
        i = bisect.bisect_left(self.probe_pos, k)
        if i > 0 and self.probe_time[self.probe_pos[i - 1]] > t:
            raise _Disorder
        if i < len(self.probe_pos):
            right = self.probe_pos[i]
            if (self.probe_time[right] != t) if right == k else (self.probe_time[right] < t):
                raise _Disorder

    def first_true(self, lo: int, hi: int, bound: int | float, strict: bool) -> int:
        """The first position in [lo, hi) whose time is > ``bound`` (``strict``)
        or >= it; hi if none."""
        while lo < hi:
            mid = (lo + hi) // 2
            t = self.probe(mid)
            if t > bound if strict else t >= bound:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def window(self) -> None:
        """The positions [lo, hi) of the items within [start, end], by binary search."""
        if not self.timed or not self.n:
            return
        if self.start != self.start or self.end != self.end:  # NaN: nothing is within
            self.lo = self.hi = 0
            return
        self.probe(0)
        self.probe(self.n - 1)
        self.lo = 0 if self.start is None else self.first_true(0, self.n, self.start, False)
        self.hi = self.n if self.end is None else self.first_true(self.lo, self.n, self.end, True)

    def accept(self, k: int, item: Any) -> int:
        """A cursor item that matches the filters: it must lie in the window."""
        if self.timed:
            t = item_time(item)
            assert t is not None
            if not self.lo <= k < self.hi:
                raise _Disorder
            self.check_probes(k, t)
        return k

    # -- reading in order ----------------------------------------------------------

    def walk(self, frm: int, step: int, chunk: int) -> Iterator[tuple[int, Any]]:
        """Items from position ``frm`` on (``step`` +1) or back (-1), within the
        window, read in growing slices."""
        k = frm
        while self.lo <= k < self.hi:
            if step > 0:
                a, b = k, min(self.hi, k + chunk)
            else:
                a, b = max(self.lo, k - chunk + 1), k + 1
            if b - a == 1 and a in self.cache:
                values = [self.cache[a]]
            else:
                values = self.view[a:b]
                self.examined += len(values)
            if step > 0:
                yield from zip(range(a, b), values)
                k = b
            else:
                yield from zip(range(b - 1, a - 1, -1), reversed(values))
                k = a - 1
            chunk = min(chunk * 2, _MAX_CHUNK)

    def rows(self, frm: int, step: int, chunk: int) -> Iterator[Row]:
        """The matching items from ``frm`` in direction ``step``, checking the
        time order of what is read."""
        prev: int | float | None = None
        for k, item in self.walk(frm, step, chunk):
            if self.timed:
                t = item_time(item)
                if t is None or not self.in_time(t):
                    raise _Disorder
                if prev is not None and (t < prev if step > 0 else t > prev):
                    raise _Disorder
                self.check_probes(k, t)
                prev = t
            if self.with_ is not None and (not isinstance(item, dict)
                                           or item.get("with") != self.with_):
                continue
            yield Row(k, item_key(item), item)

    # -- cursors -------------------------------------------------------------------

    def locate(self, key: str, hint: int | None, last: bool) -> int:
        """The position of the first (``last``: the last) matching item with ``key``."""
        if hint is not None and 0 <= hint < self.n:
            item = self.item(hint)
            if item_key(item) == key and self.matches(item):
                return self.accept(hint, item)
        try:
            found = self.search_bytes(key, last)
        except _Undecided:
            found = self.search_items(key, last)
        if found is None:
            raise ItemNotFoundError(key)
        return self.accept(found, self.item(found))

    def search_bytes(self, key: str, last: bool) -> int | None:
        """Find ``key`` by searching the list's bytes (see the module docs);
        None if no item has it; :class:`_Undecided` if this cannot tell."""
        try:
            literal = dumps(key).encode("ascii")
        except ValueError:  # a lone surrogate: no key read from a file is that
            return None
        field = b'\n\t["key"] = ' + literal + b";\n"
        run = _plain_run(key)
        if not run:
            raise _Undecided("the key has no plain characters to search for")
        try:
            raw = _Raw(self.view)
        except (OSError, ValueError) as err:
            raise _Undecided(str(err)) from None
        try:
            if literal == b'"' + run + b'"':
                # A plain key: one pass over its text finds the field as
                # Prosody writes it and the other spellings at once.
                try:
                    return self.scan(raw, run, key, last, field)
                except _Undecided:  # too many candidates: is the field there?
                    found = self.scan(raw, field, key, last, field)
                    if found is None:
                        raise
                    return found
            found = self.scan(raw, field, key, last, field)
            if found is not None:
                return found
            return self.scan(raw, run, key, last, None)
        finally:
            raw.close()

    def scan(self, raw: _Raw, needle: bytes, key: str, last: bool,
             field: bytes | None) -> int | None:
        """The first (``last``: the last) matching item with ``key`` among the
        items whose bytes hold ``needle``.

        A hit that is part of ``field`` (the key field as Prosody writes it)
        is confirmed at once; the items of the other hits are confirmed after
        the pass, unless there are more than :data:`MAX_CANDIDATES` of them
        (:class:`_Undecided`).
        """
        lead = field.find(needle) if field is not None else -1
        candidates: list[int] = []
        seen: set[int] = set()
        for hit, k in raw.find_all(needle, last):
            if lead >= 0 and field is not None and raw.holds(hit - lead, field):
                if k not in seen:
                    seen.add(k)
                    if self.is_key(raw, k, key):
                        return k
            elif k not in seen and (not candidates or candidates[-1] != k):
                if len(candidates) >= MAX_CANDIDATES:
                    raise _Undecided("too many candidate items")
                candidates.append(k)
        for k in candidates:
            if k not in seen:
                seen.add(k)
                if self.is_key(raw, k, key):
                    return k
        return None

    def is_key(self, raw: _Raw, k: int, key: str) -> bool:
        """Whether item ``k`` has ``key`` and matches the filters (through the
        view); :class:`_Undecided` if our offsets disagree with the view there."""
        item = self.item(k)
        if item_key(item) == key:
            return self.matches(item)
        if raw.key_in_bytes(k) == key:
            raise _Undecided("the index does not match the list")
        return False

    def search_items(self, key: str, last: bool) -> int | None:
        """Find ``key`` by reading the list from the start."""
        found = None
        for k, item in enumerate(self.view):
            self.examined += 1
            if item_key(item) == key and self.matches(item):
                found = k
                if not last:
                    break
        return found

    # -- answers -------------------------------------------------------------------

    def run(self, after: str | None, before: str | None, limit: int | None, reverse: bool,
            total: bool, after_at: int | None, before_at: int | None) -> FindResult:
        self.window()
        if reverse:
            frm = self.hi - 1 if before is None else self.locate(before, before_at, True) - 1
            step, stop, whole = -1, after, before is None
        else:
            frm = self.lo if after is None else self.locate(after, after_at, False) + 1
            step, stop, whole = 1, before, after is None
        chunk = _FIRST_CHUNK if limit is None or self.with_ is not None else max(limit, 1)
        rows: list[Row] = []
        exhausted = False
        if limit != 0:
            it = self.rows(frm, step, chunk)
            while True:
                row = next(it, None)
                if row is None:
                    exhausted = True
                    break
                if stop is not None and row.key == stop:
                    break
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
        count: int | None = None
        if self.with_ is None:
            count = self.hi - self.lo
        elif whole and exhausted:
            count = len(rows)
        elif total:
            count = sum(1 for _ in self.rows(self.lo, 1, _MAX_CHUNK))
        return FindResult(rows, count, self.examined)

    def run_linear(self, after: str | None, before: str | None, limit: int | None,
                   reverse: bool) -> FindResult:
        """Prosody's own method: filter every item, then look for the cursors."""
        matched: list[tuple[int, str | None]] = []
        for k, item in enumerate(self.view):
            self.examined += 1
            if self.matches(item):
                matched.append((k, item_key(item)))
        count = len(matched)
        if reverse:
            matched.reverse()
        i = 0
        cursor = before if reverse else after
        if cursor is not None:
            for j, (_k, key) in enumerate(matched, 1):
                if key == cursor:
                    i = j
                    break
            else:
                raise ItemNotFoundError(cursor)
        stop = after if reverse else before
        rows: list[Row] = []
        for k, key in matched[i:]:
            if limit is not None and len(rows) >= limit:
                break
            if stop is not None and key == stop:
                break
            rows.append(Row(k, key, self.item(k)))
        return FindResult(rows, count, self.examined, linear=True)


def _check_number(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ArchiveQueryError(f"{name} must be a number of Unix seconds, not {value!r}")


def _check_key(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ArchiveQueryError(f"{name} must be an item key (text), not {value!r}")


def _check_count(name: str, value: object, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArchiveQueryError(f"{name} must be a whole number >= 0, not {value!r}")


def find(view: ListView, *, start: int | float | None = None, end: int | float | None = None,
         with_: str | None = None, after: str | None = None, before: str | None = None,
         limit: int | None = None, reverse: bool = False, total: bool = False,
         after_at: int | None = None, before_at: int | None = None,
         time_ordered: bool | None = None) -> FindResult:
    """Prosody 0.12's ``archive:find(user, query)`` on an open archive list.

    The query fields are Prosody's (``with_`` is ``with``, compared exactly);
    the semantics and the cost are described in the module documentation.
    ``total=True`` always gives ``count``.  ``after_at``/``before_at`` are
    position hints for the cursors; ``time_ordered=False`` finds a time window
    by a linear scan instead of a binary search.  Raises
    :class:`ItemNotFoundError` for a cursor key that no matching item has, and
    :class:`ArchiveQueryError` for a malformed query.
    """
    _check_number("start", start)
    _check_number("end", end)
    _check_key("after", after)
    _check_key("before", before)
    _check_count("limit", limit)
    _check_count("after_at", after_at)
    _check_count("before_at", before_at)
    if with_ is not None and not isinstance(with_, str):
        raise ArchiveQueryError(f"with must be a JID as text, not {with_!r}")
    if not view.exists:
        cursor = before if before is not None else after
        if cursor is not None:
            raise ItemNotFoundError(cursor)
        return FindResult([], 0)
    finder = _Finder(view, start, end, with_)
    if time_ordered is not False or not finder.timed:
        try:
            return finder.run(after, before, limit, reverse, total, after_at, before_at)
        except _Disorder:
            pass
    linear = _Finder(view, start, end, with_)
    linear.examined = finder.examined
    return linear.run_linear(after, before, limit, reverse)


def query_archive(view: ListView, *, max_items: int, start: int | float | None = None,
                  end: int | float | None = None, with_jid: str | None = None,
                  after: str | None = None, before: str | None = None,
                  after_at: int | None = None, before_at: int | None = None,
                  count: bool = False, time_ordered: bool | None = None) -> ArchivePage:
    """One page of a MAM query on an open archive list, as ``mod_mam`` pages it.

    * ``start``/``end``: Unix seconds, inclusive (:func:`parse_time` reads
      them from text); ``with_jid``: a bare or full JID (reduced with
      :func:`bare_jid`; items match on ``with`` exactly);
    * ``after=KEY``: the page after that item; ``before=KEY``: the page just
      before it; ``before=""``: the last page; both: the page just before
      ``before``, not reaching back to ``after`` (which, as in Prosody, need
      not exist then); neither: the first page;
    * ``max_items``: the page size (the caller caps it); 0 gives only the total;
    * ``after_at``/``before_at``: the position of the cursor item, as a
      previous page reported it (``last_at``/``first_at``): found in O(1)
      when right, searched for otherwise;
    * ``count=True``: always give ``total``, even when that reads the whole
      time window (a ``with`` query).

    Raises :class:`ItemNotFoundError` when no item matching the filters has
    the cursor key (``after``, or a non-empty ``before``), and
    :class:`ArchiveQueryError` for a malformed query.
    """
    _check_count("max_items", max_items, allow_none=False)
    with_ = bare_jid(with_jid) if with_jid is not None else None
    _check_key("before", before)
    reverse = before is not None
    cursor = before or None
    result = find(view, start=start, end=end, with_=with_, after=after, before=cursor,
                  limit=max_items + 1 if max_items else 0, reverse=reverse,
                  total=count or not max_items, after_at=after_at, before_at=before_at,
                  time_ordered=time_ordered)
    rows = result.rows
    more = len(rows) > max_items
    rows = rows[:max_items]
    if reverse:
        rows.reverse()
        has_previous, has_next = more, bool(rows) and cursor is not None
    else:
        has_previous, has_next = bool(rows) and after is not None, more
    return ArchivePage(
        items=[r.item for r in rows], keys=[r.key for r in rows],
        positions=[r.position for r in rows], has_next=has_next, has_previous=has_previous,
        complete=not more, total=result.count, examined=result.examined, linear=result.linear)
