"""Emulator fixtures for integration tests: the real Pub/Sub emulator (Java, from gcloud).

The emulator runs once per session on a free loopback port; the `pubsub_emulator` fixture points
PUBSUB_EMULATOR_HOST at it for one test and restores the environment afterwards. Where gcloud's
pubsub-emulator component or Java is missing, the tests using it are skipped with the reason.

conftest.py imports these fixtures: `from tests.emulators import pubsub_emulator, pubsub_emulator_server`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SKIP_REASON = "Pub/Sub emulator not installed: needs gcloud's pubsub-emulator component and Java 17"
_SDK_CANDIDATES = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")
_EMULATOR_REL = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def _sdk_roots():
    for root in _SDK_CANDIDATES:
        yield Path(root)
    gcloud = shutil.which("gcloud")
    if gcloud:
        with tempfile.TemporaryDirectory(prefix="gcloud-config-") as cfg:
            try:
                out = subprocess.run(
                    [gcloud, "info", "--format=value(installation.sdk_root)"],
                    capture_output=True, text=True, timeout=30, check=False,
                    env={**os.environ, "CLOUDSDK_CONFIG": cfg, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
                )
            except (OSError, subprocess.TimeoutExpired):
                return
        if out.returncode == 0 and out.stdout.strip():
            yield Path(out.stdout.strip())


def find_pubsub_emulator() -> Path | None:
    """The emulator start script, or None when the component or Java is missing."""
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return None
    for root in _sdk_roots():
        script = root / _EMULATOR_REL
        if script.is_file() and os.access(script, os.X_OK):
            return script
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Pub/Sub emulator exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200 and r.read().decode().strip() == "Ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Pub/Sub emulator not ready after {timeout:g} s:\n{log_path.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the emulator's whole process group (the script execs java; be thorough anyway)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def pubsub_emulator_server(tmp_path_factory):
    """Start the Pub/Sub emulator for the session; yields its `host:port`."""
    script = find_pubsub_emulator()
    if script is None:
        pytest.skip(SKIP_REASON)
    port = free_port()
    workdir = tmp_path_factory.mktemp("pubsub-emulator")
    log_path = workdir / "emulator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(script), "--host=127.0.0.1", f"--port={port}"],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as a whole on teardown
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/", proc, log_path, timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture()
def pubsub_emulator(pubsub_emulator_server):
    """PUBSUB_EMULATOR_HOST set to the session's emulator for this test, restored afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator_server)
    try:
        yield pubsub_emulator_server
    finally:
        mp.undo()


@pytest.fixture()
def gcs_emulator():
    """A Cloud Storage JSON API emulator (gcp-storage-emulator, in memory, resumable uploads included) on a free
    loopback port, with bucket `finops-exports`; yields its base URL."""
    server_mod = pytest.importorskip("gcp_storage_emulator.server",
                                     reason="gcp-storage-emulator not installed (the test extra has it)")
    port = free_port()
    server = server_mod.create_server("127.0.0.1", port, in_memory=True, default_bucket="finops-exports")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
