"""The ``.lidx`` list index of Prosody 13.

A ``.lidx`` file is a sequence of native ``size_t`` numbers (8 bytes,
little-endian on x86-64 and arm64): first the magic number 7767640, then for
each item of the ``.list`` beside it the byte offset where that item ends.
Item 1 starts at offset 0, item N at the end of item N-1.

An index is trusted only if its magic is right, its length is a whole number
of entries, its offsets rise, and its last offset is the size of the list.
Otherwise it is rebuilt from the list the way Prosody 13 does: every line of
the list that starts with ``item`` starts an item, and the last item ends at
the end of the file.  Prosody 0.11 and later never write a raw newline inside
a value, so this is exact for files Prosody wrote.
"""
from __future__ import annotations

import mmap
import os
import re
import struct
import sys
from array import array
from typing import Iterable, Sequence

__all__ = [
    "ENTRY_SIZE",
    "MAGIC",
    "MAGIC_BYTES",
    "build_offsets",
    "encode_index",
    "entry",
    "index_path",
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
_TYPECODE = "Q" if ENTRY_SIZE == 8 else "I"
_ITEM_LINE = re.compile(rb"\nitem")


def index_path(list_path: str) -> str:
    """The path of the ``.lidx`` that belongs to the ``.list`` at ``list_path``."""
    if not list_path.endswith(".list"):
        raise ValueError(f"not a .list path: {list_path!r}")
    return list_path[:-len("list")] + "lidx"


def new_offsets() -> array:
    """An empty array of item end offsets, of the index's native entry size."""
    return array(_TYPECODE)


def entry(offset: int) -> bytes:
    """One index entry: an item's end offset as a native size_t."""
    return struct.pack(_FMT, offset)


def encode_index(end_offsets: Iterable[int]) -> bytes:
    """The bytes of a ``.lidx`` file for items ending at ``end_offsets``."""
    arr = array(_TYPECODE, end_offsets)
    return MAGIC_BYTES + arr.tobytes()


def parse_index(data: bytes) -> array | None:
    """The end offsets recorded in ``.lidx`` bytes, or None if the magic or length is wrong."""
    if len(data) < ENTRY_SIZE or len(data) % ENTRY_SIZE or data[:ENTRY_SIZE] != MAGIC_BYTES:
        return None
    arr = array(_TYPECODE)
    arr.frombytes(data[ENTRY_SIZE:])
    return arr


def valid_for(offsets: Sequence[int], list_size: int, strict: bool = True) -> bool:
    """Whether ``offsets`` can be the index of a list of ``list_size`` bytes.

    Checks that the last offset is the size of the list (an empty index goes
    with an empty list) and, if ``strict``, that the offsets rise strictly
    (O(n); the lazy reader checks each item's boundaries as it reads instead).
    """
    if not offsets:
        return list_size == 0
    if offsets[-1] != list_size or offsets[0] <= 0:
        return False
    if not strict:
        return True
    prev = 0
    for off in offsets:
        if off <= prev:
            return False
        prev = off
    return True


def scan_offsets(data: bytes | mmap.mmap) -> array:
    """End offsets of the items in list bytes, found as Prosody 13 finds them.

    An item starts at offset 0 and at every line that starts with ``item``;
    it ends where the next one starts, and the last ends at the end of the data.
    """
    size = len(data)
    arr = array(_TYPECODE)
    if size == 0:
        return arr
    # Text before the first ``item`` line (a hand-written comment, say) is
    # part of the first entry, so that the index always covers the file.
    arr.extend(m.start() + 1 for m in _ITEM_LINE.finditer(data))
    arr.append(size)
    return arr


def build_offsets(fd: int) -> array:
    """:func:`scan_offsets` of the open list file ``fd`` (read through mmap)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return array(_TYPECODE)
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
        return scan_offsets(mm)


def read_index(path: str, list_size: int, strict: bool = True) -> array | None:
    """The offsets of the ``.lidx`` at ``path`` if it exists and fits a list of ``list_size`` bytes.

    ``strict`` as in :func:`valid_for`.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < ENTRY_SIZE or size % ENTRY_SIZE or f.read(ENTRY_SIZE) != MAGIC_BYTES:
                return None
            offsets = array(_TYPECODE, bytes(size - ENTRY_SIZE))  # read straight into it
            view = memoryview(offsets).cast("B")
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    return None  # shrank while reading
                got += n
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if not valid_for(offsets, list_size, strict):
        return None
    return offsets
