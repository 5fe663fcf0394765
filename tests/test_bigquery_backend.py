"""The BigQuery backend: procedure DDL that BigQuery can parse, and BigQueryWarehouse's API calls.

No BigQuery here: a recording fake client receives the same google-cloud-bigquery objects
(Table, SchemaField, QueryJobConfig, LoadJobConfig) the real client would send, and the tests
check what would go over the wire (their API representations) and the Parquet files loaded.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import re
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from shared import procedures as procs
from shared import schemas
from shared.warehouse.base import Fence, LeaseLost, Slice, WarehouseError
from shared.warehouse.bigquery import BigQueryWarehouse, make_client, query_parameter

PROJECT = "cloudact-test"
DATASET = "acme_prod"

# -- procedures: BigQuery DDL -------------------------------------------------------------

_DDL = re.compile(
    r"CREATE OR REPLACE PROCEDURE `(?P<ref>[^`]+)`\((?P<args>[^)]*)\)\n"
    r"BEGIN\n  BEGIN TRANSACTION;\nIF p_lease_token IS NOT NULL THEN\n(?P<fence>.*?END IF;)\nEND IF;\n"
    r"(?P<body>.*);\n  COMMIT TRANSACTION;\n"
    r"EXCEPTION WHEN ERROR THEN\n  ROLLBACK TRANSACTION;\n  RAISE USING MESSAGE = @@error\.message;\nEND",
    re.S,
)


@pytest.mark.parametrize("name", sorted(procs.all_procedures()))
def test_procedure_ddl_parses_as_bigquery_and_uses_only_its_arguments(name):
    ddl = procs.get(name).bigquery_ddl(PROJECT, DATASET)
    # sqlglot 30 has no CREATE PROCEDURE / RAISE grammar (it falls back to an opaque Command), so the
    # wrapper is checked structurally and every body statement is parsed strictly.
    m = _DDL.fullmatch(ddl)
    assert m, f"unexpected procedure wrapper:\n{ddl}"
    assert m["ref"] == f"{PROJECT}.{DATASET}.{name}"
    assert m["args"] == ", ".join(f"p_{n} {t}" for n, t in (*procs.PARAMS, procs.FENCE_ARG))
    # the lease fence, first in the procedure's own transaction
    fence = sqlglot.parse_one(m["fence"].split(";")[0], read="bigquery", error_level=ErrorLevel.RAISE)
    assert isinstance(fence, exp.Update)
    assert (fence.this.catalog, fence.this.db, fence.this.name) == (PROJECT, "organizations", "org_pipeline_runs")
    assert {c.name for c in fence.find_all(exp.Column)} >= {"p_run_id", "p_lease_token", "lease_token", "status"}
    assert "IF @@row_count != 1 THEN\n  RAISE USING MESSAGE = 'lease lost" in m["fence"]

    statements = sqlglot.parse(m["body"], read="bigquery", error_level=ErrorLevel.RAISE)
    assert statements and all(isinstance(s, (exp.Delete, exp.Insert, exp.Merge, exp.Update)) for s in statements), \
        [type(s).__name__ for s in statements]
    arg_names = {f"p_{n}" for n in procs.PARAM_NAMES}
    for stmt in statements:
        assert not list(stmt.find_all(exp.Parameter, exp.Placeholder)), "an @param survived in the body"
        unqualified = {c.name for c in stmt.find_all(exp.Column) if not c.table}
        assert {c for c in unqualified if c.startswith("p_")} <= arg_names
        for table in stmt.find_all(exp.Table):
            if table.args.get("db"):  # real tables, not CTE names: fully qualified with the project
                assert table.catalog == PROJECT, table.sql("bigquery")
                # a column named like an argument would shadow it inside the procedure
                if table.name in schemas.all_schemas():
                    assert not any(f.startswith("p_") for f in schemas.get(table.name).names)
    # the body uses the run's slice
    body_args = {c.name for s in statements for c in s.find_all(exp.Column) if c.name.startswith("p_")}
    assert {"p_org_slug", "p_start_date", "p_end_date"} <= body_args


# -- a recording fake of google.cloud.bigquery.Client ---------------------------------------


class FakeQueryJob:
    def __init__(self, sql, config, rows=(), affected=None, error=None):
        self.query, self.job_config = sql, config
        self._rows, self.num_dml_affected_rows, self._error = list(rows), affected, error

    def result(self, **kwargs):
        assert kwargs.get("timeout") is not None, "job waits must be bounded"
        assert kwargs.get("job_retry", "unset") is None
        if self._error:
            raise self._error
        return FakeRows(self._rows)


class FakeRows(list):
    def to_arrow(self, create_bqstorage_client=True):
        assert create_bqstorage_client is False
        return pa.Table.from_pylist([dict(r.items()) for r in self])


class FakeLoadJob:
    def __init__(self, rows):
        self.output_rows = rows

    def result(self, **kwargs):
        assert kwargs.get("timeout") is not None
        return self


class FakeClient:
    """Records every call; tables live in a dict; queries answer through `responder`."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.tables: dict[str, bigquery.Table] = {}
        self.queries: list[FakeQueryJob] = []
        self.loads: list[dict] = []
        self.responder = lambda sql, config: FakeQueryJob(sql, config)

    def _id(self, ref):
        return ref if isinstance(ref, str) else f"{ref.project}.{ref.dataset_id}.{ref.table_id}"

    def create_dataset(self, dataset, exists_ok=False, retry=None, timeout=None):
        self.calls.append(("create_dataset", dataset))
        return dataset

    def get_table(self, ref, retry=None, timeout=None):
        self.calls.append(("get_table", self._id(ref)))
        try:
            return self.tables[self._id(ref)]
        except KeyError:
            raise gexc.NotFound(f"Not found: Table {self._id(ref)}") from None

    def create_table(self, table, exists_ok=False, retry=None, timeout=None):
        self.calls.append(("create_table", table))
        self.tables[self._id(table.reference)] = table
        return table

    def update_table(self, table, fields, retry=None, timeout=None):
        self.calls.append(("update_table", (table, list(fields))))
        return table

    def delete_table(self, ref, retry=None, timeout=None, not_found_ok=False):
        self.calls.append(("delete_table", self._id(ref)))
        self.tables.pop(self._id(ref), None)

    def load_table_from_file(self, file_obj, destination, job_config=None, location=None, timeout=None, **kw):
        folder = os.path.dirname(file_obj.name)
        raw = file_obj.read()
        data = pq.read_table(io.BytesIO(raw))
        self.loads.append({"destination": self._id(destination), "config": job_config, "data": data,
                           "location": location, "bytes": len(raw), "meta": pq.ParquetFile(io.BytesIO(raw)).metadata,
                           "staged_files": sorted(os.listdir(folder))})
        self.calls.append(("load", self._id(destination)))
        return FakeLoadJob(data.num_rows)

    def query(self, sql, job_config=None, location=None, retry=None, timeout=None, job_retry=None, **kw):
        assert retry is not None and retry.timeout <= 60, "API retries must have a short deadline"
        assert job_retry is None, "the client's job retry wraps jobs.insert in a fixed 600 s retry"
        job = self.responder(sql, job_config)
        job.location = location
        self.queries.append(job)
        self.calls.append(("query", sql))
        return job


