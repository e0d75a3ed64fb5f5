"""waitress, with the limits a service reachable by anyone needs.

``create_server(app, host=..., port=...)`` builds the server that
``prosody-store serve`` runs (``.run()``).  Over waitress's defaults it sets:

``connection_limit``  1000 open connections (waitress: 100), watched with
                      poll() so select()'s FD_SETSIZE of 1024 is no limit;
                      :func:`fit_connection_limit` raises the soft limit on
                      open files to what that needs, or lowers the limit to
                      what the hard limit allows.
``idle_timeout``      30 s without a byte in either direction closes a
                      connection (waitress's ``channel_timeout``: 120 s).
``request_timeout``   30 s from a request's first byte to its last, headers
                      and body: a client still sending after that loses its
                      connection.  waitress has no such deadline (below).
``max_body``          the largest body, enforced by waitress while reading,
                      before the application or authentication sees anything:
                      a larger Content-Length is answered 413 without reading
                      the body, a chunked body is cut off at the limit.  So no
                      more than ``max_body`` bytes (and one read of 8 KiB) of
                      a request are kept in memory (to 512 KiB) or spooled to
                      the temporary directory (waitress: 1 GiB).

And a connection whose client takes none of the response for ``idle_timeout``
is closed, freeing the worker thread that may be waiting to write it (waitress
leaves such a connection open for ever).

It accepts up to :data:`ACCEPTS_PER_ROUND` waiting connections per poll round
(waitress: one), so that a burst of new connections is not kept waiting while
the loop answers requests.

``answer_in_loop=True`` (for an application that knows :mod:`wsgi_app.in_loop`,
as ``prosody-store serve``'s does) offers each GET or HEAD without a body to the
application in the event loop thread first; what it cannot answer from memory
goes to a worker thread as usual.

``create_server(app, unix_socket=PATH)`` listens on a Unix socket instead,
created with the permissions ``unix_socket_perms`` (0o660: the service's
user and group) from the start; a socket file that a running server still
answers on is an ``OSError`` (address in use), not silently replaced as
waitress does.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
import time
from typing import TYPE_CHECKING, Any, cast

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask
from waitress.utilities import RequestEntityTooLarge

from wsgi_app.in_loop import IN_LOOP_KEY, AnswerLater

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    # For the type checker, the mixin is a waitress server; at run time it is a
    # plain class, placed before the server class in its subclasses' bases.
    _ServerBase = BaseWSGIServer
else:
    _ServerBase = object

DEFAULT_CONNECTION_LIMIT = 1000
DEFAULT_IDLE_TIMEOUT = 30
DEFAULT_REQUEST_TIMEOUT = 30
DEFAULT_THREADS = 4
DEFAULT_SOCKET_PERMS = 0o660
# Open files a connection may need: its socket, the temporary file of a request
# body over 512 KiB, the one of a response over 1 MiB.
FILES_PER_CONNECTION = 3
# And the rest of the process: standard streams, the listening sockets, the
# trigger pipe, modules, the data files the worker threads have open.
FILES_RESERVED = 64
FILES_PER_THREAD = 4
# How often (seconds) the deadlines are checked: a connection lives at most
# this much past its deadline.
CHECK_INTERVAL = 1


class RequestParser(HTTPRequestParser):
    """waitress's parser, saying the limit the user set when a body is too large:
    waitress's own message names ``max_request_body_size``, which is one more."""

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if isinstance(self.error, RequestEntityTooLarge):
            limit = self.adj.max_request_body_size - 1
            self.error = RequestEntityTooLarge(f"body larger than {limit} bytes")
        return consumed


