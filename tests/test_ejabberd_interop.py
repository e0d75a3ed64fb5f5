"""XEP-0227 (PIEFXIS) both ways between real ejabberd 23.01 and real Prosody.

One ejabberd node (Debian's ejabberd, tests/ejabberd.py) runs for the whole
module in a temporary directory; host ``localhost`` keeps SCRAM-SHA-1 keys,
``plain.localhost`` plaintext passwords.

* ejabberd -> Prosody: the node is filled with ``ejabberdctl`` (accounts,
  rosters with groups and a pending subscription, vCards, offline messages,
  bookmarks), ``ejabberdctl export_piefxis`` writes its files,
  ``prosody-store import --format xep0227`` reads them into an empty directory,
  and real Prosody (its ``util.datamanager`` and auth modules under lua5.4,
  tests/oracle.py) finds the same data there and accepts the passwords.
* Prosody -> ejabberd: ``prosody-store export --format xep0227`` of a Prosody
  directory (fixtures/demo, written by real prosodyctl, plus plaintext accounts,
  offline messages and a second host) goes into ``ejabberdctl import_piefxis``;
  every user then logs in (``check_password``) and ``get_roster``,
  ``get_vcard``, ``private_get``, ``get_offline_count`` and a new export show
  the source data.
* ejabberd's own behaviour the converter relies on (its export layout, its
  twice-base64-encoded SCRAM values) and the sample in fixtures/ejabberd/.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from prosody_store.datamanager import DataManager
from prosody_store.stanza import from_xml, to_xml
from tests import ejabberd as ej
from tests.conftest import skip_or_fail
from tests.ejabberd import (DEMO_USERS, PLAIN_HOST, SCRAM_HOST, DemoUser,
                            OfflineMessage, RosterItem)
from tests.live_server import DEMO_PASSWORDS

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
FIXTURE = ROOT / "fixtures" / "ejabberd"
PIE = "urn:xmpp:pie:0"
XI = "http://www.w3.org/2001/XInclude"
CLIENT = "jabber:client"

# One file with every host inline, written the way ejabberd reads it (SCRAM values
# base64-encoded twice, a <delay> with Prosody's time in each offline message).
EXPORT_FOR_EJABBERD = ["--format", "xep0227", "--layout", "server", "--for", "ejabberd"]


# -- running things -------------------------------------------------------------


def prosody_store(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``prosody-store --data-path DATA ARGS``; fails the test on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "prosody_store", "--data-path", str(data),
                           *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def node() -> Iterator[ej.Ejabberd]:
    reason = ej.missing()
    if reason:
        skip_or_fail(reason)
    with ej.Ejabberd() as running:
        yield running


@pytest.fixture(scope="module")
def ejabberd_export(node: ej.Ejabberd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``export_piefxis`` of the node holding DEMO_USERS."""
    ej.wipe(node)
    ej.populate(node, DEMO_USERS)
    return ej.export(node, tmp_path_factory.mktemp("ejabberd") / "export")


@pytest.fixture
def empty_node(node: ej.Ejabberd) -> ej.Ejabberd:
    """The node, with no accounts."""
    ej.wipe(node)
    return node


# -- reading ejabberd's export ------------------------------------------------------


def read_export(main: Path) -> dict[tuple[str, str], ET.Element]:
    """The ``<user>`` elements of an export_piefxis file set, by (user, host)."""
    root = ET.parse(main).getroot()
    hosts = list(root.iter(f"{{{PIE}}}host"))
    for include in root.iter(f"{{{XI}}}include"):
        hosts.append(ET.parse(main.parent / include.attrib["href"]).getroot())
    users = {}
    for host in hosts:
        assert host.tag == f"{{{PIE}}}host"
        for user in host.findall(f"{{{PIE}}}user"):
            users[(user.attrib["name"], host.attrib["jid"])] = user
    return users


