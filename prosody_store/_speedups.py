"""Which implementation of the codec is in use: the C speedups or pure Python.

The C modules (``_creader``, ``_cwriter``) are optional at install and only
ever an accelerator: each of their functions either gives exactly what the
pure-Python code gives or declines (returns ``None``), and the caller then
runs the pure-Python code, which also produces every error message.  Setting
``PROSODY_STORE_PURE=1`` in the environment before import ignores them.
"""
from __future__ import annotations

import os
from types import ModuleType

PURE_REQUESTED = os.environ.get("PROSODY_STORE_PURE", "") not in ("", "0")


def _load(name: str) -> ModuleType | None:
    if PURE_REQUESTED:
        return None
    try:
        return __import__(f"prosody_store.{name}", fromlist=["_"])
    except ImportError:
        return None


reader: ModuleType | None = _load("_creader")
writer: ModuleType | None = _load("_cwriter")


def implementation() -> str:
    """``"c"`` when both C modules are in use, ``"python"`` when neither, else which."""
    if reader is not None and writer is not None:
        return "c"
    if reader is None and writer is None:
        return "python"
    return "c reader" if reader is not None else "c writer"
