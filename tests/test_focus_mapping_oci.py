"""OCI FOCUS reports (`FOCUS Reports/`, FOCUS 1.0 columns plus oci_* extras) -> FOCUS 1.3, end to end: the
report's own FOCUS columns come out as the report has them; only what FOCUS 1.0 lacks is derived.

The fixture (tests/fixtures/oci_focus, see its README) is in OCI's header shape: `Region` (not RegionId),
`Provider`/`Publisher`/`InvoiceIssuer`, `ServiceSubCategory`, `UsageQuantity`/`UsageUnit` beside
ConsumedQuantity/ConsumedUnit, and the trailing blank in `PricingCurrencyEffectiveCost `. Every expected value
below is read from the fixture file here, with Decimal, never from the project's code.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from shared import convert, focus, service_map
from tests import cloud_kit as kit

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "oci_focus"
REPORT = FIXTURE / "FOCUS Reports" / "2024" / "10" / "01" / "0001000001873402-00001.csv"
PIPELINE = "cloud/oci/cost/billing"
CRED = "cred_oci"
RANGE = (dt.date(2024, 9, 30), dt.date(2024, 10, 1))


def report_rows() -> list[dict]:
    with REPORT.open(newline="", encoding="utf-8") as fh:
        return [{k.strip(): (v or None) for k, v in r.items()} for r in csv.DictReader(fh)]


def ts(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def num(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def utc(v: dt.datetime | None) -> dt.datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)


def key(start, description, category, charge_class, billed) -> tuple:
    return (utc(start) if isinstance(start, dt.datetime) else ts(start), description, category, charge_class,
            Decimal(billed))


@pytest.fixture()
def converted(rt, acme):
    """(report row, FOCUS 1.3 row) pairs of the fixture converted for 2024-09-30..2024-10-01, and the warehouse."""
    wh = rt.warehouse
    service_map.sync(wh)
    kit.land_and_convert(wh, PIPELINE, CRED, {"source": f"file://{FIXTURE}"}, *RANGE)
    out = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    by_key = {key(r["ChargePeriodStart"], r["ChargeDescription"], r["ChargeCategory"], r["ChargeClass"],
                  r["BilledCost"]): r for r in out}
    src = report_rows()
    assert len(out) == len(by_key) == len(src)
    pairs = [(s, by_key[key(s["ChargePeriodStart"], s["ChargeDescription"], s["ChargeCategory"], s["ChargeClass"],
                            s["BilledCost"])]) for s in src]
    return pairs, wh


def test_billed_cost_per_billing_period_is_the_reports_own(converted):
    pairs, wh = converted
    expected: dict[dt.date, Decimal] = {}
    for s, _ in pairs:
        period = ts(s["BillingPeriodStart"]).date()
        expected[period] = expected.get(period, Decimal(0)) + Decimal(s["BilledCost"])
    # usage of 2024-09-30 23:00 is billed in October: the report's period, not the usage month
    assert expected == {dt.date(2024, 9, 1): Decimal("0.05"), dt.date(2024, 10, 1): Decimal("0.490")}
    got = {p: billed for p, (_, billed, _) in kit.focus_by_period(wh, PIPELINE).items()}
    assert got == expected
    assert {p: cost for p, (_, cost) in kit.source_by_period(wh, PIPELINE).items()} == expected
    params = {"org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": CRED, "start_date": RANGE[0],
              "end_date": RANGE[1]}
    checks = convert.reconcile_cloud(wh, "acme_prod", params)
    assert [(c["billing_period"], c["ok"]) for c in checks] == [(p, True) for p in sorted(expected)]


def test_billing_and_charge_periods_are_the_reports(converted):
    for s, r in converted[0]:
        assert (utc(r["BillingPeriodStart"]), utc(r["BillingPeriodEnd"])) == (
            ts(s["BillingPeriodStart"]), ts(s["BillingPeriodEnd"])), s["oci_ReferenceNumber"]
        assert (utc(r["ChargePeriodStart"]), utc(r["ChargePeriodEnd"])) == (
            ts(s["ChargePeriodStart"]), ts(s["ChargePeriodEnd"])), s["oci_ReferenceNumber"]


def test_effective_cost_is_the_reports_own(converted):
    pairs = converted[0]
    for s, r in pairs:
        assert r["EffectiveCost"] == num(s["EffectiveCost"]), s["oci_ReferenceNumber"]
        assert r["PricingCurrencyEffectiveCost"] == num(s["PricingCurrencyEffectiveCost"]), s["oci_ReferenceNumber"]
    purchase = next(r for s, r in pairs if s["ChargeCategory"] == "Purchase")
    assert (purchase["BilledCost"], purchase["EffectiveCost"]) == (Decimal("0.537"), Decimal(0))


def test_list_and_contracted_costs_and_prices_are_the_reports(converted):
    for s, r in converted[0]:
        ref = s["oci_ReferenceNumber"]
        assert (r["BilledCost"], r["ListCost"], r["ContractedCost"]) == (
            num(s["BilledCost"]), num(s["ListCost"]), num(s["ContractedCost"])), ref
        # every price in the fixture reproduces its cost x PricingQuantity, so each is kept as reported
        assert (r["ListUnitPrice"], r["ContractedUnitPrice"]) == (num(s["ListUnitPrice"]),
                                                                  num(s["ContractedUnitPrice"])), ref
        assert (r["PricingCurrencyListUnitPrice"], r["PricingCurrencyContractedUnitPrice"]) == (
            num(s["PricingCurrencyListUnitPrice"]), num(s["PricingCurrencyContractedUnitPrice"])), ref
        assert (r["PricingQuantity"], r["PricingCategory"]) == (num(s["PricingQuantity"]), s["PricingCategory"]), ref
        usage = s["ChargeCategory"] == "Usage"
        assert r["ConsumedQuantity"] == (num(s["ConsumedQuantity"]) if usage else None), ref
        assert r["PricingCurrency"] == r["BillingCurrency"] == s["BillingCurrency"], ref


def test_billing_account_is_the_reports_and_the_tenancy_is_the_sub_account(converted):
    for s, r in converted[0]:
        assert (r["BillingAccountId"], r["BillingAccountName"]) == (s["BillingAccountId"], s["BillingAccountName"])
        assert s["BillingAccountId"] != s["SubAccountId"]
        # the report leaves BillingAccountType empty: that one is derived
        assert s["BillingAccountType"] is None and r["BillingAccountType"] == "Billing Account"


def test_sub_account_is_the_reports(converted):
    for s, r in converted[0]:
        assert (r["SubAccountId"], r["SubAccountName"], r["SubAccountType"]) == (
            s["SubAccountId"], s["SubAccountName"], s["SubAccountType"]), s["oci_ReferenceNumber"]


def test_region_and_availability_zone_are_the_reports(converted):
    pairs = converted[0]
    for s, r in pairs:
        assert (r["RegionId"], r["RegionName"], r["AvailabilityZone"]) == (
            s["Region"], s["RegionName"], s["AvailabilityZone"]), s["oci_ReferenceNumber"]
    assert {r["RegionId"] for _, r in pairs} == {"us-ashburn-1", "eu-frankfurt-1", None}


def test_resource_sku_charge_and_invoice_columns_are_the_reports(converted):
    for s, r in converted[0]:
        ref = s["oci_ReferenceNumber"]
        assert (r["ResourceId"], r["ResourceName"], r["ResourceType"]) == (
            s["ResourceId"], s["ResourceName"], s["ResourceType"]), ref
        assert (r["SkuId"], r["SkuPriceId"]) == (s["SkuId"], s["SkuPriceId"]), ref
        # SkuMeter is the report's; derived (the description) only where the report has a SkuId but no meter
        assert r["SkuMeter"] == (s["SkuMeter"] or (s["ChargeDescription"] if s["SkuId"] else None)), ref
        assert (r["ChargeCategory"], r["ChargeClass"], r["ChargeDescription"], r["ChargeFrequency"]) == (
            s["ChargeCategory"], s["ChargeClass"], s["ChargeDescription"], s["ChargeFrequency"]), ref
        assert r["InvoiceId"] == s["InvoiceId"], ref
        assert (r["InvoiceIssuerName"], r["PublisherName"]) == (s["InvoiceIssuer"], s["Publisher"]), ref
        assert (r["CapacityReservationId"], r["CapacityReservationStatus"]) == (None, None), ref


def test_commitment_columns_are_the_reports(converted):
    pairs = converted[0]
    names = ("CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
             "CommitmentDiscountStatus", "CommitmentDiscountType", "CommitmentDiscountUnit")
    for s, r in pairs:
        assert tuple(r[n] for n in names) == tuple(s[n] for n in names), s["oci_ReferenceNumber"]
        assert r["CommitmentDiscountQuantity"] == num(s["CommitmentDiscountQuantity"]), s["oci_ReferenceNumber"]
    assert sum(1 for _, r in pairs if r["CommitmentDiscountId"]) == 2


def test_service_columns_and_tags_are_the_reports(converted):
    pairs = converted[0]
    # a service organizations.service_category_map has no row for keeps the report's category pair
    agents = next(r for s, r in pairs if s["ServiceName"] == "GENERATIVE_AI_AGENTS")
    assert (agents["ServiceCategory"], agents["ServiceSubcategory"]) == ("AI and Machine Learning", "Generative AI")
    for s, r in pairs:
        ref = s["oci_ReferenceNumber"]
        assert (r["ServiceName"], r["ServiceCategory"]) == (s["ServiceName"], s["ServiceCategory"]), ref
        # the report gives no subcategory for the credits line: the category's Other is derived
        assert r["ServiceSubcategory"] == (s["ServiceSubCategory"] or f"Other ({s['ServiceCategory']})"), ref
        tags = {k.lower(): v for k, v in json.loads(s["Tags"]).items()} if s["Tags"] else None
        assert (json.loads(r["Tags"]) if r["Tags"] else None) == tags, ref


def test_only_focus_1_3_additions_are_derived_and_the_gate_passes(converted):
    pairs, wh = converted
    for _, r in pairs:
        assert r["HostProviderName"] and r["ServiceProviderName"]
        assert all(r[c] is None for c in ("AllocatedMethodId", "AllocatedResourceId", "ContractApplied"))
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()
