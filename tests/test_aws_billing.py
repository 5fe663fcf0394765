"""cloud/aws/cost/billing: CUR extractor (file:// and S3 via moto) and sp_cloud_1_convert_to_focus on DuckDB."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from tests.contract.slices import bound

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import aws
from shared import focus, procedures, service_map
from tests import cloud_kit as kit
from tests.cloud_kit import dsum

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "samples" / "aws"
SAMPLE = FIXTURES / "sample-anonymous-aws-export-dataset.csv"
PIPELINE = "cloud/aws/cost/billing"
CRED = "cred_aws"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
SAMPLE_TOTAL = Decimal("1.6823086974")  # sum of lineItem/UnblendedCost in the sample (1,269 Usage + 12 Tax)


def ctx_for(credential, start=NOV[0], end=NOV[1]):
    return ExtractContext("acme", PIPELINE, CRED, "run_a", start, end, credential)


def run_extract(credential, start=NOV[0], end=NOV[1]):
    ctx = ctx_for(credential, start, end)
    return (*kit.extracted(ctx, "aws_billing_raw"), ctx)


# CUR 2.0 style rows (snake_case) with commitments, credits, tax and a marketplace seller.
CUR2_HEADER = [
    "identity_line_item_id", "bill_billing_entity", "bill_payer_account_id", "bill_billing_period_start_date",
    "bill_billing_period_end_date", "line_item_usage_account_id", "line_item_line_item_type",
    "line_item_usage_start_date", "line_item_usage_end_date", "line_item_product_code", "line_item_usage_type",
    "line_item_operation", "line_item_usage_amount", "line_item_currency_code", "line_item_unblended_rate",
    "line_item_unblended_cost", "line_item_line_item_description", "line_item_legal_entity", "pricing_unit",
    "pricing_public_on_demand_rate", "pricing_public_on_demand_cost", "pricing_term", "product_sku",
    "savings_plan_savings_plan_a_r_n", "savings_plan_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date", "savings_plan_used_commitment", "reservation_reservation_a_r_n",
    "reservation_effective_cost", "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee", "resource_tags", "some_unknown_column",
]
SP = "arn:aws:savingsplans::111122223333:savingsplan/sp-1"
RI = "arn:aws:ec2:us-east-1:111122223333:reserved-instances/ri-1"


def cur2_rows():
    base = dict.fromkeys(CUR2_HEADER, "")
    base.update({"bill_billing_entity": "AWS", "bill_payer_account_id": "000011112222",
                 "bill_billing_period_start_date": "2024-03-01T00:00:00Z",
                 "bill_billing_period_end_date": "2024-04-01T00:00:00Z",
                 "line_item_usage_account_id": "000033334444", "line_item_currency_code": "USD"})

    def row(i, kind, day, code, amount, rate, cost, **kw):
        r = dict(base, identity_line_item_id=f"li{i}", line_item_line_item_type=kind,
                 line_item_usage_start_date=f"2024-03-{day:02d}T00:00:00Z",
                 line_item_usage_end_date=f"2024-03-{day + 1:02d}T00:00:00Z", line_item_product_code=code,
                 line_item_usage_amount=amount, line_item_unblended_rate=rate, line_item_unblended_cost=cost,
                 line_item_line_item_description=f"{kind} {code}")
        r.update(kw)
        return r

    return [
        row(1, "Usage", 1, "AmazonEC2", "10", "0.1", "1.0", pricing_unit="Hrs", pricing_public_on_demand_rate="0.1",
            pricing_public_on_demand_cost="1.0", pricing_term="OnDemand", product_sku="SKU1",
            line_item_usage_type="BoxUsage:m5.large", resource_tags='{"user_team": "Core", "aws_createdBy": "x"}'),
        row(2, "SavingsPlanCoveredUsage", 1, "AmazonEC2", "24", "0.1", "2.4", pricing_unit="Hrs",
            pricing_public_on_demand_rate="0.1", pricing_public_on_demand_cost="2.4", product_sku="SKU1",
            savings_plan_savings_plan_a_r_n=SP, savings_plan_savings_plan_effective_cost="1.5"),
        row(3, "SavingsPlanNegation", 1, "AmazonEC2", "24", "-0.1", "-2.4", pricing_unit="Hrs",
            savings_plan_savings_plan_a_r_n=SP),
        row(4, "SavingsPlanRecurringFee", 1, "ComputeSavingsPlans", "1", "1.8", "1.8", pricing_unit="Hrs",
            savings_plan_savings_plan_a_r_n=SP, savings_plan_total_commitment_to_date="1.8",
            savings_plan_used_commitment="1.5"),
        row(5, "DiscountedUsage", 2, "AmazonRDS", "24", "0", "0", pricing_unit="Hrs",
            pricing_public_on_demand_rate="0.2", pricing_public_on_demand_cost="4.8",
            reservation_reservation_a_r_n=RI, reservation_effective_cost="3.0"),
        row(6, "RIFee", 2, "AmazonRDS", "24", "0.1", "2.4", pricing_unit="Hrs", reservation_reservation_a_r_n=RI,
            reservation_unused_amortized_upfront_fee_for_billing_period="0.2",
            reservation_unused_recurring_fee="0.3"),
        row(7, "Credit", 2, "AmazonEC2", "", "", "-0.75"),
        row(8, "Tax", 3, "AmazonEC2", "", "", "0.33", line_item_legal_entity="Amazon Web Services, Inc."),
        row(9, "Usage", 3, "SomeNewService", "1E+2", "0.00000012", "0.000012", pricing_unit="Requests",
            bill_billing_entity="AWS Marketplace", line_item_legal_entity="Acme Seller LLC"),
        row(10, "Usage", 20, "AmazonS3", "5", "0.023", "0.115", pricing_unit="GB-Mo"),  # outside a Mar 1-3 run
    ]


CUR2_TOTAL_MAR_1_3 = Decimal("1.0") + Decimal("2.4") - Decimal("2.4") + Decimal("1.8") + Decimal("2.4") - \
    Decimal("0.75") + Decimal("0.33") + Decimal("0.000012")


def cur2_gzip_bytes(rows=None) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CUR2_HEADER, lineterminator="\n")
    w.writeheader()
    w.writerows(rows or cur2_rows())
    return gzip.compress(buf.getvalue().encode())


# --------------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------------
def test_extracts_legacy_cur_folder_with_exact_totals():
    raw, totals, _ = run_extract({"source": f"file://{FIXTURES}"})
    assert raw.num_rows == 1281
    assert dsum(raw, "unblended_cost") == Decimal("1.682308689")  # 9-dp NUMERIC, within a cent of the source
    assert abs(dsum(raw, "unblended_cost") - SAMPLE_TOTAL) < Decimal("0.000001")
    assert sum(totals.column("source_rows").to_pylist()) == 1281
    assert dsum(totals, "source_cost") == dsum(raw, "unblended_cost")
    assert set(totals.column("billing_period").to_pylist()) == {dt.date(2023, 11, 1)}
    assert set(raw.column("payer_account_id").to_pylist()) == {"123412340534"}  # leading digits kept as text
    types = raw.column("line_item_type").to_pylist()
    assert types.count("Usage") == 1269 and types.count("Tax") == 12


def test_filters_to_the_run_range():
    raw, totals, _ = run_extract({"source": f"file://{FIXTURES}"}, dt.date(2023, 11, 5), dt.date(2023, 11, 6))
    days = set(raw.column("usage_date").to_pylist())
    assert days and days <= {dt.date(2023, 11, 5), dt.date(2023, 11, 6)}
    assert sum(totals.column("source_rows").to_pylist()) == raw.num_rows


def test_missing_required_columns_are_named(tmp_path):
    kit.assert_missing_columns_named(run_extract, tmp_path / "cur.csv",
                                     "lineItem/UsageStartDate,lineItem/UnblendedCost\n2023-11-01T00:00:00Z,1\n",
                                     "line_item_line_item_type", "bill_payer_account_id")


def test_local_manifest_and_parquet(tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(io.BytesIO(gzip.decompress(cur2_gzip_bytes())), read_options=pacsv.ReadOptions(),
                           convert_options=pacsv.ConvertOptions(
                               column_types={c: pa.string() for c in CUR2_HEADER}))
    data = tmp_path / "exp" / "data" / "BILLING_PERIOD=2024-03"
    data.mkdir(parents=True)
    pq.write_table(table, data / "exp-00001.snappy.parquet")
    (data / "stale-00002.snappy.parquet").write_bytes(b"not listed in the manifest")
    meta = tmp_path / "exp" / "metadata" / "BILLING_PERIOD=2024-03"
    meta.mkdir(parents=True)
    (meta / "exp-Manifest.json").write_text(json.dumps({
        "executionId": "e1", "billingPeriod": {"start": "2024-03-01T00:00:00.000Z"},
        "dataFiles": ["s3://bucket/p/exp/data/BILLING_PERIOD=2024-03/exp-00001.snappy.parquet"]}))
    raw, _, _ = run_extract({"source": f"file://{tmp_path}"}, dt.date(2024, 3, 1), dt.date(2024, 3, 3))
    assert raw.num_rows == 9
    assert dsum(raw, "unblended_cost") == CUR2_TOTAL_MAR_1_3


@pytest.fixture()
def s3_server():
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from stubs.moto_loopback import KEYS, moto_endpoint

    with moto_endpoint() as endpoint:
        cred = {"bucket": "cur-bucket", "prefix": "cur", "region": "us-east-1", "endpoint_url": endpoint, **KEYS}
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, **KEYS)
        s3.create_bucket(Bucket="cur-bucket")
        yield s3, cred


def test_s3_legacy_manifest_gzip(s3_server):
    s3, cred = s3_server
    key = "cur/report/20231101-20231201/asm-1/report-00001.csv.gz"
    s3.put_object(Bucket="cur-bucket", Key=key, Body=gzip.compress(SAMPLE.read_bytes()))
    s3.put_object(Bucket="cur-bucket", Key="cur/report/20231101-20231201/asm-0/report-00001.csv.gz", Body=b"old")
    s3.put_object(Bucket="cur-bucket", Key="cur/report/20231101-20231201/report-Manifest.json", Body=json.dumps({
        "assemblyId": "asm-1", "reportKeys": [key], "billingPeriod": {"start": "20231101T000000.000Z",
                                                                      "end": "20231201T000000.000Z"},
        "compression": "GZIP", "contentType": "text/csv"}).encode())
    # a manifest of another period is skipped without reading its files
    s3.put_object(Bucket="cur-bucket", Key="cur/report/20231001-20231101/report-Manifest.json", Body=json.dumps({
        "reportKeys": ["cur/report/20231001-20231101/missing.csv.gz"],
        "billingPeriod": {"start": "20231001T000000.000Z"}}).encode())
    raw, totals, _ = run_extract(cred)
    assert raw.num_rows == 1281
    assert dsum(totals, "source_cost") == Decimal("1.682308689")
    assert set(raw.column("source_file").to_pylist()) == {f"s3://cur-bucket/{key}"}
    # the same read through an STS assume-role
    raw2, _, _ = run_extract({**cred, "role_arn": "arn:aws:iam::123456789012:role/cur-reader", "external_id": "ext-123"})
    assert raw2.num_rows == 1281


def test_s3_cur2_manifest_and_truncated_file(s3_server):
    s3, cred = s3_server
    key = "cur/exp/data/BILLING_PERIOD=2024-03/exp-00001.csv.gz"
    s3.put_object(Bucket="cur-bucket", Key=key, Body=cur2_gzip_bytes())
    s3.put_object(Bucket="cur-bucket", Key="cur/exp/metadata/BILLING_PERIOD=2024-03/exp-Manifest.json",
                  Body=json.dumps({"billingPeriod": {"start": "2024-03-01T00:00:00.000Z"},
                                   "dataFiles": [f"s3://cur-bucket/{key}"]}).encode())
    raw, totals, _ = run_extract(cred, dt.date(2024, 3, 1), dt.date(2024, 3, 3))
    assert raw.num_rows == 9 and dsum(totals, "source_cost") == CUR2_TOTAL_MAR_1_3
    tags = [json.loads(t) for t in raw.column("tags").to_pylist() if t]
    assert tags == [{"team": "Core", "aws_createdby": "x"}]
    data = cur2_gzip_bytes()
    s3.put_object(Bucket="cur-bucket", Key=key, Body=data[:-20])
    with pytest.raises(ExtractError) as e:
        run_extract(cred, dt.date(2024, 3, 1), dt.date(2024, 3, 3))
    assert f"s3://cur-bucket/{key}" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Procedure
# --------------------------------------------------------------------------------------------------
land_and_convert, focus_by_period, source_by_period = bound(PIPELINE, CRED)


def test_sample_to_focus_reconciles_and_passes_gate(rt, acme):
    wh = rt.warehouse
    assert service_map.sync(wh) > 200
    counts = land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *NOV)
    assert counts == {"aws_billing_raw": 1281, "cloud_focus_raw": 0, "cloud_source_totals": 14}
    per = focus_by_period(wh)
    src = source_by_period(wh)
    n, billed, _ = per[dt.date(2023, 11, 1)]
    assert n == 1281 and src[dt.date(2023, 11, 1)][0] == 1281
    assert round(billed, 2) == round(src[dt.date(2023, 11, 1)][1], 2) == round(SAMPLE_TOTAL, 2)
    assert billed == src[dt.date(2023, 11, 1)][1]
    cats = {r["ChargeCategory"]: r["n"] for r in wh.query(
        "SELECT ChargeCategory, COUNT(*) AS n FROM `acme_prod.cost_data_standard_1_3` GROUP BY 1")}
    assert cats == {"Usage": 1269, "Tax": 12}
    svc = {r["ServiceName"]: (r["ServiceCategory"], r["ServiceSubcategory"]) for r in wh.query(
        "SELECT DISTINCT ServiceName, ServiceCategory, ServiceSubcategory FROM `acme_prod.cost_data_standard_1_3`")}
    assert svc["Amazon Simple Storage Service"] == ("Storage", "Object Storage")
    assert svc["AWS CloudShell"] == ("Developer Tools", "Development Environments")
    kit.assert_gate_passes_and_rerun_changes_nothing(
        wh, PIPELINE, lambda: land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *NOV, run_id="run_b"))


def test_commitments_credits_tax_and_marketplace(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    (tmp_path / "exp-00001.csv.gz").write_bytes(cur2_gzip_bytes())
    start, end = dt.date(2024, 3, 1), dt.date(2024, 3, 3)
    land_and_convert(wh, {"source": f"file://{tmp_path}"}, start, end)
    rows = {r["ChargeDescription"]: r for r in wh.query(
        "SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})}
    assert len(rows) == 9
    billed = sum(r["BilledCost"] for r in rows.values())
    assert billed == CUR2_TOTAL_MAR_1_3
    # amortized: 1.0 usage + 1.5 SP covered + 0 negation + 0.3 unused SP + 3.0 RI usage + 0.5 unused RI
    #            - 0.75 credit + 0.33 tax + 0.000012 marketplace
    assert sum(r["EffectiveCost"] for r in rows.values()) == Decimal("5.880012")
    cov, neg = rows["SavingsPlanCoveredUsage AmazonEC2"], rows["SavingsPlanNegation AmazonEC2"]
    assert (cov["ChargeCategory"], cov["EffectiveCost"], cov["CommitmentDiscountStatus"]) == ("Usage", Decimal("1.5"), "Used")
    assert cov["CommitmentDiscountCategory"] == "Spend" and cov["PricingCategory"] == "Committed"
    assert neg["EffectiveCost"] == 0 and neg["BilledCost"] == Decimal("-2.4") and neg["ConsumedQuantity"] == 0  # consumes nothing: the covered row holds the usage
    fee = rows["SavingsPlanRecurringFee ComputeSavingsPlans"]
    assert (fee["ChargeCategory"], fee["ChargeFrequency"], fee["EffectiveCost"]) == ("Purchase", "Recurring", Decimal("0.3"))
    assert rows["RIFee AmazonRDS"]["EffectiveCost"] == Decimal("0.5")
    assert rows["DiscountedUsage AmazonRDS"]["CommitmentDiscountType"] == "Reservation"
    credit, tax = rows["Credit AmazonEC2"], rows["Tax AmazonEC2"]
    assert (credit["ChargeCategory"], credit["EffectiveCost"], credit["PricingQuantity"]) == ("Credit", Decimal("-0.75"), None)
    assert (tax["ChargeCategory"], tax["SkuId"], tax["PricingQuantity"]) == ("Tax", None, None)
    mkt = rows["Usage SomeNewService"]
    assert mkt["ServiceProviderName"] == "Acme Seller LLC" and mkt["HostProviderName"] == "Amazon Web Services"
    assert (mkt["ServiceCategory"], mkt["ServiceSubcategory"]) == ("Other", "Other (Other)")
    usage = rows["Usage AmazonEC2"]
    assert json.loads(usage["Tags"]) == {"team": "Core", "aws_createdby": "x"}
    assert usage["ListCost"] == Decimal("1.0") and usage["ListUnitPrice"] == Decimal("0.1")
    assert usage["x_cost_source"] == "cloud"
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()


def test_procedure_reads_the_service_map():
    ddl = procedures.get("sp_cloud_1_convert_to_focus").bigquery_ddl("proj", "acme_prod")
    assert "proj.organizations.service_category_map" in ddl.replace("`", "")


def test_service_map_is_focus_1_3():
    rows = service_map.load()
    assert len(rows) > 200
    assert all(r["service_key"] == r["service_key"].lower() for r in rows)


def test_corrupt_parquet_and_bad_values_are_named(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cur-00001.snappy.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    with pytest.raises(ExtractError) as e:
        run_extract({"source": f"file://{tmp_path / 'bad'}"})
    assert "cur-00001.snappy.parquet" in str(e.value) and "not parquet at all" not in str(e.value)

    with SAMPLE.open(newline="") as fh:
        header, first, second = list(itertools.islice(csv.reader(fh), 3))
    second[header.index("lineItem/UnblendedCost")] = "not-a-number"
    (tmp_path / "num").mkdir()
    with open(tmp_path / "num" / "cur.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, first, second])
    with pytest.raises(ExtractError) as e:
        run_extract({"source": f"file://{tmp_path / 'num'}"})
    assert str(e.value).endswith("cur.csv: column lineItem/UnblendedCost has a value that is not a number (row 2)")
