"""Prosody's filesystem storage (``util.datamanager``), from Python.

:class:`DataManager` reads and writes a Prosody ``data_path`` the way
Prosody 0.11 to 13 do, with Prosody's function names and argument order
(``load(user, host, store)``, ``list_append(user, host, store, item)``, ...).
It reads data directories written by every Prosody since 0.9, including the
unencoded store directories of 0.9/0.10 (``pep_urn:xmpp:avatar:metadata``) and
Prosody 13's ``.lidx`` list indexes.

On disk
-------
* Whole-file writes (``store``, ``list_store``, ``list_store_stream``,
  ``list_store_chunks``, ``list_shift``, ``list_filter``) are atomic and,
  with ``durable=True`` (the default), durable: the data goes to a temporary
  file in the same directory, is fsync'ed, renamed over the target, and the
  directory is fsync'ed.  The temporary name is unique
  (``.prosody_store.<random>~``) rather than Prosody's fixed ``<file>~``, so
  two writers never clobber each other's temporary file, and it never exceeds
  the file-name limit whatever the user name.  A writer killed mid-write
  leaves at most such a hidden file, which Prosody and :meth:`DataManager.users`
  ignore and :meth:`DataManager.remove_temp_files` deletes.
  :func:`atomic_write` is that write, public for files outside the store
  (the CLI's ``export -o``).
* ``list_append`` writes the whole ``item(...);\\n`` with one ``write`` to a
  file opened ``O_APPEND``, then (like Prosody 13) appends the item's end
  offset to the ``.lidx`` if that index is consistent with the list, or
  removes the index if it is not.  With ``durable=True`` the list is fsync'ed.
* Storing an empty table, or an empty list, removes the file (and the index).
* Writes go to the current (0.11+) spelling of the store name; when a store
  only exists in the old unencoded spelling, a write moves that user's data to
  the current spelling first (``list_append``) or replaces it (``store``,
  ``list_store``), so the old file never shadows or resurfaces.

Locking
-------
Every write takes an exclusive ``flock`` on the *directory* that holds the
file (the store directory, or the host directory for a store without user).
A directory's inode never changes, unlike a data file's, which ``rename``
replaces, so there is no lock-file to create, leak or exceed ``NAME_MAX``, and
a waiter can never hold a lock on a stale inode.  The lock is per directory,
so writers of different users of one store serialise; that keeps the
``.lidx`` consistent with concurrent appends and makes read-modify-write
(:meth:`DataManager.update`, ``list_shift``, ``list_recover(repair=True)``)
safe among processes and threads using this library.  Readers take no lock:
they rely on atomic renames and on ``.lidx`` validation.

Prosody itself takes no lock.  What a running Prosody can still race with:

* Prosody's ``list_append`` (``fopen "r+"``, seek to end, write) concurrent
  with ours or its own: Prosody does not use ``O_APPEND``, so a write of ours
  that lands between its seek and its write can be overwritten.
* Read-modify-write here (``update``, ``list_shift``, repair) concurrent with
  a Prosody write to the same file: the Prosody write that lands between our
  read and our rename is lost (last rename wins).
* A Prosody 0.12 append leaves a ``.lidx`` stale; that is detected (size and
  offset checks) and the index is rebuilt on the next ``list_open``.
* Prosody's own fixed temporary name ``<file>~`` cannot collide with ours.

Errors
------
A missing file is "no data" (``None``).  A file that is not valid Prosody data
raises :class:`CorruptFileError` (a :class:`~prosody_store.paths.StoreError`
and a :class:`~prosody_store.serialization.LuaSyntaxError`) naming the file,
line and column.  :meth:`DataManager.list_recover` reads what can be read
from a damaged list and reports the damaged byte ranges.

For services
------------
Tools built on the store use only public names: :meth:`DataManager.lock`
for their own read-modify-write, :meth:`~DataManager.list_store_stream` and
:meth:`~DataManager.list_store_chunks` to replace a list without holding it
in memory, :meth:`~DataManager.list_filter` to drop items while copying the
kept bytes unchanged, :meth:`~DataManager.list_reindex`,
:meth:`~DataManager.exists` / :meth:`~DataManager.file_size` /
:meth:`~DataManager.existing_path`, and :meth:`~DataManager.hosts`,
:meth:`~DataManager.store_names` and :meth:`~DataManager.iter_files` to walk
a data directory.  :func:`prosody_store.lidx.index_path` names a list's index.

Views
-----
``dm.keyval(host, store)`` is a ``MutableMapping`` of user -> value;
``dm.lists(host, store)`` is a ``MutableMapping`` of user -> lazy
:class:`ListView` (assigning a sequence replaces the list).
"""
from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import functools
import io
import logging
import os
import re
import stat
import sys
import threading
import time
import weakref
from array import array
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    Callable,
    Concatenate,
    ContextManager,
    Iterable,
    Iterator,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

from prosody_store import lidx
from prosody_store.errors import Error, StorageError
from prosody_store.paths import (
    GLOBAL_HOST,
    InvalidNameError,
    Name,
    NameTooLongError,
    StoreError,
    decode,
    find_entry,
    host_component,
    legacy_store_name,
    name_bytes,
    store_component,
    user_component,
)
from prosody_store.serialization import (
    LuaSyntaxError,
    dump_dat,
    dump_item,
    iter_list,
    iter_list_with_offsets,
    loads,
)

__all__ = [
    "CorruptFileError",
    "DamagedRegion",
    "DataManager",
    "InvalidNameError",
    "KeyvalView",
    "ListFilterResult",
    "ListBusyError",
    "ListRecovery",
    "ListView",
    "ListsView",
    "NameTooLongError",
    "StoreError",
    "StoreFile",
    "atomic_write",
    "damaged_copy_name",
    "name_sort_key",
]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".prosody_store."
TEMP_SUFFIX = "~"
_TYPE_EXT = {"keyval": "dat", "list": "list"}
_SAFE_EXT = re.compile(r"[A-Za-z0-9]+\Z")
_EMPTY_DAT = b"return {};\n"
_BLOCK = 1 << 20
_COPY_CHUNK = 1 << 20


# ---------------------------------------------------------------------------
# Errors


class CorruptFileError(StoreError, LuaSyntaxError):
    """A data file that is not valid Prosody data.

    ``filename``, ``lineno``, ``colno`` (1-based) and ``pos`` (byte offset)
    locate the problem in the file; ``error`` is the codec's original error.
    """

    filename: str  # always known here, unlike for a LuaSyntaxError

    def __init__(self, error: LuaSyntaxError, filename: str, *, line_offset: int = 0,
                 pos_offset: int = 0) -> None:
        self.__dict__.update(error.__dict__)
        self.error = error
        self.filename = filename
        self.lineno = error.lineno + line_offset
        self.pos = error.pos + pos_offset
        ValueError.__init__(self, str(self))

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], CorruptFileError],
                                  tuple[dict[str, Any]]]:
        return (_rebuild_corrupt, (self.__dict__,))


def _rebuild_corrupt(state: dict[str, Any]) -> CorruptFileError:
    err = CorruptFileError.__new__(CorruptFileError)
    err.__dict__.update(state)
    ValueError.__init__(err, str(err))
    return err


class ListBusyError(StoreError, OSError):
    """An append found the end of a list changing under it, again and again:
    another process that takes no lock is writing it.  Try again later."""


@dataclass
class DamagedRegion:
    """Bytes ``start:end`` of a list that do not parse, and why."""

    start: int
    end: int
    error: CorruptFileError


@dataclass
class ListRecovery:
    """What :meth:`DataManager.list_recover` could read from a list."""

    path: str
    items: list[Any] = field(default_factory=list)
    damaged: list[DamagedRegion] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.damaged


