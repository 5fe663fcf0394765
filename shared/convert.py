"""After an ingest: run the pipeline's procedure chain, then check and record the result."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from shared import lifecycle, registry, runs, source_totals
from shared.errors import readable
from shared.logs import for_run
from shared.warehouse.base import LeaseLost
from shared.naming import org_dataset, table_ref


def _unpriced_warnings(wh, dataset: str, params: dict[str, Any]) -> list[str]:
    rows = wh.query(
        f"""SELECT provider, model, STRING_AGG(DISTINCT token_class, ', ' ORDER BY token_class) AS classes,
                   SUM(tokens) AS tokens, COUNT(DISTINCT usage_date) AS days
            FROM {table_ref(dataset, 'genai_costs_daily')}
            WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
              AND usage_date BETWEEN @start_date AND @end_date AND price_status = 'unpriced'
            GROUP BY provider, model ORDER BY provider, model""",
        params,
    )
    return [
        f"unpriced model {r['provider']}/{r['model']}: {r['tokens']:,} {r['classes']} tokens over {r['days']} day(s) "
        "have no price in effect and are not costed; add the model to genai_pricing.yml and re-run"
        for r in rows
    ]


def overridden_prices(wh, dataset: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Which negotiated prices the slice used: per override, the rows and tokens it priced and their
    cost at list and at the contracted price (decimal strings, for the run's quality record)."""
    rows = wh.query(
        f"""SELECT override_id, provider, model_family, COUNT(*) AS cost_rows, SUM(tokens) AS tokens,
                   SUM(cost) AS list_cost, SUM(contracted_cost) AS contracted_cost
            FROM {table_ref(dataset, 'genai_costs_daily')}
            WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
              AND usage_date BETWEEN @start_date AND @end_date AND override_id IS NOT NULL
            GROUP BY override_id, provider, model_family ORDER BY override_id, provider, model_family""",
        params,
    )
    return [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in r.items()} for r in rows]


HALF_CENT = Decimal("0.005")


