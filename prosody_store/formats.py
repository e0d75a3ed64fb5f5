"""The formats a store's value is exchanged in: one table for the HTTP service and the CLI.

Each :class:`Format` says how to encode a value to bytes, how to encode a
list piece by piece (so a large list store is streamed, never loaded whole),
and how to decode bytes.  Adding a format is adding one entry to
:data:`FORMATS`.

``json`` is Prosody's JSON (``util.json``) as strict JSON: the numbers JSON
cannot carry (infinities and NaN that Prosody stored) are written as
:func:`prosody_store.json.strict_numbers` says, so that any JSON reader takes
the output.  ``lua`` is the value as Prosody's ``util.serialization`` writes it
(without ``return``).  Works on bytes; knows nothing of files or HTTP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from prosody_store import json as prosody_json
from prosody_store import serialization

__all__ = ["FORMATS", "Format", "by_media_type"]


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    encode: Callable[[Any], bytes]
    """The bytes of one value."""
    encode_list: Callable[[Iterable[Any]], Iterator[bytes]]
    """The bytes of a list, piece by piece; together they equal ``encode(list(items))``."""
    decode: Callable[[bytes, int], Any]
    """The value of some bytes, nested at most ``max_depth`` deep; ValueError if invalid."""


def _json_encode(value: Any) -> bytes:
    return prosody_json.dumpb(value, strict=True)


def _json_encode_list(items: Iterable[Any]) -> Iterator[bytes]:
    return prosody_json.iter_dumpb_array(items, strict=True)


def _json_decode(body: bytes, max_depth: int) -> Any:
    return prosody_json.loads(body, max_depth=max_depth)


def _lua_encode(value: Any) -> bytes:
    return serialization.dumps(value).encode("ascii")


def _lua_encode_list(items: Iterable[Any]) -> Iterator[bytes]:
    for piece in serialization.iter_dumps_list(items):
        yield piece.encode("ascii")


def _lua_decode(body: bytes, max_depth: int) -> Any:
    return serialization.loads(body, max_depth=max_depth)


FORMATS: dict[str, Format] = {
    "json": Format("json", "application/json", _json_encode, _json_encode_list, _json_decode),
    "lua": Format("lua", "text/x-lua", _lua_encode, _lua_encode_list, _lua_decode),
}
"""The formats by name, the first the default."""


def by_media_type(media_type: str) -> Format | None:
    """The format whose media type this is (case-insensitive), or None."""
    media_type = media_type.lower()
    for fmt in FORMATS.values():
        if fmt.media_type == media_type:
            return fmt
    return None
