-- Cost reports: my_cost is what the tenancy is billed (list cost less its discounts).
SELECT usage_date, billing_period_start AS billing_period, 'oci' AS provider, currency,
       COUNT(*) AS source_rows, SUM(my_cost) AS source_cost
FROM {rows}
GROUP BY usage_date, billing_period_start, currency
