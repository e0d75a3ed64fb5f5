"""The ``prosody-store`` command: the parser, and running a command.

Each command is a function ``cmd_<name>(args) -> int`` that its module
registers with ``add_commands`` (or ``add_parser``); :func:`build_parser`
collects them.  Errors are one line on stderr: exit status 1 when the job
found a problem, 2 for usage errors.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Sequence

import prosody_store
from prosody_store.cli import archive, backup, data, migrate, serve, user, verify
from prosody_store.cli.common import (
    DATA_ERRORS,
    RAW,
    CommandError,
    Handler,
    Parser,
    describe,
    describe_os_error,
    location_options,
    report,
)

EPILOG = """\
examples:
  prosody-store get alice@example.com roster | jq .
  prosody-store users example.com --store accounts
  prosody-store user add alice@example.com < password.txt
  prosody-store export -o /backup/prosody.jsonl && prosody-store --data-path /srv/new import /backup/prosody.jsonl
  prosody-store archive expire --older-than 90d
  prosody-store verify || echo "damaged files"
  prosody-store serve --data-path fixtures/demo --admin admin@localhost
  prosody-store serve --prosody-config /etc/prosody/prosody.cfg.lua --listen 127.0.0.1:5280

Each command has its own --help with examples.  Quiet on success; --json for
machine-readable output; a progress bar on stderr only when it is a terminal.
The data directory: --data-path, else $PROSODY_DATA_PATH, else the data_path of
--prosody-config, else /var/lib/prosody.  A JID is user@host, or host alone for
a store without user; the host _global is Prosody's host-less data.

Exit status: 0 success, 1 the job found a problem, 2 usage error.  Every error
is one line on stderr, e.g. "prosody-store: cannot list
/var/lib/prosody/example%2ecom/roster: Permission denied" (likewise read-only
file system, no space left, not a directory).  put and append create a host
the data directory does not have only with --create-host.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``prosody-store`` and all its commands."""
    # Typed as ArgumentParser, so that its commands (Parsers, made with type(parser))
    # take the plain ArgumentParser ``common`` as a parent: typeshed gives the
    # parents and the command parsers one type.
    parser: argparse.ArgumentParser = Parser(
        prog="prosody-store",
        description="Read and write a Prosody data directory (/var/lib/prosody) without Prosody.",
        epilog=EPILOG, formatter_class=RAW)
    location_options(parser, None)
    parser.add_argument("--version", action="version",
                        version=f"prosody-store {prosody_store.__version__} "
                                f"(codec: {prosody_store.IMPLEMENTATION})")
    common = argparse.ArgumentParser(add_help=False)
    location_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    data.add_commands(commands, common)
    backup.add_commands(commands, common)
    archive.add_commands(commands, common)
    verify.add_commands(commands, common)
    migrate.add_parser(commands, common)
    serve.add_parser(commands, common)
    user.add_parser(commands, common)
    return parser


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit finds no broken pipe."""
    with contextlib.suppress(OSError, ValueError):
        target = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, target)
        finally:
            os.close(null)


def flush_or_silence() -> None:
    """Flush stdout after an error; if that fails too (a full disk, say),
    silence it, so that the flush at exit adds no second report."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        silence_stdout()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # a failed write to stdout is reported here, not at exit
        return status
    except CommandError as err:
        report(str(err))
        flush_or_silence()
        return err.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        silence_stdout()
        return 1
    except DATA_ERRORS as err:
        report(describe(err))
        flush_or_silence()
        return 1
    except OSError as err:  # the file system's refusals: permission, read-only, full...
        report(describe_os_error(err))
        flush_or_silence()
        return 1


if __name__ == "__main__":
    sys.exit(main())
