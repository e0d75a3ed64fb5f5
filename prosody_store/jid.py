"""Stringprep profiles and JIDs, normalised the way Prosody normalises them.

Prosody normalises every JID part and every password with the stringprep
profiles of ``util.encodings`` (RFC 3454).  Debian's Prosody builds that module
against ICU (``usprep_prepare``), and this module reproduces ICU's behaviour,
checked character by character against the real module (``tests/test_jid.py``):

* **Unassigned code points are allowed** (Prosody calls ICU with
  ``USPREP_ALLOW_UNASSIGNED`` unless ``strict=true``): a code point that Unicode
  3.2 did not assign (RFC 3454 table A.1) is neither mapped nor normalised and
  passes through unchanged.  ``strict=True`` rejects it, as ``jid.prep(j, true)``
  does.
* Mapping uses the RFC 3454 tables B.1 (deleted) and B.2 (case folding for
  NFKC), or for SASLprep B.1 plus "non-ASCII space -> U+0020".
* NFKC is applied only to runs of code points assigned in Unicode 3.2 (ICU's
  ``FilteredNormalizer2`` over the Unicode 3.2 set); other code points are left
  where they are, untouched.  Five CJK compatibility ideographs keep their
  Unicode 3.2 decompositions (before Corrigendum #4), as in ICU.
* Prohibited output: the RFC 3454 C tables of each profile; nodeprep also
  prohibits ``" & ' / : < > @``.
* The bidi rule (RFC 3454 section 6) uses the *current* Unicode bidi classes
  (ICU does), not tables D.1/D.2 of Unicode 3.2: Python's ``unicodedata``, the
  Unicode 15 defaults for unassigned code points, and a table of the Unicode
  15.0 characters that Python 3.11's Unicode 14.0 lacks.  (On a Python whose
  ``unicodedata`` is newer than Unicode 15.0, characters added after 15.0 may
  get another bidi verdict than ICU 72 gives them.)
* Length: Prosody gives up on input of 1024 UTF-8 bytes or more and on a result
  of 1024 UTF-8 bytes or more; so do we.

Every function raises :class:`JIDError` (a ``ValueError``) where Prosody's
returns ``nil``; it never returns ``None``.  Strings may be given as ``str`` or
as UTF-8 ``bytes``; results are ``str``.

Hosts are not converted to or from punycode: ``München.example`` and
``xn--mnchen-3ya.example`` are two different hosts to Prosody, and to us.
"""
from __future__ import annotations

import functools
import stringprep
import unicodedata
from typing import Callable, NamedTuple

from prosody_store.errors import Error

__all__ = [
    "JIDError",
    "nodeprep",
    "nameprep",
    "resourceprep",
    "saslprep",
    "split_jid",
    "prepped_split",
    "join_jid",
    "prep_jid",
]

MAX_BYTES = 1023
"""Longest input, and longest result, in UTF-8 bytes that Prosody accepts."""


class JIDError(Error, ValueError):
    """A string fails a stringprep profile, or a JID is malformed."""


# --- character classes --------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _unassigned(ch: str) -> bool:
    """True for code points Unicode 3.2 did not assign (RFC 3454 table A.1)."""
    return stringprep.in_table_a1(ch)


