"""FOCUS 1.3 CostAndUsage: the one module that knows the columns, the table and the data-quality gate.

- `FOCUS_COLUMNS`: the 65 CostAndUsage columns in spec order (alphabetical), each with its BigQuery
  type, feature level (M = Mandatory, R = Recommended, C = Conditional), the spec's nullability and,
  where the spec enumerates them, the allowed values (kept as data in `focus_columns.yml`).
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

import yaml

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
COST_SOURCES = ("billed", "computed", "subscription", "cloud", "cloud_bill")


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


S, N, T, J = "STRING", "NUMERIC", "TIMESTAMP", "JSON"
COLUMNS_PATH = Path(__file__).with_name("focus_columns.yml")


def _focus_columns() -> tuple[Column, ...]:
    lists = {"CHARGE_CATEGORIES": CHARGE_CATEGORIES, "CHARGE_CLASSES": CHARGE_CLASSES,
             "CHARGE_FREQUENCIES": CHARGE_FREQUENCIES, "COMMITMENT_DISCOUNT_CATEGORIES": COMMITMENT_DISCOUNT_CATEGORIES,
             "COMMITMENT_DISCOUNT_STATUSES": COMMITMENT_DISCOUNT_STATUSES,
             "CAPACITY_RESERVATION_STATUSES": CAPACITY_RESERVATION_STATUSES, "PRICING_CATEGORIES": PRICING_CATEGORIES,
             "SERVICE_CATEGORIES": SERVICE_CATEGORIES, "ALL_SERVICE_SUBCATEGORIES": ALL_SERVICE_SUBCATEGORIES}
    return tuple(
        Column(name, c["type"], c["level"], c["allows_nulls"], c["description"],
               lists[c["allowed"]] if "allowed" in c else None, c.get("deprecated", False),
               required=c["level"] == "M" and not c["allows_nulls"])  # the one case never null in any row
        for name, c in yaml.safe_load(COLUMNS_PATH.read_text()).items()
    )


FOCUS_COLUMNS: tuple[Column, ...] = _focus_columns()

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
           "subscription (SaaS plan), cloud (cloud billing export) or cloud_bill (GenAI usage whose money a "
           "cloud bill holds: quantities, no cost).", COST_SOURCES),
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

#: Prefix of the rules that are ours, not the spec's (plausibility and consistency checks that catch
#: what a FinOps analyst sees at once). Spec rules carry the FOCUS 1.3 requirement id, e.g.
#: "CAU-ListCost-C-011-C" (dataset CostAndUsage, column, C = column rule / D = dataset rule, number,
#: M = MUST, O = SHOULD/MAY, C = conditional); ours follow the same convention under "CloudAct-".
OURS = "CloudAct-"


@dataclass(frozen=True)
class Rule:
    """One requirement checked on each row: `violation` is TRUE for a row that breaks it."""

    id: str
    column: str
    description: str  # the requirement, in the spec's words where it has them
    violation: str  # BigQuery boolean expression; NULL counts as no violation
    show: tuple[str, ...] = ()  # columns shown in samples
    keyword: str = "MUST"
    how: str = ""  # how a requirement the spec words as prose is decided on a row
    sample: str | None = None  # SQL text shown instead of `show` when columns do not say it

    @property
    def ours(self) -> bool:
        return self.id.startswith(OURS)


@dataclass(frozen=True)
class DatasetRule:
    """A requirement over the checked rows: each `key` value has one distinct non-null `value`."""

    id: str
    column: str
    description: str
    key: str  # STRING column grouped by
    value: str  # STRING column that must be single-valued per key
    keyword: str = "MUST"
    how: str = ""

    @property
    def ours(self) -> bool:
        return self.id.startswith(OURS)


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in_list(values) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


_CONTEXT = ("ServiceProviderName", "ServiceName", "ChargeCategory", "ChargePeriodStart")
# Flat key-value object: a key directly followed by an object or array value means nesting.
# (Heuristic on compact JSON text; an escaped quote inside a string value is excluded.)
_NESTED = r"(^|[^\\])\"\s*:\s*[\[{]"
# The keys of a flat JSON object's text (a string followed by a colon).
_JSON_KEY = r'"((?:[^"\\]|\\.)*)"\s*:'
_NUMBER = r"^-?[0-9]"  # the JSON text of a number value (a string value starts with a quote)


# Unit Format (FOCUS 1.3 attribute UnitFormat), decided on the whole value. A unit is
#   [<unit quantity> ]<measure>[/<denominator>]   measure: <plural> | <singular>-<plural>
#   denominator: <singular> | <denominator quantity> <plural>      quantities: positive integers
# Base units: the allowed data-size abbreviations (same form singular and plural), the allowed
# time units (Year..Microsecond, plural with "s"), an ISO 4217 code (a spend-based commitment is
# measured in money: a dimension the unit list does not cover), and count-based nouns. The spec
# recommends Count, Unit, Request, Token, Connection, Certificate, Domain, Core and allows other
# count nouns "as long as capitalized": we accept a capitalized word ([A-Z][a-z]+) or an acronym
# ([A-Z]{2,}), plural-looking when it ends in "s". Abbreviations of the allowed names (Hrs, Mo, Sec,
# ...), Week/Quarter (time units the spec does not allow) and spelled-out or pluralised data sizes
# (Bytes, terabyte, GBs) are refused anywhere in the value.
_MONEY = "<ISO 4217 code>"


def _unit_pattern() -> tuple[str, str]:
    """(the Unit Format pattern with `_MONEY` standing for the currency codes, the forbidden tokens)."""
    data = r"(?:[KMGTPE]i?)?[bB]"
    time = r"(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)"
    singular = rf"(?:{data}|{_MONEY}|{time}|[A-Z][a-z]+|[A-Z]{{2,}})"
    plural = rf"(?:{data}|{_MONEY}|{time}s|[A-Z][a-z]*s|[A-Z]{{2,}}s)"
    qty = r"[1-9][0-9]*"
    measure = rf"(?:{singular}-{plural}|{plural})"
    good = rf"^(?:{qty} )?{measure}(?:/(?:{qty} {plural}|{singular}))?$"
    sizes = r"(?:kilo|mega|giga|tera|peta|exa|kibi|mebi|gibi|tebi|pebi|exbi)?(?:bit|byte)s?|(?:[kmgtpe]i?)?bs"
    times = r"hrs?|mins?|secs?|mos?|mths?|yrs?|wks?|weeks?|quarters?|ms|nanoseconds?"
    return good, rf"(?i)(?:^|[ /-])(?:{times}|{sizes})(?:$|[ /-])"


def _currencies() -> tuple[str, ...]:
    from shared.subscriptions import CURRENCIES

    return tuple(sorted(CURRENCIES))


UNIT_FORMAT_SHAPE, UNIT_FORBIDDEN = _unit_pattern()
UNIT_FORMAT = UNIT_FORMAT_SHAPE.replace(_MONEY, "(?:" + "|".join(_currencies()) + ")")


def unit_format_violation(expr: str) -> str:
    """BigQuery boolean: the non-null STRING `expr` is not in Unit Format."""
    return (f"({expr} IS NOT NULL AND (NOT REGEXP_CONTAINS({expr}, r'{UNIT_FORMAT}') "
            f"OR REGEXP_CONTAINS({expr}, r'{UNIT_FORBIDDEN}')))")


def _elements(col: str) -> str:
    """The `Elements` array of a JSON object column as ARRAY<JSON>; NULL when it is not an array
    (JSON_QUERY_ARRAY would fail on DuckDB, and yield NULL on BigQuery)."""
    return (f"IF(STARTS_WITH(TO_JSON_STRING(JSON_QUERY({col}, '$.Elements')), '['), "
            f"JSON_QUERY_ARRAY({col}, '$.Elements'), NULL)")


#: Per JSON object column, the element predicates its rules need. They are evaluated in one correlated
#: subquery per column (`_checked_rows`), which marks each failing predicate by its code in a string:
#: one subquery per rule made the query ~5x slower to plan on DuckDB.
ELEMENT_CHECKS: dict[str, list[str]] = {}


def _any_element(col: str, predicate: str) -> str:
    """BigQuery boolean: some element of `col`'s Elements array satisfies `predicate` (over `e`)."""
    checks = ELEMENT_CHECKS.setdefault(col, [])
    checks.append(predicate)
    return f"STRPOS(IFNULL(gate_{col}, ''), 'e{len(checks) - 1};') > 0"


