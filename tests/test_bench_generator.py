"""tools.cur_generator: its files are real CUR shapes (the AWS extractor reads them, the procedure converts
them) with totals that match the file, and it is deterministic by seed. Also the bench's table helpers."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pytest

from jobs.base import ExtractContext
from jobs.cloud import aws
from shared import source_totals
from shared.lineage import Lineage
from shared.naming import org_dataset, table_ref
from shared.warehouse.base import Slice
from tools import bench, cur_generator

PIPELINE = "cloud/aws/cost/billing"
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
ROWS = 2000


def file_totals(path, fmt):
    """(rows, unblended total, {line item type: rows}) straight from the file, with DuckDB."""
    if fmt == "parquet":
        src, cost, kind = f"read_parquet('{path}')", "line_item_unblended_cost", "line_item_line_item_type"
        cost_sql = f"CAST(CAST({cost} AS VARCHAR) AS DECIMAL(38, 10))"
    else:
        src = f"read_csv('{path}', all_varchar = true, header = true)"
        cost, kind = '"lineItem/UnblendedCost"', '"lineItem/LineItemType"'
        cost_sql = f"CAST(CAST({cost} AS DOUBLE) AS DECIMAL(38, 10))"
    con = duckdb.connect()
    n, total = con.execute(f"SELECT COUNT(*), SUM({cost_sql}) FROM {src}").fetchone()
    kinds = dict(con.execute(f"SELECT {kind}, COUNT(*) FROM {src} GROUP BY 1").fetchall())
    return n, Decimal(total), kinds


def land_and_convert(wh, folder):
    ctx = ExtractContext("acme", PIPELINE, "cred_bench", "run_g", *MARCH, {"source": f"file://{folder}"})
    out = aws.extract(ctx)
    lineage = Lineage("acme", PIPELINE, "cred_bench", "run_g", dt.datetime.now(dt.UTC))
    owner = {"x_org_slug": "acme", "x_pipeline_id": PIPELINE, "x_credential_id": "cred_bench"}
    slc, raw = Slice(owner, "usage_date", *MARCH), "aws_billing_raw"
    writes = {raw: (slc, (lineage.stamp(b, "usage_date") for b in out[raw])),  # the Arrow path
              source_totals.TABLE: source_totals.replacement({raw: (table_ref("acme_prod", raw), slc)}, lineage)}
    counts = wh.replace_slices(org_dataset("acme"), writes)
    params = {"org_slug": "acme", "pipeline_id": PIPELINE, "credential_id": "cred_bench", "run_id": "run_g",
              "start_date": MARCH[0], "end_date": MARCH[1]}
    wh.call_procedure(org_dataset("acme"), "sp_cloud_1_convert_to_focus", params)
    return counts


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_generated_cur_ingests_and_converts_with_matching_totals(rt, acme, tmp_path, fmt):
    name = {"csv": "cur.csv", "csv.gz": "cur.csv.gz", "parquet": "cur.parquet"}[fmt]
    path = cur_generator.generate(ROWS, fmt, tmp_path / "src" / name, seed=5)
    n, total, kinds = file_totals(path, fmt)
    assert n == ROWS
    # every line-item type the conversion distinguishes is present
    assert {"Usage", "DiscountedUsage", "RIFee", "SavingsPlanCoveredUsage", "SavingsPlanNegation",
            "SavingsPlanRecurringFee", "Credit", "Tax", "EdpDiscount"} <= set(kinds)
    if fmt == "csv":
        assert 450 <= path.stat().st_size / ROWS <= 900  # provider-shaped width (real exports: ~500-800 B/row)

    wh = rt.warehouse
    counts = land_and_convert(wh, tmp_path / "src")
    assert counts["aws_billing_raw"] == ROWS
    raw = wh.query("SELECT COUNT(*) AS n, SUM(unblended_cost) AS s, COUNT(tags) AS tagged "
                   "FROM `acme_prod.aws_billing_raw`")[0]
    src = wh.query("SELECT SUM(source_rows) AS n, SUM(source_cost) AS s FROM `acme_prod.cloud_source_totals`")[0]
    focus = wh.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s, COUNT(DISTINCT ChargeCategory) AS cats, "
                     "COUNT(CommitmentDiscountId) AS committed, COUNT(Tags) AS tagged "
                     "FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert raw["n"] == src["n"] == focus["n"] == ROWS
    assert raw["s"] == src["s"] == focus["s"] == total
    assert focus["cats"] == 4  # Usage, Purchase, Credit, Tax
    assert focus["committed"] > 0 and focus["tagged"] == raw["tagged"] > 0


def test_generator_is_deterministic_by_seed(tmp_path):
    a = cur_generator.generate(500, "csv", tmp_path / "a.csv", seed=3).read_bytes()
    b = cur_generator.generate(500, "csv", tmp_path / "b.csv", seed=3).read_bytes()
    c = cur_generator.generate(500, "csv", tmp_path / "c.csv", seed=4).read_bytes()
    assert a == b and a != c
    assert a.splitlines()[0].startswith(b"identity/LineItemId,identity/TimeInterval,")


def test_bench_measures_a_subprocess_and_writes_the_doc_block(tmp_path):
    import sys

    m = bench.measure([sys.executable, "-c", "b = bytearray(64 << 20); print('{\"ok\": true, \"total_s\": 1}')"])
    assert m.ok and m.out["total_s"] == 1 and m.maxrss_mib >= 64
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written notes\n")
    bench.write_doc(doc, ["first"])
    bench.write_doc(doc, ["second"])
    text = doc.read_text()
    assert "hand-written notes" in text and "second" in text and "first" not in text
