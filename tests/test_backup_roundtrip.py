"""A backup always restores (issue 12, point 3).

For any data directory, ``import`` of what ``export`` wrote restores every file
that export wrote, byte for byte, and export again gives the same bytes; a file
no record could restore is reported by export (one line on stderr naming it,
exit 1), never silently left out or written in a form import refuses.
``export --skip-damaged`` backs up everything else.  ``import`` reports every
bad input on one line naming the input line, never a traceback.

Everything runs the real CLI (``python -m prosody_store``) on real files in
temporary directories, written byte by byte as the names and values below.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.datamanager import DataManager
from prosody_store.export import read_records
from prosody_store.paths import name_bytes
from prosody_store.serialization import dump_dat, dump_item, iter_list, loads
from tests.conftest import skip_or_fail
from tests.tagged import canon
from tests.test_cli import DEMO, copy, run, tree

DAT = dump_dat({"a": 1, "b": "x"})
LIST = dump_item({"key": "k1", "when": 1700000000}) + dump_item("second")


def write(root: Path, rel: bytes, data: bytes) -> Path:
    """Write a file at the raw bytes path ``rel`` under ``root``."""
    path = os.path.join(os.fsencode(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return Path(os.fsdecode(path))


def records(dump: bytes) -> list:
    """(host, user, store, type) of each record, list items consumed."""
    out = []
    with tempfile.TemporaryFile() as f:
        f.write(dump)
        f.seek(0)
        for rec in read_records(f):
            if rec.items is not None:
                list(rec.items)
            out.append((rec.host, rec.user, rec.store, rec.type))
    return out


def restore(dump: bytes, tmp_path: Path, name: str = "restored") -> Path:
    target = tmp_path / name
    target.mkdir()
    assert run(target, "import", input=dump).stderr == b""
    return target


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.decode("utf-8", "backslashreplace").splitlines()


# ---------------------------------------------------------------------------
# The user "" (a PUT to /data/localhost/%C2%AD/roster made it)


def test_empty_user_name_is_exported_and_restored(tmp_path):
    """``localhost/roster/.dat`` was exported as ``"user":""`` (exit 0) and import
    stopped at that line.  The name maps back to the very same file: import
    takes it."""
    data = copy(DEMO, tmp_path)
    write(data, b"localhost/roster/.dat", DAT)
    write(data, b"localhost/archive/.list", LIST)
    dump = run(data, "export").stdout
    assert ("localhost", "", "roster", "keyval") in records(dump)
    assert ("localhost", "", "archive", "list") in records(dump)
    target = restore(dump, tmp_path)
    assert (target / "localhost/roster/.dat").read_bytes() == DAT
    assert (target / "localhost/archive/.list").read_bytes() == LIST
    def data_files(root: Path) -> list[str]:
        return sorted(k for k in tree(root) if not k.endswith(".lidx"))

    assert data_files(target) == data_files(data)  # every file, and only those
    assert run(target, "export").stdout == dump


def test_empty_user_name_as_bytes_escape_is_accepted(tmp_path):
    line = b'{"host":"h","user":{"$bytes":""},"store":"s","type":"keyval","value":{"a":1}}\n'
    run(tmp_path, "import", input=line)
    assert (tmp_path / "h/s/.dat").read_bytes() == dump_dat({"a": 1})


# ---------------------------------------------------------------------------
# File names no record can restore


@pytest.mark.parametrize("rel,why", [
    (b"localhost/roster/al-ice.dat", "al%2dice.dat"),         # a byte left unencoded
    (b"localhost/roster/Al%2Dice.dat", "Al%2dice.dat"),       # uppercase hex
    (b"localhost/roster/%61lice2.dat", "alice2.dat"),         # a letter percent-encoded
    (b"localhost/roster/100%.dat", "100%25.dat"),             # a lone %
    (b"localhost/roster/\xff\xfe.dat", "%ff%fe.dat"),         # not UTF-8, raw
    (b"localhost/Roster%2D2/alice.dat", "Roster%2d2/alice.dat"),  # a store directory
    (b"Local%2Dhost/roster/alice.dat", "Local%2dhost/roster/alice.dat"),  # a host directory
    (b"localhost/old%2Dstore.list", "old%2dstore.list"),      # a store without user
])
def test_file_name_prosody_does_not_spell_so_is_reported(tmp_path, rel, why):
    """Such a file was silently left out (exit 0): Prosody reads ``al-ice``'s data
    from ``al%2dice.dat``, so no record names this file."""
    data = copy(DEMO, tmp_path)
    path = write(data, rel, LIST if rel.endswith(b".list") else DAT)
    out = tmp_path / "backup.jsonl"
    proc = run(data, "export", "-o", out, check=1)
    [line] = stderr_lines(proc)
    shown = os.fsdecode(path).encode("utf-8", "backslashreplace").decode()
    assert line.startswith(f"prosody-store: cannot export {shown}: "), line
    assert why in line and "--skip-damaged" in line
    assert not out.exists()
    proc = run(data, "export", "--skip-damaged", "-o", out, check=1)
    lines = stderr_lines(proc)
    assert lines[0].startswith(f"prosody-store: skipped {shown}: ")
    assert len(lines) == 2 and "1 of" in lines[1]
    assert out.read_bytes() == run(DEMO, "export").stdout  # everything else
    target = restore(out.read_bytes(), tmp_path)
    assert run(target, "export").stdout == out.read_bytes()


def test_non_utf8_name_in_current_spelling_round_trips(tmp_path):
    data = copy(DEMO, tmp_path)
    write(data, b"localhost/roster/%ff%fe.dat", DAT)
    write(data, b"%c3%28host/s%ff/u.list", LIST)
    dump = run(data, "export").stdout
    assert (b"\xc3(host", b"\xff\xfe", "roster", "keyval") not in records(dump)
    assert ("localhost", b"\xff\xfe", "roster", "keyval") in records(dump)
    target = restore(dump, tmp_path)
    assert (target / "localhost/roster/%ff%fe.dat").read_bytes() == DAT
    assert (target / "%c3%28host/s%ff/u.list").read_bytes() == LIST
    assert run(target, "export").stdout == dump


def test_legacy_store_spelling_is_restored_in_the_current_one(tmp_path):
    """Prosody 0.9/0.10 did not encode store names; such a store is exported and
    restored where Prosody 0.11+ reads it, with the same bytes."""
    data = copy(DEMO, tmp_path)
    write(data, b"localhost/pep_urn:xmpp:avatar:data/alice.list", LIST)
    write(data, b"localhost/old:store.dat", DAT)
    dump = run(data, "export").stdout
    target = restore(dump, tmp_path)
    assert (target / "localhost/pep_urn%3axmpp%3aavatar%3adata/alice.list").read_bytes() == LIST
    assert (target / "localhost/old%3astore.dat").read_bytes() == DAT
    assert run(target, "export").stdout == dump


def test_shadowed_legacy_file_is_reported(tmp_path):
    """Both spellings of one store hold alice's file: the current one is read
    (and restored); the old one is reported, not silently dropped."""
    data = copy(DEMO, tmp_path)
    write(data, b"localhost/pep_urn%3ax/alice.dat", DAT)
    old = write(data, b"localhost/pep_urn:x/alice.dat", dump_dat({"old": True}))
    proc = run(data, "export", "--skip-damaged", check=1)
    assert f"skipped {old}: shadowed by localhost/pep_urn%3ax/alice.dat" in proc.stderr.decode()
    assert records(proc.stdout).count(("localhost", "alice", "pep_urn:x", "keyval")) == 1


def test_two_spellings_of_a_host_give_no_duplicate_records(tmp_path):
    """``ex%2ecom`` and ``ex%2Ecom`` are both the host ex.com: its records came out
    twice (and the second spelling's files were never read)."""
    data = tmp_path / "data"
    write(data, b"ex%2ecom/roster/bob.dat", DAT)
    other = write(data, b"ex%2Ecom/roster/carol.dat", DAT)
    proc = run(data, "export", "--skip-damaged", check=1)
    assert records(proc.stdout) == [("ex.com", "bob", "roster", "keyval")]
    assert f"skipped {other}: " in proc.stderr.decode()


# ---------------------------------------------------------------------------
# Values import would refuse


def test_nil_and_false_list_items_and_empty_tables(tmp_path):
    """``item(nil)`` (no item, as Prosody reads it) was exported as null and
    ``item(false)`` (Prosody's list_store writes it) as false, both refused by
    import; an empty table or list (no data) was exported and import then
    removed it, so export, import, export differed."""
    data = tmp_path / "data"
    write(data, b"h/s/a.list", b"item(false);\nitem(nil);\nitem(1);\n")
    write(data, b"h/s/b.list", b"item(nil);\n")
    write(data, b"h/s/c.dat", b"return {};\n")
    write(data, b"h/s/d.list", b"")
    write(data, b"h/s/e.dat", b"")
    dump = run(data, "export").stdout
    assert dump == b'{"host":"h","user":"a","store":"s","type":"list","value":[false,1]}\n'
    target = restore(dump, tmp_path)
    assert (target / "h/s/a.list").read_bytes() == b"item(false);\nitem(1);\n"
    assert run(target, "export").stdout == dump


@pytest.mark.parametrize("content,why", [
    (b'return "just a string";\n', "holds a string, not a table"),
    (b"return 42;\n", "holds a number, not a table"),
    (b"return true;\n", "holds a boolean, not a table"),
    (b"return " + b"{" * 128 + b"}" * 128 + b";\n", "nested deeper than 127"),
    (b"return " + b"{" * 990 + b"}" * 990 + b";\n", "nested deeper than 127"),
], ids=["string", "number", "boolean", "128 levels", "990 levels"])
def test_value_import_could_not_write_is_reported(tmp_path, content, why):
    """A .dat holding a scalar was exported and refused by import; a table nested
    deeper than Prosody's writer allows was exported and refused (128) or made
    export crash with a RecursionError traceback (990)."""
    data = copy(DEMO, tmp_path)
    path = write(data, b"localhost/odd/alice.dat", content)
    proc = run(data, "export", check=1)
    [line] = stderr_lines(proc)
    assert f"cannot export {path}: " in line and why in line
    proc = run(data, "export", "--skip-damaged", check=1)
    assert f"skipped {path}: " in proc.stderr.decode()
    assert proc.stdout == run(DEMO, "export").stdout


def test_127_levels_round_trip(tmp_path):
    data = tmp_path / "data"
    write(data, b"h/s/deep.dat", dump_dat(json.loads("[" * 127 + "]" * 127)))
    dump = run(data, "export").stdout
    target = restore(dump, tmp_path)
    assert (target / "h/s/deep.dat").read_bytes() == (data / "h/s/deep.dat").read_bytes()


# ---------------------------------------------------------------------------
# export --skip-damaged


def damage(data: Path) -> tuple[Path, Path]:
    dat = data / "localhost/vcard/alice.dat"
    dat.write_bytes(b'return {\n\t["a"] = "ok";\n\t["b"] = os.execute("x");\n};\n')
    lst = data / "localhost/archive/alice.list"
    items = lst.read_bytes().split(b"\nitem(")
    assert len(items) > 2
    items[len(items) // 2] = items[len(items) // 2].replace(b"=", b"= =", 1)
    lst.write_bytes(b"\nitem(".join(items))
    return dat, lst


@pytest.mark.parametrize("to_file", [True, False], ids=["-o", "stdout"])
def test_skip_damaged_exports_everything_readable(tmp_path, to_file):
    """One damaged file stopped the whole export; with --skip-damaged the rest
    is written, each damaged file listed with its reason, exit 1.  A list
    damaged half-way leaves no part of its record in the output."""
    data = copy(DEMO, tmp_path)
    dat, lst = damage(data)
    out = tmp_path / "backup.jsonl"
    args = ["-o", out] if to_file else []
    proc = run(data, "export", "--skip-damaged", *args, check=1)
    lines = stderr_lines(proc)
    assert len(lines) == 3, lines
    assert any(x.startswith(f"prosody-store: skipped {dat}:3:") for x in lines[:2]), lines
    assert any(x.startswith(f"prosody-store: skipped {lst}:") for x in lines[:2]), lines
    assert lines[2].startswith("prosody-store: 2 of ") and "skipped" in lines[2]
    dump = out.read_bytes() if to_file else proc.stdout
    expected = [r for r in records(run(DEMO, "export").stdout)
                if r[1:] not in (("alice", "vcard", "keyval"), ("alice", "archive", "list"))]
    assert records(dump) == expected
    for line in dump.splitlines():
        json.loads(line)  # whole records only
    target = restore(dump, tmp_path)
    assert DataManager(target).load("alice", "localhost", "roster") == \
        DataManager(DEMO).load("alice", "localhost", "roster")
    assert not (target / "localhost/archive/alice.list").exists()


def test_without_skip_damaged_nothing_is_written(tmp_path):
    data = copy(DEMO, tmp_path)
    _, lst = damage(data)
    (data / "localhost/vcard/alice.dat").write_bytes(
        (DEMO / "localhost/vcard/alice.dat").read_bytes())
    out = tmp_path / "backup.jsonl"
    proc = run(data, "export", "-o", out, check=1)
    [line] = stderr_lines(proc)
    assert re.match(rf"prosody-store: cannot export {re.escape(str(lst))}:\d+:\d+: ", line), line
    assert not out.exists() and os.listdir(tmp_path) == ["data"]  # no temporary file either


def test_skip_damaged_json_summary(tmp_path):
    data = copy(DEMO, tmp_path)
    damage(data)
    out = tmp_path / "backup.jsonl"
    proc = run(data, "export", "--skip-damaged", "--json", "-o", out, check=1)
    summary = json.loads(proc.stdout)
    assert summary["skipped"] == 2 and summary["records"] == len(records(out.read_bytes()))
    proc = run(DEMO, "export", "--skip-damaged", "--json", "-o", out)
    assert json.loads(proc.stdout)["skipped"] == 0 and proc.stderr == b""


NOCAPS = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def test_skip_damaged_passes_over_an_unreadable_file(tmp_path):
    """A file the exporting user may not read is listed with the reason."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        skip_or_fail("needs root and setpriv to make a permission denial real")
    data = copy(DEMO, tmp_path)
    secret = data / "localhost/roster/alice.dat"
    secret.chmod(0)
    cmd = [*NOCAPS, sys.executable, "-m", "prosody_store", "--data-path", str(data),
           "export", "--skip-damaged"]
    env = {k: v for k, v in os.environ.items() if k != "PROSODY_DATA_PATH"}
    proc = subprocess.run(cmd, capture_output=True, cwd=Path(__file__).parent.parent, env=env,
                          timeout=60, check=False)
    if b"Operation not permitted" in proc.stderr and b"setpriv" in proc.stderr:
        skip_or_fail("setpriv cannot drop capabilities here")
    assert proc.returncode == 1, proc.stderr
    lines = stderr_lines(proc)
    assert lines[0] == f"prosody-store: skipped {secret}: Permission denied", lines
    assert ("localhost", "alice", "roster", "keyval") not in records(proc.stdout)
    assert ("localhost", "bob", "roster", "keyval") in records(proc.stdout)


# ---------------------------------------------------------------------------
# import: every bad input is one line naming the input line


GOOD = b'{"host":"h","user":"u1","store":"s","type":"keyval","value":{"a":1}}\n'


def keyval(value: bytes, user: bytes = b"u2") -> bytes:
    return b'{"host":"h","user":"' + user + b'","store":"s","type":"keyval","value":' + \
        value + b"}\n"


def listrec(items: bytes) -> bytes:
    return b'{"host":"h","user":"u2","store":"s","type":"list","value":[' + items + b"]}\n"


DEEP = b"[" * 100000 + b"]" * 100000
DIGITS = b"1" * 5000


@pytest.mark.parametrize("bad,message", [
    pytest.param(keyval(DEEP), "nested too deeply", id="deep keyval"),
    pytest.param(keyval(b'{"a":' + DEEP + b"}"), "nested too deeply", id="deep member"),
    pytest.param(listrec(b"1," + DEEP), "nested too deeply", id="deep list item"),
    pytest.param(keyval(b"[" * 500 + b"]" * 500), "nested deeper than 127", id="500 keyval"),
    pytest.param(listrec(b"[" * 500 + b"]" * 500), "nested deeper than 127", id="500 item"),
    pytest.param(keyval(b'{"a":' + DIGITS + b"}"), "too many digits", id="5000 digits"),
    pytest.param(keyval(b'{"a":-' + DIGITS + b"}"), "too many digits", id="-5000 digits"),
    pytest.param(listrec(b"1," + DIGITS), "too many digits", id="5000 digits item"),
    pytest.param(keyval(b'{"a":' + b"9" * 400 + b"}"), "64-bit", id="400 digits"),
    pytest.param(keyval(b'{"a":18446744073709551616}'), "64-bit", id="2^64"),
    pytest.param(b'{"host":"h","host":"x","user":"u2","store":"s","type":"keyval","value":{}}\n',
                 "'host' appears twice", id="member twice"),
    pytest.param(b'{"host":"h","user":"u2","store":"s","type":5,"value":{}}\n',
                 '"type" must be', id="type 5"),
    pytest.param(b'{"host":"h","user":"u2","store":"s","type":["list"],"value":{}}\n',
                 '"type" must be', id="type array"),
    pytest.param(b'{"host":5,"user":"u2","store":"s","type":"keyval","value":{}}\n',
                 '"host" must be', id="host 5"),
    pytest.param(b'{"host":"h","user":[],"store":"s","type":"keyval","value":{}}\n',
                 '"user" must be', id="user array"),
    pytest.param(b'{"host":"h","user":"u2","store":"","type":"keyval","value":{}}\n',
                 '"store" must be', id="store empty"),
    pytest.param(b'{"host":"h","user":"u2","store":"s","type":"list","value":{"a":1}}\n',
                 "must be an array", id="list of object"),
    pytest.param(listrec(b"1,null"), "cannot be null", id="null item"),
    pytest.param(b'{"host":"h","user":"u2","store":"' + b"s" * 300
                 + b'","type":"keyval","value":{"a":1}}\n', "too long", id="long store keyval"),
    pytest.param(b'{"host":"h","user":"u2","store":"' + b"s" * 300
                 + b'","type":"list","value":[1]}\n', "too long", id="long store list"),
    pytest.param(keyval(b'{"a":1}') + keyval(b'{"a":2}'),
                 "a second record for the same keyval file as line 2", id="record twice"),
    pytest.param(listrec(b'{"a":1},{"b":'), "bad JSON", id="truncated item"),
    pytest.param(listrec(b'{"a":1}')[:-3], "expected", id="truncated list"),
    pytest.param(keyval(b'{"a":1')[:-1], "bad JSON", id="truncated keyval"),
])
def test_bad_import_line_is_one_line_and_restores_nothing_of_it(tmp_path, bad, message):
    """Deep nesting and 5000-digit numbers printed a traceback.  The records
    before the bad one are written; the bad record's file is left as it was."""
    data = tmp_path / "data"
    write(data, b"h/s/u2.dat", dump_dat({"old": 1}))
    write(data, b"h/s/u2.list", dump_item("old"))
    before = tree(data)
    proc = run(data, "import", input=GOOD + bad, check=1)
    [line] = stderr_lines(proc)
    lineno = 2 + bad.rstrip(b"\n").count(b"\n")
    assert line.startswith(f"prosody-store: input line {lineno}: "), line
    assert message in line, line
    assert len(line) < 300
    after = tree(data)
    assert after.pop("h/s/u1.dat") == dump_dat({"a": 1})  # the record before it
    if "second record" in message:
        assert after.pop("h/s/u2.dat") == dump_dat({"a": 1})
        before.pop("h/s/u2.dat")
    assert after == before


@pytest.mark.parametrize("inp", [
    listrec(b"false,1"),
    b'{"value":[false,1],"type":"list","store":"s","user":"u2","host":"h"}\n',
])
def test_false_list_item_is_imported(tmp_path, inp):
    """Prosody's list_store writes ``item(false)``; export writes it as false."""
    run(tmp_path, "import", input=inp)
    assert (tmp_path / "h/s/u2.list").read_bytes() == b"item(false);\nitem(1);\n"


def test_import_puts_array_and_pairs_entries_where_they_stand(tmp_path):
    """The entries of "$array" and "$pairs" went after every string member,
    wherever they stood: no JSON could give a .dat its [false] entry first,
    as Prosody writes many rosters."""
    run(tmp_path, "import", input=keyval(
        b'{"$pairs":[[false,{"version":1}]],"bob":{"a":1},"$array":["x"],"c":2}'))
    assert (tmp_path / "h/s/u2.dat").read_bytes() == (
        b'return {\n\t[false] = {\n\t\t["version"] = 1;\n\t};\n\t["bob"] = {\n\t\t["a"] = 1;'
        b'\n\t};\n\t"x";\n\t["c"] = 2;\n};\n')


def test_keyval_and_list_of_one_user_are_not_duplicates(tmp_path):
    run(tmp_path, "import", input=keyval(b'{"a":1}') + listrec(b"1"))
    assert (tmp_path / "h/s/u2.dat").exists() and (tmp_path / "h/s/u2.list").exists()


# ---------------------------------------------------------------------------
# Any directory: export, import, export


def _spellings(raw: bytes, keep: bytes) -> dict[str, bytes]:
    canonical = "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or bytes([b]) in keep)
                        else "%%%02x" % b for b in raw).encode()
    return {
        "canonical": canonical,
        "upper": re.sub(rb"%([0-9a-f]{2})", lambda m: b"%" + m.group(1).upper(), canonical),
        "raw": raw,
        "all": b"".join(b"%%%02x" % b for b in raw),
        "lone": canonical + b"%",
    }


TEXT_NAMES = st.one_of(
    st.sampled_from(["", "alice", "ALICE", "caf\u00e9", "a b", "\u00ad", "admin@example.com",
                     "urn:xmpp:microblog:0", "%", "%41", "_global", "a.dat", ".hidden", "x-y",
                     "line\nbreak", "\U0001f600", "\u0627\u0644"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=5),
)
NAMES = st.one_of(TEXT_NAMES, st.binary(min_size=1, max_size=4))
SPELLING = st.sampled_from(["canonical"] * 6 + ["upper", "raw", "all", "lone"])
VALUES = st.dictionaries(st.text(max_size=3),
                         st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.text(max_size=4),
                                   st.booleans(), st.floats(allow_nan=False)),
                         min_size=1, max_size=3)


@st.composite
def directories(draw) -> list:
    """Entries (host, its spelling, store, its spelling, user, its spelling, ext,
    values) drawn from a few names, so that one name is often spelled two ways."""
    hosts = draw(st.lists(st.one_of(st.none(), NAMES), min_size=1, max_size=2))
    stores = draw(st.lists(NAMES, min_size=1, max_size=3))
    users = draw(st.lists(st.one_of(st.none(), NAMES), min_size=1, max_size=3))
    return [(draw(st.sampled_from(hosts)), draw(SPELLING), draw(st.sampled_from(stores)),
             draw(SPELLING), draw(st.sampled_from(users)), draw(SPELLING),
             draw(st.sampled_from(["dat", "list"])), draw(st.lists(VALUES, min_size=1, max_size=2)))
            for _ in range(draw(st.integers(1, 8)))]


def _component(name, spelling: str, keep: bytes) -> bytes | None:
    spelled = _spellings(name_bytes(name), keep)[spelling]
    if b"/" in spelled or b"\0" in spelled or len(spelled) > 250:
        return None
    return spelled


def build(root: Path, entries: list) -> dict[str, bytes]:
    """Write the entries' files; the data files written, path -> bytes."""
    written: dict[str, bytes] = {}
    for host, hs, store, ss, user, us, ext, values in entries:
        host_dir = b"_global" if host is None else _component(host, hs, b"")
        store_part = _component(store, ss, b"_")
        if not host_dir or not store_part or host_dir.startswith(b".") \
                or store_part.startswith(b".") or host_dir in (b".", b".."):
            continue
        if user is None:
            rel = host_dir + b"/" + store_part + b"." + ext.encode()
        else:
            user_part = _component(user, us, b"")
            if user_part is None:
                continue
            rel = host_dir + b"/" + store_part + b"/" + user_part + b"." + ext.encode()
        content = dump_dat(values[0]) if ext == "dat" else b"".join(map(dump_item, values))
        try:
            path = write(root, rel, content)
        except OSError:  # a directory where a file is, or the other way round
            continue
        written[str(path)] = content
    return {p: c for p, c in written.items() if os.path.isfile(p)}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=directories())
