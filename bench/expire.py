#!/usr/bin/env python3
"""Benchmark: ``archive expire`` (prosody_store.archive.expire_list) against Prosody's own expiry.

Usage: ``python bench/expire.py [--mb 200] [--small-mb 50] [--rounds 5] [--drop 0.5]
[--no-full-reader]``

The archive is written by real Prosody: ``bench/codec.py``'s Lua generator,
run once by ``lua5.4`` with Prosody's ``util.serialization``, writes mod_mam
messages (key, when, with, the stanza; 8% long bodies, non-ASCII text) as
``datamanager.list_append`` does, and is cached under ``bench/out/`` (keyed by
its parameters and the generator's hash).  About ``--mb`` megabytes, plus a
``--small-mb`` one for the memory comparison.  Its ``when`` values rise by
about a minute per message; the cut-off is chosen so that ``--drop`` of the
items go (the oldest, as in real expiry).

Each round, on fresh copies of the same archive (copying is not timed), in
turns so that every contender meets the machine in the same state:

1. ``expire_list`` (this project: items placed from their bytes), in a child
   Python process, with the C placing step (``_creader.item_when``) when it is
   built ("ours") and with ``PROSODY_STORE_PURE=1``, the pure-Python path
   ("ours, pure");
2. Prosody's own expiry: ``lua5.4`` running mod_storage_internal's
   ``archive:delete(user, {["end"] = cutoff})`` (its ``list_load``, filter and
   ``list_store``), loaded from Prosody's modules directory, as mod_mam's
   cleanup calls it;
3. (unless ``--no-full-reader``) ``expire_list(full_reader=True)``: every item
   decoded, the way it was done before (with the C reader when it is built);
4. (with ``--pure``) the same with ``PROSODY_STORE_PURE=1``: the pure-Python
   reader.

Times are the child processes' wall times (interpreter start included for
both), best of the rounds; the ratio's spread is the range of the per-round
ratios.  Their CPU times (user + system, best of the rounds) are shown too:
on a loaded machine they vary less than wall times.  Peak RSS is each
child's own ``ru_maxrss`` (``os.wait4``).  The machine load
(``os.getloadavg``) is shown before and after.  Every round checks that all
removed the same number of items.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import codec  # noqa: E402  (the archive generator, shared with bench/codec.py)

OUT = ROOT / "bench" / "out"
HOST, USER, STORE = "example.com", "alice", "archive"
SEED = 20240601
MB_PER_MESSAGE = 29_792_678 / 20_000 / 1e6  # what the generator writes, on average
FIRST_WHEN = 1700000000
MEAN_STEP = 60.5  # seconds between messages: random(1, 120) + random(0, 999999) / 1e6

EXPIRE_PY = r'''
import sys, time
from prosody_store.archive import expire_list
from prosody_store.datamanager import DataManager
path, cutoff, full = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "full"
t0 = time.perf_counter()
r = expire_list(DataManager(path, durable=False), "alice", "example.com", "archive", cutoff,
                full_reader=full)
print(r.dropped, r.kept, r.read_fully, int(r.full_reader), time.perf_counter() - t0)
'''

PROSODY_LUA = r'''
-- arg: data path, host, user, store, cutoff.  archive:delete(user, {["end"] = cutoff})
package.loaded["util.logger"] = { init = function() return function() end end }
local dm = require "util.datamanager"
local path, host, user, store, cutoff = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5])
dm.set_data_path(path)
-- Prosody's mod_storage_internal, loaded by the tests' oracle (tests/lua/archive_oracle.lua).
local archive = require("archive_oracle").storage(host):open(store, "archive")
local n, err = archive:delete(user, { ["end"] = cutoff })
if n == nil then error(err) end
io.write(string.format("%d\n", n))
'''


def prosody_env() -> dict[str, str]:
    """Prosody's modules and the tests' Lua oracles (archive_oracle) on lua5.4's path."""
    env = codec.lua_env()
    env["LUA_PATH"] = f"{ROOT / 'tests' / 'lua'}/?.lua;" + env["LUA_PATH"]
    return env


class Run(NamedTuple):
    seconds: float
    cpu: float  # user + system seconds of the child
    peak_mb: float
    dropped: int
    note: str


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def data_copy(master: Path, name: str) -> Path:
    """A fresh data directory holding a copy of ``master`` as alice's archive."""
    data = OUT / "expire-work" / name
    shutil.rmtree(data, ignore_errors=True)
    target = data / "example%2ecom" / STORE
    target.mkdir(parents=True)
    shutil.copyfile(master, target / f"{USER}.list")
    return data


