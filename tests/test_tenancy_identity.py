"""Multi tenancy, extractor side: a tenant's source is read only with the tenant's own identity, and every SDK
request goes to a public host, checked when the connection is made (jobs/identity.py).

DNS is `shared.tenancy._resolve`, replaced by FakeDNS; requests that would leave the machine are refused
before they are sent, so no test needs the network. Where a test shows that a request did not happen, a
single-tenancy control shows first that the same setup does make it there.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs import identity
from jobs.base import CredentialError, ExtractContext, ExtractError
from jobs.cloud import aws, gcp
from jobs.cloud import azure as azure_job
from jobs.cloud import oci as oci_job
from jobs.genai import azure_openai, bedrock
from jobs.runner import readable
from shared import tenancy

PLATFORM_PROJECT = "cloudact-platform"
PUBLIC = "93.184.215.14"
DAY = dt.date(2024, 3, 1)
ROLE = "arn:aws:iam::210987654321:role/cloudact-cur-reader"
PLATFORM_KEY = "AKIAPLATFORMMARKER01"


def ctx_for(credential: dict, pipeline: str = "cloud/test") -> ExtractContext:
    return ExtractContext("acme", pipeline, "cred_1", "run_1", DAY, DAY, credential)


def gcp_run(credential: dict) -> None:
    """The GCP extractor's output read to the end, as the runner does (the query starts on the first read)."""
    for rows in gcp.extract(ctx_for(credential)).values():
        list(rows)


class FakeDNS:
    """Answers for host names (a name and its sub-domains); anything else does not resolve."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: list[str] = []

    def set(self, name: str, *addresses: str) -> None:
        self.answers[name] = list(addresses)

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        for name, addresses in self.answers.items():
            if host == name or host.endswith("." + name):
                return addresses
        raise OSError(f"{host}: no such host")


@pytest.fixture()
def dns(monkeypatch):
    fake = FakeDNS()
    monkeypatch.setattr(tenancy, "_resolve", fake)
    return fake


@pytest.fixture()
def multi(monkeypatch, tmp_path):
    """CLOUDACT_TENANCY=multi with a platform project, and no AWS/GCP setting of this machine in the way."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_") or name in ("BIGQUERY_EMULATOR_HOST", "CLOUDACT_SOURCE_READER_SA",
                                               "GOOGLE_APPLICATION_CREDENTIALS"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("CLOUDACT_TENANCY", "multi")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PLATFORM_PROJECT)
    return monkeypatch


class Recorder:
    """A loopback HTTP server that records each request's method, path and Authorization and answers 403."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "authorization": self.headers.get("Authorization", "")})
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture()
def recorder():
    r = Recorder()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


# --------------------------------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------------------------------
def _aws_extract(job, credential):
    if job is bedrock:
        return bedrock.extract(ctx_for(credential, "genai/payg/bedrock"), today=DAY)
    return aws.extract(ctx_for(credential, "cloud/aws/cost/billing"))


@pytest.mark.parametrize("job,credential", [(aws, {"bucket": "cur", "prefix": "p", "region": "us-east-1"}),
                                            (bedrock, {"region": "us-east-1"})], ids=["s3", "bedrock"])
def test_aws_without_keys_or_role_never_uses_the_default_chain(multi, recorder, job, credential):
    # The platform's own identity and endpoint, as the default chain would find them.
    multi.setenv("AWS_ACCESS_KEY_ID", PLATFORM_KEY)
    multi.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
    multi.setenv("AWS_ENDPOINT_URL", recorder.url)
    multi.setenv("CLOUDACT_TENANCY", "single")  # control: single tenancy signs with the platform's key
    with pytest.raises(CredentialError):
        _aws_extract(job, credential)
    assert recorder.requests and all(f"Credential={PLATFORM_KEY}/" in r["authorization"] for r in recorder.requests)

    recorder.requests.clear()
    multi.setenv("CLOUDACT_TENANCY", "multi")
    with pytest.raises(CredentialError, match="own identity") as err:
        _aws_extract(job, credential)
    assert "role_arn" in str(err.value) and "aws_access_key_id" in str(err.value)
    assert recorder.requests == []


def test_a_tenants_aws_session_ignores_the_platforms_aws_config(multi, recorder, dns, tmp_path):
    """Keys given: the client is the tenant's alone, aimed at AWS's own endpoint, whatever the platform's
    environment and ~/.aws config say (here: both send every AWS call to the recorder)."""
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nendpoint_url = {recorder.url}\n")
    multi.setenv("AWS_CONFIG_FILE", str(config))
    multi.setenv("AWS_ENDPOINT_URL", recorder.url)
    credential = {"bucket": "cur", "prefix": "p", "region": "us-east-1",
                  "aws_access_key_id": "AKIATENANT0000000001", "aws_secret_access_key": "tenant-secret"}
    # nothing resolves, so the connection check stops the request at the host it was aimed at
    with pytest.raises(tenancy.TrustViolation, match=r"amazonaws\.com does not resolve"):
        _aws_extract(aws, credential)
    assert recorder.requests == []
    assert all(host.endswith("amazonaws.com") for host in dns.asked)


@pytest.fixture()
def moto_sts(multi):
    """moto on loopback as the STS endpoint the operator configures for the platform's own identity."""
    pytest.importorskip("moto.server")
    from moto.sts.models import sts_backends

    from stubs.moto_loopback import moto_endpoint

    with moto_endpoint() as endpoint:
        multi.setenv("AWS_ENDPOINT_URL_STS", endpoint)
        multi.setenv("AWS_ACCESS_KEY_ID", PLATFORM_KEY)
        multi.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
        roles = sts_backends["210987654321"]["aws"].assumed_roles
        yield lambda: [(r.role_arn, r.external_id) for r in roles]


