"""AWS Cost and Usage Report -> aws_billing_raw (+ cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///path"}                       a folder with CUR files, or with *Manifest.json files
  {"bucket": ..., "prefix": ..., "region": ...,    S3, driven by the manifests under the prefix
   "endpoint_url": optional, "aws_access_key_id"/"aws_secret_access_key"/"aws_session_token": optional,
   "role_arn": optional (STS assume-role), "external_id": optional}
  In multi tenancy the keys or the role are required, a role is assumed with the org's ExternalId and
  endpoint_url is checked on every request (jobs/identity.py).

Formats: legacy CUR (`lineItem/UsageStartDate` headers, `*-Manifest.json` with `reportKeys`) and CUR 2.0 /
Data Exports (`line_item_usage_start_date` names, manifest with `dataFiles`), as CSV, gzip CSV or Parquet.
Each file becomes one DuckDB SELECT (a `ScanPart` of a `shared.warehouse.scan.DuckScan`) that selects,
renames and casts the needed columns (CSV: every column read as text first), folds the tags into JSON,
drops rows outside the run's range and stops on a row breaking a rule (no usage start, no payer, ...). The
embedded warehouse runs it inside its own INSERT (one engine, no Arrow hop); other warehouses stream it
as Arrow batches (READ_BATCH_ROWS) from a private, memory-capped DuckDB. The warehouse sums the source
totals from the landed rows (schemas/cloud_source_totals/aws_billing_raw.sql). Memory is bounded by DuckDB's
memory limit, not the file size. S3 objects are spooled to a temporary file first.

Column names of both generations are normalised to CUR 2.0 snake_case (`lineItem/UsageStartDate` ->
`line_item_usage_start_date`, `savingsPlan/SavingsPlanARN` -> `savings_plan_savings_plan_a_r_n`). Resource tag
columns (`resourceTags/user:Env`, `resource_tags_user_env`, CUR 2.0 `resource_tags` map) are folded into one
flat JSON object with lower-cased keys; other unknown columns are ignored.

Only rows whose usage starts in the run's date range are returned. For S3, per billing period the newest
manifest (by LastModified) is used and only the files it lists are read (never ListObjects for data files:
Data Exports may leave stale empty chunks behind).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import duck_sql as sq
from jobs.cloud import focus_export
from jobs.cloud.common import (
    DataFile,
    LocalFiles,
    read_json_doc,
    require_columns,
)
from jobs.cloud.common import (
    format_of as _format_of,
)
from jobs.identity import aws_session
from jobs.cloud.common import (
    month_overlaps as _month_overlaps,
)
from shared import schemas
from shared.tenancy import TrustViolation
from shared.warehouse.scan import ScanPart

RAW_TABLE = "aws_billing_raw"
PROVIDER = "aws"

# raw column -> (kind, source names in priority order, normalised to snake_case)
STRING, MONEY, TIME = "string", "money", "time"
COLUMN_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "bill_type": (STRING, ("bill_bill_type",)),
    "invoice_id": (STRING, ("bill_invoice_id",)),
    "invoicing_entity": (STRING, ("bill_invoicing_entity",)),
    "billing_entity": (STRING, ("bill_billing_entity",)),
    "line_item_id": (STRING, ("identity_line_item_id",)),
    "time_interval": (STRING, ("identity_time_interval",)),
    "payer_account_id": (STRING, ("bill_payer_account_id",)),
    "payer_account_name": (STRING, ("bill_payer_account_name",)),
    "usage_account_id": (STRING, ("line_item_usage_account_id",)),
    "usage_account_name": (STRING, ("line_item_usage_account_name",)),
    "line_item_type": (STRING, ("line_item_line_item_type",)),
    "product_code": (STRING, ("line_item_product_code",)),
    "product_name": (STRING, ("product_product_name", "product_name")),
    "service_code": (STRING, ("product_servicecode", "product_service_code")),
    "product_family": (STRING, ("product_product_family",)),
    "sku": (STRING, ("product_sku",)),
    "region_code": (STRING, ("product_region_code", "product_region")),
    "region_name": (STRING, ("product_location",)),
    "availability_zone": (STRING, ("line_item_availability_zone",)),
    "resource_id": (STRING, ("line_item_resource_id",)),
    "usage_type": (STRING, ("line_item_usage_type",)),
    "operation": (STRING, ("line_item_operation",)),
    "description": (STRING, ("line_item_line_item_description",)),
    "legal_entity": (STRING, ("line_item_legal_entity",)),
    "tax_type": (STRING, ("line_item_tax_type",)),
    "usage_amount": (MONEY, ("line_item_usage_amount",)),
    "pricing_unit": (STRING, ("pricing_unit",)),
    "pricing_term": (STRING, ("pricing_term",)),
    "pricing_rate_id": (STRING, ("pricing_rate_id",)),
    "public_on_demand_rate": (MONEY, ("pricing_public_on_demand_rate",)),
    "public_on_demand_cost": (MONEY, ("pricing_public_on_demand_cost",)),
    "unblended_rate": (MONEY, ("line_item_unblended_rate",)),
    "unblended_cost": (MONEY, ("line_item_unblended_cost",)),
    "net_unblended_rate": (MONEY, ("line_item_net_unblended_rate",)),
    "net_unblended_cost": (MONEY, ("line_item_net_unblended_cost",)),
    "currency": (STRING, ("line_item_currency_code",)),
    "reservation_arn": (STRING, ("reservation_reservation_a_r_n", "reservation_reservation_arn")),
    "reservation_effective_cost": (MONEY, ("reservation_effective_cost",)),
    "reservation_unused_amortized_upfront_fee": (
        MONEY, ("reservation_unused_amortized_upfront_fee_for_billing_period",)),
    "reservation_unused_recurring_fee": (MONEY, ("reservation_unused_recurring_fee",)),
    "savings_plan_arn": (STRING, ("savings_plan_savings_plan_a_r_n", "savings_plan_savings_plan_arn")),
    "savings_plan_effective_cost": (MONEY, ("savings_plan_savings_plan_effective_cost",)),
    "savings_plan_total_commitment_to_date": (MONEY, ("savings_plan_total_commitment_to_date",)),
    "savings_plan_used_commitment": (MONEY, ("savings_plan_used_commitment",)),
}
USAGE_START = "line_item_usage_start_date"
USAGE_END = "line_item_usage_end_date"
PERIOD_START = "bill_billing_period_start_date"
PERIOD_END = "bill_billing_period_end_date"
# A file without these cannot be converted: fail naming them instead of writing half-empty rows.
REQUIRED_SOURCE = (USAGE_START, "line_item_line_item_type", "line_item_unblended_cost",
                   "line_item_currency_code", "bill_payer_account_id")
# Legacy Athena/Parquet names that do not follow the generic rule.
RENAMES = {"product_product_name": "product_product_name"}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def normalise(name: str) -> str:
    """`lineItem/UsageStartDate` -> `line_item_usage_start_date`; CUR 2.0 names are returned unchanged."""
    if "/" in name:
        category, attribute = name.split("/", 1)
        name = f"{_CAMEL.sub('_', category)}_{_CAMEL.sub('_', attribute)}"
    name = name.lower().replace(" ", "_")
    return RENAMES.get(name, name)


def _tag_key(source_name: str) -> str | None:
    """The tag key for a flat tag column, else None. `resourceTags/user:Env` -> `env`."""
    if source_name.startswith("resourceTags/"):
        key = source_name.split("/", 1)[1]
    elif source_name.lower().startswith("resource_tags_"):
        key = source_name[len("resource_tags_"):]
    else:
        return None
    key = key.lower()
    for prefix in ("user:", "user_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
def _parse_period(value: Any) -> dt.date | None:
    """Manifest billingPeriod.start: `20231101T000000.000Z`, ISO text, or {"start": ...}."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("start")
    text = str(value)
    m = re.match(r"^(\d{4})-?(\d{2})-?(\d{2})", text)
    if m:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    m = re.match(r"^(\d{4})-(\d{2})$", text)
    return dt.date(int(m[1]), int(m[2]), 1) if m else None