class OneWriteTask(WSGITask):
    """waitress's task, sending a response's header and first body chunk in one
    ``send()``: waitress sends the header as soon as it is built, then each
    chunk, so that a small response costs two system calls (and two TCP
    segments) where one does (counted with strace on a cached GET: 2 sendto
    calls per request before, 1 after).  A first chunk over
    :data:`ONE_WRITE_LIMIT` is sent on its own, as waitress does, rather than
    copied."""

    channel: DeadlineChannel

    def write(self, data: bytes) -> None:
        if self.wrote_header or not data or len(data) > ONE_WRITE_LIMIT:
            super().write(data)
            return
        channel = self.channel
        channel.held = []
        try:
            super().write(data)  # the header, then the data: both held
        finally:
            held, channel.held = channel.held, None
            if held:
                channel.write_soon(b"".join(held))


    def get_environment(self) -> dict[str, Any]:
        environ = super().get_environment()
        if self.channel.in_loop:
            environ[IN_LOOP_KEY] = True
        return environ


ONE_WRITE_LIMIT = 64 * 1024
"""The largest first chunk that :class:`OneWriteTask` sends with the header."""
ACCEPTS_PER_ROUND = 64
"""The most connections :meth:`DeadlineMixin.handle_accept` accepts per poll round."""


class DeadlineChannel(HTTPChannel):
    """An HTTP connection that remembers when the request it is receiving began.

    Hand-written because waitress has no deadline for reading a request: its
    ``channel_timeout`` measures inactivity, so a client that sends a header
    line (or a body byte, or a blank line) every few seconds keeps its
    connection, and its connection slot, for ever.  ``request_started`` is the
    time of the first byte received since the last complete request went to a
    worker; :meth:`DeadlineServer.maintenance` closes the connection when that
    is older than the server's ``request_timeout``.  Blank lines between
    requests (which waitress reads as empty requests) do not restart the clock.
    """

    parser_class = RequestParser
    task_class = OneWriteTask
    request_started: float | None = None  # time.monotonic(); None between requests
    held: list[bytes] | None = None
    """Output kept back by :class:`OneWriteTask` (None: write_soon writes)."""

    def write_soon(self, data: bytes) -> int:
        if self.held is not None:
            self.held.append(data)
            return len(data)
        return super().write_soon(data)

    in_loop = False
    """True while a request is offered to the application in the event loop thread."""
    offering = False
    """True while :meth:`received` may keep a complete request for the loop (see
    :meth:`DeadlineMixin.add_task`); ``offered`` says that it did."""
    offered = False
    server: DeadlineMixin  # the server that made it (the type stubs say any waitress server)

    def received(self, data: bytes) -> bool:
        if data and self.request_started is None:
            self.request_started = time.monotonic()
        # Only an idle channel is offered: no worker thread holds it, so none calls
        # add_task for it while this runs, and none will until this thread queues it.
        self.offering = self.server.answer_in_loop and not self.requests
        try:
            received = super().received(data)
        finally:
            self.offering = False
        if self.offered:
            self.offered = False
            self.service_in_loop()
        return received

    def service_in_loop(self) -> None:
        """Offer the one complete request to the application here, in the event loop
        thread (:mod:`wsgi_app.in_loop`); a worker thread serves it if the
        application answers :class:`AnswerLater`, or if it is not a lone GET or HEAD
        without a body.  (A lone one: a later pipelined request could find the
        output buffer over its high watermark, which only a worker may wait on.)"""
        request = self.requests[0]
        # The parser decodes the method to str (the type stubs say bytes).
        if (len(self.requests) == 1 and request.error is None
                and cast(str, request.command) in ("GET", "HEAD")
                and not request.content_length and not request.chunked):
            self.in_loop = True
            try:
                self.service()
                return
            except AnswerLater:
                pass  # nothing was written: the request is still the first in line
            finally:
                self.in_loop = False
        self.server.add_task(self)

    def service(self) -> None:
        # A complete request reached a worker: it was received in time.  (The
        # channel reads nothing more until its requests are answered.)
        self.request_started = None
        super().service()


