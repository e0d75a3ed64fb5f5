"""Requests answered in waitress's event loop thread (wsgi_app.in_loop), over HTTP.

``prosody-store serve`` offers each GET or HEAD without a body to the application in
the loop thread first; it answers there only from memory (a cached login and a cached
body) and hands everything else to a worker thread.  These tests run the real server
and check that such answers do not wait for busy workers, that declined requests are
still answered (once, in order, logged and counted once), and that nothing the caches
must not serve is served from the loop.
"""
from __future__ import annotations

import socket
import threading
import time

from prosody_store import DataManager
from prosody_store.accounts import hash_password
from tests.live_server import LiveServer, basic, demo_auth

# A failed login costs what a login at --iterations costs: this many PBKDF2-SHA-1
# rounds keep the only worker thread busy for a second or more.
SLOW_ITERATIONS = 10_000_000


def test_cached_answers_do_not_wait_for_a_busy_worker(demo_data):
    """With one worker thread busy on a failed login, a GET whose login and body are
    in memory is answered at once, from the loop; a GET that needs a file waits."""
    with LiveServer(demo_data, "--threads", "1", "--iterations", str(SLOW_ITERATIONS)) as server:
        alice = demo_auth("alice")
        first = server.request("GET", "/data/roster", headers=alice)
        assert first[0] == 200  # alice's login and roster body are now cached

        slow: list[tuple[float, int]] = []

        def failed_login() -> None:
            status = server.request("GET", "/data/roster", headers={
                "Authorization": basic("bob@localhost", "wrong")})[0]
            slow.append((time.monotonic(), status))

        busy = threading.Thread(target=failed_login)
        busy.start()
        try:
            time.sleep(0.3)  # the failed login reaches the worker and derives its keys
            answered = []
            for _ in range(20):
                response = server.request("GET", "/data/roster", headers=alice, timeout=30)
                answered.append(time.monotonic())
                assert response[0] == 200 and response[2] == first[2]
            assert busy.is_alive(), "the failed login ended before the cached GETs: too fast to tell"
            # A store whose body is not cached needs the worker: it is answered after.
            vcard = server.request("GET", "/data/vcard", headers=alice, timeout=60)
            assert vcard[0] == 200
        finally:
            busy.join(timeout=120)
        assert slow and slow[0][1] == 401
        assert max(answered) < slow[0][0]


def read_responses(sock: socket.socket, methods: list[str],
                   timeout: float = 30) -> list[tuple[int, bytes]]:
    """The responses to requests of ``methods`` sent on ``sock``, each with a
    Content-Length (a HEAD's without its body): (status, body)."""
    sock.settimeout(timeout)
    data = b""
    responses: list[tuple[int, bytes]] = []
    while len(responses) < len(methods):
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in head[1:])}
            length = 0 if methods[len(responses)] == "HEAD" else int(headers["content-length"])
            if len(data) >= head_end + 4 + length:
                responses.append((int(head[0].split()[1]), data[head_end + 4:head_end + 4 + length]))
                data = data[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(responses)} responses"
        data += chunk
    return responses


def raw_request(method: str, path: str, auth: str, body: bytes = b"",
                extra: str = "") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
            f"{extra}")
    if body or method in ("PUT", "POST"):
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_pipelined_requests_are_answered_once_each_in_order(demo_data):
    """Requests sent together, cached and not, reads and writes, each answered once and
    in the order sent; the write is seen by the read after it."""
    with LiveServer(demo_data) as server:
        alice = demo_auth("alice")["Authorization"]
        roster = server.request("GET", "/data/roster", headers={"Authorization": alice})[2]
        sent = [("GET", "/data/roster", b""), ("GET", "/data/roster", b""),
                ("PUT", "/data/settings", b'{"theme":"dark"}'), ("GET", "/data/settings", b""),
                ("HEAD", "/data/roster", b""), ("GET", "/data/roster", b"")]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"".join(raw_request(m, p, alice, b) for m, p, b in sent))
            answers = read_responses(sock, [m for m, _, _ in sent])
        assert answers == [(200, roster), (200, roster), (201, answers[2][1]),
                           (200, b'{"theme":"dark"}'), (200, b""), (200, roster)]
        # The first GET, then the six sent together: one line each, written shortly
        # after each response (wsgi_app.logs.AccessLog); none more.
        deadline = time.monotonic() + 10
        while server.log().count(" wsgi_app.access: ") < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        lines = [line for line in server.log().splitlines() if " wsgi_app.access: " in line]
    assert len(lines) == 7, lines
    assert [line.split('"')[1].split()[0] for line in lines[1:]] == [
        "GET", "GET", "PUT", "GET", "HEAD", "GET"]


def test_head_and_get_with_a_body(demo_data):
    with LiveServer(demo_data) as server:
        alice = demo_auth("alice")
        status, headers, body = server.request("GET", "/data/roster", headers=alice)
        assert status == 200
        status, head_headers, head_body = server.request("HEAD", "/data/roster", headers=alice)
        assert status == 200 and head_body == b""
        assert head_headers["content-length"] == str(len(body))
        assert head_headers["etag"] == headers["etag"]
        # A GET with a body is never offered in the loop; the worker ignores the body.
        status, _, got = server.request("GET", "/data/roster", b"ignored", headers=alice)
        assert (status, got) == (200, body)


def test_nothing_stale_is_served_from_the_loop(demo_data):
    """A cached login whose account file changed, and a cached body whose store changed,
    are not served: the loop declines both, and the worker answers from the files."""
    with LiveServer(demo_data) as server:
        alice = demo_auth("alice")
        assert server.request("GET", "/data/roster", headers=alice)[0] == 200
        assert server.request("GET", "/data/roster", headers=alice)[0] == 200
        dm = DataManager(demo_data)
        dm.store("alice", "localhost", "roster", {"carol@localhost": {"subscription": "both"}})
        status, _, body = server.request("GET", "/data/roster", headers=alice)
        assert (status, body) == (200, b'{"carol@localhost":{"subscription":"both"}}')

        record = dm.load("alice", "localhost", "accounts")
        record.update(hash_password("new password", iterations=4096))
        dm.store("alice", "localhost", "accounts", record)
        assert server.request("GET", "/data/roster", headers=alice)[0] == 401
        new = {"Authorization": basic("alice@localhost", "new password")}
        assert server.request("GET", "/data/roster", headers=new)[0] == 200
        assert server.request("GET", "/data/roster", headers=new)[0] == 200

        # Removing the account ends the cached login at once.
        dm.store("alice", "localhost", "accounts", None)
        assert server.request("GET", "/data/roster", headers=new)[0] == 401


def test_rights_hold_with_cached_logins(demo_data):
    """A cached login asking for another user's store (never answered in the loop: the
    rights may read role stores) or for its own protected store gets what a worker
    decides, request after request."""
    with LiveServer(demo_data) as server:
        bob = demo_auth("bob")
        admin = demo_auth("admin")
        # The admin caches alice's roster body; bob's login is cached by his own GET.
        assert server.request("GET", "/data/localhost/alice/roster", headers=admin)[0] == 200
        assert server.request("GET", "/data/roster", headers=bob)[0] == 200
        for _ in range(2):
            status, _, body = server.request("GET", "/data/localhost/alice/roster", headers=bob)
            assert status == 403 and b"subscription" not in body, body
            # His own account record: its public view only, never a key.
            status, _, body = server.request("GET", "/data/accounts", headers=bob)
            assert status == 200 and b"key" not in body and b"salt" not in body, body
            assert server.request("GET", "/data/localhost/alice/roster", headers=admin)[0] == 200