def _manifest_files(doc: dict) -> tuple[list[str], dt.date | None]:
    """Data file keys/URIs from a legacy (`reportKeys`) or Data Exports (`dataFiles`) manifest."""
    period = _parse_period(doc.get("billingPeriod"))
    if "reportKeys" in doc:
        keys = list(doc["reportKeys"])
    elif "dataFiles" in doc:
        keys = [d if isinstance(d, str) else d.get("key") or d.get("uri") for d in doc["dataFiles"]]
    else:
        raise ExtractError("manifest has neither reportKeys (legacy CUR) nor dataFiles (CUR 2.0 / Data Exports)")
    return [k for k in keys if k], period


def _s3_key(ref: str) -> str:
    if ref.startswith("s3://"):
        return unquote(urlparse(ref).path.lstrip("/"))
    return ref.lstrip("/")


class LocalSource(LocalFiles):
    def files(self, ctx: ExtractContext) -> list[DataFile]:
        listed = self.folder.files()
        manifests = [p for p in listed if p.name.endswith("Manifest.json")]
        if not manifests:
            found = [p for p in listed if _format_of(p.name)]
            if not found:
                raise ExtractError(f"no CUR files (.csv, .csv.gz, .parquet) or manifest in {self.name(self.root)}")
            return [DataFile(self.name(p), _format_of(p.name)) for p in found]
        by_period: dict[Any, tuple[float, Path, dict]] = {}
        for m in manifests:
            doc = _read_manifest(self.folder.read_bytes(m), self.name(m))
            period = _manifest_files(doc)[1]
            mtime = m.stat().st_mtime
            if period not in by_period or mtime >= by_period[period][0]:
                by_period[period] = (mtime, m, doc)
        out = []
        for period, (_, m, doc) in sorted(by_period.items(), key=lambda kv: str(kv[0])):
            if not _month_overlaps(period, ctx.start_date, ctx.end_date):
                continue
            for key in _manifest_files(doc)[0]:
                path = self.listed(_s3_key(key), m)
                out.append(DataFile(self.name(path), _format_of(path.name) or "csv.gz", period))
        return out


