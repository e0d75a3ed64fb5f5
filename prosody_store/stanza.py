"""Prosody's stored stanzas as XML: ElementTree elements and XML text.

Archives, offline messages, vCards, private XML and PEP items hold stanzas in
the form of Prosody's ``util.stanza.preserialize``::

    {1: <child>, 2: <child>, ..., "name": "message", "attr": {"xmlns": "jabber:client", ...}}

Children are positional entries in document order: a child element is such a
table again, a text node is a ``str``.  Namespaces are attributes, as Prosody
keeps them: ``xmlns`` is an ordinary attribute, set where the parser saw a
namespace (usually only where it changes); a namespaced attribute is keyed
``"<namespace>\\1<name>"``, except the ``xml:`` ones, which Prosody keys
``"xml:lang"`` etc.  Archive and offline items carry metadata beside the stanza
(``key``, ``when``, ``with``); :func:`split_item` separates it.

* :func:`to_element` / :func:`from_element`: lossless conversion to and from
  :class:`xml.etree.ElementTree.Element`; ``from_element(to_element(t)) == t``.
  The element's tag is the bare name and its attributes are the table's, with
  ``"ns\\1name"`` as ElementTree's ``"{ns}name"`` and ``"xml:lang"`` as
  ``"{http://www.w3.org/XML/1998/namespace}lang"`` (which ElementTree writes as
  ``xml:lang``).  ElementTree keeps text in ``text``/``tail``, so it cannot hold
  two adjacent text nodes or an empty one; :func:`to_element` refuses those
  (Prosody's stream parser never produces them).
* :func:`to_xml`: the text Prosody's ``tostring(util.stanza.deserialize(t))``
  gives: attributes in single quotes, ``' " & < >`` escaped as entities in text
  and attribute values, ``xmlns`` left out where it equals the parent's own
  ``xmlns`` attribute, namespaced attributes as ``xmlns:nsN='...' nsN:name='...'``,
  ``<name/>`` for an element without children, old ``"ns|name"`` attribute keys
  read as ``"ns\\1name"``.  Attributes come in dict order (Prosody's order is
  that of Lua's ``pairs``, which varies from process to process).
* :func:`from_xml`: the table Prosody's parser makes of XML text (one element;
  DOCTYPE, comments and processing instructions refused, as ``util.xml`` does),
  with adjacent text merged, as the stream parser that fills archives merges it.

Malformed tables raise :class:`StanzaError` (a :class:`ValueError`) naming the
path of the offending entry, e.g. ``stanza[2]['attr']['id']``.  The checks are
those of Prosody's ``deserialize``: names are non-empty, without
``< > & ' "`` or space; names and text contain no control characters other
than tab, newline and carriage return (Prosody lets U+0014..U+001F through,
and so do we); everything is a valid Unicode ``str``.  Beyond Prosody, which
silently skips them, keys other than ``name``, ``attr`` and 1..n and children
that are neither tables nor strings are errors too.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Callable
from xml.parsers import expat

from prosody_store.errors import Error

__all__ = [
    "MAX_DEPTH",
    "StanzaError",
    "XML_NS",
    "from_element",
    "from_xml",
    "split_item",
    "to_element",
    "to_xml",
]

XML_NS = "http://www.w3.org/XML/1998/namespace"

MAX_DEPTH = 200
"""Deepest nesting accepted.  Prosody cannot store tables nested deeper than 127."""

_SEP = "\x01"
_BAD_NAME_CHARS = re.compile(r"[<>& '\"]")
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x13\ud800-\udfff]")
_BAD_ATTR_NAME = re.compile(r"[\x00\x02-\x08\x0b\x0c\x0e-\x13\ud800-\udfff]")
_OLD_NS_ATTR = re.compile(r"([^|]+)\|(.+)", re.DOTALL)
_NEEDS_ESCAPE = re.compile(r"[&<>'\"]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_:.\-]+\Z")
"""Tag and attribute names :func:`to_xml` writes without further checks."""
_PLAIN_MAX_DEPTH = 60


class StanzaError(Error, ValueError):
    """A table that is not a stanza, or XML that is not one.  ``path`` says where."""

    def __init__(self, path: list[Any], msg: str) -> None:
        self.path = list(path)
        self.msg = msg
        super().__init__(f"{_path_text(path)}: {msg}")


def _path_text(path: list[Any]) -> str:
    return "stanza" + "".join(f"[{k!r}]" for k in path)


# ---------------------------------------------------------------------------
# Checking a table


def _check_name(name: Any, kind: str, path: list[Any]) -> str:
    if name.__class__ is not str:
        raise StanzaError(path, f"invalid {kind} name: expected a str, got {type(name).__name__}")
    if not name:
        raise StanzaError(path, f"invalid {kind} name: empty")
    if _BAD_NAME_CHARS.search(name):
        raise StanzaError(path, f"invalid {kind} name {name!r}: contains < > & ' \" or a space")
    bad = _BAD_ATTR_NAME if kind == "attribute" else _BAD_TEXT
    if bad.search(name):
        raise StanzaError(path, f"invalid {kind} name {name!r}: contains control characters")
    return name


def _check_text(text: Any, kind: str, path: list[Any]) -> str:
    if text.__class__ is not str:
        what = "invalid UTF-8" if isinstance(text, (bytes, bytearray)) else type(text).__name__
        raise StanzaError(path, f"invalid {kind}: expected a str, got {what}")
    if _BAD_TEXT.search(text):
        raise StanzaError(path, f"invalid {kind} {text!r}: contains control characters")
    return text


def _parts(t: Any, path: list[Any]) -> tuple[str, dict[str, str], list[str | dict[Any, Any]]]:
    """Name, attributes and children of a stanza table, checked."""
    if not isinstance(t, dict):
        raise StanzaError(path, f"expected a stanza table (dict with name and attr), "
                          f"got {type(t).__name__}")
    if "name" not in t:
        raise StanzaError(path, "stanza table without 'name'")
    name = _check_name(t["name"], "tag", [*path, "name"])
    attr = t.get("attr")
    if not isinstance(attr, dict):
        raise StanzaError([*path, "attr"], "expected a table of attributes (dict), got "
                          f"{type(attr).__name__}")
    for k, v in attr.items():
        _check_name(k, "attribute", [*path, "attr", k])
        _check_text(v, "attribute value", [*path, "attr", k])
    n = len(t) - 2
    for k in t:
        if not (k == "name" or k == "attr" or (k.__class__ is int and 1 <= k <= n)):
            raise StanzaError([*path, k], "unexpected key (a stanza has name, attr and "
                              "children 1..n; see split_item for archive metadata)")
    children: list[str | dict[Any, Any]] = []
    for i in range(1, n + 1):
        child = t[i]
        if child.__class__ is not str and not isinstance(child, dict):
            raise StanzaError([*path, i], f"a child must be a stanza table or a str, "
                              f"got {type(child).__name__}")
        children.append(child)
    return name, attr, children


def split_item(item: dict[Any, Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """An archive/offline item as (stanza table, metadata such as key/when/with)."""
    if not isinstance(item, dict):
        raise StanzaError([], f"expected a dict, got {type(item).__name__}")
    stanza: dict[Any, Any] = {}
    extra: dict[Any, Any] = {}
    for k, v in item.items():
        if k == "name" or k == "attr" or (k.__class__ is int and k >= 1):
            stanza[k] = v
        else:
            extra[k] = v
    return stanza, extra


# ---------------------------------------------------------------------------
# ElementTree


def _et_attr_name(k: str, path: list[Any]) -> str:
    if _SEP in k:
        ns, local = k.split(_SEP, 1)
        if ns == XML_NS:
            raise StanzaError(path, f"write this attribute as 'xml:{local}' (as Prosody's "
                              "parser does); the other spelling cannot be kept apart from it")
        if "{" in ns or "}" in ns:
            raise StanzaError(path, "a namespace with { or } cannot be an ElementTree name")
        return "{%s}%s" % (ns, local)
    if "{" in k or "}" in k:
        raise StanzaError(path, "an attribute name with { or } cannot be an ElementTree name")
    if k.startswith("xml:"):
        return "{%s}%s" % (XML_NS, k[4:])
    return k


def _table_attr_name(k: str) -> str:
    if k.startswith("{"):
        ns, local = k[1:].split("}", 1)
        if ns == XML_NS:
            return "xml:" + local
        return ns + _SEP + local
    return k


def to_element(table: dict[Any, Any]) -> ET.Element:
    """The stanza table as an :class:`~xml.etree.ElementTree.Element` (see the module docs)."""
    return _to_element(table, [], 0)


def _to_element(t: Any, path: list[Any], depth: int) -> ET.Element:
    if depth > MAX_DEPTH:
        raise StanzaError(path, f"nested deeper than {MAX_DEPTH}")
    name, attr, children = _parts(t, path)
    el = ET.Element(name, {_et_attr_name(k, [*path, "attr", k]): v for k, v in attr.items()})
    last: ET.Element | None = None
    previous_text = False
    for i, child in enumerate(children, 1):
        if child.__class__ is str:
            _check_text(child, "text", [*path, i])
            if child == "" or previous_text:
                raise StanzaError([*path, i], "an empty text node, or two adjacent ones, "
                                  "cannot be held by ElementTree")
            if last is None:
                el.text = child
            else:
                last.tail = child
            previous_text = True
        else:
            last = _to_element(child, [*path, i], depth + 1)
            el.append(last)
            previous_text = False
    return el


def from_element(el: ET.Element) -> dict[Any, Any]:
    """The stanza table of an element; the inverse of :func:`to_element`.

    A tag in ElementTree's ``{namespace}name`` form (from ``ET.fromstring``) is
    the name with an ``xmlns`` attribute where the namespace differs from the
    parent's.
    """
    return _from_element(el, None, [], 0)


def _from_element(el: ET.Element, parent_ns: str | None, path: list[Any],
                  depth: int) -> dict[Any, Any]:
    if depth > MAX_DEPTH:
        raise StanzaError(path, f"nested deeper than {MAX_DEPTH}")
    if not isinstance(el.tag, str):
        raise StanzaError(path, "comments and processing instructions are not stanza content")
    attr = {_table_attr_name(k): v for k, v in el.attrib.items()}
    name = el.tag
    if name.startswith("{"):
        ns, name = name[1:].split("}", 1)
        if attr.get("xmlns", ns) != ns:
            raise StanzaError([*path, "attr", "xmlns"], "differs from the tag's namespace")
        if ns != parent_ns and "xmlns" not in attr:
            attr = {"xmlns": ns, **attr}
    my_ns = attr.get("xmlns", parent_ns)
    table: dict[Any, Any] = {}
    n = 0
    if el.text:
        n += 1
        table[n] = el.text
    for child in el:
        n += 1
        table[n] = _from_element(child, my_ns, [*path, n], depth + 1)
        if child.tail:
            n += 1
            table[n] = child.tail
    table["name"] = name
    table["attr"] = attr
    _parts(table, path)  # the same checks as on the way in
    return table


# ---------------------------------------------------------------------------
# XML text


def _escape(text: str) -> str:
    """``' " & < >`` as entities (chained replaces: faster than str.translate here)."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def to_xml(table: dict[Any, Any]) -> str:
    """The stanza as Prosody's ``tostring(util.stanza.deserialize(table))`` writes it.

    Like Prosody, this writes a carriage return in text raw, so an XML parser
    reads ``\\r\\n`` back as ``\\n`` (line-end normalization).
    """
    out: list[str] = []
    if _write_plain(table, out, None, 0):
        return "".join(out)
    out = []
    _write(table, out, None, [], 0)
    return "".join(out)


