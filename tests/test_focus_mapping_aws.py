"""FOCUS mapping of AWS billing (issue 13, defects 1, 2 and 4) on both AWS inputs: the Cost and Usage Report
(legacy CSV, CUR 2.0 gzip CSV and CUR 2.0 Parquet) -> 10_aws.sql, and AWS's own FOCUS 1.2 export -> 50_focus_export.sql;
and the ServiceName -> ServiceCategory rule on the Azure cost-details path (30_azure.sql).

One March 2024 account with the lines an analyst sees at once: EC2 instance hours and an EBS volume (both under the
product code AmazonEC2), an SQS free-tier line (billed at the free tier's $0 rate, with the public on-demand cost of
the paid tier beside it), AWS Marketplace lines (no public on-demand price: 0 in one, empty in the other), an RDS
reservation (covered usage and the fee), S3 storage and VAT of a linked account invoiced by Amazon Web Services
EMEA SARL, and US sales tax. The CUR files and the FOCUS export are written from that one charge list in each
format's documented names and types; every expected figure is read from the charge list, never from the output.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.base import ExtractContext
from jobs.cloud import aws
from shared import focus, schemas, service_map
from tests import cloud_kit as kit
from tests.test_azure_billing import MCA_HEADER
from tests.test_azure_billing import csv_bytes as mca_csv_bytes
from tests.test_focus_exports import aws_shape, azure_shape, day_charges, parquet_bytes
from tools import cur_generator

PIPELINE = "cloud/aws/cost/billing"
CUR_CRED, FOCUS_CRED = "cred_cur", "cred_focus"
MAR = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
PAYER, US_ACCOUNT, EU_ACCOUNT = "111122223333", "444455556666", "777788889999"
AWS_INC, AWS_EMEA = "Amazon Web Services, Inc.", "Amazon Web Services EMEA SARL"
EC2 = "Amazon Elastic Compute Cloud"
RI = "arn:aws:rds:us-east-1:111122223333:ri:db-ri-1"
SP = "arn:aws:savingsplans::111122223333:savingsplan/sp-1"
SELLER = "Acme Seller LLC"

# The CUR 2.0 columns the charge list fills, each also written under its legacy CUR name (awsdocs cur user guide,
# "data dictionary"; tools/cur_generator.legacy_name spells them, as in the generated bench files); the extractor
# must read both.
LEGACY = {column: cur_generator.legacy_name(column) for column in [
    "identity_line_item_id", "bill_invoice_id", "bill_invoicing_entity", "bill_billing_entity", "bill_bill_type",
    "bill_payer_account_id", "bill_billing_period_start_date", "bill_billing_period_end_date",
    "line_item_usage_account_id", "line_item_line_item_type", "line_item_usage_start_date",
    "line_item_usage_end_date", "line_item_product_code", "line_item_usage_type", "line_item_operation",
    "line_item_usage_amount", "line_item_currency_code", "line_item_unblended_rate", "line_item_unblended_cost",
    "line_item_line_item_description", "line_item_legal_entity", "line_item_tax_type", "line_item_resource_id",
    "product_product_name", "product_servicecode", "product_sku", "product_region_code", "product_product_family",
    "pricing_unit", "pricing_public_on_demand_rate", "pricing_public_on_demand_cost", "pricing_term",
    "pricing_rate_id", "reservation_reservation_a_r_n", "reservation_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period", "reservation_unused_recurring_fee",
    "savings_plan_savings_plan_a_r_n", "savings_plan_savings_plan_effective_cost",
]}
# CUR 2.0 keeps the product name in the `product` map (product['product_name']), not as a flat column.
CUR2 = [c for c in LEGACY if c != "product_product_name"] + ["product"]
MONEY = {"line_item_usage_amount", "line_item_unblended_rate", "line_item_unblended_cost",
         "pricing_public_on_demand_rate", "pricing_public_on_demand_cost", "reservation_effective_cost",
         "reservation_unused_amortized_upfront_fee_for_billing_period", "reservation_unused_recurring_fee",
         "savings_plan_savings_plan_effective_cost"}
TIMES = {"bill_billing_period_start_date", "bill_billing_period_end_date", "line_item_usage_start_date",
         "line_item_usage_end_date"}


def charges() -> list[dict]:
    """The account's March line items, in CUR 2.0 names (text, as in a CSV); '' is an empty cell."""
    base = dict.fromkeys(LEGACY, "")
    base.update(bill_invoice_id="EUINAB24-123456", bill_invoicing_entity=AWS_INC, bill_billing_entity="AWS",
                bill_bill_type="Anniversary", bill_payer_account_id=PAYER,
                bill_billing_period_start_date="2024-03-01T00:00:00Z",
                bill_billing_period_end_date="2024-04-01T00:00:00Z", line_item_usage_account_id=US_ACCOUNT,
                line_item_currency_code="USD", line_item_legal_entity=AWS_INC, product_region_code="us-east-1",
                pricing_term="OnDemand")

    def line(i, kind, day, code, name, description, amount="", rate="", cost="0", **kw):
        row = dict(base, identity_line_item_id=f"li-{i}", line_item_line_item_type=kind,
                   line_item_usage_start_date=f"2024-03-{day:02d}T00:00:00Z",
                   line_item_usage_end_date=f"2024-03-{day + 1:02d}T00:00:00Z", line_item_product_code=code,
                   product_product_name=name, line_item_line_item_description=description,
                   line_item_usage_amount=amount, line_item_unblended_rate=rate, line_item_unblended_cost=cost)
        row.update(kw)
        return row

    mkt = dict(bill_billing_entity="AWS Marketplace", line_item_legal_entity=SELLER, pricing_term="",
               line_item_usage_type="USE1-MP:Hosts", product_sku="mp-sku-1")
    emea = dict(line_item_usage_account_id=EU_ACCOUNT, bill_invoicing_entity=AWS_EMEA,
                line_item_legal_entity=AWS_EMEA, product_region_code="eu-west-1", bill_invoice_id="EUINIE24-654321")
    return [
        line(1, "Usage", 1, "AmazonEC2", EC2, "$0.096 per On Demand Linux m5.large Instance Hour", "24", "0.096",
             "2.304", line_item_usage_type="BoxUsage:m5.large", line_item_operation="RunInstances",
             pricing_unit="Hrs", pricing_public_on_demand_rate="0.096", pricing_public_on_demand_cost="2.304",
             product_sku="SKU-M5L", product_product_family="Compute Instance", pricing_rate_id="101",
             line_item_resource_id="i-0abc"),
        # EBS is billed under the EC2 product code: one service, whatever AWS's export says per line
        line(2, "Usage", 1, "AmazonEC2", EC2, "$0.08 per GB-month of General Purpose (gp3) provisioned storage",
             "2.5", "0.08", "0.2", line_item_usage_type="EBS:VolumeUsage.gp3", line_item_operation="CreateVolume-Gp3",
             pricing_unit="GB-Mo", pricing_public_on_demand_rate="0.08", pricing_public_on_demand_cost="0.2",
             product_sku="SKU-GP3", product_product_family="Storage", pricing_rate_id="102",
             line_item_resource_id="vol-0abc"),
        # the free tier: billed at its $0 rate; the public on-demand columns show the paid tier's price
        line(3, "Usage", 1, "AWSQueueService", "Amazon Simple Queue Service",
             "First 1,000,000 Amazon SQS Requests per month are free", "1000000", "0.0000000000", "0.0000000000",
             line_item_usage_type="USE1-Requests-Tier1", line_item_operation="GetQueueAttributes",
             pricing_unit="Requests", pricing_public_on_demand_rate="0.0000004", pricing_public_on_demand_cost="0.4",
             product_sku="SKU-SQS", product_product_family="API Request", pricing_rate_id="103"),
        # AWS Marketplace: the seller's price is the only one; AWS publishes no on-demand price (0 or empty)
        line(4, "Usage", 2, "prod-7h2bqx3fmnk", "Acme Observability Platform", "Acme Observability hosts",
             "100", "0.05", "5.0", pricing_unit="Units", pricing_public_on_demand_rate="0",
             pricing_public_on_demand_cost="0", **mkt),
        line(5, "Usage", 3, "prod-7h2bqx3fmnk", "Acme Observability Platform", "Acme Observability log GB", "10",
             "0.25", "2.5", pricing_unit="Units", **mkt),
        # a reservation: covered usage at rate 0 (NOT free tier: the list price is the on-demand one) and its fee
        line(6, "DiscountedUsage", 2, "AmazonRDS", "Amazon Relational Database Service",
             "MySQL, db.r5.large reserved instance applied", "24", "0", "0",
             line_item_usage_type="InstanceUsage:db.r5.large", line_item_operation="CreateDBInstance:0002",
             pricing_unit="Hrs", pricing_public_on_demand_rate="0.25", pricing_public_on_demand_cost="6.0",
             product_sku="SKU-RDS", pricing_rate_id="104", pricing_term="Reserved",
             reservation_reservation_a_r_n=RI, reservation_effective_cost="3.6"),
        line(7, "RIFee", 2, "AmazonRDS", "Amazon Relational Database Service",
             "USD 0.15 hourly fee per MySQL, db.r5.large instance", "24", "0.15", "3.6", pricing_unit="Hrs",
             pricing_public_on_demand_rate="0", pricing_public_on_demand_cost="0", product_sku="SKU-RDS",
             pricing_term="Reserved", reservation_reservation_a_r_n=RI,
             reservation_unused_amortized_upfront_fee_for_billing_period="0", reservation_unused_recurring_fee="0"),
        # a savings plan: covered usage at the on-demand rate, and the negation cancelling it (no list price)
        line(11, "SavingsPlanCoveredUsage", 3, "AmazonEC2", EC2, "$0.085 per On Demand Linux c5.large Instance Hour",
             "24", "0.085", "2.04", line_item_usage_type="BoxUsage:c5.large", line_item_operation="RunInstances",
             pricing_unit="Hrs", pricing_public_on_demand_rate="0.085", pricing_public_on_demand_cost="2.04",
             product_sku="SKU-C5L", pricing_rate_id="106", savings_plan_savings_plan_a_r_n=SP,
             savings_plan_savings_plan_effective_cost="1.5"),
        line(12, "SavingsPlanNegation", 3, "AmazonEC2", EC2, "SavingsPlanNegation used by AccountId : 444455556666",
             "24", "-0.085", "-2.04", line_item_usage_type="BoxUsage:c5.large", line_item_operation="RunInstances",
             pricing_unit="Hrs", product_sku="SKU-C5L", savings_plan_savings_plan_a_r_n=SP),
        line(8, "Usage", 4, "AmazonS3", "Amazon Simple Storage Service", "$0.023 per GB - first 50 TB / month",
             "50", "0.023", "1.15", line_item_usage_type="EU-TimedStorage-ByteHrs", line_item_operation="PutObject",
             pricing_unit="GB-Mo", pricing_public_on_demand_rate="0.023", pricing_public_on_demand_cost="1.15",
             product_sku="SKU-S3", product_product_family="Storage", pricing_rate_id="105",
             line_item_resource_id="acme-eu-logs", **emea),
        line(9, "Tax", 4, "AmazonS3", "Amazon Simple Storage Service", "Tax for product code AmazonS3", cost="0.23",
             line_item_tax_type="VAT", pricing_term="", **emea),
        line(10, "Tax", 4, "AmazonEC2", EC2, "Tax for product code AmazonEC2", cost="0.18",
             line_item_tax_type="Sales", pricing_term=""),
    ]


