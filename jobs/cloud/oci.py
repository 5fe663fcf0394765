"""OCI cost reports -> oci_billing_raw (+ cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///path"}            a folder of cost-report (or FOCUS report) CSV / CSV.gz files
  {"tenancy_ocid", "user_ocid", "fingerprint", "private_key" (PEM), "region",
   "passphrase": optional (encrypted key), "endpoint": optional (Object Storage URL, e.g. a stub; in multi
   tenancy public https only, checked on every request, redirects included),
   "report": optional "cost" (default: reports/cost-csv/) | "focus" (FOCUS Reports/),
   "late_days": optional (default 7, see below)}

Oracle delivers the reports into an Oracle-owned bucket: Object Storage namespace `bling`, bucket = the
customer's tenancy OCID, readable once the tenancy has the `endorse group ... to read objects in tenancy
usage-report` policy. Cost reports are `reports/cost-csv/<number>-<part>.csv.gz`, a new one about every six
hours, append-only; FOCUS reports are `FOCUS Reports/YYYY/MM/DD/<file>.csv.gz`. Both kinds hold the same
charges, so one credential reads one kind (never both: that would count every charge twice).

Which objects a run reads: cost-report names carry no dates, so the object's timeCreated decides. An object
created before the run's first day cannot hold usage of the range; one created more than `late_days` after
its last day is taken to hold no late rows for it (OCI delivers late usage within 24 h; corrections come as
new rows in later files). FOCUS reports use the YYYY/MM/DD of their path the same way. Rows are then kept
only when their usage interval starts inside the range. For file:// every file is read (dated paths are
filtered the same way).

Columns are found by header name, whatever its case and surrounding blanks (cost report:
`lineItem/intervalUsageStart`, `cost/myCost`, ...; FOCUS report: `ChargePeriodStart`, `BilledCost`,
`oci_CompartmentId`, ...), so reordered or added columns are fine. A FOCUS report's own FOCUS 1.0 columns land
as written (billing account, EffectiveCost, ContractedCost, BillingPeriodEnd, RegionName, the commitment
columns, ...; OCI's older names too: `Region`, `Provider`, `InvoiceIssuer`, `UsageQuantity`), for the
converter to take as they are; billing_period_start is the date of its BillingPeriodStart (late usage is
billed in a later month), for a cost report the month of the usage. `tags/<namespace>.<key>` columns (cost report) or the `Tags` JSON (FOCUS report) become one flat JSON
object with lower-cased `namespace.key` keys. `billingUnitReadable` (`1 GiB MONTHS STORAGE_SIZE`) is
normalised to FOCUS Unit Format (`GiB-Months`) into pricing_unit.

Files are read by DuckDB SELECTs (each a `ScanPart` of a `shared.warehouse.scan.DuckScan`), one per run of
up to PART_FILES consecutive files with the same header (DuckDB reads them in parallel; every CSV column as
text, by its known header, without sniffing). The SELECT casts the columns (exact half-even NUMERIC), folds
the tags into JSON, derives the unit, keeps the in-range rows and stops on a row breaking a rule (no usage
start; an in-range row without a tenant or currency), naming the row's file. The embedded warehouse runs it
inside its own INSERT; other warehouses stream it as Arrow batches from a private, memory-capped DuckDB.
The warehouse sums the source totals from the landed rows (schemas/cloud_source_totals/oci_billing_raw.sql).
Object Storage objects are spooled to a temporary file first. `focus_unit` is the unit rule in Python (the SQL
follows it; tests hold the two equal).
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import duck_sql as sq
from jobs.cloud.common import (
    BadValue,
    DataFile,
    LocalFiles,
    format_of,
    not_a,
    require_columns,
)
from jobs.identity import guard_requests_session
from shared import tenancy, units
from shared.warehouse.scan import DuckScan, ScanPart

RAW_TABLE = "oci_billing_raw"
PROVIDER = "oci"
NAMESPACE = "bling"
PREFIXES = {"cost": "reports/cost-csv/", "focus": "FOCUS Reports/"}
LIST_PAGE = 1000  # ListObjects page size (the service maximum); tests lower it to exercise paging
DEFAULT_LATE_DAYS = 7
# Rows per Arrow batch when a warehouse other than the embedded one takes the rows (memory grows with it)
READ_BATCH_ROWS = 16_384

STRING, MONEY, FLAG, TIME, JSON_OBJECT = "string", "money", "flag", "time", "json"
# raw column -> (kind, cost-report header names, FOCUS-report header names), first present wins. Header names
# match without regard to case or surrounding blanks (OCI writes `ServiceSubCategory` and
# `PricingCurrencyEffectiveCost `); a FOCUS report's names are the FOCUS 1.3 one first, then OCI's older one.
COLUMN_MAP: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "reference_no": (STRING, ("lineItem/referenceNo",), ("oci_ReferenceNumber",)),
    "back_reference_no": (STRING, ("lineItem/backreferenceNo",), ("oci_BackReferenceNumber",)),
    "tenant_id": (STRING, ("lineItem/tenantId",), ("SubAccountId", "BillingAccountId")),
    "tenant_name": (STRING, (), ("SubAccountName",)),
    "compartment_id": (STRING, ("product/compartmentId",), ("oci_CompartmentId",)),
    "compartment_name": (STRING, ("product/compartmentName",), ("oci_CompartmentName",)),
    "service": (STRING, ("product/service",), ("ServiceName",)),
    "resource_type": (STRING, ("product/resource",), ("ResourceType",)),
    "resource_id": (STRING, ("product/resourceId",), ("ResourceId",)),
    "region": (STRING, ("product/region",), ("RegionId", "Region")),
    "availability_domain": (STRING, ("product/availabilityDomain",), ("AvailabilityZone",)),
    "subscription_id": (STRING, ("cost/subscriptionId",), ()),
    "sku_part_number": (STRING, ("cost/productSku",), ("SkuId",)),
    "sku_name": (STRING, ("product/Description", "product/description"), ("ChargeDescription",)),
    "billed_quantity": (MONEY, ("usage/billedQuantity",), ("PricingQuantity",)),
    "billed_quantity_overage": (MONEY, ("usage/billedQuantityOverage",), ("oci_BilledQuantityOverage",)),
    "unit_price": (MONEY, ("cost/unitPrice",), ("ContractedUnitPrice",)),
    "unit_price_overage": (MONEY, ("cost/unitPriceOverage",), ("oci_UnitPriceOverage",)),
    "my_cost": (MONEY, ("cost/myCost",), ("BilledCost",)),
    "my_cost_overage": (MONEY, ("cost/myCostOverage",), ("oci_CostOverage",)),
    "list_cost": (MONEY, (), ("ListCost",)),
    "list_unit_price": (MONEY, (), ("ListUnitPrice",)),
    "currency": (STRING, ("cost/currencyCode",), ("BillingCurrency",)),
    "billing_unit": (STRING, ("cost/billingUnitReadable",), ()),
    "sku_unit_description": (STRING, ("cost/skuUnitDescription",), ("PricingUnit", "UsageUnit")),
    "charge_category": (STRING, (), ("ChargeCategory",)),
    "overage_flag": (FLAG, ("cost/overageFlag",), ("oci_OverageFlag",)),
    # FOCUS-report columns a cost report has no counterpart of (NULL on cost reports)
    "billing_period_end": (TIME, (), ("BillingPeriodEnd",)),
    "billing_account_id": (STRING, (), ("BillingAccountId",)),
    "billing_account_name": (STRING, (), ("BillingAccountName",)),
    "billing_account_type": (STRING, (), ("BillingAccountType",)),
    "sub_account_type": (STRING, (), ("SubAccountType",)),
    "invoice_id": (STRING, (), ("InvoiceId",)),
    "invoice_issuer_name": (STRING, (), ("InvoiceIssuerName", "InvoiceIssuer")),
    "provider_name": (STRING, (), ("ProviderName", "Provider")),
    "publisher_name": (STRING, (), ("PublisherName", "Publisher")),
    "charge_frequency": (STRING, (), ("ChargeFrequency",)),
    "effective_cost": (MONEY, (), ("EffectiveCost",)),
    "contracted_cost": (MONEY, (), ("ContractedCost",)),
    "consumed_quantity": (MONEY, (), ("ConsumedQuantity", "UsageQuantity")),
    "consumed_unit": (STRING, (), ("ConsumedUnit", "UsageUnit")),
    "pricing_category": (STRING, (), ("PricingCategory",)),
    "pricing_currency": (STRING, (), ("PricingCurrency",)),
    "pricing_currency_contracted_unit_price": (MONEY, (), ("PricingCurrencyContractedUnitPrice",)),
    "pricing_currency_effective_cost": (MONEY, (), ("PricingCurrencyEffectiveCost",)),
    "pricing_currency_list_unit_price": (MONEY, (), ("PricingCurrencyListUnitPrice",)),
    "commitment_discount_id": (STRING, (), ("CommitmentDiscountId",)),
    "commitment_discount_name": (STRING, (), ("CommitmentDiscountName",)),
    "commitment_discount_category": (STRING, (), ("CommitmentDiscountCategory",)),
    "commitment_discount_type": (STRING, (), ("CommitmentDiscountType",)),
    "commitment_discount_status": (STRING, (), ("CommitmentDiscountStatus",)),
    "commitment_discount_quantity": (MONEY, (), ("CommitmentDiscountQuantity",)),
    "commitment_discount_unit": (STRING, (), ("CommitmentDiscountUnit",)),
    "capacity_reservation_id": (STRING, (), ("CapacityReservationId",)),
    "capacity_reservation_status": (STRING, (), ("CapacityReservationStatus",)),
    "region_name": (STRING, (), ("RegionName",)),
    "resource_name": (STRING, (), ("ResourceName",)),
    "service_category": (STRING, (), ("ServiceCategory",)),
    "service_subcategory": (STRING, (), ("ServiceSubcategory",)),
    "sku_meter": (STRING, (), ("SkuMeter",)),
    "sku_price_id": (STRING, (), ("SkuPriceId",)),
    "sku_price_details": (JSON_OBJECT, (), ("SkuPriceDetails",)),
}
COST_START, COST_END = "lineItem/intervalUsageStart", "lineItem/intervalUsageEnd"
FOCUS_START, FOCUS_END = "ChargePeriodStart", "ChargePeriodEnd"
REQUIRED = {
    "cost": (COST_START, "lineItem/tenantId", "cost/myCost", "cost/currencyCode"),
    "focus": (FOCUS_START, "BilledCost", "BillingCurrency"),
}


# --------------------------------------------------------------------------------------------------
# Units: OCI billingUnitReadable -> FOCUS Unit Format
# --------------------------------------------------------------------------------------------------
# billingUnitReadable is `<n> <size|NONE> <time|NONE> <measure>`: its slots say which word is a data size,
# which a time unit and what is measured. They give a phrase ('1 GiB MONTHS', '1 OCPU HOURS', '1000000
# Datapoints') whose unit shared.units makes, as it makes every path's (a description goes there as it is).
_SIZE_WORD = re.compile(r"(?i)^(?:[KMGTPE]I?B|B|BYTES?)$")
_TIME_WORD = re.compile(r"(?i)^(?:SECOND|MINUTE|HOUR|DAY|MONTH|YEAR)S?$")
_ACRONYMS = {"OCPU", "ECPU", "CPU", "VCPU", "GPU", "IP", "API", "SMS", "DNS", "HTTP", "URL", "TPS", "IOPS"}


def _count_noun(word: str, plural: bool) -> str | None:
    """`OCPUS` -> OCPU / OCPUs-as-count; `INSTANCE` -> Instance(s); None for multi-word or odd measures."""
    if not re.fullmatch(r"[A-Za-z]+", word or ""):
        return None
    up = word.upper()
    single = up[:-1] if up.endswith("S") and not up.endswith("SS") and up != "IOPS" else up
    base = single if single in _ACRONYMS else single.capitalize()
    if not plural:
        return base
    if up == "IOPS":
        return "IOPS"
    return base + ("s" if not base.endswith("s") else "")


def _readable_phrase(readable: str) -> str | None:
    """The unit phrase of billingUnitReadable's slots, None when the text does not fit them."""
    parts = readable.split()
    if len(parts) < 4 or not re.fullmatch(r"\d+(?:\.\d+)?", parts[0]):
        return None
    size, time, measure = parts[1], parts[2], "_".join(parts[3:])
    has_size, has_time = size.upper() != "NONE", time.upper() != "NONE"
    if (has_size and not _SIZE_WORD.match(size)) or (has_time and not _TIME_WORD.match(time)):
        return None
    if has_size:
        what = size
    elif has_time:
        what = _count_noun(measure, plural=False)
    else:
        what = _count_noun(measure, plural=True) or "Units"
    q = parts[0].rstrip("0").rstrip(".") if "." in parts[0] else parts[0]
    return " ".join(w for w in (q, what, time if has_time else None) if w)


