"""cloud/gcp/cost/billing: billing export extractor (Parquet folder and BigQuery via a recording fake client) and
sp_cloud_1_convert_to_focus (20_gcp.sql) on DuckDB."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.contract.slices import bound
import sqlglot

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import gcp
from shared import focus, procedures, service_map
from stubs import gcp_billing_data as gen
from tests import cloud_kit as kit
from tests.cloud_kit import dsum

PIPELINE = "cloud/gcp/cost/billing"
CRED = "cred_gcp"
UTC = dt.UTC
# Jan 30 .. Feb 2: crosses an invoice month (the early-UTC windows of Feb 1 are January in US/Pacific)
START, END = dt.date(2025, 1, 30), dt.date(2025, 2, 2)


def in_range(rows, start, end):
    return [r for r in rows if start <= r["usage_start_time"].date() <= end]


def run_extract(credential, start=START, end=END):
    ctx = ExtractContext("acme", PIPELINE, CRED, "run_a", start, end, credential)
    return (*kit.extracted(ctx, "gcp_billing_raw"), ctx)


@pytest.fixture()
def export_dir(tmp_path):
    """The export table as Parquet: a wider window than the runs use, so the range filter matters."""
    folder = tmp_path / "export"
    gen.write_parquet(gen.generate(START - dt.timedelta(days=2), END + dt.timedelta(days=2)), folder)
    return folder


# --------------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------------
def test_extract_flattens_and_totals_match_the_source(export_dir):
    rows = in_range(gen.generate(START - dt.timedelta(days=2), END + dt.timedelta(days=2)), START, END)
    raw, totals, _ = run_extract({"source": export_dir.as_uri()})
    assert raw.num_rows == len(rows) == 134
    assert set(raw.column("usage_date").to_pylist()) == {START + dt.timedelta(days=i) for i in range(4)}
    expected = gen.net_by_invoice_month(rows)
    got: dict = {}
    for t in totals.to_pylist():
        got[t["billing_period"]] = got.get(t["billing_period"], Decimal(0)) + t["source_cost"]
    assert got == expected  # exact, not only to the cent
    assert sum(totals.column("source_rows").to_pylist()) == raw.num_rows
    assert dsum(raw, "credits_total") == sum(gen.credits_by_type(rows).values())
    assert dsum(raw, "credits_promotion") == gen.credits_by_type(rows)["PROMOTION"]
    r = next(x for x in raw.to_pylist() if x["credits_promotion"] is not None)
    credits = json.loads(r["credits"])
    assert [c["type"] for c in credits] == ["FREE_TIER", "PROMOTION"]
    assert Decimal(str(credits[0]["amount"])) + Decimal(str(credits[1]["amount"])) == r["credits_total"]
    web = next(x for x in raw.to_pylist() if x["resource_name"] == "web-1")
    # project labels < resource labels, keys lower-cased
    assert json.loads(web["labels"]) == {"app": "web", "costcenter": "cc-100", "env": "production"}
    assert json.loads(web["system_labels"]) == {"compute.googleapis.com/machine_spec": "n2-standard-8"}
    assert (web["project_id"], web["service_description"], web["location_zone"]) == \
        ("acme-prod", "Compute Engine", "us-central1-a")
    assert web["export_time"] == web["usage_end_time"] + dt.timedelta(hours=4)
    assert set(raw.column("cost_type").to_pylist()) == {"regular", "tax", "adjustment", "rounding_error"}


def test_schema_drift_names_the_missing_columns(tmp_path):
    table = gen.to_table(gen.generate(START, START)).drop_columns(["cost", "currency"])
    tmp_path.joinpath("e").mkdir()
    pq.write_table(table, tmp_path / "e" / "export.parquet")
    with pytest.raises(ExtractError) as e:
        run_extract({"source": (tmp_path / "e").as_uri()})
    assert "export.parquet" in str(e.value) and "cost, currency" in str(e.value)


def test_optional_columns_may_be_missing(tmp_path):
    """The standard export has no resource/price/subscription; those stay NULL."""
    table = gen.to_table(gen.generate(START, START)).drop_columns(
        ["resource", "price", "subscription", "tags", "system_labels", "adjustment_info", "cost_at_list"])
    tmp_path.joinpath("e").mkdir()
    pq.write_table(table, tmp_path / "e" / "standard.parquet")
    raw, _, _ = run_extract({"source": (tmp_path / "e").as_uri()}, START, START)
    assert raw.num_rows == table.num_rows
    assert raw.column("resource_name").null_count == raw.num_rows
    assert raw.column("price_list_price").null_count == raw.num_rows


def test_bad_credentials_and_corrupt_files(tmp_path):
    with pytest.raises(CredentialError):
        run_extract({"project": "p"})
    with pytest.raises(ExtractError, match="does not exist"):
        run_extract({"source": (tmp_path / "nope").as_uri()})
    tmp_path.joinpath("bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ExtractError, match="x.parquet"):
        run_extract({"source": (tmp_path / "bad").as_uri()})


# --------------------------------------------------------------------------------------------------
# BigQuery read path, against a recording fake client
# --------------------------------------------------------------------------------------------------
class FakeField:
    def __init__(self, name):
        self.name = name


class FakeTable:
    def __init__(self, names, partitioning="ingestion", table_type="TABLE"):
        from google.cloud import bigquery

        self.schema = [FakeField(n) for n in names]
        self.table_type = table_type
        self.time_partitioning = None
        if partitioning == "ingestion":
            self.time_partitioning = bigquery.TimePartitioning(type_="DAY")
        elif partitioning:
            self.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=partitioning)


class FakeClient:
    """Records get_table/query calls; serves `table` (Arrow, the export) filtered by the query's date params."""

    def __init__(self, table: pa.Table, **table_kw):
        self.table, self.table_kw, self.calls = table, table_kw, []

    def get_table(self, ref):
        self.calls.append(("get_table", ref))
        return FakeTable(self.table.column_names, **self.table_kw)

    def query(self, sql, job_config=None):
        params = {p.name: p.value for p in job_config.query_parameters}
        self.calls.append(("query", sql, params, job_config.maximum_bytes_billed))
        days = pa.compute.cast(self.table.column("usage_start_time"), pa.date32()).to_pylist()
        keep = [params["start_date"] <= d <= params["end_date"] for d in days]
        data = self.table.filter(pa.array(keep))
        return _FakeJob(data)


