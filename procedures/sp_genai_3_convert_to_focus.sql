-- Writes FOCUS 1.3 rows for one slice of GenAI usage: one Usage row per day, model, project, tier and
-- token class (one SkuMeter per token class), plus Adjustment rows that make the day's BilledCost equal
-- what the provider billed.
--
-- * Prices are per 1M tokens, so PricingQuantity is in millions of tokens and
--   ListUnitPrice x PricingQuantity = ListCost exactly (ContractedCost likewise, at list price).
-- * BilledCost / EffectiveCost: the provider-billed amount of the matching cost line (same day, project,
--   model, token class and batch flag) when exactly one usage row matches it (x_cost_source 'billed');
--   otherwise the cost computed from list prices (x_cost_source 'computed').
-- * On a day the provider reports cost for, one Adjustment row holds the bill's difference from the
--   rows above (a non-token charge such as web search, a line several tiers share, cost grouped at
--   another grain), so SUM(BilledCost) per day equals the provider's bill exactly.
-- * Unpriced usage is left out here; it is reported on the run instead of being written as a zero cost.
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
  PricingQuantity, PricingUnit, ProviderName, PublisherName, ServiceCategory, ServiceName, ServiceProviderName,
  ServiceSubcategory, SkuId, SkuMeter, SkuPriceId, SubAccountId, SubAccountName, SubAccountType,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date,
  x_cost_source)
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
  SELECT u.*, IF(u.siblings = 1 AND b.amount IS NOT NULL, b.amount, u.cost) AS billed_cost,
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
hosts AS (
  SELECT 'openai' AS provider, 'OpenAI API' AS service, 'OpenAI' AS issuer, 'OpenAI' AS host, 'OpenAI' AS vendor UNION ALL
  SELECT 'anthropic', 'Claude API', 'Anthropic', 'Anthropic', 'Anthropic' UNION ALL
  SELECT 'gemini', 'Gemini API', 'Google Cloud', 'Google Cloud', 'Google' UNION ALL
  SELECT 'vertex', 'Generative AI on Vertex AI', 'Google Cloud', 'Google Cloud', 'Google' UNION ALL
  SELECT 'deepseek', 'DeepSeek API', 'DeepSeek', 'DeepSeek', 'DeepSeek' UNION ALL
  SELECT 'azure_openai', 'Azure OpenAI', 'Microsoft', 'Microsoft', 'OpenAI' UNION ALL
  SELECT 'bedrock', 'Amazon Bedrock', 'Amazon Web Services', 'Amazon Web Services', 'Amazon Web Services'
),
rows_out AS (
  SELECT c.usage_date, c.provider, c.model, c.project_id, c.currency, 'Usage' AS category,
         CONCAT(c.model, ' ', LOWER(m.meter)) AS description,
         c.billed_cost, c.cost AS list_cost, c.unit_price_per_1m AS unit_price,
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
         l.amount, l.amount, NULL, NULL, NULL, NULL, NULL, NULL, 'billed', @credential_id
  FROM leftover AS l
  WHERE l.amount != NUMERIC '0'
)
SELECT r.billed_cost, r.x_credential_id, CONCAT(h.issuer, ' account ', r.x_credential_id), 'Organization', r.currency,
       TIMESTAMP(DATE_ADD(DATE_TRUNC(r.usage_date, MONTH), INTERVAL 1 MONTH)),
       TIMESTAMP(DATE_TRUNC(r.usage_date, MONTH)), r.category, CAST(NULL AS STRING), r.description,
       IF(r.category = 'Usage', 'Usage-Based', 'One-Time'),
       TIMESTAMP(DATE_ADD(r.usage_date, INTERVAL 1 DAY)), TIMESTAMP(r.usage_date),
       r.tokens, IF(r.tokens IS NULL, NULL, 'Tokens'), r.list_cost, r.unit_price,
       r.billed_cost, h.host, h.issuer, r.list_cost, r.unit_price, IF(r.category = 'Usage', 'Standard', NULL),
       r.currency, r.unit_price, r.billed_cost, r.unit_price,
       r.quantity_1m, IF(r.quantity_1m IS NULL, NULL, '1000000 Tokens'), h.issuer, r.vendor,
       'AI and Machine Learning', h.service, r.vendor, 'Generative AI',
       r.sku, r.meter, r.sku_price,
       r.project_id, r.project_id, IF(r.project_id IS NULL, NULL, 'Project'),
       @org_slug, @pipeline_id, @credential_id, r.usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE(),
       r.cost_source
FROM (
  SELECT o.*,
         CASE  -- the model vendor (FOCUS ServiceProviderName), from the model id where it names one
           WHEN LOWER(o.model) LIKE '%claude%' THEN 'Anthropic'
           WHEN LOWER(o.model) LIKE '%llama%' THEN 'Meta'
           WHEN LOWER(o.model) LIKE '%mistral%' OR LOWER(o.model) LIKE '%mixtral%' THEN 'Mistral AI'
           WHEN LOWER(o.model) LIKE '%cohere%' THEN 'Cohere'
           WHEN LOWER(o.model) LIKE '%deepseek%' THEN 'DeepSeek'
           WHEN LOWER(o.model) LIKE '%gemini%' OR LOWER(o.model) LIKE '%gemma%' THEN 'Google'
           WHEN LOWER(o.model) LIKE '%titan%' OR LOWER(o.model) LIKE '%nova%' THEN 'Amazon Web Services'
           WHEN LOWER(o.model) LIKE 'gpt%' OR LOWER(o.model) LIKE '%openai%' THEN 'OpenAI'
           ELSE d.vendor
         END AS vendor
  FROM rows_out AS o JOIN hosts AS d ON d.provider = o.provider
) AS r
JOIN hosts AS h ON h.provider = r.provider;
