"""Google Cloud Billing export (BigQuery) -> gcp_billing_raw (+ cloud_source_totals for reconciliation); the FOCUS
export -> cloud_focus_raw (see jobs/cloud/focus_export.py).

Credential (one of):
  {"source": "file:///path"}        a folder of Parquet files holding the export table (every *.parquet under
                                    it, e.g. one file per export batch), nested columns as Arrow structs/lists,
                                    exactly the BigQuery export schema
  {"project": ..., "dataset": ..., "table": ...,          the customer's export table, read with
   "service_account_json": optional (JSON text or object), google-cloud-bigquery (without an identity:
   "access_token" / "impersonate_service_account": optional, application default credentials, or the
   "job_project": optional (project that runs the query;    emulator when BIGQUERY_EMULATOR_HOST is set;
   default `project`), "location": optional,               refused in multi tenancy: jobs/identity.py)
   "maximum_bytes_billed": optional, "partition_lookback_days": optional (default 3)}
  In multi tenancy a table in the platform's own datasets (`organizations`, `*_prod`) and queries run in the
  platform's project are refused (`check_source`).
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

Reading (standard/detailed export): every Parquet file, or the BigQuery query's Arrow pages (registered as a
view on the connection that reads them), becomes one DuckDB SELECT (a `ScanPart` of a
`shared.warehouse.scan.DuckScan`) that flattens, casts, filters to the run's usage days and stops on a row
breaking a rule (no usage_start_time; in range: an empty billing_account_id or currency, a money value that is
not a finite number below 1e19), with the message naming the file and the number of such rows. The embedded
warehouse runs it inside its own INSERT (one engine, no Arrow hop, no Python in the row path); other warehouses
stream it as Arrow batches (READ_BATCH_ROWS) from a private, memory-capped DuckDB. The FOCUS export is still read
as Arrow batches and mapped by jobs/cloud/focus_export.py.

Flattening (one raw row per export row): nested records become columns (`project.id` -> project_id, ...);
`credits[]` is kept as a JSON array text (amounts as exact decimals, text as json.dumps writes it) plus
`credits_total` and per-type sums; project labels, Resource Manager tags and resource labels are merged into one
flat JSON object with lower-case keys, sorted (later wins: project < tags < resource labels; a valueless key
takes the value true); FLOAT64 money goes through its shortest decimal text into NUMERIC (9 decimals, half to
even on all its digits), so sums are exact. Label and credit columns must be the export's repeated records (or
maps); a file holding them as JSON text is refused, naming the column.

cloud_source_totals: per (usage day, invoice month, currency) the row count and cost + credits, i.e. what the
rows add to the invoice, summed by the warehouse from the landed rows (schemas/cloud_source_totals/
gcp_billing_raw.sql); SUM(BilledCost) of the FOCUS rows of a billing period must equal it. The latest export_time
of the landed rows is logged once they are written (`after_landing`).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import duck_sql as sq
from jobs.cloud import focus_export
from jobs.cloud.common import (
    BadValue,
    DataFile,
    LocalFiles,
    not_a,
    reader_reason,
)
from jobs.identity import gcp_credentials
from shared import credential_specs, tenancy
from shared.config import settings
from shared.warehouse.scan import DuckScan, ScanPart

RAW_TABLE = "gcp_billing_raw"
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

READ_BATCH_ROWS = 16_384  # Arrow batches handed to a warehouse other than the embedded one
PREFETCH_BATCHES = 2
MONEY_LIMIT = "1e19"  # an exact 9-decimal NUMERIC of 28 significant digits: larger amounts are refused
_CREDIT_FIELDS = ("name", "amount", "full_name", "id", "type")
_ZERO_SQL = f"CAST(0 AS {sq.MONEY})"
_PAIRS = "STRUCT(k VARCHAR, i BIGINT, v VARCHAR)[]"  # the typed NULL of a missing key/value column
_CREDITS = f"STRUCT(j VARCHAR, c VARCHAR, a {sq.MONEY})[]"


STREAM_VIEW = "__gcp_export_stream"  # the BigQuery pages, as DuckDB sees them


@dataclass
class _Input:
    """One relation of export rows: a Parquet file, or the BigQuery query's pages registered as a view."""

    name: str  # in messages and the `source` column
    src: str  # the relation's SQL
    schema: pa.Schema | None
    rows: int  # read from it (for the log)
    rereadable: bool  # whether a second query may read it (to count the rows breaking a rule)
    failure: list[BaseException] = field(default_factory=list)  # the stream's own error, if it failed


