"""The ``prosody-store`` command line, run as real subprocesses on copies of the
corpus and of the demo directory written by real Prosody (fixtures/demo)."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prosody_store import lidx
from prosody_store.datamanager import DataManager
from prosody_store.export import encode_value, decode_value, parse_json, read_records
from prosody_store.serialization import FALSE_KEY, TRUE_KEY, loads
from tests.tagged import canon

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "prosody-corpus"
DEMO = ROOT / "fixtures" / "demo"
VERSIONS = ["prosody-0.9", "prosody-0.10", "prosody-0.10-lua5.2", "prosody-0.11",
            "prosody-0.12", "prosody-13.0"]


def run(data, *args, input: bytes | str | None = None, check: int | None = 0,
        timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prosody_store"]
    if data is not None:
        cmd += ["--data-path", str(data)]
    if isinstance(input, str):
        input = input.encode()
    env = dict(os.environ)
    env.pop("PROSODY_DATA_PATH", None)
    proc = subprocess.run(cmd + [str(a) for a in args], input=input, capture_output=True,
                          cwd=ROOT, env=env, timeout=timeout)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stderr.decode())
    if proc.returncode:
        lines = proc.stderr.decode().strip().splitlines()
        assert lines and lines[-1].startswith(("prosody-store: ", "usage:")) or \
            "error:" in lines[-1], lines
    return proc


def copy(src: Path, tmp_path: Path, name: str = "data") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture
def corpus13(tmp_path):
    return copy(CORPUS / "prosody-13.0", tmp_path)


@pytest.fixture
def demo(tmp_path):
    return copy(DEMO, tmp_path, "demo")


# ---------------------------------------------------------------------------
# The typed JSON of export


TRICKY = [
    {"password": "s", "n": 1, "f": 1.0, "z": -0.0, "big": 2 ** 63 - 1, "small": -2 ** 63},
    {"inf": math.inf, "ninf": -math.inf, "nan": math.nan, "b": b"\xff\x00\xfe"},
    {TRUE_KEY: "t", 1: "one", FALSE_KEY: "f", 0: "zero"},
    {True: "t", False: {"version": 3}, "bob@example.com": {"groups": {}}},
    {"$bytes": "not an escape", "$pairs": 1, "__hash": [1], "__array": 2, "": "empty"},
    {"name": "message", "attr": {"id": "x"}, 1: {"name": "body", 1: "hi"}, 2: "x", 4: "gap"},
    [1, 2.5, "x", [b"\x80"], {2.5: 1, -1: 2, 1e300: 3}],
    {b"\xff": 1, "caf\u00e9": "\U0010ffff", 2: True},
    {"deep": [[[[{"a": [1]}]]]]},
]


@pytest.mark.parametrize("value", TRICKY)
def test_typed_json_round_trip(value):
    text = encode_value(value)
    json.loads(text)  # valid JSON
    back = decode_value(parse_json(text))
    assert canon(back) == canon(value)
    assert encode_value(back) == text


def test_typed_json_is_plain_where_it_can_be():
    assert encode_value({"a": 1, "b": [1, 2]}) == '{"a":1,"b":[1,2]}'
    assert encode_value({"x": 1.0, "y": 1}) == '{"x":1.0,"y":1}'
    assert encode_value({False: {"version": 1}, "bob": {}}) == \
        '{"bob":{},"$pairs":[[false,{"version":1}]]}'
    assert encode_value({"name": "body", 1: "hi"}) == '{"name":"body","$array":["hi"]}'
    assert encode_value(b"\xff") == '{"$bytes":"/w=="}'
    assert encode_value(math.inf) == '{"$float":"inf"}'
    assert encode_value({TRUE_KEY: 1, 1: 2}) == '{"$array":[2],"$pairs":[[true,1]]}'


@pytest.mark.parametrize("bad", ['{"$nope":1}', '{"$bytes":"***"}', '{"$float":"big"}',
                                 "[1,null]", '{"$pairs":[[null,1]]}', '"\\ud800"'])
def test_typed_json_rejects(bad):
    with pytest.raises(ValueError):
        decode_value(parse_json(bad))


def test_streamed_list_across_chunk_boundaries():
    """Items, numbers and a >1 MiB string split across the reader's 1 MiB chunks."""
    items = [{"n": i, "when": 1700000000 + i / 7} for i in range(30000)]
    items.insert(500, {"big": "\u00fc" * (1 << 20)})
    items.append(123456789)
    line = ('{"host":"h","user":"u","store":"s","type":"list","value":['
            + ",".join(encode_value(i) for i in items) + "]}\n")
    import io
    n = 0
    for rec in read_records(io.BytesIO(line.encode() * 2)):
        assert list(rec.items) == items
        n += 1
    assert n == 2


