"""Google Cloud Billing export (BigQuery) -> gcp_billing_raw (+ cloud_source_totals for reconciliation); the FOCUS
export -> cloud_focus_raw (see jobs/cloud/focus_export.py).

Credential (one of):
  {"source": "file:///path"}        a folder of Parquet files holding the export table (every *.parquet under
                                    it, e.g. one file per export batch), nested columns as Arrow structs/lists,
                                    exactly the BigQuery export schema
  {"project": ..., "dataset": ..., "table": ...,          the customer's export table, read with
   "service_account_json": optional (JSON text or object), google-cloud-bigquery (without a key: application
   "job_project": optional (project that runs the query; default credentials, or the emulator when
   default `project`), "location": optional,               BIGQUERY_EMULATOR_HOST is set)
   "maximum_bytes_billed": optional, "partition_lookback_days": optional (default 3)}
  either form with "focus": true | false (optional)       read the table as the FOCUS export

Works with the standard (gcp_billing_export_v1_*) and the detailed (gcp_billing_export_resource_v1_*) tables;
columns the standard table lacks (resource, price, subscription) are left NULL.

FOCUS export (Preview, FOCUS 1.2 columns plus x_ ones): the table gcp_billing_export_focus_<BA> in the
Google-managed dataset gcp_billing_immutable_<BA>_<location>. It is read as such when the credential says
"focus": true, when "table" starts with gcp_billing_export_focus_, or (folder form) when the first Parquet file
has the FOCUS columns BilledCost and ChargePeriodStart. Rows whose DATE(ChargePeriodStart) is in the run's range
are read (the partition filter uses ChargePeriodStart or x_ExportTime when the table is partitioned on one of
them), mapped by jobs/cloud/focus_export.py (Tags from x_ProjectLabels < x_Tags < x_Labels) and up-converted to
FOCUS 1.3 by 50_focus_export.sql; cloud_source_totals is the SUM(BilledCost) of the rows read.

Incrementality (the choice): the export is append-only and corrections are appended as new rows (a negation and
maybe a corrected row, with a later export_time). The runner replaces the run's slice of usage days, so the
extractor simply reads EVERY row whose DATE(usage_start_time) (UTC) is in the run's range, from every export
batch. A re-run after new batches arrived therefore re-converts each changed usage day completely: corrections
net out, nothing is duplicated, and no watermark state can drift. export_time is kept per row for audit, and the
BigQuery read prunes partitions with it: the table is ingestion-time partitioned and a row is never exported
before its usage starts, so `_PARTITIONTIME >= start - partition_lookback_days` (plus the streaming buffer,
`_PARTITIONTIME IS NULL`) never loses a row whether _PARTITIONTIME follows the export day or the usage day.
A table partitioned on a column (a copy) is pruned on that column when it is usage_start_time or export_time;
a view is read without a partition filter. Schedule the run over the current and previous invoice month (late
usage and corrections keep arriving for days after a month ends).

Flattening (one raw row per export row): nested records become columns (`project.id` -> project_id, ...);
`credits[]` is kept as a JSON array text (amounts as exact decimals) plus `credits_total` and per-type sums;
project labels, Resource Manager tags and resource labels are merged into one flat JSON object with lower-case
keys (later wins: project < tags < resource labels); FLOAT64 money goes through its shortest decimal text into
NUMERIC (9 decimals), so sums are exact.

cloud_source_totals: per (usage day, invoice month, currency) the row count and cost + credits, i.e. what the
rows add to the invoice; SUM(BilledCost) of the FOCUS rows of a billing period must equal it.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import focus_export
from jobs.cloud.common import SourceTotals, key_values, usage_days_in_range

RAW_TABLE = "gcp_billing_raw"
TOTALS_TABLE = "cloud_source_totals"
PROVIDER = "gcp"
BATCH_ROWS = 50_000
DEFAULT_LOOKBACK_DAYS = 3
FOCUS_TABLE_PREFIX = "gcp_billing_export_focus_"

# Top-level export columns without which a row cannot be converted: fail naming them.
REQUIRED_SOURCE = ("billing_account_id", "service", "sku", "usage_start_time", "cost", "currency", "cost_type")
# Every top-level column the extractor reads (the BigQuery query selects those the table has).
SOURCE_COLUMNS = ("billing_account_id", "service", "sku", "usage_start_time", "usage_end_time", "project", "labels",
                  "system_labels", "location", "resource", "tags", "price", "subscription", "transaction_type",
                  "seller_name", "export_time", "cost", "currency", "currency_conversion_rate", "usage", "credits",
                  "invoice", "cost_type", "adjustment_info", "cost_at_list")

STRING, MONEY = "string", "money"
# raw column -> (kind, path in the export)
COLUMN_MAP: dict[str, tuple[str, str]] = {
    "invoice_month": (STRING, "invoice.month"),
    "invoice_publisher_type": (STRING, "invoice.publisher_type"),
    "billing_account_id": (STRING, "billing_account_id"),
    "project_id": (STRING, "project.id"),
    "project_name": (STRING, "project.name"),
    "project_number": (STRING, "project.number"),
    "service_id": (STRING, "service.id"),
    "service_description": (STRING, "service.description"),
    "sku_id": (STRING, "sku.id"),
    "sku_description": (STRING, "sku.description"),
    "location": (STRING, "location.location"),
    "location_country": (STRING, "location.country"),
    "location_region": (STRING, "location.region"),
    "location_zone": (STRING, "location.zone"),
    "resource_name": (STRING, "resource.name"),
    "resource_global_name": (STRING, "resource.global_name"),
    "usage_amount": (MONEY, "usage.amount"),
    "usage_unit": (STRING, "usage.unit"),
    "usage_amount_in_pricing_units": (MONEY, "usage.amount_in_pricing_units"),
    "usage_pricing_unit": (STRING, "usage.pricing_unit"),
    "cost": (MONEY, "cost"),
    "cost_at_list": (MONEY, "cost_at_list"),
    "currency": (STRING, "currency"),
    "adjustment_id": (STRING, "adjustment_info.id"),
    "adjustment_description": (STRING, "adjustment_info.description"),
    "adjustment_type": (STRING, "adjustment_info.type"),
    "adjustment_mode": (STRING, "adjustment_info.mode"),
    "transaction_type": (STRING, "transaction_type"),
    "seller_name": (STRING, "seller_name"),
    "subscription_instance_id": (STRING, "subscription.instance_id"),
    "price_effective_price": (MONEY, "price.effective_price"),
    "price_list_price": (MONEY, "price.list_price"),
    "price_unit": (STRING, "price.unit"),
    "price_pricing_unit_quantity": (MONEY, "price.pricing_unit_quantity"),
    "price_tier_start_amount": (MONEY, "price.tier_start_amount"),
}
# credit type -> per-type sum column (anything else goes to credits_other)
CREDIT_COLUMNS = {
    "SUSTAINED_USAGE_DISCOUNT": "credits_sustained_usage",
    "COMMITTED_USAGE_DISCOUNT": "credits_committed_usage",
    "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE": "credits_committed_usage",
    "FREE_TIER": "credits_free_tier",
    "PROMOTION": "credits_promotion",
}
CREDIT_SUM_COLUMNS = ("credits_sustained_usage", "credits_committed_usage", "credits_free_tier",
                      "credits_promotion", "credits_other")

_TS = pa.timestamp("us", tz="UTC")
_MONEY_TYPE = pa.decimal128(38, 9)
_Q = Decimal("0.000000001")
_ZERO = Decimal(0)


# --------------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------------
def _dec(v: Any, what: str, fname: str) -> Decimal | None:
    """A money value (float, Decimal, int or text) as a 9-decimal Decimal; floats via their shortest text."""
    if v is None:
        return None
    try:
        d = v if isinstance(v, Decimal) else Decimal(repr(v) if isinstance(v, float) else str(v))
        if not d.is_finite():
            raise InvalidOperation
        return d.quantize(_Q, rounding=ROUND_HALF_EVEN)
    except (InvalidOperation, ValueError):
        raise ExtractError(f"{fname}: {what} has a value that is not a number: {v!r}") from None


def _dec_text(d: Decimal) -> str:
    """Fixed-point text without exponent or trailing zeros (valid JSON number, exact in NUMERIC)."""
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _timestamp(arr: pa.Array, col: str, fname: str) -> pa.Array:
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return arr.cast(_TS)
    if pa.types.is_date(arr.type):
        return arr.cast(pa.timestamp("us")).cast(_TS)
    try:
        text = arr.cast(pa.string())
        return pc.cast(text, _TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        naive = pc.cast(pc.replace_substring(arr.cast(pa.string()), "T", " "), pa.timestamp("us"))
        return pc.assume_timezone(naive, "UTC").cast(_TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ExtractError(f"{fname}: column {col} has a value that is not a timestamp ({e})") from None


def _field(arr: pa.Array, name: str) -> pa.Array | None:
    """Child `name` of a struct array with the parent's nulls applied, or None when there is no such child."""
    if not pa.types.is_struct(arr.type):
        return None
    idx = arr.type.get_field_index(name)
    if idx < 0:
        return None
    return pc.struct_field(arr, [idx])


