-- Model spend counted once (issue 14). When an org has a cloud bill and the GenAI usage of models that ran on
-- that cloud (Bedrock on AWS, Vertex and Gemini on GCP, Azure OpenAI on Azure: `cloud_model_spend` in
-- fact_tables.yml), the money comes from the cloud bill and the usage explains it:
-- * each cloud Usage line for the models is split over the usage of the same account (the line's
--   SubAccountId = the usage's cloud_account_id) and day, by the shares of the usage's computed cost
--   (contracted_cost), finest where the line names the model (the longest model family its text contains)
--   and the token class (its meter says input / output / cache read / cache write); FOCUS 1.3's allocation
--   columns say so (AllocatedMethodId 'cloudact-genai-usage', AllocatedMethodDetails {"Elements": [{
--   "AllocatedRatio", "UsageQuantity", "UsageUnit"}]}, AllocatedResourceId/Name the model, AllocatedTags).
--   Every cost and quantity is split in NUMERIC with the remainder on one row, so the parts of a line sum to
--   it exactly (ListCost and ContractedCost follow unit price x quantity where the line has a price); a line
--   with no priced usage to split over stays as billed. Split rows keep the cloud run's
--   lineage, so a cloud slice still reconciles to its source (shared.convert.reconcile_cloud).
-- * the GenAI rows of a covered account and day keep their quantities and carry no cost (BilledCost,
--   EffectiveCost, ListCost, ContractedCost 0, unit prices NULL, x_cost_source 'cloud_bill'); a day's
--   Adjustment row (a provider bill's remainder) is left out once every account of that day is covered.
--
-- Order-independent and re-run-safe: the rows as their conversion wrote them are kept in
-- focus_allocation_sources (replaced per run slice, like the FOCUS table), and every run re-derives the
-- FOCUS rows of its window from there, whichever pipeline ran last. Runs in the chains of both sides.

-- 1. This run's slice, as just converted, becomes the source of its rows. A slice that already holds
--    allocated rows was not converted since (a repeated call): its sources stand.
DELETE FROM `{org_dataset}.focus_allocation_sources`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND ChargePeriodStart >= TIMESTAMP(@start_date)
  AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
  AND NOT SLICE_ALLOCATED();

-- The rows this procedure rewrites (macros/model_spend_row.sql): every row of a paired GenAI pipeline, and a
-- cloud's model-service Usage lines (the same test in step 2, as split rows keep the line's service, meter
-- and description).
INSERT INTO `{org_dataset}.focus_allocation_sources`
SELECT f.*, GENERATE_UUID() AS x_line_id
FROM `{org_dataset}.cost_data_standard_1_3` AS f
WHERE f.x_org_slug = @org_slug AND f.x_pipeline_id = @pipeline_id AND f.x_credential_id = @credential_id
  AND f.ChargePeriodStart >= TIMESTAMP(@start_date)
  AND f.ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
  AND MODEL_SPEND_ROW(f.x_pipeline_id, f.ChargeCategory, f.ServiceName, f.SkuMeter, f.ChargeDescription)
  AND NOT SLICE_ALLOCATED();

-- 2. Over the window, the FOCUS rows that have sources (by pipeline, credential and day) are replaced by
--    what the sources and the usage now give. Rows converted before their sources existed are left alone.
DELETE FROM `{org_dataset}.cost_data_standard_1_3` AS f
WHERE f.x_org_slug = @org_slug
  AND f.ChargePeriodStart >= TIMESTAMP(@start_date)
  AND f.ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
  AND MODEL_SPEND_ROW(f.x_pipeline_id, f.ChargeCategory, f.ServiceName, f.SkuMeter, f.ChargeDescription)
  AND EXISTS (
    SELECT 1 FROM `{org_dataset}.focus_allocation_sources` AS o
    WHERE o.x_org_slug = f.x_org_slug AND o.x_pipeline_id = f.x_pipeline_id
      AND o.x_credential_id = f.x_credential_id AND DATE(o.ChargePeriodStart) = DATE(f.ChargePeriodStart));

INSERT INTO `{org_dataset}.cost_data_standard_1_3`
WITH pairs AS (
  SELECT * FROM {facts:cloud_model_spend}
),
originals AS (
  SELECT o.*, DATE(o.ChargePeriodStart) AS charge_day
  FROM `{org_dataset}.focus_allocation_sources` AS o
  WHERE o.x_org_slug = @org_slug
    AND o.ChargePeriodStart >= TIMESTAMP(@start_date)
    AND o.ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
),
-- the cloud lines, each with the GenAI pipeline whose usage explains it, the text its model is looked
-- for in (letters and digits only: "Claude Sonnet 4.5" -> claudesonnet45) and the token class it names
lines AS (
  SELECT o.x_line_id, o.charge_day, o.SubAccountId, p.genai_pipeline,
         LOWER(REGEXP_REPLACE(CONCAT(IFNULL(o.ServiceName, ''), ' ', IFNULL(o.SkuMeter, ''), ' ',
                                     IFNULL(o.ChargeDescription, '')), r'[^a-zA-Z0-9]', '')) AS model_text,
         CASE
           WHEN REGEXP_CONTAINS(LOWER(COALESCE(o.SkuMeter, o.ChargeDescription, '')), r'cache.?read|cached') THEN 'cached_input'
           WHEN REGEXP_CONTAINS(LOWER(COALESCE(o.SkuMeter, o.ChargeDescription, '')), r'cache.?write') THEN 'cache_write'
           WHEN REGEXP_CONTAINS(LOWER(COALESCE(o.SkuMeter, o.ChargeDescription, '')), r'output|outp') THEN 'output'
           WHEN REGEXP_CONTAINS(LOWER(COALESCE(o.SkuMeter, o.ChargeDescription, '')), r'input|inp') THEN 'input'
         END AS token_class
  FROM originals AS o
  JOIN pairs AS p
    ON p.cloud_pipeline = o.x_pipeline_id
   AND REGEXP_CONTAINS(CONCAT(IFNULL(o.ServiceName, ''), ' | ', IFNULL(o.SkuMeter, ''), ' | ',
                              IFNULL(o.ChargeDescription, '')), p.model_lines)
  WHERE o.ChargeCategory = 'Usage'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY o.x_line_id ORDER BY p.fact_rank) = 1
),
-- the priced usage a cloud bill can hold, per model, project and token class; the model key is the family
-- without a vendor prefix (anthropic.claude-sonnet-4-5 -> claudesonnet45, gpt-4o-mini -> gpt4omini)
usage_rows AS (
  SELECT c.x_pipeline_id, c.cloud_account_id, c.usage_date, c.provider, c.model, c.project_id, c.token_class,
         LOWER(REGEXP_REPLACE(REGEXP_REPLACE(c.model_family, r'^[a-z]+\.', ''), r'[^a-zA-Z0-9]', '')) AS model_key,
         SUM(c.tokens) AS tokens, SUM(c.contracted_cost) AS weight
  FROM `{org_dataset}.genai_costs_daily` AS c
  WHERE c.x_org_slug = @org_slug AND c.usage_date BETWEEN @start_date AND @end_date
    AND c.cloud_account_id IS NOT NULL AND c.price_status = 'priced'
    AND c.x_pipeline_id IN (SELECT genai_pipeline FROM pairs)
  GROUP BY c.x_pipeline_id, c.cloud_account_id, c.usage_date, c.provider, c.model, c.project_id, c.token_class,
           c.model_family
  HAVING SUM(c.contracted_cost) > NUMERIC '0'
),
candidates AS (
  SELECT l.x_line_id, u.provider, u.model, u.project_id, u.token_class, u.tokens, u.weight, u.model_key,
         STRPOS(l.model_text, u.model_key) > 0 AS names_model,
         IFNULL(l.token_class = u.token_class, FALSE) AS names_class
  FROM lines AS l
  JOIN usage_rows AS u
    ON u.x_pipeline_id = l.genai_pipeline AND u.cloud_account_id = l.SubAccountId AND u.usage_date = l.charge_day
),
-- of the model keys a line's text contains, the longest is its model (gemini25flashlite over gemini25flash)
longest AS (
  SELECT c.*,
         IFNULL(c.names_model AND LENGTH(c.model_key)
                = MAX(IF(c.names_model, LENGTH(c.model_key), NULL)) OVER (PARTITION BY c.x_line_id), FALSE)
           AS model_match
  FROM candidates AS c
),
-- the finest level some usage of the line meets: 3 model and class, 2 model, 1 class, 0 the account's day
levels AS (
  SELECT l.*, MAX(IF(l.model_match, 2, 0) + IF(l.names_class, 1, 0)) OVER (PARTITION BY l.x_line_id) AS level
  FROM longest AS l
),
shares AS (
  SELECT s.*, CAST(s.weight / SUM(s.weight) OVER (PARTITION BY s.x_line_id) AS NUMERIC) AS ratio,
         ROW_NUMBER() OVER (PARTITION BY s.x_line_id
                            ORDER BY s.weight DESC, s.provider, s.model, IFNULL(s.project_id, ''), s.token_class)
           AS part
  FROM levels AS s
  WHERE (s.level < 2 OR s.model_match) AND (MOD(s.level, 2) = 0 OR s.names_class)
),
parts AS (
  SELECT s.x_line_id, s.part, s.ratio, s.provider, s.model, s.project_id, s.token_class, s.tokens,
         CAST(o.BilledCost * s.ratio AS NUMERIC) AS billed,
         CAST(o.EffectiveCost * s.ratio AS NUMERIC) AS effective,
         CAST(o.ListCost * s.ratio AS NUMERIC) AS list,
         CAST(o.ContractedCost * s.ratio AS NUMERIC) AS contracted,
         CAST(o.PricingCurrencyEffectiveCost * s.ratio AS NUMERIC) AS pricing_effective,
         CAST(o.PricingQuantity * s.ratio AS NUMERIC) AS pricing_quantity,
         CAST(o.ConsumedQuantity * s.ratio AS NUMERIC) AS consumed_quantity,
         CAST(o.CommitmentDiscountQuantity * s.ratio AS NUMERIC) AS commitment_quantity
  FROM shares AS s
  JOIN originals AS o ON o.x_line_id = s.x_line_id
),
-- part 1 takes what rounding left over, so the parts of a line add up to it exactly (macros/part_with_remainder.sql)
exact AS (
  SELECT p.*,
         PART_WITH_REMAINDER(o.BilledCost, p.billed) AS b,
         PART_WITH_REMAINDER(o.EffectiveCost, p.effective) AS e,
         PART_WITH_REMAINDER(o.ListCost, p.list) AS l,
         PART_WITH_REMAINDER(o.ContractedCost, p.contracted) AS c,
         PART_WITH_REMAINDER(o.PricingCurrencyEffectiveCost, p.pricing_effective) AS pe,
         PART_WITH_REMAINDER(o.PricingQuantity, p.pricing_quantity) AS pq,
         PART_WITH_REMAINDER(o.ConsumedQuantity, p.consumed_quantity) AS cq,
         PART_WITH_REMAINDER(o.CommitmentDiscountQuantity, p.commitment_quantity) AS dq
  FROM parts AS p
  JOIN originals AS o ON o.x_line_id = p.x_line_id
),
-- a part with a unit price costs its price times its quantity (FOCUS's product rule holds on every part);
-- rounding may then leave the parts' ListCost and ContractedCost a few nano-dollars off the line's, never
-- BilledCost or EffectiveCost
priced AS (
  SELECT x.*,
         IF(o.ListUnitPrice IS NOT NULL AND x.pq IS NOT NULL, CAST(o.ListUnitPrice * x.pq AS NUMERIC), x.l)
           AS list_cost,
         IF(o.ContractedUnitPrice IS NOT NULL AND x.pq IS NOT NULL, CAST(o.ContractedUnitPrice * x.pq AS NUMERIC), x.c)
           AS contracted_cost
  FROM exact AS x
  JOIN originals AS o ON o.x_line_id = x.x_line_id
),
-- per GenAI slice, day and project: is the cloud account it ran in billed by the cloud that day
covered_days AS (
  SELECT DISTINCT genai_pipeline, SubAccountId, charge_day FROM lines
),
accounts AS (
  SELECT c.x_pipeline_id, c.x_credential_id, c.usage_date, IFNULL(c.project_id, '') AS project_key,
         MAX(IF(d.charge_day IS NULL, 0, 1)) AS covered
  FROM `{org_dataset}.genai_costs_daily` AS c
  LEFT JOIN covered_days AS d
    ON d.genai_pipeline = c.x_pipeline_id AND d.SubAccountId = c.cloud_account_id AND d.charge_day = c.usage_date
  WHERE c.x_org_slug = @org_slug AND c.usage_date BETWEEN @start_date AND @end_date
    AND c.x_pipeline_id IN (SELECT genai_pipeline FROM pairs)
  GROUP BY c.x_pipeline_id, c.x_credential_id, c.usage_date, IFNULL(c.project_id, '')
),
slice_days AS (
  SELECT x_pipeline_id, x_credential_id, usage_date, MIN(covered) AS covered
  FROM accounts GROUP BY x_pipeline_id, x_credential_id, usage_date
),
genai_rows AS (
  SELECT o.*,
         IF(o.ChargeCategory = 'Usage', IFNULL(a.covered, 0), IFNULL(d.covered, 0)) = 1 AS counted_by_cloud
  FROM originals AS o
  LEFT JOIN accounts AS a
    ON a.x_pipeline_id = o.x_pipeline_id AND a.x_credential_id = o.x_credential_id
   AND a.usage_date = o.charge_day AND a.project_key = IFNULL(o.SubAccountId, '')
  LEFT JOIN slice_days AS d
    ON d.x_pipeline_id = o.x_pipeline_id AND d.x_credential_id = o.x_credential_id AND d.usage_date = o.charge_day
  WHERE o.x_pipeline_id IN (SELECT genai_pipeline FROM pairs)
)
-- cloud lines split over the usage
SELECT o.* EXCEPT (x_line_id, charge_day) REPLACE (
  PARSE_JSON(CONCAT('{"Elements":[{"AllocatedRatio":', CAST(e.ratio AS STRING), ',"UsageQuantity":',
                    CAST(e.tokens AS STRING), ',"UsageUnit":"Tokens","x_TokenClass":', TO_JSON_STRING(e.token_class),
                    ',"x_Basis":"computed cost of the usage"}]}')) AS AllocatedMethodDetails,
  'cloudact-genai-usage' AS AllocatedMethodId,
  IF(e.project_id IS NULL, e.model, CONCAT(e.project_id, '/', e.model)) AS AllocatedResourceId,
  e.model AS AllocatedResourceName,
  PARSE_JSON(CONCAT('{"genai_provider":', TO_JSON_STRING(e.provider), ',"model":', TO_JSON_STRING(e.model),
                    ',"token_class":', TO_JSON_STRING(e.token_class),
                    IF(e.project_id IS NULL, '', CONCAT(',"project":', TO_JSON_STRING(e.project_id))), '}'))
    AS AllocatedTags,
  e.b AS BilledCost,
  e.cq AS ConsumedQuantity,
  e.contracted_cost AS ContractedCost,
  e.dq AS CommitmentDiscountQuantity,
  e.e AS EffectiveCost,
  e.list_cost AS ListCost,
  e.pe AS PricingCurrencyEffectiveCost,
  e.pq AS PricingQuantity)
FROM originals AS o
JOIN priced AS e ON e.x_line_id = o.x_line_id
UNION ALL
-- cloud lines with no priced usage to split over, as billed
SELECT o.* EXCEPT (x_line_id, charge_day)
FROM originals AS o
WHERE o.x_pipeline_id IN (SELECT cloud_pipeline FROM pairs)
  AND NOT EXISTS (SELECT 1 FROM shares AS s WHERE s.x_line_id = o.x_line_id)
UNION ALL
-- GenAI rows whose money the cloud bill holds: quantities only
SELECT g.* EXCEPT (x_line_id, charge_day, counted_by_cloud) REPLACE (
  NUMERIC '0' AS BilledCost,
  NUMERIC '0' AS ContractedCost,
  CAST(NULL AS NUMERIC) AS ContractedUnitPrice,
  NUMERIC '0' AS EffectiveCost,
  NUMERIC '0' AS ListCost,
  CAST(NULL AS NUMERIC) AS ListUnitPrice,
  CAST(NULL AS NUMERIC) AS PricingCurrencyContractedUnitPrice,
  NUMERIC '0' AS PricingCurrencyEffectiveCost,
  CAST(NULL AS NUMERIC) AS PricingCurrencyListUnitPrice,
  'cloud_bill' AS x_cost_source)
FROM genai_rows AS g
WHERE g.counted_by_cloud AND g.ChargeCategory = 'Usage'
UNION ALL
SELECT g.* EXCEPT (x_line_id, charge_day, counted_by_cloud)
FROM genai_rows AS g
WHERE NOT g.counted_by_cloud