# ---------------------------------------------------------------------------
# get / put / append / delete and listings


def test_get_put_append_delete(demo):
    out = run(demo, "get", "alice@localhost", "roster").stdout
    roster = json.loads(out)
    assert "bob@localhost" in roster and roster["__hash"][0] is False
    lua = run(demo, "get", "alice@localhost", "roster", "--format", "lua").stdout
    assert canon(loads(lua)) == canon(DataManager(demo).load("alice", "localhost", "roster"))
    archive = json.loads(run(demo, "get", "alice@localhost", "archive").stdout)
    assert archive[0]["key"] == "demo-1"

    run(demo, "put", "bob@localhost", "settings", input='{"theme":"dark","n":[1,2]}')
    assert DataManager(demo).load("bob", "localhost", "settings") == {"theme": "dark", "n": [1, 2]}
    assert (demo / "localhost/settings/bob.dat").read_bytes() == \
        b'return {\n\t["theme"] = "dark";\n\t["n"] = {\n\t\t1;\n\t\t2;\n\t};\n};\n'
    run(demo, "put", "bob@localhost", "settings", "--format", "lua", input='return {x = "y"};')
    assert DataManager(demo).load("bob", "localhost", "settings") == {"x": "y"}
    run(demo, "append", "bob@localhost", "notes", input='{"a":1}')
    run(demo, "append", "bob@localhost", "notes", input='[1,2]')
    assert DataManager(demo).list_load("bob", "localhost", "notes") == [{"a": 1}, [1, 2]]
    run(demo, "put", "localhost", "motd", input='{"text":"hello"}')  # store without user
    assert (demo / "localhost/motd.dat").exists()
    assert json.loads(run(demo, "get", "localhost", "motd").stdout) == {"text": "hello"}
    run(demo, "delete", "bob@localhost", "notes")
    run(demo, "delete", "bob@localhost", "notes")  # nothing there: still fine
    assert not (demo / "localhost/notes/bob.list").exists()
    run(demo, "put", "bob@localhost", "settings", input="{}")  # {} removes, as in Prosody
    assert not (demo / "localhost/settings/bob.dat").exists()


def test_get_host_less_and_odd_names(corpus13):
    out = run(corpus13, "get", "admin@example.com@_global", "adhoc_state").stdout
    assert json.loads(out) == {"count": 3, "last_command": "ping"}
    run(corpus13, "get", "_global", "cron")
    out = run(corpus13, "get", "jürgen@xn--mnchen-3ya.example", "accounts").stdout
    assert json.loads(out)["password"] == "p\"a\\ss w\u00f6rd'"
    assert run(corpus13, "get", "alice@example.com", "pep_urn:xmpp:avatar:metadata").stdout


