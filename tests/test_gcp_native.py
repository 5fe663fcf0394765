"""The GCP billing export as a DuckScan: the embedded warehouse lands the export's Parquet files (or the BigQuery
query's Arrow pages) natively, any other warehouse iterates the same SELECTs as Arrow batches. Both paths give the
same rows, totals and errors, and what they give is what the pyarrow extractor gave before (merged label JSON,
credits JSON and per-type sums, half-even NUMERIC from the floats' shortest text, invoice-month periods)."""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import gcp
from jobs.runner import land
from shared import registry, schemas
from tests.cloud_kit import extracted
from shared.lineage import LINEAGE_NAMES
from stubs import gcp_billing_data as gen
from tools import gcp_export_generator

PIPELINE = "cloud/gcp/cost/billing"
START, END = dt.date(2025, 1, 30), dt.date(2025, 2, 2)
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
AT = dt.datetime(2025, 2, 5, 8, 30, tzinfo=dt.UTC)
RAW, TOTALS = "gcp_billing_raw", "cloud_source_totals"
Q = Decimal("0.000000001")


def _ctx(cred: dict, start, end, run_id="run_a"):
    return ExtractContext("acme", PIPELINE, "cred_gcp", run_id, start, end, cred)


def _folder(folder: Path) -> dict:
    return {"source": folder.as_uri()}


def _arrow_path(cred: dict, start, end) -> tuple[pa.Table, pa.Table]:
    """What a warehouse other than DuckDB receives: stamped Arrow batches; and the totals it sums from them."""
    raw, totals = extracted(_ctx(cred, start, end), RAW, stamped_at=AT)
    assert raw.schema.names == schemas.get(RAW).names
    return raw, totals


def _native_path(wh, cred: dict, start, end, run_id="run_a") -> tuple[pa.Table, pa.Table, dict]:
    counts = land(wh, registry.get(PIPELINE), _ctx(cred, start, end, run_id), ingested_at=AT)
    raw = wh.query_arrow(f"SELECT * FROM `acme_prod.{RAW}`")
    totals = wh.query_arrow(f"SELECT * EXCEPT ({', '.join(LINEAGE_NAMES)}) FROM `acme_prod.{TOTALS}`")
    return raw, totals, counts


def _rows(table: pa.Table, names=None) -> list[tuple]:
    names = names or table.column_names
    return sorted(zip(*(table.column(n).to_pylist() for n in names)), key=repr)


def _money(v) -> Decimal | None:
    """The old extractor's rule, restated: a float through its shortest text, half-even at 9 decimals."""
    return None if v is None else Decimal(repr(v) if isinstance(v, float) else str(v)).quantize(Q, ROUND_HALF_EVEN)


def _net_by_day_and_month(files: list[Path], start, end) -> dict[tuple, list]:
    """Rows and cost + credits per (UTC usage day, invoice month), straight from the Parquet files."""
    out: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for f in files:
        for r in pq.read_table(f, columns=["usage_start_time", "invoice", "cost", "credits"]).to_pylist():
            day = r["usage_start_time"].astimezone(dt.UTC).date()
            if not start <= day <= end:
                continue
            month = r["invoice"]["month"]
            key = (day, dt.date(int(month[:4]), int(month[4:]), 1))
            out[key][0] += 1
            out[key][1] += (_money(r["cost"]) or 0) + sum((_money(c["amount"]) for c in r["credits"] or []), Decimal(0))
    return out


@pytest.fixture()
def fixture_export(tmp_path) -> Path:
    folder = tmp_path / "export"
    gen.write_parquet(gen.generate(START - dt.timedelta(days=2), END + dt.timedelta(days=2)), folder)
    return folder


@pytest.fixture()
def generated_export(tmp_path) -> Path:
    folder = tmp_path / "generated"
    gcp_export_generator.generate(3000, folder, seed=3, files=2)
    return folder


@pytest.mark.parametrize("case", ["fixture", "generated"])
def test_native_and_arrow_paths_land_identical_rows_and_totals(rt, acme, request, case):
    folder = request.getfixturevalue(f"{case}_export")
    start, end = (START, END) if case == "fixture" else MARCH
    arrow_raw, arrow_totals = _arrow_path(_folder(folder), start, end)
    native_raw, native_totals, counts = _native_path(rt.warehouse, _folder(folder), start, end)

    assert counts[RAW] == arrow_raw.num_rows == native_raw.num_rows > 0
    assert _rows(native_raw, schemas.get(RAW).names) == _rows(arrow_raw, schemas.get(RAW).names)
    assert native_raw.column("x_pipeline_run_date").to_pylist() == native_raw.column("usage_date").to_pylist()
    names = schemas.get(TOTALS).arrow_schema(include_lineage=False).names
    assert _rows(native_totals, names) == _rows(arrow_totals, names)

    # the totals are what the files say, recomputed independently
    expected = _net_by_day_and_month(sorted(folder.glob("*.parquet")), start, end)
    got = {(t["usage_date"], t["billing_period"]): [t["source_rows"], t["source_cost"]]
           for t in native_totals.to_pylist()}
    assert got == dict(expected)
    assert sum(n for n, _ in got.values()) == native_raw.num_rows
    # and every row's credits_total is its credits' sum, the per-type sums adding up to it
    for r in native_raw.to_pylist():
        credits = json.loads(r["credits"]) if r["credits"] else []
        assert r["credits_total"] == sum((Decimal(str(c["amount"])) for c in credits), Decimal(0))
        parts = [r[c] for c in gcp.CREDIT_SUM_COLUMNS if r[c] is not None]
        assert sum(parts, Decimal(0)) == r["credits_total"]


