"""Benchmark: the HTTP service against Prosody + mod_data_access, measured in the same run.

Usage: ``python3 bench/http.py [--duration 5] [--rounds 3] [--threads 4] [--workers 2]``
or ``python3 bench/http.py --shapes [--only NAME,...]`` (what one request body costs, below)
or ``python3 bench/http.py --archive [ITEMS]`` (archive query pages against a plain GET).

Starts, each on its own 127.0.0.1 port, on copies of ``fixtures/demo``:

* **Prosody** 0.12 (``prosody -F``, Debian's package) with ``mod_data_access``
  from prosody-modules (found in ``--prosody-modules DIR``, default
  ``bench/out/prosody-modules``: ``hg clone https://hg.prosody.im/prosody-modules/
  bench/out/prosody-modules``).  mod_data_access calls ``unpack``, which Lua 5.4
  does not have (every request would be a 500, SPEC section 6), so a one-line
  module of ours puts ``table.unpack`` there first; the module runs unchanged.
* our service under **waitress** (``prosody-store serve --threads 4``) and under
  **granian** (``--server granian --workers 2``, 4 threads each);
* as the scale of each server, a WSGI app that does nothing (answers ``{}``)
  under waitress (4 threads) and under granian (2 workers).

Each is loaded with ``wrk -t2 -c8`` (``--connections N`` for ``-cN``; a Lua
script sets ``Authorization`` and ``Host``) with an authenticated ``GET
/data/roster`` (a small keyval store):

* ``plain``: ``pat@plain.localhost``, an ``internal_plain`` account (Prosody's
  host uses ``authentication = "internal_plain"``);
* ``scram``: ``alice@localhost``, an ``internal_hashed`` account written by
  prosodyctl (SCRAM-SHA-1, 10,000 PBKDF2 iterations): Prosody derives the key
  on every request, we once per login (the credential cache).

Rounds are interleaved (every server once per round and account, in turn);
the table gives the best requests/s, the ratio of the bests to Prosody's, the
spread of the per-round ratios (each against Prosody's run of the same round),
and the load (``uptime``) before and after.  Targets: waitress 0.8x Prosody on
plain and 20x on scram, granian 3x and 30x.  Every response must be a 200.

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
import statistics
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

ACCOUNTS = {"plain": ("pat@plain.localhost", "plain-pw"),
            "scram": ("alice@localhost", "wonderland")}
PLAIN_HOST = "plain.localhost"
TARGETS = {("waitress", "plain"): 0.8, ("waitress", "scram"): 20.0,
           ("granian", "plain"): 3.0, ("granian", "scram"): 30.0}
"""Ratio to Prosody + mod_data_access, per server and account."""
PATH = "/data/roster"
SERVERS = ("prosody", "waitress", "granian", "empty waitress", "empty granian")
EMPTY_APP = r"""
import sys
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
if __name__ == "__main__":
    import waitress
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]),
                   _quiet=True)
"""
# Lua 5.4 has no global unpack (table.unpack since Lua 5.2); mod_data_access calls it.
UNPACK_SHIM = """if rawget(_G, "unpack") == nil then rawset(_G, "unpack", table.unpack) end\n"""
PROSODY_CONFIG = """run_as_root = true
daemonize = false
data_path = "{data}"
pidfile = "{work}/prosody.pid"
certificates = "{work}/certs"
plugin_paths = {{ "{plugins}" }}
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{work}/prosody.log" }} }}
c2s_ports = {{}}
s2s_ports = {{}}
c2s_direct_tls_ports = {{}}
https_ports = {{}}
http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
modules_enabled = {{ "lua54_unpack", "http", "data_access" }}
modules_disabled = {{ "s2s", "c2s", "offline", "tls" }}
storage = "internal"
VirtualHost "localhost"
    authentication = "internal_hashed"
VirtualHost "{plain_host}"
    authentication = "internal_plain"
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


def run_wrk(wrk: str, url: str, auth: str, host: str, duration: float, work: Path,
            connections: int = 8) -> dict:
    """One wrk run (2 threads, ``connections`` connections) against ``url`` with
    these ``Authorization`` and ``Host`` headers."""
    script = work / "wrk.lua"
    script.write_text(f'wrk.method = "GET"\nwrk.headers["Authorization"] = {json.dumps(auth)}\n'
                      f'wrk.headers["Host"] = {json.dumps(host)}\n')
    out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _seconds(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p99": p99, "requests": total, "errors": int(bad.group(1)) if bad else 0,
            "socket_errors": sock.group(1) if sock else None}


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


