"""Crash safety (writers killed with SIGKILL) and concurrent writers, on real files."""
from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from prosody_store import lidx
from prosody_store.datamanager import TEMP_PREFIX, DataManager

ROOT = Path(__file__).resolve().parent.parent
KILLS = 200
USERS = ["alice", "b\u00f6b", "carol"]

# Values are a function of a generation number, so a value read back can be
# checked to be exactly one that a writer produced.
#
# Starting Python costs far more than a kill cycle, so one "fork server"
# subprocess imports the store once and forks a fresh writer child for every
# kill: the test reads the child's pid, lets it write for 5-50 ms, SIGKILLs
# it, and the server reports the child's wait status.
WRITER = r"""
import os, random, sys
sys.path.insert(0, sys.argv[1])
from prosody_store.datamanager import DataManager

def value(g):
    return {"gen": g, "pad": "x" * (g * 7919 % 30000), "tail": ["t", g]}

def item(g):
    return {"gen": g, "pad": "y" * (g * 31 % 4000), "tail": g}

def write_forever(seed):
    dm = DataManager(sys.argv[2])
    rng = random.Random(seed)
    users = USERS_LIST
    g = seed * 1000000
    for _ in range(100000):  # bounded; the parent kills us long before
        g += 1
        user = rng.choice(users)
        op = rng.random()
        if op < 0.35:
            dm.store(user, "example.com", "kv", value(g))
        elif op < 0.75:
            dm.list_append(user, "example.com", "lst", item(g))
        elif op < 0.9:
            dm.list_store(user, "example.com", "lst",
                          [item(g + k) for k in range(rng.randint(1, 30))])
            g += 30
        else:
            dm.list_shift(user, "example.com", "lst", rng.randint(1, 5))

for line in sys.stdin:  # one request per kill; ends when the test closes stdin
    seed = int(line)
    pid = os.fork()
    if pid == 0:
        try:
            write_forever(seed)
        finally:
            os._exit(3)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
""".replace("USERS_LIST", repr(USERS))


def _valid_value(v) -> bool:
    g = v["gen"]
    return v == {"gen": g, "pad": "x" * (g * 7919 % 30000), "tail": ["t", g]}


def _valid_item(v) -> bool:
    g = v["gen"]
    return v == {"gen": g, "pad": "y" * (g * 31 % 4000), "tail": g}


def check_directory(root: Path) -> int:
    """Everything on disk parses and holds only values a writer wrote; returns debris count."""
    dm = DataManager(root, write_index=False)
    for user in dm.users("example.com", "kv"):
        assert _valid_value(dm.load(user, "example.com", "kv"))
    for user in dm.users("example.com", "lst", "list"):
        items = dm.list_load(user, "example.com", "lst")
        assert items and all(_valid_item(i) for i in items)
        data = Path(dm.getpath(user, "example.com", "lst", "list")).read_bytes()
        index_path = dm.getpath(user, "example.com", "lst", "lidx")
        trusted = lidx.read_index(index_path, len(data))
        if trusted is not None:  # an index that passes validation must be right
            assert list(trusted) == list(lidx.scan_offsets(data))
        with dm.list_open(user, "example.com", "lst") as view:
            assert len(view) == len(items) and view[-1] == items[-1]
    return sum(1 for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX))


def test_writers_killed_at_random_moments(tmp_path):
    root = tmp_path / "data"
    rng = random.Random(1234)
    deadline = time.monotonic() + 120
    debris = 0
    server = subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def reply() -> int:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready, "fork server did not answer"
        return int(server.stdout.readline())

    try:
        for n in range(KILLS):
            assert time.monotonic() < deadline, f"only {n} kills in time"
            server.stdin.write(b"%d\n" % (n + 1))
            server.stdin.flush()
            pid = reply()
            time.sleep(rng.uniform(0.005, 0.05))
            os.kill(pid, signal.SIGKILL)
            status = reply()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                "the writer stopped on its own"
            if n % 10 == 9 or n == KILLS - 1:
                debris = check_directory(root)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
    assert server.returncode == 0
    dm = DataManager(root)
    assert set(dm.users("example.com", "kv")) <= set(USERS)
    assert set(dm.users("example.com", "kv")), "no keyval was ever completed"
    assert set(dm.users("example.com", "lst", "list")), "no list was ever written"
    removed = dm.remove_temp_files(older_than=0)
    assert len(removed) == debris
    assert check_directory(root) == 0


APPENDER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from prosody_store.datamanager import DataManager
dm = DataManager(sys.argv[2], durable=False)
w = int(sys.argv[3])
go = sys.argv[4]
for _ in range(3000):  # wait for the start signal (bounded)
    if os.path.exists(go):
        break
    time.sleep(0.005)
for i in range(500):
    dm.list_append("shared", "example.com", "archive", {"w": w, "i": i, "pad": "z" * (i % 97)})
for i in range(100):
    dm.update("shared", "example.com", "counter", lambda v: {"n": (v or {"n": 0})["n"] + 1})
"""


def test_concurrent_appenders(tmp_path, oracle):
    root = tmp_path / "data"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(ROOT), str(root), str(w),
                               str(go)]) for w in range(4)]
    time.sleep(0.3)
    go.touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    dm = DataManager(root)
    items = dm.list_load("shared", "example.com", "archive")
    assert len(items) == 2000
    seen = [(it["w"], it["i"]) for it in items]
    assert sorted(seen) == [(w, i) for w in range(4) for i in range(500)]  # whole, once each
    for w in range(4):
        assert [i for ww, i in seen if ww == w] == list(range(500))  # each writer in order
    assert all(it["pad"] == "z" * (it["i"] % 97) for it in items)
    assert dm.load("shared", "example.com", "counter") == {"n": 400}
    # The index kept by the appenders is exactly Prosody 13's.
    data = Path(dm.getpath("shared", "example.com", "archive", "list")).read_bytes()
    index = Path(dm.getpath("shared", "example.com", "archive", "lidx")).read_bytes()
    assert index == lidx.encode_index(lidx.scan_offsets(data))
    # Real Prosody reads the same items.
    payload = json.dumps({"path": str(root), "user": b"shared".hex(),
                          "host": b"example.com".hex(), "store": b"archive".hex()})
    lua_items = json.loads(oracle.call("dm_oracle.list_load", payload))
    assert len(lua_items) == 2000
