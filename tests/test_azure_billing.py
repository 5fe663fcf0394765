"""cloud/azure/cost/billing: Cost Management export extractor (file:// and Azurite) and 30_azure.sql on DuckDB."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract.slices import bound

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import azure
from shared import focus, procedures, service_map
from tests import cloud_kit as kit
from tests.azurite import azurite  # noqa: F401 - fixture
from tests.cloud_kit import dsum

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "samples" / "azure"
SAMPLE = FIXTURES / "sample-anonymous-ea-export-dataset.csv"
PIPELINE = "cloud/azure/cost/billing"
CRED = "cred_az"
SEP = (dt.date(2023, 9, 1), dt.date(2023, 9, 30))
SAMPLE_TOTAL = Decimal("1.26136926505726")  # sum of CostInBillingCurrency in the sample (27 Usage rows, CAD)
MAR = (dt.date(2024, 3, 1), dt.date(2024, 3, 3))
RAW, TOTALS = "azure_billing_raw", "cloud_source_totals"


def run_extract(credential, start=SEP[0], end=SEP[1]):
    ctx = ExtractContext("acme", PIPELINE, CRED, "run_a", start, end, credential)
    return (*kit.extracted(ctx, RAW), ctx)


# MCA-style (camelCase) actual and amortized exports for March 2024 with a reservation, marketplace and refund.
MCA_HEADER = ["invoiceId", "billingAccountId", "billingAccountName", "billingProfileId", "billingProfileName",
              "billingPeriodStartDate", "billingPeriodEndDate", "date", "subscriptionId", "subscriptionName",
              "resourceGroupName", "ResourceId", "resourceLocation", "meterCategory", "meterSubCategory", "meterName",
              "meterId", "ProductId", "ProductName", "consumedService", "quantity", "unitOfMeasure", "unitPrice",
              "effectivePrice", "PayGPrice", "costInBillingCurrency", "billingCurrency", "chargeType", "frequency",
              "pricingModel", "benefitId", "benefitName", "reservationId", "publisherType", "publisherName", "tags"]
RI = "/providers/Microsoft.Capacity/reservationOrders/ro-1/reservations/r-1"
VM = "/subscriptions/sub-1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"


def mca_rows(amortized: bool):
    base = dict.fromkeys(MCA_HEADER, "")
    base.update(billingAccountId="ba-1", billingAccountName="Contoso", billingProfileId="bp-1",
                billingProfileName="Contoso BP", billingPeriodStartDate="2024-03-01",
                billingPeriodEndDate="2024-03-31", subscriptionId="sub-1", subscriptionName="prod",
                resourceGroupName="rg1", resourceLocation="West Europe", billingCurrency="EUR",
                chargeType="Usage", frequency="UsageBased", pricingModel="OnDemand", publisherType="Azure")

    def row(**kw):
        return dict(base, **kw)

    rows = [
        row(date="2024-03-01", ResourceId=VM, meterCategory="Virtual Machines", meterName="D2s v5", meterId="m-vm",
            ProductId="p-vm", ProductName="Virtual Machines Dsv5 Series", consumedService="Microsoft.Compute",
            quantity="10", unitOfMeasure="10 Hours", unitPrice="0.5", PayGPrice="0.6", costInBillingCurrency="5.0",
            tags='{"Env": "prod", "Team": "core"}'),
        row(date="2024-03-01", ResourceId=VM, meterCategory="Virtual Machines", meterName="D2s v5", meterId="m-vm",
            ProductId="p-vm", consumedService="Microsoft.Compute", quantity="24", unitOfMeasure="1 Hour",
            pricingModel="Reservation", benefitId=RI, benefitName="ri-vm", reservationId="r-1",
            costInBillingCurrency="0.9" if amortized else "0", effectivePrice="0.0375" if amortized else "0"),
        row(date="2024-03-02", meterCategory="Storage", meterName="Hot LRS", meterId="m-st", ProductId="p-st",
            consumedService="Microsoft.Storage", quantity="100", unitOfMeasure="1 GB/Month", unitPrice="0.02",
            PayGPrice="0.03", costInBillingCurrency="2.0"),
        row(date="2024-03-02", meterCategory="SaaS", meterName="Contoso Firewall", ProductId="p-mkt",
            ProductName="Contoso Firewall Plan", quantity="1", unitOfMeasure="1/Month", costInBillingCurrency="2.5",
            publisherType="Marketplace", publisherName="Contoso Ltd", frequency="Recurring"),
        row(date="2024-03-03", meterCategory="Virtual Machines", chargeType="Refund", quantity="0",
            costInBillingCurrency="-3.0", frequency="OneTime", ProductName="Refund of VM charge"),
        row(date="2024-03-20", meterCategory="Storage", meterName="Hot LRS", meterId="m-st", ProductId="p-st",
            quantity="1", unitOfMeasure="1 GB/Month", costInBillingCurrency="0.02"),  # outside a Mar 1-3 run
    ]
    if amortized:
        rows.append(row(date="2024-03-03", chargeType="UnusedReservation", pricingModel="Reservation",
                        benefitId=RI, benefitName="ri-vm", reservationId="r-1", meterCategory="Virtual Machines",
                        quantity="2", unitOfMeasure="1 Hour", costInBillingCurrency="0.1", subscriptionId=""))
    else:
        rows.append(row(date="2024-03-01", chargeType="Purchase", pricingModel="Reservation", benefitId=RI,
                        benefitName="ri-vm", reservationId="r-1", meterCategory="Virtual Machines",
                        ProductName="Reserved VM Instance, D2s v5, 1 Year", quantity="1", unitOfMeasure="1 Hour",
                        unitPrice="30", costInBillingCurrency="30.0", frequency="OneTime", subscriptionId="sub-1"))
    return rows


ACTUAL_MAR_1_3 = Decimal("5.0") + Decimal(0) + Decimal("2.0") + Decimal("2.5") - Decimal("3.0") + Decimal("30.0")
EFFECTIVE_MAR_1_3 = Decimal("5.0") + Decimal("0.9") + Decimal("2.0") + Decimal("2.5") - Decimal("3.0") + Decimal("0.1")


def csv_bytes(rows, header=MCA_HEADER) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def manifest(export, dataset, blobs, submitted, run_id):
    return json.dumps({
        "exportConfig": {"exportName": export, "resourceId": f"/providers/Microsoft.Billing/exports/{export}",
                         "dataVersion": "2023-12-01-preview", "type": dataset, "timeFrame": "MonthToDate"},
        "deliveryConfig": {"partitionData": True, "dataOverwriteBehavior": "OverwritePreviousReport",
                           "fileFormat": "Csv", "containerUri": "/x", "rootFolderPath": "exports"},
        "runInfo": {"executionType": "Scheduled", "submittedTime": submitted, "runId": run_id,
                    "startDate": "2024-03-01T00:00:00", "endDate": "2024-03-31T00:00:00"},
        "blobs": [{"blobName": b, "byteCount": 1} for b in blobs]}).encode()


def export_layout() -> dict[str, bytes]:
    """Blob name -> bytes: actual (CSV) and amortized (gzip CSV) exports, plus an older actual run."""
    act_old = "exports/act/20240301-20240331/202403020000/run-0/part_0_0001.csv"
    act = "exports/act/20240301-20240331/202403030000/run-1/part_0_0001.csv"
    amo = "exports/amo/20240301-20240331/202403030000/run-2/part_0_0001.csv.gz"
    stale = "exports/act/20240301-20240331/202403030000/run-1/part_0_0002.csv"  # not listed: never read
    return {
        act_old: csv_bytes(mca_rows(False)[:1]),
        act_old.rsplit("/", 1)[0] + "/manifest.json": manifest("act", "ActualCost", [act_old],
                                                               "2024-03-02T01:00:00Z", "run-0"),
        act: csv_bytes(mca_rows(False)),
        stale: b"garbage,not,a,cost,file\n",
        act.rsplit("/", 1)[0] + "/manifest.json": manifest("act", "ActualCost", [act], "2024-03-03T01:00:00Z", "run-1"),
        amo: gzip.compress(csv_bytes(mca_rows(True))),
        amo.rsplit("/", 1)[0] + "/manifest.json": manifest("amo", "AmortizedCost", [amo],
                                                           "2024-03-03T01:00:00Z", "run-2"),
    }


def write_layout(root: Path) -> None:
    for name, data in export_layout().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# --------------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------------
def test_extracts_the_ea_sample_with_exact_totals():
    raw, totals, _ = run_extract({"source": f"file://{FIXTURES}"})
    assert raw.num_rows == 27
    assert dsum(raw, "cost") == Decimal("1.261369264")  # 9-dp NUMERIC
    assert abs(dsum(raw, "cost") - SAMPLE_TOTAL) < Decimal("0.000001")
    assert sum(totals.column("source_rows").to_pylist()) == 27
    assert dsum(totals, "source_cost") == dsum(raw, "cost")
    assert totals.column("billing_period").to_pylist() == [dt.date(2023, 9, 1)]
    assert set(raw.column("usage_date").to_pylist()) == {dt.date(2023, 9, 2)}  # 9/2/2023 (MM/DD/YYYY)
    assert set(raw.column("billing_period_end").to_pylist()) == {dt.date(2023, 9, 30)}
    assert set(raw.column("cost_type").to_pylist()) == {"ActualCost"}
    assert set(raw.column("billing_currency").to_pylist()) == {"CAD"}
    # EA tags without the outer braces, keys lower-cased
    assert json.loads(raw.column("tags")[0].as_py()) == {"taga": "valueA", "tagb": "valueB", "tagc": "valueC"}
    units = set(zip(raw.column("unit_of_measure").to_pylist(), raw.column("pricing_block_size").to_pylist(),
                    raw.column("pricing_unit").to_pylist()))
    assert ("10K", Decimal(10000), "Units") in units and ("1 Hour", 1, "Hours") in units


@pytest.mark.parametrize(("uom", "expected"), [
    ("1 Hour", (1, "Hours")), ("10 Hours", (10, "Hours")), ("100 Hours", (100, "Hours")),
    ("1 GB/Month", (1, "GB-Months")), ("1 GB", (1, "GB")), ("10K", (10000, "Units")), ("1K", (1000, "Units")),
    ("1/Month", (1, "Units/Month")), ("10000 Transactions", (10000, "Transactions")), (None, (1, None)),
])
def test_units_to_focus_unit_format(uom, expected):
    assert azure.pricing_unit(uom) == (Decimal(expected[0]), expected[1])


def test_tags_quirks():
    assert azure.parse_tags('"a": "1","B": "2"') == {"a": "1", "b": "2"}
    assert azure.parse_tags('{"Env": "prod", "flag": ""}') == {"env": "prod", "flag": "true"}
    assert azure.parse_tags("not json") == {} and azure.parse_tags(None) == {}


def test_manifest_newest_run_and_both_datasets(tmp_path):
    write_layout(tmp_path)
    raw, totals, _ = run_extract({"source": f"file://{tmp_path}"}, *MAR)
    kinds = raw.column("cost_type").to_pylist()
    assert kinds.count("ActualCost") == 6 and kinds.count("AmortizedCost") == 6  # old run and stale part ignored
    assert dsum(totals, "source_cost") == ACTUAL_MAR_1_3  # the actual export's total
    assert sum(totals.column("source_rows").to_pylist()) == 6
    assert set(raw.column("billing_period_start").to_pylist()) == {dt.date(2024, 3, 1)}


def test_missing_required_columns_are_named(tmp_path):
    text = SAMPLE.read_text().replace("ChargeType", "Kind").replace("BillingCurrencyCode", "Money")
    kit.assert_missing_columns_named(run_extract, tmp_path / "export.csv", text, "charge_type", "billing_currency")


def test_renamed_ea_columns_are_mapped(tmp_path):
    text = SAMPLE.read_text().replace("CostInBillingCurrency", "Cost").replace("SubscriptionId", "SubscriptionGuid")
    text = text.replace(",Date,", ",UsageDate,").replace("ResourceId", "InstanceId")
    (tmp_path / "export.csv").write_text(text)
    raw, _, _ = run_extract({"source": f"file://{tmp_path}"})
    assert raw.num_rows == 27 and dsum(raw, "cost") == Decimal("1.261369264")
    assert raw.column("subscription_id").null_count == 0 and raw.column("resource_id").null_count == 0


def test_export_datasets():
    """FocusCost is read by jobs/cloud/focus_export.py (tests/test_focus_exports.py); other datasets are refused."""
    assert azure._dataset("FocusCost") == azure.FOCUS and azure._dataset("focus") == azure.FOCUS
    with pytest.raises(ExtractError, match="unknown Azure export dataset 'PriceSheet'"):
        azure._dataset("PriceSheet")


def test_azurite_manifest_driven(azurite):  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    container = service.get_container_client("costexports")
    if not container.exists():
        container.create_container()
    for name, data in export_layout().items():
        container.upload_blob(name, data, overwrite=True)
    cred = {"connection_string": azurite, "container": "costexports", "prefix": "exports"}
    raw, totals, _ = run_extract(cred, *MAR)
    assert raw.num_rows == 12 and dsum(totals, "source_cost") == ACTUAL_MAR_1_3
    files = set(raw.column("source_file").to_pylist())
    assert all(f.startswith("http://127.0.0.1:") and "/costexports/exports/" in f for f in files)
    assert not any("run-0" in f for f in files)
    # a truncated blob fails naming it
    amo = next(n for n in export_layout() if n.endswith(".csv.gz"))
    container.upload_blob(amo, export_layout()[amo][:-30], overwrite=True)
    with pytest.raises(ExtractError) as e:
        run_extract(cred, *MAR)
    assert amo in str(e.value)
    container.upload_blob(amo, export_layout()[amo], overwrite=True)
    # account_url + account key goes through the same reader
    url = azurite.split("BlobEndpoint=")[1].rstrip(";")
    raw2, _, _ = run_extract({"account_url": url, "container": "costexports", "prefix": "exports",
                              "account_key": {"account_name": "devstoreaccount1",
                                              "account_key": azurite.split("AccountKey=")[1].split(";")[0]}}, *MAR)
    assert raw2.num_rows == 12


# --------------------------------------------------------------------------------------------------
# Procedure
# --------------------------------------------------------------------------------------------------
land_and_convert, focus_by_period, source_by_period = bound(PIPELINE, CRED)


def test_sample_to_focus_reconciles_and_passes_gate(rt, acme):
    wh = rt.warehouse
    service_map.sync(wh)
    counts = land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *SEP)
    assert counts == {RAW: 27, "cloud_focus_raw": 0, TOTALS: 1}
    per, src = focus_by_period(wh), source_by_period(wh)
    n, billed, effective = per[dt.date(2023, 9, 1)]
    assert n == 27 and src[dt.date(2023, 9, 1)][0] == 27
    assert billed == src[dt.date(2023, 9, 1)][1] == effective
    assert round(billed, 2) == round(SAMPLE_TOTAL, 2)
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    assert {r["ChargeCategory"] for r in rows} == {"Usage"}
    assert {r["ProviderName"] for r in rows} == {"Microsoft"} == {r["ServiceProviderName"] for r in rows}
    assert {r["PricingUnit"] for r in rows} <= {"Hours", "GB", "Units"}
    assert {r["PricingCategory"] for r in rows} == {"Standard", "Dynamic"}
    svc = {r["ServiceName"]: (r["ServiceCategory"], r["ServiceSubcategory"]) for r in rows}
    assert svc["Virtual Machines"] == ("Compute", "Virtual Machines")
    assert svc["Event Hubs"] == ("Analytics", "Streaming Analytics")
    assert {r["SubAccountType"] for r in rows} == {"Subscription"}
    r10k = next(r for r in rows if r["PricingUnit"] == "Units" and r["SkuMeter"] == "Class 2 Operations")
    assert r10k["PricingQuantity"] == Decimal(129)  # 0.0129 x 10K
    assert json.loads(rows[0]["Tags"]) == {"taga": "valueA", "tagb": "valueB", "tagc": "valueC"}
    kit.assert_gate_passes_and_rerun_changes_nothing(
        wh, PIPELINE, lambda: land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *SEP, run_id="run_b"))


def test_actual_plus_amortized_commitments_marketplace_refund(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    write_layout(tmp_path)
    land_and_convert(wh, {"source": f"file://{tmp_path}"}, *MAR)
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    assert len(rows) == 7  # 6 amortized rows + the actual reservation purchase
    per, src = focus_by_period(wh), source_by_period(wh)
    assert per[dt.date(2024, 3, 1)][1] == ACTUAL_MAR_1_3 == src[dt.date(2024, 3, 1)][1]
    assert per[dt.date(2024, 3, 1)][2] == EFFECTIVE_MAR_1_3
    by = {(r["ChargeCategory"], r["CommitmentDiscountStatus"], r["ServiceProviderName"], r["ChargeFrequency"]): r
          for r in rows}
    purchase = by[("Purchase", None, "Microsoft", "One-Time")]
    assert (purchase["BilledCost"], purchase["EffectiveCost"]) == (Decimal(30), Decimal(0))
    assert purchase["CommitmentDiscountType"] == "Reservation" and purchase["CommitmentDiscountId"] == RI
    used = by[("Usage", "Used", "Microsoft", "Usage-Based")]
    assert (used["BilledCost"], used["EffectiveCost"], used["PricingCategory"]) == (0, Decimal("0.9"), "Committed")
    unused = by[("Usage", "Unused", "Microsoft", "Usage-Based")]
    assert unused["ConsumedQuantity"] is None and unused["SubAccountId"] is None and unused["BilledCost"] == 0
    mkt = by[("Usage", None, "Contoso Ltd", "Recurring")]
    assert mkt["PublisherName"] == "Contoso Ltd" and mkt["HostProviderName"] == "Microsoft"
    assert mkt["PricingUnit"] == "Units/Month"
    refund = by[("Credit", None, "Microsoft", "One-Time")]
    assert refund["BilledCost"] == refund["EffectiveCost"] == refund["ContractedCost"] == Decimal(-3)
    vm = next(r for r in rows if r["PricingUnit"] == "Hours" and r["BilledCost"] == 5)
    assert vm["PricingQuantity"] == 100 and vm["ListUnitPrice"] == Decimal("0.06") and vm["ListCost"] == 6
    assert vm["ContractedUnitPrice"] == Decimal("0.05") and vm["ContractedCost"] == 5
    assert json.loads(vm["Tags"]) == {"env": "prod", "team": "core"}
    assert vm["BillingAccountId"] == "bp-1" and vm["RegionId"] == "westeurope" and vm["ResourceName"] == "vm1"
    gb = next(r for r in rows if r["PricingUnit"] == "GB-Months")
    assert gb["ServiceCategory"] == "Storage"
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()


def test_azure_service_map_is_focus_1_3():
    rows = [r for r in service_map.load() if r["provider"] == "azure"]
    assert len(rows) >= 150
    keys = {r["service_key"] for r in rows}
    assert {"microsoft.compute", "virtual machines", "storage"} <= keys