def test_any_directory_restores_every_exported_file(entries):
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "source"
        source.mkdir()
        written = build(source, entries)
        out = tmp_path / "backup.jsonl"
        proc = run(source, "export", "--skip-damaged", "-o", out, check=None)
        dump = out.read_bytes()
        dm = DataManager(source)
        recs = []
        with open(out, "rb") as f:
            for rec in read_records(f):
                if rec.items is not None:
                    list(rec.items)
                recs.append(rec)
        ext = {"keyval": "dat", "list": "list"}
        sources = [dm.existing_path(r.user, r.host, r.store, ext[r.type]) for r in recs]
        assert len(set(sources)) == len(sources)
        assert set(sources) <= set(written)  # export reads only data files
        reported = set(written) - set(sources)
        skipped = [x for x in stderr_lines(proc) if x.startswith("prosody-store: skipped ")]
        assert len(skipped) == len(reported), (skipped, reported)
        for path in reported:
            if path.isprintable():
                assert any(x.startswith(f"prosody-store: skipped {path}: ") for x in skipped)
        assert proc.returncode == (1 if reported else 0), proc.stderr
        # Import restores every exported file, with the same data, and nothing
        # else.  (The same bytes too, unless a table had "$..." keys before
        # others: those come back after them.  Export, import, export is the
        # same bytes always.)
        target = restore(dump, tmp_path, "target")
        tdm = DataManager(target)
        restored = {}
        for r, src in zip(recs, sources):
            path = tdm.getpath(r.user, r.host, r.store, ext[r.type])
            got = Path(path).read_bytes()
            if r.type == "keyval":
                assert canon(loads(got)) == canon(loads(written[src])), src
            else:
                assert [canon(x) for x in iter_list(got)] == \
                    [canon(x) for x in iter_list(written[src])], src
            restored[path] = True
        data_files = {str(p) for p in target.rglob("*")
                      if p.is_file() and p.name.endswith((".dat", ".list"))}
        assert data_files == set(restored)
        assert run(target, "export").stdout == dump
        # Without --skip-damaged: the same output, or one line and no file.
        out2 = tmp_path / "backup2.jsonl"
        proc = run(source, "export", "-o", out2, check=None)
        if reported:
            assert proc.returncode == 1 and not out2.exists()
            [line] = stderr_lines(proc)
            assert line.startswith("prosody-store: cannot export ")
        else:
            assert proc.returncode == 0 and out2.read_bytes() == dump
        # verify flags exactly the directories export cannot back up whole.
        assert run(source, "verify", check=None).returncode == (1 if reported else 0)
