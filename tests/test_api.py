"""The HTTP contract of run_pipeline, served by functions-framework: every status code, tenant isolation."""
from __future__ import annotations

import datetime as dt

import pytest

from shared import runs
from shared.auth import create_key, revoke_key
from shared.secrets import CredentialStore
from shared.tenants import create_org

PIPE = "genai/payg/openai"


@pytest.fixture()
def client(rt):
    from cli.server import app

    return app().test_client()


@pytest.fixture()
def setup(rt, acme):
    create_org(rt.warehouse, "globex")
    keys = {"acme": create_key(rt.warehouse, "acme"), "globex": create_key(rt.warehouse, "globex")}
    cred = CredentialStore(rt.warehouse, rt.settings).add("acme", "openai", {"admin_key": "sk-admin-x", "base_url": "http://127.0.0.1:9/v1"})
    return keys, cred


def post(client, org, path=PIPE, key=None, json=None, data=None):
    headers = {"X-API-Key": key} if key else {}
    return client.post(f"/api/v1/pipelines/run/{org}/{path}", headers=headers, json=json, data=data)


def test_missing_or_wrong_key_is_401(client, setup):
    keys, _ = setup
    assert post(client, "acme").status_code == 401
    assert post(client, "acme", key="cak_nothere_xyz").status_code == 401
    assert post(client, "acme", key=keys["acme"] + "x").status_code == 401
    assert post(client, "acme", key="Bearer " + keys["acme"]).status_code == 401


def test_key_of_another_org_is_403_both_ways(client, setup):
    keys, _ = setup
    r = post(client, "acme", key=keys["globex"], json={})
    assert r.status_code == 403 and "acme" in r.json["message"]
    assert client.get("/api/v1/pipelines/runs/globex/run_x", headers={"X-API-Key": keys["acme"]}).status_code == 403


def test_revoked_key_is_401(client, rt, setup):
    keys, _ = setup
    key_id = keys["acme"][len("cak_"):].split("_", 1)[0]
    assert revoke_key(rt.warehouse, "acme", key_id)
    assert post(client, "acme", key=keys["acme"]).status_code == 401


def test_bad_slug_is_400(client, setup):
    keys, _ = setup
    for slug in ("ACME", "a", "acme;drop", "organizations", "acme__x"):
        r = post(client, slug, key=keys["acme"])
        assert r.status_code == 400, slug
        assert r.json["error"] == "bad_org"


@pytest.mark.parametrize("body, fragment", [
    ({"start_date": "2026-13-01", "end_date": "2026-01-02"}, "YYYY-MM-DD"),
    ({"start_date": "2026-01-05", "end_date": "2026-01-02"}, "after end_date"),
    ({"start_date": "2026-01-05"}, "both"),
    ({"start_date": "2020-01-01", "end_date": "2026-01-01"}, "at most"),
    ({"start_date": "2026-01-01", "end_date": "2999-01-01"}, "future"),
    ({"nonsense": 1}, "unknown field"),
    ([1, 2], "JSON object"),
])
def test_bad_body_or_dates_is_400(client, setup, body, fragment):
    keys, _ = setup
    r = post(client, "acme", key=keys["acme"], json=body)
    assert r.status_code == 400
    assert fragment in r.json["message"]


def test_malformed_json_is_400(client, setup):
    keys, _ = setup
    r = post(client, "acme", key=keys["acme"], data=b"{not json", )
    assert r.status_code == 400 and r.json["error"] == "bad_body"


def test_unknown_pipeline_is_404_and_planned_one_is_refused_clearly(client, setup, planned_pipeline):
    keys, _ = setup
    r = post(client, "acme", path="genai/payg/nosuch", key=keys["acme"])
    assert r.status_code == 404 and "known pipelines" in r.json["message"]
    r = post(client, "acme", path=planned_pipeline, key=keys["acme"])
    assert r.status_code == 501 and "not built yet" in r.json["message"]