def test_a_role_is_assumed_with_the_external_id_at_awss_sts_never_the_tenants_endpoint(moto_sts, dns):
    dns.set("s3.tenant.example", PUBLIC)
    credential = {"bucket": "cur", "prefix": "p", "region": "us-east-1", "role_arn": ROLE,
                  "external_id": "cloudact-acme-7f3a", "endpoint_url": "https://s3.tenant.example"}
    tenancy.check_endpoint(credential["endpoint_url"], "endpoint_url")  # as when the credential was added
    source = aws.S3Source(credential)
    assert moto_sts() == [(ROLE, "cloudact-acme-7f3a")]
    assert "s3.tenant.example" in dns.asked  # checked again when the client was made
    # between add and run the tenant's DNS turns to loopback: the request is refused, not sent
    dns.set("s3.tenant.example", "127.0.0.1")
    with pytest.raises(tenancy.TrustViolation, match="non-public address") as err:
        source.files(ctx_for(credential))
    assert readable(err.value) == str(err.value)  # the run ends failed with this message


@pytest.mark.parametrize("job", [aws, bedrock], ids=["s3", "bedrock"])
def test_a_role_without_the_external_id_is_refused(moto_sts, job):
    credential = {"bucket": "cur", "region": "us-east-1", "role_arn": ROLE}
    with pytest.raises(CredentialError, match="ExternalId"):
        _aws_extract(job, credential)
    assert moto_sts() == []


def test_keys_with_half_a_pair_are_refused(multi):
    with pytest.raises(CredentialError, match="together"):
        _aws_extract(aws, {"bucket": "cur", "region": "us-east-1", "aws_access_key_id": "AKIATENANT0000000001",
                           "role_arn": ROLE, "external_id": "x"})


@pytest.mark.parametrize("job", [aws, bedrock], ids=["s3", "bedrock"])
def test_a_tenant_endpoint_turning_private_after_add_is_refused_at_connection(multi, dns, job):
    credential = {"bucket": "cur", "prefix": "p", "region": "us-east-1", "endpoint_url": "https://aws.tenant.example",
                  "aws_access_key_id": "AKIATENANT0000000001", "aws_secret_access_key": "tenant-secret"}
    dns.set("aws.tenant.example", PUBLIC)
    tenancy.check_endpoint(credential["endpoint_url"], "endpoint_url")  # accepted when added
    session = identity.aws_session(credential, "us-east-1", "test")
    client = session.client("s3" if job is aws else "cloudwatch", endpoint_url=credential["endpoint_url"])
    dns.set("aws.tenant.example", "169.254.169.254")
    with pytest.raises(tenancy.TrustViolation, match="169.254.169.254"):
        client.list_objects_v2(Bucket="cur") if job is aws else client.list_metrics(Namespace="AWS/Bedrock")
    # and through the extractor, where the endpoint is already private when the run starts
    with pytest.raises(tenancy.TrustViolation, match="non-public"):
        _aws_extract(job, credential)