def by_description(rows: list[dict]) -> dict[str, dict]:
    return {r["line_item_line_item_description"]: r for r in rows}


def money(text: str) -> Decimal:
    return Decimal(text or "0")


def billed_per_period(rows: list[dict]) -> dict[dt.date, Decimal]:
    out: dict[dt.date, Decimal] = defaultdict(Decimal)
    for r in rows:
        out[dt.date.fromisoformat(r["bill_billing_period_start_date"][:10])] += money(r["line_item_unblended_cost"])
    return dict(out)


# --------------------------------------------------------------------------------------------------
# Writing the CUR in its three shapes
# --------------------------------------------------------------------------------------------------
def _cur2_value(col: str, r: dict) -> str:
    if col == "product":
        return json.dumps({"product_name": r["product_product_name"], "servicecode": r["product_servicecode"]})
    return r[col]


def cur2_csv_gz(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CUR2)
    w.writerows([_cur2_value(c, r) for c in CUR2] for r in rows)
    return gzip.compress(buf.getvalue().encode())


def cur2_parquet(rows: list[dict]) -> bytes:
    """Data Exports Parquet: money as double, times as timestamps, `product` as map<string, string>."""
    def typed(col, v):
        if col == "product":
            return [("product_name", v["product_product_name"]), ("servicecode", v["product_servicecode"] or None)]
        text = v[col]
        if text == "":
            return None
        if col in MONEY:
            return float(text)
        if col in TIMES:
            return dt.datetime.fromisoformat(text).replace(tzinfo=None)
        return text

    def arrow_type(col):
        if col == "product":
            return pa.map_(pa.string(), pa.string())
        return pa.float64() if col in MONEY else pa.timestamp("ms") if col in TIMES else pa.string()

    schema = pa.schema([(c, arrow_type(c)) for c in CUR2])
    table = pa.Table.from_pylist([{c: typed(c, r) for c in CUR2} for r in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def legacy_csv(rows: list[dict], without: tuple[str, ...] = ()) -> bytes:
    cols = [c for c in LEGACY if c not in without]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([LEGACY[c] for c in cols])
    w.writerows([r[c] for c in cols] for r in rows)
    return buf.getvalue().encode()


SHAPES = {
    "cur2-csv.gz": ("exp-00001.csv.gz", cur2_csv_gz),
    "cur2-parquet": ("exp-00001.snappy.parquet", cur2_parquet),
    "legacy-csv": ("report-00001.csv", legacy_csv),
}


def write_cur(folder: Path, shape: str, rows: list[dict]) -> dict:
    name, writer = SHAPES[shape]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(writer(rows))
    return {"source": f"file://{folder}"}


# --------------------------------------------------------------------------------------------------
# AWS's own FOCUS 1.2 export of the same charges (FOCUS_1_2_AWS), as AWS fills it
# --------------------------------------------------------------------------------------------------
AWS_EXPORT_CATEGORY = {  # AWS's export categorises per line: EBS under EC2 is Storage
    "BoxUsage:m5.large": ("Compute", "Virtual Machines"), "EBS:VolumeUsage.gp3": ("Storage", "Block Storage"),
    "USE1-Requests-Tier1": ("Integration", "Messaging"), "USE1-MP:Hosts": ("Management and Governance", "Observability"),
    "EU-TimedStorage-ByteHrs": ("Storage", "Object Storage"),
}
FOCUS_UNITS = {"Hrs": "Hours", "GB-Mo": "GB-Months", "Requests": "Requests", "Units": "Units"}


def aws_focus_export(rows: list[dict]) -> list[dict]:
    """The export rows of the CUR's usage and tax lines (the reservation lines are left to the CUR tests).
    AWS's values: ListCost = the public on-demand cost, 0 on free tier, BilledCost on Marketplace lines."""
    out = []
    for r in rows:
        if r["line_item_line_item_type"] not in ("Usage", "Tax"):
            continue
        tax = r["line_item_line_item_type"] == "Tax"
        marketplace = r["bill_billing_entity"] == "AWS Marketplace"
        free_tier = money(r["line_item_unblended_rate"]) == 0 and not tax
        billed = r["line_item_unblended_cost"]
        if tax or marketplace:
            list_cost, list_price = billed, (None if tax else r["line_item_unblended_rate"])
        elif free_tier:
            list_cost, list_price = "0", "0"
        else:
            list_cost, list_price = r["pricing_public_on_demand_cost"], r["pricing_public_on_demand_rate"]
        category, subcategory = AWS_EXPORT_CATEGORY.get(r["line_item_usage_type"], (None, None))
        if tax:
            category, subcategory = "Other", "Other (Other)"
        quantity = None if tax else r["line_item_usage_amount"]
        out.append({
            "BilledCost": billed, "EffectiveCost": billed, "ContractedCost": billed, "ListCost": list_cost,
            "ListUnitPrice": list_price, "ContractedUnitPrice": None if tax else r["line_item_unblended_rate"],
            "PricingQuantity": quantity, "ConsumedQuantity": quantity,
            "PricingUnit": None if tax else FOCUS_UNITS[r["pricing_unit"]],
            "ConsumedUnit": None if tax else FOCUS_UNITS[r["pricing_unit"]],
            "ChargeCategory": r["line_item_line_item_type"], "ChargeFrequency": "Usage-Based" if not tax else "Recurring",
            "ChargeDescription": r["line_item_line_item_description"], "ChargeClass": None,
            "PricingCategory": None if tax else "Standard",
            "ChargePeriodStart": r["line_item_usage_start_date"], "ChargePeriodEnd": r["line_item_usage_end_date"],
            "BillingPeriodStart": r["bill_billing_period_start_date"],
            "BillingPeriodEnd": r["bill_billing_period_end_date"], "BillingAccountId": PAYER,
            "BillingAccountName": "Acme Payer", "BillingAccountType": "Payer Account", "BillingCurrency": "USD",
            "PricingCurrency": "USD", "SubAccountId": r["line_item_usage_account_id"],
            "SubAccountType": "Linked Account", "InvoiceId": r["bill_invoice_id"],
            "InvoiceIssuerName": r["bill_invoicing_entity"], "ProviderName": "AWS",
            "PublisherName": SELLER if marketplace else "AWS",
            "RegionId": r["product_region_code"], "ServiceName": r["product_product_name"],
            "_service_key": r["line_item_product_code"], "ServiceCategory": category,
            "ServiceSubcategory": subcategory, "SkuId": None if tax else r["product_sku"] or None,
            "SkuPriceId": None if tax or not r["pricing_rate_id"] else f"{r['product_sku']}:{r['pricing_rate_id']}",
            "SkuMeter": None if tax else r["line_item_usage_type"] or None,
            "ResourceId": r["line_item_resource_id"] or None,
        })
    return out


def write_export(folder: Path, rows: list[dict]) -> dict:
    header, shaped = aws_shape(aws_focus_export(rows), "1.2")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "focus-export-00001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    return {"source": f"file://{folder}"}


# --------------------------------------------------------------------------------------------------
# Running and reading back
# --------------------------------------------------------------------------------------------------
def land(wh, cred_id: str, credential: dict, pipeline: str = PIPELINE, period=MAR) -> None:
    kit.land_and_convert(wh, pipeline, cred_id, credential, *period)


def focus_rows(wh, cred_id: str) -> dict[str, dict]:
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_credential_id = @c", {"c": cred_id})
    out = {r["ChargeDescription"]: r for r in rows}
    assert len(out) == len(rows)
    return out


def focus_billed_per_period(wh, cred_id: str) -> dict[dt.date, Decimal]:
    rows = wh.query("SELECT DATE(BillingPeriodStart) AS p, SUM(BilledCost) AS billed "
                    "FROM `acme_prod.cost_data_standard_1_3` WHERE x_credential_id = @c GROUP BY 1", {"c": cred_id})
    return {r["p"]: r["billed"] for r in rows}


def gate_passes(wh, pipeline: str = PIPELINE) -> None:
    """The gate over each credential's rows, as each run checks its own: a Marketplace product only the
    export categorises is Other on the CUR path, so the two paths of one account differ there (and only there)."""
    for cred in {r["c"] for r in wh.query("SELECT DISTINCT x_credential_id AS c FROM `acme_prod.cost_data_standard_1_3` "
                                          "WHERE x_pipeline_id = @p", {"p": pipeline})}:
        report = focus.check(wh, "acme_prod", "x_pipeline_id = @p AND x_credential_id = @c", {"p": pipeline, "c": cred})
        assert report.ok, report.summary()


def provider_default_invoice_issuer() -> str:
    """The provider-level InvoiceIssuerName the procedures fall back on (providers.yml `providers:`)."""
    facts = Path(__file__).resolve().parent.parent / "providers.yml"
    return yaml.safe_load(facts.read_text())["providers"]["aws"]["InvoiceIssuerName"]


@pytest.fixture()
def wh(rt, acme):
    service_map.sync(rt.warehouse)
    return rt.warehouse


# --------------------------------------------------------------------------------------------------
# Defect 1: ListCost on Marketplace and free-tier lines, one rule on both paths
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", list(SHAPES))
def test_cur_list_cost_is_the_published_price_billed(wh, tmp_path, shape):
    source = charges()
    land(wh, CUR_CRED, write_cur(tmp_path / "cur", shape, source))
    out, src = focus_rows(wh, CUR_CRED), by_description(source)
    assert len(out) == len(source)
    assert focus_billed_per_period(wh, CUR_CRED) == billed_per_period(source)  # totals unchanged

    for description in ("Acme Observability hosts", "Acme Observability log GB"):  # public on-demand 0 / empty
        row, line = out[description], src[description]
        assert row["BilledCost"] > 0
        assert row["ListCost"] == row["BilledCost"] == money(line["line_item_unblended_cost"])
        assert row["ListUnitPrice"] == money(line["line_item_unblended_rate"])
    free = out["First 1,000,000 Amazon SQS Requests per month are free"]
    assert free["ListCost"] == free["BilledCost"] == 0 and free["ListUnitPrice"] == 0
    assert free["PricingQuantity"] == money(src[free["ChargeDescription"]]["line_item_usage_amount"])
    # priced lines keep the public on-demand price; reservation-covered usage is not free tier
    for description in ("$0.096 per On Demand Linux m5.large Instance Hour",
                        "MySQL, db.r5.large reserved instance applied"):
        row, line = out[description], src[description]
        assert row["ListCost"] == money(line["pricing_public_on_demand_cost"]) > 0
        assert row["ListUnitPrice"] == money(line["pricing_public_on_demand_rate"])
    covered = out["MySQL, db.r5.large reserved instance applied"]
    assert covered["ListCost"] == Decimal("6.0") and covered["BilledCost"] == 0
    fee = out["USD 0.15 hourly fee per MySQL, db.r5.large instance"]  # no public on-demand price for a fee
    assert fee["ListCost"] == fee["BilledCost"] == money(src[fee["ChargeDescription"]]["line_item_unblended_cost"])
    negation = out["SavingsPlanNegation used by AccountId : 444455556666"]  # lists what it cancels, at no price
    assert negation["ListCost"] == negation["BilledCost"] < 0 and negation["ListUnitPrice"] is None
    assert all(r["ListUnitPrice"] is None or r["ListUnitPrice"] >= 0 for r in out.values())  # FOCUS: non-negative
    gate_passes(wh)


def test_cur_and_export_give_the_same_list_cost(wh, tmp_path):
    source = charges()
    land(wh, CUR_CRED, write_cur(tmp_path / "cur", "cur2-parquet", source))
    land(wh, FOCUS_CRED, write_export(tmp_path / "focus", source))
    cur, export = focus_rows(wh, CUR_CRED), focus_rows(wh, FOCUS_CRED)
    assert set(export) <= set(cur) and len(export) == 8
    for description, row in export.items():
        assert (cur[description]["ListCost"], cur[description]["BilledCost"]) == (row["ListCost"], row["BilledCost"])
    assert focus_billed_per_period(wh, FOCUS_CRED) == billed_per_period(
        [r for r in source if r["line_item_line_item_type"] in ("Usage", "Tax")])
    gate_passes(wh)


def test_export_without_a_list_price_lists_the_billed_cost(wh, tmp_path):
    """The export path's half of the rule: a charged row without a list price (Microsoft documents ListCost 0 on
    Marketplace rows of FocusCost as a conformance gap) lists what was billed, as AWS's export does."""
    day = dt.date(2024, 3, 2)
    rows = day_charges("azure", day)
    (mkt,) = [r for r in rows if r["ChargeDescription"] == f"marketplace {day}"]
    mkt.update(ListCost="0", ListUnitPrice="0")
    header, shaped = azure_shape(rows, "1.0r2")
    (tmp_path / "part_0_0001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    land(wh, "cred_az_focus", {"source": f"file://{tmp_path}"}, "cloud/azure/cost/billing", (day, day))
    out = focus_rows(wh, "cred_az_focus")
    row = out[f"marketplace {day}"]
    assert row["ListCost"] == row["BilledCost"] == Decimal(mkt["BilledCost"])
    assert row["ListUnitPrice"] is None  # 0 x quantity is not the list cost
    # rows with a list price keep it; a row billed 0 keeps its list cost
    vm = out[f"vm {day}"]
    assert vm["ListCost"] == Decimal(next(r for r in rows if r["ChargeDescription"] == f"vm {day}")["ListCost"])
    assert out[f"covered {day}"]["ListCost"] == Decimal("2.4")
    gate_passes(wh, "cloud/azure/cost/billing")


# --------------------------------------------------------------------------------------------------
# Defect 2: InvoiceIssuerName from the CUR's invoicing entity
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", list(SHAPES))
def test_invoicing_entity_lands_in_the_raw_table(tmp_path, shape):
    source = charges()
    cred = write_cur(tmp_path / "cur", shape, source)
    out = aws.extract(ExtractContext("acme", PIPELINE, CUR_CRED, "run_a", *MAR, cred))
    raw = pa.Table.from_batches(list(out["aws_billing_raw"]),
                                schema=schemas.get("aws_billing_raw").arrow_schema(include_lineage=False))
    got = dict(zip(raw.column("line_item_id").to_pylist(), raw.column("invoicing_entity").to_pylist()))
    assert got == {r["identity_line_item_id"]: r["bill_invoicing_entity"] for r in source}
    assert all(aws.normalise(legacy) == cur2 for cur2, legacy in LEGACY.items())
    assert [LEGACY[c] for c in ("product_servicecode", "reservation_reservation_a_r_n", "line_item_line_item_type")] \
        == ["product/servicecode", "reservation/ReservationARN", "lineItem/LineItemType"]  # the dictionary's spellings


@pytest.mark.parametrize("shape", list(SHAPES))
def test_invoice_issuer_is_the_invoicing_entity(wh, tmp_path, shape):
    source = charges()
    land(wh, CUR_CRED, write_cur(tmp_path / "cur", shape, source))
    out, src = focus_rows(wh, CUR_CRED), by_description(source)
    assert {d: r["InvoiceIssuerName"] for d, r in out.items()} == \
        {d: r["bill_invoicing_entity"] for d, r in src.items()}
    # per issuer, the billed total is the fixture's: what each entity's invoices add up to
    expected: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in source:
        expected[(r["bill_invoicing_entity"], r["bill_invoice_id"])] += money(r["line_item_unblended_cost"])
    got = wh.query("SELECT InvoiceIssuerName AS issuer, InvoiceId AS invoice, SUM(BilledCost) AS billed "
                   "FROM `acme_prod.cost_data_standard_1_3` WHERE x_credential_id = @c GROUP BY 1, 2",
                   {"c": CUR_CRED})
    assert {(r["issuer"], r["invoice"]): r["billed"] for r in got} == dict(expected)
    assert {k[0] for k in expected} == {AWS_INC, AWS_EMEA}
    gate_passes(wh)


def test_invoice_issuer_falls_back_when_the_cur_has_no_invoicing_entity(wh, tmp_path):
    source = charges()
    source[0]["bill_invoicing_entity"] = ""  # an empty cell in a CUR 2.0 file
    land(wh, CUR_CRED, write_cur(tmp_path / "cur2", "cur2-csv.gz", source))
    (tmp_path / "legacy").mkdir()  # an older legacy CUR without the column at all
    (tmp_path / "legacy" / "report-00001.csv").write_bytes(legacy_csv(charges(), without=("bill_invoicing_entity",)))
    land(wh, "cred_legacy", {"source": f"file://{tmp_path / 'legacy'}"})
    default = provider_default_invoice_issuer()
    cur2 = focus_rows(wh, CUR_CRED)
    assert cur2[source[0]["line_item_line_item_description"]]["InvoiceIssuerName"] == default
    assert cur2[source[1]["line_item_line_item_description"]]["InvoiceIssuerName"] == AWS_INC
    assert {r["InvoiceIssuerName"] for r in focus_rows(wh, "cred_legacy").values()} == {default}
    gate_passes(wh)


# --------------------------------------------------------------------------------------------------
# Defect 4: one ServiceCategory per ServiceName
# --------------------------------------------------------------------------------------------------
def categories_per_service(wh, where: str = "TRUE", params: dict | None = None) -> dict[str, set]:
    rows = wh.query("SELECT DISTINCT ServiceName AS name, ServiceCategory AS category "
                    f"FROM `acme_prod.cost_data_standard_1_3` WHERE {where}", params or {})
    out: dict[str, set] = defaultdict(set)
    for r in rows:
        out[r["name"]].add(r["category"])
    return dict(out)


def test_one_service_category_per_service_name_on_both_aws_paths(wh, tmp_path):
    source = charges()
    land(wh, FOCUS_CRED, write_export(tmp_path / "focus", source))
    export = focus_rows(wh, FOCUS_CRED)
    # AWS's export says Compute for the instance and Storage for the EBS volume of the same service
    assert categories_per_service(wh, "x_credential_id = @c", {"c": FOCUS_CRED})[EC2] == {"Compute"}
    ebs = export["$0.08 per GB-month of General Purpose (gp3) provisioned storage"]
    assert (ebs["ServiceName"], ebs["ServiceCategory"], ebs["ServiceSubcategory"]) == \
        (EC2, "Compute", "Virtual Machines")
    # a service the map does not know keeps the export's category
    mkt = export["Acme Observability hosts"]
    assert (mkt["ServiceCategory"], mkt["ServiceSubcategory"]) == ("Management and Governance", "Observability")

    land(wh, CUR_CRED, write_cur(tmp_path / "cur", "cur2-csv.gz", source))
    for cred in (CUR_CRED, FOCUS_CRED):
        per_name = categories_per_service(wh, "x_credential_id = @c", {"c": cred})
        assert {name: cats for name, cats in per_name.items() if len(cats) > 1} == {}
    # a service the map knows has the same category on both paths; of one it does not know (a Marketplace
    # product) only the export says anything, the CUR has no category to give
    known = {r["service_key"] for r in service_map.load() if r["provider"] == "aws"}
    cur, src = focus_rows(wh, CUR_CRED), by_description(source)
    compared = 0
    for description, row in export.items():
        if src[description]["line_item_product_code"].lower() in known:
            compared += 1
            assert (cur[description]["ServiceName"], cur[description]["ServiceCategory"],
                    cur[description]["ServiceSubcategory"]) == \
                (row["ServiceName"], row["ServiceCategory"], row["ServiceSubcategory"])
    assert compared == 6
    gate_passes(wh)


def test_azure_meter_category_has_one_service_category(wh, tmp_path):
    """30_azure.sql: ServiceName is the MeterCategory; a meter category the map does not know fell back to each
    line's ConsumedService, so one ServiceName had the categories of every resource provider it was used through."""
    base = dict.fromkeys(MCA_HEADER, "")
    base.update(billingAccountId="ba-1", billingProfileId="bp-1", billingPeriodStartDate="2024-03-01",
                billingPeriodEndDate="2024-03-31", subscriptionId="sub-1", billingCurrency="EUR",
                chargeType="Usage", frequency="UsageBased", pricingModel="OnDemand", publisherType="Azure",
                meterCategory="Advanced Threat Protection", unitOfMeasure="1 Hour", quantity="24",
                unitPrice="0.02", PayGPrice="0.02", costInBillingCurrency="0.48")
    rows = [dict(base, date="2024-03-01", meterName="Standard Node", meterId="m-atp-1",
                 consumedService="Microsoft.Security"),
            dict(base, date="2024-03-01", meterName="Standard Storage Account", meterId="m-atp-2",
                 consumedService="Microsoft.Storage"),
            dict(base, date="2024-03-02", meterName="Standard Node", meterId="m-atp-1",
                 consumedService="Microsoft.Security")]
    (tmp_path / "actual.csv").write_bytes(mca_csv_bytes(rows))
    land(wh, "cred_az", {"source": f"file://{tmp_path}"}, "cloud/azure/cost/billing",
         (dt.date(2024, 3, 1), dt.date(2024, 3, 2)))
    cats = categories_per_service(wh, "x_credential_id = 'cred_az'")
    assert set(cats) == {"Advanced Threat Protection"} and len(cats["Advanced Threat Protection"]) == 1
    # the (category, subcategory) most of its lines map to, on every line
    azure_map = {r["service_key"]: (r["service_category"], r["service_subcategory"])
                 for r in service_map.load() if r["provider"] == "azure"}
    by_line = [azure_map[r["consumedService"].lower()] for r in rows]
    top = max({c for c, _ in by_line}, key=lambda c: sum(1 for x, _ in by_line if x == c))
    assert cats["Advanced Threat Protection"] == {top}
    got = wh.query("SELECT ServiceSubcategory AS s FROM `acme_prod.cost_data_standard_1_3` "
                   "WHERE x_credential_id = 'cred_az' ORDER BY ChargePeriodStart, SkuMeter")
    top_sub = max({s for c, s in by_line if c == top}, key=lambda s: sum(1 for x in by_line if x == (top, s)))
    assert [r["s"] for r in got] == [top_sub] * len(rows)
    assert focus_billed_per_period(wh, "cred_az") == {dt.date(2024, 3, 1): sum(
        Decimal(r["costInBillingCurrency"]) for r in rows)}
    gate_passes(wh, "cloud/azure/cost/billing")


def test_the_mapped_category_wins_over_more_lines_without_one(wh, tmp_path):
    """Lines of one ServiceName that the map cannot place (no product code in the CUR; no x_ServiceCode in the
    export) take the mapped category of the ServiceName's other lines, however many they are."""
    source = charges()
    ec2 = [r for r in source if r["line_item_product_code"] == "AmazonEC2" and r["line_item_line_item_type"] == "Usage"]
    cur_rows = [dict(r, line_item_product_code="") if i else r for i, r in enumerate(ec2 * 3)]
    for i, r in enumerate(cur_rows):
        r.update(identity_line_item_id=f"li-x{i}", line_item_line_item_description=f"{i} {r['line_item_line_item_description']}")
    land(wh, CUR_CRED, write_cur(tmp_path / "cur", "cur2-csv.gz", cur_rows))
    assert categories_per_service(wh, "x_credential_id = @c", {"c": CUR_CRED}) == {EC2: {"Compute"}}

    export = aws_focus_export(source)
    unkeyed = [dict(r, _service_key=None, ChargeDescription=f"{i} {r['ChargeDescription']}")
               for i, r in enumerate(export * 2) if r["SkuMeter"] == "EBS:VolumeUsage.gp3"]
    rows = [r for r in export if r["SkuMeter"] == "BoxUsage:m5.large"] + unkeyed
    header, shaped = aws_shape(rows, "1.2")
    (tmp_path / "focus").mkdir()
    (tmp_path / "focus" / "focus-00001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
    land(wh, FOCUS_CRED, {"source": f"file://{tmp_path / 'focus'}"})
    assert len(unkeyed) == 2 and {r["ServiceCategory"] for r in unkeyed} == {"Storage"}
    assert categories_per_service(wh, "x_credential_id = @c", {"c": FOCUS_CRED}) == {EC2: {"Compute"}}
    gate_passes(wh)
