"""The ``user`` commands of ``prosody-store``: manage accounts without Prosody.

``user list HOST``, ``user add JID``, ``user passwd JID``, ``user delete
JID``, ``user role JID [ROLE]``, ``user disable JID``, ``user enable JID``.
They write what Prosody's own code writes (``mod_auth_internal_hashed`` and
``_plain``, ``mod_authz_internal``, ``prosodyctl deluser``); the records are
built by :mod:`prosody_store.accounts`, the files written atomically by the
DataManager under its lock.

Which Prosody the data belongs to matters for roles (0.12's store ``roles``,
13's ``account_roles``), for ``disable``/``enable`` (13 only) and for the
``created``/``updated`` fields of 13's accounts.  ``--prosody`` says it;
otherwise :func:`data_version` tells it from the host's data.
"""
from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections import Counter
from typing import Any, Callable, Mapping

from prosody_store import accounts
from prosody_store.cli.common import (
    DATA_ERRORS,
    CommandError,
    Settings,
    add_command,
    host_exists,
    print_line,
    report,
    require_host,
)
from prosody_store.cli.data import CREATE_HOST_HELP, CREATE_HOST_HINT, print_names
from prosody_store.config import Config
from prosody_store.datamanager import DataManager
from prosody_store.jid import JIDError, nameprep, nodeprep, split_jid
from prosody_store.paths import name_bytes

ACCOUNTS = "accounts"
ROLE_STORES = {"0.12": "roles", "13": "account_roles"}
"""The store of ``mod_authz_internal``'s roles in each version."""

SAMPLE_SIZE = 100
"""How many account records of a host :func:`sample_accounts` reads to guess
its hash and version (a host may have very many accounts)."""

MAX_PASSWORD_LINE = 4096
"""The longest line read from stdin as a password (Prosody accepts 1023 bytes)."""

HASH_CHOICES = {"SHA-1": "sha1", "SHA-256": "sha256"}
"""``--hash`` values, spelt as Prosody's ``password_hash``."""


# ---------------------------------------------------------------------------
# Names


def parse_account(text: str, strict: bool = False) -> tuple[str, str]:
    """``user@host`` from argv -> (nodeprep-ed user, nameprep-ed host), as prosodyctl.

    ``strict`` refuses unassigned code points in the user name, as
    ``prosodyctl adduser`` does.  A JID Prosody would not take, one without a
    user or with a resource, or a name that stringprep maps to nothing is a
    usage error (exit 2).
    """
    try:
        node, host, resource = split_jid(text)
        if host.endswith(".") and host != ".":
            host = host[:-1]  # the DNS root label, as jid.prepped_split
        host = nameprep(host)
        node = None if node is None else nodeprep(node, strict)
    except JIDError as err:
        raise CommandError(f"{text!r} is not a valid JID: {err}", 2) from None
    if node is None:
        raise CommandError(f"{text!r} is not a user's JID (user@host)", 2)
    if resource is not None:
        raise CommandError(f"{text!r}: an account's JID has no resource", 2)
    if host == ".":
        raise CommandError(f"{text!r}: the host is only the root label", 2)
    if not node or not host:
        raise CommandError(f"{text!r}: nothing is left of the "
                           f"{'user name' if not node else 'host'} after stringprep", 2)
    return node, host


def parse_host_name(text: str) -> str:
    """A host from argv, nameprep-ed (``Example.COM.`` is ``example.com``)."""
    host = text[:-1] if text.endswith(".") and text != "." else text
    try:
        host = nameprep(host)
    except JIDError as err:
        raise CommandError(f"{text!r} is not a valid host: {err}", 2) from None
    if not host or host == "." or "@" in host or "/" in host:
        raise CommandError(f"{text!r} is not a host", 2)
    return host


# ---------------------------------------------------------------------------
# What the host's data and the config say


def config_option(config: Config | None, host: str, name: str) -> Any:
    """An option of ``host``'s VirtualHost section, else the global one; None if unset."""
    if config is None:
        return None
    for section in config.sections:
        if section.kind == "VirtualHost" and section.host is not None \
                and section.host.lower() == host and name in section.options:
            return section.options[name]
    return config.globals.get(name)


