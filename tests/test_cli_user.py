"""``prosody-store user``: accounts managed without Prosody, run as real subprocesses
on temporary data directories.

Interop tests (marked ``interop``) ask real Prosody 0.12.3 about what we wrote:
``mod_auth_internal_hashed``/``_plain`` and ``mod_authz_internal`` loaded by
tests/lua/account_oracle.lua with Prosody's util.datamanager on the same data
directory, and the real ``prosodyctl`` (register, deluser).
"""
from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prosody_store.accounts import verify_password
from prosody_store.datamanager import DataManager
from prosody_store.serialization import loads
from tests.conftest import skip_or_fail
from tests.tagged import to_tagged
from tests.test_accounts import PROSODYCTL, prosodyctl_account
from tests.test_cli import ROOT, run, tree
from tests.test_cli_fuzz import run_main

HOST = "example.com"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


@pytest.fixture
def data(tmp_path):
    """An empty data directory with the host example.com."""
    path = tmp_path / "data"
    (path / "example%2ecom").mkdir(parents=True)
    return path


def add(data, jid, password, *args, check=0):
    return run(data, "user", "add", jid, *args, input=password + "\n", check=check)


def account(data, user="alice", host=HOST):
    return DataManager(data).load(user, host, "accounts")


def error_line(proc) -> str:
    [line] = proc.stderr.decode().strip().splitlines()[-1:]
    return line


# --- add -----------------------------------------------------------------------

def test_add_writes_a_scram_sha1_record(data):
    add(data, "alice@example.com", "pencil")
    record = account(data)
    assert set(record) == {"stored_key", "server_key", "salt", "iteration_count"}
    assert record["iteration_count"] == 10000 and UUID.match(record["salt"])
    assert re.fullmatch(r"[0-9a-f]{40}", record["stored_key"])
    assert re.fullmatch(r"[0-9a-f]{40}", record["server_key"])
    assert verify_password(record, "pencil") and not verify_password(record, "pencil2")
    assert run(data, "user", "list", HOST).stdout == b"alice\n"


def test_each_account_gets_its_own_salt(data):
    add(data, "alice@example.com", "pencil")
    add(data, "bob@example.com", "pencil")
    assert account(data)["salt"] != account(data, "bob")["salt"]
    assert account(data)["stored_key"] != account(data, "bob")["stored_key"]


def test_add_plain_stores_the_saslprepped_password(data):
    add(data, "alice@example.com", "I\u00adX", "--plain")
    assert account(data) == {"password": "IX"}
    assert verify_password(account(data), "\u2168")   # SASLprep: U+2168 is IX


def test_add_sha256_and_iterations(data):
    add(data, "alice@example.com", "pencil", "--hash", "SHA-256", "--iterations", "4096")
    record = account(data)
    assert len(record["stored_key"]) == 64 and record["iteration_count"] == 4096
    assert verify_password(record, "pencil")


def test_hash_follows_the_hosts_accounts(data):
    add(data, "alice@example.com", "pencil", "--hash", "SHA-256")
    add(data, "bob@example.com", "pencil")
    assert len(account(data, "bob")["stored_key"]) == 64
    add(data, "carol@example.com", "pencil", "--hash", "SHA-1")
    assert len(account(data, "carol")["stored_key"]) == 40


def test_hash_and_iterations_from_the_config(data, tmp_path):
    config = tmp_path / "prosody.cfg.lua"
    config.write_text(f'data_path = "{data}"\ndefault_iteration_count = 5000\n'
                      'VirtualHost "example.com"\n  password_hash = "SHA-256"\n')
    run(None, "--prosody-config", config, "user", "add", "alice@example.com",
        input="pencil\n")
    record = account(data)
    assert len(record["stored_key"]) == 64 and record["iteration_count"] == 5000


def test_add_13_data_gets_created_and_updated(data):
    before = int(time.time())
    add(data, "alice@example.com", "pencil", "--prosody", "13")
    record = account(data)
    assert before <= record["created"] == record["updated"] <= time.time()
    add(data, "bob@example.com", "pencil")     # 13 told from alice's record
    assert "created" in account(data, "bob")


