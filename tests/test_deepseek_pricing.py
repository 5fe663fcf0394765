"""DeepSeek through the pipeline: off-peak lines priced at the off-peak rate, and the balance delta set
beside the computed cost. Runs go through the HTTP API, the bus, the job and the procedures."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from jobs.genai import deepseek as deepseek_job
from shared import pricing, runs
from shared.auth import create_key
from shared.secrets import CredentialStore
from stubs.deepseek import DeepSeekStub
from stubs.genai_data import deepseek_demo_csv, deepseek_demo_usage
from tests.genai_prices import cost, list_price
from tests.test_deepseek_extractor import WINDOW_EDGES, lines_csv, off_peak, timed_lines

KEY = "sk-deepseek-pricing-test"
CLASSES = (("input", "input_cache_miss_tokens"), ("cached_input", "input_cache_hit_tokens"), ("output", "output_tokens"))


@pytest.fixture()
def deepseek(rt, acme, tmp_path):
    from cli.server import app

    folder = tmp_path / "exports"
    folder.mkdir()
    with DeepSeekStub(api_key=KEY) as stub:
        CredentialStore(rt.warehouse, rt.settings).add(
            "acme", "deepseek", {"api_key": KEY, "base_url": stub.base_url, "usage_csv_dir": f"file://{folder}"})
        yield {"rt": rt, "wh": rt.warehouse, "client": app().test_client(), "folder": folder, "stub": stub,
               "h": {"X-API-Key": create_key(rt.warehouse, "acme")}}


def run(s, start: dt.date, end: dt.date) -> dict:
    r = s["client"].post("/api/v1/pipelines/run/acme/genai/payg/deepseek", headers=s["h"],
                         json={"start_date": start.isoformat(), "end_date": end.isoformat()})
    assert r.status_code == 202, r.json
    s["rt"].bus.drain()
    done = runs.public_view(runs.get_run(s["wh"], "acme", r.json["run_id"]))
    assert done["status"] == "succeeded", done
    return done


def test_off_peak_lines_are_priced_at_the_off_peak_rate(deepseek):
    s = deepseek
    lines = timed_lines(WINDOW_EDGES, 48, step_minutes=10)
    (s["folder"] / "requests.csv").write_text(lines_csv(lines))
    run(s, dt.date(2025, 2, 26), dt.date(2025, 2, 27))
    run(s, dt.date(2025, 9, 4), dt.date(2025, 9, 5))
    want: dict[tuple, Decimal] = {}
    tokens: dict[tuple, int] = {}
    for t, model, _, hit, miss, out, _ in lines:
        tier = "off_peak" if off_peak(t) else None
        for (token_class, _), n in zip(CLASSES, (miss, hit, out)):
            key = (t.date(), model, token_class, tier)
            tokens[key] = tokens.get(key, 0) + n
    for (day, model, token_class, tier), n in tokens.items():
        want[(day, f"{model}:{token_class}:{tier or 'default'}")] = cost(n, list_price("deepseek", model, token_class,
                                                                                        day, tier=tier))
    got = {(r["day"], r["SkuPriceId"]): r["ListCost"] for r in s["wh"].query(
        "SELECT DATE(ChargePeriodStart) AS day, SkuPriceId, ListCost FROM `acme_prod.cost_data_standard_1_3`")}
    assert got == want
    # the off-peak rate really is lower: the same tokens at the standard rate would cost more
    standard = sum(cost(n, list_price("deepseek", m, c, d)) for (d, m, c, _), n in tokens.items())
    total = s["wh"].query("SELECT SUM(BilledCost) AS b FROM `acme_prod.cost_data_standard_1_3`")[0]["b"]
    assert total == sum(want.values()) < standard


def test_a_window_without_its_tier_price_is_refused(tmp_path):
    text = (pricing.PRICING_PATH.read_text()
            .replace("service_tier: off_peak, input: 0.135", "service_tier: night, input: 0.135", 1))
    p = tmp_path / "genai_pricing.yml"
    p.write_text(text)
    with pytest.raises(pricing.PricingError, match="deepseek-chat has no off_peak price on every day from 2025-02-26"):
        pricing.load(p)
    p.write_text(pricing.PRICING_PATH.read_text().replace('from_utc: "16:30"', "from_utc: 16:30"))
    with pytest.raises(pricing.PricingError, match="quoted times"):
        pricing.load(p)
    p.write_text(pricing.PRICING_PATH.read_text().replace("effective_to: 2025-09-06, service_tier: off_peak",
                                                          "effective_to: 2025-09-05, service_tier: off_peak", 1))
    with pytest.raises(pricing.PricingError, match="no off_peak price on every day from 2025-02-26 to 2025-09-05"):
        pricing.load(p)
    p.write_text(pricing.PRICING_PATH.read_text().replace(
        "      - {effective_from: 2025-02-26, effective_to: 2025-09-06, service_tier: off_peak,",
        "      - {effective_from: 2025-09-01, effective_to: 2025-09-10, service_tier: off_peak, input: 1, output: 1}\n"
        "      - {effective_from: 2025-02-26, effective_to: 2025-09-06, service_tier: off_peak,", 1))
    with pytest.raises(pricing.PricingError, match=r"deepseek/deepseek-chat \(off_peak\) has overlapping prices"):
        pricing.load(p)


# -- balance-delta reconciliation -------------------------------------------------------------------

def balance(total: str, topped_up: str, granted: str = "0.00") -> dict:
    return {"is_available": True, "balance_infos": [
        {"currency": "USD", "total_balance": total, "granted_balance": granted, "topped_up_balance": topped_up}]}


def test_balance_delta_is_set_beside_the_computed_cost(deepseek, monkeypatch):
    s = deepseek
    today = dt.datetime.now(dt.timezone.utc).date()
    first_day = today - dt.timedelta(days=6)
    records = deepseek_demo_usage(first_day, 6, seed=9)
    (s["folder"] / "export.csv").write_text(deepseek_demo_csv(records))
    computed = sum(cost(r[f], list_price("deepseek", r["model"], c, r["date"])) for r in records for c, f in CLASSES)

    # a run six days ago sampled the balance at 03:00 (its export did not reach these days yet)
    earlier = dt.datetime.combine(first_day, dt.time(3), dt.timezone.utc)
    monkeypatch.setattr(deepseek_job, "_now", lambda: earlier)
    s["stub"].balance = balance("50.000000000", "50.000000000")
    first = run(s, first_day - dt.timedelta(days=2), first_day - dt.timedelta(days=1))
    [entry] = first["quality"]["balance_reconciliation"]
    assert entry["status"] == "first sample" and entry["balance"] == "50.000000000"

    # today: the balance went down by what was spent; the computed cost of those six days is beside it
    monkeypatch.setattr(deepseek_job, "_now", lambda: dt.datetime.combine(today, dt.time(3), dt.timezone.utc))
    s["stub"].balance = balance("47.250000000", "47.250000000")
    second = run(s, first_day, today - dt.timedelta(days=1))
    [entry] = second["quality"]["balance_reconciliation"]
    spent = Decimal("50") - Decimal("47.25")
    assert entry["status"] == "compared" and entry["days"] == 6 and entry["days_with_usage"] == 6
    assert (Decimal(entry["spent"]), Decimal(entry["computed"]), Decimal(entry["difference"])) == (
        spent, computed, computed - spent)
    assert (entry["days_from"], entry["days_to"]) == (first_day.isoformat(), (today - dt.timedelta(days=1)).isoformat())
    samples = s["wh"].query("SELECT x_run_id, total_balance FROM `acme_prod.genai_balance_samples` ORDER BY sampled_at")
    assert [r["x_run_id"] for r in samples] == [first["run_id"], second["run_id"]]  # each run keeps its own

    # a top-up between samples hides spend: reported, not compared; a run the same day has no whole day
    s["stub"].balance = balance("60.000000000", "60.000000000")
    monkeypatch.setattr(deepseek_job, "_now", lambda: dt.datetime.combine(today, dt.time(9), dt.timezone.utc))
    [entry] = run(s, first_day, today - dt.timedelta(days=1))["quality"]["balance_reconciliation"]
    assert entry["status"] == "not compared" and "topped up balance went up" in entry["note"]
    s["stub"].balance = balance("59.000000000", "59.000000000")
    monkeypatch.setattr(deepseek_job, "_now", lambda: dt.datetime.combine(today, dt.time(10), dt.timezone.utc))
    [entry] = run(s, first_day, today - dt.timedelta(days=1))["quality"]["balance_reconciliation"]
    assert entry["status"] == "not compared" and "same UTC day" in entry["note"]