def run_measured(argv: list[str],
                 env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run a child to its end; its wall time, CPU time, peak RSS in MB (its
    own, from ``wait4``) and stdout."""
    out_path = OUT / "expire-work" / "stdout"
    with open(out_path, "wb") as out, open(os.devnull, "wb") as devnull:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=devnull, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{argv} failed with status {proc.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out_path.read_text()


def ours(master: Path, cutoff: float, full: bool, pure: bool = False) -> Run:
    data = data_copy(master, "ours")
    env = dict(os.environ, PROSODY_STORE_PURE="1") if pure else None
    seconds, cpu, peak, out = run_measured([sys.executable, "-c", EXPIRE_PY, str(data),
                                            repr(cutoff), "full" if full else "bytes"], env)
    dropped, kept, read_fully, whole, inner = out.split()
    note = f"in-process {float(inner):.2f} s; {read_fully} items decoded"
    if int(whole):
        note += " (whole list)"
    return Run(seconds, cpu, peak, int(dropped), note)


def prosody(master: Path, cutoff: float, script: Path) -> Run:
    data = data_copy(master, "prosody")
    seconds, cpu, peak, out = run_measured(
        [codec.LUA, str(script), str(data), HOST, USER, STORE, repr(cutoff)], prosody_env())
    return Run(seconds, cpu, peak, int(out), "lua5.4, mod_storage_internal archive:delete")


def archive(mb: float) -> tuple[Path, int]:
    messages = max(1000, round(mb / MB_PER_MESSAGE / 1000) * 1000)
    return codec.ensure_archive(messages, SEED, 0), messages


def measure(mb: float, rounds: int, drop: float, with_full: bool, with_pure: bool,
            script: Path) -> tuple[int, int, dict[str, list[Run]]]:
    master, messages = archive(mb)
    size = master.stat().st_size
    cutoff = FIRST_WHEN + messages * MEAN_STEP * drop
    runs: dict[str, list[Run]] = {"ours": [], "ours, pure": [], "prosody": [],
                                  "full reader": [], "full, pure": []}
    for _ in range(rounds):
        runs["ours"].append(ours(master, cutoff, full=False))
        runs["prosody"].append(prosody(master, cutoff, script))
        runs["ours, pure"].append(ours(master, cutoff, full=False, pure=True))
        if with_full:
            runs["full reader"].append(ours(master, cutoff, full=True))
        if with_pure:
            runs["full, pure"].append(ours(master, cutoff, full=True, pure=True))
        dropped = {r[-1].dropped for r in runs.values() if r}
        if len(dropped) != 1:
            sys.exit(f"the contenders removed different numbers of items: {runs}")
    return size, messages, runs


def report(mb_label: str, size: int, messages: int, runs: dict[str, list[Run]]) -> None:
    print(f"\n{mb_label}: {size / 1e6:.1f} MB, {messages:,} messages, "
          f"{runs['ours'][0].dropped:,} removed")
    print(f"  {'':<13} {'best s':>8} {'worst s':>8} {'cpu s':>7} {'MB/s':>7} {'peak RSS':>9}"
          "  notes")
    for name, rs in runs.items():
        if not rs:
            continue
        best = min(rs, key=lambda r: r.seconds)
        print(f"  {name:<13} {best.seconds:8.2f} {max(r.seconds for r in rs):8.2f} "
              f"{min(r.cpu for r in rs):7.2f} {size / 1e6 / best.seconds:7.1f} "
              f"{max(r.peak_mb for r in rs):7.0f} MB  {best.note}")
    for peer, mine in (("prosody", "ours"), ("prosody", "ours, pure"), ("ours, pure", "ours"),
                       ("full reader", "ours"), ("full, pure", "ours")):
        if not runs[peer] or not runs[mine]:
            continue
        ratios = [p.seconds / o.seconds for o, p in zip(runs[mine], runs[peer])]
        best = min(r.seconds for r in runs[peer]) / min(r.seconds for r in runs[mine])
        cpu = min(r.cpu for r in runs[peer]) / min(r.cpu for r in runs[mine])
        print(f"  {peer} / {mine}: {best:.1f}x wall, best of {len(ratios)} rounds (per round "
              f"{min(ratios):.1f}x to {max(ratios):.1f}x); {cpu:.1f}x CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="size of the main archive")
    parser.add_argument("--small-mb", type=float, default=50,
                        help="size of the second archive (memory; 0: none)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drop", type=float, default=0.5, help="fraction of items to expire")
    parser.add_argument("--no-full-reader", action="store_true",
                        help="leave out expire_list(full_reader=True)")
    parser.add_argument("--pure", action="store_true",
                        help="also expire_list(full_reader=True) with the pure-Python reader")
    args = parser.parse_args()
    if codec.LUA is None:
        sys.exit("lua5.4 is not installed (apt-get install lua5.4)")
    (OUT / "expire-work").mkdir(parents=True, exist_ok=True)
    script = OUT / "expire_prosody.lua"
    script.write_text(PROSODY_LUA)
    from prosody_store import _speedups
    print(f"reader: {_speedups.implementation()}; {load()}")
    sizes = [args.mb] + ([args.small_mb] if args.small_mb else [])
    results = []
    for mb in sizes:
        results.append((mb, measure(mb, args.rounds if mb == args.mb else max(2, args.rounds // 2),
                                    args.drop, not args.no_full_reader, args.pure, script)))
    for mb, (size, messages, runs) in results:
        report(f"archive of ~{mb:g} MB", size, messages, runs)
    if len(results) == 2:
        (_, (s1, _, r1)), (_, (s2, _, r2)) = results
        print(f"\npeak RSS, {s2 / 1e6:.0f} MB -> {s1 / 1e6:.0f} MB archive:")
        for name in ("ours", "ours, pure", "prosody", "full reader", "full, pure"):
            if r1[name]:
                print(f"  {name:<13} {max(r.peak_mb for r in r2[name]):6.0f} MB -> "
                      f"{max(r.peak_mb for r in r1[name]):6.0f} MB")
    print(f"\n{load()}")
    shutil.rmtree(OUT / "expire-work", ignore_errors=True)


if __name__ == "__main__":
    main()
