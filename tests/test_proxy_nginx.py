"""The service behind a reverse proxy: ``--trusted-proxy``, a real nginx with TLS, Unix sockets.

The nginx test runs ``contrib/nginx/prosody-store.conf`` itself (its ports,
upstream and certificate paths replaced) as a child ``nginx -g 'daemon off;'``
on 127.0.0.1, with a self-signed certificate made by ``openssl``, in front of
a real ``prosody-store serve --trusted-proxy 127.0.0.1``.  The client connects
from 127.0.0.2, so that the address the service logs can only have come from
``X-Forwarded-For``.
"""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.live_server import (
    ROOT,
    START_TIMEOUT,
    LiveServer,
    basic,
    demo_auth,
    demo_copy,
    free_port,
    request,
)

NGINX_SITE = ROOT / "contrib" / "nginx" / "prosody-store.conf"
CLIENT_ADDRESS = "127.0.0.2"  # any 127/8 address is this machine's on Linux
JSON = {"Content-Type": "application/json"}


def loopback_alias_works() -> bool:
    try:
        with socket.socket() as s:
            s.bind((CLIENT_ADDRESS, 0))
        return True
    except OSError:
        return False


needs_alias = pytest.mark.skipif(not loopback_alias_works(),
                                 reason=f"cannot bind {CLIENT_ADDRESS} (not Linux?)")