def _checked_rows(ref: str, where: str) -> str:
    """The rows checked, with the element marks of each JSON object column."""
    marks = []
    for col, predicates in ELEMENT_CHECKS.items():
        flags = ", ".join(f"IF({p}, 'e{i};', '')" for i, p in enumerate(predicates))
        marks.append(f"(SELECT STRING_AGG(CONCAT({flags}), '') FROM UNNEST({_elements(col)}) AS e) AS gate_{col}")
    return f"(SELECT *, {', '.join(marks)} FROM {ref} WHERE {where})"


def _json_number_missing(path: str) -> str:
    return f"NOT REGEXP_CONTAINS(TO_JSON_STRING(JSON_QUERY(e, '{path}')), r'{_NUMBER}')"


def _json_string_missing(path: str) -> str:
    return f"NOT STARTS_WITH(TO_JSON_STRING(JSON_QUERY(e, '{path}')), '\"')"


def _foreign_keys(allowed: tuple[str, ...]) -> str:
    """Element keys neither FOCUS-defined nor prefixed x_: what is left of the keys once the allowed
    ones are removed from the element's text."""
    allowed_key = rf'"(?:{"|".join(allowed)}|x_(?:[^"\\]|\\.)*)"\s*:'
    return f"REGEXP_CONTAINS(REGEXP_REPLACE(TO_JSON_STRING(e), r'{allowed_key}', ''), r'{_JSON_KEY}')"


# Not-null requirement ids of the columns that MUST NOT be null in every row. BillingAccountType is
# left out: we claim no MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED (see tools/conformance.py). The
# PricingCurrency pair is in: our table always carries the columns, and a present column must conform.
NOT_NULL_IDS = {
    "BilledCost": "CAU-BilledCost-C-003-M",
    "BillingAccountId": "CAU-BillingAccountId-C-003-M",
    "BillingCurrency": "CAU-BillingCurrency-C-004-M",
    "BillingPeriodEnd": "CAU-BillingPeriodEnd-C-003-M",
    "BillingPeriodStart": "CAU-BillingPeriodStart-C-003-M",
    "ChargeCategory": "CAU-ChargeCategory-C-002-M",
    "ChargeFrequency": "CAU-ChargeFrequency-C-002-M",
    "ChargePeriodEnd": "CAU-ChargePeriodEnd-C-003-M",
    "ChargePeriodStart": "CAU-ChargePeriodStart-C-003-M",
    "ContractedCost": "CAU-ContractedCost-C-003-M",
    "EffectiveCost": "CAU-EffectiveCost-C-003-M",
    "InvoiceIssuerName": "CAU-InvoiceIssuerName-C-003-M",
    "ListCost": "CAU-ListCost-C-003-M",
    "PricingCurrency": "CAU-PricingCurrency-C-004-M",
    "PricingCurrencyEffectiveCost": "CAU-PricingCurrencyEffectiveCost-C-003-M",
    "ProviderName": "CAU-ProviderName-C-003-M",
    "PublisherName": "CAU-PublisherName-C-003-M",
    "ServiceCategory": "CAU-ServiceCategory-C-002-M",
    "ServiceName": "CAU-ServiceName-C-003-M",
    "ServiceProviderName": "CAU-ServiceProviderName-C-003-M",
    "ServiceSubcategory": "CAU-ServiceSubcategory-C-002-M",
}
ALLOWED_VALUE_IDS = {
    "CapacityReservationStatus": "CAU-CapacityReservationStatus-C-006-M",
    "ChargeCategory": "CAU-ChargeCategory-C-003-M",
    "ChargeClass": "CAU-ChargeClass-C-005-C",
    "ChargeFrequency": "CAU-ChargeFrequency-C-003-M",
    "CommitmentDiscountCategory": "CAU-CommitmentDiscountCategory-C-005-M",
    "CommitmentDiscountStatus": "CAU-CommitmentDiscountStatus-C-005-M",
    "PricingCategory": "CAU-PricingCategory-C-007-M",
    "ServiceCategory": "CAU-ServiceCategory-C-003-M",
    "ServiceSubcategory": "CAU-ServiceSubcategory-C-003-M",
    "x_cost_source": "CloudAct-x_cost_source-C-001-M",
}
#: Placeholders NullHandling forbids in string columns (compared trimmed and lower-cased).
STRING_PLACEHOLDERS = ("", "n/a", "not applicable", "null", "none")

_USAGE_OR_PURCHASE = "ChargeCategory IN ('Usage', 'Purchase') AND ChargeClass IS NULL"
# A purchase that covers future charges: a one-time purchase of a commitment discount (its cost is
# amortized on the usage it covers). The spec's "intended to cover future eligible charges" is not a
# column; this is the part of it a row shows.
_COMMITMENT_PURCHASE = "ChargeCategory = 'Purchase' AND ChargeFrequency = 'One-Time' AND CommitmentDiscountId IS NOT NULL"


