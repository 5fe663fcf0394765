-- Cost details: the billed total. A period with an ActualCost export is totalled from it alone (an
-- AmortizedCost export of the same period holds the same charges, spread differently). A period read from
-- AmortizedCost alone counts its commitment-covered usage and unused commitments as 0: they are billed at
-- purchase, not at use, and the purchase rows carry that cost.
SELECT usage_date, billing_period_start AS billing_period, 'azure' AS provider, billing_currency AS currency,
       COUNT(*) AS source_rows,
       SUM(CASE WHEN cost_type = 'AmortizedCost'
                     AND COALESCE((pricing_model IN ('Reservation', 'SavingsPlan')
                                   OR charge_type IN ('UnusedReservation', 'UnusedSavingsPlan'))
                                  AND charge_type IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan'), FALSE)
                THEN CAST(0 AS NUMERIC) ELSE cost END) AS source_cost
FROM {rows}
WHERE cost_type = 'ActualCost'
   OR billing_period_start NOT IN (SELECT billing_period_start FROM {rows} WHERE cost_type = 'ActualCost')
GROUP BY usage_date, billing_period_start, billing_currency
