"""The data commands of ``prosody-store``: get/put/append/delete, listings,
export/import, archive expire, verify, reindex.  See :mod:`prosody_store.cli`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import IO, Any, Iterator

from prosody_store import json as pjson
from prosody_store.archive import expire_list, parse_duration
from prosody_store.datamanager import CorruptFileError, DataManager
from prosody_store.export import (
    RecordError,
    StoreFile,
    cli_name,
    export,
    host_names,
    import_records,
    iter_store_files,
    parse_host,
    store_names,
    to_json,
)
from prosody_store.paths import GLOBAL_HOST, Name, StoreError, name_bytes
from prosody_store.serialization import LuaSyntaxError, dumps, loads

RAW = argparse.RawDescriptionHelpFormatter


def _error_cls():
    from prosody_store.cli import CommandError
    return CommandError


def fail(message: str, status: int = 1):
    return _error_cls()(message, status)


# ---------------------------------------------------------------------------
# Output helpers


def show_name(name: Name | None) -> str:
    if name is None:
        return GLOBAL_HOST
    return name if isinstance(name, str) else os.fsdecode(name)


def jid_text(user: Name | None, host: Name | None) -> str:
    return show_name(host) if user is None else f"{show_name(user)}@{show_name(host)}"


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def describe(err: BaseException) -> str:
    """One line for a damaged file: ``path:line:col: message``."""
    if isinstance(err, CorruptFileError):
        msg = getattr(err, "msg", None) or str(err.error)
        msg = str(msg).splitlines()[0] if str(msg) else "syntax error"
        return f"{err.filename}:{err.lineno}:{err.colno}: {msg}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class Progress:
    """A progress bar on stderr, only when stderr is a terminal (never in cron)."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.done = 0
        self._last = 0.0

    def update(self, done: int | None = None, step: int = 1) -> None:
        self.done = self.done + step if done is None else done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}%")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# ---------------------------------------------------------------------------
# Arguments


def parse_jid(text: str) -> tuple[Name | None, Name | None]:
    """``user@host`` -> (user, host); ``host`` -> (None, host).  ``_global`` is host None."""
    user, sep, host = text.rpartition("@")
    if not host:
        raise fail(f"{text!r} is not a JID (user@host, or host for a store without user)", 2)
    if sep and not user:
        raise fail(f"{text!r}: empty user name", 2)
    return (cli_name(user) if sep else None), parse_host(host)


def _dm(args: argparse.Namespace, **kw) -> DataManager:
    from prosody_store.cli import Settings
    return DataManager(Settings(args).data_path, **kw)


def _hosts_arg(args) -> list | None:
    return [parse_host(h) for h in args.host] if args.host else None


# ---------------------------------------------------------------------------
# get / put / append / delete


def _read_stdin_value(fmt: str) -> Any:
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise fail("no data on stdin")
    try:
        if fmt == "lua":
            text = data.strip()
            if text.startswith(b"return") and not text[6:7].isalnum():
                text = text[6:]
            return loads(text)
        return pjson.loads(data)
    except ValueError as err:
        raise fail(f"stdin is not valid {'Lua data' if fmt == 'lua' else 'JSON'}: "
                   f"{describe(err)}") from None


def cmd_get(args) -> int:
    dm = _dm(args, write_index=False)
    user, host = parse_jid(args.jid)
    store = cli_name(args.store)
    out = sys.stdout.buffer
    if args.type in (None, "keyval"):
        value = dm.load(user, host, store)
        if value is not None:
            out.write((dumps(value) + "\n").encode() if args.format == "lua"
                      else pjson.dumpb(value) + b"\n")
            return 0
    if args.type in (None, "list"):
        view = dm.list_open(user, host, store)
        if view is not None:
            with view:
                if args.format == "lua":
                    out.write((dumps(list(view)) + "\n").encode())
                else:
                    for chunk in pjson.iter_dumpb_array(view):
                        out.write(chunk)
                    out.write(b"\n")
            return 0
    raise fail(f"no {args.type or 'data'} in store {show_name(store)!r} "
               f"for {jid_text(user, host)}")


def cmd_put(args) -> int:
    dm = _dm(args)
    user, host = parse_jid(args.jid)
    value = _read_stdin_value(args.format)
    if not isinstance(value, (dict, list)):
        raise fail("put needs a table (a JSON object or array, a Lua table)")
    try:
        dm.store(user, host, cli_name(args.store), value)
    except (TypeError, ValueError) as err:
        raise fail(f"cannot store this value: {err}") from None
    return 0


