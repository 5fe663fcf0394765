"""A synthetic Google Cloud Billing detailed export (gcp_billing_export_resource_v1_<billing account>) dumped
to Parquet, for benchmarks and scale tests.

    python -m tools.gcp_export_generator --rows N --out DIR [--files F] [--seed S] [--month 2024-03]

Writes DIR/export-000000000000.parquet (and -000000000001, ... with --files), what `EXPORT DATA ... OPTIONS
(format = 'PARQUET', uri = 'gs://.../export-*.parquet')` gives for the export table and what
jobs/cloud/gcp.py reads from a `{"source": "file://DIR"}` folder: the table's own nested schema (the same
columns and types as stubs/gcp_billing_data.export_schema): `service`, `sku`, `project` (with `labels` and
`ancestors`), `location`, `resource`, `price` (NUMERIC), `usage`, `invoice`, `adjustment_info` and
`subscription` as structs; `labels`, `system_labels`, `tags` and `credits` as repeated structs; money
(`cost`, `cost_at_list`, `credits.amount`, `usage.*`) as FLOAT64.

Rows are hourly, one per resource and SKU: Compute Engine cores/RAM/GPUs/disks (with sustained-use and
committed-use-discount credits), Spot cores, commitment fees, Cloud Storage, BigQuery, Cloud SQL, GKE, Cloud Run,
networking, logging, Pub/Sub and Vertex AI, with FREE_TIER, PROMOTION and contractual DISCOUNT credits (0-2 per
row), Marketplace rows resold by Google, tax rows (cost_type tax), goodwill adjustments, usage corrections
(negations with adjustment_info) and rounding errors, over 12 projects with labels, 8 locations and a pool of
resources with labels and Resource Manager tags. invoice.month is the US/Pacific month of usage_start_time, as
in the real export, so the first hours (UTC) of a month belong to the previous invoice month. Money has at most
8 decimals, so cost + credits sums exactly. Rows are computed by DuckDB from the row number and the seed and
streamed to the file: deterministic and bounded in memory.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from tools import generator_core as core
from tools.generator_core import lit, pick

BILLING_ACCOUNT = "01B4E2-7C39A1-5D8F60"
ORG = "organizations/482915736201"
TAX_SERVICE = ("0000-0000-0000", "Invoice")
SUPPORT_SERVICE = ("2062-016F-44A2", "Support")


PROJECTS = [  # id, display name, project labels
    ("acme-web-prod", "Web Production", [("env", "prod"), ("team", "web")]),
    ("acme-web-stg", "Web Staging", [("env", "staging"), ("team", "web")]),
    ("acme-data-prod", "Data Production", [("env", "prod"), ("team", "data")]),
    ("acme-data-dev", "Data Dev", [("env", "dev"), ("team", "data")]),
    ("acme-ml-train", "ML Training", [("env", "prod"), ("team", "ml")]),
    ("acme-ml-serve", "ML Serving", [("env", "prod"), ("team", "ml")]),
    ("acme-platform", "Platform", [("env", "prod"), ("team", "platform")]),
    ("acme-security", "Security", [("env", "prod"), ("team", "security")]),
    ("acme-analytics", "Analytics", [("env", "prod"), ("team", "bi")]),
    ("acme-sandbox-7", "Sandbox 7", [("env", "sandbox")]),
    ("acme-edge", "Edge", [("env", "prod"), ("team", "edge")]),
    ("acme-ci", "CI", []),
]
LOCATIONS = [  # region, country, continent (SKU names say "running in <continent>")
    ("us-central1", "US", "Americas"), ("us-east1", "US", "Americas"), ("us-west1", "US", "Americas"),
    ("europe-west1", "BE", "EMEA"), ("europe-west4", "NL", "EMEA"), ("asia-northeast1", "JP", "APAC"),
    ("asia-southeast1", "SG", "APAC"), ("southamerica-east1", "BR", "Americas"),
]
# service, SKU description, usage unit, pricing unit, usage units per pricing unit, list price per pricing unit,
# most pricing units one resource uses in an hour, location kind (zone | region | multi | global | none),
# resource name template ({p} project, {r} region, {z} zone, {x} id; '' = no resource), credit class
COMPUTE, STORAGE, BQ = ("6F81-5844-456A", "Compute Engine"), ("95FF-2EF5-5EA1", "Cloud Storage"), ("24E6-581D-38E5", "BigQuery")
SQL, GKE, RUN = ("9662-B51E-5089", "Cloud SQL"), ("CCD8-9BF1-090E", "Kubernetes Engine"), ("152E-C115-5142", "Cloud Run")
NET, LOG, MON = ("E505-1604-58F8", "Networking"), ("5490-F7B7-8DF6", "Cloud Logging"), ("58CD-E7C3-72CA", "Cloud Monitoring")
PUBSUB, VERTEX = ("A1E8-BE35-7EBC", "Cloud Pub/Sub"), ("C7E2-9256-1C43", "Vertex AI")
GIB, HOUR_S, MONTH_S = 1 << 30, 3600, 2_592_000
VM = "//compute.googleapis.com/projects/{p}/zones/{z}/instances/{x}"
SKUS = [
    (COMPUTE, "N2 Instance Core running in {c}", "seconds", "hour", HOUR_S, "0.031611", 16, "zone", VM, "compute"),
    (COMPUTE, "N2 Instance Ram running in {c}", "byte-seconds", "gibibyte hour", GIB * HOUR_S, "0.004237", 64, "zone", VM, "compute"),
    (COMPUTE, "E2 Instance Core running in {c}", "seconds", "hour", HOUR_S, "0.021811", 8, "zone", VM, "compute"),
    (COMPUTE, "E2 Instance Ram running in {c}", "byte-seconds", "gibibyte hour", GIB * HOUR_S, "0.002923", 32, "zone", VM, "compute"),
    (COMPUTE, "Spot Preemptible N2 Instance Core running in {c}", "seconds", "hour", HOUR_S, "0.00765", 16, "zone", VM, "none"),
    (COMPUTE, "Nvidia Tesla T4 GPU running in {c}", "seconds", "hour", HOUR_S, "0.35", 2, "zone", VM, "compute"),
    (COMPUTE, "Balanced PD Capacity in {c}", "byte-seconds", "gibibyte month", GIB * MONTH_S, "0.1", 0.7, "zone",
     "//compute.googleapis.com/projects/{p}/zones/{z}/disks/{x}", "none"),
    (COMPUTE, "SSD backed PD Capacity in {c}", "byte-seconds", "gibibyte month", GIB * MONTH_S, "0.17", 0.4, "zone",
     "//compute.googleapis.com/projects/{p}/zones/{z}/disks/{x}", "none"),
    (STORAGE, "Standard Storage US Multi-region", "byte-seconds", "gibibyte month", GIB * MONTH_S, "0.026", 2.5, "multi",
     "//storage.googleapis.com/projects/_/buckets/{p}-{x}", "free"),
    (STORAGE, "Nearline Storage {c}", "byte-seconds", "gibibyte month", GIB * MONTH_S, "0.01", 6, "region",
     "//storage.googleapis.com/projects/_/buckets/{p}-{x}", "none"),
    (STORAGE, "Multi-Region Standard Class A Operations", "requests", "requests", 1, "0.00001", 2000, "multi",
     "//storage.googleapis.com/projects/_/buckets/{p}-{x}", "free"),
    (BQ, "Analysis", "bytes", "tebibyte", 1 << 40, "6.25", 0.05, "multi",
     "//bigquery.googleapis.com/projects/{p}/datasets/ds_{x}", "free"),
    (BQ, "Active Logical Storage", "byte-seconds", "gibibyte month", GIB * MONTH_S, "0.02", 5, "multi",
     "//bigquery.googleapis.com/projects/{p}/datasets/ds_{x}", "free"),
    (SQL, "Cloud SQL for PostgreSQL: Zonal - vCPU in {c}", "seconds", "hour", HOUR_S, "0.0413", 8, "region",
     "//cloudsql.googleapis.com/projects/{p}/instances/pg-{x}", "none"),
    (SQL, "Cloud SQL for PostgreSQL: Zonal - RAM in {c}", "byte-seconds", "gibibyte hour", GIB * HOUR_S, "0.007", 32,
     "region", "//cloudsql.googleapis.com/projects/{p}/instances/pg-{x}", "none"),
    (GKE, "Autopilot Pod mCPU Requests ({r})", "seconds", "hour", HOUR_S, "0.0445", 12, "region",
     "//container.googleapis.com/projects/{p}/locations/{r}/clusters/gke-{x}", "none"),
    (GKE, "Regional Kubernetes Clusters", "seconds", "hour", HOUR_S, "0.1", 1, "region",
     "//container.googleapis.com/projects/{p}/locations/{r}/clusters/gke-{x}", "free"),
    (RUN, "CPU Allocation Time", "seconds", "hour", HOUR_S, "0.0864", 2, "region",
     "//run.googleapis.com/projects/{p}/locations/{r}/services/svc-{x}", "free"),
    (RUN, "Requests", "requests", "requests", 1, "0.0000004", 50000, "region",
     "//run.googleapis.com/projects/{p}/locations/{r}/services/svc-{x}", "free"),
    (NET, "Network Internet Data Transfer Out from {c} to Americas", "bytes", "gibibyte", GIB, "0.12", 20, "region", "", "none"),
    (NET, "Network Inter Zone Data Transfer Out", "bytes", "gibibyte", GIB, "0.01", 80, "region", "", "none"),
    (NET, "Cloud NAT Gateway Uptime", "seconds", "hour", HOUR_S, "0.0014", 1, "region",
     "//compute.googleapis.com/projects/{p}/regions/{r}/routers/nat-{x}", "none"),
    (LOG, "Log Volume", "bytes", "gibibyte", GIB, "0.5", 3, "global", "", "free"),
    (MON, "Metric Volume", "bytes", "mebibyte", 1 << 20, "0.258", 40, "global", "", "free"),
    (PUBSUB, "Message Delivery Basic", "bytes", "tebibyte", 1 << 40, "40", 0.002, "global",
     "//pubsub.googleapis.com/projects/{p}/topics/topic-{x}", "free"),
    (VERTEX, "Gemini 1.5 Flash Text Input - Predictions", "count", "count", 1, "0.00000001875", 2000000, "region",
     "", "none"),
]
CUD_FEE = (COMPUTE, "Commitment v1: N2 Cpu in {c} for 1 Year", "seconds", "hour", HOUR_S, "0.019915", 32, "region",
           "", "none")
MARKET = [  # SKU row resold by Google, seller
    ((("A6E1-2B0C-77D4", "Elastic Cloud (Elasticsearch Service)"), "Elastic Cloud ECU", "seconds", "hour", HOUR_S,
      "0.1", 4, "none", "", "none"), "Elasticsearch BV"),
    ((("3F0D-91AE-5C12", "MongoDB Atlas"), "Atlas Dedicated M30", "seconds", "hour", HOUR_S, "0.54", 2, "none", "",
      "none"), "MongoDB Inc."),
    ((("8B2C-4D17-E6A9", "Confluent Cloud"), "Confluent Cloud CKU", "seconds", "hour", HOUR_S, "1.5", 1, "none", "",
      "none"), "Confluent Inc"),
]
ALL_SKUS = SKUS + [CUD_FEE] + [m[0] for m in MARKET]
LABELS = {
    "app": ["checkout", "search", "ledger", "ingest", "portal", "recsys", "etl"],
    "env": ["production", "staging", "development"],
    "cost-center": ["cc-1001", "cc-2040", "cc-3300", "cc-4100"],
    "owner": ["alice", "bob", "data-eng", "sre"],
}
# (row kind, first bucket of 10,000); the bucket of a row is hash % 10,000
KINDS = [("usage", 0), ("cud_fee", 9850), ("marketplace", 9880), ("tax", 9920), ("goodwill", 9980),
         ("correction", 9985), ("rounding", 9995)]
RESOURCES = 40_000

KV = "STRUCT(key VARCHAR, value VARCHAR)[]"
TYPES = {
    "service": "STRUCT(id VARCHAR, description VARCHAR)",
    "sku": "STRUCT(id VARCHAR, description VARCHAR)",
    "project": f"STRUCT(id VARCHAR, number VARCHAR, name VARCHAR, labels {KV}, ancestry_numbers VARCHAR, "
               "ancestors STRUCT(resource_name VARCHAR, display_name VARCHAR)[])",
    "labels": KV, "system_labels": KV,
    "location": "STRUCT(location VARCHAR, country VARCHAR, region VARCHAR, zone VARCHAR)",
    "resource": "STRUCT(name VARCHAR, global_name VARCHAR)",
    "tags": "STRUCT(key VARCHAR, value VARCHAR, inherited BOOLEAN, namespace VARCHAR)[]",
    "price": "STRUCT(effective_price DECIMAL(38, 9), tier_start_amount DECIMAL(38, 9), unit VARCHAR, "
             "pricing_unit_quantity DECIMAL(38, 9), list_price DECIMAL(38, 9), effective_price_default DECIMAL(38, 9), "
             "list_price_consumption_model DECIMAL(38, 9))",
    "subscription": "STRUCT(instance_id VARCHAR)",
    "usage": "STRUCT(amount DOUBLE, unit VARCHAR, amount_in_pricing_units DOUBLE, pricing_unit VARCHAR)",
    "credits": "STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, type VARCHAR)[]",
    "invoice": "STRUCT(month VARCHAR, publisher_type VARCHAR)",
    "adjustment_info": "STRUCT(id VARCHAR, description VARCHAR, mode VARCHAR, type VARCHAR)",
    "cost": "DOUBLE", "currency_conversion_rate": "DOUBLE", "cost_at_list": "DOUBLE",
}
TIMESTAMPS = ("usage_start_time", "usage_end_time", "export_time")


def _project_literal(i: int, pid: str, name: str, labels) -> str:
    number = f"{(i * 7_919_003 + 104_729) % 900_000_000_000 + 100_000_000_000}"
    kv = "[" + ", ".join(f"{{'key': {lit(k)}, 'value': {lit(v)}}}" for k, v in labels) + "]"
    return (f"{{'id': {lit(pid)}, 'number': '{number}', 'name': {lit(name)}, 'labels': {kv}::{KV}, "
            f"'ancestry_numbers': '/{ORG.split('/')[1]}/{number}/', 'ancestors': ["
            f"{{'resource_name': 'projects/{number}', 'display_name': {lit(name)}}}, "
            f"{{'resource_name': '{ORG}', 'display_name': 'acme.example'}}]}}")


def _credit(name: str, amount: str, cid: str, ctype: str, full_name: str | None = None) -> str:
    return (f"{{'name': {name}, 'amount': CAST({amount} AS DOUBLE), 'full_name': {full_name or name}, "
            f"'id': {cid}, 'type': '{ctype}'}}")


def base_sql(lo: int, hi: int, seed: int, month: dt.date) -> str:
    """Rows lo .. hi-1 with typed internal fields; `query` builds the export columns from them."""
    hours = (core.next_month(month) - month).days * 24
    s = lambda col: pick([str(x[col]) for x in ALL_SKUS], "si")
    loc = lambda col: pick([x[col] for x in LOCATIONS], "li")
    kind = "CASE " + " ".join(f"WHEN tb >= {b} THEN '{k}'" for k, b in reversed(KINDS)) + " END"
    label_cols, label_items = [], []
    for k, (key, vals) in enumerate(LABELS.items()):
        label_cols.append(f"{core.resource_tag(vals, seed, k, 15 + 15 * k)} AS label{k}")
        label_items.append(f"{{'key': {lit(key)}, 'value': label{k}}}")
    return f"""
