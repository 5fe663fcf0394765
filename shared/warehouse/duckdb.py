"""The embedded warehouse: one DuckDB file, each dataset a schema.

Writes are serialized by one lock (one process owns the file); reads run on per-thread cursors.
Bulk data arrives as Arrow record batches, as a NativeScan (SELECTs over local files, run by this
engine inside its own INSERT) or as a FromQuery over what the same call wrote, and is written inside the
same transaction that deletes the slice it replaces.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from shared import procedures as procs
from shared.config import private_dir
from shared.naming import identifier
from shared.schemas import TableSchema
from shared.warehouse.base import Fence, FromQuery, NativeScan, Params, Slice, Warehouse, WarehouseError
from shared.warehouse.dialect import DUCKDB_TYPES, to_duckdb


def _bind(names: frozenset[str], params: Params | None) -> dict[str, Any]:
    params = params or {}
    missing = names - params.keys()
    if missing:
        raise WarehouseError(f"query parameters not given: {', '.join(sorted(missing))}")
    return {k: params[k] for k in names}


def _remembering(batches: Iterable[Any], failed: list[BaseException]):
    """`batches`, keeping the error the producer raises, if any, in `failed`: DuckDB reports it wrapped in
    its own error, with the Python traceback (the platform's paths) in the text."""
    try:
        yield from batches
    except Exception as e:
        failed.append(e)
        raise


def _unregister(cur, name: str) -> None:
    # In an aborted transaction DuckDB refuses even this; the caller rolls back and tries again, and
    # the original error (the one worth reporting) is never masked.
    try:
        cur.unregister(name)
    except duckdb.Error:
        pass


def _owner_only(path: Path) -> None:
    """The warehouse file, its WAL and its spill files owner-only: 0600 (0700 folders) in a 0700 folder.

    DuckDB creates them itself with the process umask (the WAL anew after every checkpoint, spill files
    whenever memory runs out), has no setting for their mode and refuses a pre-created empty file. So
    the process that owns an embedded warehouse creates nothing group- or world-accessible from here on:
    its umask gains 077. Files an older version left readable are tightened.
    """
    private_dir(path.parent)
    os.umask(os.umask(0o077) | 0o077)
    for existing in (path, path.with_name(path.name + ".wal")):
        if existing.exists() and existing.stat().st_uid == os.getuid():
            existing.chmod(0o600)


# DuckDB's buffer pool; the process adds ~125 MiB (interpreter, libraries, catalog) and DuckDB ~40 MiB outside
# the pool, so a whole ingest + conversion stays under 512 MiB. Bulk data beyond it spills to the temp folder.
DEFAULT_MEMORY_LIMIT = "320MB"


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: str | Path | None = None):
        self.path = str(path) if path else ":memory:"
        if path:
            _owner_only(Path(path))
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as e:
            raise WarehouseError(
                f"cannot open the warehouse {self.path}: {e}. Is another cloudact process (e.g. "
                "`cloudact serve`) using it? Stop it, or send requests to that server instead."
            ) from None
        self._con.execute("SET TimeZone = 'UTC'")
        self._tune(path)
        self._write_lock = threading.RLock()
        self._local = threading.local()

    def _tune(self, path: str | Path | None) -> None:
        """Bounded memory: a memory limit (CLOUDACT_DUCKDB_MEMORY_LIMIT, default 320MB; '' for DuckDB's own
        80% of RAM) spilling to a temp folder beside the warehouse file; no insertion-order bookkeeping
        (bulk loads and the conversion never depend on row order; queries that need one say ORDER BY).
        CLOUDACT_DUCKDB_THREADS caps the worker threads (default: one per core)."""
        limit = os.environ.get("CLOUDACT_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT).strip()
        if limit:
            if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", limit, re.IGNORECASE):
                raise WarehouseError(f"CLOUDACT_DUCKDB_MEMORY_LIMIT={limit!r} is not a size such as 512MB or 2GB")
            self._con.execute(f"SET memory_limit = '{limit}'")
        # spills beside the file, or (in-memory) in the system temp folder rather than `.tmp/` in the CWD
        tmp = Path(path).parent / (Path(path).name + ".tmp") if path else Path(tempfile.gettempdir(), "cloudact-duckdb")
        self._con.execute("SET temp_directory = '" + str(tmp).replace("'", "''") + "'")
        self._con.execute("SET preserve_insertion_order = false")
        threads = os.environ.get("CLOUDACT_DUCKDB_THREADS", "").strip()
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")

    # A cursor per thread: DuckDB connections are not shared across threads.
    @property
    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.cur = cur
        return cur

    def close(self) -> None:
        self._con.close()

    # -- structure -----------------------------------------------------------------
    def ensure_dataset(self, dataset: str) -> None:
        with self._write_lock:
            self._cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{identifier(dataset)}"')

    def table_exists(self, dataset: str, table: str) -> bool:
        row = self._cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [dataset, table],
        ).fetchone()
        return bool(row[0])

    def _columns(self, dataset: str, table: str) -> set[str]:
        rows = self._cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [dataset, table],
        ).fetchall()
        return {r[0] for r in rows}

    def ensure_table(self, dataset: str, schema: TableSchema) -> None:
        ref = f'"{identifier(dataset)}"."{identifier(schema.table)}"'
        with self._write_lock:
            if not self.table_exists(dataset, schema.table):
                cols = ", ".join(
                    f'"{identifier(f.name)}" {DUCKDB_TYPES[f.type]}{" NOT NULL" if f.required else ""}'
                    for f in schema.fields
                )
                self._cur.execute(f"CREATE TABLE {ref} ({cols})")
                return
            # Schema evolution: add what the schema has and the table lacks (nullable, as BigQuery allows).
            have = self._columns(dataset, schema.table)
            for f in schema.fields:
                if f.name not in have:
                    self._cur.execute(f'ALTER TABLE {ref} ADD COLUMN "{identifier(f.name)}" {DUCKDB_TYPES[f.type]}')

    # -- SQL ---------------------------------------------------------------------
    def _run(self, cur, sql: str, params: Params | None):
        statements = to_duckdb(sql)
        if len(statements) != 1:
            raise WarehouseError("one statement per call; procedures hold multi-statement logic")
        text, names = statements[0]
        try:
            return cur.execute(text, _bind(names, params))
        except duckdb.Error as e:
            raise WarehouseError(f"{type(e).__name__}: {e}") from e

    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        cur = self._run(self._cur, sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        (text, names), = to_duckdb(sql)
        try:  # a relation streams into Arrow without the DB-API result's extra copy
            return self._cur.sql(text, params=_bind(names, params)).to_arrow_table()
        except duckdb.Error as e:
            raise WarehouseError(f"{type(e).__name__}: {e}") from e

    def stream_arrow(self, sql: str, params: Params | None = None, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        (text, names), = to_duckdb(sql)
        # A cursor of its own: a stream read slowly (an HTTP client) must not be cut off by the next query that
        # runs on this thread's cursor.
        cur = self._con.cursor()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            reader = cur.sql(text, params=_bind(names, params)).to_arrow_reader(batch_rows)
        except duckdb.Error as e:
            cur.close()
            raise WarehouseError(f"{type(e).__name__}: {e}") from e

        def batches():
            try:
                while True:
                    try:
                        yield reader.read_next_batch()
                    except StopIteration:
                        return
                    except (duckdb.Error, pa.ArrowException, OSError) as e:  # DuckDB's errors reach Arrow's reader as OSError
                        raise WarehouseError(f"reading the result failed: {e}") from e
            finally:
                cur.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def execute(self, sql: str, params: Params | None = None) -> int:
        with self._write_lock:
            cur = self._run(self._cur, sql, params)
            try:
                row = cur.fetchone()
            except duckdb.Error:
                return 0
            return int(row[0]) if row and isinstance(row[0], int) else 0

    def claim(self, org_slug: str, sql: str, params: Params | None = None) -> bool:
        # One statement under the write lock: its checks and its insert are one atomic step.
        return self.execute(sql, params) == 1

    # -- bulk writes ---------------------------------------------------------------
    def _check_fence(self, cur, fence: Fence | None) -> None:
        if fence is not None:
            sql, params = fence.sql()
            if self._run(cur, sql, params).fetchone()[0] != 1:
                raise fence.lost()

    def replace_slices(self, dataset: str, writes: Mapping[str, tuple[Slice, Iterable[Any]]],
                       fence: Fence | None = None) -> dict[str, int]:
        from shared import schemas

        written: dict[str, int] = {}
        with self._write_lock:
            cur = self._cur
            cur.execute("BEGIN TRANSACTION")
            try:
                # a FromQuery reads what the other writes wrote: last
                for table, (slc, batches) in sorted(writes.items(), key=lambda w: isinstance(w[1][1], FromQuery)):
                    ref = f"`{identifier(dataset)}.{identifier(table)}`"
                    where, params = slc.where_sql()
                    self._run(cur, f"DELETE FROM {ref} WHERE {where}", params)
                    if isinstance(batches, FromQuery):
                        written[table] = self._land_query(cur, dataset, table, batches)
                        continue
                    if isinstance(batches, NativeScan):
                        written[table] = self._land_scan(cur, dataset, table, batches, where, params)
                        continue
                    arrow_schema = schemas.get(table).arrow_schema()
                    seen = [0]

                    def counted(batches=batches, seen=seen, arrow_schema=arrow_schema):
                        for b in batches:
                            if b.schema != arrow_schema:
                                if b.schema.types == arrow_schema.types and b.schema.names == arrow_schema.names:
                                    b = pa.RecordBatch.from_arrays(b.columns, schema=arrow_schema)  # nullability only
                                else:
                                    b = pa.Table.from_batches([b]).cast(arrow_schema).to_batches()[0] if b.num_rows else None
                                if b is None:
                                    continue
                            seen[0] += b.num_rows
                            yield b

                    failed: list[BaseException] = []
                    reader = pa.RecordBatchReader.from_batches(arrow_schema, _remembering(counted(), failed))
                    cur.register("_cloudact_incoming", reader)
                    try:
                        inserted = self._run(
                            cur,
                            f"INSERT INTO {ref} BY NAME SELECT * FROM _cloudact_incoming WHERE {where}",
                            params,
                        ).fetchone()[0]
                    except WarehouseError:
                        if failed:  # the producer's own error, not DuckDB's wrapper with its traceback
                            raise failed[0] from None
                        raise
                    finally:
                        _unregister(cur, "_cloudact_incoming")
                    if inserted != seen[0]:
                        raise WarehouseError(
                            f"{seen[0] - inserted} of {seen[0]} rows for {dataset}.{table} fall outside the run's "
                            f"slice ({where.replace('@', '')}); nothing was written"
                        )
                    written[table] = inserted
                # Checked last: the batches above are the job's extraction, which may take long.
                self._check_fence(cur, fence)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                _unregister(cur, "_cloudact_incoming")
                raise
        return written

    def _land_query(self, cur, dataset: str, table: str, query: FromQuery) -> int:
        from shared import schemas

        cols = ", ".join(f"`{identifier(n)}`" for n in schemas.get(table).names)
        ref = f"`{identifier(dataset)}.{identifier(table)}`"
        return int(self._run(cur, f"INSERT INTO {ref} ({cols})\n{query.sql}", query.params).fetchone()[0])

    def _land_scan(self, cur, dataset: str, table: str, scan: NativeScan, where: str, params: Params) -> int:
        """A NativeScan's files read straight into the table by this engine (see shared.warehouse.scan)."""
        inserted = scan.insert_into(cur, f'"{identifier(dataset)}"."{identifier(table)}"')
        rows = f"(SELECT * FROM `{identifier(dataset)}.{identifier(table)}` WHERE {where})"
        in_slice = self._run(cur, f"SELECT COUNT(*) FROM {rows}", params).fetchone()[0]
        if in_slice != inserted:
            raise WarehouseError(f"{inserted - in_slice} of {inserted} rows for {dataset}.{table} fall outside the "
                                 f"run's slice ({where.replace('@', '')}); nothing was written")
        return inserted

    def insert_rows(self, dataset: str, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from shared import schemas

        arrow = pa.Table.from_pylist(rows, schema=schemas.get(table).arrow_schema())
        ref = f'"{identifier(dataset)}"."{identifier(table)}"'
        with self._write_lock:
            cur = self._cur
            cur.register("_cloudact_rows", arrow)
            try:
                cur.execute(f"INSERT INTO {ref} BY NAME SELECT * FROM _cloudact_rows")
            finally:
                cur.unregister("_cloudact_rows")

    # -- procedures ----------------------------------------------------------------
    def install_procedures(self, dataset: str) -> list[str]:
        # Nothing to install: statements are transpiled (and cached) when called. Transpile now so a
        # broken procedure fails at bootstrap, not in the middle of a run.
        for proc in procs.all_procedures().values():
            to_duckdb(";\n".join(proc.statements(dataset)))
        return list(procs.all_procedures())

    def call_procedure(self, dataset: str, name: str, params: Params, fence: Fence | None = None) -> None:
        proc = procs.get(name)
        statements = to_duckdb(";\n".join(proc.statements(dataset)))
        with self._write_lock:
            cur = self._cur
            cur.execute("BEGIN TRANSACTION")
            try:
                self._check_fence(cur, fence)
                for text, names in statements:
                    cur.execute(text, _bind(names, params))
                cur.execute("COMMIT")
            except duckdb.Error as e:
                cur.execute("ROLLBACK")
                raise WarehouseError(f"{name} failed on {dataset}: {e}") from e
            except BaseException:
                cur.execute("ROLLBACK")
                raise
