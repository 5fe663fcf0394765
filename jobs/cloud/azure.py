"""Azure Cost Management exports: cost details -> azure_billing_raw, FocusCost -> cloud_focus_raw (+
cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///dir", "dataset": optional}   export files directly, or export folders with manifest.json
  {"account_url": ..., "container": ..., "prefix": ...,   Blob Storage, driven by the manifest.json files
   "connection_string": optional,                         under the prefix
   "tenant_id"/"client_id"/"client_secret": optional (ClientSecretCredential; else DefaultAzureCredential),
   "dataset": optional}

Datasets: ActualCost and AmortizedCost exports -> azure_billing_raw; FocusCost exports (FOCUS 1.0-preview(v1),
1.0, 1.0r2, 1.2-preview) -> cloud_focus_raw through jobs/cloud/focus_export.py, up-converted to FOCUS 1.3 by
50_focus_export.sql. The dataset of a file is the manifest's exportConfig.type; without one, the credential's
"dataset" ("actual" / "amortized" / "focus"), else "amortized" in the file path, else the file's header (FOCUS
columns: FocusCost, otherwise ActualCost). FocusCost holds the actual and the amortized charges in one file, so
when the files of a run include a FocusCost export, cost-details files of the periods it covers are skipped (with
a warning) and a period only a cost-details export covers fails the run: one credential reads one kind.

Cost details: both EA (PascalCase, `CostInBillingCurrency`, `BillingCurrencyCode`, older `Cost`, `SubscriptionGuid`,
`InstanceId`, `UsageDate`) and MCA (camelCase, `costInBillingCurrency`, `billingCurrency`) names are accepted: names
are compared lower-cased without punctuation, with known renames listed per raw column. Dates are `MM/DD/YYYY` or
ISO, per value. `Tags` is JSON, or EA's JSON without the outer braces; keys are lower-cased.

With manifests, the newest run (runInfo.submittedTime, else the file time) per export, dataset and period wins
and only the blobs it lists are read, so overwritten or stale parts are never double counted.

cloud_source_totals: per usage day, billing period and currency, the billed total of what was read: the
ActualCost rows' cost when the period has an actual export, else the AmortizedCost rows' cost without the
commitment-covered usage and unused-commitment rows (billed at purchase, not at use); for FocusCost, the
SUM(BilledCost) of its rows.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import focus_export
from jobs.cloud.common import (
    MONEY_TYPE,
    DataFile,
    LocalFiles,
    SourceTotals,
    as_string,
    blank_to_null,
    date_from_text,
    format_of,
    list_data_files,
    local_root,
    money,
    month_overlaps,
    read_json_doc,
    require_columns,
    resolve_listed_file,
    stream_raw,
    tags_json,
)

RAW_TABLE = "azure_billing_raw"
PROVIDER = "azure"
ACTUAL, AMORTIZED, FOCUS = "ActualCost", "AmortizedCost", "FocusCost"
STRING, MONEY, DATE = "string", "money", "date"

# raw column -> (kind, source names in priority order, as normalised by `norm`)
COLUMN_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "usage_date": (DATE, ("date", "usagedate", "usagedatetime")),
    "billing_period_start": (DATE, ("billingperiodstartdate",)),
    "billing_period_end": (DATE, ("billingperiodenddate",)),
    "billing_account_id": (STRING, ("billingaccountid", "enrollmentnumber")),
    "billing_account_name": (STRING, ("billingaccountname",)),
    "billing_profile_id": (STRING, ("billingprofileid",)),
    "billing_profile_name": (STRING, ("billingprofilename",)),
    "invoice_section_name": (STRING, ("invoicesectionname", "departmentname")),
    "subscription_id": (STRING, ("subscriptionid", "subscriptionguid")),
    "subscription_name": (STRING, ("subscriptionname",)),
    "resource_group": (STRING, ("resourcegroup", "resourcegroupname")),
    "resource_id": (STRING, ("resourceid", "instanceid")),
    "resource_name": (STRING, ("resourcename",)),
    "resource_location": (STRING, ("resourcelocation", "location", "resourcelocationnormalized")),
    "availability_zone": (STRING, ("availabilityzone",)),
    "meter_category": (STRING, ("metercategory",)),
    "meter_subcategory": (STRING, ("metersubcategory",)),
    "meter_name": (STRING, ("metername",)),
    "meter_id": (STRING, ("meterid",)),
    "meter_region": (STRING, ("meterregion",)),
    "consumed_service": (STRING, ("consumedservice",)),
    "service_name": (STRING, ("servicename",)),
    "service_family": (STRING, ("servicefamily",)),
    "product_name": (STRING, ("productname", "product")),
    "product_id": (STRING, ("productid",)),
    "part_number": (STRING, ("partnumber",)),
    "quantity": (MONEY, ("quantity", "usagequantity", "consumedquantity")),
    "unit_of_measure": (STRING, ("unitofmeasure",)),
    "unit_price": (MONEY, ("unitprice",)),
    "effective_price": (MONEY, ("effectiveprice",)),
    "payg_price": (MONEY, ("paygprice",)),
    "payg_cost": (MONEY, ("paygcostinbillingcurrency",)),
    "cost": (MONEY, ("costinbillingcurrency", "cost", "pretaxcost")),
    "billing_currency": (STRING, ("billingcurrencycode", "billingcurrency", "currency")),
    "pricing_currency": (STRING, ("pricingcurrency", "pricingcurrencycode")),
    "charge_type": (STRING, ("chargetype",)),
    "frequency": (STRING, ("frequency", "chargefrequency")),
    "pricing_model": (STRING, ("pricingmodel",)),
    "term": (STRING, ("term",)),
    "reservation_id": (STRING, ("reservationid",)),
    "reservation_name": (STRING, ("reservationname",)),
    "benefit_id": (STRING, ("benefitid",)),
    "benefit_name": (STRING, ("benefitname",)),
    "publisher_type": (STRING, ("publishertype",)),
    "publisher_name": (STRING, ("publishername",)),
    "publisher_id": (STRING, ("publisherid",)),
    "invoice_id": (STRING, ("invoiceid",)),
}
# Without these a row cannot be converted: fail naming them (EA names; the MCA/older aliases also count).
REQUIRED = ("usage_date", "cost", "billing_currency", "charge_type")
REQUIRED_NAMES = {"usage_date": "Date", "cost": "CostInBillingCurrency", "billing_currency": "BillingCurrencyCode",
                  "charge_type": "ChargeType"}
TAG_COLUMNS = ("tags",)
COMMITMENT_USAGE = ("Usage", "UnusedReservation", "UnusedSavingsPlan")

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def norm(name: str) -> str:
    """`CostInBillingCurrency`, `costInBillingCurrency`, `Cost In Billing Currency` -> `costinbillingcurrency`."""
    return _NON_ALNUM.sub("", name.lower())


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------
_UNIT_WORDS = {
    "hour": "Hours", "hours": "Hours", "hrs": "Hours", "day": "Days", "days": "Days", "month": "Months",
    "months": "Months", "minute": "Minutes", "minutes": "Minutes", "second": "Seconds", "seconds": "Seconds",
    "gb": "GB", "tb": "TB", "mb": "MB", "kb": "KB", "pb": "PB", "gib": "GiB", "tib": "TiB", "mib": "MiB",
    "unit": "Units", "units": "Units", "count": "Count", "request": "Requests", "requests": "Requests",
    "transaction": "Transactions", "transactions": "Transactions", "call": "Calls", "calls": "Calls",
    "message": "Messages", "messages": "Messages", "operation": "Operations", "operations": "Operations",
    "vcore": "vCores", "vcores": "vCores", "core": "Cores", "cores": "Cores", "user": "Users", "users": "Users",
    "license": "Licenses", "licenses": "Licenses", "token": "Tokens", "tokens": "Tokens",
    "dtu": "DTUs", "dtus": "DTUs", "ru": "RUs", "rus": "RUs", "image": "Images", "images": "Images",
    "node": "Nodes", "nodes": "Nodes", "instance": "Instances", "instances": "Instances",
    "annual": "Units/Year", "year": "Years", "years": "Years", "week": "Weeks", "weeks": "Weeks",
}
_TIME_UNITS = {"hour": "Hours", "hours": "Hours", "day": "Days", "days": "Days", "month": "Months",
               "months": "Months", "minute": "Minutes", "second": "Seconds"}
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_UOM = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([kKmMbB](?![a-zA-Z]))?\s*(.*?)\s*$")


def pricing_unit(uom: str | None) -> tuple[Decimal, str | None]:
    """UnitOfMeasure -> (block size, FOCUS Unit Format unit).

    '1 Hour' -> (1, 'Hours'); '10 Hours' -> (10, 'Hours'); '10K' -> (10000, 'Units'); '1 GB/Month' ->
    (1, 'GB-Months'); '100 GB/Hour' -> (100, 'GB-Hours'); '1/Month' -> (1, 'Units/Month'); unknown words are
    kept in title case after the block size is removed.
    """
    if uom is None or not uom.strip():
        return Decimal(1), None
    m = _UOM.match(uom)
    number, scale, rest = m[1], (m[2] or "").lower(), m[3]
    block = Decimal(number or 1) * _SCALE[scale]
    if not rest:
        return block, "Units"
    if rest.startswith("/"):
        per = _TIME_UNITS.get(rest[1:].strip().lower())
        return block, f"Units/{per[:-1]}" if per else "Units"
    if "/" in rest:
        what, per = (p.strip() for p in rest.split("/", 1))
        base = _UNIT_WORDS.get(what.lower(), what)
        time = _TIME_UNITS.get(per.lower())
        if time:
            return block, f"{base.rstrip('s') if base in ('Units',) else base}-{time}"
        return block, f"{base}/{per.title()}"
    return block, _UNIT_WORDS.get(rest.lower(), rest[:1].upper() + rest[1:])


# --------------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------------
def parse_tags(text: str | None) -> dict[str, str]:
    """Azure Tags cell -> flat dict with lower-cased keys. EA writes JSON without the outer braces."""
    if text is None:
        return {}
    s = text.strip()
    if not s:
        return {}
    if not s.startswith("{"):
        s = "{" + s + "}"
    try:
        doc = json.loads(s)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out = {}
    for k, v in doc.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True, separators=(",", ":"))
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None or v == "":
            v = "true"  # FOCUS: valueless tag keys take the value true
        out[str(k).strip().lower()] = str(v)
    return out


# --------------------------------------------------------------------------------------------------
# Manifests and sources
# --------------------------------------------------------------------------------------------------
def _dataset(value: str | None) -> str | None:
    if not value:
        return None
    v = norm(str(value))
    if v.startswith("amortized"):
        return AMORTIZED
    if v.startswith("actual") or v == "usage":
        return ACTUAL
    if v.startswith("focus"):
        return FOCUS
    raise ExtractError(f"unknown Azure export dataset {value!r}: expected ActualCost, AmortizedCost or FocusCost")


def _dataset_of_path(path: str, default: str | None) -> str | None:
    """The dataset the credential or the path names; None: the file's header decides (see extract)."""
    if default:
        return default
    return AMORTIZED if "amortized" in path.lower() else None


