"""Input edges answer 4xx with a message, never 500: body size (413 before the body is read), the key
before the body is parsed, deep or malformed JSON, dates out of range, non-ASCII cron, and a bad
stored schedule in the Cloud Scheduler sync. Through the served app (test client and loopback HTTP)."""
from __future__ import annotations

import json
import socket
import threading

import pytest

from shared import inputs
from shared import schedules as S
from shared.auth import create_key
from shared.tenants import create_org
from tests.test_schedules import FakeScheduler, sync
from tests.test_stripe_webhook import SECRET, event, product, sign

SAAS = "subscription/costs/subscription_cost"
DEEP = "[" * 100_000
SUB = {"provider": "slack", "plan": "pro", "seats": 2, "unit_price": "8.75", "currency": "USD",
       "billing_cycle": "monthly", "start_date": "2026-01-01"}


@pytest.fixture()
def client(rt, monkeypatch):
    from cli.server import app

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    return app().test_client()


@pytest.fixture()
def key(rt, acme):
    return create_key(rt.warehouse, "acme")


@pytest.fixture()
def ids(client, key):
    h = {"X-API-Key": key}
    sub = client.post("/api/v1/subscriptions/acme", headers=h, json=SUB).json["subscription_id"]
    sch = client.post("/api/v1/schedules/acme", headers=h, json={"pipeline_id": SAAS, "cron": "0 3 * * *"})
    return sub, sch.json["schedule_id"]


def routes(ids):
    sub, sch = ids
    return [("POST", f"/api/v1/pipelines/run/acme/{SAAS}"), ("POST", "/api/v1/subscriptions/acme"),
            ("PATCH", f"/api/v1/subscriptions/acme/{sub}"), ("POST", f"/api/v1/subscriptions/acme/{sub}/cancel"),
            ("POST", "/api/v1/schedules/acme"), ("PATCH", f"/api/v1/schedules/acme/{sch}")]


@pytest.mark.parametrize("body", [DEEP, "{" * 100_000, '{"a":' * 50_000, "not json", '{"start_date": ',
                                  b"\xff\xfe{"], ids=["deep-arrays", "deep-objects", "deep-members", "not-json",
                                                        "truncated", "not-utf8"])
def test_deep_or_malformed_json_is_400_on_every_route(client, key, ids, body):
    for method, path in routes(ids):
        r = client.open(path, method=method, headers={"X-API-Key": key}, data=body, content_type="application/json")
        assert r.status_code == 400, (method, path, r.status_code, r.get_data()[:200])
        assert r.json["message"]


def test_json_nested_to_the_bound_is_parsed_and_one_deeper_is_not():
    ok = "[" * inputs.MAX_JSON_DEPTH + "]" * inputs.MAX_JSON_DEPTH
    assert inputs.parse_json(ok) is not None
    with pytest.raises(inputs.BadJson):
        inputs.parse_json("[" + ok + "]")
    # brackets inside strings are not nesting
    assert inputs.parse_json(json.dumps({"note": "[" * 1000})) == {"note": "[" * 1000}


def test_the_key_is_checked_before_the_body_is_parsed(client, key, ids):
    for method, path in routes(ids):
        for headers in ({}, {"X-API-Key": key + "x"}):
            r = client.open(path, method=method, headers=headers, data=DEEP, content_type="application/json")
            assert r.status_code == 401, (method, path, r.status_code)


# -- size: loopback HTTP, because the point is what the server reads off the socket ----------------
@pytest.fixture()
def served(rt, monkeypatch):
    from cli.server import start_background

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    server, _ = start_background()
    yield server.server_port
    server.shutdown()


