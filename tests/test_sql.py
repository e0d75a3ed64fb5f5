"""prosody_store.sql without Prosody: encodings, SQLite round trips, re-runs, the CLI."""
from __future__ import annotations

import math
import os
import sqlite3

import pytest

from prosody_store import FALSE_KEY, TRUE_KEY
from prosody_store import json as pjson
from prosody_store.cli import main as cli_main
from prosody_store.datamanager import DataManager
from prosody_store.sql import (
    MigrationError,
    SQLError,
    connect,
    decode_keyval,
    encode_archive_item,
    encode_keyval,
    encode_value,
    format_datetime,
    migrate_from_sql,
    migrate_to_sql,
    parse_datetime,
)
from tests.sqldata import make_data, message, snapshot
from tests.tagged import canon


def rows(db_path: str, archive_order: bool = False) -> tuple[list, list]:
    conn = sqlite3.connect(db_path)
    try:
        kv = sorted(conn.execute('SELECT host, user, store, key, type, value FROM prosody'))
        ar = list(conn.execute('SELECT host, user, store, key, "when", "with", type, value '
                               'FROM prosodyarchive ORDER BY host, user, store, sort_id'))
    finally:
        conn.close()
    return kv, ar


@pytest.fixture
def data(tmp_path):
    path = str(tmp_path / "data")
    make_data(path)
    return path


# -- encodings ------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("x", ("string", "x")),
    ("", ("string", "")),
    (True, ("boolean", "true")),
    (False, ("boolean", "false")),
    (5, ("number", "5")),
    (-(2 ** 63), ("number", "-9223372036854775808")),
    (2.5, ("number", "2.5")),
    (3.0, ("number", "3.0")),
    (1e15, ("number", "1e+15")),
    (0.1 + 0.2, ("number", "0.3")),  # tostring's %.14g, as Prosody stores it
    ({"a": [1, 2]}, ("json", '{"a":[1,2]}')),
    ([1, "x"], ("json", '[1,"x"]')),
    ({}, ("json", "{}")),
])
def test_encode_value(value, expected):
    assert encode_value(value) == expected


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, {"a": [1, math.inf]},
                                   {1.5: math.nan}])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(MigrationError):
        encode_value(value)


def test_encode_keyval_rows():
    rows_ = encode_keyval({False: {"version": 2}, "bob@x": {"subscription": "both"},
                           "": "empty", 1: "one", "n": None})
    assert rows_ == [("bob@x", "json", '{"subscription":"both"}'),
                     ("", "json", '{"":"empty","__hash":[false,{"version":2}],"__array":["one"]}')]
    assert encode_keyval(["a", "b"]) == [("", "json", '["a","b"]')]
    assert encode_keyval({}) == []
    with pytest.raises(MigrationError):
        encode_keyval("not a table")


@pytest.mark.parametrize("value", [
    {"a": 1, "b": "x", False: {"v": 1}, 1: "one", "": "e"},
    ["a", "b", {"c": True}],
    {"x": {TRUE_KEY: "t", 1: "one"}, FALSE_KEY: 0, 0: "zero"},
    {"unicode": "\u00fc\U0001F600", "f": 2.5, "i": -3, "t": True},
    {1: "a", 3: "c"},
])
def test_keyval_rows_decode_to_the_value(value):
    decoded = decode_keyval(encode_keyval(value))
    assert canon(decoded) == canon(value)
    if isinstance(value, list):
        assert decoded == value


def test_decode_keyval_empty_and_bad_values():
    assert decode_keyval([]) is None
    assert decode_keyval([("a", "number", " 0x10 ")]) == {"a": 16}
    with pytest.raises(MigrationError):
        decode_keyval([("a", "boolean", "yes")])
    with pytest.raises(MigrationError):
        decode_keyval([("a", "number", "inf")])  # tonumber("inf") is nil in Lua
    with pytest.raises(MigrationError):
        decode_keyval([("a", "blob", "x")])


def test_encode_archive_item():
    item = message(1, "a@x/r", "b@x", "hi & <", 1700000000)
    key, when, with_, typ, xml = encode_archive_item(item, 7)
    assert (key, when, with_, typ) == ("key-1", 1700000000, "b@x<chat", "xml")
    assert "stamp" not in xml
    assert xml == ("<message xmlns='jabber:client' type='chat' from='a@x/r' to='b@x' id='m1'>"
                   "<body>hi &amp; &lt;</body><origin-id xmlns='urn:xmpp:sid:0' id='m1'/>"
                   "</message>")
    # No key: the position; no when: the stamp; no with: "".
    bare = message(2, "a@x", "b@x", "x", 1700000123, key=None, with_=None)
    del bare["when"]
    assert encode_archive_item(bare, 3)[:3] == ("3", 1700000123, "")
    # Neither when nor stamp: the default.
    bare = message(2, "a@x", "b@x", "x", 0, stamp=False)
    del bare["when"]
    assert encode_archive_item(bare, 3, default_when=99)[1] == 99
    with pytest.raises(MigrationError):
        encode_archive_item({"key": "x", "when": 1}, 1)
    with pytest.raises(MigrationError):
        encode_archive_item("text", 1)


