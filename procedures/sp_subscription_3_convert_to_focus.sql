-- Writes FOCUS 1.3 rows for one slice of subscription_costs_daily: one row per subscription and billed day.
--
-- Modelling (one choice, applied to every row):
--   * A SaaS seat subscription is a recurring charge consumed day by day, so each day is one row with
--     ChargeCategory 'Usage', ChargeFrequency 'Recurring', ChargePeriod [day, day + 1).
--   * BilledCost = EffectiveCost = ContractedCost = the day's amortized amount (daily_amount). The
--     extractor spreads each billing cycle over its actual days so the days of a full cycle sum
--     exactly to the cycle's amount (seats x discounted unit price); summed over any whole cycle,
--     BilledCost equals what the vendor bills for it. No Purchase row is written on the cycle's first
--     day: we hold no invoices, and a Purchase that covers the cycle would need EffectiveCost 0 plus
--     true-up and refund rows for seat changes and cancellations. The cost of a range that cuts a
--     cycle is therefore its pro-rata share, not the cycle-start invoice.
--   * Pricing is per seat and day: PricingQuantity = ConsumedQuantity = seats ('Seats');
--     ListUnitPrice = one seat's share of the list unit price for that day and ContractedUnitPrice the
--     same after the discount (both computed by the extractor at 9 decimal places), so
--     ListUnitPrice x PricingQuantity = ListCost and ContractedUnitPrice x PricingQuantity =
--     ContractedCost hold exactly, with no rounding here. PricingCategory 'Standard': a negotiated
--     discount shows as ContractedUnitPrice < ListUnitPrice, not as a commitment.
--   * Vendor names: ServiceProviderName = ProviderName = PublisherName = InvoiceIssuerName =
--     HostProviderName (SaaS vendors host their own service). ServiceName is the product.
--   * BillingAccountId = the org slug; SubAccount = the subscription's department (all three
--     SubAccount columns NULL together); Resource = the subscription; Tags = flat {owner, department}
--     without null keys, NULL when neither is set. BillingPeriod = the calendar month of the day.
DELETE FROM `{org_dataset}.cost_data_standard_1_3`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND ChargePeriodStart >= TIMESTAMP(@start_date)
  AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY));

INSERT INTO `{org_dataset}.cost_data_standard_1_3` (
  BilledCost, BillingAccountId, BillingAccountName, BillingAccountType, BillingCurrency,
  BillingPeriodEnd, BillingPeriodStart, ChargeCategory, ChargeClass, ChargeDescription, ChargeFrequency,
  ChargePeriodEnd, ChargePeriodStart, ConsumedQuantity, ConsumedUnit, ContractedCost, ContractedUnitPrice,
  EffectiveCost, HostProviderName, InvoiceIssuerName, ListCost, ListUnitPrice, PricingCategory,
  PricingCurrency, PricingCurrencyContractedUnitPrice, PricingCurrencyEffectiveCost, PricingCurrencyListUnitPrice,
  PricingQuantity, PricingUnit, ProviderName, PublisherName, ResourceId, ResourceName, ResourceType,
  ServiceCategory, ServiceName, ServiceProviderName, ServiceSubcategory, SkuId, SkuMeter, SkuPriceId,
  SubAccountId, SubAccountName, SubAccountType, Tags,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date,
  x_cost_source)
WITH named AS (
  SELECT c.*,
         CASE c.provider
           WHEN 'slack' THEN 'Slack'
           WHEN 'canva' THEN 'Canva'
           WHEN 'chatgpt_plus' THEN 'OpenAI'
           WHEN 'chatgpt_team' THEN 'OpenAI'
           WHEN 'claude_pro' THEN 'Anthropic'
           WHEN 'zoom' THEN 'Zoom'
           WHEN 'google_workspace' THEN 'Google'
           WHEN 'microsoft_365' THEN 'Microsoft'
           ELSE c.provider
         END AS vendor,
         CASE c.provider
           WHEN 'slack' THEN 'Slack'
           WHEN 'canva' THEN 'Canva'
           WHEN 'chatgpt_plus' THEN 'ChatGPT Plus'
           WHEN 'chatgpt_team' THEN 'ChatGPT Team'
           WHEN 'claude_pro' THEN 'Claude Pro'
           WHEN 'zoom' THEN 'Zoom Workplace'
           WHEN 'google_workspace' THEN 'Google Workspace'
           WHEN 'microsoft_365' THEN 'Microsoft 365'
           ELSE c.provider
         END AS service,
         CASE
           WHEN c.provider IN ('chatgpt_plus', 'chatgpt_team', 'claude_pro') THEN 'AI and Machine Learning'
           ELSE 'Business Applications'
         END AS category,
         CASE
           WHEN c.provider IN ('chatgpt_plus', 'chatgpt_team', 'claude_pro') THEN 'Generative AI'
           WHEN c.provider IN ('slack', 'canva', 'zoom', 'google_workspace', 'microsoft_365')
             THEN 'Productivity and Collaboration'
           ELSE 'Other (Business Applications)'
         END AS subcategory
  FROM `{org_dataset}.subscription_costs_daily` AS c
  WHERE c.x_org_slug = @org_slug AND c.x_pipeline_id = @pipeline_id AND c.x_credential_id = @credential_id
    AND c.cost_date BETWEEN @start_date AND @end_date
)
SELECT daily_amount, @org_slug, @org_slug, 'Organization', currency,
       TIMESTAMP(DATE_ADD(DATE_TRUNC(cost_date, MONTH), INTERVAL 1 MONTH)),
       TIMESTAMP(DATE_TRUNC(cost_date, MONTH)), 'Usage', CAST(NULL AS STRING),
       CONCAT(service, ' ', plan, ' subscription: ', CAST(seats AS STRING), ' seat(s), billed ', billing_cycle),
       'Recurring',
       TIMESTAMP(DATE_ADD(cost_date, INTERVAL 1 DAY)), TIMESTAMP(cost_date),
       CAST(seats AS NUMERIC), 'Seats', daily_amount, seat_daily_price,
       daily_amount, vendor, vendor, daily_list_amount, seat_daily_list_price, 'Standard',
       currency, seat_daily_price, daily_amount, seat_daily_list_price,
       CAST(seats AS NUMERIC), 'Seats', vendor, vendor, subscription_id, CONCAT(service, ' ', plan), 'Subscription',
       category, service, vendor, subcategory,
       CONCAT(provider, ':', plan), 'Seats', CONCAT(provider, ':', plan, ':', billing_cycle, ':', currency),
       department, department, IF(department IS NULL, NULL, 'Department'),
       CASE
         WHEN owner IS NOT NULL AND department IS NOT NULL THEN JSON_OBJECT('owner', owner, 'department', department)
         WHEN owner IS NOT NULL THEN JSON_OBJECT('owner', owner)
         WHEN department IS NOT NULL THEN JSON_OBJECT('department', department)
       END,
       @org_slug, @pipeline_id, @credential_id, cost_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE(),
       'subscription'
FROM named;
