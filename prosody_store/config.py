"""What this project needs from a Prosody config file, read without running it.

A ``prosody.cfg.lua`` is a Lua script, but in practice a list of statements of
a few shapes::

    data_path = "/var/lib/prosody"
    admins = { "admin@example.com" }
    VirtualHost "example.com"
        admins = { "boss@example.com" }
        enabled = false
    Component "muc.example.com" "muc"
    Include "conf.d/*.cfg.lua"

Values are read with the data codec, so only literals are understood.  A
statement that is anything else (an expression, a function call, ``local``)
is reported in :attr:`Config.problems` with its line and column, and never
guessed at.  ``Include`` is followed (glob patterns relative to the file).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, cast

from prosody_store.errors import Error
from prosody_store.serialization import LuaSyntaxError, read_value, skip_space

DEFAULT_DATA_PATH = "/var/lib/prosody"

_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_SECTION_KEYWORDS = {b"VirtualHost", b"Host", b"Component"}


class ConfigError(Error, ValueError):
    """The config file cannot be read at all (missing, or an Include loop)."""


@dataclass
class Section:
    """The global section (host ``None``) or one ``VirtualHost``/``Component``."""

    host: str | None
    kind: str  # "global", "VirtualHost" or "Component"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    path: str
    sections: list[Section]
    problems: list[str]

    @property
    def globals(self) -> dict[str, Any]:
        return self.sections[0].options

    @property
    def data_path(self) -> str:
        value = self.globals.get("data_path", DEFAULT_DATA_PATH)
        return os.path.join(os.path.dirname(self.path), value) if isinstance(value, str) else DEFAULT_DATA_PATH

    @property
    def admins(self) -> list[str]:
        """The global ``admins``: admin on every host."""
        return _strings(self.globals.get("admins"))

    @property
    def hosts(self) -> list[str]:
        """The enabled ``VirtualHost`` names, each once."""
        # A VirtualHost section always has a host.
        return cast("list[str]", list(dict.fromkeys(
            s.host for s in self.sections
            if s.kind == "VirtualHost" and s.options.get("enabled", True) is not False)))

    @property
    def host_admins(self) -> dict[str, list[str]]:
        """``admins`` set inside a ``VirtualHost`` section, per host."""
        # A VirtualHost section always has a host.
        return cast("dict[str, list[str]]", {s.host: _strings(s.options["admins"]) for s in self.sections
                                             if s.kind == "VirtualHost" and "admins" in s.options})

    @property
    def default_iteration_count(self) -> int | None:
        """The largest ``default_iteration_count`` set anywhere (global or per host),
        the cost of a normal login with ``internal_hashed``; None if never set."""
        counts = [v for s in self.sections for k, v in s.options.items()
                  if k == "default_iteration_count" and isinstance(v, int)
                  and not isinstance(v, bool) and v > 0]
        return max(counts, default=None)


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str)]
    return []


def read_config(path: str | os.PathLike[str]) -> Config:
    """Read ``path`` and the files it includes."""
    path = os.fspath(path)
    config = Config(path, [Section(None, "global")], [])
    _read_file(path, config, set())
    return config


def _read_file(path: str, config: Config, seen: set[str]) -> None:
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"{path}: included twice (an Include loop)")
    seen.add(real)
    try:
        with open(path, "rb") as f:
            src = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    pos = skip_space(src, 0)
    while pos < len(src):
        try:
            pos = _statement(src, pos, path, config, seen)
        except LuaSyntaxError as err:
            config.problems.append(f"{path}:{err.lineno}:{err.colno}: not understood: {err.msg}")
            pos = _next_line(src, err.pos)
        pos = skip_space(src, pos)


def _statement(src: bytes, pos: int, path: str, config: Config, seen: set[str]) -> int:
    m = _NAME.match(src, pos)
    if not m:
        raise LuaSyntaxError("a statement must start with a name", src, pos)
    name = m.group()
    after = skip_space(src, m.end())
    if src[after:after + 1] == b"=" and src[after + 1:after + 2] != b"=":
        end, value = read_value(src, after + 1)
        config.sections[-1].options[name.decode()] = value
        return _end_of_statement(src, end)
    if name in _SECTION_KEYWORDS or name == b"Include":
        end, arg = _string_argument(src, after)
        if name == b"Include":
            for included in sorted(glob.glob(os.path.join(os.path.dirname(path), arg))):
                _read_file(included, config, seen)
            return _end_of_statement(src, end)
        kind = "Component" if name == b"Component" else "VirtualHost"
        config.sections.append(Section(arg, kind))
        nxt = skip_space(src, end)
        if kind == "Component" and src[nxt:nxt + 1] in (b'"', b"'"):
            end, _plugin = _string_argument(src, nxt)
        return _end_of_statement(src, end)
    raise LuaSyntaxError(f"'{name.decode()}' is not an assignment or a section", src, pos)


def _string_argument(src: bytes, pos: int) -> tuple[int, str]:
    parens = src[pos:pos + 1] == b"("
    end, value = read_value(src, pos + 1 if parens else pos)
    if not isinstance(value, str):
        raise LuaSyntaxError("a string is expected here", src, pos)
    if parens:
        end = skip_space(src, end)
        if src[end:end + 1] != b")":
            raise LuaSyntaxError("')' expected", src, end)
        end += 1
    return end, value


def _end_of_statement(src: bytes, pos: int) -> int:
    """After a statement: an optional ``;``; anything else must start a new line's statement."""
    pos = skip_space(src, pos)
    if src[pos:pos + 1] == b";":
        return pos + 1
    if pos < len(src) and not _NAME.match(src, pos):
        raise LuaSyntaxError("end of statement expected", src, pos)
    return pos


def _next_line(src: bytes, pos: int) -> int:
    nl = src.find(b"\n", pos)
    return len(src) if nl < 0 else nl + 1