def _path(batch: pa.RecordBatch, path: str) -> pa.Array | None:
    head, *rest = path.split(".")
    idx = batch.schema.get_field_index(head)
    if idx < 0:
        return None
    arr = batch.column(idx)
    for name in rest:
        arr = _field(arr, name)
        if arr is None:
            return None
    return arr


def _label_value(v):
    return True if v in (None, "") else str(v)  # FOCUS: a valueless key takes the value true


def _json_obj(d: dict) -> str | None:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if d else None


# --------------------------------------------------------------------------------------------------
# One batch of export rows -> raw rows
# --------------------------------------------------------------------------------------------------
def check_columns(names: list[str], where: str) -> None:
    missing = [c for c in REQUIRED_SOURCE if c not in names]
    if missing:
        raise ExtractError(f"{where}: required billing export columns missing: {', '.join(missing)} "
                           "(is this a Cloud Billing export table, standard or detailed?)")


def convert(batch: pa.RecordBatch, start: dt.date, end: dt.date, fname: str,
            out_schema: pa.Schema) -> pa.RecordBatch | None:
    """Export rows (Arrow, nested) whose UTC usage day is in start..end, as gcp_billing_raw rows (no lineage)."""
    start_ts = _timestamp(_path(batch, "usage_start_time"), "usage_start_time", fname)
    kept = usage_days_in_range(start_ts, start, end, fname, "usage_start_time")
    if kept is None:
        return None
    keep, usage_date = kept
    batch, start_ts = batch.filter(keep), start_ts.filter(keep)
    n = batch.num_rows
    out: dict[str, pa.Array] = {"usage_date": usage_date, "usage_start_time": start_ts}
    end_arr = _path(batch, "usage_end_time")
    out["usage_end_time"] = _timestamp(end_arr, "usage_end_time", fname) if end_arr is not None else pa.nulls(n, _TS)
    exp_arr = _path(batch, "export_time")
    out["export_time"] = _timestamp(exp_arr, "export_time", fname) if exp_arr is not None else pa.nulls(n, _TS)
    for raw, (kind, path) in COLUMN_MAP.items():
        arr = _path(batch, path)
        if arr is None:
            out[raw] = pa.nulls(n, _MONEY_TYPE if kind == MONEY else pa.string())
        elif kind == MONEY:
            out[raw] = pa.array([_dec(v, path, fname) for v in arr.to_pylist()], _MONEY_TYPE)
        else:
            s = arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
            out[raw] = pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)
    for required in ("billing_account_id", "currency"):
        if out[required].null_count:
            raise ExtractError(f"{fname}: {out[required].null_count} rows have an empty {required}")
    out["cost"] = pc.coalesce(out["cost"], pa.scalar(_ZERO, _MONEY_TYPE))
    rate = _path(batch, "currency_conversion_rate")
    out["currency_conversion_rate"] = rate.cast(pa.float64()) if rate is not None else pa.nulls(n, pa.float64())
    ctype = _path(batch, "cost_type")
    ctype = pc.replace_substring(pc.utf8_lower(ctype.cast(pa.string())), " ", "_")
    out["cost_type"] = pc.coalesce(ctype, pa.scalar("regular"))
    # billing period = first day of invoice.month, else of the usage month
    months = out["invoice_month"].to_pylist()
    periods = []
    for m, d in zip(months, usage_date.to_pylist()):
        if m and len(m) == 6 and m.isdigit():
            periods.append(dt.date(int(m[:4]), int(m[4:]), 1))
        else:
            periods.append(d.replace(day=1))
    out["billing_period_start"] = pa.array(periods, pa.date32())
    _credits(batch, n, fname, out)
    _labels(batch, n, out)
    out["source"] = pa.array([fname] * n, pa.string())
    return pa.RecordBatch.from_arrays([out[f.name] for f in out_schema], schema=out_schema)


