"""``prosody-store verify`` (read every file, repair damaged lists) and ``reindex``."""
from __future__ import annotations

import argparse
import os
import shutil
import time
from typing import Any

from prosody_store.cli.common import (
    CommandError,
    add_command,
    cli_name,
    data_manager,
    describe,
    parse_hosts,
    print_json,
)
from prosody_store.cli.progress import Progress
from prosody_store.datamanager import CorruptFileError, DataManager, StoreFile
from prosody_store.export import iter_store_files


# ---------------------------------------------------------------------------
# verify


def check_file(dm: DataManager, f: StoreFile) -> CorruptFileError | None:
    """Read a whole store file; the error if it is damaged, else None."""
    try:
        if f.type == "keyval":
            dm.load(f.user, f.host, f.store)
        else:
            view = dm.list_open(f.user, f.host, f.store)
            if view is not None:
                with view:
                    for _ in view:
                        pass
    except CorruptFileError as err:
        return err
    return None


def backup_name(path: str) -> str:
    """A free name beside a damaged file for keeping it: ``<file>.damaged-<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.lexists(name):
        n += 1
        name = f"{path}.damaged-{stamp}-{n}"
    return name


def repair_list(dm: DataManager, f: StoreFile, err: CorruptFileError) -> dict[str, Any]:
    """Keep the damaged list beside it, rewrite it with its readable items; the report."""
    backup = backup_name(err.filename)
    try:
        os.link(err.filename, backup)
    except OSError:
        shutil.copy2(err.filename, backup)
    rec = DataManager(dm.data_path).list_recover(f.user, f.host, f.store, repair=True)
    return {"repaired": True, "kept_items": len(rec.items) if rec else 0,
            "damaged_regions": len(rec.damaged) if rec else 0, "original": backup}


def report_line(entry: dict[str, Any]) -> str:
    """``file:line:column: error``, and what the repair did."""
    line = f"{entry['file']}:{entry['line']}:{entry['column']}: {entry['error']}"
    if entry.get("repaired"):
        line += (f" (repaired: kept {entry['kept_items']} items, dropped "
                 f"{entry['damaged_regions']} damaged part(s); original saved as "
                 f"{entry['original']})")
    return line


def cmd_verify(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    files = list(iter_store_files(dm, parse_hosts(args.host)))
    bar = Progress(len(files), "verify")
    bad = []
    for f in files:
        err = check_file(dm, f)
        bar.update()
        if err is not None:
            bad.append((f, err))
    bar.close()
    results = []
    unfixed = 0
    for f, err in bad:
        entry: dict[str, Any] = {"file": err.filename, "line": err.lineno, "column": err.colno,
                                 "error": describe(err).split(": ", 1)[-1]}
        if args.repair and f.type == "list":
            entry.update(repair_list(dm, f, err))
        else:
            unfixed += 1
            entry["repaired"] = False
        results.append(entry)
    if args.json:
        print_json({"files": len(files), "unreadable": results})
    else:
        for entry in results:
            print(report_line(entry))
    if unfixed:
        raise CommandError(f"{unfixed} of {len(files)} files unreadable"
                           + ("; only lists can be repaired" if args.repair else
                              " (verify --repair saves what can be read of damaged lists)"))
    return 0


# ---------------------------------------------------------------------------
# reindex


def cmd_reindex(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    stores = [cli_name(s) for s in args.store] if args.store else None
    files = [f for f in iter_store_files(dm, parse_hosts(args.host), stores) if f.type == "list"]
    bar = Progress(len(files), "reindex")
    rebuilt = 0
    for f in files:
        bar.update()
        if dm.list_reindex(f.user, f.host, f.store):
            rebuilt += 1
    bar.close()
    if args.json:
        print_json({"lists": len(files), "rebuilt": rebuilt})
    elif args.verbose:
        print(f"{len(files)} lists, {rebuilt} indexes written")
    return 0


# ---------------------------------------------------------------------------
# The parser


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add verify and reindex."""
    p = add_command(
        commands, "verify", common, "read every file, report unreadable ones",
        "Read every .dat and .list and print each unreadable one as file:line:column: "
        "error. Exit 1 if any is unreadable. --repair rewrites each damaged list with "
        "the items that can be read, keeping the damaged original beside it as "
        "<file>.damaged-<UTC time>.",
        "  prosody-store verify || echo 'damaged files!'\n"
        "  prosody-store verify --host example.com --repair\n", cmd_verify)
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable)")
    p.add_argument("--repair", action="store_true",
                   help="save the readable items of damaged lists")
    p.add_argument("--json", action="store_true", help="a JSON report")

    p = add_command(
        commands, "reindex", common, "rebuild the .lidx list indexes",
        "Rebuild the .lidx index (Prosody 13) of every list from the list itself; "
        "an index is only written when it differs.",
        "  prosody-store reindex\n  prosody-store reindex --host example.com "
        "--store archive\n", cmd_reindex)
    p.add_argument("--host", action="append", default=[], metavar="HOST")
    p.add_argument("--store", action="append", default=[], metavar="STORE")
    p.add_argument("--json", action="store_true", help="a JSON summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")
