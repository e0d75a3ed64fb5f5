"""Message-archive expiry, offline: what mod_mam's ``archive_expires_after`` does.

mod_mam (Prosody 0.12, mod_storage_internal) deletes, per user, every archive
item whose ``when`` is not newer than ``now - archive_expires_after``
(``archive:delete(user, {["end"] = os.time() - after})`` keeps the items
with ``item.when > end``) and rewrites the list with ``list_store``.

:func:`expire_list` does the same to one list, streamed, without decoding
the items it keeps.  Under the store directory's lock it walks the list's
items by their byte boundaries (the ``.lidx`` when it fits the list, else
as the bytes show them) and checks each with one strict pattern of the
layout Prosody writes (:data:`PROSODY_ITEM`: every token, and every line
indented by exactly its depth, which proves the braces balance).  In an
item that passes, the line ``\t["when"] = <number>;`` is at the item
table's top level (nothing else can be indented by one tab at a line
start there, and a quote inside a string is always escaped), so the number
is read from the bytes alone.  (With the C speedups built,
``_creader.item_when`` makes the same check and reads the number in one
pass; the patterns run only where it declines.)  An item that does not
pass, or whose ``when`` is missing, repeated or not a plain number, is read
by the full reader; a part of the list the full reader cannot vouch for
standing alone sends the whole list through the full reader, as before
(so a damaged list raises the same
:class:`~prosody_store.datamanager.CorruptFileError` and changes nothing).  If any item is to go, the bytes of the kept items
are copied unchanged into a temporary file that replaces the list, then a
fresh ``.lidx`` is written; memory holds one window of the file (about
4 MiB, or one item if larger), never the list or its index.

Items without a numeric ``when`` are kept (Prosody's ``delete`` would stop
with an error on them).  A list from which everything goes is removed, as
``list_store`` does.
"""
from __future__ import annotations

import os
import re
import tempfile
from array import array
from dataclasses import dataclass
from itertools import islice
from operator import lt
from typing import IO, Any, Callable, Iterator, cast

from prosody_store import _speedups, lidx
from prosody_store.datamanager import DataManager, atomic_write
from prosody_store.numbers import tonumber
from prosody_store.paths import Name
from prosody_store.serialization import LuaSyntaxError, iter_list_with_offsets

__all__ = ["DAY", "MAX_DURATION", "PROSODY_ITEM", "ExpireResult", "expire_list", "is_expired",
           "parse_duration"]

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


# -- one item in Prosody's layout, checked without decoding it -----------------
#
# Written by hand because no library checks Lua text against a layout: the
# pattern is the grammar of what Prosody's util.serialization writes for a
# list item (0.9 to 13), nothing more.  Anything else fails to match and is
# left to the full reader.
#
# A short string as Lua reads it, with no raw line break or carriage return
# and only the escapes Prosody writes: a decimal escape of at most 255 (Lua
# reads up to three digits), \a \b \f \n \r \t \v \\ \" \' and a backslash
# before a line break (Prosody 0.9/0.10 on Lua 5.1).  Raw bytes are any other
# bytes, as Lua takes them.
# (Alternatives in order of frequency: \128 to \255 escape UTF-8 in 0.11+.)
_ESCAPE = (rb'\\(?:1[0-9][0-9]|2(?:[0-4][0-9]|5[0-5])|[abfnrtv\\"\'\n]|0[0-9][0-9]'
           rb'|[0-9]{1,2}(?![0-9]))')
_STRING = rb'"[^"\\\n\r]*+(?:' + _ESCAPE + rb'[^"\\\n\r]*+)*+"'
# A key string without escapes, so that its bytes are its text: only then is
# ["when"] the one way the key "when" can be written.
_KEY = rb'\[(?:"[^"\\\n\r]*+"|-?[0-9]++)\] = '
_NUMBER = rb'-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][-+]?+[0-9]++)?+'
_OTHER_SCALAR = rb'(?:' + _NUMBER + rb'|true|false|\{\})'
# One line of a table, indented by one tab more than group 1.  The lookahead
# ties each line's indent to the next one's: after a line that opens a table
# the next is one tab deeper; after a value or a closing brace the next is at
# the same depth, or closes its table one tab less deep (the item's own "})"
# at depth 0).  So every line is indented by exactly its nesting depth, and
# the braces balance.  (A string value, the most frequent line, is tried first.)
_NEXT_SAME_OR_CLOSE = rb'(?=\1(?:\t[^\t}\n]|\}))'
_LINE = (rb'\t(\t*+)(?:(?:' + _KEY + rb')?+(?:' + _STRING + rb';\n' + _NEXT_SAME_OR_CLOSE
         + rb'|\{\n(?=\t\1\t[^\t}\n])|' + _OTHER_SCALAR + rb';\n' + _NEXT_SAME_OR_CLOSE
         + rb')|\};\n' + _NEXT_SAME_OR_CLOSE + rb')')
