"""Prosody's SQL storage (``mod_storage_sql``): migrate a data directory to it and back.

:func:`migrate_to_sql` copies a Prosody data directory (``storage = "internal"``)
into the tables Prosody's ``mod_storage_sql`` (0.12 and 13.0) uses, in SQLite
(the standard library's :mod:`sqlite3`) or PostgreSQL (``psycopg`` 3, the
optional extra ``postgresql``); :func:`migrate_from_sql` goes the other way.

Tables (created as Prosody creates them, when missing)::

    prosody        (host, user, store, key, type, value)                 keyval/map stores
    prosodyarchive (sort_id, host, user, store, key, when, with, type, value)   archives

with Prosody's indexes (``prosody_index``; ``prosodyarchive_index`` (unique),
``prosodyarchive_with_when``, ``prosodyarchive_when``, ``prosodyarchive_sort``).

Encoding, as ``mod_storage_sql`` does it:

* A keyval store (``<host>/<store>/<user>.dat``) is one row per non-empty
  string key: ``type`` ``string`` (the text), ``number`` (Lua's ``tostring``:
  integers in decimal, floats ``%.14g`` with ``.0`` added when that looks like
  an integer), ``boolean`` (``true``/``false``) or ``json`` (tables, in
  ``util.json``'s conventions, :mod:`prosody_store.json`).  Every other key
  (numbers, booleans, ``""``) goes into one extra row with key ``""`` holding a
  JSON table of those entries.  The store without user (``<host>/<store>.dat``)
  has user ``""``.
* An archive (``<host>/<store>/<user>.list``, items as ``mod_storage_internal``
  writes them) is one ``prosodyarchive`` row per item, in list order:
  ``key`` (the item's ``key``, else its 1-based position, as Prosody's
  ``find`` reports it), ``when`` (the item's ``when``, else its ``attr.stamp``
  parsed), ``with`` (``""`` when missing), type ``xml`` and the stanza as
  ``util.stanza`` writes it (:func:`prosody_store.stanza.to_xml`), without the
  ``stamp``/``stamp_legacy`` attributes that the filesystem store adds.

Where Prosody itself would fail, this module does better or says why:

* PostgreSQL's ``when`` column is an ``INTEGER``: a fractional ``when`` (which
  makes ``prosody-migrator`` abort) is rounded down to the second.  SQLite keeps
  it as it is, as Prosody does.
* Values Prosody's SQL storage cannot read back are errors for their file (the
  file is skipped, the rest migrated, :attr:`Report.errors` lists them): a
  float infinity or NaN (written ``inf``/``nan``, which neither ``tonumber``
  nor ``util.json`` reads), a keyval file that is not a table, an archive item
  that is not a stanza, and in PostgreSQL text that is not UTF-8 or contains
  NUL.  In SQLite, names and strings that are not UTF-8 are stored as BLOBs
  with their exact bytes.
* A top-level ``false`` in a keyval store is written (as ``prosody-migrator``
  writes it), but Prosody 0.12's ``keyval_store:get`` skips rows whose value is
  false (``if k and v``), so Prosody itself never sees it; this module reads it.
* Floats are stored as Prosody stores them, with 14 significant digits (so
  ``0.1 + 0.2`` is stored as ``0.3``); that is the format, not a choice here.

Transactions and re-runs: each file is written as "delete the rows of this
(host, user, store), insert the new ones", and a transaction is committed only
between files, every ``batch_rows`` rows.  An interrupted run leaves every
file either fully migrated or untouched, and running it again ends in the same
state (``sort_id`` values aside, which only order an archive).  Rows of stores
or users that are not in the source are left alone.

Back to a directory (:func:`migrate_from_sql`): keyval rows are merged as
``mod_storage_sql`` reads them; archive rows become items as
``mod_storage_internal``'s ``append`` writes them (the stanza table, then
``attr.stamp`` = the UTC time of ``when`` as ``%Y-%m-%dT%H:%M:%SZ``, ``key``,
``when``, ``with``).  Each file is replaced atomically.
"""
from __future__ import annotations

import calendar
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from prosody_store import json as pjson
from prosody_store.datamanager import DataManager
from prosody_store.errors import Error
from prosody_store.numbers import format_float, tonumber
from prosody_store.paths import GLOBAL_HOST, StoreError
from prosody_store.serialization import LuaSyntaxError
from prosody_store.stanza import StanzaError, from_xml, split_item, to_xml

