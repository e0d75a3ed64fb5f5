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
  as below.
* ``type`` is ``keyval`` (a ``.dat`` file) or ``list`` (a ``.list`` file; the
  value is the array of its items).  A user can have both in one store: two
  records.
* Order: hosts, then stores, then users (``null`` first), sorted by the bytes
  of their names; ``keyval`` before ``list``.  Table entries are in file
  order.  The output is therefore a function of the data: export, import,
  export again gives the same bytes.

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
key is the integer key (as in Lua), a ``null`` member is no entry, and
``NaN``/``Infinity`` (Python's JSON extension) are accepted as floats.

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
import json
import math
import re
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator

from prosody_store.datamanager import DataManager, StoreFile
from prosody_store.errors import Error
from prosody_store.paths import Name
from prosody_store.serialization import FALSE_KEY, TRUE_KEY, BooleanKey, dump_dat, dump_item

__all__ = [
    "ImportStats",
    "Record",
    "RecordError",
    "decode_value",
    "encode_value",
    "export",
    "import_records",
    "iter_store_files",
    "read_records",
    "record_chunks",
    "RecordReader",
]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                            check_circular=False)
_encode_json = _encoder.encode


class RecordError(Error, ValueError):
    """An import line that is not a valid record (carries the line number)."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"input line {lineno}: {message}")
        self.lineno = lineno


# ---------------------------------------------------------------------------
# Values


def _special_float(v: float) -> dict:
    return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}


def to_json(v: Any) -> Any:
    """A stored value as a structure ``json`` encodes to the typed JSON above."""
    t = v.__class__
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return v if math.isfinite(v) else _special_float(v)
    if t is list or t is tuple:
        return [to_json(x) for x in v]
    if t is dict or isinstance(v, dict):
        plain: dict = {}
        rest = None
        for k, x in v.items():
            if k.__class__ is str and not k.startswith("$"):
                plain[k] = to_json(x)
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
                plain["$array"] = [to_json(v[i]) for i in range(1, n + 1)]
            pairs = [[to_json(k), to_json(x)] for k, x in rest
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
        return [to_json(x) for x in v]
    raise TypeError(f"cannot export a {t.__name__}")


def encode_value(v: Any) -> str:
    """A stored value as typed JSON text (compact, UTF-8)."""
    return _encode_json(to_json(v))


class _Obj(list):
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
    """Typed JSON (as parsed with pairs kept, see :func:`parse_json`) to a stored value."""
    if j is None or j.__class__ in (str, int, bool, float):
        if j.__class__ is str and _has_surrogate(j):
            raise _bad("a string holds a lone surrogate (\\ud800-\\udfff)")
        return j
    if _depth > 1000:
        raise _bad("value nested too deeply")
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
        table: dict = {}
        pairs = None
        arr = None
        for name, x in j:
            if name.startswith("$"):
                if name == "$array":
                    if not isinstance(x, list):
                        raise _bad('"$array" must be an array')
                    arr = x
                    continue
                if name != "$pairs":
                    raise _bad(f'unknown member {name!r} (names starting with "$" are reserved)')
                if not isinstance(x, list) or not all(
                        isinstance(p, list) and len(p) == 2 for p in x):
                    raise _bad('"$pairs" must be an array of [key, value] arrays')
                pairs = x
                continue
            if _has_surrogate(name):
                raise _bad("a member name holds a lone surrogate")
            if x is None:
                table.pop(name, None)
            else:
                table[name] = decode_value(x, _depth + 1)
        if arr:
            for i, x in enumerate(arr, 1):
                if x is None:
                    raise _bad('null inside "$array" (a Lua table cannot hold nil)')
                table[i] = decode_value(x, _depth + 1)
        if pairs:
            entries = [(_key(decode_value(k, _depth + 1)), p) for (k, p) in pairs]
            numbers = {k for k, _ in entries if k.__class__ in (int, float)}
            if arr:
                numbers.add(1)
            for k, x in entries:
                if k is True and 1 in numbers:
                    k = TRUE_KEY
                elif k is False and 0 in numbers:
                    k = FALSE_KEY
                if x is None:
                    table.pop(k, None)
                else:
                    table[k] = decode_value(x, _depth + 1)
        return table
    raise _bad(f"unexpected JSON value {j!r}")


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


def decode_name(j: Any, what: str, nullable: bool) -> Name | None:
    if j is None:
        if nullable:
            return None
        raise _bad(f'"{what}" cannot be null')
    if isinstance(j, str) and j:
        if _has_surrogate(j):
            raise _bad(f'"{what}" holds a lone surrogate')
        return j
    if isinstance(j, _Obj):
        is_scalar, value = _scalar_escape(j)
        if is_scalar and isinstance(value, bytes) and value:
            return value
    raise _bad(f'"{what}" must be a non-empty string, {{"$bytes": ...}}'
               + (" or null" if nullable else ""))


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
    """Every store file, in export order (:meth:`DataManager.iter_files`)."""
    return dm.iter_files(hosts, stores)


# ---------------------------------------------------------------------------
# Export


def _header(f: StoreFile) -> str:
    return (f'{{"host":{encode_name(f.host)},"user":{encode_name(f.user)},'
            f'"store":{encode_name(f.store)},"type":"{f.type}","value":')


def record_chunks(dm: DataManager, f: StoreFile) -> Iterator[bytes]:
    """The bytes of one record, in pieces (a list's items in batches, never the
    whole list at once); no pieces if the file vanished meanwhile."""
    if f.type == "keyval":
        value = dm.load(f.user, f.host, f.store)
        if value is not None:
            yield (_header(f) + encode_value(value) + "}\n").encode("utf-8")
        return
    view = dm.list_open(f.user, f.host, f.store)
    if view is None:
        return
    with view:
        yield (_header(f) + "[").encode("utf-8")
        sep = ""
        batch: list[str] = []
        size = 0
        for item in view:
            text = sep + encode_value(item)
            sep = ","
            batch.append(text)
            size += len(text)
            if size > 1 << 16:
                yield "".join(batch).encode("utf-8")
                batch, size = [], 0
        batch.append("]}\n")
        yield "".join(batch).encode("utf-8")


def export_file(dm: DataManager, f: StoreFile, write: Callable[[bytes], Any]) -> bool:
    """Write one record; False if the file vanished meanwhile."""
    written = False
    for chunk in record_chunks(dm, f):
        write(chunk)
        written = True
    return written


def export(dm: DataManager, out: IO[bytes], hosts=None, stores=None,
           progress: Callable[[StoreFile], None] | None = None,
           files: list[StoreFile] | None = None) -> int:
    """Write the records of a data directory to ``out``; returns how many."""
    n = 0
    for f in (files if files is not None else iter_store_files(dm, hosts, stores)):
        if export_file(dm, f, out.write):
            n += 1
        if progress:
            progress(f)
    return n


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
            m = _WS.match(self.buf, self.pos)
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
            if end >= len(self.buf) and not self.eof:
                self.fill(want)  # a number may go on in the next chunk
                want *= 2
                continue
            self.pos = end
            return value


def _record_from_json(obj: Any, lineno: int) -> Record:
    if not isinstance(obj, _Obj):
        raise RecordError(lineno, "a record must be a JSON object")
    members = dict(obj)
    unknown = set(members) - {"host", "user", "store", "type", "value"}
    if unknown:
        raise RecordError(lineno, f"unknown member {sorted(unknown)[0]!r}")
    for key in ("host", "user", "store", "type", "value"):
        if key not in members:
            raise RecordError(lineno, f'missing "{key}"')
    try:
        host = decode_name(members["host"], "host", True)
        user = decode_name(members["user"], "user", True)
        store = decode_name(members["store"], "store", False)
        typ = members["type"]
        if typ not in ("keyval", "list"):
            raise _bad('"type" must be "keyval" or "list"')
        raw = members["value"]
        if typ == "list":
            if not isinstance(raw, list) and not (isinstance(raw, _Obj) and not raw):
                raise _bad('a list record\'s "value" must be an array')
            items = [decode_value(x) for x in raw] if isinstance(raw, list) else []
            if any(i is None or i is False for i in items):
                raise _bad("a list item cannot be null or false")
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
        if raw is None or raw is False:
            raise RecordError(lineno, "a list item cannot be null or false")
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
    the input has been read.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._inp = _Input(f)

    @property
    def bytes_read(self) -> int:
        return self._inp.bytes_read

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
                host = decode_name(parse_json(m.group(1)), "host", True)
                user = decode_name(parse_json(m.group(2)), "user", True)
                store = decode_name(parse_json(m.group(3)), "store", False)
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
        try:
            obj = parse_json(text)
        except json.JSONDecodeError as err:
            raise RecordError(inp.lineno, f"bad JSON: {err.msg} (column {err.colno})") from None
        yield _record_from_json(obj, inp.lineno)


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
        if item is None or item is False:
            raise ValueError("a list item cannot be null or false")
        yield item


def import_record(dm: DataManager, rec: Record, stats: ImportStats, dry_run: bool) -> None:
    stats.records += 1
    if rec.type == "list":
        try:
            n = replace_list_stream(dm, rec.user, rec.host, rec.store, rec.items, dry_run)
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
    empty = value is None or (isinstance(value, (dict, list)) and not value)
    try:
        payload = None if empty else dump_dat(value)
    except (TypeError, ValueError) as err:
        raise RecordError(rec.lineno, str(err)) from None
    if empty:
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


def import_records(dm: DataManager, f: IO[bytes], dry_run: bool = False,
                   progress: Callable[[int], None] | None = None) -> ImportStats:
    """Write every record of a JSON Lines stream into the data directory."""
    stats = ImportStats()
    reader = RecordReader(f)
    for rec in reader:
        import_record(dm, rec, stats, dry_run)
        if progress:
            progress(reader.bytes_read)
    return stats
