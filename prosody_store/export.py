"""A whole Prosody data directory as JSON Lines, and back: ``export`` and ``import``.

Records
-------
One line per store file, in this member order (``value`` last, so that a list
can be written and read item by item)::

    {"host":"example.com","user":"alice","store":"roster","type":"keyval","value":{...}}
    {"host":"example.com","user":"alice","store":"archive","type":"list","value":[item, ...]}

* ``host`` is ``null`` for Prosody's host-less data (the ``_global``
  directory), ``user`` is ``null`` for a store without user
  (``<host>/<store>.dat``).  A name that is not UTF-8 is ``{"$bytes": ...}``
  as below.  The user name may be empty (the file ``<store>/.dat``, which
  encodes back to itself); host and store names may not.
* ``type`` is ``keyval`` (a ``.dat`` file) or ``list`` (a ``.list`` file; the
  value is the array of its items).  A user can have both in one store: two
  records.
* Order: hosts, then stores, then users (``null`` first), sorted by the bytes
  of their names; ``keyval`` before ``list``.  Table entries are in file
  order within their kind (members, ``$array``, ``$pairs``).  The output is
  therefore a function of the data: export, import, export again gives the
  same bytes.

The restore guarantee
---------------------
Import of what export wrote restores every file export wrote, under its own
name.  What export cannot write so is reported (:func:`plan_export` for
file names, :class:`UnexportableError` and the file errors of
:data:`FILE_ERRORS` while reading), never left out in silence: a file name
Prosody does not spell so, or shadowed by another spelling of the same
names; a ``.dat`` that holds no table; tables nested deeper than Prosody's
writer allows; a damaged or unreadable file.  A file holding no data (empty,
an empty table, no list items; ``item(nil)`` is no item) gets no record, as
Prosody and import remove such files.

Values: typed JSON, lossless
----------------------------
Values are the Lua values Prosody stores, written as plain JSON wherever JSON
can say it exactly, so ``jq '.value.password'`` or ``jq '.value[].when'`` work:

==========================  ==================================================
Lua value                   JSON
==========================  ==================================================
string (UTF-8)              string
string (other bytes)        ``{"$bytes": "<base64>"}``
integer                     number without ``.`` or exponent (``42``)
float, finite               number with ``.`` or exponent, shortest
                            round-trip form (``1.0``, ``0.1``, ``-0.0``,
                            ``1e+300``): never confused with an integer
float inf, -inf, NaN        ``{"$float": "inf"}``, ``"-inf"``, ``"nan"``
true, false                 ``true``, ``false``
table with keys 1..n        array
any other table             object: its string keys are members, in file
                            order; then, if the table has keys 1..n besides
                            (n >= 1, as many as are consecutive), their
                            values as ``"$array": [...]``; then every other
                            entry (other number keys, boolean and
                            byte-string keys, and string keys that start
                            with ``$``) in file order as
                            ``"$pairs": [[key, value], ...]``
==========================  ==================================================

So a stored stanza is ``{"name": "body", "attr": {}, "$array": ["Hi!"]}``, a
roster is ``{"bob@example.com": {...}, "$pairs": [[false, {"version": 3}]]}``
and a table holding both ``[true]`` and ``[1]`` is ``{"$array": ["one"],
"$pairs": [[true, "t"]]}``.  Member names starting with ``$`` are reserved:
an object whose only member is ``$bytes`` or ``$float`` is that scalar; other
``$`` members than ``$array`` and ``$pairs`` are errors.  (``$array`` and
``$pairs`` play the part of Prosody's ``__array`` and ``__hash``, whose
spelling real data could hold as string keys.)  On import, an integral float
key is the integer key (as in Lua), a ``null`` member is no entry,
``NaN``/``Infinity`` (Python's JSON extension) are accepted as floats, and
the entries of ``$array`` and ``$pairs`` are put where those members stand
among the others (so ``{"$pairs": [[false, {}]], "bob": {}}`` writes the
``[false]`` entry first).  ``false`` is a list item (Prosody's ``list_store``
writes ``item(false)``); ``null`` is not.

What the files themselves cannot keep is not kept by any tool: Prosody
writes a float with an integral value (``3.0``) as ``3``, which Lua reads as
an integer, so such a float (only found in hand-edited files) comes back as
an integer after import.

Streaming
---------
Export never holds a list in memory: items are read from the ``.list`` in
blocks (:class:`~prosody_store.datamanager.ListView`) and written one by one.
Import reads a list record item by item (from the record's header, when the
members are in the order above; a record in another member order is read
whole) and serialises the items straight into a temporary file in the
target directory, renamed over the list when the record is complete, under
the store directory's lock, with a fresh ``.lidx``.  A bad item, or a killed
import, leaves the previous list untouched.  A keyval record is read whole,
as Prosody reads a ``.dat``.
"""
from __future__ import annotations

import base64
import codecs
import itertools
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator, Literal, cast, overload

from prosody_store import _speedups
from prosody_store.datamanager import CorruptFileError, DataManager, StoreFile
from prosody_store.errors import Error
from prosody_store.paths import (
    GLOBAL_HOST,
    InvalidNameError,
    Name,
    NameTooLongError,
    StoreError,
    decode,
    name_bytes,
)
from prosody_store.numbers import INT_MAX, INT_MIN
from prosody_store.serialization import (
    FALSE_KEY,
    TRUE_KEY,
    WRITE_MAX_DEPTH,
    BooleanKey,
    LuaSyntaxError,
    dump_dat,
    dump_item,
    iter_list,
)

