"""prosody_store.stanza: corpus stanzas round trip; XML as Prosody's util.stanza writes it."""
from __future__ import annotations

import json as stdjson
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.serialization import iter_list, loads
from prosody_store.stanza import (
    XML_NS,
    StanzaError,
    from_element,
    from_xml,
    split_item,
    to_element,
    to_xml,
)
from tests.tagged import canon, canon_tagged, tagged_json

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
CORPUS = Path(__file__).parent.parent / "fixtures" / "prosody-corpus"
STORES = ("archive", "offline", "vcard", "private", "pep")


def _is_stanza(v: Any) -> bool:
    return isinstance(v, dict) and "name" in v and "attr" in v


def _find_stanzas(v: Any) -> Iterator[dict]:
    if _is_stanza(v):
        yield split_item(v)[0]
    elif isinstance(v, dict):
        for x in v.values():
            yield from _find_stanzas(x)
    elif isinstance(v, list):
        for x in v:
            yield from _find_stanzas(x)


def _corpus_stanzas() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(CORPUS.glob("*/*/*/*")):
        if path.parent.name not in STORES or path.suffix not in (".dat", ".list"):
            continue
        data = path.read_bytes()
        values = list(iter_list(data)) if path.suffix == ".list" else [loads(data)]
        for i, stanza in enumerate(s for v in values for s in _find_stanzas(v)):
            found.append((f"{path.relative_to(CORPUS)}#{i}", stanza))
    return found


CORPUS_STANZAS = _corpus_stanzas()


def test_corpus_has_stanzas() -> None:
    assert len(CORPUS_STANZAS) >= 20


@pytest.mark.parametrize("where, stanza", CORPUS_STANZAS, ids=[w for w, _ in CORPUS_STANZAS])
def test_corpus_round_trips(where: str, stanza: dict) -> None:
    el = to_element(stanza)
    assert from_element(el) == stanza
    if "\r" in to_xml(stanza):
        return  # written raw (Prosody does so too); XML parsers read \r\n back as \n
    assert from_element(ET.fromstring(ET.tostring(el))) == stanza
    assert from_xml(to_xml(stanza)) == stanza


def _canonical_xml(text: str) -> str:
    """Prosody's XML with the attributes of each tag sorted (their order is Lua's pairs order)."""
    def tag(m: re.Match) -> str:
        units = re.findall(r" xmlns:ns\d+='[^']*' ns\d+:[^=]*='[^']*'| [^=' ]+='[^']*'", m.group(2))
        units = [re.sub(r" xmlns:ns\d+='([^']*)' ns\d+:([^=]*)='([^']*)'", r" {\1}\2='\3'", u)
                 for u in units]
        return "<" + m.group(1) + "".join(sorted(units)) + m.group(3) + ">"
    return re.sub(r"<([^\s/>]+)((?: [^=' ]+='[^']*')*)(/?)>", tag, text)


@pytest.mark.interop
@pytest.mark.parametrize("where, stanza", CORPUS_STANZAS, ids=[w for w, _ in CORPUS_STANZAS])
def test_corpus_to_xml_matches_prosody(oracle, where: str, stanza: dict) -> None:
    theirs = oracle.call("json_oracle.stanza_tostring", tagged_json(stanza)).decode("utf-8")
    ours = to_xml(stanza)
    assert _canonical_xml(ours) == _canonical_xml(theirs)
    assert len(ours) == len(theirs)


# ---------------------------------------------------------------------------
# Hand-written cases


def test_to_xml_details() -> None:
    t = {1: {1: "a<b>&'\"\r\n", "name": "body", "attr": {"xmlns": "jabber:client"}},
         2: {"name": "x", "attr": {"xmlns": "urn:x", "urn:y\x01k": "v'", "xml:lang": "en"}},
         3: {1: {"name": "y", "attr": {"xmlns": "urn:x"}}, "name": "w", "attr": {}},
         4: "", "name": "message", "attr": {"xmlns": "jabber:client", "a|b": "1"}}
    assert to_xml(t) == (
        "<message xmlns='jabber:client' xmlns:ns1='a' ns1:b='1'>"
        "<body>a&lt;b&gt;&amp;&apos;&quot;\r\n</body>"
        "<x xmlns='urn:x' xmlns:ns1='urn:y' ns1:k='v&apos;' xml:lang='en'/>"
        "<w><y xmlns='urn:x'/></w></message>")


def test_from_xml_modes() -> None:
    text = ("<a xmlns='A' xmlns:p='urn:p' p:q='1' xml:lang='en'>x &amp; y<b/>"
            "<c xmlns='C'><d/></c><e xmlns=''/>tail</a>")
    assert from_xml(text) == {
        1: "x & y", 2: {"name": "b", "attr": {}},
        3: {1: {"name": "d", "attr": {}}, "name": "c", "attr": {"xmlns": "C"}},
        4: {"name": "e", "attr": {"xmlns": ""}}, 5: "tail",
        "name": "a", "attr": {"xmlns": "A", "urn:p\x01q": "1", "xml:lang": "en"}}
    everywhere = from_xml(text, xmlns="all")
    assert everywhere[2]["attr"] == {"xmlns": "A"}
    assert everywhere[3][1]["attr"] == {"xmlns": "C"}
    assert everywhere[4]["attr"] == {}


