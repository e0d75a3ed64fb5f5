"""Password verification, hashing and the credential cache (prosody_store.accounts).

Interop tests compare with real Prosody 0.12.3 (Debian): util.sasl.scram, the
auth modules' own ``test_password`` (loaded with a stub ``module`` by
tests/lua/auth_oracle.lua), and accounts created by ``prosodyctl register`` in
a temporary data directory (see ``prosodyctl_account``).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prosody_store.accounts import (
    CredentialCache,
    derivation_cost,
    fingerprint,
    hash_password,
    scram_keys,
    verify_password,
)
from prosody_store.jid import JIDError, saslprep
from prosody_store.serialization import loads

CORPUS = Path(__file__).parent.parent / "fixtures" / "prosody-corpus"
PASSWORDS = {
    "alice.dat": "secr1t",
    "bob.dat": "pencil",
    "user%2ewith%2bodd%2fchars.dat": "correct horse battery staple",
    "j%c3%bcrgen.dat": "p\"a\\ss w\u00f6rd'",
}
ACCOUNT_FILES = sorted(CORPUS.glob("*/*/accounts/*.dat"))

BOB = {
    "salt": "4b5e4f8c-9a3e-4b9a-8f1e-1c2d3e4f5a6b",
    "iteration_count": 4096,
    "stored_key": "3b7534d854943462e40ee908fc168251108468c5",
    "server_key": "a43df1d51cf18c5b55b2d678a92ca14d8d466bd6",
}


def load(path: Path) -> dict:
    return loads(path.read_bytes())


# --- corpus -----------------------------------------------------------------

def test_corpus_has_accounts():
    assert len(ACCOUNT_FILES) >= 4 * 6


@pytest.mark.parametrize("path", ACCOUNT_FILES, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_corpus_password_verifies(path):
    record = load(path)
    assert verify_password(record, PASSWORDS[path.name])
    assert verify_password(record, PASSWORDS[path.name].encode("utf-8"))


@pytest.mark.parametrize("path", ACCOUNT_FILES, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_corpus_wrong_passwords_fail(path):
    record = load(path)
    right = PASSWORDS[path.name]
    for wrong in [p for p in PASSWORDS.values() if p != right] + [
            "", right.upper(), right + " ", right[:-1], " " + right]:
        assert not verify_password(record, wrong), wrong


def test_record_shapes_in_corpus():
    assert set(load(CORPUS / "prosody-0.12/example%2ecom/accounts/alice.dat")) == {"password"}
    bob = load(CORPUS / "prosody-0.12/example%2ecom/accounts/bob.dat")
    assert {k: bob[k] for k in BOB} == BOB


# --- rules ------------------------------------------------------------------

def test_saslprep_applies_to_the_given_password():
    assert verify_password(BOB, "pen\u00adcil")       # soft hyphen maps to nothing
    assert verify_password({"password": "I\u00adX"}, "\u2168")  # both sides prepped
    assert not verify_password(BOB, "pencil\u0007")   # fails SASLprep
    assert not verify_password({"password": "a\u0007"}, "a\u0007")
    assert not verify_password(BOB, b"pencil\xff")    # not UTF-8


def test_disabled_accounts_are_refused():
    assert not verify_password({**BOB, "disabled": True}, "pencil")
    assert not verify_password({"password": "x", "disabled": True}, "x")
    assert verify_password({**BOB, "disabled": False}, "pencil")


def test_plain_field_decides_in_hashed_record():
    record = {**BOB, "password": "other"}
    assert verify_password(record, "other")
    assert not verify_password(record, "pencil")
    assert verify_password({**BOB, "password": ""}, "pencil")  # empty: the keys decide


def test_empty_plain_password_is_refused():
    assert not verify_password({"password": ""}, "")
    assert not verify_password({"password": "\u00ad"}, "")


@pytest.mark.parametrize("change", [
    {"stored_key": BOB["stored_key"].upper()},
    {"server_key": "0" * 40},
    {"stored_key": BOB["stored_key"][:-1]},
    {"salt": ""},
    {"salt": None},
    {"iteration_count": "4096"},
    {"iteration_count": 0},
    {"iteration_count": True},
    {"iteration_count": 4097},
    {"server_key": None},
    {"password": 42},
])
def test_broken_records_fail(change):
    assert not verify_password({**BOB, **change}, "pencil")


def test_float_iteration_count():
    assert verify_password({**BOB, "iteration_count": 4096.0}, "pencil")


@pytest.mark.parametrize("record", [None, {}, [], "pencil", {"disabled": True}])
def test_no_account(record):
    assert not verify_password(record, "pencil")


# --- hash_password ------------------------------------------------------------

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.mark.parametrize("hash_, digits", [("sha1", 40), ("SHA-1", 40), ("sha256", 64), ("SHA-256", 64)])
def test_hash_password_shape(hash_, digits):
    record = hash_password("pencil", hash=hash_)
    assert list(record) == ["stored_key", "server_key", "salt", "iteration_count"]
    assert record["iteration_count"] == 10000
    assert UUID.match(record["salt"])
    for key in ("stored_key", "server_key"):
        assert re.fullmatch(f"[0-9a-f]{{{digits}}}", record[key])
    assert verify_password(record, "pencil")
    assert not verify_password(record, "pencil2")


def test_hash_password_reproduces_corpus():
    assert hash_password("pencil", iterations=4096, salt=BOB["salt"]) == {
        "stored_key": BOB["stored_key"], "server_key": BOB["server_key"],
        "salt": BOB["salt"], "iteration_count": 4096}


def test_hash_password_salts_differ():
    assert hash_password("x", iterations=1)["salt"] != hash_password("x", iterations=1)["salt"]


def test_hash_password_rejects():
    with pytest.raises(JIDError):
        hash_password("bad\u0007")
    with pytest.raises(ValueError):
        hash_password("x", hash="md5")
    with pytest.raises(ValueError):
        hash_password("x", iterations=0)


# --- against real Prosody ---------------------------------------------------

def prosody_scram(oracle, password: str, salt: str, iterations: int, hash_: str = "SHA-1") -> dict:
    """util.sasl.scram's keys (hex) for a password, or {"valid": False}."""
    return json.loads(oracle.call("auth_oracle.scram", json.dumps({
        "hash": hash_, "password": password.encode().hex(), "salt": salt.encode().hex(),
        "iteration_count": iterations})))


