"""Deterministic, realistic-looking GenAI usage (and the bill for it) for stubs, tests and the demo.

`openai_demo_usage(start, days, seed)` returns one record per (day, project, model, batch, tier):

    {"date": date, "project_id": str, "model": str, "batch": bool, "service_tier": str,
     "user_id": None, "api_key_id": None,
     "input_tokens": int, "input_cached_tokens": int, "output_tokens": int,
     "input_audio_tokens": 0, "output_audio_tokens": 0, "num_model_requests": int}

`input_tokens` follows the older OpenAI reference (text input *including* cached tokens). With
`partitioned=True` the records also carry the newer explicit partitions (`input_uncached_tokens`,
`input_cache_write_tokens`, `input_cache_write_12h_tokens`) and `input_tokens` then includes
cache writes, as the newest reference describes.

Each day's numbers come from a `random.Random` seeded with (seed, date), so the same seed always
gives the same rows, and a day's rows do not depend on the window they were generated in.

`openai_demo_costs(records)` prices those records with `OPENAI_PRICES` (USD per 1M tokens) into
daily cost line items per project, each rounded to cents the way a bill would be.

`anthropic_demo_usage(start, days, seed)` / `anthropic_demo_costs(records)` do the same for the
Anthropic usage and cost reports (fractional cents, priced with `ANTHROPIC_PRICES`); see their
docstrings for the record shapes.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterator

from shared.models import model_family

# USD per 1M tokens (list prices; batch is half). Keys are model families.
OPENAI_PRICES: dict[str, dict[str, Decimal]] = {
    "gpt-4o": {"input": Decimal("2.50"), "cached_input": Decimal("1.25"), "output": Decimal("10.00")},
    "gpt-4o-mini": {"input": Decimal("0.15"), "cached_input": Decimal("0.075"), "output": Decimal("0.60")},
    "o3-mini": {"input": Decimal("1.10"), "cached_input": Decimal("0.55"), "output": Decimal("4.40")},
    "gpt-4.1-nano": {"input": Decimal("0.10"), "cached_input": Decimal("0.025"), "output": Decimal("0.40")},
}
BATCH_DISCOUNT = Decimal("0.5")
CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)

# (project, model, batch, service_tier, requests/day at weekday peak, mean input tokens/request,
#  cache hit share, mean output tokens/request)
_WORKLOADS = [
    ("proj_support_bot", "gpt-4o-2024-08-06", False, "default", 1800, 1900, 0.45, 320),
    ("proj_support_bot", "gpt-4o-mini", False, "default", 5200, 1100, 0.55, 180),
    ("proj_search", "gpt-4o-mini", False, "default", 9000, 700, 0.20, 90),
    ("proj_search", "gpt-4.1-nano", False, "default", 12000, 450, 0.10, 40),
    ("proj_analytics", "o3-mini", False, "default", 420, 2600, 0.30, 1900),
    ("proj_analytics", "gpt-4o-2024-08-06", True, "default", 2500, 3200, 0.00, 450),
    ("proj_analytics", "gpt-4o-mini", True, "default", 8000, 1500, 0.00, 200),
]
_TOKEN_FIELDS = ("input_tokens", "input_cached_tokens", "output_tokens", "input_audio_tokens",
                 "output_audio_tokens", "num_model_requests", "input_uncached_tokens",
                 "input_cache_write_tokens", "input_cache_write_12h_tokens")



def _seeded_days(start: dt.date, days: int, label: str) -> Iterator[tuple[dt.date, random.Random]]:
    """Each of `days` days from `start` with its own generator, seeded by (label, date) so that a day's
    numbers do not depend on the range asked for."""
    for i in range(max(0, days)):
        day = start + dt.timedelta(days=i)
        yield day, random.Random(f"{label}:{day.isoformat()}")

def openai_demo_usage(start: dt.date, days: int, seed: int, *, partitioned: bool = False) -> list[dict]:
    """`days` days of OpenAI completions usage from `start` (see module docstring)."""
    out: list[dict] = []
    for day, rng in _seeded_days(start, days, f"openai-demo:{seed}"):
        weekend = day.weekday() >= 5
        growth = 1 + 0.004 * (day.toordinal() % 365)  # slow upward drift, stable per date
        for project, model, batch, tier, peak, in_mean, hit, out_mean in _WORKLOADS:
            if batch and rng.random() < 0.35:  # batch jobs do not run every day
                continue
            scale = (0.35 if weekend and not batch else 1.0) * growth * rng.uniform(0.8, 1.2)
            requests = max(1, int(peak * scale))
            input_tokens = int(requests * in_mean * rng.uniform(0.85, 1.15))
            cached = int(input_tokens * hit * rng.uniform(0.8, 1.1)) // 128 * 128  # cache in 128-token blocks
            cached = min(cached, input_tokens)
            output = int(requests * out_mean * rng.uniform(0.8, 1.25))
            rec = {
                "date": day, "project_id": project, "model": model, "batch": batch, "service_tier": tier,
                "user_id": None, "api_key_id": None,
                "input_tokens": input_tokens, "input_cached_tokens": cached, "output_tokens": output,
                "input_audio_tokens": 0, "output_audio_tokens": 0, "num_model_requests": requests,
            }
            if partitioned:
                uncached = input_tokens - cached
                write_30m = int(uncached * rng.uniform(0.05, 0.15)) if hit else 0
                write_12h = int(uncached * rng.uniform(0.0, 0.05)) if hit else 0
                rec.update({
                    "input_uncached_tokens": uncached,
                    "input_cache_write_tokens": write_30m,
                    "input_cache_write_12h_tokens": write_12h,
                    "input_tokens": input_tokens + write_30m + write_12h,
                })
            out.append(rec)
    return out


def billable_tokens(rec: dict) -> dict[str, int]:
    """A usage record split into priced token classes (input is uncached; cache writes at input rate)."""
    if "input_uncached_tokens" in rec:
        uncached = rec["input_uncached_tokens"]
        writes = rec.get("input_cache_write_tokens", 0) + rec.get("input_cache_write_12h_tokens", 0)
    else:
        uncached, writes = rec["input_tokens"] - rec["input_cached_tokens"], 0
    return {"input": uncached, "cached input": rec["input_cached_tokens"], "cache write input": writes,
            "output": rec["output_tokens"]}


_RATE_FOR = {"input": "input", "cached input": "cached_input", "cache write input": "input", "output": "output"}


def openai_demo_costs(records: list[dict]) -> list[dict]:
    """Daily cost line items per project for `records`:
    `{"date", "project_id", "line_item": "<model>, <kind>", "amount": Decimal (cents), "currency": "usd"}`.

    Line items are per model as reported (dated ids kept) and kind (`input`, `cached input`,
    `cache write input`, `output`, prefixed `batch ` for Batch API usage). Each line item's day total
    is rounded half-up to cents; zero lines are left out. Models without a price are not billed.
    """
    exact: dict[tuple, Decimal] = {}
    for rec in records:
        prices = OPENAI_PRICES.get(model_family(rec["model"]))
        if prices is None:
            continue
        factor = BATCH_DISCOUNT if rec.get("batch") else Decimal(1)
        for kind, tokens in billable_tokens(rec).items():
            if not tokens:
                continue
            label = f"{rec['model']}, {'batch ' if rec.get('batch') else ''}{kind}"
            key = (rec["date"], rec.get("project_id"), label)
            exact[key] = exact.get(key, Decimal(0)) + tokens * prices[_RATE_FOR[kind]] * factor / MILLION
    out = []
    for (day, project, label), amount in sorted(exact.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
        if cents:
            out.append({"date": day, "project_id": project, "line_item": label, "amount": cents, "currency": "usd"})
    return out


def sum_fields(records: list[dict], *fields: str) -> dict[str, int]:
    """Totals of the given numeric fields over records (missing counts as 0); handy in tests."""
    return {f: sum(int(r.get(f) or 0) for r in records) for f in fields or _TOKEN_FIELDS}


# -- Anthropic ----------------------------------------------------------------------------------------
# USD per 1M tokens, list prices (https://docs.anthropic.com/en/docs/about-claude/pricing). Keys are
# model families. cached_input = cache read, cache_write = 5-minute cache write (1.25x input),
# cache_write_1h = 1-hour cache write (2x input). The Batch API halves every rate.
ANTHROPIC_PRICES: dict[str, dict[str, Decimal]] = {
    "claude-opus-4-1": {"input": Decimal("15.00"), "cached_input": Decimal("1.50"), "cache_write": Decimal("18.75"),
                        "cache_write_1h": Decimal("30.00"), "output": Decimal("75.00")},
    "claude-sonnet-4-5": {"input": Decimal("3.00"), "cached_input": Decimal("0.30"), "cache_write": Decimal("3.75"),
                          "cache_write_1h": Decimal("6.00"), "output": Decimal("15.00")},
    "claude-haiku-4-5": {"input": Decimal("1.00"), "cached_input": Decimal("0.10"), "cache_write": Decimal("1.25"),
                         "cache_write_1h": Decimal("2.00"), "output": Decimal("5.00")},
}
ANTHROPIC_WEB_SEARCH_PER_REQUEST = Decimal("0.01")  # $10 per 1,000 searches
_ANTHROPIC_DISPLAY = {"claude-opus-4-1": "Claude Opus 4.1", "claude-sonnet-4-5": "Claude Sonnet 4.5",
                      "claude-haiku-4-5": "Claude Haiku 4.5"}
# usage-record field -> (cost_report token_type, price key, description words)
ANTHROPIC_TOKEN_TYPES = {
    "uncached_input_tokens": ("uncached_input_tokens", "input", "Input Tokens"),
    "cache_read_input_tokens": ("cache_read_input_tokens", "cached_input", "Cache Read Input Tokens"),
    "ephemeral_5m_input_tokens": ("cache_creation.ephemeral_5m_input_tokens", "cache_write",
                                  "5m Cache Write Input Tokens"),
    "ephemeral_1h_input_tokens": ("cache_creation.ephemeral_1h_input_tokens", "cache_write_1h",
                                  "1h Cache Write Input Tokens"),
    "output_tokens": ("output_tokens", "output", "Output Tokens"),
}
ANTHROPIC_TOKEN_FIELDS = tuple(ANTHROPIC_TOKEN_TYPES) + ("web_search_requests",)

# (workspace (None = default workspace), model, service_tier, requests/day at weekday peak,
#  mean prompt tokens/request, cache-read share, 5m-write share, 1h-write share, mean output/request,
#  web searches per request)
_ANTHROPIC_WORKLOADS = [
    ("wrkspc_support", "claude-sonnet-4-5-20250929", "standard", 2200, 6000, 0.70, 0.08, 0.0, 350, 0.02),
    ("wrkspc_support", "claude-haiku-4-5-20251001", "standard", 6500, 1800, 0.40, 0.05, 0.0, 160, 0.0),
    ("wrkspc_agents", "claude-opus-4-1-20250805", "standard", 180, 24000, 0.80, 0.02, 0.05, 1500, 0.0),
    ("wrkspc_agents", "claude-sonnet-4-5-20250929", "batch", 3000, 4000, 0.0, 0.0, 0.0, 600, 0.0),
    ("wrkspc_research", "claude-haiku-4-5-20251001", "batch", 9000, 2500, 0.0, 0.0, 0.0, 220, 0.0),
    (None, "claude-haiku-4-5-20251001", "standard", 400, 900, 0.0, 0.0, 0.0, 250, 0.0),
]


def anthropic_demo_usage(start: dt.date, days: int, seed: int) -> list[dict]:
    """`days` days of Anthropic Messages usage from `start`, one record per (day, workspace, model, tier):

        {"date": date, "workspace_id": str | None, "api_key_id": None, "model": str, "service_tier": str,
         "context_window": "0-200k", "inference_geo": "not_available",
         "uncached_input_tokens": int, "cache_read_input_tokens": int, "ephemeral_5m_input_tokens": int,
         "ephemeral_1h_input_tokens": int, "output_tokens": int, "web_search_requests": int}

    Input classes partition the prompt the way the API reports them (uncached excludes cache reads
    and writes). Batch workloads do no prompt caching and skip some days; `workspace_id=None` is the
    default workspace. Seeded per (seed, date) like `openai_demo_usage`.
    """
    out: list[dict] = []
    for day, rng in _seeded_days(start, days, f"anthropic-demo:{seed}"):
        weekend = day.weekday() >= 5
        growth = 1 + 0.003 * (day.toordinal() % 365)
        for workspace, model, tier, peak, prompt_mean, hit, w5m, w1h, out_mean, searches in _ANTHROPIC_WORKLOADS:
            batch = tier == "batch"
            if batch and rng.random() < 0.3:
                continue
            scale = (0.4 if weekend and not batch else 1.0) * growth * rng.uniform(0.8, 1.2)
            requests = max(1, int(peak * scale))
            prompt = int(requests * prompt_mean * rng.uniform(0.85, 1.15))
            read = int(prompt * hit * rng.uniform(0.9, 1.05))
            write_5m = int(prompt * w5m * rng.uniform(0.7, 1.3))
            write_1h = int(prompt * w1h * rng.uniform(0.7, 1.3))
            out.append({
                "date": day, "workspace_id": workspace, "api_key_id": None, "model": model, "service_tier": tier,
                "context_window": "0-200k", "inference_geo": "not_available",
                "uncached_input_tokens": prompt - read - write_5m - write_1h,
                "cache_read_input_tokens": read, "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
                "output_tokens": int(requests * out_mean * rng.uniform(0.8, 1.25)),
                "web_search_requests": int(requests * searches * rng.uniform(0.5, 1.5)),
            })
    return out


def anthropic_demo_costs(records: list[dict]) -> list[dict]:
    """The cost_report line items for `records`, per (day, workspace, model, tier, token type):

        {"date", "workspace_id", "description", "cost_type", "model", "token_type", "service_tier",
         "context_window", "inference_geo", "amount": Decimal (US CENTS, exact, fractional), "currency": "USD"}

    Token lines are priced with `ANTHROPIC_PRICES` (batch at half); web searches are one
    `cost_type="web_search"` line per workspace and day. Zero lines are left out; models without a
    price are not billed.
    """
    exact: dict[tuple, dict] = {}

    def add(key: tuple, fields: dict, dollars: Decimal) -> None:
        line = exact.setdefault(key, {**fields, "amount": Decimal(0), "currency": "USD"})
        line["amount"] += dollars * 100  # the API reports cents

    for rec in records:
        family = model_family(rec["model"])
        prices = ANTHROPIC_PRICES.get(family)
        if prices is None:
            continue
        batch = rec["service_tier"] == "batch"
        factor = BATCH_DISCOUNT if batch else Decimal(1)
        common = {"date": rec["date"], "workspace_id": rec.get("workspace_id"),
                  "context_window": rec.get("context_window"), "inference_geo": rec.get("inference_geo")}
        for field, (token_type, rate, words) in ANTHROPIC_TOKEN_TYPES.items():
            tokens = rec.get(field) or 0
            if not tokens:
                continue
            description = f"{_ANTHROPIC_DISPLAY[family]} {'Batch ' if batch else ''}{words}"
            add((rec["date"], rec.get("workspace_id"), description),
                {**common, "description": description, "cost_type": "tokens", "model": rec["model"],
                 "token_type": token_type, "service_tier": rec["service_tier"]},
                tokens * prices[rate] * factor / MILLION)
        if rec.get("web_search_requests"):
            add((rec["date"], rec.get("workspace_id"), "Web Search"),
                {**common, "description": "Web Search", "cost_type": "web_search", "model": None,
                 "token_type": None, "service_tier": None, "context_window": None, "inference_geo": None},
                rec["web_search_requests"] * ANTHROPIC_WEB_SEARCH_PER_REQUEST)
    return [exact[k] for k in sorted(exact, key=lambda k: (k[0], str(k[1]), k[2])) if exact[k]["amount"]]


# -- AWS Bedrock (CloudWatch AWS/Bedrock metrics) ----------------------------------------------------
# A ModelId dimension value per workload: base model ids, cross-region inference profiles (`us.`,
# `global.`) and one application inference profile ARN (which stands for claude-3-5-haiku).
BEDROCK_APP_PROFILE_ARN = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/demo0support"
BEDROCK_APP_PROFILE_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
BEDROCK_METRICS = ("InputTokenCount", "CacheReadInputTokenCount", "CacheWriteInputTokenCount", "OutputTokenCount",
                   "Invocations")
# (region, ModelId, invocations/day at weekday peak, mean uncached input/request, cache-read share of
#  the prompt (0 = the model's cache metrics are never published), cache-write share, mean output/request)
_BEDROCK_WORKLOADS = [
    ("us-east-1", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", 1500, 2500, 0.60, 0.06, 420),
    ("us-east-1", "anthropic.claude-3-5-sonnet-20240620-v1:0", 300, 3000, 0.0, 0.0, 500),
    ("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0", 4000, 800, 0.0, 0.0, 120),
    ("us-east-1", BEDROCK_APP_PROFILE_ARN, 2500, 1200, 0.30, 0.05, 200),
    ("us-east-1", "us.meta.llama3-3-70b-instruct-v1:0", 900, 1400, 0.0, 0.0, 300),
    ("us-east-1", "amazon.nova-pro-v1:0", 1200, 1800, 0.25, 0.0, 260),
    ("us-east-1", "amazon.nova-micro-v1:0", 7000, 400, 0.0, 0.0, 60),
    ("eu-west-1", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", 600, 2200, 0.50, 0.05, 380),
]


def bedrock_demo_usage(start: dt.date, days: int, seed: int, *, regions: tuple[str, ...] | None = None) -> list[dict]:
    """`days` days of Bedrock CloudWatch daily sums from `start`, one record per (day, region, ModelId):

        {"date": date, "region": str, "model_id": str, "InputTokenCount": int, "OutputTokenCount": int,
         "Invocations": int, "CacheReadInputTokenCount": int, "CacheWriteInputTokenCount": int}

    The two cache metrics are only present for workloads that use prompt caching (CloudWatch has no
    series for the others). InputTokenCount excludes cache reads and writes, as Bedrock reports it.
    Seeded per (seed, date) like the other demo generators; `regions` keeps only those regions.
    """
    out: list[dict] = []
    for day, rng in _seeded_days(start, days, f"bedrock-demo:{seed}"):
        weekend = day.weekday() >= 5
        growth = 1 + 0.002 * (day.toordinal() % 365)
        for region, model_id, peak, in_mean, hit, write, out_mean in _BEDROCK_WORKLOADS:
            scale = (0.3 if weekend else 1.0) * growth * rng.uniform(0.8, 1.2)
            calls = max(1, int(peak * scale))
            uncached = int(calls * in_mean * rng.uniform(0.85, 1.15))
            rec = {"date": day, "region": region, "model_id": model_id, "InputTokenCount": uncached,
                   "OutputTokenCount": int(calls * out_mean * rng.uniform(0.8, 1.25)), "Invocations": calls}
            if hit:
                rec["CacheReadInputTokenCount"] = int(uncached * hit / (1 - hit) * rng.uniform(0.9, 1.1))
                rec["CacheWriteInputTokenCount"] = int(uncached * write * rng.uniform(0.7, 1.3))
            if regions is None or region in regions:  # filtered after drawing, so values do not shift
                out.append(rec)
    return out


def bedrock_metric_data(records: list[dict]) -> dict[str, list[dict]]:
    """`put_metric_data` MetricData entries per region for `records` (namespace AWS/Bedrock).

    Each daily sum is split over three datapoints inside its UTC day, at 00:00:00, 12:34:56 and
    23:59:59, so a reader that gets the day boundaries wrong moves tokens to a neighbouring day.
    Call `put_metric_data(Namespace="AWS/Bedrock", MetricData=chunk)` with chunks of <= 1000.
    """
    by_region: dict[str, list[dict]] = {}
    for rec in records:
        base = dt.datetime(rec["date"].year, rec["date"].month, rec["date"].day, tzinfo=dt.timezone.utc)
        stamps = (base, base + dt.timedelta(hours=12, minutes=34, seconds=56),
                  base + dt.timedelta(hours=23, minutes=59, seconds=59))
        for metric in BEDROCK_METRICS:
            if metric not in rec:
                continue
            total = rec[metric]
            parts = (total // 4, total // 2, total - total // 4 - total // 2)
            for ts, part in zip(stamps, parts):
                by_region.setdefault(rec["region"], []).append({
                    "MetricName": metric, "Dimensions": [{"Name": "ModelId", "Value": rec["model_id"]}],
                    "Timestamp": ts, "Value": float(part), "Unit": "Count"})
    return by_region


# -- DeepSeek (console usage export CSV + /user/balance) ---------------------------------------------
# USD per 1M tokens at the standard (peak) rate; cache_hit = cached input, cache_miss = input.
DEEPSEEK_PRICES: dict[str, dict[str, Decimal]] = {
    "deepseek-chat": {"cache_hit": Decimal("0.028"), "cache_miss": Decimal("0.28"), "output": Decimal("0.42")},
    "deepseek-reasoner": {"cache_hit": Decimal("0.028"), "cache_miss": Decimal("0.28"), "output": Decimal("0.42")},
}
DEEPSEEK_DEMO_BALANCE = {"is_available": True, "balance_infos": [
    {"currency": "USD", "total_balance": "48.20", "granted_balance": "0.00", "topped_up_balance": "48.20"}]}
# (model, api key name, requests/day at weekday peak, mean prompt tokens/request, cache-hit share, mean output)
_DEEPSEEK_WORKLOADS = [
    ("deepseek-chat", "prod-chatbot", 3000, 1500, 0.55, 300),
    ("deepseek-chat", "batch-summaries", 800, 6000, 0.10, 700),
    ("deepseek-reasoner", "prod-chatbot", 250, 2500, 0.40, 3200),
]
DEEPSEEK_WIDE_HEADER = ("date", "model", "api_key_name", "input_cache_hit_tokens", "input_cache_miss_tokens",
                        "output_tokens", "request_count")
DEEPSEEK_LONG_HEADER = ("utc_date", "model", "api_key_name", "type", "price", "amount")
_DEEPSEEK_TYPES = {"input_cache_hit_tokens": "cache_hit", "input_cache_miss_tokens": "cache_miss",
                   "output_tokens": "output", "request_count": None}


def deepseek_demo_usage(start: dt.date, days: int, seed: int) -> list[dict]:
    """`days` days of DeepSeek usage from `start`, one record per (day, model, API key name):

        {"date": date, "model": str, "api_key_name": str, "input_cache_hit_tokens": int,
         "input_cache_miss_tokens": int, "output_tokens": int, "request_count": int}

    Seeded per (seed, date) like the other demo generators."""
    out: list[dict] = []
    for day, rng in _seeded_days(start, days, f"deepseek-demo:{seed}"):
        weekend = day.weekday() >= 5
        for model, key_name, peak, prompt_mean, hit, out_mean in _DEEPSEEK_WORKLOADS:
            requests = max(1, int(peak * (0.4 if weekend else 1.0) * rng.uniform(0.8, 1.2)))
            prompt = int(requests * prompt_mean * rng.uniform(0.85, 1.15))
            cached = int(prompt * hit * rng.uniform(0.9, 1.1)) // 64 * 64  # DeepSeek caches 64-token units
            out.append({"date": day, "model": model, "api_key_name": key_name,
                        "input_cache_hit_tokens": cached, "input_cache_miss_tokens": prompt - cached,
                        "output_tokens": int(requests * out_mean * rng.uniform(0.8, 1.25)),
                        "request_count": requests})
    return out


def deepseek_demo_csv(records: list[dict], *, layout: str = "wide") -> str:
    """`records` as console-export CSV text.

    layout="wide": one line per (date, model, key) with the DEEPSEEK_WIDE_HEADER columns.
    layout="long": one line per (utc_date, model, key, type) with DEEPSEEK_LONG_HEADER, `type` one of
    input_cache_hit_tokens / input_cache_miss_tokens / output_tokens / request_count and `price` the
    per-1M rate as a string (empty for request_count), the shape seen in public tooling (unverified).
    """
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if layout == "wide":
        w.writerow(DEEPSEEK_WIDE_HEADER)
        for r in records:
            w.writerow([r["date"].isoformat() if k == "date" else r[k] for k in DEEPSEEK_WIDE_HEADER])
    elif layout == "long":
        w.writerow(DEEPSEEK_LONG_HEADER)
        for r in records:
            prices = DEEPSEEK_PRICES.get(r["model"], {})
            for t, rate in _DEEPSEEK_TYPES.items():
                w.writerow([r["date"].isoformat(), r["model"], r["api_key_name"], t,
                            str(prices.get(rate, "")) if rate else "", r[t]])
    else:
        raise ValueError(f"layout must be 'wide' or 'long', not {layout!r}")
    return buf.getvalue()


# -- Gemini (Developer API) and Vertex AI: Cloud Monitoring points --------------------------------------
# USD per 1M tokens, list prices for prompts up to 200k tokens (https://ai.google.dev/gemini-api/docs/pricing
# and https://cloud.google.com/vertex-ai/generative-ai/pricing). Keys are model families.
GEMINI_PRICES: dict[str, dict[str, Decimal]] = {
    "gemini-2.5-pro": {"input": Decimal("1.25"), "output": Decimal("10.00")},
    "gemini-2.5-flash": {"input": Decimal("0.30"), "output": Decimal("2.50")},
    "gemini-2.5-flash-lite": {"input": Decimal("0.10"), "output": Decimal("0.40")},
    "gemini-2.0-flash": {"input": Decimal("0.10"), "output": Decimal("0.40")},
}
GEMINI_OUTPUT_METRIC = "generativelanguage.googleapis.com/generate_content_usage_output_token_count"
GEMINI_REQUESTS_METRIC = "generativelanguage.googleapis.com/quota/generate_requests_per_model/usage"
VERTEX_TOKEN_METRIC = "aiplatform.googleapis.com/publisher/online_serving/token_count"
VERTEX_REQUESTS_METRIC = "aiplatform.googleapis.com/publisher/online_serving/model_invocation_count"
GEMINI_DEMO_PROJECT = "acme-genai-prod"
VERTEX_DEMO_PROJECT = "acme-vertex-prod"


def gemini_input_metric(tier: str) -> str:
    return f"generativelanguage.googleapis.com/quota/generate_content_{tier}_input_token_count/usage"


# (model, tier, requests/day at weekday peak, mean input tokens/request, mean output tokens/request)
_GEMINI_WORKLOADS = [
    ("gemini-2.5-flash", "paid_tier", 7000, 1400, 260),
    ("gemini-2.5-pro", "paid_tier", 650, 6200, 1100),
    ("gemini-2.0-flash", "paid_tier", 14000, 380, 45),
]
_GEMINI_FREE_WORKLOAD = ("gemini-2.5-flash-lite", "free_tier", 300, 900, 150)
_GEMINI_METHODS = (("google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent", 0.7),
                   ("google.ai.generativelanguage.v1beta.GenerativeService.StreamGenerateContent", 0.3))


def _daily(rng: random.Random, day: dt.date, peak: int, in_mean: int, out_mean: int, damp: float) -> tuple[int, int, int]:
    scale = (damp if day.weekday() >= 5 else 1.0) * (1 + 0.003 * (day.toordinal() % 365)) * rng.uniform(0.8, 1.2)
    requests = max(1, int(peak * scale))
    return (requests, int(requests * in_mean * rng.uniform(0.85, 1.15)),
            int(requests * out_mean * rng.uniform(0.8, 1.25)))


def gemini_demo_usage(start: dt.date, days: int, seed: int, *, project: str = GEMINI_DEMO_PROJECT,
                      free_tier: bool = False) -> list[dict]:
    """`days` days of Gemini Developer API usage, one record per (day, model, tier):

        {"date": date, "project": str, "model": str, "tier": "paid_tier" | "free_tier",
         "input_tokens": int, "output_tokens": int, "requests": int}

    `free_tier=True` adds a free-tier workload. Seeded per (seed, project, date).
    """
    out = []
    workloads = _GEMINI_WORKLOADS + ([_GEMINI_FREE_WORKLOAD] if free_tier else [])
    for day, rng in _seeded_days(start, days, f"gemini-demo:{seed}:{project}"):
        for model, tier, peak, in_mean, out_mean in workloads:
            requests, tokens_in, tokens_out = _daily(rng, day, peak, in_mean, out_mean, 0.4)
            out.append({"date": day, "project": project, "model": model, "tier": tier,
                        "input_tokens": tokens_in, "output_tokens": tokens_out, "requests": requests})
    return out


def _split(value: int, shares: tuple[float, ...]) -> list[int]:
    """`value` split by shares into whole parts that add up to it exactly."""
    parts = [int(value * s) for s in shares[:-1]]
    return parts + [value - sum(parts)]


def gemini_metric_points(records: list[dict]) -> list[dict]:
    """Cloud Monitoring points for `gemini_demo_usage` records, one per (day, metric, raw series):

        {"date", "project", "metric_type", "metric_labels": {...}, "resource_type", "resource_labels": {...},
         "value": int}

    Each count is split across the GenerateContent and StreamGenerateContent methods (two raw series
    per model), so a REDUCE_SUM grouped by `metric.label.model` has something to reduce.
    """
    out = []
    for r in records:
        resource = {"resource_container": r["project"], "location": "global"}
        shares = tuple(s for _, s in _GEMINI_METHODS)
        for metric, rtype, value in (
                (GEMINI_OUTPUT_METRIC, "generativelanguage.googleapis.com/Location", r["output_tokens"]),
                (gemini_input_metric(r["tier"]), "consumer_quota", r["input_tokens"]),
                (GEMINI_REQUESTS_METRIC, "consumer_quota", r["requests"])):
            res = ({**resource, "service": "generativelanguage.googleapis.com"} if rtype == "consumer_quota"
                   else resource)
            for (method, _), part in zip(_GEMINI_METHODS, _split(value, shares)):
                out.append({"date": r["date"], "project": r["project"], "metric_type": metric,
                            "metric_labels": {"model": r["model"], "method": method}, "resource_type": rtype,
                            "resource_labels": dict(res), "value": part})
    return out


# (publisher, model_user_id, model_version_id, location, requests/day at weekday peak, mean input, mean output)
_VERTEX_WORKLOADS = [
    ("google", "gemini-2.5-flash", "default", "us-central1", 9000, 1100, 210),
    ("google", "gemini-2.5-pro", "default", "global", 800, 7000, 1300),
    ("anthropic", "claude-sonnet-4-5@20250929", "20250929", "us-east5", 1200, 3800, 420),
]


def vertex_demo_usage(start: dt.date, days: int, seed: int, *, project: str = VERTEX_DEMO_PROJECT) -> list[dict]:
    """`days` days of Vertex AI publisher-model usage, one record per (day, model):

        {"date": date, "project": str, "publisher": str, "model_user_id": str, "model_version_id": str,
         "location": str, "input_tokens": int, "output_tokens": int, "invocations": int}
    """
    out = []
    for day, rng in _seeded_days(start, days, f"vertex-demo:{seed}:{project}"):
        for publisher, model, version, location, peak, in_mean, out_mean in _VERTEX_WORKLOADS:
            requests, tokens_in, tokens_out = _daily(rng, day, peak, in_mean, out_mean, 0.5)
            out.append({"date": day, "project": project, "publisher": publisher, "model_user_id": model,
                        "model_version_id": version, "location": location, "input_tokens": tokens_in,
                        "output_tokens": tokens_out, "invocations": requests})
    return out


def vertex_metric_points(records: list[dict]) -> list[dict]:
    """Cloud Monitoring points (shape as in `gemini_metric_points`) for `vertex_demo_usage` records:
    token_count with `type` input/output split across two `request_type` series, and
    model_invocation_count split across response codes 200 and 429."""
    out = []
    for r in records:
        resource = {"resource_container": r["project"], "location": r["location"], "publisher": r["publisher"],
                    "model_user_id": r["model_user_id"], "model_version_id": r["model_version_id"]}
        base = {"date": r["date"], "project": r["project"], "resource_type": "aiplatform.googleapis.com/PublisherModel",
                "resource_labels": resource}
        for kind, value in (("input", r["input_tokens"]), ("output", r["output_tokens"])):
            for request_type, part in zip(("shared", "dedicated"), _split(value, (0.9, 0.1))):
                out.append({**base, "metric_type": VERTEX_TOKEN_METRIC,
                            "metric_labels": {"type": kind, "request_type": request_type}, "value": part})
        for code, part in zip(("200", "429"), _split(r["invocations"], (0.98, 0.02))):
            out.append({**base, "metric_type": VERTEX_REQUESTS_METRIC,
                        "metric_labels": {"response_code": code}, "value": part})
    return out


# -- Azure OpenAI: Azure Monitor metrics and Cost Management rows -----------------------------------------
# USD per 1M tokens, Global Standard list prices (https://azure.microsoft.com/pricing/details/cognitive-services/openai-service/).
AZURE_OPENAI_PRICES: dict[str, dict[str, Decimal]] = {
    "gpt-4o": {"input": Decimal("2.50"), "cached_input": Decimal("1.25"), "output": Decimal("10.00")},
    "gpt-4o-mini": {"input": Decimal("0.15"), "cached_input": Decimal("0.075"), "output": Decimal("0.60")},
    "gpt-4.1": {"input": Decimal("2.00"), "cached_input": Decimal("0.50"), "output": Decimal("8.00")},
}
AZURE_DEMO_SUBSCRIPTION = "/subscriptions/5d1f0c2a-7b3e-4c8d-9e61-0a2b3c4d5e6f"
AZURE_DEMO_RESOURCES = (
    f"{AZURE_DEMO_SUBSCRIPTION}/resourceGroups/rg-genai/providers/Microsoft.CognitiveServices/accounts/aoai-prod-eastus",
    f"{AZURE_DEMO_SUBSCRIPTION}/resourceGroups/rg-genai-dev/providers/Microsoft.CognitiveServices/accounts/aoai-dev-swc",
)
AZURE_OPENAI_SERVICE = "Foundry Models"
# (resource index, deployment, ModelName, ModelVersion, region, requests/day at weekday peak, mean prompt
#  tokens/request, cache-hit share, mean generated tokens/request)
_AZURE_WORKLOADS = [
    (0, "chat-gpt4o", "gpt-4o", "2024-11-20", "eastus", 2400, 2100, 0.35, 300),
    (0, "summarize-mini", "gpt-4o-mini", "2024-07-18", "eastus", 11000, 1600, 0.10, 140),
    (1, "eval-gpt41", "gpt-4.1", "2025-04-14", "swedencentral", 500, 5200, 0.50, 700),
]


def azure_openai_demo_usage(start: dt.date, days: int, seed: int,
                            resources: tuple[str, ...] = AZURE_DEMO_RESOURCES) -> list[dict]:
    """`days` days of Azure OpenAI usage, one record per (day, resource, deployment):

        {"date": date, "resource_id": str, "deployment": str, "model": str, "model_version": str,
         "region": str, "prompt_tokens": int, "cached_tokens": int, "generated_tokens": int, "requests": int}

    `prompt_tokens` includes `cached_tokens` (ProcessedPromptTokens counts every prompt token; the
    cached part only shows in billing, on its own meter).
    """
    out = []
    for day, rng in _seeded_days(start, days, f"azure-openai-demo:{seed}"):
        for idx, deployment, model, version, region, peak, in_mean, hit, out_mean in _AZURE_WORKLOADS:
            requests, prompt, generated = _daily(rng, day, peak, in_mean, out_mean, 0.3)
            cached = int(prompt * hit * rng.uniform(0.8, 1.1)) // 128 * 128
            out.append({"date": day, "resource_id": resources[idx % len(resources)], "deployment": deployment,
                        "model": model, "model_version": version, "region": region, "prompt_tokens": prompt,
                        "cached_tokens": min(cached, prompt), "generated_tokens": generated, "requests": requests})
    return out


def azure_meter_names(model: str, version: str) -> dict[str, str]:
    """The (inconsistent, as in real bills) meter names for a model version's token classes."""
    mmdd = version[5:7] + version[8:10]
    return {"input": f"{model}-{mmdd}-Inp-glbl Tokens", "cached_input": f"{model.replace('-', ' ')} {mmdd} cached Inp glbl",
            "output": f"{model}-{mmdd}-Outp-glbl Tokens"}