class _FakeJob:
    def __init__(self, data):
        self.data = data

    def result(self, page_size=None):
        return self

    def to_arrow_iterable(self):
        yield from self.data.to_batches(max_chunksize=20)


def test_bigquery_path_queries_with_partition_filter(monkeypatch):
    rows = gen.generate(START, END)
    fake = FakeClient(gen.to_table(rows))
    seen = []
    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: seen.append(cred) or fake)
    cred = {"project": "cust-billing", "dataset": "billing_export",
            "table": "gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9", "maximum_bytes_billed": 10**11}
    raw, totals, _ = run_extract(cred, dt.date(2025, 2, 1), dt.date(2025, 2, 1))
    assert raw.num_rows == len(in_range(rows, dt.date(2025, 2, 1), dt.date(2025, 2, 1)))
    assert fake.calls[0] == ("get_table", "cust-billing.billing_export.gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9")
    _, sql, params, max_bytes = fake.calls[1]
    assert params == {"start_date": dt.date(2025, 2, 1), "end_date": dt.date(2025, 2, 1)}
    assert max_bytes == 10**11
    assert "DATE(usage_start_time) BETWEEN @start_date AND @end_date" in sql
    assert "_PARTITIONTIME >= TIMESTAMP_SUB(TIMESTAMP(@start_date), INTERVAL 3 DAY)" in sql
    assert "_PARTITIONTIME IS NULL" in sql
    assert "`credits`" in sql and "`cost_at_list`" in sql
    sqlglot.parse_one(sql, read="bigquery")  # valid BigQuery
    assert set(raw.column("source").to_pylist()) == {fake.calls[0][1]}
    assert sum(totals.column("source_cost").to_pylist()) == sum(
        gen.net_cost(r) for r in in_range(rows, dt.date(2025, 2, 1), dt.date(2025, 2, 1)))


