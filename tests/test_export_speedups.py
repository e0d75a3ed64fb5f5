"""``export`` and ``import`` give the same bytes with the C speedups as without.

The real CLI (``python -m prosody_store``) runs twice on the same data
directory: once as installed (the compiled reader and writer where built)
and once with ``PROSODY_STORE_PURE=1`` (pure Python).  Standard output,
standard error and the exit status must be identical, and so must the files
an import writes:

* the corpus Prosody 0.9 to 13 wrote and the demo data;
* a data directory of generated values (every type, escapes, colliding
  boolean keys, bytes, special floats, long lists crossing every batch the
  exporter makes);
* damaged files, with and without ``--skip-damaged``.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prosody_store.datamanager import DataManager
from tests.speedups import load, require
from tests.test_backup_roundtrip import damage
from tests.test_cli import CORPUS, DEMO, VERSIONS, copy, tree
from tests.test_speedups_writer import random_value

pytestmark = pytest.mark.speedups

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def speedups_built() -> None:
    """Without the compiled modules both runs would be pure Python: nothing compared."""
    for name in ("_cwriter", "_creader"):
        require(load(name), name)


def cli(data: Path, *args: Any, pure: bool, input: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PROSODY_DATA_PATH", None)
    env.pop("PROSODY_STORE_PURE", None)
    if pure:
        env["PROSODY_STORE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "prosody_store", "--data-path", str(data),
                           *map(str, args)], input=input, capture_output=True, cwd=ROOT,
                          env=env, timeout=300)


def same_both_ways(data: Path, *args: Any) -> subprocess.CompletedProcess:
    """Run the CLI with and without the speedups; the same stdout, stderr and status."""
    fast = cli(data, *args, pure=False)
    slow = cli(data, *args, pure=True)
    assert b"Traceback" not in fast.stderr, fast.stderr.decode()
    assert (fast.returncode, fast.stderr) == (slow.returncode, slow.stderr)
    assert fast.stdout == slow.stdout
    return fast


def test_speedups_are_in_use():
    """The two runs below differ in what they run."""
    code = "from prosody_store import _speedups; print(_speedups.implementation())"
    env = dict(os.environ, PROSODY_STORE_PURE="1")
    pure = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    env.pop("PROSODY_STORE_PURE")
    fast = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    assert (pure.stdout, fast.stdout) == (b"python\n", b"c\n")


@pytest.mark.parametrize("source", ["demo", *VERSIONS])
def test_export_of_the_corpus_is_the_same(tmp_path, source):
    data = copy(DEMO if source == "demo" else CORPUS / source, tmp_path)
    proc = same_both_ways(data, "export", "--skip-damaged")
    assert proc.stdout.count(b"\n") > 3
    same_both_ways(data, "export")


def generated_data(root: Path) -> Path:
    """A data directory of generated values, written by our store."""
    rng = random.Random(1234)
    dm = DataManager(str(root))
    stores = 0
    for n in range(60):
        user = f"u{n}"
        value = random_value(rng)
        if not isinstance(value, dict):
            value = {"v": value, n: [value], True: b"\xff" * n}
        try:
            dm.store(user, "example.com", "kv", value)
            stores += 1
        except (TypeError, ValueError):
            pass
        items = [v for v in (random_value(rng) for _ in range(rng.choice([1, 5, 127, 128, 129, 700])))
                 if v is not None]
        items += [{"name": "message", "when": 1700000000 + i / 7, 1: {"name": "body", 1: "é" * i}}
                  for i in range(rng.randrange(300))]
        try:
            dm.list_store(user, "example.com", "archive", items)
            stores += 1
        except (TypeError, ValueError):
            pass
    dm.list_store("big", "example.com", "archive",
                  [{"key": str(i), "text": "\U0001f375 " * (i % 50), "f": i / 3} for i in range(5000)])
    assert stores > 60
    return root


def test_export_and_import_of_generated_values_are_the_same(tmp_path):
    data = generated_data(tmp_path / "data")
    proc = same_both_ways(data, "export")
    assert proc.returncode == 0 and proc.stdout.count(b"\n") > 40
    targets = []
    for pure in (False, True):
        target = tmp_path / f"imported-{pure}"
        target.mkdir()
        imported = cli(target, "import", "-", pure=pure, input=proc.stdout)
        assert (imported.returncode, imported.stderr) == (0, b"")
        targets.append(tree(target))
    assert targets[0] == targets[1]
    again = same_both_ways(tmp_path / "imported-False", "export")
    assert again.stdout == proc.stdout


def test_damaged_files_are_reported_the_same(tmp_path):
    data = copy(DEMO, tmp_path)
    damage(data)
    proc = same_both_ways(data, "export", "--skip-damaged")
    assert proc.returncode == 1 and proc.stderr.count(b"skipped") == 3
    proc = same_both_ways(data, "export")
    assert proc.returncode == 1 and b"cannot export" in proc.stderr


def test_torn_list_is_reported_the_same(tmp_path):
    data = copy(DEMO, tmp_path)
    lst = data / "localhost/archive/alice.list"
    lst.write_bytes(lst.read_bytes()[:-30])
    for args in (["export"], ["export", "--skip-damaged"]):
        proc = same_both_ways(data, *args)
        assert proc.returncode == 1 and str(lst).encode() in proc.stderr