@lru_cache(maxsize=4096)
def focus_unit(readable: str | None, description: str | None = None) -> str | None:
    """A FOCUS Unit Format unit for OCI's billingUnitReadable, else for skuUnitDescription / a FOCUS report's
    PricingUnit (`GB Months`, `Hours`); 'Units' when there is one but it makes no unit.

    1 GiB MONTHS STORAGE_SIZE -> GiB-Months; 1 GiB NONE DATA_TRANSFERRED -> GiB; 1 NONE HOURS OCPUS ->
    OCPU-Hours; 1 NONE HOURS INSTANCE -> Instance-Hours; 1000000 NONE NONE DATAPOINTS -> 1000000 Datapoints.
    """
    text = (_readable_phrase(readable) if readable else None) or description
    if text is None:
        return "Units" if readable else None
    return units.focus_unit(text) or "Units"


# --------------------------------------------------------------------------------------------------
# The same rules in SQL, for DuckDB to apply per row (focus_unit stays the reference: tests hold the two
# equal on every unit the generator, the samples and a grid of odd spellings produce)
# --------------------------------------------------------------------------------------------------
_WS = " \t\n\r\x0b\x0c"
_SPLIT = r"'[ \t\n\r\v\f]+'"


# billingUnitReadable values (and skuUnitDescription / PricingUnit spellings) OCI reports use: their units
# are looked up, as parsing them with the rules below costs more than all other columns together; any
# other text goes through the rules
KNOWN_READABLE = (
    "1 GiB HOURS DATA_TRANSFERRED", "1 GiB HOURS MEMORY", "1 GiB HOURS STORAGE_SIZE", "1 GiB MONTHS BACKUP_SIZE",
    "1 GiB MONTHS PERFORMANCE_UNITS", "1 GiB MONTHS STORAGE_SIZE", "1 GiB NONE DATA_TRANSFERRED",
    "1 NONE HOURS CLUSTER", "1 NONE HOURS ECPUS", "1 NONE HOURS GPUS", "1 NONE HOURS INSTANCE", "1 NONE HOURS MBPS",
    "1 NONE HOURS OCPUS", "1 NONE HOURS NODE", "1 TiB MONTHS STORAGE_SIZE", "1 TiB HOURS STORAGE_SIZE",
    "10000 GiB SECONDS EXECUTION_TIME", "10000 NONE NONE REQUESTS", "1000000 NONE NONE DATAPOINTS",
    "1000000 NONE NONE REQUESTS", "1000000 NONE NONE INVOCATIONS", "1 NONE NONE REQUESTS", "1 NONE MONTHS USERS",
)
KNOWN_DESCRIBED = (
    "10,000 GB Memory-Seconds", "10,000 Requests per Month", "Cluster Per Hour", "ECPU Hours", "GB Hours",
    "GB Months", "GB Of Data Transferred", "Gigabytes Per Hour", "Hours", "Instance per hour", "Mbps Per Hour",
    "Million Datapoints", "OCPU Hours", "TB", "GPU Hours", "Node Hours", "Requests",
)


