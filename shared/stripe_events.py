"""Stripe webhook events -> plans, org subscriptions and org status.

`verify(raw_body, signature_header, secret)` checks the Stripe-Signature (stripe library, 300 s
tolerance) and returns the event as a plain dict; `handle_event(wh, event)` applies it.

Idempotency: each event id is claimed once in `organizations.stripe_events` (INSERT ... WHERE NOT
EXISTS); a replay returns "already processed" and changes nothing. If applying fails, the claim is
removed so Stripe's retry can apply it.

Ordering: Stripe does not deliver in order. Every plan and subscription row keeps `event_order`,
a sortable key "<created, 12 digits>.<type rank><status rank>.<event id>"; an event updates a row
only if its key is greater (one conditional UPDATE), so an older event never rolls a row back.
For equal `created` seconds the tiebreak is the event type (created < updated <
invoice.payment_failed < deleted), then the status (incomplete < trialing < active < past_due <
unpaid/paused < canceled), then the event id: deterministic whatever the delivery order.

Handled types: product.created|updated|deleted, price.created|updated|deleted ->
`organizations.plans`; customer.subscription.created|updated|deleted, invoice.payment_failed ->
`organizations.org_subscriptions` and `organizations.organizations.status` (active while the org's
subscription is active/trialing, else suspended). Others are recorded and ignored.

The org of a subscription comes from `metadata.org_slug` on the subscription (or on the customer,
when expanded), else from a row already stored for the same subscription or customer.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from shared import inputs
from shared.naming import InvalidName, validate_org_slug
from shared.warehouse.base import Warehouse

_EVENTS = "`organizations.stripe_events`"
_PLANS = "`organizations.plans`"
_SUBS = "`organizations.org_subscriptions`"
_ORGS = "`organizations.organizations`"
TOLERANCE_S = 300

_TYPE_RANK = {"created": 0, "updated": 1, "payment_failed": 2, "deleted": 3}
_STATUS_RANK = {"incomplete": 0, "trialing": 1, "active": 2, "past_due": 3, "unpaid": 4, "paused": 4,
                "canceled": 5, "incomplete_expired": 5}

log = logging.getLogger(__name__)


class BadSignature(ValueError):
    """Missing, malformed, wrong or stale Stripe-Signature (HTTP 400)."""


class BadEvent(ValueError):
    """The body is not a Stripe event (HTTP 400)."""


def verify(raw_body: bytes | str, signature_header: str | None, secret: str) -> dict[str, Any]:
    """Verify the Stripe-Signature of the raw body, then parse it (depth-bounded, shared/inputs.py);
    return the event as a plain dict. Nothing unsigned is parsed."""
    import stripe

    if not signature_header:
        raise BadSignature("missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(raw_body, signature_header, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as e:
        raise BadSignature(f"Stripe signature verification failed: {e.user_message or e}") from None
    try:
        event = inputs.parse_json(raw_body, "the event")  # the verified bytes as plain JSON, no StripeObject
    except inputs.BadJson as e:
        raise BadEvent(f"the body is not a Stripe event: {e}") from None
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise BadEvent("the body is not a Stripe event (no id/type)")
    return event


def _order(created: int, type_: str, status: str | None, event_id: str) -> str:
    t = _TYPE_RANK.get(type_.rsplit(".", 1)[-1], 1)
    s = _STATUS_RANK.get(status or "", 9)
    return f"{int(created):012d}.{t}{s}.{event_id}"


def _ts(unix: Any) -> dt.datetime | None:
    if unix in (None, ""):
        return None
    try:
        return dt.datetime.fromtimestamp(int(unix), dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        raise BadEvent(f"{unix!r} is not a Unix time") from None


def _id(v: Any) -> str | None:
    """An expandable Stripe field: an id string or an object with an id."""
    if isinstance(v, dict):
        return v.get("id")
    return v or None


# -- generic conditional upsert -------------------------------------------------------
def _upsert_if_newer(wh: Warehouse, table: str, key: str, row: dict[str, Any], json_cols: tuple[str, ...] = ()) -> str:
    """Insert the row if its key is absent, else update it if row['event_order'] is greater.

    Returns "inserted", "updated" or "stale". Each statement is atomic on its own, and the pair is
    correct under concurrency: if the insert loses a race, the conditional update decides.
    """
    from shared import schemas

    cols = list(row)
    types = {f.name: f.type for f in schemas.get(table.strip("`").split(".")[-1]).fields}

    def val(c):  # typed, so a NULL parameter (sent as STRING by BigQuery) fits an INT64/TIMESTAMP column
        if c in json_cols:
            return f"PARSE_JSON(@{c})"
        return f"@{c}" if types[c] == "STRING" else f"CAST(@{c} AS {types[c]})"

    params = {c: (json.dumps(row[c]) if c in json_cols and row[c] is not None else row[c]) for c in cols}
    inserted = wh.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(val(c) for c in cols)} "
        f"FROM (SELECT 1 AS one) AS single WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = @{key})",
        params,
    )
    if inserted == 1:
        return "inserted"
    sets = ", ".join(f"{c} = {val(c)}" for c in cols if c != key)
    updated = wh.execute(f"UPDATE {table} SET {sets} WHERE {key} = @{key} AND event_order < @event_order", params)
    return "updated" if updated == 1 else "stale"


# -- plans ---------------------------------------------------------------------------
class InvalidPlanMetadata(ValueError):
    pass


def parse_limits(metadata: dict | None) -> dict[str, Any]:
    """daily_runs, concurrent_runs, backfill_days (non-negative ints), providers_allowed ('*' or a list)."""
    md = metadata or {}
    out: dict[str, Any] = {}
    for key in ("daily_runs", "concurrent_runs", "backfill_days"):
        raw = md.get(key)
        if raw is None or str(raw).strip() == "":
            out[key] = None
            continue
        try:
            n = int(str(raw).strip())
        except ValueError:
            raise InvalidPlanMetadata(f"metadata {key}={raw!r} is not a whole number") from None
        if n < 0:
            raise InvalidPlanMetadata(f"metadata {key}={raw!r} is negative")
        out[key] = n
    raw = md.get("providers_allowed")
    if raw is None or str(raw).strip() == "":
        out["providers_allowed"] = None
    else:
        entries = [e.strip().lower() for e in str(raw).split(",") if e.strip()]
        if not entries:
            raise InvalidPlanMetadata(f"metadata providers_allowed={raw!r} names no provider")
        out["providers_allowed"] = "*" if "*" in entries else ",".join(entries)
    return out


def _apply_plan(wh: Warehouse, event: dict, obj: dict) -> tuple[str, str | None]:
    kind = event["type"].split(".", 1)[0]  # product | price
    plan_id = obj.get("id")
    if not plan_id:
        return "ignored: object has no id", None
    try:
        limits = parse_limits(obj.get("metadata"))
    except InvalidPlanMetadata as e:
        return f"rejected: {kind} {plan_id}: {e}", None
    deleted = event["type"].endswith(".deleted") or obj.get("deleted") is True
    status = "archived" if deleted or obj.get("active") is False else "active"
    if kind == "product":
        name, product_id = obj.get("name") or plan_id, plan_id
    else:
        product_id = _id(obj.get("product"))
        name = obj.get("nickname") or obj.get("lookup_key") or None
    row = {"plan_id": plan_id, "kind": kind, "product_id": product_id, "name": name, "status": status, **limits,
           "metadata": obj.get("metadata") or {}, "event_created": int(event["created"]),
           "event_order": _order(event["created"], event["type"], None, event["id"]),
           "updated_at": dt.datetime.now(dt.timezone.utc)}
    result = _upsert_if_newer(wh, _PLANS, "plan_id", row, json_cols=("metadata",))
    return (f"stale: {kind} {plan_id} has a newer event" if result == "stale" else f"{result} {kind} {plan_id}"), None


# -- subscriptions -------------------------------------------------------------------
def _stored(wh: Warehouse, sub_id: str | None, customer_id: str | None) -> dict | None:
    if sub_id:
        rows = wh.query(f"SELECT * FROM {_SUBS} WHERE stripe_subscription_id = @id", {"id": sub_id})
        if rows:
            return rows[0]
    if customer_id:
        rows = wh.query(f"SELECT * FROM {_SUBS} WHERE stripe_customer_id = @c ORDER BY event_order DESC LIMIT 1",
                        {"c": customer_id})
        if rows:
            return rows[0]
    return None


def _org_from(obj: dict, stored: dict | None) -> str | None:
    for source in (obj.get("metadata"), (obj.get("customer") if isinstance(obj.get("customer"), dict) else {}).get("metadata")):
        if isinstance(source, dict) and source.get("org_slug"):
            return str(source["org_slug"])
    return stored["org_slug"] if stored else None


def sync_org_status(wh: Warehouse, org: str) -> str | None:
    """organizations.status := active if the org's subscription is active/trialing, else suspended."""
    from shared.plans import ALLOWED_STATUSES, subscription_for

    sub = subscription_for(wh, org)
    if sub is None:
        return None
    status = "active" if sub["status"] in ALLOWED_STATUSES else "suspended"
    wh.execute(f"UPDATE {_ORGS} SET status = @s WHERE org_slug = @org AND status != @s", {"s": status, "org": org})
    return status


