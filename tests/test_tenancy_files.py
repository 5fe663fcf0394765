"""Tenant trust boundary, the file half (issue 10).

In multi tenancy a file:// source is read only inside $CLOUDACT_SOURCE_ROOT/<org>/ (real paths: no other org's
folder, no '..', no symlink out, no manifest pointing out), and messages name paths relative to that root.
In both modes no error repeats a file's contents: a bad cell is named by file, column and row, a damaged file
by a fixed reason.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import json
import shutil
from contextlib import ExitStack
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.remote import post_and_wait
from jobs.base import ExtractContext, ExtractError
from jobs.cloud import common
from jobs.genai import deepseek
from jobs.runner import land
from jobs.source_folder import SourceFolder
from shared import registry
from shared.auth import create_key
from shared.config import ROOT
from shared.secrets import CredentialStore
from shared.tenancy import TrustViolation
from stubs import gcp_billing_data as gcp_gen
from stubs.genai_data import deepseek_demo_csv, deepseek_demo_usage

SAMPLES = ROOT / "data" / "samples"
MARKER = "db_password=hunter2"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
GCP_DAY = dt.date(2025, 1, 30)
JULY = dt.date(2026, 7, 1)

# provider -> (pipeline, credential field, run window)
PROVIDERS = {
    "aws": ("cloud/aws/cost/billing", "source", NOV),
    "azure": ("cloud/azure/cost/billing", "source", (dt.date(2023, 9, 1), dt.date(2023, 9, 30))),
    "oci": ("cloud/oci/cost/billing", "source", NOV),
    "gcp": ("cloud/gcp/cost/billing", "source", (GCP_DAY, GCP_DAY)),
    "deepseek": ("genai/payg/deepseek", "usage_csv_dir", (JULY, JULY + dt.timedelta(days=30))),
}


def _fill(provider: str, folder: Path) -> Path:
    """A valid export of `provider` in `folder`; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    if provider == "gcp":
        return gcp_gen.write_parquet(gcp_gen.generate(GCP_DAY - dt.timedelta(days=1), GCP_DAY), folder)
    if provider == "deepseek":
        path = folder / "usage-2026-07.csv"
        path.write_text(deepseek_demo_csv(deepseek_demo_usage(JULY, 31, seed=3)))
        return path
    (sample,) = (SAMPLES / provider).glob("*.csv")
    return Path(shutil.copy(sample, folder / sample.name))


def _ctx(provider: str, location: str, org: str = "acme") -> ExtractContext:
    pipeline, field, (start, end) = PROVIDERS[provider]
    return ExtractContext(org, pipeline, f"cred_{provider}", "run_a", start, end, {field: location})


def _land(rt, provider: str, location: str) -> dict[str, int]:
    ctx = _ctx(provider, location)
    return land(rt.warehouse, registry.get(ctx.pipeline_id), ctx)


def _rows_landed(rt, provider: str) -> int:
    table = registry.get(PROVIDERS[provider][0]).raw_tables[0]
    return rt.warehouse.query(f"SELECT COUNT(*) AS n FROM `acme_prod.{table}`")[0]["n"]


@pytest.fixture()
def root(tmp_path, monkeypatch):
    """Multi tenancy with a source root holding acme's and beta's folders."""
    r = tmp_path / "sources"
    (r / "acme").mkdir(parents=True)
    (r / "beta").mkdir()
    monkeypatch.setenv("CLOUDACT_TENANCY", "multi")
    monkeypatch.setenv("CLOUDACT_SOURCE_ROOT", str(r))
    return r


def _refused(rt, provider: str, location: str, host: Path) -> str:
    """The refusal's message, having checked that nothing landed and that no host path is shown."""
    with pytest.raises(TrustViolation) as e:
        _land(rt, provider, location)
    assert _rows_landed(rt, provider) == 0
    assert str(host) not in str(e.value) and "/tmp" not in str(e.value)
    return str(e.value)


# --------------------------------------------------------------------------------------------------
# Part A: a tenant's file:// source is read only inside its own folder
# --------------------------------------------------------------------------------------------------
@pytest.fixture()
def api(rt, acme):
    from cli.server import start_background

    server, url = start_background()
    yield url, create_key(rt.warehouse, "acme")
    server.shutdown()


def _cur_totals(path: Path) -> tuple[int, Decimal]:
    """Rows and unblended cost of the CUR sample with usage in November 2023, summed from the CSV itself
    (each amount as NUMERIC holds it: 9 decimals, half to even)."""
    n, total = 0, Decimal(0)
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["lineItem/UsageStartDate"].startswith("2023-11"):
                n += 1
                total += Decimal(r["lineItem/UnblendedCost"] or "0").quantize(Decimal("1e-9"), ROUND_HALF_EVEN)
    return n, total