def exchange(port: int, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, dict]:
    """Send a request head, then (from another thread, so a server that stops reading cannot block us)
    the body; return the response status and JSON body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send():
        try:
            sock.sendall(body)
        except OSError:
            pass  # the server answered and closed before reading it all: that is the point

    sock.sendall(head.encode())
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1] or b"null")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def chunked(payload: bytes, size: int = 65536) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(payload[i:i + size]), payload[i:i + size]) for i in range(0, len(payload), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def head(path: str, key: str | None, extra: str) -> str:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}{extra}\r\n"


@pytest.mark.parametrize("path", [f"/api/v1/pipelines/run/acme/{SAAS}", "/api/v1/schedules/acme", "/webhooks/stripe"])
def test_a_declared_length_over_the_limit_is_413_before_any_body_is_sent(served, key, path):
    # Only the head is sent: a server that tried to read the body would wait for it until the timeout.
    status, body = exchange(served, head(path, key, f"Content-Length: {inputs.MAX_BODY_BYTES + 1}\r\n"))
    assert status == 413 and body["message"]


@pytest.mark.parametrize("path", [f"/api/v1/pipelines/run/acme/{SAAS}", "/webhooks/stripe"])
def test_a_chunked_body_over_the_limit_is_413(served, key, path):
    payload = b"[" + b" " * inputs.MAX_BODY_BYTES + b"]"
    status, body = exchange(served, head(path, key, "Transfer-Encoding: chunked\r\n"), chunked(payload))
    assert status == 413 and body["message"]


def test_a_chunked_body_under_the_limit_is_read_whole(served, key, rt):
    doc = json.dumps({"pipeline_id": SAAS, "cron": "0 3 * * *"}).encode()
    padded = doc[:-1] + b" " * (inputs.MAX_BODY_BYTES - len(doc)) + b"}"
    assert len(padded) == inputs.MAX_BODY_BYTES
    status, body = exchange(served, head("/api/v1/schedules/acme", key, "Transfer-Encoding: chunked\r\n"),
                            chunked(padded))
    assert status == 201, body
    assert [s["schedule_id"] for s in S.list_schedules(rt.warehouse, "acme")] == [body["schedule_id"]]


def test_stripe_webhook_is_served_and_a_signed_deep_body_is_400(served, rt):
    import httpx

    url = f"http://127.0.0.1:{served}/webhooks/stripe"
    good = json.dumps(event("product.created", product(pid="prod_http", daily_runs=4)))
    r = httpx.post(url, content=good, headers={"Stripe-Signature": sign(good), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    plan = rt.warehouse.query("SELECT daily_runs FROM `organizations.plans` WHERE plan_id = 'prod_http'")
    assert plan == [{"daily_runs": 4}]
    r = httpx.post(url, content=DEEP, headers={"Stripe-Signature": sign(DEEP)})
    assert (r.status_code, r.json()["error"]) == (400, "bad_event")
    r = httpx.post(url, content=DEEP, headers={"Stripe-Signature": sign(DEEP, secret="whsec_other")})
    assert (r.status_code, r.json()["error"]) == (400, "bad_signature")  # nothing unsigned is parsed


@pytest.mark.parametrize("change", [{"created": "soon"}, {"created": 10**20},
                                    {"type": "customer.subscription.updated",
                                     "data": {"object": {"id": "sub_x", "customer": "cus_x", "status": "active",
                                                         "metadata": {"org_slug": "acme"},
                                                         "current_period_end": 10**20}}},
                                    {"data": ["not", "an", "object"]}])
def test_signed_events_with_impossible_values_are_400(client, rt, acme, change):
    payload = json.dumps({**event("product.created", product()), **change})
    r = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign(payload)})
    assert (r.status_code, r.json["error"]) == (400, "bad_event"), r.get_data()[:300]


# -- dates --------------------------------------------------------------------------------------
@pytest.mark.parametrize("start,end,field", [("0001-01-01", "0001-01-31", "start_date"),
                                             ("2005-12-31", "2006-01-05", "start_date")])
def test_run_dates_before_2006_are_400_naming_the_field(client, key, start, end, field):
    r = client.post(f"/api/v1/pipelines/run/acme/{SAAS}", headers={"X-API-Key": key},
                    json={"start_date": start, "end_date": end})
    assert r.status_code == 400 and field in r.json["message"]


def test_the_first_sane_day_is_accepted_for_a_run(client, key):
    r = client.post(f"/api/v1/pipelines/run/acme/{SAAS}", headers={"X-API-Key": key},
                    json={"start_date": "2006-01-01", "end_date": "2006-01-31"})
    assert r.status_code == 202, r.json


@pytest.mark.parametrize("doc,field", [({**SUB, "start_date": "0001-01-01"}, "start_date"),
                                       ({**SUB, "end_date": "9999-12-31"}, "end_date"),
                                       ({**SUB, "seats": "²"}, "seats")])
def test_subscription_create_edges_are_400_naming_the_field(client, key, doc, field):
    r = client.post("/api/v1/subscriptions/acme", headers={"X-API-Key": key}, json=doc)
    assert (r.status_code, r.json["field"]) == (400, field), r.json


def test_subscription_cancel_and_update_out_of_range_are_400(client, key, ids):
    sub, _ = ids
    h = {"X-API-Key": key}
    r = client.post(f"/api/v1/subscriptions/acme/{sub}/cancel", headers=h, json={"end_date": "9999-12-31"})
    assert (r.status_code, r.json["field"]) == (400, "end_date"), r.json
    r = client.patch(f"/api/v1/subscriptions/acme/{sub}", headers=h, json={"seats": 3, "effective_date": "9999-06-01"})
    assert (r.status_code, r.json["field"]) == (400, "effective_date"), r.json
    # the last sane day still works: an end far ahead can be moved earlier later
    assert client.post(f"/api/v1/subscriptions/acme/{sub}/cancel", headers=h,
                       json={"end_date": "9998-12-31"}).status_code == 200


# -- schedules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cron", ["² * * * *", "٣ * * * *", "*/² * * * *", "0 3 * * ٣", "0 ３ * * *"])
def test_non_ascii_cron_is_400(client, key, ids, cron):
    _, sch = ids
    h = {"X-API-Key": key}
    r = client.post("/api/v1/schedules/acme", headers=h, json={"pipeline_id": SAAS, "cron": cron})
    assert (r.status_code, r.json["field"]) == (400, "cron"), r.json
    r = client.patch(f"/api/v1/schedules/acme/{sch}", headers=h, json={"cron": cron})
    assert (r.status_code, r.json["field"]) == (400, "cron"), r.json


@pytest.mark.parametrize("spec,field", [({"pipeline_id": ["x"], "cron": "0 3 * * *"}, "pipeline_id"),
                                        ({"pipeline_id": SAAS, "cron": "0 3 * * *",
                                          "body": {"start_date": "0001-01-01", "end_date": "0001-01-02"}}, "body")])
def test_schedule_odd_values_are_400(client, key, spec, field):
    r = client.post("/api/v1/schedules/acme", headers={"X-API-Key": key}, json=spec)
    assert (r.status_code, r.json["field"]) == (400, field), r.json
    if field == "body":
        assert "start_date" in r.json["message"]


def test_a_bad_stored_schedule_never_breaks_the_sync_of_other_orgs(rt, acme):
    import datetime as dt

    wh = rt.warehouse
    create_org(wh, "globex")
    good = S.create_schedule(wh, "globex", {"pipeline_id": SAAS, "cron": "0 3 * * *"})
    now = dt.datetime.now(dt.timezone.utc)
    # what the checks of an older version let through
    wh.insert_rows("organizations", "org_schedules", [{
        "schedule_id": "sch_0123456789ab", "org_slug": "acme", "pipeline_id": SAAS, "cron": "٣ * * * *",
        "timezone": "Etc/UTC", "enabled": True, "body": "{}", "created_at": now, "updated_at": now}])
    fake = FakeScheduler()
    summary = sync(wh, fake)
    assert [n.rsplit("/", 1)[-1] for n in summary["created"]] == [S.job_id("globex", good["schedule_id"])]
    assert [(s["org_slug"], s["schedule_id"]) for s in summary["skipped"]] == [("acme", "sch_0123456789ab")]
    assert "cron" in summary["skipped"][0]["reason"]


def test_a_job_cloud_scheduler_refuses_is_skipped_and_the_others_sync(rt, acme):
    from google.api_core import exceptions as gexc

    wh = rt.warehouse
    create_org(wh, "globex")
    bad = S.create_schedule(wh, "acme", {"pipeline_id": SAAS, "cron": "0 3 * * *"})
    good = S.create_schedule(wh, "globex", {"pipeline_id": SAAS, "cron": "0 4 * * *"})

    class Refusing(FakeScheduler):
        def create_job(self, request):
            if bad["schedule_id"] in request.job.name:
                raise gexc.InvalidArgument("schedule rejected")
            return super().create_job(request)

    fake = Refusing()
    summary = sync(wh, fake)
    assert [n.rsplit("/", 1)[-1] for n in summary["created"]] == [S.job_id("globex", good["schedule_id"])]
    assert len(summary["skipped"]) == 1 and bad["schedule_id"] in summary["skipped"][0]["job"]
