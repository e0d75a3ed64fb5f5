"""Benchmark: the filesystem store against Prosody's own util.datamanager.

Usage: ``python3 bench/store.py [--items 100000] [--appends 2000]``

Measures, on one 100,000-item list:

* random access to item N (N = 1, 50,000, 99,999) through ``list_open`` and
  the ``.lidx`` index: the time stays flat whatever N.  Prosody 0.12 has no
  index: its ``list_load`` parses the whole file to reach any item, which is
  what it is compared with;
* streaming the whole list (our lazy view and our ``list_load``, against
  Prosody's ``list_load``);
* appends per second (ours with and without fsync, Prosody's, which never
  fsyncs).

Prosody runs under ``lua5.4`` with the modules in ``/usr/lib/prosody`` (or
``$PROSODY_LIB``), in the same run, on the same files.  Ratios are
Prosody's time divided by ours (> 1: we are faster).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prosody_store.datamanager import DataManager  # noqa: E402

PROSODY_LIB = os.environ.get("PROSODY_LIB", "/usr/lib/prosody")
HOST, STORE, USER = "example.com", "archive", "alice"

LUA_BENCH = r"""
package.loaded["util.logger"] = { init = function() return function() end end }
local dm = require "util.datamanager"
local now = require "util.time".now
local path, what, arg1, arg2 = ...
dm.set_data_path(path)
local host, store, user = "example.com", "archive", "alice"
if what == "get" then
  local n, reps = tonumber(arg1), tonumber(arg2)
  local t0 = now()
  local x
  for _ = 1, reps do x = dm.list_load(user, host, store)[n] end
  assert(x)
  print((now() - t0) / reps)
elseif what == "stream" then
  local t0 = now()
  local items = dm.list_load(user, host, store)
  local count = 0
  for _ in ipairs(items) do count = count + 1 end
  print(now() - t0, count)
elseif what == "append" then
  local n = tonumber(arg1)
  local t0 = now()
  for i = 1, n do
    dm.list_append("appender", host, store, { when = 1700000000 + i, with = "bob@example.com",
      body = "message number " .. i })
  end
  print(now() - t0)
end
"""


def lua(*args: str) -> list[str]:
    env = dict(os.environ, LUA_PATH=f"{PROSODY_LIB}/?.lua;;", LUA_CPATH=f"{PROSODY_LIB}/?.so;;")
    out = subprocess.run(["lua5.4", "-", *args], input=LUA_BENCH.encode(),
                         capture_output=True, env=env, check=True)
    return out.stdout.decode().split()


def item(i: int) -> dict:
    return {"key": f"id-{i:08d}", "when": 1700000000 + i * 0.5, "with": "bob@example.com",
            "stanza": {"name": "message", "attr": {"type": "chat", "id": f"m{i}"},
                       1: {"name": "body", 1: f"message number {i} \u00e9"}}}


def timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:9.2f} ms"
    return f"{seconds:9.3f} s "


def row(label: str, ours: float, theirs: float | None) -> None:
    if theirs is None:
        print(f"  {label:<44} ours {fmt(ours)}")
    else:
        print(f"  {label:<44} ours {fmt(ours)}   prosody {fmt(theirs)}   ratio {theirs / ours:10.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    have_lua = shutil.which("lua5.4") and Path(PROSODY_LIB, "util", "datamanager.lua").exists()
    tmp = tempfile.mkdtemp(prefix="prosody-store-bench-")
    try:
        dm = DataManager(tmp)
        t0 = time.perf_counter()
        dm.list_store(USER, HOST, STORE, [item(i) for i in range(args.items)])
        size = Path(dm.getpath(USER, HOST, STORE, "list")).stat().st_size
        print(f"list of {args.items} items, {size / 1e6:.1f} MB, written in "
              f"{time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        dm.list_open(USER, HOST, STORE).close()  # builds and writes the .lidx
        print(f"index built in {fmt(time.perf_counter() - t0).strip()}\n")

        print("random access to item N (1-based)")
        for n in (1, args.items // 2, args.items - 1):
            def open_get(n=n):
                with dm.list_open(USER, HOST, STORE) as view:
                    assert view[n - 1]["key"] == f"id-{n - 1:08d}"
            ours = timed(open_get, 50)
            theirs = float(lua(tmp, "get", str(n), "2")[0]) if have_lua else None
            row(f"N={n:,}: list_open + view[N-1]", ours, theirs)
        with dm.list_open(USER, HOST, STORE) as view:
            for n in (1, args.items // 2, args.items - 1):
                row(f"N={n:,}: view[N-1] on an open view", timed(lambda n=n: view[n - 1], 2000),
                    None)

        print("\nstreaming the whole list")
        theirs_stream = None
        if have_lua:
            secs, count = lua(tmp, "stream")
            assert int(count) == args.items
            theirs_stream = float(secs)

        def stream_view():
            with dm.list_open(USER, HOST, STORE) as view:
                assert sum(1 for _ in view) == args.items

        row("iterate list_open view", timed(stream_view, 1), theirs_stream)
        row("list_load", timed(lambda: dm.list_load(USER, HOST, STORE), 1), theirs_stream)

        print(f"\nappends ({args.appends} items to a new list)")
        theirs_append = float(lua(tmp, "append", str(args.appends))[0]) if have_lua else None
        for durable in (True, False):
            adm = DataManager(tmp, durable=durable)
            user = f"appender-{durable}"
            t0 = time.perf_counter()
            for i in range(args.appends):
                adm.list_append(user, HOST, STORE, {"when": 1700000000 + i,
                                                    "with": "bob@example.com",
                                                    "body": f"message number {i}"})
            ours = time.perf_counter() - t0
            label = "with fsync" if durable else "no fsync (as Prosody)"
            line = f"  list_append {label:<32} ours {args.appends / ours:9.0f}/s"
            if theirs_append:
                line += (f"   prosody {args.appends / theirs_append:9.0f}/s"
                         f"   ratio {ours and theirs_append / ours:10.2f}x")
            print(line)
        if not have_lua:
            print("\n(lua5.4 or Prosody's modules missing: no comparison)")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
