"""The packages' annotations are checked, not decoration: ``mypy --strict
prosody_store wsgi_app`` reports nothing (both ship ``py.typed``).

mypy and the type stubs it needs (types-waitress) are in the ``test`` extra;
without mypy the test is skipped, except in CI, where that is a failure.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prosody_store", "wsgi_app")


def test_mypy_strict_reports_no_errors(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        skip_or_fail("mypy is not installed: pip install -e '.[test]'")
    # A fresh cache: the result does not depend on what an earlier run left.
    command = [sys.executable, "-m", "mypy", "--strict",
               "--cache-dir", str(tmp_path / "mypy_cache"), *PACKAGES]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, (
        f"mypy --strict {' '.join(PACKAGES)} failed (exit {result.returncode}):\n"
        f"{result.stdout}{result.stderr}")