def _write_plain(t: Any, out: list[str], parent_ns: str | None, depth: int) -> bool:
    """:func:`_write` for plain stanzas (the usual case), fast, without building paths.

    Plain: dicts whose keys are exactly ``name``, ``attr`` and 1..n, names
    matching ``_PLAIN_NAME`` (so no namespaced or ``|`` attributes), text
    without control characters, nested at most ``_PLAIN_MAX_DEPTH`` deep.
    Returns False, with ``out`` half written, for anything else: :func:`_write`
    then writes it or says what is wrong with it.
    """
    if t.__class__ is not dict or depth > _PLAIN_MAX_DEPTH:
        return False
    name = t.get("name")
    attr = t.get("attr")
    if name.__class__ is not str or attr.__class__ is not dict or not _PLAIN_NAME.match(name):
        return False
    n = len(t) - 2
    if n and not _plain_child_keys(t):
        return False
    out.append("<" + name)
    for k, v in attr.items():
        if (k.__class__ is not str or v.__class__ is not str or not _PLAIN_NAME.match(k)
                or _BAD_TEXT.search(v)):
            return False
        if not (k == "xmlns" and v == parent_ns):
            out.append(f" {k}='{_escape(v)}'")
    if n == 0:
        out.append("/>")
        return True
    out.append(">")
    ns = attr.get("xmlns")
    for i in range(1, n + 1):
        child = t.get(i)
        if child.__class__ is str:
            if _BAD_TEXT.search(child):
                return False
            out.append(_escape(child))
        elif not _write_plain(child, out, ns, depth + 1):
            return False
    out.append(f"</{name}>")
    return True