def sample_accounts(dm: DataManager, host: str) -> list[Any]:
    """Up to :data:`SAMPLE_SIZE` account records of ``host`` (damaged files skipped)."""
    records = []
    for user in dm.users(host, ACCOUNTS):
        try:
            record = dm.load(user, host, ACCOUNTS)
        except DATA_ERRORS:
            continue
        if isinstance(record, Mapping):
            records.append(record)
            if len(records) >= SAMPLE_SIZE:
                break
    return records


def data_version(dm: DataManager, host: str, records: list[Any]) -> str | None:
    """``"13"``, ``"0.12"``, or None when the host's data does not tell.

    The rule, first match wins:

    * a store ``account_roles`` (only Prosody 13's ``mod_authz_internal``
      writes it): 13;
    * a store ``roles`` (0.12's): 0.12;
    * an account with ``created``, ``updated`` or ``disabled`` (13's auth
      modules write them on every account they create or change; 0.12's
      never do): 13.
    """
    stores = {name_bytes(s) for s in dm.stores(True, host)}
    if b"account_roles" in stores:
        return "13"
    if b"roles" in stores:
        return "0.12"
    if any(k in r for r in records for k in ("created", "updated", "disabled")):
        return "13"
    return None


def version_of(args: argparse.Namespace, dm: DataManager, host: str,
               records: list[Any] | None = None) -> str | None:
    """``--prosody``, else :func:`data_version`."""
    if args.prosody:
        return str(args.prosody)
    return data_version(dm, host, sample_accounts(dm, host) if records is None else records)


def choose_hash(args: argparse.Namespace, config: Config | None, host: str,
                records: list[Any]) -> str:
    """The SCRAM hash of new keys: ``--hash``; else the config's ``password_hash``;
    else the hash most of the host's hashed accounts use; else SHA-1.

    Prosody tests a password with the hash of its ``password_hash`` option
    (default SHA-1, in 0.12 as in 13), whatever the record holds: keys made
    with another hash never verify.  The host's existing accounts show which
    hash that option had when they were made.
    """
    if args.hash:
        return HASH_CHOICES[args.hash]
    configured = config_option(config, host, "password_hash")
    if isinstance(configured, str) and configured.upper() in HASH_CHOICES:
        return HASH_CHOICES[configured.upper()]
    counts = Counter(h for h in map(accounts.record_hash, records) if h)
    if counts.get("sha256", 0) > counts.get("sha1", 0):
        return "sha256"
    return "sha1"


def choose_iterations(args: argparse.Namespace, config: Config | None, host: str) -> int:
    """``--iterations``, else the config's ``default_iteration_count``, else 10,000."""
    if args.iterations is not None:
        return int(args.iterations)
    configured = config_option(config, host, "default_iteration_count")
    if isinstance(configured, int) and not isinstance(configured, bool) \
            and 1 <= configured <= accounts.PROSODY_MAX_ITERATIONS:
        return configured
    return accounts.DEFAULT_ITERATIONS


def warn_plain_mismatch(args: argparse.Namespace, config: Config | None, host: str,
                        records: list[Any], plain: bool) -> None:
    """A warning when a new hashed account would sit among plain ones, or the reverse."""
    configured = config_option(config, host, "authentication")
    if isinstance(configured, str):
        expects_plain = configured == "internal_plain"
        if expects_plain != plain and configured in ("internal_plain", "internal_hashed"):
            report(f"warning: the config says authentication = {configured!r}; "
                   f"this account is {'plain' if plain else 'hashed'} "
                   f"({'drop --plain' if plain else '--plain'} to match)")
        return
    if not plain and records and all(accounts.is_plain(r) for r in records):
        report(f"warning: the accounts of {host} store plain passwords "
               "(authentication = \"internal_plain\"?); this one is hashed (--plain to match)")


# ---------------------------------------------------------------------------
# Passwords


def read_password() -> str:
    """The new password: asked twice on a terminal, else the first line of stdin.

    Never from argv.  Empty is refused; so is stdin that is not UTF-8.
    """
    stdin = sys.stdin
    if stdin is None:  # closed (<&-)
        raise CommandError("no password on stdin")
    if stdin.isatty():
        try:
            first = getpass.getpass("Enter new password: ")
            second = getpass.getpass("Retype new password: ")
        except EOFError:
            raise CommandError("no password given") from None
        if first != second:
            raise CommandError("the passwords do not match")
        password = first
    else:
        line = stdin.buffer.readline(MAX_PASSWORD_LINE)
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("the password on stdin is not UTF-8") from None
    if not password:
        raise CommandError("empty password")
    return password


