"""Benchmark: ``prosody-store migrate --to`` against ``prosody-migrator``.

Usage: ``python3 bench/migrate.py [--size 200] [--no-migrator] [--no-postgresql]``

Generates (once, cached in ``bench/out/migrate-data-<size>MB``) a data directory
of about ``--size`` megabytes shaped like a real server's: per user an
account, a roster, a vCard and a message archive (archives are most of the
bytes, and a few users have much larger archives than the rest).  Then, in one
run, migrates it into SQLite and into PostgreSQL (a throwaway server with
``fsync=off``, tests/pgcluster.py) with ``prosody-store migrate --to`` and with
Debian's ``prosody-migrator`` (Prosody 0.12.3, LuaDBI), and prints rows per
second and the peak memory (max RSS) of each, next to the size of the largest
single store file.  The SQLite files are written to ``/dev/shm`` when it exists,
for both tools, so the disk's fsync speed does not decide the result.

Each tool runs in a child process started through ``/bin/sh`` (Linux carries a
parent's peak RSS into ``ru_maxrss`` across fork and exec), and its peak RSS is
read from ``wait4``.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prosody_store.datamanager import DataManager  # noqa: E402
from prosody_store.serialization import dump_item, dumps  # noqa: E402
from prosody_store.sql import format_datetime, scan  # noqa: E402
from tests import pgcluster  # noqa: E402

OUT = ROOT / "bench" / "out"
HOSTS = ["example.com", "chat.example.org"]
WORDS = ("the quick brown fox jumps over lazy dog tea party hatter rabbit queen "
         "cards croquet \u00e9t\u00e9 caf\u00e9 \u2615 \U0001F600 & < > ' \"").split()


def _message(rng: random.Random, user: str, host: str, peer: str, i: int, when: int) -> dict:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
    outgoing = rng.random() < 0.5
    frm, to = (f"{user}@{host}/laptop", peer) if outgoing else (f"{peer}/phone", f"{user}@{host}")
    mid = f"{user}-{i:08d}"
    return {
        "name": "message",
        "attr": {"xmlns": "jabber:client", "type": "chat", "from": frm, "to": to, "id": mid,
                 "stamp": format_datetime(when)},
        1: {"name": "body", "attr": {}, 1: body},
        2: {"name": "origin-id", "attr": {"xmlns": "urn:xmpp:sid:0", "id": mid}},
        3: {"name": "active", "attr": {"xmlns": "http://jabber.org/protocol/chatstates"}},
        "key": f"{rng.getrandbits(64):016x}-{i}",
        "when": when,
        "with": peer + "<chat",
    }


def generate(path: Path, size_mb: int, seed: int = 20240601) -> None:
    """A data directory of about ``size_mb`` MB; written into a temp dir, then renamed."""
    rng = random.Random(seed)
    tmp = Path(str(path) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dm = DataManager(tmp, durable=False)
    target = size_mb * 1_000_000
    written = 0
    u = 0
    while written < target:
        host = HOSTS[u % len(HOSTS)]
        user = f"user{u:05d}"
        peers = [f"friend{rng.randint(0, 9999)}@{rng.choice(HOSTS)}" for _ in range(rng.randint(2, 30))]
        dm.store(user, host, "accounts", {"salt": f"{rng.getrandbits(128):032x}",
                                          "iteration_count": 10000,
                                          "stored_key": f"{rng.getrandbits(160):040x}",
                                          "server_key": f"{rng.getrandbits(160):040x}"})
        roster = {False: {"version": rng.randint(1, 50), "pending": {}}}
        for p in peers:
            roster[p] = {"subscription": rng.choice(["both", "to", "from"]),
                         "groups": {"Friends": True} if rng.random() < 0.5 else {},
                         "name": p.split("@")[0].title()}
        dm.store(user, host, "roster", roster)
        dm.store(user, host, "vcard", {"name": "vCard", "attr": {"xmlns": "vcard-temp"},
                                       1: {"name": "FN", "attr": {}, 1: user.title()}})
        # Mostly small archives, a few big ones (the largest file bounds memory).
        n = rng.randint(1000, 30000) if u % 50 == 0 else rng.randint(20, 800)
        when = 1600000000 + rng.randint(0, 10_000_000)
        lines = []
        for i in range(n):
            when += rng.randint(1, 3600)
            lines.append(dump_item(_message(rng, user, host, rng.choice(peers), i, when)))
        blob = b"".join(lines)
        directory = tmp / DataManager(tmp).getpath(user, host, "archive", "list")[len(str(tmp)) + 1:]
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.write_bytes(blob)
        written += len(blob) + 600 + 80 * len(peers)
        u += 1
    os.rename(tmp, path)


def dir_stats(path: Path) -> tuple[int, int, int]:
    total = largest = files = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            s = os.path.getsize(os.path.join(root, n))
            total += s
            largest = max(largest, s)
            files += 1
    return total, largest, files


def run(cmd: list[str], cwd: str | None = None, env: dict | None = None) -> tuple[float, int, str]:
    """Run through /bin/sh; (seconds, peak RSS in bytes, stderr tail)."""
    shell = " ".join(_quote(c) for c in cmd)
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", "-c", shell], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-1500:].decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {tail}")
    return seconds, usage.ru_maxrss * 1024, tail


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def count_rows(url: str) -> int:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite://"):])
    else:
        import psycopg
        conn = psycopg.connect(url)
    try:
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("prosody", "prosodyarchive"))
    finally:
        conn.close()


def migrator_config(work: Path, data: Path, url: str, cluster) -> Path:
    stores: dict = {}
    for e in scan(DataManager(data, write_index=False)):
        kv, ar = stores.setdefault(e.host, (set(), set()))
        (kv if e.kind == "keyval" else ar).add(e.store)
    hosts = "; ".join(
        f"[{dumps(h)}] = {{ {', '.join([dumps(s) for s in sorted(kv)] + [dumps(s + '-archive') for s in sorted(ar)])} }}"
        for h, (kv, ar) in stores.items())
    if url.startswith("sqlite"):
        out = f'type = "sql"; driver = "SQLite3"; database = {dumps(url[len("sqlite://"):])};'
    else:
        p = cluster.params(url)
        out = (f'type = "sql"; driver = "PostgreSQL"; database = {dumps(p["database"])}; '
               f'host = {dumps(p["host"])}; port = {p["port"]}; username = {dumps(p["username"])};')
    cfg = work / "migrator.cfg.lua"
    cfg.write_text(f"input {{ type = \"internal\"; path = {dumps(str(data))}; hosts = {{ {hosts} }}; }}\n"
                   f"output {{ {out} }}\n")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=200, help="data directory size in MB (default 200)")
    ap.add_argument("--no-migrator", action="store_true", help="skip prosody-migrator")
    ap.add_argument("--no-postgresql", action="store_true", help="skip PostgreSQL")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"migrate-data-{args.size}MB"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        t = time.monotonic()
        generate(data, args.size)
        print(f"  done in {time.monotonic() - t:.0f}s", flush=True)
    total, largest, files = dir_stats(data)
    print(f"data: {total / 1e6:.0f} MB in {files} files; largest store file {largest / 1e6:.1f} MB")

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="prosody-store-bench-", dir=shm))
    os.chmod(work, 0o777)
    # prosody-migrator switches to the prosody user when run as root: it must read the data.
    for root, dirs, names in os.walk(data):
        os.chmod(root, 0o755)
    cluster = None
    if not args.no_postgresql:
        reason = pgcluster.missing()
        if reason:
            print(f"PostgreSQL skipped: {reason}")
        else:
            cluster = pgcluster.Cluster()
    migrator = shutil.which("prosody-migrator") if not args.no_migrator else None
    results = []
    try:
        targets = [("SQLite", lambda name: f"sqlite://{work}/{name}.sqlite")]
        if cluster is not None:
            targets.append(("PostgreSQL", lambda name: cluster.new_database()))
        for label, make_url in targets:
            url = make_url("ours")
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            sec, rss, _ = run([sys.executable, "-m", "prosody_store", "--data-path",
                               str(data), "migrate", "--to", url, "--no-progress"], env=env)
            rows = count_rows(url)
            results.append((label, "prosody-store migrate", rows, sec, rss))
            print(f"  {label:10s} prosody-store: {rows} rows in {sec:.1f}s", flush=True)
            if migrator:
                url2 = make_url("theirs")
                cfg = migrator_config(work, data, url2, cluster)
                os.chmod(cfg, 0o644)
                sec2, rss2, _ = run([migrator, f"--config={cfg}", "input", "output"], cwd=str(work))
                rows2 = count_rows(url2)
                results.append((label, "prosody-migrator 0.12.3", rows2, sec2, rss2))
                print(f"  {label:10s} prosody-migrator: {rows2} rows in {sec2:.1f}s", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"input: {total / 1e6:.0f} MB, {files} files, largest store file {largest / 1e6:.1f} MB")
    print(f"{'target':11s} {'tool':24s} {'rows':>9s} {'seconds':>8s} {'rows/s':>9s} {'MB/s':>6s} "
          f"{'peak RSS':>9s}")
    for label, tool, rows, sec, rss in results:
        print(f"{label:11s} {tool:24s} {rows:9d} {sec:8.1f} {rows / sec:9.0f} "
              f"{total / 1e6 / sec:6.1f} {rss / 1e6:7.0f} MB")
    by = {(r[0], r[1].split()[0]): r for r in results}
    for label in ("SQLite", "PostgreSQL"):
        ours, theirs = by.get((label, "prosody-store")), by.get((label, "prosody-migrator"))
        if ours and theirs:
            print(f"{label}: prosody-store is {theirs[3] / ours[3]:.1f}x as fast as "
                  f"prosody-migrator; peak RSS {ours[4] / 1e6:.0f} MB vs {theirs[4] / 1e6:.0f} MB "
                  f"(largest store file {largest / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
