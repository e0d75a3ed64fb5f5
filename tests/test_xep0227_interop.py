"""XEP-0227 against real Prosody 0.12.3: ``prosody-migrator`` with ``mod_storage_xep0227``.

Four ways, on a copy of the 0.12 corpus and the demo fixture:

(a) Prosody's export (internal -> xep0227) and ours of the same directory are
    the same XML, user by user, once parsed and normalized (see :func:`canon`).
(b) Our export read back by Prosody (xep0227 -> internal) gives the original
    data, up to what Prosody 0.12's reader is known to change (see
    :func:`as_prosody_reads`), read both by our DataManager and by Prosody's own
    ``util.datamanager`` (tests/oracle.py).
(c) Prosody's export imported by us gives the original data, up to what
    Prosody's writer leaves out (see :func:`as_prosody_writes`), read both by
    our DataManager and by Prosody's ``util.datamanager``.

Prosody reads only the per-user layout (its reader takes the first user of
the first host of a file); the server layout and our own round trips are in
tests/test_xep0227.py.

How prosody-migrator is run: it reads no Prosody configuration file, and
``mod_storage_xep0227`` reads and writes ``<data_path>/<user>@<host>.xml``
(``prosody.paths.data``, not the ``path`` of the store in the migrator
configuration).  :func:`run_migrator` therefore sets Prosody's global
``data_path`` option (and ``run_as_root``, so that it does not switch to the
prosody user) through ``core.configmanager`` before the migrator script runs;
everything else is the unmodified ``/usr/bin/prosody-migrator``.

Two facts about Prosody 0.12.3 shape the data given to it:

* its ``util.datetime.datetime`` calls ``os.date`` with the time, which under
  Lua 5.4 fails for a fractional time ("number has no integer
  representation"): it cannot export the corpus' archives (their times have
  fractions), so the directory given to it has whole-second archive times;
* the corpus' account ``user.with+odd/chars`` cannot be a per-user file name
  (``/``), and Prosody turns the roster contact of that name into
  ``user.with+odd``: both are left out of the directory given to Prosody and
  checked on their own (test_odd_user_*).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from prosody_store import xep0227
from prosody_store.datamanager import DataManager
from prosody_store.paths import name_bytes
from prosody_store.serialization import dumps as lua
from tests.conftest import skip_or_fail
from tests.oracle import lua_env
from tests.tagged import canon as canon_data, canon_tagged

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "prosody-corpus" / "prosody-0.12"
DEMO = ROOT / "fixtures" / "demo"
MIGRATOR = shutil.which("prosody-migrator")
LUA = shutil.which("lua5.4")
PROSODY_LIB = "/usr/lib/prosody"

# The stores Prosody 0.12's mod_storage_xep0227 carries, as the migrator names them.
PROSODY_STORES = ["accounts", "roster", "vcard", "private", "pep-pubsub", "archive-archive"]
ODD_USER = "user.with+odd/chars"

_PRELUDE = (
    f'package.path = "{PROSODY_LIB}/?.lua;" .. package.path; '
    f'package.cpath = "{PROSODY_LIB}/?.so;" .. package.cpath; '
    'local cm = require "core.configmanager"; '
    'cm.set("*", "data_path", os.getenv("PROSODY_STORE_XEP0227_DIR")); '
    'cm.set("*", "run_as_root", true)'
)


@pytest.fixture(scope="module")
def migrator() -> str:
    if MIGRATOR is None or LUA is None:
        skip_or_fail("prosody-migrator or lua5.4 not found (apt-get install prosody lua5.4)")
    if not os.path.exists(os.path.join(PROSODY_LIB, "modules", "mod_storage_xep0227.lua")):
        skip_or_fail("Prosody's mod_storage_xep0227 is not installed")
    return str(MIGRATOR)


def run_migrator(work: Path, xep_dir: Path, internal_dir: Path, direction: str,
                 hosts: dict[str, list[str]]) -> str:
    """Run prosody-migrator between a data directory (type internal) and a
    directory of per-user XEP-0227 files; returns its log."""
    host_list = "; ".join(f"[{lua(h)}] = {{ {', '.join(lua(s) for s in stores)} }}"
                          for h, stores in hosts.items())
    internal = f'type = "internal"; path = {lua(str(internal_dir))};'
    pie = 'type = "xep0227";'
    source, dest = (internal, pie) if direction == "export" else (pie, internal)
    cfg = work / f"migrator-{direction}.cfg.lua"
    cfg.write_text(f"input {{ {source} hosts = {{ {host_list} }}; }}\n"
                   f"output {{ {dest} }}\n")
    env = lua_env()
    env["PROSODY_STORE_XEP0227_DIR"] = str(xep_dir)
    # --keep-going on import: the migrator first asks for each store's host
    # data (user nil), which mod_storage_xep0227 looks up as <host>.xml; for
    # an archive a missing file is an error ("no 227 user element found"),
    # the only one allowed below.
    keep_going = ["--keep-going"] if direction == "import" else []
    proc = subprocess.run([str(LUA), "-e", _PRELUDE, str(MIGRATOR), *keep_going,
                           f"--config={cfg}", "input", "output"], capture_output=True,
                          text=True, cwd=str(work), env=env, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Done!" in log, log
    errors = [line for line in log.splitlines() if "\terror\t" in line.replace(" ", "\t")]
    unexpected = [line for line in errors if not _known_import_error(line, xep_dir)]
    assert not unexpected, log
    return log


def _known_import_error(line: str, xep_dir: Path) -> bool:
    """The archive errors of Prosody 0.12's reader that --keep-going passes:
    the host's own archive (no <host>.xml), and that of a user whose file has
    no <archive> (its ``find`` returns nothing, which the migrator asserts on)."""
    if line.endswith("Error migrating data for host: /usr/bin/prosody-migrator:182: "
                     "no 227 user element found"):
        return True
    for f in xep_dir.iterdir():
        user = f.name.split("@", 1)[0]
        if line.endswith(f"Error migrating data for user {_lua_quoted(user)}: (nil)"):
            return b"urn:xmpp:pie:0#mam" not in f.read_bytes()
    return False


def _lua_quoted(text: str) -> str:
    """``%q`` as Lua writes it, for the names used here (non-ASCII as decimal escapes)."""
    return '"' + "".join(chr(b) if b < 128 else "\\%d" % b for b in text.encode()) + '"'


# ---------------------------------------------------------------------------
# Test data


def _copy_data(dest: Path) -> Path:
    """The corpus and the demo fixture in one data directory, as Prosody 0.12 can
    export it (see the module docs)."""
    shutil.copytree(CORPUS, dest, ignore=shutil.ignore_patterns("*.expected.json"))
    shutil.copytree(DEMO / "localhost", dest / "localhost")
    dm = DataManager(str(dest))
    for user, host in dm_users(dm, "archive", "list"):
        items = dm.list_load(user, host, "archive") or []
        for item in items:
            item["when"] = int(item["when"])
        dm.list_store(user, host, "archive", items)
    dm.store(ODD_USER, "example.com", "accounts", None)
    roster = dm.load("alice", "example.com", "roster")
    del roster[f"{ODD_USER}@example.com"]
    dm.store("alice", "example.com", "roster", roster)
    return dest


def dm_users(dm: DataManager, store: str, typ: str) -> list[tuple[str, str]]:
    return [(f.user, f.host) for f in dm.iter_files(stores=[store])
            if f.user is not None and f.type == typ and isinstance(f.host, str)]


def _hosts() -> dict[str, list[str]]:
    """Each host with users, and the stores to migrate."""
    return {h: PROSODY_STORES for h in ("example.com", "xn--mnchen-3ya.example", "localhost")}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, migrator: str) -> dict[str, Any]:
    """The data, Prosody's export of it, ours, and each read back by Prosody."""
    root = tmp_path_factory.mktemp("xep0227")
    data = _copy_data(root / "data")
    dm = DataManager(str(data))
    hosts = _hosts()
    theirs = root / "prosody-export"
    theirs.mkdir()
    run_migrator(root, theirs, data, "export", hosts)
    ours = root / "our-export"
    report, _files = xep0227.export_per_user(dm, str(ours))
    back = root / "prosody-import"
    run_migrator(root, ours, back, "import", hosts)
    return {"root": root, "data": data, "dm": dm, "theirs": theirs, "ours": ours,
            "report": report, "back": back, "hosts": hosts}


