"""stripe_webhook: signature checks (stripe library, offline), idempotency, plans, subscriptions, ordering."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from pathlib import Path

import pytest

from shared import stripe_events
from shared.stripe_events import handle_event

SECRET = "whsec_test_cloudact"
MAIN = str(Path(__file__).resolve().parent.parent / "functions" / "main.py")
_ids = itertools.count(1)


# -- event builders (shared with test_quotas) -------------------------------------------
def event(type_: str, obj: dict, created: int = 1_700_000_000, event_id: str | None = None) -> dict:
    return {"id": event_id or f"evt_{next(_ids):06d}", "object": "event", "type": type_, "created": created,
            "livemode": False, "api_version": "2024-06-20", "data": {"object": obj}}


def product(pid="prod_pro", name="Pro", active=True, **limits) -> dict:
    return {"id": pid, "object": "product", "name": name, "active": active,
            "metadata": {k: str(v) for k, v in limits.items()}}


def price(pid="price_pro_m", product_id="prod_pro", active=True, nickname="Pro monthly", **limits) -> dict:
    return {"id": pid, "object": "price", "product": product_id, "active": active, "nickname": nickname,
            "metadata": {k: str(v) for k, v in limits.items()}}


def subscription(sid="sub_1", org="acme", status="active", price_id="price_pro_m", product_id="prod_pro",
                 customer="cus_1", metadata=True) -> dict:
    return {"id": sid, "object": "subscription", "customer": customer, "status": status,
            "metadata": {"org_slug": org} if metadata else {}, "cancel_at_period_end": False,
            "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000,
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price_id, "product": product_id}}]}}


def subscribe(wh, org="acme", status="active", created=1_700_000_100, **limits) -> None:
    """Give `org` a product+price plan with `limits` and a subscription in `status`, through handle_event."""
    handle_event(wh, event("product.updated", product(**limits), created=created))
    handle_event(wh, event("price.created", price(), created=created))
    handle_event(wh, event("customer.subscription.updated", subscription(org=org, status=status), created=created))


def sign(payload: str, secret: str = SECRET, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    return f"t={ts},v1=" + hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()


def sub_row(wh, sid="sub_1"):
    rows = wh.query("SELECT * FROM `organizations.org_subscriptions` WHERE stripe_subscription_id = @s", {"s": sid})
    return rows[0] if rows else None


def org_status(wh, org="acme"):
    return wh.query("SELECT status FROM `organizations.organizations` WHERE org_slug = @o", {"o": org})[0]["status"]


# -- HTTP: signature -----------------------------------------------------------------------
@pytest.fixture()
def client(rt, monkeypatch):
    from functions_framework import create_app

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    return create_app(target="stripe_webhook", source=MAIN, signature_type="http").test_client()


def post(client, payload: str, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/", data=payload, headers=headers)


def test_signed_event_is_applied_and_bad_signatures_are_400(client, rt, acme):
    payload = json.dumps(event("product.created", product(daily_runs=5)))
    assert post(client, payload, None).status_code == 400                                  # unsigned
    assert post(client, payload, "garbage").status_code == 400                             # malformed
    assert post(client, payload, sign(payload, "whsec_other")).status_code == 400          # wrong secret
    assert post(client, payload.replace('"5"', '"500"'), sign(payload)).status_code == 400  # tampered body
    r = post(client, payload, sign(payload, ts=int(time.time()) - 301))                    # stale
    assert r.status_code == 400 and "tolerance" in r.json["message"].lower()
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.stripe_events`")[0]["n"] == 0

    r = post(client, payload, sign(payload))
    assert r.status_code == 200 and r.json["outcome"] == "inserted product prod_pro"
    plan = rt.warehouse.query("SELECT * FROM `organizations.plans`")[0]
    assert (plan["plan_id"], plan["daily_runs"], plan["status"]) == ("prod_pro", 5, "active")


def test_replay_is_200_already_processed_and_changes_nothing(client, rt, acme):
    ev = event("product.created", product(daily_runs=5), event_id="evt_replay")
    payload = json.dumps(ev)
    assert post(client, payload, sign(payload)).status_code == 200
    # Same event id, different content (as a forged or buggy replay): nothing changes.
    ev2 = {**ev, "created": ev["created"] + 100, "data": {"object": product(daily_runs=99)}}
    payload2 = json.dumps(ev2)
    r = post(client, payload2, sign(payload2))
    assert r.status_code == 200 and r.json["outcome"].startswith("already processed")
    assert rt.warehouse.query("SELECT daily_runs FROM `organizations.plans`")[0]["daily_runs"] == 5
    assert rt.warehouse.query("SELECT COUNT(*) AS n FROM `organizations.stripe_events`")[0]["n"] == 1


def test_missing_secret_is_500_and_get_is_405(rt, monkeypatch):
    from functions_framework import create_app

    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    c = create_app(target="stripe_webhook", source=MAIN, signature_type="http").test_client()
    payload = json.dumps(event("product.created", product()))
    assert post(c, payload, sign(payload)).status_code == 500
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    assert c.get("/").status_code == 405


def test_verify_rejects_non_event_json():
    body = json.dumps({"hello": "world"})
    with pytest.raises(stripe_events.BadEvent):
        stripe_events.verify(body, sign(body), SECRET)


# -- plans -----------------------------------------------------------------------------------
def test_product_and_price_events_upsert_plans(rt):
    wh = rt.warehouse
    handle_event(wh, event("product.created", product(daily_runs=5, concurrent_runs=2,
                                                       providers_allowed="OpenAI, anthropic", backfill_days=30)))
    handle_event(wh, event("price.created", price(concurrent_runs=3)))
    from shared.plans import get_plan

    p = get_plan(wh, "price_pro_m")  # price inherits product limits, overrides concurrent_runs
    assert (p.daily_runs, p.concurrent_runs, p.providers_allowed, p.backfill_days) == (5, 3, "openai,anthropic", 30)
    handle_event(wh, event("product.updated", product(active=False, daily_runs=7), created=1_700_000_500))
    row = wh.query("SELECT * FROM `organizations.plans` WHERE plan_id = 'prod_pro'")[0]
    assert (row["status"], row["daily_runs"], row["concurrent_runs"]) == ("archived", 7, None)
    handle_event(wh, event("price.deleted", price(), created=1_700_000_600))
    assert wh.query("SELECT status FROM `organizations.plans` WHERE plan_id = 'price_pro_m'")[0]["status"] == "archived"


def test_invalid_plan_metadata_is_recorded_and_not_applied(rt):
    wh = rt.warehouse
    handle_event(wh, event("product.created", product(daily_runs=5)))
    out = handle_event(wh, event("product.updated", product(daily_runs="lots"), created=1_700_000_900))
    assert out.startswith("rejected") and "daily_runs" in out
    assert wh.query("SELECT daily_runs FROM `organizations.plans`")[0]["daily_runs"] == 5
    assert wh.query("SELECT outcome FROM `organizations.stripe_events` ORDER BY created DESC")[0]["outcome"] == out


def test_older_plan_event_never_rolls_back(rt):
    wh = rt.warehouse
    handle_event(wh, event("product.updated", product(daily_runs=10), created=2000))
    assert handle_event(wh, event("product.updated", product(daily_runs=1), created=1000)).startswith("stale")
    assert wh.query("SELECT daily_runs FROM `organizations.plans`")[0]["daily_runs"] == 10


# -- subscriptions ------------------------------------------------------------------------
def test_subscription_lifecycle_sets_row_and_org_status(rt, acme):
    wh = rt.warehouse
    out = handle_event(wh, event("customer.subscription.created", subscription(status="trialing"), created=100))
    assert out.startswith("inserted subscription sub_1 (trialing)")
    row = sub_row(wh)
    assert (row["org_slug"], row["plan_id"], row["product_id"], row["stripe_customer_id"], row["event_created"]) == \
        ("acme", "price_pro_m", "prod_pro", "cus_1", 100)
    assert row["current_period_end"].timestamp() == 1_702_592_000
    assert org_status(wh) == "active"
    handle_event(wh, event("invoice.payment_failed", {"id": "in_1", "object": "invoice", "customer": "cus_1",
                                                      "subscription": "sub_1"}, created=200))
    assert sub_row(wh)["status"] == "past_due" and org_status(wh) == "suspended"
    handle_event(wh, event("customer.subscription.updated", subscription(status="active"), created=300))
    assert sub_row(wh)["status"] == "active" and org_status(wh) == "active"
    handle_event(wh, event("customer.subscription.deleted", subscription(status="canceled"), created=400))
    assert sub_row(wh)["status"] == "canceled" and org_status(wh) == "suspended"


def test_out_of_order_delivery_never_rolls_back(rt, acme):
    wh = rt.warehouse
    handle_event(wh, event("customer.subscription.updated", subscription(status="canceled"), created=500))
    out = handle_event(wh, event("customer.subscription.created", subscription(status="active"), created=100))
    assert out.startswith("stale")
    late_invoice = event("invoice.payment_failed", {"id": "in_9", "subscription": "sub_1"}, created=300)
    assert handle_event(wh, late_invoice).startswith("stale")
    row = sub_row(wh)
    assert (row["status"], row["event_created"]) == ("canceled", 500)
    assert org_status(wh) == "suspended"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_equal_timestamps_have_a_deterministic_winner(rt, acme, order):
    wh = rt.warehouse
    evs = [event("customer.subscription.updated", subscription(status="active"), created=700, event_id="evt_b"),
           event("customer.subscription.deleted", subscription(status="canceled"), created=700, event_id="evt_a")]
    for i in order:
        handle_event(wh, evs[i])
    assert sub_row(wh)["status"] == "canceled"  # deleted outranks updated at the same second, in either order


def test_org_slug_from_metadata_validated_or_from_known_customer(rt, acme):
    wh = rt.warehouse
    out = handle_event(wh, event("customer.subscription.created", subscription(sid="sub_x", org="Bad;Slug")))
    assert out.startswith("ignored") and sub_row(wh, "sub_x") is None
    out = handle_event(wh, event("customer.subscription.created", subscription(sid="sub_y", metadata=False,
                                                                               customer="cus_unknown")))
    assert out.startswith("ignored") and sub_row(wh, "sub_y") is None
    handle_event(wh, event("customer.subscription.created", subscription(sid="sub_1", customer="cus_7")))
    # A later subscription of the same customer without metadata maps to the same org.
    handle_event(wh, event("customer.subscription.created", subscription(sid="sub_2", customer="cus_7", metadata=False)))
    assert sub_row(wh, "sub_2")["org_slug"] == "acme"


def test_unhandled_types_are_recorded_and_ignored(rt):
    out = handle_event(rt.warehouse, event("charge.succeeded", {"id": "ch_1"}, event_id="evt_charge"))
    assert out.startswith("ignored")
    assert handle_event(rt.warehouse, event("charge.succeeded", {"id": "ch_1"}, event_id="evt_charge")).startswith(
        "already processed")


def test_failure_releases_the_claim_so_stripe_can_retry(rt, acme, monkeypatch):
    wh = rt.warehouse
    ev = event("customer.subscription.created", subscription())

    def boom(*a, **k):
        raise RuntimeError("warehouse hiccup")

    real = stripe_events._HANDLERS["customer.subscription.created"]
    monkeypatch.setitem(stripe_events._HANDLERS, "customer.subscription.created", boom)
    with pytest.raises(RuntimeError):
        handle_event(wh, ev)
    monkeypatch.setitem(stripe_events._HANDLERS, "customer.subscription.created", real)
    assert handle_event(wh, ev).startswith("inserted subscription")