def xml_roster(user: ET.Element) -> list[RosterItem]:
    items = [RosterItem(i.attrib["jid"], i.get("name", ""), i.attrib["subscription"],
                        tuple(sorted(g.text or "" for g in i.findall("{jabber:iq:roster}group"))))
             for i in user.iterfind("{jabber:iq:roster}query/{jabber:iq:roster}item")]
    return sorted(items, key=lambda i: i.jid)


def xml_pending(user: ET.Element) -> list[str]:
    return sorted(p.attrib["from"] for p in user.findall(f"{{{CLIENT}}}presence")
                  if p.get("type") == "subscribe")


def xml_vcard(user: ET.Element) -> dict[tuple[str, ...], str]:
    vcard = user.find("{vcard-temp}vCard")
    return {} if vcard is None else leaf_texts(vcard)


def leaf_texts(el: ET.Element, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """{path of child names: text} of an element's leaves; child order does not matter."""
    out: dict[tuple[str, ...], str] = {}
    for child in el:
        path = prefix + (child.tag.rpartition("}")[2],)
        if len(child):
            out.update(leaf_texts(child, path))
        else:
            out[path] = child.text or ""
    return out


def xml_offline(user: ET.Element) -> list[tuple[OfflineMessage, float]]:
    """(message, its delay stamp as a Unix time) for each offline message, in order."""
    out = []
    for msg in user.iterfind(f"{{{PIE}}}offline-messages/{{{CLIENT}}}message"):
        delay = msg.find("{urn:xmpp:delay}delay")
        assert delay is not None
        out.append((OfflineMessage(msg.get("type", "normal"), msg.attrib["from"],
                                   msg.findtext(f"{{{CLIENT}}}subject", ""),
                                   msg.findtext(f"{{{CLIENT}}}body", "")),
                    unix_time(delay.attrib["stamp"])))
    return out


def xml_blocked(user: ET.Element) -> list[str]:
    """The JIDs denied by the user's default privacy list (ejabberd's blocklist)."""
    query = user.find("{jabber:iq:privacy}query")
    if query is None:
        return []
    default = query.find("{jabber:iq:privacy}default")
    assert default is not None
    lst = query.find(f"{{jabber:iq:privacy}}list[@name='{default.attrib['name']}']")
    assert lst is not None
    assert all((i.get("type"), i.get("action")) == ("jid", "deny") for i in lst)
    return sorted(i.attrib["value"] for i in lst)


def xml_private(user: ET.Element) -> list[tuple[Any, ...]]:
    return sorted(shape(el) for el in user.iterfind("{jabber:iq:private}query/*"))


def unix_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def shape(xml: str | ET.Element) -> tuple[Any, ...]:
    """An element as (qualified name, attributes, text, children), for comparisons in
    which attribute order, quoting and namespace prefixes do not matter."""
    el = ET.fromstring(xml) if isinstance(xml, str) else xml
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(),
            tuple(shape(child) for child in el))


# -- reading what real Prosody reads ------------------------------------------------


def untag(obj: dict[str, Any]) -> Any:
    """A tagged JSON value from tests/lua/tagged.lua as a Python value."""
    (tag, v), = obj.items()
    if tag == "nil":
        return None
    if tag == "bool":
        return v
    if tag == "int":
        return int(v)
    if tag == "float":
        return float(v)
    if tag == "raw":
        raw = bytes.fromhex(v)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if tag == "table":
        return {untag(k): untag(x) for k, x in v}
    raise ValueError(tag)


def _hex(name: str) -> str:
    return name.encode("utf-8").hex()


def prosody_load(oracle: Any, path: Path, user: str, host: str, store: str) -> Any:
    """What Prosody's util.datamanager.load returns (None for no data)."""
    req = json.dumps({"path": str(path), "user": _hex(user), "host": _hex(host),
                      "store": _hex(store)})
    return untag(json.loads(oracle.call("dm_oracle.load", req)))