@pytest.mark.parametrize("text, expected", [
    ("2023-11-14T22:13:20Z", 1700000000),
    ("2023-11-14T22:13:20.123Z", 1700000000),
    ("2023-11-14T23:13:20+01:00", 1700000000),
    ("2023-11-14T21:13:20-0100", 1700000000),
    ("20231114T22:13:20", 1700000000),
    ("yesterday", None),
    (None, None),
])
def test_parse_datetime(text, expected):
    assert parse_datetime(text) == expected


def test_format_datetime():
    assert format_datetime(1700000000) == "2023-11-14T22:13:20Z"
    assert format_datetime(1700000000.75) == "2023-11-14T22:13:20Z"


def test_urls(tmp_path):
    db = connect(f"sqlite://{tmp_path}/a.sqlite")
    db.close()
    assert (tmp_path / "a.sqlite").exists()
    for bad in ("mysql://x/y", "sqlite://host/x.sqlite", "sqlite://", "nonsense"):
        with pytest.raises(SQLError):
            connect(bad)


# -- SQLite ---------------------------------------------------------------------


def test_schema_is_prosodys(tmp_path, data):
    db = str(tmp_path / "p.sqlite")
    migrate_to_sql(data, f"sqlite://{db}")
    conn = sqlite3.connect(db)
    schema = {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master")}
    assert schema["prosody"] == (
        'CREATE TABLE "prosody" ("host" TEXT NOT NULL, "user" TEXT NOT NULL, "store" TEXT NOT NULL, '
        '"key" TEXT NOT NULL, "type" TEXT NOT NULL, "value" TEXT NOT NULL)')
    assert "AUTOINCREMENT" in schema["prosodyarchive"]
    assert set(schema) >= {"prosody_index", "prosodyarchive_index", "prosodyarchive_with_when",
                           "prosodyarchive_when", "prosodyarchive_sort"}


def test_round_trip_sqlite(tmp_path, data):
    db = f"sqlite://{tmp_path}/p.sqlite"
    report = migrate_to_sql(data, db)
    assert report.ok, report.errors
    assert report.archive_rows == 2 * 4 * 5 + 2 * 3 + 2
    back = str(tmp_path / "back")
    report2 = migrate_from_sql(db, back)
    assert report2.ok, report2.errors
    assert report2.rows == report.rows
    assert snapshot(back) == snapshot(data)
    # Archives come back as mod_storage_internal writes them: exactly the originals
    # where those were written that way.
    dm, dm2 = DataManager(data), DataManager(back)
    assert dm2.list_load("alice", "localhost", "archive") == dm.list_load("alice", "localhost",
                                                                           "archive")
    assert dm2.load(None, "localhost", "hoststore") == {"motd": "Welcome", "count": 3}
    assert dm2.load("bob", "localhost", "listvalue") == ["first", "second", {"third": 3}]


def test_rows(tmp_path, data):
    db = str(tmp_path / "p.sqlite")
    migrate_to_sql(data, f"sqlite://{db}", hosts=["localhost"], stores=["misc", "hoststore",
                                                                        "offline"])
    kv, ar = rows(db)
    misc = {r[3]: (r[4], r[5]) for r in kv if r[2] == "misc"}
    assert misc["i"] == ("number", "42")
    assert misc["whole"] == ("number", "3")  # the .dat holds 3.0 as "3", an integer
    assert misc["t"] == ("boolean", "true")
    assert misc["unicode"] == ("string", "\u00fc\u20ac\U0001F600")
    assert misc["list"] == ("json", '["x","y"]')
    assert misc[""][0] == "json"
    assert canon(pjson.loads(misc[""][1])) == canon(
        {"": "empty key", 1: "one", 2: "two", 7: "seven", False: {"v": 1}})
    assert ("localhost", "", "hoststore", "motd", "string", "Welcome") in kv
    assert [(r[3], r[4], r[5]) for r in ar] == [("1", 1700000000, "carol@localhost<chat"),
                                                ("key-2", 1700000100, "")]


def test_rerun_is_idempotent_and_replaces(tmp_path, data):
    db = str(tmp_path / "p.sqlite")
    url = f"sqlite://{db}"
    migrate_to_sql(data, url)
    first = rows(db)
    migrate_to_sql(data, url)
    assert rows(db) == first
    # The source changes: the user's rows are replaced, not merged.
    dm = DataManager(data)
    dm.store("bob", "localhost", "misc", {"only": "this"})
    dm.list_store("alice", "localhost", "archive", dm.list_load("alice", "localhost",
                                                                "archive")[:2])
    migrate_to_sql(data, url, hosts=["localhost"])
    kv, ar = rows(db)
    assert [r for r in kv if r[:3] == ("localhost", "bob", "misc")] == [
        ("localhost", "bob", "misc", "only", "string", "this")]
    assert len([r for r in ar if r[:3] == ("localhost", "alice", "archive")]) == 2
    # Other stores untouched.
    assert [r for r in kv if r[0] == "example.org"] == [r for r in first[0] if r[0] == "example.org"]


def test_interrupted_run_then_rerun(tmp_path, data):
    clean = str(tmp_path / "clean.sqlite")
    migrate_to_sql(data, f"sqlite://{clean}")
    db = str(tmp_path / "p.sqlite")
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_to_sql(data, f"sqlite://{db}", batch_rows=3, progress=progress)
    partial = rows(db)
    assert 0 < len(partial[0]) < len(rows(clean)[0])
    migrate_to_sql(data, f"sqlite://{db}")
    assert rows(db) == rows(clean)


def test_duplicate_archive_keys_later_wins(tmp_path):
    path = str(tmp_path / "d")
    dm = DataManager(path)
    dm.list_store("u", "h", "archive", [message(1, "a@h", "b@h", "old", 1700000000, key="k"),
                                        message(2, "a@h", "b@h", "other", 1700000001, key="o"),
                                        message(3, "a@h", "b@h", "new", 1700000002, key="k")])
    db = str(tmp_path / "p.sqlite")
    report = migrate_to_sql(path, f"sqlite://{db}")
    assert report.archive_rows == 2
    _, ar = rows(db)
    assert [(r[3], r[4]) for r in ar] == [("o", 1700000001), ("k", 1700000002)]


def test_dry_run_touches_nothing(tmp_path, data):
    db = tmp_path / "p.sqlite"
    report = migrate_to_sql(data, f"sqlite://{db}", dry_run=True)
    assert not db.exists()
    assert report.ok and report.archive_rows == 48 and report.keyval_rows > 40
    assert report.stores[("localhost", "archive", "archive")] == 4


def test_errors_skip_the_file_only(tmp_path, data):
    dm = DataManager(data)
    with open(dm.getpath("bob", "localhost", "roster"), "w") as f:
        f.write("return { broken")
    dm.store("alice", "localhost", "floats", {"x": math.inf})
    dm.list_append("alice", "localhost", "archive", {"key": "bad", "when": 1})
    db = str(tmp_path / "p.sqlite")
    report = migrate_to_sql(data, f"sqlite://{db}")
    where = sorted(w for w, _ in report.errors)
    assert where == ["alice@localhost store archive (archive)",
                     "alice@localhost store floats (keyval)",
                     "bob@localhost store roster (keyval)"]
    kv, ar = rows(db)
    assert not [r for r in ar if r[:3] == ("localhost", "alice", "archive")]
    assert [r for r in ar if r[:3] == ("localhost", "bob", "archive")]
    assert [r for r in kv if r[:3] == ("localhost", "alice", "roster")]


def test_float_when_kept_in_sqlite(tmp_path):
    path = str(tmp_path / "d")
    DataManager(path).list_store("u", "h", "archive",
                                 [message(1, "a@h", "b@h", "x", 1700000000)])
    dm = DataManager(path)
    items = dm.list_load("u", "h", "archive")
    items[0]["when"] = 1700000000.25
    dm.list_store("u", "h", "archive", items)
    db = str(tmp_path / "p.sqlite")
    migrate_to_sql(path, f"sqlite://{db}")
    assert rows(db)[1][0][4] == 1700000000.25
    migrate_from_sql(f"sqlite://{db}", str(tmp_path / "b"))
    item = DataManager(str(tmp_path / "b")).list_load("u", "h", "archive")[0]
    assert item["when"] == 1700000000.25 and item["attr"]["stamp"] == "2023-11-14T22:13:20Z"


def test_non_utf8_strings_as_blobs(tmp_path):
    path = str(tmp_path / "d")
    DataManager(path).store("u", "h", "s", {"raw": b"\xff\xfe", "k": [b"\xc3"]})
    db = str(tmp_path / "p.sqlite")
    assert migrate_to_sql(path, f"sqlite://{db}").ok
    migrate_from_sql(f"sqlite://{db}", str(tmp_path / "b"))
    assert DataManager(str(tmp_path / "b")).load("u", "h", "s") == {"k": [b"\xc3"],
                                                                    "raw": b"\xff\xfe"}


def test_global_host_is_skipped(tmp_path):
    path = str(tmp_path / "d")
    DataManager(path).store("u", None, "s", {"a": 1})
    DataManager(path).store("u", "h", "s", {"a": 1})
    report = migrate_to_sql(path, f"sqlite://{tmp_path}/p.sqlite")
    assert report.keyval_rows == 1 and report.skipped


def test_from_sql_filters(tmp_path, data):
    db = f"sqlite://{tmp_path}/p.sqlite"
    migrate_to_sql(data, db)
    back = str(tmp_path / "back")
    report = migrate_from_sql(db, back, hosts=["example.org"], stores=["roster"])
    assert report.files == 4
    assert sorted(os.listdir(back)) == ["example%2eorg"]
    assert migrate_from_sql(db, str(tmp_path / "dry"), dry_run=True).files > 10
    assert not os.path.exists(tmp_path / "dry")


# -- the command --------------------------------------------------------------------


def test_cli_to_and_from(tmp_path, data, capsys):
    db = f"sqlite://{tmp_path}/p.sqlite"
    assert cli_main(["--data-path", data, "migrate", "--to", db, "--store", "roster"]) == 0
    err = capsys.readouterr().err
    assert "wrote 8 files" in err
    assert cli_main(["--data-path", data, "migrate", "--to", db, "--dry-run",
                     "--host", "localhost"]) == 0
    out = capsys.readouterr().out
    assert "localhost\tarchive\tarchive\t4 user(s)" in out
    back = str(tmp_path / "back")
    assert cli_main(["--data-path", back, "migrate", "--from", db, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "\rmigrate [" in err and " rows/s" in err and "wrote 8 files" in err
    assert DataManager(back).load("alice", "localhost", "roster") == DataManager(data).load(
        "alice", "localhost", "roster")


def test_cli_errors(tmp_path, data, capsys):
    assert cli_main(["--data-path", data, "migrate", "--to", "mysql://x/y"]) == 1
    assert "unsupported database URL" in capsys.readouterr().err
    with open(DataManager(data).getpath("bob", "localhost", "roster"), "w") as f:
        f.write("return {")
    assert cli_main(["--data-path", data, "migrate", "--to", f"sqlite://{tmp_path}/p.sqlite"]) == 1
    assert "error: bob@localhost store roster (keyval)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--data-path", data, "migrate"])
    assert cli_main(["--data-path", str(tmp_path / "nope"), "migrate", "--to",
                     f"sqlite://{tmp_path}/p.sqlite"]) == 1


@pytest.mark.parametrize("stanza", [
    message(1, "a@x/r", "b@x", "hi & <>'\" \u00fc\U0001F600\r\n\t", 1700000000),
    {"name": "iq", "attr": {"type": "get"}},
    {"name": "m", "attr": {"xmlns": "a"}, 1: {"name": "c", "attr": {"xmlns": "a"}, 1: "x"},
     2: {"name": "d", "attr": {"xmlns": "b"}, 1: {"name": "e", "attr": {"xmlns": "a"}}}, 3: ""},
    {"name": "m", "attr": {"xml:lang": "en", "urn:x\x01y": "1", "old|z": "2"}, 1: "t"},
    {"name": "m", "attr": {"a": "\x14"}},
])
def test_fast_xml_is_to_xml(stanza):
    from prosody_store.sql import stanza_xml
    from prosody_store.stanza import split_item, to_xml
    stanza = split_item(stanza)[0]
    assert stanza_xml(stanza) == to_xml(stanza)


@pytest.mark.parametrize("stanza", [
    {"name": "m", "attr": {"a": "\x01"}},
    {"name": "m", "attr": {}, 1: 5},
    {"name": "m", "attr": {}, 1: "\x00"},
    {"name": "", "attr": {}},
])
def test_fast_xml_refuses_as_to_xml(stanza):
    from prosody_store.sql import stanza_xml
    from prosody_store.stanza import StanzaError
    with pytest.raises(StanzaError):
        stanza_xml(stanza)
