"""SQL building blocks for extractors that read billing files with DuckDB (see shared.warehouse.scan).

An extractor describes a file (`describe`), builds one SELECT over `source_sql(...)` with the typed
expressions below, guards its row rules with `guarded_where`, and returns it as a `ScanPart` whose
`explain` is `read_error(...)`: DuckDB's errors become the messages a user sees (the file, the column and
the row of a bad value, never the value itself), whichever engine ran the SELECT.
"""
from __future__ import annotations

import csv as pycsv
import gzip
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path

import duckdb
import pyarrow as pa

from jobs.base import ExtractError
from jobs.cloud.common import BadValue, DataFile, corrupted, not_a
from shared import schemas
from shared.warehouse.scan import DuckScan

READER_MEMORY = "128MB"  # the private connection used when another warehouse takes Arrow batches
READER_THREADS = 2
CSV_BUFFER = 8 << 20  # bytes per CSV read buffer (DuckDB's default is 32 MiB)
CHECK_MARK = "cloudact-check: "  # prefixes the message of a row rule broken inside a SELECT
MONEY = "DECIMAL(38, 9)"  # NUMERIC

# DuckDB errors (OSError: as raised inside an Arrow stream) and the damaged-file errors of Python's readers
READ_ERRORS = (duckdb.Error, pa.ArrowException, OSError, EOFError, zlib.error, UnicodeDecodeError)


def connect():
    """A private, memory-capped in-memory DuckDB for reading files."""
    # spills go to the system temp folder (DuckDB's default is `.tmp/` in the working directory)
    con = duckdb.connect(config={"memory_limit": READER_MEMORY, "threads": READER_THREADS,
                                 "preserve_insertion_order": False,
                                 "temp_directory": os.path.join(tempfile.gettempdir(), "cloudact-duckdb")})
    con.execute("SET TimeZone = 'UTC'")
    return con


# -- literals and names ----------------------------------------------------------------------------
def q(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A quoted string literal."""
    return "'" + value.replace("'", "''") + "'"


def is_text(typ: str) -> bool:
    return typ in ("VARCHAR", "JSON") or typ.startswith("VARCHAR")


# -- typed expressions over a column of DuckDB type `typ` --------------------------------------------
def text(ref: str, typ: str) -> str:
    """Text, '' as NULL."""
    return f"NULLIF({ref}, '')" if is_text(typ) else f"NULLIF(CAST({ref} AS VARCHAR), '')"


def round9(text_expr: str) -> str:
    """Decimal text as DECIMAL(38, 9), rounded half to even on all of its digits (Python's
    Decimal(text).quantize), so that totals match the sources to the last digit.

    DuckDB's casts round half away from zero; the two differ only when the 10th decimal is a 5 (or the text
    has an exponent), so only those values take the exact path (up to 27 decimals below 1e11; beyond that,
    digits past the 15th decimal are ignored). The others are parsed as DECIMAL(18, 9) when they fit:
    DuckDB parses text into a 38-digit DECIMAL about 100x slower."""
    tie = f"{text_expr} LIKE '%._________5%' OR contains({text_expr}, 'e') OR contains({text_expr}, 'E')"
    exact = (f"COALESCE(CAST(round_even(TRY_CAST({text_expr} AS DECIMAL(38, 27)), 9) AS {MONEY}), "
             f"CAST(round_even(CAST({text_expr} AS DECIMAL(38, 15)), 9) AS {MONEY}))")
    fast = f"COALESCE(CAST(TRY_CAST({text_expr} AS DECIMAL(18, 9)) AS {MONEY}), CAST({text_expr} AS {MONEY}))"
    return f"CASE WHEN {tie} THEN {exact} ELSE {fast} END"


def money(ref: str, typ: str) -> str:
    """NUMERIC. Text and floats (through their shortest text, so no binary noise) round half to even."""
    if is_text(typ):
        return round9(f"NULLIF({ref}, '')")
    if typ in ("DOUBLE", "FLOAT", "REAL"):
        return round9(f"CAST({ref} AS VARCHAR)")
    if typ.startswith("DECIMAL"):
        return f"CAST(round_even({ref}, 9) AS {MONEY})"
    return f"CAST({ref} AS {MONEY})"


def timestamp(ref: str, typ: str) -> str:
    """TIMESTAMPTZ (ISO text; text without a zone is UTC)."""
    if is_text(typ):
        return f"CAST(NULLIF({ref}, '') AS TIMESTAMPTZ)"
    return f"CAST({ref} AS TIMESTAMPTZ)"


def timestamp_check(ref: str) -> str:
    """True for a non-empty text that is not a timestamp (see `bad_value`)."""
    return f"NULLIF({ref}, '') IS NOT NULL AND TRY_CAST({ref} AS TIMESTAMPTZ) IS NULL"


def number_check(ref: str) -> str:
    """True for a non-empty value that is not a number (see `bad_value`)."""
    e = f"CAST({ref} AS VARCHAR)"
    return f"NULLIF({e}, '') IS NOT NULL AND TRY_CAST({e} AS {MONEY}) IS NULL"


def guarded_where(guards: Iterable[tuple[str, str]], fname: str, keep: str) -> str:
    """A WHERE condition: `keep`, but a row where a guard's expression is NULL stops the read with that
    guard's message (DuckDB's error()), so a bad row fails the run the same way whichever engine runs the
    SELECT. guards: (expression, message)."""
    when = " ".join(f"WHEN {expr} IS NULL THEN error({lit(CHECK_MARK + fname + ': ' + msg)})"
                    for expr, msg in guards)
    return f"CASE {when} ELSE {keep} END" if when else keep


# -- files ---------------------------------------------------------------------------------------------
def source_sql(path: str, fmt: str) -> str:
    """DuckDB's reader for a local file: Parquet as typed, CSV / gzip CSV with every column as text."""
    if fmt == "parquet":
        return f"read_parquet({lit(path)})"
    comp = "gzip" if fmt == "csv.gz" else "none"
    return (f"read_csv({lit(path)}, all_varchar = true, header = true, compression = {lit(comp)}, "
            f"delim = ',', quote = '\"', escape = '\"', buffer_size = {CSV_BUFFER})")


