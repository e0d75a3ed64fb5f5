"""A throwaway ejabberd node (Debian's ejabberd 23.01) for the XEP-0227 interop tests.

:class:`Ejabberd` runs Debian's ``ejabberdctl`` on a temporary directory that
holds everything the node uses: its ``ejabberd.yml``, its ``ejabberdctl.cfg``,
the Mnesia spool, the logs, the pid file and ``HOME``.  Nothing under
``/etc/ejabberd`` or ``/var/lib/ejabberd`` is read or written, so a system
ejabberd (if one runs) and other test runs are left alone:

* Debian's ``ejabberdctl`` switches to the ``ejabberd`` user (``su``) when run as
  root.  Our ``ejabberdctl.cfg`` is sourced *after* that choice is made, so it
  sets ``EXEC_CMD=as_current_user`` and the node runs as the current user,
  with files it can read and write in the temporary directory.
* ``ERL_DIST_PORT`` gives the node a fixed Erlang distribution port (a free
  loopback port) and makes both the node and every ``ejabberdctl`` call skip
  EPMD altogether (``-start_epmd false``); ``-kernel inet_dist_use_interface``
  keeps that port on 127.0.0.1.  The node name is unique per run and the cookie
  random, so parallel runs cannot talk to each other's nodes.
* The node has no XMPP listeners at all (``listen: []``): the tests only use
  ``ejabberdctl``.  Two virtual hosts share the node: ``localhost`` stores
  SCRAM-SHA-1 keys (``auth_password_format: scram``, Debian's default) and
  ``plain.localhost`` plaintext passwords (``auth_password_format: plain``).

Run ``python -m tests.ejabberd`` for a manual check (start, status, stop).
"""
from __future__ import annotations

import getpass
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.live_server import free_port

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"
ERL = "/usr/bin/erl"
SCRAM_HOST = "localhost"
PLAIN_HOST = "plain.localhost"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
CTL_TIMEOUT = 60.0
LOG_TIMEOUT = 10.0
# Each ejabberdctl call boots an Erlang VM (0.4 s here, more under load); a few at
# a time roughly halve the wall time of a batch on two cores.
PARALLEL_CALLS = 3
INSTALL_USER = re.compile(r"^INSTALLUSER=(\S+)", re.M)   # in Debian's ejabberdctl

CONFIG = """\
# Written by tests/ejabberd.py for one test run.
loglevel: info
hosts:
  - {scram_host}
  - {plain_host}
listen: []
auth_method: internal
auth_password_format: scram
host_config:
  {plain_host}:
    auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper_rules:
  max_user_offline_messages: 5000
modules:
  mod_admin_extra: {{}}
  mod_last: {{}}
  mod_offline: {{}}
  mod_privacy: {{}}
  mod_private: {{}}
  mod_roster: {{}}
  mod_vcard: {{}}
"""

# Sourced by ejabberdctl (a shell script) after its own defaults.
CTL_CONFIG = """\
# Written by tests/ejabberd.py for one test run.
EXEC_CMD=as_current_user
ERL_DIST_PORT={dist_port}
ERL_OPTIONS="-setcookie {cookie} -kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH={pid_path}
EJABBERD_BYPASS_WARNINGS=true
"""

INETRC = '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n'


def missing() -> str | None:
    """Why no ejabberd node can be run here, or None when one can."""
    if not os.path.exists(EJABBERDCTL):
        return "ejabberdctl not found (apt-get install ejabberd)"
    # Debian's ejabberdctl refuses anyone but root and its install user before it
    # reads any configuration (exit 7).
    found = INSTALL_USER.search(Path(EJABBERDCTL).read_text(errors="replace"))
    if found and os.geteuid() != 0 and getpass.getuser() != found.group(1):
        return f"{EJABBERDCTL} runs only as root or as user {found.group(1)}"
    if not os.path.exists(ERL):
        return f"{ERL} not found (apt-get install erlang-base)"
    if not list(Path("/usr/lib").glob("*/ejabberd-*/ebin/ejabberd.app")) and not list(
            Path("/usr/lib").glob("ejabberd-*/ebin/ejabberd.app")):
        return "ejabberd's Erlang modules are not installed (apt-get install ejabberd)"
    return None


