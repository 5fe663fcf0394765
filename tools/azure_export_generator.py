"""A synthetic Azure Cost Management cost-details export (ActualCost), for benchmarks and scale tests.

    python -m tools.azure_export_generator --rows N --out DIR [--schema ea|mca] [--format csv|csv.gz]
                                           [--parts P] [--seed S] [--month 2024-03]

Writes what a scheduled month-to-date export delivers to its storage container, the way
jobs/cloud/azure.py reads it from a `{"source": "file://DIR"}` folder:

    DIR/exports/<export>/<YYYYMMDD-YYYYMMDD>/<YYYYMMDDHHMM>/<run id>/part_0_0001.csv[.gz] ... + manifest.json

DIR stands for the container and `exports` for the export's root folder. The manifest (exportConfig.type
ActualCost, runInfo.startDate = the month, blobs = the parts by blob name) is what the extractor picks the
files by, as for a real export.

* `ea` (default): the Enterprise Agreement schema (PascalCase, 57 columns: `CostInBillingCurrency`,
  `BillingCurrencyCode`, `MeterSubCategory`, `PayGPrice`, ... `ResourceLocationNormalized`), dates `MM/DD/YYYY`,
  `Tags` as EA writes it: JSON members without the outer braces (`"Environment": "prod","CostCenter": "CC-1"`).
* `mca`: the Microsoft Customer Agreement schema (camelCase, 65 columns incl. `paygCostInBillingCurrency`,
  `billingCurrency`, `invoiceId`), `tags` as a JSON object; MCA exports also carry Refund rows.

Rows are daily (one per resource, meter and day): on-demand usage (about 83%), Spot, usage covered by a
reservation or a savings plan (cost 0 in ActualCost, the benefit named by `benefitId`), Marketplace SaaS,
reservation and savings-plan purchases (monthly and one-time) and, for MCA, refunds, over 24 subscriptions in
4 departments, 8 regions, 30 meters and a pool of resources with tags. Cost details hold no credits, taxes or
invoice-level discounts (Azure puts those on the invoice only), so there are none here. Money is written as Azure writes it
(shortest text, `5.64902E-05` for small values) with at most 8 decimals, so sums are exact. Rows are computed
by DuckDB from the row number and the seed and streamed to the file: deterministic and bounded in memory.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

from tools import generator_core as core
from tools.generator_core import lit, pick

ENROLLMENT = "8611537"
ENROLLMENT_NAME = "Contoso Ltd"
DEPARTMENTS = [("Engineering", "CC-1001"), ("Data Platform", "CC-2040"), ("Research", "CC-3300"),
               ("Corporate IT", "CC-4100")]


def _uuid(name: str) -> str:
    return str(uuid.UUID(hashlib.md5(name.encode()).hexdigest()))


SUBSCRIPTIONS = [(_uuid(f"subscription-{i}"),
                  f"{['prod', 'dev', 'test', 'shared'][i % 4]}-{['web', 'data', 'ml', 'core', 'ops', 'edge'][i % 6]}-{i:02d}")
                 for i in range(1, 25)]
RESOURCE_GROUPS = ["rg-web", "rg-api", "rg-data", "rg-aks", "rg-ml", "rg-network", "rg-shared", "rg-monitoring"]
LOCATIONS = [  # ResourceLocation, MeterRegion, ResourceLocationNormalized
    ("EastUS", "US East", "eastus"), ("EastUS2", "US East 2", "eastus2"), ("WestUS2", "US West 2", "westus2"),
    ("CentralUS", "US Central", "centralus"), ("WestEurope", "EU West", "westeurope"),
    ("NorthEurope", "EU North", "northeurope"), ("UKSouth", "UK South", "uksouth"),
    ("SoutheastAsia", "AP Southeast", "southeastasia"),
]
# MeterCategory, MeterSubCategory, MeterName, ConsumedService, ServiceFamily, UnitOfMeasure, PayG price USD,
# most a resource uses a day (in UnitOfMeasure blocks), ARM type, resource name prefix, VM size (AdditionalInfo)
METERS = [
    ("Virtual Machines", "Dsv5 Series", "D4s v5", "Microsoft.Compute", "Compute", "1 Hour", "0.192", 24, "Microsoft.Compute/virtualMachines", "vm", "Standard_D4s_v5"),
    ("Virtual Machines", "Dsv5 Series", "D8s v5", "Microsoft.Compute", "Compute", "1 Hour", "0.384", 24, "Microsoft.Compute/virtualMachines", "vm", "Standard_D8s_v5"),
    ("Virtual Machines", "Dsv5 Series Windows", "D2s v5", "Microsoft.Compute", "Compute", "1 Hour", "0.188", 24, "Microsoft.Compute/virtualMachines", "vmw", "Standard_D2s_v5"),
    ("Virtual Machines", "Esv5 Series", "E8s v5", "Microsoft.Compute", "Compute", "1 Hour", "0.504", 24, "Microsoft.Compute/virtualMachines", "vm", "Standard_E8s_v5"),
    ("Virtual Machines", "BS Series", "B2ms", "Microsoft.Compute", "Compute", "1 Hour", "0.0832", 24, "Microsoft.Compute/virtualMachines", "vm", "Standard_B2ms"),
    ("Virtual Machines", "Dv3 Series", "D4 v3 Spot", "Microsoft.Compute", "Compute", "1 Hour", "0.0389", 24, "Microsoft.Compute/virtualMachines", "spot", "Standard_D4_v3"),
    ("Virtual Machines", "NCasT4_v3 Series", "NC4as T4 v3", "Microsoft.Compute", "Compute", "1 Hour", "0.526", 24, "Microsoft.Compute/virtualMachines", "gpu", "Standard_NC4as_T4_v3"),
    ("Storage", "Premium SSD Managed Disks", "P30 LRS Disk", "Microsoft.Compute", "Storage", "1/Month", "135.17", 0.033, "Microsoft.Compute/disks", "disk", ""),
    ("Storage", "Standard SSD Managed Disks", "E10 LRS Disk", "Microsoft.Compute", "Storage", "1/Month", "9.6", 0.033, "Microsoft.Compute/disks", "disk", ""),
    ("Storage", "Tiered Block Blob", "Hot LRS Data Stored", "Microsoft.Storage", "Storage", "1 GB/Month", "0.0184", 400, "Microsoft.Storage/storageAccounts", "st", ""),
    ("Storage", "Tiered Block Blob", "Hot Write Operations", "Microsoft.Storage", "Storage", "10K", "0.055", 90, "Microsoft.Storage/storageAccounts", "st", ""),
    ("Storage", "Files v2", "LRS Data Stored", "Microsoft.Storage", "Storage", "1 GB/Month", "0.06", 120, "Microsoft.Storage/storageAccounts", "st", ""),
    ("Storage", "Tables", "Class 1 Operations", "Microsoft.Storage", "Storage", "10K", "0.00036", 300, "Microsoft.Storage/storageAccounts", "st", ""),
    ("Bandwidth", "Rtn Preference: MGN", "Standard Data Transfer Out", "Microsoft.Compute", "Networking", "1 GB", "0.087", 150, "Microsoft.Compute/virtualMachines", "vm", ""),
    ("Virtual Network", "IP Addresses", "Standard IPv4 Static Public IP", "Microsoft.Network", "Networking", "1 Hour", "0.005", 24, "Microsoft.Network/publicIPAddresses", "pip", ""),
    ("Load Balancer", "Standard", "Standard Data Processed", "Microsoft.Network", "Networking", "1 GB", "0.005", 800, "Microsoft.Network/loadBalancers", "lb", ""),
    ("Azure App Service", "Premium v3 Plan", "P1 v3 App", "Microsoft.Web", "Compute", "1 Hour", "0.169", 24, "Microsoft.Web/serverfarms", "asp", ""),
    ("SQL Database", "General Purpose - Compute Gen5", "vCore", "Microsoft.Sql", "Databases", "1 Hour", "0.2529", 96, "Microsoft.Sql/servers/databases", "sqldb", ""),
    ("SQL Database", "General Purpose - Storage", "General Purpose Data Stored", "Microsoft.Sql", "Databases", "1 GB/Month", "0.115", 250, "Microsoft.Sql/servers/databases", "sqldb", ""),
    ("Azure Cosmos DB", "Azure Cosmos DB", "100 RU/s", "Microsoft.DocumentDB", "Databases", "100/Hour", "0.008", 2400, "Microsoft.DocumentDB/databaseAccounts", "cosmos", ""),
    ("Azure Kubernetes Service", "Standard", "Standard Uptime SLA", "Microsoft.ContainerService", "Compute", "1 Hour", "0.1", 24, "Microsoft.ContainerService/managedClusters", "aks", ""),
    ("Log Analytics", "Analytics Logs", "Pay-as-you-go Data Ingestion", "Microsoft.OperationalInsights", "Management and Governance", "1 GB", "2.76", 40, "Microsoft.OperationalInsights/workspaces", "log", ""),
    ("Azure Monitor", "Alerts", "Alerts Metric Monitored", "Microsoft.Insights", "Management and Governance", "1/Month", "0.1", 0.033, "Microsoft.Insights/metricAlerts", "alert", ""),
    ("Key Vault", "Standard", "Operations", "Microsoft.KeyVault", "Security", "10K", "0.03", 60, "Microsoft.KeyVault/vaults", "kv", ""),
    ("Cognitive Services", "Azure OpenAI", "gpt-4o-0806-Inp-glbl Tokens", "Microsoft.CognitiveServices", "AI + Machine Learning", "1K", "0.0025", 9000, "Microsoft.CognitiveServices/accounts", "aoai", ""),
    ("Cognitive Services", "Azure OpenAI", "gpt-4o-0806-Outp-glbl Tokens", "Microsoft.CognitiveServices", "AI + Machine Learning", "1K", "0.01", 3000, "Microsoft.CognitiveServices/accounts", "aoai", ""),
    ("Container Registry", "Premium", "Premium Registry Unit", "Microsoft.ContainerRegistry", "Containers", "1/Day", "1.667", 1, "Microsoft.ContainerRegistry/registries", "acr", ""),
    ("Azure Data Factory v2", "Data Movement", "Cloud Data Movement", "Microsoft.DataFactory", "Analytics", "1 Hour", "0.25", 48, "Microsoft.DataFactory/factories", "adf", ""),
    ("Functions", "Premium", "vCPU Duration", "Microsoft.Web", "Compute", "1 Hour", "0.173", 24, "Microsoft.Web/sites", "func", ""),
    ("Azure DNS", "Public", "Public Queries", "Microsoft.Network", "Networking", "1M", "0.4", 20, "Microsoft.Network/dnszones", "dns", ""),
]
RESERVABLE = [0, 1, 3, 6, 17]  # meters reservations cover: VMs, SQL vCores
SAVINGS_PLAN = [0, 1, 2, 4, 16, 28]  # meters savings plans cover: VMs, App Service, Functions
MARKETPLACE = [  # ProductName, PublisherName, PlanName, monthly price
    ("Datadog - Pro (Monthly)", "Datadog", "datadog-pro-monthly", "23"),
    ("Elastic Cloud (Elasticsearch Service) - Pay as you go", "Elastic", "ec-azure-payg", "0.4"),
    ("Confluent Cloud - Pay as you Go", "Confluent Inc", "confluent-cloud-azure-payg-prod", "1.25"),
    ("Red Hat Enterprise Linux 8 - D4s_v5", "Red Hat", "rhel-lvm8", "0.13"),
]
TAG_VALUES = {
    "Environment": ["production", "staging", "development", "sandbox"],
    "CostCenter": ["CC-1001", "CC-1002", "CC-2040", "CC-3300", "CC-4100"],
    "owner": ["alice@contoso.com", "bob@contoso.com", "data-team@contoso.com", "sre@contoso.com"],
    "app": ["checkout", "search", "ledger", "ingest", "portal", "recommender"],
}
# (charge kind, first bucket of 10,000); the bucket of a row is hash % 10,000
KINDS = [("OnDemand", 0), ("Spot", 8300), ("Reservation", 8500), ("SavingsPlan", 9200), ("Marketplace", 9650),
         ("Purchase", 9750), ("Refund", 9753), ("OnDemand", 9758)]
RESOURCES = 40_000

# The EA 2024-08-01 and MCA 2023-12-01-preview column orders; values are the internal fields below ('' = empty).
EA_COLUMNS = [
    ("InvoiceSectionName", "department"), ("AccountName", "account_name"), ("AccountOwnerId", "account_owner"),
    ("SubscriptionId", "subscription_id"), ("SubscriptionName", "subscription_name"), ("ResourceGroup", "resource_group"),
    ("ResourceLocation", "location"), ("Date", "date_us"), ("ProductName", "product_name"),
    ("MeterCategory", "meter_category"), ("MeterSubCategory", "meter_subcategory"), ("MeterId", "meter_id"),
    ("MeterName", "meter_name"), ("MeterRegion", "meter_region"), ("UnitOfMeasure", "uom"), ("Quantity", "quantity_t"),
    ("EffectivePrice", "effective_price_t"), ("CostInBillingCurrency", "cost_t"), ("CostCenter", "cost_center"),
    ("ConsumedService", "consumed_service"), ("ResourceId", "resource_id"), ("Tags", "tags_ea"), ("OfferId", "offer_id"),
    ("AdditionalInfo", "additional_info"), ("ServiceInfo1", ""), ("ServiceInfo2", ""), ("ResourceName", "resource_name"),
    ("ReservationId", "reservation_id"), ("ReservationName", "reservation_name"), ("UnitPrice", "unit_price_t"),
    ("ProductOrderId", "order_id"), ("ProductOrderName", "order_name"), ("Term", "term"),
    ("PublisherType", "publisher_type"), ("PublisherName", "publisher_name"), ("ChargeType", "charge_type"),
    ("Frequency", "frequency"), ("PricingModel", "pricing_model"), ("AvailabilityZone", "zone"),
    ("BillingAccountId", "billing_account_id"), ("BillingAccountName", "billing_account_name"),
    ("BillingCurrencyCode", "currency"), ("BillingPeriodStartDate", "period_start_us"),
    ("BillingPeriodEndDate", "period_end_us"), ("BillingProfileId", "billing_account_id"),
    ("BillingProfileName", "billing_account_name"), ("InvoiceSectionId", "department_id"),
    ("IsAzureCreditEligible", "credit_eligible"), ("PartNumber", "part_number"), ("PayGPrice", "payg_price_t"),
    ("PlanName", "plan_name"), ("ServiceFamily", "service_family"), ("CostAllocationRuleName", ""),
    ("benefitId", "benefit_id"), ("benefitName", "benefit_name"), ("AccountId", "account_id"),
    ("ResourceLocationNormalized", "location_normalized"),
]
MCA_COLUMNS = [
    ("invoiceId", ""), ("previousInvoiceId", ""), ("billingAccountId", "mca_account_id"),
    ("billingAccountName", "billing_account_name"), ("billingProfileId", "mca_profile_id"),
    ("billingProfileName", "mca_profile_name"), ("invoiceSectionId", "department_id"),
    ("invoiceSectionName", "department"), ("resellerName", ""), ("resellerMpnId", ""), ("costCenter", "cost_center"),
    ("billingPeriodEndDate", "period_end_us"), ("billingPeriodStartDate", "period_start_us"),
    ("servicePeriodEndDate", "period_end_us"), ("servicePeriodStartDate", "period_start_us"), ("date", "date_us"),
    ("serviceFamily", "service_family"), ("productOrderId", "order_id"), ("productOrderName", "order_name"),
    ("consumedService", "consumed_service"), ("meterId", "meter_id"), ("meterName", "meter_name"),
    ("meterCategory", "meter_category"), ("meterSubCategory", "meter_subcategory"), ("meterRegion", "meter_region"),
    ("ProductId", "product_id"), ("ProductName", "product_name"), ("SubscriptionId", "subscription_id"),
    ("subscriptionName", "subscription_name"), ("publisherType", "publisher_type"), ("publisherId", "publisher_id"),
    ("publisherName", "publisher_name"), ("resourceGroupName", "resource_group"), ("ResourceId", "resource_id"),
    ("resourceLocation", "location"), ("location", "location_normalized"), ("effectivePrice", "effective_price_t"),
    ("quantity", "quantity_t"), ("unitOfMeasure", "uom"), ("chargeType", "charge_type"), ("billingCurrency", "currency"),
    ("pricingCurrency", "currency"), ("costInBillingCurrency", "cost_t"), ("costInPricingCurrency", "cost_t"),
    ("costInUsd", "cost_t"), ("paygCostInBillingCurrency", "payg_cost_t"), ("paygCostInUsd", "payg_cost_t"),
    ("exchangeRatePricingToBilling", "one"), ("exchangeRateDate", "period_start_us"),
    ("isAzureCreditEligible", "credit_eligible"), ("serviceInfo1", ""), ("serviceInfo2", ""),
    ("additionalInfo", "additional_info"), ("tags", "tags_json"), ("PayGPrice", "payg_price_t"),
    ("frequency", "frequency"), ("term", "term"), ("reservationId", "reservation_id"),
    ("reservationName", "reservation_name"), ("pricingModel", "pricing_model"), ("unitPrice", "unit_price_t"),
    ("costAllocationRuleName", ""), ("benefitId", "benefit_id"), ("benefitName", "benefit_name"),
    ("provider", "provider"),
]
SCHEMAS = {"ea": EA_COLUMNS, "mca": MCA_COLUMNS}


def _guid(expr: str) -> str:
    """A GUID-shaped text from an md5 of `expr` (stable per value)."""
    m = f"md5({expr})"
    return (f"substr({m}, 1, 8) || '-' || substr({m}, 9, 4) || '-' || substr({m}, 13, 4) || '-' || "
            f"substr({m}, 17, 4) || '-' || substr({m}, 21, 12)")


def _money(expr: str) -> str:
    """Money/quantity text as Azure writes it: shortest form, `5.64902E-05` for small values."""
    return f"upper(CAST(CAST({expr} AS DOUBLE) AS VARCHAR))"


def _kinds_case(schema: str) -> str:
    # EA cost details carry no refunds: those buckets stay on-demand usage
    kinds = [(k if k != "Refund" or schema == "mca" else "OnDemand", b) for k, b in KINDS]
    return "CASE " + " ".join(f"WHEN tb >= {b} THEN {lit(k)}" for k, b in reversed(kinds)) + " END"


def base_sql(lo: int, hi: int, seed: int, month: dt.date, schema: str) -> str:
    """Rows lo .. hi-1 with every field the two schemas project from."""
    days = (core.next_month(month) - month).days
    m = lambda col: pick([str(x[col]) for x in METERS], "mi")
    tag_cols, ea_parts, json_parts = [], [], []
    for k, (key, vals) in enumerate(TAG_VALUES.items()):
        # tags follow the resource; each key is missing on 20-50% of resources, some resources have none
        tag_cols.append(f"{core.resource_tag(vals, seed, k, 20 + 10 * k)} AS tag{k}")
        ea_parts.append(f"'\"{key}\": \"' || tag{k} || '\"'")
        json_parts.append(f"'\"{key}\":\"' || tag{k} || '\"'")
    loc = lambda col: pick([x[col] for x in LOCATIONS], "li")
    sub = lambda col: pick([x[col] for x in SUBSCRIPTIONS], "si")
    dep = lambda col: pick([x[col] for x in DEPARTMENTS], "di")
    mk = lambda col: pick([x[col] for x in MARKETPLACE], "ki")
    price = f"CAST({m(6)} AS DECIMAL(18, 6))"
    return f"""
