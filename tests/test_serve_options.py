"""``prosody-store serve`` options, run as real subprocesses on 127.0.0.1.

A nonsensical limit (``--threads 0`` started a server that never answered) and
a port already in use are refused with one line on stderr and an exit status,
before anything listens; good limits start a server that answers.
"""
from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys

import pytest

from tests.live_server import (
    ROOT,
    SERVERS,
    LiveServer,
    demo_auth,
    demo_copy,
    free_port,
    server_options,
)

RUN_TIMEOUT = 30  # seconds: a refused option must exit long before this


def serve(*args: str, port: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    port = port or free_port()
    command = [sys.executable, "-m", "prosody_store", "--data-path", "fixtures/demo", "serve",
               "--listen", f"127.0.0.1:{port}", *args]
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(args)}: still running after {RUN_TIMEOUT} s "
                    f"(stderr: {exc.stderr!r})")


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("prosody-store: "), lines
    return lines[0]


@pytest.mark.parametrize("option, value", [
    ("--threads", "0"), ("--threads", "-1"), ("--threads", "100000"),
    ("--max-body", "0"), ("--max-body", "-5"),
    ("--connection-limit", "0"), ("--connection-limit", "-1"),
    ("--idle-timeout", "0"), ("--idle-timeout", "-3"),
    ("--request-timeout", "0"), ("--request-timeout", "-3"),
    ("--workers", "0"), ("--workers", "1000"),
])
def test_nonsensical_limit_is_a_usage_error(option, value):
    proc = serve(option, value)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert option in line, line
    assert "serving" not in proc.stderr


@pytest.mark.parametrize("option", ["--threads", "--max-body", "--connection-limit",
                                    "--idle-timeout", "--request-timeout"])
def test_not_a_number_is_a_usage_error(option):
    proc = serve(option, "many")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert option in proc.stderr.strip().splitlines()[-1]


def test_help_documents_the_limits():
    proc = subprocess.run([sys.executable, "-m", "prosody_store", "serve", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option in ("--threads", "--max-body", "--connection-limit", "--idle-timeout",
                   "--request-timeout", "--server", "--workers"):
        assert option in text
    assert "default 1000" in text and "default 30" in text
    assert "granian" in text and "store[fast]" in text


@pytest.mark.parametrize("server", SERVERS)
def test_port_in_use_is_one_line_naming_the_address(server):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = serve(*server_options(server), port=port)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line, line


@pytest.mark.parametrize("server", SERVERS)
def test_unresolvable_address_is_a_usage_error(server):
    command = [sys.executable, "-m", "prosody_store", "--data-path", "fixtures/demo", "serve",
               "--listen", "no-such-host.invalid:5280", *server_options(server)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "no-such-host.invalid" in one_line(proc.stderr)


def test_good_limits_serve(tmp_path):
    with LiveServer(demo_copy(tmp_path), "--threads", "1", "--max-body", "1000",
                    "--connection-limit", "10", "--idle-timeout", "5",
                    "--request-timeout", "5") as server:
        status, _, _ = server.request("GET", "/data/roster", headers=demo_auth("alice"),
                                      timeout=10)
        assert status == 200
        status, _, _ = server.request("PUT", "/data/roster", body=b"[" + b"1," * 600 + b"1]",
                                      headers={"Content-Type": "application/json",
                                               **demo_auth("alice")}, timeout=10)
        assert status == 413


@pytest.mark.parametrize("server_name", SERVERS)
def test_sigterm_writes_every_access_line_first(tmp_path, server_name):
    """Access lines are written in batches, a few milliseconds after their
    responses: a SIGTERM just after the responses still finds their lines
    written.  Under waitress the server ends as SIGTERM ends a process; under
    granian it stops its worker processes, which write their last lines as
    they end, and exits 0.  The requests share one connection, whose next
    request the server reads only once the previous one is done (its line
    queued): so every request but the last is done."""
    requests = 20
    server = LiveServer(demo_copy(tmp_path), *server_options(server_name))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            for _ in range(requests + 1):
                conn.request("GET", "/data/roster", headers=demo_auth("alice"))
                response = conn.getresponse()
                response.read()
                assert response.status == 200
        finally:
            conn.close()
        server.proc.terminate()
        expected = -signal.SIGTERM if server_name == "waitress" else 0
        assert server.proc.wait(timeout=RUN_TIMEOUT) == expected
    finally:
        server.close()
    assert requests <= server.log().count(" wsgi_app.access: ") <= requests + 1, server.log()


def _file_limit(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def open_file_limit(pid: int) -> int:
    """The soft open-file limit of a running process."""
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def limited_server(tmp_path, *args: str, soft: int, hard: int) -> LiveServer:
    """``serve`` on a copy of the demo data with the open-file limits ``soft``/``hard``."""
    return LiveServer(demo_copy(tmp_path), *args, preexec_fn=_file_limit(soft, hard))


def closed_log(server: LiveServer) -> str:
    """Stop the server; what it printed, which must hold no traceback."""
    server.close()
    text = server.log()
    assert "Traceback" not in text, text
    return text


needs_rlimit = pytest.mark.skipif(not hasattr(resource, "RLIMIT_NOFILE")
                                  or not os.path.exists("/proc/self/limits"),
                                  reason="needs RLIMIT_NOFILE and /proc")


@needs_rlimit
def test_connection_limit_beyond_open_file_limit_is_lowered(tmp_path):
    """With a hard limit of 256 open files, --connection-limit 1000 cannot be met:
    the server says so on one line, lowers its limit to fit, and serves."""
    server = limited_server(tmp_path, "--connection-limit", "1000", soft=256, hard=256)
    try:
        status, _, _ = server.request("GET", "/data/roster", headers=demo_auth("alice"),
                                      timeout=10)
        assert status == 200
    finally:
        text = closed_log(server)
    warnings = [line for line in text.splitlines() if "connection limit" in line]
    assert len(warnings) == 1 and "256" in warnings[0], text


@needs_rlimit
def test_soft_open_file_limit_is_raised_for_the_connection_limit(tmp_path):
    """A soft limit of 1024 open files (a common default) is raised at start to what
    the default 1000 connections need, within the hard limit, with no warning."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"hard open-file limit {hard} is below 4096")
    server = limited_server(tmp_path, soft=1024, hard=4096)
    try:
        assert open_file_limit(server.proc.pid) > 3000
    finally:
        text = closed_log(server)
    assert "warning" not in text, text