PROSODY_ITEM = re.compile(rb'item\(\{\n(?=\t[^\t}\n])(?:' + _LINE + rb')*+\}\);\n'
                          rb'|item\(\{\}\);\n')
"""One whole list item as Prosody writes it: ``item({`` and a line break,
one table entry per line indented by its depth, ``});`` and a line break."""
# In an item that PROSODY_ITEM matched, this is a top-level "when" entry;
# group 1 is its value when that is a plain decimal number.  (The ";\n" is
# looked at, not taken, so that a repeated entry on the next line is found.)
_TOP_WHEN = re.compile(rb'\n\t\["when"\] = (?:(' + _NUMBER + rb')(?=;\n))?')
_ITEM_LINE = b"\nitem("
# Where an item in Prosody's layout ends: its first line "});" (no line of a
# string can be one: Prosody writes a line break in a string as an escape, or
# in 0.9/0.10 as a backslash before it, never after a ";").  Up to there,
# item_when (below) checks the whole item.
_ITEM_END = b"\n});\n"
# The start of an item statement whose argument is a value, not nil (a
# table, a string, a number, true or false): see _read_piece.
_VALUE_ITEM = re.compile(rb'item[ \t]*+(?:\([ \t]*+(?:[{"\'0-9]|\[[\[=]'
                         rb'|(?:true|false)(?![A-Za-z0-9_]))|[{"\'])')

# The compiled placing step, when built: _creader.item_when(buf, start, end,
# limit) gives what the Python path below reads from the item buf[start:end]
# (PROSODY_ITEM, then its one top-level "when" by _TOP_WHEN, by _when_value),
# or None, and then the Python path decides.  None with PROSODY_STORE_PURE=1.
_item_when: Callable[[bytearray, int, int, int], int | float | None] | None = (
    None if _speedups.reader is None else _speedups.reader.item_when)

_WINDOW = 4 << 20  # bytes of the list read at a time
_COPY_CHUNK = 1 << 16  # bytes written at a time
_INDEX_BLOCK = 1 << 13  # .lidx entries read at a time


@dataclass
class ExpireResult:
    """What :func:`expire_list` did to one list."""

    path: str  # the list file that was read
    dropped: int = 0
    kept: int = 0
    read_fully: int = 0  # items the full reader decided (the rest: from their bytes)
    full_reader: bool = False  # the whole list went through the full reader


def is_expired(item: Any, cutoff: float) -> bool:
    """Whether mod_storage_internal's ``delete`` with ``end = cutoff`` removes ``item``.

    It keeps an item whose ``when`` is greater than ``cutoff`` (NaN is not);
    an item without a number ``when`` is kept here (Prosody would fail).
    """
    when = item.get("when") if isinstance(item, dict) else None
    if when is None or isinstance(when, bool) or not isinstance(when, (int, float)):
        return False
    return not when > cutoff


class _FullReaderNeeded(Exception):
    """A part of the list cannot be read on its own: read the whole list as before."""


class _IndexUnfit(_FullReaderNeeded):
    """The ``.lidx`` passed the cheap checks but does not cut the list into items."""


class _NothingDropped(Exception):
    """Every item stays: the list is not rewritten."""


def _when_lines(buf: bytearray, limit: int) -> list[tuple[int, bytes | None]]:
    """Where in ``buf[:limit]`` a line ``\t["when"] = `` starts, and its number
    if it is one (:data:`_TOP_WHEN`), ending with ``(limit + 1, None)``.

    Found for the whole window in one pass; only those inside an item that
    PROSODY_ITEM matched are used (see :meth:`_Expiry._decide`).
    """
    found = [(m.start(), m.group(1)) for m in _TOP_WHEN.finditer(buf, 0, limit)]
    found.append((limit + 1, None))
    return found


