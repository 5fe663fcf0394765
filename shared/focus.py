"""FOCUS 1.3 CostAndUsage: the one module that knows the columns, the table and the data-quality gate.

- `FOCUS_COLUMNS`: the 65 CostAndUsage columns in spec order (alphabetical), each with its BigQuery
  type, feature level (M = Mandatory, R = Recommended, C = Conditional), the spec's nullability and,
  where the spec enumerates them, the allowed values.
- `EXTRA_COLUMNS`: our custom columns after the FOCUS ones: the lineage fields, then `x_cost_source`.
- `render_schema()`: the `schemas/cost_data_standard_1_3.json` document
  (`python -m shared.focus --write-schema` writes it).
- `check(warehouse, dataset, where_sql, params)`: a set-based, per-row conformance gate in BigQuery SQL
  (it runs unchanged on the DuckDB backend). The external focus-validator checks enumerations only
  dataset-wide (one good row makes the rule pass), so this gate is what catches a bad value in one row.
- `check_arrow(table)`: the same gate over a pyarrow Table, in a throw-away in-memory DuckDB.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.lineage import LINEAGE_FIELDS

FOCUS_VERSION = "1.3"
TABLE = "cost_data_standard_1_3"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / f"{TABLE}.json"
PARTITION_FIELD = "ChargePeriodStart"
CLUSTERING = ("x_pipeline_id", "x_credential_id", "ServiceProviderName")

# --------------------------------------------------------------------------------------------------
# Allowed values
# --------------------------------------------------------------------------------------------------
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
CHARGE_CLASSES = ("Correction",)
CHARGE_FREQUENCIES = ("One-Time", "Recurring", "Usage-Based")
COMMITMENT_DISCOUNT_CATEGORIES = ("Spend", "Usage")
COMMITMENT_DISCOUNT_STATUSES = ("Used", "Unused")
CAPACITY_RESERVATION_STATUSES = ("Used", "Unused")
PRICING_CATEGORIES = ("Standard", "Dynamic", "Committed", "Other")

# ServiceCategory -> its ServiceSubcategory values (1.2 list, unchanged in 1.3). 19 categories.
SERVICE_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "AI and Machine Learning": (
        "AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
        "Other (AI and Machine Learning)",
    ),
    "Analytics": (
        "Analytics Platforms", "Business Intelligence", "Data Processing", "Search", "Streaming Analytics",
        "Other (Analytics)",
    ),
    "Business Applications": ("Productivity and Collaboration", "Other (Business Applications)"),
    "Compute": (
        "Containers", "End User Computing", "Quantum Compute", "Serverless Compute", "Virtual Machines",
        "Other (Compute)",
    ),
    "Databases": (
        "Caching", "Data Warehouses", "Ledger Databases", "NoSQL Databases", "Relational Databases",
        "Time Series Databases", "Other (Databases)",
    ),
    "Developer Tools": (
        "Developer Platforms", "Continuous Integration and Deployment", "Development Environments",
        "Source Code Management", "Quality Assurance", "Other (Developer Tools)",
    ),
    "Identity": ("Identity and Access Management", "Other (Identity)"),
    "Integration": ("API Management", "Messaging", "Workflow Orchestration", "Other (Integration)"),
    "Internet of Things": ("IoT Analytics", "IoT Platforms", "Other (Internet of Things)"),
    "Management and Governance": (
        "Architecture", "Compliance", "Cost Management", "Data Governance", "Disaster Recovery",
        "Endpoint Management", "Observability", "Support", "Other (Management and Governance)",
    ),
    "Media": ("Content Creation", "Gaming", "Media Streaming", "Mixed Reality", "Other (Media)"),
    "Migration": ("Data Migration", "Resource Migration", "Other (Migration)"),
    "Mobile": ("Other (Mobile)",),
    "Multicloud": ("Multicloud Integration", "Other (Multicloud)"),
    "Networking": (
        "Application Networking", "Content Delivery", "Network Connectivity", "Network Infrastructure",
        "Network Routing", "Network Security", "Other (Networking)",
    ),
    "Security": (
        "Secret Management", "Security Posture Management", "Threat Detection and Response", "Other (Security)",
    ),
    "Storage": (
        "Backup Storage", "Block Storage", "File Storage", "Object Storage", "Storage Platforms", "Other (Storage)",
    ),
    "Web": ("Application Platforms", "Other (Web)"),
    "Other": ("Other (Other)",),
}
# Spec order of the 19 categories (as the spec lists them).
SERVICE_CATEGORIES = (
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
    "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other",
)
ALL_SERVICE_SUBCATEGORIES = tuple(s for cat in SERVICE_CATEGORIES for s in SERVICE_SUBCATEGORIES[cat])

# Where a row's BilledCost came from (our custom column).
COST_SOURCES = ("billed", "computed", "subscription", "cloud")


# --------------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery type
    level: str  # "M" | "R" | "C" for FOCUS columns, "X" for our custom columns
    allows_nulls: bool  # the spec's "Allows nulls" (for R/C columns: once the column is present)
    description: str
    allowed_values: tuple[str, ...] | None = None
    deprecated: bool = False
    required: bool = False  # BigQuery mode REQUIRED: MUST NOT be null in every row

    @property
    def mode(self) -> str:
        return "REQUIRED" if self.required else "NULLABLE"


def _c(name, type_, level, allows_nulls, description, allowed=None, deprecated=False) -> Column:
    # A column is REQUIRED in the table only when it is Mandatory and never null (in all rows).
    return Column(name, type_, level, allows_nulls, description, allowed, deprecated,
                  required=(level == "M" and not allows_nulls))


S, N, T, J = "STRING", "NUMERIC", "TIMESTAMP", "JSON"

FOCUS_COLUMNS: tuple[Column, ...] = (
    _c("AllocatedMethodDetails", J, "C", True,
       'Split cost allocation method: {"Elements":[{"AllocatedRatio":..,"UsageQuantity":..,"UsageUnit":..}]}.'),
    _c("AllocatedMethodId", S, "C", True, "Split cost allocation method id; null unless the charge is split-allocated."),
    _c("AllocatedResourceId", S, "C", True, "Resource the split cost was allocated to; null unless allocated."),
    _c("AllocatedResourceName", S, "C", True, "Display name of the allocated resource."),
    _c("AllocatedTags", J, "C", True, "Tags of the allocated resource (flat JSON object); null when not allocated."),
    _c("AvailabilityZone", S, "C", True, "Provider-assigned availability zone; null when not zone-specific."),
    _c("BilledCost", N, "M", False, "Cost invoiced, in BillingCurrency."),
    _c("BillingAccountId", S, "M", False, "Billing account identifier."),
    _c("BillingAccountName", S, "M", True, "Billing account display name."),
    _c("BillingAccountType", S, "C", False, "Provider label of the billing account type."),
    _c("BillingCurrency", S, "M", False, "ISO 4217 currency of BilledCost and the other billing-currency costs."),
    _c("BillingPeriodEnd", T, "M", False, "Exclusive end of the billing period (UTC)."),
    _c("BillingPeriodStart", T, "M", False, "Inclusive start of the billing period (UTC)."),
    _c("CapacityReservationId", S, "C", True, "Capacity reservation identifier; null when not related to one."),
    _c("CapacityReservationStatus", S, "C", True, "Used or Unused capacity reservation.", CAPACITY_RESERVATION_STATUSES),
    _c("ChargeCategory", S, "M", False, "Highest-level charge classification.", CHARGE_CATEGORIES),
    _c("ChargeClass", S, "M", True, "Correction for corrections to an already-invoiced period, otherwise null.",
       CHARGE_CLASSES),
    _c("ChargeDescription", S, "M", True, "Self-contained description of the charge."),
    _c("ChargeFrequency", S, "R", False, "How often the charge occurs.", CHARGE_FREQUENCIES),
    _c("ChargePeriodEnd", T, "M", False, "Exclusive end of the charge period (UTC)."),
    _c("ChargePeriodStart", T, "M", False, "Inclusive start of the charge period (UTC)."),
    _c("CommitmentDiscountCategory", S, "C", True, "Spend- or usage-based commitment discount.",
       COMMITMENT_DISCOUNT_CATEGORIES),
    _c("CommitmentDiscountId", S, "C", True, "Commitment discount identifier; null when not related to one."),
    _c("CommitmentDiscountName", S, "C", True, "Commitment discount display name."),
    _c("CommitmentDiscountQuantity", N, "C", True, "Amount of the commitment discount purchased or used."),
    _c("CommitmentDiscountStatus", S, "C", True, "Used or Unused commitment discount.", COMMITMENT_DISCOUNT_STATUSES),
    _c("CommitmentDiscountType", S, "C", True, "Provider label of the commitment discount type."),
    _c("CommitmentDiscountUnit", S, "C", True, "Unit of CommitmentDiscountQuantity."),
    _c("ConsumedQuantity", N, "C", True, "Volume of the resource or service used (Usage rows only)."),
    _c("ConsumedUnit", S, "C", True, "Unit of ConsumedQuantity."),
    _c("ContractApplied", J, "C", True,
       'Contract commitments applied: {"Elements":[{"ContractId":..,"ContractCommitmentId":..,...}]}.'),
    _c("ContractedCost", N, "M", False, "ContractedUnitPrice x PricingQuantity (negotiated cost)."),
    _c("ContractedUnitPrice", N, "C", True, "Negotiated unit price per PricingUnit."),
    _c("EffectiveCost", N, "M", False, "Amortized cost after all discounts and prepayments."),
    _c("HostProviderName", S, "M", True, "Entity hosting the resource or service (else equal to ServiceProviderName)."),
    _c("InvoiceId", S, "R", True, "Invoice the charge is on; null when not on an issued or provisional invoice."),
    _c("InvoiceIssuerName", S, "M", False, "Entity responsible for invoicing."),
    _c("ListCost", N, "M", False, "ListUnitPrice x PricingQuantity (public list price cost)."),
    _c("ListUnitPrice", N, "C", True, "Public list unit price per PricingUnit."),
    _c("PricingCategory", S, "C", True, "Pricing model of the charge.", PRICING_CATEGORIES),
    _c("PricingCurrency", S, "C", False, "Currency prices are denominated in (ISO 4217 or virtual)."),
    _c("PricingCurrencyContractedUnitPrice", N, "C", True, "Contracted unit price in PricingCurrency."),
    _c("PricingCurrencyEffectiveCost", N, "C", False, "Effective cost in PricingCurrency."),
    _c("PricingCurrencyListUnitPrice", N, "C", True, "List unit price in PricingCurrency."),
    _c("PricingQuantity", N, "M", True, "Volume purchased or used, in PricingUnit."),
    _c("PricingUnit", S, "M", True, "Unit of PricingQuantity."),
    _c("ProviderName", S, "M", False, "Deprecated in 1.3 (use ServiceProviderName); still required.", deprecated=True),
    _c("PublisherName", S, "M", False, "Deprecated in 1.3; still required.", deprecated=True),
    _c("RegionId", S, "C", True, "Provider-assigned region id; null when not region-specific."),
    _c("RegionName", S, "C", True, "Region display name."),
    _c("ResourceId", S, "C", True, "Provider-assigned resource id; null when not resource-related."),
    _c("ResourceName", S, "C", True, "Resource display name."),
    _c("ResourceType", S, "C", True, "Kind of resource."),
    _c("ServiceCategory", S, "M", False, "Highest-level service classification.", SERVICE_CATEGORIES),
    _c("ServiceName", S, "M", False, "Offering that can be purchased from the service provider."),
    _c("ServiceProviderName", S, "M", False, "Entity that makes the resource or service available for purchase."),
    _c("ServiceSubcategory", S, "R", False, "Subcategory of ServiceCategory.", ALL_SERVICE_SUBCATEGORIES),
    _c("SkuId", S, "C", True, "Provider SKU identifier."),
    _c("SkuMeter", S, "C", True, "Functionality being metered or measured by the SKU."),
    _c("SkuPriceDetails", J, "C", True, "Properties of the SKU price (flat JSON object)."),
    _c("SkuPriceId", S, "C", True, "Provider SKU price identifier."),
    _c("SubAccountId", S, "C", True, "Sub account id (GCP project, AWS linked account, Azure subscription, ...)."),
    _c("SubAccountName", S, "C", True, "Sub account display name."),
    _c("SubAccountType", S, "C", True, "Provider label of the sub account type."),
    _c("Tags", J, "C", True, "User and provider tags (flat JSON object)."),
)

_LINEAGE_DESCRIPTIONS = {
    "x_org_slug": "Org that owns the row.",
    "x_pipeline_id": "Pipeline that wrote the row.",
    "x_credential_id": "Credential the data was read with.",
    "x_pipeline_run_date": "Data date the run processed.",
    "x_run_id": "Run that wrote the row.",
    "x_ingested_at": "When the row was written.",
    "x_ingestion_date": "Date the row was written.",
}

EXTRA_COLUMNS: tuple[Column, ...] = tuple(
    Column(name, type_, "X", False, _LINEAGE_DESCRIPTIONS.get(name, "Lineage."), required=True)
    for name, type_ in LINEAGE_FIELDS
) + (
    Column("x_cost_source", S, "X", True,
           "Where BilledCost came from: billed (provider-reported), computed (usage x price), "
           "subscription (SaaS plan) or cloud (cloud billing export).", COST_SOURCES),
)

ALL_COLUMNS: tuple[Column, ...] = FOCUS_COLUMNS + EXTRA_COLUMNS
COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in ALL_COLUMNS}
FOCUS_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS if c.required)
JSON_COLUMNS: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS if c.type == J)


def column(name: str) -> Column:
    return COLUMNS_BY_NAME[name]


# --------------------------------------------------------------------------------------------------
# Table schema
# --------------------------------------------------------------------------------------------------
def render_schema() -> dict:
    """The BigQuery JSON schema document of `cost_data_standard_1_3` (shared/schemas.py format)."""
    return {
        "table": TABLE,
        "scope": "org",
        "description": (
            f"FOCUS {FOCUS_VERSION} CostAndUsage rows (65 FOCUS columns in spec order), then lineage and "
            "x_cost_source. Generated by `python -m shared.focus --write-schema`; do not edit by hand."
        ),
        "time_partitioning": {"type": "DAY", "field": PARTITION_FIELD},
        "clustering": list(CLUSTERING),
        "fields": [
            {"name": c.name, "type": c.type, "mode": c.mode, "description": c.description} for c in ALL_COLUMNS
        ],
    }


def render_schema_text() -> str:
    return json.dumps(render_schema(), indent=2) + "\n"


def table_schema(relaxed: bool = False):
    """The table as a shared.schemas.TableSchema. `relaxed`: every column NULLABLE (for checking
    untrusted data, where a null in a required column must be reported rather than refused)."""
    from shared.schemas import Field, TableSchema

    doc = render_schema()
    return TableSchema(
        table=doc["table"],
        scope=doc["scope"],
        description=doc["description"],
        time_partitioning=doc["time_partitioning"],
        clustering=tuple(doc["clustering"]),
        fields=tuple(
            Field(f["name"], f["type"], "NULLABLE" if relaxed else f["mode"], f["description"])
            for f in doc["fields"]
        ),
    )


# --------------------------------------------------------------------------------------------------
# The data-quality gate
# --------------------------------------------------------------------------------------------------
_DATASET = re.compile(r"^[a-z][a-z0-9_]{1,62}$")

#: Tolerance of the X x Y = Z checks (ListCost, ContractedCost). Same as focus-validator 2.2.1:
#: |unit price x quantity - cost| <= 1e-9 x max(|cost|, 1), i.e. exact up to NUMERIC's 9-decimal
#: rounding. A looser 0.01 would pass rows the external conformance run rejects, and would hide
#: real errors on sub-cent GenAI rows. Computed in FLOAT64 so a NUMERIC x NUMERIC product cannot
#: overflow on either backend (FLOAT64 error is ~1e-16 relative, far below the tolerance).
PRODUCT_RELATIVE_TOLERANCE = "1e-9"


@dataclass(frozen=True)
class Rule:
    id: str  # "<Column>.<what>", e.g. "ChargeCategory.allowed"
    description: str
    violation: str  # BigQuery boolean expression, TRUE for a violating row (NULL counts as no violation)
    show: tuple[str, ...]  # columns shown in samples


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in_list(values) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


_CONTEXT = ("ServiceProviderName", "ServiceName", "ChargeCategory", "ChargePeriodStart")
# Flat key-value object: a key directly followed by an object or array value means nesting.
# (Heuristic on compact JSON text; an escaped quote inside a string value is excluded.)
_NESTED = r"(^|[^\\])\"\s*:\s*[\[{]"


def _rules() -> tuple[Rule, ...]:
    rules: list[Rule] = []

    def add(rule_id, description, violation, show):
        rules.append(Rule(rule_id, description, violation, tuple(show)))

    # Not null: Mandatory columns that MUST NOT be null in any row, and the columns the spec makes
    # non-nullable once present: our table (and its export) always has them. BillingAccountType is
    # left out: we claim no MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED (see tools/conformance.py). The
    # PricingCurrency* pair is in: with PUBLIC_PRICE_LIST_SUPPORTED the validator requires the columns
    # present, hence filled (PricingCurrency = BillingCurrency when prices are in the billing currency).
    for c in FOCUS_COLUMNS:
        if not c.allows_nulls and c.name != "BillingAccountType":
            add(f"{c.name}.not_null", f"{c.name} MUST NOT be null", f"{c.name} IS NULL",
                [x for x in _CONTEXT if x != c.name])

    # Allowed values, per row.
    for c in ALL_COLUMNS:
        if c.allowed_values:
            values = c.allowed_values
            what = ", ".join(values) if len(values) <= 7 else f"the {len(values)} allowed values"
            add(f"{c.name}.allowed", f"{c.name} must be one of {what}",
                f"{c.name} IS NOT NULL AND {c.name} NOT IN {_in_list(c.allowed_values)}", [c.name])

    per_category = " OR ".join(
        f"(ServiceCategory = {_lit(cat)} AND ServiceSubcategory IN {_in_list(SERVICE_SUBCATEGORIES[cat])})"
        for cat in SERVICE_CATEGORIES
    )
    add("ServiceSubcategory.matches_category", "ServiceSubcategory must be a subcategory of the row's ServiceCategory",
        f"ServiceSubcategory IN {_in_list(ALL_SERVICE_SUBCATEGORIES)} AND NOT COALESCE(({per_category}), FALSE)",
        ["ServiceCategory", "ServiceSubcategory"])

    # Periods and currency.
    add("ChargePeriodEnd.after_start", "ChargePeriodEnd must be after ChargePeriodStart",
        "ChargePeriodEnd <= ChargePeriodStart", ["ChargePeriodStart", "ChargePeriodEnd"])
    add("BillingPeriodEnd.after_start", "BillingPeriodEnd must be after BillingPeriodStart",
        "BillingPeriodEnd <= BillingPeriodStart", ["BillingPeriodStart", "BillingPeriodEnd"])
    add("BillingCurrency.format", "BillingCurrency must be an ISO 4217 code (3 upper-case letters)",
        "NOT REGEXP_CONTAINS(BillingCurrency, r'^[A-Z]{3}$')", ["BillingCurrency"])

    # Null-iff pairs.
    def null_iff(rule_id, a, b):
        add(rule_id, f"{a} must be null if and only if {b} is null", f"({a} IS NULL) != ({b} IS NULL)", [a, b])

    def null_when_null(rule_id, a, b):
        add(rule_id, f"{a} must be null when {b} is null", f"{b} IS NULL AND {a} IS NOT NULL", [a, b])

    null_iff("ConsumedUnit.null_iff_quantity", "ConsumedUnit", "ConsumedQuantity")
    null_iff("PricingUnit.null_iff_quantity", "PricingUnit", "PricingQuantity")
    null_when_null("SkuMeter.null_when_sku_null", "SkuMeter", "SkuId")
    null_when_null("SkuPriceDetails.null_when_price_id_null", "SkuPriceDetails", "SkuPriceId")
    null_iff("SubAccountName.null_iff_id", "SubAccountName", "SubAccountId")
    null_when_null("SubAccountType.null_when_id_null", "SubAccountType", "SubAccountId")
    null_iff("RegionName.null_iff_id", "RegionName", "RegionId")
    null_when_null("ResourceName.null_when_id_null", "ResourceName", "ResourceId")
    null_when_null("ResourceType.null_when_id_null", "ResourceType", "ResourceId")

    # Commitment discounts and capacity reservations.
    null_iff("CommitmentDiscountCategory.null_iff_id", "CommitmentDiscountCategory", "CommitmentDiscountId")
    null_iff("CommitmentDiscountType.null_iff_id", "CommitmentDiscountType", "CommitmentDiscountId")
    null_when_null("CommitmentDiscountName.null_when_id_null", "CommitmentDiscountName", "CommitmentDiscountId")
    null_when_null("CommitmentDiscountStatus.null_when_id_null", "CommitmentDiscountStatus", "CommitmentDiscountId")
    add("CommitmentDiscountStatus.required_for_usage",
        "CommitmentDiscountStatus must not be null on Usage rows with a CommitmentDiscountId",
        "CommitmentDiscountId IS NOT NULL AND ChargeCategory = 'Usage' AND CommitmentDiscountStatus IS NULL",
        ["CommitmentDiscountId", "ChargeCategory"])
    null_when_null("CommitmentDiscountQuantity.null_when_id_null", "CommitmentDiscountQuantity", "CommitmentDiscountId")
    add("CommitmentDiscountQuantity.required",
        "CommitmentDiscountQuantity must not be null on non-correction Usage/Purchase rows with a CommitmentDiscountId",
        "CommitmentDiscountId IS NOT NULL AND ChargeCategory IN ('Usage', 'Purchase') AND ChargeClass IS NULL "
        "AND CommitmentDiscountQuantity IS NULL",
        ["CommitmentDiscountId", "ChargeCategory"])
    null_iff("CommitmentDiscountUnit.null_iff_quantity", "CommitmentDiscountUnit", "CommitmentDiscountQuantity")
    null_when_null("CapacityReservationStatus.null_when_id_null", "CapacityReservationStatus", "CapacityReservationId")
    add("CapacityReservationStatus.required_for_usage",
        "CapacityReservationStatus must not be null on Usage rows with a CapacityReservationId",
        "CapacityReservationId IS NOT NULL AND ChargeCategory = 'Usage' AND CapacityReservationStatus IS NULL",
        ["CapacityReservationId", "ChargeCategory"])

    # Quantities.
    add("ConsumedQuantity.usage_only", "ConsumedQuantity must be null unless ChargeCategory is Usage",
        "ChargeCategory != 'Usage' AND ConsumedQuantity IS NOT NULL", ["ChargeCategory", "ConsumedQuantity"])
    add("ConsumedQuantity.null_when_unused", "ConsumedQuantity must be null when CommitmentDiscountStatus is Unused",
        "CommitmentDiscountStatus = 'Unused' AND ConsumedQuantity IS NOT NULL",
        ["CommitmentDiscountStatus", "ConsumedQuantity"])
    add("PricingQuantity.required", "PricingQuantity must not be null on non-correction Usage/Purchase rows",
        "ChargeCategory IN ('Usage', 'Purchase') AND ChargeClass IS NULL AND PricingQuantity IS NULL",
        ["ChargeCategory", "ServiceName", "ChargeDescription"])
    for col in ("ListUnitPrice", "ContractedUnitPrice", "PricingCategory", "PricingQuantity", "SkuId"):
        add(f"{col}.null_for_tax", f"{col} must be null when ChargeCategory is Tax",
            f"ChargeCategory = 'Tax' AND {col} IS NOT NULL", ["ChargeCategory", col])

    # Cost arithmetic.
    def product(rule_id, cost, price):
        f = lambda x: f"CAST({x} AS FLOAT64)"
        add(rule_id, f"{cost} must equal {price} x PricingQuantity (non-correction rows)",
            f"{price} IS NOT NULL AND PricingQuantity IS NOT NULL AND {cost} IS NOT NULL AND ChargeClass IS NULL "
            f"AND ABS({f(price)} * {f('PricingQuantity')} - {f(cost)}) > "
            f"{PRODUCT_RELATIVE_TOLERANCE} * GREATEST(ABS({f(cost)}), 1)",
            [price, "PricingQuantity", cost])

    product("ListCost.equals_unit_price_x_quantity", "ListCost", "ListUnitPrice")
    product("ContractedCost.equals_unit_price_x_quantity", "ContractedCost", "ContractedUnitPrice")
    for col in ("EffectiveCost", "ContractedCost"):
        add(f"{col}.credit_equals_billed", f"{col} must equal BilledCost on Credit rows",
            f"ChargeCategory = 'Credit' AND {col} != BilledCost", ["BilledCost", col])

    # JSON columns. Tags-like columns are flat key-value objects; the *Details/Applied ones objects.
    for col in ("Tags", "AllocatedTags", "SkuPriceDetails"):
        text = f"TO_JSON_STRING({col})"
        add(f"{col}.flat_json_object", f"{col} must be a flat JSON object (values string, number, bool or null)",
            f"{col} IS NOT NULL AND (NOT STARTS_WITH({text}, '{{') OR REGEXP_CONTAINS({text}, r'{_NESTED}'))", [col])
    for col in ("AllocatedMethodDetails", "ContractApplied"):
        add(f"{col}.json_object", f"{col} must be a JSON object",
            f"{col} IS NOT NULL AND NOT STARTS_WITH(TO_JSON_STRING({col}), '{{')", [col])

    # Providers.
    add("HostProviderName.required", "HostProviderName must not be null unless ChargeCategory is Tax or Adjustment",
        "HostProviderName IS NULL AND ChargeCategory NOT IN ('Tax', 'Adjustment')",
        ["ServiceProviderName", "ServiceName", "ChargeCategory"])

    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids)), "duplicate rule ids"
    return tuple(rules)


RULES: tuple[Rule, ...] = _rules()
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
#: check_arrow only: Mandatory FOCUS columns absent from the Arrow table (count = number missing).
MISSING_COLUMNS_RULE = "schema.mandatory_columns_present"


@dataclass
class FocusReport:
    rows_checked: int
    violations: dict[str, int]  # failing rule id -> number of violating rows (only failing rules)
    samples: dict[str, list[str]] = field(default_factory=dict)  # failing rule id -> up to 3 distinct samples
    rules_checked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        head = f"FOCUS {FOCUS_VERSION} gate: {self.rows_checked} rows, {len(self.rules_checked)} rules"
        if self.ok:
            return f"{head}: OK"
        lines = [f"{head}: {len(self.violations)} rules failed"]
        for rule_id, count in sorted(self.violations.items()):
            rule = RULES_BY_ID.get(rule_id)
            what = rule.description if rule else "mandatory FOCUS columns missing"
            lines.append(f"  {rule_id}: {count} ({what})")
            for sample in self.samples.get(rule_id, []):
                lines.append(f"      e.g. {sample}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _as_text(col: str) -> str:
    c = COLUMNS_BY_NAME[col]
    if c.type == J:
        return f"TO_JSON_STRING({col})"
    if c.type == S:
        return f"CONCAT(\"'\", {col}, \"'\")"
    return f"CAST({col} AS STRING)"


def _sample_expr(columns: tuple[str, ...]) -> str:
    parts = []
    for i, col in enumerate(columns):
        parts.append(_lit(("" if i == 0 else ", ") + col + "="))
        parts.append(f"IFNULL({_as_text(col)}, 'NULL')")
    return f"CONCAT({', '.join(parts)})"


def check(warehouse, dataset: str, where_sql: str = "TRUE", params: Mapping[str, Any] | None = None) -> FocusReport:
    """Count per-row FOCUS 1.3 violations in `{dataset}.cost_data_standard_1_3` rows matching `where_sql`.

    `where_sql` is a BigQuery boolean expression written by our code (values go in `params` as
    `@name`), e.g. ``check(wh, "acme_prod", "x_run_id = @run", {"run": run_id})``.
    One query counts every rule over all selected rows; a second one, only when something failed,
    fetches up to 3 distinct samples per failing rule.
    """
    if not isinstance(dataset, str) or not _DATASET.match(dataset):
        raise ValueError(f"invalid dataset name {dataset!r}")
    ref = f"`{dataset}.{TABLE}`"
    where = f"({where_sql})"
    counts = ", ".join(f"COUNTIF({r.violation}) AS v_{i}" for i, r in enumerate(RULES))
    row = warehouse.query(f"SELECT COUNT(*) AS rows_checked, {counts} FROM {ref} WHERE {where}", params)[0]
    violations = {r.id: int(row[f"v_{i}"] or 0) for i, r in enumerate(RULES)}
    violations = {k: v for k, v in violations.items() if v}
    samples: dict[str, list[str]] = {}
    if violations:
        failing = [r for r in RULES if r.id in violations]
        union = " UNION ALL ".join(
            f"SELECT {_lit(r.id)} AS rule_id, sample FROM (SELECT DISTINCT {_sample_expr(r.show)} AS sample "
            f"FROM {ref} WHERE {where} AND ({r.violation}) ORDER BY sample LIMIT 3)"
            for r in failing
        )
        for s in warehouse.query(f"SELECT rule_id, sample FROM ({union})", params):
            samples.setdefault(s["rule_id"], []).append(s["sample"])
        for v in samples.values():
            v.sort()
    return FocusReport(
        rows_checked=int(row["rows_checked"] or 0),
        violations=violations,
        samples=samples,
        rules_checked=tuple(r.id for r in RULES),
    )


def _arrow_for_table(table):
    """`table` conformed to the table's Arrow schema: missing columns as nulls, types cast, and JSON
    text that does not parse replaced by a JSON string of itself (so it fails the object rules
    instead of failing the load)."""
    import pyarrow as pa

    target = table_schema(relaxed=True).arrow_schema()
    n = table.num_rows
    arrays = []
    for f in target:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(n, f.type))
            continue
        col = table.column(f.name)
        if f.name in JSON_COLUMNS:
            values = []
            for v in col.to_pylist():
                if v is not None and not isinstance(v, str):
                    v = json.dumps(v)
                if v is not None:
                    try:
                        json.loads(v)
                    except ValueError:
                        v = json.dumps(v)
                values.append(v)
            col = pa.array(values, pa.string())
        try:
            col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(f"column {f.name}: cannot convert {col.type} to {f.type}: {e}") from None
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=target)


def check_arrow(table, chunk_rows: int = 50_000) -> FocusReport:
    """Run `check` over a pyarrow Table of FOCUS rows (lineage columns optional) in an in-memory DuckDB."""
    from shared.warehouse.duckdb import DuckDBWarehouse

    missing = [c.name for c in FOCUS_COLUMNS if c.level == "M" and c.name not in table.column_names]
    data = _arrow_for_table(table)
    dataset = "focus_check"
    wh = DuckDBWarehouse(None)
    try:
        wh.ensure_dataset(dataset)
        wh.ensure_table(dataset, table_schema(relaxed=True))
        for batch in data.to_batches(max_chunksize=chunk_rows):
            wh.insert_rows(dataset, TABLE, batch.to_pylist())
        report = check(wh, dataset)
    finally:
        wh.close()
    report.rules_checked = (MISSING_COLUMNS_RULE,) + report.rules_checked
    if missing:
        report.violations = {MISSING_COLUMNS_RULE: len(missing), **report.violations}
        report.samples[MISSING_COLUMNS_RULE] = missing
    return report


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.focus", description=__doc__.splitlines()[0])
    ap.add_argument("--write-schema", action="store_true", help=f"write {SCHEMA_PATH.relative_to(SCHEMA_PATH.parent.parent)}")
    ap.add_argument("--check-schema", action="store_true", help="exit 1 if the schema file is stale")
    ap.add_argument("--rules", action="store_true", help="list the gate's rules")
    args = ap.parse_args(argv)
    if args.write_schema:
        SCHEMA_PATH.write_text(render_schema_text())
        print(f"wrote {SCHEMA_PATH} ({len(ALL_COLUMNS)} columns)")
    if args.check_schema:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != render_schema_text():
            print(f"{SCHEMA_PATH} is stale: run python -m shared.focus --write-schema", file=sys.stderr)
            return 1
        print(f"{SCHEMA_PATH} is up to date")
    if args.rules:
        for r in RULES:
            print(f"{r.id}\t{r.description}")
    if not (args.write_schema or args.check_schema or args.rules):
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
