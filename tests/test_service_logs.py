"""The service's logs and its refusals at start, over the real ``prosody-store serve``.

One access line per request (time, client, user, method, path and query,
status, bytes, seconds), never a password or ``Authorization`` header, failed
logins as warnings with the client address, server errors with their
traceback (the client still gets one line), ``--log-level`` and
``--log-format json``; a missing data directory, a busy address and nonsense
options stop ``serve`` with one line and exit status 2.
"""
from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live_server import ROOT, LiveServer, basic, demo_auth, free_port

JSON = {"Content-Type": "application/json"}
RUN_TIMEOUT = 30

# 2026-12-02T01:09:41.123Z INFO wsgi_app.access: 127.0.0.1 alice@localhost
#     "GET /data/roster HTTP/1.1" 200 188 0.018   (on one line)
ACCESS = re.compile(
    r'^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) INFO wsgi_app\.access: '
    r'(?P<client>\S+) (?P<user>\S+) "(?P<method>\S+) (?P<target>\S+) (?P<protocol>\S+)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) (?P<duration>\d+\.\d{3})$')


def stopped_log(server: LiveServer, access_lines: int = 0, timeout: float = 10) -> str:
    """What the server logged, once ``access_lines`` access lines are there (each is
    written just after its response was sent), then stopped."""
    deadline = time.monotonic() + timeout
    while (server.log().count(" wsgi_app.access: ") + server.log().count('"wsgi_app.access"')
           < access_lines and time.monotonic() < deadline):
        time.sleep(0.05)
    server.close()
    return server.log()


def access_entries(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in map(ACCESS.match, text.splitlines()) if m]


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def damage(data: Path) -> None:
    (data / "localhost" / "roster" / "alice.dat").write_bytes(b"return {\n  [\"x\"] = \n")


# -- access lines ------------------------------------------------------------------------