def test_add_normalises_the_jid(data):
    add(data, "J\u00dcRGEN@Example.COM.", "pencil")
    assert (data / "example%2ecom" / "accounts" / "j%c3%bcrgen.dat").is_file()
    proc = add(data, "j\u00fcrgen@example.com", "other", check=1)
    assert error_line(proc) == "prosody-store: account j\u00fcrgen@example.com already exists"


def test_add_existing_account_changes_nothing(data):
    add(data, "alice@example.com", "pencil")
    before = tree(data)
    proc = add(data, "alice@example.com", "other", check=1)
    assert "already exists" in error_line(proc)
    assert tree(data) == before


@pytest.mark.parametrize("jid, reason", [
    ("example.com", "is not a user's JID"),
    ("alice@example.com/phone", "has no resource"),
    ("a b@example.com", "prohibited code point U+0020"),
    ("a:b@example.com", "prohibited code point U+003A"),
    ("a@b@example.com", "not a valid JID"),
    ("\u00ad@example.com", "nothing is left of the user name"),
    ("\u0221x@example.com", "unassigned code point U+0221"),   # prosodyctl adduser: strict
])
def test_add_refuses_bad_jids(data, jid, reason):
    before = tree(data)
    proc = add(data, jid, "pencil", check=2)
    assert reason in error_line(proc)
    assert tree(data) == before


def test_add_needs_the_host_or_create_host(data):
    proc = add(data, "alice@new.example", "pencil", check=1)
    assert error_line(proc) == \
        "prosody-store: no data for host 'new.example' (--create-host creates it)"
    add(data, "alice@new.example", "pencil", "--create-host")
    assert verify_password(account(data, host="new.example"), "pencil")


@pytest.mark.parametrize("stdin, message", [
    (b"", "empty password"),
    (b"\n", "empty password"),
    (b"\xff\xfe\n", "the password on stdin is not UTF-8"),
    (b"bad\x07\n", "the password fails SASLprep"),
    (b"\xc2\xad\n", "the password is empty (after SASLprep)"),
])
def test_add_refuses_bad_passwords(data, stdin, message):
    proc = run(data, "user", "add", "alice@example.com", input=stdin, check=1)
    assert message in error_line(proc)
    assert account(data) is None


def test_only_the_first_line_is_the_password(data):
    run(data, "user", "add", "alice@example.com", input=b"pencil\r\nsecond line\n")
    assert verify_password(account(data), "pencil")


def test_no_password_on_the_command_line(data):
    proc = run(data, "user", "add", "alice@example.com", "pencil", input="x\n", check=2)
    assert "unrecognized arguments: pencil" in error_line(proc)
    run(data, "user", "add", "alice@example.com", "--password", "x", check=2)
    assert account(data) is None