def _rules() -> tuple[Rule, ...]:
    rules: list[Rule] = []

    def add(rule_id, column_, description, violation, show=(), keyword="MUST", how="", sample=None):
        rules.append(Rule(rule_id, column_, description, violation, tuple(show), keyword, how, sample))

    def must_be_null(rule_id, col, when, description, show=()):
        add(rule_id, col, description, f"{col} IS NOT NULL AND ({when})", show or (col,))

    def must_not_be_null(rule_id, col, when, description, show=()):
        add(rule_id, col, description, f"{col} IS NULL AND ({when})", show or (col,))

    # The many columns that go with another one (a name with its id, a unit with its quantity).
    def null_when_null(rule_id, col, other):
        must_be_null(rule_id, col, f"{other} IS NULL", f"{col} MUST be null when {other} is null.", [other, col])

    def not_null_when_not_null(rule_id, col, other, show=()):
        must_not_be_null(rule_id, col, f"{other} IS NOT NULL", f"{col} MUST NOT be null when {other} is not null.",
                         show or [other, col])

    # Nullability of the columns that are never null, and allowed values (per row: the external
    # validator passes an enumeration when one row is right).
    for name, rule_id in NOT_NULL_IDS.items():
        add(rule_id, name, f"{name} MUST NOT be null.", f"{name} IS NULL", [x for x in _CONTEXT if x != name])
    for name, rule_id in ALLOWED_VALUE_IDS.items():
        values = COLUMNS_BY_NAME[name].allowed_values
        what = ", ".join(values) if len(values) <= 7 else f"one of the {len(values)} allowed values"
        add(rule_id, name, f"{name} MUST be {what} when not null.",
            f"{name} IS NOT NULL AND {name} NOT IN {_in_list(values)}", [name])
    per_category = " OR ".join(
        f"(ServiceCategory = {_lit(cat)} AND ServiceSubcategory IN {_in_list(SERVICE_SUBCATEGORIES[cat])})"
        for cat in SERVICE_CATEGORIES
    )
    add("CAU-ServiceSubcategory-C-004-M", "ServiceSubcategory",
        "ServiceSubcategory MUST have one and only one parent ServiceCategory (a subcategory of the row's category).",
        f"ServiceSubcategory IN {_in_list(ALL_SERVICE_SUBCATEGORIES)} AND NOT COALESCE(({per_category}), FALSE)",
        ["ServiceCategory", "ServiceSubcategory"])
    add("CAU-ChargeFrequency-C-004-C", "ChargeFrequency",
        'ChargeFrequency MUST NOT be "Usage-Based" when ChargeCategory is "Purchase".',
        "ChargeCategory = 'Purchase' AND ChargeFrequency = 'Usage-Based'", ["ChargeCategory", "ChargeFrequency"])

    # NullHandling: a missing value is NULL, never an empty string or a placeholder.
    strings = [c.name for c in FOCUS_COLUMNS if c.type == S]
    blank = {c: f"LOWER(TRIM({c})) IN {_in_list(STRING_PLACEHOLDERS)}" for c in strings}
    add("NullHandling-A-002-M", "(all string columns)",
        "Columns MUST NOT use empty strings or placeholder values such as \"Not Applicable\" to represent a null.",
        " OR ".join(blank.values()), how=f"a string column equal to one of {', '.join(map(repr, STRING_PLACEHOLDERS))}",
        sample="CONCAT('placeholder in:', " + ", ".join(f"IF({v}, ' {c}', '')" for c, v in blank.items()) + ")")

    # Periods, our own: a period is [start, end), so it is not empty; and a row billed in one month
    # does not land in another month's billing period.
    add(f"{OURS}ChargePeriodEnd-C-001-M", "ChargePeriodEnd",
        "ChargePeriodEnd MUST be after ChargePeriodStart (exclusive end of a non-empty period).",
        "ChargePeriodEnd <= ChargePeriodStart", ["ChargePeriodStart", "ChargePeriodEnd"])
    add(f"{OURS}BillingPeriodEnd-C-001-M", "BillingPeriodEnd",
        "BillingPeriodEnd MUST be after BillingPeriodStart (exclusive end of a non-empty period).",
        "BillingPeriodEnd <= BillingPeriodStart", ["BillingPeriodStart", "BillingPeriodEnd"])
    # Only the late side: usage billed after its period is normal (OCI's report bills usage of 30 Sep
    # 23:00 in October; GCP invoice months run on Pacific time), usage billed before it happened is not.
    add(f"{OURS}ChargePeriodStart-C-002-M", "ChargePeriodStart",
        "ChargePeriodStart of a non-correction Usage row MUST be before its BillingPeriodEnd (usage is not "
        "billed in a period that ended before it started).",
        "ChargeCategory = 'Usage' AND ChargeClass IS NULL AND ChargePeriodStart >= BillingPeriodEnd",
        ["ServiceProviderName", "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart"])

    # Currencies: ISO 4217 national currency. PricingCurrency may be virtual in the spec, but we claim
    # no VIRTUAL_CURRENCY_SUPPORTED: our prices are in national currencies too.
    iso = _in_list(_currencies())
    add("CAU-BillingCurrency-C-006-M", "BillingCurrency",
        "BillingCurrency MUST be expressed in national currency (ISO 4217, e.g. USD, EUR).",
        f"BillingCurrency NOT IN {iso}", ["BillingCurrency"])
    add("CAU-PricingCurrency-C-003-M", "PricingCurrency",
        "PricingCurrency MUST conform to CurrencyFormat requirements (ISO 4217 for a national currency).",
        f"PricingCurrency NOT IN {iso}", ["PricingCurrency"], how="we claim no VIRTUAL_CURRENCY_SUPPORTED")

    # Units: Unit Format (a SHOULD in the spec; we normalise every unit, so we enforce it).
    for rule_id, col in (("CAU-PricingUnit-C-003-O", "PricingUnit"), ("CAU-ConsumedUnit-C-003-O", "ConsumedUnit"),
                         ("CAU-CommitmentDiscountUnit-C-003-O", "CommitmentDiscountUnit")):
        add(rule_id, col, f"{col} SHOULD conform to UnitFormat requirements.", unit_format_violation(col),
            [col], keyword="SHOULD", how="see the Unit Format check below")
    null_when_null("CAU-PricingUnit-C-005-C", "PricingUnit", "PricingQuantity")
    not_null_when_not_null("CAU-PricingUnit-C-006-C", "PricingUnit", "PricingQuantity")
    null_when_null("CAU-ConsumedUnit-C-005-C", "ConsumedUnit", "ConsumedQuantity")
    not_null_when_not_null("CAU-ConsumedUnit-C-006-C", "ConsumedUnit", "ConsumedQuantity")

    # SKUs and prices. 1.3 ties the price columns to SkuPriceId: null without one, filled with one.
    must_be_null("CAU-SkuId-C-004-C", "SkuId", "ChargeCategory = 'Tax'", 'SkuId MUST be null when ChargeCategory is "Tax".',
                 ["ChargeCategory", "SkuId"])
    must_not_be_null("CAU-SkuId-C-005-C", "SkuId", _USAGE_OR_PURCHASE,
                     'SkuId MUST NOT be null when ChargeCategory is "Usage" or "Purchase" and ChargeClass is not "Correction".',
                     ["ServiceProviderName", "ServiceName", "ChargeCategory", "ChargeDescription"])
    must_be_null("CAU-SkuPriceId-C-004-C", "SkuPriceId", "ChargeCategory = 'Tax'",
                 'SkuPriceId MUST be null when ChargeCategory is "Tax".', ["ChargeCategory", "SkuPriceId"])
    must_not_be_null("CAU-SkuPriceId-C-005-C", "SkuPriceId", _USAGE_OR_PURCHASE,
                     'SkuPriceId MUST NOT be null when ChargeCategory is "Usage" or "Purchase" and ChargeClass is not '
                     '"Correction".', ["ServiceProviderName", "ServiceName", "ChargeCategory", "SkuId"])
    null_when_null("CAU-SkuMeter-C-004-C", "SkuMeter", "SkuId")
    null_when_null("CAU-SkuPriceDetails-C-004-C", "SkuPriceDetails", "SkuPriceId")

    def priced(col, null_id, tax_id, not_null_id, usage_id, non_negative_id, keyword_nn="MUST"):
        null_when_null(null_id, col, "SkuPriceId")
        if tax_id:
            must_be_null(tax_id, col, "ChargeCategory = 'Tax'", f'{col} MUST be null when ChargeCategory is "Tax".',
                         ["ChargeCategory", col])
        if not_null_id:
            not_null_when_not_null(not_null_id, col, "SkuPriceId")
        must_not_be_null(usage_id, col, _USAGE_OR_PURCHASE,
                         f'{col} MUST NOT be null when ChargeCategory is "Usage" or "Purchase" and ChargeClass is not '
                         '"Correction".', ["ServiceProviderName", "ServiceName", "ChargeCategory", "SkuPriceId"])
        if non_negative_id:
            add(non_negative_id, col, f"{col} MUST be a non-negative decimal value.", f"{col} < 0", [col])

    priced("ListUnitPrice", "CAU-ListUnitPrice-C-012-C", "CAU-ListUnitPrice-C-004-C", "CAU-ListUnitPrice-C-013-C",
           "CAU-ListUnitPrice-C-005-C", "CAU-ListUnitPrice-C-008-M")
    priced("ContractedUnitPrice", "CAU-ContractedUnitPrice-C-014-C", "CAU-ContractedUnitPrice-C-005-C",
           "CAU-ContractedUnitPrice-C-015-C", "CAU-ContractedUnitPrice-C-006-C", "CAU-ContractedUnitPrice-C-009-M")
    priced("PricingCurrencyListUnitPrice", "CAU-PricingCurrencyListUnitPrice-C-011-C",
           "CAU-PricingCurrencyListUnitPrice-C-004-C", "CAU-PricingCurrencyListUnitPrice-C-012-C",
           "CAU-PricingCurrencyListUnitPrice-C-005-C", "CAU-PricingCurrencyListUnitPrice-C-008-M")
    priced("PricingCurrencyContractedUnitPrice", "CAU-PricingCurrencyContractedUnitPrice-C-011-C",
           "CAU-PricingCurrencyContractedUnitPrice-C-004-C", "CAU-PricingCurrencyContractedUnitPrice-C-012-C",
           "CAU-PricingCurrencyContractedUnitPrice-C-005-C", "CAU-PricingCurrencyContractedUnitPrice-C-008-C")
    priced("PricingQuantity", "CAU-PricingQuantity-C-011-C", "CAU-PricingQuantity-C-004-C", None,
           "CAU-PricingQuantity-C-005-C", None)
    priced("PricingCategory", "CAU-PricingCategory-C-012-C", "CAU-PricingCategory-C-003-C", None,
           "CAU-PricingCategory-C-004-C", None)
    add("CAU-PricingCategory-C-009-C", "PricingCategory",
        'PricingCategory MUST be "Committed" when the charge is subject to an existing commitment discount and is '
        "not the purchase of the commitment discount.",
        "ChargeCategory = 'Usage' AND CommitmentDiscountStatus = 'Used' AND PricingCategory IS NOT NULL "
        "AND PricingCategory != 'Committed'", ["CommitmentDiscountId", "CommitmentDiscountStatus", "PricingCategory"],
        how='a Usage row with CommitmentDiscountStatus "Used" is subject to the commitment')

    # Consumed quantity.
    null_when_null("CAU-ConsumedQuantity-C-009-C", "ConsumedQuantity", "SkuPriceId")
    must_be_null("CAU-ConsumedQuantity-C-004-C", "ConsumedQuantity",
                 "ChargeCategory != 'Usage' OR CommitmentDiscountStatus = 'Unused'",
                 'ConsumedQuantity MUST be null when ChargeCategory is not "Usage", or when ChargeCategory is "Usage" '
                 'and CommitmentDiscountStatus is "Unused".', ["ChargeCategory", "CommitmentDiscountStatus", "ConsumedQuantity"])
    must_not_be_null("CAU-ConsumedQuantity-C-006-C", "ConsumedQuantity",
                     "ChargeCategory = 'Usage' AND ChargeClass IS NULL "
                     "AND COALESCE(CommitmentDiscountStatus, '') != 'Unused'",
                     'ConsumedQuantity MUST NOT be null when ChargeCategory is "Usage", CommitmentDiscountStatus is not '
                     '"Unused" and ChargeClass is not "Correction".',
                     ["ServiceProviderName", "ServiceName", "ChargeDescription", "SkuPriceId"])

    # Accounts, regions, resources.
    null_when_null("CAU-SubAccountName-C-004-C", "SubAccountName", "SubAccountId")
    not_null_when_not_null("CAU-SubAccountName-C-005-C", "SubAccountName", "SubAccountId")
    null_when_null("CAU-SubAccountType-C-004-C", "SubAccountType", "SubAccountId")
    null_when_null("CAU-RegionName-C-004-C", "RegionName", "RegionId")
    not_null_when_not_null("CAU-RegionName-C-005-C", "RegionName", "RegionId")
    must_be_null("CAU-ResourceName-C-004-C", "ResourceName", "ResourceId IS NULL",
                 "ResourceName MUST be null when ResourceId is null (or the resource has no display name).",
                 ["ResourceId", "ResourceName"])
    null_when_null("CAU-ResourceType-C-004-C", "ResourceType", "ResourceId")
    not_null_when_not_null("CAU-ResourceType-C-005-C", "ResourceType", "ResourceId",
                           ["ServiceProviderName", "ServiceName", "ResourceId"])

    # Commitment discounts.
    for col, null_id, not_null_id in (
        ("CommitmentDiscountCategory", "CAU-CommitmentDiscountCategory-C-003-C", "CAU-CommitmentDiscountCategory-C-004-C"),
        ("CommitmentDiscountType", "CAU-CommitmentDiscountType-C-004-C", "CAU-CommitmentDiscountType-C-005-C"),
        ("CommitmentDiscountName", "CAU-CommitmentDiscountName-C-004-C", None),
        ("CommitmentDiscountStatus", "CAU-CommitmentDiscountStatus-C-003-C", None),
    ):
        null_when_null(null_id, col, "CommitmentDiscountId")
        if not_null_id:
            not_null_when_not_null(not_null_id, col, "CommitmentDiscountId")
    must_not_be_null("CAU-CommitmentDiscountStatus-C-004-C", "CommitmentDiscountStatus",
                     "CommitmentDiscountId IS NOT NULL AND ChargeCategory = 'Usage'",
                     'CommitmentDiscountStatus MUST NOT be null when CommitmentDiscountId is not null and ChargeCategory '
                     'is "Usage".', ["CommitmentDiscountId", "ChargeCategory"])
    null_when_null("CAU-CommitmentDiscountQuantity-C-016-C", "CommitmentDiscountQuantity", "SkuPriceId")
    must_not_be_null("CAU-CommitmentDiscountQuantity-C-005-C", "CommitmentDiscountQuantity",
                     f"CommitmentDiscountId IS NOT NULL AND {_USAGE_OR_PURCHASE}",
                     'CommitmentDiscountQuantity MUST NOT be null when ChargeCategory is "Usage" or "Purchase", '
                     'CommitmentDiscountId is not null and ChargeClass is not "Correction".',
                     ["CommitmentDiscountId", "ChargeCategory"])
    must_be_null("CAU-CommitmentDiscountQuantity-C-007-C", "CommitmentDiscountQuantity",
                 "ChargeCategory NOT IN ('Usage', 'Purchase') OR CommitmentDiscountId IS NULL OR ChargeClass = 'Correction'",
                 "CommitmentDiscountQuantity MUST be null in all other cases (not Usage/Purchase, no CommitmentDiscountId, "
                 "or a correction).", ["CommitmentDiscountId", "ChargeCategory", "ChargeClass", "CommitmentDiscountQuantity"])
    null_when_null("CAU-CommitmentDiscountUnit-C-005-C", "CommitmentDiscountUnit", "CommitmentDiscountQuantity")
    not_null_when_not_null("CAU-CommitmentDiscountUnit-C-006-C", "CommitmentDiscountUnit", "CommitmentDiscountQuantity")

    # Capacity reservations.
    null_when_null("CAU-CapacityReservationStatus-C-003-C", "CapacityReservationStatus", "CapacityReservationId")
    must_not_be_null("CAU-CapacityReservationStatus-C-004-C", "CapacityReservationStatus",
                     "CapacityReservationId IS NOT NULL AND ChargeCategory = 'Usage'",
                     'CapacityReservationStatus MUST NOT be null when CapacityReservationId is not null and ChargeCategory '
                     'is "Usage".', ["CapacityReservationId", "ChargeCategory"])

    # Cost relations. 1.3 dropped the correction exemption of the products: whenever the unit price and
    # the quantity are there, the cost is their product.
    def product(rule_id, cost, price):
        f = lambda x: f"CAST({x} AS FLOAT64)"
        add(rule_id, cost, f"{cost} MUST equal the product of {price} and PricingQuantity when both are not null.",
            f"{price} IS NOT NULL AND PricingQuantity IS NOT NULL AND {cost} IS NOT NULL "
            f"AND ABS({f(price)} * {f('PricingQuantity')} - {f(cost)}) > "
            f"{PRODUCT_RELATIVE_TOLERANCE} * GREATEST(ABS({f(cost)}), 1)",
            [price, "PricingQuantity", cost], how=f"relative tolerance {PRODUCT_RELATIVE_TOLERANCE}")

    product("CAU-ListCost-C-011-C", "ListCost", "ListUnitPrice")
    product("CAU-ContractedCost-C-011-C", "ContractedCost", "ContractedUnitPrice")
    for rule_id, cost, price in (("CAU-ListCost-C-008-M", "ListCost", "ListUnitPrice"),
                                 ("CAU-ContractedCost-C-008-M", "ContractedCost", "ContractedUnitPrice"),
                                 ("CAU-EffectiveCost-C-010-M", "EffectiveCost", None)):
        when = f" and {price} is null" if price else ""
        add(rule_id, cost, f"{cost} of a charge unrelated to other charges (e.g. a Credit) MUST equal BilledCost.",
            f"ChargeCategory = 'Credit' {'AND ' + price + ' IS NULL ' if price else ''}AND {cost} != BilledCost",
            ["ChargeCategory", "BilledCost", cost], how=f"a Credit row{when} is unrelated to other charges")
    add("CAU-EffectiveCost-C-005-C", "EffectiveCost",
        'EffectiveCost MUST be 0 when ChargeCategory is "Purchase" and the purchase is intended to cover future '
        "eligible charges.", f"{_COMMITMENT_PURCHASE} AND EffectiveCost != 0",
        ["CommitmentDiscountId", "ChargeFrequency", "BilledCost", "EffectiveCost"],
        how="a One-Time Purchase of a commitment discount covers future charges")
    add("CAU-PricingCurrencyEffectiveCost-C-005-M", "PricingCurrencyEffectiveCost",
        "PricingCurrencyEffectiveCost MUST be 0 in the event of prepaid purchases.",
        f"{_COMMITMENT_PURCHASE} AND PricingCurrencyEffectiveCost != 0",
        ["CommitmentDiscountId", "ChargeFrequency", "PricingCurrencyEffectiveCost"],
        how="a One-Time Purchase of a commitment discount is prepaid")
    add(f"{OURS}ListCost-C-001-M", "ListCost",
        "ListCost MUST NOT be 0 on a non-correction Usage or Purchase row whose BilledCost or ContractedCost is "
        "positive: the list price is never below what was paid or contracted.",
        f"{_USAGE_OR_PURCHASE} AND ListCost = 0 AND (BilledCost > 0 OR ContractedCost > 0)",
        ["ServiceProviderName", "ServiceName", "BilledCost", "ContractedCost", "ListCost"])

    # JSON columns. Key-value ones are flat objects (values string, number, bool or null).
    for rule_id, col in (("CAU-Tags-C-001-M", "Tags"), ("CAU-AllocatedTags-C-001-M", "AllocatedTags"),
                         ("CAU-SkuPriceDetails-C-001-M", "SkuPriceDetails")):
        text = f"TO_JSON_STRING({col})"
        add(rule_id, col, f"{col} MUST conform to KeyValueFormat requirements (a flat JSON object).",
            f"{col} IS NOT NULL AND (NOT STARTS_WITH({text}, '{{') OR REGEXP_CONTAINS({text}, r'{_NESTED}'))", [col])
    _json_object_rules(add)

    # Providers.
    add("CAU-HostProviderName-C-006-M", "HostProviderName", "HostProviderName MUST NOT be null in all other cases.",
        "HostProviderName IS NULL AND ChargeCategory NOT IN ('Tax', 'Adjustment')",
        ["ServiceProviderName", "ServiceName", "ChargeCategory"],
        how='"the other cases": every row but Tax and Adjustment (C-005-C); the no-infrastructure case (C-004-C) '
            "is not told by a row")

    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids)), "duplicate rule ids"
    return tuple(rules)


