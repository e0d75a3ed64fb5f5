"""``prosody-store migrate``: a data directory to Prosody's SQL storage and back.

Registered in :mod:`prosody_store.cli` through :func:`add_parser`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

EPILOG = """\
examples:
  prosody-store --data-path /var/lib/prosody migrate --to sqlite:///var/lib/prosody/prosody.sqlite
  prosody-store --data-path /var/lib/prosody migrate --to postgresql://prosody@127.0.0.1/prosody
  prosody-store --data-path /srv/restore migrate --from postgresql://prosody@127.0.0.1/prosody
  prosody-store migrate --to sqlite:///tmp/test.sqlite --host example.com --store roster --dry-run

The tables are those of Prosody's mod_storage_sql (storage = "sql"): keyval
stores (.dat) go to "prosody", archives (.list) to "prosodyarchive".  Each
user's store is replaced as a whole, in transactions committed between files,
so an interrupted run can simply be run again.  Stop Prosody (or make it
read-only) while migrating.
"""


def add_parser(subparsers: argparse._SubParsersAction,
               parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``migrate`` command to ``prosody-store``'s subcommands."""
    p = subparsers.add_parser(
        "migrate", help="copy the data directory into Prosody's SQL storage, or back",
        description="Copy the data directory into the tables of Prosody's mod_storage_sql "
                    "(SQLite or PostgreSQL), or from them back into a data directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents))
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to", metavar="URL",
                           help="write into this database: sqlite:///path/prosody.sqlite or "
                                "postgresql://user[:password]@host[:port]/database")
    direction.add_argument("--from", dest="from_url", metavar="URL",
                           help="read from this database into the data directory")
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable; default: every host)")
    p.add_argument("--store", action="append", default=[], metavar="STORE",
                   help="only this store, e.g. roster or archive (repeatable; default: all)")
    p.add_argument("--dry-run", action="store_true",
                   help="read and convert everything, report what would be written, write nothing")
    p.add_argument("--batch-rows", type=int, default=None, metavar="N",
                   help="commit after about N rows (at file boundaries; default 20000)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=cmd_migrate)
    return p


class _Bar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, unit: str, stream=None) -> None:
        self.unit, self.stream = unit, stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        width = 30
        fill = int(frac * width)
        rate = done / max(now - self.start, 1e-9)
        if self.unit == "bytes":
            amount = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB  {rate / 1e6:,.1f} MB/s"
        else:
            amount = f"{done:,}/{total:,} rows  {rate:,.0f} rows/s"
        self.stream.write(f"\r[{'#' * fill}{' ' * (width - fill)}] {frac:4.0%}  {amount}  ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _data_path(args: argparse.Namespace, must_exist: bool) -> str:
    from prosody_store.cli import DEFAULT_DATA_PATH, CommandError, Settings
    if must_exist:
        return Settings(args).data_path
    path = args.data_path or os.environ.get("PROSODY_DATA_PATH")
    if not path and getattr(args, "prosody_config", None):
        from prosody_store.config import ConfigError, read_config
        try:
            path = read_config(args.prosody_config).data_path
        except ConfigError as err:
            raise CommandError(str(err)) from None
    path = path or DEFAULT_DATA_PATH
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{path} is not a directory")
    return path


def cmd_migrate(args: argparse.Namespace) -> int:
    from prosody_store.cli import CommandError
    from prosody_store import sql

    to_sql = args.to is not None
    data_path = _data_path(args, must_exist=to_sql)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = _Bar("bytes" if to_sql else "rows") if show else None
    if args.batch_rows is not None and args.batch_rows < 1:
        raise CommandError("--batch-rows must be at least 1", 2)
    try:
        if to_sql:
            report = sql.migrate_to_sql(
                data_path, args.to, hosts=args.host or None, stores=args.store or None,
                dry_run=args.dry_run, progress=bar,
                batch_rows=args.batch_rows or sql.DEFAULT_BATCH_ROWS)
        else:
            report = sql.migrate_from_sql(
                args.from_url, data_path, hosts=args.host or None, stores=args.store or None,
                dry_run=args.dry_run, progress=bar)
    except sql.SQLError as err:
        raise CommandError(str(err)) from None
    except Exception as err:  # a driver error: one line, not a traceback
        module = type(err).__module__ or ""
        if module.startswith(("sqlite3", "psycopg")):
            raise CommandError(f"database error: {str(err).strip().splitlines()[0]}") from None
        raise
    finally:
        if bar is not None:
            bar.close()
    target = args.to if to_sql else data_path
    verb = "would write" if args.dry_run else "wrote"
    for where, why in report.skipped:
        print(f"prosody-store: skipped {where}: {why}", file=sys.stderr)
    for where, why in report.errors:
        print(f"prosody-store: error: {where}: {why}", file=sys.stderr)
    if args.dry_run:
        for (host, store, kind), users in sorted(report.stores.items(),
                                                 key=lambda kv: tuple(map(str, kv[0]))):
            print(f"{host}\t{store}\t{kind}\t{users} user(s)")
    print(f"prosody-store: {verb} {report.files} files ({report.keyval_rows} keyval "
          f"rows, {report.archive_rows} archive rows) to {target} in {report.seconds:.1f}s"
          + (f"; {len(report.errors)} could not be migrated" if report.errors else ""),
          file=sys.stderr)
    return 1 if report.errors else 0