def cmd_append(args) -> int:
    dm = _dm(args)
    user, host = parse_jid(args.jid)
    value = _read_stdin_value(args.format)
    if value is None or value is False:
        raise fail("cannot append null or false (Prosody ignores them)")
    try:
        dm.list_append(user, host, cli_name(args.store), value)
    except (TypeError, ValueError) as err:
        raise fail(f"cannot store this value: {err}") from None
    return 0


def cmd_delete(args) -> int:
    dm = _dm(args)
    user, host = parse_jid(args.jid)
    store = cli_name(args.store)
    if args.type in (None, "keyval"):
        dm.store(user, host, store, None)
    if args.type in (None, "list"):
        dm.list_store(user, host, store, [])
    return 0


# ---------------------------------------------------------------------------
# Listings


def _print_names(args, names: list, json_names: list | None = None) -> int:
    if args.json:
        print_json(json_names if json_names is not None else [to_json(n) for n in names])
    else:
        out = sys.stdout.buffer
        for n in names:
            out.write((name_bytes(n) if n is not None else GLOBAL_HOST.encode()) + b"\n")
    return 0


def cmd_hosts(args) -> int:
    dm = _dm(args, write_index=False)
    return _print_names(args, host_names(dm.data_path))


def cmd_users(args) -> int:
    dm = _dm(args, write_index=False)
    host = parse_host(args.host)
    if not os.path.isdir(dm.host_directory(host)):
        raise fail(f"no data for host {args.host!r}")
    stores = [cli_name(args.store)] if args.store else store_names(dm, host)
    types = [args.type] if args.type else ["keyval", "list"]
    users = {name_bytes(u): u for s in stores for t in types for u in dm.users(host, s, t)}
    return _print_names(args, [users[k] for k in sorted(users)])


def cmd_stores(args) -> int:
    dm = _dm(args, write_index=False)
    user, host = parse_jid(args.jid)
    types = [args.type] if args.type else ["keyval", "list"]
    if user is None:
        names = set(store_names(dm, host)) if not args.type else set(
            dm.stores(None, host, args.type)) | {
            s for s in dm.stores(True, host) if any(True for _ in dm.users(host, s, args.type))}
    else:
        names = {s for t in types for s in dm.stores(user, host, t)}
    return _print_names(args, sorted(names, key=name_bytes))


# ---------------------------------------------------------------------------
# export / import


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_export(args) -> int:
    dm = _dm(args, write_index=False)
    hosts = _hosts_arg(args)
    stores = [cli_name(s) for s in args.store] if args.store else None
    files = list(iter_store_files(dm, hosts, stores))
    if hosts and not files:
        known = {name_bytes(h) if h is not None else None for h in host_names(dm.data_path)}
        missing = [h for h in hosts if (name_bytes(h) if h is not None else None) not in known]
        if missing:
            raise fail(f"no data for host {show_name(missing[0])!r}")
    bar = Progress(len(files), "export")
    try:
        with _output(args.output) as out:
            n = export(dm, out, files=files, progress=lambda f: bar.update())
    except (CorruptFileError, LuaSyntaxError) as err:
        raise fail(f"cannot export: {describe(err)}") from None
    finally:
        bar.close()
    if args.json:
        print_json({"records": n}) if args.output not in (None, "-") else None
    return 0


def cmd_import(args) -> int:
    dm = _dm(args)
    if args.file in (None, "-"):
        source = contextlib.nullcontext(sys.stdin.buffer)
        total = 0
    else:
        try:
            source = open(args.file, "rb")
        except OSError as err:
            raise fail(f"cannot read {args.file}: {err.strerror}") from None
        total = os.fstat(source.fileno()).st_size
    bar = Progress(total, "import", enabled=None if total else False)
    try:
        with source as f:
            stats = import_records(dm, f, dry_run=args.dry_run,
                                   progress=lambda n: bar.update(n))
    except RecordError as err:
        raise fail(str(err)) from None
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
# archive expire