@pytest.fixture()
def fake():
    return FakeClient()


@pytest.fixture()
def wh(fake):
    return BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30)


def _params(config) -> dict[str, dict]:
    return {p["name"]: p for p in (q.to_api_repr() for q in config.query_parameters)}


# -- structure ------------------------------------------------------------------------------


def test_ensure_table_sends_partitioning_clustering_and_numeric(wh, fake):
    wh.ensure_table(DATASET, schemas.get("genai_costs_daily"))
    ((_, table),) = [c for c in fake.calls if c[0] == "create_table"]
    api = table.to_api_repr()
    assert api["tableReference"] == {"projectId": PROJECT, "datasetId": DATASET, "tableId": "genai_costs_daily"}
    assert api["timePartitioning"] == {"type": "DAY", "field": "usage_date"}
    assert api["clustering"] == {"fields": ["x_pipeline_id", "provider", "model"]}
    fields = {f["name"]: f for f in api["schema"]["fields"]}
    assert fields["cost"]["type"] == "NUMERIC" and fields["unit_price_per_1m"]["type"] == "NUMERIC"
    assert fields["usage_date"]["mode"] == "REQUIRED" and fields["x_ingested_at"]["type"] == "TIMESTAMP"
    assert "BIGNUMERIC" not in repr(api)
    assert [f["name"] for f in api["schema"]["fields"]] == schemas.get("genai_costs_daily").names


def test_ensure_table_adds_missing_columns_as_nullable(wh, fake):
    schema = schemas.get("genai_costs_daily")
    old = bigquery.Table(f"{PROJECT}.{DATASET}.genai_costs_daily",
                         schema=[bigquery.SchemaField(f.name, f.type, mode=f.mode) for f in schema.fields[:-2]])
    fake.tables[f"{PROJECT}.{DATASET}.genai_costs_daily"] = old
    wh.ensure_table(DATASET, schema)
    ((_, (table, fields)),) = [c for c in fake.calls if c[0] == "update_table"]
    assert fields == ["schema"]
    added = [f for f in table.schema if f.name in schema.names[-2:]]
    assert [(f.name, f.field_type, f.mode) for f in added] == [
        ("x_ingested_at", "TIMESTAMP", "NULLABLE"), ("x_ingestion_date", "DATE", "NULLABLE")]
    assert not [c for c in fake.calls if c[0] == "create_table"]

    fake.calls.clear()
    fake.tables[f"{PROJECT}.{DATASET}.genai_costs_daily"] = table
    wh.ensure_table(DATASET, schema)  # nothing missing now: no update
    assert not [c for c in fake.calls if c[0] in ("update_table", "create_table")]