# --------------------------------------------------------------------------------------------------
# Azure
# --------------------------------------------------------------------------------------------------
class _NoDefault:
    def __init__(self, *args, **kwargs):
        raise AssertionError("DefaultAzureCredential was constructed")


def test_azure_without_a_secret_or_certificate_refuses_and_never_builds_the_default(multi, dns):
    import azure.identity

    multi.setattr(azure.identity, "DefaultAzureCredential", _NoDefault)
    dns.set("core.windows.net", PUBLIC)
    credential = {"account_url": "https://acct.blob.core.windows.net", "container": "exports", "prefix": "p"}
    multi.setenv("CLOUDACT_TENANCY", "single")  # control: single tenancy takes the operator's identity
    with pytest.raises(AssertionError, match="DefaultAzureCredential"):
        azure_job.extract(ctx_for(credential))
    multi.setenv("CLOUDACT_TENANCY", "multi")
    with pytest.raises(CredentialError, match="own identity") as err:
        azure_job.extract(ctx_for(credential))
    assert "client_certificate" in str(err.value)


@pytest.fixture(scope="module")
def certificate_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudact-reader")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)).decode()


TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_azure_client_certificate_is_the_identity(multi, certificate_pem):
    from azure.identity import CertificateCredential

    credential = {"tenant_id": TENANT_ID, "client_id": "11111111-2222-3333-4444-555555555555",
                  "client_certificate": certificate_pem}
    assert isinstance(azure_job._token_credential(credential), CertificateCredential)
    with pytest.raises(CredentialError, match="client_certificate"):
        azure_job._token_credential({**credential, "client_certificate": "-----BEGIN CERTIFICATE-----\nnope\n"})
    with pytest.raises(CredentialError, match="tenant_id"):
        azure_job._token_credential({"client_id": "c", "client_certificate": certificate_pem})
    # Azure OpenAI mints its management token from the same certificate
    minted = []
    ctx = ctx_for({**credential, "resource_ids": []}, "genai/payg/azure_openai")
    azure_openai.azure_client(ctx, sleep=lambda s: None, max_attempts=1,
                              token_minter=lambda c: minted.append(c) or "token-from-cert")
    assert minted and minted[0]["client_certificate"] == certificate_pem


ACCOUNT_KEY = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3RrZXk="


@pytest.mark.parametrize("credential", [
    {"account_url": "https://acct.blob.core.windows.net", "account_key": ACCOUNT_KEY},
    {"connection_string": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + ACCOUNT_KEY
                          + ";BlobEndpoint=https://exports.tenant.example/acct"},
], ids=["account_url", "connection_string"])
def test_azure_endpoint_turning_private_after_add_is_refused_at_connection(multi, dns, credential):
    dns.set("core.windows.net", PUBLIC)
    dns.set("tenant.example", PUBLIC)
    source = azure_job.BlobSource({**credential, "container": "exports", "prefix": "p"})
    dns.set("core.windows.net", "10.0.0.7")
    dns.set("tenant.example", "10.0.0.7")
    with pytest.raises(tenancy.TrustViolation, match="10.0.0.7"):
        source.files(ctx_for(credential))


def test_azure_loopback_connection_string_is_refused_in_multi(multi, dns):
    local = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + ACCOUNT_KEY
             + ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    with pytest.raises(tenancy.TrustViolation, match="BlobEndpoint must use https"):
        azure_job.BlobSource({"connection_string": local, "container": "exports"})


# --------------------------------------------------------------------------------------------------
# GCP
# --------------------------------------------------------------------------------------------------
def _no_adc(*args, **kwargs):
    raise AssertionError("application-default credentials were asked for")


@pytest.fixture()
def adc(multi):
    """google.auth.default, recording each call and then failing it."""
    import google.auth

    asked = []

    def default(*args, **kwargs):
        asked.append(kwargs.get("scopes"))
        _no_adc()

    multi.setattr(google.auth, "default", default)
    return asked