def _parse_day(value: Any) -> dt.date | None:
    if not value:
        return None
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", str(value))
    if m:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    m = re.match(r"^(\d{1,2})/(\d{1,2})/(\d{4})", str(value))
    return dt.date(int(m[3]), int(m[1]), int(m[2])) if m else None


class Manifest:
    """The parts of an export manifest.json the extractor uses."""

    def __init__(self, doc: dict, name: str, fallback_time: str = ""):
        cfg = doc.get("exportConfig") or {}
        run = doc.get("runInfo") or {}
        blobs = doc.get("blobs")
        if not isinstance(blobs, list):
            raise ExtractError(f"manifest {name} has no blobs list (is it a Cost Management export manifest?)")
        self.name = name
        self.export = str(cfg.get("resourceId") or cfg.get("exportName") or name.rsplit("/", 2)[0])
        self.dataset = _dataset(cfg.get("type") or cfg.get("dataset"))
        self.period = _parse_day(run.get("startDate"))
        if self.period is not None:
            self.period = self.period.replace(day=1)
        self.submitted = str(run.get("submittedTime") or fallback_time)
        self.run_id = run.get("runId")
        self.blobs = [b.get("blobName") if isinstance(b, dict) else b for b in blobs]
        self.blobs = [b for b in self.blobs if b]