# ---------------------------------------------------------------------------
# (a) The same XML as Prosody's


# Elements whose children are a set (Prosody writes them in ``pairs`` order).
_UNORDERED = {
    ("user", xep0227.NS_PIE), ("query", xep0227.NS_ROSTER), ("item", xep0227.NS_ROSTER),
    ("query", xep0227.NS_PRIVATE), ("pubsub", xep0227.NS_PUBSUB_OWNER),
    ("affiliations", xep0227.NS_PUBSUB_OWNER), ("subscriptions", xep0227.NS_PUBSUB_OWNER),
    ("pubsub", xep0227.NS_PUBSUB),
}
# What our export writes beyond Prosody 0.12 (see prosody_store/xep0227.py):
# stores it does not carry, and its extension attributes where it writes none.
_OUR_EXTRA_ELEMENTS = {("offline-messages", xep0227.NS_PIE), ("blocklist", xep0227.NS_BLOCKING)}
_EXT = xep0227.NS_EXTENDED + "\x01"


def canon(node: xep0227.Node, ours: bool, parent: str | None = None) -> tuple[Any, ...]:
    """A parsed element in a form where Prosody's and our output compare equal.

    Always: attributes unordered (a dict), namespace prefixes gone (the parser
    gives each name with its namespace), children of the elements in
    ``_UNORDERED`` sorted.  No whitespace is dropped: neither side writes any
    between elements.  For Prosody's side: a pending subscription
    ``<presence>``, which Prosody 0.12 writes without ``xmlns`` (so in the
    XEP-0227 namespace, where its own reader does not look for it), is taken as
    ``jabber:client``.  For ours: ``<offline-messages>`` and ``<blocklist>``
    (stores Prosody 0.12 does not carry) are left out, and so are attributes
    in Prosody's extension namespace below ``<user>`` (the times, publishers
    and settings Prosody 0.12 loses) and the ``subscription='subscribed'``
    written beside Prosody's ``subscribed='subscribed'``.
    """
    ns = node.ns
    if not ours and node.name == "presence" and ns == xep0227.NS_PIE:
        ns = xep0227.NS_CLIENT
    attrs = dict(node.attr)
    if ours and node.name != "user":
        attrs = {k: v for k, v in attrs.items() if not k.startswith(_EXT)}
    if ours and node.name == "subscription" and ns == xep0227.NS_PUBSUB_OWNER:
        attrs.pop("subscription", None)
    children = []
    for child in node.children:
        if isinstance(child, str):
            children.append(child)
        elif not (ours and (child.name, child.ns) in _OUR_EXTRA_ELEMENTS):
            children.append(canon(child, ours, node.name))
    if (node.name, ns) in _UNORDERED:
        children.sort(key=repr)
    return (ns, node.name, tuple(sorted(attrs.items())), tuple(children))


