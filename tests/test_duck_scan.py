"""DuckScan: the embedded warehouse lands CUR files natively (INSERT ... SELECT over the file), any other
warehouse gets the same rows as Arrow batches. Both paths must give the same rows, totals and errors."""
from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import aws
from jobs.runner import land
from shared import registry, schemas
from shared.lineage import LINEAGE_NAMES
from shared.warehouse.base import NativeScan
from tests.cloud_kit import extracted
from tools import cur_generator

PIPELINE = "cloud/aws/cost/billing"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "samples" / "aws"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
AT = dt.datetime(2024, 4, 2, 8, 30, tzinfo=dt.UTC)


def _ctx(folder: Path, start, end, run_id="run_a"):
    return ExtractContext("acme", PIPELINE, "cred_aws", run_id, start, end, {"source": f"file://{folder}"})


def _arrow_path(folder: Path, start, end) -> tuple[pa.Table, pa.Table]:
    """What a non-DuckDB warehouse receives: stamped Arrow batches; and the totals it sums from them."""
    raw, totals = extracted(_ctx(folder, start, end), "aws_billing_raw", stamped_at=AT)
    assert raw.schema.names == schemas.get("aws_billing_raw").names
    return raw, totals


def _native_path(wh, folder: Path, start, end) -> tuple[pa.Table, pa.Table, dict]:
    counts = land(wh, registry.get(PIPELINE), _ctx(folder, start, end), ingested_at=AT)
    raw = wh.query_arrow("SELECT * FROM `acme_prod.aws_billing_raw`")
    totals = wh.query_arrow("SELECT * EXCEPT (x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, "
                            "x_run_id, x_ingested_at, x_ingestion_date) FROM `acme_prod.cloud_source_totals`")
    return raw, totals, counts


def _rows(table: pa.Table, names) -> list[tuple]:
    cols = [table.column(n).to_pylist() for n in names]
    return sorted(zip(*cols), key=repr)


@pytest.mark.parametrize("case", ["sample_csv", "generated_parquet"])
def test_native_and_arrow_paths_land_identical_rows(rt, acme, tmp_path, case):
    if case == "sample_csv":
        folder, (start, end) = SAMPLE_DIR, NOV
    else:
        folder, (start, end) = tmp_path / "cur2", MARCH
        folder.mkdir()
        cur_generator.generate(3000, "parquet", folder / "cur-00001.snappy.parquet", seed=7)
    arrow_raw, arrow_totals = _arrow_path(folder, start, end)
    native_raw, native_totals, counts = _native_path(rt.warehouse, folder, start, end)

    assert counts["aws_billing_raw"] == arrow_raw.num_rows == native_raw.num_rows > 0
    names = schemas.get("aws_billing_raw").names
    assert set(LINEAGE_NAMES) <= set(names)
    assert _rows(native_raw, names) == _rows(arrow_raw, names)
    # every lineage value is the run's, and x_pipeline_run_date is the row's own usage day
    assert set(native_raw.column("x_run_id").to_pylist()) == {"run_a"}
    assert native_raw.column("x_pipeline_run_date").to_pylist() == native_raw.column("usage_date").to_pylist()

    tnames = schemas.get("cloud_source_totals").arrow_schema(include_lineage=False).names
    assert _rows(native_totals, tnames) == _rows(arrow_totals, tnames)
    # the totals are the landed rows, summed exactly
    landed = sum(native_raw.column("unblended_cost").to_pylist(), Decimal(0))
    assert sum(native_totals.column("source_cost").to_pylist(), Decimal(0)) == landed
    assert sum(native_totals.column("source_rows").to_pylist()) == native_raw.num_rows


