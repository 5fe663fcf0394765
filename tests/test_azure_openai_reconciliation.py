"""Azure OpenAI billed vs computed meet: Cost Management bills a model version on an account's meter
(`gpt-4o-1120-Outp-glbl Tokens`), Azure Monitor counts a deployment's tokens under its ModelName (`gpt-4o`) and
ModelVersion (`2024-11-20`). The whole chain over real HTTP against the loopback stub: extractor -> raw tables ->
sp_genai_1/3 -> `cloudact reconcile` and FOCUS rows. Expected money is summed here from the stub's own cost
lines and usage records, never from the project's code."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest

from cli.reports import genai_reconciliation
from stubs.azure_monitor import AzureMonitorStub
from stubs.genai_data import (AZURE_DEMO_RESOURCES, AZURE_DEMO_SUBSCRIPTION, AZURE_OPENAI_PRICES, AZURE_OPENAI_SERVICE,
                              azure_meter_names, azure_openai_demo_costs, azure_openai_demo_usage)
from tests import cloud_kit as kit

PIPELINE, CRED = "genai/payg/azure_openai", "cred_aoai"
TOKEN = "eyJ0eXAiOiJKV1Qi.reconcile-token-0123456789"
START, DAYS = dt.date(2026, 7, 1), 4
END = START + dt.timedelta(days=DAYS - 1)
MILLION = Decimal(1_000_000)


def _credential(stub) -> dict:
    return {"access_token": TOKEN, "resource_ids": sorted({r["resource_id"] for r in stub.usage}),
            "cost_scope": AZURE_DEMO_SUBSCRIPTION, "base_url": stub.base_url}


def _run(wh, usage: list[dict]) -> list[dict]:
    with AzureMonitorStub(access_token=TOKEN, usage=usage, cost_scope=AZURE_DEMO_SUBSCRIPTION) as stub:
        kit.land_and_convert(wh, PIPELINE, CRED, _credential(stub), START, END)
        return stub.costs


def _billed_by_model(usage: list[dict], lines: list[dict]) -> dict[str, Decimal]:
    """The stub's OpenAI cost lines summed per ModelName: each line's meter names one record's model version."""
    model_of = {(r["resource_id"], meter): r["model"] for r in usage
                for meter in azure_meter_names(r["model"], r["model_version"]).values()}
    out: dict[str, Decimal] = defaultdict(Decimal)
    for c in lines:
        if c["service_name"] == AZURE_OPENAI_SERVICE:
            out[model_of[(c["resource_id"], c["meter_name"])]] += c["amount"]
    return dict(out)


