"""Pieces shared by the cloud billing extractors (jobs/cloud/aws.py, azure.py, ...).

* `DataFile`, `format_of`, `LocalFiles`: file:// sources (jobs.source_folder keeps them inside the org's root
  in multi tenancy).
* `read_json_doc`: a manifest's JSON, with an error naming the file.
* `file_batches`: stream one CSV / gzip CSV / Parquet file as record batches (CSV: every column as text).
* `as_string`, `blank_to_null`, `money`, `timestamp`, `date_from_text`: casting text columns to the raw types.
* `key_values`, `tags_json`: tag cells (maps, STRUCT<key, value> lists, JSON) and their flat JSON.
* `require_columns`: a required-column check naming the file and the missing columns.
* `stream_raw`: the extract loop (files -> mapper -> batches) with corrupted-file errors naming the file,
  returning the {raw table: batches} dict an extractor returns (the warehouse sums cloud_source_totals from
  the rows it lands: shared/source_totals.py).
* `corrupted`, `reader_reason`, `BadValue`: error text names the file, the column, the row and the kind of
  problem, never a value or a line of the file (a run's error is read over the API: it must not carry a
  file's contents).

A source object (LocalFiles or a cloud-storage reader) provides `open(f) -> binary stream` and
`local_path(f, stack) -> str` (a local path for Parquet's random access). A mapper provides
`convert(batch, start, end, period_hint) -> RecordBatch | None`.
"""
from __future__ import annotations

import csv as pycsv
import datetime as dt
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import ExtractContext, ExtractError
from jobs.source_folder import SourceFolder
from shared.tenancy import TrustViolation

BATCH_ROWS = 50_000
CSV_BLOCK_BYTES = 4 << 20
MONEY_TYPE = pa.decimal128(38, 9)  # NUMERIC
TS = pa.timestamp("us", tz="UTC")

# Errors that mean the bytes of a file are damaged (truncated gzip, broken CSV quoting, bad Parquet, ...).
CORRUPTION_ERRORS = (EOFError, OSError, zlib.error, pa.ArrowException, UnicodeDecodeError)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFile:
    name: str  # shown in messages: a path or a URL (s3://..., https://...)
    fmt: str  # csv | csv.gz | parquet
    period_start: dt.date | None = None  # from a manifest, when known


def format_of(name: str) -> str | None:
    low = name.lower()
    if low.endswith((".csv.gz", ".csv.gzip")):
        return "csv.gz"
    if low.endswith(".csv"):
        return "csv"
    if low.endswith(".parquet"):
        return "parquet"
    return None


class LocalFiles:
    """A file:// source: its folder, the files in it, and open/local_path for them. In multi tenancy
    DataFile.name is the path relative to the org's root, and every file opened is checked to lie inside it
    (jobs.source_folder)."""

    def __init__(self, url: str, org_slug: str):
        self.folder = SourceFolder(url, org_slug)
        self.root = self.folder.path

    def name(self, path: Path) -> str:
        """DataFile.name for a file of the folder (shown in messages, kept as source_file)."""
        return self.folder.shown(path)

    def data_files(self) -> list[Path]:
        """Every .csv / .csv.gz / .parquet file under the folder, sorted."""
        return [p for p in self.folder.files() if format_of(p.name)]

    def listed(self, name: str, manifest: Path) -> Path:
        """The local copy of a file a manifest lists by its bucket key: the longest suffix of the key that
        exists under the folder, else a file of that name beside the manifest. Multi: a key with a `..`
        part is refused."""
        parts = Path(name.lstrip("/")).parts
        if self.folder.root is not None and ".." in parts:
            raise TrustViolation(f"manifest {self.name(manifest)} lists a file outside the organization's source "
                                 "folder (a '..' path); multi tenancy reads only files inside "
                                 "$CLOUDACT_SOURCE_ROOT/<org>/")
        found = next((c for c in (self.root.joinpath(*parts[i:]) for i in range(len(parts))) if c.is_file()), None)
        if found is None and parts and (manifest.parent / parts[-1]).is_file():
            found = manifest.parent / parts[-1]
        if found is None:
            raise ExtractError(f"manifest {self.name(manifest)} lists {name}, which is not in {self.name(self.root)}")
        return found  # a link to elsewhere is refused when it is opened

    def open(self, f: DataFile):
        return self.folder.open(f.name)

    def local_path(self, f: DataFile, stack: ExitStack) -> str:
        return self.folder.local_path(f.name, stack)