def run_on_terminal(data, args, typed: list[str]) -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as its controlling terminal and stdin,
    typing each line of ``typed`` after a prompt; (exit status, all output)."""
    main, child = pty.openpty()
    env = dict(os.environ)
    env.pop("PROSODY_DATA_PATH", None)

    def make_controlling_terminal():
        import fcntl
        import termios
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "prosody_store", "--data-path", str(data),
                             *args], stdin=child, stdout=child, stderr=child, cwd=ROOT,
                            env=env, preexec_fn=make_controlling_terminal)
    os.close(child)
    output = b""
    pending = list(typed)
    try:
        for _ in range(200):  # bounded: at most 200 reads of the terminal
            ready, _, _ = select.select([main], [], [], 10)
            if not ready:
                break
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output.count(b"password: ") > len(typed) - len(pending):
                os.write(main, pending.pop(0).encode() + b"\n")
        return proc.wait(timeout=60), output
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_password_from_a_terminal_is_asked_twice(data):
    status, output = run_on_terminal(data, ["user", "add", "alice@example.com"],
                                     ["s3cret pass", "s3cret pass"])
    assert status == 0, output
    assert b"Enter new password: " in output and b"Retype new password: " in output
    assert b"s3cret" not in output   # not echoed
    assert verify_password(account(data), "s3cret pass")


def test_passwords_that_differ_on_a_terminal_are_refused(data):
    status, output = run_on_terminal(data, ["user", "add", "alice@example.com"],
                                     ["one", "two"])
    assert status == 1
    assert b"prosody-store: the passwords do not match" in output
    assert account(data) is None


# --- passwd --------------------------------------------------------------------

def test_passwd_keeps_other_fields_and_raises_iterations(data):
    DataManager(data).store("alice", HOST, "accounts", {
        "password": "old", "iteration_count": 20000, "created": 1700000000, "disabled": True,
        "salt": "x", "stored_key": "0" * 40, "server_key": "0" * 40})
    run(data, "user", "passwd", "alice@example.com", "--hash", "SHA-1", input="new pw\n")
    record = account(data)
    assert "password" not in record
    assert record["created"] == 1700000000 and record["disabled"] is True
    assert record["iteration_count"] == 20000 and UUID.match(record["salt"])
    assert record["updated"] >= 1700000000   # 13's data (created): updated is set
    record.pop("disabled")
    assert verify_password(record, "new pw") and not verify_password(record, "old")


def test_passwd_gives_a_new_salt(data):
    add(data, "alice@example.com", "pencil")
    old = account(data)
    run(data, "user", "passwd", "alice@example.com", input="pencil\n")
    new = account(data)
    assert new["salt"] != old["salt"] and new["stored_key"] != old["stored_key"]
    assert set(new) == set(old) and verify_password(new, "pencil")


def test_passwd_keeps_a_plain_account_plain(data):
    add(data, "alice@example.com", "old", "--plain")
    run(data, "user", "passwd", "alice@example.com", input="new\n")
    assert account(data) == {"password": "new"}
    run(data, "user", "passwd", "alice@example.com", "--hash", "SHA-1", input="newer\n")
    record = account(data)
    assert "password" not in record and verify_password(record, "newer")
    run(data, "user", "passwd", "alice@example.com", "--plain", input="plain again\n")
    assert account(data) == {"password": "plain again"}


def test_passwd_of_a_missing_account(data):
    before = tree(data)
    proc = run(data, "user", "passwd", "bob@example.com", input="x\n", check=1)
    assert error_line(proc) == "prosody-store: no account bob@example.com"
    proc = run(data, "user", "passwd", "bob@nowhere.example", input="x\n", check=1)
    assert error_line(proc) == "prosody-store: no data for host 'nowhere.example'"
    assert tree(data) == before


# --- delete --------------------------------------------------------------------

def user_stores(data, user="alice"):
    """Every file of ``user`` on example.com, as paths relative to the host."""
    host = data / "example%2ecom"
    return sorted(str(p.relative_to(host)) for p in host.rglob(f"{user}.*"))


def with_stores(data):
    """alice and bob with an account, a roster, a role and an archive (with its index)."""
    dm = DataManager(data)
    for user in ("alice", "bob"):
        add(data, f"{user}@example.com", "pencil")
        dm.store(user, HOST, "roster", {"carol@example.com": {"subscription": "both"}})
        dm.store(user, HOST, "roles", {"prosody:admin": True})
        for n in range(3):
            dm.list_append(user, HOST, "archive", {"n": n})
        dm.list_reindex(user, HOST, "archive")
    assert user_stores(data) == ["accounts/alice.dat", "archive/alice.lidx",
                                 "archive/alice.list", "roles/alice.dat", "roster/alice.dat"]


def test_delete_removes_every_store_of_the_user(data):
    with_stores(data)
    bob_before = {k: v for k, v in tree(data).items() if "bob" in k}
    run(data, "user", "delete", "Alice@Example.com")
    assert user_stores(data) == []
    assert {k: v for k, v in tree(data).items() if "bob" in k} == bob_before
    assert run(data, "user", "list", HOST).stdout == b"bob\n"


def test_delete_keep_data_removes_only_the_account_and_roles(data):
    with_stores(data)
    run(data, "user", "delete", "alice@example.com", "--keep-data")
    assert user_stores(data) == ["archive/alice.lidx", "archive/alice.list", "roster/alice.dat"]


def test_delete_missing_account(data):
    DataManager(data).store("alice", HOST, "roster", {"x@y": {}})
    proc = run(data, "user", "delete", "alice@example.com", check=1)
    assert error_line(proc) == "prosody-store: no account alice@example.com"
    assert user_stores(data) == ["roster/alice.dat"]


# --- list ----------------------------------------------------------------------

def test_list_shows_accounts_and_users_still_shows_every_user(data):
    add(data, "bob@example.com", "pencil")
    add(data, "alice@example.com", "pencil")
    DataManager(data).store("carol", HOST, "roster", {"x@y": {}})   # data, no account
    assert run(data, "user", "list", HOST).stdout == b"alice\nbob\n"
    assert json.loads(run(data, "user", "list", "EXAMPLE.com", "--json").stdout) == \
        ["alice", "bob"]
    assert run(data, "users", HOST).stdout == b"alice\nbob\ncarol\n"
    assert error_line(run(data, "user", "list", "nowhere.example", check=1)) == \
        "prosody-store: no data for host 'nowhere.example'"


# --- roles ---------------------------------------------------------------------

def test_role_needs_a_version_it_can_tell(data):
    add(data, "alice@example.com", "pencil")
    proc = run(data, "user", "role", "alice@example.com", "admin", check=1)
    assert "give --prosody 0.12 or --prosody 13" in error_line(proc)
    assert not (data / "example%2ecom" / "roles").exists()


def test_role_012(data):
    add(data, "alice@example.com", "pencil")
    run(data, "user", "role", "alice@example.com", "admin", "--prosody", "0.12")
    assert DataManager(data).load("alice", HOST, "roles") == {"prosody:admin": True}
    add(data, "bob@example.com", "pencil")
    run(data, "user", "role", "bob@example.com", "example:role")   # 0.12 told from 'roles'
    assert DataManager(data).load("bob", HOST, "roles") == {"example:role": True}
    assert run(data, "user", "role", "alice@example.com").stdout == b"prosody:admin\n"
    run(data, "user", "role", "alice@example.com", "none")
    assert not (data / "example%2ecom" / "roles" / "alice.dat").exists()
    assert run(data, "user", "role", "alice@example.com").stdout == b""
    proc = run(data, "user", "role", "alice@example.com", "superuser", check=1)
    assert "unknown role 'superuser'" in error_line(proc)


def test_role_13(data):
    add(data, "alice@example.com", "pencil", "--prosody", "13")   # created/updated: 13
    dm = DataManager(data)
    dm.store("alice", HOST, "account_roles", {"prosody:admin": True, "example:x": True})
    run(data, "user", "role", "alice@example.com", "prosody:admin")
    assert dm.load("alice", HOST, "account_roles") == {"_default": "prosody:admin",
                                                       "example:x": True}
    assert run(data, "user", "role", "alice@example.com").stdout == \
        b"prosody:admin\nexample:x\n"
    run(data, "user", "role", "alice@example.com", "prosody:registered")
    assert dm.load("alice", HOST, "account_roles") == {"example:x": True}
    assert run(data, "user", "role", "alice@example.com").stdout == \
        b"prosody:registered\nexample:x\n"
    proc = run(data, "user", "role", "alice@example.com", "example:x", check=1)
    assert "unknown role 'example:x'" in error_line(proc)


def test_role_13_custom_roles_and_default_from_config(data, tmp_path):
    add(data, "alice@example.com", "pencil", "--prosody", "13")
    config = tmp_path / "prosody.cfg.lua"
    config.write_text(f'data_path = "{data}"\ndefault_user_role = "prosody:member"\n'
                      'custom_roles = { { name = "example:helper" } }\n'
                      'VirtualHost "example.com"\n')
    run(None, "--prosody-config", config, "user", "role", "alice@example.com", "example:helper")
    assert DataManager(data).load("alice", HOST, "account_roles") == \
        {"_default": "example:helper"}
    run(None, "--prosody-config", config, "user", "role", "alice@example.com", "prosody:member")
    assert DataManager(data).load("alice", HOST, "account_roles") is None


def test_role_of_a_missing_account(data):
    proc = run(data, "user", "role", "bob@example.com", "admin", "--prosody", "0.12", check=1)
    assert error_line(proc) == "prosody-store: no account bob@example.com"
    assert not (data / "example%2ecom" / "roles").exists()


# --- disable / enable ----------------------------------------------------------

def test_disable_and_enable_13(data):
    add(data, "alice@example.com", "pencil", "--prosody", "13")
    run(data, "user", "disable", "alice@example.com")
    record = account(data)
    assert record["disabled"] is True and not verify_password(record, "pencil")
    run(data, "user", "enable", "alice@example.com")
    record = account(data)
    assert "disabled" not in record and verify_password(record, "pencil")


def test_disable_refuses_012_data(data):
    add(data, "alice@example.com", "pencil")
    DataManager(data).store("alice", HOST, "roles", {"prosody:admin": True})
    before = tree(data)
    proc = run(data, "user", "disable", "alice@example.com", check=1)
    assert "Prosody 0.12 has no disabled accounts" in error_line(proc)
    assert tree(data) == before
    run(data, "user", "disable", "alice@example.com", "--prosody", "13")
    assert account(data)["disabled"] is True


def test_disable_missing_account(data):
    proc = run(data, "user", "disable", "bob@example.com", "--prosody", "13", check=1)
    assert error_line(proc) == "prosody-store: no account bob@example.com"


# --- against real Prosody ------------------------------------------------------

def prosody(oracle, command: str, data: Path, user: str, password: str = "",
            module: str = "mod_auth_internal_hashed", host: str = HOST, **options) -> str:
    """Ask Prosody's own module about ``user`` in the data directory ``data``."""
    return oracle.call(f"account_oracle.{command}", json.dumps({
        "path": str(data), "host": host.encode().hex(), "user": user.encode().hex(),
        "password": password.encode().hex(), "module": module, "options": options,
    })).decode()