def test_one_access_line_per_request_with_its_fields(demo_data):
    server = LiveServer(demo_data)
    try:
        status, headers, body = server.request("GET", "/data/roster?pretty=1",
                                               headers=demo_auth("alice"))
        assert status == 200
        assert server.request("GET", "/data/roster")[0] == 401
        assert server.request("PUT", "/data/settings", b'{"a":1}',
                              {**JSON, **demo_auth("bob")})[0] == 201
        assert server.request("GET", "/health")[0] == 200
    finally:
        text = stopped_log(server, 4)
    entries = access_entries(text)
    assert len(entries) == 4, text
    first, second, third, fourth = entries
    assert first["client"] == "127.0.0.1" and first["user"] == "alice@localhost"
    assert (first["method"], first["target"], first["status"]) == ("GET", "/data/roster?pretty=1",
                                                                   "200")
    assert first["protocol"] == "HTTP/1.1"
    assert int(first["bytes"]) == len(body) == int(headers["content-length"])
    assert float(first["duration"]) < 10
    assert (second["user"], second["status"]) == ("-", "401")
    assert (third["user"], third["method"], third["status"]) == ("bob@localhost", "PUT", "201")
    assert (fourth["user"], fourth["target"], fourth["status"]) == ("-", "/health", "200")
    # The line's time is now (UTC), to the second.
    logged = time.mktime(time.strptime(first["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(logged - time.time()) < 120


def test_streamed_list_logs_its_bytes(demo_data):
    server = LiveServer(demo_data)
    try:
        for i in range(50):
            assert server.request("POST", "/data/notes", json.dumps({"n": i, "t": "x" * 100}),
                                  {**JSON, **demo_auth("alice")})[0] == 201
        status, _, body = server.request("GET", "/data/notes", headers=demo_auth("alice"))
        assert status == 200 and len(body) > 5000
    finally:
        text = stopped_log(server, 51)
    get = [e for e in access_entries(text) if e["method"] == "GET"]
    assert len(get) == 1 and int(get[0]["bytes"]) == len(body), text


def test_never_a_password_or_authorization_header(demo_data):
    server = LiveServer(demo_data, "--log-level", "debug")
    secrets = ["wonderland", "S3cr3t-Wr0ng", "query-pass-123", "query-token-456"]
    headers_seen = [demo_auth("alice")["Authorization"],
                    basic("alice@localhost", "S3cr3t-Wr0ng")]
    try:
        server.request("GET", "/data/roster", headers=demo_auth("alice"))
        server.request("GET", "/data/roster", headers={"Authorization": headers_seen[1]})
        # Credentials a client put in the query string: the names stay, the values go.
        status, _, _ = server.request(
            "GET", "/data/roster?password=query-pass-123&format=x&access_token=query-token-456",
            headers=demo_auth("alice"))
        assert status == 200
        # A password that SASLprep refuses (its error would quote the character).
        server.request("GET", "/data/roster",
                       headers={"Authorization": basic("alice@localhost", "pa\u0007ss")})
    finally:
        text = stopped_log(server, 4)
    for secret in secrets + headers_seen + [base64.b64encode(b"wonderland").decode()]:
        assert secret not in text, (secret, text)
    assert "U+0007" not in text, text
    assert "Authorization" not in text and "authorization" not in text
    assert lines_with(text, "GET /data/roster?password=***&format=x&access_token=*** "), text


def test_a_request_cannot_add_lines_to_the_log(demo_data):
    server = LiveServer(demo_data)
    try:
        server.request("GET", "/data/roster%0A2026-01-01T00:00:00.000Z%20INFO%20forged",
                       headers=demo_auth("alice"))
        server.request("GET", "/nothing%0D%0Aforged",
                       headers={"Authorization": basic("eve\nforged@localhost", "x")})
    finally:
        text = stopped_log(server, 2)
    assert not [line for line in text.splitlines() if line.startswith(("2026-01-01", "forged"))]
    assert len(access_entries(text)) == 2, text


# -- failed logins and server errors ---------------------------------------------------

def test_failed_logins_are_warnings_with_the_client_address(demo_data):
    server = LiveServer(demo_data)
    try:
        server.request("GET", "/data/roster", headers={"Authorization": basic("alice@localhost",
                                                                              "nope")})
        server.request("GET", "/data/roster", headers={"Authorization": basic("nobody@localhost",
                                                                              "nope")})
        server.request("GET", "/data/roster")  # no credentials: not a failed login
        server.request("GET", "/data/roster", headers=demo_auth("alice"))
    finally:
        text = stopped_log(server, 4)
    warnings = lines_with(text, " WARNING wsgi_app.auth: ")
    assert len(warnings) == 2, text
    assert "'alice@localhost'" in warnings[0] and "from 127.0.0.1" in warnings[0]
    assert "'nobody@localhost'" in warnings[1] and "from 127.0.0.1" in warnings[1]
    assert "nope" not in text


def test_server_error_is_logged_with_its_traceback(demo_data):
    damage(demo_data)
    server = LiveServer(demo_data)
    try:
        status, _, body = server.request("GET", "/data/roster", headers=demo_auth("alice"))
    finally:
        text = stopped_log(server, 1)
    assert status == 500
    assert body.count(b"\n") == 1 and b"Traceback" not in body and b"/tmp" not in body, body
    errors = lines_with(text, " ERROR wsgi_app: ")
    assert len(errors) == 1 and "alice.dat" in errors[0], text
    after = text.split(errors[0], 1)[1]
    assert after.lstrip("\n").startswith("Traceback (most recent call last):"), text
    assert "CorruptFileError" in after


def test_log_level_warning_drops_access_lines(demo_data):
    server = LiveServer(demo_data, "--log-level", "WARNING")
    try:
        server.request("GET", "/data/roster", headers=demo_auth("alice"))
        server.request("GET", "/data/roster", headers={"Authorization": basic("alice@localhost",
                                                                              "nope")})
        time.sleep(0.5)  # access lines, were they logged, would be there by now
    finally:
        text = stopped_log(server)
    assert not access_entries(text) and "wsgi_app.access" not in text, text
    assert len(lines_with(text, " WARNING wsgi_app.auth: ")) == 1, text


def test_json_log_format_is_one_object_per_line(demo_data):
    damage(demo_data)
    server = LiveServer(demo_data, "--log-format", "json")
    try:
        server.request("GET", "/data/vcard", headers=demo_auth("alice"))
        server.request("GET", "/data/roster", headers=demo_auth("alice"))  # 500
        server.request("GET", "/data/vcard", headers={"Authorization": basic("alice@localhost",
                                                                             "nope")})
    finally:
        text = stopped_log(server, 3)
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(e, dict) and {"time", "level", "logger", "message"} <= e.keys()
               for e in entries), text
    access = [e for e in entries if e["logger"] == "wsgi_app.access"]
    assert [(a["user"], a["status"]) for a in access] == [
        ("alice@localhost", 200), ("alice@localhost", 500), ("-", 401)], access
    assert all(a["client"] == "127.0.0.1" and a["method"] == "GET" and a["bytes"] > 0
               and isinstance(a["duration"], float) for a in access)
    assert access[0]["path"] == "/data/vcard"
    error = [e for e in entries if e["level"] == "ERROR"]
    assert len(error) == 1 and "Traceback" in error[0]["traceback"], error
    warning = [e for e in entries if e["logger"] == "wsgi_app.auth"]
    assert len(warning) == 1 and "127.0.0.1" in warning[0]["message"]
    assert any("serving" in e["message"] for e in entries)


# -- unknown paths -----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/nothing", "/favicon.ico", "/datax", "/health/x"])
def test_unknown_path_is_a_short_404(server, path):
    status, headers, body = server.request("GET", path)
    assert status == 404
    assert headers["content-type"].startswith("text/plain")
    assert body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) < 80, body
    assert b"/data" in body  # where the API is


# -- refusals at start -------------------------------------------------------------------

def serve(*args: str, data: str = "fixtures/demo") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "prosody_store", "--data-path", data, "serve", *args]
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"serve {' '.join(args)}: still running after {RUN_TIMEOUT} s "
                    f"(stderr: {exc.stderr!r})")


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "serving" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_missing_data_directory_is_refused(tmp_path):
    missing = tmp_path / "nowhere"
    line = one_line(serve("--listen", f"127.0.0.1:{free_port()}", data=str(missing)))
    assert str(missing) in line and "does not exist" in line, line