_ALLOCATION_KEYS = ("AllocatedRatio", "UsageQuantity", "UsageUnit")
_CONTRACT_KEYS = ("ContractId", "ContractCommitmentId", "ContractCommitmentAppliedCost",
                  "ContractCommitmentAppliedQuantity", "ContractCommitmentAppliedUnit")


def _json_object_rules(add) -> None:
    """AllocatedMethodDetails and ContractApplied (1.3): {"Elements": [flat objects of defined keys]}."""
    for col, prefix in (("AllocatedMethodDetails", "CAU-AllocatedMethodDetails"),
                        ("ContractApplied", "CAU-ContractApplied")):
        object_id = f"{prefix}-C-003-M" if col == "AllocatedMethodDetails" else f"{prefix}-C-001-M"
        add(object_id, col, f"{col} MUST conform to JsonObjectFormat requirements (a JSON object).",
            f"{col} IS NOT NULL AND NOT STARTS_WITH(TO_JSON_STRING({col}), '{{')", [col])
    amd, ca = "AllocatedMethodDetails", "ContractApplied"
    elements_array = ("{c} MUST have a top-level key \"Elements\" which contains an array.",
                      "{c} IS NOT NULL AND STARTS_WITH(TO_JSON_STRING({c}), '{{') AND NOT IFNULL("
                      "STARTS_WITH(TO_JSON_STRING(JSON_QUERY({c}, '$.Elements')), '['), FALSE)")
    for col, oid in ((amd, "CAU-AllocatedMethodDetailsObject-O-001-M"), (ca, "CAU-ContractAppliedObject-O-001-M")):
        add(oid, col, elements_array[0].format(c=col), elements_array[1].format(c=col), [col])
    for col, oid in ((amd, "CAU-AllocatedMethodDetailsObject-O-002-M"), (ca, "CAU-ContractAppliedObject-O-003-M")):
        add(oid, col, 'Each item in "Elements" MUST be an object.',
            _any_element(col, "NOT STARTS_WITH(TO_JSON_STRING(e), '{')"), [col])
    for col, oid in ((amd, "CAU-AllocatedMethodDetailsObject-O-003-M"), (ca, "CAU-ContractAppliedObject-O-004-M")):
        add(oid, col, 'Objects inside "Elements" MUST conform to KeyValueFormat requirements (flat).',
            _any_element(col, f"REGEXP_CONTAINS(TO_JSON_STRING(e), r'{_NESTED}')"), [col])
    for col, oid, keys in ((amd, "CAU-AllocatedMethodDetailsObject-O-009-C", _ALLOCATION_KEYS),
                           (ca, "CAU-ContractAppliedObject-O-017-C", _CONTRACT_KEYS)):
        add(oid, col, 'Property keys inside "Elements" MUST begin with "x_" unless FOCUS-defined '
            f"({', '.join(keys)}).",
            _any_element(col, f"STARTS_WITH(TO_JSON_STRING(e), '{{') AND {_foreign_keys(keys)}"), [col])
    add("CAU-AllocatedMethodDetailsObject-O-012-M", amd, '"AllocatedRatio" MUST be included inside each "Elements" object.',
        _any_element(amd, "STARTS_WITH(TO_JSON_STRING(e), '{') AND JSON_QUERY(e, '$.AllocatedRatio') IS NULL"), [amd])
    add("CAU-AllocatedMethodDetailsObject-O-013-M", amd, 'Values for "AllocatedRatio" MUST be decimal values.',
        _any_element(amd, f"JSON_QUERY(e, '$.AllocatedRatio') IS NOT NULL AND {_json_number_missing('$.AllocatedRatio')}"),
        [amd])
    add("CAU-AllocatedMethodDetailsObject-O-016-C", amd,
        '"UsageUnit" MUST be included inside an "Elements" object if "UsageQuantity" is included in it.',
        _any_element(amd, "JSON_QUERY(e, '$.UsageQuantity') IS NOT NULL AND JSON_QUERY(e, '$.UsageUnit') IS NULL"), [amd])
    add("CAU-AllocatedMethodDetailsObject-O-021-M", amd, 'Values for "UsageQuantity" MUST be compatible with NumericFormat.',
        _any_element(amd, f"JSON_QUERY(e, '$.UsageQuantity') IS NOT NULL AND {_json_number_missing('$.UsageQuantity')}"),
        [amd])
    add("CAU-AllocatedMethodDetailsObject-O-018-O", amd, 'Values for "UsageUnit" SHOULD conform to UnitFormat requirements.',
        _any_element(amd, unit_format_violation("JSON_VALUE(e, '$.UsageUnit')")), [amd], keyword="SHOULD")
    add("CAU-ContractAppliedObject-O-007-M", ca,
        f'"Elements" objects MUST contain the five keys {", ".join(_CONTRACT_KEYS)}.',
        _any_element(ca, "STARTS_WITH(TO_JSON_STRING(e), '{') AND ("
                         + " OR ".join(f"JSON_QUERY(e, '$.{k}') IS NULL" for k in _CONTRACT_KEYS) + ")"), [ca])
    for oid, key in (("CAU-ContractAppliedObject-O-020-M", "ContractId"),
                     ("CAU-ContractAppliedObject-O-030-M", "ContractCommitmentId")):
        add(oid, ca, f'"{key}" MUST be of type String.',
            _any_element(ca, f"JSON_QUERY(e, '$.{key}') IS NOT NULL AND {_json_string_missing('$.' + key)}"), [ca])
    add("CAU-ContractAppliedObject-O-043-M", ca, '"ContractCommitmentAppliedCost" MUST be of type Decimal.',
        _any_element(ca, "JSON_QUERY(e, '$.ContractCommitmentAppliedCost') IS NOT NULL AND "
                         + _json_number_missing("$.ContractCommitmentAppliedCost")), [ca])
    add("CAU-ContractAppliedObject-O-039-C", ca,
        '"ContractCommitmentId" MUST be equal to ResourceId when ChargeCategory is "Purchase".',
        "ChargeCategory = 'Purchase' AND "
        + _any_element(ca, "JSON_VALUE(e, '$.ContractCommitmentId') IS DISTINCT FROM ResourceId"),
        ["ChargeCategory", "ResourceId", ca])


