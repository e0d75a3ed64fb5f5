"""XEP-0227 (PIEFXIS): a data directory's user data as portable XML, and back.

Export writes what Prosody 0.12's ``mod_storage_xep0227`` writes (checked
against ``prosody-migrator``, see tests/test_xep0227_interop.py), in one of two
layouts:

* per user, as ``mod_storage_xep0227`` lays files out: ``<user>@<host>.xml`` in
  one directory, each ``<server-data xmlns='urn:xmpp:pie:0'><host jid=H><user
  name=U>...``;
* one server file with every host and user inline, as XEP-0227 shows it.

Import reads both, and ejabberd's ``export_piefxis`` main file, whose
``<xi:include href='NAME'/>`` elements name per-host files in the same
directory.  Both namespaces are read: ``urn:xmpp:pie:0`` and the older
``http://www.xmpp.org/extensions/xep-0227.html#ns``.

What goes where (store: element under ``<user>``):

* accounts: ``password`` attribute, ``<scram-credentials
  xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>`` (SHA-256 for 32-byte
  keys), every other account field as an attribute in Prosody's namespace
  ``http://prosody.im/protocol/extended-xep0227``;
* roster: ``<query xmlns='jabber:iq:roster' version=V>`` and, for pending
  subscription requests, ``<presence xmlns='jabber:client' type='subscribe'>``;
* vcard: ``<vCard xmlns='vcard-temp'>``; private: ``<query
  xmlns='jabber:iq:private'>``;
* pep: ``<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>`` (node
  configuration as a data form, affiliations, subscriptions), pep_<node>:
  ``<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node=N><item id=K>``
  holding the stored ``<item>``, as Prosody nests it;
* archive: ``<archive xmlns='urn:xmpp:pie:0#mam'>`` of ``<result
  xmlns='urn:xmpp:mam:2'><forwarded><delay stamp/><message/>``;
* offline: ``<offline-messages>`` of the stored stanzas (as ejabberd writes
  them; Prosody 0.12 does not carry offline messages);
* blocklist: ``<blocklist xmlns='urn:xmpp:blocking'><item jid/>`` (XEP-0191's
  element; Prosody 0.12 does not carry the blocklist).

Where Prosody 0.12 loses something on the way, the export keeps it in
attributes of Prosody's extension namespace, which readers that do not know
them ignore: a PEP item's time and publisher (``when``/``with`` on ``<item>``),
an archive item's ``with`` where it is not the other party's bare JID (on
``<result>``), the blocklist's own fields (on ``<blocklist>``).  Prosody 0.12
also writes two things its own reader does not read back, which the export
writes readably instead: pending subscriptions in ``jabber:client``, and PEP
subscriptions with ``subscription='subscribed'`` (Prosody writes
``subscribed='subscribed'``, written too).

For ejabberd (``target="ejabberd"``), which reads SCRAM values base64-encoded
twice, stamps offline messages without a ``<delay>`` with the time of import
and keeps XEP-0191 blocks in privacy lists, the export writes those so; the
import recognizes ejabberd's double encoding by itself, and reads the default
privacy list's blocked JIDs as the blocklist (as mod_blocklist migrates them).

Nothing is dropped silently: what a store holds that XEP-0227 cannot carry
(stores without a mapping, such as MUC data or a module's own store, values
that are not text, characters XML cannot hold) is listed in a :class:`Report`,
per user (``user@host``) or per host.

The XML parser refuses DOCTYPE declarations (so no entities, internal or
external, are ever expanded); comments and processing instructions are skipped.
"""
from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Context, Decimal
from typing import Any, BinaryIO, Iterable, Iterator
from xml.parsers import expat

from prosody_store.datamanager import DataManager, StoreFile, atomic_write
from prosody_store.errors import Error
from prosody_store.paths import Name
from prosody_store.stanza import MAX_DEPTH, StanzaError, split_item

__all__ = [
    "NODE_CONFIG_FIELDS",
    "NODE_CONFIG_KEYS",
    "NS_PIE",
    "TARGETS",
    "ImportResult",
    "Node",
    "Report",
    "UserRecords",
    "Xep0227Error",
    "bare_jid",
    "export_per_user",
    "export_server",
    "format_stamp",
    "import_paths",
    "input_files",
    "parse_bytes",
    "parse_file",
    "parse_stamp",
    "prosody_stamp",
    "read_users",
    "server_chunks",
    "to_table",
    "to_text",
    "user_element",
    "user_file_name",
    "user_records",
    "write_user",
]

NS_PIE = "urn:xmpp:pie:0"
NS_PIE_OLD = "http://www.xmpp.org/extensions/xep-0227.html#ns"
NS_SCRAM = "urn:xmpp:pie:0#scram"
NS_PIE_MAM = "urn:xmpp:pie:0#mam"
NS_EXTENDED = "http://prosody.im/protocol/extended-xep0227"
NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_PRIVATE = "jabber:iq:private"
NS_PRIVACY = "jabber:iq:privacy"
NS_VCARD = "vcard-temp"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_DATA = "jabber:x:data"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_BLOCKING = "urn:xmpp:blocking"
NS_XINCLUDE = "http://www.w3.org/2001/XInclude"
XML_NS = "http://www.w3.org/XML/1998/namespace"

_SEP = "\x01"
_PIE_NAMESPACES = (NS_PIE, NS_PIE_OLD)

# Compiled patterns, together.
_BAD_XML_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_NAME = re.compile(r"[A-Za-z_\u00c0-\uffff][A-Za-z0-9_.\-\u00b7\u00c0-\uffff]*\Z")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+\Z")
_INTEGER = re.compile(r"-?[0-9]{1,17}\Z", re.ASCII)
_STAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,1200})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z", re.ASCII)
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_TEXT_SPECIAL = re.compile(r"[&<>\r]")
_ATTR_SPECIAL = re.compile(r"[&<>'\"\n\r\t]")
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;",
                               '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})

_EXACT = Context(prec=2000)
"""Decimal arithmetic without rounding for times: a double's exact decimal has
at most 1,100 significant digits (a stamp's fraction is limited below)."""

_MAX_PARSE_DEPTH = MAX_DEPTH + 20
"""Deepest nesting the parser accepts: a stored stanza's limit plus the file's own levels."""

ACCOUNT_NUMBER_FIELDS = frozenset({"created", "updated", "iteration_count"})
"""Account fields that Prosody keeps as numbers: an extended attribute of these
that is an integer is read back as a number (other fields stay text)."""

BLOCKLIST_NUMBER_FIELDS = frozenset({"created", "modified"})

# Prosody 0.12's PEP node configuration form (mod_pubsub/pubsub.lib.lua):
# (config key, field var, field type, default written when the key is unset).
NODE_CONFIG_FIELDS: tuple[tuple[str, str, str, bool | None], ...] = (
    ("title", "pubsub#title", "text-single", None),
    ("description", "pubsub#description", "text-single", None),
    ("payload_type", "pubsub#type", "text-single", None),
    ("max_items", "pubsub#max_items", "text-single", None),
    ("persist_items", "pubsub#persist_items", "boolean", None),
    ("access_model", "pubsub#access_model", "list-single", None),
    ("publish_model", "pubsub#publish_model", "list-single", None),
    ("send_last_published_item", "pubsub#send_last_published_item", "list-single", None),
    ("notify_items", "pubsub#deliver_notifications", "boolean", True),
    ("include_payload", "pubsub#deliver_payloads", "boolean", True),
    ("notification_type", "pubsub#notification_type", "list-single", None),
    ("notify_delete", "pubsub#notify_delete", "boolean", True),
    ("notify_retract", "pubsub#notify_retract", "boolean", True),
)
NODE_CONFIG_KEYS = frozenset(k for k, *_ in NODE_CONFIG_FIELDS)
NODE_CONFIG_FORM_TYPE = "http://jabber.org/protocol/pubsub#node_config"

KEYVAL_STORES = ("accounts", "roster", "vcard", "private", "pep", "blocklist")
LIST_STORES = ("archive", "offline")
PEP_ITEMS_PREFIX = "pep_"