def test_bigquery_path_view_column_partition_and_drift(monkeypatch):
    table = gen.to_table(gen.generate(START, START))
    for kw, expect in (({"table_type": "VIEW", "partitioning": None}, None),
                       ({"partitioning": "usage_start_time"}, "usage_start_time >= TIMESTAMP_SUB"),
                       ({"partitioning": "some_other_col"}, None)):
        fake = FakeClient(table, **kw)
        monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org, fake=fake: fake)
        raw, _, _ = run_extract({"project": "p", "dataset": "d", "table": "t"}, START, START)
        sql = fake.calls[1][1]
        assert raw.num_rows == table.num_rows
        assert "_PARTITIONTIME" not in sql
        if expect:
            assert expect in sql
        else:
            assert sql.endswith("BETWEEN @start_date AND @end_date")
    fake = FakeClient(table.drop_columns(["cost_type"]))
    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: fake)
    with pytest.raises(ExtractError, match="p.d.t: required billing export columns missing: cost_type"):
        run_extract({"project": "p", "dataset": "d", "table": "t"}, START, START)
    assert [c[0] for c in fake.calls] == ["get_table"]  # no query was run


@pytest.mark.parametrize("refusal, message, error, match", [
    ("Forbidden", "Access Denied: Table p:d.t", CredentialError, "roles/bigquery.dataViewer"),
    ("NotFound", "Not found: Table p:d.t", ExtractError, "not found"),
])
def test_bigquery_errors_are_readable(monkeypatch, refusal, message, error, match):
    from google.api_core import exceptions

    class Refusing:
        def get_table(self, ref):
            raise getattr(exceptions, refusal)(message)

    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: Refusing())
    with pytest.raises(error, match=match):
        run_extract({"project": "p", "dataset": "d", "table": "t"}, START, START)


# --------------------------------------------------------------------------------------------------
# Procedure
# --------------------------------------------------------------------------------------------------
land_and_convert, focus_by_period, source_by_period = bound(PIPELINE, CRED)


def focus_rows(wh):
    return wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})


