"""Rows defined by DuckDB SELECTs over local files, landed wherever that is cheapest.

An extractor whose rows come from files DuckDB can read (CSV, gzip CSV, Parquet) returns a `DuckScan`
instead of Arrow batches. The embedded warehouse, itself DuckDB, runs each file's SELECT inside its own
`INSERT ... SELECT`: the file is parsed, cast and written by one engine, with no Arrow hop, no second
engine holding its own memory, and no Python in the row path. Any other warehouse (BigQuery) iterates
`batches()`: the same SELECTs run on a private, memory-capped in-memory DuckDB and stream Arrow batches,
read ahead in a thread while the consumer writes.

A scan is built from a *parts* generator: given a DuckDB connection, it yields one `ScanPart` per file
(it may open and spool the file first, and keeps it open until the next part is asked for). The consumer
runs `part.sql`, records `part.rows`, and turns a failure into the user's error with `part.explain(e)`.

Whatever is derived from the rows (source totals) is computed by the warehouse from what it wrote, never
here: both paths land the same rows, so the same SQL over them gives the same result.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class ScanPart:
    """One file's rows: a SELECT (column names as in the target table, lineage excluded)."""

    sql: str
    explain: Callable[[BaseException], BaseException]  # a DuckDB error while running `sql` -> the user's error
    rows: int = field(default=0)  # set by the consumer once the part has been read


@dataclass(frozen=True)
class DuckScan:
    parts: Callable[[Any], Iterator[ScanPart]]  # connection -> parts, one per file
    connect: Callable[[], Any]  # a private DuckDB connection for `batches()`
    schema: Any = None  # the Arrow schema batches are labelled with (DuckDB's own marks every column nullable)
    lineage: Any = None  # shared.lineage.Lineage, set by `stamped`
    date_column: str | None = None
    on_part: Callable[..., None] | None = None  # on_part(rows=, files=) once a part has been read (`stamped`)
    batch_rows: int = 16_384
    prefetch: int = 2

    def __iter__(self) -> Iterator[Any]:
        return self.batches()

    def stamped(self, lineage, date_column: str, on_part: Callable[..., None] | None = None) -> DuckScan:
        """This scan with the lineage columns added to every row; `on_part(rows=, files=)` follows the reading."""
        return replace(self, lineage=lineage, date_column=date_column, on_part=on_part)

    def _read_part(self, part: ScanPart) -> None:
        if self.on_part is not None:
            self.on_part(rows=part.rows, files=1)

    # -- the embedded warehouse: native INSERT ... SELECT ------------------------------------------
    def lineage_sql(self) -> tuple[str, list[Any]]:
        """`SELECT *, <lineage columns>` wrapper text (with `{inner}`) and its positional parameters."""
        if self.lineage is None:
            return "SELECT * FROM ({inner})", []
        lin = self.lineage
        cols = (f"$1 AS x_org_slug, $2 AS x_pipeline_id, $3 AS x_credential_id, "
                f'CAST("{self.date_column}" AS DATE) AS x_pipeline_run_date, $4 AS x_run_id, '
                "CAST($5 AS TIMESTAMPTZ) AS x_ingested_at, CAST($6 AS DATE) AS x_ingestion_date")
        return (f"SELECT *, {cols} FROM ({{inner}})",
                [lin.org_slug, lin.pipeline_id, lin.credential_id, lin.run_id, lin.ingested_at,
                 lin.ingested_at.date()])

    def insert_into(self, cur, table_ref: str) -> int:
        """Insert every part into `table_ref` with `cur` (inside the caller's transaction); returns rows."""
        wrapper, params = self.lineage_sql()
        total = 0
        parts = self.parts(cur)
        try:
            for part in parts:
                sql = f"INSERT INTO {table_ref} BY NAME " + wrapper.format(inner=part.sql)
                try:
                    part.rows = int(cur.execute(sql, params).fetchone()[0])
                except Exception as e:  # noqa: BLE001 - explained, then raised
                    raise part.explain(e) from None
                self._read_part(part)
                total += part.rows
        finally:
            parts.close()
        return total

    # -- any other warehouse: Arrow batches --------------------------------------------------------
    def batches(self) -> Iterator[Any]:
        """Every part's rows as Arrow record batches (lineage stamped when set), read ahead in a thread."""
        return _prefetched(self._read(), self.prefetch)

    def _read(self) -> Iterator[Any]:
        import pyarrow as pa

        con = self.connect()
        try:
            parts = self.parts(con)
            try:
                for part in parts:
                    reader = None
                    try:
                        reader = con.sql(part.sql).to_arrow_reader(self.batch_rows)
                        for batch in reader:
                            if batch.num_rows:
                                if self.schema is not None:
                                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
                                part.rows += batch.num_rows
                                yield (self.lineage.stamp(batch, self.date_column) if self.lineage is not None
                                       else batch)
                    except Exception as e:  # noqa: BLE001 - explained, then raised
                        raise part.explain(e) from None
                    finally:
                        if reader is not None:
                            reader.close()  # release the part's result now, not when the reader is collected
                    self._read_part(part)
            finally:
                parts.close()
        finally:
            con.close()


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run the `items` generator in a thread, `depth` items ahead of the consumer, so that reading and
    casting overlap with the consumer's writes. Errors are re-raised in the consumer; closing the result
    early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(e)
        finally:
            items.close()

    t = threading.Thread(target=work, name="scan-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is end:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()