def test_no_credential_is_422(client, rt, setup):
    keys, _ = setup
    r = post(client, "globex", key=keys["globex"], json={})
    assert r.status_code == 422
    assert "cloudact credentials add globex openai" in r.json["message"]
    r = post(client, "acme", key=keys["acme"], json={"credential_id": "cred_missing"})
    assert r.status_code == 422


def test_same_slice_running_is_409_and_other_slices_are_not(client, rt, setup):
    keys, cred = setup
    runs.create_run(rt.warehouse, org_slug="acme", pipeline_id=PIPE, credential_id=cred,
                    start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 1, 10), trigger="test")
    r = post(client, "acme", key=keys["acme"], json={"start_date": "2026-01-10", "end_date": "2026-01-12"})
    assert r.status_code == 409 and "already queued or running" in r.json["message"]
    # a disjoint range is its own slice
    rt.bus = _NullBus()
    r = post(client, "acme", key=keys["acme"], json={"start_date": "2026-01-11", "end_date": "2026-01-12"})
    assert r.status_code == 202


class _NullBus:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, attributes=None):
        self.published.append((topic, payload))
        return "1"

    def drain(self, timeout=0):
        pass

    def close(self):
        pass


def test_accepted_run_is_202_queued_and_readable(client, rt, setup):
    keys, cred = setup
    rt.bus = bus = _NullBus()
    r = post(client, "acme", key=keys["acme"], json={"start_date": "2026-01-01", "end_date": "2026-01-02"})
    assert r.status_code == 202
    body = r.json
    assert body["status"] == "queued" and body["run_id"].startswith("run_") and body["credential_id"] == cred
    topic, payload = bus.published[0]
    assert topic == "pipeline-run-requests" and payload["run_id"] == body["run_id"]
    got = client.get(f"/api/v1/pipelines/runs/acme/{body['run_id']}", headers={"X-API-Key": keys["acme"]})
    assert got.status_code == 200
    assert got.json["status"] == "queued" and got.json["start_date"] == "2026-01-01"
    assert not any(k.startswith("x_") for k in got.json)
    listed = client.get("/api/v1/pipelines/runs/acme", headers={"X-API-Key": keys["acme"]}).json["runs"]
    assert [x["run_id"] for x in listed] == [body["run_id"]]
    # globex cannot see acme's run even with a valid key of its own
    assert client.get(f"/api/v1/pipelines/runs/globex/{body['run_id']}",
                      headers={"X-API-Key": keys["globex"]}).status_code == 404


def test_unknown_run_is_404(client, setup):
    keys, _ = setup
    assert client.get("/api/v1/pipelines/runs/acme/run_nope", headers={"X-API-Key": keys["acme"]}).status_code == 404


def test_subscriptions_api_validates_and_feeds_the_pipeline(client, rt, setup):

    keys, _ = setup
    h = {"X-API-Key": keys["acme"]}
    good = {"provider": "slack", "plan": "pro", "seats": 10, "unit_price": "8.75", "currency": "USD",
            "billing_cycle": "monthly", "start_date": "2026-01-01"}
    for bad, field in (({**good, "seats": -1}, "seats"), ({**good, "currency": "XXX"}, "currency"),
                       ({**good, "end_date": "2025-12-01"}, "end_date")):
        r = client.post("/api/v1/subscriptions/acme", headers=h, json=bad)
        assert r.status_code == 400 and r.json["field"] == field, r.json
    assert client.get("/api/v1/subscriptions/acme", headers=h).json["subscriptions"] == []
    assert client.post("/api/v1/subscriptions/acme", headers={"X-API-Key": keys["globex"]}, json=good).status_code == 403
    created = client.post("/api/v1/subscriptions/acme", headers=h, json=good)
    assert created.status_code == 201
    sid = created.json["subscription_id"]
    assert not any(k.startswith("x_") for k in created.json)
    r = client.patch(f"/api/v1/subscriptions/acme/{sid}", headers=h, json={"seats": 12, "effective_date": "2026-01-16"})
    assert r.status_code == 200
    assert client.post(f"/api/v1/subscriptions/acme/{sid}/cancel", headers=h, json={"end_date": "2026-03-31"}).status_code == 200
    r = client.post("/api/v1/pipelines/run/acme/subscription/costs/subscription_cost", headers=h,
                    json={"start_date": "2026-01-01", "end_date": "2026-01-31"})
    assert r.status_code == 202
    rt.bus.drain()
    run = client.get(f"/api/v1/pipelines/runs/acme/{r.json['run_id']}", headers=h).json
    assert run["status"] == "succeeded", run
    total = rt.warehouse.query("SELECT SUM(BilledCost) AS s FROM `acme_prod.cost_data_standard_1_3` "
                               "WHERE x_pipeline_id = 'subscription/costs/subscription_cost'")[0]["s"]
    # Jan: 15 days at 10 seats and 16 days at 12 seats of a 31-day cycle, $8.75/seat
    from decimal import Decimal

    assert total.quantize(Decimal("0.01")) == (Decimal("8.75") * (10 * 15 + 12 * 16) / 31).quantize(Decimal("0.01"))


