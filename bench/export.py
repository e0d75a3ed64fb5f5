"""Benchmark: ``prosody-store export`` and ``import`` of a large data directory,
next to real Prosody (lua5.4 with its util.datamanager) loading every file.

The data directory (1,000 users on one host, each with accounts, roster, vCard
and a message archive; >= 200 MB) is written by Prosody's own datamanager
under lua5.4 and cached in bench/out/export-data.  Each job runs as a child
process; its wall time and peak memory (ru_maxrss from wait4) are printed.

    python3 bench/export.py [--users 1000] [--messages 280]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PROSODY_LIB = os.environ.get("PROSODY_LIB", "/usr/lib/prosody")

GENERATE = r"""
package.path = PROSODY_LIB .. "/?.lua;" .. package.path
package.cpath = PROSODY_LIB .. "/?.so;" .. package.cpath
package.loaded["util.logger"] = { init = function() return function() end end }
local dm = require "util.datamanager"
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

LOAD_ALL = r"""
package.path = PROSODY_LIB .. "/?.lua;" .. package.path
package.cpath = PROSODY_LIB .. "/?.so;" .. package.cpath
package.loaded["util.logger"] = { init = function() return function() end end }
local dm = require "util.datamanager"
local lfs = require "lfs"
dm.set_data_path(DATA)
local function unenc(s) return (s:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)) end
local files, items = 0, 0
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
            assert(dm.load(unenc(user), host, store)); files = files + 1
          elseif ext == "list" then
            local l = assert(dm.list_load(unenc(user), host, store)); files = files + 1
            items = items + #l
          end
        end
      end
    end
  end
end
print(files .. " files, " .. items .. " list items")
"""


def lua_chunk(body: str, **values) -> str:
    head = "".join(f"local {k} = {v!r}\n" if isinstance(v, str) else f"local {k} = {v}\n"
                   for k, v in values.items())
    return head.replace("'", '"') + body


def timed(cmd: list[str], **kw) -> tuple[float, int, bytes]:
    """Run a child; (seconds, peak RSS in MiB, stdout)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kw)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed with status {proc.returncode}")
    return elapsed, usage.ru_maxrss // 1024, out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=280, help="archive items per user")
    args = ap.parse_args()
    lua = shutil.which("lua5.4")
    if not lua:
        raise SystemExit("needs lua5.4 and prosody (apt-get install lua5.4 prosody)")
    data = OUT / f"export-data-{args.users}x{args.messages}"
    if not (data / ".complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        print(f"generating {data} with Prosody's util.datamanager ...", flush=True)
        t, _, _ = timed([lua, "-e", lua_chunk(GENERATE, PROSODY_LIB=PROSODY_LIB,
                                               DATA=str(data), USERS=args.users,
                                               MESSAGES=args.messages)])
        (data / ".complete").write_text("")
        print(f"  generated in {t:.1f} s")
    size = du(data)
    nfiles = sum(1 for p in data.rglob("*") if p.suffix in (".dat", ".list"))
    print(f"data directory: {size / 1e6:.0f} MB in {nfiles} files ({args.users} users)\n")

    py = [sys.executable, "-m", "prosody_store"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rows = []
    t, rss, out = timed([lua, "-e", lua_chunk(LOAD_ALL, PROSODY_LIB=PROSODY_LIB,
                                              DATA=str(data))])
    rows.append(("Prosody (lua5.4 datamanager) load every file", t, rss, out.decode().strip()))
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        dump = Path(tmp) / "dump.jsonl"
        t, rss, _ = timed(py + ["--data-path", str(data), "export", "-o", str(dump)], env=env)
        rows.append(("prosody-store export", t, rss, f"{dump.stat().st_size / 1e6:.0f} MB JSONL"))
        target = Path(tmp) / "imported"
        target.mkdir()
        t, rss, _ = timed(py + ["--data-path", str(target), "import", str(dump)], env=env)
        rows.append(("prosody-store import (into empty dir, fsync)", t, rss,
                     f"{du(target) / 1e6:.0f} MB written"))
        t, rss, _ = timed(py + ["--data-path", str(target), "import", str(dump)], env=env)
        rows.append(("prosody-store import again (idempotent)", t, rss, ""))
        again = Path(tmp) / "again.jsonl"
        t, rss, _ = timed(py + ["--data-path", str(target), "export", "-o", str(again)],
                          env=env)
        same = again.read_bytes() == dump.read_bytes()
        rows.append(("prosody-store export of the imported dir", t, rss,
                     "identical bytes" if same else "DIFFERENT BYTES"))
        t, rss, out = timed([lua, "-e", lua_chunk(LOAD_ALL, PROSODY_LIB=PROSODY_LIB,
                                                  DATA=str(target))])
        rows.append(("Prosody load every file of the imported dir", t, rss,
                     out.decode().strip()))
    width = max(len(r[0]) for r in rows)
    print(f"{'job':<{width}}  {'time':>8}  {'peak RSS':>9}  notes")
    for name, t, rss, note in rows:
        print(f"{name:<{width}}  {t:7.1f}s  {rss:6d} MiB  {note}")


if __name__ == "__main__":
    main()