def reconcile_cloud(wh, dataset: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per billing period and currency: what the source held vs the FOCUS BilledCost of the slice."""
    rows = wh.query(
        f"""WITH source AS (
              SELECT billing_period, currency, SUM(source_cost) AS source_cost, SUM(source_rows) AS source_rows
              FROM {table_ref(dataset, source_totals.TABLE)}
              WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
                AND usage_date BETWEEN @start_date AND @end_date
              GROUP BY billing_period, currency),
            focus AS (
              SELECT DATE(BillingPeriodStart) AS billing_period, BillingCurrency AS currency,
                     SUM(BilledCost) AS billed_cost, COUNT(*) AS focus_rows
              FROM {table_ref(dataset, 'cost_data_standard_1_3')}
              WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
                AND ChargePeriodStart >= TIMESTAMP(@start_date)
                AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
              GROUP BY 1, 2)
            SELECT COALESCE(s.billing_period, f.billing_period) AS billing_period,
                   COALESCE(s.currency, f.currency) AS currency, s.source_cost, s.source_rows,
                   f.billed_cost, f.focus_rows
            FROM source AS s FULL OUTER JOIN focus AS f
              ON f.billing_period = s.billing_period AND f.currency = s.currency
            ORDER BY 1, 2""",
        params,
    )
    for r in rows:
        r["difference"] = (r["billed_cost"] or Decimal(0)) - (r["source_cost"] or Decimal(0))
        r["ok"] = abs(r["difference"]) <= HALF_CENT
    return rows


def convert(event: dict[str, Any]) -> str:
    """Handle one completion event. Returns what happened (for logs and tests)."""
    from shared import runtime

    rt = runtime.get()
    wh = rt.warehouse
    run_id, org, pipeline_id = event["run_id"], event["org_slug"], event["pipeline_id"]
    log = for_run(org, pipeline_id, run_id)
    run = runs.get_run(wh, org, run_id)
    if run["status"] in runs.TERMINAL:
        log.info("run already %s; redelivered completion ignored", run["status"])
        return "ignored"
    if event.get("status") != "ingested":
        return "ignored"
    # The conversion carries on under the job's lease (the event names it; older events: the run's own).
    token, lease_s = event.get("lease_token") or run.get("lease_token"), lifecycle.lease_seconds()
    if not token or runs.renew_lease(wh, run_id, token, lease_s) is not None:
        log.info("run is no longer held by the job that ingested it; completion ignored")
        return "ignored"
    with lifecycle.working(runs.holding(wh, run_id, org, token, lease_s)) as scope:
        return _convert(wh, run, scope, log, event.get("tables"))


def converted_none(pipeline, run: dict[str, Any], tables: dict[str, int] | None, converted: int) -> str | None:
    """The warning for a run whose raw rows all vanished in the conversion (a provider the procedures do not
    know, a join that matched nothing): without it the run would end `succeeded` with 0 rows and nothing said.
    A run that landed no raw rows already says so (jobs.runner), so only raw rows count here."""
    landed = (sum(tables.get(t) or 0 for t in pipeline.raw_tables) if tables is not None
              else run.get("rows_ingested") or 0)
    if not landed or converted:
        return None
    return (f"{landed:,} raw rows were ingested for {run['start_date']}..{run['end_date']} but 0 were converted into "
            f"cost_data_standard_1_3: the {pipeline.path} procedures matched none of them (the raw rows are kept; "
            "check that the provider is declared with its facts, then run again)")


def _convert(wh, run: dict[str, Any], scope, log, tables: dict[str, int] | None = None) -> str:
    from shared import focus

    run_id, org, pipeline_id = run["run_id"], run["org_slug"], run["pipeline_id"]
    dataset = org_dataset(org)
    params = {
        "org_slug": org, "pipeline_id": pipeline_id, "credential_id": run["credential_id"], "run_id": run_id,
        "start_date": run["start_date"], "end_date": run["end_date"],
    }
    warnings = list(runs.public_view(run)["warnings"])
    try:
        pipeline = registry.get(pipeline_id)
        for proc in pipeline.procedures:
            scope.checkpoint(f"converting {pipeline_id} ({proc})")
            log.info("calling %s", proc)
            wh.call_procedure(dataset, proc, params, fence=scope.fence)
        if pipeline.category == "genai":
            warnings += _unpriced_warnings(wh, dataset, params)
        where = ("x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id "
                 "AND ChargePeriodStart >= TIMESTAMP(@start_date) "
                 "AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))")
        report = focus.check(wh, dataset, where, params)
        if none := converted_none(pipeline, run, tables, report.rows_checked):
            log.warning(none)
            warnings.append(none)
        quality = {"focus_rows_checked": report.rows_checked, "focus_violations": report.violations,
                   "checked_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        if pipeline.category == "genai":
            quality["price_overrides"] = overridden_prices(wh, dataset, params)
        if "genai_balance_samples" in pipeline.run_tables:
            from shared import balance

            quality["balance_reconciliation"] = balance.reconcile(wh, dataset, params)
        if pipeline.category == "cloud" and source_totals.fed_by(pipeline.raw_tables):
            periods = reconcile_cloud(wh, dataset, params)
            quality["reconciliation"] = [
                {k: (str(v) if isinstance(v, (Decimal, dt.date)) else v) for k, v in p.items()} for p in periods]
    except (lifecycle.RunStopped, LeaseLost) as e:
        log.warning("conversion stopped without writing: %s", e)
        return "stopped"
    except Exception as e:  # noqa: BLE001 - the run must end in a recorded state
        log.exception("conversion failed")
        runs.finish(wh, run_id, "failed", error=f"conversion failed: {readable(e)}", warnings=warnings)
        return "failed"
    if not report.ok:
        runs.finish(wh, run_id, "failed", error=f"FOCUS 1.3 quality gate failed: {report.summary()}",
                    rows_converted=report.rows_checked, warnings=warnings, quality=quality)
        return "failed"
    off = [p for p in quality.get("reconciliation", []) if not p["ok"]]
    if off:
        detail = "; ".join(f"{p['billing_period']} {p['currency']}: source {p['source_cost']} vs FOCUS "
                           f"{p['billed_cost']} (difference {p['difference']})" for p in off)
        runs.finish(wh, run_id, "failed", error=f"reconciliation failed (tolerance half a cent): {detail}",
                    rows_converted=report.rows_checked, warnings=warnings, quality=quality)
        return "failed"
    runs.finish(wh, run_id, "succeeded", rows_converted=report.rows_checked, warnings=warnings, quality=quality)
    log.info("converted %d FOCUS rows", report.rows_checked)
    return "succeeded"
