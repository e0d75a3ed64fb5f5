#!/usr/bin/env python3
"""Benchmark prosody_store's Lua-literal codec against its peers.

Usage::

    python bench/codec.py [--quick] [--profile]

The input is a message archive ``.list`` written by real Prosody: a Lua script
run with ``lua5.4`` builds messages shaped like mod_mam's (key, when, with and
the preserialized stanza) and writes ``item(<serialize(t)>);\\n`` for each, which
is exactly what Prosody's ``datamanager.list_append`` writes.  The file is
cached under ``bench/out/`` (gitignored), keyed by its parameters and by the
generator's source.

Reading, in one run, best of several repetitions each:

1. ``list(iter_list(open(path, "rb")))`` -- this project, timed in turns with
   the ``lua5.4`` binary (4.) so that both meet the machine in the same state;
2. lupa: real Lua in-process loads the file, then the result is converted to
   Python dicts/lists/str (also shown: the load alone);
3. slpp: decodes each item's text (the file is split into items first);
4. the ``lua5.4`` binary loading the file as Prosody does (wall time of the
   subprocess, nothing subtracted), and an empty ``lua5.4`` start for scale;
5. ``json.loads`` of the same items as one JSON array.

A large ``.dat``: the archive's items as one table keyed by their ``key``,
written by Prosody's ``util.serialization``; ``loads`` of it timed in turns
with the ``lua5.4`` binary loading it as Prosody does.

Where the compiled reader (``prosody_store._creader``) is in use, the reading
rows also time the pure-Python reader in the same turns (as
``PROSODY_STORE_PURE=1`` would run it), and the targets are ``iter_list`` and
``loads`` at most 1.0x the ``lua5.4`` binary's time (3.0x for pure Python).
Each row's notes give the spread over the rounds; the load average from
``uptime`` is printed at the start and the end.

Writing: ``dump_item`` of every item (joined) and ``dumps`` of every item,
with the compiled writer (``prosody_store._cwriter``) and in pure Python
timed in turns, each output checked to be the same bytes (and ``dump_item``'s
to be Prosody's file); ``json.dumps`` for scale.  Target: the C writer's
``dumps`` at least 3x as fast as the pure-Python one.

Text that never repeats: the same messages with every word made up at random
(two in three non-ASCII), read by ``iter_list``, lupa and the ``lua5.4``
binary.  The reader memoizes each distinct run of escaped bytes, and chat
repeats its words; this archive shows the case where that never pays.

Memory: a copy of the archive concatenated to >= 200 MB (a valid ``.list``)
is streamed through ``iter_list`` in a child process; the report gives the
peak RSS above the child's baseline (taken after its imports).

Throughput (MB/s) always counts the ``.list`` file's megabytes, so every row is
the speed of handling the same data; the JSON rows also show the JSON size.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

import prosody_store  # noqa: E402
from prosody_store import serialization  # noqa: E402
from prosody_store.serialization import dump_item, iter_list, loads  # noqa: E402

PROSODY_LIB = Path(os.environ.get("PROSODY_LIB", "/usr/lib/prosody"))
LUA = shutil.which("lua5.4")
SEED = 20240601
MB = 1_000_000
INSTALL_HINT = "not installed (pip install -e '.[bench]')"

FULL = {"messages": 20_000, "min_list_mb": 15, "memory_mb": 200, "reps": 5, "slow_reps": 3}
QUICK = {"messages": 2_000, "min_list_mb": 0, "memory_mb": 20, "reps": 3, "slow_reps": 2}

# Targets the project cares about: iter_list time / peer time.
TARGET_VS_LUPA = 1.0
# With the compiled reader: iter_list and loads at most lua5.4's time; pure Python: 3x.
C_READER = serialization._creader is not None
TARGET_VS_LUA = 1.0 if C_READER else 3.0
TARGET_PEAK_MB = 50.0

# ---------------------------------------------------------------------------
# The archive, written by Prosody's own util.serialization

GENERATOR_LUA = r'''
-- arg: output path, number of messages, seed, vocabulary ("chat" or "distinct")
local serialize = require "util.serialization".serialize
local path, count, seed, vocabulary = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
math.randomseed(seed)
local random = math.random

local words = {
  "hello", "the", "meeting", "is", "at", "noon", "see", "you", "there", "thanks",
  "ok", "sure", "coffee", "tomorrow", "release", "build", "server", "prosody",
  "deploy", "later", "lunch", "?", "!", "great", "idea", "why", "not", "done",
  -- some non-ASCII: Latin-1 range, CJK, Cyrillic, emoji
  "Grüße", "café", "naïve", "Ünïcode", "日本語", "中文", "Привет", "😀", "👍", "€",
}
local contacts = {
  "bob@example.com", "carol@example.com", "dave@example.org", "erin@example.net",
}
local resources = { "phone", "laptop", "desktop", "tablet" }
local chatstates = { "active", "composing", "paused" }

local function hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", random(0, 15)) end
  return table.concat(t)
end

local function uuid()
  return hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-" .. hex(4) .. "-" .. hex(12)
end

-- "distinct": every word made up at random, two in three of them non-ASCII
-- (Cyrillic or CJK), so that hardly any word recurs
local function made_up_word()
  local t = {}
  local kind = random(3)
  if kind == 1 then
    for i = 1, random(2, 9) do t[i] = string.char(random(97, 122)) end
  elseif kind == 2 then
    for i = 1, random(2, 9) do t[i] = utf8.char(random(0x430, 0x44f)) end
  else
    for i = 1, random(1, 4) do t[i] = utf8.char(random(0x4e00, 0x9fa5)) end
  end
  return table.concat(t)
end

local function sentence(nwords)
  local t = {}
  for i = 1, nwords do
    t[i] = vocabulary == "distinct" and made_up_word() or words[random(#words)]
  end
  return table.concat(t, " ")
end

local function body_text()
  local r = random(100)
  if r <= 8 then -- long: a few paragraphs, 2 to 8 KB
    local paras = {}
    for i = 1, random(4, 12) do paras[i] = sentence(random(60, 140)) end
    return table.concat(paras, "\n\n")
  elseif r <= 12 then -- quotes, backslashes, tabs and line breaks
    return 'he said "' .. sentence(random(3, 10)) .. '"\n\tpath C:\\temp\\' .. hex(6)
  end
  return sentence(random(2, 25))
end

local out = assert(io.open(path .. ".tmp", "wb"))
local me = "alice@example.com"
local when = 1700000000
for i = 1, count do
  local contact = contacts[random(#contacts)]
  local outgoing = random(2) == 1
  local from = (outgoing and me or contact) .. "/" .. resources[random(#resources)]
  local to = outgoing and contact or me
  local id = uuid()
  when = when + random(1, 120) + random(0, 999999) / 1e6
  local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(when))
  local item = {
    name = "message",
    attr = { xmlns = "jabber:client", from = from, to = to, type = "chat", id = id, stamp = stamp },
    key = uuid(),
    when = when,
    with = contact .. "<chat",
  }
  if random(100) <= 90 then
    item[#item + 1] = { name = "body", attr = {}, body_text() }
  end
  item[#item + 1] = {
    name = chatstates[random(#chatstates)],
    attr = { xmlns = "http://jabber.org/protocol/chatstates" },
  }
  item[#item + 1] = { name = "origin-id", attr = { xmlns = "urn:xmpp:sid:0", id = id } }
  item[#item + 1] = {
    name = "stanza-id",
    attr = { xmlns = "urn:xmpp:sid:0", id = item.key, by = me },
  }
  -- exactly what datamanager.list_append writes
  out:write("item(", serialize(item), ");\n")
end
out:close()
assert(os.rename(path .. ".tmp", path))
'''

LOADER_LUA = r'''
-- arg: path.  Loads a .list as Prosody's datamanager does (envload, text only).
local path = arg[1]
local fh = assert(io.open(path, "rb"))
local data = fh:read("a")
fh:close()
local items = {}
local env = { item = function(v) items[#items + 1] = v end }
local chunk = assert(load(data, "@" .. path, "t", env))
chunk()
io.write(#items, "\n")
'''

DAT_LOADER_LUA = r'''
-- arg: path.  Loads a .dat as Prosody's datamanager does (envload, text only, empty env).
local path = arg[1]
local fh = assert(io.open(path, "rb"))
local data = fh:read("a")
fh:close()
local chunk = assert(load(data, "@" .. path, "t", {}))
local value = chunk()
local n = 0
for _ in pairs(value) do n = n + 1 end
io.write(n, "\n")
'''

# A .dat written by Prosody: the archive's items as one table, keyed by
# their "key" (a store of many records, as a large roster or pubsub node is).
DAT_GENERATOR_LUA = r'''
-- arg: list path, dat path
local serialize = require "util.serialization".serialize
local fh = assert(io.open(arg[1], "rb"))
local data = fh:read("a")
fh:close()
local records = {}
local env = { item = function(v) records[v.key] = v end }
assert(load(data, "=list", "t", env))()
local out = assert(io.open(arg[2] .. ".tmp", "wb"))
out:write("return ", serialize(records), ";\n")
out:close()
assert(os.rename(arg[2] .. ".tmp", arg[2]))
'''


def lua_env() -> dict[str, str]:
    """Environment that lets lua5.4 ``require`` Prosody's modules."""
    env = dict(os.environ)
    env["LUA_PATH"] = f"{PROSODY_LIB}/?.lua;;"
    env["LUA_CPATH"] = f"{PROSODY_LIB}/?.so;;"
    return env


