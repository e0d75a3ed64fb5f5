"""XEP-0227 export and import (prosody_store.xep0227, ``--format xep0227``).

On real files in a temp dir: the 0.12 corpus, the demo fixture, ejabberd's real
``export_piefxis`` output (fixtures/ejabberd) and data written here with our
DataManager.  Prosody itself as the reader and writer: test_xep0227_interop.py.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store import xep0227
from prosody_store.accounts import hash_password, verify_password
from prosody_store.datamanager import DataManager
from tests.tagged import canon

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "prosody-corpus" / "prosody-0.12"
DEMO = ROOT / "fixtures" / "demo"
EJABBERD = ROOT / "fixtures" / "ejabberd"

CARRIED_KEYVAL = ("accounts", "roster", "vcard", "private", "pep", "blocklist")


def cli(data: Path | None, *args: Any, check: int | None = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prosody_store"]
    if data is not None:
        cmd += ["--data-path", str(data)]
    env = dict(os.environ)
    env.pop("PROSODY_DATA_PATH", None)
    proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, cwd=ROOT,
                          env=env, timeout=120)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    if check is not None:
        assert proc.returncode == check, proc.stderr.decode()
    return proc


def extra_data(dm: DataManager) -> None:
    """What the fixtures lack: a blocklist, a SCRAM-SHA-256 account, a module's
    own store, characters an XML parser would normalize, a PEP node with a
    setting beyond Prosody's form."""
    dm.store("alice", "example.com", "blocklist", {
        False: {"created": 1700000500}, "spam@evil.example": True, "troll@evil.example": True})
    dm.store("dave", "example.com", "accounts",
             hash_password("dave's pw", iterations=4096, hash="sha256"))
    dm.store("dave", "example.com", "roster", {
        False: {"version": "v-7", "pending": {}},
        "x@example.com": {"subscription": "both", "name": "line\none\ttab\r",
                          "groups": {"": True, "g\r\n2": True}}})
    dm.store("dave", "example.com", "vcard", {
        1: {1: "carriage\r\nreturn", "name": "DESC", "attr": {}},
        2: {"name": "X-LANG", "attr": {"xml:lang": "de", "urn:x\x01attr": "v"}},
        "name": "vCard", "attr": {"xmlns": "vcard-temp"}})
    dm.store("dave", "example.com", "smacks_state", {"h": 1})
    dm.store("dave", "example.com", "pep", {"n": {"name": "n", "config": {
        "max_items": "max", "persist_items": False, "itemreply": "owner"},
        "affiliations": {"dave@example.com": "owner"}, "subscribers": {}}})
    dm.list_store("dave", "example.com", "pep_n", [
        {1: {"name": "entry", "attr": {"xmlns": "urn:x"}}, "name": "item",
         "attr": {"xmlns": "http://jabber.org/protocol/pubsub", "id": "k1"},
         "key": "k1", "when": 1700000000.25, "with": "dave@example.com/res"}])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    shutil.copytree(CORPUS, path, ignore=shutil.ignore_patterns("*.expected.json"))
    shutil.copytree(DEMO / "localhost", path / "localhost")
    extra_data(DataManager(str(path)))
    return path


def carried(dm: DataManager) -> dict[tuple[Any, ...], Any]:
    """Every (host, user, store) value XEP-0227 carries."""
    out: dict[tuple[Any, ...], Any] = {}
    for f in dm.iter_files():
        if f.user is None or f.host is None or not isinstance(f.store, str):
            continue
        if f.type == "keyval" and f.store in CARRIED_KEYVAL:
            out[f.host, f.user, f.store] = canon(dm.load(f.user, f.host, f.store))
        elif f.type == "list" and f.store in ("archive", "offline") or \
                f.type == "list" and f.store.startswith("pep_"):
            items = [unstamped(i) for i in dm.list_load(f.user, f.host, f.store) or []]
            out[f.host, f.user, f.store] = [canon(i) for i in items]
    return out


def unstamped(item: dict[Any, Any]) -> dict[Any, Any]:
    """A list item without the ``stamp`` attribute: mod_storage_internal's copy
    of ``when``, which import writes as Prosody's ``append`` does (checked in
    test_import_stamps_items_as_prosody_does), and the demo fixture lacks."""
    attrs = {k: v for k, v in item["attr"].items() if k != "stamp"}
    return {**item, "attr": attrs}