def _let(value: str, name: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once (a lambda over a one-element list)."""
    return f"list_transform([{value}], lambda {name}: {body})[1]"


def _words_sql(text_expr: str) -> str:
    """str.split(): the words between runs of whitespace (all-blank text gives [''], which every rule below
    treats like Python's [])."""
    return f"regexp_split_to_array(trim({text_expr}, {sq.lit(_WS)}), {_SPLIT})"


def _noun_sql(w: str, plural: bool) -> str:
    up = f"upper({w})"
    single = f"CASE WHEN {up} = 'IOPS' OR {up} LIKE '%SS' THEN {up} ELSE regexp_replace({up}, 'S$', '') END"
    acronyms = ", ".join(sq.lit(a) for a in sorted(_ACRONYMS))
    base = f"CASE WHEN _s IN ({acronyms}) THEN _s ELSE left(_s, 1) || lower(substr(_s, 2)) END"
    if plural:
        noun = _let(base, "_b", "CASE WHEN _b = 'IOPS' OR ends_with(_b, 's') THEN _b ELSE _b || 's' END")
    else:
        noun = f"NULLIF({base}, '')"  # an empty noun counts as none, as in Python
    return f"(CASE WHEN regexp_full_match({w}, '[A-Za-z]+') THEN {_let(single, '_s', noun)} END)"


def _readable_phrase_sql(readable: str) -> str:
    """_readable_phrase of a text expression (NULL when it does not fit the slots)."""
    has_size, has_time = "upper(_w[2]) <> 'NONE'", "upper(_w[3]) <> 'NONE'"
    fits = (f"len(_w) >= 4 AND regexp_full_match(_w[1], '[0-9]+(\\.[0-9]+)?') "
            f"AND (NOT {has_size} OR regexp_full_match(_w[2], {sq.lit(_SIZE_WORD.pattern)})) "
            f"AND (NOT {has_time} OR regexp_full_match(_w[3], {sq.lit(_TIME_WORD.pattern)}))")
    measure = "array_to_string(list_slice(_w, 4, len(_w)), '_')"
    what = (f"CASE WHEN {has_size} THEN _w[2] WHEN {has_time} THEN {_noun_sql(measure, False)} "
            f"ELSE COALESCE({_noun_sql(measure, True)}, 'Units') END")
    qty = "CASE WHEN contains(_w[1], '.') THEN rtrim(rtrim(_w[1], '0'), '.') ELSE _w[1] END"
    body = f"CASE WHEN {fits} THEN concat_ws(' ', NULLIF({qty}, ''), {what}, CASE WHEN {has_time} THEN _w[3] END) END"
    return _let(_words_sql(readable), "_w", body)


@lru_cache(maxsize=1)
def _known() -> tuple[dict[str, str], dict[str, str]]:
    """The units of the known readables that decide alone, and of the known descriptions."""
    readable = {r: focus_unit(r, None) for r in KNOWN_READABLE if focus_unit(r, "Hours") == focus_unit(r, "GB")}
    return readable, {d: focus_unit(None, d) for d in KNOWN_DESCRIBED}


def _unit_sql(readable: str, described: str) -> str:
    """pricing_unit: focus_unit(readable, described) of two text expressions."""
    by_readable, by_described = _known()
    phrase = f"COALESCE(CASE WHEN {readable} IS NOT NULL THEN {_readable_phrase_sql(readable)} END, {described})"
    rules = (f"COALESCE({units.duckdb_sql(phrase)}, "
             f"CASE WHEN {readable} IS NOT NULL OR {described} IS NOT NULL THEN 'Units' END)")
    # a known readable decides alone (the description is used only when the readable does not parse)
    when_readable = " ".join(f"WHEN {sq.lit(r)} THEN {sq.lit(u)}" for r, u in by_readable.items())
    when_described = " ".join(f"WHEN {sq.lit(d)} THEN {sq.lit(u)}" for d, u in by_described.items())
    known = (f"{readable} IN ({', '.join(map(sq.lit, by_readable))}) OR ({readable} IS NULL AND "
             f"{described} IN ({', '.join(map(sq.lit, by_described))}))")
    return (f"CASE WHEN {known} THEN COALESCE(CASE {readable} {when_readable} END, CASE {described} {when_described} END) "
            f"ELSE {rules} END")


def _json_str_sql(v: str) -> str:
    """json.dumps(v) of a text expression. The tags have always been written with Python's ASCII escapes
    (lower-case \\uXXXX, surrogate pairs); DuckDB's to_json keeps UTF-8 and upper-cases them, so text with
    anything but printable ASCII is escaped character by character."""
    char = ("CASE WHEN c = '\"' THEN '\\\"' WHEN c = '\\' THEN '\\\\' WHEN unicode(c) = 10 THEN '\\n' "
            "WHEN unicode(c) = 13 THEN '\\r' WHEN unicode(c) = 9 THEN '\\t' WHEN unicode(c) = 8 THEN '\\b' "
            "WHEN unicode(c) = 12 THEN '\\f' WHEN unicode(c) BETWEEN 32 AND 126 THEN c "
            "WHEN unicode(c) < 65536 THEN printf('\\u%04x', unicode(c)) "
            "ELSE printf('\\u%04x\\u%04x', 55296 + ((unicode(c) - 65536) >> 10), 56320 + ((unicode(c) - 65536) & 1023)) END")
    return (f"CASE WHEN regexp_matches({v}, '[^ -~]') THEN '\"' || array_to_string(list_transform(string_split({v}, ''), "
            f"lambda c: {char}), '') || '\"' ELSE CAST(to_json({v}) AS VARCHAR) END")


def _json_value_sql(j: str) -> str:
    """A Tags document's value (JSON) as the text Python's str() gave its json.loads value (NULL for null)."""
    return (f"CASE json_type({j}) WHEN 'VARCHAR' THEN {j} ->> '$' WHEN 'NULL' THEN NULL "
            f"WHEN 'BOOLEAN' THEN CASE WHEN {j} ->> '$' = 'true' THEN 'True' ELSE 'False' END "
            f"WHEN 'DOUBLE' THEN CAST(CAST({j} AS DOUBLE) AS VARCHAR) ELSE CAST({j} AS VARCHAR) END")


def _service_flags_sql(category: str, subcategory: str) -> dict[str, str]:
    """service_category_valid / service_subcategory_valid: whether a FOCUS report's ServiceCategory is a FOCUS
    1.3 category, and its pair with ServiceSubcategory a 1.3 pair (the converter keeps only valid values)."""
    from shared.focus import SERVICE_CATEGORIES, SERVICE_SUBCATEGORIES

    pairs = [f"{c}\x1f{sub}" for c, subs in SERVICE_SUBCATEGORIES.items() for sub in subs]
    return {"service_category_valid": f"COALESCE({category} IN ({', '.join(map(sq.lit, SERVICE_CATEGORIES))}), false)",
            "service_subcategory_valid": (f"COALESCE(({category} || chr(31) || {subcategory}) IN "
                                          f"({', '.join(map(sq.lit, pairs))}), false)")}


def _tag_key(header: str) -> str | None:
    if header.startswith("tags/"):
        key = header[len("tags/"):].strip()
        return key.lower() or None
    return None


# --------------------------------------------------------------------------------------------------
# Report files as one SELECT
# --------------------------------------------------------------------------------------------------
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


class _Plan:
    """A file's header resolved once (cost report or FOCUS report) into the SELECT of its raw rows."""

    def __init__(self, columns: list[tuple[str, str, str]], fname: str):
        self.fname = fname
        names = [c[0] for c in columns]
        self.types = {c[0]: c[1] for c in columns}
        self.sql_names = {c[0]: c[2] for c in columns}
        present = set(names)
        if COST_START in present:
            self.kind = "cost"
        elif FOCUS_START in present:
            self.kind = "focus"
        else:
            self.kind = "cost"  # the usual case: name what a cost report needs
        require_columns(present, REQUIRED[self.kind], fname,
                        "OCI cost report" if self.kind == "cost" else "OCI FOCUS report")
        if self.kind == "focus" and not present & {"SubAccountId", "BillingAccountId"}:
            require_columns(present, ("SubAccountId",), fname, "OCI FOCUS report")
        self.start_col = COST_START if self.kind == "cost" else FOCUS_START
        end_col = COST_END if self.kind == "cost" else FOCUS_END
        self.end_col = end_col if end_col in present else None
        by_name: dict[str, str] = {}
        for n in names:
            by_name.setdefault(n.strip().lower(), n)

        def find(candidates) -> str | None:
            return next((by_name[c.lower()] for c in candidates if c.lower() in by_name), None)

        self.source: dict[str, str | None] = {}
        for raw, (_, cost_names, focus_names) in COLUMN_MAP.items():
            self.source[raw] = find(cost_names if self.kind == "cost" else focus_names)
        # a FOCUS report names the billing period of each row (late usage is billed in a later month)
        self.period_col = find(("BillingPeriodStart",)) if self.kind == "focus" else None
        self.tag_cols = [(n, k) for n in names if (k := _tag_key(n))]
        self.tags_doc = "Tags" if self.kind == "focus" and "Tags" in present else None
        self.correction_col = ("lineItem/isCorrection" if "lineItem/isCorrection" in present
                               else "ChargeClass" if "ChargeClass" in present else None)

    # -- typed expressions over one source column ------------------------------------------------
    def ref(self, col: str) -> str:
        return sq.q(self.sql_names[col])

    def text(self, col: str) -> str:
        return sq.text(self.ref(col), self.types[col])

    def trimmed(self, col: str) -> str:
        return f"trim({self.text(col)}, {sq.lit(_WS)})"

    def time(self, col: str) -> str:
        return sq.timestamp(self.ref(col), self.types[col])

    def json_object(self, col: str) -> str:
        """A JSON object's text as written; NULL for anything else."""
        t = self.trimmed(col)
        return f"CASE WHEN json_valid({t}) AND json_type(CAST({t} AS JSON)) = 'OBJECT' THEN {t} END"

    def money(self, col: str) -> str:
        return sq.round9(f"NULLIF({self.trimmed(col)}, '')")  # blanks and padded numbers, as pyarrow read them

    def flag(self, col: str) -> str:
        s = f"lower({self.trimmed(col)})"
        return (f"CASE WHEN {s} IN ({', '.join(map(sq.lit, _TRUE))}) THEN true "
                f"WHEN {s} IN ({', '.join(map(sq.lit, _FALSE))}) THEN false END")

    def in_range(self, ts: str, start: dt.date, end: dt.date) -> str:
        return f"CAST({ts} AS DATE) BETWEEN DATE {sq.lit(start.isoformat())} AND DATE {sq.lit(end.isoformat())}"

    # -- tags ----------------------------------------------------------------------------------------
    def _flat_tags(self) -> list[tuple[str, str]]:
        """(key, value) per key of the tags/ columns; on a repeated key the last non-empty column wins."""
        by_key: dict[str, list[str]] = {}
        for src, key in self.tag_cols:
            by_key.setdefault(key, []).append(self.text(src))
        return [(k, v[0] if len(v) == 1 else f"COALESCE({', '.join(reversed(v))})") for k, v in by_key.items()]

    def tags(self) -> tuple[dict[str, str], dict[str, str]]:
        """(columns of the typed level, columns of the outer level) that make `tags`: flat tag columns fold
        at once; a Tags document is first listed as {k, i, v} (_tag_list), then folded."""
        flat = self._flat_tags()
        if self.tags_doc is None:
            if not flat:
                return {"tags": "CAST(NULL AS VARCHAR)"}, {}
            flat.sort()
            # one escaping expression over the list of values, not one per column: a smaller SELECT to plan
            values = f"list_transform([{', '.join(v for _, v in flat)}], lambda v: {_json_str_sql('v')})"
            parts = [f"{sq.lit(json.dumps(k) + ':')} || _j[{i}]" for i, (k, _) in enumerate(flat, 1)]
            return {"tags": _let(values, "_j", f"NULLIF('{{' || concat_ws(',', {', '.join(parts)}) || '}}', '{{}}')")}, {}
        doc = self.text(self.tags_doc)
        # a document's later key wins even when empty (it then drops the tag); a tags/ column, after the
        # document, only when it has a value
        entries = (f"CASE WHEN json_valid({doc}) AND json_type({doc}) = 'OBJECT' THEN list_transform(map_entries("
                   f"json_transform({doc}, '\"MAP(VARCHAR, JSON)\"')), lambda e, i: {{'k': lower(e.key), "
                   f"'i': CAST(i AS BIGINT), 'v': {_json_value_sql('e.value')}}}) END")
        if flat:
            cols = ", ".join(f"{{'k': {sq.lit(k)}, 'i': CAST({1_000_000 + n} AS BIGINT), 'v': {v}}}"
                             for n, (k, v) in enumerate(flat))
            entries = f"list_concat({entries}, list_filter([{cols}], lambda x: x.v IS NOT NULL))"
        listed = f"list_sort(COALESCE({entries}, []))"
        kept = ("list_filter(_tag_list, lambda x, i: (i = len(_tag_list) OR _tag_list[i + 1].k <> x.k) "
                "AND x.k <> '' AND x.v IS NOT NULL AND x.v <> '')")
        json_text = (f"CASE WHEN len({kept}) = 0 THEN NULL ELSE '{{' || array_to_string(list_transform({kept}, "
                     f"lambda x: {_json_str_sql('x.k')} || ':' || {_json_str_sql('x.v')}), ',') || '}}' END")
        return {"_tag_list": listed}, {"tags": json_text}

    # -- the whole SELECT ----------------------------------------------------------------------------
    def guards(self) -> dict[str, tuple[str, bool]]:
        """Row rules: message -> (condition over the file's own columns true for a row breaking it, whether it
        holds for rows out of the run's range too). The condition also counts the breaking rows (`explain`)."""
        return {
            f"rows have no {self.start_col}": (f"{self.text(self.start_col)} IS NULL", True),
            **{f"rows have an empty {self.source[c]}": (f"{self.text(self.source[c])} IS NULL", False)
               for c in ("tenant_id", "currency")},
        }

    def sql(self, src: str, start: dt.date, end: dt.date, out_schema: pa.Schema, names: dict[str, str]) -> str:
        """The SELECT over `src` (csv_files_sql of the files whose local path -> name are `names`)."""
        month = "CAST(date_trunc('month', CAST(_start AS DATE)) AS DATE)"
        cols: dict[str, str] = {
            "usage_date": "CAST(_start AS DATE)",
            "interval_start": "_start",
            "interval_end": (sq.timestamp(self.ref(self.end_col), self.types[self.end_col]) if self.end_col
                             else "CAST(NULL AS TIMESTAMPTZ)"),
            "billing_period_start": (f"COALESCE(CAST({self.time(self.period_col)} AS DATE), {month})"
                                     if self.period_col else month),
            "report_type": sq.lit(self.kind),
        }
        for raw, (kind, _, _) in COLUMN_MAP.items():
            col = self.source[raw]
            if col is None:
                cols[raw] = {MONEY: f"CAST(NULL AS {sq.MONEY})", FLAG: "CAST(NULL AS BOOLEAN)",
                             TIME: "CAST(NULL AS TIMESTAMPTZ)"}.get(kind, "CAST(NULL AS VARCHAR)")
            else:
                cols[raw] = {MONEY: self.money, FLAG: self.flag, TIME: self.time,
                             JSON_OBJECT: self.json_object}.get(kind, self.text)(col)
        cols["my_cost"] = f"COALESCE({cols['my_cost']}, CAST(0 AS {sq.MONEY}))"
        cols.update(_service_flags_sql(cols["service_category"], cols["service_subcategory"]))
        if self.correction_col is None:
            cols["is_correction"] = "false"
        elif self.correction_col == "ChargeClass":
            cols["is_correction"] = f"COALESCE(lower({self.text('ChargeClass')}) = 'correction', false)"
        else:
            cols["is_correction"] = f"COALESCE({self.flag(self.correction_col)}, false)"
        typed_tags, final = self.tags()
        cols.update(typed_tags)
        typed = ",\n  ".join(f"{e} AS {sq.q(n)}" for n, e in cols.items())
        final["pricing_unit"] = _unit_sql("billing_unit", "sku_unit_description")
        outer = ", ".join(f"{final[f.name]} AS {sq.q(f.name)}" if f.name in final else sq.q(f.name)
                          for f in out_schema)
        # a broken rule stops the read naming the row's file (see sq.guarded_where)
        stop = {msg: f"error({sq.lit(sq.CHECK_MARK)} || _file || {sq.lit(': ' + msg)})" for msg in self.guards()}
        rules = [f"WHEN {cond} THEN {stop[msg]}" for msg, (cond, _) in self.guards().items()]
        in_range = self.in_range("_start", start, end)
        # rows without a start fail even out of the range
        where = f"CASE {rules[0]} WHEN {in_range} THEN CASE {' '.join(rules[1:])} ELSE true END ELSE false END"
        start_ts = sq.timestamp(self.ref(self.start_col), self.types[self.start_col])
        file = (sq.lit(next(iter(names.values()))) if len(names) == 1 else
                "CASE filename " + " ".join(f"WHEN {sq.lit(p)} THEN {sq.lit(n)}" for p, n in names.items()) + " END")
        return (f"SELECT {outer} FROM (SELECT {typed}, _file AS source_file FROM (SELECT *, {start_ts} AS _start, "
                f"{file} AS _file FROM {src}) WHERE {where})")

    # -- errors ----------------------------------------------------------------------------------------
    def explain(self, e: BaseException, f: DataFile, src: str, start: dt.date, end: dt.date) -> BaseException:
        """The user's error for a failed SELECT: a broken row rule counts its rows, a value that cannot be
        cast names its column and the value, in the words the pyarrow reader used."""
        err = sq.read_error(e, f, lambda e: self._bad_value(e, f, src, start, end))
        prefix = f"{self.fname}: "
        rule = self.guards().get(str(err).removeprefix(prefix)) if isinstance(err, ExtractError) else None
        if rule is None:
            return err
        cond, everywhere = rule
        if not everywhere:
            cond = f"{cond} AND {self.in_range(self._start_src(), start, end)}"
        n = sq.probe(f"SELECT count(*) FROM {src} WHERE {cond}")
        return ExtractError(f"{prefix}{n[0]} {str(err).removeprefix(prefix)}") if n and n[0] else err

    def _start_src(self) -> str:
        return f"TRY_CAST({self.text(self.start_col)} AS TIMESTAMPTZ)"

    def _bad_value(self, e: BaseException, f: DataFile, src: str, start: dt.date, end: dt.date) -> ExtractError:
        return (self.find_bad_value(f, src, start, end)
                or ExtractError(f"{f.name}: a value cannot be converted"))

    def find_bad_value(self, f: DataFile, src: str, start: dt.date, end: dt.date) -> ExtractError | None:
        """The first value of the file that cannot be cast, as the user's error naming its column and row
        (None: none found)."""
        in_range = self.in_range(self._start_src(), start, end)
        checks = [(self.start_col, "timestamp", self.text(self.start_col), "TRUE")]
        if self.end_col:
            checks.append((self.end_col, "timestamp", self.text(self.end_col), in_range))
        if self.period_col:
            checks.append((self.period_col, "timestamp", self.text(self.period_col), in_range))
        checks += [(col, "timestamp", self.text(col), in_range) for raw, (kind, _, _) in COLUMN_MAP.items()
                   if kind == TIME and (col := self.source[raw])]
        checks += [(col, "number", self.trimmed(col), in_range) for raw, (kind, _, _) in COLUMN_MAP.items()
                   if kind == MONEY and (col := self.source[raw])]
        for col, kind, value, where in checks:
            bad = (f"TRY_CAST({value} AS TIMESTAMPTZ) IS NULL" if kind == "timestamp"
                   else f"TRY_CAST({value} AS DECIMAL(38, 15)) IS NULL")
            row = sq.first_row(src, f"{value} <> '' AND {bad} AND {where}")
            if row is not None:
                return BadValue(f.name, col, not_a(kind), row)
        return None


# Files per part: DuckDB reads a (gzip) CSV file with one thread, so a part of several files with the same
# header keeps every core busy; more files only hold more spooled objects at once.
PART_FILES = 8


def _has_rows(path: str, fmt: str) -> bool:
    """Whether the file holds a row below its header (a damaged file is left for the read to report)."""
    opener = gzip.open if fmt == "csv.gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            return any(row for row in reader)
    except sq.READ_ERRORS + (csv.Error,):
        return True


class _Member:
    """A file of a part: its plan (messages name the file) and a reader of it alone (to probe it)."""

    def __init__(self, f: DataFile, path: str, columns: list[tuple[str, str, str]]):
        self.f, self.path, self.header = f, path, [c[0] for c in columns]
        self.plan = _Plan(columns, f.name)
        self.src = sq.csv_text_sql(path, f.fmt, len(columns))

    def explain(self, e: BaseException, start: dt.date, end: dt.date) -> BaseException:
        return self.plan.explain(e, self.f, self.src, start, end)


def _part(members: list[_Member], ctx: ExtractContext, out_schema: pa.Schema) -> ScanPart:
    """One SELECT over the members' files (same header, same format)."""
    start, end = ctx.start_date, ctx.end_date
    first = members[0]
    src = sq.csv_files_sql([m.path for m in members], first.f.fmt, len(first.header))
    sql = first.plan.sql(src, start, end, out_schema, {m.path: m.f.name for m in members})

    def explain(e: BaseException) -> BaseException:
        msg = str(e)
        for m in members:  # a broken rule names its file
            if f"{sq.CHECK_MARK}{m.f.name}: " in msg:
                return m.explain(e, start, end)
        if isinstance(e, duckdb.ConversionException) or msg.startswith("Conversion Error"):
            for m in members:
                found = m.plan.find_bad_value(m.f, m.src, start, end)
                if found is not None:
                    return found
        return next((m for m in members if m.path in msg), first).explain(e, start, end)

    return ScanPart(sql, explain)


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
_PATH_DATE = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/")


def _path_date(name: str) -> dt.date | None:
    m = _PATH_DATE.search(name)
    if not m:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _overlaps(created: dt.date | None, start: dt.date, end: dt.date, late_days: int) -> bool:
    """Whether a report produced on `created` can hold usage of [start, end] (unknown: yes)."""
    if created is None:
        return True
    return start - dt.timedelta(days=1) <= created <= end + dt.timedelta(days=late_days)


def _late_days(cred: dict) -> int:
    try:
        days = int(cred.get("late_days", DEFAULT_LATE_DAYS))
    except (TypeError, ValueError):
        raise CredentialError("late_days must be a whole number of days") from None
    if days < 0:
        raise CredentialError("late_days must not be negative")
    return days


class LocalSource(LocalFiles):
    def __init__(self, cred: dict, org_slug: str):
        super().__init__(cred["source"], org_slug)
        self.late_days = _late_days(cred)

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        found = [p for p in self.data_files() if format_of(p.name) in ("csv", "csv.gz")]
        if not found:
            raise ExtractError(f"no OCI report files (.csv, .csv.gz) in {self.name(self.root)}")
        return [DataFile(self.name(p), format_of(p.name)) for p in found
                if _overlaps(_path_date(p.relative_to(self.root).as_posix()),
                             ctx.start_date, ctx.end_date, self.late_days)]


class ObjectStorageSource:
    """Reads the reports from Object Storage with the oci SDK (API-key signing)."""

    def __init__(self, cred: dict):
        try:
            import oci
        except ImportError as e:  # pragma: no cover
            raise ExtractError("reading OCI Object Storage needs the oci SDK (pip install oci)") from e
        self.oci = oci
        missing = [k for k in ("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region")
                   if not cred.get(k)]
        if missing:
            raise CredentialError(f"the OCI credential is missing {', '.join(missing)} (or give "
                                  "{\"source\": \"file:///dir\"})")
        self.report = (cred.get("report") or "cost").lower()
        if self.report not in PREFIXES:
            raise CredentialError(f"report must be one of {', '.join(PREFIXES)}, not {cred.get('report')!r}")
        self.tenancy = cred["tenancy_ocid"]
        self.late_days = _late_days(cred)
        config = {"tenancy": self.tenancy, "user": cred["user_ocid"], "fingerprint": cred["fingerprint"],
                  "key_content": cred["private_key"], "region": cred["region"]}
        if cred.get("passphrase"):
            config["pass_phrase"] = cred["passphrase"]
        try:
            oci.config.validate_config(config)
        except oci.exceptions.InvalidConfig as e:
            bad = ", ".join(f"{k} ({v})" for k, v in (e.args[0] if e.args and isinstance(e.args[0], dict)
                                                        else {}).items()) or str(e)
            raise CredentialError(f"the OCI credential is not valid: {bad}") from None
        kwargs = {"service_endpoint": cred["endpoint"].rstrip("/")} if cred.get("endpoint") else {}
        if kwargs and tenancy.is_multi():
            tenancy.check_endpoint(cred["endpoint"], "endpoint")
        try:
            # the signer is built from this key only: no instance, resource or config-file principal
            self.client = oci.object_storage.ObjectStorageClient(config, **kwargs)
        except Exception as e:  # noqa: BLE001 - a bad PEM or passphrase surfaces here
            raise CredentialError(f"could not load the OCI API signing key: {type(e).__name__}: {e}") from None
        guard_requests_session(self.client.base_client.session)

    def _err(self, e: Exception, what: str) -> Exception:
        if isinstance(e, tenancy.TrustViolation):
            return e
        status = getattr(e, "status", None)
        code = getattr(e, "code", "") or ""
        if status in (401, 403) or (status == 404 and code in ("BucketNotFound", "NamespaceNotFound")):
            return CredentialError(
                f"OCI Object Storage refused {what}: {status} {code}. Check the API key (user, fingerprint, "
                f"key) and that the tenancy has the policy 'define tenancy usage-report as "
                f"ocid1.tenancy.oc1..aaaaaaaaned4fkpkisbwjlr56u7cj63lf3wffbilvqknstgtvzub7vhqkggq' + "
                f"'endorse group <group> to read objects in tenancy usage-report'.")
        message = getattr(e, "message", None) or str(e)
        return ExtractError(f"OCI Object Storage error on {what}: {status or type(e).__name__} {code} {message}")

    def _uri(self, name: str) -> str:
        return f"oci://{self.tenancy}@{NAMESPACE}/{name}"

    def list_objects(self, prefix: str) -> Iterator[Any]:
        start = None
        while True:
            kwargs = {"prefix": prefix, "fields": "name,size,timeCreated", "limit": LIST_PAGE}
            if start:
                kwargs["start"] = start
            try:
                resp = self.client.list_objects(NAMESPACE, self.tenancy, **kwargs)
            except Exception as e:  # noqa: BLE001 - ServiceError, connection errors
                raise self._err(e, f"listing {self._uri(prefix)}") from None
            yield from resp.data.objects or []
            start = resp.data.next_start_with
            if not start:
                return

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        out = []
        listed = 0
        for o in self.list_objects(PREFIXES[self.report]):
            listed += 1
            fmt = format_of(o.name)
            if fmt not in ("csv", "csv.gz"):
                continue
            produced = _path_date(o.name) if self.report == "focus" else None
            if produced is None and o.time_created is not None:
                produced = o.time_created.astimezone(dt.UTC).date()
            if _overlaps(produced, ctx.start_date, ctx.end_date, self.late_days):
                out.append(DataFile(self._uri(o.name), fmt))
        ctx.log.info("OCI %s reports: %s objects listed, %s overlap %s..%s", self.report, listed, len(out),
                     ctx.start_date, ctx.end_date)
        return out

    def open(self, f: DataFile):
        name = f.name.split(f"@{NAMESPACE}/", 1)[1]
        try:
            resp = self.client.get_object(NAMESPACE, self.tenancy, name)
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None
        raw = resp.data.raw
        raw.decode_content = False  # the bytes as stored: gzip is undone by the reader, by name
        return raw

    def local_path(self, f: DataFile, stack: ExitStack) -> str:
        """The object spooled to a temporary file (disk, not memory), for DuckDB to read."""
        tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix="." + f.fmt))  # noqa: SIM115
        raw = self.open(f)
        try:
            shutil.copyfileobj(raw, tmp, 1 << 20)
        except Exception as e:  # noqa: BLE001 - a connection dropped mid-object
            raise self._err(e, f.name) from None
        finally:
            raw.close()
        tmp.flush()
        return tmp.name


