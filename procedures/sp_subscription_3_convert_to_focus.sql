-- SaaS subscriptions (subscription_costs_daily) -> FOCUS 1.3, for one slice: one row per subscription and
-- billed day.
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
--   * BillingAccountId = the org's account at the vendor ('<vendor key>/<org slug>'): each vendor bills the
--     org on its own account, so one account never carries two ProviderNames; SubAccount = the subscription's department (all three
--     SubAccount columns NULL together); Resource = the subscription; Tags = flat {owner, department}
--     without null keys, NULL when neither is set. BillingPeriod = the calendar month of the day.
WITH named AS (
  -- the vendor, its product and their category from fact_tables.yml saas_vendors; a vendor we hold no name
  -- for: its key, capitalised as a name ('notion' -> 'Notion'), in Business Applications
  SELECT c.*,
         COALESCE(v.vendor, CONCAT(UPPER(SUBSTR(c.provider, 1, 1)), SUBSTR(c.provider, 2))) AS vendor,
         COALESCE(v.service, c.provider) AS service,
         COALESCE(v.category, 'Business Applications') AS category,
         COALESCE(v.subcategory, 'Other (Business Applications)') AS subcategory
  FROM `{org_dataset}.subscription_costs_daily` AS c
  LEFT JOIN {facts:saas_vendors} AS v ON v.vendor_key = c.provider
  WHERE c.x_org_slug = @org_slug AND c.x_pipeline_id = @pipeline_id AND c.x_credential_id = @credential_id
    AND c.cost_date BETWEEN @start_date AND @end_date
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags,
        AvailabilityZone},
  daily_amount AS BilledCost,
  CONCAT(provider, '/', @org_slug) AS BillingAccountId,
  CONCAT(vendor, ' account of ', @org_slug) AS BillingAccountName,
  'Organization' AS BillingAccountType,
  currency AS BillingCurrency,
  TIMESTAMP(DATE_ADD(DATE_TRUNC(cost_date, MONTH), INTERVAL 1 MONTH)) AS BillingPeriodEnd,
  TIMESTAMP(DATE_TRUNC(cost_date, MONTH)) AS BillingPeriodStart,
  {null:CapacityReservationId, CapacityReservationStatus},
  'Usage' AS ChargeCategory,
  CAST(NULL AS STRING) AS ChargeClass,
  CONCAT(service, ' ', plan, ' subscription: ', CAST(seats AS STRING), ' seat(s), billed ', billing_cycle) AS ChargeDescription,
  'Recurring' AS ChargeFrequency,
  TIMESTAMP(DATE_ADD(cost_date, INTERVAL 1 DAY)) AS ChargePeriodEnd,
  TIMESTAMP(cost_date) AS ChargePeriodStart,
  {null:CommitmentDiscountCategory, CommitmentDiscountId, CommitmentDiscountName, CommitmentDiscountQuantity,
        CommitmentDiscountStatus, CommitmentDiscountType, CommitmentDiscountUnit},
  CAST(seats AS NUMERIC) AS ConsumedQuantity,
  'Seats' AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  daily_amount AS ContractedCost,
  seat_daily_price AS ContractedUnitPrice,
  daily_amount AS EffectiveCost,
  vendor AS HostProviderName,
  CAST(NULL AS STRING) AS InvoiceId,
  vendor AS InvoiceIssuerName,
  daily_list_amount AS ListCost,
  seat_daily_list_price AS ListUnitPrice,
  'Standard' AS PricingCategory,
  currency AS PricingCurrency,
  seat_daily_price AS PricingCurrencyContractedUnitPrice,
  daily_amount AS PricingCurrencyEffectiveCost,
  seat_daily_list_price AS PricingCurrencyListUnitPrice,
  CAST(seats AS NUMERIC) AS PricingQuantity,
  'Seats' AS PricingUnit,
  vendor AS ProviderName,
  vendor AS PublisherName,
  {null:RegionId, RegionName},
  subscription_id AS ResourceId,
  CONCAT(service, ' ', plan) AS ResourceName,
  'Subscription' AS ResourceType,
  category AS ServiceCategory,
  service AS ServiceName,
  vendor AS ServiceProviderName,
  subcategory AS ServiceSubcategory,
  CONCAT(provider, ':', plan) AS SkuId,
  'Seats' AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  CONCAT(provider, ':', plan, ':', billing_cycle, ':', currency) AS SkuPriceId,
  department AS SubAccountId,
  department AS SubAccountName,
  IF(department IS NULL, NULL, 'Department') AS SubAccountType,
  CASE
    WHEN owner IS NOT NULL AND department IS NOT NULL THEN JSON_OBJECT('owner', owner, 'department', department)
    WHEN owner IS NOT NULL THEN JSON_OBJECT('owner', owner)
    WHEN department IS NOT NULL THEN JSON_OBJECT('department', department)
  END AS Tags,
  cost_date AS x_pipeline_run_date,
  'subscription' AS x_cost_source
FROM named;
