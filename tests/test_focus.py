"""FOCUS 1.3: the column model, the generated table schema and the per-row data-quality gate."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import pyarrow as pa
import pytest

from shared import focus
from shared.schemas import get as get_schema
from shared.warehouse.dialect import parse_bigquery
from shared.warehouse.duckdb import DuckDBWarehouse

UTC = dt.UTC
D = Decimal


def ts(day: int, month: int = 1) -> dt.datetime:
    return dt.datetime(2025, month, day, tzinfo=UTC)


def _lineage(**over) -> dict:
    row = {
        "x_org_slug": "acme",
        "x_pipeline_id": "genai/openai/usage",
        "x_credential_id": "cred-1",
        "x_pipeline_run_date": dt.date(2025, 1, 1),
        "x_run_id": "run-1",
        "x_ingested_at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        "x_ingestion_date": dt.date(2025, 1, 2),
    }
    row.update(over)
    return row


def _common() -> dict:
    return {
        "BillingAccountId": "org-acme",
        "BillingAccountName": "Acme OpenAI Org",
        "ChargeClass": None,
        "BillingCurrency": "USD",
        "BillingPeriodStart": ts(1),
        "BillingPeriodEnd": ts(1, 2),
        "ChargePeriodStart": ts(1),
        "ChargePeriodEnd": ts(2),
        "InvoiceIssuerName": "OpenAI",
        "ProviderName": "OpenAI",
        "PublisherName": "OpenAI",
        "ServiceProviderName": "OpenAI",
        "HostProviderName": "OpenAI",
        "ServiceName": "OpenAI API",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": "proj_abc",
        "SubAccountName": "Default project",
        "PricingCurrency": "USD",
        **_lineage(),
    }


def _in_pricing_currency(row: dict) -> dict:
    """Prices are in the billing currency: the PricingCurrency* columns repeat the billing ones."""
    row["PricingCurrencyEffectiveCost"] = row["EffectiveCost"]
    row["PricingCurrencyListUnitPrice"] = row.get("ListUnitPrice")
    row["PricingCurrencyContractedUnitPrice"] = row.get("ContractedUnitPrice")
    return row


def _charge(category: str, description: str, frequency: str, cost: D, columns: dict) -> dict:
    """A charge of `_common()` with `columns`, costing `cost` in each of the four cost columns, priced in the billing
    currency."""
    return _in_pricing_currency({
        **_common(), "ChargeCategory": category, "ChargeDescription": description, "ChargeFrequency": frequency,
        "ListCost": cost, "ContractedCost": cost, "BilledCost": cost, "EffectiveCost": cost, **columns})


def genai_input() -> dict:
    """1.28M gpt-4o input tokens at $2.50 / 1M tokens, priced per token."""
    return _charge("Usage", "gpt-4o input tokens", "Usage-Based", D("3.2"), {
        "ConsumedQuantity": D("1280000"),
        "ConsumedUnit": "Tokens",
        "PricingQuantity": D("1280000"),
        "PricingUnit": "Tokens",
        "PricingCategory": "Standard",
        "ListUnitPrice": D("0.0000025"),
        "ContractedUnitPrice": D("0.0000025"),
        "SkuId": "gpt-4o-input",
        "SkuPriceId": "gpt-4o-input-standard",
        "SkuMeter": "Input Tokens",
        "Tags": '{"team":"ml","note":"a: {b}"}',
        "x_cost_source": "computed",
    })


def genai_output() -> dict:
    """250k output tokens priced per 1000 tokens, with a Spend commitment discount applied."""
    row = genai_input()
    row.update(
        ChargeDescription="gpt-4o output tokens",
        ConsumedQuantity=D("250000"),
        ConsumedUnit="Tokens",
        PricingQuantity=D("250"),
        PricingUnit="1000 Tokens",
        ListUnitPrice=D("0.01"),
        ContractedUnitPrice=D("0.008"),
        ListCost=D("2.5"),
        ContractedCost=D("2"),
        BilledCost=D("2"),
        EffectiveCost=D("2"),
        SkuId="gpt-4o-output",
        SkuPriceId="gpt-4o-output-standard",
        SkuMeter="Output Tokens",
        CommitmentDiscountId="commit-2025",
        CommitmentDiscountCategory="Spend",
        CommitmentDiscountName="2025 spend commitment",
        CommitmentDiscountType="Scale Tier",
        CommitmentDiscountStatus="Used",
        CommitmentDiscountQuantity=D("2"),
        CommitmentDiscountUnit="USD",
        PricingCategory="Committed",
        RegionId="us",
        RegionName="United States",
        Tags=None,
        x_cost_source="billed",
    )
    return _in_pricing_currency(row)


def tax_row() -> dict:
    return _charge("Tax", "Sales tax", "Recurring", D("0.52"), {
        "ChargePeriodEnd": ts(1, 2),
        "ServiceName": "Tax",
        "ServiceCategory": "Other",
        "ServiceSubcategory": "Other (Other)",
        "HostProviderName": None,
        "x_cost_source": "billed",
    })


def credit_row() -> dict:
    return _charge("Credit", "Promotional credit", "One-Time", D("-1"), {"x_cost_source": "billed"})


def valid_rows() -> list[dict]:
    return [genai_input(), genai_output(), tax_row(), credit_row()]


def arrow(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=focus.table_schema(relaxed=True).arrow_schema())


def gate(rows: list[dict]) -> focus.FocusReport:
    return focus.check_arrow(arrow(rows))


# ---------------------------------------------------------------------------------------------
# The column model and the table schema
# ---------------------------------------------------------------------------------------------
def test_65_columns_in_spec_order_with_reference_levels():
    names = [c.name for c in focus.FOCUS_COLUMNS]
    assert len(names) == 65 == len(set(names))
    assert names == sorted(names)  # the spec table is alphabetical
    assert Counter(c.level for c in focus.FOCUS_COLUMNS) == {"M": 23, "R": 3, "C": 39}
    recommended = {c.name for c in focus.FOCUS_COLUMNS if c.level == "R"}
    assert recommended == {"ChargeFrequency", "InvoiceId", "ServiceSubcategory"}
    new_in_13 = {"ServiceProviderName", "HostProviderName", "AllocatedMethodId", "AllocatedMethodDetails",
                 "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags", "ContractApplied"}
    assert new_in_13 <= set(names)
    assert focus.column("ServiceProviderName").level == focus.column("HostProviderName").level == "M"
    assert {c.name for c in focus.FOCUS_COLUMNS if c.deprecated} == {"ProviderName", "PublisherName"}


def test_types_and_required_modes():
    assert set(focus.REQUIRED_COLUMNS) == {
        "BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
        "ChargeCategory", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost", "EffectiveCost",
        "InvoiceIssuerName", "ListCost", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
        "ServiceProviderName",
    }
    by_type = {t: {c.name for c in focus.FOCUS_COLUMNS if c.type == t} for t in ("JSON", "TIMESTAMP")}
    assert by_type["JSON"] == {"Tags", "AllocatedTags", "AllocatedMethodDetails", "ContractApplied", "SkuPriceDetails"}
    assert by_type["TIMESTAMP"] == {"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"}
    for name in ("ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice", "BilledCost",
                 "PricingQuantity", "ConsumedQuantity", "CommitmentDiscountQuantity"):
        assert focus.column(name).type == "NUMERIC"
    assert {c.type for c in focus.FOCUS_COLUMNS} == {"STRING", "NUMERIC", "TIMESTAMP", "JSON"}


def test_allowed_values():
    assert focus.column("ChargeCategory").allowed_values == ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
    assert focus.column("ChargeClass").allowed_values == ("Correction",)
    assert len(focus.SERVICE_CATEGORIES) == 19 == len(focus.SERVICE_SUBCATEGORIES)
    assert set(focus.SERVICE_CATEGORIES) == set(focus.SERVICE_SUBCATEGORIES)
    for cat, subs in focus.SERVICE_SUBCATEGORIES.items():
        assert subs[-1] == f"Other ({cat})"
    assert "Generative AI" in focus.SERVICE_SUBCATEGORIES["AI and Machine Learning"]
    assert "Continuous Integration and Deployment" in focus.SERVICE_SUBCATEGORIES["Developer Tools"]
    assert "Observability" in focus.SERVICE_SUBCATEGORIES["Management and Governance"]
    assert len(focus.ALL_SERVICE_SUBCATEGORIES) == len(set(focus.ALL_SERVICE_SUBCATEGORIES)) == 82


def test_extra_columns_are_lineage_then_cost_source():
    from shared.lineage import LINEAGE_FIELDS

    extra = [(c.name, c.type, c.mode) for c in focus.EXTRA_COLUMNS]
    assert extra == [(n, t, "REQUIRED") for n, t in LINEAGE_FIELDS] + [("x_cost_source", "STRING", "NULLABLE")]
    assert focus.column("x_cost_source").allowed_values == ("billed", "computed", "subscription", "cloud", "cloud_bill")


def test_schema_file_is_what_the_module_renders():
    on_disk = focus.SCHEMA_PATH.read_text()
    assert on_disk == focus.render_schema_text(), "stale: run python -m shared.focus --write-schema"
    doc = json.loads(on_disk)
    assert doc["table"] == "cost_data_standard_1_3" and doc["scope"] == "org"
    assert doc["time_partitioning"] == {"type": "DAY", "field": "ChargePeriodStart"}
    assert doc["clustering"] == ["x_pipeline_id", "x_credential_id", "ServiceProviderName"]
    schema = get_schema("cost_data_standard_1_3")
    assert schema.names[:65] == [c.name for c in focus.FOCUS_COLUMNS]
    assert schema.has_lineage and schema.names[-1] == "x_cost_source"
    assert schema.field("Tags").type == "JSON" and not schema.field("Tags").required
    assert schema.field("ChargePeriodStart").required and not schema.field("HostProviderName").required


def test_gate_sql_is_strict_bigquery():
    for rule in focus.RULES:
        parse_bigquery(f"SELECT COUNTIF({rule.violation}) FROM `acme_prod.cost_data_standard_1_3`")


# ---------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------
def test_gate_passes_valid_genai_tax_and_credit_rows():
    report = gate(valid_rows())
    assert report.ok, report.summary()
    assert report.rows_checked == 4
    assert report.violations == {}
    assert "CAU-ChargeCategory-C-003-M" in report.rules_checked
    assert report.summary().endswith("OK")


def test_a_correction_may_carry_no_prices_but_when_it_does_the_products_hold():
    """1.3 dropped the correction exemption of ListCost/ContractedCost = unit price x quantity
    (CAU-ListCost-C-011-C); what a correction may do is leave the prices and SKU out."""
    row = genai_input()
    row.update(ChargeClass="Correction", ListCost=D("-0.4"), ContractedCost=D("-0.4"),
               BilledCost=D("-0.4"), EffectiveCost=D("-0.4"))
    assert gate([row]).violations == {"CAU-ListCost-C-011-C": 1, "CAU-ContractedCost-C-011-C": 1}
    for col in ("SkuId", "SkuPriceId", "SkuMeter", "ListUnitPrice", "ContractedUnitPrice", "PricingQuantity",
                "PricingUnit", "PricingCategory", "ConsumedQuantity", "ConsumedUnit", "PricingCurrencyListUnitPrice",
                "PricingCurrencyContractedUnitPrice"):
        row[col] = None
    assert gate([row]).ok, gate([row]).summary()


def _mutate(base, **changes) -> dict:
    row = base()
    row.update(changes)
    return row


# (row, the violations it must produce exactly)
BROKEN = {
    "charge category": (_mutate(credit_row, ChargeCategory="Fee"), {"CAU-ChargeCategory-C-003-M": 1}),
    "charge class": (_mutate(genai_input, ChargeClass="correction"), {"CAU-ChargeClass-C-005-C": 1}),
    "charge frequency": (_mutate(genai_input, ChargeFrequency="Sometimes"), {"CAU-ChargeFrequency-C-003-M": 1}),
    "pricing category": (_mutate(genai_input, PricingCategory="OnDemand"), {"CAU-PricingCategory-C-007-M": 1}),
    "commitment category": (_mutate(genai_output, CommitmentDiscountCategory="Tokens"),
                            {"CAU-CommitmentDiscountCategory-C-005-M": 1}),
    "commitment status": (_mutate(genai_output, CommitmentDiscountStatus="Partly"),
                          {"CAU-CommitmentDiscountStatus-C-005-M": 1}),
    "capacity status": (_mutate(genai_input, CapacityReservationId="cr-1", CapacityReservationStatus="Idle"),
                        {"CAU-CapacityReservationStatus-C-006-M": 1}),
    "cost source": (_mutate(genai_input, x_cost_source="guess"), {"CloudAct-x_cost_source-C-001-M": 1}),
    "service category": (_mutate(genai_input, ServiceCategory="Artificial Intelligence"),
                         {"CAU-ServiceCategory-C-003-M": 1, "CAU-ServiceSubcategory-C-004-M": 1,
                          "CAU-ServiceName-C-005-C": 1}),
    "subcategory unknown": (_mutate(genai_input, ServiceSubcategory="Chatbots"),
                            {"CAU-ServiceSubcategory-C-003-M": 1, "CAU-ServiceName-C-008-C": 1}),
    "subcategory of another category": (_mutate(genai_input, ServiceSubcategory="Virtual Machines"),
                                        {"CAU-ServiceSubcategory-C-004-M": 1,
                                         "CAU-ServiceName-C-008-C": 1}),
    "billed cost null": (_mutate(genai_input, BilledCost=None), {"CAU-BilledCost-C-003-M": 1}),
    "service provider null": (_mutate(tax_row, ServiceProviderName=None), {"CAU-ServiceProviderName-C-003-M": 1}),
    "charge period start null": (_mutate(tax_row, ChargePeriodStart=None), {"CAU-ChargePeriodStart-C-003-M": 1}),
    "subcategory null": (_mutate(genai_input, ServiceSubcategory=None), {"CAU-ServiceSubcategory-C-002-M": 1}),
    "pricing currency null": (_mutate(tax_row, PricingCurrency=None), {"CAU-PricingCurrency-C-004-M": 1}),
    "charge period empty": (_mutate(genai_input, ChargePeriodEnd=ts(1)), {"CloudAct-ChargePeriodEnd-C-001-M": 1}),
    "billing period reversed": (_mutate(tax_row, BillingPeriodEnd=ts(31, 12).replace(year=2024)),
                                {"CloudAct-BillingPeriodEnd-C-001-M": 1}),
    "currency lower case": (_mutate(genai_input, BillingCurrency="usd"), {"CAU-BillingCurrency-C-006-M": 1}),
    "currency symbol": (_mutate(genai_input, BillingCurrency="$"), {"CAU-BillingCurrency-C-006-M": 1}),
    "consumed unit missing": (_mutate(genai_input, ConsumedUnit=None), {"CAU-ConsumedUnit-C-006-C": 1}),
    "pricing unit without quantity": (_mutate(credit_row, PricingUnit="Tokens"), {"CAU-PricingUnit-C-005-C": 1}),
    "sku meter without sku": (_mutate(genai_input, SkuId=None),
                              {"CAU-SkuMeter-C-004-C": 1, "CAU-SkuId-C-005-C": 1}),
    "sub account name missing": (_mutate(genai_input, SubAccountName=None), {"CAU-SubAccountName-C-005-C": 1}),
    "region name missing": (_mutate(genai_input, RegionId="us"), {"CAU-RegionName-C-005-C": 1}),
    "commitment category without id": (_mutate(genai_input, CommitmentDiscountCategory="Spend"),
                                       {"CAU-CommitmentDiscountCategory-C-003-C": 1}),
    "commitment type missing": (_mutate(genai_output, CommitmentDiscountType=None),
                                {"CAU-CommitmentDiscountType-C-005-C": 1}),
    "commitment name without id": (_mutate(genai_input, CommitmentDiscountName="x"),
                                   {"CAU-CommitmentDiscountName-C-004-C": 1}),
    "commitment status missing": (_mutate(genai_output, CommitmentDiscountStatus=None),
                                  {"CAU-CommitmentDiscountStatus-C-004-C": 1}),
    "commitment unit missing": (_mutate(genai_output, CommitmentDiscountUnit=None),
                                {"CAU-CommitmentDiscountUnit-C-006-C": 1}),
    "consumed quantity on tax": (_mutate(tax_row, ConsumedQuantity=D("5"), ConsumedUnit="Tokens"),
                                 {"CAU-ConsumedQuantity-C-004-C": 1, "CAU-ConsumedQuantity-C-009-C": 1}),
    "pricing quantity on tax": (_mutate(tax_row, PricingQuantity=D("1"), PricingUnit="Units"),
                                {"CAU-PricingQuantity-C-004-C": 1, "CAU-PricingQuantity-C-011-C": 1}),
    "pricing quantity missing on usage": (_mutate(genai_input, PricingQuantity=None, PricingUnit=None),
                                          {"CAU-PricingQuantity-C-005-C": 1}),
    "list cost off by a cent": (_mutate(genai_input, ListCost=D("3.21")), {"CAU-ListCost-C-011-C": 1}),
    "contracted cost off": (_mutate(genai_output, ContractedCost=D("2.000001")),
                            {"CAU-ContractedCost-C-011-C": 1}),
    "credit effective cost": (_mutate(credit_row, EffectiveCost=D("-0.5")), {"CAU-EffectiveCost-C-010-M": 1}),
    "credit contracted cost": (_mutate(credit_row, ContractedCost=D("0")), {"CAU-ContractedCost-C-008-M": 1}),
    "nested tags": (_mutate(genai_input, Tags='{"team": {"name": "ml"}}'), {"CAU-Tags-C-001-M": 1}),
    "tags array": (_mutate(genai_input, Tags='["ml"]'), {"CAU-Tags-C-001-M": 1}),
    "tags not json": (_mutate(genai_input, Tags="team=ml"), {"CAU-Tags-C-001-M": 1}),
    "contract applied not an object": (_mutate(genai_input, ContractApplied="[1]"), {"CAU-ContractApplied-C-001-M": 1}),
    "host provider missing": (_mutate(genai_input, HostProviderName=None), {"CAU-HostProviderName-C-006-M": 1}),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_gate_catches_one_broken_row_among_valid_ones(case):
    bad, expected = BROKEN[case]
    report = gate(valid_rows() + [bad])
    assert report.rows_checked == 5
    assert report.violations == expected, report.summary()
    assert not report.ok
    for rule_id in expected:
        assert rule_id in report.summary()
        assert 1 <= len(report.samples[rule_id]) <= 3


def test_counts_every_row_and_samples_distinct_values():
    rows = valid_rows() + [_mutate(genai_input, ChargeFrequency=f) for f in ("Daily", "Daily", "Hourly", "Weekly", "Yearly")]
    report = gate(rows)
    assert report.violations == {"CAU-ChargeFrequency-C-003-M": 5}
    assert report.samples["CAU-ChargeFrequency-C-003-M"] == [
        "ChargeFrequency='Daily'", "ChargeFrequency='Hourly'", "ChargeFrequency='Weekly'"]


def test_subcategory_sample_shows_both_columns():
    report = gate([_mutate(genai_input, ServiceSubcategory="Virtual Machines")])
    assert report.samples["CAU-ServiceSubcategory-C-004-M"] == [
        "ServiceCategory='AI and Machine Learning', ServiceSubcategory='Virtual Machines'"]


def test_check_arrow_reports_missing_mandatory_columns_and_casts_loose_types():
    # A pandas-style export: floats for decimals, ISO strings for timestamps, no HostProviderName column.
    rows = []
    for r in valid_rows():
        r = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in r.items() if k != "HostProviderName"}
        for k in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            r[k] = r[k].strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(r)
    report = focus.check_arrow(pa.Table.from_pylist(rows))
    assert report.violations == {focus.MISSING_COLUMNS_RULE: 1, "CAU-HostProviderName-C-006-M": 3}
    assert report.samples[focus.MISSING_COLUMNS_RULE] == ["HostProviderName"]


def test_check_filters_with_where_sql_and_params():
    wh = DuckDBWarehouse(None)
    try:
        wh.ensure_dataset("acme_prod")
        wh.ensure_table("acme_prod", focus.table_schema())
        good = valid_rows()
        bad = [_mutate(genai_input, ChargeCategory="Fee", **_lineage(x_run_id="run-2"))]
        wh.insert_rows("acme_prod", focus.TABLE, good + bad)
        everything = focus.check(wh, "acme_prod")
        assert everything.rows_checked == 5
        assert everything.violations == {"CAU-ChargeCategory-C-003-M": 1, "CAU-ConsumedQuantity-C-004-C": 1}
        run1 = focus.check(wh, "acme_prod", "x_run_id = @run", {"run": "run-1"})
        assert run1.ok and run1.rows_checked == 4
        run2 = focus.check(wh, "acme_prod", "x_run_id = @run", {"run": "run-2"})
        assert run2.rows_checked == 1 and run2.violations["CAU-ChargeCategory-C-003-M"] == 1
        assert run2.samples["CAU-ChargeCategory-C-003-M"] == ["ChargeCategory='Fee'"]
        empty = focus.check(wh, "acme_prod", "x_run_id = @run", {"run": "nope"})
        assert empty.ok and empty.rows_checked == 0
    finally:
        wh.close()


@pytest.mark.parametrize("dataset", ["Acme_prod", "acme-prod", "a", "acme_prod`; DROP TABLE x; --", "1acme", ""])
def test_check_rejects_bad_dataset_names(dataset):
    with pytest.raises(ValueError):
        focus.check(object(), dataset)


# ---------------------------------------------------------------------------------------------
# tools/conformance.py: parsing the validator's console report (its exit code is always 0)
# ---------------------------------------------------------------------------------------------
VALIDATOR_OUTPUT_12 = """
=== Validation Results ===
Total: 578 | Pass: 323 | Fail: 5 | Skipped: 250
⏭️ AvailabilityZone-C-001-M: SKIPPED  (violations=0, reason=rule not applicable)
✅ InvoiceId-C-003-C: PASS  (violations=0, msg=InvoiceId-C-003-C: OR passed - satisfied by rules: [model_rule_reference#2])
❌ CommitmentDiscountStatus-C-000-C: FAIL  (violations=1, msg=CommitmentDiscountStatus-C-000-C: AND failed - failed child rules: [CommitmentDiscountStatus-C-002-C])
❌ CommitmentDiscountStatus-C-002-C: FAIL  (violations=1, msg=CommitmentDiscountStatus-C-002-C: AND failed - failed child rules: [CommitmentDiscountStatus-C-004-C])
❌ CommitmentDiscountStatus-C-004-C: FAIL  (violations=3, msg=CommitmentDiscountStatus MUST NOT be NULL., 2.1ms)
❌ InvoiceId-C-005-C: FAIL  (violations=4, msg=InvoiceId MUST NOT be NULL., 1.5ms)
❌ PricingCurrencyEffectiveCost-C-003-M: FAIL  (violations=4, msg=PricingCurrencyEffectiveCost MUST NOT be NULL., 1.5ms)
❌ CostAndUsage-D-002-M: FAIL  (violations=1, msg=CostAndUsage-D-002-M: AND failed - failed child rules: [CommitmentDiscountStatus-C-000-C, PricingCurrencyEffectiveCost-C-000-C])
--- Failures ---
- InvoiceId-C-005-C: violations=4; InvoiceId MUST NOT be NULL.
"""


def test_conformance_parses_counts_and_separates_known_defects():
    from tools import conformance as c

    r = c.classify(c.parse_output(VALIDATOR_OUTPUT_12, c.RunResult("FOCUS 1.2")), c.WHITELIST["1.2"])
    assert (r.total, r.passed, r.failed, r.skipped) == (578, 323, 5, 250)
    assert set(r.failures) == {
        "CommitmentDiscountStatus-C-000-C", "CommitmentDiscountStatus-C-002-C", "CommitmentDiscountStatus-C-004-C",
        "InvoiceId-C-005-C", "PricingCurrencyEffectiveCost-C-003-M", "CostAndUsage-D-002-M"}
    # composites failing only through whitelisted children are whitelisted; a composite with one real
    # failing child is not
    assert r.whitelisted == ["CommitmentDiscountStatus-C-000-C", "CommitmentDiscountStatus-C-002-C",
                             "CommitmentDiscountStatus-C-004-C", "InvoiceId-C-005-C"]
    assert r.unexpected == ["CostAndUsage-D-002-M", "PricingCurrencyEffectiveCost-C-003-M"]


def test_conformance_13_whitelist_ignores_the_dataset_prefix():
    from tools import conformance as c

    text = ("Total: 933 | Pass: 338 | Fail: 3 | Skipped: 592\n"
            "❌ CAU-CapacityReservationStatus-C-003-C: FAIL  (violations=9, msg=x)\n"
            "❌ CAU-PricingCurrencyContractedUnitPrice-C-012-C: FAIL  (violations=9, msg=x)\n"
            "❌ CAU-InvoiceId-C-005-C: FAIL  (violations=9, msg=x)\n")
    r = c.classify(c.parse_output(text, c.RunResult("FOCUS 1.3")), c.WHITELIST["1.3"])
    assert r.total == 933 and r.failed == 3
    assert r.unexpected == ["CAU-InvoiceId-C-005-C"]
    assert len(r.whitelisted) == 2


def test_conformance_or_composite_is_explained_through_the_models_dependencies(tmp_path):
    """An OR composite names its children `model_rule_reference#N`: they are resolved from the model."""
    from tools import conformance as c

    text = ("Total: 10 | Pass: 6 | Fail: 4 | Skipped: 0\n"
            "❌ InvoiceId-C-000-O: FAIL  (violations=0, msg=InvoiceId-C-000-O: AND failed - failed child rules: "
            "[InvoiceId-C-003-C])\n"
            "❌ InvoiceId-C-003-C: FAIL  (violations=0, msg=InvoiceId-C-003-C: OR failed - all child rules failed: "
            "[model_rule_reference#1, model_rule_reference#2])\n"
            "❌ InvoiceId-C-004-C: FAIL  (violations=2, msg=x)\n"
            "❌ InvoiceId-C-005-C: FAIL  (violations=3, msg=x)\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "model-1.2.0.1.json").write_text(json.dumps({"ModelRules": {
        "InvoiceId-C-003-C": {"ValidationCriteria": {"Dependencies": ["InvoiceId-C-004-C", "InvoiceId-C-005-C"]}},
        "InvoiceId-C-004-C": {"ValidationCriteria": {"Dependencies": []}}}}))
    deps = c.model_dependencies(tmp_path, "1.2", rules)
    assert deps["InvoiceId-C-003-C"] == ["InvoiceId-C-004-C", "InvoiceId-C-005-C"]
    r = c.classify(c.parse_output(text, c.RunResult("FOCUS 1.2")), c.WHITELIST["1.2"], deps)
    assert r.unexpected == [] and len(r.whitelisted) == 4
    # without the model the composite stays unexplained
    assert c.classify(c.parse_output(text, c.RunResult("FOCUS 1.2")), c.WHITELIST["1.2"]).unexpected == [
        "InvoiceId-C-000-O", "InvoiceId-C-003-C"]


def test_conformance_criteria_are_the_claimed_subset_of_the_model(tmp_path):
    from tools import conformance as c

    model = tmp_path / "model-1.3.json"
    model.write_text(json.dumps({"ApplicabilityCriteria": {
        "TAGGING_SUPPORTED": {}, "REGION_SUPPORTED": {}, "CONTRACT_COMMITMENTS_SUPPORTED": {}}}))
    default = list(c.CLAIMED_CRITERIA)
    assert c.criteria_arg(None, model, default) == ("REGION_SUPPORTED,TAGGING_SUPPORTED", ["CONTRACT_COMMITMENTS_SUPPORTED"])
    assert c.criteria_arg("all", model, default) == ("ALL", [])
    assert c.criteria_arg("NONE", model, default) == ("", [])
    assert "CAPACITY_RESERVATION_SUPPORTED" not in c.CLAIMED_CRITERIA


def test_commitment_discounts_are_claimed_only_when_the_data_has_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tools import conformance as c

    empty, filled = tmp_path / "empty.parquet", tmp_path / "filled.parquet"
    pq.write_table(pa.table({"CommitmentDiscountId": pa.array([None, None], pa.string())}), empty)
    pq.write_table(pa.table({"CommitmentDiscountId": pa.array([None, "ri-1"], pa.string())}), filled)
    assert "COMMITMENT_DISCOUNT_SUPPORTED" not in c.default_criteria(empty)
    assert "COMMITMENT_DISCOUNT_SUPPORTED" in c.default_criteria(filled)


def test_conformance_skips_without_python312_unless_strict(tmp_path, monkeypatch, capsys):
    from tools import conformance as c

    parquet = tmp_path / "focus.parquet"
    import pyarrow.parquet as pq

    pq.write_table(arrow(valid_rows()), parquet)
    monkeypatch.setattr(c, "find_python312", lambda: None)
    assert c.main(["--parquet", str(parquet), "--venv", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED: needs Python 3.12" in out and "4 rows" in out and ": OK" in out
    assert c.main(["--parquet", str(parquet), "--venv", str(tmp_path / "v"), "--strict"]) == 1
    assert not (tmp_path / "v").exists()
    # our own per-row gate still runs and fails the command on a bad row
    pq.write_table(arrow(valid_rows() + [_mutate(credit_row, ChargeCategory="Fee")]), parquet)
    assert c.main(["--parquet", str(parquet), "--venv", str(tmp_path / "v")]) == 1
    assert "CAU-ChargeCategory-C-003-M: 1" in capsys.readouterr().out
