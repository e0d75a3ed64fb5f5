"""Encoded response bodies of keyval stores, reused while their file is unchanged.

A script polling one store pays for parsing the Lua file and encoding JSON on
every request; this keeps the last encoding of each recently read file.  An
entry is valid only for the exact file it was made from: the key includes the
file's inode, size, modification and change times (nanoseconds).  Prosody and
this project replace a ``.dat`` by renaming a new file over it, which gives it a
new inode, so a changed store is never served from here.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable

Fingerprint = tuple[int, int, int, int]


def fingerprint(path: str) -> Fingerprint | None:
    """The file's identity and version, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class BodyCache:
    """A bounded, thread-safe LRU of ``(path, format) -> (fingerprint, body)``."""

    def __init__(self, maxsize: int = 512, max_body: int = 64 * 1024) -> None:
        self.maxsize = maxsize
        self.max_body = max_body
        self._entries: OrderedDict[tuple[str, str], tuple[Fingerprint, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def body(self, path: str, fmt: str, make: Callable[[], bytes | None]) -> bytes | None:
        """The body for the file at ``path`` now, from here or from ``make()``.

        The fingerprint is taken before ``make`` reads the file, so a file
        replaced meanwhile is stored under the old fingerprint, which no later
        request can have.
        """
        fp = fingerprint(path)
        if fp is None:
            return make()
        key = (path, fmt)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == fp:
                self._entries.move_to_end(key)
                return entry[1]
        body = make()
        if body is not None and len(body) <= self.max_body:
            with self._lock:
                self._entries[key] = (fp, body)
                self._entries.move_to_end(key)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        return body

    def __len__(self) -> int:
        return len(self._entries)