BQ_SOURCE = {"project": "acme-billing", "dataset": "billing_export", "table": "gcp_billing_export_v1_01A2B3"}


def test_gcp_without_an_identity_refuses_and_never_asks_for_adc(multi, adc):
    multi.setenv("CLOUDACT_TENANCY", "single")  # control: single tenancy asks for the operator's identity
    with pytest.raises(ExtractError):
        gcp_run(BQ_SOURCE)
    assert adc
    adc.clear()
    multi.setenv("CLOUDACT_TENANCY", "multi")
    with pytest.raises(CredentialError, match="own identity") as err:
        gcp_run(BQ_SOURCE)
    assert "impersonate_service_account" in str(err.value)
    assert adc == []


@pytest.fixture(scope="module")
def service_account_key() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "acme-billing", "private_key_id": "k1", "private_key": pem,
            "client_email": "billing-reader@acme-billing.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}


def test_gcp_key_or_token_is_the_bigquery_clients_identity(multi, service_account_key):
    import google.auth

    multi.setattr(google.auth, "default", _no_adc)
    client = gcp.bigquery_client({**BQ_SOURCE, "service_account_json": json.dumps(service_account_key)}, "acme")
    assert client._credentials.service_account_email == service_account_key["client_email"]
    assert client.project == "acme-billing"
    client = gcp.bigquery_client({**BQ_SOURCE, "access_token": "ya29.tenant"}, "acme")
    assert client._credentials.token == "ya29.tenant"