def _sample_with(tmp_path: Path, column: str, value: str) -> Path:
    """The first 40 sample rows, the last one with `column` set to `value`."""
    with open(SAMPLE_DIR / "sample-anonymous-aws-export-dataset.csv", newline="") as fh:
        rows = list(csv.reader(fh))[:41]
    rows[-1][rows[0].index(column)] = value
    folder = tmp_path / "bad"
    folder.mkdir()
    with open(folder / "cur.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return folder


@pytest.mark.parametrize("column,value,expected", [
    ("lineItem/UsageStartDate", "", "rows have no lineItem/UsageStartDate"),
    ("bill/PayerAccountId", "", "rows have an empty bill/PayerAccountId"),
    ("lineItem/UsageStartDate", "yesterday",
     "column lineItem/UsageStartDate has a value that is not a timestamp (row 40)"),
    ("lineItem/UnblendedCost", "twelve", "column lineItem/UnblendedCost has a value that is not a number (row 40)"),
])
def test_bad_rows_fail_the_same_way_on_both_paths_and_keep_earlier_data(rt, acme, tmp_path, column, value,
                                                                        expected):
    wh = rt.warehouse
    _native_path(wh, SAMPLE_DIR, *NOV)  # earlier good data of the same slice
    before = wh.query("SELECT COUNT(*) AS n, SUM(unblended_cost) AS c FROM `acme_prod.aws_billing_raw`")[0]
    folder = _sample_with(tmp_path, column, value)
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(folder, *NOV)
    with pytest.raises(ExtractError) as native_err:
        land(wh, registry.get(PIPELINE), _ctx(folder, *NOV))
    assert str(native_err.value) == str(arrow_err.value)
    assert "cur.csv" in str(native_err.value)
    if expected:
        assert expected in str(native_err.value)
    if value:  # the file's contents are not repeated in the error
        assert value not in str(native_err.value)
    assert "cloudact-check" not in str(native_err.value)
    after = wh.query("SELECT COUNT(*) AS n, SUM(unblended_cost) AS c FROM `acme_prod.aws_billing_raw`")[0]
    assert after == before and before["n"] == 1281


def test_rerun_replaces_the_slice_natively(rt, acme):
    wh = rt.warehouse
    first = _native_path(wh, SAMPLE_DIR, *NOV)[2]
    second = land(wh, registry.get(PIPELINE), _ctx(SAMPLE_DIR, *NOV, run_id="run_b"), ingested_at=AT)
    assert first == second
    rows = wh.query("SELECT x_run_id, COUNT(*) AS n FROM `acme_prod.aws_billing_raw` GROUP BY 1")
    assert rows == [{"x_run_id": "run_b", "n": first["aws_billing_raw"]}]


def test_is_empty_leaves_the_connection_free_for_the_next_part(tmp_path):
    """The parts loop asks is_empty on the connection that reads the next file: a half-read result would
    make that read fail (DuckDB: "connection has an unfinished result")."""
    from jobs.cloud import duck_sql as sq
    from jobs.cloud.common import DataFile

    sample = SAMPLE_DIR / "sample-anonymous-aws-export-dataset.csv"
    con = sq.connect()
    try:
        assert sq.is_empty(con, str(sample), DataFile(str(sample), "csv")) is False
        assert con.sql("SELECT 42").fetchall() == [(42,)]
    finally:
        con.close()


def test_a_file_without_rows_in_range_is_followed_by_the_next_file_on_both_paths(rt, acme, tmp_path):
    """A header-only file is reported empty, a file with rows outside the range is not, and the files after
    them are still read, on both landing paths."""
    sample = SAMPLE_DIR / "sample-anonymous-aws-export-dataset.csv"
    header = sample.read_text().splitlines()[0]
    (tmp_path / "a_header_only.csv").write_text(header + "\n")
    (tmp_path / "b_sample.csv").write_bytes(sample.read_bytes())
    (tmp_path / "c_sample_again.csv").write_bytes(sample.read_bytes())
    # a range with no sample rows first: every part yields nothing
    ctx = _ctx(tmp_path, dt.date(2023, 12, 1), dt.date(2023, 12, 31))
    assert list(aws.extract(ctx)["aws_billing_raw"]) == []
    assert any("a_header_only.csv is empty" in w for w in ctx.warnings)
    assert not any("b_sample.csv" in w for w in ctx.warnings)

    arrow_raw, _ = _arrow_path(tmp_path, *NOV)
    native_raw, _, counts = _native_path(rt.warehouse, tmp_path, *NOV)
    assert arrow_raw.num_rows == native_raw.num_rows == counts["aws_billing_raw"] == 2 * 1281


def test_round9_matches_python_decimal_half_even_on_every_digit():
    """NUMERIC casts of text and floats: DuckDB's result must be Decimal(text).quantize(1e-9, half even)."""
    import random
    from decimal import ROUND_HALF_EVEN

    from jobs.cloud import duck_sql as sq

    rnd = random.Random(11)
    texts = ["0.0000000005", "-0.0000000005", "0.0000000015", "0.000000000500000001", "2.5e-9", "-3.5E-9",
             "123456789012.0000000005", "999999999.9999999995", "1000000000.0000000005", "7", "-0.1",
             "0.000000000499999999999999999"]
    for _ in range(3000):
        digits = rnd.randint(0, 20)
        whole = rnd.choice(["0", str(rnd.randint(0, 10**rnd.randint(1, 12)))])
        frac = "".join(rnd.choice("0123456789") for _ in range(digits))
        if digits >= 10 and rnd.random() < 0.5:  # force a tie at the 10th decimal
            frac = frac[:9] + "5" + ("0" * (digits - 10) if rnd.random() < 0.5 else frac[10:])
        texts.append(("-" if rnd.random() < 0.3 else "") + whole + ("." + frac if frac else ""))
    floats = [rnd.uniform(-1e6, 1e6) * 10 ** -rnd.randint(0, 12) for _ in range(2000)]
    con = sq.connect()
    try:
        got = con.execute(f"SELECT {sq.round9('t')} FROM unnest(?) AS u(t)", [texts]).fetchall()
        got_f = con.execute(f"SELECT {sq.money('x', 'DOUBLE')} FROM unnest(?) AS u(x)", [floats]).fetchall()
    finally:
        con.close()
    q = Decimal("1e-9")
    assert [r[0] for r in got] == [Decimal(t).quantize(q, ROUND_HALF_EVEN) for t in texts]
    assert [r[0] for r in got_f] == [Decimal(repr(x)).quantize(q, ROUND_HALF_EVEN) for x in floats]


def test_the_arrow_readers_money_cast_is_the_same_exact_cast():
    """jobs.cloud.common.money (the FOCUS-export reader's Arrow path) rounds exactly like duck_sql.round9,
    in row order."""
    from decimal import ROUND_HALF_EVEN

    from jobs.cloud.common import money

    texts = ["0.000000000500000001", "0.0000000005", " 2.675 ", "", None, "-1e-9", "123.4567890125"] * 3
    got = money(pa.array(texts), "BilledCost", "f.csv").to_pylist()
    want = [None if t in (None, "") else Decimal(t.strip()).quantize(Decimal("1e-9"), ROUND_HALF_EVEN)
            for t in texts]
    assert got == want
    floats = [0.1, 2.675, 5.000001e-10, -3.5e-9]
    assert money(pa.array(floats), "c", "f").to_pylist() == [
        Decimal(repr(x)).quantize(Decimal("1e-9"), ROUND_HALF_EVEN) for x in floats]
    with pytest.raises(ExtractError) as err:
        money(pa.array(["1.5", "2", "twelve", "3", "x"]), "BilledCost", "f.csv")
    assert str(err.value) == "f.csv: column BilledCost has a value that is not a number (row 3)"


def test_the_warehouse_and_the_runner_ask_for_a_capability_not_the_class():
    """The embedded warehouse and the runner recognise rows they may hand to DuckDB by what they can do
    (shared.warehouse.base.NativeScan), so neither imports the scan's class."""
    for module in ("shared/warehouse/duckdb.py", "jobs/runner.py"):
        text = (Path(__file__).resolve().parent.parent / module).read_text()
        assert "DuckScan" not in text and "NativeScan" in text, module
    assert isinstance(aws.extract(_ctx(SAMPLE_DIR, *NOV))["aws_billing_raw"], NativeScan)