__all__ = [
    "MigrationError",
    "Report",
    "SQLError",
    "connect",
    "decode_keyval",
    "encode_archive_item",
    "encode_keyval",
    "encode_value",
    "migrate_from_sql",
    "migrate_to_sql",
]

DEFAULT_BATCH_ROWS = 20000

Progress = Callable[[int, int], None]
"""``progress(done, total)``: bytes of source files (to SQL) or rows (from SQL)."""


class SQLError(Error):
    """A database URL or driver problem."""


class MigrationError(Error, ValueError):
    """A value that Prosody's SQL storage cannot hold (or read back)."""


@dataclass
class Report:
    """What a migration did (or, with ``dry_run``, would do)."""

    files: int = 0
    keyval_rows: int = 0
    archive_rows: int = 0
    stores: dict = field(default_factory=dict)
    """(host, store, "keyval" | "archive") -> number of users."""
    errors: list = field(default_factory=list)
    """(where, message) for every file or store that was skipped."""
    skipped: list = field(default_factory=list)
    """Data left out on purpose, e.g. the ``_global`` directory."""
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.keyval_rows + self.archive_rows

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------------------
# Values


def _lua_number_text(v: int | float) -> str:
    if v.__class__ is float or isinstance(v, float):
        if not math.isfinite(v):
            raise MigrationError(f"the number {v!r} cannot be stored in Prosody's SQL storage")
        return format_float(float(v))
    return str(int(v))


def _check_json_finite(text: str, value: Any) -> None:
    """util.json writes inf/nan that it cannot read back: refuse them."""
    if ("inf" in text or "nan" in text) and _has_non_finite(value):
        raise MigrationError("a table with an infinite or NaN number cannot be stored in "
                             "Prosody's SQL storage (util.json cannot read it back)")


def _has_non_finite(v: Any, depth: int = 0) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if depth > 200:
        return False
    if isinstance(v, dict):
        return any(_has_non_finite(k, depth + 1) or _has_non_finite(x, depth + 1)
                   for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return any(_has_non_finite(x, depth + 1) for x in v)
    return False


def encode_value(value: Any) -> tuple[str, str | bytes]:
    """``(type, text)`` of one value, as ``mod_storage_sql``'s ``serialize``."""
    cls = value.__class__
    if cls is str or cls is bytes:
        return "string", value
    if cls is bool:
        return "boolean", "true" if value else "false"
    if cls is int or cls is float:
        return "number", _lua_number_text(value)
    if cls is dict or cls is list or isinstance(value, (dict, list, tuple)):
        text = pjson.dumps(value)
        _check_json_finite(text, value)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a string that is not UTF-8: its raw bytes
                return "json", text.encode("utf-8", "surrogateescape")
        return "json", text
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, (int, float)):
        return "number", _lua_number_text(value)
    if isinstance(value, (str, bytes)):
        return "string", value
    raise MigrationError(f"cannot store a {cls.__name__} in Prosody's SQL storage")


def encode_keyval(value: Any) -> list[tuple[str | bytes, str, str | bytes]]:
    """The ``(key, type, value)`` rows of one keyval store, as ``keyval_store:set``."""
    if isinstance(value, (list, tuple)):
        items: Iterable = enumerate(value, 1)
    elif isinstance(value, dict):
        items = value.items()
    else:
        raise MigrationError(f"a keyval store must be a table, not a {type(value).__name__}")
    rows: list = []
    extra: dict = {}
    for k, v in items:
        if v is None:
            continue
        if (k.__class__ is str or k.__class__ is bytes) and k:
            t, text = encode_value(v)
            rows.append((k, t, text))
        else:
            extra[k] = v
    if extra:
        t, text = encode_value(extra)
        rows.append(("", t, text))
    return rows


_STAMP = re.compile(r"(\d{4})-?(\d\d)-?(\d\d)T(\d\d):(\d\d):(\d\d)\.?\d*([Z+\-]?.*)\Z", re.S)
_TZD = re.compile(r"([+\-])(\d\d):?(\d*)")


