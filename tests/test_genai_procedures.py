"""sp_genai_1 and sp_genai_3 on DuckDB: exact prices per token class, effective dates, unpriced models."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from shared import schemas
from shared.lineage import Lineage
from shared.naming import org_dataset
from shared.warehouse.base import Slice

PIPELINE = "genai/payg/openai"
CRED = "cred_test"


def usage(day, model, family, inp, cached, write, out, batch=False, project="proj_a"):
    return {"usage_date": day, "provider": "openai", "model": model, "model_family": family, "project_id": project,
            "service_tier": None, "is_batch": batch, "input_tokens": inp, "cached_input_tokens": cached,
            "cache_write_tokens": write, "cache_write_1h_tokens": None, "output_tokens": out,
            "reasoning_tokens": None, "request_count": 10}


def land(wh, org, rows, start, end, run_id="run_a"):
    table = pa.Table.from_pylist(rows, schema=schemas.get("genai_usage_daily").arrow_schema(include_lineage=False))
    lin = Lineage(org, PIPELINE, CRED, run_id, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    owner = {"x_org_slug": org, "x_pipeline_id": PIPELINE, "x_credential_id": CRED}
    batches = [lin.stamp(b, "usage_date") for b in table.to_batches()]
    return wh.replace_slices(org_dataset(org), {"genai_usage_daily": (Slice(owner, "usage_date", start, end), batches)})


def convert(wh, org, start, end, run_id="run_a"):
    params = {"org_slug": org, "pipeline_id": PIPELINE, "credential_id": CRED, "run_id": run_id,
              "start_date": start, "end_date": end}
    wh.call_procedure(org_dataset(org), "sp_genai_1_consolidate_usage_daily", params)
    wh.call_procedure(org_dataset(org), "sp_genai_3_convert_to_focus", params)


def costs(wh, org):
    rows = wh.query(f"SELECT model, token_class, is_batch, usage_date, tokens, unit_price_per_1m, cost, price_status, priced_as "
                    f"FROM `{org}_prod.genai_costs_daily` ORDER BY usage_date, model, token_class")
    return {(r["usage_date"], r["model"], r["token_class"], r["is_batch"]): r for r in rows}


def test_prices_each_token_class_exactly_and_falls_back_to_family(rt, acme):
    d = dt.date(2025, 9, 1)
    land(rt.warehouse, acme, [
        usage(d, "gpt-4o-2024-08-06", "gpt-4o", 1_000_000, 300_000, 0, 85_000),
        usage(d, "gpt-4o-mini", "gpt-4o-mini", 123_457, 1, 0, 999, batch=True),
    ], d, d)
    convert(rt.warehouse, acme, d, d)
    c = costs(rt.warehouse, acme)
    assert c[(d, "gpt-4o-2024-08-06", "input", False)]["cost"] == Decimal("2.500000000")
    assert c[(d, "gpt-4o-2024-08-06", "cached_input", False)]["cost"] == Decimal("0.375000000")
    assert c[(d, "gpt-4o-2024-08-06", "output", False)]["cost"] == Decimal("0.850000000")
    assert c[(d, "gpt-4o-2024-08-06", "input", False)]["priced_as"] == "gpt-4o"
    # batch rates: 123,457 x $0.075/1M = 0.009259275; 1 cached x $0.0375/1M = 0.0000000375 -> 9 dp
    assert c[(d, "gpt-4o-mini", "input", True)]["cost"] == Decimal("0.009259275")
    assert c[(d, "gpt-4o-mini", "cached_input", True)]["unit_price_per_1m"] == Decimal("0.0375")
    assert c[(d, "gpt-4o-mini", "output", True)]["cost"] == Decimal("0.000299700")
    # zero-token classes produce no rows (no cache writes here)
    assert not any(k[2] == "cache_write" for k in c)


def test_exact_dated_price_wins_over_family(rt, acme):
    d = dt.date(2025, 9, 1)
    land(rt.warehouse, acme, [usage(d, "gpt-4o-2024-05-13", "gpt-4o", 1_000_000, 0, 0, 1_000_000)], d, d)
    convert(rt.warehouse, acme, d, d)
    c = costs(rt.warehouse, acme)
    assert c[(d, "gpt-4o-2024-05-13", "input", False)]["cost"] == Decimal("5.000000000")
    assert c[(d, "gpt-4o-2024-05-13", "output", False)]["priced_as"] == "gpt-4o-2024-05-13"


def test_price_in_effect_on_the_usage_date(rt, acme):
    before, after = dt.date(2025, 6, 9), dt.date(2025, 6, 10)
    land(rt.warehouse, acme, [usage(before, "o3", "o3", 1_000_000, 0, 0, 0),
                              usage(after, "o3", "o3", 1_000_000, 0, 0, 0)], before, after)
    convert(rt.warehouse, acme, before, after)
    c = costs(rt.warehouse, acme)
    assert c[(before, "o3", "input", False)]["cost"] == Decimal("10.000000000")
    assert c[(after, "o3", "input", False)]["cost"] == Decimal("2.000000000")


def test_unknown_model_is_unpriced_never_zero_and_stays_out_of_focus(rt, acme):
    d = dt.date(2025, 9, 1)
    land(rt.warehouse, acme, [usage(d, "mystery-model-9", "mystery-model-9", 5000, 0, 0, 100),
                              usage(d, "gpt-4o", "gpt-4o", 1000, 0, 0, 0)], d, d)
    convert(rt.warehouse, acme, d, d)
    c = costs(rt.warehouse, acme)
    row = c[(d, "mystery-model-9", "input", False)]
    assert row["price_status"] == "unpriced" and row["cost"] is None and row["unit_price_per_1m"] is None
    focus = rt.warehouse.query("SELECT SkuId FROM `acme_prod.cost_data_standard_1_3`")
    assert [r["SkuId"] for r in focus] == ["gpt-4o:input"]


def test_focus_rows_are_consistent_and_rerun_is_idempotent(rt, acme):
    start, end = dt.date(2025, 9, 1), dt.date(2025, 9, 3)
    rows = [usage(start + dt.timedelta(days=i), "gpt-4.1", "gpt-4.1", 1_234_567 * (i + 1), 20_000, 0, 33_333, project=p)
            for i in range(3) for p in ("proj_a", "proj_b")]
    land(rt.warehouse, acme, rows, start, end)
    convert(rt.warehouse, acme, start, end)
    q = """SELECT COUNT(*) AS n, SUM(BilledCost) AS billed, SUM(EffectiveCost) AS effective,
                  COUNTIF(ListUnitPrice * PricingQuantity != ListCost) AS list_mismatch,
                  COUNTIF(ChargePeriodEnd != TIMESTAMP_ADD(ChargePeriodStart, INTERVAL 1 DAY)) AS bad_period,
                  MIN(BillingPeriodStart) AS bp_start, MAX(BillingPeriodEnd) AS bp_end
           FROM `acme_prod.cost_data_standard_1_3`"""
    first = rt.warehouse.query(q)[0]
    total = rt.warehouse.query("SELECT SUM(cost) AS c FROM `acme_prod.genai_costs_daily`")[0]["c"]
    assert first["n"] == 18  # 3 days x 2 projects x (input, cached, output)
    assert first["billed"] == total == first["effective"]
    assert first["list_mismatch"] == 0 and first["bad_period"] == 0
    assert first["bp_start"] == dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc)
    assert first["bp_end"] == dt.datetime(2025, 10, 1, tzinfo=dt.timezone.utc)
    convert(rt.warehouse, acme, start, end, run_id="run_b")
    again = rt.warehouse.query(q)[0]
    assert again == first
    lineage = rt.warehouse.query("SELECT DISTINCT x_run_id, x_org_slug, x_pipeline_id, x_credential_id "
                                 "FROM `acme_prod.cost_data_standard_1_3`")
    assert lineage == [{"x_run_id": "run_b", "x_org_slug": "acme", "x_pipeline_id": PIPELINE, "x_credential_id": CRED}]


def test_rows_outside_the_slice_are_refused_and_nothing_changes(rt, acme):
    d = dt.date(2025, 9, 1)
    land(rt.warehouse, acme, [usage(d, "gpt-4o", "gpt-4o", 1, 0, 0, 1)], d, d)

    from shared.warehouse.base import WarehouseError

    with pytest.raises(WarehouseError, match="outside the run's slice"):
        land(rt.warehouse, acme, [usage(d, "gpt-4o", "gpt-4o", 2, 0, 0, 2),
                                  usage(d + dt.timedelta(days=5), "gpt-4o", "gpt-4o", 3, 0, 0, 3)], d, d)
    assert rt.warehouse.query("SELECT input_tokens FROM `acme_prod.genai_usage_daily`") == [{"input_tokens": 1}]


def land_billed(wh, org, rows, start, end):
    table = pa.Table.from_pylist(rows, schema=schemas.get("genai_provider_costs_daily").arrow_schema(include_lineage=False))
    lin = Lineage(org, PIPELINE, CRED, "run_a", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    owner = {"x_org_slug": org, "x_pipeline_id": PIPELINE, "x_credential_id": CRED}
    batches = [lin.stamp(b, "usage_date") for b in table.to_batches()]
    wh.replace_slices(org_dataset(org), {"genai_provider_costs_daily": (Slice(owner, "usage_date", start, end), batches)})


def billed(day, model, token_class, amount, line_item, project="proj_a", is_batch=False):
    return {"usage_date": day, "provider": "openai", "project_id": project, "line_item": line_item, "model": model,
            "token_class": token_class, "is_batch": is_batch if token_class else None,
            "amount": Decimal(amount), "currency": "USD"}


def test_billed_cost_wins_and_the_bill_is_matched_exactly(rt, acme):
    d = dt.date(2025, 9, 1)
    tiered = [dict(usage(d, "gpt-4o", "gpt-4o", 1_000_000, 0, 0, 0), service_tier=t) for t in ("default", "flex")]
    land(rt.warehouse, acme, [usage(d, "gpt-4o-mini", "gpt-4o-mini", 1_000_000, 0, 0, 1_000_000)] + tiered, d, d)
    land_billed(rt.warehouse, acme, [
        billed(d, "gpt-4o-mini", "input", "0.14", "gpt-4o-mini, input"),      # list 0.15: a discount
        billed(d, "gpt-4o-mini", "output", "0.60", "gpt-4o-mini, output"),
        billed(d, "gpt-4o", "input", "4.00", "gpt-4o, input"),                # two tiers share one line
        billed(d, None, None, "0.25", "web search calls"),                    # not a token charge
    ], d, d)
    convert(rt.warehouse, acme, d, d)
    rows = rt.warehouse.query("SELECT ChargeCategory, x_cost_source, SkuMeter, BilledCost, ListCost, "
                              "ServiceProviderName, InvoiceIssuerName FROM `acme_prod.cost_data_standard_1_3` "
                              "ORDER BY ChargeCategory, BilledCost")
    total = sum(r["BilledCost"] for r in rows)
    assert total == Decimal("0.14") + Decimal("0.60") + Decimal("4.00") + Decimal("0.25")
    mini_in = [r for r in rows if r["BilledCost"] == Decimal("0.14")][0]
    assert mini_in["x_cost_source"] == "billed" and mini_in["ListCost"] == Decimal("0.15")
    tier_rows = [r for r in rows if r["ChargeCategory"] == "Usage" and r["ListCost"] == Decimal("2.5")]
    assert len(tier_rows) == 2 and {r["x_cost_source"] for r in tier_rows} == {"computed"}
    adjustments = [r["BilledCost"] for r in rows if r["ChargeCategory"] == "Adjustment"]
    # one per day: web search +0.25, and 4.00 billed for the two tiers computed at 2 x 2.50
    assert adjustments == [Decimal("-0.75")]
    assert {r["InvoiceIssuerName"] for r in rows} == {"OpenAI"}


def test_one_hour_cache_writes_are_priced_apart_and_vendor_follows_the_model(rt, acme):
    d = dt.date(2025, 10, 20)
    row = usage(d, "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 0, 0, 1_000_000, 0)
    row.update(provider="anthropic", cache_write_1h_tokens=1_000_000)
    land(rt.warehouse, acme, [row], d, d)
    convert(rt.warehouse, acme, d, d)
    c = {r["token_class"]: r["cost"] for r in rt.warehouse.query(
        "SELECT token_class, cost FROM `acme_prod.genai_costs_daily`")}
    assert c == {"cache_write": Decimal("3.750000000"), "cache_write_1h": Decimal("6.000000000")}
    names = rt.warehouse.query("SELECT DISTINCT ServiceProviderName, HostProviderName, ServiceName "
                               "FROM `acme_prod.cost_data_standard_1_3`")
    assert names == [{"ServiceProviderName": "Anthropic", "HostProviderName": "Anthropic", "ServiceName": "Claude API"}]


# One model per provider, priced for every token class it has a rate for, normal and batch. Reasoning
# tokens are billed as output by every provider, so they are inside output_tokens.
PER_PROVIDER = {
    "openai": "o3-mini", "anthropic": "claude-sonnet-4-5-20250929", "gemini": "gemini-2.5-flash",
    "vertex": "gemini-2.5-pro", "azure_openai": "gpt-4o-mini", "bedrock": "anthropic.claude-3-5-haiku",
    "deepseek": "deepseek-reasoner",
}


@pytest.mark.parametrize("provider, model", sorted(PER_PROVIDER.items()))
def test_each_provider_prices_every_token_class_exactly(rt, acme, provider, model):
    from shared import pricing
    from shared.models import model_family

    day = dt.date(2025, 11, 3)
    family = model_family(model)
    price = next(p for p in pricing.load() if p["provider"] == provider and p["model"] in (model, family)
                 and p["effective_from"] <= day and (p["effective_to"] is None or day < p["effective_to"]))
    tokens = {"input": 1_234_567, "cached_input": 345_678, "cache_write": 23_456, "cache_write_1h": 7_890,
              "output": 987_654}
    rows = []
    for batch in (False, True):
        r = usage(day, model, family, tokens["input"], tokens["cached_input"], tokens["cache_write"], tokens["output"],
                  batch=batch)
        r.update(provider=provider, cache_write_1h_tokens=tokens["cache_write_1h"], reasoning_tokens=400_000)
        rows.append(r)
    land(rt.warehouse, acme, rows, day, day)
    convert(rt.warehouse, acme, day, day)
    got = {(r["token_class"], r["is_batch"]): r for r in rt.warehouse.query(
        "SELECT token_class, is_batch, cost, price_status FROM `acme_prod.genai_costs_daily`")}
    rate_key = {"input": "input", "cached_input": "cached_input", "cache_write": "cache_write",
                "cache_write_1h": "cache_write_1h", "output": "output"}
    checked = 0
    for (cls, batch), row in got.items():
        field = ("batch_" if batch else "") + rate_key[cls] + "_per_1m"
        rate = price.get(field)
        if rate is None:  # no such rate: reported as unpriced, never costed at 0
            assert row["price_status"] == "unpriced" and row["cost"] is None
            continue
        expected = (Decimal(tokens[cls]) * rate / Decimal(1_000_000)).quantize(Decimal("0.000000001"))
        assert row["cost"] == expected, (cls, batch)
        checked += 1
    assert checked >= 3  # input, cached or cache write, output at least


def test_rows_of_a_provider_without_facts_fail_the_conversion_instead_of_vanishing(rt, acme, monkeypatch):
    """The provider table joins LEFT: usage whose provider has no facts row reaches the FOCUS table with no
    InvoiceIssuerName, which the table refuses (REQUIRED on both engines), so the run fails; an inner join
    would drop the rows and the run would succeed with nothing converted."""
    import dataclasses

    from shared import registry
    from shared.warehouse.base import WarehouseError

    real = registry.pipelines()
    # openai's pipeline not yet available: the loader asks no facts of it and leaves it out of the table
    monkeypatch.setattr(registry, "pipelines",
                        lambda: {**real, PIPELINE: dataclasses.replace(real[PIPELINE], status="planned")})
    d = dt.date(2025, 9, 1)
    land(rt.warehouse, acme, [usage(d, "gpt-4.1", "gpt-4.1", 1_000_000, 0, 0, 1_000)], d, d)
    with pytest.raises(WarehouseError, match="sp_genai_3_convert_to_focus.*InvoiceIssuerName"):
        convert(rt.warehouse, acme, d, d)
    monkeypatch.setattr(registry, "pipelines", lambda: real)
    convert(rt.warehouse, acme, d, d)
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `acme_prod.cost_data_standard_1_3`")[0]["n"] == 2
