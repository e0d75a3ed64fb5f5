"""Benchmark: the HTTP service against the original mod_data_access's figures (SPEC section 6).

Usage: ``python3 bench/http.py [--duration 10] [--threads 4] [--load auto|wrk|python]``
or ``python3 bench/http.py --shapes [--only NAME,...]`` (what one request body costs, below)
or ``python3 bench/http.py --archive [ITEMS]`` (archive query pages against a plain GET).

Serves a copy of ``fixtures/demo`` with ``prosody-store serve`` (waitress,
``--threads 4``) on 127.0.0.1 in a subprocess, and loads it from another process
with an authenticated ``GET /data/roster`` (a small keyval store):

* for ``alice``, an ``internal_hashed`` account written by prosodyctl
  (SCRAM-SHA-1, 10,000 PBKDF2 iterations): the original runs PBKDF2 on every
  request (about 150 requests/s); we verify once and then answer from the
  credential cache, so the target is at least 10x;
* for an ``internal_plain`` account: the original manages about 3,000
  requests/s; the target is to be no slower (1x).

Load: ``wrk`` (2 threads, 8 connections, ``--latency`` for the 99th percentile,
the Authorization header set by a Lua script), installed with apt-get when it
is missing and we run as root; otherwise (or with ``--load python``) a Python
load generator: 2 processes x 4 threads, one keep-alive http.client connection
per thread, for the same duration.  Every response must be a 200.

``--shapes``: the worst request bodies we know, one fresh server process per
shape (so that each peak is its own): a warm-up GET, then a PUT of the shape
(10 MiB, or the largest the value cap accepts) and a GET of it as JSON.  For
each request: the status, the wall time seen by the client, and the growth of
the server's peak RSS (``VmHWM`` in ``/proc/PID/status``) over its peak after
the warm-up; the GET's growth is the peak over both requests.  The first row is
a trivial body, the reference.  The GET must be JSON the json module reads.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named http.py: keep its directory off the path, or it would shadow
# the standard library's http package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(ROOT))

from prosody_store.datamanager import DataManager  # noqa: E402

ORIGINAL = {"hashed": 150.0, "plain": 3000.0}  # requests/s, SPEC section 6
TARGET = {"hashed": 10.0, "plain": 1.0}  # ratio to the original
ACCOUNTS = {"hashed": ("alice@localhost", "wonderland"), "plain": ("pat@localhost", "plain-pw")}
PATH = "/data/roster"
BASELINE_APP = r"""
import sys, waitress
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""

LOADER = r"""
import http.client, json, sys, threading, time
host, port, path, auth, duration, nthreads = sys.argv[1:7]
port, duration, nthreads = int(port), float(duration), int(nthreads)
lat, errors, lock = [], [0], threading.Lock()
start = time.monotonic()
end = start + duration
def worker():
    mine, bad = [], 0
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while True:
        t0 = time.monotonic()
        if t0 >= end:
            break
        try:
            conn.request("GET", path, headers={"Authorization": auth})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                bad += 1
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
        except OSError:
            bad += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        mine.append(time.monotonic() - t0)
    conn.close()
    with lock:
        lat.extend(mine)
        errors[0] += bad
threads = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"latencies": lat, "errors": errors[0], "elapsed": time.monotonic() - start}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(jid: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{jid}:{password}".encode()).decode()


def find_wrk(install: bool) -> str | None:
    wrk = shutil.which("wrk")
    if wrk or not install:
        return wrk
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    print("installing wrk (apt-get install -y wrk) ...", file=sys.stderr)
    try:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (subprocess.SubprocessError, OSError):
        return None
    return shutil.which("wrk")


def _seconds(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def run_wrk(wrk: str, url: str, auth: str, duration: float, work: Path) -> dict:
    script = work / "auth.lua"
    script.write_text(f'wrk.method = "GET"\nwrk.headers["Authorization"] = {json.dumps(auth)}\n')
    out = subprocess.run([wrk, "-t2", "-c8", f"-d{int(duration)}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _seconds(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p99": p99, "requests": total, "errors": errors,
            "socket_errors": sock.group(1) if sock else "none", "tool": "wrk -t2 -c8 --latency"}


def run_python(port: int, auth: str, duration: float) -> dict:
    procs = [subprocess.Popen([sys.executable, "-c", LOADER, "127.0.0.1", str(port), PATH, auth,
                               str(duration), "4"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]
    results = [json.loads(p.communicate(timeout=duration + 60)[0]) for p in procs]
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return {"rps": len(latencies) / elapsed, "p99": p99, "requests": len(latencies),
            "errors": sum(r["errors"] for r in results), "socket_errors": "n/a",
            "tool": "python http.client, 2 processes x 4 keep-alive connections"}


def stop(proc: subprocess.Popen | None) -> None:
    """End a server subprocess (terminate, then kill after 10 s)."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_for(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("server did not start in time")
            time.sleep(0.05)