def cmd_archive_expire(args) -> int:
    try:
        after = parse_duration(args.older_than)
    except ValueError as err:
        raise fail(f"--older-than: {err}", 2) from None
    dm = _dm(args)
    if after is None:
        return 0  # "never", as archive_expires_after = "never"
    cutoff = (args.now if args.now is not None else time.time()) - after
    stores = [cli_name(s) for s in (args.store or ["archive"])]
    files = [f for f in iter_store_files(dm, _hosts_arg(args), stores) if f.type == "list"]
    bar = Progress(len(files), "expire")
    report = []
    problems = 0
    total = 0
    for f in files:
        try:
            res = expire_list(dm, f.user, f.host, f.store, cutoff, dry_run=args.dry_run)
        except (CorruptFileError, LuaSyntaxError) as err:
            print(f"prosody-store: skipped {describe(err)}", file=sys.stderr)
            problems += 1
            continue
        finally:
            bar.update()
        if res is None or not res.dropped:
            continue
        total += res.dropped
        report.append((f, res))
    bar.close()
    if args.json:
        print_json({"cutoff": cutoff, "dry_run": args.dry_run, "dropped": total,
                    "unreadable": problems,
                    "lists": [{"host": to_json(f.host), "user": to_json(f.user),
                               "store": to_json(f.store), "dropped": r.dropped, "kept": r.kept}
                              for f, r in report]})
    elif args.verbose or args.dry_run:
        verb = "would drop" if args.dry_run else "dropped"
        for f, r in report:
            print(f"{jid_text(f.user, f.host)} {show_name(f.store)}: {verb} {r.dropped}, "
                  f"kept {r.kept}")
    if problems:
        raise fail(f"{problems} unreadable list(s) left as they were; see 'verify'")
    return 0


# ---------------------------------------------------------------------------
# verify / reindex


def _check(dm: DataManager, f: StoreFile) -> CorruptFileError | None:
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


def _backup_name(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.lexists(name):
        n += 1
        name = f"{path}.damaged-{stamp}-{n}"
    return name


def cmd_verify(args) -> int:
    dm = _dm(args, write_index=False)
    files = list(iter_store_files(dm, _hosts_arg(args)))
    bar = Progress(len(files), "verify")
    bad = []
    for f in files:
        err = _check(dm, f)
        bar.update()
        if err is not None:
            bad.append((f, err))
    bar.close()
    results = []
    unfixed = 0
    for f, err in bad:
        entry = {"file": err.filename, "line": err.lineno, "column": err.colno,
                 "error": describe(err).split(": ", 1)[-1]}
        if args.repair and f.type == "list":
            backup = _backup_name(err.filename)
            try:
                os.link(err.filename, backup)
            except OSError:
                import shutil
                shutil.copy2(err.filename, backup)
            rec = DataManager(dm.data_path).list_recover(f.user, f.host, f.store, repair=True)
            entry.update(repaired=True, kept_items=len(rec.items) if rec else 0,
                         damaged_regions=len(rec.damaged) if rec else 0, original=backup)
        else:
            unfixed += 1
            entry["repaired"] = False
        results.append(entry)
    if args.json:
        print_json({"files": len(files), "unreadable": results})
    else:
        for e in results:
            line = f"{e['file']}:{e['line']}:{e['column']}: {e['error']}"
            if e.get("repaired"):
                line += (f" (repaired: kept {e['kept_items']} items, dropped "
                         f"{e['damaged_regions']} damaged part(s); original saved as "
                         f"{e['original']})")
            print(line)
    if unfixed:
        raise fail(f"{unfixed} of {len(files)} files unreadable"
                   + ("; only lists can be repaired" if args.repair else
                      " (verify --repair saves what can be read of damaged lists)"))
    return 0


def cmd_reindex(args) -> int:
    dm = _dm(args)
    stores = [cli_name(s) for s in args.store] if args.store else None
    files = [f for f in iter_store_files(dm, _hosts_arg(args), stores) if f.type == "list"]
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


def _cmd(commands, name: str, common, help: str, description: str, examples: str,
         handler) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help, description=description, parents=[common],
                            epilog="examples:\n" + examples, formatter_class=RAW)
    p.set_defaults(handler=handler)
    return p