def request_from(address: str, port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None,
                 timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:port from the local address ``address``."""
    return request(port, method, path, body, headers, timeout, source=address, tls=tls)


def access_lines(server: LiveServer) -> list[str]:
    return [line for line in server.log().splitlines() if " wsgi_app.access: " in line]


def wait_for_line(server: LiveServer, needle: str, timeout: float = 10) -> str:
    """The first access line holding ``needle`` (lines are written after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in access_lines(server):
            if needle in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line with {needle!r}:\n{server.log()}")
        time.sleep(0.05)


# -- --trusted-proxy without a proxy: who may set X-Forwarded-* ------------------------

FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/elsewhere"}


@needs_alias
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(demo_data):
    with LiveServer(demo_data, "--trusted-proxy", "127.0.0.1") as server:
        status, headers, _ = request_from(
            CLIENT_ADDRESS, server.port, "PUT", "/data/settings", b'{"a":1}',
            {**JSON, **demo_auth("alice"), **FORGED})
        assert status == 201
        assert headers["location"] == (f"http://127.0.0.1:{server.port}"
                                       "/data/localhost/alice/settings")
        line = wait_for_line(server, "PUT /data/settings")
        assert line.split(" wsgi_app.access: ")[1].startswith(f"{CLIENT_ADDRESS} alice@localhost ")
        assert "203.0.113.9" not in server.log()


@needs_alias
def test_forwarded_headers_from_a_trusted_peer_are_used(demo_data):
    with LiveServer(demo_data, "--trusted-proxy", f"{CLIENT_ADDRESS}/32") as server:
        status, headers, _ = request_from(
            CLIENT_ADDRESS, server.port, "PUT", "/data/settings", b'{"a":1}',
            {**JSON, **demo_auth("alice"), **FORGED})
        assert status == 201
        assert headers["location"] == "https://evil.example/elsewhere/data/localhost/alice/settings"
        line = wait_for_line(server, "PUT /elsewhere/data/settings")
        assert line.split(" wsgi_app.access: ")[1].startswith("203.0.113.9 alice@localhost ")


def test_without_trusted_proxy_forwarded_headers_are_ignored(server):
    status, headers, _ = server.request("PUT", "/data/settings", b'{"a":1}',
                                        {**JSON, **demo_auth("alice"), **FORGED})
    assert status == 201
    assert headers["location"].startswith(f"http://127.0.0.1:{server.port}/data/")
    wait_for_line(server, "PUT /data/settings")
    assert "203.0.113.9" not in server.log()


@pytest.mark.parametrize("value", ["proxy.example", "300.1.1.1", "10.0.0.0/33", ""])
def test_bad_trusted_proxy_is_a_usage_error(value):
    proc = subprocess.run([sys.executable, "-m", "prosody_store", "--data-path", "fixtures/demo",
                           "serve", "--listen", f"127.0.0.1:{free_port()}",
                           "--trusted-proxy", value],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trusted proxy" in lines[0], lines


# -- Unix socket -------------------------------------------------------------------------

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def unix_request(path: Path, method: str, target: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = UnixConnection(str(path))
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def serve_unix(data: Path, sock: Path, *args: str) -> subprocess.Popen:
    log = open(data.parent / "unix-server.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "prosody_store", "--data-path", str(data),
                             "serve", "--listen", f"unix:{sock}", *args],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError((data.parent / "unix-server.log").read_text())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(sock))
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


needs_unix = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")


@needs_unix
def test_unix_socket_serves_with_its_permissions(tmp_path):
    data = demo_copy(tmp_path)
    sock = tmp_path / "http.sock"
    proc = serve_unix(data, sock, "--trusted-proxy", "unix")
    try:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        status, headers, body = unix_request(sock, "GET", "/data/roster",
                                             headers=demo_auth("alice"))
        assert status == 200 and body.startswith(b"{"), (status, body)
        # --trusted-proxy unix: a proxy on the socket says who the client is.
        status, headers, _ = unix_request(sock, "PUT", "/data/settings", b'{"a":1}',
                                          {**JSON, **demo_auth("alice"), **FORGED})
        assert status == 201
        assert headers["location"].startswith("https://evil.example/elsewhere/data/")
        # The access line (written once the response is sent) shows the forwarded client.
        log_file = tmp_path / "unix-server.log"
        deadline = time.monotonic() + 10
        while "PUT /elsewhere/data/settings" not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.05)
        line = next(v for v in log_file.read_text().splitlines() if "PUT /elsewhere" in v)
        assert "wsgi_app.access: 203.0.113.9 alice@localhost " in line, line
    finally:
        stop(proc)


@needs_unix
def test_unix_socket_mode_option(tmp_path):
    data = demo_copy(tmp_path)
    sock = tmp_path / "http.sock"
    proc = serve_unix(data, sock, "--socket-mode", "600")
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        stop(proc)


@needs_unix
def test_busy_unix_socket_is_refused_and_a_stale_one_replaced(tmp_path):
    data = demo_copy(tmp_path)
    sock = tmp_path / "http.sock"
    proc = serve_unix(data, sock)
    try:
        second = subprocess.run([sys.executable, "-m", "prosody_store", "--data-path", str(data),
                                 "serve", "--listen", f"unix:{sock}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"unix:{sock}" in lines[0] and "in use" in lines[0], lines
        # The first server still answers.
        assert unix_request(sock, "GET", "/health")[0] == 200
    finally:
        proc.kill()  # no clean shutdown: the socket file stays behind
        proc.wait(timeout=10)
    assert sock.exists()
    proc = serve_unix(data, sock)
    try:
        assert unix_request(sock, "GET", "/health")[0] == 200
    finally:
        stop(proc)


# -- through a real nginx with TLS -------------------------------------------------------

def nginx_binary() -> str:
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if path is None:
        skip_or_fail("nginx is not installed (apt-get install -y nginx)")
    return path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl is not installed")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def replace_exactly(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; fails if contrib's file no longer has ``old``."""
    assert old in text, f"{NGINX_SITE} no longer contains {old!r}"
    return text.replace(old, new)


def site_config(upstream_port: int, https_port: int, http_port: int, cert: Path,
                key: Path) -> str:
    """contrib's site, pointed at the test's server, ports and certificate."""
    site = NGINX_SITE.read_text()
    site = replace_exactly(site, "server 127.0.0.1:5280;", f"server 127.0.0.1:{upstream_port};")
    site = replace_exactly(site, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    site = replace_exactly(site, "listen [::]:443 ssl;\n", "")
    site = replace_exactly(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = replace_exactly(site, "listen [::]:80;\n", "")
    site = replace_exactly(site, "/etc/letsencrypt/live/data.example.com/fullchain.pem", str(cert))
    site = replace_exactly(site, "/etc/letsencrypt/live/data.example.com/privkey.pem", str(key))
    return site


class Nginx:
    """``nginx -c CONF -g 'daemon off;'`` serving contrib's site from ``directory``."""

    def __init__(self, directory: Path, site: str, port: int, http_port: int) -> None:
        self.directory = directory
        self.port = port
        self.http_port = http_port
        (directory / "site.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {directory}/{kind}_temp;"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root, nginx's workers would run as nobody, who may not enter pytest's
        # temporary directories.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/error.log info;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            f"    access_log {directory}/access.log;\n{temp}\n"
            f"    include {directory}/site.conf;\n"
            "}\n")
        binary = nginx_binary()
        command = [binary, "-p", str(directory), "-e", str(directory / "error.log"),
                   "-c", str(directory / "nginx.conf")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([*command, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"nginx did not listen: {self.error_log()}") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def nginx_front(tmp_path):
    """(service, nginx, TLS context): contrib's nginx site in front of the service."""
    nginx_binary()
    data = demo_copy(tmp_path)
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    cert, key = self_signed_certificate(conf_dir)
    tls = ssl.create_default_context(cafile=str(cert))
    with LiveServer(data, "--trusted-proxy", "127.0.0.1") as service:
        https_port, http_port = free_port(), free_port()
        proxy = Nginx(conf_dir, site_config(service.port, https_port, http_port, cert, key),
                      https_port, http_port)
        try:
            yield service, proxy, tls
        finally:
            proxy.close()


@needs_alias
def test_put_and_get_through_nginx_with_tls(nginx_front):
    service, proxy, tls = nginx_front
    port = proxy.port
    body = b'{"theme":"dark","sizes":[1,2,3]}'
    status, headers, answer = request_from(
        CLIENT_ADDRESS, port, "PUT", "/prosody/data/settings", body,
        {**JSON, **demo_auth("alice")}, tls=tls)
    assert status == 201, (status, answer, proxy.error_log())
    # The service's Location names the proxy's scheme, host, port and prefix.
    location = headers["location"]
    assert location == f"https://127.0.0.1:{port}/prosody/data/localhost/alice/settings"

    path = location.split(f":{port}", 1)[1]
    status, headers, answer = request_from(CLIENT_ADDRESS, port, "GET", path,
                                           headers=demo_auth("alice"), tls=tls)
    assert status == 200, (status, answer)
    assert answer == body
    assert headers["content-type"].startswith("application/json")

    # The access log shows the client's address (127.0.0.2), not nginx's (127.0.0.1).
    put = wait_for_line(service, "PUT /prosody/data/settings")
    assert put.split(" wsgi_app.access: ")[1].startswith(f"{CLIENT_ADDRESS} alice@localhost "), put
    assert '" 201 ' in put
    get = wait_for_line(service, f"GET {path}")
    assert f"{CLIENT_ADDRESS} alice@localhost " in get and '" 200 ' in get
    log = service.log()
    assert "wonderland" not in log and demo_auth("alice")["Authorization"] not in log


@needs_alias
def test_nginx_failed_login_is_logged_with_the_client_address(nginx_front):
    service, proxy, tls = nginx_front
    status, headers, _ = request_from(
        CLIENT_ADDRESS, proxy.port, "GET", "/prosody/data/roster",
        headers={"Authorization": basic("alice@localhost", "not-her-password")}, tls=tls)
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="localhost/data_access"'
    wait_for_line(service, "GET /prosody/data/roster")
    warnings = [line for line in service.log().splitlines() if "WARNING wsgi_app.auth" in line]
    assert len(warnings) == 1 and CLIENT_ADDRESS in warnings[0], service.log()
    assert "not-her-password" not in service.log()


def test_nginx_health_and_metrics(nginx_front):
    service, proxy, tls = nginx_front
    status, _, body = request_from("127.0.0.1", proxy.port, "GET", "/prosody/health", tls=tls)
    assert (status, body) == (200, b"ok\n")
    status, _, _ = request_from("127.0.0.1", proxy.port, "GET", "/prosody/metrics", tls=tls)
    assert status == 404


def test_nginx_plain_http_redirects_to_https(nginx_front):
    service, proxy, tls = nginx_front
    status, headers, _ = request_from("127.0.0.1", proxy.http_port, "GET",
                                      "/prosody/data/roster")
    assert status == 301
    assert headers["location"].startswith("https://127.0.0.1")


# -- systemd unit ------------------------------------------------------------------------

UNIT = ROOT / "contrib" / "systemd" / "prosody-store.service"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        skip_or_fail("systemd-analyze is not installed")
    return path


def installed_unit(tmp_path: Path) -> Path:
    """contrib's unit with ExecStart pointing at this machine's prosody-store (verify
    checks that the program exists)."""
    program = shutil.which("prosody-store")
    if program is None:
        pytest.fail("prosody-store is not on PATH (pip install -e .)")
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/prosody-store " in text
    unit = tmp_path / "prosody-store.service"
    unit.write_text(text.replace("ExecStart=/usr/local/bin/prosody-store ",
                                 f"ExecStart={program} "))
    return unit


def test_systemd_unit_verifies(tmp_path):
    analyze = systemd_analyze()
    unit = installed_unit(tmp_path)
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "prosody-store.service" not in proc.stderr, proc.stderr


def test_systemd_unit_is_hardened(tmp_path):
    analyze = systemd_analyze()
    unit = installed_unit(tmp_path)
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["User"] == ["prosody"] and settings["Group"] == ["prosody"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == ["/var/lib/prosody"]
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert settings[key] == ["yes"], key
    assert settings["CapabilityBoundingSet"] == [""]
    exec_start = settings["ExecStart"][0]
    assert " serve " in exec_start and "--trusted-proxy 127.0.0.1" in exec_start
    # systemd's own score: 0 (sandboxed) to 10 (exposed), "OK" below 2 (20 in --threshold).
    proc = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr


def test_systemd_unit_command_line_is_accepted():
    """The unit's ExecStart is a command line that prosody-store's parser accepts."""
    from prosody_store.cli.run import build_parser

    line = next(v for v in UNIT.read_text().splitlines() if v.startswith("ExecStart="))
    args = build_parser().parse_args(line.split("=", 1)[1].split()[1:])
    assert args.trusted_proxy == ["127.0.0.1", "::1"]
    assert args.listen == "127.0.0.1:5280"
