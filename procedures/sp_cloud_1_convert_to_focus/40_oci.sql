-- OCI cost / FOCUS report rows (oci_billing_raw) -> FOCUS 1.3, one row per report line, for one slice.
--
-- A FOCUS report's own FOCUS 1.0 columns are taken as the report has them (report_type = 'focus'; the
-- extractor lands them under their FOCUS names: billing_account_id, effective_cost, region_name, ...); only
-- what FOCUS 1.0 lacks is derived, and a column the report leaves empty is derived as for a cost report. The
-- cost-report (reports/cost-csv) rules:
-- * BilledCost = EffectiveCost = my_cost (cost/myCost, overage included) on every row, so SUM(BilledCost) per
--   billing period = cloud_source_totals.source_cost. Commitment (Universal Credits) burn-down is implicit in
--   OCI cost reports: there are no purchase or amortization rows to spread. A FOCUS report's EffectiveCost is
--   its own (0 on a commitment purchase); on Credit rows EffectiveCost = ContractedCost = BilledCost (FOCUS).
-- * ChargeCategory: a FOCUS report's own ChargeCategory when it is a FOCUS 1.3 value; else a correction row
--   (lineItem/isCorrection, a FOCUS report's ChargeClass) -> Usage with ChargeClass 'Correction'; a negative
--   non-correction row -> Credit; everything else -> Usage.
-- * ListCost = the FOCUS report's ListCost, else my_cost (cost reports carry no list price); ListUnitPrice
--   only when it reproduces ListCost x PricingQuantity (so NULL for cost reports).
-- * ContractedUnitPrice = cost/unitPrice; ContractedCost = unitPrice x PricingQuantity (rounded to NUMERIC),
--   else my_cost (credits, rows without a price). A FOCUS report's ContractedCost is its own, its
--   ContractedUnitPrice kept when it reproduces ContractedCost x PricingQuantity.
-- * PricingQuantity = usage/billedQuantity (a FOCUS report's PricingQuantity) on Usage/Purchase rows (NULL on
--   Credit/Tax/Adjustment of cost reports; a FOCUS report's as reported, NULL on Tax), in pricing_unit:
--   billingUnitReadable normalised to FOCUS Unit Format by the extractor ('1 GiB MONTHS ...' -> 'GiB-Months',
--   '1000000 NONE NONE DATAPOINTS' -> '1000000 Datapoints'); 'Units' when unknown.
-- * Accounts: cost report: BillingAccount = the tenancy (lineItem/tenantId), SubAccount = the compartment.
--   FOCUS report: its BillingAccountId/Name/Type and SubAccountId/Name/Type (the tenancy; OCI's compartment
--   stays in oci_billing_raw); an empty type is 'Billing Account' / 'Tenancy'.
-- * Providers: ProviderName, HostProviderName, ServiceProviderName the provider facts (one set whatever the
--   file); InvoiceIssuerName and PublisherName a FOCUS report's InvoiceIssuer / Publisher, else the facts.
--   ServiceName = product/service; ServiceCategory/Subcategory a FOCUS report's when they are a FOCUS 1.3
--   pair (a valid category with another subcategory: the mapped one of that category, else Other (<category>)),
--   else organizations.service_category_map (provider 'oci') by LOWER(service), else Other / Other (Other).
-- * BillingPeriod = a FOCUS report's BillingPeriodStart/End (usage of a month's last hours can be billed in
--   the next month); cost reports: the calendar month (UTC) of the usage interval start.
-- * Commitment discounts and capacity reservations: a FOCUS report's (cost reports have none). What the
--   1.3 rules need beside them is derived: the category (OCI's commitments, Universal Credits, are spend-based),
--   the Used/Unused status of usage, the quantity (Spend: EffectiveCost of usage, BilledCost of a purchase)
--   and unit (Spend: the billing currency). Region, resource, SKU, invoice and pricing-currency columns: a
--   FOCUS report's; PricingCurrency = the billing currency (OCI reports have no PricingCurrency column).
WITH src AS (
  SELECT r.*,
         CASE
           WHEN r.charge_category IN ('Usage', 'Purchase', 'Tax', 'Credit', 'Adjustment') THEN r.charge_category
           WHEN r.is_correction THEN 'Usage'
           WHEN r.my_cost < 0 THEN 'Credit'
           ELSE 'Usage'
         END AS category,
         r.report_type = 'focus' AS focus_report,
         m.service_category AS mapped_category,
         m.service_subcategory AS mapped_subcategory,
         CASE
           WHEN LOWER(r.commitment_discount_category) = 'usage' THEN 'Usage'
           WHEN r.commitment_discount_id IS NOT NULL THEN 'Spend'
         END AS commitment_category
  FROM `{org_dataset}.oci_billing_raw` AS r
  LEFT JOIN `organizations.service_category_map` AS m
    ON m.provider = 'oci' AND m.service_key = LOWER(r.service)
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
priced AS (
  SELECT s.*,
         CASE
           WHEN category IN ('Usage', 'Purchase') THEN COALESCE(billed_quantity, NUMERIC '0')
           WHEN focus_report AND category != 'Tax' THEN billed_quantity
         END AS quantity,
         IF(category IN ('Usage', 'Purchase') OR focus_report, unit_price, NULL) AS contracted_rate,
         IF(category IN ('Usage', 'Purchase') OR focus_report, COALESCE(list_cost, my_cost), my_cost) AS list_total,
         IF(category = 'Credit', my_cost, COALESCE(effective_cost, my_cost)) AS effective,
         CASE
           WHEN commitment_discount_id IS NULL THEN NULL
           WHEN LOWER(commitment_discount_status) = 'used' THEN 'Used'
           WHEN LOWER(commitment_discount_status) = 'unused' THEN 'Unused'
           WHEN category != 'Usage' THEN NULL
           WHEN COALESCE(consumed_quantity, billed_quantity, NUMERIC '0') = 0 THEN 'Unused'
           ELSE 'Used'
         END AS commitment_status
  FROM src AS s
),
final AS (
  SELECT p.*,
         IF(category != 'Tax' AND list_unit_price IS NOT NULL AND quantity IS NOT NULL
              AND ABS(CAST(list_unit_price AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(list_total AS FLOAT64))
                  <= 1e-10 * GREATEST(ABS(CAST(list_total AS FLOAT64)), 1),
            list_unit_price, NULL) AS list_rate,
         CASE
           WHEN category = 'Credit' THEN my_cost
           WHEN contracted_cost IS NOT NULL THEN contracted_cost
           WHEN contracted_rate IS NOT NULL AND quantity IS NOT NULL THEN CAST(contracted_rate * quantity AS NUMERIC)
           ELSE my_cost
         END AS contracted,
         IF(quantity IS NULL, NULL, COALESCE(pricing_unit, 'Units')) AS unit,
         IF(category = 'Usage' AND commitment_status IS DISTINCT FROM 'Unused', COALESCE(consumed_quantity, quantity),
            NULL) AS consumed,
         CASE
           WHEN commitment_discount_id IS NULL THEN NULL
           WHEN commitment_discount_quantity IS NOT NULL THEN commitment_discount_quantity
           WHEN category NOT IN ('Usage', 'Purchase') OR is_correction THEN NULL
           WHEN commitment_category = 'Usage' THEN COALESCE(billed_quantity, NUMERIC '0')
           WHEN category = 'Usage' THEN effective
           ELSE my_cost
         END AS commitment_quantity,
         IF(focus_report, tenant_id, compartment_id) AS sub_account
  FROM priced AS p
),
checked AS (
  -- a FOCUS report's contracted price is kept where it reproduces its ContractedCost (corrections excepted)
  SELECT f.*,
         CASE
           WHEN NOT focus_report THEN contracted_rate
           WHEN category != 'Tax' AND contracted_rate IS NOT NULL AND quantity IS NOT NULL
                AND (is_correction
                     OR ABS(CAST(contracted_rate AS FLOAT64) * CAST(quantity AS FLOAT64) - CAST(contracted AS FLOAT64))
                        <= 1e-10 * GREATEST(ABS(CAST(contracted AS FLOAT64)), 1))
             THEN contracted_rate
         END AS contracted_price
  FROM final AS f
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags},
  availability_domain AS AvailabilityZone,
  my_cost AS BilledCost,
  COALESCE(billing_account_id, tenant_id) AS BillingAccountId,
  IF(billing_account_id IS NULL, COALESCE(tenant_name, tenant_id), COALESCE(billing_account_name, billing_account_id))
    AS BillingAccountName,
  COALESCE(billing_account_type, IF(billing_account_id IS NULL, 'Tenancy', 'Billing Account')) AS BillingAccountType,
  currency AS BillingCurrency,
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
  IF(is_correction, 'Correction', NULL) AS ChargeClass,
  sku_name AS ChargeDescription,
  CASE
    WHEN LOWER(REPLACE(charge_frequency, '-', '')) = 'onetime' THEN 'One-Time'
    WHEN LOWER(charge_frequency) = 'recurring' THEN 'Recurring'
    WHEN LOWER(REPLACE(charge_frequency, '-', '')) = 'usagebased' THEN 'Usage-Based'
    WHEN category = 'Usage' THEN 'Usage-Based'
    ELSE 'One-Time'
  END AS ChargeFrequency,
  IF(interval_end > interval_start, interval_end, TIMESTAMP_ADD(interval_start, INTERVAL 1 HOUR)) AS ChargePeriodEnd,
  interval_start AS ChargePeriodStart,
  -- commitment discounts: a FOCUS report's (OCI cost reports have none)
  commitment_category AS CommitmentDiscountCategory,
  commitment_discount_id AS CommitmentDiscountId,
  IF(commitment_discount_id IS NULL, NULL, COALESCE(commitment_discount_name, commitment_discount_id))
    AS CommitmentDiscountName,
  commitment_quantity AS CommitmentDiscountQuantity,
  commitment_status AS CommitmentDiscountStatus,
  IF(commitment_discount_id IS NULL, NULL, COALESCE(commitment_discount_type, 'Universal Credits'))
    AS CommitmentDiscountType,
  CASE
    WHEN commitment_quantity IS NULL THEN NULL
    -- a spend commitment is counted in money: the report's currency code, else the billing currency
    WHEN commitment_category = 'Spend'
      THEN COALESCE(REGEXP_EXTRACT(commitment_discount_unit, r'^([A-Z]{3})$'), currency)
    ELSE COALESCE(FOCUS_UNIT(commitment_discount_unit), unit)
  END AS CommitmentDiscountUnit,
  consumed AS ConsumedQuantity,
  IF(consumed IS NULL, NULL, unit) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  contracted AS ContractedCost,
  contracted_price AS ContractedUnitPrice,
  effective AS EffectiveCost,
  {oci.HostProviderName} AS HostProviderName,
  invoice_id AS InvoiceId,
  COALESCE(invoice_issuer_name, {oci.InvoiceIssuerName}) AS InvoiceIssuerName,
  list_total AS ListCost,
  list_rate AS ListUnitPrice,
  CASE
    WHEN category = 'Tax' THEN NULL
    WHEN LOWER(pricing_category) IN ('standard', 'on-demand', 'ondemand') THEN 'Standard'
    WHEN LOWER(pricing_category) IN ('committed', 'commitment-based') THEN 'Committed'
    WHEN LOWER(pricing_category) IN ('dynamic', 'spot') THEN 'Dynamic'
    WHEN pricing_category IS NOT NULL THEN 'Other'
    WHEN category = 'Usage' AND commitment_discount_id IS NOT NULL THEN 'Committed'
    WHEN category IN ('Usage', 'Purchase') THEN 'Standard'
  END AS PricingCategory,
  COALESCE(pricing_currency, currency) AS PricingCurrency,
  IF(category = 'Tax', NULL, COALESCE(pricing_currency_contracted_unit_price, contracted_price))
    AS PricingCurrencyContractedUnitPrice,
  COALESCE(pricing_currency_effective_cost, effective) AS PricingCurrencyEffectiveCost,
  IF(category = 'Tax', NULL, COALESCE(pricing_currency_list_unit_price, list_rate)) AS PricingCurrencyListUnitPrice,
  quantity AS PricingQuantity,
  unit AS PricingUnit,
  {oci.ProviderName} AS ProviderName,
  COALESCE(publisher_name, {oci.PublisherName}) AS PublisherName,
  region AS RegionId,
  IF(region IS NULL, NULL, COALESCE(region_name, region)) AS RegionName,
  resource_id AS ResourceId,
  IF(resource_id IS NULL, NULL, COALESCE(resource_name, resource_id)) AS ResourceName,
  -- ResourceType is required with a ResourceId: the report's, else the OCID's resource kind
  IF(resource_id IS NULL, NULL,
    COALESCE(resource_type, REGEXP_EXTRACT(resource_id, r'^ocid1\.([a-z0-9]+)\.'), 'resource')) AS ResourceType,
  IF(service_category_valid, service_category, COALESCE(mapped_category, 'Other')) AS ServiceCategory,
  COALESCE(service, {oci.ServiceName}) AS ServiceName,
  {oci.ServiceProviderName} AS ServiceProviderName,
  CASE
    WHEN service_category_valid AND service_subcategory_valid THEN service_subcategory
    WHEN service_category_valid AND mapped_category = service_category THEN mapped_subcategory
    WHEN service_category_valid THEN CONCAT('Other (', service_category, ')')
    ELSE COALESCE(mapped_subcategory, 'Other (Other)')
  END AS ServiceSubcategory,
  IF(category = 'Tax', NULL, sku_part_number) AS SkuId,
  IF(category = 'Tax' OR sku_part_number IS NULL, NULL, COALESCE(sku_meter, sku_name, sku_part_number)) AS SkuMeter,
  IF(category = 'Tax' OR sku_price_id IS NULL, NULL, PARSE_JSON(sku_price_details)) AS SkuPriceDetails,
  IF(category = 'Tax', NULL, sku_price_id) AS SkuPriceId,
  sub_account AS SubAccountId,
  IF(sub_account IS NULL, NULL, COALESCE(IF(focus_report, tenant_name, compartment_name), sub_account))
    AS SubAccountName,
  IF(sub_account IS NULL, NULL, IF(focus_report, COALESCE(sub_account_type, 'Tenancy'), 'Compartment'))
    AS SubAccountType,
  PARSE_JSON(tags) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM checked;