def _newest(manifests: list[Manifest], ctx: ExtractContext) -> list[Manifest]:
    """The newest run per (export, dataset, period) whose period overlaps the run's range."""
    best: dict[tuple, Manifest] = {}
    for m in manifests:
        key = (m.export, m.dataset, m.period)
        if key not in best or m.submitted >= best[key].submitted:
            best[key] = m
    chosen = [m for m in best.values() if month_overlaps(m.period, ctx.start_date, ctx.end_date)]
    return sorted(chosen, key=lambda m: (str(m.period), m.dataset or "", m.export))


@dataclass(frozen=True)
class AzureFile(DataFile):
    dataset: str | None = None  # None until the header decides


class LocalSource(LocalFiles):
    def __init__(self, url: str, dataset: str | None):
        self.root = local_root(url)
        self.dataset = dataset

    def files(self, ctx: ExtractContext) -> list[AzureFile]:
        paths = sorted(self.root.rglob("manifest.json"))
        if not paths:
            found = list_data_files(self.root)
            if not found:
                raise ExtractError(f"no Azure export files (.csv, .csv.gz, .parquet) or manifest.json in {self.root}")
            return [AzureFile(str(p), format_of(p.name), None, _dataset_of_path(str(p), self.dataset)) for p in found]
        manifests = []
        for p in paths:
            mtime = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).isoformat()
            manifests.append(Manifest(read_json_doc(p.read_bytes(), str(p)), str(p), mtime))
        out = []
        for m in _newest(manifests, ctx):
            for blob in m.blobs:
                path = resolve_listed_file(self.root, blob, Path(m.name))
                out.append(AzureFile(str(path), format_of(path.name) or "csv", m.period,
                                     m.dataset or _dataset_of_path(str(path), self.dataset)))
        return out



