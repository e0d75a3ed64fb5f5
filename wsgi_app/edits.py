"""Edits that never overwrite each other: entity tags, preconditions and JSON merge patch.

Entity tags (RFC 9110 section 8.8.3)
------------------------------------
An ETag names one representation of a store as GET serves it:
``"<format>-<32 hex digits>"``, the format (``json``, ``lua``) and the first
128 bits of a SHA-256 of

* for a keyval store (and the public view of an ``accounts`` record): the
  bytes of the response body, i.e. the value encoded in that format;
* for a list store: the bytes of the ``.list`` file that the items served are
  read from (from the start of the file to the end of the last item served),
  read from the very file the response is streamed from.

So the tag is a function of what is served and nothing else: it stays the same
while the data does, and changes with every change to it, whoever writes
(Prosody's own writers included) and however fast.  A fingerprint of the
file's identity (device, inode, size, modification time) would not: an inode
number is reused once the file that had it is replaced, and two writes within
one tick of the file system's clock leave the same time, so a store rewritten
twice in a few milliseconds could come back with its old fingerprint and new
contents.  Hashing costs reading the data once more (about 1.3 GB/s), which
for a keyval store is nothing next to encoding it, and for a list next to
streaming it.  The format is part of the tag because the bytes differ: the
``json`` and ``lua`` representations of a store never share a tag.

Preconditions (RFC 9110 section 13)
-----------------------------------
:class:`Preconditions` evaluates ``If-Match`` (strong comparison; ``*``:
the store exists) and then ``If-None-Match`` (weak comparison; ``*``: it does
not) against a :class:`Current` state.  A tag in a precondition is compared
with the current representation in the tag's own format, so a client may send
the tag of the JSON or of the Lua it read.  The service evaluates them under
the store's lock, then writes (:mod:`wsgi_app.app`); :class:`StoreState` is
that current state, read on demand.

JSON merge patch (RFC 7396)
---------------------------
:func:`patched` applies a merge patch to the JSON representation of a
store's value, as if a client had read it with GET, merged the patch in, and
sent the result back with PUT: the service then checks and stores that result
exactly as a PUT body.

Knows the store, the formats and the rights' public view; of HTTP only
Werkzeug's parsed ``ETags``.
"""
from __future__ import annotations

import enum
import errno
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

from werkzeug.datastructures import ETags

from prosody_store import lidx
from prosody_store.datamanager import DataManager, ListBusyError, ListView
from prosody_store.formats import FORMATS
from wsgi_app.rights import public_view

TAG_DIGITS = 32
"""Hex digits of SHA-256 in a tag: 128 bits."""

MERGE_PATCH_TYPE = "application/merge-patch+json"
"""The media type of a JSON merge patch (RFC 7396), the only one PATCH takes."""

LIST_OPEN_ATTEMPTS = 5
"""Tries to open a list and its tag on the same file while it is being replaced."""

_BLOCK = 1 << 20


# ---------------------------------------------------------------------------
# Entity tags


def _digest(kind: bytes, fmt: str) -> Any:
    return hashlib.sha256(kind + b"\0" + fmt.encode("ascii") + b"\0")


def _tag(fmt: str, digest: Any) -> str:
    return f"{fmt}-{digest.hexdigest()[:TAG_DIGITS]}"


def keyval_tag(fmt: str, body: bytes) -> str:
    """The tag of a keyval store (or a public view) served as ``body`` in format ``fmt``."""
    digest = _digest(b"keyval", fmt)
    digest.update(body)
    return _tag(fmt, digest)


def tag_format(tag: str) -> str | None:
    """The format a tag of ours names (``json-...`` -> ``json``); None for other tags."""
    fmt, sep, digits = tag.partition("-")
    if not sep or fmt not in FORMATS or len(digits) != TAG_DIGITS:
        return None
    if digits.strip("0123456789abcdef"):
        return None
    return fmt


class _Changed(Exception):
    """The list file was replaced or cut while its view and its tag were taken."""


