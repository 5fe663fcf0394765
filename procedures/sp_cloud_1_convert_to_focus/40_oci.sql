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
SELECT
  CAST(NULL AS JSON) AS AllocatedMethodDetails,
  CAST(NULL AS STRING) AS AllocatedMethodId,
  CAST(NULL AS STRING) AS AllocatedResourceId,
  CAST(NULL AS STRING) AS AllocatedResourceName,
  CAST(NULL AS JSON) AS AllocatedTags,
  availability_domain AS AvailabilityZone,
  my_cost AS BilledCost,
  tenant_id AS BillingAccountId,
  COALESCE(tenant_name, tenant_id) AS BillingAccountName,
  'Tenancy' AS BillingAccountType,
  currency AS BillingCurrency,
  TIMESTAMP(DATE_ADD(billing_period_start, INTERVAL 1 MONTH)) AS BillingPeriodEnd,
  TIMESTAMP(billing_period_start) AS BillingPeriodStart,
  CAST(NULL AS STRING) AS CapacityReservationId,
  CAST(NULL AS STRING) AS CapacityReservationStatus,
  category AS ChargeCategory,
  IF(is_correction, 'Correction', NULL) AS ChargeClass,
  sku_name AS ChargeDescription,
  IF(category = 'Usage', 'Usage-Based', 'One-Time') AS ChargeFrequency,
  IF(interval_end > interval_start, interval_end, TIMESTAMP_ADD(interval_start, INTERVAL 1 HOUR)) AS ChargePeriodEnd,
  interval_start AS ChargePeriodStart,
  -- no commitment discounts in OCI cost reports: Category, Id, Name, Quantity, Status, Type, Unit
  CAST(NULL AS STRING) AS CommitmentDiscountCategory,
  CAST(NULL AS STRING) AS CommitmentDiscountId,
  CAST(NULL AS STRING) AS CommitmentDiscountName,
  CAST(NULL AS NUMERIC) AS CommitmentDiscountQuantity,
  CAST(NULL AS STRING) AS CommitmentDiscountStatus,
  CAST(NULL AS STRING) AS CommitmentDiscountType,
  CAST(NULL AS STRING) AS CommitmentDiscountUnit,
  IF(category = 'Usage', quantity, NULL) AS ConsumedQuantity,
  IF(category = 'Usage', unit, NULL) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  contracted_cost AS ContractedCost,
  contracted_rate AS ContractedUnitPrice,
  my_cost AS EffectiveCost,
  {oci.HostProviderName} AS HostProviderName,
  CAST(NULL AS STRING) AS InvoiceId,
  {oci.InvoiceIssuerName} AS InvoiceIssuerName,
  list_total AS ListCost,
  list_rate AS ListUnitPrice,
  IF(category IN ('Usage', 'Purchase'), 'Standard', NULL) AS PricingCategory,
  currency AS PricingCurrency,
  contracted_rate AS PricingCurrencyContractedUnitPrice,
  my_cost AS PricingCurrencyEffectiveCost,
  list_rate AS PricingCurrencyListUnitPrice,
  quantity AS PricingQuantity,
  unit AS PricingUnit,
  {oci.ProviderName} AS ProviderName,
  {oci.PublisherName} AS PublisherName,
  region AS RegionId,
  region AS RegionName,
  resource_id AS ResourceId,
  resource_id AS ResourceName,
  -- ResourceType is required with a ResourceId: the report's, else the OCID's resource kind
  IF(resource_id IS NULL, NULL,
    COALESCE(resource_type, REGEXP_EXTRACT(resource_id, r'^ocid1\.([a-z0-9]+)\.'), 'resource')) AS ResourceType,
  service_category AS ServiceCategory,
  COALESCE(service, 'Oracle Cloud Infrastructure') AS ServiceName,
  {oci.ServiceProviderName} AS ServiceProviderName,
  service_subcategory AS ServiceSubcategory,
  IF(category = 'Tax', NULL, sku_part_number) AS SkuId,
  IF(category = 'Tax' OR sku_part_number IS NULL, NULL, COALESCE(sku_name, sku_part_number)) AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  CAST(NULL AS STRING) AS SkuPriceId,
  compartment_id AS SubAccountId,
  IF(compartment_id IS NULL, NULL, COALESCE(compartment_name, compartment_id)) AS SubAccountName,
  IF(compartment_id IS NULL, NULL, 'Compartment') AS SubAccountType,
  PARSE_JSON(tags) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM final;
