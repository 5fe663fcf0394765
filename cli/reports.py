"""Read-only reports over an org's FOCUS table."""
from __future__ import annotations

from decimal import Decimal

from shared.naming import org_dataset, table_ref


def verify_rows(wh, slug: str) -> list[dict]:
    """Rows and last run per x_pipeline_id, the go-live check."""
    return wh.query(
        f"""SELECT f.x_pipeline_id AS pipeline, COUNT(*) AS row_count,
                   MIN(DATE(f.ChargePeriodStart)) AS first_day, MAX(DATE(f.ChargePeriodStart)) AS last_day,
                   SUM(f.BilledCost) AS billed_cost, f.BillingCurrency AS currency,
                   MAX(f.x_ingested_at) AS last_converted_at
            FROM {table_ref(org_dataset(slug), 'cost_data_standard_1_3')} AS f
            WHERE f.x_org_slug = @org
            GROUP BY f.x_pipeline_id, f.BillingCurrency ORDER BY f.x_pipeline_id, f.BillingCurrency""",
        {"org": slug},
    )


def provider_totals(wh, slug: str) -> list[dict]:
    """FOCUS billed and effective cost per service provider and currency."""
    return wh.query(
        f"""SELECT ServiceProviderName AS provider, ServiceCategory AS category, BillingCurrency AS currency,
                   COUNT(*) AS row_count, SUM(BilledCost) AS billed_cost, SUM(EffectiveCost) AS effective_cost
            FROM {table_ref(org_dataset(slug), 'cost_data_standard_1_3')} WHERE x_org_slug = @org
            GROUP BY ServiceProviderName, ServiceCategory, BillingCurrency
            ORDER BY ServiceProviderName, BillingCurrency""",
        {"org": slug},
    )


# Why billed and computed differ where they are expected to, per provider (the usage source's blind spots).
DIFFERENCE_REASONS = {
    "openai": "fine-tuning hosting, tools and the cost API's rounding are billed beyond the token classes",
    "anthropic": "web search and other non-token charges are billed beyond the token classes",
    "azure_openai": "Azure Monitor counts no cached tokens: the cached-prompt meter bills part of the input cheaper",
    "bedrock": "the CUR bills tiers, profiles and lines naming no model (guardrails) that CloudWatch cannot split",
    "gemini": "the export bills token classes (cached, thinking, long context) and free tier the metrics cannot split",
    "vertex": "the export bills token classes (cached, thinking, long context) and SKUs the metrics cannot split",
    "deepseek": "billed from a prepaid balance, not per model: see the run's balance reconciliation",
}
TOLERANCE = Decimal("0.01")


def genai_reconciliation(wh, slug: str, by_day: bool = False) -> list[dict]:
    """Computed (list-price) vs billed GenAI cost per provider and model (and day), with the difference and,
    where one is expected, its reason. Billed is the cloud bill's share for models a cloud bills (the CUR's
    Bedrock and Marketplace lines, the GCP export's Vertex AI and Gemini API lines, Azure cost details'
    Azure OpenAI meters, as sp_genai_4 split them over the usage), else what the provider's cost API reported
    (OpenAI, Anthropic, Azure Cost Management); empty where nothing bills it."""
    ds = org_dataset(slug)
    day = "usage_date, " if by_day else ""
    rows = wh.query(
        f"""WITH computed AS (
              SELECT {day}provider, model, SUM(cost) AS computed_cost,
                     COUNTIF(price_status = 'unpriced') AS unpriced_rows
              FROM {table_ref(ds, 'genai_costs_daily')} WHERE x_org_slug = @org GROUP BY {day}provider, model),
            api AS (
              SELECT {day}provider, model, SUM(amount) AS billed_cost
              FROM {table_ref(ds, 'genai_provider_costs_daily')} WHERE x_org_slug = @org AND model IS NOT NULL
              GROUP BY {day}provider, model),
            cloud AS (
              SELECT {"DATE(ChargePeriodStart) AS usage_date, " if by_day else ""}
                     JSON_VALUE(AllocatedTags, '$.genai_provider') AS provider, AllocatedResourceName AS model,
                     SUM(BilledCost) AS billed_cost
              FROM {table_ref(ds, 'cost_data_standard_1_3')}
              WHERE x_org_slug = @org AND AllocatedMethodId = 'cloudact-genai-usage'
              GROUP BY {"1, " if by_day else ""}JSON_VALUE(AllocatedTags, '$.genai_provider'), AllocatedResourceName),
            billed AS (
              SELECT {day}provider, model, billed_cost, 'cloud bill' AS billed_by FROM cloud
              UNION ALL
              SELECT {"a.usage_date, " if by_day else ""}a.provider, a.model, a.billed_cost, 'provider API'
              FROM api AS a
              WHERE NOT EXISTS (SELECT 1 FROM cloud AS c WHERE c.provider = a.provider AND c.model = a.model
                                {"AND c.usage_date = a.usage_date" if by_day else ""}))
            SELECT {"COALESCE(c.usage_date, b.usage_date) AS usage_date, " if by_day else ""}
                   COALESCE(c.provider, b.provider) AS provider, COALESCE(c.model, b.model) AS model,
                   c.computed_cost, b.billed_cost, b.billed_by, b.billed_cost - c.computed_cost AS difference,
                   c.unpriced_rows
            FROM computed AS c FULL OUTER JOIN billed AS b
              ON b.provider = c.provider AND b.model = c.model {"AND b.usage_date = c.usage_date" if by_day else ""}
            ORDER BY {"1, " if by_day else ""}provider, model""",
        {"org": slug},
    )
    for r in rows:
        unpriced = r.pop("unpriced_rows") or 0
        if unpriced and r["computed_cost"] is None:
            r["reason"] = "unpriced: no list price for the model (add it to genai_pricing.yml)"
        elif r["billed_cost"] is None:
            r["reason"] = ("no bill read for it" if r["provider"] != "deepseek" else DIFFERENCE_REASONS["deepseek"])
        elif r["computed_cost"] is None:
            r["reason"] = "billed with no usage read for the model"
        elif abs(r["difference"]) > TOLERANCE:
            r["reason"] = DIFFERENCE_REASONS.get(r["provider"], "billed at another price than the list price")
        else:
            r["reason"] = None
    return rows
