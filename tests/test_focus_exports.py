"""Native FOCUS exports as cloud billing input: AWS FOCUS_1_0_AWS / FOCUS_1_2_AWS (file:// and S3 via moto), Azure
FocusCost 1.0-preview / 1.0r2 / 1.2-preview (Azurite and file://) and the GCP FOCUS export (Parquet folder and
BigQuery via a fake client) -> cloud_focus_raw (jobs/cloud/focus_export.py) -> 50_focus_export.sql -> FOCUS 1.3.

The exports are generated here from one charge list per day (`day_charges`), written in each provider's shape
(columns, names, value spellings, file format). Every expected figure below is computed from those charges, never
read back from the output.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import focus_export, gcp
from shared import focus, procedures, schemas, service_map
from shared.convert import reconcile_cloud
from shared.warehouse.base import WarehouseError
from stubs.focus_vendor_data import FOCUS_10, FOCUS_12, day_periods, iso
from tests import cloud_kit as kit
from tests.azurite import azurite  # noqa: F401 - fixture
from tests.test_aws_billing import s3_server  # noqa: F401 - fixture

Q = Decimal("0.000000001")  # NUMERIC's 9 decimals
AWS, AZURE, GCP = "cloud/aws/cost/billing", "cloud/azure/cost/billing", "cloud/gcp/cost/billing"
RAW, TOTALS = "cloud_focus_raw", "cloud_source_totals"

NUMERIC = {c.name for c in focus.FOCUS_COLUMNS if c.type == "NUMERIC"}
TIMESTAMPS = {c.name for c in focus.FOCUS_COLUMNS if c.type == "TIMESTAMP"}
# The GCP FOCUS export (Preview): 37 FOCUS columns, no ServiceCategory, ChargeFrequency, CommitmentDiscount*,
# InvoiceIssuerName, ResourceType, Tags (x_Labels instead), ...
GCP_FOCUS = ["AvailabilityZone", "BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodStart",
             "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart",
             "ChargePeriodEnd", "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice",
             "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName",
             "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ServiceName", "SkuId",
             "SkuPriceId", "SubAccountId", "SubAccountName", "EffectiveCost", "PricingCurrency",
             "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice",
             "BillingAccountType"]


def q(value) -> Decimal:
    return Decimal(str(value)).quantize(Q, ROUND_HALF_EVEN)


# --------------------------------------------------------------------------------------------------
# One day's charges, in FOCUS 1.2 names (money as exact decimal text)
# --------------------------------------------------------------------------------------------------
# Each cloud's names (account, sub-account, region; the service, SKU meter and resource of its VM and storage lines,
# the service of a purchase, its commitments, a marketplace seller), as data in tests/fixtures.
CLOUDS = json.loads((Path(__file__).parent / "fixtures" / "focus_export_clouds.json").read_text())


def day_charges(provider: str, day: dt.date) -> list[dict]:
    """The charges of one usage day. ChargeDescription '<kind> <day>' names each one for the assertions."""
    c = CLOUDS[provider]
    base = {k: c[k] for k in ("ProviderName", "BillingAccountId", "BillingAccountName", "BillingAccountType",
                              "SubAccountId", "SubAccountName", "SubAccountType", "RegionId", "RegionName")}
    base.update(BillingCurrency="USD", PricingCurrency="USD", PublisherName=c["ProviderName"],
                InvoiceIssuerName=c["ProviderName"], InvoiceId=f"INV-{day:%Y%m}", ChargeClass=None, **day_periods(day))

    def charge(kind, service, category, billed, effective=None, quantity=None, unit=None, list_price=None,
               contracted_price=None, list_cost=None, contracted_cost=None, **kw):
        name, key, svc_cat, svc_sub = service[:4]
        row = dict(base, ChargeDescription=f"{kind} {day}", ChargeCategory=category, ServiceName=name,
                   _service_key=key, ServiceCategory=svc_cat, ServiceSubcategory=svc_sub,
                   BilledCost=billed, EffectiveCost=billed if effective is None else effective,
                   PricingQuantity=quantity, PricingUnit=unit, ListUnitPrice=list_price,
                   ContractedUnitPrice=contracted_price,
                   ListCost=list_cost if list_cost is not None else billed,
                   ContractedCost=contracted_cost if contracted_cost is not None else billed)
        row.update(kw)
        return row

    vm, storage = c["vm"], c["storage"]
    sku = {"SkuId": f"{provider}-sku-{vm[4]}", "SkuPriceId": f"{provider}-price-{vm[4]}", "SkuMeter": vm[4],
           "SkuPriceDetails": {"InstanceType": "m5.large", "OperatingSystem": "Linux"},
           "ResourceId": vm[5], "ResourceName": vm[5].rsplit("/", 1)[-1], "AvailabilityZone": f"{c['RegionId']}-a"}
    spend_id, spend_type = c["spend"]
    res_id, res_type = c["reservation"]
    gb = Decimal(100) + Decimal(day.day) / 1000  # storage grows a little each day
    rows = [
        charge("vm", vm, "Usage", "2.1888", quantity="24", unit="Hours", list_price="0.096", list_cost="2.304",
               contracted_price="0.0912", ConsumedQuantity="24", ConsumedUnit="Hours", ChargeFrequency="Usage-Based",
               PricingCategory="Standard", ResourceType="Instance", **sku),
        charge("storage", storage, "Usage", str(gb * Decimal("0.0207")), quantity=str(gb), unit="GB-Months",
               list_price="0.023", list_cost=str(gb * Decimal("0.023")), contracted_price="0.0207",
               ConsumedQuantity=str(gb), ConsumedUnit="GB-Months", ChargeFrequency="Usage-Based",
               PricingCategory="Standard", SkuId=f"{provider}-sku-storage", SkuPriceId=f"{provider}-price-storage",
               SkuMeter=storage[4], ResourceId=storage[5], ResourceName="logs"),
        # a spend commitment (savings plan): hourly fee billed, covered usage and the unused rest amortized
        charge("fee", vm, "Purchase", "1.8", effective="0", quantity="1", unit="Hours", list_price="1.8",
               contracted_price="1.8", ChargeFrequency="Recurring", PricingCategory="Committed",
               CommitmentDiscountId=spend_id, CommitmentDiscountName="sp-1", CommitmentDiscountType=spend_type,
               CommitmentDiscountCategory="Spend", CommitmentDiscountQuantity="1.8", CommitmentDiscountUnit="USD",
               SkuId=f"{provider}-sku-sp", SkuPriceId=f"{provider}-price-sp"),
        charge("covered", vm, "Usage", "0", effective="1.5", quantity="24", unit="Hours", list_price="0.1",
               list_cost="2.4", contracted_price="0.0625", contracted_cost="1.5", ConsumedQuantity="24",
               ConsumedUnit="Hours", ChargeFrequency="Usage-Based", PricingCategory="Committed",
               CommitmentDiscountId=spend_id, CommitmentDiscountName="sp-1", CommitmentDiscountType=spend_type,
               CommitmentDiscountCategory="Spend", CommitmentDiscountStatus="Used", CommitmentDiscountQuantity="1.5",
               CommitmentDiscountUnit="USD", **sku),
        charge("unused", vm, "Usage", "0", effective="0.3", list_cost="0", contracted_cost="0",
               ChargeFrequency="Usage-Based", CommitmentDiscountId=spend_id, CommitmentDiscountName="sp-1",
               CommitmentDiscountType=spend_type, CommitmentDiscountCategory="Spend",
               CommitmentDiscountStatus="Unused", CommitmentDiscountQuantity="0.3", CommitmentDiscountUnit="USD"),
        # the conformance gaps AWS documents: a tax row without PublisherName and InvoiceIssuerName
        charge("tax", vm, "Tax", "0.33", ChargeFrequency="Recurring", PublisherName=None, InvoiceIssuerName=None),
        charge("marketplace", (f"{c['seller']} Observability", f"prod-{provider}-obs", "Management and Governance",
                               "Observability"),
               "Usage", "0.000012", quantity="100", unit="Requests", list_price="0.00000012",
               contracted_price="0.00000012", ConsumedQuantity="100", ConsumedUnit="Requests",
               ChargeFrequency="Usage-Based", PricingCategory="Standard", PublisherName=c["seller"],
               SkuId=f"{provider}-sku-mkt", SkuPriceId=f"{provider}-price-mkt", SkuMeter="Requests"),
    ]
    if day.day == 1:  # a one-time reservation purchase, amortized elsewhere: EffectiveCost 0
        rows.append(charge("purchase", c["purchase"], "Purchase", "876", effective="0", quantity="1", unit="Units",
                           list_price="876", contracted_price="876", ChargeFrequency="One-Time",
                           PricingCategory="Standard", CommitmentDiscountId=res_id, CommitmentDiscountName="ri-1",
                           CommitmentDiscountType=res_type, CommitmentDiscountCategory="Usage",
                           CommitmentDiscountQuantity="8760", CommitmentDiscountUnit="Hours",
                           SkuId=f"{provider}-sku-ri", SkuPriceId=f"{provider}-price-ri"))
    if day.day % 2 == 0:  # a credit and a sub-nano rounding case every other day
        rows.append(charge("credit", vm, "Credit", "-0.75", ChargeFrequency="One-Time"))
        rows.append(charge("rounding", storage, "Adjustment", "0.0000000015", ChargeFrequency="One-Time"))
    return rows


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def charges(provider: str, first: dt.date, last: dt.date) -> list[dict]:
    return [r for d in days(first, last) for r in day_charges(provider, d)]


def in_range(rows: list[dict], start: dt.date, end: dt.date) -> list[dict]:
    return [r for r in rows if start <= dt.date.fromisoformat(r["ChargePeriodStart"][:10]) <= end]


def by_period(rows: list[dict], column: str = "BilledCost") -> dict[dt.date, Decimal]:
    """SUM(column) per billing period, each value first rounded to NUMERIC as the extractor does."""
    out: dict[dt.date, Decimal] = defaultdict(Decimal)
    for r in rows:
        out[dt.date.fromisoformat(r["BillingPeriodStart"][:10])] += q(r[column])
    return dict(out)


# --------------------------------------------------------------------------------------------------
# Provider shapes
# --------------------------------------------------------------------------------------------------
def aws_shape(rows: list[dict], version: str) -> tuple[list[str], list[dict]]:
    """FOCUS_1_0_AWS (43 FOCUS columns + x_CostCategories, x_Discounts, x_Operation, x_ServiceCode, x_UsageType)
    or FOCUS_1_2_AWS (57 + x_Discounts, x_Operation, x_ServiceCode)."""
    out = []
    for r in rows:
        r = dict(r, x_ServiceCode=r["_service_key"], x_Operation="RunInstances", x_Discounts=None,
                 Tags={"user:Team": "Core", "Env": "", "aws:createdBy": "ci"})
        if version == "1.0":
            r.update(x_UsageType=r.get("SkuMeter"), x_CostCategories={"Project": "apollo"})
        out.append(r)
    if version == "1.0":
        return FOCUS_10 + ["x_CostCategories", "x_Discounts", "x_Operation", "x_ServiceCode", "x_UsageType"], out
    return FOCUS_12 + ["x_Discounts", "x_Operation", "x_ServiceCode"], out


def azure_shape(rows: list[dict], version: str) -> tuple[list[str], list[dict]]:
    """FocusCost 1.0r2 (1.0 columns, BillingAccountType, x_ columns; dates with seconds), 1.2-preview, or
    1.0-preview(v1): UsageQuantity/UsageUnit, Region, ChargeSubcategory instead of ChargeClass and
    CommitmentDiscountStatus, 'On-Demand'/'Commitment-Based' pricing, Adjustment+Credit for credits, dates without
    seconds."""
    extra = ["x_SkuMeterCategory", "x_PublisherCategory", "x_ResourceGroupName", "x_BillingProfileId"]
    out = []
    for r in rows:
        r = dict(r, x_SkuMeterCategory=r["_service_key"], x_ResourceGroupName="rg1", x_BillingProfileId="bp-1",
                 x_PublisherCategory="Vendor" if r["PublisherName"] == CLOUDS["azure"]["seller"] else "Cloud Provider",
                 Tags={"Team": "Core", "Env": "", "CostCenter": "cc-100"})
        if version == "1.0-preview":
            status = r.get("CommitmentDiscountStatus")
            sub = {"Used": "Used Commitment", "Unused": "Unused Commitment"}.get(status, "On-Demand")
            if r["ChargeCategory"] == "Credit":
                r["ChargeCategory"], sub = "Adjustment", "Credit"
            elif r["ChargeCategory"] in ("Tax", "Purchase", "Adjustment"):
                sub = None
            r.update(ChargeSubcategory=sub, UsageQuantity=r.get("ConsumedQuantity"), UsageUnit=r.get("ConsumedUnit"),
                     Region=r["RegionId"],
                     PricingCategory={"Standard": "On-Demand", "Committed": "Commitment-Based"}.get(
                         r.get("PricingCategory"), r.get("PricingCategory")))
            for t in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"):
                r[t] = r[t][:16] + "Z"
        out.append(r)
    if version == "1.0-preview":
        renamed = {"ConsumedQuantity": "UsageQuantity", "ConsumedUnit": "UsageUnit", "RegionId": "Region"}
        dropped = {"ChargeClass", "CommitmentDiscountStatus", "ContractedCost", "ContractedUnitPrice", "RegionName"}
        header = [renamed.get(c, c) for c in FOCUS_10 if c not in dropped] + ["ChargeSubcategory"]
        return header + extra, out
    if version == "1.0r2":
        return FOCUS_10 + ["BillingAccountType"] + extra, out
    return FOCUS_12 + extra, out


def gcp_shape(rows: list[dict]) -> list[dict]:
    """The BigQuery FOCUS export: GCP_FOCUS columns + x_ ones; labels as REPEATED STRUCT<key, value>."""
    out = []
    for r in rows:
        row = {k: r.get(k) for k in GCP_FOCUS}
        row.update(x_ServiceId="6F81-5844-456A", x_CostType="regular",
                   x_ExportTime=iso(dt.datetime.fromisoformat(r["ChargePeriodEnd"]) + dt.timedelta(hours=4)),
                   x_ProjectLabels=[{"key": "team", "value": "platform"}, {"key": "Env", "value": "dev"}],
                   x_Tags=[{"key": "org/CostCenter", "value": "cc-100", "inherited": True, "namespace": "123"}],
                   x_Labels=[{"key": "Env", "value": "prod"}, {"key": "app", "value": r["ServiceName"]}])
        out.append(row)
    return out


def _csv_value(v):
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def csv_bytes(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in header])
    return buf.getvalue().encode()


def _arrow_type(column: str, money_type: pa.DataType) -> pa.DataType:
    if column in NUMERIC:
        return money_type
    if column in TIMESTAMPS or column == "x_ExportTime":
        return pa.timestamp("ms")  # AWS: timestamp_milliseconds, no zone (UTC)
    if column in ("Tags", "SkuPriceDetails", "x_CostCategories"):
        return pa.map_(pa.string(), pa.string())
    if column == "x_Discounts":
        return pa.map_(pa.string(), pa.float64())
    if column.startswith("x_") and column.endswith(("Labels", "Tags")):
        return pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
    return pa.string()


def parquet_bytes(header: list[str], rows: list[dict], money_type: pa.DataType | None = None) -> bytes:
    """Money as `money_type` (default float64: AWS 'double'; decimal128(38, 9): BigQuery NUMERIC)."""
    money_type = money_type or pa.float64()
    def value(col, v):
        if v is None:
            return None
        if col in NUMERIC:
            return float(v) if money_type == pa.float64() else q(v)
        if col in TIMESTAMPS or col == "x_ExportTime":
            return dt.datetime.fromisoformat(v).replace(tzinfo=None)
        if isinstance(v, dict) and _arrow_type(col, money_type) != pa.string():
            return [(k, str(x)) for k, x in v.items()]
        if isinstance(v, list) and pa.types.is_list(_arrow_type(col, money_type)):
            return [{"key": x["key"], "value": x["value"]} for x in v]
        return _csv_value(v) if isinstance(v, (dict, list)) else str(v)

    schema = pa.schema([(c, _arrow_type(c, money_type)) for c in header])
    table = pa.Table.from_pylist([{c: value(c, r.get(c)) for c in header} for r in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Running and reading back
# --------------------------------------------------------------------------------------------------
def out_schema(table):
    return schemas.get(table).arrow_schema(include_lineage=False)


def extract(module, pipeline: str, credential: dict, start, end):
    ctx = ExtractContext("acme", pipeline, "cred_focus", "run_a", start, end, credential)
    assert module.__name__ == f"jobs.{kit.registry.get(pipeline).job}"
    raw, totals = kit.extracted(ctx, RAW)
    return raw, totals, ctx


def land(wh, pipeline, credential, start, end, run_id="run_a"):
    return kit.land_and_convert(wh, pipeline, "cred_focus", credential, start, end, run_id)


def focus_rows(wh, pipeline) -> dict[str, dict]:
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": pipeline})
    out = {r["ChargeDescription"]: r for r in rows}
    assert len(out) == len(rows)  # descriptions are unique per charge
    return out


def assert_converted(wh, pipeline, start, end, expected_rows: list[dict]) -> dict[str, dict]:
    """The FOCUS 1.3 gate passes, SUM(BilledCost) per billing period is the source total and the expected total
    exactly, and the reconciliation the run records has no difference."""
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": pipeline})
    assert report.ok, report.summary()
    assert report.rows_checked == len(expected_rows)
    billed, effective = by_period(expected_rows), by_period(expected_rows, "EffectiveCost")
    per, src = kit.focus_by_period(wh, pipeline), kit.source_by_period(wh, pipeline)
    assert {p: b for p, (_, b, _) in per.items()} == billed
    assert {p: e for p, (_, _, e) in per.items()} == effective
    assert {p: c for p, (_, c) in src.items()} == billed
    assert {p: n for p, (n, _) in src.items()} == {p: n for p, (n, _, _) in per.items()}
    params = {"org_slug": "acme", "pipeline_id": pipeline, "credential_id": "cred_focus", "start_date": start,
              "end_date": end}
    recon = reconcile_cloud(wh, "acme_prod", params)
    assert recon and all(r["ok"] and r["difference"] == 0 for r in recon)
    return focus_rows(wh, pipeline)


def rerun_is_unchanged(wh, pipeline, credential, start, end) -> None:
    per, src = kit.focus_by_period(wh, pipeline), kit.source_by_period(wh, pipeline)
    raw_n = wh.query("SELECT COUNT(*) AS n FROM `acme_prod.cloud_focus_raw`")[0]["n"]
    land(wh, pipeline, credential, start, end, run_id="run_b")
    assert kit.focus_by_period(wh, pipeline) == per and kit.source_by_period(wh, pipeline) == src
    assert wh.query("SELECT COUNT(*) AS n FROM `acme_prod.cloud_focus_raw`")[0]["n"] == raw_n


def day_of(kind: str, day: dt.date) -> str:
    return f"{kind} {day}"


# --------------------------------------------------------------------------------------------------
# Recognising exports and reading values exactly
# --------------------------------------------------------------------------------------------------
def test_export_shapes_and_version_detection():
    # AWS documents 43 FOCUS columns in FOCUS_1_0_AWS and 57 in FOCUS_1_2_AWS
    assert (len(FOCUS_10), len(FOCUS_12)) == (43, 57)
    aws10, _ = aws_shape([], "1.0")
    aws12, _ = aws_shape([], "1.2")
    az_preview, _ = azure_shape([], "1.0-preview")
    az10, _ = azure_shape([], "1.0r2")
    assert [focus_export.detect_version(h) for h in (aws10, aws12, az_preview, az10, GCP_FOCUS)] == \
        ["1.0", "1.2", "1.0-preview", "1.0", "1.2"]  # GCP's Preview export has the 1.2 pricing-currency columns
    assert focus_export.detect_version(["BilledCost", "AmortizedCost", "ChargeType", "ChargePeriodStart"]) == "0.5"
    assert all(focus_export.is_focus_export(h) for h in (aws10, aws12, az_preview, GCP_FOCUS))
    assert not focus_export.is_focus_export(["line_item_unblended_cost", "line_item_usage_start_date"])
    assert not focus_export.is_focus_export(["Date", "CostInBillingCurrency", "ChargeType"])
    # the cloud procedure converts cloud_focus_raw too (the per-cloud tests parse its statements as BigQuery)
    assert "cloud_focus_raw" in procedures.get("sp_cloud_1_convert_to_focus").bigquery_ddl("proj", "acme_prod")


def test_s3_parquet_header_is_read_from_its_footer(monkeypatch):
    header, shaped = aws_shape(charges("aws", *FEB_MAR), "1.2")
    data = parquet_bytes(header, shaped)

    class FakeS3:
        def __init__(self):
            self.ranges = []

        def get_object(self, Bucket, Key, Range):  # noqa: N803 - boto3's argument names
            n = int(Range.removeprefix("bytes=-"))
            self.ranges.append((Bucket, Key, n))
            return {"Body": io.BytesIO(data[-n:])}

    class S3Like:
        s3 = FakeS3()

        def local_path(self, f, stack):
            raise AssertionError("recognising the file must not download it")

    source = S3Like()
    monkeypatch.setattr(focus_export, "PARQUET_TAIL_BYTES", 64)  # smaller than the footer: a second, exact GET
    f = focus_export.DataFile("s3://cur-bucket/focus/data/focus-00001.snappy.parquet", "parquet")
    assert focus_export.header_names(source, f) == header and focus_export.files_are_focus(source, [f])
    footer = int.from_bytes(data[-8:-4], "little") + 8
    assert source.s3.ranges[:2] == [("cur-bucket", "focus/data/focus-00001.snappy.parquet", 64),
                                    ("cur-bucket", "focus/data/focus-00001.snappy.parquet", footer)]
    assert footer < len(data)


def test_parquet_doubles_and_csv_text_become_the_same_exact_numeric(tmp_path):
    rows = [dict(r, BilledCost=v, EffectiveCost=v) for r, v in zip(
        day_charges("aws", dt.date(2024, 3, 2))[:6],
        ("0.1", "0.2", "2.675", "0.0000000015", "1234567.123456789", "-0.000012"))]
    header, shaped = aws_shape(rows, "1.2")
    (tmp_path / "pq").mkdir()
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq" / "focus-00001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    (tmp_path / "csv" / "focus-00001.csv").write_bytes(csv_bytes(header, shaped))
    from jobs.cloud import aws

    day = dt.date(2024, 3, 2)
    raw_pq, totals_pq, _ = extract(aws, AWS, {"source": f"file://{tmp_path / 'pq'}"}, day, day)
    raw_csv, totals_csv, _ = extract(aws, AWS, {"source": f"file://{tmp_path / 'csv'}"}, day, day)
    expected = [q(r["BilledCost"]) for r in rows]
    # 2.675 is 2.67499999999999982236431605997495353221893310546875 as a double: its shortest text is 2.675
    assert raw_pq.column("billed_cost").to_pylist() == raw_csv.column("billed_cost").to_pylist() == expected
    assert expected[3] == Decimal("0.000000002")  # half to even at the 9th decimal
    assert totals_pq.column("source_cost").to_pylist() == [sum(expected)] == totals_csv.column("source_cost").to_pylist()
    assert sum(float(r["BilledCost"]) for r in rows[:2]) != 0.3 and sum(expected[:2]) == Decimal("0.3")


# --------------------------------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------------------------------
FEB_MAR = (dt.date(2024, 2, 28), dt.date(2024, 3, 2))  # crosses a billing period


def test_aws_focus_1_2_parquet_on_s3_to_focus_1_3(rt, acme, s3_server):  # noqa: F811
    s3, cred = s3_server
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("aws", FEB_MAR[0] - dt.timedelta(days=1), FEB_MAR[1] + dt.timedelta(days=1))
    header, shaped = aws_shape(rows, "1.2")
    for period in ("2024-02", "2024-03"):  # Data Exports: one data folder and manifest per billing period
        part = [r for r in shaped if r["BillingPeriodStart"].startswith(period)]
        key = f"cur/focus-export/data/BILLING_PERIOD={period}/focus-export-00001.snappy.parquet"
        s3.put_object(Bucket="cur-bucket", Key=key, Body=parquet_bytes(header, part))
        s3.put_object(Bucket="cur-bucket", Key=f"cur/focus-export/metadata/BILLING_PERIOD={period}/"
                      "focus-export-Manifest.json", Body=json.dumps({
                          "executionId": f"exec-{period}", "exportName": "focus-export",
                          "billingPeriod": {"start": f"{period}-01T00:00:00.000Z"},
                          "dataFiles": [f"s3://cur-bucket/{key}"]}).encode())
    expected = in_range(rows, *FEB_MAR)
    counts = land(wh, AWS, cred, *FEB_MAR)
    assert counts == {"aws_billing_raw": 0, RAW: len(expected), TOTALS: len(days(*FEB_MAR))}
    assert len(expected) == 4 * 7 + 1 + 2 * 2  # 7 charges a day, the purchase on the 1st, credits on even days
    out = assert_converted(wh, AWS, *FEB_MAR, expected)
    raw = wh.query("SELECT DISTINCT focus_version, provider FROM `acme_prod.cloud_focus_raw`")
    assert raw == [{"focus_version": "1.2", "provider": "aws"}]

    mar1 = dt.date(2024, 3, 1)
    vm = out[day_of("vm", mar1)]
    assert (vm["ProviderName"], vm["PublisherName"], vm["ServiceProviderName"], vm["HostProviderName"]) == \
        ("Amazon Web Services",) * 4  # the CUR path's names (providers.yml), not the export's 'AWS'
    assert (vm["ServiceCategory"], vm["ServiceSubcategory"]) == ("Compute", "Virtual Machines")
    assert vm["ListUnitPrice"] * vm["PricingQuantity"] == vm["ListCost"] == Decimal("2.304")
    assert vm["ContractedUnitPrice"] == Decimal("0.0912") and vm["ContractedCost"] == Decimal("2.1888")
    assert vm["SkuMeter"] == "BoxUsage:m5.large" and vm["ResourceType"] == "Instance"
    assert json.loads(vm["SkuPriceDetails"]) == {"InstanceType": "m5.large", "OperatingSystem": "Linux"}
    # Parquet map tags: keys lower-cased, AWS's user: prefix dropped, a valueless tag is true (FOCUS)
    assert json.loads(vm["Tags"]) == {"team": "Core", "env": "true", "aws:createdby": "ci"}
    assert (vm["InvoiceId"], vm["BillingAccountType"], vm["SubAccountType"]) == \
        ("INV-202403", "Payer Account", "Linked Account")
    mkt = out[day_of("marketplace", mar1)]
    assert (mkt["PublisherName"], mkt["ServiceProviderName"], mkt["HostProviderName"], mkt["InvoiceIssuerName"]) == \
        ("Acme Seller LLC", "Acme Seller LLC", "Amazon Web Services", "Amazon Web Services")
    assert (mkt["ServiceCategory"], mkt["ServiceSubcategory"]) == ("Management and Governance", "Observability")
    tax = out[day_of("tax", mar1)]
    # the export's gaps are the provider's names; a tax row carries no SKU, quantity or unit prices
    assert (tax["PublisherName"], tax["InvoiceIssuerName"]) == ("Amazon Web Services",) * 2
    assert (tax["SkuId"], tax["PricingQuantity"], tax["PricingCategory"], tax["ListUnitPrice"]) == (None,) * 4
    fee, covered, unused = (out[day_of(k, mar1)] for k in ("fee", "covered", "unused"))
    assert (fee["ChargeCategory"], fee["ChargeFrequency"], fee["EffectiveCost"]) == ("Purchase", "Recurring", 0)
    assert fee["PricingCategory"] == "Standard"  # FOCUS 1.1: a commitment purchase is never Committed
    assert (covered["CommitmentDiscountStatus"], covered["PricingCategory"], covered["BilledCost"]) == \
        ("Used", "Committed", 0)
    assert covered["CommitmentDiscountCategory"] == "Spend" and covered["CommitmentDiscountUnit"] == "USD"
    assert (unused["CommitmentDiscountStatus"], unused["ConsumedQuantity"], unused["EffectiveCost"]) == \
        ("Unused", None, Decimal("0.3"))
    assert (unused["PricingQuantity"], unused["PricingUnit"]) == (0, "Units")  # required on Usage; not exported
    # amortization: per commitment and day, Usage EffectiveCost = the fee billed
    assert covered["EffectiveCost"] + unused["EffectiveCost"] == fee["BilledCost"]
    purchase = out[day_of("purchase", mar1)]
    assert (purchase["BilledCost"], purchase["EffectiveCost"], purchase["CommitmentDiscountType"]) == \
        (Decimal(876), 0, "Reserved Instance")
    assert purchase["ServiceCategory"] == "Databases"
    credit = out[day_of("credit", dt.date(2024, 2, 28))]
    assert credit["BilledCost"] == credit["EffectiveCost"] == credit["ContractedCost"] == Decimal("-0.75")
    assert credit["BillingPeriodStart"].date() == dt.date(2024, 2, 1)
    assert {r["x_cost_source"] for r in out.values()} == {"cloud"}
    rerun_is_unchanged(wh, AWS, cred, *FEB_MAR)


def test_aws_focus_1_0_gzip_csv_folder(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("aws", *FEB_MAR)
    rows[0]["ServiceCategory"] = "Artificial Intelligence"  # not a FOCUS 1.3 value: the map decides
    rows[0].update(_service_key="AmazonBedrock", ServiceName="Amazon Bedrock")  # one ServiceName, one category
    header, shaped = aws_shape(rows, "1.0")
    (tmp_path / "focus-1-0-00001.csv.gz").write_bytes(gzip.compress(csv_bytes(header, shaped)))
    cred = {"source": f"file://{tmp_path}"}
    land(wh, AWS, cred, *FEB_MAR)
    out = assert_converted(wh, AWS, *FEB_MAR, rows)
    assert wh.query("SELECT DISTINCT focus_version FROM `acme_prod.cloud_focus_raw`") == [{"focus_version": "1.0"}]
    feb29 = dt.date(2024, 2, 29)
    vm = out[day_of("vm", feb29)]
    assert vm["SkuMeter"] == "BoxUsage:m5.large"  # x_UsageType, renamed SkuMeter in 1.2
    # 1.0 has no ServiceSubcategory: the service map's, for the same category
    assert (vm["ServiceCategory"], vm["ServiceSubcategory"]) == ("Compute", "Virtual Machines")
    # 1.0 has no pricing-currency columns: the billing currency's values
    assert (vm["PricingCurrency"], vm["PricingCurrencyEffectiveCost"]) == ("USD", vm["EffectiveCost"])
    assert vm["InvoiceId"] is None and vm["SubAccountType"] == "Linked Account"
    # x_CostCategories join the tags (they moved into Tags in 1.2)
    assert json.loads(vm["Tags"]) == {"team": "Core", "env": "true", "aws:createdby": "ci", "project": "apollo"}
    bedrock = out[day_of("vm", FEB_MAR[0])]
    assert (bedrock["ServiceCategory"], bedrock["ServiceSubcategory"]) == ("AI and Machine Learning", "Generative AI")
    # a category the export has right, a service the map does not know: Other within that category
    mkt = out[day_of("marketplace", feb29)]
    assert (mkt["ServiceCategory"], mkt["ServiceSubcategory"]) == \
        ("Management and Governance", "Other (Management and Governance)")
    covered = out[day_of("covered", feb29)]
    assert (covered["CommitmentDiscountQuantity"], covered["CommitmentDiscountUnit"]) == (Decimal("1.5"), "USD")
    purchase = out[day_of("purchase", dt.date(2024, 3, 1))]
    assert (purchase["CommitmentDiscountQuantity"], purchase["CommitmentDiscountUnit"]) == (1, "Units")
    rerun_is_unchanged(wh, AWS, cred, *FEB_MAR)


def test_aws_missing_required_columns_are_named(tmp_path):
    from jobs.cloud import aws

    header, shaped = aws_shape(charges("aws", *FEB_MAR), "1.2")
    header = [c for c in header if c not in ("BillingCurrency", "EffectiveCost")]
    (tmp_path / "focus-00001.csv").write_bytes(csv_bytes(header, shaped))
    with pytest.raises(ExtractError) as e:
        extract(aws, AWS, {"source": f"file://{tmp_path}"}, *FEB_MAR)
    msg = str(e.value)
    assert "focus-00001.csv" in msg and "required FOCUS columns missing: BillingCurrency, EffectiveCost" in msg


def test_aws_truncated_gzip_fails_naming_it_and_keeps_the_earlier_data(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    header, shaped = aws_shape(charges("aws", *FEB_MAR), "1.0")
    path = tmp_path / "focus-00001.csv.gz"
    data = gzip.compress(csv_bytes(header, shaped))
    path.write_bytes(data)
    cred = {"source": f"file://{tmp_path}"}
    land(wh, AWS, cred, *FEB_MAR)
    before = (kit.focus_by_period(wh, AWS), kit.source_by_period(wh, AWS),
              wh.query("SELECT COUNT(*) AS n FROM `acme_prod.cloud_focus_raw`")[0]["n"])
    path.write_bytes(data[: len(data) * 2 // 3])
    # raised while the warehouse reads the stream: the embedded warehouse reports it as its own error
    with pytest.raises((ExtractError, WarehouseError)) as e:
        land(wh, AWS, cred, *FEB_MAR, run_id="run_b")
    assert str(path) in str(e.value) and "truncated" in str(e.value)
    assert (kit.focus_by_period(wh, AWS), kit.source_by_period(wh, AWS),
            wh.query("SELECT COUNT(*) AS n FROM `acme_prod.cloud_focus_raw`")[0]["n"]) == before
    assert before[2] == len(charges("aws", *FEB_MAR))


# --------------------------------------------------------------------------------------------------
# Azure
# --------------------------------------------------------------------------------------------------
MAR_APR = (dt.date(2024, 3, 30), dt.date(2024, 4, 2))


def azure_manifest(month: str, blobs: list[str], data_version: str = "1.0r2") -> bytes:
    return json.dumps({
        "exportConfig": {"exportName": "focus", "resourceId": "/providers/Microsoft.Billing/exports/focus",
                         "dataVersion": data_version, "type": "FocusCost", "timeFrame": "MonthToDate"},
        "deliveryConfig": {"partitionData": True, "fileFormat": "Csv", "rootFolderPath": "exports"},
        "runInfo": {"executionType": "Scheduled", "submittedTime": f"{month}-28T01:00:00Z", "runId": f"run-{month}",
                    "startDate": f"{month}-01T00:00:00"},
        "blobs": [{"blobName": b, "byteCount": 1} for b in blobs]}).encode()


def azure_layout(rows: list[dict]) -> dict[str, bytes]:
    """A monthly FocusCost 1.0r2 export (gzip CSV) per billing period, each with its manifest."""
    header, shaped = azure_shape(rows, "1.0r2")
    out = {}
    for month in sorted({r["BillingPeriodStart"][:7] for r in shaped}):
        yyyymm = month.replace("-", "")
        folder = f"exports/focus/{yyyymm}01-{yyyymm}28/run-{month}"
        part = [r for r in shaped if r["BillingPeriodStart"].startswith(month)]
        out[f"{folder}/part_0_0001.csv.gz"] = gzip.compress(csv_bytes(header, part))
        out[f"{folder}/manifest.json"] = azure_manifest(month, [f"{folder}/part_0_0001.csv.gz"])
    return out


def test_azure_focuscost_1_0r2_on_azurite_to_focus_1_3(rt, acme, azurite):  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("azure", MAR_APR[0] - dt.timedelta(days=1), MAR_APR[1] + dt.timedelta(days=1))
    container = BlobServiceClient.from_connection_string(azurite).get_container_client("focusexports")
    if not container.exists():
        container.create_container()
    for name, data in azure_layout(rows).items():
        container.upload_blob(name, data, overwrite=True)
    cred = {"connection_string": azurite, "container": "focusexports", "prefix": "exports"}
    expected = in_range(rows, *MAR_APR)
    counts = land(wh, AZURE, cred, *MAR_APR)
    assert counts == {"azure_billing_raw": 0, RAW: len(expected), TOTALS: len(days(*MAR_APR))}
    out = assert_converted(wh, AZURE, *MAR_APR, expected)
    apr1 = dt.date(2024, 4, 1)
    vm = out[day_of("vm", apr1)]
    assert (vm["ServiceProviderName"], vm["HostProviderName"], vm["ProviderName"]) == ("Microsoft",) * 3
    assert vm["ResourceType"] == "Instance" and vm["RegionId"] == "westeurope" and vm["RegionName"] == "West Europe"
    assert json.loads(vm["Tags"]) == {"team": "Core", "env": "true", "costcenter": "cc-100"}
    assert (vm["BillingAccountType"], vm["SubAccountType"]) == ("Billing Profile", "Subscription")
    # 1.0 has no ServiceSubcategory: the map by x_SkuMeterCategory
    storage = out[day_of("storage", apr1)]
    assert (storage["ServiceCategory"], storage["ServiceSubcategory"]) == ("Storage", "Storage Platforms")
    mkt = out[day_of("marketplace", apr1)]
    assert (mkt["ServiceProviderName"], mkt["HostProviderName"]) == ("Contoso Ltd", "Microsoft")
    unused = out[day_of("unused", apr1)]
    assert unused["CommitmentDiscountStatus"] == "Unused" and unused["CommitmentDiscountQuantity"] == Decimal("0.3")
    assert {r["source_file"].split("/focusexports/")[1].split("/")[2] for r in wh.query(
        "SELECT DISTINCT source_file FROM `acme_prod.cloud_focus_raw`")} == {"20240301-20240328", "20240401-20240428"}
    rerun_is_unchanged(wh, AZURE, cred, *MAR_APR)
    # a truncated blob fails naming it; the landed slice stays as it was
    name = next(n for n in azure_layout(rows) if n.endswith(".csv.gz") and "202404" in n)
    container.upload_blob(name, azure_layout(rows)[name][:-40], overwrite=True)
    per = kit.focus_by_period(wh, AZURE)
    with pytest.raises((ExtractError, WarehouseError)) as e:
        land(wh, AZURE, cred, *MAR_APR, run_id="run_c")
    assert name in str(e.value)
    assert kit.focus_by_period(wh, AZURE) == per


def test_azure_focuscost_1_2_preview_parquet_found_by_its_header(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("azure", *MAR_APR)
    for r in rows:  # 1.2-preview leaves CommitmentDiscountStatus and the quantity empty ("currently null")
        r.update(CommitmentDiscountStatus=None, CommitmentDiscountQuantity=None, CommitmentDiscountUnit=None)
    header, shaped = azure_shape(rows, "1.2-preview")
    (tmp_path / "part_0_0001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    cred = {"source": f"file://{tmp_path}"}  # no manifest, no dataset: the header says FocusCost
    land(wh, AZURE, cred, *MAR_APR)
    out = assert_converted(wh, AZURE, *MAR_APR, rows)
    assert wh.query("SELECT DISTINCT focus_version FROM `acme_prod.cloud_focus_raw`") == [{"focus_version": "1.2"}]
    day = dt.date(2024, 3, 31)
    covered, unused, fee = (out[day_of(k, day)] for k in ("covered", "unused", "fee"))
    # status from the consumed quantity; spend commitments count their cost in the billing currency
    assert (covered["CommitmentDiscountStatus"], unused["CommitmentDiscountStatus"]) == ("Used", "Unused")
    assert (covered["CommitmentDiscountQuantity"], covered["CommitmentDiscountUnit"]) == (Decimal("1.5"), "USD")
    assert (fee["CommitmentDiscountQuantity"], fee["CommitmentDiscountUnit"]) == (Decimal("1.8"), "USD")
    assert (out[day_of("storage", day)]["ServiceSubcategory"]) == "Object Storage"  # the export's valid pair
    rerun_is_unchanged(wh, AZURE, cred, *MAR_APR)


def test_azure_focuscost_1_0_preview_values_become_focus_1_3(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("azure", *MAR_APR)
    header, shaped = azure_shape(rows, "1.0-preview")
    assert {"UsageQuantity", "Region", "ChargeSubcategory"} <= set(header) and "ConsumedQuantity" not in header
    (tmp_path / "focus.csv").write_bytes(csv_bytes(header, shaped))
    cred = {"source": f"file://{tmp_path}", "dataset": "focus"}
    land(wh, AZURE, cred, *MAR_APR)
    out = assert_converted(wh, AZURE, *MAR_APR, rows)
    day = dt.date(2024, 4, 2)
    vm, covered, unused, credit = (out[day_of(k, day)] for k in ("vm", "covered", "unused", "credit"))
    assert (vm["PricingCategory"], vm["ConsumedQuantity"], vm["RegionId"]) == ("Standard", 24, "westeurope")
    assert vm["RegionName"] == "westeurope"  # 1.0-preview had no region name: the id
    assert vm["ChargePeriodStart"] == dt.datetime(2024, 4, 2, tzinfo=dt.UTC)  # minute-precision dates
    assert (covered["CommitmentDiscountStatus"], covered["PricingCategory"]) == ("Used", "Committed")
    assert (unused["CommitmentDiscountStatus"], unused["ConsumedQuantity"]) == ("Unused", None)
    assert (credit["ChargeCategory"], credit["EffectiveCost"]) == ("Credit", Decimal("-0.75"))  # Adjustment/Credit
    assert vm["ContractedUnitPrice"] is None and vm["ContractedCost"] == vm["BilledCost"]  # no contracted columns


def test_azure_focuscost_wins_over_cost_details_of_the_same_period(tmp_path):
    from jobs.cloud import azure

    rows = charges("azure", *MAR_APR)
    for name, data in azure_layout(rows).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    actual = tmp_path / "exports/actual/20240301-20240331/run-a"
    actual.mkdir(parents=True)
    (actual / "part_0_0001.csv").write_text("Date,CostInBillingCurrency,BillingCurrencyCode,ChargeType\n"
                                            "03/30/2024,5.0,USD,Usage\n")
    (actual / "manifest.json").write_bytes(json.dumps({
        "exportConfig": {"exportName": "actual", "type": "ActualCost"},
        "runInfo": {"submittedTime": "2024-03-31T01:00:00Z", "startDate": "2024-03-01T00:00:00"},
        "blobs": [{"blobName": "exports/actual/20240301-20240331/run-a/part_0_0001.csv"}]}).encode())
    raw, totals, ctx = extract(azure, AZURE, {"source": f"file://{tmp_path}"}, *MAR_APR)
    assert raw.num_rows == len(rows)
    assert sum(totals.column("source_cost").to_pylist()) == sum(by_period(rows).values())
    assert any("skipped 1 ActualCost/AmortizedCost files" in w for w in ctx.warnings)
    # a period only the cost-details export covers cannot be read alongside FocusCost
    (tmp_path / "exports/focus/20240301-20240328/run-2024-03/manifest.json").unlink()
    with pytest.raises(ExtractError, match="only the latter cover 2024-03-01"):
        extract(azure, AZURE, {"source": f"file://{tmp_path}"}, *MAR_APR)


# --------------------------------------------------------------------------------------------------
# GCP
# --------------------------------------------------------------------------------------------------
JAN_FEB = (dt.date(2025, 1, 30), dt.date(2025, 2, 2))
GCP_HEADER = GCP_FOCUS + ["x_ServiceId", "x_CostType", "x_ExportTime", "x_ProjectLabels", "x_Tags", "x_Labels"]


def gcp_parquet(folder: Path, rows: list[dict], name: str = "focus-000000000000.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(parquet_bytes(GCP_HEADER, gcp_shape(rows), pa.decimal128(38, 9)))


def assert_gcp_values(out: dict[str, dict]) -> None:
    feb1 = dt.date(2025, 2, 1)
    vm = out[day_of("vm", feb1)]
    # no ServiceCategory in the export: the map by ServiceName; no Tags: project labels < tags < labels
    assert (vm["ServiceCategory"], vm["ServiceSubcategory"]) == ("Compute", "Virtual Machines")
    assert json.loads(vm["Tags"]) == {"team": "platform", "env": "prod", "org/costcenter": "cc-100",
                                      "app": "Compute Engine"}
    assert (vm["InvoiceIssuerName"], vm["ServiceProviderName"], vm["HostProviderName"]) == ("Google Cloud",) * 3
    assert (vm["ChargeFrequency"], vm["ResourceType"], vm["SubAccountType"]) == ("Usage-Based", "instances", "Project")
    # no SkuMeter in GCP's export: its ChargeDescription (the SKU's description) stands in, as FOCUS asks for one
    assert vm["SkuMeter"] == vm["ChargeDescription"] and vm["BillingAccountName"] == vm["BillingAccountId"]
    assert (out[day_of("storage", feb1)]["ServiceCategory"], out[day_of("purchase", feb1)]["ServiceSubcategory"]) == \
        ("Storage", "Relational Databases")
    mkt = out[day_of("marketplace", feb1)]
    assert (mkt["ServiceProviderName"], mkt["PublisherName"], mkt["HostProviderName"]) == \
        ("Observa Inc.", "Observa Inc.", "Google Cloud")
    # the export has no commitment columns: no commitment in the FOCUS rows either
    assert all(r["CommitmentDiscountId"] is None for r in out.values())
    tax = out[day_of("tax", feb1)]
    assert (tax["ChargeFrequency"], tax["SkuId"], tax["PricingUnit"]) == ("One-Time", None, None)


def test_gcp_focus_export_parquet_folder_found_by_its_columns(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("gcp", JAN_FEB[0] - dt.timedelta(days=2), JAN_FEB[1] + dt.timedelta(days=2))
    gcp_parquet(tmp_path / "focus", rows)
    cred = {"source": (tmp_path / "focus").as_uri()}
    counts = land(wh, GCP, cred, *JAN_FEB)
    expected = in_range(rows, *JAN_FEB)
    assert counts == {"gcp_billing_raw": 0, RAW: len(expected), TOTALS: len(days(*JAN_FEB))}
    out = assert_converted(wh, GCP, *JAN_FEB, expected)
    assert_gcp_values(out)
    rerun_is_unchanged(wh, GCP, cred, *JAN_FEB)


class _Field:
    def __init__(self, name):
        self.name = name


class FakeFocusTable:
    """A BigQuery client serving the FOCUS export table, filtered by the query's DATE(ChargePeriodStart) range."""

    def __init__(self, table: pa.Table):
        self.table, self.calls = table, []

    def get_table(self, ref):
        self.calls.append(("get_table", ref))
        from google.cloud import bigquery

        t = type("T", (), {})()
        t.schema, t.table_type = [_Field(n) for n in self.table.column_names], "TABLE"
        t.time_partitioning = bigquery.TimePartitioning(type_="DAY", field="ChargePeriodStart")
        return t

    def query(self, sql, job_config=None):
        params = {p.name: p.value for p in job_config.query_parameters}
        self.calls.append(("query", sql, params))
        day = pa.compute.cast(self.table.column("ChargePeriodStart"), pa.date32()).to_pylist()
        data = self.table.filter(pa.array([params["start_date"] <= d <= params["end_date"] for d in day]))
        job = type("J", (), {})()
        job.result = lambda page_size=None: job
        job.to_arrow_iterable = lambda: iter(data.to_batches(max_chunksize=7))
        return job