# ---------------------------------------------------------------------------
# The commands


class Account:
    """What every command on one account needs: the data, the config, the names."""

    def __init__(self, args: argparse.Namespace, *, strict: bool = False,
                 create_host: bool = False) -> None:
        settings = Settings(args)
        self.config = settings.config
        self.dm = DataManager(settings.data_path)
        self.user, self.host = parse_account(args.jid, strict)
        self.jid = f"{self.user}@{self.host}"
        if not create_host:
            require_host(self.dm, self.host,
                         CREATE_HOST_HINT if getattr(args, "create_host", None) is not None else "")
        if self.config is not None and self.host not in self.config.hosts:
            report(f"warning: {self.host} is not a VirtualHost of {self.config.path}")

    def record(self) -> Mapping[str, Any]:
        """The account's record; a CommandError if there is no account."""
        record = self.dm.load(self.user, self.host, ACCOUNTS)
        if record is None:
            raise CommandError(f"no account {self.jid}")
        if not isinstance(record, Mapping):
            raise CommandError(f"the account record of {self.jid} is not a table")
        return record

    def update(self, store: str, change: Callable[[Any], Any]) -> None:
        """Read-modify-write ``store`` under its lock, while the account exists."""
        if store == ACCOUNTS:
            def checked(current: Any) -> Any:
                if not isinstance(current, Mapping):  # deleted since record() was read
                    raise CommandError(f"no account {self.jid}")
                return change(current)

            self.dm.update(self.user, self.host, ACCOUNTS, checked)
            return
        with self.dm.lock(self.user, self.host, ACCOUNTS):  # no delete in between
            self.record()
            self.dm.update(self.user, self.host, store, change)


def now_if_13(version: str | None) -> int | None:
    """The time for 13's ``created``/``updated``; None (0.12's shape) otherwise."""
    return int(time.time()) if version == "13" else None


def cmd_list(args: argparse.Namespace) -> int:
    dm = DataManager(Settings(args).data_path, write_index=False)
    host = parse_host_name(args.host)
    require_host(dm, host)
    # Not inline: as the argument, mypy would sort list[Name | None] (print_names' type).
    names = sorted(dm.users(host, ACCOUNTS), key=name_bytes)
    return print_names(args, names)


def cmd_add(args: argparse.Namespace) -> int:
    account = Account(args, strict=True, create_host=args.create_host)
    dm, host = account.dm, account.host
    if dm.load(account.user, host, ACCOUNTS) is not None:
        raise CommandError(f"account {account.jid} already exists")
    records = sample_accounts(dm, host) if host_exists(dm, host) else []
    version = version_of(args, dm, host, records)
    warn_plain_mismatch(args, account.config, host, records, args.plain)
    password = read_password()
    try:
        record = accounts.new_account(
            password, plain=args.plain, hash=choose_hash(args, account.config, host, records),
            iterations=choose_iterations(args, account.config, host), now=now_if_13(version))
    except accounts.PasswordError as err:
        raise CommandError(str(err)) from None

    def create(current: Any) -> Any:
        if current is not None:
            raise CommandError(f"account {account.jid} already exists")
        return record

    dm.update(account.user, host, ACCOUNTS, create)
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    account = Account(args)
    dm, host = account.dm, account.host
    current = account.record()
    records = sample_accounts(dm, host)
    version = version_of(args, dm, host, records)
    # The record keeps its form (plain stays plain, as internal_plain's
    # set_password does) unless --plain or --hash says otherwise.
    plain = args.plain or (not args.hash and accounts.is_plain(current))
    hash_name = choose_hash(args, account.config, host, records)
    iterations = choose_iterations(args, account.config, host)
    password = read_password()
    try:
        accounts.checked_password(password)
    except accounts.PasswordError as err:
        raise CommandError(str(err)) from None
    account.update(ACCOUNTS, lambda record: accounts.changed_password(
        record, password, plain=plain, hash=hash_name, iterations=iterations,
        now=now_if_13(version)))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    account = Account(args)
    account.record()
    if args.keep_data:
        # The roles go with the account: whoever registers the name again
        # must not inherit its rights.
        for store in (ACCOUNTS, *ROLE_STORES.values()):
            account.dm.store(account.user, account.host, store, None)
    else:
        account.dm.purge(account.user, account.host)  # every store, as prosodyctl deluser
    return 0