class S3Source:
    def __init__(self, cred: dict):
        from botocore.config import Config

        self.bucket = cred["bucket"]
        self.prefix = (cred.get("prefix") or "").strip("/")
        session = aws_session(cred, cred.get("region") or "us-east-1", "cloudact-cur-reader")
        self.s3 = session.client("s3", endpoint_url=cred.get("endpoint_url"),
                                 config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def _err(self, e: Exception, what: str) -> Exception:
        if isinstance(e, TrustViolation):
            return e
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "") if hasattr(e, "response") else ""
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"):
            return CredentialError(f"S3 refused {what}: {code}. Check the credential's s3:GetObject/s3:ListBucket access.")
        return ExtractError(f"S3 error on {what}: {e}")

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        manifests = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for o in page.get("Contents", []):
                    if o["Key"].endswith("Manifest.json"):
                        manifests.append((o["Key"], o["LastModified"]))
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f"listing s3://{self.bucket}/{self.prefix}") from None
        if not manifests:
            raise ExtractError(f"no CUR manifest (*Manifest.json) under s3://{self.bucket}/{self.prefix}")
        by_period: dict[Any, tuple[Any, str, list[str]]] = {}
        for key, modified in manifests:
            hint = _period_from_key(key)
            if hint is not None and not _month_overlaps(hint, ctx.start_date, ctx.end_date):
                continue  # skip reading manifests of periods outside the run
            keys, period = _manifest_files(_read_manifest(self._get(key), f"s3://{self.bucket}/{key}"))
            if period not in by_period or modified >= by_period[period][0]:
                by_period[period] = (modified, key, keys)
        out = []
        for period, (_, _, keys) in sorted(by_period.items(), key=lambda kv: str(kv[0])):
            if _month_overlaps(period, ctx.start_date, ctx.end_date):
                for k in keys:
                    key = _s3_key(k)
                    out.append(DataFile(f"s3://{self.bucket}/{key}", _format_of(key) or "csv.gz", period))
        return out

    def _get(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f"s3://{self.bucket}/{key}") from None

    def open(self, f: DataFile):
        key = _s3_key(f.name)
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None

    def local_path(self, f: DataFile, stack) -> str:
        """The object spooled to a temporary file (disk, not memory), for DuckDB to read."""
        suffix = {"parquet": ".parquet", "csv.gz": ".csv.gz"}.get(f.fmt, ".csv")
        tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=suffix))  # noqa: SIM115
        try:
            self.s3.download_fileobj(self.bucket, _s3_key(f.name), tmp)
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None
        tmp.flush()
        return tmp.name