# ---------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("layout", ["per-user", "server"])
def test_export_then_import_gives_the_data_back(data: Path, tmp_path: Path, layout: str) -> None:
    dm = DataManager(str(data))
    out = tmp_path / "pie"
    if layout == "per-user":
        report, files = xep0227.export_per_user(dm, str(out))
        assert files == 7  # alice, bob, dave, jürgen (the odd name is reported), 3 demo
        assert sorted(os.listdir(out))[0] == "admin@localhost.xml"
    else:
        with open(tmp_path / "pie.xml", "wb") as f:
            report = xep0227.export_server(dm, f)
        out = tmp_path / "pie.xml"
    target = DataManager(str(tmp_path / "new"))
    result = xep0227.import_paths(target, [str(out)])
    assert not result.report
    pep = dm.load("dave", "example.com", "pep")
    del pep["n"]["config"]["itemreply"]  # reported: not in Prosody's node configuration form
    dm.store("dave", "example.com", "pep", pep)
    expected = carried(dm)
    if layout == "per-user":  # the one user whose name cannot be a file name
        expected = {k: v for k, v in expected.items() if k[1] != "user.with+odd/chars"}
    assert carried(target) == expected
    assert report.notes["dave@example.com"][-1].startswith("pep node 'n' config ['itemreply']")


def test_import_stamps_items_as_prosody_does(data: Path, tmp_path: Path) -> None:
    dm = DataManager(str(data))
    xep0227.export_per_user(dm, str(tmp_path / "out"), ["localhost"])
    target = DataManager(str(tmp_path / "new"))
    xep0227.import_paths(target, [str(tmp_path / "out")])
    items = target.list_load("alice", "localhost", "archive") or []
    assert len(items) == 4
    assert [i["attr"]["stamp"] for i in items] == [
        "2025-11-28T03:21:00Z", "2025-11-28T03:22:00Z", "2025-11-28T03:23:00Z",
        "2025-11-28T03:24:00Z"]
    assert [i["when"] for i in items] == [i["when"] for i in dm.list_load(
        "alice", "localhost", "archive") or []]


def test_what_is_not_carried_is_reported_per_user(data: Path, tmp_path: Path) -> None:
    report, _ = xep0227.export_per_user(DataManager(str(data)), str(tmp_path / "out"))
    assert report.notes["dave@example.com"] == [
        "smacks_state (keyval)",
        "pep node 'n' config ['itemreply'] (not in Prosody's node configuration form)"]
    assert report.notes["muc.example.com"] == ["persistent (keyval, host data)"]
    assert report.notes["lounge@muc.example.com"] == ["config (keyval)"]
    assert "cron (keyval)" in report.notes["_global"]
    # a user with nothing XEP-0227 carries gets no file
    assert not (tmp_path / "out" / "lounge@muc.example.com.xml").exists()


def test_values_xml_cannot_hold_are_reported(tmp_path: Path) -> None:
    dm = DataManager(str(tmp_path / "d"))
    dm.store("eve", "h.example", "accounts", {"password": "bell\x07"})
    dm.store("eve", "h.example", "roster", {"a@h.example": {"subscription": "both",
                                                            "name": b"\xff", "groups": {}}})
    dm.store("eve", "h.example", "private", {
        "q:urn:q": {"name": "q", "attr": {"xmlns": "urn:q", "p:x": "undeclared prefix"}},
        "other key": {"name": "r", "attr": {"xmlns": "urn:r"}}})
    report, files = xep0227.export_per_user(dm, str(tmp_path / "out"))
    notes = report.notes["eve@h.example"]
    assert notes == ["accounts: the password has a character XML cannot hold",
                     "roster item 'a@h.example' (name is not text (bytes))",
                     "private 'other key' (its key is not the element's name:namespace)",
                     "private 'q:urn:q' (attribute name 'p:x' is not an XML name)"]
    assert files == 1
    text = (tmp_path / "out" / "eve@h.example.xml").read_text()
    assert "password" not in text and "urn:q" not in text