NEW_ROUTES = [
    ("GET", "/api/v1/credentials/{org}", None),
    ("POST", "/api/v1/credentials/{org}", {"provider": "openai", "credential": {"admin_key": "sk-admin-y"}}),
    ("POST", "/api/v1/credentials/{org}/{cred}/rotate", {"admin_key": "sk-admin-z"}),
    ("DELETE", "/api/v1/credentials/{org}/{cred}", None),
    ("POST", "/api/v1/pipelines/runs/{org}/run_x/cancel", None),
]


@pytest.mark.parametrize("method, route, body", NEW_ROUTES)
def test_new_routes_refuse_no_key_and_another_orgs_key_and_change_nothing(client, rt, setup, method, route, body):
    keys, cred = setup
    path = route.format(org="acme", cred=cred)
    before = rt.warehouse.query("SELECT credential_id, status, secret_ciphertext FROM `organizations.org_credentials` "
                                "ORDER BY credential_id")
    assert client.open(path, method=method, json=body).status_code == 401
    assert client.open(path, method=method, json=body, headers={"X-API-Key": "cak_nothere_x"}).status_code == 401
    r = client.open(path, method=method, json=body, headers={"X-API-Key": keys["globex"]})
    assert r.status_code == 403 and "acme" in r.json["message"]
    assert rt.warehouse.query("SELECT credential_id, status, secret_ciphertext FROM `organizations.org_credentials` "
                              "ORDER BY credential_id") == before


@pytest.mark.parametrize("body", [
    {"provider": "openai", "credential": {"admin_key": "sk-admin-y", "base_url": "https://[::1"}},
    {"provider": "aws", "credential": {"source": "file://["}},
    {"provider": "oci", "credential": {"source": "file:///tmp/\u0000x"}},
    {"provider": "openai", "credential": ["admin_key"]},
    {"provider": 7, "credential": {}},
    {"provider": "openai", "credential": {"admin_key": "sk-admin-y"}, "label": {"x": 1}},
    {"provider": "gcp", "credential": {"project": "p`; DROP", "dataset": "d", "table": "t"}},
    [1, 2],
    "just text",
])
def test_odd_credential_bodies_are_400_and_store_nothing(client, rt, setup, body):
    keys, _ = setup
    r = client.post("/api/v1/credentials/acme", headers={"X-API-Key": keys["acme"]}, json=body)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.org_credentials`") == [{"n": 1}]


def test_credential_routes_answer_404_and_405_not_500(client, setup):
    keys, cred = setup
    auth = {"X-API-Key": keys["acme"]}
    assert client.post("/api/v1/credentials/acme/cred_none/rotate", headers=auth, json={"admin_key": "k"}).status_code == 404
    assert client.delete("/api/v1/credentials/acme/cred_none", headers=auth).status_code == 404
    assert client.delete("/api/v1/credentials/acme", headers=auth).status_code == 405
    assert client.patch(f"/api/v1/credentials/acme/{cred}", headers=auth, json={}).status_code == 405
    assert client.post(f"/api/v1/credentials/acme/{cred}/rotate", headers=auth, json=[1]).status_code == 400
