"""``prosody-store export``/``import`` and ``archive expire`` checked by real Prosody:
its ``util.datamanager`` (lua5.4, /usr/lib/prosody) reads the source directory and
the one the CLI wrote, and must find the same values."""
from __future__ import annotations

import json

import pytest

import io

from prosody_store.export import read_records
from prosody_store.paths import name_bytes
from tests.tagged import canon, canon_tagged
from tests.test_cli import CORPUS, DEMO, VERSIONS, copy, run

pytestmark = pytest.mark.interop

OLD_LUA = {"prosody-0.9", "prosody-0.10", "prosody-0.10-lua5.2", "prosody-0.11"}


def _hex(name):
    return None if name is None else name_bytes(name).hex()


def prosody_reads(oracle, path, host, user, store, typ):
    req = json.dumps({"path": str(path), "user": _hex(user), "host": _hex(host),
                      "store": _hex(store)})
    if typ == "keyval":
        return json.loads(oracle.call("dm_oracle.load", req))
    items = json.loads(oracle.call("dm_oracle.list_load", req))
    return None if items is None else {"list": items}


def _canon_prosody(tagged, typed):
    if tagged is None or tagged == {"nil": True}:
        return None
    if "list" in tagged:
        return ("list", tuple(canon_tagged(x, typed) for x in tagged["list"]))
    return canon_tagged(tagged, typed)


def _canon_ours(record, typed):
    value = record["value"]
    if record["type"] == "list":
        return ("list", tuple(canon(x, typed) for x in value))
    return canon(value, typed)


@pytest.mark.parametrize("source", VERSIONS + ["demo"])
def test_exported_and_imported_directory_reads_the_same_in_prosody(oracle, tmp_path, source):
    data = copy(DEMO if source == "demo" else CORPUS / source, tmp_path)
    dump = run(data, "export").stdout
    target = tmp_path / "imported"
    target.mkdir()
    run(target, "import", input=dump)
    # Lua 5.1/5.2 data has no integer type: compare numbers by value there.
    typed = source not in OLD_LUA
    records = []
    for r in read_records(io.BytesIO(dump)):
        value = list(r.items) if r.type == "list" else r.value
        records.append({"host": r.host, "user": r.user, "store": r.store, "type": r.type,
                        "value": value})
    assert records
    compared_with_source = 0
    for rec in records:
        key = (rec["host"], rec["user"], rec["store"], rec["type"])
        theirs_new = _canon_prosody(prosody_reads(oracle, target, *key), typed)
        assert theirs_new == _canon_ours(rec, typed), key
        theirs_old = _canon_prosody(prosody_reads(oracle, data, *key), typed)
        if theirs_old is not None:  # 0.12 does not look up 0.9/0.10 store spellings
            compared_with_source += 1
            assert theirs_old == theirs_new, key
    assert compared_with_source >= len(records) - 2


def test_expired_and_repaired_lists_read_by_prosody(oracle, tmp_path):
    data = copy(CORPUS / "prosody-13.0", tmp_path)
    run(data, "archive", "expire", "--older-than", "1d", "--now", 1700000001 + 86400)
    got = prosody_reads(oracle, data, "example.com", "alice", "archive", "list")
    assert [canon_tagged(i)[1] for i in got["list"]] and len(got["list"]) == 2
    offline = data / "example%2ecom/offline/alice.list"
    offline.write_bytes(offline.read_bytes().replace(b'["key"]', b'["key"] = = ', 1))
    run(data, "verify", "--repair", check=0)
    got = prosody_reads(oracle, data, "example.com", "alice", "offline", "list")
    assert len(got["list"]) == 2