def test_the_export_is_deterministic(data: Path, tmp_path: Path) -> None:
    dm = DataManager(str(data))
    texts = []
    for n in range(2):
        with open(tmp_path / f"{n}.xml", "wb") as f:
            xep0227.export_server(dm, f)
        texts.append((tmp_path / f"{n}.xml").read_bytes())
    assert texts[0] == texts[1]


def test_scram_and_characters_in_the_xml(data: Path, tmp_path: Path) -> None:
    dm = DataManager(str(data))
    xep0227.export_per_user(dm, str(tmp_path / "out"))
    text = (tmp_path / "out" / "dave@example.com.xml").read_text("utf-8")
    assert "mechanism='SCRAM-SHA-256'" in text
    assert "name='line&#10;one&#9;tab&#13;'" in text  # else a parser makes spaces of them
    assert "carriage&#13;\nreturn" in text
    root = xep0227.parse_file(str(tmp_path / "out" / "dave@example.com.xml"))
    user = next(next(root.elements("host")).elements("user"))
    scram = user.first("scram-credentials", xep0227.NS_SCRAM)
    assert scram is not None
    record = dm.load("dave", "example.com", "accounts")
    assert base64.b64decode(scram.child_text("stored-key") or "").hex() == record["stored_key"]
    assert scram.child_text("iter-count") == "4096"


def test_import_replaces_the_stores_in_the_xml_and_leaves_the_others(data: Path,
                                                                      tmp_path: Path) -> None:
    dm = DataManager(str(data))
    xep0227.export_per_user(dm, str(tmp_path / "out"), ["localhost"])
    dm.store("alice", "localhost", "roster", {False: {"pending": {}}})
    dm.store("alice", "localhost", "smacks_state", {"h": 2})
    before_vcard = dm.load("alice", "localhost", "vcard")
    dm.store("alice", "localhost", "vcard", None)
    xep0227.import_paths(dm, [str(tmp_path / "out" / "alice@localhost.xml")])
    assert dm.load("alice", "localhost", "vcard") == before_vcard
    assert "bob@localhost" in dm.load("alice", "localhost", "roster")
    assert dm.load("alice", "localhost", "smacks_state") == {"h": 2}


