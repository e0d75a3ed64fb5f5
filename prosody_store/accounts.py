"""Passwords of Prosody accounts: verify them, hash them, cache the verdicts;
the records of new and changed accounts, and of their roles.

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

:func:`new_account` and :func:`changed_password` build the records that the
auth modules' ``create_user`` and ``set_password`` write (Prosody 0.12's
shape, or 13's with ``created``/``updated``); :func:`set_role_012` and
:func:`set_role_13` the records of ``mod_authz_internal`` (stores ``roles``
and ``account_roles``).  They are pure: the caller reads and writes the files.

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

from prosody_store.errors import Error
from prosody_store.jid import JIDError, saslprep

__all__ = [
    "verify_password",
    "derivation_cost",
    "dummy_derivation",
    "hash_password",
    "new_account",
    "changed_password",
    "record_hash",
    "is_plain",
    "checked_password",
    "PasswordError",
    "RoleError",
    "ADMIN_ROLE",
    "BUILTIN_ROLES_13",
    "DEFAULT_ROLE_13",
    "set_role_012",
    "set_role_13",
    "role_names",
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


class PasswordError(JIDError):
    """A password we refuse to store: fails SASLprep, or nothing is left of it."""


def checked_password(password: str | bytes) -> str:
    """The SASLprep-ed password, as both auth modules use it;
    :class:`PasswordError` if it fails SASLprep or is empty after it.

    Prosody would store a password that SASLprep maps to nothing; we refuse
    it, as :func:`verify_password` never accepts an empty plain password.
    """
    try:
        prepped = saslprep(password)
    except JIDError as err:
        raise PasswordError(f"the password fails SASLprep: {err}") from None
    if not prepped:
        raise PasswordError("the password is empty (after SASLprep)")
    return prepped


def _timestamps(record: dict[str, Any], now: int | None, *, created: bool) -> None:
    """Prosody 13's ``created``/``updated`` (whole seconds); 0.12 writes neither (``now`` None)."""
    if now is not None:
        if created:
            record["created"] = now
        record["updated"] = now


def new_account(password: str | bytes, *, plain: bool = False, hash: str = "sha1",
                iterations: int = DEFAULT_ITERATIONS, now: int | None = None) -> dict[str, Any]:
    """The account record Prosody's ``create_user`` writes.

    ``internal_hashed``: ``{stored_key, server_key, salt, iteration_count}``
    (:func:`hash_password`); ``internal_plain`` (``plain=True``):
    ``{password}``, SASLprep-ed.  ``now`` (seconds since the epoch) adds
    Prosody 13's ``created`` and ``updated``; leave it None for 0.12's shape.
    :class:`PasswordError` for a password we refuse (:func:`checked_password`).
    """
    prepped = checked_password(password)
    record = {"password": prepped} if plain else hash_password(
        prepped, iterations=iterations, hash=hash)
    _timestamps(record, now, created=True)
    return record


_SCRAM_FIELDS = ("stored_key", "server_key", "salt", "iteration_count")


def changed_password(record: Mapping[str, Any], password: str | bytes, *, plain: bool = False,
                     hash: str = "sha1", iterations: int = DEFAULT_ITERATIONS,
                     now: int | None = None) -> dict[str, Any]:
    """``record`` with a new password, as the auth modules' ``set_password``.

    Every other field stays (``created``, ``disabled``, ...).  Hashed: a new
    salt, the iteration count ``max(old, iterations)``, new keys, and no
    plain ``password`` field.  Plain: the SASLprep-ed ``password``; unlike
    ``internal_plain`` we also drop the SCRAM fields of the old password, so
    that no credential of it is left.  ``now``: Prosody 13's ``updated``.
    """
    prepped = checked_password(password)
    updated = dict(record)
    if plain:
        for field in _SCRAM_FIELDS:
            updated.pop(field, None)
        updated["password"] = prepped
    else:
        old = _iteration_count(record.get("iteration_count"), PROSODY_MAX_ITERATIONS) or 0
        updated.pop("password", None)
        updated.update(hash_password(prepped, iterations=max(old, iterations), hash=hash))
    _timestamps(updated, now, created=False)
    return updated


