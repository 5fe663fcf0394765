"""The Anthropic extractor against the loopback stub over real HTTP (no mocked transport)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import anthropic as anthropic_job
from stubs.anthropic import COSTS_PATH, USAGE_PATH, AnthropicStub
from stubs.genai_data import ANTHROPIC_PRICES, anthropic_demo_costs, anthropic_demo_usage, sum_fields
from tests.extractor_kit import (Sleeps, admin_key_ctx, assert_batches_in_table_schemas, assert_credential_refused,
                                 assert_provider_message_kept, refused_secret_message)
from tests.extractor_kit import rows as _rows

KEY = "sk-ant-admin01-test-0123456789abcdef"
START = dt.date(2026, 7, 1)
DAYS = 75
END = START + dt.timedelta(days=DAYS - 1)


def _ctx(stub: AnthropicStub, start: dt.date, end: dt.date, key: str = KEY) -> ExtractContext:
    return admin_key_ctx("genai/payg/anthropic", stub, start, end, key)


def _page(day: dt.date, results: list[dict]) -> dict:
    nxt = day + dt.timedelta(days=1)
    return {"data": [{"starting_at": f"{day}T00:00:00Z", "ending_at": f"{nxt}T00:00:00Z", "results": results}],
            "has_more": False, "next_page": None}


@pytest.fixture()
def usage():
    return anthropic_demo_usage(START, DAYS, seed=21)


@pytest.fixture()
def stub(usage):
    with AnthropicStub(admin_key=KEY, usage=usage) as s:
        yield s


# -- pagination and totals ------------------------------------------------------------------------

def test_pages_through_all_days_exactly_once(stub, usage):
    out = anthropic_job.extract(_ctx(stub, START, END))
    usage_requests = [r for r in stub.requests if r["path"] == USAGE_PATH]
    assert len(usage_requests) == 3  # 75 daily buckets at limit 31: 31 + 31 + 13
    assert "page" not in usage_requests[0]["params"]
    cursors = [r["params"]["page"][0] for r in usage_requests[1:]]
    assert len(set(cursors)) == 2
    first = usage_requests[0]["params"]
    assert first["group_by[]"] == ["model", "workspace_id", "service_tier"]  # repeated keys
    assert first["bucket_width"] == ["1d"] and first["limit"] == ["31"]
    assert first["starting_at"] == ["2026-07-01T00:00:00Z"]
    assert first["ending_at"] == ["2026-09-14T00:00:00Z"]  # exclusive: the day after END

    rows = _rows(out, "genai_usage_daily")
    assert sorted({r["usage_date"] for r in rows}) == [START + dt.timedelta(days=i) for i in range(DAYS)]
    keys = [(r["usage_date"], r["model"], r["project_id"], r["service_tier"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(usage)

    cost_requests = [r for r in stub.requests if r["path"] == COSTS_PATH]
    assert len(cost_requests) == 3
    assert cost_requests[0]["params"]["group_by[]"] == ["workspace_id", "description"]
    costs = _rows(out, "genai_provider_costs_daily")
    assert sorted({c["usage_date"] for c in costs}) == [START + dt.timedelta(days=i) for i in range(DAYS)]


def test_token_mapping_and_totals_equal_generated_data(stub, usage):
    ctx = _ctx(stub, START, END)
    rows = _rows(anthropic_job.extract(ctx), "genai_usage_daily")
    assert ctx.warnings == []
    want = sum_fields(usage, "uncached_input_tokens", "cache_read_input_tokens", "ephemeral_5m_input_tokens",
                      "ephemeral_1h_input_tokens", "output_tokens")
    assert want["ephemeral_5m_input_tokens"] > 0 and want["ephemeral_1h_input_tokens"] > 0
    assert sum(r["input_tokens"] for r in rows) == want["uncached_input_tokens"]
    assert sum(r["cached_input_tokens"] for r in rows) == want["cache_read_input_tokens"]
    assert sum(r["cache_write_tokens"] for r in rows) == want["ephemeral_5m_input_tokens"]
    assert sum(r["cache_write_1h_tokens"] for r in rows) == want["ephemeral_1h_input_tokens"]
    assert sum(r["output_tokens"] for r in rows) == want["output_tokens"]
    assert all(r["request_count"] is None and r["reasoning_tokens"] is None for r in rows)
    assert {r["provider"] for r in rows} == {"anthropic"}
    assert {r["model_family"] for r in rows} == set(ANTHROPIC_PRICES)
    assert {r["model_family"] for r in rows if r["model"] == "claude-sonnet-4-5-20250929"} == {"claude-sonnet-4-5"}
    # the default workspace stays null
    assert None in {r["project_id"] for r in rows}
    assert {r["project_id"] for r in rows} == {r["workspace_id"] for r in usage}

    # one day, one row, field by field
    rec = next(r for r in usage if r["ephemeral_1h_input_tokens"])
    row = next(r for r in rows if (r["usage_date"], r["model"], r["project_id"], r["service_tier"])
               == (rec["date"], rec["model"], rec["workspace_id"], rec["service_tier"]))
    assert row["input_tokens"] == rec["uncached_input_tokens"]
    assert row["cached_input_tokens"] == rec["cache_read_input_tokens"]
    assert row["cache_write_tokens"] == rec["ephemeral_5m_input_tokens"]
    assert row["cache_write_1h_tokens"] == rec["ephemeral_1h_input_tokens"]


def test_batch_flag_comes_from_service_tier(stub, usage):
    rows = _rows(anthropic_job.extract(_ctx(stub, START, END)), "genai_usage_daily")
    assert {r["service_tier"] for r in rows} == {"standard", "batch"}
    assert all(r["is_batch"] == (r["service_tier"] == "batch") for r in rows)
    assert sum(r["is_batch"] for r in rows) == sum(rec["service_tier"] == "batch" for rec in usage)


def test_priority_tier_is_not_batch_and_warns(stub):
    stub.enqueue(200, _page(START, [
        {"model": "claude-opus-4-1-20250805", "workspace_id": "w", "service_tier": "priority",
         "uncached_input_tokens": 10, "cache_read_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "output_tokens": 3},
        {"model": "claude-opus-4-1-20250805", "workspace_id": "w", "service_tier": None,
         "uncached_input_tokens": 5, "cache_read_input_tokens": None, "cache_creation": None, "output_tokens": 1},
    ]), path=USAGE_PATH)
    ctx = _ctx(stub, START, START)
    rows = _rows(anthropic_job.extract(ctx), "genai_usage_daily")
    assert sorted((str(r["service_tier"]), r["is_batch"], r["input_tokens"]) for r in rows) == [
        ("None", False, 5), ("priority", False, 10)]
    assert any("Priority Tier" in w for w in ctx.warnings)


def test_usage_token_rule_unit():
    r = {"uncached_input_tokens": 52000, "cache_read_input_tokens": 410000,
         "cache_creation": {"ephemeral_5m_input_tokens": 30000, "ephemeral_1h_input_tokens": 700},
         "output_tokens": 21000, "server_tool_use": {"web_search_requests": 12}}
    assert anthropic_job.usage_tokens(r) == {"input_tokens": 52000, "cached_input_tokens": 410000,
                                             "cache_write_tokens": 30000, "cache_write_1h_tokens": 700,
                                             "output_tokens": 21000}
    assert anthropic_job.usage_tokens({}) == {"input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0,
                                              "cache_write_1h_tokens": 0, "output_tokens": 0}


def test_batches_use_the_tables_arrow_schemas(stub):
    assert_batches_in_table_schemas(anthropic_job.extract(_ctx(stub, START, START + dt.timedelta(days=2))))


def test_same_seed_same_rows(usage):
    assert anthropic_demo_usage(START, DAYS, seed=21) == usage
    assert anthropic_demo_costs(anthropic_demo_usage(START, DAYS, seed=21)) == anthropic_demo_costs(usage)
    day = START + dt.timedelta(days=9)
    assert anthropic_demo_usage(day, 1, seed=21) == [r for r in usage if r["date"] == day]
    assert anthropic_demo_usage(START, 5, seed=22) != anthropic_demo_usage(START, 5, seed=21)


def test_empty_and_reversed_ranges():
    with AnthropicStub(admin_key=KEY, usage=[]) as s:
        out = anthropic_job.extract(_ctx(s, START, START + dt.timedelta(days=6)))
        assert out == {"genai_usage_daily": [], "genai_provider_costs_daily": []}
        assert anthropic_job.extract(_ctx(s, START, START - dt.timedelta(days=1))) == out


def test_days_outside_the_range_are_dropped_with_a_warning(stub):
    result = {"model": "claude-haiku-4-5-20251001", "workspace_id": None, "service_tier": "standard",
              "uncached_input_tokens": 10, "output_tokens": 5}
    page = _page(START, [result])
    page["data"].append({"starting_at": "2026-07-02T00:00:00Z", "ending_at": "2026-07-03T00:00:00Z",
                         "results": [result]})
    stub.enqueue(200, page, path=USAGE_PATH)
    ctx = _ctx(stub, START, START)
    rows = _rows(anthropic_job.extract(ctx), "genai_usage_daily")
    assert [r["usage_date"] for r in rows] == [START]
    assert len(ctx.warnings) == 1 and "outside" in ctx.warnings[0] and "2026-07-02" in ctx.warnings[0]


# -- money ------------------------------------------------------------------------------------------

def test_cost_totals_are_the_bill_in_dollars(stub, usage):
    costs = _rows(anthropic_job.extract(_ctx(stub, START, END)), "genai_provider_costs_daily")
    expected = anthropic_demo_costs(usage)
    assert len(costs) == len(expected)
    assert sum(c["amount"] for c in costs) == sum(e["amount"] for e in expected) / 100
    assert {c["currency"] for c in costs} == {"USD"}
    by_line = {(c["usage_date"], c["project_id"], c["line_item"]): c for c in costs}
    for e in expected[:25]:
        got = by_line[(e["date"], e["workspace_id"], e["description"])]
        assert got["amount"] == e["amount"].scaleb(-2)
        assert got["model"] == e["model"]
    web = [c for c in costs if c["line_item"] == "Web Search"]
    assert web and all(c["model"] is None for c in web)
    assert any(c["project_id"] is None for c in costs)  # default workspace
    batch = next(c for c in costs if c["line_item"] == "Claude Sonnet 4.5 Batch Input Tokens")
    assert batch["model"] == "claude-sonnet-4-5-20250929"


def test_cents_become_exact_dollars(stub):
    line = {"workspace_id": "wrkspc_a", "description": "Claude Sonnet 4.5 Input Tokens", "cost_type": "tokens",
            "model": "claude-sonnet-4-5-20250929", "token_type": "uncached_input_tokens", "service_tier": "standard"}
    stub.enqueue(200, _page(START, [
        {**line, "amount": "0.1", "currency": "USD"},
        {**line, "amount": "0.2", "currency": "USD"},
        {**line, "description": "Claude Sonnet 4.5 Batch Input Tokens", "amount": "1560.00000", "currency": "usd"},
        {**line, "description": "Claude Sonnet 4.5 Output Tokens", "amount": "123.45", "currency": "USD"},
        {**line, "description": "Claude Sonnet 4.5 Cache Read Input Tokens", "amount": "0.0000001",
         "currency": "USD"},
        {"workspace_id": None, "description": "Web Search", "cost_type": "web_search", "model": None,
         "amount": 7, "currency": "USD"},
        {"workspace_id": None, "description": "Code Execution Usage", "model": None, "amount": 12.5,
         "currency": "USD"},
        {"workspace_id": None, "description": "Broken", "amount": None, "currency": "USD"},
    ]), path=COSTS_PATH)
    ctx = _ctx(stub, START, START)
    costs = _rows(anthropic_job.extract(ctx), "genai_provider_costs_daily")
    assert all(isinstance(c["amount"], Decimal) for c in costs)
    by = {c["line_item"]: c for c in costs}
    assert by["Claude Sonnet 4.5 Input Tokens"]["amount"] == Decimal("0.003")  # 0.1 + 0.2 cents, exactly
    assert by["Claude Sonnet 4.5 Batch Input Tokens"]["amount"] == Decimal("15.6")
    assert by["Claude Sonnet 4.5 Batch Input Tokens"]["currency"] == "USD"
    assert by["Claude Sonnet 4.5 Output Tokens"]["amount"] == Decimal("1.2345")
    assert by["Claude Sonnet 4.5 Cache Read Input Tokens"]["amount"] == Decimal("0.000000001")
    assert by["Web Search"]["amount"] == Decimal("0.07") and by["Web Search"]["project_id"] is None
    assert by["Code Execution Usage"]["amount"] == Decimal("0.125")  # JSON number decoded as Decimal
    assert by["Claude Sonnet 4.5 Output Tokens"]["model"] == "claude-sonnet-4-5-20250929"
    assert "Broken" not in by and any("no amount" in w for w in ctx.warnings)


def test_cents_to_dollars_unit():
    f = anthropic_job.cents_to_dollars
    assert f("123.45") == Decimal("1.2345")
    assert f("0.01") == Decimal("0.0001")
    assert f("99999999999999999999999999999.99") == Decimal("999999999999999999999999999.9999")  # no context rounding
    assert f(Decimal("1")) == Decimal("0.01") and f(250) == Decimal("2.5")
    for bad in ("abc", "NaN", "Infinity", None, True):
        with pytest.raises(ExtractError):
            f(bad)


def test_sub_nano_dollar_amounts_are_rounded_with_a_warning(stub):
    stub.enqueue(200, _page(START, [{"workspace_id": None, "description": "Tiny", "amount": "0.00000004",
                                     "currency": "USD"}]), path=COSTS_PATH)
    ctx = _ctx(stub, START, START)
    costs = _rows(anthropic_job.extract(ctx), "genai_provider_costs_daily")
    assert costs[0]["amount"] == Decimal("0E-9")
    assert any("rounded" in w for w in ctx.warnings)


# -- retries and errors ---------------------------------------------------------------------------

def test_429_storm_mid_pagination_is_ridden_out(stub, usage):
    # the second usage page is refused five times with Retry-After: 3
    stub.fail_next(status=429, retry_after="3", times=5, path=USAGE_PATH, after=1)
    # and the cost report starts with a storm too
    stub.fail_next(status=429, retry_after="1", times=3, path=COSTS_PATH)
    sleeps = Sleeps()
    out = anthropic_job.extract(_ctx(stub, START, END), sleep=sleeps)
    assert sleeps == [3] * 5 + [1] * 3
    statuses = [r["status"] for r in stub.requests if r["path"] == USAGE_PATH]
    assert statuses == [200] + [429] * 5 + [200, 200]
    pages = [r["params"].get("page", [None])[0] for r in stub.requests if r["path"] == USAGE_PATH]
    assert len(set(pages[1:7])) == 1  # the same cursor was retried, not skipped
    rows = _rows(out, "genai_usage_daily")
    keys = [(r["usage_date"], r["model"], r["project_id"], r["service_tier"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(usage)
    assert sorted({r["usage_date"] for r in rows}) == [START + dt.timedelta(days=i) for i in range(DAYS)]
    assert sum(r["output_tokens"] for r in rows) == sum_fields(usage, "output_tokens")["output_tokens"]
    costs = _rows(out, "genai_provider_costs_daily")
    assert sum(c["amount"] for c in costs) == sum(e["amount"] for e in anthropic_demo_costs(usage)) / 100


def test_server_errors_back_off_then_succeed(stub):
    stub.fail_next(status=500, path=COSTS_PATH)
    stub.fail_next(drop=True, path=COSTS_PATH)
    sleeps = Sleeps()
    out = anthropic_job.extract(_ctx(stub, START, START + dt.timedelta(days=3)), sleep=sleeps)
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert out["genai_provider_costs_daily"]


def test_wrong_key_is_a_readable_credential_error(stub, caplog):
    wrong = "sk-ant-admin01-WRONG-9876543210fedcba"
    msg = refused_secret_message(anthropic_job.extract, _ctx(stub, START, START, key=wrong), stub, caplog, wrong)
    assert "Anthropic refused the admin key (HTTP 401)" in msg
    assert "cloudact credentials add acme anthropic --from-json FILE" in msg
    assert "invalid x-api-key" in msg


def test_forbidden_is_a_credential_error(stub):
    stub.fail_next(status=403, message="This key lacks permission for the Admin API", path=USAGE_PATH)
    with pytest.raises(CredentialError, match=r"HTTP 403.*lacks permission"):
        anthropic_job.extract(_ctx(stub, START, START), sleep=Sleeps())


def test_missing_admin_key_is_a_credential_error(stub):
    err = assert_credential_refused(anthropic_job.extract, _ctx(stub, START, START), stub, {}, "no admin_key")
    assert "cloudact credentials add acme anthropic" in str(err)


def test_bad_request_is_an_extract_error_with_the_provider_message(stub):
    assert_provider_message_kept(anthropic_job.extract, _ctx(stub, START, START), stub, USAGE_PATH,
                                 "group_by[]: invalid value")


def test_default_base_url_is_the_public_api():
    assert anthropic_job.DEFAULT_BASE_URL == "https://api.anthropic.com"


# -- the stub on its own ----------------------------------------------------------------------------

def test_stub_checks_headers_and_params(stub):
    url = f"{stub.base_url}{USAGE_PATH}"
    q = {"starting_at": "2026-07-01T00:00:00Z", "ending_at": "2026-07-02T00:00:00Z"}
    r = httpx.get(url, params=q, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url, params=q, headers={"x-api-key": KEY}).status_code == 400  # no anthropic-version
    h = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    assert httpx.get(url, headers=h).status_code == 400  # starting_at is required
    assert httpx.get(url, params={**q, "limit": 32}, headers=h).status_code == 400
    assert httpx.get(url, params={**q, "group_by[]": "description"}, headers=h).status_code == 400
    # ungrouped: dimensions come back null, tokens are summed, cache writes are nested
    results = httpx.get(url, params=q, headers=h).json()["data"][0]["results"]
    assert len(results) == 1 and results[0]["model"] is None and results[0]["workspace_id"] is None
    assert set(results[0]["cache_creation"]) == {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
    # cost amounts are strings in cents; line details only when grouped by description
    costs = httpx.get(f"{stub.base_url}{COSTS_PATH}", params=q, headers=h).json()["data"][0]["results"]
    assert len(costs) == 1 and isinstance(costs[0]["amount"], str) and costs[0]["token_type"] is None
    grouped = httpx.get(f"{stub.base_url}{COSTS_PATH}", params={**q, "group_by[]": "description"},
                        headers=h).json()["data"][0]["results"]
    assert sum(Decimal(c["amount"]) for c in grouped) == Decimal(costs[0]["amount"])
    assert {c["cost_type"] for c in grouped} == {"tokens", "web_search"}
