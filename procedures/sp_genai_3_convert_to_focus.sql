-- Writes FOCUS 1.3 rows for one slice of genai_costs_daily: one row per day, model, project and
-- token class (one SkuMeter per token class). Prices are per 1M tokens, so PricingQuantity is in
-- millions of tokens and ListUnitPrice x PricingQuantity = ListCost exactly. Unpriced usage is left
-- out here; it is reported on the run instead of being written as a zero cost.
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
WITH priced AS (
  SELECT c.*,
         CASE c.provider
           WHEN 'openai' THEN 'OpenAI'
           WHEN 'anthropic' THEN 'Anthropic'
           WHEN 'gemini' THEN 'Google'
           WHEN 'vertex' THEN 'Google'
           WHEN 'deepseek' THEN 'DeepSeek'
           WHEN 'azure_openai' THEN 'OpenAI'
           WHEN 'bedrock' THEN 'Amazon Web Services'
           ELSE c.provider
         END AS vendor,
         CASE c.token_class
           WHEN 'input' THEN 'Input Tokens'
           WHEN 'cached_input' THEN 'Cached Input Tokens'
           WHEN 'cache_write' THEN 'Cache Write Tokens'
           ELSE 'Output Tokens'
         END AS meter,
         CAST(CAST(c.tokens AS NUMERIC) * NUMERIC '0.000001' AS NUMERIC) AS quantity_1m
  FROM `{org_dataset}.genai_costs_daily` AS c
  WHERE c.x_org_slug = @org_slug AND c.x_pipeline_id = @pipeline_id AND c.x_credential_id = @credential_id
    AND c.usage_date BETWEEN @start_date AND @end_date
    AND c.price_status = 'priced'
)
SELECT cost, x_credential_id, CONCAT(vendor, ' account ', x_credential_id), 'Organization', currency,
       TIMESTAMP(DATE_ADD(DATE_TRUNC(usage_date, MONTH), INTERVAL 1 MONTH)),
       TIMESTAMP(DATE_TRUNC(usage_date, MONTH)), 'Usage', NULL, CONCAT(model, ' ', LOWER(meter)), 'Usage-Based',
       TIMESTAMP(DATE_ADD(usage_date, INTERVAL 1 DAY)), TIMESTAMP(usage_date),
       CAST(tokens AS NUMERIC), 'Tokens', cost, unit_price_per_1m,
       cost, vendor, vendor, cost, unit_price_per_1m, 'Standard',
       currency, unit_price_per_1m, cost, unit_price_per_1m,
       quantity_1m, '1000000 Tokens', vendor, vendor, 'AI and Machine Learning', CONCAT(vendor, ' API'), vendor,
       'Generative AI',
       CONCAT(priced_as, ':', token_class, IF(is_batch, ':batch', '')), meter,
       CONCAT(priced_as, ':', token_class, IF(is_batch, ':batch', ''), ':', COALESCE(service_tier, 'default')),
       project_id, project_id, IF(project_id IS NULL, NULL, 'Project'),
       @org_slug, @pipeline_id, @credential_id, usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE(),
       'computed'
FROM priced;