def logs_in(oracle, data, user, password, **kw) -> bool:
    answer = prosody(oracle, "test_password", data, user, password, **kw)
    assert answer in ("true", "false")
    return answer == "true"


@pytest.mark.interop
@pytest.mark.parametrize("args, module, options", [
    ([], "mod_auth_internal_hashed", {}),
    (["--hash", "SHA-256"], "mod_auth_internal_hashed", {"password_hash": "SHA-256"}),
    (["--plain"], "mod_auth_internal_plain", {}),
    (["--plain"], "mod_auth_internal_hashed", {}),
])
def test_prosody_logs_in_to_accounts_we_add(oracle, data, args, module, options):
    password = "p\"a\\ss w\u00f6rd'"
    add(data, "J\u00fcrgen@example.com", password, *args)
    user = "j\u00fcrgen"
    assert logs_in(oracle, data, user, password, module=module, **options)
    assert logs_in(oracle, data, user, "p\"a\\ss w\u00d6rd'", module=module, **options) is False
    assert logs_in(oracle, data, "nobody", password, module=module, **options) is False
    assert prosody(oracle, "user_exists", data, user, module=module) == "true"
    assert verify_password(account(data, user), password)


@pytest.mark.interop
def test_sha256_keys_do_not_log_in_where_prosody_uses_sha1(oracle, data):
    """Why the hash follows the host: keys of the other hash never verify."""
    add(data, "alice@example.com", "pencil", "--hash", "SHA-256")
    assert not logs_in(oracle, data, "alice", "pencil")
    assert logs_in(oracle, data, "alice", "pencil", password_hash="SHA-256")