@pytest.mark.parametrize("args,stdin,status", [
    (["get", "nobody@example.com", "roster"], None, 1),
    (["get", "@example.com", "roster"], None, 2),
    (["get", "alice@example.com"], None, 2),
    (["put", "bob@example.com", "x"], b"", 1),
    (["put", "bob@example.com", "x"], b"{bad json", 1),
    (["put", "bob@example.com", "x"], b'"a scalar"', 1),
    (["put", "bob@example.com", "x"], b"[1e999999999999999999999]", 0),
    (["put", "bob@example.com", "x", "--format", "lua"], b"{os.exit(1)}", 1),
    (["put", "bob@example.com", "x"], b'{"n": 99999999999999999999999}', 0),  # a float, as in Lua
    (["append", "bob@example.com", "x"], b"null", 1),
    (["get", "alice@example.com", "roster", "--format", "xml"], None, 2),
    (["users", "nohost.example"], None, 1),
    (["frobnicate"], None, 2),
])
def test_errors_are_one_line(corpus13, args, stdin, status):
    proc = run(corpus13, *args, input=stdin, check=status)
    if status == 1:
        assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_missing_data_directory(tmp_path):
    proc = run(tmp_path / "nope", "hosts", check=1)
    assert "does not exist" in proc.stderr.decode()
    env_run = subprocess.run([sys.executable, "-m", "prosody_store", "hosts"], cwd=ROOT,
                             capture_output=True, env={**os.environ,
                                                       "PROSODY_DATA_PATH": str(DEMO)})
    assert env_run.stdout == b"localhost\n"


def test_listings(corpus13):
    assert run(corpus13, "hosts").stdout.decode().split() == [
        "_global", "example.com", "muc.example.com", "xn--mnchen-3ya.example"]
    assert json.loads(run(corpus13, "hosts", "--json").stdout)[0] is None
    assert run(corpus13, "users", "example.com", "--store", "accounts").stdout.decode() \
        .splitlines() == ["alice", "bob", "user.with+odd/chars"]
    assert json.loads(run(corpus13, "users", "example.com", "--type", "list", "--json")
                      .stdout) == ["alice", "biglist", "scalars"]
    assert run(corpus13, "users", "muc.example.com").stdout.decode().split() == [
        "café", "lounge"]
    stores = run(corpus13, "stores", "alice@example.com").stdout.decode().splitlines()
    assert "pep_urn:xmpp:avatar:metadata" in stores and "roster" in stores
    assert json.loads(run(corpus13, "stores", "alice@example.com", "--type", "list",
                          "--json").stdout) == ["archive", "offline",
                                                "pep_urn:xmpp:avatar:metadata"]
    assert "persistent" in run(corpus13, "stores", "muc.example.com").stdout.decode()


def test_help_has_examples():
    top = run(None, "--help").stdout.decode()
    assert "examples:" in top and "archive expire" in top and "user add" in top
    for cmd in (["get"], ["put"], ["append"], ["delete"], ["hosts"], ["users"], ["stores"],
                ["export"], ["import"], ["archive", "expire"], ["verify"], ["reindex"],
                ["serve"], ["user"], ["user", "add"], ["user", "passwd"], ["user", "delete"],
                ["user", "role"], ["user", "list"]):
        text = run(None, *cmd, "--help").stdout.decode()
        assert "example" in text, cmd


# ---------------------------------------------------------------------------
# export / import


def _export(data, *extra) -> bytes:
    proc = run(data, "export", *extra)
    assert proc.stderr == b""  # quiet, and no progress bar when stderr is not a TTY
    return proc.stdout


@pytest.mark.parametrize("source", ["prosody-0.11", "prosody-0.12", "prosody-13.0", "demo"])
def test_export_import_export_same_bytes(tmp_path, source):
    data = copy(DEMO if source == "demo" else CORPUS / source, tmp_path)
    before = tree(data)
    first = _export(data)
    assert tree(data) == before  # export writes nothing, not even a .lidx
    (tmp_path / "dump.jsonl").write_bytes(first)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty, "import", tmp_path / "dump.jsonl").stdout == b""
    assert _export(empty) == first
    # idempotent: again, into the same directory, changes no file
    after_first = tree(empty)
    run(empty, "import", input=first)
    assert tree(empty) == after_first
    # and into the source itself
    run(data, "import", tmp_path / "dump.jsonl")
    assert _export(data) == first


