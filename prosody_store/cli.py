"""The ``prosody-store`` command: Prosody's data from cron jobs, scripts and migrations.

Each command is a function ``cmd_<name>(args) -> int`` registered in
:func:`build_parser`.  Errors are one line on stderr: exit status 1 when the
job found a problem, 2 for usage errors.  The library itself needs only the
standard library; ``serve`` loads the HTTP service (Werkzeug, waitress) when
it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Callable, Sequence

from prosody_store.config import DEFAULT_DATA_PATH, ConfigError, read_config
from prosody_store.errors import Error

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


class CommandError(Error):
    """A problem to report on one line; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prosody-store",
        description="Read and write a Prosody data directory (/var/lib/prosody) without Prosody.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _location_options(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _location_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    from prosody_store.cli_commands import add_commands
    from prosody_store.cli_migrate import add_parser as add_migrate
    add_commands(commands, common)
    add_migrate(commands, parents=[common])

    serve = commands.add_parser(
        "serve", help="run the HTTP data access service (mod_data_access API)",
        description="Serve /data[/host/user]/store[/format] over HTTP with Basic auth "
                    "against Prosody's accounts, under waitress.",
        epilog="example:\n  prosody-store serve --data-path fixtures/demo --admin admin@localhost\n"
               "  curl -u alice@localhost:wonderland http://127.0.0.1:5280/data/roster",
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    serve.add_argument("--listen", default="127.0.0.1:5280", metavar="ADDR:PORT",
                       help="address and port to listen on (default 127.0.0.1:5280)")
    serve.add_argument("--admin", action="append", default=[], metavar="JID",
                       help="a JID that may read and write every user's data (repeatable)")
    serve.add_argument("--host", action="append", default=[], metavar="HOST",
                       help="serve only these hosts (default: the config's VirtualHosts, "
                            "else every host with accounts)")
    limits = serve.add_argument_group(
        "limits", "What one request may cost.  The connection, time and body-size limits hold\n"
                  "before authentication: a client past one loses its connection (a body too\n"
                  "large gets 413).  For limits per address or on rates, put a proxy in front.")
    limits.add_argument("--threads", type=int, default=4, metavar="N",
                        help=f"worker threads, 1 to {MAX_THREADS} (default 4)")
    limits.add_argument("--max-body", type=int, default=10 * 1024 * 1024, metavar="BYTES",
                        help="largest request body, refused with 413 while it is read "
                             "(default 10 MiB)")
    limits.add_argument("--max-values", type=int, default=None, metavar="N",
                        help="most values (tables, strings, numbers) a request body may hold, "
                             "counted before it is decoded: 413 past it (default 250,000)")
    limits.add_argument("--connection-limit", type=int, default=1000, metavar="N",
                        help="most connections open at once; more wait to be accepted "
                             "(default 1000)")
    limits.add_argument("--idle-timeout", type=int, default=30, metavar="SECONDS",
                        help="close a connection after this long without a byte in or out "
                             "(default 30)")
    limits.add_argument("--request-timeout", type=int, default=30, metavar="SECONDS",
                        help="close a connection whose request, headers and body, is not "
                             "complete this long after its first byte (default 30)")
    limits.add_argument("--iterations", type=int, default=None, metavar="N",
                        help="PBKDF2 rounds of a normal login, which every failed login costs "
                             "too (default: the config's default_iteration_count, else 10000)")
    limits.add_argument("--max-iterations", type=int, default=None, metavar="N",
                        help="accounts whose record asks for more rounds never log in "
                             "(default: --iterations)")
    serve.set_defaults(handler=cmd_serve)
    return parser


def _location_options(parser: argparse.ArgumentParser, default) -> None:
    """--data-path and --prosody-config, before or after the command."""
    parser.add_argument("--data-path", metavar="DIR", default=default,
                        help="Prosody's data directory (default: $PROSODY_DATA_PATH, "
                             f"else the config's data_path, else {DEFAULT_DATA_PATH})")
    parser.add_argument("--prosody-config", metavar="FILE", default=default,
                        help="take data_path, admins and hosts from this prosody.cfg.lua "
                             "(read as data, never run)")


class Settings:
    """Where the data is and who administers it: flags, then environment, then config."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config = None
        if args.prosody_config:
            try:
                self.config = read_config(args.prosody_config)
            except ConfigError as err:
                raise CommandError(str(err)) from None
            for problem in self.config.problems:
                print(f"prosody-store: warning: {problem}", file=sys.stderr)
        self.data_path = (args.data_path or os.environ.get("PROSODY_DATA_PATH")
                          or (self.config.data_path if self.config else DEFAULT_DATA_PATH))
        if not os.path.isdir(self.data_path):
            raise CommandError(f"data directory {self.data_path} does not exist")


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--listen: {text!r} is not ADDRESS:PORT", 2)
    return host, int(port)


MAX_THREADS = 256  # serve --threads


def _check_limits(args: argparse.Namespace) -> None:
    """Usage errors for limits that would make a server that never answers."""
    if not 1 <= args.threads <= MAX_THREADS:
        raise CommandError(f"--threads must be from 1 to {MAX_THREADS}, not {args.threads}", 2)
    for option in ("max_body", "max_values", "connection_limit", "idle_timeout", "request_timeout",
                   "iterations", "max_iterations"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise CommandError(f"--{option.replace('_', '-')} must be at least 1, not {value}", 2)


def cmd_serve(args: argparse.Namespace) -> int:
    _check_limits(args)
    settings = Settings(args)
    host, port = _listen_address(args.listen)
    config = settings.config
    admins = list(args.admin) + (config.admins if config else [])
    hosts = args.host or (config.hosts if config else []) or None
    try:
        from prosody_store.accounts import DEFAULT_ITERATIONS
        from wsgi_app import create_app
        from wsgi_app.server import create_server, fit_connection_limit
    except ImportError as err:
        raise CommandError(f"serve needs the service's dependencies ({err.name}): "
                           "pip install prosody-store") from None
    try:
        iterations = args.iterations or (config and config.default_iteration_count)
        app = create_app(settings.data_path, admins=admins, hosts=hosts,
                         host_admins=config.host_admins if config else None,
                         max_body=args.max_body, iterations=iterations or DEFAULT_ITERATIONS,
                         max_iterations=args.max_iterations, max_values=args.max_values)
    except ValueError as err:
        raise CommandError(f"bad setting: {err}", 2) from None
    # waitress logs "Task queue depth is N" for every queued request under load:
    # only its real warnings and errors, on one line each.
    logging.basicConfig(format="prosody-store: %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    connection_limit, warning = fit_connection_limit(args.connection_limit, args.threads)
    if warning:
        print(f"prosody-store: warning: {warning}", file=sys.stderr)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        server = create_server(app, host=host, port=port, threads=args.threads,
                               connection_limit=connection_limit, idle_timeout=args.idle_timeout,
                               request_timeout=args.request_timeout, max_body=args.max_body,
                               ident="prosody-store")
    except ValueError:  # waitress: the host does not resolve
        raise CommandError(f"--listen: cannot resolve {host!r}", 2) from None
    except OSError as err:
        raise CommandError(f"cannot listen on {address}: {err.strerror or err}") from None
    print(f"prosody-store: serving {settings.data_path} on http://{address}/data "
          f"(admins: {', '.join(admins) or 'none'})", file=sys.stderr, flush=True)
    server.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from prosody_store.cli_commands import ERRORS, describe
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as err:
        print(f"prosody-store: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; silence the flush at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ERRORS as err:
        print(f"prosody-store: {describe(err)}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"prosody-store: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
