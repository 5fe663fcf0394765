"""Helpers for tests that run a local server process: installing it with npm, a free loopback port, and waiting for
the process to listen."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS's pick; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float,
              detail: Callable[[], str] = lambda: "") -> None:
    """Return once 127.0.0.1:`port` accepts a connection; a RuntimeError naming `name` if `proc` exits first (with
    `detail()` appended, e.g. the tail of its log) or nothing listens within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}{detail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:g} s")


def npm_install(prefix: Path, package: str, what: str) -> str:
    """`npm install` `package` into `prefix`: '' when it did, else why not, after `what` (e.g. "Azurite not
    available")."""
    try:
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), package],
                             capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{what}: npm install {package} failed ({e})"
    if out.returncode != 0:
        return f"{what}: npm install {package} failed: {out.stderr.strip()[-300:]}"
    return ""