@pytest.mark.interop
@pytest.mark.parametrize("module", ["mod_auth_internal_hashed", "mod_auth_internal_plain"])
def test_prosody_accounts_we_change(oracle, data, module):
    """Prosody's create_user makes the account, we change its password: Prosody agrees."""
    prosody(oracle, "create_user", data, "alice", "old password", module=module)
    assert verify_password(account(data), "old password")
    run(data, "user", "passwd", "alice@example.com", input="new password\n")
    assert ("password" in account(data)) == (module == "mod_auth_internal_plain")
    assert logs_in(oracle, data, "alice", "new password", module=module)
    assert not logs_in(oracle, data, "alice", "old password", module=module)


@pytest.mark.interop
def test_prosody_012_ignores_disabled(oracle, data):
    """Why disable refuses 0.12's data: 0.12 still logs a 'disabled' account in."""
    add(data, "alice@example.com", "pencil")
    run(data, "user", "disable", "alice@example.com", "--prosody", "13")
    assert account(data)["disabled"] is True and not verify_password(account(data), "pencil")
    assert logs_in(oracle, data, "alice", "pencil")


@pytest.fixture
def prosodyctl(tmp_path):
    if PROSODYCTL is None:
        skip_or_fail("prosodyctl is not installed (apt-get install prosody)")
    if os.geteuid() != 0:
        skip_or_fail("prosodyctl needs root here (it drops to the prosody user)")
    work = tmp_path / "prosodyctl"   # its own data directory, apart from ``data``
    work.mkdir()
    return work


