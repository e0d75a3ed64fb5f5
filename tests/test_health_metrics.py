"""``GET /health`` and ``GET /metrics`` (``serve --metrics``) over the real server.

/health needs no credentials and says nothing but whether the data directory
can be read.  /metrics is the Prometheus text format, read back here with
prometheus_client's own parser; it is served only with ``--metrics`` and only
to clients on this machine, and names no user and no data.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import skip_or_fail
from tests.live_server import ROOT, LiveServer, basic, demo_auth, free_port

JSON = {"Content-Type": "application/json"}


# -- /health -----------------------------------------------------------------------------

def test_health_is_200_without_credentials(server, demo_data):
    status, headers, body = server.request("GET", "/health")
    assert (status, body) == (200, b"ok\n")
    assert headers["content-type"].startswith("text/plain")
    assert "www-authenticate" not in headers
    status, headers, body = server.request("HEAD", "/health")
    assert (status, body) == (200, b"")
    # Credentials change nothing, wrong ones included.
    status, _, body = server.request("GET", "/health", headers={
        "Authorization": basic("alice@localhost", "wrong")})
    assert (status, body) == (200, b"ok\n")


def test_health_allows_only_get_and_head(server):
    status, headers, body = server.request("POST", "/health", b"x")
    assert status == 405 and "GET" in headers["allow"], (status, body)


def test_health_is_503_when_the_data_directory_is_gone(server, demo_data):
    moved = demo_data.with_name("moved")
    demo_data.rename(moved)
    try:
        status, headers, body = server.request("GET", "/health")
    finally:
        moved.rename(demo_data)
    assert status == 503, (status, body)
    assert body.count(b"\n") == 1 and str(demo_data).encode() not in body, body
    assert server.request("GET", "/health")[0] == 200  # and back when it is back


def test_health_is_503_when_the_data_directory_is_unreadable(demo_data):
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            skip_or_fail("needs setpriv to run the server without root's file powers")
        wrapper = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    with LiveServer(demo_data, wrapper=wrapper) as server:
        assert server.request("GET", "/health")[0] == 200
        demo_data.chmod(0)
        try:
            status, _, body = server.request("GET", "/health")
        finally:
            demo_data.chmod(0o755)
        assert status == 503, (status, body)
        assert b"alice" not in body and str(demo_data).encode() not in body


# -- /metrics ----------------------------------------------------------------------------

@pytest.fixture
def parser():
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        skip_or_fail("prometheus_client is not installed (pip install -e '.[test]')")
    return text_string_to_metric_families


def scrape(server: LiveServer, parser, headers: dict[str, str] | None = None) -> dict:
    """{(sample name, frozenset of labels): value} of one scrape."""
    status, response_headers, body = server.request("GET", "/metrics", headers=headers)
    assert status == 200, (status, body)
    assert response_headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in parser(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, body


def wait_for_access_lines(server: LiveServer, count: int, timeout: float = 10) -> None:
    """Until the server has logged ``count`` access lines (and so counted the requests)."""
    deadline = time.monotonic() + timeout
    while server.log().count(" wsgi_app.access: ") < count:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_logins_and_the_credential_cache(demo_data, parser):
    with LiveServer(demo_data, "--metrics") as server:
        before, _ = scrape(server, parser)
        assert value(before, "prosody_store_auth_failures_total") == 0
        assert value(before, "prosody_store_credential_cache_hits_total") == 0

        assert server.request("GET", "/data/roster", headers=demo_auth("alice"))[0] == 200
        assert server.request("GET", "/data/roster", headers=demo_auth("alice"))[0] == 200
        assert server.request("GET", "/data/vcard", headers=demo_auth("alice"))[0] == 200
        assert server.request("PUT", "/data/settings", b'{"a":1}',
                              {**JSON, **demo_auth("bob")})[0] == 201
        assert server.request("GET", "/data/roster", headers={
            "Authorization": basic("alice@localhost", "wrong")})[0] == 401
        assert server.request("GET", "/data/roster", headers={
            "Authorization": basic("nobody@localhost", "wrong")})[0] == 401
        assert server.request("GET", "/data/roster")[0] == 401  # no credentials: no login
        assert server.request("BREW", "/data/roster")[0] in (401, 405, 501)

        wait_for_access_lines(server, 9)  # each request is counted once its response is sent
        samples, body = scrape(server, parser)
    # One GET /metrics before, counted once its response was sent.
    assert value(samples, "prosody_store_http_requests_total", method="GET", status="200") == 4
    assert value(samples, "prosody_store_http_requests_total", method="PUT", status="201") == 1
    assert value(samples, "prosody_store_http_requests_total", method="GET", status="401") == 3
    assert value(samples, "prosody_store_auth_failures_total") == 2
    # alice: derived once, then twice from the cache; bob: derived once.
    assert value(samples, "prosody_store_credential_cache_hits_total") == 2
    assert value(samples, "prosody_store_credential_cache_misses_total") == 2
    requests = sum(v for (name, _), v in samples.items()
                   if name == "prosody_store_http_requests_total")
    assert value(samples, "prosody_store_http_request_duration_seconds_count") == requests
    assert value(samples, "prosody_store_http_request_duration_seconds_bucket",
                 le="+Inf") == requests
    assert value(samples, "prosody_store_http_request_duration_seconds_sum") > 0
    # Methods outside HTTP's usual set share one label value.
    assert not [labels for (name, labels) in samples
                if ("method", "BREW") in labels]
    # No user name, host or data anywhere in the output.
    for word in (b"alice", b"bob", b"nobody", b"localhost", b"roster", b"settings", b"vcard"):
        assert word not in body, word


def test_metrics_only_for_clients_on_this_machine(demo_data, parser):
    with LiveServer(demo_data, "--metrics", "--trusted-proxy", "127.0.0.1") as server:
        scrape(server, parser)  # 127.0.0.1 itself
        status, _, body = server.request("GET", "/metrics",
                                         headers={"X-Forwarded-For": "203.0.113.9"})
        assert status == 403, (status, body)
        assert body.count(b"\n") == 1 and b"prosody_store" not in body
        scrape(server, parser, {"X-Forwarded-For": "::1"})
        assert server.request("POST", "/metrics", b"")[0] == 405


def test_metrics_without_prometheus_client_is_a_usage_error():
    """``--metrics`` where prometheus_client cannot be imported: one line, exit 2."""
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "from prosody_store.cli import main; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code, "--data-path", "fixtures/demo", "serve",
                           "--listen", f"127.0.0.1:{free_port()}", "--metrics"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "prometheus_client" in lines[0] and "[metrics]" in lines[0], lines


def test_metrics_only_when_asked_for(demo_data, parser):
    """create_app(metrics=True), as PROSODY_METRICS=1 gives it (off by default),
    under werkzeug's client."""
    from werkzeug.test import Client

    from wsgi_app import create_app

    local = {"REMOTE_ADDR": "127.0.0.1"}
    assert Client(create_app(demo_data)).get("/metrics", environ_base=local).status_code == 404
    client = Client(create_app(demo_data, metrics=True))
    response = client.get("/metrics", environ_base=local)
    assert response.status_code == 200
    names = {f.name for f in parser(response.get_data(as_text=True))}
    assert {"prosody_store_http_requests", "prosody_store_auth_failures"} <= names, names
