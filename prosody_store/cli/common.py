"""What every command of ``prosody-store`` shares: its error, its settings,
reading names from argv and writing names and JSON to stdout."""
from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from typing import Any, Callable, NoReturn, Sequence

from prosody_store.config import DEFAULT_DATA_PATH, Config, ConfigError, read_config
from prosody_store.datamanager import CorruptFileError, DataManager
from prosody_store.errors import Error, StorageError
from prosody_store.export import RecordError
from prosody_store.paths import GLOBAL_HOST, Name, StoreError, name_bytes
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


_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """``text`` with every character that would end a line escaped (``\\n``):
    a name given on the command line cannot split an error message."""
    return text.translate(_LINE_BREAKS)


def report(message: str) -> None:
    """An error or warning: one line on stderr, ``prosody-store: message``."""
    print(f"prosody-store: {one_line(message)}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse, with each usage error on one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def storage_error(err: OSError, path: str | bytes, action: str) -> StorageError:
    """``err`` as a :class:`~prosody_store.errors.StorageError` naming ``path`` as text."""
    reason = err.strerror or (os.strerror(err.errno) if err.errno else str(err))
    return StorageError(err.errno, reason, os.fsdecode(path), action)


def describe_os_error(err: OSError) -> str:
    """One line for a failure of the file system: ``path: reason``, paths as text.

    The reason is the system's words for ``errno`` ("Permission denied",
    "Read-only file system", "No space left on device"), with a more
    particular text of the error after it.
    """
    if isinstance(err, StorageError):
        return str(err)
    reason = os.strerror(err.errno) if err.errno else (err.strerror or str(err)
                                                        or type(err).__name__)
    if err.strerror and err.strerror != reason:
        reason += f" ({err.strerror})"
    names = [os.fsdecode(f) if isinstance(f, (str, bytes)) else str(f)
             for f in (err.filename, err.filename2) if f is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


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


def read_prosody_config(path: str) -> Config:
    """The parsed prosody.cfg.lua; a CommandError if it cannot be read."""
    try:
        return read_config(path)
    except ConfigError as err:
        raise CommandError(str(err)) from None


class Settings:
    """Where the data is and who administers it: flags, then environment, then config."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config = None
        for option in ("data_path", "prosody_config"):
            if getattr(args, option, None) == "":  # --data-path "$UNSET": not the default
                raise CommandError(f"--{option.replace('_', '-')} is empty", 2)
        if args.prosody_config:
            self.config = read_prosody_config(args.prosody_config)
            for problem in self.config.problems:
                report(f"warning: {problem}")
        self.data_path = (args.data_path or os.environ.get("PROSODY_DATA_PATH")
                          or (self.config.data_path if self.config else DEFAULT_DATA_PATH))
        check_data_directory(self.data_path)


def check_data_directory(path: str) -> None:
    """A CommandError unless ``path`` is a directory; a StorageError if that
    cannot be told (permission denied is not "does not exist")."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CommandError(f"data directory {path} does not exist") from None
    except ValueError as err:  # a NUL byte
        raise CommandError(f"data directory {path!r}: {err}", 2) from None
    except OSError as err:
        raise storage_error(err, path, "access") from None
    if not stat.S_ISDIR(mode):
        raise CommandError(f"data directory {path} is not a directory")


def data_manager(args: argparse.Namespace, **options: Any) -> DataManager:
    """The DataManager of the command's data directory (which must exist)."""
    return DataManager(Settings(args).data_path, **options)


# ---------------------------------------------------------------------------
# Hosts and stores that must exist


def host_exists(dm: DataManager, host: Name | None) -> bool:
    """Whether the data directory has ``host``'s directory; a StorageError if
    that cannot be told or the name is taken by something else than a directory."""
    path = dm.host_directory(host)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as err:
        raise storage_error(err, path, "access") from None
    if not stat.S_ISDIR(mode):
        raise StorageError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path, "use")
    return True


def quoted(names: Sequence[Name | None]) -> str:
    """Names for a message: ``'a'``, ``'a', 'b'``."""
    return ", ".join(repr(show_name(n)) for n in names)


def no_host_error(hosts: list[Name | None], hint: str = "") -> CommandError:
    return CommandError(f"no data for host{'s' if len(hosts) > 1 else ''} {quoted(hosts)}"
                        + hint)


def require_host(dm: DataManager, host: Name | None, hint: str = "") -> None:
    """A CommandError (exit 1) naming ``host`` if the data directory does not have it."""
    if not host_exists(dm, host):
        raise no_host_error([host], hint)


def check_filters(dm: DataManager, hosts: list[Name | None] | None,
                  stores: list[Name] | None) -> None:
    """A CommandError (exit 1) naming every ``--host`` the data directory does
    not have and, when they all exist, every ``--store`` that none of the
    selected hosts (all of them without ``--host``) has: a filter that matches
    nothing is a typo, not an empty job."""
    if hosts:
        missing = [h for h in hosts if not host_exists(dm, h)]
        if missing:
            raise no_host_error(missing)
    if stores:
        selected = hosts if hosts else dm.hosts()
        have = {name_bytes(s) for h in selected for s in dm.store_names(h)}
        missing_stores = [s for s in stores if name_bytes(s) not in have]
        if missing_stores:
            where = f"host{'s' if len(selected) > 1 else ''} {quoted(selected)}" if hosts \
                else "any host"
            raise CommandError(f"no store{'s' if len(missing_stores) > 1 else ''} "
                               f"{quoted(missing_stores)} on {where}")


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


def print_line(text: str) -> None:
    """One line of text on stdout, names that are not UTF-8 as their own bytes
    (whatever the locale's encoding of stdout)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(os.fsencode(text) + b"\n")


def describe(err: BaseException) -> str:
    """One line for an error; for a damaged file ``path:line:col: message``."""
    if isinstance(err, CorruptFileError):
        msg = getattr(err, "msg", None) or str(err.error)
        msg = str(msg).splitlines()[0] if str(msg) else "syntax error"
        return f"{err.filename}:{err.lineno}:{err.colno}: {msg}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# ---------------------------------------------------------------------------
# The parser


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                common: argparse.ArgumentParser, help: str, description: str, examples: str,
                handler: Handler) -> argparse.ArgumentParser:
    """A subcommand with the location options, a description and examples."""
    parser = commands.add_parser(name, help=help, description=description, parents=[common],
                                 epilog="examples:\n" + examples, formatter_class=RAW)
    parser.set_defaults(handler=handler)
    return parser
