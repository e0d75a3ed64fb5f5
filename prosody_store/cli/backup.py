"""``prosody-store export`` and ``import``: the data directory as JSON Lines, and back."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import BinaryIO, Iterator, cast

from prosody_store.cli.common import (
    CommandError,
    add_command,
    check_filters,
    cli_name,
    data_manager,
    parse_hosts,
    print_json,
    report,
)
from prosody_store.cli.progress import Progress, file_sizes
from prosody_store.datamanager import StoreFile, atomic_write
from prosody_store.export import (
    FILE_ERRORS,
    Exporter,
    RecordError,
    file_problem,
    import_records,
    plan_export,
    store_file_path,
)
from prosody_store.paths import Name


# ---------------------------------------------------------------------------
# export


def write_output(path: str | None, chunks: Iterator[bytes]) -> None:
    """Write to stdout (``path`` None or ``-``), or to a file, complete or not at all."""
    if path is None or path == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
    else:
        atomic_write(path, chunks)


def report_skipped(path: str, reason: str) -> None:
    """One line on stderr for a file ``export --skip-damaged`` leaves out."""
    report(f"skipped {path}: {reason}")
    sys.stderr.flush()


def cmd_export(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    hosts = parse_hosts(args.host)
    stores = [cli_name(s) for s in args.store] if args.store else None
    check_filters(dm, hosts, stores)
    plan = plan_export(dm, hosts, stores)
    skip = args.skip_damaged
    for problem in plan.problems:
        if not skip:
            raise CommandError(f"cannot export {problem.path}: {problem.reason} "
                               "(--skip-damaged exports the rest)")
        report_skipped(cast(str, problem.path), problem.reason)  # plan_export names the file
    def key(f: StoreFile) -> tuple[Name | None, Name, Name | None, str]:
        return f.host, f.store, f.user, f.type

    sizes = {key(f): size for f, size in zip(plan.files, file_sizes(dm, plan.files))}
    bar = Progress(sum(sizes.values()), "export", unit="bytes")
    run = Exporter(dm, plan.files, report_skipped if skip else None,
                   progress=lambda f: bar.update(step=sizes.get(key(f), 0)))

    def chunks() -> Iterator[bytes]:
        # Errors of reading the data come out of here; those of writing the
        # output (a full disk, a closed pipe) come from the writer and stay as they are.
        try:
            yield from run.chunks()
        except FILE_ERRORS as err:
            path, reason = file_problem(err, store_file_path(dm, run.current))
            raise CommandError(f"cannot export {path}: {reason} "
                               "(--skip-damaged exports the rest)") from None

    try:
        write_output(args.output, chunks())
    finally:
        bar.close()
    skipped = len(plan.problems) + run.skipped
    if args.json and args.output not in (None, "-"):
        print_json({"records": run.records, "skipped": skipped} if skip
                   else {"records": run.records})
    if skipped:
        total = len(plan.problems) + len(plan.files)
        raise CommandError(f"{skipped} of {total} files skipped (listed above); "
                           f"{run.records} records exported")
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


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Add export and import."""
    p = add_command(
        commands, "export", common, "write the data as JSON Lines (backup, migration)",
        "Write every store file (or those of some hosts and stores) as one JSON line "
        "{host, user, store, type, value}, losslessly (see README, 'Export format'). "
        "The output depends only on the data: export, import, export gives the same "
        "bytes, and import restores every file export wrote. Lists are streamed. "
        "A file that cannot be exported (damaged, unreadable, or one import could not "
        "restore, such as a file name Prosody does not spell so) stops the export "
        "with exit 1 naming it, and -o FILE is not written; --skip-damaged exports "
        "everything else, lists each such file on stderr and exits 1.",
        "  prosody-store export -o /backup/prosody.jsonl\n"
        "  prosody-store export --skip-damaged -o /backup/prosody.jsonl 2> skipped.txt\n"
        "  prosody-store export --host example.com --store roster | jq -c .value\n"
        "  prosody-store export | gzip > prosody-$(date +%F).jsonl.gz\n", cmd_export)
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable; _global for host-less data)")
    p.add_argument("--store", action="append", default=[], metavar="STORE",
                   help="only this store (repeatable)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (complete or not at all) instead of stdout")
    p.add_argument("--skip-damaged", action="store_true",
                   help="export every file that can be exported, list the others on "
                        "stderr (one line each, with the reason) and exit 1")
    p.add_argument("--json", action="store_true",
                   help="with -o: print {\"records\": N} (and \"skipped\": M with "
                        "--skip-damaged)")

    p = add_command(
        commands, "import", common, "write JSON Lines from export back",
        "Write every record of FILE (default stdin) into the data directory: a keyval "
        "record replaces the .dat, a list record the whole .list (each atomically, a "
        "list streamed through a temporary file). Idempotent; stores not in the "
        "input are left alone. Stops at the first bad record with one line naming "
        "its input line (exit 1): the records before it are written, the file of the "
        "bad record is left as it was (--dry-run checks the whole input first).",
        "  prosody-store import /backup/prosody.jsonl\n"
        "  zcat prosody.jsonl.gz | prosody-store --data-path /srv/new import\n"
        "  prosody-store import --dry-run changed.jsonl\n", cmd_import)
    p.add_argument("file", nargs="?", metavar="FILE", help="JSON Lines input (default stdin)")
    p.add_argument("--dry-run", action="store_true",
                   help="read and check everything, write nothing, print a summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")
