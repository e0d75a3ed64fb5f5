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

from prosody_store.cli import archive, backup, data, migrate, serve, verify
from prosody_store.cli.common import (
    DATA_ERRORS,
    RAW,
    CommandError,
    Handler,
    describe,
    location_options,
)

EPILOG = """\
examples:
  prosody-store get alice@example.com roster | jq .
  prosody-store users example.com --store accounts
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

Exit status: 0 success, 1 the job found a problem, 2 usage error.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``prosody-store`` and all its commands."""
    parser = argparse.ArgumentParser(
        prog="prosody-store",
        description="Read and write a Prosody data directory (/var/lib/prosody) without Prosody.",
        epilog=EPILOG, formatter_class=RAW)
    location_options(parser, None)
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
    return parser


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit finds no broken pipe."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CommandError as err:
        print(f"prosody-store: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        silence_stdout()
        return 1
    except DATA_ERRORS as err:
        print(f"prosody-store: {describe(err)}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"prosody-store: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
