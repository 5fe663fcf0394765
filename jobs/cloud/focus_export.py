"""The providers' native FOCUS exports -> cloud_focus_raw (+ cloud_source_totals), for the cloud pipelines.

Accepted inputs (CSV, gzip CSV or Parquet; every column found by its header name, so order and extra columns
do not matter):
  * AWS Data Exports FOCUS_1_0_AWS and FOCUS_1_2_AWS (jobs/cloud/aws.py hands the files over when their header
    has BilledCost and ChargePeriodStart, see `is_focus_export`);
  * Azure Cost Management FocusCost exports 1.0-preview(v1), 1.0, 1.0r2 and 1.2-preview (jobs/cloud/azure.py:
    manifest exportConfig.type, the credential's "dataset", or the header);
  * the GCP FOCUS export gcp_billing_export_focus_<BA> (jobs/cloud/gcp.py: BigQuery, or the table as Parquet);
  * any vendor's FOCUS 1.0-1.3 file (jobs/cloud/focus_file.py, pipeline focus/file/import), its names kept.

The FOCUS version of a file is recognised by its columns (`detect_version`): 1.3 adds HostProviderName and
the Allocated* columns (not kept: nothing here splits a cost), 1.2 adds InvoiceId and
SubAccountType, 1.1 ServiceSubcategory and SkuMeter, 1.0 ChargeClass and ConsumedQuantity; 1.0-preview still
has UsageQuantity and ChargeSubcategory, 0.5 AmortizedCost and ChargeType. Columns renamed between versions
are read under either name (`COLUMN_MAP`: UsageQuantity -> consumed_quantity, Region -> region_id, AWS 1.0
x_UsageType -> sku_meter, ...); values that changed (ChargeSubcategory, 'On-Demand', ...) are mapped to FOCUS 1.3
by procedures/sp_cloud_1_convert_to_focus/50_focus_export.sql, which also fills what the exports lack.

Casting: every cost, price and quantity becomes NUMERIC (decimal 38,9) through `common.money`: CSV text is parsed
as exact decimal text, Parquet doubles go through their shortest decimal text (never binary float arithmetic),
DECIMAL/NUMERIC columns are rounded half to even. Timestamps are UTC.

Tags: one flat JSON object with lower-cased keys (AWS also drops the `user:` prefix, as the CUR extractor does),
built from `Tags` (JSON text or a Parquet map) and, lower in precedence, AWS 1.0 `x_CostCategories` and GCP's
`x_ProjectLabels` < `x_Tags` < `x_Labels` (GCP's export has no Tags column). Valueless keys take the value
"true" (FOCUS); nested values become compact JSON text.

Rows are kept when the UTC day of ChargePeriodStart is in the run's range. cloud_source_totals holds, per
usage day, billing period (the date of BillingPeriodStart) and currency, the row count and SUM(BilledCost) of
what was kept (summed by the warehouse: schemas/cloud_source_totals/cloud_focus_raw.sql), so reconciliation
compares the export's own billed total with the FOCUS 1.3 rows.

Not kept: the providers' other x_ columns (x_Discounts, x_Operation, GCP's x_Credits, ...). GCP's x_Credits is not
turned into rows either: what the export bills is its BilledCost, and that is what reconciles.

Recognising a file (`files_are_focus`) reads its first line (CSV) or its Parquet footer: two ranged GETs at most
on S3, so the CUR path does not download a file twice; other remote Parquet is spooled as when it is read.
"""
from __future__ import annotations

import csv as pycsv
import gzip
import json
import struct
from collections.abc import Iterable
from contextlib import ExitStack
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import ExtractContext, ExtractError
from jobs.cloud.common import (
    CORRUPTION_ERRORS,
    MONEY_TYPE,
    TS,
    BadValue,
    DataFile,
    as_string,
    blank_to_null,
    corrupted,
    key_values,
    money,
    require_columns,
    stream_raw,
    tags_json,
    timestamp,
    usage_days_in_range,
)

RAW_TABLE = "cloud_focus_raw"
STRING, MONEY, TIME, JSON_OBJECT = "string", "money", "time", "json"