WITH {core.row_hashes(lo, hi, seed)}, a AS (
  SELECT *, (h0 % 10000)::INT AS tb, (h2 % {days})::INT AS day_i, (h3 % {RESOURCES})::INT AS ri,
         ((h3 >> 20) % 1000000 + 1)::INT AS q, (h1 % {len(MARKETPLACE)})::INT AS ki
  FROM g
), b AS (
  SELECT *, {_kinds_case(schema)} AS kind,
         (hash(ri, {seed}, 10) % {len(SUBSCRIPTIONS)})::INT AS si, (hash(ri, {seed}, 11) % {len(LOCATIONS)})::INT AS li,
         (hash(ri, {seed}, 12) % {len(RESOURCE_GROUPS)})::INT AS gi
  FROM a
), c AS (
  SELECT *, si % {len(DEPARTMENTS)} AS di,
    CASE WHEN kind IN ('Reservation', 'Purchase', 'Refund') THEN {core.int_list(RESERVABLE)}[(h1 % {len(RESERVABLE)})::INT + 1]
         WHEN kind = 'SavingsPlan' THEN {core.int_list(SAVINGS_PLAN)}[(h1 % {len(SAVINGS_PLAN)})::INT + 1]
         WHEN kind = 'Spot' THEN 5
         ELSE (hash(ri, {seed}, 13) % {len(METERS)})::INT END AS mi
  FROM b
), d AS (
  SELECT *,
    {m(0)} AS meter_category, {m(1)} AS meter_subcategory, {m(2)} AS meter_name, {m(3)} AS consumed_service,
    {m(4)} AS service_family, {m(5)} AS uom0, {price} AS payg0, CAST({m(7)} AS DOUBLE) AS qmax,
    {m(8)} AS arm_type, {m(9)} AS name_prefix, {m(10)} AS vm_size,
    {loc(0)} AS location, {loc(1)} AS meter_region, {loc(2)} AS location_normalized,
    {sub(0)} AS subscription_id, {sub(1)} AS subscription_name, {dep(0)} AS department, {dep(1)} AS cost_center,
    {pick(RESOURCE_GROUPS, 'gi')} AS resource_group,
    {', '.join(tag_cols)},
    DATE '{month.isoformat()}' + day_i AS usage_date
  FROM c
), e AS (
  SELECT *,
    name_prefix || '-' || substr(lower(hex(hash(ri, {seed}, 9))), 1, 10) AS resource_name0,
    -- quantity: 6 decimals, up to what one resource uses in a day
    ROUND(CAST(qmax * q / 1000000 AS DECIMAL(18, 6)), 6) AS quantity0,
    ROUND(payg0 * 0.9, 8) AS unit_price0,
    ROUND(CAST((h2 >> 16) % 300000 AS DECIMAL(18, 2)) / 100 + 40, 2) AS purchase0,
    {_guid(f"'ri-' || si || '-' || li || '-' || mi || '-' || {seed}")} AS reservation_guid,
    {_guid(f"'order-' || si || '-' || li || '-' || mi || '-' || {seed}")} AS order_guid,
    {_guid(f"'sp-' || di || '-' || {seed}")} AS plan_guid,
    {_guid(f"'sporder-' || di || '-' || {seed}")} AS plan_order_guid,
    {_guid(f"'mkt-' || ki || '-' || si || '-' || {seed}")} AS saas_guid
  FROM d
)
SELECT *,
  CASE kind WHEN 'Marketplace' THEN 'Marketplace' ELSE 'Azure' END AS publisher_type,
  CASE kind WHEN 'Marketplace' THEN {mk(1)} WHEN 'Purchase' THEN '' ELSE 'Microsoft' END AS publisher_name,
  CASE kind WHEN 'Purchase' THEN 'Purchase' WHEN 'Refund' THEN 'Refund' ELSE 'Usage' END AS charge_type,
  CASE WHEN kind IN ('Purchase', 'Refund') THEN CASE WHEN h1 % 3 = 0 THEN 'OneTime' ELSE 'Recurring' END
       WHEN kind = 'Marketplace' THEN 'Recurring' ELSE 'UsageBased' END AS frequency,
  CASE WHEN kind IN ('Reservation', 'SavingsPlan', 'Spot') THEN kind
       WHEN kind = 'Purchase' THEN CASE WHEN h1 % 2 = 0 THEN 'Reservation' ELSE 'SavingsPlan' END
       ELSE 'OnDemand' END AS pricing_model,
  CASE WHEN kind = 'Marketplace' THEN {mk(0)}
       WHEN kind = 'Purchase' AND h1 % 2 = 0 THEN 'Reserved ' || meter_category || ', ' || meter_name || ', '
                                                   || meter_region || ', 1 Year'
       WHEN kind = 'Purchase' THEN 'Azure Savings Plan for Compute, 1 Year'
       WHEN kind = 'Refund' THEN 'Refund for ' || meter_category || ' ' || meter_name
       ELSE meter_category || ' ' || meter_subcategory || ' - ' || meter_name || ' - ' || meter_region END AS product_name,
  CASE kind WHEN 'Marketplace' THEN '1/Month' WHEN 'Purchase' THEN '1 Hour' ELSE uom0 END AS uom,
  CASE kind WHEN 'Marketplace' THEN ROUND(CAST(q AS DECIMAL(18, 6)) / 1000000 * 0.2, 6)
            WHEN 'Purchase' THEN 1 WHEN 'Refund' THEN 0 ELSE quantity0 END AS quantity,
  CASE kind WHEN 'Marketplace' THEN CAST({mk(3)} AS DECIMAL(18, 8)) WHEN 'Purchase' THEN purchase0
            WHEN 'Refund' THEN NULL WHEN 'Spot' THEN payg0 ELSE unit_price0 END AS unit_price,
  CASE WHEN kind IN ('Reservation', 'Marketplace', 'Purchase', 'Refund') THEN NULL ELSE payg0 END AS payg_price,
  CASE kind WHEN 'Reservation' THEN 0 WHEN 'SavingsPlan' THEN 0 WHEN 'Spot' THEN payg0
            WHEN 'Marketplace' THEN CAST({mk(3)} AS DECIMAL(18, 8)) WHEN 'Purchase' THEN purchase0
            WHEN 'Refund' THEN NULL ELSE unit_price0 END AS effective_price,
  CASE WHEN kind IN ('Purchase', 'Refund') THEN NULL
       ELSE '/subscriptions/' || subscription_id || '/resourceGroups/' || resource_group || '/providers/' || arm_type
            || '/' || resource_name0 END AS resource_id,
  CASE WHEN kind IN ('Purchase', 'Refund') THEN NULL ELSE resource_name0 END AS resource_name,
  CASE WHEN kind = 'Reservation' OR (kind IN ('Purchase', 'Refund') AND h1 % 2 = 0)
       THEN '/providers/Microsoft.Capacity/reservationOrders/' || order_guid || '/reservations/' || reservation_guid
       WHEN kind = 'SavingsPlan' OR kind IN ('Purchase', 'Refund')
       THEN '/providers/Microsoft.BillingBenefits/savingsPlanOrders/' || plan_order_guid || '/savingsPlans/'
            || plan_guid END AS benefit_id,
  CASE WHEN kind = 'Reservation' OR (kind IN ('Purchase', 'Refund') AND h1 % 2 = 0)
       THEN 'RI_' || replace(meter_name, ' ', '') || '_' || location
       WHEN kind = 'SavingsPlan' OR kind IN ('Purchase', 'Refund') THEN 'SP_Compute_' || replace(department, ' ', '') END
    AS benefit_name,
  CASE WHEN kind NOT IN ('Marketplace', 'Purchase', 'Refund') THEN NULLIF(concat_ws(',', {', '.join(ea_parts)}), '')
       END AS tags_ea0,
  CASE WHEN kind NOT IN ('Marketplace', 'Purchase', 'Refund') THEN NULLIF(concat_ws(',', {', '.join(json_parts)}), '')
       END AS tags_json0