def _when_value(text: bytes) -> int | float:
    """The number of a ``when`` as Lua reads it (a numeral with a point is a float)."""
    return float(text) if b"." in text else cast("int | float", tonumber(text))


def _read_piece(buf: bytearray, start: int, end: int, line_start: bool) -> list[tuple[int, Any]]:
    """The items of ``buf[start:end]`` with their end offsets in ``buf``, by
    the full reader.

    The piece must start at a line start with ``item(`` and a value (so no
    statement without one comes first, which the list's reader would count
    with the item before) and read to its end without error; then it holds
    exactly the items the whole list's reader finds there.  Otherwise
    :class:`_FullReaderNeeded`.  ``line_start``: whether ``buf[0]`` starts a line.
    """
    if (_VALUE_ITEM.match(buf, start, end) is None
            or not (buf[start - 1] == 0x0A if start else line_start)):
        raise _FullReaderNeeded
    try:
        items = [(start + e, item) for e, item in iter_list_with_offsets(bytes(buf[start:end]))]
    except LuaSyntaxError:
        raise _FullReaderNeeded from None
    if not items:
        raise _FullReaderNeeded
    return items


def _index_ends(index_path: str, list_size: int) -> Iterator[int] | None:
    """The item ends recorded in the ``.lidx``, read in blocks, if it fits the
    list (as :func:`prosody_store.lidx.valid_for`: rising from above 0 to the
    list's size); else None.  Checked in a first pass, so that memory never
    holds the whole index."""
    try:
        f = open(index_path, "rb")
    except OSError:
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        if (size < lidx.ENTRY_SIZE or size % lidx.ENTRY_SIZE
                or f.read(lidx.ENTRY_SIZE) != lidx.MAGIC_BYTES):
            return None
        last = 0
        for block in _index_blocks(f):
            if block[0] <= last or not all(map(lt, block, islice(block, 1, None))):
                return None
            last = block[-1]
        if last != list_size:
            return None
    return _read_index_ends(index_path)


def _index_blocks(f: IO[bytes]) -> Iterator[array[int]]:
    while True:
        data = f.read(_INDEX_BLOCK * lidx.ENTRY_SIZE)
        if len(data) % lidx.ENTRY_SIZE:
            data = data[:len(data) - len(data) % lidx.ENTRY_SIZE]
        if not data:
            return
        block = lidx.new_offsets()
        block.frombytes(data)
        yield block


def _read_index_ends(index_path: str) -> Iterator[int]:
    with open(index_path, "rb") as f:
        f.read(lidx.ENTRY_SIZE)
        for block in _index_blocks(f):
            yield from block


def _pread_chunks(fd: int, start: int, end: int) -> Iterator[bytes]:
    while start < end:
        chunk = os.pread(fd, min(_COPY_CHUNK, end - start), start)
        if not chunk:
            raise _FullReaderNeeded  # the list shrank under us
        start += len(chunk)
        yield chunk


