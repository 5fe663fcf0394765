"""One job execution: extract from the provider, land the run's slice, publish completion.

The same code runs in a Cloud Run job (`python -m jobs run ...`) and in-process locally.
"""
from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from typing import Any

from jobs.base import ExtractContext, ExtractError
from shared import credential_specs, inputs, lifecycle, registry, runs, schemas, source_totals
from shared.bus.base import TOPIC_RUN_COMPLETED
from shared.errors import readable
from shared.lineage import Lineage
from shared.logs import for_run
from shared.naming import org_dataset, table_ref
from shared.http import scrub_text
from shared.secrets import CredentialStore
from shared.warehouse.base import LeaseLost, NativeScan, Slice


def _date(v) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


class Progress:
    """What a run has done so far, as `cloudact.progress` records (phase, files, rows): at each phase and at most
    every `every` seconds while reading. The CLI shows the latest as its status line; the log file keeps them."""

    logger = logging.getLogger("cloudact.progress")

    def __init__(self, context: dict, every: float = 1.0):
        self.context, self.every = context, every
        self.phase_name, self.files, self.rows, self._last = "", 0, 0, 0.0

    def phase(self, name: str) -> None:
        self.phase_name, self.files, self.rows = name, 0, 0
        self._emit()

    def add(self, rows: int = 0, files: int = 0) -> None:
        self.rows, self.files = self.rows + rows, self.files + files
        if time.monotonic() - self._last >= self.every:
            self._emit()

    def _emit(self) -> None:
        self._last = time.monotonic()
        counts = ", ".join(x for x in (f"{self.files:,} file(s)" if self.files else "",
                                       f"{self.rows:,} rows so far" if self.rows else "") if x)
        self.logger.info("%s%s", self.phase_name, f": {counts}" if counts else "",
                         extra={**self.context, "phase": self.phase_name, "files": self.files, "rows": self.rows})


def land(wh, pipeline, ctx: ExtractContext, ingested_at: dt.datetime | None = None,
         progress: Progress | None = None) -> dict[str, int]:
    """Extract the run's slice and replace it in every raw table of the pipeline, and the source totals of those
    that have them (shared.source_totals), in one transaction. Returns rows written per table. Inside a run
    scope (lifecycle.working) every batch is a checkpoint and the transaction is fenced on the run's lease.
    An extractor may define `after_landing(ctx, landed)`, called once the slice is written, with `landed(table,
    select)` running a SELECT over `{rows}`, the run's slice of that table (for warnings about what landed)."""
    scope = lifecycle.current()
    extractor = importlib.import_module(f"jobs.{pipeline.job}")
    produced = extractor.extract(ctx)
    unknown = set(produced) - set(pipeline.raw_tables) - set(pipeline.run_tables)
    if unknown:
        raise ExtractError(f"extractor wrote tables not registered for {pipeline.path}: {sorted(unknown)}")
    lineage = Lineage(ctx.org_slug, pipeline.path, ctx.credential_id, ctx.run_id,
                      ingested_at or dt.datetime.now(dt.UTC))
    owner = {"x_org_slug": ctx.org_slug, "x_pipeline_id": pipeline.path, "x_credential_id": ctx.credential_id}
    dataset = org_dataset(ctx.org_slug)

    def stamped(rows, date_column=pipeline.date_column):
        if isinstance(rows, NativeScan):  # read by the warehouse's own engine, or as batches off the thread
            return rows.stamped(lineage, date_column, on_part=progress.add if progress is not None else None)
        return (lineage.stamp(b, date_column) for b in checkpointed(rows))

    def checkpointed(rows):
        for b in rows:
            if scope is not None:
                scope.checkpoint(f"reading {pipeline.provider} data for {pipeline.path}")
            if progress is not None:
                progress.add(rows=b.num_rows)
            yield b

    raw_slice = Slice(owner, pipeline.date_column, ctx.start_date, ctx.end_date)
    writes = {table: (raw_slice, stamped(produced.get(table, []))) for table in pipeline.raw_tables}
    totals = source_totals.replacement({t: (table_ref(dataset, t), raw_slice) for t in pipeline.raw_tables},
                                       lineage)
    if totals is not None:
        writes[source_totals.TABLE] = totals
    for table in pipeline.run_tables:  # this run's own rows, whatever their dates (a redelivered job replaces them)
        day = schemas.get(table).time_partitioning["field"]
        writes[table] = (Slice({**owner, "x_run_id": ctx.run_id}, day, inputs.MIN_DATE, inputs.MAX_DATE),
                         stamped(produced.get(table, []), day))
    counts = wh.replace_slices(dataset, writes, fence=scope.fence if scope else None)
    after = getattr(extractor, "after_landing", None)
    if after is not None:
        def landed(table: str, select: str) -> list[dict[str, Any]]:
            rows, params = raw_slice.rows_sql(table_ref(dataset, table))
            return wh.query(select.replace("{rows}", rows), params)
        after(ctx, landed)
    return counts