@dataclass
class ListFilterResult:
    """What :meth:`DataManager.list_filter` kept and dropped of a list."""

    path: str  # the list file that was read
    kept: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class StoreFile:
    """One ``.dat`` or ``.list`` of a data directory (see :meth:`DataManager.iter_files`)."""

    host: Name | None
    store: Name
    user: Name | None
    type: str  # "keyval" or "list"

    @property
    def ext(self) -> str:
        return "dat" if self.type == "keyval" else "list"


def name_sort_key(name: Name | None) -> tuple[int, bytes]:
    """Sort key of host, store and user names: None first, then by the name's bytes."""
    return (0, b"") if name is None else (1, name_bytes(name))


# ---------------------------------------------------------------------------
# Files


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _adopt_attributes(fd: int, target: str | None, directory: str) -> None:
    """Give a new file the mode (and, as root, the owner) of the file it replaces.

    Keeps a private file private when an admin tool with a looser umask
    rewrites it, and keeps Prosody able to read files that root wrote: as
    root, a brand-new file gets the owner of its directory.
    """
    st = None
    if target is not None:
        try:
            st = os.stat(target)
            os.fchmod(fd, st.st_mode & 0o7777)
        except FileNotFoundError:
            st = None
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            st = st or os.stat(directory)
            os.fchown(fd, st.st_uid, st.st_gid)