def _credits(batch: pa.RecordBatch, n: int, fname: str, out: dict) -> None:
    arr = _path(batch, "credits")
    cells = arr.to_pylist() if arr is not None else [None] * n
    texts, totals = [], []
    sums = {c: [] for c in CREDIT_SUM_COLUMNS}
    for cell in cells:
        if isinstance(cell, str):  # a JSON text column (e.g. a CSV/JSON dump)
            try:
                cell = json.loads(cell)
            except ValueError:
                raise ExtractError(f"{fname}: credits is not a JSON array: {cell[:80]!r}") from None
        entries, per = [], defaultdict(lambda: _ZERO)
        for c in cell or []:
            amount = _dec(c.get("amount"), "credits.amount", fname) or _ZERO
            ctype = (c.get("type") or "").upper() or None
            entries.append(f'{{"name":{json.dumps(c.get("name"))},"amount":{_dec_text(amount)},'
                           f'"full_name":{json.dumps(c.get("full_name"))},"id":{json.dumps(c.get("id") or None)},'
                           f'"type":{json.dumps(ctype)}}}')
            per[CREDIT_COLUMNS.get(ctype or "", "credits_other")] += amount
        texts.append("[" + ",".join(entries) + "]" if entries else None)
        totals.append(sum(per.values(), _ZERO))
        for col in CREDIT_SUM_COLUMNS:
            sums[col].append(per.get(col))
    out["credits"] = pa.array(texts, pa.string())
    out["credits_total"] = pa.array(totals, _MONEY_TYPE)
    for col in CREDIT_SUM_COLUMNS:
        out[col] = pa.array(sums[col], _MONEY_TYPE)


