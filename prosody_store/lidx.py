"""The ``.lidx`` list index of Prosody 13.

A ``.lidx`` file is a sequence of native ``size_t`` numbers (8 bytes,
little-endian on x86-64 and arm64): first the magic number 7767640, then for
each item of the ``.list`` beside it the byte offset where that item ends.
Item 1 starts at offset 0, item N at the end of item N-1.

An index is used only if its magic is right, its length is a whole number
of entries, its offsets rise strictly from above 0 and its last offset is the
size of the list; the reader then checks each offset it uses against the list
(it must end one item and start the next).  Otherwise the index is rebuilt
from the list as :func:`scan_offsets` describes, which for files Prosody
wrote is Prosody 13's own rule.
"""
from __future__ import annotations

import mmap
import operator
import os
import struct
import sys
from array import array
from itertools import islice
from typing import Iterable, Literal, Sequence

from prosody_store.serialization import list_item_ends

__all__ = [
    "ENTRY_SIZE",
    "MAGIC",
    "MAGIC_BYTES",
    "MISSING",
    "STALE",
    "build_offsets",
    "encode_index",
    "entry",
    "index_path",
    "load_index",
    "new_offsets",
    "parse_index",
    "read_index",
    "scan_offsets",
    "valid_for",
]

MAGIC = 7767640
ENTRY_SIZE = struct.calcsize("N")  # native size_t, as Lua's string.pack("T")
_FMT = "<Q" if ENTRY_SIZE == 8 else "<I"
if sys.byteorder != "little":
    _FMT = ">" + _FMT[1:]
MAGIC_BYTES = struct.pack(_FMT, MAGIC)
_TYPECODE: Literal["Q", "I"] = "Q" if ENTRY_SIZE == 8 else "I"

MISSING = "missing"
STALE = "stale (the list has changed since it was indexed)"


def index_path(list_path: str) -> str:
    """The path of the ``.lidx`` that belongs to the ``.list`` at ``list_path``."""
    if not list_path.endswith(".list"):
        raise ValueError(f"not a .list path: {list_path!r}")
    return list_path[:-len("list")] + "lidx"


def new_offsets() -> array[int]:
    """An empty array of item end offsets, of the index's native entry size."""
    return array(_TYPECODE)


def entry(offset: int) -> bytes:
    """One index entry: an item's end offset as a native size_t."""
    return struct.pack(_FMT, offset)


def encode_index(end_offsets: Iterable[int]) -> bytes:
    """The bytes of a ``.lidx`` file for items ending at ``end_offsets``."""
    arr = array(_TYPECODE, end_offsets)
    return MAGIC_BYTES + arr.tobytes()


def parse_index(data: bytes) -> array[int] | None:
    """The end offsets recorded in ``.lidx`` bytes, or None if the magic or length is wrong."""
    if len(data) < ENTRY_SIZE or len(data) % ENTRY_SIZE or data[:ENTRY_SIZE] != MAGIC_BYTES:
        return None
    arr = array(_TYPECODE)
    arr.frombytes(data[ENTRY_SIZE:])
    return arr


def valid_for(offsets: Sequence[int], list_size: int) -> bool:
    """Whether ``offsets`` can be the index of a list of ``list_size`` bytes.

    The offsets must rise strictly from above 0 to exactly the size of the
    list (an empty index goes with an empty list), so each lies in the file
    and no entry is empty or repeated.  Whether each lies at an item boundary
    is checked by the reader when it reads the item (see
    :class:`prosody_store.datamanager.ListView`): checking them all here
    would read the whole list, which is what the index saves.
    """
    if not offsets:
        return list_size == 0
    if offsets[0] <= 0 or offsets[-1] != list_size:
        return False
    # In C, about 45 ms per million entries; a Python loop takes five times that.
    return all(map(operator.lt, offsets, islice(offsets, 1, None)))


def scan_offsets(data: bytes | mmap.mmap) -> array[int]:
    """End offsets of the items in list bytes: one entry per item the reader reads.

    They are :func:`~prosody_store.serialization.list_item_ends`: item N ends
    where the statement of item N+1 starts, the last at the end of the data.
    For a list laid out as Prosody writes it, that is Prosody 13's own rule
    (an item starts at every line that starts with ``item``), applied without
    parsing; other layouts (several items on a line, indented items,
    ``item(nil)``, comments) are parsed, so that the index agrees with
    ``iter_list`` where Prosody 13's rule would not.  A damaged list gets one
    entry per readable item and one per damaged part.
    """
    arr = array(_TYPECODE)
    if len(data):
        arr.extend(list_item_ends(data))
    return arr


def build_offsets(fd: int) -> array[int]:
    """:func:`scan_offsets` of the open list file ``fd`` (read through mmap)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return array(_TYPECODE)
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
        return scan_offsets(mm)


def read_index(path: str, list_size: int) -> array[int] | None:
    """The offsets of the ``.lidx`` at ``path`` if it exists and fits a list of
    ``list_size`` bytes (:func:`valid_for`), else None."""
    return load_index(path, list_size)[0]


def load_index(path: str, list_size: int) -> tuple[array[int] | None, str | None]:
    """``(offsets, None)`` if the ``.lidx`` at ``path`` fits a list of
    ``list_size`` bytes, else ``(None, why)``: :data:`MISSING`, :data:`STALE`
    (a good index of a list that has since grown or shrunk: what a writer
    that keeps no index leaves) or a description of the damage."""
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < ENTRY_SIZE or size % ENTRY_SIZE or f.read(ENTRY_SIZE) != MAGIC_BYTES:
                return None, "not an index (wrong magic number or length)"
            offsets = array(_TYPECODE, bytes(size - ENTRY_SIZE))  # read straight into it
            view = memoryview(offsets).cast("B")
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    return None, STALE  # shrank while reading: being rewritten
                got += n
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None, MISSING
    if valid_for(offsets, list_size):
        return offsets, None
    if valid_for(offsets, offsets[-1] if offsets else 0):
        return None, STALE
    return None, "offsets out of order (an entry repeated, zero or going back)"
