"""Migration between a Prosody data directory and ``mod_storage_sql``'s tables.

:func:`migrate_to_sql` and :func:`migrate_from_sql` (see :mod:`prosody_store.sql`
for what they do): they read and write the directory through
:class:`~prosody_store.datamanager.DataManager`, the database through
:mod:`prosody_store.sql.db`, and encode with :mod:`prosody_store.sql.values`.
A dry run uses the same code with stand-ins that write nothing
(:class:`~prosody_store.sql.db.DryRun`, :class:`DryRunDirectory`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from prosody_store.datamanager import DataManager
from prosody_store.paths import GLOBAL_HOST, Name, StoreError
from prosody_store.serialization import LuaSyntaxError
from prosody_store.sql.db import TABLES, Database, DryRun, connect
from prosody_store.sql.values import (
    MigrationError,
    decode_archive_row,
    decode_keyval,
    encode_archive_item,
    encode_keyval,
)
from prosody_store.stanza import StanzaError

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "Directory",
    "DryRunDirectory",
    "Progress",
    "Report",
    "migrate_from_sql",
    "migrate_to_sql",
    "scan",
]

DEFAULT_BATCH_ROWS = 20000

ARCHIVE_BATCH_ROWS = 2000
"""Archive rows sent to the database at a time."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: bytes of source files (to SQL) or rows (from SQL)."""


@dataclass
class Report:
    """What a migration did (or, with ``dry_run``, would do)."""

    files: int = 0
    keyval_rows: int = 0
    archive_rows: int = 0
    stores: dict[tuple[Any, Any, str], int] = field(default_factory=dict)
    """(host, store, "keyval" | "archive") -> number of users."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(where, message) for every file or store that was skipped."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Data left out on purpose, e.g. the ``_global`` directory."""
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.keyval_rows + self.archive_rows

    @property
    def ok(self) -> bool:
        return not self.errors

    def count_store(self, host: Any, store: Any, kind: str) -> None:
        """One more file (one user's store) migrated."""
        self.files += 1
        k = (host, store, kind)
        self.stores[k] = self.stores.get(k, 0) + 1


# ---------------------------------------------------------------------------
# Directory -> SQL


@dataclass
class _Entry:
    host: Any
    store: Any
    user: Any  # None: the store without user
    kind: str  # "keyval" | "archive"
    size: int


def _size(dm: DataManager, user: Any, host: Any, store: Any, ext: str) -> int:
    try:
        return dm.file_size(user, host, store, ext) or 0
    except OSError:
        return 0


_KINDS = {"keyval": ("keyval", "dat"), "list": ("archive", "list")}


def scan(dm: DataManager, hosts: list[Name] | None = None, stores: list[Name] | None = None,
         report: Report | None = None) -> list[_Entry]:
    """Every keyval file and archive of the data directory (filtered), with its size.

    The files are those of :meth:`DataManager.iter_files`, in its order.
    """
    if not os.path.exists(dm.data_path):
        raise StoreError(f"data directory {dm.data_path} does not exist")
    wanted_hosts = set(hosts) if hosts else None
    wanted_stores = set(stores) if stores else None
    all_hosts = dm.hosts()
    host_list = [h for h in all_hosts
                 if h is not None and (wanted_hosts is None or h in wanted_hosts)]
    if report is not None and wanted_hosts is None and None in all_hosts:
        report.skipped.append((GLOBAL_HOST, "data without host (_global) has no place in "
                               "Prosody's SQL storage"))
    entries: list[_Entry] = []
    for f in dm.iter_files(host_list, stores if wanted_stores else None):
        if wanted_stores is not None and f.store not in wanted_stores:
            continue
        kind, ext = _KINDS[f.type]
        size = _size(dm, f.user, f.host, f.store, ext)
        entries.append(_Entry(f.host, f.store, f.user, kind, size))
    return entries


def _where_text(e: _Entry) -> str:
    user = "" if e.user is None else f"{e.user}@"
    return f"{user}{e.host} store {e.store} ({e.kind})"


_FILE_ERRORS = (MigrationError, LuaSyntaxError, StanzaError, StoreError, TypeError, ValueError)
"""What makes one file fail (reported, the rest migrated)."""


def migrate_to_sql(data_path: str | os.PathLike[str], url: str, *,
                   hosts: list[Name] | None = None, stores: list[Name] | None = None,
                   dry_run: bool = False,
                   batch_rows: int = DEFAULT_BATCH_ROWS, progress: Progress | None = None,
                   ) -> Report:
    """Copy a Prosody data directory into ``mod_storage_sql``'s tables at ``url``.

    ``hosts``/``stores`` limit what is copied (default: everything).  With
    ``dry_run`` every file is read and encoded but the database is not touched
    (not even connected to).  ``progress(done_bytes, total_bytes)`` is called
    as files are done.  Returns a :class:`Report`; files that could not be
    migrated are in ``report.errors`` (the rest is migrated).
    """
    started = time.monotonic()
    report = Report()
    dm = DataManager(data_path, durable=False, write_index=False)
    entries = scan(dm, hosts, stores, report)
    total = sum(e.size for e in entries)
    db = DryRun() if dry_run else connect(url)
    try:
        db.create_tables()
        fresh = {t: db.is_empty(t) for t in TABLES}
        done = 0
        pending = 0
        for e in entries:
            pending += _file_to_sql(dm, db, e, fresh, report)
            done += e.size
            if pending >= batch_rows:
                db.commit()
                pending = 0
            if progress is not None:
                progress(done, total)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()
    report.seconds = time.monotonic() - started
    return report