def test_export_to_focus_reconciles_per_invoice_month(rt, acme, export_dir):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = in_range(gen.generate(START - dt.timedelta(days=2), END + dt.timedelta(days=2)), START, END)
    n_credits = sum(len(r["credits"]) for r in rows)
    counts = land_and_convert(wh, {"source": export_dir.as_uri()}, START, END)
    assert counts["gcp_billing_raw"] == len(rows)
    expected = gen.net_by_invoice_month(rows)
    per, src = focus_by_period(wh), source_by_period(wh)
    assert set(per) == set(expected) == {dt.date(2025, 1, 1), dt.date(2025, 2, 1)}
    for month, total in expected.items():
        _, billed, effective = per[month]
        assert billed == effective == total == src[month][1]  # exact, so also to the cent
    assert sum(n for n, _, _ in per.values()) == len(rows) + n_credits

    out = focus_rows(wh)
    cats: dict = {}
    for r in out:
        cats[r["ChargeCategory"]] = cats.get(r["ChargeCategory"], 0) + 1
    n_tax = sum(r["cost_type"] == "tax" for r in rows)
    n_fee = sum(r["sku"]["description"].startswith("Commitment") for r in rows)
    n_goodwill = sum(r["cost_type"] == "adjustment" for r in rows)
    assert cats["Tax"] == n_tax and "Purchase" not in cats
    # commitment fees are the commitment's hourly applied cost: Usage rows marked Used, never Purchases
    fees = [r for r in out if r["ChargeCategory"] == "Usage" and r["CommitmentDiscountId"] is not None]
    assert len(fees) == n_fee and {r["CommitmentDiscountStatus"] for r in fees} == {"Used"}
    assert all(r["ChargeFrequency"] == "Recurring" and r["EffectiveCost"] == r["BilledCost"] for r in fees)
    assert cats["Credit"] == n_credits + n_goodwill
    assert cats["Adjustment"] == sum(r["cost_type"] == "rounding_error" for r in rows)
    credits = [r for r in out if r["ChargeCategory"] == "Credit" and r["ChargeDescription"] != "Service credit for incident 42"]
    by_type = gen.credits_by_type(rows)
    assert sum(r["BilledCost"] for r in credits) == sum(by_type.values())
    promo = [r for r in credits if r["ChargeDescription"] == "Free trial credit: $300"]
    assert sum(r["BilledCost"] for r in promo) == by_type["PROMOTION"]
    assert all(r["BilledCost"] < 0 and r["EffectiveCost"] == r["BilledCost"] == r["ContractedCost"] == r["ListCost"]
               and r["PricingQuantity"] is None for r in credits)
    cud = [r for r in credits if r["CommitmentDiscountId"]]
    assert cud and {r["CommitmentDiscountId"] for r in cud} == {gen.COMMITMENT}
    assert {r["CommitmentDiscountCategory"] for r in cud} == {"Usage"}
    # usage rows keep the gross cost (credits are never folded in)
    usage = [r for r in out if r["ChargeCategory"] == "Usage"]
    assert sum(r["BilledCost"] for r in usage) == sum(
        Decimal(str(r["cost"])) for r in rows if r["cost_type"] == "regular")
    web = next(r for r in usage if r["ResourceName"] == "web-1")
    assert (web["PricingUnit"], web["ConsumedUnit"], web["PricingCategory"]) == ("Hours", "Seconds", "Standard")
    assert web["ListUnitPrice"] == Decimal("0.031611") and web["ListUnitPrice"] * web["PricingQuantity"] == web["ListCost"]
    assert json.loads(web["Tags"]) == {"app": "web", "costcenter": "cc-100", "env": "production"}
    assert (web["SubAccountId"], web["SubAccountName"], web["SubAccountType"]) == ("acme-prod", "Acme Production", "Project")
    assert (web["RegionId"], web["AvailabilityZone"]) == ("us-central1", "us-central1-a")
    assert web["x_cost_source"] == "cloud"
    units = {r["ServiceName"]: r["PricingUnit"] for r in usage}
    assert units == {"Compute Engine": "Hours", "Cloud Storage": "GiB-Months", "BigQuery": "TiB",
                     "Vertex AI": "1000 Counts", "Gemini API": "1000000 Tokens", "Observa APM (Marketplace)": "Hours"}
    storage = next(r for r in usage if r["ServiceName"] == "Cloud Storage")
    assert storage["ListUnitPrice"] is None  # tiered: list price x quantity != cost_at_list
    assert storage["ConsumedUnit"] == "B-Seconds"
    bq = next(r for r in usage if r["ServiceName"] == "BigQuery")
    assert bq["ContractedUnitPrice"] == Decimal("5.625") and bq["ListUnitPrice"] == Decimal("6.25")
    assert {r["PricingCategory"] for r in usage if r["SubAccountId"] == "acme-data" and r["ServiceName"] == "Compute Engine"} == {"Committed"}
    assert {r["PricingCategory"] for r in usage if "Spot" in r["ChargeDescription"]} == {"Dynamic"}
    svc = {r["ServiceName"]: (r["ServiceCategory"], r["ServiceSubcategory"]) for r in out}
    assert svc["Compute Engine"] == ("Compute", "Virtual Machines")
    assert svc["Cloud Storage"] == ("Storage", "Object Storage")
    assert svc["BigQuery"] == ("Databases", "Data Warehouses")
    assert svc["Gemini API"] == ("AI and Machine Learning", "Generative AI")
    assert svc["Vertex AI"] == ("AI and Machine Learning", "AI Platforms")
    mkt = next(r for r in usage if r["ServiceName"] == "Observa APM (Marketplace)")
    assert (mkt["ServiceProviderName"], mkt["PublisherName"], mkt["HostProviderName"], mkt["InvoiceIssuerName"]) == \
        ("Observa Inc.", "Observa Inc.", "Google Cloud", "Google Cloud")
    fee = next(r for r in out if r["ChargeCategory"] == "Usage" and r["CommitmentDiscountStatus"] == "Used")
    assert (fee["CommitmentDiscountId"], fee["ChargeFrequency"], fee["CommitmentDiscountQuantity"]) == \
        (gen.COMMITMENT, "Recurring", Decimal(480))
    tax = next(r for r in out if r["ChargeCategory"] == "Tax")
    assert (tax["SkuId"], tax["PricingQuantity"], tax["PricingUnit"]) == (None, None, None)
    assert all(r["ProviderName"] == "Google Cloud" for r in out)


    kit.assert_gate_passes_and_rerun_changes_nothing(
        wh, PIPELINE, lambda: land_and_convert(wh, {"source": export_dir.as_uri()}, START, END, run_id="run_b"))


