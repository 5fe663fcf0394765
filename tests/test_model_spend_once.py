"""GenAI spend counted once (issue 14): an org with a cloud bill and the GenAI usage of the same account.

The cloud bill's model lines are split over the usage (sp_genai_4_allocate_cloud_model_spend); the GenAI rows
of a covered account and day keep their tokens and carry no cost. Runs go through the runner's landing step
and the registry's procedure chains (tests/cloud_kit.py), with the extractors reading real inputs: a CUR 2.0
file with Bedrock and AWS Marketplace Claude lines, and Bedrock token metrics in moto's CloudWatch (loopback).
Money is checked against sums of the fixture's own text with Decimal.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal

import pytest

from shared import focus
from shared.convert import reconcile_cloud
from stubs.moto_loopback import KEYS, moto_endpoint
from tests import cloud_kit as kit

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

AWS, BEDROCK = "cloud/aws/cost/billing", "genai/payg/bedrock"
ACCOUNT = "123456789012"  # moto's account: what sts:GetCallerIdentity answers for the test keys
OTHER_ACCOUNT = "999988887777"  # has Bedrock lines but no usage read
D1, D2 = dt.date(2025, 11, 3), dt.date(2025, 11, 4)
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-pro-v1:0"
# (day, model id) -> CloudWatch daily sums
METRICS = {
    (D1, SONNET): {"InputTokenCount": 2_000_000, "OutputTokenCount": 300_000, "CacheReadInputTokenCount": 5_000_000},
    (D1, HAIKU): {"InputTokenCount": 4_000_000, "OutputTokenCount": 800_000},
    (D1, NOVA): {"InputTokenCount": 1_000_000, "OutputTokenCount": 250_000},
    (D2, SONNET): {"InputTokenCount": 1_500_000, "OutputTokenCount": 200_000},
    (D2, NOVA): {"InputTokenCount": 3_000_000, "OutputTokenCount": 100_000},
}
HEADER = ["identity_line_item_id", "bill_billing_entity", "bill_payer_account_id", "bill_billing_period_start_date",
          "bill_billing_period_end_date", "line_item_usage_account_id", "line_item_line_item_type",
          "line_item_usage_start_date", "line_item_usage_end_date", "line_item_product_code", "product_product_name",
          "line_item_usage_type", "line_item_usage_amount", "line_item_currency_code", "line_item_unblended_rate",
          "line_item_unblended_cost", "line_item_line_item_description", "line_item_legal_entity", "pricing_unit",
          "pricing_public_on_demand_rate", "pricing_public_on_demand_cost", "product_sku"]


def cur_lines() -> list[dict]:
    """Bedrock's CUR lines as AWS writes them: first-party models under 'Amazon Bedrock' (usage type
    <region>-<Model>-input-tokens), Anthropic's through AWS Marketplace as a product per model with the
    MP usage-type grammar, a line with no product name, a guardrail line naming no model, Bedrock spend of
    another account, tax, and compute that is not model spend."""
    rows = []

    def line(day, account, code, product, usage_type, amount, rate, cost, marketplace=False, kind="Usage",
             unit="1K tokens"):
        rows.append({
            "identity_line_item_id": f"li{len(rows)}", "bill_billing_entity": "AWS Marketplace" if marketplace else "AWS",
            "bill_payer_account_id": ACCOUNT, "bill_billing_period_start_date": "2025-11-01T00:00:00Z",
            "bill_billing_period_end_date": "2025-12-01T00:00:00Z", "line_item_usage_account_id": account,
            "line_item_line_item_type": kind, "line_item_usage_start_date": f"{day}T00:00:00Z",
            "line_item_usage_end_date": f"{day + dt.timedelta(days=1)}T00:00:00Z", "line_item_product_code": code,
            "product_product_name": product, "line_item_usage_type": usage_type, "line_item_usage_amount": amount,
            "line_item_currency_code": "USD", "line_item_unblended_rate": rate, "line_item_unblended_cost": cost,
            "line_item_line_item_description": f"{product or code} {usage_type}",
            "line_item_legal_entity": "Anthropic, PBC" if marketplace else "Amazon Web Services, Inc.",
            "pricing_unit": unit if kind == "Usage" else "", "pricing_public_on_demand_rate": "" if marketplace else rate,
            "pricing_public_on_demand_cost": "" if marketplace else cost,
            "product_sku": "" if kind == "Tax" else f"SKU{len(rows)}"})

    sonnet, haiku = "Claude Sonnet 4.5 (Amazon Bedrock Edition)", "Claude 3 Haiku (Amazon Bedrock Edition)"
    line(D1, ACCOUNT, "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:m5.large", "24", "0.096", "2.304",
         unit="Hrs")
    line(D1, ACCOUNT, "prod-sonnet45", sonnet, "USE1-MP:USE1_InputTokenCount-Units", "2000", "0.0033", "6.6",
         marketplace=True)
    line(D1, ACCOUNT, "prod-sonnet45", sonnet, "USE1-MP:USE1_OutputTokenCount-Units", "300", "0.0165", "4.95",
         marketplace=True)
    line(D1, ACCOUNT, "prod-sonnet45", sonnet, "USE1-MP:USE1_CacheReadInputTokenCount-Units", "5000", "0.00033",
         "1.65", marketplace=True)
    line(D1, ACCOUNT, "prod-haiku3", haiku, "USE1-MP:USE1_Tokens-Units", "4800", "0.0004166666", "1.9999996",
         marketplace=True)  # names the model, not the token class
    line(D1, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-NovaPro-input-tokens", "1000", "0.0008", "0.8")
    line(D1, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-NovaPro-output-tokens", "250", "0.0032", "0.8")
    # priced per unit, split over all seven usage rows of the day: each part must still cost price x quantity
    line(D1, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-KnowledgeBase-Units", "98765.432101234", "0.0008",
         "79.0123456810", unit="Units")
    line(D1, OTHER_ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-NovaPro-input-tokens", "500", "0.0008", "0.4")
    line(D1, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "", "", "", "0.27", kind="Tax")
    line(D2, ACCOUNT, "prod-sonnet45", sonnet, "USE1-MP:USE1_InputTokenCount-Units", "1500", "0.0033", "4.95",
         marketplace=True)
    line(D2, ACCOUNT, "prod-sonnet45", sonnet, "USE1-MP:USE1_output_tokens_standard-Units", "200", "0.0165", "3.3",
         marketplace=True)
    line(D2, ACCOUNT, "prod-x7", "", "USE1-MP:USE1_InputTokenCount-Units", "3", "0.1", "0.3",
         marketplace=True)  # no product name: taken by the usage-type grammar; names the class only
    line(D2, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-NovaPro-input-tokens", "3000", "0.0008", "2.4")
    line(D2, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-NovaPro-output-tokens", "100", "0.0032", "0.32")
    line(D2, ACCOUNT, "AmazonBedrock", "Amazon Bedrock", "USE1-Guardrail-ContentPolicyUnitsConsumed", "100", "0.00075",
         "0.075", unit="Units")  # names neither: split over the day's usage of the account
    return rows


@pytest.fixture(scope="module")
def cloudwatch():
    with moto_endpoint() as url:
        cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=url, **KEYS)
        for (day, model), metrics in METRICS.items():
            ts = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.timezone.utc)
            cw.put_metric_data(Namespace="AWS/Bedrock", MetricData=[
                {"MetricName": m, "Dimensions": [{"Name": "ModelId", "Value": model}], "Timestamp": ts,
                 "Value": float(v)} for m, v in metrics.items()])
        yield {"region": "us-east-1", "endpoint_url": url, "model_ids": sorted({m for _, m in METRICS}), **KEYS}


@pytest.fixture()
def cur(tmp_path):
    folder = tmp_path / "cur"
    folder.mkdir()
    rows = cur_lines()
    with (folder / "export-00001.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        w.writerows(rows)
    return {"source": folder.as_uri()}, rows


def run(wh, pipeline, credential, start=D1, end=D2, run_id="run_a"):
    cred_id = "cred_aws"  # one credential kind: the CUR and the metrics share it, as in the demo
    kit.land_and_convert(wh, pipeline, cred_id, credential, start, end, run_id=f"{run_id}_{pipeline.split('/')[1]}")


def focus_rows(wh, where="TRUE", params=None):
    return wh.query(f"SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE {where}", params or {})


def state(wh):
    """The FOCUS table as a multiset of what matters (no run ids or timestamps)."""
    out = []
    for r in focus_rows(wh):
        details = r["AllocatedMethodDetails"]
        details = json.loads(details) if isinstance(details, str) else details
        out.append((r["x_pipeline_id"], str(r["ChargePeriodStart"]), r["SubAccountId"], r["ServiceName"], r["SkuMeter"],
                    r["ChargeDescription"], r["AllocatedMethodId"], r["AllocatedResourceId"],
                    json.dumps(details, sort_keys=True), r["BilledCost"], r["EffectiveCost"], r["ListCost"],
                    r["ContractedCost"], r["PricingQuantity"], r["ConsumedQuantity"], r["x_cost_source"]))
    return sorted(out, key=repr)


def state_after(wh, runner, *runs, fresh: bool = False):
    """The FOCUS rows (as `state`) after `runner(wh, pipeline, credential, run_id=run_id)` for each (pipeline,
    credential, run_id) of `runs`, in order; with `fresh`, on emptied FOCUS and allocation-source tables."""
    if fresh:
        wh.execute("DELETE FROM `acme_prod.cost_data_standard_1_3` WHERE TRUE")
        wh.execute("DELETE FROM `acme_prod.focus_allocation_sources` WHERE TRUE")
    for pipeline, credential, run_id in runs:
        runner(wh, pipeline, credential, run_id=run_id)
    return state(wh)


def cur_total(rows, day=None, account=None, pred=lambda r: True):
    return sum((Decimal(r["line_item_unblended_cost"]) for r in rows
                if (day is None or r["line_item_usage_start_date"].startswith(str(day)))
                and (account is None or r["line_item_usage_account_id"] == account) and pred(r)), Decimal(0))


def assert_counted_once(wh, rows):
    total = sum((r["BilledCost"] for r in focus_rows(wh)), Decimal(0))
    assert total == cur_total(rows)  # the org's FOCUS total is the CUR's, to the last digit
    assert sum((r["EffectiveCost"] for r in focus_rows(wh)), Decimal(0)) == cur_total(rows)
    genai = focus_rows(wh, "x_pipeline_id = @p", {"p": BEDROCK})
    assert genai and all(r["x_cost_source"] == "cloud_bill" and r["BilledCost"] == 0 and r["EffectiveCost"] == 0
                         and r["ListCost"] == 0 and r["ContractedCost"] == 0 and r["ConsumedQuantity"] > 0
                         for r in genai)
    tokens = sum(r["ConsumedQuantity"] for r in genai)
    assert tokens == sum(v for (_, _), m in METRICS.items() for k, v in m.items() if k != "Invocations")
    report = focus.check(wh, "acme_prod", "TRUE", {})
    assert report.ok, report.summary()
    params = {"org_slug": "acme", "pipeline_id": AWS, "credential_id": "cred_aws", "start_date": D1, "end_date": D2}
    assert all(p["ok"] for p in reconcile_cloud(wh, "acme_prod", params))


def lines_of(wh, usage_type, day):
    return focus_rows(wh, "x_pipeline_id = @p AND SkuMeter = @u AND DATE(ChargePeriodStart) = @d",
                      {"p": AWS, "u": usage_type, "d": day})


def test_cloud_first_then_usage_splits_bedrock_over_the_models_once(rt, acme, cloudwatch, cur):
    wh = rt.warehouse
    credential, rows = cur
    run(wh, AWS, credential)
    before = sum(r["BilledCost"] for r in focus_rows(wh))
    assert before == cur_total(rows)
    run(wh, BEDROCK, cloudwatch)
    assert_counted_once(wh, rows)

    def cost(usage_type, day, account=ACCOUNT):
        return cur_total(rows, day, account, lambda r: r["line_item_usage_type"] == usage_type)

    # a line naming the model and token class goes to that model's class only, whole
    parts = lines_of(wh, "USE1-MP:USE1_OutputTokenCount-Units", D1)
    assert [(p["AllocatedResourceName"], json.loads(p["AllocatedTags"])["token_class"]) for p in parts] == \
        [(SONNET, "output")]
    assert parts[0]["BilledCost"] == cost("USE1-MP:USE1_OutputTokenCount-Units", D1)
    assert parts[0]["AllocatedMethodId"] == "cloudact-genai-usage"
    cache = lines_of(wh, "USE1-MP:USE1_CacheReadInputTokenCount-Units", D1)
    assert [json.loads(p["AllocatedTags"])["token_class"] for p in cache] == ["cached_input"]
    nova = lines_of(wh, "USE1-NovaPro-output-tokens", D2)
    assert [(p["AllocatedResourceName"], json.loads(p["AllocatedTags"])["token_class"]) for p in nova] == \
        [(NOVA, "output")]
    # the Haiku line names the model only: split over its input and output by their list-price cost
    # (4M x $0.25 + 0.8M x $1.25 per 1M: 1.00 and 1.00), the parts summing to the line exactly
    haiku = {json.loads(p["AllocatedTags"])["token_class"]: p for p in lines_of(wh, "USE1-MP:USE1_Tokens-Units", D1)}
    assert set(haiku) == {"input", "output"} and {p["AllocatedResourceName"] for p in haiku.values()} == {HAIKU}
    assert sum(p["BilledCost"] for p in haiku.values()) == cost("USE1-MP:USE1_Tokens-Units", D1)
    assert {json.loads(p["AllocatedMethodDetails"])["Elements"][0]["AllocatedRatio"] for p in haiku.values()} == {0.5}
    assert sum(p["PricingQuantity"] for p in haiku.values()) == Decimal("4800")
    # the guardrail line names neither: split over the account's usage of that day (Sonnet and Nova)
    guard = lines_of(wh, "USE1-Guardrail-ContentPolicyUnitsConsumed", D2)
    assert {p["AllocatedResourceName"] for p in guard} == {SONNET, NOVA} and len(guard) == 4
    assert sum(p["BilledCost"] for p in guard) == cost("USE1-Guardrail-ContentPolicyUnitsConsumed", D2)
    ratios = [Decimal(str(json.loads(p["AllocatedMethodDetails"])["Elements"][0]["AllocatedRatio"])) for p in guard]
    assert abs(sum(ratios) - 1) < Decimal("1e-8")
    # the nameless Marketplace line names the input class: the day's input rows
    nameless = lines_of(wh, "USE1-MP:USE1_InputTokenCount-Units", D2)
    assert {json.loads(p["AllocatedTags"])["token_class"] for p in nameless} == {"input"}
    assert sum(p["BilledCost"] for p in nameless) == cost("USE1-MP:USE1_InputTokenCount-Units", D2)
    kb = lines_of(wh, "USE1-KnowledgeBase-Units", D1)
    assert len(kb) == 7 and sum(p["BilledCost"] for p in kb) == cost("USE1-KnowledgeBase-Units", D1)
    assert sum(p["PricingQuantity"] for p in kb) == Decimal("98765.432101234")
    for p in focus_rows(wh, "AllocatedMethodId IS NOT NULL AND ListUnitPrice IS NOT NULL"):
        # every part, the one taking the remainder too, costs its price x its quantity (to NUMERIC's 9 places)
        assert p["ListCost"] == (p["ListUnitPrice"] * p["PricingQuantity"]).quantize(Decimal("1e-9"))
        assert p["ContractedCost"] == (p["ContractedUnitPrice"] * p["PricingQuantity"]).quantize(Decimal("1e-9"))
    # Marketplace model products carry a product code per listing: still AI and Machine Learning / Generative AI
    models = focus_rows(wh, "x_pipeline_id = @p AND (ServiceName LIKE '%(Amazon Bedrock Edition)' OR SkuMeter LIKE '%-MP:%')",
                        {"p": AWS})
    assert len(models) > 4 and {(r["ServiceCategory"], r["ServiceSubcategory"]) for r in models} == \
        {("AI and Machine Learning", "Generative AI")}
    # Bedrock of an account with no usage read, tax and compute stay as billed
    other = focus_rows(wh, "SubAccountId = @a", {"a": OTHER_ACCOUNT})
    assert len(other) == 1 and other[0]["AllocatedMethodId"] is None and other[0]["BilledCost"] == Decimal("0.4")
    tax = focus_rows(wh, "ChargeCategory = 'Tax'")
    assert len(tax) == 1 and tax[0]["AllocatedMethodId"] is None
    # per model, the cloud money is what the CUR billed for the lines naming it plus shares of the others
    by_model = {}
    for r in focus_rows(wh, "x_pipeline_id = @p AND AllocatedMethodId IS NOT NULL AND SkuMeter != @kb",
                        {"p": AWS, "kb": "USE1-KnowledgeBase-Units"}):
        by_model[r["AllocatedResourceName"]] = by_model.get(r["AllocatedResourceName"], Decimal(0)) + r["BilledCost"]
    assert by_model[HAIKU] == cost("USE1-MP:USE1_Tokens-Units", D1)
    assert by_model[SONNET] > cur_total(rows, pred=lambda r: "Sonnet" in r["product_product_name"])


def test_usage_first_then_cloud_gives_the_same_rows(rt, acme, cloudwatch, cur, tmp_path):
    wh = rt.warehouse
    credential, rows = cur
    run(wh, BEDROCK, cloudwatch)
    genai_only = sum(r["BilledCost"] for r in focus_rows(wh))
    assert genai_only > 0 and {r["x_cost_source"] for r in focus_rows(wh)} == {"computed"}
    run(wh, AWS, credential)
    assert_counted_once(wh, rows)
    first = state(wh)
    # re-runs of either, in either order, with other run ids: the same rows
    run(wh, BEDROCK, cloudwatch, run_id="run_b")
    assert state(wh) == first
    run(wh, AWS, credential, run_id="run_c")
    assert state(wh) == first
    run(wh, AWS, credential, start=D2, end=D2, run_id="run_d")  # one day of the cloud again
    assert state(wh) == first
    run(wh, BEDROCK, cloudwatch, start=D1, end=D1, run_id="run_e")
    assert state(wh) == first
    assert_counted_once(wh, rows)


def test_both_orders_agree(rt, acme, cloudwatch, cur):
    wh = rt.warehouse
    credential, rows = cur
    run(wh, AWS, credential)
    run(wh, BEDROCK, cloudwatch)
    cloud_first = state(wh)
    assert state_after(wh, run, (BEDROCK, cloudwatch, "run_x"), (AWS, credential, "run_y"), fresh=True) == cloud_first


def test_usage_alone_keeps_todays_rows(rt, acme, cloudwatch):
    """Without a cloud bill the allocation step changes nothing: the same rows as the GenAI chain alone."""
    wh = rt.warehouse
    run(wh, BEDROCK, cloudwatch)
    with_step = state(wh)
    params = {"org_slug": "acme", "pipeline_id": BEDROCK, "credential_id": "cred_aws", "run_id": "r2",
              "start_date": D1, "end_date": D2}
    for proc in ("sp_genai_1_consolidate_usage_daily", "sp_genai_3_convert_to_focus"):
        wh.call_procedure("acme_prod", proc, params)
    assert state(wh) == with_step
    assert {r["x_cost_source"] for r in focus_rows(wh)} == {"computed"}
    usage = wh.query("SELECT DISTINCT cloud_account_id FROM `acme_prod.genai_usage_daily`")
    assert [r["cloud_account_id"] for r in usage] == [ACCOUNT]


# -- GCP: the billing export's Vertex AI and Gemini API lines vs genai/payg/vertex and genai/payg/gemini -------
GCP, VERTEX, GEMINI = "cloud/gcp/cost/billing", "genai/payg/vertex", "genai/payg/gemini"
G1, G2 = dt.date(2026, 10, 5), dt.date(2026, 10, 6)
ML_PROJECT = "acme-ml"  # the export's project that bills Vertex AI and the Gemini API


@pytest.fixture()
def gcp(tmp_path):
    from stubs import gcp_billing_data
    from stubs import genai_data as gd
    from stubs.gcp_monitoring import GcpMonitoringStub

    export = gcp_billing_data.generate(G1, G2, seed=3)
    gcp_billing_data.write_parquet(export, tmp_path / "export")
    points = (gd.gemini_metric_points(gd.gemini_demo_usage(G1, 2, 3, project=ML_PROJECT))
              + gd.vertex_metric_points(gd.vertex_demo_usage(G1, 2, 3, project=ML_PROJECT)))
    with GcpMonitoringStub(access_token="tok", points=points) as stub:
        yield ({"source": (tmp_path / "export").as_uri(), "access_token": "tok", "base_url": stub.base_url,
                "monitoring_projects": [ML_PROJECT]}, export)


def gcp_run(wh, pipeline, credential, run_id="run_a"):
    kit.land_and_convert(wh, pipeline, "cred_gcp", credential, G1, G2, run_id=f"{run_id}_{pipeline.split('/')[-1]}")


def assert_gcp_counted_once(wh, export):
    from stubs.gcp_billing_data import net_cost

    assert sum((r["BilledCost"] for r in focus_rows(wh)), Decimal(0)) == sum((net_cost(r) for r in export), Decimal(0))
    genai = focus_rows(wh, "x_pipeline_id IN (@v, @g) AND SubAccountId = @p", {"v": VERTEX, "g": GEMINI, "p": ML_PROJECT})
    assert genai and all(r["x_cost_source"] == "cloud_bill" and r["BilledCost"] == 0 for r in genai)
    report = focus.check(wh, "acme_prod", "TRUE", {})
    assert report.ok, report.summary()
    params = {"org_slug": "acme", "pipeline_id": GCP, "credential_id": "cred_gcp", "start_date": G1, "end_date": G2}
    assert all(p["ok"] for p in reconcile_cloud(wh, "acme_prod", params))


def test_gcp_export_vertex_and_gemini_lines_split_over_their_own_usage(rt, acme, gcp):
    wh = rt.warehouse
    credential, export = gcp
    gcp_run(wh, GCP, credential)
    gcp_run(wh, GEMINI, credential)
    gcp_run(wh, VERTEX, credential)
    assert_gcp_counted_once(wh, export)
    usage_cost = lambda r: Decimal(str(r["cost"]))  # noqa: E731 - the export's FLOAT64 cost, as written
    # Gemini API "Gemini 2.5 Flash input tokens" lines go to the Gemini API usage of gemini-2.5-flash, input
    gem = focus_rows(wh, "x_pipeline_id = @p AND ServiceName = 'Gemini API' AND ChargeCategory = 'Usage'", {"p": GCP})
    assert gem and {(r["AllocatedResourceName"], json.loads(r["AllocatedTags"])["genai_provider"],
                     json.loads(r["AllocatedTags"])["token_class"]) for r in gem} == {("gemini-2.5-flash", "gemini", "input")}
    assert sum(r["BilledCost"] for r in gem) == sum(
        (usage_cost(r) for r in export if r["service"]["description"] == "Gemini API"), Decimal(0))
    # its credits stay Credit rows of the export, not split
    credits = focus_rows(wh, "x_pipeline_id = @p AND ServiceName = 'Gemini API' AND ChargeCategory = 'Credit'", {"p": GCP})
    assert credits and all(r["AllocatedMethodId"] is None for r in credits)
    # the Vertex line names a model the usage does not have (Gemini 1.5 Flash) but the input class: split over
    # the Vertex usage's input rows of the day, never over the Gemini API's
    vtx = focus_rows(wh, "x_pipeline_id = @p AND ServiceName = 'Vertex AI'", {"p": GCP})
    tags = [json.loads(r["AllocatedTags"]) for r in vtx]
    assert tags and {t["genai_provider"] for t in tags} == {"vertex"} and {t["token_class"] for t in tags} == {"input"}
    assert sum(r["BilledCost"] for r in vtx) == sum(
        (usage_cost(r) for r in export if r["service"]["description"] == "Vertex AI"), Decimal(0))
    first = state(wh)
    assert state_after(wh, gcp_run, (VERTEX, credential, "run_b"), (GCP, credential, "run_c"),
                       (GEMINI, credential, "run_d")) == first


def test_gcp_usage_first_then_export(rt, acme, gcp):
    wh = rt.warehouse
    credential, export = gcp
    gcp_run(wh, VERTEX, credential)
    gcp_run(wh, GEMINI, credential)
    assert {r["x_cost_source"] for r in focus_rows(wh)} == {"computed"}
    gcp_run(wh, GCP, credential)
    assert_gcp_counted_once(wh, export)
    after = state(wh)
    assert state_after(wh, gcp_run, (GCP, credential, "run_x"), (GEMINI, credential, "run_y"),
                       (VERTEX, credential, "run_z"), fresh=True) == after


# -- Azure: cost details' Azure OpenAI lines vs genai/payg/azure_openai ------------------------------------------
AZURE, AOAI = "cloud/azure/cost/billing", "genai/payg/azure_openai"
Z1, Z2 = dt.date(2026, 10, 12), dt.date(2026, 10, 13)
def cost_details(records) -> list[dict]:
    """Azure cost details (MCA, ActualCost) for the resources of `records`: their Foundry Models meters (the same
    money Cost Management reports), the Speech meter riding along, and a VM of the subscription."""
    from stubs import genai_data as gd
    from stubs.model_spend_data import azure_cost_details_rows

    rows = azure_cost_details_rows(records)
    vm = dict(rows[0], meterCategory="Virtual Machines", meterSubCategory="Dv5", meterName="D2s v5", meterId="m-vm",
              ProductId="p-vm", consumedService="Microsoft.Compute", quantity="24", unitOfMeasure="1 Hour",
              unitPrice="0.1", effectivePrice="0.1", PayGPrice="0.1", costInBillingCurrency="2.4",
              ResourceId=f"{gd.AZURE_DEMO_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v")
    return rows + [vm]


@pytest.fixture()
def azure(tmp_path):
    from stubs import genai_data as gd
    from stubs.azure_monitor import AzureMonitorStub
    from stubs.model_spend_data import MCA_HEADER, write_csv

    records = gd.azure_openai_demo_usage(Z1, 2, 5)
    rows = cost_details(records)
    write_csv(rows, MCA_HEADER, tmp_path / "az" / "part_0_0001.csv")
    with AzureMonitorStub(access_token="tok", cost_scope=gd.AZURE_DEMO_SUBSCRIPTION, usage=records) as stub:
        yield ({"source": (tmp_path / "az").as_uri(), "access_token": "tok", "base_url": stub.base_url,
                "resource_ids": list(gd.AZURE_DEMO_RESOURCES), "cost_scope": gd.AZURE_DEMO_SUBSCRIPTION}, rows)


def az_run(wh, pipeline, credential, run_id="run_a"):
    kit.land_and_convert(wh, pipeline, "cred_az", credential, Z1, Z2, run_id=f"{run_id}_{pipeline.split('/')[-1]}")


def test_azure_cost_details_openai_lines_split_over_the_deployments(rt, acme, azure):
    wh = rt.warehouse
    credential, rows = azure
    bill = sum((Decimal(r["costInBillingCurrency"]) for r in rows), Decimal(0))
    az_run(wh, AOAI, credential)
    assert {r["x_cost_source"] for r in focus_rows(wh)} >= {"billed"}  # Cost Management's money, alone
    az_run(wh, AZURE, credential)
    assert sum((r["BilledCost"] for r in focus_rows(wh)), Decimal(0)) == bill
    genai = focus_rows(wh, "x_pipeline_id = @p", {"p": AOAI})
    assert genai and all(r["x_cost_source"] == "cloud_bill" and r["BilledCost"] == 0 and r["ChargeCategory"] == "Usage"
                         for r in genai)  # the Adjustment rows of the provider's bill are gone with it
    report = focus.check(wh, "acme_prod", "TRUE", {})
    assert report.ok, report.summary()
    # a meter names its model: gpt-4o-mini's lines go to gpt-4o-mini (not to gpt-4o, a shorter key it contains)
    mini = focus_rows(wh, "x_pipeline_id = @p AND SkuMeter LIKE 'gpt-4o-mini%'", {"p": AZURE})
    assert mini and {r["AllocatedResourceName"] for r in mini} == {"gpt-4o-mini"}
    assert {r["AllocatedResourceId"] for r in mini} == {"summarize-mini/gpt-4o-mini"}
    assert sum(r["BilledCost"] for r in mini) == sum(
        (Decimal(r["costInBillingCurrency"]) for r in rows if r["meterName"].startswith("gpt-4o-mini")), Decimal(0))
    speech = focus_rows(wh, "SkuMeter = 'S1 Speech To Text'")
    assert speech and all(r["AllocatedMethodId"] is None for r in speech)
    first = state(wh)
    assert state_after(wh, az_run, (AOAI, credential, "run_b"), (AZURE, credential, "run_c")) == first


def test_azure_both_orders_agree(rt, acme, azure):
    wh = rt.warehouse
    credential, rows = azure
    az_run(wh, AZURE, credential)
    az_run(wh, AOAI, credential)
    cloud_first = state(wh)
    assert sum((r["BilledCost"] for r in focus_rows(wh)), Decimal(0)) == \
        sum((Decimal(r["costInBillingCurrency"]) for r in rows), Decimal(0))
    assert state_after(wh, az_run, (AOAI, credential, "run_x"), (AZURE, credential, "run_y"), fresh=True) == cloud_first
    # the usage again, alone, after the bill
    assert state_after(wh, az_run, (AOAI, credential, "run_z")) == cloud_first


def test_reconcile_shows_the_cloud_bill_against_the_computed_cost(rt, acme, cloudwatch, cur):
    from cli.reports import genai_reconciliation

    wh = rt.warehouse
    credential, rows = cur
    run(wh, BEDROCK, cloudwatch)
    before = {r["model"]: r for r in genai_reconciliation(wh, "acme")}
    assert all(r["billed_cost"] is None and r["reason"] == "no bill read for it" for r in before.values())
    run(wh, AWS, credential)
    report = {r["model"]: r for r in genai_reconciliation(wh, "acme") if r["provider"] == "bedrock"}
    assert set(report) == {SONNET, HAIKU, NOVA} and {r["billed_by"] for r in report.values()} == {"cloud bill"}
    model_lines = cur_total(rows, account=ACCOUNT, pred=lambda r: r["line_item_line_item_type"] == "Usage"
                            and r["line_item_product_code"] != "AmazonEC2")
    assert sum(r["billed_cost"] for r in report.values()) == model_lines
    kb_share = sum(p["BilledCost"] for p in lines_of(wh, "USE1-KnowledgeBase-Units", D1)
                   if p["AllocatedResourceName"] == HAIKU)
    assert report[HAIKU]["billed_cost"] == cur_total(rows, pred=lambda r: "Haiku" in r["product_product_name"]) + kb_share
    for r in report.values():
        assert r["difference"] == r["billed_cost"] - r["computed_cost"]
        assert (r["reason"] is None) == (abs(r["difference"]) <= Decimal("0.01"))
    by_day = genai_reconciliation(wh, "acme", by_day=True)
    assert {(r["usage_date"], r["model"]) for r in by_day if r["billed_cost"] is not None} == set(METRICS)


def test_the_pairs_are_declared_once_and_every_side_runs_the_step():
    from shared import procedures, registry

    step = "sp_genai_4_allocate_cloud_model_spend"
    pairs = procedures.fact_table("cloud_model_spend")
    sides = {p["genai_pipeline"] for p in pairs} | {p["cloud_pipeline"] for p in pairs}
    chains = {pid for pid in sides | {"genai/payg/openai", "cloud/oci/cost/billing"}
              if step in registry.get(pid).procedures}
    assert chains == sides == {BEDROCK, AWS, VERTEX, GEMINI, GCP, AOAI, AZURE}
    for pid in sides:
        assert registry.get(pid).procedures[-1] == step  # after the conversion it re-derives from
