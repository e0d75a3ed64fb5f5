"""Prosody's SQL storage (``mod_storage_sql``): migrate a data directory to it and back.

:func:`migrate_to_sql` copies a Prosody data directory (``storage = "internal"``)
into the tables Prosody's ``mod_storage_sql`` (0.12 and 13.0) uses, in SQLite
(the standard library's :mod:`sqlite3`) or PostgreSQL (``psycopg`` 3, the
optional extra ``postgresql``); :func:`migrate_from_sql` goes the other way.

Tables (created as Prosody creates them, when missing)::

    prosody        (host, user, store, key, type, value)                 keyval/map stores
    prosodyarchive (sort_id, host, user, store, key, when, with, type, value)   archives

with Prosody's indexes (``prosody_index``; ``prosodyarchive_index`` (unique),
``prosodyarchive_with_when``, ``prosodyarchive_when``, ``prosodyarchive_sort``).

Encoding, as ``mod_storage_sql`` does it:

* A keyval store (``<host>/<store>/<user>.dat``) is one row per non-empty
  string key: ``type`` ``string`` (the text), ``number`` (Lua's ``tostring``:
  integers in decimal, floats ``%.14g`` with ``.0`` added when that looks like
  an integer), ``boolean`` (``true``/``false``) or ``json`` (tables, in
  ``util.json``'s conventions, :mod:`prosody_store.json`).  Every other key
  (numbers, booleans, ``""``) goes into one extra row with key ``""`` holding a
  JSON table of those entries.  The store without user (``<host>/<store>.dat``)
  has user ``""``.
* An archive (``<host>/<store>/<user>.list``, items as ``mod_storage_internal``
  writes them) is one ``prosodyarchive`` row per item, in list order:
  ``key`` (the item's ``key``, else its 1-based position, as Prosody's
  ``find`` reports it), ``when`` (the item's ``when``, else its ``attr.stamp``
  parsed), ``with`` (``""`` when missing), type ``xml`` and the stanza as
  ``util.stanza`` writes it (:func:`prosody_store.stanza.to_xml`), without the
  ``stamp``/``stamp_legacy`` attributes that the filesystem store adds.

Where Prosody itself would fail, this module does better or says why:

* PostgreSQL's ``when`` column is an ``INTEGER``: a fractional ``when`` (which
  makes ``prosody-migrator`` abort) is rounded down to the second.  SQLite keeps
  it as it is, as Prosody does.
* Values Prosody's SQL storage cannot read back are errors for their file (the
  file is skipped, the rest migrated, :attr:`Report.errors` lists them): a
  float infinity or NaN (written ``inf``/``nan``, which neither ``tonumber``
  nor ``util.json`` reads), a keyval file that is not a table, an archive item
  that is not a stanza, and in PostgreSQL text that is not UTF-8 or contains
  NUL.  In SQLite, names and strings that are not UTF-8 are stored as BLOBs
  with their exact bytes.
* A top-level ``false`` in a keyval store is written (as ``prosody-migrator``
  writes it), but Prosody 0.12's ``keyval_store:get`` skips rows whose value is
  false (``if k and v``), so Prosody itself never sees it; this module reads it.
* Floats are stored as Prosody stores them, with 14 significant digits (so
  ``0.1 + 0.2`` is stored as ``0.3``); that is the format, not a choice here.

Transactions and re-runs: each file is written as "delete the rows of this
(host, user, store), insert the new ones", and a transaction is committed only
between files, every ``batch_rows`` rows.  An interrupted run leaves every
file either fully migrated or untouched, and running it again ends in the same
state (``sort_id`` values aside, which only order an archive).  Rows of stores
or users that are not in the source are left alone.

Back to a directory (:func:`migrate_from_sql`): keyval rows are merged as
``mod_storage_sql`` reads them; archive rows become items as
``mod_storage_internal``'s ``append`` writes them (the stanza table, then
``attr.stamp`` = the UTC time of ``when`` as ``%Y-%m-%dT%H:%M:%SZ``, ``key``,
``when``, ``with``).  Each file is replaced atomically.

The package: :mod:`~prosody_store.sql.values` (the row encodings),
:mod:`~prosody_store.sql.dates` (XEP-0082 timestamps),
:mod:`~prosody_store.sql.db` (connections, Prosody's tables, the dry-run
stand-in, driver errors) and :mod:`~prosody_store.sql.migrate` (the two
migrations).  Its public names are all importable from here.
"""
from __future__ import annotations

# Every name below is public (importable from here) as it was before the
# split; __all__ lists the same names as then.  ``name as name`` marks the
# others as re-exported for type checkers.
from prosody_store.sql.dates import format_datetime as format_datetime  # noqa: F401
from prosody_store.sql.dates import parse_datetime as parse_datetime  # noqa: F401
from prosody_store.sql.db import SQLError, connect  # noqa: F401
from prosody_store.sql.db import is_driver_error as is_driver_error  # noqa: F401
from prosody_store.sql.migrate import (  # noqa: F401
    DEFAULT_BATCH_ROWS as DEFAULT_BATCH_ROWS,
    Progress as Progress,
    Report,
    migrate_from_sql,
    migrate_to_sql,
    scan as scan,
)
from prosody_store.sql.values import (  # noqa: F401
    MigrationError,
    decode_archive_row as decode_archive_row,
    decode_keyval,
    decode_value as decode_value,
    encode_archive_item,
    encode_keyval,
    encode_value,
)
# The fast writer of plain stanzas that was here is now part of stanza.to_xml.
from prosody_store.stanza import to_xml as stanza_xml  # noqa: F401

__all__ = [
    "MigrationError",
    "Report",
    "SQLError",
    "connect",
    "decode_keyval",
    "encode_archive_item",
    "encode_keyval",
    "encode_value",
    "migrate_from_sql",
    "migrate_to_sql",
]