def test_ensure_dataset_and_table_exists(wh, fake):
    wh.ensure_dataset(DATASET)
    (_, ds), = fake.calls
    assert ds.dataset_id == DATASET and ds.project == PROJECT and ds.location == "US"
    assert not wh.table_exists(DATASET, "genai_costs_daily")
    wh.ensure_table(DATASET, schemas.get("genai_costs_daily"))
    assert wh.table_exists(DATASET, "genai_costs_daily")


# -- SQL and parameters -----------------------------------------------------------------


def test_parameters_get_bigquery_types(wh, fake):
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, affected=7)
    n = wh.execute(
        "UPDATE `organizations.org_pipeline_runs` SET status = @status, rows_ingested = @n, finished_at = @ts "
        "WHERE run_id = @run_id AND start_date = @d AND @amount > 0 AND @ok AND @ratio < 1 AND @missing IS NULL "
        "AND org_slug IN UNNEST(@orgs) AND rows_ingested IN UNNEST(@counts)",
        {"status": "succeeded", "n": 12, "ts": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
         "run_id": "r1", "d": dt.date(2026, 1, 1), "amount": Decimal("1.000000001"), "ok": True, "ratio": 0.5,
         "missing": None, "orgs": ["acme", "beta"], "counts": (1, 2), "unused": "not sent"},
    )
    assert n == 7
    params = _params(fake.queries[0].job_config)
    types = {k: v["parameterType"]["type"] for k, v in params.items()}
    assert types == {"status": "STRING", "n": "INT64", "ts": "TIMESTAMP", "run_id": "STRING", "d": "DATE",
                     "amount": "NUMERIC", "ok": "BOOL", "ratio": "FLOAT64", "missing": "STRING",
                     "orgs": "ARRAY", "counts": "ARRAY"}
    assert params["amount"]["parameterValue"]["value"] == "1.000000001"  # no float rounding
    assert params["d"]["parameterValue"]["value"] == "2026-01-01"
    assert params["ok"]["parameterValue"]["value"] == "true"
    assert params["missing"]["parameterValue"].get("value") is None
    assert params["orgs"]["parameterType"]["arrayType"]["type"] == "STRING"
    assert params["counts"]["parameterType"]["arrayType"]["type"] == "INT64"


def test_execute_without_dml_count_returns_zero_and_errors_are_warehouse_errors(wh, fake):
    assert wh.execute("CREATE SCHEMA IF NOT EXISTS x") == 0
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, error=gexc.BadRequest("Syntax error: x"))
    with pytest.raises(WarehouseError, match="Syntax error"):
        wh.execute("SELEC 1")
    with pytest.raises(WarehouseError, match="mixes types"):
        query_parameter("x", [1, "a"])


def test_query_and_query_arrow_return_rows(wh, fake):
    row = bigquery.Row(("acme", 3), {"org": 0, "n": 1})
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, rows=[row])
    assert wh.query("SELECT org, n FROM t WHERE org = @org", {"org": "acme"}) == [{"org": "acme", "n": 3}]
    assert wh.query_arrow("SELECT org, n FROM t").to_pylist() == [{"org": "acme", "n": 3}]


# -- bulk writes ------------------------------------------------------------------------

START, END = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
OWNER = {"x_org_slug": "acme", "x_pipeline_id": "genai/payg/openai", "x_credential_id": "cred1"}
INGESTED = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.timezone.utc)


def _lineage(day):
    return {**OWNER, "x_pipeline_run_date": day, "x_run_id": "run1", "x_ingested_at": INGESTED,
            "x_ingestion_date": INGESTED.date()}


def _usage_batches(days=(START, END)):
    rows = [{"usage_date": d, "provider": "openai", "model": "gpt-4o", "model_family": "gpt-4o", "project_id": "p1",
             "cloud_account_id": None,
             "service_tier": None, "is_batch": False, "input_tokens": 100 + i, "cached_input_tokens": 0,
             "cache_write_tokens": 0, "cache_write_1h_tokens": None, "output_tokens": 50, "reasoning_tokens": None,
             "request_count": 3,
             **_lineage(d)} for i, d in enumerate(days)]
    schema = schemas.get("genai_usage_daily").arrow_schema()
    # two batches, to check they are streamed into one file
    return [pa.RecordBatch.from_pylist([r], schema=schema) for r in rows], rows