def _list_tag(view: ListView, fd: int, path: str, fmt: str) -> str | None:
    """The tag of the items of ``view``, hashed from ``fd``, which must be open on
    the same file; None for an empty list."""
    if not view.exists or view.path != path:
        raise _Changed()
    count = len(view)
    if count == 0:
        return None
    seen, mine = view.stat(), os.fstat(fd)
    if (seen.st_dev, seen.st_ino) != (mine.st_dev, mine.st_ino):
        raise _Changed()
    # The file was opened before the view and is still open, so this is the
    # view's file and its inode cannot have been reused.  Lists only grow in
    # place (appends; anything else replaces the file), so the view's items
    # are the first ``count`` items of the file now.
    offsets = lidx.read_index(lidx.index_path(path), mine.st_size)
    if offsets is None:
        offsets = lidx.build_offsets(fd)
    if len(offsets) < count:
        raise _Changed()
    end = offsets[count - 1]
    digest = _digest(b"list", fmt)
    pos = 0
    while pos < end:
        block = os.pread(fd, min(_BLOCK, end - pos), pos)
        if not block:
            raise _Changed()
        digest.update(block)
        pos += len(block)
    return _tag(fmt, digest)


def open_list(dm: DataManager, node: str, host: str, store: str,
              fmt: str) -> tuple[ListView, str | None]:
    """The list's view (to be closed by the caller) and the tag of its items in
    format ``fmt`` (None when the list is empty or missing).

    The tag is hashed from the file the view reads, so the items served and the
    tag always belong together.  Raises ``ListBusyError`` if the list is
    replaced again and again while this looks.
    """
    path: str | None = None
    for _ in range(LIST_OPEN_ATTEMPTS):
        path = dm.existing_path(node, host, store, "list")
        if path is None:
            view = dm.list_open(node, host, store)
            if not view.exists:
                return view, None
            view.close()  # created meanwhile
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # removed or replaced meanwhile
        try:
            view = dm.list_open(node, host, store)
            try:
                return view, _list_tag(view, fd, path, fmt)
            except _Changed:
                view.close()
            except BaseException:
                view.close()
                raise
        finally:
            os.close(fd)
    raise ListBusyError(errno.EBUSY, "the list kept being replaced while it was opened",
                        path or dm.getpath(node, host, store, "list"))


# ---------------------------------------------------------------------------
# The current state and the preconditions


class Current(Protocol):
    """What a precondition is evaluated against."""

    def exists(self) -> bool:
        """Whether there is a current representation (GET would answer 200)."""
        ...

    def tag(self, fmt: str) -> str | None:
        """The tag of the current representation in format ``fmt``, if there is one
        that the requester may see."""
        ...


_UNREAD = object()


class StoreState:
    """One store as a GET would answer it to one requester, read when first asked.

    ``read`` and ``secrets`` are the requester's rights
    (:class:`wsgi_app.rights.Access`): without ``secrets`` the representation
    is the public view; without ``read`` there is none the requester may see,
    so no tag of theirs can match, but ``*`` still asks whether the store
    exists.
    """

    def __init__(self, dm: DataManager, node: str, host: str, store: str, *,
                 read: bool, secrets: bool) -> None:
        self.dm, self.node, self.host, self.store = dm, node, host, store
        self.read, self.secrets = read, secrets
        self._value: Any = _UNREAD
        self._tags: dict[str, str | None] = {}

    def value(self) -> Any:
        """The keyval value (all of it, whatever the requester may see), or None."""
        if self._value is _UNREAD:
            self._value = self.dm.load(self.node, self.host, self.store)
        return self._value

    def has_list(self) -> bool:
        with self.dm.list_open(self.node, self.host, self.store) as view:
            return len(view) > 0

    def exists(self) -> bool:
        if self.read and not self.secrets:
            return public_view(self.store, self.value()) is not None
        return self.value() is not None or self.has_list()

    def tag(self, fmt: str) -> str | None:
        if not self.read or fmt not in FORMATS:
            return None
        if fmt not in self._tags:
            self._tags[fmt] = self._make_tag(fmt)
        return self._tags[fmt]

    def _make_tag(self, fmt: str) -> str | None:
        encode = FORMATS[fmt].encode
        value = self.value()
        if not self.secrets:
            shown = public_view(self.store, value)
            return None if shown is None else keyval_tag(fmt, encode(shown))
        if value is not None:
            return keyval_tag(fmt, encode(value))
        view, tag = open_list(self.dm, self.node, self.host, self.store, fmt)
        view.close()
        return tag


