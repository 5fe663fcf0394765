"""Issue 13, defect 5: every PricingUnit, ConsumedUnit and CommitmentDiscountUnit any pipeline writes follows the
FOCUS Unit Format, and one provider unit gets one FOCUS unit whatever path it came by.

The format check below is written from the spec (FOCUS 1.3 attributes/unit_format.md), independently of the
normaliser (procedures/macros/focus_unit.sql via shared.units) and of the gate (shared.focus). The end-to-end
test runs the demo (all twelve pipelines on the bundled provider samples and stubs), then the providers' own
FOCUS exports and a CUR 2.0 file in the units the providers really write ('Hrs', 'GB-Mo', 'Request',
'gibibyte month', '1K tokens', a usage type as ConsumedUnit, ...), and checks every distinct unit written.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from shared import units
from tests import cloud_kit as kit

# ----------------------------------------------------------------------------------------------------------
# The Unit Format, from the spec
# ----------------------------------------------------------------------------------------------------------
DATA_SIZES = {p + s for p in ("", "K", "M", "G", "T", "P", "E") for s in ("b", "B")} | \
    {p + "i" + s for p in "KMGTPE" for s in ("b", "B")}
TIME_UNITS = {"Year": "Years", "Month": "Months", "Day": "Days", "Hour": "Hours", "Minute": "Minutes",
              "Second": "Seconds", "Millisecond": "Milliseconds", "Microsecond": "Microseconds"}
COUNT_UNITS = {"Count": "Counts", "Unit": "Units", "Request": "Requests", "Token": "Tokens",
               "Connection": "Connections", "Certificate": "Certificates", "Domain": "Domains", "Core": "Cores"}
SINGULAR = {**TIME_UNITS, **COUNT_UNITS}
PLURAL = {v: k for k, v in SINGULAR.items()}
# spellings that name a data size or a time unit other than by its allowed name (a MUST of the format)
NOT_ALLOWED = re.compile(r"(?i)^(?:[kmgtpe]i?b?s|bytes?|bits?|(?:kilo|mega|giga|tera|peta|exa|kibi|mebi|gibi|tebi|"
                         r"pebi|exbi)(?:bytes?|bits?)|hrs?|mos?|mths?|mon|secs?|mins?|yrs?|ms|weeks?)$")
NOUN = re.compile(r"[A-Z][A-Za-z]*")


def _base_problem(base: str) -> str | None:
    if base in DATA_SIZES or base in SINGULAR or base in PLURAL:
        return None
    if NOT_ALLOWED.match(base):
        return f"{base!r} is not an allowed data size or time unit name"
    if not NOUN.fullmatch(base):
        return f"{base!r} is not a capitalized noun"
    return None


def _is_plural(base: str) -> bool:
    if base in DATA_SIZES or base in PLURAL:
        return True
    if base in SINGULAR:
        return False
    return base.endswith("s") or base.isupper()  # a noun of our own: plural, or an acronym (USD, OCPU)


def unit_format_problem(unit: str) -> str | None:
    """Why `unit` breaks the Unit Format (MUSTs, and the SHOULDs on singular/plural), else None."""
    m = re.fullmatch(r"(?:([1-9][0-9]*) )?([^ /]+)(?:/(?:([1-9][0-9]*) )?([^ /]+))?", unit)
    if not m:
        return "not '[<quantity> ]<units>[/[<quantity> ]<unit>]' with positive integer quantities"
    _, numerator, denominator_quantity, denominator = m.groups()
    bases = numerator.split("-")
    if len(bases) > 2:
        return "a compound unit has two base units"
    for base in bases + ([denominator] if denominator else []):
        if problem := _base_problem(base):
            return problem
    if len(bases) == 2 and bases[0] in PLURAL:
        return f"the first base unit of a compound is singular, not {bases[0]!r}"
    if not _is_plural(bases[-1]):
        return f"{bases[-1]!r} is singular where the format wants <plural-units>"
    if denominator in TIME_UNITS and denominator_quantity:
        return "a time denominator after a quantity is plural"
    if denominator in PLURAL and PLURAL[denominator] in TIME_UNITS and not denominator_quantity:
        return "a time denominator is singular"
    return None


@pytest.mark.parametrize("unit", [
    "GB", "Seconds", "GB-Hours", "MB-Days", "Request-Tokens", "GB/Hour", "PB/Day", "1000 Tokens",
    "1000 Characters", "Units/3 Months", "Core-Hours/Day", "Hours", "GiB-Months", "Units", "Counts", "USD",
    "OCPU-Hours", "Units/Month", "1000000 Datapoints"])
def test_the_format_check_accepts_the_specs_examples(unit):
    assert unit_format_problem(unit) is None


@pytest.mark.parametrize("unit", [
    "Request", "Second", "Count", "1K tokens", "USW2-AmazonApiGatewayRequest", "Bucket-Mo", "Hrs", "GB-Mo",
    "TBs", "terabyte", "gibibyte month", "Lambda-GB-Second", "1.5 Sms", "GB Hours", "Hours-GB",
    "Hours/Days", "Units/3 Month", "API Request", "BoxUsage:m5.large", "0 Units", "requests"])
def test_the_format_check_refuses_what_the_providers_write(unit):
    assert unit_format_problem(unit) is not None


# ----------------------------------------------------------------------------------------------------------
# The normaliser, on the providers' own spellings
# ----------------------------------------------------------------------------------------------------------
PROVIDER_UNITS = [
    # AWS CUR pricing/unit (the legacy sample's values, AWS's price list units)
    ("Hrs", "Hours"), ("GB-Mo", "GB-Months"), ("Bucket-Mo", "Bucket-Months"), ("Obj-Month", "Object-Months"),
    ("Request", "Requests"), ("Requests", "Requests"), ("API Request", "Requests"), ("API Requests", "Requests"),
    ("Second", "Seconds"), ("Lambda-GB-Second", "GB-Seconds"), ("IOs", "IOs"), ("Count", "Counts"), ("GB", "GB"),
    ("Keys", "Keys"), ("Dashboards", "Dashboards"), ("Events", "Events"), ("Operations", "Operations"),
    ("1K tokens", "1000 Tokens"), ("vCPU-Hours", "VCPU-Hours"), ("ReadCapacityUnit-Hrs", "Unit-Hours"), ("Hosted Zone", "Zones"), ("vCore", "Cores"),
    ("IOPS-Mo", "IOPS-Months"), ("Queries", "Queries"),
    # Azure UnitOfMeasure / FocusCost PricingUnit
    ("1 Hour", "Hours"), ("10K", "10000 Units"), ("1 GB/Month", "GB-Months"), ("1/Month", "Units/Month"),
    ("10K/Month", "10000 Units/Month"), ("1 GB", "GB"), ("Hours", "Hours"), ("GB/Month", "GB-Months"),
    ("Gb / Month", "GB-Months"), ("1/3 Months", "Units/3 Months"), ("Minute(s)", "Minutes"), ("1 Key", "Keys"),
    ("10,000 Requests per Month", "10000 Requests/Month"), ("1K Tokens", "1000 Tokens"),
    # GCP usage.pricing_unit / usage.unit
    ("gibibyte month", "GiB-Months"), ("hour", "Hours"), ("requests", "Requests"), ("tebibyte", "TiB"),
    ("byte-seconds", "B-Seconds"), ("bytes", "B"), ("seconds", "Seconds"), ("1000 count", "1000 Counts"),
    ("1000000 token", "1000000 Tokens"), ("count", "Counts"), ("gibibyte hour", "GiB-Hours"),
    # OCI skuUnitDescription / FOCUS report PricingUnit
    ("GB Months", "GB-Months"), ("OCPU Hours", "OCPU-Hours"), ("Million Datapoints", "1000000 Datapoints"),
    ("GB Hours", "GB-Hours"), ("TB", "TB"),
    # FOCUS units stay what they are
    ("GiB-Months", "GiB-Months"), ("1000000 Tokens", "1000000 Tokens"), ("Units/3 Months", "Units/3 Months"),
    ("Seats", "Seats"), ("Tokens", "Tokens"), ("Units", "Units"), ("IO", "IOs"), ("GPU", "GPUs"),
]


@pytest.mark.parametrize(("raw", "expected"), PROVIDER_UNITS)
def test_provider_units_become_focus_units(raw, expected):
    got = units.focus_unit(raw)
    assert got == expected
    assert unit_format_problem(got) is None
    assert units.focus_unit(got) == got  # a FOCUS unit is left as it is


@pytest.mark.parametrize("junk", [
    "USW2-AmazonApiGatewayRequest", "APN1-DataTransfer-Out-Bytes", "BoxUsage:m5.large", "Requests-Tier1",
    "1.5 Sms", "1 GB/月", "", "   ", None])
def test_what_cannot_be_a_unit_is_none_for_the_caller_to_replace(junk):
    assert units.focus_unit(junk) is None


def test_the_gate_accepts_every_unit_the_normaliser_makes():
    """The normaliser never writes a unit the FOCUS gate (shared.focus) would refuse."""
    import duckdb

    from shared import focus
    from shared.warehouse.dialect import to_duckdb

    made = sorted({units.focus_unit(r) for r, _ in PROVIDER_UNITS})
    ((sql, _),) = to_duckdb(f"SELECT u FROM UNNEST(@units) AS u WHERE {focus.unit_format_violation('u')}")
    assert duckdb.connect().execute(sql, {"units": made}).fetchall() == []


def test_one_query_for_many_units_gives_what_one_at_a_time_gives():
    raws = [r for r, _ in PROVIDER_UNITS] + ["USW2-AmazonApiGatewayRequest", None]
    assert units.focus_units(raws) == {r: units.focus_unit(r) for r in raws}


def test_the_procedures_and_the_extractors_run_the_same_expression():
    """FOCUS_UNIT in procedure SQL becomes the macro's expression; the extractors' DuckDB SQL is its transpile."""
    from shared import procedures
    from shared.warehouse.dialect import parse_bigquery, to_duckdb

    from sqlglot import exp

    for proc in procedures.all_procedures().values():
        calls = [f for t in proc.trees("acme_prod") for f in t.find_all(exp.Anonymous)]
        assert not [f for f in calls if f.name.upper() == "FOCUS_UNIT"], proc.name
    tree = procedures.expand_macros(parse_bigquery("SELECT FOCUS_UNIT(t.v) AS u FROM t")[0])
    ((duck, _),) = to_duckdb(tree.sql(dialect="bigquery"))
    assert duck == f"SELECT {units.duckdb_sql('t.v')} AS u FROM t".replace("(t.v)", "t.v")


# ----------------------------------------------------------------------------------------------------------
# Every pipeline, end to end
# ----------------------------------------------------------------------------------------------------------
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
AWS, AZURE, GCP = "cloud/aws/cost/billing", "cloud/azure/cost/billing", "cloud/gcp/cost/billing"
UNIT_COLUMNS = ("PricingUnit", "ConsumedUnit", "CommitmentDiscountUnit")

# The units AWS writes (CUR pricing/unit; its FOCUS export copies them), per kind of charge.
AWS_UNITS = {"vm": "Hrs", "storage": "GB-Mo", "fee": "Hrs", "covered": "Hrs", "marketplace": "Request",
             "purchase": "Hrs"}
# AWS's FOCUS export: a usage type where the CUR had no pricing unit, as the issue saw it
AWS_CONSUMED = {"marketplace": "USW2-AmazonApiGatewayRequest"}
AZURE_UNITS = {"vm": "1 Hour", "storage": "1 GB/Month", "fee": "1 Hour", "covered": "1 Hour",
               "marketplace": "1K Tokens", "purchase": "1/Month"}
GCP_UNITS = {"vm": "hour", "storage": "gibibyte month", "fee": "hour", "covered": "hour",
             "marketplace": "requests", "purchase": "count"}
GCP_CONSUMED = {"vm": "seconds", "storage": "byte-seconds", "covered": "seconds", "marketplace": "requests"}
CUR2_UNITS = ["Hrs", "GB-Mo", "Request", "Second", "Lambda-GB-Second", "IOs", "Bucket-Mo", "Count", "1K tokens",
              "API Request", "Obj-Month", ""]


def _export_rows(provider: str, first: dt.date, last: dt.date, pricing: dict, consumed: dict | None = None):
    """test_focus_exports' charges, in the units the provider writes (CommitmentDiscountUnit too)."""
    from tests.test_focus_exports import charges

    rows = charges(provider, first, last)
    for r in rows:
        kind = r["ChargeDescription"].split()[0]
        if r.get("PricingUnit") is not None:
            r["PricingUnit"] = pricing.get(kind, r["PricingUnit"])
        if r.get("ConsumedUnit") is not None:
            r["ConsumedUnit"] = (consumed or {}).get(kind, r["PricingUnit"])
        if r.get("CommitmentDiscountUnit") not in (None, "USD"):
            r["CommitmentDiscountUnit"] = pricing.get(kind, r["CommitmentDiscountUnit"])
    return rows