def _cost_batches():
    rows = [{"usage_date": START, "provider": "openai", "project_id": None, "line_item": "tokens", "model": "gpt-4o",
             "token_class": None, "is_batch": None, "amount": Decimal("1234567.123456789"), "currency": "USD", **_lineage(START)}]
    return [pa.RecordBatch.from_pylist(rows, schema=schemas.get("genai_provider_costs_daily").arrow_schema())], rows


def test_replace_slices_loads_parquet_then_one_transaction_and_drops_staging(wh, fake):
    usage, usage_rows = _usage_batches()
    costs, _ = _cost_batches()
    slc = Slice(OWNER, "usage_date", START, END)
    written = wh.replace_slices(DATASET, {"genai_usage_daily": (slc, iter(usage)),
                                          "genai_provider_costs_daily": (slc, iter(costs))})
    assert written == {"genai_usage_daily": 2, "genai_provider_costs_daily": 1}

    # staging tables: same dataset, named after the table, expiring within a day
    created = [t for k, t in fake.calls if k == "create_table"]
    staging_ids = [f"{t.project}.{t.dataset_id}.{t.table_id}" for t in created]
    assert [t.table_id.split("__staging_")[0] for t in created] == ["genai_usage_daily", "genai_provider_costs_daily"]
    assert all(t.dataset_id == DATASET and "__staging_" in t.table_id for t in created)
    for t in created:
        assert dt.timedelta(hours=23) < t.expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=1)

    # Parquet loads with an explicit schema, WRITE_TRUNCATE, NUMERIC kept exact
    assert [ld["destination"] for ld in fake.loads] == staging_ids
    for ld in fake.loads:
        cfg = ld["config"].to_api_repr()["load"]
        assert cfg["sourceFormat"] == "PARQUET" and cfg["writeDisposition"] == "WRITE_TRUNCATE"
        assert cfg["decimalTargetTypes"] == ["NUMERIC"]
        assert "BIGNUMERIC" not in repr(cfg["schema"])
    assert fake.loads[0]["data"].to_pylist() == usage_rows
    amount = fake.loads[1]["data"].schema.field("amount")
    assert amount.type == pa.decimal128(38, 9)
    assert fake.loads[1]["data"].to_pylist()[0]["amount"] == Decimal("1234567.123456789")

    # exactly one script: a transaction holding DELETE + INSERT for every table
    (job,) = fake.queries
    script = job.query
    assert script.startswith("BEGIN TRANSACTION;\n") and script.endswith("\nCOMMIT TRANSACTION;")
    assert script.count("TRANSACTION") == 2  # one transaction; an error makes BigQuery roll it back
    for (table, staging) in zip(["genai_usage_daily", "genai_provider_costs_daily"], staging_ids):
        target = f"`{PROJECT}.{DATASET}.{table}`"
        delete = script.index(f"DELETE FROM {target} WHERE")
        insert = script.index(f"INSERT INTO {target} (")
        assert script.index("BEGIN TRANSACTION;") < delete < insert < script.index("COMMIT TRANSACTION;")
        assert f"FROM `{staging}` WHERE" in script
    # after the INSERT, inside the transaction: the slice must hold exactly the loaded rows
    for i, (table, n) in enumerate([("genai_usage_daily", 2), ("genai_provider_costs_daily", 1)]):
        check = re.search(rf"IF \(SELECT COUNT\(\*\) FROM `{PROJECT}.{DATASET}.{table}` WHERE (.*?)\) != {n} THEN\n"
                          r"  RAISE USING MESSAGE = '([^']*)';\nEND IF;", script)
        assert check and f"@t{i}_slice_start" in check[1] and f"{DATASET}.{table}" in check[2]
        assert script.index(f"INSERT INTO `{PROJECT}.{DATASET}.{table}`") < check.start()
    # each table's slice parameters are separate and typed
    params = _params(job.job_config)
    assert params["t0_slice_start"]["parameterType"]["type"] == "DATE"
    assert params["t0_slice_start"]["parameterValue"]["value"] == "2026-01-01"
    assert params["t1_slice_end"]["parameterValue"]["value"] == "2026-01-02"
    assert {p for p in params if p.startswith("t1_slice_")} == {"t1_slice_0", "t1_slice_1", "t1_slice_2",
                                                                "t1_slice_start", "t1_slice_end"}
    assert set(re.findall(r"(?<!@)@(\w+)", script)) == set(params)

    # staging tables dropped after the transaction
    deleted = [ref for k, ref in fake.calls if k == "delete_table"]
    assert deleted == staging_ids
    assert [k for k, _ in fake.calls].index("delete_table") > [k for k, _ in fake.calls].index("query")