def add_commands(commands, common: argparse.ArgumentParser) -> None:
    fmt = dict(choices=["json", "lua"], default="json",
               help="json (Prosody's JSON conventions, default) or lua (Prosody's serialization)")
    typ = dict(choices=["keyval", "list"], help="only keyval (.dat) or only list (.list) data")

    p = _cmd(commands, "get", common, "print a store of a user (or of a host)",
             "Print the keyval data of JID in STORE, else its list data, as the HTTP API "
             "does. Exit 1 if there is none.",
             "  prosody-store get alice@example.com roster\n"
             "  prosody-store get alice@example.com archive | jq '.[-1]'\n"
             "  prosody-store get muc.example.com persistent --format lua\n"
             "  prosody-store get admin@example.com@_global adhoc_state   # host-less data\n",
             cmd_get)
    p.add_argument("jid", metavar="JID", help="user@host, or host for a store without user")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **fmt)
    p.add_argument("--type", **typ)

    p = _cmd(commands, "put", common, "replace a keyval store with stdin",
             "Replace the keyval data of JID in STORE with the table on stdin (atomic). "
             "{} or [] removes it, as in Prosody.",
             "  echo '{\"password\":\"s3cret\"}' | prosody-store put alice@example.com accounts\n"
             "  prosody-store put example.com motd --format lua < motd.lua\n", cmd_put)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **fmt)

    p = _cmd(commands, "append", common, "append stdin to a list store",
             "Append the value on stdin as one item to the list of JID in STORE.",
             "  echo '{\"when\":1700000000,\"note\":\"hi\"}' | "
             "prosody-store append alice@example.com notes\n", cmd_append)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **fmt)

    p = _cmd(commands, "delete", common, "remove a store of a user",
             "Remove the keyval and list data of JID in STORE (nothing there is fine).",
             "  prosody-store delete alice@example.com offline\n"
             "  prosody-store delete alice@example.com archive --type list\n", cmd_delete)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--type", **typ)

    p = _cmd(commands, "hosts", common, "list the hosts with data",
             "List the hosts of the data directory (_global is Prosody's host-less data).",
             "  prosody-store hosts\n  prosody-store hosts --json\n", cmd_hosts)
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = _cmd(commands, "users", common, "list the users of a host",
             "List the users that have data on HOST (in STORE, of a type).",
             "  prosody-store users example.com --store accounts\n"
             "  prosody-store users example.com --store archive --type list | wc -l\n",
             cmd_users)
    p.add_argument("host", metavar="HOST")
    p.add_argument("--store", metavar="STORE")
    p.add_argument("--type", **typ)
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = _cmd(commands, "stores", common, "list the stores of a user or a host",
             "List the stores where user@host has data, or every store of HOST.",
             "  prosody-store stores alice@example.com\n  prosody-store stores example.com\n",
             cmd_stores)
    p.add_argument("jid", metavar="JID|HOST")
    p.add_argument("--type", **typ)
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = _cmd(commands, "export", common, "write the data as JSON Lines (backup, migration)",
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

    p = _cmd(commands, "import", common, "write JSON Lines from export back",
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

    archive = commands.add_parser(
        "archive", help="message archive maintenance (expire)", parents=[common],
        description="Message archive (mod_mam) maintenance.", formatter_class=RAW,
        epilog="examples:\n  prosody-store archive expire --older-than 90d\n")
    sub = archive.add_subparsers(dest="archive_command", metavar="ACTION")
    sub.required = True
    p = _cmd(sub, "expire", common, "drop archived messages older than a duration",
             "Drop every archive item whose 'when' is older than --older-than, per user, "
             "as mod_mam's archive_expires_after does, while Prosody is stopped or "
             "mod_mam's cleanup is off. Lists are rewritten atomically with their .lidx; "
             "kept items keep their exact bytes. Quiet unless --verbose, --dry-run or "
             "--json (one line per list that lost items). Durations: N (seconds), Nmin, "
             "Nh, Nd, Nw, Nm (months of 31 days, as mod_mam), Ny; 'never' does nothing.",
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
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)  # tests: a fixed clock

    p = _cmd(commands, "verify", common, "read every file, report unreadable ones",
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

    p = _cmd(commands, "reindex", common, "rebuild the .lidx list indexes",
             "Rebuild the .lidx index (Prosody 13) of every list from the list itself; "
             "an index is only written when it differs.",
             "  prosody-store reindex\n  prosody-store reindex --host example.com "
             "--store archive\n", cmd_reindex)
    p.add_argument("--host", action="append", default=[], metavar="HOST")
    p.add_argument("--store", action="append", default=[], metavar="STORE")
    p.add_argument("--json", action="store_true", help="a JSON summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")


ERRORS = (CorruptFileError, StoreError, LuaSyntaxError, RecordError)