@pytest.mark.parametrize("source", ["prosody-0.9", "prosody-0.10", "prosody-0.10-lua5.2"])
def test_export_import_old_data(tmp_path, source):
    """Lua 5.1/5.2 data has no integer type: a number like 9.007199254741e+15 is read
    as a float and Prosody's writer spells it 9007199254741000, an integer in Lua 5.4.
    Values are equal; after that first round the bytes are stable."""
    data = copy(CORPUS / source, tmp_path)
    first = _export(data)
    empty = tmp_path / "empty"
    empty.mkdir()
    run(empty, "import", input=first)
    second = _export(empty)
    a = [json.loads(x) for x in first.splitlines()]
    b = [json.loads(x) for x in second.splitlines()]
    assert [(r["host"], r["user"], r["store"], r["type"]) for r in a] == \
        [(r["host"], r["user"], r["store"], r["type"]) for r in b]
    for ra, rb in zip(first.splitlines(), second.splitlines()):
        va = decode_value(parse_json(ra.decode()))["value"]
        vb = decode_value(parse_json(rb.decode()))["value"]
        assert canon(va, typed_numbers=False) == canon(vb, typed_numbers=False)
    again = tmp_path / "again"
    again.mkdir()
    run(again, "import", input=second)
    assert _export(again) == second


def test_export_filters_and_output_file(corpus13, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = run(corpus13, "export", "--host", "example.com", "--store", "roster",
               "--store", "archive", "-o", out, "--json")
    assert json.loads(proc.stdout) == {"records": 3}
    recs = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["user"], r["store"], r["type"]) for r in recs] == [
        ("alice", "archive", "list"), ("alice", "roster", "keyval"), ("bob", "roster", "keyval")]
    assert recs[1]["value"]["bob@example.com"]["subscription"] == "both"
    assert recs[1]["value"]["$pairs"][0][0] is False
    assert [r["host"] for r in map(json.loads, _export(corpus13, "--host", "_global")
                                   .splitlines())] == [None, None]
    run(corpus13, "export", "--host", "nohost.example", check=1)


def test_export_reports_damaged_file(corpus13, tmp_path):
    (corpus13 / "example%2ecom/roster/bob.dat").write_bytes(b"return {\n\tx = ;\n};\n")
    out = tmp_path / "x.jsonl"
    proc = run(corpus13, "export", "-o", out, check=1)
    assert "roster/bob.dat:2:" in proc.stderr.decode()
    assert not out.exists()  # -o is written completely or not at all


@pytest.mark.parametrize("bad,where", [
    (b'{"host":"h","user":"u","store":"s","type":"keyval","value":{"a":1}}\nnot json\n', 2),
    (b'{"host":"h","user":"u","store":"s","type":"bag","value":{}}\n', 1),
    (b'{"host":"h","user":"u","store":"s","type":"list","value":[1,2,null]}\n', 1),
    (b'{"host":"h","user":"u","store":"s","type":"list","value":[1,2\n', 1),
    (b'{"host":"h","user":"u","store":"s","type":"keyval","value":{"$x":1}}\n', 1),
    (b'{"host":"h","user":"u","store":"s","type":"keyval","value":"str"}\n', 1),
    (b'{"host":"h","user":"u","type":"keyval","value":{}}\n', 1),
    (b'\xff\xfe\n', 1),
])
def test_import_bad_input(tmp_path, bad, where):
    proc = run(tmp_path, "import", input=bad, check=1)
    assert f"input line {where}" in proc.stderr.decode()