@dataclass(frozen=True)
class Served:
    """The representation a GET has selected: evaluated against its tag only."""

    fmt: str
    etag: str

    def exists(self) -> bool:
        return True

    def tag(self, fmt: str) -> str | None:
        return self.etag if fmt == self.fmt else None


class Failed(enum.Enum):
    """Which precondition failed."""

    IF_MATCH = "If-Match"
    IF_NONE_MATCH = "If-None-Match"


@dataclass(frozen=True)
class Preconditions:
    """The ``If-Match`` and ``If-None-Match`` of a request (None when absent)."""

    if_match: ETags | None = None
    if_none_match: ETags | None = None

    def evaluate(self, current: Current) -> tuple[Failed, str] | None:
        """None when the request may go on, else which precondition failed and
        why, in a few words (RFC 9110 section 13.2.2: If-Match first)."""
        if self.if_match is not None:
            if self.if_match.star_tag:
                if not current.exists():
                    return Failed.IF_MATCH, "does not exist (If-Match: *)"
            elif not _any_current(self.if_match.as_set(include_weak=False), current):
                return Failed.IF_MATCH, "has changed: no ETag in If-Match is current"
        if self.if_none_match is not None:
            if self.if_none_match.star_tag:
                if current.exists():
                    return Failed.IF_NONE_MATCH, "exists (If-None-Match: *)"
            elif _any_current(self.if_none_match.as_set(include_weak=True), current):
                return Failed.IF_NONE_MATCH, "has not changed: its ETag is in If-None-Match"
        return None


def _any_current(tags: set[str], current: Current) -> bool:
    # An empty quoted tag ("") comes out of Werkzeug's parser as None: it names nothing.
    for tag in sorted(t for t in tags if t):
        fmt = tag_format(tag)
        if fmt is not None and current.tag(fmt) == tag:
            return True
    return False


# ---------------------------------------------------------------------------
# JSON merge patch


def parse_patch(body: bytes) -> Any:
    """A merge patch document: JSON with its ``null`` members kept (they remove).

    ValueError if it is not JSON (RFC 8259, with raw control characters in
    strings allowed, as Prosody's reader allows them).  Bytes that are not
    UTF-8 stay bytes (as surrogate escapes), as in a PUT body.
    """
    try:
        return json.loads(body.decode("utf-8", "surrogateescape"), strict=False)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2: ``patch`` merged into ``target`` (which is not changed).

    An object patch sets its members in the target (an object, else ``{}``),
    merging objects into objects, and removes those it sets to ``null``;
    anything else (an array, a string, a number, ``null``) replaces the target.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def patched(representation: bytes | None, patch: Any) -> bytes:
    """The JSON text of ``patch`` merged into the JSON ``representation`` of a
    store (None: no store).  ValueError, with a few words, when the result
    cannot be written as JSON (a number that is not finite, too deep)."""
    try:
        target = None if representation is None else json.loads(
            representation.decode("utf-8", "surrogateescape"))
        result = merge_patch(target, patch)
        try:
            text = json.dumps(result, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False)
        except ValueError:  # the only one json.dumps raises for a parsed document
            raise ValueError("the patched value holds a number that is not finite "
                             "(inf or NaN), which JSON cannot carry") from None
        return text.encode("utf-8", "surrogateescape")
    except RecursionError:
        raise ValueError("the patched value is nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("the patched value holds a lone surrogate") from None
