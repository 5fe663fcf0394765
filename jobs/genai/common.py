"""Pieces the GenAI admin-API extractors share: the admin-key client, the cursor paging loop, the
day-window filter, exact money decoding and the hand-off as Arrow batches."""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from shared import schemas
from shared.http import ApiClient, retry_settings
from shared.models import model_family

USAGE_TABLE = "genai_usage_daily"
COSTS_TABLE = "genai_provider_costs_daily"
MAX_PAGES = 10_000  # a guard against a cursor that never ends
NUMERIC_SCALE = Decimal("0.000000001")  # NUMERIC is decimal128(38, 9)


def int_or_zero(v: Any) -> int:
    """A token count from the JSON (null -> 0; Decimal/float with no fraction accepted)."""
    return 0 if v is None else int(v)


def admin_client(ctx: ExtractContext, *, provider: str, credential_kind: str, default_base_url: str,
                 key_example: str, headers: Callable[[str], Mapping[str, str]],
                 sleep: Callable[[float], Any], max_attempts: int | None) -> ApiClient:
    """An ApiClient for the credential's admin_key (CredentialError when there is none).

    Retry behaviour comes from `shared.http.retry_settings()`; `max_attempts` overrides it (tests).
    """
    key = (ctx.credential or {}).get("admin_key")
    if not key or not isinstance(key, str):
        raise CredentialError(
            f"The {provider} credential has no admin_key. Add one with "
            f"`cloudact credentials add {ctx.org_slug} {credential_kind} --from-json FILE` "
            f'(FILE: {{"admin_key": "{key_example}"}}).')
    base_url = str(ctx.credential.get("base_url") or default_base_url).rstrip("/")
    retry = retry_settings()
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    return ApiClient(base_url, headers(key), provider=provider, credential_kind=credential_kind,
                     key_label="admin key", org_slug=ctx.org_slug, log=ctx.log, sleep=sleep, **retry)


def iter_pages(client: ApiClient, path: str, params: dict[str, Any]) -> Iterator[dict]:
    """Every bucket of a `{"data": [...], "has_more", "next_page"}` endpoint, passing `page=<next_page>`
    while `has_more`. A missing or repeated cursor is an error, never a silent loop or a short read."""
    provider = client.provider
    seen: set[str] = set()
    cursor = None
    for _ in range(MAX_PAGES):
        page = client.get_json(path, {**params, "page": cursor})
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ExtractError(f"{provider} answered GET {path} with an unexpected shape (no 'data' list)")
        yield from page["data"]
        if not page.get("has_more"):
            return
        cursor = page.get("next_page")
        if not cursor:
            raise ExtractError(f"{provider} said GET {path} has more pages but gave no next_page cursor")
        if cursor in seen:
            raise ExtractError(f"{provider} returned the same next_page cursor twice for GET {path}; stopping")
        seen.add(cursor)
    raise ExtractError(f"GET {path} returned more than {MAX_PAGES} pages; narrow the date range")


class DayWindow:
    """Keeps buckets inside ctx.start_date..ctx.end_date and remembers days with data outside it."""

    def __init__(self, ctx: ExtractContext) -> None:
        self.ctx = ctx
        self.outside: set[dt.date] = set()

    def keep(self, day: dt.date, results: list) -> bool:
        if self.ctx.start_date <= day <= self.ctx.end_date:
            return True
        if results:
            self.outside.add(day)
        return False

    def results(self, buckets: Iterable[dict], day_of: Callable[[dict], dt.date]) -> Iterator[tuple[dt.date, dict]]:
        """(day, result) for each result of the buckets inside the window."""
        for bucket in buckets:
            day = day_of(bucket)
            results = bucket.get("results") or []
            if self.keep(day, results):
                for r in results:
                    yield day, r

    def warn(self, provider: str, what: str) -> None:
        if self.outside:
            o = self.outside
            self.ctx.warn(f"{provider} {what} returned data for {len(o)} day(s) outside "
                          f"{self.ctx.start_date}..{self.ctx.end_date} ({min(o)} to {max(o)}); "
                          "those rows were dropped")


