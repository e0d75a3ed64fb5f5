"""What every command of ``prosody-store`` shares: its error, its settings,
reading names from argv and writing names and JSON to stdout."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from prosody_store.config import DEFAULT_DATA_PATH, ConfigError, read_config
from prosody_store.datamanager import CorruptFileError, DataManager
from prosody_store.errors import Error
from prosody_store.export import RecordError
from prosody_store.paths import GLOBAL_HOST, Name, StoreError
from prosody_store.serialization import LuaSyntaxError

RAW = argparse.RawDescriptionHelpFormatter

DATA_ERRORS = (CorruptFileError, StoreError, LuaSyntaxError, RecordError)
"""The library's errors about data that a command reports in one line (exit 1)."""

Handler = Callable[[argparse.Namespace], int]


class CommandError(Error):
    """A problem to report on one line; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------
# Where the data is


def location_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--data-path and --prosody-config, before or after the command.

    ``default`` is None on the main parser and ``argparse.SUPPRESS`` on the
    commands, so that an option given before the command is not reset by the
    command's parser.
    """
    parser.add_argument("--data-path", metavar="DIR", default=default,
                        help="Prosody's data directory (default: $PROSODY_DATA_PATH, "
                             f"else the config's data_path, else {DEFAULT_DATA_PATH})")
    parser.add_argument("--prosody-config", metavar="FILE", default=default,
                        help="take data_path, admins and hosts from this prosody.cfg.lua "
                             "(read as data, never run)")


def read_prosody_config(path: str):
    """The parsed prosody.cfg.lua; a CommandError if it cannot be read."""
    try:
        return read_config(path)
    except ConfigError as err:
        raise CommandError(str(err)) from None


class Settings:
    """Where the data is and who administers it: flags, then environment, then config."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config = None
        if args.prosody_config:
            self.config = read_prosody_config(args.prosody_config)
            for problem in self.config.problems:
                print(f"prosody-store: warning: {problem}", file=sys.stderr)
        self.data_path = (args.data_path or os.environ.get("PROSODY_DATA_PATH")
                          or (self.config.data_path if self.config else DEFAULT_DATA_PATH))
        if not os.path.isdir(self.data_path):
            raise CommandError(f"data directory {self.data_path} does not exist")


def data_manager(args: argparse.Namespace, **options: Any) -> DataManager:
    """The DataManager of the command's data directory (which must exist)."""
    return DataManager(Settings(args).data_path, **options)


# ---------------------------------------------------------------------------
# Names from argv


def cli_name(text: str) -> Name:
    """A name from argv: str if its bytes are UTF-8, else bytes."""
    raw = os.fsencode(text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def parse_host(text: str) -> Name | None:
    """A host given on the command line (``_global`` is Prosody's host-less data)."""
    return None if text == GLOBAL_HOST else cli_name(text)


def parse_hosts(texts: list[str]) -> list[Name | None] | None:
    """The hosts of repeated ``--host`` options; None (every host) if there are none."""
    return [parse_host(h) for h in texts] if texts else None


def parse_jid(text: str) -> tuple[Name | None, Name | None]:
    """``user@host`` -> (user, host); ``host`` -> (None, host).  ``_global`` is host None."""
    user, sep, host = text.rpartition("@")
    if not host:
        raise CommandError(f"{text!r} is not a JID (user@host, or host for a store without user)",
                           2)
    if sep and not user:
        raise CommandError(f"{text!r}: empty user name", 2)
    return (cli_name(user) if sep else None), parse_host(host)


# ---------------------------------------------------------------------------
# Output


def show_name(name: Name | None) -> str:
    """A name as text for messages (``_global`` for the host-less data)."""
    if name is None:
        return GLOBAL_HOST
    return name if isinstance(name, str) else os.fsdecode(name)


def jid_text(user: Name | None, host: Name | None) -> str:
    return show_name(host) if user is None else f"{show_name(user)}@{show_name(host)}"


def print_json(obj: Any) -> None:
    """One line of compact JSON on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def describe(err: BaseException) -> str:
    """One line for an error; for a damaged file ``path:line:col: message``."""
    if isinstance(err, CorruptFileError):
        msg = getattr(err, "msg", None) or str(err.error)
        msg = str(msg).splitlines()[0] if str(msg) else "syntax error"
        return f"{err.filename}:{err.lineno}:{err.colno}: {msg}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# ---------------------------------------------------------------------------
# The parser


def add_command(commands: argparse._SubParsersAction, name: str,
                common: argparse.ArgumentParser, help: str, description: str, examples: str,
                handler: Handler) -> argparse.ArgumentParser:
    """A subcommand with the location options, a description and examples."""
    parser = commands.add_parser(name, help=help, description=description, parents=[common],
                                 epilog="examples:\n" + examples, formatter_class=RAW)
    parser.set_defaults(handler=handler)
    return parser
