"""Cloud billing test helpers: run an extractor into Arrow tables, check how it refuses a bad file, land a slice
through the runner's own landing step, convert, total."""
from __future__ import annotations

import gzip
import importlib
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.base import ExtractContext, ExtractError
from jobs.runner import land
from shared import focus, registry, schemas, source_totals
from shared.lineage import Lineage
from shared.naming import org_dataset
from shared.warehouse.duckdb import DuckDBWarehouse


def out_schema(table: str) -> pa.Schema:
    """The Arrow schema the warehouse declares for `table`, without the lineage columns the runner adds."""
    return schemas.get(table).arrow_schema(include_lineage=False)


def dsum(table: pa.Table, col: str) -> Decimal:
    """The exact sum of a column's non-null values."""
    return sum((v for v in table.column(col).to_pylist() if v is not None), Decimal(0))


def assert_refused_naming(run_extract, folder: Path, *words: str) -> None:
    """Extracting the file:// folder is an ExtractError whose message has each of `words` (file, columns, cause)."""
    with pytest.raises(ExtractError) as e:
        run_extract({"source": f"file://{folder}"})
    absent = [w for w in words if w not in str(e.value)]
    assert not absent, f"{e.value!s} does not name {absent}"


def assert_missing_columns_named(run_extract, path: Path, text: str, *columns: str) -> None:
    """A file of `text` at `path` lacking required columns: the run fails naming the file and each of `columns`."""
    path.write_text(text)
    assert_refused_naming(run_extract, path.parent, path.name, *columns)


def assert_truncated_gzip_named(run_extract, path: Path, sample: Path) -> None:
    """`sample` gzipped and cut in half at `path` (a download that stopped midway): the run fails naming the file."""
    packed = gzip.compress(sample.read_bytes())
    path.write_bytes(packed[: len(packed) // 2])
    assert_refused_naming(run_extract, path.parent, path.name, "truncated")


def land_and_convert(wh, pipeline_id: str, credential_id: str, credential: dict, start, end,
                     run_id: str = "run_a") -> dict[str, int]:
    pipeline = registry.get(pipeline_id)
    ctx = ExtractContext("acme", pipeline_id, credential_id, run_id, start, end, credential)
    counts = land(wh, pipeline, ctx)
    params = {"org_slug": "acme", "pipeline_id": pipeline_id, "credential_id": credential_id, "run_id": run_id,
              "start_date": start, "end_date": end}
    for proc in pipeline.procedures:
        wh.call_procedure(org_dataset("acme"), proc, params)
    return counts


def focus_by_period(wh, pipeline_id: str) -> dict:
    rows = wh.query("SELECT DATE(BillingPeriodStart) AS p, COUNT(*) AS n, SUM(BilledCost) AS billed, "
                    "SUM(EffectiveCost) AS effective FROM `acme_prod.cost_data_standard_1_3` "
                    "WHERE x_pipeline_id = @p GROUP BY 1 ORDER BY 1", {"p": pipeline_id})
    return {r["p"]: (r["n"], r["billed"], r["effective"]) for r in rows}


def assert_gate_passes_and_rerun_changes_nothing(wh, pipeline_id: str, rerun) -> None:
    """The FOCUS gate passes on the pipeline's rows, and `rerun()` (the same slice again, another run id) leaves its
    FOCUS rows, billed and effective cost per period, and its source totals as they were."""
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": pipeline_id})
    assert report.ok, report.summary()
    per, src = focus_by_period(wh, pipeline_id), source_by_period(wh, pipeline_id)
    rerun()
    assert focus_by_period(wh, pipeline_id) == per and source_by_period(wh, pipeline_id) == src


def source_by_period(wh, pipeline_id: str) -> dict:
    rows = wh.query("SELECT billing_period AS p, SUM(source_rows) AS n, SUM(source_cost) AS cost "
                    "FROM `acme_prod.cloud_source_totals` WHERE x_pipeline_id = @p GROUP BY 1 ORDER BY 1",
                    {"p": pipeline_id})
    return {r["p"]: (r["n"], r["cost"]) for r in rows}


def extracted(ctx: ExtractContext, raw_table: str, stamped_at=None) -> tuple[pa.Table, pa.Table]:
    """A run of the pipeline's extractor landed through the runner's own landing step on a private in-memory
    warehouse, every table's rows taken as Arrow batches (as by a warehouse other than the embedded one): the
    rows of `raw_table` as the extractor produced them (with the lineage of a run ingested `stamped_at`, when
    given), and the totals the warehouse summed from what it wrote, lineage excluded. Errors and ctx.warnings
    are the run's."""
    pipeline = registry.get(ctx.pipeline_id)
    module = importlib.import_module(f"jobs.{pipeline.job}")
    real, kept = module.extract, {}

    def teed(c):
        return {t: _keeping(rows, kept.setdefault(t, [])) for t, rows in real(c).items()}

    wh = DuckDBWarehouse()
    try:
        dataset = org_dataset(ctx.org_slug)
        wh.ensure_dataset(dataset)
        for t in (*pipeline.raw_tables, *pipeline.run_tables, source_totals.TABLE):
            wh.ensure_table(dataset, schemas.get(t))
        module.extract = teed
        try:
            land(wh, pipeline, ctx, ingested_at=stamped_at)
        finally:
            module.extract = real
        totals = wh.query_arrow(f"SELECT {', '.join(source_totals.COLUMNS)} FROM `{dataset}.{source_totals.TABLE}` "
                                "ORDER BY usage_date, billing_period, provider, currency")
    finally:
        wh.close()
    batches = kept.get(raw_table, [])
    schema = schemas.get(raw_table).arrow_schema(include_lineage=stamped_at is not None)
    if stamped_at is not None:
        lineage = Lineage(ctx.org_slug, ctx.pipeline_id, ctx.credential_id, ctx.run_id, stamped_at)
        batches = [lineage.stamp(b, pipeline.date_column) for b in batches]
        schema = batches[0].schema if batches else schema  # the stamp's own nullability, as a warehouse gets it
    raw = pa.Table.from_batches(batches, schema=schema)
    return raw, pa.Table.from_arrays(totals.columns, schema=schemas.get(source_totals.TABLE).arrow_schema(
        include_lineage=False))


def _keeping(rows, kept: list):
    for b in rows:  # a DuckScan iterated: its Arrow batches
        kept.append(b)
        yield b
