"""Pipeline run records (organizations.org_pipeline_runs) and their state machine.

queued -> running -> succeeded | failed. A terminal run never changes again, which is what makes a
redelivered completion event harmless.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from shared.warehouse.base import Warehouse

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed")
_T = "`organizations.org_pipeline_runs`"


class SliceBusy(RuntimeError):
    """A run for the same org, pipeline, credential and overlapping dates is queued or running."""


class UnknownRun(LookupError):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_run(wh: Warehouse, *, org_slug: str, pipeline_id: str, credential_id: str,
               start_date: dt.date, end_date: dt.date, trigger: str) -> str:
    """Insert a queued run unless an active run holds an overlapping slice (then SliceBusy).

    One INSERT ... SELECT ... WHERE NOT EXISTS statement, so the check and the insert are atomic.
    """
    run_id = f"run_{uuid.uuid4().hex}"
    inserted = wh.execute(
        f"""INSERT INTO {_T} (run_id, org_slug, pipeline_id, credential_id, start_date, end_date, status, `trigger`, created_at)
        SELECT @run_id, @org, @pipeline, @cred, @start, @end, 'queued', @trigger, @now
        FROM (SELECT 1 AS one) AS single
        WHERE NOT EXISTS (
          SELECT 1 FROM {_T} AS r
          WHERE r.org_slug = @org AND r.pipeline_id = @pipeline AND r.credential_id = @cred
            AND r.status IN ('queued', 'running') AND r.start_date <= @end AND r.end_date >= @start)""",
        {"run_id": run_id, "org": org_slug, "pipeline": pipeline_id, "cred": credential_id,
         "start": start_date, "end": end_date, "trigger": trigger, "now": _now()},
    )
    if inserted != 1:
        busy = wh.query(
            f"SELECT run_id FROM {_T} WHERE org_slug = @org AND pipeline_id = @pipeline AND credential_id = @cred "
            "AND status IN ('queued', 'running') AND start_date <= @end AND end_date >= @start",
            {"org": org_slug, "pipeline": pipeline_id, "cred": credential_id, "start": start_date, "end": end_date},
        )
        other = busy[0]["run_id"] if busy else "another run"
        raise SliceBusy(f"{other} is already queued or running for {pipeline_id} over overlapping dates; "
                        "wait for it to finish (GET its status) and try again")
    return run_id


def succeeded_before(wh: Warehouse, org_slug: str, pipeline_id: str, credential_id: str,
                     start_date: dt.date, end_date: dt.date) -> bool:
    """Has a run of exactly this slice already succeeded (for resuming a chunked backfill)?"""
    return bool(wh.query(
        f"SELECT 1 AS one FROM {_T} WHERE org_slug = @org AND pipeline_id = @pipeline AND credential_id = @cred "
        "AND start_date = @start AND end_date = @end AND status = 'succeeded' LIMIT 1",
        {"org": org_slug, "pipeline": pipeline_id, "cred": credential_id, "start": start_date, "end": end_date}))


def get_run(wh: Warehouse, org_slug: str, run_id: str) -> dict[str, Any]:
    rows = wh.query(f"SELECT * FROM {_T} WHERE org_slug = @org AND run_id = @run_id", {"org": org_slug, "run_id": run_id})
    if not rows:
        raise UnknownRun(f"no run {run_id!r} for org {org_slug!r}")
    return rows[0]


def mark_running(wh: Warehouse, run_id: str) -> bool:
    """queued -> running. False if the run is not queued (a duplicate dispatch)."""
    return wh.execute(
        f"UPDATE {_T} SET status = 'running', started_at = @now WHERE run_id = @run_id AND status = 'queued'",
        {"run_id": run_id, "now": _now()},
    ) == 1


def record_ingest(wh: Warehouse, run_id: str, rows_ingested: int, warnings: list[str]) -> None:
    wh.execute(
        f"UPDATE {_T} SET rows_ingested = @n, warnings = PARSE_JSON(@w) WHERE run_id = @run_id AND status = 'running'",
        {"run_id": run_id, "n": rows_ingested, "w": json.dumps(warnings)},
    )


def finish(wh: Warehouse, run_id: str, status: str, *, error: str | None = None, rows_converted: int | None = None,
           warnings: list[str] | None = None, quality: dict | None = None) -> bool:
    """Move a non-terminal run to succeeded/failed. False if it had already ended (redelivery)."""
    assert status in TERMINAL
    sets = ["status = @status", "finished_at = @now", "error = @error"]
    params: dict[str, Any] = {"run_id": run_id, "status": status, "now": _now(), "error": error}
    if rows_converted is not None:
        sets.append("rows_converted = @rows_converted")
        params["rows_converted"] = rows_converted
    if warnings is not None:
        sets.append("warnings = PARSE_JSON(@warnings)")
        params["warnings"] = json.dumps(warnings)
    if quality is not None:
        sets.append("quality = PARSE_JSON(@quality)")
        params["quality"] = json.dumps(quality, default=str)
    return wh.execute(
        f"UPDATE {_T} SET {', '.join(sets)} WHERE run_id = @run_id AND status IN ('queued', 'running')", params
    ) == 1


def list_runs(wh: Warehouse, org_slug: str, limit: int = 20) -> list[dict[str, Any]]:
    return wh.query(
        f"SELECT * FROM {_T} WHERE org_slug = @org ORDER BY created_at DESC LIMIT @limit",
        {"org": org_slug, "limit": limit},
    )


def public_view(run: dict[str, Any]) -> dict[str, Any]:
    """The API-facing record of a run (no internal or lineage fields)."""
    def loads(v):
        return json.loads(v) if isinstance(v, str) else v

    def iso(v):
        return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v

    return {
        "run_id": run["run_id"], "org": run["org_slug"], "pipeline": run["pipeline_id"],
        "credential_id": run["credential_id"], "status": run["status"],
        "start_date": iso(run["start_date"]), "end_date": iso(run["end_date"]), "trigger": run["trigger"],
        "created_at": iso(run["created_at"]), "started_at": iso(run["started_at"]), "finished_at": iso(run["finished_at"]),
        "rows_ingested": run["rows_ingested"], "rows_converted": run["rows_converted"],
        "warnings": loads(run["warnings"]) or [], "quality": loads(run["quality"]), "error": run["error"],
    }