def _file_to_sql(dm: DataManager, db: Database | DryRun, e: _Entry, fresh: dict[str, bool],
                 report: Report) -> int:
    """Write one file's rows and count them in ``report``; the number of rows written."""
    try:
        if e.kind == "keyval":
            n = _keyval_to_sql(dm, db, e, fresh)
            report.keyval_rows += n
        else:
            n = _archive_to_sql(dm, db, e, fresh)
            report.archive_rows += n
    except _FILE_ERRORS as err:
        report.errors.append((_where_text(e), str(err)))
        return 0
    report.count_store(e.host, e.store, e.kind)
    return n


def _names(db: Database | DryRun, e: _Entry) -> tuple[Any, Any, Any]:
    """(host, user, store) of a file as the database takes them."""
    return db.text(e.host), db.text("" if e.user is None else e.user), db.text(e.store)


def _keyval_to_sql(dm: DataManager, db: Database | DryRun, e: _Entry,
                   fresh: dict[str, bool]) -> int:
    value = dm.load(e.user, e.host, e.store)
    if value is None:
        return 0
    text = db.text
    h, u, s = _names(db, e)
    rows = [(h, u, s, text(k), t, text(v)) for k, t, v in encode_keyval(value)]
    if not fresh["prosody"]:
        db.delete_store("prosody", h, u, s)
    if rows:
        db.insert_keyval(rows)
    return len(rows)


def _archive_to_sql(dm: DataManager, db: Database | DryRun, e: _Entry,
                    fresh: dict[str, bool]) -> int:
    """Replace one archive's rows, within a savepoint; the number of items."""
    view = dm.list_open(e.user, e.host, e.store)
    if view is None:
        return 0
    try:
        names = _names(db, e)
        default_when = int(view.stat().st_mtime)
        db.savepoint()
        try:
            if not fresh["prosodyarchive"]:
                db.delete_store("prosodyarchive", *names)
            count = _insert_archive(db, names, view, default_when)
        except BaseException:
            db.rollback_savepoint()
            raise
        db.release_savepoint()
        return count
    finally:
        view.close()


def _insert_archive(db: Database | DryRun, names: tuple[Any, Any, Any], items: Iterable[Any],
                    default_when: int) -> int:
    """Insert the rows of an archive's items, in batches; the number of distinct keys."""
    text = db.text
    h, u, s = names
    seen: set[Any] = set()
    batch: list[tuple[Any, ...]] = []
    count = 0
    for i, item in enumerate(items, 1):
        key, when, with_, t, xml = encode_archive_item(item, i, default_when)
        key = text(key)
        if key in seen:
            # Prosody's append replaces an item with the same key: the later wins.
            if batch:
                db.insert_archive(batch)
                batch = []
            db.delete_archive_key(h, u, s, key)
            count -= 1
        seen.add(key)
        batch.append((h, u, s, key, db.archive_when(when), text(with_), t, text(xml)))
        count += 1
        if len(batch) >= ARCHIVE_BATCH_ROWS:
            db.insert_archive(batch)
            batch = []
    if batch:
        db.insert_archive(batch)
    return count


# ---------------------------------------------------------------------------
# SQL -> directory


