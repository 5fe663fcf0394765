"""Azure cost details and FocusCost exports -> FOCUS 1.3: commitment purchases and list costs (issue 13, defects 6
and 7), on an EA (schema 2024-08-01) actual + amortized export pair in tests/fixtures/azure_ea_commitments, laid
out as Cost Management writes it (manifest.json per run). April 1-3 2024, USD: a one-time reservation purchase, a
monthly savings-plan purchase, a refunded older reservation, the usage both cover (PayGPrice 0 on the
reservation's rows, as EA writes it), their unused hours, on-demand usage and a Marketplace plan purchase.

Every expected amount is summed here from the fixture files with Decimal, never by the project's code."""
from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from jobs.base import ExtractContext
from shared import focus, service_map
from tests import cloud_kit as kit
from tests import test_focus_exports as fx

PIPELINE, CRED = "cloud/azure/cost/billing", "cred_az_ea"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "azure_ea_commitments"
ACTUAL_ONLY = FIXTURE / "exports" / "ea-actual"
APR = (dt.date(2024, 4, 1), dt.date(2024, 4, 3))
PERIOD = dt.date(2024, 4, 1)
COMMITMENT_MODELS = ("Reservation", "SavingsPlan")


def fixture_rows(dataset: str) -> list[dict]:
    """The export's CSV rows ('actual' or 'amortized'), each with its fixture tag."""
    out = []
    for path in sorted((FIXTURE / "exports" / f"ea-{dataset}").rglob("*.csv")):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                r["tag"] = json.loads("{" + r["Tags"] + "}")["fixture"]
                out.append(r)
    return out


def money(text: str) -> Decimal:
    return Decimal(text) if text.strip() else Decimal(0)


def is_commitment_purchase(r: dict) -> bool:
    """What FOCUS calls a purchase covering future charges: the commitment's own Purchase (or its Refund)."""
    return r["ChargeType"] in ("Purchase", "Refund") and r["PricingModel"] in COMMITMENT_MODELS


def total(rows: list[dict], keep=lambda r: True) -> Decimal:
    return sum((money(r["CostInBillingCurrency"]) for r in rows if keep(r)), Decimal(0))


def convert(wh, folder: Path) -> dict[str, dict]:
    """Land and convert the export(s) under `folder`; the FOCUS rows by fixture tag (the gate must pass)."""
    service_map.sync(wh)
    kit.land_and_convert(wh, PIPELINE, CRED, {"source": f"file://{folder}"}, *APR)
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    out = {json.loads(r["Tags"])["fixture"]: r for r in rows}
    assert len(out) == len(rows)
    return out


def assert_billed_unchanged(wh, actual: list[dict]) -> None:
    """SUM(BilledCost) of the period is the actual export's total, as cloud_source_totals recorded it."""
    (n, billed, _), = kit.focus_by_period(wh, PIPELINE).values()
    (_, source), = kit.source_by_period(wh, PIPELINE).values()
    assert billed == source == total(actual) == Decimal("891.13806416")


def extract_warnings(folder: Path) -> list[str]:
    ctx = ExtractContext("acme", PIPELINE, CRED, "run_w", *APR, {"source": f"file://{folder}"})
    kit.extracted(ctx, "azure_billing_raw")  # the warning is about what landed
    return ctx.warnings


