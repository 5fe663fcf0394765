"""The FOCUS 1.3 rules of the gate: a failing and a passing row for each, the Unit Format, the dataset
rules, the issue-13 defects the gate must catch, the generated rules document, and the gate's SQL
resolved by ZetaSQL (BigQuery's analyzer)."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from shared import focus
from shared.focus_unchecked import UNCHECKED
from shared.warehouse.duckdb import DuckDBWarehouse
from tests.test_focus import BROKEN, D, _common, _in_pricing_currency, _mutate, gate, genai_input, ts, valid_rows
from tests.zetasql import Catalog, zetasql  # noqa: F401


# ---------------------------------------------------------------------------------------------
# Rows in the providers' shapes (AWS CUR/FOCUS fields as the procedures map them)
# ---------------------------------------------------------------------------------------------
RI = "arn:aws:ec2:us-east-1:123456789012:reserved-instances/7f8e9d0c-ri"


def aws_usage(**over) -> dict:
    """24 hours of an m5.large on demand: 0.096 USD/hour."""
    row = {
        **_common(),
        "BillingAccountId": "123456789012", "BillingAccountName": "Acme AWS",
        "InvoiceIssuerName": "Amazon Web Services, Inc.", "ProviderName": "Amazon Web Services",
        "PublisherName": "Amazon Web Services", "ServiceProviderName": "Amazon Web Services",
        "HostProviderName": "Amazon Web Services",
        "ServiceName": "Amazon Elastic Compute Cloud", "ServiceCategory": "Compute",
        "ServiceSubcategory": "Virtual Machines", "SubAccountId": "123456789012", "SubAccountName": "acme-prod",
        "RegionId": "us-east-1", "RegionName": "US East (N. Virginia)",
        "ResourceId": "i-0abc123", "ResourceType": "Instance",
        "ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based",
        "ChargeDescription": "$0.096 per On Demand Linux m5.large Instance Hour",
        "ConsumedQuantity": D("24"), "ConsumedUnit": "Hours", "PricingQuantity": D("24"), "PricingUnit": "Hours",
        "SkuId": "JRTCKXETXF", "SkuPriceId": "JRTCKXETXF.JRTCKXETXF.6YS6EN2CT7", "SkuMeter": "BoxUsage:m5.large",
        "PricingCategory": "Standard", "ListUnitPrice": D("0.096"), "ContractedUnitPrice": D("0.096"),
        "ListCost": D("2.304"), "ContractedCost": D("2.304"), "BilledCost": D("2.304"), "EffectiveCost": D("2.304"),
        "x_cost_source": "cloud",
    }
    row.update(over)
    derived = _in_pricing_currency(dict(row))  # prices in the billing currency, unless given
    return {**row, **{k: v for k, v in derived.items() if k not in over}}


def ri_purchase(**over) -> dict:
    """A 1-year all-upfront reserved instance: the purchase is billed, its cost amortized on usage."""
    return aws_usage(**{
        "ChargeCategory": "Purchase", "ChargeFrequency": "One-Time",
        "ChargeDescription": "1-year all upfront m5.large reserved instance",
        "CommitmentDiscountId": RI, "CommitmentDiscountCategory": "Usage", "CommitmentDiscountType": "Reserved Instance",
        "CommitmentDiscountName": "web-ri", "CommitmentDiscountQuantity": D("8760"), "CommitmentDiscountUnit": "Hours",
        "ResourceId": RI, "ResourceType": "Reserved Instance", "ConsumedQuantity": None, "ConsumedUnit": None,
        "PricingQuantity": D("1"), "PricingUnit": "Units", "SkuPriceId": "JRTCKXETXF.6QCMYABX3D.RI",
        "ListUnitPrice": D("496"), "ContractedUnitPrice": D("496"), "ListCost": D("496"), "ContractedCost": D("496"),
        "BilledCost": D("496"), "EffectiveCost": D("0"), **over})


def ri_covered(**over) -> dict:
    """24 hours covered by the reservation: nothing billed, the amortized share as EffectiveCost."""
    return aws_usage(**{
        "CommitmentDiscountId": RI, "CommitmentDiscountCategory": "Usage", "CommitmentDiscountType": "Reserved Instance",
        "CommitmentDiscountName": "web-ri", "CommitmentDiscountStatus": "Used", "CommitmentDiscountQuantity": D("24"),
        "CommitmentDiscountUnit": "Hours", "PricingCategory": "Committed", "BilledCost": D("0"),
        "EffectiveCost": D("1.358904"), **over})


def ri_unused(**over) -> dict:
    """2 reserved hours nobody used: a Usage row with no consumed quantity."""
    return ri_covered(**{
        "CommitmentDiscountStatus": "Unused", "ConsumedQuantity": None, "ConsumedUnit": None,
        "CommitmentDiscountQuantity": D("2"), "PricingQuantity": D("2"), "ListCost": D("0.192"),
        "ContractedCost": D("0.192"), "EffectiveCost": D("0.113242"), "PricingCategory": "Committed",
        "ResourceId": RI, "ResourceType": "Reserved Instance", **over})


def capacity_used(**over) -> dict:
    return aws_usage(CapacityReservationId="cr-0abc", CapacityReservationStatus="Used", **over)


AMD = '{"Elements":[{"AllocatedRatio":0.25,"UsageQuantity":6,"UsageUnit":"Hours","x_Pod":"web"}]}'
CONTRACT = ('{"Elements":[{"ContractId":"c-1","ContractCommitmentId":"cc-1","ContractCommitmentAppliedCost":2.304,'
            '"ContractCommitmentAppliedQuantity":2.304,"ContractCommitmentAppliedUnit":"USD"}]}')


def allocated(details: str = AMD, **over) -> dict:
    return aws_usage(**{"AllocatedMethodId": "cpu-share", "AllocatedMethodDetails": details,
                        "AllocatedResourceId": "pod/web", "AllocatedResourceName": "web",
                        "AllocatedTags": '{"team":"web"}', **over})


def contracted(applied: str = CONTRACT, **over) -> dict:
    return aws_usage(ContractApplied=applied, **over)


def cloud_rows() -> list[dict]:
    return [aws_usage(), ri_purchase(), ri_covered(), ri_unused(), capacity_used(), allocated(), contracted()]


def test_the_cloud_rows_pass_with_the_genai_ones():
    report = gate(valid_rows() + cloud_rows())
    assert report.ok, report.summary()
    assert report.rows_checked == 11


# ---------------------------------------------------------------------------------------------
# One failing row per rule, among the valid rows (the passing ones)
# ---------------------------------------------------------------------------------------------
CASES: dict[str, tuple[dict, dict[str, int]]] = {
    "purchase usage-based": (ri_purchase(ChargeFrequency="Usage-Based"), {"CAU-ChargeFrequency-C-004-C": 1}),
    "empty string": (aws_usage(SubAccountName=""), {"NullHandling-A-002-M": 1}),
    "placeholder": (aws_usage(ResourceName="N/A"), {"NullHandling-A-002-M": 1}),
    "usage outside its billing period": (aws_usage(ChargePeriodStart=ts(1, 2), ChargePeriodEnd=ts(2, 2)),
                                         {"CloudAct-ChargePeriodStart-C-002-M": 1}),
    "currency not ISO 4217": (aws_usage(BillingCurrency="USX", PricingCurrency="USX"),
                              {"CAU-BillingCurrency-C-006-M": 1, "CAU-PricingCurrency-C-003-M": 1}),
    "pricing currency lower case": (aws_usage(PricingCurrency="usd"), {"CAU-PricingCurrency-C-003-M": 1}),
    "pricing unit singular": (aws_usage(PricingUnit="Hour"), {"CAU-PricingUnit-C-003-O": 1}),
    "consumed unit a usage type": (aws_usage(ConsumedUnit="USE1-BoxUsage:m5.large"), {"CAU-ConsumedUnit-C-003-O": 1}),
    "commitment unit abbreviated": (ri_covered(CommitmentDiscountUnit="Hrs"),
                                    {"CAU-CommitmentDiscountUnit-C-003-O": 1, "CAU-CommitmentDiscountUnit-C-008-M": 1}),
    "pricing unit without quantity": (aws_usage(PricingQuantity=None, ListCost=D("0"), ContractedCost=D("0"),
                                                BilledCost=D("0"), EffectiveCost=D("0")),
                                      {"CAU-PricingUnit-C-005-C": 1, "CAU-PricingQuantity-C-005-C": 1}),
    "pricing quantity without unit": (aws_usage(PricingUnit=None), {"CAU-PricingUnit-C-006-C": 1}),
    "consumed unit without quantity": (aws_usage(ConsumedQuantity=None),
                                       {"CAU-ConsumedUnit-C-005-C": 1, "CAU-ConsumedQuantity-C-006-C": 1}),
    "usage without sku price": (aws_usage(SkuPriceId=None, SkuMeter="BoxUsage", ListUnitPrice=None,
                                          ContractedUnitPrice=None, PricingQuantity=None, PricingUnit=None,
                                          ConsumedQuantity=None, ConsumedUnit=None, PricingCategory=None,
                                          PricingCurrencyListUnitPrice=None, PricingCurrencyContractedUnitPrice=None),
                                {"CAU-SkuPriceId-C-005-C": 1, "CAU-ListUnitPrice-C-005-C": 1,
                                 "CAU-ContractedUnitPrice-C-006-C": 1, "CAU-PricingQuantity-C-005-C": 1,
                                 "CAU-PricingCategory-C-004-C": 1, "CAU-ConsumedQuantity-C-006-C": 1,
                                 "CAU-PricingCurrencyListUnitPrice-C-005-C": 1,
                                 "CAU-PricingCurrencyContractedUnitPrice-C-005-C": 1}),
    "prices without sku price": (aws_usage(SkuPriceId=None),
                                 {"CAU-SkuPriceId-C-005-C": 1, "CAU-ListUnitPrice-C-012-C": 1,
                                  "CAU-ContractedUnitPrice-C-014-C": 1, "CAU-PricingQuantity-C-011-C": 1,
                                  "CAU-PricingCategory-C-012-C": 1, "CAU-ConsumedQuantity-C-009-C": 1,
                                  "CAU-PricingCurrencyListUnitPrice-C-011-C": 1,
                                  "CAU-PricingCurrencyContractedUnitPrice-C-011-C": 1}),
    "commitment quantity without sku price": (
        ri_purchase(SkuPriceId=None, ListUnitPrice=None, ContractedUnitPrice=None, PricingQuantity=None,
                    PricingUnit=None, PricingCategory=None, PricingCurrencyListUnitPrice=None,
                    PricingCurrencyContractedUnitPrice=None),
        {"CAU-CommitmentDiscountQuantity-C-016-C": 1, "CAU-SkuPriceId-C-005-C": 1, "CAU-ListUnitPrice-C-005-C": 1,
         "CAU-ContractedUnitPrice-C-006-C": 1, "CAU-PricingQuantity-C-005-C": 1, "CAU-PricingCategory-C-004-C": 1,
         "CAU-PricingCurrencyListUnitPrice-C-005-C": 1, "CAU-PricingCurrencyContractedUnitPrice-C-005-C": 1}),
    "sku price details without sku price": (
        _mutate(genai_input, SkuPriceId=None, SkuPriceDetails='{"Tier":"standard"}', ListUnitPrice=None,
                ContractedUnitPrice=None, PricingQuantity=None, PricingUnit=None, ConsumedQuantity=None,
                ConsumedUnit=None, PricingCategory=None, PricingCurrencyListUnitPrice=None,
                PricingCurrencyContractedUnitPrice=None, ChargeClass="Correction"),
        {"CAU-SkuPriceDetails-C-004-C": 1}),
    "list price missing": (aws_usage(ListUnitPrice=None, PricingCurrencyListUnitPrice=None),
                           {"CAU-ListUnitPrice-C-013-C": 1, "CAU-ListUnitPrice-C-005-C": 1,
                            "CAU-PricingCurrencyListUnitPrice-C-012-C": 1, "CAU-PricingCurrencyListUnitPrice-C-005-C": 1}),
    "contracted price missing": (aws_usage(ContractedUnitPrice=None, PricingCurrencyContractedUnitPrice=None),
                                 {"CAU-ContractedUnitPrice-C-015-C": 1, "CAU-ContractedUnitPrice-C-006-C": 1,
                                  "CAU-PricingCurrencyContractedUnitPrice-C-012-C": 1,
                                  "CAU-PricingCurrencyContractedUnitPrice-C-005-C": 1}),
    "negative prices": (aws_usage(ListUnitPrice=D("-0.096"), ContractedUnitPrice=D("-0.096"),
                                  PricingCurrencyListUnitPrice=D("-0.096"),
                                  PricingCurrencyContractedUnitPrice=D("-0.096"),
                                  ListCost=D("-2.304"), ContractedCost=D("-2.304")),
                        {"CAU-ListUnitPrice-C-008-M": 1, "CAU-ContractedUnitPrice-C-009-M": 1,
                         "CAU-PricingCurrencyListUnitPrice-C-008-M": 1,
                         "CAU-PricingCurrencyContractedUnitPrice-C-008-C": 1}),
    "covered usage not committed": (ri_covered(PricingCategory="Standard"), {"CAU-PricingCategory-C-009-C": 1}),
    "consumed quantity on unused hours": (ri_unused(ConsumedQuantity=D("2"), ConsumedUnit="Hours"),
                                          {"CAU-ConsumedQuantity-C-004-C": 1}),
    "sub account name without id": (aws_usage(SubAccountId=None), {"CAU-SubAccountName-C-004-C": 1}),
    "sub account type without id": (aws_usage(SubAccountId=None, SubAccountName=None, SubAccountType="Account"),
                                    {"CAU-SubAccountType-C-004-C": 1}),
    "region name without id": (aws_usage(RegionId=None), {"CAU-RegionName-C-004-C": 1}),
    "resource name without id": (aws_usage(ResourceId=None, ResourceType=None, ResourceName="web-1"),
                                 {"CAU-ResourceName-C-004-C": 1}),
    "resource type without id": (aws_usage(ResourceId=None), {"CAU-ResourceType-C-004-C": 1}),
    "resource without type": (aws_usage(ResourceType=None), {"CAU-ResourceType-C-005-C": 1}),
    "commitment category missing": (ri_covered(CommitmentDiscountCategory=None),
                                    {"CAU-CommitmentDiscountCategory-C-004-C": 1}),
    "commitment type without id": (aws_usage(CommitmentDiscountType="Reserved Instance"),
                                   {"CAU-CommitmentDiscountType-C-004-C": 1}),
    "commitment status without id": (aws_usage(CommitmentDiscountStatus="Used"),
                                     {"CAU-CommitmentDiscountStatus-C-003-C": 1, "CAU-PricingCategory-C-009-C": 1}),
    "commitment quantity missing": (ri_covered(CommitmentDiscountQuantity=None, CommitmentDiscountUnit=None),
                                    {"CAU-CommitmentDiscountQuantity-C-005-C": 1}),
    "commitment unit without quantity": (ri_covered(CommitmentDiscountQuantity=None),
                                         {"CAU-CommitmentDiscountQuantity-C-005-C": 1,
                                          "CAU-CommitmentDiscountUnit-C-005-C": 1}),
    "capacity status without id": (aws_usage(CapacityReservationStatus="Used"),
                                   {"CAU-CapacityReservationStatus-C-003-C": 1}),
    "capacity status missing": (aws_usage(CapacityReservationId="cr-0abc"),
                                {"CAU-CapacityReservationStatus-C-004-C": 1}),
    "reservation purchase amortized twice": (ri_purchase(EffectiveCost=D("496"), PricingCurrencyEffectiveCost=D("496")),
                                             {"CAU-EffectiveCost-C-005-C": 1,
                                              "CAU-PricingCurrencyEffectiveCost-C-005-M": 1}),
    "list cost 0 below what was paid": (aws_usage(ListUnitPrice=D("0"), PricingCurrencyListUnitPrice=D("0"),
                                                  ListCost=D("0")), {"CloudAct-ListCost-C-001-M": 1}),
    "allocated tags nested": (allocated(AllocatedTags='{"team":{"name":"web"}}'), {"CAU-AllocatedTags-C-001-M": 1}),
    "sku price details an array": (aws_usage(SkuPriceDetails='["x"]'), {"CAU-SkuPriceDetails-C-001-M": 1}),
    "allocation details not an object": (allocated('[{"AllocatedRatio":1}]'), {"CAU-AllocatedMethodDetails-C-003-M": 1}),
    "allocation details without elements": (allocated('{"AllocatedRatio":1}'),
                                            {"CAU-AllocatedMethodDetailsObject-O-001-M": 1}),
    "allocation element not an object": (allocated('{"Elements":[0.25]}'),
                                         {"CAU-AllocatedMethodDetailsObject-O-002-M": 1}),
    "allocation element nested": (allocated('{"Elements":[{"AllocatedRatio":1,"x_Pod":{"name":"web"}}]}'),
                                  # the nested key "name" is not x_-prefixed either
                                  {"CAU-AllocatedMethodDetailsObject-O-003-M": 1,
                                   "CAU-AllocatedMethodDetailsObject-O-009-C": 1}),
    "allocation key not prefixed": (allocated('{"Elements":[{"AllocatedRatio":1,"Pod":"web"}]}'),
                                    {"CAU-AllocatedMethodDetailsObject-O-009-C": 1}),
    "allocation ratio missing": (allocated('{"Elements":[{"AllocatedRatio":0.5},{"x_Pod":"web"}]}'),
                                 {"CAU-AllocatedMethodDetailsObject-O-012-M": 1}),
    "allocation ratio a string": (allocated('{"Elements":[{"AllocatedRatio":"0.5"}]}'),
                                  {"CAU-AllocatedMethodDetailsObject-O-013-M": 1}),
    "allocation quantity without unit": (allocated('{"Elements":[{"AllocatedRatio":1,"UsageQuantity":6}]}'),
                                         {"CAU-AllocatedMethodDetailsObject-O-016-C": 1}),
    "allocation quantity a string": (allocated('{"Elements":[{"AllocatedRatio":1,"UsageQuantity":"6",'
                                               '"UsageUnit":"Hours"}]}'),
                                     {"CAU-AllocatedMethodDetailsObject-O-021-M": 1}),
    "allocation unit not unit format": (allocated('{"Elements":[{"AllocatedRatio":1,"UsageQuantity":6,'
                                                  '"UsageUnit":"vcpu-hrs"}]}'),
                                        {"CAU-AllocatedMethodDetailsObject-O-018-O": 1}),
    "contract applied without elements": (contracted('{"ContractId":"c-1"}'), {"CAU-ContractAppliedObject-O-001-M": 1}),
    "contract element not an object": (contracted('{"Elements":["c-1"]}'), {"CAU-ContractAppliedObject-O-003-M": 1}),
    "contract element nested": (contracted(CONTRACT.replace('"c-1"', '{"id":"c-1"}')),
                                {"CAU-ContractAppliedObject-O-004-M": 1, "CAU-ContractAppliedObject-O-020-M": 1,
                                 "CAU-ContractAppliedObject-O-017-C": 1}),
    "contract key missing": (contracted(CONTRACT.replace(',"ContractCommitmentAppliedUnit":"USD"', '')),
                             {"CAU-ContractAppliedObject-O-007-M": 1}),
    "contract key not prefixed": (contracted(CONTRACT.replace('"USD"}', '"USD","Note":"q3"}')),
                                  {"CAU-ContractAppliedObject-O-017-C": 1}),
    "contract id a number": (contracted(CONTRACT.replace('"c-1"', '7')), {"CAU-ContractAppliedObject-O-020-M": 1}),
    "contract commitment id a number": (contracted(CONTRACT.replace('"cc-1"', '7')),
                                        {"CAU-ContractAppliedObject-O-030-M": 1}),
    "contract cost a string": (contracted(CONTRACT.replace('"ContractCommitmentAppliedCost":2.304',
                                                           '"ContractCommitmentAppliedCost":"2.304"')),
                               {"CAU-ContractAppliedObject-O-043-M": 1}),
    "contract on a purchase of another resource": (ri_purchase(ContractApplied=CONTRACT),
                                                   {"CAU-ContractAppliedObject-O-039-C": 1}),
}


def tax_row_sku(**over) -> dict:
    from tests.test_focus import tax_row

    row = tax_row()
    row.update(over)
    return row


def credit(**over) -> dict:
    from tests.test_focus import credit_row

    row = credit_row()
    row.update(over)
    return row


# Cases built from the Tax and Credit rows of tests/test_focus.py.
CASES.update({
    "sku on tax": (tax_row_sku(SkuId="tax-sku", SkuMeter="Sales tax"), {"CAU-SkuId-C-004-C": 1}),
    # a SkuPriceId asks for the prices a Tax row must not have
    "sku price on tax": (tax_row_sku(SkuPriceId="tax-price"),
                         {"CAU-SkuPriceId-C-004-C": 1, "CAU-ListUnitPrice-C-013-C": 1,
                          "CAU-ContractedUnitPrice-C-015-C": 1, "CAU-PricingCurrencyListUnitPrice-C-012-C": 1,
                          "CAU-PricingCurrencyContractedUnitPrice-C-012-C": 1}),
    "prices on tax": (tax_row_sku(ListUnitPrice=D("1"), ContractedUnitPrice=D("1"), PricingCurrencyListUnitPrice=D("1"),
                                  PricingCurrencyContractedUnitPrice=D("1"), PricingCategory="Standard"),
                      {"CAU-ListUnitPrice-C-004-C": 1, "CAU-ListUnitPrice-C-012-C": 1,
                       "CAU-ContractedUnitPrice-C-005-C": 1, "CAU-ContractedUnitPrice-C-014-C": 1,
                       "CAU-PricingCurrencyListUnitPrice-C-004-C": 1, "CAU-PricingCurrencyListUnitPrice-C-011-C": 1,
                       "CAU-PricingCurrencyContractedUnitPrice-C-004-C": 1,
                       "CAU-PricingCurrencyContractedUnitPrice-C-011-C": 1,
                       "CAU-PricingCategory-C-003-C": 1, "CAU-PricingCategory-C-012-C": 1}),
    "commitment quantity on a credit": (credit(CommitmentDiscountId=RI, CommitmentDiscountCategory="Usage",
                                               CommitmentDiscountType="Reserved Instance",
                                               CommitmentDiscountQuantity=D("1"), CommitmentDiscountUnit="Hours"),
                                        {"CAU-CommitmentDiscountQuantity-C-007-C": 1,
                                         "CAU-CommitmentDiscountQuantity-C-016-C": 1}),
    "credit list cost": (credit(ListCost=D("0")), {"CAU-ListCost-C-008-M": 1}),
})


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_fails_on_its_row_and_only_there(case):
    bad, expected = CASES[case]
    report = gate(valid_rows() + cloud_rows() + [bad])
    assert report.violations == expected, report.summary()
    for rule_id in expected:
        assert 1 <= len(report.samples[rule_id]) <= 3


@pytest.mark.parametrize("name", sorted(focus.NOT_NULL_IDS))
def test_every_never_null_column_is_checked(name):
    rule_id = focus.NOT_NULL_IDS[name]
    report = gate([_mutate(genai_input, **{name: None})])
    assert report.violations.get(rule_id) == 1, report.summary()


# Rows at the edge of a rule's condition, which must pass.
PASSING = {
    "a correction of a usage row outside the period": aws_usage(ChargeClass="Correction", ChargePeriodStart=ts(1, 2),
                                                                ChargePeriodEnd=ts(2, 2)),
    "usage billed in the period after it (late)": aws_usage(ChargePeriodStart=ts(31) - dt.timedelta(days=31),
                                                            ChargePeriodEnd=ts(31) - dt.timedelta(days=30)),
    "usage starting on the last day of the period": aws_usage(ChargePeriodStart=ts(31), ChargePeriodEnd=ts(1, 2)),
    "a recurring commitment fee keeps its EffectiveCost": ri_purchase(ChargeFrequency="Recurring",
                                                                      EffectiveCost=D("41.33"),
                                                                      PricingCurrencyEffectiveCost=D("41.33")),
    "free usage at list price 0": aws_usage(ListUnitPrice=D("0"), PricingCurrencyListUnitPrice=D("0"),
                                            ContractedUnitPrice=D("0"), PricingCurrencyContractedUnitPrice=D("0"),
                                            ListCost=D("0"), ContractedCost=D("0"), BilledCost=D("0"),
                                            EffectiveCost=D("0"), PricingCurrencyEffectiveCost=D("0")),
    "a correction with list cost 0 and no prices": aws_usage(
        ChargeClass="Correction", ListCost=D("0"), **{c: None for c in (
            "SkuPriceId", "ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice",
            "PricingCurrencyContractedUnitPrice", "PricingQuantity", "PricingUnit", "PricingCategory",
            "ConsumedQuantity", "ConsumedUnit")}),
    "a spend commitment measured in money": ri_covered(CommitmentDiscountCategory="Spend",
                                                       CommitmentDiscountUnit="USD", CommitmentDiscountQuantity=D("2.3")),
    "a ratio unit with a denominator quantity": aws_usage(PricingUnit="Units/3 Months"),
    "unused capacity": aws_usage(CapacityReservationId="cr-0abc", CapacityReservationStatus="Unused"),
    "a tax row without a host": tax_row_sku(),
    "a credit with prices": credit(SkuId="promo", SkuPriceId="promo-1", ListUnitPrice=D("1"),
                                   ContractedUnitPrice=D("1"), PricingCurrencyListUnitPrice=D("1"),
                                   PricingCurrencyContractedUnitPrice=D("1"), PricingQuantity=D("-1"),
                                   PricingUnit="Units", PricingCategory="Other"),
}


def test_an_advisory_rule_is_reported_but_does_not_fail_the_gate():
    unpriced = aws_usage(ListUnitPrice=None, PricingCurrencyListUnitPrice=None)
    report = gate(valid_rows() + [unpriced])
    assert report.ok and report.advisories == {"CAU-ListUnitPrice-C-005-C": 1, "CAU-ListUnitPrice-C-013-C": 1,
                                               "CAU-PricingCurrencyListUnitPrice-C-005-C": 1,
                                               "CAU-PricingCurrencyListUnitPrice-C-012-C": 1}
    assert "4 advisory rules not met" in report.summary()
    broken = gate(valid_rows() + [unpriced, aws_usage(PricingUnit="Hour")])
    assert not broken.ok and set(broken.failed) == {"CAU-PricingUnit-C-003-O"}
    assert "  CAU-ListUnitPrice-C-005-C: 1 (advisory)" in broken.summary().splitlines()


@pytest.mark.parametrize("case", sorted(PASSING))
def test_rows_at_the_edge_of_a_rule_pass(case):
    report = gate(valid_rows() + [PASSING[case]])
    assert report.ok, report.summary()


# ---------------------------------------------------------------------------------------------
# Dataset rules: one value per key within the rows checked
# ---------------------------------------------------------------------------------------------
DATASET_CASES = {
    "EC2 as Compute and as Storage": (
        [aws_usage(), aws_usage(ServiceCategory="Storage", ServiceSubcategory="Block Storage",
                                ResourceId="vol-0abc", ResourceType="Volume", PricingUnit="GB-Months",
                                ConsumedUnit="GB-Months")],
        {"CAU-ServiceName-C-005-C": 1, "CAU-ServiceName-C-008-C": 1},
        "ServiceName='Amazon Elastic Compute Cloud' has ServiceCategory 'Compute', 'Storage'"),
    "one service, two subcategories": (
        [aws_usage(), aws_usage(ServiceSubcategory="Containers")], {"CAU-ServiceName-C-008-C": 1},
        "ServiceName='Amazon Elastic Compute Cloud' has ServiceSubcategory 'Containers', 'Virtual Machines'"),
    "one price, two SKUs": (
        [aws_usage(), aws_usage(SkuId="OTHERSKU")], {"CAU-SkuPriceId-C-008-M": 1},
        "SkuPriceId='JRTCKXETXF.JRTCKXETXF.6YS6EN2CT7' has SkuId 'JRTCKXETXF', 'OTHERSKU'"),
    "a commitment measured in two units": (
        [ri_covered(), ri_covered(CommitmentDiscountUnit="Units")], {"CAU-CommitmentDiscountUnit-C-008-M": 1},
        f"CommitmentDiscountId='{RI}' has CommitmentDiscountUnit 'Hours', 'Units'"),
    "one account, two provider names (CUR and FOCUS export)": (
        [aws_usage(), aws_usage(ProviderName="AWS")], {"CloudAct-ProviderName-D-001-M": 1},
        "BillingAccountId='123456789012' has ProviderName 'AWS', 'Amazon Web Services'"),
}


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_dataset_rules_sample_the_key_and_its_values(case):
    rows, expected, sample = DATASET_CASES[case]
    report = gate(valid_rows() + rows)
    assert report.violations == expected, report.summary()
    assert sample in report.samples[next(iter(sorted(expected)))]


def test_dataset_rules_count_keys_and_keep_three_samples():
    rows = [aws_usage(ServiceName=f"svc-{i}", ServiceCategory=c)
            for i in range(5) for c in ("Compute", "Storage")]
    report = gate(rows)
    assert report.violations["CAU-ServiceName-C-005-C"] == 5
    assert report.samples["CAU-ServiceName-C-005-C"] == [
        f"ServiceName='svc-{i}' has ServiceCategory 'Compute', 'Storage'" for i in range(3)]


def test_dataset_rules_see_only_the_checked_rows():
    wh = DuckDBWarehouse(None)
    try:
        wh.ensure_dataset("acme_prod")
        wh.ensure_table("acme_prod", focus.table_schema())
        wh.insert_rows("acme_prod", focus.TABLE, [aws_usage(), aws_usage(ProviderName="AWS", x_run_id="run-2")])
        assert not focus.check(wh, "acme_prod", "x_run_id = @r", {"r": "run-1"}).violations
        assert focus.check(wh, "acme_prod").violations == {"CloudAct-ProviderName-D-001-M": 1}
    finally:
        wh.close()


class _CountingWarehouse:
    def __init__(self, wh):
        self.wh, self.sql = wh, []

    def query(self, sql, params=None):
        self.sql.append(sql)
        return self.wh.query(sql, params)


def test_one_statement_for_the_row_rules_and_one_for_the_dataset_rules():
    wh = DuckDBWarehouse(None)
    try:
        wh.ensure_dataset("acme_prod")
        wh.ensure_table("acme_prod", focus.table_schema())
        wh.insert_rows("acme_prod", focus.TABLE, valid_rows() + cloud_rows())
        counted = _CountingWarehouse(wh)
        assert focus.check(counted, "acme_prod").ok
        # two statements: the row rules (a scan of the columns and one of the JSON columns' element marks,
        # see focus.row_query) and the dataset rules (one scan)
        assert len(counted.sql) == 2
        assert [s.count("cost_data_standard_1_3") for s in counted.sql] == [2, 1]
        wh.insert_rows("acme_prod", focus.TABLE, [aws_usage(PricingUnit="Hrs")])
        counted.sql.clear()
        assert focus.check(counted, "acme_prod").violations == {"CAU-PricingUnit-C-003-O": 1}
        assert len(counted.sql) == 3  # and the samples of the failing row rules
    finally:
        wh.close()


# ---------------------------------------------------------------------------------------------
# The issue-13 defects, each as the provider's rows showed it: the gate must refuse them
# ---------------------------------------------------------------------------------------------
def marketplace_usage(**over) -> dict:
    """An AWS Marketplace line (CUR 2.0: line_item_legal_entity = the seller, billing_entity =
    AWS Marketplace), billed 12.50 for one subscription unit."""
    return aws_usage(**{
        "ServiceName": "Datadog Pro", "ServiceCategory": "Management and Governance",
        "ServiceSubcategory": "Observability", "ServiceProviderName": "Datadog, Inc.", "PublisherName": "Datadog, Inc.",
        "InvoiceIssuerName": "Amazon Web Services, Inc.", "ResourceId": None, "ResourceType": None,
        "SkuId": "prod-abc123", "SkuPriceId": "prod-abc123.units", "SkuMeter": "Hosts",
        "ChargeDescription": "Datadog Pro hosts", "ConsumedQuantity": D("1"), "ConsumedUnit": "Units",
        "PricingQuantity": D("1"), "PricingUnit": "Units", "ListUnitPrice": D("12.5"), "ContractedUnitPrice": D("12.5"),
        "ListCost": D("12.5"), "ContractedCost": D("12.5"), "BilledCost": D("12.5"), "EffectiveCost": D("12.5"), **over})


def azure_reserved_vm(**over) -> dict:
    """Azure EA amortized cost details: a D2s v3 hour covered by a reservation (PayGPrice 0 on the
    covered line, unitPrice = the reservation's effective rate)."""
    return ri_covered(**{
        "ProviderName": "Microsoft", "PublisherName": "Microsoft", "ServiceProviderName": "Microsoft",
        "HostProviderName": "Microsoft", "InvoiceIssuerName": "Microsoft", "BillingAccountId": "8611537",
        "BillingAccountName": "Contoso EA", "ServiceName": "Virtual Machines", "SubAccountId": "sub-1",
        "SubAccountName": "Contoso Prod", "RegionId": "westeurope", "RegionName": "West Europe",
        "CommitmentDiscountId": "/providers/Microsoft.Capacity/reservationOrders/r1", "ResourceId": "/subscriptions/sub-1/vm1",
        "SkuId": "DZH318Z0BQ4L", "SkuPriceId": "DZH318Z0BQ4L.0001", "ConsumedQuantity": D("1"), "PricingQuantity": D("1"),
        "CommitmentDiscountQuantity": D("1"), "ListUnitPrice": D("0.12"), "ContractedUnitPrice": D("0.07"),
        "ListCost": D("0.12"), "ContractedCost": D("0.07"), "EffectiveCost": D("0.07"), **over})


DEFECTS = {
    "1 ListCost 0 on a Marketplace row billed 12.50": (
        [marketplace_usage(ListUnitPrice=D("0"), PricingCurrencyListUnitPrice=D("0"), ListCost=D("0"))],
        {"CloudAct-ListCost-C-001-M"}),
    "3 one account named by two input paths": (
        [aws_usage(), aws_usage(ProviderName="AWS", InvoiceIssuerName="AWS")], {"CloudAct-ProviderName-D-001-M"}),
    "4 EC2 as Compute and as Storage": (DATASET_CASES["EC2 as Compute and as Storage"][0],
                                        {"CAU-ServiceName-C-005-C", "CAU-ServiceName-C-008-C"}),
    "5 a usage type as PricingUnit": ([aws_usage(PricingUnit="USW2-AmazonApiGatewayRequest", ConsumedUnit="Request")],
                                      {"CAU-PricingUnit-C-003-O", "CAU-ConsumedUnit-C-003-O"}),
    "5 Bucket-Mo and 1K tokens": ([aws_usage(PricingUnit="Bucket-Mo"), _mutate(genai_input, PricingUnit="1K tokens")],
                                  {"CAU-PricingUnit-C-003-O"}),
    "6 a reservation purchase with EffectiveCost": (
        [azure_reserved_vm(ChargeCategory="Purchase", ChargeFrequency="One-Time", CommitmentDiscountStatus=None,
                           ConsumedQuantity=None, ConsumedUnit=None, PricingCategory="Standard",
                           BilledCost=D("613.2"), EffectiveCost=D("613.2"), ListUnitPrice=D("613.2"),
                           ContractedUnitPrice=D("613.2"), ListCost=D("613.2"), ContractedCost=D("613.2"),
                           CommitmentDiscountQuantity=D("8760"))],
        {"CAU-EffectiveCost-C-005-C", "CAU-PricingCurrencyEffectiveCost-C-005-M"}),
    "7 ListCost 0 from a PayG price of 0 on covered usage": (
        [azure_reserved_vm(ListUnitPrice=D("0"), PricingCurrencyListUnitPrice=D("0"), ListCost=D("0"))],
        {"CloudAct-ListCost-C-001-M"}),
    "8 a row billed in 2024-10 in the 2024-09 billing period": (
        [aws_usage(ProviderName="Oracle", PublisherName="Oracle", ServiceProviderName="Oracle", HostProviderName="Oracle",
                   InvoiceIssuerName="Oracle", BillingAccountId="ocid1.tenancy.oc1..aaa", ServiceName="Compute",
                   BillingPeriodStart=ts(1, 9).replace(year=2024), BillingPeriodEnd=ts(1, 10).replace(year=2024),
                   ChargePeriodStart=ts(1, 10).replace(year=2024), ChargePeriodEnd=ts(2, 10).replace(year=2024))],
        {"CloudAct-ChargePeriodStart-C-002-M"}),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_the_gate_refuses_each_defect_of_issue_13(defect):
    rows, expected = DEFECTS[defect]
    report = gate(valid_rows() + rows)
    assert set(report.violations) == expected, report.summary()


# ---------------------------------------------------------------------------------------------
# Unit Format
# ---------------------------------------------------------------------------------------------
GOOD_UNITS = ["GB-Hours", "Requests", "1000 Tokens", "GiB-Months", "Hours", "Units", "Bucket-Months",
              "1000000 Datapoints", "GB/Hour", "Units/3 Months", "Core-Hours/Day", "Request-Tokens", "KiB", "b",
              "Tokens/Minute", "GPUs", "Seconds", "PB/Day", "1000 Characters", "USD", "Microseconds", "Connections"]
BAD_UNITS = ["USW2-AmazonApiGatewayRequest", "Request", "Second", "1K tokens", "Bucket-Mo", "Hrs", "GB-Mo", "GBs",
             "Bytes", "terabyte", "tokens", "1,000 Tokens", "0 Tokens", "Weeks", "GB-Hrs", "GB per Hour",
             "Obj-Month", "Mo", "AmazonApiGatewayRequests", "Count", "", " Hours", "Units/0 Months",
             "Units/3 Month", "GB /Hour", "1000 Token", "Mins", "vCPU-Hours"]


def _unit_verdicts(units: list[str]) -> dict[str, bool]:
    """The gate's own SQL expression, transpiled and run on DuckDB: unit -> violates."""
    wh = DuckDBWarehouse(None)
    try:
        literals = ", ".join(focus._lit(u) for u in units)
        rows = wh.query(f"SELECT u, {focus.unit_format_violation('u')} AS bad FROM UNNEST([{literals}]) AS u")
    finally:
        wh.close()
    return {r["u"]: bool(r["bad"]) for r in rows}


def test_unit_format_accepts_the_spec_shapes_and_refuses_the_rest():
    verdicts = _unit_verdicts(GOOD_UNITS + BAD_UNITS)
    assert [u for u in GOOD_UNITS if verdicts[u]] == []
    assert [u for u in BAD_UNITS if not verdicts[u]] == []


def test_unit_format_python_and_sql_agree():
    """The documented pattern is the one the SQL uses (RE2 and Python agree on it)."""
    good, bad = re.compile(focus.UNIT_FORMAT), re.compile(focus.UNIT_FORBIDDEN)
    verdicts = _unit_verdicts(GOOD_UNITS + BAD_UNITS)
    for u, violates in verdicts.items():
        assert violates == (not good.search(u) or bool(bad.search(u))), u


# ---------------------------------------------------------------------------------------------
# Ids, coverage and the generated document
# ---------------------------------------------------------------------------------------------
_SPEC_ID = re.compile(r"^(CAU-[A-Za-z]+-[CO]-\d{3}-[MOC]|NullHandling-A-\d{3}-M)$")
_OUR_ID = re.compile(r"^CloudAct-[A-Za-z_]+-[CD]-\d{3}-[MOC]$")


def test_rule_ids_follow_the_spec_convention_and_ours_are_marked():
    for r in focus.RULES + focus.DATASET_RULES:
        assert _SPEC_ID.match(r.id) or _OUR_ID.match(r.id), r.id
        assert r.ours == r.id.startswith("CloudAct-")
    ours = {r.id for r in focus.RULES + focus.DATASET_RULES if r.ours}
    assert {"CloudAct-ListCost-C-001-M", "CloudAct-ProviderName-D-001-M", "CloudAct-ChargePeriodStart-C-002-M"} <= ours


def test_every_rule_has_a_failing_case():
    cases = [e for _, e in BROKEN.values()] + [e for _, e in CASES.values()] + \
            [e for _, e, _ in DATASET_CASES.values()]
    failed = {rule_id for expected in cases for rule_id in expected}
    failed |= {focus.NOT_NULL_IDS[n] for n in focus.NOT_NULL_IDS}
    assert {r.id for r in focus.RULES + focus.DATASET_RULES} - failed == set()


def test_the_rules_document_is_the_generated_one():
    assert focus.RULES_DOC_PATH.read_text() == focus.render_rules_doc(), \
        "stale: run python -m shared.focus --rules-doc"
    doc = focus.RULES_DOC_PATH.read_text()
    for r in focus.RULES + focus.DATASET_RULES:
        assert f"`{r.id}`" in doc
    checked = {r.id for r in focus.RULES + focus.DATASET_RULES}
    assert not checked & {u[0] for u in UNCHECKED}, "a requirement listed both as checked and as not checked"
    assert all(why for *_, why in UNCHECKED)


# ---------------------------------------------------------------------------------------------
# BigQuery: the gate's SQL resolves in ZetaSQL against the table
# ---------------------------------------------------------------------------------------------
def test_the_gate_queries_are_bigquery(zetasql):  # noqa: F811
    catalog = Catalog("proj")
    catalog.add_table("acme_prod", focus.TABLE, [(c.name, c.type) for c in focus.ALL_COLUMNS])
    ref, where = "`acme_prod.cost_data_standard_1_3`", "(x_run_id = @run)"
    params = {"run": {"typeKind": "TYPE_STRING"}}
    for sql in (focus.row_query(ref, where), focus.row_samples_query(ref, where, list(focus.RULES)),
                focus.dataset_query(ref, where)):
        findings = zetasql.check(sql, catalog, params)
        assert [f.error for f in findings] == [None], findings
