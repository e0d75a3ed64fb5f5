"""``prosody-store verify`` (read every file, repair damaged lists) and ``reindex``.

What verify reports, one line each on stdout:

* errors (exit status 1): files that cannot be read (``file:line:column:
  error``), and files that export cannot back up (``file: cannot be exported:
  why``): a value import could not write back, or a file name Prosody does not
  spell so, a ``.dat`` that holds no table.  ``verify`` passing means ``export``
  will not stop at any file.
* warnings (exit status 0): names Prosody never makes (an empty user name, a
  name that is not UTF-8, that nameprep refuses or maps to nothing, a host name
  not in nameprep form), and temporary files left by a killed writer
  (``file: warning: ...``).

``--repair`` rewrites damaged lists from their readable items and removes the
temporary files older than an hour (a younger one may belong to a writer that
is still running, Prosody's or ours).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any, Iterator

from prosody_store.cli.common import (
    CommandError,
    add_command,
    check_filters,
    cli_name,
    data_manager,
    describe,
    one_line,
    parse_hosts,
    print_json,
    print_line,
)
from prosody_store import lidx
from prosody_store.cli.progress import Progress, file_sizes
from prosody_store.datamanager import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    CorruptFileError,
    DataManager,
    StoreFile,
    damaged_copy_name,
)
from prosody_store.export import (
    UnexportableError,
    check_exportable,
    check_keyval,
    iter_store_files,
    plan_export,
    store_file_path,
)
from prosody_store.jid import JIDError, nameprep
from prosody_store.paths import Name

STALE_AFTER = 3600.0
"""Seconds after its last change when a temporary file is taken as left behind."""


# ---------------------------------------------------------------------------
# Reading every file


@dataclass
class FileCheck:
    """What reading one store file found."""

    error: CorruptFileError | None = None  # damaged
    unexportable: UnexportableError | None = None  # export could not back it up


def check_file(dm: DataManager, f: StoreFile) -> FileCheck:
    """Read a whole store file, and check that export can write it."""
    result = FileCheck()
    try:
        if f.type == "keyval":
            value = dm.load(f.user, f.host, f.store)
            check_keyval(value, dm, f)
            check_exportable(value)
        else:
            with dm.list_open(f.user, f.host, f.store) as view:
                for item in view:
                    check_exportable(item)
    except CorruptFileError as err:
        result.error = err
    except UnexportableError as err:
        result.unexportable = UnexportableError(store_file_path(dm, f), err.reason)
    return result


# ---------------------------------------------------------------------------
# Names Prosody never makes


_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def name_warning(name: Name, kind: str) -> str | None:
    """Why Prosody never makes ``name`` as a ``kind`` ("user" or "host") name, or None.

    Prosody's names come from JIDs (nodeprep-ed or nameprep-ed, never empty)
    or from XML text, so they are UTF-8, never empty and hold no character
    XML cannot carry.  User names are only held to nameprep (a pubsub node
    name such as ``urn:xmpp:microblog:0`` is a user name of its store, and is
    no JID node); host names must be in nameprep form.
    """
    if isinstance(name, bytes):
        return f"{kind} name is not UTF-8: Prosody never makes such a name"
    if not name:
        return (f"empty {kind} name: Prosody never makes it (a name that nameprep maps to "
                "nothing, such as U+00AD, becomes it)")
    if _NOT_IN_XML.search(name):
        return f"{kind} name {name!r} holds a character XML cannot carry: Prosody never makes it"
    try:
        prepped = nameprep(name)
    except JIDError as err:
        return f"{kind} name {name!r} is refused by nameprep ({err}): Prosody never makes it"
    if not prepped:
        return f"{kind} name {name!r} is nothing after nameprep: Prosody never makes it"
    if kind == "host" and prepped != name:
        return (f"host name {name!r} is not in nameprep form ({prepped!r}): Prosody never "
                "makes it")
    return None


# ---------------------------------------------------------------------------
# Temporary files


def temp_files(dm: DataManager, hosts: list[Name | None] | None) -> Iterator[str]:
    """Temporary files of whole-file writes in the data, host and store directories:
    ours (``.prosody_store.<random>~``) and Prosody's (``<file>.dat~``, ``<file>.list~``)."""
    root = dm.data_path
    dirs = [root]
    if hosts is None:
        host_dirs = [os.path.join(root, e) for e in _entries(root)
                     if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
    else:
        host_dirs = [dm.host_directory(h) for h in hosts]
        dirs = []
    for host_dir in host_dirs:
        dirs.append(host_dir)
        dirs.extend(os.path.join(host_dir, e) for e in _entries(host_dir)
                    if os.path.isdir(os.path.join(host_dir, e)))
    for directory in dirs:
        for name in _entries(directory):
            path = os.path.join(directory, name)
            if is_temp_name(name) and os.path.isfile(path):
                yield path


def is_temp_name(name: str) -> bool:
    return (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)) or \
        name.endswith((".dat~", ".list~"))


