"""Azure Cost Management exports: cost details -> azure_billing_raw, FocusCost -> cloud_focus_raw (+
cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///dir", "dataset": optional}   export files directly, or export folders with manifest.json
  {"account_url": ..., "container": ..., "prefix": ...,   Blob Storage, driven by the manifest.json files
   "connection_string": optional,                         under the prefix
   "tenant_id"/"client_id" with "client_secret" or "client_certificate" (PEM), or "access_token",
   or "account_key": optional (else DefaultAzureCredential; refused in multi tenancy, see jobs/identity.py),
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
ISO, per value. `Tags` is JSON, or EA's JSON without the outer braces; keys are lower-cased, valueless keys true.
Each cost-details file becomes one DuckDB SELECT (a `ScanPart` of a `shared.warehouse.scan.DuckScan`, built by
`_Plan`) that trims, casts (CSV: every column read as text first; NUMERIC rounded half to even), parses dates,
units (`pricing_unit`) and tags (`parse_tags` + `tags_json`) in SQL, drops rows outside the run's range and
stops on a row breaking a rule (no date, no currency, ...) with the message the file's values call for. The
embedded warehouse runs it inside its own INSERT; other warehouses stream it as Arrow batches from a private,
memory-capped DuckDB. Blobs are spooled to a temporary file first. `parse_tags` and `pricing_unit` stay the
Python statement of the rules the SQL follows (tests hold the two together).

With manifests, the newest run (runInfo.submittedTime, else the file time) per export, dataset and period wins
and only the blobs it lists are read, so overwritten or stale parts are never double counted.

cloud_source_totals: per usage day, billing period and currency, the billed total of what was read: the
ActualCost rows' cost when the period has an actual export, else the AmortizedCost rows' cost without the
commitment-covered usage and unused-commitment rows (billed at purchase, not at use), summed by the warehouse
from the landed rows (schemas/cloud_source_totals/azure_billing_raw.sql); for FocusCost, the SUM(BilledCost)
of its rows. A period read from an ActualCost export alone that holds reservation or savings-plan
purchases is warned about: FOCUS gives those purchases EffectiveCost 0 and only the amortized dataset spreads
their cost over the usage (see 30_azure.sql).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import tempfile
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import duck_sql as sq
from jobs.cloud import focus_export
from jobs.cloud.common import (
    BadValue,
    DataFile,
    LocalFiles,
    format_of,
    month_overlaps,
    not_a,
    read_json_doc,
    require_columns,
)
from jobs.identity import azure_identity, azure_request_hook, no_azure_identity
from shared import tenancy, units
from shared.warehouse.scan import ScanPart

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

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def norm(name: str) -> str:
    """`CostInBillingCurrency`, `costInBillingCurrency`, `Cost In Billing Currency` -> `costinbillingcurrency`."""
    return _NON_ALNUM.sub("", name.lower())


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_UOM = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([kKmMbB](?![a-zA-Z]))?\s*(.*?)\s*$")


def pricing_unit(uom: str | None) -> tuple[Decimal, str | None]:
    """UnitOfMeasure -> (block size, FOCUS Unit Format unit): the leading block ('10', '10K', '1M') goes to the
    quantity; the rest is the unit shared.units makes of it (every path's normaliser), 'Units' without one.

    '1 Hour' -> (1, 'Hours'); '10 Hours' -> (10, 'Hours'); '10K' -> (10000, 'Units'); '1 GB/Month' ->
    (1, 'GB-Months'); '100 GB/Hour' -> (100, 'GB-Hours'); '1/Month' -> (1, 'Units/Month').
    """
    if uom is None or not uom.strip():
        return Decimal(1), None
    m = _UOM.match(uom)
    number, scale, rest = m[1], (m[2] or "").lower(), m[3]
    return Decimal(number or 1) * _SCALE[scale], units.focus_unit(rest) or "Units"


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
    def __init__(self, url: str, dataset: str | None, org_slug: str):
        super().__init__(url, org_slug)
        self.dataset = dataset

    def files(self, ctx: ExtractContext) -> list[AzureFile]:
        listed = self.folder.files()
        paths = [p for p in listed if p.name == "manifest.json"]
        if not paths:
            found = [p for p in listed if format_of(p.name)]
            if not found:
                raise ExtractError(f"no Azure export files (.csv, .csv.gz, .parquet) or manifest.json in "
                                   f"{self.name(self.root)}")
            return [AzureFile(self.name(p), format_of(p.name), None, _dataset_of_path(self.name(p), self.dataset))
                    for p in found]
        manifests, path_of = [], {}
        for p in paths:
            mtime = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).isoformat()
            manifests.append(Manifest(read_json_doc(self.folder.read_bytes(p), self.name(p)), self.name(p), mtime))
            path_of[self.name(p)] = p
        out = []
        for m in _newest(manifests, ctx):
            for blob in m.blobs:
                path = self.listed(blob, path_of[m.name])
                out.append(AzureFile(self.name(path), format_of(path.name) or "csv", m.period,
                                     m.dataset or _dataset_of_path(self.name(path), self.dataset)))
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
        # every request (each try, each redirect) is checked against the tenancy's endpoint rules
        hook = {"raw_request_hook": azure_request_hook}
        if cred.get("connection_string"):
            service = BlobServiceClient.from_connection_string(cred["connection_string"], **hook)
            if tenancy.is_multi():
                url = urlsplit(service.url)
                tenancy.check_endpoint(f"{url.scheme}://{url.netloc}/", "the connection_string's BlobEndpoint")
        else:
            if not cred.get("account_url"):
                raise CredentialError('Azure credential needs "account_url" or "connection_string"')
            if tenancy.is_multi():
                tenancy.check_endpoint(cred["account_url"], "account_url")
            service = BlobServiceClient(cred["account_url"], credential=_token_credential(cred), **hook)
        self.url = service.url.rstrip("/")
        self.client = service.get_container_client(self.container)

    def _err(self, e: Exception, what: str) -> Exception:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        if isinstance(e, tenancy.TrustViolation):
            return e
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
        """The blob spooled to a temporary file (disk, not memory), for DuckDB to read."""
        suffix = {"parquet": ".parquet", "csv.gz": ".csv.gz"}.get(f.fmt, ".csv")
        tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=suffix))  # noqa: SIM115
        try:
            self.client.download_blob(self._name(f)).readinto(tmp)
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f.name) from None
        tmp.flush()
        return tmp.name


def _token_credential(cred: dict):
    """The credential's own identity, its account key, else (single tenancy only) the operator's."""
    identity = azure_identity(cred)
    if identity is not None:
        return identity
    if cred.get("account_key"):
        return cred["account_key"]
    if tenancy.is_multi():
        raise no_azure_identity()
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as e:  # pragma: no cover
        raise ExtractError("Azure AD sign-in needs azure-identity (pip install azure-identity)") from e
    return DefaultAzureCredential()


# --------------------------------------------------------------------------------------------------
# Reading one file: a DuckDB SELECT that resolves, trims, casts and filters in SQL
# --------------------------------------------------------------------------------------------------
# What Python's str.strip() and Arrow's utf8_trim_whitespace remove: values are trimmed as they always were.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
_WS = sq.lit(WHITESPACE)
# A date that cannot be parsed stops the SELECT with error(MARK kind SEP column END); `explain` finds its row
# and names the column and the row, never the value.
_MARK, _SEP, _END = "cloudact-azure-value\x1f", "\x1f", "\x1e"
_VALUE_ERROR = re.compile(re.escape(_MARK) + "(\\w+)" + _SEP + "(.*?)" + _END, re.DOTALL)
_NO_VALUE = re.compile(r"^(.*): rows have (no|an empty) (.*)$", re.DOTALL)
_DATE_PROBLEMS = {"date": not_a("date"), "impossible": "an impossible date"}


def _value_error(kind: str, col: str) -> str:
    return f"error({sq.lit(_MARK + kind + _SEP + col + _END)})"


def _date_parts(ref: str) -> tuple[str, str]:
    """The `MM/DD/YYYY` and ISO date prefixes of a text ('' when it has none)."""
    return (f"regexp_extract({ref}, '^\\d{{1,2}}/\\d{{1,2}}/\\d{{4}}')",
            f"regexp_extract({ref}, '^\\d{{4}}-\\d{{2}}-\\d{{2}}')")


def _date_sql(ref: str, typ: str, col: str) -> str:
    """DATE from a DATE / TIMESTAMP column, or from trimmed text (NULL for blank): `MM/DD/YYYY` or ISO
    (`2024-03-01`, `2024-03-01T00:00:00Z`) per value, the rest of the text ignored."""
    if typ == "DATE":
        return ref
    if typ.startswith("TIMESTAMP"):
        return f"CAST(CAST({ref} AS TIMESTAMPTZ) AS DATE)"
    us, iso = _date_parts(ref)
    return (f"CASE WHEN {ref} IS NULL THEN NULL "
            f"WHEN {us} <> '' THEN COALESCE(CAST(TRY_STRPTIME({us}, '%m/%d/%Y') AS DATE), "
            f"{_value_error('impossible', col)}) "
            f"WHEN {iso} <> '' THEN COALESCE(TRY_CAST({iso} AS DATE), {_value_error('impossible', col)}) "
            f"ELSE {_value_error('date', col)} END")


def _date_bad(ref: str, kind: str) -> str:
    """True for a text `_date_sql` stops on with `kind` (date: no date at its start; impossible: a date
    that does not exist)."""
    us, iso = _date_parts(ref)
    if kind == "date":
        return f"{ref} IS NOT NULL AND {us} = '' AND {iso} = ''"
    return (f"{ref} IS NOT NULL AND CASE WHEN {us} <> '' THEN TRY_STRPTIME({us}, '%m/%d/%Y') IS NULL "
            f"WHEN {iso} <> '' THEN TRY_CAST({iso} AS DATE) IS NULL ELSE false END")


def _trimmed(ref: str, typ: str) -> str:
    """Text trimmed of whitespace, blank as NULL (the pyarrow reader's strings)."""
    text = ref if sq.is_text(typ) else f"CAST({ref} AS VARCHAR)"
    # trim() with a character set is slow: only values starting or ending with other than printable ASCII
    return (f"CASE WHEN ascii({text}) BETWEEN 33 AND 126 AND ascii(right({text}, 1)) BETWEEN 33 AND 126 "
            f"THEN {text} ELSE NULLIF(trim({text}, {_WS}), '') END")


def _map_sql(mapping: dict[str, str]) -> str:
    return "MAP {" + ", ".join(f"{sq.lit(k)}: {sq.lit(v)}" for k, v in mapping.items()) + "}"


# The usual units, looked up rather than parsed (a few regular expressions per row otherwise); their
# values come from pricing_unit itself.
_KNOWN_UOMS = ("1 Hour", "10 Hours", "100 Hours", "1000 Hours", "1 Day", "1 Month", "1 GB", "10 GB", "100 GB",
               "1 TB", "1 GB/Month", "1 GB/Hour", "100 GB/Month", "1 TB/Month", "1/Month", "1/Day", "1/Hour",
               "1K", "10K", "100K", "1M", "10000 Transactions", "1 Count", "1")


@lru_cache(maxsize=1)
def _known() -> tuple[str, str]:
    """(block size, unit) MAPs of the usual units."""
    return (_map_sql({k: str(pricing_unit(k)[0]) for k in _KNOWN_UOMS}),
            _map_sql({k: pricing_unit(k)[1] for k in _KNOWN_UOMS}))


def _unit_sql(u: str) -> tuple[str, str]:
    """(pricing_block_size, pricing_unit) expressions over the trimmed UnitOfMeasure `u`: `pricing_unit` in SQL."""
    known_blocks, known_units = _known()
    num = f"regexp_extract({u}, '^(\\d+(?:\\.\\d+)?)', 1)"
    after = f"ltrim(substr({u}, length({num}) + 1), {_WS})"
    has_scale = f"regexp_matches({after}, '^[kKmMbB]([^a-zA-Z]|$)')"
    factor = (f"CASE WHEN {has_scale} THEN {_map_sql({k: str(v) for k, v in _SCALE.items() if k})}"
              f"[lower(left({after}, 1))] ELSE '1' END")
    block = (f"CASE WHEN {u} IS NULL THEN CAST(1 AS {sq.MONEY}) WHEN {known_blocks}[{u}] IS NOT NULL THEN "
             f"CAST({known_blocks}[{u}] AS {sq.MONEY}) ELSE CAST(CAST(COALESCE(NULLIF({num}, ''), '1') "
             f"AS DECIMAL(38, 9)) * CAST({factor} AS BIGINT) AS {sq.MONEY}) END")
    rest = f"trim(CASE WHEN {has_scale} THEN substr({after}, 2) ELSE {after} END, {_WS})"
    unit = (f"CASE WHEN {u} IS NULL THEN NULL WHEN {known_units}[{u}] IS NOT NULL THEN {known_units}[{u}] "
            f"ELSE COALESCE({units.duckdb_sql(rest)}, 'Units') END")
    return block, unit


# A Tags cell in the form exports write (string keys and values without escapes, brace-less or not), parsed
# with regular expressions; anything else goes through DuckDB's JSON functions.
_JSON_WS = "[ \\t\\n\\r]*"
_PLAIN = '"[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*"'
_PAIR = f"{_PLAIN}{_JSON_WS}:{_JSON_WS}{_PLAIN}"
_BODY = f"{_PAIR}({_JSON_WS},{_JSON_WS}{_PAIR})*"
_SIMPLE_TAGS = f"^(\\{{{_JSON_WS}({_BODY})?{_JSON_WS}\\}}|{_BODY})$"
_PAIR_GROUPS = f'"([^"]*)"{_JSON_WS}:{_JSON_WS}"([^"]*)"'
# DuckDB's JSON reader accepts trailing commas and comments, Python's json (and so the tags as always read)
# does not: outside string literals, such text means no tags.
_STRING = '"(\\\\.|[^"\\\\])*"'
_LENIENT = f",{_JSON_WS}[}}\\]]|/"


def _tags_sql(t: str) -> str:
    """The flat tags JSON (parse_tags + tags_json) of the trimmed Tags text `t`, as a list of {k, i, v}
    entries (`_tag_list`: key, position, `"key":value` JSON text) folded by `_TAGS_JSON`."""
    wrapped = f"CASE WHEN starts_with({t}, '{{') THEN {t} ELSE '{{' || {t} || '}}' END"
    # printable ASCII without quotes or backslashes: strip() only removes spaces, json.dumps escapes nothing
    simple = (f"list_transform(list_zip(regexp_extract_all({t}, {sq.lit(_PAIR_GROUPS)}, 1), "
              f"regexp_extract_all({t}, {sq.lit(_PAIR_GROUPS)}, 2)), lambda p: {{'k': lower(trim(p[1])), "
              "'v': CASE WHEN p[2] = '' THEN 'true' ELSE p[2] END})")
    simple = f"list_transform({simple}, lambda x: {{'k': x.k, 'v': '\"' || x.k || '\":\"' || x.v || '\"'}})"
    # Python's str() of what json.loads gives: integers exactly, floats as repr (DuckDB prints doubles the same)
    number = ("CASE WHEN regexp_matches(CAST(x.v AS VARCHAR), '^-?[0-9]+$') THEN COALESCE(CAST(TRY_CAST("
              "CAST(x.v AS VARCHAR) AS HUGEINT) AS VARCHAR), CAST(x.v AS VARCHAR)) "
              "ELSE CAST(CAST(CAST(x.v AS VARCHAR) AS DOUBLE) AS VARCHAR) END")
    value = ("CASE json_type(x.v) WHEN 'VARCHAR' THEN CASE WHEN json_extract_string(x.v, '$') = '' THEN "
             "'\"true\"' ELSE to_json(json_extract_string(x.v, '$')) END "
             "WHEN 'NULL' THEN '\"true\"' WHEN 'BOOLEAN' THEN to_json(CAST(x.v AS VARCHAR)) "
             "WHEN 'OBJECT' THEN to_json(CAST(x.v AS VARCHAR)) WHEN 'ARRAY' THEN to_json(CAST(x.v AS VARCHAR)) "
             f"ELSE to_json({number}) END")
    general = (f"list_transform(json_keys({wrapped}), lambda k: {{'k': k, 'v': json_extract({wrapped}, "
               f"'$.' || to_json(k))}})")
    general = f"list_transform({general}, lambda x: {{'k': lower(trim(x.k, {_WS})), 'v': {value}}})"
    general = f"list_transform({general}, lambda x: {{'k': x.k, 'v': to_json(x.k) || ':' || x.v}})"
    entries = (f"CASE WHEN {t} IS NULL THEN NULL WHEN regexp_matches({t}, {sq.lit(_SIMPLE_TAGS)}) THEN {simple} "
               f"WHEN json_valid({wrapped}) AND json_type({wrapped}) = 'OBJECT' AND NOT regexp_matches("
               f"regexp_replace({wrapped}, {sq.lit(_STRING)}, '\"\"', 'g'), {sq.lit(_LENIENT)}) THEN {general} END")
    # keys trimmed and lower-cased, valueless keys true (above); empty keys dropped; sorted by key, then
    # position, so that the last of a repeated key is the one kept
    return (f"list_sort(list_transform(list_filter({entries}, lambda x: x.k <> ''), "
            "lambda x, i: {'k': x.k, 'i': i, 'v': x.v}))")


# `_tag_list` folded into JSON text: the last entry of each key, as json.dumps(sort_keys, ensure_ascii) writes it
_KEPT_TAGS = "list_filter(_tag_list, lambda x, i: i = len(_tag_list) OR _tag_list[i + 1].k <> x.k)"
_TAGS_TEXT = f"'{{' || array_to_string(list_transform({_KEPT_TAGS}, lambda x: x.v), ',') || '}}'"
_TAGS_JSON = f"CASE WHEN len(_tag_list) > 0 THEN {sq.json_ascii(_TAGS_TEXT)} END"


class _Plan:
    """A file's columns resolved once into the SELECT that yields its raw rows."""

    def __init__(self, columns: list[tuple[str, str, str]], f: AzureFile, names: list[str]):
        self.f, self.names = f, names  # the raw table's columns, in its order (Arrow batches are positional)
        by_norm: dict[str, tuple[str, str, str]] = {}
        for col in columns:
            by_norm.setdefault(norm(col[0]), col)
        self.source = {raw: next((by_norm[c] for c in candidates if c in by_norm), None)
                       for raw, (_, candidates) in COLUMN_MAP.items()}
        require_columns([raw for raw in REQUIRED if self.source[raw] is not None], REQUIRED, f.name,
                        "Azure cost details")
        self.tags = next((by_norm[c] for c in TAG_COLUMNS if c in by_norm), None)

    def _columns(self, src: str) -> str:
        """Every used column once: trimmed text, or as typed where the type is already the raw one's."""
        cols = [f"{sq.q(found[2]) if self._typed(raw) else _trimmed(sq.q(found[2]), found[1])} AS c_{raw}"
                for raw, found in self.source.items() if found is not None]
        if self.tags is not None:
            cols.append(f"{_trimmed(sq.q(self.tags[2]), self.tags[1])} AS c_tags")
        return f"SELECT {', '.join(cols)} FROM {src}"

    def _inner(self, src: str) -> str:
        """`_columns` and the usage date: the rows to filter."""
        usage = _date_sql("c_usage_date", self._typ("usage_date"), self.source["usage_date"][0])
        return f"SELECT *, {usage} AS usage_date FROM ({self._columns(src)})"

    def _typed(self, raw: str) -> bool:
        typ, kind = self.source[raw][1], COLUMN_MAP[raw][0]
        return (kind == MONEY and not sq.is_text(typ)) or (kind == DATE and (typ == "DATE" or typ.startswith("TIMESTAMP")))

    def _typ(self, raw: str) -> str:
        """The DuckDB type of column c_{raw}."""
        return self.source[raw][1] if self._typed(raw) else "VARCHAR"

    def _range(self, start: dt.date, end: dt.date) -> str:
        return f"usage_date BETWEEN DATE {sq.lit(start.isoformat())} AND DATE {sq.lit(end.isoformat())}"

    def sql(self, src: str, start: dt.date, end: dt.date) -> str:
        src_names = {raw: found[0] for raw, found in self.source.items() if found is not None}
        out: dict[str, str] = {}
        for raw, (kind, _) in COLUMN_MAP.items():
            ref = f"c_{raw}"
            if raw not in src_names:
                out[raw] = {MONEY: f"CAST(NULL AS {sq.MONEY})", DATE: "CAST(NULL AS DATE)"}.get(
                    kind, "CAST(NULL AS VARCHAR)")
            elif raw == "usage_date":
                out[raw] = "usage_date"
            elif kind == MONEY:
                out[raw] = sq.money(ref, self._typ(raw))
            elif kind == DATE:
                out[raw] = _date_sql(ref, self._typ(raw), src_names[raw])
            else:
                out[raw] = ref
        period = f"DATE {sq.lit(self.f.period_start.isoformat())}" if self.f.period_start else \
            "CAST(date_trunc('month', usage_date) AS DATE)"
        out["billing_period_start"] = f"COALESCE({out['billing_period_start']}, {period})"
        out["cost_type"] = sq.lit(self.f.dataset)
        out["cost"] = f"COALESCE({out['cost']}, CAST(0 AS {sq.MONEY}))"
        out["billing_currency"] = "upper(c_billing_currency)"
        # the new export experience writes an empty GUID for rows without a subscription
        out["subscription_id"] = f"NULLIF({out['subscription_id']}, '00000000-0000-0000-0000-000000000000')"
        uom = out["unit_of_measure"]
        out["pricing_block_size"], out["pricing_unit"] = _unit_sql(uom)
        out["tags"] = _TAGS_JSON if self.tags is not None else "CAST(NULL AS VARCHAR)"
        out["source_file"] = sq.lit(self.f.name)
        tag_list = f", {_tags_sql('c_tags')} AS _tag_list" if self.tags is not None else ""
        fname = self.f.name
        checks = sq.guarded_where(((f"c_{r}", f"rows have an empty {src_names[r]}")
                                   for r in ("billing_currency", "charge_type")), fname, "true")
        keep = f"CASE WHEN {self._range(start, end)} THEN {checks} ELSE false END"
        where = sq.guarded_where([("usage_date", f"rows have no {src_names['usage_date']}")], fname, keep)
        return (f"SELECT {', '.join(f'{out[n]} AS {sq.q(n)}' for n in self.names)} FROM "
                f"(SELECT *{tag_list} FROM ({self._inner(src)}) WHERE {where})")

    # -- errors --------------------------------------------------------------------------------------
    def explain(self, e: BaseException, src: str, start: dt.date, end: dt.date) -> BaseException:
        """A failed SELECT as the user's error: the column and row of a value that cannot be read, the number
        of rows breaking a rule, or a damaged file."""
        found = _VALUE_ERROR.search(str(e))
        if found:
            kind, col = found.groups()
            return BadValue(self.f.name, col, _DATE_PROBLEMS[kind], self._bad_date_row(kind, col, src, start, end))
        err = sq.read_error(e, self.f, lambda e: self._bad_number(e, src, start, end))
        missing = _NO_VALUE.match(str(err)) if isinstance(err, ExtractError) else None
        if missing:
            return ExtractError(f"{missing[1]}: {self._count_missing(src, start, end, missing[3])} rows have "
                                f"{missing[2]} {missing[3]}")
        return err

    def _bad_date_row(self, kind: str, col: str, src: str, start: dt.date, end: dt.date) -> int | None:
        raw = next((r for r, found in self.source.items() if found is not None and found[0] == col), None)
        if raw is None:
            return None
        bad = _date_bad(f"c_{raw}", kind)
        if raw == "usage_date":  # parsed for every row (the range is decided by it)
            return sq.first_row(f"({self._columns(src)})", bad)
        return sq.first_row(f"({self._inner(src)})", f"{self._range(start, end)} AND {bad}")

    def _count_missing(self, src: str, start: dt.date, end: dt.date, col: str) -> str:
        raw = next(r for r, found in self.source.items() if found is not None and found[0] == col)
        where = "c_usage_date IS NULL" if raw == "usage_date" else f"{self._range(start, end)} AND c_{raw} IS NULL"
        inner = self._columns(src) if raw == "usage_date" else self._inner(src)  # no date parsing: it may fail
        row = sq.probe(f"SELECT COUNT(*) FROM ({inner}) WHERE {where}")
        return str(row[0]) if row else "some"

    def _bad_number(self, e: BaseException, src: str, start: dt.date, end: dt.date) -> ExtractError:
        for raw, found in self.source.items():
            if found is None or COLUMN_MAP[raw][0] != MONEY:
                continue
            ref = f"c_{raw}"
            row = sq.first_row(f"({self._inner(src)})", f"{self._range(start, end)} AND {sq.number_check(ref)}")
            if row is not None:
                return BadValue(self.f.name, found[0], not_a("number"), row)
        return ExtractError(f"{self.f.name}: a value cannot be converted")


def _file_part(con, path: str, f: AzureFile, ctx: ExtractContext, names: list[str]) -> ScanPart | None:
    if Path(path).stat().st_size == 0:
        ctx.warn(f"{f.name} is empty")
        return None
    # CSV: read by its header, not sniffed (sniffing costs as much as reading a small file, for every statement)
    columns = sq.describe(con, path, f) if f.fmt == "parquet" else sq.describe_csv(path, f)
    src = sq.source_sql(path, f.fmt) if f.fmt == "parquet" else sq.csv_text_sql(path, f.fmt, len(columns))
    try:
        plan = _Plan(columns, f, names)
    except ExtractError:
        if sq.is_empty(con, path, f):  # a header-only file is empty, whatever its columns
            ctx.warn(f"{f.name} is empty")
            return None
        raise
    start, end = ctx.start_date, ctx.end_date
    return ScanPart(plan.sql(src, start, end), lambda e: plan.explain(e, src, start, end))


# Per billing period of the landed rows: commitment purchases (finops-toolkit's test: Purchase/Refund priced as
# Reservation/SavingsPlan) read from an ActualCost export, when the period has no AmortizedCost rows.
UNSPREAD_PURCHASES_SQL = (
    "SELECT billing_period_start AS period, COUNTIF(cost_type = 'ActualCost' AND charge_type IN ('Purchase', "
    "'Refund') AND pricing_model IN ('Reservation', 'SavingsPlan')) AS purchases FROM {rows} "
    "GROUP BY billing_period_start HAVING COUNTIF(cost_type = 'AmortizedCost') = 0 ORDER BY period")


def after_landing(ctx: ExtractContext, landed) -> None:
    """A period read from an ActualCost export alone that holds commitment purchases is warned about (see the
    module docstring); called by jobs.runner.land once the slice is written."""
    for r in landed(RAW_TABLE, UNSPREAD_PURCHASES_SQL):
        if r["purchases"]:
            ctx.warn(f"billing period {r['period']}: {r['purchases']} reservation/savings-plan purchase row(s) and "
                     "no AmortizedCost export: FOCUS gives their EffectiveCost 0 and only amortized data spreads it "
                     "over the usage; export AmortizedCost (or FocusCost) of this scope too")


# Rows per Arrow batch for warehouses other than the embedded one (peak memory grows with it).
READ_BATCH_ROWS = 16_384


def _stream(ctx: ExtractContext, source, files: list[AzureFile]) -> dict[str, Any]:
    """{azure_billing_raw: DuckScan}."""
    from shared import schemas

    names = schemas.get(RAW_TABLE).arrow_schema(include_lineage=False).names
    return sq.file_scan(ctx, source, files, lambda con, path, f: _file_part(con, path, f, ctx, names), RAW_TABLE,
                        what="Azure export", batch_rows=READ_BATCH_ROWS)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def _source(cred: dict, org_slug: str):
    if cred.get("source"):
        return LocalSource(str(cred["source"]), _dataset(cred.get("dataset")), org_slug)
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
    source = _source(ctx.credential, ctx.org_slug)
    files = [_with_dataset(source, f) for f in source.files(ctx)]
    if not files:
        ctx.warn(f"no Azure export period overlaps {ctx.start_date}..{ctx.end_date}")
    focus_files = [f for f in files if f.dataset == FOCUS]
    if focus_files:
        _only_focus(ctx, files, focus_files)
        return focus_export.stream_files(ctx, source, focus_files, PROVIDER)
    return _stream(ctx, source, files)