# --------------------------------------------------------------------------------------------------
# Export rows -> raw rows: one DuckDB SELECT over a Parquet file or the BigQuery Arrow stream
# --------------------------------------------------------------------------------------------------
def check_columns(names: list[str], where: str) -> None:
    missing = [c for c in REQUIRED_SOURCE if c not in names]
    if missing:
        raise ExtractError(f"{where}: required billing export columns missing: {', '.join(missing)} "
                           "(is this a Cloud Billing export table, standard or detailed?)")


def _duck_type(t: pa.DataType) -> str:
    """The DuckDB type name duck_sql's casts dispatch on."""
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return "DECIMAL"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    return "OTHER"


def _child(ref: str, t: pa.DataType, name: str) -> tuple[str, pa.DataType] | None:
    if not pa.types.is_struct(t) or t.get_field_index(name) < 0:
        return None
    return f"struct_extract({ref}, {sq.lit(name)})", t.field(name).type


def _json(expr: str) -> str:
    """JSON text of a value, `null` for NULL (json.dumps with ensure_ascii=False)."""
    return f"COALESCE(to_json(CAST({expr} AS VARCHAR)), 'null')"


def _number_text(d: str) -> str:
    """A NUMERIC as the shortest fixed-point text (no exponent, no trailing zeros, 0 for zero)."""
    t = f"rtrim(rtrim(CAST({d} AS VARCHAR), '0'), '.')"
    return f"CASE WHEN {t} IN ('', '-0') THEN '0' ELSE {t} END"


