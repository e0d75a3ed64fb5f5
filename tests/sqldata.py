"""A small data directory for the SQL migration tests, and ways to compare them."""
from __future__ import annotations

import os

from prosody_store import TRUE_KEY
from prosody_store.datamanager import DataManager
from prosody_store.sql import format_datetime, scan
from prosody_store.stanza import from_xml, split_item, to_xml
from tests.tagged import canon

HOSTS = ["localhost", "example.org"]
USERS = ["alice", "bob", "\u00e9lise", "o'brien"]


def message(i: int, frm: str, to: str, body: str, when: int, key: str | None = "auto",
            with_: str | None = "auto", stamp: bool = True) -> dict:
    item: dict = {
        "name": "message",
        "attr": {"xmlns": "jabber:client", "type": "chat", "from": frm, "to": to, "id": f"m{i}"},
        1: {"name": "body", "attr": {}, 1: body},
        2: {"name": "origin-id", "attr": {"xmlns": "urn:xmpp:sid:0", "id": f"m{i}"}},
    }
    if stamp:
        item["attr"]["stamp"] = format_datetime(when)
    if key is not None:
        item["key"] = f"key-{i}" if key == "auto" else key
    item["when"] = when
    if with_ is not None:
        item["with"] = to.split("/")[0] + "<chat" if with_ == "auto" else with_
    return item


def make_data(path: str, *, archive_items: int = 5) -> DataManager:
    """Keyval stores of every value kind, a host store, archives; integral times only."""
    dm = DataManager(path, durable=False)
    for h in HOSTS:
        for n, u in enumerate(USERS):
            dm.store(u, h, "accounts", {"salt": f"salt-{u}", "iteration_count": 10000,
                                        "stored_key": "ab" * 20, "server_key": "cd" * 20})
            dm.store(u, h, "roster", {
                False: {"version": n + 1, "pending": {}},
                f"friend{n}@{h}": {"subscription": "both", "groups": {"Friends": True},
                                   "name": f"Friend \u2603 {n}"},
                f"other@{h}": {"subscription": "to", "groups": {}},
            })
            items = []
            for i in range(archive_items):
                items.append(message(i + n * 100, f"{u}@{h}/res", f"peer{i % 3}@{h}",
                                     f"hello {i} <&> \u00fc\U0001F600\n'\"", 1700000000 + 60 * i))
            dm.list_store(u, h, "archive", items)
        dm.store("alice", h, "vcard", {"name": "vCard", "attr": {"xmlns": "vcard-temp"},
                                       1: {"name": "FN", "attr": {}, 1: "Alice \u00c9"},
                                       2: {"name": "NOTE", "attr": {}, 1: "a\tb\r\nc"}})
        dm.store("alice", h, "private", {"storage:storage:bookmarks": {
            "name": "storage", "attr": {"xmlns": "storage:bookmarks"},
            1: {"name": "conference", "attr": {"jid": "room@conference." + h, "autojoin": "true"}}}})
        dm.store("bob", h, "misc", {
            "s": "text", "empty": "", "unicode": "\u00fc\u20ac\U0001F600", "ctrl": "a\x01b\x1f",
            "i": 42, "neg": -7, "big": 2 ** 53 + 1, "f": 2.5, "tenth": 0.1, "whole": 3.0,
            "t": True, "no": False, "nested": {"a": [1, 2, {"b": None, "c": [True]}], "x": 1.5},
            "": "empty key", 1: "one", 2: "two", 7: "seven", False: {"v": 1},
            "list": ["x", "y"], "holes": {1: "a", 3: "c"}, "boolkeys": {TRUE_KEY: "t", 1: "one"},
        })
        dm.store("bob", h, "listvalue", ["first", "second", {"third": 3}])
        dm.store(None, h, "hoststore", {"motd": "Welcome", "count": 3})
        # An archive without user (host data) and a MUC-like log with odd items.
        room = [message(900 + i, f"room@conference.{h}/nick{i}", f"room@conference.{h}",
                        f"room message {i}", 1700001000 + i, with_=f"nick{i}<groupchat")
                for i in range(3)]
        dm.list_store("room", h, "muc_log", room)
    # Items as older Prosody wrote them: no key (its position is the key), no when
    # (the stamp says it), no with.
    dm.list_store("carol", "localhost", "offline", [
        message(1, "x@localhost", "carol@localhost", "no key", 1700000000, key=None),
        message(2, "y@localhost", "carol@localhost", "no when", 1700000100, with_=None),
    ])
    odd = dm.list_load("carol", "localhost", "offline")
    del odd[1]["when"]
    dm.list_store("carol", "localhost", "offline", odd)
    return dm


def stores_by_kind(path: str) -> dict:
    """{host: ([keyval stores], [archive stores])} of a data directory."""
    out: dict = {}
    for e in scan(DataManager(path, write_index=False)):
        kv, ar = out.setdefault(e.host, ([], []))
        (kv if e.kind == "keyval" else ar).append(e.store)
    return {h: (sorted(set(kv)), sorted(set(ar))) for h, (kv, ar) in out.items()}


def archive_view(items: list) -> list:
    """An archive as Prosody's storage API returns it: (key, when, with, stanza) per item.

    The stanza is normalised through its XML (``xmlns`` only where it changes), so
    that ``util.xml``'s habit of repeating ``xmlns`` on every child does not count.
    """
    from prosody_store.sql import parse_datetime
    out = []
    for i, item in enumerate(items, 1):
        stanza, meta = split_item(item)
        attr = dict(stanza["attr"])
        stamp = attr.pop("stamp", None)
        attr.pop("stamp_legacy", None)
        stanza["attr"] = attr
        when = meta.get("when")
        if when is None:
            when = parse_datetime(stamp)
        out.append(canon((meta.get("key") or str(i), when, meta.get("with") or "",
                          from_xml(to_xml(stanza)))))
    return out


def snapshot(path: str, entries=None) -> dict:
    """Every keyval value and archive (as :func:`archive_view`) of a data directory."""
    dm = DataManager(path, write_index=False)
    out = {}
    for e in entries if entries is not None else scan(dm):
        if e.kind == "keyval":
            out[(e.host, e.store, e.user, "keyval")] = canon(dm.load(e.user, e.host, e.store))
        else:
            out[(e.host, e.store, e.user, "archive")] = archive_view(
                dm.list_load(e.user, e.host, e.store) or [])
    return out


def chmod_world(path: str) -> None:
    """Let the prosody user (prosody-migrator switches to it as root) read and write."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o777)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)
