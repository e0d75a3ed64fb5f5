"""Attacks on authentication, over the real server (waitress, and granian with 2 workers, on 127.0.0.1).

Bad credentials of every kind get 401 and nothing else; no account record
makes a login cost more than a normal one; an unknown user and a wrong
password cannot be told apart by the time they take.
"""
from __future__ import annotations

import concurrent.futures
import statistics
import time

import pytest

from prosody_store.accounts import hash_password
from prosody_store.datamanager import DataManager
from tests.live_server import SERVERS, LiveServer, basic, demo_auth, server_options

JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=SERVERS)
def server(demo_data, request):
    """The real service on ``demo_data`` under each server (admin@localhost is --admin)."""
    with LiveServer(demo_data, *server_options(request.param)) as live:
        yield live


def assert_401_only(status, headers, body):
    assert status == 401, (status, body)
    assert headers["www-authenticate"].startswith("Basic realm=")
    assert body.count(b"\n") == 1 and b"bad credentials" in body


@pytest.mark.parametrize("username", [
    "a" * 300 + "@localhost",              # a file name longer than the filesystem takes
    "alice@" + "a" * 300,                  # a host of 300 characters
    "alice@" + "a" * 2000,                 # longer than a JID part may be
    "alice@\u00ad",                        # a host that nameprep empties
    "\u00ad@localhost",                    # a user name that nodeprep empties
    "alice@local host",                    # a space in the host
    "@localhost", "alice@", "alice", "alice@localhost/res",
    "alice@nohost.example",                # a host not served
])
def test_bad_user_names_are_401(server, username):
    assert_401_only(*server.request("GET", "/data/roster",
                                    headers={"Authorization": basic(username, "wonderland")}))


def test_unreadable_account_file_is_401(server, demo_data):
    path = demo_data / "localhost" / "accounts" / "bob.dat"
    path.unlink()
    path.mkdir()  # not a file: reading it fails whoever the server runs as
    assert_401_only(*server.request("GET", "/data/roster", headers=demo_auth("bob")))
    assert "account of bob@localhost unreadable" in server.log()
    assert server.request("GET", "/data/roster", headers=demo_auth("alice"))[0] == 200


@pytest.mark.parametrize("count", [1e12, 2**31, 2**40, 0, -4096, 4096.5, "10000", True])
def test_iteration_counts_prosody_refuses_are_401(server, demo_data, count):
    record = hash_password("builder", iterations=4096)
    record["iteration_count"] = count
    DataManager(demo_data).store("bob", "localhost", "accounts", record)
    assert_401_only(*server.request("GET", "/data/roster", headers=demo_auth("bob")))


def test_an_expensive_account_record_costs_no_more_than_a_normal_login(server, demo_data):
    """bob's record asks for 3,000,000 PBKDF2 rounds (written by an admin, or by bob before
    the rights model): four requests naming bob with wrong passwords used to hold the
    workers ~10 s each while alice waited."""
    record = hash_password("builder", iterations=4096)
    record["iteration_count"] = 3_000_000
    DataManager(demo_data).store("bob", "localhost", "accounts", record)
    wrong = {"Authorization": basic("bob@localhost", "not-his")}
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        attacks = [pool.submit(server.request, "GET", "/data/roster", None, wrong, 120)
                   for _ in range(4)]
        time.sleep(0.2)
        start = time.monotonic()
        status, _, _ = server.request("GET", "/data/roster", headers=demo_auth("alice"))
        alice_waited = time.monotonic() - start
        for attack in attacks:
            assert attack.result()[0] == 401
    assert status == 200
    # 3,000,000 rounds take seconds on any machine; 10,000 a few milliseconds.
    assert alice_waited < 2.0, alice_waited
    # bob's own right password does not log in either (the record is refused), and
    # the server says why in its log.
    assert server.request("GET", "/data/roster", headers=demo_auth("bob"))[0] == 401
    assert "more PBKDF2 iterations" in server.log()


def test_the_limit_follows_the_configured_login_cost(demo_data, tmp_path):
    record = hash_password("builder", iterations=20000)
    DataManager(demo_data).store("bob", "localhost", "accounts", record)
    config = tmp_path / "prosody.cfg.lua"
    config.write_text(f'data_path = "{demo_data}"\ndefault_iteration_count = 20000\n'
                      'VirtualHost "localhost"\n')
    with LiveServer(demo_data, "--prosody-config", str(config)) as server:
        assert server.request("GET", "/data/roster", headers=demo_auth("bob"))[0] == 200
    with LiveServer(demo_data) as server:  # Prosody's default, 10,000
        assert server.request("GET", "/data/roster", headers=demo_auth("bob"))[0] == 401


def refusal_time(server, headers: dict[str, str]) -> float:
    """Seconds until a request with these (bad) credentials is refused."""
    start = time.perf_counter()
    status, _, _ = server.request("GET", "/data/roster", headers=headers)
    assert status == 401
    return time.perf_counter() - start


def refusal_medians(server, kinds: dict[str, dict[str, str]], rounds: int) -> dict[str, float]:
    """Median refusal time of each kind of request, the kinds interleaved round by round."""
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, headers in kinds.items():
            times[kind].append(refusal_time(server, headers))
    return {k: statistics.median(v) for k, v in times.items()}


def test_unknown_user_and_wrong_password_take_the_same_time(server, demo_data):
    """Before: unknown user 0.9 ms, an existing user with a wrong password 9-17 ms.

    Interleaved medians of 30; equal within a factor of two (the derivation,
    10,000 PBKDF2 rounds, is most of either).  A plain-password account is
    padded to the same cost.  Up to three attempts, so that a burst of load on
    a shared machine does not decide: the old code was 10x apart in every one.
    """
    DataManager(demo_data).store("pat", "localhost", "accounts", {"password": "plain-pw"})
    kinds = {
        "unknown user": {"Authorization": basic("nobody@localhost", "x")},
        "wrong password": {"Authorization": basic("alice@localhost", "x")},
        "plain account, wrong password": {"Authorization": basic("pat@localhost", "x")},
        "unknown host": {"Authorization": basic("alice@nohost.example", "x")},
    }
    attempts = []
    for _ in range(3):
        medians = refusal_medians(server, kinds, 30)
        reference = medians["wrong password"]
        attempts.append(medians)
        if all(0.5 < value / reference < 2.0 for value in medians.values()):
            return
    pytest.fail(f"refusal times differ by more than 2x in three attempts: {attempts}")


def test_no_credentials_get_nothing_but_401(server, demo_data):
    before = sorted(p.name for p in demo_data.rglob("*"))
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"):
        for path in ("/data/roster", "/data/localhost/alice/accounts", "/data/x/y/z/lua",
                     "/data/../../etc/passwd", "/data/accounts"):
            status, headers, body = server.request(method, path, b'{"a":1}', JSON)
            assert status == 401, (method, path, status)
            assert headers["www-authenticate"].startswith("Basic realm=")
    assert sorted(p.name for p in demo_data.rglob("*")) == before

