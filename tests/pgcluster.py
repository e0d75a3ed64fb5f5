"""A throwaway PostgreSQL server for the tests and the benchmark.

``PROSODY_STORE_PG_URL`` (``postgresql://user:pw@host:port/db``) names an
existing server to use instead; each test database is created on it and
dropped afterwards.  Otherwise :class:`Cluster` runs Debian's ``initdb`` and
``pg_ctl`` (as the ``postgres`` user when run as root) on a temporary
directory, listening on 127.0.0.1 on a free port, and removes it on
:meth:`Cluster.stop`.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


def missing() -> str | None:
    """Why no PostgreSQL can be had here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg>=3.1')"
    if os.environ.get("PROSODY_STORE_PG_URL"):
        return None
    if not _pg_bin("initdb") or not _pg_bin("pg_ctl"):
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A PostgreSQL server; :meth:`new_database` gives a fresh database URL."""

    def __init__(self, startup_timeout: float = 60) -> None:
        self.url = os.environ.get("PROSODY_STORE_PG_URL")
        self.tmp = None
        self._dbs: list[str] = []
        if self.url:
            return
        self.tmp = tempfile.mkdtemp(prefix="prosody-store-pg-")
        os.chmod(self.tmp, 0o755)
        self.datadir = os.path.join(self.tmp, "data")
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run([_pg_bin("initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        opts = (f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([_pg_bin("pg_ctl"), "-D", self.datadir, "-l", os.path.join(self.tmp, "log"),
                   "-o", opts, "-w", "-t", str(int(startup_timeout)), "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(self._as + cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = ""
            if self.tmp and os.path.exists(os.path.join(self.tmp, "log")):
                with open(os.path.join(self.tmp, "log")) as f:
                    log = f.read()[-2000:]
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}{proc.stderr}{log}")

    def _admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "ps_" + uuid.uuid4().hex[:12]
        self._admin(f'CREATE DATABASE "{name}"')
        self._dbs.append(name)
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def stop(self) -> None:
        for name in self._dbs:
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:
                pass
        self._dbs.clear()
        if self.tmp:
            try:
                self._run([_pg_bin("pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w",
                           "-t", "30", "stop"])
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def params(self, url: str) -> dict:
        """The URL's parts, for Prosody's ``sql = { ... }`` setting."""
        from urllib.parse import urlsplit
        u = urlsplit(url)
        return {"host": u.hostname, "port": u.port or 5432, "username": u.username or "",
                "password": u.password or "", "database": u.path.lstrip("/")}


if __name__ == "__main__":  # a quick manual check
    c = Cluster()
    try:
        print(c.new_database())
    finally:
        c.stop()