def _labels(batch: pa.RecordBatch, n: int, out: dict) -> None:
    sources = [_path(batch, p) for p in ("project.labels", "tags", "labels")]
    cols = [a.to_pylist() if a is not None else None for a in sources]
    merged = []
    for i in range(n):
        d: dict[str, Any] = {}
        for col in cols:
            if col is not None:
                for k, v in key_values(col[i]):
                    d[k.lower()] = _label_value(v)
        merged.append(_json_obj(d))
    out["labels"] = pa.array(merged, pa.string())
    sys_arr = _path(batch, "system_labels")
    if sys_arr is None:
        out["system_labels"] = pa.nulls(n, pa.string())
    else:
        out["system_labels"] = pa.array([_json_obj({k: _label_value(v) for k, v in key_values(c)})
                                         for c in sys_arr.to_pylist()], pa.string())


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
def _unreadable(f: Path, e: Exception) -> ExtractError:
    return ExtractError(f"{f} is corrupted or truncated and cannot be read ({type(e).__name__}: {e}); "
                        "nothing was written. Re-export the file and run again.")


class FolderSource:
    """The export table dumped as Parquet files under a folder."""

    def __init__(self, url: str, focus: bool | None = None):
        parsed = urlparse(url)
        self.root = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
        if not self.root.is_dir():
            raise ExtractError(f"source folder {self.root} does not exist")
        self._focus = focus

    def files(self) -> list[Path]:
        files = sorted(p for p in self.root.rglob("*.parquet") if p.is_file())
        if not files:
            raise ExtractError(f"no billing export Parquet files (*.parquet) in {self.root}")
        return files

    @property
    def focus(self) -> bool:
        """Whether the folder holds the FOCUS export: told by the credential, else the first file's columns."""
        if self._focus is None:
            import pyarrow.parquet as pq

            first = self.files()[0]
            try:
                self._focus = focus_export.is_focus_export(pq.read_schema(first).names)
            except (OSError, pa.ArrowException) as e:
                raise _unreadable(first, e) from None
        return self._focus

    def batches(self, ctx: ExtractContext) -> Iterator[tuple[str, pa.RecordBatch]]:
        import pyarrow.parquet as pq

        check = focus_export.check_columns if self.focus else check_columns
        for f in self.files():
            try:
                pf = pq.ParquetFile(f)
                check(pf.schema_arrow.names, str(f))
                for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                    yield str(f), batch
            except ExtractError:
                raise
            except (OSError, pa.ArrowException) as e:
                raise _unreadable(f, e) from None


def bigquery_client(cred: dict):
    """A BigQuery client for the credential (tests replace this function with a fake)."""
    project = cred.get("job_project") or cred["project"]
    location = cred.get("location")
    sa = cred.get("service_account_json")
    if sa:
        from google.cloud import bigquery
        from google.oauth2 import service_account

        try:
            info = json.loads(sa) if isinstance(sa, str) else dict(sa)
            creds = service_account.Credentials.from_service_account_info(
                info, scopes=["https://www.googleapis.com/auth/bigquery.readonly",
                              "https://www.googleapis.com/auth/cloud-platform"])
        except (ValueError, KeyError, TypeError) as e:
            raise CredentialError(f"service_account_json is not a valid service account key: {e}") from None
        return bigquery.Client(project=project, credentials=creds, location=location)
    from shared.warehouse.bigquery import make_client

    return make_client(project, location or "US")


