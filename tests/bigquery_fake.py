"""A google.cloud.bigquery.Client stand-in that runs what BigQueryWarehouse sends on DuckDB, with
BigQuery's concurrency rules, so that the backend's claims and retries are tested offline.

What it simulates (BigQuery's documented semantics, not DuckDB's):
- every query job reads one snapshot of the tables, taken when it starts (DuckDB's MVCC, pinned by a
  read at the start of each job);
- a multi-statement transaction (`BEGIN TRANSACTION; ...; COMMIT TRANSACTION;`, and every CALL: the
  backend's procedures are transactions) that mutates rows of a table (UPDATE, DELETE, MERGE) conflicts
  with any other transaction that mutates the same table while it runs, and with a mutation of that
  table committed after its snapshot: it is aborted with BigQuery's error, as google-cloud-bigquery
  raises it (BadRequest, reason invalidQuery, "Transaction is aborted due to concurrent update against
  table p:d.t. ..."), and rolled back. Conflicts are per table, not per row (DuckDB's own are per row);
- INSERTs never conflict with anything;
- a mutating DML statement outside a transaction waits until no transaction holds that table (BigQuery
  queues it) and then commits on its own;
- `IF <condition> THEN RAISE USING MESSAGE = '...'; END IF;` fails the script (rolling its transaction
  back) with the message, `@@row_count` being the rows the last DML statement touched.

`overlap(n, when)` makes the next n writing jobs (a script, a CALL or a DML statement) whose SQL
`when` accepts each take their snapshot and then wait until all n have, so they overlap as two
requests on two servers can.
`hold(table)` keeps a table mutated by a transaction that never ends (every mutation of it conflicts).
"""
from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery.job import _error_result_to_exception
from sqlglot import exp

from shared import procedures as procs
from shared import schemas
from shared.warehouse.base import Fence, LEASE_LOST
from shared.warehouse.bigquery import schema_fields
from shared.warehouse.dialect import parse_bigquery, to_duckdb
from shared.warehouse.duckdb import DuckDBWarehouse

_IF_RAISE = re.compile(r"IF (?P<cond>.+?) THEN\s+RAISE USING MESSAGE = '(?P<msg>[^']*)';\s*END IF;", re.S)
_CALL = re.compile(r"CALL `(?P<dataset>\w+)\.(?P<name>\w+)`\([^)]*\)")


def bigquery_error(message: str):
    """The exception google-cloud-bigquery raises for a failed query job with this error result."""
    result = {"reason": "invalidQuery", "location": "query", "message": message}
    return _error_result_to_exception(result, [result])


class Aborted(Exception):
    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


@dataclass
class _Txn:
    id: int
    cur: Any
    script: bool  # a transaction (aborts on conflict) rather than one DML statement (waits)
    start: Counter = field(default_factory=Counter)
    mutated: set[str] = field(default_factory=set)


class _Job:
    def __init__(self, rows=None, affected=None, error=None):
        self._rows, self.num_dml_affected_rows, self._error = rows or _Rows(), affected, error

    def result(self, **kwargs):
        if self._error is not None:
            raise self._error
        return self._rows


class _Rows(list):
    def to_arrow(self, create_bqstorage_client=True):
        return pa.Table.from_pylist([dict(r.items()) for r in self])


