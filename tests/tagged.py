"""Tagged JSON: values passed between the tests and real Lua, and compared.

The corpus' ``*.expected.json`` files and ``tests/lua/tagged.lua`` describe Lua
values as JSON objects with one key (``{"int": "5"}``, ``{"table": [[k, v], ...]}``).
:func:`canon` turns such a description, or one of our Python values, into a
hashable form in which two values are equal exactly when Lua would hold the
same data: table entries unordered, numbers compared by value (and by type,
integer or float, under Lua 5.4), zeros equal whatever their sign, NaN equal to
NaN.
"""
from __future__ import annotations

import json
import math
from typing import Any

from prosody_store.serialization import BooleanKey

NAN = ("nan",)
MIN_INTEGER = -(1 << 63)


def _number(kind: str, value: int | float) -> tuple:
    if isinstance(value, float) and math.isnan(value):
        return (kind, NAN)
    if value == 0 or value == MIN_INTEGER:
        # Compared by value only: Lua 5.4 reads "-0" as the integer 0 and
        # "-9223372036854775808" as a float; we keep what Prosody wrote there
        # (the float -0.0 and the integer), see README "Numbers".
        return ("by-value", value)
    return (kind, value)


def canon(value: Any, typed_numbers: bool = True) -> tuple:
    """Our Python value in canonical form.  ``typed_numbers=False`` for Lua 5.1/5.2 data."""
    if value is None:
        return ("nil",)
    if isinstance(value, BooleanKey):
        return ("bool", value.value)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return _number("int" if typed_numbers else "num", value)
    if isinstance(value, float):
        return _number("float" if typed_numbers else "num", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, (list, tuple)):
        return ("table", frozenset(
            (canon(i, typed_numbers), canon(v, typed_numbers))
            for i, v in enumerate(value, 1) if v is not None))
    if isinstance(value, dict):
        return ("table", frozenset(
            (canon(k, typed_numbers), canon(v, typed_numbers))
            for k, v in value.items() if v is not None))
    raise TypeError(type(value))


def _float(text: str) -> float:
    return float(text)  # float() reads "inf", "-inf" and "nan" too


def canon_tagged(obj: dict, typed_numbers: bool = True) -> tuple:
    """A tagged JSON value (corpus or ``tagged.lua``) in canonical form."""
    (tag, v), = obj.items()
    if tag == "nil":
        return ("nil",)
    if tag == "bool":
        return ("bool", v)
    if tag == "int":
        return _number("int" if typed_numbers else "num", int(v))
    if tag == "float":
        return _number("float" if typed_numbers else "num", _float(v))
    if tag == "num":
        return _number("num", _float(v))
    if tag == "str":
        return ("str", v)
    if tag == "bytes":
        return ("bytes", bytes.fromhex(v))
    if tag == "raw":
        raw = bytes.fromhex(v)
        try:
            return ("str", raw.decode("utf-8"))
        except UnicodeDecodeError:
            return ("bytes", raw)
    if tag == "table":
        return ("table", frozenset(
            (canon_tagged(k, typed_numbers), canon_tagged(x, typed_numbers)) for k, x in v))
    if tag == "list":
        return ("list", tuple(canon_tagged(x, typed_numbers) for x in v))
    raise ValueError(f"unknown tag {tag!r}")


def to_tagged(value: Any) -> Any:
    """Our Python value as tagged JSON (a JSON-able structure) for ``tagged.lua``."""
    if value is None:
        return {"nil": True}
    if isinstance(value, BooleanKey):
        return {"bool": value.value}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"float": "nan"}
        if math.isinf(value):
            return {"float": "inf" if value > 0 else "-inf"}
        return {"float": repr(value)}
    if isinstance(value, str):
        return {"raw": value.encode("utf-8").hex()}
    if isinstance(value, bytes):
        return {"raw": value.hex()}
    if isinstance(value, (list, tuple)):
        return {"table": [[to_tagged(i), to_tagged(v)] for i, v in enumerate(value, 1) if v is not None]}
    if isinstance(value, dict):
        return {"table": [[to_tagged(k), to_tagged(v)] for k, v in value.items() if v is not None]}
    raise TypeError(type(value))


def tagged_json(value: Any) -> str:
    return json.dumps(to_tagged(value))


def is_utf8(b: bytes) -> bool:
    """Whether the codec reads these bytes as ``str`` (valid UTF-8) rather than ``bytes``."""
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
