"""AWS Cost and Usage Report -> aws_billing_raw (+ cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///path"}                       a folder with CUR files, or with *Manifest.json files
  {"bucket": ..., "prefix": ..., "region": ...,    S3, driven by the manifests under the prefix
   "endpoint_url": optional, "aws_access_key_id"/"aws_secret_access_key"/"aws_session_token": optional,
   "role_arn": optional (STS assume-role), "external_id": optional}

Formats: legacy CUR (`lineItem/UsageStartDate` headers, `*-Manifest.json` with `reportKeys`) and CUR 2.0 /
Data Exports (`line_item_usage_start_date` names, manifest with `dataFiles`), as CSV, gzip CSV or Parquet.
Files are streamed in record batches (CSV: every column read as text, then only the needed ones cast;
Parquet: `iter_batches`), so memory is bounded by the batch size, not the file size.

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
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud.common import (
    TS as _TS,
)
from jobs.cloud.common import (
    DataFile,
    LocalFiles,
    SourceTotals,
    list_data_files,
    local_root,
    read_json_doc,
    require_columns,
    stream_raw,
    tags_json,
)
from jobs.cloud.common import (
    as_string as _as_string,
)
from jobs.cloud.common import (
    format_of as _format_of,
)
from jobs.cloud.common import (
    map_value as _map_value,
)
from jobs.cloud.common import (
    money as _money,
)
from jobs.cloud.common import (
    month_overlaps as _month_overlaps,
)
from jobs.cloud.common import (
    timestamp as _timestamp,
)

RAW_TABLE = "aws_billing_raw"
TOTALS_TABLE = "cloud_source_totals"
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
_MONEY_TYPE = pa.decimal128(38, 9)


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
    def __init__(self, url: str):
        self.root = local_root(url)

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        manifests = sorted(self.root.rglob("*Manifest.json"))
        if not manifests:
            found = list_data_files(self.root)
            if not found:
                raise ExtractError(f"no CUR files (.csv, .csv.gz, .parquet) or manifest in {self.root}")
            return [DataFile(str(p), _format_of(p.name)) for p in found]
        by_period: dict[Any, tuple[float, Path, dict]] = {}
        for m in manifests:
            doc = _read_manifest(m.read_bytes(), str(m))
            period = _manifest_files(doc)[1]
            mtime = m.stat().st_mtime
            if period not in by_period or mtime >= by_period[period][0]:
                by_period[period] = (mtime, m, doc)
        out = []
        for period, (_, m, doc) in sorted(by_period.items(), key=lambda kv: str(kv[0])):
            if not _month_overlaps(period, ctx.start_date, ctx.end_date):
                continue
            for key in _manifest_files(doc)[0]:
                path = self._resolve(_s3_key(key), m)
                out.append(DataFile(str(path), _format_of(path.name) or "csv.gz", period))
        return out

    def _resolve(self, key: str, manifest: Path) -> Path:
        parts = Path(key).parts
        for i in range(len(parts)):  # longest suffix of the S3 key that exists under the folder
            cand = self.root.joinpath(*parts[i:])
            if cand.is_file():
                return cand
        cand = manifest.parent / parts[-1]
        if cand.is_file():
            return cand
        raise ExtractError(f"manifest {manifest} lists {key}, which is not in {self.root}")

class S3Source:
    def __init__(self, cred: dict):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:  # pragma: no cover
            raise ExtractError("reading from S3 needs boto3 (pip install boto3)") from e
        self.bucket = cred["bucket"]
        self.prefix = (cred.get("prefix") or "").strip("/")
        region = cred.get("region") or "us-east-1"
        endpoint = cred.get("endpoint_url")
        keys = {k: cred[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token") if cred.get(k)}
        session = boto3.session.Session(region_name=region, **keys)
        if cred.get("role_arn"):
            sts = session.client("sts", endpoint_url=endpoint)
            args = {"RoleArn": cred["role_arn"], "RoleSessionName": "cloudact-cur-reader"}
            if cred.get("external_id"):
                args["ExternalId"] = cred["external_id"]
            try:
                c = sts.assume_role(**args)["Credentials"]
            except Exception as e:  # noqa: BLE001 - botocore raises many kinds
                raise CredentialError(f"could not assume role {cred['role_arn']}: {e}") from None
            session = boto3.session.Session(region_name=region, aws_access_key_id=c["AccessKeyId"],
                                            aws_secret_access_key=c["SecretAccessKey"],
                                            aws_session_token=c["SessionToken"])
        self.s3 = session.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def _err(self, e: Exception, what: str) -> ExtractError:
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
        """Parquet needs random access: spool the object to a temporary file (disk, not memory)."""
        tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".parquet"))  # noqa: SIM115
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
# Casting one batch to the raw table
# --------------------------------------------------------------------------------------------------
class _Mapper:
    """Resolves a file's column names once, then converts its batches."""

    def __init__(self, names: list[str], fname: str, out_schema: pa.Schema):
        self.fname, self.out_schema = fname, out_schema
        self.by_norm: dict[str, str] = {}
        self.tag_cols: list[tuple[str, str]] = []
        for n in names:
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

    def convert(self, batch: pa.RecordBatch, start: dt.date, end: dt.date, period_hint: dt.date | None):
        n = batch.num_rows
        def col(name: str) -> pa.Array:
            return batch.column(batch.schema.get_field_index(name))
        start_ts = _timestamp(col(self.by_norm[USAGE_START]), USAGE_START, self.fname)
        if start_ts.null_count:
            raise ExtractError(f"{self.fname}: {start_ts.null_count} rows have no {USAGE_START}")
        usage_date = start_ts.cast(pa.date32())
        keep = pc.and_(pc.greater_equal(usage_date, pa.scalar(start, pa.date32())),
                       pc.less_equal(usage_date, pa.scalar(end, pa.date32())))
        if not pc.any(keep).as_py():
            return None
        batch = batch.filter(keep)
        start_ts, usage_date = start_ts.filter(keep), usage_date.filter(keep)
        n = batch.num_rows
        out: dict[str, pa.Array] = {"usage_date": usage_date, "usage_start_time": start_ts}
        end_src = self.by_norm.get(USAGE_END)
        out["usage_end_time"] = (_timestamp(col(end_src), USAGE_END, self.fname) if end_src
                                 else pa.nulls(n, _TS))
        ps = self.by_norm.get(PERIOD_START)
        if ps:
            out["billing_period_start"] = _timestamp(col(ps), PERIOD_START, self.fname).cast(pa.date32())
        else:
            out["billing_period_start"] = pa.nulls(n, pa.date32())
        month_of_usage = pc.floor_temporal(usage_date, unit="month")
        fallback = pa.scalar(period_hint, pa.date32()) if period_hint else month_of_usage
        out["billing_period_start"] = pc.coalesce(out["billing_period_start"], fallback)
        pe = self.by_norm.get(PERIOD_END)
        out["billing_period_end"] = (_timestamp(col(pe), PERIOD_END, self.fname).cast(pa.date32()) if pe
                                     else pa.nulls(n, pa.date32()))
        for raw, (kind, _) in COLUMN_MAP.items():
            src = self.source[raw]
            if src is None:
                out[raw] = pa.nulls(n, _MONEY_TYPE if kind == MONEY else pa.string())
            elif kind == MONEY:
                out[raw] = _money(col(src), src, self.fname)
            else:
                s = _as_string(col(src))
                out[raw] = pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)
        if self.source["product_name"] is None and self.product_map_col:
            names = [_map_value(v).get("product_name") for v in col(self.product_map_col).to_pylist()]
            out["product_name"] = pa.array(names, pa.string())
        if out["unblended_cost"].null_count:
            out["unblended_cost"] = pc.coalesce(out["unblended_cost"], pa.scalar(Decimal(0), _MONEY_TYPE))
        out["tags"] = self._tags(batch, n)
        out["source_file"] = pa.array([self.fname] * n, pa.string())
        for required in ("payer_account_id", "line_item_type", "currency"):
            if out[required].null_count:
                raise ExtractError(f"{self.fname}: {out[required].null_count} rows have an empty "
                                   f"{self.source[required]}")
        return pa.RecordBatch.from_arrays([out[f.name] for f in self.out_schema], schema=self.out_schema)

    def _tags(self, batch: pa.RecordBatch, n: int) -> pa.Array:
        cols = [(key, batch.column(batch.schema.get_field_index(src)).to_pylist()) for src, key in self.tag_cols]
        maps = (batch.column(batch.schema.get_field_index(self.tag_map_col)).to_pylist()
                if self.tag_map_col else None)
        if not cols and maps is None:
            return pa.nulls(n, pa.string())
        values = []
        for i in range(n):
            tags = {}
            if maps is not None:
                for k, v in _map_value(maps[i]).items():
                    key = _tag_key("resource_tags_" + str(k))
                    if v not in (None, ""):
                        tags[key] = str(v)
            for key, vals in cols:
                if vals[i] not in (None, ""):
                    tags[key] = str(vals[i])
            values.append(tags_json(tags))
        return pa.array(values, pa.string())


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def _source(cred: dict):
    if cred.get("source"):
        url = str(cred["source"])
        if url.startswith("s3://"):
            p = urlparse(url)
            return S3Source({**cred, "bucket": p.netloc, "prefix": cred.get("prefix") or p.path.strip("/")})
        return LocalSource(url)
    if cred.get("bucket"):
        return S3Source(cred)
    raise CredentialError('AWS credential needs {"source": "file:///folder"} or {"bucket": ..., "prefix": ...}')


def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Read every CUR file for the billing periods overlapping the run; return the in-range rows.

    Raw rows are returned as a generator (streamed into the warehouse); the totals table is built as
    the raw stream is consumed, so it is listed second and the runner consumes it after the raw rows.
    """
    source = _source(ctx.credential)
    files = source.files(ctx)
    if not files:
        ctx.warn(f"no CUR billing period overlaps {ctx.start_date}..{ctx.end_date}")
    return stream_raw(ctx, source, files, RAW_TABLE, _Mapper, SourceTotals(PROVIDER), what="CUR")
