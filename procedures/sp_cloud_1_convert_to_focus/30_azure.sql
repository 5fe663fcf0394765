-- Azure cost details (azure_billing_raw: ActualCost and/or AmortizedCost exports) -> FOCUS 1.3, for one slice.
--
-- Which rows (per billing period of the slice; the finops-toolkit recipe for actual + amortized):
-- * the period has AmortizedCost rows: every amortized row, plus the ActualCost rows that are commitment
--   (reservation / savings plan) Purchase or Refund rows; amortized commitment Purchase/Refund rows are then
--   dropped in favour of the actual ones. Other actual rows are the same charges as the amortized ones.
-- * the period has only ActualCost rows: every actual row.
-- Cost semantics:
-- * BilledCost = cost, except amortized commitment-covered usage and UnusedReservation/UnusedSavingsPlan rows
--   -> 0 (they are billed by the purchase row). So SUM(BilledCost) per period = the actual export's total
--   (= cloud_source_totals.source_cost; Azure cost details hold no credits/tax, see the reference).
-- * EffectiveCost = cost (amortized where the row is amortized), except commitment (reservation, savings
--   plan) Purchase and Refund rows -> 0: FOCUS requires 0 for a purchase covering future charges, whose cost
--   the amortized dataset spreads over the covered usage and unused rows. This holds with actual data only
--   too (finops-toolkit's convert.md sets it unconditionally): the covered usage then costs 0 as well, so the
--   commitments' cost is in no row's EffectiveCost; the extractor warns such periods, and only exporting
--   AmortizedCost (or FocusCost) gives the amortization. Keeping the purchase's cost as EffectiveCost instead
--   would break the FOCUS rule and double count it as soon as amortized data arrives.
--   Credit rows: EffectiveCost = ContractedCost = BilledCost (FOCUS rule).
-- * ChargeCategory: Usage, Purchase, Tax as is; UnusedReservation/UnusedSavingsPlan -> Usage (status Unused);
--   a commitment's Refund -> Purchase with ChargeClass Correction (finops-toolkit), no CommitmentDiscountQuantity;
--   other Refund -> Credit; Credit -> Credit; anything else (RoundingAdjustment, ...) -> Adjustment.
--   PricingCategory of a Purchase is Standard: the purchase of a commitment is not priced by it (FOCUS 1.1).
-- * Units: UnitOfMeasure is split by the extractor into pricing_block_size and a FOCUS Unit Format unit
--   ('10 Hours' -> 10 x 'Hours', '1 GB/Month' -> 'GB-Months', '10K' -> 10000 x 'Units'). PricingQuantity =
--   Quantity x block on Usage/Purchase rows (NULL otherwise); unit prices are per block / block size.
-- * ListCost = PaygCostInBillingCurrency (MCA), else PayGPrice x Quantity, else UnitPrice x Quantity, else
--   BilledCost (Tax/Credit/Adjustment and rows without a price). A PayG cost or price of 0 beside a non-zero
--   UnitPrice x Quantity is a price the export left out (EA writes PayGPrice 0 on reservation-covered usage and
--   purchases), not a free meter: the unit price (what the row costs without the commitment) stands in, so
--   ListCost is never 0 beside a contracted cost. ContractedCost = UnitPrice x Quantity, else BilledCost.
--   ListUnitPrice / ContractedUnitPrice are set only when price x PricingQuantity reproduces the cost
--   (FOCUS requires the product; NUMERIC division by a block size can round), else NULL.
-- * Commitments: CommitmentDiscountId = benefitId, else ReservationId; '/microsoft.billingbenefits/' ids,
--   PricingModel SavingsPlan and UnusedSavingsPlan -> Savings Plan (Spend), else Reservation (Usage).
--   Quantity: Savings Plan -> the row's EffectiveCost (spend) on usage, cost on purchases; Reservation ->
--   PricingQuantity (in its unit).
-- * Providers: 'Microsoft'; Marketplace rows (PublisherType Marketplace) -> ServiceProviderName and
--   PublisherName = PublisherName. HostProviderName stays Microsoft.
-- * ServiceName = MeterCategory (else ServiceName, ConsumedService); ServiceCategory/Subcategory from
--   organizations.service_category_map (provider 'azure') by LOWER(MeterCategory), then by
--   LOWER(ConsumedService), else Other / Other (Other). One ServiceCategory per ServiceName (FOCUS): a meter
--   category the map does not know is used through several resource providers (ConsumedService), so the
--   slice takes the mapped category and subcategory of most of its lines (ties: alphabetical; Other only
--   when none maps) for all its lines.
-- * Periods: ChargePeriod = the usage day; BillingPeriodEnd = BillingPeriodEndDate + 1 day (Azure's end is
--   inclusive), else start + 1 month. BillingAccount = billing profile (MCA invoice scope), else billing
--   account (EA enrollment), else subscription. SubAccount = subscription.
WITH base AS (
  SELECT r.*,
         COALESCE(r.benefit_id, r.reservation_id) AS commit_ref,
         (COALESCE(r.benefit_id, r.reservation_id) IS NOT NULL
           AND (r.pricing_model IN ('Reservation', 'SavingsPlan')
                OR r.charge_type IN ('UnusedReservation', 'UnusedSavingsPlan', 'Purchase', 'Refund'))) AS is_commit,
         MAX(IF(r.cost_type = 'AmortizedCost', 1, 0)) OVER (PARTITION BY r.billing_period_start) AS has_amortized,
         MAX(IF(r.cost_type = 'ActualCost', 1, 0)) OVER (PARTITION BY r.billing_period_start) AS has_actual
  FROM `{org_dataset}.azure_billing_raw` AS r
  WHERE r.x_org_slug = @org_slug AND r.x_pipeline_id = @pipeline_id AND r.x_credential_id = @credential_id
    AND r.usage_date BETWEEN @start_date AND @end_date
),
src AS (
  SELECT b.*,
         CASE
           WHEN b.charge_type IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan') THEN 'Usage'
           WHEN b.charge_type = 'Purchase' OR (b.charge_type = 'Refund' AND b.is_commit) THEN 'Purchase'
           WHEN b.charge_type = 'Tax' THEN 'Tax'
           WHEN b.charge_type IN ('Refund', 'Credit') THEN 'Credit'
           ELSE 'Adjustment'
         END AS category,
         IF(b.is_commit, b.commit_ref, NULL) AS commitment_id,
         IF(b.is_commit AND b.charge_type = 'Refund', 'Correction', NULL) AS charge_class,
         IF(b.is_commit, IF(LOWER(b.commit_ref) LIKE '%/microsoft.billingbenefits/%' OR b.pricing_model = 'SavingsPlan'
                              OR b.charge_type = 'UnusedSavingsPlan', 'Savings Plan', 'Reservation'), NULL) AS commitment_type,
         IF(b.publisher_type = 'Marketplace' AND b.publisher_name IS NOT NULL, b.publisher_name, {azure.ServiceProviderName}) AS seller,
         COALESCE(b.meter_category, b.service_name, b.consumed_service, 'Azure') AS service_name_out,
         COALESCE(m1.service_category, m2.service_category) AS mapped_category,
         COALESCE(m1.service_subcategory, m2.service_subcategory) AS mapped_subcategory
  FROM base AS b
  LEFT JOIN `organizations.service_category_map` AS m1
    ON m1.provider = 'azure' AND m1.service_key = LOWER(b.meter_category)
  LEFT JOIN `organizations.service_category_map` AS m2
    ON m2.provider = 'azure' AND m2.service_key = LOWER(b.consumed_service)
  WHERE (b.cost_type = 'AmortizedCost'
         AND NOT (b.is_commit AND b.charge_type IN ('Purchase', 'Refund') AND b.has_actual = 1))
     OR (b.cost_type = 'ActualCost'
         AND (b.has_amortized = 0 OR (b.is_commit AND b.charge_type IN ('Purchase', 'Refund'))))
),
service_categories AS (
  SELECT service_name_out, COALESCE(mapped_category, 'Other') AS service_category,
         COALESCE(mapped_subcategory, 'Other (Other)') AS service_subcategory
  FROM src
  GROUP BY service_name_out, mapped_category, mapped_subcategory
  QUALIFY ROW_NUMBER() OVER (PARTITION BY service_name_out
                             ORDER BY mapped_category IS NULL, COUNT(*) DESC, mapped_category, mapped_subcategory) = 1
),
priced AS (
  SELECT s.*, c.service_category, c.service_subcategory,
         IF(category IN ('Usage', 'Purchase'), COALESCE(quantity, NUMERIC '0') * pricing_block_size, NULL) AS pricing_quantity,
         IF(category IN ('Usage', 'Purchase'), COALESCE(pricing_unit, 'Units'), NULL) AS unit,
         IF(cost_type = 'AmortizedCost' AND is_commit AND charge_type IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan'),
            NUMERIC '0', cost) AS billed_cost,
         IF(is_commit AND charge_type IN ('Purchase', 'Refund'), NUMERIC '0', cost) AS effective_cost,
         IF(category IN ('Usage', 'Purchase') AND unit_price IS NOT NULL AND quantity IS NOT NULL,
            CAST(ROUND(unit_price * quantity, 9) AS NUMERIC), NULL) AS contracted_from_price
  FROM src AS s
  LEFT JOIN service_categories AS c USING (service_name_out)
),
payg AS (
  SELECT p.*,
         -- a PayG value of 0 beside a non-zero contracted cost is a price left out, not a free meter
         (payg_price IS NOT NULL AND (payg_price != 0 OR COALESCE(contracted_from_price, NUMERIC '0') = 0)) AS payg_listed
  FROM priced AS p
),
listed AS (
  SELECT l.*,
         CASE
           WHEN category NOT IN ('Usage', 'Purchase') THEN NULL
           WHEN payg_listed THEN payg_price
           WHEN contracted_from_price IS NOT NULL THEN unit_price
         END AS list_price,
         CASE
           WHEN category NOT IN ('Usage', 'Purchase') THEN cost
           WHEN payg_cost IS NOT NULL AND (payg_cost != 0 OR COALESCE(contracted_from_price, NUMERIC '0') = 0) THEN payg_cost
           WHEN payg_listed AND quantity IS NOT NULL THEN CAST(ROUND(payg_price * quantity, 9) AS NUMERIC)
           ELSE COALESCE(contracted_from_price, cost)
         END AS list_cost
  FROM payg AS l
),
final AS (
  SELECT p.*,
         COALESCE(contracted_from_price, billed_cost) AS contracted_cost,
         IF(pricing_quantity IS NOT NULL AND list_price IS NOT NULL AND pricing_block_size > 0
              AND ABS(CAST(list_price AS FLOAT64) / CAST(pricing_block_size AS FLOAT64) * CAST(pricing_quantity AS FLOAT64)
                      - CAST(list_cost AS FLOAT64)) <= 1e-10 * GREATEST(ABS(CAST(list_cost AS FLOAT64)), 1)
              AND ABS(CAST(CAST(ROUND(list_price / pricing_block_size, 9) AS NUMERIC) AS FLOAT64) * CAST(pricing_quantity AS FLOAT64)
                      - CAST(list_cost AS FLOAT64)) <= 1e-10 * GREATEST(ABS(CAST(list_cost AS FLOAT64)), 1),
            CAST(ROUND(list_price / pricing_block_size, 9) AS NUMERIC), NULL) AS list_rate,
         IF(contracted_from_price IS NOT NULL AND pricing_block_size > 0
              AND ABS(CAST(CAST(ROUND(unit_price / pricing_block_size, 9) AS NUMERIC) AS FLOAT64) * CAST(pricing_quantity AS FLOAT64)
                      - CAST(contracted_from_price AS FLOAT64)) <= 1e-10 * GREATEST(ABS(CAST(contracted_from_price AS FLOAT64)), 1),
            CAST(ROUND(unit_price / pricing_block_size, 9) AS NUMERIC), NULL) AS contracted_rate,
         REGEXP_REPLACE(LOWER(resource_location), r'[^a-z0-9]', '') AS region_id,
         COALESCE(billing_profile_id, billing_account_id, subscription_id, 'unknown') AS account_id
  FROM listed AS p
)
SELECT
  {null:AllocatedMethodDetails, AllocatedMethodId, AllocatedResourceId, AllocatedResourceName, AllocatedTags},
  availability_zone AS AvailabilityZone,
  billed_cost AS BilledCost,
  account_id AS BillingAccountId,
  COALESCE(IF(billing_profile_id IS NOT NULL, billing_profile_name, billing_account_name), account_id) AS BillingAccountName,
  IF(billing_profile_id IS NOT NULL, 'Billing Profile', IF(billing_account_id IS NOT NULL, 'Billing Account', 'Subscription')) AS BillingAccountType,
  billing_currency AS BillingCurrency,
  TIMESTAMP(COALESCE(DATE_ADD(billing_period_end, INTERVAL 1 DAY), DATE_ADD(billing_period_start, INTERVAL 1 MONTH))) AS BillingPeriodEnd,
  TIMESTAMP(billing_period_start) AS BillingPeriodStart,
  {null:CapacityReservationId, CapacityReservationStatus},
  category AS ChargeCategory,
  charge_class AS ChargeClass,
  COALESCE(product_name, CONCAT(COALESCE(meter_category, 'Azure'), ' ', COALESCE(meter_name, charge_type))) AS ChargeDescription,
  CASE
    WHEN frequency = 'OneTime' THEN 'One-Time'
    WHEN frequency = 'Recurring' THEN 'Recurring'
    WHEN frequency = 'UsageBased' THEN 'Usage-Based'
    WHEN category = 'Usage' THEN 'Usage-Based'
    ELSE 'One-Time'
  END AS ChargeFrequency,
  TIMESTAMP(DATE_ADD(usage_date, INTERVAL 1 DAY)) AS ChargePeriodEnd,
  TIMESTAMP(usage_date) AS ChargePeriodStart,
  CASE WHEN commitment_id IS NULL THEN NULL WHEN commitment_type = 'Savings Plan' THEN 'Spend' ELSE 'Usage' END AS CommitmentDiscountCategory,
  commitment_id AS CommitmentDiscountId,
  IF(commitment_id IS NULL, NULL, COALESCE(benefit_name, reservation_name, commitment_id)) AS CommitmentDiscountName,
  CASE
    WHEN commitment_id IS NULL OR charge_class IS NOT NULL THEN NULL
    WHEN commitment_type = 'Savings Plan' AND category = 'Usage' THEN effective_cost
    WHEN commitment_type = 'Savings Plan' THEN cost
    ELSE COALESCE(pricing_quantity, NUMERIC '0')
  END AS CommitmentDiscountQuantity,
  CASE
    WHEN commitment_id IS NULL OR category != 'Usage' THEN NULL
    WHEN charge_type IN ('UnusedReservation', 'UnusedSavingsPlan') THEN 'Unused'
    ELSE 'Used'
  END AS CommitmentDiscountStatus,
  commitment_type AS CommitmentDiscountType,
  CASE WHEN commitment_id IS NULL OR charge_class IS NOT NULL THEN NULL
    WHEN commitment_type = 'Savings Plan' THEN billing_currency ELSE COALESCE(unit, 'Units') END AS CommitmentDiscountUnit,
  IF(category = 'Usage' AND charge_type = 'Usage', pricing_quantity, NULL) AS ConsumedQuantity,
  IF(category = 'Usage' AND charge_type = 'Usage', unit, NULL) AS ConsumedUnit,
  CAST(NULL AS JSON) AS ContractApplied,
  IF(category = 'Credit', billed_cost, contracted_cost) AS ContractedCost,
  contracted_rate AS ContractedUnitPrice,
  effective_cost AS EffectiveCost,
  {azure.HostProviderName} AS HostProviderName,
  invoice_id AS InvoiceId,
  {azure.InvoiceIssuerName} AS InvoiceIssuerName,
  list_cost AS ListCost,
  list_rate AS ListUnitPrice,
  CASE
    WHEN category NOT IN ('Usage', 'Purchase') THEN NULL
    WHEN category = 'Purchase' THEN 'Standard'
    WHEN commitment_id IS NOT NULL OR pricing_model IN ('Reservation', 'SavingsPlan') THEN 'Committed'
    WHEN pricing_model = 'Spot' THEN 'Dynamic'
    ELSE 'Standard'
  END AS PricingCategory,
  COALESCE(pricing_currency, billing_currency) AS PricingCurrency,
  contracted_rate AS PricingCurrencyContractedUnitPrice,
  effective_cost AS PricingCurrencyEffectiveCost,
  list_rate AS PricingCurrencyListUnitPrice,
  pricing_quantity AS PricingQuantity,
  unit AS PricingUnit,
  {azure.ProviderName} AS ProviderName,
  seller AS PublisherName,
  IF(region_id IS NULL OR region_id IN ('', 'unassigned', 'global', 'unknown'), NULL, region_id) AS RegionId,
  IF(region_id IS NULL OR region_id IN ('', 'unassigned', 'global', 'unknown'), NULL, resource_location) AS RegionName,
  resource_id AS ResourceId,
  IF(resource_id IS NULL, NULL, COALESCE(resource_name, REGEXP_EXTRACT(resource_id, r'([^/]+)$'))) AS ResourceName,
  -- ResourceType is required with a ResourceId: the ARM type from the id (Microsoft.Compute/virtualMachines)
  IF(resource_id IS NULL, NULL,
    COALESCE(REGEXP_EXTRACT(resource_id, r'(?i)/providers/([^/]+/[^/]+)/'), 'resource')) AS ResourceType,
  service_category AS ServiceCategory,
  service_name_out AS ServiceName,
  seller AS ServiceProviderName,
  service_subcategory AS ServiceSubcategory,
  IF(category = 'Tax', NULL, COALESCE(product_id, meter_id)) AS SkuId,
  IF(category = 'Tax' OR COALESCE(product_id, meter_id) IS NULL, NULL, meter_name) AS SkuMeter,
  CAST(NULL AS JSON) AS SkuPriceDetails,
  -- one SkuId per SkuPriceId: the meter within the product
  IF(category = 'Tax' OR COALESCE(product_id, meter_id) IS NULL, NULL,
    IF(product_id IS NOT NULL AND meter_id IS NOT NULL, CONCAT(product_id, ':', meter_id), COALESCE(product_id, meter_id))) AS SkuPriceId,
  subscription_id AS SubAccountId,
  IF(subscription_id IS NULL, NULL, COALESCE(subscription_name, subscription_id)) AS SubAccountName,
  IF(subscription_id IS NULL, NULL, 'Subscription') AS SubAccountType,
  PARSE_JSON(tags) AS Tags,
  usage_date AS x_pipeline_run_date,
  'cloud' AS x_cost_source
FROM final;