def _entries(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def check_temp_file(path: str, repair: bool) -> dict[str, Any] | None:
    """The warning for one temporary file; with ``repair``, removed if stale."""
    try:
        age = time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return None  # its writer finished meanwhile
    entry: dict[str, Any] = {"file": path, "age": round(age), "removed": False}
    stale = age >= STALE_AFTER
    if repair and stale:
        try:
            # Looked at again just before: a writer may have touched it since.
            if time.time() - os.lstat(path).st_mtime >= STALE_AFTER:
                os.unlink(path)
                entry["removed"] = True
        except FileNotFoundError:
            return None
    if entry["removed"]:
        entry["warning"] = f"removed a temporary file left by a killed writer ({age_text(age)} old)"
    elif stale:
        entry["warning"] = (f"temporary file left by a killed writer ({age_text(age)} old); "
                            "verify --repair removes it")
    else:
        entry["warning"] = (f"temporary file {age_text(age)} old: a writer may still be busy "
                            "with it (verify --repair removes it after an hour)")
    return entry


# ---------------------------------------------------------------------------
# verify


def repair_list(dm: DataManager, f: StoreFile, err: CorruptFileError) -> dict[str, Any]:
    """Keep the damaged list beside it, rewrite it with its readable items; the report
    (``repaired`` False if the store left the list alone, and then no copy is kept)."""
    backup = damaged_copy_name(err.filename)
    try:
        os.link(err.filename, backup)
    except OSError:
        shutil.copy2(err.filename, backup)
    rec = DataManager(dm.data_path).list_recover(f.user, f.host, f.store, repair=True)
    if rec is None or not rec.repaired:
        with contextlib.suppress(OSError):
            os.unlink(backup)
        return {"repaired": False}
    return {"repaired": True, "kept_items": len(rec.items),
            "damaged_regions": len(rec.damaged), "original": backup}


def check_index(dm: DataManager, f: StoreFile, repair: bool) -> dict[str, Any] | None:
    """The report on a list's ``.lidx`` that does not match the list (rebuilt
    with ``repair``), or None when it matches or there is none."""
    problem = dm.list_index_problem(f.user, f.host, f.store)
    if problem is None:
        return None
    path = lidx.index_path(store_file_path(dm, f))
    repaired = bool(repair and dm.list_reindex(f.user, f.host, f.store))
    return {"file": path, "error": problem, "repaired": repaired}


def report_line(entry: dict[str, Any]) -> str:
    """``file:line:column: error``, and what the repair did."""
    line = f"{entry['file']}:{entry['line']}:{entry['column']}: {entry['error']}"
    if entry.get("repaired"):
        line += (f" (repaired: kept {entry['kept_items']} items, dropped "
                 f"{entry['damaged_regions']} damaged part(s); original saved as "
                 f"{entry['original']})")
    return line


def name_warnings(dm: DataManager, files: list[StoreFile]) -> list[dict[str, Any]]:
    """A warning for each host directory and each file of a name Prosody never makes."""
    out = []
    hosts_seen: set[Name] = set()
    for f in files:
        if f.host is not None and f.host not in hosts_seen:
            hosts_seen.add(f.host)
            text = name_warning(f.host, "host")
            if text:
                out.append({"file": dm.host_directory(f.host), "warning": text})
        if f.user is not None:
            text = name_warning(f.user, "user")
            if text:
                out.append({"file": store_file_path(dm, f), "warning": text})
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    hosts = parse_hosts(args.host)
    check_filters(dm, hosts, None)
    plan = plan_export(dm, hosts)
    files = plan.files
    sizes = file_sizes(dm, files)
    bar = Progress(sum(sizes), "verify", unit="bytes")
    bad = []
    warnings = name_warnings(dm, files)
    unexportable = [{"file": p.path, "error": p.reason} for p in plan.problems]
    indexes = []
    for f, size in zip(files, sizes):
        check = check_file(dm, f)
        if check.error is not None:
            bad.append((f, check.error))
        if check.unexportable is not None:
            unexportable.append({"file": check.unexportable.path,
                                 "error": check.unexportable.reason})
        if f.type == "list" and check.error is None:
            index_entry = check_index(dm, f, args.repair)
            if index_entry:
                indexes.append(index_entry)
        bar.update(step=size)
    bar.close()
    temps = [entry for entry in (check_temp_file(path, args.repair)
                                 for path in temp_files(dm, hosts)) if entry]
    results = []
    unfixed = 0
    for f, err in bad:
        entry: dict[str, Any] = {"file": err.filename, "line": err.lineno, "column": err.colno,
                                 "error": describe(err).split(": ", 1)[-1]}
        entry["repaired"] = False
        if args.repair and f.type == "list":
            entry.update(repair_list(dm, f, err))
        if not entry["repaired"]:
            unfixed += 1
        results.append(entry)
    if args.json:
        print_json({"files": len(files) + len(plan.problems), "unreadable": results,
                    "unexportable": unexportable, "warnings": warnings,
                    "temp_files": temps, "indexes": indexes})
    else:
        for entry in results:
            print_line(one_line(report_line(entry)))
        for entry in indexes:
            fixed = " (rebuilt)" if entry["repaired"] else " (prosody-store reindex rebuilds it)"
            print_line(one_line(f"{entry['file']}: index does not match its list: "
                                f"{entry['error']}{fixed}"))
        for entry in unexportable:
            print_line(one_line(f"{entry['file']}: cannot be exported: {entry['error']}"))
        for entry in warnings + temps:
            print_line(one_line(f"{entry['file']}: warning: {entry['warning']}"))
    total = len(files) + len(plan.problems)
    problems = []
    if unfixed:
        problems.append(f"{unfixed} of {total} files unreadable"
                        + ("; only lists with readable items can be repaired" if args.repair else
                           " (verify --repair saves what can be read of damaged lists)"))
    unfixed_indexes = sum(1 for entry in indexes if not entry["repaired"])
    if unfixed_indexes:
        problems.append(f"{unfixed_indexes} list indexes do not match their lists")
    if unexportable:
        problems.append(f"{len(unexportable)} of {total} files cannot be exported "
                        "(export --skip-damaged backs up the rest)")
    if problems:
        raise CommandError("; ".join(problems))
    return 0


# ---------------------------------------------------------------------------
# reindex


def cmd_reindex(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    stores = [cli_name(s) for s in args.store] if args.store else None
    hosts = parse_hosts(args.host)
    check_filters(dm, hosts, stores)
    files = [f for f in iter_store_files(dm, hosts, stores) if f.type == "list"]
    sizes = file_sizes(dm, files)
    bar = Progress(sum(sizes), "reindex", unit="bytes")
    rebuilt = 0
    for f, size in zip(files, sizes):
        if dm.list_reindex(f.user, f.host, f.store):
            rebuilt += 1
        bar.update(step=size)
    bar.close()
    if args.json:
        print_json({"lists": len(files), "rebuilt": rebuilt})
    elif args.verbose:
        print(f"{len(files)} lists, {rebuilt} indexes written")
    return 0


# ---------------------------------------------------------------------------
# The parser


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Add verify and reindex."""
    p = add_command(
        commands, "verify", common, "read every file, report unreadable ones",
        "Read every .dat and .list and print each unreadable one as file:line:column: "
        "error, and each one export cannot back up as file: cannot be exported: why "
        "(exit 1 if there is any). Warnings (exit 0): names Prosody never makes "
        "(empty, not UTF-8, refused by nameprep), temporary files left by a killed "
        "writer. --repair rewrites each damaged list "
        "with the items that can be read, keeping the damaged original beside it as "
        "<file>.damaged-<UTC time>, and removes temporary files older than an hour.",
        "  prosody-store verify || echo 'damaged files!'\n"
        "  prosody-store verify --host example.com --repair\n", cmd_verify)
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable)")
    p.add_argument("--repair", action="store_true",
                   help="save the readable items of damaged lists; remove temporary files "
                        "older than an hour")
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