DATASET_RULES: tuple[DatasetRule, ...] = (
    DatasetRule("CAU-ServiceName-C-005-C", "ServiceName",
                "ServiceName MUST have one and only one ServiceCategory.", "ServiceName", "ServiceCategory"),
    DatasetRule("CAU-ServiceName-C-008-C", "ServiceName",
                "ServiceName SHOULD have one and only one ServiceSubcategory.", "ServiceName", "ServiceSubcategory",
                keyword="SHOULD", how="our service map gives each service one subcategory, so we enforce it"),
    DatasetRule("CAU-SkuPriceId-C-008-M", "SkuPriceId", "SkuPriceId MUST have one and only one parent SkuId.",
                "SkuPriceId", "SkuId"),
    DatasetRule("CAU-CommitmentDiscountUnit-C-008-M", "CommitmentDiscountUnit",
                "CommitmentDiscountUnit MUST remain consistent over time for a given CommitmentDiscountId.",
                "CommitmentDiscountId", "CommitmentDiscountUnit", how="within the checked rows"),
    DatasetRule(f"{OURS}ProviderName-D-001-M", "ProviderName",
                "A BillingAccountId MUST have one ProviderName, whatever input path its rows came from.",
                "BillingAccountId", "ProviderName"),
)

RULES: tuple[Rule, ...] = _rules()
RULES_BY_ID: dict[str, Rule | DatasetRule] = {r.id: r for r in RULES + DATASET_RULES}
#: check_arrow only: Mandatory FOCUS columns absent from the Arrow table (count = number missing).
MISSING_COLUMNS_RULE = "CAU-CostAndUsage-D-001-M"

