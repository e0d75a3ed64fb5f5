"""Lua tables as Python values: the boolean-key markers and the constructor semantics.

Shared by the Lua reader (:mod:`prosody_store.serialization`) and its fast path
for Prosody's own output, so that both build tables by exactly the same rules.
"""
from __future__ import annotations

from typing import Any

# Lua's SETLIST stores positional constructor items in batches of this size;
# it decides whether a positional item or a keyed one for the same index wins.
FIELDS_PER_FLUSH = 50


class BooleanKey:
    """The Lua boolean key ``true`` or ``false`` in a table that also has the number key 1 or 0.

    Only the two instances :data:`TRUE_KEY` and :data:`FALSE_KEY` exist.  They
    are unequal to every other object, so they sit beside the number key in a
    dict.
    """

    __slots__ = ("value",)
    value: bool

    def __new__(cls, value: bool | int) -> "BooleanKey":
        existing = _BOOLEAN_KEYS.get(bool(value))
        if existing is not None:
            return existing
        self = super().__new__(cls)
        object.__setattr__(self, "value", bool(value))
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("BooleanKey is immutable")

    def __reduce__(self) -> tuple[type[BooleanKey], tuple[bool]]:
        return (BooleanKey, (self.value,))

    def __repr__(self) -> str:
        return "TRUE_KEY" if self.value else "FALSE_KEY"


_BOOLEAN_KEYS: dict[bool, BooleanKey] = {}
TRUE_KEY = _BOOLEAN_KEYS[True] = BooleanKey(True)
FALSE_KEY = _BOOLEAN_KEYS[False] = BooleanKey(False)


class TableBuilder:
    """A Lua table constructor being read: Lua's semantics, file order kept.

    Positional items stay in a plain list until a keyed field or a ``nil``
    forces a dict.  Keyed fields are assigned as they come; positional ones
    win over earlier keyed ones for the same index unless Lua had already
    flushed them (every 50 items), exactly as the Lua compiler orders them.
    """

    __slots__ = ("array", "dict", "count", "flushed", "wrapped", "key")

    def __init__(self, key: Any) -> None:
        self.key = key  # where the finished table goes in its parent
        # Exactly one of the two is set: the list until the table becomes a dict.
        self.array: list[Any] | None = []
        self.dict: dict[Any, Any] | None = None
        self.count = 0  # positional items seen
        self.flushed = 0  # positional items Lua has already stored
        self.wrapped = False  # a BooleanKey is among the keys

    def next_field(self) -> None:
        if self.count - self.flushed >= FIELDS_PER_FLUSH:
            self.flushed = self.count

    def positional(self, value: Any) -> None:
        self.next_field()
        self.count += 1
        array = self.array
        if array is not None:  # no dict yet
            if value is not None:
                array.append(value)
                return
            d = self._to_dict(array)
        else:
            # The dict is set whenever the list is not, which mypy cannot follow
            # (and a cast() would cost a call per item).
            d = self.dict  # type: ignore[assignment]
        self._assign(d, self.count, value)

    def keyed(self, key: Any, value: Any) -> None:
        self.next_field()
        d = self.dict
        if d is None:
            # The list is set whenever the dict is not (see positional()).
            d = self._to_dict(self.array)  # type: ignore[arg-type]
        if key.__class__ is int and self.flushed < key <= self.count:
            return  # a positional item not yet flushed will overwrite it
        self._assign(d, key, value)

    def _to_dict(self, array: list[Any]) -> dict[Any, Any]:
        d = self.dict = dict(enumerate(array, 1))
        self.array = None
        return d

    def _assign(self, d: dict[Any, Any], key: Any, value: Any) -> None:
        if key.__class__ is bool or (key.__class__ is int and (key == 0 or key == 1)):
            self._assign_ambiguous(d, key, value)
        elif value is None:
            d.pop(key, None)
        else:
            d[key] = value

    def _assign_ambiguous(self, d: dict[Any, Any], key: bool | int, value: Any) -> None:
        """Assign a key that Python confuses with another Lua key (true/1, false/0)."""
        is_bool = key.__class__ is bool
        marker = BooleanKey(key)
        stored: Any  # the key that holds this slot: marker, key itself or its other spelling
        if is_bool and marker in d:
            stored = marker
        elif key not in d:
            stored = None
        else:
            stored = next((k for k in d if k == key and k.__class__ is not BooleanKey), None)
        if stored is None:
            if value is not None:
                d[key] = value
            return
        if (stored.__class__ is bool) == is_bool or stored is marker:
            if value is None:
                del d[stored]
            else:
                d[stored] = value
            return
        # The other kind of key holds this slot: the boolean becomes a marker.
        if value is None:
            return
        self.wrapped = True
        if is_bool:
            d[marker] = value
        else:
            items = list(d.items())
            d.clear()
            for k, v in items:
                d[marker if k is stored else k] = v
            d[key] = value

    def result(self) -> list[Any] | dict[Any, Any]:
        if self.dict is None:
            return self.array if self.array else {}
        d = self.dict
        if self.wrapped:
            for marker in (TRUE_KEY, FALSE_KEY):
                if marker in d and marker.value not in d:
                    items = list(d.items())
                    d.clear()
                    for k, v in items:
                        d[marker.value if k is marker else k] = v
        n = len(d)
        if n and all(k.__class__ is int for k in d) and min(d) == 1 and max(d) == n:
            return [d[i] for i in range(1, n + 1)]
        return d
