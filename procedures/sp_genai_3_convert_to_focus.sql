-- GenAI usage (genai_costs_daily, genai_provider_costs_daily) -> FOCUS 1.3, for one slice: one Usage row
-- per day, model, project, tier and token class (one SkuMeter per token class), plus Adjustment rows that
-- make the day's BilledCost equal what the provider billed.
--
-- * Prices are per 1M tokens, so PricingQuantity is in millions of tokens and
--   ListUnitPrice x PricingQuantity = ListCost exactly (ContractedCost likewise, at the contracted price:
--   the org's negotiated price where an override applies, else the list price; see sp_genai_1).
-- * BilledCost / EffectiveCost: the provider-billed amount of the matching cost line (same day, project,
--   model, token class and batch flag) when exactly one usage row matches it (x_cost_source 'billed');
--   otherwise the cost computed at the contracted price (x_cost_source 'computed').
-- * On a day the provider reports cost for, one Adjustment row holds the bill's difference from the
--   rows above (a non-token charge such as web search, a line several tiers share, cost grouped at
--   another grain), so SUM(BilledCost) per day equals the provider's bill exactly.
-- * Unpriced usage is left out here; it is reported on the run instead of being written as a zero cost.
WITH billed AS (
  SELECT usage_date, project_id, model, token_class, is_batch, SUM(amount) AS amount
  FROM `{org_dataset}.genai_provider_costs_daily`
  WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
    AND usage_date BETWEEN @start_date AND @end_date AND token_class IS NOT NULL AND model IS NOT NULL
  GROUP BY usage_date, project_id, model, token_class, is_batch
),
usage_rows AS (
  SELECT c.*,
         COUNT(*) OVER (PARTITION BY c.usage_date, c.project_id, c.model, c.token_class, c.is_batch) AS siblings
  FROM `{org_dataset}.genai_costs_daily` AS c
  WHERE c.x_org_slug = @org_slug AND c.x_pipeline_id = @pipeline_id AND c.x_credential_id = @credential_id
    AND c.usage_date BETWEEN @start_date AND @end_date
    AND c.price_status = 'priced'
),
charged AS (
  SELECT u.*, IF(u.siblings = 1 AND b.amount IS NOT NULL, b.amount, u.contracted_cost) AS billed_cost,
         IF(u.siblings = 1 AND b.amount IS NOT NULL, 'billed', 'computed') AS cost_source
  FROM usage_rows AS u
  LEFT JOIN billed AS b
    ON b.usage_date = u.usage_date AND b.model = u.model AND b.token_class = u.token_class
   AND b.is_batch = u.is_batch AND IFNULL(b.project_id, '') = IFNULL(u.project_id, '')
),
-- Where the provider reports cost for a day, the day's FOCUS total must be its bill: one Adjustment row
-- per day carries what the bill has beyond the rows above (non-token charges, lines shared by several
-- tiers, cost grouped at another grain such as an Azure account instead of a deployment).
day_billed AS (
  SELECT usage_date, provider, MAX(currency) AS currency, SUM(amount) AS amount
  FROM `{org_dataset}.genai_provider_costs_daily`
  WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
    AND usage_date BETWEEN @start_date AND @end_date
  GROUP BY usage_date, provider
),
leftover AS (
  SELECT b.usage_date, b.provider, CAST(NULL AS STRING) AS model, CAST(NULL AS STRING) AS project_id,
         b.currency, b.amount - COALESCE((
           SELECT SUM(c.billed_cost) FROM charged AS c
           WHERE c.usage_date = b.usage_date AND c.provider = b.provider), NUMERIC '0') AS amount
  FROM day_billed AS b
),
-- issuer: who invoices (also ProviderName, so direct billing is never mistaken for a marketplace
-- charge); host: the cloud that runs the model; vendor: the model vendor when the model id names none.
-- One row per GenAI provider of providers.yml, from its facts: the loader refuses a provider without them.
hosts AS (
  SELECT provider, ServiceName AS service, InvoiceIssuerName AS issuer, HostProviderName AS host,
         ServiceProviderName AS vendor
  FROM {provider_facts:genai} AS f
),
-- The vendor a model id names (fact_tables.yml model_vendors: the first pattern that matches), per model.
model_vendor AS (
  SELECT m.model, v.vendor
  FROM (SELECT DISTINCT model FROM charged WHERE model IS NOT NULL) AS m
  JOIN {facts:model_vendors} AS v ON LOWER(m.model) LIKE v.model_like
  QUALIFY ROW_NUMBER() OVER (PARTITION BY m.model ORDER BY v.fact_rank) = 1
),
rows_out AS (
  SELECT c.usage_date, c.provider, c.model, c.project_id, c.currency, 'Usage' AS category,
         CONCAT(c.model, ' ', LOWER(m.meter)) AS description,
         c.billed_cost, c.cost AS list_cost, c.unit_price_per_1m AS unit_price,
         c.contracted_cost, c.contracted_unit_price_per_1m AS contracted_unit_price,
         CAST(CAST(c.tokens AS NUMERIC) * NUMERIC '0.000001' AS NUMERIC) AS quantity_1m,
         CAST(c.tokens AS NUMERIC) AS tokens,
         CONCAT(c.priced_as, ':', c.token_class, IF(c.is_batch, ':batch', '')) AS sku,
         m.meter, CONCAT(c.priced_as, ':', c.token_class, IF(c.is_batch, ':batch', ''), ':',
                         COALESCE(c.service_tier, 'default')) AS sku_price,
         c.cost_source, c.x_credential_id
  FROM charged AS c
  JOIN (
    SELECT 'input' AS token_class, 'Input Tokens' AS meter UNION ALL
    SELECT 'cached_input', 'Cached Input Tokens' UNION ALL
    SELECT 'cache_write', 'Cache Write Tokens' UNION ALL
    SELECT 'cache_write_1h', 'Cache Write 1h Tokens' UNION ALL
    SELECT 'output', 'Output Tokens'
  ) AS m ON m.token_class = c.token_class
  UNION ALL
  SELECT l.usage_date, l.provider, l.model, l.project_id, l.currency, 'Adjustment',
         'provider bill beyond the usage rows of the day (non-token charges, shared or regrouped lines)',
         l.amount, l.amount, NULL, l.amount, NULL, NULL, NULL, NULL, NULL, NULL, 'billed', @credential_id
  FROM leftover AS l
  WHERE l.amount != NUMERIC '0'
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags,
        AvailabilityZone},
  r.billed_cost AS BilledCost,
  r.x_credential_id AS BillingAccountId,
  CONCAT(h.issuer, ' account ', r.x_credential_id) AS BillingAccountName,
  'Organization' AS BillingAccountType,
  r.currency AS BillingCurrency,
  TIMESTAMP(DATE_ADD(DATE_TRUNC(r.usage_date, MONTH), INTERVAL 1 MONTH)) AS BillingPeriodEnd,
  TIMESTAMP(DATE_TRUNC(r.usage_date, MONTH)) AS BillingPeriodStart,
  {null:CapacityReservationId, CapacityReservationStatus},
  r.category AS ChargeCategory,
  CAST(NULL AS STRING) AS ChargeClass,
  r.description AS ChargeDescription,
  IF(r.category = 'Usage', 'Usage-Based', 'One-Time') AS ChargeFrequency,
  TIMESTAMP(DATE_ADD(r.usage_date, INTERVAL 1 DAY)) AS ChargePeriodEnd,
  TIMESTAMP(r.usage_date) AS ChargePeriodStart,
  {null:CommitmentDiscountCategory, CommitmentDiscountId, CommitmentDiscountName, CommitmentDiscountQuantity,
        CommitmentDiscountStatus, CommitmentDiscountType, CommitmentDiscountUnit},
  r.tokens AS ConsumedQuantity,
  IF(r.tokens IS NULL, NULL, 'Tokens') AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  r.contracted_cost AS ContractedCost,
  r.contracted_unit_price AS ContractedUnitPrice,
  r.billed_cost AS EffectiveCost,
  h.host AS HostProviderName,
  CAST(NULL AS STRING) AS InvoiceId,
  h.issuer AS InvoiceIssuerName,
  r.list_cost AS ListCost,
  r.unit_price AS ListUnitPrice,
  IF(r.category = 'Usage', 'Standard', NULL) AS PricingCategory,
  r.currency AS PricingCurrency,
  r.contracted_unit_price AS PricingCurrencyContractedUnitPrice,
  r.billed_cost AS PricingCurrencyEffectiveCost,
  r.unit_price AS PricingCurrencyListUnitPrice,
  r.quantity_1m AS PricingQuantity,
  IF(r.quantity_1m IS NULL, NULL, '1000000 Tokens') AS PricingUnit,
  h.issuer AS ProviderName,
  r.vendor AS PublisherName,
  {null:RegionId, RegionName, ResourceId, ResourceName, ResourceType},
  'AI and Machine Learning' AS ServiceCategory,
  h.service AS ServiceName,
  r.vendor AS ServiceProviderName,
  'Generative AI' AS ServiceSubcategory,
  r.sku AS SkuId,
  r.meter AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  r.sku_price AS SkuPriceId,
  r.project_id AS SubAccountId,
  r.project_id AS SubAccountName,
  IF(r.project_id IS NULL, NULL, 'Project') AS SubAccountType,
  CAST(NULL AS JSON) AS Tags,
  r.usage_date AS x_pipeline_run_date,
  r.cost_source AS x_cost_source
FROM (
  SELECT o.*,
         -- the model vendor (FOCUS ServiceProviderName), from the model id where it names one
         COALESCE(mv.vendor, d.vendor) AS vendor
  -- LEFT JOINs: a row whose provider has no facts keeps a NULL InvoiceIssuerName, which the FOCUS table refuses
  -- (REQUIRED), so the conversion fails instead of the row vanishing from a run that succeeds
  FROM rows_out AS o LEFT JOIN hosts AS d ON d.provider = o.provider
  LEFT JOIN model_vendor AS mv ON mv.model = o.model
) AS r
LEFT JOIN hosts AS h ON h.provider = r.provider;