def parse_datetime(s: Any) -> int | None:
    """``util.datetime.parse``: an XEP-0082 timestamp as a Unix time (None if not one)."""
    if not isinstance(s, str):
        return None
    m = _STAMP.match(s)
    if not m:
        return None
    year, month, day, hour, minute, sec, tzd = m.groups()
    offset = 0
    if tzd not in ("", "Z"):
        t = _TZD.search(tzd)
        if not t:
            return None
        sign, h, mins = t.groups()
        offset = int(h) * 3600 + (int(mins) if len(mins) == 2 else 0) * 60
        if sign == "-":
            offset = -offset
    try:
        return calendar.timegm((int(year), int(month), int(day), int(hour), int(minute),
                                int(sec), 0, 0, 0)) - offset
    except (ValueError, OverflowError):
        return None


def format_datetime(when: int | float) -> str:
    """``util.datetime.datetime``: ``%Y-%m-%dT%H:%M:%SZ`` in UTC (whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(when)))


_SAFE_NAME = re.compile(r"[A-Za-z0-9_:.\-]+\Z")
_NEEDS_ESCAPE = re.compile(r"[&<>'\"]")
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x13\ud800-\udfff]")


def _esc(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def _fast_xml(t: Any, out: list, parent_ns: Any, depth: int) -> bool:
    """:func:`to_xml` for plain stanzas (the usual case), fast; False: use to_xml."""
    if t.__class__ is not dict or depth > 60:
        return False
    name = t.get("name")
    attr = t.get("attr")
    if name.__class__ is not str or attr.__class__ is not dict or not _SAFE_NAME.match(name):
        return False
    n = len(t) - 2
    out.append("<" + name)
    for k, v in attr.items():
        if k.__class__ is not str or v.__class__ is not str or not _SAFE_NAME.match(k) \
                or _BAD_TEXT.search(v):
            return False
        if not (k == "xmlns" and v == parent_ns):
            out.append(f" {k}='{_esc(v)}'")
    if n == 0:
        out.append("/>")
        return True
    out.append(">")
    ns = attr.get("xmlns")
    for i in range(1, n + 1):
        child = t.get(i)
        if child.__class__ is str:
            if _BAD_TEXT.search(child):
                return False
            out.append(_esc(child))
        elif not _fast_xml(child, out, ns, depth + 1):
            return False
    out.append(f"</{name}>")
    return True


def stanza_xml(stanza: dict) -> str:
    """:func:`prosody_store.stanza.to_xml`, with a fast path for plain stanzas."""
    out: list = []
    if _fast_xml(stanza, out, None, 0):
        return "".join(out)
    return to_xml(stanza)


def encode_archive_item(item: Any, index: int, default_when: int = 0
                        ) -> tuple[str | bytes, int | float, str | bytes, str, str]:
    """``(key, when, with, type, value)`` of one archive item of a ``.list`` file.

    ``index`` is the item's 1-based position (its key when it has none);
    ``default_when`` is used when the item has neither ``when`` nor a
    parsable ``attr.stamp``.
    """
    if not isinstance(item, dict):
        raise MigrationError(f"archive item {index} is not a stanza table")
    stanza, meta = split_item(item)
    attr = stanza.get("attr")
    if isinstance(attr, dict) and ("stamp" in attr or "stamp_legacy" in attr):
        stamp = attr.get("stamp")
        stanza["attr"] = {k: v for k, v in attr.items() if k != "stamp" and k != "stamp_legacy"}
    else:
        stamp = None
    key = meta.get("key")
    if key is None:
        key = str(index)
    elif not isinstance(key, (str, bytes)):
        key = _lua_number_text(key) if isinstance(key, (int, float)) else str(key)
    when = meta.get("when")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        when = parse_datetime(stamp)
        if when is None:
            when = default_when
    elif not math.isfinite(when):
        raise MigrationError(f"archive item {index} has the time {when!r}")
    with_ = meta.get("with")
    if with_ is None:
        with_ = ""
    elif not isinstance(with_, (str, bytes)):
        with_ = str(with_)
    try:
        xml = stanza_xml(stanza)
    except StanzaError as err:
        raise MigrationError(f"archive item {index}: {err}") from None
    return key, when, with_, "xml", xml


def decode_value(typ: str, text: str | bytes) -> Any:
    """``mod_storage_sql``'s ``deserialize``: one stored value."""
    if typ == "string":
        if isinstance(text, bytes):
            try:
                return text.decode("utf-8")
            except UnicodeDecodeError:
                return text
        return text
    if typ == "boolean":
        if text == "true":
            return True
        if text == "false":
            return False
        raise MigrationError(f"invalid boolean {text!r}")
    if typ == "number":
        raw = text if isinstance(text, bytes) else text.encode()
        value = tonumber(raw.strip())
        if value is None:
            try:
                value = int(raw.strip(), 16) if raw.strip().lower().startswith(b"0x") else None
            except ValueError:
                value = None
        if value is None:
            raise MigrationError(f"invalid number {text!r}")
        return value
    if typ == "json":
        return pjson.loads(text)
    if typ == "xml":
        return from_xml(text)
    raise MigrationError(f"unhandled value type {typ!r}")


