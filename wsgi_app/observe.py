"""What happened to each request, for the access log and the metrics.

:class:`Observe` is WSGI middleware: when a response has been sent (its body
iterated and closed by the server), it hands an :class:`Exchange` to each of
its listeners.  It sees what the application answered, not the headers the
client sent, so nothing it reports can hold an ``Authorization`` header.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple

from wsgi_app.in_loop import AnswerLater

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

USER_KEY = "wsgi_app.user"
"""The environ key where the application puts the JID of an authenticated request."""


class Exchange(NamedTuple):
    """One request and its response.  (A named tuple: made for every request, at
    a third of a frozen dataclass's cost.)"""

    client: str  # REMOTE_ADDR: the client's address (after TrustedProxies)
    user: str | None  # the authenticated JID, or None
    method: str
    path: str  # SCRIPT_NAME + PATH_INFO, decoded (WSGI's latin-1 str)
    query: str  # QUERY_STRING, as sent
    protocol: str
    status: int  # 0: the application failed before it started a response
    bytes: int  # body bytes the application produced
    duration: float  # seconds, from the call to the end of the response
    failed: bool  # an exception ended the request (the server answered or cut it)
    ended: float = 0.0  # time.time() when the response was done (0: not known)


Listener = Callable[[Exchange], None]


class Observe:
    """WSGI middleware calling ``listeners`` with the :class:`Exchange` of every request."""

    def __init__(self, app: WSGIApplication, listeners: Iterable[Listener]) -> None:
        self.app = app
        self.listeners = tuple(listeners)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = [0]

        def observed_start_response(status_line: str, headers: list[tuple[str, str]],
                                    exc_info: OptExcInfo | None = None
                                    ) -> Callable[[bytes], object]:
            status[0] = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, observed_start_response)
        except AnswerLater:
            raise  # not answered here: the worker that answers it reports it
        except BaseException:
            self.report(environ, status[0] or 500, 0, started, failed=True)
            raise
        return ObservedBody(self, environ, body, status, started)

    def report(self, environ: WSGIEnvironment, status: int, size: int, started: float,
               failed: bool) -> None:
        exchange = Exchange(
            client=environ.get("REMOTE_ADDR") or "-",
            user=environ.get(USER_KEY),
            method=environ.get("REQUEST_METHOD", "-"),
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            query=environ.get("QUERY_STRING", ""),
            protocol=environ.get("SERVER_PROTOCOL", "-"),
            status=status, bytes=size, duration=time.perf_counter() - started, failed=failed,
            ended=time.time())
        for listener in self.listeners:
            listener(exchange)


class ObservedBody:
    """A response body that counts its bytes and reports when it is closed."""

    def __init__(self, observer: Observe, environ: WSGIEnvironment, body: Iterable[bytes],
                 status: list[int], started: float) -> None:
        self.observer = observer
        self.environ = environ
        self.body = body
        self.status = status
        self.started = started
        self.size = 0
        self.failed = False
        self.reported = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.body:
                self.size += len(chunk)
                yield chunk
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            if not self.reported:
                self.reported = True
                self.observer.report(self.environ, self.status[0], self.size, self.started,
                                     self.failed)