def default_role(config: Config | None, host: str) -> str:
    """Prosody 13's ``default_user_role`` of ``host``."""
    configured = config_option(config, host, "default_user_role")
    if isinstance(configured, str) and configured:
        return configured
    if config_option(config, host, "authentication") == "anonymous":
        return "prosody:guest"
    return accounts.DEFAULT_ROLE_13


def custom_roles(config: Config | None, host: str) -> tuple[str, ...]:
    """The names of the config's ``custom_roles`` (Prosody 13)."""
    value = config_option(config, host, "custom_roles")
    entries = value if isinstance(value, list) else []
    return tuple(e["name"] for e in entries
                 if isinstance(e, dict) and isinstance(e.get("name"), str))


def needs_version(args: argparse.Namespace, account: Account, what: str) -> str:
    version = version_of(args, account.dm, account.host)
    if version is None:
        raise CommandError(f"cannot tell from the data of {account.host} whether it is "
                           f"Prosody 0.12's or 13's, which {what} depends on: "
                           "give --prosody 0.12 or --prosody 13")
    return version


def cmd_role(args: argparse.Namespace) -> int:
    account = Account(args)
    account.record()
    version = needs_version(args, account, "the store of roles")
    store = ROLE_STORES[version]
    fallback = default_role(account.config, account.host)
    if args.role is None:
        current = account.dm.load(account.user, account.host, store)
        for name in accounts.role_names(current, version, fallback):
            print_line(name)
        return 0
    known = accounts.BUILTIN_ROLES_13 + custom_roles(account.config, account.host)

    def change(current: Any) -> Any:
        if version == "0.12":
            return accounts.set_role_012(args.role)
        return accounts.set_role_13(current, args.role, fallback, known)

    try:
        account.update(store, change)
    except accounts.RoleError as err:
        raise CommandError(str(err)) from None
    return 0


def set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    account = Account(args)
    account.record()
    version = needs_version(args, account, "disabling accounts")
    if version != "13":
        raise CommandError("Prosody 0.12 has no disabled accounts (it ignores 'disabled': "
                           "the account would still log in); delete it, or change its password")

    def change(record: Any) -> Any:
        updated = dict(record)
        if disabled:
            updated["disabled"] = True
        else:
            updated.pop("disabled", None)
        updated["updated"] = int(time.time())
        return updated

    account.update(ACCOUNTS, change)
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    return set_disabled(args, True)


def cmd_enable(args: argparse.Namespace) -> int:
    return set_disabled(args, False)


# ---------------------------------------------------------------------------
# The parser