# raw column -> (kind, header names: the FOCUS 1.2 name first, then the older or provider names it replaced)
COLUMN_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "charge_period_start": (TIME, ("ChargePeriodStart",)),
    "charge_period_end": (TIME, ("ChargePeriodEnd",)),
    "billing_period_start_time": (TIME, ("BillingPeriodStart",)),
    "billing_period_end": (TIME, ("BillingPeriodEnd",)),
    "billing_account_id": (STRING, ("BillingAccountId",)),
    "billing_account_name": (STRING, ("BillingAccountName",)),
    "billing_account_type": (STRING, ("BillingAccountType",)),
    "billing_currency": (STRING, ("BillingCurrency",)),
    "sub_account_id": (STRING, ("SubAccountId",)),
    "sub_account_name": (STRING, ("SubAccountName",)),
    "sub_account_type": (STRING, ("SubAccountType",)),
    "invoice_id": (STRING, ("InvoiceId",)),
    "invoice_issuer_name": (STRING, ("InvoiceIssuerName", "InvoiceIssuer")),
    "provider_name": (STRING, ("ProviderName", "Provider")),
    "publisher_name": (STRING, ("PublisherName", "Publisher")),
    "service_provider_name": (STRING, ("ServiceProviderName",)),
    "host_provider_name": (STRING, ("HostProviderName",)),
    "charge_category": (STRING, ("ChargeCategory", "ChargeType")),
    "charge_class": (STRING, ("ChargeClass",)),
    "charge_subcategory": (STRING, ("ChargeSubcategory",)),
    "charge_description": (STRING, ("ChargeDescription",)),
    "charge_frequency": (STRING, ("ChargeFrequency",)),
    "billed_cost": (MONEY, ("BilledCost",)),
    "effective_cost": (MONEY, ("EffectiveCost", "AmortizedCost")),
    "list_cost": (MONEY, ("ListCost",)),
    "list_unit_price": (MONEY, ("ListUnitPrice",)),
    "contracted_cost": (MONEY, ("ContractedCost",)),
    "contracted_unit_price": (MONEY, ("ContractedUnitPrice",)),
    "pricing_quantity": (MONEY, ("PricingQuantity",)),
    "pricing_unit": (STRING, ("PricingUnit",)),
    "pricing_category": (STRING, ("PricingCategory",)),
    "consumed_quantity": (MONEY, ("ConsumedQuantity", "UsageQuantity")),
    "consumed_unit": (STRING, ("ConsumedUnit", "UsageUnit")),
    "pricing_currency": (STRING, ("PricingCurrency",)),
    "pricing_currency_contracted_unit_price": (MONEY, ("PricingCurrencyContractedUnitPrice",)),
    "pricing_currency_effective_cost": (MONEY, ("PricingCurrencyEffectiveCost",)),
    "pricing_currency_list_unit_price": (MONEY, ("PricingCurrencyListUnitPrice",)),
    "commitment_discount_id": (STRING, ("CommitmentDiscountId",)),
    "commitment_discount_name": (STRING, ("CommitmentDiscountName",)),
    "commitment_discount_category": (STRING, ("CommitmentDiscountCategory",)),
    "commitment_discount_type": (STRING, ("CommitmentDiscountType",)),
    "commitment_discount_status": (STRING, ("CommitmentDiscountStatus",)),
    "commitment_discount_quantity": (MONEY, ("CommitmentDiscountQuantity",)),
    "commitment_discount_unit": (STRING, ("CommitmentDiscountUnit",)),
    "capacity_reservation_id": (STRING, ("CapacityReservationId",)),
    "capacity_reservation_status": (STRING, ("CapacityReservationStatus",)),
    "region_id": (STRING, ("RegionId", "Region")),
    "region_name": (STRING, ("RegionName",)),
    "availability_zone": (STRING, ("AvailabilityZone",)),
    "resource_id": (STRING, ("ResourceId",)),
    "resource_name": (STRING, ("ResourceName",)),
    "resource_type": (STRING, ("ResourceType", "x_ResourceType")),
    "service_name": (STRING, ("ServiceName",)),
    "service_category": (STRING, ("ServiceCategory",)),
    "service_subcategory": (STRING, ("ServiceSubcategory",)),
    # the provider's own service key, for organizations.service_category_map (AWS product code, Azure meter
    # category); without one the converter looks the ServiceName up
    "service_key": (STRING, ("x_ServiceCode", "x_SkuMeterCategory")),
    "sku_id": (STRING, ("SkuId",)),
    "sku_price_id": (STRING, ("SkuPriceId",)),
    "sku_meter": (STRING, ("SkuMeter", "x_UsageType", "x_SkuMeterName")),
    "sku_price_details": (JSON_OBJECT, ("SkuPriceDetails",)),
}
# Every FOCUS version since 1.0-preview has these (under one of their names): without them a row has no
# meaning. The message names the 1.2 names.
REQUIRED = ("BilledCost", "BillingAccountId", "BillingCurrency", "ChargeCategory", "ChargePeriodStart",
            "EffectiveCost", "ServiceName")