FROM e
"""


def fields(month: dt.date) -> dict[str, str]:
    """Internal field -> text expression, as the CSV holds it."""
    end = core.next_month(month) - dt.timedelta(days=1)
    us = lambda d: lit(f"{d.month:02d}/{d.day:02d}/{d.year}")
    is_ri = "(kind = 'Reservation' OR (kind IN ('Purchase', 'Refund') AND h1 % 2 = 0))"
    cost = ("CASE kind WHEN 'Refund' THEN -ROUND(CAST((h2 >> 12) % 5000000 AS DECIMAL(18, 8)) / 100000, 8) "
            "WHEN 'Purchase' THEN purchase0 ELSE ROUND(quantity * effective_price, 8) END")
    return {
        "department": "department", "department_id": "'/providers/Microsoft.Billing/departments/' || (di + 101)",
        "account_name": "lower(replace(department, ' ', '-')) || '@contoso.com'",
        "account_owner": "lower(replace(department, ' ', '-')) || '@contoso.com'",
        "account_id": "(di + 7100101)::VARCHAR", "subscription_id": "subscription_id",
        "subscription_name": "subscription_name", "resource_group": "CASE WHEN resource_id IS NOT NULL THEN resource_group END",
        "location": "location", "location_normalized": "location_normalized", "meter_region": "meter_region",
        "date_us": "strftime(usage_date, '%m/%d/%Y')", "period_start_us": us(month), "period_end_us": us(end),
        "product_name": "product_name", "product_id": "'DZH318Z0' || lpad((mi * 7 + 11)::VARCHAR, 4, '0')",
        "meter_category": "CASE WHEN kind = 'Marketplace' THEN 'SaaS' ELSE meter_category END",
        "meter_subcategory": "CASE WHEN kind IN ('Marketplace', 'Purchase', 'Refund') THEN NULL ELSE meter_subcategory END",
        "meter_name": "CASE WHEN kind IN ('Marketplace', 'Purchase', 'Refund') THEN NULL ELSE meter_name END",
        "meter_id": f"CASE WHEN kind IN ('Marketplace', 'Purchase', 'Refund') THEN NULL ELSE {_guid('meter_name || meter_region')} END",
        "uom": "uom", "quantity_t": _money("quantity"), "effective_price_t": _money("effective_price"),
        "unit_price_t": _money("unit_price"), "payg_price_t": _money("payg_price"), "cost_t": _money(cost),
        "payg_cost_t": _money("CASE WHEN kind IN ('Reservation', 'SavingsPlan') THEN ROUND(quantity * payg0, 8) "
                              f"WHEN kind IN ('Purchase', 'Refund') THEN NULL ELSE {cost} END"),
        "one": "'1'", "currency": "'USD'", "cost_center": "cost_center",
        "consumed_service": "CASE WHEN kind = 'Marketplace' THEN 'Microsoft.SaaS' "
                            "WHEN kind IN ('Purchase', 'Refund') THEN NULL ELSE consumed_service END",
        "service_family": "CASE WHEN kind = 'Marketplace' THEN 'Compute' ELSE service_family END",
        "resource_id": "resource_id", "resource_name": "resource_name",
        "tags_ea": "tags_ea0", "tags_json": "CASE WHEN tags_json0 IS NOT NULL THEN '{' || tags_json0 || '}' END",
        "offer_id": "'MS-AZR-0017P'",
        "additional_info": ("CASE WHEN vm_size <> '' AND kind NOT IN ('Purchase', 'Refund', 'Marketplace') THEN "
                            "'{\"UsageType\":\"ComputeHR\",\"ImageType\":null,\"ServiceType\":\"' || vm_size || "
                            "'\",\"VMName\":null,\"VCPUs\":' || (2 + (mi % 3) * 2) || '}' END"),
        "reservation_id": f"CASE WHEN {is_ri} THEN reservation_guid END",
        "reservation_name": f"CASE WHEN {is_ri} THEN benefit_name END",
        "order_id": f"CASE WHEN {is_ri} THEN order_guid WHEN kind = 'Marketplace' THEN saas_guid END",
        "order_name": f"CASE WHEN {is_ri} THEN 'Reserved ' || meter_category || ', ' || meter_name || ', 1 Year' "
                      "WHEN kind = 'Marketplace' THEN " + pick([x[2] for x in MARKETPLACE], "ki") + " END",
        "term": "CASE WHEN kind IN ('Reservation', 'SavingsPlan', 'Purchase', 'Refund') THEN '12' END",
        "publisher_type": "publisher_type", "publisher_name": "NULLIF(publisher_name, '')",
        "publisher_id": "CASE WHEN kind = 'Marketplace' THEN lower(replace(publisher_name, ' ', '')) END",
        "charge_type": "charge_type", "frequency": "frequency", "pricing_model": "pricing_model",
        "zone": "CASE WHEN vm_size <> '' AND kind NOT IN ('Purchase', 'Refund', 'Marketplace') AND ri % 4 > 0 "
                "THEN (ri % 4)::VARCHAR END",
        "billing_account_id": lit(ENROLLMENT), "billing_account_name": lit(ENROLLMENT_NAME),
        "mca_account_id": lit(f"{_uuid('mca-account')}:{_uuid('mca-tenant')}_2019-05-31"),
        "mca_profile_id": "'Q6HJ-LMTV-BG7-PGB'", "mca_profile_name": "'Contoso Ltd Main'",
        "credit_eligible": "CASE WHEN kind = 'Marketplace' THEN 'False' ELSE 'True' END",
        "part_number": "CASE WHEN kind IN ('Purchase', 'Refund') THEN NULL ELSE 'AAH-' || lpad((mi * 97 + 13)::VARCHAR, 5, '0') END",
        "plan_name": "CASE WHEN kind = 'Marketplace' THEN " + pick([x[2] for x in MARKETPLACE], "ki") + " END",
        "benefit_id": "benefit_id", "benefit_name": "benefit_name", "provider": "'Azure'",
    }


def query(lo: int, hi: int, seed: int, month: dt.date, schema: str) -> str:
    exprs = fields(month)
    cols = [f"CAST({exprs[f] if f else 'NULL'} AS VARCHAR) AS \"{name}\"" for name, f in SCHEMAS[schema]]
    return "SELECT\n  " + ",\n  ".join(cols) + f"\nFROM ({base_sql(lo, hi, seed, month, schema)})"


def manifest(export: str, month: dt.date, run_id: str, blobs: list[str], fmt: str, submitted: str) -> dict:
    """The export run's manifest.json, as the 2023-07-01-preview exports API writes it."""
    end = core.next_month(month) - dt.timedelta(days=1)
    return {
        "manifestVersion": "2024-04-01", "byteCount": 0, "blobCount": len(blobs), "dataRowCount": 0,
        "exportConfig": {"exportName": export, "resourceId": f"/providers/Microsoft.Billing/billingAccounts/"
                         f"{ENROLLMENT}/providers/Microsoft.CostManagement/exports/{export}",
                         "dataVersion": "2024-08-01", "apiVersion": "2023-07-01-preview", "type": "ActualCost",
                         "timeFrame": "MonthToDate", "granularity": "Daily"},
        "deliveryConfig": {"partitionData": True, "dataOverwriteBehavior": "OverwritePreviousReport",
                           "fileFormat": "Csv", "compressionMode": "gzip" if fmt == "csv.gz" else "None",
                           "containerUri": f"/subscriptions/{SUBSCRIPTIONS[0][0]}/resourceGroups/rg-shared/providers/"
                                           "Microsoft.Storage/storageAccounts/contosobilling",
                           "rootFolderPath": "exports"},
        "runInfo": {"executionType": "Scheduled", "submittedTime": submitted, "runId": run_id,
                    "startDate": f"{month.isoformat()}T00:00:00", "endDate": f"{end.isoformat()}T00:00:00"},
        "blobs": [{"blobName": b, "byteCount": 0, "dataRowCount": 0} for b in blobs],
    }


