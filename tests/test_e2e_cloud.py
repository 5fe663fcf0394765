"""Cloud billing through the whole flow: HTTP request -> job -> sp_cloud_1 -> FOCUS gate -> reconciliation."""
from __future__ import annotations

from decimal import Decimal

import pytest

from cli.remote import post_and_wait
from shared.auth import create_key
from shared.config import ROOT
from shared.convert import reconcile_cloud
from shared.secrets import CredentialStore

SAMPLES = ROOT / "data" / "samples"
AWS_WINDOW = {"start_date": "2023-11-01", "end_date": "2023-11-30"}


@pytest.fixture()
def api(rt, acme):
    from cli.server import start_background

    server, url = start_background()
    yield url, create_key(rt.warehouse, "acme")
    server.shutdown()


def test_aws_sample_reconciles_to_the_cent_and_reruns_unchanged(rt, api):
    url, key = api
    cred = CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": (SAMPLES / "aws").as_uri()})
    run = post_and_wait(url, key, "acme", "cloud/aws/cost/billing", AWS_WINDOW, timeout=120)
    assert run["status"] == "succeeded", run
    (period,) = run["quality"]["reconciliation"]
    assert period["ok"] and period["billing_period"] == "2023-11-01"
    assert abs(Decimal(period["difference"])) <= Decimal("0.005")
    q = "SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`"
    first = rt.warehouse.query(q)[0]
    assert post_and_wait(url, key, "acme", "cloud/aws/cost/billing", AWS_WINDOW, timeout=120)["status"] == "succeeded"
    assert rt.warehouse.query(q)[0] == first

    # a FOCUS total that drifts from the source is caught
    rt.warehouse.execute("UPDATE `acme_prod.cost_data_standard_1_3` SET BilledCost = BilledCost + 0.01 "
                         "WHERE ChargeCategory = 'Tax'")
    params = {"org_slug": "acme", "pipeline_id": "cloud/aws/cost/billing", "credential_id": cred,
              "start_date": __import__("datetime").date(2023, 11, 1), "end_date": __import__("datetime").date(2023, 11, 30)}
    (period,) = reconcile_cloud(rt.warehouse, "acme_prod", params)
    assert not period["ok"] and period["difference"] > Decimal("0.005")


def test_truncated_cur_fails_the_run_and_keeps_the_previous_data(rt, api, tmp_path):
    import gzip
    import shutil

    url, key = api
    src = next((SAMPLES / "aws").glob("*.csv"))
    folder = tmp_path / "cur"
    folder.mkdir()
    with src.open("rb") as f, gzip.open(folder / "cur-00001.csv.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": folder.as_uri()})
    assert post_and_wait(url, key, "acme", "cloud/aws/cost/billing", AWS_WINDOW, timeout=120)["status"] == "succeeded"
    before = rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`")
    data = (folder / "cur-00001.csv.gz").read_bytes()
    (folder / "cur-00001.csv.gz").write_bytes(data[: len(data) // 2])
    failed = post_and_wait(url, key, "acme", "cloud/aws/cost/billing", AWS_WINDOW, timeout=120)
    assert failed["status"] == "failed" and "cur-00001.csv.gz" in failed["error"]
    assert rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`") == before


def test_cloud_backfill_is_one_run_per_month_and_resumes(rt, acme):
    import datetime as dt

    from shared import runs
    from shared.api import month_chunks, request_run

    assert month_chunks(dt.date(2023, 10, 15), dt.date(2024, 1, 2)) == [
        (dt.date(2023, 10, 15), dt.date(2023, 10, 31)), (dt.date(2023, 11, 1), dt.date(2023, 11, 30)),
        (dt.date(2023, 12, 1), dt.date(2023, 12, 31)), (dt.date(2024, 1, 1), dt.date(2024, 1, 2))]
    CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": (SAMPLES / "aws").as_uri()})
    body = {"start_date": "2023-10-01", "end_date": "2023-12-31"}
    first = request_run(rt, "acme", "cloud/aws/cost/billing", body, trigger="test")
    assert [(r["start_date"], r["end_date"]) for r in first["runs"]] == [
        ("2023-10-01", "2023-10-31"), ("2023-11-01", "2023-11-30"), ("2023-12-01", "2023-12-31")]
    rt.bus.drain()
    assert {runs.get_run(rt.warehouse, "acme", r["run_id"])["status"] for r in first["runs"]} == {"succeeded"}
    total = rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`")
    # resuming finds nothing left to do; a plain re-post re-runs every month and changes nothing
    with pytest.raises(Exception, match="already succeeded"):
        request_run(rt, "acme", "cloud/aws/cost/billing", {**body, "resume": True}, trigger="test")
    again = request_run(rt, "acme", "cloud/aws/cost/billing", body, trigger="test")
    rt.bus.drain()
    assert len(again["runs"]) == 3
    assert rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`") == total
