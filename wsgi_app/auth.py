"""Who is asking: HTTP Basic credentials checked against Prosody's ``accounts`` store.

Knows the store and Prosody's account formats, nothing of routing or formats.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from prosody_store.accounts import (
    DEFAULT_ITERATIONS,
    CredentialCache,
    derivation_cost,
    dummy_derivation,
    verify_password,
)
from prosody_store.datamanager import DataManager, StoreError
from prosody_store.jid import JIDError, nameprep, prepped_split, saslprep
from wsgi_app.cache import Fingerprint, LoginCache
from wsgi_app.cache import fingerprint as file_fingerprint

log = logging.getLogger("wsgi_app.auth")


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
    """Checks ``jid:password`` pairs against the hosts' ``accounts`` stores.

    ``hosts`` are the hosts served (``None``: every host with an ``accounts``
    store in the data directory).  ``iterations`` is the cost of a normal
    login on these hosts (Prosody's ``default_iteration_count``): every failed
    attempt that names a user costs that many PBKDF2 rounds, whether the
    account exists or not, and an account record asking for more than
    ``max_iterations`` (default: ``iterations``) never verifies, so no record
    makes a login cost more than a normal one.
    """

    def __init__(self, dm: DataManager, *, hosts: Iterable[str] | None = None,
                 cache_size: int = 1024, iterations: int = DEFAULT_ITERATIONS,
                 max_iterations: int | None = None) -> None:
        if iterations < 1 or (max_iterations is not None and max_iterations < 1):
            raise ValueError("iteration counts must be positive")
        self.dm = dm
        self.hosts = None if hosts is None else frozenset(prep_host(h) for h in hosts)
        self.iterations = iterations
        self.max_iterations = iterations if max_iterations is None else max_iterations
        self.cache = CredentialCache(maxsize=cache_size)
        self.logins = LoginCache(maxsize=cache_size)
        self._account = functools.lru_cache(maxsize=cache_size)(self._lookup_account)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """How logins went since start: ``failed`` (credentials refused),
        ``cached`` (accepted by the credential cache, no key derivation) and
        ``verified`` (accepted after a key derivation).  Numbers only: never
        who logged in."""
        with self._counts_lock:
            return {key: self._counts[key] for key in ("failed", "cached", "verified")}

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] += 1

    def serves(self, host: str) -> bool:
        if self.hosts is not None:
            return host in self.hosts
        try:
            return os.path.isdir(self.dm.store_directory(host, "accounts"))
        except StoreError:
            return False

    def cached_login(self, header: str, *, count: bool = True) -> User | None:
        """The user of an ``Authorization`` header value that logged in before
        and whose account file has not changed since, else None (then
        :meth:`authenticate` decides).  A dictionary lookup and a ``stat``:
        see :class:`wsgi_app.cache.LoginCache`.  A hit is counted, unless
        ``count`` is false (then the caller counts it with
        :meth:`count_cached_login`, once)."""
        user = self.logins.get(header)
        if user is not None and count:
            self._count("cached")
        return user

    def count_cached_login(self) -> None:
        """Count a login accepted by :meth:`cached_login` with ``count=False``."""
        self._count("cached")

    def authenticate(self, username: str, password: str, header: str | None = None) -> User:
        """The user whose credentials these are, or :class:`AuthError`.

        Every failure costs one normal login (see the class docstring).  On
        success, ``header`` (the ``Authorization`` value that carried them)
        goes to the login cache, for :meth:`cached_login`.
        """
        spent = [0]
        try:
            user, path, fingerprint = self._authenticate(username, password, spent)
        except AuthError:
            self._count("failed")
            dummy_derivation(self.iterations - spent[0])
            raise
        if header is not None:
            self.logins.add(header, path, fingerprint, user)
        return user

    def _authenticate(self, username: str, password: str,
                      spent: list[int]) -> tuple[User, str, Fingerprint]:
        """The user, the account file and its fingerprint when it verified."""
        try:
            node, host, path = self._account(username)
        except (JIDError, StoreError) as err:
            raise AuthError(f"bad JID: {err}") from None
        try:
            password = saslprep(password)
        except JIDError:  # its message would quote a character of the password
            raise AuthError("password refused by SASLprep") from None
        # With hosts=None a host is served when it has an accounts store, which the
        # stat of the account file below decides (one system call, not two).
        if self.hosts is not None and host not in self.hosts:
            raise AuthError(f"host {host!r} is not served here")
        fingerprint = file_fingerprint(path)
        if fingerprint is None:
            raise AuthError("no such account")
        jid = f"{node}@{host}"
        if self.cache.check(jid, fingerprint, password):
            self._count("cached")
            return User(node, host), path, fingerprint
        try:
            record = self.dm.load(node, host, "accounts")
        except (StoreError, OSError) as err:
            log.error("account of %s unreadable: %s", jid, err)
            raise AuthError("account unreadable") from None
        if not isinstance(record, dict):
            raise AuthError("no usable account record")
        cost = derivation_cost(record)
        if cost > self.max_iterations:  # never derived: the failure pads to a normal login
            log.warning("account of %s asks for more PBKDF2 iterations than --max-iterations "
                        "(%d): refused", jid, self.max_iterations)
            raise AuthError("iteration count above the limit")
        spent[0] = cost
        if not verify_password(record, password, max_iterations=self.max_iterations):
            raise AuthError("wrong password")
        self.cache.add(jid, fingerprint, password)
        self._count("verified")
        return User(node, host), path, fingerprint

    def _lookup_account(self, username: str) -> tuple[str, str, str]:
        """(node, host, account file) for a user name; JIDError, StoreError or
        AuthError if unusable.

        Memoized as ``self._account`` (bounded LRU; no secrets in it): stringprep
        is the costly part of a request that the credential cache answers.
        """
        node, host, resource = prepped_split(username)
        if not node or resource is not None:
            raise AuthError("the user name must be a bare JID user@host")
        return node, host, self.dm.getpath(node, host, "accounts")