def decode_keyval(rows: Iterable[tuple[Any, str, Any]]) -> Any:
    """The value of one keyval store from its ``(key, type, value)`` rows, as ``keyval_store:get``.

    None when there are no rows; a ``list`` when the keys are exactly 1..n.
    """
    result: dict = {}
    have = False
    for k, t, v in rows:
        have = True
        value = decode_value(t, v)
        if isinstance(k, bytes):
            try:
                k = k.decode("utf-8")
            except UnicodeDecodeError:
                pass
        if k != "":
            result[k] = value
        elif isinstance(value, dict):
            result.update(value)
        elif isinstance(value, list):
            for i, x in enumerate(value, 1):
                if x is not None:
                    result[i] = x
    if not have:
        return None
    n = len(result)
    if n and all(k.__class__ is int for k in result) and all(i in result for i in range(1, n + 1)):
        return [result[i] for i in range(1, n + 1)]
    return result


def decode_archive_row(key: Any, when: Any, with_: Any, typ: str, value: Any) -> dict:
    """The ``.list`` item ``mod_storage_internal``'s ``append`` writes for one archive row."""
    if typ != "xml":
        raise MigrationError(f"archive item {key!r} is of type {typ!r}, not a stanza "
                             "(the filesystem store holds stanzas only)")
    stanza = from_xml(value)
    attr = dict(stanza.get("attr") or {})
    if isinstance(when, float) and when.is_integer():
        when = int(when)
    attr["stamp"] = format_datetime(when)
    stanza["attr"] = attr
    stanza["key"] = key
    stanza["when"] = when
    stanza["with"] = with_
    return stanza


# ---------------------------------------------------------------------------
# Databases

_KEYVAL_COLUMNS = '"host", "user", "store", "key", "type", "value"'
_ARCHIVE_COLUMNS = '"host", "user", "store", "key", "when", "with", "type", "value"'


def _ddl(driver: str) -> list[str]:
    """The statements ``mod_storage_sql`` runs to create its tables (util.sql's rendering)."""
    serial = "BIGSERIAL PRIMARY KEY" if driver == "PostgreSQL" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    return [
        'CREATE TABLE IF NOT EXISTS "prosody" ("host" TEXT NOT NULL, "user" TEXT NOT NULL, '
        '"store" TEXT NOT NULL, "key" TEXT NOT NULL, "type" TEXT NOT NULL, "value" TEXT NOT NULL);',
        'CREATE INDEX IF NOT EXISTS "prosody_index" ON "prosody" ("host", "user", "store", "key");',
        f'CREATE TABLE IF NOT EXISTS "prosodyarchive" ("sort_id" {serial}, '
        '"host" TEXT NOT NULL, "user" TEXT NOT NULL, "store" TEXT NOT NULL, "key" TEXT NOT NULL, '
        '"when" INTEGER NOT NULL, "with" TEXT NOT NULL, "type" TEXT NOT NULL, '
        '"value" TEXT NOT NULL);',
        'CREATE UNIQUE INDEX IF NOT EXISTS "prosodyarchive_index" ON "prosodyarchive" '
        '("host", "user", "store", "key");',
        'CREATE INDEX IF NOT EXISTS "prosodyarchive_with_when" ON "prosodyarchive" '
        '("host", "user", "store", "with", "when");',
        'CREATE INDEX IF NOT EXISTS "prosodyarchive_when" ON "prosodyarchive" '
        '("host", "user", "store", "when");',
        'CREATE INDEX IF NOT EXISTS "prosodyarchive_sort" ON "prosodyarchive" '
        '("host", "user", "store", "sort_id");',
    ]


def _where(column: str, values: list | None, args: list, ph: str) -> str:
    if not values:
        return ""
    args.extend(values)
    return f' AND "{column}" IN ({", ".join([ph] * len(values))})'


