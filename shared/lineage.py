"""The lineage fields every pipeline output row carries, and how they are stamped."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Name, BigQuery type. Order is the order they take at the end of every per-org table.
LINEAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("x_org_slug", "STRING"),
    ("x_pipeline_id", "STRING"),
    ("x_credential_id", "STRING"),
    ("x_pipeline_run_date", "DATE"),
    ("x_run_id", "STRING"),
    ("x_ingested_at", "TIMESTAMP"),
    ("x_ingestion_date", "DATE"),
)
LINEAGE_NAMES = tuple(name for name, _ in LINEAGE_FIELDS)


@dataclass(frozen=True)
class Lineage:
    """Who wrote a row: one per run. `x_pipeline_run_date` is per row (the data date)."""

    org_slug: str
    pipeline_id: str
    credential_id: str
    run_id: str
    ingested_at: dt.datetime

    def stamp(self, batch, date_column: str):
        """Return `batch` (a pyarrow RecordBatch) with the lineage columns appended.

        `x_pipeline_run_date` is copied from `date_column`, the row's data date.
        """
        import pyarrow as pa

        n = batch.num_rows
        run_date = batch.column(date_column)
        if not pa.types.is_date32(run_date.type):
            run_date = run_date.cast(pa.date32())
        ingested = pa.array([self.ingested_at] * n, pa.timestamp("us", tz="UTC"))
        ingestion_date = pa.array([self.ingested_at.date()] * n, pa.date32())
        columns = list(batch.columns) + [
            pa.array([self.org_slug] * n, pa.string()),
            pa.array([self.pipeline_id] * n, pa.string()),
            pa.array([self.credential_id] * n, pa.string()),
            run_date,
            pa.array([self.run_id] * n, pa.string()),
            ingested,
            ingestion_date,
        ]
        return pa.RecordBatch.from_arrays(columns, names=list(batch.schema.names) + list(LINEAGE_NAMES))