def _computed_by_model(usage: list[dict]) -> dict[str, Decimal]:
    """List price of the metered tokens: Azure Monitor counts cached prompt tokens as prompt tokens."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for r in usage:
        p = AZURE_OPENAI_PRICES[r["model"]]
        out[r["model"]] += (r["prompt_tokens"] * p["input"] + r["generated_tokens"] * p["output"]) / MILLION
    return dict(out)


def test_reconcile_meets_billed_and_computed_for_every_model(rt, acme):
    wh = rt.warehouse
    usage = azure_openai_demo_usage(START, DAYS, seed=9)
    lines = _run(wh, usage)
    billed, computed = _billed_by_model(usage, lines), _computed_by_model(usage)
    report = {r["model"]: r for r in genai_reconciliation(wh, "acme") if r["provider"] == "azure_openai"}
    assert set(report) == set(billed) == set(computed) == {"gpt-4o", "gpt-4o-mini", "gpt-4.1"}
    for model, r in report.items():
        assert (r["billed_cost"], r["computed_cost"]) == (billed[model], computed[model]), model
        assert r["difference"] == billed[model] - computed[model] and r["difference"] < 0  # the cache discount
    by_day = genai_reconciliation(wh, "acme", by_day=True)
    assert len(by_day) == DAYS * 3 and all(r["difference"] is not None for r in by_day)


def test_each_billed_line_lands_on_its_deployments_row(rt, acme):
    """One deployment per model version in an account: its FOCUS rows carry the bill (x_cost_source 'billed'),
    the cached-prompt meter included in the prompt row, so no Adjustment is left over."""
    wh = rt.warehouse
    usage = azure_openai_demo_usage(START, DAYS, seed=9)
    lines = _run(wh, usage)
    rows = wh.query("SELECT ChargeCategory, SubAccountId, SkuMeter, ChargePeriodStart, BilledCost, x_cost_source "
                    "FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    assert {r["ChargeCategory"] for r in rows} == {"Usage"} and {r["x_cost_source"] for r in rows} == {"billed"}
    expected: dict[tuple, Decimal] = defaultdict(Decimal)
    deployment_of = {(r["date"], r["resource_id"], m): r["deployment"] for r in usage
                     for m in azure_meter_names(r["model"], r["model_version"]).values()}
    for c in lines:
        if c["service_name"] == AZURE_OPENAI_SERVICE:
            meter = "Output Tokens" if "-Outp-" in c["meter_name"] else "Input Tokens"
            expected[(c["date"], deployment_of[(c["date"], c["resource_id"], c["meter_name"])], meter)] += c["amount"]
    got = {(r["ChargePeriodStart"].date(), r["SubAccountId"], r["SkuMeter"]): r["BilledCost"] for r in rows}
    assert got == dict(expected)


def _record(day, resource, deployment, model, version, prompt, generated) -> dict:
    return {"date": day, "resource_id": resource, "deployment": deployment, "model": model, "model_version": version,
            "region": "eastus", "prompt_tokens": prompt, "cached_tokens": 0, "generated_tokens": generated,
            "requests": 10}


@pytest.fixture()
def two_versions_and_twins() -> list[dict]:
    """Account 0: gpt-4o in two versions (one deployment each) and two deployments of one gpt-4o-mini version."""
    a = AZURE_DEMO_RESOURCES[0]
    out = []
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        out += [_record(day, a, "chat-new", "gpt-4o", "2024-11-20", 1_000_000 + i, 200_000),
                _record(day, a, "chat-old", "gpt-4o", "2024-08-06", 400_000, 50_000 + i),
                _record(day, a, "mini-a", "gpt-4o-mini", "2024-07-18", 3_000_000, 100_000),
                _record(day, a, "mini-b", "gpt-4o-mini", "2024-07-18", 1_000_000, 700_000 + i)]
    return out


def test_versions_pick_the_deployment_and_twins_stay_computed(rt, acme, two_versions_and_twins):
    wh = rt.warehouse
    usage = two_versions_and_twins
    lines = _run(wh, usage)
    report = {r["model"]: r for r in genai_reconciliation(wh, "acme")}
    billed = _billed_by_model(usage, lines)
    assert {m: r["billed_cost"] for m, r in report.items()} == billed
    assert {m: r["computed_cost"] for m, r in report.items()} == _computed_by_model(usage)
    rows = wh.query("SELECT ChargeCategory, SubAccountId, SkuMeter, BilledCost, ListCost, x_cost_source "
                    "FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    source = {(r["SubAccountId"], r["SkuMeter"]): r["x_cost_source"] for r in rows if r["ChargeCategory"] == "Usage"}
    assert {k: v for k, v in source.items() if k[0].startswith("chat")} == {
        (d, m): "billed" for d in ("chat-new", "chat-old") for m in ("Input Tokens", "Output Tokens")}
    # one meter bills both gpt-4o-mini deployments: no row can claim it, the list price stands and the
    # day's Adjustment carries the difference, so the FOCUS total is still the bill
    assert {v for k, v in source.items() if k[0].startswith("mini")} == {"computed"}
    assert sum(r["BilledCost"] for r in rows) == sum(billed.values())
    old_out = [r["BilledCost"] for r in rows if (r["SubAccountId"], r["SkuMeter"]) == ("chat-old", "Output Tokens")]
    meter = azure_meter_names("gpt-4o", "2024-08-06")["output"]
    assert len(old_out) == DAYS and sum(old_out) == sum(c["amount"] for c in lines if c["meter_name"] == meter)