# Bidi classes of code points that the Unicode database in use leaves
# unassigned: the @missing defaults of DerivedBidiClass.txt (Unicode 15, ICU 72).
# Only "right-to-left" (R or AL) and "left-to-right" (L) matter to stringprep.
_DEFAULT_RTL_RANGES = (
    (0x0590, 0x08FF), (0xFB1D, 0xFDCF), (0xFDF0, 0xFDFF), (0xFE70, 0xFEFF),
    (0x10800, 0x10FFF), (0x1E800, 0x1EFFF),
)
# Unassigned code points that default to BN (default ignorables) or ET.
_DEFAULT_NEUTRAL_RANGES = (
    (0x2065, 0x2065), (0x20A0, 0x20CF), (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)


# Characters new in Unicode 15.0 whose bidi class is neither L nor R/AL (NSM
# or ON).  ICU 72, which Debian 12's Prosody uses, knows them; Python 3.11's
# ``unicodedata`` (Unicode 14.0) does not, and would give them the defaults
# above.  Found by probing the real ``util.encodings`` (see tests/test_jid.py).
_UNICODE_15_NEUTRAL_RANGES = (
    (0x0ECE, 0x0ECE), (0x10EFD, 0x10EFF), (0x11241, 0x11241), (0x11F00, 0x11F01),
    (0x11F36, 0x11F3A), (0x11F40, 0x11F40), (0x11F42, 0x11F42), (0x13440, 0x13440),
    (0x13447, 0x13455), (0x1E08F, 0x1E08F), (0x1E4EC, 0x1E4EF), (0x1F6DC, 0x1F6DC),
    (0x1F774, 0x1F776), (0x1F77B, 0x1F77F), (0x1F7D9, 0x1F7D9), (0x1FA75, 0x1FA77),
    (0x1FA87, 0x1FA88), (0x1FAAD, 0x1FAAF), (0x1FABB, 0x1FABD), (0x1FABF, 0x1FABF),
    (0x1FACE, 0x1FACF), (0x1FADA, 0x1FADB), (0x1FAE8, 0x1FAE8), (0x1FAF7, 0x1FAF8),
)


def _in_ranges(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def _is_noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


@functools.lru_cache(maxsize=4096)
def _bidi_class(ch: str) -> str:
    """The bidi class of ``ch`` in current Unicode, with the defaults for unassigned."""
    cls = unicodedata.bidirectional(ch)
    if cls:
        return cls
    code = ord(ch)
    if _in_ranges(code, _UNICODE_15_NEUTRAL_RANGES):
        return "ON"
    if _in_ranges(code, _DEFAULT_RTL_RANGES):
        return "R"
    if _is_noncharacter(code) or _in_ranges(code, _DEFAULT_NEUTRAL_RANGES):
        return "BN"
    return "L"


def _is_rtl(ch: str) -> bool:
    return _bidi_class(ch) in ("R", "AL")


def _is_ltr(ch: str) -> bool:
    return _bidi_class(ch) == "L"


# --- the steps of a profile ---------------------------------------------

def _fold_b2(ch: str) -> str:
    """RFC 3454 table B.2 for one code point assigned in Unicode 3.2.

    Python's ``stringprep.map_table_b2`` derives B.2 from today's case
    mappings; where today's mapping produces code points Unicode 3.2 did not
    have (Georgian, Cherokee, ...), table B.2 has no entry.
    """
    mapped = stringprep.map_table_b2(ch)
    if mapped != ch and any(_unassigned(c) for c in mapped):
        return ch
    return mapped


@functools.lru_cache(maxsize=4096)
def _map_nothing_or_fold(ch: str) -> str:
    """Nameprep/nodeprep mapping: B.1 to nothing, then B.2."""
    if stringprep.in_table_b1(ch):
        return ""
    return _fold_b2(ch)


def _map_nothing(ch: str) -> str:
    """Resourceprep mapping: B.1 to nothing."""
    return "" if stringprep.in_table_b1(ch) else ch


@functools.lru_cache(maxsize=4096)
def _map_sasl(ch: str) -> str:
    """SASLprep mapping (RFC 4013 2.1): non-ASCII space to SPACE, B.1 to nothing."""
    if stringprep.in_table_c12(ch):
        return " "
    return _map_nothing(ch)


def _map(s: str, mapping: Callable[[str], str], strict: bool) -> str:
    """Apply ``mapping`` to every assigned code point; check unassigned ones."""
    out = []
    for ch in s:
        if _unassigned(ch):
            if strict:
                raise JIDError(f"unassigned code point U+{ord(ch):04X}")
            out.append(ch)
        else:
            out.append(mapping(ch))
    return "".join(out)


# Unicode 4.0 Corrigendum #4 changed the decomposition of a few CJK
# compatibility ideographs.  ICU's stringprep keeps the Unicode 3.2 mappings
# that RFC 3454 is built on; today's ``unicodedata`` has the corrected ones.
_UNICODE_32_DECOMPOSITIONS = {
    0x2F868: "\U0002136A",
    0x2F874: "\u5F33",
    0x2F91F: "\u43AB",
    0x2F95F: "\u7AAE",
    0x2F9BF: "\u4D57",
}


def _nfkc(s: str) -> str:
    """NFKC of each run of code points assigned in Unicode 3.2; the rest unchanged."""
    s = s.translate(_UNICODE_32_DECOMPOSITIONS)
    if s.isascii():
        return s
    out: list[str] = []
    run: list[str] = []
    for ch in s:
        if _unassigned(ch):
            out.append(unicodedata.normalize("NFKC", "".join(run)))
            run = []
            out.append(ch)
        else:
            run.append(ch)
    out.append(unicodedata.normalize("NFKC", "".join(run)))
    return "".join(out)


_NODEPREP_EXTRA = frozenset("\"&'/:<>@")


def _prohibited_common(ch: str) -> bool:
    """C.1.2, C.2.2, C.3 to C.9: prohibited in every profile here."""
    return (stringprep.in_table_c12(ch) or stringprep.in_table_c22(ch)
            or stringprep.in_table_c3(ch) or stringprep.in_table_c4(ch)
            or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch)
            or stringprep.in_table_c7(ch) or stringprep.in_table_c8(ch)
            or stringprep.in_table_c9(ch))


@functools.lru_cache(maxsize=4096)
def _prohibited_nameprep(ch: str) -> bool:
    return _prohibited_common(ch)


@functools.lru_cache(maxsize=4096)
def _prohibited_resourceprep(ch: str) -> bool:
    """Resourceprep and SASLprep also prohibit ASCII controls (C.2.1)."""
    return stringprep.in_table_c21(ch) or _prohibited_common(ch)


@functools.lru_cache(maxsize=4096)
def _prohibited_nodeprep(ch: str) -> bool:
    return (ch in _NODEPREP_EXTRA or stringprep.in_table_c11(ch)
            or _prohibited_resourceprep(ch))


def _check_prohibited(s: str, prohibited: Callable[[str], bool]) -> None:
    for ch in s:
        if prohibited(ch):
            raise JIDError(f"prohibited code point U+{ord(ch):04X}")


def _check_bidi(s: str) -> None:
    """RFC 3454 section 6: no mixed directions; RTL text starts and ends RTL."""
    if not any(_is_rtl(ch) for ch in s):
        return
    if any(_is_ltr(ch) for ch in s):
        raise JIDError("mixes left-to-right and right-to-left text")
    if not (_is_rtl(s[0]) and _is_rtl(s[-1])):
        raise JIDError("right-to-left text must start and end with a right-to-left character")


class _Profile(NamedTuple):
    mapping: Callable[[str], str]
    prohibited: Callable[[str], bool]


_NAMEPREP = _Profile(_map_nothing_or_fold, _prohibited_nameprep)
_NODEPREP = _Profile(_map_nothing_or_fold, _prohibited_nodeprep)
_RESOURCEPREP = _Profile(_map_nothing, _prohibited_resourceprep)
_SASLPREP = _Profile(_map_sasl, _prohibited_resourceprep)


def _as_text(s: str | bytes) -> str:
    """``s`` as a str of Unicode scalar values (no lone surrogates)."""
    if isinstance(s, (bytes, bytearray, memoryview)):
        try:
            return bytes(s).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JIDError("not valid UTF-8") from e
    if not isinstance(s, str):
        raise TypeError(f"expected str or bytes, not {type(s).__name__}")
    return s


def _utf8_len(s: str) -> int:
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise JIDError("lone surrogate") from e


def _prepare(s: str | bytes, profile: _Profile, strict: bool) -> str:
    """Run one stringprep profile, with Prosody's length limits."""
    text = _as_text(s)
    if _utf8_len(text) > MAX_BYTES:
        raise JIDError("longer than Prosody accepts")
    result = _nfkc(_map(text, profile.mapping, strict))
    _check_prohibited(result, profile.prohibited)
    _check_bidi(result)
    if _utf8_len(result) > MAX_BYTES:
        raise JIDError("result longer than Prosody accepts")
    return result


def nodeprep(s: str | bytes, strict: bool = False) -> str:
    """Nodeprep (RFC 3920/6122 appendix A): the local part of a JID."""
    return _prepare(s, _NODEPREP, strict)


def nameprep(s: str | bytes, strict: bool = False) -> str:
    """Nameprep (RFC 3491): a domain name; no punycode conversion."""
    return _prepare(s, _NAMEPREP, strict)


def resourceprep(s: str | bytes, strict: bool = False) -> str:
    """Resourceprep (RFC 3920/6122 appendix B): the resource of a JID."""
    return _prepare(s, _RESOURCEPREP, strict)


def saslprep(s: str | bytes, strict: bool = False) -> str:
    """SASLprep (RFC 4013): a password or user name."""
    if isinstance(s, str) and s.isascii() and s.isprintable() and len(s) <= MAX_BYTES:
        return s  # printable ASCII maps to itself and is never prohibited: the common case
    return _prepare(s, _SASLPREP, strict)


# --- JIDs ---------------------------------------------------------------

def split_jid(jid: str | bytes) -> tuple[str | None, str, str | None]:
    """Split a JID into (node, host, resource) without normalising, as ``jid.split``.

    ``node@host/resource``, ``node@host``, ``host/resource`` and ``host``;
    node and host contain neither ``@`` nor ``/``, and each part present is
    non-empty.  Anything else raises :class:`JIDError`.
    """
    text = _as_text(jid)
    node: str | None = None
    rest = text
    head, at, tail = text.partition("@")
    if at and head and "/" not in head:
        node, rest = head, tail
    host, slash, resource = rest.partition("/")
    if not host or "@" in host:
        raise JIDError(f"not a JID: {text!r}")
    if slash and not resource:
        raise JIDError(f"empty resource: {text!r}")
    return node, host, (resource if slash else None)


def prepped_split(jid: str | bytes, strict: bool = False) -> tuple[str | None, str, str | None]:
    """Split and normalise a JID, as ``jid.prepped_split``.

    The host loses one trailing dot (the DNS root label) and is nameprep-ed,
    which lowercases it; the node is nodeprep-ed, the resource resourceprep-ed.
    """
    node, host, resource = split_jid(jid)
    if host == ".":
        raise JIDError("host is only the root label")
    if host.endswith("."):
        host = host[:-1]
    host = nameprep(host, strict)
    if node is not None:
        node = nodeprep(node, strict)
    if resource is not None:
        resource = resourceprep(resource, strict)
    return node, host, resource


def join_jid(node: str | None, host: str, resource: str | None = None) -> str:
    """Join JID parts, as ``jid.join`` (no normalisation)."""
    jid = host if node is None else f"{node}@{host}"
    return jid if resource is None else f"{jid}/{resource}"


def prep_jid(jid: str | bytes, strict: bool = False) -> str:
    """The normalised form of a JID, as ``jid.prep``; :class:`JIDError` if invalid."""
    return join_jid(*prepped_split(jid, strict))