def test_gcp_focus_export_from_bigquery(rt, acme, tmp_path, monkeypatch):
    wh = rt.warehouse
    service_map.sync(wh)
    rows = charges("gcp", JAN_FEB[0] - dt.timedelta(days=1), JAN_FEB[1] + dt.timedelta(days=1))
    gcp_parquet(tmp_path, rows)
    fake = FakeFocusTable(pq.read_table(tmp_path / "focus-000000000000.parquet"))
    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: fake)
    table = "gcp_billing_export_focus_012345_6789AB_CDEF01"
    cred = {"project": "acme-billing", "dataset": "gcp_billing_immutable_012345_6789AB_CDEF01_us", "table": table}
    land(wh, GCP, cred, *JAN_FEB)
    out = assert_converted(wh, GCP, *JAN_FEB, in_range(rows, *JAN_FEB))
    assert_gcp_values(out)
    _, sql, params = fake.calls[1]
    assert "DATE(ChargePeriodStart) BETWEEN @start_date AND @end_date" in sql
    assert "ChargePeriodStart >= TIMESTAMP_SUB(TIMESTAMP(@start_date), INTERVAL 3 DAY)" in sql
    assert "`x_Labels`" in sql and "`BilledCost`" in sql and "`x_CostType`" not in sql  # only what is read
    sqlglot.parse_one(sql, read="bigquery")
    assert params == {"start_date": JAN_FEB[0], "end_date": JAN_FEB[1]}
    # a table without the FOCUS columns fails naming it and them, before any query
    fake = FakeFocusTable(pq.read_table(tmp_path / "focus-000000000000.parquet").drop_columns(["ServiceName"]))
    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: fake)
    with pytest.raises(ExtractError, match=f"acme-billing.gcp_billing_immutable_012345_6789AB_CDEF01_us.{table}: "
                                           "required FOCUS columns missing: ServiceName"):
        extract(gcp, GCP, cred, *JAN_FEB)
    assert [c[0] for c in fake.calls] == ["get_table"]


def test_gcp_focus_flag_reads_a_view_or_folder_as_the_focus_export(tmp_path):
    rows = charges("gcp", *JAN_FEB)
    gcp_parquet(tmp_path / "f", rows)
    raw, totals, _ = extract(gcp, GCP, {"source": (tmp_path / "f").as_uri(), "focus": True}, *JAN_FEB)
    assert raw.num_rows == len(rows) and sum(totals.column("source_cost").to_pylist()) == sum(by_period(rows).values())
    ctx = ExtractContext("acme", GCP, "cred_focus", "run_a", *JAN_FEB, {"source": (tmp_path / "f").as_uri(),
                                                                          "focus": False})
    with pytest.raises(ExtractError, match="required billing export columns missing"):
        list(gcp.extract(ctx)["gcp_billing_raw"])
