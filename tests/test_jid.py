"""Stringprep profiles and JIDs (prosody_store.jid), against known vectors and real Prosody.

The oracle is Debian 12's Prosody 0.12.3: ``util.encodings`` built against ICU 72
(Unicode 15.0), called through tests/lua/auth_oracle.lua.  A ``nil`` from
Prosody is an error; ours raises JIDError.

Unicode version filter: Prosody's bidi check uses ICU 72's Unicode 15.0 bidi
classes.  prosody_store.jid uses Python's ``unicodedata`` plus a small table for
the Unicode 15.0 characters that Python 3.11 (Unicode 14.0) does not know, so on
Python 3.11 and 3.12 nothing is filtered.  On a Python whose ``unicodedata`` is
newer than 15.0, code points assigned after Unicode 15.0 would get bidi classes
that ICU 72 does not know; there (and only there) the generated strings keep to
code points that are assigned in Unicode 3.2 or unassigned in Python's database
(see ``_comparable``).
"""
from __future__ import annotations

import json
import random
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosody_store.jid import (
    JIDError,
    join_jid,
    nameprep,
    nodeprep,
    prep_jid,
    prepped_split,
    resourceprep,
    saslprep,
    split_jid,
)

PROFILES = {"nodeprep": nodeprep, "nameprep": nameprep,
            "resourceprep": resourceprep, "saslprep": saslprep}

_PY_UNICODE_NEWER_THAN_ICU = tuple(map(int, unicodedata.unidata_version.split("."))) > (15, 0, 0)


def _comparable(ch: str) -> bool:
    """False for code points whose bidi class Python and ICU 72 disagree on (see module doc)."""
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return False
    if not _PY_UNICODE_NEWER_THAN_ICU:
        return True
    return (unicodedata.ucd_3_2_0.category(ch) != "Cn"
            or unicodedata.category(ch) == "Cn")


def ours(func, s, *args):
    """Our result, with None for an error (like Prosody's nil)."""
    try:
        return func(s, *args)
    except JIDError:
        return None


# --- oracle helpers -------------------------------------------------------

def _lines(strings) -> str:
    return "\n".join(s.encode("utf-8").hex() or "=" for s in strings)


def _unhex(line: str):
    return None if line == "-" else bytes.fromhex(line).decode("utf-8")


def prosody_prep(oracle, profile: str, strings: list[str], strict: bool = False) -> list:
    """util.encodings.stringprep.<profile> of each string (None for nil)."""
    head = profile + (" strict" if strict else "")
    out = oracle.call("auth_oracle.prep", head + "\n" + _lines(strings)).decode()
    return [_unhex(x) for x in out.split("\n")]


def prosody_jid_prep(oracle, jids: list[str]) -> list:
    out = oracle.call("auth_oracle.jid_prep", _lines(jids)).decode()
    return [_unhex(x) for x in out.split("\n")]


def prosody_jid_split(oracle, jids: list[str]) -> list:
    out = oracle.call("auth_oracle.jid_split", _lines(jids)).decode()
    result = []
    for line in out.split("\n"):
        parts = [None if p is None else bytes.fromhex(p).decode() for p in json.loads(line)]
        result.append(None if parts[1] is None else tuple(parts))
    return result


def assert_same(oracle, profile: str, strings: list[str], strict: bool = False) -> None:
    """Our profile agrees with Prosody's on every string."""
    theirs = prosody_prep(oracle, profile, strings, strict)
    func = PROFILES[profile]
    diffs = [(s, t, u) for s, t in zip(strings, theirs)
             for u in [ours(func, s, strict)] if u != t]
    assert not diffs[:20], [tuple(map(ascii, d)) for d in diffs[:20]]


# --- known vectors ----------------------------------------------------------

@pytest.mark.parametrize("given_, expected", [
    ("I\u00adX", "IX"),          # RFC 4013 section 3, soft hyphen mapped to nothing
    ("user", "user"),
    ("USER", "USER"),            # case preserved
    ("\u00aa", "a"),             # NFKC
    ("\u2168", "IX"),            # NFKC
    ("a\u00a0b", "a b"),         # non-ASCII space mapped to SPACE
    ("p\"a\\ss w\u00f6rd'", "p\"a\\ss w\u00f6rd'"),
    ("", ""),
])
def test_saslprep_vectors(given_, expected):
    assert saslprep(given_) == expected


@pytest.mark.parametrize("bad", ["\u0007", "\u0627\u0031", "a\ue000", "a\ufffe", "\U000e0001x"])
def test_saslprep_rejects(bad):
    """RFC 4013 section 3: prohibited character; bidi rule; private use; non-character; tag."""
    with pytest.raises(JIDError):
        saslprep(bad)


def test_jiderror_is_valueerror():
    assert issubclass(JIDError, ValueError)


