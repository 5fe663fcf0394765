-- AWS CUR line items (aws_billing_raw) -> FOCUS 1.3 rows, one per line item, for one slice.
--
-- Cost semantics (nothing is counted twice in either total):
-- * BilledCost = line_item_unblended_cost on EVERY row, including SavingsPlanNegation and the negative
--   discount rows, so SUM(BilledCost) per billing period equals the CUR's unblended total (the invoice).
--   net_unblended_* is NOT used: the EDP/PPA discount rows already carry the discount; using net costs as
--   well would count it twice.
-- * EffectiveCost = amortized cost:
--     SavingsPlanCoveredUsage -> savings_plan_effective_cost (the SP rate incl. amortized upfront)
--     SavingsPlanNegation     -> 0 (it only cancels the on-demand equivalent in BilledCost)
--     SavingsPlanRecurringFee -> total_commitment_to_date - used_commitment (only the UNUSED commitment;
--                                the used part is already in the covered usage rows)
--     SavingsPlanUpfrontFee   -> 0 (amortized into the covered usage)
--     DiscountedUsage (RI)    -> reservation_effective_cost
--     RIFee                   -> unused amortized upfront + unused recurring fee (used part is in usage)
--     Fee with an RI ARN      -> 0 (RI upfront payment, amortized into usage)
--     Credit rows             -> BilledCost (FOCUS: EffectiveCost = BilledCost on Credit rows)
--     everything else         -> unblended cost
-- * ChargeCategory: Tax -> Tax; Credit, Refund and the discount line types -> Credit;
--   RIFee, Fee, SavingsPlanRecurringFee, SavingsPlanUpfrontFee -> Purchase; usage types -> Usage.
-- * ListCost = the cost at the published price of the rate the line was billed at. FOCUS's list price is the
--   provider's published one, inclusive of free-tier and tiered rates and exclusive only of negotiated and
--   commitment discounts (spec supporting content on ListCost/ListUnitPrice); a charge without one lists its
--   BilledCost. So: pricing_public_on_demand_cost, except where the CUR's on-demand columns do not price the
--   rate billed: a plain Usage line at unblended rate 0 (the free tier; the columns show the paid tier) and a
--   line without a public on-demand cost (0 or empty: AWS Marketplace, fees) bill the published rate itself,
--   so ListCost = BilledCost and the rate is the unblended one. Tax, Credit: BilledCost. 50_focus_export.sql
--   applies the same rule (AWS's export already lists 0 on free tier and BilledCost on Marketplace).
--   ListUnitPrice = that rate only when rate x PricingQuantity reproduces ListCost (FOCUS requires the
--   product), else NULL.
-- * ContractedUnitPrice = net unblended rate, else unblended rate; ContractedCost = ContractedUnitPrice x
--   PricingQuantity (rounded to NUMERIC), else BilledCost (Tax/Credit rows, rows without a rate).
-- * PricingQuantity = usage amount on Usage/Purchase rows; NULL on Tax and Credit rows.
--   ConsumedQuantity on Usage rows; 0 on SavingsPlanNegation (the negation is not consumption).
-- * PricingUnit/ConsumedUnit = pricing_unit in FOCUS Unit Format by macros/focus_unit.sql (Hrs -> Hours,
--   GB-Mo -> GB-Months, Request -> Requests, 1K tokens -> 1000 Tokens), 'Units' when it has none (never the
--   usage type).
-- * ServiceCategory/Subcategory from organizations.service_category_map by LOWER(product code), falling
--   back to Other / Other (Other). One ServiceCategory per ServiceName (FOCUS): should the product codes of
--   one product name map differently, the slice takes the mapped category and subcategory of most of its
--   lines (ties: alphabetical; Other only when none maps) for all its lines. Providers are Amazon Web Services;
--   for AWS Marketplace rows the ServiceProviderName/PublisherName is the seller (line_item_legal_entity).
-- * InvoiceIssuerName = bill_invoicing_entity (the AWS entity that invoiced the line: Amazon Web Services,
--   Inc., Amazon Web Services EMEA SARL, ...), else the provider's.
WITH src AS (
  SELECT r.*,
         CASE
           WHEN r.line_item_type = 'Tax' THEN 'Tax'
           WHEN r.line_item_type IN ('Credit', 'Refund', 'BundledDiscount', 'EdpDiscount', 'PrivateRateDiscount',
                                     'Discount', 'SppDiscount', 'DistributorDiscount') THEN 'Credit'
           WHEN r.line_item_type IN ('RIFee', 'Fee', 'SavingsPlanRecurringFee', 'SavingsPlanUpfrontFee') THEN 'Purchase'
           ELSE 'Usage'
         END AS category,
         CASE
           WHEN r.line_item_type LIKE 'SavingsPlan%' THEN r.savings_plan_arn
           WHEN r.line_item_type IN ('DiscountedUsage', 'RIFee') THEN r.reservation_arn
           WHEN r.line_item_type = 'Fee' THEN r.reservation_arn
         END AS commitment_id,
         IF(r.billing_entity = 'AWS Marketplace', COALESCE(r.legal_entity, 'AWS Marketplace'), {aws.ServiceProviderName})
           AS seller,
         COALESCE(r.product_name, r.product_code, r.service_code, 'AWS') AS service_name,
         -- Marketplace products get a product code per listing, so no map can name them ahead; a model
         -- sold for Bedrock ("... (Amazon Bedrock Edition)", or a token usage type) is Generative AI all the same
         COALESCE(m.service_category, IF(REGEXP_CONTAINS(COALESCE(r.product_name, ''), r' \(Amazon Bedrock Edition\)$')
                                         OR REGEXP_CONTAINS(COALESCE(r.usage_type, ''), r'-MP:[A-Z0-9]+_(?i:[a-z_]*token)'),
                                         'AI and Machine Learning', NULL)) AS mapped_category,
         COALESCE(m.service_subcategory, IF(REGEXP_CONTAINS(COALESCE(r.product_name, ''), r' \(Amazon Bedrock Edition\)$')
                                            OR REGEXP_CONTAINS(COALESCE(r.usage_type, ''), r'-MP:[A-Z0-9]+_(?i:[a-z_]*token)'),
                                            'Generative AI', NULL)) AS mapped_subcategory
  FROM `{org_dataset}.aws_billing_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m
    ON m.provider = 'aws' AND m.service_key = LOWER(COALESCE(r.product_code, r.service_code))
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
service_categories AS (
  SELECT service_name, COALESCE(mapped_category, 'Other') AS service_category,
         COALESCE(mapped_subcategory, 'Other (Other)') AS service_subcategory
  FROM src
  GROUP BY service_name, mapped_category, mapped_subcategory
  QUALIFY ROW_NUMBER() OVER (PARTITION BY service_name
                             ORDER BY mapped_category IS NULL, COUNT(*) DESC, mapped_category, mapped_subcategory) = 1
),
priced AS (
  SELECT s.*, c.service_category, c.service_subcategory,
         IF(category IN ('Usage', 'Purchase'), COALESCE(usage_amount, NUMERIC '0'), NULL) AS quantity,
         -- a unit price is never negative (FOCUS): the SavingsPlanNegation's negative rate is no price
         IF(category IN ('Usage', 'Purchase') AND COALESCE(net_unblended_rate, unblended_rate) >= 0,
            COALESCE(net_unblended_rate, unblended_rate), NULL) AS contracted_rate,
         CASE
           WHEN category IN ('Tax', 'Credit') THEN FALSE
           WHEN line_item_type = 'Usage' AND unblended_rate = 0 THEN FALSE
           ELSE COALESCE(public_on_demand_cost, NUMERIC '0') != 0
         END AS on_demand_listed,
         CASE
           WHEN category = 'Credit' THEN unblended_cost
           WHEN line_item_type = 'SavingsPlanCoveredUsage' THEN COALESCE(savings_plan_effective_cost, NUMERIC '0')
           WHEN line_item_type IN ('SavingsPlanNegation', 'SavingsPlanUpfrontFee') THEN NUMERIC '0'
           WHEN line_item_type = 'SavingsPlanRecurringFee'
             THEN COALESCE(savings_plan_total_commitment_to_date, NUMERIC '0') - COALESCE(savings_plan_used_commitment, NUMERIC '0')
           WHEN line_item_type = 'DiscountedUsage' THEN COALESCE(reservation_effective_cost, NUMERIC '0')
           WHEN line_item_type = 'RIFee'
             THEN COALESCE(reservation_unused_amortized_upfront_fee, NUMERIC '0') + COALESCE(reservation_unused_recurring_fee, NUMERIC '0')
           WHEN line_item_type = 'Fee' AND reservation_arn IS NOT NULL THEN NUMERIC '0'
           ELSE unblended_cost
         END AS effective_cost
  FROM src AS s
  LEFT JOIN service_categories AS c USING (service_name)
),
listed AS (
  SELECT p.*,
         IF(on_demand_listed, public_on_demand_cost, unblended_cost) AS list_cost,
         IF(on_demand_listed, public_on_demand_rate, IF(unblended_rate >= 0, unblended_rate, NULL)) AS list_price
  FROM priced AS p
),
final AS (
  SELECT p.*,
         IF(list_price IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(list_price AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(list_cost AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(list_cost AS FLOAT64)), 1),
            list_price, NULL) AS list_rate,
         IF(contracted_rate IS NOT NULL AND quantity IS NOT NULL,
            CAST(contracted_rate * quantity AS NUMERIC), unblended_cost) AS contracted_cost,
         IF(quantity IS NULL, NULL, COALESCE(FOCUS_UNIT(pricing_unit), 'Units')) AS unit
  FROM listed AS p
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags},
  availability_zone AS AvailabilityZone,
  unblended_cost AS BilledCost,
  payer_account_id AS BillingAccountId,
  COALESCE(payer_account_name, payer_account_id) AS BillingAccountName,
  'Payer Account' AS BillingAccountType,
  currency AS BillingCurrency,
  TIMESTAMP(COALESCE(billing_period_end, DATE_ADD(billing_period_start, INTERVAL 1 MONTH))) AS BillingPeriodEnd,
  TIMESTAMP(billing_period_start) AS BillingPeriodStart,
  {null:CapacityReservationId, CapacityReservationStatus},
  category AS ChargeCategory,
  CAST(NULL AS STRING) AS ChargeClass,
  description AS ChargeDescription,
  CASE
    WHEN line_item_type IN ('RIFee', 'SavingsPlanRecurringFee') THEN 'Recurring'
    WHEN category = 'Usage' THEN 'Usage-Based'
    ELSE 'One-Time'
  END AS ChargeFrequency,
  IF(usage_end_time > usage_start_time, usage_end_time, TIMESTAMP_ADD(usage_start_time, INTERVAL 1 HOUR)) AS ChargePeriodEnd,
  usage_start_time AS ChargePeriodStart,
  CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN 'Spend' ELSE 'Usage' END AS CommitmentDiscountCategory,
  commitment_id AS CommitmentDiscountId,
  commitment_id AS CommitmentDiscountName,
  CASE
    WHEN commitment_id IS NULL THEN NULL
    WHEN line_item_type = 'SavingsPlanCoveredUsage' THEN COALESCE(savings_plan_effective_cost, NUMERIC '0')
    WHEN line_item_type = 'SavingsPlanNegation' THEN NUMERIC '0'
    WHEN line_item_type = 'SavingsPlanRecurringFee' THEN COALESCE(savings_plan_total_commitment_to_date, NUMERIC '0')
    WHEN line_item_type LIKE 'SavingsPlan%' THEN unblended_cost
    ELSE COALESCE(usage_amount, NUMERIC '0')
  END AS CommitmentDiscountQuantity,
  IF(commitment_id IS NOT NULL AND category = 'Usage', 'Used', NULL) AS CommitmentDiscountStatus,
  CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN 'Savings Plan' ELSE 'Reservation' END AS CommitmentDiscountType,
  CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN currency
    ELSE COALESCE(unit, 'Hours') END AS CommitmentDiscountUnit,
  -- the negation only cancels the covered usage's on-demand cost: it consumes nothing (0, not NULL: 1.3
  -- wants a quantity on every used Usage row), so the usage is counted once
  CASE WHEN category != 'Usage' THEN NULL WHEN line_item_type = 'SavingsPlanNegation' THEN NUMERIC '0'
       ELSE quantity END AS ConsumedQuantity,
  IF(category = 'Usage', unit, NULL) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  contracted_cost AS ContractedCost,
  contracted_rate AS ContractedUnitPrice,
  effective_cost AS EffectiveCost,
  {aws.HostProviderName} AS HostProviderName,
  invoice_id AS InvoiceId,
  COALESCE(invoicing_entity, {aws.InvoiceIssuerName}) AS InvoiceIssuerName,
  list_cost AS ListCost,
  list_rate AS ListUnitPrice,
  CASE
    WHEN category NOT IN ('Usage', 'Purchase') THEN NULL
    WHEN commitment_id IS NOT NULL THEN 'Committed'
    WHEN pricing_term = 'Spot' OR usage_type LIKE '%SpotUsage%' THEN 'Dynamic'
    ELSE 'Standard'
  END AS PricingCategory,
  currency AS PricingCurrency,
  contracted_rate AS PricingCurrencyContractedUnitPrice,
  effective_cost AS PricingCurrencyEffectiveCost,
  list_rate AS PricingCurrencyListUnitPrice,
  quantity AS PricingQuantity,
  unit AS PricingUnit,
  {aws.ProviderName} AS ProviderName,
  seller AS PublisherName,
  region_code AS RegionId,
  IF(region_code IS NULL, NULL, COALESCE(region_name, region_code)) AS RegionName,
  resource_id AS ResourceId,
  resource_id AS ResourceName,
  -- the CUR names no type: the service of an ARN, else the kind an EC2 id's prefix says, else 'resource'
  IF(resource_id IS NULL, NULL,
    COALESCE(REGEXP_EXTRACT(resource_id, r'^arn:[^:]+:([^:]+):'),
             CASE REGEXP_EXTRACT(resource_id, r'^([a-z]+)-[0-9a-f]+$')
               WHEN 'i' THEN 'instance' WHEN 'vol' THEN 'volume' WHEN 'snap' THEN 'snapshot'
               WHEN 'eni' THEN 'network-interface' WHEN 'nat' THEN 'natgateway' WHEN 'eipalloc' THEN 'elastic-ip'
             END, 'resource')) AS ResourceType,
  service_category AS ServiceCategory,
  service_name AS ServiceName,
  seller AS ServiceProviderName,
  service_subcategory AS ServiceSubcategory,
  IF(category = 'Tax', NULL, sku) AS SkuId,
  IF(category = 'Tax' OR sku IS NULL, NULL, usage_type) AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  -- a rate id is only unique within its SKU; FOCUS wants one SkuId per SkuPriceId
  IF(category = 'Tax' OR sku IS NULL OR pricing_rate_id IS NULL, NULL, CONCAT(sku, ':', pricing_rate_id)) AS SkuPriceId,
  usage_account_id AS SubAccountId,
  IF(usage_account_id IS NULL, NULL, COALESCE(usage_account_name, usage_account_id)) AS SubAccountName,
  IF(usage_account_id IS NULL, NULL, 'Linked Account') AS SubAccountType,
  PARSE_JSON(tags) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM final;
