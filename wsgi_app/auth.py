"""Who is asking: HTTP Basic credentials checked against Prosody's ``accounts`` store,
and the admin rule.

Knows the store and Prosody's account formats, nothing of routing or formats.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Iterable

from prosody_store.accounts import CredentialCache, verify_password
from prosody_store.datamanager import DataManager, StoreError
from prosody_store.jid import JIDError, nameprep, prepped_split, saslprep
from wsgi_app.cache import fingerprint as file_fingerprint

ADMIN_ROLES = frozenset({"prosody:admin", "prosody:operator"})


class AuthError(Exception):
    """The request is not authenticated; the message says why (never to the client
    in more detail than "bad credentials")."""


@dataclass(frozen=True)
class User:
    node: str
    host: str

    @property
    def jid(self) -> str:
        return f"{self.node}@{self.host}"


def prep_host(host: str) -> str:
    """A host name as Prosody stores it (nameprep, no trailing dot)."""
    if host.endswith(".") and host != ".":
        host = host[:-1]
    return nameprep(host)


class Authenticator:
    """Checks ``jid:password`` pairs and answers the admin question.

    ``hosts`` are the hosts served (``None``: every host with an ``accounts``
    store in the data directory).  ``admins`` are admin JIDs on every host,
    ``host_admins`` per host, as in Prosody's config; Prosody 13's
    ``account_roles`` store is honoured too.
    """

    def __init__(self, dm: DataManager, *, hosts: Iterable[str] | None = None,
                 admins: Iterable[str] = (), host_admins: dict[str, Iterable[str]] | None = None,
                 cache_size: int = 1024) -> None:
        self.dm = dm
        self.hosts = None if hosts is None else frozenset(prep_host(h) for h in hosts)
        self.admins = frozenset(_prep_admin(j) for j in admins)
        self.host_admins = {prep_host(h): frozenset(_prep_admin(j) for j in js)
                            for h, js in (host_admins or {}).items()}
        self.cache = CredentialCache(maxsize=cache_size)
        self._account = functools.lru_cache(maxsize=cache_size)(self._account)

    def serves(self, host: str) -> bool:
        if self.hosts is not None:
            return host in self.hosts
        return os.path.isdir(os.path.dirname(self.dm.getpath("x", host, "accounts")))

    def authenticate(self, username: str, password: str) -> User:
        """The user whose credentials these are, or :class:`AuthError`."""
        try:
            node, host, path = self._account(username)
            password = saslprep(password)
        except JIDError as err:
            raise AuthError(f"bad JID or password: {err}") from None
        # With hosts=None a host is served when it has an accounts store, which the
        # stat of the account file below decides (one system call, not two).
        if self.hosts is not None and host not in self.hosts:
            raise AuthError(f"host {host!r} is not served here")
        fingerprint = file_fingerprint(path)
        if fingerprint is None:
            raise AuthError("no such account")
        jid = f"{node}@{host}"
        if self.cache.check(jid, fingerprint, password):
            return User(node, host)
        try:
            record = self.dm.load(node, host, "accounts")
        except StoreError as err:
            raise AuthError(f"account unreadable: {err}") from None
        if not isinstance(record, dict) or not verify_password(record, password):
            raise AuthError("wrong password")
        self.cache.add(jid, fingerprint, password)
        return User(node, host)

    def _account(self, username: str) -> tuple[str, str, str]:
        """(node, host, account file) for a user name; JIDError or AuthError if unusable.

        Memoized (bounded LRU; no secrets in it): stringprep is the costly part
        of a request that the credential cache answers.
        """
        node, host, resource = prepped_split(username)
        if node is None or resource is not None:
            raise AuthError("the user name must be a bare JID user@host")
        return node, host, self.dm.getpath(node, host, "accounts")

    def is_admin(self, user: User, host: str) -> bool:
        """May ``user`` touch other users' data on ``host``?"""
        if user.jid in self.admins or user.jid in self.host_admins.get(host, ()):
            return True
        if user.host != host:
            return False
        try:
            roles = self.dm.load(user.node, user.host, "account_roles")
        except StoreError:
            return False
        return isinstance(roles, dict) and roles.get("_default") in ADMIN_ROLES


def _prep_admin(jid: str) -> str:
    node, host, _ = prepped_split(jid)
    return host if node is None else f"{node}@{host}"
