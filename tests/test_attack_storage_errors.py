"""Failures of the filesystem and hostile names, over the real server (waitress, and
granian with 2 workers, on 127.0.0.1).

Each answers a 4xx/5xx with a one-line reason that names no server path
(the detail goes to the server's log), and loses nothing: 404 for names no
file can have, 507 for a full disk, 503 for a read-only one, 500 for
permission denied or a damaged file (never "no data").  HEAD never sends a
body.  The filesystem cases use real tmpfs mounts and a server started
without root's power to ignore permissions (setpriv), so they need root.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.live_server import SERVERS, LiveServer, demo_auth, demo_on_tmpfs, server_options

JSON = {"Content-Type": "application/json"}
WRITES = [("PUT", "/data/settings", b'{"theme":"dark"}'),
          ("POST", "/data/notes", b'{"text":"hi"}'),
          ("PUT", "/data/roster", b'{"x":{"subscription":"both"}}'),
          ("DELETE", "/data/roster", None)]


@pytest.fixture(params=SERVERS)
def server_args(request) -> tuple[str, ...]:
    """The options choosing each server in turn."""
    return server_options(request.param)


@pytest.fixture
def server(demo_data, server_args):
    """The real service on ``demo_data`` under each server (admin@localhost is --admin)."""
    with LiveServer(demo_data, *server_args) as live:
        yield live


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def assert_reason(status: int, body: bytes, expected: int, data: Path) -> None:
    assert status == expected, (status, body)
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    assert str(data).encode() not in body and b"/tmp" not in body, body


# ---------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("segment", ["a" * 300, "%C2%AD", "%E2%80%8B", "%00", "a%2Fb" * 60])
@pytest.mark.parametrize("method,body", [("GET", None), ("PUT", b'{"a":1}'), ("POST", b'{"a":1}'),
                                         ("DELETE", None)])
def test_names_no_file_can_have_are_404(server, demo_data, segment, method, body):
    before = snapshot(demo_data)
    status, _, answer = server.request(method, f"/data/localhost/{segment}/roster", body,
                                       {**demo_auth("admin"), **JSON})
    assert status in (403, 404), (status, answer)  # 403: not a user the admin may touch
    assert_reason(status, answer, status, demo_data)
    assert snapshot(demo_data) == before


def test_long_host_is_404(server, demo_data):
    before = snapshot(demo_data)
    status, _, answer = server.request("PUT", "/data/" + "h" * 300 + "/alice/roster", b'{"a":1}',
                                       {**demo_auth("admin"), **JSON})
    assert_reason(status, answer, 404, demo_data)
    assert snapshot(demo_data) == before


# ---------------------------------------------------------------------------
# Damaged data


def test_damaged_file_names_no_path(server, demo_data):
    (demo_data / "localhost" / "roster" / "alice.dat").write_bytes(b"return { broken = ;\n")
    status, _, body = server.request("GET", "/data/roster", headers=demo_auth("alice"))
    assert_reason(status, body, 500, demo_data)
    assert b"line 1" in body and b"roster" in body
    assert str(demo_data / "localhost" / "roster") in server.log()  # the operator gets the path


# ---------------------------------------------------------------------------
# HEAD


def test_head_of_a_list_sends_no_body_and_keeps_the_connection_usable(server):
    """A HEAD of a (streamed) list used to end with the chunk terminator 0\\r\\n\\r\\n, which
    the next pipelined response was then read after."""
    auth = demo_auth("alice")["Authorization"]
    requests = (f"HEAD /data/archive HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
                f"GET /data/roster HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]  # no stray body bytes before it
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    status, _, body = server.request("GET", "/data/archive", headers=demo_auth("alice"))
    assert status == 200 and len(body) == length


# ---------------------------------------------------------------------------
# The filesystem


@pytest.fixture
def mount(tmp_path):
    """A fresh tmpfs of 2 MiB holding a copy of the demo data; yields its directory."""
    with demo_on_tmpfs(tmp_path, "2m") as point:
        yield point


def test_read_only_filesystem_is_503(mount, server_args):
    data = mount / "data"
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    before = snapshot(data)
    with LiveServer(data, *server_args, log_path=mount.parent / "server.log") as server:
        for method, path, body in WRITES:
            status, _, answer = server.request(method, path, body, {**demo_auth("alice"), **JSON})
            assert_reason(status, answer, 503, data)
        assert server.request("GET", "/data/roster", headers=demo_auth("alice"))[0] == 200
        assert "read-only" in server.log().lower()
    assert snapshot(data) == before


def test_full_disk_is_507_and_loses_nothing(mount, server_args):
    data = mount / "data"
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the tmpfs to the last block (2 MiB: a bounded loop)
        for _ in range(2 * 1024 * 1024 // 4096 + 1):
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    before = snapshot(data)
    big = b'{"notes":"' + b"x" * 200_000 + b'"}'
    with LiveServer(data, *server_args, log_path=mount.parent / "server.log") as server:
        for method, path, body in [("PUT", "/data/roster", big), ("PUT", "/data/settings", big),
                                   ("POST", "/data/notes", big)]:
            status, _, answer = server.request(method, path, body, {**demo_auth("alice"), **JSON})
            assert_reason(status, answer, 507, data)
        status, _, body = server.request("GET", "/data/roster", headers=demo_auth("alice"))
        assert status == 200
    # The old roster whole, no half-written or empty file (empty store directories may stay).
    assert {k: v for k, v in snapshot(data).items() if v is not None} == {
        k: v for k, v in before.items() if v is not None}


def test_permission_denied_is_500_not_no_data(demo_data, server_args):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        skip_or_fail("needs root and setpriv to run the server without root's file powers")
    roster = demo_data / "localhost" / "roster"
    roster.chmod(0)
    try:
        wrapper = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
        with LiveServer(demo_data, *server_args, wrapper=wrapper) as server:
            for method, path, body in [("GET", "/data/roster", None), *WRITES[2:]]:
                status, _, answer = server.request(method, path, body,
                                                   {**demo_auth("alice"), **JSON})
                assert_reason(status, answer, 500, demo_data)
                assert b"may not access" in answer
            assert server.request("GET", "/data/vcard", headers=demo_auth("alice"))[0] == 200
    finally:
        roster.chmod(0o755)