def read_json_doc(data: bytes, name: str, what: str = "manifest") -> dict:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ExtractError(f"{what} {name} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ExtractError(f"{what} {name} is not a JSON object")
    return doc


def month_overlaps(period: dt.date | None, start: dt.date, end: dt.date) -> bool:
    """Whether the calendar month starting at `period` overlaps [start, end] (unknown period: yes)."""
    if period is None:
        return True
    nxt = (period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return period <= end and nxt > start


# --------------------------------------------------------------------------------------------------
# Reading batches
# --------------------------------------------------------------------------------------------------
class _Prefixed(io.RawIOBase):
    """A readable stream: `head` bytes, then the rest of `stream` (to re-feed a header line we peeked at)."""

    def __init__(self, head: bytes, stream):
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


def csv_batches(stream) -> Iterator[pa.RecordBatch]:
    """A CSV stream (with a header line) as record batches, every column as text, '' as null."""
    import pyarrow.csv as pacsv

    header = stream.readline()
    if not header.strip():
        return
    names = next(pycsv.reader([header.decode("utf-8-sig")]))
    if header.startswith(b"\xef\xbb\xbf"):  # a BOM: pyarrow keeps it in the first name otherwise
        header = header[3:]
    reader = pacsv.open_csv(
        _Prefixed(header, stream),
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                             null_values=[""], strings_can_be_null=True),
    )
    yield from reader


def file_batches(source, f: DataFile, stack: ExitStack) -> Iterator[pa.RecordBatch]:
    """One file's record batches (Parquet via iter_batches; CSV and gzip CSV streamed)."""
    if f.fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(source.local_path(f, stack))
        yield from pf.iter_batches(batch_size=BATCH_ROWS)
        return
    raw = stack.enter_context(source.open(f))
    stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 20) if f.fmt == "csv.gz" else raw
    if not hasattr(stream, "readline"):
        stream = io.BufferedReader(stream, 1 << 20)
    yield from csv_batches(stream)


def reader_reason(e: BaseException) -> str:
    """What is wrong with a damaged file, as one of a few fixed phrases. Readers quote the file in their
    messages (DuckDB's "Original Line: ...", Arrow's "CSV parse error: ...: <the row>"); the message only
    picks the phrase, none of it is passed on."""
    text = str(e).lower()
    if isinstance(e, UnicodeDecodeError) or "unicode" in text or "utf-8" in text or "utf8" in text:
        return "not UTF-8 text"
    if isinstance(e, (zlib.error, gzip.BadGzipFile)) or any(
            w in text for w in ("gzip", "zlib", "compressed file ended", "decompress", "end-of-stream")):
        return "a truncated or damaged gzip stream"
    if "magic bytes" in text or "footer" in text or "parquet file size is 0" in text:
        return "an invalid Parquet footer (not a Parquet file, or cut short)"
    if "parquet" in text or "thrift" in text or "row group" in text:
        return "damaged Parquet data"
    if "csv" in text or "quote" in text or "columns" in text:
        return "malformed CSV (broken quoting, or a row with the wrong number of fields)"
    if isinstance(e, EOFError):
        return "the file ends early"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno).lower()
    return "unreadable data"


def corrupted(f: DataFile, e: BaseException) -> ExtractError:
    return ExtractError(f"{f.name} is corrupted or truncated and cannot be read ({reader_reason(e)}); "
                        "nothing was written. Re-deliver the file and run again.")


class BadValue(ExtractError):
    """A cell that cannot be cast: the message names the file, the column, the row when it is known (1-based,
    header excluded) and what is wrong, never the value."""

    def __init__(self, fname: str, column: str, problem: str, row: int | None = None):
        self.fname, self.column, self.problem, self.row = fname, column, problem, row
        at = f" (row {row})" if row is not None else ""
        super().__init__(f"{fname}: column {column} has {problem}{at}")

    def at(self, row: int | None) -> BadValue:
        return BadValue(self.fname, self.column, self.problem, row)


