"""Synthetic OCI cost reports (`reports/cost-csv/*.csv.gz`), for benchmarks and scale tests.

    python -m tools.oci_report_generator --rows N --out DIR [--files F] [--seed S] [--month 2024-03]

Writes DIR/reports/cost-csv/<number>-00001.csv.gz, what Oracle delivers to the `bling` bucket and
jobs/cloud/oci.py reads from a `{"source": "file://DIR"}` folder. A report is produced every six hours, so by
default a month is one file per six hours (124 for 31 days), each holding the usage of its window plus a
few late rows of earlier hours; `--files` sets another count.

The header is the cost report's: `lineItem/referenceNo`, `lineItem/tenantId`, `lineItem/intervalUsageStart`
(`2024-03-01T10:00Z`) / `...End` (`2024-03-01T11:00:00Z`), `product/service`, `product/resource`,
`product/compartmentId` / `Name`, `product/region`, `product/availabilityDomain`, `product/resourceId`,
`usage/billedQuantity[Overage]`, `cost/subscriptionId`, `cost/productSku`, `product/Description`,
`cost/unitPrice[Overage]`, `cost/myCost[Overage]`, `cost/currencyCode`, `cost/billingUnitReadable`,
`cost/skuUnitDescription`, `cost/overageFlag`, `lineItem/isCorrection`, `lineItem/backreferenceNo`, then one
`tags/<namespace>.<key>` column per tag (`Oracle-Tags.CreatedBy`, `Operations.Environment`, ...).

Rows are hourly, one per resource and SKU: compute OCPUs and memory (E4, E5, A1 with Always Free rows at 0),
block and object storage, networking, Autonomous and Base Database, MySQL, OKE, Functions, streaming,
logging and monitoring, over 10 compartments of one tenancy, 8 regions and a pool of resources with defined
and Oracle tags; about 1% are overage rows and 0.5% corrections (negative, `lineItem/isCorrection` true with a
back-reference). OCI reports carry no credit or tax rows. Quantities and unit prices are written with 18
decimals as OCI does, costs as shortest text (`2.32376E-09` for small ones) with at most 8 decimals, so sums
are exact. Rows are computed by DuckDB from the row number and the seed and streamed to the files:
deterministic and bounded in memory.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from tools import generator_core as core
from tools.generator_core import lit, pick

FIRST_REPORT = 30_000_270


def _ocid(kind: str, name: str, region: str = "") -> str:
    """An OCID-shaped id (`ocid1.<kind>.oc1.<region>.aaaaaaaa` + 52 base32 characters), stable per name."""
    digest = hashlib.sha512(f"{kind}:{name}".encode()).digest()
    body = "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in digest[:52])
    return f"ocid1.{kind}.oc1.{region}.aaaaaaaa{body}"


TENANCY = _ocid("tenancy", "acme")
SUBSCRIPTION = _ocid("organizationssubscription", "acme", "iad")
COMPARTMENTS = [(_ocid("compartment", n), n) for n in (
    "prod-app", "prod-db", "shared-network", "dev-app", "data-lake", "security", "sandbox", "ml", "analytics",
    "platform")]
REGIONS = [("us-ashburn-1", "iad"), ("us-phoenix-1", "phx"), ("eu-frankfurt-1", "fra"), ("uk-london-1", "lhr"),
           ("ap-tokyo-1", "nrt"), ("us-sanjose-1", "sj"), ("ca-toronto-1", "yyz"), ("ap-sydney-1", "syd")]
# service, resource type (product/resource), part number, description, billingUnitReadable, skuUnitDescription,
# unit price, most units one resource uses in an hour, resource OCID kind ('' = a non-OCID resource name)
SKUS = [
    ("COMPUTE", "INSTANCE", "B93113", "Compute - Standard - E4 - OCPU", "1 NONE HOURS OCPUS", "OCPU Hours", "0.025", 16, "instance"),
    ("COMPUTE", "INSTANCE", "B93114", "Compute - Standard - E4 - Memory", "1 GiB HOURS MEMORY", "GB Hours", "0.0015", 128, "instance"),
    ("COMPUTE", "INSTANCE", "B97384", "Compute - Standard - E5 - OCPU", "1 NONE HOURS OCPUS", "OCPU Hours", "0.03", 16, "instance"),
    ("COMPUTE", "INSTANCE", "B97385", "Compute - Standard - E5 - Memory", "1 GiB HOURS MEMORY", "GB Hours", "0.002", 128, "instance"),
    ("COMPUTE", "INSTANCE", "B93297", "Compute - Standard - A1 - OCPU", "1 NONE HOURS OCPUS", "OCPU Hours", "0.01", 8, "instance"),
    ("COMPUTE", "INSTANCE", "B93298", "Compute - Standard - A1 - Memory", "1 GiB HOURS MEMORY", "GB Hours", "0.0015", 48, "instance"),
    ("BLOCK_STORAGE", "BOOTVOLUME", "B91961", "Block Volume - Storage", "1 GiB MONTHS STORAGE_SIZE", "GB Months", "0.0255", 0.07, "bootvolume"),
    ("BLOCK_STORAGE", "VOLUME", "B91962", "Block Volume - Performance Units", "1 GiB MONTHS PERFORMANCE_UNITS", "GB Months", "0.0017", 1.4, "volume"),
    ("OBJECTSTORE", "BUCKET", "B91628", "Object Storage - Storage", "1 GiB MONTHS STORAGE_SIZE", "GB Months", "0.0255", 2.7, ""),
    ("OBJECTSTORE", "BUCKET", "B91627", "Object Storage - Requests", "10000 NONE NONE REQUESTS", "10,000 Requests per Month", "0.0034", 40, ""),
    ("NETWORK", "VNIC", "B88327", "Outbound Data Transfer Zone 1", "1 GiB NONE DATA_TRANSFERRED", "GB Of Data Transferred", "0.0085", 30, "vnic"),
    ("NETWORK", "LOADBALANCER", "B93030", "Load Balancer Base", "1 NONE HOURS INSTANCE", "Instance per hour", "0.0113", 1, "loadbalancer"),
    ("NETWORK", "LOADBALANCER", "B93031", "Load Balancer Bandwidth", "1 NONE HOURS MBPS", "Mbps Per Hour", "0.0001", 400, "loadbalancer"),
    ("DATABASE", "AUTONOMOUSDATABASE", "B95702", "Oracle Autonomous Transaction Processing - ECPU", "1 NONE HOURS ECPUS", "ECPU Hours", "0.336", 8, "autonomousdatabase"),
    ("DATABASE", "AUTONOMOUSDATABASE", "B95754", "Oracle Autonomous Database Storage for Transaction Processing", "1 TiB MONTHS STORAGE_SIZE", "TB", "0.1156", 0.002, "autonomousdatabase"),
    ("DATABASE", "AUTONOMOUSDATABASE", "B92911", "Oracle APEX Application Development", "1 NONE HOURS INSTANCE", "Hours", "0.14717133", 1, "autonomousdatabase"),
    ("DATABASE", "DBSYSTEM", "B88298", "Oracle Base Database Service - Enterprise", "1 NONE HOURS OCPUS", "OCPU Hours", "0.4301", 4, "dbsystem"),
    ("MYSQL", "MYSQLINSTANCE", "B94924", "MySQL Database - ECPU", "1 NONE HOURS ECPUS", "ECPU Hours", "0.0489", 4, "mysqlinstance"),
    ("MYSQL", "MYSQLINSTANCE", "B92426", "MySQL Database - Storage", "1 GiB MONTHS STORAGE_SIZE", "GB Months", "0.04", 0.7, "mysqlinstance"),
    ("CONTAINERENGINE", "CLUSTER", "B96545", "OCI Kubernetes Engine - Enhanced Cluster", "1 NONE HOURS CLUSTER", "Cluster Per Hour", "0.1", 1, "cluster"),
    ("FUNCTIONS", "FUNCTION", "B90617", "Functions - Execution Time", "10000 GiB SECONDS EXECUTION_TIME", "10,000 GB Memory-Seconds", "0.1417", 3, "fnfunc"),
    ("ORACLE_STREAMING_SERVICE", "STREAM", "B90941", "Streaming - PUT or GET", "1 GiB NONE DATA_TRANSFERRED", "GB Of Data Transferred", "0.025", 12, "stream"),
    ("LOGGING", "LOGGROUP", "B92593", "Logging - Storage", "1 GiB MONTHS STORAGE_SIZE", "GB Months", "0.05", 0.3, "loggroup"),
    ("TELEMETRY", "", "B90926", "Monitoring Service - Retrieval", "1000000 NONE NONE DATAPOINTS", "Million Datapoints", "0.00116188", 0.8, ""),
    ("TELEMETRY", "", "B90925", "Monitoring Service - Ingestion", "1000000 NONE NONE DATAPOINTS", "Million Datapoints", "0.0025", 0.5, ""),
]
ALWAYS_FREE = (4, 5)  # A1 OCPUs and memory: part of the usage is free
TAGS = {  # tag column -> values (tags follow the resource; Oracle-Tags are set on most resources)
    "Oracle-Tags.CreatedBy": ["oracleidentitycloudservice/alice@acme.example", "oracleidentitycloudservice/bob@acme.example",
                              "ocid1.instanceprincipal/terraform", "default/ci-bot"],
    "Oracle-Tags.CreatedOn": ["2023-06-14T09:12:44.012Z", "2023-11-02T17:40:03.551Z", "2024-01-22T08:05:19.930Z"],
    "Operations.Environment": ["production", "staging", "development"],
    "Operations.Team": ["platform", "data", "payments", "ml"],
    "Finance.CostCenter": ["CC-1001", "CC-2040", "CC-3300"],
    "Project.Name": ["atlas", "hermes", "orion", "zephyr"],
}
RESOURCES = 30_000
OVERAGE_PCT, CORRECTION_PER_MILLE = 1, 5


def query(lo: int, hi: int, rows: int, seed: int, month: dt.date) -> str:
    """Rows lo .. hi-1; their hours are the slice lo/rows .. hi/rows of the month (a report's window)."""
    hours = (core.next_month(month) - month).days * 24
    first_h = lo * hours // max(rows, 1)
    last_h = max(hi * hours // max(rows, 1), first_h + 1)
    s = lambda col: pick([str(x[col]) for x in SKUS], "si")
    tag_cols = []
    for k, (name, vals) in enumerate(TAGS.items()):
        missing = 5 if name.startswith("Oracle") else 20 + 10 * k
        tag_cols.append(f"CASE WHEN resource_kind <> '' THEN {core.resource_tag(vals, seed, k, missing)} END "
                        f"AS \"tags/{name}\"")
    decimal18 = lambda e: f"CAST(CAST({e} AS DECIMAL(38, 18)) AS VARCHAR)"
    cost_text = lambda e: f"CASE WHEN {e} IS NOT NULL THEN upper(CAST(CAST({e} AS DOUBLE) AS VARCHAR)) END"
    overage = f"(h1 >> 8) % 100 < {OVERAGE_PCT}"
    return f"""
WITH {core.row_hashes(lo, hi, seed)}, a AS (
  SELECT *, (h3 % {RESOURCES})::INT AS ri, ((h3 >> 20) % 1000000 + 1)::INT AS q,
         (h0 % 1000)::INT < {CORRECTION_PER_MILLE} AS correction,
         -- the report's own window, and a few late rows of earlier hours
         GREATEST({first_h} + (h2 % {last_h - first_h})::INT - CASE WHEN h1 % 100 < 3 THEN 1 + (h1 >> 32) % 18 ELSE 0 END,
                  0)::INT AS hour_i
  FROM g
), b AS (
  SELECT *, (hash(ri, {seed}, 13) % {len(SKUS)})::INT AS si, (hash(ri, {seed}, 11) % {len(REGIONS)})::INT AS gi,
         (hash(ri, {seed}, 10) % {len(COMPARTMENTS)})::INT AS ci
  FROM a
), c AS (
  SELECT *,
    {s(0)} AS service, {s(1)} AS resource_type, {s(2)} AS part, {s(3)} AS description, {s(4)} AS readable,
    {s(5)} AS unit_desc, CAST({s(6)} AS DECIMAL(18, 8)) AS price0, CAST({s(7)} AS DOUBLE) AS qmax,
    {s(8)} AS resource_kind, {pick([r[0] for r in REGIONS], 'gi')} AS region,
    {pick([r[1] for r in REGIONS], 'gi')} AS region_key,
    TIMESTAMP '{month.isoformat()} 00:00:00' + to_hours(hour_i) AS start_ts
  FROM b
), d AS (
  SELECT *,
    ROUND(CAST(qmax * q / 1000000 AS DECIMAL(24, 6)), 6) * CASE WHEN correction THEN -1 ELSE 1 END AS qty,
    CASE WHEN si IN {ALWAYS_FREE} AND h1 % 100 < 30 THEN 0 ELSE price0 END AS price
  FROM c
), e AS (
  SELECT *, ROUND(qty * price, 8) AS cost FROM d
)
SELECT
  lower(hex(h0)) || lower(hex(h2)) AS "lineItem/referenceNo",
  {lit(TENANCY)} AS "lineItem/tenantId",
  strftime(start_ts, '%Y-%m-%dT%H:%MZ') AS "lineItem/intervalUsageStart",
  strftime(start_ts + INTERVAL 1 HOUR, '%Y-%m-%dT%H:%M:%SZ') AS "lineItem/intervalUsageEnd",
  service AS "product/service",
  NULLIF(resource_type, '') AS "product/resource",
  {pick([c[0] for c in COMPARTMENTS], 'ci')} AS "product/compartmentId",
  {pick([c[1] for c in COMPARTMENTS], 'ci')} AS "product/compartmentName",
  region AS "product/region",
  CASE WHEN service IN ('COMPUTE', 'BLOCK_STORAGE', 'DATABASE', 'MYSQL') THEN region_key || '-' || (1 + ri % 3) END
    AS "product/availabilityDomain",
  CASE WHEN resource_kind <> '' THEN 'ocid1.' || resource_kind || '.oc1.' || region || '.an' || region_key
                                     || substr(md5(ri::VARCHAR || '{seed}'), 1, 24) || substr(md5(ri::VARCHAR), 1, 30)
       WHEN service = 'OBJECTSTORE' THEN 'acmeobj/bucket-' || substr(md5(ri::VARCHAR), 1, 8)
       ELSE 'oci_compute_infrastructure_health' END AS "product/resourceId",
  {decimal18('qty')} AS "usage/billedQuantity",
  CASE WHEN {overage} THEN {decimal18('qty')} END AS "usage/billedQuantityOverage",
  {lit(SUBSCRIPTION)} AS "cost/subscriptionId",
  part AS "cost/productSku",
  description AS "product/Description",
  {decimal18('price')} AS "cost/unitPrice",
  CASE WHEN {overage} THEN {decimal18('price')} END AS "cost/unitPriceOverage",
  {cost_text('cost')} AS "cost/myCost",
  {cost_text(f'CASE WHEN {overage} THEN cost END')} AS "cost/myCostOverage",
  'USD' AS "cost/currencyCode",
  readable AS "cost/billingUnitReadable",
  unit_desc AS "cost/skuUnitDescription",
  CASE WHEN {overage} THEN 'true' ELSE 'false' END AS "cost/overageFlag",
  CASE WHEN correction THEN 'true' ELSE 'false' END AS "lineItem/isCorrection",
  CASE WHEN correction THEN lower(hex(h1)) || lower(hex(h3)) END AS "lineItem/backreferenceNo",
  {', '.join(tag_cols)}
FROM e
"""


def generate(rows: int, out: str | Path, seed: int = 1, month: dt.date = dt.date(2024, 3, 1),
             files: int | None = None, threads: int | None = None) -> list[Path]:
    """Write the month's reports under `out`; returns the files (one per six hours unless `files` is given)."""
    count = files or (core.next_month(month) - month).days * 4
    names = [Path(out) / "reports" / "cost-csv" / f"{FIRST_REPORT + k:016d}-00001.csv.gz" for k in range(count)]
    return core.copy_rows(lambda lo, hi: query(lo, hi, rows, seed, month), rows, names, "csv.gz", threads)


def main(argv: list[str] | None = None) -> int:
    return core.run_main("python -m tools.oci_report_generator", __doc__, argv,
                         lambda a, month: generate(a.rows, a.out, a.seed, month, a.files),
                         [(("--files",), {"type": int, "default": None, "help": "report files (default: one per 6 h)"})])


if __name__ == "__main__":
    raise SystemExit(main())
