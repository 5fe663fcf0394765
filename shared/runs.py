"""Pipeline run records (organizations.org_pipeline_runs) and their state machine.

queued -> running -> succeeded | failed | cancelled (a queued run can also be failed or cancelled).
A terminal run never changes again, which is what makes a redelivered completion event harmless.

A running run holds a lease: a token and an expiry its job renews (shared/lifecycle.py). `sweep`
ends runs whose job is gone (lease expired, or queued too long) so their slice and quota are free;
a job's final writes are fenced on its token (shared.warehouse.base.Fence), so once its run was
taken from it, it never writes again.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from shared import lifecycle
from shared.warehouse.base import Warehouse

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
_T = "`organizations.org_pipeline_runs`"
LEASE_EXPIRED = "the job stopped without finishing: lease expired at"


class SliceBusy(RuntimeError):
    """A run for the same org, pipeline, credential and overlapping dates is queued or running."""


class UnknownRun(LookupError):
    pass


class RunFinished(RuntimeError):
    """The run already ended (succeeded or failed); there is nothing to cancel."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _overlaps(t: str) -> str:
    """Run `t` is active and holds a slice overlapping the one in @org, @pipeline, @cred, @start, @end."""
    return (f"{t}.org_slug = @org AND {t}.pipeline_id = @pipeline AND {t}.credential_id = @cred "
            f"AND {t}.status IN ('queued', 'running') AND {t}.start_date <= @end AND {t}.end_date >= @start")


def claim(wh: Warehouse, *, org_slug: str, pipeline_id: str, credential_id: str, start_date: dt.date,
          end_date: dt.date, trigger: str, guard: str = "", guard_params: dict[str, Any] | None = None,
          now: dt.datetime | None = None) -> str | None:
    """Queue a run unless an active run holds an overlapping slice or `guard` refuses it; its id, or None.

    `guard` holds extra `AND ...` predicates over the runs table (the plan's counts, shared/plans.py).
    Check and insert are one INSERT ... SELECT ... WHERE NOT EXISTS statement, run as the warehouse's
    claim (Warehouse.claim): atomic on DuckDB, serialized with the org's other claims on BigQuery.
    The sweep runs first, so a dead job's run holds neither the slice nor the quota.
    """
    sweep(wh, org_slug=org_slug)
    run_id = f"run_{uuid.uuid4().hex}"
    claimed = wh.claim(
        org_slug,
        f"""INSERT INTO {_T} (run_id, org_slug, pipeline_id, credential_id, start_date, end_date, status, `trigger`, created_at)
        SELECT @run_id, @org, @pipeline, @cred, @start, @end, 'queued', @trigger, @now
        FROM (SELECT 1 AS one) AS single
        WHERE NOT EXISTS (SELECT 1 FROM {_T} AS r WHERE {_overlaps("r")})
        {guard}""",
        {"run_id": run_id, "org": org_slug, "pipeline": pipeline_id, "cred": credential_id,
         "start": start_date, "end": end_date, "trigger": trigger, "now": now or _now(), **(guard_params or {})},
    )
    return run_id if claimed else None


def busy_with(wh: Warehouse, *, org_slug: str, pipeline_id: str, credential_id: str, start_date: dt.date,
              end_date: dt.date) -> str | None:
    """The id of an active run holding a slice that overlaps this one, if any."""
    rows = wh.query(f"SELECT r.run_id FROM {_T} AS r WHERE {_overlaps('r')} LIMIT 1",
                    {"org": org_slug, "pipeline": pipeline_id, "cred": credential_id,
                     "start": start_date, "end": end_date})
    return rows[0]["run_id"] if rows else None


def slice_busy(run_id: str | None, pipeline_id: str) -> SliceBusy:
    return SliceBusy(f"{run_id or 'another run'} is already queued or running for {pipeline_id} over overlapping "
                     "dates; wait for it to finish (GET its status) and try again")


def create_run(wh: Warehouse, *, org_slug: str, pipeline_id: str, credential_id: str,
               start_date: dt.date, end_date: dt.date, trigger: str) -> str:
    """Queue a run unless an active run holds an overlapping slice (then SliceBusy); see `claim`."""
    slc = {"org_slug": org_slug, "pipeline_id": pipeline_id, "credential_id": credential_id,
           "start_date": start_date, "end_date": end_date}
    run_id = claim(wh, **slc, trigger=trigger)
    if run_id is None:
        raise slice_busy(busy_with(wh, **slc), pipeline_id)
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


def new_token() -> str:
    return uuid.uuid4().hex


def mark_running(wh: Warehouse, run_id: str, token: str, lease_s: float) -> bool:
    """queued -> running under lease `token`. False if the run is not queued (a duplicate dispatch,
    or it was cancelled or failed while it waited)."""
    now = _now()
    return wh.execute(
        f"UPDATE {_T} SET status = 'running', started_at = @now, lease_token = @token, lease_expires_at = @until "
        "WHERE run_id = @run_id AND status = 'queued'",
        {"run_id": run_id, "now": now, "token": token, "until": now + dt.timedelta(seconds=lease_s)},
    ) == 1


def renew_lease(wh: Warehouse, run_id: str, token: str, lease_s: float) -> str | None:
    """Extend the lease; None when renewed, else why the run is no longer ours (for the job's stop flag)."""
    now = _now()
    if wh.execute(
        f"UPDATE {_T} SET lease_expires_at = @until WHERE run_id = @run_id AND lease_token = @token "
        "AND status = 'running'",
        {"run_id": run_id, "token": token, "until": now + dt.timedelta(seconds=lease_s)},
    ) == 1:
        return None
    rows = wh.query(f"SELECT status FROM {_T} WHERE run_id = @run_id", {"run_id": run_id})
    status = rows[0]["status"] if rows else "gone"
    return "cancelled" if status == "cancelled" else f"the run was taken from this job (it is {status})"


