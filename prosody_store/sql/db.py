"""Database access for the migration: connections to SQLite and PostgreSQL,
Prosody's tables, and a :class:`DryRun` stand-in that writes nothing.

:func:`connect` opens a :class:`Database` (:class:`SQLiteDatabase` through the
standard library's :mod:`sqlite3`, :class:`PostgresDatabase` through
``psycopg`` 3, imported only when needed).  Errors of the drivers themselves
are theirs (``sqlite3.Error``, ``psycopg.Error``): :func:`is_driver_error`
recognises them.
"""
from __future__ import annotations

import math
import sqlite3
import sys
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

from prosody_store.errors import Error
from prosody_store.paths import Name
from prosody_store.sql.values import MigrationError

__all__ = [
    "TABLES",
    "Database",
    "DryRun",
    "PostgresDatabase",
    "SQLError",
    "SQLiteDatabase",
    "connect",
    "is_driver_error",
]

TABLES = ("prosody", "prosodyarchive")
"""``mod_storage_sql``'s tables: keyval/map stores, archives."""


class SQLError(Error):
    """A database URL or driver problem."""


def is_driver_error(err: BaseException) -> bool:
    """Whether ``err`` comes from a database driver (``sqlite3.Error``, ``psycopg.Error``).

    psycopg is optional and not imported here: if it was never imported, none
    of its errors can have been raised.
    """
    if isinstance(err, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(err, psycopg.Error)


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


def _where(column: str, values: list[Name] | None, args: list[Any], ph: str) -> str:
    if not values:
        return ""
    args.extend(values)
    return f' AND "{column}" IN ({", ".join([ph] * len(values))})'


class Database:
    """A connection, with the statements the migration needs.

    Writing happens in transactions that :meth:`commit` ends; one file's rows
    go between :meth:`savepoint` and :meth:`release_savepoint` (or
    :meth:`rollback_savepoint`).
    """

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

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> None:
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

    def insert_keyval(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def insert_archive(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def text(self, value: Any) -> Any:
        """A name or text as the driver must be given it (or MigrationError)."""
        return value

    def archive_when(self, when: int | float) -> int | float:
        """An archive item's ``when`` as the ``when`` column holds it."""
        return when

    # -- reading
    def table_names(self) -> set[str]:
        """The names of the tables in the database (in the current schema)."""
        return {row[0] for row in self.select(
            "SELECT name FROM sqlite_master WHERE type='table'", [])}

    def count(self, table: str, hosts: list[Name] | None, stores: list[Name] | None) -> int:
        args: list[Any] = []
        sql = (f'SELECT COUNT(*) FROM "{table}" WHERE 1=1' + _where("host", hosts, args, self.ph)
               + _where("store", stores, args, self.ph))
        cur = self.conn.cursor()
        cur.execute(sql, args)
        n: int = cur.fetchone()[0]
        return n

    def select(self, sql: str, args: list[Any]) -> Iterator[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql, args)
        while True:
            rows = cur.fetchmany(2000)
            if not rows:
                return
            yield from rows

    def keyval_rows(self, hosts: list[Name] | None,
                    stores: list[Name] | None) -> Iterator[tuple[Any, ...]]:
        args: list[Any] = []
        sql = ('SELECT "host", "user", "store", "key", "type", "value" FROM "prosody" WHERE 1=1'
               + _where("host", hosts, args, self.ph) + _where("store", stores, args, self.ph)
               + ' ORDER BY "host", "user", "store", "key"')
        return self.select(sql, args)

    def archive_rows(self, hosts: list[Name] | None,
                     stores: list[Name] | None) -> Iterator[tuple[Any, ...]]:
        args: list[Any] = []
        sql = ('SELECT "host", "user", "store", "key", "when", "with", "type", "value" '
               'FROM "prosodyarchive" WHERE 1=1'
               + _where("host", hosts, args, self.ph) + _where("store", stores, args, self.ph)
               + ' ORDER BY "host", "user", "store", "sort_id"')
        return self.select(sql, args)


class SQLiteDatabase(Database):
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

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> None:
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

    def insert_keyval(self, rows: list[tuple[Any, ...]]) -> None:
        self._begin()
        self.conn.executemany(f'INSERT INTO "prosody" ({_KEYVAL_COLUMNS}) VALUES (?,?,?,?,?,?)',
                              rows)

    def insert_archive(self, rows: list[tuple[Any, ...]]) -> None:
        self._begin()
        self.conn.executemany(f'INSERT INTO "prosodyarchive" ({_ARCHIVE_COLUMNS}) '
                              'VALUES (?,?,?,?,?,?,?,?)', rows)

    def text(self, value: Any) -> Any:
        # sqlite3 binds bytes as a BLOB: the exact bytes of a non-UTF-8 Lua string.
        return value


class PostgresDatabase(Database):
    driver = "PostgreSQL"
    ph = "%s"

    def __init__(self, url: str) -> None:
        try:
            # Optional (the "postgresql" extra): where it is not installed, mypy cannot find it.
            import psycopg  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise SQLError("PostgreSQL needs psycopg 3: pip install 'prosody-store[postgresql]'"
                           ) from None
        try:
            conn = psycopg.connect(url)
        except psycopg.Error as err:
            raise SQLError(f"cannot connect to PostgreSQL: {str(err).strip()}") from None
        super().__init__(conn)

    def insert_keyval(self, rows: list[tuple[Any, ...]]) -> None:
        cur = self.conn.cursor()
        with cur.copy(f'COPY "prosody" ({_KEYVAL_COLUMNS}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def insert_archive(self, rows: list[tuple[Any, ...]]) -> None:
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

    def archive_when(self, when: int | float) -> int | float:
        # The column is an INTEGER: a fractional time is rounded down to the second.
        return math.floor(when) if when.__class__ is float else when

    def table_names(self) -> set[str]:
        return {row[0] for row in self.select(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()", [])}

    def select(self, sql: str, args: list[Any]) -> Iterator[tuple[Any, ...]]:
        with self.conn.cursor(name="prosody_store_read") as cur:
            cur.itersize = 2000
            cur.execute(sql, args)
            yield from cur



class DryRun:
    """A database that writes nothing: :class:`Database`'s writing interface,
    counting what would have been written.  It is never connected to, and
    every table looks empty (so nothing needs deleting first)."""

    driver = ""

    def __init__(self) -> None:
        self.keyval_rows = 0
        self.archive_rows = 0
        self.deletes = 0

    def create_tables(self) -> None:
        pass

    def is_empty(self, table: str) -> bool:
        return True

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def savepoint(self) -> None:
        pass

    def rollback_savepoint(self) -> None:
        pass

    def release_savepoint(self) -> None:
        pass

    def delete_store(self, table: str, host: Any, user: Any, store: Any) -> None:
        self.deletes += 1

    def delete_archive_key(self, host: Any, user: Any, store: Any, key: Any) -> None:
        self.deletes += 1

    def insert_keyval(self, rows: list[tuple[Any, ...]]) -> None:
        self.keyval_rows += len(rows)

    def insert_archive(self, rows: list[tuple[Any, ...]]) -> None:
        self.archive_rows += len(rows)

    def text(self, value: Any) -> Any:
        return value

    def archive_when(self, when: int | float) -> int | float:
        return when


def connect(url: str) -> Database:
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
        return SQLiteDatabase(path)
    if scheme in ("postgresql", "postgres"):
        return PostgresDatabase(url)
    raise SQLError(f"{url}: unsupported database URL (use sqlite:///file or postgresql://...)")