def _write_temp(path: str, chunks: Iterable[bytes], durable: bool) -> str:
    """Write ``chunks`` to a new, uniquely named temporary file beside ``path``.

    The file gets the attributes of ``path`` (see :func:`_adopt_attributes`)
    and, if ``durable``, is fsync'ed.  Returns its path; on any error it is
    removed and the error raised.
    """
    directory = os.path.dirname(path) or os.curdir
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    try:
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            _adopt_attributes(fd, path, directory)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _discard(tmp: str) -> None:
    """Remove a temporary file after a failure, ignoring errors."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[bytes],
                 durable: bool = True) -> None:
    """Write a whole file so that readers see the old file or the complete new one.

    ``chunks`` go to a uniquely named temporary file beside ``path`` (the
    store's ``.prosody_store.<random>~``), which gets the mode of the file it
    replaces, is fsync'ed, renamed over ``path``, and the directory fsync'ed
    (without ``durable``, no fsync).  If writing fails, or ``chunks`` raises,
    the temporary file is removed, ``path`` is untouched and the error raised.
    Takes no lock: the store's writers call it under theirs.
    """
    path = os.fspath(path)
    tmp = _write_temp(path, chunks, durable)
    try:
        os.rename(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if durable:
        _fsync_dir(os.path.dirname(path) or os.curdir)


def _copy_ranges(fd: int, ranges: Iterable[tuple[int, int]], path: str) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of each range of an open file, in blocks (``pread``)."""
    for start, end in ranges:
        pos = start
        while pos < end:
            chunk = os.pread(fd, min(_COPY_CHUNK, end - pos), pos)
            if not chunk:
                raise StoreError(f"{path}: file shrank while being copied")
            pos += len(chunk)
            yield chunk


_END = object()


def _item_chunks(first: Any, rest: Iterator[Any], offsets: array[int]) -> Iterator[bytes]:
    """Serialised items in pieces of about 64 KiB, appending each item's end offset."""
    pos = 0
    batch: list[bytes] = []
    size = 0
    for item in _chain(first, rest):
        if item is None:
            raise ValueError("a list item cannot be None (Lua lists cannot hold nil)")
        line = dump_item(item)
        pos += len(line)
        offsets.append(pos)
        batch.append(line)
        size += len(line)
        if size >= 1 << 16:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _remove(path: str | None) -> bool:
    """Remove a file if it exists; True if it did."""
    if path is None:
        return False
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _storage_error(err: OSError, path: str | bytes, action: str) -> StorageError:
    """``err`` as a :class:`~prosody_store.errors.StorageError` naming ``path`` as text."""
    code = err.errno
    reason = err.strerror or (os.strerror(code) if code else str(err))
    return StorageError(code, reason, os.fsdecode(path), action)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reports_storage_errors(action: str) -> Callable[[Callable[Concatenate["DataManager", _P], _R]],
                                                     Callable[Concatenate["DataManager", _P], _R]]:
    """An ``OSError`` escaping the store method becomes a :class:`StorageError`
    (still an ``OSError``, with the same ``errno``) naming its path as text;
    prosody_store's own errors pass unchanged."""
    def wrap(method: Callable[Concatenate["DataManager", _P], _R]
             ) -> Callable[Concatenate["DataManager", _P], _R]:
        @functools.wraps(method)
        def run(self: "DataManager", /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except Error:
                raise
            except OSError as err:
                path = err.filename if err.filename is not None else self.data_path
                raise _storage_error(err, path, action) from err
        return run
    return wrap



def _lexists(path: str) -> bool:
    """Whether the entry exists.  Errors other than "not there" (a directory we
    may not search, a path component that is not a directory) are a
    StorageError: a store we cannot read is not an empty one."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _storage_error(err, path, "access") from None
    return True


def _is_dir(path: str | bytes) -> bool:
    """Whether ``path`` is a directory (symlinks followed); False if it does not
    exist, a StorageError if that cannot be told (permission denied, say)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _storage_error(err, path, "access") from None


def _is_file(path: str | bytes) -> bool:
    """Whether ``path`` is a regular file (symlinks followed); as :func:`_is_dir`."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _storage_error(err, path, "access") from None


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o777)  # the umask applies, as with Prosody's pposix.mkdir
    except FileExistsError:
        return
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            st = os.stat(os.path.dirname(path))
            os.chown(path, st.st_uid, st.st_gid)


_held = threading.local()


@contextlib.contextmanager
def _dir_lock(directory: str) -> Iterator[None]:
    """Exclusive advisory lock on a directory; reentrant within one thread."""
    held: dict[str, int] = _held.__dict__.setdefault("dirs", {})
    if directory in held:
        held[directory] += 1
        try:
            yield
        finally:
            held[directory] -= 1
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[directory] = 1
        try:
            yield
        finally:
            del held[directory]
    finally:
        os.close(fd)  # closing releases the flock


# A last statement that does not parse is looked at again after this pause,
# so that a live writer that takes no lock (Prosody) can finish its write;
# after this many rounds of changes the append gives up (ListBusyError).
_SETTLE_SECONDS = 0.05
_SETTLE_ROUNDS = 5
_TAIL_WINDOW = 1 << 12


class _FdReader(io.RawIOBase):
    """Bytes ``[pos, end)`` of an open file through ``pread``: the descriptor's
    own offset is left alone, so an append through it still goes to the end."""

    def __init__(self, fd: int, pos: int, end: int) -> None:
        super().__init__()
        self._fd, self._pos, self._end = fd, pos, end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._end - self._pos)
        if n <= 0:
            return 0
        chunk = os.pread(self._fd, n, self._pos)
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _pread_exact(fd: int, n: int, pos: int) -> bytes:
    return io.BufferedReader(_FdReader(fd, pos, pos + n)).read()


def _last_statement_start(fd: int, size: int) -> int:
    """Offset of the last line of a list that starts with ``item`` (0 if none).

    Prosody starts every statement on a line of its own and never writes a
    raw line end inside a value, so the last statement starts there or later.
    """
    window = _TAIL_WINDOW
    while True:
        start = max(size - window, 0)
        found = os.pread(fd, size - start, start).rfind(b"\nitem")
        if found >= 0:
            return start + found + 1
        if start == 0:
            return 0
        window *= 4


def _whole_statements_end(fd: int, size: int, start: int) -> tuple[int, LuaSyntaxError | None]:
    """Where the whole statements of an open list from ``start`` on end, and
    the error that stopped the reading: ``(size, None)`` when all of it
    parses, else the end of the last statement before the one that does not.
    """
    end = start
    if size - start <= _TAIL_WINDOW:
        source: bytes | IO[bytes] = os.pread(fd, size - start, start)
    else:
        source = io.BufferedReader(_FdReader(fd, start, size))
    try:
        for offset, _ in iter_list_with_offsets(source):
            end = start + offset
    except LuaSyntaxError as err:
        return end, err
    return size, None


def damaged_copy_name(path: str) -> str:
    """A free name beside a damaged file for keeping its bytes: ``<file>.damaged-<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.lexists(name):
        n += 1
        name = f"{path}.damaged-{stamp}-{n}"
    return name


def _line_of(fd: int, pos: int) -> int:
    """1-based line number of byte ``pos`` of an open file."""
    line, off = 1, 0
    while off < pos:
        chunk = os.pread(fd, min(_COPY_CHUNK, pos - off), off)
        if not chunk:
            break
        line += chunk.count(b"\n")
        off += len(chunk)
    return line


def _corrupt_piece(err: LuaSyntaxError, path: str, line: int, start: int) -> CorruptFileError:
    """An error in a piece of a file that starts at byte ``start``, line ``line``."""
    return CorruptFileError(err, path, line_offset=line - 1, pos_offset=start)


class _IndexMismatch(Exception):
    """The index entry read does not hold exactly one item statement."""


def _parse_piece(raw: bytes, path: str, fd: int, start: int) -> Any:
    """The single item of one index entry's bytes."""
    try:
        statements = list(iter_list_with_offsets(raw))
    except LuaSyntaxError as err:
        raise _corrupt_piece(err, path, _line_of(fd, start), start) from None
    if len(statements) > 1:
        raise _IndexMismatch
    return statements[0][1] if statements else None  # item(nil): nothing, as Prosody's loader sees it


# ---------------------------------------------------------------------------
# The lazy list


class ListView(Sequence[Any]):
    """A read-only, lazy view of a ``.list`` file, indexed by its ``.lidx``.

    Indexing (negative indexes too) reads one item from disk; slices return a
    ``list``; iteration reads the file in blocks.  The view is a snapshot of
    the file as it was opened (an append or a replacement afterwards is not
    seen).  Every item read is checked against the file (it must start a line
    with ``item`` and end where the next one starts); an index that passed the
    cheap checks at open but points elsewhere is rebuilt once, transparently.
    Use it as a context manager or call :meth:`close`; garbage collection
    closes it too.
    """

    def __init__(self, fd: int, path: str, offsets: array[int],
                 rebuild: Callable[[], array[int]] | None = None) -> None:
        self._fd = fd
        self.path = path
        self.exists = fd >= 0
        """False for the empty view of a list that does not exist."""
        self._offsets = offsets
        self._rebuild = rebuild
        self._finalizer = weakref.finalize(self, os.close, fd) if fd >= 0 else \
            weakref.finalize(self, int)

    @classmethod
    def missing(cls, path: str) -> "ListView":
        """The view of a list that does not exist at ``path``: no items, no file open."""
        return cls(-1, path, lidx.new_offsets())

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "ListView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> int:
        if not self._finalizer.alive:
            raise ValueError("I/O operation on a closed list view")
        return self._fd

    # -- reading -----------------------------------------------------------------

    def stat(self) -> os.stat_result:
        """``os.stat`` of the open file: the list as it was when the view was opened.
        Raises FileNotFoundError for the view of a list that does not exist."""
        fd = self._check_open()
        if not self.exists:
            raise FileNotFoundError(errno.ENOENT, "no such list", self.path)
        return os.fstat(fd)

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def item_ends(self) -> array[int]:
        """The byte offset where each item ends (the index in use: the
        ``.lidx``'s, or the one rebuilt from the list).  Do not change it."""
        return self._offsets

    def fileno(self) -> int:
        """The descriptor of the list as it was opened (for ``mmap``); -1 for the
        view of a list that does not exist.  It belongs to the view: do not close it."""
        return self._check_open()

    def _bounds(self, i: int) -> tuple[int, int]:
        return (self._offsets[i - 1] if i else 0), self._offsets[i]

    def _read_items(self, lo: int, hi: int) -> tuple[bytes, int] | None:
        """Bytes of items lo..hi-1 plus 4 after, and their offset.

        None if the index does not match the file there: every entry but the
        last must end where an ``item`` starts (at a line start in Prosody's
        layout; after another item on the same line, or indented, elsewhere).
        """
        fd = self._check_open()
        start, end = self._bounds(lo)[0], self._offsets[hi - 1]
        size = self._offsets[-1]
        block = os.pread(fd, min(end + 4, size) - start, start)
        for k in range(lo, hi + 1):
            pos = self._offsets[k - 1] if k else 0
            if pos == 0 or pos == size:
                continue
            rel = pos - start
            if block[rel:rel + 4] != b"item":
                return None
        return block, start

    def _fix_index(self) -> None:
        if self._rebuild is None:
            raise CorruptFileError(
                LuaSyntaxError("the .lidx index does not match the list", b"", 0), self.path)
        offsets, self._rebuild = self._rebuild(), None
        if offsets != self._offsets:  # else the index was right and the list is damaged
            log.warning("%s: its index does not match the list where it was read; rebuilt",
                        self.path)
        self._offsets = offsets

    def _position(self, offset: int) -> int:
        """The number of the item that starts at byte ``offset`` (``len`` at the end).

        Used after a rebuild of the index, to go on where reading stopped; an
        offset that no longer starts an item means the list does not match
        what was already read from it.
        """
        if offset == 0:
            return 0
        k = bisect.bisect_left(self._offsets, offset)
        if k == len(self._offsets) or self._offsets[k] != offset:
            raise CorruptFileError(
                LuaSyntaxError("the list does not match its index", b"", 0), self.path)
        return k + 1

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        self._check_open()
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self._offsets))
            if step == 1:
                return list(self._iter_range(lo, hi))
            return [self[i] for i in range(lo, hi, step)]
        i = index.__index__()
        while True:
            n = len(self._offsets)
            k = i + n if i < 0 else i
            if not 0 <= k < n:
                raise IndexError("list index out of range")
            got = self._read_items(k, k + 1)
            if got is not None:
                block, base = got
                start, end = self._bounds(k)
                try:
                    return _parse_piece(block[start - base:end - base], self.path, self._fd,
                                        start)
                except _IndexMismatch:
                    pass
                except CorruptFileError:
                    if self._rebuild is None:
                        raise  # the index is the list's own: the list is damaged
            self._fix_index()

    def _iter_range(self, lo: int, hi: int) -> Iterator[Any]:
        i = lo
        whole = hi >= len(self._offsets)
        while i < min(hi, len(self._offsets)):
            hi = min(hi, len(self._offsets))
            block_start = self._bounds(i)[0]
            j = i + 1  # at least one item per block, as many as fit in _BLOCK
            while j < hi and self._offsets[j] - block_start <= _BLOCK:
                j += 1
            got = self._read_items(i, j)
            if got is not None:
                block, base = got
                try:
                    values = list(self._parse_block(block, base, i, j))
                except _IndexMismatch:
                    got = None
                except CorruptFileError:
                    if self._rebuild is None:
                        raise  # the index is the list's own: the list is damaged
                    got = None
            if got is None:
                # Rebuild, then go on from the same byte: items already
                # yielded were each checked to be exactly one statement.
                end = self._offsets[hi - 1]
                self._fix_index()
                i = self._position(block_start)
                hi = len(self._offsets) if whole else self._position(end)
                continue
            yield from values
            i = j

    def _parse_block(self, block: bytes, base: int, i: int, j: int) -> Iterator[Any]:
        """Items i..j-1 from ``block``: one parse of the whole run when its item
        ends agree with the index, else item by item (exact errors, ``item(nil)``)."""
        first = self._bounds(i)[0]
        run = block[first - base:self._offsets[j - 1] - base]
        try:
            parsed = list(iter_list_with_offsets(run))
        except LuaSyntaxError:
            parsed = None
        if parsed is not None and len(parsed) == j - i and all(
                first + end == self._offsets[k] for k, (end, _) in zip(range(i, j), parsed)):
            for _, value in parsed:
                yield value
            return
        for k in range(i, j):
            start, end = self._bounds(k)
            yield _parse_piece(block[start - base:end - base], self.path, self._fd, start)

    def __iter__(self) -> Iterator[Any]:
        return self._iter_range(0, len(self._offsets))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} items"
        return f"<ListView {self.path!r} {state}>"


