"""Rotating, disabling and re-adding credentials around runs never changes what the org's FOCUS table counts."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from shared import runs
from shared.api import ApiError, request_run
from shared.config import ROOT
from shared.secrets import CredentialConflict, CredentialStore

SAMPLE = ROOT / "data" / "samples" / "oci" / "reports_cost-csv_0000000030000269.csv"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaadsyhydp66mjpsohqocfcgzaabtrit47ex2igzu2j6lhuadrrglca"
PIPE = "cloud/oci/cost/billing"
WINDOW = {"start_date": "2023-11-13", "end_date": "2023-11-13"}


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture()
def bucket():
    pytest.importorskip("oci")
    from stubs.oci_object_storage import OciObjectStorageStub

    with OciObjectStorageStub(tenancy=TENANCY) as stub:
        stub.create_bucket("bling", TENANCY)
        stub.put("bling", TENANCY, "reports/cost-csv/0000000030000269-00001.csv.gz", gzip.compress(SAMPLE.read_bytes()),
                 time_created=dt.datetime(2023, 11, 13, 18, tzinfo=dt.UTC))
        yield stub


def source_total() -> Decimal:
    """The report's own total, read here with the csv module: each cost as NUMERIC (9 decimals, half even)."""
    with io.open(SAMPLE, newline="") as fh:
        return sum(Decimal(r["cost/myCost"]).quantize(Decimal("1e-9"), ROUND_HALF_EVEN) for r in csv.DictReader(fh))


def focus(rt) -> tuple[int, Decimal]:
    row = rt.warehouse.query("SELECT COUNT(*) AS n, SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`")[0]
    return row["n"], row["s"]


def run(rt, **body) -> dict:
    queued = request_run(rt, "acme", PIPE, {**WINDOW, **body}, trigger="test")
    rt.bus.drain()
    return runs.get_run(rt.warehouse, "acme", queued["run_id"])


def test_rotate_disable_and_re_add_keep_the_focus_total_equal_to_the_source(rt, acme, bucket):
    store = CredentialStore(rt.warehouse, rt.settings)
    key_doc = {"tenancy_ocid": TENANCY, "user_ocid": "ocid1.user.oc1..reader", "region": "us-sanjose-1",
               "endpoint": bucket.base_url}
    first_fp, second_fp = ":".join(["a1"] * 16), ":".join(["b2"] * 16)
    cid = store.add("acme", "oci", {**key_doc, "fingerprint": first_fp, "private_key": _pem()})
    expected = source_total()
    done = run(rt)
    assert done["status"] == "succeeded", done
    rows, total = focus(rt)
    assert total == expected and rows > 0

    # the user deletes the old API key at OCI and rotates: same credential id, same slice, same total
    bucket.revoke(first_fp)
    assert run(rt)["status"] == "failed"
    assert focus(rt) == (rows, expected)
    store.rotate("acme", cid, {"fingerprint": second_fp, "private_key": _pem()})
    done = run(rt)
    assert done["status"] == "succeeded" and done["credential_id"] == cid, done
    assert focus(rt) == (rows, expected)

    # adding a second credential for the same tenancy (what rotating by re-adding used to do) is refused
    with pytest.raises(CredentialConflict, match=cid):
        store.add("acme", "oci", {**key_doc, "fingerprint": second_fp, "private_key": _pem()})
    assert focus(rt) == (rows, expected)

    # disabled: no new runs, its data stays, and re-adding the source is still refused
    store.disable("acme", cid)
    with pytest.raises(ApiError) as refused:
        run(rt)
    assert refused.value.status == 422
    with pytest.raises(CredentialConflict, match="disabled"):
        store.add("acme", "oci", {**key_doc, "fingerprint": second_fp, "private_key": _pem()})
    assert focus(rt) == (rows, expected)

    # rotating it back in runs again, over the same slice
    store.rotate("acme", cid, {"private_key": _pem()})
    assert run(rt)["status"] == "succeeded"
    assert focus(rt) == (rows, expected)
    assert {r["credential_id"] for r in rt.warehouse.query(
        "SELECT DISTINCT x_credential_id AS credential_id FROM `acme_prod.cost_data_standard_1_3`")} == {cid}


def test_the_same_folder_named_two_ways_is_one_source(rt, acme, tmp_path):
    store = CredentialStore(rt.warehouse, rt.settings)
    (tmp_path / "cur").mkdir()
    first = store.add("acme", "aws", {"source": (tmp_path / "cur").as_uri()})
    with pytest.raises(CredentialConflict, match=first):
        store.add("acme", "aws", {"source": f"file://{tmp_path}/cur/../cur/"})
    # another org may read its own copy of the same kind of source
    from shared.tenants import create_org

    create_org(rt.warehouse, "beta")
    assert store.add("beta", "aws", {"source": (tmp_path / "cur").as_uri()})


def test_rotate_cannot_switch_the_source(rt, acme, tmp_path):
    from shared.secrets import CredentialInvalid

    store = CredentialStore(rt.warehouse, rt.settings)
    cid = store.add("acme", "aws", {"bucket": "cur-a", "prefix": "cur/", "region": "us-east-1"})
    with pytest.raises(CredentialInvalid, match="source"):
        store.rotate("acme", cid, {"bucket": "cur-b"})
    store.rotate("acme", cid, {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "new-secret"})
    assert store.load("acme", "aws", cid)["aws_secret_access_key"] == "new-secret"


def test_rotation_on_gcp_stores_a_new_secret_version_and_disables_the_old(rt, acme, monkeypatch):
    import dataclasses

    from shared import secret_manager

    class FakeSecretManager:
        """The three Secret Manager calls the store makes, kept in memory."""

        def __init__(self):
            self.versions: dict[str, str] = {}
            self.disabled: set[str] = set()

        def create_secret(self, request):
            pass

        def add_secret_version(self, request):
            name = f"{request['parent']}/versions/{len(self.versions) + 1}"
            self.versions[name] = request["payload"]["data"].decode()
            return type("Version", (), {"name": name})()

        def access_secret_version(self, request):
            assert request["name"] not in self.disabled, "a disabled version was read"
            payload = type("Payload", (), {"data": self.versions[request["name"]].encode()})()
            return type("Response", (), {"payload": payload})()

        def disable_secret_version(self, request):
            self.disabled.add(request["name"])

    fake = FakeSecretManager()
    monkeypatch.setattr(secret_manager, "_client", lambda: fake)
    store = CredentialStore(rt.warehouse, dataclasses.replace(rt.settings, backend="gcp", project="platform"))
    cid = store.add("acme", "openai", {"admin_key": "sk-admin-one"})
    (first,) = fake.versions
    store.rotate("acme", cid, {"admin_key": "sk-admin-two"})
    assert fake.disabled == {first}
    assert store.load("acme", "openai", cid)["admin_key"] == "sk-admin-two"
    assert not any("sk-admin" in str(v) for v in rt.warehouse.query("SELECT * FROM `organizations.org_credentials`")[0].values())