def _cur2_rows():
    """CUR 2.0 line items: test_aws_billing's, and one usage line per unit in CUR2_UNITS."""
    from tests.test_aws_billing import cur2_rows

    rows = cur2_rows()
    base = rows[0]
    for i, unit in enumerate(CUR2_UNITS):
        rows.append(dict(base, identity_line_item_id=f"unit{i}", pricing_unit=unit, line_item_usage_amount="3",
                         line_item_unblended_rate="0.5", line_item_unblended_cost="1.5",
                         pricing_public_on_demand_rate="0.5", pricing_public_on_demand_cost="1.5",
                         line_item_line_item_description=f"unit {unit or 'none'}", line_item_usage_type=f"use-{i}"))
    return rows


def _csv_sum(path: Path, column: str) -> Decimal:
    """SUM(column) of a sample CSV, each value first rounded to NUMERIC as the extractors land it."""
    from tests.test_focus_exports import q

    with path.open(newline="", encoding="utf-8-sig") as f:
        return sum((q(r[column]) for r in csv.DictReader(f) if r[column].strip()), Decimal(0))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The demo's warehouse after every pipeline ran, plus the FOCUS exports and a CUR 2.0 file; what each
    landing's fixture bills, by (pipeline, credential)."""
    import os

    from rich.console import Console

    from cli.demo import run_demo
    from shared import runtime
    from tests.test_aws_billing import CUR2_HEADER, cur2_gzip_bytes
    from tests.test_focus_exports import aws_shape, azure_shape, csv_bytes, gcp_parquet, parquet_bytes, q

    home = tmp_path_factory.mktemp("units-demo")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("CLOUDACT_HOME", "CLOUDACT_TENANCY"):  # the demo sets both: put them back afterwards
            mp.setenv(name, os.environ.get(name, ""))
        mp.setenv("CLOUDACT_HOME", str(home))
        mp.setenv("CLOUDACT_BACKEND", "embedded")
        previous = runtime.use(None)
        try:
            # the demo's runs may fail at the gate for rules other than the units' (its rows stay written):
            # the tests below check the units themselves, and that every pipeline wrote rows
            run_demo(Console(file=io.StringIO(), width=200))
            rt = runtime.get()
            wh = rt.warehouse
            billed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)

            feb = (dt.date(2024, 2, 27), dt.date(2024, 3, 2))
            rows = _export_rows("aws", *feb, AWS_UNITS, AWS_CONSUMED)
            header, shaped = aws_shape(rows, "1.2")
            folder = home / "aws-focus"
            folder.mkdir()
            (folder / "focus-00001.csv.gz").write_bytes(gzip.compress(csv_bytes(header, shaped)))
            kit.land_and_convert(wh, AWS, "cred_aws_focus", {"source": folder.as_uri()}, *feb)
            billed[(AWS, "cred_aws_focus")] = sum(q(r["BilledCost"]) for r in rows)

            rows = _export_rows("azure", *feb, AZURE_UNITS)
            header, shaped = azure_shape(rows, "1.2-preview")
            folder = home / "azure-focus"
            folder.mkdir()
            (folder / "part_0_0001.snappy.parquet").write_bytes(parquet_bytes(header, shaped))
            kit.land_and_convert(wh, AZURE, "cred_azure_focus", {"source": folder.as_uri()}, *feb)
            billed[(AZURE, "cred_azure_focus")] = sum(q(r["BilledCost"]) for r in rows)

            rows = _export_rows("gcp", *feb, GCP_UNITS, GCP_CONSUMED)
            gcp_parquet(home / "gcp-focus", rows)
            kit.land_and_convert(wh, GCP, "cred_gcp_focus", {"source": (home / "gcp-focus").as_uri()}, *feb)
            billed[(GCP, "cred_gcp_focus")] = sum(q(r["BilledCost"]) for r in rows)

            cur2 = _cur2_rows()
            folder = home / "cur2"
            folder.mkdir()
            (folder / "cur2-00001.csv.gz").write_bytes(cur2_gzip_bytes(cur2))
            mar = (dt.date(2024, 3, 1), dt.date(2024, 3, 3))
            kit.land_and_convert(wh, AWS, "cred_cur2", {"source": folder.as_uri()}, *mar)
            billed[(AWS, "cred_cur2")] = sum(q(r["line_item_unblended_cost"]) for r in cur2
                                             if "2024-03-01" <= r["line_item_usage_start_date"][:10] <= "2024-03-03")
            assert list(CUR2_HEADER)  # the CUR 2.0 columns the rows are written in
            try:
                yield wh, dict(billed)
            finally:
                rt.close()
        finally:
            runtime.use(previous)


