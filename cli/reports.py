"""Read-only reports over an org's FOCUS table."""
from __future__ import annotations

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


def genai_reconciliation(wh, slug: str, by_day: bool = False) -> list[dict]:
    """Computed (list-price) vs provider-billed GenAI cost per provider and model (and day), with the
    difference. Billed is empty where the provider reports no cost."""
    ds = org_dataset(slug)
    day = "usage_date, " if by_day else ""
    return wh.query(
        f"""WITH computed AS (
              SELECT {day}provider, model, SUM(cost) AS computed_cost
              FROM {table_ref(ds, 'genai_costs_daily')} WHERE x_org_slug = @org GROUP BY {day}provider, model),
            billed AS (
              SELECT {day}provider, model, SUM(amount) AS billed_cost
              FROM {table_ref(ds, 'genai_provider_costs_daily')} WHERE x_org_slug = @org AND model IS NOT NULL
              GROUP BY {day}provider, model)
            SELECT {"COALESCE(c.usage_date, b.usage_date) AS usage_date, " if by_day else ""}
                   COALESCE(c.provider, b.provider) AS provider, COALESCE(c.model, b.model) AS model,
                   c.computed_cost, b.billed_cost, b.billed_cost - c.computed_cost AS difference
            FROM computed AS c FULL OUTER JOIN billed AS b
              ON b.provider = c.provider AND b.model = c.model {"AND b.usage_date = c.usage_date" if by_day else ""}
            ORDER BY {"1, " if by_day else ""}provider, model""",
        {"org": slug},
    )
