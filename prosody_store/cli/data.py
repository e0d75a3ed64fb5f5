"""The data commands of ``prosody-store``: get, put, append, delete, and the
listings hosts, users, stores."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Sequence

from prosody_store import json as prosody_json
from prosody_store import serialization
from prosody_store.cli.common import (
    CommandError,
    add_command,
    check_filters,
    cli_name,
    data_manager,
    describe,
    jid_text,
    parse_host,
    parse_jid,
    print_json,
    require_host,
    show_name,
)
from prosody_store.export import host_names, store_names, to_json
from prosody_store.formats import FORMATS, Format
from prosody_store.paths import GLOBAL_HOST, Name, name_bytes


# ---------------------------------------------------------------------------
# Formats


def _lua_input(data: bytes, max_depth: int) -> Any:
    """Lua data from stdin: surrounding blanks and a leading ``return`` are cut
    before the text is read (error positions count from there)."""
    text = data.strip()
    if text.startswith(b"return") and not text[6:7].isalnum():
        text = text[6:]
    return serialization.loads(text, max_depth=max_depth)


COMMAND_FORMATS: dict[str, Format] = {
    **FORMATS,
    # The CLI writes Prosody's own JSON (util.json's bytes for every number),
    # where the HTTP service writes strict JSON.
    "json": dataclasses.replace(FORMATS["json"], encode=prosody_json.dumpb,
                                encode_list=prosody_json.iter_dumpb_array),
    "lua": dataclasses.replace(FORMATS["lua"], decode=_lua_input),
}
"""The formats of get/put/append: :data:`prosody_store.formats.FORMATS`, with
the command line's own bytes where they differ from the HTTP service's."""

INPUT_NAMES = {"json": "JSON", "lua": "Lua data"}
"""How an error message names the input of each format."""

MAX_DEPTH = serialization.DEFAULT_MAX_DEPTH
"""How deep a value on stdin may nest."""


def read_stdin_value(fmt: Format) -> Any:
    """The value on stdin; a CommandError if there is none or it is invalid."""
    if sys.stdin is None:  # closed (<&-)
        raise CommandError("no data on stdin")
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise CommandError("no data on stdin")
    try:
        return fmt.decode(data, MAX_DEPTH)
    except ValueError as err:
        raise CommandError(f"stdin is not valid {INPUT_NAMES.get(fmt.name, fmt.name)}: "
                           f"{describe(err)}") from None


# ---------------------------------------------------------------------------
# get / put / append / delete


def cmd_get(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    user, host = parse_jid(args.jid)
    store = cli_name(args.store)
    fmt = COMMAND_FORMATS[args.format]
    out = sys.stdout.buffer
    if args.type in (None, "keyval"):
        value = dm.load(user, host, store)
        if value is not None:
            out.write(fmt.encode(value) + b"\n")
            return 0
    if args.type in (None, "list"):
        with dm.list_open(user, host, store) as view:
            if view.exists:
                for chunk in fmt.encode_list(view):
                    out.write(chunk)
                out.write(b"\n")
                return 0
    require_host(dm, host)
    raise CommandError(f"no {args.type or 'data'} in store {show_name(store)!r} "
                       f"for {jid_text(user, host)}")


CREATE_HOST_HINT = " (--create-host creates it)"


def cmd_put(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    user, host = parse_jid(args.jid)
    if not args.create_host:
        require_host(dm, host, CREATE_HOST_HINT)
    value = read_stdin_value(COMMAND_FORMATS[args.format])
    if not isinstance(value, (dict, list)):
        raise CommandError("put needs a table (a JSON object or array, a Lua table)")
    try:
        dm.store(user, host, cli_name(args.store), value)
    except (TypeError, ValueError) as err:
        raise CommandError(f"cannot store this value: {err}") from None
    return 0


def cmd_append(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    user, host = parse_jid(args.jid)
    if not args.create_host:
        require_host(dm, host, CREATE_HOST_HINT)
    value = read_stdin_value(COMMAND_FORMATS[args.format])
    if value is None or value is False:
        raise CommandError("cannot append null or false (Prosody ignores them)")
    try:
        dm.list_append(user, host, cli_name(args.store), value)
    except (TypeError, ValueError) as err:
        raise CommandError(f"cannot store this value: {err}") from None
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    dm = data_manager(args)
    user, host = parse_jid(args.jid)
    store = cli_name(args.store)
    require_host(dm, host)  # nothing to delete is fine; a host that is not there, a typo
    if args.type in (None, "keyval"):
        dm.store(user, host, store, None)
    if args.type in (None, "list"):
        dm.list_store(user, host, store, [])
    return 0


# ---------------------------------------------------------------------------
# Listings


def print_names(args: argparse.Namespace, names: Sequence[Name | None]) -> int:
    """One name a line (``_global`` for None), or with ``--json`` a JSON array."""
    if args.json:
        print_json([to_json(n) for n in names])
    else:
        out = sys.stdout.buffer
        for n in names:
            out.write((name_bytes(n) if n is not None else GLOBAL_HOST.encode()) + b"\n")
    return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    return print_names(args, host_names(dm.data_path))


def cmd_users(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    host = parse_host(args.host)
    require_host(dm, host)
    stores = [cli_name(args.store)] if args.store else store_names(dm, host)
    types = [args.type] if args.type else ["keyval", "list"]
    users = {name_bytes(u): u for s in stores for t in types for u in dm.users(host, s, t)}
    if args.store and not users:
        check_filters(dm, [host], stores)  # a --store the host does not have is an error
    return print_names(args, [users[k] for k in sorted(users)])


def cmd_stores(args: argparse.Namespace) -> int:
    dm = data_manager(args, write_index=False)
    user, host = parse_jid(args.jid)
    require_host(dm, host)
    types = [args.type] if args.type else ["keyval", "list"]
    if user is None:
        names = set(store_names(dm, host)) if not args.type else set(
            dm.stores(None, host, args.type)) | {
            s for s in dm.stores(True, host) if any(True for _ in dm.users(host, s, args.type))}
    else:
        names = {s for t in types for s in dm.stores(user, host, t)}
    # Not inline: as the argument, mypy would sort list[Name | None] (print_names' type).
    ordered = sorted(names, key=name_bytes)
    return print_names(args, ordered)


# ---------------------------------------------------------------------------
# The parser


CREATE_HOST_HELP = "create the host's directory if the data directory does not have it"

TYPE_OPTION: dict[str, Any] = dict(choices=["keyval", "list"],
                                   help="only keyval (.dat) or only list (.list) data")
"""``--type``, of every command that can do only one kind of data."""


def format_option() -> dict[str, Any]:
    """``--format``: a name of :data:`COMMAND_FORMATS`, the first the default."""
    return dict(choices=list(COMMAND_FORMATS), default=next(iter(COMMAND_FORMATS)),
                help="json (Prosody's JSON conventions, default) or lua (Prosody's "
                     "serialization)")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Add get, put, append, delete, hosts, users and stores."""
    p = add_command(
        commands, "get", common, "print a store of a user (or of a host)",
        "Print the keyval data of JID in STORE, else its list data, as the HTTP API "
        "does. Exit 1 if there is none.",
        "  prosody-store get alice@example.com roster\n"
        "  prosody-store get alice@example.com archive | jq '.[-1]'\n"
        "  prosody-store get muc.example.com persistent --format lua\n"
        "  prosody-store get admin@example.com@_global adhoc_state   # host-less data\n",
        cmd_get)
    p.add_argument("jid", metavar="JID", help="user@host, or host for a store without user")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **format_option())
    p.add_argument("--type", **TYPE_OPTION)

    p = add_command(
        commands, "put", common, "replace a keyval store with stdin",
        "Replace the keyval data of JID in STORE with the table on stdin (atomic). "
        "{} or [] removes it, as in Prosody. A host the data directory does not "
        "have is an error (a typo, usually) unless --create-host.",
        "  echo '{\"password\":\"s3cret\"}' | prosody-store put alice@example.com accounts\n"
        "  prosody-store put example.com motd --format lua < motd.lua\n"
        "  echo '{\"a\":1}' | prosody-store put alice@new.example settings --create-host\n",
        cmd_put)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **format_option())
    p.add_argument("--create-host", action="store_true", help=CREATE_HOST_HELP)

    p = add_command(
        commands, "append", common, "append stdin to a list store",
        "Append the value on stdin as one item to the list of JID in STORE. A host "
        "the data directory does not have is an error unless --create-host.",
        "  echo '{\"when\":1700000000,\"note\":\"hi\"}' | "
        "prosody-store append alice@example.com notes\n", cmd_append)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", **format_option())
    p.add_argument("--create-host", action="store_true", help=CREATE_HOST_HELP)

    p = add_command(
        commands, "delete", common, "remove a store of a user",
        "Remove the keyval and list data of JID in STORE (nothing there is fine; a "
        "host the data directory does not have is an error).",
        "  prosody-store delete alice@example.com offline\n"
        "  prosody-store delete alice@example.com archive --type list\n", cmd_delete)
    p.add_argument("jid", metavar="JID")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--type", **TYPE_OPTION)

    p = add_command(
        commands, "hosts", common, "list the hosts with data",
        "List the hosts of the data directory (_global is Prosody's host-less data).",
        "  prosody-store hosts\n  prosody-store hosts --json\n", cmd_hosts)
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = add_command(
        commands, "users", common, "list the users of a host",
        "List the users that have data on HOST (in STORE, of a type). A HOST or STORE "
        "that the data directory does not have is an error (exit 1).",
        "  prosody-store users example.com --store accounts\n"
        "  prosody-store users example.com --store archive --type list | wc -l\n",
        cmd_users)
    p.add_argument("host", metavar="HOST")
    p.add_argument("--store", metavar="STORE")
    p.add_argument("--type", **TYPE_OPTION)
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = add_command(
        commands, "stores", common, "list the stores of a user or a host",
        "List the stores where user@host has data, or every store of HOST.",
        "  prosody-store stores alice@example.com\n  prosody-store stores example.com\n",
        cmd_stores)
    p.add_argument("jid", metavar="JID|HOST")
    p.add_argument("--type", **TYPE_OPTION)
    p.add_argument("--json", action="store_true", help="a JSON array")