def test_fixture_values_as_the_pyarrow_extractor_gave_them(fixture_export):
    raw, _ = _arrow_path(_folder(fixture_export), START, END)
    rows = gen.generate(START - dt.timedelta(days=2), END + dt.timedelta(days=2))
    kept = [r for r in rows if START <= r["usage_start_time"].date() <= END]
    assert raw.num_rows == len(kept) == 134
    assert sorted(_money(r["cost"]) for r in kept) == sorted(raw.column("cost").to_pylist())
    web = next(x for x in raw.to_pylist() if x["resource_name"] == "web-1")
    assert web["labels"] == '{"app":"web","costcenter":"cc-100","env":"production"}'
    assert web["system_labels"] == '{"compute.googleapis.com/machine_spec":"n2-standard-8"}'
    gemini = next(x for x in raw.to_pylist() if x["credits_promotion"] is not None)
    assert gemini["credits"].startswith('[{"name":"FreeTier:Gemini API","amount":-0.1,"full_name":'
                                        '"FreeTier:Gemini API","id":"FreeTier:gemini","type":"FREE_TIER"},'
                                        '{"name":"Free Trial","amount":-')
    assert set(raw.column("cost_type").to_pylist()) == {"regular", "tax", "adjustment", "rounding_error"}
    month = pc.strftime(raw.column("billing_period_start"), "%Y%m").to_pylist()
    assert month == raw.column("invoice_month").to_pylist()  # the invoice month, not the usage month


def _edge_rows() -> list[dict]:
    """Label precedence and repeats, valueless keys, odd credit fields, ties at the 10th decimal."""
    rows = gen.generate(START, START)
    r = rows[0]
    r["labels"] = [{"key": "Env", "value": ""}, {"key": "ENV", "value": "x"}, {"key": 'a"b', "value": "ü"},
                   {"key": "", "value": "ignored"}, {"key": "k", "value": None}]
    r["project"] = {**r["project"], "labels": [{"key": "env", "value": "p"}, {"key": "Z", "value": "1"}]}
    r["tags"] = [{"key": "org/Team", "value": "t", "inherited": True, "namespace": "n"},
                 {"key": "z", "value": "tag"}]
    r["system_labels"] = [{"key": "B", "value": ""}, {"key": "a", "value": "v"}, {"key": "a", "value": "w"}]
    r["credits"] = [
        {"name": None, "amount": 1e-10, "full_name": None, "id": "", "type": "sustained_usage_discount"},
        {"name": 'x"y', "amount": -0.1234567895, "full_name": "fü😀", "id": "i", "type": None},
        {"name": "n", "amount": None, "full_name": "f", "id": None, "type": "weird"},
        {"name": "big", "amount": -12345678.123456785, "full_name": "f", "id": "i",
         "type": "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE"}]
    r["cost"] = 0.0000000005  # a tie: half-even rounds it to 0
    rows[1]["cost"] = 0.0000000015
    rows[2].update(cost=None, labels=[], project=None, system_labels=[])
    rows[3].update(cost=5.000001e-10, cost_type="Rounding Error", invoice={"month": "2025x1", "publisher_type": ""})
    rows[4].update(cost=123456789.123456789, invoice=None, cost_type=None)
    return rows


