-- The providers' native FOCUS exports (cloud_focus_raw: FOCUS 1.0-preview .. 1.2 from AWS, Azure and GCP) ->
-- FOCUS 1.3, one row per export row, for one slice. The export's values are kept wherever they are valid
-- FOCUS 1.3; the rest is filled or corrected so that every row passes the FOCUS 1.3 gate (shared/focus.py).
--
-- Costs: BilledCost as exported on every row, so SUM(BilledCost) per billing period = cloud_source_totals
-- (the export's own billed total). EffectiveCost/ListCost/ContractedCost as exported (BilledCost where empty);
-- on Credit rows EffectiveCost = ContractedCost = BilledCost (FOCUS rule); on Azure commitment Purchase rows
-- EffectiveCost (and PricingCurrencyEffectiveCost) = 0, which FocusCost exports have not always held.
-- ListUnitPrice/ContractedUnitPrice are kept only when they times PricingQuantity reproduce ListCost/
-- ContractedCost (9-decimal rounding of a unit price can break the product), else NULL; NULL on Tax.
-- Pricing-currency columns: the export's when it
-- has PricingCurrencyEffectiveCost, else the billing-currency values with PricingCurrency = BillingCurrency.
-- Values that changed between versions:
-- * ChargeCategory: the 1.3 value (case-insensitive); 1.0-preview ChargeSubcategory Credit or Refund -> Credit
--   (a refund of what, the preview did not say; the raw Azure converter maps Refund the same way); anything
--   else -> Adjustment. ChargeClass: Correction or NULL.
-- * CommitmentDiscountStatus: the export's Used/Unused, 1.0-preview 'Used Commitment'/'Unused Commitment',
--   else (1.2-preview exports leave it empty) Usage rows with a commitment: Unused without a consumed
--   quantity, Used with one. ConsumedQuantity/Unit only on Usage rows that are not Unused.
-- * PricingCategory: On-Demand -> Standard, Commitment-Based -> Committed, Spot -> Dynamic, an unknown value
--   -> Other; empty on a Usage/Purchase row -> Committed with a commitment (usage), else Standard; a commitment
--   purchase is never Committed (FOCUS 1.1); NULL on Tax.
-- * ChargeFrequency: the 1.3 spelling of the export's (OneTime, UsageBased), else by category.
-- * Commitment columns the 1.0 exports lack: Category from the type (savings plans are Spend), Quantity
--   (Spend: the row's EffectiveCost on usage, BilledCost on purchases; Usage: PricingQuantity) and Unit
--   (Spend: the billing currency; Usage: PricingUnit) on Usage/Purchase rows with a commitment.
-- * PricingQuantity/Unit: required on Usage/Purchase rows (ConsumedQuantity, else 0, in 'Units' when the export
--   has no unit); NULL on Tax. SkuId/SkuPriceId NULL on Tax; SkuMeter and SkuPriceDetails only with their ids.
--   Units (Pricing, Consumed, CommitmentDiscount) in FOCUS Unit Format by macros/focus_unit.sql, the normaliser
--   of every path (the exports copy the providers' own spellings: AWS 'Hrs', 'GB-Mo', GCP 'gibibyte month'); a
--   ConsumedUnit that is no unit (AWS's export can carry a usage type there) is the PricingUnit.
--   SkuMeter SHOULD be set with a SkuId: exports without one (GCP; Azure reads x_SkuMeterName) take the
--   ChargeDescription, which in those exports is the SKU's description (GCP's own export calls it the meter).
-- * ListCost follows the rule of 10_aws.sql: the cost at the published price of the rate billed (free tier
--   included), and a charge without a list price lists its BilledCost: an export's 0 on a row billed something
--   else (Microsoft documents ListCost 0 on Marketplace rows as a gap) becomes BilledCost, as AWS's export has it.
-- * ServiceCategory: one per ServiceName (FOCUS), as on the raw paths: organizations.service_category_map by
--   LOWER(ServiceName), then by the provider's service key (AWS x_ServiceCode, the key 10_aws.sql maps the CUR
--   by, so both AWS inputs agree; Azure x_SkuMeterCategory), over the export's per-line category (AWS's export
--   puts EBS under EC2 in Storage); a service the map does not know keeps the export's FOCUS 1.3 category
--   (service_category_valid, checked by the extractor against shared/focus.py), else Other. Lines of one
--   ServiceName that still differ take, per slice, the category of most of its lines from the best source
--   any of them has (map, export, Other; ties: alphabetical), with its subcategory (the map's; else the
--   export's valid pair; else 'Other (<category>)'), so a ServiceName has one pair.
-- Providers: one set of names per cloud whatever file the rows came from, the raw converters' (the facts in
-- providers.yml `providers:`: AWS's export says 'AWS', its CUR path writes Amazon Web Services).
-- ProviderName is the cloud's; PublisherName and ServiceProviderName the PublisherName when it names a third
-- party (a marketplace seller), else the cloud's; HostProviderName (1.3, no export has it yet) the cloud's,
-- which hosts everything in its own export; InvoiceIssuerName the export's invoicing entity ('Amazon Web
-- Services EMEA SARL', a CSP partner), the cloud's where it is empty or just the cloud's short name.
-- A vendor's own FOCUS file (focus/file/import: a provider without facts, `names_from: file` in providers.yml)
-- keeps the names it writes, each falling back to its ProviderName (1.3: ServiceProviderName).
-- Allocated* and ContractApplied (1.3) stay NULL: no export carries split allocation or contract commitments.
-- Names: SubAccountName/RegionName fall back to the id, and are NULL without one; SubAccountType and
-- BillingAccountType fall back to the labels the raw converters use (Linked Account, Subscription, Project;
-- Payer Account, Billing Account); ResourceType comes from the export, else the ARM type / ARN service /
-- Google collection (instances, buckets) in the id, else 'resource'.
WITH src AS (
  SELECT r.*,
         -- ELSE: a vendor's own FOCUS file (focus/file/import) has no facts; its names are the file's, each
         -- falling back to its ProviderName (a 1.3 file may name only the ServiceProviderName)
         CASE r.provider
           WHEN 'aws' THEN {aws.HostProviderName} WHEN 'azure' THEN {azure.HostProviderName} WHEN 'gcp' THEN {gcp.HostProviderName}
           ELSE COALESCE(r.host_provider_name, r.provider_name, r.service_provider_name)
         END AS cloud,
         CASE r.provider
           WHEN 'aws' THEN {aws.ProviderName} WHEN 'azure' THEN {azure.ProviderName} WHEN 'gcp' THEN {gcp.ProviderName}
           ELSE COALESCE(r.provider_name, r.service_provider_name)
         END AS cloud_provider,
         CASE r.provider
           WHEN 'aws' THEN {aws.PublisherName} WHEN 'azure' THEN {azure.PublisherName} WHEN 'gcp' THEN {gcp.PublisherName}
           ELSE COALESCE(r.publisher_name, r.provider_name, r.service_provider_name)
         END AS cloud_publisher,
         CASE r.provider
           WHEN 'aws' THEN {aws.ServiceProviderName} WHEN 'azure' THEN {azure.ServiceProviderName}
           WHEN 'gcp' THEN {gcp.ServiceProviderName}
           ELSE COALESCE(r.service_provider_name, r.provider_name)
         END AS cloud_service_provider,
         CASE r.provider
           WHEN 'aws' THEN {aws.InvoiceIssuerName} WHEN 'azure' THEN {azure.InvoiceIssuerName}
           WHEN 'gcp' THEN {gcp.InvoiceIssuerName}
           ELSE COALESCE(r.invoice_issuer_name, r.provider_name, r.service_provider_name)
         END AS cloud_issuer,
         CASE
           WHEN LOWER(r.charge_subcategory) IN ('credit', 'refund') THEN 'Credit'
           WHEN LOWER(r.charge_category) = 'usage' THEN 'Usage'
           WHEN LOWER(r.charge_category) = 'purchase' THEN 'Purchase'
           WHEN LOWER(r.charge_category) = 'tax' THEN 'Tax'
           WHEN LOWER(r.charge_category) = 'credit' THEN 'Credit'
           ELSE 'Adjustment'
         END AS category,
         IF(LOWER(r.charge_class) = 'correction', 'Correction', NULL) AS charge_class_13,
         CASE
           WHEN LOWER(r.commitment_discount_status) = 'used' OR LOWER(r.charge_subcategory) = 'used commitment' THEN 'Used'
           WHEN LOWER(r.commitment_discount_status) = 'unused' OR LOWER(r.charge_subcategory) = 'unused commitment'
             THEN 'Unused'
         END AS exported_status,
         CASE
           WHEN LOWER(r.commitment_discount_category) = 'spend' THEN 'Spend'
           WHEN LOWER(r.commitment_discount_category) = 'usage' THEN 'Usage'
           WHEN LOWER(r.commitment_discount_type) LIKE '%savings plan%' OR LOWER(r.commitment_discount_type) LIKE '%spend%'
             THEN 'Spend'
           ELSE 'Usage'
         END AS commitment_category,
         COALESCE(m2.service_category, m1.service_category) AS mapped_category,
         COALESCE(m2.service_subcategory, m1.service_subcategory) AS mapped_subcategory
  FROM `{org_dataset}.cloud_focus_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m1
    ON m1.provider = r.provider AND m1.service_key = LOWER(r.service_key)
  LEFT JOIN `organizations.service_category_map` AS m2
    ON m2.provider = r.provider AND m2.service_key = LOWER(r.service_name)
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
classified AS (
  SELECT s.*,
         CASE
           WHEN s.commitment_discount_id IS NULL THEN NULL
           WHEN s.exported_status IS NOT NULL THEN s.exported_status
           WHEN s.category != 'Usage' THEN NULL
           WHEN s.consumed_quantity IS NULL OR s.consumed_quantity = 0 THEN 'Unused'
           ELSE 'Used'
         END AS status,
         s.category IN ('Usage', 'Purchase') AND s.charge_class_13 IS NULL AS needs_pricing,
         -- Cost Management has exported savings-plan purchases with their cost as EffectiveCost too, while the
         -- covered usage carries it amortized (microsoft/finops-toolkit#1092): a commitment purchase's is 0
         s.provider = 'azure' AND s.category = 'Purchase' AND s.commitment_discount_id IS NOT NULL AS amortized_away,
         IF(s.category = 'Credit', s.billed_cost, COALESCE(s.contracted_cost, s.billed_cost)) AS contracted,
         IF(s.list_cost IS NULL OR (s.list_cost = 0 AND s.billed_cost != 0), s.billed_cost, s.list_cost) AS list_total,
         CASE
           WHEN LOWER(s.pricing_category) IN ('standard', 'on-demand', 'ondemand') THEN 'Standard'
           WHEN LOWER(s.pricing_category) IN ('committed', 'commitment-based') THEN 'Committed'
           WHEN LOWER(s.pricing_category) IN ('dynamic', 'spot') THEN 'Dynamic'
           WHEN s.pricing_category IS NOT NULL THEN 'Other'
         END AS exported_pricing_category,
         COALESCE(s.service_name, s.service_key, s.cloud) AS service_name_out,
         COALESCE(s.mapped_category, IF(s.service_category_valid, s.service_category, NULL), 'Other') AS category_candidate,
         CASE WHEN s.mapped_category IS NOT NULL THEN 1 WHEN s.service_category_valid THEN 2 ELSE 3 END AS candidate_rank,
         CASE
           WHEN s.service_category_valid AND s.service_subcategory_valid
                AND s.service_category = COALESCE(s.mapped_category, s.service_category) THEN s.service_subcategory
           WHEN s.mapped_category IS NOT NULL THEN s.mapped_subcategory
           WHEN s.service_category_valid THEN CONCAT('Other (', s.service_category, ')')
           ELSE 'Other (Other)'
         END AS subcategory_candidate
  FROM src AS s
),
service_categories AS (
  -- one (category, subcategory) pair per ServiceName (FOCUS: one category, and SHOULD one subcategory)
  SELECT service_name_out, category_candidate AS service_category_out, subcategory_candidate AS service_subcategory_out
  FROM classified
  GROUP BY service_name_out, category_candidate, subcategory_candidate
  QUALIFY ROW_NUMBER() OVER (PARTITION BY service_name_out
                             ORDER BY MIN(candidate_rank), COUNT(*) DESC, category_candidate, subcategory_candidate) = 1
),
quantified AS (
  SELECT c.*, sc.service_category_out, sc.service_subcategory_out,
         CASE
           WHEN c.category = 'Tax' THEN NULL
           WHEN c.needs_pricing THEN COALESCE(c.pricing_quantity, c.consumed_quantity, NUMERIC '0')
           ELSE c.pricing_quantity
         END AS quantity,
         -- 1.3: a quantity on every used, non-correction Usage row; an export row without one consumed nothing
         CASE
           WHEN c.category != 'Usage' OR c.status IS NOT DISTINCT FROM 'Unused' THEN NULL
           WHEN c.charge_class_13 IS NULL THEN COALESCE(c.consumed_quantity, NUMERIC '0')
           ELSE c.consumed_quantity
         END AS consumed,
         CASE
           WHEN c.category = 'Credit' THEN c.billed_cost
           WHEN c.amortized_away THEN NUMERIC '0'
           ELSE COALESCE(c.effective_cost, c.billed_cost)
         END AS effective
  FROM classified AS c
  LEFT JOIN service_categories AS sc USING (service_name_out)
),
priced AS (
  SELECT q.*,
         IF(q.quantity IS NULL, NULL, COALESCE(FOCUS_UNIT(q.pricing_unit), FOCUS_UNIT(q.consumed_unit), 'Units')) AS unit,
         FOCUS_UNIT(q.consumed_unit) AS consumed_focus_unit,
         FOCUS_UNIT(q.commitment_discount_unit) AS commitment_focus_unit,
         IF(q.category != 'Tax' AND q.list_unit_price IS NOT NULL AND q.quantity IS NOT NULL
              AND (q.charge_class_13 IS NOT NULL
                   OR ABS(CAST(q.list_unit_price AS FLOAT64) * CAST(q.quantity AS FLOAT64) - CAST(q.list_total AS FLOAT64))
                      <= 1e-10 * GREATEST(ABS(CAST(q.list_total AS FLOAT64)), 1)),
            q.list_unit_price, NULL) AS list_rate,
         IF(q.category != 'Tax' AND q.contracted_unit_price IS NOT NULL AND q.quantity IS NOT NULL
              AND (q.charge_class_13 IS NOT NULL
                   OR ABS(CAST(q.contracted_unit_price AS FLOAT64) * CAST(q.quantity AS FLOAT64) - CAST(q.contracted AS FLOAT64))
                      <= 1e-10 * GREATEST(ABS(CAST(q.contracted AS FLOAT64)), 1)),
            q.contracted_unit_price, NULL) AS contracted_rate,
         q.pricing_currency IS NOT NULL AND q.pricing_currency_effective_cost IS NOT NULL AS has_pricing_currency,
         CASE
           WHEN q.commitment_discount_id IS NULL OR NOT q.needs_pricing THEN q.commitment_discount_quantity
           WHEN q.commitment_discount_quantity IS NOT NULL THEN q.commitment_discount_quantity
           WHEN q.commitment_category = 'Spend' AND q.category = 'Usage' THEN COALESCE(q.effective_cost, q.billed_cost)
           WHEN q.commitment_category = 'Spend' THEN q.billed_cost
           ELSE COALESCE(q.pricing_quantity, q.consumed_quantity, NUMERIC '0')
         END AS commitment_quantity,
         NOT (q.publisher_name IS NULL OR q.publisher_name = q.provider_name
              OR REGEXP_CONTAINS(LOWER(q.publisher_name), r'^(aws|amazon|microsoft|azure|google)\b')) AS third_party,
         -- a name the export gives that is not the cloud itself (AWS, Amazon Web Services EMEA SARL, Microsoft)
         IF(REGEXP_CONTAINS(LOWER(q.service_provider_name), r'^(aws|amazon|microsoft|azure|google)\b'), NULL,
            q.service_provider_name) AS other_service_provider,
         IF(REGEXP_CONTAINS(LOWER(q.host_provider_name), r'^(aws|amazon|microsoft|azure|google)\b'), NULL,
            q.host_provider_name) AS other_host,
         IF(REGEXP_CONTAINS(LOWER(q.invoice_issuer_name),
                            r'^(aws|amazon( web services)?|microsoft( azure)?|azure|google( cloud)?|gcp)$'), NULL,
            q.invoice_issuer_name) AS invoicing_entity
  FROM quantified AS q
)
SELECT
  CAST(NULL AS JSON) AS AllocatedMethodDetails,
  CAST(NULL AS STRING) AS AllocatedMethodId,
  CAST(NULL AS STRING) AS AllocatedResourceId,
  CAST(NULL AS STRING) AS AllocatedResourceName,
  CAST(NULL AS JSON) AS AllocatedTags,
  availability_zone AS AvailabilityZone,
  billed_cost AS BilledCost,
  billing_account_id AS BillingAccountId,
  COALESCE(billing_account_name, billing_account_id) AS BillingAccountName,
  COALESCE(billing_account_type, IF(provider = 'aws', 'Payer Account', 'Billing Account')) AS BillingAccountType,
  billing_currency AS BillingCurrency,
  IF(billing_period_end > TIMESTAMP(billing_period_start), billing_period_end,
    TIMESTAMP(DATE_ADD(billing_period_start, INTERVAL 1 MONTH))) AS BillingPeriodEnd,
  TIMESTAMP(billing_period_start) AS BillingPeriodStart,
  capacity_reservation_id AS CapacityReservationId,
  CASE
    WHEN capacity_reservation_id IS NULL THEN NULL
    WHEN LOWER(capacity_reservation_status) = 'unused' THEN 'Unused'
    WHEN LOWER(capacity_reservation_status) = 'used' OR category = 'Usage' THEN 'Used'
  END AS CapacityReservationStatus,
  category AS ChargeCategory,
  charge_class_13 AS ChargeClass,
  charge_description AS ChargeDescription,
  CASE
    WHEN LOWER(REPLACE(charge_frequency, '-', '')) = 'onetime' THEN 'One-Time'
    WHEN LOWER(charge_frequency) = 'recurring' THEN 'Recurring'
    WHEN LOWER(REPLACE(charge_frequency, '-', '')) = 'usagebased' THEN 'Usage-Based'
    WHEN category = 'Usage' THEN 'Usage-Based'
    ELSE 'One-Time'
  END AS ChargeFrequency,
  IF(charge_period_end > charge_period_start, charge_period_end, TIMESTAMP_ADD(charge_period_start, INTERVAL 1 HOUR)) AS ChargePeriodEnd,
  charge_period_start AS ChargePeriodStart,
  IF(commitment_discount_id IS NULL, NULL, commitment_category) AS CommitmentDiscountCategory,
  commitment_discount_id AS CommitmentDiscountId,
  IF(commitment_discount_id IS NULL, NULL, COALESCE(commitment_discount_name, commitment_discount_id)) AS CommitmentDiscountName,
  commitment_quantity AS CommitmentDiscountQuantity,
  status AS CommitmentDiscountStatus,
  IF(commitment_discount_id IS NULL, NULL, COALESCE(commitment_discount_type, IF(commitment_category = 'Spend', 'Savings Plan', 'Reservation'))) AS CommitmentDiscountType,
  CASE
    WHEN commitment_quantity IS NULL THEN NULL
    -- a spend commitment is counted in money: the export's currency code, else the billing currency
    WHEN commitment_category = 'Spend' THEN COALESCE(REGEXP_EXTRACT(commitment_discount_unit, r'^([A-Z]{3})$'),
                                                     billing_currency)
    WHEN commitment_focus_unit IS NOT NULL THEN commitment_focus_unit
    ELSE COALESCE(unit, 'Units')
  END AS CommitmentDiscountUnit,
  consumed AS ConsumedQuantity,
  IF(consumed IS NULL, NULL, COALESCE(consumed_focus_unit, unit, 'Units')) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  contracted AS ContractedCost,
  contracted_rate AS ContractedUnitPrice,
  effective AS EffectiveCost,
  COALESCE(other_host, cloud) AS HostProviderName,
  invoice_id AS InvoiceId,
  COALESCE(invoicing_entity, cloud_issuer) AS InvoiceIssuerName,
  list_total AS ListCost,
  list_rate AS ListUnitPrice,
  CASE
    WHEN category = 'Tax' THEN NULL
    WHEN category = 'Purchase' AND commitment_discount_id IS NOT NULL
         AND COALESCE(exported_pricing_category, 'Committed') = 'Committed' THEN 'Standard'
    WHEN exported_pricing_category IS NOT NULL THEN exported_pricing_category
    WHEN NOT needs_pricing THEN NULL
    WHEN commitment_discount_id IS NOT NULL THEN 'Committed'
    ELSE 'Standard'
  END AS PricingCategory,
  IF(has_pricing_currency, pricing_currency, billing_currency) AS PricingCurrency,
  IF(category = 'Tax', NULL, IF(has_pricing_currency, pricing_currency_contracted_unit_price, contracted_rate)) AS PricingCurrencyContractedUnitPrice,
  IF(has_pricing_currency AND NOT amortized_away, pricing_currency_effective_cost, effective) AS PricingCurrencyEffectiveCost,
  IF(category = 'Tax', NULL, IF(has_pricing_currency, pricing_currency_list_unit_price, list_rate)) AS PricingCurrencyListUnitPrice,
  quantity AS PricingQuantity,
  unit AS PricingUnit,
  cloud_provider AS ProviderName,
  IF(third_party, publisher_name, cloud_publisher) AS PublisherName,
  region_id AS RegionId,
  IF(region_id IS NULL, NULL, COALESCE(region_name, region_id)) AS RegionName,
  resource_id AS ResourceId,
  IF(resource_id IS NULL, NULL, resource_name) AS ResourceName,
  IF(resource_id IS NULL, NULL,
    COALESCE(resource_type, REGEXP_EXTRACT(resource_id, r'(?i)/providers/([^/]+/[^/]+)/'),
             REGEXP_EXTRACT(resource_id, r'^arn:[^:]+:([^:]+):'),
             REGEXP_EXTRACT(resource_id, r'^//[^/]+/.*/([A-Za-z]+)/[^/]+$'), 'resource')) AS ResourceType,
  service_category_out AS ServiceCategory,
  service_name_out AS ServiceName,
  COALESCE(other_service_provider, IF(third_party, publisher_name, cloud_service_provider)) AS ServiceProviderName,
  service_subcategory_out AS ServiceSubcategory,
  IF(category = 'Tax', NULL, sku_id) AS SkuId,
  IF(category = 'Tax' OR sku_id IS NULL, NULL, COALESCE(sku_meter, charge_description)) AS SkuMeter,
  IF(category = 'Tax' OR sku_price_id IS NULL, NULL, PARSE_JSON(sku_price_details)) AS SkuPriceDetails,
  IF(category = 'Tax', NULL, sku_price_id) AS SkuPriceId,
  sub_account_id AS SubAccountId,
  IF(sub_account_id IS NULL, NULL, COALESCE(sub_account_name, sub_account_id)) AS SubAccountName,
  IF(sub_account_id IS NULL, NULL,
    COALESCE(sub_account_type, CASE provider WHEN 'aws' THEN 'Linked Account' WHEN 'azure' THEN 'Subscription'
                                             WHEN 'gcp' THEN 'Project' END)) AS SubAccountType,
  PARSE_JSON(tags) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM priced
