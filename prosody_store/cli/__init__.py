"""The ``prosody-store`` command: Prosody's data from cron jobs, scripts and migrations.

Modules, each importing only :mod:`~prosody_store.cli.common` and
:mod:`~prosody_store.cli.progress` of this package (no cycle):

* ``run``: the parser and running a command (:func:`main`, the console entry point);
* ``common``: :class:`~prosody_store.cli.common.CommandError`, the settings
  (where the data is), names from argv, output helpers;
* ``progress``: the progress bar of every command;
* one module per group of commands: ``data`` (get, put, append, delete,
  hosts, users, stores), ``backup`` (export, import), ``archive`` (archive
  expire), ``verify`` (verify, reindex), ``migrate``, ``serve``.

The library needs only the standard library: ``serve`` imports the HTTP
service (Werkzeug, waitress) when it runs, and ``migrate`` PostgreSQL's
driver only for a ``postgresql://`` URL.
"""
from prosody_store.cli.run import main

__all__ = ["main"]
