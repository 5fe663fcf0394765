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


def openai_demo_usage(start: dt.date, days: int, seed: int, *, partitioned: bool = False) -> list[dict]:
    """`days` days of OpenAI completions usage from `start` (see module docstring)."""
    out: list[dict] = []
    for i in range(max(0, days)):
        day = start + dt.timedelta(days=i)
        rng = random.Random(f"openai-demo:{seed}:{day.isoformat()}")
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
    for i in range(max(0, days)):
        day = start + dt.timedelta(days=i)
        rng = random.Random(f"anthropic-demo:{seed}:{day.isoformat()}")
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
