-- CUR: what the line items add to the invoice, their unblended cost.
SELECT usage_date, billing_period_start AS billing_period, 'aws' AS provider, currency,
       COUNT(*) AS source_rows, SUM(unblended_cost) AS source_cost
FROM {rows}
GROUP BY usage_date, billing_period_start, currency