def test_data_directory_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    line = one_line(serve("--listen", f"127.0.0.1:{free_port()}", data=str(file)))
    assert str(file) in line and "not a directory" in line, line


def test_busy_address_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = one_line(serve("--listen", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in line and "in use" in line, line


@pytest.mark.parametrize("args, reason", [
    (["--log-level", "loud"], "--log-level: invalid choice: 'loud'"),
    (["--log-format", "xml"], "--log-format: invalid choice: 'xml'"),
    (["--socket-mode", "999"], "--socket-mode: '999' is not octal permissions"),
    (["--listen", "unix:"], "--listen: unix: needs a path"),
    (["--trusted-proxy", "everyone"], "trusted proxy 'everyone' is not an IP address"),
])
def test_nonsense_options_are_usage_errors(args, reason):
    if "--listen" not in args:
        args = [*args, "--listen", f"127.0.0.1:{free_port()}"]
    line = one_line(serve(*args))
    assert reason in line, line


def test_create_app_says_what_is_wrong_with_the_data_directory(tmp_path):
    from wsgi_app import create_app

    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        create_app(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="file.*is not a directory"):
        create_app(tmp_path / "file")


def test_waitress_serve_refuses_a_missing_data_directory_at_start(tmp_path):
    """``waitress-serve wsgi_app:application`` with PROSODY_DATA_PATH pointing nowhere
    stops at start with the reason, instead of failing every request."""
    env = {"PROSODY_DATA_PATH": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, "-m", "waitress", "--listen",
                               f"127.0.0.1:{free_port()}", "wsgi_app:application"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("waitress-serve started serving with a data directory that does not exist")
    assert "nowhere' does not exist" in proc.stderr, proc.stderr