def test_a_same_xml_as_prosody(world: dict[str, Any]) -> None:
    theirs, ours = Path(world["theirs"]), Path(world["ours"])
    names = sorted(os.listdir(theirs))
    assert names == sorted(os.listdir(ours))
    assert len(names) == 6
    for name in names:
        a = canon(xep0227.parse_file(str(theirs / name)), ours=False)
        b = canon(xep0227.parse_file(str(ours / name)), ours=True)
        assert a == b, name


# ---------------------------------------------------------------------------
# (b) Our export read back by Prosody


def all_xmlns(t: Any, parent_ns: str | None = None) -> Any:
    """A stanza table as Prosody's ``util.xml`` parses it: every element with
    its namespace as ``xmlns`` (stored stanzas have it only where it changes)."""
    if not isinstance(t, dict):
        return t
    ns = t["attr"].get("xmlns", parent_ns)
    out = {k: all_xmlns(v, ns) for k, v in t.items() if k != "attr"}
    out["attr"] = dict(t["attr"])
    if ns is not None:
        out["attr"]["xmlns"] = ns
    return out


def _stanza_part(item: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v for k, v in item.items() if k not in ("key", "when", "with")}


def as_prosody_reads(store: str, value: Any, user_jid: str) -> Any:
    """The original value as Prosody 0.12's mod_storage_xep0227 reads it back
    from our export: what its reader drops, adds or retypes, store by store."""
    if store == "accounts":
        scram = ("iteration_count", "server_key", "stored_key", "salt")
        if all(k in value for k in scram):  # SCRAM wins; password and the rest go
            return {k: value[k] for k in scram}
        if "password" in value:  # the password alone
            return {"password": value["password"]}
        return {k: str(v) for k, v in value.items()}  # extended attributes, as text
    if store == "roster":
        out: dict[Any, Any] = {}
        for jid, item in value.items():
            if jid is False:
                meta = {"pending": dict(item.get("pending") or {})}
                if item.get("version") is not None:
                    meta["version"] = str(item["version"])  # an attribute: text
                out[False] = meta
            else:
                out[jid] = {**item, "jid": jid, "groups": dict(item.get("groups") or {})}
        return out
    if store in ("vcard",):
        return all_xmlns(value)
    if store == "private":
        return {k: all_xmlns(v) for k, v in value.items()}
    if store == "pep":
        out = {}
        for name, node in value.items():
            config = {k: v for k, v in node.get("config", {}).items()
                      if k in xep0227.NODE_CONFIG_KEYS}
            for key, _var, _type, default in xep0227.NODE_CONFIG_FIELDS:
                if default is not None:
                    config.setdefault(key, default)  # the form's defaults, written out
            out[name] = {"name": name, "config": config,
                         "affiliations": dict(node.get("affiliations") or {}),
                         "subscribers": dict(node.get("subscribers") or {})}
        return out
    if store.startswith("pep_"):  # item times and publishers are lost
        return [{**all_xmlns(_stanza_part(i)), "key": i["key"], "when": 0, "with": user_jid,
                 "attr": {**all_xmlns(_stanza_part(i))["attr"],
                          "stamp": "1970-01-01T00:00:00Z"}} for i in value]
    if store == "archive":  # with: the other party's bare JID
        out_items = []
        for i in value:
            stanza = all_xmlns(_stanza_part(i))
            attrs = stanza["attr"]
            to, frm = xep0227.bare_jid(attrs.get("to")), xep0227.bare_jid(attrs.get("from"))
            # mod_storage_internal's append stamps the stanza with the time
            stanza["attr"]["stamp"] = xep0227.prosody_stamp(i["when"])
            out_items.append({**stanza, "key": i["key"], "when": i["when"],
                              "with": frm if to == user_jid else to})
        return out_items
    raise AssertionError(store)


