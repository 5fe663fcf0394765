"""The warehouse interface. Two backends implement it: DuckDB (embedded default) and BigQuery.

All SQL handed to a warehouse is BigQuery Standard SQL with named `@params`; table references are
written `` `dataset.table` ``. The DuckDB backend transpiles it (see shared/warehouse/dialect.py).
Datasets and tables named in SQL must come from validated identifiers (shared/naming.py), never
from request input.
"""
from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared.schemas import TableSchema

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Slice:
    """The rows one run owns in a table: equality on some columns and an inclusive date range."""

    equals: Mapping[str, Any]  # e.g. {"x_org_slug": "acme", "x_pipeline_id": ..., "x_credential_id": ...}
    date_column: str
    start_date: dt.date
    end_date: dt.date  # inclusive

    def where_sql(self) -> tuple[str, dict[str, Any]]:
        """A WHERE clause (BigQuery dialect) selecting this slice, with its parameters."""
        parts, params = [], {}
        for i, (col, value) in enumerate(sorted(self.equals.items())):
            parts.append(f"{col} = @slice_{i}")
            params[f"slice_{i}"] = value
        parts.append(f"{self.date_column} BETWEEN @slice_start AND @slice_end")
        params["slice_start"], params["slice_end"] = self.start_date, self.end_date
        return " AND ".join(parts), params

    def rows_sql(self, table_ref: str) -> tuple[str, dict[str, Any]]:
        """This slice of `table_ref` as a parenthesised subquery (BigQuery dialect), with its parameters."""
        where, params = self.where_sql()
        return f"(SELECT * FROM {table_ref} WHERE {where})", params


@dataclass(frozen=True)
class FromQuery:
    """A slice's rows as one SELECT (BigQuery dialect, `@params`) yielding every column of the table, lineage
    included. It may read the slices written by the same `replace_slices`: backends run it inside that
    transaction after every other write, so it sees exactly what they wrote (a raw table's source totals)."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class NativeScan(Protocol):
    """Rows defined by DuckDB SELECTs over local files (shared.warehouse.scan.DuckScan): the embedded warehouse
    runs them in its own INSERT, any other iterates them as Arrow record batches."""

    def __iter__(self): ...

    def stamped(self, lineage, date_column: str, on_part=None) -> NativeScan:
        """These rows with the lineage columns added; `on_part(rows=, files=)` is called as each part is read."""

    def insert_into(self, cur, table_ref: str) -> int:
        """Insert every row into `table_ref` with the DuckDB cursor `cur` (in its transaction); rows inserted."""


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message says what and where."""


class LeaseLost(WarehouseError):
    """A fenced write found its run no longer held by it (cancelled, or failed by a sweep): nothing was written."""


LEASE_LOST = "lease lost"  # in the message a BigQuery script raises when its fence fails
_FENCE_UPDATE = ("UPDATE {runs} SET lease_token = {token} "
                 "WHERE run_id = {run_id} AND lease_token = {token} AND status = 'running'")


def bigquery_fence(runs: str, run_id: str, token: str) -> str:
    """The fence as BigQuery script statements (the UPDATE, then a RAISE unless it touched one row);
    `run_id` and `token` are SQL expressions (query parameters or procedure arguments)."""
    return (_FENCE_UPDATE.format(runs=runs, run_id=run_id, token=token) + ";\n"
            f"IF @@row_count != 1 THEN\n  RAISE USING MESSAGE = '{LEASE_LOST}: the run is no longer running "
            "under the lease of this job; nothing was written';\nEND IF;")


@dataclass(frozen=True)
class Fence:
    """The lease a write is made under: the transaction commits only while run `run_id` is running
    under `token`. Backends run `sql()` inside the write's own transaction and require one row: the
    UPDATE also makes a concurrent cancel or sweep of the same row conflict with the write."""

    run_id: str
    token: str

    def sql(self) -> tuple[str, dict[str, Any]]:
        return (_FENCE_UPDATE.format(runs="`organizations.org_pipeline_runs`", run_id="@fence_run_id",
                                     token="@fence_token"),
                {"fence_run_id": self.run_id, "fence_token": self.token})

    def lost(self) -> LeaseLost:
        return LeaseLost(f"{LEASE_LOST}: run {self.run_id} is no longer running under this job's lease "
                         "(cancelled, or failed by a sweep); nothing was written")


class Warehouse(abc.ABC):
    """One interface for the embedded (DuckDB) and GCP (BigQuery) warehouses."""

    #: name of the dataset that holds the meta tables
    meta_dataset = "organizations"

    # -- structure -----------------------------------------------------------------
    @abc.abstractmethod
    def ensure_dataset(self, dataset: str) -> None:
        """Create the dataset (DuckDB: schema) if it does not exist."""

    @abc.abstractmethod
    def ensure_table(self, dataset: str, schema: TableSchema) -> None:
        """Create the table from its schema if missing; add columns the schema has and it lacks."""

    @abc.abstractmethod
    def table_exists(self, dataset: str, table: str) -> bool: ...

    # -- SQL ---------------------------------------------------------------------
    @abc.abstractmethod
    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a SELECT (BigQuery dialect, `@name` params) and return rows as dicts."""

    @abc.abstractmethod
    def query_arrow(self, sql: str, params: Params | None = None):
        """Run a SELECT and return a pyarrow.Table."""

    @abc.abstractmethod
    def stream_arrow(self, sql: str, params: Params | None = None, batch_rows: int = 65_536):
        """Run a SELECT and return a pyarrow.RecordBatchReader that fetches the result as it is read: memory
        holds a batch or a page at a time, never the whole result (exports of whole orgs)."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one DML/DDL statement; return the number of rows it affected (0 for DDL)."""

    @abc.abstractmethod
    def claim(self, org_slug: str, sql: str, params: Params | None = None) -> bool:
        """Run `sql`, one INSERT ... SELECT ... WHERE that adds one row when its conditions hold (a run
        claim: the slice is free and the plan's counts allow it), decided on every claim of the same
        org committed before it: concurrent claims of one org never both decide on the same state.
        True if it added the row."""

    # -- bulk writes ---------------------------------------------------------------
    @abc.abstractmethod
    def replace_slices(self, dataset: str, writes: Mapping[str, tuple[Slice, Iterable[Any]]],
                       fence: Fence | None = None) -> dict[str, int]:
        """Atomically replace slices of one or more tables with Arrow record batches.

        `writes` maps table name -> (slice, rows): an iterable of pyarrow.RecordBatch whose schema is the
        table's Arrow schema (a NativeScan is one too), or a FromQuery, run after every other write.
        Either every table's slice is replaced or none is. Returns rows written per table. With a
        `fence`, the same transaction checks the run's lease (LeaseLost).
        """

    @abc.abstractmethod
    def insert_rows(self, dataset: str, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert a few rows (meta tables). Bulk data goes through replace_slices."""

    # -- procedures ----------------------------------------------------------------
    @abc.abstractmethod
    def install_procedures(self, dataset: str) -> list[str]:
        """Install every procedure in procedures/*.sql for `dataset`; return their names."""

    @abc.abstractmethod
    def call_procedure(self, dataset: str, name: str, params: Params, fence: Fence | None = None) -> None:
        """Run procedure `name` against `dataset` with the standard parameters, as one transaction
        (with a `fence`, one that also checks the run's lease: LeaseLost)."""

    def close(self) -> None:  # pragma: no cover - backends override when they hold resources
        pass