class _Plan:
    """The export's Arrow schema resolved once into the SELECT yielding gcp_billing_raw rows."""

    def __init__(self, schema: pa.Schema, fname: str, out_schema: pa.Schema):
        self.schema, self.fname, self.out_schema = schema, fname, out_schema
        # money column -> condition true for an export row holding a value `money` stops on (to find its row)
        self.bad_numbers: dict[str, str] = {}
        self.first = self.in_range = ""  # set by `sql`: the rows with their start time, and the range test

    def leaf(self, path: str) -> tuple[str, pa.DataType] | None:
        """(SQL reference, Arrow type) of a dotted path, None when the export lacks it (a NULL record
        yields NULL children)."""
        head, *rest = path.split(".")
        if head not in self.schema.names:
            return None
        found: tuple[str, pa.DataType] | None = (sq.q(head), self.schema.field(head).type)
        for name in rest:
            found = _child(*found, name)
            if found is None:
                return None
        return found

    def money(self, ref: str, t: pa.DataType, what: str, per_row: Callable[[str], str] | None = None) -> str:
        """NUMERIC; the read stops on a value that is not a finite number the NUMERIC holds exactly, naming the
        column (`what`), never the value. per_row: the condition `bad` makes over a whole row, when `ref` is
        inside a list's lambda."""
        typ = _duck_type(t)
        if typ == "VARCHAR":
            num = f"TRY_CAST({ref} AS DOUBLE)"
            bad = f"{ref} IS NOT NULL AND ({num} IS NULL OR NOT isfinite({num}) OR abs({num}) >= {MONEY_LIMIT})"
        elif typ == "DOUBLE":
            bad = f"{ref} IS NOT NULL AND NOT (isfinite({ref}) AND abs({ref}) < {MONEY_LIMIT})"
        else:
            bad = f"{ref} IS NOT NULL AND abs({ref}) >= {MONEY_LIMIT}"
        self.bad_numbers[what] = per_row(bad) if per_row else bad
        msg = sq.lit(sq.CHECK_MARK + str(BadValue(self.fname, what, not_a("number"))))
        exact = sq.money(ref, typ) if typ != "VARCHAR" else sq.round9(ref)
        return f"CASE WHEN {bad} THEN error({msg}) ELSE {exact} END"

    def bad_number(self, message: str) -> str | None:
        """The money column a stopped read's message names, if it is one `money` wrote."""
        return next((w for w in self.bad_numbers if message == str(BadValue(self.fname, w, not_a("number")))), None)

    def bad_number_row(self, what: str) -> int | None:
        """The row (of the file) of the first in-range value of `what` that `money` stops on."""
        return sq.first_row(f"({self.first})", f"({self.bad_numbers[what]}) AND {self.in_range}")

    def column(self, kind: str, path: str) -> str:
        found = self.leaf(path)
        if found is None:
            return f"CAST(NULL AS {sq.MONEY})" if kind == MONEY else "CAST(NULL AS VARCHAR)"
        ref, t = found
        return self.money(ref, t, path) if kind == MONEY else sq.text(ref, _duck_type(t))

    def time(self, path: str) -> str:
        found = self.leaf(path)
        return sq.timestamp(found[0], _duck_type(found[1])) if found else "CAST(NULL AS TIMESTAMPTZ)"

    # -- key/value records -> {k, v} lists, v as JSON (a valueless key takes the value true, as in FOCUS) --
    def pairs(self, path: str, lower: bool) -> str | None:
        found = self.leaf(path)
        if found is None:
            return None
        ref, t = found
        if pa.types.is_map(t):
            items, value = f"map_entries({ref})", "e.value"
        elif pa.types.is_list(t) and pa.types.is_struct(t.value_type) and t.value_type.get_field_index("key") >= 0:
            items, value = ref, "e.value" if t.value_type.get_field_index("value") >= 0 else "NULL"
        else:
            raise ExtractError(f"{self.fname}: column {path} is {t}, not a list of key/value records")
        k, v = "CAST(e.key AS VARCHAR)", f"CAST({value} AS VARCHAR)"
        return (f"list_filter(list_transform({items}, lambda e: {{'k': {f'lower({k})' if lower else k}, "
                f"'v': CASE WHEN {v} IS NULL OR {v} = '' THEN 'true' ELSE to_json({v}) END}}), "
                "lambda e: e.k IS NOT NULL AND e.k <> '')")

    @staticmethod
    def ordered(sources: list[str]) -> str:
        """The {k, v} lists in precedence order, sorted by key, then by position (see `json_object`)."""
        listed = sources[0] if len(sources) == 1 else f"list_concat({', '.join(sources)})"
        return f"list_sort(list_transform({listed}, lambda e, i: {{'k': e.k, 'i': i, 'v': e.v}}))"

    @staticmethod
    def json_object(col: str) -> str:
        """A sorted {k, i, v} list as a compact JSON object; of a repeated key the later entry wins."""
        last = f"list_filter({col}, lambda e, i: i = len({col}) OR {col}[i + 1].k <> e.k)"
        return (f"CASE WHEN len({col}) > 0 THEN '{{' || array_to_string(list_transform({last}, "
                "lambda e: to_json(e.k) || ':' || e.v), ',') || '}' END")

    # -- credits ---------------------------------------------------------------------------------------
    def credits(self) -> str | None:
        """Each credit as {j: its JSON text, c: its per-type sum column, a: its amount}."""
        found = self.leaf("credits")
        if found is None:
            return None
        ref, t = found
        if not (pa.types.is_list(t) and pa.types.is_struct(t.value_type)):
            raise ExtractError(f"{self.fname}: column credits is {t}, not a list of credit records")
        st = t.value_type
        field = {n: f"c.{sq.q(n)}" if st.get_field_index(n) >= 0 else "NULL" for n in _CREDIT_FIELDS}
        amount = _ZERO_SQL
        if field["amount"] != "NULL":
            amount = self.money(field["amount"], st.field("amount").type, "credits.amount",
                                lambda bad: f"len(list_filter({ref}, lambda c: {bad})) > 0")
            amount = f"COALESCE({amount}, {_ZERO_SQL})"
        typed = (f"{{'a': {amount}, 't': upper(NULLIF(CAST({field['type']} AS VARCHAR), '')), "
                 f"'name': {field['name']}, 'full_name': {field['full_name']}, "
                 f"'id': NULLIF(CAST({field['id']} AS VARCHAR), '')}}")
        entry = ("'{\"name\":' || " + _json("x.name") + " || ',\"amount\":' || " + _number_text("x.a")
                 + " || ',\"full_name\":' || " + _json("x.full_name") + " || ',\"id\":' || "
                 + _json("x.id") + " || ',\"type\":' || " + _json("x.t") + " || '}'")
        per_type = " ".join(f"WHEN {sq.lit(k)} THEN {sq.lit(v)}" for k, v in CREDIT_COLUMNS.items())
        return (f"list_transform(list_transform({ref}, lambda c: {typed}), lambda x: "
                f"{{'j': {entry}, 'c': CASE x.t {per_type} ELSE 'credits_other' END, 'a': x.a}})")

    # -- the whole SELECT -------------------------------------------------------------------------------
    def sql(self, src: str, start: dt.date, end: dt.date) -> tuple[str, dict[str, str]]:
        """The SELECT, and per row rule the SQL counting the rows that break it (for its message)."""
        cols: dict[str, str] = {"usage_start_time": "__start", "usage_date": "__day",
                                "usage_end_time": self.time("usage_end_time"),
                                "export_time": self.time("export_time")}
        for raw, (kind, path) in COLUMN_MAP.items():
            cols[raw] = self.column(kind, path)
        cols["cost"] = f"COALESCE({cols['cost']}, {_ZERO_SQL})"
        rate = self.leaf("currency_conversion_rate")
        cols["currency_conversion_rate"] = f"CAST({rate[0]} AS DOUBLE)" if rate else "CAST(NULL AS DOUBLE)"
        ctype = self.leaf("cost_type")[0]
        cols["cost_type"] = f"COALESCE(replace(lower(CAST({ctype} AS VARCHAR)), ' ', '_'), 'regular')"
        month = cols["invoice_month"]
        cols["billing_period_start"] = (
            f"CASE WHEN regexp_full_match({month}, '[0-9]{{6}}') THEN make_date(CAST(substr({month}, 1, 4) AS "
            f"INTEGER), CAST(substr({month}, 5, 2) AS INTEGER), 1) ELSE CAST(date_trunc('month', __day) AS DATE) END")
        labels = [p for p in (self.pairs(x, True) for x in ("project.labels", "tags", "labels")) if p]
        system = self.pairs("system_labels", False)
        cols["__labels"] = self.ordered(labels) if labels else f"CAST(NULL AS {_PAIRS})"
        cols["__system"] = self.ordered([system]) if system else f"CAST(NULL AS {_PAIRS})"
        cols["__credits"] = self.credits() or f"CAST(NULL AS {_CREDITS})"
        cols["source"] = sq.lit(self.fname)

        def amounts(col: str | None) -> str:
            picked = "__credits" if col is None else f"list_filter(__credits, lambda x: x.c = {sq.lit(col)})"
            return f"CAST(list_sum(list_transform({picked}, lambda x: x.a)) AS {sq.MONEY})"

        # json.dumps escaped the credits' text to ASCII (the labels' not): once over the whole array
        listed = "'[' || array_to_string(list_transform(__credits, lambda x: x.j), ',') || ']'"
        outer = {"credits": f"CASE WHEN len(__credits) > 0 THEN {sq.json_ascii(listed)} END",
                 "credits_total": f"COALESCE({amounts(None)}, {_ZERO_SQL})",
                 "labels": self.json_object("__labels"), "system_labels": self.json_object("__system")}
        outer.update({c: amounts(c) for c in CREDIT_SUM_COLUMNS})
        select = ", ".join(f"{outer[f.name]} AS {sq.q(f.name)}" if f.name in outer else sq.q(f.name)
                           for f in self.out_schema)
        middle = ",\n  ".join(f"{e} AS {sq.q(n)}" for n, e in cols.items())
        start_ref, start_t = self.leaf("usage_start_time")
        first = f"SELECT *, {sq.timestamp(start_ref, _duck_type(start_t))} AS __start FROM {src}"
        in_range = (f"CAST(__start AS DATE) BETWEEN DATE {sq.lit(start.isoformat())} "
                    f"AND DATE {sq.lit(end.isoformat())}")
        self.first, self.in_range = first, in_range
        kept = (f"SELECT *, CAST(__start AS DATE) AS __day FROM ({first}) WHERE "
                + sq.guarded_where([("__start", "{n} rows have no usage_start_time")], self.fname, in_range))
        required = ("billing_account_id", "currency")
        rules = sq.guarded_where([(sq.q(c), f"{{n}} rows have an empty {c}") for c in required], self.fname, "TRUE")
        counts = {"usage_start_time": f"SELECT count(*) FROM ({first}) WHERE __start IS NULL"}
        for c in required:
            counts[c] = f"SELECT count(*) FROM ({first}) WHERE {in_range} AND {cols[c]} IS NULL"
        return f"SELECT {select} FROM (SELECT {middle} FROM ({kept})) WHERE {rules}", counts