def not_a(kind: str) -> str:
    return f"a value that is not a {kind}"


def first_failing(arr: pa.Array, convert: Callable[[pa.Array], Any], errors: tuple = (pa.ArrowInvalid,)) -> int:
    """The 1-based position of the first value `convert` fails on, `convert(arr)` having failed: bisection
    over prefixes, so the very parser that failed is the one that finds it."""
    lo, hi = 0, len(arr)  # arr[:lo] converts, arr[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(arr.slice(0, mid))
            lo = mid
        except errors:
            hi = mid
    return hi


# --------------------------------------------------------------------------------------------------
# Casting
# --------------------------------------------------------------------------------------------------
def as_string(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
        return arr.cast(pa.string())
    return pc.cast(arr, pa.string())


def blank_to_null(arr: pa.Array) -> pa.Array:
    """Text with '' (after trimming nothing) as null."""
    s = as_string(arr)
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def money(arr: pa.Array, col: str, fname: str) -> pa.Array:
    """A numeric column as NUMERIC (decimal 38,9), rounded half to even on every digit: text (and floats,
    through their shortest text: no binary noise) goes through the same SQL cast as the DuckDB extractors
    (jobs.cloud.duck_sql.round9), so every path rounds a value the same way."""
    if pa.types.is_decimal(arr.type):
        return pc.round(arr, 9, round_mode="half_to_even").cast(MONEY_TYPE)
    if pa.types.is_integer(arr.type):
        return arr.cast(MONEY_TYPE)
    import duckdb

    from jobs.cloud import duck_sql

    text = pc.utf8_trim_whitespace(as_string(arr))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)

    def cast(values: pa.Array) -> pa.Array:
        con = duckdb.connect()  # not duck_sql.connect(): that one may reorder rows, and these must stay aligned
        try:
            con.register("money_in", pa.table({"t": values}))
            return con.sql(f"SELECT {duck_sql.round9('t')} AS v FROM money_in").to_arrow_table().column("v")
        finally:
            con.close()

    try:
        out = cast(text)
    except duckdb.Error:
        raise BadValue(fname, col, not_a("number"), first_failing(text, cast, (duckdb.Error,))) from None
    return out.combine_chunks().cast(MONEY_TYPE) if out.num_chunks else pa.array([], MONEY_TYPE)


def timestamp(arr: pa.Array, col: str, fname: str) -> pa.Array:
    """A timestamp column as UTC timestamps; text without a zone designator is taken as UTC."""
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return arr.cast(TS)
    if pa.types.is_date(arr.type):
        return arr.cast(pa.timestamp("us")).cast(TS)
    text = as_string(arr)

    def cast(values: pa.Array) -> pa.Array:
        try:
            return pc.cast(values, TS)
        except pa.ArrowInvalid:
            naive = pc.cast(pc.replace_substring(values, "T", " "), pa.timestamp("us"))
            return pc.assume_timezone(naive, "UTC").cast(TS)

    try:
        return cast(text)
    except pa.ArrowInvalid:
        raise BadValue(fname, col, not_a("timestamp"), first_failing(text, cast)) from None


def date_from_text(arr: pa.Array, col: str, fname: str) -> pa.Array:
    """A date column as date32: ISO (`2024-03-01`, `2024-03-01T00:00:00Z`) or US `MM/DD/YYYY`, per value."""
    if pa.types.is_date(arr.type):
        return arr.cast(pa.date32())
    if pa.types.is_timestamp(arr.type):
        return timestamp(arr, col, fname).cast(pa.date32())
    text = pc.utf8_trim_whitespace(as_string(arr))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    us = pc.extract_regex(text, r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})")
    iso = pc.extract_regex(text, r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})")
    ok_us, ok_iso = pc.is_valid(us), pc.is_valid(iso)
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.or_(ok_us, ok_iso)))
    if pc.any(bad).as_py():
        raise BadValue(fname, col, not_a("date"), pc.index(bad, True).as_py() + 1)

    def part(field: str) -> pa.Array:
        a = pc.if_else(ok_us, pc.struct_field(us, field), pc.struct_field(iso, field))
        return pc.utf8_lpad(a, 2, "0")

    iso_text = pc.binary_join_element_wise(part("y"), part("m"), part("d"), "-")

    def cast(values: pa.Array) -> pa.Array:
        return pc.cast(pc.cast(values, pa.timestamp("s")), pa.date32())

    try:
        return cast(iso_text)
    except pa.ArrowInvalid:
        raise BadValue(fname, col, "an impossible date", first_failing(iso_text, cast)) from None


