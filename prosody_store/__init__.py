"""prosody_store: Prosody's data files, read and written exactly as Prosody does."""
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

__all__ = [
    "FALSE_KEY",
    "TRUE_KEY",
    "BooleanKey",
    "LuaSyntaxError",
    "dump_dat",
    "dump_item",
    "dumps",
    "iter_list",
    "loads",
]
__version__ = "0.1.0"
