"""The service's logs: an access line per request, and the log format.

Loggers (standard :mod:`logging`; ``prosody-store serve`` sends them to stderr):

``wsgi_app.access``  INFO, one line per request the application answered:
                     client address, user (``-`` when not authenticated),
                     method, path and query, protocol, status, body bytes,
                     seconds.  No header is ever logged, so neither is an
                     ``Authorization``; query parameters whose name suggests
                     a secret have their value replaced by ``***``.
``wsgi_app.auth``    WARNING for each failed login, with the client address.
``wsgi_app``         ERROR with the traceback for every server error (5xx).

Everything the client controls is escaped (``%XX``, ``\\n``), so a request
cannot add lines to the log.  :func:`configure` sets up the root logger with
:class:`TextFormatter` or :class:`JsonFormatter` (one JSON object per line).
Access lines are made off the request path, a few milliseconds after the
response, by :class:`AccessLog`.
"""
from __future__ import annotations

import atexit
import collections
import functools
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from typing import Any, Callable, TextIO
from urllib.parse import quote, unquote_plus

from wsgi_app.observe import Exchange

access_log = logging.getLogger("wsgi_app.access")

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

# Query parameters whose values are never logged: the API takes none, but a
# client may put a password or token there all the same.
SECRET_NAMES = re.compile(r"pass|pwd|secret|token|auth|key|cred|sig|session|cookie", re.I)
REDACTED = "***"

# Left as they are in a logged path or query; the rest (controls, spaces,
# quotes, non-ASCII) becomes %XX.
PATH_SAFE = "/:@!$&'()*+,;=-._~"
QUERY_SAFE = PATH_SAFE + "%?"


def redact_query(query: str) -> str:
    """The query string with the values of secret-looking parameters replaced."""
    if not query:
        return ""
    parts = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if SECRET_NAMES.search(unquote_plus(name)):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def escaped(text: str, safe: str) -> str:
    """A WSGI string (latin-1 code points for bytes) percent-escaped for one log line."""
    if _needs_no_escape(safe)(text):  # the usual case, at a tenth of quote()'s cost
        return text
    return quote(text.encode("latin-1", "replace"), safe=safe)


@functools.lru_cache(maxsize=None)  # called with this module's few constant safe sets
def _needs_no_escape(safe: str) -> Callable[[str], object]:
    """A test that a text holds only characters quote() leaves as they are."""
    return re.compile(f"[A-Za-z0-9_.~{re.escape(safe)}-]*").fullmatch


def request_target(exchange: Exchange) -> str:
    """Path and query as logged: escaped, secrets redacted."""
    target = escaped(exchange.path, PATH_SAFE) or "/"
    query = redact_query(exchange.query)
    return f"{target}?{escaped(query, QUERY_SAFE)}" if query else target


def access_fields(exchange: Exchange) -> dict[str, Any]:
    """The access line's fields, as the JSON format gives them."""
    return {
        "client": escaped(exchange.client, ":.[]%"),
        "user": quote(exchange.user, safe="@/.:-_") if exchange.user else "-",
        "method": escaped(exchange.method, ""),
        "path": request_target(exchange),
        "protocol": escaped(exchange.protocol, "/."),
        "status": exchange.status,
        "bytes": exchange.bytes,
        "duration": round(exchange.duration, 6),
    }