# --------------------------------------------------------------------------------------------------
# Defect 6: a commitment purchase that covers future charges has EffectiveCost 0
# --------------------------------------------------------------------------------------------------
def test_actual_and_amortized_purchases_and_refunds_have_no_effective_cost(rt, acme):
    """The finops-toolkit recipe: the amortized rows carry the commitment's cost (covered usage and unused
    hours), so the actual purchase and refund rows carry none; SUM(EffectiveCost) is the amortized total."""
    wh = rt.warehouse
    actual, amortized = fixture_rows("actual"), fixture_rows("amortized")
    out = convert(wh, FIXTURE)
    assert len(out) == len(amortized) + sum(map(is_commitment_purchase, actual))
    assert_billed_unchanged(wh, actual)
    (_, _, effective), = kit.focus_by_period(wh, PIPELINE).values()
    assert effective == total(amortized, lambda r: not is_commitment_purchase(r)) == Decimal("77.53806416")
    for r in actual:
        if is_commitment_purchase(r):
            row = out[r["tag"]]
            assert (row["BilledCost"], row["EffectiveCost"]) == (money(r["CostInBillingCurrency"]), 0), r["tag"]
            assert row["ChargeCategory"] == "Purchase" and row["CommitmentDiscountId"] == r["benefitId"]
            assert row["PricingCategory"] == "Standard", r["tag"]  # the purchase of a commitment is not Committed
    # a refunded reservation is a correction of its purchase (FOCUS 1.3 ChargeClass), not a credit
    refund = out["ri-refund-02"]
    assert (refund["ChargeClass"], refund["BilledCost"], refund["PricingCategory"]) == ("Correction", -120, "Standard")
    assert refund["CommitmentDiscountQuantity"] is None and refund["CommitmentDiscountUnit"] is None
    # a Marketplace plan is a purchase of its own month, not a commitment discount: its cost stays effective
    plan = out["marketplace-01"]
    assert (plan["ChargeCategory"], plan["CommitmentDiscountId"], plan["EffectiveCost"]) == ("Purchase", None, 50)
    # the amortized cost sits on the usage the commitments covered and on their unused hours
    assert out["ri-used-02"]["EffectiveCost"] == Decimal("2.40") and out["ri-used-02"]["BilledCost"] == 0
    assert (out["sp-unused-03"]["EffectiveCost"], out["sp-unused-03"]["CommitmentDiscountStatus"]) == (
        Decimal("1.40"), "Unused")


def test_actual_only_purchases_have_no_effective_cost(rt, acme):
    """Without an amortized export the covered usage costs 0 and no unused rows exist: FOCUS still requires
    EffectiveCost 0 on the purchases, so the period's EffectiveCost lacks the commitments (see 30_azure.sql)."""
    wh = rt.warehouse
    actual = fixture_rows("actual")
    out = convert(wh, ACTUAL_ONLY)
    assert len(out) == len(actual)
    assert_billed_unchanged(wh, actual)
    (_, _, effective), = kit.focus_by_period(wh, PIPELINE).values()
    assert effective == total(actual, lambda r: not is_commitment_purchase(r)) == Decimal("13.13806416") + 50
    purchases = {t: r for t, r in out.items() if r["ChargeCategory"] == "Purchase" and r["CommitmentDiscountId"]}
    assert set(purchases) == {"ri-purchase-01", "sp-purchase-01", "ri-refund-02"}
    assert {r["EffectiveCost"] for r in purchases.values()} == {0}
    sp = purchases["sp-purchase-01"]
    assert (sp["CommitmentDiscountType"], sp["CommitmentDiscountCategory"], sp["ChargeFrequency"]) == (
        "Savings Plan", "Spend", "Recurring")
    assert (sp["BilledCost"], sp["CommitmentDiscountQuantity"], sp["CommitmentDiscountUnit"]) == (72, 72, "USD")
    assert out["marketplace-01"]["EffectiveCost"] == 50
    # the run says where the commitments' effective cost went
    n = sum(map(is_commitment_purchase, actual))
    assert extract_warnings(ACTUAL_ONLY) == [
        f"billing period {PERIOD}: {n} reservation/savings-plan purchase row(s) and no AmortizedCost export: FOCUS "
        "gives their EffectiveCost 0 and only amortized data spreads it over the usage; export AmortizedCost (or "
        "FocusCost) of this scope too"]
    assert extract_warnings(FIXTURE) == []