CODEC_SOURCES = ("serialization.py", "_fast_reader.py", "_lua_table.py", "_creader.c")


def codec_version() -> str:
    """Which codec was measured: the sha256 of its sources and, if in git, the commit and state."""
    srcs = [ROOT / "prosody_store" / name for name in CODEC_SOURCES]
    text = f"sha256 {hashlib.sha256(b''.join(src.read_bytes() for src in srcs)).hexdigest()[:12]}"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *map(str, srcs)], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return text
    return f"{text} (HEAD {head}{', modified in worktree' if dirty else ''})"


def archive_path(messages: int, seed: int, vocabulary: str) -> Path:
    """Where the archive for these parameters is cached (the generator's hash is in the name)."""
    digest = hashlib.sha256(GENERATOR_LUA.encode()).hexdigest()[:10]
    kind = "" if vocabulary == "chat" else f"-{vocabulary}"
    return OUT / f"archive{kind}-n{messages}-seed{seed}-{digest}.list"


def ensure_archive(messages: int, seed: int, min_mb: float, vocabulary: str = "chat") -> Path:
    """Generate (once) the archive ``.list`` with real Prosody and return its path."""
    path = archive_path(messages, seed, vocabulary)
    if not path.exists():
        if LUA is None:
            sys.exit("lua5.4 is not installed (apt-get install lua5.4); it writes the archive")
        if not (PROSODY_LIB / "util" / "serialization.lua").exists():
            sys.exit(f"Prosody's Lua modules are not in {PROSODY_LIB} (apt-get install prosody)")
        OUT.mkdir(parents=True, exist_ok=True)
        script = OUT / "generate_archive.lua"
        script.write_text(GENERATOR_LUA)
        subprocess.run([LUA, str(script), str(path), str(messages), str(seed), vocabulary],
                       env=lua_env(), check=True)
    size = path.stat().st_size
    if size < min_mb * MB:
        sys.exit(f"{path} is only {size / MB:.1f} MB, expected at least {min_mb} MB")
    return path


