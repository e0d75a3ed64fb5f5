"""Project-level promises: the library needs only the standard library, and the
README's set-up commands are the ones CI runs."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import prosody_store

ROOT = Path(__file__).resolve().parent.parent


def test_library_imports_only_the_standard_library():
    modules = [m.name for m in pkgutil.walk_packages(prosody_store.__path__, "prosody_store.")
               if m.name != "prosody_store.__main__"]
    assert "prosody_store.cli.serve" in modules and "prosody_store.cli.migrate" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    # -S: no site-packages .pth hooks (they import things of their own)
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    top_level = set(json.loads(out.stdout))
    foreign = top_level - set(sys.stdlib_module_names) - {"prosody_store", "__main__", "_sitebuiltins"}
    assert not foreign, f"prosody_store pulls in {sorted(foreign)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.rst").read_text()
    block = readme.split(".. test-command-start")[1].split(".. test-command-end")[0]
    command = [line.strip() for line in block.splitlines() if line.startswith("   ")]
    assert command == ["python3 -m pip install -e '.[test]' && python3 -m pytest -q"]
    extracted = subprocess.run(
        ["awk", "/^\\.\\. test-command-start/{on=1; next} /^\\.\\. test-command-end/{on=0} "
                "on && /^   [^ ]/{sub(/^   /, \"\"); print}", str(ROOT / "README.rst")],
        capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == command[0]
    assert "README.rst" in (ROOT / ".ci" / "run").read_text()
