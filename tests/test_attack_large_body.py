"""Large request bodies against the real server (``prosody-store serve``, waitress, 127.0.0.1).

waitress reads a request's whole body before the application sees it,
spooling it to a temporary file past 512 KiB, and by default accepts up to
1 GiB.  So a body of any size up to that was written to disk in full, with or
without credentials, before the service could answer 401 or 413.  These tests
send bodies far over ``--max-body`` (1 MiB here), with Content-Length and
chunked, with and without credentials, and check that the server answers 413
while the client is still sending, and that its spool files (watched in
``/proc/<pid>/fd`` under a ``TMPDIR`` of the test's own) never grow past the
limit.  A body of exactly ``--max-body`` bytes still reaches the application.

The same requests go to granian (``--server granian --workers 2``), which
spools nothing: the application refuses a declared length over the limit
before the login, and reads a chunked body (to the limit and one read past
it) only after the login, so a chunked body without valid credentials is
answered 401 unread.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.live_server import SERVERS, LiveServer, demo_auth, demo_copy, server_options

MAX_BODY = 1024 * 1024
HUGE = 64 * 1024 * 1024   # what the client offers to send
BLOCK = 64 * 1024
TIME_LIMIT = 30.0         # seconds for one upload, whatever happens
# Bytes the kernel may take from the client without the server reading them
# (both socket buffers on loopback); the server reading everything would let
# the client send all of HUGE.
IN_FLIGHT = 24 * 1024 * 1024


@pytest.fixture(scope="module", params=SERVERS)
def server(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("large-body")
    spool = root / "spool"
    spool.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(spool))  # where waitress spools bodies (tempfile)
        srv = LiveServer(demo_copy(root), "--max-body", str(MAX_BODY),
                         *server_options(request.param))
    srv.spool = spool
    srv.name = request.param
    yield srv
    srv.close()


class SpoolWatch:
    """The largest temporary file under ``spool`` the server process holds open,
    sampled from ``/proc/<pid>/fd`` every few milliseconds while running."""

    def __init__(self, pid: int, spool: Path) -> None:
        self.fd_dir = Path(f"/proc/{pid}/fd")
        self.spool = str(spool)
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + TIME_LIMIT + 10
        while not self._stop.is_set() and time.monotonic() < end:
            self.sample()
            time.sleep(0.002)

    def sample(self) -> None:
        try:
            fds = list(self.fd_dir.iterdir())
        except OSError:
            return
        for fd in fds:
            try:
                if os.readlink(fd).startswith(self.spool):
                    self.largest = max(self.largest, os.stat(fd).st_size)
            except OSError:
                pass  # closed meanwhile

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=TIME_LIMIT)
        self.sample()
        return self.largest


def upload(server, head: bytes, blocks, total: int) -> tuple[int | None, int, float, int]:
    """Send ``head`` and then ``blocks`` (an iterator of bytes, ``total`` in all) on one
    connection while reading the answer: (status or None, body bytes the client got
    to send, seconds until the status line arrived, largest spool file seen).
    What was received of the answer is left in ``upload.received``."""
    watch = SpoolWatch(server.proc.pid, server.spool) if os.path.isdir("/proc/self/fd") else None
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(0.5)
    sent = 0
    answered = threading.Event()
    start = time.monotonic()
    end = start + TIME_LIMIT

    def send() -> None:
        nonlocal sent
        try:
            sock.sendall(head)
            for block in blocks:
                view = memoryview(block)
                while view and not answered.is_set():
                    if time.monotonic() > end:
                        return
                    try:
                        n = sock.send(view)
                    except socket.timeout:
                        continue
                    sent += n
                    view = view[n:]
                if answered.is_set():
                    return
        except OSError:
            return  # the server closed the connection: it stopped reading

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    status = None
    took = TIME_LIMIT
    try:
        while time.monotonic() < end and not complete(received):
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if not received:
                took = time.monotonic() - start
            received += data
        if b"\r\n" in received:
            status = int(received.split(b" ", 2)[1])
    finally:
        answered.set()
        sender.join(timeout=TIME_LIMIT)
        sock.close()
    largest = watch.stop() if watch else 0
    upload.received = received
    assert sent <= total
    return status, sent, took, largest


def complete(response: bytes) -> bool:
    """Whether ``response`` holds a whole HTTP response (headers and Content-Length body)."""
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def content_length_request(auth: dict[str, str], length: int, store: str = "roster") -> bytes:
    headers = {"Host": "localhost", "Content-Type": "application/json",
               "Content-Length": str(length), **auth}
    return (f"PUT /data/{store} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def chunked_request(auth: dict[str, str]) -> bytes:
    headers = {"Host": "localhost", "Content-Type": "application/json",
               "Transfer-Encoding": "chunked", **auth}
    return ("PUT /data/roster HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def blocks(total: int):
    block = b"[" + b"1," * (BLOCK // 2 - 1) + b"1"
    for _ in range(total // len(block)):
        yield block


def chunks(total: int):
    for block in blocks(total):
        yield b"%x\r\n%s\r\n" % (len(block), block)
    yield b"0\r\n\r\n"


AUTHS = {"anonymous": {}, "alice": demo_auth("alice")}


@pytest.mark.parametrize("who", list(AUTHS))
def test_content_length_over_limit_is_refused_before_the_body(server, who):
    status, sent, took, largest = upload(
        server, content_length_request(AUTHS[who], HUGE), blocks(HUGE), HUGE)
    print(f"Content-Length {HUGE}, {who}: {status} after {took:.3f} s, "
          f"{sent} bytes sent, largest spool file {largest}")
    assert status == 413
    assert sent < IN_FLIGHT, f"the server took {sent} bytes of a refused body"
    assert largest <= MAX_BODY


@pytest.mark.parametrize("who", list(AUTHS))
def test_chunked_over_limit_is_refused_at_the_limit(server, who):
    wire = sum(len(c) for c in chunks(HUGE))
    status, sent, took, largest = upload(server, chunked_request(AUTHS[who]), chunks(HUGE), wire)
    print(f"chunked {HUGE}, {who}: {status} after {took:.3f} s, "
          f"{sent} bytes sent, largest spool file {largest}")
    # granian hands the body to the application, which reads none of it before the login.
    assert status == (401 if server.name == "granian" and who == "anonymous" else 413)
    assert sent < MAX_BODY + IN_FLIGHT, f"the server took {sent} bytes of a refused body"
    assert largest <= MAX_BODY + 64 * 1024  # at most one read past the limit


def test_body_of_exactly_max_body_reaches_the_application(server):
    prefix = b'{"note": "'
    suffix = b'"}'
    body = prefix + b"x" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY
    status, headers, _ = server.request("PUT", "/data/bigstore", body=body, headers={
        "Content-Type": "application/json", **demo_auth("alice")}, timeout=TIME_LIMIT)
    assert status == 201, status
    status, _, got = server.request("GET", "/data/bigstore", headers=demo_auth("alice"),
                                    timeout=TIME_LIMIT)
    assert status == 200 and json.loads(got) == json.loads(body)


def test_one_byte_over_is_refused(server):
    body = b"1" * (MAX_BODY + 1)
    status, _, _, largest = upload(
        server, content_length_request(demo_auth("alice"), len(body), "bigstore"), [body],
        len(body))
    assert status == 413
    assert largest == 0
    assert b"body larger than %d bytes" % MAX_BODY in upload.received


def test_server_still_serves_after_refusals(server):
    status, _, _ = server.request("GET", "/data/roster", headers=demo_auth("alice"), timeout=10)
    assert status == 200