def _explain(e: BaseException, f: DataFile, plan: _Plan, counts: dict[str, str], read: _Input) -> BaseException:
    """A failure while running a plan's SELECT, as the user's error: the BigQuery stream's own error, a bad
    value (its column, and its row when the file can be read again), a broken row rule (with the number of
    rows breaking it, likewise), or a damaged file."""
    if read.failure:
        return read.failure[0]
    err = sq.read_error(e, f)
    msg = str(err)
    what = plan.bad_number(msg)
    if what is not None:
        return BadValue(f.name, what, not_a("number"), plan.bad_number_row(what) if read.rereadable else None)
    if "{n} rows" in msg:
        n = None
        rule = next((c for c in counts if msg.endswith((f"no {c}", f"empty {c}"))), None) if read.rereadable else None
        if rule is not None:
            con = sq.connect()
            try:
                n = con.execute(counts[rule]).fetchone()[0]
            except Exception:  # noqa: BLE001 - the count only adds to the message
                n = None
            finally:
                con.close()
        return ExtractError(msg.replace("{n} rows", f"{n} rows" if n else "rows"))
    if isinstance(err, ExtractError) and msg.startswith(f"{f.name} is corrupted"):
        return _unreadable(f.name, e)
    return err


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
def _unreadable(f: str, e: BaseException) -> ExtractError:
    return ExtractError(f"{f} is corrupted or truncated and cannot be read ({reader_reason(e)}); nothing was "
                        "written. Re-export the file and run again.")