def test_replace_slices_refuses_rows_outside_the_slice_before_loading(wh, fake):
    usage, _ = _usage_batches(days=(START, dt.date(2026, 1, 5)))
    slc = Slice(OWNER, "usage_date", START, END)
    with pytest.raises(WarehouseError, match=r"1 of 2 rows for acme_prod.genai_usage_daily fall outside") as e:
        wh.replace_slices(DATASET, {"genai_usage_daily": (slc, iter(usage))})
    assert "usage_date=2026-01-05" in str(e.value)
    assert not fake.loads and not fake.queries


def test_replace_slices_drops_staging_when_the_transaction_fails(wh, fake):
    fake.responder = lambda sql, config: FakeQueryJob(
        sql, config, error=gexc.BadRequest("Transaction is aborted due to a failure"))
    usage, _ = _usage_batches()
    with pytest.raises(WarehouseError, match="replacing slices in acme_prod failed"):
        wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter(usage))})
    staged = [f"{t.project}.{t.dataset_id}.{t.table_id}" for k, t in fake.calls if k == "create_table"]
    assert len(staged) == 1 and [ref for k, ref in fake.calls if k == "delete_table"] == staged


def test_replace_slices_retries_a_concurrent_update_abort(fake):
    from tests.bigquery_fake import bigquery_error

    wh = BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30, conflict_backoff=0.01)
    errors = [bigquery_error("Transaction is aborted due to concurrent update against table cloudact-test:x.y")]
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, error=errors.pop() if errors else None)
    usage, _ = _usage_batches()
    assert wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter(usage))}) \
        == {"genai_usage_daily": 2}
    assert len(fake.queries) == 2 and fake.queries[0].query == fake.queries[1].query


def test_replace_slices_fences_the_transaction_on_the_lease(wh, fake):
    usage, _ = _usage_batches()
    wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter(usage))},
                      fence=Fence("run1", "tok1"))
    (job,) = fake.queries
    script = job.query
    # the fence is the transaction's first statement, on the runs table, raising unless it held one row
    first = script.split("BEGIN TRANSACTION;\n", 1)[1]
    assert first.startswith(f"UPDATE `{PROJECT}.organizations.org_pipeline_runs` SET lease_token = @fence_token "
                            "WHERE run_id = @fence_run_id AND lease_token = @fence_token AND status = 'running';\n"
                            "IF @@row_count != 1 THEN")
    assert first.index("IF @@row_count") < first.index("DELETE FROM")
    params = _params(job.job_config)
    assert params["fence_run_id"]["parameterValue"]["value"] == "run1"
    assert params["fence_token"]["parameterValue"]["value"] == "tok1"


def test_a_failed_fence_is_lease_lost_and_not_retried(wh, fake):
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, error=gexc.BadRequest(
        "lease lost: the run is no longer running under the lease of this job; nothing was written"))
    usage, _ = _usage_batches()
    with pytest.raises(LeaseLost):
        wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter(usage))},
                          fence=Fence("run1", "tok1"))
    assert len(fake.queries) == 1
    with pytest.raises(LeaseLost):
        wh.call_procedure(DATASET, "sp_genai_1_consolidate_usage_daily",
                          {n: "2026-01-01" for n in procs.PARAM_NAMES}, fence=Fence("run1", "tok1"))
    assert _params(fake.queries[-1].job_config)["lease_token"]["parameterValue"]["value"] == "tok1"


def test_replace_slices_with_no_rows_only_deletes_the_slice(wh, fake):
    wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter([]))})
    assert not fake.loads and not [c for c in fake.calls if c[0] == "create_table"]
    (job,) = fake.queries
    assert f"DELETE FROM `{PROJECT}.{DATASET}.genai_usage_daily`" in job.query and "INSERT" not in job.query


RUN_ROW = {"run_id": "r1", "org_slug": "acme", "pipeline_id": "genai/payg/openai", "credential_id": "c1",
           "start_date": START, "end_date": END, "status": "queued", "trigger": "api",
           "created_at": INGESTED, "warnings": '["unpriced model x"]', "quality": None}


def test_insert_rows_is_a_parquet_append_load_not_a_streaming_insert(wh, fake):
    wh.insert_rows("organizations", "org_pipeline_runs", [RUN_ROW])
    (ld,) = fake.loads
    assert ld["destination"] == f"{PROJECT}.organizations.org_pipeline_runs"
    cfg = ld["config"].to_api_repr()["load"]
    assert cfg["sourceFormat"] == "PARQUET" and cfg["writeDisposition"] == "WRITE_APPEND"
    assert {f["name"]: f["type"] for f in cfg["schema"]["fields"]}["warnings"] == "JSON"
    got = ld["data"].to_pylist()[0]
    assert got["run_id"] == "r1" and got["created_at"] == INGESTED and got["start_date"] == START
    assert ld["data"].schema.field("warnings").type == pa.json_(pa.string())  # Parquet JSON logical type
    assert not hasattr(fake, "insert_rows_json")