#: Rules checked and reported, but not yet failing a run: the 1.3 requirements that tie unit prices,
#: quantities and SKUs to SkuPriceId (and make them mandatory on every Usage/Purchase row). They are
#: conditional on a provider publishing a unit price for every charge, and our conversions leave a unit
#: price NULL where none reproduces the cost (tiered and blended rates, NUMERIC rounding of a unit price)
#: and have no SkuPriceId on OCI cost reports. Moving a rule out of this set makes it fail runs.
ADVISORY_REASON = ("conditional on a unit price and a SkuPriceId for every charge, which not every input "
                   "gives: reported, not yet failing runs")
ADVISORY: frozenset[str] = frozenset({
    "CAU-SkuId-C-005-C", "CAU-SkuPriceId-C-005-C",
    "CAU-ListUnitPrice-C-005-C", "CAU-ListUnitPrice-C-012-C", "CAU-ListUnitPrice-C-013-C",
    "CAU-ContractedUnitPrice-C-006-C", "CAU-ContractedUnitPrice-C-014-C", "CAU-ContractedUnitPrice-C-015-C",
    "CAU-PricingCurrencyListUnitPrice-C-005-C", "CAU-PricingCurrencyListUnitPrice-C-011-C",
    "CAU-PricingCurrencyListUnitPrice-C-012-C", "CAU-PricingCurrencyContractedUnitPrice-C-005-C",
    "CAU-PricingCurrencyContractedUnitPrice-C-011-C", "CAU-PricingCurrencyContractedUnitPrice-C-012-C",
    "CAU-PricingQuantity-C-011-C", "CAU-PricingCategory-C-012-C", "CAU-ConsumedQuantity-C-009-C",
    "CAU-CommitmentDiscountQuantity-C-016-C",
})
assert ADVISORY <= {r.id for r in RULES}, "an advisory rule id that is not a rule"