class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (a blob download)."""

    def __init__(self, chunks):
        self._chunks, self._buf = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class BlobSource:
    def __init__(self, cred: dict):
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as e:  # pragma: no cover
            raise ExtractError("reading from Blob Storage needs azure-storage-blob (pip install azure-storage-blob)") from e
        self.container = cred.get("container")
        if not self.container:
            raise CredentialError('Azure credential needs "container" (the export storage container)')
        self.prefix = (cred.get("prefix") or "").strip("/")
        self.dataset = _dataset(cred.get("dataset"))
        if cred.get("connection_string"):
            service = BlobServiceClient.from_connection_string(cred["connection_string"])
        else:
            if not cred.get("account_url"):
                raise CredentialError('Azure credential needs "account_url" or "connection_string"')
            service = BlobServiceClient(cred["account_url"], credential=_token_credential(cred))
        self.url = service.url.rstrip("/")
        self.client = service.get_container_client(self.container)

    def _err(self, e: Exception, what: str) -> ExtractError:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        status = getattr(e, "status_code", None)
        if isinstance(e, ClientAuthenticationError) or status in (401, 403):
            return CredentialError(f"Blob Storage refused {what}: {getattr(e, 'reason', None) or e}. The identity "
                                   "needs the Storage Blob Data Reader role on the container.")
        if isinstance(e, HttpResponseError):
            return ExtractError(f"Blob Storage error on {what}: {getattr(e, 'reason', None) or e}")
        return ExtractError(f"Blob Storage error on {what}: {e}")

    def blob_url(self, name: str) -> str:
        return f"{self.url}/{self.container}/{name}"

    def files(self, ctx: ExtractContext) -> list[AzureFile]:
        where = self.blob_url(self.prefix)
        try:
            names = [(b.name, b.last_modified) for b in self.client.list_blobs(name_starts_with=self.prefix or None)
                     if b.name.rsplit("/", 1)[-1] == "manifest.json"]
        except Exception as e:  # noqa: BLE001 - azure-core raises many kinds
            raise self._err(e, f"listing {where}") from None
        if not names:
            raise ExtractError(f"no export manifest.json under {where}")
        manifests = [Manifest(read_json_doc(self._get(n), self.blob_url(n)), self.blob_url(n),
                              modified.isoformat() if modified else "") for n, modified in names]
        out = []
        for m in _newest(manifests, ctx):
            for blob in m.blobs:
                name = blob.lstrip("/")
                if name.startswith(f"{self.container}/") and not self._exists(name):
                    name = name[len(self.container) + 1:]  # some API versions include the container
                out.append(AzureFile(self.blob_url(name), format_of(name) or "csv", m.period,
                                     m.dataset or _dataset_of_path(name, self.dataset)))
        return out

    def _exists(self, name: str) -> bool:
        try:
            return self.client.get_blob_client(name).exists()
        except Exception:  # noqa: BLE001
            return False

    def _name(self, f: DataFile) -> str:
        return f.name[len(self.url) + len(self.container) + 2:]

    def _get(self, name: str) -> bytes:
        try:
            return self.client.download_blob(name).readall()
        except Exception as e:  # noqa: BLE001
            raise self._err(e, self.blob_url(name)) from None

    def open(self, f: DataFile):
        try:
            downloader = self.client.download_blob(self._name(f))
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None
        return io.BufferedReader(_ChunkStream(downloader.chunks()), 1 << 20)

    def local_path(self, f: DataFile, stack) -> str:
        """Parquet needs random access: spool the blob to a temporary file (disk, not memory)."""
        tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".parquet"))  # noqa: SIM115
        try:
            self.client.download_blob(self._name(f)).readinto(tmp)
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None
        tmp.flush()
        return tmp.name


def _token_credential(cred: dict):
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential
    except ImportError as e:  # pragma: no cover
        raise ExtractError("Azure AD sign-in needs azure-identity (pip install azure-identity)") from e
    if cred.get("client_secret"):
        missing = [k for k in ("tenant_id", "client_id") if not cred.get(k)]
        if missing:
            raise CredentialError(f"Azure credential with client_secret also needs {', '.join(missing)}")
        return ClientSecretCredential(cred["tenant_id"], cred["client_id"], cred["client_secret"])
    if cred.get("account_key"):
        return cred["account_key"]
    return DefaultAzureCredential()


# --------------------------------------------------------------------------------------------------
# Casting one batch to the raw table
# --------------------------------------------------------------------------------------------------
class _Mapper:
    """Resolves a file's column names once, then converts its batches."""

    def __init__(self, names: list[str], f: AzureFile, out_schema: pa.Schema):
        self.fname, self.dataset, self.out_schema = f.name, f.dataset, out_schema
        by_norm: dict[str, str] = {}
        for n in names:
            by_norm.setdefault(norm(n), n)
        self.source: dict[str, str | None] = {
            raw: next((by_norm[c] for c in candidates if c in by_norm), None)
            for raw, (_, candidates) in COLUMN_MAP.items()}
        present = [raw for raw in REQUIRED if self.source[raw] is not None]
        require_columns(present, REQUIRED, self.fname, "Azure cost details")
        self.tags_col = next((by_norm[c] for c in TAG_COLUMNS if c in by_norm), None)
        self.units: dict[str | None, tuple[Decimal, str | None]] = {}

    def convert(self, batch: pa.RecordBatch, start: dt.date, end: dt.date, period_hint: dt.date | None):
        def col(name: str) -> pa.Array:
            return batch.column(batch.schema.get_field_index(name))

        src = self.source
        usage_date = date_from_text(col(src["usage_date"]), src["usage_date"], self.fname)
        if usage_date.null_count:
            raise ExtractError(f"{self.fname}: {usage_date.null_count} rows have no {src['usage_date']}")
        keep = pc.and_(pc.greater_equal(usage_date, pa.scalar(start, pa.date32())),
                       pc.less_equal(usage_date, pa.scalar(end, pa.date32())))
        if not pc.any(keep).as_py():
            return None
        batch, usage_date = batch.filter(keep), usage_date.filter(keep)
        n = batch.num_rows
        out: dict[str, pa.Array] = {"usage_date": usage_date}
        for raw, (kind, _) in COLUMN_MAP.items():
            if raw == "usage_date":
                continue
            name = src[raw]
            if name is None:
                out[raw] = pa.nulls(n, {MONEY: MONEY_TYPE, DATE: pa.date32()}.get(kind, pa.string()))
            elif kind == MONEY:
                out[raw] = money(col(name), name, self.fname)
            elif kind == DATE:
                out[raw] = date_from_text(col(name), name, self.fname)
            else:
                s = blank_to_null(pc.utf8_trim_whitespace(as_string(col(name))))
                out[raw] = s
        fallback = (pa.scalar(period_hint, pa.date32()) if period_hint
                    else pc.floor_temporal(usage_date, unit="month"))
        out["billing_period_start"] = pc.coalesce(out["billing_period_start"], fallback)
        out["cost_type"] = pa.array([self.dataset] * n, pa.string())
        for required in ("billing_currency", "charge_type"):
            if out[required].null_count:
                raise ExtractError(f"{self.fname}: {out[required].null_count} rows have an empty {src[required]}")
        if out["cost"].null_count:
            out["cost"] = pc.coalesce(out["cost"], pa.scalar(Decimal(0), MONEY_TYPE))
        out["billing_currency"] = pc.utf8_upper(out["billing_currency"])
        # The new export experience writes an empty GUID or nothing for rows without a subscription.
        sub = out["subscription_id"]
        out["subscription_id"] = pc.if_else(pc.equal(sub, "00000000-0000-0000-0000-000000000000"),
                                            pa.scalar(None, pa.string()), sub)
        blocks, units = [], []
        for uom in out["unit_of_measure"].to_pylist():
            if uom not in self.units:
                self.units[uom] = pricing_unit(uom)
            b, u = self.units[uom]
            blocks.append(b)
            units.append(u)
        out["pricing_block_size"] = pa.array(blocks, MONEY_TYPE)
        out["pricing_unit"] = pa.array(units, pa.string())
        if self.tags_col:
            out["tags"] = pa.array([tags_json(parse_tags(v)) for v in col(self.tags_col).to_pylist()], pa.string())
        else:
            out["tags"] = pa.nulls(n, pa.string())
        out["source_file"] = pa.array([self.fname] * n, pa.string())
        return pa.RecordBatch.from_arrays([out[f.name] for f in self.out_schema], schema=self.out_schema)