def record_hash(record: Any) -> str | None:
    """``"sha1"`` or ``"sha256"`` for a hashed record (by its key length), else None."""
    if not isinstance(record, Mapping):
        return None
    stored = record.get("stored_key")
    return _HEX_LENGTHS.get(len(stored)) if isinstance(stored, (str, bytes)) else None


def is_plain(record: Any) -> bool:
    """True for an ``internal_plain`` record: a non-empty ``password``, no SCRAM keys."""
    return (isinstance(record, Mapping) and record_hash(record) is None
            and isinstance(record.get("password"), (str, bytes))
            and len(record["password"]) > 0)


# --- roles (mod_authz_internal) ----------------------------------------------

ADMIN_ROLE = "prosody:admin"

BUILTIN_ROLES_13 = ("prosody:guest", "prosody:registered", "prosody:member",
                    "prosody:admin", "prosody:operator")
"""The roles Prosody 13's ``mod_authz_internal`` registers (``custom_roles`` add more)."""

DEFAULT_ROLE_13 = "prosody:registered"
"""Prosody 13's ``default_user_role`` (``prosody:guest`` on anonymous hosts)."""


class RoleError(Error, ValueError):
    """A role Prosody would not accept."""


def set_role_012(role: str) -> dict[str, Any] | None:
    """Prosody 0.12's ``roles`` record for a user whose one role is ``role``.

    0.12 keeps a set, ``{["prosody:admin"] = true}``; ``mod_admin_shell``
    reads ``admin`` as ``prosody:admin``.  ``none`` (a normal user, the empty
    set) gives None: the file goes.
    """
    if role == "none":
        return None
    role = ADMIN_ROLE if role == "admin" else role
    if not role or ":" not in role:
        raise RoleError(f"unknown role {role!r} (prosody:admin, admin or none; "
                        "other roles are namespaced, e.g. example:role)")
    return {role: True}


def set_role_13(current: Any, role: str, default_role: str = DEFAULT_ROLE_13,
                known: tuple[str, ...] = BUILTIN_ROLES_13) -> dict[str, Any] | None:
    """Prosody 13's ``account_roles`` record after ``set_user_role(user, role)``.

    The primary role is ``_default``; other keys are secondary roles (``true``),
    kept, except ``role`` itself (a primary role is not also secondary).  The
    host's default role is not stored.  ``admin`` is read as
    ``prosody:admin`` and ``none`` as the default role.  A role Prosody does
    not know raises :class:`RoleError`, as ``set_user_role`` does.  None: the
    record is empty and the file goes.
    """
    role = {"admin": ADMIN_ROLE, "none": default_role}.get(role, role)
    if role not in known and role != default_role:
        raise RoleError(f"unknown role {role!r} (one of {', '.join(known)})")
    record = dict(current) if isinstance(current, Mapping) else {}
    record.pop(role, None)
    if role == default_role:
        record.pop("_default", None)
    else:
        record["_default"] = role
    return record or None


def role_names(record: Any, version: str, default_role: str = DEFAULT_ROLE_13) -> list[str]:
    """The roles a ``roles`` (0.12) or ``account_roles`` (13) record gives, primary first.

    0.12: every key whose value is true, sorted.  13: ``_default`` (or the
    default role), then the secondary roles, sorted.
    """
    table = record if isinstance(record, Mapping) else {}
    if version == "0.12":
        return sorted(k for k, v in table.items() if isinstance(k, str) and _lua_truthy(v))
    primary = table.get("_default")
    secondary = sorted(k for k, v in table.items()
                       if isinstance(k, str) and k != "_default" and _lua_truthy(v))
    return [primary if isinstance(primary, str) else default_role] + secondary


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