PROSODY_KEYVAL = ["accounts", "roster", "vcard", "private", "pep"]


def _store_values(dm: DataManager, host: str) -> dict[tuple[str, str], Any]:
    """Every (user, store) of a host that Prosody 0.12's XEP-0227 carries."""
    out: dict[tuple[str, str], Any] = {}
    for f in dm.iter_files([host]):
        if f.user is None or not isinstance(f.store, str):
            continue
        if f.type == "keyval" and f.store in PROSODY_KEYVAL:
            out[f.user, f.store] = dm.load(f.user, host, f.store)
        elif f.type == "list" and (f.store == "archive" or f.store.startswith("pep_")):
            out[f.user, f.store] = dm.list_load(f.user, host, f.store)
    return out


def test_b_prosody_reads_our_export(world: dict[str, Any]) -> None:
    original, back = world["dm"], DataManager(str(world["back"]))
    compared = 0
    for host in world["hosts"]:
        before = _store_values(original, host)
        after = _store_values(back, host)
        assert sorted(after) == sorted(before), host
        for (user, store), value in before.items():
            expected = as_prosody_reads(store, value, f"{user}@{host}")
            assert canon_value(after[user, store]) == canon_value(expected), (user, host, store)
            compared += 1
    assert compared >= 15  # every store above, on every host, was there to compare


def _req(path: Path, user: str, host: str, store: str) -> str:
    return json.dumps({"path": str(path), "user": name_bytes(user).hex(),
                       "host": name_bytes(host).hex(), "store": name_bytes(store).hex()})


def test_b_prosody_datamanager_reads_the_same(world: dict[str, Any], oracle: Any) -> None:
    """What Prosody's migrator wrote from our export, read by Prosody's own
    util.datamanager, is the expected data too (not only as our reader sees it)."""
    original = world["dm"]
    for host in world["hosts"]:
        for (user, store), value in _store_values(original, host).items():
            expected = as_prosody_reads(store, value, f"{user}@{host}")
            req = _req(world["back"], user, host, store)
            if isinstance(expected, list):
                items = json.loads(oracle.call("dm_oracle.list_load", req))
                assert [canon_tagged(i) for i in items] == [canon_data(i) for i in expected], \
                    (user, host, store)
            else:
                got = json.loads(oracle.call("dm_oracle.load", req))
                assert canon_tagged(got) == canon_data(expected), (user, host, store)


