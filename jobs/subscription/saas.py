"""SaaS subscription costs: the org's subscriptions (organizations.saas_subscriptions) as daily rows.

No provider API is called: the subscriptions recorded through shared/subscriptions.py are the source.
For every day of the run's range that a subscription bills, one `subscription_costs_daily` row holds
the terms in effect that day and that day's amortized share of the billing cycle (the cycle and
amortization rules are in shared/subscriptions.py). Days before the start, after the end date or
under a cancellation get no row; since the runner replaces the whole slice, a re-run after a
cancellation or a seat change restates the range.

Determinism: the amounts depend only on the stored versions and the day, never on when the job runs,
so re-running a range gives identical rows.

Slack seats: `sync_slack_seats` counts the workspace's billable members (Slack Web API
`team.billableInfo`, a token with the `admin` scope) and records a seat change as a new version from
the given day when the count differs. It runs as its own step (CLI or schedule), not inside
`extract`: an extractor never writes, and the API only knows today's count, so the history stays in
the versions and re-running a past range never depends on when it runs.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from jobs.base import CredentialError, ExtractContext, ExtractError
from shared import schemas
from shared import subscriptions as subs

TABLE = "subscription_costs_daily"
BATCH_ROWS = 10_000


def _days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def daily_rows(tl: subs.Timeline, start: dt.date, end: dt.date) -> Iterator[dict[str, Any]]:
    """The rows of one subscription for the days in [start, end] it bills."""
    first = tl.first_day
    last = tl.last_billed_day()
    for day in _days(max(start, first), end if last is None else min(end, last)):
        v = tl.billed(day)
        if v is None:
            continue
        cycle_start, cycle_end = subs.cycle_for(v.start_date, v.billing_cycle, v.cycle_days, day)
        n = (cycle_end - cycle_start).days
        index = (day - cycle_start).days
        # A cycle cut short by the end date takes its remainder on the last billed day.
        billed_days = None
        if last is not None and cycle_start <= last < cycle_end - dt.timedelta(days=1):
            billed_days = (last - cycle_start).days + 1
        seat_price = v.seat_price
        list_share = subs.seat_share(v.unit_price, n, index, billed_days)
        share = subs.seat_share(seat_price, n, index, billed_days)
        yield {
            "cost_date": day, "subscription_id": v.subscription_id, "version": v.version, "provider": v.provider,
            "plan": v.plan, "seats": v.seats, "unit_price": v.unit_price, "discount_pct": v.discount_pct,
            "currency": v.currency, "billing_cycle": v.billing_cycle, "cycle_start": cycle_start,
            "cycle_end": cycle_end, "cycle_days": n, "cycle_amount": subs.MATH.multiply(seat_price, v.seats),
            "seat_daily_list_price": list_share, "seat_daily_price": share,
            "daily_list_amount": subs.MATH.multiply(list_share, v.seats),
            "daily_amount": subs.MATH.multiply(share, v.seats),
            "owner": v.owner, "department": v.department,
        }


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
    schema = schemas.get(TABLE).arrow_schema(include_lineage=False)
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(chunk, schema=schema)
            chunk = []
    if chunk:
        yield pa.RecordBatch.from_pylist(chunk, schema=schema)


def extract(ctx: ExtractContext) -> dict[str, list[pa.RecordBatch]]:
    from shared import runtime

    wh = runtime.get().warehouse
    found = subs.timelines(wh, ctx.org_slug)
    if not found:
        ctx.warn(f"org {ctx.org_slug!r} has no SaaS subscriptions; add one with "
                 f"`cloudact subscriptions add {ctx.org_slug} --from-json FILE`")
    rows = (row for tl in found.values() for row in daily_rows(tl, ctx.start_date, ctx.end_date))
    batches = [*_batches(rows)]
    ctx.log.info("expanded %d subscription(s) into %d daily row(s)", len(found), sum(b.num_rows for b in batches))
    return {TABLE: batches}


# -- Slack seats ------------------------------------------------------------------------------------
SLACK_API = "https://slack.com/api"
_SLACK_AUTH_ERRORS = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                      "missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied"}


def slack_billable_seats(token: str, *, base_url: str = SLACK_API, org_slug: str = "ORG",
                         page_size: int = 500, **client_options) -> int:
    """Members with `billing_active: true` in `team.billableInfo`, following `next_cursor` pages."""
    from shared.http import ApiClient

    active: set[str] = set()
    cursor = None
    with ApiClient(base_url, {"Authorization": f"Bearer {token}"}, provider="Slack", credential_kind="slack",
                   key_label="token", org_slug=org_slug, **client_options) as api:
        for _ in range(10_000):
            page = api.get_json("team.billableInfo", {"limit": page_size, "cursor": cursor})
            if not isinstance(page, dict):
                raise ExtractError("Slack answered team.billableInfo with something that is not a JSON object")
            if not page.get("ok"):
                error = str(page.get("error") or "unknown_error")
                if error in _SLACK_AUTH_ERRORS:
                    raise CredentialError(
                        f"Slack refused the token ({error}): team.billableInfo needs a token with the admin "
                        f"scope. Add a new one with `cloudact credentials add {org_slug} slack --from-json FILE`")
                raise ExtractError(f"Slack team.billableInfo failed: {error}")
            for member, info in (page.get("billable_info") or {}).items():
                if isinstance(info, dict) and info.get("billing_active") is True:
                    active.add(member)
            cursor = ((page.get("response_metadata") or {}).get("next_cursor")) or None
            if not cursor:
                return len(active)
    raise ExtractError("Slack team.billableInfo kept returning more pages; giving up")


def sync_slack_seats(org: str, subscription_id: str, credential: dict[str, Any], effective_date: dt.date | None = None,
                     *, wh=None, **client_options) -> dict[str, Any]:
    """Set a Slack subscription's seats to the billable member count, as a version from `effective_date`.

    `credential` is the org's `slack` credential: {"token": "xoxp-...", "base_url": optional}.
    Returns {"subscription", "seats_before", "seats_now", "changed"}; writes nothing when the count
    is unchanged. The count is refused (SubscriptionInvalid on seats) when it is 0.
    """
    token = credential.get("token") if isinstance(credential, dict) else None
    if not token:
        raise CredentialError(f"the slack credential has no token; add one with "
                              f"`cloudact credentials add {org} slack --from-json FILE` holding {{\"token\": ...}}")
    current = subs.get(org, subscription_id, wh=wh)
    if current["provider"] != "slack":
        raise subs.SubscriptionInvalid("provider", f"{subscription_id} is a {current['provider']} subscription, "
                                       "not slack")
    seats = slack_billable_seats(token, base_url=credential.get("base_url") or SLACK_API, org_slug=org,
                                 **client_options)
    day = effective_date or dt.datetime.now(dt.timezone.utc).date()
    if seats == current["seats"]:
        return {"subscription": current, "seats_before": seats, "seats_now": seats, "changed": False}
    if seats < 1:
        raise subs.SubscriptionInvalid("seats", "Slack reports no billable members; cancel the subscription "
                                       "instead of setting 0 seats")
    updated = subs.update(org, subscription_id, {"seats": seats}, day, wh=wh)
    return {"subscription": updated, "seats_before": current["seats"], "seats_now": seats, "changed": True}