def prosodyctl_data(tmp: Path, oracle) -> Path:
    """alice (by prosodyctl register) with a roster and an offline list written by
    Prosody's util.datamanager; bob the same; the data directory."""
    prosodyctl_account(tmp, "alice", HOST, "first password")
    data = tmp / "data"
    for user in ("alice", "bob"):
        base = {"path": str(data), "user": user.encode().hex(), "host": HOST.encode().hex()}
        oracle.call("dm_oracle.store", json.dumps({
            **base, "store": b"roster".hex(), "value": to_tagged({"carol@example.com": {}})}))
        oracle.call("dm_oracle.list_append", json.dumps({
            **base, "store": b"offline".hex(), "items": [to_tagged({"n": 1})]}))
    return data


def prosodyctl_run(tmp: Path, *args: str) -> None:
    proc = subprocess.run([PROSODYCTL, "--config", str(tmp / "prosody.cfg.lua"), *args],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


@pytest.mark.interop
def test_passwd_of_a_prosodyctl_account(oracle, prosodyctl):
    data = prosodyctl_data(prosodyctl, oracle)
    assert logs_in(oracle, data, "alice", "first password")
    run(data, "user", "passwd", "alice@example.com", input="second password\n")
    assert logs_in(oracle, data, "alice", "second password")
    assert not logs_in(oracle, data, "alice", "first password")
    assert verify_password(account(data), "second password")


@pytest.mark.interop
def test_delete_removes_what_prosodyctl_deluser_removes(oracle, prosodyctl, tmp_path):
    data = prosodyctl_data(prosodyctl, oracle)
    twin = tmp_path / "twin"
    shutil.copytree(data, twin)
    prosodyctl_run(prosodyctl, "deluser", "alice@example.com")    # on data
    theirs = tree(data)
    shutil.rmtree(data)
    twin.rename(data)
    assert user_stores(data) == ["accounts/alice.dat", "offline/alice.list",
                                 "roster/alice.dat"]
    run(data, "user", "delete", "alice@example.com")
    assert tree(data) == theirs
    assert user_stores(data) == [] and user_stores(data, "bob") == [
        "offline/bob.list", "roster/bob.dat"]
    assert prosody(oracle, "user_exists", data, "alice") == "false"


@pytest.mark.interop
def test_delete_keep_data_keeps_prosodys_stores(oracle, prosodyctl):
    data = prosodyctl_data(prosodyctl, oracle)
    run(data, "user", "delete", "alice@example.com", "--keep-data")
    assert prosody(oracle, "user_exists", data, "alice") == "false"
    assert not logs_in(oracle, data, "alice", "first password")
    assert user_stores(data) == ["offline/alice.list", "roster/alice.dat"]
    assert loads((data / "example%2ecom" / "roster" / "alice.dat").read_bytes()) == \
        {"carol@example.com": {}}


@pytest.mark.interop
def test_prosodyctl_and_we_name_accounts_alike(prosodyctl, data):
    prosodyctl_account(prosodyctl, "J\u00dcRGEN", "Example.COM", "pencil")
    theirs = sorted(p.relative_to(prosodyctl / "data")
                    for p in (prosodyctl / "data").rglob("*.dat"))
    add(data, "J\u00dcRGEN@Example.COM", "pencil")
    ours = sorted(p.relative_to(data) for p in data.rglob("*.dat"))
    assert ours == theirs == [Path("example%2ecom/accounts/j%c3%bcrgen.dat")]


@pytest.mark.interop
@pytest.mark.parametrize("role, expected", [("admin", ["prosody:admin"]),
                                            ("example:role", ["example:role"]),
                                            ("none", None)])
def test_prosody_012_reads_the_role_we_set(oracle, data, role, expected):
    add(data, "alice@example.com", "pencil")
    run(data, "user", "role", "alice@example.com", "admin", "--prosody", "0.12")
    run(data, "user", "role", "alice@example.com", role, "--prosody", "0.12")
    answer = json.loads(prosody(oracle, "get_user_roles", data, "alice"))
    assert (answer or None) == expected
    assert json.loads(prosody(oracle, "get_user_roles", data, "bob")) is None


# --- any input -----------------------------------------------------------------

NAME_PART = st.one_of(st.sampled_from(["alice", "Alice", "bob", "\u00ad", "a b", "j\u00fcrgen",
                                       "\u0221", "", "."]),
                      st.text(max_size=6))
WELL_FORMED = st.builds(lambda u: f"{u}@example.com", st.sampled_from(["carol", "alice"]))
JID = st.one_of(WELL_FORMED, WELL_FORMED, WELL_FORMED, WELL_FORMED,
                st.builds(lambda u, h: f"{u}@{h}", NAME_PART,
                          st.sampled_from(["example.com", "Example.COM.", "new.example", "."])),
                st.builds(lambda u, h, r: f"{u}@{h}/{r}", NAME_PART, st.just("example.com"),
                          st.text(max_size=3)),
                st.text(max_size=10))
PASSWORD_INPUT = st.one_of(st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass")),
                           st.binary(max_size=10))


EXTRAS = {
    "add": [[], ["--plain"], ["--hash", "SHA-256"], ["--prosody", "13"], ["--create-host"],
            ["--iterations", "1"]],
    "passwd": [[], ["--plain"], ["--hash", "SHA-1"], ["--prosody", "13"]],
    "delete": [[], ["--keep-data"]],
    "role": [[], ["admin"], ["bogus"], ["none", "--prosody", "0.12"],
             ["prosody:admin", "--prosody", "13"]],
    "disable": [[], ["--prosody", "13"]],
    "enable": [[], ["--prosody", "13"]],
    "list": [[], ["--json"]],
}
STRAY = [["--keep-data"], ["--plain", "--hash", "SHA-1"], ["--iterations", "0"], ["x", "y"]]


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(EXTRAS)), jid=JID, stdin=PASSWORD_INPUT, data=st.data())
def test_any_input_gives_a_verdict_in_one_line(tmp_path, action, jid, stdin, data):
    """No traceback; an error is one line with exit 1 or 2; an account we add logs in."""
    extra = data.draw(st.sampled_from(EXTRAS[action] * 4 + STRAY))
    path = tmp_path / "fuzz"
    shutil.rmtree(path, ignore_errors=True)
    (path / "example%2ecom").mkdir(parents=True)
    DataManager(path).store("alice", HOST, "accounts", {"password": "pencil"})
    argv = ["--data-path", str(path), "user", action, jid, *extra]
    status, _out, err = run_main(argv, stdin)
    event(f"{action} exit {status}")
    assert "Traceback" not in err
    if status == 0 and action == "add" and "--plain" not in extra:
        [added] = [p for p in path.rglob("accounts/*.dat") if "alice" not in p.name or
                   "example%2ecom" not in str(p)]
        password = stdin.split(b"\n", 1)[0].rstrip(b"\r").decode()
        record = loads(added.read_bytes())
        assert verify_password(record, password)
    lines = err.splitlines()
    assert all(line.startswith("prosody-store") for line in lines), err
    errors = [line for line in lines if not line.startswith("prosody-store: warning: ")]
    if status:
        assert status in (1, 2) and len(errors) == 1, err
    else:
        assert errors == [], err


def test_help_of_every_action_has_examples():
    assert "prosody-store user add" in run(None, "user", "--help").stdout.decode()
    for action in ("list", "add", "passwd", "delete", "role", "disable", "enable"):
        text = run(None, "user", action, "--help").stdout.decode()
        assert f"examples:\n  prosody-store user {action}" in text, action