def _apply_subscription(wh: Warehouse, event: dict, obj: dict) -> tuple[str, str | None]:
    sub_id = obj.get("id")
    customer_id = _id(obj.get("customer"))
    if not sub_id:
        return "ignored: subscription has no id", None
    stored = _stored(wh, sub_id, customer_id)
    org = _org_from(obj, stored)
    if org is None:
        return f"ignored: subscription {sub_id} has no metadata.org_slug and is not known", None
    try:
        validate_org_slug(org)
    except InvalidName:
        return f"ignored: subscription {sub_id} has an invalid org_slug {org!r}", None
    status = "canceled" if event["type"].endswith(".deleted") else str(obj.get("status") or "incomplete")
    items = ((obj.get("items") or {}).get("data") or [])
    item = items[0] if items else {}
    price = item.get("price") or obj.get("plan") or {}
    row = {
        "stripe_subscription_id": sub_id, "org_slug": org, "stripe_customer_id": customer_id,
        "plan_id": _id(price) if isinstance(price, dict) else price,
        "product_id": _id(price.get("product")) if isinstance(price, dict) else None,
        "status": status,
        # API versions >= 2025-03-31 carry the period on the item, older ones on the subscription.
        "current_period_start": _ts(obj.get("current_period_start") or item.get("current_period_start")),
        "current_period_end": _ts(obj.get("current_period_end") or item.get("current_period_end")),
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "event_created": int(event["created"]), "event_id": event["id"],
        "event_order": _order(event["created"], event["type"], status, event["id"]),
        "updated_at": dt.datetime.now(dt.timezone.utc),
    }
    result = _upsert_if_newer(wh, _SUBS, "stripe_subscription_id", row)
    if result == "stale":
        return f"stale: subscription {sub_id} has a newer event", org
    org_status = sync_org_status(wh, org)
    return f"{result} subscription {sub_id} ({status}); org {org} {org_status or 'not found'}", org