@dataclass
class FocusReport:
    rows_checked: int
    violations: dict[str, int]  # failing rule id -> violating rows (dataset rules: violating keys)
    samples: dict[str, list[str]] = field(default_factory=dict)  # failing rule id -> up to 3 distinct samples
    rules_checked: tuple[str, ...] = ()

    @property
    def failed(self) -> dict[str, int]:
        """The violations that fail a run (all but the advisory rules')."""
        return {k: v for k, v in self.violations.items() if k not in ADVISORY}

    @property
    def advisories(self) -> dict[str, int]:
        return {k: v for k, v in self.violations.items() if k in ADVISORY}

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        head = f"FOCUS {FOCUS_VERSION} gate: {self.rows_checked} rows, {len(self.rules_checked)} rules"
        noted = f"; {len(self.advisories)} advisory rules not met ({ADVISORY_REASON})" if self.advisories else ""
        if self.ok:
            return f"{head}: OK{noted}"
        lines = [f"{head}: {len(self.failed)} rules failed{noted}"]
        for rule_id, count in sorted(self.failed.items()):
            rule = RULES_BY_ID.get(rule_id)
            what = rule.description if rule else "mandatory FOCUS columns missing"
            lines.append(f"  {rule_id}: {count} ({what})")
            for sample in self.samples.get(rule_id, []):
                lines.append(f"      e.g. {sample}")
        lines += [f"  {rule_id}: {count} (advisory)" for rule_id, count in sorted(self.advisories.items())]
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


def _sample_expr(rule: Rule) -> str:
    if rule.sample:
        return rule.sample
    parts = []
    for i, col in enumerate(rule.show):
        parts.append(_lit(("" if i == 0 else ", ") + col + "="))
        parts.append(f"IFNULL({_as_text(col)}, 'NULL')")
    return f"CONCAT({', '.join(parts)})"


def row_query(ref: str, where: str) -> str:
    """Each rule's flag per row, counted, in one statement of two scans: the rules on the row's columns, and
    the rules on the JSON element marks over only those columns. (One scan carrying every column through the
    marks' correlated subqueries took DuckDB 2.4x as long as the two; BigQuery reads only the columns a scan
    names, so the second scan costs it the JSON columns alone. Flags are computed per row first: BigQuery
    refuses correlated subqueries inside an aggregate.)"""
    plain = [i for i, r in enumerate(RULES) if "gate_" not in r.violation]
    marked = [i for i, r in enumerate(RULES) if "gate_" in r.violation]

    def counted(indices: list[int], rows: str, total: bool) -> str:
        flags = ", ".join(f"({RULES[i].violation}) AS v_{i}" for i in indices)
        counts = ", ".join(["COUNT(*) AS rows_checked"] * total + [f"COUNTIF(v_{i}) AS v_{i}" for i in indices])
        return f"(SELECT {counts} FROM (SELECT {flags} FROM {rows}))"

    rows = f"(SELECT * FROM {ref} WHERE {where})"
    if not marked:
        return f"SELECT * FROM {counted(plain, rows, True)}"
    return (f"SELECT * FROM {counted(plain, rows, True)} AS c "
            f"CROSS JOIN {counted(marked, _checked_rows(ref, where), False)} AS m")


def row_samples_query(ref: str, where: str, failing: list[Rule]) -> str:
    return " UNION ALL ".join(
        f"SELECT {_lit(r.id)} AS rule_id, sample FROM (SELECT DISTINCT {_sample_expr(r)} AS sample "
        f"FROM {_checked_rows(ref, where) if 'gate_' in r.violation else ref} "
        f"WHERE {'TRUE' if 'gate_' in r.violation else where} AND ({r.violation}) ORDER BY sample LIMIT 3)"
        for r in failing
    )


def dataset_query(ref: str, where: str) -> str:
    """One scan for every dataset rule: each row is paired with each rule's (key, value), grouped by
    rule and key; a key with more than one distinct value violates. Up to 3 keys per rule."""
    pairs = ", ".join(f"STRUCT({i} AS gate_rule, t.{d.key} AS gate_key, t.{d.value} AS gate_value)"
                      for i, d in enumerate(DATASET_RULES))
    return (
        "SELECT gate_rule, violations, gate_key, gate_values FROM ("
        "SELECT *, COUNT(*) OVER (PARTITION BY gate_rule) AS violations, "
        "ROW_NUMBER() OVER (PARTITION BY gate_rule ORDER BY gate_key) AS n FROM ("
        "SELECT p.gate_rule, p.gate_key, "
        "STRING_AGG(DISTINCT p.gate_value, \"', '\" ORDER BY p.gate_value) AS gate_values "
        f"FROM {ref} AS t, UNNEST([{pairs}]) AS p "
        f"WHERE {where} AND p.gate_key IS NOT NULL AND p.gate_value IS NOT NULL "
        "GROUP BY p.gate_rule, p.gate_key HAVING COUNT(DISTINCT p.gate_value) > 1)) "
        "WHERE n <= 3"
    )


