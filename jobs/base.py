"""What an extractor receives and returns.

An extractor module (jobs/<category>/<provider>.py) exposes

    def extract(ctx: ExtractContext) -> dict[str, Iterable[pyarrow.RecordBatch]]

mapping each raw table it fills to record batches shaped like that table's Arrow schema *without*
the lineage columns (`shared.schemas.get(table).arrow_schema(include_lineage=False)`). The runner
stamps lineage and replaces the run's slice of every table in one transaction, so an extractor never
writes to the warehouse itself and a failure part-way leaves earlier data untouched.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from shared.errors import CredentialError, ExtractError  # noqa: F401 - the extractors' names for them


@dataclass
class ExtractContext:
    org_slug: str
    pipeline_id: str
    credential_id: str
    run_id: str
    start_date: dt.date  # inclusive
    end_date: dt.date  # inclusive
    credential: dict[str, Any] = field(repr=False)  # secret material: never log it
    log: logging.Logger | logging.LoggerAdapter = field(default_factory=lambda: logging.getLogger("cloudact.job"))
    warnings: list[str] = field(default_factory=list)  # readable, shown in the run result

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log.warning(message)
