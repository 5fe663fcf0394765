"""Google Vertex AI (Gemini and partner models such as Claude): daily token usage from Cloud Monitoring.

Vertex AI has no usage API. Tokens come from the project's Cloud Monitoring metrics (see
`jobs.genai.gcp_monitoring` for the credential, and for why this is REST over httpx rather than the
gRPC SDK); money comes from the GCP billing export (the cloud/gcp pipeline), so this job writes
`genai_usage_daily` only.

Metrics read, each summed per UTC day:
- tokens:   `aiplatform.googleapis.com/publisher/online_serving/token_count` (resource
  `aiplatform.googleapis.com/PublisherModel`) grouped by `resource.label.model_user_id` and
  `metric.label.type`; type `input` -> `input_tokens`, `output` -> `output_tokens`. One query covers
  every publisher (Google, Anthropic, Meta, ...). Other type values are skipped with a warning.
- requests: `aiplatform.googleapis.com/publisher/online_serving/model_invocation_count` grouped by
  `resource.label.model_user_id` (`request_count` stays null when there are no request points).

`model` is the model_user_id as reported (e.g. `gemini-2.5-flash`, `claude-sonnet-4-5@20250929`;
`shared.models.model_family` drops the `@date` suffix). The metric has no cache split, so
`cached_input_tokens` is 0; `project_id` and `cloud_account_id` are the GCP project (the billing export's project.id: sp_genai_4 counts the spend once where the export bills it).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import pyarrow as pa

from jobs.base import ExtractContext
from jobs.genai.common import USAGE_TABLE, DayWindow
from jobs.genai.gcp_monitoring import daily_sums, label, open_projects, project_row, usage_batches

PROVIDER = "vertex"
TOKEN_METRIC = "aiplatform.googleapis.com/publisher/online_serving/token_count"
REQUESTS_METRIC = "aiplatform.googleapis.com/publisher/online_serving/model_invocation_count"
TOKEN_GROUP_BY = ["resource.label.model_user_id", "metric.label.type"]
REQUESTS_GROUP_BY = ["resource.label.model_user_id"]
TOKEN_TYPES = {"input": "input_tokens", "output": "output_tokens"}


def model_of(series: dict) -> str:
    return (label(series, "resource.label.model_user_id") or "").strip() or "unknown"


def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep, max_attempts: int | None = None,
            token_minter: Callable[[dict], str] | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Token usage for ctx.start_date..ctx.end_date (inclusive, UTC days) for every project in the credential."""
    projects, client = open_projects(ctx, sleep=sleep, max_attempts=max_attempts, token_minter=token_minter)
    rows: dict[tuple, dict] = {}
    other_types: dict[str, int] = {}
    with client:
        if ctx.end_date < ctx.start_date:
            return {USAGE_TABLE: []}
        window = DayWindow(ctx)
        for project in projects:
            tokens = daily_sums(ctx, client, project, TOKEN_METRIC, TOKEN_GROUP_BY, window,
                                lambda s: (model_of(s), (label(s, "metric.label.type") or "").strip().lower()))
            for (day, (model, kind)), value in tokens.items():
                field = TOKEN_TYPES.get(kind)
                if field is None:
                    other_types[kind or "(none)"] = other_types.get(kind or "(none)", 0) + value
                    continue
                project_row(rows, PROVIDER, day, project, model)[field] += value
            requests = daily_sums(ctx, client, project, REQUESTS_METRIC, REQUESTS_GROUP_BY, window, model_of)
            for (day, model), value in requests.items():
                row = project_row(rows, PROVIDER, day, project, model)
                row["request_count"] = (row["request_count"] or 0) + value
        window.warn("Vertex AI", "Cloud Monitoring")
    if other_types:
        ctx.warn("Vertex AI token_count had token types other than input/output, not counted: "
                 + ", ".join(f"{k}={v}" for k, v in sorted(other_types.items())))
    return usage_batches(ctx, PROVIDER, rows, projects)