def test_edge_values_match_the_reference(rt, acme, tmp_path):
    folder = tmp_path / "edge"
    rows = _edge_rows()
    gen.write_parquet(rows, folder)
    arrow_raw, _ = _arrow_path(_folder(folder), START, START)
    native_raw, _, _ = _native_path(rt.warehouse, _folder(folder), START, START)
    assert _rows(native_raw, schemas.get(RAW).names) == _rows(arrow_raw, schemas.get(RAW).names)
    by_cost_type = defaultdict(list)
    for r in native_raw.to_pylist():
        by_cost_type[r["cost_type"]].append(r)
    first = next(r for r in native_raw.to_pylist() if r["credits_committed_usage"] is not None)
    assert first["labels"] == '{"a\\"b":"ü","env":"x","k":true,"org/team":"t","z":"tag"}'
    assert first["system_labels"] == '{"B":true,"a":"w"}'
    assert first["credits"] == (
        '[{"name":null,"amount":0,"full_name":null,"id":null,"type":"SUSTAINED_USAGE_DISCOUNT"},'
        '{"name":"x\\"y","amount":-0.12345679,"full_name":"f\\u00fc\\ud83d\\ude00","id":"i","type":null},'
        '{"name":"n","amount":0,"full_name":"f","id":null,"type":"WEIRD"},'
        '{"name":"big","amount":-12345678.123456785,"full_name":"f","id":"i",'
        '"type":"COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE"}]')
    assert (first["credits_total"], first["credits_sustained_usage"], first["credits_committed_usage"],
            first["credits_other"], first["credits_free_tier"]) == \
        (Decimal("-12345678.246913575"), Decimal(0), Decimal("-12345678.123456785"), Decimal("-0.12345679"), None)
    assert first["cost"] == 0
    costs = sorted(r["cost"] for r in native_raw.to_pylist())
    assert Decimal("0.000000002") in costs and Decimal("123456789.12345679") in costs
    rounding = by_cost_type["rounding_error"][0]
    assert rounding["cost"] == Decimal("0.000000001")  # past the tie: up, on all of the float's digits
    assert (rounding["invoice_month"], rounding["billing_period_start"]) == ("2025x1", dt.date(2025, 1, 1))
    assert rounding["invoice_publisher_type"] is None
    no_project = [r for r in native_raw.to_pylist() if r["project_id"] is None]
    assert [(r["labels"], r["system_labels"], r["cost"]) for r in no_project] == [(None, None, Decimal(0))]


class _FakeBigQuery:
    """get_table and query of google-cloud-bigquery, serving an Arrow table in pages of 7 rows."""

    def __init__(self, table: pa.Table, fail_after: int | None = None):
        self.table, self.fail_after = table, fail_after

    def get_table(self, ref):
        from google.cloud import bigquery

        field = type("Field", (), {})
        names = []
        for n in self.table.column_names:
            f = field()
            f.name = n
            names.append(f)
        return type("Table", (), {"schema": names, "table_type": "TABLE",
                                  "time_partitioning": bigquery.TimePartitioning(type_="DAY")})()

    def query(self, sql, job_config=None):
        params = {p.name: p.value for p in job_config.query_parameters}
        days = pc.cast(self.table.column("usage_start_time"), pa.date32()).to_pylist()
        data = self.table.filter(pa.array([params["start_date"] <= d <= params["end_date"] for d in days]))
        fake = self

        class Job:
            def result(self, page_size=None):
                return self

            def to_arrow_iterable(self):
                for i, batch in enumerate(data.to_batches(max_chunksize=7)):
                    if fake.fail_after is not None and i == fake.fail_after:
                        from google.api_core import exceptions

                        raise exceptions.Forbidden("Access Denied: the job was cancelled")
                    yield batch

        return Job()


BQ = {"project": "cust", "dataset": "billing", "table": "gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9"}


def test_bigquery_pages_run_the_same_select(rt, acme, fixture_export, monkeypatch):
    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: _FakeBigQuery(pq.read_table(fixture_export)))
    folder_raw, folder_totals = _arrow_path(_folder(fixture_export), START, END)
    arrow_raw, arrow_totals = _arrow_path(BQ, START, END)
    native_raw, native_totals, counts = _native_path(rt.warehouse, BQ, START, END)
    names = [n for n in schemas.get(RAW).names if n != "source"]
    assert _rows(arrow_raw, names) == _rows(folder_raw, names) == _rows(native_raw, names)
    assert set(native_raw.column("source").to_pylist()) == {"cust.billing." + BQ["table"]}
    tnames = schemas.get(TOTALS).arrow_schema(include_lineage=False).names
    assert _rows(arrow_totals, tnames) == _rows(folder_totals, tnames) == _rows(native_totals, tnames)
    assert counts[RAW] == 134


def test_a_failing_bigquery_stream_reports_its_own_error(rt, acme, fixture_export, monkeypatch):
    from jobs.base import CredentialError

    monkeypatch.setattr(gcp, "bigquery_client", lambda cred, org: _FakeBigQuery(pq.read_table(fixture_export), 3))
    with pytest.raises(CredentialError, match="roles/bigquery.dataViewer") as arrow_err:
        _arrow_path(BQ, START, END)
    with pytest.raises(CredentialError) as native_err:
        land(rt.warehouse, registry.get(PIPELINE), _ctx(BQ, START, END))
    assert str(native_err.value) == str(arrow_err.value)
    assert rt.warehouse.query(f"SELECT COUNT(*) AS n FROM `acme_prod.{RAW}`")[0]["n"] == 0


