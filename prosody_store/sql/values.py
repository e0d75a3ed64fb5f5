"""Prosody's SQL row encodings: values as ``mod_storage_sql`` stores them, and back.

Keyval stores are ``(key, type, value)`` rows, archive items ``(key, when,
with, type, value)`` rows; the rules are in :mod:`prosody_store.sql`'s docs.
Nothing here touches a database or a file.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from prosody_store import json as pjson
from prosody_store.errors import Error
from prosody_store.numbers import format_float, tonumber
from prosody_store.sql.dates import format_datetime, parse_datetime
from prosody_store.stanza import StanzaError, from_xml, split_item, to_xml

__all__ = [
    "MigrationError",
    "decode_archive_row",
    "decode_keyval",
    "decode_value",
    "encode_archive_item",
    "encode_keyval",
    "encode_value",
]


class MigrationError(Error, ValueError):
    """A value that Prosody's SQL storage cannot hold (or read back)."""


def _lua_number_text(v: int | float) -> str:
    if v.__class__ is float or isinstance(v, float):
        if not math.isfinite(v):
            raise MigrationError(f"the number {v!r} cannot be stored in Prosody's SQL storage")
        return format_float(float(v))
    return str(int(v))


def _check_json_finite(text: str, value: Any) -> None:
    """util.json writes inf/nan that it cannot read back: refuse them."""
    if ("inf" in text or "nan" in text) and _has_non_finite(value):
        raise MigrationError("a table with an infinite or NaN number cannot be stored in "
                             "Prosody's SQL storage (util.json cannot read it back)")


def _has_non_finite(v: Any, depth: int = 0) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if depth > 200:
        return False
    if isinstance(v, dict):
        return any(_has_non_finite(k, depth + 1) or _has_non_finite(x, depth + 1)
                   for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return any(_has_non_finite(x, depth + 1) for x in v)
    return False


def encode_value(value: Any) -> tuple[str, str | bytes]:
    """``(type, text)`` of one value, as ``mod_storage_sql``'s ``serialize``."""
    cls = value.__class__
    if cls is str or cls is bytes:
        return "string", value
    if cls is bool:
        return "boolean", "true" if value else "false"
    if cls is int or cls is float:
        return "number", _lua_number_text(value)
    if cls is dict or cls is list or isinstance(value, (dict, list, tuple)):
        text = pjson.dumps(value)
        _check_json_finite(text, value)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a string that is not UTF-8: its raw bytes
                return "json", text.encode("utf-8", "surrogateescape")
        return "json", text
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, (int, float)):
        return "number", _lua_number_text(value)
    if isinstance(value, (str, bytes)):
        return "string", value
    raise MigrationError(f"cannot store a {cls.__name__} in Prosody's SQL storage")


def encode_keyval(value: Any) -> list[tuple[str | bytes, str, str | bytes]]:
    """The ``(key, type, value)`` rows of one keyval store, as ``keyval_store:set``."""
    if isinstance(value, (list, tuple)):
        items: Iterable[tuple[Any, Any]] = enumerate(value, 1)
    elif isinstance(value, dict):
        items = value.items()
    else:
        raise MigrationError(f"a keyval store must be a table, not a {type(value).__name__}")
    rows: list[tuple[str | bytes, str, str | bytes]] = []
    extra: dict[Any, Any] = {}
    for k, v in items:
        if v is None:
            continue
        if (k.__class__ is str or k.__class__ is bytes) and k:
            t, text = encode_value(v)
            rows.append((k, t, text))
        else:
            extra[k] = v
    if extra:
        t, text = encode_value(extra)
        rows.append(("", t, text))
    return rows


