"""Azurite (the Azure Storage emulator, npm package `azurite`) fixture for Blob Storage tests.

`azurite-blob` is looked up on PATH, then under the repo in `.azurite/node_modules/.bin` and
`node_modules/.bin`. When it is missing and npm exists, `npm install --prefix .azurite azurite@3` is run
once (.azurite/ is git-ignored). Without node/npm the tests using the fixture are skipped with the reason.
One server per session on a free loopback port with a temporary data folder; killed at teardown.

Use: `from tests.azurite import azurite  # noqa: F401` in a test module, then the `azurite` fixture gives
the devstoreaccount1 connection string.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.server_kit import free_port, npm_install, wait_port

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# The emulator's published, well-known development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite(install: bool = True) -> tuple[str | None, str]:
    """(path of azurite-blob, '') or (None, reason)."""
    found = shutil.which("azurite-blob")
    if found:
        return found, ""
    for cand in (REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob",
                 REPO / "node_modules" / ".bin" / "azurite-blob"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand), ""
    if not (shutil.which("node") and shutil.which("npm")):
        return None, "Azurite not available: azurite-blob is not installed and node/npm are missing"
    if not install:
        return None, "Azurite not installed"
    failed = npm_install(REPO / ".azurite", "azurite@3", "Azurite not available")
    return (None, failed) if failed else find_azurite(install=False)


def connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


@pytest.fixture(scope="session")
def azurite():
    pytest.importorskip("azure.storage.blob")
    exe, reason = find_azurite()
    if exe is None:
        pytest.skip(reason)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as location:
        proc = subprocess.Popen(
            [exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
             "--skipApiVersionCheck", "--loose", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            try:
                wait_port(port, proc, "azurite-blob", timeout=30)
            except RuntimeError as e:
                err = proc.stderr.read().decode(errors="replace")[-300:] if proc.poll() is not None else ""
                pytest.skip(f"Azurite did not start: {e} {err}")
            yield connection_string(port)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