def check_once(port: int, auth: str, host: str = "localhost") -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", PATH, headers={"Authorization": auth, "Host": host})
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
    auth = basic(*ACCOUNTS["scram"])
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
        headers = {"Authorization": basic(*ACCOUNTS["scram"])}
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


def prosody_modules(option: str | None) -> Path | None:
    """The prosody-modules checkout holding mod_data_access, or None."""
    root = Path(option) if option else _HERE / "out" / "prosody-modules"
    return root if (root / "mod_data_access" / "mod_data_access.lua").is_file() else None


def prepare_data(target: Path) -> None:
    """A copy of fixtures/demo with the plain account: pat@plain.localhost, alice's roster."""
    shutil.copytree(ROOT / "fixtures" / "demo", target)
    dm = DataManager(target)
    dm.store("pat", PLAIN_HOST, "accounts", {"password": "plain-pw"})
    dm.store("pat", PLAIN_HOST, "roster", dm.load("alice", "localhost", "roster"))


def start_servers(work: Path, modules: Path, threads: int, workers: int
                  ) -> dict[str, tuple[subprocess.Popen, int]]:
    """Every server of SERVERS, each on its own data copy and port, accepting:
    name -> (process, port)."""
    started: dict[str, tuple[subprocess.Popen, int]] = {}
    logs = work / "logs"
    logs.mkdir()
    ports = {name: free_port() for name in SERVERS}

    def launch(name: str, command: list[str], cwd: Path = ROOT) -> None:
        with open(logs / f"{name.replace(' ', '-')}.log", "wb") as log:  # the child has a copy
            proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        started[name] = (proc, ports[name])

    # Prosody: its own data copy, a plugin directory with mod_data_access and the shim.
    plugins = work / "plugins"
    plugins.mkdir()
    shutil.copy(modules / "mod_data_access" / "mod_data_access.lua", plugins)
    (plugins / "mod_lua54_unpack.lua").write_text(UNPACK_SHIM)
    (work / "certs").mkdir()
    prepare_data(work / "prosody-data")
    config = work / "prosody.cfg.lua"
    config.write_text(PROSODY_CONFIG.format(data=work / "prosody-data", work=work, plugins=plugins,
                                            port=ports["prosody"], plain_host=PLAIN_HOST))
    launch("prosody", ["prosody", "--config", str(config), "-F"])
    for name, extra in (("waitress", []),
                        ("granian", ["--server", "granian", "--workers", str(workers)])):
        prepare_data(work / f"{name}-data")
        launch(name, [sys.executable, "-m", "prosody_store", "--data-path",
                      str(work / f"{name}-data"), "serve", "--threads", str(threads), *extra,
                      "--listen", f"127.0.0.1:{ports[name]}"])
    (work / "empty_app.py").write_text(EMPTY_APP)
    launch("empty waitress", [sys.executable, str(work / "empty_app.py"),
                              str(ports["empty waitress"]), str(threads)])
    launch("empty granian", [sys.executable, "-m", "granian", "--interface", "wsgi", "--no-ws",
                             "--http", "1", "--workers", str(workers), "--blocking-threads",
                             str(threads), "--log-level", "warning", "--host", "127.0.0.1",
                             "--port", str(ports["empty granian"]), "empty_app:app"], cwd=work)
    for proc, port in started.values():
        wait_for(port, proc)
    return started