# Tag sources, lowest precedence first (a later source wins on a repeated key).
TAG_SOURCES = ("x_CostCategories", "x_ProjectLabels", "x_Tags", "x_Labels", "Tags")
# The newest version whose marker columns a header has is its version.
VERSION_MARKERS = (
    ("1.3", ("HostProviderName", "ServiceProviderName", "AllocatedMethodId", "ContractApplied")),
    ("1.2", ("InvoiceId", "SubAccountType", "PricingCurrencyEffectiveCost")),
    ("1.1", ("ServiceSubcategory", "SkuMeter", "SkuPriceDetails", "CommitmentDiscountQuantity",
             "CapacityReservationId")),
    ("1.0", ("ChargeClass", "ConsumedQuantity", "RegionId", "ContractedCost", "CommitmentDiscountStatus")),
    ("1.0-preview", ("ChargeSubcategory", "UsageQuantity", "EffectiveCost", "ChargeCategory")),
)
PARQUET_TAIL_BYTES = 1 << 16


def _lower_index(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in names:
        out.setdefault(n.lower(), n)
    return out


def is_focus_export(header_names: Iterable[str]) -> bool:
    """Whether a file's columns are a FOCUS export's (any version): it has BilledCost and ChargePeriodStart."""
    have = _lower_index(header_names)
    return "billedcost" in have and "chargeperiodstart" in have


def names_a_provider(header_names: Iterable[str]) -> bool:
    """Whether a file says whose costs it holds: ProviderName (1.0-preview Provider) or 1.3's ServiceProviderName."""
    have = _lower_index(header_names)
    return bool({"providername", "provider", "serviceprovidername"} & set(have))


def detect_version(header_names: Iterable[str]) -> str:
    have = set(_lower_index(header_names))
    for version, markers in VERSION_MARKERS:
        if any(m.lower() in have for m in markers):
            return version
    return "0.5"


def wanted_columns(header_names: Iterable[str]) -> list[str]:
    """The columns of a table the mapper reads (to select only those, e.g. from BigQuery)."""
    used = {n.lower() for _, names in COLUMN_MAP.values() for n in names} | {n.lower() for n in TAG_SOURCES}
    return [n for n in header_names if n.lower() in used]


def check_columns(header_names: Iterable[str], where: str) -> None:
    """Fail naming `where` and the missing FOCUS columns (any accepted name of a column counts)."""
    have = _lower_index(header_names)
    satisfied = [names[0] for _, names in COLUMN_MAP.values() if any(n.lower() in have for n in names)]
    require_columns(satisfied, REQUIRED, where, "FOCUS")


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------
def _text(v: Any) -> str:
    if v is None or v == "":
        return "true"  # FOCUS: a tag key without a value takes the value true
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def tag_key(provider: str, key: str) -> str:
    key = key.strip().lower()
    if provider == "aws":
        for prefix in ("user:", "user_"):
            if key.startswith(prefix):
                return key[len(prefix):]
    return key


def _flat_object(value: Any) -> str | None:
    """SkuPriceDetails and the like as a flat JSON object (nested values as JSON text); None when empty."""
    flat = {k: (_text(v) if isinstance(v, (dict, list)) else v) for k, v in key_values(value)}
    return json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str) if flat else None