def _is_commitment_usage(rb: pa.RecordBatch) -> pa.Array:
    """Amortized rows billed at purchase time, not at use: commitment-covered usage and unused commitments."""
    def c(name):
        return rb.column(rb.schema.get_field_index(name))
    commit = pc.or_kleene(pc.is_in(c("pricing_model"), pa.array(["Reservation", "SavingsPlan"])),
                          pc.is_in(c("charge_type"), pa.array(["UnusedReservation", "UnusedSavingsPlan"])))
    return pc.fill_null(pc.and_kleene(commit, pc.is_in(c("charge_type"), pa.array(list(COMMITMENT_USAGE)))), False)


class AzureTotals(SourceTotals):
    """Billed totals of what was read; see the module docstring for actual vs amortized."""

    def __init__(self):
        super().__init__(PROVIDER, currency_col="billing_currency", cost_col="cost")
        self.by_dataset: dict[str, dict[tuple, list]] = {
            ACTUAL: defaultdict(lambda: [0, Decimal(0)]), AMORTIZED: defaultdict(lambda: [0, Decimal(0)])}

    def add(self, out: pa.RecordBatch) -> None:
        dataset = out.column(out.schema.get_field_index("cost_type"))[0].as_py()
        cost = out.column(out.schema.get_field_index("cost"))
        if dataset == AMORTIZED:
            cost = pc.if_else(_is_commitment_usage(out), pa.scalar(Decimal(0), MONEY_TYPE), cost)
        d, p, c = (out.column(out.schema.get_field_index(x)) for x in self.cols[:3])
        agg = pa.table({"d": d, "p": p, "c": c, "v": cost}).group_by(["d", "p", "c"]).aggregate(
            [("v", "sum"), ("v", "count")])
        target = self.by_dataset[dataset]
        for dd, pp, cc, s, k in zip(*(agg.column(x).to_pylist() for x in ("d", "p", "c", "v_sum", "v_count"))):
            entry = target[(dd, pp, cc)]
            entry[0] += k
            entry[1] += s or Decimal(0)

    def batches(self, schema: pa.Schema):
        actual_periods = {p for (_, p, _) in self.by_dataset[ACTUAL]}
        self.totals = dict(self.by_dataset[ACTUAL])
        for key, value in self.by_dataset[AMORTIZED].items():
            if key[1] not in actual_periods:
                self.totals[key] = value
        yield from super().batches(schema)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def _source(cred: dict):
    if cred.get("source"):
        return LocalSource(str(cred["source"]), _dataset(cred.get("dataset")))
    if cred.get("account_url") or cred.get("connection_string"):
        return BlobSource(cred)
    raise CredentialError('Azure credential needs {"source": "file:///folder"} or '
                          '{"account_url": ..., "container": ..., "prefix": ...}')


