"""``prosody-store archive expire``: drop archived messages older than a duration."""
from __future__ import annotations

import argparse
import math
import time

from prosody_store.archive import expire_list, parse_duration
from prosody_store.cli.common import (
    RAW,
    CommandError,
    add_command,
    check_filters,
    cli_name,
    data_manager,
    describe,
    jid_text,
    parse_hosts,
    print_json,
    print_line,
    report,
    show_name,
)
from prosody_store.cli.progress import Progress, file_sizes
from prosody_store.datamanager import CorruptFileError
from prosody_store.export import iter_store_files, to_json
from prosody_store.serialization import LuaSyntaxError


def cmd_archive_expire(args: argparse.Namespace) -> int:
    try:
        after = parse_duration(args.older_than)
    except ValueError as err:
        raise CommandError(f"--older-than: {err}", 2) from None
    dm = data_manager(args)
    hosts = parse_hosts(args.host)
    stores = [cli_name(s) for s in (args.store or ["archive"])]
    # --host and --store that match nothing are typos; the default store is no filter.
    check_filters(dm, hosts, stores if args.store else None)
    if after is None:
        return 0  # "never", as archive_expires_after = "never"
    cutoff = (args.now if args.now is not None else time.time()) - after
    files = [f for f in iter_store_files(dm, hosts, stores) if f.type == "list"]
    sizes = file_sizes(dm, files)
    bar = Progress(sum(sizes), "expire", unit="bytes")
    lists = []
    problems = 0
    total = 0
    try:
        for f, size in zip(files, sizes):
            try:
                res = expire_list(dm, f.user, f.host, f.store, cutoff, dry_run=args.dry_run)
            except (CorruptFileError, LuaSyntaxError) as err:
                report(f"skipped {describe(err)}")
                problems += 1
                continue
            finally:
                bar.update(step=size)
            if res is None or not res.dropped:
                continue
            total += res.dropped
            lists.append((f, res))
    finally:
        bar.close()
    if args.json:
        print_json({"cutoff": cutoff, "dry_run": args.dry_run, "dropped": total,
                    "unreadable": problems,
                    "lists": [{"host": to_json(f.host), "user": to_json(f.user),
                               "store": to_json(f.store), "dropped": r.dropped, "kept": r.kept}
                              for f, r in lists]})
    elif args.verbose or args.dry_run:
        verb = "would drop" if args.dry_run else "dropped"
        for f, r in lists:
            print_line(f"{jid_text(f.user, f.host)} {show_name(f.store)}: {verb} {r.dropped}, "
                       f"kept {r.kept}")
    if problems:
        raise CommandError(f"{problems} unreadable list(s) left as they were; see 'verify'")
    return 0


def finite_time(text: str) -> float:
    """``--now``: seconds since the epoch, ASCII and finite (NaN would expire everything)."""
    value = float(text) if text.isascii() else math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
    return value


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Add ``archive`` and its action ``expire``."""
    archive = commands.add_parser(
        "archive", help="message archive maintenance (expire)", parents=[common],
        description="Message archive (mod_mam) maintenance.", formatter_class=RAW,
        epilog="examples:\n  prosody-store archive expire --older-than 90d\n")
    actions = archive.add_subparsers(dest="archive_command", metavar="ACTION")
    actions.required = True
    p = add_command(
        actions, "expire", common, "drop archived messages older than a duration",
        "Drop every archive item whose 'when' is older than --older-than, per user, "
        "as mod_mam's archive_expires_after does, while Prosody is stopped or "
        "mod_mam's cleanup is off. Lists are rewritten atomically with their .lidx; "
        "kept items keep their exact bytes. Quiet unless --verbose, --dry-run or "
        "--json (one line per list that lost items). Durations: N (seconds), Nmin, "
        "Nh, Nd, Nw, Nm (months of 31 days, as mod_mam), Ny; 'never' does nothing. "
        "A --host or --store that matches nothing is an error (exit 1).",
        "  prosody-store archive expire --older-than 90d\n"
        "  prosody-store archive expire --older-than 1y --host muc.example.com "
        "--store muc_log\n"
        "  prosody-store archive expire --older-than 2w --dry-run\n",
        cmd_archive_expire)
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="e.g. 90d, 2w, 6m (months), 1y; as archive_expires_after")
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable)")
    p.add_argument("--store", action="append", default=[], metavar="STORE",
                   help="archive store (repeatable; default archive; muc_log for MUC)")
    p.add_argument("--dry-run", action="store_true", help="count, change nothing")
    p.add_argument("--json", action="store_true", help="a JSON report")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per list that lost items")
    p.add_argument("--now", type=finite_time, help=argparse.SUPPRESS)  # tests: a fixed clock