class DeadlineMixin(_ServerBase):
    """For a waitress server: :class:`DeadlineChannel` connections and a
    :meth:`maintenance` that enforces ``request_timeout`` and closes connections
    whose client has stopped taking the response."""

    channel_class = DeadlineChannel
    # Set by waitress's server from getsockname() (missing from its type stubs):
    # for TCP the numeric address and port, for a Unix socket "unix" and the path.
    effective_host: str
    effective_port: str

    def __init__(self, *args: Any, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 answer_in_loop: bool = False, **kw: Any) -> None:
        self.request_timeout = request_timeout
        self.answer_in_loop = answer_in_loop
        super().__init__(*args, **kw)

    def handle_accept(self) -> None:
        """Accept the connections waiting, up to :data:`ACCEPTS_PER_ROUND` and the
        connection limit.  waitress accepts one per poll round; when the loop is
        busy answering requests itself, a burst of new connections then waits
        one round each (200 at once: the last a second or more)."""
        # Every open connection, by file descriptor (the type stubs say one channel).
        channels = cast("dict[int, DeadlineChannel]", self.active_channels)
        for _ in range(ACCEPTS_PER_ROUND):
            if len(channels) >= self.adj.connection_limit:
                return
            before = len(channels)
            super().handle_accept()
            if len(channels) == before:
                return  # none waiting (or one that failed, which waitress logged)

    def add_task(self, channel: DeadlineChannel) -> None:  # type: ignore[override]
        """Queue ``channel``'s first request for a worker thread, or, while the
        channel is offering it (:meth:`DeadlineChannel.received`), leave it for the
        channel to offer in the loop once waitress has let go of its lock."""
        if channel.offering:
            channel.offered = True
            return
        # waitress queues channels as tasks (the type stubs say a Task).
        super().add_task(cast(Any, channel))

    def maintenance(self, now: float) -> None:
        # now is time.time(), a float (waitress's type stubs say int).
        super().maintenance(cast(int, now))  # marks connections idle for channel_timeout to close
        request_cutoff = time.monotonic() - self.request_timeout
        stall_cutoff = now - self.adj.channel_timeout
        # File descriptor -> connection, of channel_class (the type stubs say one channel).
        channels = cast("dict[int, DeadlineChannel]", self.active_channels)
        for channel in list(channels.values()):
            if channel.total_outbufs_len and channel.last_activity < stall_cutoff:
                # Output waits and the client has taken none of it for channel_timeout.
                # Marking it will_close, as waitress does for idle connections, does
                # not do: that waits for the socket to become writable, which it never
                # does if the client does not read, and a worker may be blocked on the
                # full buffer.  Shut the socket down: the event loop then sees it hang
                # up and closes the channel, which wakes that worker.  (Not close() here:
                # this runs while the loop collects descriptors to poll, and a closed
                # descriptor could be reused by an accept() in the same round.)
                with contextlib.suppress(OSError):
                    # An open connection has its socket (the stubs allow None).
                    cast(socket.socket, channel.socket).shutdown(socket.SHUT_RDWR)
            elif (not channel.requests and channel.request_started is not None
                  and channel.request_started < request_cutoff):
                channel.will_close = True


class DeadlineServer(DeadlineMixin, TcpWSGIServer):
    """waitress's TCP server with the deadlines of :class:`DeadlineMixin`."""


if hasattr(socket, "AF_UNIX"):
    from waitress.server import UnixWSGIServer

    class DeadlineUnixServer(DeadlineMixin, UnixWSGIServer):
        """waitress's Unix socket server with the deadlines of :class:`DeadlineMixin`,
        refusing a socket that a server still answers on, and creating the socket
        with its final permissions (waitress creates it under the umask, then
        changes them)."""

        def bind_server_socket(self) -> None:
            path = cast(str, self.adj.unix_socket)  # set: this is the Unix socket server
            refuse_live_socket(path)
            # Single-threaded here: the worker threads start once every socket is bound.
            old = os.umask(0o777 & ~self.adj.unix_socket_perms)
            try:
                super().bind_server_socket()
            finally:
                os.umask(old)
else:  # pragma: no cover
    # The type stubs have UnixWSGIServer by sys.platform, waitress by this hasattr();
    # the type checker cannot tell that this branch is for systems without it.
    DeadlineUnixServer = None  # type: ignore[assignment, misc]