def _with_dataset(source, f: AzureFile) -> AzureFile:
    if f.dataset:
        return f
    return replace(f, dataset=FOCUS if focus_export.files_are_focus(source, [f]) else ACTUAL)


def _only_focus(ctx: ExtractContext, files: list[AzureFile], focus_files: list[AzureFile]) -> None:
    """FocusCost and cost-details exports hold the same charges: read FocusCost, never both for one period."""
    others = [f for f in files if f.dataset != FOCUS]
    if not others:
        return
    covered = {f.period_start for f in focus_files}
    alone = sorted({str(f.period_start or "unknown period") for f in others
                    if f.period_start is None or f.period_start not in covered})
    if alone:
        raise ExtractError(f"the export files hold a FocusCost export and ActualCost/AmortizedCost exports, and only "
                           f"the latter cover {', '.join(alone)}: point the credential at one kind of export "
                           "(prefix or folder), FocusCost preferably")
    ctx.warn(f"skipped {len(others)} ActualCost/AmortizedCost files: the FocusCost export of the same periods "
             "holds the same charges")


def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Read every export file of the periods overlapping the run; return the in-range rows (streamed)."""
    source = _source(ctx.credential)
    files = [_with_dataset(source, f) for f in source.files(ctx)]
    if not files:
        ctx.warn(f"no Azure export period overlaps {ctx.start_date}..{ctx.end_date}")
    focus_files = [f for f in files if f.dataset == FOCUS]
    if focus_files:
        _only_focus(ctx, files, focus_files)
        return focus_export.stream_files(ctx, source, focus_files, PROVIDER)
    by_name = {f.name: f for f in files}

    def make_mapper(names: list[str], fname: str, schema: pa.Schema) -> _Mapper:
        return _Mapper(names, by_name[fname], schema)

    return stream_raw(ctx, source, files, RAW_TABLE, make_mapper, AzureTotals(), what="Azure export")