def _period_from_key(key: str) -> dt.date | None:
    m = re.search(r"BILLING_PERIOD=(\d{4})-(\d{2})", key)
    if m:
        return dt.date(int(m[1]), int(m[2]), 1)
    m = re.search(r"/(\d{4})(\d{2})01-\d{8}/", key)
    return dt.date(int(m[1]), int(m[2]), 1) if m else None


def _read_manifest(data: bytes, name: str) -> dict:
    return read_json_doc(data, name, "manifest")


# --------------------------------------------------------------------------------------------------
# Reading one file: a private DuckDB connection casts, filters and folds the tags in SQL
# --------------------------------------------------------------------------------------------------
class _Plan:
    """A file's columns (name -> DuckDB type) resolved once into the SELECT that yields raw rows."""

    def __init__(self, columns: list[tuple], fname: str, out_schema: pa.Schema):
        """columns: (name, DuckDB type) or (name as in the file, DuckDB type, name in DuckDB's relation)."""
        self.fname, self.out_schema = fname, out_schema
        self.types = {c[0]: c[1] for c in columns}
        self.sql_names = {c[0]: c[2] if len(c) > 2 else c[0] for c in columns}
        self.by_norm: dict[str, str] = {}
        self.tag_cols: list[tuple[str, str]] = []
        for n, *_ in columns:
            key = _tag_key(n)
            if key is not None:
                self.tag_cols.append((n, key))
                continue
            self.by_norm.setdefault(normalise(n), n)
        self.tag_map_col = self.by_norm.get("resource_tags")
        self.product_map_col = self.by_norm.get("product")
        require_columns(self.by_norm, REQUIRED_SOURCE, fname, "CUR")
        self.source: dict[str, str | None] = {}
        for raw, (_, candidates) in COLUMN_MAP.items():
            self.source[raw] = next((self.by_norm[c] for c in candidates if c in self.by_norm), None)

    # -- typed expressions over one source column ------------------------------------------------
    def ref(self, col: str) -> str:
        return sq.q(self.sql_names[col])

    def text(self, col: str) -> str:
        return sq.text(self.ref(col), self.types[col])

    def money(self, col: str) -> str:
        return sq.money(self.ref(col), self.types[col])

    def time(self, col: str) -> str:
        return sq.timestamp(self.ref(col), self.types[col])

    def checks(self) -> list[tuple[str, str, str, str]]:
        """(column, kind, reference, condition) for every cast that can fail: to find a bad value's column."""
        out = []
        for col in (self.by_norm.get(c) for c in (USAGE_START, USAGE_END, PERIOD_START, PERIOD_END)):
            if col and sq.is_text(self.types[col]):
                out.append((col, "timestamp", self.ref(col), sq.timestamp_check(self.ref(col))))
        for raw, (kind, _) in COLUMN_MAP.items():
            col = self.source[raw]
            if kind == MONEY and col and (sq.is_text(self.types[col]) or self.types[col] in ("DOUBLE", "FLOAT")):
                out.append((col, "number", self.ref(col), sq.number_check(self.ref(col))))
        return out

    # -- tags --------------------------------------------------------------------------------------
    def _flat_tags(self) -> list[tuple[str, str]]:
        """(key, value expression) per tag key of the flat tag columns; the last non-empty column wins."""
        by_key: dict[str, list[str]] = {}
        for src, key in self.tag_cols:
            by_key.setdefault(key, []).append(self.text(src))
        return [(k, v[0] if len(v) == 1 else f"COALESCE({', '.join(reversed(v))})") for k, v in by_key.items()]

    def _map_entries(self) -> str | None:
        """A list of {k, v} structs from the CUR 2.0 resource_tags map (or its JSON text), else None."""
        if not self.tag_map_col:
            return None
        t, c = self.types[self.tag_map_col], self.ref(self.tag_map_col)
        if t.startswith("MAP("):
            m = c
        elif sq.is_text(t):
            m = (f"CASE WHEN json_valid({c}) AND json_type({c}) = 'OBJECT' "
                 f"THEN json_transform({c}, '\"MAP(VARCHAR, VARCHAR)\"') END")
        else:
            return None
        return ("list_transform(map_entries(" + m + "), lambda e: {'k': regexp_replace(lower(CAST(e.key AS VARCHAR)), "
                "'^user[:_]', ''), 'v': CAST(e.value AS VARCHAR)})")

    def tags(self) -> tuple[str, str | None]:
        """(expression of the tags JSON, expression of the {k, v} list it is built from, if any).

        Flat tag columns only: plain text concatenation. With a map: the list is computed in an inner
        SELECT (as column _tag_list) and folded in the outer one.
        """
        flat = self._flat_tags()
        entries = self._map_entries()
        if entries is None:
            if not flat:
                return "CAST(NULL AS VARCHAR)", None
            parts = [f"CASE WHEN {v} IS NOT NULL THEN {sq.lit(json.dumps(k) + ':')} || to_json({v}) END"
                     for k, v in sorted(flat)]
            return f"NULLIF('{{' || concat_ws(',', {', '.join(parts)}) || '}}', '{{}}')", None
        if flat:
            pairs = ", ".join(f"{{'k': {sq.lit(k)}, 'v': {v}}}" for k, v in flat)
            entries = f"list_concat({entries}, [{pairs}])"
        # empty values dropped; sorted by key, then position, so that on a repeated key the later entry
        # (flat columns come after the map) is the one kept
        listed = (f"list_sort(list_transform(list_filter({entries}, lambda x: x.v IS NOT NULL AND x.v <> ''), "
                  "lambda x, i: {'k': x.k, 'i': i, 'v': x.v}))")
        kept = "list_filter(_tag_list, lambda x, i: i = len(_tag_list) OR _tag_list[i + 1].k <> x.k)"
        json_text = (f"CASE WHEN len(_tag_list) = 0 THEN NULL ELSE '{{' || array_to_string(list_transform({kept}, "
                     "lambda x: to_json(x.k) || ':' || to_json(x.v)), ',') || '}' END")
        return json_text, listed

    # -- the whole SELECT --------------------------------------------------------------------------
    def sql(self, src: str, start: dt.date, end: dt.date, period_hint: dt.date | None) -> str:
        cols: dict[str, str] = {}
        cols["usage_start_time"] = self.time(self.by_norm[USAGE_START])
        end_src = self.by_norm.get(USAGE_END)
        cols["usage_end_time"] = self.time(end_src) if end_src else "CAST(NULL AS TIMESTAMPTZ)"
        ps, pe = self.by_norm.get(PERIOD_START), self.by_norm.get(PERIOD_END)
        cols["_period_start"] = f"CAST({self.time(ps)} AS DATE)" if ps else "CAST(NULL AS DATE)"
        cols["billing_period_end"] = f"CAST({self.time(pe)} AS DATE)" if pe else "CAST(NULL AS DATE)"
        for raw, (kind, _) in COLUMN_MAP.items():
            src_col = self.source[raw]
            if src_col is None:
                cols[raw] = "CAST(NULL AS DECIMAL(38, 9))" if kind == MONEY else "CAST(NULL AS VARCHAR)"
            else:
                cols[raw] = self.money(src_col) if kind == MONEY else self.text(src_col)
        if self.source["product_name"] is None and self.product_map_col:
            t, c = self.types[self.product_map_col], self.ref(self.product_map_col)
            if t.startswith("MAP("):
                cols["product_name"] = f"NULLIF(CAST({c}['product_name'] AS VARCHAR), '')"
            elif sq.is_text(t):
                cols["product_name"] = (f"CASE WHEN json_valid({c}) THEN "
                                        f"NULLIF(json_extract_string({c}, '$.product_name'), '') END")
        cols["unblended_cost"] = f"COALESCE({cols['unblended_cost']}, CAST(0 AS DECIMAL(38, 9)))"
        tags, tag_list = self.tags()
        if tag_list is None:
            cols["tags"] = tags
        else:
            cols["_tag_list"] = tag_list
        inner = ",\n  ".join(f"{e} AS {sq.q(n)}" for n, e in cols.items())
        fallback = f"DATE {sq.lit(period_hint.isoformat())}" if period_hint else "CAST(date_trunc('month', usage_date) AS DATE)"
        outer = []
        for f in self.out_schema:
            if f.name == "usage_date":
                outer.append("usage_date")
            elif f.name == "billing_period_start":
                outer.append(f"COALESCE(_period_start, {fallback}) AS billing_period_start")
            elif f.name == "tags" and tag_list is not None:
                outer.append(f"{tags} AS tags")
            elif f.name == "source_file":
                outer.append(f"{sq.lit(self.fname)} AS source_file")
            else:
                outer.append(sq.q(f.name))
        guards = [("usage_start_time", f"rows have no {self.by_norm[USAGE_START]}")] + [
            (c, f"rows have an empty {self.source[c]}") for c in ("payer_account_id", "line_item_type", "currency")]
        keep = (f"usage_date BETWEEN DATE {sq.lit(start.isoformat())} AND DATE {sq.lit(end.isoformat())}")
        return (f"SELECT {', '.join(outer)} FROM (SELECT *, CAST(usage_start_time AS DATE) AS usage_date FROM "
                f"(SELECT {inner} FROM {src})) "
                f"WHERE {sq.guarded_where(((sq.q(c), m) for c, m in guards), self.fname, keep)}")


