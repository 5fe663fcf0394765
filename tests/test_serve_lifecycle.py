"""Runs that always end, across processes: `cloudact serve` killed with SIGKILL during a cloud run and
restarted, `cloudact serve` stopped with SIGTERM, and Ctrl-C in `cloudact run --wait`. Each runs the real
command as a subprocess on a temporary CLOUDACT_HOME; providers are loopback stubs in this process."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import signal
import subprocess
import sys
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import httpx
import pytest

from tests.server_kit import free_port
from tests.run_api import RunsApi, wait_until
from shared import runs

ROOT = Path(__file__).resolve().parent.parent
OCI_SAMPLE = ROOT / "data" / "samples" / "oci" / "reports_cost-csv_0000000030000269.csv"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaadsyhydp66mjpsohqocfcgzaabtrit47ex2igzu2j6lhuadrrglca"
OCI = "cloud/oci/cost/billing"
NOV = {"start_date": "2023-11-01", "end_date": "2023-11-30"}
OPENAI = "genai/payg/openai"
ADMIN_KEY = "sk-admin-serve-test"
GENAI = {"start_date": "2026-10-01", "end_date": "2026-10-03"}
LEASE_S = 2


def prepare(home: Path, credential: tuple[str, dict]) -> tuple[str, str]:
    """Org acme with a key and one credential on a fresh home; the warehouse is closed afterwards."""
    from shared import runtime
    from shared.auth import create_key
    from shared.config import settings
    from shared.secrets import CredentialStore
    from shared.tenants import bootstrap, create_org, sync_reference_data

    rt = runtime.embedded(settings())
    try:
        bootstrap(rt.warehouse)
        sync_reference_data(rt.warehouse)
        create_org(rt.warehouse, "acme")
        key = create_key(rt.warehouse, "acme")
        cred = CredentialStore(rt.warehouse, rt.settings).add("acme", *credential)
    finally:
        rt.close()
    return key, cred


def warehouse_query(sql: str, params=None) -> list[dict]:
    """Read the home's warehouse once no process holds it."""
    from shared.config import settings
    from shared.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(settings().warehouse_path)
    try:
        return wh.query(sql, params)
    finally:
        wh.close()


class Serve(RunsApi):
    """`cloudact serve` as a subprocess on the test's CLOUDACT_HOME."""

    def __init__(self, tmp: Path, key: str, **env: str):
        self.port = free_port()
        self.log = open(tmp / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port)], cwd=ROOT,
            env={**os.environ, "CLOUDACT_RUN_LEASE_S": str(LEASE_S), **env}, stdout=self.log, stderr=self.log)
        super().__init__(httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers={"X-API-Key": key},
                                      timeout=30), "acme")
        wait_until(self._up, 60, "cloudact serve answering")
        self.started = time.monotonic()

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"cloudact serve exited: {Path(self.log.name).read_text()}")
        try:
            return self.http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def post(self, pipeline: str, body: dict) -> str:
        return self.post_run(pipeline, body)

    def ended(self, run_id: str, timeout: float = 60) -> dict:
        return super().ended(run_id, timeout)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.http.close()
        self.log.close()
        return code


@pytest.fixture(scope="module")
def oci_api_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def sample_total() -> tuple[int, Decimal]:
    """Rows and cost of the OCI sample, read here from the CSV (each cost at NUMERIC's 9 decimals)."""
    with OCI_SAMPLE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    nano = Decimal("0.000000001")
    return len(rows), sum((Decimal(r["cost/myCost"]).quantize(nano, ROUND_HALF_EVEN) for r in rows), Decimal(0))


