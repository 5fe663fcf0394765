"""A synthetic, provider-shaped AWS Cost and Usage Report, for benchmarks and scale tests.

    python -m tools.cur_generator --rows N --format csv|csv.gz|parquet --out PATH [--seed S] [--month 2024-03]

* `csv` / `csv.gz`: a legacy CUR (`lineItem/UnblendedCost` headers, ~105 columns incl. `resourceTags/user:*`),
  every value written as text the way AWS writes it (`2024-03-01T00:00:00.000Z`, costs with 10 decimals).
  About 500 bytes per row, like real exports.
* `parquet`: a CUR 2.0 / Data Exports file (snake_case, typed: timestamps, doubles, and the `product`,
  `resource_tags`, `cost_category` and `discount` map columns; `product_name` only inside `product`).

All line-item types appear: Usage (about 76%), DiscountedUsage + RIFee + Fee (Reserved Instances),
SavingsPlanCoveredUsage + SavingsPlanNegation + SavingsPlanRecurringFee, Credit, Refund, EdpDiscount and
Tax, over 20 linked accounts (some with a leading zero), 8 regions, 40 services and usage types, and a pool
of resources. Every row lies in one billing month (`--month`).

The rows are computed by DuckDB from the row number alone (hash of row number and seed), and streamed
by `COPY ... TO`: deterministic for a seed, vectorised, and bounded in memory whatever the row count.
Costs have at most 8 decimals, so sums are exact in any decimal type.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from tools import generator_core as core
from tools.generator_core import lit, pick

PAYER = "123456789012"
ACCOUNTS = [f"{(i * 7919 + 1) % 1000:03d}{i:09d}" for i in range(1, 21)]  # 12 digits; "008..." keeps a zero
REGIONS = [  # code, location, usage-type prefix
    ("us-east-1", "US East (N. Virginia)", "USE1"), ("us-east-2", "US East (Ohio)", "USE2"),
    ("us-west-2", "US West (Oregon)", "USW2"), ("eu-west-1", "EU (Ireland)", "EU"),
    ("eu-central-1", "EU (Frankfurt)", "EUC1"), ("ap-southeast-1", "Asia Pacific (Singapore)", "APS1"),
    ("ap-northeast-1", "Asia Pacific (Tokyo)", "APN1"), ("ca-central-1", "Canada (Central)", "CAN1"),
]
# product code, product name, family, usage type (after region prefix), operation, pricing unit, rate USD,
# resource kind (arn template; {r} region, {a} account, {x} id), instance type
PROFILES = [
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Compute Instance", "BoxUsage:m5.large", "RunInstances", "Hrs", "0.096", "i-0{x}", "m5.large"),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Compute Instance", "BoxUsage:c6i.xlarge", "RunInstances", "Hrs", "0.17", "i-0{x}", "c6i.xlarge"),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Compute Instance", "BoxUsage:t3.medium", "RunInstances", "Hrs", "0.0416", "i-0{x}", "t3.medium"),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Compute Instance", "BoxUsage:r6g.2xlarge", "RunInstances", "Hrs", "0.4032", "i-0{x}", "r6g.2xlarge"),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Compute Instance", "SpotUsage:m5.xlarge", "RunInstances:SV001", "Hrs", "0.0712", "i-0{x}", "m5.xlarge"),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Storage", "EBS:VolumeUsage.gp3", "CreateVolume-Gp3", "GB-Mo", "0.08", "vol-0{x}", ""),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "Storage Snapshot", "EBS:SnapshotUsage", "CreateSnapshot", "GB-Mo", "0.05", "arn:aws:ec2:{r}::snapshot/snap-0{x}", ""),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "NAT Gateway", "NatGateway-Hours", "NatGateway", "Hrs", "0.045", "arn:aws:ec2:{r}:{a}:natgateway/nat-0{x}", ""),
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "IP Address", "PublicIPv4:InUseAddress", "AssociateAddressVPC", "Hrs", "0.005", "eipalloc-0{x}", ""),
    ("AmazonS3", "Amazon Simple Storage Service", "Storage", "TimedStorage-ByteHrs", "StandardStorage", "GB-Mo", "0.023", "bucket-{x}", ""),
    ("AmazonS3", "Amazon Simple Storage Service", "API Request", "Requests-Tier1", "PutObject", "Requests", "0.000005", "bucket-{x}", ""),
    ("AmazonS3", "Amazon Simple Storage Service", "API Request", "Requests-Tier2", "GetObject", "Requests", "0.0000004", "bucket-{x}", ""),
    ("AmazonS3", "Amazon Simple Storage Service", "Storage", "TimedStorage-INT-FA-ByteHrs", "IntelligentTieringFAStorage", "GB-Mo", "0.023", "bucket-{x}", ""),
    ("AmazonRDS", "Amazon Relational Database Service", "Database Instance", "InstanceUsage:db.r6g.large", "CreateDBInstance:0016", "Hrs", "0.225", "arn:aws:rds:{r}:{a}:db:db-{x}", "db.r6g.large"),
    ("AmazonRDS", "Amazon Relational Database Service", "Database Storage", "RDS:GP3-Storage", "CreateDBInstance:0016", "GB-Mo", "0.115", "arn:aws:rds:{r}:{a}:db:db-{x}", ""),
    ("AmazonRDS", "Amazon Relational Database Service", "Storage Snapshot", "RDS:ChargedBackupUsage", "CreateDBInstance:0016", "GB-Mo", "0.095", "arn:aws:rds:{r}:{a}:db:db-{x}", ""),
    ("AWSLambda", "AWS Lambda", "Serverless", "Lambda-GB-Second", "Invoke", "Lambda-GB-Second", "0.0000166667", "arn:aws:lambda:{r}:{a}:function:fn-{x}", ""),
    ("AWSLambda", "AWS Lambda", "Serverless", "Request", "Invoke", "Requests", "0.0000002", "arn:aws:lambda:{r}:{a}:function:fn-{x}", ""),
    ("AmazonDynamoDB", "Amazon DynamoDB", "Amazon DynamoDB PayPerRequest Throughput", "WriteRequestUnits", "PayPerRequestThroughput", "WriteRequestUnits", "0.00000125", "arn:aws:dynamodb:{r}:{a}:table/t-{x}", ""),
    ("AmazonDynamoDB", "Amazon DynamoDB", "Database Storage", "TimedStorage-ByteHrs", "StandardStorage", "GB-Mo", "0.25", "arn:aws:dynamodb:{r}:{a}:table/t-{x}", ""),
    ("AmazonCloudWatch", "AmazonCloudWatch", "Metric", "CW:MetricMonitorUsage", "MetricStorage", "Metrics", "0.3", "", ""),
    ("AmazonCloudWatch", "AmazonCloudWatch", "Data Payload", "DataProcessing-Bytes", "PutLogEvents", "GB", "0.5", "arn:aws:logs:{r}:{a}:log-group:/app/{x}", ""),
    ("AWSDataTransfer", "AWS Data Transfer", "Data Transfer", "DataTransfer-Out-Bytes", "", "GB", "0.09", "", ""),
    ("AWSDataTransfer", "AWS Data Transfer", "Data Transfer", "DataTransfer-Regional-Bytes", "InterZone-In", "GB", "0.01", "", ""),
    ("AmazonEKS", "Amazon Elastic Container Service for Kubernetes", "Compute", "AmazonEKS-Hours:perCluster", "CreateOperation", "Hours", "0.1", "arn:aws:eks:{r}:{a}:cluster/eks-{x}", ""),
    ("AmazonECS", "Amazon Elastic Container Service", "Compute", "Fargate-vCPU-Hours:perCPU", "FargateTask", "hours", "0.04048", "arn:aws:ecs:{r}:{a}:task/{x}", ""),
    ("AmazonECS", "Amazon Elastic Container Service", "Compute", "Fargate-GB-Hours", "FargateTask", "hours", "0.004445", "arn:aws:ecs:{r}:{a}:task/{x}", ""),
    ("ElasticMapReduce", "Amazon Elastic MapReduce", "Elastic Map Reduce Instance", "BoxUsage:m5.xlarge", "RunInstances", "Hrs", "0.048", "arn:aws:elasticmapreduce:{r}:{a}:cluster/j-{x}", "m5.xlarge"),
    ("AmazonElastiCache", "Amazon ElastiCache", "Cache Instance", "NodeUsage:cache.r6g.large", "CreateCacheCluster:0012", "Hrs", "0.206", "arn:aws:elasticache:{r}:{a}:cluster:c-{x}", "cache.r6g.large"),
    ("AmazonRedshift", "Amazon Redshift", "Compute Instance", "Node:ra3.xlplus", "RunComputeNode:0001", "Hrs", "1.086", "arn:aws:redshift:{r}:{a}:cluster:rs-{x}", "ra3.xlplus"),
    ("AmazonSageMaker", "Amazon SageMaker", "ML Instance", "Notebk:ml.t3.medium", "RunInstance", "Hrs", "0.05", "arn:aws:sagemaker:{r}:{a}:notebook-instance/nb-{x}", "ml.t3.medium"),
    ("AmazonRoute53", "Amazon Route 53", "DNS Zone", "HostedZone", "", "HostedZone", "0.5", "arn:aws:route53:::hostedzone/Z{x}", ""),
    ("AmazonVPC", "Amazon Virtual Private Cloud", "VpcEndpoint", "VpcEndpoint-Hours", "VpcEndpoint", "Hrs", "0.01", "arn:aws:ec2:{r}:{a}:vpc-endpoint/vpce-{x}", ""),
    ("AWSELB", "Elastic Load Balancing", "Load Balancer-Application", "LoadBalancerUsage", "LoadBalancing:Application", "Hrs", "0.0225", "arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/lb-{x}", ""),
    ("AWSELB", "Elastic Load Balancing", "Load Balancer-Application", "LCUUsage", "LoadBalancing:Application", "LCU-Hrs", "0.008", "arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/lb-{x}", ""),
    ("AmazonCloudFront", "Amazon CloudFront", "Data Transfer", "DataTransfer-Out-Bytes", "GET", "GB", "0.085", "arn:aws:cloudfront::{a}:distribution/E{x}", ""),
    ("AWSKMS", "AWS Key Management Service", "Encryption Key", "KMS-Keys", "CreateKey", "Keys", "1", "arn:aws:kms:{r}:{a}:key/{x}", ""),
    ("AWSSecretsManager", "AWS Secrets Manager", "Secret", "AWSSecretsManager-Secrets", "StorageSecret", "Secrets", "0.4", "arn:aws:secretsmanager:{r}:{a}:secret:s-{x}", ""),
    ("AmazonSNS", "Amazon Simple Notification Service", "API Request", "Requests-Tier1", "", "Requests", "0.0000005", "arn:aws:sns:{r}:{a}:topic-{x}", ""),
    ("AWSGlue", "AWS Glue", "AWS Glue", "Crawler-DPU-Hour", "CrawlerRun", "DPU-Hour", "0.44", "arn:aws:glue:{r}:{a}:crawler/cr-{x}", ""),
]
RI_PROFILES = [0, 1, 13, 28, 29]  # EC2/RDS/ElastiCache/Redshift: what reservations cover
SP_PROFILES = [0, 1, 2, 3, 25, 26, 16]  # EC2, Fargate, Lambda: what Savings Plans cover
TAG_VALUES = {
    "Environment": ["production", "staging", "development", "sandbox"],
    "Team": ["platform", "data", "payments", "search", "mobile", "ml", "security"],
    "CostCenter": ["CC-1001", "CC-1002", "CC-2040", "CC-3300", "CC-4100"],
    "Project": ["atlas", "hermes", "orion", "zephyr", "nova", "apollo", "titan", "vega"],
}
# (type, first bucket of 10,000); the bucket of a row is hash % 10,000
LINE_TYPES = [
    ("Usage", 0), ("DiscountedUsage", 7600), ("SavingsPlanCoveredUsage", 8100), ("SavingsPlanNegation", 8800),
    ("SavingsPlanRecurringFee", 9100), ("RIFee", 9150), ("Fee", 9200), ("Credit", 9220), ("Refund", 9320),
    ("EdpDiscount", 9340), ("Tax", 9540),
]
RESOURCES = 50_000


def base_sql(rows: int, seed: int, month: dt.date, lo: int = 0) -> str:
    """Line items lo .. rows-1 with typed internal fields; the output formats project from it."""
    nxt = core.next_month(month)
    hours = (nxt - month).days * 24
    ltype = "CASE " + " ".join(f"WHEN tb >= {b} THEN {lit(t)}" for t, b in reversed(LINE_TYPES)) + " END"
    p = lambda col: pick([pr[col] for pr in PROFILES], "pi")
    ri_idx = core.int_list(RI_PROFILES)
    sp_idx = core.int_list(SP_PROFILES)
    resource_templates = [pr[7] for pr in PROFILES]
    tag_cases = []
    for k, (key, vals) in enumerate(TAG_VALUES.items()):
        # tags follow the resource (same resource -> same tags); ~15-40% of rows lack a given tag
        tag = core.resource_tag(vals, seed, k, 15 + 5 * k)
        tag_cases.append(f"CASE WHEN pr_res <> '' THEN {tag} END AS tag_{key.lower()}")
    return f"""