__all__ = [
    "FILE_ERRORS",
    "ExportPlan",
    "Exporter",
    "ImportStats",
    "Record",
    "RecordError",
    "RecordReader",
    "UnexportableError",
    "check_exportable",
    "check_keyval",
    "decode_value",
    "encode_value",
    "export",
    "file_problem",
    "import_records",
    "iter_store_files",
    "plan_export",
    "read_records",
    "record_chunks",
    "store_file_path",
]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                            check_circular=False)
_encode_json = _encoder.encode


class RecordError(Error, ValueError):
    """An import line that is not a valid record (carries the line number)."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"input line {lineno}: {message}")
        self.lineno = lineno


class UnexportableError(Error, ValueError):
    """A store file that export cannot write as a record that import restores.

    ``path`` is the file (None while a value is being converted, before the
    caller knows the file), ``reason`` says why.
    """

    def __init__(self, path: str | None, reason: str) -> None:
        super().__init__(reason if path is None else f"{path}: {reason}")
        self.path = path
        self.reason = reason


# ---------------------------------------------------------------------------
# Values


def _special_float(v: float) -> dict[str, str]:
    return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}


_TOO_DEEP = (f"tables nested deeper than {WRITE_MAX_DEPTH}, which Prosody cannot store "
             "(import could not write it back)")


def to_json(v: Any, depth: int = 0) -> Any:
    """A stored value as a structure ``json`` encodes to the typed JSON above.

    ``depth`` is the number of tables around ``v``.  A table nested deeper
    than Prosody's writer allows (:data:`~prosody_store.serialization.WRITE_MAX_DEPTH`)
    raises :class:`UnexportableError`: import could not write it back.
    """
    t = v.__class__
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return v if math.isfinite(v) else _special_float(v)
    if t is list or t is tuple:
        if depth >= WRITE_MAX_DEPTH:
            raise UnexportableError(None, _TOO_DEEP)
        return [to_json(x, depth + 1) for x in v]
    if t is dict or isinstance(v, dict):
        if depth >= WRITE_MAX_DEPTH:
            raise UnexportableError(None, _TOO_DEEP)
        plain: dict[str, Any] = {}
        rest = None
        for k, x in v.items():
            if k.__class__ is str and not k.startswith("$"):
                plain[k] = to_json(x, depth + 1)
            else:
                if rest is None:
                    rest = []
                rest.append((k, x))
        if rest is not None:
            ints = {k for k, _ in rest if k.__class__ is int}
            n = 0
            while n + 1 in ints:
                n += 1
            if n:
                plain["$array"] = [to_json(v[i], depth + 1) for i in range(1, n + 1)]
            pairs = [[to_json(k), to_json(x, depth + 1)] for k, x in rest
                     if not (k.__class__ is int and 1 <= k <= n)]
            if pairs:
                plain["$pairs"] = pairs
        return plain
    if t is bytes or t is bytearray:
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, BooleanKey):
        return v.value
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return to_json(float(v))
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (list, tuple)):
        return to_json(list(v), depth)
    raise TypeError(f"cannot export a {t.__name__}")


def check_exportable(value: Any) -> None:
    """Raise :class:`UnexportableError` if :func:`to_json` would refuse ``value``
    (tables nested deeper than Prosody's writer allows), without converting it."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: Iterable[Any] = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        if depth >= WRITE_MAX_DEPTH:
            raise UnexportableError(None, _TOO_DEEP)
        stack.extend((x, depth + 1) for x in children if isinstance(x, (dict, list, tuple)))


def encode_value(v: Any) -> str:
    """A stored value as typed JSON text (compact, UTF-8)."""
    return _encode_json(to_json(v))


_cwriter = _speedups.writer
"""The compiled writer (prosody_store._cwriter), or None where it is not built
or ``PROSODY_STORE_PURE=1``.  Its ``export_json`` gives the bytes of
:func:`encode_value` straight from the value, with no conversion in Python,
or None where it is not sure (then :func:`encode_value` runs).  A module
global, so that tests can set it to None to run the pure-Python code alone."""


def _encode_utf8(v: Any) -> bytes:
    """``encode_value(v).encode("utf-8")``, by the compiled writer where it can."""
    if _cwriter is not None:
        data = _cwriter.export_json(v)
        if data is not None:
            return cast(bytes, data)
    return encode_value(v).encode("utf-8")


class _Obj(list[tuple[str, Any]]):
    """A JSON object as the list of its (name, value) pairs, in input order."""


def _bad(message: str) -> ValueError:
    return ValueError(message)


def _scalar_escape(obj: _Obj) -> tuple[bool, Any]:
    if len(obj) != 1:
        return False, None
    name, x = obj[0]
    if name == "$bytes":
        if not isinstance(x, str):
            raise _bad('"$bytes" must be a base64 string')
        try:
            return True, base64.b64decode(x.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise _bad(f'"$bytes": {x[:40]!r} is not base64') from None
    if name == "$float":
        if x == "nan":
            return True, math.nan
        if x in ("inf", "-inf"):
            return True, float(x)
        raise _bad(f'"$float" must be "inf", "-inf" or "nan", not {x!r}')
    return False, None


def _key(k: Any) -> Any:
    if k is None:
        raise _bad("a table key cannot be null")
    if isinstance(k, float):
        if k != k:
            raise _bad("a table key cannot be NaN")
        if k.is_integer() and -2 ** 63 <= k < 2 ** 63:
            return int(k)  # Lua keeps an integral float key as the integer
    if isinstance(k, (list, dict)):
        raise _bad("a table cannot be a table key here")
    return k


def decode_value(j: Any, _depth: int = 0) -> Any:
    """Typed JSON (as parsed with pairs kept, see :func:`parse_json`) to a stored value.

    ``_depth`` is the number of tables around ``j``: tables nested deeper
    than Prosody's writer allows, and integers outside 64 bits, are errors
    (``ValueError``), as they would be when the value is written.
    """
    if _cwriter is not None and _depth == 0:
        decoded = _cwriter.import_value(j, _Obj)
        if decoded is not None:
            return decoded[0]
    if j is None or j.__class__ in (str, int, bool, float):
        if j.__class__ is str and _has_surrogate(j):
            raise _bad("a string holds a lone surrogate (\\ud800-\\udfff)")
        if j.__class__ is int and not INT_MIN <= j <= INT_MAX:
            raise _bad("an integer outside the 64-bit range Lua stores")
        return j
    if _depth >= WRITE_MAX_DEPTH and (j.__class__ is list or (
            j.__class__ is _Obj and not _scalar_escape(j)[0])):
        raise _bad(f"tables nested deeper than {WRITE_MAX_DEPTH}, which Prosody cannot store")
    if j.__class__ is list:
        out = []
        for x in j:
            if x is None:
                raise _bad("null inside an array (a Lua list cannot hold nil)")
            out.append(decode_value(x, _depth + 1))
        return out
    if j.__class__ is _Obj:
        is_scalar, value = _scalar_escape(j)
        if is_scalar:
            return value
        return _decode_table(j, _depth)
    raise _bad(f"unexpected JSON value {j!r}")


def _decode_table(j: _Obj, depth: int) -> dict[Any, Any]:
    """An object's entries, in member order: ``$array`` and ``$pairs`` put
    theirs where they stand among the other members."""
    groups: list[tuple[str, Any]] = []
    for name, x in j:
        if name == "$array":
            if x.__class__ is not list:
                raise _bad('"$array" must be an array')
            if any(v is None for v in x):
                raise _bad('null inside "$array" (a Lua table cannot hold nil)')
            groups.append(("array", x))
        elif name == "$pairs":
            if x.__class__ is not list or not all(
                    p.__class__ is list and len(p) == 2 for p in x):
                raise _bad('"$pairs" must be an array of [key, value] arrays')
            groups.append(("pairs", [(_key(decode_value(k, depth + 1)), v) for k, v in x]))
        elif name.startswith("$"):
            raise _bad(f'unknown member {name!r} (names starting with "$" are reserved)')
        elif _has_surrogate(name):
            raise _bad("a member name holds a lone surrogate")
        else:
            groups.append(("member", (name, x)))
    # A boolean key sits beside the number key it would collide with as a marker.
    numbers = {k for kind, g in groups if kind == "pairs" for k, _ in g
               if k.__class__ in (int, float)}
    if any(kind == "array" and g for kind, g in groups):
        numbers.add(1)
    table: dict[Any, Any] = {}
    for kind, g in groups:
        if kind == "member":
            entries: Iterable[tuple[Any, Any]] = (g,)
        elif kind == "array":
            entries = enumerate(g, 1)
        else:
            entries = ((TRUE_KEY if k is True and 1 in numbers else
                        FALSE_KEY if k is False and 0 in numbers else k, v) for k, v in g)
        for k, v in entries:
            if v is None:
                table.pop(k, None)  # null: no entry
            else:
                table[k] = decode_value(v, depth + 1)
    return table


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(s: str) -> bool:
    return _SURROGATE.search(s) is not None


_decoder = json.JSONDecoder(object_pairs_hook=_Obj)


def parse_json(text: str) -> Any:
    """Parse JSON text keeping objects as :class:`_Obj` (pairs in order)."""
    return _decoder.decode(text)


def encode_name(name: Name | None) -> str:
    if name is None:
        return "null"
    return _encode_json(to_json(name))


@overload
def decode_name(j: Any, what: str, nullable: Literal[False], empty_ok: bool = False) -> Name: ...


@overload
def decode_name(j: Any, what: str, nullable: bool, empty_ok: bool = False) -> Name | None: ...


def decode_name(j: Any, what: str, nullable: bool, empty_ok: bool = False) -> Name | None:
    """A host, user or store name of a record.

    ``empty_ok`` (users): the empty name is a name, the file ``<store>/.dat``,
    which Prosody's path encoding maps back to the same file.
    """
    if j is None:
        if nullable:
            return None
        raise _bad(f'"{what}" cannot be null')
    if isinstance(j, str) and (j or empty_ok):
        if _has_surrogate(j):
            raise _bad(f'"{what}" holds a lone surrogate')
        return j
    if isinstance(j, _Obj):
        is_scalar, value = _scalar_escape(j)
        if is_scalar and isinstance(value, bytes) and (value or empty_ok):
            return value
    raise _bad(f'"{what}" must be a {"" if empty_ok else "non-empty "}string, '
               '{"$bytes": ...}' + (" or null" if nullable else ""))


# ---------------------------------------------------------------------------
# Walking a data directory


def host_names(data_path: str) -> list[Name | None]:
    """The hosts of a data directory (None for ``_global``), sorted."""
    return DataManager(data_path).hosts()


def store_names(dm: DataManager, host: Name | None) -> list[Name]:
    """Every store of a host, sorted (:meth:`DataManager.store_names`)."""
    return dm.store_names(host)


def iter_store_files(dm: DataManager, hosts: Iterable[Name | None] | None = None,
                     stores: Iterable[Name] | None = None) -> Iterator[StoreFile]:
    """Every store file, in export order (:meth:`DataManager.iter_files`), each once."""
    seen: set[StoreFile] = set()
    for f in dm.iter_files(hosts, stores):
        if f not in seen:  # two spellings of one host directory list it twice
            seen.add(f)
            yield f


@dataclass
class ExportPlan:
    """What an export of a data directory reads, and the files it cannot restore.

    ``files`` are read in this order; ``problems`` are data files on disk
    that no record could restore (see :func:`plan_export`), each an
    :class:`UnexportableError`.
    """

    files: list[StoreFile]
    problems: list[UnexportableError] = field(default_factory=list)


_DATA_FILE = re.compile(rb"(.*)\.(dat|list)\Z", re.DOTALL)


def plan_export(dm: DataManager, hosts: Iterable[Name | None] | None = None,
                stores: Iterable[Name] | None = None) -> ExportPlan:
    """The store files to export, and the data files that no record could restore.

    A record names a file by its decoded host, store and user names, and
    import writes the file Prosody's path encoding makes of them.  So a data
    file (``<host>/<store>/<user>.dat`` or ``.list``, ``<host>/<store>.dat``
    or ``.list``) whose names do not encode back to the file that is read
    for them is a problem: a name not spelled as Prosody spells it
    (``al-ice.dat`` for ``al%2dice.dat``, uppercase hex, a raw byte that is
    not a letter or digit), or a file shadowed by another spelling of the
    same names (the file read is the other one).  A store directory in the
    unencoded 0.9/0.10 spelling is read, and restored in the current
    spelling, where Prosody 0.11 and later look.
    """
    host_list = None if hosts is None else list(hosts)
    store_list = None if stores is None else list(stores)
    files = []
    read: set[str] = set()
    for f in iter_store_files(dm, host_list, store_list):
        try:
            path = dm.existing_path(f.user, f.host, f.store, f.ext)
        except StoreError:
            path = None
        if path is not None:  # else names derived from a file of another spelling
            files.append(f)
            read.add(path)
    problems = [UnexportableError(path, _stray_reason(dm, host, store, user, ext))
                for path, host, store, user, ext in _data_files(dm, host_list, store_list)
                if path not in read]
    return ExportPlan(files, problems)


def _data_files(dm: DataManager, hosts: list[Name | None] | None, stores: list[Name] | None
                ) -> Iterator[tuple[str, Name | None, Name, Name | None, str]]:
    """Every data file on disk under the hosts and stores asked for, by its decoded
    names: ``(path, host, store, user, ext)``.  Entries starting with ``.`` in the
    data and host directories are not data (as in Prosody's listings)."""
    want_hosts = None if hosts is None else {
        None if h is None else name_bytes(h) for h in hosts}
    want_stores = None if stores is None else {name_bytes(s) for s in stores}
    root = os.fsencode(dm.data_path)
    for entry in sorted(_listdir(root)):
        host_dir = os.path.join(root, entry)
        if entry.startswith(b".") or not os.path.isdir(host_dir):
            continue
        host = None if entry == GLOBAL_HOST.encode() else decode(entry)
        if want_hosts is not None and (None if host is None else name_bytes(host)) \
                not in want_hosts:
            continue
        for sub in sorted(_listdir(host_dir)):
            path = os.path.join(host_dir, sub)
            if sub.startswith(b"."):
                continue
            if os.path.isdir(path):
                store = decode(sub)
                if want_stores is not None and name_bytes(store) not in want_stores:
                    continue
                for name in sorted(_listdir(path)):
                    m = _DATA_FILE.match(name)
                    file_path = os.path.join(path, name)
                    if m and os.path.isfile(file_path):
                        yield (os.fsdecode(file_path), host, store, decode(m.group(1)),
                               m.group(2).decode())
                continue
            m = _DATA_FILE.match(sub)
            if m and os.path.isfile(path):
                store = decode(m.group(1))
                if want_stores is None or name_bytes(store) in want_stores:
                    yield os.fsdecode(path), host, store, None, m.group(2).decode()


def _listdir(directory: bytes) -> list[bytes]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stray_reason(dm: DataManager, host: Name | None, store: Name, user: Name | None,
                  ext: str) -> str:
    try:
        canonical = dm.getpath(user, host, store, ext)
    except StoreError as err:
        return f"no record can name this file ({err})"
    shown = os.path.relpath(canonical, dm.data_path)
    if os.path.lexists(canonical):
        return f"shadowed by {shown}, which has the same names and is the one read"
    return (f"a name not spelled as Prosody spells it (it would be {shown}): import "
            "could not restore the file under this name")


# ---------------------------------------------------------------------------
# Export


def _header(f: StoreFile) -> str:
    return (f'{{"host":{encode_name(f.host)},"user":{encode_name(f.user)},'
            f'"store":{encode_name(f.store)},"type":"{f.type}","value":')


def store_file_path(dm: DataManager, f: StoreFile | None) -> str:
    """The path of the file a :class:`StoreFile` is read from (for messages)."""
    if f is None:
        return dm.data_path
    try:
        return (dm.existing_path(f.user, f.host, f.store, f.ext)
                or dm.getpath(f.user, f.host, f.store, f.ext))
    except StoreError:
        return os.path.join(dm.data_path, "?")


def _no_data(value: Any) -> bool:
    """Whether a keyval value is "no data": nothing, or an empty table."""
    return value is None or (isinstance(value, (dict, list)) and not value)


def check_keyval(value: Any, dm: DataManager, f: StoreFile) -> None:
    """Raise :class:`UnexportableError` for a ``.dat`` value that is not a table.

    Prosody stores tables (its ``store`` fails on anything else, after
    writing it), and import writes only tables, as the HTTP API does.
    """
    if value is not None and not isinstance(value, (dict, list)):
        kind = ("boolean" if isinstance(value, bool) else
                "number" if isinstance(value, (int, float)) else "string")
        raise UnexportableError(store_file_path(dm, f),
                                f"holds a {kind}, not a table: Prosody stores only tables "
                                "here, and import writes only tables")


def _encode_in(dm: DataManager, f: StoreFile, value: Any) -> bytes:
    try:
        return _encode_utf8(value)
    except UnexportableError as err:
        raise UnexportableError(store_file_path(dm, f), err.reason) from None


def record_chunks(dm: DataManager, f: StoreFile) -> Iterator[bytes]:
    """The bytes of one record, in pieces (a list's items in batches, never the
    whole list at once).

    No pieces when the file holds no data: it vanished meanwhile, or holds an
    empty table, no items (``item(nil)`` is no item, as Prosody's loader sees
    it) or nothing at all.  Prosody removes such files, and so would import.
    Raises :class:`~prosody_store.datamanager.CorruptFileError` for a damaged
    file, ``OSError`` for one that cannot be read and
    :class:`UnexportableError` for a value import could not write back (not a
    table, or nested too deeply).
    """
    if f.type == "keyval":
        value = dm.load(f.user, f.host, f.store)
        if not _no_data(value):
            check_keyval(value, dm, f)
            yield _header(f).encode("utf-8") + _encode_in(dm, f, value) + b"}\n"
        return
    items = _list_items(dm, f)
    started = False
    exhausted = False
    while not exhausted:
        prefix = b"," if started else _header(f).encode("utf-8") + b"["
        data, count, exhausted = _encode_next(dm, f, items, prefix)
        if count:
            started = True
            yield data
    if started:
        yield b"]}\n"


_CHUNK_BYTES = 1 << 16
"""About how many bytes of a list record are encoded into one chunk."""


def _encode_next(dm: DataManager, f: StoreFile, items: Iterator[Any],
                 prefix: bytes) -> tuple[bytes, int, bool]:
    """``prefix``, then the typed JSON of the next items joined by commas, up to
    about :data:`_CHUNK_BYTES`: ``(data, number of items, whether they are all read)``.

    Items are taken one at a time (None is no item), so that only one item
    and one chunk are held, whatever the items' sizes.
    """
    if _cwriter is not None:
        data, count, declined, exhausted = _cwriter.export_json_pull(items, prefix, _CHUNK_BYTES)
        if declined is None:
            return data, count, exhausted
        # an item the compiled writer leaves to encode_value (which may raise)
        pure = _encode_in(dm, f, declined[0])
        return data + (b"," if count else b"") + pure, count + 1, False
    pieces: list[bytes] = []
    size = 0
    for item in items:
        if item is None:
            continue
        pieces.append(_encode_in(dm, f, item))
        size += len(pieces[-1])
        if size >= _CHUNK_BYTES:
            return prefix + b",".join(pieces), len(pieces), False
    return prefix + b",".join(pieces), len(pieces), True


class _FilePrefix:
    """The first ``size`` bytes of an open file, as a binary stream to read once."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        data = os.pread(self.fd, left if n < 0 else min(n, left), self.pos) if left > 0 else b""
        self.pos += len(data)
        return data


def _list_items(dm: DataManager, f: StoreFile) -> Iterator[Any]:
    """The items of a list as ``dm.list_open`` gives them, read straight through.

    The list is read from start to end as it was when opened (an append
    meanwhile is not read), without its index, which the view would build
    (for every list Prosody before 13 wrote) just to be read in order.  At
    anything unusual (no file, a read error, a damaged list), the view takes
    over after the items already given, so that errors are the view's own.
    """
    done = 0
    try:
        path = dm.existing_path(f.user, f.host, f.store, "list")
        if path is not None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                stream = _FilePrefix(fd, os.fstat(fd).st_size)
                for item in iter_list(cast("IO[bytes]", stream)):  # read() is all it uses
                    yield item
                    done += 1
            finally:
                os.close(fd)
            return
    except Exception:  # noqa: BLE001 -- the view below reports it as it always has
        pass
    with dm.list_open(f.user, f.host, f.store) as view:
        yield from itertools.islice(view, done, None)


def export_file(dm: DataManager, f: StoreFile, write: Callable[[bytes], Any]) -> bool:
    """Write one record; False if the file holds no data (or vanished meanwhile)."""
    written = False
    for chunk in record_chunks(dm, f):
        write(chunk)
        written = True
    return written


FILE_ERRORS = (CorruptFileError, LuaSyntaxError, UnexportableError, OSError)
"""What reading one store file for export can raise (:func:`record_chunks`)."""


def file_problem(err: BaseException, fallback: str) -> tuple[str, str]:
    """``(where, reason)`` of one of :data:`FILE_ERRORS`: the file (for a damaged
    one ``path:line:column``) and why it cannot be exported."""
    if isinstance(err, CorruptFileError):
        msg = getattr(err, "msg", None) or str(err.error)
        msg = str(msg).splitlines()[0] if str(msg) else "syntax error"
        return f"{err.filename}:{err.lineno}:{err.colno}", msg
    if isinstance(err, UnexportableError):
        return err.path or fallback, err.reason
    if isinstance(err, OSError) and err.strerror:
        return os.fsdecode(err.filename) if err.filename is not None else fallback, err.strerror
    text = str(err).splitlines()
    return fallback, text[0] if text and text[0] else type(err).__name__


_SPOOL_MEMORY = 8 << 20


class Exporter:
    """The records of some store files as one stream of bytes (:meth:`chunks`).

    Without ``on_damaged`` the first file that cannot be exported raises
    (one of :data:`FILE_ERRORS`), part of the output having been produced.
    With it, such a file is reported as ``on_damaged(path, reason)`` and
    skipped, and its record is left out entirely: a list record is completed
    (in memory, past 8 MiB in a temporary file) before any of it is passed
    on.  ``records`` counts the records written, ``skipped`` the files left out.
    """

    def __init__(self, dm: DataManager, files: list[StoreFile],
                 on_damaged: Callable[[str, str], None] | None = None,
                 progress: Callable[[StoreFile], None] | None = None) -> None:
        self.dm = dm
        self.files = files
        self.on_damaged = on_damaged
        self.progress = progress
        self.records = 0
        self.skipped = 0
        self.current: StoreFile | None = None  # the file being read

    def chunks(self) -> Iterator[bytes]:
        for f in self.files:
            self.current = f
            if self.on_damaged is None:
                written = False
                for chunk in record_chunks(self.dm, f):
                    written = True
                    yield chunk
                self.records += written
            else:
                yield from self._whole_record(f, self.on_damaged)
            if self.progress:
                self.progress(f)

    def _whole_record(self, f: StoreFile,
                      on_damaged: Callable[[str, str], None]) -> Iterator[bytes]:
        pieces = record_chunks(self.dm, f)
        with tempfile.SpooledTemporaryFile(_SPOOL_MEMORY) as spool:
            while True:
                try:  # errors of reading the file; those of the spool are not its fault
                    chunk = next(pieces, None)
                except FILE_ERRORS as err:
                    self.skipped += 1
                    on_damaged(*file_problem(err, store_file_path(self.dm, f)))
                    return
                if chunk is None:
                    break
                spool.write(chunk)
            if not spool.tell():
                return
            self.records += 1
            spool.seek(0)
            while True:
                block = spool.read(1 << 20)
                if not block:
                    break
                yield block


def export(dm: DataManager, out: IO[bytes], hosts: Iterable[Name | None] | None = None,
           stores: Iterable[Name] | None = None,
           progress: Callable[[StoreFile], None] | None = None,
           files: list[StoreFile] | None = None,
           on_damaged: Callable[[str, str], None] | None = None) -> int:
    """Write the records of a data directory to ``out``; returns how many.

    Data files that no record could restore (:func:`plan_export`) and files
    that cannot be exported raise (:class:`UnexportableError`, ...), unless
    ``on_damaged(path, reason)`` is given: then they are reported to it and
    left out.  With ``files`` only those are written, unchecked.
    """
    if files is None:
        plan = plan_export(dm, hosts, stores)
        for problem in plan.problems:
            if on_damaged is None:
                raise problem
            on_damaged(cast(str, problem.path), problem.reason)  # plan_export names the file
        files = plan.files
    run = Exporter(dm, files, on_damaged, progress)
    for chunk in run.chunks():
        out.write(chunk)
    return run.records


# ---------------------------------------------------------------------------
# Reading records


@dataclass
class Record:
    lineno: int
    host: Name | None
    user: Name | None
    store: Name
    type: str
    value: Any = None  # keyval: the value; list: None, see ``items``
    items: Iterator[Any] | None = None  # list: the items, streamed


_NAME_RE = r'(null|"(?:[^"\\]|\\.)*"|\{"\$bytes":"[A-Za-z0-9+/=]*"\})'
_HEADER = re.compile(r'[ \t\r]*\{"host":' + _NAME_RE + r',"user":' + _NAME_RE
                     + r',"store":' + _NAME_RE + r',"type":"list","value":\[')
_WS = re.compile(r"[ \t\r]*")
# The pattern matches the empty string, so its match is never None.
_WS_MATCH = cast("Callable[[str, int], re.Match[str]]", _WS.match)
_CHUNK = 1 << 20


class _Input:
    """A UTF-8 text stream read in chunks, with a cursor and line numbers."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.lineno = 0  # of the record being read
        self.bytes_read = 0

    def fill(self, at_least: int = _CHUNK) -> bool:
        """Read more; False at end of input."""
        if self.eof:
            return False
        if self.pos > _CHUNK:
            self.buf = self.buf[self.pos:]
            self.pos = 0
        raw = self.f.read(max(at_least, _CHUNK))
        self.bytes_read += len(raw)
        try:
            text = self.dec.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise RecordError(self.lineno, "not UTF-8") from None
        if not raw:
            self.eof = True
        self.buf += text
        return True

    def line(self) -> str | None:
        """The rest of the current line (without the newline), or None at end of input."""
        while True:
            i = self.buf.find("\n", self.pos)
            if i >= 0:
                text = self.buf[self.pos:i]
                self.pos = i + 1
                return text
            if not self.fill(len(self.buf) - self.pos):
                if self.pos >= len(self.buf):
                    return None
                text = self.buf[self.pos:]
                self.pos = len(self.buf)
                return text

    def ensure(self, n: int) -> None:
        """Try to have ``n`` characters (or the rest of the line) after the cursor."""
        while (len(self.buf) - self.pos < n and self.buf.find("\n", self.pos) < 0
               and self.fill()):
            pass

    def skip_ws(self) -> None:
        while True:
            m = _WS_MATCH(self.buf, self.pos)
            self.pos = m.end()
            if self.pos < len(self.buf) or not self.fill():
                return

    def peek(self) -> str:
        self.skip_ws()
        return self.buf[self.pos:self.pos + 1]

    def value(self) -> Any:
        """One JSON value at the cursor (read in as many chunks as it needs)."""
        self.skip_ws()
        want = _CHUNK
        while True:
            try:
                value, end = _decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                nl = self.buf.find("\n", self.pos)
                if (0 <= nl < err.pos or self.eof) or not self.fill(want):
                    raise RecordError(self.lineno, f"bad JSON: {err.msg}") from None
                want *= 2
                continue
            except (ValueError, RecursionError) as err:
                raise RecordError(self.lineno, _parse_failure(err)) from None
            if end >= len(self.buf) and not self.eof:
                self.fill(want)  # a number may go on in the next chunk
                want *= 2
                continue
            self.pos = end
            return value


def _parse_failure(err: BaseException) -> str:
    """What went wrong when the JSON parser raised something else than a syntax error."""
    if isinstance(err, RecursionError):
        return "bad JSON: nested too deeply"
    # The only other ValueError of the parser: int() of a numeral over Python's digit limit.
    return "a number with too many digits (Lua stores 64-bit integers and doubles)"


def parse_line(text: str, lineno: int) -> Any:
    """:func:`parse_json` of one input line; every failure a :class:`RecordError`."""
    try:
        return parse_json(text)
    except json.JSONDecodeError as err:
        raise RecordError(lineno, f"bad JSON: {err.msg} (column {err.colno})") from None
    except (ValueError, RecursionError) as err:
        raise RecordError(lineno, _parse_failure(err)) from None


_MEMBERS = ("host", "user", "store", "type", "value")


def _record_from_json(obj: Any, lineno: int) -> Record:
    if not isinstance(obj, _Obj):
        raise RecordError(lineno, "a record must be a JSON object")
    members = dict(obj)
    if len(members) != len(obj):
        names = [name for name, _ in obj]
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise RecordError(lineno, f"member {twice!r} appears twice")
    unknown = set(members) - set(_MEMBERS)
    if unknown:
        raise RecordError(lineno, f"unknown member {sorted(unknown)[0]!r}")
    for key in _MEMBERS:
        if key not in members:
            raise RecordError(lineno, f'missing "{key}"')
    try:
        host = decode_name(members["host"], "host", True)
        user = decode_name(members["user"], "user", True, empty_ok=True)
        store = decode_name(members["store"], "store", False)
        typ = members["type"]
        if typ.__class__ is not str or typ not in ("keyval", "list"):
            raise _bad('"type" must be "keyval" or "list"')
        raw = members["value"]
        if typ == "list":
            if raw.__class__ is not list and not (raw.__class__ is _Obj and not raw):
                raise _bad('a list record\'s "value" must be an array')
            if any(x is None for x in raw):
                raise _bad("a list item cannot be null")
            items = [decode_value(x) for x in raw]
            return Record(lineno, host, user, store, typ, None, iter(items))
        value = decode_value(raw)
    except RecordError:
        raise
    except ValueError as err:
        raise RecordError(lineno, str(err)) from None
    if value is not None and not isinstance(value, (dict, list)):
        raise RecordError(lineno, "a keyval value must be a table (object or array)")
    return Record(lineno, host, user, store, typ, value)


def _stream_items(inp: _Input, lineno: int) -> Iterator[Any]:
    first = True
    while True:
        c = inp.peek()
        if c == "]":
            inp.pos += 1
            break
        if not first:
            if c != ",":
                raise RecordError(lineno, "',' or ']' expected in the list")
            inp.pos += 1
        first = False
        raw = inp.value()
        if raw is None:
            raise RecordError(lineno, "a list item cannot be null")
        try:
            yield decode_value(raw)
        except ValueError as err:
            raise RecordError(lineno, str(err)) from None
    if inp.peek() != "}":
        raise RecordError(lineno, "'}' expected after the list")
    inp.pos += 1
    rest = inp.line()
    if rest is not None and rest.strip():
        raise RecordError(lineno, "extra text after the record")


class RecordReader:
    """The records of a JSON Lines stream (iterate over it).

    A list record's ``items`` is an iterator that reads the input as it goes:
    exhaust it before asking for the next record.  ``bytes_read`` is how far
    the input has been read, ``bytes_done`` how far its records have been
    taken (read ahead of by up to a chunk; characters not yet taken are
    counted as one byte each, close enough for a progress display).
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._inp = _Input(f)

    @property
    def bytes_read(self) -> int:
        return self._inp.bytes_read

    @property
    def bytes_done(self) -> int:
        inp = self._inp
        return max(inp.bytes_read - (len(inp.buf) - inp.pos), 0)

    def __iter__(self) -> Iterator[Record]:
        return _read(self._inp)


def read_records(f: IO[bytes]) -> Iterator[Record]:
    """The records of a JSON Lines stream (see :class:`RecordReader`)."""
    return iter(RecordReader(f))


def _read(inp: _Input) -> Iterator[Record]:
    while True:
        inp.lineno += 1
        inp.ensure(4096)
        m = _HEADER.match(inp.buf, inp.pos)
        if m:
            lineno = inp.lineno
            try:
                host = decode_name(parse_line(m.group(1), lineno), "host", True)
                user = decode_name(parse_line(m.group(2), lineno), "user", True, empty_ok=True)
                store = decode_name(parse_line(m.group(3), lineno), "store", False)
            except RecordError:
                raise
            except ValueError as err:
                raise RecordError(lineno, str(err)) from None
            inp.pos = m.end()
            items = _stream_items(inp, lineno)
            yield Record(lineno, host, user, store, "list", None, items)
            for _ in items:  # whatever the consumer left
                pass
            continue
        text = inp.line()
        if text is None:
            return
        if not text.strip():
            continue
        yield _record_from_json(parse_line(text, inp.lineno), inp.lineno)


# ---------------------------------------------------------------------------
# Import


@dataclass
class ImportStats:
    records: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    items: int = 0


def replace_list_stream(dm: DataManager, user: Name | None, host: Name | None, store: Name,
                        items: Iterable[Any], dry_run: bool = False) -> int:
    """Replace a list with ``items``, serialised straight into a temporary file.

    :meth:`DataManager.list_store_stream`: under the store directory's lock,
    the list and a fresh ``.lidx`` are renamed into place when all items are
    written; a bad item leaves the old list untouched.  With ``dry_run`` the
    items are only serialised.  Returns the number of items (0 removes the list).
    """
    checked = _checked_items(items)
    if not dry_run:
        return dm.list_store_stream(user, host, store, checked)
    count = 0
    for item in checked:
        dump_item(item)
        count += 1
    return count


def _checked_items(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        if item is None:  # false is an item: Prosody's list_store writes item(false)
            raise ValueError("a list item cannot be null")
        yield item


def import_record(dm: DataManager, rec: Record, stats: ImportStats, dry_run: bool) -> None:
    """Write one record (see :func:`import_records`)."""
    try:
        _import_record(dm, rec, stats, dry_run)
    except (InvalidNameError, NameTooLongError) as err:
        raise RecordError(rec.lineno, str(err)) from None


def _import_record(dm: DataManager, rec: Record, stats: ImportStats, dry_run: bool) -> None:
    stats.records += 1
    dm.getpath(rec.user, rec.host, rec.store, "list" if rec.type == "list" else "dat")  # names
    if rec.type == "list":
        try:
            items = cast("Iterator[Any]", rec.items)  # a list record always has items
            n = replace_list_stream(dm, rec.user, rec.host, rec.store, items, dry_run)
        except RecordError:
            raise
        except (TypeError, ValueError) as err:
            raise RecordError(rec.lineno, str(err)) from None
        stats.items += n
        if n:
            stats.written += 1
        else:
            stats.removed += 1
        return
    value = rec.value
    empty = _no_data(value)
    try:
        payload = None if empty else dump_dat(value)
    except (TypeError, ValueError) as err:
        raise RecordError(rec.lineno, str(err)) from None
    if payload is None:  # the value is empty
        stats.removed += 1
        if not dry_run:
            dm.store(rec.user, rec.host, rec.store, None)
        return
    path = dm.getpath(rec.user, rec.host, rec.store, "dat")
    try:
        with open(path, "rb") as f:
            same = f.read(len(payload) + 1) == payload
    except (FileNotFoundError, NotADirectoryError):
        same = False
    if same:
        stats.unchanged += 1
        return
    stats.written += 1
    if not dry_run:
        dm.store(rec.user, rec.host, rec.store, value)


def _record_key(rec: Record) -> tuple[str, bytes | None, bytes | None, bytes]:
    return (rec.type, None if rec.host is None else name_bytes(rec.host),
            None if rec.user is None else name_bytes(rec.user), name_bytes(rec.store))


def import_records(dm: DataManager, f: IO[bytes], dry_run: bool = False,
                   progress: Callable[[int], None] | None = None) -> ImportStats:
    """Write every record of a JSON Lines stream into the data directory.

    Records are written one by one, each atomically: at the first bad record
    (:class:`RecordError`, with its line number) the records before it are
    written, and the file of the bad record is as it was.  A record for the
    same host, user, store and type as an earlier one is an error (export
    never writes one; two backups concatenated would mix).
    """
    stats = ImportStats()
    reader = RecordReader(f)
    seen: dict[tuple[str, bytes | None, bytes | None, bytes], int] = {}
    for rec in reader:
        key = _record_key(rec)
        if key in seen:
            raise RecordError(rec.lineno, f"a second record for the same {rec.type} file "
                                          f"as line {seen[key]}")
        seen[key] = rec.lineno
        import_record(dm, rec, stats, dry_run)
        if progress:
            progress(reader.bytes_done)
    return stats
