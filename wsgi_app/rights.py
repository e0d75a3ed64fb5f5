"""Who may read and write which stores of whom: the one place where the service decides rights.

The rules are the table in README.rst ("Who may do what"), which a test reads
and checks request by request.  In short:

* Three ranks.  A *server admin* is named by ``--admin`` or the Prosody
  config's global ``admins``.  A *host admin* is an admin of one host: named in
  that ``VirtualHost``'s ``admins``, or with ``prosody:admin`` or
  ``prosody:operator`` as the primary role in Prosody 13's ``account_roles``
  store, or ``prosody:admin`` in Prosody 0.12's ``roles`` store (what
  ``mod_authz_internal`` reads).  Everyone else is a *user*.
* Stores that Prosody reads to decide who someone is or what they may do are
  never written by the account they describe, and only by a server admin when
  they carry rights, so a rank never comes from data its holder could have
  written through this service.  Those stores, from Prosody 0.12's and 13's
  modules: ``accounts`` (credentials: ``mod_auth_internal_*``),
  ``auth_tokens`` (``mod_tokenauth``: a stored token names the session's
  user), ``roles`` (0.12 ``mod_authz_internal``), ``account_roles``
  (13 ``mod_authz_internal``) and ``account_flags`` (13 ``mod_flags``).
* Secrets are served to server admins only: of an ``accounts`` record the
  others see the fields in :data:`PUBLIC_ACCOUNT_FIELDS`, and ``auth_tokens``
  (whose keys are the tokens) not at all.

Knows the store and the configured admins; of HTTP only which methods read
(:data:`READ_METHODS`) and which write (:data:`WRITE_METHODS`): the table's
"read" and "write".
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from prosody_store.datamanager import DataManager, StoreError
from prosody_store.jid import prepped_split
from wsgi_app.auth import prep_host

log = logging.getLogger("wsgi_app.rights")

CREDENTIAL_STORE = "accounts"
TOKEN_STORE = "auth_tokens"
RIGHTS_STORES = frozenset({"roles", "account_roles", "account_flags"})
PROTECTED_STORES = frozenset({CREDENTIAL_STORE, TOKEN_STORE}) | RIGHTS_STORES
"""Stores Prosody reads to decide who someone is or what they may do."""

PUBLIC_ACCOUNT_FIELDS = ("created", "updated", "disabled", "iteration_count")
"""The fields of an ``accounts`` record shown to those who may read it but not
its secrets.  An allow-list: a field Prosody adds later stays hidden."""

ADMIN_ROLES = frozenset({"prosody:admin", "prosody:operator"})
"""Prosody 13 primary roles (``account_roles._default``) with admin rights."""

READ_METHODS = ("GET", "HEAD")
"""The methods that need :attr:`Access.read`."""
WRITE_METHODS = ("PUT", "PATCH", "POST", "DELETE")
"""The methods that need :attr:`Access.write`: PATCH exactly as PUT."""


class Rank(enum.IntEnum):
    USER = 1
    HOST_ADMIN = 2
    SERVER_ADMIN = 3


@dataclass(frozen=True)
class Access:
    """What a requester may do with one store of one account."""

    read: bool = False
    write: bool = False
    secrets: bool = False
    """With ``read``: the whole value; without: only the public view
    (:func:`public_view`)."""


NONE = Access()
READ_PUBLIC = Access(read=True)
READ = Access(read=True, secrets=True)
WRITE_ONLY = Access(write=True)
READ_PUBLIC_WRITE = Access(read=True, write=True)
READ_WRITE = Access(read=True, write=True, secrets=True)


class Rights:
    """Decides :class:`Access` from the configured admins and Prosody's role stores.

    ``admins`` are server admins (JIDs), ``host_admins`` maps a host to the
    JIDs that administer it; both are normalised here.
    """

    def __init__(self, dm: DataManager, *, admins: Iterable[str] = (),
                 host_admins: Mapping[str, Iterable[str]] | None = None) -> None:
        self.dm = dm
        self.admins = frozenset(_prep_admin(j) for j in admins)
        self.host_admins = {prep_host(h): frozenset(_prep_admin(j) for j in js)
                            for h, js in (host_admins or {}).items()}

    def rank(self, node: str, host: str, on_host: str, *, unknown: Rank = Rank.USER) -> Rank:
        """The rank of ``node@host`` on ``on_host``.

        ``unknown`` is the rank assumed when the account's role stores cannot
        be read: the requester's lowest, a target's highest.
        """
        jid = f"{node}@{host}"
        if jid in self.admins:
            return Rank.SERVER_ADMIN
        if jid in self.host_admins.get(on_host, ()):
            return Rank.HOST_ADMIN
        if host != on_host:
            return Rank.USER
        try:
            stored = self._stored_admin(node, host)
        except (StoreError, OSError) as err:
            log.warning("roles of %s unreadable, taken as %s: %s", jid, unknown.name, err)
            return unknown
        return Rank.HOST_ADMIN if stored else Rank.USER

    def _stored_admin(self, node: str, host: str) -> bool:
        roles = self.dm.load(node, host, "account_roles")  # Prosody 13
        if isinstance(roles, dict) and roles.get("_default") in ADMIN_ROLES:
            return True
        roles = self.dm.load(node, host, "roles")  # Prosody 0.12: roles["prosody:admin"]
        return isinstance(roles, dict) and _lua_truthy(roles.get("prosody:admin"))

    def is_admin(self, requester_node: str, requester_host: str, host: str) -> bool:
        """May the requester touch other users' data on ``host``?"""
        return self.rank(requester_node, requester_host, host) >= Rank.HOST_ADMIN

    def access(self, requester_node: str, requester_host: str,
               node: str, host: str, store: str) -> Access:
        """What the requester may do with ``store`` of ``node@host``.

        For one's own stores only the server admin rank changes anything (it
        adds the secrets), and that comes from the configuration: their role
        stores are read only for someone else's data."""
        own = (requester_node, requester_host) == (node, host)
        if own:
            rank = Rank.SERVER_ADMIN if f"{node}@{host}" in self.admins else Rank.USER
        else:
            rank = self.rank(requester_node, requester_host, host)
        if rank == Rank.SERVER_ADMIN:
            return READ_WRITE
        if not own and rank < Rank.HOST_ADMIN:
            return NONE
        target_is_user = not own and self.rank(node, host, host,
                                               unknown=Rank.SERVER_ADMIN) == Rank.USER
        if store == CREDENTIAL_STORE:
            return READ_PUBLIC_WRITE if target_is_user else READ_PUBLIC
        if store == TOKEN_STORE:
            return WRITE_ONLY if target_is_user else NONE
        if store in RIGHTS_STORES:
            return READ
        return READ_WRITE if own or target_is_user else READ


def permits(access: Access, method: str) -> bool:
    """Whether ``access`` allows the HTTP ``method``: GET and HEAD read, PUT,
    PATCH, POST and DELETE write, nothing else is allowed."""
    if method in READ_METHODS:
        return access.read
    if method in WRITE_METHODS:
        return access.write
    return False


def public_view(store: str, value: Any) -> Any:
    """What of a protected store's value may be shown without its secrets."""
    if store == CREDENTIAL_STORE and isinstance(value, dict):
        return {k: value[k] for k in PUBLIC_ACCOUNT_FIELDS if k in value}
    return None


def _lua_truthy(value: Any) -> bool:
    return value is not None and value is not False


def _prep_admin(jid: str) -> str:
    node, host, _ = prepped_split(jid)
    return host if node is None else f"{node}@{host}"