# -- procedures -----------------------------------------------------------------------------


def test_install_and_call_procedures(wh, fake):
    names = wh.install_procedures(DATASET)
    assert names == sorted(procs.all_procedures())
    assert [j.query for j in fake.queries] == [procs.get(n).bigquery_ddl(PROJECT, DATASET) for n in names]

    name = names[0]
    wh.call_procedure(DATASET, name, {"org_slug": "acme", "pipeline_id": "genai/payg/openai", "credential_id": "c1",
                                      "run_id": "r1", "start_date": "2026-01-01", "end_date": END})
    call = fake.queries[-1]
    assert call.query == (f"CALL `{PROJECT}.{DATASET}.{name}`(@org_slug, @pipeline_id, @credential_id, @run_id, "
                          "@start_date, @end_date, @lease_token)")
    params = _params(call.job_config)
    assert {k: v["parameterType"]["type"] for k, v in params.items()} == dict((*procs.PARAMS, procs.FENCE_ARG))
    assert params["lease_token"]["parameterValue"].get("value") is None  # no fence: the procedure skips it
    assert params["start_date"]["parameterValue"]["value"] == "2026-01-01"
    assert params["end_date"]["parameterValue"]["value"] == "2026-01-02"

    with pytest.raises(WarehouseError, match="missing parameters"):
        wh.call_procedure(DATASET, name, {"org_slug": "acme"})
    with pytest.raises(KeyError):
        wh.call_procedure(DATASET, "sp_nope", {})
    fake.responder = lambda sql, config: FakeQueryJob(sql, config, error=gexc.BadRequest("division by zero"))
    with pytest.raises(WarehouseError, match=f"{name} failed on {DATASET}.*division by zero"):
        wh.call_procedure(DATASET, name, {n: "2026-01-01" for n in procs.PARAM_NAMES})


# -- client construction ----------------------------------------------------------------


def test_client_honours_bigquery_emulator_host(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050")
    client = make_client("local-proj", "europe-west3")
    assert client._connection.API_BASE_URL == "http://127.0.0.1:9050"
    assert isinstance(client._credentials, AnonymousCredentials)
    assert client.project == "local-proj" and client.location == "europe-west3"
    wh = BigQueryWarehouse("local-proj")  # emulator: short defaults
    assert wh.retry_deadline <= 10 and wh.job_timeout <= 60
    wh.close()


def test_replace_slices_casts_batches_to_the_table_schema_and_checks_the_loaded_count(wh, fake):
    _, rows = _usage_batches()
    loose = pa.Table.from_pylist(rows)  # inferred types: int64 counts, no NOT NULL, column order as given
    loose = loose.select(list(reversed(loose.column_names)))
    wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), loose.to_batches())})
    (ld,) = fake.loads
    assert ld["data"].schema.names == schemas.get("genai_usage_daily").names
    assert ld["data"].to_pylist() == rows

    real_load = fake.load_table_from_file

    def short_load(*args, **kwargs):  # BigQuery reports one row fewer than the file holds
        job = real_load(*args, **kwargs)
        job.output_rows -= 1
        return job

    fake.load_table_from_file = short_load
    with pytest.raises(WarehouseError, match="loaded 1 rows into .*__staging_.*, expected 2"):
        wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), loose.to_batches())})
    assert len(fake.queries) == 1  # no transaction for the failed write
    created = [f"{t.project}.{t.dataset_id}.{t.table_id}" for k, t in fake.calls if k == "create_table"]
    assert [ref for k, ref in fake.calls if k == "delete_table"] == created  # both runs' staging dropped


# -- the deployment's location ------------------------------------------------------------------


def test_the_location_comes_from_the_deployment_for_datasets_queries_and_loads(fake, monkeypatch):
    from shared.config import settings
    from shared.warehouse import open_warehouse

    monkeypatch.delenv("CLOUDACT_BIGQUERY_LOCATION", raising=False)
    assert settings().bigquery_location == "US"
    monkeypatch.setenv("CLOUDACT_BIGQUERY_LOCATION", "europe-west3")
    wh = BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30)
    wh.ensure_dataset(DATASET)
    (_, ds), = fake.calls
    assert ds.location == "europe-west3"
    wh.query("SELECT 1")
    usage, _ = _usage_batches()
    wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), iter(usage))})
    wh.insert_rows("organizations", "org_pipeline_runs", [RUN_ROW])
    assert {j.location for j in fake.queries} == {"europe-west3"} and len(fake.queries) == 2
    assert {ld["location"] for ld in fake.loads} == {"europe-west3"} and len(fake.loads) == 2

    # what the runtimes open: the client's default location is the deployment's too
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050")
    monkeypatch.setenv("CLOUDACT_BACKEND", "gcp")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local-proj")
    opened = open_warehouse()
    assert opened.location == "europe-west3" and opened.client.location == "europe-west3"
    opened.close()

    monkeypatch.setenv("CLOUDACT_BIGQUERY_LOCATION", "US; DROP")
    with pytest.raises(ValueError, match="CLOUDACT_BIGQUERY_LOCATION"):
        settings()