def csv_header(path: str, fmt: str) -> list[str]:
    """The CSV's header names as written (BOM stripped)."""
    opener = gzip.open if fmt == "csv.gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        return next(pycsv.reader(fh), [])


def describe(con, path: str, f: DataFile) -> list[tuple[str, str, str]]:
    """(name as in the file, DuckDB type, name in DuckDB's relation) per column.

    DuckDB renames repeated CSV names case-insensitively (`user:Team`, `user:team` -> `user:team_1`):
    columns are resolved by the file's own header and referred to by DuckDB's names."""
    src = source_sql(path, f.fmt)
    try:
        cols = [(r[0], str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        header = csv_header(path, f.fmt) if f.fmt != "parquet" else None
    except READ_ERRORS as e:
        raise read_error(e, f) from None
    if header and len(header) == len(cols):
        return [(h, typ, name) for h, (name, typ) in zip(header, cols)]
    return [(name, typ, name) for name, typ in cols]


def is_empty(con, path: str, f: DataFile) -> bool:
    """A file with a header and no rows (a zero-byte file is reported before reading)."""
    if Path(path).stat().st_size == 0:
        return False
    try:
        # fetchall: a half-read result would block the connection's next query
        return not con.execute(f"SELECT 1 FROM {source_sql(path, f.fmt)} LIMIT 1").fetchall()
    except Exception:  # noqa: BLE001
        return False


# -- errors --------------------------------------------------------------------------------------------
def read_error(e: BaseException, f: DataFile,
               probe: Callable[[BaseException], ExtractError] | None = None) -> BaseException:
    """A DuckDB error while reading file `f`, as the error the user sees. `probe(e)` names the column of a
    value that cannot be cast (see `bad_value`)."""
    if isinstance(e, ExtractError):
        return e
    msg = str(e)
    if CHECK_MARK in msg:
        return ExtractError(msg.split(CHECK_MARK, 1)[1].strip())
    if msg.startswith(("Binder Error", "Parser Error", "Catalog Error")):
        return e  # a bug in the generated SQL, not in the file
    if msg.startswith("Out of Memory"):
        return ExtractError(f"{f.name}: reading it ran out of memory ({msg.splitlines()[0]})")
    if probe is not None and (isinstance(e, duckdb.ConversionException) or msg.startswith("Conversion Error")):
        return probe(e)
    if not isinstance(e, READ_ERRORS):
        return e
    return corrupted(f, e)


def bad_value(src: str, f: DataFile, checks: Iterable[tuple[str, str, str, str]], e: BaseException) -> ExtractError:
    """The column and row behind a failed cast. checks: (column as in the file, kind, its reference in `src`,
    condition true for a bad value), probed on a private connection (the failed one may be inside an aborted
    transaction)."""
    for col, kind, _, cond in checks:
        row = first_row(src, cond)
        if row is not None:
            return BadValue(f.name, col, not_a(kind), row)
    return ExtractError(f"{f.name}: a value cannot be converted")


def first_row(src: str, cond: str) -> int | None:
    """The row number (1-based, in file order, header excluded) of the first row of `src` where `cond`
    holds, None if there is none or the probe fails (a probe explaining an error must not replace it).
    One thread, insertion order kept: row_number() then counts the rows as the file holds them."""
    con = duckdb.connect(config={"memory_limit": READER_MEMORY, "threads": 1, "preserve_insertion_order": True,
                                 "temp_directory": os.path.join(tempfile.gettempdir(), "cloudact-duckdb")})
    try:
        con.execute("SET TimeZone = 'UTC'")
        row = con.execute(f"SELECT n FROM (SELECT row_number() OVER () AS n, _bad FROM "
                          f"(SELECT ({cond}) AS _bad FROM {src})) WHERE _bad LIMIT 1").fetchone()
    except Exception:  # noqa: BLE001
        return None
    finally:
        con.close()
    return int(row[0]) if row else None


# -- JSON text as Python's json.dumps(ensure_ascii=True) writes it ---------------------------------------
def json_ascii(json_expr: str) -> str:
    """JSON text (e.g. to_json(...)) with every character past ~ written as a lower-case \\uXXXX escape
    (a surrogate pair beyond the BMP), byte for byte what json.dumps writes by default. DuckDB's to_json
    already escapes the control characters the same way; only text with such characters takes the slow,
    per-character path."""
    cp = "unicode(ch)"
    hi = f"(55296 + (({cp} - 65536) >> 10))"
    lo = f"(56320 + (({cp} - 65536) & 1023))"

    def esc(n: str) -> str:
        return f"'\\u' || lpad(lower(hex({n})), 4, '0')"

    each = (f"CASE WHEN {cp} < 127 THEN ch WHEN {cp} < 65536 THEN {esc(cp)} "
            f"ELSE {esc(hi)} || {esc(lo)} END")
    return (f"CASE WHEN regexp_matches({json_expr}, '[^\\x00-\\x7e]') "
            f"THEN array_to_string(list_transform(string_split({json_expr}, ''), lambda ch: {each}), '') "
            f"ELSE {json_expr} END")


def csv_text_sql(path: str, fmt: str, columns: int) -> str:
    """DuckDB's reader for a local CSV / gzip CSV whose header has been read (`describe_csv`): every column as
    text, named c0, c1, ... by position. Nothing is sniffed: on files of a few MB, sniffing costs as much as
    the read, and it runs again for every statement over the file."""
    comp = "gzip" if fmt == "csv.gz" else "none"
    names = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(columns))
    return (f"read_csv({lit(path)}, columns = {{{names}}}, auto_detect = false, header = true, "
            f"compression = {lit(comp)}, delim = ',', quote = '\"', escape = '\"', buffer_size = {CSV_BUFFER})")


def describe_csv(path: str, f: DataFile) -> list[tuple[str, str, str]]:
    """`describe` for `csv_text_sql`: (name as in the header, 'VARCHAR', c<position>) per column."""
    try:
        header = csv_header(path, f.fmt)
    except READ_ERRORS as e:
        raise read_error(e, f) from None
    return [(name, "VARCHAR", f"c{i}") for i, name in enumerate(header)]


def file_scan(ctx, source, files: list[DataFile], part_of: Callable, raw_table: str, what: str = "billing",
              batch_rows: int = 16_384, prefetch: int = 2) -> dict:
    """An extractor's result for files read with DuckDB: {raw_table: a DuckScan with one part per file}.

    Each file is spooled with `source.local_path` and kept until its part has been read; `part_of(con, path,
    f)` returns its ScanPart, or None when there is nothing to read (having warned). A file that yields no
    row and has none is reported empty."""
    stats = {"files": 0, "rows": 0}

    def parts(con):
        for f in files:
            stats["files"] += 1
            with ExitStack() as stack:
                path = source.local_path(f, stack)
                part = part_of(con, path, f)
                if part is None:
                    continue
                yield part
                stats["rows"] += part.rows
                if part.rows == 0 and is_empty(con, path, f):
                    ctx.warn(f"{f.name} is empty")
        ctx.log.info("read %s %s files, %s rows in range", stats["files"], what, stats["rows"])

    scan = DuckScan(parts, connect, schema=schemas.get(raw_table).arrow_schema(include_lineage=False),
                    batch_rows=batch_rows, prefetch=prefetch)
    return {raw_table: scan}


def probe(sql: str) -> tuple | None:
    """The first row of `sql` on a private connection (the connection of a failed statement may be inside an
    aborted transaction), None if it fails: a probe explaining an error must not replace it."""
    con = connect()
    try:
        return con.execute(sql).fetchone()
    except Exception:  # noqa: BLE001
        return None
    finally:
        con.close()


def csv_files_sql(paths: list[str], fmt: str, columns: int) -> str:
    """`csv_text_sql` over several files with the same header, read in parallel (one file is read by one
    thread: a part of several small files keeps every core busy), each row's path in column `filename`."""
    one = csv_text_sql(paths[0], fmt, columns)
    listed = "[" + ", ".join(lit(p) for p in paths) + "]"
    return one.replace(lit(paths[0]), listed, 1).replace("header = true", "header = true, filename = true", 1)