def encode_archive_item(item: Any, index: int, default_when: int = 0
                        ) -> tuple[str | bytes, int | float, str | bytes, str, str]:
    """``(key, when, with, type, value)`` of one archive item of a ``.list`` file.

    ``index`` is the item's 1-based position (its key when it has none);
    ``default_when`` is used when the item has neither ``when`` nor a
    parsable ``attr.stamp``.
    """
    if not isinstance(item, dict):
        raise MigrationError(f"archive item {index} is not a stanza table")
    stanza, meta = split_item(item)
    attr = stanza.get("attr")
    if isinstance(attr, dict) and ("stamp" in attr or "stamp_legacy" in attr):
        stamp = attr.get("stamp")
        stanza["attr"] = {k: v for k, v in attr.items() if k != "stamp" and k != "stamp_legacy"}
    else:
        stamp = None
    key = meta.get("key")
    if key is None:
        key = str(index)
    elif not isinstance(key, (str, bytes)):
        key = _lua_number_text(key) if isinstance(key, (int, float)) else str(key)
    when = meta.get("when")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        when = parse_datetime(stamp)
        if when is None:
            when = default_when
    elif not math.isfinite(when):
        raise MigrationError(f"archive item {index} has the time {when!r}")
    with_ = meta.get("with")
    if with_ is None:
        with_ = ""
    elif not isinstance(with_, (str, bytes)):
        with_ = str(with_)
    try:
        xml = to_xml(stanza)
    except StanzaError as err:
        raise MigrationError(f"archive item {index}: {err}") from None
    return key, when, with_, "xml", xml


def decode_value(typ: str, text: str | bytes) -> Any:
    """``mod_storage_sql``'s ``deserialize``: one stored value."""
    if typ == "string":
        if isinstance(text, bytes):
            try:
                return text.decode("utf-8")
            except UnicodeDecodeError:
                return text
        return text
    if typ == "boolean":
        if text == "true":
            return True
        if text == "false":
            return False
        raise MigrationError(f"invalid boolean {text!r}")
    if typ == "number":
        raw = text if isinstance(text, bytes) else text.encode()
        value = tonumber(raw.strip())
        if value is None:
            try:
                value = int(raw.strip(), 16) if raw.strip().lower().startswith(b"0x") else None
            except ValueError:
                value = None
        if value is None:
            raise MigrationError(f"invalid number {text!r}")
        return value
    if typ == "json":
        return pjson.loads(text)
    if typ == "xml":
        return from_xml(text)
    raise MigrationError(f"unhandled value type {typ!r}")


def decode_keyval(rows: Iterable[tuple[Any, str, Any]]) -> Any:
    """The value of one keyval store from its ``(key, type, value)`` rows, as ``keyval_store:get``.

    None when there are no rows; a ``list`` when the keys are exactly 1..n.
    """
    result: dict[Any, Any] = {}
    have = False
    for k, t, v in rows:
        have = True
        value = decode_value(t, v)
        if isinstance(k, bytes):
            try:
                k = k.decode("utf-8")
            except UnicodeDecodeError:
                pass
        if k != "":
            result[k] = value
        elif isinstance(value, dict):
            result.update(value)
        elif isinstance(value, list):
            for i, x in enumerate(value, 1):
                if x is not None:
                    result[i] = x
    if not have:
        return None
    n = len(result)
    if n and all(k.__class__ is int for k in result) and all(i in result for i in range(1, n + 1)):
        return [result[i] for i in range(1, n + 1)]
    return result


def decode_archive_row(key: Any, when: Any, with_: Any, typ: str, value: Any) -> dict[str, Any]:
    """The ``.list`` item ``mod_storage_internal``'s ``append`` writes for one archive row."""
    if typ != "xml":
        raise MigrationError(f"archive item {key!r} is of type {typ!r}, not a stanza "
                             "(the filesystem store holds stanzas only)")
    stanza = from_xml(value)
    attr = dict(stanza.get("attr") or {})
    if isinstance(when, float) and when.is_integer():
        when = int(when)
    attr["stamp"] = format_datetime(when)
    stanza["attr"] = attr
    stanza["key"] = key
    stanza["when"] = when
    stanza["with"] = with_
    return stanza