class BigQuerySource:
    """The customer's export table in BigQuery (the standard or detailed export, or the FOCUS export)."""

    def __init__(self, cred: dict, focus: bool | None = None):
        missing = [k for k in ("project", "dataset", "table") if not cred.get(k)]
        if missing:
            raise CredentialError(f"GCP billing credential lacks {', '.join(missing)}")
        self.cred = cred
        self.table_ref = f"{cred['project']}.{cred['dataset']}.{cred['table']}"
        self.lookback = int(cred.get("partition_lookback_days", DEFAULT_LOOKBACK_DAYS))
        self.focus = bool(focus)
        self.start_column = "ChargePeriodStart" if self.focus else "usage_start_time"

    def _err(self, e: Exception, what: str) -> ExtractError:
        code = getattr(e, "code", None)
        name = type(e).__name__
        if code in (401, 403) or name in ("Forbidden", "Unauthorized", "DefaultCredentialsError", "RefreshError"):
            return CredentialError(f"BigQuery refused {what}: {e}. Grant the service account "
                                   "roles/bigquery.dataViewer on the billing dataset and roles/bigquery.jobUser "
                                   "in the job project.")
        if code == 404 or name == "NotFound":
            expected = (f"{FOCUS_TABLE_PREFIX}<billing account> in gcp_billing_immutable_<billing account>_<location>"
                        if self.focus else "gcp_billing_export_resource_v1_<billing account> for the detailed export")
            return ExtractError(f"BigQuery table {self.table_ref} not found ({e}). Check project/dataset/table "
                                f"({expected}).")
        return ExtractError(f"BigQuery error on {what}: {e}")

    def query(self, columns: list[str], partition_filter: str | None) -> str:
        cols = ", ".join(f"`{c}`" for c in columns)
        where = f"DATE({self.start_column}) BETWEEN @start_date AND @end_date"
        if partition_filter:
            where += f" AND {partition_filter}"
        return f"SELECT {cols} FROM `{self.table_ref}` WHERE {where}"

    def plan(self, client) -> tuple[list[str], str | None]:
        try:
            table = client.get_table(self.table_ref)
        except Exception as e:  # noqa: BLE001 - google.api_core raises many kinds
            raise self._err(e, f"reading the schema of {self.table_ref}") from None
        names = [f.name for f in table.schema]
        if self.focus:
            focus_export.check_columns(names, self.table_ref)
            columns, partition_columns = focus_export.wanted_columns(names), ("ChargePeriodStart", "x_ExportTime")
        else:
            check_columns(names, self.table_ref)
            columns, partition_columns = [c for c in SOURCE_COLUMNS if c in names], ("usage_start_time", "export_time")
        lower = f"TIMESTAMP_SUB(TIMESTAMP(@start_date), INTERVAL {self.lookback} DAY)"
        tp = getattr(table, "time_partitioning", None)
        partition_filter = None
        if (getattr(table, "table_type", "TABLE") or "TABLE") == "VIEW" or tp is None:
            partition_filter = None
        elif not getattr(tp, "field", None):  # ingestion-time partitioned, as the export is
            partition_filter = f"(_PARTITIONTIME >= {lower} OR _PARTITIONTIME IS NULL)"
        elif tp.field in partition_columns:
            partition_filter = f"{tp.field} >= {lower}"
        return columns, partition_filter

    def batches(self, ctx: ExtractContext) -> Iterator[tuple[str, pa.RecordBatch]]:
        from google.cloud import bigquery

        try:
            client = bigquery_client(self.cred)
        except ExtractError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._err(e, "creating a BigQuery client") from None
        columns, partition_filter = self.plan(client)
        sql = self.query(columns, partition_filter)
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("start_date", "DATE", ctx.start_date),
            bigquery.ScalarQueryParameter("end_date", "DATE", ctx.end_date)])
        if self.cred.get("maximum_bytes_billed"):
            config.maximum_bytes_billed = int(self.cred["maximum_bytes_billed"])
        ctx.log.info("reading %s (%s)", self.table_ref, partition_filter or "no partition filter")
        try:
            rows = client.query(sql, job_config=config).result(page_size=BATCH_ROWS)
            for batch in rows.to_arrow_iterable():
                yield self.table_ref, batch
        except ExtractError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._err(e, f"querying {self.table_ref}") from None


