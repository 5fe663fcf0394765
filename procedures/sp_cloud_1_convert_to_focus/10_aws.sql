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
-- * ListCost = pricing_public_on_demand_cost (else unblended); ListUnitPrice = public on-demand rate only
--   when rate x PricingQuantity reproduces ListCost (FOCUS requires the product), else NULL.
-- * ContractedUnitPrice = net unblended rate, else unblended rate; ContractedCost = ContractedUnitPrice x
--   PricingQuantity (rounded to NUMERIC), else BilledCost (Tax/Credit rows, rows without a rate).
-- * PricingQuantity = usage amount on Usage/Purchase rows; NULL on Tax and Credit rows.
--   ConsumedQuantity only on Usage rows other than SavingsPlanNegation (the negation is not consumption).
-- * ServiceCategory/Subcategory from organizations.service_category_map by LOWER(product code), falling
--   back to Other / Other (Other). Providers are Amazon Web Services; for AWS Marketplace rows the
--   ServiceProviderName/PublisherName is the seller (line_item_legal_entity).
INSERT INTO `{org_dataset}.cost_data_standard_1_3` (
  AvailabilityZone, BilledCost, BillingAccountId, BillingAccountName, BillingAccountType, BillingCurrency,
  BillingPeriodEnd, BillingPeriodStart, ChargeCategory, ChargeClass, ChargeDescription, ChargeFrequency,
  ChargePeriodEnd, ChargePeriodStart, CommitmentDiscountCategory, CommitmentDiscountId, CommitmentDiscountName,
  CommitmentDiscountQuantity, CommitmentDiscountStatus, CommitmentDiscountType, CommitmentDiscountUnit,
  ConsumedQuantity, ConsumedUnit, ContractedCost, ContractedUnitPrice, EffectiveCost, HostProviderName,
  InvoiceId, InvoiceIssuerName, ListCost, ListUnitPrice, PricingCategory, PricingCurrency,
  PricingCurrencyContractedUnitPrice, PricingCurrencyEffectiveCost, PricingCurrencyListUnitPrice,
  PricingQuantity, PricingUnit, ProviderName, PublisherName, RegionId, RegionName, ResourceId, ResourceName,
  ServiceCategory, ServiceName, ServiceProviderName, ServiceSubcategory, SkuId, SkuMeter, SkuPriceId,
  SubAccountId, SubAccountName, SubAccountType, Tags,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date,
  x_cost_source)
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
         IF(r.billing_entity = 'AWS Marketplace', COALESCE(r.legal_entity, 'AWS Marketplace'), 'Amazon Web Services')
           AS seller,
         COALESCE(m.service_category, 'Other') AS service_category,
         COALESCE(m.service_subcategory, 'Other (Other)') AS service_subcategory
  FROM `{org_dataset}.aws_billing_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m
    ON m.provider = 'aws' AND m.service_key = LOWER(COALESCE(r.product_code, r.service_code))
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
priced AS (
  SELECT s.*,
         IF(category IN ('Usage', 'Purchase'), COALESCE(usage_amount, NUMERIC '0'), NULL) AS quantity,
         IF(category IN ('Usage', 'Purchase'), COALESCE(net_unblended_rate, unblended_rate), NULL) AS contracted_rate,
         IF(category IN ('Tax', 'Credit'), unblended_cost, COALESCE(public_on_demand_cost, unblended_cost)) AS list_cost,
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
),
final AS (
  SELECT p.*,
         IF(public_on_demand_rate IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(public_on_demand_rate AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(list_cost AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(list_cost AS FLOAT64)), 1),
            public_on_demand_rate, NULL) AS list_rate,
         IF(contracted_rate IS NOT NULL AND quantity IS NOT NULL,
            CAST(contracted_rate * quantity AS NUMERIC), unblended_cost) AS contracted_cost,
         -- AWS units in FOCUS Unit Format: GB-Mo -> GB-Months, Obj-Month -> Object-Months, Hrs -> Hours
         IF(quantity IS NULL, NULL, COALESCE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
           pricing_unit, r'-Mo(nth)?$', '-Months'), r'Hrs$', 'Hours'), r'^Obj-', 'Object-'), 'Units')) AS unit
  FROM priced AS p
)
SELECT availability_zone, unblended_cost, payer_account_id, COALESCE(payer_account_name, payer_account_id),
       'Payer Account', currency,
       TIMESTAMP(COALESCE(billing_period_end, DATE_ADD(billing_period_start, INTERVAL 1 MONTH))),
       TIMESTAMP(billing_period_start), category, CAST(NULL AS STRING), description,
       CASE
         WHEN line_item_type IN ('RIFee', 'SavingsPlanRecurringFee') THEN 'Recurring'
         WHEN category = 'Usage' THEN 'Usage-Based'
         ELSE 'One-Time'
       END,
       IF(usage_end_time > usage_start_time, usage_end_time, TIMESTAMP_ADD(usage_start_time, INTERVAL 1 HOUR)),
       usage_start_time,
       CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN 'Spend' ELSE 'Usage' END,
       commitment_id, commitment_id,
       CASE
         WHEN commitment_id IS NULL THEN NULL
         WHEN line_item_type = 'SavingsPlanCoveredUsage' THEN COALESCE(savings_plan_effective_cost, NUMERIC '0')
         WHEN line_item_type = 'SavingsPlanNegation' THEN NUMERIC '0'
         WHEN line_item_type = 'SavingsPlanRecurringFee' THEN COALESCE(savings_plan_total_commitment_to_date, NUMERIC '0')
         WHEN line_item_type LIKE 'SavingsPlan%' THEN unblended_cost
         ELSE COALESCE(usage_amount, NUMERIC '0')
       END,
       IF(commitment_id IS NOT NULL AND category = 'Usage', 'Used', NULL),
       CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN 'Savings Plan' ELSE 'Reservation' END,
       CASE WHEN commitment_id IS NULL THEN NULL WHEN line_item_type LIKE 'SavingsPlan%' THEN currency
            ELSE COALESCE(unit, 'Hours') END,
       IF(category = 'Usage' AND line_item_type != 'SavingsPlanNegation', quantity, NULL),
       IF(category = 'Usage' AND line_item_type != 'SavingsPlanNegation', unit, NULL),
       contracted_cost, contracted_rate, effective_cost, 'Amazon Web Services',
       invoice_id, 'Amazon Web Services', list_cost, list_rate,
       CASE
         WHEN category NOT IN ('Usage', 'Purchase') THEN NULL
         WHEN commitment_id IS NOT NULL THEN 'Committed'
         WHEN pricing_term = 'Spot' OR usage_type LIKE '%SpotUsage%' THEN 'Dynamic'
         ELSE 'Standard'
       END,
       currency, contracted_rate, effective_cost, list_rate,
       quantity, unit, 'Amazon Web Services', seller,
       region_code, IF(region_code IS NULL, NULL, COALESCE(region_name, region_code)),
       resource_id, resource_id,
       service_category, COALESCE(product_name, product_code, service_code, 'AWS'), seller, service_subcategory,
       IF(category = 'Tax', NULL, sku), IF(category = 'Tax' OR sku IS NULL, NULL, usage_type),
       -- a rate id is only unique within its SKU; FOCUS wants one SkuId per SkuPriceId
       IF(category = 'Tax' OR sku IS NULL OR pricing_rate_id IS NULL, NULL, CONCAT(sku, ':', pricing_rate_id)),
       usage_account_id, IF(usage_account_id IS NULL, NULL, COALESCE(usage_account_name, usage_account_id)),
       IF(usage_account_id IS NULL, NULL, 'Linked Account'),
       PARSE_JSON(tags),
       @org_slug, @pipeline_id, @credential_id, usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE(),
       'cloud'
FROM final;