class _Database:
    driver = ""
    ph = "?"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # -- schema / transactions
    def create_tables(self) -> None:
        cur = self.conn.cursor()
        for stmt in _ddl(self.driver):
            cur.execute(stmt)
        self.conn.commit()

    def is_empty(self, table: str) -> bool:
        cur = self.conn.cursor()
        cur.execute(f'SELECT 1 FROM "{table}" LIMIT 1')
        return cur.fetchone() is None

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, args: tuple | list = ()) -> None:
        self.conn.cursor().execute(sql, args)

    def savepoint(self) -> None:
        self.execute("SAVEPOINT prosody_store_file")

    def rollback_savepoint(self) -> None:
        self.execute("ROLLBACK TO SAVEPOINT prosody_store_file")
        self.execute("RELEASE SAVEPOINT prosody_store_file")

    def release_savepoint(self) -> None:
        self.execute("RELEASE SAVEPOINT prosody_store_file")

    # -- writing
    def delete_store(self, table: str, host: Any, user: Any, store: Any) -> None:
        p = self.ph
        self.execute(f'DELETE FROM "{table}" WHERE "host"={p} AND "user"={p} AND "store"={p}',
                     (host, user, store))

    def delete_archive_key(self, host: Any, user: Any, store: Any, key: Any) -> None:
        p = self.ph
        self.execute(f'DELETE FROM "prosodyarchive" WHERE "host"={p} AND "user"={p} '
                     f'AND "store"={p} AND "key"={p}', (host, user, store, key))

    def insert_keyval(self, rows: list) -> None:
        raise NotImplementedError

    def insert_archive(self, rows: list) -> None:
        raise NotImplementedError

    def text(self, value: Any) -> Any:
        return value

    # -- reading
    def count(self, table: str, hosts: list | None, stores: list | None) -> int:
        args: list = []
        sql = (f'SELECT COUNT(*) FROM "{table}" WHERE 1=1' + _where("host", hosts, args, self.ph)
               + _where("store", stores, args, self.ph))
        cur = self.conn.cursor()
        cur.execute(sql, args)
        return cur.fetchone()[0]

    def select(self, sql: str, args: list) -> Iterator[tuple]:
        cur = self.conn.cursor()
        cur.execute(sql, args)
        while True:
            rows = cur.fetchmany(2000)
            if not rows:
                return
            yield from rows

    def keyval_rows(self, hosts: list | None, stores: list | None) -> Iterator[tuple]:
        args: list = []
        sql = ('SELECT "host", "user", "store", "key", "type", "value" FROM "prosody" WHERE 1=1'
               + _where("host", hosts, args, self.ph) + _where("store", stores, args, self.ph)
               + ' ORDER BY "host", "user", "store", "key"')
        return self.select(sql, args)

    def archive_rows(self, hosts: list | None, stores: list | None) -> Iterator[tuple]:
        args: list = []
        sql = ('SELECT "host", "user", "store", "key", "when", "with", "type", "value" '
               'FROM "prosodyarchive" WHERE 1=1'
               + _where("host", hosts, args, self.ph) + _where("store", stores, args, self.ph)
               + ' ORDER BY "host", "user", "store", "sort_id"')
        return self.select(sql, args)