def _source(cred: dict, org_slug: str):
    if cred.get("source"):
        return LocalSource(cred, org_slug)
    return ObjectStorageSource(cred)


def _stream(ctx: ExtractContext, source, files: list[DataFile]) -> dict[str, Any]:
    """{oci_billing_raw: a DuckScan of the files}."""
    from shared import schemas

    raw_schema = schemas.get(RAW_TABLE).arrow_schema(include_lineage=False)
    def parts(con) -> Iterator[ScanPart]:
        kept = 0
        pending = list(files)
        while pending:
            with ExitStack() as stack:
                members: list[_Member] = []
                while pending and len(members) < PART_FILES:
                    f = pending[0]
                    path = source.local_path(f, stack)
                    if Path(path).stat().st_size == 0 or not _has_rows(path, f.fmt):
                        ctx.warn(f"{f.name} is empty")  # its columns are not checked: it has none to read
                        pending.pop(0)
                        continue
                    columns = sq.describe_csv(path, f)
                    if members and ([c[0] for c in columns], f.fmt) != (members[0].header, members[0].f.fmt):
                        break  # read with the next part (spooled again: headers rarely change)
                    members.append(_Member(f, path, columns))
                    pending.pop(0)
                if not members:
                    continue
                part = _part(members, ctx, raw_schema)
                yield part
                kept += part.rows
        ctx.log.info("read %s OCI report files, %s rows in range", len(files), kept)

    return {RAW_TABLE: DuckScan(parts, sq.connect, schema=raw_schema, batch_rows=READ_BATCH_ROWS)}


def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Read the report objects that can hold usage of the run's range; return the in-range rows.

    The rows are a DuckScan (one SELECT per run of files with one header).
    """
    source = _source(ctx.credential, ctx.org_slug)
    files = source.files(ctx)
    if not files:
        ctx.warn(f"no OCI report object can hold usage of {ctx.start_date}..{ctx.end_date}")
    return _stream(ctx, source, files)
