"""Slow and idle clients against the real server (``prosody-store serve``, waitress, 127.0.0.1).

A client that sends its request a header line at a time, a few seconds apart,
is never idle, so an inactivity timeout alone never closes it; a few hundred
of them used to take every connection slot (waitress's default
``connection_limit`` is 100) and every other client waited in the listen
backlog until they gave up.  These tests open such clients for real and check
that others are still served promptly, that a request not received in full
within ``--request-timeout`` loses its connection, and that clients which
stop reading a response hold neither a worker thread nor a connection slot
past ``--idle-timeout``.

Every loop is bounded in rounds and in time; the bounds on timing are
generous (seconds where the server needs milliseconds).
"""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from prosody_store.datamanager import DataManager
from tests.live_server import LiveServer, basic, demo_auth, demo_copy

TRICKLERS = 300          # connections sending a header line every second, never finishing
IDLERS = 100             # connections that send nothing at all
PROMPT = 5.0             # seconds: a normal request must be answered within this
HEADER_LINE = b"GET /data/roster HTTP/1.1\r\nHost: localhost\r\n"


class Crowd:
    """``count`` connections to ``port`` that each send ``first`` and then ``line``
    every ``interval`` seconds, for at most ``duration`` seconds, from one thread.

    ``closed_after[i]`` is how many seconds connection ``i`` stayed open before
    the server closed it (``None`` while open).  The thread stops by itself
    after ``duration``; ``stop()`` ends it sooner and closes the sockets.
    """

    def __init__(self, port: int, count: int, *, first: bytes = HEADER_LINE,
                 line: bytes | None = b"X-Trickle: x\r\n", interval: float = 1.0,
                 duration: float = 25.0) -> None:
        self.line = line
        self.interval = interval
        self.duration = duration
        self.socks: list[socket.socket] = []
        self.opened: list[float] = []
        self.closed_after: list[float | None] = []
        self._stop = threading.Event()
        try:
            for _ in range(count):
                # connect() succeeds once the kernel has queued the connection,
                # accepted by the server or not.
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setblocking(False)
                if first:
                    s.send(first)
                self.socks.append(s)
                self.opened.append(time.monotonic())
                self.closed_after.append(None)
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + self.duration
        rounds = int(self.duration / self.interval) + 1
        for _ in range(rounds):
            if self._stop.wait(self.interval) or time.monotonic() > end:
                return
            for i, s in enumerate(self.socks):
                if self.closed_after[i] is not None:
                    continue
                if self._server_closed(s):
                    self.closed_after[i] = time.monotonic() - self.opened[i]
                    continue
                if self.line:
                    try:
                        s.send(self.line)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self.closed_after[i] = time.monotonic() - self.opened[i]

    @staticmethod
    def _server_closed(s: socket.socket) -> bool:
        try:
            return s.recv(65536) == b""  # the server answers nothing to these: b"" is EOF
        except BlockingIOError:
            return False
        except OSError:
            return True

    def open_count(self) -> int:
        return sum(1 for c in self.closed_after if c is None)

    def stop(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=30)
        for s in self.socks:
            s.close()


