"""The GCP warehouse: BigQuery through google-cloud-bigquery.

Only the GCP path imports this module, so the SDK is imported here and nowhere else.

- The client honours `BIGQUERY_EMULATOR_HOST` (anonymous credentials; `http://` added when the value
  has no scheme, which the client otherwise rejects).
- API retries and job waits have bounded deadlines (constructor arguments or
  `CLOUDACT_BQ_RETRY_DEADLINE` / `CLOUDACT_BQ_JOB_TIMEOUT`), so nothing retries for the client's
  default 600 s.
- Bulk writes (`replace_slices`) stream Arrow batches into Parquet chunks of at most
  `CLOUDACT_BQ_STAGING_CHUNK_MB` (128) each, loaded one by one into a short-lived staging table (so a
  slice of any size stages in bounded memory: Cloud Run's /tmp is RAM), then replace every table's
  slice in ONE multi-statement transaction.
  Streaming inserts are never used: their buffer blocks DML on the rows for up to 90 minutes.
- Datasets are created, and every job runs, in `CLOUDACT_BIGQUERY_LOCATION` (default US).
- NUMERIC stays NUMERIC (38, 9) everywhere; BIGNUMERIC is never produced.
- Concurrency: a run claim is a transaction that conflicts with the org's other claims (`claim`), and
  every transaction (claims, slice replacements, procedure calls) runs again, with jittered backoff,
  when BigQuery aborts it for a concurrent update (`_retry_conflicts`).
"""
from __future__ import annotations

import datetime as dt
import decimal
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from google.api_core import retry as api_retry
from google.cloud import bigquery
from google.cloud.bigquery import retry as bq_retry

from shared import lifecycle
from shared import procedures as procs
from shared.naming import identifier, org_dataset
from shared.schemas import Field, TableSchema
from shared.warehouse.base import (LEASE_LOST, Fence, FromQuery, LeaseLost, Params, Slice, Warehouse, WarehouseError,
                                   bigquery_fence)

# A `@name` query parameter (not `@@system_variable`).
_PARAM_RE = re.compile(r"(?<![@\w])@([A-Za-z_]\w*)")
# Rows buffered before a Parquet row group is written (bounded memory for big extractions).
_ROW_GROUP_ROWS = 64_000
_STAGING_TTL = dt.timedelta(days=1)
# In BigQuery's answer when a transaction lost a write conflict ("Transaction is aborted due to concurrent
# update against table p:d.t") or a DML statement did after BigQuery's own reruns ("Could not serialize
# access to table p:d.t due to concurrent update"). The reason is a generic invalidQuery: the text tells.
_CONFLICT = "concurrent update"
# Raised inside a claim's transaction (constant texts: no input reaches a message).
CLAIM_REFUSED = "run claim refused"
_NO_CLAIM_ROW = "no run claim row"
# A staged Parquet file is loaded into the staging table (and deleted) once it is this big: Cloud Run's
# filesystem is memory, so one file per slice would cap a slice at what the job's memory holds.
_STAGING_CHUNK_MB = 128


def _with_timeout(retry, seconds: float):
    # api_core renamed with_deadline -> with_timeout; support both.
    return retry.with_timeout(seconds) if hasattr(retry, "with_timeout") else retry.with_deadline(seconds)


def make_client(project: str, location: str | None):
    """A BigQuery client for `project` whose jobs run in `location` (None: where the tables they name are);
    talks to the emulator when BIGQUERY_EMULATOR_HOST is set."""
    host = os.environ.get("BIGQUERY_EMULATOR_HOST", "").strip()
    if host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        if not host.startswith(("http://", "https://")):
            host = f"http://{host}"
        return bigquery.Client(project=project, location=location, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=host))
    return bigquery.Client(project=project, location=location)


# -- query parameters -----------------------------------------------------------------


def bq_type(value: Any) -> str:
    """The BigQuery type of a Python value used as a query parameter (None -> STRING)."""
    if value is None or isinstance(value, str):
        return "STRING"
    if isinstance(value, bool):  # before int: bool is an int
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):  # before date: datetime is a date
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, bytes):
        return "BYTES"
    raise WarehouseError(f"cannot pass a {type(value).__name__} as a BigQuery query parameter")


