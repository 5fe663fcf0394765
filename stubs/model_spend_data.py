"""The cloud bill's lines for GenAI usage: what a CUR, a GCP billing export and Azure cost details hold for the
models an org runs on the cloud, generated from the same usage records the demo's loopback APIs serve
(stubs/genai_data.py), so an org with both sides has its model spend on the bill and in the usage.

    python -m stubs.model_spend_data --out DIR [--start 2026-10-01] [--days 30] [--seed 7]

writes DIR/aws/bedrock-cur-<start>.csv (CUR 2.0 names), DIR/azure/aoai-cost-details-<start>.csv (MCA cost
details) and DIR/gcp/export-model-lines.parquet (export rows), each one for a `{"source": "file://..."}` folder.

The bills' shapes (genai-usage-sources.md §4b, §5, §6):
* AWS: first-party models (Amazon Nova, Meta Llama) under 'Amazon Bedrock' with usage types
  `<REGION>-<Model>-input-tokens`; Anthropic's through AWS Marketplace (bill_billing_entity 'AWS Marketplace')
  as a product per model, "Claude Sonnet 4.5 (Amazon Bedrock Edition)", usage types
  `<REGION>-MP:<REGION>_InputTokenCount-Units`. One line per day, region, model and token class.
* GCP: 'Vertex AI' and 'Gemini API' rows per day, project, model and direction ("Gemini 2.5 Flash Text Input -
  Predictions", "Gemini API: Gemini 2.5 Pro output tokens"); free-tier usage bills nothing, so it has no row.
* Azure: MeterCategory 'Foundry Models' meters per model version and direction, at the resource.
Amounts are the tokens at the list price of genai_pricing.yml on the day (the cloud's public rate), rounded to
the cent fraction the clouds write (AWS 10 decimals, GCP 6, Azure 8), so each file's total is exact.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import zlib
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from shared import pricing
from shared.models import model_family

MILLION = Decimal(1_000_000)
AWS_REGIONS = {"us-east-1": "USE1", "eu-west-1": "EUW1", "us-west-2": "USW2"}
# Bedrock model family -> how the bill names it: (Marketplace product, or None for first party, usage-type model)
BEDROCK_NAMES = {
    "anthropic.claude-sonnet-4-5": ("Claude Sonnet 4.5 (Amazon Bedrock Edition)", None),
    "anthropic.claude-3-5-sonnet": ("Claude 3.5 Sonnet (Amazon Bedrock Edition)", None),
    "anthropic.claude-3-5-haiku": ("Claude 3.5 Haiku (Amazon Bedrock Edition)", None),
    "anthropic.claude-3-haiku": ("Claude 3 Haiku (Amazon Bedrock Edition)", None),
    "meta.llama3-3-70b-instruct": (None, "Llama3-3-70B-Instruct"),
    "amazon.nova-pro": (None, "NovaPro"),
    "amazon.nova-micro": (None, "NovaMicro"),
}
# CloudWatch metric -> (token class, Marketplace usage-type metric, first-party usage-type suffix)
BEDROCK_METRICS = {
    "InputTokenCount": ("input", "InputTokenCount", "input-tokens"),
    "OutputTokenCount": ("output", "OutputTokenCount", "output-tokens"),
    "CacheReadInputTokenCount": ("cached_input", "CacheReadInputTokenCount", "cache-read-input-token-count"),
    "CacheWriteInputTokenCount": ("cache_write", "CacheWriteInputTokenCount", "cache-write-input-token-count"),
}
CUR_HEADER = ["identity_line_item_id", "bill_billing_entity", "bill_payer_account_id",
              "bill_billing_period_start_date", "bill_billing_period_end_date", "line_item_usage_account_id",
              "line_item_line_item_type", "line_item_usage_start_date", "line_item_usage_end_date",
              "line_item_product_code", "product_product_name", "line_item_usage_type", "line_item_usage_amount",
              "line_item_currency_code", "line_item_unblended_rate", "line_item_unblended_cost",
              "line_item_line_item_description", "line_item_legal_entity", "pricing_unit",
              "pricing_public_on_demand_rate", "pricing_public_on_demand_cost", "product_sku", "product_region_code"]
MCA_HEADER = ["billingAccountId", "billingAccountName", "billingPeriodStartDate", "billingPeriodEndDate", "date",
              "subscriptionId", "subscriptionName", "resourceGroupName", "ResourceId", "resourceLocation",
              "meterCategory", "meterSubCategory", "meterName", "meterId", "ProductId", "consumedService", "quantity",
              "unitOfMeasure", "unitPrice", "effectivePrice", "PayGPrice", "costInBillingCurrency", "billingCurrency",
              "chargeType", "frequency", "pricingModel", "publisherType"]


def list_rate(provider: str, model: str, token_class: str, day: dt.date, family: str | None = None) -> Decimal | None:
    """The list price per 1M tokens in effect on `day` (an exact model id over its family), as sp_genai_1 reads it."""
    best = None
    for row in pricing.load():
        if row["provider"] != provider or row["service_tier"] is not None \
                or row["model"] not in (model, family or model_family(model)):
            continue
        if row["effective_from"] > day or (row["effective_to"] is not None and day >= row["effective_to"]):
            continue
        rank = (row["model"] == model, row["effective_from"])
        if best is None or rank > best[0]:
            best = (rank, row)
    return None if best is None else best[1].get(f"{token_class}_per_1m")


def _money(tokens: int, rate: Decimal, places: int) -> Decimal:
    return (tokens * rate / MILLION).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def bedrock_cur_rows(records: list[dict], account: str) -> list[dict]:
    """CUR 2.0 lines for Bedrock CloudWatch records (stubs.genai_data.bedrock_demo_usage) run in `account`.
    Usage the bill cannot name (an application profile's ARN) is billed as its foundation model."""
    from jobs.genai.bedrock import bedrock_model_family
    from stubs.genai_data import BEDROCK_APP_PROFILE_ARN, BEDROCK_APP_PROFILE_MODEL

    rows = []
    for r in records:
        model = BEDROCK_APP_PROFILE_MODEL if r["model_id"] == BEDROCK_APP_PROFILE_ARN else r["model_id"]
        family = bedrock_model_family(model)
        product, first_party = BEDROCK_NAMES[family]
        region = AWS_REGIONS[r["region"]]
        for metric, (token_class, mp_metric, suffix) in BEDROCK_METRICS.items():
            tokens = r.get(metric) or 0
            rate = list_rate("bedrock", model, token_class, r["date"], family)
            if not tokens or rate is None:
                continue
            cost = _money(tokens, rate, 10)
            usage_type = (f"{region}-MP:{region}_{mp_metric}-Units" if product else f"{region}-{first_party}-{suffix}")
            day = r["date"]
            month = day.replace(day=1)
            rows.append({
                "identity_line_item_id": f"bedrock-{day}-{r['region']}-{len(rows)}",
                "bill_billing_entity": "AWS Marketplace" if product else "AWS", "bill_payer_account_id": account,
                "bill_billing_period_start_date": f"{month}T00:00:00Z",
                "bill_billing_period_end_date": f"{(month + dt.timedelta(days=32)).replace(day=1)}T00:00:00Z",
                "line_item_usage_account_id": account, "line_item_line_item_type": "Usage",
                "line_item_usage_start_date": f"{day}T00:00:00Z",
                "line_item_usage_end_date": f"{day + dt.timedelta(days=1)}T00:00:00Z",
                "line_item_product_code": "AmazonBedrock" if not product else f"mp-{family.split('.')[1]}",
                "product_product_name": product or "Amazon Bedrock", "line_item_usage_type": usage_type,
                "line_item_usage_amount": str(Decimal(tokens) / 1000), "line_item_currency_code": "USD",
                "line_item_unblended_rate": str(rate / 1000), "line_item_unblended_cost": str(cost),
                "line_item_line_item_description": f"{product or 'Amazon Bedrock'} {token_class} tokens",
                "line_item_legal_entity": "Anthropic, PBC" if product else "Amazon Web Services, Inc.",
                "pricing_unit": "1K tokens", "pricing_public_on_demand_rate": "" if product else str(rate / 1000),
                "pricing_public_on_demand_cost": "" if product else str(cost),
                "product_sku": f"SKU-{family}-{token_class}-{region}", "product_region_code": r["region"]})
    return rows


def azure_cost_details_rows(records: list[dict]) -> list[dict]:
    """MCA cost-details lines (ActualCost) for Azure OpenAI records (stubs.genai_data.azure_openai_demo_usage):
    the Foundry Models meters Cost Management reports for them, and the Speech meter riding along."""
    from stubs.genai_data import azure_openai_demo_costs

    rows = []
    for line in azure_openai_demo_costs(records):
        parts = line["resource_id"].split("/")
        amount = line["amount"].quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
        month = line["date"].replace(day=1)
        rows.append({
            "billingAccountId": "demo-billing-account", "billingAccountName": "Acme Corp",
            "billingPeriodStartDate": str(month),
            "billingPeriodEndDate": str((month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)),
            "date": line["date"].isoformat(), "subscriptionId": parts[2], "subscriptionName": "acme-genai",
            "resourceGroupName": parts[4], "ResourceId": line["resource_id"], "resourceLocation": "eastus",
            "meterCategory": line["meter_category"], "meterSubCategory": "Azure OpenAI",
            "meterName": line["meter_name"], "meterId": f"meter-{line['meter_name'].lower().replace(' ', '-')}",
            "ProductId": "DZH318Z0BQ5S", "consumedService": "Microsoft.CognitiveServices", "quantity": "1",
            "unitOfMeasure": "1", "unitPrice": str(amount), "effectivePrice": str(amount), "PayGPrice": str(amount),
            "costInBillingCurrency": str(amount), "billingCurrency": "USD", "chargeType": "Usage",
            "frequency": "UsageBased", "pricingModel": "OnDemand", "publisherType": "Azure"})
    return rows


def _title(model: str) -> str:
    """gemini-2.5-flash -> Gemini 2.5 Flash; claude-sonnet-4-5 -> Claude Sonnet 4.5 (the SKU's spelling)."""
    words = model_family(model).split("-")
    out = []
    for w in words:
        if out and w.isdigit() and out[-1][-1].isdigit():
            out[-1] += f".{w}"
        else:
            out.append(w if w[0].isdigit() else w.capitalize())
    return " ".join(out)


def gcp_export_rows(gemini_records: list[dict], vertex_records: list[dict]) -> list[dict]:
    """Billing-export rows (stubs.gcp_billing_data's shape) for Gemini API and Vertex AI usage records."""
    from stubs import gcp_billing_data as g

    rows = []

    def add(service, provider, project, model, day, token_class, tokens, sku):
        rate = list_rate(provider, model, token_class, day)
        if not tokens or rate is None:
            return
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        mtok = Decimal(tokens) / MILLION
        row = g.export_row(None, service, sku[0], sku[1], start, 24, amount=Decimal(tokens), unit="token",
                           pricing_amount=mtok, pricing_unit="1000000 token", list_price=rate,
                           cost=_money(tokens, rate, 6), region="global")
        row["project"] = {"id": project, "number": str(zlib.crc32(project.encode())), "name": project, "labels": [],
                          "ancestry_numbers": None, "ancestors": []}
        rows.append(row)

    for r in gemini_records:
        if r["tier"] == "free_tier":
            continue  # the free tier bills nothing
        for cls, key in (("input", "input_tokens"), ("output", "output_tokens")):
            desc = f"Gemini API: {_title(r['model'])} {cls} tokens"
            add(g.GEMINI, "gemini", r["project"], r["model"], r["date"], cls, r[key], (f"GEM-{r['model']}-{cls}", desc))
    for r in vertex_records:
        for cls, key in (("input", "input_tokens"), ("output", "output_tokens")):
            desc = f"{_title(r['model_user_id'])} Text {cls.capitalize()} - Predictions"
            add(g.VERTEX, "vertex", r["project"], r["model_user_id"], r["date"], cls, r[key],
                (f"VTX-{model_family(r['model_user_id'])}-{cls}", desc))
    return rows


def write_csv(rows: list[dict], header: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> None:
    from stubs import gcp_billing_data
    from stubs import genai_data as gd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 10, 1))
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--aws-account", default="111122223333")
    a = p.parse_args(argv)
    write_csv(bedrock_cur_rows(gd.bedrock_demo_usage(a.start, a.days, a.seed), a.aws_account), CUR_HEADER,
              a.out / "aws" / f"bedrock-cur-{a.start}.csv")
    write_csv(azure_cost_details_rows(gd.azure_openai_demo_usage(a.start, a.days, a.seed)), MCA_HEADER,
              a.out / "azure" / f"aoai-cost-details-{a.start}.csv")
    gcp_billing_data.write_parquet(gcp_export_rows(gd.gemini_demo_usage(a.start, a.days, a.seed),
                                                   gd.vertex_demo_usage(a.start, a.days, a.seed)),
                                   a.out / "gcp", "export-model-lines.parquet")


if __name__ == "__main__":
    main()
