"""Plans and quotas: which runs an org's subscription allows, enforced atomically with the run insert.

Plans come from Stripe (shared/stripe_events.py writes `organizations.plans` and
`organizations.org_subscriptions`). An org's effective plan:

- its subscription (the active/trialing one if any, else the most recent) -> the plan row of the
  subscription's price, whose limits fall back to its product's row (product metadata holds the
  limits; price metadata may override them);
- no subscription row -> the default plan, env CLOUDACT_DEFAULT_PLAN:
    unset or "free-local"  built-in, unlimited (the embedded default: a local install has no Stripe);
    "none"                 no default: orgs without a subscription get 402 (use this on GCP);
    any other value        a plan id in `organizations.plans` (e.g. a free Stripe product);
                           if that plan is not synced yet, runs get 402.

Limits (NULL = unlimited): daily_runs (runs created per UTC day), concurrent_runs (queued +
running), providers_allowed ('*' or a comma list of providers, categories or pipeline paths),
backfill_days (start_date may be at most this many days before today, UTC).

Atomicity: the count limits are folded into the run's INSERT ... SELECT ... WHERE statement (the
same one that refuses an overlapping active slice), run as the warehouse's run claim
(`Warehouse.claim`), so concurrent requests cannot overshoot: each decides on every claim of the org
committed before it (DuckDB serializes writes; on BigQuery the claim is a transaction that conflicts
with the org's other claims, see shared/warehouse/bigquery.py). Call `create_run_with_quota` instead
of `runs.create_run`.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from shared import runs
from shared.warehouse.base import Warehouse

ALLOWED_STATUSES = ("active", "trialing")
BUILTIN_DEFAULT = "free-local"
_RUNS = "`organizations.org_pipeline_runs`"
_PLANS = "`organizations.plans`"
_SUBS = "`organizations.org_subscriptions`"
LIMIT_KEYS = ("daily_runs", "concurrent_runs", "providers_allowed", "backfill_days")


class QuotaExceeded(Exception):
    """A run the org's plan does not allow. `status` is the HTTP status (402 or 429)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Plan:
    plan_id: str
    name: str
    daily_runs: int | None = None
    concurrent_runs: int | None = None
    providers_allowed: str | None = None  # None or '*' = all
    backfill_days: int | None = None

    def allows_provider(self, pipeline) -> bool:
        allowed = (self.providers_allowed or "*").strip()
        if allowed == "*":
            return True
        entries = {e.strip().lower() for e in allowed.split(",") if e.strip()}
        return bool(entries & {pipeline.provider.lower(), pipeline.category.lower(), pipeline.path.lower()})


FREE_LOCAL = Plan(BUILTIN_DEFAULT, "Free (local, unlimited)")


@dataclass(frozen=True)
class Entitlement:
    """What an org may do now: its subscription status and plan (source says where they came from)."""
    status: str
    plan: Plan | None
    source: str  # "subscription <id>" | "default plan <id>"


def _plan_row(wh: Warehouse, plan_id: str) -> dict | None:
    rows = wh.query(f"SELECT * FROM {_PLANS} WHERE plan_id = @id", {"id": plan_id})
    return rows[0] if rows else None


def get_plan(wh: Warehouse, plan_id: str) -> Plan | None:
    """The plan's effective limits: the row's own values, else its product's (price -> product)."""
    if plan_id == BUILTIN_DEFAULT:
        return FREE_LOCAL
    row = _plan_row(wh, plan_id)
    if row is None:
        return None
    parent = _plan_row(wh, row["product_id"]) if row.get("product_id") and row["product_id"] != plan_id else None
    limits = {}
    for key in LIMIT_KEYS:
        value = row.get(key)
        if value is None and parent is not None:
            value = parent.get(key)
        limits[key] = value
    name = row.get("name") or (parent or {}).get("name") or plan_id
    return Plan(plan_id, name, **limits)


def subscription_for(wh: Warehouse, org: str) -> dict | None:
    """The org's subscription that counts: an active/trialing one if any, else the latest."""
    rows = wh.query(
        f"""SELECT * FROM {_SUBS} WHERE org_slug = @org
        ORDER BY CASE WHEN status IN ('active', 'trialing') THEN 0 ELSE 1 END, event_order DESC LIMIT 1""",
        {"org": org},
    )
    return rows[0] if rows else None


def entitlement(wh: Warehouse, org: str) -> Entitlement:
    sub = subscription_for(wh, org)
    if sub is not None:
        plan = get_plan(wh, sub["plan_id"]) if sub.get("plan_id") else None
        if plan is None and sub.get("product_id"):
            plan = get_plan(wh, sub["product_id"])
        return Entitlement(sub["status"], plan, f"subscription {sub['stripe_subscription_id']}")
    default = os.environ.get("CLOUDACT_DEFAULT_PLAN", "").strip() or BUILTIN_DEFAULT
    if default.lower() == "none":
        return Entitlement("none", None, "no subscription")
    return Entitlement("active", get_plan(wh, default), f"default plan {default}")


