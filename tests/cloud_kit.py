"""Cloud billing test helpers: land a slice through the runner's own landing step, convert, total."""
from __future__ import annotations

import importlib

import pyarrow as pa

from jobs.base import ExtractContext
from jobs.runner import land
from shared import registry, schemas, source_totals
from shared.lineage import Lineage
from shared.naming import org_dataset
from shared.warehouse.duckdb import DuckDBWarehouse


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