@pytest.mark.parametrize("given_, expected", [
    ("Bob", "bob"),
    ("ＢＯＢ", "bob"),            # fullwidth, NFKC + case fold
    ("J\u00dcRGEN", "j\u00fcrgen"),
    ("stra\u00dfe", "strasse"),   # B.2 folds sharp s
    ("user.with+odd", "user.with+odd"),
    ("\u0130", "i\u0307"),
    ("\u10a0", "\u10a0"),         # Georgian capital: no folding in Unicode 3.2's table B.2
    ("\u0221", "\u0221"),         # unassigned in Unicode 3.2: allowed, unchanged
])
def test_nodeprep_vectors(given_, expected):
    assert nodeprep(given_) == expected


@pytest.mark.parametrize("bad", ["a@b", "a/b", "a b", "a:b", "a<b", "a'b", "a\"b", "a&b", "\uff20",
                                 "\u0627a"])
def test_nodeprep_rejects(bad):
    with pytest.raises(JIDError):
        nodeprep(bad)


def test_strict_rejects_unassigned():
    assert nodeprep("\u0221") == "\u0221"
    with pytest.raises(JIDError):
        nodeprep("\u0221", strict=True)
    assert nodeprep("bob", strict=True) == "bob"


def test_nameprep_keeps_idna_forms_apart():
    assert nameprep("M\u00fcnchen.Example") == "m\u00fcnchen.example"
    assert nameprep("XN--MNCHEN-3YA.example") == "xn--mnchen-3ya.example"


def test_resourceprep_keeps_case():
    assert resourceprep("Laptop Home") == "Laptop Home"
    assert resourceprep("a@b/c") == "a@b/c"


def test_length_limits():
    """Prosody gives up at 1024 UTF-8 bytes, in and out."""
    assert nodeprep("a" * 1023) == "a" * 1023
    with pytest.raises(JIDError):
        nodeprep("a" * 1024)
    with pytest.raises(JIDError):
        nodeprep("\u00e9" * 512)          # 1024 bytes
    with pytest.raises(JIDError):
        nodeprep("\u00df" * 512)          # 1024 bytes in
    with pytest.raises(JIDError):
        nodeprep("\ufb01" * 342)          # 1026 bytes in
    with pytest.raises(JIDError):
        nodeprep("\ufb01" * 512)          # 1536 bytes out


def test_bytes_and_bad_input():
    assert nodeprep("Bob".encode()) == "bob"
    with pytest.raises(JIDError):
        nodeprep(b"\xff")
    with pytest.raises(JIDError):
        nodeprep("a\ud800")
    with pytest.raises(TypeError):
        nodeprep(42)


@pytest.mark.parametrize("jid, parts", [
    ("bob@example.com/res", ("bob", "example.com", "res")),
    ("bob@example.com", ("bob", "example.com", None)),
    ("example.com/res", (None, "example.com", "res")),
    ("example.com", (None, "example.com", None)),
    ("a/b@c", (None, "a", "b@c")),
    ("a@b/c/d@e", ("a", "b", "c/d@e")),
])
def test_split(jid, parts):
    assert split_jid(jid) == parts


@pytest.mark.parametrize("jid", ["", "@example.com", "a@", "a@/r", "a@b@c", "example.com/", "a@b/"])
def test_split_rejects(jid):
    with pytest.raises(JIDError):
        split_jid(jid)


@pytest.mark.parametrize("jid, expected", [
    ("Bob@Example.COM", "bob@example.com"),
    ("Bob@Example.COM/Res", "bob@example.com/Res"),
    ("bob@example.com.", "bob@example.com"),
    ("J\u00fcrgen@M\u00fcnchen.example", "j\u00fcrgen@m\u00fcnchen.example"),
    ("j\u00fcrgen@xn--mnchen-3ya.example", "j\u00fcrgen@xn--mnchen-3ya.example"),
    ("..", "."),
])
def test_prep_jid(jid, expected):
    assert prep_jid(jid) == expected


@pytest.mark.parametrize("jid", [".", "a@.", "a b@example.com", "bob@exa\ue000mple.com"])
def test_prep_jid_rejects(jid):
    with pytest.raises(JIDError):
        prep_jid(jid)


def test_join_and_prepped_split():
    assert prepped_split("Bob@Example.COM/R") == ("bob", "example.com", "R")
    assert join_jid("bob", "example.com") == "bob@example.com"
    assert join_jid(None, "example.com", "r") == "example.com/r"


# --- against real Prosody -------------------------------------------------

_ALPHABET_RANGES = [
    (0x20, 0x7E), (0xA0, 0x17F), (0x300, 0x36F), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
    (0x590, 0x8FF), (0xFB1D, 0xFDFF), (0xFE70, 0xFEFF), (0x1100, 0x11FF), (0xAC00, 0xAC30),
    (0x2000, 0x206F), (0xFE00, 0xFE0F), (0x3000, 0x3000), (0xFF01, 0xFF5E), (0xFB00, 0xFB06),
    (0x2F800, 0x2FA1D), (0x1E900, 0x1E95F), (0x10800, 0x10FFF), (0x1E800, 0x1EFFF),
    (0x370, 0x3FF), (0x10A0, 0x10FF), (0x13A0, 0x13FF), (0x1E00, 0x1EFF), (0x2160, 0x2188),
    (0x660, 0x669), (0x1F000, 0x1FAFF), (0xE0000, 0xE007F), (0xFFF0, 0xFFFF),
    (0xD7B0, 0xD7FF), (0x1D400, 0x1D7FF), (0x11F00, 0x11F5F), (0x0, 0x10FFFF),
]


