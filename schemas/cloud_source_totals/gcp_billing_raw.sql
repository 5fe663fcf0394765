-- Billing export: the invoice adds the credits (negative) to the cost.
SELECT usage_date, billing_period_start AS billing_period, 'gcp' AS provider, currency,
       COUNT(*) AS source_rows, SUM(cost + credits_total) AS source_cost
FROM {rows}
GROUP BY usage_date, billing_period_start, currency