def test_a_dataset_made_in_another_location_is_refused_with_the_setting_named(fake):
    def existing(dataset, exists_ok=False, **kw):  # exists_ok: BigQuery answers with the dataset as it is
        made = bigquery.Dataset(dataset.reference)
        made.location = "US"
        return made

    fake.create_dataset = existing
    wh = BigQueryWarehouse(PROJECT, client=fake, location="EU", retry_deadline=5, job_timeout=30)
    with pytest.raises(WarehouseError, match="is in location US.*runs its BigQuery jobs in EU.*CLOUDACT_BIGQUERY_LOCATION"):
        wh.ensure_dataset(DATASET)
    BigQueryWarehouse(PROJECT, client=fake, location="us", retry_deadline=5, job_timeout=30).ensure_dataset(DATASET)


# -- staging in bounded chunks --------------------------------------------------------------------


def _many_batches(n_batches: int, rows_per_batch: int, produced: list[int], outside_at: int | None = None):
    """A lazily produced stream of genai_usage_daily batches; `produced` holds the count of rows handed out."""
    schema = schemas.get("genai_usage_daily").arrow_schema()
    template = _usage_batches()[1][0]
    for b in range(n_batches):
        day = dt.date(2026, 1, 9) if b == outside_at else START
        rows = [{**template, "usage_date": day, "x_pipeline_run_date": day, "model": f"m-{b}-{i}",
                 "input_tokens": b * rows_per_batch + i} for i in range(rows_per_batch)]
        produced[0] += rows_per_batch
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


def _staged_chunks(monkeypatch, fake, chunk_bytes, n_batches=60, rows_per_batch=10, row_group=50):
    import shared.warehouse.bigquery as bqmod

    monkeypatch.setattr(bqmod, "_ROW_GROUP_ROWS", row_group)
    produced = [0]
    real_load = fake.load_table_from_file

    def load(*args, **kwargs):  # how much of the stream had been read when this chunk was loaded
        job = real_load(*args, **kwargs)
        fake.loads[-1]["produced"] = produced[0]
        return job

    fake.load_table_from_file = load
    wh = BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30, staging_chunk_bytes=chunk_bytes)
    written = wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END),
                                                                _many_batches(n_batches, rows_per_batch, produced))})
    return written, list(fake.loads)


def _row_groups(meta) -> list[tuple[int, int]]:
    """(rows, bytes written) of each row group of a Parquet file."""
    return [(meta.row_group(g).num_rows,
             sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns)))
            for g in range(meta.num_row_groups)]


def test_a_big_slice_stages_one_bounded_chunk_at_a_time_and_replaces_in_one_transaction(monkeypatch):
    fake = FakeClient()
    limit = 5_000
    written, loads = _staged_chunks(monkeypatch, fake, chunk_bytes=limit)  # 600 rows, 10 per batch, groups of 50
    assert written == {"genai_usage_daily": 600}
    assert len(loads) >= 3, [ld["bytes"] for ld in loads]
    loaded = 0
    for i, ld in enumerate(loads):
        # only the chunk being loaded exists ...
        assert ld["staged_files"] == ["genai_usage_daily.parquet"]
        # ... and it was closed by the first row group that took it to the limit (the last one may be short):
        # a chunk is at most the limit plus one row group (of at most 50 + 9 rows) plus its footer
        groups = _row_groups(ld["meta"])
        assert all(rows < 60 for rows, _ in groups)
        assert 4 + sum(b for _, b in groups[:-1]) < limit  # 4: the file's leading magic bytes
        assert 4 + sum(b for _, b in groups) >= limit or i == len(loads) - 1
        loaded += ld["data"].num_rows
        # the stream is read as chunks are loaded, not first held whole: at most one row group ahead
        assert ld["produced"] - loaded < 60
    assert loaded == 600

    # one staging table: truncated by the first chunk, appended by the rest, then one transaction
    (staging,) = {ld["destination"] for ld in loads}
    assert [c for c in fake.calls if c[0] == "create_table"][0][1].table_id in staging
    dispositions = [ld["config"].to_api_repr()["load"]["writeDisposition"] for ld in loads]
    assert dispositions == ["WRITE_TRUNCATE"] + ["WRITE_APPEND"] * (len(loads) - 1)
    got = pa.concat_tables([ld["data"] for ld in loads])
    assert sorted(got.column("input_tokens").to_pylist()) == list(range(600))
    (job,) = fake.queries
    assert job.query.count("DELETE FROM") == 1 and job.query.count("INSERT INTO") == 1
    assert ") != 600 THEN" in job.query
    assert [ref for k, ref in fake.calls if k == "delete_table"] == [staging]


