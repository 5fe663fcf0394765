"""Plan quotas enforced atomically with the run insert (shared/plans.create_run_with_quota)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from shared import registry, runs
from shared.plans import QuotaExceeded, create_run_with_quota, entitlement
from shared.stripe_events import handle_event
from tests.test_stripe_webhook import event, product, subscribe, subscription

OPENAI = registry.get("genai/payg/openai")
TODAY = dt.datetime.now(dt.timezone.utc).date()


def day(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def run(wh, org="acme", pipeline=OPENAI, cred="cred_1", start=None, end=None, now=None):
    start = start or day(2)
    return create_run_with_quota(wh, org_slug=org, pipeline=pipeline, credential_id=cred, start_date=start,
                                 end_date=end or start, trigger="api", now=now)


def test_no_subscription_gets_the_builtin_unlimited_default(rt, acme, monkeypatch):
    monkeypatch.delenv("CLOUDACT_DEFAULT_PLAN", raising=False)
    assert entitlement(rt.warehouse, "acme").plan.plan_id == "free-local"
    for i in range(12):  # no daily/concurrent limit, any provider, any depth
        run(rt.warehouse, cred=f"c{i}", start=day(390))


def test_default_plan_none_or_unsynced_is_402(rt, acme, monkeypatch):
    monkeypatch.setenv("CLOUDACT_DEFAULT_PLAN", "none")
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse)
    assert e.value.status == 402 and e.value.code == "no_subscription"
    monkeypatch.setenv("CLOUDACT_DEFAULT_PLAN", "prod_free")
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse)
    assert e.value.status == 402 and e.value.code == "unknown_plan"
    handle_event(rt.warehouse, event("product.created", product("prod_free", "Free", daily_runs=1)))
    run(rt.warehouse)
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse, cred="c2")
    assert e.value.status == 429 and "1 runs per day" in e.value.message


@pytest.mark.parametrize("status", ["past_due", "canceled", "unpaid", "incomplete"])
def test_inactive_subscription_is_402_naming_the_status(rt, acme, status):
    subscribe(rt.warehouse, status=status)
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse)
    assert e.value.status == 402 and repr(status) in e.value.message


def test_trialing_is_allowed(rt, acme):
    subscribe(rt.warehouse, status="trialing", daily_runs=3)
    run(rt.warehouse)


def test_provider_not_in_plan_is_402_naming_provider_and_plan(rt, acme):
    subscribe(rt.warehouse, providers_allowed="anthropic,cloud")
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse)
    assert e.value.status == 402 and "'openai'" in e.value.message and "Pro" in e.value.message
    run(rt.warehouse, pipeline=registry.get("genai/payg/anthropic"))            # by provider
    run(rt.warehouse, pipeline=registry.get("cloud/aws/cost/billing", require_available=False))  # by category


def test_backfill_deeper_than_plan_is_402(rt, acme):
    subscribe(rt.warehouse, backfill_days=30)
    run(rt.warehouse, start=day(30))
    with pytest.raises(QuotaExceeded) as e:
        run(rt.warehouse, start=day(31), cred="c2")
    assert e.value.status == 402 and "30 days" in e.value.message


def test_concurrent_limit_is_429_and_frees_when_a_run_ends(rt, acme):
    wh = rt.warehouse
    subscribe(wh, concurrent_runs=2)
    first = run(wh, cred="a")
    run(wh, cred="b")
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="c")
    assert e.value.status == 429 and e.value.code == "concurrent_run_limit" and "2 concurrent" in e.value.message
    runs.finish(wh, first, "succeeded")
    run(wh, cred="c")


def test_slice_busy_still_wins_over_quota(rt, acme):
    subscribe(rt.warehouse, daily_runs=10)
    run(rt.warehouse)
    with pytest.raises(runs.SliceBusy):
        run(rt.warehouse)


def test_daily_limit_counts_the_utc_day(rt, acme):
    wh = rt.warehouse
    subscribe(wh, daily_runs=2)
    yesterday = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    for i in range(2):
        runs.finish(wh, run(wh, cred=f"y{i}", now=yesterday), "succeeded")
    run(wh, cred="t0")
    runs.finish(wh, run(wh, cred="t1"), "failed")  # failed runs count too
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="t2")
    assert e.value.status == 429 and e.value.code == "daily_run_limit" and "2 runs per day" in e.value.message


def test_twenty_concurrent_requests_against_a_daily_limit_of_five(rt, acme):
    wh = rt.warehouse
    subscribe(wh, daily_runs=5)
    barrier = threading.Barrier(20)
    accepted, refused, other = [], [], []

    def worker(i):
        barrier.wait()
        try:
            accepted.append(run(wh, cred=f"cred_{i}"))  # distinct slices: only the quota can refuse
        except QuotaExceeded as e:
            refused.append(e.status)
        except Exception as e:  # noqa: BLE001
            other.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(accepted) == 5 and refused == [429] * 15
    assert wh.query("SELECT COUNT(*) AS n FROM `organizations.org_pipeline_runs` WHERE org_slug = 'acme'")[0]["n"] == 5


def test_a_plan_change_by_webhook_changes_the_quota(rt, acme):
    wh = rt.warehouse
    subscribe(wh, daily_runs=1)
    run(wh, cred="a")
    with pytest.raises(QuotaExceeded):
        run(wh, cred="b")
    # The product's limits are raised in Stripe.
    handle_event(wh, event("product.updated", product(daily_runs=3), created=1_700_000_500))
    run(wh, cred="b")
    # The org moves to another plan (new price of another product) with a lower limit.
    handle_event(wh, event("product.created", product("prod_basic", "Basic", daily_runs=2), created=1_700_000_600))
    handle_event(wh, event("customer.subscription.updated",
                           subscription(price_id="price_basic", product_id="prod_basic"), created=1_700_000_700))
    assert entitlement(wh, "acme").plan.name == "Basic"
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="c")
    assert "'Basic' allows 2 runs per day" in e.value.message
    # And cancellation stops runs altogether.
    handle_event(wh, event("customer.subscription.deleted", subscription(status="canceled"), created=1_700_000_800))
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="c")
    assert e.value.status == 402 and "'canceled'" in e.value.message


def test_other_orgs_runs_today_do_not_count_against_the_daily_limit(rt, acme, monkeypatch):
    """globex ran 3 times today; acme's plan allows 2 a day: acme still gets both, and its refusal counts 2."""
    from shared.tenants import create_org

    wh = rt.warehouse
    monkeypatch.delenv("CLOUDACT_DEFAULT_PLAN", raising=False)  # globex: no subscription -> unlimited default
    create_org(wh, "globex")
    for i in range(3):
        runs.finish(wh, run(wh, org="globex", cred=f"g{i}"), "succeeded")  # ended: only the daily count sees them
    subscribe(wh, daily_runs=2)
    run(wh, cred="a0")
    run(wh, cred="a1")
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="a2")
    assert e.value.status == 429 and e.value.code == "daily_run_limit"
    assert "allows 2 runs per day (UTC) and 2 were started today" in e.value.message
    counts = wh.query("SELECT org_slug, COUNT(*) AS n FROM `organizations.org_pipeline_runs` GROUP BY 1 ORDER BY 1")
    assert counts == [{"org_slug": "acme", "n": 2}, {"org_slug": "globex", "n": 3}]