WITH {core.row_hashes(lo, rows, seed)}, a AS (
  SELECT i, h0, h1, h2, h3, (h0 % 10000)::INT AS tb, ((h2 >> 24) % {len(ACCOUNTS)})::INT AS ai,
         ((h1 >> 32) % {len(REGIONS)})::INT AS gi, (h2 % {hours})::INT AS hi, (h3 % {RESOURCES})::INT AS ri,
         ((h3 >> 20) % 2000000)::INT AS q
  FROM g
), b AS (
  SELECT *, {ltype} AS line_type FROM a
), c AS (
  SELECT *,
    CASE WHEN line_type IN ('DiscountedUsage', 'RIFee', 'Fee') THEN {ri_idx}[(h1 % {len(RI_PROFILES)})::INT + 1]
         WHEN line_type LIKE 'SavingsPlan%' AND line_type <> 'SavingsPlanRecurringFee'
           THEN {sp_idx}[(h1 % {len(SP_PROFILES)})::INT + 1]
         ELSE (h1 % {len(PROFILES)})::INT END AS pi
  FROM b
), d AS (
  SELECT *,
    {p(0)} AS product_code, {p(1)} AS product_name, {p(2)} AS product_family, {p(3)} AS usage_base,
    {p(4)} AS operation0, {p(5)} AS unit0, CAST({p(6)} AS DECIMAL(18, 10)) AS rate0,
    {pick(resource_templates, 'pi')} AS pr_res, {p(8)} AS instance_type,
    {pick([r[0] for r in REGIONS], 'gi')} AS region_code, {pick([r[1] for r in REGIONS], 'gi')} AS location,
    {pick([r[2] for r in REGIONS], 'gi')} AS region_prefix,
    {pick(ACCOUNTS, 'ai')} AS account_id,
    TIMESTAMP '{month.isoformat()} 00:00:00' + to_hours(hi) AS hour_start
  FROM c
), e AS (
  SELECT *,
    -- usage amount: 6 decimals, spread over 0.000001 .. 2 (hours) or larger for requests/bytes
    CAST(q AS DECIMAL(18, 6)) / 1000000 * CASE WHEN unit0 IN ('Requests', 'WriteRequestUnits', 'Lambda-GB-Second')
                                                 THEN 10000 ELSE 1 END AS amount,
    CASE WHEN pr_res = '' THEN NULL
         ELSE replace(replace(replace(pr_res, '{{r}}', region_code), '{{a}}', account_id), '{{x}}',
                      lower(hex(hash(ri, {seed}, 9)))) END AS resource_id,
    {', '.join(tag_cases)}
  FROM d
)
SELECT *,
  CASE line_type
    WHEN 'Tax' THEN ROUND(CAST((h3 % 500000) AS DECIMAL(18, 8)) / 100000000 * 100, 8)
    WHEN 'Credit' THEN -ROUND(CAST((h3 % 900000) AS DECIMAL(18, 8)) / 1000000, 8)
    WHEN 'Refund' THEN -ROUND(CAST((h3 % 300000) AS DECIMAL(18, 8)) / 100000, 8)
    WHEN 'EdpDiscount' THEN -ROUND(amount * rate0 * 0.05, 8)
    WHEN 'SavingsPlanNegation' THEN -ROUND(amount * rate0, 8)
    WHEN 'DiscountedUsage' THEN 0
    WHEN 'Fee' THEN ROUND(rate0 * 24, 8)
    ELSE ROUND(amount * rate0, 8)
  END::DECIMAL(18, 10) AS cost,
  CASE WHEN line_type IN ('Usage', 'DiscountedUsage', 'SavingsPlanCoveredUsage', 'SavingsPlanNegation', 'RIFee')
       THEN ROUND(amount * rate0, 8) END::DECIMAL(18, 10) AS od_cost,
  CASE WHEN line_type = 'SavingsPlanCoveredUsage' THEN ROUND(amount * rate0 * 0.72, 8)
       WHEN line_type = 'SavingsPlanRecurringFee' THEN ROUND(amount * 0.9, 8) END::DECIMAL(18, 10) AS sp_effective,
  CASE WHEN line_type = 'DiscountedUsage' THEN ROUND(amount * rate0 * 0.62, 8) END::DECIMAL(18, 10) AS ri_effective,
  CASE WHEN line_type IN ('Tax', 'Credit', 'Refund') THEN TIMESTAMP '{month.isoformat()} 00:00:00'
       ELSE hour_start END AS start_ts,
  CASE WHEN line_type IN ('Tax', 'Credit', 'Refund') THEN TIMESTAMP '{nxt.isoformat()} 00:00:00'
       ELSE hour_start + INTERVAL 1 HOUR END AS end_ts,
  lower(hex(h0)) || lower(hex(h3)) AS line_item_id,
  region_prefix || '-' || usage_base AS usage_type
