-- Prices one slice of genai_usage_daily into genai_costs_daily: one row per usage row and token
-- class, at the list price in effect on the usage date. An exact model id wins over its family
-- (gpt-4o-2024-08-06 falls back to gpt-4o). A usage row with no price stays unpriced (cost NULL,
-- price_status 'unpriced'), so it is reported, never costed at 0.
DELETE FROM `{org_dataset}.genai_costs_daily`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND usage_date BETWEEN @start_date AND @end_date;

INSERT INTO `{org_dataset}.genai_costs_daily` (
  usage_date, provider, model, model_family, project_id, service_tier, is_batch, token_class, tokens,
  unit_price_per_1m, cost, currency, price_status, priced_as,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date)
WITH token_rows AS (
  SELECT u.usage_date, u.provider, u.model, u.model_family, u.project_id, u.service_tier, u.is_batch,
         c.token_class,
         CASE c.token_class
           WHEN 'input' THEN u.input_tokens
           WHEN 'cached_input' THEN u.cached_input_tokens
           WHEN 'cache_write' THEN u.cache_write_tokens
           WHEN 'cache_write_1h' THEN COALESCE(u.cache_write_1h_tokens, 0)
           ELSE u.output_tokens
         END AS tokens
  FROM `{org_dataset}.genai_usage_daily` AS u
  CROSS JOIN (
    SELECT 'input' AS token_class UNION ALL SELECT 'cached_input'
    UNION ALL SELECT 'cache_write' UNION ALL SELECT 'cache_write_1h' UNION ALL SELECT 'output'
  ) AS c
  WHERE u.x_org_slug = @org_slug AND u.x_pipeline_id = @pipeline_id AND u.x_credential_id = @credential_id
    AND u.usage_date BETWEEN @start_date AND @end_date
),
candidates AS (
  SELECT t.*, p.model AS priced_as, p.currency AS price_currency,
         CASE t.token_class
           WHEN 'input' THEN IF(t.is_batch, p.batch_input_per_1m, p.input_per_1m)
           WHEN 'cached_input' THEN IF(t.is_batch, p.batch_cached_input_per_1m, p.cached_input_per_1m)
           WHEN 'cache_write' THEN IF(t.is_batch, p.batch_cache_write_per_1m, p.cache_write_per_1m)
           WHEN 'cache_write_1h' THEN IF(t.is_batch, p.batch_cache_write_1h_per_1m, p.cache_write_1h_per_1m)
           ELSE IF(t.is_batch, p.batch_output_per_1m, p.output_per_1m)
         END AS unit_price,
         ROW_NUMBER() OVER (
           PARTITION BY t.usage_date, t.provider, t.model, t.project_id, t.service_tier, t.is_batch, t.token_class
           ORDER BY IF(p.model = t.model, 0, 1), p.effective_from DESC
         ) AS pick
  FROM token_rows AS t
  LEFT JOIN `organizations.genai_model_pricing` AS p
    ON p.provider = t.provider
   AND (p.model = t.model OR p.model = t.model_family)
   AND p.effective_from <= t.usage_date
   AND (p.effective_to IS NULL OR t.usage_date < p.effective_to)
  WHERE t.tokens > 0
)
SELECT usage_date, provider, model, model_family, project_id, service_tier, is_batch, token_class, tokens,
       unit_price,
       CAST(CAST(CAST(tokens AS NUMERIC) * unit_price AS NUMERIC) * NUMERIC '0.000001' AS NUMERIC),
       COALESCE(price_currency, 'USD'),
       IF(unit_price IS NULL, 'unpriced', 'priced'),
       IF(unit_price IS NULL, NULL, priced_as),
       @org_slug, @pipeline_id, @credential_id, usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE()
FROM candidates
WHERE pick = 1;
