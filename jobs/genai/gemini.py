"""Gemini Developer API (Google AI Studio): daily token usage per model from Google Cloud Monitoring.

Gemini has no usage or cost REST API of its own. Tokens come from the project's Cloud Monitoring
metrics (see `jobs.genai.gcp_monitoring` for the credential, and for why this is REST over httpx
rather than the gRPC SDK); money comes from the GCP billing export (the cloud/gcp pipeline), so this
job writes `genai_usage_daily` only.

Metrics read, each summed per UTC day and grouped by `metric.label.model`:
- output tokens: `generativelanguage.googleapis.com/generate_content_usage_output_token_count`
- input tokens:  the quota metrics `generativelanguage.googleapis.com/quota/generate_content_<tier>_input_token_count/usage`
  for tiers free_tier, paid_tier, paid_tier_2 and paid_tier_3, summed (a project is on one tier at a
  time but may change tier inside the window)
- requests:      `generativelanguage.googleapis.com/quota/generate_requests_per_model/usage`
  (`request_count` stays null for a (day, model) with no request points)

The metrics expose no cached-token split, so `cached_input_tokens` is 0 and `input_tokens` holds the
whole prompt as metered; whether thinking tokens are inside the output metric is unverified, so
`reasoning_tokens` is null. Free-tier tokens cost nothing, yet a list-price estimate prices them: the
run warns when there are any. The billing export stays the authority for money: `cloud_account_id` is the project,
so an org that also runs the export gets its Gemini API lines split over this usage (sp_genai_4).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import pyarrow as pa

from jobs.base import ExtractContext
from jobs.genai.common import USAGE_TABLE, DayWindow
from jobs.genai.gcp_monitoring import daily_sums, label, open_projects, project_row, usage_batches

PROVIDER = "gemini"
OUTPUT_METRIC = "generativelanguage.googleapis.com/generate_content_usage_output_token_count"
INPUT_TIERS = ("free_tier", "paid_tier", "paid_tier_2", "paid_tier_3")
INPUT_METRICS = {tier: f"generativelanguage.googleapis.com/quota/generate_content_{tier}_input_token_count/usage"
                 for tier in INPUT_TIERS}
REQUESTS_METRIC = "generativelanguage.googleapis.com/quota/generate_requests_per_model/usage"
GROUP_BY = ["metric.label.model"]


def model_of(series: dict) -> str:
    """The model label (metric label, else resource label), without any `models/` prefix."""
    raw = label(series, "metric.label.model") or label(series, "resource.label.model") or ""
    raw = raw.strip().removeprefix("models/")
    return raw or "unknown"


def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep, max_attempts: int | None = None,
            token_minter: Callable[[dict], str] | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Token usage for ctx.start_date..ctx.end_date (inclusive, UTC days) for every project in the credential."""
    projects, client = open_projects(ctx, sleep=sleep, max_attempts=max_attempts, token_minter=token_minter)
    rows: dict[tuple, dict] = {}
    free_tier = 0
    with client:
        if ctx.end_date < ctx.start_date:
            return {USAGE_TABLE: []}
        window = DayWindow(ctx)
        for project in projects:
            def add(metric: str, field: str, project: str = project) -> int:
                total = 0
                for (day, model), value in daily_sums(ctx, client, project, metric, GROUP_BY, window,
                                                      model_of).items():
                    row = project_row(rows, PROVIDER, day, project, model)
                    row[field] = (row[field] or 0) + value
                    total += value
                return total

            add(OUTPUT_METRIC, "output_tokens")
            for tier, metric in INPUT_METRICS.items():
                tokens = add(metric, "input_tokens")
                if tier == "free_tier":
                    free_tier += tokens
            add(REQUESTS_METRIC, "request_count")
        window.warn("Gemini", "Cloud Monitoring")
    if free_tier:
        ctx.warn(f"{free_tier} Gemini input token(s) were on the free tier; they are billed at $0, so a list-price "
                 "estimate overstates them (the GCP billing export is the authority for money)")
    return usage_batches(ctx, PROVIDER, rows, projects)