def test_every_unit_every_pipeline_writes_follows_the_unit_format(written):
    wh, _ = written
    rows = wh.query("SELECT DISTINCT x_pipeline_id AS pipeline, PricingUnit, ConsumedUnit, CommitmentDiscountUnit "
                    "FROM `acme_prod.cost_data_standard_1_3`")
    pipelines = {r["pipeline"] for r in rows}
    assert len(pipelines) >= 12  # every cloud, every GenAI provider the demo runs, subscriptions
    bad = sorted({(r["pipeline"], c, r[c], unit_format_problem(r[c])) for r in rows for c in UNIT_COLUMNS
                  if r[c] is not None and unit_format_problem(r[c])})
    assert not bad, bad
    # a quantity has a unit and a unit a quantity (FOCUS: Unit null iff Quantity null)
    n = wh.query("SELECT COUNTIF((PricingQuantity IS NULL) != (PricingUnit IS NULL)) AS p, "
                 "COUNTIF((ConsumedQuantity IS NULL) != (ConsumedUnit IS NULL)) AS c "
                 "FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert n == {"p": 0, "c": 0}


def test_one_provider_unit_is_one_focus_unit_on_the_cur_and_on_the_focus_export(written):
    wh, _ = written
    by_path = {}
    for cred in ("cred_cur2", "cred_aws_focus"):
        got = wh.query("SELECT DISTINCT PricingUnit FROM `acme_prod.cost_data_standard_1_3` "
                       "WHERE x_credential_id = @c AND PricingUnit IS NOT NULL", {"c": cred})
        by_path[cred] = {r["PricingUnit"] for r in got}
    # 'Hrs', 'GB-Mo' and 'Request' come by both paths, as the same units
    assert {"Hours", "GB-Months", "Requests"} <= by_path["cred_cur2"] & by_path["cred_aws_focus"]
    rows = {r["ChargeDescription"]: r for r in wh.query(
        "SELECT ChargeDescription, PricingUnit, ConsumedUnit FROM `acme_prod.cost_data_standard_1_3` "
        "WHERE x_credential_id = 'cred_cur2' AND ChargeDescription LIKE 'unit %'")}
    assert {d.removeprefix("unit "): r["PricingUnit"] for d, r in rows.items()} == {
        "Hrs": "Hours", "GB-Mo": "GB-Months", "Request": "Requests", "Second": "Seconds",
        "Lambda-GB-Second": "GB-Seconds", "IOs": "IOs", "Bucket-Mo": "Bucket-Months", "Count": "Counts",
        "1K tokens": "1000 Tokens", "API Request": "Requests", "Obj-Month": "Object-Months", "none": "Units"}
    # AWS's export named the marketplace usage by its usage type: the pricing unit stands for it
    mkt = wh.query("SELECT DISTINCT PricingUnit, ConsumedUnit FROM `acme_prod.cost_data_standard_1_3` "
                   "WHERE x_credential_id = 'cred_aws_focus' AND ChargeDescription LIKE 'marketplace %'")
    assert mkt == [{"PricingUnit": "Requests", "ConsumedUnit": "Requests"}]
    # the reservation's unit is AWS's 'Hrs' too
    ri = wh.query("SELECT DISTINCT CommitmentDiscountUnit AS u FROM `acme_prod.cost_data_standard_1_3` "
                  "WHERE x_credential_id = 'cred_aws_focus' AND ChargeDescription LIKE 'purchase %'")
    assert ri == [{"u": "Hours"}]


def test_units_of_the_other_exports_and_the_samples(written):
    wh, _ = written

    def units_of(where: str, params=None) -> set:
        got = wh.query(f"SELECT DISTINCT PricingUnit AS u FROM `acme_prod.cost_data_standard_1_3` WHERE {where} "
                       "AND PricingUnit IS NOT NULL", params or {})
        return {r["u"] for r in got}

    assert units_of("x_credential_id = 'cred_azure_focus'") == {"Hours", "GB-Months", "1000 Tokens", "Units/Month",
                                                                "Units"}
    assert units_of("x_credential_id = 'cred_gcp_focus'") == {"Hours", "GiB-Months", "Requests", "Counts", "Units"}
    consumed = wh.query("SELECT DISTINCT ConsumedUnit AS u FROM `acme_prod.cost_data_standard_1_3` "
                        "WHERE x_credential_id = 'cred_gcp_focus' AND ConsumedUnit IS NOT NULL")
    # + the PricingUnit of the used Usage rows the export gives no consumed quantity (1.3: they consume 0 of it)
    assert {r["u"] for r in consumed} == {"Seconds", "B-Seconds", "Requests", "Units"}
    # the legacy AWS sample's pricing/unit values: Request and API Request(s) are Requests, GB-Mo GB-Months
    from cli.demo import SAMPLE_WINDOWS

    window = {k: dt.date.fromisoformat(v) for k, v in SAMPLE_WINDOWS["aws"].items()}
    demo_aws = "x_pipeline_id = @p AND x_credential_id NOT IN ('cred_cur2', 'cred_aws_focus')"
    aws = units_of(f"{demo_aws} AND DATE(ChargePeriodStart) BETWEEN @start_date AND @end_date", {"p": AWS, **window})
    # the demo's Bedrock CUR lines (its GenAI usage billed on AWS) are priced per 1K tokens
    assert units_of(f"{demo_aws} AND DATE(ChargePeriodStart) > @end_date", {"p": AWS, **window}) == {"1000 Tokens"}
    assert aws == {"Requests", "GB", "GB-Months", "Object-Months", "Dashboards", "Events", "Keys", "Operations"}
    # Azure EA sample: 1 Hour, 1 GB, 10K, 1K (the blocks go to PricingQuantity)
    azure = units_of("x_pipeline_id = @p AND x_credential_id != 'cred_azure_focus'", {"p": AZURE})
    assert azure == {"Hours", "GB", "Units"}


def test_totals_do_not_change(written):
    """SUM(BilledCost) of every landing is its fixture's, summed here from the files."""
    wh, billed = written
    got = {(r["p"], r["c"]): r["s"] for r in wh.query(
        "SELECT x_pipeline_id AS p, x_credential_id AS c, SUM(BilledCost) AS s "
        "FROM `acme_prod.cost_data_standard_1_3` GROUP BY 1, 2")}
    for key, total in billed.items():
        assert got[key] == total, key
    samples = {AWS: _csv_sum(SAMPLES / "aws" / "sample-anonymous-aws-export-dataset.csv", "lineItem/UnblendedCost"),
               AZURE: _csv_sum(SAMPLES / "azure" / "sample-anonymous-ea-export-dataset.csv", "CostInBillingCurrency"),
               "cloud/oci/cost/billing": _csv_sum(SAMPLES / "oci" / "reports_cost-csv_0000000030000269.csv",
                                                  "cost/myCost")}
    from cli.demo import SAMPLE_WINDOWS

    for pipeline, total in samples.items():  # the demo's sample months (it also bills its GenAI usage in 2026)
        window = SAMPLE_WINDOWS[pipeline.split("/")[1]]
        demo = wh.query("SELECT SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p "
                        "AND DATE(ChargePeriodStart) BETWEEN @a AND @b AND x_credential_id NOT IN UNNEST(@fixtures)",
                        {"p": pipeline, "a": dt.date.fromisoformat(window["start_date"]),
                         "b": dt.date.fromisoformat(window["end_date"]), "fixtures": sorted({c for _, c in billed})})
        assert demo[0]["s"] == total, pipeline
