"""Passwords of Prosody accounts: verify them, hash them, cache the verdicts.

An account is the table in ``accounts/<user>.dat`` (see SPEC section 5), as a
dict (for instance from :func:`prosody_store.serialization.loads`):

* ``internal_plain``: ``{"password": "..."}``.
* ``internal_hashed``: ``{"salt", "iteration_count", "stored_key",
  "server_key"}``, SCRAM (RFC 5802) keys in lowercase hex: 40 digits for
  SCRAM-SHA-1, 64 for SCRAM-SHA-256.  The salt is the UUID string Prosody
  generated, used as its bytes.  Optional ``created``, ``updated``.
* ``disabled = true`` (Prosody 13): the account cannot log in.

:func:`verify_password` gives the verdict of Prosody's ``test_password`` in
``mod_auth_internal_hashed``/``mod_auth_internal_plain``:

* the password is SASLprep-ed (RFC 4013, :func:`prosody_store.jid.saslprep`);
  one that fails SASLprep never verifies;
* a non-empty plain ``password`` field is compared with it (both sides
  SASLprep-ed) and decides alone, also in a hashed record;
* otherwise both SCRAM keys are recomputed and compared, as lowercase hex
  strings (so, like Prosody, a record whose hex is in upper case never
  verifies);
* every comparison is constant-time (:func:`hmac.compare_digest`).

Where we differ from Prosody, we refuse: a plain ``password`` field that is
empty, or empty after SASLprep, is not a password (``internal_plain`` would
accept the empty password).  And we never write: Prosody would replace a plain
``password`` in a hashed record with keys on a successful login.

:class:`CredentialCache` remembers successful verifications so that a service
need not run PBKDF2 on every request; see its docstring.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections import OrderedDict
from typing import Any, Hashable, Literal, Mapping

from prosody_store.jid import JIDError, saslprep

__all__ = [
    "verify_password",
    "derivation_cost",
    "dummy_derivation",
    "hash_password",
    "scram_keys",
    "fingerprint",
    "CredentialCache",
]

DEFAULT_ITERATIONS = 10000
"""Prosody's ``default_iteration_count``."""

PROSODY_MAX_ITERATIONS = 2**31 - 1
"""The largest iteration count Prosody's PBKDF2 accepts (a C ``int`` in OpenSSL)."""

_HASH_NAMES = {"sha1": "sha1", "sha-1": "sha1", "sha256": "sha256", "sha-256": "sha256"}
_HEX_LENGTHS = {40: "sha1", 64: "sha256"}


def _hash_name(name: str) -> str:
    """``"sha1"`` or ``"sha256"`` for any spelling Prosody or hashlib uses."""
    try:
        return _HASH_NAMES[name.lower()]
    except KeyError:
        raise ValueError(f"unsupported SCRAM hash {name!r} (SHA-1 or SHA-256)") from None


