"""focus/file/import: three vendors' FOCUS files (1.0 gzip CSV, 1.2 Parquet, 1.3 CSV) through the whole flow:
HTTP request -> job -> 50_focus_export.sql -> FOCUS 1.3 gate -> reconciliation, with the vendors' own names.

Every expected figure is summed here from stubs.focus_vendor_data.charges, never read from the project's output.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

import httpx

from shared.auth import create_key
from shared.secrets import CredentialInvalid, CredentialStore
from stubs import focus_vendor_data as vendors
from tests.run_api import RunsApi

PIPELINE = "focus/file/import"
FIRST, LAST = dt.date(2026, 9, 29), dt.date(2026, 10, 2)  # across a billing period
WINDOW = {"start_date": FIRST.isoformat(), "end_date": LAST.isoformat()}
Q = Decimal("0.000000001")
FOCUS = "`acme_prod.cost_data_standard_1_3`"


def expected_totals() -> dict[tuple[str, str, str], Decimal]:
    """SUM(BilledCost) per (vendor name, billing month, currency) of the generated charges."""
    out: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for vendor in vendors.VENDORS:
        for day in vendors.days(FIRST, LAST):
            for c in vendors.charges(vendor, day):
                name = c.get("ProviderName") or c["ServiceProviderName"]
                out[(name, c["BillingPeriodStart"][:10], c["BillingCurrency"])] += \
                    Decimal(c["BilledCost"]).quantize(Q, ROUND_HALF_EVEN)
    return dict(out)


@pytest.fixture()
def api(rt, acme):
    from cli.server import start_background

    server, url = start_background()
    yield url, create_key(rt.warehouse, "acme")
    server.shutdown()


def run_window(api) -> list[dict]:
    """POST the window (one run per billing month, as every cloud backfill) and wait for each run to end."""
    url, key = api
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        r = http.post(f"/api/v1/pipelines/run/acme/{PIPELINE}", json=WINDOW)
        assert r.status_code == 202, r.text
        runs = RunsApi(http, "acme")
        return [runs.ended(q["run_id"], timeout=120) for q in r.json()["runs"]]


def succeeded(done: list[dict]) -> bool:
    return all(r["status"] == "succeeded" for r in done)


def add(rt, doc: dict) -> str:
    return CredentialStore(rt.warehouse, rt.settings).add("acme", "focus", doc)


def focus_totals(rt) -> dict[tuple[str, str, str], Decimal]:
    rows = rt.warehouse.query(
        f"""SELECT ProviderName AS name, CAST(DATE(BillingPeriodStart) AS STRING) AS period,
                   BillingCurrency AS currency, SUM(BilledCost) AS billed
            FROM {FOCUS} WHERE x_pipeline_id = @p GROUP BY 1, 2, 3""", {"p": PIPELINE})
    return {(r["name"], r["period"], r["currency"]): r["billed"] for r in rows}


def test_three_vendors_files_run_from_http_pass_the_gate_and_reconcile(rt, api, tmp_path):
    vendors.write_all(FIRST, LAST, tmp_path / "exports")
    add(rt, {"source": (tmp_path / "exports").as_uri()})
    done = run_window(api)
    assert len(done) == 2 and succeeded(done), done
    periods = [p for r in done for p in r["quality"]["reconciliation"]]
    assert {(p["billing_period"], p["currency"]) for p in periods} == {(per, cur) for _, per, cur in expected_totals()}
    assert all(p["ok"] for p in periods)
    assert focus_totals(rt) == expected_totals()

    # a re-run replaces its slice: the same rows, not twice as many
    count = f"SELECT COUNT(*) AS n FROM {FOCUS} WHERE x_pipeline_id = '{PIPELINE}'"
    n = rt.warehouse.query(count)[0]["n"]
    assert n == sum(len(vendors.charges(v, d)) for v in vendors.VENDORS for d in vendors.days(FIRST, LAST))
    assert succeeded(run_window(api))
    assert rt.warehouse.query(count)[0]["n"] == n
    assert focus_totals(rt) == expected_totals()


def test_the_vendors_names_are_the_files_own(rt, api, tmp_path):
    vendors.write_all(FIRST, LAST, tmp_path / "exports")
    add(rt, {"source": (tmp_path / "exports").as_uri()})
    assert succeeded(run_window(api))
    rows = rt.warehouse.query(
        f"""SELECT DISTINCT ProviderName, ServiceProviderName, HostProviderName, PublisherName, InvoiceIssuerName,
                            ServiceName FROM {FOCUS} WHERE x_pipeline_id = @p""", {"p": PIPELINE})
    by_service = {r["ServiceName"]: r for r in rows}
    northwind = by_service["Warehouse Compute"]
    assert (northwind["ProviderName"], northwind["ServiceProviderName"], northwind["HostProviderName"],
            northwind["InvoiceIssuerName"]) == ("Northwind Data Cloud",) * 3 + ("Northwind Data Cloud, Inc.",)
    # a partner sold through the vendor's marketplace is the publisher and the service provider
    partner = by_service["Kafka Connector"]
    assert (partner["ProviderName"], partner["PublisherName"], partner["ServiceProviderName"]) == (
        "Northwind Data Cloud", "Tailspin Streams", "Tailspin Streams")
    # a reseller invoices Contoso's costs
    assert by_service["Log Management"]["InvoiceIssuerName"] == "Litware Reseller GmbH"
    # FOCUS 1.3: no ProviderName in the file, so the service provider names it; hosted on another cloud
    fab = by_service["Inference API"]
    assert (fab["ProviderName"], fab["ServiceProviderName"], fab["HostProviderName"]) == (
        "Fabrikam AI", "Fabrikam AI", "Microsoft")


def test_a_file_that_is_not_focus_fails_the_run_naming_it_and_keeps_the_data(rt, api, tmp_path):
    folder = tmp_path / "exports"
    vendors.write("northwind", FIRST, LAST, folder)
    add(rt, {"source": folder.as_uri()})
    assert succeeded(run_window(api))
    before = focus_totals(rt)
    (folder / "invoice-summary.csv").write_text("Date,Amount\n2026-09-29,12.5\n")
    for failed in run_window(api):
        assert failed["status"] == "failed" and "invoice-summary.csv" in failed["error"]
        assert "not a FOCUS export" in failed["error"]
    assert focus_totals(rt) == before


def test_a_bucket_of_focus_files_is_read_with_the_credentials_keys(rt, api, tmp_path):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from stubs.moto_loopback import KEYS, moto_endpoint

    files = vendors.write_all(FIRST, LAST, tmp_path / "exports")
    with moto_endpoint() as endpoint:
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, **KEYS)
        s3.create_bucket(Bucket="vendor-focus")
        for f in files:
            s3.upload_file(str(f), "vendor-focus", f"exports/{f.name}")
        s3.put_object(Bucket="vendor-focus", Key="elsewhere/other.csv", Body=b"not,read\n")
        add(rt, {"source": "s3://vendor-focus/exports", "endpoint_url": endpoint, "region": "us-east-1", **KEYS})
        done = run_window(api)
    assert succeeded(done), done
    assert focus_totals(rt) == expected_totals()


@pytest.mark.parametrize("doc", [{"source": "https://vendor.example/focus/"}, {"source": "gs://bucket/focus"},
                                 {"region": "us-east-1"}])
def test_a_credential_without_a_folder_or_bucket_is_refused_by_name(rt, acme, doc):
    with pytest.raises(CredentialInvalid, match="source"):
        add(rt, doc)