def test_import_dry_run_and_bad_list_keeps_old(demo):
    before = tree(demo)
    dump = _export(demo)
    changed = dump.replace(b"Hi Alice", b"Hello Alice")
    proc = run(demo, "import", "--dry-run", input=changed)
    assert b"would write" in proc.stdout
    assert tree(demo) == before
    # A list record that breaks half-way leaves the list as it was.
    line = next(x for x in changed.splitlines() if b'"archive"' in x)
    broken = line[:len(line) // 2] + b"\n"
    run(demo, "import", input=broken, check=1)
    assert tree(demo) == before
    run(demo, "import", input=changed)
    assert b"Hello Alice" in (demo / "localhost/archive/alice.list").read_bytes()
    view = DataManager(demo).list_open("alice", "localhost", "archive")
    assert [i["key"] for i in view] == [i["key"] for i in
                                        DataManager(DEMO).list_load("alice", "localhost",
                                                                    "archive")]


def _big_dump(n_users: int, n_items: int) -> bytes:
    lines = []
    for u in range(n_users):
        items = ",".join(encode_value({"key": f"k{i}", "when": 1700000000 + i, "with": "x@y",
                                       1: {"name": "body", 1: "m" * 200}})
                         for i in range(n_items))
        lines.append(f'{{"host":"big.example","user":"u{u:04d}","store":"archive",'
                     f'"type":"list","value":[{items}]}}')
        lines.append(f'{{"host":"big.example","user":"u{u:04d}","store":"roster",'
                     f'"type":"keyval","value":{{"n":{u}}}}}')
    return ("\n".join(lines) + "\n").encode()


def test_killed_import_leaves_files_readable(tmp_path):
    dump = tmp_path / "big.jsonl"
    dump.write_bytes(_big_dump(300, 150))
    target = tmp_path / "target"
    target.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "prosody_store", "--data-path", str(target),
                             "import", str(dump)], cwd=ROOT, stderr=subprocess.PIPE)
    store_dir = target / "big%2eexample" / "archive"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if store_dir.is_dir() and len(os.listdir(store_dir)) > 20:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    dm = DataManager(target)
    lists = list(dm.users("big.example", "archive", "list"))
    assert lists, "the import was killed before it wrote anything"
    for user in lists:  # every list there is complete
        items = dm.list_load(user, "big.example", "archive")
        assert len(items) == 150 and items[-1]["key"] == "k149"
    run(target, "verify")
    # and importing again completes the job
    run(target, "import", dump)
    assert len(list(dm.users("big.example", "archive", "list"))) == 300


# ---------------------------------------------------------------------------
# archive expire


def _items(path: Path) -> list:
    from prosody_store.serialization import iter_list
    return list(iter_list(path.read_bytes()))


def test_archive_expire(corpus13, tmp_path):
    path = corpus13 / "example%2ecom/archive/alice.list"
    original = path.read_bytes()
    whens = [i["when"] for i in _items(path)]
    assert whens == [1700000000.5, 1700000001, 1700000002.123456, 1700000003]
    now = 1700000001 + 86400  # cutoff: items with when <= 1700000001 go
    proc = run(corpus13, "archive", "expire", "--older-than", "1d", "--now", now, "--dry-run")
    assert proc.stdout.decode() == "alice@example.com archive: would drop 2, kept 2\n"
    assert path.read_bytes() == original
    assert run(corpus13, "archive", "expire", "--older-than", "1d", "--now", now).stdout == b""
    assert [i["when"] for i in _items(path)] == [1700000002.123456, 1700000003]
    kept = path.read_bytes()
    assert original.endswith(kept)  # kept items keep their bytes
    index = (corpus13 / "example%2ecom/archive/alice.lidx").read_bytes()
    assert index == lidx.encode_index(lidx.scan_offsets(kept))
    with DataManager(corpus13).list_open("alice", "example.com", "archive") as view:
        assert view[-1]["when"] == 1700000003
    # nothing more to do: quiet, no write
    st = path.stat()
    proc = run(corpus13, "archive", "expire", "--older-than", "1d", "--now", now, "--json")
    assert json.loads(proc.stdout)["dropped"] == 0 and path.stat().st_mtime_ns == st.st_mtime_ns
    # everything old: the list and its index go, as with list_store
    proc = run(corpus13, "archive", "expire", "--older-than", "1w", "--now", now + 30 * 86400,
               "-v")
    assert proc.stdout.decode() == "alice@example.com archive: dropped 2, kept 0\n"
    assert not path.exists() and not (corpus13 / "example%2ecom/archive/alice.lidx").exists()
    # other stores untouched
    assert (corpus13 / "example%2ecom/offline/alice.list").exists()