FROM e
"""


def _common(month: dt.date) -> dict[str, str]:
    """Typed expressions shared by both formats, keyed by CUR 2.0 name (the CSV maps names to legacy)."""
    nxt = core.next_month(month)
    arn_sp = f"'arn:aws:savingsplans::{PAYER}:savingsplan/' || lower(hex(hash(ai, 77)))"
    arn_ri = "'arn:aws:ec2:' || region_code || ':' || account_id || ':reserved-instances/' || lower(hex(hash(ai, gi, 78)))"
    is_sp = "line_type LIKE 'SavingsPlan%'"
    is_ri = "line_type IN ('DiscountedUsage', 'RIFee', 'Fee')"
    no_price = "line_type IN ('Tax', 'Credit', 'Refund', 'EdpDiscount')"
    return {
        "identity_line_item_id": "line_item_id",
        "identity_time_interval": "strftime(start_ts, '%Y-%m-%dT%H:%M:%SZ') || '/' || strftime(end_ts, '%Y-%m-%dT%H:%M:%SZ')",
        "bill_invoicing_entity": "'Amazon Web Services, Inc.'",
        "bill_billing_entity": "CASE WHEN tb % 997 = 0 AND line_type = 'Usage' THEN 'AWS Marketplace' ELSE 'AWS' END",
        "bill_bill_type": "'Anniversary'",
        "bill_payer_account_id": f"'{PAYER}'",
        "bill_billing_period_start_date": f"TIMESTAMP '{month.isoformat()} 00:00:00'",
        "bill_billing_period_end_date": f"TIMESTAMP '{nxt.isoformat()} 00:00:00'",
        "line_item_usage_account_id": "account_id",
        "line_item_line_item_type": "line_type",
        "line_item_usage_start_date": "start_ts",
        "line_item_usage_end_date": "end_ts",
        "line_item_product_code": "product_code",
        "line_item_usage_type": f"CASE WHEN line_type = 'Tax' THEN NULL WHEN {is_sp} AND line_type <> "
                                "'SavingsPlanCoveredUsage' AND line_type <> 'SavingsPlanNegation' "
                                "THEN 'ComputeSP:1yrNoUpfront' ELSE usage_type END",
        "line_item_operation": f"CASE WHEN {no_price} THEN NULL ELSE NULLIF(operation0, '') END",
        "line_item_availability_zone": "CASE WHEN product_family LIKE '%Instance%' THEN region_code || chr(97 + (h2 % 3)::INT) END",
        "line_item_resource_id": f"CASE WHEN {no_price} THEN NULL ELSE resource_id END",
        "line_item_usage_amount": f"CASE WHEN {no_price} THEN NULL WHEN line_type IN ('RIFee', 'SavingsPlanRecurringFee', 'Fee') THEN 1 ELSE amount END",
        "line_item_normalization_factor": "CASE WHEN instance_type <> '' THEN 4 END",
        "line_item_normalized_usage_amount": "CASE WHEN instance_type <> '' THEN amount * 4 END",
        "line_item_currency_code": "'USD'",
        "line_item_unblended_rate": f"CASE WHEN {no_price} THEN NULL WHEN line_type = 'DiscountedUsage' THEN 0 ELSE rate0 END",
        "line_item_unblended_cost": "cost",
        "line_item_line_item_description": (
            "CASE line_type WHEN 'Tax' THEN 'Tax for product code ' || product_code "
            "WHEN 'Credit' THEN 'AWS Promotional Credit' WHEN 'Refund' THEN 'Refund for ' || product_name "
            "WHEN 'EdpDiscount' THEN 'Enterprise Discount Program discount' "
            "WHEN 'SavingsPlanRecurringFee' THEN '1 year No Upfront Compute Savings Plan' "
            "ELSE '$' || rate0::DOUBLE::VARCHAR || ' per ' || usage_base END"),
        "line_item_tax_type": "CASE WHEN line_type = 'Tax' THEN 'Sales Tax' END",
        "line_item_legal_entity": "CASE WHEN tb % 997 = 0 AND line_type = 'Usage' THEN 'Acme Seller LLC' ELSE 'Amazon Web Services, Inc.' END",
        "product_product_family": f"CASE WHEN {no_price} THEN NULL ELSE product_family END",
        "product_location": f"CASE WHEN {no_price} THEN NULL ELSE location END",
        "product_location_type": f"CASE WHEN {no_price} THEN NULL ELSE 'AWS Region' END",
        "product_region_code": f"CASE WHEN {no_price} THEN NULL ELSE region_code END",
        "product_servicecode": "product_code",
        "product_sku": f"CASE WHEN {no_price} THEN NULL ELSE upper(substr(hex(hash(pi, gi, 5)), 1, 16)) END",
        "product_instance_type": "NULLIF(instance_type, '')",
        "product_instance_family": "NULLIF(split_part(instance_type, '.', 1), '')",
        "pricing_rate_code": f"CASE WHEN {no_price} THEN NULL ELSE upper(substr(hex(hash(pi, gi, 5)), 1, 16)) || '.JRTCKXETXF.6YS6EN2CT7' END",
        "pricing_rate_id": f"CASE WHEN {no_price} THEN NULL ELSE (hash(pi, gi, 6) % 100000000)::VARCHAR END",
        "pricing_currency": f"CASE WHEN {no_price} THEN NULL ELSE 'USD' END",
        "pricing_public_on_demand_cost": "od_cost",
        "pricing_public_on_demand_rate": "CASE WHEN od_cost IS NOT NULL THEN rate0 END",
        "pricing_term": f"CASE WHEN {no_price} THEN NULL WHEN {is_ri} THEN 'Reserved' "
                        "WHEN usage_base LIKE 'Spot%' THEN 'Spot' ELSE 'OnDemand' END",
        "pricing_unit": f"CASE WHEN {no_price} THEN NULL ELSE unit0 END",
        "reservation_amortized_upfront_cost_for_usage": "CASE WHEN line_type = 'DiscountedUsage' THEN ROUND(ri_effective * 0.4, 8) END",
        "reservation_amortized_upfront_fee_for_billing_period": "CASE WHEN line_type = 'RIFee' THEN ROUND(cost * 0.4, 8) END",
        "reservation_effective_cost": "ri_effective",
        "reservation_end_time": f"CASE WHEN {is_ri} THEN '2026-01-01T00:00:00.000Z' END",
        "reservation_modification_status": "CASE WHEN line_type = 'RIFee' THEN 'Original' END",
        "reservation_number_of_reservations": "CASE WHEN line_type = 'RIFee' THEN '2' END",
        "reservation_recurring_fee_for_usage": "CASE WHEN line_type = 'DiscountedUsage' THEN ROUND(ri_effective * 0.6, 8) END",
        "reservation_reservation_a_r_n": f"CASE WHEN {is_ri} THEN {arn_ri} END",
        "reservation_start_time": f"CASE WHEN {is_ri} THEN '2023-01-01T00:00:00.000Z' END",
        "reservation_subscription_id": f"CASE WHEN {is_ri} THEN (hash(ai, gi, 79) % 10000000000)::VARCHAR END",
        "reservation_total_reserved_units": "CASE WHEN line_type = 'RIFee' THEN 1460 END",
        "reservation_units_per_reservation": "CASE WHEN line_type = 'RIFee' THEN 730 END",
        "reservation_unused_amortized_upfront_fee_for_billing_period": "CASE WHEN line_type = 'RIFee' THEN ROUND(cost * 0.03, 8) END",
        "reservation_unused_quantity": "CASE WHEN line_type = 'RIFee' THEN ROUND(amount * 0.05, 6) END",
        "reservation_unused_recurring_fee": "CASE WHEN line_type = 'RIFee' THEN ROUND(cost * 0.05, 8) END",
        "reservation_upfront_value": "CASE WHEN line_type = 'RIFee' THEN 1200 END",
        "savings_plan_total_commitment_to_date": "CASE WHEN line_type = 'SavingsPlanRecurringFee' THEN cost END",
        "savings_plan_savings_plan_a_r_n": f"CASE WHEN {is_sp} THEN {arn_sp} END",
        "savings_plan_savings_plan_rate": "CASE WHEN line_type = 'SavingsPlanCoveredUsage' THEN ROUND(rate0 * 0.72, 8) END",
        "savings_plan_used_commitment": "sp_effective",
        "savings_plan_savings_plan_effective_cost": "CASE WHEN line_type = 'SavingsPlanCoveredUsage' THEN sp_effective END",
        "savings_plan_amortized_upfront_commitment_for_billing_period": "CASE WHEN line_type = 'SavingsPlanRecurringFee' THEN 0 END",
        "savings_plan_recurring_commitment_for_billing_period": "CASE WHEN line_type = 'SavingsPlanRecurringFee' THEN cost END",
        "savings_plan_offering_type": f"CASE WHEN {is_sp} THEN 'ComputeSavingsPlans' END",
        "savings_plan_payment_option": f"CASE WHEN {is_sp} THEN 'No Upfront' END",
        "savings_plan_purchase_term": f"CASE WHEN {is_sp} THEN '1yr' END",
    }


# CUR 2.0 name -> legacy CUR header, for the names that do not follow the generic camelCase rule
LEGACY_NAMES = {
    "product_servicecode": "product/servicecode", "product_usagetype": "product/usagetype",
    "product_region_code": "product/regionCode", "product_instance_type": "product/instanceType",
    "product_instance_family": "product/instanceFamily", "product_product_family": "product/productFamily",
    "product_location_type": "product/locationType",
    "reservation_reservation_a_r_n": "reservation/ReservationARN",
    "savings_plan_savings_plan_a_r_n": "savingsPlan/SavingsPlanARN",
    "pricing_public_on_demand_cost": "pricing/publicOnDemandCost",
    "pricing_public_on_demand_rate": "pricing/publicOnDemandRate", "pricing_term": "pricing/term",
    "pricing_unit": "pricing/unit", "pricing_currency": "pricing/currency",
    "pricing_rate_code": "pricing/RateCode", "pricing_rate_id": "pricing/RateId",
    "product_sku": "product/sku", "product_location": "product/location", "product_operation": "product/operation",
}
_CATEGORIES = {"identity": "identity", "bill": "bill", "line_item": "lineItem", "product": "product",
               "pricing": "pricing", "reservation": "reservation", "savings_plan": "savingsPlan"}
# legacy-only columns, mostly empty in real exports but they cost bytes and parse time
LEGACY_EXTRA = {
    "product/ProductName": "product_name",
    "product/region": "CASE WHEN line_type NOT IN ('Tax', 'Credit', 'Refund', 'EdpDiscount') THEN region_code END",
    "product/group": "NULL", "product/groupDescription": "NULL", "product/storageClass": "NULL",
    "product/storageMedia": "NULL", "product/volumeType": "NULL", "product/vcpu": "NULL", "product/memory": "NULL",
    "product/operatingSystem": "CASE WHEN instance_type <> '' THEN 'Linux' END",
    "product/tenancy": "CASE WHEN instance_type <> '' THEN 'Shared' END",
    "product/fromLocation": "NULL", "product/toLocation": "NULL", "product/transferType": "NULL",
    "product/version": "NULL", "product/feeCode": "NULL", "product/feeDescription": "NULL",
    "reservation/NormalizedUnitsPerReservation": "NULL", "reservation/TotalReservedNormalizedUnits": "NULL",
    "reservation/UnusedNormalizedUnitQuantity": "NULL", "reservation/AvailabilityZone": "NULL",
    "savingsPlan/InstanceTypeFamily": "NULL", "savingsPlan/Region": "NULL",
}


def legacy_name(name: str) -> str:
    if name in LEGACY_NAMES:
        return LEGACY_NAMES[name]
    for prefix, cat in sorted(_CATEGORIES.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix + "_"):
            rest = name[len(prefix) + 1:].split("_")
            return f"{cat}/" + "".join(w[:1].upper() + w[1:] for w in rest)
    raise ValueError(name)


def csv_select(month: dt.date) -> str:
    cols, money = [], set(_money_names())
    for name, expr in _common(month).items():
        if name.endswith("_date") and name.startswith(("bill_", "line_item_usage")):
            cols.append(f"strftime({expr}, '%Y-%m-%dT%H:%M:%S.000Z') AS \"{legacy_name(name)}\"")
        elif name in money:
            cols.append(f"CAST(CAST({expr} AS DOUBLE) AS VARCHAR) AS \"{legacy_name(name)}\"")
        else:
            cols.append(f"CAST({expr} AS VARCHAR) AS \"{legacy_name(name)}\"")
    for name, expr in LEGACY_EXTRA.items():
        cols.append(f"CAST({expr} AS VARCHAR) AS \"{name}\"")
    for key in TAG_VALUES:
        cols.append(f"tag_{key.lower()} AS \"resourceTags/user:{key}\"")
    cols.append("CASE WHEN pr_res <> '' THEN 'terraform' END AS \"resourceTags/aws:createdBy\"")
    return ",\n  ".join(cols)


def parquet_select(month: dt.date) -> str:
    cols = []
    for name, expr in _common(month).items():
        if name.endswith(("_date",)) and name.startswith(("bill_", "line_item_usage")):
            cols.append(f"CAST({expr} AS TIMESTAMP) AS {name}")
        elif name.endswith(("_time",)):
            cols.append(f"CAST({expr} AS VARCHAR) AS {name}")
        else:
            cols.append(f"{expr} AS {name}")
    tag_pairs = ", ".join(f"{{'k': 'user_{k.lower()}', 'v': tag_{k.lower()}}}" for k in TAG_VALUES)
    cols.append("map_from_entries(list_filter([" + tag_pairs + "], lambda x: x.v IS NOT NULL)) AS resource_tags")
    cols.append("map_from_entries([{'k': 'product_name', 'v': product_name}, {'k': 'servicename', 'v': product_name}]"
                " || CASE WHEN instance_type <> '' THEN [{'k': 'operating_system', 'v': 'Linux'}, "
                "{'k': 'tenancy', 'v': 'Shared'}] ELSE [] END) AS product")
    cols.append("CASE WHEN tag_team IS NOT NULL THEN MAP {'business_unit': upper(tag_team)} END AS cost_category")
    cols.append("CASE WHEN line_type = 'EdpDiscount' THEN MAP {'edp_discount': cost::DOUBLE} END AS discount")
    cols.append("CASE WHEN line_type = 'EdpDiscount' THEN cost::DOUBLE END AS discount_total_discount")
    return ",\n  ".join(cols)


def query(rows: int, fmt: str, seed: int = 1, month: dt.date = dt.date(2024, 3, 1), lo: int = 0) -> str:
    select = parquet_select(month) if fmt == "parquet" else csv_select(month)
    body = f"SELECT\n  {select}\nFROM ({base_sql(rows, seed, month, lo)})"
    if fmt == "parquet":  # CUR 2.0 Parquet carries money as double
        return f"SELECT * REPLACE ({_double_cols()}) FROM ({body})"
    return body


def _money_names() -> list[str]:
    return [n for n, e in _common(dt.date(2024, 3, 1)).items()
             if any(w in n for w in ("cost", "rate", "amount", "fee", "commitment", "quantity", "factor",
                                     "units", "value", "reservations"))
             and not n.endswith(("_code", "_id"))]


def _double_cols() -> str:
    return ", ".join(f"CAST({n} AS DOUBLE) AS {n}" for n in _money_names())


def generate(rows: int, fmt: str, out: str | Path, seed: int = 1, month: dt.date = dt.date(2024, 3, 1),
             threads: int | None = None, memory_limit: str = "1GB") -> Path:
    """Write the file; returns its path. Bounded memory: DuckDB streams range -> COPY."""
    return core.copy_rows(lambda lo, hi: query(hi, fmt, seed, month, lo), rows, [out], fmt, threads, memory_limit)[0]


def main(argv: list[str] | None = None) -> int:
    return core.run_main("python -m tools.cur_generator", __doc__, argv,
                         lambda a, month: generate(a.rows, a.format, a.out, a.seed, month),
                         [(("--format",), {"choices": ("csv", "csv.gz", "parquet"), "required": True})])


if __name__ == "__main__":
    raise SystemExit(main())