def azure_openai_demo_costs(records: list[dict]) -> list[dict]:
    """Cost Management detail for `records`, one line per (day, resource, meter):

        {"date", "resource_id", "meter_name", "service_name", "meter_category", "amount": Decimal (USD, exact),
         "currency": "USD"}

    Uncached prompt, cached prompt and generated tokens are priced with `AZURE_OPENAI_PRICES` on their
    own meters. One unrelated Cognitive Services line (Speech) per resource and day rides along, so a
    query must filter on the service to leave it out.
    """
    lines: dict[tuple, dict] = {}
    for r in records:
        prices = AZURE_OPENAI_PRICES.get(model_family(r["model"]))
        if prices is None:
            continue
        meters = azure_meter_names(r["model"], r["model_version"])
        for kind, tokens in (("input", r["prompt_tokens"] - r["cached_tokens"]), ("cached_input", r["cached_tokens"]),
                             ("output", r["generated_tokens"])):
            if not tokens:
                continue
            key = (r["date"], r["resource_id"], meters[kind])
            line = lines.setdefault(key, {"date": r["date"], "resource_id": r["resource_id"], "meter_name": meters[kind],
                                          "service_name": AZURE_OPENAI_SERVICE, "meter_category": AZURE_OPENAI_SERVICE,
                                          "amount": Decimal(0), "currency": "USD"})
            line["amount"] += tokens * prices[kind] / MILLION
        speech = (r["date"], r["resource_id"], "S1 Speech To Text")
        lines.setdefault(speech, {"date": r["date"], "resource_id": r["resource_id"], "meter_name": "S1 Speech To Text",
                                  "service_name": "Cognitive Services", "meter_category": "Cognitive Services",
                                  "amount": Decimal("1.25"), "currency": "USD"})
    return [lines[k] for k in sorted(lines)]
