"""Anthropic pay-as-you-go: daily token usage and billed cost from the Anthropic Admin API.

Credential (`cloudact credentials add ORG anthropic --from-json FILE`):
    {"admin_key": "sk-ant-admin01-...", "base_url": "https://api.anthropic.com"}   # base_url optional

- `GET /v1/organizations/usage_report/messages` (1d buckets, grouped by model, workspace_id and
  service_tier) -> `genai_usage_daily`. Anthropic partitions input itself: `uncached_input_tokens`
  excludes cache reads and writes, so it maps straight to `input_tokens`; cache reads to
  `cached_input_tokens`; 5-minute + 1-hour cache writes to `cache_write_tokens`; `is_batch` is
  `service_tier == "batch"`; `project_id` is the workspace (null = the default workspace). The API
  reports no request counts, so `request_count` is null.
- `GET /v1/organizations/cost_report` (1d buckets, grouped by workspace_id and description) ->
  `genai_provider_costs_daily`. `amount` is a decimal string in US **cents**; it becomes exact
  Decimal dollars (never through a float).
"""
from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any, Callable

import pyarrow as pa

from jobs.base import ExtractContext
from jobs.genai.common import (COSTS_TABLE, cost_lines, USAGE_TABLE, DayWindow, admin_client, decimal_amount, int_or_zero,
                               iter_pages, to_batches, usage_row, utc_date)

PROVIDER = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COSTS_PATH = "/v1/organizations/cost_report"
USAGE_GROUP_BY = ["model", "workspace_id", "service_tier"]
COSTS_GROUP_BY = ["workspace_id", "description"]
PAGE_LIMIT = 31  # max 1d buckets per page on both endpoints


def _rfc3339(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _bucket_date(bucket: dict) -> dt.date:
    raw = bucket.get("starting_at")
    return utc_date(raw, f"Anthropic returned a bucket without a usable starting_at: {raw!r}")


def usage_tokens(result: dict) -> dict[str, int]:
    """Token classes of one usage_report result. 5-minute and 1-hour cache writes are priced apart
    (1.25x and 2x input), so they land in separate columns."""
    creation = result.get("cache_creation") or {}
    return {"input_tokens": int_or_zero(result.get("uncached_input_tokens")),
            "cached_input_tokens": int_or_zero(result.get("cache_read_input_tokens")),
            "cache_write_tokens": int_or_zero(creation.get("ephemeral_5m_input_tokens")),
            "cache_write_1h_tokens": int_or_zero(creation.get("ephemeral_1h_input_tokens")),
            "output_tokens": int_or_zero(result.get("output_tokens"))}


def _usage_rows(ctx: ExtractContext, buckets) -> list[dict]:
    agg: dict[tuple, dict] = {}
    window = DayWindow(ctx)
    priority_days: set[dt.date] = set()
    for day, r in window.results(buckets, _bucket_date):
        model = r.get("model") or "unknown"
        tier = r.get("service_tier")
        if tier and tier.startswith("priority"):
            priority_days.add(day)
        key = (day, model, r.get("workspace_id"), tier)
        row = agg.get(key)
        if row is None:
            # the usage report splits 1-hour cache writes but counts no requests
            row = agg[key] = usage_row(day, PROVIDER, model, key[2], service_tier=tier, is_batch=tier == "batch",
                                       cache_write_1h_tokens=0)
        for k, v in usage_tokens(r).items():
            row[k] += v
    window.warn("Anthropic", "usage")
    if priority_days:
        ctx.warn(f"Anthropic usage has Priority Tier traffic on {len(priority_days)} day(s); Anthropic's "
                 "cost report does not include Priority Tier charges, so only the list-price estimate covers them")
    return [agg[k] for k in sorted(agg, key=lambda k: (k[0], k[1], str(k[2]), str(k[3])))]


# cost_report token_type -> our token class (genai_costs_daily / the FOCUS SkuMeter)
TOKEN_CLASSES = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cached_input",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
    "output_tokens": "output",
}


def cents_to_dollars(value: Any) -> Decimal:
    """`"123.45"` (cents, as the cost report sends it) -> `Decimal("1.2345")` dollars, exactly."""
    sign, digits, exponent = decimal_amount(value, "Anthropic").as_tuple()
    return Decimal((sign, digits, exponent - 2))  # shifting the exponent never rounds (scaleb/`/` can)


def _cost_line(r: dict) -> tuple[dict, Decimal] | None:
    if r.get("amount") is None:
        return None
    token_class = TOKEN_CLASSES.get(r.get("token_type")) if r.get("cost_type") in (None, "tokens") else None
    return ({"project_id": r.get("workspace_id"), "line_item": r.get("description"), "model": r.get("model"),
             "token_class": token_class, "is_batch": (r.get("service_tier") == "batch") if token_class else None,
             "currency": str(r.get("currency") or "USD").upper()},
            cents_to_dollars(r["amount"]))


def _cost_rows(ctx: ExtractContext, buckets) -> list[dict]:
    return cost_lines(ctx, buckets, provider="Anthropic", what="cost report", provider_id=PROVIDER,
                      day_of=_bucket_date, line_of=_cost_line, warn_rounding=True)


def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep,
            max_attempts: int | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Usage and billed cost for ctx.start_date..ctx.end_date (inclusive, UTC days).

    Retry behaviour comes from `shared.http.retry_settings()` (environment overridable);
    `sleep` and `max_attempts` are there for tests.
    """
    client = admin_client(ctx, provider="Anthropic", credential_kind="anthropic", default_base_url=DEFAULT_BASE_URL,
                          key_example="sk-ant-admin01-...",
                          headers=lambda key: {"x-api-key": key, "anthropic-version": API_VERSION},
                          sleep=sleep, max_attempts=max_attempts)
    with client:
        if ctx.end_date < ctx.start_date:
            return {USAGE_TABLE: [], COSTS_TABLE: []}
        window = {"starting_at": _rfc3339(ctx.start_date),
                  "ending_at": _rfc3339(ctx.end_date + dt.timedelta(days=1)),  # exclusive
                  "bucket_width": "1d", "limit": PAGE_LIMIT}
        usage = _usage_rows(ctx, iter_pages(client, USAGE_PATH, {**window, "group_by[]": USAGE_GROUP_BY}))
        costs = _cost_rows(ctx, iter_pages(client, COSTS_PATH, {**window, "group_by[]": COSTS_GROUP_BY}))
    ctx.log.info("anthropic: %d usage rows, %d cost rows", len(usage), len(costs))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, usage), COSTS_TABLE: to_batches(COSTS_TABLE, costs)}
