-- Google Cloud Billing export rows (gcp_billing_raw) -> FOCUS 1.3 rows, for one slice.
--
-- Rows emitted (nothing is counted twice; SUM(BilledCost) per invoice month = SUM(cost + credits) = the invoice):
-- * one row per export row with BilledCost = EffectiveCost = cost (before credits):
--     cost_type regular -> Usage. Commitment fee SKUs ('Commitment ...') are Usage too: GCP charges the
--     commitment hour by hour as it is consumed (never ahead), so each fee row is the commitment's applied
--     cost (CommitmentDiscountStatus Used, ChargeFrequency Recurring), not a Purchase covering future charges;
--     tax -> Tax; adjustment -> Credit when adjustment_info.type is GOODWILL / SLA_VIOLATION /
--     SALES_BASED_GOODWILL, else Adjustment; rounding_error -> Adjustment.
-- * one Credit row per entry of credits[] (UNNEST of the JSON array text, on both engines) with
--   BilledCost = EffectiveCost = ListCost = ContractedCost = the credit amount (negative); it keeps the export
--   row's account, project, service, SKU, resource, region and tags. COMMITTED_USAGE_DISCOUNT* credits carry the
--   commitment (credit id) as CommitmentDiscountId. The usage row's cost is never reduced by its credits.
-- * EffectiveCost = BilledCost everywhere: GCP spreads commitment fees hourly/daily already.
-- * ChargeClass = Correction only for rows with adjustment_info whose invoice month is after the usage month
--   (a correction of an already-invoiced period); a correction inside the open month is a plain row.
-- * BillingPeriodStart/End = invoice.month and the next month, from 00:00 Pacific time: Google's invoice months
--   run on America/Los_Angeles, so usage of 1 Oct 00:00-07:00 UTC is on the September invoice.
-- * PricingQuantity = usage.amount_in_pricing_units and PricingUnit = usage.pricing_unit in FOCUS Unit Format
--   ('gibibyte month' -> 'GiB-Months', 'hour' -> 'Hours', 'tebibyte' -> 'TiB', '1000000 token' -> '1000000 Tokens',
--   'count' -> 'Counts')
--   on Usage/Purchase rows; NULL on the others. ConsumedQuantity/ConsumedUnit = usage.amount/usage.unit on
--   Usage rows only.
-- * ListCost = cost_at_list (else cost); ListUnitPrice = price.list_price only when it times PricingQuantity
--   reproduces ListCost (tiered SKUs do not), else NULL. ContractedCost = cost; ContractedUnitPrice =
--   price.effective_price under the same rule.
-- * Providers 'Google Cloud'; Marketplace rows (transaction_type THIRD_PARTY_*) name the seller as
--   ServiceProviderName and PublisherName. ServiceCategory from organizations.service_category_map by
--   LOWER(service.description), falling back to Other / Other (Other). SubAccount = the project.
WITH src AS (
  SELECT r.*,
         CASE
           WHEN r.cost_type = 'tax' THEN 'Tax'
           WHEN r.cost_type = 'adjustment'
                AND r.adjustment_type IN ('GOODWILL', 'SLA_VIOLATION', 'SALES_BASED_GOODWILL') THEN 'Credit'
           WHEN r.cost_type IN ('adjustment', 'rounding_error') THEN 'Adjustment'
           ELSE 'Usage'
         END AS row_category,
         IF(r.adjustment_id IS NOT NULL AND r.cost_type = 'regular'
              AND r.billing_period_start > DATE_TRUNC(r.usage_date, MONTH), 'Correction', NULL) AS charge_class,
         IF(STARTS_WITH(COALESCE(r.transaction_type, ''), 'THIRD_PARTY') AND r.seller_name IS NOT NULL,
            r.seller_name, {gcp.ServiceProviderName}) AS seller,
         CASE WHEN LOWER(COALESCE(r.location_region, r.location)) = 'global' THEN NULL
              ELSE COALESCE(r.location_region, r.location) END AS region,
         COALESCE(m.service_category, 'Other') AS service_category,
         COALESCE(m.service_subcategory, 'Other (Other)') AS service_subcategory
  FROM `{org_dataset}.gcp_billing_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m
    ON m.provider = 'gcp' AND m.service_key = LOWER(r.service_description)
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
-- GCP unit names ('gibibyte month', 'hour', '1000 count') -> FOCUS Unit Format by macros/focus_unit.sql, the
-- normaliser of every path; computed once per distinct unit name (a few dozen), not once per row, then joined back.
unit_names AS (
  SELECT name, FOCUS_UNIT(name) AS focus_unit
  FROM (
    SELECT DISTINCT name
    FROM `{org_dataset}.gcp_billing_raw` AS r, UNNEST([r.usage_pricing_unit, r.usage_unit]) AS name
    WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
      AND r.usage_date BETWEEN @start_date AND @end_date AND name IS NOT NULL
  )
),
units AS (
  SELECT s.*, pu.focus_unit AS pricing_unit_focus, uu.focus_unit AS usage_unit_focus
  FROM src AS s
  LEFT JOIN unit_names AS pu ON pu.name = s.usage_pricing_unit
  LEFT JOIN unit_names AS uu ON uu.name = s.usage_unit
),
charges AS (
  SELECT u.*, FALSE AS is_credit, u.cost AS billed, CAST(NULL AS STRING) AS credit_type,
         CAST(NULL AS STRING) AS credit_name, CAST(NULL AS STRING) AS credit_id
  FROM units AS u
  UNION ALL
  SELECT u.*, TRUE AS is_credit, CAST(JSON_VALUE(c, '$.amount') AS NUMERIC) AS billed,
         JSON_VALUE(c, '$.type') AS credit_type,
         COALESCE(JSON_VALUE(c, '$.full_name'), JSON_VALUE(c, '$.name')) AS credit_name,
         JSON_VALUE(c, '$.id') AS credit_id
  FROM units AS u
  CROSS JOIN UNNEST(JSON_QUERY_ARRAY(u.credits)) AS c
  WHERE u.credits IS NOT NULL AND u.credits != '[]'  -- most rows have none: skip parsing them
),
priced AS (
  SELECT ch.*,
         IF(is_credit, 'Credit', row_category) AS category,
         IF(NOT is_credit AND row_category IN ('Usage', 'Purchase'),
            COALESCE(usage_amount_in_pricing_units, usage_amount, NUMERIC '0'), NULL) AS quantity,
         CASE
           WHEN is_credit THEN billed
           WHEN row_category IN ('Usage', 'Purchase') THEN COALESCE(cost_at_list, cost)
           ELSE cost
         END AS list_cost,
         CASE
           WHEN is_credit AND credit_type LIKE 'COMMITTED_USAGE_DISCOUNT%' THEN NULLIF(credit_id, '')
           WHEN NOT is_credit AND STARTS_WITH(LOWER(COALESCE(sku_description, '')), 'commitment')
             THEN subscription_instance_id
         END AS commitment_id
  FROM charges AS ch
),
final AS (
  SELECT p.*,
         IF(quantity IS NULL, NULL, COALESCE(NULLIF(pricing_unit_focus, ''), 'Units')) AS unit,
         IF(price_list_price IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(price_list_price AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(list_cost AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(list_cost AS FLOAT64)), 1),
            price_list_price, NULL) AS list_rate,
         IF(price_effective_price IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(price_effective_price AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(cost AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(cost AS FLOAT64)), 1),
            price_effective_price, NULL) AS contracted_rate
  FROM priced AS p
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags},
  location_zone AS AvailabilityZone,
  billed AS BilledCost,
  billing_account_id AS BillingAccountId,
  billing_account_id AS BillingAccountName,
  'Billing Account' AS BillingAccountType,
  currency AS BillingCurrency,
  TIMESTAMP(DATE_ADD(billing_period_start, INTERVAL 1 MONTH), 'America/Los_Angeles') AS BillingPeriodEnd,
  TIMESTAMP(billing_period_start, 'America/Los_Angeles') AS BillingPeriodStart,
  {null:CapacityReservationId, CapacityReservationStatus},
  category AS ChargeCategory,
  charge_class AS ChargeClass,
  CASE
    WHEN is_credit THEN COALESCE(credit_name, credit_type)
    WHEN row_category IN ('Credit', 'Adjustment') THEN COALESCE(adjustment_description, sku_description, cost_type)
    ELSE sku_description
  END AS ChargeDescription,
  CASE
    WHEN category = 'Purchase' OR (commitment_id IS NOT NULL AND NOT is_credit) THEN 'Recurring'
    WHEN row_category IN ('Usage', 'Purchase') THEN 'Usage-Based'
    ELSE 'One-Time'
  END AS ChargeFrequency,
  IF(usage_end_time > usage_start_time, usage_end_time, TIMESTAMP_ADD(usage_start_time, INTERVAL 1 HOUR)) AS ChargePeriodEnd,
  usage_start_time AS ChargePeriodStart,
  CASE
    WHEN commitment_id IS NULL THEN NULL
    WHEN credit_type = 'COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE' OR LOWER(sku_description) LIKE '%dollar based%'
      THEN 'Spend'
    ELSE 'Usage'
  END AS CommitmentDiscountCategory,
  commitment_id AS CommitmentDiscountId,
  commitment_id AS CommitmentDiscountName,
  IF(commitment_id IS NOT NULL AND NOT is_credit, quantity, NULL) AS CommitmentDiscountQuantity,
  IF(commitment_id IS NOT NULL AND category = 'Usage', 'Used', NULL) AS CommitmentDiscountStatus,
  IF(commitment_id IS NULL, NULL, 'Committed Use Discount') AS CommitmentDiscountType,
  IF(commitment_id IS NOT NULL AND NOT is_credit, unit, NULL) AS CommitmentDiscountUnit,
  IF(category = 'Usage' AND usage_amount IS NOT NULL, usage_amount, NULL) AS ConsumedQuantity,
  IF(category = 'Usage' AND usage_amount IS NOT NULL, COALESCE(NULLIF(usage_unit_focus, ''), 'Units'), NULL) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  IF(is_credit OR row_category NOT IN ('Usage', 'Purchase'), billed, cost) AS ContractedCost,
  contracted_rate AS ContractedUnitPrice,
  billed AS EffectiveCost,
  {gcp.HostProviderName} AS HostProviderName,
  CAST(NULL AS STRING) AS InvoiceId,
  {gcp.InvoiceIssuerName} AS InvoiceIssuerName,
  list_cost AS ListCost,
  list_rate AS ListUnitPrice,
  CASE
    WHEN category NOT IN ('Usage', 'Purchase') THEN NULL
    WHEN category = 'Usage' AND (credits_committed_usage IS NOT NULL OR commitment_id IS NOT NULL) THEN 'Committed'
    WHEN LOWER(sku_description) LIKE '%spot%' OR LOWER(sku_description) LIKE '%preemptible%' THEN 'Dynamic'
    ELSE 'Standard'
  END AS PricingCategory,
  currency AS PricingCurrency,
  contracted_rate AS PricingCurrencyContractedUnitPrice,
  billed AS PricingCurrencyEffectiveCost,
  list_rate AS PricingCurrencyListUnitPrice,
  quantity AS PricingQuantity,
  unit AS PricingUnit,
  {gcp.ProviderName} AS ProviderName,
  seller AS PublisherName,
  region AS RegionId,
  region AS RegionName,
  resource_global_name AS ResourceId,
  IF(resource_global_name IS NULL, NULL, COALESCE(resource_name, resource_global_name)) AS ResourceName,
  -- ResourceType is required with a ResourceId: the collection in the global name (instances, buckets)
  IF(resource_global_name IS NULL, NULL,
    COALESCE(REGEXP_EXTRACT(resource_global_name, r'/([A-Za-z]+)/[^/]+$'), 'resource')) AS ResourceType,
  service_category AS ServiceCategory,
  COALESCE(service_description, {gcp.ServiceName}) AS ServiceName,
  seller AS ServiceProviderName,
  service_subcategory AS ServiceSubcategory,
  IF(category = 'Tax', NULL, sku_id) AS SkuId,
  IF(category = 'Tax' OR sku_id IS NULL, NULL, sku_description) AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  IF(category = 'Tax', NULL, sku_id) AS SkuPriceId,
  project_id AS SubAccountId,
  IF(project_id IS NULL, NULL, COALESCE(project_name, project_id)) AS SubAccountName,
  IF(project_id IS NULL, NULL, 'Project') AS SubAccountType,
  PARSE_JSON(labels) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM final