def check(warehouse, dataset: str, where_sql: str = "TRUE", params: Mapping[str, Any] | None = None) -> FocusReport:
    """Count FOCUS 1.3 violations in `{dataset}.cost_data_standard_1_3` rows matching `where_sql`.

    `where_sql` is a BigQuery boolean expression written by our code (values go in `params` as
    `@name`), e.g. ``check(wh, "acme_prod", "x_run_id = @run", {"run": run_id})``.
    One query counts every row rule over the selected rows; one more evaluates the dataset rules
    (one value per key) over the same rows; a third, only when a row rule failed, fetches up to 3
    distinct samples per failing row rule.
    """
    if not isinstance(dataset, str) or not _DATASET.match(dataset):
        raise ValueError(f"invalid dataset name {dataset!r}")
    ref = f"`{dataset}.{TABLE}`"
    where = f"({where_sql})"
    row = warehouse.query(row_query(ref, where), params)[0]
    violations = {r.id: int(row[f"v_{i}"] or 0) for i, r in enumerate(RULES)}
    violations = {k: v for k, v in violations.items() if v}
    samples: dict[str, list[str]] = {}
    if violations:
        failing = [r for r in RULES if r.id in violations]
        for s in warehouse.query(row_samples_query(ref, where, failing), params):
            samples.setdefault(s["rule_id"], []).append(s["sample"])
    for s in warehouse.query(dataset_query(ref, where), params):
        rule = DATASET_RULES[int(s["gate_rule"])]
        violations[rule.id] = int(s["violations"])
        samples.setdefault(rule.id, []).append(f"{rule.key}='{s['gate_key']}' has {rule.value} '{s['gate_values']}'")
    for v in samples.values():
        v.sort()
    return FocusReport(
        rows_checked=int(row["rows_checked"] or 0),
        violations=violations,
        samples=samples,
        rules_checked=tuple(r.id for r in RULES + DATASET_RULES),
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
# The rules document
# --------------------------------------------------------------------------------------------------
RULES_DOC_PATH = SCHEMA_PATH.parent.parent / "docs" / "focus-rules.md"
#: Ids of checked rules taken from the model's numbering pattern: their column files are not among
#: the stored 1.3 model files we read (the others are quoted from them).
PATTERN_IDS = frozenset({
    "CAU-BillingAccountId-C-003-M", "CAU-BillingPeriodEnd-C-003-M", "CAU-ChargePeriodStart-C-003-M",
    "CAU-InvoiceIssuerName-C-003-M", "CAU-PublisherName-C-003-M", "CAU-AllocatedTags-C-001-M",
})


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_rules_doc() -> str:
    """docs/focus-rules.md: every FOCUS 1.3 requirement considered, checked or not (and why not)."""
    from shared.focus_unchecked import UNCHECKED

    out = [
        f"# FOCUS {FOCUS_VERSION} rules: what the gate checks",
        "",
        "Generated from `shared/focus.py` and `shared/focus_unchecked.yml` by "
        "`python -m shared.focus --rules-doc`; do not edit by hand (a test keeps it in sync).",
        "",
        "The gate (`shared.focus.check`, `check_arrow`) runs on every conversion, over the rows the run wrote. "
        "Ids are the FOCUS 1.3 requirements model's (`CAU-<Column>-C-<n>-<M|O|C>`: dataset CostAndUsage, "
        "column rule, number, MUST / optional / conditional). Ids starting `CloudAct-` are **ours, not the "
        "spec's**: plausibility rules that catch what a FinOps analyst sees at once. An id marked † follows "
        "the model's numbering for its column; the column's model file was not among those read. Rules the "
        "model words as prose (\"Dynamic\") are checked where a row shows the answer; the last column says how.",
        "",
        f"## Checked on every row ({len(RULES)} rules, one query)",
        "",
        f"A rule marked (advisory) is checked and reported on the run but does not fail it yet: {ADVISORY_REASON}. "
        f"{len(ADVISORY)} rules are advisory.",
        "",
        "| Id | Column | Requirement | Keyword | How a row is judged |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in RULES:
        mark = (" †" if r.id in PATTERN_IDS else "") + (" (advisory)" if r.id in ADVISORY else "")
        out.append(f"| `{r.id}`{mark} | {_cell(r.column)} | {_cell(r.description)} | {r.keyword} | {_cell(r.how)} |")
    out += [
        "",
        f"## Checked over the checked rows ({len(DATASET_RULES)} rules, one query)",
        "",
        "Each key must have one distinct non-null value among the rows checked (a run checks its own slice; "
        "`check_arrow` an exported file). Samples name the key and its values.",
        "",
        "| Id | Column | Requirement | Keyword | Grouped by | Single-valued |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in DATASET_RULES:
        out.append(f"| `{d.id}` | {d.column} | {_cell(d.description)} | {d.keyword} | {d.key} | {d.value} |")
    out += [
        "",
        "## Unit Format, precisely",
        "",
        "PricingUnit, ConsumedUnit, CommitmentDiscountUnit (and AllocatedMethodDetails' UsageUnit) must match",
        "",
        "    [<unit quantity> ]<measure>[/<denominator>]",
        "    measure:     <plural> | <singular>-<plural>",
        "    denominator: <singular> | <quantity> <plural>          quantities: positive integers",
        "",
        "where a base unit is a data-size abbreviation of the spec's table (b, B, Kb, KB, Kib, KiB ... EiB; the "
        "same in singular and plural), an allowed time unit (Year, Month, Day, Hour, Minute, Second, "
        "Millisecond, Microsecond; plural with s), an ISO 4217 code (spend-based commitments are measured in "
        "money), or a count noun: a capitalized word (`[A-Z][a-z]+`, e.g. Request, Token, Datapoint) or an "
        "acronym (`[A-Z]{2,}`); a plural one ends in s. Refused anywhere in the value: abbreviations of the "
        "allowed time names (Hr, Hrs, Min, Sec, Mo, Mth, Yr, Wk, ms), Week and Quarter, spelled-out or "
        "pluralised data sizes (Byte, Bytes, terabyte, GBs). So `GB-Hours`, `Requests`, `1000 Tokens`, "
        "`GiB-Months`, `Bucket-Months`, `1000000 Datapoints`, `GB/Hour`, `Units/3 Months` pass, and "
        "`Request`, `Second`, `1K tokens`, `Bucket-Mo`, `Hrs`, `USW2-AmazonApiGatewayRequest` fail.",
        "",
        "    good:      " + UNIT_FORMAT_SHAPE,
        "    forbidden: " + UNIT_FORBIDDEN,
        "",
        "## Checked by the table itself",
        "",
        "- Presence (`CAU-CostAndUsage-D-003-C` ... `-D-076-M`): the table has all 65 columns; `check_arrow` "
        f"reports Mandatory columns missing from a file as `{MISSING_COLUMNS_RULE}`.",
        "- Types and formats (`Type*`, `FormatNumeric`, `FormatDateTime`, \"MUST be a valid decimal value\"): "
        "the columns are typed (STRING, NUMERIC, TIMESTAMP, JSON in `schemas/cost_data_standard_1_3.json`); "
        "a value of another type cannot be stored, and `check_arrow` refuses a file column that does not cast.",
        "",
        f"## Not checked ({len(UNCHECKED)} requirements), and why",
        "",
        "| Id | Column | Requirement | Why not on rows |",
        "| --- | --- | --- | --- |",
    ]
    for rule_id, col, requirement, why in UNCHECKED:
        out.append(f"| `{rule_id}` | {_cell(col)} | {_cell(requirement)} | {_cell(why)} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.focus", description=__doc__.splitlines()[0])
    ap.add_argument("--write-schema", action="store_true", help=f"write {SCHEMA_PATH.relative_to(SCHEMA_PATH.parent.parent)}")
    ap.add_argument("--check-schema", action="store_true", help="exit 1 if the schema file is stale")
    ap.add_argument("--rules", action="store_true", help="list the gate's rules")
    ap.add_argument("--rules-doc", action="store_true", help="write docs/focus-rules.md")
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
        for r in RULES + DATASET_RULES:
            print(f"{r.id}\t{r.description}")
    if args.rules_doc:
        RULES_DOC_PATH.write_text(render_rules_doc())
        print(f"wrote {RULES_DOC_PATH} ({len(RULES) + len(DATASET_RULES)} rules checked)")
    if not (args.write_schema or args.check_schema or args.rules or args.rules_doc):
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
