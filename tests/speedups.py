"""What the differential tests of the C speedups (marked ``speedups``) share.

The compiled modules are optional at install, so a test module asks for one
with :func:`require`: where it is not built the test is skipped, except under
``CI=true``, where CI has built it and its absence is a failure.
``PROSODY_STORE_FUZZ_SCALE`` (default 1) multiplies the number of generated
and mutated cases (:func:`scaled`).  :func:`same` is the equality the
differential tests compare values with.
"""
from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

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


def same(a: Any, b: Any) -> bool:
    """Equal values of exactly the same types, dict keys in the same order, NaN equal to NaN
    (of the same sign bit) and -0.0 unequal to 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        same_sign = math.copysign(1.0, a) == math.copysign(1.0, b)  # -0.0, and NaN's sign bit
        if math.isnan(a):
            return math.isnan(b) and same_sign
        return a == b and same_sign
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return bool(a == b)
