-- A FOCUS export (any provider's, or a vendor's file): BilledCost is what the invoice holds.
SELECT usage_date, billing_period_start AS billing_period, provider, billing_currency AS currency,
       COUNT(*) AS source_rows, SUM(billed_cost) AS source_cost
FROM {rows}
GROUP BY usage_date, billing_period_start, provider, billing_currency