def run_job(request: dict[str, Any]) -> dict[str, Any]:
    from shared import runtime

    rt = runtime.get()
    wh = rt.warehouse
    run_id, org, pipeline_id = request["run_id"], request["org_slug"], request["pipeline_id"]
    log = for_run(org, pipeline_id, run_id)
    token, lease_s = runs.new_token(), lifecycle.lease_seconds()
    if not runs.mark_running(wh, run_id, token, lease_s):
        log.info("run is not queued any more (duplicate dispatch, cancelled or swept); ignored")
        return {"status": "duplicate"}
    start, end = _date(request["start_date"]), _date(request["end_date"])
    ctx, secrets = None, []
    with lifecycle.working(runs.holding(wh, run_id, org, token, lease_s)):
        try:
            pipeline = registry.get(pipeline_id)
            credential = (
                CredentialStore(wh, rt.settings).load(org, pipeline.credential, request["credential_id"])
                if pipeline.needs_credential else {}
            )
            secrets = credential_specs.secret_values(pipeline.credential, credential)
            ctx = ExtractContext(org_slug=org, pipeline_id=pipeline_id, credential_id=request["credential_id"],
                                 run_id=run_id, start_date=start, end_date=end, credential=credential, log=log)
            log.info("extracting %s to %s", start, end)
            progress = Progress(log.extra)
            progress.phase(f"reading {pipeline.provider} data for {start}..{end}")
            counts = land(wh, pipeline, ctx, progress=progress)
            total = sum(counts.values())
            if not any(counts.get(t) for t in pipeline.raw_tables):
                # succeeding quietly with nothing is how a wrong source folder, bucket or date range looks
                ctx.warn(f"the run landed 0 rows for {start}..{end}: the source has no {pipeline.provider} data "
                         "for these dates (check the dates and what the credential points at)")
            progress.phase(f"landed {total:,} rows; converting to FOCUS")
            runs.record_ingest(wh, run_id, token, total, [scrub_text(w, secrets) for w in ctx.warnings], lease_s)
            log.info("landed %s", counts)
        except (lifecycle.RunStopped, LeaseLost) as e:
            # cancelled or taken: the run's state is already final and nothing was written
            log.warning("job stopped without writing: %s", e)
            return {"status": "stopped", "reason": str(e)}
        except Exception as e:
            log.exception("run failed during ingest")
            error = readable(e, secrets)
            warnings = [scrub_text(w, secrets) for w in ctx.warnings] if ctx else None
            runs.finish(wh, run_id, "failed", error=error, warnings=warnings)
            return {"status": "failed", "error": error}
    event = {**{k: request[k] for k in ("run_id", "org_slug", "pipeline_id", "credential_id")},
             "start_date": start.isoformat(), "end_date": end.isoformat(), "status": "ingested",
             "rows_ingested": total, "tables": counts, "lease_token": token}
    rt.bus.publish(TOPIC_RUN_COMPLETED, event, {"org": org, "pipeline": pipeline_id})
    return {"status": "ingested", "rows": counts}


def wire() -> None:
    """Wire the embedded runtime: its launcher runs `run_job` in process and its bus delivers to the Cloud Functions."""
    from functions.main import HANDLERS
    from shared import runtime

    runtime.wire(runtime.Wiring(run_job, HANDLERS))
