"""What the synthetic billing generators (tools/*_generator.py) share: SQL literal helpers, the streaming
`COPY ... TO` that writes their rows, and the command line.

A generator describes its rows as one SELECT over `range(lo, hi)`, every value computed from the row number
and a seed (DuckDB's `hash`), so the output is deterministic, vectorised and streamed: memory stays bounded
whatever the row count. `copy_rows` splits the rows over one or more files (providers deliver a month as
several files) and writes CSV, gzip CSV or Parquet.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

FORMATS = ("csv", "csv.gz", "parquet")


def lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def sql_list(values) -> str:
    return "[" + ", ".join(lit(str(v)) for v in values) + "]"


def int_list(values) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def pick(values, idx: str) -> str:
    """values[idx] for a 0-based SQL index expression, as a constant-list lookup (no join: order is kept)."""
    return f"{sql_list(values)}[{idx} + 1]"


def row_hashes(lo: int, hi: int, seed: int) -> str:
    """The CTE `g` every generator starts from: row number i (lo <= i < hi) and four independent hashes."""
    return (f"g AS (\n  SELECT i, hash(i, {seed}) AS h0, hash(i, {seed}, 1) AS h1, hash(i, {seed}, 2) AS h2, "
            f"hash(i, {seed}, 3) AS h3\n  FROM range({lo}, {hi}) AS t(i)\n)")


def resource_tag(values, seed: int, k: int, missing_pct: int) -> str:
    """The k-th tag of resource `ri`: one of `values`, or NULL on missing_pct % of resources. Tags follow the
    resource (the same resource always has the same tags), as in real exports."""
    return (f"CASE WHEN (hash(ri, {seed}, {k + 100}) % 100) >= {missing_pct} "
            f"THEN {pick(values, f'(hash(ri, {seed}, {k + 200}) % {len(values)})::INT')} END")


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def copy_options(fmt: str) -> str:
    if fmt == "parquet":
        return "FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 122880"
    if fmt not in ("csv", "csv.gz"):
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    opts = "FORMAT csv, HEADER true, QUOTE '\"', ESCAPE '\"'"
    return opts + (", COMPRESSION gzip" if fmt == "csv.gz" else "")


def copy_rows(query: Callable[[int, int], str], rows: int, outs: Sequence[str | Path], fmt: str,
              threads: int | None = None, memory_limit: str = "1GB") -> list[Path]:
    """Write rows 0..rows-1 of `query(lo, hi)` (the rows lo <= i < hi) split evenly over `outs`, in order."""
    import duckdb

    paths = [Path(p) for p in outs]
    opts = copy_options(fmt)
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        # row order is part of the output: the same seed must give the same bytes
        con.execute("SET preserve_insertion_order = true")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for k, path in enumerate(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            lo, hi = k * rows // len(paths), (k + 1) * rows // len(paths)
            con.execute(f"COPY ({query(lo, hi)}) TO {lit(str(path))} ({opts})")
    finally:
        con.close()
    return paths


def run_main(prog: str, doc: str | None, argv: list[str] | None, make: Callable[..., Path | list[Path]],
             options: Sequence[tuple[tuple[str, ...], dict]] = ()) -> int:
    """A generator's command line: --rows, --out, --seed, --month and its own `options`; calls
    `make(args, month)` and reports on stderr what it wrote (size, bytes per row, time)."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--month", default="2024-03", help="billing month, YYYY-MM (default 2024-03)")
    for flags, kwargs in options:
        ap.add_argument(*flags, **kwargs)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    made = make(a, dt.date.fromisoformat(a.month + "-01"))
    files = made if isinstance(made, list) else [made]
    size = sum(p.stat().st_size for p in files)
    where = files[0] if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"
    print(f"{where}: {a.rows:,} rows, {size / 1e6:.1f} MB ({size / max(a.rows, 1):.0f} B/row), "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
