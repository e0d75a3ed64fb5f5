"""``prosody-store serve --server granian --workers N``: the service under granian.

A real granian with two worker processes on 127.0.0.1.  Each worker keeps its
own login cache; a changed account file must end a cached login in every one
of them.  Which worker answered is read from the JSON log (``pid``).
"""
from __future__ import annotations

import json
import select
import socket
import stat
import subprocess
import sys

import pytest

from prosody_store import DataManager
from prosody_store.accounts import hash_password
from tests.live_server import (
    ROOT,
    LiveServer,
    basic,
    demo_auth,
    demo_copy,
    free_port,
    server_options,
)
from tests.test_proxy_nginx import FORGED, JSON, needs_unix, serve_unix, stop, unix_request

WORKERS = 2
ATTEMPTS = 200
"""Most requests a test sends to reach every worker (each on a new connection)."""


def answered_by(server: LiveServer, status: int, path: str = "/data/roster") -> set[int]:
    """The worker processes that logged an access line with ``status`` for ``path``."""
    pids = set()
    for line in server.log().splitlines():
        if not line.startswith("{"):
            continue  # granian's own lines
        entry = json.loads(line)
        if (entry.get("logger") == "wsgi_app.access" and entry.get("status") == status
                and entry.get("path") == path):
            pids.add(entry["pid"])
    return pids


def until_every_worker(server: LiveServer, headers: dict[str, str], status: int) -> set[int]:
    """Send GET /data/roster (new connections) until ``WORKERS`` workers have
    answered ``status``, at most ``ATTEMPTS`` times; every answer must be ``status``."""
    for _ in range(ATTEMPTS):
        got, _, body = server.request("GET", "/data/roster", headers=headers, timeout=30)
        assert got == status, (got, body)
        pids = answered_by(server, status)
        if len(pids) >= WORKERS:
            return pids
    return answered_by(server, status)


@pytest.fixture
def granian(demo_data):
    with LiveServer(demo_data, *server_options("granian", WORKERS), "--log-format", "json",
                    admins=()) as live:
        yield live


def test_a_changed_account_file_ends_the_cached_login_in_every_worker(granian, demo_data):
    alice = demo_auth("alice")
    served = until_every_worker(granian, alice, 200)
    assert len(served) == WORKERS, f"only workers {served} answered in {ATTEMPTS} requests"

    # The password changes (as prosodyctl passwd would: a new record, a new file).
    DataManager(demo_data).store("alice", "localhost", "accounts",
                                 hash_password("through-the-looking-glass"))
    refused = until_every_worker(granian, alice, 401)
    assert refused == served, f"workers {served - refused} never refused the old password"

    status, _, _ = granian.request("GET", "/data/roster", headers={
        "Authorization": basic("alice@localhost", "through-the-looking-glass")})
    assert status == 200


def test_each_worker_has_its_own_processes_and_the_log_says_so(granian):
    until_every_worker(granian, demo_auth("bob"), 200)
    pids = answered_by(granian, 200)
    assert len(pids) == WORKERS and granian.proc.pid not in pids


def test_a_body_declared_too_large_is_refused_before_the_login(demo_data):
    with LiveServer(demo_data, *server_options("granian", 1), "--max-body", "1000") as server:
        for headers in ({}, demo_auth("alice"), {"Authorization": basic("alice@localhost", "x")}):
            status, _, body = server.request("PUT", "/data/big", body=b"1" * 1001, headers={
                "Content-Type": "application/json", **headers})
            assert (status, body) == (413, b"body larger than 1000 bytes\n")
        status, _, _ = server.request("PUT", "/data/big", body=b'"' + b"x" * 998 + b'"',
                                      headers={"Content-Type": "application/json",
                                               **demo_auth("alice")})
        assert status == 400  # reached the application: a string is not a table


def test_a_chunked_body_is_read_to_the_limit_only_after_the_login(demo_data):
    with LiveServer(demo_data, *server_options("granian", 1), "--max-body", "1000") as server:
        for headers, expected in (({}, 401), (demo_auth("alice"), 413)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                conn.sendall(("PUT /data/big HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\n"
                              f"Transfer-Encoding: chunked\r\n{head}\r\n").encode())
                conn.sendall(b"7d0\r\n" + b"1" * 2000 + b"\r\n0\r\n\r\n")
                answer = conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 %d " % expected), answer[:80]


def test_slow_headers_and_idle_connections_are_closed(demo_data):
    with LiveServer(demo_data, *server_options("granian", 1), "--request-timeout", "1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle:
            assert idle.recv(1) == b""  # closed by the server, not by the timeout above
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
            slow.sendall(b"GET /data/roster HTTP/1.1\r\nHost: x\r\n")
            closed = False
            for _ in range(300):  # a header line every 0.1 s: at most 30 s
                try:
                    slow.sendall(b"X-Slow: 1\r\n")
                    readable, _, _ = select.select([slow], [], [], 0.1)
                    if readable and slow.recv(1) == b"":
                        closed = True
                        break
                except OSError:  # reset or broken pipe: closed as well
                    closed = True
                    break
            assert closed


def test_workers_need_granian():
    result = subprocess.run(
        [sys.executable, "-m", "prosody_store", "--data-path", str(ROOT / "fixtures" / "demo"),
         "serve", "--workers", "2", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "--workers needs --server granian (waitress runs one process: --threads)")


def test_without_granian_the_command_says_how_to_get_it(tmp_path):
    # A Python that cannot import granian: a stub package that fails to import.
    stub = tmp_path / "granian"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('no granian here')\n")
    data = demo_copy(tmp_path)
    env_path = f"{tmp_path}:{ROOT}"
    result = subprocess.run(
        [sys.executable, "-m", "prosody_store", "--data-path", str(data), "serve",
         "--server", "granian", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'prosody-store[fast]'" in lines[0], lines


@needs_unix
def test_unix_socket_under_granian_trusts_its_proxy_as_under_waitress(tmp_path):
    data = demo_copy(tmp_path)
    sock = tmp_path / "http.sock"
    proc = serve_unix(data, sock, "--trusted-proxy", "unix", *server_options("granian", 1))
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        status, headers, _ = unix_request(sock, "PUT", "/data/settings", b'{"a":1}',
                                          {**JSON, **demo_auth("alice"), **FORGED})
        assert status == 201
        assert headers["location"].startswith("https://evil.example/elsewhere/data/")
    finally:
        stop(proc)
