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
from prosody_store import xep0227


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
    if args.format == "xep0227":
        return export_xep0227(args)
    if args.layout or args.strict or args.target != "prosody":
        raise CommandError("--layout, --for and --strict go with --format xep0227", 2)
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
# XEP-0227


def xep0227_layout(args: argparse.Namespace) -> str:
    """``--layout``, or by default per-user when -o names a directory."""
    if args.layout:
        return str(args.layout)
    out = args.output
    if out not in (None, "-") and (os.path.isdir(out) or out.endswith(os.sep)):
        return "per-user"
    return "server"


def report_not_carried(report: xep0227.Report, strict: bool) -> None:
    """Each user's (or host's) uncarried data on one stderr line, then a summary."""
    for line in report.lines():
        sys.stderr.flush()
        print(f"prosody-store: {line}", file=sys.stderr)
    if report:
        message = (f"{len(report.notes)} users or hosts have data that XEP-0227 "
                   "does not carry (listed above)")
        if strict:
            raise CommandError(message + "; --strict makes that an error")
        print(f"prosody-store: {message}", file=sys.stderr)


def export_xep0227(args: argparse.Namespace) -> int:
    if args.store or args.skip_damaged:
        raise CommandError("--store and --skip-damaged go with the JSON Lines format", 2)
    dm = data_manager(args, write_index=False)
    hosts = parse_hosts(args.host)
    check_filters(dm, hosts, None)
    layout = xep0227_layout(args)
    if layout == "per-user":
        if args.output in (None, "-"):
            raise CommandError("--layout per-user writes files: -o DIRECTORY", 2)
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise CommandError(f"{args.output} is not a directory (--layout per-user)", 2)
        report, files = xep0227.export_per_user(dm, args.output, hosts,
                                                 target=args.target)
    else:
        report = xep0227.Report()
        write_output(args.output, xep0227.server_chunks(dm, report, hosts, args.target))
        files = 1
    if args.json and args.output not in (None, "-"):
        print_json({"files": files, "not_carried": len(report.notes)})
    report_not_carried(report, args.strict)
    return 0


def import_xep0227(args: argparse.Namespace) -> int:
    if not args.file or "-" in args.file:
        raise CommandError("--format xep0227 reads files or directories: name them", 2)
    dm = data_manager(args)
    hosts = [h for h in (parse_hosts(args.host) or []) if isinstance(h, str)] or None
    try:
        result = xep0227.import_paths(dm, args.file, hosts, dry_run=args.dry_run)
    except xep0227.Xep0227Error as err:
        raise CommandError(str(err)) from None
    if args.json:
        print_json({"users": result.users, "written": result.written,
                    "not_carried": len(result.report.notes), "dry_run": args.dry_run})
    elif args.dry_run or args.verbose:
        verb = "would write" if args.dry_run else "wrote"
        print(f"{result.users} users: {verb} {result.written} store files")
    report_not_carried(result.report, False)
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
    if args.format == "xep0227":
        return import_xep0227(args)
    if len(args.file) > 1 or args.host:
        raise CommandError("JSON Lines import reads one FILE (--host goes with "
                           "--format xep0227)", 2)
    dm = data_manager(args)
    source, total = open_input(args.file[0] if args.file else None)
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
        "everything else, lists each such file on stderr and exits 1. "
        "--format xep0227 writes XEP-0227 XML instead (accounts, rosters, vCards, "
        "private XML, PEP, archives, offline messages, blocklists; see README, "
        "'Moving to or from another server'), listing on stderr, per user, what it "
        "cannot carry.",
        "  prosody-store export -o /backup/prosody.jsonl\n"
        "  prosody-store export --format xep0227 --layout per-user -o /tmp/pie/\n"
        "  prosody-store export --format xep0227 --host example.com -o example.xml\n"
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
                        "--skip-damaged); with --format xep0227 {\"files\": N, "
                        "\"not_carried\": M}")
    p.add_argument("--format", choices=("jsonl", "xep0227"), default="jsonl",
                   help="jsonl (default): JSON Lines, every store, losslessly; xep0227: "
                        "XEP-0227 XML (user data, for another server or Prosody's "
                        "mod_storage_xep0227; what it cannot carry is listed on stderr)")
    p.add_argument("--layout", choices=("per-user", "server"),
                   help="xep0227: per-user writes DIRECTORY/user@host.xml as Prosody's "
                        "mod_storage_xep0227; server one file with every host and user "
                        "(default: per-user if -o is a directory, else server)")
    p.add_argument("--strict", action="store_true",
                   help="xep0227: exit 1 if anything was not carried (the output is "
                        "written all the same)")
    p.add_argument("--for", dest="target", choices=xep0227.TARGETS, default="prosody",
                   help="xep0227: the server that will import the files. ejabberd: SCRAM "
                        "values base64-encoded twice (as ejabberd reads them), a <delay> in "
                        "each offline message, the blocklist as a privacy list")

    p = add_command(
        commands, "import", common, "write JSON Lines from export back",
        "Write every record of FILE (default stdin) into the data directory: a keyval "
        "record replaces the .dat, a list record the whole .list (each atomically, a "
        "list streamed through a temporary file). Idempotent; stores not in the "
        "input are left alone. Stops at the first bad record with one line naming "
        "its input line (exit 1): the records before it are written, the file of the "
        "bad record is left as it was (--dry-run checks the whole input first). "
        "--format xep0227 reads XEP-0227 files (all of them first; nothing is written "
        "if one is bad): each store a user has in the XML replaces that user's file.",
        "  prosody-store import /backup/prosody.jsonl\n"
        "  prosody-store import --format xep0227 /tmp/pie/\n"
        "  prosody-store import --format xep0227 --dry-run ejabberd-export/main.xml\n"
        "  zcat prosody.jsonl.gz | prosody-store --data-path /srv/new import\n"
        "  prosody-store import --dry-run changed.jsonl\n", cmd_import)
    p.add_argument("file", nargs="*", metavar="FILE",
                   help="JSON Lines input (one FILE, default stdin); with --format xep0227 "
                        "XEP-0227 files or directories of them (*.xml)")
    p.add_argument("--format", choices=("jsonl", "xep0227"), default="jsonl",
                   help="jsonl (default): export's JSON Lines; xep0227: XEP-0227 XML: "
                        "Prosody's per-user files, one server file, or ejabberd's "
                        "export_piefxis output (its xi:include files are followed)")
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="xep0227: only the users of this host (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="read and check everything, write nothing, print a summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")