# --------------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------------
def key_values(value: Any) -> list[tuple[str, Any]]:
    """A key-value cell as (key, value) pairs: a dict, JSON object text, a Parquet map (list of pairs) or a
    BigQuery REPEATED STRUCT<key, value> (list of dicts)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and item.get("key") not in (None, ""):
            out.append((str(item["key"]), item.get("value")))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and item[0] not in (None, ""):
            out.append((str(item[0]), item[1]))
    return out


def tags_json(tags: dict[str, Any]) -> str | None:
    """Flat JSON text (sorted keys, compact) of the non-empty tags; None when there are none."""
    flat = {str(k): str(v) for k, v in tags.items() if k not in (None, "") and v not in (None, "")}
    return json.dumps(flat, sort_keys=True, separators=(",", ":")) if flat else None


# --------------------------------------------------------------------------------------------------
# Column checks
# --------------------------------------------------------------------------------------------------
def require_columns(present: Iterable[str], required: Iterable[str], fname: str, what: str) -> None:
    """Fail naming the file and every missing column (`what`: e.g. 'CUR', 'Azure cost details')."""
    have = set(present)
    missing = [r for r in required if r not in have]
    if missing:
        raise ExtractError(f"{fname}: required {what} columns missing: {', '.join(missing)} "
                           f"(is this a {what} export?)")


# --------------------------------------------------------------------------------------------------
# The extract loop
# --------------------------------------------------------------------------------------------------
def stream_raw(ctx: ExtractContext, source, files: list[DataFile], raw_table: str,
               make_mapper: Callable[[list[str], str, pa.Schema], Any],
               what: str = "billing") -> dict[str, Iterator[pa.RecordBatch]]:
    """The extractor result {raw_table: batches}, a generator streamed into the warehouse.
    `make_mapper(column_names, file_name, raw_schema)` is called once per file, on its first batch.
    """
    from shared import schemas

    raw_schema = schemas.get(raw_table).arrow_schema(include_lineage=False)
    stats: dict[str, Any] = {"files": 0, "rows_read": 0, "rows_kept": 0}

    def raw_batches() -> Iterator[pa.RecordBatch]:
        for f in files:
            stats["files"] += 1
            with ExitStack() as stack:
                mapper = None
                before = 0  # rows of this file in earlier batches
                try:
                    for batch in file_batches(source, f, stack):
                        if mapper is None:
                            mapper = make_mapper(batch.schema.names, f.name, raw_schema)
                        stats["rows_read"] += batch.num_rows
                        try:
                            out = mapper.convert(batch, ctx.start_date, ctx.end_date, f.period_start)
                        except BadValue as e:
                            raise e.at(None if e.row is None else before + e.row) from None
                        before += batch.num_rows
                        if out is None or not out.num_rows:
                            continue
                        stats["rows_kept"] += out.num_rows
                        yield out
                except ExtractError:
                    raise
                except CORRUPTION_ERRORS as e:
                    raise corrupted(f, e) from None
                if mapper is None:
                    ctx.warn(f"{f.name} is empty")
        ctx.log.info("read %s %s files, %s rows, %s in range", stats["files"], what, stats["rows_read"],
                     stats["rows_kept"])

    return {raw_table: raw_batches()}


def usage_days_in_range(start_ts: pa.Array, start: dt.date, end: dt.date, fname: str, column: str):
    """(mask of rows whose UTC usage day is in start..end, their usage dates) or None when no row is.
    A row without a start time is an error, never silently dropped."""
    if start_ts.null_count:
        raise ExtractError(f"{fname}: {start_ts.null_count} rows have no {column}")
    usage_date = start_ts.cast(pa.date32())
    keep = pc.and_(pc.greater_equal(usage_date, pa.scalar(start, pa.date32())),
                   pc.less_equal(usage_date, pa.scalar(end, pa.date32())))
    if not pc.any(keep).as_py():
        return None
    return keep, usage_date.filter(keep)