class FolderSource(LocalFiles):
    """The export table dumped as Parquet files under a folder."""

    def __init__(self, url: str, org_slug: str, focus: bool | None = None):
        super().__init__(url, org_slug)
        self._focus = focus

    def files(self) -> list[Path]:
        files = [p for p in self.folder.files() if p.name.endswith(".parquet")]
        if not files:
            raise ExtractError(f"no billing export Parquet files (*.parquet) in {self.name(self.root)}")
        return files

    @property
    def focus(self) -> bool:
        """Whether the folder holds the FOCUS export: told by the credential, else the first file's columns."""
        if self._focus is None:
            import pyarrow.parquet as pq

            first = self.files()[0]
            try:
                with ExitStack() as stack:
                    names = pq.read_schema(self.folder.local_path(first, stack)).names
                self._focus = focus_export.is_focus_export(names)
            except (OSError, pa.ArrowException) as e:
                raise _unreadable(self.name(first), e) from None
        return self._focus

    def inputs(self, con, ctx: ExtractContext) -> Iterator[_Input]:
        """Each file, read by DuckDB itself."""
        import pyarrow.parquet as pq

        for f in self.files():
            name = self.name(f)
            with ExitStack() as stack:  # open until the file's part has been read
                path = self.folder.local_path(f, stack)
                try:
                    meta = pq.read_metadata(path)
                    schema = meta.schema.to_arrow_schema()
                except (OSError, pa.ArrowException) as e:
                    raise _unreadable(name, e) from None
                check_columns(schema.names, name)
                yield _Input(name, sq.source_sql(path, "parquet"), schema, meta.num_rows, rereadable=True)

    def batches(self, ctx: ExtractContext) -> Iterator[tuple[str, pa.RecordBatch]]:
        import pyarrow.parquet as pq

        check = focus_export.check_columns if self.focus else check_columns
        for f in self.files():
            name = self.name(f)
            try:
                with ExitStack() as stack:
                    pf = pq.ParquetFile(self.folder.local_path(f, stack))
                    check(pf.schema_arrow.names, name)
                    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                        yield name, batch
            except ExtractError:
                raise
            except (OSError, pa.ArrowException) as e:
                raise _unreadable(name, e) from None


