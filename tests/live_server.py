"""A real ``prosody-store serve`` (waitress or granian) on 127.0.0.1, for tests that talk HTTP to it.

``LiveServer(data_path, *extra_args)`` starts ``python -m prosody_store serve`` on
a free loopback port as a subprocess and waits until it accepts connections;
``close()`` stops it.  ``server_options(name)`` are the options that choose the
server (``SERVERS``: waitress, the default, and granian with 2 workers), for
fixtures parametrized over both; it skips (fails in CI) when granian is missing.  ``demo_copy(tmp)`` copies ``fixtures/demo`` (accounts
made by real prosodyctl) into a temporary directory.  ``request()`` is one
HTTP/1.1 exchange over :mod:`http.client`.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

DEMO_PASSWORDS = {"alice": "wonderland", "bob": "builder", "admin": "demo-admin"}

SERVERS = ("waitress", "granian")
"""The servers ``prosody-store serve --server`` runs."""
GRANIAN_WORKERS = 2


def server_options(name: str, workers: int = GRANIAN_WORKERS) -> tuple[str, ...]:
    """The ``serve`` options that run server ``name`` (granian: with ``workers``
    worker processes); skips the test (fails it in CI) if granian is missing."""
    if name == "waitress":
        return ()
    try:
        import granian  # noqa: F401
    except ImportError:
        from tests.conftest import skip_or_fail

        skip_or_fail("granian is not installed (pip install 'prosody-store[fast]')")
    return ("--server", name, "--workers", str(workers))


def basic(jid: str | bytes, password: str | bytes) -> str:
    """An ``Authorization`` header value for HTTP Basic."""
    raw = (jid.encode() if isinstance(jid, str) else jid) + b":" + (
        password.encode() if isinstance(password, str) else password)
    return "Basic " + base64.b64encode(raw).decode("ascii")


def demo_auth(user: str) -> dict[str, str]:
    """Headers authenticating as a demo user (alice, bob or admin) on localhost."""
    return {"Authorization": basic(f"{user}@localhost", DEMO_PASSWORDS[user])}


def demo_copy(tmp: Path) -> Path:
    """A writable copy of ``fixtures/demo``."""
    target = Path(tmp) / "data"
    shutil.copytree(DEMO, target)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``prosody-store --data-path DATA serve --listen 127.0.0.1:PORT *args``."""

    def __init__(self, data_path: Path, *args: str, admins: tuple[str, ...] = ("admin@localhost",),
                 log_path: Path | None = None, wrapper: tuple[str, ...] = (),
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.port = free_port()
        self.data_path = Path(data_path)
        self.log_path = log_path or self.data_path.parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "w+b")
        command = [sys.executable, "-m", "prosody_store", "--data-path", str(data_path), "serve",
                   "--listen", f"127.0.0.1:{self.port}"]
        for admin in admins:
            command += ["--admin", admin]
        # wrapper: a command that runs the server, such as setpriv dropping root's
        # power to ignore file permissions; preexec_fn: run in the child before it
        # starts (resource limits, say).
        # Its own process group, so that close() can end what it started (granian's
        # worker processes) even if the server itself did not.
        self.proc = subprocess.Popen([*wrapper, *command, *args], cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("server did not accept connections in time") from None
                time.sleep(0.05)

    def log(self) -> str:
        """What the server printed so far (all of it, after close())."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, method, path, body, headers, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._end_group()
        self._log.close()

    def _end_group(self) -> None:
        """Give processes left in the server's group (a worker that outlived its
        server) STOP_TIMEOUT to end after SIGTERM, then SIGKILL them."""
        deadline = time.monotonic() + STOP_TIMEOUT
        sig = signal.SIGTERM
        while True:
            try:
                os.killpg(self.proc.pid, sig)  # the group the server leads (its pid)
            except (ProcessLookupError, PermissionError):
                return  # nothing left
            if sig == signal.SIGKILL:
                return
            time.sleep(0.05)
            if time.monotonic() > deadline:
                sig = signal.SIGKILL

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60, *,
            source: str | None = None,
            tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection to 127.0.0.1: (status, lower-cased
    headers, body); from the local address ``source``, over TLS with ``tls``."""
    where = {"source_address": (source, 0)} if source else {}
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, **where)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls,
                                           **where)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def demo_on_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's ``size=``) mounted under ``tmp_path``,
    holding a copy of the demo data in ``data/``; yields the mount point.
    Skips (fails in CI) where mounting is not permitted."""
    from tests.conftest import skip_or_fail

    if os.geteuid() != 0:
        skip_or_fail("mounting a tmpfs needs root")
    point = Path(tmp_path) / "mnt"
    point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        shutil.copytree(DEMO, point / "data")
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