def _plain_child_keys(t: dict[Any, Any]) -> bool:
    """Whether the keys other than name and attr are all ints (not True or 1.0)."""
    for k in t:
        if k.__class__ is not int and k != "name" and k != "attr":
            return False
    return True


def _prosody_attrs(attr: dict[str, str], path: list[Any]) -> dict[str, str]:
    """Attributes as ``deserialize`` makes them: ``"ns|name"`` becomes ``"ns\\1name"``."""
    result = {}
    for k, v in attr.items():
        if "|" in k and _SEP not in k:
            m = _OLD_NS_ATTR.fullmatch(k)
            if m is None:
                raise StanzaError([*path, "attr", k], "'|' attribute without a namespace "
                                  "(Prosody fails on it)")
            k = m.group(1) + _SEP + m.group(2)
        result[k] = v
    return result


def _write(t: Any, out: list[str], parent_ns: str | None, path: list[Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise StanzaError(path, f"nested deeper than {MAX_DEPTH}")
    name, attr, children = _parts(t, path)
    attr = _prosody_attrs(attr, path)
    out.append("<" + name)
    nsid = 0
    for k, v in attr.items():
        if _SEP in k:
            ns, local = k.split(_SEP, 1)
            nsid += 1
            out.append(f" xmlns:ns{nsid}='{_escape(ns)}' ns{nsid}:{local}='{_escape(v)}'")
        elif not (k == "xmlns" and v == parent_ns):
            out.append(f" {k}='{_escape(v)}'")
    if not children:
        out.append("/>")
        return
    out.append(">")
    for i, child in enumerate(children, 1):
        if child.__class__ is str:
            out.append(_escape(_check_text(child, "text", [*path, i])))
        else:
            _write(child, out, attr.get("xmlns"), [*path, i], depth + 1)
    out.append(f"</{name}>")


class _Builder:
    """expat callbacks building stanza tables the way ``util.xml.parse`` does."""

    def __init__(self, all_xmlns: bool) -> None:
        self.all_xmlns = all_xmlns
        self.stack: list[tuple[dict[Any, Any], str]] = []  # (table, namespace)
        self.text: list[str] = []
        self.root: dict[Any, Any] | None = None

    def _flush_text(self) -> None:
        if self.text and self.stack:
            table = self.stack[-1][0]
            table[len(table) - 1] = "".join(self.text)
        self.text = []

    def start(self, tag: str, attrs: list[str]) -> None:
        self._flush_text()
        ns, name = tag.split(_SEP, 1) if _SEP in tag else ("", tag)
        parent_ns = self.stack[-1][1] if self.stack else ""
        attr: dict[str, str] = {}
        if (ns != "") if self.all_xmlns else (ns != parent_ns):
            attr["xmlns"] = ns
        for i in range(0, len(attrs), 2):
            k = attrs[i]
            if _SEP in k:
                attr_ns, local = k.split(_SEP, 1)
                if attr_ns == XML_NS:
                    k = "xml:" + local
            attr[k] = attrs[i + 1]
        if len(self.stack) > MAX_DEPTH:
            raise StanzaError([], f"nested deeper than {MAX_DEPTH}")
        table = {"name": name, "attr": attr}
        if self.stack:
            parent = self.stack[-1][0]
            parent[len(parent) - 1] = table
        else:
            self.root = table
        self.stack.append((table, ns))

    def end(self, tag: str) -> None:
        self._flush_text()
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.stack:
            self.text.append(text)


def _refuse(what: str) -> Callable[..., None]:
    def handler(*args: Any) -> None:
        raise StanzaError([], f"{what} is not allowed in a stanza")
    return handler


def from_xml(text: str | bytes, *, xmlns: str = "minimal") -> dict[Any, Any]:
    """The stanza table of one XML element, as Prosody's parser builds it.

    ``xmlns="all"`` gives every element in a namespace an ``xmlns`` attribute,
    as ``util.xml.parse`` does; ``xmlns="minimal"`` (the default) only where the
    namespace differs from the parent's, which is how stored stanzas usually
    look and makes ``from_xml(to_xml(t)) == t`` for them.  Attributes in the
    ``xml:`` namespace are keyed ``"xml:<name>"``, others ``"<ns>\\1<name>"``.
    """
    if xmlns not in ("minimal", "all"):
        raise ValueError("xmlns must be 'minimal' or 'all'")
    builder = _Builder(xmlns == "all")
    parser = expat.ParserCreate(namespace_separator=_SEP)
    parser.ordered_attributes = True
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse("a DOCTYPE")
    parser.CommentHandler = _refuse("a comment")
    parser.ProcessingInstructionHandler = _refuse("a processing instruction")
    try:
        parser.Parse(text, True)
    except expat.ExpatError as err:
        raise StanzaError([], f"not well-formed XML: {expat.errors.messages[err.code]} "
                          f"(line {err.lineno}, column {err.offset + 1})") from None
    if builder.root is None:
        raise StanzaError([], "no element")
    _parts(builder.root, [])
    return builder.root