class FakeIam:
    """google-auth's transport callable, answering IAM generateAccessToken with a token per service account."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, url, method="GET", body=None, headers=None, **kwargs):
        from types import SimpleNamespace

        principal = url.split("/serviceAccounts/", 1)[1].split(":", 1)[0]
        self.calls.append((principal, (headers or {}).get("authorization") or (headers or {}).get("Authorization")))
        data = json.dumps({"accessToken": f"token-of-{principal}", "expireTime": "2099-01-01T00:00:00Z"})
        return SimpleNamespace(status=200, headers={}, data=data.encode())


def test_gcp_impersonation_goes_through_the_orgs_source_reader(multi):
    import google.auth
    from google.oauth2.credentials import Credentials

    multi.setattr(google.auth, "default", lambda scopes=None, **kw: (Credentials(token="platform-token"), "p"))
    multi.setenv("CLOUDACT_SOURCE_READER_SA", "cloudact-src-{org}@cloudact-platform.iam.gserviceaccount.com")
    tenant_sa = "billing-reader@acme-billing.iam.gserviceaccount.com"
    creds = identity.gcp_credentials({"impersonate_service_account": tenant_sa}, [identity.CLOUD_PLATFORM], "acme")
    iam = FakeIam()
    creds.refresh(iam)
    reader = "cloudact-src-acme@cloudact-platform.iam.gserviceaccount.com"
    assert iam.calls == [(reader, "Bearer platform-token"), (tenant_sa, f"Bearer token-of-{reader}")]
    assert creds.token == f"token-of-{tenant_sa}"


def test_gcp_impersonation_refusals(multi):
    import google.auth

    multi.setattr(google.auth, "default", _no_adc)
    tenant = {"impersonate_service_account": "billing-reader@acme-billing.iam.gserviceaccount.com"}
    with pytest.raises(CredentialError, match="CLOUDACT_SOURCE_READER_SA"):
        identity.gcp_credentials(tenant, [identity.CLOUD_PLATFORM], "acme")
    multi.setenv("CLOUDACT_SOURCE_READER_SA", "cloudact-src-{org}@cloudact-platform.iam.gserviceaccount.com")
    platform_sa = {"impersonate_service_account": f"cloudact-jobs@{PLATFORM_PROJECT}.iam.gserviceaccount.com"}
    with pytest.raises(tenancy.TrustViolation, match="platform's own project"):
        identity.gcp_credentials(platform_sa, [identity.CLOUD_PLATFORM], "acme")
    with pytest.raises(CredentialError, match="service account e-mail"):
        identity.gcp_credentials({"impersonate_service_account": "someone@example.com"}, [], "acme")


@pytest.mark.parametrize("change,rule", [
    ({"project": PLATFORM_PROJECT, "dataset": "beta_prod", "table": "cost_data_standard_1_3"}, "belongs to the platform"),
    ({"project": PLATFORM_PROJECT, "dataset": "organizations", "table": "org_profiles"}, "belongs to the platform"),
    ({"project": PLATFORM_PROJECT, "dataset": "Beta_PROD"}, "belongs to the platform"),
    ({"job_project": PLATFORM_PROJECT}, "job_project"),
    ({"project": "123456789012"}, "not its number"),
], ids=["org-dataset", "meta-dataset", "case", "job-project", "project-number"])
def test_bigquery_sources_of_the_platform_are_refused(multi, change, rule):
    seen = []
    multi.setattr(gcp, "bigquery_client", lambda cred, org: seen.append(cred))
    credential = {**BQ_SOURCE, "access_token": "ya29.tenant"}
    with pytest.raises(tenancy.TrustViolation, match=rule) as err:
        gcp_run({**credential, **change})
    assert seen == [] and readable(err.value) == str(err.value)


def test_bigquery_source_rules_leave_a_tenants_own_table_alone(multi):
    asked = []
    multi.setattr(gcp, "bigquery_client", lambda cred, org: asked.append(cred["dataset"]))
    # a platform-like dataset name in the tenant's own project is the tenant's
    for dataset in ("billing_export", "finance_prod"):
        with pytest.raises(ExtractError):  # the stand-in client is no client: reaching it is the point
            gcp_run({**BQ_SOURCE, "dataset": dataset, "access_token": "ya29.tenant"})
    assert asked == ["billing_export", "finance_prod"]


@pytest.mark.parametrize("tenancy_mode", ["single", "multi"])
@pytest.mark.parametrize("field,value", [("table", "t` UNION ALL SELECT * FROM `cloudact-platform.beta_prod.x"),
                                         ("dataset", "billing.export"), ("project", "p`x")])
def test_bigquery_names_cannot_leave_the_quoted_reference(multi, tenancy_mode, field, value):
    multi.setenv("CLOUDACT_TENANCY", tenancy_mode)
    multi.setattr(gcp, "bigquery_client", _no_adc)
    with pytest.raises(CredentialError, match=f"not a BigQuery {field}"):
        gcp_run({**BQ_SOURCE, field: value, "access_token": "ya29.tenant"})


# --------------------------------------------------------------------------------------------------
# OCI
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oci_credential() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"tenancy_ocid": "ocid1.tenancy.oc1..acme", "user_ocid": "ocid1.user.oc1..reader",
            "fingerprint": ":".join(["a1"] * 16), "private_key": pem, "region": "us-sanjose-1"}


def test_oci_endpoint_turning_private_after_add_is_refused_at_connection(multi, dns, oci_credential):
    pytest.importorskip("oci")
    credential = {**oci_credential, "endpoint": "https://objectstorage.tenant.example"}
    dns.set("objectstorage.tenant.example", PUBLIC)
    source = oci_job.ObjectStorageSource(credential)
    dns.set("objectstorage.tenant.example", "127.0.0.1")
    with pytest.raises(tenancy.TrustViolation, match="127.0.0.1"):
        source.files(ctx_for(credential))
    with pytest.raises(tenancy.TrustViolation, match="https"):
        oci_job.ObjectStorageSource({**oci_credential, "endpoint": "http://objectstorage.tenant.example"})


def test_a_redirect_to_the_metadata_address_is_refused_at_the_hop(multi, monkeypatch):
    """The requests guard (OCI's SDK) checks every hop: the loopback stub stands in for a public host whose
    answer redirects to the cloud metadata address."""
    import requests

    from stubs.oci_object_storage import OciObjectStorageStub

    real = tenancy.is_public
    monkeypatch.setattr(tenancy, "is_public", lambda address: address == "127.0.0.1" or real(address))
    with OciObjectStorageStub() as stub:
        stub.enqueue(302, None, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        session = requests.Session()
        identity.guard_requests_session(session)
        with pytest.raises(tenancy.TrustViolation, match="169.254.169.254"):
            session.get(f"{stub.base_url}/n/bling/b/x/o")
        assert len(stub.requests) == 1  # the first hop was served; the redirect was never followed