def holding(wh: Warehouse, run_id: str, org_slug: str, token: str, lease_s: float) -> lifecycle.Scope:
    """The scope of a job (or conversion) working on this run under lease `token`: its keeper renews
    the lease here, and its deadline is CLOUDACT_RUN_DEADLINE_S from now."""
    return lifecycle.Scope(run_id, org_slug, token, lease_s=lease_s, deadline_s=lifecycle.deadline_seconds(),
                           renew=lambda: renew_lease(wh, run_id, token, lease_s))


def record_ingest(wh: Warehouse, run_id: str, token: str, rows_ingested: int, warnings: list[str],
                  lease_s: float) -> None:
    """The landed row count, with a fresh lease for the hand-over to the conversion."""
    wh.execute(
        f"UPDATE {_T} SET rows_ingested = @n, warnings = PARSE_JSON(@w), lease_expires_at = @until "
        "WHERE run_id = @run_id AND lease_token = @token AND status = 'running'",
        {"run_id": run_id, "token": token, "n": rows_ingested, "w": json.dumps(warnings),
         "until": _now() + dt.timedelta(seconds=lease_s)},
    )


def cancel(wh: Warehouse, org_slug: str, run_id: str, by: str) -> dict[str, Any]:
    """queued|running -> cancelled; returns the run. A job working on it in this process is stopped at
    once; one elsewhere notices at its next lease renewal. Cancelling a cancelled run is a no-op;
    a succeeded or failed one raises RunFinished, an unknown one UnknownRun."""
    # Stop first: on the embedded warehouse the UPDATE waits for the job's own write, which stops
    # at its next checkpoint (stop_local only touches this org's runs).
    lifecycle.stop_local(run_id, org_slug, "cancelled")
    now = _now()
    wh.execute(
        f"UPDATE {_T} SET status = 'cancelled', finished_at = @now, error = @error "
        "WHERE org_slug = @org AND run_id = @run_id AND status IN ('queued', 'running')",
        {"org": org_slug, "run_id": run_id, "now": now,
         "error": f"cancelled ({by}) at {now:%Y-%m-%d %H:%M:%S} UTC; nothing more is written for this run"},
    )
    run = get_run(wh, org_slug, run_id)
    if run["status"] != "cancelled":
        raise RunFinished(f"run {run_id} already {run['status']}; only queued or running runs can be cancelled")
    return run


def sweep(wh: Warehouse, *, org_slug: str | None = None, now: dt.datetime | None = None,
          queued_before: dt.datetime | None = None) -> list[str]:
    """End the runs whose job is gone: `failed`, with a message saying why. Returns their ids.

    - running, and the lease expired (or, for runs from before leases, started a lease ago without one);
    - queued, and no worker started it within CLOUDACT_RUN_QUEUE_TIMEOUT_S (or before `queued_before`:
      `cloudact serve` passes its own start, since only a live server dispatches embedded runs).
    Runs this process still works on or has queued are left alone (lifecycle.alive). Each run is ended
    by its own conditional UPDATE, so a lease renewed meanwhile is never taken.
    """
    now = now or _now()
    lease = dt.timedelta(seconds=lifecycle.lease_seconds())
    queue_timeout = lifecycle.queue_timeout_seconds()
    cutoff = now - dt.timedelta(seconds=queue_timeout)
    if queued_before is not None:
        cutoff = max(cutoff, queued_before)
    params = {"now": now, "stale": now - lease, "queued_cutoff": cutoff}
    expired = ("((status = 'running' AND (lease_expires_at < @now OR (lease_expires_at IS NULL AND started_at < @stale)))"
               " OR (status = 'queued' AND created_at < @queued_cutoff))")
    where_org = ""
    if org_slug is not None:
        where_org, params["org"] = "AND org_slug = @org ", org_slug
    rows = wh.query(f"SELECT run_id, status, created_at, lease_expires_at, started_at FROM {_T} "
                    f"WHERE status IN ('queued', 'running') {where_org}AND {expired}", params)
    alive = lifecycle.alive()
    ended = []
    for r in rows:
        if r["run_id"] in alive:
            continue
        if r["status"] == "running":
            at = r["lease_expires_at"] or (r["started_at"] + lease)
            error = (f"{LEASE_EXPIRED} {at:%Y-%m-%d %H:%M:%S} UTC (its job stopped renewing it: the process "
                     "ended or hung). Its slice is free; re-run it")
        elif queued_before is not None and r["created_at"] < queued_before:
            error = ("the run never started: the server that queued it stopped before a worker picked it up. "
                     "Its slice is free; re-run it")
        else:
            error = (f"the run never started: no worker picked it up within {queue_timeout:g} s of "
                     f"{r['created_at']:%Y-%m-%d %H:%M:%S} UTC (CLOUDACT_RUN_QUEUE_TIMEOUT_S). Re-run it")
        if wh.execute(f"UPDATE {_T} SET status = 'failed', finished_at = @now, error = @error "
                      f"WHERE run_id = @run_id AND {expired}", {**params, "run_id": r["run_id"], "error": error}) == 1:
            ended.append(r["run_id"])
    return ended


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
        "lease_expires_at": iso(run.get("lease_expires_at")),
        "rows_ingested": run["rows_ingested"], "rows_converted": run["rows_converted"],
        "warnings": loads(run["warnings"]) or [], "quality": loads(run["quality"]), "error": run["error"],
    }
