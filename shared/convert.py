"""After an ingest: run the pipeline's procedure chain, then check and record the result."""
from __future__ import annotations

import datetime as dt
from typing import Any

from shared import registry, runs
from shared.logs import for_run
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


def convert(event: dict[str, Any]) -> str:
    """Handle one completion event. Returns what happened (for logs and tests)."""
    from shared import focus, runtime

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
    dataset = org_dataset(org)
    params = {
        "org_slug": org, "pipeline_id": pipeline_id, "credential_id": run["credential_id"], "run_id": run_id,
        "start_date": run["start_date"], "end_date": run["end_date"],
    }
    warnings = list(runs.public_view(run)["warnings"])
    try:
        pipeline = registry.get(pipeline_id)
        for proc in pipeline.procedures:
            log.info("calling %s", proc)
            wh.call_procedure(dataset, proc, params)
        if pipeline.category == "genai":
            warnings += _unpriced_warnings(wh, dataset, params)
        where = ("x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id "
                 "AND ChargePeriodStart >= TIMESTAMP(@start_date) "
                 "AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))")
        report = focus.check(wh, dataset, where, params)
        quality = {"focus_rows_checked": report.rows_checked, "focus_violations": report.violations,
                   "checked_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    except Exception as e:  # noqa: BLE001 - the run must end in a recorded state
        from jobs.runner import readable

        log.exception("conversion failed")
        runs.finish(wh, run_id, "failed", error=f"conversion failed: {readable(e)}", warnings=warnings)
        return "failed"
    if not report.ok:
        runs.finish(wh, run_id, "failed", error=f"FOCUS 1.3 quality gate failed: {report.summary()}",
                    rows_converted=report.rows_checked, warnings=warnings, quality=quality)
        return "failed"
    runs.finish(wh, run_id, "succeeded", rows_converted=report.rows_checked, warnings=warnings, quality=quality)
    log.info("converted %d FOCUS rows", report.rows_checked)
    return "succeeded"
