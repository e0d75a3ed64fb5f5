"""What the service remembers between requests: encoded bodies and logins.

:class:`BodyCache`: encoded response bodies of keyval stores, reused while
their file is unchanged.

A script polling one store pays for parsing the Lua file and encoding JSON on
every request; this keeps the last encoding of each recently read file.  An
entry is valid only for the exact file it was made from: the key includes the
file's inode, size, modification and change times (nanoseconds).  Prosody and
this project replace a ``.dat`` by renaming a new file over it, which gives it a
new inode, so a changed store is never served from here.

:class:`LoginCache`: ``Authorization`` header values that logged in, valid
while the account file they verified against is unchanged (its fingerprint,
the same as above, taken by every request: one ``stat``).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from wsgi_app.auth import User

Headers = tuple[tuple[str, str], ...]

Fingerprint = tuple[int, int, int, int]


def fingerprint(path: str) -> Fingerprint | None:
    """The file's identity and version, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _touch(entries: OrderedDict[Any, Any], key: Any) -> None:
    """Make ``key`` the most recently used, if it is still there.  One C call,
    atomic under the GIL as the lookups are, so without the lock that
    insertions and evictions take (a lock per hit cost more than the hit)."""
    try:
        entries.move_to_end(key)
    except KeyError:  # evicted or dropped meanwhile
        pass


class BodyCache:
    """A bounded, thread-safe LRU of ``(path, format) -> (fingerprint, body, headers)``.

    ``headers`` are what the caller derives from a body once (the service: the
    response headers, ETag included), kept and handed back with it.
    """

    def __init__(self, maxsize: int = 512, max_body: int = 64 * 1024) -> None:
        self.maxsize = maxsize
        self.max_body = max_body
        self._entries: OrderedDict[tuple[str, str], tuple[Fingerprint, bytes, Headers]] = OrderedDict()
        self._lock = threading.Lock()

    def body(self, path: str, fmt: str, make: Callable[[], bytes | None]) -> bytes | None:
        """The body for the file at ``path`` now, from here or from ``make()``."""
        found = self.entry(path, fmt, make, lambda body: ())
        return None if found is None else found[0]

    def entry(self, path: str, fmt: str, make: Callable[[], bytes | None],
              derive: Callable[[bytes], Headers]) -> tuple[bytes, Headers] | None:
        """The body for the file at ``path`` now and the headers ``derive`` made for it,
        from here or from ``make()`` (None when that is None).

        The fingerprint is taken before ``make`` reads the file, so a file
        replaced meanwhile is stored under the old fingerprint, which no later
        request can have.
        """
        fp = fingerprint(path)
        if fp is None:
            made = make()
            return None if made is None else (made, derive(made))
        key = (path, fmt)
        entry = self._entries.get(key)  # one C call: safe without the lock
        if entry is not None and entry[0] == fp:
            _touch(self._entries, key)
            return entry[1], entry[2]
        body = make()
        if body is None:
            return None
        headers = derive(body)
        if len(body) <= self.max_body:
            with self._lock:
                self._entries[key] = (fp, body, headers)
                self._entries.move_to_end(key)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        return body, headers

    def __len__(self) -> int:
        return len(self._entries)


class LoginCache:
    """``Authorization`` header values that logged in: a bounded, thread-safe LRU.

    The key is a digest of the whole header value under a random key made
    for this object (BLAKE2b, keyed: a MAC, one C call), so the cache holds
    no password and its keys are useless outside this process.  A lookup is
    that digest and a dictionary lookup, which compares digests only: their
    order and timing say nothing about a password without the key.  The
    value is ``(account file, its fingerprint when the password verified,
    user)``; an entry serves only while :func:`fingerprint` of the file is
    the same, so a changed, replaced or removed account file ends the login
    at the next request, in every process (each stats the file itself).
    Only successful logins are added; an entry whose file changed is dropped
    when it is next looked up, and the least recently used beyond
    ``maxsize``.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, Fingerprint, User]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, header: str) -> bytes:
        # A WSGI header value is a latin-1 str (one code point per byte).
        return hashlib.blake2b(header.encode("latin-1", "surrogateescape"), key=self._key,
                               digest_size=32).digest()

    def get(self, header: str) -> User | None:
        """The user this exact header value logged in as, if their account file
        is unchanged since; else None."""
        digest = self._digest(header)
        entry = self._entries.get(digest)  # one C call: safe without the lock
        if entry is None:
            return None
        path, fp, user = entry
        if fingerprint(path) != fp:
            with self._lock:
                if self._entries.get(digest) is entry:
                    del self._entries[digest]
            return None
        _touch(self._entries, digest)
        return user

    def add(self, header: str, path: str, fp: Fingerprint, user: User) -> None:
        """Remember that ``header`` logged in as ``user`` against the account
        file ``path`` as it was at ``fp`` (taken before the file was read)."""
        digest = self._digest(header)
        with self._lock:
            self._entries[digest] = (path, fp, user)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