def positive_iterations(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= accounts.PROSODY_MAX_ITERATIONS:
        raise argparse.ArgumentTypeError(
            f"must be from 1 to {accounts.PROSODY_MAX_ITERATIONS}")
    return value


VERSION_HELP = ("the Prosody whose data this is (default: told from the host's data: "
                "a store account_roles or accounts with created/updated/disabled mean 13, "
                "a store roles means 0.12)")


def password_options(p: argparse.ArgumentParser) -> None:
    form = p.add_mutually_exclusive_group()
    form.add_argument("--plain", action="store_true",
                      help="store the password in clear, for authentication = \"internal_plain\"")
    form.add_argument("--hash", choices=list(HASH_CHOICES),
                      help="SCRAM hash of the keys (default: the config's password_hash, else "
                           "the hash of most of the host's accounts, else SHA-1)")
    p.add_argument("--iterations", type=positive_iterations, metavar="N",
                   help="PBKDF2 iterations (default: the config's default_iteration_count, "
                        f"else {accounts.DEFAULT_ITERATIONS})")
    p.add_argument("--prosody", choices=["0.12", "13"], help=VERSION_HELP)


PASSWORD_NOTE = ("The password is asked twice on a terminal, else read as the first line "
                 "of stdin; never from the command line.")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    """Add ``user`` and its actions."""
    group = commands.add_parser(
        "user", help="manage accounts (add, passwd, delete, role, disable, enable, list)",
        description="Manage the accounts of a Prosody data directory without Prosody, "
                    "as prosodyctl would. " + PASSWORD_NOTE,
        epilog="examples:\n"
               "  prosody-store user add alice@example.com\n"
               "  printf '%s\\n' \"$PW\" | prosody-store user passwd alice@example.com\n"
               "  prosody-store user role alice@example.com prosody:admin\n"
               "  prosody-store user delete bob@example.com\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = group.add_subparsers(dest="user_command", metavar="ACTION")
    actions.required = True

    p = add_command(
        actions, "list", common, "list the accounts of a host",
        "List the users of HOST that have an account (a file in the store accounts).",
        "  prosody-store user list example.com\n"
        "  prosody-store user list example.com --json\n", cmd_list)
    p.add_argument("host", metavar="HOST")
    p.add_argument("--json", action="store_true", help="a JSON array")

    p = add_command(
        actions, "add", common, "create an account",
        "Create the account JID (the name nodeprep-ed and nameprep-ed, as prosodyctl "
        "adduser; an existing account is an error). Hashed with SCRAM as "
        "mod_auth_internal_hashed does, in clear only with --plain. " + PASSWORD_NOTE,
        "  prosody-store user add alice@example.com\n"
        "  printf '%s\\n' \"$PW\" | prosody-store user add bob@example.com --hash SHA-256\n"
        "  prosody-store user add carol@new.example --create-host < pw.txt\n", cmd_add)
    p.add_argument("jid", metavar="JID")
    password_options(p)
    p.add_argument("--create-host", action="store_true", help=CREATE_HOST_HELP)

    p = add_command(
        actions, "passwd", common, "change the password of an account",
        "Set a new password for JID, as Prosody's set_password: new salt and keys, "
        "other fields kept. A plain account stays plain unless --hash. " + PASSWORD_NOTE,
        "  prosody-store user passwd alice@example.com\n"
        "  printf '%s\\n' \"$PW\" | prosody-store user passwd alice@example.com\n", cmd_passwd)
    p.add_argument("jid", metavar="JID")
    password_options(p)

    p = add_command(
        actions, "delete", common, "delete an account and all its data",
        "Delete the account JID and every store of that user on its host, as prosodyctl "
        "deluser. With --keep-data only the account and its roles go.",
        "  prosody-store user delete bob@example.com\n"
        "  prosody-store user delete bob@example.com --keep-data\n", cmd_delete)
    p.add_argument("jid", metavar="JID")
    p.add_argument("--keep-data", action="store_true",
                   help="remove only the account and its roles; keep roster, archive, ...")

    p = add_command(
        actions, "role", common, "show or set the role of an account",
        "Without ROLE, print the roles of JID (primary first). With ROLE, set it: Prosody "
        "13's primary role in account_roles (prosody:guest, prosody:registered, "
        "prosody:member, prosody:admin, prosody:operator, or the config's custom_roles), "
        "or 0.12's role set in roles ({[ROLE] = true}). 'admin' is prosody:admin; "
        "'none' is the default role (13) or no role (0.12). Admins of the config's "
        "admins option are admins whatever is stored.",
        "  prosody-store user role alice@example.com prosody:admin\n"
        "  prosody-store user role alice@example.com none\n"
        "  prosody-store user role alice@example.com --prosody 13\n", cmd_role)
    p.add_argument("jid", metavar="JID")
    p.add_argument("role", metavar="ROLE", nargs="?")
    p.add_argument("--prosody", choices=["0.12", "13"], help=VERSION_HELP)

    for name, handler, verb in (("disable", cmd_disable, "disable"),
                                ("enable", cmd_enable, "enable")):
        p = add_command(
            actions, name, common, f"{verb} an account (Prosody 13)",
            f"{verb.capitalize()} the account JID as Prosody 13 does (disabled = true in "
            "its record, updated set). Prosody 0.12 ignores that field, so its data is "
            "refused.",
            f"  prosody-store user {name} mallory@example.com\n"
            f"  prosody-store user {name} mallory@example.com --prosody 13\n", handler)
        p.add_argument("jid", metavar="JID")
        p.add_argument("--prosody", choices=["0.12", "13"], help=VERSION_HELP)