def _pick(rows: list[dict]) -> dict:
    return next(r for r in rows if r["usage_start_time"].date() == START and r["usage"] and r["price"])


def _set_usage(rows, v):
    _pick(rows)["usage"]["amount"] = v


def _add_credit(rows, v):
    _pick(rows)["credits"].append({"name": "x", "amount": v, "full_name": "x", "id": "", "type": "X"})


def _clear(rows, column, n):
    for r in [r for r in rows if r["usage_start_time"].date() == START][:n]:
        r[column] = "" if column == "billing_account_id" else None


@pytest.mark.parametrize("mutate,expected", [
    # {n}: the picked row; the message names it, never the value
    (lambda rows: _set_usage(rows, 3e20), "column usage.amount has a value that is not a number (row {n})"),
    (lambda rows: _pick(rows).update(cost=float("nan")), "column cost has a value that is not a number (row {n})"),
    (lambda rows: _add_credit(rows, float("-inf")), "column credits.amount has a value that is not a number (row {n})"),
    (lambda rows: _pick(rows)["price"].update(list_price=Decimal("1e20")),
     "column price.list_price has a value that is not a number (row {n})"),
    (lambda rows: _clear(rows, "billing_account_id", 5), "5 rows have an empty billing_account_id"),
    (lambda rows: _clear(rows, "currency", 3), "3 rows have an empty currency"),
    (lambda rows: _clear(rows, "usage_start_time", 2), "2 rows have no usage_start_time"),
], ids=["huge", "nan", "inf-credit", "huge-numeric", "no-account", "no-currency", "no-start"])
def test_bad_rows_fail_the_same_way_on_both_paths_and_keep_earlier_data(rt, acme, tmp_path, fixture_export,
                                                                        mutate, expected):
    wh = rt.warehouse
    _native_path(wh, _folder(fixture_export), START, START)  # earlier good data of the same slice
    before = wh.query(f"SELECT COUNT(*) AS n, SUM(cost) AS c FROM `acme_prod.{RAW}`")[0]
    rows = gen.generate(START - dt.timedelta(days=1), START)
    mutate(rows)
    if "{n}" in expected:
        expected = expected.format(n=1 + next(i for i, r in enumerate(rows) if r is _pick(rows)))
    folder = tmp_path / "bad"
    gen.write_parquet(rows, folder)
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(_folder(folder), START, START)
    with pytest.raises(ExtractError) as native_err:
        land(wh, registry.get(PIPELINE), _ctx(_folder(folder), START, START))
    assert str(native_err.value) == str(arrow_err.value) == f"{folder / 'export-000000000000.parquet'}: {expected}"
    after = wh.query(f"SELECT COUNT(*) AS n, SUM(cost) AS c FROM `acme_prod.{RAW}`")[0]
    assert after == before and before["n"] == 33


def test_damaged_files_and_empty_ranges(rt, acme, tmp_path, fixture_export):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ExtractError, match=r"x.parquet is corrupted or truncated .* Re-export the file") as err:
        _arrow_path(_folder(tmp_path / "bad"), START, END)
    assert "not really" not in str(err.value)
    ctx = _ctx(_folder(fixture_export), dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert land(rt.warehouse, registry.get(PIPELINE), ctx) == {RAW: 0, TOTALS: 0, "cloud_focus_raw": 0}
    assert ctx.warnings == ["the billing export has no rows with usage on 2024-01-01..2024-01-02"]


def test_restated_day_is_replaced_natively(rt, acme, tmp_path):
    wh = rt.warehouse
    folder = tmp_path / "export"
    first = gen.generate(START, END)
    gen.write_parquet(first, folder, "batch-1.parquet")
    _native_path(wh, _folder(folder), START, END)
    day = dt.date(2025, 1, 31)
    later = gen.restatement(day, dt.datetime(2025, 2, 3, 9, tzinfo=dt.UTC))
    gen.write_parquet(later, folder, "batch-2.parquet")
    _, totals, counts = _native_path(wh, _folder(folder), day, day, run_id="run_b")
    assert counts[RAW] == sum(r["usage_start_time"].date() == day for r in first + later)
    per_month: dict = defaultdict(Decimal)
    for t in totals.to_pylist():
        per_month[t["billing_period"]] += t["source_cost"]
    assert dict(per_month) == gen.net_by_invoice_month(first + later)
    runs = wh.query(f"SELECT usage_date, MIN(x_run_id) AS lo, MAX(x_run_id) AS hi FROM `acme_prod.{RAW}` GROUP BY 1")
    assert {r["usage_date"]: (r["lo"], r["hi"]) for r in runs}[day] == ("run_b", "run_b")
