"""OCI reports as a DuckScan: the embedded warehouse lands the files natively (INSERT ... SELECT), any other
warehouse iterates the same SELECTs as Arrow batches. Both paths must give the same rows, totals and errors,
and the rows must be what the pyarrow reader produced: checked here against values recomputed in Python
from the files (costs, units by `focus_unit`, tags as flat JSON)."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.base import ExtractContext, ExtractError
from jobs.cloud import oci
from jobs.cloud.common import key_values, tags_json
from jobs.runner import land
from shared import registry, schemas
from tests.cloud_kit import extracted
from tests.test_oci_billing import (  # noqa: F401 - fixtures
    FIXTURES,
    NOV,
    SAMPLE,
    TENANCY,
    api_key,
    at,
    extra_rows,
    object_storage,
    sample_rows,
    to_csv_gz,
)
from tools import oci_report_generator

PIPELINE = "cloud/oci/cost/billing"
AT = dt.datetime(2024, 4, 2, 8, 30, tzinfo=dt.UTC)
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
NINE = Decimal("1e-9")
RAW = "oci_billing_raw"
TOTALS = "cloud_source_totals"


def _ctx(cred: dict | Path, start, end, run_id="run_a"):
    if isinstance(cred, Path):
        cred = {"source": f"file://{cred}"}
    return ExtractContext("acme", PIPELINE, "cred_oci", run_id, start, end, cred)


def _arrow_path(cred, start, end) -> tuple[pa.Table, pa.Table, ExtractContext]:
    """What a non-DuckDB warehouse receives: stamped Arrow batches; and the totals it sums from them."""
    ctx = _ctx(cred, start, end)
    raw, totals = extracted(ctx, RAW, stamped_at=AT)
    return _table(raw.to_batches(), schemas.get(RAW).arrow_schema()), totals, ctx


def _table(batches, schema: pa.Schema) -> pa.Table:
    """The batches as a table with the names and types of `schema` (DuckDB marks every column nullable)."""
    batches = list(batches)
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches).cast(pa.schema([f.with_nullable(True) for f in schema]))


def _native_path(wh, cred, start, end, run_id="run_a") -> tuple[pa.Table, pa.Table, dict]:
    counts = land(wh, registry.get(PIPELINE), _ctx(cred, start, end, run_id), ingested_at=AT)
    raw = wh.query_arrow(f"SELECT * FROM `acme_prod.{RAW}`")
    totals = wh.query_arrow(f"SELECT * EXCEPT (x_org_slug, x_pipeline_id, x_credential_id, x_pipeline_run_date, "
                            f"x_run_id, x_ingested_at, x_ingestion_date) FROM `acme_prod.{TOTALS}`")
    return raw, totals, counts


def _rows(table: pa.Table, names) -> list[tuple]:
    cols = [table.column(n).to_pylist() for n in names]
    return sorted(zip(*cols), key=repr)


def _both_paths(wh, cred, start, end) -> tuple[pa.Table, pa.Table]:
    """Land natively and read as Arrow; assert the two agree on every row and total; return the native."""
    arrow_raw, arrow_totals, _ = _arrow_path(cred, start, end)
    native_raw, native_totals, counts = _native_path(wh, cred, start, end)
    assert counts[RAW] == arrow_raw.num_rows == native_raw.num_rows
    names = schemas.get(RAW).names
    assert _rows(native_raw, names) == _rows(arrow_raw, names)
    tnames = schemas.get(TOTALS).arrow_schema(include_lineage=False).names
    assert _rows(native_totals, tnames) == _rows(arrow_totals, tnames)
    assert sum(native_totals.column("source_cost").to_pylist(), Decimal(0)) == sum(
        native_raw.column("my_cost").to_pylist(), Decimal(0))
    assert sum(native_totals.column("source_rows").to_pylist()) == native_raw.num_rows
    return native_raw, native_totals


# --------------------------------------------------------------------------------------------------
# The rows recomputed in Python from a cost report
# --------------------------------------------------------------------------------------------------
def _ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text)


def _num(text: str | None) -> Decimal | None:
    return Decimal(text.strip()).quantize(NINE, ROUND_HALF_EVEN) if text and text.strip() else None


def _expected(files: list[Path], start: dt.date, end: dt.date) -> list[dict]:
    out = []
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", newline="") as fh:
            for r in csv.DictReader(fh):
                begin = _ts(r["lineItem/intervalUsageStart"])
                if not start <= begin.date() <= end:
                    continue
                tags = {}
                for k, v in r.items():
                    if k.startswith("tags/") and v:
                        tags[k[5:].strip().lower()] = v
                readable = r.get("cost/billingUnitReadable") or None
                described = r.get("cost/skuUnitDescription") or None
                out.append({
                    "usage_date": begin.date(), "interval_start": begin,
                    "interval_end": _ts(r.get("lineItem/intervalUsageEnd")),
                    "billing_period_start": begin.date().replace(day=1), "report_type": "cost",
                    "reference_no": r["lineItem/referenceNo"] or None, "tenant_id": r["lineItem/tenantId"],
                    "service": r.get("product/service") or None,
                    "billed_quantity": _num(r.get("usage/billedQuantity")),
                    "unit_price": _num(r.get("cost/unitPrice")),
                    "my_cost": _num(r["cost/myCost"]) or Decimal(0),
                    "my_cost_overage": _num(r.get("cost/myCostOverage")),
                    "currency": r["cost/currencyCode"], "billing_unit": readable,
                    "pricing_unit": oci.focus_unit(readable, described),
                    "overage_flag": {"true": True, "false": False}.get((r.get("cost/overageFlag") or "").lower()),
                    "is_correction": (r.get("lineItem/isCorrection") or "").lower() == "true",
                    "tags": tags_json(tags), "source_file": str(path),
                })
    return out


def _check_against(raw: pa.Table, expected: list[dict]) -> None:
    names = list(expected[0])
    assert _rows(raw, names) == sorted((tuple(e[n] for n in names) for e in expected), key=repr)


def _expected_totals(expected: list[dict]) -> list[tuple]:
    sums: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for e in expected:
        key = (e["usage_date"], e["billing_period_start"], "oci", e["currency"])
        sums[key][0] += 1
        sums[key][1] += e["my_cost"]
    return sorted((*k, n, c) for k, (n, c) in sums.items())


def _totals(totals: pa.Table) -> list[tuple]:
    return sorted(_rows(totals, ["usage_date", "billing_period", "provider", "currency", "source_rows",
                                 "source_cost"]))


# --------------------------------------------------------------------------------------------------
# Same rows on both paths, equal to the recomputed ones
# --------------------------------------------------------------------------------------------------
def test_sample_lands_the_same_on_both_paths(rt, acme):
    raw, totals = _both_paths(rt.warehouse, FIXTURES, *NOV)
    expected = _expected([SAMPLE], *NOV)
    assert raw.num_rows == len(expected) == 506
    _check_against(raw, expected)
    assert _totals(totals) == _expected_totals(expected)


@pytest.mark.parametrize("start,end", [MARCH, (dt.date(2024, 3, 5), dt.date(2024, 3, 10))])
def test_generated_reports_land_the_same_on_both_paths(rt, acme, tmp_path, start, end):
    files = oci_report_generator.generate(4000, tmp_path, seed=3, files=6)
    raw, totals = _both_paths(rt.warehouse, tmp_path, start, end)
    expected = _expected(sorted(files), start, end)
    assert raw.num_rows == len(expected) > 0
    _check_against(raw, expected)
    # the totals are the generator's own costs, summed exactly
    assert _totals(totals) == _expected_totals(expected)
    if (start, end) == MARCH:
        assert raw.num_rows == 4000
        assert sum(raw.column("is_correction").to_pylist()) > 0 and any(raw.column("overage_flag").to_pylist())


def test_hand_made_rows_and_focus_report_land_the_same_on_both_paths(rt, acme, tmp_path):
    header = sample_rows()[0] + ["tags/Team.Name"]
    (tmp_path / "0000000040000001-00001.csv.gz").write_bytes(to_csv_gz(header, extra_rows(header)))
    raw, _ = _both_paths(rt.warehouse, tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 2))
    _check_against(raw, _expected([tmp_path / "0000000040000001-00001.csv.gz"], dt.date(2024, 3, 1),
                                  dt.date(2024, 3, 2)))
    assert {r["reference_no"]: r["pricing_unit"] for r in raw.to_pylist()} == {
        "ref00001": "OCPU-Hours", "ref00002": "OCPU-Hours", "ref00003": None, "ref00004": "Units"}


# --------------------------------------------------------------------------------------------------
# Units and tags: the SQL follows focus_unit and Python's JSON text exactly
# --------------------------------------------------------------------------------------------------
def _cost_report(path: Path, rows: list[dict], extra_header: list[str] = ()) -> None:
    header = ["lineItem/referenceNo", "lineItem/tenantId", "lineItem/intervalUsageStart", "cost/myCost",
              "cost/currencyCode", "cost/billingUnitReadable", "cost/skuUnitDescription", *extra_header]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"lineItem/referenceNo": f"r{i:05d}", "lineItem/tenantId": TENANCY,
                        "lineItem/intervalUsageStart": "2024-03-01T00:00Z", "cost/myCost": "1",
                        "cost/currencyCode": "USD", **r})


UNIT_WORDS = {
    "quantity": ["1", "10", "1.50", "2.0", "0.0", "x", "1e3"],
    "size": ["NONE", "GiB", "gb", "KB", "B", "bytes", "BYTE", "PIB", "TB", "X"],
    "time": ["NONE", "HOURS", "hour", "MONTHS", "SECOND", "DAYSS", "Weeks"],
    "measure": ["OCPUS", "INSTANCE", "STORAGE_SIZE", "IOPS", "CLASS", "SMS", "S", "vcpu", "GPUS", "Requests"],
}
DESCRIPTIONS = ["GB Months", "TB", "Hours", "Million Datapoints", "Something Odd Here", "OCPU-Hours",
                "Instance per hour", "bytes", "Million Widgets", "Million x_y", "IOPS", "Seconds", "GPUS Weeks",
                "kib days", "Mbps Per Hour", "S Hours", "million s", "-", "a-b", "Class Years", "  ", "10,000 Requests"]
ODD_READABLE = ["  ", "1 NONE HOURS", "1 NONE NONE A B", " 1\tGiB  MONTHS X ", "1 NONE NONE S", "1 NONE HOURS S"]


def test_units_follow_focus_unit(rt, acme, tmp_path):
    readables = [f"{q} {s} {t} {m}" for q in UNIT_WORDS["quantity"] for s in UNIT_WORDS["size"]
                 for t in UNIT_WORDS["time"] for m in UNIT_WORDS["measure"]] + ODD_READABLE
    rows = [{"cost/billingUnitReadable": r, "cost/skuUnitDescription": DESCRIPTIONS[i % len(DESCRIPTIONS)]}
            for i, r in enumerate(readables)]
    rows += [{"cost/skuUnitDescription": d} for d in DESCRIPTIONS]
    rows += [{"cost/billingUnitReadable": r} for r in readables[::7]]
    _cost_report(tmp_path / "units.csv", rows)
    raw, _ = _both_paths(rt.warehouse, tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 1))
    got = {(r["billing_unit"], r["sku_unit_description"]): r["pricing_unit"] for r in raw.to_pylist()}
    assert len(got) == len(rows)
    mismatched = {k: (v, oci.focus_unit(*k)) for k, v in got.items() if v != oci.focus_unit(*k)}
    assert not mismatched
    assert {"GiB-Months", "OCPU-Hours", "1000000 Datapoints", "Units", "10 B"} <= set(got.values())
    assert not {"1.5 Sms", "10 Bytes"} & set(got.values())  # a unit quantity is an integer, a byte is B


TAG_VALUES = ["Core", "café", "emoji 😀", 'q"uo\\te', "a\nb\tc\rd", "ctl \x01\x1f\x7f\b\f", "x/y", "", "€ \u2028"]


def test_tag_columns_are_the_same_json_as_before(rt, acme, tmp_path):
    cols = ["tags/Team.Name", "tags/team.name ", "tags/Ops.Env", "tags/Ünïcode.Kéy", "tags/X\\Y"]
    rows = [{c: TAG_VALUES[(i + 3 * j) % len(TAG_VALUES)] for j, c in enumerate(cols)} for i in range(40)]
    rows.append(dict.fromkeys(cols, ""))
    _cost_report(tmp_path / "tags.csv", rows, cols)
    raw, _ = _both_paths(rt.warehouse, tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 1))
    got = {r["reference_no"]: r["tags"] for r in raw.to_pylist()}
    for i, r in enumerate(rows):
        tags = {}
        for c in cols:
            if r[c]:
                tags[c[5:].strip().lower()] = r[c]
        assert got[f"r{i:05d}"] == tags_json(tags), r
    assert got[f"r{len(rows) - 1:05d}"] is None


FOCUS_HEADER = ["BilledCost", "BillingCurrency", "ChargeClass", "ChargePeriodStart", "ChargePeriodEnd",
                "PricingUnit", "SubAccountId", "Tags", "tags/Extra.Key", "oci_ReferenceNumber"]
TAG_DOCS = ['{"Ops.Env": "prod"}', "", "not json", "[1,2]", '"str"', '{"A":"x","a":"y","B":""}',
            '{"n":1,"b":true,"z":null,"f":1.5,"big":1e20}', '{"Émoji":"😀 é","k":"v\\"q","Extra.Key":"doc"}', "{}",
            '{"C": 10, "c": "ten"}', '{"extra.key": "from doc", "D": ""}']


def test_focus_report_tags_and_corrections(rt, acme, tmp_path):
    day = tmp_path / "FOCUS Reports" / "2024" / "06" / "01"
    day.mkdir(parents=True)
    rows = [[["0.5", "-0.25", "1E-7", ""][k % 4], "USD", ["", "Correction", "correction", "CORRECTION "][k % 4],
             f"2024-06-01T0{k % 10}:00Z", "2024-06-01T01:00Z" if k % 5 else "", ["GB Months", "Hours", ""][k % 3],
             TENANCY, TAG_DOCS[k % len(TAG_DOCS)], ["", "col"][k % 2], f"r{k:03d}"] for k in range(44)]
    with open(day / "0001.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([FOCUS_HEADER, *rows])
    raw, totals = _both_paths(rt.warehouse, tmp_path, dt.date(2024, 6, 1), dt.date(2024, 6, 1))
    got = {r["reference_no"]: r for r in raw.to_pylist()}
    for row in rows:
        r = dict(zip(FOCUS_HEADER, row))
        tags = {}
        for k, v in key_values(r["Tags"]):
            tags[str(k).lower()] = v
        if r["tags/Extra.Key"]:
            tags["extra.key"] = r["tags/Extra.Key"]
        out = got[r["oci_ReferenceNumber"]]
        assert out["tags"] == tags_json(tags), r
        assert out["is_correction"] is (r["ChargeClass"].lower() == "correction")
        assert out["my_cost"] == (_num(r["BilledCost"]) or Decimal(0))
        assert out["pricing_unit"] == oci.focus_unit(None, r["PricingUnit"] or None)
        assert out["report_type"] == "focus" and out["interval_end"] == _ts(r["ChargePeriodEnd"])
    assert json.loads(got["r006"]["tags"]) == {"n": "1", "b": "True", "f": "1.5", "big": "1e+20"}
    assert _totals(totals) == [(dt.date(2024, 6, 1), dt.date(2024, 6, 1), "oci", "USD", 44,
                                sum((o["my_cost"] for o in got.values()), Decimal(0)))]


# --------------------------------------------------------------------------------------------------
# Errors and warnings: the same on both paths, earlier data kept
# --------------------------------------------------------------------------------------------------
def _sample_with(tmp_path: Path, column: str, value: str, rows: int = 1) -> Path:
    """The first 40 sample rows, the last `rows` of them with `column` set to `value`."""
    with SAMPLE.open(newline="") as fh:
        lines = list(csv.reader(fh))[:41]
    for line in lines[-rows:]:
        line[lines[0].index(column)] = value
    folder = tmp_path / "bad"
    folder.mkdir()
    with open(folder / "0000000030000269-00001.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)
    return folder


@pytest.mark.parametrize("column,value,rows,expected", [
    ("lineItem/tenantId", "", 2, "2 rows have an empty lineItem/tenantId"),
    ("cost/currencyCode", "", 1, "1 rows have an empty cost/currencyCode"),
    ("lineItem/intervalUsageStart", "", 3, "3 rows have no lineItem/intervalUsageStart"),
    # the value is in the sample's last (40th) row; the message names the row, never the value
    ("lineItem/intervalUsageStart", "yesterday", 1,
     "column lineItem/intervalUsageStart has a value that is not a timestamp (row 40)"),
    ("lineItem/intervalUsageEnd", "later", 1,
     "column lineItem/intervalUsageEnd has a value that is not a timestamp (row 40)"),
    ("cost/myCost", "twelve", 1, "column cost/myCost has a value that is not a number (row 40)"),
    ("usage/billedQuantity", " 1,5 ", 1, "column usage/billedQuantity has a value that is not a number (row 40)"),
])
def test_bad_rows_fail_the_same_way_on_both_paths_and_keep_earlier_data(rt, acme, tmp_path, column, value, rows,
                                                                        expected):
    wh = rt.warehouse
    _native_path(wh, FIXTURES, *NOV)  # earlier good data of the same slice
    before = wh.query(f"SELECT COUNT(*) AS n, SUM(my_cost) AS c FROM `acme_prod.{RAW}`")[0]
    folder = _sample_with(tmp_path, column, value, rows)
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(folder, *NOV)
    with pytest.raises(ExtractError) as native_err:
        land(wh, registry.get(PIPELINE), _ctx(folder, *NOV))
    assert str(native_err.value) == str(arrow_err.value) == f"{folder}/0000000030000269-00001.csv: {expected}"
    after = wh.query(f"SELECT COUNT(*) AS n, SUM(my_cost) AS c FROM `acme_prod.{RAW}`")[0]
    assert after == before and before["n"] == 506


def test_bad_values_and_empty_tenants_out_of_the_range_are_not_read(tmp_path):
    folder = _sample_with(tmp_path, "cost/myCost", "twelve")
    for name in ("lineItem/tenantId", "usage/billedQuantity"):
        path = folder / "0000000030000269-00001.csv"
        lines = list(csv.reader(path.open(newline="")))
        lines[-1][lines[0].index(name)] = "" if name == "lineItem/tenantId" else "x"
        with open(path, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(lines)
    raw, totals, _ = _arrow_path(folder, dt.date(2023, 11, 14), dt.date(2023, 11, 30))
    assert raw.num_rows == totals.num_rows == 0


def test_truncated_and_empty_files(rt, acme, tmp_path):
    data = gzip.compress(SAMPLE.read_bytes())
    (tmp_path / "0000000030000269-00001.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(tmp_path, *NOV)
    with pytest.raises(ExtractError) as native_err:
        land(rt.warehouse, registry.get(PIPELINE), _ctx(tmp_path, *NOV))
    assert str(native_err.value) == str(arrow_err.value)
    assert str(arrow_err.value).startswith(f"{tmp_path}/0000000030000269-00001.csv.gz is corrupted or truncated "
                                           "and cannot be read (")

    empty = tmp_path / "empty"
    empty.mkdir()
    header = sample_rows()[0]
    (empty / "0001-00001.csv").write_text(",".join(header) + "\n")
    (empty / "0001-00002.csv").write_bytes(b"")
    (empty / "0001-00003.csv.gz").write_bytes(gzip.compress(b"some,other,columns\n"))
    (empty / "0001-00004.csv").write_bytes(SAMPLE.read_bytes())
    raw, _, ctx = _arrow_path(empty, *NOV)
    assert raw.num_rows == 506
    assert ctx.warnings == [f"{empty}/0001-0000{i}.{ext} is empty" for i, ext in ((1, "csv"), (2, "csv"),
                                                                                   (3, "csv.gz"))]


# --------------------------------------------------------------------------------------------------
# Object Storage: objects are spooled to disk and landed natively
# --------------------------------------------------------------------------------------------------
def test_object_storage_lands_natively(rt, acme, object_storage):  # noqa: F811 - the imported fixture
    stub, cred = object_storage
    header, rows = sample_rows()
    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:]), 1):
        stub.put("bling", TENANCY, f"reports/cost-csv/0000000030000269-0000{i}.csv.gz", to_csv_gz(header, part),
                 time_created=at(dt.date(2023, 11, 13), 18))
    raw, _ = _both_paths(rt.warehouse, cred, *NOV)
    assert raw.num_rows == 506
    assert set(raw.column("source_file").to_pylist()) == {
        f"oci://{TENANCY}@bling/reports/cost-csv/0000000030000269-0000{i}.csv.gz" for i in (1, 2)}
    _check_against(raw.drop_columns(["source_file"]),
                   [{k: v for k, v in e.items() if k != "source_file"} for e in _expected([SAMPLE], *NOV)])


# --------------------------------------------------------------------------------------------------
# Several files per part (read in parallel): messages still name the file, headers may differ
# --------------------------------------------------------------------------------------------------
def _rewrite(path: Path, change) -> None:
    with gzip.open(path, "rt", newline="") as fh:
        lines = list(csv.reader(fh))
    change(lines)
    with gzip.open(path, "wt", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)


@pytest.mark.parametrize("column,value,expected", [
    ("lineItem/tenantId", "", "1 rows have an empty lineItem/tenantId"),
    ("cost/unitPrice", "n/a", "column cost/unitPrice has a value that is not a number (row 3)"),
])
def test_a_bad_row_in_a_part_of_several_files_names_its_file(rt, acme, tmp_path, column, value, expected):
    files = sorted(oci_report_generator.generate(1000, tmp_path, seed=5, files=5))

    def spoil(lines):
        lines[3][lines[0].index(column)] = value

    _rewrite(files[3], spoil)
    with pytest.raises(ExtractError) as arrow_err:
        _arrow_path(tmp_path, *MARCH)
    with pytest.raises(ExtractError) as native_err:
        land(rt.warehouse, registry.get(PIPELINE), _ctx(tmp_path, *MARCH))
    assert str(native_err.value) == str(arrow_err.value) == f"{files[3]}: {expected}"


def test_files_with_other_headers_are_read_in_their_own_part(rt, acme, tmp_path):
    files = sorted(oci_report_generator.generate(2000, tmp_path, seed=9, files=5))

    def reorder(lines):  # another column order and an extra column
        for line in lines:
            line.reverse()
            line.append("x" if line is not lines[0] else "extra/column")

    _rewrite(files[2], reorder)
    raw, totals = _both_paths(rt.warehouse, tmp_path, *MARCH)
    expected = _expected(files, *MARCH)
    assert raw.num_rows == len(expected) == 2000
    _check_against(raw, expected)
    assert _totals(totals) == _expected_totals(expected)


# --------------------------------------------------------------------------------------------------
# A FOCUS report in OCI's own header shape: its FOCUS columns land as written, the same on both paths
# --------------------------------------------------------------------------------------------------
FOCUS_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "oci_focus"
FOCUS_REPORT = FOCUS_FIXTURE / "FOCUS Reports" / "2024" / "10" / "01" / "0001000001873402-00001.csv"
# raw column -> the report's header (as OCI writes it, blanks and case included)
FOCUS_TEXT = {"billing_account_id": "BillingAccountId", "billing_account_name": "BillingAccountName",
              "tenant_id": "SubAccountId", "tenant_name": "SubAccountName", "sub_account_type": "SubAccountType",
              "region": "Region", "region_name": "RegionName", "resource_name": "ResourceName",
              "service_category": "ServiceCategory", "service_subcategory": "ServiceSubCategory",
              "commitment_discount_id": "CommitmentDiscountId", "commitment_discount_status": "CommitmentDiscountStatus",
              "charge_frequency": "ChargeFrequency", "invoice_id": "InvoiceId", "invoice_issuer_name": "InvoiceIssuer",
              "publisher_name": "Publisher", "pricing_category": "PricingCategory", "sku_meter": "SkuMeter",
              "sku_price_id": "SkuPriceId", "consumed_unit": "ConsumedUnit"}
FOCUS_MONEY = {"my_cost": "BilledCost", "effective_cost": "EffectiveCost", "contracted_cost": "ContractedCost",
               "list_cost": "ListCost", "consumed_quantity": "ConsumedQuantity",
               "pricing_currency_effective_cost": "PricingCurrencyEffectiveCost ",
               "commitment_discount_quantity": "CommitmentDiscountQuantity"}


def test_focus_report_columns_land_as_written_on_both_paths(rt, acme):
    raw, totals = _both_paths(rt.warehouse, FOCUS_FIXTURE, dt.date(2024, 9, 30), dt.date(2024, 10, 1))
    got = {r["reference_no"]: r for r in raw.to_pylist()}
    with FOCUS_REPORT.open(newline="") as fh:
        source = list(csv.DictReader(fh))
    assert len(got) == len(source) == 8
    for s in source:
        r = got[s["oci_ReferenceNumber"]]
        assert {c: r[c] for c in FOCUS_TEXT} == {c: s[h] or None for c, h in FOCUS_TEXT.items()}
        assert {c: r[c] for c in FOCUS_MONEY} == {c: _num(s[h]) for c, h in FOCUS_MONEY.items()}
        assert r["billing_period_start"] == _ts(s["BillingPeriodStart"]).date()
        assert r["billing_period_end"] == _ts(s["BillingPeriodEnd"])
        assert r["service_category_valid"] and r["service_subcategory_valid"] is bool(s["ServiceSubCategory"])
    # the totals follow the report's billing periods: the late hour of 2024-09-30 is October's
    by_period = defaultdict(Decimal)
    for s in source:
        by_period[_ts(s["BillingPeriodStart"]).date()] += Decimal(s["BilledCost"])
    sums = defaultdict(Decimal)
    for day, period, _, _, _, cost in _totals(totals):
        sums[period] += cost
    assert dict(sums) == dict(by_period) and len(by_period) == 2


def test_a_bad_billing_period_names_its_column(tmp_path):
    day = tmp_path / "FOCUS Reports" / "2024" / "10" / "01"
    day.mkdir(parents=True)
    lines = list(csv.reader(FOCUS_REPORT.open(newline="")))
    lines[2][lines[0].index("BillingPeriodStart")] = "October"
    with open(day / "0001.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)
    with pytest.raises(ExtractError) as e:
        _arrow_path(tmp_path, dt.date(2024, 9, 30), dt.date(2024, 10, 1))
    assert str(e.value) == f"{day}/0001.csv: column BillingPeriodStart has a value that is not a timestamp (row 2)"