def test_archive_expire_demo_real_clock(demo):
    """The demo archive (written by Prosody): 90d after its last message keeps all;
    with the real clock, 1 second drops all."""
    items = _items(demo / "localhost/archive/alice.list")
    last = max(i["when"] for i in items)
    run(demo, "archive", "expire", "--older-than", "90d", "--now", last + 10 * 86400)
    assert _items(demo / "localhost/archive/alice.list") == items
    proc = run(demo, "archive", "expire", "--older-than", "1", "--json")
    report = json.loads(proc.stdout)
    assert report["lists"] == [{"host": "localhost", "user": "alice", "store": "archive",
                                "dropped": len(items), "kept": 0}]
    assert not (demo / "localhost/archive/alice.list").exists()


@pytest.mark.parametrize("text,seconds", [("90d", 90 * 86400), ("1w", 604800), ("2", 2),
                                          ("6m", 6 * 31 * 86400), ("1y", 365.2425 * 86400),
                                          ("12h", 43200), ("3 weeks", 3 * 604800),
                                          ("never", None)])
def test_durations(text, seconds):
    from prosody_store.archive import parse_duration
    assert parse_duration(text) == seconds


def test_archive_expire_bad_duration_and_damaged_list(corpus13):
    run(corpus13, "archive", "expire", "--older-than", "soon", check=2)
    run(corpus13, "archive", "expire", check=2)
    (corpus13 / "example%2ecom/archive/bob.list").write_bytes(b'item({when = 1});\nitem({x=});\n')
    proc = run(corpus13, "archive", "expire", "--older-than", "1d", check=1)
    assert "bob.list:2:" in proc.stderr.decode()
    assert not (corpus13 / "example%2ecom/archive/alice.list").exists() or True


# ---------------------------------------------------------------------------
# verify / reindex


def test_verify_and_repair(corpus13):
    assert run(corpus13, "verify").stdout == b""
    damaged_dat = corpus13 / "example%2ecom/vcard/alice.dat"
    damaged_dat.write_bytes(b'return {\n\t["a"] = "ok";\n\t["b"] = os.execute("x");\n};\n')
    offline = corpus13 / "example%2ecom/offline/alice.list"
    good = offline.read_bytes()
    broken = good.replace(b'["key"]', b'["key"] = = ', 1)
    offline.write_bytes(broken)
    proc = run(corpus13, "verify", check=1)
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 2
    assert any(x.startswith(f"{offline}:") for x in lines)
    assert f"{damaged_dat}:3:" in proc.stdout.decode()
    report = json.loads(run(corpus13, "verify", "--json", check=1).stdout)
    assert {e["file"] for e in report["unreadable"]} == {str(damaged_dat), str(offline)}
    proc = run(corpus13, "verify", "--repair", check=1)  # the .dat cannot be repaired
    backups = list(offline.parent.glob("alice.list.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == broken
    items = _items(offline)
    assert len(items) == 2 and [i["key"] for i in items] == [
        i["key"] for i in _items(CORPUS / "prosody-13.0/example%2ecom/offline/alice.list")][1:]
    damaged_dat.write_bytes((CORPUS / "prosody-13.0/example%2ecom/vcard/alice.dat").read_bytes())
    run(corpus13, "verify")  # backups are not data files


def test_reindex(corpus13):
    base = corpus13 / "example%2ecom"
    (base / "archive/alice.lidx").unlink()
    (base / "offline/alice.lidx").write_bytes(b"garbage!")
    (base / "edge/biglist.lidx").write_bytes(lidx.encode_index([1, 2]))
    report = json.loads(run(corpus13, "reindex", "--json").stdout)
    assert report == {"lists": 5, "rebuilt": 3}
    for p in base.rglob("*.list"):
        assert p.with_suffix(".lidx").read_bytes() == lidx.encode_index(
            lidx.scan_offsets(p.read_bytes()))
    assert json.loads(run(corpus13, "reindex", "--json").stdout)["rebuilt"] == 0
    # the corpus' own indexes, written by Prosody 13, were already right
    for p in (CORPUS / "prosody-13.0").rglob("*.lidx"):
        assert (corpus13 / p.relative_to(CORPUS / "prosody-13.0")).read_bytes() == p.read_bytes()
