-- Prices one slice of genai_usage_daily into genai_costs_daily: one row per usage row and token
-- class, at the list price in effect on the usage date. An exact model id wins over its family
-- (gpt-4o-2024-08-06 falls back to gpt-4o); a price for the row's service tier (DeepSeek off_peak) wins
-- over the price for every tier. A usage row with no price stays unpriced (cost NULL, price_status
-- 'unpriced'), so it is reported, never costed at 0.
--
-- The org's negotiated prices (organizations.genai_price_overrides, shared/price_overrides.py) give the
-- contracted price of priced rows: an explicit price for the model family that names the token class,
-- else a percentage off for the model family, else a percentage off for the provider, else the list
-- price. Overrides are read as they stand when the slice runs: adding one changes stored rows only when
-- the slice is run again.
DELETE FROM `{org_dataset}.genai_costs_daily`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND usage_date BETWEEN @start_date AND @end_date;

INSERT INTO `{org_dataset}.genai_costs_daily` (
  usage_date, provider, model, model_family, project_id, cloud_account_id, service_tier, is_batch, token_class,
  tokens, unit_price_per_1m, cost, currency, price_status, priced_as,
  contracted_unit_price_per_1m, contracted_cost, override_id,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date)
WITH token_rows AS (
  SELECT u.usage_date, u.provider, u.model, u.model_family, u.project_id, u.cloud_account_id, u.service_tier,
         u.is_batch, c.token_class,
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
overrides AS (
  SELECT *
  FROM `organizations.genai_price_overrides`
  WHERE org_slug = @org_slug
  QUALIFY ROW_NUMBER() OVER (PARTITION BY override_id ORDER BY version DESC) = 1
),
-- List prices and overrides in one shape, so the rate of a token class is read from either one way.
price_rows AS (
  SELECT 'list' AS source, provider, model, service_tier, effective_from, effective_to, currency,
         CAST(NULL AS STRING) AS override_id, CAST(NULL AS NUMERIC) AS discount_pct,
         input_per_1m, cached_input_per_1m, cache_write_per_1m, cache_write_1h_per_1m, output_per_1m,
         batch_input_per_1m, batch_cached_input_per_1m, batch_cache_write_per_1m, batch_cache_write_1h_per_1m,
         batch_output_per_1m
  FROM `organizations.genai_model_pricing`
  UNION ALL
  SELECT 'override', provider, model_family, CAST(NULL AS STRING), effective_from, effective_to,
         CAST(NULL AS STRING), override_id, discount_pct,
         input_per_1m, cached_input_per_1m, cache_write_per_1m, cache_write_1h_per_1m, output_per_1m,
         batch_input_per_1m, batch_cached_input_per_1m, batch_cache_write_per_1m, batch_cache_write_1h_per_1m,
         batch_output_per_1m
  FROM overrides
),
unit_rates AS (
  SELECT p.source, p.provider, p.model, p.service_tier, p.effective_from, p.effective_to, p.currency,
         p.override_id, p.discount_pct, k.token_class, k.is_batch,
         CASE k.token_class
           WHEN 'input' THEN IF(k.is_batch, p.batch_input_per_1m, p.input_per_1m)
           WHEN 'cached_input' THEN IF(k.is_batch, p.batch_cached_input_per_1m, p.cached_input_per_1m)
           WHEN 'cache_write' THEN IF(k.is_batch, p.batch_cache_write_per_1m, p.cache_write_per_1m)
           WHEN 'cache_write_1h' THEN IF(k.is_batch, p.batch_cache_write_1h_per_1m, p.cache_write_1h_per_1m)
           ELSE IF(k.is_batch, p.batch_output_per_1m, p.output_per_1m)
         END AS rate
  FROM price_rows AS p
  CROSS JOIN (
    SELECT token_class, is_batch
    FROM UNNEST(['input', 'cached_input', 'cache_write', 'cache_write_1h', 'output']) AS token_class
    CROSS JOIN UNNEST([FALSE, TRUE]) AS is_batch
  ) AS k
),
candidates AS (
  SELECT t.*, r.model AS priced_as, r.currency AS price_currency, r.rate AS unit_price,
         ROW_NUMBER() OVER (
           PARTITION BY t.usage_date, t.provider, t.model, t.project_id, t.cloud_account_id, t.service_tier, t.is_batch, t.token_class
           ORDER BY IF(r.service_tier IS NULL, 1, 0), IF(r.model = t.model, 0, 1), r.effective_from DESC
         ) AS pick
  FROM token_rows AS t
  LEFT JOIN unit_rates AS r
    ON r.source = 'list' AND r.provider = t.provider
   AND r.token_class = t.token_class AND r.is_batch = t.is_batch
   AND (r.model = t.model OR r.model = t.model_family)
   AND (r.service_tier IS NULL OR r.service_tier = t.service_tier)
   AND r.effective_from <= t.usage_date
   AND (r.effective_to IS NULL OR t.usage_date < r.effective_to)
  WHERE t.tokens > 0
),
-- Precedence: an explicit price for the family (0), a percentage for the family (1), for the provider (2).
negotiated AS (
  SELECT c.*, o.override_id, o.discount_pct, o.rate AS override_rate,
         ROW_NUMBER() OVER (
           PARTITION BY c.usage_date, c.provider, c.model, c.project_id, c.cloud_account_id, c.service_tier, c.is_batch, c.token_class
           ORDER BY IF(o.discount_pct IS NULL, 0, IF(o.model IS NULL, 2, 1)), o.effective_from DESC, o.override_id
         ) AS override_pick
  FROM candidates AS c
  LEFT JOIN unit_rates AS o
    ON o.source = 'override' AND o.provider = c.provider
   AND o.token_class = c.token_class AND o.is_batch = c.is_batch
   AND (o.model IS NULL OR o.model = c.model_family)
   AND o.effective_from <= c.usage_date
   AND (o.effective_to IS NULL OR c.usage_date < o.effective_to)
   AND (o.discount_pct IS NOT NULL OR o.rate IS NOT NULL)
   AND c.unit_price IS NOT NULL
  WHERE c.pick = 1
),
contracted AS (
  SELECT n.*,
         CASE
           WHEN n.override_id IS NULL THEN n.unit_price
           WHEN n.discount_pct IS NULL THEN n.override_rate
           -- discount_pct has at most 4 decimals, so the factor is exact; the product rounds once
           ELSE CAST(n.unit_price * (NUMERIC '1' - n.discount_pct * NUMERIC '0.01') AS NUMERIC)
         END AS contracted_price
  FROM negotiated AS n
  WHERE n.override_pick = 1
)
SELECT usage_date, provider, model, model_family, project_id, cloud_account_id, service_tier, is_batch, token_class,
       tokens, unit_price,
       CAST(CAST(CAST(tokens AS NUMERIC) * unit_price AS NUMERIC) * NUMERIC '0.000001' AS NUMERIC),
       COALESCE(price_currency, 'USD'),
       IF(unit_price IS NULL, 'unpriced', 'priced'),
       IF(unit_price IS NULL, NULL, priced_as),
       contracted_price,
       CAST(CAST(CAST(tokens AS NUMERIC) * contracted_price AS NUMERIC) * NUMERIC '0.000001' AS NUMERIC),
       override_id,
       @org_slug, @pipeline_id, @credential_id, usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE()
FROM contracted;