def query_parameter(name: str, value: Any):
    """A ScalarQueryParameter (ArrayQueryParameter for lists/tuples/sets) with an inferred type."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        kinds = {bq_type(v) for v in items if v is not None}
        if len(kinds) > 1:
            raise WarehouseError(f"query parameter @{name} mixes types: {', '.join(sorted(kinds))}")
        return bigquery.ArrayQueryParameter(name, kinds.pop() if kinds else "STRING", items)
    return bigquery.ScalarQueryParameter(name, bq_type(value), value)


def referenced_params(sql: str) -> set[str]:
    return set(_PARAM_RE.findall(sql))


def query_parameters(sql: str, params: Params | None) -> list:
    """Parameters for the `@names` the SQL mentions (extra entries in `params` are not sent)."""
    params = params or {}
    used = referenced_params(sql)
    return [query_parameter(k, v) for k, v in params.items() if k in used]


# -- schemas ----------------------------------------------------------------------------


def schema_fields(schema: TableSchema) -> list:
    """SchemaFields for a table; NUMERIC is sent as NUMERIC (38, 9), never BIGNUMERIC."""
    return [
        bigquery.SchemaField(f.name, f.type, mode=f.mode, description=f.description or None)
        for f in schema.fields
    ]


def _json_columns(schema: TableSchema) -> list[str]:
    return [f.name for f in schema.fields if f.type == "JSON"]


def _to_parquet_batch(batch: pa.RecordBatch, json_cols: list[str]) -> pa.RecordBatch:
    if not json_cols:
        return batch
    arrays, fields = [], []
    for field, col in zip(batch.schema, batch.columns):
        if field.name in json_cols:
            col = pa.ExtensionArray.from_storage(pa.json_(pa.string()), col.cast(pa.string()))
            field = pa.field(field.name, col.type, nullable=field.nullable)
        arrays.append(col)
        fields.append(field)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _parquet_arrow_schema(arrow_schema: pa.Schema, json_cols: list[str]) -> pa.Schema:
    """The Arrow schema written to Parquet: JSON columns get Parquet's JSON logical type."""
    return pa.schema([
        pa.field(f.name, pa.json_(pa.string()), nullable=f.nullable) if f.name in json_cols else f
        for f in arrow_schema
    ])


def _conform(batch, arrow_schema: pa.Schema) -> pa.RecordBatch | None:
    """`batch` in exactly the table's Arrow schema (cast when it differs); None when empty."""
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else None
        if batch is None:
            return None
    if batch.num_rows == 0:
        return None
    if batch.schema != arrow_schema:
        try:
            batch = pa.Table.from_batches([batch]).select(arrow_schema.names).cast(arrow_schema).combine_chunks().to_batches()[0]
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise WarehouseError(f"a record batch does not match the table's schema: {e}") from e
    return batch


class _SliceCheck:
    """Counts rows of a stream that fall outside a slice and keeps a few examples of them."""

    def __init__(self, slc: Slice, examples: int = 5):
        self.slice = slc
        self.outside = 0
        self.examples: list[dict[str, Any]] = []
        self._max = examples

    def __call__(self, batch: pa.RecordBatch) -> None:
        import pyarrow.compute as pc

        slc = self.slice
        mask = None
        for col, value in slc.equals.items():
            cond = pc.equal(batch.column(col), pa.scalar(value, batch.schema.field(col).type))
            mask = cond if mask is None else pc.and_(mask, cond)
        dates = batch.column(slc.date_column)
        if not pa.types.is_date32(dates.type):
            dates = dates.cast(pa.date32())
        in_range = pc.and_(pc.greater_equal(dates, pa.scalar(slc.start_date, pa.date32())),
                           pc.less_equal(dates, pa.scalar(slc.end_date, pa.date32())))
        mask = in_range if mask is None else pc.and_(mask, in_range)
        bad = pc.invert(pc.fill_null(mask, False))
        n = pc.sum(bad).as_py() or 0
        if n:
            self.outside += n
            if len(self.examples) < self._max:
                cols = [*sorted(slc.equals), slc.date_column]
                rows = batch.filter(bad).select(cols).slice(0, self._max - len(self.examples)).to_pylist()
                self.examples.extend(rows)


