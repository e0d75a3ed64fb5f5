"""``GET /metrics`` in the Prometheus text format (``serve --metrics``).

Needs ``prometheus_client`` (``pip install 'prosody-store[metrics]'``), which
is imported only when metrics are asked for.  The figures:

``prosody_store_http_requests_total{method,status}``  requests answered, by
    method (GET, HEAD, PUT, POST, DELETE, OPTIONS, else ``other``) and status
``prosody_store_http_request_duration_seconds``       a histogram of the time
    from a request reaching the application to the end of its response
``prosody_store_auth_failures_total``                 logins refused (wrong
    password, unknown user, ...), not requests without credentials
``prosody_store_credential_cache_hits_total``         logins accepted from the
    credential cache, without a key derivation
``prosody_store_credential_cache_misses_total``       logins accepted after a
    key derivation (PBKDF2)

No label holds a user name, a path or anything stored, only methods and
status codes.  Scrapes are answered only for clients on this machine (a
loopback address, after ``--trusted-proxy`` resolution, or the Unix
socket); others get 403.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from wsgi_app.observe import Exchange
from wsgi_app.proxy import is_loopback

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client.core import CounterMetricFamily

PATH = "/metrics"
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})
# Seconds: a cached GET takes about a millisecond, a login 10-50 ms of PBKDF2,
# a large list a few seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricsUnavailable(ValueError):
    """``prometheus_client`` is not installed."""


class Metrics:
    """The service's metrics: an observer of requests (:meth:`observe`) and the
    WSGI middleware serving them (:meth:`wrap`).  ``login_counts`` returns the
    authenticator's counts (:meth:`wsgi_app.auth.Authenticator.counts`)."""

    def __init__(self, login_counts: Callable[[], dict[str, int]]) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise MetricsUnavailable("metrics need prometheus_client: "
                                     "pip install 'prosody-store[metrics]'") from None
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("prosody_store_http_requests", "HTTP requests answered",
                                ["method", "status"], registry=self.registry)
        self.duration = Histogram("prosody_store_http_request_duration_seconds",
                                  "Time from a request reaching the application to the end "
                                  "of its response", buckets=BUCKETS, registry=self.registry)
        self.registry.register(LoginCollector(login_counts))

    def observe(self, exchange: Exchange) -> None:
        """The :mod:`wsgi_app.observe` listener."""
        method = exchange.method if exchange.method in METHODS else "other"
        self.requests.labels(method, str(exchange.status)).inc()
        self.duration.observe(exchange.duration)

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        """``app`` with ``GET /metrics`` answered here."""
        from prometheus_client.exposition import choose_encoder

        def metrics_app(environ: WSGIEnvironment,
                        start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != PATH:
                return app(environ, start_response)
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                return plain(start_response, "405 Method Not Allowed",
                             "method not allowed: /metrics is GET only",
                             [("Allow", "GET, HEAD")])
            if not is_loopback(environ.get("REMOTE_ADDR") or ""):
                return plain(start_response, "403 Forbidden",
                             "metrics are served to clients on this machine only")
            # The format the scraper asks for (Accept), as prometheus_client's own server.
            encode, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            body = encode(self.registry)
            start_response("200 OK", [("Content-Type", content_type),
                                      ("Content-Length", str(len(body)))])
            return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]

        return metrics_app


def plain(start_response: StartResponse, status: str, reason: str,
          headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (reason + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


class LoginCollector:
    """The authenticator's counts as Prometheus counters, read at each scrape."""

    def __init__(self, login_counts: Callable[[], dict[str, int]]) -> None:
        self.login_counts = login_counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        from prometheus_client.core import CounterMetricFamily

        counts = self.login_counts()
        yield CounterMetricFamily("prosody_store_auth_failures",
                                  "Logins refused (credentials given but not accepted)",
                                  value=counts["failed"])
        yield CounterMetricFamily("prosody_store_credential_cache_hits",
                                  "Logins accepted from the credential cache, "
                                  "without a key derivation", value=counts["cached"])
        yield CounterMetricFamily("prosody_store_credential_cache_misses",
                                  "Logins accepted after a key derivation (PBKDF2)",
                                  value=counts["verified"])
