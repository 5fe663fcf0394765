-- OCI cost / FOCUS report rows (oci_billing_raw) -> FOCUS 1.3, one row per report line, for one slice.
--
-- Cost semantics:
-- * BilledCost = EffectiveCost = my_cost (cost/myCost, overage included) on every row, so SUM(BilledCost) per
--   billing period = cloud_source_totals.source_cost. Commitment (Universal Credits) burn-down is implicit in
--   OCI reports: there are no purchase or amortization rows to spread.
-- * ChargeCategory: a FOCUS report's own ChargeCategory when it is a FOCUS 1.3 value; else a correction row
--   (lineItem/isCorrection) -> Usage with ChargeClass 'Correction'; a negative non-correction row -> Credit;
--   everything else -> Usage.
-- * ListCost = the FOCUS report's ListCost, else my_cost (cost reports carry no list price); ListUnitPrice
--   only when it reproduces ListCost x PricingQuantity (so NULL for cost reports).
-- * ContractedUnitPrice = cost/unitPrice; ContractedCost = unitPrice x PricingQuantity (rounded to NUMERIC),
--   else my_cost (credits, rows without a price).
-- * PricingQuantity = usage/billedQuantity on Usage/Purchase rows (NULL on Credit/Tax/Adjustment), in
--   pricing_unit: billingUnitReadable normalised to FOCUS Unit Format by the extractor ('1 GiB MONTHS ...' ->
--   'GiB-Months', '1000000 NONE NONE DATAPOINTS' -> '1000000 Datapoints'); 'Units' when unknown.
-- * Accounts: BillingAccount = the tenancy (lineItem/tenantId), SubAccount = the compartment.
-- * Providers: 'Oracle' everywhere (ServiceProviderName, HostProviderName, InvoiceIssuerName, ProviderName,
--   PublisherName). ServiceName = product/service; ServiceCategory/Subcategory from
--   organizations.service_category_map (provider 'oci') by LOWER(service), else Other / Other (Other).
-- * BillingPeriod = the calendar month (UTC) of the usage interval start.
INSERT INTO `{org_dataset}.cost_data_standard_1_3` (
  AvailabilityZone, BilledCost, BillingAccountId, BillingAccountName, BillingAccountType, BillingCurrency,
  BillingPeriodEnd, BillingPeriodStart, ChargeCategory, ChargeClass, ChargeDescription, ChargeFrequency,
  ChargePeriodEnd, ChargePeriodStart, CommitmentDiscountCategory, CommitmentDiscountId, CommitmentDiscountName,
  CommitmentDiscountQuantity, CommitmentDiscountStatus, CommitmentDiscountType, CommitmentDiscountUnit,
  ConsumedQuantity, ConsumedUnit, ContractedCost, ContractedUnitPrice, EffectiveCost, HostProviderName,
  InvoiceId, InvoiceIssuerName, ListCost, ListUnitPrice, PricingCategory, PricingCurrency,
  PricingCurrencyContractedUnitPrice, PricingCurrencyEffectiveCost, PricingCurrencyListUnitPrice,
  PricingQuantity, PricingUnit, ProviderName, PublisherName, RegionId, RegionName, ResourceId, ResourceName,
  ResourceType, ServiceCategory, ServiceName, ServiceProviderName, ServiceSubcategory, SkuId, SkuMeter,
  SkuPriceId, SubAccountId, SubAccountName, SubAccountType, Tags,
  x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, x_run_id, x_ingested_at, x_ingestion_date,
  x_cost_source)
WITH src AS (
  SELECT r.*,
         CASE
           WHEN r.charge_category IN ('Usage', 'Purchase', 'Tax', 'Credit', 'Adjustment') THEN r.charge_category
           WHEN r.is_correction THEN 'Usage'
           WHEN r.my_cost < 0 THEN 'Credit'
           ELSE 'Usage'
         END AS category,
         COALESCE(m.service_category, 'Other') AS service_category,
         COALESCE(m.service_subcategory, 'Other (Other)') AS service_subcategory
  FROM `{org_dataset}.oci_billing_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m
    ON m.provider = 'oci' AND m.service_key = LOWER(r.service)
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
priced AS (
  SELECT s.*,
         IF(category IN ('Usage', 'Purchase'), COALESCE(billed_quantity, NUMERIC '0'), NULL) AS quantity,
         IF(category IN ('Usage', 'Purchase'), unit_price, NULL) AS contracted_rate,
         IF(category IN ('Usage', 'Purchase'), COALESCE(list_cost, my_cost), my_cost) AS list_total
  FROM src AS s
),
final AS (
  SELECT p.*,
         IF(list_unit_price IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(list_unit_price AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(list_total AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(list_total AS FLOAT64)), 1),
            list_unit_price, NULL) AS list_rate,
         IF(contracted_rate IS NOT NULL AND quantity IS NOT NULL,
            CAST(contracted_rate * quantity AS NUMERIC), my_cost) AS contracted_cost,
         IF(quantity IS NULL, NULL, COALESCE(pricing_unit, 'Units')) AS unit
  FROM priced AS p
)
SELECT availability_domain, my_cost, tenant_id, COALESCE(tenant_name, tenant_id), 'Tenancy', currency,
       TIMESTAMP(DATE_ADD(billing_period_start, INTERVAL 1 MONTH)), TIMESTAMP(billing_period_start),
       category, IF(is_correction, 'Correction', NULL), sku_name,
       IF(category = 'Usage', 'Usage-Based', 'One-Time'),
       IF(interval_end > interval_start, interval_end, TIMESTAMP_ADD(interval_start, INTERVAL 1 HOUR)),
       interval_start,
       -- no commitment discounts in OCI cost reports: Category, Id, Name, Quantity, Status, Type, Unit
       CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS NUMERIC),
       CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS STRING),
       IF(category = 'Usage', quantity, NULL), IF(category = 'Usage', unit, NULL),
       contracted_cost, contracted_rate, my_cost, 'Oracle',
       CAST(NULL AS STRING), 'Oracle', list_total, list_rate,
       IF(category IN ('Usage', 'Purchase'), 'Standard', NULL),
       currency, contracted_rate, my_cost, list_rate,
       quantity, unit, 'Oracle', 'Oracle',
       region, region,
       resource_id, resource_id,
       -- ResourceType is required with a ResourceId: the report's, else the OCID's resource kind
       IF(resource_id IS NULL, NULL,
          COALESCE(resource_type, REGEXP_EXTRACT(resource_id, r'^ocid1\.([a-z0-9]+)\.'), 'resource')),
       service_category, COALESCE(service, 'Oracle Cloud Infrastructure'), 'Oracle', service_subcategory,
       IF(category = 'Tax', NULL, sku_part_number),
       IF(category = 'Tax' OR sku_part_number IS NULL, NULL, COALESCE(sku_name, sku_part_number)),
       CAST(NULL AS STRING),
       compartment_id, IF(compartment_id IS NULL, NULL, COALESCE(compartment_name, compartment_id)),
       IF(compartment_id IS NULL, NULL, 'Compartment'),
       PARSE_JSON(tags),
       @org_slug, @pipeline_id, @credential_id, usage_date, @run_id, CURRENT_TIMESTAMP(), CURRENT_DATE(),
       'cloud'
FROM final;