def prosody_list(oracle: Any, path: Path, user: str, host: str, store: str) -> list[Any]:
    """What Prosody's util.datamanager.list_load returns ([] for no list)."""
    req = json.dumps({"path": str(path), "user": _hex(user), "host": _hex(host),
                      "store": _hex(store)})
    items = json.loads(oracle.call("dm_oracle.list_load", req))
    return [] if items is None else [untag(i) for i in items]


def prosody_verdicts(oracle: Any, path: Path, user: str, host: str, password: str) -> list[bool]:
    """Whether Prosody's auth modules accept ``password`` for the account record it reads.

    Each module's own ``test_password`` (tests/lua/auth_oracle.lua):
    mod_auth_internal_hashed for a SCRAM record; for a plaintext one
    mod_auth_internal_plain and mod_auth_internal_hashed (which hashes it).
    """
    req = json.dumps({"path": str(path), "user": _hex(user), "host": _hex(host),
                      "store": _hex("accounts")})
    tagged = json.loads(oracle.call("dm_oracle.load", req))
    assert "table" in tagged, f"Prosody finds no account for {user}@{host}"
    record = {}
    for k, v in tagged["table"]:
        (vtag, value), = v.items()
        assert vtag in ("raw", "int", "bool"), (k, v)
        record[untag(k)] = {"raw": {"hex": value}, "int": {"int": value}}.get(vtag, value)
    modules = (["mod_auth_internal_hashed"] if "stored_key" in record
               else ["mod_auth_internal_plain", "mod_auth_internal_hashed"])
    verdicts = []
    for module in modules:
        answer = oracle.call("auth_oracle.test_password", json.dumps({
            "module": module, "record": record, "password": password.encode("utf-8").hex(),
            "options": {"password_hash": "SHA-1"}})).decode()
        assert answer in ("true", "false", "error"), answer
        verdicts.append(answer == "true")
    return verdicts


def roster_items(roster: dict[Any, Any] | None) -> list[RosterItem]:
    """A Prosody roster store's contacts as roster items sorted by JID."""
    return sorted((RosterItem(jid, item.get("name", ""), item["subscription"],
                              tuple(sorted(item.get("groups", {}))))
                   for jid, item in (roster or {}).items() if jid is not False),
                  key=lambda i: i.jid)


def element_children(table: dict[Any, Any]) -> list[Any]:
    return [table[i] for i in sorted(k for k in table if isinstance(k, int))]


