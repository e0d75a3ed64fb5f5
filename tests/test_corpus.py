"""Every file of the corpus (Prosody 0.9 to 13.0) reads to the values real Lua read from it,
and every file written by Prosody 0.11 or later is written back byte for byte."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from prosody_store.serialization import dump_dat, dump_item, iter_list, loads
from tests.tagged import canon, canon_tagged

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "prosody-corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())
VERSIONS = sorted(MANIFEST["versions"])
WRITES_CURRENT_FORMAT = {"prosody-0.11", "prosody-0.12", "prosody-13.0"}


def corpus_files(suffix: str) -> list[tuple[str, Path]]:
    return [(version, path) for version in VERSIONS
            for path in sorted((CORPUS / version).rglob(f"*{suffix}"))]


def _id(param) -> str:
    if isinstance(param, Path):
        return str(param.relative_to(CORPUS))
    return str(param)


DAT_FILES = corpus_files(".dat")
LIST_FILES = corpus_files(".list")


def test_corpus_is_complete():
    assert len(VERSIONS) == 6
    for version in VERSIONS:
        files = [p for p in (CORPUS / version).rglob("*") if p.suffix in (".dat", ".list")]
        assert len(files) == 26, version


def typed(version: str) -> bool:
    return MANIFEST["versions"][version]["lua_has_integers"]


@pytest.mark.parametrize("version,path", DAT_FILES, ids=_id)
def test_dat_reads_to_expected_value(version, path):
    expected = json.loads(path.with_name(path.name + ".expected.json").read_text())
    value = loads(path.read_bytes())
    assert canon(value, typed(version)) == canon_tagged(expected, typed(version))


@pytest.mark.parametrize("version,path", LIST_FILES, ids=_id)
def test_list_reads_to_expected_items(version, path):
    expected = json.loads(path.with_name(path.name + ".expected.json").read_text())
    want = canon_tagged(expected, typed(version))
    from_bytes = list(iter_list(path.read_bytes()))
    with path.open("rb") as f:
        from_file = list(iter_list(f))
    assert ("list", tuple(canon(v, typed(version)) for v in from_bytes)) == want
    assert ("list", tuple(canon(v, typed(version)) for v in from_file)) == want


@pytest.mark.parametrize("version,path", [p for p in DAT_FILES if p[0] in WRITES_CURRENT_FORMAT], ids=_id)
def test_dat_written_back_byte_for_byte(version, path):
    data = path.read_bytes()
    assert dump_dat(loads(data)) == data


@pytest.mark.parametrize("version,path", [p for p in LIST_FILES if p[0] in WRITES_CURRENT_FORMAT], ids=_id)
def test_list_written_back_byte_for_byte(version, path):
    data = path.read_bytes()
    assert b"".join(dump_item(item) for item in iter_list(data)) == data


def test_list_read_from_file_in_small_chunks_is_the_same(monkeypatch):
    """The streaming reader gives the same items whatever the chunk boundaries."""
    from prosody_store import serialization

    path = CORPUS / "prosody-0.12" / "example%2ecom" / "edge" / "biglist.list"
    data = path.read_bytes()
    expected = list(iter_list(data))
    for size in (1, 7, 64, 4096):
        monkeypatch.setattr(serialization, "_READ_SIZE", size)
        assert list(iter_list(io.BytesIO(data))) == expected
