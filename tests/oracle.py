"""Real Prosody as the test oracle.

One ``lua5.4`` process runs ``tests/lua/oracle.lua`` with Prosody's own Lua
modules (``/usr/lib/prosody``, Debian's prosody package) on its path and answers
requests over a pipe, so a test can ask Prosody what it would write or read
without paying for a new process each time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

PROSODY_LIB = Path(os.environ.get("PROSODY_LIB", "/usr/lib/prosody"))
LUA_DIR = Path(__file__).parent / "lua"
LUA = shutil.which("lua5.4")


def lua_env() -> dict[str, str]:
    """Environment that lets lua5.4 ``require`` Prosody's modules and ours."""
    env = dict(os.environ)
    env["LUA_PATH"] = f"{LUA_DIR}/?.lua;{PROSODY_LIB}/?.lua;;"
    env["LUA_CPATH"] = f"{PROSODY_LIB}/?.so;;"
    return env


def missing() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if LUA is None:
        return "lua5.4 is not installed (apt-get install lua5.4)"
    if not (PROSODY_LIB / "util" / "serialization.lua").exists():
        return f"Prosody's Lua modules are not in {PROSODY_LIB} (apt-get install prosody)"
    return None


class OracleError(Exception):
    """Lua raised an error while answering a request."""


class Oracle:
    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [LUA, str(LUA_DIR / "oracle.lua")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=lua_env(),
        )
        self._lock = threading.Lock()

    def call(self, command: str, payload: bytes | str = b"") -> bytes:
        """Run ``require(module)[function](payload)`` in Lua; ``command`` is "module.function"."""
        if isinstance(payload, str):
            payload = payload.encode()
        with self._lock:
            stdin, stdout = self._proc.stdin, self._proc.stdout
            stdin.write(b"%s\n%d\n" % (command.encode(), len(payload)) + payload)
            stdin.flush()
            status = stdout.readline().strip()
            if not status:
                raise OracleError(f"lua5.4 exited (status {self._proc.wait()})")
            length = int(stdout.readline())
            body = stdout.read(length)
        if status != b"ok":
            raise OracleError(body.decode("utf-8", "replace"))
        return body

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=10)


def run_lua(code: str, stdin: bytes = b"", cwd: str | None = None, timeout: float = 600) -> bytes:
    """Run a one-off Lua chunk with Prosody's modules on the path; return its stdout."""
    proc = subprocess.run(
        [LUA, "-e", code],
        input=stdin,
        capture_output=True,
        env=lua_env(),
        cwd=cwd,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise OracleError(proc.stderr.decode("utf-8", "replace"))
    return proc.stdout