def _utf8(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8")


def _prepped(password: Any) -> bytes | None:
    """The SASLprep-ed password as UTF-8, or None if it is not a valid password."""
    if not isinstance(password, (str, bytes)):
        return None
    try:
        return saslprep(password).encode("utf-8")
    except JIDError:
        return None


def scram_keys(password: str | bytes, salt: str | bytes, iterations: int,
               hash: str = "sha1") -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 for a SASLprep-ed password.

    ``password`` is SASLprep-ed here, as Prosody's ``util.sasl.scram`` does;
    :class:`~prosody_store.jid.JIDError` if it fails.
    """
    return _scram(saslprep(password).encode("utf-8"), _utf8(salt), iterations, _hash_name(hash))


def _scram(prepped: bytes, salt: bytes, iterations: int, name: str) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) for an already SASLprep-ed password."""
    salted = hashlib.pbkdf2_hmac(name, prepped, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored_key = hashlib.new(name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", name).digest()
    return stored_key, server_key


def hash_password(password: str | bytes, *, iterations: int = DEFAULT_ITERATIONS,
                  salt: str | None = None, hash: str = "sha1") -> dict[str, Any]:
    """The account record ``internal_hashed`` writes for a new password.

    ``{"stored_key", "server_key", "salt", "iteration_count"}``: keys in
    lowercase hex, the salt a fresh random UUID string unless given.  ``hash``
    is ``"sha1"`` (Prosody's default) or ``"sha256"`` (``password_hash =
    "SHA-256"``).  :class:`~prosody_store.jid.JIDError` if the password fails
    SASLprep.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError("iterations must be a positive integer")
    if salt is None:
        salt = str(uuid.uuid4())
    stored_key, server_key = scram_keys(password, salt, iterations, hash)
    return {
        "stored_key": stored_key.hex(),
        "server_key": server_key.hex(),
        "salt": salt,
        "iteration_count": iterations,
    }


def _lua_truthy(value: Any) -> bool:
    """Lua's truth: everything but nil and false."""
    return value is not None and value is not False


def _check_plain(stored: str | bytes, prepped: bytes) -> bool:
    """A plain ``password`` field against the SASLprep-ed password."""
    stored_prepped = _prepped(stored)
    if not stored_prepped:          # fails SASLprep, or nothing left of it
        return False
    return hmac.compare_digest(stored_prepped, prepped)


def _iteration_count(value: Any, max_iterations: int) -> int | None:
    """The record's iteration count as an int, or None if unusable or above the limit.

    Prosody's PBKDF2 (OpenSSL's, whose count is a C ``int``) accepts whole
    numbers from 1 to 2**31 - 1; anything else fails its login.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 1 <= value <= min(max_iterations, PROSODY_MAX_ITERATIONS):
        return value
    return None


def _scram_params(record: Mapping[str, Any],
                  max_iterations: int) -> tuple[bytes, bytes, bytes, int, str] | None:
    """(salt, stored hex, server hex, iterations, hash name) of a usable hashed record."""
    salt, stored_hex, server_hex = (record.get(k) for k in ("salt", "stored_key", "server_key"))
    iterations = _iteration_count(record.get("iteration_count"), max_iterations)
    if iterations is None or not isinstance(salt, (str, bytes)) or not salt:
        return None
    if not isinstance(stored_hex, (str, bytes)) or not isinstance(server_hex, (str, bytes)):
        return None
    name = _HEX_LENGTHS.get(len(stored_hex))
    if name is None or len(server_hex) != len(stored_hex):
        return None
    return _utf8(salt), _utf8(stored_hex), _utf8(server_hex), iterations, name


def _check_hashed(params: tuple[bytes, bytes, bytes, int, str], prepped: bytes) -> bool:
    """The SCRAM keys of a hashed record against the SASLprep-ed password."""
    salt, stored_hex, server_hex, iterations, name = params
    stored_key, server_key = _scram(prepped, salt, iterations, name)
    stored_ok = hmac.compare_digest(stored_key.hex().encode(), stored_hex)
    server_ok = hmac.compare_digest(server_key.hex().encode(), server_hex)
    return stored_ok and server_ok


def _plain_password(record: Mapping[str, Any]) -> str | bytes | None | Literal[False]:
    """The plain ``password`` field if it decides alone; None if the keys decide;
    False if the field makes the record unusable."""
    plain = record.get("password")
    if plain is None:
        return None
    if not isinstance(plain, (str, bytes)):
        return False
    return plain if len(plain) != 0 else None


def derivation_cost(record: Mapping[str, Any] | None) -> int:
    """The PBKDF2 iterations :func:`verify_password` runs for ``record``.

    0 when a plain password decides or the record cannot verify at all; a
    service pads failed logins up to a fixed cost with it, so that the time
    of a refusal does not tell which accounts exist.
    """
    if not isinstance(record, Mapping) or _lua_truthy(record.get("disabled")):
        return 0
    if _plain_password(record) is not None:
        return 0
    params = _scram_params(record, PROSODY_MAX_ITERATIONS)
    return 0 if params is None else params[3]


def verify_password(record: Mapping[str, Any] | None, password: str | bytes, *,
                    max_iterations: int = PROSODY_MAX_ITERATIONS) -> bool:
    """True if ``password`` logs in to the account ``record``, as Prosody decides.

    ``record`` is the account's table (None or anything but a mapping: no
    account).  ``password`` is the password as sent (str, or bytes that must be
    UTF-8).  Disabled accounts and passwords that fail SASLprep never verify.
    A hashed record whose iteration count is above ``max_iterations`` (a
    service's bound on the cost of one login) never verifies, and costs
    nothing.
    """
    if not isinstance(record, Mapping) or _lua_truthy(record.get("disabled")):
        return False
    prepped = _prepped(password)
    if prepped is None:
        return False
    plain = _plain_password(record)
    if plain is False:
        return False
    if plain is not None:
        return _check_plain(plain, prepped)
    params = _scram_params(record, max_iterations)
    return params is not None and _check_hashed(params, prepped)


def dummy_derivation(iterations: int) -> None:
    """Spend what ``iterations`` PBKDF2-HMAC-SHA-1 rounds cost, for nothing."""
    if iterations > 0:
        hashlib.pbkdf2_hmac("sha1", b"dummy password", b"dummy salt", iterations)


def fingerprint(data: bytes) -> str:
    """A fingerprint of an account file's bytes for :class:`CredentialCache`."""
    return hashlib.sha256(data).hexdigest()


class CredentialCache:
    """A bounded, thread-safe memory of passwords that verified.

    The key is ``(jid, fingerprint)``: the caller normalises the JID and
    passes a fingerprint of the account record it verified against, such as
    :func:`fingerprint` of the file's bytes or the file's ``(st_mtime_ns,
    st_size, st_ino)``.  When the record changes, so does its fingerprint, and
    the cache misses: an old password stops working the moment the file
    changes.  A fingerprint of ``None`` is never cached.  The cache holds one
    entry per JID, for the newest fingerprint it was given.

    The cache keeps no password: only an HMAC-SHA-256 of it under a random key
    made for this object (so the digests are useless outside this process),
    compared in constant time.  Only successful verifications are stored, so
    a hit means that this very password verified against this very record
    before; a wrong password can only miss and then fail verification.
    Least recently used entries are dropped beyond ``maxsize``.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[Hashable, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, jid: str, fp: Hashable, password: str | bytes) -> bytes:
        """HMAC of the password, bound to the JID and fingerprint."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (_utf8(jid), repr(fp).encode("utf-8", "surrogatepass"), _utf8(password)):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    def check(self, jid: str, fp: Hashable, password: str | bytes) -> bool:
        """True if this password verified for this JID and this record before."""
        if fp is None:
            return False
        digest = self._digest(jid, fp, password)
        with self._lock:
            entry = self._entries.get(jid)
            if entry is None or entry[0] != fp:
                return False
            self._entries.move_to_end(jid)
        return hmac.compare_digest(entry[1], digest)

    def add(self, jid: str, fp: Hashable, password: str | bytes) -> None:
        """Remember that ``password`` verified for ``jid`` against record ``fp``.

        One entry per JID: the newest replaces any older one.
        """
        if fp is None:
            return
        digest = self._digest(jid, fp, password)
        with self._lock:
            self._entries[jid] = (fp, digest)
            self._entries.move_to_end(jid)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def verify(self, jid: str, record: Mapping[str, Any] | None, fp: Hashable,
               password: str | bytes) -> bool:
        """:func:`verify_password` with the cache in front; remembers successes."""
        if self.check(jid, fp, password):
            return True
        if not verify_password(record, password):
            return False
        self.add(jid, fp, password)
        return True

    def invalidate(self, jid: str) -> None:
        """Forget every entry of ``jid``."""
        with self._lock:
            self._entries.pop(jid, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
