"""Errors of ``prosody-store`` say what happened (issue 12, point 5).

Permission denied, a read-only file system, a full disk and a path component
that is not a directory are each reported as such, on one line naming the path
as text (exit status 1), never as missing data; a ``--host``/``--store`` that
matches nothing is an error; ``put``/``append`` create a host only with
``--create-host``; durations are ASCII.  The CLI runs as a real subprocess on
copies of fixtures/demo.  Permission denial is made real by running it without
root's power to ignore file modes (``setpriv``); the read-only and full file
systems are real mounts (a read-only bind mount, a 64 KiB tmpfs).
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prosody_store.datamanager import DataManager
from prosody_store import errors
from tests.conftest import skip_or_fail
from tests.live_server import demo_copy, demo_on_tmpfs

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
NOCAPS = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
"""Run as root, but without the capabilities that let root ignore file modes."""


def cli(data, *args, input: bytes | str | None = None, wrapper: tuple[str, ...] = (),
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*wrapper, sys.executable, "-m", "prosody_store"]
    if data is not None:
        cmd += ["--data-path", str(data)]
    if isinstance(input, str):
        input = input.encode()
    environ = dict(os.environ)
    environ.pop("PROSODY_DATA_PATH", None)
    environ.update(env or {})
    return subprocess.run(cmd + [str(a) for a in args], input=input, capture_output=True,
                          cwd=ROOT, env=environ, timeout=60)


def error_line(proc: subprocess.CompletedProcess, status: int = 1) -> str:
    """The one line on stderr of a command that failed with ``status``."""
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == status, (proc.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("prosody-store"), lines
    assert "b'" not in lines[0] and 'b"' not in lines[0], lines  # paths as text
    return lines[0]


def ok(proc: subprocess.CompletedProcess) -> bytes:
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode())
    assert proc.stderr == b"", proc.stderr.decode()
    return proc.stdout


def ident(param) -> str:
    """A test id: the arguments, the stdin as "stdin"."""
    if isinstance(param, list):
        return " ".join(param)
    return "stdin" if isinstance(param, bytes) else str(param)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def demo(tmp_path) -> Path:
    return demo_copy(tmp_path)


@pytest.fixture
def nocaps():
    """The wrapper that makes permission denial real (tests run as root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        skip_or_fail("needs root and setpriv to run the CLI without root's file powers")
    return NOCAPS


@pytest.fixture
def chmod():
    """chmod that is undone after the test (so that pytest can remove tmp_path)."""
    changed: list[tuple[Path, int]] = []

    def change(path: Path, mode: int) -> None:
        changed.append((path, path.stat().st_mode & 0o7777))
        path.chmod(mode)

    yield change
    for path, mode in reversed(changed):
        path.chmod(mode)


# ---------------------------------------------------------------------------
# Permission denied is not missing data


ROSTER_COMMANDS = [
    (["get", "alice@localhost", "roster"], None),
    (["get", "alice@localhost", "roster", "--type", "list"], None),
    (["stores", "alice@localhost"], None),
    (["stores", "alice@localhost", "--type", "keyval"], None),
    (["users", "localhost"], None),
    (["users", "localhost", "--store", "roster"], None),
    (["export"], None),
    (["export", "--store", "roster"], None),
    (["verify"], None),
    (["archive", "expire", "--older-than", "1d", "--store", "roster"], None),
    (["delete", "alice@localhost", "roster"], None),
    (["put", "alice@localhost", "roster"], b'{"a":1}'),
    (["append", "alice@localhost", "roster"], b'{"a":1}'),
]


@pytest.mark.parametrize("args,stdin", ROSTER_COMMANDS, ids=ident)
def test_unreadable_store_directory_is_permission_denied(demo, nocaps, chmod, args, stdin):
    """``chmod 0`` on a store directory: "no data" and silently shorter listings
    (``stores alice@localhost`` left roster out, exit 0) before."""
    chmod(demo / "localhost" / "roster", 0)
    before = snapshot(demo)
    line = error_line(cli(demo, *args, input=stdin, wrapper=nocaps))
    assert "Permission denied" in line and str(demo / "localhost" / "roster") in line, line
    assert "no data" not in line
    chmod(demo / "localhost" / "roster", 0o755)
    assert snapshot(demo) == before


@pytest.mark.parametrize("args", [
    ["users", "localhost"], ["users", "localhost", "--store", "roster"],
    ["stores", "localhost"], ["stores", "localhost", "--type", "list"],
    ["stores", "alice@localhost"], ["export"], ["verify"], ["reindex"],
    ["archive", "expire", "--older-than", "1"], ["get", "alice@localhost", "roster"],
], ids=" ".join)
def test_host_directory_that_cannot_be_searched(demo, nocaps, chmod, args):
    """A host directory with mode r-- (listable, not searchable): every listing
    came out empty with exit 0 before, so export wrote an empty backup."""
    chmod(demo / "localhost", 0o644)
    line = error_line(cli(demo, *args, wrapper=nocaps))
    assert "Permission denied" in line and str(demo / "localhost") in line, line


def test_data_directory_that_cannot_be_searched(demo, nocaps, chmod):
    """``hosts`` printed nothing, exit 0."""
    chmod(demo, 0o644)
    line = error_line(cli(demo, "hosts", wrapper=nocaps))
    assert "Permission denied" in line and str(demo) in line
    line = error_line(cli(demo, "hosts", "--json", wrapper=nocaps))
    assert "Permission denied" in line


def test_data_directory_that_cannot_be_listed(demo, nocaps, chmod):
    chmod(demo, 0o311)
    line = error_line(cli(demo, "hosts", wrapper=nocaps))
    assert "Permission denied" in line and str(demo) in line
    assert ok(cli(demo, "get", "alice@localhost", "vcard", wrapper=nocaps))  # searching works


def test_unreachable_data_directory_is_not_missing(demo, nocaps, chmod):
    """Its parent not searchable: "data directory ... does not exist" before."""
    chmod(demo.parent, 0)
    for args in (["hosts"], ["get", "alice@localhost", "roster"], ["export"]):
        line = error_line(cli(demo, *args, wrapper=nocaps))
        assert "Permission denied" in line and str(demo) in line, line
        assert "does not exist" not in line


def test_unreadable_file(demo, nocaps, chmod):
    chmod(demo / "localhost" / "roster" / "alice.dat", 0)
    for args in (["get", "alice@localhost", "roster"], ["export"], ["verify"]):
        line = error_line(cli(demo, *args, wrapper=nocaps))
        assert "Permission denied" in line and "roster/alice.dat" in line, line


def test_library_listing_raises_storage_error(demo, nocaps, chmod):
    """The library's listings raise StorageError (a prosody_store.Error and an
    OSError) with the path as text; run in a child without root's file powers."""
    chmod(demo / "localhost", 0o644)
    script = (
        "import sys\n"
        "from prosody_store.datamanager import DataManager\n"
        "from prosody_store.errors import Error, StorageError\n"
        "dm = DataManager(sys.argv[1])\n"
        "calls = [lambda: list(dm.users('localhost', 'roster')),\n"
        "         lambda: list(dm.stores(True, 'localhost')),\n"
        "         lambda: list(dm.stores('alice', 'localhost')),\n"
        "         lambda: dm.store_names('localhost'),\n"
        "         lambda: list(dm.iter_files())]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except StorageError as err:\n"
        "        assert isinstance(err, Error) and isinstance(err, OSError)\n"
        "        assert isinstance(err.filename, str), err.filename\n"
        "        print(err.errno, err)\n"
        "    else:\n"
        "        print('no error')\n")
    # -c: the package of this checkout (the current directory) is imported
    proc = subprocess.run([*nocaps, sys.executable, "-c", script, str(demo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith(f"{errno.EACCES} cannot ") for line in lines), \
        lines
    assert all(str(demo / "localhost") in line and "Permission denied" in line for line in lines)


def test_storage_error_is_an_error_and_an_oserror():
    err = errors.StorageError(errno.EROFS, "Read-only file system", "/x/y", "write")
    assert isinstance(err, errors.Error) and isinstance(err, OSError)
    assert (err.errno, err.strerror, err.filename) == (errno.EROFS, "Read-only file system", "/x/y")
    assert str(err) == "cannot write /x/y: Read-only file system"
    import pickle
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.StorageError and str(back) == str(err) and back.errno == errno.EROFS


# ---------------------------------------------------------------------------
# Not a directory


def test_data_path_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"")
    line = error_line(cli(path, "hosts"))
    assert "not a directory" in line.lower() and "does not exist" not in line


def test_store_that_is_a_file_is_not_missing_data(demo):
    """``localhost/roster`` a regular file: "no data in store 'roster'" and an
    empty ``users --store roster`` (exit 0) before."""
    shutil.rmtree(demo / "localhost" / "roster")
    (demo / "localhost" / "roster").write_bytes(b"not a directory\n")
    for args in (["get", "alice@localhost", "roster"], ["users", "localhost", "--store", "roster"],
                 ["get", "alice@localhost", "roster", "--type", "list"]):
        line = error_line(cli(demo, *args))
        assert "Not a directory" in line and str(demo / "localhost" / "roster") in line, line
        assert "no data" not in line


def test_host_that_is_a_file_is_not_missing_data(demo):
    (demo / "example%2ecom").write_bytes(b"")
    for args in (["get", "alice@example.com", "roster"], ["users", "example.com"],
                 ["stores", "example.com"], ["export", "--host", "example.com"],
                 ["archive", "expire", "--older-than", "1", "--host", "example.com"]):
        line = error_line(cli(demo, *args))
        assert "Not a directory" in line and str(demo / "example%2ecom") in line, line
    assert ok(cli(demo, "hosts")) == b"localhost\n"  # a stray file is not a host


# ---------------------------------------------------------------------------
# Read-only and full file systems


@pytest.fixture
def readonly(tmp_path):
    """A read-only bind mount of a copy of the demo data (its .lidx removed)."""
    if os.geteuid() != 0:
        skip_or_fail("a bind mount needs root")
    source = tmp_path / "source"
    shutil.copytree(DEMO, source)
    (source / "localhost" / "archive" / "alice.lidx").unlink()
    point = tmp_path / "ro"
    point.mkdir()
    result = subprocess.run(["mount", "-o", "bind,ro", str(source), str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        skip_or_fail(f"cannot make a read-only bind mount here: {result.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_library_write_paths_raise_storage_errors(readonly):
    """Every store method that fails on the file system raises StorageError:
    a prosody_store.Error and an OSError with its errno, naming the path as text."""
    import errno

    import prosody_store
    from prosody_store.datamanager import DataManager

    dm = DataManager(readonly)
    calls = [
        lambda: dm.store("alice", "localhost", "roster", {"a": 1}),
        lambda: dm.store("alice", "localhost", "fresh", {"a": 1}),
        lambda: dm.list_append("alice", "localhost", "archive", {"a": 1}),
        lambda: dm.list_store("alice", "localhost", "archive", [1]),
        lambda: dm.list_shift("alice", "localhost", "archive", 2),
        lambda: dm.list_reindex("alice", "localhost", "archive"),
        lambda: dm.update("alice", "localhost", "roster", lambda v: v),
        lambda: dm.purge("alice", "localhost"),
    ]
    before = snapshot(readonly)
    for call in calls:
        with pytest.raises(prosody_store.Error) as info:
            call()
        err = info.value
        assert isinstance(err, OSError) and err.errno == errno.EROFS, err
        assert isinstance(err.filename, str) and err.filename.startswith(str(readonly)), err
        assert "\n" not in str(err) and "b'" not in str(err)
    assert snapshot(readonly) == before


@pytest.mark.parametrize("args,stdin", [
    (["put", "alice@localhost", "roster"], b'{"a":1}'),
    (["put", "alice@localhost", "fresh"], b'{"a":1}'),
    (["put", "alice@newhost", "roster", "--create-host"], b'{"a":1}'),
    (["append", "alice@localhost", "archive"], b'{"a":1}'),
    (["append", "alice@localhost", "notes"], b'{"a":1}'),
    (["delete", "alice@localhost", "roster"], None),
    (["archive", "expire", "--older-than", "1"], None),
    (["reindex"], None),
], ids=ident)
def test_read_only_file_system(readonly, args, stdin):
    before = snapshot(readonly)
    line = error_line(cli(readonly, *args, input=stdin))
    assert "Read-only file system" in line and str(readonly) in line, line
    assert snapshot(readonly) == before


def test_reads_work_on_a_read_only_file_system(readonly):
    assert b"Hi Alice" in ok(cli(readonly, "get", "alice@localhost", "archive"))
    assert ok(cli(readonly, "export"))
    assert ok(cli(readonly, "verify")) == b""
    assert ok(cli(readonly, "archive", "expire", "--older-than", "1", "--dry-run"))


@pytest.fixture
def full(tmp_path):
    """A 64 KiB tmpfs holding a copy of the demo data."""
    with demo_on_tmpfs(tmp_path, "64k") as point:
        yield point / "data"


def fill(directory: Path) -> None:
    """Take every free block of the file system of ``directory``."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(64):  # 64 KiB in 1 KiB writes: a bounded loop
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk(full):
    big = b'{"notes":"' + b"x" * 100_000 + b'"}'
    data = full
    before = {k: v for k, v in snapshot(data).items() if v is not None}
    for args in (["put", "alice@localhost", "roster"], ["put", "alice@localhost", "settings"],
                 ["append", "alice@localhost", "archive"]):
        line = error_line(cli(data, *args, input=big))
        assert "No space left on device" in line, line
        assert {k: v for k, v in snapshot(data).items() if v is not None} == before
    # archive expire keeping some items needs room for the rewritten list
    fill(data.parent)
    line = error_line(cli(data, "archive", "expire", "--older-than", "1",
                          "--now", 1764300150 + 1))
    assert "No space left on device" in line, line
    assert {k: v for k, v in snapshot(data).items() if v is not None and k != "filler"} == before


# ---------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize("text", ["\u0661\u0662", "\u0661\u0662d", "\uff19\uff10d", "\u0969",
                                  "12\u00a0d", "\u200912d", "1\u0661", "9" * 400, "9" * 5000,
                                  "99999999999999999999y", "90 d\u0131", "90\u212a"])
def test_durations_are_ascii_and_bounded(demo, text):
    """``١٢`` (Arabic-Indic digits) was read as 12 seconds; 400 nines was a
    traceback (an int too large for a float)."""
    from prosody_store.archive import parse_duration
    with pytest.raises(ValueError):
        parse_duration(text)
    line = error_line(cli(demo, "archive", "expire", "--older-than", text), status=2)
    assert "--older-than" in line
    assert (demo / "localhost" / "archive" / "alice.list").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_now_must_be_finite(demo, value):
    """``--now nan`` made every item expire (nothing is greater than NaN)."""
    error_line(cli(demo, "archive", "expire", "--older-than", "1", f"--now={value}"), status=2)
    assert (demo / "localhost" / "archive" / "alice.list").exists()


# ---------------------------------------------------------------------------
# Filters that match nothing


@pytest.mark.parametrize("args,named", [
    (["archive", "expire", "--older-than", "1", "--host", "typo"], "typo"),
    (["archive", "expire", "--older-than", "1", "--host", "localhost", "--host", "typo"], "typo"),
    (["archive", "expire", "--older-than", "1", "--store", "acrhive"], "acrhive"),
    (["archive", "expire", "--older-than", "1", "--host", "localhost", "--store", "muc_log"],
     "muc_log"),
    (["archive", "expire", "--older-than", "1", "--host", "_global"], "_global"),
    (["users", "localhost", "--store", "typo"], "typo"),
    (["stores", "typo.example"], "typo.example"),
    (["stores", "alice@typo.example"], "typo.example"),
    (["delete", "alice@typo.example", "roster"], "typo.example"),
    (["get", "alice@typo.example", "roster"], "typo.example"),
    (["export", "--host", "typo"], "typo"),
    (["export", "--store", "rostre"], "rostre"),
    (["export", "--host", "localhost", "--store", "rostre"], "rostre"),
    (["verify", "--host", "typo"], "typo"),
    (["reindex", "--host", "typo"], "typo"),
    (["reindex", "--store", "acrhive"], "acrhive"),
    (["migrate", "--to", "sqlite:///nowhere.sqlite", "--dry-run", "--host", "typo"], "typo"),
    (["migrate", "--to", "sqlite:///nowhere.sqlite", "--dry-run", "--store", "rostre"],
     "rostre"),
], ids=ident)
def test_filter_matching_nothing_is_an_error(demo, args, named):
    """``archive expire --host typo`` did nothing and exited 0."""
    before = snapshot(demo)
    line = error_line(cli(demo, *args))
    assert repr(named) in line, line
    assert snapshot(demo) == before


def test_filters_that_match(demo):
    ok(cli(demo, "archive", "expire", "--older-than", "1", "--host", "localhost",
           "--store", "archive", "--dry-run"))
    ok(cli(demo, "archive", "expire", "--older-than", "1", "--store", "roster", "--dry-run"))
    assert ok(cli(demo, "users", "localhost", "--store", "vcard")) == b"alice\n"
    assert ok(cli(demo, "users", "localhost", "--store", "vcard", "--type", "list")) == b""
    assert ok(cli(demo, "stores", "nobody@localhost")) == b""  # a user without data: no filter
    assert b'"store":"roster"' in ok(cli(demo, "export", "--host", "localhost",
                                         "--store", "roster"))
    ok(cli(demo, "verify", "--host", "localhost"))
    ok(cli(demo, "reindex", "--host", "localhost", "--store", "archive"))
    ok(cli(demo, "delete", "nobody@localhost", "roster"))  # nothing there is fine
    # the default store is no filter: a server without archives yet is fine
    shutil.rmtree(demo / "localhost" / "archive")
    ok(cli(demo, "archive", "expire", "--older-than", "1"))


# ---------------------------------------------------------------------------
# put / append create a host only when asked


@pytest.mark.parametrize("command", ["put", "append"])
def test_put_append_need_create_host(demo, command):
    """They created ``newhost`` (a typo, usually) without a word."""
    before = snapshot(demo)
    line = error_line(cli(demo, command, "alice@newhost.example", "settings", input='{"a":1}'))
    assert "'newhost.example'" in line and "--create-host" in line, line
    assert snapshot(demo) == before
    line = error_line(cli(demo, command, "_global", "settings", input='{"a":1}'))
    assert "'_global'" in line
    assert snapshot(demo) == before
    ok(cli(demo, command, "alice@newhost.example", "settings", "--create-host", input='{"a":1}'))
    dm = DataManager(demo)
    value = (dm.load if command == "put" else dm.list_load)("alice", "newhost.example", "settings")
    assert value == ({"a": 1} if command == "put" else [{"a": 1}])
    ok(cli(demo, command, "bob@newhost.example", "settings", input='{"b":1}'))  # it exists now
    ok(cli(demo, command, "bob@localhost", "settings", input='{"b":1}'))


# ---------------------------------------------------------------------------
# Neighbours: what else printed a traceback or more than one line


def test_names_with_line_breaks_are_one_line(demo):
    for args in (["get", "al\nice@localhost", "roster"], ["get", "alice@localhost", "ro\nster"],
                 ["users", "local\nhost"], ["delete", "a@x\ny", "s"]):
        line = error_line(cli(demo, *args))
        assert "\\n" in line, line


def test_usage_errors_are_one_line(demo):
    for args in (["frobnicate"], ["get", "alice@localhost"], ["get", "a@b", "s", "--format", "x"],
                 ["archive"], ["archive", "expire"], ["users"], ["--bogus", "hosts"],
                 ["get", "@localhost", "roster"], ["archive", "expire", "--older-than", "x\ny"]):
        line = error_line(cli(demo, *args), status=2)
        assert "error" in line or "not" in line or "empty" in line, line


def test_non_utf8_names_on_a_utf8_stdout(demo):
    """A user name that is not UTF-8, printed by ``archive expire -v``, was a
    UnicodeEncodeError traceback where stdout is strict UTF-8 (a UTF-8 locale)."""
    shutil.copy(demo / "localhost" / "archive" / "alice.list",
                demo / "localhost" / "archive" / "%ff.list")
    env = {"PYTHONIOENCODING": "utf-8"}
    out = ok(cli(demo, "archive", "expire", "--older-than", "1", "--dry-run", env=env))
    assert b"\xff@localhost archive: would drop 4, kept 0\n" in out
    assert ok(cli(demo, "users", "localhost", "--store", "archive", env=env)) == b"alice\n\xff\n"
    line = error_line(cli(demo, "get", os.fsdecode(b"\xfe@localhost"), "archive", env=env))
    assert "no list" in line or "no data" in line


def test_closed_stdin(demo):
    """``put ... <&-``: sys.stdin is None, an AttributeError traceback before."""
    for command in ("put", "append"):
        proc = subprocess.run(
            [sys.executable, "-m", "prosody_store", "--data-path", str(demo), command,
             "alice@localhost", "x"], stdin=subprocess.DEVNULL, capture_output=True, cwd=ROOT,
            timeout=60, preexec_fn=lambda: os.close(0))
        assert "no data on stdin" in error_line(proc)


def test_full_stdout(demo):
    """``hosts > /dev/full``: the error came at exit, as several lines."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    for args in (["hosts"], ["get", "alice@localhost", "roster"], ["export"]):
        with open("/dev/full", "wb") as out:
            proc = subprocess.run([sys.executable, "-m", "prosody_store", "--data-path",
                                   str(demo), *args], stdout=out, stderr=subprocess.PIPE,
                                  cwd=ROOT, timeout=60)
        assert "No space left on device" in error_line(proc), args


@pytest.mark.parametrize("option", ["--data-path", "--prosody-config"])
def test_empty_location_option_is_a_usage_error(demo, option):
    """``--data-path "$UNSET"`` went on with /var/lib/prosody (or $PROSODY_DATA_PATH)."""
    proc = cli(None, option, "", "hosts", env={"PROSODY_DATA_PATH": str(demo)})
    assert option in error_line(proc, status=2)
    proc = cli(None, "hosts", option, "", env={"PROSODY_DATA_PATH": str(demo)})
    assert option in error_line(proc, status=2)
