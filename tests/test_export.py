"""`cloudact export` and shared/export.py: every row, exact money, the format the extension names, filters,
streaming (never one materialized result), and s3:// (moto) and az:// (Azurite) targets with the org's credential.

Expected totals come from the bundled billing samples read here with the csv module and Decimal, never from the
project's own queries."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.main import cli
from shared import export as ex
from shared import schemas, service_map
from tests import cloud_kit as kit
from tests.azurite import azurite  # noqa: F401 - fixture
from tests.emulators import gcs_emulator  # noqa: F401 - fixture

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
AWS_CSV = SAMPLES / "aws" / "sample-anonymous-aws-export-dataset.csv"
OCI_CSV = SAMPLES / "oci" / "reports_cost-csv_0000000030000269.csv"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
NANO = Decimal("1e-9")
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def aws_rows() -> list[dict]:
    with AWS_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def aws_cost(days: set[str] | None = None) -> Decimal:
    """lineItem/UnblendedCost summed from the sample, each row at NUMERIC's 9 places (half-even), optionally only
    the rows whose usage starts on `days`."""
    return sum((Decimal(r["lineItem/UnblendedCost"]).quantize(NANO, ROUND_HALF_EVEN) for r in aws_rows()
                if days is None or r["lineItem/UsageStartDate"][:10] in days), Decimal(0))


def oci_count() -> int:
    with OCI_CSV.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


@pytest.fixture()
def landed(rt, acme):
    wh = rt.warehouse
    service_map.sync(wh)
    kit.land_and_convert(wh, "cloud/aws/cost/billing", "cred_aws", {"source": (SAMPLES / "aws").as_uri()}, *NOV)
    kit.land_and_convert(wh, "cloud/oci/cost/billing", "cred_oci", {"source": (SAMPLES / "oci").as_uri()}, *NOV,
                         run_id="run_oci")
    return wh


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


# -- formats ---------------------------------------------------------------------------------------


def test_parquet_holds_every_row_with_the_tables_types_and_exact_money(landed, tmp_path):
    out = tmp_path / "nested" / "focus.parquet"
    done = run("export", "acme", "--out", str(out))
    assert done.exit_code == 0, done.output
    table = pq.read_table(out)
    n_aws = len(aws_rows())
    assert table.num_rows == n_aws + oci_count()
    assert f"wrote {table.num_rows:,} rows" in done.output
    assert table.schema == schemas.get("cost_data_standard_1_3").arrow_schema()
    pipelines = Counter(table.column("x_pipeline_id").to_pylist())
    assert pipelines["cloud/aws/cost/billing"] == n_aws
    aws = table.filter(pa.compute.equal(table.column("x_pipeline_id"), "cloud/aws/cost/billing"))
    assert sum(aws.column("BilledCost").to_pylist(), Decimal(0)) == aws_cost()
    assert not list(tmp_path.glob("nested/.cloudact-export-*"))  # the temporary file became the export


def test_csv_and_gzip_csv_write_focus_text(landed, tmp_path):
    assert run("export", "acme", "--out", str(tmp_path / "f.csv")).exit_code == 0
    assert run("export", "acme", "--out", str(tmp_path / "f.CSV.GZ")).exit_code == 0
    plain = (tmp_path / "f.csv").read_bytes()
    unzipped = gzip.decompress((tmp_path / "f.CSV.GZ").read_bytes()).decode().splitlines()
    assert unzipped[0] == plain.decode().splitlines()[0]
    assert sorted(unzipped[1:]) == sorted(plain.decode().splitlines()[1:])  # the same rows, in no set order
    rows = read_csv(plain)
    assert list(rows[0]) == schemas.get("cost_data_standard_1_3").names
    assert len(rows) == len(aws_rows()) + oci_count()
    aws = [r for r in rows if r["x_pipeline_id"] == "cloud/aws/cost/billing"]
    assert sum((Decimal(r["BilledCost"]) for r in aws), Decimal(0)) == aws_cost()
    money = [f.name for f in schemas.get("cost_data_standard_1_3").fields if f.type == "NUMERIC"]
    for r in rows:
        assert ISO_SECONDS.match(r["ChargePeriodStart"]) and ISO_SECONDS.match(r["BillingPeriodEnd"]), r
        # fixed point with every place: never Arrow's `0E-9`
        assert all(re.fullmatch(r"-?\d+\.\d{9}", r[c]) for c in money if r[c]), [r[c] for c in money]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", r["x_ingested_at"])
    assert {r["BilledCost"] for r in aws if Decimal(r["BilledCost"]) == 0} == {"0.000000000"}
    # NULL is an empty field, an empty string a quoted one: they stay apart
    line = plain.decode().splitlines()[1]
    assert ",," in line and line.count('""') == 0


def test_decimal_text_is_fixed_point_for_every_magnitude():
    values = ["0", "1.5", "-0.000000001", "0.000000999", "-0.00000015", "0.000001", "-12345678901234567890.123456789"]
    col = pa.array([Decimal(v) for v in values] + [None], pa.decimal128(38, 9))
    assert ex._decimal_text(col).to_pylist() == [
        "0.000000000", "1.500000000", "-0.000000001", "0.000000999", "-0.000000150", "0.000001000",
        "-12345678901234567890.123456789", None]
    assert [Decimal(t) for t in ex._decimal_text(col).to_pylist()[:-1]] == [Decimal(v) for v in values]


@pytest.mark.parametrize("name", ["focus.xlsx", "focus.json", "focus", "focus.parquet.tmp", "focus.csv.zip"])
def test_an_unknown_extension_is_refused_and_nothing_is_written(landed, tmp_path, name):
    done = run("export", "acme", "--out", str(tmp_path / "out" / name))
    assert done.exit_code == 1
    text = " ".join(done.output.split())
    assert "unknown export format" in text and ".csv, .csv.gz, .parquet" in text
    assert not (tmp_path / "out").exists()


def test_format_of_reads_the_extension_only():
    assert [ex.format_of(n) for n in ("a.parquet", "a.PARQUET", "a.csv", "b.tar.csv.gz", "s3/k.csv.gz")] == [
        "parquet", "parquet", "csv", "csv.gz", "csv.gz"]
    with pytest.raises(ex.ExportInvalid):
        ex.format_of("a.gz")


# -- filters ---------------------------------------------------------------------------------------


def test_from_to_and_provider_select_the_rows(landed, tmp_path):
    out = tmp_path / "aws.csv"
    done = run("export", "acme", "--out", str(out), "--provider", "AWS", "--from", "2023-11-04", "--to", "2023-11-05")
    assert done.exit_code == 0, done.output
    rows = read_csv(out.read_bytes())
    days = {"2023-11-04", "2023-11-05"}
    expected = [r for r in aws_rows() if r["lineItem/UsageStartDate"][:10] in days]
    assert len(rows) == len(expected) == 226 + 155
    assert {r["x_pipeline_id"] for r in rows} == {"cloud/aws/cost/billing"}
    assert {r["ChargePeriodStart"][:10] for r in rows} == days
    assert sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0)) == aws_cost(days)

    assert run("export", "acme", "--out", str(tmp_path / "oci.parquet"), "--provider", "oci").exit_code == 0
    oci = pq.read_table(tmp_path / "oci.parquet")
    assert oci.num_rows == oci_count()
    assert set(oci.column("x_pipeline_id").to_pylist()) == {"cloud/oci/cost/billing"}
    # a FOCUS ServiceProviderName works too
    by_name = ex.Filter.parse(provider="Amazon Web Services")
    assert ex.count(landed, "acme", by_name) == len(aws_rows())


def test_no_matching_rows_writes_a_valid_empty_file_and_warns(landed, tmp_path):
    done = run("export", "acme", "--out", str(tmp_path / "none.parquet"), "--provider", "nonesuch")
    assert done.exit_code == 0
    assert "wrote 0 rows" in done.output and "no FOCUS rows matched" in done.output
    assert pq.read_table(tmp_path / "none.parquet").schema == schemas.get("cost_data_standard_1_3").arrow_schema()
    assert run("export", "acme", "--out", str(tmp_path / "none.csv"), "--from", "2030-01-01").exit_code == 0
    assert (tmp_path / "none.csv").read_text().count("\n") == 1  # the header


@pytest.mark.parametrize("args, message", [
    (["--from", "2023-11-05", "--to", "2023-11-04"], "ends (2023-11-04) before it starts"),
    (["--from", "yesterday"], "'yesterday' is not a date"),
    (["--to", "1999-01-01"], "outside 2006-01-01"),
])
def test_bad_filters_are_refused(landed, tmp_path, args, message):
    done = run("export", "acme", "--out", str(tmp_path / "x.csv"), *args)
    assert done.exit_code == 1 and message in " ".join(done.output.split())
    assert not (tmp_path / "x.csv").exists()


def test_an_unknown_org_is_the_friendly_error(landed, tmp_path):
    done = run("export", "nosuch", "--out", str(tmp_path / "x.csv"))
    assert done.exit_code == 1
    assert "no organization 'nosuch'" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "x.csv").exists()


# -- streaming -------------------------------------------------------------------------------------


def test_the_export_is_written_batch_by_batch_from_a_stream(landed, monkeypatch):
    """One batch in memory at a time: the writer sees the rows as the warehouse streams them, and the
    materializing read (query_arrow, which ran out of memory on large orgs) is never used."""
    def materialized(*a, **k):
        raise AssertionError("export materialized the whole result")

    monkeypatch.setattr(type(landed), "query_arrow", materialized)
    seen: list[int] = []
    sink = io.BytesIO()
    rows = ex.export(landed, "acme", sink, "parquet", progress=seen.append, batch_rows=100)
    assert rows == len(aws_rows()) + oci_count()
    assert len(seen) >= rows // 100 and seen == sorted(seen) and seen[-1] == rows
    assert pq.read_table(io.BytesIO(sink.getvalue())).num_rows == rows


def test_the_cli_export_never_materializes_the_result(landed, tmp_path, monkeypatch):
    monkeypatch.setattr(type(landed), "query_arrow", lambda *a, **k: pytest.fail("export materialized the result"))
    done = run("export", "acme", "--out", str(tmp_path / "f.parquet"))
    assert done.exit_code == 0, done.output
    assert pq.read_table(tmp_path / "f.parquet").num_rows == len(aws_rows()) + oci_count()


def test_stream_yields_the_file_in_chunks_with_the_same_bytes(landed):
    chunks = list(ex.stream(landed, "acme", "csv", batch_rows=200))
    assert len(chunks) > 5
    whole = io.BytesIO()
    ex.export(landed, "acme", whole, "csv", batch_rows=200)
    streamed, written = b"".join(chunks).decode().splitlines(), whole.getvalue().decode().splitlines()
    assert streamed[0] == written[0] and sorted(streamed[1:]) == sorted(written[1:])  # rows in no set order
    parquet = b"".join(ex.stream(landed, "acme", "parquet", ex.Filter.parse(provider="aws"), batch_rows=200))
    assert pq.read_table(io.BytesIO(parquet)).num_rows == len(aws_rows())


def test_a_slow_reader_keeps_its_stream_while_other_queries_run(landed):
    """The stream has a cursor of its own: queries on the same thread between two batches do not cut it off."""
    reader = landed.stream_arrow("SELECT BilledCost FROM `acme_prod.cost_data_standard_1_3`", batch_rows=100)
    got = 0
    for batch in reader:
        got += batch.num_rows
        assert landed.query("SELECT COUNT(*) AS n FROM `organizations.organizations`")[0]["n"] == 1
    assert got == len(aws_rows()) + oci_count()


# -- object stores ---------------------------------------------------------------------------------


@pytest.fixture()
def moto_s3():
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from stubs.moto_loopback import KEYS, moto_endpoint

    with moto_endpoint() as endpoint:
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, **KEYS)
        s3.create_bucket(Bucket="finops-exports")
        yield s3, endpoint


def add_credential(rt, kind: str, doc: dict) -> str:
    from shared.secrets import CredentialStore

    return CredentialStore(rt.warehouse, rt.settings).add("acme", kind, doc, label="export")


def test_s3_target_is_written_with_the_orgs_aws_credential(landed, rt, moto_s3, tmp_path, monkeypatch):
    s3, endpoint = moto_s3
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    add_credential(rt, "aws", {"source": "s3://finops-exports/cur", "endpoint_url": endpoint, "region": "us-east-1",
                               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    done = run("export", "acme", "--out", "s3://finops-exports/acme/2023-11.csv.gz", "--provider", "aws")
    assert done.exit_code == 0, done.output
    body = s3.get_object(Bucket="finops-exports", Key="acme/2023-11.csv.gz")["Body"].read()
    rows = read_csv(gzip.decompress(body))
    assert len(rows) == len(aws_rows())
    assert sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0)) == aws_cost()
    assert not list(rt.settings.home.glob(".cloudact-export-*"))  # the spooled file is gone

    # a bucket the credential cannot write names the target, and leaves nothing behind
    done = run("export", "acme", "--out", "s3://no-such-bucket/x.parquet")
    assert done.exit_code == 1 and "s3://no-such-bucket/x.parquet" in done.output
    assert not list(rt.settings.home.glob(".cloudact-export-*"))


def test_multi_tenancy_never_writes_with_the_platforms_identity(landed, rt, monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDACT_TENANCY", "multi")
    monkeypatch.setenv("CLOUDACT_SOURCE_ROOT", str(tmp_path))
    from shared.config import settings

    rt.settings = settings()
    done = run("export", "acme", "--out", "s3://finops-exports/x.parquet")
    assert done.exit_code == 1 and "no active aws credential for org 'acme'" in done.output
    done = run("export", "acme", "--out", "az://exports/x.parquet")
    assert done.exit_code == 1 and "no active azure credential for org 'acme'" in done.output


def test_az_target_is_written_with_the_orgs_azure_credential(landed, rt, azurite, tmp_path):  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    try:
        service.create_container("exports")
    except Exception:  # noqa: BLE001 - the session's emulator may have it already
        pass
    add_credential(rt, "azure", {"connection_string": azurite, "container": "costexports"})
    done = run("export", "acme", "--out", "az://exports/acme/focus.parquet")
    assert done.exit_code == 0, done.output
    data = service.get_container_client("exports").download_blob("acme/focus.parquet").readall()
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == len(aws_rows()) + oci_count()


def gcs_object(endpoint: str, bucket: str, name: str) -> bytes:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=None, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    return client.bucket(bucket).blob(name).download_as_bytes()


def test_gs_target_is_written_with_the_orgs_gcp_credential(landed, rt, gcs_emulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # the credential's endpoint wins over the host's
    add_credential(rt, "gcp", {"access_token": "ya29.test", "storage_url": gcs_emulator})
    # the smallest parts and no single-request upload: the file goes up as a large export does, resumable in parts
    monkeypatch.setattr("cli.export_targets.GCS_PART", 256 * 1024)
    monkeypatch.setattr("google.cloud.storage.blob._MAX_MULTIPART_SIZE", 0)
    done = run("export", "acme", "--out", "gs://finops-exports/acme/focus.parquet")
    assert done.exit_code == 0, done.output
    table = pq.read_table(io.BytesIO(gcs_object(gcs_emulator, "finops-exports", "acme/focus.parquet")))
    assert table.num_rows == len(aws_rows()) + oci_count()
    billed = pa.compute.sum(table.filter(pa.compute.equal(table["ProviderName"], "Amazon Web Services"))["BilledCost"])
    assert billed.as_py() == aws_cost()

    done = run("export", "acme", "--out", "gs://finops-exports/acme/aws.csv.gz", "--provider", "aws")
    assert done.exit_code == 0, done.output
    rows = read_csv(gzip.decompress(gcs_object(gcs_emulator, "finops-exports", "acme/aws.csv.gz")))
    assert sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0)) == aws_cost()
    assert not list(rt.settings.home.glob(".cloudact-export-*"))


def test_a_gs_bucket_that_refuses_names_the_target_and_leaves_nothing(landed, rt, gcs_emulator):  # noqa: F811
    add_credential(rt, "gcp", {"access_token": "ya29.test", "storage_url": gcs_emulator})
    done = run("export", "acme", "--out", "gs://no-such-bucket/x.parquet")
    assert done.exit_code == 1 and "gs://no-such-bucket/x.parquet" in " ".join(done.output.split())
    assert not list(rt.settings.home.glob(".cloudact-export-*"))


def test_multi_tenancy_writes_gs_only_to_public_endpoints_with_the_tenants_identity(landed, rt, monkeypatch,
                                                                                     tmp_path, gcs_emulator):  # noqa: F811
    from shared.config import settings
    from shared.secrets import CredentialInvalid

    monkeypatch.setenv("CLOUDACT_TENANCY", "multi")
    monkeypatch.setenv("CLOUDACT_SOURCE_ROOT", str(tmp_path))
    rt.settings = settings()
    done = run("export", "acme", "--out", "gs://finops-exports/x.parquet")
    assert done.exit_code == 1 and "no active gcp credential for org 'acme'" in done.output
    for internal in (gcs_emulator, "https://169.254.169.254", "https://127.0.0.1:8443"):
        with pytest.raises(CredentialInvalid, match="storage_url"):
            add_credential(rt, "gcp", {"access_token": "ya29.test", "storage_url": internal})


@pytest.mark.parametrize("out, message", [
    ("s3://bucket/", "name the object"),
    ("s3:///key.csv", "name the object"),
    ("gs://bucket/", "name the object"),
    ("https://example.com/x.csv", "export to a local path, s3://bucket/key, gs://bucket/object or"),
])
def test_targets_that_cannot_be_written_are_refused_before_reading(landed, out, message):
    done = run("export", "acme", "--out", out)
    assert done.exit_code == 1 and message in " ".join(done.output.split())


# -- GET /api/v1/costs/{org}/export ------------------------------------------------------------------


@pytest.fixture()
def api(landed):
    from cli.server import app
    from shared.auth import create_key
    from shared.tenants import create_org

    create_org(landed, "globex")
    return app().test_client(), {"acme": create_key(landed, "acme"), "globex": create_key(landed, "globex")}


def get_export(api, org="acme", key="acme", **params):
    client, keys = api
    return client.get(f"/api/v1/costs/{org}/export", query_string=params,
                      headers={"X-API-Key": keys[key]} if key else {})


def test_the_export_route_streams_parquet_by_default_with_every_row(api):
    r = get_export(api)
    assert r.status_code == 200 and r.is_streamed
    assert r.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert r.headers["Content-Disposition"] == 'attachment; filename="acme-focus.parquet"'
    table = pq.read_table(io.BytesIO(r.get_data()))
    assert table.num_rows == len(aws_rows()) + oci_count()
    aws = table.filter(pa.compute.equal(table.column("x_pipeline_id"), "cloud/aws/cost/billing"))
    assert sum(aws.column("BilledCost").to_pylist(), Decimal(0)) == aws_cost()


def test_the_export_route_csv_with_filters(api):
    r = get_export(api, format="csv", provider="aws", **{"from": "2023-11-04", "to": "2023-11-05"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = read_csv(r.get_data())
    days = {"2023-11-04", "2023-11-05"}
    assert len(rows) == 226 + 155 and {r["ChargePeriodStart"][:10] for r in rows} == days
    assert sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0)) == aws_cost(days)
    gz = get_export(api, format="csv.gz", provider="oci")
    assert gz.headers["Content-Type"] == "application/gzip"
    assert len(read_csv(gzip.decompress(gz.get_data()))) == oci_count()


def test_the_export_route_needs_the_orgs_own_key(api):
    client, keys = api
    assert get_export(api, key=None).status_code == 401
    assert client.get("/api/v1/costs/acme/export", headers={"X-API-Key": keys["acme"] + "x"}).status_code == 401
    other = get_export(api, key="globex")
    assert other.status_code == 403 and "acme" in other.json["message"]
    own = get_export(api, org="globex", key="globex", format="csv")
    assert own.status_code == 200 and read_csv(own.get_data()) == []  # globex has no rows, never acme's
    assert client.post("/api/v1/costs/acme/export", headers={"X-API-Key": keys["acme"]}).status_code == 405


@pytest.mark.parametrize("params, field", [
    ({"format": "xlsx"}, "format"),
    ({"from": "2023-13-01"}, "from"),
    ({"to": "1999-01-01"}, "to"),
    ({"from": "2023-11-05", "to": "2023-11-04"}, "to"),
])
def test_the_export_route_names_a_bad_parameter(api, params, field):
    r = get_export(api, **params)
    assert r.status_code == 400 and r.json["error"] == "invalid_query" and r.json["field"] == field, r.json