def load() -> str:
    """The load averages (``uptime``)."""
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each running every server once per account (default 3)")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads of waitress, and of each granian worker (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="granian workers (default 2)")
    parser.add_argument("--connections", type=int, default=8,
                        help="wrk's open connections (default 8)")
    parser.add_argument("--prosody-modules", metavar="DIR",
                        help="a prosody-modules checkout (default bench/out/prosody-modules)")
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

    wrk = find_wrk(install=not args.no_install)
    if wrk is None:
        raise SystemExit("wrk is not installed and could not be installed (apt-get install wrk)")
    if shutil.which("prosody") is None:
        raise SystemExit("prosody is not installed (apt-get install prosody): it is the peer")
    modules = prosody_modules(args.prosody_modules)
    if modules is None:
        raise SystemExit("mod_data_access not found: hg clone https://hg.prosody.im/prosody-modules/"
                         " bench/out/prosody-modules (or --prosody-modules DIR)")

    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    started: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        started = start_servers(work, modules, args.threads, args.workers)
        headers = {kind: (basic(jid, pw), jid.partition("@")[2])
                   for kind, (jid, pw) in ACCOUNTS.items()}
        for name, (_, port) in started.items():
            for auth, host in headers.values():
                check_once(port, auth, host)  # and the login, cached by our service
        print(f"GET {PATH}, wrk -t2 -c{args.connections} --latency, {args.duration:g} s per run, {args.rounds} "
              f"rounds interleaved; {os.cpu_count()} CPUs; waitress {args.threads} threads, "
              f"granian {args.workers} workers x {args.threads} threads; Prosody "
              f"{prosody_version()} + mod_data_access")
        print(f"plain: {ACCOUNTS['plain'][0]} (internal_plain); scram: {ACCOUNTS['scram'][0]} "
              "(internal_hashed, SCRAM-SHA-1, 10,000 iterations, prosodyctl)")
        before = load()
        runs: dict[tuple[str, str], list[dict]] = {}
        for round_no in range(args.rounds):
            for kind, (auth, host) in headers.items():
                for name in SERVERS:
                    if name.startswith("empty") and kind != "plain":
                        continue  # no credentials checked: one account is enough
                    port = started[name][1]
                    result = run_wrk(wrk, f"http://127.0.0.1:{port}{PATH}", auth, host,
                                     args.duration, work, args.connections)
                    runs.setdefault((name, kind), []).append(result)
            print(f"round {round_no + 1}/{args.rounds} done ({load()})", flush=True)
        after = load()
        return report(runs, args.rounds, before, after)
    finally:
        for proc, _ in started.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def prosody_version() -> str:
    try:
        out = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    found = re.search(r"Prosody (\S+)", out)
    return found.group(1) if found else "?"


def report(runs: dict[tuple[str, str], list[dict]], rounds: int, before: str, after: str) -> int:
    """Print the table; 0 when every target is met and every answer was a 200."""
    print()
    print(f"{'server':<15} {'account':<7} {'best req/s':>10} {'p99 ms':>7} {'x Prosody':>10} "
          f"{'per round':>28} {'target':>7}  result")
    ok_all = True
    for kind in ACCOUNTS:
        peer = runs[("prosody", kind)]
        for name in SERVERS:
            results = runs.get((name, kind))
            if not results:
                continue  # the empty apps: once, with the plain account's rows
            best = max(results, key=lambda r: r["rps"])
            errors = sum(r["errors"] for r in results)
            ratio = best["rps"] / max(r["rps"] for r in peer)
            per_round = [r["rps"] / p["rps"] for r, p in zip(results, runs[("prosody", "plain")]
                                                              if name.startswith("empty")
                                                              else peer)]
            spread = (f"{min(per_round):.2f}-{max(per_round):.2f}x, median "
                      f"{statistics.median(per_round):.2f}x")
            target = TARGETS.get((name, kind))
            if name == "prosody":
                verdict, ratio_text, spread = "peer", "1.00x", ""
            elif target is None:
                verdict, ratio_text = "scale: this server's ceiling", f"{ratio:.2f}x"
            else:
                ok = ratio >= target and errors == 0
                ok_all &= ok
                verdict, ratio_text = ("PASS" if ok else "FAIL"), f"{ratio:.2f}x"
            if errors:
                verdict += f" ({errors} non-200)"
            print(f"{name:<15} {kind if not name.startswith('empty') else '-':<7} "
                  f"{best['rps']:>10,.0f} {best['p99'] * 1000:>7.2f} {ratio_text:>10} "
                  f"{spread:>28} {(f'{target:g}x' if target else ''):>7}  {verdict}")
    print(f"\nload before: {before}; after: {after}.  'x Prosody': best over best; 'per "
          "round': each round's ratio to Prosody's run of the same round (empty apps: to "
          "Prosody's plain run).")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