def generate(rows: int, out: str | Path, seed: int = 1, month: dt.date = dt.date(2024, 3, 1), schema: str = "ea",
             fmt: str = "csv.gz", parts: int = 1, threads: int | None = None) -> list[Path]:
    """Write the export run (parts + manifest.json) under `out`; returns the part files."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, not {schema!r}")
    if fmt not in ("csv", "csv.gz"):
        raise ValueError(f"format must be csv or csv.gz, not {fmt!r}")
    out = Path(out)
    export = f"contoso-{schema}-actual"
    end = core.next_month(month) - dt.timedelta(days=1)
    run_id = _uuid(f"run-{schema}-{seed}-{month}")
    submitted = dt.datetime.combine(end, dt.time(4, 12)) + dt.timedelta(days=1)
    rel = f"exports/{export}/{month:%Y%m%d}-{end:%Y%m%d}/{submitted:%Y%m%d%H%M}/{run_id}"
    names = [f"{rel}/part_0_{k + 1:04d}.{fmt}" for k in range(max(parts, 1))]
    files = core.copy_rows(lambda lo, hi: query(lo, hi, seed, month, schema), rows, [out / n for n in names],
                           fmt, threads)
    doc = manifest(export, month, run_id, names, fmt, submitted.isoformat() + "Z")
    (out / rel / "manifest.json").write_text(json.dumps(doc, indent=2))
    return files


def main(argv: list[str] | None = None) -> int:
    return core.run_main("python -m tools.azure_export_generator", __doc__, argv,
                         lambda a, month: generate(a.rows, a.out, a.seed, month, a.schema, a.format, a.parts),
                         [(("--schema",), {"choices": tuple(SCHEMAS), "default": "ea"}),
                          (("--format",), {"choices": ("csv", "csv.gz"), "default": "csv.gz"}),
                          (("--parts",), {"type": int, "default": 1, "help": "files the run is split into"})])


if __name__ == "__main__":
    raise SystemExit(main())