def check_once(port: int, auth: str) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", PATH, headers={"Authorization": auth})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200:
        raise SystemExit(f"warm-up GET {PATH}: {r.status} {body!r}")


# -- --shapes ------------------------------------------------------------------

MIB = 1024 * 1024
MAX_BODY = 10 * MIB  # the server's default --max-body


def _repeat(open_: bytes, item: bytes, sep: bytes, close: bytes, *, size: int = MAX_BODY,
            items: int | None = None) -> bytes:
    """``open_ item sep item ... close``: ``items`` items, or as many as fit in ``size``."""
    n = (size - len(open_) - len(close) + len(sep)) // (len(item) + len(sep))
    if items is not None:
        n = min(n, items)
    return open_ + sep.join([item] * n) + close


_MIXED = b"a\\127\\195\\169\\\\\\'\\\"\\n\\0"  # Lua escapes of DEL, e-acute, \\ ' " newline NUL


def _nested(depth: int, inner: bytes, fmt: str) -> bytes:
    o, c = (b"[", b"]") if fmt == "json" else (b"{", b"}")
    return o * depth + inner + c * depth


def shapes() -> list[tuple[str, str, bytes]]:
    """(name, format, body): the reference first, then the worst shapes we found.

    "cap" bodies hold as many items as the value cap accepts (a list of n items
    is n + 1 values); "10M" ones fill --max-body and are over the cap.
    """
    from wsgi_app.limits import DEFAULT_MAX_VALUES as cap

    n = cap - 1
    deep = cap - 126  # 125 wrapping lists, the list of tables, its tables: 127 deep
    return [
        ("reference {\"a\":1}", "json", b'{"a":1}'),
        ("json [{},...] 10M", "json", _repeat(b"[", b"{}", b",", b"]")),
        ("json [{},...] cap", "json", _repeat(b"[", b"{}", b",", b"]", items=n)),
        ("json [[],...] 10M", "json", _repeat(b"[", b"[]", b",", b"]")),
        ("json [[],...] cap", "json", _repeat(b"[", b"[]", b",", b"]", items=n)),
        ("json {\"k\":{},...} cap", "json",
         b"{" + b",".join(b'"k%d":{}' % i for i in range(n)) + b"}"),
        ("json [\"ab\",...] 10M", "json", _repeat(b"[", b'"ab"', b",", b"]")),
        ("json [\"ab\",...] cap", "json", _repeat(b"[", b'"ab"', b",", b"]", items=n)),
        ("json [1,...] cap", "json", _repeat(b"[", b"1", b",", b"]", items=n)),
        ("json [0.1234567890123,...] cap", "json",
         _repeat(b"[", b"0.1234567890123", b",", b"]", items=n)),
        ("json [\"<40 chars>\",...] cap", "json",
         _repeat(b"[", b'"' + b"x" * 40 + b'"', b",", b"]", items=n)),
        ("json depth 1000 (refused)", "json", _nested(1000, b"1", "json")),
        ("json depth 127 + [{},...] cap", "json",
         _nested(125, _repeat(b"[", b"{}", b",", b"]", items=deep), "json")),
        ("json one 10M string", "json", b'{"s":"' + b"x" * (MAX_BODY - 8) + b'"}'),
        ("json 10M of \\u00e9", "json", b'["' + b"\\u00e9" * ((MAX_BODY - 4) // 6) + b'"]'),
        ("json 10M of \\n", "json", b'["' + b"\\n" * ((MAX_BODY - 4) // 2) + b'"]'),
        ("json 10M of \\\"\\\\", "json", b'["' + b'\\"\\\\' * ((MAX_BODY - 4) // 4) + b'"]'),
        # null sends JSON to the full reader (not the json module), escapes and all.
        ("json 10M of \\u00e9, null", "json",
         b'["' + b"\\u00e9" * ((MAX_BODY - 12) // 6) + b'",null]'),
        ("json 10M of \\n, null", "json", b'["' + b"\\n" * ((MAX_BODY - 12) // 2) + b'",null]'),
        ("json 10M numeral 111...1e", "json", b"[" + b"1" * (MAX_BODY - 3) + b"e]"),
        ("json 10M numeral 0.000...1", "json", b"[0." + b"0" * (MAX_BODY - 5) + b"1]"),
        ("lua {{},...} 10M", "lua", _repeat(b"{", b"{}", b",", b"}")),
        ("lua {{},...} cap", "lua", _repeat(b"{", b"{}", b",", b"}", items=n)),
        ("lua prosody layout {};... cap", "lua",
         _repeat(b"return {\n", b"\t{};", b"\n", b"\n};\n", items=n - 1)),  # ";" after "}"
        ("lua {'ab',...} cap", "lua", _repeat(b"{", b"'ab'", b",", b"}", items=n)),
        ("lua {0.1234567890123,...} cap", "lua",
         _repeat(b"{", b"0.1234567890123", b",", b"}", items=n)),
        ("lua {k1={},...} cap", "lua",
         b"{" + b",".join(b"k%d={}" % i for i in range(n)) + b"}"),
        ("lua depth 127 + {{},...} cap", "lua",
         _nested(125, _repeat(b"{", b"{}", b",", b"}", items=deep), "lua")),
        ("lua one 10M long string", "lua", b"{[==[" + b"x" * (MAX_BODY - 10) + b"]==]}"),
        ("lua 10M of \\195\\169", "lua", b'{"' + b"\\195\\169" * ((MAX_BODY - 4) // 8) + b'"}'),
        ("lua 10M of \\1", "lua", b'{"' + b"\\1" * ((MAX_BODY - 4) // 2) + b'"}'),
        ("lua 10M of \\x41", "lua", b'{"' + b"\\x41" * ((MAX_BODY - 4) // 4) + b'"}'),
        # DEL, which Prosody writes as \127: the stored file goes to the full reader on GET.
        ("lua 10M mixed escapes", "lua",
         b'{"' + _MIXED * ((MAX_BODY - 4) // len(_MIXED)) + b'"}'),
        ("lua 10M numeral 111...1a", "lua", b"{" + b"1" * (MAX_BODY - 3) + b"a}"),
        ("lua 10M numeral 0x111...1", "lua", b"{0x" + b"1" * (MAX_BODY - 4) + b"}"),
        ("lua 10M of comments, 2 values", "lua",
         b"{" + _repeat(b"", b"--{,;\n", b"", b"", size=MAX_BODY - 10) + b"1,2}"),
    ]


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/PID/status")


def timed_request(port: int, method: str, path: str, body: bytes | None,
                  headers: dict[str, str]) -> tuple[int, bytes, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, data, time.perf_counter() - t0
    finally:
        conn.close()


def run_shapes(only: list[str] | None) -> int:
    auth = basic(*ACCOUNTS["hashed"])
    content_types = {"json": "application/json", "lua": "text/x-lua"}
    rows = []
    chosen = [s for s in shapes() if not only or s[0].startswith("reference")
              or any(o in s[0] for o in only)]
    print(f"one fresh `prosody-store serve` per shape on 127.0.0.1; PUT /data/shape, then "
          f"GET /data/shape (application/json); peak RSS growth over the server's peak "
          f"after a warm-up GET ({os.cpu_count()} CPUs)")
    print()
    print(f"{'shape':<34} {'body':>8} {'PUT':>4} {'time s':>7} {'+peak MB':>9}  "
          f"{'GET':>4} {'time s':>7} {'+peak MB':>9} {'answer':>8}  JSON")
    for name, fmt, body in chosen:
        work = Path(tempfile.mkdtemp(prefix="bench-shapes-"))
        port = free_port()
        proc = None
        try:
            data = work / "data"
            shutil.copytree(ROOT / "fixtures" / "demo", data)
            with open(work / "server.log", "wb") as log:  # the child keeps its own copy
                proc = subprocess.Popen(
                    [sys.executable, "-m", "prosody_store", "--data-path", str(data), "serve",
                     "--listen", f"127.0.0.1:{port}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            wait_for(port, proc)
            check_once(port, auth)
            base = peak_rss_kib(proc.pid)
            status, reply, put_s = timed_request(port, "PUT", "/data/shape", body, {
                "Authorization": auth, "Content-Type": content_types[fmt]})
            put_mb = (peak_rss_kib(proc.pid) - base) / 1024
            row = (f"{name:<34} {len(body) / MIB:>7.2f}M {status:>4} {put_s:>7.2f} {put_mb:>9.1f}  ")
            if status == 201:
                gstatus, answer, get_s = timed_request(port, "GET", "/data/shape", None, {
                    "Authorization": auth, "Accept": "application/json"})
                get_mb = (peak_rss_kib(proc.pid) - base) / 1024
                try:
                    json.loads(answer)
                    valid = "valid"
                except ValueError:
                    valid = "INVALID"
                row += (f"{gstatus:>4} {get_s:>7.2f} {get_mb:>9.1f} {len(answer) / MIB:>7.2f}M  "
                        f"{valid}")
                rows.append(valid == "valid" and gstatus == 200)
            else:
                row += f"{'-':>4} {'':>7} {'':>9} {'':>8}  ({reply.decode(errors='replace').strip()})"
            print(row, flush=True)
        finally:
            stop(proc)
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(rows) else 1


def _bench_module(name: str):
    """A sibling benchmark module (this directory is kept off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_archive(n: int) -> int:
    """Archive queries over HTTP against a plain GET of the same archive.

    The archive is bench/archive_query.py's (built once, cached in bench/out);
    it is hard-linked into a copy of the demo data as alice's ``archive``.
    """
    aq = _bench_module("archive_query")
    source = aq.data_dir(n)
    if not source.exists():
        print(f"building a {n:,}-item archive in {source} (once)...", flush=True)
        aq.build(source, n)
    src_list = Path(DataManager(source).getpath(aq.USER, aq.HOST, aq.STORE, "list"))
    work = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=_HERE / "out"))
    port = free_port()
    proc = None
    try:
        data = work / "data"
        shutil.copytree(ROOT / "fixtures" / "demo", data)
        dm = DataManager(data)
        target = Path(dm.getpath("alice", "localhost", "archive", "list"))
        for ext in ("list", "lidx"):  # the demo's own archive makes way for the big one
            if target.with_suffix("." + ext).exists():
                os.unlink(target.with_suffix("." + ext))
            os.link(src_list.with_suffix("." + ext), target.with_suffix("." + ext))
        with dm.list_open("alice", "localhost", "archive") as view:
            middle = n // 2
            start, end = view[middle]["when"], view[middle + 49]["when"]
        log = open(work / "server.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "prosody_store", "--data-path", str(data), "serve",
             "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log)
        wait_for(port, proc)
        headers = {"Authorization": basic(*ACCOUNTS["hashed"])}
        timed_request(port, "GET", "/data/roster", None, headers)  # the login, cached

        def best(path: str, reps: int = 5) -> tuple[float, int]:
            times, size = [], 0
            for _ in range(reps):
                status, body, seconds = timed_request(port, "GET", path, None, headers)
                assert status == 200, (path, status, body[:200])
                times.append(seconds)
                size = len(body)
            return min(times), size

        last, last_size = best("/data/archive?before=&max=50")
        window, window_size = best(f"/data/archive?start={start}&end={end}&max=50")
        print(f"{n:,}-item archive ({src_list.stat().st_size / 1e6:,.1f} MB), waitress on "
              f"127.0.0.1, best of 5; then one plain GET of the whole archive...", flush=True)
        plain, plain_size = best("/data/archive", reps=1)
        print()
        print(f"{'request':<44} {'time':>10} {'body':>12} {'plain GET / this':>17}")
        for name, seconds, size in (("GET /data/archive?before=&max=50 (last page)", last,
                                     last_size),
                                    ("GET ...?start=..&end=.. (50, in the middle)", window,
                                     window_size),
                                    ("GET /data/archive (plain, the whole list)", plain,
                                     plain_size)):
            print(f"{name:<44} {seconds * 1e3:>8.1f}ms {size / 1e6:>10.2f}MB "
                  f"{plain / seconds:>16,.0f}x")
        return 0
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (default 4)")
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator (auto: wrk if available or installable)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--shapes", action="store_true",
                        help="instead: what the worst request bodies cost (time, peak RSS)")
    parser.add_argument("--only", metavar="NAME,...",
                        help="with --shapes: only the shapes whose name contains one of these")
    parser.add_argument("--archive", type=int, nargs="?", const=1_000_000, metavar="ITEMS",
                        help="instead: archive query pages against a plain GET of an archive "
                             "of ITEMS items (default 1,000,000)")
    args = parser.parse_args()
    if args.archive:
        return run_archive(args.archive)
    if args.shapes:
        return run_shapes(args.only.split(",") if args.only else None)

    wrk = None if args.load == "python" else find_wrk(install=not args.no_install)
    if args.load == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed")

    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    port = free_port()
    proc = None
    try:
        data = work / "data"
        shutil.copytree(ROOT / "fixtures" / "demo", data)
        dm = DataManager(data)
        dm.store("pat", "localhost", "accounts", {"password": "plain-pw"})
        dm.store("pat", "localhost", "roster", dm.load("alice", "localhost", "roster"))
        record = dm.load("alice", "localhost", "accounts")
        log = open(work / "server.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "prosody_store", "--data-path", str(data), "serve",
             "--listen", f"127.0.0.1:{port}", "--threads", str(args.threads)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(port, proc)
        print(f"server: prosody-store serve (waitress, {args.threads} threads) on 127.0.0.1:{port}, "
              f"GET {PATH} ({os.cpu_count()} CPUs)")
        print(f"hashed account: SCRAM-SHA-{'1' if len(record['stored_key']) == 40 else '256'}, "
              f"{record['iteration_count']} iterations (prosodyctl); plain account: internal_plain")
        rows = []
        for kind, (jid, password) in ACCOUNTS.items():
            auth = basic(jid, password)
            check_once(port, auth)
            result = (run_wrk(wrk, f"http://127.0.0.1:{port}{PATH}", auth, args.duration, work)
                      if wrk else run_python(port, auth, args.duration))
            ratio = result["rps"] / ORIGINAL[kind]
            ok = ratio >= TARGET[kind] and result["errors"] == 0
            rows.append((kind, result, ratio, ok))
            print(f"load: {result['tool']}, {args.duration:g} s; {result['requests']} requests, "
                  f"{result['errors']} non-200, socket errors: {result['socket_errors']}")
        # The ceiling on this machine: a WSGI app that does nothing, same server, same load.
        proc.terminate()
        proc.wait(timeout=10)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(port), str(args.threads)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(port, proc)
        base = (run_wrk(wrk, f"http://127.0.0.1:{port}{PATH}", "none", args.duration, work)
                if wrk else run_python(port, "none", args.duration))
        print()
        print(f"{'account':<8} {'req/s':>10} {'p99 ms':>9} {'original':>9} {'ratio':>8} {'target':>7}  result")
        for kind, result, ratio, ok in rows:
            print(f"{kind:<8} {result['rps']:>10.0f} {result['p99'] * 1000:>9.2f} {ORIGINAL[kind]:>9.0f} "
                  f"{ratio:>7.1f}x {TARGET[kind]:>6.0f}x  {'PASS' if ok else 'FAIL'}")
        print(f"{'(empty)':<8} {base['rps']:>10.0f} {base['p99'] * 1000:>9.2f}"
              "   baseline: a WSGI app that does nothing, same waitress and load")
        return 0 if all(ok for *_, ok in rows) else 1
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