@pytest.mark.parametrize("text", [
    "<a>", "<a></b>", "", "<a/><b/>", "<!DOCTYPE a><a/>", "<a><!-- c --></a>", "<a><?pi x?></a>",
])
def test_from_xml_rejects(text: str) -> None:
    with pytest.raises(StanzaError):
        from_xml(text)


def test_element_mapping() -> None:
    t = {1: "hi", 2: {"name": "b", "attr": {}}, 3: "tail", "name": "a",
         "attr": {"xml:lang": "de", "urn:n\x01k": "v", "xmlns": "urn:a"}}
    el = to_element(t)
    assert el.tag == "a" and el.text == "hi" and el[0].tail == "tail"
    assert el.attrib == {f"{{{XML_NS}}}lang": "de", "{urn:n}k": "v", "xmlns": "urn:a"}
    assert from_element(el) == t
    parsed = ET.fromstring("<x:a xmlns:x='urn:a' xmlns='urn:b'><b/><x:c/></x:a>")
    assert from_element(parsed) == {
        1: {"name": "b", "attr": {"xmlns": "urn:b"}}, 2: {"name": "c", "attr": {}},
        "name": "a", "attr": {"xmlns": "urn:a"}}


@pytest.mark.parametrize("table, path", [
    ([1, 2], "stanza"),
    ({"attr": {}}, "stanza"),
    ({"name": "", "attr": {}}, "stanza['name']"),
    ({"name": "a b", "attr": {}}, "stanza['name']"),
    ({"name": "a", "attr": []}, "stanza['attr']"),
    ({"name": "a"}, "stanza['attr']"),
    ({"name": "a", "attr": {"id": 5}}, "stanza['attr']['id']"),
    ({"name": "a", "attr": {"id": "\x01"}}, "stanza['attr']['id']"),
    ({"name": "a", "attr": {}, 1: b"\xff"}, "stanza[1]"),
    ({"name": "a", "attr": {}, 2: "x"}, "stanza[2]"),
    ({"name": "a", "attr": {}, 1: 5}, "stanza[1]"),
    ({"name": "a", "attr": {}, 1: {"name": "b", "attr": {}, "when": 1}}, "stanza[1]['when']"),
    ({"name": "a", "attr": {}, 1: {"name": "b", "attr": {}, 1: "\x00"}}, "stanza[1][1]"),
])
def test_malformed_tables(table: Any, path: str) -> None:
    for convert in (to_element, to_xml):
        with pytest.raises(StanzaError) as info:
            convert(table)
        assert str(info.value).startswith(path + ":")


def test_element_refuses_what_it_cannot_hold() -> None:
    for t in ({"name": "a", "attr": {}, 1: "x", 2: "y"}, {"name": "a", "attr": {}, 1: ""},
              {"name": "a", "attr": {XML_NS + "\x01lang": "en"}}):
        with pytest.raises(StanzaError):
            to_element(t)
    # Prosody writes them all the same
    assert to_xml({"name": "a", "attr": {}, 1: "x", 2: "y"}) == "<a>xy</a>"


def test_split_item() -> None:
    item = {1: "x", "name": "message", "attr": {}, "key": "k", "when": 1.5, "with": "a@b"}
    assert split_item(item) == ({1: "x", "name": "message", "attr": {}},
                                {"key": "k", "when": 1.5, "with": "a@b"})


# ---------------------------------------------------------------------------
# Generated stanzas against Prosody

NAMES = st.sampled_from(["message", "body", "x", "query", "item", "a-b", "n.1", "é"])
ATTR_NAMES = st.sampled_from(["id", "type", "to", "from", "xmlns", "xml:lang", "urn:n\x01k",
                              "urn:m\x01k", "jabber:x|y"])
NAMESPACES = st.sampled_from(["jabber:client", "urn:x", "urn:y", ""])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=9).filter(
    lambda c: c in "\t\n\r" or ord(c) >= 0x20), min_size=1, max_size=8)


@st.composite
def stanzas(draw, depth: int = 0) -> dict:
    attr = draw(st.dictionaries(ATTR_NAMES, TEXT | st.just(""), max_size=3))
    if "xmlns" in attr:
        attr["xmlns"] = draw(NAMESPACES)
    t: dict = {}
    n_children = draw(st.integers(0, 3 if depth < 3 else 0))
    previous_text = False
    for i in range(1, n_children + 1):
        if not previous_text and draw(st.booleans()):
            t[i] = draw(TEXT)
            previous_text = True
        else:
            t[i] = draw(stanzas(depth + 1))
            previous_text = False
    t["name"] = draw(NAMES)
    t["attr"] = attr
    return t


@SETTINGS
@given(stanzas())
def test_generated_element_round_trip(stanza: dict) -> None:
    assert from_element(to_element(stanza)) == stanza


@pytest.mark.interop
@SETTINGS
@given(stanzas())
def test_generated_to_xml_matches_prosody(oracle, stanza: dict) -> None:
    theirs = oracle.call("json_oracle.stanza_tostring", tagged_json(stanza)).decode("utf-8")
    assert _canonical_xml(to_xml(stanza)) == _canonical_xml(theirs)


@pytest.mark.interop
@SETTINGS
@given(stanzas())
def test_generated_from_xml_matches_util_xml(oracle, stanza: dict) -> None:
    text = to_xml(stanza)
    theirs = canon_tagged(stdjson.loads(oracle.call("json_oracle.xml_parse", text)))
    assert canon(from_xml(text, xmlns="all")) == theirs