class Xep0227Error(Error, ValueError):
    """A XEP-0227 file that cannot be read: ``path:line:column: message``."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = path
        self.line = line
        self.column = column
        self.reason = message


class _Uncarried(Exception):
    """Raised inside the export of one store: the store cannot be carried (the reason)."""


@dataclass
class Report:
    """What could not be carried, by ``user@host`` (or host) in the order met."""

    notes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, who: str, what: str) -> None:
        self.notes.setdefault(who, []).append(what)

    def __bool__(self) -> bool:
        return bool(self.notes)

    def lines(self) -> list[str]:
        """One line per user or host: ``alice@example.com: not carried: a; b``."""
        return [f"{who}: not carried: {'; '.join(what)}" for who, what in self.notes.items()]


# ---------------------------------------------------------------------------
# Small helpers: names, times, JIDs


def _text_name(name: Name | None) -> str | None:
    """A name as text, None if it is not UTF-8 (bytes) or absent."""
    return name if isinstance(name, str) else None


def _jid(user: str | None, host: str) -> str:
    return f"{user}@{host}" if user is not None else host


def bare_jid(jid: str | None) -> str | None:
    """The bare JID, split as Prosody's ``util.jid.bare`` does (no prep)."""
    if jid is None:
        return None
    node, at, rest = jid.partition("@")
    if not at:
        node, rest = "", jid
    host = rest.split("/", 1)[0]
    if not host:
        return None
    return f"{node}@{host}" if at else host


def format_stamp(when: float) -> str:
    """XEP-0082 date-time of a Unix time; fractional seconds written exactly
    as Python's shortest repr of the number has them (so they read back equal)."""
    seconds = math.floor(when)
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if when != seconds:
        # The shortest decimal that reads back as the same float, without exponent.
        fraction = format(_EXACT.subtract(Decimal(repr(float(when))), seconds), "f")  # "0.25"
        text += fraction[1:]
    return text + "Z"