class _Expiry:
    """One pass over a list: which items go, and the bytes of the ones that stay.

    :meth:`kept_chunks` reads the list window by window into one buffer and
    yields the kept items' bytes (nothing until the first item to drop is
    found; then the kept bytes before it at once).  Each kept item's end
    offset in the new list goes to ``offsets`` (a temporary file), if given.
    """

    def __init__(self, fd: int, size: int, cutoff: float, ends: Iterator[int] | None,
                 result: ExpireResult, offsets: IO[bytes] | None, write: bool) -> None:
        self.fd, self.size, self.cutoff, self.ends = fd, size, cutoff, ends
        self.result, self.offsets, self.write = result, offsets, write
        self.new_size = 0
        self.new_ends = lidx.new_offsets()

    def kept_chunks(self) -> Iterator[bytes]:
        # One buffer for the whole pass, refilled in place (it grows only for
        # an item larger than itself), and output in small pieces: windows
        # allocated and freed one after the other make glibc's malloc raise
        # its mmap threshold and then fragment the heap, and the peak RSS
        # would grow with the list.
        fd, size = self.fd, self.size
        buf = bytearray(min(_WINDOW, size))
        filled = 0  # bytes of buf that hold the list from offset base
        base = 0
        next_end = -1 if self.ends is None else next(self.ends, size)
        line_start = True  # buf[0] starts a line
        dropping = False  # an item has been dropped: kept bytes are written as found
        while base < size:
            if filled == len(buf):
                buf.extend(bytes(len(buf)))  # no whole item in the buffer: grow it
            with memoryview(buf) as view:
                got = os.preadv(fd, [view[filled:min(len(buf), size - base)]], base + filled)
            if not got:  # the index ends short of the list, or the list shrank
                raise _IndexUnfit if self.ends is not None else _FullReaderNeeded
            filled += got
            if self.ends is not None:
                cuts = []
                while next_end <= base + filled:
                    cuts.append(next_end - base)
                    if next_end >= size:
                        break
                    next_end = next(self.ends, size)
                if not cuts:
                    continue
                limit = cuts[-1]
            else:
                cuts = None
                at_eof = base + filled >= size
                limit = filled if at_eof else buf.rfind(_ITEM_LINE, 0, filled) + 1
                if limit <= 0:
                    continue
            runs = self._decide(buf, limit, cuts, base, line_start, dropping)
            if runs is not None:
                if not dropping:
                    dropping = True
                    first_drop, runs = runs[0][0], runs[1:]
                    if self.write and first_drop:
                        yield from _pread_chunks(fd, 0, first_drop)
                if self.write:
                    for run_start, run_end in runs:
                        yield from _pieces(buf, run_start - base, run_end - base)
            if self.offsets is not None:
                self.offsets.write(self.new_ends.tobytes())
            del self.new_ends[:]
            line_start = buf[limit - 1] == 0x0A
            buf[:filled - limit] = buf[limit:filled]
            filled -= limit
            base += limit
        if not dropping:
            raise _NothingDropped

    def _decide(self, buf: bytearray, limit: int, cuts: list[int] | None, base: int,
                line_start: bool, dropping: bool) -> list[tuple[int, int]] | None:
        """Keep or drop each item of ``buf[:limit]``; the kept runs (file offsets).

        Until an item has been dropped, runs are not collected: None if none
        was dropped here either, else the list starts with ``(start, start)``
        of the first dropped item, followed by the kept runs after it.
        """
        cutoff, new_ends, new_size = self.cutoff, self.new_ends, self.new_size
        dropped = kept = read_fully = 0
        match = PROSODY_ITEM.fullmatch if cuts is not None else PROSODY_ITEM.match
        item_when = _item_when
        whens = None if item_when is not None else _when_lines(buf, limit)  # found when needed
        # (Without cuts) where the first _ITEM_END at or after pos starts: -1 if
        # none is before limit, -2 before it is looked for.  Looked for again
        # only once pos has passed it, so the window is searched once, not once
        # per item.
        item_end_at = -2
        w = 0  # whens[w] is the first "when" line at or after pos
        runs: list[tuple[int, int]] = []
        run_start = run_end = -1
        pos = 0
        k = 0
        while pos < limit:
            if cuts is not None:
                end = cuts[k]
                k += 1
                at_line_start = buf[pos - 1] == 0x0A if pos else line_start
            # The compiled placing step first; where it declines, the Python path.
            when = None
            if item_when is not None:
                if cuts is None:
                    if 0 <= item_end_at < pos or item_end_at == -2:
                        item_end_at = buf.find(_ITEM_END, pos, limit)
                    if item_end_at >= 0:
                        end = item_end_at + len(_ITEM_END)
                        when = item_when(buf, pos, end, limit)
                elif at_line_start:
                    when = item_when(buf, pos, end, limit)
            if when is not None:
                decided: tuple[tuple[int, bool], ...] = ((end, not when > cutoff),)
            else:
                try:
                    if cuts is not None:
                        m = match(buf, pos, end) if at_line_start else None
                    else:
                        m = match(buf, pos, limit)
                        end = m.end() if m is not None else (
                            buf.find(_ITEM_LINE, pos, limit) + 1 or limit)
                except SystemError:  # CPython 3.11's re can fail so in possessive repeats
                    raise _FullReaderNeeded from None
                if whens is None:
                    whens = _when_lines(buf, limit)
                while whens[w][0] < pos:
                    w += 1
                at, text = whens[w]
                # In an item that PROSODY_ITEM matched: its one top-level "when", a number.
                if m is not None and at < end and text is not None and whens[w + 1][0] >= end:
                    decided = ((end, not _when_value(text) > cutoff),)
                else:
                    try:
                        pieces = _read_piece(buf, pos, end, line_start)
                    except _FullReaderNeeded:
                        raise _IndexUnfit if cuts is not None else _FullReaderNeeded from None
                    decided = tuple((e, is_expired(item, cutoff)) for e, item in pieces)
                    read_fully += len(decided)
            for item_end, expired in decided:
                if expired:
                    dropped += 1
                    if not dropping:
                        dropping = True
                        runs.append((base + pos, base + pos))
                else:
                    kept += 1
                    new_size += item_end - pos
                    new_ends.append(new_size)
                    if dropping:
                        if run_end == pos:
                            run_end = item_end
                        else:
                            if run_end > run_start:
                                runs.append((base + run_start, base + run_end))
                            run_start, run_end = pos, item_end
                pos = item_end
        if run_end > run_start:
            runs.append((base + run_start, base + run_end))
        self.new_size = new_size
        self.result.dropped += dropped
        self.result.kept += kept
        self.result.read_fully += read_fully
        return runs if dropping else None