class _ParquetChunks:
    """Arrow batches as a sequence of Parquet files, so that a slice of any size stages in bounded space.

    Iterating yields `(path, rows)` for each file once it holds at least `max_bytes` (or the stream
    ended); the caller loads it, and the file is deleted before the next one is written. At any moment
    staging holds at most one chunk of about `max_bytes` plus one row group of `_ROW_GROUP_ROWS` rows
    being assembled: on Cloud Run the local filesystem is memory. The stream is read only as the
    chunks are loaded, so an extractor (or DuckScan) behind it streams too.

    With a `check` (_SliceCheck), once a batch has rows outside the slice nothing more is staged: the
    rest of the stream is only counted, for the caller's error message, and no further chunk is yielded.
    """

    def __init__(self, folder: str, name: str, schema: TableSchema, batches: Iterable[Any], max_bytes: int,
                 check: _SliceCheck | None = None):
        self.path = os.path.join(folder, f"{name}.parquet")
        self.schema, self.batches, self.max_bytes, self.check = schema, batches, max_bytes, check
        self.rows = 0  # every row of the stream, staged or not

    def __iter__(self):
        arrow_schema = self.schema.arrow_schema()
        json_cols = _json_columns(self.schema)
        file_schema = _parquet_arrow_schema(arrow_schema, json_cols)
        sink = writer = None
        chunk_rows = 0
        pending: list[pa.RecordBatch] = []
        pending_rows = 0

        def write_pending():
            nonlocal sink, writer, chunk_rows, pending, pending_rows
            if writer is None:
                sink = pa.OSFile(self.path, "wb")
                writer = pq.ParquetWriter(sink, file_schema, compression="snappy", coerce_timestamps="us",
                                          allow_truncated_timestamps=False)
            writer.write_table(pa.Table.from_batches(pending))
            chunk_rows += pending_rows
            pending, pending_rows = [], 0

        def close():
            nonlocal sink, writer, chunk_rows
            writer.close()
            sink.close()
            rows, sink, writer, chunk_rows = chunk_rows, None, None, 0
            return rows

        try:
            for b in self.batches:
                b = _conform(b, arrow_schema)
                if b is None:
                    continue
                if self.check is not None:
                    self.check(b)
                self.rows += b.num_rows
                if self.check is not None and self.check.outside:
                    continue
                pending.append(_to_parquet_batch(b, json_cols))
                pending_rows += b.num_rows
                if pending_rows >= _ROW_GROUP_ROWS:
                    write_pending()
                    if sink.tell() >= self.max_bytes:
                        yield self.path, close()
                        os.remove(self.path)
            if self.check is not None and self.check.outside:
                return
            if pending:
                write_pending()
            if writer is not None:
                yield self.path, close()
                os.remove(self.path)
        finally:
            if writer is not None:
                writer.close()
                sink.close()
            if os.path.exists(self.path):
                os.remove(self.path)


_LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "BIGNUMERIC": "NUMERIC"}


def _arrow_schema(fields) -> pa.Schema:
    """The Arrow schema of a query result's SchemaFields, typed as the tables' own (shared.schemas)."""
    return TableSchema("result", "query", tuple(
        Field(f.name, _LEGACY_TYPES.get(f.field_type, f.field_type), f.mode or "NULLABLE") for f in fields or ()
    )).arrow_schema()


