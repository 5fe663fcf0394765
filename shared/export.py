"""An org's FOCUS rows written out as Parquet, CSV or gzip CSV, streamed with bounded memory.

The warehouse hands the rows over as a record-batch stream (Warehouse.stream_arrow: DuckDB's streaming result,
BigQuery's result pages) and each batch is written as it arrives, so an export holds one batch at a time whatever
the org's size. The format follows the file name's extension and nothing else: an unknown extension is refused,
never written in some default format.

CSV follows the FOCUS attributes: timestamps as `YYYY-MM-DDTHH:mm:ssZ` (custom x_ columns keep their microseconds),
decimals exactly as stored, NULL as an empty field and an empty string as `""`.
"""
from __future__ import annotations

import datetime as dt
import decimal
import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from shared import inputs, registry, schemas
from shared.naming import org_dataset, table_ref

TABLE = "cost_data_standard_1_3"
FORMATS = {".parquet": "parquet", ".csv.gz": "csv.gz", ".csv": "csv"}  # longest suffix first
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8",
               "csv.gz": "application/gzip"}
BATCH_ROWS = 16_384  # DuckDB's Arrow stream buffers several batches ahead: 64k-row batches of FOCUS rows cost ~150 MiB more
_FOCUS_TS = "%Y-%m-%dT%H:%M:%SZ"


class ExportInvalid(ValueError):
    """The export's target or filters are wrong; the message says which and what is allowed (`field`: the
    parameter, for the HTTP API's 400)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def format_of(name: str) -> str:
    """The format a file name asks for by its extension (.parquet, .csv, .csv.gz), else ExportInvalid."""
    lowered = str(name).lower()
    for suffix, fmt in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    raise ExportInvalid(f"{name}: unknown export format; the file name must end in "
                        f"{', '.join(sorted(FORMATS))}")


def check_format(fmt: str) -> str:
    """A format named directly (HTTP `format=`), one of FORMATS' values."""
    if fmt not in MEDIA_TYPES:
        raise ExportInvalid(f"format {fmt!r} is not one of {', '.join(sorted(MEDIA_TYPES))}", "format")
    return fmt


@dataclass(frozen=True)
class Filter:
    """Which rows: charge periods starting on start..end (inclusive dates, UTC) and one provider."""

    start: dt.date | None = None
    end: dt.date | None = None
    provider: str | None = None

    def __post_init__(self) -> None:
        for name, given in (("from", self.start), ("to", self.end)):
            if given is not None:
                inputs.check_date(name, given)
        if self.start and self.end and self.start > self.end:
            raise ExportInvalid(f"the range ends ({self.end}) before it starts ({self.start})", "to")

    @classmethod
    def parse(cls, start: str | None = None, end: str | None = None, provider: str | None = None) -> Filter:
        def day(name: str, value: str | None) -> dt.date | None:
            if not value:
                return None
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise ExportInvalid(f"{name} {value!r} is not a date (YYYY-MM-DD)", name) from None
        try:
            return cls(day("from", start), day("to", end), (provider or "").strip().lower() or None)
        except inputs.DateOutOfRange as e:
            raise ExportInvalid(str(e), e.field) from None

    def where(self) -> tuple[str, dict[str, Any]]:
        parts, params = ["x_org_slug = @org"], {}
        if self.start:
            parts.append("ChargePeriodStart >= @start_ts")
            params["start_ts"] = dt.datetime.combine(self.start, dt.time(), dt.UTC)
        if self.end:
            parts.append("ChargePeriodStart < @end_ts")
            params["end_ts"] = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), dt.UTC)
        if self.provider:
            # a pipeline's provider (aws, openai, saas, ...) or a FOCUS ServiceProviderName (Slack, Microsoft)
            pipelines = sorted(p for p, x in registry.pipelines().items() if x.provider == self.provider)
            names = [f"@pipeline_{i}" for i in range(len(pipelines))]
            params.update({n[1:]: p for n, p in zip(names, pipelines)})
            by_pipeline = f"x_pipeline_id IN ({', '.join(names)}) OR " if names else ""
            parts.append(f"({by_pipeline}LOWER(ServiceProviderName) = @provider)")
            params["provider"] = self.provider
        return " AND ".join(parts), params


def select(org_slug: str, flt: Filter = Filter(), columns: str = "*") -> tuple[str, dict[str, Any]]:
    """The SELECT of an org's FOCUS rows (FOCUS columns and x_ columns). In no particular order: sorting a whole
    org would hold it in memory (DuckDB: 1M rows, 800 MiB), and every BI tool sorts on its own."""
    where, params = flt.where()
    return (f"SELECT {columns} FROM {table_ref(org_dataset(org_slug), TABLE)} WHERE {where}",
            {"org": org_slug, **params})


