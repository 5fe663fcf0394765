"""The tenant trust boundary (multi tenancy): what a hostile tenant's credential is refused, at add time over
the HTTP API and the CLI, and at connection time; and that single tenancy keeps the operator's freedoms."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.auth import create_key
from shared.tenants import create_org

PUBLIC_IP = "93.184.216.34"  # a globally routable address; never connected to (DNS answers are stubbed)
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture()
def dns(monkeypatch):
    """Stand-in DNS: names in the dict resolve to the address given (changeable mid-test); others as usual.
    Patched at the socket level, so any client, guarded or not, sees the same answers."""
    table: dict[str, str] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host in table:
            return REAL_GETADDRINFO(table[host], port, *args, **kwargs)
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    root = tmp_path / "sources"
    for org in ("acme", "beta"):
        (root / org / "exports").mkdir(parents=True)
    monkeypatch.setenv("CLOUDACT_TENANCY", "multi")
    monkeypatch.setenv("CLOUDACT_SOURCE_ROOT", str(root))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "cloudact-platform")
    return root


@pytest.fixture()
def tenants(roots, rt, acme):
    from cli.server import app

    create_org(rt.warehouse, "beta")
    return app().test_client(), {"acme": create_key(rt.warehouse, "acme"), "beta": create_key(rt.warehouse, "beta")}


def stored(rt) -> int:
    return rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.org_credentials`")[0]["n"]


def add(client, key, provider, credential, org="acme", **extra):
    return client.post(f"/api/v1/credentials/{org}", headers={"X-API-Key": key},
                       json={"provider": provider, "credential": credential, **extra})


SA_KEY = {"type": "service_account", "project_id": "tenant-proj", "client_email": "reader@tenant-proj.iam.gserviceaccount.com",
          "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"}


# --------------------------------------------------------------------------------------------------
# file:// sources
# --------------------------------------------------------------------------------------------------
def test_file_sources_must_lie_in_the_orgs_own_root(tenants, rt, roots):
    client, keys = tenants
    (roots / "acme" / "escape").symlink_to(roots / "beta" / "exports", target_is_directory=True)
    attacks = {
        "a host folder": "file:///etc",
        "another org's folder": (roots / "beta" / "exports").as_uri(),
        "a '..' path": f"file://{roots}/acme/../beta/exports",
        "a symlink escape": (roots / "acme" / "escape").as_uri(),
        "the root itself": roots.as_uri(),
    }
    for what, url in attacks.items():
        r = add(client, keys["acme"], "aws", {"source": url})
        assert r.status_code == 400, (what, r.json)
        assert "source" in r.json["message"] and "organization" in r.json["message"], (what, r.json)
        assert str(roots) not in r.json["message"], "a refusal never shows the host's layout"
    assert stored(rt) == 0
    r = add(client, keys["acme"], "aws", {"source": (roots / "acme" / "exports").as_uri()})
    assert r.status_code == 201, r.json
    assert stored(rt) == 1


def test_without_a_source_root_file_sources_are_refused(tenants, rt, roots, monkeypatch):
    import dataclasses

    client, keys = tenants
    monkeypatch.delenv("CLOUDACT_SOURCE_ROOT")
    rt.settings = dataclasses.replace(rt.settings, source_root=None)
    r = add(client, keys["acme"], "oci", {"source": (roots / "acme" / "exports").as_uri()})
    assert r.status_code == 400 and "CLOUDACT_SOURCE_ROOT" in r.json["message"]
    r = add(client, keys["acme"], "deepseek", {"usage_csv_dir": (roots / "acme" / "exports").as_uri()})
    assert r.status_code == 400
    assert stored(rt) == 0


def test_a_legitimate_source_under_the_orgs_root_runs_and_reconciles(tenants, rt, roots):
    import csv
    import shutil
    from decimal import ROUND_HALF_EVEN, Decimal

    from cli.remote import post_and_wait
    from cli.server import start_background
    from shared.config import ROOT

    client, keys = tenants
    sample = ROOT / "data" / "samples" / "oci" / "reports_cost-csv_0000000030000269.csv"
    shutil.copy(sample, roots / "acme" / "exports" / sample.name)
    with sample.open(newline="") as fh:
        expected = sum(Decimal(r["cost/myCost"]).quantize(Decimal("1e-9"), ROUND_HALF_EVEN) for r in csv.DictReader(fh))
    r = add(client, keys["acme"], "oci", {"source": (roots / "acme" / "exports").as_uri()})
    assert r.status_code == 201, r.json
    server, url = start_background()
    try:
        run = post_and_wait(url, keys["acme"], "acme", "cloud/oci/cost/billing",
                            {"start_date": "2023-11-01", "end_date": "2023-11-30"}, timeout=120)
    finally:
        server.shutdown()
    assert run["status"] == "succeeded", run
    assert all(p["ok"] for p in run["quality"]["reconciliation"])
    total = rt.warehouse.query("SELECT SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3`")[0]["s"]
    assert total == expected


# --------------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, field, extra", [
    ("openai", "base_url", {"admin_key": "sk-admin-abc"}),
    ("aws", "endpoint_url", {"bucket": "b", "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s"}),
    ("azure", "account_url", {"container": "c", "account_key": "k"}),
    ("oci", "endpoint", {"tenancy_ocid": "ocid1.tenancy.oc1..t", "user_ocid": "u", "fingerprint": "f",
                         "private_key": "-----BEGIN PRIVATE KEY-----x", "region": "us-ashburn-1"}),
])
def test_endpoints_must_be_public_https_without_query(tenants, rt, dns, kind, field, extra):
    client, keys = tenants
    dns.update({"rebind.example.com": "127.0.0.1", "corp.example.com": "10.1.2.3", "api.example.com": PUBLIC_IP,
                "v6.example.com": "::1"})
    attacks = ["http://api.example.com", "https://127.0.0.1:8443", "https://[::1]/", "https://169.254.169.254/",
               "https://metadata.google.internal/", "https://localhost/", "https://rebind.example.com/",
               "https://corp.example.com/", "https://v6.example.com/", "https://[::ffff:127.0.0.1]/",
               "https://api.example.com/v1?x=", "https://api.example.com/v1#frag", "https://u:p@api.example.com/",
               "https://0.0.0.0/"]
    for url in attacks:
        r = add(client, keys["acme"], kind, {**extra, field: url})
        assert r.status_code == 400, (url, r.json)
        assert field in r.json["message"], (url, r.json)
    assert stored(rt) == 0
    assert add(client, keys["acme"], kind, {**extra, field: "https://api.example.com/v1"}).status_code == 201


def test_a_host_that_turns_private_after_it_was_stored_is_refused_when_connecting(roots, dns):
    """DNS can change between the add-time check and the run: the connection itself goes only to public
    addresses, and to the one it checked."""
    from jobs.base import ExtractError
    from shared import tenancy
    from shared.http import ApiClient

    seen = []
    server = _server(lambda h: seen.append(h.path) or _answer(h, 200, b"{}"))
    try:
        dns["flip.example.com"] = PUBLIC_IP
        tenancy.check_endpoint(f"https://flip.example.com:{server.server_port}", "base_url")  # stored: fine
        dns["flip.example.com"] = "127.0.0.1"  # ... then the tenant's DNS answers loopback
        with ApiClient(f"http://flip.example.com:{server.server_port}", {}, max_attempts=1) as client:
            with pytest.raises(ExtractError, match="non-public"):
                client.get_json("/v1/anything")
    finally:
        server.shutdown()
    assert seen == [], "nothing reached the loopback service"


def test_a_redirect_to_a_private_address_is_not_followed(roots, dns, monkeypatch):
    import httpx

    from jobs.base import ExtractError
    from shared import tenancy
    from shared.http import ApiClient

    inner = []
    internal = _server(lambda h: inner.append(h.path) or _answer(h, 200, b"db_password=hunter2"), host="127.0.0.2")
    target = f"http://127.0.0.2:{internal.server_port}/latest/meta-data"
    provider = _server(lambda h: _answer(h, 302, b"", {"Location": target}))
    # In this test the provider is the one loopback address taken for public; the internal service is not.
    real = tenancy.is_public
    monkeypatch.setattr(tenancy, "is_public", lambda a: a == "127.0.0.1" or real(a))
    dns["provider.example.com"] = "127.0.0.1"
    try:
        base = f"http://provider.example.com:{provider.server_port}"
        with ApiClient(base, {}, max_attempts=1) as client:
            with pytest.raises(ExtractError) as e:
                client.get_json("/v1/usage")
        assert "302" in str(e.value) and "127.0.0.2" not in str(e.value)
        # even a client that follows redirects cannot be walked to a private address by the guarded transport
        with httpx.Client(transport=tenancy.PublicOnlyTransport(), follow_redirects=True) as raw:
            with pytest.raises(tenancy.TrustViolation):
                raw.get(f"{base}/v1/usage")
    finally:
        provider.shutdown()
        internal.shutdown()
    assert inner == []


# --------------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------------
def test_every_cloud_credential_carries_its_own_identity(tenants, rt, dns):
    client, keys = tenants
    dns["acct.blob.core.windows.net"] = PUBLIC_IP
    refused = [
        ("gcp", {"project": "tenant-proj", "dataset": "billing", "table": "gcp_billing_export_v1_X"}),
        ("gcp", {"project": "tenant-proj"}),  # monitoring with the platform's default credentials
        ("aws", {"bucket": "cur-bucket", "prefix": "cur/"}),  # boto3's default chain
        ("aws", {"region": "us-east-1"}),
        ("azure", {"account_url": "https://acct.blob.core.windows.net", "container": "exports"}),  # DefaultAzureCredential
        ("azure", {"cost_scope": "/subscriptions/x", "tenant_id": "t", "client_id": "c"}),
    ]
    for kind, doc in refused:
        r = add(client, keys["acme"], kind, doc)
        assert r.status_code == 400 and "own identity" in r.json["message"], (kind, doc, r.json)
    assert stored(rt) == 0


def test_aws_roles_are_assumed_with_the_platforms_external_id_per_org(tenants, rt):
    client, keys = tenants
    role = {"bucket": "cur-bucket", "role_arn": "arn:aws:iam::123456789012:role/cloudact"}
    r = add(client, keys["acme"], "aws", {**role, "external_id": "beta-external-id"})
    assert r.status_code == 400 and "external_id" in r.json["message"]
    first = add(client, keys["acme"], "aws", role)
    assert first.status_code == 201
    ext = first.json["external_id"]
    assert ext and ext != "beta-external-id"
    again = add(client, keys["acme"], "aws", {**role, "bucket": "other-bucket"}).json["external_id"]
    beta = add(client, keys["beta"], "aws", role, org="beta").json["external_id"]
    assert again == ext and beta != ext
    from shared.secrets import CredentialStore

    loaded = CredentialStore(rt.warehouse, rt.settings).load("acme", "aws", first.json["credential_id"])
    assert loaded["external_id"] == ext


def test_platform_datasets_are_never_a_tenant_source(tenants, rt):
    client, keys = tenants
    for dataset in ("beta_prod", "organizations", "ACME_PROD"):
        r = add(client, keys["acme"], "gcp", {"service_account_json": SA_KEY, "project": "cloudact-platform",
                                              "dataset": dataset, "table": "cost_data_standard_1_3", "focus": True})
        assert r.status_code == 400 and "platform" in r.json["message"], dataset
    assert stored(rt) == 0
    ok = add(client, keys["acme"], "gcp", {"service_account_json": SA_KEY, "project": "tenant-proj",
                                           "dataset": "billing_prod", "table": "gcp_billing_export_v1_X"})
    assert ok.status_code == 201


# --------------------------------------------------------------------------------------------------
# Specs (both modes)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, doc, fragment", [
    ("open_ai", {"admin_key": "sk-admin-x"}, "unknown credential kind"),
    ("openai", {"admin_key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"}, "admin key"),
    ("anthropic", {"admin_key": "sk-ant-api03-xyz"}, "Admin API key"),
    ("openai", {"admin_kye": "sk-admin-x"}, "admin_kye"),
    ("aws", {"source": "file:///tmp", "bucket": "b"}, "not both"),
    ("aws", {"bucket": "b", "aws_access_key_id": "AKIAEXAMPLE"}, "aws_secret_access_key"),
    ("aws", {"bucket": "b", "role_arn": "cloudact-reader"}, "role_arn"),
    ("gcp", {"service_account_json": {"type": "authorized_user"}}, "not a service-account key"),
    ("gcp", {"project": "p", "table": "t"}, "dataset"),
    ("oci", {"tenancy_ocid": "t", "user_ocid": "u", "fingerprint": "f", "private_key": "not pem", "region": "r"},
     "PEM"),
    ("azure", {"resource_ids": "not-a-list"}, "resource_ids"),
])
def test_specs_name_what_is_wrong_before_anything_is_stored(rt, acme, kind, doc, fragment):
    from shared.secrets import CredentialInvalid, CredentialStore

    with pytest.raises(CredentialInvalid, match=fragment):
        CredentialStore(rt.warehouse, rt.settings).add("acme", kind, doc)
    assert stored(rt) == 0


def test_single_tenancy_keeps_local_folders_loopback_and_ambient_identity(rt, acme, tmp_path):
    from shared.secrets import CredentialStore

    store = CredentialStore(rt.warehouse, rt.settings)
    assert store.add("acme", "aws", {"source": tmp_path.as_uri()})
    assert store.add("acme", "openai", {"admin_key": "sk-admin-x", "base_url": "http://127.0.0.1:9/v1"})
    assert store.add("acme", "aws", {"region": "us-east-1"})
    assert store.add("acme", "gcp", {"project": "p"})


def test_the_cli_refuses_with_a_message_and_a_non_zero_exit(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "sources" / "acme").mkdir(parents=True)
    env = {**os.environ, "CLOUDACT_HOME": str(tmp_path / "home"), "CLOUDACT_TENANCY": "multi",
           "CLOUDACT_SOURCE_ROOT": str(tmp_path / "sources"), "CLOUDACT_BACKEND": "embedded"}

    def cloudact(*args):
        return subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert cloudact("orgs", "create", "acme").returncode == 0
    doc = tmp_path / "cred.json"
    doc.write_text(json.dumps({"source": "file:///etc"}))
    refused = cloudact("credentials", "add", "acme", "aws", "--from-json", str(doc))
    assert refused.returncode != 0
    assert "source" in refused.stderr and "organization" in refused.stderr and "Traceback" not in refused.stderr
    listed = cloudact("credentials", "list", "acme")
    assert listed.returncode == 0 and "cred_aws" not in listed.stdout


# --------------------------------------------------------------------------------------------------
# The credentials API
# --------------------------------------------------------------------------------------------------
def test_credentials_api_adds_lists_rotates_and_disables_without_showing_secrets(roots, rt, acme):
    from cli.server import app

    client = app().test_client()
    create_org(rt.warehouse, "beta")
    key, beta_key = create_key(rt.warehouse, "acme"), create_key(rt.warehouse, "beta")
    secret = "sk-admin-SECRET-first-0001"
    r = add(client, key, "openai", {"admin_key": secret}, label="prod")
    assert r.status_code == 201 and r.json["provider"] == "openai" and r.json["label"] == "prod"
    cid = r.json["credential_id"]
    listing = client.get("/api/v1/credentials/acme", headers={"X-API-Key": key})
    assert listing.status_code == 200 and [c["credential_id"] for c in listing.json["credentials"]] == [cid]
    assert secret not in listing.get_data(as_text=True) and secret not in r.get_data(as_text=True)
    # the same admin key twice is one source: refused, naming the first
    dup = add(client, key, "openai", {"admin_key": secret})
    assert dup.status_code == 409 and cid in dup.json["message"]
    # another org can neither read, rotate nor disable it
    assert client.get("/api/v1/credentials/acme", headers={"X-API-Key": beta_key}).status_code == 403
    assert client.delete(f"/api/v1/credentials/beta/{cid}", headers={"X-API-Key": beta_key}).status_code == 404
    assert client.post(f"/api/v1/credentials/beta/{cid}/rotate", headers={"X-API-Key": beta_key},
                       json={"admin_key": "sk-admin-beta"}).status_code == 404
    rotated = client.post(f"/api/v1/credentials/acme/{cid}/rotate", headers={"X-API-Key": key},
                          json={"admin_key": "sk-admin-SECRET-second-002"})
    assert rotated.status_code == 200 and rotated.json["credential_id"] == cid
    from shared.secrets import CredentialStore

    assert CredentialStore(rt.warehouse, rt.settings).load("acme", "openai", cid)["admin_key"].endswith("second-002")
    gone = client.delete(f"/api/v1/credentials/acme/{cid}", headers={"X-API-Key": key})
    assert gone.status_code == 200 and gone.json["status"] == "disabled"
    assert client.post("/api/v1/pipelines/run/acme/genai/payg/openai", headers={"X-API-Key": key},
                       json={}).status_code == 422
    named = client.post("/api/v1/pipelines/run/acme/genai/payg/openai", headers={"X-API-Key": key},
                        json={"credential_id": cid})
    assert named.status_code == 422 and "disabled" in named.json["message"]
    bad = client.post(f"/api/v1/credentials/acme/{cid}/rotate", headers={"X-API-Key": key}, json={"admin_kye": "x"})
    assert bad.status_code == 400 and "admin_kye" in bad.json["message"]


# --------------------------------------------------------------------------------------------------
# Loopback helpers
# --------------------------------------------------------------------------------------------------
def _answer(handler, status: int, body: bytes, headers: dict | None = None) -> None:
    handler.send_response(status)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _server(respond, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            respond(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_credential_stored_under_single_tenancy_is_checked_again_when_a_multi_run_loads_it(rt, acme, tmp_path):
    import dataclasses

    from shared.secrets import CredentialInvalid, CredentialStore

    cid = CredentialStore(rt.warehouse, rt.settings).add("acme", "aws", {"source": "file:///etc"})
    multi = dataclasses.replace(rt.settings, tenancy="multi", source_root=tmp_path)
    with pytest.raises(CredentialInvalid, match="source"):
        CredentialStore(rt.warehouse, multi).load("acme", "aws", cid)


def test_a_cloud_storage_url_as_source_needs_an_identity_too(tenants, rt):
    client, keys = tenants
    r = add(client, keys["acme"], "aws", {"source": "s3://other-tenants-bucket/cur/"})
    assert r.status_code == 400 and "own identity" in r.json["message"]
    assert stored(rt) == 0


def test_an_s3_source_named_as_url_or_bucket_is_one_source(rt, acme):
    from shared.secrets import CredentialConflict, CredentialStore

    store = CredentialStore(rt.warehouse, rt.settings)
    first = store.add("acme", "aws", {"bucket": "cur-bucket", "region": "us-east-1"})
    with pytest.raises(CredentialConflict, match=first):
        store.add("acme", "aws", {"source": "s3://cur-bucket/"})