def _focus_wanted(cred: dict) -> bool | None:
    """True/False when the credential says which table it is; None: the folder's first file decides."""
    if "focus" in cred:
        return bool(cred["focus"])
    if str(cred.get("table") or "").startswith(FOCUS_TABLE_PREFIX):
        return True
    return None


def _source(cred: dict):
    if cred.get("source"):
        return FolderSource(str(cred["source"]), _focus_wanted(cred))
    if cred.get("table") or cred.get("dataset"):
        return BigQuerySource(cred, _focus_wanted(cred))
    raise CredentialError('GCP billing credential needs {"source": "file:///folder"} or '
                          '{"project": ..., "dataset": ..., "table": ...}')


class _NetTotals(SourceTotals):
    """Per usage day, invoice month and currency: cost + credits, what the export rows add to the invoice."""

    def __init__(self):
        super().__init__(PROVIDER, cost_col="net")

    def add(self, out: pa.RecordBatch) -> None:
        def col(name: str) -> pa.Array:
            return out.column(out.schema.get_field_index(name))

        net = pa.array([a + b for a, b in zip(col("cost").to_pylist(), col("credits_total").to_pylist())],
                       _MONEY_TYPE)
        super().add(pa.RecordBatch.from_arrays(
            [col("usage_date"), col("billing_period_start"), col("currency"), net],
            names=["usage_date", "billing_period_start", "currency", "net"]))


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def extract(ctx: ExtractContext) -> dict[str, Iterator[pa.RecordBatch]]:
    """Every export row whose usage day is in the run's range, flattened; totals built while they stream.

    The standard/detailed export lands in gcp_billing_raw, the FOCUS export in cloud_focus_raw; list both before
    cloud_source_totals in the pipeline's raw_tables (the totals are complete only once the raw stream has been
    consumed).
    """
    from shared import schemas

    source = _source(ctx.credential)
    raw_table = focus_export.RAW_TABLE if source.focus else RAW_TABLE
    raw_schema = schemas.get(raw_table).arrow_schema(include_lineage=False)
    if source.focus:
        totals = focus_export.source_totals(PROVIDER)
        mappers: dict[str, focus_export.Mapper] = {}  # one per file or table: its header is resolved once

        def to_raw(name: str, batch: pa.RecordBatch) -> pa.RecordBatch | None:
            if name not in mappers:
                mappers[name] = focus_export.Mapper(batch.schema.names, name, raw_schema, PROVIDER)
            return mappers[name].convert(batch, ctx.start_date, ctx.end_date, None)
    else:
        totals = _NetTotals()

        def to_raw(name: str, batch: pa.RecordBatch) -> pa.RecordBatch | None:
            return convert(batch, ctx.start_date, ctx.end_date, name, raw_schema)

    totals_schema = schemas.get(TOTALS_TABLE).arrow_schema(include_lineage=False)
    stats: dict[str, Any] = {"rows_read": 0, "rows_kept": 0, "done": False, "max_export_time": None}

    def raw_batches() -> Iterator[pa.RecordBatch]:
        for name, batch in source.batches(ctx):
            stats["rows_read"] += batch.num_rows
            out = to_raw(name, batch)
            if out is None or not out.num_rows:
                continue
            totals.add(out)
            stats["rows_kept"] += out.num_rows
            if "export_time" in out.schema.names:
                latest = pc.max(out.column(out.schema.get_field_index("export_time"))).as_py()
                if latest and (stats["max_export_time"] is None or latest > stats["max_export_time"]):
                    stats["max_export_time"] = latest
            yield out
        stats["done"] = True
        if not stats["rows_kept"]:
            ctx.warn(f"the billing export has no rows with usage on {ctx.start_date}..{ctx.end_date}")
        ctx.log.info("read %s export rows, %s in range, latest export_time %s", stats["rows_read"],
                     stats["rows_kept"], stats["max_export_time"])

    def total_batches() -> Iterator[pa.RecordBatch]:
        if not stats["done"]:
            raise ExtractError(f"{TOTALS_TABLE} was read before {raw_table} finished: list {raw_table} first "
                               "in the pipeline's raw_tables")
        yield from totals.batches(totals_schema)

    return {raw_table: raw_batches(), TOTALS_TABLE: total_batches()}
