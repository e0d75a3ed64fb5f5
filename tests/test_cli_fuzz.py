"""The command line on generated input: never a traceback, every error one line.

Hypothesis builds command lines for every data command (get, put, append,
delete, hosts, users, stores, export, import, archive expire, verify,
reindex): names, hosts, stores and JIDs (known ones, typos, and arbitrary argv
text, non-UTF-8 bytes included), durations, options and paths; and stdin
(JSON Lines records for import, JSON and Lua values for put/append, junk).
Each runs through the real entry point, :func:`prosody_store.cli.main`, in
this process, on a fresh copy of a small data directory written by Prosody,
with stdin, stdout (strict UTF-8, as in a UTF-8 locale) and stderr captured.
The exit status is 0, 1 or 2, no exception escapes, and every line on stderr
is one whole message (``prosody-store...``), none a traceback.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prosody_store.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
MAX_EXAMPLES = 400  # 5 to 20 s here (by load); the test must stay under 30 s


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """fixtures/demo plus the odd corners: a user name that is not UTF-8, a
    store without user, host-less data, a 0.10 (unencoded) store directory."""
    data = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(DEMO, data)
    archive = data / "localhost" / "archive"
    shutil.copy(archive / "alice.list", archive / "%ff.list")
    (data / "localhost" / "motd.dat").write_bytes(b'return {\n\t["text"] = "hello";\n};\n')
    (data / "_global" / "cron").mkdir(parents=True)
    (data / "_global" / "cron" / "admin.dat").write_bytes(b'return {\n\t["n"] = 1;\n};\n')
    legacy = data / "localhost" / "pep_urn:xmpp:avatar:metadata"
    legacy.mkdir()
    (legacy / "alice.list").write_bytes(b'item({\n\t["id"] = "x";\n});\n')
    return data


# ---------------------------------------------------------------------------
# Strategies


def argv_text(max_size: int = 16) -> st.SearchStrategy[str]:
    """Text as argv can hold it: any bytes but NUL, decoded as Python decodes argv."""
    return st.one_of(
        st.binary(max_size=max_size).filter(lambda b: b"\0" not in b).map(os.fsdecode),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=max_size))


def known_or(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), argv_text())


HOSTS = known_or(["localhost", "_global", "typo.example", "", "example.com", "LOCALHOST",
                  "localhost\n", "a" * 300, "-x", "%2e"])
USERS = known_or(["alice", "bob", "admin", "nobody", "", "\udcff", "al ice", "a" * 300])
STORES = known_or(["roster", "archive", "accounts", "vcard", "motd", "cron", "private",
                   "pep_urn:xmpp:avatar:metadata", "offline", "muc_log", "", "x" * 300,
                   "ro\nster", "../roster"])
JIDS = st.one_of(
    st.sampled_from(["alice@localhost", "bob@localhost", "localhost", "_global",
                     "admin@_global", "@localhost", "alice@", "@", "a@b@localhost",
                     "\udcff@localhost", "alice@typo.example"]),
    st.builds(lambda u, h: f"{u}@{h}", USERS, HOSTS),
    HOSTS)
DURATIONS = st.one_of(
    st.sampled_from(["1", "90d", "2w", "6m", "1y", "12h", "30min", "3 weeks", "never",
                     "NEVER", " 5d ", "0", "\u0661\u0662", "9" * 400, "1.5d", "-1d", "5k",
                     "\uff15d", "1e3", "inf"]),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10 ** 30),
              st.sampled_from(["", "d", "w", "m", "y", "h", "min", "s", " days", "x"])),
    argv_text(8))
TIMES = st.one_of(st.sampled_from(["0", "1764300150", "nan", "inf", "-inf", "1e308", "x",
                                   "\u0661"]),
                  st.floats(allow_nan=False, allow_infinity=False).map(repr))

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
              st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def json_text(value) -> str:
    return json.dumps(value, allow_nan=True)


LUA_SNIPPETS = ["return {};", "{a = 1}", "return {1, 2, 3};", "{[true] = 1, [1] = 2}",
                "{os.exit(1)}", "{a = }", "return", "{" * 2000 + "}" * 2000, "1e999",
                '{"\\xff"}', "{[0/0] = 1}", "item({});", '{["a"] = "\\u{110000}"}']

VALUE_INPUT = st.one_of(
    JSON_VALUES.map(lambda v: json_text(v).encode()),
    st.sampled_from(LUA_SNIPPETS).map(str.encode),
    st.sampled_from([b"", b"   ", b"[" * 5000, b'{"a":' * 3000, b"\xff\xfe", b"null",
                     b"[1e999999]", b'"\\ud800"', b"{}", b"[]", b'{"$bytes":"/w=="}']),
    st.binary(max_size=40))

RECORD = st.fixed_dictionaries({
    "host": st.one_of(st.none(), st.sampled_from(["localhost", "new.example"]), st.text(max_size=6),
                      st.integers()),
    "user": st.one_of(st.none(), st.sampled_from(["alice", "carol"]), st.text(max_size=6)),
    "store": st.one_of(st.sampled_from(["roster", "archive", "notes"]), st.text(max_size=6),
                       st.none()),
    "type": st.sampled_from(["keyval", "list", "bag", ""]),
    "value": JSON_VALUES,
})
IMPORT_INPUT = st.one_of(
    st.lists(st.one_of(RECORD.map(json_text),
                       st.sampled_from(["", "not json", "{", "[]", '{"host":null}']),
                       argv_text(20)), max_size=4).map(lambda lines: os.fsencode("\n".join(lines))),
    st.binary(max_size=60))

OPTION_NOISE = st.one_of(st.just([]), st.just([]), st.just([]), st.lists(st.sampled_from(
    ["--json", "--dry-run", "-v", "--verbose", "--repair", "--create-host", "--bogus", "-",
     "--type", "--type=list", "--type=keyval", "--type=x", "--format=lua", "--format=json",
     "--format=xml", "--host", "--store", "--older-than", "--help", "--", "-o"]),
    min_size=1, max_size=2))
"""Stray options, one case in four: most command lines are well formed."""


@st.composite
def command_lines(draw):
    """(argv without --data-path, stdin bytes, the input file's bytes or None)."""
    command = draw(st.sampled_from(["get", "put", "append", "delete", "hosts", "users",
                                    "stores", "export", "import", "archive", "verify",
                                    "reindex"]))
    stdin = b""
    infile = None
    repeat = st.lists(HOSTS, max_size=2)
    if command in ("get", "put", "append", "delete"):
        argv = [command, draw(JIDS), draw(STORES)]
        if command in ("put", "append"):
            stdin = draw(VALUE_INPUT)
            argv += draw(st.sampled_from([[], ["--create-host"]]))
        if command in ("get", "put", "append"):
            argv += draw(st.sampled_from([[], ["--format", "lua"], ["--format", "json"]]))
        if command in ("get", "delete"):
            argv += draw(st.sampled_from([[], ["--type", "keyval"], ["--type", "list"]]))
    elif command == "hosts":
        argv = ["hosts"]
    elif command == "users":
        argv = ["users", draw(HOSTS)] + draw(st.sampled_from(
            [[], ["--store", "roster"], ["--store", "typo"]])) + draw(
            st.sampled_from([[], ["--type", "list"]]))
        if draw(st.booleans()):
            argv += ["--store", draw(STORES)]
    elif command == "stores":
        argv = ["stores", draw(JIDS)] + draw(st.sampled_from([[], ["--type", "list"]]))
    elif command == "import":
        argv = ["import"]
        where = draw(st.sampled_from(["stdin", "file", "missing", "directory", "-"]))
        data = draw(IMPORT_INPUT)
        if where == "stdin":
            stdin = data
        elif where == "file":
            infile = data
            argv.append("{tmp}/in.jsonl")
        elif where == "missing":
            argv.append("{tmp}/missing.jsonl")
        elif where == "directory":
            argv.append("{tmp}")
        else:
            stdin = data
            argv.append("-")
        argv += draw(st.sampled_from([[], ["--dry-run"], ["--json"], ["-v"]]))
    else:
        argv = ["archive", "expire", "--older-than", draw(DURATIONS)] \
            if command == "archive" else [command]
        for host in draw(repeat):
            argv += ["--host", host]
        if command != "verify":
            for store in draw(st.lists(STORES, max_size=2)):
                argv += ["--store", store]
        if command == "export":
            argv += draw(st.sampled_from([[], ["-o", "{tmp}/out.jsonl"], ["-o", "-"],
                                          ["-o", "{tmp}/no/such/dir/out.jsonl"],
                                          ["-o", "{tmp}"], ["-o", "{tmp}/out.jsonl", "--json"]]))
        if command == "archive":
            argv += draw(st.sampled_from([[], ["--dry-run"], ["--json"], ["-v"]]))
            if draw(st.booleans()):
                argv += ["--now", draw(TIMES)]
        if command in ("verify", "reindex"):
            argv += draw(st.sampled_from([[], ["--json"], ["--repair"], ["-v"]]))
    argv += draw(OPTION_NOISE)
    if command in ("hosts", "users", "stores"):
        argv += draw(st.sampled_from([[], ["--json"]]))
    return argv, stdin, infile


# ---------------------------------------------------------------------------
# Running the entry point in this process


def run_main(argv: list[str], stdin: bytes) -> tuple[int, bytes, str]:
    out = io.BytesIO()
    err = io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout = stdout
    sys.stderr = err
    try:
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse: --help, usage errors
            status = 0 if exit_.code is None else exit_.code
        with contextlib.suppress(ValueError):
            stdout.flush()
        written = out.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return status, written, err.getvalue()


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=command_lines(),
       location=st.sampled_from(["before"] * 4 + ["after"] * 3 + ["missing", "file"]))
def test_no_traceback_and_one_line_errors(template, case, location):
    argv, stdin, infile = case
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(template, data)
        if infile is not None:
            (Path(tmp) / "in.jsonl").write_bytes(infile)
        argv = [a.replace("{tmp}", tmp) for a in argv]
        if location == "before":
            argv = ["--data-path", str(data), *argv]
        elif location == "after":
            argv = [*argv, "--data-path", str(data)]
        elif location == "missing":
            argv = ["--data-path", str(Path(tmp) / "nope"), *argv]
        else:  # a data path that is a file
            argv = ["--data-path", str(data / "localhost" / "motd.dat"), *argv]
        old_env = os.environ.pop("PROSODY_DATA_PATH", None)
        try:
            status, _out, err = run_main(argv, stdin)
        finally:
            if old_env is not None:
                os.environ["PROSODY_DATA_PATH"] = old_env
    event(f"{case[0][0]}: exit {status}")  # pytest --hypothesis-show-statistics
    assert status in (0, 1, 2), (status, argv, err)
    assert "Traceback" not in err, (argv, err)
    lines = err.splitlines()
    if status:
        assert lines, (argv, status)
    for line in lines:
        assert line.startswith("prosody-store"), (argv, err)
