"""Project-level promises: the library needs only the standard library, and the
README's set-up commands are the ones CI runs."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tarfile
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
    assert command == ["python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
                       "&& .venv/bin/python -m pytest -q"]
    extracted = subprocess.run(
        ["awk", "/^\\.\\. test-command-start/{on=1; next} /^\\.\\. test-command-end/{on=0} "
                "on && /^   [^ ]/{sub(/^   /, \"\"); print}", str(ROOT / "README.rst")],
        capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == command[0]
    assert "README.rst" in (ROOT / ".ci" / "run").read_text()


def build_sdist(tmp_path: Path) -> Path:
    """The sdist of this checkout (built with the installed setuptools, offline)."""
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                    str(out), str(ROOT)], capture_output=True, check=True, cwd=tmp_path)
    [sdist] = out.glob("prosody[-_]store-*.tar.gz")
    return sdist


def test_sdist_is_clean_and_its_tests_run(tmp_path):
    """The sdist passes twine's checks, declares no dependency outside its
    extras, and carries what its tests need: they are collected without error
    and a sample of them passes inside the unpacked sdist."""
    sdist = build_sdist(tmp_path)
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist)],
                   capture_output=True, check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    [tree] = (tmp_path / "src").iterdir()
    for name in ("LICENSE", "CHANGELOG.rst", "prosody_store/py.typed", "wsgi_app/py.typed",
                 "tests/conftest.py", "tests/lua/oracle.lua", "fixtures/demo",
                 "contrib/systemd/prosody-store.service", ".ci/run"):
        assert (tree / name).exists(), name
    info = (tree / "PKG-INFO").read_text()
    requires = (tree / "prosody_store.egg-info" / "requires.txt").read_text()
    assert requires.startswith("\n[") or requires.startswith("["), requires  # extras only
    assert "[server]\nWerkzeug" in requires
    assert "Requires-Python: >=3.11" in info
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                                "no:cacheprovider"], capture_output=True, text=True, cwd=tree)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    sample = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_serialization.py", "tests/test_store_api.py"],
                            capture_output=True, text=True, cwd=tree)
    assert sample.returncode == 0, sample.stdout[-2000:]