def _service_flags(category: pa.Array, subcategory: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(ServiceCategory is a FOCUS 1.3 value, the pair is a FOCUS 1.3 category/subcategory) per row."""
    from shared.focus import SERVICE_CATEGORIES, SERVICE_SUBCATEGORIES

    pairs = pa.array([f"{c}\x1f{s}" for c, subs in SERVICE_SUBCATEGORIES.items() for s in subs])
    cat_ok = pc.fill_null(pc.is_in(category, pa.array(SERVICE_CATEGORIES)), False)
    joined = pc.binary_join_element_wise(category, subcategory, "\x1f")
    return cat_ok, pc.fill_null(pc.is_in(joined, pairs), False)


# --------------------------------------------------------------------------------------------------
# One file (or query result) -> raw rows
# --------------------------------------------------------------------------------------------------
class Mapper:
    """Resolves a FOCUS file's header once, then converts its batches (common.stream_raw's mapper protocol)."""

    def __init__(self, names: list[str], fname: str, out_schema: pa.Schema, provider: str):
        self.fname, self.out_schema, self.provider = fname, out_schema, provider
        check_columns(names, fname)
        by_lower = _lower_index(names)

        def find(candidates: Iterable[str]) -> str | None:
            return next((by_lower[c.lower()] for c in candidates if c.lower() in by_lower), None)

        self.source = {raw: find(candidates) for raw, (_, candidates) in COLUMN_MAP.items()}
        self.tag_cols = [c for c in (find((t,)) for t in TAG_SOURCES) if c]
        self.version = detect_version(names)

    def convert(self, batch: pa.RecordBatch, start, end, period_hint) -> pa.RecordBatch | None:
        start_col = self.source["charge_period_start"]
        start_ts = timestamp(batch.column(batch.schema.get_field_index(start_col)), start_col, self.fname)
        kept = usage_days_in_range(start_ts, start, end, self.fname, start_col)
        if kept is None:
            return None
        keep, usage_date = kept
        try:
            return self._convert(batch.filter(keep), start_ts.filter(keep), usage_date)
        except BadValue as e:  # its row is among the kept ones: the batch's row
            raise e.at(None if e.row is None else pc.indices_nonzero(keep)[e.row - 1].as_py() + 1) from None

    def _convert(self, batch: pa.RecordBatch, start_ts: pa.Array, usage_date: pa.Array) -> pa.RecordBatch:
        def col(name: str) -> pa.Array:
            return batch.column(batch.schema.get_field_index(name))

        n = batch.num_rows
        out: dict[str, pa.Array] = {"usage_date": usage_date, "charge_period_start": start_ts}
        for raw, (kind, _) in COLUMN_MAP.items():
            src = self.source[raw]
            if raw in out:
                continue
            if src is None:
                out[raw] = pa.nulls(n, {MONEY: MONEY_TYPE, TIME: TS}.get(kind, pa.string()))
            elif kind == MONEY:
                out[raw] = money(col(src), src, self.fname)
            elif kind == TIME:
                out[raw] = timestamp(col(src), src, self.fname)
            elif kind == JSON_OBJECT:
                out[raw] = pa.array([_flat_object(v) for v in col(src).to_pylist()], pa.string())
            else:
                out[raw] = blank_to_null(pc.utf8_trim_whitespace(as_string(col(src))))
        for required in ("billing_account_id", "billing_currency"):
            if out[required].null_count:
                raise ExtractError(f"{self.fname}: {out[required].null_count} rows have an empty "
                                   f"{self.source[required]}")
        out["billing_currency"] = pc.utf8_upper(out["billing_currency"])
        out["billed_cost"] = pc.coalesce(out["billed_cost"], pa.scalar(Decimal(0), MONEY_TYPE))
        # the billing period of a row is its export's (reconciliation is per period); the month as a fallback
        out["billing_period_start"] = pc.coalesce(out.pop("billing_period_start_time").cast(pa.date32()),
                                                  pc.floor_temporal(usage_date, unit="month"))
        out["service_category_valid"], out["service_subcategory_valid"] = _service_flags(
            out["service_category"], out["service_subcategory"])
        out["provider"] = pa.array([self.provider] * n, pa.string())
        out["focus_version"] = pa.array([self.version] * n, pa.string())
        out["tags"] = self._tags(batch, n)
        out["source_file"] = pa.array([self.fname] * n, pa.string())
        return pa.RecordBatch.from_arrays([out[f.name] for f in self.out_schema], schema=self.out_schema)

    def _tags(self, batch: pa.RecordBatch, n: int) -> pa.Array:
        if not self.tag_cols:
            return pa.nulls(n, pa.string())
        cols = [batch.column(batch.schema.get_field_index(c)).to_pylist() for c in self.tag_cols]
        values = []
        for i in range(n):
            tags: dict[str, str] = {}
            for cells in cols:
                for k, v in key_values(cells[i]):
                    tags[tag_key(self.provider, k)] = _text(v)
            values.append(tags_json(tags))
        return pa.array(values, pa.string())


def stream_files(ctx: ExtractContext, source, files: list[DataFile], provider: str) -> dict[str, Any]:
    """The extractor result {cloud_focus_raw: batches} for FOCUS export files (a source with open/local_path,
    as common.stream_raw reads them)."""

    def make_mapper(names: list[str], fname: str, schema: pa.Schema) -> Mapper:
        return Mapper(names, fname, schema, provider)

    ctx.log.info("reading %s files as a FOCUS export", len(files))
    return stream_raw(ctx, source, files, RAW_TABLE, make_mapper, what="FOCUS export")


# --------------------------------------------------------------------------------------------------
# Recognising a FOCUS export by its header, reading as little of the file as possible
# --------------------------------------------------------------------------------------------------
def _csv_header(source, f: DataFile) -> list[str]:
    with ExitStack() as stack:
        raw = stack.enter_context(source.open(f))
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if f.fmt == "csv.gz" else raw
        line = stream.readline()
    return next(pycsv.reader([line.decode("utf-8-sig")]), []) if line.strip() else []


def _s3_parquet_tail(source, f: DataFile) -> bytes | None:
    """The footer of a Parquet object on S3 (two ranged GETs at most), so that recognising the file does not
    download it; None when the source is not an S3 reader."""
    s3 = getattr(source, "s3", None)
    if s3 is None or not f.name.startswith("s3://"):
        return None
    url = urlparse(f.name)
    bucket, key = url.netloc, url.path.lstrip("/")

    def tail(n: int) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{n}")["Body"].read()

    data = tail(PARQUET_TAIL_BYTES)
    if len(data) < 8 or data[-4:] != b"PAR1":
        raise pa.ArrowInvalid("not a Parquet file (no PAR1 footer)")
    need = struct.unpack("<i", data[-8:-4])[0] + 8
    if need > len(data):
        data = tail(need)
    return b"PAR1" + data[-need:]  # the footer alone, framed as a file: enough to read the schema


def header_names(source, f: DataFile) -> list[str]:
    """The column names of a CSV / gzip CSV / Parquet file ([] for an empty file)."""
    import pyarrow.parquet as pq

    try:
        if f.fmt != "parquet":
            return _csv_header(source, f)
        footer = _s3_parquet_tail(source, f)
        if footer is not None:
            return pq.read_schema(pa.BufferReader(footer)).names
        with ExitStack() as stack:
            return pq.read_schema(source.local_path(f, stack)).names
    except ExtractError:
        raise
    except CORRUPTION_ERRORS as e:
        raise corrupted(f, e) from None


def files_are_focus(source, files: list[DataFile]) -> bool:
    """Whether the first non-empty file of `files` is a FOCUS export (an export's files share one header)."""
    for f in files:
        names = header_names(source, f)
        if names:
            return is_focus_export(names)
    return False
