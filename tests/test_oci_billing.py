"""cloud/oci/cost/billing: cost-report extractor (file:// and Object Storage via the oci SDK against the
loopback stub) and sp_cloud_1_convert_to_focus on DuckDB."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract.slices import bound

from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import oci as oci_job
from shared import focus, procedures, service_map
from tests import cloud_kit as kit
from tests.cloud_kit import dsum

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "samples" / "oci"
SAMPLE = FIXTURES / "reports_cost-csv_0000000030000269.csv"
PIPELINE = "cloud/oci/cost/billing"
CRED = "cred_oci"
NOV = (dt.date(2023, 11, 1), dt.date(2023, 11, 30))
DAY = (dt.date(2023, 11, 13), dt.date(2023, 11, 13))
SAMPLE_TOTAL = Decimal("2.523589325400648027")  # sum of cost/myCost in the sample (506 rows, USD)
SAMPLE_TOTAL_9DP = Decimal("2.523589327")  # the same, each row rounded to NUMERIC's 9 decimals
TENANCY = "ocid1.tenancy.oc1..aaaaaaaadsyhydp66mjpsohqocfcgzaabtrit47ex2igzu2j6lhuadrrglca"


def run_extract(credential, start=NOV[0], end=NOV[1]):
    ctx = ExtractContext("acme", PIPELINE, CRED, "run_a", start, end, credential)
    return (*kit.extracted(ctx, "oci_billing_raw"), ctx)


def sample_rows() -> tuple[list[str], list[dict]]:
    with SAMPLE.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def to_csv_gz(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return gzip.compress(buf.getvalue().encode())


# Hand-made rows: a correction, a credit, an unknown unit and service, an overage row, on 2024-03-01/02.
def extra_rows(header: list[str]) -> list[dict]:
    base = dict.fromkeys(header, "")
    base.update({"lineItem/tenantId": TENANCY, "product/compartmentId": "ocid1.compartment.oc1..c1",
                 "product/compartmentName": "prod", "product/region": "us-ashburn-1", "cost/currencyCode": "USD",
                 "cost/overageFlag": "false", "lineItem/isCorrection": "false"})

    def row(ref, day, service, qty, price, cost, unit, **kw):
        r = dict(base, **{"lineItem/referenceNo": ref, "lineItem/intervalUsageStart": f"2024-03-{day:02d}T00:00Z",
                          "lineItem/intervalUsageEnd": f"2024-03-{day:02d}T01:00:00Z", "product/service": service,
                          "usage/billedQuantity": qty, "cost/unitPrice": price, "cost/myCost": cost,
                          "cost/billingUnitReadable": unit, "cost/productSku": "B" + ref[-5:],
                          "product/Description": f"{service} {ref}", "product/resourceId": f"ocid1.x.{ref}"})
        r.update(kw)
        return r

    return [
        row("ref00001", 1, "COMPUTE", "2", "0.025", "0.05", "1 NONE HOURS OCPUS", **{"tags/Team.Name": "Core"}),
        row("ref00002", 1, "COMPUTE", "-2", "0.025", "-0.05", "1 NONE HOURS OCPUS",
            **{"lineItem/isCorrection": "true", "lineItem/backreferenceNo": "ref00001"}),
        row("ref00003", 2, "COMPUTE", "", "", "-1.25", "", **{"product/resourceId": ""}),
        row("ref00004", 2, "SOME_NEW_SERVICE", "3", "0.1", "0.3", "10 WEIRD FORTNIGHTS THINGS",
            **{"cost/overageFlag": "true", "cost/myCostOverage": "0.3"}),
        row("ref00005", 20, "OBJECTSTORE", "5", "0.0255", "0.1275", "1 GiB MONTHS STORAGE_SIZE"),  # outside Mar 1-2
    ]


EXTRA_TOTAL_MAR_1_2 = Decimal("0.05") - Decimal("0.05") - Decimal("1.25") + Decimal("0.3")


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("readable,description,unit", [
    ("1 GiB MONTHS STORAGE_SIZE", "GB Months", "GiB-Months"),
    ("1 TiB MONTHS STORAGE_SIZE", "TB", "TiB-Months"),
    ("1 GiB HOURS MEMORY", "GB Hours", "GiB-Hours"),
    ("1 GiB NONE DATA_TRANSFERRED", "GB Of Data Transferred", "GiB"),
    ("1 NONE HOURS OCPUS", "OCPU Hours", "OCPU-Hours"),
    ("1 NONE HOURS INSTANCE", "Instance per hour", "Instance-Hours"),
    ("1000000 NONE NONE DATAPOINTS", "Million Datapoints", "1000000 Datapoints"),
    ("10000 NONE NONE REQUESTS", None, "10000 Requests"),
    ("10 WEIRD FORTNIGHTS THINGS", None, "Units"),
    (None, "GB Months", "GB-Months"),
    (None, "Hours", "Hours"),
    (None, "Million Datapoints", "1000000 Datapoints"),
    (None, "Something Odd Here", "Units"),
    (None, None, None),
])
def test_focus_units(readable, description, unit):
    assert oci_job.focus_unit(readable, description) == unit


# --------------------------------------------------------------------------------------------------
# Extractor: file://
# --------------------------------------------------------------------------------------------------
def test_extracts_the_real_sample_with_exact_totals():
    raw, totals, _ = run_extract({"source": f"file://{FIXTURES}"})
    assert raw.num_rows == 506
    assert dsum(raw, "my_cost") == SAMPLE_TOTAL_9DP
    assert round(dsum(raw, "my_cost"), 2) == round(SAMPLE_TOTAL, 2)
    assert totals.to_pylist() == [{"usage_date": dt.date(2023, 11, 13), "billing_period": dt.date(2023, 11, 1),
                                   "provider": "oci", "currency": "USD", "source_rows": 506,
                                   "source_cost": SAMPLE_TOTAL_9DP}]
    first = raw.slice(0, 1).to_pylist()[0]
    assert first["interval_start"] == dt.datetime(2023, 11, 13, 10, tzinfo=dt.UTC)  # '2023-11-13T10:00Z'
    assert first["interval_end"] == dt.datetime(2023, 11, 13, 11, tzinfo=dt.UTC)
    assert (first["tenant_id"], first["compartment_name"], first["service"]) == (TENANCY, "platformpm2022", "DATABASE")
    assert (first["sku_part_number"], first["billing_unit"], first["pricing_unit"]) == (
        "B92911", "1 NONE HOURS INSTANCE", "Instance-Hours")
    assert first["is_correction"] is False and first["overage_flag"] is False and first["report_type"] == "cost"
    tags = json.loads(first["tags"])
    assert tags["oracle-tags.createdby"] == "default/phil.newman@oracle.com" and tags["valtest.cat"] == "boots"
    assert all(k == k.lower() for k in tags)
    assert set(raw.column("pricing_unit").to_pylist()) == {
        "1000000 Datapoints", "GiB-Months", "Instance-Hours", "GiB-Hours", "TiB-Months", "OCPU-Hours", "GiB"}


def test_filters_rows_to_the_run_range():
    raw, totals, _ = run_extract({"source": f"file://{FIXTURES}"}, dt.date(2023, 11, 14), dt.date(2023, 11, 20))
    assert raw.num_rows == 0 and totals.num_rows == 0


def test_missing_required_columns_are_named(tmp_path):
    kit.assert_missing_columns_named(run_extract, tmp_path / "0001-00001.csv",
                                     "lineItem/intervalUsageStart,cost/myCost\n2023-11-13T10:00Z,1\n",
                                     "lineItem/tenantId", "cost/currencyCode")


def test_focus_report_headers_are_mapped(tmp_path):
    header = ["BilledCost", "BillingCurrency", "ChargeCategory", "ChargeClass", "ChargeDescription",
              "ChargePeriodStart", "ChargePeriodEnd", "ListCost", "ListUnitPrice", "ContractedUnitPrice",
              "PricingQuantity", "PricingUnit", "Region", "ResourceId", "ServiceName", "SkuId", "SubAccountId",
              "SubAccountName", "Tags", "oci_CompartmentId", "oci_CompartmentName", "oci_ReferenceNumber"]
    rows = [["0.5", "USD", "Usage", "", "Block Volume", "2024-06-01T00:00Z", "2024-06-01T01:00Z", "0.6", "0.06",
             "0.05", "10", "GB Months", "eu-frankfurt-1", "ocid1.volume.x", "BLOCK_STORAGE", "B91961", TENANCY,
             "acme", '{"Ops.Env": "prod"}', "ocid1.compartment.oc1..c2", "ops", "r1"]]
    day = tmp_path / "FOCUS Reports" / "2024" / "06" / "01"
    day.mkdir(parents=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    (day / "0001.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    old = tmp_path / "FOCUS Reports" / "2024" / "01" / "01"  # outside the run: not even opened
    old.mkdir(parents=True)
    (old / "broken.csv.gz").write_bytes(b"not gzip")
    raw, _, _ = run_extract({"source": f"file://{tmp_path}"}, dt.date(2024, 6, 1), dt.date(2024, 6, 1))
    r = raw.to_pylist()[0]
    assert (r["report_type"], r["my_cost"], r["list_cost"], r["pricing_unit"]) == ("focus", Decimal("0.5"),
                                                                                Decimal("0.6"), "GB-Months")
    assert (r["tenant_name"], r["compartment_name"], r["region"], r["service"]) == ("acme", "ops", "eu-frankfurt-1",
                                                                                 "BLOCK_STORAGE")
    assert json.loads(r["tags"]) == {"ops.env": "prod"} and r["is_correction"] is False


# --------------------------------------------------------------------------------------------------
# Extractor: Object Storage through the oci SDK against the loopback stub
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture()
def object_storage(api_key, monkeypatch):
    pytest.importorskip("oci")
    from stubs.oci_object_storage import OciObjectStorageStub

    monkeypatch.setattr(oci_job, "LIST_PAGE", 2)  # page through ListObjects with nextStartWith
    with OciObjectStorageStub(tenancy=TENANCY) as stub:
        stub.create_bucket("bling", TENANCY)
        cred = {"tenancy_ocid": TENANCY, "user_ocid": "ocid1.user.oc1..reader",
                "fingerprint": ":".join(["a1"] * 16), "private_key": api_key, "region": "us-sanjose-1",
                "endpoint": stub.base_url}
        yield stub, cred


def at(day: dt.date, hour: int = 6) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def test_object_storage_pages_and_picks_objects_by_time(object_storage):
    stub, cred = object_storage
    header, rows = sample_rows()
    half = len(rows) // 2
    # the sample split over two report objects delivered on 2023-11-13/14, plus objects that cannot hold
    # usage of the run (created long before / after it) and must not be downloaded
    stub.put("bling", TENANCY, "reports/cost-csv/0000000030000268-00001.csv.gz", b"old and broken",
             time_created=at(dt.date(2023, 10, 1)))
    stub.put("bling", TENANCY, "reports/cost-csv/0000000030000269-00001.csv.gz", to_csv_gz(header, rows[:half]),
             time_created=at(dt.date(2023, 11, 13), 18))
    stub.put("bling", TENANCY, "reports/cost-csv/0000000030000269-00002.csv.gz", to_csv_gz(header, rows[half:]),
             time_created=at(dt.date(2023, 11, 14), 0))
    stub.put("bling", TENANCY, "reports/cost-csv/0000000030000270-00001.csv.gz", b"too late, broken",
             time_created=at(dt.date(2024, 2, 1)))
    stub.put("bling", TENANCY, "FOCUS Reports/2023/11/13/focus.csv.gz", b"other report kind")
    raw, totals, _ = run_extract(cred, *DAY)
    assert raw.num_rows == 506
    assert dsum(totals, "source_cost") == dsum(raw, "my_cost") == SAMPLE_TOTAL_9DP
    assert set(raw.column("source_file").to_pylist()) == {
        f"oci://{TENANCY}@bling/reports/cost-csv/0000000030000269-0000{i}.csv.gz" for i in (1, 2)}
    lists = [r for r in stub.requests if r["path"].endswith("/o")]
    gets = [r for r in stub.requests if "/o/" in r["path"]]
    assert len(lists) == 2  # 4 objects, 2 per page
    assert lists[0]["params"]["prefix"] == ["reports/cost-csv/"] and "start" not in lists[0]["params"]
    assert lists[1]["params"]["start"] == ["reports/cost-csv/0000000030000269-00002.csv.gz"]
    assert len(gets) == 2 and all(r["status"] == 200 for r in stub.requests)


def test_object_storage_truncated_object_fails_naming_it(object_storage):
    stub, cred = object_storage
    header, rows = sample_rows()
    data = to_csv_gz(header, rows)
    name = "reports/cost-csv/0000000030000269-00001.csv.gz"
    stub.put("bling", TENANCY, name, data[:-40], time_created=at(dt.date(2023, 11, 14)))
    with pytest.raises(ExtractError) as e:
        run_extract(cred, *DAY)
    assert name in str(e.value) and "truncated" in str(e.value)


def test_object_storage_refusals_are_credential_errors(object_storage):
    stub, cred = object_storage
    with pytest.raises(CredentialError) as e:  # wrong tenancy: the stub's 401, like a foreign key
        run_extract({**cred, "tenancy_ocid": "ocid1.tenancy.oc1..other"}, *DAY)
    assert "endorse" in str(e.value)
    with pytest.raises(CredentialError) as e:
        run_extract({k: v for k, v in cred.items() if k != "fingerprint"}, *DAY)
    assert "fingerprint" in str(e.value)
    with pytest.raises(CredentialError):
        run_extract({**cred, "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}, *DAY)
    assert all("Authorization" not in json.dumps(r) for r in stub.requests)  # (log holds no secrets)


def test_stub_requires_a_signature():
    import urllib.error
    import urllib.request

    from stubs.oci_object_storage import OciObjectStorageStub

    with OciObjectStorageStub() as stub:
        stub.create_bucket("bling", TENANCY)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{stub.base_url}/n/bling/b/{TENANCY}/o", timeout=5)
        assert e.value.code == 401 and json.loads(e.value.read())["code"] == "NotAuthenticated"


# --------------------------------------------------------------------------------------------------
# Procedure
# --------------------------------------------------------------------------------------------------
land_and_convert, focus_by_period, source_by_period = bound(PIPELINE, CRED)


def test_sample_to_focus_reconciles_and_passes_gate(rt, acme):
    wh = rt.warehouse
    service_map.sync(wh)
    counts = land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *NOV)
    assert counts == {"oci_billing_raw": 506, "cloud_source_totals": 1}
    per, src = focus_by_period(wh), source_by_period(wh)
    n, billed, effective = per[dt.date(2023, 11, 1)]
    assert n == 506 and src[dt.date(2023, 11, 1)][0] == 506
    assert billed == effective == src[dt.date(2023, 11, 1)][1] == SAMPLE_TOTAL_9DP
    assert round(billed, 2) == round(SAMPLE_TOTAL, 2)
    rows = wh.query("SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})
    providers = {(r["ServiceProviderName"], r["HostProviderName"], r["InvoiceIssuerName"], r["ProviderName"],
                  r["PublisherName"]) for r in rows}
    assert providers == {("Oracle",) * 5}
    assert {r["ChargeCategory"] for r in rows} == {"Usage"} and {r["ChargeClass"] for r in rows} == {None}
    assert {r["x_cost_source"] for r in rows} == {"cloud"}
    svc = {r["ServiceName"]: (r["ServiceCategory"], r["ServiceSubcategory"]) for r in rows}
    assert svc["COMPUTE"] == ("Compute", "Virtual Machines")
    assert svc["OBJECTSTORE"] == ("Storage", "Object Storage")
    assert svc["TELEMETRY"] == ("Management and Governance", "Observability")
    db = next(r for r in rows if r["ServiceName"] == "DATABASE" and r["AvailabilityZone"] == "sj-1")
    assert (db["SubAccountId"], db["SubAccountType"], db["RegionId"], db["BillingAccountId"]) == (
        TENANCY, "Compartment", "us-sanjose-1", TENANCY)
    assert db["ListUnitPrice"] is None and db["ListCost"] == db["BilledCost"]
    assert db["ChargePeriodStart"].hour + 1 == db["ChargePeriodEnd"].hour
    tagged = next(r for r in rows if r["Tags"])
    tags = json.loads(tagged["Tags"])
    assert tags and all(k == k.lower() for k in tags)
    kit.assert_gate_passes_and_rerun_changes_nothing(
        wh, PIPELINE, lambda: land_and_convert(wh, {"source": f"file://{FIXTURES}"}, *NOV, run_id="run_b"))


def test_corrections_credits_and_odd_units(rt, acme, tmp_path):
    wh = rt.warehouse
    service_map.sync(wh)
    header = sample_rows()[0] + ["tags/Team.Name"]
    (tmp_path / "0000000040000001-00001.csv.gz").write_bytes(to_csv_gz(header, extra_rows(header)))
    land_and_convert(wh, {"source": f"file://{tmp_path}"}, dt.date(2024, 3, 1), dt.date(2024, 3, 2))
    rows = {r["ChargeDescription"]: r for r in wh.query(
        "SELECT * FROM `acme_prod.cost_data_standard_1_3` WHERE x_pipeline_id = @p", {"p": PIPELINE})}
    assert len(rows) == 4
    assert sum(r["BilledCost"] for r in rows.values()) == EXTRA_TOTAL_MAR_1_2
    assert source_by_period(wh)[dt.date(2024, 3, 1)] == (4, EXTRA_TOTAL_MAR_1_2)
    usage, corr = rows["COMPUTE ref00001"], rows["COMPUTE ref00002"]
    assert (usage["PricingUnit"], usage["PricingQuantity"], usage["ContractedUnitPrice"]) == (
        "OCPU-Hours", Decimal(2), Decimal("0.025"))
    assert usage["ContractedCost"] == Decimal("0.05") and json.loads(usage["Tags"]) == {"team.name": "Core"}
    assert (corr["ChargeCategory"], corr["ChargeClass"], corr["BilledCost"]) == ("Usage", "Correction", Decimal("-0.05"))
    credit = rows["COMPUTE ref00003"]
    assert (credit["ChargeCategory"], credit["PricingQuantity"], credit["PricingUnit"]) == ("Credit", None, None)
    assert credit["EffectiveCost"] == credit["ContractedCost"] == credit["BilledCost"] == Decimal("-1.25")
    assert credit["ResourceId"] is None and credit["ResourceName"] is None
    odd = rows["SOME_NEW_SERVICE ref00004"]
    assert (odd["PricingUnit"], odd["ServiceCategory"], odd["ServiceSubcategory"]) == ("Units", "Other", "Other (Other)")
    report = focus.check(wh, "acme_prod", "x_pipeline_id = @p", {"p": PIPELINE})
    assert report.ok, report.summary()


def test_service_map_has_oci():
    rows = [r for r in service_map.load() if r["provider"] == "oci"]
    assert len(rows) > 50 and {"compute", "objectstore", "telemetry", "mysql"} <= {r["service_key"] for r in rows}
