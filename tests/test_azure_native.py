"""Azure cost details as a DuckScan: the embedded warehouse lands the files natively (INSERT ... SELECT), any
other warehouse gets the same rows as Arrow batches. Both paths must give the same rows, totals, warnings and
errors, and the values the pyarrow extractor gave (checked against values recomputed here in Python:
parse_tags/tags_json, pricing_unit, half-even NUMERIC, both date layouts, the generated costs)."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import azure
from jobs.cloud.common import tags_json
from jobs.runner import land
from shared import registry, schemas
from tests.cloud_kit import extracted
from tests import test_azure_billing as billing
from tools import azure_export_generator as azure_gen

PIPELINE = "cloud/azure/cost/billing"
RAW, TOTALS = "azure_billing_raw", "cloud_source_totals"
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
AT = dt.datetime(2024, 4, 2, 8, 30, tzinfo=dt.UTC)
LINEAGE_COLS = ("x_org_slug", "x_pipeline_id", "x_credential_id", "x_pipeline_run_date", "x_run_id",
                "x_ingested_at", "x_ingestion_date")


def _ctx(folder: Path, start, end, run_id="run_a"):
    return ExtractContext("acme", PIPELINE, "cred_az", run_id, start, end, {"source": f"file://{folder}"})


def _arrow_path(folder: Path, start, end):
    """What a non-DuckDB warehouse receives: stamped Arrow batches; the totals it sums from them; the warnings."""
    ctx = _ctx(folder, start, end)
    raw, totals = extracted(ctx, RAW, stamped_at=AT)
    assert raw.schema.names == schemas.get(RAW).names
    return raw, totals, ctx.warnings


def _native_path(wh, folder: Path, start, end, run_id="run_a"):
    ctx = _ctx(folder, start, end, run_id)
    counts = land(wh, registry.get(PIPELINE), ctx, ingested_at=AT)
    where, params = "WHERE usage_date BETWEEN @s AND @e", {"s": start, "e": end}  # this run's slice
    raw = wh.query_arrow(f"SELECT * FROM `acme_prod.azure_billing_raw` {where}", params)
    totals = wh.query_arrow(f"SELECT * EXCEPT ({', '.join(LINEAGE_COLS)}) FROM `acme_prod.cloud_source_totals` "
                            f"{where}", params)
    return raw, totals, counts, ctx.warnings


def _rows(table: pa.Table, names=None) -> list[tuple]:
    names = names or table.column_names
    return sorted(zip(*(table.column(n).to_pylist() for n in names)), key=repr)


def _same_on_both_paths(wh, folder: Path, start, end):
    arrow_raw, arrow_totals, arrow_warnings = _arrow_path(folder, start, end)
    native_raw, native_totals, counts, native_warnings = _native_path(wh, folder, start, end)
    names = schemas.get(RAW).names
    assert counts[RAW] == arrow_raw.num_rows == native_raw.num_rows
    assert _rows(native_raw, names) == _rows(arrow_raw, names)
    assert native_raw.column("x_pipeline_run_date").to_pylist() == native_raw.column("usage_date").to_pylist()
    tnames = schemas.get(TOTALS).arrow_schema(include_lineage=False).names
    assert _rows(native_totals, tnames) == _rows(arrow_totals, tnames)
    assert native_warnings == arrow_warnings
    return native_raw, native_totals, native_warnings


def money9(text: str) -> Decimal:
    """NUMERIC: the text rounded half to even on all of its digits."""
    return Decimal(text.strip()).quantize(Decimal("1e-9"), ROUND_HALF_EVEN)


# --------------------------------------------------------------------------------------------------
# Fixtures and generated exports of both layouts
# --------------------------------------------------------------------------------------------------
def test_sample_and_manifest_layout_on_both_paths(rt, acme, tmp_path):
    raw, totals, _ = _same_on_both_paths(rt.warehouse, billing.FIXTURES, *billing.SEP)
    assert raw.num_rows == 27 and sum(raw.column("cost").to_pylist()) == Decimal("1.261369264")
    assert set(raw.column("usage_date").to_pylist()) == {dt.date(2023, 9, 2)}
    assert totals.column("source_cost").to_pylist() == [Decimal("1.261369264")]

    billing.write_layout(tmp_path)
    raw, totals, _ = _same_on_both_paths(rt.warehouse, tmp_path, *billing.MAR)
    kinds = raw.column("cost_type").to_pylist()
    assert kinds.count("ActualCost") == 6 and kinds.count("AmortizedCost") == 6
    assert sum(totals.column("source_cost").to_pylist()) == billing.ACTUAL_MAR_1_3
    # the unused reservation's empty subscription, upper-cased currencies, brace JSON tags
    assert set(raw.column("billing_currency").to_pylist()) == {"EUR"}
    assert {json.loads(t)["env"] for t in raw.column("tags").to_pylist() if t} == {"prod"}


def _generated_costs(files: list[Path]) -> tuple[dict, int]:
    """(usage day, currency) -> (rows, cost), recomputed from the generated CSV text."""
    out: dict = {}
    n = 0
    for f in files:
        with (gzip.open(f, "rt", newline="") if f.name.endswith(".gz") else open(f, newline="")) as fh:
            for row in csv.DictReader(fh):
                norm = {azure.norm(k): v for k, v in row.items()}
                m, d, y = norm["date"].split("/")
                key = (dt.date(int(y), int(m), int(d)), (norm.get("billingcurrencycode") or norm["billingcurrency"]))
                rows, cost = out.get(key, (0, Decimal(0)))
                out[key] = (rows + 1, cost + money9(norm["costinbillingcurrency"]))
                n += 1
    return out, n


@pytest.mark.parametrize(("schema", "fmt"), [("ea", "csv.gz"), ("mca", "csv")])
def test_generated_exports_on_both_paths_reconcile_to_the_generated_costs(rt, acme, tmp_path, schema, fmt):
    files = azure_gen.generate(3000, tmp_path / "export", seed=11, schema=schema, fmt=fmt, parts=2)
    raw, totals, warnings = _same_on_both_paths(rt.warehouse, tmp_path / "export", *MARCH)
    expected, n = _generated_costs(files)
    assert raw.num_rows == n == 3000
    # an ActualCost export alone holding commitment purchases: their amortization is in no row (30_azure.sql)
    assert len(warnings) == 1 and "purchase row(s) and no AmortizedCost export" in warnings[0]
    got = {(d, c): (k, v) for d, c, k, v in zip(*(totals.column(x).to_pylist() for x in
                                                  ("usage_date", "currency", "source_rows", "source_cost")))}
    assert got == expected
    assert set(totals.column("billing_period").to_pylist()) == {dt.date(2024, 3, 1)}
    # every row's tags and units are what the Python functions make of its cells
    with (gzip.open(files[0], "rt", newline="") if fmt == "csv.gz" else open(files[0], newline="")) as fh:
        cells = {(r.get("ResourceId"), r.get("Tags") or r.get("tags")) for r in csv.DictReader(fh)}
    wanted = {tags_json(azure.parse_tags(t)) for _, t in cells}
    assert wanted <= set(raw.column("tags").to_pylist()) and len(wanted) > 10
    for uom, block, unit in set(zip(*(raw.column(x).to_pylist() for x in
                                      ("unit_of_measure", "pricing_block_size", "pricing_unit")))):
        assert (block, unit) == azure.pricing_unit(uom)


# --------------------------------------------------------------------------------------------------
# Quirks: tags, units, dates, money, whitespace, typed Parquet
# --------------------------------------------------------------------------------------------------
TAGS = ['"a": "1","B": "2"', '{"Env": "prod", "flag": ""}', "not json", "", "  ", "{}", '"k":"v"',
        '{"A": "x", "a": "y"}', '{"n": 5, "f": 1.5, "b": true, "z": null, "l": [1, 2]}', '{"ü": "Zürich"}',
        '{"e": "caf\\u00e9", "emoji": "\\ud83d\\ude00"}', '{"q": "has \\"quote\\"", "bs": "a\\\\b"}', "[1,2]",
        '"a": "1"}', ' {"Sp ace": " v "} ', '{" K ": "v", "": "empty key"}', '{"x": "1",}', '{"nan": NaN}',
        '"big": 12345678901234567890', '{"k": "v\\nw", "t": "\\t"}', '{"a":"1","a":"2"}', '{"ctl": "\\u0001"}',
        '"x": "1", "X": ""', '{"f": 1e20, "g": -0.0, "h": 1E5}', '{"Ab": "1", "aa": "2", "B": "3", "_": "4"}',
        '{"k": "v"} trailing', '"k": "v", ', '{"k":"v" , "m" : "n"}', '{\n"k": "v"\n}', '{"c": "a,}" , "d": "é"}', '{"del": "\x7f"}']
UOMS = ["1 Hour", "10 Hours", "1 GB/Month", "1 GB", "10K", "1K", "1/Month", "10000 Transactions", "", " 1 Hour ",
        "1 Month", "1 mb", "5 b", "1.5K", "1.", "10 Unit/Hour", "1 Units/Day", "1 GB/Year", "1/Day", "1/Week", "Hours",
        "100 TB/Hour", "1 per month", "10M", "2B Tokens", "1 vcore/hour", "1 Foo/bar baz", "1/", "/", "1 K",
        "1k Calls", "1 GiB/Hour", "1 abc", "1 xyz/2nd year", "0.5 Hour", "3 kB"]
DATES = [("03/01/2024", dt.date(2024, 3, 1)), ("2024-03-01", dt.date(2024, 3, 1)), ("3/2/2024", dt.date(2024, 3, 2)),
         ("2024-03-02T00:00:00Z", dt.date(2024, 3, 2)), ("03/03/2024 12:00:00 AM", dt.date(2024, 3, 3)),
         (" 2024-03-03 ", dt.date(2024, 3, 3))]
MONEY = ["1.5", " 2.25 ", "5.64902E-05", "0.0000000005", "0.0000000015", "0.00000000250000001", "-3", "", "1e3",
         "123456789.123456789123456789", "+4.5", ".5", "7"]
TEXTS = ["x", "\tTabbed\t", "\u00a0nbsp\u00a0", "", " ", "caf\u00e9 "]
N = max(len(TAGS), len(UOMS), len(MONEY))


def _quirk_rows() -> list[dict]:
    rows = [{"Date": DATES[i % len(DATES)][0], "BillingPeriodStartDate": "" if i % 5 == 0 else "03/01/2024",
             "BillingPeriodEndDate": "2024-03-31" if i % 2 else "03/31/2024",
             "SubscriptionId": ["sub-1", "00000000-0000-0000-0000-000000000000", "", " sub-2 "][i % 4],
             "CostInBillingCurrency": MONEY[i % len(MONEY)], "BillingCurrencyCode": ["usd", "EUR", " cad "][i % 3],
             "ChargeType": ["Usage", "Purchase", "UnusedReservation", "Refund"][i % 4],
             "PricingModel": ["OnDemand", "Reservation", "SavingsPlan", ""][i % 4],
             "UnitOfMeasure": UOMS[i % len(UOMS)], "Tags": TAGS[i % len(TAGS)], "MeterName": TEXTS[i % len(TEXTS)],
             "ResourceId": f"r-{i}"} for i in range(N)]
    # out of the run's range: its bad values are never looked at
    rows.append(dict(rows[0], Date="04/01/2024", CostInBillingCurrency="junk", BillingCurrencyCode="", ResourceId="out"))
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buf.getvalue().encode()) if path.name.endswith(".gz") else buf.getvalue().encode())


def _text(v: str) -> str | None:
    return v.strip() or None


def test_quirks_are_read_as_the_python_reader_read_them(rt, acme, tmp_path):
    rows = _quirk_rows()
    _write_csv(tmp_path / "q" / "amortized" / "export.csv.gz", rows)  # the path names the dataset
    raw, totals, _ = _same_on_both_paths(rt.warehouse, tmp_path / "q", *MARCH)
    got = {r["resource_id"]: r for r in raw.to_pylist()}
    assert len(got) == N and "out" not in got
    for i, src in enumerate(rows[:N]):
        r = got[f"r-{i}"]
        assert r["usage_date"] == DATES[i % len(DATES)][1]
        assert r["billing_period_start"] == dt.date(2024, 3, 1) and r["billing_period_end"] == dt.date(2024, 3, 31)
        assert r["cost"] == (money9(src["CostInBillingCurrency"]) if src["CostInBillingCurrency"] else 0)
        assert r["billing_currency"] == src["BillingCurrencyCode"].strip().upper()
        sub = _text(src["SubscriptionId"])
        assert r["subscription_id"] == (None if sub == "00000000-0000-0000-0000-000000000000" else sub)
        assert r["meter_name"] == _text(src["MeterName"]) and r["pricing_model"] == _text(src["PricingModel"])
        uom = _text(src["UnitOfMeasure"])
        assert (r["unit_of_measure"], (r["pricing_block_size"], r["pricing_unit"])) == (uom, azure.pricing_unit(uom))
        assert r["tags"] == tags_json(azure.parse_tags(src["Tags"])), src["Tags"]
        assert r["cost_type"] == "AmortizedCost"
    # amortized totals leave out commitment-covered usage and unused commitments
    covered = ("Usage", "UnusedReservation", "UnusedSavingsPlan")
    billed = sum((r["cost"] for r in got.values() if not (r["charge_type"] in covered and (
        r["pricing_model"] in ("Reservation", "SavingsPlan") or r["charge_type"].startswith("Unused")))), Decimal(0))
    assert sum(totals.column("source_cost").to_pylist()) == billed
    assert sum(totals.column("source_rows").to_pylist()) == N


def test_typed_parquet_columns(rt, acme, tmp_path):
    n = len(TAGS)
    table = pa.table({
        "Date": pa.array([dt.date(2024, 3, 1 + i % 3) for i in range(n)], pa.date32()),
        "BillingPeriodStartDate": pa.array([dt.datetime(2024, 3, 1)] * n, pa.timestamp("us")),
        "BillingPeriodEndDate": pa.array(["2024-03-31"] * n),
        "CostInBillingCurrency": pa.array([i / 7 for i in range(n)], pa.float64()),
        "Quantity": pa.array(list(range(n)), pa.int64()),
        "UnitPrice": pa.array([(Decimal(i) / 3).quantize(Decimal("1e-12")) for i in range(n)], pa.decimal128(20, 12)),
        "BillingCurrencyCode": pa.array(["USD"] * n), "ChargeType": pa.array(["Usage"] * n),
        "Tags": pa.array(TAGS), "ResourceId": pa.array([f"r-{i}" for i in range(n)]),
    })
    (tmp_path / "p").mkdir()
    pq.write_table(table, tmp_path / "p" / "export.parquet")
    raw, _, _ = _same_on_both_paths(rt.warehouse, tmp_path / "p", *MARCH)
    got = {r["resource_id"]: r for r in raw.to_pylist()}
    for i in range(n):
        r = got[f"r-{i}"]
        assert r["usage_date"] == dt.date(2024, 3, 1 + i % 3) and r["billing_period_start"] == dt.date(2024, 3, 1)
        assert r["cost"] == money9(repr(i / 7)) and r["quantity"] == i
        assert r["unit_price"] == (Decimal(i) / 3).quantize(Decimal("1e-12")).quantize(Decimal("1e-9"), ROUND_HALF_EVEN)
        assert r["tags"] == tags_json(azure.parse_tags(TAGS[i])), TAGS[i]


# --------------------------------------------------------------------------------------------------
# Errors and warnings
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "value", "expected"), [
    ("CostInBillingCurrency", "twelve", "column CostInBillingCurrency has a value that is not a number (row {n})"),
    ("Date", "yesterday", "column Date has a value that is not a date (row {n})"),
    ("Date", "02/30/2024", "column Date has an impossible date (row {n})"),
    ("BillingPeriodEndDate", "soon", "column BillingPeriodEndDate has a value that is not a date (row {n})"),
    ("Date", "", "1 rows have no Date"),
    ("BillingCurrencyCode", " ", "1 rows have an empty BillingCurrencyCode"),
    ("ChargeType", "", "1 rows have an empty ChargeType"),
])
def test_bad_rows_fail_the_same_way_on_both_paths_and_keep_earlier_data(rt, acme, tmp_path, column, value,
                                                                        expected):
    wh = rt.warehouse
    _native_path(wh, billing.FIXTURES, *billing.SEP)  # earlier good data
    before = wh.query("SELECT COUNT(*) AS n, SUM(cost) AS c FROM `acme_prod.azure_billing_raw`")[0]
    rows = [r for r in _quirk_rows()[:8] if r["CostInBillingCurrency"]]
    for r in rows:
        r["Date"] = "09/02/2023"
    rows[-1][column] = value
    _write_csv(tmp_path / "bad" / "export.csv", rows)
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(tmp_path / "bad", *billing.SEP)
    with pytest.raises(ExtractError) as native_err:
        land(wh, registry.get(PIPELINE), _ctx(tmp_path / "bad", *billing.SEP))
    expected = expected.format(n=len(rows))  # the bad value is in the last row; never in the message
    assert str(native_err.value) == str(arrow_err.value) == f"{tmp_path / 'bad' / 'export.csv'}: {expected}"
    after = wh.query("SELECT COUNT(*) AS n, SUM(cost) AS c FROM `acme_prod.azure_billing_raw`")[0]
    assert after == before and before["n"] == 27


def test_empty_files_warn_and_missing_columns_fail(rt, acme, tmp_path):
    folder = tmp_path / "e"
    folder.mkdir()
    sample = billing.SAMPLE.read_text()
    (folder / "a_data.csv").write_text(sample)
    (folder / "b_header.csv").write_text(sample.splitlines()[0] + "\n")
    (folder / "c_zero.csv").write_bytes(b"")
    raw, _, warnings = _same_on_both_paths(rt.warehouse, folder, *billing.SEP)
    assert raw.num_rows == 27
    assert warnings == [f"{folder / 'b_header.csv'} is empty", f"{folder / 'c_zero.csv'} is empty"]
    (folder / "d_bad.csv").write_text(sample.replace("ChargeType", "Kind"))
    with pytest.raises(ExtractError, match="d_bad.csv: required Azure cost details columns missing: charge_type"):
        _arrow_path(folder, *billing.SEP)
