"""Cloud billing test helpers: land a slice through the runner's own landing step, convert, total."""
from __future__ import annotations

from jobs.base import ExtractContext
from jobs.runner import land
from shared import registry
from shared.naming import org_dataset


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