def table_leaf_texts(table: dict[Any, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """leaf_texts() of a stanza as Prosody stores it (a table with name, attr, children)."""
    out: dict[tuple[str, ...], str] = {}
    for child in element_children(table):
        if not isinstance(child, dict):
            continue
        path = prefix + (child["name"],)
        if any(isinstance(c, dict) for c in element_children(child)):
            out.update(table_leaf_texts(child, path))
        else:
            out[path] = "".join(c for c in element_children(child) if isinstance(c, str))
    return out


def child_text(table: dict[Any, Any], name: str) -> str:
    for child in element_children(table):
        if isinstance(child, dict) and child["name"] == name:
            return "".join(c for c in element_children(child) if isinstance(c, str))
    return ""


# -- ejabberd itself ------------------------------------------------------------------


def test_node_is_private_to_this_run(node):
    """The node listens only on its loopback distribution port, uses no EPMD, and keeps
    its database and logs in its own temporary directory."""
    assert node.pid is not None
    assert ej.listening_addresses(node.pid) == [f"127.0.0.1:{node.dist_port}"]
    cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
    assert b"-start_epmd" in cmdline and cmdline[cmdline.index(b"-start_epmd") + 1] == b"false"
    assert (node.spool / "passwd.DAT").exists() and (node.logs / "ejabberd.log").exists()
    started = f"is started in the node {node.node}"
    assert started in node.log_text(started)


def test_ejabberd_exports_the_demo_data_with_twice_encoded_scram(ejabberd_export, oracle):
    """What ejabberd 23.01's export_piefxis writes, as tests/ejabberd.py and the README say.

    The SCRAM salt and keys are base64 of base64 (ejabberd keeps them base64-encoded
    and encodes them again); Prosody's util.sasl.scram derives the same keys from the
    password and the twice-decoded salt.
    """
    users = read_export(ejabberd_export)
    assert sorted(users) == sorted((u.user, u.host) for u in DEMO_USERS)
    for u in DEMO_USERS:
        el = users[(u.user, u.host)]
        scram = el.find(f"{{{PIE}#scram}}scram-credentials")
        if u.host == PLAIN_HOST:
            assert el.get("password") == u.password and scram is None
        else:
            assert "password" not in el.attrib and scram is not None
            assert scram.attrib["mechanism"] == "SCRAM-SHA-1"
            once = {f: base64.b64decode(scram.findtext(f"{{{PIE}#scram}}{f}", ""))
                    for f in ("salt", "stored-key", "server-key")}
            twice = {f: base64.b64decode(v) for f, v in once.items()}
            assert len(twice["stored-key"]) == len(twice["server-key"]) == 20
            answer = json.loads(oracle.call("auth_oracle.scram", json.dumps({
                "hash": "SHA-1", "password": u.password.encode().hex(),
                "salt": twice["salt"].hex(),
                "iteration_count": int(scram.findtext(f"{{{PIE}#scram}}iter-count", "0"))})))
            assert answer["valid"]
            assert bytes.fromhex(answer["stored_key"]) == twice["stored-key"]
            assert bytes.fromhex(answer["server_key"]) == twice["server-key"]
        assert xml_roster(el) == sorted(u.roster, key=lambda i: i.jid)
        assert xml_pending(el) == sorted(u.pending_in)
        assert xml_vcard(el) == u.vcard
        assert [m for m, _ in xml_offline(el)] == u.offline
        assert xml_private(el) == sorted(shape(x) for x in u.private)
        assert xml_blocked(el) == sorted(u.blocked)


def test_ejabberd_imports_the_fixture_sample(empty_node):
    """fixtures/ejabberd (ejabberd's own export, SCRAM values twice encoded) goes back
    into ejabberd: everyone logs in with the right password and not with a wrong one."""
    main, = (p for p in FIXTURE.iterdir() if "_" not in p.name)
    empty_node.ctl("import_piefxis", str(main))
    checks = empty_node.run_many([("check_password", u.user, u.host, password)
                                  for u in DEMO_USERS for password in (u.password, u.password + "x")])
    assert [(c.returncode, c.stdout.strip()) for c in checks] == [
        (0, ""), (1, "Error: false")] * len(DEMO_USERS)


# -- ejabberd -> Prosody ----------------------------------------------------------------


def test_ejabberd_export_imported_by_us_reads_the_same_in_prosody(ejabberd_export, oracle,
                                                                  tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    prosody_store(data, "import", "--format", "xep0227", ejabberd_export)
    stamps = {key: [when for _, when in xml_offline(el)]
              for key, el in read_export(ejabberd_export).items()}
    for u in DEMO_USERS:
        assert all(prosody_verdicts(oracle, data, u.user, u.host, u.password)), u.jid
        assert not any(prosody_verdicts(oracle, data, u.user, u.host, u.password + "x")), u.jid

        roster = prosody_load(oracle, data, u.user, u.host, "roster")
        assert roster_items(roster) == sorted(u.roster, key=lambda i: i.jid), u.jid
        assert sorted(roster.get(False, {}).get("pending", {})) == sorted(u.pending_in), u.jid

        vcard = prosody_load(oracle, data, u.user, u.host, "vcard")
        if u.vcard:
            assert vcard["name"] == "vCard" and vcard["attr"]["xmlns"] == "vcard-temp"
            assert table_leaf_texts(vcard) == u.vcard, u.jid
        else:
            assert vcard is None

        offline = prosody_list(oracle, data, u.user, u.host, "offline")
        got = [OfflineMessage(item["attr"].get("type", "normal"), item["attr"]["from"],
                              child_text(item, "subject"), child_text(item, "body"))
               for item in offline]
        assert got == u.offline, u.jid
        for item, stamp in zip(offline, stamps[(u.user, u.host)]):
            assert item["name"] == "message" and item["attr"]["to"] == u.jid
            assert abs(item["when"] - stamp) < 1e-3, (item["when"], stamp)

        private = prosody_load(oracle, data, u.user, u.host, "private") or {}
        assert sorted(shape(to_xml(v)) for v in private.values()) == sorted(
            shape(x) for x in u.private), u.jid
        for key, value in private.items():
            assert key == f"{value['name']}:{value['attr']['xmlns']}"

        blocklist = prosody_load(oracle, data, u.user, u.host, "blocklist") or {}
        assert sorted(k for k in blocklist if k is not False) == sorted(u.blocked), u.jid
        assert all(blocklist[k] is True for k in u.blocked)


# -- Prosody -> ejabberd ------------------------------------------------------------------


PLAIN_USERS = [
    DemoUser("dora", SCRAM_HOST, "plain on a SCRAM host \u00fc"),
    DemoUser("erin", PLAIN_HOST, "erin's p\u00e4ssword",
             roster=[RosterItem("frank@plain.localhost", "Frank", "both", ("Family", "Work")),
                     RosterItem("alice@localhost", "", "to")],
             pending_in=["mallory@example.org"],
             vcard={("FN",): "Erin \u00c9", ("NICKNAME",): "erin"},
             offline=[OfflineMessage("chat", "frank@plain.localhost/desk", "", "Lunch? \U0001F96A"),
                      OfflineMessage("normal", "news@example.org", "News", "Read all about it")]),
    DemoUser("frank", PLAIN_HOST, "frank"),
]
BOB_OFFLINE = [OfflineMessage("chat", "alice@localhost/laptop", "", "Bob, are you there?")]
OFFLINE_BASE = 1764300000.5
BLOCKED = "spam@example.org"


def offline_item(to: str, msg: OfflineMessage, when: float) -> dict[Any, Any]:
    """An offline message as Prosody's mod_offline stores it (archive item)."""
    xml = f"<message xmlns='jabber:client' from='{msg.sender}' to='{to}' id='o{int(when)}'"
    if msg.type != "normal":
        xml += f" type='{msg.type}'"
    xml += ">"
    if msg.subject:
        xml += f"<subject>{msg.subject}</subject>"
    xml += f"<body>{msg.body}</body></message>"
    item = from_xml(xml)
    item.update({"key": f"o{int(when)}", "when": when, "with": ""})
    return item


def prosody_source(tmp_path: Path) -> Path:
    """fixtures/demo (SCRAM accounts by prosodyctl) plus plaintext accounts and offline messages."""
    data = tmp_path / "source"
    shutil.copytree(DEMO, data)
    dm = DataManager(data, durable=False)
    for u in PLAIN_USERS:
        dm.store(u.user, u.host, "accounts", {"password": u.password})
        if u.roster or u.pending_in:
            roster: dict[Any, Any] = {False: {"version": 3, "pending": {j: True for j in u.pending_in}}}
            for r in u.roster:
                roster[r.jid] = {"subscription": r.subscription, "groups": {g: True for g in r.groups}}
                if r.name:
                    roster[r.jid]["name"] = r.name
            dm.store(u.user, u.host, "roster", roster)
        if u.vcard:
            vcard = "".join(f"<{p[0]}>{v}</{p[0]}>" for p, v in u.vcard.items())
            dm.store(u.user, u.host, "vcard", from_xml(f"<vCard xmlns='vcard-temp'>{vcard}</vCard>"))
        for i, msg in enumerate(u.offline):
            dm.list_append(u.user, u.host, "offline", offline_item(u.jid, msg, OFFLINE_BASE + 60 * i))
    dm.store("erin", PLAIN_HOST, "blocklist", {BLOCKED: True})
    for i, msg in enumerate(BOB_OFFLINE):
        dm.list_append("bob", SCRAM_HOST, "offline", offline_item("bob@localhost", msg, OFFLINE_BASE + i))
    return data


def test_our_export_imported_by_ejabberd(empty_node, tmp_path):
    source = prosody_source(tmp_path)
    dump = tmp_path / "prosody.xml"
    prosody_store(source, "export", *EXPORT_FOR_EJABBERD, "-o", dump)
    empty_node.ctl("import_piefxis", str(dump))

    dm = DataManager(source)
    passwords = {(u, SCRAM_HOST): p for u, p in DEMO_PASSWORDS.items()}
    passwords.update({(u.user, u.host): u.password for u in PLAIN_USERS})
    accounts = list(passwords)
    vcard_fields = [(user, host, path[0], text) for user, host in accounts
                    for path, text in table_leaf_texts(dm.load(user, host, "vcard") or {}).items()
                    if len(path) == 1]
    results = iter(empty_node.run_many(
        [("registered_users", host) for host in (SCRAM_HOST, PLAIN_HOST)]
        + [("check_password", u, h, given) for (u, h), pw in passwords.items()
           for given in (pw, pw + "x")]
        + [("get_roster", u, h) for u, h in accounts]
        + [("get_vcard", u, h, name) for u, h, name, _ in vcard_fields]
        + [("get_offline_count", u, h) for u, h in accounts]
        + [("private_get", "alice", SCRAM_HOST, "storage", "storage:bookmarks")]))

    for host in (SCRAM_HOST, PLAIN_HOST):
        assert sorted(next(results).stdout.split()) == sorted(u for u, h in accounts if h == host)
    for account in accounts:
        right, wrong = next(results), next(results)
        assert (right.returncode, wrong.returncode) == (0, 1), (account, right.stdout, wrong.stdout)
        assert wrong.stdout.strip() == "Error: false", wrong.stdout  # refused, not crashed
    for user, host in accounts:
        assert ej.parse_roster(next(results).stdout) == roster_items(dm.load(user, host, "roster"))
    assert vcard_fields, "the source has vCards"
    for user, host, name, text in vcard_fields:
        assert next(results).stdout.rstrip("\n") == text, (user, host, name)
    for user, host in accounts:
        offline = dm.list_load(user, host, "offline") or []
        assert int(next(results).stdout) == len(offline), (user, host)
    bookmarks = dm.load("alice", SCRAM_HOST, "private")["storage:storage:bookmarks"]
    assert [shape(c) for c in ET.fromstring(next(results).stdout)] == [shape(to_xml(bookmarks))]

    # ejabberd's own export shows the offline messages with Prosody's times and
    # the pending subscription.
    users = read_export(ej.export(empty_node, tmp_path / "again"))
    for user, host in accounts:
        offline = dm.list_load(user, host, "offline") or []
        got = xml_offline(users[(user, host)])
        assert [(m.sender, m.body) for m, _ in got] == [
            (i["attr"]["from"], child_text(i, "body")) for i in offline], (user, host)
        for (_, stamp), item in zip(got, offline):
            assert abs(stamp - item["when"]) < 1e-3
        pending = (dm.load(user, host, "roster") or {}).get(False, {}).get("pending", {})
        assert xml_pending(users[(user, host)]) == sorted(pending), (user, host)
    assert sum(len(dm.list_load(u, h, "offline") or []) for u, h in accounts) == 3
    # erin's blocklist became ejabberd's (mod_blocking's) default privacy list.
    assert xml_blocked(users[("erin", PLAIN_HOST)]) == [BLOCKED]