def test_restated_day_replaces_never_duplicates(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    folder = tmp_path / "export"
    first = gen.generate(START, END)
    gen.write_parquet(first, folder, "batch-1.parquet")
    land_and_convert(wh, {"source": folder.as_uri()}, START, END)
    before = focus_by_period(wh)
    assert {m: b for m, (_, b, _) in before.items()} == gen.net_by_invoice_month(first)

    # a later export batch restates Jan 31 (negation + corrected rows + late usage), appended as Google does
    day = dt.date(2025, 1, 31)
    later = gen.restatement(day, dt.datetime(2025, 2, 3, 9, tzinfo=UTC))
    gen.write_parquet(later, folder, "batch-2.parquet")
    land_and_convert(wh, {"source": folder.as_uri()}, day, day, run_id="run_b")
    after = focus_by_period(wh)
    expected = gen.net_by_invoice_month(first + later)
    assert {m: b for m, (_, b, _) in after.items()} == expected
    assert expected[dt.date(2025, 1, 1)] != gen.net_by_invoice_month(first)[dt.date(2025, 1, 1)]
    n_rows = sum(1 + len(r["credits"]) for r in first + later)
    assert sum(n for n, _, _ in after.values()) == n_rows
    exports = wh.query("SELECT usage_date, MAX(export_time) AS t, COUNT(*) AS n FROM `acme_prod.gcp_billing_raw` "
                       "GROUP BY 1 ORDER BY 1")
    assert {r["usage_date"]: r["t"].astimezone(UTC) for r in exports}[day] == dt.datetime(2025, 2, 3, 9, tzinfo=UTC)
    assert sum(r["n"] for r in exports) == len(first) + len(later)
    # the restated day, converted again, is not duplicated
    land_and_convert(wh, {"source": folder.as_uri()}, day, day, run_id="run_c")
    assert focus_by_period(wh) == after
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()


def test_correction_of_an_invoiced_month_is_a_correction(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    folder = tmp_path / "export"
    day = dt.date(2025, 1, 20)
    later = gen.restatement(day, dt.datetime(2025, 2, 10, tzinfo=UTC))
    for r in later:
        r["invoice"] = {**r["invoice"], "month": "202502"}  # landed on the next invoice
    gen.write_parquet(gen.generate(day, day) + later, folder)
    land_and_convert(wh, {"source": folder.as_uri()}, day, day)
    classes = wh.query("SELECT ChargeClass AS c, DATE(BillingPeriodStart) AS p, COUNT(*) AS n "
                       "FROM `acme_prod.cost_data_standard_1_3` GROUP BY 1, 2 ORDER BY 1, 2")
    corrections = [r for r in classes if r["c"] == "Correction"]
    n_corr = sum(1 + len(r["credits"]) for r in later if r["adjustment_info"])
    assert corrections == [{"c": "Correction", "p": dt.date(2025, 2, 1), "n": n_corr}]
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()


def test_procedure_unnests_with_json_query_array():
    assert "JSON_QUERY_ARRAY" in procedures.get("sp_cloud_1_convert_to_focus").bigquery_ddl("proj", "acme_prod")


def test_gcp_service_map_is_focus_1_3():
    rows = [r for r in service_map.load() if r["provider"] == "gcp"]
    assert len(rows) >= 150
    keys = {r["service_key"] for r in rows}
    assert {"compute engine", "cloud storage", "bigquery", "vertex ai", "gemini api"} <= keys


def test_generator_is_deterministic():
    a, b = gen.generate(START, END), gen.generate(START, END)
    assert a == b
    assert gen.generate(END, END) == in_range(a, END, END)  # a day's rows do not depend on the window
    assert Path(gen.__file__).name == "gcp_billing_data.py"