def refuse_live_socket(path: str) -> None:
    """OSError EADDRINUSE if a server answers on the Unix socket ``path``."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # bind() fails on it with EADDRINUSE
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return  # a stale socket file, left by a server that stopped: waitress removes it
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE), path)


def fit_connection_limit(limit: int, threads: int) -> tuple[int, str | None]:
    """Raise the soft limit on open files to what ``limit`` connections need.

    Returns the connection limit to use and, when the hard limit is too low
    for ``limit``, a warning that says so (the limit returned then fits).
    Without it, accept() would fail with EMFILE in a loop once files ran out.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return limit, None
    need = limit * FILES_PER_CONNECTION + FILES_RESERVED + threads * FILES_PER_THREAD
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limit, None
    fitted = max(1, (soft - FILES_RESERVED - threads * FILES_PER_THREAD) // FILES_PER_CONNECTION)
    return fitted, (f"--connection-limit {limit} needs {need} open files but only {soft} "
                    f"are allowed (ulimit -n); using a connection limit of {fitted}")


def create_server(app: WSGIApplication, *, host: str | None = None, port: int | None = None,
                  unix_socket: str | None = None,
                  unix_socket_perms: int = DEFAULT_SOCKET_PERMS,
                  threads: int = DEFAULT_THREADS,
                  connection_limit: int = DEFAULT_CONNECTION_LIMIT,
                  idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                  request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                  max_body: int = 10 * 1024 * 1024,
                  answer_in_loop: bool = False,
                  **adjustments: Any) -> BaseWSGIServer | MultiSocketServer:
    """The server for ``app`` on ``host:port`` (every address ``host`` resolves
    to), or on the Unix socket ``unix_socket``, listening when this returns;
    ``.run()`` serves until interrupted.

    Raises ``ValueError`` for an address that does not resolve and ``OSError``
    for one that cannot be bound (in use, not ours, no permission); nothing is
    left listening or running then.  ``adjustments`` go to waitress as they are.
    """
    where: dict[str, object]
    if unix_socket is not None:
        if DeadlineUnixServer is None:
            raise ValueError("this system has no Unix sockets")
        where = dict(unix_socket=unix_socket, unix_socket_perms=f"{unix_socket_perms:o}")
    else:
        where = dict(host=host, port=port)
    adj = Adjustments(
        **where, threads=threads, connection_limit=connection_limit,
        channel_timeout=idle_timeout, cleanup_interval=CHECK_INTERVAL,
        # waitress refuses a body of max_request_body_size bytes or more (>=).  For a
        # chunked body it counts the chunk framing too, so such a body is refused a
        # few bytes per chunk short of max_body.
        max_request_body_size=max_body + 1,
        # X-Forwarded-* are for wsgi_app.proxy.TrustedProxies to believe or remove.
        clear_untrusted_proxy_headers=False,
        asyncore_use_poll=hasattr(select, "poll"), **adjustments)
    dispatcher = ThreadedTaskDispatcher()  # threads start once every socket is bound
    socket_map: dict[int, Any] = {}  # fd -> wasyncore.dispatcher (the stubs say socket)
    servers: list[DeadlineMixin] = []
    try:
        if unix_socket is not None:
            servers.append(DeadlineUnixServer(
                app, socket_map, dispatcher=dispatcher, adj=adj,
                sockinfo=(socket.AF_UNIX, socket.SOCK_STREAM, None, None),
                request_timeout=request_timeout, answer_in_loop=answer_in_loop))
        else:
            for sockinfo in adj.listen:
                servers.append(DeadlineServer(app, socket_map, dispatcher=dispatcher, adj=adj,
                                              sockinfo=sockinfo, request_timeout=request_timeout,
                                              answer_in_loop=answer_in_loop))
    except BaseException:
        wasyncore.close_all(socket_map)  # the sockets and triggers made so far
        raise
    dispatcher.set_thread_count(adj.threads)
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    # The type stubs say the ports are int; waitress's are getnameinfo()'s str.
    return MultiSocketServer(socket_map, adj, cast("list[tuple[str, int]]", listening),
                             dispatcher, servers[-1].log_info)