def _char_strategy():
    ranges = st.sampled_from(_ALPHABET_RANGES).flatmap(
        lambda r: st.integers(min_value=r[0], max_value=r[1]))
    return ranges.map(chr).filter(_comparable)


TEXT = st.lists(_char_strategy(), max_size=12).map("".join)
HSETTINGS = settings(max_examples=200, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.filter_too_much])


@pytest.mark.interop
@pytest.mark.parametrize("profile", sorted(PROFILES))
@HSETTINGS
@given(s=TEXT, strict=st.booleans())
def test_profile_matches_prosody(oracle, profile, s, strict):
    assert_same(oracle, profile, [s], strict)


@pytest.mark.interop
@HSETTINGS
@given(s=st.text(st.characters(blacklist_categories=("Cs",)).filter(_comparable), max_size=20))
def test_any_text_matches_prosody(oracle, s):
    for profile in PROFILES:
        assert_same(oracle, profile, [s])


def _random_strings(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)

    def char() -> str:
        while True:
            lo, hi = rng.choice(_ALPHABET_RANGES)
            ch = chr(rng.randint(lo, hi))
            if _comparable(ch):
                return ch

    strings = ["".join(char() for _ in range(rng.randint(1, 10))) for _ in range(count)]
    strings += ["".join(char() for _ in range(rng.randint(200, 700))) for _ in range(count // 100)]
    return strings


@pytest.mark.interop
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("strict", [False, True])
def test_random_batch_matches_prosody(oracle, profile, strict):
    """10,000 random mixed-script strings per profile (and 100 long ones), in one oracle call."""
    assert_same(oracle, profile, _random_strings(2024, 10000), strict)


def _code_points() -> list[str]:
    """Every code point of planes 0, 1 and 14, the CJK compatibility supplement, a sample of the rest."""
    codes = list(range(0x20000))
    codes += range(0x2F800, 0x2FA20)
    codes += range(0xE0000, 0xE1000)
    codes += range(0x20000, 0x110000, 97)
    codes += [0x2FFFE, 0x2FFFF, 0x10FFFE, 0x10FFFF]
    return [chr(c) for c in sorted(set(codes)) if _comparable(chr(c))]


@pytest.mark.interop
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_code_point_matches_prosody(oracle, profile):
    """Single code points: mapping, normalisation, prohibition, unassigned.

    All of planes 0 and 1 for nodeprep and saslprep (what logins use); every
    fifth code point for the other two, to keep the run short.  (A run over
    all 1,112,064 scalar values, every profile, strict or not, found no
    difference.)
    """
    cps = _code_points()
    if profile not in ("nodeprep", "saslprep"):
        cps = cps[::5]
    for i in range(0, len(cps), 20000):
        assert_same(oracle, profile, cps[i:i + 20000])


@pytest.mark.interop
def test_each_code_point_strict_matches_prosody(oracle):
    cps = [c for c in _code_points()[::7]]
    assert_same(oracle, "nodeprep", cps, strict=True)


@pytest.mark.interop
def test_length_limits_match_prosody(oracle):
    strings = (["a" * n for n in (1022, 1023, 1024)] + ["\u00c5" * n for n in (510, 511, 512)]
               + ["\u00df" * n for n in (300, 340, 511, 512)]
               + ["\ufb01" * n for n in (340, 341, 342, 500, 511)]
               + ["\ufdfa" * n for n in (10, 56, 57, 100)])
    for profile in PROFILES:
        assert_same(oracle, profile, strings)


JID_CHARS = st.one_of(st.sampled_from(list("@/.aB \u00fc\u00c9\u0627\u3002\u00ad\uff20")), _char_strategy())
JIDS = st.lists(JID_CHARS, max_size=14).map("".join)


@pytest.mark.interop
@HSETTINGS
@given(j=JIDS)
def test_prep_jid_matches_prosody(oracle, j):
    [theirs] = prosody_jid_prep(oracle, [j])
    assert ours(prep_jid, j) == theirs


@pytest.mark.interop
@HSETTINGS
@given(j=JIDS)
def test_split_jid_matches_prosody(oracle, j):
    [theirs] = prosody_jid_split(oracle, [j])
    assert ours(split_jid, j) == theirs


@pytest.mark.interop
def test_known_jids_match_prosody(oracle):
    jids = ["Bob@Example.COM", "Bob@Example.COM/Res", "bob@example.com.", "..", ".", "a@.",
            "J\u00fcrgen@M\u00fcnchen.example", "j\u00fcrgen@xn--mnchen-3ya.example",
            "a/b@c", "a@b@c", "@x", "x/", "\u00ad@example.com", "a@b/\u0627a"]
    assert [ours(prep_jid, j) for j in jids] == prosody_jid_prep(oracle, jids)
