"""``prosody-store verify``: names Prosody never makes and stale temporary files are
warnings (exit 0), ``--repair`` removes temporary files older than an hour, and
a file export cannot back up is an error (exit 1), so that ``verify`` passing
means ``export`` will not stop.  The real CLI on copies of fixtures/demo.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from prosody_store.serialization import dump_dat, dump_item
from tests.test_cli import DEMO, copy, run
from tests.test_backup_roundtrip import write

DAT = dump_dat({"a": 1})
HOUR = 3600


def warnings(proc) -> dict[str, str]:
    """file -> warning text, from verify's report lines ``file: warning: text``."""
    out = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        path, sep, text = line.partition(": warning: ")
        assert sep, line
        out[path] = text
    return out


@pytest.fixture
def demo(tmp_path):
    return copy(DEMO, tmp_path)


def test_demo_is_clean(demo):
    proc = run(demo, "verify")
    assert proc.stdout == b"" and proc.stderr == b""


@pytest.mark.parametrize("rel,expected", [
    (b"localhost/roster/.dat", "empty user name"),
    (b"localhost/roster/%c2%ad.dat", "nothing after nameprep"),          # U+00AD
    (b"localhost/roster/%ff.dat", "not UTF-8"),
    (b"localhost/roster/a%01b.dat", "XML cannot carry"),
    (b"localhost/roster/%e2%80%aeevil.dat", "refused by nameprep"),      # U+202E
    (b"localhost/archive/%e2%80%aeevil.list", "refused by nameprep"),
    (b"Example%2ecom/roster/alice.dat", "not in nameprep form ('example.com')"),
    (b"%ef%bf%bf/roster/alice.dat", "XML cannot carry"),                  # U+FFFF host
    (b"ex%c2%adample%2ecom/roster/alice.dat", "not in nameprep form ('example.com')"),
])
def test_names_prosody_never_makes_are_warnings(demo, rel, expected):
    """Such names (the user "" came from a PUT to /data/localhost/%C2%AD/roster)
    were not reported at all."""
    path = write(demo, rel, dump_item("x") if rel.endswith(b".list") else DAT)
    proc = run(demo, "verify")  # exit 0: a warning is no damage
    found = warnings(proc)
    assert len(found) == 1, found
    [(where, text)] = found.items()
    if rel.startswith(b"localhost/"):
        assert where == str(path)
    else:
        assert where == str(path.parent.parent)  # the host directory, once
    assert expected in text and "Prosody never makes" in text, text
    report = json.loads(run(demo, "verify", "--json").stdout)
    assert [w["warning"] for w in report["warnings"]] == [text]
    assert run(demo, "export").returncode == 0  # they back up and restore fine


@pytest.mark.parametrize("rel", [
    b"localhost/accounts/user%2ewith%2bodd%2fchars.dat",
    b"_global/adhoc_state/admin%40example%2ecom.dat",
    b"pubsub%2elocalhost/pubsub_nodes/urn%3axmpp%3amicroblog%3a0.dat",
    b"localhost/roster/j%c3%bcrgen.dat",
    b"xn%2d%2dmnchen%2d3ya%2eexample/roster/alice.dat",
    b"localhost/roster/ALICE.dat",  # a pubsub node name may be any case
])
def test_names_prosody_makes_are_not_warned_about(demo, rel):
    write(demo, rel, DAT)
    assert run(demo, "verify").stdout == b""


def age(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_temporary_files_are_listed_and_repair_removes_old_ones(demo):
    """Files left by a killed writer (ours: .prosody_store.<random>~, Prosody's:
    <file>.dat~) were never reported; --repair removes those untouched for an
    hour, never a younger one (its writer may still be running)."""
    old_ours = age(write(demo, b"localhost/roster/.prosody_store.0123456789abcdef~", b"x"),
                   2 * HOUR)
    old_host = age(write(demo, b"localhost/.prosody_store.fedcba9876543210~", b"x"), 3 * HOUR)
    old_root = age(write(demo, b".prosody_store.00000000aaaaaaaa~", b"x"), 30 * 86400)
    old_prosody = age(write(demo, b"localhost/roster/alice.dat~", b"return {"), 2 * HOUR)
    old_list = age(write(demo, b"localhost/archive/alice.list~", b"item("), 2 * HOUR)
    young = age(write(demo, b"localhost/archive/.prosody_store.1111111111111111~", b"x"), 600)
    other = age(write(demo, b"localhost/roster/notes~", b"x"), 2 * HOUR)  # not ours
    proc = run(demo, "verify")
    found = warnings(proc)
    assert set(found) == {str(p) for p in (old_ours, old_host, old_root, old_prosody,
                                           old_list, young)}
    assert "left by a killed writer (2 h old); verify --repair removes it" in found[str(old_ours)]
    assert "30 days old" in found[str(old_root)]
    assert "10 min old: a writer may still be busy" in found[str(young)]
    report = json.loads(run(demo, "verify", "--json").stdout)
    assert {t["file"]: t["removed"] for t in report["temp_files"]} == {
        p: False for p in found}
    assert all(p.exists() for p in (old_ours, young, other))

    proc = run(demo, "verify", "--repair")
    found = warnings(proc)
    assert len(found) == 6 and "removed a temporary file" in found[str(old_prosody)]
    for path in (old_ours, old_host, old_root, old_prosody, old_list):
        assert not path.exists()
    assert young.exists() and other.exists()
    assert set(warnings(run(demo, "verify"))) == {str(young)}
    assert run(demo, "get", "alice@localhost", "roster").returncode == 0


def test_temporary_files_of_other_hosts_with_host_filter(demo):
    elsewhere = age(write(demo, b"other/.prosody_store.0123456789abcdef~", b"x"), 2 * HOUR)
    here = age(write(demo, b"localhost/roster/.prosody_store.0123456789abcdef~", b"x"), 2 * HOUR)
    assert set(warnings(run(demo, "verify", "--host", "localhost"))) == {str(here)}
    run(demo, "verify", "--host", "localhost", "--repair")
    assert elsewhere.exists() and not here.exists()


@pytest.mark.parametrize("rel,content,expected", [
    (b"localhost/roster/al-ice.dat", DAT, "not spelled as Prosody spells it"),
    (b"localhost/vcard/alice.dat", b'return "x";\n', "holds a string, not a table"),
    (b"localhost/odd/alice.dat", b"return " + b"{" * 200 + b"}" * 200 + b";\n",
     "nested deeper than 127"),
    (b"localhost/archive/bob.list", b"item(" + b"{" * 200 + b"}" * 200 + b");\n",
     "nested deeper than 127"),
], ids=["name", "scalar", "deep dat", "deep list item"])
def test_files_export_cannot_back_up_are_errors(demo, rel, content, expected):
    """verify said nothing (exit 0) about files that export then refused or left out."""
    path = write(demo, rel, content)
    proc = run(demo, "verify", check=1)
    [line] = proc.stdout.decode().splitlines()
    assert line.startswith(f"{path}: cannot be exported: ") and expected in line, line
    assert proc.stderr.decode().startswith("prosody-store: 1 of ")
    assert "cannot be exported" in proc.stderr.decode()
    report = json.loads(run(demo, "verify", "--json", check=1).stdout)
    assert [e["file"] for e in report["unexportable"]] == [str(path)]
    assert run(demo, "export", check=1).stderr.decode().startswith(
        f"prosody-store: cannot export {path}: ")