# ---------------------------------------------------------------------------
# (c) Prosody's export imported by us


def as_prosody_writes(store: str, value: Any, user_jid: str) -> Any:
    """The original value as our import reads it from Prosody 0.12's export:
    only what Prosody's writer leaves out differs (ours keeps it in extension
    attributes, which Prosody does not write)."""
    if store == "pep":
        return as_prosody_reads("pep", value, user_jid)  # config defaults written out
    if store.startswith("pep_"):  # no item times or publishers
        return [{**i, "when": 0, "with": user_jid,
                 "attr": {**i["attr"], "stamp": "1970-01-01T00:00:00Z"}} for i in value]
    if store == "archive":  # with: the other party's bare JID; stamped as Prosody stamps
        out = []
        for i in value:
            attrs = i["attr"]
            to, frm = xep0227.bare_jid(attrs.get("to")), xep0227.bare_jid(attrs.get("from"))
            out.append({**i, "with": frm if to == user_jid else to,
                        "attr": {**attrs, "stamp": xep0227.prosody_stamp(i["when"])}})
        return out
    # accounts, roster (its pending requests too: Prosody writes them in the
    # XEP-0227 namespace, which our reader takes as well), vcard, private
    return value


def test_c_we_import_prosodys_export(world: dict[str, Any], tmp_path: Path) -> None:
    target = DataManager(str(tmp_path / "imported"))
    result = xep0227.import_paths(target, [str(world["theirs"])])
    assert result.users == 6
    assert not result.report, result.report.lines()
    original = world["dm"]
    for host in world["hosts"]:
        before = _store_values(original, host)
        after = _store_values(target, host)
        assert sorted(after) == sorted(before), host
        for (user, store), value in before.items():
            expected = as_prosody_writes(store, value, f"{user}@{host}")
            assert canon_value(after[user, store]) == canon_value(expected), (user, host, store)


def canon_value(value: Any) -> Any:
    """Lua data compared as Lua holds it (tables unordered, numbers typed)."""
    return canon_data(value)


def test_c_prosody_datamanager_reads_our_import(world: dict[str, Any], oracle: Any,
                                                tmp_path: Path) -> None:
    imported = tmp_path / "imported"
    xep0227.import_paths(DataManager(str(imported)), [str(world["theirs"])])
    ours = DataManager(str(imported))
    checked = 0
    for host in world["hosts"]:
        for (user, store), value in _store_values(ours, host).items():
            req = _req(imported, user, host, store)
            if isinstance(value, list):
                items = json.loads(oracle.call("dm_oracle.list_load", req))
                assert [canon_tagged(i) for i in items] == [canon_data(i) for i in value]
            else:
                assert canon_tagged(json.loads(oracle.call("dm_oracle.load", req))) \
                    == canon_data(value), (user, host, store)
            checked += 1
    assert checked >= 15


# ---------------------------------------------------------------------------
# The account whose name cannot be a file name


def test_odd_user_is_reported_not_dropped_in_the_per_user_layout(tmp_path: Path) -> None:
    dm = DataManager(str(tmp_path / "data"))
    shutil.copytree(CORPUS, tmp_path / "data", ignore=shutil.ignore_patterns("*.expected.json"))
    report, _files = xep0227.export_per_user(dm, str(tmp_path / "out"))
    jid = f"{ODD_USER}@example.com"
    assert any("whole user" in note for note in report.notes[jid])
    assert not any(ODD_USER.split("/")[0] in name and "@" in name and "chars" in name
                   for name in os.listdir(tmp_path / "out"))
    # The server layout carries it, with its password keys and roster contact.
    target = DataManager(str(tmp_path / "back"))
    with open(tmp_path / "server.xml", "wb") as f:
        xep0227.export_server(dm, f)
    xep0227.import_paths(target, [str(tmp_path / "server.xml")])
    assert target.load(ODD_USER, "example.com", "accounts") == \
        dm.load(ODD_USER, "example.com", "accounts")
    assert jid in target.load("alice", "example.com", "roster")
