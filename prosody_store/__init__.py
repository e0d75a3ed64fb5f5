"""prosody_store: Prosody's data files, read and written exactly as Prosody does.

The codec (:mod:`prosody_store.serialization`) turns Lua data literals into
Python values and back; the store (:mod:`prosody_store.datamanager`) does the
file work on a data directory.  Also: :mod:`prosody_store.json` (Prosody's
JSON conventions), :mod:`prosody_store.stanza` (stored stanzas as XML),
:mod:`prosody_store.accounts` (password checks), :mod:`prosody_store.jid`.
"""
from prosody_store._speedups import implementation as _implementation
from prosody_store.datamanager import CorruptFileError, DataManager
from prosody_store.errors import Error
from prosody_store.paths import InvalidNameError, NameTooLongError, StoreError
from prosody_store.serialization import (
    FALSE_KEY,
    TRUE_KEY,
    BooleanKey,
    LuaSyntaxError,
    dump_dat,
    dump_item,
    dumps,
    iter_list,
    loads,
)

IMPLEMENTATION: str = _implementation()
"""Which codec is in use: ``"c"`` (the compiled reader and writer), ``"python"``
(neither: not built, or ``PROSODY_STORE_PURE=1``), ``"c reader"`` or
``"c writer"`` (one of them).  The results are the same either way."""

__all__ = [
    "FALSE_KEY",
    "IMPLEMENTATION",
    "TRUE_KEY",
    "BooleanKey",
    "CorruptFileError",
    "DataManager",
    "Error",
    "InvalidNameError",
    "LuaSyntaxError",
    "NameTooLongError",
    "StoreError",
    "dump_dat",
    "dump_item",
    "dumps",
    "iter_list",
    "loads",
]
__version__ = "0.1.0"
