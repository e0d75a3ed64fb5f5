"""Names and paths of a Prosody data directory.

Prosody turns a host, store and user name into a path like this::

    <data_path>/<encode(host)>/<store_encode(store)>/<encode(user)>.<ext>
    <data_path>/<encode(host)>/<store_encode(store)>.<ext>      (user is None)
    <data_path>/_global/...                                     (host is None)

:func:`encode` replaces every byte outside ``[A-Za-z0-9]`` with ``%xx``
(lowercase hex); :func:`store_encode` also keeps ``_``.  Because ``/``, ``.``
``%`` and NUL are always encoded, no name can reach a path outside its
directory.  Prosody 0.9 and 0.10 did not encode store names; such directories
are found by listing the host directory (:func:`find_entry`), never by building a
path from the raw name.

Names are ``str`` (encoded as UTF-8) or ``bytes``.  :func:`decode` returns a
``str`` when the decoded bytes are valid UTF-8 and ``bytes`` otherwise.

This module also holds the exception hierarchy of the store
(:class:`StoreError` and its subclasses), because names are where most store
errors start.
"""
from __future__ import annotations

import errno
import os
import re
from typing import Union, cast

from prosody_store.errors import Error

__all__ = [
    "GLOBAL_HOST",
    "NAME_MAX",
    "InvalidNameError",
    "Name",
    "NameTooLongError",
    "StoreError",
    "decode",
    "encode",
    "find_entry",
    "name_bytes",
    "store_encode",
]

Name = Union[str, bytes]

GLOBAL_HOST = "_global"
"""The host directory used when ``host`` is None."""

NAME_MAX = 255
"""Longest file name (one path component, in bytes) on common Unix filesystems."""


class StoreError(Error):
    """Base class of the errors raised by the store."""


class InvalidNameError(StoreError, ValueError):
    """A host, store or user name the store cannot use (wrong type, empty host or store)."""


class NameTooLongError(StoreError, OSError):
    """An encoded name does not fit in one file name (ENAMETOOLONG)."""

    def __init__(self, kind: str, name: Name, component: str, limit: int = NAME_MAX) -> None:
        self.kind = kind
        self.name = name
        self.component = component
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        msg = (f"{kind} name {shown} is too long for the filesystem: its file name would be "
               f"{len(component.encode())} bytes, the limit is {limit}")
        OSError.__init__(self, errno.ENAMETOOLONG, msg)

    def __str__(self) -> str:
        return cast(str, self.strerror)  # always set by __init__

    def __reduce__(self) -> tuple[type[NameTooLongError], tuple[str, Name, str]]:
        return (NameTooLongError, (self.kind, self.name, self.component))


_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_KEEP_STORE = _KEEP | {ord("_")}
_ENC_TABLE = ["%%%02x" % b for b in range(256)]
_DECODE = re.compile(rb"%([0-9A-Fa-f]{2})")


def name_bytes(name: Name, kind: str = "name") -> bytes:
    """The bytes of a name: ``str`` as UTF-8, ``bytes`` unchanged."""
    if isinstance(name, str):
        try:
            return name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidNameError(f"{kind} name {name!r} holds a lone surrogate, "
                                   "which is not UTF-8") from None
    if isinstance(name, (bytes, bytearray, memoryview)):
        return bytes(name)
    raise InvalidNameError(f"{kind} name must be str or bytes, not {type(name).__name__}")


def _encode(raw: bytes, keep: frozenset[int]) -> str:
    return "".join(chr(b) if b in keep else _ENC_TABLE[b] for b in raw)


def encode(name: Name) -> str:
    """Prosody's ``encode``: every byte outside ``[A-Za-z0-9]`` becomes ``%xx``."""
    return _encode(name_bytes(name), _KEEP)


def store_encode(name: Name) -> str:
    """Prosody's ``store_encode`` (0.11+): like :func:`encode`, but ``_`` is kept too."""
    return _encode(name_bytes(name), _KEEP_STORE)


def decode(encoded: Name) -> Name:
    """Turn every ``%XX`` (either case) back into its byte.

    Returns ``str`` if the result is valid UTF-8, else ``bytes``.
    """
    raw = _DECODE.sub(lambda m: bytes((int(m.group(1), 16),)), name_bytes(encoded))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def check_component(component: str, kind: str, name: Name, extra: int = 0) -> str:
    """Raise :class:`NameTooLongError` if ``component`` (plus ``extra`` bytes) exceeds NAME_MAX."""
    if len(component) + extra > NAME_MAX:  # encoded components are pure ASCII
        raise NameTooLongError(kind, name, component)
    return component


def host_component(host: Name | None) -> str:
    """The directory name of a host (``_global`` for None)."""
    if host is None:
        return GLOBAL_HOST
    if not name_bytes(host, "host"):
        raise InvalidNameError("host name must not be empty (use None for _global)")
    return check_component(encode(host), "host", host)


def store_component(store: Name, suffix: str = "") -> str:
    """The directory (or, with ``suffix`` ``.dat``, file) name of a store, current spelling."""
    if store is None or not name_bytes(store, "store"):
        raise InvalidNameError("store name must not be empty")
    return check_component(store_encode(store) + suffix, "store", store)


def user_component(user: Name, suffix: str) -> str:
    """The file name of a user's data, e.g. ``alice.dat``."""
    return check_component(encode(user) + suffix, "user", user)


def legacy_store_name(store: Name) -> bytes | None:
    """The raw (0.9/0.10) spelling of a store name, if it differs from the current one."""
    raw = name_bytes(store, "store")
    if raw.decode("latin-1") == store_encode(store):
        return None
    return raw


def find_entry(directory: str, wanted: bytes) -> str | None:
    """Path of the entry of ``directory`` whose name is exactly ``wanted``, else None.

    Used for legacy (unencoded) store names: the path is made from the
    directory listing, so hostile input can never name another place.
    """
    try:
        names = os.listdir(os.fsencode(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in names:
        if entry == wanted:
            return os.path.join(directory, os.fsdecode(entry))
    return None