def utc_date(raw: Any, error: str) -> dt.date:
    """The UTC day of an ISO 8601 time (`Z` or an offset; a time without one is taken as UTC);
    ExtractError(error) when it is not a time."""
    try:
        when = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ExtractError(error) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return when.date()


def decimal_amount(value: Any, provider: str) -> Decimal:
    """A money value from decoded JSON as an exact Decimal (strings and ints as written)."""
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            d = Decimal(value.strip() if isinstance(value, str) else value)
        except ArithmeticError:
            raise ExtractError(f"{provider} returned a cost amount that is not a number: {value!r}") from None
    elif isinstance(value, float):  # only if a caller decoded without parse_float=Decimal
        d = Decimal(repr(value))
    else:
        raise ExtractError(f"{provider} returned a cost amount that is not a number: {value!r}")
    if not d.is_finite():
        raise ExtractError(f"{provider} returned a cost amount that is not a finite number: {value!r}")
    return d


def to_numeric(amount: Decimal) -> Decimal:
    """NUMERIC keeps 9 decimals; anything finer than a nano-dollar is rounded half-even."""
    return amount.quantize(NUMERIC_SCALE, rounding=ROUND_HALF_EVEN)


def usage_row(day: dt.date, provider: str, model: str, project_id: str | None, *,
              cloud_account_id: str | None = None, service_tier: str | None = None, is_batch: bool = False,
              family: Callable[[str], str] = model_family, cache_write_1h_tokens: int | None = None,
              request_count: int | None = None, **tokens: int) -> dict:
    """A genai_usage_daily row: one place for the column set, so every provider lands the same shape.

    Token columns start at 0 (or the given `tokens`) for the extractor to add to; a column the provider
    does not report (1-hour cache writes, requests) is None unless the caller gives it a starting value,
    and reasoning tokens are None everywhere: every provider here bills them inside output_tokens."""
    unknown = set(tokens) - {"input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"}
    if unknown:
        raise TypeError(f"usage_row() got unknown token columns {sorted(unknown)}")
    return {"usage_date": day, "provider": provider, "model": model, "model_family": family(model),
            "project_id": project_id, "cloud_account_id": cloud_account_id, "service_tier": service_tier,
            "is_batch": is_batch, "input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0,
            "cache_write_1h_tokens": cache_write_1h_tokens, "output_tokens": 0, "reasoning_tokens": None,
            "request_count": request_count, **tokens}


def to_batches(table: str, rows: list[dict]) -> list[pa.RecordBatch]:
    if not rows:
        return []
    return [pa.RecordBatch.from_pylist(rows, schema=schemas.get(table).arrow_schema(include_lineage=False))]


def cost_lines(ctx: ExtractContext, buckets, *, provider: str, what: str, provider_id: str,
               day_of: Callable[[dict], dt.date], line_of: Callable[[dict], tuple[dict, Decimal] | None],
               warn_rounding: bool) -> list[dict]:
    """genai_provider_costs_daily rows from a cost API's daily buckets.

    `line_of(result)` gives (the row's fields other than usage_date/provider/amount, the amount as an
    exact Decimal) or None when the result has no amount. Results with the same fields on the same day
    are summed; amounts are stored to NUMERIC's 9 decimals (with a warning when `warn_rounding`).
    """
    agg: dict[tuple, dict] = {}
    window = DayWindow(ctx)
    no_amount = 0
    for day, r in window.results(buckets, day_of):
        line = line_of(r)
        if line is None:
            no_amount += 1
            continue
        fields, amount = line
        key = (day, *(str(v) for v in fields.values()))
        row = agg.get(key)
        if row is None:
            row = agg[key] = {"usage_date": day, "provider": provider_id, **fields, "amount": Decimal(0)}
        row["amount"] += amount
    window.warn(provider, what)
    if no_amount:
        ctx.warn(f"{no_amount} {provider} cost result(s) had no amount and were skipped")
    rows = [agg[k] for k in sorted(agg)]
    inexact = 0
    for row in rows:
        exact = row["amount"]
        row["amount"] = to_numeric(exact)
        inexact += row["amount"] != exact
    if inexact and warn_rounding:
        ctx.warn(f"{inexact} {provider} cost line(s) had more than 9 decimal places of dollars and were rounded "
                 "to the nano-dollar")
    return rows