# ---------------------------------------------------------------------------
# The store


class DataManager:
    """A Prosody ``data_path``, with ``util.datamanager``'s API.

    ``user`` and ``host`` may be None as in Prosody: host None is the
    ``_global`` directory, user None is the store file ``<host>/<store>.dat``.
    Names are ``str`` (UTF-8) or ``bytes``.  ``durable=False`` skips fsync
    (faster, still atomic).  ``write_index=False`` never writes a ``.lidx``
    when one is missing or stale (for read-only directories; a missing index
    is then built in memory), while appends still keep an existing index
    current.
    """

    def __init__(self, data_path: str | os.PathLike[str], *, durable: bool = True,
                 write_index: bool = True) -> None:
        self.data_path = os.path.abspath(os.fspath(data_path))
        self.durable = durable
        self.write_index = write_index

    def __repr__(self) -> str:
        return f"DataManager({self.data_path!r})"

    # -- paths -------------------------------------------------------------------

    def _host_dir(self, host: Name | None) -> str:
        return os.path.join(self.data_path, host_component(host))

    def _dir_and_name(self, user: Name | None, host: Name | None, store: Name,
                      ext: str) -> tuple[str, str]:
        if not isinstance(ext, str) or not _SAFE_EXT.match(ext):
            raise InvalidNameError(f"file extension must be letters and digits, not {ext!r}")
        host_dir = self._host_dir(host)
        if user is None:
            return host_dir, store_component(store, "." + ext)
        return os.path.join(host_dir, store_component(store)), user_component(user, "." + ext)

    def getpath(self, user: Name | None, host: Name | None, store: Name, ext: str = "dat",
                create: bool = False) -> str:
        """The path of a data file (current store-name spelling), as Prosody's ``getpath``.

        With ``create=True`` the directories are created.
        """
        directory, name = self._dir_and_name(user, host, store, ext)
        if create:
            self._make_dirs(directory)
        return os.path.join(directory, name)

    def host_directory(self, host: Name | None) -> str:
        """The directory of ``host``'s data (``_global`` for None); it may not exist."""
        return self._host_dir(host)

    def store_directory(self, host: Name | None, store: Name) -> str:
        """The directory that holds the users' files of ``store`` on ``host``."""
        return os.path.join(self._host_dir(host), store_component(store))

    def _make_dirs(self, directory: str) -> None:
        parts = os.path.relpath(directory, self.data_path).split(os.sep)
        os.makedirs(self.data_path, exist_ok=True)
        path = self.data_path
        for part in parts:
            path = os.path.join(path, part)
            _mkdir(path)

    def _legacy_path(self, user: Name | None, host: Name | None, store: Name,
                     ext: str) -> str | None:
        """The existing file in the 0.9/0.10 (unencoded) store spelling, if any."""
        raw = legacy_store_name(store)
        if raw is None:
            return None
        host_dir = self._host_dir(host)
        if user is None:
            return find_entry(host_dir, raw + b"." + ext.encode())
        store_dir = find_entry(host_dir, raw)
        if store_dir is None:
            return None
        path = os.path.join(store_dir, user_component(user, "." + ext))
        return path if _lexists(path) else None

    def _existing(self, user: Name | None, host: Name | None, store: Name,
                  ext: str) -> str | None:
        """Path of the file to read: the current spelling, else the legacy one."""
        path = os.path.join(*self._dir_and_name(user, host, store, ext))
        if _lexists(path):
            return path
        return self._legacy_path(user, host, store, ext)

    @contextlib.contextmanager
    def _write_lock(self, directory: str, create: bool) -> Iterator[bool]:
        """Lock ``directory`` (creating it if ``create``); yields False if it does not exist."""
        lock = _dir_lock(directory)
        try:
            lock.__enter__()
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                yield False
                return
            self._make_dirs(directory)  # only when missing: mkdir is a syscall per level
            lock = _dir_lock(directory)
            lock.__enter__()
        try:
            yield True
        except BaseException:
            if not lock.__exit__(*sys.exc_info()):
                raise
        else:
            lock.__exit__(None, None, None)

    def lock(self, user: Name | None, host: Name | None, store: Name, *,
             create: bool = False) -> ContextManager[bool]:
        """Hold the write lock of ``user``'s files in ``store``, for a read-modify-write.

        This is the lock every write of this library takes: an exclusive
        ``flock`` on the directory that holds the files (see *Locking* in the
        module documentation).  It is reentrant within a thread, so the
        methods of this class can be called inside.  The context value is
        True, or False when the directory does not exist and ``create`` is
        False: then nothing is locked, and there is no data to read.
        """
        directory, _name = self._dir_and_name(user, host, store, "dat")
        return self._write_lock(directory, create)

    @contextlib.contextmanager
    def locked_list(self, user: Name | None, host: Name | None,
                    store: Name) -> Iterator[tuple[str, int] | None]:
        """Under the store's lock: the existing list's path and an open read
        descriptor (closed on exit), or None if there is no list."""
        with self.lock(user, host, store) as exists:
            source = self._existing(user, host, store, "list") if exists else None
            try:
                fd = None if source is None else os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = None
            if source is None or fd is None:  # fd is None whenever source is
                yield None
                return
            try:
                yield source, fd
            finally:
                os.close(fd)

    def existing_path(self, user: Name | None, host: Name | None, store: Name,
                      ext: str = "dat") -> str | None:
        """The path of the file that holds the data, or None if there is none.

        The current store-name spelling if that file exists, else the 0.9/0.10
        spelling (which :meth:`getpath` never returns).  ``ext`` is "dat",
        "list" or "lidx".
        """
        return self._existing(user, host, store, ext)

    def exists(self, user: Name | None, host: Name | None, store: Name,
               ext: str = "dat") -> bool:
        """Whether there is a ``.<ext>`` file for ``user`` in ``store`` (either spelling)."""
        return self._existing(user, host, store, ext) is not None

    def file_size(self, user: Name | None, host: Name | None, store: Name,
                  ext: str = "dat") -> int | None:
        """The size in bytes of the file :meth:`existing_path` names; None if there is none."""
        path = self._existing(user, host, store, ext)
        if path is None:
            return None
        try:
            return os.stat(path).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    # -- keyval --------------------------------------------------------------------

    @_reports_storage_errors("read")
    def load(self, user: Name | None, host: Name | None, store: Name) -> Any:
        """The value stored for ``user``, or None if there is none."""
        path = self._existing(user, host, store, "dat")
        if not path:
            return None
        data = _read(path)
        if data is None:
            return None
        return self._parse_dat(data, path)

    @staticmethod
    def _parse_dat(data: bytes, path: str) -> Any:
        if not data.strip():
            return None  # an empty chunk returns nothing, as in Prosody
        try:
            return loads(data)
        except LuaSyntaxError as err:
            raise CorruptFileError(err, path) from None

    @_reports_storage_errors("write")
    def store(self, user: Name | None, host: Name | None, store: Name, data: Any) -> bool:
        """Replace the value stored for ``user``.  None or an empty table removes it.

        The value is serialized before anything is written, so a value Lua
        cannot hold raises (TypeError/ValueError) and leaves the file as it was.
        """
        payload = dump_dat({} if data is None else data)
        directory, name = self._dir_and_name(user, host, store, "dat")
        path = os.path.join(directory, name)
        with self._write_lock(directory, create=payload != _EMPTY_DAT) as exists:
            if exists:
                self._store_locked(user, host, store, path, payload)
        return True

    def _store_locked(self, user: Name | None, host: Name | None, store: Name, path: str,
                      payload: bytes) -> None:
        legacy = self._legacy_path(user, host, store, "dat")
        if payload == _EMPTY_DAT:
            removed = _remove(path) | _remove(legacy)
        else:
            atomic_write(path, (payload,), self.durable)
            removed = _remove(legacy)
        if removed and self.durable:
            _fsync_dir(os.path.dirname(path))
            if legacy:
                _fsync_dir(os.path.dirname(legacy))

    @_reports_storage_errors("write")
    def update(self, user: Name | None, host: Name | None, store: Name,
               fn: Callable[[Any], Any]) -> Any:
        """Read-modify-write under the lock: store ``fn(current value or None)`` and return it."""
        directory, name = self._dir_and_name(user, host, store, "dat")
        with self._write_lock(directory, create=True):
            new = fn(self.load(user, host, store))
            payload = dump_dat({} if new is None else new)
            self._store_locked(user, host, store, os.path.join(directory, name), payload)
        return new

    # -- lists -----------------------------------------------------------------------

    @_reports_storage_errors("read")
    def list_load(self, user: Name | None, host: Name | None, store: Name) -> list[Any] | None:
        """All items of a list, or None if there is no list."""
        path = self._existing(user, host, store, "list")
        if not path:
            return None
        data = _read(path)
        if data is None:
            return None
        try:
            return list(iter_list(data))
        except LuaSyntaxError as err:
            raise CorruptFileError(err, path) from None

    @_reports_storage_errors("write")
    def list_append(self, user: Name | None, host: Name | None, store: Name,
                    item: Any) -> bool | None:
        """Append one item.  As in Prosody, a None or False item is ignored (returns None)."""
        if item is None or item is False:
            return None
        line = dump_item(item)
        directory, name = self._dir_and_name(user, host, store, "list")
        path = os.path.join(directory, name)
        with self._write_lock(directory, create=True):
            self._adopt_legacy_list(user, host, store, path)
            start, end = self._append(path, line)
            self._index_append(lidx.index_path(path), start, end)
        return True

    def _seal_tail(self, fd: int, path: str) -> bytes:
        """Make the end of an existing list a place where a new item may start.

        Returns the bytes to write before the item: a line end when the last
        statement is whole but its line is not ended (``item(1);`` without a
        newline).  A last statement that does not parse (a writer crashed in
        the middle of it) is moved aside: its bytes are kept in a
        ``<list>.damaged-<UTC time>`` file beside the list (see
        :func:`damaged_copy_name`), then cut off the list, so the new item is
        never glued onto it.  A tail that changes while it is looked at
        belongs to a live writer that does not take our lock (Prosody): it is
        looked at again once it has settled.  Raises :class:`ListBusyError`
        if it never settles, :class:`CorruptFileError` if the damage is not
        only in the last statement (``verify --repair`` is then the tool).
        """
        for _ in range(_SETTLE_ROUNDS):
            st = os.fstat(fd)
            last = _last_statement_start(fd, st.st_size)
            keep, _ = _whole_statements_end(fd, st.st_size, last)
            if keep == st.st_size:
                end = os.pread(fd, 1, st.st_size - 1) if st.st_size else b"\n"
                return b"" if end == b"\n" else b"\n"
            time.sleep(_SETTLE_SECONDS)
            now = os.fstat(fd)
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                continue  # a live writer: look again
            # Read from the start: the last line that starts with "item" may
            # lie inside an unusual statement that began earlier.
            keep, err = _whole_statements_end(fd, st.st_size, 0)
            if err is None:
                return b"\n"  # it all parses after all; start the item on a line of its own
            if keep < last:
                raise CorruptFileError(err, path)  # damaged before its last statement
            self._move_tail_aside(fd, path, keep, st.st_size)
            return b""
        raise ListBusyError(errno.EBUSY, "the list kept changing (another writer is busy)", path)

    def _move_tail_aside(self, fd: int, path: str, keep: int, size: int) -> None:
        torn = _pread_exact(fd, size - keep, keep)
        copy = damaged_copy_name(path)
        atomic_write(copy, (torn,), self.durable)
        os.ftruncate(fd, keep)
        if self.durable:
            os.fdatasync(fd)
        log.warning("%s: moved an unfinished last item (%d bytes at offset %d) to %s",
                    path, len(torn), keep, copy)

    def _adopt_legacy_list(self, user: Name | None, host: Name | None, store: Name,
                           path: str) -> None:
        """Move a list that exists only in the unencoded store spelling to the current one."""
        if os.path.lexists(path):
            return
        legacy = self._legacy_path(user, host, store, "list")
        if legacy is None:
            return
        data = _read(legacy)
        if data is None:
            return
        atomic_write(path, (data,), self.durable)
        _remove(legacy)
        _remove(lidx.index_path(legacy))

    def _append(self, path: str, line: bytes) -> tuple[int, int]:
        """One ``write`` of ``line`` at the end of ``path`` (after :meth:`_seal_tail`);
        returns the item's (start, end) offsets."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o666)
        try:
            try:
                prefix = self._seal_tail(fd, path)
                data = prefix + line
                n = os.write(fd, data)
                end = os.lseek(fd, 0, os.SEEK_CUR)
                start = end - n + len(prefix)
                if n != len(data):
                    os.ftruncate(fd, end - n)  # never leave half an item behind
                    # A regular file takes fewer bytes only when there is no room.
                    raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (short write: "
                                                f"{n} of {len(data)} bytes)", path)
            except OSError:
                if os.fstat(fd).st_size == 0:  # a file this append created: leave none
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            if start == 0:
                _adopt_attributes(fd, None, os.path.dirname(path))
            if self.durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if start == 0 and self.durable:
            _fsync_dir(os.path.dirname(path))
        return start, end

    def _index_append(self, index_path: str, start: int, end: int) -> None:
        """Record a new item in the ``.lidx`` as Prosody 13 does, or drop a stale index."""
        if start == 0:
            atomic_write(index_path, (lidx.MAGIC_BYTES + lidx.entry(end),), durable=False)
            return
        try:
            fd = os.open(index_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return  # no index: list_open builds one when needed
        try:
            size = os.fstat(fd).st_size
            e = lidx.ENTRY_SIZE
            consistent = (size >= 2 * e and size % e == 0
                          and os.pread(fd, e, 0) == lidx.MAGIC_BYTES
                          and os.pread(fd, e, size - e) == lidx.entry(start))
            if consistent:
                entry = lidx.entry(end)
                if os.write(fd, entry) == len(entry):
                    return
        finally:
            os.close(fd)
        _remove(index_path)

    @_reports_storage_errors("write")
    def list_store(self, user: Name | None, host: Name | None, store: Name,
                   items: Sequence[Any] | None) -> bool:
        """Replace the whole list atomically and delete its ``.lidx``; an empty list removes it."""
        items = [] if items is None else list(items)
        if any(i is None for i in items):
            raise ValueError("a list item cannot be None (Lua lists cannot hold nil)")
        lines = [dump_item(i) for i in items]
        directory, name = self._dir_and_name(user, host, store, "list")
        path = os.path.join(directory, name)
        with self._write_lock(directory, create=bool(lines)) as exists:
            if exists:
                self._list_replace(user, host, store, path, lines, None)
        return True

    @_reports_storage_errors("write")
    def list_store_chunks(self, user: Name | None, host: Name | None, store: Name,
                          chunks: Iterable[bytes], offsets: Sequence[int] | None = None) -> None:
        """Replace a list with already serialised items, streamed into a temporary file.

        ``chunks`` are the bytes of the new ``.list`` (``item(...);\\n`` lines,
        as :func:`~prosody_store.serialization.dump_item` makes them), in
        pieces of any size.  ``offsets`` are the items' end offsets, read only
        after ``chunks`` is exhausted (a generator may fill it as it goes);
        with them a fresh ``.lidx`` is written, without them the old one is
        just removed.  Under the store's lock, the file is written, fsync'ed,
        renamed over the list and the directory fsync'ed; if ``chunks``
        raises, the old list and index are left as they were.  No bytes at
        all removes the list.  The bytes are not checked: they must be valid
        list items, and ``offsets`` must match them.
        """
        path = self.getpath(user, host, store, "list")
        with self._write_lock(os.path.dirname(path), create=True):
            self._list_replace(user, host, store, path, chunks, offsets)

    @_reports_storage_errors("write")
    def list_store_stream(self, user: Name | None, host: Name | None, store: Name,
                          items: Iterable[Any]) -> int:
        """Replace a list with ``items``, serialised one by one into a temporary file.

        As :meth:`list_store` (an item that cannot be serialised raises and
        changes nothing; no items removes the list), but ``items`` may be any
        iterable, never held in memory, and the fresh ``.lidx`` is written.
        Returns the number of items.
        """
        it = iter(items)
        first = next(it, _END)
        if first is _END:
            self.list_store(user, host, store, [])
            return 0
        offsets = lidx.new_offsets()
        self.list_store_chunks(user, host, store, _item_chunks(first, it, offsets), offsets)
        return len(offsets)

    def _list_replace(self, user: Name | None, host: Name | None, store: Name, path: str,
                      chunks: Iterable[bytes], offsets: Sequence[int] | None) -> None:
        """Replace a list (under the lock).  Empty ``chunks`` (or no bytes) removes it.

        The old list and its ``.lidx`` stay untouched until every chunk is
        written, so a chunk iterator that fails half-way changes nothing.
        Then the old ``.lidx`` is removed before the list is renamed into
        place, so no crash can pair the new list with the old index.  With
        ``offsets`` (read only after ``chunks`` is exhausted), a new index is
        written afterwards.
        """
        index_path = lidx.index_path(path)
        legacy = self._legacy_path(user, host, store, "list")
        tmp = None
        if not (isinstance(chunks, list) and not chunks):
            tmp = _write_temp(path, chunks, self.durable)
            if os.stat(tmp).st_size == 0:
                os.unlink(tmp)
                tmp = None
        try:
            _remove(index_path)
            if tmp is None:
                _remove(path)
            else:
                os.rename(tmp, path)
        except BaseException:
            if tmp is not None:
                _discard(tmp)
            raise
        if tmp is not None and offsets is not None and self.write_index:
            atomic_write(index_path, (lidx.encode_index(offsets),), durable=False)
        if legacy:
            _remove(legacy)
            _remove(lidx.index_path(legacy))
        if self.durable:
            _fsync_dir(os.path.dirname(path))

    @_reports_storage_errors("write")
    def list_shift(self, user: Name | None, host: Name | None, store: Name,
                   trim_to: int) -> bool:
        """Drop items 1 .. trim_to-1 (1-based, as Prosody 13): item ``trim_to`` becomes the first.

        ``trim_to`` 1 changes nothing; ``trim_to`` beyond the last item removes
        the list.  The remaining bytes are copied unchanged; the list and a
        recomputed ``.lidx`` are rewritten atomically.  A missing list is left
        missing (returns True).
        """
        if isinstance(trim_to, bool) or not isinstance(trim_to, int) or trim_to < 1:
            raise ValueError(f"trim_to must be an integer >= 1, not {trim_to!r}")
        if trim_to == 1:
            return True
        path = self.getpath(user, host, store, "list")
        with self.locked_list(user, host, store) as opened:
            if opened is None:
                return True
            source, fd = opened
            offsets = self._offsets(fd, source, write=False)
            if trim_to > len(offsets):
                self._list_replace(user, host, store, path, [], None)
                return True
            cut = offsets[trim_to - 2]
            kept = array(offsets.typecode, (o - cut for o in offsets[trim_to - 1:]))
            tail = _copy_ranges(fd, [(cut, offsets[-1])], source)
            self._list_replace(user, host, store, path, tail, kept)
        return True

    @_reports_storage_errors("write")
    def list_filter(self, user: Name | None, host: Name | None, store: Name,
                    keep: Callable[[Any], bool], *, dry_run: bool = False,
                    ) -> ListFilterResult | None:
        """Rewrite a list with only the items for which ``keep(item)`` is true.

        Under the store's lock, the items are read one by one with their byte
        offsets; if any is dropped (and not ``dry_run``), the bytes of the kept
        items are copied unchanged into a temporary file that replaces the
        list, with a fresh ``.lidx`` (a list that keeps nothing is removed).
        The list is never held in memory.  None if there is no list; raises
        :class:`CorruptFileError` (changing nothing) on a damaged list.
        """
        path = self.getpath(user, host, store, "list")
        with self.locked_list(user, host, store) as opened:
            if opened is None:
                return None
            source, fd = opened
            with os.fdopen(fd, "rb", closefd=False) as f:
                result = ListFilterResult(source)
                ranges, offsets = self._kept_ranges(f, source, keep, result)
                if dry_run or not result.dropped:
                    return result
                chunks = _copy_ranges(f.fileno(), ranges, source) if result.kept else []
                self._list_replace(user, host, store, path, chunks, offsets)
        return result

    @staticmethod
    def _kept_ranges(f: IO[bytes], source: str, keep: Callable[[Any], bool],
                     result: ListFilterResult) -> tuple[list[tuple[int, int]], array[int]]:
        """Byte ranges of the kept items (adjacent ones merged) and their new end offsets."""
        ranges: list[tuple[int, int]] = []
        offsets = lidx.new_offsets()
        start = size = 0
        try:
            for end, item in iter_list_with_offsets(f):
                if not keep(item):
                    result.dropped += 1
                else:
                    result.kept += 1
                    size += end - start
                    offsets.append(size)
                    if ranges and ranges[-1][1] == start:
                        ranges[-1] = (ranges[-1][0], end)
                    else:
                        ranges.append((start, end))
                start = end
        except LuaSyntaxError as err:
            raise CorruptFileError(err, source) from None
        return ranges, offsets

    @_reports_storage_errors("write")
    def list_reindex(self, user: Name | None, host: Name | None, store: Name) -> bool | None:
        """Rebuild a list's ``.lidx`` from the list, under the store's lock.

        Returns True if the index was written, False if it was already right,
        None if there is no list.  Writes even with ``write_index=False``:
        asking for it is the point.
        """
        with self.locked_list(user, host, store) as opened:
            if opened is None:
                return None
            source, fd = opened
            data = lidx.encode_index(lidx.build_offsets(fd))
            index = lidx.index_path(source)
            if _read(index) == data:
                return False
            atomic_write(index, (data,), durable=False)
            return True

    @_reports_storage_errors("read")
    def list_index_problem(self, user: Name | None, host: Name | None,
                           store: Name) -> str | None:
        """What is wrong with a list's ``.lidx``, or None when it matches the
        list entry for entry (or there is no list, or no index: Prosody
        before 13 keeps none).  Reads the whole list; :meth:`list_reindex`
        fixes what this finds."""
        path = self._existing(user, host, store, "list")
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            offsets, why = lidx.load_index(lidx.index_path(path), os.fstat(fd).st_size)
            if why == lidx.MISSING:
                return None
            if offsets is None:
                return why
            actual = lidx.build_offsets(fd)
        finally:
            os.close(fd)
        if offsets == actual:
            return None
        for k, (ours, theirs) in enumerate(zip(offsets, actual)):
            if ours != theirs:
                return f"entry {k + 1} ends at byte {ours}, the item there at byte {theirs}"
        return f"{len(offsets)} entries for {len(actual)} items"

    def _offsets(self, fd: int, path: str, write: bool) -> array[int]:
        """The item end offsets of an open list: its ``.lidx`` if it fits, else rebuilt.

        A stale index (the list changed since) is routine where a writer keeps
        no index (Prosody before 13); a damaged one is logged as a warning.
        """
        index = lidx.index_path(path)
        offsets, why = lidx.load_index(index, os.fstat(fd).st_size)
        if offsets is not None:
            return offsets
        if why not in (lidx.MISSING, lidx.STALE):
            log.warning("%s: %s; rebuilt from the list", index, why)
        return self._rebuild_index(fd, path, write)

    def _rebuild_index(self, fd: int, path: str, write: bool) -> array[int]:
        """Scan the list for its items; write the index (with ``write`` and ``write_index``).

        The index is written under the lock, and only if the file is still the
        one that was scanned.
        """
        st = os.fstat(fd)
        offsets = lidx.build_offsets(fd)
        if write and self.write_index:
            with contextlib.suppress(OSError):
                with _dir_lock(os.path.dirname(path)):
                    now = os.stat(path)
                    if (now.st_ino, now.st_dev, now.st_size) == (st.st_ino, st.st_dev, st.st_size):
                        atomic_write(lidx.index_path(path),
                                      (lidx.encode_index(offsets),), durable=False)
        return offsets

    @_reports_storage_errors("read")
    def list_open(self, user: Name | None, host: Name | None, store: Name) -> ListView:
        """A lazy :class:`ListView` of the list; an empty one, whose ``exists``
        is False, if there is none (so ``with dm.list_open(...) as view`` works
        in every case).

        Uses the ``.lidx`` if it matches the list; otherwise builds the index
        (as Prosody 13 does) and writes it unless ``write_index`` is False.
        """
        path = self._existing(user, host, store, "list")
        if path is None:
            return ListView.missing(self.getpath(user, host, store, "list"))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return ListView.missing(path)
        try:
            offsets = self._offsets(fd, path, write=True)
        except BaseException:
            os.close(fd)
            raise
        return ListView(fd, path, offsets, lambda: self._rebuild_index(fd, path, True))

    @_reports_storage_errors("read")
    def list_recover(self, user: Name | None, host: Name | None, store: Name, *,
                     repair: bool = False) -> ListRecovery | None:
        """Read what can be read from a damaged list; report the damaged byte ranges.

        The list is read statement by statement, in every layout the reader
        takes (several items on a line, indented ones, comments); a statement
        that does not read starts a damaged region, which runs to the next
        line whose first token is ``item``, where reading resumes
        (:func:`~prosody_store.serialization.list_pieces`).  A list that reads
        has every item and no damaged region.

        With ``repair=True`` (under the lock) a damaged list is rewritten with
        the bytes of its readable items only, and its ``.lidx`` removed, but
        only when Lua itself refuses the list (then Prosody reads none of it,
        and a repair drops nothing Prosody would read).  Where the first
        damage may be Lua code that Prosody would run (``item(1+1)``, a
        variable), the list is left alone and ``repaired`` stays False.
        None if there is no list.
        """
        from prosody_store.serialization import could_be_lua, list_pieces

        directory, name = self._dir_and_name(user, host, store, "list")
        lock = self._write_lock(directory, create=False) if repair else contextlib.nullcontext()
        with lock:
            path = self._existing(user, host, store, "list")
            if not path:
                return None
            data = _read(path)
            if data is None:
                return None
            result = ListRecovery(path)
            runs: list[tuple[int, int]] = []  # byte ranges of consecutive readable items
            for piece in list_pieces(data):
                if piece.error is not None:
                    result.damaged.append(DamagedRegion(
                        piece.start, piece.end, CorruptFileError(piece.error, path)))
                    continue
                result.items.append(piece.value)
                if runs and runs[-1][1] == piece.start:
                    runs[-1] = (runs[-1][0], piece.end)
                else:
                    runs.append((piece.start, piece.end))
            good = [data[a:b] if data[a:b].endswith(b"\n") else data[a:b] + b"\n" for a, b in runs]
            if repair and result.damaged and (result.damaged[0].error.lua_refuses
                                              or not could_be_lua(data)):
                target = os.path.join(directory, name)
                self._list_replace(user, host, store, target, good or [], None)
                result.repaired = True
        return result

    # -- listings --------------------------------------------------------------------

    def _store_dirs(self, host: Name | None, store: Name) -> list[str]:
        host_dir = self._host_dir(host)
        dirs = [os.path.join(host_dir, store_component(store))]
        raw = legacy_store_name(store)
        if raw is not None:
            try:
                legacy = find_entry(host_dir, raw)
            except OSError as err:
                raise _storage_error(err, host_dir, "list") from None
            if legacy is not None:
                dirs.append(legacy)
        return dirs

    @staticmethod
    def _listdir(directory: str) -> list[bytes]:
        """The sorted entries of a directory; none if it does not exist.  Any
        other failure (permission denied, not a directory) is a StorageError:
        a directory that cannot be read is not an empty one."""
        try:
            return sorted(os.listdir(os.fsencode(directory)))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise _storage_error(err, directory, "list") from None

    def users(self, host: Name | None, store: Name, typ: str = "keyval") -> Iterator[Name]:
        """The users that have data in a store (``typ`` "keyval", "list" or an extension).

        Both store-name spellings are searched; each user is yielded once.
        """
        suffix = ("." + _TYPE_EXT.get(typ, typ)).encode()
        seen: set[Name] = set()
        for directory in self._store_dirs(host, store):
            for entry in self._listdir(directory):
                if entry.endswith(suffix) and not entry.startswith(TEMP_PREFIX.encode()):
                    user = decode(entry[:-len(suffix)])
                    if user not in seen:
                        seen.add(user)
                        yield user

    def stores(self, user: Name | bool | None, host: Name | None,
               typ: str = "keyval") -> Iterator[Name]:
        """The stores of a host, as Prosody's ``stores``.

        ``user`` True: every store directory.  A user name: the stores where
        that user has data of type ``typ``.  None: the stores without user
        (``<host>/<store>.dat`` or ``.list``).  Both spellings, each name once.
        """
        ext = _TYPE_EXT.get(typ, typ)
        if not _SAFE_EXT.match(ext):
            raise InvalidNameError(f"unknown store type {typ!r}")
        host_dir = self._host_dir(host)
        user_file = None
        if user is not None and user is not True:
            user_file = user_component(cast(Name, user), "." + ext)  # False is refused there
        file_re = re.compile(rb"(.*)\.(" + re.escape(ext.encode()) + rb")\Z", re.S)
        seen: set[Name] = set()
        for entry in self._listdir(host_dir):
            if entry.startswith(b"."):
                continue
            path = os.path.join(host_dir, os.fsdecode(entry))
            if user is None:
                m = file_re.match(entry)
                if not m or not _is_file(path):
                    continue
                name = decode(m.group(1))
            elif not _is_dir(path):
                continue
            elif user_file is not None and not _lexists(os.path.join(path, user_file)):
                continue
            else:
                name = decode(entry)
            if name not in seen:
                seen.add(name)
                yield name

    def hosts(self) -> list[Name | None]:
        """The hosts of the data directory (None for ``_global``), sorted by :func:`name_sort_key`.

        A data directory that does not exist has no hosts; one that cannot be
        read raises :class:`~prosody_store.errors.StorageError`.
        """
        hosts = []
        for entry in self._listdir(self.data_path):
            if entry.startswith(b".") or not _is_dir(
                    os.path.join(os.fsencode(self.data_path), entry)):
                continue
            hosts.append(None if entry == GLOBAL_HOST.encode() else decode(entry))
        return sorted(hosts, key=name_sort_key)

    def store_names(self, host: Name | None) -> list[Name]:
        """Every store of a host, with or without users, of either type, sorted."""
        names = set(self.stores(True, host))
        names.update(self.stores(None, host, "keyval"))
        names.update(self.stores(None, host, "list"))
        return sorted(names, key=name_sort_key)

    def iter_files(self, hosts: Iterable[Name | None] | None = None,
                   stores: Iterable[Name] | None = None) -> Iterator[StoreFile]:
        """Every ``.dat`` and ``.list`` of the data directory, optionally of some hosts and stores.

        Order: host, store, user (each by :func:`name_sort_key`, so the file
        without user comes first), keyval before list.  Stores are matched by
        their bytes; temporary files and ``.lidx`` files are not listed.
        """
        wanted = None if stores is None else {name_bytes(s) for s in stores}
        host_list = self.hosts() if hosts is None else sorted(set(hosts), key=name_sort_key)
        for host in host_list:
            userless = {typ: set(self.stores(None, host, typ)) for typ in ("keyval", "list")}
            for store in self.store_names(host):
                if wanted is None or name_bytes(store) in wanted:
                    yield from self._store_files(host, store, userless)

    def _store_files(self, host: Name | None, store: Name,
                     userless: dict[str, set[Name]]) -> Iterator[StoreFile]:
        types: dict[Name | None, list[str]] = {}
        user: Name | None
        for typ in ("keyval", "list"):
            if store in userless[typ]:
                types.setdefault(None, []).append(typ)
            for user in self.users(host, store, typ):
                types.setdefault(user, []).append(typ)
        for user in sorted(types, key=name_sort_key):
            for typ in types[user]:
                yield StoreFile(host, store, user, typ)

    @_reports_storage_errors("remove")
    def purge(self, user: Name, host: Name | None) -> bool:
        """Remove every file of ``user`` on ``host`` (all stores, both spellings, indexes too)."""
        if user is None:
            raise InvalidNameError("purge needs a user name")
        host_dir = self._host_dir(host)
        names = [user_component(user, "." + ext) for ext in ("dat", "list", "lidx")]
        for entry in self._listdir(host_dir):
            directory = os.path.join(host_dir, os.fsdecode(entry))
            if entry.startswith(b".") or not os.path.isdir(directory):
                continue
            with self._write_lock(directory, create=False):
                removed = [_remove(os.path.join(directory, n)) for n in names]
                if any(removed) and self.durable:
                    _fsync_dir(directory)
        return True

    @_reports_storage_errors("remove")
    def remove_temp_files(self, older_than: float = 3600.0) -> list[str]:
        """Delete temporary files left by killed writers, older than ``older_than`` seconds."""
        removed = []
        limit = time.time() - older_than
        for root, _dirs, files in os.walk(self.data_path):
            for name in files:
                if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                    path = os.path.join(root, name)
                    with contextlib.suppress(FileNotFoundError):
                        if os.lstat(path).st_mtime <= limit:
                            os.unlink(path)
                            removed.append(path)
        return removed

    # -- views -----------------------------------------------------------------------

    def keyval(self, host: Name | None, store: Name) -> "KeyvalView":
        """A ``MutableMapping`` of user -> value for one keyval store."""
        return KeyvalView(self, host, store)

    def lists(self, host: Name | None, store: Name) -> "ListsView":
        """A ``MutableMapping`` of user -> lazy :class:`ListView` for one list store."""
        return ListsView(self, host, store)


class KeyvalView(MutableMapping[Name, Any]):
    """User -> value of one keyval store.

    Setting an empty dict or list removes the user, as Prosody does, so
    ``view[u] = {}`` is followed by ``u not in view``.  :meth:`modify` is a
    locked read-modify-write.  Iteration order is the sorted encoded file name.
    """

    def __init__(self, dm: DataManager, host: Name | None, store: Name) -> None:
        self.dm, self.host, self.store = dm, host, store

    def __getitem__(self, user: Name) -> Any:
        value = self.dm.load(user, self.host, self.store)
        if value is None:
            raise KeyError(user)
        return value

    def __setitem__(self, user: Name, value: Any) -> None:
        if value is None:
            raise ValueError("use del to remove a user")
        self.dm.store(user, self.host, self.store, value)

    def __delitem__(self, user: Name) -> None:
        if not self.dm.exists(user, self.host, self.store, "dat"):
            raise KeyError(user)
        self.dm.store(user, self.host, self.store, None)

    def __contains__(self, user: object) -> bool:
        try:
            # Not a name: exists() raises TypeError (or StoreError).
            return self.dm.exists(cast(Name, user), self.host, self.store, "dat")
        except (StoreError, TypeError):
            return False

    def __iter__(self) -> Iterator[Name]:
        return self.dm.users(self.host, self.store, "keyval")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def modify(self, user: Name, fn: Callable[[Any], Any]) -> Any:
        """Store ``fn(current value or None)`` under the lock; return it."""
        return self.dm.update(user, self.host, self.store, fn)


class ListsView(MutableMapping[Name, ListView]):
    """User -> lazy :class:`ListView` of one list store.

    ``view[u]`` opens the list (close the returned view, or use ``with``);
    ``view[u] = items`` replaces it (``list_store``), ``del view[u]`` removes
    it and :meth:`append` adds one item.
    """

    def __init__(self, dm: DataManager, host: Name | None, store: Name) -> None:
        self.dm, self.host, self.store = dm, host, store

    def __getitem__(self, user: Name) -> ListView:
        view = self.dm.list_open(user, self.host, self.store)
        if not view.exists:
            raise KeyError(user)
        return view

    def __setitem__(self, user: Name, items: Sequence[Any]) -> None:
        self.dm.list_store(user, self.host, self.store, items)

    def __delitem__(self, user: Name) -> None:
        if user not in self:
            raise KeyError(user)
        self.dm.list_store(user, self.host, self.store, [])

    def __contains__(self, user: object) -> bool:
        try:
            # Not a name: exists() raises TypeError (or StoreError).
            return self.dm.exists(cast(Name, user), self.host, self.store, "list")
        except (StoreError, TypeError):
            return False

    def __iter__(self) -> Iterator[Name]:
        return self.dm.users(self.host, self.store, "list")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def append(self, user: Name, item: Any) -> None:
        self.dm.list_append(user, self.host, self.store, item)

    def load(self, user: Name) -> list[Any]:
        """The whole list as a Python list (KeyError if missing)."""
        items = self.dm.list_load(user, self.host, self.store)
        if items is None:
            raise KeyError(user)
        return items

