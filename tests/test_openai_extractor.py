"""The OpenAI extractor against the loopback stub over real HTTP (no mocked transport)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.genai import openai as openai_job
from shared.http import ApiClient, parse_retry_after
from shared.models import model_family
from stubs.genai_data import openai_demo_costs, openai_demo_usage, sum_fields
from stubs.openai import OpenAIStub
from tests.extractor_kit import (Sleeps, admin_key_ctx, assert_batches_in_table_schemas, assert_credential_refused,
                                 assert_provider_message_kept, refused_secret_message)
from tests.extractor_kit import rows as _rows

KEY = "sk-admin-test-0123456789abcdef"
START = dt.date(2026, 7, 1)
USAGE_PATH = "/v1/organization/usage/completions"
COSTS_PATH = "/v1/organization/costs"


def _ctx(stub: OpenAIStub, start: dt.date, end: dt.date, key: str = KEY) -> ExtractContext:
    return admin_key_ctx("genai/payg/openai", stub, start, end, key)


@pytest.fixture()
def usage():
    return openai_demo_usage(START, 75, seed=11)


@pytest.fixture()
def stub(usage):
    with OpenAIStub(admin_key=KEY, usage=usage) as s:
        yield s


# -- pagination and totals ------------------------------------------------------------------------

def test_pages_through_all_days_exactly_once(stub, usage):
    end = START + dt.timedelta(days=74)
    out = openai_job.extract(_ctx(stub, START, end))
    usage_requests = [r for r in stub.requests if r["path"] == USAGE_PATH]
    assert len(usage_requests) == 3  # 75 daily buckets at limit 31: 31 + 31 + 13
    assert "page" not in usage_requests[0]["params"]
    cursors = [r["params"]["page"][0] for r in usage_requests[1:]]
    assert len(set(cursors)) == 2 and all(c.startswith("page_") for c in cursors)
    first = usage_requests[0]["params"]
    assert first["group_by"] == ["model", "project_id", "batch", "service_tier"]
    assert first["bucket_width"] == ["1d"] and first["limit"] == ["31"]
    assert int(first["start_time"][0]) == int(dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc).timestamp())
    assert int(first["end_time"][0]) == int(dt.datetime(2026, 9, 14, tzinfo=dt.timezone.utc).timestamp())

    rows = _rows(out, "genai_usage_daily")
    days = sorted({r["usage_date"] for r in rows})
    assert days == [START + dt.timedelta(days=i) for i in range(75)]
    keys = [(r["usage_date"], r["model"], r["project_id"], r["service_tier"], r["is_batch"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(usage)

    costs_requests = [r for r in stub.requests if r["path"] == COSTS_PATH]
    assert len(costs_requests) == 1
    assert costs_requests[0]["params"]["group_by"] == ["project_id", "line_item"]
    assert costs_requests[0]["params"]["limit"] == ["180"]


def test_totals_equal_generated_data(stub, usage):
    end = START + dt.timedelta(days=74)
    ctx = _ctx(stub, START, end)
    out = openai_job.extract(ctx)
    assert ctx.warnings == []
    rows = _rows(out, "genai_usage_daily")
    want = sum_fields(usage, "input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests")
    assert sum(r["input_tokens"] for r in rows) == want["input_tokens"] - want["input_cached_tokens"]
    assert sum(r["cached_input_tokens"] for r in rows) == want["input_cached_tokens"]
    assert sum(r["output_tokens"] for r in rows) == want["output_tokens"]
    assert sum(r["request_count"] for r in rows) == want["num_model_requests"]
    assert all(r["cache_write_tokens"] == 0 and r["reasoning_tokens"] is None for r in rows)
    assert {r["provider"] for r in rows} == {"openai"}
    assert any(r["is_batch"] for r in rows) and not all(r["is_batch"] for r in rows)
    assert {r["model_family"] for r in rows if r["model"] == "gpt-4o-2024-08-06"} == {"gpt-4o"}
    assert len({r["project_id"] for r in rows}) == 3

    costs = _rows(out, "genai_provider_costs_daily")
    expected = openai_demo_costs(usage)
    assert len(costs) == len(expected)
    assert sum(c["amount"] for c in costs) == sum(c["amount"] for c in expected)
    assert {c["currency"] for c in costs} == {"USD"}
    by_item = {(c["usage_date"], c["project_id"], c["line_item"]): c for c in costs}
    sample = expected[0]
    got = by_item[(sample["date"], sample["project_id"], sample["line_item"])]
    assert got["amount"] == sample["amount"]
    assert got["model"] == sample["line_item"].split(", ")[0]


def test_batches_use_the_tables_arrow_schemas(stub):
    assert_batches_in_table_schemas(openai_job.extract(_ctx(stub, START, START + dt.timedelta(days=2))))


def test_same_seed_same_rows(usage):
    again = openai_demo_usage(START, 75, seed=11)
    assert again == usage
    assert openai_demo_costs(again) == openai_demo_costs(usage)
    # a day's rows do not depend on the window it was generated in
    assert openai_demo_usage(START + dt.timedelta(days=10), 1, seed=11) == [
        r for r in usage if r["date"] == START + dt.timedelta(days=10)]
    assert openai_demo_usage(START, 5, seed=12) != openai_demo_usage(START, 5, seed=11)


def test_empty_range_returns_empty_lists():
    with OpenAIStub(admin_key=KEY, usage=[]) as s:
        out = openai_job.extract(_ctx(s, START, START + dt.timedelta(days=6)))
        assert out == {"genai_usage_daily": [], "genai_provider_costs_daily": []}
        reversed_out = openai_job.extract(_ctx(s, START, START - dt.timedelta(days=1)))
        assert reversed_out == {"genai_usage_daily": [], "genai_provider_costs_daily": []}


def test_days_outside_the_range_are_dropped_with_a_warning(stub):
    day = START + dt.timedelta(days=3)
    ts = int(dt.datetime(2026, 7, 4, tzinfo=dt.timezone.utc).timestamp())
    result = {"object": "organization.usage.completions.result", "input_tokens": 10, "input_cached_tokens": 0,
              "output_tokens": 5, "num_model_requests": 1, "model": "gpt-4o-mini", "project_id": "p",
              "batch": False, "service_tier": "default"}
    stub.enqueue(200, {"object": "page", "has_more": False, "next_page": None, "data": [
        {"object": "bucket", "start_time": ts, "end_time": ts + 86400, "results": [result]},
        {"object": "bucket", "start_time": ts + 86400, "end_time": ts + 2 * 86400, "results": [result]},
    ]}, path=USAGE_PATH)
    ctx = _ctx(stub, day, day)
    rows = _rows(openai_job.extract(ctx), "genai_usage_daily")
    assert [r["usage_date"] for r in rows] == [day]
    assert len(ctx.warnings) == 1 and "outside" in ctx.warnings[0] and "2026-07-05" in ctx.warnings[0]


# -- retries and errors ---------------------------------------------------------------------------

def test_429_with_retry_after_zero_is_retried_immediately(stub):
    stub.fail_next(status=429, retry_after="0", times=2, path=USAGE_PATH)
    sleeps = Sleeps()
    out = openai_job.extract(_ctx(stub, START, START + dt.timedelta(days=4)), sleep=sleeps)
    assert sleeps == [0, 0]
    statuses = [r["status"] for r in stub.requests if r["path"] == USAGE_PATH]
    assert statuses == [429, 429, 200]
    assert {r["usage_date"] for r in _rows(out, "genai_usage_daily")} == {
        START + dt.timedelta(days=i) for i in range(5)}


def test_500_then_success_backs_off(stub):
    stub.fail_next(status=500, path=COSTS_PATH)
    stub.fail_next(status=502, path=COSTS_PATH)
    sleeps = Sleeps()
    out = openai_job.extract(_ctx(stub, START, START + dt.timedelta(days=4)), sleep=sleeps)
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential with jitter
    assert out["genai_provider_costs_daily"]


def test_dropped_connection_is_retried(stub):
    stub.fail_next(drop=True, path=USAGE_PATH)
    sleeps = Sleeps()
    out = openai_job.extract(_ctx(stub, START, START), sleep=sleeps)
    assert len(sleeps) == 1 and out["genai_usage_daily"]


def test_persistent_500_gives_up_after_max_attempts(stub):
    stub.fail_next(status=500, times=50, path=USAGE_PATH)
    sleeps = Sleeps()
    with pytest.raises(ExtractError) as err:
        openai_job.extract(_ctx(stub, START, START + dt.timedelta(days=4)), sleep=sleeps, max_attempts=8)
    assert not isinstance(err.value, CredentialError)
    msg = str(err.value)
    assert "HTTP 500" in msg and "8 attempts" in msg
    assert len([r for r in stub.requests if r["path"] == USAGE_PATH]) == 8
    assert len(sleeps) == 7 and all(s <= 30 for s in sleeps)


def test_wrong_key_is_a_readable_credential_error(stub, caplog):
    wrong = "sk-admin-WRONG-9876543210fedcba"
    msg = refused_secret_message(openai_job.extract, _ctx(stub, START, START, key=wrong), stub, caplog, wrong)
    assert "OpenAI refused the admin key (HTTP 401)" in msg
    assert "cloudact credentials add acme openai --from-json FILE" in msg
    assert wrong[:12] not in msg and wrong[-4:] not in msg  # nor a recognisable part of it


def test_missing_admin_key_is_a_credential_error(stub):
    assert_credential_refused(openai_job.extract, _ctx(stub, START, START), stub, {}, "no admin_key")


def test_other_4xx_is_an_extract_error_with_the_provider_message(stub):
    assert_provider_message_kept(openai_job.extract, _ctx(stub, START, START), stub, USAGE_PATH,
                                 "Invalid 'group_by' value")


# -- schema details ---------------------------------------------------------------------------------

def test_new_schema_partitions_are_used():
    recs = openai_demo_usage(START, 3, seed=5, partitioned=True)
    with OpenAIStub(admin_key=KEY, usage=recs) as s:
        out = openai_job.extract(_ctx(s, START, START + dt.timedelta(days=2)))
    rows = _rows(out, "genai_usage_daily")
    want = sum_fields(recs, "input_uncached_tokens", "input_cached_tokens", "input_cache_write_tokens",
                      "input_cache_write_12h_tokens", "input_tokens")
    assert want["input_cache_write_tokens"] > 0 and want["input_cache_write_12h_tokens"] > 0
    assert sum(r["input_tokens"] for r in rows) == want["input_uncached_tokens"]
    assert sum(r["cached_input_tokens"] for r in rows) == want["input_cached_tokens"]
    assert sum(r["cache_write_tokens"] for r in rows) == (
        want["input_cache_write_tokens"] + want["input_cache_write_12h_tokens"])
    # the partitions add back up to input_tokens, which is never priced on top of them
    assert (sum(r["input_tokens"] + r["cached_input_tokens"] + r["cache_write_tokens"] for r in rows)
            == want["input_tokens"])


def test_usage_token_rule_unit():
    old = {"input_tokens": 1000, "input_cached_tokens": 300, "output_tokens": 50, "num_model_requests": 2}
    assert openai_job.usage_tokens(old) == {"input_tokens": 700, "cached_input_tokens": 300,
                                            "cache_write_tokens": 0, "output_tokens": 50, "request_count": 2}
    new = {"input_tokens": 1100, "input_uncached_tokens": 650, "input_cached_tokens": 300,
           "input_cache_write_tokens": 100, "input_cache_write_12h_tokens": 50, "output_tokens": 9,
           "num_model_requests": None}
    assert openai_job.usage_tokens(new) == {"input_tokens": 650, "cached_input_tokens": 300,
                                            "cache_write_tokens": 150, "output_tokens": 9, "request_count": 0}


def test_rows_with_the_same_key_are_summed_and_null_batch_is_false(stub):
    ts = int(dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc).timestamp())
    base = {"input_tokens": 100, "input_cached_tokens": 40, "output_tokens": 7, "num_model_requests": 3,
            "model": "gpt-4-0613", "project_id": "p1", "service_tier": None}
    stub.enqueue(200, {"object": "page", "has_more": False, "next_page": None, "data": [
        {"object": "bucket", "start_time": ts, "end_time": ts + 86400,
         "results": [{**base, "batch": None}, {**base, "batch": False}, {**base, "batch": True}]}]},
        path=USAGE_PATH)
    rows = _rows(openai_job.extract(_ctx(stub, START, START)), "genai_usage_daily")
    assert len(rows) == 2
    non_batch = next(r for r in rows if not r["is_batch"])
    assert (non_batch["input_tokens"], non_batch["cached_input_tokens"], non_batch["request_count"]) == (120, 80, 6)
    assert non_batch["model_family"] == "gpt-4" and non_batch["service_tier"] is None


@pytest.mark.parametrize("model,family", [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4-0613", "gpt-4"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"),
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("o3-mini", "o3-mini"),
    ("o3-mini-2025-01-31", "o3-mini"),
    ("gpt-4-32k", "gpt-4-32k"),
    ("gpt-4-1106-preview", "gpt-4-1106-preview"),
    ("gpt-4.1-nano", "gpt-4.1-nano"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2"),
    ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro-preview"),
    ("gemini-1.5-pro-002", "gemini-1.5-pro-002"),
    ("gpt-4-9999", "gpt-4-9999"),
    ("  gpt-4o  ", "gpt-4o"),
])
def test_model_family(model, family):
    assert model_family(model) == family


# -- money ------------------------------------------------------------------------------------------

def test_cost_amounts_are_exact_decimals(stub):
    ts = int(dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc).timestamp())
    stub.enqueue(200, {"object": "page", "has_more": False, "next_page": None, "data": [
        {"object": "bucket", "start_time": ts, "end_time": ts + 86400, "results": [
            {"object": "organization.costs.result", "amount": {"value": 0.1, "currency": "usd"},
             "line_item": "gpt-4o-2024-08-06, input", "project_id": "proj_a"},
            {"object": "organization.costs.result", "amount": {"value": 0.2, "currency": "usd"},
             "line_item": "gpt-4o-2024-08-06, input", "project_id": "proj_a"},
            {"object": "organization.costs.result", "amount": {"value": 12.345678901, "currency": "eur"},
             "line_item": "Web search tool calls", "project_id": None},
            {"object": "organization.costs.result", "amount": {"value": 3, "currency": "usd"},
             "line_item": "ft:gpt-4o-mini-2024-07-18:acme::abc123, training", "project_id": "proj_a"},
        ]}]}, path=COSTS_PATH)
    costs = _rows(openai_job.extract(_ctx(stub, START, START)), "genai_provider_costs_daily")
    assert all(isinstance(c["amount"], Decimal) for c in costs)
    by_item = {c["line_item"]: c for c in costs}
    assert by_item["gpt-4o-2024-08-06, input"]["amount"] == Decimal("0.3")  # 0.1 + 0.2, not 0.30000000000000004
    assert by_item["gpt-4o-2024-08-06, input"]["model"] == "gpt-4o-2024-08-06"
    assert by_item["Web search tool calls"]["amount"] == Decimal("12.345678901")
    assert by_item["Web search tool calls"]["currency"] == "EUR"
    assert by_item["Web search tool calls"]["model"] is None and by_item["Web search tool calls"]["project_id"] is None
    assert by_item["ft:gpt-4o-mini-2024-07-18:acme::abc123, training"]["amount"] == Decimal(3)


def test_model_from_line_item():
    f = openai_job.model_from_line_item
    assert f("gpt-4o-2024-08-06, input") == "gpt-4o-2024-08-06"
    assert f("o3-mini, batch output") == "o3-mini"
    assert f("Web search tool calls") is None
    assert f("File search storage, per GB") is None
    assert f(None) is None and f("") is None


# -- the HTTP client on its own ---------------------------------------------------------------------

def test_client_sends_lists_as_repeated_keys_and_parses_decimals(stub):
    with ApiClient(stub.base_url, {"Authorization": f"Bearer {KEY}"}, provider="OpenAI") as c:
        page = c.get_json("/organization/costs", {"start_time": 1782864000, "end_time": 1782950400,
                                                  "group_by": ["project_id", "line_item"], "page": None})
    assert page["object"] == "page"
    req = stub.requests[-1]
    assert req["params"]["group_by"] == ["project_id", "line_item"] and "page" not in req["params"]
    values = [r["amount"]["value"] for b in page["data"] for r in b["results"]]
    assert values and all(isinstance(v, Decimal) for v in values)


def test_client_honours_http_date_retry_after(stub):
    stub.enqueue(503, {"error": {"message": "busy"}}, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    sleeps = Sleeps()
    with ApiClient(stub.base_url, {"Authorization": f"Bearer {KEY}"}, sleep=sleeps) as c:
        c.get_json("/organization/costs", {"start_time": 1782864000, "end_time": 1782950400})
    assert sleeps == [0.0]  # a date in the past means retry now


def test_parse_retry_after():
    now = lambda: 1_000_000_000.0  # noqa: E731 - 2001-09-09T01:46:40Z
    assert parse_retry_after("0") == 0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Sun, 09 Sep 2001 01:47:10 GMT", now=now) == pytest.approx(30)


def test_client_forbidden_uses_the_key_label_and_scrubs(stub):
    stub.fail_next(status=403, message="Key sk-admin-SECRETSECRET lacks api.usage.read")
    with ApiClient(stub.base_url, {"x-api-key": "sk-admin-SECRETSECRET"}, provider="Anthropic",
                   credential_kind="anthropic", org_slug="acme") as c:
        with pytest.raises(CredentialError) as err:
            c.get_json("/organization/costs", {"start_time": 0})
    msg = str(err.value)
    assert msg.startswith("Anthropic refused the admin key (HTTP 403)")
    assert "cloudact credentials add acme anthropic --from-json FILE" in msg
    assert "SECRETSECRET" not in msg and "lacks api.usage.read" in msg


def test_stub_requires_bearer_key_and_rejects_bad_params(stub):
    import httpx

    r = httpx.get(f"{stub.base_url}/organization/costs", params={"start_time": 0})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    h = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{stub.base_url}/organization/costs", headers=h).status_code == 400
    r = httpx.get(f"{stub.base_url}/organization/usage/completions", headers=h,
                  params={"start_time": 1782864000, "limit": 32})
    assert r.status_code == 400
    # ungrouped: group fields come back null and are summed over
    r = httpx.get(f"{stub.base_url}/organization/usage/completions", headers=h,
                  params={"start_time": 1782864000, "end_time": 1782950400})
    results = r.json()["data"][0]["results"]
    assert len(results) == 1 and results[0]["model"] is None and results[0]["project_id"] is None


def test_retry_settings_come_from_the_environment(stub, monkeypatch):
    from shared.http import retry_settings

    assert retry_settings() == {"max_attempts": 8, "backoff_base": 0.5, "backoff_max": 30.0}
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CLOUDACT_HTTP_BACKOFF_MAX", "0.01")
    stub.fail_next(status=503, times=10, path=USAGE_PATH)
    sleeps = Sleeps()
    with pytest.raises(ExtractError, match="3 attempts"):
        openai_job.extract(_ctx(stub, START, START), sleep=sleeps)
    assert len(sleeps) == 2 and all(s <= 0.01 for s in sleeps)
    monkeypatch.setenv("CLOUDACT_HTTP_MAX_ATTEMPTS", "zero")
    with pytest.raises(ValueError, match="CLOUDACT_HTTP_MAX_ATTEMPTS"):
        retry_settings()