def log_access(exchange: Exchange) -> None:
    """Write the access line of ``exchange`` now (:class:`AccessLog` calls this)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    f = access_fields(exchange)
    # Logger.info would also look up its caller's file and line on the stack, which
    # an access line never shows: the record is made and handled directly.
    record = access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, '%s %s "%s %s %s" %d %d %.3f%s',
        (f["client"], f["user"], f["method"], f["path"], f["protocol"], f["status"],
         f["bytes"], f["duration"], " (failed)" if exchange.failed else ""),
        None, extra={"access": {**f, "failed": exchange.failed}})
    if exchange.ended:  # the time of the response, not of this call
        record.created = exchange.ended
        record.msecs = int(exchange.ended % 1 * 1000)
    access_log.handle(record)


def flush_access_logs() -> None:
    """Write the lines every :class:`AccessLog` of this process still holds (for a
    server that is about to end, as on SIGTERM)."""
    for access_log_queue in list(_access_logs):
        access_log_queue.flush()


class AccessLog:
    """The :mod:`wsgi_app.observe` listener writing access lines, off the request path.

    A request only appends its :class:`Exchange` to a queue (and, when the
    queue was empty, wakes the writer); a thread of this object's own makes the
    lines (:func:`log_access`) in batches, ``delay`` seconds after the first
    of a batch, with each line's time the time of its response.  Why: made by
    the thread that served the request, between two requests, an access line
    cost about 40 us of CPU under waitress (records, handlers, formatting and
    their locks, with caches cold from the other threads), about as much as
    the rest of a cached GET; in batches, a few.  Lines still queued when the
    process ends are written then: the thread is not a daemon, so Python waits
    for it at exit, and it writes what is left and ends once the main thread
    has ended.  (``atexit`` alone missed them in granian's worker processes,
    which multiprocessing ends with ``os._exit`` after running only the
    threads' shutdown.)
    """

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.pending: collections.deque[Exchange] = collections.deque()
        self.wake = threading.Event()
        self.start_lock = threading.Lock()
        self.writer: threading.Thread | None = None
        _access_logs.add(self)
        atexit.register(self.flush)
        # A child process (fork) has the queue but not the thread: it starts its own.
        os.register_at_fork(after_in_child=self._forget_writer)

    def __call__(self, exchange: Exchange) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        self.pending.append(exchange)
        if not self.wake.is_set():  # the first of a batch (see _run for why none is lost)
            with self.start_lock:  # against a writer ending meanwhile
                if self.writer is None:
                    # daemon=False said: a thread inherits it from the one that
                    # starts it, and granian's threads are daemons to Python.
                    self.writer = threading.Thread(target=self._run, name="access-log",
                                                   daemon=False)
                    self.writer.start()
                self.wake.set()

    def _forget_writer(self) -> None:
        self.writer = None
        self.start_lock = threading.Lock()
        self.wake = threading.Event()

    def _run(self) -> None:
        # The flag is cleared before the queue is emptied: an exchange appended
        # after the clear is either taken by this flush or sets the flag again,
        # and one appended before it (by a request that saw the flag set) is
        # taken by this flush.
        # Every EXIT_CHECK seconds without a line it looks whether the main thread
        # has ended (the process is ending and waits for this thread): then it
        # writes what is left and ends.  After IDLE_EXIT seconds without a line it
        # ends too (a process that builds many applications, such as a test
        # suite, keeps no idle threads); the next line starts another.
        main = threading.main_thread()
        idle_since = time.monotonic()
        while True:
            if self.wake.wait(EXIT_CHECK):
                time.sleep(self.delay)
                self.wake.clear()
                self.flush()
                idle_since = time.monotonic()
                continue
            ending = not main.is_alive()
            if ending or time.monotonic() - idle_since >= IDLE_EXIT:
                with self.start_lock:
                    if not self.wake.is_set():
                        self.writer = None
                        self.flush()  # empty unless the process is ending
                        return

    def flush(self) -> None:
        """Write every queued line now, in the order the requests began.  (A
        request is queued when its response is closed, which the server may do
        a little after the client has its answer and has sent the next one.)"""
        batch = []
        while True:
            try:
                batch.append(self.pending.popleft())
            except IndexError:
                break
        batch.sort(key=_began)
        for exchange in batch:
            try:
                log_access(exchange)
            except Exception:  # a bug: said, and the writer goes on with the next line
                logging.getLogger("wsgi_app").exception("access line not written")


IDLE_EXIT = 60.0
"""Seconds without an access line after which :class:`AccessLog`'s thread ends."""
EXIT_CHECK = 0.25
"""How often (seconds) an idle :class:`AccessLog` thread looks whether the process
is ending: what it may add to a process's exit."""


def _began(exchange: Exchange) -> float:
    return exchange.ended - exchange.duration


_access_logs: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped."""
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def iso_time(created: float) -> str:
    """``2026-12-02T01:09:41.123Z``."""
    milliseconds = int(created % 1 * 1000)
    return _iso_second(int(created)) + f".{milliseconds:03d}Z"


@functools.lru_cache(maxsize=4)  # lines come in time order: the last few seconds
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, the message on one line; a traceback follows
    on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{iso_time(record.created)} {record.levelname} {record.name}: "
                f"{one_line(record.getMessage())}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``pid`` (the
    process: under ``--server granian --workers N``, the worker), ``message``,
    the access fields on access lines, ``traceback`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname,
                                 "logger": record.name, "pid": record.process,
                                 "message": record.getMessage()}
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` and above to ``stream`` (stderr) in ``fmt``."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # waitress logs "Task queue depth is N" for every queued request under load:
    # only its real warnings and errors.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