class _SQLite(_Database):
    driver = "SQLite3"

    def __init__(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        super().__init__(conn)
        self._in_tx = False

    def _begin(self) -> None:
        if not self._in_tx:
            self.conn.execute("BEGIN")
            self._in_tx = True

    def execute(self, sql: str, args: tuple | list = ()) -> None:
        self._begin()
        self.conn.execute(sql, args)

    def create_tables(self) -> None:
        self._begin()
        for stmt in _ddl(self.driver):
            self.conn.execute(stmt)
        self.commit()

    def commit(self) -> None:
        if self._in_tx:
            self.conn.execute("COMMIT")
            self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self.conn.execute("ROLLBACK")
            self._in_tx = False

    def insert_keyval(self, rows: list) -> None:
        self._begin()
        self.conn.executemany(f'INSERT INTO "prosody" ({_KEYVAL_COLUMNS}) VALUES (?,?,?,?,?,?)',
                              rows)

    def insert_archive(self, rows: list) -> None:
        self._begin()
        self.conn.executemany(f'INSERT INTO "prosodyarchive" ({_ARCHIVE_COLUMNS}) '
                              'VALUES (?,?,?,?,?,?,?,?)', rows)

    def text(self, value: Any) -> Any:
        # sqlite3 binds bytes as a BLOB: the exact bytes of a non-UTF-8 Lua string.
        return value


class _Postgres(_Database):
    driver = "PostgreSQL"
    ph = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise SQLError("PostgreSQL needs psycopg 3: pip install 'prosody-store[postgresql]'"
                           ) from None
        try:
            conn = psycopg.connect(url)
        except psycopg.Error as err:
            raise SQLError(f"cannot connect to PostgreSQL: {str(err).strip()}") from None
        super().__init__(conn)

    def insert_keyval(self, rows: list) -> None:
        cur = self.conn.cursor()
        with cur.copy(f'COPY "prosody" ({_KEYVAL_COLUMNS}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def insert_archive(self, rows: list) -> None:
        cur = self.conn.cursor()
        with cur.copy(f'COPY "prosodyarchive" ({_ARCHIVE_COLUMNS}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def text(self, value: Any) -> Any:
        if isinstance(value, bytes):
            raise MigrationError("PostgreSQL cannot store text that is not UTF-8 "
                                 f"({value[:40]!r})")
        if "\x00" in value:
            raise MigrationError("PostgreSQL cannot store text containing NUL")
        return value

    def select(self, sql: str, args: list) -> Iterator[tuple]:
        with self.conn.cursor(name="prosody_store_read") as cur:
            cur.itersize = 2000
            cur.execute(sql, args)
            yield from cur


def connect(url: str) -> _Database:
    """A connection to ``sqlite:///path/prosody.sqlite`` or ``postgresql://user@host/db``.

    For SQLite, the URL's path is the file (``sqlite:///var/lib/prosody/prosody.sqlite``
    is ``/var/lib/prosody/prosody.sqlite``; ``sqlite:prosody.sqlite`` is relative).
    A PostgreSQL URL is passed to libpq as it is.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("sqlite", "sqlite3"):
        path = unquote(parts.path)
        if parts.netloc:
            raise SQLError(f"{url}: a SQLite URL has no host (sqlite:///path/to/file)")
        if path.startswith("//"):
            path = path[1:]
        if not path or path == "/":
            raise SQLError(f"{url}: no database file (sqlite:///path/to/file)")
        return _SQLite(path)
    if scheme in ("postgresql", "postgres"):
        return _Postgres(url)
    raise SQLError(f"{url}: unsupported database URL (use sqlite:///file or postgresql://...)")


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


def scan(dm: DataManager, hosts: list | None = None, stores: list | None = None,
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


def migrate_to_sql(data_path: str | os.PathLike, url: str, *, hosts: list | None = None,
                   stores: list | None = None, dry_run: bool = False,
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
    db = None if dry_run else connect(url)
    text = db.text if db is not None else (lambda v: v)
    try:
        if db is not None:
            db.create_tables()
            fresh = {t: db.is_empty(t) for t in ("prosody", "prosodyarchive")}
        done = 0
        pending = 0
        for e in entries:
            try:
                if e.kind == "keyval":
                    n = _keyval_to_sql(dm, db, e, text, fresh if db else None)
                    report.keyval_rows += n
                else:
                    n = _archive_to_sql(dm, db, e, text, fresh if db else None)
                    report.archive_rows += n
            except (MigrationError, LuaSyntaxError, StanzaError, StoreError, TypeError,
                    ValueError) as err:
                report.errors.append((_where_text(e), str(err)))
                n = 0
            else:
                report.files += 1
                k = (e.host, e.store, e.kind)
                report.stores[k] = report.stores.get(k, 0) + 1
            pending += n
            done += e.size
            if db is not None and pending >= batch_rows:
                db.commit()
                pending = 0
            if progress is not None:
                progress(done, total)
        if db is not None:
            db.commit()
    except BaseException:
        if db is not None:
            db.rollback()
        raise
    finally:
        if db is not None:
            db.close()
    report.seconds = time.monotonic() - started
    return report


def _keyval_to_sql(dm: DataManager, db: _Database | None, e: _Entry, text: Callable,
                   fresh: dict | None) -> int:
    value = dm.load(e.user, e.host, e.store)
    if value is None:
        return 0
    h, u, s = text(e.host), text("" if e.user is None else e.user), text(e.store)
    rows = [(h, u, s, text(k), t, text(v)) for k, t, v in encode_keyval(value)]
    if db is not None:
        if not fresh["prosody"]:
            db.delete_store("prosody", h, u, s)
        if rows:
            db.insert_keyval(rows)
    return len(rows)


def _archive_to_sql(dm: DataManager, db: _Database | None, e: _Entry, text: Callable,
                    fresh: dict | None) -> int:
    view = dm.list_open(e.user, e.host, e.store)
    if view is None:
        return 0
    h, u, s = text(e.host), text("" if e.user is None else e.user), text(e.store)
    try:
        default_when = int(view.stat().st_mtime)
        if db is not None:
            db.savepoint()
        try:
            if db is not None and not fresh["prosodyarchive"]:
                db.delete_store("prosodyarchive", h, u, s)
            seen: set = set()
            batch: list = []
            count = 0
            for i, item in enumerate(view, 1):
                key, when, with_, t, xml = encode_archive_item(item, i, default_when)
                if db is not None and db.driver == "PostgreSQL" and when.__class__ is float:
                    when = math.floor(when)
                key = text(key)
                if key in seen:
                    # Prosody's append replaces an item with the same key: the later wins.
                    if db is not None:
                        if batch:
                            db.insert_archive(batch)
                            batch = []
                        db.delete_archive_key(h, u, s, key)
                    count -= 1
                seen.add(key)
                batch.append((h, u, s, key, when, text(with_), t, text(xml)))
                count += 1
                if len(batch) >= 2000:
                    if db is not None:
                        db.insert_archive(batch)
                    batch = []
            if batch and db is not None:
                db.insert_archive(batch)
        except BaseException:
            if db is not None:
                db.rollback_savepoint()
            raise
        if db is not None:
            db.release_savepoint()
        return count
    finally:
        view.close()


# ---------------------------------------------------------------------------
# SQL -> directory


def _group(rows: Iterator[tuple], width: int) -> Iterator[tuple[tuple, list]]:
    current = None
    group: list = []
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


def migrate_from_sql(url: str, data_path: str | os.PathLike, *, hosts: list | None = None,
                     stores: list | None = None, dry_run: bool = False,
                     progress: Progress | None = None, durable: bool = False) -> Report:
    """Write the stores in ``mod_storage_sql``'s tables at ``url`` into a data directory.

    Each (host, user, store) replaces the corresponding file; files of stores
    not in the database are left alone.  With ``dry_run`` the values are read
    and decoded but nothing is written.  ``progress(done_rows, total_rows)``.
    Without ``durable`` files are not fsync'ed one by one; the data directory is
    synced once at the end (``os.sync``).
    """
    started = time.monotonic()
    report = Report()
    db = connect(url)
    dm = DataManager(data_path, durable=durable)
    if not dry_run:
        os.makedirs(dm.data_path, exist_ok=True)
    try:
        existing = {row[0] for row in db.select(
            "SELECT name FROM sqlite_master WHERE type='table'" if db.driver == "SQLite3" else
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
            [])}
        tables = [t for t in ("prosody", "prosodyarchive") if t in existing]
        total = sum(db.count(t, hosts, stores) for t in tables)
        done = 0
        restore_errors = (MigrationError, StanzaError, StoreError, ValueError, TypeError,
                           OverflowError, OSError)

        def restore(groups, kind: str, decode, write) -> None:
            """Decode each user's store from its rows and write it; count or report it."""
            nonlocal done
            for (host, user, store), rows in groups:
                host, user, store = _name(host), _name(user), _name(store)
                try:
                    value = decode(rows)
                    if not dry_run:
                        write(user or None, host, store, value)
                except restore_errors as err:
                    report.errors.append((f"{user}@{host} store {store} ({kind})", str(err)))
                else:
                    report.files += 1
                    if kind == "keyval":
                        report.keyval_rows += len(rows)
                    else:
                        report.archive_rows += len(rows)
                    k = (host, store, kind)
                    report.stores[k] = report.stores.get(k, 0) + 1
                done += len(rows)
                if progress is not None:
                    progress(done, total)

        if "prosody" in tables:
            restore(_group(db.keyval_rows(hosts, stores), 3), "keyval", decode_keyval, dm.store)
        if "prosodyarchive" in tables:
            restore(_group(db.archive_rows(hosts, stores), 5), "archive",
                    lambda rows: [decode_archive_row(_name(k), w, _name(wi), t, _name(v))
                                  for k, w, wi, t, v in rows],
                    dm.list_store)
        db.rollback()
    finally:
        db.close()
    if not dry_run and not durable:
        os.sync()
    report.seconds = time.monotonic() - started
    return report