BIGQUERY_SCOPES = ["https://www.googleapis.com/auth/bigquery.readonly",
                   "https://www.googleapis.com/auth/cloud-platform"]


def bigquery_client(cred: dict, org_slug: str):
    """A BigQuery client with the credential's own identity (jobs/identity.py); in single tenancy, without
    one, the operator's application-default credentials or the emulator. Tests replace this with a fake."""
    project = cred.get("job_project") or cred["project"]
    location = cred.get("location")
    creds = gcp_credentials(cred, BIGQUERY_SCOPES, org_slug)
    if creds is not None:
        from google.cloud import bigquery

        return bigquery.Client(project=project, credentials=creds, location=location)
    from shared.warehouse.bigquery import make_client

    return make_client(project, location)


def check_source(cred: dict, s=None) -> None:
    """The BigQuery table a credential names, checked again here (the credential may predate the rules):
    BigQuery names, and in multi tenancy none of the platform's datasets or its project."""
    try:
        credential_specs.check_bigquery_names(cred)
    except credential_specs.CredentialInvalid as e:
        raise CredentialError(str(e)) from None
    tenancy.check_bigquery_source(cred, s or settings())


class BigQuerySource:
    """The customer's export table in BigQuery (the standard or detailed export, or the FOCUS export)."""

    def __init__(self, cred: dict, focus: bool | None = None):
        missing = [k for k in ("project", "dataset", "table") if not cred.get(k)]
        if missing:
            raise CredentialError(f"GCP billing credential lacks {', '.join(missing)}")
        check_source(cred)
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
        for batch in self._pages(ctx):
            yield self.table_ref, batch

    def inputs(self, con, ctx: ExtractContext) -> Iterator[_Input]:
        """The query's Arrow pages as one input, registered on `con` for DuckDB to scan."""
        read = _Input(self.table_ref, STREAM_VIEW, None, 0, rereadable=False)

        def counted(pages):
            try:
                for batch in pages:
                    read.rows += batch.num_rows
                    yield batch
            except BaseException as e:
                read.failure.append(e)
                raise

        pages = self._pages(ctx)
        first = next(pages, None)
        if first is None:
            return
        read.schema = first.schema
        con.register(STREAM_VIEW, pa.RecordBatchReader.from_batches(first.schema,
                                                                    counted(itertools.chain([first], pages))))
        try:
            yield read
        finally:
            try:
                con.unregister(STREAM_VIEW)
            except Exception:  # noqa: BLE001, S110 - an aborted transaction refuses it; its error is the one to see
                pass

    def _pages(self, ctx: ExtractContext) -> Iterator[pa.RecordBatch]:
        from google.cloud import bigquery

        try:
            client = bigquery_client(self.cred, ctx.org_slug)
        except (ExtractError, tenancy.TrustViolation):
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
            yield from rows.to_arrow_iterable()
        except (ExtractError, tenancy.TrustViolation):
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


