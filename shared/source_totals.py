"""cloud_source_totals: what a cloud billing source held for the rows a run landed, per usage day, billing period
and currency (shared.convert.reconcile_cloud holds it against the FOCUS BilledCost of the slice).

Each raw table that feeds it declares one SELECT, `schemas/cloud_source_totals/<raw table>.sql` (BigQuery
dialect), over `{rows}`, the run's slice of that table, yielding usage_date, billing_period, provider, currency,
source_rows and source_cost. `replacement` turns the declarations of a pipeline's raw tables into the write of
the totals slice: the warehouse runs it inside the transaction that writes the raw slices, after them, so the
totals are always those of exactly the rows landed, on every backend, whatever path the rows took.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from shared.lineage import Lineage
from shared.warehouse.base import FromQuery, Slice

TABLE = "cloud_source_totals"
DECLARED = Path(__file__).resolve().parent.parent / "schemas" / TABLE
COLUMNS = ("usage_date", "billing_period", "provider", "currency", "source_rows", "source_cost")


@lru_cache(maxsize=None)
def declared() -> dict[str, str]:
    """raw table -> its totals SELECT over `{rows}`."""
    return {p.stem: p.read_text() for p in sorted(DECLARED.glob("*.sql"))}


def fed_by(raw_tables: Iterable[str]) -> list[str]:
    """The raw tables among `raw_tables` that have source totals."""
    return [t for t in raw_tables if t in declared()]


def replacement(raw: dict[str, tuple[str, Slice]], lineage: Lineage) -> tuple[Slice, FromQuery] | None:
    """The totals slice of a run and its rows, from `raw`: raw table -> (its table reference, the run's slice
    of it), the slices being written in the same replace_slices. None when no table of `raw` has totals."""
    selects, params = [], {}
    for i, table in enumerate(fed_by(raw)):
        ref, slc = raw[table]
        rows, where_params = slc.rows_sql(ref)
        # each raw slice's parameters get their own prefix in the one statement
        rows = re.sub(r"(?<![@\w])@(\w+)", rf"@r{i}_\1", rows)
        params.update({f"r{i}_{name}": value for name, value in where_params.items()})
        selects.append(f"({declared()[table].replace('{rows}', rows).strip()})")
    if not selects:
        return None
    first = raw[fed_by(raw)[0]][1]
    params.update(x_org_slug=lineage.org_slug, x_pipeline_id=lineage.pipeline_id,
                  x_credential_id=lineage.credential_id, x_run_id=lineage.run_id,
                  x_ingested_at=lineage.ingested_at, x_ingestion_date=lineage.ingested_at.date())
    sql = (f"SELECT {', '.join(COLUMNS)}, @x_org_slug AS x_org_slug, @x_pipeline_id AS x_pipeline_id, "
           "@x_credential_id AS x_credential_id, usage_date AS x_pipeline_run_date, @x_run_id AS x_run_id, "
           "@x_ingested_at AS x_ingested_at, @x_ingestion_date AS x_ingestion_date\nFROM (\n"
           + "\nUNION ALL\n".join(selects) + "\n) AS totals")
    return Slice(first.equals, "usage_date", first.start_date, first.end_date), FromQuery(sql, params)