# ---------------------------------------------------------------------------
# Unsafe and bad input


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='u' password='&lol2;'/></host>
</server-data>"""


def test_a_doctype_is_refused_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "evil.xml"
    path.write_bytes(BILLION_LAUGHS)
    with pytest.raises(xep0227.Xep0227Error) as err:
        xep0227.parse_file(str(path))
    assert err.value.line == 2 and err.value.column >= 1
    assert "DOCTYPE" in str(err.value)


def test_cli_import_of_bad_xml_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.xml", tmp_path / "b.xml"
    good.write_text("<server-data xmlns='urn:xmpp:pie:0'><host jid='h.example'>"
                    "<user name='u' password='p'/></host></server-data>")
    bad.write_bytes(b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h.example'>\n<user></host>")
    target = tmp_path / "data"
    target.mkdir()
    for f in (bad, tmp_path / "c.xml"):
        if f.name == "c.xml":
            f.write_bytes(BILLION_LAUGHS)
        proc = cli(target, "import", "--format", "xep0227", good, f, check=1)
        lines = proc.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"prosody-store: {f}:"), lines
    assert not any(target.iterdir())  # the good file was not written either
    proc = cli(target, "import", "--format", "xep0227", good, "-v")
    assert proc.stdout == b"1 users: wrote 1 store files\n"
    assert DataManager(str(target)).load("u", "h.example", "accounts") == {"password": "p"}


@pytest.mark.parametrize("href", ["../x.xml", "/etc/passwd", "sub/x.xml", "file:x.xml", ""])
def test_xinclude_reaches_only_files_beside_the_main_file(tmp_path: Path, href: str) -> None:
    main = tmp_path / "main.xml"
    main.write_text("<server-data xmlns='urn:xmpp:pie:0' "
                    "xmlns:xi='http://www.w3.org/2001/XInclude'>"
                    f"<xi:include href='{href}'/></server-data>")
    with pytest.raises(xep0227.Xep0227Error, match="only a file name in the same directory"):
        list(xep0227.read_users([str(main)]))


def test_wrong_root_and_missing_names_are_errors(tmp_path: Path) -> None:
    cases = {
        "<stream xmlns='urn:xmpp:pie:0'/>": "expected <server-data> or <host>",
        "<server-data xmlns='urn:other'/>": "is not XEP-0227 data",
        "<server-data xmlns='urn:xmpp:pie:0'><host><user name='u'/></host></server-data>":
            "<host> without jid",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user/></host></server-data>":
            "<user> without a name",
    }
    for text, message in cases.items():
        path = tmp_path / "f.xml"
        path.write_text(text)
        with pytest.raises(xep0227.Xep0227Error, match=message):
            list(xep0227.read_users([str(path)]))


# ---------------------------------------------------------------------------
# The CLI


def test_cli_export_lists_what_is_not_carried_and_exits_0(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli(data, "export", "--format", "xep0227", "--layout", "per-user", "-o", out)
    lines = proc.stderr.decode().splitlines()
    assert "prosody-store: dave@example.com: not carried: smacks_state (keyval); pep node 'n' " \
           "config ['itemreply'] (not in Prosody's node configuration form)" in lines
    assert lines[-1].startswith("prosody-store: ") and "(listed above)" in lines[-1]
    assert (out / "alice@example.com.xml").exists()
    proc = cli(data, "export", "--format", "xep0227", "-o", tmp_path / "s.xml", "--strict",
               check=1)
    assert "--strict makes that an error" in proc.stderr.decode().splitlines()[-1]
    assert (tmp_path / "s.xml").read_bytes().startswith(b"<?xml")


def test_cli_export_to_stdout_and_default_layout(tmp_path: Path) -> None:
    dm = DataManager(str(tmp_path / "d"))
    dm.store("u", "h.example", "accounts", {"password": "pw"})
    proc = cli(tmp_path / "d", "export", "--format", "xep0227")
    assert proc.stderr == b""
    root = xep0227.parse_bytes(proc.stdout)
    assert root.name == "server-data"
    (tmp_path / "dir").mkdir()
    cli(tmp_path / "d", "export", "--format", "xep0227", "-o", tmp_path / "dir")
    assert os.listdir(tmp_path / "dir") == ["u@h.example.xml"]
    proc = cli(tmp_path / "d", "export", "--format", "xep0227", "--layout", "per-user", check=2)
    assert b"-o DIRECTORY" in proc.stderr


def test_cli_json_lines_stays_the_default(tmp_path: Path) -> None:
    dm = DataManager(str(tmp_path / "d"))
    dm.store("u", "h.example", "accounts", {"password": "pw"})
    proc = cli(tmp_path / "d", "export")
    assert proc.stdout.startswith(b"{")
    assert cli(tmp_path / "d", "export", "--layout", "server", check=2).stderr
    (tmp_path / "x.jsonl").write_bytes(proc.stdout)
    proc = cli(tmp_path / "d", "import", tmp_path / "x.jsonl", tmp_path / "x.jsonl", check=2)
    assert b"one FILE" in proc.stderr


# ---------------------------------------------------------------------------
# ejabberd


def test_ejabberd_export_is_read(tmp_path: Path) -> None:
    target = DataManager(str(tmp_path / "d"))
    main = sorted(p for p in EJABBERD.iterdir() if p.name.count("_") == 0)[0]
    result = xep0227.import_paths(target, [str(main)])
    assert result.users == 3 and not result.report
    carol = target.load("carol", "localhost", "accounts")
    assert isinstance(carol["salt"], bytes) and len(carol["salt"]) == 16
    assert verify_password(carol, "c\u00e4rol's secret")
    assert not verify_password(carol, "carol's secret")
    assert target.load("alice", "plain.localhost", "accounts") == {"password": "wonderland \u00fc"}
    roster = target.load("alice", "plain.localhost", "roster")
    assert roster[False]["pending"] == {"queen@example.org": True}
    offline = target.list_load("alice", "plain.localhost", "offline")
    assert [i["when"] for i in offline] == [1796184911.1146, 1796184911.761558]
    # ejabberd's own <delay> gave the time; Prosody's mod_offline adds one on delivery
    assert [[c["name"] for k, c in i.items() if isinstance(k, int)] for i in offline] == \
        [["body"], ["body", "subject"]]
    # the directory holds the main file and the ones it includes: each user once
    again = DataManager(str(tmp_path / "d2"))
    assert xep0227.import_paths(again, [str(EJABBERD)]).users == 3


def test_for_ejabberd_export(data: Path, tmp_path: Path) -> None:
    dm = DataManager(str(data))
    with open(tmp_path / "e.xml", "wb") as f:
        report = xep0227.export_server(dm, f, ["example.com"], target="ejabberd")
    root = xep0227.parse_file(str(tmp_path / "e.xml"))
    users = {u.attr["name"]: u for u in next(root.elements("host")).elements("user")}
    scram = users["bob"].first("scram-credentials", xep0227.NS_SCRAM)
    assert scram is not None
    twice = base64.b64decode(base64.b64decode(scram.child_text("server-key") or ""))
    assert twice.hex() == dm.load("bob", "example.com", "accounts")["server_key"]
    messages = list(users["alice"].first("offline-messages", xep0227.NS_PIE).elements())
    stamps = [m.first("delay", xep0227.NS_DELAY).attr["stamp"] for m in messages]
    assert stamps == ["2023-11-14T22:13:30Z", "2023-11-14T22:13:31.250000Z",
                      "2023-11-14T22:13:32Z"]
    privacy = users["alice"].first("query", xep0227.NS_PRIVACY)
    assert privacy is not None and users["alice"].first("blocklist", xep0227.NS_BLOCKING) is None
    assert any("blocklist fields" in n for n in report.notes["alice@example.com"])
    # and our import reads all of it back
    target = DataManager(str(tmp_path / "back"))
    xep0227.import_paths(target, [str(tmp_path / "e.xml")])
    assert target.load("bob", "example.com", "accounts") == dm.load("bob", "example.com",
                                                                    "accounts")
    blocked = target.load("alice", "example.com", "blocklist")
    assert blocked == {False: {"migrated": "privacy"}, "spam@evil.example": True,
                       "troll@evil.example": True}


def test_old_namespace_and_the_xep_examples_are_read(tmp_path: Path) -> None:
    path = tmp_path / "x.xml"
    path.write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns'>\n"
        "  <host jid='capulet.example'>\n"
        "    <user name='juliet' password='s3crEt'>\n"
        "      <!-- a comment is skipped -->\n"
        "      <query xmlns='jabber:iq:roster'>\n"
        "        <item jid='romeo@montague.example' name='Romeo' subscription='both'>"
        "<group>Friends</group></item>\n"
        "      </query>\n"
        "      <offline-messages><message xmlns='jabber:client' from='romeo@montague.example'"
        " to='juliet@capulet.example'><delay xmlns='urn:xmpp:delay' "
        "stamp='2006-08-01T12:00:00+02:00'/><body>hi</body></message></offline-messages>\n"
        "      <unknown xmlns='urn:example'/>\n"
        "    </user>\n  </host>\n</server-data>\n")
    target = DataManager(str(tmp_path / "d"))
    result = xep0227.import_paths(target, [str(path)])
    assert result.report.notes == {"juliet@capulet.example": ["<unknown xmlns='urn:example'>"]}
    roster = target.load("juliet", "capulet.example", "roster")
    assert roster["romeo@montague.example"] == {"subscription": "both", "name": "Romeo",
                                                "groups": {"Friends": True}}
    offline = target.list_load("juliet", "capulet.example", "offline")
    assert offline[0]["when"] == 1154426400  # 10:00 UTC
    assert offline[0][1] == {1: "hi", "name": "body", "attr": {}}
    assert 2 not in offline[0]


def test_stamps() -> None:
    assert xep0227.format_stamp(1700000002.123456) == "2023-11-14T22:13:22.123456Z"
    assert xep0227.parse_stamp("2023-11-14T22:13:22.123456Z") == 1700000002.123456
    assert xep0227.parse_stamp("2023-11-14T22:13:22.000Z") == 1700000002
    assert xep0227.parse_stamp("2023-11-14T23:13:22+01:00") == 1700000002
    assert xep0227.parse_stamp("yesterday") is None


# Any text XML can hold, with the characters a parser would otherwise change.
_xml_text = st.text(alphabet=st.one_of(
    st.sampled_from("\r\n\t <>&'\"]]>"),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff",
                  min_codepoint=0x20)), min_size=1, max_size=20)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_xml_text, name=_xml_text,
       when=st.one_of(st.floats(min_value=-1e9, max_value=4e9),
                      st.sampled_from([5e-324, 1e-05, -4.5, 1700000002.123456])))
def test_any_text_and_time_come_back(tmp_path_factory: pytest.TempPathFactory, body: str,
                                     name: str, when: float) -> None:
    root = tmp_path_factory.mktemp("prop")
    dm = DataManager(str(root / "d"))
    dm.store("u", "h.example", "roster", {False: {"version": 1, "pending": {}},
                                          "c@h.example": {"subscription": "both", "name": name,
                                                          "groups": {name: True}}})
    item = {1: {1: body, "name": "body", "attr": {}}, "name": "message",
            "attr": {"xmlns": "jabber:client", "to": "u@h.example", "from": "c@h.example/r",
                     "stamp": xep0227.prosody_stamp(when)},
            "key": "k", "when": when, "with": "c@h.example"}
    dm.list_store("u", "h.example", "archive", [item])
    with open(root / "x.xml", "wb") as f:
        assert not xep0227.export_server(dm, f)
    target = DataManager(str(root / "t"))
    xep0227.import_paths(target, [str(root / "x.xml")])
    assert target.load("u", "h.example", "roster") == dm.load("u", "h.example", "roster")
    assert target.list_load("u", "h.example", "archive") == [item]


def test_cli_damaged_file_stops_the_export_without_output(tmp_path: Path) -> None:
    dm = DataManager(str(tmp_path / "d"))
    dm.store("u", "h.example", "accounts", {"password": "pw"})
    dm.store("u", "h.example", "roster", {False: {"pending": {}}})
    path = dm.getpath("u", "h.example", "roster")
    Path(path).write_bytes(b"return { [\"x\"] = ")
    proc = cli(tmp_path / "d", "export", "--format", "xep0227", "-o", tmp_path / "s.xml",
               check=1)
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "roster" in lines[0], lines
    assert not (tmp_path / "s.xml").exists()


def test_cli_import_dry_run_and_json(tmp_path: Path) -> None:
    src = tmp_path / "x.xml"
    src.write_text("<server-data xmlns='urn:xmpp:pie:0'><host jid='h.example'>"
                   "<user name='u' password='p'><vCard xmlns='vcard-temp'><FN>U</FN></vCard>"
                   "<foo xmlns='urn:foo'/></user></host></server-data>")
    target = tmp_path / "d"
    target.mkdir()
    proc = cli(target, "import", "--format", "xep0227", "--dry-run", "--json", src)
    assert proc.stdout == b'{"users":1,"written":2,"not_carried":1,"dry_run":true}\n'
    assert proc.stderr.decode().splitlines()[0] == \
        "prosody-store: u@h.example: not carried: <foo xmlns='urn:foo'>"
    assert not any(target.iterdir())
    cli(target, "import", "--format", "xep0227", "--host", "other.example", src)
    assert not any(target.iterdir())
    cli(target, "import", "--format", "xep0227", "--host", "h.example", src)
    assert DataManager(str(target)).load("u", "h.example", "vcard") == {
        1: {1: "U", "name": "FN", "attr": {}}, "name": "vCard", "attr": {"xmlns": "vcard-temp"}}


@pytest.mark.parametrize("version", ["prosody-0.9", "prosody-0.10", "prosody-0.11",
                                     "prosody-0.12", "prosody-13.0"])
def test_every_corpus_version_comes_back(tmp_path: Path, version: str) -> None:
    shutil.copytree(CORPUS.parent / version, tmp_path / "data",
                    ignore=shutil.ignore_patterns("*.expected.json"))
    dm = DataManager(str(tmp_path / "data"))
    with open(tmp_path / "x.xml", "wb") as f:
        report = xep0227.export_server(dm, f)
    target = DataManager(str(tmp_path / "t"))
    assert not xep0227.import_paths(target, [str(tmp_path / "x.xml")]).report
    expected = carried(dm)
    assert len(expected) == 13
    assert carried(target) == expected
    assert report.notes["muc.example.com"] == ["persistent (keyval, host data)"]
