"""prosody_store.sql against real Prosody 0.12.3 (mod_storage_sql via prosody-migrator).

* Prosody reads what we write: ``prosody-migrator`` (Debian's prosody, with
  ``lua-dbi-sqlite3`` / ``lua-dbi-postgresql``) copies our SQL tables back into
  a filesystem directory through ``mod_storage_sql`` and ``mod_storage_internal``;
  every keyval store and archive must equal the original.
* Side by side: ``prosody-migrator`` converts the same directory to SQL; its
  rows and ours are the same up to row order, JSON key order and XML attribute order.
* Round trip through PostgreSQL (SQLite's is in test_sql.py).

PostgreSQL is a throwaway server started here (tests/pgcluster.py), or the one
named by ``PROSODY_STORE_PG_URL``.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from prosody_store import json as pjson
from prosody_store.datamanager import DataManager
from prosody_store.serialization import dumps as lua
from prosody_store.sql import migrate_from_sql, migrate_to_sql, scan
from prosody_store.stanza import from_xml
from tests import pgcluster
from tests.conftest import skip_or_fail
from tests.sqldata import chmod_world, make_data, message, snapshot, stores_by_kind
from tests.tagged import canon

pytestmark = pytest.mark.interop

MIGRATOR = shutil.which("prosody-migrator")


def _missing_lua_dbi() -> str | None:
    if MIGRATOR is None:
        return "prosody-migrator not found (apt-get install prosody)"
    for lib in ("dbi/sqlite3", "dbi/postgresql"):
        found = [d for d in ("/usr/lib/x86_64-linux-gnu/lua/5.4", "/usr/lib/aarch64-linux-gnu/lua/5.4",
                             "/usr/local/lib/lua/5.4", "/usr/lib/lua/5.4")
                 if os.path.exists(os.path.join(d, "dbd", lib.split("/")[1] + ".so"))
                 or os.path.exists(os.path.join(d, lib + ".so"))]
        if not found and not _lua_can_require("dbd." + lib.split("/")[1]):
            return f"LuaDBI {lib} not installed (apt-get install lua-dbi-sqlite3 lua-dbi-postgresql)"
    return None


def _lua_can_require(module: str) -> bool:
    lua = shutil.which("lua5.4")
    if not lua:
        return False
    return subprocess.run([lua, "-e", f"require'{module}'"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def migrator():
    reason = _missing_lua_dbi()
    if reason:
        skip_or_fail(reason)
    return MIGRATOR


@pytest.fixture(scope="module")
def pg():
    reason = pgcluster.missing()
    if reason:
        skip_or_fail(reason)
    cluster = pgcluster.Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def work():
    # Not under pytest's tmp dir (mode 0700): prosody-migrator runs as the prosody user.
    root = Path(tempfile.mkdtemp(prefix="prosody-store-sql-"))
    data = str(root / "data")
    make_data(data, archive_items=4)
    chmod_world(str(root))
    yield root, data
    shutil.rmtree(root, ignore_errors=True)


def _sql_conf(url: str, pg=None) -> str:
    if url.startswith("sqlite"):
        return f'type = "sql"; driver = "SQLite3"; database = {lua(url[len("sqlite://"):])};'
    p = pg.params(url)
    return (f'type = "sql"; driver = "PostgreSQL"; database = {lua(p["database"])}; '
            f'host = {lua(p["host"])}; port = {p["port"]}; username = {lua(p["username"])}; '
            f'password = {lua(p["password"])};')


def run_migrator(root, input_conf: str, output_conf: str, stores: dict) -> None:
    hosts = "; ".join(
        f"[{lua(h)}] = {{ {', '.join([lua(s) for s in kv] + [lua(s + '-archive') for s in ar])} }}"
        for h, (kv, ar) in stores.items())
    cfg = os.path.join(root, "migrator.cfg.lua")
    with open(cfg, "w") as f:
        f.write(f"input {{ {input_conf} hosts = {{ {hosts} }}; }}\n"
                f"output {{ {output_conf} }}\n")
    os.chmod(cfg, 0o644)
    chmod_world(str(root))
    proc = subprocess.run([MIGRATOR, f"--config={cfg}", "input", "output"], capture_output=True,
                          text=True, cwd=str(root), timeout=120)
    assert proc.returncode == 0 and "Done!" in proc.stderr, proc.stdout + proc.stderr
    chmod_world(str(root))


def _url(kind: str, root, name: str, pg) -> str:
    if kind == "sqlite":
        return f"sqlite://{root}/{name}.sqlite"
    return pg.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


def test_prosody_reads_what_we_write(migrator, work, backend, request):
    pg = request.getfixturevalue("pg") if backend == "postgresql" else None
    root, data = work
    url = _url(backend, root, "ours-read", pg)
    report = migrate_to_sql(data, url)
    assert report.ok, report.errors
    out = str(root / f"prosody-read-{backend}")
    os.makedirs(out)
    run_migrator(root, _sql_conf(url, pg), f'type = "internal"; path = {lua(out)};',
                 stores_by_kind(data))
    dm = DataManager(data, write_index=False)
    entries = scan(dm)
    original = snapshot(data, entries)
    assert len(original) == 37
    # mod_storage_sql's keyval get skips rows whose value is false ("if k and v"):
    # a top-level false is written (by prosody-migrator too) but Prosody never reads it.
    misc = dm.load("bob", "localhost", "misc")
    assert misc["no"] is False
    for host in ("localhost", "example.org"):
        original[(host, "misc", "bob", "keyval")] = canon(
            {k: v for k, v in dm.load("bob", host, "misc").items() if v is not False})
    assert snapshot(out, entries) == original


def _normal_rows(url: str, pg) -> tuple[Counter, dict]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite://"):])
    else:
        import psycopg
        conn = psycopg.connect(url)
    try:
        kv = conn.execute('SELECT host, "user", store, key, type, value FROM prosody').fetchall()
        ar = conn.execute('SELECT host, "user", store, key, "when", "with", type, value '
                          'FROM prosodyarchive ORDER BY sort_id').fetchall()
    finally:
        conn.close()

    def norm(t, v):
        if t == "json":
            return canon(pjson.loads(v))
        if t == "xml":
            return canon(from_xml(v))
        return v

    keyval = Counter((h, u, s, k, t, norm(t, v)) for h, u, s, k, t, v in kv)
    archives: dict = {}
    for h, u, s, k, w, wi, t, v in ar:
        archives.setdefault((h, u, s), []).append((k, w, wi, t, norm(t, v)))
    return keyval, archives


def test_same_rows_as_prosody_migrator(migrator, work, backend, request):
    pg = request.getfixturevalue("pg") if backend == "postgresql" else None
    root, data = work
    theirs = _url(backend, root, "theirs", pg)
    run_migrator(root, f'type = "internal"; path = {lua(data)};', _sql_conf(theirs, pg),
                 stores_by_kind(data))
    ours = _url(backend, root, "ours", pg)
    assert migrate_to_sql(data, ours).ok
    kv_theirs, ar_theirs = _normal_rows(theirs, pg)
    kv_ours, ar_ours = _normal_rows(ours, pg)
    assert sum(kv_theirs.values()) > 100
    assert kv_ours == kv_theirs
    assert ar_ours == ar_theirs


def test_postgresql_round_trip_and_rerun(work, pg, tmp_path):
    _, data = work
    url = pg.new_database()
    first = migrate_to_sql(data, url, batch_rows=7)
    assert first.ok
    again = migrate_to_sql(data, url)
    assert again.rows == first.rows
    back = str(tmp_path / "back")
    report = migrate_from_sql(url, back)
    assert report.ok and report.rows == first.rows
    assert snapshot(back) == snapshot(data)


def test_postgresql_float_when_and_refusals(pg, tmp_path):
    path = str(tmp_path / "d")
    dm = DataManager(path)
    item = message(1, "a@h", "b@h", "x", 1700000000)
    item["when"] = 1700000000.75  # prosody-migrator aborts on this with PostgreSQL
    dm.list_store("u", "h", "archive", [item])
    dm.store("u", "h", "nul", {"x": "a\x00b"})
    url = pg.new_database()
    report = migrate_to_sql(path, url)
    assert [w for w, _ in report.errors] == ["u@h store nul (keyval)"]
    import psycopg
    with psycopg.connect(url) as conn:
        assert conn.execute('SELECT "when" FROM prosodyarchive').fetchall() == [(1700000000,)]
