"""Benchmark: ``prosody-store export`` and ``import`` of a large data directory,
next to real Prosody (lua5.4 with its util.datamanager) reading and writing
the same files.

The data directory (1,000 users on one host, each with accounts, roster, vCard
and a message archive; >= 300 MB) is written by Prosody's own datamanager
under lua5.4 and cached in bench/out/export-data-*.  Every job runs as a child
process; its wall time and peak memory (ru_maxrss from wait4) are taken.  The
jobs run in turns, round after round (``--rounds``), so that every one meets
the machine in the same state; the table gives each job's best round and the
spread of its rounds, and the load average from ``uptime`` is printed at the
start and the end.

Jobs:

* Prosody loads every file (``dm.load`` / ``dm.list_load``): the peer of export;
* ``prosody-store export -o``, with the C speedups where built and with
  ``PROSODY_STORE_PURE=1`` (pure Python); the outputs must be the same bytes;
* Prosody writes the same data: a lua5.4 script loads each file and stores
  it into an empty directory with ``dm.store`` / ``dm.list_store``; only the
  store calls are timed (util.time.monotonic), the loading is not: the peer
  of import;
* ``prosody-store import`` into an empty directory (fsync'ed, as shipped),
  with the speedups and in pure Python; and the library's ``import_records``
  with ``DataManager(durable=False)``, which like Prosody does not fsync;
* with ``--baseline DIR`` (a source tree of an earlier version, e.g.
  ``git archive HEAD | tar -x -C DIR``), its export and import in pure Python
  as "before" (run with ``PYTHONPATH=DIR``).

Targets: export at most 1.5x Prosody's loading time; import at most half the
baseline's time.

    python3 bench/export.py [--users 1000] [--messages 280] [--rounds 3] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PROSODY_LIB = os.environ.get("PROSODY_LIB", "/usr/lib/prosody")
TARGET_EXPORT_VS_LUA = 1.5
TARGET_IMPORT_SPEEDUP = 2.0

LUA_HEAD = r"""
package.path = PROSODY_LIB .. "/?.lua;" .. package.path
package.cpath = PROSODY_LIB .. "/?.so;" .. package.cpath
package.loaded["util.logger"] = { init = function() return function() end end }
local dm = require "util.datamanager"
"""

GENERATE = LUA_HEAD + r"""
dm.set_data_path(DATA)
local host = "bench.example"
math.randomseed(42)
local words = { "tea", "party", "hatter", "rabbit", "queen", "croquet", "mock", "turtle",
  "caterpillar", "mushroom", "Ünïcode", "中文", "🍵", "\"quoted\"", "back\\slash" }