def _pieces(buf: bytearray, start: int, end: int) -> Iterator[bytes]:
    """``buf[start:end]`` as bytes, in pieces of at most :data:`_COPY_CHUNK`."""
    for at in range(start, end, _COPY_CHUNK):
        with memoryview(buf) as view:
            piece = bytes(view[at:min(at + _COPY_CHUNK, end)])
        yield piece


def _index_chunks(offsets: IO[bytes]) -> Iterator[bytes]:
    yield lidx.MAGIC_BYTES
    offsets.seek(0)
    while chunk := offsets.read(_COPY_CHUNK):
        yield chunk


def expire_list(dm: DataManager, user: Name | None, host: Name | None, store: Name,
                cutoff: float, dry_run: bool = False, *,
                full_reader: bool = False) -> ExpireResult | None:
    """Drop the items of one list whose ``when`` <= ``cutoff``; None if there is no list.

    ``full_reader=True`` reads every item with the full reader (the slower
    way, for comparison).  Raises
    :class:`~prosody_store.datamanager.CorruptFileError` (changing nothing)
    on a damaged list.
    """
    if full_reader:
        return _expire_by_full_reader(dm, user, host, store, cutoff, dry_run)
    with dm.locked_list(user, host, store) as opened:
        if opened is None:
            return None
        source, fd = opened
        try:
            size = os.fstat(fd).st_size
            ends = _index_ends(lidx.index_path(source), size)
            try:
                return _expire_open_list(dm, user, host, store, cutoff, dry_run, source, fd,
                                         ends)
            except _IndexUnfit:  # as the reader does: the list, not its index, is right
                return _expire_open_list(dm, user, host, store, cutoff, dry_run, source, fd,
                                         None)
        except _FullReaderNeeded:
            return _expire_by_full_reader(dm, user, host, store, cutoff, dry_run)


def _expire_open_list(dm: DataManager, user: Name | None, host: Name | None, store: Name,
                      cutoff: float, dry_run: bool, source: str, fd: int,
                      ends: Iterator[int] | None) -> ExpireResult:
    """:func:`expire_list` of the list open as ``fd``, under the lock, cut at
    ``ends`` (its index) or else as its bytes show."""
    size = os.fstat(fd).st_size
    result = ExpireResult(source)
    offsets = tempfile.TemporaryFile() if not dry_run and dm.write_index else None
    try:
        expiry = _Expiry(fd, size, cutoff, ends, result, offsets, not dry_run)
        if dry_run:
            for _ in expiry.kept_chunks():
                pass
        else:
            dm.list_store_chunks(user, host, store, expiry.kept_chunks())
            if offsets is not None and result.kept:
                dest = dm.getpath(user, host, store, "list")
                atomic_write(lidx.index_path(dest), _index_chunks(offsets), durable=False)
    except _NothingDropped:
        pass
    finally:
        if offsets is not None:
            offsets.close()
    return result


def _expire_by_full_reader(dm: DataManager, user: Name | None, host: Name | None, store: Name,
                           cutoff: float, dry_run: bool) -> ExpireResult | None:
    res = dm.list_filter(user, host, store, lambda item: not is_expired(item, cutoff),
                         dry_run=dry_run)
    if res is None:
        return None
    return ExpireResult(res.path, dropped=res.dropped, kept=res.kept,
                        read_fully=res.dropped + res.kept, full_reader=True)