def check_static(ent: Entitlement, pipeline, start_date: dt.date, today: dt.date) -> Plan:
    """The checks that need no counting: status, plan known, provider, backfill depth."""
    if ent.status == "none":
        raise QuotaExceeded(402, "no_subscription",
                            "this organization has no subscription; subscribe to a plan to run pipelines")
    if ent.status not in ALLOWED_STATUSES:
        raise QuotaExceeded(402, "subscription_inactive",
                            f"the organization's subscription is {ent.status!r}; runs need an active or trialing "
                            "subscription (update the payment method or renew it)")
    plan = ent.plan
    if plan is None:
        raise QuotaExceeded(402, "unknown_plan",
                            f"the plan of {ent.source} has not been synced from Stripe yet; try again shortly")
    if not plan.allows_provider(pipeline):
        raise QuotaExceeded(402, "provider_not_in_plan",
                            f"provider {pipeline.provider!r} ({pipeline.path}) is not included in plan "
                            f"{plan.name!r}; it allows: {plan.providers_allowed}")
    if plan.backfill_days is not None and start_date < today - dt.timedelta(days=plan.backfill_days):
        raise QuotaExceeded(402, "backfill_too_deep",
                            f"plan {plan.name!r} allows backfills of at most {plan.backfill_days} days "
                            f"(start_date >= {today - dt.timedelta(days=plan.backfill_days)}); got {start_date}")
    return plan


def quota_predicates(org: str, plan: Plan, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Extra WHERE predicates (BigQuery SQL, prefixed with AND) and their params for the run INSERT.

    They count the org's rows in org_pipeline_runs inside the INSERT's own statement, so the check
    and the insert are one atomic step.
    """
    day = now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sql, params = [], {"q_org": org}
    if plan.daily_runs is not None:
        sql.append(f"AND (SELECT COUNT(*) FROM {_RUNS} AS q WHERE q.org_slug = @q_org "
                   "AND q.created_at >= @q_day_start AND q.created_at < @q_day_end) < @q_daily")
        params.update(q_day_start=day, q_day_end=day + dt.timedelta(days=1), q_daily=int(plan.daily_runs))
    if plan.concurrent_runs is not None:
        sql.append(f"AND (SELECT COUNT(*) FROM {_RUNS} AS q WHERE q.org_slug = @q_org "
                   "AND q.status IN ('queued', 'running')) < @q_concurrent")
        params["q_concurrent"] = int(plan.concurrent_runs)
    return "\n        ".join(sql), params


def _usage(wh: Warehouse, org: str, now: dt.datetime) -> tuple[int, int]:
    day = now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    row = wh.query(
        f"""SELECT COUNTIF(created_at >= @s AND created_at < @e) AS today,
                  COUNTIF(status IN ('queued', 'running')) AS active
        FROM {_RUNS} WHERE org_slug = @org""",
        {"org": org, "s": day, "e": day + dt.timedelta(days=1)},
    )[0]
    return int(row["today"] or 0), int(row["active"] or 0)


def create_run_with_quota(wh: Warehouse, *, org_slug: str, pipeline, credential_id: str,
                          start_date: dt.date, end_date: dt.date, trigger: str,
                          now: dt.datetime | None = None) -> str:
    """runs.claim with the org's plan: the quota predicates ride in the claim's own INSERT.

    Raises QuotaExceeded (402/429) or runs.SliceBusy (409). `pipeline` is a registry.Pipeline.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    plan = check_static(entitlement(wh, org_slug), pipeline, start_date, now.astimezone(dt.timezone.utc).date())
    extra, qparams = quota_predicates(org_slug, plan, now)
    slc = {"org_slug": org_slug, "pipeline_id": pipeline.path, "credential_id": credential_id,
           "start_date": start_date, "end_date": end_date}
    run_id = runs.claim(wh, **slc, trigger=trigger, guard=extra, guard_params=qparams, now=now)
    if run_id is not None:
        return run_id
    # Refused: say why (read after the fact; the decision itself was atomic).
    busy = runs.busy_with(wh, **slc)
    if busy:
        raise runs.slice_busy(busy, pipeline.path)
    today, active = _usage(wh, org_slug, now)
    if plan.daily_runs is not None and today >= plan.daily_runs:
        raise QuotaExceeded(429, "daily_run_limit",
                            f"plan {plan.name!r} allows {plan.daily_runs} runs per day (UTC) and {today} were "
                            "started today; try again after midnight UTC or upgrade the plan")
    if plan.concurrent_runs is not None and active >= plan.concurrent_runs:
        raise QuotaExceeded(429, "concurrent_run_limit",
                            f"plan {plan.name!r} allows {plan.concurrent_runs} concurrent runs and {active} are "
                            "queued or running; wait for one to finish")
    raise QuotaExceeded(429, "quota_race", "the run was refused by a quota that has since freed up; try again")