class Directory:
    """The data directory :func:`migrate_from_sql` writes, through a DataManager.

    Without ``dm.durable`` files are written without fsync, and :meth:`sync`
    then fsyncs exactly the files and directories written, once, at the end.
    """

    def __init__(self, dm: DataManager) -> None:
        self.dm = dm
        self.files: set[str] = set()
        self.directories: set[str] = set()

    def prepare(self) -> None:
        """Create the data directory if it is missing (and remember what to sync)."""
        missing = []
        path = self.dm.data_path
        while not os.path.exists(path):
            missing.append(path)
            path = os.path.dirname(path)
        os.makedirs(self.dm.data_path, exist_ok=True)
        if missing:
            self.directories.update(missing)
            self.directories.add(os.path.dirname(missing[-1]))

    def store(self, user: Any, host: Any, store: Any, value: Any) -> None:
        self._will_write(user, host, store, "dat")
        self.dm.store(user, host, store, value)

    def list_store(self, user: Any, host: Any, store: Any, items: list[Any]) -> None:
        self._will_write(user, host, store, "list")
        self.dm.list_store(user, host, store, items)

    def _will_write(self, user: Any, host: Any, store: Any, ext: str) -> None:
        """Remember the file (and any 0.9/0.10 spelling it replaces) for :meth:`sync`."""
        if self.dm.durable:
            return
        path = self.dm.getpath(user, host, store, ext)
        self.files.add(path)
        old = self.dm.existing_path(user, host, store, ext)
        if old is not None and old != path:
            self.directories.add(os.path.dirname(old))
        self.directories.update(self._parents(os.path.dirname(path)))

    def _parents(self, directory: str) -> Iterator[str]:
        """``directory`` and those above it, up to the data directory."""
        path = self.dm.data_path
        yield path
        for part in os.path.relpath(directory, path).split(os.sep):
            if part != os.curdir:
                path = os.path.join(path, part)
                yield path

    def sync(self) -> None:
        """Make what was written durable: fsync each file, then each directory."""
        for path in sorted(self.files):
            _fsync(path, os.O_RDONLY)
        for path in sorted(self.directories):
            _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: str, flags: int) -> None:
    """fsync one file or directory; one that no longer exists needs none."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DryRunDirectory:
    """:class:`Directory` for a dry run: writes nothing."""

    def prepare(self) -> None:
        pass

    def store(self, user: Any, host: Any, store: Any, value: Any) -> None:
        pass

    def list_store(self, user: Any, host: Any, store: Any, items: list[Any]) -> None:
        pass

    def sync(self) -> None:
        pass


def _group(rows: Iterator[tuple[Any, ...]], width: int
           ) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    current: tuple[Any, ...] = ()  # () rather than None: a tuple, and no row's (host, user, store)
    group: list[tuple[Any, ...]] = []
    for row in rows:
        k = row[:3]
        if k != current:
            if group:
                yield current, group
            current, group = k, []
        group.append(row[3:3 + width])
    if group:
        yield current, group


def _name(v: Any) -> Any:
    if isinstance(v, (bytes, memoryview)):
        v = bytes(v)
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    return v


def _decode_archive(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [decode_archive_row(_name(k), w, _name(wi), t, _name(v)) for k, w, wi, t, v in rows]


_RESTORE_ERRORS = (MigrationError, StanzaError, StoreError, ValueError, TypeError,
                   OverflowError, OSError)
"""What makes one store fail (reported, the rest written)."""


def migrate_from_sql(url: str, data_path: str | os.PathLike[str], *,
                     hosts: list[Name] | None = None, stores: list[Name] | None = None,
                     dry_run: bool = False,
                     progress: Progress | None = None, durable: bool = False) -> Report:
    """Write the stores in ``mod_storage_sql``'s tables at ``url`` into a data directory.

    Each (host, user, store) replaces the corresponding file; files of stores
    not in the database are left alone.  With ``dry_run`` the values are read
    and decoded but nothing is written.  ``progress(done_rows, total_rows)``.
    Without ``durable`` files are not fsync'ed one by one; the files and
    directories written are fsync'ed once at the end.
    """
    started = time.monotonic()
    report = Report()
    db = connect(url)
    dm = DataManager(data_path, durable=durable)
    target = DryRunDirectory() if dry_run else Directory(dm)
    target.prepare()
    try:
        existing = db.table_names()
        tables = [t for t in TABLES if t in existing]
        restorer = _Restorer(report, target, sum(db.count(t, hosts, stores) for t in tables),
                             progress)
        if "prosody" in tables:
            restorer.restore(_group(db.keyval_rows(hosts, stores), 3), "keyval")
        if "prosodyarchive" in tables:
            restorer.restore(_group(db.archive_rows(hosts, stores), 5), "archive")
        db.rollback()
    finally:
        db.close()
    target.sync()
    report.seconds = time.monotonic() - started
    return report


class _Restorer:
    """Decodes each user's store from its rows, writes it, and counts it in the report."""

    def __init__(self, report: Report, target: Directory | DryRunDirectory, total: int,
                 progress: Progress | None) -> None:
        self.report = report
        self.target = target
        self.total = total
        self.done = 0
        self.progress = progress

    def restore(self, groups: Iterable[tuple[tuple[Any, ...], list[tuple[Any, ...]]]],
                kind: str) -> None:
        """``groups``: ((host, user, store), rows) of one table; ``kind``: "keyval" | "archive"."""
        for (host, user, store), rows in groups:
            host, user, store = _name(host), _name(user), _name(store)
            try:
                self._write(kind, user or None, host, store, rows)
            except _RESTORE_ERRORS as err:
                self.report.errors.append((f"{user}@{host} store {store} ({kind})", str(err)))
            else:
                self._count(kind, host, store, len(rows))
            self.done += len(rows)
            if self.progress is not None:
                self.progress(self.done, self.total)

    def _write(self, kind: str, user: Any, host: Any, store: Any,
               rows: list[tuple[Any, ...]]) -> None:
        if kind == "keyval":
            self.target.store(user, host, store, decode_keyval(rows))
        else:
            self.target.list_store(user, host, store, _decode_archive(rows))

    def _count(self, kind: str, host: Any, store: Any, rows: int) -> None:
        if kind == "keyval":
            self.report.keyval_rows += rows
        else:
            self.report.archive_rows += rows
        self.report.count_store(host, store, kind)
