"""``prosody-store migrate``: a data directory to Prosody's SQL storage and back.

PostgreSQL's driver (psycopg) is imported by :mod:`prosody_store.sql` only
when a ``postgresql://`` URL is used.
"""
from __future__ import annotations

import argparse
import os
import sys

from prosody_store import sql
from prosody_store.cli.common import (
    RAW,
    CommandError,
    Settings,
    check_filters,
    cli_name,
    parse_hosts,
    read_prosody_config,
)
from prosody_store.cli.progress import Progress
from prosody_store.config import DEFAULT_DATA_PATH
from prosody_store.datamanager import DataManager

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

def target_data_path(args: argparse.Namespace) -> str:
    """The data directory to migrate into, which need not exist yet."""
    path = args.data_path or os.environ.get("PROSODY_DATA_PATH")
    if not path and getattr(args, "prosody_config", None):
        path = read_prosody_config(args.prosody_config).data_path
    path = path or DEFAULT_DATA_PATH
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{path} is not a directory")
    return path


def run_migration(args: argparse.Namespace, data_path: str, bar: Progress) -> sql.Report:
    """Copy the data one way or the other; database errors as CommandError."""
    if args.to is not None and os.path.isdir(data_path):
        # A --host or --store that the data directory lacks is a typo, not an empty job.
        check_filters(DataManager(data_path), parse_hosts(args.host),
                      [cli_name(s) for s in args.store] or None)
    try:
        if args.to is not None:
            return sql.migrate_to_sql(
                data_path, args.to, hosts=args.host or None, stores=args.store or None,
                dry_run=args.dry_run, progress=bar,
                batch_rows=args.batch_rows or sql.DEFAULT_BATCH_ROWS)
        return sql.migrate_from_sql(
            args.from_url, data_path, hosts=args.host or None, stores=args.store or None,
            dry_run=args.dry_run, progress=bar)
    except sql.SQLError as err:
        raise CommandError(str(err)) from None
    except Exception as err:  # a driver error: one line, not a traceback
        if sql.is_driver_error(err):
            raise CommandError(f"database error: {str(err).strip().splitlines()[0]}") from None
        raise


def print_report(args: argparse.Namespace, report: sql.Report, target: str) -> None:
    """Skipped and failed files, the dry run's stores, and the summary line (stderr)."""
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


def cmd_migrate(args: argparse.Namespace) -> int:
    to_sql = args.to is not None
    data_path = Settings(args).data_path if to_sql else target_data_path(args)
    bar = Progress(0, "migrate", enabled=args.progress, unit="bytes" if to_sql else "rows")
    if args.batch_rows is not None and args.batch_rows < 1:
        raise CommandError("--batch-rows must be at least 1", 2)
    try:
        report = run_migration(args, data_path, bar)
    finally:
        bar.close()
    print_report(args, report, args.to if to_sql else data_path)
    return 1 if report.errors else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    """Add the ``migrate`` command."""
    p = commands.add_parser(
        "migrate", help="copy the data directory into Prosody's SQL storage, or back",
        description="Copy the data directory into the tables of Prosody's mod_storage_sql "
                    "(SQLite or PostgreSQL), or from them back into a data directory.",
        epilog=EPILOG, formatter_class=RAW, parents=[common])
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
