"""``prosody-store export`` and ``import``: the data directory as JSON Lines, and back."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import BinaryIO, Iterator

from prosody_store.cli.common import (
    CommandError,
    add_command,
    cli_name,
    data_manager,
    describe,
    parse_hosts,
    print_json,
    show_name,
)
from prosody_store.cli.progress import Progress
from prosody_store.datamanager import CorruptFileError, DataManager, StoreFile, atomic_write
from prosody_store.export import (
    RecordError,
    host_names,
    import_records,
    iter_store_files,
    record_chunks,
)
from prosody_store.paths import Name, name_bytes
from prosody_store.serialization import LuaSyntaxError


# ---------------------------------------------------------------------------
# export


class ExportRun:
    """The records of some store files as one stream of bytes, counting them."""

    def __init__(self, dm: DataManager, files: list[StoreFile], bar: Progress) -> None:
        self.dm = dm
        self.files = files
        self.bar = bar
        self.records = 0

    def chunks(self) -> Iterator[bytes]:
        """Every record's bytes, a list's items streamed; files that vanished are skipped."""
        for f in self.files:
            written = False
            for chunk in record_chunks(self.dm, f):
                written = True
                yield chunk
            self.records += written
            self.bar.update()


def write_output(path: str | None, chunks: Iterator[bytes]) -> None:
    """Write to stdout (``path`` None or ``-``), or to a file, complete or not at all."""
    if path is None or path == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
    else:
        atomic_write(path, chunks)


def missing_hosts(dm: DataManager, hosts: list[Name | None]) -> list[Name | None]:
    """Those of ``hosts`` that have no data in the data directory."""
    known = {name_bytes(h) if h is not None else None for h in host_names(dm.data_path)}
    return [h for h in hosts if (name_bytes(h) if h is not None else None) not in known]


def cmd_export(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    hosts = parse_hosts(args.host)
    stores = [cli_name(s) for s in args.store] if args.store else None
    files = list(iter_store_files(dm, hosts, stores))
    if hosts and not files:
        missing = missing_hosts(dm, hosts)
        if missing:
            raise CommandError(f"no data for host {show_name(missing[0])!r}")
    bar = Progress(len(files), "export")
    run = ExportRun(dm, files, bar)
    try:
        write_output(args.output, run.chunks())
    except (CorruptFileError, LuaSyntaxError) as err:
        raise CommandError(f"cannot export: {describe(err)}") from None
    finally:
        bar.close()
    if args.json and args.output not in (None, "-"):
        print_json({"records": run.records})
    return 0


# ---------------------------------------------------------------------------
# import


def open_input(path: str | None) -> tuple[contextlib.AbstractContextManager[BinaryIO], int]:
    """The records' source (stdin for None or ``-``) and its size (0 if unknown)."""
    if path in (None, "-"):
        return contextlib.nullcontext(sys.stdin.buffer), 0
    try:
        source = open(path, "rb")
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from None
    return source, os.fstat(source.fileno()).st_size


def cmd_import(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    source, total = open_input(args.file)
    bar = Progress(total, "import", enabled=None if total else False, unit="bytes")
    try:
        with source as f:
            stats = import_records(dm, f, dry_run=args.dry_run,
                                   progress=lambda n: bar.update(n))
    except RecordError as err:
        raise CommandError(str(err)) from None
    finally:
        bar.close()
    summary = {"records": stats.records, "written": stats.written,
               "unchanged": stats.unchanged, "removed": stats.removed,
               "list_items": stats.items, "dry_run": args.dry_run}
    if args.json:
        print_json(summary)
    elif args.dry_run or args.verbose:
        verb = "would write" if args.dry_run else "wrote"
        print(f"{stats.records} records: {verb} {stats.written}, "
              f"{stats.unchanged} unchanged, {stats.removed} empty (removed)")
    return 0


# ---------------------------------------------------------------------------
# The parser


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add export and import."""
    p = add_command(
        commands, "export", common, "write the data as JSON Lines (backup, migration)",
        "Write every store file (or those of some hosts and stores) as one JSON line "
        "{host, user, store, type, value}, losslessly (see README, 'Export format'). "
        "The output depends only on the data: export, import, export gives the same "
        "bytes. Lists are streamed.",
        "  prosody-store export -o /backup/prosody.jsonl\n"
        "  prosody-store export --host example.com --store roster | jq -c .value\n"
        "  prosody-store export | gzip > prosody-$(date +%F).jsonl.gz\n", cmd_export)
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable; _global for host-less data)")
    p.add_argument("--store", action="append", default=[], metavar="STORE",
                   help="only this store (repeatable)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (complete or not at all) instead of stdout")
    p.add_argument("--json", action="store_true", help="with -o: print {\"records\": N}")

    p = add_command(
        commands, "import", common, "write JSON Lines from export back",
        "Write every record of FILE (default stdin) into the data directory: a keyval "
        "record replaces the .dat, a list record the whole .list (each atomically, a "
        "list streamed through a temporary file). Idempotent; stores not in the "
        "input are left alone. Stops at the first bad record (exit 1); the records "
        "before it are written.",
        "  prosody-store import /backup/prosody.jsonl\n"
        "  zcat prosody.jsonl.gz | prosody-store --data-path /srv/new import\n"
        "  prosody-store import --dry-run changed.jsonl\n", cmd_import)
    p.add_argument("file", nargs="?", metavar="FILE", help="JSON Lines input (default stdin)")
    p.add_argument("--dry-run", action="store_true",
                   help="read and check everything, write nothing, print a summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")