def test_other_orgs_active_runs_do_not_count_against_the_concurrent_limit(rt, acme, monkeypatch):
    """globex has 2 runs queued; acme's plan allows 1 at a time: acme's first is accepted, its second refused
    naming acme's 1 active run."""
    from shared.tenants import create_org

    wh = rt.warehouse
    monkeypatch.delenv("CLOUDACT_DEFAULT_PLAN", raising=False)
    create_org(wh, "globex")
    run(wh, org="globex", cred="g0")
    run(wh, org="globex", cred="g1")
    subscribe(wh, concurrent_runs=1)
    first = run(wh, cred="a0")
    with pytest.raises(QuotaExceeded) as e:
        run(wh, cred="a1")
    assert e.value.code == "concurrent_run_limit" and "1 concurrent runs and 1 are queued or running" in e.value.message
    runs.finish(wh, first, "succeeded")
    run(wh, cred="a1")  # globex's two are still queued


def test_all_quota_stripe_and_schedule_sql_is_bigquery_sql(rt, acme, monkeypatch):
    """Every statement these modules send parses as BigQuery SQL (the GCP backend runs it unchanged)."""
    from shared import schedules
    from shared.warehouse.dialect import parse_bigquery

    seen = []

    class Recording:
        def __init__(self, wh):
            self.wh = wh

        def __getattr__(self, name):
            return getattr(self.wh, name)

        def query(self, sql, params=None):
            seen.append(sql)
            return self.wh.query(sql, params)

        def execute(self, sql, params=None):
            seen.append(sql)
            return self.wh.execute(sql, params)

    wh = Recording(rt.warehouse)
    subscribe(wh, daily_runs=1, concurrent_runs=1)
    handle_event(wh, event("invoice.payment_failed", {"id": "in_1", "subscription": "sub_1"}, created=1_800_000_000))
    handle_event(wh, event("customer.subscription.updated", subscription(), created=1_800_000_001))
    run(wh)
    with pytest.raises(QuotaExceeded):
        run(wh, cred="b")
    s = schedules.create_schedule(wh, "acme", {"pipeline_id": "genai/payg/openai", "cron": "0 3 * * *"})
    schedules.update_schedule(wh, "acme", s["schedule_id"], {"enabled": False})
    schedules.due_schedules(wh, dt.datetime.now(dt.timezone.utc))
    schedules.delete_schedule(wh, "acme", s["schedule_id"])
    assert len(seen) > 20
    for sql in set(seen):
        parse_bigquery(sql)
