"""OpenAI pay-as-you-go: daily token usage and billed cost from the OpenAI Admin API.

Credential (`cloudact credentials add ORG openai --from-json FILE`):
    {"admin_key": "sk-admin-...", "base_url": "https://api.openai.com/v1"}   # base_url optional

- `GET /organization/usage/completions` (1d buckets, grouped by model, project_id, batch and
  service_tier) -> `genai_usage_daily`. Token classes follow the reference rule: when a result has
  `input_uncached_tokens` the explicit partitions are used, otherwise uncached input is
  `input_tokens - input_cached_tokens` and there are no cache writes.
- `GET /organization/costs` (1d buckets, grouped by project_id and line_item) ->
  `genai_provider_costs_daily`, amounts decoded straight to Decimal (never through a float).
"""
from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any, Callable

import pyarrow as pa

from jobs.base import ExtractContext, ExtractError
from jobs.genai.common import (COSTS_TABLE, cost_lines, USAGE_TABLE, DayWindow, admin_client, decimal_amount, int_or_zero,
                               iter_pages, to_batches, usage_row)

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
USAGE_PATH = "/organization/usage/completions"
COSTS_PATH = "/organization/costs"
USAGE_GROUP_BY = ["model", "project_id", "batch", "service_tier"]
COSTS_GROUP_BY = ["project_id", "line_item"]
USAGE_PAGE_LIMIT = 31  # max buckets per page for bucket_width=1d
COSTS_PAGE_LIMIT = 180
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")


def _midnight_ts(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _bucket_date(bucket: dict) -> dt.date:
    try:
        return dt.datetime.fromtimestamp(int(bucket["start_time"]), tz=dt.timezone.utc).date()
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ExtractError(f"OpenAI returned a bucket without a usable start_time: {bucket.get('start_time')!r}") from None


def model_from_line_item(line_item: str | None) -> str | None:
    """`"gpt-4o-2024-08-06, input"` -> `"gpt-4o-2024-08-06"`; None when the text is not "model, kind"."""
    if not line_item or ", " not in line_item:
        return None
    head = line_item.split(", ", 1)[0].strip()
    return head if _MODEL_ID.match(head) else None


_LINE_KINDS = {"input": "input", "cached input": "cached_input", "output": "output", "cache write input": "cache_write",
               "cache write": "cache_write", "cached write": "cache_write"}


def token_class_of_line_item(line_item: str | None) -> tuple[str | None, bool | None]:
    """`"gpt-4o, batch cached input"` -> ("cached_input", True); (None, None) for non-token lines."""
    if not line_item or ", " not in line_item:
        return None, None
    kind = line_item.split(", ", 1)[1].strip().lower()
    batch = kind.startswith("batch ")
    kind = kind[len("batch "):] if batch else kind
    token_class = _LINE_KINDS.get(kind)
    return (token_class, batch) if token_class else (None, None)


def usage_tokens(result: dict) -> dict[str, int]:
    """Token classes of one completions result under the old or new partition schema."""
    cached = int_or_zero(result.get("input_cached_tokens"))
    if result.get("input_uncached_tokens") is not None:
        uncached = int_or_zero(result.get("input_uncached_tokens"))
        writes = (int_or_zero(result.get("input_cache_write_tokens"))
                  + int_or_zero(result.get("input_cache_write_12h_tokens")))
    else:
        uncached = int_or_zero(result.get("input_tokens")) - cached
        writes = 0
    return {"input_tokens": uncached, "cached_input_tokens": cached, "cache_write_tokens": writes,
            "output_tokens": int_or_zero(result.get("output_tokens")),
            "request_count": int_or_zero(result.get("num_model_requests"))}


def _usage_rows(ctx: ExtractContext, buckets) -> list[dict]:
    agg: dict[tuple, dict] = {}
    window = DayWindow(ctx)
    negative = audio = 0
    for day, r in window.results(buckets, _bucket_date):
        t = usage_tokens(r)
        if t["input_tokens"] < 0:
            negative += 1
            t["input_tokens"] = 0
        if r.get("input_uncached_tokens") is None and (int_or_zero(r.get("input_audio_tokens"))
                                                       or int_or_zero(r.get("output_audio_tokens"))):
            audio += 1
        model = r.get("model") or "unknown"
        key = (day, model, r.get("project_id"), r.get("service_tier"), bool(r.get("batch")))
        row = agg.get(key)
        if row is None:
            row = agg[key] = usage_row(day, PROVIDER, model, key[2], service_tier=key[3], is_batch=key[4],
                                       request_count=0)
        for k, v in t.items():
            row[k] += v
    window.warn("OpenAI", "usage")
    if negative:
        ctx.warn(f"{negative} OpenAI usage result(s) had fewer input_tokens than input_cached_tokens; "
                 "their uncached input was set to 0")
    if audio:
        ctx.warn(f"{audio} OpenAI usage result(s) carry audio tokens in the older schema; genai_usage_daily "
                 "holds text tokens only for those, so audio usage is not counted")
    return [agg[k] for k in sorted(agg, key=lambda k: (k[0], k[1], str(k[2]), str(k[3]), k[4]))]


def _cost_line(r: dict) -> tuple[dict, Decimal] | None:
    amount = r.get("amount") or {}
    if amount.get("value") is None:
        return None
    line_item = r.get("line_item")
    token_class, is_batch = token_class_of_line_item(line_item)
    return ({"project_id": r.get("project_id"), "line_item": line_item, "model": model_from_line_item(line_item),
             "token_class": token_class, "is_batch": is_batch,
             "currency": str(amount.get("currency") or "usd").upper()},
            decimal_amount(amount["value"], "OpenAI"))


def _cost_rows(ctx: ExtractContext, buckets) -> list[dict]:
    # anything finer than a nano-dollar is float noise in OpenAI's amounts: rounded without a warning
    return cost_lines(ctx, buckets, provider="OpenAI", what="costs", provider_id=PROVIDER, day_of=_bucket_date,
                      line_of=_cost_line, warn_rounding=False)


def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep,
            max_attempts: int | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Usage and billed cost for ctx.start_date..ctx.end_date (inclusive, UTC days).

    Retry behaviour comes from `shared.http.retry_settings()` (environment overridable);
    `sleep` and `max_attempts` are there for tests.
    """
    client = admin_client(ctx, provider="OpenAI", credential_kind="openai", default_base_url=DEFAULT_BASE_URL,
                          key_example="sk-admin-...", headers=lambda key: {"Authorization": f"Bearer {key}"},
                          sleep=sleep, max_attempts=max_attempts)
    with client:
        if ctx.end_date < ctx.start_date:
            return {USAGE_TABLE: [], COSTS_TABLE: []}
        window = {"start_time": _midnight_ts(ctx.start_date),
                  "end_time": _midnight_ts(ctx.end_date + dt.timedelta(days=1)),
                  "bucket_width": "1d"}
        usage = _usage_rows(ctx, iter_pages(client, USAGE_PATH, {**window, "group_by": USAGE_GROUP_BY,
                                                                 "limit": USAGE_PAGE_LIMIT}))
        costs = _cost_rows(ctx, iter_pages(client, COSTS_PATH, {**window, "group_by": COSTS_GROUP_BY,
                                                                "limit": COSTS_PAGE_LIMIT}))
    ctx.log.info("openai: %d usage rows, %d cost rows", len(usage), len(costs))
    return {USAGE_TABLE: to_batches(USAGE_TABLE, usage), COSTS_TABLE: to_batches(COSTS_TABLE, costs)}
