"""OCI cost reports -> oci_billing_raw (+ cloud_source_totals for reconciliation).

Credential (one of):
  {"source": "file:///path"}            a folder of cost-report (or FOCUS report) CSV / CSV.gz files
  {"tenancy_ocid", "user_ocid", "fingerprint", "private_key" (PEM), "region",
   "passphrase": optional (encrypted key), "endpoint": optional (Object Storage URL, e.g. a stub),
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

Columns are found by header name (cost report: `lineItem/intervalUsageStart`, `cost/myCost`, ...; FOCUS
report: `ChargePeriodStart`, `BilledCost`, `oci_CompartmentId`, ...), so reordered or added columns are
fine. `tags/<namespace>.<key>` columns (cost report) or the `Tags` JSON (FOCUS report) become one flat JSON
object with lower-cased `namespace.key` keys. `billingUnitReadable` (`1 GiB MONTHS STORAGE_SIZE`) is
normalised to FOCUS Unit Format (`GiB-Months`) into pricing_unit.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud.common import (
    TS,
    DataFile,
    LocalFiles,
    SourceTotals,
    as_string,
    blank_to_null,
    format_of,
    key_values,
    list_data_files,
    local_root,
    money,
    require_columns,
    stream_raw,
    tags_json,
    timestamp,
    usage_days_in_range,
)

RAW_TABLE = "oci_billing_raw"
PROVIDER = "oci"
NAMESPACE = "bling"
PREFIXES = {"cost": "reports/cost-csv/", "focus": "FOCUS Reports/"}
LIST_PAGE = 1000  # ListObjects page size (the service maximum); tests lower it to exercise paging
DEFAULT_LATE_DAYS = 7
MONEY_TYPE = pa.decimal128(38, 9)

STRING, MONEY, FLAG = "string", "money", "flag"
# raw column -> (kind, cost-report header names, FOCUS-report header names), first present wins
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
    "region": (STRING, ("product/region",), ("Region", "RegionId")),
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
_TIME_UNITS = {"SECOND": "Seconds", "MINUTE": "Minutes", "HOUR": "Hours", "DAY": "Days", "WEEK": "Weeks",
               "MONTH": "Months", "YEAR": "Years"}
_SIZE = re.compile(r"^(?:([KMGTPE])(I?)B|B|BYTES?)$", re.IGNORECASE)
_ACRONYMS = {"OCPU", "ECPU", "CPU", "VCPU", "GPU", "IP", "API", "SMS", "DNS", "HTTP", "URL", "TPS", "IOPS"}


def _time_unit(word: str) -> str | None:
    w = word.upper()
    return _TIME_UNITS.get(w.removesuffix("S"))


def _size_unit(word: str) -> str | None:
    m = _SIZE.match(word)
    if not m:
        return None
    if m.group(1) is None:
        return "Bytes"
    return m.group(1).upper() + ("iB" if m.group(2) else "B")


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


@lru_cache(maxsize=4096)
def focus_unit(readable: str | None, description: str | None = None) -> str | None:
    """A FOCUS Unit Format unit for OCI's billingUnitReadable (`<n> <size|NONE> <time|NONE> <measure>`),
    else for skuUnitDescription / a FOCUS report's PricingUnit (`GB Months`, `Hours`); 'Units' when unknown.

    1 GiB MONTHS STORAGE_SIZE -> GiB-Months; 1 GiB NONE DATA_TRANSFERRED -> GiB; 1 NONE HOURS OCPUS ->
    OCPU-Hours; 1 NONE HOURS INSTANCE -> Instance-Hours; 1000000 NONE NONE DATAPOINTS -> 1000000 Datapoints.
    """
    if readable:
        parts = readable.split()
        if len(parts) >= 4 and re.fullmatch(r"\d+(?:\.\d+)?", parts[0]):
            size, time = parts[1], parts[2]
            measure = "_".join(parts[3:])
            size_u = None if size.upper() == "NONE" else _size_unit(size)
            time_u = None if time.upper() == "NONE" else _time_unit(time)
            if (size.upper() != "NONE" and size_u is None) or (time.upper() != "NONE" and time_u is None):
                unit = None
            elif size_u and time_u:
                unit = f"{size_u}-{time_u}"
            elif size_u:
                unit = size_u
            elif time_u:
                noun = _count_noun(measure, plural=False)
                unit = f"{noun}-{time_u}" if noun else time_u
            else:
                unit = _count_noun(measure, plural=True) or "Units"
            if unit:
                q = parts[0].rstrip("0").rstrip(".") if "." in parts[0] else parts[0]
                return unit if q == "1" else f"{q} {unit}"
    if description:
        words = description.replace("-", " ").split()
        if len(words) == 1:
            w = words[0]
            return _time_unit(w) or _size_unit(w) or _count_noun(w, plural=True) or "Units"
        if len(words) == 2:
            first = _size_unit(words[0]) or _count_noun(words[0], plural=False)
            time_u = _time_unit(words[1])
            if first and time_u:
                return f"{first}-{time_u}"
            if words[0].lower() == "million" and _count_noun(words[1], plural=True):
                return f"1000000 {_count_noun(words[1], plural=True)}"
        return "Units"
    return "Units" if readable else None


# --------------------------------------------------------------------------------------------------
# Casting one batch to the raw table
# --------------------------------------------------------------------------------------------------
def _flag(arr: pa.Array) -> pa.Array:
    s = pc.utf8_lower(pc.utf8_trim_whitespace(as_string(arr)))
    return pc.if_else(pc.is_in(s, pa.array(["true", "t", "yes", "y", "1"])), True,
                      pc.if_else(pc.is_in(s, pa.array(["false", "f", "no", "n", "0"])), False,
                                 pa.scalar(None, pa.bool_())))


def _tag_key(header: str) -> str | None:
    if header.startswith("tags/"):
        key = header[len("tags/"):].strip()
        return key.lower() or None
    return None


class _Mapper:
    """Resolves a file's header once (cost report or FOCUS report), then converts its batches."""

    def __init__(self, names: list[str], fname: str, out_schema: pa.Schema):
        self.fname, self.out_schema = fname, out_schema
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
        self.end_col = COST_END if self.kind == "cost" else FOCUS_END
        self.source: dict[str, str | None] = {}
        for raw, (_, cost_names, focus_names) in COLUMN_MAP.items():
            candidates = cost_names if self.kind == "cost" else focus_names
            self.source[raw] = next((c for c in candidates if c in present), None)
        self.tag_cols = [(n, k) for n in names if (k := _tag_key(n))]
        self.tags_json_col = "Tags" if self.kind == "focus" and "Tags" in present else None
        self.correction_col = ("lineItem/isCorrection" if "lineItem/isCorrection" in present
                               else "ChargeClass" if "ChargeClass" in present else None)

    def convert(self, batch: pa.RecordBatch, start: dt.date, end: dt.date, period_hint: dt.date | None):
        def col(name: str) -> pa.Array:
            return batch.column(batch.schema.get_field_index(name))

        start_ts = timestamp(col(self.start_col), self.start_col, self.fname)
        kept = usage_days_in_range(start_ts, start, end, self.fname, self.start_col)
        if kept is None:
            return None
        keep, usage_date = kept
        batch, start_ts = batch.filter(keep), start_ts.filter(keep)
        n = batch.num_rows
        out: dict[str, pa.Array] = {
            "usage_date": usage_date,
            "interval_start": start_ts,
            "interval_end": (timestamp(col(self.end_col), self.end_col, self.fname)
                             if self.end_col in batch.schema.names else pa.nulls(n, TS)),
            "billing_period_start": pc.floor_temporal(usage_date, unit="month"),
            "report_type": pa.array([self.kind] * n, pa.string()),
        }
        for raw, (kind, _, _) in COLUMN_MAP.items():
            src = self.source[raw]
            if src is None:
                out[raw] = pa.nulls(n, {MONEY: MONEY_TYPE, FLAG: pa.bool_()}.get(kind, pa.string()))
            elif kind == MONEY:
                out[raw] = money(col(src), src, self.fname)
            elif kind == FLAG:
                out[raw] = _flag(col(src))
            else:
                out[raw] = blank_to_null(col(src))
        if out["tenant_id"].null_count:
            raise ExtractError(f"{self.fname}: {out['tenant_id'].null_count} rows have an empty "
                               f"{self.source['tenant_id']}")
        if out["currency"].null_count:
            raise ExtractError(f"{self.fname}: {out['currency'].null_count} rows have an empty "
                               f"{self.source['currency']}")
        out["my_cost"] = pc.coalesce(out["my_cost"], pa.scalar(Decimal(0), MONEY_TYPE))
        if self.correction_col is None:
            out["is_correction"] = pa.array([False] * n, pa.bool_())
        elif self.correction_col == "ChargeClass":
            out["is_correction"] = pc.fill_null(pc.equal(pc.utf8_lower(as_string(col("ChargeClass"))),
                                                         "correction"), False)
        else:
            out["is_correction"] = pc.fill_null(_flag(col(self.correction_col)), False)
        out["pricing_unit"] = self._units(out["billing_unit"], out["sku_unit_description"])
        out["tags"] = self._tags(batch, n)
        out["source_file"] = pa.array([self.fname] * n, pa.string())
        return pa.RecordBatch.from_arrays([out[f.name] for f in self.out_schema], schema=self.out_schema)

    @staticmethod
    def _units(readable: pa.Array, description: pa.Array) -> pa.Array:
        return pa.array([focus_unit(r, d) for r, d in zip(readable.to_pylist(), description.to_pylist())],
                        pa.string())

    def _tags(self, batch: pa.RecordBatch, n: int) -> pa.Array:
        cols = [(key, batch.column(batch.schema.get_field_index(src)).to_pylist()) for src, key in self.tag_cols]
        docs = (batch.column(batch.schema.get_field_index(self.tags_json_col)).to_pylist()
                if self.tags_json_col else None)
        if not cols and docs is None:
            return pa.nulls(n, pa.string())
        values = []
        for i in range(n):
            tags: dict[str, Any] = {}
            if docs is not None:
                for k, v in key_values(docs[i]):
                    if isinstance(v, (dict, list)):
                        v = json.dumps(v, sort_keys=True, separators=(",", ":"))
                    tags[str(k).lower()] = v
            for key, vals in cols:
                if vals[i] not in (None, ""):
                    tags[key] = vals[i]
            values.append(tags_json(tags))
        return pa.array(values, pa.string())


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
    def __init__(self, cred: dict):
        self.root = local_root(cred["source"])
        self.late_days = _late_days(cred)

    def files(self, ctx: ExtractContext) -> list[DataFile]:
        found = [p for p in list_data_files(self.root) if format_of(p.name) in ("csv", "csv.gz")]
        if not found:
            raise ExtractError(f"no OCI report files (.csv, .csv.gz) in {self.root}")
        return [DataFile(str(p), format_of(p.name)) for p in found
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
        try:
            self.client = oci.object_storage.ObjectStorageClient(config, **kwargs)
        except Exception as e:  # noqa: BLE001 - a bad PEM or passphrase surfaces here
            raise CredentialError(f"could not load the OCI API signing key: {type(e).__name__}: {e}") from None

    def _err(self, e: Exception, what: str) -> ExtractError:
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

    def local_path(self, f: DataFile, stack: ExitStack) -> str:  # pragma: no cover - reports are CSV only
        raise ExtractError(f"{f.name}: only CSV reports are supported")


def _source(cred: dict):
    if cred.get("source"):
        return LocalSource(cred)
    return ObjectStorageSource(cred)


def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Read the report objects that can hold usage of the run's range; return the in-range rows.

    Raw rows stream as a generator; cloud_source_totals is summed while they are consumed, so the pipeline
    lists oci_billing_raw before cloud_source_totals.
    """
    source = _source(ctx.credential)
    files = source.files(ctx)
    if not files:
        ctx.warn(f"no OCI report object can hold usage of {ctx.start_date}..{ctx.end_date}")
    totals = SourceTotals(PROVIDER, cost_col="my_cost")
    return stream_raw(ctx, source, files, RAW_TABLE, _Mapper, totals, what="OCI report")
