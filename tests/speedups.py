"""What the differential tests of the C speedups (marked ``speedups``) share.

The compiled modules are optional at install, so a test module asks for one
with :func:`require`: where it is not built the test is skipped, except under
``CI=true``, where CI has built it and its absence is a failure.
``PROSODY_STORE_FUZZ_SCALE`` (default 1) multiplies the number of generated
and mutated cases (:func:`scaled`).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]

FIXTURE_FILES: dict[str, bytes] = {
    p.relative_to(ROOT / "fixtures").as_posix(): p.read_bytes()
    for p in sorted((ROOT / "fixtures").rglob("*"))
    if p.suffix in (".dat", ".list") and p.is_file()
}
"""Every ``.dat`` and ``.list`` under ``fixtures/``, by its path there."""

SCALE = float(os.environ.get("PROSODY_STORE_FUZZ_SCALE", "1"))


def scaled(n: int) -> int:
    """``n`` cases times the fuzz scale, at least one."""
    return max(1, int(n * SCALE))


def load(name: str) -> ModuleType | None:
    """The compiled module ``prosody_store.<name>``, or None where it is not built."""
    try:
        return importlib.import_module(f"prosody_store.{name}")
    except ImportError:
        return None


def require(module: ModuleType | None, name: str) -> ModuleType:
    """``module``; if it is None, skip the test, or fail it under ``CI=true``."""
    if module is None:
        message = (f"prosody_store.{name} is not built (python setup.py build_ext --inplace, "
                   "or pip install -e .)")
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return module
