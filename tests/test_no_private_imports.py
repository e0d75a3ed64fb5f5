"""No module of the project uses another module's private names.

Every module under ``prosody_store/`` and ``wsgi_app/`` is parsed with
:mod:`ast` and checked for:

* an import of an underscored name from another project module
  (``from prosody_store.datamanager import _atomic_write``), or of a private
  project module (``from prosody_store import _lua_table``);
* access to an underscored attribute that the module itself does not define
  (``dm._write_lock``, ``pjson._format_float``, ``view._fd``).  A module may
  use the private names it defines itself (``self._x``, ``other._x`` of its
  own classes, its own ``_helpers``), and the private names of modules outside
  the project (the standard library's ``os._exit``, say).

Dunder names (``__init__``) are not private.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prosody_store", "wsgi_app")

# Private modules a given project module may import: the Lua reader's own
# helpers.  ``_fast_reader`` is serialization.py's private fast path for
# Prosody's output, and ``_lua_table`` the table-building rules both share.
ALLOWED_PRIVATE_MODULES = {
    ("prosody_store.serialization", "prosody_store._fast_reader"),
    ("prosody_store.serialization", "prosody_store._lua_table"),
    ("prosody_store._fast_reader", "prosody_store._lua_table"),
    # the optional C modules, where built (None otherwise): the codec and export's encoder
    ("prosody_store.serialization", "prosody_store._speedups"),
    ("prosody_store.export", "prosody_store._speedups"),
    ("prosody_store.archive", "prosody_store._speedups"),
    # the package says which implementation is in use (prosody_store.IMPLEMENTATION)
    ("prosody_store", "prosody_store._speedups"),
}

# Underscored but public by convention (namedtuple API).
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_files() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import``."""
    if not node.level:
        return node.module or ""
    package = importer.split(".")
    path = MODULES.get(importer)
    if path is None or path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_module(module: str) -> bool:
    return any(is_private(part) for part in module.split("."))


def defined_private_names(tree: ast.AST) -> set[str]:
    """The underscored names a module defines: functions, classes, variables, attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return {n for n in names if is_private(n)}


def foreign_module_names(module: str, tree: ast.AST) -> set[str]:
    """Local names bound to modules outside the project (``import os``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not is_project(alias.name):
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = resolve(module, node)
            if not is_project(source):
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def violations(module: str, source: str, filename: str) -> list[str]:
    """The reach-ins of one module (``module`` is its dotted name)."""
    tree = ast.parse(source, filename)
    own = defined_private_names(tree)
    foreign = foreign_module_names(module, tree)
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (is_project(alias.name) and private_module(alias.name)
                        and (module, alias.name) not in ALLOWED_PRIVATE_MODULES):
                    report(node, f"imports private module {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            source = resolve(module, node)
            if not is_project(source):
                continue
            if private_module(source) and (module, source) not in ALLOWED_PRIVATE_MODULES:
                report(node, f"imports from private module {source}")
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES and private_module(full):
                    if (module, full) not in ALLOWED_PRIVATE_MODULES:
                        report(node, f"imports private module {full}")
                elif is_private(alias.name):
                    report(node, f"imports private name {alias.name} from {source}")
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            if node.attr in own or node.attr in PUBLIC_UNDERSCORED:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in foreign:
                continue
            report(node, f"uses private attribute .{node.attr} defined elsewhere")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_reach_ins(module: str) -> None:
    path = MODULES[module]
    source = path.read_text(encoding="utf-8")
    assert violations(module, source, str(path.relative_to(ROOT))) == []


def test_modules_found() -> None:
    assert "prosody_store.datamanager" in MODULES
    assert "wsgi_app.app" in MODULES
    assert len(MODULES) > 10


def _check_source(source: str) -> list[str]:
    return violations("prosody_store.sample", source, "sample.py")


@pytest.mark.parametrize("source", [
    "from prosody_store.datamanager import _atomic_write\n",
    "from .datamanager import _atomic_write\n",
    "from prosody_store import _lua_table\n",
    "import prosody_store._fast_reader\n",
    "def f(dm):\n    return dm._write_lock\n",
    "from prosody_store import json as pjson\nx = pjson._format_float\n",
    "def f(view):\n    return view._fd\n",
])
def test_detects_reach_ins(source: str) -> None:
    assert _check_source(source) != []


@pytest.mark.parametrize("source", [
    "import os\nos._exit(0)\n",
    "class A:\n    def __init__(self):\n        self._x = 1\n    def f(self, other):\n"
    "        return other._x\n",
    "def _helper():\n    pass\n_helper()\n",
    "from prosody_store.datamanager import DataManager\n",
    "x = (1).__class__\n",
])
def test_allows_own_and_foreign(source: str) -> None:
    assert _check_source(source) == []