class ConcurrentBigQuery:
    """The client (see the module docstring). `engine` holds the data: set it up through DuckDBWarehouse."""

    def __init__(self, engine: DuckDBWarehouse, project: str):
        self.engine, self.project = engine, project
        self.cond = threading.Condition()
        self.versions: Counter[str] = Counter()  # table -> committed mutations
        self.holders: dict[str, int] = {}  # table -> the transaction mutating it now
        self.sent: list[str] = []  # every job's SQL, in order
        self.aborted: list[str] = []  # the error text of every aborted transaction
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._barrier: threading.Barrier | None = None
        self._overlapping = 0  # how many more writing jobs meet at the barrier
        self._overlap_when = lambda sql: True

    # -- test controls --------------------------------------------------------------------------
    def overlap(self, n: int, when=lambda sql: True) -> None:
        with self.cond:
            self._barrier, self._overlapping, self._overlap_when = threading.Barrier(n, timeout=20), n, when

    def hold(self, table: str) -> None:
        with self.cond:
            self.holders[table] = 0

    # -- the client API the backend uses ----------------------------------------------------------
    def query(self, sql, job_config=None, location=None, retry=None, timeout=None, job_retry=None, **kw):
        params = {}
        for p in (job_config.query_parameters if job_config else []):
            params[p.name] = list(p.values) if isinstance(p, bigquery.ArrayQueryParameter) else p.value
        with self.cond:
            self.sent.append(sql)
        try:
            return self._run(sql.replace(f"`{self.project}.", "`"), params)
        except Aborted as a:
            return _Job(error=a.error)

    def get_table(self, ref, retry=None, timeout=None):
        dataset, table = str(ref).split(".")[-2:]
        if not self.engine.table_exists(dataset, table):
            raise gexc.NotFound(f"Not found: Table {self.project}:{dataset}.{table}")
        return bigquery.Table(f"{self.project}.{dataset}.{table}", schema=schema_fields(schemas.get(table)))

    def create_table(self, table, exists_ok=False, retry=None, timeout=None):
        self.engine.ensure_table(table.dataset_id, schemas.get(table.table_id))
        return table

    def create_dataset(self, dataset, exists_ok=False, retry=None, timeout=None):
        self.engine.ensure_dataset(dataset.dataset_id)
        return dataset

    def close(self):
        pass

    # -- running a job ----------------------------------------------------------------------------
    def _run(self, sql: str, params: dict) -> _Job:
        if sql.startswith("BEGIN TRANSACTION;"):
            body = sql.removeprefix("BEGIN TRANSACTION;").strip().removesuffix("COMMIT TRANSACTION;")
            return self._transaction(sql, lambda txn: self._script(txn, body, params), script=True)
        call = _CALL.fullmatch(sql.strip())
        if call:
            return self._transaction(sql, lambda txn: self._call(txn, call, params), script=True)
        if isinstance(parse_bigquery(sql)[0], exp.Query):
            return _Job(rows=self._select(self._cursor(), sql, params))
        return self._transaction(sql, lambda txn: _Job(affected=self._statement(txn, sql, params)), script=False)

    def _cursor(self):
        """This thread's connection (a thread runs one job at a time; each has its own transaction)."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self.engine._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
        return cur

    def _transaction(self, sql: str, body, script: bool) -> _Job:
        txn = _Txn(next(self._ids), self._cursor(), script)
        with self.cond:
            txn.cur.execute("BEGIN TRANSACTION")
            txn.cur.execute("SELECT COUNT(*) FROM organizations.org_pipeline_runs").fetchall()  # the snapshot
            txn.start = Counter(self.versions)
            barrier = None
            if self._overlapping and self._overlap_when(sql):
                barrier, self._overlapping = self._barrier, self._overlapping - 1
        if barrier is not None:
            barrier.wait()  # every overlapping job holds its snapshot now
        try:
            job = body(txn)
        except BaseException:
            self._end(txn, commit=False)
            raise
        self._end(txn, commit=True)
        return job

    def _end(self, txn: _Txn, commit: bool) -> None:
        with self.cond:
            txn.cur.execute("COMMIT" if commit else "ROLLBACK")
            for table in txn.mutated:
                if commit:
                    self.versions[table] += 1
                if self.holders.get(table) == txn.id:
                    del self.holders[table]
            self.cond.notify_all()

    def _abort(self, txn: _Txn, table: str):
        dataset, name = table.split(".")
        error = bigquery_error(f"Transaction is aborted due to concurrent update against table "
                               f"{self.project}:{dataset}.{name}. Transaction ID: fake-{txn.id}")
        with self.cond:
            self.aborted.append(str(error))
        raise Aborted(error)

    def _statement(self, txn: _Txn, sql: str, params: dict) -> int:
        """One DML statement in `txn`; the rows it touched."""
        tree = parse_bigquery(sql)[0]
        target = None
        if isinstance(tree, (exp.Update, exp.Delete, exp.Merge)):
            t = tree.this if isinstance(tree.this, exp.Table) else tree.find(exp.Table)
            target = f"{t.db}.{t.name}"
            if not txn.script:  # outside a transaction: queued until no transaction mutates the table
                with self.cond:
                    if not self.cond.wait_for(lambda: target not in self.holders, timeout=30):
                        raise AssertionError(f"a DML statement on {target} waited 30 s for a transaction")
                    self.holders[target] = txn.id
                    txn.mutated.add(target)
            else:
                with self.cond:
                    holder = self.holders.get(target)
                    if (holder is not None and holder != txn.id) or self.versions[target] != txn.start[target]:
                        conflict = True
                    else:
                        conflict = False
                        self.holders[target] = txn.id
                        txn.mutated.add(target)
                if conflict:
                    self._abort(txn, target)
        (text, names), = to_duckdb(sql)
        try:
            row = txn.cur.execute(text, {n: params[n] for n in names}).fetchone()
        except duckdb.TransactionException:
            self._abort(txn, target or "organizations.unknown")
        return int(row[0]) if row and isinstance(row[0], int) else 0

    def _select(self, cur, sql: str, params: dict) -> _Rows:
        (text, names), = to_duckdb(sql)
        result = cur.execute(text, {n: params[n] for n in names})
        cols = [d[0] for d in result.description]
        return _Rows(bigquery.Row(tuple(r), {c: i for i, c in enumerate(cols)}) for r in result.fetchall())

    def _script(self, txn: _Txn, body: str, params: dict) -> _Job:
        row_count = 0
        text = body.strip()
        while text:
            block = _IF_RAISE.match(text)
            if block:
                cond = block["cond"].replace("@@row_count", str(row_count))
                ok = self._select(txn.cur, f"SELECT ({cond}) AS hit", params)[0]["hit"]
                if ok:
                    raise Aborted(bigquery_error(block["msg"]))
                text = text[block.end():].strip()
                continue
            stmt, _, text = text.partition(";\n")
            stmt, text = stmt.strip().rstrip(";"), text.strip()
            if stmt:
                row_count = self._statement(txn, stmt, params)
        return _Job(affected=row_count)

    def _call(self, txn: _Txn, call: re.Match, params: dict) -> _Job:
        """A procedure: its fence (when it has a lease token), then its statements, in its transaction."""
        proc = procs.get(call["name"])
        if params.get(procs.FENCE_ARG[0]) is not None:
            sql, fence_params = Fence(params["run_id"], params[procs.FENCE_ARG[0]]).sql()
            if self._statement(txn, sql, fence_params) != 1:
                raise Aborted(bigquery_error(f"{LEASE_LOST}: the run is no longer running under the lease"))
        for stmt in proc.statements(call["dataset"]):
            self._statement(txn, stmt, params)
        return _Job()