# Rows per Arrow batch when a warehouse other than the embedded one takes the rows: peak memory grows with
# it (~1.6 KiB a row in flight), time barely changes between 16k and 128k.
READ_BATCH_ROWS = 16_384
PREFETCH_BATCHES = 2


def _file_part(con, path: str, f: DataFile, ctx: ExtractContext, raw_schema: pa.Schema) -> ScanPart | None:
    """The SELECT yielding a file's in-range raw rows (None for an empty file)."""
    if Path(path).stat().st_size == 0:
        ctx.warn(f"{f.name} is empty")
        return None
    src = sq.source_sql(path, f.fmt)
    plan = _Plan(sq.describe(con, path, f), f.name, raw_schema)
    return ScanPart(plan.sql(src, ctx.start_date, ctx.end_date, f.period_start),
                    lambda e: sq.read_error(e, f, lambda e: sq.bad_value(src, f, plan.checks(), e)))


def _stream(ctx: ExtractContext, source, files: list[DataFile]) -> dict[str, Any]:
    raw_schema = schemas.get(RAW_TABLE).arrow_schema(include_lineage=False)
    return sq.file_scan(ctx, source, files, lambda con, path, f: _file_part(con, path, f, ctx, raw_schema),
                        RAW_TABLE, what="CUR", batch_rows=READ_BATCH_ROWS,
                        prefetch=PREFETCH_BATCHES)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def _source(cred: dict, org_slug: str):
    if cred.get("source"):
        url = str(cred["source"])
        if url.startswith("s3://"):
            p = urlparse(url)
            return S3Source({**cred, "bucket": p.netloc, "prefix": cred.get("prefix") or p.path.strip("/")})
        return LocalSource(url, org_slug)
    if cred.get("bucket"):
        return S3Source(cred)
    raise CredentialError('AWS credential needs {"source": "file:///folder"} or {"bucket": ..., "prefix": ...}')


def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Read every CUR (or AWS FOCUS export) file for the billing periods overlapping the run; return the
    in-range rows: a DuckScan of the CUR files, or the FOCUS export's rows for cloud_focus_raw."""
    source = _source(ctx.credential, ctx.org_slug)
    files = source.files(ctx)
    if not files:
        ctx.warn(f"no CUR billing period overlaps {ctx.start_date}..{ctx.end_date}")
    if focus_export.files_are_focus(source, files):  # FOCUS_1_0_AWS / FOCUS_1_2_AWS export -> cloud_focus_raw
        return focus_export.stream_files(ctx, source, files, PROVIDER)
    return _stream(ctx, source, files)