def timed_get(port: int, timeout: float = 3 * PROMPT) -> tuple[float, int | str]:
    """An authenticated GET on a new connection: (seconds taken, status or error)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/data/roster", headers=demo_auth("alice"))
        response = conn.getresponse()
        response.read()
        outcome: int | str = response.status
    except OSError as err:  # socket.timeout included
        outcome = f"{type(err).__name__}: {err}"
    finally:
        conn.close()
    return time.monotonic() - start, outcome


@pytest.fixture
def data(tmp_path):
    return demo_copy(tmp_path)


def test_hundreds_of_slow_and_idle_clients_do_not_stop_others(data):
    """300 clients trickling headers plus 100 silent ones, with the default options:
    a normal authenticated GET from another connection is still answered promptly,
    again and again while they stay connected."""
    with LiveServer(data) as server:
        assert timed_get(server.port)[1] == 200
        idlers = Crowd(server.port, IDLERS, first=b"", line=None, duration=20)
        tricklers = Crowd(server.port, TRICKLERS, duration=20)
        try:
            times = []
            for _ in range(3):
                time.sleep(2.0)  # let the crowd take its connection slots first
                elapsed, outcome = timed_get(server.port)
                times.append(round(elapsed, 3))
                assert outcome == 200 and elapsed < PROMPT, (
                    f"GET with {TRICKLERS} trickling and {IDLERS} idle connections open: "
                    f"{outcome} after {elapsed:.1f} s")
            # They were still there: the server was not just quick to drop them.
            assert tricklers.open_count() == TRICKLERS
            assert idlers.open_count() == IDLERS
        finally:
            tricklers.stop()
            idlers.stop()
        print(f"GET times with {TRICKLERS} trickling + {IDLERS} idle connections: {times} s")


def wait_until_closed(crowd: Crowd, seconds: float) -> None:
    """Wait (at most ``seconds``) until the server has closed every client of ``crowd``."""
    try:
        end = time.monotonic() + seconds
        while crowd.open_count() and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        crowd.stop()


@pytest.mark.parametrize("first, line", [
    (HEADER_LINE, b"X-Trickle: x\r\n"),                   # headers, a line at a time
    (b"\r\n", b"\r\n"),                                    # blank lines (empty requests)
    (b"PUT /data/roster HTTP/1.1\r\nHost: localhost\r\n"  # a body, a byte at a time
     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n", b"x"),
], ids=["headers", "blank-lines", "body"])
def test_request_not_received_within_deadline_is_disconnected(data, first, line):
    """With --request-timeout 2, a client still sending its request after 2 s is
    disconnected (within the maintenance interval), although it is never idle."""
    with LiveServer(data, "--request-timeout", "2", "--idle-timeout", "60") as server:
        crowd = Crowd(server.port, 3, first=first, line=line, interval=0.25, duration=20)
        wait_until_closed(crowd, 20)
        assert crowd.open_count() == 0, "trickling clients still connected after 20 s"
        assert all(1.5 <= c < 8 for c in crowd.closed_after), crowd.closed_after
        # The server still serves.
        assert timed_get(server.port)[1] == 200


def test_deadline_is_per_request_not_per_connection(data):
    """A keep-alive connection idle between requests longer than --request-timeout
    is not cut: the deadline runs from a request's first byte to its end."""
    with LiveServer(data, "--request-timeout", "2", "--idle-timeout", "60") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        try:
            first_sock = None
            for i in range(3):
                if i:
                    time.sleep(3.0)
                conn.request("GET", "/data/roster", headers=demo_auth("alice"))
                response = conn.getresponse()
                response.read()
                assert response.status == 200 and not response.will_close
                first_sock = first_sock or conn.sock
                assert conn.sock is first_sock  # the same connection each time
        finally:
            conn.close()


def non_reader(port: int, path: str) -> socket.socket:
    """A connection that asks for ``path`` as alice and never reads the answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
              f"Authorization: {basic('alice@localhost', 'wonderland')}\r\n\r\n".encode())
    return s


MIB = 1024 * 1024


@pytest.mark.parametrize("kind", ["streamed", "buffered"])
def test_clients_that_do_not_read_the_response_are_dropped(data, kind):
    """Clients that ask for a large response and never read it hold no worker and no
    connection slot longer than --idle-timeout: waitress's own idle check never
    closed them (it waits for the socket to become writable first).

    streamed: a 48 MiB archive, written a message at a time, fills waitress's
    output buffer (16 MiB) and blocks the only worker thread (--threads 1).
    buffered: a 12 MiB store, answered in one piece, leaves the worker free but
    the connection open with output pending; four of them fill --connection-limit.
    """
    dm = DataManager(str(data))
    if kind == "streamed":
        dm.list_store("alice", "localhost", "bigarchive",
                      [{"n": i, "body": "x" * MIB} for i in range(48)])
        options, path, count = ("--threads", "1"), "/data/bigarchive", 1
    else:
        dm.store("alice", "localhost", "bigstore", {"blob": "x" * (12 * MIB)})
        # waitress counts its listening socket and its trigger as connections.
        options, path, count = ("--connection-limit", "6"), "/data/bigstore", 4
    with LiveServer(data, "--idle-timeout", "2", *options) as server:
        assert timed_get(server.port)[1] == 200
        stuck = [non_reader(server.port, path) for _ in range(count)]
        try:
            time.sleep(1.0)  # let the server write what it can
            elapsed, outcome = timed_get(server.port, timeout=20)
        finally:
            for s in stuck:
                s.close()
        print(f"{kind}: GET with {count} non-reading clients: {outcome} after {elapsed:.2f} s")
        assert outcome == 200 and elapsed < 12, (outcome, elapsed)


def test_idle_connection_is_closed_after_idle_timeout(data):
    """A connection that sends nothing is closed after --idle-timeout."""
    with LiveServer(data, "--idle-timeout", "2") as server:
        crowd = Crowd(server.port, 3, first=b"", line=None, interval=0.25, duration=20)
        wait_until_closed(crowd, 20)
        assert crowd.open_count() == 0, "idle clients still connected after 20 s"
        assert all(1.5 <= c < 8 for c in crowd.closed_after), crowd.closed_after
