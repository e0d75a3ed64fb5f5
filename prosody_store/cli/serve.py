"""``prosody-store serve``: the HTTP data access service under waitress or granian.

The service's packages (``wsgi_app``, Werkzeug, waitress, granian) are
imported only when the command runs: the library itself needs only the
standard library.  waitress (pure Python) is the default; ``--server
granian --workers N`` runs granian, an optional dependency (``pip install
'prosody-store[fast]'``), with N worker processes.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType

from prosody_store.accounts import DEFAULT_ITERATIONS
from prosody_store.cli.common import RAW, CommandError, Settings
from prosody_store.errors import StorageError

log = logging.getLogger("prosody_store.serve")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
UNIX_PREFIX = "unix:"

MAX_THREADS = 256
"""Most worker threads of ``serve --threads``."""
MAX_WORKERS = 64
"""Most worker processes of ``serve --server granian --workers``."""
SERVERS = ("waitress", "granian")

POSITIVE_OPTIONS = ("max_body", "max_values", "connection_limit", "idle_timeout",
                    "request_timeout", "iterations", "max_iterations")
"""The limits that must be at least 1 when given."""


def listen_address(text: str) -> tuple[str, int]:
    """``--listen``: ``ADDRESS:PORT``, ``[IPv6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--listen: {text!r} is not ADDRESS:PORT", 2)
    return host, int(port)


def socket_mode(text: str) -> int:
    """``--socket-mode``: octal permissions such as 660."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not octal permissions such as 660")
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not octal permissions such as 660")
    return mode


def check_limits(args: argparse.Namespace) -> None:
    """Usage errors for limits that would make a server that never answers."""
    if not 1 <= args.threads <= MAX_THREADS:
        raise CommandError(f"--threads must be from 1 to {MAX_THREADS}, not {args.threads}", 2)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be from 1 to {MAX_WORKERS}, not {args.workers}", 2)
    if args.workers != 1 and args.server != "granian":
        raise CommandError("--workers needs --server granian (waitress runs one process: "
                           "--threads)", 2)
    for option in POSITIVE_OPTIONS:
        value = getattr(args, option)
        if value is not None and value < 1:
            raise CommandError(f"--{option.replace('_', '-')} must be at least 1, not {value}", 2)


def cmd_serve(args: argparse.Namespace) -> int:
    check_limits(args)
    try:
        settings = Settings(args)
    except CommandError as err:  # no data directory: a usage error for a service
        raise CommandError(str(err), 2) from None
    except StorageError as err:
        raise CommandError(f"data directory: {err}", 2) from None
    if args.listen.startswith(UNIX_PREFIX):
        path = args.listen[len(UNIX_PREFIX):]
        if not path:
            raise CommandError("--listen: unix: needs a path (unix:/run/prosody-store.sock)", 2)
        unix_socket = os.path.abspath(path)
        host = port = None
        address = f"unix:{unix_socket}"
    else:
        unix_socket = None
        host, port = listen_address(args.listen)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = settings.config
    admins = list(args.admin) + (config.admins if config else [])
    hosts = args.host or (config.hosts if config else []) or None
    try:
        from wsgi_app import create_app
        from wsgi_app.server import create_server, fit_connection_limit
    except ImportError as err:
        raise CommandError(f"serve needs the service's dependencies ({err.name}): "
                           "pip install 'prosody-store[server]'") from None
    if args.server == "granian":
        from wsgi_app import granian_server

        if not granian_server.available():
            raise CommandError("--server granian needs granian: "
                               "pip install 'prosody-store[fast]'", 2)
    iterations = args.iterations or (config and config.default_iteration_count)
    app_settings = dict(
        data_path=os.fspath(settings.data_path), admins=admins, hosts=hosts,
        host_admins=({h: list(a) for h, a in config.host_admins.items()} if config else None),
        max_body=args.max_body, iterations=iterations or DEFAULT_ITERATIONS,
        max_iterations=args.max_iterations, max_values=args.max_values,
        trusted_proxies=list(args.trusted_proxy), metrics=args.metrics,
        require_precondition=args.require_precondition)
    try:
        app = create_app(**app_settings)
    except ValueError as err:
        raise CommandError(f"bad setting: {err}", 2) from None
    from wsgi_app.logs import configure

    configure(args.log_level, args.log_format)
    if args.server == "granian":
        return serve_granian(args, app_settings, admins, unix_socket, host, port, address,
                             str(settings.data_path))
    connection_limit, warning = fit_connection_limit(args.connection_limit, args.threads)
    if warning:
        log.warning("%s", warning)
    where = (dict(unix_socket=unix_socket, unix_socket_perms=args.socket_mode)
             if unix_socket else dict(host=host, port=port))
    try:
        server = create_server(app, **where, threads=args.threads,
                               connection_limit=connection_limit, idle_timeout=args.idle_timeout,
                               request_timeout=args.request_timeout, max_body=args.max_body,
                               answer_in_loop=True, ident="prosody-store")
    except ValueError:  # waitress: the host does not resolve
        raise CommandError(f"--listen: cannot resolve {host!r}", 2) from None
    except OSError as err:
        raise CommandError(f"cannot listen on {address}: {err.strerror or err}", 2) from None
    url = f"http+unix://{address[len(UNIX_PREFIX):]}" if unix_socket else f"http://{address}"
    log.info("serving %s on %s/data (admins: %s%s)", settings.data_path, url,
             ", ".join(admins) or "none", "; /metrics" if args.metrics else "")
    signal.signal(signal.SIGTERM, end_on_sigterm)
    server.run()
    return 0


def end_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: write the access lines not yet written (they are written a few
    milliseconds after each response, :class:`wsgi_app.logs.AccessLog`), then
    end as SIGTERM ends a process."""
    from wsgi_app.logs import flush_access_logs

    flush_access_logs()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def serve_granian(args: argparse.Namespace, app_settings: dict[str, object], admins: list[str],
                  unix_socket: str | None, host: str | None, port: int | None, address: str,
                  data_path: str) -> int:
    """Run the service under granian (``--server granian``) until stopped."""
    import socket

    from wsgi_app import granian_server
    from wsgi_app.server import refuse_live_socket

    try:
        if unix_socket is not None:
            refuse_live_socket(unix_socket)
        else:
            # granian reports a port it cannot bind only in its log: try it first.
            with socket.create_server((host or "127.0.0.1", port or 0),
                                      family=socket.AF_INET6 if ":" in (host or "")
                                      else socket.AF_INET):
                pass
    except socket.gaierror:
        raise CommandError(f"--listen: cannot resolve {host!r}", 2) from None
    except OSError as err:
        raise CommandError(f"cannot listen on {address}: {err.strerror or err}", 2) from None
    url = f"http+unix://{address[len(UNIX_PREFIX):]}" if unix_socket else f"http://{address}"
    log.info("serving %s on %s/data under granian, %d worker%s (admins: %s%s)", data_path, url,
             args.workers, "" if args.workers == 1 else "s", ", ".join(admins) or "none",
             "; /metrics" if args.metrics else "")
    granian_server.run(app_settings, host=host, port=port, unix_socket=unix_socket,
                       unix_socket_perms=args.socket_mode, workers=args.workers,
                       threads=args.threads, connection_limit=args.connection_limit,
                       request_timeout=args.request_timeout, log_level=args.log_level,
                       log_format=args.log_format)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    """Add ``serve`` and its options."""
    serve = commands.add_parser(
        "serve", help="run the HTTP data access service (mod_data_access API)",
        description="Serve /data[/host/user]/store[/format] over HTTP with Basic auth "
                    "against Prosody's accounts, under waitress (or granian: --server).",
        epilog="example:\n  prosody-store serve --data-path fixtures/demo --admin admin@localhost\n"
               "  curl -u alice@localhost:wonderland http://127.0.0.1:5280/data/roster",
        formatter_class=RAW, parents=[common])
    serve.add_argument("--listen", default="127.0.0.1:5280", metavar="ADDR:PORT",
                       help="address and port to listen on (default 127.0.0.1:5280), or "
                            "unix:PATH for a Unix socket")
    serve.add_argument("--socket-mode", type=socket_mode, default=0o660, metavar="MODE",
                       help="permissions of the unix: socket, octal (default 660: the "
                            "service's user and group may connect)")
    serve.add_argument("--admin", action="append", default=[], metavar="JID",
                       help="a JID that may read and write every user's data (repeatable)")
    serve.add_argument("--host", action="append", default=[], metavar="HOST",
                       help="serve only these hosts (default: the config's VirtualHosts, "
                            "else every host with accounts)")
    ops = serve.add_argument_group("operation", "Logs, reverse proxies, health and metrics.")
    ops.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="info",
                     metavar="LEVEL",
                     help="least severe log records shown: debug, info (the default: one "
                          "access line per request), warning, error")
    ops.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                     help="text (the default) or json: one JSON object per line")
    ops.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                     help="believe X-Forwarded-For/-Proto/-Host/-Prefix from this peer "
                          "address or network (ADDR/BITS; 'unix' for the Unix socket); "
                          "repeatable.  From any other peer they are ignored")
    ops.add_argument("--require-precondition", action="store_true",
                     help="PUT, PATCH and DELETE need If-Match or If-None-Match (else 428 "
                          "Precondition Required), so that no script overwrites another's "
                          "changes unawares; POST (an append) needs none")
    ops.add_argument("--metrics", action="store_true",
                     help="serve GET /metrics (Prometheus text format) to clients on this "
                          "machine; needs prometheus_client (pip install "
                          "'prosody-store[metrics]')")
    limits = serve.add_argument_group(
        "limits", "What one request may cost.  The connection, time and body-size limits hold\n"
                  "before authentication: a client past one loses its connection (a body too\n"
                  "large gets 413).  For limits per address or on rates, put a proxy in front.")
    serve.add_argument("--server", choices=SERVERS, default="waitress",
                       help="waitress (the default: pure Python, nothing to install) or "
                            "granian (faster; pip install 'prosody-store[fast]')")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help=f"with --server granian: worker processes, 1 to {MAX_WORKERS} "
                            "(default 1), each with --threads threads and its own caches")
    limits.add_argument("--threads", type=int, default=4, metavar="N",
                        help=f"worker threads (per worker process), 1 to {MAX_THREADS} "
                             "(default 4)")
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