def _source(cred: dict, org_slug: str):
    if cred.get("source"):
        return FolderSource(str(cred["source"]), org_slug, _focus_wanted(cred))
    if cred.get("table") or cred.get("dataset"):
        return BigQuerySource(cred, _focus_wanted(cred))
    raise CredentialError('GCP billing credential needs {"source": "file:///folder"} or '
                          '{"project": ..., "dataset": ..., "table": ...}')


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def extract(ctx: ExtractContext) -> dict[str, Any]:
    """Every export row whose usage day is in the run's range: a DuckScan of the standard/detailed export for
    gcp_billing_raw, or the FOCUS export's rows for cloud_focus_raw."""
    source = _source(ctx.credential, ctx.org_slug)
    if source.focus:
        return _focus_stream(ctx, source)
    return _scan(ctx, source)


def _scan(ctx: ExtractContext, source) -> dict[str, Any]:
    from shared import schemas

    raw_schema = schemas.get(RAW_TABLE).arrow_schema(include_lineage=False)
    stats: dict[str, Any] = {"rows_read": 0, "rows_kept": 0}

    def parts(con) -> Iterator[ScanPart]:
        for read in source.inputs(con, ctx):
            plan = _Plan(read.schema, read.name, raw_schema)
            sql, counts = plan.sql(read.src, ctx.start_date, ctx.end_date)
            f = DataFile(read.name, "parquet")
            part = ScanPart(sql, lambda e, f=f, plan=plan, counts=counts, read=read: _explain(e, f, plan, counts, read))
            yield part
            stats["rows_read"] += read.rows
            stats["rows_kept"] += part.rows
        if not stats["rows_kept"]:
            ctx.warn(f"the billing export has no rows with usage on {ctx.start_date}..{ctx.end_date}")
        ctx.log.info("read %s export rows, %s in range", stats["rows_read"], stats["rows_kept"])

    return {RAW_TABLE: DuckScan(parts, sq.connect, schema=raw_schema, batch_rows=READ_BATCH_ROWS,
                                prefetch=PREFETCH_BATCHES)}


def after_landing(ctx: ExtractContext, landed) -> None:
    """How fresh the landed rows are: the export's latest export_time, for the log (jobs.runner.land)."""
    [row] = landed(RAW_TABLE, "SELECT MAX(export_time) AS latest FROM {rows}")
    if row["latest"] is not None:
        ctx.log.info("latest export_time of the landed rows %s", row["latest"])


def _focus_stream(ctx: ExtractContext, source) -> dict[str, Iterator[pa.RecordBatch]]:
    """The FOCUS export's rows, mapped batch by batch by jobs/cloud/focus_export.py."""
    from shared import schemas

    raw_table = focus_export.RAW_TABLE
    raw_schema = schemas.get(raw_table).arrow_schema(include_lineage=False)
    mappers: dict[str, focus_export.Mapper] = {}  # one per file or table: its header is resolved once
    stats: dict[str, Any] = {"rows_read": 0, "rows_kept": 0}

    before: dict[str, int] = {}  # rows of each file in earlier batches

    def raw_batches() -> Iterator[pa.RecordBatch]:
        for name, batch in source.batches(ctx):
            stats["rows_read"] += batch.num_rows
            if name not in mappers:
                mappers[name] = focus_export.Mapper(batch.schema.names, name, raw_schema, PROVIDER)
            try:
                out = mappers[name].convert(batch, ctx.start_date, ctx.end_date, None)
            except BadValue as e:  # a file's row; a query result's rows have no order to point at
                numbered = isinstance(source, FolderSource) and e.row is not None
                raise e.at(before.get(name, 0) + e.row if numbered else None) from None
            before[name] = before.get(name, 0) + batch.num_rows
            if out is None or not out.num_rows:
                continue
            stats["rows_kept"] += out.num_rows
            yield out
        if not stats["rows_kept"]:
            ctx.warn(f"the billing export has no rows with usage on {ctx.start_date}..{ctx.end_date}")
        ctx.log.info("read %s export rows, %s in range", stats["rows_read"], stats["rows_kept"])

    return {raw_table: raw_batches()}