WITH {core.row_hashes(lo, hi, seed)}, a AS (
  SELECT *, (h0 % 10000)::INT AS tb, (h3 % {RESOURCES})::INT AS ri, ((h3 >> 20) % 1000000 + 1)::INT AS q,
         (h2 % {hours})::INT AS hour_i, (h1 % 100)::INT AS cb
  FROM g
), b AS (
  SELECT *, {kind} AS kind,
    CASE {kind} WHEN 'cud_fee' THEN {len(SKUS)} WHEN 'marketplace' THEN {len(SKUS) + 1} + ((h1 >> 20) % {len(MARKET)})::INT
                ELSE (hash(ri, {seed}, 13) % {len(SKUS)})::INT END AS si,
    (hash(ri, {seed}, 11) % {len(LOCATIONS)})::INT AS li, (hash(ri, {seed}, 10) % {len(PROJECTS)})::INT AS pj
  FROM a
), c AS (
  SELECT *,
    {pick([x[0][0] for x in ALL_SKUS], 'si')} AS service_id0, {pick([x[0][1] for x in ALL_SKUS], 'si')} AS service_desc0,
    {s(1)} AS sku_desc0, {s(2)} AS usage_unit, {s(3)} AS pricing_unit,
    CAST({s(4)} AS DOUBLE) AS per_unit, CAST({s(5)} AS DECIMAL(18, 11)) AS list_price, CAST({s(6)} AS DOUBLE) AS qmax,
    {s(7)} AS loc_kind, {s(8)} AS resource_tpl, {s(9)} AS credit_class,
    {loc(0)} AS region, {loc(1)} AS country, {loc(2)} AS continent,
    {pick([p[0] for p in PROJECTS], 'pj')} AS project_id,
    substr(lower(hex(hash(ri, {seed}, 9))), 1, 10) AS res_x,
    {', '.join(label_cols)},
    CASE WHEN kind IN ('tax', 'goodwill', 'rounding')
         THEN TIMESTAMPTZ '{month.isoformat()} 00:00:00+00' + to_hours((hour_i // 24) * 24)
         ELSE TIMESTAMPTZ '{month.isoformat()} 00:00:00+00' + to_hours(hour_i) END AS start_ts
  FROM b
), d AS (
  SELECT *,
    -- pricing amount: 6 decimals, up to what one resource uses in an hour
    ROUND(CAST(qmax * q / 1000000 AS DECIMAL(24, 6)), 6) AS amount,
    -- BigQuery and Cloud SQL are billed at a negotiated price below list
    CASE WHEN service_id0 IN ('{BQ[0]}', '{SQL[0]}') THEN ROUND(list_price * 0.9, 11) ELSE list_price END AS eff_price,
    region || '-' || chr(97 + (ri % 3)::INT) AS zone0
  FROM c
)
SELECT *,
  CASE kind
    WHEN 'tax' THEN ROUND(CAST(h3 % 4000000 AS DECIMAL(18, 8)) / 1000000, 8)
    WHEN 'goodwill' THEN -ROUND(CAST(h3 % 5000 AS DECIMAL(18, 8)) / 100, 2)
    WHEN 'rounding' THEN ROUND(CAST(h3 % 2001 AS DECIMAL(18, 8)) / 100000000 - 0.00001, 8)
    WHEN 'correction' THEN -ROUND(amount * eff_price, 8)
    ELSE ROUND(amount * eff_price, 8) END::DECIMAL(18, 8) AS cost0,
  [{', '.join(label_items)}] AS label_list
FROM d
"""


def query(lo: int, hi: int, seed: int, month: dt.date) -> str:
    regular = "kind IN ('usage', 'cud_fee', 'correction')"
    has_price = f"({regular} OR kind = 'marketplace')"
    resource = ("replace(replace(replace(replace(resource_tpl, '{p}', project_id), '{r}', region), '{z}', zone0), "
                "'{x}', res_x)")
    commitment = "'projects/' || project_id || '/regions/' || region || '/commitments/cud-' || (pj % 3)"
    sud = _credit("'Sustained Usage Discount'", "-ROUND(cost0 * 0.2, 8)", "''", "SUSTAINED_USAGE_DISCOUNT")
    cud = _credit("'Committed use discount: CPU'", "-cost0", commitment, "COMMITTED_USAGE_DISCOUNT")
    free = _credit("'FreeTier:' || service_desc", "-ROUND(cost0 * (1 + (h1 >> 40) % 4) / 4, 8)",
                   "'FreeTier:' || lower(replace(service_desc, ' ', '-'))", "FREE_TIER")
    promo = _credit("'Startup program credit'", "-ROUND(cost0 * 0.5, 8)", "'promotions/startup-2024'", "PROMOTION",
                    "'Google for Startups Cloud Program'")
    discount = _credit("'Spending based discount (contractual)'", "-ROUND(cost0 * 0.05, 8)", "''", "DISCOUNT")
    cud_applies = "credit_class = 'compute' AND cb BETWEEN 35 AND 49"
    free_applies = "credit_class = 'free' AND cb < 30"
    # promotions and contract discounts stack with a sustained-use discount, never past a row's cost
    others = f"NOT ({cud_applies}) AND NOT ({free_applies})"
    credits = f"""list_filter([
        CASE WHEN credit_class = 'compute' AND cb < 35 THEN {sud} END,
        CASE WHEN {cud_applies} THEN {cud} END,
        CASE WHEN {free_applies} THEN {free} END,
        CASE WHEN {others} AND (h1 >> 8) % 100 < 4 THEN {promo} END,
        CASE WHEN {others} AND (h1 >> 16) % 100 < 10 THEN {discount} END], lambda x: x IS NOT NULL)"""
    cols = {
        "billing_account_id": lit(BILLING_ACCOUNT),
        "service": "{'id': service_id, 'description': service_desc}",
        "sku": "{'id': upper(substr(md5(sku_desc), 1, 4) || '-' || substr(md5(sku_desc), 5, 4) || '-' || "
               "substr(md5(sku_desc), 9, 4)), 'description': sku_desc}",
        "usage_start_time": "start_ts",
        "usage_end_time": "start_ts + CASE WHEN kind IN ('tax', 'goodwill', 'rounding') THEN INTERVAL 1 DAY "
                          "ELSE INTERVAL 1 HOUR END",
        "project": f"CASE WHEN kind <> 'rounding' THEN "
                   f"[{', '.join(_project_literal(i, *p) for i, p in enumerate(PROJECTS))}][pj + 1] END",
        "labels": f"CASE WHEN {regular} AND resource_tpl <> '' THEN list_filter(label_list, lambda x: x.value IS NOT NULL) "
                  "ELSE [] END",
        "system_labels": "CASE WHEN kind = 'usage' AND resource_tpl LIKE '%/instances/%' THEN ["
                         "{'key': 'compute.googleapis.com/machine_spec', 'value': CASE WHEN sku_desc0 LIKE 'E2%' "
                         "THEN 'e2-standard-8' ELSE 'n2-standard-16' END}, "
                         "{'key': 'compute.googleapis.com/cores', 'value': CASE WHEN sku_desc0 LIKE 'E2%' THEN '8' "
                         "ELSE '16' END}] ELSE [] END",
        "location": "CASE WHEN kind IN ('tax', 'goodwill', 'rounding') OR loc_kind = 'none' THEN NULL "
                    "WHEN loc_kind = 'global' THEN {'location': 'global', 'country': NULL, 'region': NULL, 'zone': NULL} "
                    "WHEN loc_kind = 'multi' THEN {'location': CASE WHEN continent = 'EMEA' THEN 'eu' ELSE 'us' END, "
                    "'country': NULL, 'region': NULL, 'zone': NULL} "
                    "ELSE {'location': region, 'country': country, 'region': region, "
                    "'zone': CASE WHEN loc_kind = 'zone' THEN zone0 END} END",
        "resource": f"CASE WHEN {regular} AND resource_tpl <> '' THEN "
                    f"{{'name': regexp_extract({resource}, '[^/]+$'), 'global_name': {resource}}} END",
        "tags": f"CASE WHEN {regular} AND ri % 5 = 0 THEN [{{'key': 'environment', 'value': "
                "CASE WHEN project_id LIKE '%-prod' THEN 'production' ELSE 'non-production' END, 'inherited': true, "
                f"'namespace': '{ORG.split('/')[1]}'}}] ELSE [] END",
        "price": f"CASE WHEN {has_price} THEN {{'effective_price': eff_price, 'tier_start_amount': 0, "
                 "'unit': pricing_unit, 'pricing_unit_quantity': 1, 'list_price': list_price, "
                 "'effective_price_default': eff_price, 'list_price_consumption_model': list_price} END",
        "subscription": f"CASE WHEN kind = 'cud_fee' THEN {{'instance_id': {commitment}}} END",
        "transaction_type": "CASE WHEN kind = 'marketplace' THEN 'THIRD_PARTY_RESELLER' ELSE 'GOOGLE' END",
        "seller_name": f"CASE WHEN kind = 'marketplace' THEN {pick([m[1] for m in MARKET], f'si - {len(SKUS) + 1}')} END",
        "export_time": "start_ts + INTERVAL 5 HOUR + to_seconds((h3 >> 8) % 20000)",
        "cost": "CAST(cost0 AS DOUBLE)",
        "currency": "'USD'",
        "currency_conversion_rate": "1.0",
        "usage": f"CASE WHEN {has_price} THEN {{'amount': CAST(amount AS DOUBLE) * per_unit * "
                 "CASE WHEN kind = 'correction' THEN -1 ELSE 1 END, 'unit': usage_unit, "
                 "'amount_in_pricing_units': CAST(amount AS DOUBLE) * CASE WHEN kind = 'correction' THEN -1 ELSE 1 END,"
                 " 'pricing_unit': pricing_unit} END",
        "credits": f"CASE WHEN kind = 'usage' THEN {credits} ELSE [] END",
        "invoice": "{'month': strftime(start_ts AT TIME ZONE 'America/Los_Angeles', '%Y%m'), "
                   "'publisher_type': CASE WHEN kind = 'marketplace' THEN 'PARTNER' ELSE 'GOOGLE' END}",
        "cost_type": "CASE kind WHEN 'tax' THEN 'tax' WHEN 'goodwill' THEN 'adjustment' "
                     "WHEN 'rounding' THEN 'rounding error' ELSE 'regular' END",
        "adjustment_info": "CASE WHEN kind = 'goodwill' THEN {'id': 'adj-' || lower(hex(h0)), "
                           "'description': 'Service credit for incident ' || (h2 % 9000 + 1000), "
                           "'mode': 'MANUAL_ADJUSTMENT', 'type': 'GOODWILL'} "
                           "WHEN kind = 'correction' THEN {'id': 'corr-' || lower(hex(h0)), "
                           "'description': 'Usage correction', 'mode': 'COMPLETE_NEGATION', "
                           "'type': 'USAGE_CORRECTION'} END",
        "cost_at_list": f"CASE WHEN {regular} THEN CAST(ROUND(amount * list_price, 8) * "
                        "CASE WHEN kind = 'correction' THEN -1 ELSE 1 END AS DOUBLE) "
                        "WHEN kind IN ('tax', 'marketplace') THEN CAST(cost0 AS DOUBLE) END",
    }
    # BigQuery writes every column as nullable; DuckDB marks a column whose statistics show no NULL as required
    select = ",\n  ".join(f"CASE WHEN tb >= 0 THEN CAST({e} AS {TYPES.get(n, 'VARCHAR')}) END AS {n}"
                           if n not in TIMESTAMPS else f"CASE WHEN tb >= 0 THEN {e} END AS {n}" for n, e in cols.items())
    return f"""SELECT
  {select}
FROM (
  SELECT *,
    CASE WHEN kind = 'tax' THEN '{TAX_SERVICE[0]}' WHEN kind IN ('goodwill', 'rounding') THEN '{SUPPORT_SERVICE[0]}'
         ELSE service_id0 END AS service_id,
    CASE WHEN kind = 'tax' THEN '{TAX_SERVICE[1]}' WHEN kind IN ('goodwill', 'rounding') THEN '{SUPPORT_SERVICE[1]}'
         ELSE service_desc0 END AS service_desc,
    CASE WHEN kind = 'tax' THEN 'Tax: US sales tax' WHEN kind = 'goodwill' THEN 'Goodwill credit'
         WHEN kind = 'rounding' THEN 'Rounding error'
         ELSE replace(replace(sku_desc0, '{{c}}', continent), '{{r}}', region) END AS sku_desc
  FROM ({base_sql(lo, hi, seed, month)})
)
"""


def generate(rows: int, out: str | Path, seed: int = 1, month: dt.date = dt.date(2024, 3, 1), files: int = 1,
             threads: int | None = None) -> list[Path]:
    """Write the export dump under `out`; returns the Parquet files."""
    names = [Path(out) / f"export-{k:012d}.parquet" for k in range(max(files, 1))]
    return core.copy_rows(lambda lo, hi: query(lo, hi, seed, month), rows, names, "parquet", threads)


def main(argv: list[str] | None = None) -> int:
    return core.run_main("python -m tools.gcp_export_generator", __doc__, argv,
                         lambda a, month: generate(a.rows, a.out, a.seed, month, a.files),
                         [(("--files",), {"type": int, "default": 1, "help": "Parquet files of the dump (default 1)"})])


if __name__ == "__main__":
    raise SystemExit(main())
