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
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable, Iterator

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from shared import schemas
from shared.http import ApiClient, retry_settings
from shared.models import model_family

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
USAGE_PATH = "/organization/usage/completions"
COSTS_PATH = "/organization/costs"
USAGE_GROUP_BY = ["model", "project_id", "batch", "service_tier"]
COSTS_GROUP_BY = ["project_id", "line_item"]
USAGE_PAGE_LIMIT = 31  # max buckets per page for bucket_width=1d
COSTS_PAGE_LIMIT = 180
MAX_PAGES = 10_000  # a guard against a cursor that never ends
NUMERIC_SCALE = Decimal("0.000000001")  # NUMERIC is decimal128(38, 9)
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")

USAGE_TABLE = "genai_usage_daily"
COSTS_TABLE = "genai_provider_costs_daily"


def _midnight_ts(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _bucket_date(bucket: dict) -> dt.date:
    try:
        return dt.datetime.fromtimestamp(int(bucket["start_time"]), tz=dt.timezone.utc).date()
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ExtractError(f"OpenAI returned a bucket without a usable start_time: {bucket.get('start_time')!r}") from None


def _int(v: Any) -> int:
    """A token count from the JSON (null -> 0; Decimal/float with no fraction accepted)."""
    return 0 if v is None else int(v)


def model_from_line_item(line_item: str | None) -> str | None:
    """`"gpt-4o-2024-08-06, input"` -> `"gpt-4o-2024-08-06"`; None when the text is not "model, kind"."""
    if not line_item or ", " not in line_item:
        return None
    head = line_item.split(", ", 1)[0].strip()
    return head if _MODEL_ID.match(head) else None


def usage_tokens(result: dict) -> dict[str, int]:
    """Token classes of one completions result under the old or new partition schema."""
    cached = _int(result.get("input_cached_tokens"))
    if result.get("input_uncached_tokens") is not None:
        uncached = _int(result.get("input_uncached_tokens"))
        writes = _int(result.get("input_cache_write_tokens")) + _int(result.get("input_cache_write_12h_tokens"))
    else:
        uncached = _int(result.get("input_tokens")) - cached
        writes = 0
    return {"input_tokens": uncached, "cached_input_tokens": cached, "cache_write_tokens": writes,
            "output_tokens": _int(result.get("output_tokens")),
            "request_count": _int(result.get("num_model_requests"))}


def _pages(client: ApiClient, path: str, params: dict[str, Any]) -> Iterator[dict]:
    """Every bucket of a paged endpoint, following `next_page` while `has_more`."""
    seen: set[str] = set()
    cursor = None
    for _ in range(MAX_PAGES):
        page = client.get_json(path, {**params, "page": cursor})
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ExtractError(f"OpenAI answered GET {path} with an unexpected shape (no 'data' list)")
        yield from page["data"]
        if not page.get("has_more"):
            return
        cursor = page.get("next_page")
        if not cursor:
            raise ExtractError(f"OpenAI said GET {path} has more pages but gave no next_page cursor")
        if cursor in seen:
            raise ExtractError(f"OpenAI returned the same next_page cursor twice for GET {path}; stopping")
        seen.add(cursor)
    raise ExtractError(f"GET {path} returned more than {MAX_PAGES} pages; narrow the date range")


def _batches(table: str, rows: list[dict]) -> list[pa.RecordBatch]:
    if not rows:
        return []
    return [pa.RecordBatch.from_pylist(rows, schema=schemas.get(table).arrow_schema(include_lineage=False))]


def _usage_rows(ctx: ExtractContext, buckets) -> list[dict]:
    agg: dict[tuple, dict] = {}
    outside: set[dt.date] = set()
    negative = audio = 0
    for bucket in buckets:
        day = _bucket_date(bucket)
        results = bucket.get("results") or []
        if not (ctx.start_date <= day <= ctx.end_date):
            if results:
                outside.add(day)
            continue
        for r in results:
            t = usage_tokens(r)
            if t["input_tokens"] < 0:
                negative += 1
                t["input_tokens"] = 0
            if r.get("input_uncached_tokens") is None and (_int(r.get("input_audio_tokens"))
                                                           or _int(r.get("output_audio_tokens"))):
                audio += 1
            model = r.get("model") or "unknown"
            key = (day, model, r.get("project_id"), r.get("service_tier"), bool(r.get("batch")))
            row = agg.get(key)
            if row is None:
                row = agg[key] = {
                    "usage_date": day, "provider": PROVIDER, "model": model, "model_family": model_family(model),
                    "project_id": key[2], "service_tier": key[3], "is_batch": key[4],
                    "input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0,
                    "reasoning_tokens": None, "request_count": 0,
                }
            for k, v in t.items():
                row[k] += v
    if outside:
        ctx.warn(f"OpenAI usage returned data for {len(outside)} day(s) outside {ctx.start_date}..{ctx.end_date} "
                 f"({min(outside)} to {max(outside)}); those rows were dropped")
    if negative:
        ctx.warn(f"{negative} OpenAI usage result(s) had fewer input_tokens than input_cached_tokens; "
                 "their uncached input was set to 0")
    if audio:
        ctx.warn(f"{audio} OpenAI usage result(s) carry audio tokens in the older schema; genai_usage_daily "
                 "holds text tokens only for those, so audio usage is not counted")
    return [agg[k] for k in sorted(agg, key=lambda k: (k[0], k[1], str(k[2]), str(k[3]), k[4]))]


def _amount(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        d = Decimal(value)
    elif isinstance(value, float):  # only if a caller decoded without parse_float=Decimal
        d = Decimal(repr(value))
    else:
        raise ExtractError(f"OpenAI returned a cost amount that is not a number: {value!r}")
    if not d.is_finite():
        raise ExtractError(f"OpenAI returned a cost amount that is not a finite number: {value!r}")
    return d


def _cost_rows(ctx: ExtractContext, buckets) -> list[dict]:
    agg: dict[tuple, dict] = {}
    outside: set[dt.date] = set()
    no_amount = 0
    for bucket in buckets:
        day = _bucket_date(bucket)
        results = bucket.get("results") or []
        if not (ctx.start_date <= day <= ctx.end_date):
            if results:
                outside.add(day)
            continue
        for r in results:
            amount = r.get("amount") or {}
            if amount.get("value") is None:
                no_amount += 1
                continue
            value = _amount(amount["value"])
            currency = str(amount.get("currency") or "usd").upper()
            line_item = r.get("line_item")
            key = (day, r.get("project_id"), line_item, currency)
            row = agg.get(key)
            if row is None:
                row = agg[key] = {"usage_date": day, "provider": PROVIDER, "project_id": key[1],
                                  "line_item": line_item, "model": model_from_line_item(line_item),
                                  "amount": Decimal(0), "currency": currency}
            row["amount"] += value
    if outside:
        ctx.warn(f"OpenAI costs returned data for {len(outside)} day(s) outside {ctx.start_date}..{ctx.end_date} "
                 f"({min(outside)} to {max(outside)}); those rows were dropped")
    if no_amount:
        ctx.warn(f"{no_amount} OpenAI cost result(s) had no amount and were skipped")
    rows = [agg[k] for k in sorted(agg, key=lambda k: (k[0], str(k[1]), str(k[2]), k[3]))]
    for row in rows:  # NUMERIC keeps 9 decimals; anything finer than a nano-dollar is float noise
        row["amount"] = row["amount"].quantize(NUMERIC_SCALE, rounding=ROUND_HALF_EVEN)
    return rows


def extract(ctx: ExtractContext, *, sleep: Callable[[float], Any] = time.sleep,
            max_attempts: int | None = None) -> dict[str, list[pa.RecordBatch]]:
    """Usage and billed cost for ctx.start_date..ctx.end_date (inclusive, UTC days).

    Retry behaviour comes from `shared.http.retry_settings()` (environment overridable);
    `sleep` and `max_attempts` are there for tests.
    """
    key = (ctx.credential or {}).get("admin_key")
    if not key or not isinstance(key, str):
        raise CredentialError(
            "The OpenAI credential has no admin_key. Add one with "
            f"`cloudact credentials add {ctx.org_slug} openai --from-json FILE` "
            '(FILE: {"admin_key": "sk-admin-..."}).')
    base_url = str(ctx.credential.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    if ctx.end_date < ctx.start_date:
        return {USAGE_TABLE: [], COSTS_TABLE: []}
    window = {"start_time": _midnight_ts(ctx.start_date),
              "end_time": _midnight_ts(ctx.end_date + dt.timedelta(days=1)),
              "bucket_width": "1d"}
    retry = retry_settings()
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    with ApiClient(base_url, {"Authorization": f"Bearer {key}"}, provider="OpenAI", credential_kind="openai",
                   key_label="admin key", org_slug=ctx.org_slug, log=ctx.log, sleep=sleep, **retry) as client:
        usage = _usage_rows(ctx, _pages(client, USAGE_PATH, {**window, "group_by": USAGE_GROUP_BY,
                                                             "limit": USAGE_PAGE_LIMIT}))
        costs = _cost_rows(ctx, _pages(client, COSTS_PATH, {**window, "group_by": COSTS_GROUP_BY,
                                                            "limit": COSTS_PAGE_LIMIT}))
    ctx.log.info("openai: %d usage rows, %d cost rows", len(usage), len(costs))
    return {USAGE_TABLE: _batches(USAGE_TABLE, usage), COSTS_TABLE: _batches(COSTS_TABLE, costs)}