local function text(n)
  local t = {}
  for i = 1, n do t[i] = words[math.random(#words)] end
  return table.concat(t, " ")
end
for u = 1, USERS do
  local user = string.format("user%04d", u)
  dm.store(user, host, "accounts", { salt = "salt-" .. u, iteration_count = 10000,
    stored_key = string.rep("ab", 20), server_key = string.rep("cd", 20), created = 1700000000 + u })
  local roster = { [false] = { version = u, pending = {} } }
  for c = 1, 20 do
    roster[string.format("contact%02d@bench.example", c)] = { subscription = "both",
      name = "Contact " .. c, groups = { Friends = true } }
  end
  dm.store(user, host, "roster", roster)
  dm.store(user, host, "vcard", { name = "vCard", attr = { xmlns = "vcard-temp" },
    { name = "FN", attr = {}, text(3) }, { name = "NOTE", attr = {}, text(40) } })
  local items = {}
  for i = 1, MESSAGES do
    items[i] = { key = string.format("%d-%d", u, i), when = 1700000000 + i * 60 + i / 7,
      with = "contact01@bench.example<chat", name = "message",
      attr = { xmlns = "jabber:client", type = "chat", id = "m" .. i,
        from = "contact01@bench.example/phone", to = user .. "@bench.example" },
      { name = "body", attr = {}, text(40 + math.random(40)) },
      { name = "origin-id", attr = { xmlns = "urn:xmpp:sid:0", id = "m" .. i } } }
  end
  dm.list_store(user, host, "archive", items)
end
"""

# Every file of DATA, loaded as Prosody loads it; with TARGET, each is then
# stored there again by Prosody (only the store calls are timed).
EVERY_FILE = LUA_HEAD + r"""
local lfs = require "lfs"
local monotonic = require "util.time".monotonic
local function unenc(s) return (s:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)) end
local files, items, writing = 0, 0, 0
local function stored(kind, user, host, store, data)
  if not TARGET then return end
  dm.set_data_path(TARGET)
  local start = monotonic()
  if kind == "dat" then assert(dm.store(user, host, store, data))
  else assert(dm.list_store(user, host, store, data)) end
  writing = writing + (monotonic() - start)
  dm.set_data_path(DATA)
end
dm.set_data_path(DATA)
for h in lfs.dir(DATA) do
  if h:sub(1, 1) ~= "." then
    local host = unenc(h)
    for s in lfs.dir(DATA .. "/" .. h) do
      local sdir = DATA .. "/" .. h .. "/" .. s
      if s:sub(1, 1) ~= "." and lfs.attributes(sdir, "mode") == "directory" then
        local store = unenc(s)
        for f in lfs.dir(sdir) do
          local user, ext = f:match("^(.*)%.(%a+)$")
          if ext == "dat" then
            local data = assert(dm.load(unenc(user), host, store)); files = files + 1
            stored("dat", unenc(user), host, store, data)
          elseif ext == "list" then
            local l = assert(dm.list_load(unenc(user), host, store)); files = files + 1
            items = items + #l
            stored("list", unenc(user), host, store, l)
          end
        end
      end
    end
  end
end
print(files .. " files, " .. items .. " list items")
if TARGET then print(string.format("%.6f", writing)) end
"""

# import_records into a DataManager that does not fsync (as Prosody's writes).
IMPORT_NO_FSYNC = """
import sys
from prosody_store.datamanager import DataManager
from prosody_store.export import import_records
with open(sys.argv[2], "rb") as f:
    stats = import_records(DataManager(sys.argv[1], durable=False), f)
print(stats.records)
"""


def lua_chunk(body: str, **values: object) -> str:
    head = "".join(f"local {k} = {v!r}\n" if isinstance(v, str) else f"local {k} = {v}\n"
                   for k, v in values.items())
    return head.replace("'", '"') + body


def timed(cmd: list[str], **kw: object) -> tuple[float, int, bytes]:
    """Run a child; (seconds, peak RSS in MiB, stdout)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed with status {proc.returncode}")
    return elapsed, usage.ru_maxrss // 1024, out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree(path: Path) -> dict[str, bytes]:
    """Every data file under ``path`` (the .lidx indexes aside: Prosody writes none)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix != ".lidx"}


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime not available"


@dataclass
class Job:
    name: str
    run: Callable[[Path], tuple[float, int, str]]  # (seconds, peak MiB, note) in a fresh dir
    times: list[float] = field(default_factory=list)
    rss: int = 0
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.times)

    def spread(self) -> str:
        ordered = sorted(self.times)
        median, worst = ordered[len(ordered) // 2], ordered[-1]
        return f"median +{(median / ordered[0] - 1) * 100:.0f}%, worst +{(worst / ordered[0] - 1) * 100:.0f}%"


def ensure_data(lua: str, users: int, messages: int) -> Path:
    data = OUT / f"export-data-{users}x{messages}"
    if not (data / ".complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        print(f"generating {data} with Prosody's util.datamanager ...", flush=True)
        t, _, _ = timed([lua, "-e", lua_chunk(GENERATE, PROSODY_LIB=PROSODY_LIB, DATA=str(data),
                                              USERS=users, MESSAGES=messages)])
        (data / ".complete").write_text("")
        print(f"  generated in {t:.1f} s")
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=280, help="archive items per user")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", metavar="DIR",
                    help="source tree of an earlier version, run in pure Python as 'before'")
    ap.add_argument("--no-pure", action="store_true", help="skip the pure-Python jobs")
    args = ap.parse_args()
    lua = shutil.which("lua5.4")
    if not lua:
        raise SystemExit("needs lua5.4 and prosody (apt-get install lua5.4 prosody)")
    data = ensure_data(lua, args.users, args.messages)
    size = du(data)
    nfiles = sum(1 for p in data.rglob("*") if p.suffix in (".dat", ".list"))
    py = [sys.executable, "-m", "prosody_store"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PROSODY_STORE_PURE", None)
    pure_env = dict(env, PROSODY_STORE_PURE="1")
    implementation = subprocess.run(
        [sys.executable, "-c", "from prosody_store import _speedups; print(_speedups.implementation())"],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    print(f"data directory: {size / 1e6:.0f} MB in {nfiles} files ({args.users} users)")
    print(f"Python {sys.version.split()[0]}, prosody_store implementation: {implementation}")
    print(f"{args.rounds} rounds, jobs in turns; load at the start: {load_average()}\n", flush=True)

    work = Path(tempfile.mkdtemp(dir=OUT, prefix="export-bench-"))
    dump = work / "dump.jsonl"

    def lua_load(_: Path) -> tuple[float, int, str]:
        t, rss, out = timed([lua, "-e", lua_chunk(EVERY_FILE, PROSODY_LIB=PROSODY_LIB,
                                                  DATA=str(data))])
        return t, rss, out.decode().strip()

    def lua_write(fresh: Path) -> tuple[float, int, str]:
        _, rss, out = timed([lua, "-e", lua_chunk(EVERY_FILE, PROSODY_LIB=PROSODY_LIB,
                                                  DATA=str(data), TARGET=str(fresh))])
        counts, seconds = out.decode().split("\n")[:2]
        return float(seconds), rss, f"{counts}; only the store calls timed"

    def export(job_env: dict[str, str], out: Path) -> Callable[[Path], tuple[float, int, str]]:
        def run(_: Path) -> tuple[float, int, str]:
            t, rss, _ = timed(py + ["--data-path", str(data), "export", "-o", str(out)], env=job_env)
            return t, rss, f"{out.stat().st_size / 1e6:.0f} MB JSONL"
        return run

    def import_(job_env: dict[str, str]) -> Callable[[Path], tuple[float, int, str]]:
        def run(fresh: Path) -> tuple[float, int, str]:
            t, rss, _ = timed(py + ["--data-path", str(fresh), "import", str(dump)], env=job_env)
            return t, rss, f"{du(fresh) / 1e6:.0f} MB written"
        return run

    def import_no_fsync(fresh: Path) -> tuple[float, int, str]:
        t, rss, _ = timed([sys.executable, "-c", IMPORT_NO_FSYNC, str(fresh), str(dump)], env=env)
        return t, rss, "library import_records, DataManager(durable=False)"

    jobs = [Job("Prosody (lua5.4) load every file", lua_load),
            Job("prosody-store export", export(env, dump))]
    if not args.no_pure:
        jobs.append(Job("prosody-store export, PROSODY_STORE_PURE=1", export(pure_env, work / "pure.jsonl")))
    base_env = None
    if args.baseline:
        base_env = dict(pure_env, PYTHONPATH=str(Path(args.baseline).resolve()))
        jobs.append(Job("export before (--baseline, pure Python)", export(base_env, work / "base.jsonl")))
    jobs += [Job("Prosody (lua5.4) store every file", lua_write),
             Job("prosody-store import (fsync)", import_(env)),
             Job("import_records, no fsync (as Prosody)", import_no_fsync)]
    if not args.no_pure:
        jobs.append(Job("prosody-store import (fsync), PROSODY_STORE_PURE=1", import_(pure_env)))
    if base_env is not None:
        jobs.append(Job("import before (--baseline, pure Python, fsync)", import_(base_env)))

    imported: dict[str, Path] = {}
    try:
        for round_no in range(args.rounds):
            for job in jobs:
                fresh = work / f"target-{round_no}-{jobs.index(job)}"
                fresh.mkdir()
                seconds, rss, note = job.run(fresh)
                job.times.append(seconds)
                job.rss = max(job.rss, rss)
                job.note = note
                if any(fresh.iterdir()):
                    if job.name not in imported:
                        imported[job.name] = fresh
                    else:
                        shutil.rmtree(fresh)
            print(f"round {round_no + 1}: " + ", ".join(f"{j.times[-1]:.1f}s" for j in jobs), flush=True)

        print(f"\n{'job':<52} {'best':>7} {'peak RSS':>9}  spread over rounds; notes")
        for job in jobs:
            print(f"{job.name:<52} {job.best:6.2f}s {job.rss:6d} MiB  {job.spread()}; {job.note}")

        print("\nChecks")
        for other in ("pure.jsonl", "base.jsonl"):
            if (work / other).exists():
                same = (work / other).read_bytes() == dump.read_bytes()
                print(f"  export: {other} {'identical to' if same else 'DIFFERS from'} the speedups' output")
        reference = tree(imported["prosody-store import (fsync)"])
        for name, path in imported.items():
            files = tree(path)
            if name.startswith("Prosody"):
                print(f"  {name}: {len(files)} files (entries in Lua's hash order)")
            elif name != "prosody-store import (fsync)":
                print(f"  {name}: {len(files)} files, "
                      f"{'identical to' if files == reference else 'DIFFERENT from'} "
                      "those of prosody-store import")

        by_name = {job.name: job for job in jobs}

        def ratio(label: str, ours: str, peer: str, target: float | None = None,
                  target_text: str = "") -> None:
            if ours not in by_name or peer not in by_name:
                return
            r = by_name[ours].best / by_name[peer].best
            text = f"  {label:<46} {r:6.2f}"
            if target is not None:
                text += f"  target {target_text}: {'MET' if r <= target else 'NOT MET'}"
            print(text)

        print("\nRatios (time of ours / time of peer, best rounds)")
        ratio("export vs Prosody loading every file", "prosody-store export",
              "Prosody (lua5.4) load every file", TARGET_EXPORT_VS_LUA, f"<= {TARGET_EXPORT_VS_LUA:g}")
        ratio("export pure Python vs Prosody loading", "prosody-store export, PROSODY_STORE_PURE=1",
              "Prosody (lua5.4) load every file")
        ratio("export vs before", "prosody-store export", "export before (--baseline, pure Python)")
        ratio("import (fsync) vs Prosody storing", "prosody-store import (fsync)",
              "Prosody (lua5.4) store every file")
        ratio("import, no fsync vs Prosody storing", "import_records, no fsync (as Prosody)",
              "Prosody (lua5.4) store every file")
        ratio("import vs pure Python", "prosody-store import (fsync)",
              "prosody-store import (fsync), PROSODY_STORE_PURE=1")
        ratio("import vs before", "prosody-store import (fsync)",
              "import before (--baseline, pure Python, fsync)", 1 / TARGET_IMPORT_SPEEDUP,
              f"<= {1 / TARGET_IMPORT_SPEEDUP:g} (at least twice as fast)")
        print(f"\nload at the end: {load_average()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