# --------------------------------------------------------------------------------------------------
# Defect 7: ListCost from the list price, never 0 beside a positive contracted cost
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder, datasets", [(FIXTURE, ("amortized", "actual")), (ACTUAL_ONLY, ("actual",))],
                         ids=["actual+amortized", "actual-only"])
def test_list_cost_of_covered_usage_and_purchases(rt, acme, folder, datasets):
    wh = rt.warehouse
    out = convert(wh, folder)
    landed = {r["tag"]: r for d in reversed(datasets) for r in fixture_rows(d) if r["tag"] in out}
    assert set(landed) == set(out)
    for tag, r in landed.items():
        row = out[tag]
        qty, payg, unit = money(r["Quantity"]), money(r["PayGPrice"]), money(r["UnitPrice"])
        if payg:  # the row's list price
            assert row["ListCost"] == payg * qty and row["ListUnitPrice"] == payg, tag
        elif unit and row["ChargeClass"] is None:
            # PayGPrice 0 (EA on reservation rows and purchases): the enrollment's unit price, the price the
            # row would have had without the commitment, is the best list price the row offers
            assert row["ListCost"] == unit * qty == row["ContractedCost"] != 0, tag
            assert row["ListUnitPrice"] * row["PricingQuantity"] == row["ListCost"], tag
        if row["ChargeCategory"] in ("Usage", "Purchase") and row["ContractedCost"] > 0:
            assert row["ListCost"] > 0, tag
    covered = [t for t in out if t.startswith("ri-used")]
    assert len(covered) == 3 and {out[t]["ListUnitPrice"] for t in covered} == {Decimal("0.18")}
    assert out["ri-purchase-01"]["ListCost"] == 876 and out["ri-refund-02"]["ListCost"] == -120


# --------------------------------------------------------------------------------------------------
# The FocusCost export path: Cost Management's savings-plan purchases with an EffectiveCost
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.0r2", "1.2-preview"])
def test_focus_export_commitment_purchases_have_no_effective_cost(rt, acme, tmp_path, version):
    """FocusCost exports have carried savings-plan purchases with EffectiveCost = BilledCost although the
    covered usage carries the amortized cost (microsoft/finops-toolkit#1092): the purchase's EffectiveCost
    (and PricingCurrencyEffectiveCost) become 0; BilledCost stays as exported."""
    wh = rt.warehouse
    service_map.sync(wh)
    rows = fx.charges("azure", *fx.MAR_APR)
    wanted = fx.by_period(rows, "EffectiveCost")  # the export's intent: purchases 0, amortized usage
    fees = [r for r in rows if r["ChargeDescription"].startswith("fee ")]
    assert fees and all(r["CommitmentDiscountId"] and r["ChargeCategory"] == "Purchase" for r in fees)
    for r in fees:
        r["EffectiveCost"] = r["BilledCost"]
        r["PricingCurrencyEffectiveCost"] = r["BilledCost"]
    header, shaped = fx.azure_shape(rows, version)
    (tmp_path / "focus.csv").write_bytes(fx.csv_bytes(header, shaped))
    kit.land_and_convert(wh, PIPELINE, CRED, {"source": f"file://{tmp_path}", "dataset": "focus"}, *fx.MAR_APR)
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()
    per = kit.focus_by_period(wh, PIPELINE)
    assert {p: b for p, (_, b, _) in per.items()} == fx.by_period(rows)
    assert {p: e for p, (_, _, e) in per.items()} == wanted
    got = wh.query("SELECT EffectiveCost, PricingCurrencyEffectiveCost, BilledCost FROM "
                   "`acme_prod.cost_data_standard_1_3` WHERE ChargeCategory = 'Purchase' AND CommitmentDiscountId "
                   "IS NOT NULL AND x_pipeline_id = @p", {"p": PIPELINE})
    assert len(got) == len(fees) + 1  # the fees and the reservation purchase of April 1
    assert {(r["EffectiveCost"], r["PricingCurrencyEffectiveCost"]) for r in got} == {(0, 0)}
