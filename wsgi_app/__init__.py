"""wsgi_app: Prosody's ``mod_data_access`` HTTP API as a WSGI application.

``create_app(data_path, admins=...)`` returns the WSGI callable;
``application`` is one configured from environment variables, for any WSGI
server (``waitress-serve wsgi_app:application``).  It is built when it is
first looked up, which such servers do at start, so that a bad setting (a
data directory that does not exist) stops them there, with the reason:

``PROSODY_DATA_PATH``   the data directory (default ``/var/lib/prosody``)
``PROSODY_ADMINS``      admin JIDs, separated by commas or spaces
``PROSODY_HOSTS``       the hosts to serve (default: every host with accounts)
``PROSODY_CONFIG``      a Prosody config file to take the three above from
``PROSODY_MAX_BODY``    the largest request body in bytes (default 10 MiB)
``PROSODY_MAX_VALUES``  the most values a request body may hold (default 250,000)
``PROSODY_ITERATIONS``  PBKDF2 cost of a normal login (default: the config's
                        ``default_iteration_count``, else 10,000)
``PROSODY_TRUSTED_PROXIES``  addresses or networks (``ADDRESS/BITS``) of
                        reverse proxies whose ``X-Forwarded-*`` headers are
                        believed, separated by commas or spaces
``PROSODY_METRICS``     ``1`` (or ``true``, ``yes``): serve ``/metrics``
``PROSODY_REQUIRE_PRECONDITION``  ``1``: PUT, PATCH and DELETE need
                        ``If-Match`` or ``If-None-Match`` (else 428)
"""
from __future__ import annotations

import functools
import os
from typing import Iterable, Mapping

from prosody_store.accounts import DEFAULT_ITERATIONS
from prosody_store.datamanager import DataManager
from wsgi_app.app import DEFAULT_MAX_BODY, DataAccessApp
from wsgi_app.auth import Authenticator
from wsgi_app.limits import DEFAULT_MAX_VALUES
from wsgi_app.logs import AccessLog
from wsgi_app.observe import Listener, Observe
from wsgi_app.proxy import TrustedProxies
from wsgi_app.rights import Rights

__all__ = ["DataAccessApp", "create_app"]


def create_app(data_path: str | os.PathLike[str], *, admins: Iterable[str] = (),
               host_admins: Mapping[str, Iterable[str]] | None = None,
               hosts: Iterable[str] | None = None, max_body: int = DEFAULT_MAX_BODY,
               cache_size: int = 1024, iterations: int = DEFAULT_ITERATIONS,
               max_iterations: int | None = None,
               max_values: int | None = None, trusted_proxies: Iterable[str] = (),
               metrics: bool = False, require_precondition: bool = False) -> DataAccessApp:
    """The data access service for the Prosody data directory ``data_path``.

    ``admins`` are server admins (every store of every user on every host),
    ``host_admins`` (host -> JIDs) admins of their host only; README.rst
    ("Who may do what") has the whole table.  ``hosts`` limits the hosts whose
    users may log in (default: every host that has an ``accounts`` store).
    ``iterations`` is the PBKDF2 cost of a normal login (Prosody's
    ``default_iteration_count``), which every failed login costs too;
    account records asking for more than ``max_iterations`` (default: the
    same) never log in.  A PUT or POST body may hold at most ``max_body``
    bytes and ``max_values`` values (default 250,000, :mod:`wsgi_app.limits`).

    Every request is logged (:mod:`wsgi_app.logs`).  ``trusted_proxies``
    (addresses or ``ADDRESS/BITS`` networks, ``unix`` for the Unix socket)
    are the peers whose ``X-Forwarded-For/-Proto/-Host/-Prefix`` headers are
    believed (:mod:`wsgi_app.proxy`).  ``metrics`` serves ``/metrics``
    (:mod:`wsgi_app.metrics`; needs ``prometheus_client``).
    ``require_precondition`` makes PUT, PATCH and DELETE without ``If-Match``
    or ``If-None-Match`` answer 428 (:mod:`wsgi_app.edits`).  A data directory
    that does not exist or cannot be listed, a bad proxy address and metrics
    without ``prometheus_client`` raise ``ValueError``.
    """
    check_data_path(data_path)
    dm = DataManager(data_path)
    auth = Authenticator(dm, hosts=hosts, cache_size=cache_size, iterations=iterations,
                         max_iterations=max_iterations)
    rights = Rights(dm, admins=admins, host_admins=host_admins)
    app = DataAccessApp(dm, auth, rights, max_body=max_body,
                        max_values=max_values or DEFAULT_MAX_VALUES,
                        require_precondition=require_precondition)
    observers: list[Listener] = []
    if metrics:
        from wsgi_app.metrics import Metrics

        collected = Metrics(auth.counts)
        app.wsgi_app = collected.wrap(app.wsgi_app)
        observers.append(collected.observe)
    observers.append(AccessLog())  # last: once a request's line is logged, it is counted
    app.wsgi_app = Observe(app.wsgi_app, observers)
    app.wsgi_app = TrustedProxies(app.wsgi_app, trusted_proxies)
    return app


def check_data_path(data_path: str | os.PathLike[str]) -> None:
    """ValueError, with the path and the reason, unless ``data_path`` is a
    directory this process can list."""
    path = os.fspath(data_path)
    if not os.path.isdir(path):
        reason = "is not a directory" if os.path.exists(path) else "does not exist"
        raise ValueError(f"data directory {path!r} {reason}")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        raise ValueError(f"data directory {path!r} cannot be read: "
                         f"{err.strerror or err}") from None


def _split(value: str | None) -> list[str]:
    return value.replace(",", " ").split() if value else []


def _flag(name: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}={value!r} is not 1 or 0")


@functools.lru_cache(maxsize=None)
def app_from_environment() -> DataAccessApp:
    """The application configured by the ``PROSODY_*`` environment variables."""
    env = os.environ
    data_path = env.get("PROSODY_DATA_PATH")
    admins = _split(env.get("PROSODY_ADMINS"))
    hosts = _split(env.get("PROSODY_HOSTS")) or None
    host_admins: dict[str, list[str]] = {}
    iterations = int(env["PROSODY_ITERATIONS"]) if env.get("PROSODY_ITERATIONS") else None
    if env.get("PROSODY_CONFIG"):
        from prosody_store.config import read_config

        config = read_config(env["PROSODY_CONFIG"])
        data_path = data_path or config.data_path
        admins = admins or list(config.admins)
        hosts = hosts or list(config.hosts) or None
        host_admins = {h: list(a) for h, a in config.host_admins.items()}
        iterations = iterations or config.default_iteration_count
    return create_app(data_path or "/var/lib/prosody", admins=admins, host_admins=host_admins,
                      hosts=hosts, max_body=int(env.get("PROSODY_MAX_BODY", DEFAULT_MAX_BODY)),
                      max_values=int(env.get("PROSODY_MAX_VALUES", DEFAULT_MAX_VALUES)),
                      iterations=iterations or DEFAULT_ITERATIONS,
                      trusted_proxies=_split(env.get("PROSODY_TRUSTED_PROXIES")),
                      metrics=_flag("PROSODY_METRICS", env.get("PROSODY_METRICS")),
                      require_precondition=_flag("PROSODY_REQUIRE_PRECONDITION",
                                                 env.get("PROSODY_REQUIRE_PRECONDITION")))


def __getattr__(name: str) -> DataAccessApp:
    # ``application``: the app configured from the environment, built when a WSGI
    # server looks it up (at its start), not on a first request that would fail.
    if name == "application":
        return app_from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