def _apply_payment_failed(wh: Warehouse, event: dict, obj: dict) -> tuple[str, str | None]:
    parent = ((obj.get("parent") or {}).get("subscription_details") or {})
    sub_id = _id(obj.get("subscription")) or _id(parent.get("subscription"))
    stored = _stored(wh, sub_id, None) if sub_id else None
    if stored is None:
        return f"ignored: invoice {obj.get('id')} is not for a known subscription", None
    order = _order(event["created"], event["type"], "past_due", event["id"])
    changed = wh.execute(
        f"""UPDATE {_SUBS} SET status = 'past_due', event_created = @created, event_id = @eid, event_order = @order,
               updated_at = @now
        WHERE stripe_subscription_id = @sid AND event_order < @order AND status IN ('active', 'trialing', 'past_due')""",
        {"created": int(event["created"]), "eid": event["id"], "order": order, "sid": stored["stripe_subscription_id"],
         "now": dt.datetime.now(dt.timezone.utc)},
    )
    org = stored["org_slug"]
    if changed != 1:
        return f"stale: subscription {stored['stripe_subscription_id']} has a newer event or has ended", org
    org_status = sync_org_status(wh, org)
    return f"updated subscription {stored['stripe_subscription_id']} (past_due); org {org} {org_status}", org


_HANDLERS = {
    "product.created": _apply_plan, "product.updated": _apply_plan, "product.deleted": _apply_plan,
    "price.created": _apply_plan, "price.updated": _apply_plan, "price.deleted": _apply_plan,
    "customer.subscription.created": _apply_subscription, "customer.subscription.updated": _apply_subscription,
    "customer.subscription.deleted": _apply_subscription, "invoice.payment_failed": _apply_payment_failed,
}


def handle_event(wh: Warehouse, event: dict[str, Any]) -> str:
    """Apply one Stripe event once; return what happened (readable, for the response and logs)."""
    if not isinstance(event, dict) or not event.get("id") or not event.get("type") or event.get("created") is None:
        raise BadEvent("a Stripe event needs id, type and created")
    if isinstance(event["created"], bool) or not isinstance(event["created"], int) or not 0 <= event["created"] < 10**11:
        raise BadEvent(f"created must be a Unix time, got {event['created']!r}")
    if not isinstance(event.get("data") or {}, dict) or not isinstance((event.get("data") or {}).get("object") or {}, dict):
        raise BadEvent("data.object must be an object")
    event_id, type_ = str(event["id"]), str(event["type"])
    claimed = wh.execute(
        f"""INSERT INTO {_EVENTS} (event_id, type, created, received_at)
        SELECT @id, @type, @created, @now FROM (SELECT 1 AS one) AS single
        WHERE NOT EXISTS (SELECT 1 FROM {_EVENTS} AS e WHERE e.event_id = @id)""",
        {"id": event_id, "type": type_, "created": int(event["created"]), "now": dt.datetime.now(dt.timezone.utc)},
    )
    if claimed != 1:
        return f"already processed: {event_id}"
    handler = _HANDLERS.get(type_)
    try:
        obj = ((event.get("data") or {}).get("object")) or {}
        outcome, org = handler(wh, event, obj) if handler else (f"ignored: {type_} is not handled", None)
        wh.execute(f"UPDATE {_EVENTS} SET outcome = @o, org_slug = @org WHERE event_id = @id",
                   {"o": outcome[:1000], "org": org, "id": event_id})
        log.info("stripe event %s %s: %s", event_id, type_, outcome)
    except BaseException:
        wh.execute(f"DELETE FROM {_EVENTS} WHERE event_id = @id", {"id": event_id})  # let Stripe's retry apply it
        raise
    return outcome