def ensure_big_list(path: Path, min_mb: float) -> tuple[Path, int]:
    """Concatenate copies of ``path`` (still a valid ``.list``) to at least ``min_mb`` MB."""
    size = path.stat().st_size
    copies = max(1, -(-int(min_mb * MB) // size))
    big = path.with_name(f"{path.stem}-x{copies}.list")
    if not big.exists() or big.stat().st_size != copies * size:
        tmp = big.with_name(big.name + ".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            data = src.read()
            for _ in range(copies):
                dst.write(data)
        tmp.replace(big)
    return big, copies


# ---------------------------------------------------------------------------
# Timing

def best_time(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Run ``fn`` ``reps`` times; return the best wall time and the last result."""
    best = float("inf")
    result = None
    for _ in range(reps):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def interleaved_best_times(fns: list[Callable[[], Any]], reps: int,
                           rounds: list[list[float]] | None = None) -> list[tuple[float, Any]]:
    """Like :func:`best_time` for several functions, run in turn, round after round.

    This machine has slower and faster spells lasting minutes; taking turns
    lets every contender meet the same spells, so their ratio is steadier than
    when each is timed in a block of its own.  ``rounds``, if given, receives
    every round's time of each function (for the spread).
    """
    best = [(float("inf"), None)] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            best[i] = (best[i][0], None)  # as best_time does: no earlier result alive while timing
            seconds, result = best_time(fn, 1)
            times[i].append(seconds)
            best[i] = (min(best[i][0], seconds), result)
    if rounds is not None:
        rounds[:] = times
    return best


def spread(times: list[float]) -> str:
    """How far the rounds were from the best: ``+x%`` for the median and the worst."""
    if not times:
        return ""
    ordered = sorted(times)
    best, median, worst = ordered[0], ordered[len(ordered) // 2], ordered[-1]
    return f"rounds: best {best * 1000:,.0f} ms, median +{(median / best - 1) * 100:.0f}%, " \
           f"worst +{(worst / best - 1) * 100:.0f}%"


@contextmanager
def pure_python_reader() -> Any:
    """Read without the compiled reader (as PROSODY_STORE_PURE=1 would), for the C/pure rows."""
    saved = serialization._creader
    serialization._creader = None
    try:
        yield
    finally:
        serialization._creader = saved


def load_average() -> str:
    """The machine's load from ``uptime`` (1, 5, 15 minutes)."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return out.strip().rpartition("load average:")[2].strip() or out.strip()


class Row:
    """One line of the results table."""

    def __init__(self, name: str, seconds: float | None, list_bytes: int, items: int | None,
                 note: str = "") -> None:
        self.name = name
        self.seconds = seconds
        self.list_bytes = list_bytes
        self.items = items
        self.note = note

    def cells(self) -> list[str]:
        """The row's table cells as text."""
        if self.seconds is None:
            return [self.name, "-", "-", "-", self.note]
        mbs = f"{self.list_bytes / MB / self.seconds:,.1f}" if self.list_bytes else "-"
        per_s = f"{self.items / self.seconds:,.0f}" if self.items else "-"
        return [self.name, f"{self.seconds * 1000:,.1f}", mbs, per_s, self.note]


def print_table(title: str, rows: list[Row]) -> None:
    """Print ``rows`` as an aligned table."""
    header = ["", "best ms", "MB/s", "items/s", "notes"]
    lines = [header] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    print(f"\n{title}")
    print("-" * (sum(widths) + 8 + max(len(line[4]) for line in lines)))
    for line in lines:
        left = line[0].ljust(widths[0])
        nums = "  ".join(c.rjust(w) for c, w in zip(line[1:4], widths[1:4]))
        print(f"{left}  {nums}  {line[4]}".rstrip())


# ---------------------------------------------------------------------------
# Contenders

def read_with_iter_list(path: Path) -> list:
    """This project: ``list(iter_list(open(path, 'rb')))``."""
    with open(path, "rb") as f:
        return list(iter_list(f))


def read_with_iter_list_pure(path: Path) -> list:
    """The same without the compiled reader: what PROSODY_STORE_PURE=1 runs."""
    with pure_python_reader():
        return read_with_iter_list(path)


def bench_iter_list_and_lua(path: Path, reps: int) -> tuple[Row, list, list[Row]]:
    """``iter_list`` and the ``lua5.4`` binary, timed in turns (see :func:`interleaved_best_times`).

    With the compiled reader in use, ``iter_list`` without it (pure Python)
    takes its turns too; the pure row then comes first of the returned rows.
    """
    size = path.stat().st_size
    if LUA is None:
        seconds, items = best_time(lambda: read_with_iter_list(path), reps)
        return (Row("iter_list (prosody_store)", seconds, size, len(items)), items,
                [Row("lua5.4 binary", None, size, None, "lua5.4 not installed")])
    script = OUT / "load_list.lua"
    script.write_text(LOADER_LUA)

    def load() -> bytes:
        return subprocess.run([LUA, str(script), str(path)], check=True, capture_output=True).stdout

    def empty() -> None:
        subprocess.run([LUA, "-e", ""], check=True)

    fns = [lambda: read_with_iter_list(path), load, empty]
    if C_READER:
        fns.append(lambda: read_with_iter_list_pure(path))
    rounds: list[list[float]] = []
    timed = interleaved_best_times(fns, reps, rounds)
    (t_ours, items), (t_load, out), (t_empty, _) = timed[:3]
    ours = Row(f"iter_list (prosody_store, {reader_name()})", t_ours, size, len(items),
               spread(rounds[0]))
    rows = [
        Row("lua5.4 binary (subprocess)", t_load, size, int(out),
            f"wall time, startup included; {spread(rounds[1])}"),
        Row("lua5.4 empty startup", t_empty, 0, None, "for scale; not subtracted above"),
    ]
    if C_READER:
        t_pure, pure_items = timed[3]
        rows.insert(0, Row("iter_list (pure Python reader)", t_pure, size, len(pure_items),
                           spread(rounds[3])))
    return ours, items, rows


def reader_name() -> str:
    """Which reader the rows marked "prosody_store" ran."""
    return "C reader" if C_READER else "pure Python"


def ensure_dat(list_path: Path) -> Path:
    """The archive's items as one ``.dat`` written by Prosody (generated once, cached)."""
    path = list_path.with_name(list_path.stem + "-records.dat")
    if not path.exists():
        script = OUT / "generate_dat.lua"
        script.write_text(DAT_GENERATOR_LUA)
        subprocess.run([LUA, str(script), str(list_path), str(path)], env=lua_env(), check=True)
    return path


def bench_loads_and_lua(list_path: Path, reps: int) -> list[Row]:
    """``loads`` of a large ``.dat`` against ``lua5.4`` loading it, timed in turns (and without
    the compiled reader, where it is in use)."""
    if LUA is None:
        return [Row("loads (.dat)", None, 0, None, "lua5.4 not installed; it writes the .dat")]
    path = ensure_dat(list_path)
    size = path.stat().st_size
    script = OUT / "load_dat.lua"
    script.write_text(DAT_LOADER_LUA)

    def ours() -> Any:
        return loads(path.read_bytes())

    def pure() -> Any:
        with pure_python_reader():
            return loads(path.read_bytes())

    def load() -> bytes:
        return subprocess.run([LUA, str(script), str(path)], check=True, capture_output=True).stdout

    fns = [ours, load] + ([pure] if C_READER else [])
    rounds: list[list[float]] = []
    timed = interleaved_best_times(fns, reps, rounds)
    (t_ours, value), (t_load, out) = timed[:2]
    rows = [Row(f"loads (prosody_store, {reader_name()})", t_ours, size, len(value), spread(rounds[0])),
            Row("lua5.4 binary (subprocess)", t_load, size, int(out),
                f"wall time, startup included; {spread(rounds[1])}")]
    if C_READER:
        t_pure, pure_value = timed[2]
        rows.insert(1, Row("loads (pure Python reader)", t_pure, size, len(pure_value),
                           spread(rounds[2])))
    return rows


def _lupa_module():
    """The lupa module for Lua 5.4 (what Prosody runs on here), or None."""
    try:
        import lupa
    except ImportError:
        return None
    try:
        import lupa.lua54 as mod
        return mod
    except ImportError:
        return lupa


def _lupa_to_python(value: Any, lua_type: Callable[[Any], Any]) -> Any:
    """Convert a Lua value from lupa to dicts/lists/str, recursively (keys 1..n -> list)."""
    if lua_type(value) != "table":
        return value
    pairs = [(k, _lupa_to_python(v, lua_type)) for k, v in value.items()]
    n = len(pairs)
    if n and all(k.__class__ is int and 1 <= k <= n for k, _ in pairs):
        out: list = [None] * n
        for k, v in pairs:
            out[k - 1] = v
        return out
    return dict(pairs)


def bench_lupa(path: Path, reps: int) -> list[Row]:
    """lupa: load the file in an in-process Lua 5.4, then convert to Python objects."""
    mod = _lupa_module()
    size = path.stat().st_size
    if mod is None:
        return [Row("lupa (load + convert)", None, size, None, INSTALL_HINT)]
    runtime = mod.LuaRuntime(encoding="utf-8")
    load_list = runtime.eval('''function(data)
        local items = {}
        local env = { item = function(v) items[#items + 1] = v end }
        assert(load(data, "=list", "t", env))()
        return items
    end''')
    lua_type = mod.lua_type

    def load_only():
        with open(path, "rb") as f:
            return load_list(f.read())

    def load_and_convert() -> list:
        return _lupa_to_python(load_only(), lua_type)

    t_load, result = best_time(load_only, reps)
    n = len(result)
    del result
    t_full, items = best_time(load_and_convert, reps)
    version = getattr(runtime, "lua_implementation", "Lua")
    return [
        Row("lupa (load + convert)", t_full, size, len(items), f"lupa {mod_version()}, {version}"),
        Row("lupa (load only, no conversion)", t_load, size, n, "Lua tables stay in Lua"),
    ]


def mod_version() -> str:
    """lupa's version, for the notes column."""
    try:
        import lupa
        return lupa.__version__
    except (ImportError, AttributeError):
        return "?"


def split_items(data: bytes) -> list[str]:
    """Cut a Prosody-written ``.list`` into the text of each item's value (what slpp needs)."""
    texts = []
    for chunk in data.split(b"\nitem("):
        if chunk.startswith(b"item("):
            chunk = chunk[5:]
        chunk = chunk.rstrip()
        if chunk.endswith(b");"):
            chunk = chunk[:-2]
        texts.append(chunk.decode("latin-1"))
    return texts


def bench_slpp(path: Path, reps: int, reference: list) -> Row:
    """slpp: decode each item's text (split beforehand, not timed)."""
    size = path.stat().st_size
    try:
        from slpp import slpp
    except ImportError:
        return Row("slpp (per item)", None, size, None, INSTALL_HINT)
    texts = split_items(path.read_bytes())

    def run() -> list:
        return [slpp.decode(t) for t in texts]

    try:
        seconds, items = best_time(run, reps)
    except Exception as err:  # slpp's failure is a result to report, not a crash
        return Row("slpp (per item)", None, size, None, f"raised {type(err).__name__}: {err}")
    wrong = sum(1 for ours, theirs in zip(reference, items) if ours != theirs)
    note = f"{wrong:,} of {len(items):,} items differ from iter_list's"
    return Row("slpp (per item)", seconds, size, len(items), note)


def bench_json_loads(items: list, list_size: int, reps: int) -> tuple[Row, str]:
    """``json.loads`` of the same items serialized once as a JSON array."""
    text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    seconds, result = best_time(lambda: json.loads(text), reps)
    json_mb = len(text.encode()) / MB
    note = f"input is {json_mb:.1f} MB of JSON ({json_mb / seconds:,.1f} MB/s of JSON)"
    return Row("json.loads (stdlib)", seconds, list_size, len(result), note), text


C_WRITER = serialization._cwriter is not None
# With the compiled writer: dumps at least 3x as fast as the pure-Python code.
TARGET_WRITER_SPEEDUP = 3.0


@contextmanager
def pure_python_writer() -> Any:
    """Write without the compiled writer (as PROSODY_STORE_PURE=1 would), for the C/pure rows."""
    saved = serialization._cwriter
    serialization._cwriter = None
    try:
        yield
    finally:
        serialization._cwriter = saved


def writer_name() -> str:
    return "C writer" if C_WRITER else "pure Python"


def bench_dumps(items: list, path: Path, reps: int) -> list[Row]:
    """Writing: ``dump_item`` (joined) and ``dumps`` of every item, with the
    compiled writer and in pure Python, timed in turns; ``json.dumps`` of the list.

    The first row is ``dump_item``'s, the last ``json.dumps``'; where the
    compiled writer is in use, rows 2-4 are pure ``dump_item``, ``dumps`` and
    pure ``dumps``, and every output is checked to be the same bytes.
    """
    size = path.stat().st_size
    prosody_bytes = path.read_bytes()

    def items_joined() -> bytes:
        return b"".join([dump_item(it) for it in items])

    def items_dumped() -> list[str]:
        return [serialization.dumps(it) for it in items]

    def pure(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with pure_python_writer():
                return fn()
        return run

    fns = [items_joined, pure(items_joined), items_dumped, pure(items_dumped)] if C_WRITER \
        else [items_joined]
    rounds: list[list[float]] = []
    results = interleaved_best_times(fns, reps, rounds)
    written = results[0][1]
    same = "output identical to Prosody's file" if written == prosody_bytes else \
        "output DIFFERS from Prosody's file"
    rows = [Row(f"dump_item, joined ({writer_name()})", results[0][0], size, len(items),
                f"{same}; {spread(rounds[0])}")]
    if C_WRITER:
        identical = results[1][1] == written
        rows.append(Row("dump_item, joined (pure Python)", results[1][0], size, len(items),
                        f"{'same bytes as the C writer' if identical else 'DIFFERENT BYTES'}; "
                        f"{spread(rounds[1])}"))
        identical = results[2][1] == results[3][1] and \
            "".join(f"item({t});\n" for t in results[2][1]).encode() == written
        rows.append(Row("dumps (C writer)", results[2][0], size, len(items),
                        f"{'same text as pure Python' if identical else 'DIFFERENT TEXT'}; "
                        f"{spread(rounds[2])}"))
        rows.append(Row("dumps (pure Python)", results[3][0], size, len(items), spread(rounds[3])))
    del results, written
    t_json, text = best_time(lambda: json.dumps(items, ensure_ascii=False,
                                                separators=(",", ":")), reps)
    rows.append(Row("json.dumps (stdlib)", t_json, size, len(items),
                    f"output is {len(text.encode()) / MB:.1f} MB of JSON"))
    return rows


# ---------------------------------------------------------------------------
# Memory, in a child process

def memory_child(path: str) -> None:
    """Stream ``path`` through iter_list, keeping nothing; print peak RSS figures as JSON."""
    import resource
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    count = 0
    start = time.perf_counter()
    with open(path, "rb") as f:
        for _ in iter_list(f):
            count += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "items": count,
                      "seconds": seconds, "vmhwm_kib": _vmhwm_kib()}))


def _vmhwm_kib() -> int | None:
    """This process's own peak RSS from /proc (a cross-check of ru_maxrss), if available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def bench_memory(path: Path, min_mb: float) -> dict:
    """Build the big list and measure iter_list's peak RSS on it in a fresh interpreter."""
    big, copies = ensure_big_list(path, min_mb)
    cmd = [sys.executable, __file__, "--memory-child", str(big)]
    if os.path.exists("/bin/sh"):
        # Linux carries the parent's peak RSS into a child's ru_maxrss across
        # fork/vfork + exec.  A small shell in between (which forks, as more
        # commands follow) gives the child a clean counter.
        cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    result.update(path=big, size=big.stat().st_size, copies=copies)
    return result


# ---------------------------------------------------------------------------
# Profile

def profile_iter_list(path: Path, slice_mb: float = 2.0, top: int = 15) -> str:
    """cProfile of iter_list on the first ``slice_mb`` MB (whole items); top functions by tottime."""
    data = path.read_bytes()
    cut = data.find(b"\nitem(", int(slice_mb * MB))
    sample = data[:cut + 1] if cut >= 0 else data
    profiler = cProfile.Profile()
    profiler.enable()
    n = sum(1 for _ in iter_list(io.BytesIO(sample)))
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    body = stream.getvalue().strip()
    return f"cProfile of iter_list over {len(sample) / MB:.1f} MB ({n:,} items), " \
           f"top {top} by tottime:\n{body}"


# ---------------------------------------------------------------------------
# Report

def ratio_line(label: str, ours: Row, peer: Row, target: float | None = None,
               target_text: str = "") -> str:
    """``ours.seconds / peer.seconds`` with a verdict against ``target`` (time ratio, lower wins)."""
    if ours.seconds is None or peer.seconds is None:
        return f"  {label:<34} n/a ({peer.note or 'not measured'})"
    r = ours.seconds / peer.seconds
    speed = f"{1 / r:.2f}x as fast as" if r <= 1 else f"{r:.2f}x slower than"
    text = f"  {label:<34} time ratio {r:6.2f}  (ours is {speed} the peer)"
    if target is not None:
        text += f"  target {target_text}: {'MET' if r <= target else 'NOT MET'}"
    return text


def bench_distinct_words(cfg: dict, reps: int, slow_reps: int) -> None:
    """The same messages with every word made up at random: the escape memo hardly ever hits.

    The main archive draws its words from a small vocabulary, as chat does
    (the same words recur), and the reader converts each distinct run of
    escaped bytes once.  Here two words in three are distinct non-ASCII words,
    about 60% of the file is decimal escapes, and every run is new.  No
    target; it shows what to expect of text that never repeats.
    """
    path = ensure_archive(cfg["messages"], SEED, 0, "distinct")
    size = path.stat().st_size
    ours, _, lua_rows = bench_iter_list_and_lua(path, reps)
    lupa_rows = bench_lupa(path, slow_reps)
    lua_row = lua_rows[1] if C_READER else lua_rows[0]
    print_table(f"Reading text that never repeats: {path.name} ({size / MB:.1f} MB, "
                f"every word made up at random)", [ours, lupa_rows[0]] + lua_rows[:-1])
    print(ratio_line("iter_list vs lupa (load+convert)", ours, lupa_rows[0]))
    print(ratio_line("iter_list vs lua5.4 binary", ours, lua_row,
                     TARGET_VS_LUA if C_READER else None, f"within {TARGET_VS_LUA:g}x"))
    if C_READER:
        print(ratio_line("iter_list: C reader vs pure Python", ours, lua_rows[0]))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every benchmark, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke run (2,000 messages, 20 MB for memory)")
    parser.add_argument("--profile", action="store_true",
                        help="always print a cProfile of iter_list (else only when a target is missed)")
    parser.add_argument("--memory-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0

    cfg = QUICK if args.quick else FULL
    reps, slow_reps = cfg["reps"], cfg["slow_reps"]
    path = ensure_archive(cfg["messages"], SEED, cfg["min_list_mb"])
    size = path.stat().st_size
    print(f"prosody_store codec benchmark{' (--quick)' if args.quick else ''}")
    print(f"Python {sys.version.split()[0]}, lua5.4 at {LUA}, Prosody modules in {PROSODY_LIB}")
    print(f"codec: prosody_store/{{{','.join(CODEC_SOURCES)}}} {codec_version()}")
    print(f"implementation: {prosody_store.IMPLEMENTATION} (reading rows: {reader_name()}); "
          f"load average at start: {load_average()}")
    print(f"input: {path.relative_to(ROOT)}")
    print(f"       {cfg['messages']:,} mod_mam-shaped messages, {size / MB:.1f} MB, "
          f"written by Prosody's util.serialization (seed {SEED})")
    print(f"best of {reps} runs ({slow_reps} for slpp and lupa)")

    ours, items, lua_rows = bench_iter_list_and_lua(path, reps)
    pure_row = lua_rows.pop(0) if C_READER else None
    read_rows = [ours] + ([pure_row] if pure_row else [])
    lupa_rows = bench_lupa(path, slow_reps)
    read_rows += lupa_rows
    slpp_row = bench_slpp(path, slow_reps, items)
    read_rows.append(slpp_row)
    read_rows += lua_rows
    json_row, _ = bench_json_loads(items, size, reps)
    read_rows.append(json_row)
    print_table("Reading (MB/s = .list megabytes per second)", read_rows)

    dat_rows = bench_loads_and_lua(path, reps)
    if dat_rows[0].seconds is not None:
        print_table(f"Reading a large .dat: {ensure_dat(path).name} "
                    f"({dat_rows[0].list_bytes / MB:.1f} MB; MB/s = .dat megabytes per second, "
                    f"items = top-level entries)", dat_rows)

    write_rows = bench_dumps(items, path, reps)
    print_table("Writing", write_rows)
    del items
    gc.collect()

    mem = bench_memory(path, cfg["memory_mb"])
    peak_mb = (mem["peak_kib"] - mem["baseline_kib"]) * 1024 / MB
    print(f"\nMemory: iter_list streaming {mem['path'].name} ({mem['size'] / MB:.1f} MB, "
          f"{mem['copies']} copies, {mem['items']:,} items) in a child process")
    print(f"  baseline RSS after imports {mem['baseline_kib'] * 1024 / MB:.1f} MB, "
          f"peak {mem['peak_kib'] * 1024 / MB:.1f} MB")
    print(f"  peak above baseline {peak_mb:.1f} MB  target < {TARGET_PEAK_MB:.0f} MB: "
          f"{'MET' if peak_mb < TARGET_PEAK_MB else 'NOT MET'}  "
          f"({mem['size'] / MB / mem['seconds']:.1f} MB/s)")
    if mem.get("vmhwm_kib"):
        print(f"  cross-check: /proc VmHWM at the end {mem['vmhwm_kib'] * 1024 / MB:.1f} MB")

    print("\nRatios (time of ours / time of peer; < 1 means ours is faster)")
    print(ratio_line("iter_list vs lupa (load+convert)", ours, lupa_rows[0],
                     TARGET_VS_LUPA, "faster"))
    print(ratio_line("iter_list vs lua5.4 binary", ours, lua_rows[0],
                     TARGET_VS_LUA, f"within {TARGET_VS_LUA:g}x"))
    if pure_row is not None:
        print(ratio_line("iter_list: C reader vs pure Python", ours, pure_row))
    if dat_rows[0].seconds is not None:
        print(ratio_line("loads (.dat) vs lua5.4 binary", dat_rows[0], dat_rows[-1],
                         TARGET_VS_LUA if C_READER else None, f"within {TARGET_VS_LUA:g}x"))
        if C_READER:
            print(ratio_line("loads (.dat): C reader vs pure Python", dat_rows[0], dat_rows[1]))
    print(ratio_line("iter_list vs slpp", ours, slpp_row))
    print(ratio_line("iter_list vs json.loads", ours, json_row))
    print(ratio_line("dump_item vs json.dumps", write_rows[0], write_rows[-1]))
    if C_WRITER:
        print(ratio_line("dumps: C writer vs pure Python", write_rows[2], write_rows[3],
                         1 / TARGET_WRITER_SPEEDUP, f"{TARGET_WRITER_SPEEDUP:g}x as fast"))
        print(ratio_line("dump_item: C writer vs pure Python", write_rows[0], write_rows[1],
                         1 / TARGET_WRITER_SPEEDUP, f"{TARGET_WRITER_SPEEDUP:g}x as fast"))

    bench_distinct_words(cfg, reps, slow_reps)
    print(f"\nload average at the end: {load_average()}")

    missed = any(
        ours.seconds is not None and peer.seconds is not None and ours.seconds / peer.seconds > t
        for peer, t in ((lupa_rows[0], TARGET_VS_LUPA), (lua_rows[0], TARGET_VS_LUA)))
    if args.profile or missed:
        print("\n" + profile_iter_list(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