def test_a_source_under_the_orgs_own_root_runs_and_reconciles(rt, api, root):
    url, key = api
    sample = _fill("aws", root / "acme" / "aws")
    CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": (root / "acme" / "aws").as_uri()})
    run = post_and_wait(url, key, "acme", "cloud/aws/cost/billing",
                        {"start_date": "2023-11-01", "end_date": "2023-11-30"}, timeout=120)
    assert run["status"] == "succeeded", run
    (period,) = run["quality"]["reconciliation"]
    assert period["ok"] and period["billing_period"] == "2023-11-01"
    rows, cost = _cur_totals(sample)
    got = rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`")[0]
    assert (got["n"], got["s"]) == (rows, cost) and rows > 1000
    # the rows name their file relative to the org's root, not by the host's layout
    files = rt.warehouse.query("SELECT DISTINCT source_file AS f FROM `acme_prod.aws_billing_raw`")
    assert [r["f"] for r in files] == [f"aws/{sample.name}"]


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_another_orgs_folder_is_refused(rt, acme, root, provider):
    _fill(provider, root / "beta" / provider)
    msg = _refused(rt, provider, (root / "beta" / provider).as_uri(), root)
    assert "$CLOUDACT_SOURCE_ROOT/<org>/" in msg


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_dotdot_path_is_refused(rt, acme, root, provider):
    _fill(provider, root / "beta" / provider)
    (root / "acme" / provider).mkdir()
    _refused(rt, provider, f"file://{root}/acme/{provider}/../../beta/{provider}", root)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_symlinked_folder_leaving_the_root_is_refused(rt, acme, root, tmp_path, provider):
    _fill(provider, tmp_path / "elsewhere")
    (root / "acme" / provider).mkdir()
    (root / "acme" / provider / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    msg = _refused(rt, provider, (root / "acme" / provider).as_uri(), tmp_path)
    assert f"{provider}/more" in msg  # named relative to the org's root


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_symlinked_file_leaving_the_root_is_refused(rt, acme, root, tmp_path, provider):
    outside = _fill(provider, tmp_path / "elsewhere")
    (root / "acme" / provider).mkdir()
    (root / "acme" / provider / outside.name).symlink_to(outside)
    _refused(rt, provider, (root / "acme" / provider).as_uri(), tmp_path)


def test_the_whole_org_folder_as_a_symlink_to_elsewhere_is_refused(rt, acme, root, tmp_path):
    _fill("aws", tmp_path / "elsewhere")
    (root / "acme" / "aws").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _refused(rt, "aws", (root / "acme" / "aws").as_uri(), tmp_path)


def test_a_link_inside_the_org_folder_is_read(rt, acme, root):
    sample = _fill("aws", root / "acme" / "exports")
    (root / "acme" / "aws").mkdir()
    (root / "acme" / "aws" / "cur.csv").symlink_to(sample)
    assert _land(rt, "aws", (root / "acme" / "aws").as_uri())["aws_billing_raw"] == _cur_totals(sample)[0]


def test_a_manifest_naming_a_file_outside_is_refused(rt, acme, root):
    """AWS reportKeys and Azure blob names are keys in a bucket: a '..' key would climb out of the folder
    (here to beta's real export) and is refused before anything is read."""
    beta = _fill("aws", root / "beta" / "aws")
    folder = root / "acme" / "aws" / "cur"
    folder.mkdir(parents=True)
    (folder / "cur-Manifest.json").write_text(json.dumps({
        "billingPeriod": {"start": "20231101T000000.000Z"}, "reportKeys": [f"../../../beta/aws/{beta.name}"]}))
    msg = _refused(rt, "aws", (root / "acme" / "aws").as_uri(), root)
    assert "manifest aws/cur/cur-Manifest.json" in msg

    beta = _fill("azure", root / "beta" / "azure")
    run = root / "acme" / "azure" / "export" / "20230901-20230930" / "run1"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "exportConfig": {"exportName": "export", "type": "ActualCost"},
        "runInfo": {"startDate": "2023-09-01T00:00:00Z", "submittedTime": "2023-10-01T00:00:00Z"},
        "blobs": [{"blobName": f"../../../../../beta/azure/{beta.name}"}]}))
    _refused(rt, "azure", (root / "acme" / "azure").as_uri(), root)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_without_a_source_root_file_sources_are_refused(rt, acme, root, monkeypatch, provider):
    monkeypatch.delenv("CLOUDACT_SOURCE_ROOT")
    _fill(provider, root / "acme" / provider)
    assert "CLOUDACT_SOURCE_ROOT" in _refused(rt, provider, (root / "acme" / provider).as_uri(), root)


def test_single_tenancy_reads_any_folder_as_before(rt, acme, tmp_path):
    """The embedded default: one operator, whose machine it is (a link to a file elsewhere is read)."""
    sample = _fill("aws", tmp_path / "elsewhere")
    (tmp_path / "cur").mkdir()
    (tmp_path / "cur" / "cur.csv").symlink_to(sample)
    assert _land(rt, "aws", (tmp_path / "cur").as_uri())["aws_billing_raw"] == _cur_totals(sample)[0]


def test_a_refusal_ends_the_run_failed_without_a_host_path(rt, api, root, tmp_path):
    """The folder was fine when the credential was stored; a link out of it added later fails the run."""
    url, key = api
    _fill("aws", root / "acme" / "aws")
    CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": (root / "acme" / "aws").as_uri()})
    _fill("aws", tmp_path / "elsewhere" / "secret")
    (root / "acme" / "aws" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    run = post_and_wait(url, key, "acme", "cloud/aws/cost/billing",
                        {"start_date": "2023-11-01", "end_date": "2023-11-30"}, timeout=120)
    assert run["status"] == "failed"
    assert "aws/more" in run["error"] and str(tmp_path) not in run["error"] and "/tmp" not in run["error"]
    assert _rows_landed(rt, "aws") == 0


def test_what_is_read_is_what_was_opened(root, tmp_path, monkeypatch):
    """The check is made again on the open descriptor: a link swapped in after the path was checked (here:
    the path check made to pass) is still refused."""
    (tmp_path / "secret.csv").write_text(MARKER)
    (root / "acme" / "aws").mkdir()
    (root / "acme" / "aws" / "cur.csv").symlink_to(tmp_path / "secret.csv")
    folder = SourceFolder((root / "acme" / "aws").as_uri(), "acme")
    monkeypatch.setattr(SourceFolder, "checked", lambda self, path, what="a file": self.root / path)
    with pytest.raises(TrustViolation), ExitStack() as stack:
        folder.local_path("aws/cur.csv", stack)
    with pytest.raises(TrustViolation):
        folder.read_bytes("aws/cur.csv")


def test_usage_import_writes_only_into_the_orgs_folder(root, tmp_path):
    """`cloudact usage import` reads the operator's file from anywhere and files it in the org's folder."""
    export = tmp_path / "downloads" / "usage.csv"
    export.parent.mkdir()
    export.write_text(deepseek_demo_csv(deepseek_demo_usage(JULY, 3, seed=1)))
    dest, records = deepseek.import_usage_file({"usage_csv_dir": (root / "acme" / "deepseek").as_uri()}, export,
                                               org_slug="acme")
    assert dest.parent == root / "acme" / "deepseek" and dest.read_bytes() == export.read_bytes() and records
    for where in (root / "beta" / "deepseek", root / "acme" / ".." / "beta"):
        with pytest.raises(TrustViolation):
            deepseek.import_usage_file({"usage_csv_dir": where.as_uri()}, export, org_slug="acme")
    with pytest.raises(TrustViolation):  # multi: the org must be known
        deepseek.import_usage_file({"usage_csv_dir": (root / "acme" / "deepseek").as_uri()}, export)
    assert not list((root / "beta").rglob("*"))


# --------------------------------------------------------------------------------------------------
# Part B: errors name the file, the column and the row, never a value or a line of the file
# --------------------------------------------------------------------------------------------------
def _spoil_csv(path: Path, column: str, row: int) -> None:
    """Data row `row` (1-based) of the CSV gets MARKER in `column`."""
    with path.open(newline="") as fh:
        lines = list(csv.reader(fh))
    lines[row][lines[0].index(column)] = MARKER
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)


def _focus_export(folder: Path) -> tuple[Path, int]:
    """An AWS FOCUS export of October 30 to November 2, October's charges (out of the run's range) interleaved
    with November's; returns the file and the row of its last November charge."""
    from tests.test_focus_exports import aws_shape, charges, csv_bytes

    header, rows = aws_shape(charges("aws", dt.date(2023, 10, 30), dt.date(2023, 11, 2)), "1.2")
    october = [r for r in rows if r["ChargePeriodStart"].startswith("2023-10")]
    november = [r for r in rows if not r["ChargePeriodStart"].startswith("2023-10")]
    rows = [r for pair in itertools.zip_longest(october, november) for r in pair if r is not None]
    folder.mkdir(parents=True)
    path = folder / "focus-00001.csv"
    path.write_bytes(csv_bytes(header, rows))
    return path, max(i for i, r in enumerate(rows, 1) if r in november)


def _gcp_with_text_cost(folder: Path) -> tuple[Path, int]:
    """The GCP export with its cost column as text (as a CSV round-trip leaves it), MARKER in the third row
    with usage in the run's range; returns the file and that row."""
    path = _fill("gcp", folder)
    table = pq.read_table(path)
    starts = table.column("usage_start_time").to_pylist()
    row = [i for i, t in enumerate(starts, 1) if t.date() == GCP_DAY][2]
    cost = [str(v) for v in table.column("cost").to_pylist()]
    cost[row - 1] = MARKER
    table = table.set_column(table.schema.get_field_index("cost"), "cost", pa.array(cost, pa.string()))
    pq.write_table(table, path)
    return path, row


def _in_range_row(path: Path, column: str, prefix: str) -> int:
    with path.open(newline="") as fh:
        return next(i for i, r in enumerate(csv.DictReader(fh), 1) if r[column].startswith(prefix))


@pytest.mark.parametrize("case", ["aws", "aws-focus", "azure", "oci", "gcp", "deepseek"])
def test_a_bad_cell_is_named_by_file_column_and_row_never_by_its_value(rt, acme, root, monkeypatch, case):
    provider = case.split("-")[0]
    folder = root / "acme" / provider
    if case == "aws":
        path = _fill("aws", folder)
        column = "lineItem/UnblendedCost"
        row = _in_range_row(path, "lineItem/UsageStartDate", "2023-11") + 7
    elif case == "aws-focus":  # the Arrow reader: batches of a few rows, out-of-range rows dropped before the cast
        monkeypatch.setattr(common, "CSV_BLOCK_BYTES", 4096)
        (path, row), column = _focus_export(folder), "BilledCost"
    elif case == "azure":
        path, column, row = _fill("azure", folder), "CostInBillingCurrency", 11
    elif case == "oci":
        path, column, row = _fill("oci", folder), "cost/myCost", 17
    elif case == "gcp":
        (path, row), column = _gcp_with_text_cost(folder), "cost"
    else:
        path, column, row = _fill("deepseek", folder), "output_tokens", 4
    if path.suffix == ".csv":
        _spoil_csv(path, column, row)
    with pytest.raises(ExtractError) as e:
        _land(rt, provider, folder.as_uri())
    msg = str(e.value)
    name = path.name if provider == "deepseek" else f"{provider}/{path.name}"  # DeepSeek names the file alone
    assert msg.startswith(name) and column in msg and f"row {row}" in msg, msg
    assert MARKER not in msg and "hunter2" not in msg and str(root) not in msg


def test_a_broken_csv_line_is_not_quoted(rt, acme, root):
    """DuckDB's and Arrow's CSV errors quote the offending line ("Original Line: ..."): never passed on."""
    path = _fill("aws", root / "acme" / "aws")
    lines = path.read_text().splitlines()
    lines.insert(5, lines[5] + f",{MARKER},x")  # a row with more fields than the header
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExtractError) as e:
        _land(rt, "aws", (root / "acme" / "aws").as_uri())
    assert str(e.value).startswith(f"aws/{path.name} is corrupted") and MARKER not in str(e.value)


TEXT_COLUMN = {"aws": "lineItem/LineItemDescription", "azure": "MeterName", "oci": "product/Description"}


@pytest.mark.parametrize("provider", list(TEXT_COLUMN))
def test_a_truncated_gzip_error_holds_none_of_the_files_bytes(rt, acme, root, provider):
    folder = root / "acme" / provider
    sample = _fill(provider, folder)
    _spoil_csv(sample, TEXT_COLUMN[provider], 2)
    data = gzip.compress(sample.read_bytes())
    sample.unlink()
    (folder / (sample.name + ".gz")).write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractError) as e:
        _land(rt, provider, folder.as_uri())
    msg = str(e.value)
    assert msg.startswith(f"{provider}/{sample.name}.gz is corrupted or truncated") and "gzip" in msg
    assert MARKER not in msg and "hunter2" not in msg


@pytest.mark.parametrize("provider", ["aws", "gcp"])
def test_a_damaged_parquet_error_holds_none_of_the_files_bytes(rt, acme, root, provider):
    folder = root / "acme" / provider
    folder.mkdir()
    good = io.BytesIO()
    pq.write_table(pa.table({"note": [MARKER] * 20}), good)
    (folder / "export-00001.parquet").write_bytes(good.getvalue()[:-12] + MARKER.encode())  # a broken footer
    with pytest.raises(ExtractError) as e:
        _land(rt, provider, folder.as_uri())
    msg = str(e.value)
    assert msg.startswith(f"{provider}/export-00001.parquet is corrupted or truncated") and "Parquet" in msg
    assert MARKER not in msg and "hunter2" not in msg