def _decimal_text(col: pa.Array) -> pa.Array:
    """Decimals as fixed-point text with every place of their scale (`0.000000000`, `-0.000000150`). Arrow's own
    cast writes values under 1e-6 in scientific notation (`0E-9`), which spreadsheets read as text or floats."""
    scale = col.type.scale
    text = col.cast(pa.string())
    if scale <= 6:
        return text
    zero = pa.scalar(0, col.type)
    small = pc.less(pc.abs(col), pa.scalar(decimal.Decimal("0.000001"), col.type))
    # under 1e-6 the unscaled value has at most scale-6 digits: exact through a float and an int64
    units = pc.cast(pc.round(pc.multiply(pc.cast(pc.if_else(small, col, zero), pa.float64()), 10.0 ** scale)),
                    pa.int64())
    digits = pc.utf8_lpad(pc.cast(pc.abs(units), pa.string()), width=scale - 6, padding="0")
    sign = pc.if_else(pc.less(units, 0), "-", "")
    fixed = pc.binary_join_element_wise(sign, pa.scalar("0." + "0" * 6), digits, "")
    return pc.if_else(small, fixed, text)


def count(wh, org_slug: str, flt: Filter = Filter()) -> int:
    """How many rows the export will hold (for progress)."""
    return int(wh.query(*select(org_slug, flt, "COUNT(*) AS n"))[0]["n"])


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as FOCUS's ISO 8601 text (x_ columns with their fraction of a second), decimals in fixed
    point; the rest as is."""
    cols = []
    for field, col in zip(batch.schema, batch.columns):
        if pa.types.is_decimal(field.type):
            col = _decimal_text(col)
        elif pa.types.is_timestamp(field.type):
            if field.name.startswith("x_"):  # %S of a microsecond timestamp carries the fraction
                col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ")
            else:
                col = pc.strftime(col.cast(pa.timestamp("s", tz="UTC"), safe=False), format=_FOCUS_TS)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) or pa.types.is_decimal(f.type)
                      else f for f in schema])


class _Writer:
    """One format's writer over a binary file object; `write` a batch, `close` to finish the file."""

    def __init__(self, sink: IO[bytes], fmt: str, schema: pa.Schema):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self.fmt, self._gz = fmt, None
        if fmt == "parquet":
            self._w = pq.ParquetWriter(sink, schema, compression="zstd")
            return
        if fmt == "csv.gz":
            # mtime 0: the same rows give the same bytes
            sink = self._gz = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0)
        self._w = pacsv.CSVWriter(sink, _csv_schema(schema))

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "parquet":
            self._w.write_batch(batch)
        else:
            self._w.write_batch(_csv_batch(batch))

    def close(self) -> None:
        self._w.close()
        if self._gz is not None:
            self._gz.close()


def _written(reader: pa.RecordBatchReader, sink: IO[bytes], fmt: str) -> Iterator[int]:
    """Write every batch of `reader` into `sink` as `fmt`, one batch in memory at a time, yielding the rows
    written so far after each; the file is finished when the generator ends (or is closed). The table's declared
    schema is written, so both backends give the same file."""
    schema = _target_schema(reader.schema)
    out = _Writer(sink, fmt, schema)
    rows = 0
    try:
        for batch in reader:
            if batch.num_rows:
                out.write(_conform(batch, schema))
                rows += batch.num_rows
                yield rows
    finally:
        out.close()


def write(reader: pa.RecordBatchReader, sink: IO[bytes], fmt: str,
          progress: Callable[[int], None] | None = None) -> int:
    """`reader` written into `sink` as `fmt`; returns the rows written, telling `progress` after each batch."""
    rows = 0
    for rows in _written(reader, sink, fmt):
        if progress:
            progress(rows)
    return rows


def _target_schema(got: pa.Schema) -> pa.Schema:
    declared = schemas.get(TABLE).arrow_schema()
    return declared if set(got.names) == set(declared.names) else got


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    return pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()[0]


def _rows(wh, org_slug: str, fmt: str, flt: Filter, batch_rows: int) -> pa.RecordBatchReader:
    """The checked request's rows as a stream: a bad format, an unknown org or a failing query raise here, before
    anything is written."""
    from shared.tenants import get_org

    check_format(fmt)
    get_org(wh, org_slug)
    return wh.stream_arrow(*select(org_slug, flt), batch_rows)


def export(wh, org_slug: str, sink: IO[bytes], fmt: str, flt: Filter = Filter(),
           progress: Callable[[int], None] | None = None, batch_rows: int = BATCH_ROWS) -> int:
    """An org's FOCUS rows matching `flt` streamed into `sink` (a binary file object) as `fmt`."""
    return write(_rows(wh, org_slug, fmt, flt, batch_rows), sink, fmt, progress)


class _Chunks:
    """A write-only file object whose bytes are taken out as they are written (a streamed HTTP body)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0
        self.closed = False

    def write(self, data) -> int:
        b = bytes(data)
        self._parts.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def stream(wh, org_slug: str, fmt: str, flt: Filter = Filter(), batch_rows: int = BATCH_ROWS) -> Iterator[bytes]:
    """The export as byte chunks, one per batch written (an HTTP response body). The org and the query are
    checked before the first chunk, so errors surface before any byte is sent."""
    sink = _Chunks()
    written = _written(_rows(wh, org_slug, fmt, flt, batch_rows), sink, fmt)

    def body() -> Iterator[bytes]:
        for _ in written:
            chunk = sink.take()
            if chunk:
                yield chunk
        tail = sink.take()  # the file's end (Parquet's footer, gzip's trailer)
        if tail:
            yield tail

    return body()