def _tag(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return {"int": str(value)}
    return {"hex": value.encode("utf-8").hex()}


def prosody_test_password(oracle, record: dict, password: str, module: str = "hashed",
                          password_hash: str = "SHA-1") -> bool:
    """The verdict of mod_auth_internal_<module>'s own provider.test_password."""
    answer = oracle.call("auth_oracle.test_password", json.dumps({
        "module": f"mod_auth_internal_{module}",
        "record": {k: _tag(v) for k, v in record.items()},
        "password": password.encode("utf-8").hex(),
        "options": {"password_hash": password_hash},
    })).decode()
    assert answer in ("true", "false", "error"), answer
    return answer == "true"   # an error in test_password is a failed login


@pytest.mark.interop
@pytest.mark.parametrize("path", ACCOUNT_FILES[:4], ids=lambda p: p.name)
def test_corpus_verdicts_match_prosody(oracle, path):
    record = load(path)
    module = "plain" if "password" in record else "hashed"
    for password in PASSWORDS.values():
        assert verify_password(record, password) == prosody_test_password(
            oracle, record, password, module)


@pytest.mark.interop
@pytest.mark.parametrize("hash_", ["SHA-1", "SHA-256"])
def test_scram_keys_match_prosody(oracle, hash_):
    for password, salt, n in [("pencil", "salt", 4096), ("p\"a\\ss w\u00f6rd'", "\u00fc-salt", 3),
                              ("I\u00adX", "x", 1), ("\u2168", "y", 2)]:
        theirs = prosody_scram(oracle, password, salt, n, hash_)
        stored, server = scram_keys(password, salt, n, hash_)
        assert (stored.hex(), server.hex()) == (theirs["stored_key"], theirs["server_key"])


@pytest.mark.interop
def test_scram_rejects_like_prosody(oracle):
    assert prosody_scram(oracle, "bad\u0007", "s", 1)["valid"] is False
    with pytest.raises(JIDError):
        scram_keys("bad\u0007", "s", 1)


@pytest.mark.interop
def test_sha256_record_from_prosody_verifies(oracle):
    salt = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    keys = prosody_scram(oracle, "correct horse battery staple", salt, 10000, "SHA-256")
    record = {"stored_key": keys["stored_key"], "server_key": keys["server_key"],
              "salt": salt, "iteration_count": 10000}
    assert len(record["stored_key"]) == 64
    assert verify_password(record, "correct horse battery staple")
    assert not verify_password(record, "correct horse battery stapler")
    assert prosody_test_password(oracle, record, "correct horse battery staple",
                                 password_hash="SHA-256")


@pytest.mark.interop
@pytest.mark.parametrize("hash_", ["SHA-1", "SHA-256"])
def test_hash_password_verifies_in_prosody(oracle, hash_):
    password = "p\"a\\ss w\u00f6rd'"
    record = hash_password(password, hash=hash_)
    theirs = prosody_scram(oracle, password, record["salt"], record["iteration_count"], hash_)
    assert (record["stored_key"], record["server_key"]) == (theirs["stored_key"], theirs["server_key"])
    assert prosody_test_password(oracle, record, password, password_hash=hash_)
    assert not prosody_test_password(oracle, record, password + "x", password_hash=hash_)


PASSWORD_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@pytest.mark.interop
@settings(max_examples=150, deadline=None, database=None)
@given(stored=PASSWORD_TEXT, given_=PASSWORD_TEXT, hashed=st.booleans(),
       same=st.booleans(), hash_=st.sampled_from(["SHA-1", "SHA-256"]))
def test_verdicts_match_prosody(oracle, stored, given_, hashed, same, hash_):
    """Random passwords: our verdict is the auth module's, for plain and hashed records."""
    if same:
        given_ = stored
    if hashed:
        keys = prosody_scram(oracle, stored, "s4lt", 2, hash_)
        if not keys["valid"]:
            return
        record = {"stored_key": keys["stored_key"], "server_key": keys["server_key"],
                  "salt": "s4lt", "iteration_count": 2}
        theirs = prosody_test_password(oracle, record, given_, "hashed", hash_)
    else:
        record = {"password": stored}
        theirs = prosody_test_password(oracle, record, given_, "plain")
        try:
            if saslprep(stored) == "":
                theirs = False   # our documented refusal of empty plain passwords
        except JIDError:
            pass
    assert verify_password(record, given_) == theirs


# --- prosodyctl ---------------------------------------------------------------

PROSODYCTL = shutil.which("prosodyctl")


def prosodyctl_account(tmp: Path, user: str, host: str, password: str,
                       extra_config: str = "") -> Path:
    """Create an account with the real ``prosodyctl register`` in a temp data dir.

    The config keeps everything inside ``tmp``.  ``run_as_root = true`` stops
    prosodyctl, when run as root, from switching to the ``prosody`` user (which
    could not write to ``tmp``); it has no effect for other users.
    """
    data = tmp / "data"
    (tmp / "certs").mkdir(exist_ok=True)
    data.mkdir(exist_ok=True)
    config = tmp / "prosody.cfg.lua"
    config.write_text(
        "run_as_root = true\n"
        f'data_path = "{data}"\n'
        f'pidfile = "{tmp}/prosody.pid"\n'
        f'certificates = "{tmp}/certs"\n'
        'log = { { levels = { min = "error" }, to = "console" } }\n'
        f"{extra_config}\n"
        f'VirtualHost "{host}"\n', encoding="utf-8")
    proc = subprocess.run([PROSODYCTL, "--config", str(config), "register", user, host, password],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    [path] = data.glob("*/accounts/*.dat")
    return path


@pytest.fixture
def prosodyctl():
    if PROSODYCTL is None:
        from tests.conftest import skip_or_fail
        skip_or_fail("prosodyctl is not installed (apt-get install prosody)")
    return prosodyctl_account


@pytest.mark.interop
@pytest.mark.parametrize("extra, digits", [("", 40), ('password_hash = "SHA-256"', 64)])
def test_prosodyctl_hashed_account_verifies(prosodyctl, tmp_path, extra, digits):
    password = "p\"a\\ss w\u00f6rd'"
    path = prosodyctl(tmp_path, "j\u00fcrgen", "example.com", password,
                      'authentication = "internal_hashed"\n' + extra)
    record = load(path)
    assert set(record) == {"stored_key", "server_key", "salt", "iteration_count"}
    assert record["iteration_count"] == 10000 and UUID.match(record["salt"])
    assert len(record["stored_key"]) == digits
    assert verify_password(record, password)
    assert not verify_password(record, "pencil")
    assert hash_password(password, salt=record["salt"],
                         hash="sha1" if digits == 40 else "sha256") == record


@pytest.mark.interop
def test_prosodyctl_plain_account_verifies(prosodyctl, tmp_path):
    path = prosodyctl(tmp_path, "alice", "example.com", "I\u00adX",
                      'authentication = "internal_plain"')
    record = load(path)
    assert record == {"password": "IX"}   # internal_plain stores it SASLprep-ed
    assert verify_password(record, "IX") and verify_password(record, "\u2168")
    assert not verify_password(record, "ix")


# --- CredentialCache ----------------------------------------------------------

class CountingRecord(dict):
    """A record that counts how often verify_password reads it."""
    reads = 0

    def get(self, key, default=None):
        CountingRecord.reads += 1
        return super().get(key, default)


def test_cache_hit_after_success():
    cache = CredentialCache()
    record = hash_password("pencil", iterations=1)
    assert cache.verify("bob@example.com", record, "fp1", "pencil")
    assert len(cache) == 1
    assert cache.check("bob@example.com", "fp1", "pencil")
    counting = CountingRecord(record)
    CountingRecord.reads = 0
    assert cache.verify("bob@example.com", counting, "fp1", "pencil")
    assert CountingRecord.reads == 0   # answered from the cache


def test_cache_never_accepts_wrong_password():
    cache = CredentialCache()
    record = hash_password("pencil", iterations=1)
    assert cache.verify("bob@example.com", record, "fp1", "pencil")
    for wrong in ["pencil ", "Pencil", "", "pencil\x00", b"pencil\xff"]:
        assert not cache.check("bob@example.com", "fp1", wrong)
        assert not cache.verify("bob@example.com", record, "fp1", wrong)
    assert not cache.check("alice@example.com", "fp1", "pencil")


def test_cache_only_stores_success():
    cache = CredentialCache()
    record = hash_password("pencil", iterations=1)
    assert not cache.verify("bob@example.com", record, "fp1", "wrong")
    assert len(cache) == 0


def test_cache_misses_after_fingerprint_change():
    cache = CredentialCache()
    old = hash_password("old", iterations=1)
    new = hash_password("new", iterations=1)
    old_fp = fingerprint(repr(old).encode())
    new_fp = fingerprint(repr(new).encode())
    assert cache.verify("bob@example.com", old, old_fp, "old")
    assert not cache.check("bob@example.com", new_fp, "old")
    assert not cache.verify("bob@example.com", new, new_fp, "old")
    assert cache.verify("bob@example.com", new, new_fp, "new")
    assert not cache.check("bob@example.com", old_fp, "old")   # one entry per JID
    assert len(cache) == 1


def test_cache_none_fingerprint_is_not_cached():
    cache = CredentialCache()
    record = hash_password("pencil", iterations=1)
    assert cache.verify("bob@example.com", record, None, "pencil")
    assert len(cache) == 0


def test_cache_is_bounded_lru():
    cache = CredentialCache(maxsize=3)
    record = hash_password("pw", iterations=1)
    for i in range(3):
        cache.verify(f"u{i}@h", record, "fp", "pw")
    assert cache.check("u0@h", "fp", "pw")          # u0 becomes most recent
    cache.verify("u3@h", record, "fp", "pw")
    assert len(cache) == 3
    assert not cache.check("u1@h", "fp", "pw")      # least recently used, dropped
    assert all(cache.check(f"u{i}@h", "fp", "pw") for i in (0, 2, 3))
    with pytest.raises(ValueError):
        CredentialCache(maxsize=0)


def test_cache_invalidate_and_clear():
    cache = CredentialCache()
    record = hash_password("pw", iterations=1)
    cache.verify("a@h", record, "fp", "pw")
    cache.verify("b@h", record, "fp", "pw")
    cache.invalidate("a@h")
    assert not cache.check("a@h", "fp", "pw") and cache.check("b@h", "fp", "pw")
    cache.clear()
    assert len(cache) == 0


def _reachable(obj, seen=None):
    """Every object reachable from obj through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    for child in children:
        yield from _reachable(child, seen)


def test_cache_stores_no_plaintext():
    cache = CredentialCache()
    secret = "correct horse battery staple"
    record = hash_password(secret, iterations=1)
    assert cache.verify("bob@example.com", record, "fp", secret)
    for obj in _reachable(cache):
        if isinstance(obj, str):
            assert secret not in obj
        if isinstance(obj, (bytes, bytearray)):
            assert secret.encode() not in obj
    assert secret.encode() not in repr(vars(cache)).encode()


def test_cache_is_thread_safe():
    cache = CredentialCache(maxsize=50)
    record = hash_password("pw", iterations=1)
    errors = []

    def worker(n):
        try:
            for i in range(200):
                jid = f"u{(n * 7 + i) % 80}@h"
                assert cache.verify(jid, record, "fp", "pw")
                assert not cache.verify(jid, record, "fp", "wrong")
        except AssertionError as e:     # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50


def test_derivation_cost():
    """The PBKDF2 rounds verify_password runs: what a service pads failed logins with."""
    assert derivation_cost(BOB) == 4096
    assert derivation_cost({**BOB, "iteration_count": 4096.0}) == 4096
    assert derivation_cost({"password": "x", **BOB}) == 0      # the plain password decides
    assert derivation_cost({**BOB, "disabled": True}) == 0
    assert derivation_cost({**BOB, "iteration_count": 2**31}) == 0  # Prosody refuses it
    assert derivation_cost(None) == 0 and derivation_cost({}) == 0
