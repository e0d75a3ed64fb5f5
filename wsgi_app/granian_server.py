"""granian (a Rust HTTP server, ``pip install 'prosody-store[fast]'``) as the service's server.

``prosody-store serve --server granian --workers N`` runs :func:`run`:
granian's main process binds the socket and starts ``N`` worker processes;
each builds its own application with :func:`load_app` from the same plain
settings (so each has its own credential and body caches, keyed by a secret
of its own).  A login cached in one worker is checked against the account
file's fingerprint on every request (:class:`wsgi_app.cache.LoginCache`), so
a changed account file ends it in every worker at once.

The service's limits under granian (checked by tests/test_http_granian.py and
tests/test_attack_large_body.py):

``max_body``          a declared ``Content-Length`` over it is answered 413 by
                      the application before the login
                      (:meth:`DataAccessApp.check_length`), and the body is
                      not read; a body without a length (chunked) is read only
                      after the login, to ``max_body`` + 1 bytes at most, and
                      refused past that (without credentials: 401, unread).
                      granian has no body limit of its own and spools nothing.
``request_timeout``   granian's ``http1_header_read_timeout`` (at most 60 s):
                      a request whose headers are not complete in time loses
                      its connection, and so does a keep-alive connection that
                      sends nothing for that long.  The body has no deadline
                      under granian: a client with valid credentials that
                      stops in the middle of a body holds one of its worker's
                      ``threads`` until it closes the connection
                      (:data:`LIMITS_NOT_ENFORCED`; put a proxy with a body
                      timeout in front, such as nginx's ``client_body_timeout``).
``idle_timeout``      not used: the header read timeout above closes idle
                      keep-alive connections.
``connection_limit``  granian's ``backpressure``, divided among the workers:
                      connections a worker serves at once; more wait in the
                      listen backlog until one closes.
``/metrics``          each worker counts its own requests: a scrape sees the
                      worker that answers it.

Imported only when granian is chosen: granian is an optional dependency.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from wsgi_app.proxy import UNIX_REMOTE_ADDR

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from wsgi_app.app import DataAccessApp

log = logging.getLogger("prosody_store.serve")

MAX_HEADER_TIMEOUT_MS = 60_000
"""The longest ``http1_header_read_timeout`` granian accepts."""

LIMITS_NOT_ENFORCED = ("deadline for receiving a request body",)
"""What waitress enforces and granian cannot: said at start and in README.rst."""
METRICS_NOTE = ("with --workers %d, /metrics counts the requests of the worker that answers "
                "the scrape")


def available() -> bool:
    """Whether granian can be imported."""
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


def load_app(settings: dict[str, Any], log_level: str, log_format: str,
             unix_socket: bool = False) -> DataAccessApp:
    """The application of one worker process, from :func:`run`'s ``settings``
    (the keyword arguments of :func:`wsgi_app.create_app`, plain data so that
    they reach a spawned worker), with the service's logging.  On a Unix
    socket, granian leaves ``REMOTE_ADDR`` empty: it is set to what waitress
    says there, so that ``--trusted-proxy unix`` and ``/metrics`` work the same."""
    from wsgi_app import create_app
    from wsgi_app.logs import configure

    configure(log_level, log_format)
    # granian's own loggers keep their handlers: no second copy of their lines.
    for name in ("_granian", "granian.access"):
        logging.getLogger(name).propagate = False
    app = create_app(**settings)
    if unix_socket:
        app.wsgi_app = UnixPeer(app.wsgi_app)
    return app


class UnixPeer:
    """WSGI middleware: ``REMOTE_ADDR`` of a Unix socket peer as waitress gives it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("REMOTE_ADDR"):
            environ["REMOTE_ADDR"] = UNIX_REMOTE_ADDR
        return self.app(environ, start_response)


def run(settings: dict[str, Any], *, host: str | None = None, port: int | None = None,
        unix_socket: str | None = None, unix_socket_perms: int = 0o660, workers: int = 1,
        threads: int = 4, connection_limit: int = 1000, request_timeout: float = 30,
        log_level: str = "info", log_format: str = "text") -> None:
    """Serve the application made from ``settings`` under granian until stopped.

    ``threads`` are the threads running the application in each worker
    (granian's ``blocking_threads``).  ImportError if granian is missing.
    """
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    header_timeout = max(1, min(MAX_HEADER_TIMEOUT_MS, int(request_timeout * 1000)))
    where: dict[str, Any]
    if unix_socket is not None:
        where = dict(uds=Path(unix_socket), uds_permissions=unix_socket_perms)
    else:
        where = dict(address=host or "127.0.0.1", port=port or 5280)
    server = Granian(
        "wsgi_app:application",  # not imported: the workers run load_app below
        interface=Interfaces.WSGI, http=HTTPModes.http1, websockets=False,
        workers=workers, blocking_threads=threads,
        backpressure=max(1, connection_limit // workers),
        http1_settings=HTTP1Settings(header_read_timeout=header_timeout),
        log_level=_granian_level(log_level), **where)
    log.warning("granian has no %s (waitress has: --request-timeout)",
                " nor ".join(LIMITS_NOT_ENFORCED))
    if settings.get("metrics") and workers > 1:
        log.warning(METRICS_NOTE, workers)
    server.serve(target_loader=functools.partial(load_app, settings, log_level, log_format,
                                                 unix_socket is not None),
                 wrap_loader=False)


def _granian_level(level: str) -> Any:
    from granian.log import LogLevels

    return LogLevels(level.lower())