class EjabberdError(Exception):
    """An ``ejabberdctl`` call failed, or the node did not start or stop in time."""


class Ejabberd:
    """One ejabberd node in a temporary directory; :meth:`ctl` runs ``ejabberdctl``."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="prosody-store-ejabberd-"))
        self.node = f"ps{secrets.token_hex(4)}@localhost"
        self.spool = self.tmp / "spool"
        self.logs = self.tmp / "logs"
        self.home = self.tmp / "home"
        self.pid_path = self.tmp / "ejabberd.pid"
        for d in (self.spool, self.logs, self.home):
            d.mkdir()
        self.config = self.tmp / "ejabberd.yml"
        self.config.write_text(CONFIG.format(plain_host=PLAIN_HOST, scram_host=SCRAM_HOST))
        self.dist_port = free_port()
        self.ctl_config = self.tmp / "ejabberdctl.cfg"
        self.ctl_config.write_text(CTL_CONFIG.format(
            dist_port=self.dist_port, cookie=secrets.token_hex(16), pid_path=self.pid_path))
        (self.tmp / "inetrc").write_text(INETRC)
        self.pid: int | None = None
        self.startup_seconds: float | None = None

    # -- running ejabberdctl -------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """The ``ejabberdctl`` command line for ``args`` on this node."""
        return [EJABBERDCTL, "--config-dir", str(self.tmp), "--ctl-config", str(self.ctl_config),
                "--config", str(self.config), "--spool", str(self.spool), "--logs", str(self.logs),
                "--node", self.node, *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env.pop("ERL_LIBS", None)
        env.pop("ERL_FLAGS", None)
        env.pop("ERL_AFLAGS", None)
        env.pop("ERL_ZFLAGS", None)
        return env

    def run(self, *args: str, timeout: float = CTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``ejabberdctl ARGS``, whatever its exit status."""
        # errors="replace": ejabberdctl's error reports may hold bytes that are not UTF-8.
        return subprocess.run(self.command(*args), capture_output=True, encoding="utf-8",
                              errors="replace", env=self.env(), timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT) -> str:
        """``ejabberdctl ARGS``; its stdout, or :class:`EjabberdError` if it exits non-zero."""
        proc = self.run(*args, timeout=timeout)
        if proc.returncode != 0:
            raise EjabberdError(f"ejabberdctl {' '.join(args)} exited {proc.returncode}: "
                                f"{proc.stdout.strip()} {proc.stderr.strip()}")
        return proc.stdout

    def run_many(self, calls: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
        """Independent ``ejabberdctl`` calls, a few at a time; their results in order."""
        with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
            return list(pool.map(lambda args: self.run(*args), calls))

    def ctl_sequences(self, sequences: Sequence[Sequence[Sequence[str]]]) -> None:
        """Run each sequence of calls in order, the sequences side by side; any failure raises."""
        def run_sequence(calls: Sequence[Sequence[str]]) -> None:
            for args in calls:
                self.ctl(*args)
        with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
            for _ in pool.map(run_sequence, sequences):
                pass

    # -- life cycle -----------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the node and wait until ``ejabberdctl status`` says it is started."""
        began = time.monotonic()
        self.ctl("start")
        deadline = began + timeout
        status = self.run("status")
        while "is started" not in status.stdout:
            if time.monotonic() > deadline:
                raise EjabberdError(f"ejabberd did not start within {timeout:.0f} s: "
                                    f"{status.stdout.strip()} {status.stderr.strip()}\n{self.log_tail()}")
            if self.pid is None and self.pid_path.exists():
                self.pid = _read_pid(self.pid_path)
            if self.pid is not None and not _alive(self.pid):
                raise EjabberdError(f"ejabberd exited while starting\n{self.log_tail()}")
            time.sleep(0.3)
            status = self.run("status")
        self.startup_seconds = time.monotonic() - began
        if self.pid_path.exists():
            self.pid = _read_pid(self.pid_path)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the node (``ejabberdctl stop``, then SIGKILL by pid) and remove its directory."""
        try:
            if self.pid is None and self.pid_path.exists():
                self.pid = _read_pid(self.pid_path)
            if self.pid is not None and _alive(self.pid):
                try:
                    self.run("stop", timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
                deadline = time.monotonic() + timeout
                while _alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
                    deadline = time.monotonic() + timeout
                    while _alive(self.pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self, wanted: str, timeout: float = LOG_TIMEOUT) -> str:
        """ejabberd.log once it holds ``wanted``, or as it is after ``timeout`` seconds.

        Erlang's logger writes asynchronously: ``status`` can say started before the
        matching line reaches the file."""
        path = self.logs / "ejabberd.log"
        deadline = time.monotonic() + timeout
        while True:
            text = path.read_text(errors="replace") if path.exists() else ""
            if wanted in text or time.monotonic() > deadline:
                return text
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of ejabberd's log files, for error messages."""
        out = []
        for name in ("error.log", "ejabberd.log"):
            path = self.logs / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(out)

    def __enter__(self) -> "Ejabberd":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- demo data ------------------------------------------------------------------


@dataclass
class RosterItem:
    jid: str
    name: str
    subscription: str            # none, from, to, both
    groups: tuple[str, ...] = ()


@dataclass
class OfflineMessage:
    type: str                    # chat, normal, headline
    sender: str                  # full or bare JID
    subject: str
    body: str


@dataclass
class DemoUser:
    """One account and its data, as the tests put it into (or expect it from) a server."""
    user: str
    host: str
    password: str
    roster: list[RosterItem] = field(default_factory=list)
    pending_in: list[str] = field(default_factory=list)      # JIDs asking for a subscription
    vcard: dict[tuple[str, ...], str] = field(default_factory=dict)   # ("FN",) / ("N", "FAMILY")
    offline: list[OfflineMessage] = field(default_factory=list)
    private: list[str] = field(default_factory=list)           # XML of private-storage elements
    blocked: list[str] = field(default_factory=list)           # JIDs on the blocklist

    @property
    def jid(self) -> str:
        return f"{self.user}@{self.host}"


NS_PRIVACY = "jabber:iq:privacy"
BLOCKED_LIST = "Blocked contacts"   # the list ejabberd's mod_blocking uses
BOOKMARKS = ("<storage xmlns='storage:bookmarks'><conference jid='tea@conference.localhost' "
             "name='Tea party' autojoin='true'><nick>Alice</nick></conference></storage>")

DEMO_USERS = [
    DemoUser(
        "alice", PLAIN_HOST, "wonderland \u00fc",
        roster=[RosterItem("bob@plain.localhost", "Bob", "both", ("Friends", "Work")),
                RosterItem("carol@localhost", "Carol", "to"),
                RosterItem("hatter@example.org", "", "from", ("Tea",))],
        pending_in=["queen@example.org"],
        vcard={("FN",): "Alice Liddell", ("N", "FAMILY"): "Liddell", ("N", "GIVEN"): "Alice",
               ("NICKNAME",): "alice \u2603", ("EMAIL", "USERID"): "alice@example.org"},
        offline=[OfflineMessage("chat", "bob@plain.localhost/phone", "", "Hello Alice \u00e9"),
                 OfflineMessage("normal", "hatter@example.org", "Tea?", "Why is a raven like a desk?")],
        private=[BOOKMARKS],
        blocked=["cheshire@example.org"],
    ),
    DemoUser("bob", PLAIN_HOST, "builder",
             roster=[RosterItem("alice@plain.localhost", "Alice", "both", ("Friends",))],
             vcard={("FN",): "Bob"}),
    DemoUser(
        "carol", SCRAM_HOST, "c\u00e4rol's secret",
        roster=[RosterItem("alice@plain.localhost", "Alice", "from")],
        vcard={("FN",): "Carol \u00c7"},
        offline=[OfflineMessage("chat", "alice@plain.localhost/rabbit-hole", "", "Hi Carol")],
    ),
]


def populate(node: Ejabberd, users: list[DemoUser]) -> None:
    """Create ``users`` and their data on ``node`` with ``ejabberdctl`` only.

    A user's offline messages are sent in order and their vCard fields set one
    after the other (one sequence each); everything else is independent once
    the accounts exist.
    """
    node.ctl_sequences([[("register", u.user, u.host, u.password)] for u in users])
    sequences: list[list[tuple[str, ...]]] = []
    for u in users:
        for item in u.roster:
            contact, _, contact_host = item.jid.partition("@")
            sequences.append([("add_rosteritem", u.user, u.host, contact, contact_host, item.name,
                               ";".join(item.groups), item.subscription)])
        for asker in u.pending_in:
            sequences.append([("send_stanza", asker, u.jid, "<presence type='subscribe'/>")])
        if u.vcard:  # each call rewrites the whole vCard: one at a time
            sequences.append([("set_vcard" if len(path) == 1 else "set_vcard2",
                               u.user, u.host, *path, value) for path, value in u.vcard.items()])
        for element in u.private:
            sequences.append([("private_set", u.user, u.host, element)])
        if u.offline:
            sequences.append([("send_message", m.type, m.sender, u.jid, m.subject, m.body)
                              for m in u.offline])
        if u.blocked:  # as ejabberd's mod_blocking keeps it: the default privacy list
            items = "".join(f"<item type='jid' value='{jid}' action='deny' order='{n}'/>"
                            for n, jid in enumerate(u.blocked))
            sequences.append([
                ("privacy_set", u.user, u.host, f"<query xmlns='{NS_PRIVACY}'><list "
                 f"name='{BLOCKED_LIST}'>{items}</list></query>"),
                ("privacy_set", u.user, u.host,
                 f"<query xmlns='{NS_PRIVACY}'><default name='{BLOCKED_LIST}'/></query>")])
    node.ctl_sequences(sequences)


def wipe(node: Ejabberd) -> None:
    """Delete every account on the node, and with it all its data.

    ``delete_old_users 0`` removes the users that have not logged in today, which
    on this node (no listeners, nobody ever logs in) is all of them.
    """
    node.ctl("delete_old_users", "0")


def get_roster(node: Ejabberd, user: str, host: str) -> list[RosterItem]:
    """``ejabberdctl get_roster USER HOST`` as roster items."""
    return parse_roster(node.ctl("get_roster", user, host))


def parse_roster(output: str) -> list[RosterItem]:
    """``get_roster``'s output (a line per contact and group) as roster items sorted by JID."""
    items: dict[str, RosterItem] = {}
    for line in output.splitlines():
        jid, name, subscription, _ask, group = line.split("\t")
        item = items.setdefault(jid, RosterItem(jid, name, subscription))
        if group:
            item.groups = tuple(sorted(item.groups + (group,)))
    return sorted(items.values(), key=lambda i: i.jid)


def export(node: Ejabberd, target: Path, host: str | None = None) -> Path:
    """``ejabberdctl export_piefxis[_host]`` into the empty directory ``target``; the main file."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise ValueError(f"{target} is not empty")
    if host is None:
        node.ctl("export_piefxis", str(target))
    else:
        node.ctl("export_piefxis_host", str(target), host)
    mains = [p for p in target.iterdir() if "_" not in p.name]
    if len(mains) != 1:
        raise EjabberdError(f"export_piefxis wrote {sorted(p.name for p in target.iterdir())}")
    return mains[0]


def listening_addresses(pid: int) -> list[str]:
    """The local addresses ("ip:port") of the TCP sockets process ``pid`` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A: LISTEN
                    found.append(_address(local))
    return sorted(found)


def _address(hex_address: str) -> str:
    """/proc/net/tcp's "0100007F:1F90" (little-endian words) as "127.0.0.1:8080"."""
    hex_ip, _, hex_port = hex_address.partition(":")
    raw = b"".join(bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8))
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw)
    else:
        ip = ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2))
    return f"{ip}:{int(hex_port, 16)}"


def _read_pid(path: Path) -> int | None:
    text = path.read_text().strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process of ours (a reaped or zombie one is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


if __name__ == "__main__":  # a quick manual check
    reason = missing()
    if reason:
        raise SystemExit(reason)
    with Ejabberd() as node:
        print(node.ctl("status").strip())
        print(f"started in {node.startup_seconds:.1f} s, pid {node.pid}, node {node.node}")