def test_sigkill_during_a_cloud_run_then_restart_ends_it_and_the_slice_runs_once(home, tmp_path, oci_api_key):
    pytest.importorskip("oci")
    from stubs.oci_object_storage import OciObjectStorageStub

    with OciObjectStorageStub(tenancy=TENANCY) as stub:
        stub.create_bucket("bling", TENANCY)
        stub.put("bling", TENANCY, "reports/cost-csv/0000000030000269-00001.csv.gz",
                 gzip.compress(OCI_SAMPLE.read_bytes()), time_created=dt.datetime(2023, 11, 14, tzinfo=dt.UTC))
        key, _ = prepare(home, ("oci", {"tenancy_ocid": TENANCY, "user_ocid": "ocid1.user.oc1..reader",
                                         "fingerprint": ":".join(["a1"] * 16), "private_key": oci_api_key,
                                         "region": "us-sanjose-1", "endpoint": stub.base_url}))
        first = Serve(tmp_path, key)
        stub.hold("/o/")  # the report download stalls: the run is mid-ingest
        run_id = first.post(OCI, NOV)
        assert stub.wait_held(timeout=60)
        assert first.get(run_id)["status"] == "running"
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        stub.release()

        second = Serve(tmp_path, key)
        failed = wait_until(lambda: (r := second.get(run_id))["status"] != "running" and r, LEASE_S + 5,
                            "the killed run ending")
        restart_to_failed = time.monotonic() - second.started
        assert failed["status"] == "failed" and failed["error"].startswith(runs.LEASE_EXPIRED), failed
        expiry_to_failed = (dt.datetime.fromisoformat(failed["finished_at"])
                            - dt.datetime.fromisoformat(failed["lease_expires_at"])).total_seconds()
        print(f"\nlease expiry to failed: {expiry_to_failed:.2f} s (restart to failed: {restart_to_failed:.2f} s)")
        assert expiry_to_failed >= 0 and restart_to_failed < LEASE_S + 3

        again = second.ended(second.post(OCI, NOV))  # the slice is free; this time it runs through
        assert again["status"] == "succeeded", again
        assert second.stop() == 0

    rows, total = sample_total()
    focus = warehouse_query("SELECT COUNT(*) AS n, SUM(BilledCost) AS billed, COUNT(DISTINCT x_run_id) AS runs "
                            "FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": OCI})[0]
    assert (focus["n"], focus["billed"], focus["runs"]) == (rows, total, 1)  # exactly once, to the nano-dollar
    raw = warehouse_query("SELECT COUNT(DISTINCT x_run_id) AS runs, COUNT(*) AS n FROM `acme_prod.oci_billing_raw`")[0]
    assert raw == {"runs": 1, "n": rows}


@pytest.fixture()
def openai_home(home):
    from stubs.genai_data import openai_demo_usage
    from stubs.openai import OpenAIStub

    with OpenAIStub(admin_key=ADMIN_KEY, usage=openai_demo_usage(dt.date(2026, 10, 1), 5, seed=2)) as stub:
        key, cred = prepare(home, ("openai", {"admin_key": ADMIN_KEY, "base_url": stub.base_url}))
        yield stub, key
        stub.release()


def held_run(openai_home, tmp_path, grace_s: str):
    """A server with a shutdown grace period of `grace_s` and a GenAI run it started, held at the provider:
    (stub, server, run_id)."""
    stub, key = openai_home
    server = Serve(tmp_path, key, CLOUDACT_SHUTDOWN_GRACE_S=grace_s)
    stub.hold("/organization/usage")
    run_id = server.post(OPENAI, GENAI)
    assert stub.wait_held()
    return stub, server, run_id


def test_sigterm_ends_runs_past_the_grace_period_failed_never_running(openai_home, tmp_path):
    _, server, run_id = held_run(openai_home, tmp_path, grace_s="1")
    t0 = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 10
    (run,) = warehouse_query("SELECT status, error FROM `organizations.org_pipeline_runs` WHERE run_id = @r",
                             {"r": run_id})
    assert run["status"] == "failed" and "shut down before the run finished" in run["error"]
    assert warehouse_query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily`")[0]["n"] == 0


def test_sigterm_drains_a_run_that_finishes_within_the_grace_period(openai_home, tmp_path):
    stub, server, run_id = held_run(openai_home, tmp_path, grace_s="30")
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    stub.release()  # the provider answers during the grace period: the run completes
    assert server.stop(timeout=30) == 0
    (run,) = warehouse_query("SELECT status FROM `organizations.org_pipeline_runs` WHERE run_id = @r", {"r": run_id})
    assert run["status"] == "succeeded"


def test_ctrl_c_in_run_wait_cancels_the_run_it_started(openai_home, tmp_path):
    stub, _ = openai_home
    stub.hold("/organization/usage")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "acme", OPENAI, "--start", GENAI["start_date"],
                             "--end", GENAI["end_date"], "--wait"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert stub.wait_held(timeout=60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, errs = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nCtrl-C to cancelled and exited: {took:.2f} s")
    assert proc.returncode == 130, (out, errs)
    assert "Aborted!" not in out + errs
    (run,) = warehouse_query("SELECT run_id, status, error FROM `organizations.org_pipeline_runs`")
    assert run["status"] == "cancelled" and "Ctrl-C" in run["error"]
    assert f"cancelled {run['run_id']}" in errs
    assert warehouse_query("SELECT COUNT(*) AS n FROM `acme_prod.genai_usage_daily`")[0]["n"] == 0
