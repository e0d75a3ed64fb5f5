"""Behind a reverse proxy: ``X-Forwarded-*`` headers, believed only from trusted peers.

Werkzeug's ``ProxyFix`` believes the headers of whoever connects, so that any
client could claim any address (in the access log, for ``/metrics``) or make
``Location`` point elsewhere.  :class:`TrustedProxies` applies it only when
the direct peer (``REMOTE_ADDR``, as the WSGI server saw it) is one of the
trusted addresses or networks; from anyone else the headers are removed
before the application sees them.

From a trusted proxy, one hop of each header is used, the last value (the one
that proxy added): ``X-Forwarded-For`` becomes the client address,
``X-Forwarded-Proto`` the scheme, ``X-Forwarded-Host`` the host and
``X-Forwarded-Prefix`` the path the proxy serves the service under, so that
``Location`` says ``https://host/prefix/data/...``.
"""
from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING, Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIX_PEER = "unix"
"""The ``--trusted-proxy`` value for peers on the service's Unix socket."""

UNIX_REMOTE_ADDR = "localhost"
"""What waitress puts in ``REMOTE_ADDR`` for a connection on a Unix socket."""

FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                     "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_BY",
                     "HTTP_FORWARDED")


def trusted_networks(values: Iterable[str]) -> tuple[tuple[Network, ...], bool]:
    """The networks named by ``values`` (addresses or ``ADDRESS/BITS``), and
    whether ``unix`` (peers on the Unix socket) was among them.  ValueError
    names a value that is neither."""
    networks = []
    unix = False
    for value in values:
        text = value.strip()
        if text == UNIX_PEER:
            unix = True
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {value!r} is not an IP address, a network "
                             f"(ADDRESS/BITS) or {UNIX_PEER!r}") from None
    return tuple(networks), unix


def peer_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``REMOTE_ADDR`` as an address (an IPv4-mapped IPv6 one as IPv4), else None."""
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(remote_addr: str) -> bool:
    """Whether a client is on this machine: a loopback address or the Unix socket."""
    if remote_addr == UNIX_REMOTE_ADDR:
        return True
    address = peer_address(remote_addr)
    return address is not None and address.is_loopback


class TrustedProxies:
    """WSGI middleware: ``ProxyFix`` for requests whose direct peer is trusted; for
    the others, the forwarding headers removed (as waitress's own
    ``clear_untrusted_proxy_headers`` does, which ``prosody-store serve`` turns
    off so that this decides)."""

    def __init__(self, app: WSGIApplication, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks, self.unix = trusted_networks(trusted)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)
        # Parsing an address costs more than the rest of a request's way through
        # here: the verdict per peer address is remembered (bounded).
        self.trusts = functools.lru_cache(maxsize=4096)(self._trusts)

    def _trusts(self, remote_addr: str) -> bool:
        """Whether the peer ``remote_addr`` is a trusted proxy (see :attr:`trusts`)."""
        if not self.networks and not self.unix:
            return False
        if remote_addr == UNIX_REMOTE_ADDR:
            return self.unix
        address = peer_address(remote_addr)
        return address is not None and any(address in net for net in self.networks)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if self.trusts(environ.get("REMOTE_ADDR") or ""):
            return self.fixed(environ, start_response)
        for key in FORWARDED_HEADERS:
            environ.pop(key, None)
        return self.app(environ, start_response)
