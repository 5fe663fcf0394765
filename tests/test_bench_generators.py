"""tools.{azure_export,gcp_export,oci_report}_generator: what they write is what the extractors read from a
file:// folder, it converts to FOCUS rows that pass the gate, SUM(BilledCost) per billing period equals the
total in the generated files exactly, and the files are the same bytes for the same seed."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pytest

from shared import focus
from tests import cloud_kit as kit
from tools import azure_export_generator as azure_gen
from tools import gcp_export_generator as gcp_gen
from tools import oci_report_generator as oci_gen

MONTH = dt.date(2024, 3, 1)
RANGE = (MONTH, dt.date(2024, 3, 31))
ROWS = 3000


def file_totals(sql: str) -> dict[dt.date, tuple[int, Decimal]]:
    """(rows, cost) per billing period, straight from the generated files with DuckDB."""
    return {p: (n, Decimal(c)) for p, n, c in duckdb.connect().execute(sql).fetchall()}


def azure_totals(files, schema: str) -> dict:
    cost, date = ("CostInBillingCurrency", "Date") if schema == "ea" else ("costInBillingCurrency", "date")
    paths = ", ".join(f"'{p}'" for p in files)
    return file_totals(f"""SELECT date_trunc('month', strptime("{date}", '%m/%d/%Y'))::DATE, COUNT(*),
                                  SUM(CAST(CAST("{cost}" AS DOUBLE) AS DECIMAL(38, 10)))
                           FROM read_csv([{paths}], all_varchar = true, header = true) GROUP BY 1""")


def gcp_totals(files) -> dict:
    paths = ", ".join(f"'{p}'" for p in files)
    return file_totals(f"""SELECT strptime(invoice.month, '%Y%m')::DATE, COUNT(*),
                                  SUM(CAST(cost AS DECIMAL(38, 10))
                                      + COALESCE(list_sum([CAST(c.amount AS DECIMAL(38, 10)) FOR c IN credits]), 0))
                           FROM read_parquet([{paths}]) GROUP BY 1""")


def oci_totals(files) -> dict:
    paths = ", ".join(f"'{p}'" for p in files)
    return file_totals(f"""SELECT date_trunc('month', CAST(replace("lineItem/intervalUsageStart", 'Z', '')
                                                           AS TIMESTAMP))::DATE, COUNT(*),
                                  SUM(CAST(CAST("cost/myCost" AS DOUBLE) AS DECIMAL(38, 10)))
                           FROM read_csv([{paths}], all_varchar = true, header = true) GROUP BY 1""")


def land_convert_check(rt, pipeline: str, folder) -> tuple[dict, dict]:
    """Run the real extractor and procedure; the gate passes; FOCUS and source totals per billing period."""
    wh = rt.warehouse
    kit.land_and_convert(wh, pipeline, "cred_gen", {"source": folder.as_uri()}, *RANGE)
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": pipeline})
    assert report.ok, report.summary()
    return kit.focus_by_period(wh, pipeline), kit.source_by_period(wh, pipeline)


@pytest.mark.parametrize("schema,fmt", [("ea", "csv.gz"), ("mca", "csv")])
def test_azure_export_converts_and_reconciles(rt, acme, tmp_path, schema, fmt):
    files = azure_gen.generate(ROWS, tmp_path / "export", seed=5, month=MONTH, schema=schema, fmt=fmt, parts=2)
    assert len(files) == 2 and all(f.name.endswith(fmt) for f in files)
    assert (files[0].parent / "manifest.json").exists()
    expected = azure_totals(files, schema)
    assert sum(n for n, _ in expected.values()) == ROWS
    got, source = land_convert_check(rt, "cloud/azure/cost/billing", tmp_path / "export")
    assert {p: (n, c) for p, (n, c, _) in got.items()} == expected  # one FOCUS row per cost-details row
    assert source == expected
    charge = "ChargeType" if schema == "ea" else "chargeType"
    paths = ", ".join(f"'{p}'" for p in files)
    types = {t for (t,) in duckdb.connect().execute(
        f'SELECT DISTINCT "{charge}" FROM read_csv([{paths}], all_varchar = true, header = true)').fetchall()}
    assert "Usage" in types and ("Refund" in types) == (schema == "mca")
    kinds = {r["ChargeCategory"] for r in rt.warehouse.query(
        "SELECT DISTINCT ChargeCategory FROM `acme_prod.cost_data_standard_1_3`")}
    # the generated refunds return a reservation or savings plan (benefitId): corrections of its purchase
    assert kinds == {{"Usage": "Usage", "Purchase": "Purchase", "Refund": "Purchase"}[t] for t in types}


def test_gcp_export_converts_and_reconciles(rt, acme, tmp_path):
    files = gcp_gen.generate(ROWS, tmp_path / "export", seed=5, month=MONTH, files=2)
    expected = gcp_totals(files)
    # the first UTC hours of the month are the previous invoice month (US/Pacific), as in the real export
    assert set(expected) == {dt.date(2024, 2, 1), MONTH} and sum(n for n, _ in expected.values()) == ROWS
    got, source = land_convert_check(rt, "cloud/gcp/cost/billing", tmp_path / "export")
    assert {p: c for p, (_, c, _) in got.items()} == {p: c for p, (_, c) in expected.items()}
    assert source == expected
    rows = rt.warehouse.query("SELECT ChargeCategory AS k, COUNT(*) AS n FROM `acme_prod.cost_data_standard_1_3` "
                              "GROUP BY 1")
    kinds = {r["k"]: r["n"] for r in rows}
    assert {"Usage", "Credit", "Tax"} <= set(kinds)
    assert sum(kinds.values()) > ROWS  # one Credit row per credit entry besides the export rows


def test_oci_reports_convert_and_reconcile(rt, acme, tmp_path):
    files = oci_gen.generate(ROWS, tmp_path / "bling", seed=5, month=MONTH, files=3)
    assert [f.name for f in files] == [f"{oci_gen.FIRST_REPORT + k:016d}-00001.csv.gz" for k in range(3)]
    expected = oci_totals(files)
    assert set(expected) == {MONTH} and expected[MONTH][0] == ROWS
    got, source = land_convert_check(rt, "cloud/oci/cost/billing", tmp_path / "bling")
    assert {p: (n, c) for p, (n, c, _) in got.items()} == expected
    assert source == expected
    classes = rt.warehouse.query("SELECT COUNT(ChargeClass) AS corrections, COUNT(Tags) AS tagged, "
                                 "COUNT(DISTINCT ServiceName) AS services FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert classes["corrections"] > 0 and classes["tagged"] > ROWS // 2 and classes["services"] >= 10


@pytest.mark.parametrize("make", [
    lambda out, seed: azure_gen.generate(400, out, seed=seed, parts=2),
    lambda out, seed: gcp_gen.generate(400, out, seed=seed),
    lambda out, seed: oci_gen.generate(400, out, seed=seed, files=2),
], ids=["azure", "gcp", "oci"])
def test_generators_are_deterministic_by_seed(tmp_path, make):
    def contents(folder, seed):
        files = make(folder, seed)
        # gzip and Parquet headers hold no time stamp from DuckDB, so equal rows give equal bytes
        return [f.relative_to(folder).as_posix() for f in files], [f.read_bytes() for f in files]

    a, b, c = contents(tmp_path / "a", 3), contents(tmp_path / "b", 3), contents(tmp_path / "c", 4)
    assert a == b
    assert a[1] != c[1]


def test_bench_plans_every_cloud_and_says_why_focus_converter_is_not_run(tmp_path):
    from tools import bench

    names = [c.name for c in bench.plan(["aws", "azure", "gcp", "oci"], None, ["csv", "parquet"], quick=False)]
    assert names == ["aws-cur-csv-1M", "aws-cur-csv-5M", "aws-cur2-parquet-1M", "aws-cur2-parquet-5M",
                     "azure-ea-csvgz-1M", "gcp-detailed-parquet-1M", "oci-cost-csvgz-1M"]
    quick = bench.plan(["gcp", "oci"], [2_000_000], ["csv"], quick=True)
    assert [(c.name, c.rows, c.fmt) for c in quick] == [("gcp-detailed-parquet-100k", 100_000, "parquet"),
                                                       ("oci-cost-csvgz-100k", 100_000, "csv.gz")]
    assert [c.rows for c in bench.plan(["azure"], [250_000, 500_000], [], quick=False)] == [250_000, 500_000]
    with pytest.raises(SystemExit, match="unknown cloud"):
        bench.plan(["ibm"], None, [], quick=False)
    fc, out = tmp_path / "focus-converter", tmp_path / "out"
    oci, gcp = quick[1], quick[0]
    assert "cannot scan compressed csv" in bench._fc_cmd(fc, oci, [tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"], out)
    cmd = bench._fc_cmd(fc, gcp, [tmp_path / "src" / "export-000000000000.parquet"], out)
    assert cmd[cmd.index("--provider") + 1] == "gcp" and cmd[cmd.index("--data-path") + 1] == str(tmp_path / "src")


@pytest.mark.parametrize("fmt, ours, floor, fc, verdicts", [
    # issue 17: at least 2x faster than focus-converter on every input, CSV within 1.3x of the floor
    ("csv", 5.0, 4.0, 10.0, ["PASS floor 1.25x (<= 1.3x)", "PASS fc 2.0x (>= 2x)"]),
    ("csv", 5.5, 4.0, 10.0, ["FAIL floor 1.38x (<= 1.3x)", "FAIL fc 1.8x (>= 2x)"]),
    ("parquet", 4.0, 1.0, 7.9, ["FAIL fc 2.0x (>= 2x)"]),  # 1.975x: the ratio is not rounded up to pass
    ("parquet", 2.0, 1.0, 8.0, ["PASS fc 4.0x (>= 2x)"]),  # no floor ratio for Parquet inputs
])
def test_a_case_is_judged_by_issue_17s_targets(fmt, ours, floor, fc, verdicts):
    from tools import bench

    def measured(seconds: float, key: str = "total_s", rss: float = 400):
        return bench.Measured(True, seconds, rss, rss, {key: seconds})

    case = bench.Case("c", "aws", fmt, 1_000_000, ours=measured(ours), floor=measured(floor), fc=measured(fc, "x"))
    assert bench._verdicts(case) == [*verdicts, "PASS mem 400 MiB (< 512)"]