class BigQueryWarehouse(Warehouse):
    def __init__(self, project: str, client=None, location: str | None = None, *,
                 retry_deadline: float | None = None, job_timeout: float | None = None,
                 conflict_attempts: int = 10, conflict_backoff: float = 1.0,
                 staging_chunk_bytes: int | None = None):
        if not project:
            raise WarehouseError("the BigQuery warehouse needs a project (set GOOGLE_CLOUD_PROJECT)")
        self.project = project
        if location is None:
            from shared.config import settings

            location = settings().bigquery_location  # CLOUDACT_BIGQUERY_LOCATION, set by Terraform
        # Every dataset is created here and every job runs here: a job in another location than its
        # datasets fails with "Not found: Dataset ... was not found in location ...".
        self.location = location
        emulated = bool(os.environ.get("BIGQUERY_EMULATOR_HOST"))
        if retry_deadline is None:
            retry_deadline = float(os.environ.get("CLOUDACT_BQ_RETRY_DEADLINE") or (10 if emulated else 120))
        if job_timeout is None:
            job_timeout = float(os.environ.get("CLOUDACT_BQ_JOB_TIMEOUT") or (60 if emulated else 1800))
        self.retry_deadline = retry_deadline
        self.job_timeout = job_timeout
        # a transaction aborted for a concurrent update runs at most this often outside a run (inside one,
        # until its deadline); waits are drawn from [0, backoff], [0, 2 backoff], ... up to 16 backoffs
        # (api_core's jittered exponential backoff)
        self.conflict_attempts = max(1, conflict_attempts)
        self.conflict_backoff = conflict_backoff
        if staging_chunk_bytes is None:
            staging_chunk_bytes = int(float(os.environ.get("CLOUDACT_BQ_STAGING_CHUNK_MB") or _STAGING_CHUNK_MB) * 2**20)
        self.staging_chunk_bytes = max(1, staging_chunk_bytes)
        self.retry = _with_timeout(bigquery.DEFAULT_RETRY, retry_deadline)
        self.job_retry = _with_timeout(bq_retry.DEFAULT_JOB_RETRY, retry_deadline)
        self.client = client if client is not None else make_client(project, location)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()

    # -- helpers -------------------------------------------------------------------
    def _ref(self, dataset: str, table: str) -> str:
        return f"{self.project}.{identifier(dataset)}.{identifier(table)}"

    def _sql_ref(self, dataset: str, table: str) -> str:
        return f"`{self._ref(dataset, table)}`"

    def _run_query(self, sql: str, params: Params | None = None, *, parameters: list | None = None,
                   page_size: int | None = None):
        """Start a query job and wait for it; returns (job, row iterator).

        The client's own job retry is turned off (`job_retry=None`): with it on, jobs.insert is
        wrapped in a private retry with a fixed 600 s deadline. Failed jobs are re-run here instead,
        with the client's job-retry predicate and our deadline.
        """
        config = bigquery.QueryJobConfig(
            query_parameters=parameters if parameters is not None else query_parameters(sql, params)
        )

        def attempt():
            job = self.client.query(sql, job_config=config, location=self.location, retry=self.retry,
                                    timeout=self.retry_deadline, job_retry=None)
            paging = {"page_size": page_size} if page_size else {}
            return job, job.result(retry=self.retry, timeout=self.job_timeout, job_retry=None, **paging)

        try:
            return self.job_retry(attempt)()
        except gexc.RetryError as e:
            cause = e
            while isinstance(cause, gexc.RetryError) and cause.cause is not None:
                cause = cause.cause
            raise WarehouseError(f"BigQuery query failed after retrying for {self.retry_deadline:g} s: "
                                 f"{_message(cause)}") from cause
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"BigQuery query failed: {_message(e)}") from e
        except TimeoutError as e:
            raise WarehouseError(f"BigQuery query did not finish within {self.job_timeout:g} s") from e

    # -- structure -----------------------------------------------------------------
    def ensure_dataset(self, dataset: str) -> None:
        ds = bigquery.Dataset(f"{self.project}.{identifier(dataset)}")
        ds.location = self.location
        try:
            got = self.client.create_dataset(ds, exists_ok=True, retry=self.retry, timeout=self.retry_deadline)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"cannot create dataset {self.project}.{dataset}: {_message(e)}") from e
        # exists_ok returns a dataset made earlier as it is: one elsewhere could never be queried from here
        where = getattr(got, "location", None)
        if isinstance(where, str) and where.lower() != self.location.lower():
            raise WarehouseError(f"dataset {self.project}.{dataset} is in location {where}, but this deployment "
                                 f"runs its BigQuery jobs in {self.location} (CLOUDACT_BIGQUERY_LOCATION, "
                                 "Terraform's bigquery_location): set it to the datasets' location")

    def table_exists(self, dataset: str, table: str) -> bool:
        try:
            self.client.get_table(self._ref(dataset, table), retry=self.retry, timeout=self.retry_deadline)
            return True
        except gexc.NotFound:
            return False

    def table_for(self, dataset: str, schema: TableSchema):
        """The bigquery.Table a schema describes (partitioning, clustering, NUMERIC types)."""
        table = bigquery.Table(self._ref(dataset, schema.table), schema=schema_fields(schema))
        if schema.description:
            table.description = schema.description
        tp = schema.time_partitioning
        if tp:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=tp.get("type", bigquery.TimePartitioningType.DAY), field=tp.get("field"))
        if schema.clustering:
            table.clustering_fields = list(schema.clustering)
        return table

    def ensure_table(self, dataset: str, schema: TableSchema) -> None:
        ref = self._ref(dataset, schema.table)
        try:
            try:
                existing = self.client.get_table(ref, retry=self.retry, timeout=self.retry_deadline)
            except gexc.NotFound:
                self.client.create_table(self.table_for(dataset, schema), exists_ok=True,
                                         retry=self.retry, timeout=self.retry_deadline)
                return
            have = {f.name for f in existing.schema}
            missing = [f for f in schema.fields if f.name not in have]
            if missing:
                # BigQuery only adds NULLABLE columns to an existing table.
                existing.schema = list(existing.schema) + [
                    bigquery.SchemaField(f.name, f.type, mode="NULLABLE", description=f.description or None)
                    for f in missing
                ]
                self.client.update_table(existing, ["schema"], retry=self.retry, timeout=self.retry_deadline)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"cannot create or update table {ref}: {_message(e)}") from e

    # -- SQL ---------------------------------------------------------------------
    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        _, rows = self._run_query(sql, params)
        return [dict(row.items()) for row in rows]

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        _, rows = self._run_query(sql, params)
        try:
            return rows.to_arrow(create_bqstorage_client=False)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"reading query results failed: {_message(e)}") from e

    def stream_arrow(self, sql: str, params: Params | None = None, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        """The result read page by page (tabledata.list pages of `batch_rows` rows), one Arrow batch per page."""
        _, rows = self._run_query(sql, params, page_size=batch_rows)
        try:
            pages = iter(rows.to_arrow_iterable(bqstorage_client=None))
            first = next(pages, None)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"reading query results failed: {_message(e)}") from e
        if first is None:  # no page to take the schema from: the result's own
            return pa.RecordBatchReader.from_batches(_arrow_schema(rows.schema), [])

        def batches():
            yield first
            try:
                yield from pages
            except gexc.GoogleAPIError as e:
                raise WarehouseError(f"reading query results failed: {_message(e)}") from e

        return pa.RecordBatchReader.from_batches(first.schema, batches())

    def execute(self, sql: str, params: Params | None = None) -> int:
        job, _ = self._run_query(sql, params)
        return int(getattr(job, "num_dml_affected_rows", None) or 0)

    # -- bulk writes ---------------------------------------------------------------
    def _load_parquet(self, path: str, destination: str, fields: list, disposition: str,
                      expected: int | None) -> None:
        """Load a Parquet file; with `expected`, check the job's output row count (staging loads)."""
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=fields,
            write_disposition=disposition,
            decimal_target_types=["NUMERIC"],
        )
        try:
            with open(path, "rb") as f:
                job = self.client.load_table_from_file(f, destination, job_config=config, location=self.location,
                                                       timeout=self.retry_deadline)
            job.result(retry=self.retry, timeout=self.job_timeout)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"loading Parquet into {destination} failed: {_message(e)}") from e
        except TimeoutError as e:
            raise WarehouseError(f"loading into {destination} did not finish within {self.job_timeout:g} s") from e
        loaded = getattr(job, "output_rows", None)
        if expected is not None and loaded is not None and int(loaded) != expected:
            raise WarehouseError(f"loaded {loaded} rows into {destination}, expected {expected}")

    def replace_slices(self, dataset: str, writes: Mapping[str, tuple[Slice, Iterable[Any]]],
                       fence: Fence | None = None) -> dict[str, int]:
        from shared import schemas

        identifier(dataset)
        written: dict[str, int] = {}
        staged: list[str] = []  # staging table ids to drop
        statements: list[str] = []
        parameters: list = []
        queried: dict[str, tuple[str, str, list]] = {}  # FromQuery writes: table -> their slice, to count
        if fence is not None:  # first in the transaction: its UPDATE conflicts with a concurrent cancel or sweep
            statements.append(bigquery_fence(self._sql_ref(self.meta_dataset, "org_pipeline_runs"),
                                             "@fence_run_id", "@fence_token"))
            parameters += [query_parameter(k, v) for k, v in fence.sql()[1].items()]
        try:
            with tempfile.TemporaryDirectory(prefix="cloudact-bq-") as tmp:
                # a FromQuery reads what the other writes wrote: last
                ordered = sorted(writes.items(), key=lambda w: isinstance(w[1][1], FromQuery))
                for i, (table, (slc, batches)) in enumerate(ordered):
                    schema = schemas.get(identifier(table))
                    target = self._sql_ref(dataset, table)
                    where, params = slc.where_sql()
                    # Each table's slice parameters get their own prefix in the shared script.
                    where = _PARAM_RE.sub(lambda m, i=i: f"@t{i}_{m.group(1)}", where)
                    parameters += [query_parameter(f"t{i}_{k}", v) for k, v in params.items()]
                    if isinstance(batches, FromQuery):
                        select = _PARAM_RE.sub(lambda m, i=i: f"@t{i}_{m.group(1)}", batches.sql)
                        parameters += [query_parameter(f"t{i}_{k}", v) for k, v in batches.params.items()]
                        cols = ", ".join(f"`{identifier(n)}`" for n in schema.names)
                        statements += [f"DELETE FROM {target} WHERE {where};",
                                       f"INSERT INTO {target} ({cols})\n{select};"]
                        queried[table] = (target, *slc.where_sql())
                        continue

                    fields = schema_fields(schema)
                    check = _SliceCheck(slc)
                    chunks = _ParquetChunks(tmp, table, schema, batches, self.staging_chunk_bytes, check)
                    staging_id = None
                    for path, chunk_rows in chunks:  # each is loaded, then deleted, before the next is written
                        if staging_id is None:
                            staging_id = self._create_staging(dataset, table, fields)
                            staged.append(staging_id)
                            disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
                        else:
                            disposition = bigquery.WriteDisposition.WRITE_APPEND
                        self._load_parquet(path, staging_id, fields, disposition, chunk_rows)
                    rows = chunks.rows
                    if check.outside:
                        shown = "; ".join(
                            ", ".join(f"{k}={v}" for k, v in row.items()) for row in check.examples)
                        raise WarehouseError(
                            f"{check.outside} of {rows} rows for {dataset}.{table} fall outside the run's slice "
                            f"({_describe(slc)}); nothing was written. Rows outside it include: {shown}"
                        )
                    statements.append(f"DELETE FROM {target} WHERE {where};")
                    written[table] = rows
                    if not rows:
                        continue

                    cols = ", ".join(f"`{identifier(n)}`" for n in schema.names)
                    statements.append(
                        f"INSERT INTO {target} ({cols})\nSELECT {cols} FROM `{staging_id}` WHERE {where};"
                    )
                    # Inside the transaction the slice now holds exactly what was inserted: it must be
                    # every loaded row (checked here too, not only while writing, so it is atomic).
                    statements.append(
                        f"IF (SELECT COUNT(*) FROM {target} WHERE {where}) != {rows} THEN\n"
                        f"  RAISE USING MESSAGE = '{dataset}.{table}: the slice does not hold the {rows} loaded "
                        f"rows (rows outside the run slice?); nothing was written';\nEND IF;"
                    )

            if statements:
                script = transaction_script(statements)
                self._run_transaction(script, parameters, f"replacing slices in {dataset}")
            for table, (target, where, params) in queried.items():
                written[table] = self.query(f"SELECT COUNT(*) AS n FROM {target} WHERE {where}", params)[0]["n"]
        finally:
            for staging_id in staged:
                try:
                    self.client.delete_table(staging_id, not_found_ok=True, retry=self.retry,
                                             timeout=self.retry_deadline)
                except gexc.GoogleAPIError:
                    pass  # it expires within a day anyway
        return written

    def _create_staging(self, dataset: str, table: str, fields: list) -> str:
        """A new, empty table beside `table` that expires within a day (it is dropped after use anyway)."""
        staging_id = self._ref(dataset, f"{table}__staging_{uuid.uuid4().hex[:12]}")
        st = bigquery.Table(staging_id, schema=fields)
        st.expires = dt.datetime.now(dt.timezone.utc) + _STAGING_TTL
        try:
            self.client.create_table(st, retry=self.retry, timeout=self.retry_deadline)
        except gexc.GoogleAPIError as e:
            raise WarehouseError(f"cannot create staging table {staging_id}: {_message(e)}") from e
        return staging_id

    def _run_transaction(self, script: str, parameters: list, what: str):
        """Run a transaction script; run it again when BigQuery aborts it for a concurrent update."""
        try:
            return self._retry_conflicts(lambda: self._run_query(script, parameters=parameters), what)
        except WarehouseError as e:
            raise (LeaseLost if LEASE_LOST in str(e) else WarehouseError)(f"{what} failed: {e}") from e.__cause__

    def _retry_conflicts(self, attempt: Callable[[], Any], what: str):
        """`attempt()`, one transaction, run again while BigQuery aborts it for a concurrent update.

        Of two transactions mutating one table BigQuery cancels one and rolls it back whole (see `claim`),
        so running the loser again is safe: it starts on a new snapshot. Waits are jittered (losers of one
        conflict do not meet again in lockstep). Bounded: at most `conflict_attempts` attempts; in a run
        (shared.lifecycle: a conversion, a job's slice replacement) until the run's deadline instead, since
        the winner may be another run's whole chain of procedures (every fenced write updates the runs
        table, so any two conflict); a run that reaches it fails saying so, a cancelled one stops
        (RunStopped) instead of trying again.
        """
        scope = lifecycle.current()
        doing = f"retrying {what} after BigQuery aborted it for a concurrent update"
        attempts = 0

        def conflicted(e: Exception) -> bool:
            nonlocal attempts
            attempts += 1
            return (scope is not None or attempts < self.conflict_attempts) and _conflict(e)

        def before_next(e: Exception) -> None:
            if scope is not None:
                scope.checkpoint(doing)

        retry = api_retry.Retry(predicate=conflicted, initial=self.conflict_backoff,
                                maximum=16 * self.conflict_backoff, multiplier=2.0,
                                timeout=max(0.0, scope.remaining()) if scope is not None else None,
                                on_error=before_next)
        try:
            return retry(attempt)()
        except gexc.RetryError as e:  # the next wait would end past the run's deadline
            raise lifecycle.DeadlineExceeded(scope.deadline_message(doing)) from e.cause
        except WarehouseError as e:
            if not _conflict(e):
                raise
            raise WarehouseError(f"{e} (BigQuery aborted it for a concurrent update {attempts} times in a row)") \
                from e.__cause__

    # -- run claims ------------------------------------------------------------------
    def claim(self, org_slug: str, sql: str, params: Params | None = None) -> bool:
        """The run claim: one transaction that conflicts with every other claim of the same org.

        The guarantee it rests on, BigQuery's multi-statement transactions ("Concurrency control"): a
        transaction reads one snapshot of the tables, and if it mutates (updates or deletes) rows of a
        table, other transactions that mutate rows of that table cannot run concurrently: one of them is
        cancelled ("Transaction is aborted due to concurrent update against table ...") and rolled back.
        INSERTs never conflict ("operations that read or append new rows can run concurrently"), which
        is why the guarded INSERT ... WHERE NOT EXISTS alone is not atomic there: two of them read the
        same snapshot and both insert.

        So the transaction first UPDATEs the org's row of `{org}_prod.run_claim`, then runs the guarded
        INSERT, then requires it to have added its row (else it RAISEs: a refused claim commits nothing).
        Two claims of one org that overlap both mutate `run_claim`, so at most one commits; the other is
        run again (`_retry_conflicts`) on a snapshot that holds the winner's run. Every committed claim
        thus decided on all the org's claims committed before it: a slice is never queued twice and a
        plan's counts are never overshot. The table is the org's own (BigQuery detects conflicts per
        table), so other orgs' claims never conflict with it, and nothing else writes it. The other
        writes to the runs table (leases, sweeps, finishing) never make a run active, so a snapshot that
        misses them can only refuse a claim a later one would allow, never the reverse.
        """
        table = self._sql_ref(org_dataset(org_slug), "run_claim")
        script = transaction_script([
            f"UPDATE {table} SET claimed_at = CURRENT_TIMESTAMP() WHERE org_slug = @claim_org;",
            f"IF @@row_count = 0 THEN\n  RAISE USING MESSAGE = '{_NO_CLAIM_ROW}: the claim decided nothing';\nEND IF;",
            sql.strip().rstrip(";") + ";",
            f"IF @@row_count != 1 THEN\n  RAISE USING MESSAGE = '{CLAIM_REFUSED}: its conditions do not hold; "
            "nothing was written';\nEND IF;",
        ])
        parameters = query_parameters(script, {**(params or {}), "claim_org": org_slug})

        def run() -> bool:
            try:
                self._run_transaction(script, parameters, f"the run claim of {org_slug}")
                return True
            except WarehouseError as e:
                if CLAIM_REFUSED in str(e):
                    return False
                raise

        try:
            return run()
        except WarehouseError as e:
            if _NO_CLAIM_ROW not in str(e) and not isinstance(e.__cause__, gexc.NotFound):
                raise
        self._add_claim_row(org_slug)  # the org's first claim
        return run()

    def _add_claim_row(self, org_slug: str) -> None:
        """The org's claim row, for an org that has none yet (its first claim). Two of these at once may
        add two rows: harmless, a claim's UPDATE then mutates both, and conflicts all the same."""
        from shared import schemas

        dataset = org_dataset(org_slug)
        self.ensure_table(dataset, schemas.get("run_claim"))
        table = self._sql_ref(dataset, "run_claim")
        self._run_query(f"INSERT INTO {table} (org_slug) SELECT @claim_org FROM (SELECT 1 AS one) AS single "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE org_slug = @claim_org)",
                        {"claim_org": org_slug})

    def insert_rows(self, dataset: str, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from shared import schemas

        schema = schemas.get(identifier(table))
        arrow = pa.Table.from_pylist(rows, schema=schema.arrow_schema())
        with tempfile.TemporaryDirectory(prefix="cloudact-bq-") as tmp:
            for path, _ in _ParquetChunks(tmp, table, schema, arrow.to_batches(), self.staging_chunk_bytes):
                # No row-count check on an append: bqemulator reports the table's total as output_rows.
                self._load_parquet(path, self._ref(dataset, table), schema_fields(schema),
                                   bigquery.WriteDisposition.WRITE_APPEND, None)

    # -- procedures ----------------------------------------------------------------
    def install_procedures(self, dataset: str) -> list[str]:
        names = []
        for name, proc in procs.all_procedures().items():
            try:
                self._run_query(proc.bigquery_ddl(self.project, identifier(dataset)), parameters=[])
            except WarehouseError as e:
                raise WarehouseError(f"installing {name} in {self.project}.{dataset} failed: {e}") from e.__cause__
            names.append(name)
        return names

    def call_procedure(self, dataset: str, name: str, params: Params, fence: Fence | None = None) -> None:
        procs.get(name)  # unknown procedures fail with the list of known ones
        missing = [n for n in procs.PARAM_NAMES if n not in params]
        if missing:
            raise WarehouseError(f"{name}: missing parameters {', '.join(missing)}")
        parameters = []
        for pname, ptype in procs.PARAMS:
            value = params[pname]
            if ptype == "DATE" and isinstance(value, str):
                value = dt.date.fromisoformat(value)
            elif ptype == "DATE" and isinstance(value, dt.datetime):
                value = value.date()
            parameters.append(bigquery.ScalarQueryParameter(pname, ptype, value))
        # the procedure checks the lease inside its own transaction (procedures.FENCE_ARG); NULL: no fence
        parameters.append(bigquery.ScalarQueryParameter(procs.FENCE_ARG[0], procs.FENCE_ARG[1],
                                                        fence.token if fence else None))
        args = ", ".join(f"@{n}" for n in (*procs.PARAM_NAMES, procs.FENCE_ARG[0]))
        sql = f"CALL `{self.project}.{identifier(dataset)}.{identifier(name)}`({args})"
        try:
            # Two conversions of one org (and any two fenced writes: both update the runs table) conflict:
            # BigQuery aborts one, which runs again.
            self._retry_conflicts(lambda: self._run_query(sql, parameters=parameters), f"{name} on {dataset}")
        except WarehouseError as e:
            raise (LeaseLost if LEASE_LOST in str(e) else WarehouseError)(
                f"{name} failed on {dataset}: {e}") from e.__cause__


def transaction_script(statements: list[str]) -> str:
    """One multi-statement transaction. No exception handler: when any statement (or the commit)
    fails, BigQuery fails the query and rolls the transaction back itself, and the original error
    (e.g. a concurrent-update abort, which is retried) reaches the caller unchanged."""
    body = "\n".join(statements)
    return f"BEGIN TRANSACTION;\n{body}\nCOMMIT TRANSACTION;"


def _describe(slc: Slice) -> str:
    eq = ", ".join(f"{k} = {v!r}" for k, v in sorted(slc.equals.items()))
    return f"{eq}, {slc.date_column} {slc.start_date}..{slc.end_date}"


def _conflict(e: BaseException) -> bool:
    """Did BigQuery refuse this (a WarehouseError wraps the API error) for a concurrent update?"""
    cause = e.__cause__ if isinstance(e, WarehouseError) else e
    return isinstance(cause, gexc.GoogleAPICallError) and _CONFLICT in _message(cause).lower()


def _message(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    errors = getattr(e, "errors", None) or []
    details = "; ".join(err.get("message", "") for err in errors if isinstance(err, dict) and err.get("message"))
    if details and details not in msg:
        msg = f"{msg} ({details})"
    return msg