def test_rows_outside_the_slice_in_a_later_chunk_write_nothing(monkeypatch, fake):
    import shared.warehouse.bigquery as bqmod

    monkeypatch.setattr(bqmod, "_ROW_GROUP_ROWS", 50)
    produced = [0]
    wh = BigQueryWarehouse(PROJECT, client=fake, retry_deadline=5, job_timeout=30, staging_chunk_bytes=1)
    stream = _many_batches(60, 10, produced, outside_at=37)
    with pytest.raises(WarehouseError, match=r"10 of 600 rows for acme_prod.genai_usage_daily fall outside") as e:
        wh.replace_slices(DATASET, {"genai_usage_daily": (Slice(OWNER, "usage_date", START, END), stream)})
    assert "usage_date=2026-01-09" in str(e.value)
    assert produced[0] == 600  # the whole stream was counted ...
    assert len(fake.loads) == 7  # ... but nothing staged from the first bad batch on (its row group: 350-399)
    assert not fake.queries, "no transaction: the slice is untouched"
    created = [f"{t.project}.{t.dataset_id}.{t.table_id}" for k, t in fake.calls if k == "create_table"]
    assert [ref for k, ref in fake.calls if k == "delete_table"] == created


def test_source_totals_are_summed_in_the_transaction_that_writes_the_raw_rows(wh, fake):
    """A raw table's cloud_source_totals slice is replaced by the same script, after the raw slice was written:
    its declared SELECT reads that slice of the raw table, and the lineage is the run's."""
    from shared import source_totals
    from shared.lineage import Lineage
    from shared.naming import table_ref

    owner = {"x_org_slug": "acme", "x_pipeline_id": "cloud/aws/cost/billing", "x_credential_id": "cred1"}
    lineage = Lineage("acme", owner["x_pipeline_id"], "cred1", "run1", INGESTED)
    rows = [{"usage_date": d, "usage_start_time": dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc),
             "billing_period_start": dt.date(2026, 1, 1), "payer_account_id": "111", "line_item_type": "Usage",
             "unblended_cost": Decimal(cost), "currency": "USD"} for d, cost in ((START, "1.000000001"), (END, "2"))]
    raw = "aws_billing_raw"
    plain = schemas.get(raw).arrow_schema(include_lineage=False)
    batch = lineage.stamp(pa.RecordBatch.from_pylist(rows, schema=plain), "usage_date")
    slc = Slice(owner, "usage_date", START, END)
    totals = source_totals.replacement({raw: (table_ref(DATASET, raw), slc)}, lineage)
    fake.responder = lambda sql, config: FakeQueryJob(
        sql, config, rows=[bigquery.Row((2,), {"n": 0})] if sql.startswith("SELECT COUNT(*)") else ())
    # the totals first in the mapping: the backend still writes them after the raw rows they read
    written = wh.replace_slices(DATASET, {source_totals.TABLE: totals, raw: (slc, iter([batch]))})
    assert written == {raw: 2, source_totals.TABLE: 2}

    script, count = (job.query for job in fake.queries)
    target = f"`{PROJECT}.{DATASET}.{source_totals.TABLE}`"
    raw_target = f"`{PROJECT}.{DATASET}.{raw}`"
    order = [script.index(s) for s in (f"DELETE FROM {raw_target}", f"INSERT INTO {raw_target}",
                                       f"DELETE FROM {target}", f"INSERT INTO {target} (")]
    assert order == sorted(order) and script.endswith("\nCOMMIT TRANSACTION;") and script.count("TRANSACTION") == 2
    insert = script[order[-1]:script.index(";", order[-1])]
    assert "SUM(unblended_cost) AS source_cost" in insert and f"FROM `{DATASET}.{raw}` WHERE" in insert
    [parsed] = sqlglot.parse(insert, read="bigquery", error_level=ErrorLevel.RAISE)
    assert isinstance(parsed, exp.Insert)
    assert [c.name for c in parsed.this.expressions] == schemas.get(source_totals.TABLE).names
    params = _params(fake.queries[0].job_config)
    assert set(re.findall(r"(?<!@)@(\w+)", script)) == set(params)
    assert params["t1_x_ingested_at"]["parameterType"]["type"] == "TIMESTAMP"
    assert params["t1_r0_slice_start"]["parameterValue"]["value"] == START.isoformat()
    assert params["t1_x_run_id"]["parameterValue"]["value"] == "run1"
    assert count.startswith(f"SELECT COUNT(*) AS n FROM {target} WHERE")  # counted once committed