def prosody_stamp(when: float) -> str:
    """What Prosody 0.12's ``util.datetime.datetime`` gives (whole seconds)."""
    return datetime.fromtimestamp(math.floor(when), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> int | float | None:
    """A XEP-0082 date-time as a Unix time (int when whole), None if it is not one."""
    m = _STAMP.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError:
        return None
    seconds = int(moment.timestamp()) + (second - min(second, 59))
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if m.group(7):
        frac = m.group(7)[1:].rstrip("0")
        if frac:
            return float(_EXACT.add(Decimal(seconds), Decimal("0." + frac)))
    return seconds


def user_file_name(user: str, host: str) -> str | None:
    """Prosody's per-user file name ``user@host.xml``; None when it cannot be a file name."""
    name = f"{user}@{host}.xml"
    if "/" in name or "\x00" in name or name.startswith("."):
        return None
    return name


# ---------------------------------------------------------------------------
# Output: stanza tables (Prosody's model) written as XML text


def E(name: str, attr: dict[str, str] | None = None, *children: Any) -> dict[Any, Any]:
    """A stanza table: ``{"name":..., "attr":..., 1: child, 2: ...}``."""
    t: dict[Any, Any] = {"name": name, "attr": dict(attr or {})}
    for i, child in enumerate(children, 1):
        t[i] = child
    return t


def _append(t: dict[Any, Any], child: Any) -> dict[Any, Any]:
    """Add a child to a table made by :func:`E` (whose keys are name, attr, 1..n)."""
    t[len(t) - 1] = child
    return t


def _child_count(t: dict[Any, Any]) -> int:
    n = 0
    while (n + 1) in t:
        n += 1
    return n


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Uncarried(f"{what} is not text ({type(value).__name__})")
    if _BAD_XML_TEXT.search(value):
        raise _Uncarried(f"{what} has a character XML cannot hold")
    return value


def _check_name(value: Any, what: str) -> str:
    """An element or attribute name that XML with namespaces can hold: no
    prefix (a prefix would need a declaration), except ``xml:``."""
    if not isinstance(value, str) or not _name_ok(value):
        raise _Uncarried(f"{what} {value!r} is not an XML name")
    return value


@functools.lru_cache(maxsize=4096)
def _name_ok(name: str) -> bool:
    local = name[4:] if name.startswith("xml:") else name
    return bool(_XML_NAME.match(local)) and ":" not in local


class _Raw(str):
    """A child that is XML text already written and checked (see :func:`_rendered`)."""


def _escape_text(text: str) -> str:
    return text.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL.search(text) else text


def _escape_attr(text: str) -> str:
    return text.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL.search(text) else text


def to_text(table: dict[Any, Any]) -> str:
    """XML text of a stanza table.

    Like :func:`prosody_store.stanza.to_xml` (Prosody's ``tostring``: single
    quotes, ``xmlns`` only where it changes, namespaced attributes with
    ``nsN`` prefixes) except that carriage returns in text, and line ends and
    tabs in attribute values, are written as character references: written
    raw, as Prosody and ``to_xml`` do, an XML parser would turn them into
    newlines and spaces.  Written here, not in stanza.py, because that module's
    output is meant to be Prosody's byte for byte.
    """
    out: list[str] = []
    _write(table, out, None, 0)
    return "".join(out)


def _rendered(table: Any) -> _Raw:
    """A stored stanza as XML text, checked (raises _Uncarried): written
    once, where it goes.  Its root always declares its namespace, so the text
    holds wherever it is put."""
    out: list[str] = []
    _write(table, out, None, 0)
    return _Raw("".join(out))


def _write(t: Any, out: list[str], parent_ns: str | None, depth: int) -> None:
    if depth > _MAX_PARSE_DEPTH:
        raise _Uncarried(f"nested deeper than {_MAX_PARSE_DEPTH}")
    if not isinstance(t, dict):
        raise _Uncarried(f"a stanza child is {type(t).__name__}, not a table or text")
    name = _check_name(t.get("name"), "element name")
    attrs = t.get("attr")
    if not isinstance(attrs, dict):
        raise _Uncarried(f"<{name}> has no attribute table")
    ns = attrs.get("xmlns", parent_ns)
    out.append("<" + name)
    prefixes = 0
    for key, value in attrs.items():
        if value.__class__ is not str or _BAD_XML_TEXT.search(value):
            _check_text(value, f"attribute {key!r} of <{name}>")
        if key == "xmlns":
            if value != parent_ns:
                out.append(f" xmlns='{_escape_attr(value)}'")
            continue
        if key.__class__ is not str:
            raise _Uncarried(f"<{name}> has an attribute name that is not text")
        if _SEP in key:
            attr_ns, local = key.split(_SEP, 1)
            _check_text(attr_ns, "attribute namespace")
            prefixes += 1
            out.append(f" xmlns:ns{prefixes}='{_escape_attr(attr_ns)}'"
                       f" ns{prefixes}:{_check_name(local, 'attribute name')}=")
        else:
            out.append(" " + _check_name(key, "attribute name") + "=")
        out.append(f"'{_escape_attr(value)}'")
    n = len(t) - 2
    if n < 0 or any(i not in t for i in range(1, n + 1)):
        n = _child_count(t)
        for key in t:
            if key not in ("name", "attr") and not (isinstance(key, int) and 1 <= key <= n):
                raise _Uncarried(f"<{name}> has a field {key!r} beside its children")
    if n == 0:
        out.append("/>")
        return
    out.append(">")
    for i in range(1, n + 1):
        child = t[i]
        if child.__class__ is _Raw:
            out.append(child)
        elif isinstance(child, str):
            if _BAD_XML_TEXT.search(child):
                _check_text(child, f"text in <{name}>")
            out.append(_escape_text(child))
        else:
            _write(child, out, ns, depth + 1)
    out.append(f"</{name}>")


# ---------------------------------------------------------------------------
# Export: one user's stores -> <user>


@dataclass
class _UserFiles:
    keyval: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # "store (type)" with no mapping


def _scram_mechanism(record: dict[Any, Any]) -> str | None:
    key = record.get("stored_key")
    if isinstance(key, str) and _HEX.match(key):
        return {20: "SCRAM-SHA-1", 32: "SCRAM-SHA-256"}.get(len(key) // 2)
    return None


def _number_text(value: Any) -> str:
    """A Lua number as Lua's ``tostring`` writes it (integers without a point)."""
    if isinstance(value, bool):
        raise _Uncarried("a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2 ** 63:
            return str(int(value))
        return f"{value:.14g}"
    raise _Uncarried(type(value).__name__)


def _account(user_el: dict[Any, Any], record: Any, notes: list[str], target: str) -> None:
    if not isinstance(record, dict):
        notes.append("accounts (not a table)")
        return
    fields = dict(record)
    scram_keys = ("server_key", "stored_key", "iteration_count", "salt")
    if all(k in fields for k in scram_keys):
        mechanism = _scram_mechanism(fields)
        try:
            salt = fields["salt"]
            salt_bytes = salt.encode() if isinstance(salt, str) else salt
            if mechanism is None or not isinstance(salt_bytes, bytes) \
                    or not isinstance(fields["server_key"], str) \
                    or not _HEX.match(fields["server_key"]):
                raise ValueError
            count = fields["iteration_count"]
            if isinstance(count, bool) or not isinstance(count, (int, float)) \
                    or count != int(count):
                raise ValueError
            # ejabberd reads (and writes) these base64-encoded twice.
            layers = 2 if target == "ejabberd" else 1
            _append(user_el, E("scram-credentials", {"xmlns": NS_SCRAM, "mechanism": mechanism},
                               E("server-key", {}, _b64(bytes.fromhex(fields["server_key"]),
                                                       layers)),
                               E("stored-key", {}, _b64(bytes.fromhex(fields["stored_key"]),
                                                       layers)),
                               E("iter-count", {}, "%d" % int(count)),
                               E("salt", {}, _b64(salt_bytes, layers))))
            for k in scram_keys:
                del fields[k]
        except ValueError:
            pass  # left in fields: written as extended attributes, or reported
    attrs = user_el["attr"]
    if "password" in fields:
        try:
            attrs["password"] = _check_text(fields.pop("password"), "the password")
        except _Uncarried as err:
            notes.append(f"accounts: {err}")
    for key in sorted(fields, key=str):
        value = fields[key]
        try:
            if not isinstance(key, str) or not _XML_NAME.match(key):
                raise _Uncarried("its name is not an XML name")
            text = value if isinstance(value, str) else _number_text(value)
            attrs[NS_EXTENDED + _SEP + key] = _check_text(text, "its value")
        except _Uncarried as err:
            notes.append(f"accounts field {key!r} ({err})")


def _b64(data: bytes, layers: int = 1) -> str:
    for _ in range(layers):
        data = base64.b64encode(data)
    return data.decode("ascii")


def _roster(user_el: dict[Any, Any], roster: Any, notes: list[str]) -> None:
    if not isinstance(roster, dict):
        notes.append("roster (not a table)")
        return
    if not roster:
        return
    query = E("query", {"xmlns": NS_ROSTER})
    presences = []
    for contact in sorted((k for k in roster if k is not False), key=str):
        item = roster[contact]
        try:
            if not isinstance(item, dict):
                raise _Uncarried("not a table")
            attrs = {"jid": _check_text(contact, "its JID")}
            for name in ("subscription", "ask", "name"):
                if item.get(name) is not None:
                    attrs[name] = _check_text(item[name], name)
            el = E("item", attrs)
            groups = item.get("groups") or {}
            if not isinstance(groups, dict):
                raise _Uncarried("groups is not a table")
            for group in sorted(groups, key=str):
                _append(el, E("group", {}, _check_text(group, "a group name"))
                        if group else E("group"))
            extra = set(item) - {"subscription", "ask", "name", "groups", "jid"}
            if extra:
                notes.append(f"roster item {contact!r}: fields {sorted(map(str, extra))}")
            _append(query, el)
        except _Uncarried as err:
            notes.append(f"roster item {contact!r} ({err})")
    meta = roster.get(False)
    if isinstance(meta, dict):
        version = meta.get("version")
        if version is not None:
            try:
                query["attr"]["version"] = (version if isinstance(version, str)
                                            else _number_text(version))
            except _Uncarried as err:
                notes.append(f"roster version ({err})")
        pending = meta.get("pending") or {}
        for jid in sorted(pending, key=str) if isinstance(pending, dict) else ():
            try:
                presences.append(E("presence", {"xmlns": NS_CLIENT, "type": "subscribe",
                                                "from": _check_text(jid, "a pending JID")}))
            except _Uncarried as err:
                notes.append(f"roster pending request ({err})")
        extra = set(meta) - {"version", "pending"}
        if extra:
            notes.append(f"roster fields {sorted(map(str, extra))}")
    elif meta is not None:
        notes.append("roster [false] entry (not a table)")
    _append(user_el, query)
    for p in presences:
        _append(user_el, p)




def _private(user_el: dict[Any, Any], data: Any, notes: list[str]) -> None:
    if not isinstance(data, dict):
        notes.append("private (not a table)")
        return
    if not data:
        return
    query = E("query", {"xmlns": NS_PRIVATE})
    for key in sorted(data, key=str):
        try:
            el = data[key]
            text = _rendered(el)
            # Prosody keys each element "name:namespace"; import makes the key so again.
            if key != f"{el['name']}:{el['attr'].get('xmlns', '')}":
                raise _Uncarried("its key is not the element's name:namespace")
            _append(query, text)
        except _Uncarried as err:
            notes.append(f"private {key!r} ({err})")
    _append(user_el, query)


def _vcard(user_el: dict[Any, Any], data: Any, notes: list[str]) -> None:
    if not isinstance(data, dict) or "attr" not in data:
        if data:
            notes.append("vcard (not a stanza)")
        return
    try:
        _append(user_el, _rendered(data))
    except _Uncarried as err:
        notes.append(f"vcard ({err})")


def _form_value(value: Any, ftype: str) -> str:
    if ftype == "boolean":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value != 0
        return "1" if value else "0"  # Lua: any value but false/nil is true
    if isinstance(value, bool):
        raise _Uncarried("a boolean in a text field")
    if isinstance(value, (int, float)):
        return "%d" % value
    return _check_text(value, "a value")


def _node_config_form(config: dict[Any, Any], node: str, notes: list[str]) -> dict[Any, Any]:
    form = E("x", {"xmlns": NS_DATA, "type": "submit"},
             E("field", {"type": "hidden", "var": "FORM_TYPE"},
               E("value", {}, NODE_CONFIG_FORM_TYPE)))
    for key, var, ftype, default in NODE_CONFIG_FIELDS:
        el = E("field", {"type": ftype, "var": var})
        value = config.get(key, default)
        if value is not None:
            try:
                _append(el, E("value", {}, _form_value(value, ftype)))
            except _Uncarried as err:
                notes.append(f"pep node {node!r} config {key!r} ({err})")
        _append(form, el)
    extra = set(config) - {k for k, *_ in NODE_CONFIG_FIELDS}
    if extra:
        notes.append(f"pep node {node!r} config {sorted(map(str, extra))} "
                     "(not in Prosody's node configuration form)")
    return form


def _pep(user_el: dict[Any, Any], nodes: Any, notes: list[str]) -> None:
    if not isinstance(nodes, dict):
        notes.append("pep (not a table)")
        return
    owner = E("pubsub", {"xmlns": NS_PUBSUB_OWNER})
    for name in sorted(nodes, key=str):
        data = nodes[name]
        if not isinstance(name, str) or _BAD_XML_TEXT.search(name):
            notes.append(f"pep node {name!r} (name)")
            continue
        if data is True:
            data = {"config": {}}
        if not isinstance(data, dict):
            notes.append(f"pep node {name!r} (not a table)")
            continue
        config = data.get("config") or {}
        # Which settings the node has (the form also holds Prosody's defaults
        # for the others): read back by import_paths, ignored by Prosody.
        set_keys = " ".join(sorted(k for k in config
                                   if isinstance(k, str) and k in NODE_CONFIG_KEYS))
        _append(owner, E("configure", {"node": name, _ext("config"): set_keys},
                         _node_config_form(config if isinstance(config, dict) else {},
                                           name, notes)))
        affiliations = data.get("affiliations") or {}
        if affiliations:
            el = E("affiliations", {"node": name})
            for jid in sorted(affiliations, key=str):
                try:
                    _append(el, E("affiliation", {
                        "jid": _check_text(jid, "JID"),
                        "affiliation": _check_text(affiliations[jid], "affiliation")}))
                except _Uncarried as err:
                    notes.append(f"pep node {name!r} affiliation ({err})")
            _append(owner, el)
        subscribers = data.get("subscribers") or {}
        if subscribers:
            el = E("subscriptions", {"node": name})
            for jid in sorted(subscribers, key=str):
                try:
                    # Prosody 0.12 writes subscribed='subscribed' and reads
                    # subscription='subscribed' (XEP-0060's): both are written.
                    _append(el, E("subscription", {"jid": _check_text(jid, "JID"),
                                                   "subscribed": "subscribed",
                                                   "subscription": "subscribed"}))
                except _Uncarried as err:
                    notes.append(f"pep node {name!r} subscriber ({err})")
                    continue
                if subscribers[jid] is not True:
                    notes.append(f"pep node {name!r} subscription options of {jid!r}")
            _append(owner, el)
        extra = set(data) - {"name", "config", "affiliations", "subscribers"}
        if extra:
            notes.append(f"pep node {name!r} fields {sorted(map(str, extra))}")
    _append(user_el, owner)


def _strip_storage_fields(stanza: dict[Any, Any]) -> dict[Any, Any]:
    """The stanza as Prosody's archive ``find`` returns it: without the
    ``stamp``/``stamp_legacy`` attributes mod_storage_internal adds."""
    attrs = dict(stanza.get("attr") or {})
    attrs.pop("stamp", None)
    attrs.pop("stamp_legacy", None)
    out = dict(stanza)
    out["attr"] = attrs
    return out


def _item_meta(item: Any) -> tuple[dict[Any, Any], dict[Any, Any]]:
    if not isinstance(item, dict):
        raise _Uncarried(f"an item that is {type(item).__name__}")
    try:
        stanza, meta = split_item(item)
    except StanzaError as err:
        raise _Uncarried(str(err)) from None
    return _strip_storage_fields(stanza), meta


def _when(meta: dict[Any, Any], stanza_attr: dict[Any, Any]) -> int | float | None:
    when = meta.get("when")
    if isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when):
        return when
    stamp = stanza_attr.get("stamp")
    return parse_stamp(stamp) if isinstance(stamp, str) else None


def _ext(name: str) -> str:
    return NS_EXTENDED + _SEP + name


def _pep_items(pubsub: dict[Any, Any], node: str, items: Iterable[Any], user_jid: str,
               notes: list[str]) -> None:
    el = E("items", {"node": node})
    dropped = 0
    last = ""
    for item in items:
        try:
            stanza, meta = _item_meta(item)
            key = meta.get("key")
            attrs = {"id": _check_text(key, "item key")}
            when = _when(meta, item.get("attr") or {})
            if when is not None:
                attrs[_ext("when")] = format_stamp(when)
            with_ = meta.get("with")
            if with_ is not None and with_ != user_jid:
                attrs[_ext("with")] = _check_text(with_, "with")
            _append(el, E("item", attrs, _rendered(stanza)))
        except _Uncarried as err:
            dropped += 1
            last = str(err)
    if dropped:
        notes.append(f"pep_{node}: {dropped} items ({last})")
    if _child_count(el):
        _append(pubsub, el)


def _derived_with(message: dict[Any, Any], user_jid: str) -> str | None:
    """The ``with`` Prosody's XEP-0227 reader derives: the other party's bare JID."""
    attrs = message.get("attr") or {}
    to_bare, from_bare = bare_jid(attrs.get("to")), bare_jid(attrs.get("from"))
    return from_bare if to_bare == user_jid else to_bare


def _archive(user_el: dict[Any, Any], items: Iterable[Any], user_jid: str,
             notes: list[str]) -> None:
    archive = E("archive", {"xmlns": NS_PIE_MAM})
    dropped = 0
    last = ""
    for item in items:
        try:
            stanza, meta = _item_meta(item)
            when = _when(meta, item.get("attr") or {})
            if when is None:
                raise _Uncarried("an item without a time")
            message = dict(stanza)
            message["attr"] = {**stanza["attr"], "xmlns": NS_CLIENT}
            key = _escape_attr(_check_text(meta.get("key"), "item key"))
            with_ = meta.get("with")
            ext = ""
            if with_ != _derived_with(message, user_jid) and with_ is not None:
                ext = (f" xmlns:ns1='{NS_EXTENDED}'"
                       f" ns1:with='{_escape_attr(_check_text(with_, 'with'))}'")
            # Written here rather than built as tables: the same text as
            # _write makes of them, several times faster for large archives.
            _append(archive, _Raw(
                f"<result xmlns='{NS_MAM}' id='{key}'{ext}>"
                f"<forwarded xmlns='{NS_FORWARD}'>"
                f"<delay xmlns='{NS_DELAY}' stamp='{format_stamp(when)}'/>"
                f"{_rendered(message)}</forwarded></result>"))
        except _Uncarried as err:
            dropped += 1
            last = str(err)
    if dropped:
        notes.append(f"archive: {dropped} items ({last})")
    if _child_count(archive):
        _append(user_el, archive)


def _offline(user_el: dict[Any, Any], items: Iterable[Any], notes: list[str], host: str,
             target: str) -> None:
    el = E("offline-messages")
    dropped = 0
    last = ""
    for item in items:
        try:
            stanza, meta = _item_meta(item)
            if target == "ejabberd":
                stanza = _for_ejabberd_offline(stanza, meta, item.get("attr") or {}, host)
            else:
                stanza = _with_offline_meta(stanza, meta, item.get("attr") or {})
            _append(el, _rendered(stanza))
        except _Uncarried as err:
            dropped += 1
            last = str(err)
    if dropped:
        notes.append(f"offline: {dropped} messages ({last})")
    n = _child_count(el)
    if n:
        if target == "ejabberd":
            notes.append(f"offline: the storage keys of {n} messages (ejabberd makes its own)")
        _append(user_el, el)


def _with_offline_meta(stanza: dict[Any, Any], meta: dict[Any, Any],
                       stored_attr: dict[Any, Any]) -> dict[Any, Any]:
    """The message with its storage key, time and ``with`` as attributes in
    Prosody's extension namespace (XEP-0227 has no place for them)."""
    attrs = dict(stanza["attr"])
    if meta.get("key") is not None:
        attrs[_ext("key")] = _check_text(meta["key"], "message key")
    when = _when(meta, stored_attr)
    if when is not None:
        attrs[_ext("when")] = format_stamp(when)
    if meta.get("with") is not None:
        attrs[_ext("with")] = _check_text(meta["with"], "with")
    return {**stanza, "attr": attrs}


def _for_ejabberd_offline(stanza: dict[Any, Any], meta: dict[Any, Any],
                          stored_attr: dict[Any, Any], host: str) -> dict[Any, Any]:
    """An offline message as ejabberd imports it: with a ``from`` (it stops
    the whole import at a message without one) and a ``<delay>`` with the time
    it was stored (ejabberd stamps one without it with the time of import)."""
    if not stanza.get("attr", {}).get("from"):
        raise _Uncarried("a message without 'from' (ejabberd refuses it)")
    n = _child_count(stanza)
    for i in range(1, n + 1):
        child = stanza[i]
        if isinstance(child, dict) and child.get("name") == "delay" \
                and child.get("attr", {}).get("xmlns") == NS_DELAY:
            return stanza
    when = _when(meta, stored_attr)
    if when is None:
        return stanza
    out = dict(stanza)
    out[n + 1] = E("delay", {"xmlns": NS_DELAY, "from": host, "stamp": _micro_stamp(when)})
    return out


def _micro_stamp(when: float) -> str:
    """A date-time with microseconds when the time has a fraction, as ejabberd writes them."""
    seconds = math.floor(when)
    micro = round((when - seconds) * 1_000_000)
    if micro == 1_000_000:
        seconds, micro = seconds + 1, 0
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{micro:06d}Z" if micro else text + "Z"


def _privacy_list_el(jids: list[str]) -> dict[Any, Any]:
    """The blocklist as ejabberd keeps XEP-0191 blocks: a default privacy list
    of ``deny`` items (ejabberd's mod_blocking names it "Blocked contacts")."""
    name = "Blocked contacts"
    lst = E("list", {"name": name})
    for order, jid in enumerate(jids):
        _append(lst, E("item", {"type": "jid", "value": jid, "action": "deny",
                                "order": str(order)}))
    return E("query", {"xmlns": NS_PRIVACY}, E("default", {"name": name}), lst)


def _blocklist(user_el: dict[Any, Any], data: Any, notes: list[str], target: str) -> None:
    if not isinstance(data, dict):
        notes.append("blocklist (not a table)")
        return
    el = E("blocklist", {"xmlns": NS_BLOCKING})
    meta = data.get(False)
    if isinstance(meta, dict):
        for key in sorted(meta, key=str):
            try:
                if not isinstance(key, str) or not _XML_NAME.match(key):
                    raise _Uncarried("name")
                value = meta[key]
                el["attr"][_ext(key)] = _check_text(
                    value if isinstance(value, str) else _number_text(value), "value")
            except _Uncarried as err:
                notes.append(f"blocklist field {key!r} ({err})")
    jids = []
    for jid in sorted((k for k in data if k is not False), key=str):
        try:
            if data[jid] is not True:
                raise _Uncarried("not true")
            jids.append(_check_text(jid, "JID"))
        except _Uncarried as err:
            notes.append(f"blocklist entry {jid!r} ({err})")
    if target == "ejabberd":
        if el["attr"].keys() - {"xmlns"}:
            notes.append("blocklist fields (ejabberd's privacy lists have no place for them)")
        if jids:
            _append(user_el, _privacy_list_el(jids))
        return
    for jid in jids:
        _append(el, E("item", {"jid": jid}))
    _append(user_el, el)


TARGETS = ("prosody", "ejabberd")


def user_element(dm: DataManager, host: str, user: str, files: _UserFiles | None = None,
                 report: Report | None = None, target: str = "prosody") -> dict[Any, Any]:
    """The ``<user>`` element (a stanza table) of one user's stores.

    ``files``: the user's stores (found when None); what cannot be carried
    goes to ``report`` under ``user@host``.  ``target="ejabberd"`` writes what
    ejabberd's ``import_piefxis`` needs where it differs from XEP-0227 and
    Prosody: SCRAM values base64-encoded twice, a ``<delay>`` in every offline
    message, the blocklist as a privacy list.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}")
    if files is None:
        files = _UserFiles()
        for f in dm.iter_files([host]):
            if f.user == user:
                _sort_file(f, files)
    notes: list[str] = [f"{s}" for s in files.other]
    user_jid = _jid(user, host)
    user_el = E("user", {"name": user})
    loaders = {"roster": _roster, "vcard": _vcard, "private": _private, "pep": _pep}
    for store in KEYVAL_STORES:
        if store in files.keyval:
            data = dm.load(user, host, store)
            if data is None:
                continue
            if store == "accounts":
                _account(user_el, data, notes, target)
            elif store == "blocklist":
                _blocklist(user_el, data, notes, target)
            else:
                loaders[store](user_el, data, notes)
    pep_nodes = sorted(s for s in files.lists if s.startswith(PEP_ITEMS_PREFIX))
    if pep_nodes:
        pubsub = E("pubsub", {"xmlns": NS_PUBSUB})
        for store in pep_nodes:
            _pep_items(pubsub, store[len(PEP_ITEMS_PREFIX):],
                       dm.list_load(user, host, store) or [], user_jid, notes)
        if _child_count(pubsub):
            _append(user_el, pubsub)
    if "archive" in files.lists:
        _archive(user_el, dm.list_load(user, host, "archive") or [], user_jid, notes)
    if "offline" in files.lists:
        _offline(user_el, dm.list_load(user, host, "offline") or [], notes, host, target)
    if notes and report is not None:
        for note in notes:
            report.add(user_jid, note)
    return user_el


def _sort_file(f: StoreFile, files: _UserFiles) -> None:
    store = _text_name(f.store)
    if store is None:
        files.other.append(f"store {f.store!r} ({f.type}; name not UTF-8)")
    elif f.type == "keyval" and store in KEYVAL_STORES:
        files.keyval.append(store)
    elif f.type == "list" and (store in LIST_STORES or (
            store.startswith(PEP_ITEMS_PREFIX) and len(store) > len(PEP_ITEMS_PREFIX))):
        files.lists.append(store)
    else:
        files.other.append(f"{store} ({f.type})")


def _users_by_host(dm: DataManager, hosts: Iterable[Name | None] | None,
                   report: Report) -> Iterator[tuple[str, list[tuple[str, _UserFiles]]]]:
    """Each host (text) with its users and their store files, in name order;
    what has no place in XEP-0227 goes to ``report``."""
    host_list = dm.hosts() if hosts is None else list(hosts)
    for host in host_list:
        users: dict[Name, _UserFiles] = {}
        host_notes: list[str] = []
        for f in dm.iter_files([host]):
            if f.user is None:
                host_notes.append(f"{_show(f.store)} ({f.type}, host data)")
            else:
                _sort_file(f, users.setdefault(f.user, _UserFiles()))
        host_text = _text_name(host)
        if host is None:  # Prosody's host-less data: nothing of a user's
            for f in dm.iter_files([None]):
                who = "" if f.user is None else f" of {_show(f.user)}"
                report.add("_global", f"{_show(f.store)} ({f.type}{who})")
            continue
        if host_text is None or _BAD_XML_TEXT.search(host_text):
            report.add(_show(host), "the whole host (its name is not UTF-8 text)")
            continue
        for note in host_notes:
            report.add(host_text, note)
        good = []
        for user, files in users.items():
            user_text = _text_name(user)
            if user_text is None or _BAD_XML_TEXT.search(user_text):
                report.add(f"{_show(user)}@{host_text}", "the whole user (name not UTF-8 text)")
            elif not files.keyval and not files.lists:
                # Nothing XEP-0227 carries (a MUC room's or a module's own
                # store): no <user>, only the report.
                for note in files.other:
                    report.add(_jid(user_text, host_text), note)
            else:
                good.append((user_text, files))
        yield host_text, sorted(good, key=lambda p: p[0].encode())


def _show(name: Name | None) -> str:
    if name is None:
        return "_global"
    return name if isinstance(name, str) else repr(name)


def _document(host: str, user_el: dict[Any, Any]) -> dict[Any, Any]:
    return E("server-data", {"xmlns": NS_PIE}, E("host", {"jid": host}, user_el))


def export_per_user(dm: DataManager, out_dir: str, hosts: Iterable[Name | None] | None = None,
                    *, durable: bool = True, target: str = "prosody") -> tuple[Report, int]:
    """One ``user@host.xml`` per user in ``out_dir`` (made if missing), as
    ``mod_storage_xep0227`` lays them out.  Each file is written whole or not
    at all.  Returns what could not be carried and the number of files."""
    report = Report()
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for host, users in _users_by_host(dm, hosts, report):
        for user, files in users:
            name = user_file_name(user, host)
            if name is None:
                report.add(_jid(user, host), "the whole user (the name cannot be a file "
                           "name in the per-user layout; the server layout carries it)")
                continue
            el = user_element(dm, host, user, files, report, target)
            text = to_text(_document(host, el)).encode("utf-8")
            atomic_write(os.path.join(out_dir, name), [text], durable=durable)
            written += 1
    return report, written


def server_chunks(dm: DataManager, report: Report, hosts: Iterable[Name | None] | None = None,
                  target: str = "prosody") -> Iterator[bytes]:
    """The server layout, one user at a time: ``<server-data>`` with every host
    and user inline.  Fills ``report`` as it goes."""
    yield b"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n"
    for host, users in _users_by_host(dm, hosts, report):
        yield f"<host jid='{host.translate(_ATTR_ESCAPES)}'>\n".encode("utf-8")
        for user, files in users:
            el = user_element(dm, host, user, files, report, target)
            # The <user> written in the document's namespace: no xmlns of its own.
            yield (_user_text(el) + "\n").encode("utf-8")
        yield b"</host>\n"
    yield b"</server-data>\n"


def _user_text(el: dict[Any, Any]) -> str:
    out: list[str] = []
    _write(el, out, NS_PIE, 1)
    return "".join(out)


def export_server(dm: DataManager, out: BinaryIO, hosts: Iterable[Name | None] | None = None,
                  target: str = "prosody") -> Report:
    """Write the server layout to ``out``; returns what could not be carried."""
    report = Report()
    for chunk in server_chunks(dm, report, hosts, target):
        out.write(chunk)
    return report


# ---------------------------------------------------------------------------
# Parsing (safe): XML text -> Node tree


@dataclass(eq=False)
class Node:
    """An element: its name, namespace, attributes (namespaced ones keyed
    ``"ns\\1name"``, ``xml:`` ones ``"xml:name"``, no ``xmlns``), children
    (Nodes and text, adjacent text merged) and where it starts."""

    name: str
    ns: str | None
    attr: dict[str, str]
    children: list["Node | str"] = field(default_factory=list)
    line: int = 0
    column: int = 0

    def elements(self, name: str | None = None, ns: str | None = None) -> Iterator["Node"]:
        for c in self.children:
            if isinstance(c, Node) and (name is None or c.name == name) \
                    and (ns is None or c.ns == ns):
                yield c

    def first(self, name: str, ns: str | None = None) -> "Node | None":
        return next(self.elements(name, ns), None)

    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    def child_text(self, name: str, ns: str | None = None) -> str | None:
        el = self.first(name, ns)
        return None if el is None else el.text()


class _TreeBuilder:
    def __init__(self, path: str, parser: Any) -> None:
        self.path = path
        self.parser = parser
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.pending: list[str] = []

    def fail(self, message: str) -> None:
        raise Xep0227Error(self.path, self.parser.CurrentLineNumber,
                           self.parser.CurrentColumnNumber + 1, message)

    def _flush(self) -> None:
        if self.pending and self.stack:
            text = "".join(self.pending)
            children = self.stack[-1].children
            if children and isinstance(children[-1], str):
                children[-1] += text
            else:
                children.append(text)
        self.pending = []

    def start(self, tag: str, attrs: list[str]) -> None:
        self._flush()
        if len(self.stack) >= _MAX_PARSE_DEPTH:
            self.fail(f"nested deeper than {_MAX_PARSE_DEPTH}")
        ns, sep, name = tag.rpartition(_SEP)
        node = Node(name, ns if sep else None, {}, [], self.parser.CurrentLineNumber,
                    self.parser.CurrentColumnNumber + 1)
        for i in range(0, len(attrs), 2):
            key = attrs[i]
            if key.startswith(XML_NS + _SEP):
                key = "xml:" + key[len(XML_NS) + 1:]
            node.attr[key] = attrs[i + 1]
        if self.stack:
            self.stack[-1].children.append(node)
        elif self.root is None:
            self.root = node
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self._flush()
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.stack:
            self.pending.append(text)

    def refuse_doctype(self, *args: Any) -> None:
        self.fail("a DOCTYPE is not allowed (no DTDs or entities in XEP-0227 files)")

    def refuse_entity(self, *args: Any) -> None:
        self.fail("entity declarations are not allowed")


def parse_bytes(data: bytes, path: str = "<input>") -> Node:
    """The root element of an XML document; :class:`Xep0227Error` for XML that is
    not well-formed or has a DOCTYPE."""
    parser = expat.ParserCreate(namespace_separator=_SEP)
    builder = _TreeBuilder(path, parser)
    parser.ordered_attributes = True
    parser.buffer_text = True
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = builder.refuse_doctype
    parser.EntityDeclHandler = builder.refuse_entity
    parser.UnparsedEntityDeclHandler = builder.refuse_entity
    parser.ExternalEntityRefHandler = lambda *a: builder.refuse_entity()  # type: ignore[assignment]
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise Xep0227Error(path, err.lineno, err.offset + 1,
                           f"not well-formed XML: {expat.errors.messages[err.code]}") from None
    if builder.root is None:
        raise Xep0227Error(path, 1, 1, "no element")
    return builder.root


def parse_file(path: str) -> Node:
    """The root element of a XEP-0227 file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise Xep0227Error(path, 0, 0, f"cannot read: {err.strerror}") from None
    return parse_bytes(data, path)


def to_table(node: Node, parent_ns: str | None = None) -> dict[Any, Any]:
    """A parsed element as Prosody stores a stanza: ``xmlns`` only where the
    namespace differs from ``parent_ns`` (always on the root)."""
    attrs: dict[str, str] = {}
    if node.ns is not None and node.ns != parent_ns:
        attrs["xmlns"] = node.ns
    attrs.update(node.attr)
    t: dict[Any, Any] = {}
    n = 0
    ns = node.ns if node.ns is not None else parent_ns
    for c in node.children:
        n += 1
        t[n] = c if isinstance(c, str) else to_table(c, ns)
    t["name"] = node.name
    t["attr"] = attrs
    return t


# ---------------------------------------------------------------------------
# Import: <user> -> store records


@dataclass
class UserRecords:
    """One ``<user>``'s data as store records: ``keyval`` store -> value,
    ``lists`` store -> items; ``not_carried`` what had no store to go to."""

    host: str
    user: str
    keyval: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[Any]] = field(default_factory=dict)
    not_carried: list[str] = field(default_factory=list)

    @property
    def jid(self) -> str:
        return _jid(self.user, self.host)


def _int_or_text(text: str) -> int | str:
    return int(text) if _INTEGER.match(text) else text


def _read_account(user: Node, rec: UserRecords) -> None:
    record: dict[str, Any] = {}
    scrams = list(user.elements("scram-credentials", NS_SCRAM))
    chosen = None
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        chosen = next((s for s in scrams if s.attr.get("mechanism") == mechanism), None)
        if chosen is not None:
            break
    for s in scrams:
        if s is not chosen:
            rec.not_carried.append(f"scram-credentials {s.attr.get('mechanism')!r} "
                                   "(one set of SCRAM keys is kept per account)")
    if chosen is not None:
        try:
            count = int(chosen.child_text("iter-count") or "")
            fields = [_unbase64(chosen.child_text(name) or "")
                      for name in ("server-key", "stored-key", "salt")]
        except (ValueError, binascii.Error):
            raise Xep0227Error("", chosen.line, chosen.column,
                               "scram-credentials: bad iter-count or base64") from None
        size = 20 if chosen.attr.get("mechanism") == "SCRAM-SHA-1" else 32
        _set_scram(record, count, *_scram_layers(fields, size))
    password = user.attr.get("password")
    if password is not None:
        scram = _ejabberd_scram_password(password)
        if scram is not None and chosen is None:
            _set_scram(record, *scram)
        else:
            record["password"] = password
    for key, value in user.attr.items():
        if key.startswith(NS_EXTENDED + _SEP):
            name = key[len(NS_EXTENDED) + 1:]
            record.setdefault(name, _int_or_text(value) if name in ACCOUNT_NUMBER_FIELDS
                              else value)
    if record:
        rec.keyval["accounts"] = record


def _unbase64(text: str) -> bytes:
    return base64.b64decode("".join(text.split()), validate=True)


def _scram_layers(fields: list[bytes], size: int) -> tuple[bytes, bytes, bytes]:
    """(server key, stored key, salt), undoing ejabberd's second base64 layer
    where there is one: ejabberd (23.01 and later) writes these base64-encoded
    twice.  Told apart by the keys: once decoded they are ``size`` bytes of
    hash; ejabberd's are base64 text that decodes to ``size`` bytes."""
    server_key, stored_key, salt = fields
    if len(server_key) == size and len(stored_key) == size:
        return server_key, stored_key, salt
    try:
        inner = [_unbase64(f.decode("ascii")) for f in fields]
    except (ValueError, binascii.Error):
        return server_key, stored_key, salt
    if len(inner[0]) == size and len(inner[1]) == size:
        return inner[0], inner[1], inner[2]
    return server_key, stored_key, salt


def _set_scram(record: dict[str, Any], count: int, server_key: bytes, stored_key: bytes,
               salt: bytes) -> None:
    record["iteration_count"] = count
    record["server_key"] = server_key.hex()
    record["stored_key"] = stored_key.hex()
    try:
        record["salt"] = salt.decode("utf-8")
    except UnicodeDecodeError:
        record["salt"] = salt  # ejabberd's salts are random bytes


_EJABBERD_SCRAM = re.compile(r"scram:([A-Za-z0-9+/=]+),([A-Za-z0-9+/=]+),([A-Za-z0-9+/=]+),"
                             r"([0-9]{1,9})\Z", re.ASCII)


def _ejabberd_scram_password(text: str) -> tuple[int, bytes, bytes, bytes] | None:
    """Older ejabberd's ``password='scram:StoredKey,ServerKey,Salt,IterCount'``
    (SHA-1; twice base64 as ejabberd writes them), or None."""
    m = _EJABBERD_SCRAM.match(text)
    if not m:
        return None
    try:
        stored, server, salt = (_unbase64(g) for g in m.groups()[:3])
    except (ValueError, binascii.Error):
        return None
    server, stored, salt = _scram_layers([server, stored, salt], 20)
    if len(server) != 20 or len(stored) != 20:
        return None
    return int(m.group(4)), server, stored, salt


def _read_roster(user: Node, rec: UserRecords) -> None:
    query = user.first("query", NS_ROSTER)
    pending = {}
    for p in user.elements("presence"):
        if p.ns in (NS_CLIENT, *_PIE_NAMESPACES) and p.attr.get("type") == "subscribe" \
                and p.attr.get("from"):
            pending[p.attr["from"]] = True
    if query is None and not pending:
        return
    meta: dict[str, Any] = {"pending": pending}
    roster: dict[Any, Any] = {False: meta}
    if query is not None:
        if "version" in query.attr:
            meta["version"] = _int_or_text(query.attr["version"])
        for item in query.elements("item", NS_ROSTER):
            jid = item.attr.get("jid")
            if not jid:
                rec.not_carried.append("a roster item without jid")
                continue
            entry: dict[str, Any] = {}
            for name in ("subscription", "ask", "name"):
                if name in item.attr:
                    entry[name] = item.attr[name]
            entry.setdefault("subscription", "none")
            entry["groups"] = {g.text(): True for g in item.elements("group", NS_ROSTER)}
            roster[jid] = entry
    rec.keyval["roster"] = roster


def _read_private(user: Node, rec: UserRecords) -> None:
    query = user.first("query", NS_PRIVATE)
    if query is None:
        return
    data = {}
    for el in query.elements():
        data[f"{el.name}:{el.ns or ''}"] = to_table(el)
    rec.keyval["private"] = data


def _read_form(form: Node) -> dict[str, Any]:
    """Prosody's ``node_config_form:data(form)``: the known fields, typed."""
    fields = {f.attr.get("var"): f for f in form.elements("field", NS_DATA)}
    config: dict[str, Any] = {}
    for key, var, ftype, _default in NODE_CONFIG_FIELDS:
        f = fields.get(var)
        if f is None:
            continue
        text = f.child_text("value", NS_DATA)
        if text is None:
            continue
        if ftype == "boolean":
            if text in ("1", "true"):
                config[key] = True
            elif text in ("0", "false"):
                config[key] = False
        elif key == "max_items":
            if text == "max":
                config[key] = text
            elif _INTEGER.match(text):
                config[key] = int(text)
        else:
            config[key] = text
    return config


def _read_pep(user: Node, rec: UserRecords) -> None:
    owner = user.first("pubsub", NS_PUBSUB_OWNER)
    pubsub = user.first("pubsub", NS_PUBSUB)
    nodes: dict[str, Any] = {}
    if owner is None:
        if pubsub is None:
            return
        for items in pubsub.elements("items", NS_PUBSUB):
            if items.attr.get("node"):
                nodes[items.attr["node"]] = True  # as Prosody's reader (mod_pep's COMPAT)
    else:
        for el in owner.elements():
            name = el.attr.get("node")
            if not name:
                continue
            node = nodes.setdefault(name, {"name": name, "config": {}, "affiliations": {},
                                           "subscribers": {}})
            if el.name == "configure":
                form = el.first("x", NS_DATA)
                if form is not None:
                    node["config"] = _read_form(form)
                    set_keys = el.attr.get(_ext("config"))
                    if set_keys is not None:
                        wanted = set(set_keys.split())
                        node["config"] = {k: v for k, v in node["config"].items() if k in wanted}
            elif el.name == "affiliations":
                for a in el.elements("affiliation"):
                    if a.attr.get("jid") and a.attr.get("affiliation"):
                        node["affiliations"][a.attr["jid"]] = a.attr["affiliation"]
            elif el.name == "subscriptions":
                for s in el.elements("subscription"):
                    state = s.attr.get("subscription", s.attr.get("subscribed"))
                    if s.attr.get("jid") and state == "subscribed":
                        node["subscribers"][s.attr["jid"]] = True
                        if s.first("options") is not None:
                            rec.not_carried.append(f"pep node {name!r}: subscription options")
            else:
                rec.not_carried.append(f"pep node {name!r}: <{el.name}>")
    rec.keyval["pep"] = nodes


def _item_times(el: Node, default_with: str) -> tuple[int | float, str]:
    stamp = el.attr.get(_ext("when"))
    when = parse_stamp(stamp) if stamp else None
    return (when if when is not None else 0), el.attr.get(_ext("with"), default_with)


def _stored(stanza: dict[Any, Any], key: str, when: int | float, with_: str) -> dict[Any, Any]:
    """A list item as mod_storage_internal's ``append`` stores it."""
    item = dict(stanza)
    item["attr"] = {**stanza["attr"], "stamp": prosody_stamp(when)}
    item["key"] = key
    item["when"] = when
    item["with"] = with_
    return item


def _read_pep_items(user: Node, rec: UserRecords) -> None:
    pubsub = user.first("pubsub", NS_PUBSUB)
    if pubsub is None:
        return
    for items in pubsub.elements("items", NS_PUBSUB):
        node = items.attr.get("node")
        if not node:
            continue
        out = []
        for item in items.elements("item", NS_PUBSUB):
            key = item.attr.get("id")
            payloads = list(item.elements())
            if key is None or not payloads:
                rec.not_carried.append(f"pep_{node}: an item without id or payload")
                continue
            payload = payloads[0]
            if payload.name == "item" and payload.ns == NS_PUBSUB:
                stanza = to_table(payload)  # Prosody's nesting: the stored <item> itself
            else:
                stanza = {1: to_table(payload, NS_PUBSUB), "name": "item",
                          "attr": {"xmlns": NS_PUBSUB, "id": key}}
            when, with_ = _item_times(item, rec.jid)
            out.append(_stored(stanza, key, when, with_))
        rec.lists[PEP_ITEMS_PREFIX + node] = out


def _read_archive(user: Node, rec: UserRecords) -> None:
    archive = user.first("archive", NS_PIE_MAM)
    if archive is None:
        return
    out = []
    for result in archive.elements("result", NS_MAM):
        forwarded = result.first("forwarded", NS_FORWARD)
        message = forwarded and forwarded.first("message", NS_CLIENT)
        delay = forwarded and forwarded.first("delay", NS_DELAY)
        when = parse_stamp(delay.attr.get("stamp", "")) if delay is not None else None
        key = result.attr.get("id")
        if message is None or when is None or key is None:
            raise Xep0227Error("", result.line, result.column,
                               "archive result without id, delay stamp or message")
        stanza = to_table(message)
        with_ = result.attr.get(_ext("with"))
        if with_ is None:
            with_ = _derived_with(stanza, rec.jid) or ""
        out.append(_stored(stanza, key, when, with_))
    rec.lists["archive"] = out


def _read_offline(user: Node, rec: UserRecords) -> None:
    el = next((e for e in user.elements("offline-messages")
               if e.ns in _PIE_NAMESPACES or e.ns is None), None)
    if el is None:
        return
    out = []
    for stanza_el in el.elements():
        stanza = to_table(stanza_el)
        attrs = stanza["attr"]
        key, stamp, with_ = (attrs.pop(_ext(n), None) for n in ("key", "when", "with"))
        when = parse_stamp(stamp) if stamp else None
        delay = stanza_el.first("delay", NS_DELAY)
        if when is None and delay is not None:
            when = parse_stamp(delay.attr.get("stamp", ""))
            if when is not None:
                # The delay of the server that stored it (ejabberd's): Prosody's
                # mod_offline adds its own, from this time, on delivery.
                stanza = _without_child(stanza, stanza_el.children.index(delay) + 1)
        if when is None:
            when = int(time.time())  # as mod_offline: the time it is stored
        # mod_offline's key is made by the archive store (a UUID) and its 'with' is ""
        out.append(_stored(stanza, key or str(uuid.uuid4()), when,
                           with_ if with_ is not None else ""))
    rec.lists["offline"] = out


def _without_child(t: dict[Any, Any], index: int) -> dict[Any, Any]:
    """The stanza table without its child number ``index``."""
    children = [t[i] for i in range(1, len(t) - 1) if i != index]
    out: dict[Any, Any] = dict(enumerate(children, 1))
    out["name"] = t["name"]
    out["attr"] = t["attr"]
    return out


def _read_blocklist(user: Node, rec: UserRecords) -> None:
    el = user.first("blocklist", NS_BLOCKING)
    privacy = user.first("query", NS_PRIVACY)
    if el is None and privacy is None:
        return
    data: dict[Any, Any] = {}
    meta: dict[str, Any] = {}
    if el is not None:
        for key, value in el.attr.items():
            if key.startswith(NS_EXTENDED + _SEP):
                name = key[len(NS_EXTENDED) + 1:]
                meta[name] = _int_or_text(value) if name in BLOCKLIST_NUMBER_FIELDS else value
        for item in el.elements("item", NS_BLOCKING):
            if item.attr.get("jid"):
                data[item.attr["jid"]] = True
    if privacy is not None:
        _privacy_blocks(privacy, data, meta, rec)
    if meta:
        data[False] = meta
    elif not any(k is not False for k in data):
        return
    rec.keyval["blocklist"] = data


def _privacy_blocks(query: Node, data: dict[Any, Any], meta: dict[str, Any],
                    rec: UserRecords) -> None:
    """The jids a privacy list denies, as mod_blocklist migrates them: the
    default list's ``type='jid' action='deny'`` items (ejabberd keeps XEP-0191
    blocks in a privacy list)."""
    default = query.first("default", NS_PRIVACY)
    lists = {lst.attr.get("name"): lst for lst in query.elements("list", NS_PRIVACY)}
    chosen = lists.get(default.attr.get("name")) if default is not None else None
    for name, lst in lists.items():
        if lst is not chosen:
            rec.not_carried.append(f"privacy list {name!r}")
            continue
        for item in lst.elements("item", NS_PRIVACY):
            if item.attr.get("type") == "jid" and item.attr.get("action") == "deny" \
                    and item.attr.get("value"):
                data[item.attr["value"]] = True
            else:
                rec.not_carried.append(f"privacy list {name!r}: an item that is not "
                                       "a blocked JID")
    if chosen is not None:
        meta.setdefault("migrated", "privacy")


_KNOWN_USER_CHILDREN = {
    ("scram-credentials", NS_SCRAM), ("query", NS_ROSTER), ("presence", NS_CLIENT),
    ("vCard", NS_VCARD), ("query", NS_PRIVATE), ("pubsub", NS_PUBSUB_OWNER),
    ("pubsub", NS_PUBSUB), ("archive", NS_PIE_MAM), ("blocklist", NS_BLOCKING),
    ("query", NS_PRIVACY),
}


def user_records(user: Node, host: str, path: str = "") -> UserRecords:
    """The store records of one ``<user>`` element."""
    name = user.attr.get("name")
    if not name:
        raise Xep0227Error(path, user.line, user.column, "<user> without a name")
    rec = UserRecords(host, name)
    try:
        _read_account(user, rec)
        _read_roster(user, rec)
        vcard = user.first("vCard", NS_VCARD)
        if vcard is not None:
            rec.keyval["vcard"] = to_table(vcard)
        _read_private(user, rec)
        _read_pep(user, rec)
        _read_pep_items(user, rec)
        _read_archive(user, rec)
        _read_offline(user, rec)
        _read_blocklist(user, rec)
    except Xep0227Error as err:
        if err.path:
            raise
        raise Xep0227Error(path, err.line, err.column, f"user {rec.jid}: {err.reason}") from None
    for child in user.elements():
        known = (child.name, child.ns) in _KNOWN_USER_CHILDREN or (
            child.name in ("presence", "offline-messages") and child.ns in _PIE_NAMESPACES)
        if not known:
            rec.not_carried.append(f"<{child.name} xmlns='{child.ns or ''}'>")
    return rec


def _include_path(node: Node, path: str) -> str:
    href = node.attr.get("href", "")
    if not href or "/" in href or "\\" in href or "\x00" in href or href in (".", "..") \
            or ":" in href:
        raise Xep0227Error(path, node.line, node.column,
                           f"xi:include href {href!r}: only a file name in the same "
                           "directory is followed")
    return os.path.join(os.path.dirname(path), href)


def _hosts_of(root: Node, path: str, depth: int) -> Iterator[tuple[str, Node, str]]:
    """(host, <user>, file) for every user of a document, following xi:include."""
    if root.ns not in _PIE_NAMESPACES:
        raise Xep0227Error(path, root.line, root.column,
                           f"<{root.name}> in namespace {root.ns!r} is not XEP-0227 data")
    if root.name == "host":
        hosts = [root]
    elif root.name == "server-data":
        hosts = []
        for child in root.elements():
            if child.name == "include" and child.ns == NS_XINCLUDE:
                if depth > 0:
                    raise Xep0227Error(path, child.line, child.column,
                                       "xi:include inside an included file")
                sub = _include_path(child, path)
                yield from _hosts_of(parse_file(sub), sub, depth + 1)
            elif child.name == "host" and child.ns in _PIE_NAMESPACES:
                hosts.append(child)
            else:
                raise Xep0227Error(path, child.line, child.column,
                                   f"unexpected <{child.name}> in <server-data>")
    else:
        raise Xep0227Error(path, root.line, root.column,
                           f"<{root.name}>: expected <server-data> or <host>")
    for host in hosts:
        jid = host.attr.get("jid")
        if not jid:
            raise Xep0227Error(path, host.line, host.column, "<host> without jid")
        for user in host.elements():
            if user.name == "user" and user.ns in _PIE_NAMESPACES:
                yield jid, user, path
            elif user.name == "include" and user.ns == NS_XINCLUDE:
                raise Xep0227Error(path, user.line, user.column,
                                   "xi:include inside <host> is not followed")


def input_files(paths: Iterable[str]) -> list[str]:
    """The files to read: each file named, and the ``*.xml`` files of each directory
    (sorted, not recursive)."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(os.path.join(path, n) for n in sorted(os.listdir(path))
                         if n.endswith(".xml") and not n.startswith("."))
        else:
            files.append(path)
    return files


def read_users(paths: Iterable[str], hosts: Iterable[str] | None = None
               ) -> Iterator[UserRecords]:
    """The users of XEP-0227 files and directories (see :func:`input_files`).

    A directory written by ejabberd holds both its main file and the per-host
    files it includes: a file that another one includes is read once.
    """
    files = input_files(paths)
    wanted = None if hosts is None else set(hosts)
    roots = [(f, parse_file(f)) for f in files]
    included = set()
    for f, root in roots:
        if root.name == "server-data":
            for child in root.elements("include", NS_XINCLUDE):
                included.add(os.path.normpath(_include_path(child, f)))
    for f, root in roots:
        if os.path.normpath(f) in included:
            continue
        for host, user, where in _hosts_of(root, f, 0):
            if wanted is None or host in wanted:
                yield user_records(user, host, where)


@dataclass
class ImportResult:
    users: int = 0
    written: int = 0  # store files written (or that would be, with dry_run)
    report: Report = field(default_factory=Report)


def write_user(dm: DataManager, rec: UserRecords) -> int:
    """Write one user's records: each store present replaces the user's file."""
    n = 0
    for store, value in rec.keyval.items():
        dm.store(rec.user, rec.host, store, value)
        n += 1
    for store, items in rec.lists.items():
        dm.list_store(rec.user, rec.host, store, items)
        n += 1
    return n


def import_paths(dm: DataManager, paths: Iterable[str], hosts: Iterable[str] | None = None,
                 dry_run: bool = False) -> ImportResult:
    """Import XEP-0227 files into ``dm``.  Every file is read and checked
    before anything is written; what has no store is in the result's report."""
    records = list(read_users(paths, hosts))
    result = ImportResult()
    for rec in records:
        result.users += 1
        for note in rec.not_carried:
            result.report.add(rec.jid, note)
        if dry_run:
            result.written += len(rec.keyval) + len(rec.lists)
        else:
            result.written += write_user(dm, rec)
    return result
